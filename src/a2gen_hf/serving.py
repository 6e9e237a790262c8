"""Fast ranking of many candidates for one user: a user-side cache and candidate-batched scoring.

``A2GenRanker(model).encode_user(...)`` runs everything that does not depend on the candidate once per request
(embeddings, level 1 of HSE, CAM_item's keys, values and the history part of its queries); ``score_candidates``
then scores C candidates in one batch, with CAM_item reduced to two (N x N) by (N x C) matrix products per head.
The algebra is written down in ``docs/serving.md``; results equal ``predict_actions`` on the repeated batch.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .generation_a2gen import A2GenGenerateOutput
from .modeling_a2gen import (
    A2GenActionPrediction,
    A2GenForActionGeneration,
    ContextAwareAttention,
    _check_history_shapes,
    action_predictions_from_slots,
    occurrence_probabilities,
)

USER_INPUT_NAMES = (
    "user_ids",
    "history_item_ids",
    "history_action_ids",
    "history_action_times",
    "history_time_mask",
    "history_mask",
    "history_item_side_ids",
    "user_side_ids",
)


@dataclass
class UserState:
    """
    Candidate-independent terms of one user, from :meth:`A2GenRanker.encode_user`. Padding history items are
    dropped (they never change an output), so ``n`` below is the number of real history items.

    Args:
        user_features (`torch.FloatTensor` of shape `(1, user_feature_size)`).
        queries (`torch.FloatTensor` of shape `(heads, n, head_size)`): CAM_item's history part of the queries,
            ``query_from_sequence(projected history)``, split into heads.
        keys / values (`torch.FloatTensor` of shape `(heads, n, head_size)`): CAM_item's keys and values.
        score_exponentials (`torch.FloatTensor` of shape `(heads, n, n)`): ``exp(A - rowmax(A))`` with
            ``A = queries @ keys^T / sqrt(head_size)``, the per-user factor of every candidate's attention.
        history (`dict`, *optional*): for a model with the count / propensity / popularity features, the user's
            real history items: ``history_action_ids`` `(1, n, E)`, ``history_mask`` `(1, n)`, ``history_item_ids``
            `(1, n)` and ``history_item_side_ids`` `(1, n, F)` or None; the features depend on the candidate.
    """

    user_features: torch.Tensor
    queries: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor
    score_exponentials: torch.Tensor
    history: dict[str, torch.Tensor | None] | None = None

    @property
    def num_history_items(self) -> int:
        return self.keys.shape[1]

    def as_tuple(self) -> tuple[torch.Tensor, ...]:
        """The tensors, in field order, that lead the arguments of :class:`A2GenRankingProgram`."""
        return tuple(getattr(self, field.name) for field in fields(self) if field.name != "history")


class A2GenRankingProgram(nn.Module):
    """
    The candidate side of ranking as one module with tensor-only inputs, so it can run eagerly, under
    ``torch.compile`` and through ``torch.export``. Holds no weights of its own: it reads the model's.

    forward(user_features `(1, Du)`, queries / keys / values `(H, n, dh)`, score_exponentials `(H, n, n)`,
    item_ids `(C,)`, item_side_ids `(C, F)` or None, extra_features `(C, De)` or None) -> action_probabilities,
    expected_times, expected_seconds, each `(C, vocab_size)`. ``extra_features`` are the model's
    :class:`~a2gen_hf.modeling_a2gen.ExtraContextFeatures` of the candidates (:meth:`A2GenRanker.extra_features`).
    """

    def __init__(self, model: A2GenForActionGeneration):
        super().__init__()
        self.model = model
        config = model.config
        self.config = config
        attention = model.a2gen.encoder.item_attention
        self.num_heads, self.head_size = attention.num_heads, attention.head_size
        self.scale = 1.0 / math.sqrt(self.head_size)
        self.mean_pooling = config.history_pooling == "mean"

    def history_representation(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        score_exponentials: torch.Tensor,
        item_features: torch.Tensor,
    ) -> torch.Tensor:
        """Vec_hist `(C, d)` for C candidates: CAM_item pooled over the user's n history items."""
        attention = self.model.a2gen.encoder.item_attention
        count = keys.shape[1]
        candidates = item_features.shape[0]
        projected_context = attention.context_projection(item_features)  # (C, d)
        gate = torch.softmax(attention.head_gate(projected_context), dim=-1)  # (C, H)
        # Terms that do not pass through attention: n copies of the gated head biases plus the context residual.
        constant = count * (gate @ attention.head_output_bias + projected_context)
        if count == 0:
            return constant
        context_queries = attention.query_from_context(projected_context).view(candidates, self.num_heads, -1)
        # b[h, j, c]: candidate c's query part against history key j.
        context_scores = keys @ (context_queries.permute(1, 2, 0) * self.scale)
        weights = torch.exp(context_scores - context_scores.amax(dim=1, keepdim=True))
        normalisers = score_exponentials @ weights  # Z[h, l, c] >= exp(-score range): may underflow
        # Below n * tiny / eps the terms of Z lose precision and 1 / Z may overflow after the sum over l.
        limit = count * torch.finfo(normalisers.dtype).tiny / torch.finfo(normalisers.dtype).eps
        underflow = (normalisers < limit).any()
        operands = (queries, keys, values, score_exponentials, context_queries, weights, normalisers)
        # (C, H, dh): each head's attention output summed over history positions. torch.cond keeps the branch in
        # compiled and exported graphs; eagerly a plain `if` avoids its tracing cost.
        if torch.compiler.is_compiling():
            pooled_heads = torch.cond(underflow, self._exact_pooled_heads, self._factored_pooled_heads, operands)
        elif underflow:
            pooled_heads = self._exact_pooled_heads(*operands)
        else:
            pooled_heads = self._factored_pooled_heads(*operands)
        gated = (pooled_heads * gate.unsqueeze(-1)).reshape(candidates, -1)
        pooled = gated @ attention.head_output_weight.reshape(-1, attention.head_output_weight.shape[-1]) + constant
        return pooled / count if self.mean_pooling else pooled

    @staticmethod
    def _factored_pooled_heads(queries, keys, values, score_exponentials, context_queries, weights, normalisers):
        column_weights = weights * (score_exponentials.transpose(1, 2) @ normalisers.reciprocal())  # (H, n, C)
        return (values.transpose(1, 2) @ column_weights).permute(2, 0, 1).contiguous()

    @staticmethod
    def _exact_pooled_heads(queries, keys, values, score_exponentials, context_queries, weights, normalisers):
        # Plain softmax attention for every candidate of the chunk: taken only when the factored form underflows.
        candidate_queries = queries.unsqueeze(0) + context_queries.unsqueeze(2)  # (C, H, n, dh)
        expand = (candidate_queries.shape[0], -1, -1, -1)
        states = F.scaled_dot_product_attention(
            candidate_queries, keys.unsqueeze(0).expand(expand), values.unsqueeze(0).expand(expand)
        )
        return states.sum(dim=2)

    def generation_context(
        self, user_features, queries, keys, values, score_exponentials, item_ids, item_side_ids, extra_features=None
    ):
        """[user ; Vec_hist ; item (; extra features)] `(C, context_size)`, the context of CAM_gen."""
        item_features = self.model.a2gen.features.item_features(item_ids, item_side_ids)
        history = self.history_representation(queries, keys, values, score_exponentials, item_features)
        parts = [user_features.expand(item_ids.shape[0], -1), history, item_features]
        if extra_features is not None:
            parts.append(extra_features)
        return torch.cat(parts, dim=-1)

    def forward(
        self,
        user_features,
        queries,
        keys,
        values,
        score_exponentials,
        item_ids,
        item_side_ids=None,
        extra_features=None,
    ):
        context = self.generation_context(
            user_features, queries, keys, values, score_exponentials, item_ids, item_side_ids, extra_features
        )
        slot_probabilities, slot_times = slot_distributions(self.model, context)
        prediction = action_predictions_from_slots(self.config, slot_probabilities, slot_times)
        probabilities = prediction.action_probabilities
        if self.model.occurrence_head is not None:
            probabilities = occurrence_probabilities(self.model, context)
        return probabilities, prediction.expected_times, prediction.expected_seconds


def attention_over_slots(
    attention: ContextAwareAttention, sequence: torch.Tensor, context: torch.Tensor
) -> torch.Tensor:
    """
    ``ContextAwareAttention.forward`` without mask or cache, for short sequences such as IAG's K slots:
    `(C, K, sequence_size)`, `(C, context_size)` -> `(C, K, d)`. The per-candidate (K x K) products are broadcast
    multiply-sums instead of C * heads tiny batched matrix products (those cost ~4 us each on CPU), and the gate is
    applied before one output projection of the concatenated heads (linear, so the order does not matter).
    """
    candidates, length, _ = sequence.shape
    heads, head_size = attention.num_heads, attention.head_size
    projected = attention.sequence_projection(sequence)
    projected_context = attention.context_projection(context)
    queries = attention.query_from_sequence(projected) + attention.query_from_context(projected_context).unsqueeze(1)
    queries = queries.view(candidates, length, 1, heads, head_size) / math.sqrt(head_size)
    keys = attention.key(projected).view(candidates, 1, length, heads, head_size)
    values = attention.value(projected).view(candidates, 1, length, heads, head_size)
    scores = (queries * keys).sum(-1)  # (C, L_query, L_key, H)
    probabilities = torch.softmax(scores, dim=2)
    states = (probabilities.unsqueeze(-1) * values).sum(2)  # (C, L, H, dh)
    gate = torch.softmax(attention.head_gate(projected_context), dim=-1)  # (C, H)
    gated = (states * gate[:, None, :, None]).reshape(candidates, length, heads * head_size)
    output_weight = attention.head_output_weight.reshape(heads * head_size, -1)
    return gated @ output_weight + (gate @ attention.head_output_bias + projected_context).unsqueeze(1)


def slot_distributions(model: A2GenForActionGeneration, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Per-slot class probabilities `(C, K, V)` and times `(C, K)` from the generation context `(C, context_size)`:
    IAG's slots from one pass, or EAG's greedy decode with the key/value cache, batched over the C rows.
    """
    generator = model.generator
    if model.config.generator_type == "iag":
        # ImplicitActionGenerator.forward with the faster attention_over_slots.
        _, _, slot_features = generator.slot_features(generator.slots(context))
        logits, times = generator.heads(attention_over_slots(generator.generation_attention, slot_features, context))
        return torch.softmax(logits.float(), dim=-1), times.float()
    return model.slot_distributions(context)


class A2GenRanker:
    """
    Scores many candidate items for one user at a time.

    Args:
        model (:class:`A2GenForActionGeneration`): put into eval mode (dropout off), as ranking needs.
        chunk_size (`int`, *optional*): score candidates in blocks of this many (per-user work is done once);
            required with ``compile=True``, where the last block is padded so every call has the same shape and
            nothing recompiles.
        compile (`bool`): run the candidate side through ``torch.compile``.
        dtype (`torch.dtype`, *optional*): ``torch.bfloat16`` runs the candidate side under autocast (matrix
            products in bf16, softmax and exp in fp32); ``None`` keeps the model's dtype.

    Example:
        >>> ranker = A2GenRanker(model, chunk_size=1000)
        >>> state = ranker.encode_user(user_ids=..., history_item_ids=..., history_action_ids=..., ...)
        >>> scores = ranker.score_candidates(state, item_ids)  # A2GenActionPrediction, rows = candidates
    """

    def __init__(
        self,
        model: A2GenForActionGeneration,
        chunk_size: int | None = None,
        compile: bool = False,
        dtype: torch.dtype | None = None,
    ):
        if not isinstance(model, A2GenForActionGeneration):
            raise TypeError(f"A2GenRanker needs an A2GenForActionGeneration, got {type(model).__name__}.")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size} must be a positive number of candidates (or None).")
        if compile and chunk_size is None:
            raise ValueError("compile=True needs a fixed chunk_size (e.g. 1000) so that no batch size recompiles.")
        if dtype not in (None, torch.bfloat16):
            raise ValueError(f"dtype={dtype} is not supported; use None (the model's dtype) or torch.bfloat16.")
        self.model = model.eval()
        self.config = model.config
        self.chunk_size = chunk_size
        self.dtype = dtype
        self.program = A2GenRankingProgram(model)
        self._run = torch.compile(self.program, dynamic=False) if compile else self.program

    @property
    def device(self) -> torch.device:
        return self.model.device

    @torch.no_grad()
    def encode_user(self, **user_inputs: torch.Tensor) -> UserState:
        """
        Runs the candidate-independent part once. Takes one user's inputs named as in ``forward``, with batch size
        1: ``user_ids`` `(1,)`, ``history_item_ids`` `(1, N)`, ``history_action_ids`` / ``history_action_times``
        `(1, N, E)` and, where used, ``history_time_mask``, ``history_mask``, ``history_item_side_ids``
        `(1, N, F)`, ``user_side_ids`` `(1, S, L)`. Candidate inputs (``item_ids``) go to ``score_candidates``.
        """
        unknown = sorted(set(user_inputs) - set(USER_INPUT_NAMES))
        if unknown:
            raise ValueError(
                f"encode_user() got {unknown}; it takes the user's inputs {list(USER_INPUT_NAMES)}. Candidate ids "
                "(item_ids, item_side_ids) go to score_candidates()."
            )
        missing = [name for name in USER_INPUT_NAMES[:4] if user_inputs.get(name) is None]
        if missing:
            raise ValueError(f"encode_user() is missing {missing}; pass one user's history (batch size 1).")
        history_item_ids = user_inputs["history_item_ids"]
        _check_history_shapes(history_item_ids, user_inputs["history_action_ids"], user_inputs["history_action_times"])
        if history_item_ids.shape[0] != 1 or user_inputs["user_ids"].shape != (1,):
            raise ValueError(
                f"encode_user() encodes one user: user_ids must have shape (1,) and history_item_ids (1, N); got "
                f"{tuple(user_inputs['user_ids'].shape)} and {tuple(history_item_ids.shape)}. Encode users one at "
                "a time."
            )
        encoder_model = self.model.a2gen
        history_mask = user_inputs.get("history_mask")
        history_mask = (history_item_ids != 0) if history_mask is None else history_mask.bool()
        history_action_ids = user_inputs["history_action_ids"]
        event_mask = (history_action_ids != 0) & history_mask.unsqueeze(-1)
        user_features = encoder_model.features.user_features(user_inputs["user_ids"], user_inputs.get("user_side_ids"))
        history_features = encoder_model.features.item_features(
            history_item_ids, user_inputs.get("history_item_side_ids")
        )
        events = encoder_model.event_embedding(
            history_action_ids * event_mask, user_inputs["history_action_times"], user_inputs.get("history_time_mask")
        )
        item_sequences, _, _ = encoder_model.encoder.encode_items(history_features, events, event_mask)
        # CAM has no positions, so padding items can simply be dropped: every later step sees real items only.
        real = history_mask[0]
        level2_inputs = torch.cat([history_features[0, real], item_sequences[0, real]], dim=-1)

        attention = encoder_model.encoder.item_attention
        projected = attention.sequence_projection(level2_inputs)

        def heads(states: torch.Tensor) -> torch.Tensor:
            return states.view(-1, attention.num_heads, attention.head_size).transpose(0, 1)

        queries = heads(attention.query_from_sequence(projected))
        keys, values = heads(attention.key(projected)), heads(attention.value(projected))
        scores = queries @ keys.transpose(1, 2) / math.sqrt(attention.head_size)
        if scores.numel():  # an empty history has nothing to normalise
            scores = scores - scores.amax(dim=-1, keepdim=True)
        score_exponentials = torch.exp(scores)
        history = None
        if encoder_model.extra_features.size:
            side_ids = user_inputs.get("history_item_side_ids")
            history = {
                "history_action_ids": history_action_ids[:, real],
                "history_mask": history_mask[:, real],
                "history_item_ids": history_item_ids[:, real],
                "history_item_side_ids": side_ids[:, real] if side_ids is not None else None,
            }
        return UserState(user_features, queries, keys, values, score_exponentials, history)

    def extra_features(
        self, user_state: UserState, item_ids: torch.LongTensor, item_side_ids: torch.LongTensor | None = None
    ) -> torch.Tensor | None:
        """The model's count / propensity / popularity features of C candidates `(C, De)`; None without them."""
        if user_state.history is None:
            return None
        # The history keeps batch size 1: what depends on it alone is computed once for all candidates.
        return self.model.a2gen.extra_features(**user_state.history, item_ids=item_ids, item_side_ids=item_side_ids)

    def _check_candidates(
        self, user_state: UserState, item_ids: torch.Tensor, item_side_ids: torch.Tensor | None
    ) -> None:
        if not isinstance(user_state, UserState):
            raise TypeError(f"user_state must be the UserState from encode_user(), got {type(user_state).__name__}.")
        if not isinstance(item_ids, torch.Tensor) or item_ids.dim() != 1 or item_ids.is_floating_point():
            raise ValueError(
                "item_ids must be a 1-D integer tensor of candidate ids, shape (C,); got "
                f"{type(item_ids).__name__} {tuple(getattr(item_ids, 'shape', ()))}."
            )
        buckets = self.config.item_buckets
        if item_ids.numel() and (item_ids.min() < 0 or item_ids.max() >= buckets):
            raise ValueError(f"item_ids must lie in [0, item_buckets={buckets}); hash raw ids with the tokenizer.")
        fields_needed = self.config.num_item_side_features
        if fields_needed and item_side_ids is None:
            raise ValueError(f"This model reads {fields_needed} item side features: pass item_side_ids (C, F).")
        if item_side_ids is not None:
            if not fields_needed:
                raise ValueError(
                    "This model has no item side features (num_item_side_features=0); drop item_side_ids."
                )
            if item_side_ids.shape != (item_ids.shape[0], fields_needed):
                raise ValueError(
                    f"item_side_ids must have shape (C, F) = ({item_ids.shape[0]}, {fields_needed}), "
                    f"got {tuple(item_side_ids.shape)}."
                )

    @torch.no_grad()
    def score_candidates(
        self, user_state: UserState, item_ids: torch.LongTensor, item_side_ids: torch.LongTensor | None = None
    ) -> A2GenActionPrediction:
        """
        Scores C candidates for the user of ``user_state``.

        Args:
            item_ids (`torch.LongTensor` of shape `(C,)`): hashed candidate item ids.
            item_side_ids (`torch.LongTensor` of shape `(C, F)`, *optional*): their side features.
        Returns:
            :class:`A2GenActionPrediction` with `(C, vocab_size)` tensors, equal to ``predict_actions`` on a batch
            that repeats the user's history C times (C = 0 gives empty tensors).
        """
        self._check_candidates(user_state, item_ids, item_side_ids)
        total = item_ids.shape[0]
        if total == 0:
            empty = torch.zeros(0, self.config.vocab_size, device=item_ids.device)
            return A2GenActionPrediction(action_probabilities=empty, expected_times=empty, expected_seconds=empty)
        chunk = self.chunk_size or total
        outputs = []
        autocast = torch.autocast(self.device.type, dtype=self.dtype) if self.dtype is not None else nullcontext()
        with autocast:
            for start in range(0, total, chunk):
                ids = item_ids[start : start + chunk]
                side = item_side_ids[start : start + chunk] if item_side_ids is not None else None
                short = chunk - ids.shape[0]
                if short and self._run is not self.program:  # keep the compiled shape fixed
                    ids = F.pad(ids, (0, short))
                    side = F.pad(side, (0, 0, 0, short)) if side is not None else None
                result = self._run(*user_state.as_tuple(), ids, side, self.extra_features(user_state, ids, side))
                outputs.append([tensor[: chunk - short].float() for tensor in result])
        probabilities, expected_times, seconds = (torch.cat(parts) for parts in zip(*outputs))
        return A2GenActionPrediction(
            action_probabilities=probabilities, expected_times=expected_times, expected_seconds=seconds
        )

    @torch.no_grad()
    def generate(
        self,
        user_state: UserState,
        item_ids: torch.LongTensor,
        item_side_ids: torch.LongTensor | None = None,
        max_new_tokens: int | None = None,
        use_cache: bool = True,
    ) -> A2GenGenerateOutput:
        """
        Greedy timed action sequences for C candidates of one user, as ``model.generate(do_sample=False,
        return_dict_in_generate=True)`` would give on the repeated batch; EAG decodes with the key/value cache,
        batched over candidates. Returns sequences `(C, 1 + steps)` and their normalised times.
        """
        self._check_candidates(user_state, item_ids, item_side_ids)
        if item_ids.shape[0] == 0:
            raise ValueError("generate() needs at least one candidate in item_ids.")
        context = self.program.generation_context(
            *user_state.as_tuple(), item_ids, item_side_ids, self.extra_features(user_state, item_ids, item_side_ids)
        )
        return self.model.generate_from_context(
            context,
            do_sample=False,
            num_beams=1,
            max_new_tokens=max_new_tokens,
            use_cache=use_cache,
            return_dict_in_generate=True,
        )

    def export(
        self, user_state: UserState, item_ids: torch.LongTensor, item_side_ids: torch.LongTensor | None = None
    ) -> torch.export.ExportedProgram:
        """
        ``torch.export`` of the candidate side (:class:`A2GenRankingProgram`), with the number of candidates and of
        history items dynamic. Call the result as
        ``program.module()(*user_state.as_tuple(), item_ids, item_side_ids)`` -> (probabilities, expected times,
        expected seconds). The example inputs need at least 2 history items and 2 candidates.
        """
        self._check_candidates(user_state, item_ids, item_side_ids)
        if user_state.history is not None:
            raise ValueError(
                "export() covers models without the count, propensity or popularity features; score such a model "
                "with score_candidates (eagerly or with compile=True)."
            )
        if user_state.num_history_items < 2 or item_ids.shape[0] < 2:
            raise ValueError("export() traces with an example of at least 2 history items and 2 candidates.")
        candidates, history = torch.export.Dim("candidates"), torch.export.Dim("history_items")
        heads_dims = {1: history}
        dynamic_shapes = (
            None,
            heads_dims,
            heads_dims,
            heads_dims,
            {1: history, 2: history},
            {0: candidates},
            {0: candidates} if item_side_ids is not None else None,
        )
        with torch.no_grad():
            return torch.export.export(
                self.program,
                (*user_state.as_tuple(), item_ids, item_side_ids),
                dynamic_shapes=dynamic_shapes,
            )
