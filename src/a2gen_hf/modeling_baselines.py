"""The multi-task baselines of the paper's tables, MMoE and PLE, compact like torch-rechub's, on A2Gen's inputs.

Both read [user features ; target item features ; mean of the history items' vectors], built with A2Gen's own
``A2GenFeatureEmbeddings`` (and, with ``history_input="items_and_events"``, ``A2GenEventEmbedding`` so each history
item also carries the mean of its action-event embeddings). They predict, per action, whether it happens in the
target session and the normalised time of its first occurrence, take the same batch as
:class:`A2GenForActionGeneration` and answer :meth:`predict_actions` in the same format, so training loops and
evaluation code serve all models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer
from transformers.utils import ModelOutput

from .auto import AutoModelForActionGeneration
from .configuration_baselines import MMoEConfig, MultiTaskBaselineConfig, PLEConfig
from .features_a2gen import ExtraContextFeatures, WidePath, masked_pool, own_outcomes_while_training
from .generation_a2gen import in_model_dtype
from .modeling_a2gen import (
    INPUT_SHAPES,
    LABEL_SHAPES,
    A2GenActionPrediction,
    A2GenEventEmbedding,
    A2GenFeatureEmbeddings,
    A2GenPreTrainedModel,
    check_batch_not_empty,
    check_model_inputs,
)
from .targets import first_occurrence_targets
from .time_encoding import denormalize_times
from .tokenization_a2gen import A2GenActionTokenizer


@dataclass
class MultiTaskBaselineOutput(ModelOutput):
    """
    Output of :class:`MMoEForActionPrediction` / :class:`PLEForActionPrediction`. Columns are action ids (column 0 is
    padding), as in :class:`~a2gen_hf.modeling_a2gen.A2GenActionPrediction`.

    Args:
        loss (`torch.FloatTensor` of shape `()`, with `labels`): ``action_loss_weight * action_loss +
            time_loss_weight * time_loss``.
        action_loss (`torch.FloatTensor` of shape `()`): binary cross-entropy summed over the actions with a binary
            head, averaged over examples; unweighted.
        time_loss (`torch.FloatTensor` of shape `()`): squared (``time_loss="mse"``) or absolute (``"l1"``) error of
            the first-occurrence time, summed over the actions that happen with a known time, averaged over
            examples; unweighted.
        logits (`torch.FloatTensor` of shape `(batch_size, vocab_size)`): log-odds that the action happens; padding
            is the dtype's minimum, ``start`` and the end action (always present) its maximum.
        times (`torch.FloatTensor` of shape `(batch_size, vocab_size)`): predicted normalised time of the action's
            first occurrence; ``start`` is at 0 s, padding 0.0.
        task_representations (`torch.FloatTensor` of shape `(batch_size, num_tasks, expert_size)`): the expert
            mixture each task tower reads (tasks in ``config.task_action_ids`` order).
    """

    loss: torch.FloatTensor | None = None
    action_loss: torch.FloatTensor | None = None
    time_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    times: torch.FloatTensor | None = None
    task_representations: torch.FloatTensor | None = None


def _feed_forward(input_size: int, hidden_sizes: list[int], dropout: float) -> nn.Sequential:
    """Linear -> ReLU -> dropout per width of `hidden_sizes` (empty: identity)."""
    layers: list[nn.Module] = []
    for size in hidden_sizes:
        layers += [nn.Linear(input_size, size), nn.ReLU(), nn.Dropout(dropout)]
        input_size = size
    return nn.Sequential(*layers)


def _mix(gate: nn.Linear, gate_input: torch.Tensor, expert_outputs: list[torch.Tensor]) -> torch.Tensor:
    """Softmax-gated sum of experts: `gate_input` `(B, D)`, each expert `(B, h)` -> `(B, h)`."""
    weights = torch.softmax(gate(gate_input), dim=-1)
    return torch.einsum("be,beh->bh", weights, torch.stack(expert_outputs, dim=1))


def _stacked_feed_forward(networks: list[nn.Sequential], inputs: torch.Tensor, shared_input: bool) -> torch.Tensor:
    """
    Equally shaped :func:`_feed_forward` networks applied together, one product per layer: ``inputs`` `(B, D)` that
    every network reads (``shared_input``), or `(B, G * D)` whose g-th block network g reads -> `(B, G * h)`, the
    g-th block network g's output. The layers' weights are concatenated (a shared input) or placed block-diagonally:
    equal to ``torch.cat([network(x) for ...], -1)`` up to rounding, where G small products per layer would each
    cost more in overhead than in arithmetic. Dropout is the first network's (all have the same probability).
    """
    states = inputs
    for position in range(0, len(networks[0]), 3):
        layers = [network[position] for network in networks]
        weights = [layer.weight for layer in layers]
        weight = torch.cat(weights) if shared_input and position == 0 else torch.block_diag(*weights)
        states = networks[0][position + 2](F.relu(F.linear(states, weight, torch.cat([layer.bias for layer in layers]))))
    if shared_input and len(networks[0]) == 0:  # no hidden layers: every network is the identity
        states = states.repeat(1, len(networks))
    return states


class MultiTaskBaselineInputs(nn.Module):
    """[user ; target item ; mean over history items] built from A2Gen's input modules."""

    def __init__(self, config: MultiTaskBaselineConfig):
        super().__init__()
        self.features = A2GenFeatureEmbeddings(config)
        self.with_events = config.history_input == "items_and_events"
        self.event_embedding = A2GenEventEmbedding(config) if self.with_events else None
        history_item_size = self.features.item_feature_size + (
            self.event_embedding.output_size if self.with_events else 0
        )
        self.extra_features = ExtraContextFeatures(config)
        self.output_size = (
            self.features.user_feature_size
            + self.features.item_feature_size
            + history_item_size
            + self.extra_features.size
        )

    def forward(
        self,
        user_ids: torch.LongTensor,
        item_ids: torch.LongTensor,
        history_item_ids: torch.LongTensor,
        history_action_ids: torch.LongTensor | None = None,
        history_action_times: torch.FloatTensor | None = None,
        history_time_mask: torch.LongTensor | None = None,
        history_mask: torch.LongTensor | None = None,
        item_side_ids: torch.LongTensor | None = None,
        history_item_side_ids: torch.LongTensor | None = None,
        user_side_ids: torch.LongTensor | None = None,
        target_occurrences: torch.Tensor | None = None,
        item_keys: torch.LongTensor | None = None,
        history_item_ages: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Returns `(B, output_size)`; padding history items (and padding events) never change it. `target_occurrences`
        `(B, V)`: the examples' own outcomes while training, left out of the popularity features."""
        if history_item_ids.dim() != 2:
            raise ValueError(f"history_item_ids must be (batch, items), got shape {tuple(history_item_ids.shape)}.")
        history_mask = (history_item_ids != 0) if history_mask is None else history_mask.bool()
        if self.features.updates_rows_in_backward():  # TorchRec's tables: each read once per step
            user_features, target_item_features, history_items = self.features.batch_features(
                user_ids, user_side_ids, item_ids, item_side_ids, history_item_ids, history_item_side_ids, None, None, None
            )
        else:
            user_features = self.features.user_features(user_ids, user_side_ids)
            target_item_features, history_items = self._item_features(
                item_ids, history_item_ids, item_side_ids, history_item_side_ids
            )
        if self.with_events:
            if history_action_ids is None or history_action_times is None:
                raise ValueError(
                    'history_input="items_and_events" reads history_action_ids and history_action_times; pass them '
                    '(the collator builds them) or use a config with history_input="items".'
                )
            event_mask = (history_action_ids != 0) & history_mask.unsqueeze(-1)
            events = self.event_embedding(history_action_ids * event_mask, history_action_times, history_time_mask)
            history_items = torch.cat([history_items, masked_pool(events, event_mask, "mean")], dim=-1)
        history = masked_pool(history_items, history_mask, "mean")
        parts = [user_features, target_item_features, history]
        if self.extra_features.size:
            if history_action_ids is None:
                if self.extra_features.propensity_size or self.extra_features.count_features is not None:
                    raise ValueError(
                        "history_propensity_features / history_count_features read history_action_ids; pass them "
                        "(the collator does)."
                    )
                history_action_ids = torch.zeros_like(history_item_ids).unsqueeze(-1)
            parts.append(
                self.extra_features(
                    history_action_ids,
                    history_mask,
                    history_item_ids,
                    item_ids,
                    history_item_side_ids,
                    item_side_ids,
                    target_occurrences,
                    item_keys,
                    history_item_ages,
                )
            )
        return torch.cat(parts, dim=-1)


    def _item_features(self, item_ids, history_item_ids, item_side_ids, history_item_side_ids):
        """
        Target `(B, f)` and history `(B, N, f)` item features from one lookup per table: one (sparse) gradient per
        table instead of two that backward would have to add.
        """
        if (item_side_ids is None) != (history_item_side_ids is None):  # item_features says which one is missing
            return (
                self.features.item_features(item_ids, item_side_ids),
                self.features.item_features(history_item_ids, history_item_side_ids),
            )
        side_ids = None
        if item_side_ids is not None:
            side_ids = torch.cat([item_side_ids.unsqueeze(1), history_item_side_ids], dim=1)
        items = self.features.item_features(torch.cat([item_ids.unsqueeze(1), history_item_ids], dim=1), side_ids)
        return items[:, 0], items[:, 1:]


class MMoELayer(nn.Module):
    """Shared expert MLPs and one softmax gate per task: `(B, D)` -> `(B, tasks, expert_size)`."""

    def __init__(self, config: MMoEConfig, input_size: int, num_tasks: int):
        super().__init__()
        sizes, dropout = config.expert_hidden_sizes, config.expert_dropout_prob
        self.experts = nn.ModuleList(_feed_forward(input_size, sizes, dropout) for _ in range(config.num_experts))
        self.gates = nn.ModuleList(nn.Linear(input_size, config.num_experts) for _ in range(num_tasks))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """The experts and the gates each in one product (:func:`_stacked_feed_forward`), then one batched mix."""
        batch, tasks, experts = inputs.shape[0], len(self.gates), len(self.experts)
        expert_outputs = _stacked_feed_forward(list(self.experts), inputs, shared_input=True)  # (B, experts * h)
        gate_weight = torch.cat([gate.weight for gate in self.gates])
        gate_logits = F.linear(inputs, gate_weight, torch.cat([gate.bias for gate in self.gates]))
        weights = torch.softmax(gate_logits.view(batch, tasks, experts), dim=-1)
        return torch.bmm(weights, expert_outputs.unflatten(1, (experts, -1)))  # (B, tasks, h)


class CGCLevel(nn.Module):
    """
    One PLE level (Customized Gate Control): per task, specific experts mixed with the shared experts by that
    task's gate; below the last level also a shared gate over all experts that feeds the next level's shared input.
    """

    def __init__(self, config: PLEConfig, input_size: int, num_tasks: int, is_last: bool):
        super().__init__()
        sizes, dropout = config.expert_hidden_sizes, config.expert_dropout_prob
        specific, shared = config.num_specific_experts, config.num_shared_experts
        self.specific_experts = nn.ModuleList(
            nn.ModuleList(_feed_forward(input_size, sizes, dropout) for _ in range(specific)) for _ in range(num_tasks)
        )
        self.shared_experts = nn.ModuleList(_feed_forward(input_size, sizes, dropout) for _ in range(shared))
        self.task_gates = nn.ModuleList(nn.Linear(input_size, specific + shared) for _ in range(num_tasks))
        self.shared_gate = None if is_last else nn.Linear(input_size, num_tasks * specific + shared)

    def forward(
        self, task_inputs: list[torch.Tensor], shared_input: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Per-task inputs `(B, D)` and the shared input `(B, D)` -> per-task outputs `(B, h)`, shared `(B, h)`."""
        shared_outputs = [expert(shared_input) for expert in self.shared_experts]
        specific_outputs = [
            [expert(task_input) for expert in experts] for experts, task_input in zip(self.specific_experts, task_inputs)
        ]
        task_outputs = [
            _mix(gate, task_input, own + shared_outputs)
            for gate, task_input, own in zip(self.task_gates, task_inputs, specific_outputs)
        ]
        if self.shared_gate is None:
            return task_outputs, None
        every_expert = [output for own in specific_outputs for output in own] + shared_outputs
        return task_outputs, _mix(self.shared_gate, shared_input, every_expert)


class PLELayer(nn.Module):
    """Stacked CGC levels: `(B, D)` -> `(B, tasks, expert_size)`."""

    def __init__(self, config: PLEConfig, input_size: int, num_tasks: int):
        super().__init__()
        expert_size = config.expert_hidden_sizes[-1]
        self.num_tasks = num_tasks
        self.levels = nn.ModuleList(
            CGCLevel(config, input_size if level == 0 else expert_size, num_tasks, level == config.num_levels - 1)
            for level in range(config.num_levels)
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        task_inputs, shared_input = [inputs] * self.num_tasks, inputs
        for level in self.levels:
            task_inputs, shared_input = level(task_inputs, shared_input)
        return torch.stack(task_inputs, dim=1)


class MultiTaskHeads(nn.Module):
    """Per task: a tower MLP, a time head and (all but the end action) a binary head, scattered to action ids."""

    def __init__(self, config: MultiTaskBaselineConfig, expert_size: int):
        super().__init__()
        self.vocab_size = config.vocab_size
        self.start_action_id, self.end_action_id = config.start_action_id, config.end_action_id
        self.config = config  # start_time follows the config's time statistics, which may be refitted
        self.task_action_ids, self.binary_action_ids = config.task_action_ids, config.binary_action_ids
        binary = set(config.binary_action_ids)
        tower_sizes, dropout = config.tower_hidden_sizes, config.expert_dropout_prob
        tower_output = tower_sizes[-1] if tower_sizes else expert_size
        self.towers = nn.ModuleList(_feed_forward(expert_size, tower_sizes, dropout) for _ in config.task_action_ids)
        self.time_heads = nn.ModuleList(nn.Linear(tower_output, 1) for _ in config.task_action_ids)
        self.binary_heads = nn.ModuleList(nn.Linear(tower_output, 1) for _ in config.binary_action_ids)
        self.binary_tasks = [task for task, action_id in enumerate(config.task_action_ids) if action_id in binary]

    def forward(self, task_representations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(B, tasks, h)` -> logits `(B, V)`, times `(B, V)` (see :class:`MultiTaskBaselineOutput`)."""
        # Every task's tower and heads in one product each (:func:`_stacked_feed_forward`, block-diagonal heads).
        batch, tasks = task_representations.shape[:2]
        towers = _stacked_feed_forward(list(self.towers), task_representations.flatten(1), shared_input=False)
        task_times = F.linear(
            towers,
            torch.block_diag(*[head.weight for head in self.time_heads]),
            torch.cat([head.bias for head in self.time_heads]),
        )
        binary_towers = towers.unflatten(1, (tasks, -1))[:, self.binary_tasks].flatten(1)
        binary_logits = F.linear(
            binary_towers,
            torch.block_diag(*[head.weight for head in self.binary_heads]),
            torch.cat([head.bias for head in self.binary_heads]),
        )
        dtype = task_representations.dtype
        extreme = torch.finfo(dtype)
        logits = task_representations.new_full((batch, self.vocab_size), extreme.min)
        logits[:, [self.start_action_id, self.end_action_id]] = extreme.max
        logits[:, self.binary_action_ids] = binary_logits
        times = task_representations.new_zeros(batch, self.vocab_size)
        times[:, self.start_action_id] = self.config.start_time
        times[:, self.task_action_ids] = task_times
        return logits, times


def multitask_loss(
    config: MultiTaskBaselineConfig,
    logits: torch.Tensor,
    times: torch.Tensor,
    labels: torch.LongTensor,
    label_times: torch.Tensor,
    label_time_mask: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """
    BCE of "the action happens" over the binary actions plus the first-occurrence time error over all tasks (only
    where the action happens and its time is known); both summed over actions and averaged over examples.
    """
    occurs, first_times, time_known = first_occurrence_targets(labels, label_times, label_time_mask, config.vocab_size)
    binary = config.binary_action_ids
    action_loss = (
        F.binary_cross_entropy_with_logits(logits[:, binary].float(), occurs[:, binary].float(), reduction="none")
        .sum(1)
        .mean()
    )
    tasks = config.task_action_ids
    known = time_known[:, tasks]
    # An unknown label time (label_time_mask 0, which the input check lets be NaN) is 0.0 in first_times, so that
    # neither the sum nor its gradient reads it; the mask then selects, as in A2Gen's time loss.
    errors = times[:, tasks].float() - first_times[:, tasks].float()
    errors = errors.abs() if config.time_loss == "l1" else errors**2
    time_loss = torch.where(known, errors, 0.0).sum(1).mean()
    loss = config.action_loss_weight * action_loss + config.time_loss_weight * time_loss
    return {"loss": loss, "action_loss": action_loss, "time_loss": time_loss}


def _refuse_output_flags(config: MultiTaskBaselineConfig, **flags: bool | None) -> None:
    """
    Refuse ``output_hidden_states`` / ``output_attentions`` asked for by the forward's argument or, without one, by
    the config (``MMoEConfig(output_hidden_states=True)``, ``from_pretrained(..., output_attentions=True)``): the
    baselines have neither, and a flag silently ignored would leave ``hidden_states`` missing from the output.
    """
    for name, value in flags.items():
        asked, source = (value, "forward") if value is not None else (getattr(config, name, False), "the config")
        if asked:
            raise ValueError(
                f"{name}=True ({source}): {type(config).__name__.removesuffix('Config')} has no hidden states or "
                "attentions to return (its experts and towers are feed-forward networks; the per-task expert "
                "mixtures are in the output's task_representations). Leave it unset or False."
            )


class MultiTaskBaselinePreTrainedModel(A2GenPreTrainedModel):
    """Shared weights initialisation (A2Gen's), input embeddings and the forward / predict_actions of the baselines."""

    config_class = MultiTaskBaselineConfig
    config: MultiTaskBaselineConfig
    base_model_prefix = "baseline"
    # Set by each baseline: the module mapping the input vector (B, D) to per-task vectors (B, tasks, h).
    expert_layer_class: type[nn.Module]
    # What A2GenPreTrainedModel's refusals of gradient checkpointing and resize_token_embeddings name.
    own_layers = "the input embeddings, the experts, the gates and the towers"
    sized_by_the_actions = (
        "the tasks' gates, towers and heads (one per action), the event embeddings (history_input='items_and_events')"
    )

    def __init__(self, config: MultiTaskBaselineConfig):
        super().__init__(config)
        self.inputs = MultiTaskBaselineInputs(config)
        self.experts = self.expert_layer_class(config, self.inputs.output_size, len(config.task_action_ids))
        self.heads = MultiTaskHeads(config, config.expert_hidden_sizes[-1])
        self.wide = WidePath(config) if config.wide_path else None  # features_a2gen.WidePath
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.inputs.features.item_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.inputs.features.item_embeddings = value

    def forward(
        self,
        user_ids: torch.LongTensor | None = None,
        item_ids: torch.LongTensor | None = None,
        history_item_ids: torch.LongTensor | None = None,
        history_action_ids: torch.LongTensor | None = None,
        history_action_times: torch.FloatTensor | None = None,
        history_time_mask: torch.LongTensor | None = None,
        history_mask: torch.LongTensor | None = None,
        item_side_ids: torch.LongTensor | None = None,
        history_item_side_ids: torch.LongTensor | None = None,
        user_side_ids: torch.LongTensor | None = None,
        item_keys: torch.LongTensor | None = None,
        history_item_ages: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        label_times: torch.FloatTensor | None = None,
        label_time_mask: torch.LongTensor | None = None,
        return_dict: bool | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> MultiTaskBaselineOutput | tuple:
        r"""
        Same batch as :class:`A2GenForActionGeneration` (the collator's); ``history_input="items"`` ignores
        ``history_action_ids`` / ``history_action_times`` / ``history_time_mask``.

        Args:
            user_ids `(B,)`, item_ids `(B,)`, history_item_ids `(B, N)`, history_mask `(B, N)`: as for A2Gen.
            history_action_ids / history_action_times / history_time_mask `(B, N, E)`: the history items' events.
            item_side_ids `(B, F)`, history_item_side_ids `(B, N, F)`, user_side_ids `(B, S, L)`: side features.
            item_keys `(B,)`: raw-id keys of the targets, required when the popularity counts are keyed by them.
            history_item_ages `(B, N)`: seconds from each history item's session start to the target's, required
                with ``history_time_features``.
            labels / label_times / label_time_mask `(B, T)`: the target sequence; the per-action targets are read
                off it with :func:`first_occurrence_targets`. Label times where ``label_time_mask`` is 0 are never
                read (they may be NaN).
            output_hidden_states / output_attentions: refused when true (here or in the config): the baselines
                have no hidden-state sequence and no attention (``task_representations`` holds what the towers read).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        _refuse_output_flags(
            self.config, output_hidden_states=output_hidden_states, output_attentions=output_attentions
        )
        missing = [name for name, value in (("user_ids", user_ids), ("item_ids", item_ids)) if value is None]
        if history_item_ids is None:
            missing.append("history_item_ids")
        if missing:
            raise ValueError(f"Missing inputs {missing}: pass them (the collator builds them).")
        if labels is not None and label_times is None:
            raise ValueError("label_times is required with labels (the collator builds both).")
        # The kinds, shapes and id ranges A2Gen's forward checks, named the same way.
        check_model_inputs(self.config, self.dtype, **{name: value for name, value in locals().items()
                                                       if name in INPUT_SHAPES or name in LABEL_SHAPES})  # fmt: skip
        if labels is not None:  # a loss needs an example; prediction on no examples gives empty outputs, as A2Gen's
            check_batch_not_empty(type(self).__name__, "labels", labels)
        history_action_times, label_times = in_model_dtype(history_action_times, self.dtype), in_model_dtype(
            label_times, self.dtype
        )
        labels = labels.long() if labels is not None else None
        features = self.inputs(
            user_ids=user_ids,
            item_ids=item_ids,
            history_item_ids=history_item_ids,
            history_action_ids=history_action_ids,
            history_action_times=history_action_times,
            history_time_mask=history_time_mask,
            history_mask=history_mask,
            item_side_ids=item_side_ids,
            history_item_side_ids=history_item_side_ids,
            user_side_ids=user_side_ids,
            target_occurrences=own_outcomes_while_training(self, labels, label_times),
            item_keys=item_keys,
            history_item_ages=history_item_ages,
        )
        task_representations = self.experts(features)
        logits, times = self.heads(task_representations)
        if self.wide is not None:
            logits = logits + self.wide(features)
        loss_parts = {}
        if labels is not None:
            loss_parts = multitask_loss(self.config, logits, times, labels, label_times, label_time_mask)
        output = MultiTaskBaselineOutput(
            loss=loss_parts.get("loss"),
            action_loss=loss_parts.get("action_loss"),
            time_loss=loss_parts.get("time_loss"),
            logits=logits,
            times=times,
            task_representations=task_representations,
        )
        return output if return_dict else output.to_tuple()

    @torch.no_grad()
    def predict_actions(self, **inputs) -> A2GenActionPrediction:
        """
        Ranking scores in A2Gen's format: P(action happens) = sigmoid of its binary head, the expected normalised
        time of its first occurrence = its time head; ``start`` has probability 1 at 0 s, the end action probability
        1 (its time is the watch time), padding 0. Accepts the forward's inputs (labels are ignored).
        """
        for name in ("labels", "label_times", "label_time_mask"):
            inputs.pop(name, None)
        output = self(**inputs, return_dict=True)
        probabilities = torch.sigmoid(output.logits.float())
        times = output.times.float()
        seconds = denormalize_times(times, self.config.time_log_mean, self.config.time_log_std)
        return A2GenActionPrediction(action_probabilities=probabilities, expected_times=times, expected_seconds=seconds)


class MMoEForActionPrediction(MultiTaskBaselinePreTrainedModel):
    __doc__ = r"""
    MMoE baseline (Ma et al., KDD 2018): shared experts, one gate and one tower per action.
    """ + (MultiTaskBaselinePreTrainedModel.forward.__doc__ or "")

    config_class = MMoEConfig
    config: MMoEConfig
    expert_layer_class = MMoELayer


class PLEForActionPrediction(MultiTaskBaselinePreTrainedModel):
    __doc__ = r"""
    PLE baseline (Tang et al., RecSys 2020): CGC levels of task-specific and shared experts, one tower per action.
    """ + (MultiTaskBaselinePreTrainedModel.forward.__doc__ or "")

    config_class = PLEConfig
    config: PLEConfig
    expert_layer_class = PLELayer


def register_baselines() -> None:
    """Make AutoConfig / AutoModel / AutoModelForActionGeneration / AutoTokenizer know the baselines, and their
    checkpoints carry their code (``AutoModel.from_pretrained(repo, trust_remote_code=True)``)."""
    for config_class, model_class in ((MMoEConfig, MMoEForActionPrediction), (PLEConfig, PLEForActionPrediction)):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
        AutoModelForActionGeneration.register(config_class, model_class, exist_ok=True)
        AutoTokenizer.register(config_class, tokenizer_class=A2GenActionTokenizer, exist_ok=True)
        # save_pretrained writes an auto_map and the code files: loadable with trust_remote_code, like A2Gen.
        config_class.register_for_auto_class()
        model_class.register_for_auto_class("AutoModel")


register_baselines()
