"""PyTorch A2Gen: CAM, HSE and the action-sequence generators (EAG / IAG) of arXiv 2604.25834.

Reading guide (the paper's figures in code):

- ``ContextAwareAttention`` is CAM (``img/cam.png``): queries from [sequence ; context], keys and values from the
  sequence, one output projection per head, a context gate over heads, plus a residual from the context.
- ``HierarchicalSequenceEncoder`` is HSE (``img/hse.png``): CAM_act over each history item's action events
  (context = that item) gives Seq_j; CAM_item over [item_j ; Seq_j] (context = the target item) gives Vec_hist.
- ``ExplicitActionGenerator`` is EAG (``img/agen.png``) and ``ImplicitActionGenerator`` is IAG
  (``img/iagen.png``); both build on CAM_gen with the context [user ; Vec_hist ; target item].
"""

from __future__ import annotations

import contextvars
import copy
import inspect
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import DynamicCache
from transformers.utils import ModelOutput

from .attention_kernels import pooled_short_attention, shifted_exp, shifted_exp_
from .attention_kernels import small_softmax as _small_softmax
from .configuration_a2gen import CAM_GATE_INPUTS, A2GenConfig, ActionSequenceConfig, register_the_package
from .features_a2gen import (  # noqa: F401  (re-exported: public names stay importable from here)
    A2GenOccurrenceHead,
    ExtraContextFeatures,
    HistoryCountFeatures,
    RunningStandardizer,
    TargetPopularityFeatures,
    WidePath,
    history_action_propensity,
    masked_pool,
    occurrence_loss,
    occurrence_probabilities,
    own_outcomes_while_training,
    popularity_keyed_by_raw_id,
    scale_pooled,
    target_categories,
)
from .generation_a2gen import A2GenGenerationMixin, in_model_dtype, never_generated, times_of_actions
from .strict_loading import DamagedWeightsError, StrictLoadingMixin, check_weight_files
from .targets import (  # noqa: F401
    IGNORE_INDEX,
    check_label_ids,
    check_labels_open_with_start,
    first_occurrence_targets,
    is_time_known,
)
from .time_encoding import check_normalised_times, denormalize_times, log_seconds, normalize_seconds


@dataclass
class A2GenModelOutput(ModelOutput):
    """
    Output of :class:`A2GenModel` (the encoder: embeddings, CAM_act, CAM_item).

    Args:
        history_representation (`torch.FloatTensor` of shape `(batch_size, hidden_size)`): Vec_hist.
        item_sequence_representations (`torch.FloatTensor` of shape `(batch_size, num_history_items, hidden_size)`):
            Seq_j, the level-1 summary of each history item's action events (zeros for padding items).
        user_features (`torch.FloatTensor` of shape `(batch_size, user_feature_size)`).
        target_item_features (`torch.FloatTensor` of shape `(batch_size, item_feature_size)`).
        generation_context (`torch.FloatTensor` of shape `(batch_size, context_size)`): [user ; Vec_hist ; item] (then the parts of options beyond the paper),
            the context of CAM_gen.
        hidden_states (`tuple(torch.FloatTensor)`, returned with `output_hidden_states=True`): event embeddings
            `(B, N, E, event_size)` (as embedded, with the (item, moment) vectors of ``history_event_item_moments``
            added, before any ``history_event_cross_layers``), CAM_act outputs `(B, N, E, d)`, CAM_item inputs
            `(B, N, item_feature_size + d)` and CAM_item outputs `(B, N, d)`.
        attentions (`tuple(torch.FloatTensor)`, returned with `output_attentions=True`): CAM_act probabilities
            `(B * N, heads, E, E)` (one row per history item; the tensor CAM_act used, so gradients reach it) and
            CAM_item probabilities `(B, heads, N, N)`.
    """

    history_representation: torch.FloatTensor | None = None
    item_sequence_representations: torch.FloatTensor | None = None
    user_features: torch.FloatTensor | None = None
    target_item_features: torch.FloatTensor | None = None
    generation_context: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class A2GenActionGenerationOutput(ModelOutput):
    """
    Output of :class:`A2GenForActionGeneration`. Position ``i`` of ``logits`` / ``times`` predicts action ``i + 1``
    of the sequence (the action after ``start`` is position 0).

    Args:
        loss (`torch.FloatTensor` of shape `()`, with `labels`): the weighted sum of the parts below.
        action_loss / time_loss / order_loss / aux_action_loss / aux_time_loss (`torch.FloatTensor` of shape `()`):
            masked cross-entropy, time MSE, time-order hinge and (IAG) the auxiliary heads' cross-entropy and MSE;
            unweighted.
        logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, vocab_size)`): action scores.
        times (`torch.FloatTensor` of shape `(batch_size, sequence_length)`): predicted normalised times; with
            `config.time_per_action`, `(batch_size, sequence_length, vocab_size)`: each action's time at each
            position (:func:`times_of_actions` reads the time of given actions off it).
        aux_logits / aux_times: IAG only, the auxiliary heads on the slots (same shapes).
        occurrence_logits (`torch.FloatTensor` of shape `(batch_size, vocab_size)`): with `config.occurrence_head`,
            per action the logit of "it happens after start"; occurrence_loss: its binary cross-entropy (unweighted).
        cache (`DynamicCache`): EAG only, CAM_gen keys and values when `use_cache=True`.
        history_representation (`torch.FloatTensor` of shape `(batch_size, hidden_size)`): Vec_hist.
        hidden_states / attentions: the encoder's (see :class:`A2GenModelOutput`) followed by the generator's
            CAM_gen outputs `(B, T, d)` / probabilities `(B, heads, T, T_keys)`.
    """

    loss: torch.FloatTensor | None = None
    action_loss: torch.FloatTensor | None = None
    time_loss: torch.FloatTensor | None = None
    order_loss: torch.FloatTensor | None = None
    aux_action_loss: torch.FloatTensor | None = None
    aux_time_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    times: torch.FloatTensor | None = None
    aux_logits: torch.FloatTensor | None = None
    aux_times: torch.FloatTensor | None = None
    occurrence_logits: torch.FloatTensor | None = None
    occurrence_loss: torch.FloatTensor | None = None
    cache: DynamicCache | None = None
    history_representation: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class A2GenActionPrediction(ModelOutput):
    """
    Ranking scores from :meth:`A2GenForActionGeneration.predict_actions`, indexed by action id (column 0 is padding).

    Args:
        action_probabilities (`torch.FloatTensor` of shape `(batch_size, vocab_size)`): P(the action happens).
        expected_times (`torch.FloatTensor` of shape `(batch_size, vocab_size)`): expected normalised time of the
            action's first occurrence, given that it happens.
        expected_seconds (`torch.FloatTensor` of shape `(batch_size, vocab_size)`): the same converted to seconds,
            i.e. expm1 of the expected log1p-seconds: a geometric-type mean, at or below the mean in seconds where the
            slots put the action at different times (times are learned in log-seconds); the column of the end action
            is the predicted watch (leave) time.
    """

    action_probabilities: torch.FloatTensor | None = None
    expected_times: torch.FloatTensor | None = None
    expected_seconds: torch.FloatTensor | None = None


class A2GenTimeEncoding(nn.Module):
    """
    Normalised time `(...)` -> `(..., time_embedding_size)`: a linear map of [z, sin(f_k z), cos(f_k z)] and, with
    ``config.time_buckets`` > 0, of a one-hot of the log-seconds bucket (a learned vector per bucket).
    """

    # Buckets of log1p(seconds) per unit: bucket b holds log1p(seconds) in [b / 1.5, (b + 1) / 1.5).
    BUCKETS_PER_LOG_SECOND = 1.5

    def __init__(self, config: A2GenConfig):
        super().__init__()
        self.num_frequencies = config.num_time_frequencies
        self.num_buckets = config.time_buckets
        # z -> log1p(seconds) for the buckets (the tokenizer's statistics, kept in the config).
        self.time_log_mean, self.time_log_std = float(config.time_log_mean), float(config.time_log_std)
        self.projection = nn.Linear(1 + 2 * self.num_frequencies + self.num_buckets, config.time_embedding_size)

    def basis(self, times: torch.Tensor) -> torch.Tensor:
        """
        `(...)` -> the features the linear map reads, [z, sin(f_k z), cos(f_k z), one-hot bucket]
        `(..., 1 + 2 * frequencies + buckets)`.
        """
        times = times.unsqueeze(-1)
        features = [times]
        if self.num_frequencies:
            # Geometric frequencies from 0.5 to 16 per unit of z resolve both seconds and days on the log scale.
            exponents = torch.arange(self.num_frequencies, device=times.device, dtype=times.dtype)
            frequencies = 0.5 * 32.0 ** (exponents / max(self.num_frequencies - 1, 1))
            angles = times * frequencies
            features += [torch.sin(angles), torch.cos(angles)]
        if self.num_buckets:
            features.append(self.bucket_one_hot(times))
        return features[0] if len(features) == 1 else torch.cat(features, dim=-1)

    def bucket_one_hot(self, times: torch.Tensor) -> torch.Tensor:
        """`(..., 1)` normalised times -> `(..., buckets)`: one-hot of ``floor(1.5 * log1p(seconds))``, capped."""
        seconds_log = log_seconds(times.detach(), self.time_log_mean, self.time_log_std)
        bucket = (self.BUCKETS_PER_LOG_SECOND * seconds_log).floor().clamp(0, self.num_buckets - 1)
        return (bucket == torch.arange(self.num_buckets, device=times.device, dtype=bucket.dtype)).to(times.dtype)

    def forward(self, times: torch.Tensor) -> torch.Tensor:
        return self.projection(self.basis(times))


class A2GenEventEmbedding(nn.Module):
    """An event (action id, normalised time) -> concat(time embedding, action embedding); zero where absent."""

    # linear_features_first reads actions as one-hot columns up to this vocabulary size, as a row lookup beyond.
    ONE_HOT_ACTIONS = 64

    def __init__(self, config: A2GenConfig):
        super().__init__()
        self.action_embeddings = nn.Embedding(config.vocab_size, config.action_embedding_size, padding_idx=0)
        # The scale it starts at (A2GenPreTrainedModel._init_weights reads this; docs/results.md (d)).
        self.action_embeddings.init_std = config.action_embedding_init_std
        self.time_encoding = A2GenTimeEncoding(config)
        self.output_size = config.action_embedding_size + config.time_embedding_size

    def forward(
        self, action_ids: torch.LongTensor, times: torch.Tensor, time_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`action_ids`, `times`, `time_mask`: `(...)` -> `(..., output_size)`."""
        present = (action_ids != 0).unsqueeze(-1)
        time_embedding = self.time_encoding(times)
        if time_mask is not None:
            # An unknown time must not look like "0 s": its time embedding is zeroed, the action embedding stays.
            time_embedding = time_embedding * is_time_known(time_mask).unsqueeze(-1).to(time_embedding.dtype)
        event = torch.cat([time_embedding, self.action_embeddings(action_ids)], dim=-1)
        return event * present.to(event.dtype)

    def linear_features_first(
        self,
        action_ids: torch.LongTensor,
        times: torch.Tensor,
        time_mask: torch.Tensor | None,
        weight: torch.Tensor,
        bias: torch.Tensor,
    ) -> torch.Tensor:
        """
        ``F.linear(self(action_ids, times, time_mask), weight, bias)`` with the output features first: `(...)` ids
        and times, `(out, output_size)` weight, `(out,)` bias -> `(out, ...)`, without forming the events. The map
        is composed with the time encoding's linear map and with the action table (both linear), so each event costs
        a lookup in an `(out, vocab)` table and a product with its few time features: what CAM_act's sequence maps
        cost on the events while training (equal up to rounding; tests/test_modeling.py).
        """
        projection, table = self.time_encoding.projection, self.action_embeddings.weight
        time_weight, action_weight = weight[:, : projection.out_features], weight[:, projection.out_features :]
        # One product over [time features ; 1 ; one-hot action ; 1] per event, each part but the last (the bias's)
        # zero where the event's time (or the event) is absent; the padding action's row is zero. The bias rides on
        # the product as a column of ones: an addmm would first copy it into every column of the output.
        timed = action_ids != 0
        if time_mask is not None:
            timed = timed & is_time_known(time_mask)
        timed = timed.reshape(-1, 1).to(table.dtype)
        features = [self.time_encoding.basis(times).reshape(-1, projection.in_features) * timed, timed]
        maps = [time_weight @ projection.weight, (time_weight @ projection.bias).unsqueeze(1)]
        flat_ids = action_ids.reshape(-1)
        if table.shape[0] <= self.ONE_HOT_ACTIONS:
            # A comparison, not F.one_hot: no int64 (events x vocab) tensor to slice and convert (1.4x faster).
            actions = torch.arange(1, table.shape[0], device=flat_ids.device)
            features.append((flat_ids.unsqueeze(1) == actions).to(table.dtype))
            maps.append(action_weight @ table[1:].t())
        features.append(torch.ones_like(timed))
        maps.append(bias.unsqueeze(1))
        projected = torch.cat(maps, dim=1) @ torch.cat(features, dim=1).t()
        if table.shape[0] > self.ONE_HOT_ACTIONS:  # a large action vocabulary: a row lookup instead
            present = (flat_ids != 0).to(table.dtype).unsqueeze(1)
            projected = projected + (F.embedding(flat_ids, table @ action_weight.t()) * present).t()
        return projected.view(weight.shape[0], *action_ids.shape)


class A2GenFeatureEmbeddings(nn.Module):
    """
    Hashed id tables for users, items (target, history and user side lists) and item side features.

    With ``config.sparse_embeddings`` the three tables give sparse gradients (only the rows a batch read); see
    ``a2gen_hf.training.optimization``.

    With ``config.rare_id_threshold > 0`` the user and item tables get ``rare_id_buckets`` extra rows, and the
    buffers ``user_rows`` / ``item_rows`` (one entry per hash bucket, saved with the model) say which row each bucket
    reads: its own, or a shared one once :meth:`mark_rare_ids` has flagged it as rare.
    """

    def __init__(self, config: A2GenConfig):
        super().__init__()
        width = config.id_embedding_size
        self.num_item_side_features = config.num_item_side_features
        self.num_user_side_lists = config.num_user_side_lists
        self.rare_id_buckets = config.rare_id_buckets if config.rare_id_threshold > 0 else 0
        # sparse: backward gives only the rows a batch read (training/optimization.py updates just those).
        sparse = bool(getattr(config, "sparse_embeddings", False))
        self.item_embeddings = nn.Embedding(
            config.item_buckets + self.rare_id_buckets, width, padding_idx=0, sparse=sparse
        )
        self.user_embeddings = nn.Embedding(
            config.user_buckets + self.rare_id_buckets, width, padding_idx=0, sparse=sparse
        )
        if self.rare_id_buckets:
            self.register_buffer("item_rows", torch.arange(config.item_buckets, dtype=torch.int32))
            self.register_buffer("user_rows", torch.arange(config.user_buckets, dtype=torch.int32))
        else:
            self.item_rows = self.user_rows = None
        self.side_feature_embeddings = (
            nn.Embedding(config.side_feature_buckets, width, padding_idx=0, sparse=sparse)
            if self.num_item_side_features
            else None
        )
        self.user_side_mlp = (
            nn.Sequential(nn.Linear(self.num_user_side_lists * width, width), nn.ReLU())
            if self.num_user_side_lists
            else None
        )
        item_feature_size = width * (1 + self.num_item_side_features)
        # Beyond the paper (A2GenConfig.history_event_item_moments; the baselines' configs have no such field): a
        # vector per (item, moment of an event in it).
        self.item_moments = None
        if getattr(config, "history_event_item_moments", 0):
            if config.history_event_moment_source == "table":
                self.item_moments = ItemMomentTable(config, config.item_buckets + self.rare_id_buckets, sparse)
            else:
                self.item_moments = ItemMomentDecoder(config, item_feature_size)
        # Beyond the paper (A2GenConfig.target_item_moments): the target's moment profile, from the same vectors.
        self.target_moment_logits = self.target_moment_map = None
        if getattr(config, "target_item_moments", False):
            self.target_moment_logits = nn.Parameter(torch.zeros(config.history_event_item_moments))
            self.target_moment_map = nn.Linear(config.action_embedding_size + config.time_embedding_size, item_feature_size)
        # Beyond the paper (A2GenConfig.history_item_exposure): a history item's profile over the moments watched.
        self.exposure_map = None
        if getattr(config, "history_item_exposure", False):
            self.exposure_map = nn.Linear(config.action_embedding_size + config.time_embedding_size, item_feature_size)
        self.dropout = nn.Dropout(config.embedding_dropout_prob)
        self.use_id_embeddings = config.use_id_embeddings
        self.item_feature_size = item_feature_size
        self.user_feature_size = width * (2 if self.num_user_side_lists else 1)
        self.freeze_unread_tables()

    def freeze_unread_tables(self) -> None:
        """Id-free (``use_id_embeddings=False``): the user and item id tables are never read, so they take no
        gradient (``requires_grad=False``). Otherwise no optimizer would skip them, and DistributedDataParallel
        would stop at the second step waiting for their gradients. They stay in the checkpoint, at their init."""
        if not self.use_id_embeddings:
            for table in (self.item_embeddings, self.user_embeddings):
                table.weight.requires_grad_(False)

    def id_tables(self) -> list[nn.Embedding]:
        """The hashed-id ``nn.Embedding`` tables (items, users, item side features): the ones that may give sparse
        gradients. Tables moved to another engine (``a2gen_hf.torchrec_tables``) are not listed."""
        tables = [self.item_embeddings, self.user_embeddings, self.side_feature_embeddings]
        if isinstance(self.item_moments, ItemMomentTable):
            tables.append(self.item_moments.table)
        return [table for table in tables if isinstance(table, nn.Embedding)]

    def _ids(
        self,
        table: nn.Embedding,
        ids: torch.LongTensor,
        rows: torch.Tensor | None = None,
        looked_up: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The table's rows for `ids` (through the bucket -> row map `rows`), or `looked_up` (read already), with
        dropout; zeros for an id-free model."""
        if not self.use_id_embeddings:
            return torch.zeros(*ids.shape, table.embedding_dim, device=ids.device, dtype=table.weight.dtype)
        return self.dropout(table(ids if rows is None else rows[ids].long()) if looked_up is None else looked_up)

    @staticmethod
    def looked_up(table: nn.Module, *ids: torch.LongTensor) -> list[torch.Tensor]:
        """
        One call of `table` for several id tensors `(...)` -> their rows `(..., width)` (no dropout). A table that
        updates its own rows in its backward pass (TorchRec's fused optimizer, ``a2gen_hf.torchrec_tables``) updates
        each row once per call: read in one call, a row read twice in a step (a target item that is also in its
        user's history) gets one update from the sum of its gradients, as a plain optimizer gives it.
        """
        rows = table(torch.cat([each.reshape(-1) for each in ids]))
        parts = rows.split([each.numel() for each in ids])
        return [part.reshape(*each.shape, rows.shape[-1]) for part, each in zip(parts, ids)]

    def updates_rows_in_backward(self) -> bool:
        """Whether the item or side-feature table updates its own rows in its backward pass (swapped for TorchRec's,
        ``a2gen_hf.torchrec_tables``): then :meth:`batch_features` reads each in one call. An ``nn.Embedding``'s
        separate reads are summed by autograd before any optimizer sees them."""
        return any(not isinstance(table, nn.Embedding | None) for table in (self.item_embeddings, self.side_feature_embeddings))

    def batch_features(
        self,
        user_ids: torch.LongTensor,
        user_side_ids: torch.LongTensor | None,
        item_ids: torch.LongTensor,
        item_side_ids: torch.LongTensor | None,
        history_item_ids: torch.LongTensor,
        history_item_side_ids: torch.LongTensor | None,
        action_times: torch.Tensor,
        time_mask: torch.Tensor | None,
        event_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        A batch's user `(B, user_feature_size)`, target item `(B, item_feature_size)` and history item
        `(B, N, item_feature_size)` features: :meth:`user_features`, :meth:`target_item_features` and
        :meth:`history_item_features`. Where a table updates itself in its backward pass
        (:meth:`updates_rows_in_backward`), the item table (targets, history, user side lists) and the side-feature
        table are each read in one call (:meth:`looked_up`); the values are the same either way. `action_times`,
        `time_mask`, `event_mask` `(B, N, E)` are read with ``config.history_item_exposure`` only.
        """
        if not self.updates_rows_in_backward():
            return (
                self.user_features(user_ids, user_side_ids),
                self.target_item_features(item_ids, item_side_ids),
                self.history_item_features(history_item_ids, history_item_side_ids, action_times, time_mask, event_mask),
            )
        target_rows = history_rows = target_sides = history_sides = None
        side_list_rows = []
        if not isinstance(self.item_embeddings, nn.Embedding):
            # An id-free model reads the item table for the user side lists only.
            item_reads = [self.item_table_rows(item_ids), self.item_table_rows(history_item_ids)] if self.use_id_embeddings else []
            if self.user_side_mlp is not None and user_side_ids is not None:
                item_reads.append(self.item_table_rows(user_side_ids))
            rows = self.looked_up(self.item_embeddings, *item_reads) if item_reads else []
            if self.use_id_embeddings:
                target_rows, history_rows, *rows = rows
            side_list_rows = rows
        if not isinstance(self.side_feature_embeddings, nn.Embedding | None) and (
            item_side_ids is not None and history_item_side_ids is not None
        ):
            target_sides, history_sides = self.looked_up(self.side_feature_embeddings, item_side_ids, history_item_side_ids)
        return (
            self.user_features(user_ids, user_side_ids, *side_list_rows),
            self.target_item_features(item_ids, item_side_ids, (target_rows, target_sides)),
            self.history_item_features(
                history_item_ids, history_item_side_ids, action_times, time_mask, event_mask, (history_rows, history_sides)
            ),
        )

    def reset_rare_ids(self) -> None:
        """Every bucket reads its own row again."""
        if self.rare_id_buckets:
            for rows in (self.item_rows, self.user_rows):
                rows.copy_(torch.arange(len(rows), dtype=rows.dtype, device=rows.device))

    @torch.no_grad()
    def mark_rare_ids(self, item_counts: torch.Tensor, user_counts: torch.Tensor, threshold: int) -> dict[str, int]:
        """
        Point every bucket whose count (`(item_buckets,)` / `(user_buckets,)`) is below `threshold` at a shared row
        (bucket modulo ``rare_id_buckets``, after the table's own rows); bucket 0 stays padding. Returns how many
        buckets of each table were seen and how many of those are rare.
        """
        if not self.rare_id_buckets:
            raise ValueError("This model has no rows for rare ids; build it with rare_id_threshold > 0.")
        summary = {}
        for name, rows, counts in (("item", self.item_rows, item_counts), ("user", self.user_rows, user_counts)):
            if counts.shape != rows.shape:
                raise ValueError(
                    f"{name}_counts has shape {tuple(counts.shape)}; give one count per {name} hash bucket "
                    f"({len(rows)})."
                )
            counts = counts.to(rows.device)
            buckets = torch.arange(len(rows), device=rows.device)
            rare = (counts < threshold) & (buckets != 0)
            shared = len(rows) + buckets % self.rare_id_buckets
            rows.copy_(torch.where(rare, shared, buckets).to(rows.dtype))
            seen = (counts > 0) & (buckets != 0)
            summary[f"{name}_buckets_seen"] = int(seen.sum())
            summary[f"{name}_buckets_rare"] = int((rare & seen).sum())
        return summary

    def item_table_rows(self, item_ids: torch.LongTensor) -> torch.LongTensor:
        """Item hash buckets `(...)` -> the item table's rows they read `(...)` (their own, or a shared rare row)."""
        return item_ids if self.item_rows is None else self.item_rows[item_ids].long()

    def item_moment_features(
        self,
        item_ids: torch.LongTensor | None,
        item_features: torch.Tensor,
        times: torch.Tensor,
        time_mask: torch.Tensor | None,
        present: torch.Tensor,
    ) -> torch.Tensor:
        """
        The (item, moment) vectors of history events (``config.history_event_item_moments``): the items' ids `(...)`
        (read by the ``"table"`` source only) and features `(..., Fi)`, the events' times, time mask and presence
        `(..., E)` -> `(..., E, event_size)`, zero where the event is absent or its time unknown.
        """
        known = present.bool() if time_mask is None else present.bool() & is_time_known(time_mask)
        if isinstance(self.item_moments, ItemMomentDecoder):
            return self.item_moments(item_features, times, known)
        if item_ids is None:
            raise ValueError(
                "This model reads a table of (item, moment) vectors (history_event_moment_source='table'): pass the "
                "history items' ids with their events."
            )
        return self.item_moments(self.item_table_rows(item_ids), times, known)

    def item_features(
        self,
        item_ids: torch.LongTensor,
        side_ids: torch.LongTensor | None,
        looked_up: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None),
    ) -> torch.Tensor:
        """`item_ids` `(...)`, `side_ids` `(..., F)` -> `(..., item_feature_size)`; `looked_up`: their item and side
        rows where :meth:`batch_features` read them already."""
        item_rows, side_rows = looked_up
        features = self._ids(self.item_embeddings, item_ids, self.item_rows, item_rows)
        if self.side_feature_embeddings is None:
            return features
        if side_ids is None:
            raise ValueError(
                f"This model reads {self.num_item_side_features} item side features: pass `item_side_ids` and "
                "`history_item_side_ids` (the collator builds them), or use a config with num_item_side_features=0."
            )
        side = self.dropout(self.side_feature_embeddings(side_ids) if side_rows is None else side_rows).flatten(-2)
        return torch.cat([features, side], dim=-1)

    def _every_moment(self, item_ids: torch.LongTensor, item_features: torch.Tensor) -> torch.Tensor:
        """The items' (item, moment) vectors at every moment bucket: ids `(...)` (the table's source) and features
        `(..., Fi)` (the decoder's) -> `(..., moments, event_size)`."""
        if isinstance(self.item_moments, ItemMomentDecoder):
            return self.item_moments.every_moment(item_features)
        return self.item_moments.every_moment(self.item_table_rows(item_ids))

    def target_item_features(
        self,
        item_ids: torch.LongTensor,
        side_ids: torch.LongTensor | None,
        looked_up: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None),
    ) -> torch.Tensor:
        """
        The target (candidate) items' features `(..., item_feature_size)`: :meth:`item_features`, plus, with
        ``config.target_item_moments``, the item's moment profile (its (item, moment) vectors at every moment bucket,
        averaged with learned weights per bucket) mapped to that width. `looked_up` as :meth:`item_features`.
        """
        features = self.item_features(item_ids, side_ids, looked_up)
        if self.target_moment_map is None:
            return features
        vectors = self._every_moment(item_ids, features)
        weights = torch.softmax(self.target_moment_logits.float(), dim=0).to(vectors.dtype)
        return features + self.target_moment_map(torch.einsum("...md,m->...d", vectors, weights))

    def history_item_features(
        self,
        item_ids: torch.LongTensor,
        side_ids: torch.LongTensor | None,
        action_times: torch.Tensor,
        time_mask: torch.Tensor | None,
        event_mask: torch.Tensor,
        looked_up: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None),
    ) -> torch.Tensor:
        """
        The history items' features `(..., item_feature_size)` from their ids `(...)`, side ids `(..., F)` and
        events' times, time mask and presence `(..., E)`: :meth:`item_features`, plus, with
        ``config.history_item_exposure``, the mean of the item's (item, moment) vectors over the moment buckets from
        the first to that of its latest event with a known time (what the user saw of it: on a video, from the start
        to the leave), mapped to that width. An item without an event of known time gets nothing added. `looked_up`
        as :meth:`item_features`.
        """
        features = self.item_features(item_ids, side_ids, looked_up)
        if self.exposure_map is None:
            return features
        known = event_mask.bool() if time_mask is None else event_mask.bool() & is_time_known(time_mask)
        last = self.item_moments.moments(action_times).masked_fill(~known, -1).amax(-1)
        buckets = torch.arange(self.item_moments.moments.count, device=last.device)
        watched = (buckets <= last.unsqueeze(-1)).to(features.dtype)
        vectors = self._every_moment(item_ids, features)
        profile = torch.einsum("...md,...m->...d", vectors, watched) / watched.sum(-1, keepdim=True).clamp_min(1.0)
        return features + self.exposure_map(profile) * (last >= 0).unsqueeze(-1).to(features.dtype)

    def user_features(
        self,
        user_ids: torch.LongTensor,
        user_side_ids: torch.LongTensor | None,
        side_list_rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`user_ids` `(B,)`, `user_side_ids` `(B, S, L)` -> `(B, user_feature_size)`; `side_list_rows`
        `(B, S, L, width)`: the side lists' item rows where :meth:`batch_features` read them already."""
        features = self._ids(self.user_embeddings, user_ids, self.user_rows)
        if self.user_side_mlp is None:
            return features
        if user_side_ids is None:
            raise ValueError(
                f"This model reads {self.num_user_side_lists} user side lists: pass `user_side_ids` of shape "
                "(batch, lists, length), or use a config with num_user_side_lists=0."
            )
        if side_list_rows is None:
            side_list_rows = self.item_embeddings(self.item_table_rows(user_side_ids))
        pooled = masked_pool(side_list_rows, user_side_ids != 0, "mean")  # the mean of each list's real items
        return torch.cat([features, self.user_side_mlp(pooled.flatten(-2))], dim=-1)


def sdpa_in_fp32(
    queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, attn_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """torch's ``scaled_dot_product_attention`` with autocast off and the operands promoted to at least fp32: scores
    and softmax in at least fp32, as :class:`ContextAwareAttention`'s own kernels compute them (autocast would run
    this op in bf16). Returns the states in that dtype; the caller casts them."""
    dtype = torch.promote_types(keys.dtype, torch.float32)
    with torch.autocast(keys.device.type, enabled=False):
        return F.scaled_dot_product_attention(queries.to(dtype), keys.to(dtype), values.to(dtype), attn_mask=attn_mask)


class ContextAwareAttention(nn.Module):
    """
    CAM, the Context-aware Attention Module (paper Fig. "CAM").

    Each head is a separate sub self-attention layer over the sequence whose queries see [sequence ; context];
    its output is projected back to width d on its own, and a softmax gate computed from the context weighs the
    heads. The projected context is added as a residual. The query map is kept as two parts,
    ``query_from_sequence`` and ``query_from_context``, which equals one linear map of [S ; c] and lets ranking
    reuse the sequence part across candidates (:meth:`sequence_state`, :meth:`pooled_output`).

    ``gate_input`` says what the head gate reads: ``"context"``, the raw context c (the paper's figure and spec), or
    ``"projected"``, the projected context ``context_projection(c)`` (models configured before the option existed).

    The linear maps that compose are applied as one map each (the sequence projection with the query, key and value
    maps; the context projection with the context's query part and, for ``gate_input="projected"``, the gate), and
    the head output projections after the gate, as one product of the concatenated heads: equal in exact
    arithmetic, and fewer, larger matrix products.
    """

    # Without gradients, sequences with at most this many positions (action events, IAG slots, EAG steps) take the
    # loop kernel of ``_short_attention``, several times faster on CPU than batched (L x L) matrix products of that size.
    SHORT_SEQUENCE_LIMIT = 16

    def __init__(
        self,
        sequence_size: int,
        context_size: int,
        hidden_size: int,
        num_heads: int,
        attention_dropout: float = 0.0,
        gate_input: str = "context",
        head_size: int | None = None,
    ):
        super().__init__()
        if gate_input not in CAM_GATE_INPUTS:
            raise ValueError(f"gate_input={gate_input!r} is unknown; use one of {list(CAM_GATE_INPUTS)}.")
        self.num_heads = num_heads
        self.head_size = head_size or hidden_size // num_heads
        # The queries', keys' and values' width: every head's, side by side (= hidden_size unless head_size is set).
        self.attention_size = num_heads * self.head_size
        self.hidden_size = hidden_size
        self.gate_input = gate_input
        self.sequence_projection = nn.Linear(sequence_size, hidden_size)
        self.context_projection = nn.Linear(context_size, hidden_size)
        self.query_from_sequence = nn.Linear(hidden_size, self.attention_size)
        self.query_from_context = nn.Linear(hidden_size, self.attention_size, bias=False)
        self.key = nn.Linear(hidden_size, self.attention_size)
        self.value = nn.Linear(hidden_size, self.attention_size)
        # Initialised here too (as _init_weights does), so a CAM built on its own holds no uninitialised memory.
        self.head_output_weight = nn.Parameter(torch.randn(num_heads, self.head_size, hidden_size) * self.head_size**-0.5)
        self.head_output_bias = nn.Parameter(torch.zeros(num_heads, hidden_size))
        self.head_gate = nn.Linear(context_size if gate_input == "context" else hidden_size, num_heads)
        self.attention_dropout = nn.Dropout(attention_dropout)

    @classmethod
    def from_config(cls, config: A2GenConfig, sequence_size: int, context_size: int) -> ContextAwareAttention:
        """A CAM over `(..., sequence_size)` sequences with `(..., context_size)` contexts, shaped by ``config``."""
        return cls(
            sequence_size,
            context_size,
            config.hidden_size,
            config.num_attention_heads,
            config.attention_probs_dropout_prob,
            config.cam_gate_input,
            config.head_dim,
        )

    # ------------------------------------------------------------------------------------------------------------
    # The linear parts

    def sequence_maps(self) -> tuple[torch.Tensor, torch.Tensor]:
        """
        The sequence projection composed with the query (sequence part), key and value maps: `(3a, S)`, `(3a,)`,
        with a = :attr:`attention_size` (heads x head size; d by default).
        """
        maps = torch.cat([layer.weight for layer in (self.query_from_sequence, self.key, self.value)])
        biases = torch.cat([layer.bias for layer in (self.query_from_sequence, self.key, self.value)])
        projection = self.sequence_projection
        return maps @ projection.weight, maps @ projection.bias + biases

    def project_sequence(self, sequence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(..., sequence_size)` -> the sequence part of the queries, the keys and the values, each `(..., a)`."""
        return F.linear(sequence, *self.sequence_maps()).split(self.attention_size, dim=-1)

    def project_context(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        `(..., context_size)` -> the projected context (the residual) `(..., d)`, the context part of the queries
        `(..., a)` and the head gate `(..., heads)` (a softmax, computed in at least fp32).
        """
        projection, query, gate = self.context_projection, self.query_from_context, self.head_gate
        weights = [projection.weight, query.weight @ projection.weight]
        biases = [projection.bias, query.weight @ projection.bias]
        if self.gate_input == "context":
            weights.append(gate.weight)
            biases.append(gate.bias)
        else:
            weights.append(gate.weight @ projection.weight)
            biases.append(gate.weight @ projection.bias + gate.bias)
        projected, context_queries, gate_logits = F.linear(context, torch.cat(weights), torch.cat(biases)).split(
            [self.hidden_size, self.attention_size, self.num_heads], dim=-1
        )
        return projected, context_queries, _small_softmax(gate_logits)

    def gated_output(
        self,
        head_states: torch.Tensor,
        gate: torch.Tensor,
        projected_context: torch.Tensor,
        count: float | torch.Tensor = 1.0,
    ) -> torch.Tensor:
        """
        `sum_h g_h (head_states_h W_h + count * b_h) + count * projected_context`: head states `(B, ..., heads,
        head_size)`, gate `(B, heads)`, projected context `(B, d)` -> `(B, ..., d)`. The gate is applied before one
        product of the concatenated heads (linear, so the order does not matter). ``count`` > 1 (a number, or one
        per row `(B,)`) gives the sum of ``count`` positions' outputs whose head states were summed.
        """
        batch, heads = gate.shape
        middle = head_states.shape[1:-2]
        shape = (batch, *([1] * len(middle)), heads, 1)
        gated = (head_states * gate.view(shape).to(head_states.dtype)).reshape(batch, *middle, heads * self.head_size)
        weight = self.head_output_weight.reshape(heads * self.head_size, -1)
        if isinstance(count, torch.Tensor):  # one count per row `(B,)`
            count = count.to(projected_context.dtype).unsqueeze(-1)
        constant = count * (gate.to(projected_context.dtype) @ self.head_output_bias + projected_context)
        return gated @ weight.to(gated.dtype) + constant.view(batch, *([1] * len(middle)), constant.shape[-1])

    # ------------------------------------------------------------------------------------------------------------
    # The module

    def forward(
        self,
        sequence: torch.Tensor,
        context: torch.Tensor,
        sequence_mask: torch.Tensor | None = None,
        causal: bool = False,
        cache: DynamicCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Args:
            sequence: `(B, L, sequence_size)`; context: `(B, context_size)`.
            sequence_mask: `(B, L)`, true at real positions; padding positions neither attend nor are attended to.
            causal: position i only sees positions <= i (with a cache, positions are offset by its length).
            cache: EAG decoding; keys and values of earlier positions, extended in place.
        Returns:
            output `(B, L, d)` (zero at padding positions), attention probabilities `(B, heads, L, L_keys)` and the
            head gate `(B, heads)` (sums to one).
        """
        batch, length = sequence.shape[:2]
        projected_context, context_queries, gate = self.project_context(context)
        # The loop kernel pays off without autograd (ranking, predict_actions, generate: 1.5-2.3x measured); with
        # gradients its backward costs as much as the batched products' (training keeps those).
        needs_grad = torch.is_grad_enabled() and (sequence.requires_grad or self.sequence_projection.weight.requires_grad)
        if cache is None and 0 < length <= self.SHORT_SEQUENCE_LIMIT and batch > 0 and not needs_grad:
            output, probabilities = self._short_attention(
                sequence, projected_context, context_queries, gate, sequence_mask, causal
            )
        else:
            sequence_queries, keys, values = self.project_sequence(sequence)
            heads = (batch, length, self.num_heads, self.head_size)
            head_states, probabilities = self._attention(
                (sequence_queries + context_queries.unsqueeze(1)).view(heads).transpose(1, 2),
                keys.view(heads).transpose(1, 2),
                values.view(heads).transpose(1, 2),
                sequence_mask,
                causal,
                cache,
            )
            output = self.gated_output(head_states.to(sequence_queries.dtype), gate, projected_context)
        if sequence_mask is not None:
            output = output * sequence_mask.unsqueeze(-1).to(output.dtype)
        return output, probabilities, gate

    def summed_output(
        self,
        sequence: torch.Tensor | None,
        context: torch.Tensor,
        sequence_mask: torch.Tensor,
        projected_sequence: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        :meth:`forward`'s output summed over the real positions, `(B, L, sequence_size)`, `(B, context_size)`,
        `(B, L)` -> `(B, d)`, without forming per-position outputs: the output at a position is linear in its heads'
        attention states, so the states are summed first (HSE pools CAM's outputs this way). Short sequences (at most
        :attr:`SHORT_SEQUENCE_LIMIT` positions, CAM_act's events) take :func:`pooled_short_attention`, the others
        torch's fused ``scaled_dot_product_attention``. Without attention dropout only (the caller checks).

        For short sequences the caller may pass ``projected_sequence`` `(3a, L, B)` (a = :attr:`attention_size`)
        instead of ``sequence``: the sequence maps (:meth:`sequence_maps`) already applied, features first (what
        :meth:`A2GenEventEmbedding.linear_features_first` computes without forming the events).
        """
        batch, length = sequence_mask.shape
        heads, head_size = self.num_heads, self.head_size
        mask = sequence_mask.bool()
        projected_context, context_queries, gate = self.project_context(context)
        if length == 0:  # nothing to attend to: a sum over no positions
            head_states = projected_context.new_zeros(batch, heads, head_size)
        elif projected_sequence is not None or length <= self.SHORT_SEQUENCE_LIMIT:
            if projected_sequence is None:
                projected_sequence = self._project_batch_innermost(sequence)
            head_states = pooled_short_attention(
                projected_sequence.reshape(3, heads, head_size, length, batch),
                context_queries.t().reshape(heads, head_size, batch),
                mask.t(),
                1.0 / math.sqrt(head_size),
            ).permute(2, 0, 1)
        else:
            sequence_queries, keys, values = self.project_sequence(sequence)
            shape = (batch, length, heads, head_size)
            # A sequence without any real position attends everywhere; its (zero-weighted) outputs are dropped below.
            visible = mask | ~mask.any(-1, keepdim=True)
            states = sdpa_in_fp32(
                (sequence_queries + context_queries.unsqueeze(1)).view(shape).transpose(1, 2),
                keys.view(shape).transpose(1, 2),
                values.view(shape).transpose(1, 2),
                attn_mask=visible[:, None, None, :],
            )
            head_states = (states * mask[:, None, :, None].to(states.dtype)).sum(2)
        return self.gated_output(
            head_states.to(projected_context.dtype), gate, projected_context, count=mask.sum(-1)
        )

    def _project_batch_innermost(self, sequence: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """
        `(B, L, sequence_size)` -> `(3a, L * B)` (a = :attr:`attention_size`): the query (sequence part), key and
        value maps of every position in one product, the batch innermost (the layout of the short-sequence kernels);
        rows scaled by ``scale`` `(3a,)`.
        """
        weight, bias = self.sequence_maps()
        if scale is not None:
            weight, bias = weight * scale.unsqueeze(1), bias * scale
        flat = sequence.permute(2, 1, 0).reshape(sequence.shape[-1], sequence.shape[1] * sequence.shape[0])
        return torch.addmm(bias.unsqueeze(1), weight, flat)

    def _short_attention(self, sequence, projected_context, context_queries, gate, sequence_mask, causal):
        """
        :meth:`forward` (without cache) for short sequences, the same numbers as batched matrix products: every
        tensor is laid out with the batch innermost, `(heads, head_size, L, B)`, so each step of the loops over the
        head size (scores) and over the keys (weighted sum) is one long vectorised multiply-add, where B x heads
        (L x L) matrix products would each cost microseconds of overhead. Scores and softmax in at least fp32.
        Returns the output `(B, L, d)` and the probabilities `(B, heads, L, L)`.
        """
        batch, length = sequence.shape[:2]
        # The score scale folded into the query maps (equal up to rounding).
        projected = self._project_batch_innermost(sequence, self.query_scale(sequence.dtype, sequence.device))
        output, probabilities = self.short_attention_features_first(
            projected.view(3, self.num_heads, self.head_size, length, batch),
            projected_context,
            context_queries,
            gate,
            sequence_mask,
            causal,
        )
        return output.permute(2, 1, 0).contiguous().to(projected_context.dtype), probabilities

    def query_scale(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """`(3a,)`: 1 / sqrt(head_size) on the query rows of :meth:`sequence_maps`, 1 on the key and value rows."""
        scale = torch.ones(3 * self.attention_size, dtype=dtype, device=device)
        scale[: self.attention_size] = 1.0 / math.sqrt(self.head_size)
        return scale

    def short_attention_features_first(
        self,
        projected: torch.Tensor,
        projected_context: torch.Tensor,
        context_queries: torch.Tensor,
        gate: torch.Tensor,
        sequence_mask: torch.Tensor | None = None,
        causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        The kernel of :meth:`_short_attention` on sequences already projected, features first: ``projected``
        `(3, heads, head_size, L, B)` (any strides, the batch innermost) holds the sequence part of the queries
        (scaled by :meth:`query_scale`), the keys and the values; the context terms are :meth:`project_context`'s.
        Returns the output `(d, L, B)` (in at least fp32) and the probabilities `(B, heads, L, L)`. No gradient.
        """
        heads, head_size, length, batch = projected.shape[1:]
        width = self.hidden_size
        dtype = torch.promote_types(projected.dtype, torch.float32)
        projected = projected.to(dtype)
        context_queries = (context_queries.to(dtype) / math.sqrt(head_size)).t().reshape(heads, head_size, 1, batch)
        queries = projected[0] + context_queries
        keys, values = projected[1], projected[2]
        scores = queries[:, 0].unsqueeze(2) * keys[:, 0].unsqueeze(1)  # (heads, L_query, L_key, B)
        for component in range(1, head_size):
            scores.addcmul_(queries[:, component].unsqueeze(2), keys[:, component].unsqueeze(1))
        allowed = None
        if causal:
            positions = torch.arange(length, device=projected.device)
            allowed = (positions[None, :] <= positions[:, None]).view(1, length, length, 1)
        if sequence_mask is not None:
            key_mask = sequence_mask.bool().t().reshape(1, 1, length, batch)
            allowed = key_mask if allowed is None else allowed & key_mask
        if allowed is not None:
            scores.masked_fill_(~allowed, torch.finfo(dtype).min)
        # No gradient on this path (forward takes it only when none is needed): the temporaries are reused in place.
        weights = shifted_exp_(scores, 2)
        weights = weights.div_(weights.sum(dim=2, keepdim=True))
        if allowed is not None:
            # A query with no visible key (an empty history item) gets all-zero weights instead of a uniform average.
            weights = weights.mul_(allowed)
        # Returned as a (B, heads, L, L_key) view that the weighted sum below reads, so gradients reach it.
        probabilities = weights.permute(3, 0, 1, 2)
        weights = self.attention_dropout(probabilities).permute(1, 2, 3, 0)  # (heads, L_query, L_key, B)
        states = weights[:, :, 0].unsqueeze(1) * values[:, :, 0].unsqueeze(2)  # (heads, head_size, L_query, B)
        for key in range(1, length):
            states.addcmul_(weights[:, :, key].unsqueeze(1), values[:, :, key].unsqueeze(2))
        # The gate, then one product of the concatenated heads' output projections: (d, L * B).
        gated = states.mul_(gate.to(dtype).t().reshape(heads, 1, 1, batch)).view(heads * head_size, length * batch)
        output = self.head_output_weight.reshape(heads * head_size, width).t().to(dtype) @ gated
        constant = gate.to(projected_context.dtype) @ self.head_output_bias + projected_context  # (B, d)
        return output.view(width, length, batch).add_(constant.t().to(dtype).unsqueeze(1)), probabilities

    def _attention(self, queries, keys, values, sequence_mask, causal, cache):
        """Batched matrix products over `(B, heads, L, head_size)`; returns head states `(B, L, heads, head_size)`."""
        past_length = 0
        if cache is not None:
            past_length = cache.get_seq_length()
            keys, values = cache.update(keys, values, 0)
        scores = queries @ keys.transpose(-1, -2) / math.sqrt(self.head_size)
        key_count = keys.shape[-2]
        allowed = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device)
        if causal:
            query_positions = torch.arange(past_length, past_length + scores.shape[-2], device=scores.device)
            allowed = torch.arange(key_count, device=scores.device)[None, :] <= query_positions[:, None]
        allowed = allowed[None, None]
        if sequence_mask is not None:
            key_mask = sequence_mask.bool()
            if key_mask.shape[-1] != key_count:  # cached keys come from real (unpadded) prefix positions
                key_mask = F.pad(key_mask, (key_count - key_mask.shape[-1], 0), value=True)
            allowed = allowed & key_mask[:, None, None, :]
        scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        # A query with no visible key (an empty history item) gets all-zero weights instead of a uniform average.
        # Without gradients over a short last dimension (EAG's decode steps) the written-out softmax is several times
        # faster; training keeps torch's fused softmax and its backward.
        short = key_count <= self.SHORT_SEQUENCE_LIMIT and not torch.is_grad_enabled()
        probabilities = (_small_softmax(scores) if short else torch.softmax(scores, dim=-1)) * allowed.to(scores.dtype)
        head_states = self.attention_dropout(probabilities).to(values.dtype) @ values
        return head_states.transpose(1, 2), probabilities

    # ------------------------------------------------------------------------------------------------------------
    # Ranking: one sequence, many contexts, outputs summed over positions

    def sequence_state(self, sequence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        The context-free terms of one unpadded sequence `(n, sequence_size)` for :meth:`pooled_output`: the sequence
        part of the queries, the keys and the values, each `(heads, n, head_size)`, and the per-row-normalised score
        exponentials ``E = exp(A - rowmax A)`` `(heads, n, n)` with ``A = queries keys^T / sqrt(head_size)``.
        """
        count = sequence.shape[0]
        queries, keys, values = (
            states.view(count, self.num_heads, self.head_size).transpose(0, 1)
            for states in self.project_sequence(sequence)
        )
        scores = queries @ keys.transpose(1, 2) / math.sqrt(self.head_size)
        scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
        if count:  # an empty sequence has nothing to normalise
            scores = scores - scores.amax(dim=-1, keepdim=True)
        return queries, keys, values, shifted_exp(scores, inplace=not torch.is_grad_enabled())

    def pooled_output(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        score_exponentials: torch.Tensor,
        context: torch.Tensor,
        report_underflow: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """
        For C contexts `(C, context_size)`, the output of :meth:`forward` on the sequence of
        :meth:`sequence_state` (no mask), summed over its n positions: `(C, d)`, without forming the C x n x n
        scores. The score of query l and key j is ``A[l, j] + b_c[j]``, with ``b_c`` the context part of the
        queries against the keys. With ``w_c = exp(b_c - max b_c)``, ``softmax_j(A[l] + b_c) = E[l, j] w_c[j] /
        Z_c[l]`` with ``Z_c = E w_c``, and the attention summed over l weighs value j by
        ``w_c[j] * (E^T (1 / Z_c))[j]``: two (n x n) by (n x C) products per head (docs/serving.md). When ``Z``
        underflows (history and context parts favouring different keys by more than ~80 units) the contexts of that
        call are computed with the plain softmax instead. Exponentials and normalisers are computed in at least fp32.
        ``report_underflow=True`` always takes the factored form and returns ``(output, underflow)`` (a bool
        tensor): the caller recomputes the call when it is set (ranking's compiled blocks, which stay one graph).
        """
        count, candidates = keys.shape[1], context.shape[0]
        projected_context, context_queries, gate = self.project_context(context)
        if count == 0:
            return self.gated_output(keys.new_zeros(candidates, self.num_heads, self.head_size), gate,
                                     projected_context, count=0.0)
        context_queries = context_queries.view(candidates, self.num_heads, self.head_size)
        # b[h, j, c]: context c's query part against key j.
        context_scores = keys @ (context_queries.permute(1, 2, 0) / math.sqrt(self.head_size))
        context_scores = context_scores.to(score_exponentials.dtype)
        # Without gradients (ranking) the (H, n, C) temporaries are reused in place.
        inplace = not torch.is_grad_enabled()
        maxima = context_scores.amax(dim=1, keepdim=True)
        shifted = context_scores.sub_(maxima) if inplace else context_scores - maxima
        weights = shifted_exp(shifted, inplace=inplace)
        normalisers = score_exponentials @ weights  # Z[h, l, c]
        normalisers = normalisers.to(score_exponentials.dtype)
        # Below n * tiny / eps the terms of Z lose precision and 1 / Z may overflow after the sum over l.
        limit = count * torch.finfo(normalisers.dtype).tiny / torch.finfo(normalisers.dtype).eps
        underflow = (normalisers.amin(dim=(0, 1)) < limit).any()  # one pass, no (H, n, C) mask; C may be 0
        operands = (queries, keys, values, score_exponentials, context_queries, weights, normalisers)
        # (C, H, dh): each head's attention output summed over positions. torch.cond keeps the branch in exported
        # graphs; eagerly, and under torch.compile (whose inductor rejects this cond), a plain `if` (a graph break).
        if report_underflow:
            pooled_heads = self._factored_pooled_heads(*operands)
        elif torch.compiler.is_exporting():
            # torch.cond refuses operands that share memory (torch 2.11 checks it; seen on a GPU machine): queries,
            # keys and values are views of one projection (project_sequence), so the cond gets copies of them.
            unshared = (queries.clone(), keys.clone(), values.clone(), *operands[3:])
            pooled_heads = torch.cond(underflow, self._exact_pooled_heads, self._factored_pooled_heads, unshared)
        elif underflow:
            pooled_heads = self._exact_pooled_heads(*operands)
        else:
            pooled_heads = self._factored_pooled_heads(*operands)
        # The count read again from the keys: under torch.compile the `if` above breaks the graph, and a Python int
        # carried across the break would specialise the code after it to one history length.
        output = self.gated_output(pooled_heads, gate, projected_context, count=keys.shape[1])
        return (output, underflow) if report_underflow else output

    @staticmethod
    def _factored_pooled_heads(queries, keys, values, score_exponentials, context_queries, weights, normalisers):
        column_weights = weights * (score_exponentials.transpose(1, 2) @ normalisers.reciprocal())  # (H, n, C)
        return (values.transpose(1, 2) @ column_weights.to(values.dtype)).permute(2, 0, 1).contiguous()

    @staticmethod
    def _exact_pooled_heads(queries, keys, values, score_exponentials, context_queries, weights, normalisers):
        # Plain softmax attention for every context: taken only when the factored form underflows. In at least
        # fp32 (under bf16 autocast too, as summed_output), returned in the factored form's dtype.
        candidate_queries = queries.unsqueeze(0) + context_queries.unsqueeze(2)  # (C, H, n, dh)
        expand = (candidate_queries.shape[0], -1, -1, -1)
        states = sdpa_in_fp32(candidate_queries, keys.unsqueeze(0).expand(expand), values.unsqueeze(0).expand(expand))
        return states.sum(dim=2).to(values.dtype)


class EventItemCross(nn.Module):
    """
    DCN-v2 cross layers between each history event and its item (not in the paper; off by default,
    ``config.history_event_cross_layers``). Layer l: ``e_{l+1} = e_0 * (W_l [e_l ; c] + b_l) + e_l``, with ``e_0`` the
    event embedding and ``c`` its item's features. Each layer raises the degree of the interactions by one: the first
    multiplies an event's time and action features with each other and with the item's features, so that "a like
    12 s into this video" can be told apart from "a like 1 s into it" per item before CAM_act pools the events.
    Absent events stay zero (``e_0`` is zero there). The item's part of each product is computed once per item.
    """

    def __init__(self, num_layers: int, event_size: int, item_feature_size: int):
        super().__init__()
        self.event_maps = nn.ModuleList(nn.Linear(event_size, event_size) for _ in range(num_layers))
        self.item_maps = nn.ModuleList(nn.Linear(item_feature_size, event_size, bias=False) for _ in range(num_layers))

    def forward(self, events: torch.Tensor, item_features: torch.Tensor) -> torch.Tensor:
        """`(..., E, De)` events and `(..., Fi)` their items' features -> `(..., E, De)`."""
        crossed = events
        for event_map, item_map in zip(self.event_maps, self.item_maps):
            crossed = events * (event_map(crossed) + item_map(item_features).unsqueeze(-2)) + crossed
        return crossed


@dataclass(frozen=True)
class EventMoments:
    """
    An event's moment bucket: ``floor(seconds / seconds_per_moment)``, capped at ``count - 1``, with the seconds read
    back from normalised times with the tokenizer's statistics (``config.history_event_item_moments`` and
    ``history_event_moment_seconds``).
    """

    count: int
    seconds_per_moment: float
    time_log_mean: float
    time_log_std: float

    @classmethod
    def from_config(cls, config: A2GenConfig) -> EventMoments:
        return cls(
            int(config.history_event_item_moments),
            float(config.history_event_moment_seconds),
            float(config.time_log_mean),
            float(config.time_log_std),
        )

    def __call__(self, times: torch.Tensor) -> torch.LongTensor:
        """Normalised times `(...)` -> moment buckets `(...)` (int64)."""
        seconds = denormalize_times(times.detach().float(), self.time_log_mean, self.time_log_std)
        return (seconds / self.seconds_per_moment).floor().clamp(0, self.count - 1).long()

    def of_seconds(self, seconds: np.ndarray) -> np.ndarray:
        """Seconds as the data holds them `(...)` (finite, >= 0) -> the buckets the model gives them once the
        collator has normalised them to float32 (so a time on a bucket's edge lands where the model puts it)."""
        times = normalize_seconds(np.asarray(seconds, dtype=np.float64), self.time_log_mean, self.time_log_std)
        return self(torch.from_numpy(times.astype(np.float32))).numpy()


class ItemMomentDecoder(nn.Module):
    """
    The (item, moment) vector of a history event, decoded from its item's features (not in the paper; off by
    default; ``config.history_event_item_moments`` with ``history_event_moment_source="item_features"``, the
    default source): ``v = W_out relu(W_item item + m_t + b)``, with ``m_t`` a learned vector per moment bucket
    (:class:`EventMoments`) and a hidden width of twice ``hidden_size``. It is added to the event's embedding before
    CAM_act.

    Why: the paper's event is its time and action; its item enters CAM_act only through the attention scores, the
    gate and the residual, so "a like 12 s into this video" means the same for every video. What a video shows at a
    moment is a property of the item that no side feature may carry; the decoder reads it off the item's features
    (its id embedding, learned from every use of the item), so every event of an item teaches the same weights.
    The moment vectors start at N(0, 1), the linear maps as every linear map of the model.
    """

    def __init__(self, config: A2GenConfig, item_feature_size: int):
        super().__init__()
        self.moments = EventMoments.from_config(config)
        hidden = 2 * config.hidden_size
        self.item_map = nn.Linear(item_feature_size, hidden)
        self.moment_embeddings = nn.Embedding(config.history_event_item_moments, hidden)
        self.moment_embeddings.init_std = 1.0  # read by A2GenPreTrainedModel._init_weights
        self.output = nn.Linear(hidden, config.action_embedding_size + config.time_embedding_size)

    def forward(self, item_features: torch.Tensor, times: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """`(..., Fi)` item features, `(..., E)` times and known-event mask -> `(..., E, event_size)`, zero where not
        known. The item's part is computed once per item."""
        moments = self.moment_embeddings(self.moments(times))
        vectors = self.output(torch.relu(self.item_map(item_features).unsqueeze(-2) + moments))
        return vectors * known.unsqueeze(-1).to(vectors.dtype)

    def every_moment(self, item_features: torch.Tensor) -> torch.Tensor:
        """`(..., Fi)` item features -> the item's vector at every moment bucket `(..., moments, event_size)`."""
        return self.output(torch.relu(self.item_map(item_features).unsqueeze(-2) + self.moment_embeddings.weight))


class ItemMomentTable(nn.Module):
    """
    The (item, moment) vector of a history event as a row of its own (``history_event_moment_source="table"``):
    one row per (item row, moment bucket) up to :attr:`MAX_ROWS` rows, hashed into :attr:`MAX_ROWS` rows beyond (a
    multiplicative hash, stable across runs), as item ids are hashed into item rows. The rows start at zero (the model
    starts as the paper's) and are an id table: sparse gradients with the others, the embedding learning rate.

    Each row learns from the events at one moment of one item only, so it needs far more data than the decoder;
    on the simulator at 100k examples it memorises (docs/results.md (e)). Two options (beyond the paper) let a row
    learn from fewer events: ``history_event_moment_topics`` (a row is logits over shared topic vectors) and
    ``history_event_moment_smoothing`` (a moment also reads its neighbours' rows).
    """

    MAX_ROWS = 1 << 21
    # Knuth's multiplicative constant (2^32 / golden ratio): spreads consecutive (item, moment) keys over the rows.
    HASH_MULTIPLIER = 2654435761

    def __init__(self, config: A2GenConfig, item_rows: int, sparse: bool = False):
        super().__init__()
        self.moments = EventMoments.from_config(config)
        self.num_rows = min(item_rows * self.moments.count, self.MAX_ROWS)
        self.hashed = item_rows * self.moments.count > self.MAX_ROWS
        event_size = config.action_embedding_size + config.time_embedding_size
        topics = getattr(config, "history_event_moment_topics", 0)
        self.table = nn.Embedding(self.num_rows, topics or event_size, sparse=sparse)
        self.table.init_std = 0.0  # read by A2GenPreTrainedModel._init_weights: the rows start at zero
        # Beyond the paper (config.history_event_moment_topics): a row holds logits over shared topic vectors.
        self.topic_vectors = None
        if topics:
            self.topic_vectors = nn.Embedding(topics, event_size)
            self.topic_vectors.init_std = 1.0  # read by A2GenPreTrainedModel._init_weights
        # Beyond the paper (config.history_event_moment_smoothing): a moment reads its neighbours' rows too.
        width = getattr(config, "history_event_moment_smoothing", 0)
        self.smoothing_logits = nn.Parameter(torch.zeros(2 * width + 1)) if width else None

    def _vectors(self, rows: torch.LongTensor) -> torch.Tensor:
        """Table rows `(...)` -> their vectors `(..., event_size)`: the rows themselves, or with
        ``history_event_moment_topics`` the softmax of each row over the topics, mixing the shared topic vectors."""
        vectors = self.table(rows)
        if self.topic_vectors is None:
            return vectors
        return torch.softmax(vectors.float(), dim=-1).to(vectors.dtype) @ self.topic_vectors.weight

    def rows(self, item_rows: torch.LongTensor, times: torch.Tensor) -> torch.LongTensor:
        """Item rows `(...)` and their events' times `(..., E)` -> table rows `(..., E)`."""
        return self.rows_at(item_rows, self.moments(times))

    def rows_at(self, item_rows: torch.LongTensor, moments: torch.LongTensor) -> torch.LongTensor:
        """Item rows `(...)` and moment buckets `(..., E)` -> table rows `(..., E)`."""
        return self._hash(item_rows.unsqueeze(-1) * self.moments.count + moments)

    def _hash(self, keys: torch.LongTensor) -> torch.LongTensor:
        """(item row, moment) keys -> table rows (the keys themselves while they fit)."""
        return (keys * self.HASH_MULTIPLIER) % self.num_rows if self.hashed else keys

    def _at(self, item_rows: torch.LongTensor, moments: torch.LongTensor) -> torch.Tensor:
        """Item rows `(...)` and moment buckets `(..., E)` -> the vectors `(..., E, event_size)`; with
        ``history_event_moment_smoothing`` w, the rows of the moments m - w .. m + w (clamped to the item's buckets)
        averaged with learned weights (uniform at the start)."""
        if self.smoothing_logits is None:
            return self._vectors(self.rows_at(item_rows, moments))
        width = (len(self.smoothing_logits) - 1) // 2
        offsets = torch.arange(-width, width + 1, device=moments.device)
        neighbours = (moments.unsqueeze(-1) + offsets).clamp(0, self.moments.count - 1)
        vectors = self._vectors(self.rows_at(item_rows.unsqueeze(-1), neighbours))
        weights = torch.softmax(self.smoothing_logits.float(), dim=0).to(vectors.dtype)
        return torch.einsum("...kd,k->...d", vectors, weights)

    def every_moment(self, item_rows: torch.LongTensor) -> torch.Tensor:
        """Item rows `(...)` -> the item's vector at every moment bucket `(..., moments, event_size)`."""
        moments = torch.arange(self.moments.count, device=item_rows.device)
        return self._at(item_rows, moments.expand(*item_rows.shape, -1))

    def forward(self, item_rows: torch.LongTensor, times: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """`(...)` item rows, `(..., E)` times and known-event mask -> `(..., E, event_size)`, zero where not known."""
        vectors = self._at(item_rows, self.moments(times))
        return vectors * known.unsqueeze(-1).to(vectors.dtype)


class HierarchicalSequenceEncoder(nn.Module):
    """
    HSE (paper Fig. "HSE"). Level 1: CAM_act over each history item's action events with that item's features as
    context, pooled over events -> Seq_j. Level 2: CAM_item over [item_j ; Seq_j] with the target item's features
    as context, pooled over history positions -> Vec_hist. Level 1 does not depend on the target item.

    Level 1 runs either on the padded `(B, N, E)` layout (:meth:`encode_items`, which also returns CAM_act's outputs
    and probabilities) or on the real items only, gathered into one flat batch (:meth:`encode_packed_items`, the
    training and ranking path; an item without real events has Seq_j = 0 either way). CAM has no positions, so
    level 2 may also drop history positions that are padding in every example (:meth:`forward`).

    With ``config.history_event_cross_layers`` (beyond the paper), CAM_act reads each item's events crossed with the
    item's features (:class:`EventItemCross`) instead of the events as embedded, on both layouts.
    """

    def __init__(self, config: A2GenConfig, event_size: int, item_feature_size: int):
        super().__init__()
        d = config.hidden_size
        self.pooling = config.history_pooling
        self.action_attention = ContextAwareAttention.from_config(config, event_size, item_feature_size)
        self.item_attention = ContextAwareAttention.from_config(config, item_feature_size + d, item_feature_size)
        # Beyond the paper (config.history_event_cross_layers): each event crossed with its item before CAM_act.
        self.event_cross = (
            EventItemCross(config.history_event_cross_layers, event_size, item_feature_size)
            if config.history_event_cross_layers
            else None
        )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.pool_inside_attention = True

    def _pool_events(self, outputs: torch.Tensor, event_mask: torch.Tensor) -> torch.Tensor:
        """CAM_act outputs `(..., E, d)` -> Seq `(..., d)`: dropout, then the configured pooling over real events."""
        return masked_pool(self.dropout(outputs), event_mask, self.pooling)

    def pools_inside_attention(self, attention: ContextAwareAttention) -> bool:
        """
        Whether CAM may sum its own outputs (:meth:`ContextAwareAttention.summed_output`): no dropout is active,
        and :attr:`pool_inside_attention` is on (False runs CAM per position and pools after it: the same outputs,
        slower; benchmarks compare the two).
        """
        if not self.pool_inside_attention:
            return False
        return not self.training or (self.dropout.p == 0 and attention.attention_dropout.p == 0)

    def pooled(
        self,
        attention: ContextAwareAttention,
        sequence: torch.Tensor | None,
        context: torch.Tensor,
        mask: torch.Tensor,
        projected_sequence: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        The configured pooling of CAM's outputs over the real positions, summed inside CAM
        (:meth:`ContextAwareAttention.summed_output`, which takes ``projected_sequence`` too): `(B, d)`.
        """
        pooled = attention.summed_output(sequence, context, mask, projected_sequence)
        return self.scale_pooled(pooled, mask.sum(-1, keepdim=True))

    def scale_pooled(self, pooled: torch.Tensor, count: torch.Tensor | float) -> torch.Tensor:
        """A sum of CAM outputs over ``count`` real positions `(..., d)` -> the configured pooling (sum, mean, sqrt)."""
        return scale_pooled(pooled, count, self.pooling)

    def cross_events(self, event_embeddings: torch.Tensor, item_features: torch.Tensor) -> torch.Tensor:
        """CAM_act's sequence: the events `(..., E, De)`, crossed with their items `(..., Fi)` if configured."""
        return event_embeddings if self.event_cross is None else self.event_cross(event_embeddings, item_features)

    def encode_items(
        self, history_item_features: torch.Tensor, event_embeddings: torch.Tensor, event_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Level 1 on the padded layout. `(B, N, Fi)`, `(B, N, E, De)`, `(B, N, E)` -> Seq `(B, N, d)`, CAM_act
        outputs `(B, N, E, d)` and probabilities `(B * N, heads, E, E)`: the tensor CAM_act used, so that gradients
        reach it (a `(B, N, ...)` view made afterwards would sit outside the graph).
        """
        batch, items, events, event_size = event_embeddings.shape
        event_embeddings = self.cross_events(event_embeddings, history_item_features)
        # Explicit sizes (no -1): a batch of zero examples must reshape too.
        outputs, probabilities, _ = self.action_attention(
            event_embeddings.reshape(batch * items, events, event_size),
            history_item_features.reshape(batch * items, history_item_features.shape[-1]),
            event_mask.reshape(batch * items, events),
        )
        outputs = outputs.view(batch, items, events, outputs.shape[-1])
        return self._pool_events(outputs, event_mask), outputs, probabilities

    def encode_packed_items(
        self, item_features: torch.Tensor, event_embeddings: torch.Tensor, event_mask: torch.Tensor
    ) -> torch.Tensor:
        """Level 1 on real items only, gathered by the caller: `(M, Fi)`, `(M, E, De)`, `(M, E)` -> Seq `(M, d)`."""
        event_embeddings = self.cross_events(event_embeddings, item_features)
        if self.pools_inside_attention(self.action_attention):
            return self.pooled(self.action_attention, event_embeddings, item_features, event_mask)
        outputs, _, _ = self.action_attention(event_embeddings, item_features, event_mask)
        return self._pool_events(outputs, event_mask)

    def encode_history(
        self,
        history_item_features: torch.Tensor,
        item_sequences: torch.Tensor,
        history_mask: torch.Tensor,
        target_item_features: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Level 2. `(B, N, Fi)`, Seq `(B, N, d)`, `(B, N)`, `(B, Fi)` -> Vec_hist `(B, d)` and CAM_item's parts."""
        level2_inputs = torch.cat([history_item_features, item_sequences], dim=-1)
        level2_outputs, level2_probabilities, _ = self.item_attention(level2_inputs, target_item_features, history_mask)
        level2_outputs = self.dropout(level2_outputs)
        return {
            "history_representation": masked_pool(level2_outputs, history_mask, self.pooling),
            "level2_inputs": level2_inputs,
            "level2_outputs": level2_outputs,
            "level2_probabilities": level2_probabilities,
        }

    def pool_history(
        self,
        history_item_features: torch.Tensor,
        item_sequences: torch.Tensor,
        history_mask: torch.Tensor,
        target_item_features: torch.Tensor,
    ) -> torch.Tensor:
        """Level 2, Vec_hist only (CAM_item's outputs summed inside CAM when no dropout is active): `(B, d)`."""
        if not self.pools_inside_attention(self.item_attention):
            inputs = (history_item_features, item_sequences, history_mask, target_item_features)
            return self.encode_history(*inputs)["history_representation"]
        level2_inputs = torch.cat([history_item_features, item_sequences], dim=-1)
        return self.pooled(self.item_attention, level2_inputs, target_item_features, history_mask)

    def forward(
        self,
        history_item_features: torch.Tensor,
        event_embeddings: torch.Tensor,
        event_mask: torch.Tensor,
        history_mask: torch.Tensor,
        target_item_features: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Both levels on the padded layout; every returned tensor is one the computation used."""
        item_sequences, level1_outputs, level1_probabilities = self.encode_items(
            history_item_features, event_embeddings, event_mask
        )
        item_sequences = item_sequences * history_mask.unsqueeze(-1).to(item_sequences.dtype)
        encoded = self.encode_history(history_item_features, item_sequences, history_mask, target_item_features)
        encoded.update(
            item_sequences=item_sequences, level1_outputs=level1_outputs, level1_probabilities=level1_probabilities
        )
        return encoded


class TargetInteractions(nn.Module):
    """
    Beyond the paper (``config.context_interactions``): products of the history and the user with the target item,
    appended to the generation context. IAG's slots are a linear map of [user ; Vec_hist ; item], which adds the
    parts' contributions and cannot form "how much this history likes what this item shows" (a dot product). Here
    ``Vec_hist * (A item)`` and ``(B user) * (C item)`` (elementwise, width d each) are two more context parts, so
    that a linear map of them is a bilinear form of history (or user) and item, as in factorisation machines.

    forward(user_features `(B, Fu)`, history_representation `(B, d)`, target_item_features `(B, Fi)`) -> `(B, 2d)`.
    """

    def __init__(self, hidden_size: int, user_feature_size: int, item_feature_size: int):
        super().__init__()
        self.size = 2 * hidden_size
        self.item_for_history = nn.Linear(item_feature_size, hidden_size)
        self.user = nn.Linear(user_feature_size, hidden_size, bias=False)
        self.item_for_user = nn.Linear(item_feature_size, hidden_size)

    def forward(
        self, user_features: torch.Tensor, history_representation: torch.Tensor, target_item_features: torch.Tensor
    ) -> torch.Tensor:
        history_part = history_representation * self.item_for_history(target_item_features)
        user_part = self.user(user_features) * self.item_for_user(target_item_features)
        return torch.cat([history_part, user_part], dim=-1)


def _drop_padding_positions(
    history_mask: torch.Tensor, *tensors: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """
    Keep the history positions that are real in at least one example: each tensor `(B, N, ...)` and `history_mask`
    `(B, N)` -> the same with N' <= N positions, in that order. Returns the inputs unchanged when none is dropped.
    """
    kept = history_mask.any(0)
    if bool(kept.all()):
        return (*tensors, history_mask)
    positions = kept.nonzero().squeeze(1)
    return tuple(tensor.index_select(1, positions) for tensor in (*tensors, history_mask))


def _training_function(model: PreTrainedModel, name: str, function):
    """
    `function`, or with ``config.compile_training`` in training mode its ``torch.compile``d version, compiled once
    per model and name with dynamic sizes: the number of real history items changes with every batch and must not
    recompile. Kept outside the module tree (nothing to save, nothing in ``state_dict``).
    """
    if not (model.training and model.config.compile_training):
        return function
    compiled = model.__dict__.setdefault("_compiled_functions", {})
    if name not in compiled:
        compiled[name] = torch.compile(function, dynamic=True)
    return compiled[name]


def _real_item_rows(event_mask: torch.Tensor) -> torch.Tensor:
    """Flat indices `(M,)` into `B * N` of the history items with at least one real event (`event_mask` `(B, N, E)`)."""
    return event_mask.any(-1).flatten().nonzero().squeeze(1)


def _gather_items(values: torch.Tensor, rows: torch.Tensor, columns: int | None = None) -> torch.Tensor:
    """
    `(B, N, ...)` per history item -> `(M, ...)` for the items at ``rows`` (flat indices into B * N), with only the
    first ``columns`` events when given. Explicit sizes (no -1): a batch of zero examples must reshape too.
    """
    flat = values.reshape(values.shape[0] * values.shape[1], *values.shape[2:]).index_select(0, rows)
    return flat if columns is None else flat[:, :columns]


# A group of history items shorter than the batch's longest is run apart only when it holds at least this many items:
# each group costs some dozens of operators whatever its size, which fewer items do not win back (on this project's
# CPU, the Taobao sample's ~1,400 items a batch ran 0.91x as fast split as not).
MIN_EVENT_GROUP_ITEMS = 4096


def _event_length_groups(event_mask: torch.Tensor, min_items: int | None = None) -> list[tuple[int, torch.Tensor | None]]:
    """
    Items' real events `(M, E)` -> groups `[(L, members)]` that hold every item once: items are grouped by where
    their events end (the last real column + 1, in the ranges 1, 2, 3-4, 5-8, ...), and a group reads only its
    first L columns, L its longest item's end. CAM_act's cost per item grows with the square of the columns it
    reads, and most items of a real log have one or two events: a large group of short items then does not pay for
    the batch's longest. A range with fewer than ``min_items`` items (default :data:`MIN_EVENT_GROUP_ITEMS`) joins
    the next longer one; the longest range is always a group. ``members`` `(M_g,)` indexes the M items; None when
    one group holds them all, in order. Columns past an item's end are padding, so the groups' outputs equal one call
    over all E columns.
    """
    min_items = MIN_EVENT_GROUP_ITEMS if min_items is None else min_items
    count, events = event_mask.shape
    positions = torch.arange(1, events + 1, device=event_mask.device)
    ends = (event_mask.bool() * positions).amax(1) if count else positions[:0]
    if count <= min_items or events <= 2:  # the first group to reach min_items would hold them all
        return [(int(ends.max()) if count else events, None)]
    ranges = torch.ceil(torch.log2(ends.clamp_min(1).to(torch.float32))).to(torch.int64)
    present = torch.unique(ranges).tolist()
    sizes = torch.bincount(ranges, minlength=present[-1] + 1).tolist()
    bounds, carried = [], 0
    for value in present:  # shortest first; the longest range always closes a group
        carried += sizes[value]
        if carried >= min_items or value == present[-1]:
            bounds.append(value)
            carried = 0
    if len(bounds) == 1:
        return [(int(ends.max()), None)]
    groups, lower = [], -1
    for upper in bounds:
        members = ((ranges > lower) & (ranges <= upper)).nonzero().squeeze(1)
        groups.append((int(ends.index_select(0, members).max()), members))
        lower = upper
    return groups


class A2GenActionHeads(nn.Module):
    """Per-position action classification and time regression.

    ``start`` stays a class: on e-commerce logs the start action (a click) can repeat later in a session.
    ``time_per_action`` (``config.time_per_action``, not in the paper) gives one time per action at every position
    instead of one per position; :func:`times_of_actions` reads the time of a position's action off either.
    """

    def __init__(self, hidden_size: int, vocab_size: int, time_per_action: bool = False):
        super().__init__()
        self.action = nn.Linear(hidden_size, vocab_size)
        self.time = nn.Linear(hidden_size, vocab_size if time_per_action else 1)
        self.time_per_action = time_per_action

    def forward(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(B, T, d)` -> logits `(B, T, vocab_size)`, times `(B, T)` (`(B, T, vocab_size)` with ``time_per_action``)."""
        times = self.time(states)
        return self.action(states), times if self.time_per_action else times.squeeze(-1)


class ExplicitActionGenerator(nn.Module):
    """
    EAG (paper Fig. "AGen"): CAM_gen with a causal mask over the embedded (action, time) sequence so far; the
    output at position i predicts action i + 1 and its time. Decoding feeds each prediction back, with a cache.

    As in the paper, the steps are embedded with the encoder's event embedding (`event_embedding`, shared, not
    registered here: the encoder owns and saves its weights) and carry no position embedding. Configs with
    ``eag_shared_event_embedding=False`` / ``eag_position_embeddings=True`` (those written before the options
    existed) give EAG its own action and time tables / learned position embeddings.
    """

    def __init__(self, config: A2GenConfig, context_size: int, event_embedding: A2GenEventEmbedding | None = None):
        super().__init__()
        if config.eag_shared_event_embedding:
            if event_embedding is None:
                raise ValueError(
                    "eag_shared_event_embedding=True: pass the encoder's A2GenEventEmbedding as event_embedding "
                    "(A2GenForActionGeneration does), or build the config with eag_shared_event_embedding=False."
                )
            self.event_embedding = None
            object.__setattr__(self, "_shared_event_embedding", event_embedding)  # not a submodule (no 2nd copy)
        else:
            self.event_embedding = A2GenEventEmbedding(config)
        event_size = config.action_embedding_size + config.time_embedding_size
        self.position_embeddings = (
            nn.Embedding(config.max_actions + 1, event_size) if config.eag_position_embeddings else None
        )
        self.generation_attention = ContextAwareAttention.from_config(config, event_size, context_size)
        self.heads = A2GenActionHeads(config.hidden_size, config.vocab_size, config.time_per_action)
        self.max_positions = config.max_actions + 1

    def embed_steps(
        self,
        action_ids: torch.LongTensor,
        action_times: torch.Tensor,
        action_time_mask: torch.Tensor | None = None,
        past_length: int = 0,
    ) -> torch.Tensor:
        """`(B, T)` steps starting at position `past_length` -> `(B, T, action + time embedding size)`."""
        embedding = self.event_embedding if self.event_embedding is not None else self._shared_event_embedding
        events = embedding(action_ids, action_times, action_time_mask)
        if self.position_embeddings is not None:
            positions = torch.arange(past_length, past_length + action_ids.shape[1], device=action_ids.device)
            events = events + self.position_embeddings(positions)
        return events

    def forward(
        self,
        context: torch.Tensor,
        action_ids: torch.LongTensor,
        action_times: torch.Tensor,
        cache: DynamicCache | None = None,
        action_time_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """
        `context` `(B, C)`, `action_ids` / `action_times` `(B, T)` (continuing `cache` if given); `action_time_mask`
        `(B, T)` flags unknown times, which are then embedded as "time unknown" rather than as 0 s.
        """
        past_length = cache.get_seq_length() if cache is not None else 0
        length = action_ids.shape[1]
        if past_length + length > self.max_positions:
            raise ValueError(
                f"EAG reads at most max_actions + 1 = {self.max_positions} actions, got {past_length + length}; "
                "shorten the sequence or build the model with a larger max_actions."
            )
        events = self.embed_steps(action_ids, action_times, action_time_mask, past_length)
        mask = action_ids != 0
        states, probabilities, _ = self.generation_attention(events, context, mask, causal=True, cache=cache)
        logits, times = self.heads(states)
        return {"logits": logits, "times": times, "states": states, "probabilities": probabilities}


def _heads_features_first(heads: A2GenActionHeads, states: torch.Tensor) -> torch.Tensor:
    """:class:`A2GenActionHeads` on `(..., d, B)` states -> `(..., V + T, B)`: the action logits, then the time (T = 1)
    or, with ``time_per_action``, every action's time (T = V)."""
    weight = torch.cat([heads.action.weight, heads.time.weight])
    bias = torch.cat([heads.action.bias, heads.time.bias])
    return torch.matmul(weight, states).add_(bias.view(-1, 1))


class ImplicitActionGenerator(nn.Module):
    """
    IAG (paper Fig. "IAGen"): K slots from the context (one linear map per slot of the tiled context), auxiliary
    heads read action logits and a time from each slot, then CAM_gen (no causal mask) runs over
    [slot ; action logits ; time] and the final heads predict each slot's action and time. The logits, not sampled
    tokens, carry the autoregression. With ``config.time_per_action`` (not in the paper) every head gives one time
    per action, and CAM_gen reads the slot's expected time under its auxiliary action distribution. ``config.iag_slot_activation="relu"`` (configs written before the option
    existed) puts a ReLU on the slots.
    """

    def __init__(self, config: A2GenConfig, context_size: int):
        super().__init__()
        self.num_slots = config.max_actions
        self.hidden_size = config.hidden_size
        self.slot_activation = config.iag_slot_activation
        self.slot_projection = nn.Linear(context_size, self.num_slots * config.hidden_size)
        self.aux_heads = A2GenActionHeads(config.hidden_size, config.vocab_size, config.time_per_action)
        self.generation_attention = ContextAwareAttention.from_config(
            config, config.hidden_size + config.vocab_size + 1, context_size
        )
        self.heads = A2GenActionHeads(config.hidden_size, config.vocab_size, config.time_per_action)

    @staticmethod
    def _features_first(feature_dim: int) -> bool:
        """The two layouts of :meth:`slots` / :meth:`slot_features`: ``feature_dim`` -1 (`(B, K, features)`) or 1
        (`(K, features, B)`)."""
        if feature_dim not in (-1, 1):
            raise ValueError(f"feature_dim is -1 (batch first) or 1 (features first, batch innermost), got {feature_dim}")
        return feature_dim == 1

    def slots(self, context: torch.Tensor, feature_dim: int = -1) -> torch.Tensor:
        """
        `context` `(B, C)` -> the K slots: `(B, K, d)` (``feature_dim=-1``), or features first with the batch
        innermost, `(K, d, B)` (``feature_dim=1``, :meth:`slot_predictions`' layout: one product with the context's
        columns).
        """
        features_first = self._features_first(feature_dim)
        projection = self.slot_projection
        if features_first:  # (K * d, B)
            slots = torch.addmm(projection.bias.unsqueeze(1), projection.weight, context.t())
        else:
            slots = projection(context)
        if self.slot_activation == "relu":
            slots = torch.relu(slots)
        batch = context.shape[0]
        shape = (self.num_slots, self.hidden_size, batch) if features_first else (batch, self.num_slots, self.hidden_size)
        return slots.view(shape)

    def slot_features(
        self, slots: torch.Tensor, feature_dim: int = -1
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Slots `(B, K, d)` -> aux logits `(B, K, V)`, aux times `(B, K)` (`(B, K, V)` with ``time_per_action``) and
        CAM_gen's input [slot ; p ; t] `(B, K, d + V + 1)` (with ``time_per_action``, ``t = sum_a p(a) t(a)``).
        ``feature_dim=1``: every tensor features first, the batch innermost: slots `(K, d, B)` (``slots(context,
        feature_dim=1)``) -> aux logits `(K, V, B)`, aux times `(K, T, B)` (T = 1, or V with ``time_per_action``) and
        the input `(K, d + V + 1, B)`.
        """
        features_first = self._features_first(feature_dim)
        if features_first:  # one product of the stacked heads with the slots' columns
            vocab = self.aux_heads.action.out_features
            aux_logits, aux_times = _heads_features_first(self.aux_heads, slots).split(
                [vocab, self.aux_heads.time.out_features], dim=feature_dim
            )
            time = aux_times
        else:
            aux_logits, aux_times = self.aux_heads(slots)
            time = aux_times if self.aux_heads.time_per_action else aux_times.unsqueeze(-1)
        probabilities = _small_softmax(aux_logits, dim=feature_dim).to(slots.dtype)
        if self.aux_heads.time_per_action:  # the slot's expected time under its action distribution: sum_a p(a) t(a)
            time = (probabilities * time).sum(feature_dim, keepdim=True)
        parts = [slots, probabilities, time]
        if features_first:  # a (K, d + V + 1, B) view of (d + V + 1, K, B) storage: CAM's projection reads it as is
            return aux_logits, aux_times, torch.cat([part.transpose(0, 1) for part in parts]).transpose(0, 1)
        return aux_logits, aux_times, torch.cat(parts, dim=-1)

    def forward(self, context: torch.Tensor) -> dict[str, torch.Tensor]:
        """`context` `(B, C)` -> logits `(B, K, V)`, times `(B, K)` (`(B, K, V)` with ``time_per_action``) and the
        auxiliary heads' outputs."""
        aux_logits, aux_times, slot_features = self.slot_features(self.slots(context))
        states, probabilities, _ = self.generation_attention(slot_features, context)
        logits, times = self.heads(states)
        return {
            "logits": logits,
            "times": times,
            "aux_logits": aux_logits,
            "aux_times": aux_times,
            "states": states,
            "probabilities": probabilities,
        }

    def slot_predictions(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        :meth:`forward`'s ``logits`` `(B, K, V)` and ``times`` `(B, K)` (or `(B, K, V)`) for inference (no gradient, no dropout:
        ``predict_actions``, ranking), computed with the batch innermost from the start: the same steps
        (:meth:`slots` and :meth:`slot_features` with ``feature_dim=1``, CAM_gen's sequence maps, its short-sequence
        kernel :meth:`ContextAwareAttention.short_attention_features_first`, the final heads) on `(features, B)`
        columns, so no `(B, K, features)` tensor is transposed for CAM's kernel and none of its outputs back. Only the
        layout is written here. Equal to :meth:`forward` up to rounding; with gradients or active dropout it is
        :meth:`forward`.
        """
        attention = self.generation_attention
        dropout = self.training and attention.attention_dropout.p > 0
        if torch.is_grad_enabled() or dropout or context.shape[0] == 0:
            outputs = self(context)
            return outputs["logits"], outputs["times"]
        batch, slots_count, width = context.shape[0], self.num_slots, self.hidden_size
        slots = self.slots(context, feature_dim=1)
        _, _, features = self.slot_features(slots, feature_dim=1)  # (K, d + V + 1, B)
        # CAM_gen's sequence maps (query rows scaled) on the features read as a (B, K, features) view: (3a, K * B).
        scale = attention.query_scale(features.dtype, features.device)
        projected = attention._project_batch_innermost(features.permute(2, 0, 1), scale)
        output, _ = attention.short_attention_features_first(
            projected.view(3, attention.num_heads, attention.head_size, slots_count, batch),
            *attention.project_context(context),
        )  # (d, K, B)
        final = _heads_features_first(self.heads, output.to(slots.dtype).view(width, slots_count * batch))
        final = final.view(-1, slots_count, batch).permute(2, 1, 0)  # (B, K, V + T): the logits, then the time(s)
        logits, times = final.split([self.heads.action.out_features, self.heads.time.out_features], dim=-1)
        return logits, times if self.heads.time_per_action else times.squeeze(-1)


class A2GenPreTrainedModel(StrictLoadingMixin, PreTrainedModel):
    config_class = A2GenConfig
    config: A2GenConfig
    base_model_prefix = "a2gen"
    # The first argument of every forward: one row per (user, target item) example; there is no `input_ids`.
    main_input_name = "user_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = []
    # forward names every argument; Trainer must not pass num_items_in_batch (the loss is a per-batch mean).
    accepts_loss_kwargs = False
    # Set by a2gen_hf.hub when the package is imported: push_to_hub then writes the A2Gen model card (the model
    # layer does not import the Hub layer). None (e.g. loaded as remote code): transformers' own push.
    hub_pusher = None
    hub_push_checker = None  # a2gen_hf.hub's check of a push's arguments, set with hub_pusher
    # What the refusals of gradient checkpointing and resize_token_embeddings say a model is made of: one message
    # each, worded by these (the baselines name their own parts; before, they were said to have CAM, HSE, a generator).
    own_layers = "CAM, HSE, the generator"
    sized_by_the_actions = "the event embeddings, the generator's heads"

    def __init__(self, config: ActionSequenceConfig, *inputs, **kwargs):
        # A config's fields are checked together when it is built; one changed since (config.x = ..., or a keyword
        # of from_pretrained) is checked here, before any layer is sized by it.
        if isinstance(config, ActionSequenceConfig):
            if not isinstance(config, self.config_class):  # before: an AttributeError on the first missing field
                raise TypeError(
                    f"{type(self).__name__} is built from a {self.config_class.__name__}, got a {type(config).__name__} "
                    f"(model_type {config.model_type!r}): build the model that config describes (AutoModel."
                    "from_config(config) / AutoModel.from_pretrained(path) picks it)."
                )
            config._validate()
        register_the_package()
        super().__init__(config, *inputs, **kwargs)

    @classmethod
    def _refuse_attn_implementation(cls, attn_implementation: str | None) -> None:
        """Refuse an attention implementation other than ``"eager"`` with a message about this model (transformers'
        own asks the user to request support upstream): CAM is the package's module with its own kernels."""
        if attn_implementation not in (None, "eager"):
            raise ValueError(
                f"attn_implementation={attn_implementation!r}: {cls.__name__} computes its attention in its own "
                "modules (CAM, with the package's kernels in a2gen_hf.attention_kernels), not through transformers' "
                "attention functions, so 'sdpa' / flash / hub kernels do not apply. Leave attn_implementation unset "
                "(or 'eager'); for speed see docs/performance.md (torch.compile, the ranker)."
            )

    def _check_and_adjust_attn_implementation(self, attn_implementation: str | None, *args, **kwargs) -> str:
        self._refuse_attn_implementation(attn_implementation)
        return super()._check_and_adjust_attn_implementation(attn_implementation, *args, **kwargs)

    @classmethod
    def _from_config(cls, config, **kwargs):
        """``PreTrainedModel._from_config``, refusing an ``attn_implementation`` before transformers writes it into
        the caller's config (before: the refused setting stayed there, and every later model built from that config
        failed with the same error)."""
        cls._refuse_attn_implementation(kwargs.get("attn_implementation"))
        return super()._from_config(config, **kwargs)

    @property
    def dummy_inputs(self) -> dict[str, torch.Tensor]:
        """
        A batch of one example in the config's shapes that ``forward`` accepts (transformers' default is a text
        ``input_ids``, which these models do not take): one history item with one event (the start action at 0 s),
        ids 1, and the side features, ages and keys the config reads. EAG's also holds the decoder input
        (``action_ids`` / ``action_times``: the start action at 0 s).
        """
        config, device = self.config, self.device

        def ids(table: int, *shape: int) -> torch.Tensor:
            return torch.full(shape, min(1, table - 1), dtype=torch.long, device=device)

        start, start_time = config.start_action_id, config.start_time
        inputs = {
            "user_ids": ids(config.user_buckets, 1),
            "item_ids": ids(config.item_buckets, 1),
            "history_item_ids": ids(config.item_buckets, 1, 1),
            "history_action_ids": torch.full((1, 1, 1), start, dtype=torch.long, device=device),
            "history_action_times": torch.full((1, 1, 1), start_time, dtype=self.dtype, device=device),
            "history_mask": torch.ones(1, 1, dtype=torch.long, device=device),
        }
        if config.num_item_side_features:
            inputs["item_side_ids"] = ids(config.side_feature_buckets, 1, config.num_item_side_features)
            inputs["history_item_side_ids"] = ids(config.side_feature_buckets, 1, 1, config.num_item_side_features)
        if config.num_user_side_lists:
            inputs["user_side_ids"] = ids(config.item_buckets, 1, config.num_user_side_lists, 1)
        if getattr(config, "history_time_features", False):
            inputs["history_item_ages"] = torch.zeros(1, 1, dtype=torch.float32, device=device)
        if popularity_keyed_by_raw_id(config):
            inputs["item_keys"] = torch.ones(1, dtype=torch.long, device=device)
        if getattr(config, "generator_type", None) == "eag" and "action_ids" in inspect.signature(self.forward).parameters:
            inputs["action_ids"] = torch.full((1, 1), start, dtype=torch.long, device=device)
            inputs["action_times"] = torch.full((1, 1), start_time, dtype=self.dtype, device=device)
        return inputs

    def gradient_checkpointing_enable(self, *args, **kwargs):
        """Refused with the reason (transformers' own says only "does not support activation checkpointing")."""
        raise ValueError(
            f"{type(self).__name__} does not support gradient checkpointing: its layers ({self.own_layers}) are "
            "the package's own modules, not transformers' layers that checkpointing wraps. Drop "
            "gradient_checkpointing=True from TrainingArguments; to use less memory, lower the batch size (with "
            "gradient_accumulation_steps to keep the step's size), max_history_items or the id tables' sizes "
            "(item_buckets, user_buckets), or train the tables sparsely (sparse_embeddings, docs/training.md)."
        )

    def push_to_hub(self, repo_id: str, *args, **kwargs):
        """``PreTrainedModel.push_to_hub`` with the A2Gen model card (tags, ``custom_code``, ``dataset_name=`` and
        ``eval_results=``, a ``tokenizer=`` to push along): see :func:`a2gen_hf.hub.push_model_to_hub`."""
        if A2GenPreTrainedModel.hub_pusher is None:
            return super().push_to_hub(repo_id, *args, **kwargs)
        return A2GenPreTrainedModel.hub_pusher(self, repo_id, *args, **kwargs)

    def resize_token_embeddings(self, *args, **kwargs):
        """Refused: the vocabulary is the model's fixed list of actions, not a tokenizer's growing one."""
        raise NotImplementedError(
            f"{type(self).__name__}'s action vocabulary is fixed by config.action_names: {self.sized_by_the_actions} "
            "and the tokenizer are all sized by it, and the item table (get_input_embeddings) is sized by "
            f"config.item_buckets hash buckets, not by a vocabulary. To use other actions, build a new "
            f"{type(self.config).__name__} with the new action_names (and a tokenizer from it) and train that model."
        )

    # The keywords of save_pretrained(..., push_to_hub=True) that are the push's (transformers': repo_id,
    # commit_message, create_pr, private, token; the package's push also takes the others).
    _PUSH_KEYWORDS = ("repo_id", "commit_message", "commit_description", "private", "token", "revision", "create_pr",
                      "tags", "tokenizer", "eval_results", "dataset_name", "license", "replace_card")  # fmt: skip

    def save_pretrained(self, save_directory, *args, **kwargs):
        """
        ``PreTrainedModel.save_pretrained``; a generator model saved with its code also lists its encoder under
        ``AutoModel`` in ``auto_map``, so ``AutoModel.from_pretrained(folder, trust_remote_code=True)`` loads it. The
        ``auto_map`` goes into the saved ``config.json`` only: ``model.config`` is left as it was (before: the save
        wrote into the live config).

        ``push_to_hub=True`` (with ``repo_id=``, default the folder's name) saves the folder, then pushes through
        ``model.push_to_hub`` (:func:`a2gen_hf.hub.push_model_to_hub`): the same A2Gen model card, code and one
        commit as every other entry point, and the same rule that a model goes with its tokenizer: pass
        ``tokenizer=`` (and ``eval_results=``, ``dataset_name=``, ... as ``push_to_hub`` takes them). Before,
        transformers' own push wrote its template card and no tokenizer.
        """
        names = list(inspect.signature(PreTrainedModel.save_pretrained).parameters)[2:]
        kwargs.update(zip(names, args))  # positional options by name (is_main_process, state_dict, push_to_hub, ...)
        if kwargs.get("push_to_hub") and A2GenPreTrainedModel.hub_pusher is not None:
            return self._save_and_push(save_directory, kwargs)
        if kwargs.get("state_dict") is None and any(
            hasattr(value, "local_shards") for value in self.state_dict().values()
        ):  # before: torch's "torch function 'storage', with args: (ShardedTensor(..." from deep inside safetensors
            raise ValueError(
                f"{type(self).__name__} holds TorchRec tables sharded over processes (shard_model): gather them first "
                "and save the plain state, on every process: state = plain_state_dict(sharded); then on rank 0 "
                "model.save_pretrained(path, state_dict=state) (a2gen_hf.torchrec_tables.plain_state_dict)."
            )
        config = self.config
        had_auto_map = "auto_map" in vars(config)
        live_auto_map = copy.deepcopy(getattr(config, "auto_map", None))
        base_model = self.base_model
        try:
            if self._auto_class is not None and base_model is not self:
                module = type(base_model).__module__.rsplit(".", 1)[-1]
                auto_map = dict(live_auto_map or {})
                auto_map.setdefault("AutoModel", f"{module}.{type(base_model).__name__}")
                config.auto_map = auto_map
            return super().save_pretrained(save_directory, **kwargs)
        finally:  # transformers' custom_object_save writes into config.auto_map too: the saved file has it all
            if had_auto_map:
                config.auto_map = live_auto_map
            else:
                vars(config).pop("auto_map", None)

    def _save_and_push(self, save_directory, kwargs: dict):
        """``save_pretrained(folder, push_to_hub=True, ...)``: the folder is saved, then pushed as
        ``model.push_to_hub`` pushes (refused, before anything is written, without a tokenizer)."""
        kwargs.pop("push_to_hub")
        push = {name: kwargs.pop(name) for name in self._PUSH_KEYWORDS if name in kwargs}
        repo_id = push.pop("repo_id", None) or Path(str(save_directory)).name  # transformers' default
        if push.get("tokenizer") is None:
            raise ValueError(
                f"save_pretrained({str(save_directory)!r}, push_to_hub=True) pushes the model with its tokenizer, which "
                "carries the time statistics and id hashing (a repo without it does not load): pass tokenizer=... "
                f"(the A2GenActionTokenizer the model was trained with), or push with model.push_to_hub({repo_id!r}, "
                "tokenizer=tokenizer). Nothing was saved or pushed."
            )
        if kwargs.get("state_dict") is not None:
            raise ValueError(
                f"save_pretrained({str(save_directory)!r}, push_to_hub=True, state_dict=...): the push sends the model's "
                "own weights, not the state_dict given (a sharded or gathered state). Save with state_dict= and without "
                f"push_to_hub, then push the folder: a2gen_hf.hub.push_checkpoint({str(save_directory)!r}, "
                f"{repo_id!r}, tokenizer=tokenizer). Nothing was saved or pushed."
            )
        if kwargs.get("variant") is not None:
            raise ValueError(
                f"save_pretrained(..., push_to_hub=True, variant={kwargs['variant']!r}): a push writes the plain "
                "model.safetensors; save the variant without push_to_hub, or push without variant. Nothing was saved "
                "or pushed."
            )
        # the push's checks before any write (set by a2gen_hf.hub with hub_pusher; never imported here: this file is
        # pushed as the model's remote code, and transformers copies whatever it imports relatively)
        A2GenPreTrainedModel.hub_push_checker(self, repo_id, push.get("tokenizer"), push.get("eval_results"),
                                              push.get("license", "apache-2.0"), push.get("replace_card", False))
        self.save_pretrained(save_directory, **kwargs)
        if not kwargs.get("is_main_process", True):
            return None
        shard_size = {"max_shard_size": kwargs["max_shard_size"]} if "max_shard_size" in kwargs else {}
        return A2GenPreTrainedModel.hub_pusher(self, repo_id, **shard_size, **push)

    @staticmethod
    def _load_pretrained_model(model, state_dict, checkpoint_files, load_config, *args, **kwargs):
        """transformers' loading, with an error that names a truncated or corrupt weight file; an id-free model's
        unread id tables stay frozen (loading gives every parameter ``requires_grad=True`` again, and a
        DistributedDataParallel fine-tune then stopped at its second step waiting for their gradients)."""
        try:
            loaded = PreTrainedModel._load_pretrained_model(
                model, state_dict, checkpoint_files, load_config, *args, **kwargs
            )
        except SafetensorError as error:
            try:  # the strict loader's own check names the damaged file (checkpoint I/O lives there, not here)
                check_weight_files([Path(path) for path in checkpoint_files or []])
            except DamagedWeightsError as damaged:
                raise damaged from error
            raise OSError(
                f"A weight file cannot be read as safetensors ({error}); the file is truncated or corrupt (an "
                "interrupted download or copy?). Download or save it again."
            ) from error
        for module in model.modules():
            if isinstance(module, A2GenFeatureEmbeddings):
                module.freeze_unread_tables()
        return loaded

    def _init_weights(self, module: nn.Module) -> None:
        """
        Id tables ~ N(0, initializer_range), action tables ~ N(0, action_embedding_init_std) (padding rows zero);
        linear maps LeCun-normal so depth keeps scale.
        """
        std = self.config.initializer_range
        if isinstance(module, nn.Embedding):
            # A2GenEventEmbedding marks its action table with the scale it starts at (`init_std`).
            init.normal_(module.weight, mean=0.0, std=getattr(module, "init_std", std))
            if module.padding_idx is not None:
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=module.in_features**-0.5)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, ContextAwareAttention):
            init.normal_(module.head_output_weight, mean=0.0, std=module.head_size**-0.5)
            init.zeros_(module.head_output_bias)
        elif isinstance(module, A2GenFeatureEmbeddings):
            module.reset_rare_ids()
            if module.target_moment_logits is not None:  # every moment bucket weighs the same at the start
                init.zeros_(module.target_moment_logits)
        elif isinstance(module, TargetPopularityFeatures):
            module.reset()
        elif isinstance(module, WidePath):  # its mask is not saved: rebuilt on every load
            module.reset_ranked()
        elif isinstance(module, RunningStandardizer):
            init.zeros_(module.mean)
            init.ones_(module.variance)
            init.zeros_(module.count)


_HISTORY_ARGS_DOC = r"""
        user_ids (`torch.LongTensor` of shape `(B,)`): hashed user ids.
        item_ids (`torch.LongTensor` of shape `(B,)`): hashed target (candidate) item ids.
        history_item_ids (`torch.LongTensor` of shape `(B, N)`): hashed history item ids, 0 = padding item.
        history_action_ids (`torch.LongTensor` of shape `(B, N, E)`): action ids of each history item's events.
        history_action_times (`torch.FloatTensor` of shape `(B, N, E)`): their normalised times.
        history_time_mask (`torch.LongTensor` of shape `(B, N, E)`, *optional*): 0 where an event's time is unknown
            (any other value: known).
        history_mask (`torch.LongTensor` of shape `(B, N)`, *optional*): 1 = real item; default `history_item_ids != 0`.
        item_side_ids (`(B, F)`), history_item_side_ids (`(B, N, F)`), user_side_ids (`(B, S, L)`), *optional*:
            hashed side features, required when the config declares them.
        target_occurrences (`torch.Tensor` of shape `(B, V)`, *optional*): with `target_popularity_features`, the
            examples' own outcomes while training, left out of the popularity counts (the generation model passes
            them from its labels).
        item_keys (`torch.LongTensor` of shape `(B,)`, *optional*): 63-bit keys of the targets' raw item ids
            (`tokenizer.item_keys`); required when the popularity counts are keyed by raw id
            (`popularity_keys="raw_ids"`), ignored otherwise.
        history_item_ages (`torch.FloatTensor` of shape `(B, N)`, *optional*): seconds from each history item's
            session start to the target's (the collator makes them from the examples' `history_session_starts`);
            required with `history_time_features`, ignored otherwise.
"""


class A2GenModel(A2GenPreTrainedModel):
    __doc__ = r"""
    The A2Gen encoder: feature embeddings, HSE (CAM_act then CAM_item) and the generation context.

    Args (forward):""" + _HISTORY_ARGS_DOC

    def __init__(self, config: A2GenConfig):
        super().__init__(config)
        self.features = A2GenFeatureEmbeddings(config)
        self.event_embedding = A2GenEventEmbedding(config)
        self.encoder = HierarchicalSequenceEncoder(
            config, self.event_embedding.output_size, self.features.item_feature_size
        )
        self.extra_features = ExtraContextFeatures(config)
        self.interactions = (
            TargetInteractions(config.hidden_size, self.features.user_feature_size, self.features.item_feature_size)
            if config.context_interactions
            else None
        )
        # Level 1 on the real history items only (the default); False runs it on the padded (B, N, E) layout, as
        # output_hidden_states / output_attentions always do. Both give the same outputs (tests/test_modeling.py).
        self.pack_history_items = True
        self.context_size = (
            self.features.user_feature_size
            + config.hidden_size
            + self.features.item_feature_size
            + self.extra_features.size
            + (self.interactions.size if self.interactions is not None else 0)
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.features.item_embeddings

    def generation_context(
        self,
        user_features: torch.Tensor,
        history_representation: torch.Tensor,
        target_item_features: torch.Tensor,
        extra_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        The generator's context `(B, context_size)`: [user ; Vec_hist ; item], then the target interactions
        (``config.context_interactions``), then the extra features (if any), last, where a wide path reads them
        (:class:`~a2gen_hf.features_a2gen.WidePath`). Every path that builds a context calls this.
        """
        parts = [user_features, history_representation, target_item_features]
        if self.interactions is not None:
            parts.append(self.interactions(user_features, history_representation, target_item_features))
        if extra_features is not None:
            parts.append(extra_features)
        return torch.cat(parts, dim=-1)

    def embed_events(
        self,
        item_ids: torch.LongTensor | None,
        item_features: torch.Tensor,
        action_ids: torch.LongTensor,
        action_times: torch.Tensor,
        time_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """
        The events `(..., E)` of history items (ids `(...)`, features `(..., Fi)`) as CAM_act reads them ->
        `(..., E, De)`: the event embedding, plus each event's (item, moment) vector with
        ``config.history_event_item_moments`` (:meth:`A2GenFeatureEmbeddings.item_moment_features`). Absent events
        (action 0) are zero.
        """
        events = self.event_embedding(action_ids, action_times, time_mask)
        if self.features.item_moments is None:
            return events
        return events + self.features.item_moment_features(
            item_ids, item_features, action_times, time_mask, action_ids != 0
        )

    def encode_packed_item_events(
        self,
        item_features: torch.Tensor,
        action_ids: torch.LongTensor,
        action_times: torch.Tensor,
        time_mask: torch.Tensor | None,
        event_mask: torch.Tensor,
        item_ids: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """
        Level 1 on gathered items, as training runs it (ranking's ``encode_user`` calls it too): `(M, Fi)` features,
        `(M, E)` events and `(M,)` item ids (read by ``history_event_moment_source="table"`` only) -> Seq `(M, d)`.
        """
        encoder = self.encoder
        composable = encoder.event_cross is None and self.features.item_moments is None
        if encoder.pools_inside_attention(encoder.action_attention) and composable:
            # CAM_act's sequence maps composed with the event embedding: the events are never formed.
            transposed = [None if values is None else values.t() for values in (action_ids, action_times, time_mask)]
            projected = self.event_embedding.linear_features_first(
                *transposed, *encoder.action_attention.sequence_maps()
            )
            return encoder.pooled(encoder.action_attention, None, item_features, event_mask, projected)
        event_embeddings = self.embed_events(item_ids, item_features, action_ids, action_times, time_mask)
        return encoder.encode_packed_items(item_features, event_embeddings, event_mask)

    def _packed_item_sequences(
        self,
        history_item_ids: torch.LongTensor,
        history_item_features: torch.Tensor,
        history_action_ids: torch.LongTensor,
        history_action_times: torch.Tensor,
        history_time_mask: torch.Tensor | None,
        event_mask: torch.Tensor,
    ) -> torch.Tensor:
        """
        Seq_j `(B, N, d)` computed on the real history items only: the items with a real event are gathered into
        flat batches by where their events end (:func:`_event_length_groups`: each reads only the event columns its
        items use), embedded, run through CAM_act and scattered back; every other item gets zeros, as on the padded
        layout.
        """
        batch, items = history_action_ids.shape[:2]
        rows = _real_item_rows(event_mask)
        # Only the moment table reads the ids (the other paths read the features).
        reads_ids = isinstance(self.features.item_moments, ItemMomentTable)
        encode = _training_function(self, "level1", self.encode_packed_item_events)
        group_rows, outputs = [], []
        real_mask = _gather_items(event_mask, rows)
        for length, members in _event_length_groups(real_mask):
            selected = rows if members is None else rows.index_select(0, members)
            mask = (real_mask if members is None else real_mask.index_select(0, members))[:, :length]
            outputs.append(
                encode(
                    _gather_items(history_item_features, selected),
                    _gather_items(history_action_ids, selected, length) * mask,
                    _gather_items(history_action_times, selected, length),
                    None if history_time_mask is None else _gather_items(history_time_mask, selected, length),
                    mask,
                    _gather_items(history_item_ids, selected) if reads_ids else None,
                )
            )
            group_rows.append(selected)
        packed = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        selected = group_rows[0] if len(group_rows) == 1 else torch.cat(group_rows)
        scattered = packed.new_zeros(batch * items, packed.shape[-1]).index_put((selected,), packed)
        return scattered.view(batch, items, packed.shape[-1])

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.features.item_embeddings = value

    def _encode_padded(
        self,
        history_item_ids: torch.LongTensor,
        history_item_features: torch.Tensor,
        history_action_ids: torch.LongTensor,
        history_action_times: torch.Tensor,
        history_time_mask: torch.Tensor | None,
        event_mask: torch.Tensor,
        history_mask: torch.Tensor,
        target_item_features: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """
        HSE on the padded layout: history ids `(B, N)`, features `(B, N, Fi)`, events `(B, N, E)` with their masks,
        the history mask `(B, N)` and the target item's features `(B, Fi)` -> the encoder's dict (Vec_hist
        `"history_representation"` `(B, d)`, Seq_j `"item_sequences"` `(B, N, d)`, each level's inputs, outputs and
        attention probabilities) and the `"event_embeddings"` `(B, N, E, De)`. Every hidden state and attention
        ``output_hidden_states`` / ``output_attentions`` return is a tensor this computation used.
        """
        event_embeddings = self.embed_events(
            history_item_ids, history_item_features, history_action_ids * event_mask, history_action_times,
            history_time_mask,
        )
        encoded = self.encoder(history_item_features, event_embeddings, event_mask, history_mask, target_item_features)
        encoded["event_embeddings"] = event_embeddings
        return encoded

    def _encode_packed(
        self,
        history_item_ids: torch.LongTensor,
        history_item_features: torch.Tensor,
        history_action_ids: torch.LongTensor,
        history_action_times: torch.Tensor,
        history_time_mask: torch.Tensor | None,
        event_mask: torch.Tensor,
        history_mask: torch.Tensor,
        target_item_features: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """
        HSE as training runs it, with the inputs of :meth:`_encode_padded`: level 1 on the real history items only
        (:meth:`_packed_item_sequences`), level 2 without the positions that are padding in every example -> Vec_hist
        `"history_representation"` `(B, d)` and Seq_j `"item_sequences"` `(B, N, d)`, the same values as the padded
        layout's.
        """
        item_sequences = self._packed_item_sequences(
            history_item_ids,
            history_item_features, history_action_ids, history_action_times, history_time_mask, event_mask
        )
        history_representation = _training_function(self, "level2", self.encoder.pool_history)(
            *_drop_padding_positions(history_mask, history_item_features, item_sequences), target_item_features
        )
        return {"history_representation": history_representation, "item_sequences": item_sequences}

    def forward(
        self,
        user_ids: torch.LongTensor,
        item_ids: torch.LongTensor,
        history_item_ids: torch.LongTensor,
        history_action_ids: torch.LongTensor,
        history_action_times: torch.FloatTensor,
        history_time_mask: torch.LongTensor | None = None,
        history_mask: torch.LongTensor | None = None,
        item_side_ids: torch.LongTensor | None = None,
        history_item_side_ids: torch.LongTensor | None = None,
        user_side_ids: torch.LongTensor | None = None,
        target_occurrences: torch.Tensor | None = None,
        item_keys: torch.LongTensor | None = None,
        history_item_ages: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> A2GenModelOutput | tuple:
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if not _INPUTS_CHECKED.get():  # A2GenForActionGeneration.forward checked them with its labels
            check_model_inputs(self.config, self.dtype, **{name: value for name, value in locals().items() if name in INPUT_SHAPES})
        history_action_times = in_model_dtype(history_action_times, self.dtype)

        if history_mask is None:
            history_mask = history_item_ids != 0
        history_mask = history_mask.bool()
        event_mask = (history_action_ids != 0) & history_mask.unsqueeze(-1)

        user_features, target_item_features, history_item_features = self.features.batch_features(
            user_ids, user_side_ids, item_ids, item_side_ids,
            history_item_ids, history_item_side_ids, history_action_times, history_time_mask, event_mask,
        )  # fmt: skip
        # HSE: the padded layout where hidden states or attentions are returned, else level 1 on the real items only.
        padded = output_hidden_states or output_attentions or not self.pack_history_items
        encoded = (self._encode_padded if padded else self._encode_packed)(
            history_item_ids, history_item_features, history_action_ids, history_action_times, history_time_mask,
            event_mask, history_mask, target_item_features,
        )  # fmt: skip
        history_representation = encoded["history_representation"]
        history = (history_action_ids, history_mask, history_item_ids, item_ids, history_item_side_ids, item_side_ids)
        extra_features = (
            self.extra_features(*history, target_occurrences, item_keys, history_item_ages)
            if self.extra_features.size
            else None
        )
        generation_context = self.generation_context(
            user_features, history_representation, target_item_features, extra_features
        )

        hidden_states = (
            (encoded["event_embeddings"], encoded["level1_outputs"], encoded["level2_inputs"], encoded["level2_outputs"])
            if output_hidden_states
            else None
        )
        attentions = (
            (encoded["level1_probabilities"], encoded["level2_probabilities"]) if output_attentions else None
        )
        output = A2GenModelOutput(
            history_representation=history_representation,
            item_sequence_representations=encoded["item_sequences"],
            user_features=user_features,
            target_item_features=target_item_features,
            generation_context=generation_context,
            hidden_states=hidden_states,
            attentions=attentions,
        )
        return output if return_dict else output.to_tuple()


# The model's tensor inputs: their kind and shape, in the letters of docs/design.md (B examples, N history items, E
# events per item, F side features per item, S user side lists of length L, T label positions).
INPUT_SHAPES = {
    "user_ids": ("ids", "B"),
    "item_ids": ("ids", "B"),
    "history_item_ids": ("ids", "BN"),
    "history_action_ids": ("ids", "BNE"),
    "history_action_times": ("times", "BNE"),
    "history_time_mask": ("mask", "BNE"),
    "history_mask": ("mask", "BN"),
    "item_side_ids": ("ids", "BF"),
    "history_item_side_ids": ("ids", "BNF"),
    "user_side_ids": ("ids", "BSL"),
    "target_occurrences": ("mask", "BV"),
    "item_keys": ("keys", "B"),
    "history_item_ages": ("seconds", "BN"),
}
LABEL_SHAPES = {
    "labels": ("ids", "BT"),
    "label_times": ("times", "BT"),
    "label_time_mask": ("mask", "BT"),
    "action_ids": ("ids", "BA"),
    "action_times": ("times", "BA"),
}
_MAKE_THEM = "A2GenDataCollator builds every input with the right kind and shape"


def check_seconds_dtype(name: str, value: torch.Tensor) -> None:
    """Refuse a tensor of seconds (``history_item_ages``) that cannot hold them: complex, bool, or a 16-bit float
    (bfloat16 rounds 3599 s to 3600 s, float16 overflows past 65,504 s, some 18 hours)."""
    if value.is_complex() or value.dtype == torch.bool or (value.is_floating_point() and value.dtype.itemsize < 4):
        raise TypeError(
            f"{name} must hold seconds as float32, float64 or integers, got dtype {value.dtype}"
            + (" (too coarse for seconds: pass float32, whatever the model's dtype)" if value.is_floating_point() else "")
            + "."
        )


def check_history_ages(ages: torch.Tensor, mask: torch.Tensor | None = None) -> None:
    """Refuse real history items' ages (seconds from each one's session start to the target's) that are negative,
    NaN or infinite; ``ages`` `(B, N)`, ``mask`` `(B, N)` (1 = a real item; without it every age is checked). The
    error names the first such age: its example, its history slot and its value."""
    bad = ~(torch.isfinite(ages) & (ages >= 0))
    if mask is not None:
        bad &= mask.bool()
    if bad.any():
        where = tuple(int(index) for index in bad.nonzero()[0])
        value = float(ages[where])
        kind = "NaN" if math.isnan(value) else "infinite" if math.isinf(value) else "negative"
        place = f"example {where[0]}, history slot {where[1]}" if len(where) == 2 else f"position {where}"
        raise ValueError(
            f"history_item_ages holds {'an' if kind == 'infinite' else 'a'} {kind} age ({value!r}) at {place}, a real "
            "history item; each age is the "
            "seconds from that item's session start to the target's (>= 0: a history session starts before its "
            "target)."
        )


# True while A2GenForActionGeneration.forward runs its encoder on inputs it has checked together with the labels.
_INPUTS_CHECKED: contextvars.ContextVar[bool] = contextvars.ContextVar("a2gen_inputs_checked", default=False)


def check_labels_match_context(encoder_outputs, **labels: torch.Tensor | None) -> None:
    """With ``encoder_outputs`` in place of the inputs, every label tensor must have the context's batch size B."""
    context = getattr(encoder_outputs, "generation_context", None)
    if not isinstance(context, torch.Tensor):
        raise TypeError(
            "encoder_outputs must be the A2GenModelOutput of model.a2gen(...) (with its generation_context), got "
            f"{type(encoder_outputs).__name__}."
        )
    for name, value in labels.items():
        if value is not None and value.shape[0] != context.shape[0]:
            raise ValueError(
                f"{name} has shape {tuple(value.shape)}: its B dimension is {value.shape[0]}, but "
                f"encoder_outputs.generation_context gives B = {context.shape[0]}; the labels must describe the "
                "examples that were encoded."
            )


# The dtypes F.embedding takes as indices: anything else (int8, int16, uint8, uint16, ...) is refused by name.
_ID_DTYPES = (torch.int64, torch.int32)


def check_binary_mask(name: str, mask: torch.Tensor) -> None:
    """Refuse a mask (any shape) that is not 0/1: complex (``TypeError``), or holding another value such as 0.5, 2,
    -1 or NaN (``ValueError``, naming the first one and where it is). Every path reads a mask as nonzero = real /
    known, so a soft, weighted or -1-coded mask would otherwise be read as all ones, silently. One pass over the
    mask."""
    if mask.is_complex():
        raise TypeError(f"{name} must be a 0/1 mask (bool or integer), got dtype {mask.dtype}.")
    if mask.dtype == torch.bool or not mask.numel():
        return
    bad = (mask != 0) & (mask != 1)
    if bad.any():
        position = tuple(int(index) for index in bad.nonzero()[0])
        value = mask[position].item()
        raise ValueError(
            f"{name} must be a 0/1 mask (1 = real or known, 0 = padding or unknown), got {value!r} at "
            f"{name}{list(position)}; pass a bool or 0/1 tensor (for example mask != 0 where nonzero means real; "
            "the collator builds them)."
        )


def check_model_inputs(config: A2GenConfig | None, dtype: torch.dtype | None, **inputs) -> None:
    """
    Check the model's inputs before any is used (:data:`INPUT_SHAPES` / :data:`LABEL_SHAPES`): each is a tensor
    (``TypeError``), ids are int64 or int32 (what the embedding tables take) and times floats that are not float64
    unless the model is (``TypeError``; other float dtypes are cast to the model's by :func:`in_model_dtype`), masks
    hold only 0 and 1 (:func:`check_binary_mask`), shapes agree with each other and with the config (``ValueError``;
    one call with the inputs and the labels compares every B), histories hold at most
    ``max_history_items`` items of at most ``max_events_per_item`` events (``ValueError``: the collator keeps the
    most recent items), times are finite, history times no higher than :data:`~a2gen_hf.time_encoding.MAX_SECONDS`
    normalises to (seconds given as times), and ids lie in their tables (``ValueError``). Each error names the
    argument, what was expected and what was given. Without a ``config`` only kinds, shapes and times are checked.
    """
    shapes = {**INPUT_SHAPES, **LABEL_SHAPES}
    sizes: dict[str, tuple[int, str]] = {}  # letter -> (size, the argument that fixed it)
    fixed = {} if config is None else {
        "F": config.num_item_side_features or None, "S": config.num_user_side_lists or None,
        "L": None, "V": config.vocab_size,
    }  # fmt: skip
    dtype = dtype or torch.float32
    for name, value in inputs.items():
        if value is None:
            continue
        kind, letters = shapes[name]
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"{name} must be a torch.Tensor of shape ({', '.join(letters)}), got {type(value).__name__}; "
                f"{_MAKE_THEM}."
            )
        if (value.dtype not in _ID_DTYPES) if kind == "ids" else (
            kind == "keys" and (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool)
        ):
            raise TypeError(
                f"{name} must hold integer ids (torch.long), got dtype {value.dtype}; the embedding tables take "
                f"torch.long (or torch.int32): convert integer ids with .long(). {_MAKE_THEM}."
            )
        if kind == "times" and (not value.is_floating_point() or (value.dtype == torch.float64 and dtype != torch.float64)):
            raise TypeError(
                f"{name} must be a floating tensor of the model's dtype ({dtype}), got {value.dtype}; convert it with "
                f".to({dtype})."
            )
        if kind == "seconds":
            check_seconds_dtype(name, value)
        if kind == "mask":
            check_binary_mask(name, value)
        if value.dim() != len(letters):
            raise ValueError(
                f"{name} must have {len(letters)} dimension(s) ({', '.join(letters)}), got shape {tuple(value.shape)}; "
                f"{_MAKE_THEM}."
            )
        for letter, size in zip(letters, value.shape):
            if letter in fixed and fixed[letter] is not None and size != fixed[letter]:
                raise ValueError(
                    f"{name} has {size} in dimension {letter} of ({', '.join(letters)}) but the config says "
                    f"{fixed[letter]}; shape {tuple(value.shape)}."
                )
            if letter in sizes and sizes[letter][0] != size:
                first, source = sizes[letter]
                raise ValueError(
                    f"{name} has shape {tuple(value.shape)}: its {letter} dimension is {size}, but {source} gives "
                    f"{letter} = {first}; all inputs must describe the same examples, history items and events."
                )
            sizes.setdefault(letter, (size, name))
    if config is not None:
        _check_history_lengths(config, inputs)
    for name in ("history_action_times", "label_times", "action_times"):
        times = inputs.get(name)
        mask = inputs.get("label_time_mask") if name == "label_times" else None
        if times is not None and times.numel():
            known = times if mask is None else times[is_time_known(mask)]
            if not torch.isfinite(known).all():
                raise ValueError(
                    f"{name} holds NaN or inf; encode unknown times as 0.0 with their time mask = 0 (the tokenizer "
                    "and collator do this)."
                )
    ages = inputs.get("history_item_ages")
    if ages is not None and ages.numel():
        mask = inputs.get("history_mask")
        check_history_ages(ages, mask if mask is not None and mask.shape == ages.shape else None)
    history_times = inputs.get("history_action_times")
    if config is not None and history_times is not None and history_times.numel():
        check_normalised_times("history_action_times", history_times, inputs.get("history_time_mask"), config.time_log_mean,
                               config.time_log_std)  # fmt: skip
    if config is not None:
        _check_id_ranges(config, **{name: value for name, value in inputs.items() if name in _ID_TABLES})
        if inputs.get("labels") is not None:
            check_label_ids(inputs["labels"], config.vocab_size)
            check_labels_open_with_start(inputs["labels"], config.start_action_id, config.start_action)


def check_batch_not_empty(model_name: str, name: str, value: torch.Tensor) -> None:
    """Refuse a batch of no examples (`value`, named `name`, has 0 rows) where one is needed: a loss averaged over no
    examples is NaN, and one NaN step ruins the weights."""
    if value.shape[0] == 0:
        raise ValueError(
            f"the batch holds no examples: {name} has shape {tuple(value.shape)} (batch size 0); {model_name} needs at "
            "least one example here (skip empty batches; a loss averaged over none would be NaN)."
        )


def _check_history_lengths(config: A2GenConfig, inputs: dict) -> None:
    """Real (unpadded) history items per example and events per item within the config's caps; padding beyond
    them is allowed."""
    item_ids, action_ids, mask = (inputs.get(name) for name in ("history_item_ids", "history_action_ids", "history_mask"))
    if item_ids is None or item_ids.numel() == 0:
        return
    items = (mask.bool() if mask is not None else item_ids != 0).sum(dim=1)
    if items.max() > config.max_history_items:
        example = int(items.argmax())
        raise ValueError(
            f"history_item_ids: example {example} holds {int(items[example])} history items, more than the model's "
            f"max_history_items={config.max_history_items}; keep the most recent ones (A2GenDataCollator does)."
        )
    if action_ids is not None:
        events = (action_ids != 0).sum(dim=2)
        if events.max() > config.max_events_per_item:
            example, item = divmod(int(events.argmax()), events.shape[1])
            raise ValueError(
                f"history_action_ids: item {item} of example {example} holds {int(events[example, item])} events, "
                f"more than the model's max_events_per_item={config.max_events_per_item}; keep each item's first "
                "events (A2GenDataCollator does)."
            )


_ID_TABLES = {
    "user_ids": "user_buckets",
    "item_ids": "item_buckets",
    "history_item_ids": "item_buckets",
    "user_side_ids": "item_buckets",
    "item_side_ids": "side_feature_buckets",
    "history_item_side_ids": "side_feature_buckets",
    "history_action_ids": "vocab_size",
    "action_ids": "vocab_size",
}


def _check_id_ranges(config: A2GenConfig, **ids: torch.Tensor | None) -> None:
    """Ids must lie in their tables (hashed ids in [0, buckets)); torch's own IndexError names no input."""
    for name, values in ids.items():
        if values is not None:
            check_id_range(name, values, _ID_TABLES[name], getattr(config, _ID_TABLES[name]))


def check_id_range(name: str, ids: torch.Tensor, table: str, size: int) -> None:
    """``ids`` (any shape) must lie in ``[0, size)``, the rows of ``table`` (a config field): an error naming the input
    and, for action ids, the vocabulary, for hashed ids the tokenizer's bucket counts."""
    if not ids.numel():
        return
    low, high = ids.min().item(), ids.max().item()
    if low < 0 or high >= size:
        fix = (
            "encode actions with the tokenizer saved with this model (its action names are the config's)"
            if table == "vocab_size" else
            "hash raw ids with the tokenizer that was saved with this model (its bucket counts match the config)"
        )
        raise ValueError(f"{name} must lie in [0, {table}={size}), got values from {low} to {high}; {fix}.")


def _aligned_targets(
    config: A2GenConfig,
    labels: torch.LongTensor,
    label_times: torch.FloatTensor,
    label_time_mask: torch.Tensor | None,
    positions: int,
    dtype: torch.dtype,
) -> tuple[torch.LongTensor, torch.Tensor, torch.Tensor]:
    """
    The targets each predicted position is scored against: `labels` / `label_times` / `label_time_mask` `(B, T)`
    (``start`` at position 0) -> the labels after ``start`` `(B, P)`, their times `(B, P)` in `dtype` (0.0 where
    unknown) and whether each time is known `(B, P)`, cut or padded (with 0, 0.0, False) to the `positions` the
    model predicts. Cutting off a real action is refused.
    """
    targets = labels[:, 1:]
    time_known = (targets > 0) if label_time_mask is None else is_time_known(label_time_mask[:, 1:]) & (targets > 0)
    # An unknown label time (possibly NaN) is 0.0 before any difference: masking only the errors left the gradient
    # 0 * NaN = NaN on every weight (the loss itself stayed finite).
    target_times = torch.where(time_known, label_times[:, 1:], 0.0).to(dtype)
    if targets.shape[1] > positions:
        if (targets[:, positions:] > 0).any():
            raise ValueError(
                f"labels hold {targets.shape[1]} actions after start but the model predicts {positions} "
                f"(config.max_actions={config.max_actions}); truncate the labels or raise max_actions."
            )
        targets, target_times, time_known = targets[:, :positions], target_times[:, :positions], time_known[:, :positions]
    elif targets.shape[1] < positions:
        pad = positions - targets.shape[1]
        targets = F.pad(targets, (0, pad), value=0)
        target_times = F.pad(target_times, (0, pad), value=0.0)
        time_known = F.pad(time_known, (0, pad), value=False)
    return targets, target_times, time_known


def _counted_positions(config: A2GenConfig, targets: torch.LongTensor) -> torch.Tensor:
    """
    The positions the loss counts `(B, P)` bool, for aligned `targets` `(B, P)`: every target but -100; for EAG,
    not past the first end (or padding) target, where a decoder that stops there learns nothing. IAG's fixed K slots
    all count, padding slots predicting the end of the sequence.
    """
    counted = targets != IGNORE_INDEX
    if config.generator_type == "eag":
        ended = (targets == config.end_action_id) | (targets == 0)
        after_end = (ended.long().cumsum(1) - ended.long()) > 0
        counted = counted & ~after_end
    return counted


def _action_loss(scores: torch.Tensor, targets: torch.LongTensor, counted: torch.Tensor) -> torch.Tensor:
    """The masked cross-entropy: `scores` `(B, P, V)` against `targets` `(B, P)` (>= 0), summed over the `counted`
    positions `(B, P)`, averaged over examples -> a scalar (computed in at least fp32)."""
    per_position = F.cross_entropy(scores.transpose(1, 2).float(), targets, reduction="none")
    return (per_position * counted).sum(1).mean()


def _time_loss(
    config: A2GenConfig,
    predicted: torch.Tensor,
    targets: torch.LongTensor,
    target_times: torch.Tensor,
    valid: torch.Tensor,
) -> torch.Tensor:
    """
    The time error: predicted times `(B, P)` (or each action's, `(B, P, V)`, read at `targets` `(B, P)`) against
    `target_times` `(B, P)` on the `valid` positions `(B, P)` (a known time, counted) -> a scalar: each example's
    mean squared error (absolute with ``config.time_loss="l1"``, summed with ``config.time_loss_reduction="sum"``),
    averaged over examples.
    """
    differences = times_of_actions(predicted, targets) - target_times
    errors = differences.abs() if config.time_loss == "l1" else differences**2
    errors = torch.where(valid, errors, torch.zeros_like(errors))
    if config.time_loss_reduction == "sum":
        return errors.sum(1).mean()
    # Each example's MSE over its own timed positions, then the mean over examples: like every other part, a
    # mean over examples, so equal micro-batches or processes average to the whole batch's loss.
    return (errors.sum(1) / valid.sum(1).clamp_min(1)).mean()


def _order_loss(config: A2GenConfig, logits: torch.Tensor, times: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
    """
    The time-order hinge: logits `(B, P, V)` and times `(B, P)` (or `(B, P, V)`) -> a scalar, the backward steps of
    the predicted actions' times (from ``config.start_time`` at ``start``), summed over the `counted` positions
    `(B, P)` up to and including the first predicted end, averaged over examples.
    """
    predicted_actions = logits.argmax(-1)
    predicted_times = times_of_actions(times, predicted_actions)  # with time_per_action: the predicted action's
    predicted_end = predicted_actions == config.end_action_id
    # Count pairs up to and including the first predicted end action.
    before_end = (predicted_end.long().cumsum(1) - predicted_end.long()) == 0
    previous_times = torch.cat(
        [torch.full_like(predicted_times[:, :1], config.start_time), predicted_times[:, :-1]], dim=1
    )
    return (torch.relu(previous_times - predicted_times) * (before_end & counted)).sum(1).mean()


def action_sequence_loss(
    config: A2GenConfig,
    generated: dict[str, torch.Tensor],
    labels: torch.LongTensor,
    label_times: torch.FloatTensor,
    label_time_mask: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """
    The paper's objective on one batch. `labels` / `label_times` / `label_time_mask` are `(B, T)` with `start` at
    position 0; `generated["logits"]` `(B, P, V)` predicts labels 1..P. The action and order parts are summed over
    positions and averaged over examples; the time parts are each example's mean over its positions with a known
    time (the paper's MSE; 0 without one), averaged over examples (``config.time_loss_reduction="sum"``: summed per
    example instead). None depends on how far a batch is padded.

    - action: cross-entropy over positions up to the first end (or padding) target, ignoring -100;
      IAG's fixed K slots all count, padding slots predicting the end of the sequence;
    - time: squared error (absolute error with ``config.time_loss="l1"``) on positions with a known time
      (`label_time_mask`);
    - order: hinge on predicted times that go backwards, from `start` up to the first predicted end (and, for EAG,
      not past the true end, where the teacher-forced input stops meaning anything);
    - aux (IAG): cross-entropy and squared error of the auxiliary slot heads.
    """
    logits, times = generated["logits"], generated["times"]
    targets, target_times, time_known = _aligned_targets(
        config, labels, label_times, label_time_mask, logits.shape[1], times.dtype
    )
    counted = _counted_positions(config, targets)
    safe_targets = targets.clamp_min(0)
    timed = time_known & counted  # the positions the time error reads

    # The order term first: the order in which the terms are built is the order in which backward sums their
    # gradients into `times`, and this one keeps the gradients bit-identical to the single-body version.
    order = _order_loss(config, logits, times, counted)
    parts = {
        "action_loss": _action_loss(logits, safe_targets, counted),
        "time_loss": _time_loss(config, times, safe_targets, target_times, timed),
        "order_loss": order,
    }
    loss = (
        config.action_loss_weight * parts["action_loss"]
        + config.time_loss_weight * parts["time_loss"]
        + config.order_loss_weight * parts["order_loss"]
    )
    if "aux_logits" in generated:
        parts["aux_action_loss"] = _action_loss(generated["aux_logits"], safe_targets, counted)
        parts["aux_time_loss"] = _time_loss(config, generated["aux_times"], safe_targets, target_times, timed)
        loss = loss + config.aux_loss_weight * (parts["aux_action_loss"] + parts["aux_time_loss"])
    parts["loss"] = loss
    return parts


def action_predictions_from_slots(
    config: A2GenConfig, slot_probabilities: torch.Tensor, slot_times: torch.Tensor
) -> A2GenActionPrediction:
    """
    Per-slot class probabilities `(B, K, V)` and normalised times `(B, K)` (or each action's, `(B, K, V)`, with
    ``config.time_per_action``) -> P(action happens) and the expected time of its first occurrence `(B, V)`, as
    documented in :meth:`A2GenForActionGeneration.predict_actions`.
    Written without in-place writes so it also traces for ``torch.export``.
    """
    if config.slot_readout == "sampler":
        occurs, first_occurrence, probabilities = _sampler_readout(config, slot_probabilities)
    else:
        end_or_pad = slot_probabilities[..., config.end_action_id] + slot_probabilities[..., 0]
        alive = torch.cumprod(F.pad(1.0 - end_or_pad, (1, 0), value=1.0)[:, :-1], dim=1).clamp_min(0.0)
        if config.slot_readout == "any_slot":  # every slot counts, predicted ends ignored
            alive = torch.ones_like(alive)
        occurs = slot_probabilities * alive.unsqueeze(-1)  # q_k(a)
        # prod_{j<k} (1 - q_j(a)) for k = 0..K: its first K rows are "not yet", its last is the product over all slots.
        survival = torch.cumprod(F.pad(1.0 - occurs, (0, 0, 1, 0), value=1.0), dim=1)
        first_occurrence = occurs * survival[:, :-1]
        probabilities = 1.0 - survival[:, -1]
    per_action_times = slot_times if slot_times.dim() == 3 else slot_times.unsqueeze(-1)
    # E[t_a] = sum_k w_k t_k / sum_k w_k however small the weights (a clamp of the sum pulled a rare action's time
    # towards 0); where every weight is 0 (P(a) underflows), the slots' times weigh alike.
    total = first_occurrence.sum(1, keepdim=True)
    weights = torch.where(total > 0, first_occurrence / torch.where(total > 0, total, 1.0), 1.0 / occurs.shape[1])
    expected_times = (weights * per_action_times).sum(1)
    columns = torch.arange(probabilities.shape[-1], device=probabilities.device)
    is_start, is_pad = columns == config.start_action_id, columns == 0
    probabilities = torch.where(is_start, 1.0, torch.where(is_pad, 0.0, probabilities))
    expected_times = torch.where(is_start, config.start_time, torch.where(is_pad, 0.0, expected_times))
    seconds = denormalize_times(expected_times, config.time_log_mean, config.time_log_std)
    return A2GenActionPrediction(
        action_probabilities=probabilities, expected_times=expected_times, expected_seconds=seconds
    )


def _sampler_readout(
    config: A2GenConfig, slot_probabilities: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    ``slot_readout="sampler"``: P(action) and its first slot as ``generate(do_sample=True)`` draws the sequence from
    the same slots, exactly. Each slot's distribution without padding and ``start`` (which ``generate`` never
    samples), renormalised: ``p'_k``; the sequence runs until the end action or the last slot. For action a (e = the
    end action, ``s_k(a) = p'_k(e)`` for a != e, 0 for e itself), with ``r_k(a) = 1 - p'_k(a) - s_k(a)`` the chance that
    slot k holds neither a nor the end: a first occurs at slot k with ``w_k = prod_(j<k) r_j(a) * p'_k(a)``, and
    ``P(a) = sum_k w_k``. Returns (``p'`` `(B, K, V)`, ``w`` `(B, K, V)`, ``P`` `(B, V)`).
    """
    columns = torch.arange(slot_probabilities.shape[-1], device=slot_probabilities.device)
    padding, start = never_generated(config)
    drawn = torch.where((columns != padding) & (columns != start), slot_probabilities, 0.0)
    drawn = drawn / drawn.sum(-1, keepdim=True).clamp_min(torch.finfo(drawn.dtype).tiny)
    ends = drawn[..., config.end_action_id].unsqueeze(-1)
    neither = (1.0 - drawn - torch.where(columns == config.end_action_id, 0.0, ends)).clamp_min(0.0)
    not_yet = torch.cumprod(F.pad(neither, (0, 0, 1, 0), value=1.0), dim=1)[:, :-1]  # prod_(j<k) r_j(a)
    first_occurrence = not_yet * drawn
    return drawn, first_occurrence, first_occurrence.sum(1).clamp(0.0, 1.0)


def _cache_argument(
    cache: DynamicCache | None, use_cache: bool | None, past_key_values: DynamicCache | None
) -> tuple[DynamicCache | None, bool]:
    """The forward's EAG cache arguments -> (cache, use_cache): `past_key_values` is transformers' older name of
    `cache` (passing both is refused); `use_cache` defaults to whether a cache was passed (training builds none)."""
    if past_key_values is not None:  # transformers' older name of the cache argument
        if cache is not None:
            raise ValueError("Pass the EAG cache as cache= or as past_key_values=, not both.")
        cache = past_key_values
    if use_cache is None:
        use_cache = cache is not None  # a passed cache is continued; training never builds one
    return cache, use_cache


class A2GenForActionGeneration(A2GenGenerationMixin, A2GenPreTrainedModel):
    __doc__ = r"""
    A2Gen with its Action-seq Autoregressive Generator (AAG): the encoder (:class:`A2GenModel`) followed by EAG or
    IAG (`config.generator`). Trains on the paper's loss, ranks with :meth:`predict_actions` and generates timed
    action sequences with :meth:`generate`.

    Args (forward):""" + _HISTORY_ARGS_DOC + r"""
        labels (`torch.LongTensor` of shape `(B, T)`, *optional*): the target sequence `start, a1, ..., end, pad...`.
        label_times (`torch.FloatTensor` of shape `(B, T)`): normalised times of the labels (required with labels).
        label_time_mask (`torch.LongTensor` of shape `(B, T)`, *optional*): 1 where the label's time is known, 0 where
            it is not (other values are refused).
        action_ids / action_times (`(B, T')`, *optional*, EAG): the decoder input; defaults to the labels without
            their last position (teacher forcing). Ignored by IAG.
        encoder_outputs (:class:`A2GenModelOutput`, *optional*): reuse an encoder pass (history args not needed).
        cache (`DynamicCache`, *optional*) / use_cache (`bool`): EAG's key/value cache for decoding; a cache is
            built and returned only with `use_cache=True` or when one is passed (default: `use_cache = cache is not
            None`). `past_key_values=` is accepted as the older name of `cache`.
    """

    def __init__(self, config: A2GenConfig):
        super().__init__(config)
        self.a2gen = A2GenModel(config)
        if config.generator_type == "eag":
            self.generator = ExplicitActionGenerator(config, self.a2gen.context_size, self.a2gen.event_embedding)
        else:
            self.generator = ImplicitActionGenerator(config, self.a2gen.context_size)
        self.occurrence_head = A2GenOccurrenceHead(config, self.a2gen.context_size) if config.occurrence_head else None
        self.generation_config.max_length = config.max_actions + 1
        self.generation_config.monotonic_times = True  # generated timelines in time order (generation_a2gen)
        # A config transformers marks as made from the model config loads back without the keys it does not know:
        # unmarked, generation_config.json keeps monotonic_times (and any option set on it) through from_pretrained.
        self.generation_config._from_model_config = False
        self.post_init()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """``from_pretrained``; a checkpoint saved before ``monotonic_times`` existed gets its default (True), one
        saved without a length in its generation config (or without ``generation_config.json``) gets the model's
        (``max_actions + 1``, not transformers' global 20, which ``generate()`` would refuse), and its generation
        config loses the ``_from_model_config`` mark, so that a re-save keeps what is set on it."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if not hasattr(model.generation_config, "monotonic_times"):
            model.generation_config.monotonic_times = True
        if model.generation_config.max_length is None and model.generation_config.max_new_tokens is None:
            model.generation_config.max_length = model.config.max_actions + 1
        model.generation_config._from_model_config = False
        return loaded

    def get_input_embeddings(self) -> nn.Embedding:
        return self.a2gen.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.a2gen.set_input_embeddings(value)

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
        action_ids: torch.LongTensor | None = None,
        action_times: torch.FloatTensor | None = None,
        encoder_outputs: A2GenModelOutput | None = None,
        cache: DynamicCache | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        past_key_values: DynamicCache | None = None,
    ) -> A2GenActionGenerationOutput | tuple:
        # The inputs by name, read first: torch.compile resumes after a graph break (the id-range check) in a function
        # whose locals() holds only the variables still used, so a later locals() lost them (KeyError: 'user_ids').
        given = {name: value for name, value in locals().items() if name in INPUT_SHAPES or name in LABEL_SHAPES}
        cache, use_cache = _cache_argument(cache, use_cache, past_key_values)
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        # One check of the inputs with the labels, so that every B is compared with every other (the encoder below
        # does not check them again).
        check_model_inputs(self.config, self.dtype, **given)
        labels, label_times, action_times = self._checked_labels(
            encoder_outputs, labels, label_times, label_time_mask, action_ids, action_times
        )

        if encoder_outputs is None:  # the encoder: features, HSE (CAM_act, CAM_item) and the context
            encoder_outputs = self._encode(
                {name: value for name, value in given.items() if name in INPUT_SHAPES},
                labels, label_times, output_hidden_states, output_attentions,
            )  # fmt: skip
        context = encoder_outputs.generation_context
        # AAG: EAG or IAG on the context (CAM_gen and the action / time heads).
        generated, cache = self._generate(
            context, labels, label_times, label_time_mask, action_ids, action_times, cache, use_cache
        )
        occurrence_logits = self.occurrence_head(context) if self.occurrence_head is not None else None
        # The loss (spec §6, plus the occurrence head's), where labels are given.
        loss_parts = (
            self._loss_parts(generated, occurrence_logits, labels, label_times, label_time_mask)
            if labels is not None
            else {}
        )
        output = self._generation_output(
            encoder_outputs, generated, occurrence_logits, loss_parts, cache, output_hidden_states, output_attentions
        )
        return output if return_dict else output.to_tuple()

    def _checked_labels(
        self,
        encoder_outputs: A2GenModelOutput | None,
        labels: torch.LongTensor | None,
        label_times: torch.FloatTensor | None,
        label_time_mask: torch.LongTensor | None,
        action_ids: torch.LongTensor | None,
        action_times: torch.FloatTensor | None,
    ) -> tuple[torch.LongTensor | None, torch.Tensor | None, torch.Tensor | None]:
        """
        The checks :func:`check_model_inputs` cannot make (labels `(B, T)` against a given encoder pass, label times
        required with labels, a non-empty batch) -> `labels` as int64, `label_times` and `action_times` in the
        model's dtype.
        """
        if encoder_outputs is not None:
            check_labels_match_context(encoder_outputs, labels=labels, label_times=label_times,
                                       label_time_mask=label_time_mask, action_ids=action_ids, action_times=action_times)  # fmt: skip
        label_times, action_times = in_model_dtype(label_times, self.dtype), in_model_dtype(action_times, self.dtype)
        labels = labels.long() if labels is not None else None  # int32 labels, as int32 ids, are accepted
        if labels is not None and label_times is None:
            raise ValueError("label_times is required with labels (the collator builds both).")
        if labels is not None:
            check_batch_not_empty(type(self).__name__, "labels", labels)
        return labels, label_times, action_times

    def _encode(
        self,
        inputs: dict[str, torch.Tensor | None],
        labels: torch.LongTensor | None,
        label_times: torch.Tensor | None,
        output_hidden_states: bool,
        output_attentions: bool,
    ) -> A2GenModelOutput:
        """
        The encoder (:class:`A2GenModel`) on the forward's checked history `inputs` (by name), returning the
        generation context `(B, context_size)` among its outputs; in training, the target's own outcomes are hidden
        from the count features (:func:`own_outcomes_while_training`, from `labels` / `label_times` `(B, T)`).
        """
        missing = [
            name
            for name in ("user_ids", "item_ids", "history_item_ids", "history_action_ids", "history_action_times")
            if inputs[name] is None
        ]
        if missing:
            raise ValueError(f"Missing inputs {missing}: pass them (the collator builds them) or encoder_outputs.")
        checked = _INPUTS_CHECKED.set(True)
        try:
            return self.a2gen(
                **inputs,
                target_occurrences=own_outcomes_while_training(self, labels, label_times),
                output_hidden_states=output_hidden_states,
                output_attentions=output_attentions,
                return_dict=True,
            )
        finally:
            _INPUTS_CHECKED.reset(checked)

    def _teacher_forcing_inputs(
        self, labels: torch.LongTensor, label_times: torch.Tensor, label_time_mask: torch.Tensor | None
    ) -> tuple[torch.LongTensor, torch.Tensor, torch.Tensor | None]:
        """
        EAG's decoder input under teacher forcing: labels `(B, T)` -> the action ids, times and time mask (None
        without `label_time_mask`) `(B, S)` of the labels without their last position, cut to the max_actions + 1
        steps EAG reads where the rest is padding. Unknown times (possibly NaN) are fed as 0.0, flagged by the mask.
        """
        # Labels padded past what EAG reads (max_actions + 1 steps) feed only the steps it reads, as IAG's
        # loss takes them; real actions there still reach EAG's length check.
        steps = labels.shape[1] - 1
        readable = self.config.max_actions + 1
        if steps > readable and not (labels[:, readable + 1:] > 0).any():
            steps = readable
        action_ids = labels[:, :steps].clamp_min(0)
        action_times = label_times[:, :steps]
        action_time_mask = None
        if label_time_mask is not None:
            action_time_mask = label_time_mask[:, :steps]
            # Unknown label times (possibly NaN) are fed as 0.0 and flagged by the mask.
            known = is_time_known(action_time_mask)
            action_times = torch.where(known, action_times, torch.zeros_like(action_times))
        return action_ids, action_times, action_time_mask

    def _generate(
        self,
        context: torch.Tensor,
        labels: torch.LongTensor | None,
        label_times: torch.Tensor | None,
        label_time_mask: torch.Tensor | None,
        action_ids: torch.LongTensor | None,
        action_times: torch.Tensor | None,
        cache: DynamicCache | None,
        use_cache: bool,
    ) -> tuple[dict[str, torch.Tensor], DynamicCache | None]:
        """
        The generator on the context `(B, context_size)` -> its outputs (``"logits"`` `(B, P, V)`, ``"times"``, the
        states and attention probabilities, IAG's auxiliary heads) and EAG's cache (None for IAG and without
        `use_cache`). IAG reads the
        context only; EAG reads the sequence so far (`action_ids` / `action_times` `(B, S)`, by default the labels
        teacher-forced, :meth:`_teacher_forcing_inputs`) and continues `cache` or builds one with `use_cache`.
        """
        if self.config.generator_type != "eag":
            return _training_function(self, "generator", self.generator)(context), None
        action_time_mask = None
        if action_ids is None:
            if labels is None:
                raise ValueError("EAG needs action_ids / action_times (the sequence so far) or labels.")
            action_ids, action_times, action_time_mask = self._teacher_forcing_inputs(
                labels, label_times, label_time_mask
            )
        if action_times is None:
            raise ValueError("action_times is required with action_ids.")
        if use_cache and cache is None:
            cache = DynamicCache()
        generator = self.generator if use_cache else _training_function(self, "generator", self.generator)
        generated = generator(
            context, action_ids, action_times, cache=cache if use_cache else None, action_time_mask=action_time_mask
        )
        return generated, cache if use_cache else None

    def _loss_parts(
        self,
        generated: dict[str, torch.Tensor],
        occurrence_logits: torch.Tensor | None,
        labels: torch.LongTensor,
        label_times: torch.Tensor,
        label_time_mask: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """
        The loss on labels `(B, T)`: :func:`action_sequence_loss`'s parts (the paper's objective) and, with the
        occurrence head (logits `(B, V)`), its :func:`occurrence_loss` added to ``"loss"`` with its weight.
        """
        loss_parts = _training_function(self, "loss", action_sequence_loss)(
            self.config, generated, labels, label_times, label_time_mask
        )
        if occurrence_logits is not None:
            loss_parts["occurrence_loss"] = occurrence_loss(occurrence_logits, labels, label_times, self.config)
            loss_parts["loss"] = loss_parts["loss"] + self.config.occurrence_loss_weight * loss_parts["occurrence_loss"]
        return loss_parts

    @staticmethod
    def _generation_output(
        encoder_outputs: A2GenModelOutput,
        generated: dict[str, torch.Tensor],
        occurrence_logits: torch.Tensor | None,
        loss_parts: dict[str, torch.Tensor],
        cache: DynamicCache | None,
        output_hidden_states: bool,
        output_attentions: bool,
    ) -> A2GenActionGenerationOutput:
        """The forward's output: the loss parts (where labels were given), the generator's outputs, the occurrence
        logits, the cache, Vec_hist and the encoder's hidden states and attentions followed by the generator's."""
        hidden_states = attentions = None
        if output_hidden_states:
            hidden_states = (*(encoder_outputs.hidden_states or ()), generated["states"])
        if output_attentions:
            attentions = (*(encoder_outputs.attentions or ()), generated["probabilities"])
        return A2GenActionGenerationOutput(
            loss=loss_parts.get("loss"),
            action_loss=loss_parts.get("action_loss"),
            time_loss=loss_parts.get("time_loss"),
            order_loss=loss_parts.get("order_loss"),
            aux_action_loss=loss_parts.get("aux_action_loss"),
            aux_time_loss=loss_parts.get("aux_time_loss"),
            logits=generated["logits"],
            times=generated["times"],
            aux_logits=generated.get("aux_logits"),
            aux_times=generated.get("aux_times"),
            occurrence_logits=occurrence_logits,
            occurrence_loss=loss_parts.get("occurrence_loss"),
            cache=cache,
            history_representation=encoder_outputs.history_representation,
            hidden_states=hidden_states,
            attentions=attentions,
        )

    @torch.no_grad()
    def predict_actions(self, **inputs) -> A2GenActionPrediction:
        """
        Ranking scores per example and action: P(happens) and the expected time of its first occurrence.

        They are read off the generator's per-slot class distributions p_k (IAG: the K slots of one pass; EAG: the
        steps of the greedy decode). With alive_k = prod_{j<k} (1 - p_j(end) - p_j(pad)) the chance that the
        sequence is still running at slot k and q_k(a) = alive_k p_k(a):
        P(a) = 1 - prod_k (1 - q_k(a)) and E[t_a] = sum_k w_k t_k / sum_k w_k with w_k = q_k(a) prod_{j<k} (1 - q_j(a))
        (where every w_k is 0, the mean of the t_k); that is ``config.slot_readout="sequence"``, the default
        (``"any_slot"``: alive_k = 1; ``"sampler"``: the probability that ``generate(do_sample=True)`` draws the
        action, :func:`_sampler_readout`).
        ``start`` has probability 1 at 0 s. With ``config.occurrence_head``, P(a) is instead the sigmoid of that
        head (the times still come from the slots). Accepts the forward's history inputs (labels are ignored).
        See :func:`action_predictions_from_slots`.
        """
        asked = sorted(name for name in ("output_attentions", "output_hidden_states", "use_cache") if inputs.get(name))
        if asked:  # before: accepted and dropped
            raise ValueError(
                f"predict_actions() got {asked}: its output (A2GenActionPrediction) holds only the per-action "
                "probabilities and times, and it decodes with its own cache. For attentions or hidden states call the "
                "model itself (model(..., output_attentions=True, output_hidden_states=True)) or model.a2gen(...)."
            )
        context = self._encode_for_generation(dict(inputs), method="predict_actions").generation_context
        return self.predictions_from_context(context)

    @torch.no_grad()
    def predictions_from_context(self, context: torch.Tensor) -> A2GenActionPrediction:
        """
        :meth:`predict_actions`' scores from the generation context `(B, C)`: :func:`action_predictions_from_slots`
        on :meth:`slot_distributions`, with P(a) from the occurrence head where the config has one. The one place
        that reads the scores off a context: ``predict_actions`` and the ranker (:class:`~a2gen_hf.ranking.A2GenRanker`)
        both call it.
        """
        prediction = action_predictions_from_slots(self.config, *self.slot_distributions(context))
        if self.occurrence_head is None:
            return prediction
        return A2GenActionPrediction(  # a new output, not an attribute write (the ranker's program is traced)
            action_probabilities=occurrence_probabilities(self, context),
            expected_times=prediction.expected_times,
            expected_seconds=prediction.expected_seconds,
        )
