"""Configurations of the multi-task baselines of the paper's tables: MMoE and PLE (torch-rechub style).

Typed dataclass configs (as :mod:`a2gen_hf.configuration_a2gen`), built on the fields every model of the package
shares (:class:`~a2gen_hf.configuration_a2gen.ActionSequenceConfig`), not on A2Gen's network fields.
"""

from dataclasses import field
from typing import Any, ClassVar

from .configuration_a2gen import (  # noqa: F401  (A2GenConfig, A2GenConfigError: imported from here by older code)
    A2GEN_ONLY_FIELDS,
    A2GenConfig,
    A2GenConfigError,
    ActionSequenceConfig,
    typed_config,
)

HISTORY_INPUTS = ("items", "items_and_events")


@typed_config
class MultiTaskBaselineConfig(ActionSequenceConfig):
    r"""
    Shared configuration of the MMoE / PLE baselines.

    It is an :class:`~a2gen_hf.configuration_a2gen.ActionSequenceConfig`, as :class:`A2GenConfig` is, so that the
    baselines read the same action vocabulary, id buckets, side features, time statistics and batch caps
    (``A2GenDataCollator.from_config`` works unchanged) and build their inputs with A2Gen's own modules. The fields
    only A2Gen's network reads (``hidden_size``, ``num_attention_heads``, ``generator_type``, ``order_loss_weight``,
    ``history_pooling``, ...: :data:`~a2gen_hf.configuration_a2gen.A2GEN_ONLY_FIELDS`) are accepted and dropped, so
    that one set of options serves every model of ``a2gen compare`` and config.json files of older versions (which
    wrote them) still load; they are not saved. Of the loss weights the baselines use ``action_loss_weight`` (binary
    cross-entropy) and ``time_loss_weight`` (default 0.1).

    Tasks: one per action of ``action_names`` except ``start_action``. Each task has a time regression head; all
    but ``end_action`` (which always happens) also have a binary "the action happens" head.

    Args:
        history_input (`str`): what a history item contributes before mean pooling over the history.
            ``"items"``: its item features only (as in the paper's baselines). ``"items_and_events"``: its item
            features concatenated with the mean of its action-event embeddings (action + time), so the baseline
            sees what the history's actions and times say (the fairly fed variant).
        time_loss (`str`): ``"mse"`` (regress the mean) or ``"l1"`` (regress the median).
        expert_hidden_sizes (`list[int]`): widths of each expert MLP; the last one is the expert output width
            (each at most ``MAX_WIDTH``, 16,384).
        tower_hidden_sizes (`list[int]`): widths of each task tower MLP before its heads (may be empty; each at most
            ``MAX_WIDTH``).
        expert_dropout_prob (`float`): dropout after every expert / tower layer.
        kwargs: the fields of :class:`~a2gen_hf.configuration_a2gen.ActionSequenceConfig` (action vocabulary,
            embedding sizes, buckets, ...).
    """

    model_type = "a2gen_multitask_baseline"
    ignored_fields: ClassVar[frozenset[str]] = A2GEN_ONLY_FIELDS | {"generator"}
    # transformers.Trainer's predictions leave out the unweighted scalar sub-losses (one number per batch), so that
    # they start with logits (as A2GenConfig.keys_to_ignore_at_inference).
    keys_to_ignore_at_inference: ClassVar[list[str]] = ["action_loss", "time_loss"]

    history_input: str = "items"
    expert_hidden_sizes: list[int] | tuple[int, ...] = field(default_factory=lambda: [64, 32])
    tower_hidden_sizes: list[int] | tuple[int, ...] = field(default_factory=lambda: [16])
    expert_dropout_prob: float | int = 0.0

    def __post_init__(self, **kwargs: Any) -> None:
        self.expert_hidden_sizes = list(self.expert_hidden_sizes)
        self.tower_hidden_sizes = list(self.tower_hidden_sizes)
        super().__post_init__(**kwargs)

    @property
    def task_action_ids(self) -> list[int]:
        """Action ids of the tasks, in vocabulary order: every action but ``start``."""
        return [self.action_id(name) for name in self.action_names if name != self.start_action]

    @property
    def binary_action_ids(self) -> list[int]:
        """Action ids with a binary head: the tasks without the end action (it always happens)."""
        return [action_id for action_id in self.task_action_ids if action_id != self.end_action_id]

    def _problems(self) -> list[str]:
        problems = super()._problems()
        if not set(self.action_names) - {self.start_action, self.end_action}:
            problems.append(
                f"action_names={self.action_names} has no action besides start and end: a multi-task baseline "
                "needs at least one action to predict."
            )
        if self.history_input not in HISTORY_INPUTS:
            problems.append(f"history_input={self.history_input!r} is unknown; use one of {list(HISTORY_INPUTS)}.")
        if not self.expert_hidden_sizes or any(int(size) < 1 for size in self.expert_hidden_sizes):
            problems.append(
                f"expert_hidden_sizes={self.expert_hidden_sizes} must be a non-empty list of positive widths, "
                "e.g. [64, 32]."
            )
        if any(int(size) < 1 for size in self.tower_hidden_sizes):
            problems.append(f"tower_hidden_sizes={self.tower_hidden_sizes} must hold positive widths (or be []).")
        if not 0.0 <= self.expert_dropout_prob < 1.0:
            problems.append(f"expert_dropout_prob={self.expert_dropout_prob} must be in [0, 1).")
        return problems


@typed_config
class MMoEConfig(MultiTaskBaselineConfig):
    r"""
    MMoE (Multi-gate Mixture-of-Experts): ``num_experts`` shared expert MLPs and one softmax gate per task.

    Args:
        num_experts (`int`): shared experts (default 4; at most ``MAX_EXPERTS``, 256).
        kwargs: see :class:`MultiTaskBaselineConfig`.
    """

    model_type = "a2gen_mmoe"

    num_experts: int = 4

    def _problems(self) -> list[str]:
        problems = super()._problems()
        if int(self.num_experts) < 1:
            problems.append(f"num_experts={self.num_experts} must be >= 1.")
        return problems


@typed_config
class PLEConfig(MultiTaskBaselineConfig):
    r"""
    PLE (Progressive Layered Extraction): ``num_levels`` stacked CGC layers, each with task-specific experts per
    task, shared experts, a gate per task over its own and the shared experts and, below the last level, a shared
    gate over all experts.

    Args:
        num_levels (`int`): CGC levels (default 1; at most ``MAX_LEVELS``, 16).
        num_specific_experts (`int`): experts per task and level (default 2; at most ``MAX_EXPERTS``, 256).
        num_shared_experts (`int`): shared experts per level (default 1; at most ``MAX_EXPERTS``).
        kwargs: see :class:`MultiTaskBaselineConfig`.
    """

    model_type = "a2gen_ple"

    num_levels: int = 1
    num_specific_experts: int = 2
    num_shared_experts: int = 1

    def _problems(self) -> list[str]:
        problems = super()._problems()
        for name in ("num_levels", "num_specific_experts"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name}={getattr(self, name)} must be >= 1.")
        if int(self.num_shared_experts) < 0:
            problems.append(f"num_shared_experts={self.num_shared_experts} must be >= 0.")
        return problems
