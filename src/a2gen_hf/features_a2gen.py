"""Optional inputs and heads beyond the paper's A2Gen, switched on by the config.

- :func:`history_action_propensity`, :class:`HistoryCountFeatures`, :class:`TargetPopularityFeatures`, assembled by
  :class:`ExtraContextFeatures`: count and popularity features that A2Gen appends to its generation context and
  MMoE / PLE to their towers' input, so that every network reads the same;
- :class:`A2GenOccurrenceHead` and its loss: a direct per-action "it happens" logit over the generation context;
- :class:`WidePath` (``config.wide_path``): a linear logit per action over the extra features alone, added to
  A2Gen's occurrence logits and to MMoE's / PLE's binary logits, so that each network contains the logistic
  regression on counts; :func:`~a2gen_hf.training.simple_baselines.warm_start_wide_path` copies a fitted regression into it.

Precision: the features are computed in float32 (float64 in a float64 model) and cast to the model's dtype only as
they leave :class:`ExtraContextFeatures`, and the buffers that count examples or accumulate running statistics stay
float32 when the model is cast to bfloat16 / float16 (:class:`KeepsBuffersExact`): those formats hold integers
exactly only up to 256 (bfloat16) or 2048 (float16), so the counts would stop growing and the leave-one-out
subtraction of one example would be lost in rounding.

This module never imports a model module: the models import it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_a2gen import A2GenConfig
from .targets import first_occurrence_targets


def exact_dtype() -> torch.dtype:
    """The dtype counting buffers are created in: float32, or float64 where that is the default (``from_pretrained``
    sets the default to the requested dtype while it builds the model, so ``dtype=torch.bfloat16`` gives float32)."""
    return torch.promote_types(torch.get_default_dtype(), torch.float32)


class KeepsBuffersExact(nn.Module):
    """
    A module whose buffers named in ``exact_buffers`` (counts, running statistics) stay float32 when the model is
    cast to a 16-bit float: ``.to(torch.bfloat16)``, ``.half()`` and the like move them to the new device but keep
    them float32, with their unrounded values; a float64 or float32 cast applies as to any buffer.
    ``from_pretrained(..., dtype=torch.bfloat16)`` keeps them float32 too (transformers loads a tensor in the dtype
    the freshly built model holds it in, and :func:`exact_dtype` creates them in float32).
    """

    exact_buffers: tuple[str, ...] = ()

    def _apply(self, fn, recurse=True):
        originals = {name: self._buffers.get(name) for name in self.exact_buffers}
        result = super()._apply(fn, recurse)
        for name, original in originals.items():
            applied = self._buffers.get(name)
            if (
                original is not None and applied is not None and original.is_floating_point()
                and applied.is_floating_point() and applied.dtype.itemsize < 4
            ):  # fmt: skip
                self._buffers[name] = original.to(device=applied.device, dtype=torch.float32)
        return result


def scale_pooled(pooled: torch.Tensor, count: torch.Tensor | float, mode: str) -> torch.Tensor:
    """
    A sum over ``count`` real positions `(..., d)` -> the pooling ``mode`` of
    :data:`~a2gen_hf.configuration_a2gen.HISTORY_POOLINGS`: ``"sum"`` keeps it, ``"mean"`` divides by the count,
    ``"sqrt"`` by its square root (so that a sum of independent unit-scale outputs stays at unit scale). ``count`` is
    a number or a tensor `(..., 1)`; counts below 1 (no real position) divide by 1.
    """
    if mode == "sum":
        return pooled
    if not isinstance(count, torch.Tensor):
        count = torch.tensor(float(count), dtype=pooled.dtype, device=pooled.device)
    count = count.to(pooled.dtype).clamp_min(1.0)
    if mode == "mean":
        return pooled / count
    if mode == "sqrt":
        return pooled / count.sqrt()
    raise ValueError(f"pooling mode {mode!r} is unknown; use 'sum', 'mean' or 'sqrt'.")


def masked_pool(values: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """The pooling ``mode`` (:func:`scale_pooled`) of `values` `(..., L, d)` over valid positions `mask` `(..., L)`."""
    weights = mask.unsqueeze(-1).to(values.dtype)
    return scale_pooled((values * weights).sum(-2), weights.sum(-2), mode)


def history_action_propensity(
    history_action_ids: torch.LongTensor, history_mask: torch.Tensor, vocab_size: int
) -> torch.Tensor:
    """
    The count rule as features: per action, the share of real history items whose events include it.
    `(B, N, E)` ids, `(B, N)` mask -> `(B, vocab_size)` (0 for an empty history and in the padding column).
    """
    present = F.one_hot(history_action_ids, vocab_size).amax(dim=2).float()
    present = present * (torch.arange(vocab_size, device=present.device) != 0)  # padding events are no action
    return masked_pool(present, history_mask, "mean")


# A feature column whose variance is at most this is read as constant: centred and divided by 1, by the model's
# standardisers and by the regression's scaler alike (sklearn's own rule is relative to the column's mean and
# would divide a near-constant column by a tiny standard deviation, which the model would not: the wide start
# copies the scaler's statistics onto the model's columns and must read them the same way).
CONSTANT_VARIANCE = 1e-12


class RunningStandardizer(KeepsBuffersExact):
    """
    Standardises features `(B, D)` with the mean and variance of every training example seen so far (saved with the
    model). Unlike batch normalisation it uses the same statistics in training and evaluation, so a batch of one
    and a left- or right-padded batch give the same output; the statistics are frozen outside training. As
    ``sklearn``'s ``StandardScaler`` (which the regression baseline uses, so that a warm-started wide path reads the
    regression's very features): divided by the standard deviation, or by 1 where the variance is at most ``eps``
    (a constant column; :data:`CONSTANT_VARIANCE`, the regression's rule too). ``frozen`` (set by training with ``freeze_ranking``; not saved) keeps the statistics as they
    are in training mode too. The statistics stay float32 in a bfloat16 model (:class:`KeepsBuffersExact`); the
    output is in the features' dtype promoted with theirs.
    """

    exact_buffers = ("mean", "variance", "count")

    def __init__(self, size: int, eps: float = CONSTANT_VARIANCE):
        super().__init__()
        self.eps = eps
        self.frozen = False
        dtype = exact_dtype()
        self.register_buffer("mean", torch.zeros(size, dtype=dtype))
        self.register_buffer("variance", torch.ones(size, dtype=dtype))
        self.register_buffer("count", torch.zeros((), dtype=dtype))

    @torch.no_grad()
    def _update(self, features: torch.Tensor) -> None:
        batch_count = features.shape[0]
        batch_mean = features.mean(0)
        batch_variance = features.var(0, unbiased=False)
        total = self.count + batch_count
        delta = batch_mean - self.mean
        # Chan et al.'s parallel combination of two (count, mean, M2) summaries.
        combined_m2 = self.variance * self.count + batch_variance * batch_count + delta**2 * self.count * batch_count / total
        self.mean += delta * batch_count / total
        self.variance.copy_(combined_m2 / total)
        self.count.copy_(total)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.training and not self.frozen and features.shape[0] > 0:
            self._update(features.detach().float())
        scale = torch.where(self.variance > self.eps, self.variance.sqrt(), torch.ones_like(self.variance))
        return (features - self.mean) / scale


def freeze_statistics(model: nn.Module, prefixes: tuple[str, ...] = ("",)) -> Callable[[], None]:
    """Set ``frozen`` on every :class:`RunningStandardizer` of ``model`` whose name starts with one of ``prefixes``
    (with its trailing dot; ``("",)``: all of them), so that a forward pass in training mode leaves their statistics
    as they are. Returns what undoes it (only the ones it froze update again)."""
    standardizers = [
        module for name, module in model.named_modules()
        if isinstance(module, RunningStandardizer) and not module.frozen and f"{name}.".startswith(prefixes)
    ]  # fmt: skip
    for module in standardizers:
        module.frozen = True

    def undo() -> None:
        for module in standardizers:
            module.frozen = False

    return undo


# The history sessions' times (``history_time_features``), in seconds: the decays of the per-action counts (ten
# minutes, an hour, a day, a week), the windows of the item counts (an hour, a day), and the age read for the most
# recent session of a user without history (or whose history is older).
HISTORY_DECAY_SCALES = (600.0, 3600.0, 86400.0, 7 * 86400.0)
HISTORY_TIME_SCALES = (3600.0, 86400.0)
NO_RECENT_SESSION_SECONDS = 30 * 86400.0


def history_time_feature_size(vocab_size: int) -> int:
    """The number of time features :class:`HistoryCountFeatures` adds with ``history_time_features``."""
    return len(HISTORY_DECAY_SCALES) * (vocab_size - 1) + 1 + 2 * len(HISTORY_TIME_SCALES) + 1


def history_count_feature_size(config: A2GenConfig) -> int:
    """The width of :class:`HistoryCountFeatures` for ``config``."""
    size = 4 * (config.vocab_size - 1) + 5
    return size + (history_time_feature_size(config.vocab_size) if config.history_time_features else 0)


class HistoryCountFeatures(nn.Module):
    """
    The history's count features, as the logistic-regression baseline reads them (``training/simple_baselines.py``),
    computed from the batch and standardised (:class:`RunningStandardizer`). With A actions (all ids but padding):

    - per action `(B, A)` each: share of history items whose events include it; the same over the
      ``RECENT_ITEMS`` most recent items; the same over the items in the target's category (item side feature 0;
      every item counts without side features); 1 / (1 + age of the most recent item with it), 0 when none has it;
    - once: log1p(history length); shares of items that are the target item / in its category; 1 / (1 + age of the
      most recent same-category and same-item history item).

    With ``history_time_features``, also the history sessions' times (``history_item_ages``: seconds from each
    history item's session start to the target's): per action, log1p of the sum over the items with it of
    exp(-age / scale), one block per scale of :data:`HISTORY_DECAY_SCALES` (ten minutes, an hour, a day, a week);
    once: log1p of the minutes since the most recent history session (at most :data:`NO_RECENT_SESSION_SECONDS`,
    also without history), and per window of :data:`HISTORY_TIME_SCALES` (an hour, a day) log1p of the number of
    history items younger than it and of those in the target's category; log1p of the number of times the target
    item itself was seen within the last window (a day).

    Ages count real items from the most recent (age 0), so left and right padding give the same features. The history
    may have batch size 1 for B targets (one user, B candidates): what depends on the history alone is then computed
    once and broadcast.
    """

    RECENT_ITEMS = 5

    def __init__(self, config: A2GenConfig):
        super().__init__()
        self.vocab_size = config.vocab_size
        self.time_features = config.history_time_features
        self.size = history_count_feature_size(config)
        self.standardizer = RunningStandardizer(self.size)

    def forward(
        self,
        history_action_ids: torch.LongTensor,
        history_mask: torch.Tensor,
        history_item_ids: torch.LongTensor,
        item_ids: torch.LongTensor,
        history_item_side_ids: torch.LongTensor | None = None,
        item_side_ids: torch.LongTensor | None = None,
        history_item_ages: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`(b, N, E)` ids, `(b, N)` mask and ids with b = B or 1, `(B,)` target ids (side ids `(b, N, F)` / `(B, F)`,
        ages `(b, N)` seconds, required with ``history_time_features``) -> `(B, size)`."""
        mask = history_mask.float()
        real = mask.unsqueeze(-1)
        present = F.one_hot(history_action_ids, self.vocab_size).amax(dim=2)[..., 1:].float() * real  # (b, N, A)
        # Age: real items after this one (0 = the most recent real item).
        age = mask.flip(1).cumsum(1).flip(1) - mask
        if history_item_side_ids is not None and item_side_ids is not None and item_side_ids.shape[-1] > 0:
            same_category = (history_item_side_ids[..., 0] == item_side_ids[:, :1]).float() * mask  # (B, N)
        else:
            same_category = mask
        same_item = (history_item_ids == item_ids.unsqueeze(-1)).float() * mask  # (B, N)
        recent = mask * (age < self.RECENT_ITEMS)

        def share(where: torch.Tensor) -> torch.Tensor:
            """Per action, the share of the items where `where` `(b or B, N)` holds that have it."""
            return (where.unsqueeze(1) @ present).squeeze(1) / where.sum(1, keepdim=True).clamp_min(1.0)

        def recency(where: torch.Tensor) -> torch.Tensor:
            """1 / (1 + the smallest age where `where` `(B, N[, A])` holds), 0 where it never holds."""
            if where.shape[1] == 0:  # no history items (a cold-start user, padding dropped): it never holds
                return where.new_zeros(where.shape[:1] + where.shape[2:])
            ages = age if where.dim() == 2 else age.unsqueeze(-1)
            youngest = torch.where(where > 0, ages, torch.full_like(where, math.inf)).amin(1)
            return 1.0 / (1.0 + youngest)

        length = mask.sum(1, keepdim=True)
        parts = [
            share(mask),
            share(recent),
            share(same_category),
            recency(present),
            torch.log1p(length),
            (same_item.sum(1, keepdim=True) / length.clamp_min(1.0)),
            (same_category.sum(1, keepdim=True) / length.clamp_min(1.0)),
            recency(same_category).unsqueeze(-1),
            recency(same_item).unsqueeze(-1),
        ]
        if self.time_features:
            parts += self._time_parts(history_item_ages, mask, present, same_category, same_item)
        batch = item_ids.shape[0]
        return self.standardizer(torch.cat([part.expand(batch, -1) for part in parts], dim=-1))


    @staticmethod
    def _time_parts(
        ages: torch.Tensor | None, mask: torch.Tensor, present: torch.Tensor, same_category: torch.Tensor,
        same_item: torch.Tensor,
    ) -> list[torch.Tensor]:
        """The time features of the class docstring: ages `(b, N)`, mask `(b, N)`, present `(b, N, A)`, same
        category / item `(b or B, N)` -> `(b or B, k)` parts."""
        if ages is None:
            raise ValueError(
                "This model reads the history sessions' times (history_time_features=True) but got no "
                "history_item_ages: collate with A2GenDataCollator.from_config(model.config, tokenizer) (or "
                "history_ages=True), which makes them from the examples' history_session_starts (data prepared with "
                "this version; an older data folder: run a2gen prepare again), or pass history_item_ages (seconds "
                "from each history item's session start to the target's; serving: encode_histories(..., now=...))."
            )
        if ages.shape != mask.shape:
            raise ValueError(
                f"history_item_ages has shape {tuple(ages.shape)}, history_mask {tuple(mask.shape)}: one age per "
                "history item."
            )
        ages = ages.to(mask.dtype).clamp_min(0.0)
        parts = []
        for scale in HISTORY_DECAY_SCALES:
            weights = torch.exp(-ages / scale) * mask
            parts.append(torch.log1p((weights.unsqueeze(1) @ present).squeeze(1)))
        youngest = torch.where(mask > 0, ages, torch.full_like(ages, math.inf))
        youngest = youngest.amin(1, keepdim=True) if ages.shape[1] else mask.new_full((mask.shape[0], 1), math.inf)
        parts.append(torch.log1p(youngest.clamp_max(NO_RECENT_SESSION_SECONDS) / 60.0))
        for scale in HISTORY_TIME_SCALES:
            within = (ages < scale).to(mask.dtype) * mask
            parts.append(torch.log1p(within.sum(1, keepdim=True)))
            parts.append(torch.log1p((within * same_category).sum(1, keepdim=True)))
        parts.append(torch.log1p((within * same_item).sum(1, keepdim=True)))  # the last scale's window
        return parts


def target_categories(item_ids: torch.LongTensor, item_side_ids: torch.LongTensor | None) -> torch.LongTensor:
    """Item side feature 0 of the targets `(B,)`; all 0 (one category) without side features."""
    if item_side_ids is None or item_side_ids.shape[-1] == 0:
        return torch.zeros_like(item_ids)
    return item_side_ids[:, 0]


def popularity_keyed_by_raw_id(config: A2GenConfig) -> bool:
    """Whether ``config``'s model reads popularity counts keyed by raw item id (and so needs ``item_keys``)."""
    return bool(getattr(config, "target_popularity_features", False)) and (
        getattr(config, "popularity_keys", "buckets") == "raw_ids"
    )


class TargetPopularityFeatures(KeepsBuffersExact):
    """
    The target item's popularity as the logistic-regression baseline reads it: per action, the logit of the item's
    and of its category's action rate on the training examples, smoothed hierarchically (m = ``SMOOTHING`` pseudo
    examples, p = the overall rate)::

        category rate = (category count + m * p) / (category examples + m)
        item rate     = (item count + m * category rate) / (item examples + m)

    plus log1p of the item's and the category's numbers of training examples; `(B, 2 * V + 2)`, standardised. The
    counts are buffers filled by :meth:`fit` (``create_model`` does it on the train split; saved with the model).
    Categories are item side feature 0 (one category for all without side features). Items are keyed as
    ``config.popularity_keys`` says: by hash bucket (``item_ids``; a row per bucket), or by raw id (``item_keys``,
    63-bit keys; a row per distinct train item, ``config.popularity_table_size`` rows, looked up by binary search
    in the sorted ``item_table_keys``; an item not counted reads zero counts, i.e. its category's rate, exactly as
    the regression baseline). While training, pass each example's own outcomes as ``exclude``: they are left out of
    the counts (leave-one-out), so that no example reads its own label through them; out of the category's only
    where train holds several categories (with one, its rate is the same for every example, and leaving each row out
    would make it a perfect reversed label on train: :class:`~a2gen_hf.training.simple_baselines.PopularityBaseline`). The counts stay float32 in a
    bfloat16 model (:class:`KeepsBuffersExact`), and the features are computed in float32.
    """

    SMOOTHING = 20.0
    exact_buffers = ("item_counts", "item_totals", "category_counts", "category_totals")

    def __init__(self, config: A2GenConfig):
        super().__init__()
        vocab_size = config.vocab_size
        self.config = config  # fit records the raw-id table's size in it, so that from_pretrained rebuilds the table
        self.raw_ids = popularity_keyed_by_raw_id(config)
        rows = config.popularity_table_size if self.raw_ids else config.item_buckets
        if self.raw_ids:
            self.register_buffer("item_table_keys", torch.zeros(rows, dtype=torch.long))
        dtype = exact_dtype()
        self.register_buffer("item_counts", torch.zeros(rows, vocab_size, dtype=dtype))
        self.register_buffer("item_totals", torch.zeros(rows, dtype=dtype))
        self.register_buffer("category_counts", torch.zeros(config.side_feature_buckets, vocab_size, dtype=dtype))
        self.register_buffer("category_totals", torch.zeros(config.side_feature_buckets, dtype=dtype))
        self.size = 2 * vocab_size + 2
        self.standardizer = RunningStandardizer(self.size)

    def reset(self) -> None:
        for buffer in (self.item_counts, self.item_totals, self.category_counts, self.category_totals):
            buffer.zero_()

    @torch.no_grad()
    def fit(self, item_ids: torch.LongTensor, categories: torch.LongTensor, occurs: torch.Tensor) -> int:
        """
        Count the training examples: target ``item_ids`` `(n,)` (hashed ids, or the ``item_keys`` of their raw ids
        when keyed by raw id), their ``categories`` `(n,)`, ``occurs`` `(n, V)`. Keyed by raw id, the item table is
        rebuilt with a row per distinct key and ``config.popularity_table_size`` set to their number. Returns the item
        table's rows.
        """
        self.reset()
        device, dtype = self.item_counts.device, self.item_counts.dtype
        occurs = occurs.to(device=device, dtype=dtype)
        items, categories = item_ids.to(device), categories.to(device)
        if self.raw_ids:
            keys, items = torch.unique(items, sorted=True, return_inverse=True)
            self.item_table_keys = keys
            self.item_counts = torch.zeros(len(keys), occurs.shape[1], device=device, dtype=dtype)
            self.item_totals = torch.zeros(len(keys), device=device, dtype=dtype)
            self.config.popularity_table_size = len(keys)
        for counts, totals, rows in (
            (self.item_counts, self.item_totals, items),
            (self.category_counts, self.category_totals, categories),
        ):
            counts.index_add_(0, rows, occurs)
            totals.index_add_(0, rows, torch.ones_like(rows, dtype=totals.dtype))
        return len(self.item_totals)

    def item_rows(
        self, item_ids: torch.LongTensor, item_keys: torch.LongTensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The item counts `(B, V)` and example totals `(B,)` of the targets: by bucket, or by raw-id key."""
        if not self.raw_ids:
            return self.item_counts[item_ids], self.item_totals[item_ids]
        if item_keys is None:
            raise ValueError(
                "This model's popularity counts are keyed by raw item id (config.popularity_keys='raw_ids'): pass "
                "item_keys `(B,)`, tokenizer.item_keys(raw item ids) (A2GenDataCollator builds it from the 'item' "
                "column), beside item_ids."
            )
        table = self.item_table_keys
        if table.numel() == 0:  # nothing counted: every item reads its category's rate
            zeros = self.item_counts.new_zeros(item_keys.shape[0], self.item_counts.shape[1])
            return zeros, zeros[:, 0]
        rows = torch.searchsorted(table, item_keys).clamp_max(table.numel() - 1)
        found = (table[rows] == item_keys).float()
        return self.item_counts[rows] * found.unsqueeze(-1), self.item_totals[rows] * found

    def forward(
        self,
        item_ids: torch.LongTensor,
        categories: torch.LongTensor,
        exclude: torch.Tensor | None = None,
        item_keys: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """`(B,)` target items and categories (`exclude` `(B, V)`: own outcomes while training; `item_keys` `(B,)`:
        raw-id keys, required when the counts are keyed by them) -> `(B, size)`."""
        item_counts, item_totals = self.item_rows(item_ids, item_keys)
        category_counts, category_totals = self.category_counts[categories], self.category_totals[categories]
        examples = self.category_totals.sum()
        prior = self.category_counts.sum(0) / examples.clamp_min(1.0)
        if exclude is not None:
            exclude = exclude.to(item_counts.dtype)
            # clamp: the batch may hold examples that were not counted (e.g. fine-tuning on other data)
            item_counts = (item_counts - exclude).clamp_min(0.0)
            item_totals = (item_totals - 1).clamp_min(0.0)
            # Left out of the category's counts only where train has several categories (see the class docstring).
            several = ((self.category_totals > 0).sum() > 1).to(exclude.dtype)  # a tensor: no host sync
            category_counts = (category_counts - several * exclude).clamp_min(0.0)
            category_totals = (category_totals - several).clamp_min(0.0)
        smoothing = self.SMOOTHING
        category_rate = (category_counts + smoothing * prior) / (category_totals + smoothing).unsqueeze(-1)
        item_rate = (item_counts + smoothing * category_rate) / (item_totals + smoothing).unsqueeze(-1)
        features = torch.cat(
            [
                torch.logit(item_rate.clamp(1e-4, 1 - 1e-4)),
                torch.logit(category_rate.clamp(1e-4, 1 - 1e-4)),
                torch.log1p(item_totals).unsqueeze(-1),
                torch.log1p(category_totals).unsqueeze(-1),
            ],
            dim=-1,
        )
        return self.standardizer(features)


def extra_feature_size(config: A2GenConfig) -> int:
    """The width of :class:`ExtraContextFeatures` for ``config`` (without building it)."""
    vocab_size = config.vocab_size
    return (
        (vocab_size if config.history_propensity_features else 0)
        + (history_count_feature_size(config) if config.history_count_features else 0)
        + (2 * vocab_size + 2 if config.target_popularity_features else 0)
    )


class ExtraContextFeatures(nn.Module):
    """
    The inputs beyond the paper that the config switches on, concatenated `(B, size)`: the count rule's propensities
    (``history_propensity_features``, `V`), :class:`HistoryCountFeatures` and :class:`TargetPopularityFeatures`.
    A2Gen appends them to its generation context, MMoE and PLE to their towers' input, so both read the same.
    They are computed in float32 (:class:`KeepsBuffersExact`) and come out in the model's dtype, the dtype of the
    layers that read them (a bfloat16 model's context is bfloat16).
    """

    def __init__(self, config: A2GenConfig):
        super().__init__()
        self.propensity_size = config.vocab_size if config.history_propensity_features else 0
        self.count_features = HistoryCountFeatures(config) if config.history_count_features else None
        self.popularity_features = TargetPopularityFeatures(config) if config.target_popularity_features else None
        self.size = (
            self.propensity_size
            + (self.count_features.size if self.count_features is not None else 0)
            + (self.popularity_features.size if self.popularity_features is not None else 0)
        )
        assert self.size == extra_feature_size(config)
        if self.size:
            # Empty and not saved: it follows the model's casts (.to(dtype), from_pretrained(dtype=...)) and so
            # tells the dtype the features leave in.
            self.register_buffer("output_dtype_reference", torch.zeros(0), persistent=False)

    def forward(
        self,
        history_action_ids: torch.LongTensor,
        history_mask: torch.Tensor,
        history_item_ids: torch.LongTensor,
        item_ids: torch.LongTensor,
        history_item_side_ids: torch.LongTensor | None = None,
        item_side_ids: torch.LongTensor | None = None,
        target_occurrences: torch.Tensor | None = None,
        item_keys: torch.LongTensor | None = None,
        history_item_ages: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The history inputs as in ``forward`` of the models (padding items' events are ignored) -> `(B, size)`; the
        history may have batch size b = 1 for B targets (one user's candidates). ``item_keys`` `(B,)`: the targets'
        raw-id keys, read by popularity counts keyed by raw id; ``history_item_ages`` `(b, N)`: seconds from each
        history item's session start to the target's, read by the time features (``history_time_features``)."""
        parts = []
        if self.propensity_size:
            propensity = history_action_propensity(history_action_ids, history_mask, self.propensity_size)
            parts.append(propensity.expand(item_ids.shape[0], -1))
        if self.count_features is not None:
            parts.append(
                self.count_features(
                    history_action_ids, history_mask, history_item_ids, item_ids, history_item_side_ids, item_side_ids,
                    history_item_ages,
                )
            )
        if self.popularity_features is not None:
            parts.append(
                self.popularity_features(
                    item_ids, target_categories(item_ids, item_side_ids), target_occurrences, item_keys
                )
            )
        return torch.cat(parts, dim=-1).to(self.output_dtype_reference.dtype)


class WidePath(nn.Module):
    """
    The wide path (``config.wide_path``): per action, a linear logit over the extra features only,
    `(B, extra_feature_size)` -> `(B, V)`, 0 in the columns of padding, the start and the end action (which are not
    ranked). Added to a network's ranking logits and trained jointly with it, it makes the network contain the
    logistic regression on counts (:class:`~a2gen_hf.training.simple_baselines.CountFeatureLogisticRegression`),
    which :func:`~a2gen_hf.training.simple_baselines.warm_start_wide_path` can copy in.
    """

    def __init__(self, config: A2GenConfig):
        super().__init__()
        self.input_size = extra_feature_size(config)
        if not self.input_size:
            raise ValueError(
                "wide_path=True reads the count / popularity features, but none is switched on: set "
                "history_count_features and / or target_popularity_features (--count-features, --popularity-features)."
            )
        self.linear = nn.Linear(self.input_size, config.vocab_size)
        self.unranked_ids = [0, config.start_action_id, config.end_action_id]
        self.register_buffer("ranked", torch.empty(config.vocab_size), persistent=False)
        self.reset_ranked()

    @torch.no_grad()
    def reset_ranked(self) -> None:
        """Write the `(V,)` mask: 1 for the ranked actions, 0 for padding, start and end. Not saved with the weights:
        ``from_pretrained`` leaves it as fresh memory, and the model's ``_init_weights`` calls this to rebuild it."""
        self.ranked.fill_(1.0)
        self.ranked[self.unranked_ids] = 0.0

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """`(B, ..., input_size)` extra features, or any wider input that ends with them -> `(B, V)`."""
        return self.linear(context[..., context.shape[-1] - self.input_size :]) * self.ranked


class A2GenOccurrenceHead(nn.Module):
    """
    Per action, the logit of "it happens after start" from the generation context `(B, C)` -> `(B, V)`: a linear
    path (so that standardised count features in the context act as in a logistic regression; none with
    ``config.occurrence_linear_path=False``) plus a path through one hidden layer of width
    ``config.occurrence_hidden_size`` (default ``hidden_size``), both multiplied by ``config.occurrence_path_scale``;
    with ``config.wide_path`` also :class:`WidePath` over the extra features, which end the generation context. With
    ``config.occurrence_paths_input="without_extra"`` the two learned paths read the context without those features
    (the wide path alone reads them), with ``"extra_only"`` those features alone.
    """

    def __init__(self, config: A2GenConfig, context_size: int):
        super().__init__()
        self.wide = WidePath(config) if config.wide_path else None
        extra = extra_feature_size(config)  # the extra features end the context
        # What the learned paths read: the whole context, all but the extra features, or those alone.
        self.paths_input = {"context": slice(None), "without_extra": slice(None, -extra or None),
                            "extra_only": slice(-extra or None, None)}[config.occurrence_paths_input]
        paths_size = len(range(context_size)[self.paths_input])
        self.linear = nn.Linear(paths_size, config.vocab_size) if config.occurrence_linear_path else None
        width = config.occurrence_hidden_size or config.hidden_size
        self.hidden = nn.Linear(paths_size, width)
        self.output = nn.Linear(width, config.vocab_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.scale = float(config.occurrence_path_scale)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        inputs = context[..., self.paths_input]
        logits = self.output(self.dropout(torch.relu(self.hidden(inputs))))
        if self.linear is not None:
            logits = logits + self.linear(inputs)
        if self.scale != 1.0:
            logits = logits * self.scale
        return logits if self.wide is None else logits + self.wide(context)


def own_outcomes_while_training(
    model: nn.Module, labels: torch.LongTensor | None, label_times: torch.Tensor | None
) -> torch.Tensor | None:
    """The examples' own outcomes `(B, V)`, which the popularity features leave out, while a model with them trains."""
    if not (model.training and model.config.target_popularity_features and labels is not None):
        return None
    return first_occurrence_targets(labels, label_times, None, model.config.vocab_size)[0]


def occurrence_probabilities(model: nn.Module, context: torch.Tensor) -> torch.Tensor:
    """P(action happens) `(B, V)` from the occurrence head on the generation context `(B, C)`; start 1, padding 0."""
    probabilities = torch.sigmoid(model.occurrence_head(context).float())
    columns = torch.arange(probabilities.shape[-1], device=probabilities.device)
    is_start, is_pad = columns == model.config.start_action_id, columns == 0
    return torch.where(is_start, 1.0, torch.where(is_pad, 0.0, probabilities))


def occurrence_loss(
    occurrence_logits: torch.Tensor, labels: torch.LongTensor, label_times: torch.Tensor, config: A2GenConfig
) -> torch.Tensor:
    """Binary cross-entropy of `(B, V)` logits against "the action happens after start", summed over the actions
    other than padding and start, averaged over examples."""
    occurs, _, _ = first_occurrence_targets(labels, label_times, None, config.vocab_size)
    scored = torch.ones(config.vocab_size, dtype=torch.bool, device=labels.device)
    scored[0] = scored[config.start_action_id] = False
    losses = F.binary_cross_entropy_with_logits(occurrence_logits.float(), occurs.float(), reduction="none")
    return (losses * scored).sum(1).mean()

