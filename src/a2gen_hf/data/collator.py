"""Batch collation: rows of the on-disk example schema -> the tensors ``A2GenModel.forward`` names."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any

import numpy as np
import torch

from ..configuration_a2gen import A2GenConfig
from ..features_a2gen import popularity_keyed_by_raw_id
from ..tokenization_a2gen import A2GenActionTokenizer

REQUIRED_COLUMNS = (
    "user_id",
    "item_id",
    "history_item_ids",
    "history_action_ids",
    "history_action_seconds",
    "action_ids",
    "action_seconds",
)
SIDE_FEATURE_COLUMNS = ("item_side_ids", "history_item_side_ids")


def _positions(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``counts[i]`` entries of list ``i`` laid end to end: each entry's list index and slot within the list."""
    owner = np.repeat(np.arange(len(counts)), counts)
    return owner, np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)


def _leading(lists: Sequence[Sequence], counts: np.ndarray, cap: int) -> Iterator:
    """The entries of ``lists`` (of lengths ``counts``) laid end to end, each list cut to its first ``cap``; without
    a Python-level step per list when none is longer (most batches: the per-list slices were most of the time)."""
    if counts.size == 0 or int(counts.max()) <= cap:
        return chain.from_iterable(lists)
    return chain.from_iterable(values[:cap] for values in lists)


class A2GenDataCollator:
    r"""
    Collates examples (dicts with the columns of ``docs/design.md``, "Examples on disk") into a batch.

    History: the most recent ``max_history_items`` items are kept (the lists are oldest first), each with its first
    ``max_events_per_item`` events; N and E are the longest kept lengths in the batch (at least 1), right-padded with
    zeros. Labels: the first ``max_actions + 1`` actions of the target sequence (start included), padded with 0 to
    exactly ``T = max_actions + 1``. Times are normalised with the tokenizer; unknown (NaN) and padded times are 0.0
    with time mask 0; an infinite or negative time raises ``ValueError``, as does an id outside the tokenizer's
    buckets (or an action id outside its vocabulary), naming the example and the column. Unknown columns in a row are
    ignored.

    Returns a dict of tensors (B = batch, F = side features; the two ``*side_ids`` tensors only when F > 0):
    ``user_ids`` / ``item_ids`` (B,) long, ``item_side_ids`` (B, F) long, ``history_item_ids`` (B, N) long,
    ``history_item_side_ids`` (B, N, F) long, ``history_mask`` (B, N) long, ``history_action_ids`` (B, N, E) long,
    ``history_action_times`` (B, N, E) float, ``history_time_mask`` (B, N, E) long, ``labels`` (B, T) long,
    ``label_times`` (B, T) float, ``label_time_mask`` (B, T) long; with ``item_keys=True`` also ``item_keys`` (B,) long,
    the 63-bit keys of the rows' raw ``item`` ids (:meth:`A2GenActionTokenizer.item_keys`).

    Args:
        tokenizer: the fitted :class:`A2GenActionTokenizer` saved with the data (its time statistics are used).
        max_history_items / max_events_per_item / max_actions: the caps (as in :class:`A2GenConfig`).
        num_item_side_features: F; ``None`` reads it from the first row's ``item_side_ids`` (0 when absent).
        drop_repeated_start: leave out of the labels every start action after position 0 (e.g. repeated clicks
            on e-commerce logs), so that the target sequence holds start, the other actions, then the end action
            (``A2GenConfig.target_drops_repeated_start``; off by default).
        item_keys: also key every row's raw ``item`` id (a column then required), for a model whose popularity counts
            are keyed by raw id (``popularity_keys="raw_ids"``; :meth:`from_config` reads it off the config).
    """

    def __init__(
        self,
        tokenizer: A2GenActionTokenizer,
        max_history_items: int = 100,
        max_events_per_item: int = 6,
        max_actions: int = 6,
        num_item_side_features: int | None = None,
        drop_repeated_start: bool = False,
        item_keys: bool = False,
    ):
        for name, value in (
            ("max_history_items", max_history_items),
            ("max_events_per_item", max_events_per_item),
            ("max_actions", max_actions),
        ):
            if value < 1:
                raise ValueError(f"{name}={value} must be >= 1.")
        self.tokenizer = tokenizer
        self.max_history_items = max_history_items
        self.max_events_per_item = max_events_per_item
        self.max_actions = max_actions
        self.num_item_side_features = num_item_side_features
        self.drop_repeated_start = drop_repeated_start
        self.item_keys = item_keys

    @classmethod
    def from_config(cls, config: A2GenConfig, tokenizer: A2GenActionTokenizer) -> A2GenDataCollator:
        """A collator with ``config``'s caps and number of item side features."""
        return cls(
            tokenizer,
            max_history_items=config.max_history_items,
            max_events_per_item=config.max_events_per_item,
            max_actions=config.max_actions,
            num_item_side_features=config.num_item_side_features,
            drop_repeated_start=getattr(config, "target_drops_repeated_start", False),
            item_keys=popularity_keyed_by_raw_id(config),
        )

    def _check_columns(self, features: Sequence[dict[str, Any]], side_features: int) -> None:
        required = REQUIRED_COLUMNS + (SIDE_FEATURE_COLUMNS if side_features else ()) + (("item",) if self.item_keys else ())
        for index, row in enumerate(features):
            missing = [name for name in required if name not in row]
            if missing:
                why = (
                    "; 'item' (the raw item id) because the model's popularity counts are keyed by raw id: keep the "
                    "column (remove_unused_columns=False) or train with popularity_keys='buckets'"
                    if "item" in missing
                    else ""
                )
                raise KeyError(
                    f"A2GenDataCollator: example {index} of the batch has no column(s) {missing}; rows need "
                    f"{list(required)} (docs/design.md, 'Examples on disk'){why}."
                )

    @staticmethod
    def _raise_at(values: np.ndarray, bad: np.ndarray, rows: np.ndarray, column: str, allowed: str) -> None:
        """Raise naming the first example whose ``values`` are flagged by ``bad``; ``rows`` (same shape) owns each."""
        if bad.any():
            first = np.unravel_index(int(np.argmax(bad)), bad.shape)
            raise ValueError(
                f"A2GenDataCollator: example {int(rows[first])} of the batch has {column} value {values[first]}; "
                f"{allowed}."
            )

    def _check_ids(self, batch: dict[str, np.ndarray]) -> None:
        tokenizer = self.tokenizer
        for name, column, buckets in (
            ("user_ids", "user_id", tokenizer.user_buckets),
            ("item_ids", "item_id", tokenizer.item_buckets),
            ("item_side_ids", "item_side_ids", tokenizer.side_feature_buckets),
            ("history_item_ids", "history_item_ids", tokenizer.item_buckets),
            ("history_item_side_ids", "history_item_side_ids", tokenizer.side_feature_buckets),
            ("history_action_ids", "history_action_ids", tokenizer.vocab_size),
            ("labels", "action_ids", tokenizer.vocab_size),
        ):
            if name in batch:
                ids = batch[name]
                rows = np.broadcast_to(np.arange(len(ids)).reshape(-1, *[1] * (ids.ndim - 1)), ids.shape)
                self._raise_at(
                    ids,
                    (ids < 0) | (ids >= buckets),
                    rows,
                    column,
                    f"ids must lie in [0, {buckets}) (0 = padding), as the tokenizer the data was prepared with makes them",
                )

    def _normalized(self, seconds: np.ndarray, rows: np.ndarray, column: str) -> tuple[np.ndarray, np.ndarray]:
        """Raw seconds (V,) of examples ``rows`` (V,) -> normalised times (V,) and time mask (V,)."""
        # NaN is an unknown time; inf or a negative number is a broken one and must not pass as "unknown".
        self._raise_at(
            seconds, np.isinf(seconds) | (seconds < 0), rows, column, "times must be finite seconds >= 0 (NaN = unknown)"
        )
        known = np.isfinite(seconds)
        times = np.where(known, self.tokenizer.normalize_seconds(np.where(known, seconds, 0.0)), 0.0)
        return times.astype(np.float32), known.astype(np.int64)

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if len(features) == 0:
            raise ValueError("A2GenDataCollator got an empty list of examples.")
        side_features = self.num_item_side_features
        if side_features is None:
            side_features = len(features[0].get("item_side_ids") or ())
        self._check_columns(features, side_features)
        batch_size = len(features)
        batch: dict[str, np.ndarray] = {
            "user_ids": np.array([row["user_id"] for row in features], dtype=np.int64),
            "item_ids": np.array([row["item_id"] for row in features], dtype=np.int64),
        }
        if self.item_keys:
            raw_items = [row["item"] for row in features]
            if None in raw_items:
                raise ValueError(
                    f"A2GenDataCollator: example {raw_items.index(None)} of the batch has no raw 'item' id (None); "
                    "the model keys popularity counts by it: fill the column as the log spells the id."
                )
            batch["item_keys"] = self.tokenizer.item_keys(raw_items)
        if side_features:
            batch["item_side_ids"] = self._flat_ints(
                (row["item_side_ids"] for row in features), batch_size * side_features, "item_side_ids", side_features
            ).reshape(batch_size, side_features)

        # History items: keep the last max_history_items of each row (the lists are oldest first).
        lengths = np.array([len(row["history_item_ids"]) for row in features], dtype=np.int64)
        kept = np.minimum(lengths, self.max_history_items)
        dropped = lengths - kept
        total = int(kept.sum())
        num_items = max(int(kept.max()), 1)
        item_row, item_slot = _positions(kept)

        def recent(column: str) -> chain:
            return chain.from_iterable(row[column][skip:] for row, skip in zip(features, dropped))

        history_item_ids = np.zeros((batch_size, num_items), dtype=np.int64)
        history_item_ids[item_row, item_slot] = self._flat_ints(recent("history_item_ids"), total, "history_item_ids")
        history_mask = np.zeros((batch_size, num_items), dtype=np.int64)
        history_mask[item_row, item_slot] = 1
        batch["history_item_ids"] = history_item_ids
        if side_features:
            side_ids = np.zeros((batch_size, num_items, side_features), dtype=np.int64)
            side_ids[item_row, item_slot] = self._flat_ints(
                recent("history_item_side_ids"), total * side_features, "history_item_side_ids", side_features
            ).reshape(total, side_features)
            batch["history_item_side_ids"] = side_ids
        batch["history_mask"] = history_mask

        # Events of each kept history item: its first max_events_per_item.
        event_ids, event_seconds, event_counts = self._sequences(
            list(recent("history_action_ids")), list(recent("history_action_seconds")), self.max_events_per_item
        )
        num_events = max(int(event_counts.max()) if total else 0, 1)
        event_item, event_slot = _positions(event_counts)
        where = (item_row[event_item], item_slot[event_item], event_slot)
        times, known = self._normalized(event_seconds, where[0], "history_action_seconds")
        for name, values, dtype in (
            ("history_action_ids", event_ids, np.int64),
            ("history_action_times", times, np.float32),
            ("history_time_mask", known, np.int64),
        ):
            grid = np.zeros((batch_size, num_items, num_events), dtype=dtype)
            grid[where] = values
            batch[name] = grid

        # Labels: start, ..., end action, padded with 0 to max_actions + 1.
        length = self.max_actions + 1
        label_id_lists = [row["action_ids"] for row in features]
        label_second_lists = [row["action_seconds"] for row in features]
        if self.drop_repeated_start:
            start = self.tokenizer.start_action_id
            kept_positions = [[0] + [k for k in range(1, len(ids)) if ids[k] != start] for ids in label_id_lists]
            label_id_lists = [[ids[k] for k in keep if k < len(ids)] for ids, keep in zip(label_id_lists, kept_positions)]
            label_second_lists = [
                [seconds[k] for k in keep if k < len(seconds)] for seconds, keep in zip(label_second_lists, kept_positions)
            ]
        label_ids, label_seconds, label_counts = self._sequences(label_id_lists, label_second_lists, length)
        where = _positions(label_counts)
        times, known = self._normalized(label_seconds, where[0], "action_seconds")
        for name, values, dtype in (
            ("labels", label_ids, np.int64),
            ("label_times", times, np.float32),
            ("label_time_mask", known, np.int64),
        ):
            grid = np.zeros((batch_size, length), dtype=dtype)
            grid[where] = values
            batch[name] = grid
        self._check_ids(batch)
        return {name: torch.from_numpy(values) for name, values in batch.items()}

    @staticmethod
    def _flat_ints(values, count: int, column: str, width: int | None = None) -> np.ndarray:
        flat = chain.from_iterable(values) if width else values
        array = np.fromiter(flat, dtype=np.int64)
        if array.size != count:
            raise ValueError(
                f"A2GenDataCollator: column {column!r} has {array.size} values where {count} are expected"
                + (f" ({width} side features per item)" if width else "")
                + "; every item needs the same number of side features."
            )
        return array

    @staticmethod
    def _sequences(id_lists: list, second_lists: list, cap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The first ``cap`` entries of each sequence, flattened: ids (V,), seconds (V,), kept lengths (len,)."""
        counts = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
        second_counts = np.fromiter(map(len, second_lists), dtype=np.int64, count=len(second_lists))
        if not np.array_equal(counts, second_counts):
            bad = int(np.flatnonzero(counts != second_counts)[0])
            raise ValueError(
                f"A2GenDataCollator: sequence {bad} has {counts[bad]} action ids but {second_counts[bad]} times; "
                "each action needs one time (NaN when unknown)."
            )
        kept = np.minimum(counts, cap)
        total = int(kept.sum())
        ids = np.fromiter(_leading(id_lists, counts, cap), dtype=np.int64, count=total)
        # np.array (not fromiter) so that None, how some readers spell a missing time, becomes NaN.
        seconds = np.array(list(_leading(second_lists, counts, cap)), dtype=np.float64)
        return ids, seconds.reshape(-1), kept
