"""
Simple, non-neural baselines that every network must beat: count rules and a logistic regression on counts.

All of them read the columns of a saved ``DatasetDict`` split (``docs/design.md``, "Examples on disk") as arrow
arrays, fit on the train split only and predict in the format of ``predict_actions`` so that the networks' metric
code (:func:`a2gen_hf.metrics.compute_action_metrics`) scores them unchanged:

- ``action_probabilities`` `(n, V)`: P(the action happens after ``start`` in the target's sequence) per action id
  (column 0, padding, is 0);
- ``expected_times`` `(n, V)`: the normalised time of its first occurrence. Every baseline here predicts the
  per-action **median** of that time on the train split (:class:`ConstantMedianTime`): most first-occurrence times
  are 0 s on e-commerce logs (85-89 % of Taobao's fav / cart), so a constant median is a strong MAE reference.

The baselines (:data:`SIMPLE_BASELINES`):

- ``propensity`` (:class:`UserPropensityBaseline`): the share of the user's last ``window`` history items whose
  events include the action; no learning apart from an optional shrinkage towards the train rate;
- ``popularity`` (:class:`PopularityBaseline`): the target item's action rate on train, shrunk towards its
  category's rate (item side feature 0), shrunk towards the global rate;
- ``logreg`` (:class:`CountFeatureLogisticRegression`): one ``sklearn`` logistic regression per action on count
  features (user propensities, item / category rates, history length, category overlap, recency), C chosen on
  validation;
- ``logreg-shares`` (:class:`ShareScaledLogisticRegression`): ``logreg`` whose fit per action may also shrink the
  user propensities 10 times less than the other features (chosen on validation): the regression the
  ``sparse_logs`` recipe starts A2Gen from;
- ``count-network`` (:class:`CountNetworkBaseline`): ``logreg`` plus a one-hidden-layer network on the same
  features fitted on its residual, as the ``sparse_logs`` recipe fits A2Gen's occurrence head (what A2Gen's ranking
  is made of there, without A2Gen); ``count-network-shares``: the same on ``logreg-shares`` (as the recipe now);
- ``median-time`` (:class:`ConstantMedianTime`): the train rate of each action for every example (AUC 0.5) and the
  median times.

Usage::

    tokenizer = A2GenActionTokenizer.from_pretrained(f"{data_dir}/tokenizer")
    splits = load_from_disk(data_dir)
    baseline = SIMPLE_BASELINES["logreg"](tokenizer).fit(splits["train"], splits["validation"])
    predictions = baseline.predict(splits["test"])  # {"action_probabilities": (n, V), "expected_times": (n, V)}
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Dataset
from scipy.special import logit
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ..data.collator import SESSION_TIME_COLUMNS, check_session_time_columns
from ..features_a2gen import (
    CONSTANT_VARIANCE,
    HISTORY_DECAY_SCALES,
    HISTORY_TIME_SCALES,
    NO_RECENT_SESSION_SECONDS,
    history_count_feature_size,
)
from ..metrics import predicted_next_actions, ranked_action_ids
from ..metrics.auc import auc, has_both_classes
from ..tokenization_a2gen import A2GenActionTokenizer

logger = logging.getLogger(__name__)

HISTORY_COLUMNS = ("item_id", "history_item_ids", "history_action_ids")
TARGET_COLUMNS = ("action_ids", "action_seconds")
# Category = item side feature 0; without side features every item is in one category.
CATEGORY_COLUMNS = ("item_side_ids", "history_item_side_ids")


def _read_columns(dataset: Dataset, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> pa.Table:
    """The `required` (and present `optional`) columns of `dataset` as one arrow table, row selections applied."""
    missing = [name for name in required if name not in dataset.column_names]
    if missing:
        raise KeyError(
            f"The simple baselines need the column(s) {missing}, which this split lacks (it has "
            f"{dataset.column_names}); use a folder written by `a2gen prepare` or `a2gen simulate` "
            "(docs/design.md, 'Examples on disk')."
        )
    present = [name for name in optional if name in dataset.column_names]
    return dataset.with_format("arrow", columns=list(required) + present)[:]


def _list_parts(array: pa.Array | pa.ChunkedArray, column: str) -> tuple[np.ndarray, pa.Array]:
    """A list column (named `column` in messages) -> (length of every list `(rows,)`, the concatenated values)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.null_count:
        row = int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"Column {column!r} is null in row {row}; every row needs a list (empty when there is none).")
    lengths = pc.list_value_length(array).to_numpy().astype(np.int64)
    return lengths, pc.list_flatten(array)


def _checked_action_ids(values: pa.Array, column: str, vocab_size: int) -> np.ndarray:
    ids = values.to_numpy(zero_copy_only=False).astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        bad = int(ids.max()) if ids.max() >= vocab_size else int(ids.min())
        raise ValueError(
            f"Column {column!r} holds action id {bad} but the tokenizer has ids 0..{vocab_size - 1}; use the "
            "tokenizer saved with this data folder (DIR/tokenizer)."
        )
    return ids


def _first_side_feature(lengths: np.ndarray, values: pa.Array, column: str) -> np.ndarray:
    """Side feature 0 of every row of a list<int64> column `(rows,)`; rows without side features -> 0."""
    values = values.to_numpy(zero_copy_only=False).astype(np.int64)
    category = np.zeros(len(lengths), dtype=np.int64)
    has_features = lengths > 0
    category[has_features] = values[(np.cumsum(lengths) - lengths)[has_features]]
    if has_features.any() and not has_features.all():
        raise ValueError(
            f"Column {column!r} lists side features for some items but not for row "
            f"{int(np.flatnonzero(~has_features)[0])}; every item needs the same number of side features."
        )
    return category


# The ``sparse_logs`` recipe's share scale (``wide_share_scale``) and the ``-shares`` baselines': the user propensities
# may be shrunk 10 times less (a 100 times weaker L2 penalty) than the other count features.
SHARE_SCALE = 10.0


def share_scales_for(share_scale: float) -> tuple[float, ...]:
    """The share scales a wide start's regression tries for ``wide_share_scale`` k: the plain regression, and k
    unless k is 1."""
    check_share_scale(share_scale)
    return (1.0,) if share_scale == 1.0 else (1.0, float(share_scale))


def check_share_scale(share_scale: float) -> None:
    """Refuse a share scale below 1 (or not a finite number): it lightens the user propensities' penalty."""
    if not (np.isfinite(share_scale) and share_scale >= 1.0):
        raise ValueError(
            f"share_scale={share_scale} must be a finite number >= 1 (1 = the plain regression; k > 1 also tries the "
            "user propensities shrunk k times less than the other count features, e.g. 10)."
        )


@dataclass
class HistoryCounts:
    """
    What the baselines read off a split's history columns (n = examples, H = kept history items, V = action ids).

    Kept history items are the last ``window`` of every example (the lists are oldest first).

    Attributes:
        history_length: `(n,)` the full (uncapped) number of history items.
        kept_length: `(n,)` the number of kept history items.
        owner: `(H,)` example index of every kept item. age: `(H,)` 0 = the most recent item.
        item_actions: `(H, V)` bool, the item's events include the action.
        same_item: `(H,)` bool, the kept item is the example's target item (hashed ids).
        same_category: `(H,)` bool, the kept item shares the target's category (item side feature 0; all True
            without side features).
        target_item: `(n,)` arrow array of the target items' raw ids (``item``; the hashed ``item_id`` without it).
        target_category: `(n,)` side feature 0 of the target item (0 without side features).
        age_seconds: `(H,)` seconds from the kept item's session start to its example's (``session_start`` minus
            ``history_session_starts``); None when the split has no ``history_session_starts`` column.
    """

    history_length: np.ndarray
    kept_length: np.ndarray
    owner: np.ndarray
    age: np.ndarray
    item_actions: np.ndarray
    same_item: np.ndarray
    same_category: np.ndarray
    target_item: pa.Array
    target_category: np.ndarray
    age_seconds: np.ndarray | None = None

    @property
    def num_examples(self) -> int:
        return len(self.history_length)

    @classmethod
    def from_dataset(cls, dataset: Dataset, vocab_size: int, window: int, times: bool = False) -> HistoryCounts:
        """The counts of ``dataset``'s rows; with ``times`` also the kept items' ages (``age_seconds``), read from
        :data:`~a2gen_hf.data.collator.SESSION_TIME_COLUMNS` (then required)."""
        if window < 1:
            raise ValueError(f"window={window} must be >= 1 (the number of most recent history items read).")
        if times:
            check_session_time_columns(dataset.column_names, "The data")
        table = _read_columns(
            dataset, HISTORY_COLUMNS + (SESSION_TIME_COLUMNS if times else ()), optional=("item",) + CATEGORY_COLUMNS
        )
        history_length, history_items = _list_parts(table.column("history_item_ids"), "history_item_ids")
        num_items = int(history_length.sum())
        owner_all = np.repeat(np.arange(len(history_length)), history_length)
        position = np.arange(num_items) - np.repeat(np.cumsum(history_length) - history_length, history_length)
        age_all = history_length[owner_all] - 1 - position
        kept = age_all < window

        item_events = _per_item_values(table, "history_action_ids", history_length, "its list of events")
        event_counts, events = _list_parts(item_events, "history_action_ids")
        event_ids = _checked_action_ids(events, "history_action_ids", vocab_size)
        item_actions = np.zeros((num_items, vocab_size), dtype=bool)
        item_actions[np.repeat(np.arange(num_items), event_counts), event_ids] = True
        item_actions[:, 0] = False

        target_item_id = table.column("item_id").to_numpy().astype(np.int64)
        owner = owner_all[kept]
        same_item = history_items.to_numpy(zero_copy_only=False)[kept] == target_item_id[owner]
        if all(name in table.column_names for name in CATEGORY_COLUMNS):
            target_category = _first_side_feature(
                *_list_parts(table.column("item_side_ids"), "item_side_ids"), "item_side_ids"
            )
            _, item_side_lists = _list_parts(table.column("history_item_side_ids"), "history_item_side_ids")
            history_category = _first_side_feature(
                *_list_parts(item_side_lists, "history_item_side_ids"), "history_item_side_ids"
            )
            same_category = history_category[kept] == target_category[owner]
        else:
            target_category = np.zeros(len(history_length), dtype=np.int64)
            same_category = np.ones(int(kept.sum()), dtype=bool)
        raw_items = table.column("item" if "item" in table.column_names else "item_id").combine_chunks()
        age_seconds = _history_ages(table, history_length, owner_all, kept) if times else None
        return cls(
            history_length=history_length,
            kept_length=np.minimum(history_length, window),
            owner=owner,
            age=age_all[kept],
            item_actions=item_actions[kept],
            same_item=same_item,
            same_category=same_category,
            target_item=raw_items,
            target_category=target_category,
            age_seconds=age_seconds,
        )

    def per_example_sum(self, values: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
        """Sum over every example's kept items of `values` `(H,)` or `(H, k)` (only where `where`) -> `(n,)` / `(n, k)`."""
        values = values if where is None else values * (where[:, None] if values.ndim == 2 else where)
        if values.ndim == 1:
            return np.bincount(self.owner, weights=values, minlength=self.num_examples)
        return np.stack(
            [np.bincount(self.owner, weights=values[:, k], minlength=self.num_examples) for k in range(values.shape[1])],
            axis=1,
        )

    def action_shares(self, max_age: int | None = None) -> np.ndarray:
        """`(n, V)` share of the kept items (only the last `max_age` when given) whose events include each action;
        0 for an example without history."""
        recent = None if max_age is None else self.age < max_age
        counts = self.per_example_sum(self.item_actions.astype(np.float64), recent)
        lengths = self.kept_length if max_age is None else np.minimum(self.kept_length, max_age)
        return counts / np.maximum(lengths, 1)[:, None]

    def time_features(self) -> np.ndarray:
        """`(n, k)` the history sessions' time features, column for column as
        :class:`~a2gen_hf.features_a2gen.HistoryCountFeatures` computes them with ``history_time_features``."""
        if self.age_seconds is None:
            raise ValueError("These counts were read without the times: HistoryCounts.from_dataset(..., times=True).")
        ages = self.age_seconds
        present = self.item_actions[:, 1:].astype(np.float64)
        columns = [np.log1p(self.per_example_sum(present * np.exp(-ages / scale)[:, None])) for scale in HISTORY_DECAY_SCALES]
        youngest = np.full(self.num_examples, np.inf)
        np.minimum.at(youngest, self.owner, ages)
        once = [np.log1p(np.minimum(youngest, NO_RECENT_SESSION_SECONDS) / 60.0)]
        for scale in HISTORY_TIME_SCALES:
            within = (ages < scale).astype(np.float64)
            once += [np.log1p(self.per_example_sum(within)), np.log1p(self.per_example_sum(within, self.same_category))]
        once.append(np.log1p(self.per_example_sum(within, self.same_item)))  # the last scale's window
        return np.concatenate([*columns, np.stack(once, axis=1)], axis=1)

    def most_recent_age(self, where: np.ndarray) -> np.ndarray:
        """`(n,)` age of the most recent kept item where `where` `(H,)` holds; inf when there is none."""
        ages = np.full(self.num_examples, np.inf)
        np.minimum.at(ages, self.owner[where], self.age[where].astype(np.float64))
        return ages


def _per_item_values(table: pa.Table, column: str, history_length: np.ndarray, what: str) -> pa.Array:
    """The values of a list column with one entry per history item (laid end to end), refused, naming the row,
    where a row's list is not as long as its ``history_item_ids``."""
    lengths, values = _list_parts(table.column(column), column)
    if not np.array_equal(lengths, history_length):
        row = int(np.flatnonzero(lengths != history_length)[0])
        raise ValueError(
            f"Row {row} has {history_length[row]} history_item_ids but {lengths[row]} entries in {column}; every "
            f"history item needs {what}."
        )
    return values


def _whole_seconds(array: pa.Array | pa.ChunkedArray, column: str) -> np.ndarray:
    """A column of Unix seconds -> float64 (V,); a null, a fraction or a non-number is refused, naming the row."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.null_count:
        raise ValueError(f"Column {column!r} holds a null in value {int(np.argmax(array.is_null().to_numpy(zero_copy_only=False)))}; "
                         "the session times are whole Unix seconds, as a2gen prepare writes them.")  # fmt: skip
    if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)):
        raise ValueError(f"Column {column!r} holds {array.type} values, not whole Unix seconds.")
    values = array.to_numpy(zero_copy_only=False).astype(np.float64)
    bad = ~np.isfinite(values) | (values != np.floor(values))
    if bad.any():
        raise ValueError(
            f"Column {column!r} holds {float(values[np.argmax(bad)])!r} (value {int(np.argmax(bad))}), not whole Unix seconds "
            "(as a2gen prepare writes them: floored)."
        )
    return values


def _history_ages(table: pa.Table, history_length: np.ndarray, owner_all: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """`(H,)` seconds from each kept history item's session start to its example's (the collator's
    ``history_item_ages``); lists of another length, nulls, fractions and a start after the example's are refused."""
    starts = _per_item_values(table, "history_session_starts", history_length, "its session's start")
    session_start = _whole_seconds(table.column("session_start"), "session_start")
    ages = session_start[owner_all] - _whole_seconds(starts, "history_session_starts")
    if (ages < 0).any():
        raise ValueError(
            f"Row {int(owner_all[np.argmax(ages < 0)])} has a history session that starts after its session_start; a "
            "history is what came before the example (history_session_starts <= session_start, Unix seconds)."
        )
    return ages[kept]


@dataclass
class ActionTargets:
    """
    Per-action targets of a split, as :func:`a2gen_hf.targets.first_occurrence_targets` defines them
    (an action happens if it occurs after ``start``; its time is that of its first occurrence).

    Attributes:
        occurs: `(n, V)` bool. times: `(n, V)` normalised first-occurrence times (0 where unknown or absent).
        known: `(n, V)` bool, the action happens and its time is known.
    """

    occurs: np.ndarray
    times: np.ndarray
    known: np.ndarray

    @classmethod
    def from_dataset(cls, dataset: Dataset, tokenizer: A2GenActionTokenizer) -> ActionTargets:
        vocab_size = len(tokenizer.action_names) + 1
        table = _read_columns(dataset, TARGET_COLUMNS)
        lengths, ids = _list_parts(table.column("action_ids"), "action_ids")
        second_lengths, seconds = _list_parts(table.column("action_seconds"), "action_seconds")
        if not np.array_equal(lengths, second_lengths):
            row = int(np.flatnonzero(lengths != second_lengths)[0])
            raise ValueError(
                f"Row {row} has {lengths[row]} action_ids but {second_lengths[row]} action_seconds; each action "
                "needs one time (NaN when unknown)."
            )
        ids = _checked_action_ids(ids, "action_ids", vocab_size)
        seconds = seconds.to_numpy(zero_copy_only=False).astype(np.float64)
        row = np.repeat(np.arange(len(lengths)), lengths)
        after_start = (np.arange(len(ids)) - np.repeat(np.cumsum(lengths) - lengths, lengths)) > 0
        after_start &= ids > 0
        # np.unique returns the index of each key's first appearance: the first occurrence in sequence order.
        keys, first = np.unique(row[after_start] * vocab_size + ids[after_start], return_index=True)
        first_seconds = seconds[after_start][first]
        shape = (len(lengths), vocab_size)
        occurs = np.zeros(shape, dtype=bool)
        times = np.zeros(shape)
        known = np.zeros(shape, dtype=bool)
        occurs.flat[keys] = True
        finite = np.isfinite(first_seconds)
        known.flat[keys[finite]] = True
        times.flat[keys[finite]] = tokenizer.normalize_seconds(first_seconds[finite])
        return cls(occurs=occurs, times=times, known=known)

    def median_time(self) -> float:
        """The median of every action's known times (0 if none is known)."""
        return float(np.median(self.times[self.known])) if self.known.any() else 0.0

    def median_times(self) -> np.ndarray:
        """`(V,)` median known time per action; actions never timed get :meth:`median_time`; 0 for padding."""
        overall = self.median_time()
        medians = np.array(
            [np.median(self.times[self.known[:, a], a]) if self.known[:, a].any() else overall
             for a in range(self.occurs.shape[1])]
        )
        medians[0] = 0.0
        return medians


def smoothed_rates(occurs: np.ndarray) -> np.ndarray:
    """
    `(V,)` every action's train rate smoothed by half a pseudo positive and half a pseudo negative, (positives + 0.5)
    / (n + 1), of `(n, V)` boolean ``occurs``: the probability given to a ranked action that happens in no training
    row or in every one, where nothing can be fitted and its plain rate, exactly 0 or 1, would claim a certainty no
    log holds (logit about -9.2 for 0 of 5,000 rows, +9.2 for 5,000 of 5,000).
    """
    return (occurs.sum(axis=0) + 0.5) / (len(occurs) + 1.0)


def one_class_actions(occurs: np.ndarray, vocabulary) -> np.ndarray:
    """`(V,)` True for the ranked actions of ``vocabulary`` (a tokenizer or config; all but padding, start and end)
    that happen in no row of `(n, V)` boolean ``occurs`` or in every one. Start and end are left out: the end action
    happens in every target by construction (a session ends), and neither is ranked."""
    one_class = np.zeros(occurs.shape[1], dtype=bool)
    ranked = ranked_action_ids(vocabulary)
    one_class[ranked] = ~occurs[:, ranked].any(axis=0) | occurs[:, ranked].all(axis=0)
    return one_class


def constant_rates(occurs: np.ndarray, vocabulary) -> np.ndarray:
    """`(V,)` the constant probability of every action of `(n, V)` boolean ``occurs`` (the train targets): its train
    rate, :func:`smoothed_rates` for a ranked action with one class there (:func:`one_class_actions`)."""
    return np.where(one_class_actions(occurs, vocabulary), smoothed_rates(occurs), occurs.mean(axis=0))


class SimpleBaseline:
    """
    Common interface: ``fit(train, validation=None)`` then ``predict(dataset)``.

    ``fit`` learns the train rate of every action (``base_rates_`` `(V,)`, exact: the popularity rates' prior) and
    its median first-occurrence time (``median_times_`` `(V,)`, the time prediction of every baseline here), then
    whatever the subclass needs. A ranked action with one class on train (it happens in no training row, or in every
    one) has nothing to learn from: a baseline that learns from the train labels (``learns_from_labels``, all but the
    count rule) predicts it as the constant ``constant_rates_`` `(V,)` holds for it, :func:`smoothed_rates`, never
    exactly 0 or 1.

    Args:
        tokenizer: the fitted tokenizer saved with the data (its action vocabulary and time statistics are used).
    """

    # Whether the probabilities come from the train labels (so that an action with one class there gets the constant
    # ``constant_rates_``); the count rule reads each example's history only.
    learns_from_labels = True

    def __init__(self, tokenizer: A2GenActionTokenizer):
        self.tokenizer = tokenizer
        self.vocab_size = len(tokenizer.action_names) + 1
        self.base_rates_: np.ndarray | None = None
        self.constant_rates_: np.ndarray | None = None
        self.one_class_: np.ndarray | None = None
        self.median_times_: np.ndarray | None = None

    @property
    def needs_validation(self) -> bool:
        """Whether :meth:`fit` chooses a setting on the validation split (and so refuses to go without one)."""
        return False

    def fit(self, train: Dataset, validation: Dataset | None = None) -> SimpleBaseline:
        targets = ActionTargets.from_dataset(train, self.tokenizer)
        if len(targets.occurs) == 0:
            raise ValueError("The train split is empty; the simple baselines need training examples.")
        self.base_rates_ = targets.occurs.mean(axis=0)
        self.constant_rates_ = constant_rates(targets.occurs, self.tokenizer)
        self.one_class_ = one_class_actions(targets.occurs, self.tokenizer)
        self.median_times_ = targets.median_times()
        self._fit(train, targets, validation)
        return self

    def predict(self, dataset: Dataset) -> dict[str, np.ndarray]:
        """``{"action_probabilities": (n, V), "expected_times": (n, V), "next_actions": (n,)}`` for every row of
        `dataset`; the next action is :func:`~a2gen_hf.metrics.predicted_next_actions` of the other two, as for
        the networks that do not generate."""
        if self.base_rates_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call .fit(train_split) first.")
        probabilities = self._probabilities(dataset)
        if self.learns_from_labels:  # nothing learnt for these: the smoothed constant, not exactly 0 or 1
            probabilities[:, self.one_class_] = self.constant_rates_[self.one_class_]
        probabilities[:, 0] = 0.0
        times = np.tile(self.median_times_, (len(probabilities), 1))
        start, end = self.tokenizer.convert_tokens_to_ids([self.tokenizer.start_action, self.tokenizer.end_action])
        return {
            "action_probabilities": probabilities,
            "expected_times": times,
            "next_actions": predicted_next_actions(probabilities, times, start, end_action_id=end),
        }

    def _fit(self, train: Dataset, targets: ActionTargets, validation: Dataset | None) -> None:
        """Subclass hook: fit what `_probabilities` needs (train only; `validation` only to choose settings)."""

    def _probabilities(self, dataset: Dataset) -> np.ndarray:
        raise NotImplementedError


class ConstantMedianTime(SimpleBaseline):
    """The train rate of every action as its probability (AUC 0.5; smoothed where it has one class on train,
    ``constant_rates_``) and the train median time (the MAE reference)."""

    def _probabilities(self, dataset: Dataset) -> np.ndarray:
        return np.tile(self.constant_rates_, (len(dataset), 1))


class UserPropensityBaseline(SimpleBaseline):
    """
    The count rule: P(action) = share of the example's last `window` history items whose events include it.

    With ``prior_strength = s > 0`` the share is shrunk towards the action's train rate p:
    ``(count + s * p) / (kept items + s)``. An example without history gets p. It reads no train label beyond p, so an
    action with one class on train keeps its shares (``learns_from_labels`` False).

    Args:
        window: the number of most recent history items read.
        prior_strength: s, in pseudo history items (0 = the plain share).
    """

    learns_from_labels = False

    def __init__(self, tokenizer: A2GenActionTokenizer, window: int = 50, prior_strength: float = 0.0):
        super().__init__(tokenizer)
        if prior_strength < 0:
            raise ValueError(f"prior_strength={prior_strength} must be >= 0 (pseudo history items).")
        self.window = window
        self.prior_strength = prior_strength

    def _probabilities(self, dataset: Dataset) -> np.ndarray:
        history = HistoryCounts.from_dataset(dataset, self.vocab_size, self.window)
        counts = history.per_example_sum(history.item_actions.astype(np.float64))
        lengths = history.kept_length[:, None] + self.prior_strength
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = (counts + self.prior_strength * self.base_rates_) / lengths
        return np.where(lengths > 0, shares, self.base_rates_)


class _RateTable:
    """Per-key action counts on train: ``lookup`` gives `(n, V)` counts and `(n,)` totals (0 for unseen keys)."""

    def __init__(self, keys: pa.Array, occurs: np.ndarray):
        self.keys = pc.unique(keys)
        index = pc.index_in(keys, value_set=self.keys).to_numpy()
        self.totals = np.bincount(index, minlength=len(self.keys)).astype(np.float64)
        self.counts = np.stack(
            [np.bincount(index, weights=occurs[:, a], minlength=len(self.keys)) for a in range(occurs.shape[1])],
            axis=1,
        )

    def lookup(self, keys: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        index = pc.index_in(keys, value_set=self.keys)
        seen = index.is_valid().to_numpy(zero_copy_only=False)
        index = index.fill_null(0).to_numpy()
        return self.counts[index] * seen[:, None], self.totals[index] * seen


class PopularityBaseline(SimpleBaseline):
    """
    Item popularity of every action on train, smoothed hierarchically (m = `smoothing`, p = the train rate)::

        category rate = (category count + m * p) / (category examples + m)
        item rate     = (item count + m * category rate) / (item examples + m)

    Items are keyed by their raw id (``item``), categories by item side feature 0; an item or category absent
    from train gets the rate one level up. The train rows' own outcomes are left out of their item's rate (and of
    their category's and the train rate, where train holds more than one category): with a single category (a log
    without item side features) its rate is the same for every example, and leaving each row out of it would make
    it a perfect reversed label on train alone (a positive row reads a slightly lower rate than every negative one),
    which the regression standardised and fitted on, to probabilities 100 times too low elsewhere.

    Args:
        smoothing: m, in pseudo examples.
    """

    def __init__(self, tokenizer: A2GenActionTokenizer, smoothing: float = 20.0):
        super().__init__(tokenizer)
        if smoothing <= 0:
            raise ValueError(f"smoothing={smoothing} must be > 0 (pseudo examples).")
        self.smoothing = smoothing

    def _fit(self, train: Dataset, targets: ActionTargets, validation: Dataset | None) -> None:
        history = HistoryCounts.from_dataset(train, self.vocab_size, window=1)
        self.train_size_ = history.num_examples
        self.item_rates_ = _RateTable(history.target_item, targets.occurs)
        self.category_rates_ = _RateTable(pa.array(history.target_category), targets.occurs)

    def rates(self, history: HistoryCounts, exclude: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """
        Smoothed ``item`` and ``category`` rates `(n, V)` and train example counts ``item_count`` /
        ``category_count`` `(n,)` of the examples' targets. ``exclude`` `(n, V)`: the examples' own outcomes, to
        leave them out when the examples are the train rows themselves (leave-one-out).
        """
        item_counts, item_totals = self.item_rates_.lookup(history.target_item)
        category_counts, category_totals = self.category_rates_.lookup(pa.array(history.target_category))
        prior = self.base_rates_
        if exclude is not None:
            item_counts, item_totals = item_counts - exclude, item_totals - 1
            if len(self.category_rates_.keys) > 1:  # one category (no side features): see the class docstring
                category_counts, category_totals = category_counts - exclude, category_totals - 1
                size = self.train_size_
                prior = (self.base_rates_ * size - exclude) / max(size - 1, 1)
        m = self.smoothing
        category = (category_counts + m * prior) / (category_totals + m)[:, None]
        item = (item_counts + m * category) / (item_totals + m)[:, None]
        return {"item": item, "category": category, "item_count": item_totals, "category_count": category_totals}

    def _probabilities(self, dataset: Dataset) -> np.ndarray:
        return self.rates(HistoryCounts.from_dataset(dataset, self.vocab_size, window=1))["item"]


def check_validation_given(validation: Dataset | None, what: str, otherwise: str = "") -> None:
    """Refuse a missing or empty validation split where ``what`` (e.g. "... chooses C among (...)") needs one."""
    if validation is not None and len(validation) > 0:
        return
    given = "no validation split" if validation is None else "an empty validation split (0 examples)"
    raise ValueError(
        f"{what} on validation, but got {given}: pass fit(train, validation) with validation examples (a data "
        "folder of a2gen prepare with --validation-fraction above 0, the default 1/7)"
        + (f", {otherwise}." if otherwise else ".")
    )


def fit_each(fit: Callable[[Hashable], Any], keys: Sequence[Hashable]) -> dict[Hashable, Any]:
    """``{key: fit(key)}`` for independent fits (e.g. one per C), each on one thread (BLAS and OpenMP limited to one
    while they run), as many at once as torch may use threads (``torch.get_num_threads()``, which
    ``OMP_NUM_THREADS`` sets).

    One thread makes every fit the same on every machine: sklearn's lbfgs stops at another point (coefficients
    apart by ~0.01 on the Taobao sample) when BLAS splits its sums over another number of threads. It is also the
    fastest way on a few cores: ten fits of the sample's regression took 15.3 s with two BLAS threads one after the
    other, 6.3 s with one, 4.4 s with one each, two at a time (the same coefficients, bit for bit)."""
    workers = max(1, min(len(keys), torch.get_num_threads()))
    with threadpool_limits(limits=1):  # BLAS and OpenMP, process-wide: every worker's fit reads it
        if workers == 1:
            return {key: fit(key) for key in keys}
        with ThreadPoolExecutor(workers) as pool:
            return dict(zip(keys, pool.map(fit, keys)))


# Below this many validation positives (or negatives) of an action, the regression's choice of C (and share scale) on
# validation is noted in ``notes_`` (it is still made: the recipe's results were measured with it).
FEW_VALIDATION_POSITIVES = 5


class CountFeatureLogisticRegression(SimpleBaseline):
    """
    One ``sklearn`` logistic regression per action on standardised count features of the example:

    per action: the user propensity (share of the last `window` history items with it), the same over the last
    `recent_window` items, the share of the same-category history items with it, 1 / (1 + age of the most recent
    history item with it), the logits of the target item's and category's smoothed train rates
    (:class:`PopularityBaseline`, left-one-out on the train rows so that no row sees its own label); once: log1p of
    the history length and of the item's / category's train example counts, the shares of history items that are
    the target item / in its category, 1 / (1 + age of the most recent same-category item).

    The models are trained on train; each action's C is the one of `c_grid` with the best validation AUC (so
    ``fit`` needs a validation split unless `c_grid` holds a single value), in ``chosen_c_``. Where the validation
    split has a single class for an action, the middle C of `c_grid` is used and ``notes_`` says so; where it holds
    fewer than :data:`FEW_VALIDATION_POSITIVES` positives, C is chosen as usual and ``notes_`` says on how few. An
    action that always or never happens on train gets its smoothed train rate (``constant_rates_``,
    :func:`smoothed_rates`), never exactly 0 or 1.

    With a share scale k > 1 in ``share_scales`` each action's fit may also shrink the user propensities (the first
    block: the share of the last `window` history items with each action) k times less than the other features:
    those columns are multiplied by k before the L2-penalised fit, so that their penalty is k² times weaker, and the
    regression then shrinks towards the count rule (``propensity``) rather than towards no information. Which scale,
    like C, is chosen per action on validation among (scale, C) pairs (``chosen_share_scale_``; ties keep the first
    scale listed, then the smallest C); ``coefficients`` gives the fitted coefficients on the standardised features
    either way.

    With ``time_features`` it also reads when the history sessions happened (the ``history_session_starts``
    column), the columns :class:`~a2gen_hf.features_a2gen.HistoryCountFeatures` adds with ``history_time_features``
    (:meth:`HistoryCounts.time_features`), after the others.

    Args:
        window / recent_window: history items read for the propensities.
        smoothing: the popularity smoothing (pseudo examples).
        c_grid: the inverse regularisation strengths tried.
        share_scales: the share scales tried (each >= 1); ``(1.0,)``, the default, is the plain regression.
        time_features: also read the history sessions' times (off by default: the regression on counts).
    """

    def __init__(
        self,
        tokenizer: A2GenActionTokenizer,
        window: int = 50,
        recent_window: int = 5,
        smoothing: float = 20.0,
        c_grid: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0),
        share_scales: tuple[float, ...] = (1.0,),
        time_features: bool = False,
    ):
        super().__init__(tokenizer)
        if not c_grid or min(c_grid) <= 0:
            raise ValueError(f"c_grid={c_grid} must list at least one C > 0.")
        if not share_scales:
            raise ValueError("share_scales lists no scale: pass (1.0,) for the plain regression.")
        for share_scale in share_scales:
            check_share_scale(share_scale)
        self.window = window
        self.recent_window = recent_window
        self.c_grid = tuple(c_grid)
        self.share_scales = tuple(float(scale) for scale in share_scales)
        self.time_features = bool(time_features)
        self.popularity = PopularityBaseline(tokenizer, smoothing=smoothing)
        self.scaler_: StandardScaler | None = None
        self.models_: dict[int, LogisticRegression] = {}
        self.column_weights_: dict[int, np.ndarray] = {}
        self.chosen_c_: dict[str, float] = {}
        self.chosen_share_scale_: dict[str, float] = {}
        self.notes_: list[str] = []

    @property
    def needs_validation(self) -> bool:
        return len(self.c_grid) > 1 or len(self.share_scales) > 1

    def features(self, dataset: Dataset, exclude: np.ndarray | None = None) -> np.ndarray:
        """`(n, D)` the count features of every row (`exclude`: the rows' own outcomes when they are train rows)."""
        history = HistoryCounts.from_dataset(dataset, self.vocab_size, self.window, times=self.time_features)
        rates = self.popularity.rates(history, exclude)
        actions = slice(1, self.vocab_size)
        same_category_counts = history.per_example_sum(history.item_actions.astype(np.float64), history.same_category)
        same_category_total = history.per_example_sum(history.same_category.astype(np.float64))
        action_recency = np.stack(
            [1.0 / (1.0 + history.most_recent_age(history.item_actions[:, a])) for a in range(1, self.vocab_size)],
            axis=1,
        )
        kept = np.maximum(history.kept_length, 1)
        columns = [
            history.action_shares()[:, actions],
            history.action_shares(self.recent_window)[:, actions],
            same_category_counts[:, actions] / np.maximum(same_category_total, 1)[:, None],
            action_recency,
            logit(np.clip(rates["item"][:, actions], 1e-4, 1 - 1e-4)),
            logit(np.clip(rates["category"][:, actions], 1e-4, 1 - 1e-4)),
            np.stack(
                [
                    np.log1p(history.history_length),
                    np.log1p(rates["item_count"]),
                    np.log1p(rates["category_count"]),
                    history.per_example_sum(history.same_item.astype(np.float64)) / kept,
                    same_category_total / kept,
                    1.0 / (1.0 + history.most_recent_age(history.same_category)),
                ],
                axis=1,
            ),
        ]
        if self.time_features:
            columns.append(history.time_features())
        return np.concatenate(columns, axis=1)

    def _fit(self, train: Dataset, targets: ActionTargets, validation: Dataset | None) -> None:
        if self.needs_validation:
            check_validation_given(
                validation, f"{type(self).__name__} chooses C among {self.c_grid} and share scales among "
                f"{self.share_scales}", "or a single-value c_grid and share_scales=(1.0,) to use that C",
            )
        if validation is not None and len(validation) == 0:
            validation = None  # nothing to choose: an empty split is no split
        self.popularity.fit(train)
        train_features = self.features(train, exclude=targets.occurs)
        if validation is not None:
            validation_features = self.features(validation)
            validation_occurs = ActionTargets.from_dataset(validation, self.tokenizer).occurs
        self.models_, self.column_weights_, self.chosen_c_, self.chosen_share_scale_, self.notes_ = {}, {}, {}, {}, []
        self.scaler_ = scaler = StandardScaler().fit(train_features)
        scaler.scale_ = np.where(scaler.var_ > CONSTANT_VARIANCE, scaler.scale_, 1.0)  # as the model's standardisers
        train_features = scaler.transform(train_features)
        if validation is not None:
            validation_features = scaler.transform(validation_features)
        scales = self.share_scales
        weights = {scale: self._share_weights(scale, train_features.shape[1]) for scale in scales}
        # One scaled copy per share scale, read by every fit (scale 1 is the features themselves: x * 1.0 == x).
        scaled = {scale: train_features if scale == 1.0 else train_features * weights[scale] for scale in scales}
        for action in range(1, self.vocab_size):
            labels = targets.occurs[:, action]
            name = self.tokenizer.action_names[action - 1]
            if not has_both_classes(labels):
                if name not in (self.tokenizer.start_action, self.tokenizer.end_action):  # those are always there
                    self.notes_.append(f"logreg[{name}]: {int(labels.sum())} of {len(labels)} training rows are "
                                       "positive, so nothing can be fitted; it scores a constant.")  # fmt: skip
                continue
            candidates = [(scale, c) for scale in scales for c in self.c_grid]
            if len(candidates) > 1:
                validation_labels = validation_occurs[:, action]
                if not has_both_classes(validation_labels):
                    candidates = [(scales[0], self.c_grid[len(self.c_grid) // 2])]
                    self.notes_.append(
                        f"logreg[{name}]: {int(validation_labels.sum())} of {len(validation_labels)} validation rows "
                        f"are positive, so no AUC can choose C; used C={candidates[0][1]} (the middle of c_grid)"
                        + (f" and share scale {scales[0]} (the first of share_scales)." if len(scales) > 1 else ".")
                    )
            fits = fit_each(
                lambda key, labels=labels: LogisticRegression(C=key[1], max_iter=2000).fit(scaled[key[0]], labels),
                candidates,
            )
            chosen = candidates[0]
            if len(fits) > 1:
                # max keeps the first of equal scores: the first share scale (the plain regression in the recipe's
                # (1, 10)), then the smallest C, the strongest regularisation.
                chosen = max(
                    fits,
                    key=lambda key: auc(
                        validation_labels, fits[key].predict_proba(validation_features * weights[key[0]])[:, 1]
                    ),
                )
                self._note_few_positives(name, validation_labels, chosen)
            self.models_[action] = fits[chosen]
            self.column_weights_[action] = weights[chosen[0]]
            self.chosen_share_scale_[name], self.chosen_c_[name] = chosen

    def _note_few_positives(self, name: str, validation_labels: np.ndarray, chosen: tuple[float, float]) -> None:
        """A note in ``notes_`` where the validation AUC that chose ``chosen`` (share scale, C) for action ``name``
        rested on fewer than :data:`FEW_VALIDATION_POSITIVES` positives (or negatives): the choice stands, but on so
        few examples it is mostly chance."""
        positives = int(validation_labels.sum())
        fewer = min(positives, len(validation_labels) - positives)
        if fewer >= FEW_VALIDATION_POSITIVES:
            return
        what = "positive" if fewer == positives else "negative"
        choice = f"C={chosen[1]}" + (f" and share scale {chosen[0]}" if len(self.share_scales) > 1 else "")
        self.notes_.append(
            f"logreg[{name}]: {choice} chosen by a validation AUC over {fewer} {what} row(s) of "
            f"{len(validation_labels)}, fewer than {FEW_VALIDATION_POSITIVES}: on so few the choice is mostly chance "
            "(a longer validation split, a2gen prepare --validation-fraction, gives it more)."
        )

    def choices(self) -> dict[str, dict[str, float]]:
        """What validation chose per fitted action: ``{action: {"C": ..., "share_scale": ...}}``."""
        return {name: {"C": c, "share_scale": self.chosen_share_scale_[name]} for name, c in self.chosen_c_.items()}

    def _share_weights(self, scale: float, num_features: int) -> np.ndarray:
        """`(D,)` the factor of every standardised feature column: ``scale`` on the user propensities (the first
        ``vocab_size - 1`` columns), 1 elsewhere."""
        weights = np.ones(num_features)
        weights[: self.vocab_size - 1] = scale
        return weights

    def coefficients(self, action: int) -> tuple[np.ndarray, float]:
        """The fitted model of ``action``: `(D,)` coefficients on the standardised features (a share scale folded in)
        and the intercept."""
        fitted = self.models_[action]
        return fitted.coef_[0] * self.column_weights_[action], float(fitted.intercept_[0])

    def _probabilities(self, dataset: Dataset) -> np.ndarray:
        features = self.scaler_.transform(self.features(dataset))
        probabilities = np.tile(self.constant_rates_, (len(features), 1))
        for action, model in self.models_.items():
            probabilities[:, action] = model.predict_proba(features * self.column_weights_[action])[:, 1]
        return probabilities


def regression_intercepts(regression: CountFeatureLogisticRegression) -> np.ndarray:
    """`(V,)` the wide logit's intercept of every action of a fitted regression: its fitted intercept, or for an
    action it could not fit (one class on train) the logit of its constant rate (``constant_rates_``: smoothed for a
    ranked action), so that a wide path started from it predicts that rate (not the 0.5 of a zero logit). Padding,
    start and end, never ranked, take their plain rate clipped to [1e-6, 1 - 1e-6] (A2Gen's wide path holds them at
    0 anyway)."""
    intercepts = logit(np.clip(regression.constant_rates_, 1e-6, 1 - 1e-6))
    for action in regression.models_:
        intercepts[action] = regression.coefficients(action)[1]
    return intercepts


class _CountNetworkHead(torch.nn.Module):
    """The fitted regression's logits (fixed, ``wide``) plus a one-hidden-layer network on its standardised features
    (``hidden`` / ``output``, the output at zero): `(n, D)` -> `(n, V)` logits, the interface of
    :func:`~a2gen_hf.training.residual_fit.fit_learned_paths`."""

    def __init__(self, regression: CountFeatureLogisticRegression, hidden_size: int):
        super().__init__()
        width, features = regression.vocab_size, len(regression.scaler_.mean_)
        self.wide = torch.nn.Linear(features, width)
        with torch.no_grad():
            self.wide.weight.zero_()
            self.wide.bias.copy_(torch.from_numpy(regression_intercepts(regression)))
            for action in regression.models_:
                self.wide.weight[action] = torch.from_numpy(regression.coefficients(action)[0])
        self.wide.requires_grad_(False)
        self.linear = None
        self.hidden = torch.nn.Linear(features, hidden_size)
        self.output = torch.nn.Linear(hidden_size, width)
        torch.nn.init.zeros_(self.output.weight)
        torch.nn.init.zeros_(self.output.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.wide(features) + self.output(torch.relu(self.hidden(features)))


class CountNetworkBaseline(CountFeatureLogisticRegression):
    """
    :class:`CountFeatureLogisticRegression` plus a one-hidden-layer network (``hidden_size`` units) on the same
    standardised count features, fitted on the regression's residual exactly as the ``sparse_logs`` recipe fits A2Gen's
    occurrence head (:func:`~a2gen_hf.training.residual_fit.fit_learned_paths`: full batch, the L2 strength chosen on
    validation, each action kept by the network only where it raises that action's validation AUC, the regression
    alone otherwise). It is what A2Gen's ranking on sparse logs is made of, without A2Gen: the fair baseline for the
    question "does reading the sequence add anything?". ``fit_`` holds the fit's summary. Needs a validation split.
    """

    def __init__(self, tokenizer: A2GenActionTokenizer, hidden_size: int = 64, seed: int = 0, **regression_options):
        super().__init__(tokenizer, **regression_options)
        self.hidden_size, self.seed = hidden_size, seed
        self.head_: _CountNetworkHead | None = None
        self.fit_: dict | None = None

    @property
    def needs_validation(self) -> bool:
        return True

    def _fit(self, train: Dataset, targets: ActionTargets, validation: Dataset | None) -> None:
        from .residual_fit import HeadInputs, fit_learned_paths

        check_validation_given(validation, "CountNetworkBaseline chooses its L2 strength")
        super()._fit(train, targets, validation)
        torch.manual_seed(self.seed)
        self.head_ = _CountNetworkHead(self, self.hidden_size)
        inputs = {
            name: HeadInputs(self._standardised(split, exclude), torch.from_numpy(occurs))
            for name, split, exclude, occurs in (
                ("train", train, targets.occurs, targets.occurs),
                ("validation", validation, None, ActionTargets.from_dataset(validation, self.tokenizer).occurs),
            )
        }
        self.fit_ = fit_learned_paths(self.head_, inputs["train"], inputs["validation"], self.tokenizer, seed=self.seed)

    def _standardised(self, dataset: Dataset, exclude: np.ndarray | None = None) -> torch.Tensor:
        return torch.from_numpy(self.scaler_.transform(self.features(dataset, exclude=exclude))).float()

    def _probabilities(self, dataset: Dataset) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(self.head_(self._standardised(dataset))).double().numpy()


class ShareScaledLogisticRegression(CountFeatureLogisticRegression):
    """:class:`CountFeatureLogisticRegression` whose fit per action may also shrink the user propensities
    :data:`SHARE_SCALE` times less than the other features (chosen on validation): the regression the ``sparse_logs``
    recipe starts A2Gen from (``wide_share_scale``)."""

    def __init__(self, tokenizer: A2GenActionTokenizer, share_scales: tuple[float, ...] = (1.0, SHARE_SCALE), **options):
        super().__init__(tokenizer, share_scales=share_scales, **options)


class TimedLogisticRegression(CountFeatureLogisticRegression):
    """:class:`CountFeatureLogisticRegression` that also reads the history sessions' times (``time_features``): the
    regression a time-aware model is measured against, fed what it reads."""

    reads_times = True  # needs the data's history_session_starts (a comparison checks before anything trains)

    def __init__(self, tokenizer: A2GenActionTokenizer, time_features: bool = True, **options):
        super().__init__(tokenizer, time_features=time_features, **options)


class TimedShareScaledLogisticRegression(ShareScaledLogisticRegression):
    """:class:`ShareScaledLogisticRegression` with the history sessions' times: the regression the ``sparse_logs``
    recipe starts A2Gen from (``time_features``), without A2Gen."""

    reads_times = True

    def __init__(self, tokenizer: A2GenActionTokenizer, time_features: bool = True, **options):
        super().__init__(tokenizer, time_features=time_features, **options)


class ShareScaledCountNetworkBaseline(CountNetworkBaseline):
    """:class:`CountNetworkBaseline` on :class:`ShareScaledLogisticRegression`: A2Gen's ranking under the
    ``sparse_logs`` recipe, without A2Gen."""

    def __init__(self, tokenizer: A2GenActionTokenizer, share_scales: tuple[float, ...] = (1.0, SHARE_SCALE), **options):
        super().__init__(tokenizer, share_scales=share_scales, **options)


SIMPLE_BASELINES: dict[str, type[SimpleBaseline]] = {
    "propensity": UserPropensityBaseline,
    "popularity": PopularityBaseline,
    "logreg": CountFeatureLogisticRegression,
    "logreg-shares": ShareScaledLogisticRegression,
    "logreg-times": TimedLogisticRegression,
    "logreg-shares-times": TimedShareScaledLogisticRegression,
    "count-network": CountNetworkBaseline,
    "count-network-shares": ShareScaledCountNetworkBaseline,
    "median-time": ConstantMedianTime,
}


def _wide_feature_columns(regression: CountFeatureLogisticRegression, config) -> list[tuple[int, int]]:
    """(regression feature column, model extra-feature column) pairs of the same quantity (see
    :meth:`CountFeatureLogisticRegression.features` and :class:`~a2gen_hf.features_a2gen.ExtraContextFeatures`)."""
    actions = regression.vocab_size - 1
    vocab = config.vocab_size
    popularity = history_count_feature_size(config)  # the popularity block follows the count block
    pairs = []
    for block in range(4):  # shares, recent shares, same-category shares, recency: one column per action each
        pairs += [(block * actions + a, block * actions + a) for a in range(actions)]
    once = 6 * actions
    # history length, same-item share, same-category share, same-category recency
    pairs += [(once, 4 * actions), (once + 3, 4 * actions + 1), (once + 4, 4 * actions + 2), (once + 5, 4 * actions + 3)]
    pairs += [(4 * actions + a, popularity + 1 + a) for a in range(actions)]  # item rate logits (model: all ids)
    pairs += [(5 * actions + a, popularity + vocab + 1 + a) for a in range(actions)]  # category rate logits
    pairs += [(once + 1, popularity + 2 * vocab), (once + 2, popularity + 2 * vocab + 1)]  # log1p example counts
    if regression.time_features:  # the time features follow both blocks in the regression, the counts in the model
        pairs += [(once + 6 + k, 4 * actions + 5 + k) for k in range(popularity - (4 * actions + 5))]
    return pairs


@torch.no_grad()
def warm_start_wide_path(
    model, regression: CountFeatureLogisticRegression, residual: bool = False, frozen: bool = False
) -> int:
    """
    Start a model's wide path (``config.wide_path``) as the fitted logistic regression on counts: the wide weights
    take its coefficients and the bias its intercepts, on the columns that hold the same quantity (the others 0),
    and the feature standardisers its means and variances. An action the regression could not fit (it happens in no
    training row, or in every one) gets weights 0 and the logit of its smoothed train rate as bias
    (:func:`regression_intercepts`): the regression's own constant, not P = 0.5. The standardisers have seen no example yet, so the
    first training batch replaces those statistics with its own and later batches refine them, as without a warm
    start; the wide logit thus starts as the regression's up to the difference between the train split's and
    the batches' statistics and the model's history window (``max_history_items``, which the regression does not
    cap). Training then moves it jointly with the rest. Returns the number of copied columns.

    With ``residual=True`` the model starts *as* the regression and learns what to add to it: the standardisers
    count the regression's training examples (batches then refine its statistics instead of replacing them), and
    the other paths of A2Gen's occurrence head (its linear and hidden-layer paths) start at zero, so the occurrence
    logits start as the wide logit. Train with ``eval_before_training`` and ``select_best_epoch`` to keep the
    starting point when nothing improves it on validation. MMoE and PLE add their wide path to task towers, which
    stay as initialised. ``frozen`` (with ``residual``): the wide path's weights then take no gradient
    (``requires_grad=False``); :func:`start_from_regression` says why.

    Raises:
        ValueError: the model has no wide path, or its extra features are not exactly the count and popularity
            features (``history_count_features`` and ``target_popularity_features`` on, propensities off), or the
            regression is not fitted or was fitted on another action vocabulary.
    """
    config = model.config
    wide = next((module for module in model.modules() if type(module).__name__ == "WidePath"), None)
    extras = next((module for module in model.modules() if type(module).__name__ == "ExtraContextFeatures"), None)
    if wide is None or extras is None:
        raise ValueError("The model has no wide path: build it with wide_path=True (and the count / popularity features).")
    if extras.propensity_size or extras.count_features is None or extras.popularity_features is None:
        raise ValueError(
            "warm_start_wide_path maps the regression's features onto history_count_features + "
            "target_popularity_features exactly: switch both on and history_propensity_features off."
        )
    if regression.scaler_ is None:
        raise ValueError("The regression is not fitted: call CountFeatureLogisticRegression(...).fit(train, validation).")
    if regression.vocab_size != config.vocab_size:
        raise ValueError(
            f"The regression has {regression.vocab_size} action ids and the model {config.vocab_size}: fit it with the "
            "data folder's tokenizer."
        )
    if regression.time_features != config.history_time_features:
        raise ValueError(
            f"The regression was fitted with time_features={regression.time_features} but the model has "
            f"history_time_features={config.history_time_features}: fit it with time_features="
            f"{config.history_time_features}, or pass none to start_from_regression (it fits the matching one)."
        )
    pairs = _wide_feature_columns(regression, config)
    count_size = extras.count_features.size
    for source, target in pairs:
        standardizer, column = (
            (extras.count_features.standardizer, target)
            if target < count_size
            else (extras.popularity_features.standardizer, target - count_size)
        )
        standardizer.mean[column] = float(regression.scaler_.mean_[source])
        standardizer.variance[column] = float(regression.scaler_.var_[source])
        if residual:
            standardizer.count.fill_(float(np.max(regression.scaler_.n_samples_seen_)))
    weight = wide.linear.weight
    weight.zero_()
    wide.linear.bias.copy_(torch.as_tensor(regression_intercepts(regression), dtype=wide.linear.bias.dtype))
    for action in regression.models_:
        coefficients = regression.coefficients(action)[0]
        for source, target in pairs:
            weight[action, target] = float(coefficients[source])
    head = getattr(model, "occurrence_head", None)
    if residual and head is not None:
        from .residual_fit import zero_learned_paths

        zero_learned_paths(head)
    if frozen:
        wide.requires_grad_(False)
    return len(pairs)


def check_wide_start(
    warm_start: bool, residual: bool, frozen: bool = False, fit_residual: bool = False, share_scale: float = 1.0
) -> None:
    """Refuse ``residual`` without ``warm_start`` (the residual start refines the warm start), ``frozen`` without
    ``residual`` (only the residual start holds the fitted regression to keep), ``fit_residual`` without
    ``frozen`` (it fits what to add to a regression that training then keeps), and a ``share_scale`` other than 1
    without ``warm_start`` (it shapes the regression the wide path starts from) or below 1. One message names every
    setting left without the one it needs, with both ways out: switch the chain on, or all of those off (a recipe,
    ``sparse_logs``, sets them all, so switching one off left the others refused one run at a time)."""
    check_share_scale(share_scale)
    chain = [  # (on, what it needs on, its flag to switch it on, the way to switch it off)
        (share_scale != 1.0, warm_start, "--wide-warm-start", f"--wide-share-scale 1 (it is {share_scale:g})"),
        (residual, warm_start, "--wide-warm-start", "--no-wide-residual"),
        (frozen, residual, "--wide-residual", "--no-wide-frozen"),
        (fit_residual, frozen, "--wide-frozen", "--no-wide-residual-fit"),
    ]
    left = [(needs_flag, off) for on, needed, needs_flag, off in chain if on and not needed]
    if left:
        on = ["--wide-warm-start", "--wide-residual", "--wide-frozen"][: max(
            ["--wide-warm-start", "--wide-residual", "--wide-frozen"].index(flag) for flag, _ in left) + 1]
        off = [way for on_, _, _, way in chain if on_]
        raise ValueError(
            "the wide start's settings build on each other (a share scale and the residual start need "
            "--wide-warm-start, --wide-frozen needs --wide-residual, --wide-residual-fit needs --wide-frozen), and "
            f"{', '.join(sorted({flag for flag, _ in left}))} is off while what needs it is on (a recipe such as "
            f"sparse_logs sets them all): switch them on ({' '.join(on)}), or the wide start off altogether "
            f"(--no-wide-warm-start {' '.join(off)})."
        )


def check_start_has_a_wide_path(wide_warm_start: bool, config) -> None:
    """Before anything is fitted: the wide warm start needs the networks' wide path (``config.wide_path``); before,
    ``a2gen train`` fitted the regression first and then failed."""
    if wide_warm_start and not getattr(config, "wide_path", False):
        raise ValueError(
            "the wide warm start (wide_warm_start=True) starts the networks' wide path, which is off "
            "(wide_path=False): switch it on (wide_path=True), or the wide start off (wide_warm_start=False; a "
            "recipe such as sparse_logs sets both)."
        )


def start_from_regression(
    model,
    tokenizer,
    dataset,
    residual: bool = False,
    regression: CountFeatureLogisticRegression | None = None,
    frozen: bool = False,
    fit_residual: bool = False,
    seed: int = 0,
    share_scale: float = 1.0,
) -> CountFeatureLogisticRegression:
    """
    :func:`warm_start_wide_path` from the logistic regression on counts, fitted here on ``dataset["train"]`` (its C
    chosen on ``dataset["validation"]`` when there is one; with ``share_scale`` k > 1 each action may also shrink the
    user propensities k times less, chosen on validation too, :class:`CountFeatureLogisticRegression`) unless a
    fitted ``regression`` is given. Returns the regression, so that several models (seeds) can start from one fit;
    its ``residual_fit_`` holds what ``fit_residual`` did for this model (:func:`fit_residual_paths`' result; None
    without it).

    ``frozen`` (with ``residual``): the wide path's weights stop taking gradients (``requires_grad=False``), so
    training keeps the regression's coefficients and learns only what to add to them. The regression is fitted to
    convergence; Adam, which scales every step to about the learning rate whatever the gradient's size, would
    otherwise move each fitted coefficient by that much in the directions of its gradients' noise.

    ``fit_residual`` (with ``frozen``): then fit the occurrence head's learned paths on top of the regression, full
    batch, their L2 strength chosen on validation (:func:`~a2gen_hf.training.residual_fit.fit_residual_paths`,
    the hidden layer seeded with ``seed``); kept only if it beats the regression on validation. (After training,
    :func:`~a2gen_hf.training.residual_fit.give_back_to_the_regression` applies the same rule per action.)
    """
    check_wide_start(True, residual, frozen, fit_residual, share_scale)
    scales = share_scales_for(share_scale)
    if regression is None:
        regression = CountFeatureLogisticRegression(
            tokenizer, share_scales=scales, time_features=model.config.history_time_features
        ).fit(dataset["train"], validation=dataset.get("validation"))
        logger.info(f"wide start: the logistic regression on counts, per action {regression.choices()}")
    elif regression.share_scales != scales:
        raise ValueError(
            f"The regression given was fitted with share_scales={regression.share_scales}, not {scales} "
            f"(share_scale={share_scale}): fit one with those, or pass none to fit it here."
        )
    warm_start_wide_path(model, regression, residual=residual, frozen=frozen)
    if residual:
        start_times_at_the_median(model, ActionTargets.from_dataset(dataset["train"], tokenizer))
    regression.residual_fit_ = None  # what the fit of the model last started from this regression did
    if fit_residual:
        from .residual_fit import fit_residual_paths

        regression.residual_fit_ = fit_residual_paths(model, tokenizer, dataset, seed=seed)
    return regression


@torch.no_grad()
def start_times_at_the_median(model, targets: ActionTargets) -> float | None:
    """
    The residual start's times: every time head of an A2Gen generator (:class:`~a2gen_hf.modeling_a2gen.
    A2GenActionHeads`) predicts the median known first-occurrence time of the train targets (normalised), whatever
    its input, as the constant-median rule does (:func:`set_median_times`); training moves them from there. Without
    it the start, which selection keeps on logs where training does not improve the ranking, predicts times from
    untrained heads. Returns the median of all actions' times, or None when the model has no such head or no time is
    known.
    """
    heads = time_heads(model)
    if not heads or not targets.known.any():
        return None
    for head in heads:
        set_median_times(head, targets)
    return targets.median_time()


@torch.no_grad()
def set_median_times(head: torch.nn.Linear, targets: ActionTargets) -> None:
    """
    One time layer of :class:`~a2gen_hf.modeling_a2gen.A2GenActionHeads` at the constant median of ``targets``
    (weights 0): the median of every action's times for the paper's one time per position, each action's own
    (:meth:`ActionTargets.median_times`) for ``config.time_per_action``'s one per action.
    """
    head.weight.zero_()
    if head.out_features == 1:
        head.bias.fill_(targets.median_time())
    else:
        head.bias.copy_(torch.as_tensor(targets.median_times(), dtype=head.bias.dtype))


def time_heads(model) -> list[torch.nn.Linear]:
    """The time layers of every :class:`~a2gen_hf.modeling_a2gen.A2GenActionHeads` of ``model`` (an A2Gen
    generator's, its auxiliary slots' too); none for MMoE and PLE."""
    return [module.time for module in model.modules() if type(module).__name__ == "A2GenActionHeads"]
