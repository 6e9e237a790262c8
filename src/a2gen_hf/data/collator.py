"""Batch collation: rows of the on-disk example schema (dicts, or one Arrow table) -> the tensors ``A2GenModel.forward`` names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from itertools import chain
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from ..configuration_a2gen import A2GenConfig
from ..features_a2gen import HISTORY_DECAY_SCALES, HISTORY_TIME_SCALES, popularity_keyed_by_raw_id
from ..time_encoding import SECONDS_RULE, invalid_seconds, normalize_seconds
from ..tokenization_a2gen import MAX_UNIX_SECONDS, A2GenActionTokenizer, raw_id_keys

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
# The history sessions' times, read with ``history_ages=True`` (the collator then gives ``history_item_ages``).
SESSION_TIME_COLUMNS = ("session_start", "history_session_starts")
# Every column the collator may read ("item": the raw item id, for popularity counts keyed by it; "user": the raw user
# id, for evaluation's groups with ``user_keys``).
COLLATED_COLUMNS = (*REQUIRED_COLUMNS, *SIDE_FEATURE_COLUMNS, *SESSION_TIME_COLUMNS, "item", "user")


class CollationError(ValueError):
    """Examples :class:`A2GenDataCollator` refuses: a value outside what a column allows (a negative time, an id
    beyond the tokenizer's buckets), lists of the wrong length or width. ``example`` is the refused example's position
    in the batch (the "example i of the batch" of the message) where the message names one, else None (it names a
    column's value, or a list among the batch's history items): a caller that knows where the batch's rows come
    from (a split, from row r) can name the row there (``a2gen evaluate`` does)."""

    def __init__(self, message: str, example: int | None = None):
        super().__init__(message)
        self.example = example


class MissingColumnsError(CollationError, KeyError):
    """Examples without a column the collator reads: ``missing`` (and ``required``, all it reads). A ``KeyError``, as
    before this class existed, and a :class:`CollationError`."""

    def __init__(
        self, message: str, missing: Sequence[str] = (), required: Sequence[str] = (), example: int | None = None
    ):  # all but the message optional: a DataLoader worker's error is made again in the main process from its text
        super().__init__(message, example)
        self.missing = list(missing)
        self.required = list(required)


def _positions(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``counts[i]`` entries of list ``i`` laid end to end: each entry's list index and slot within the list."""
    owner = np.repeat(np.arange(len(counts)), counts)
    return owner, np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)


@dataclass
class _Lists:
    """Lists laid end to end: ``values`` (V,) and each list's length ``lengths`` (L,), ``lengths.sum() == V``."""

    values: np.ndarray
    lengths: np.ndarray


@dataclass
class _Columns:
    """One batch read column by column, whatever it came as (rows or an Arrow table); B examples, I history items.

    ``history_items`` holds each example's item ids (B lists), ``history_side_ids`` each item's side ids (I lists),
    ``history_event_ids`` / ``history_event_seconds`` each item's events (I lists); ``labels`` /
    ``label_seconds`` each example's target sequence (B lists). Times are float64 seconds, NaN where unknown.
    ``session_starts`` (B,) / ``history_session_starts`` (B lists): Unix seconds, read with ``history_ages``.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    raw_items: list | None
    raw_users: list | None
    item_side_ids: _Lists | None
    history_items: _Lists
    history_side_ids: _Lists | None
    history_event_ids: _Lists
    history_event_seconds: _Lists
    labels: _Lists
    label_seconds: _Lists
    session_starts: np.ndarray | None = None
    history_session_starts: _Lists | None = None


_INT64_MAX = np.iinfo(np.int64).max


# What a column of whole numbers holds, as its errors say: ids, or Unix seconds.
_IDS = "an integer id; ids are integers (the tokenizer's hash_* methods make them)"
_IDS_PLURAL = "integer ids; ids are integers (the tokenizer's hash_* methods make them)"
_UNIX_SECONDS = "whole Unix seconds; the session times are integers (as a2gen prepare writes them)"


def _ints(values, column: str, what: str = _IDS) -> np.ndarray:
    """Integer ids (or Unix seconds, ``what``) -> int64 (V,), as the Arrow route casts them: whole-number floats
    (``7.0``) are read as integers; anything else (``3.7``, None, a string, a bool, an integer beyond int64) is
    refused naming the column."""
    try:
        array = np.asarray(values if isinstance(values, (list, np.ndarray)) else list(values))
    except (TypeError, ValueError):  # lists of different lengths where single ids belong
        array = np.asarray(values, dtype=object)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    kind = array.dtype.kind if array.ndim == 1 else "O"  # a list where one id belongs
    if kind == "i" and isinstance(values, list) and bool in map(type, values):  # [True, 5] became [1, 5]
        kind = "O"
    exact = (
        (kind == "i")
        or (kind == "u" and int(array.max()) <= _INT64_MAX)
        or (kind == "f" and bool(np.all(np.isfinite(array) & (array == np.round(array)) & (np.abs(array) < 2.0**63))))
    )
    if not exact:
        listed = values if isinstance(values, list) else array.ravel().tolist()
        nested = next((value for value in listed if isinstance(value, (list, tuple, np.ndarray, torch.Tensor))), None)
        if nested is not None or array.ndim != 1:
            raise CollationError(
                f"A2GenDataCollator: column {column!r} holds {nested if nested is not None else values!r}, a list "
                f"where a single value belongs: each entry is {what}."
            )
        shown = next((value for value in listed
                      if isinstance(value, (bool, str, bytes, float)) or value is None
                      or (isinstance(value, int) and value > _INT64_MAX)), array.ravel()[0])  # fmt: skip
        raise CollationError(
            f"A2GenDataCollator: column {column!r} holds {shown!r} ({array.dtype}), not {what}."
        )
    return array.astype(np.int64).reshape(-1)


# The examples' column of raw user ids (what prepare and the simulator write): GAUC and NDCG@K group by it.
USER_COLUMN = "user"


def missing_user_error(where: str, index: int) -> ValueError:
    """The one refusal of an example without a raw ``user`` among examples with one (the collator with
    ``user_keys=True``, :func:`user_groups`, :class:`~a2gen_hf.A2GenTrainer`'s evaluation splits): grouping that
    example by its hashed ``user_ids`` while the others group by their raw users would split a user into two groups
    (before: A2GenTrainer did so batch by batch, silently)."""
    return ValueError(
        f"{where}: example {index} has no raw {USER_COLUMN!r} id (None) while the examples have a {USER_COLUMN!r} "
        "column. GAUC and NDCG@K group the examples of an evaluation by one rule: their raw users, or (without a "
        f"{USER_COLUMN!r} column) the hashed user_ids. Fill that example's user, or drop the column "
        f"(dataset.remove_columns({USER_COLUMN!r})) to group every example by its user_ids."
    )


def first_missing_user(users: Any) -> int | None:
    """The position of the first ``None`` in ``users`` (raw user ids), None where every one is given."""
    return next((index for index, user in enumerate(users) if user is None), None)


_NOT_LISTS = (str, bytes, AbstractSet, Mapping)  # what has a length but is no list of a history's values


def _lengths(lists: list, column: str) -> np.ndarray:
    """Each list's length; a value that is no list (None, a string, a set, a dict) is refused, naming its place and
    the column."""
    try:
        # A string has a length but is no list; a set has no order of its own; a dict would give its keys.
        if any(issubclass(kind, _NOT_LISTS) for kind in set(map(type, lists))):  # one C-level pass, then the types
            raise TypeError
        return np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    except TypeError:
        bad = next(index for index, value in enumerate(lists) if isinstance(value, _NOT_LISTS)
                   or not hasattr(value, "__len__"))  # fmt: skip
        raise CollationError(
            f"A2GenDataCollator: list {bad} of column {column!r} in the batch is {lists[bad]!r}, not a list"
            + (" (a set or mapping has no order of its own: pass a list in the history's order)."
               if isinstance(lists[bad], (AbstractSet, Mapping)) else ".")
        ) from None


def _lists_from_rows(lists: list, column: str, kind: str) -> _Lists:
    """Python lists -> :class:`_Lists`; ``kind`` "ids" (int64), "unix_seconds" (int64) or "seconds" (float64,
    None -> NaN)."""
    lengths = _lengths(lists, column)
    flat = chain.from_iterable(lists)
    if kind in ("ids", "unix_seconds"):
        return _Lists(_ints(list(flat), column, _IDS if kind == "ids" else _UNIX_SECONDS), lengths)
    # np.array (not fromiter) so that None, how some readers spell a missing time, becomes NaN.
    values = list(flat)
    try:
        # numpy would parse "1e3" and read True as 1 s: a time is a number (ids are refused the same way)
        if any(issubclass(kind, (str, bytes, bool, np.bool_)) for kind in set(map(type, values))):
            raise TypeError
        seconds = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        shown = next((value for value in values if isinstance(value, (str, bytes, bool, np.bool_))
                      or (not isinstance(value, (int, float, np.number)) and value is not None)), None)  # fmt: skip
        raise CollationError(
            f"A2GenDataCollator: column {column!r} holds {shown!r}, not a time in seconds (a number, or None / NaN "
            "when unknown)."
        ) from None
    if seconds.ndim != 1:
        raise CollationError(f"A2GenDataCollator: column {column!r} holds lists where times in seconds belong.")
    return _Lists(seconds, lengths)


def _check_items_per_example(column: str, counts: np.ndarray, items: np.ndarray) -> None:
    """Each example's per-item lists in ``column`` must be as many as its history items."""
    if not np.array_equal(counts, items):
        bad = int(np.flatnonzero(counts != items)[0])
        raise CollationError(
            f"A2GenDataCollator: example {bad} of the batch has {counts[bad]} lists in {column!r} but "
            f"{items[bad]} history items; each history item needs one.",
            example=bad,
        )


def _per_item_columns(side_features: int) -> tuple[str, ...]:
    return ("history_action_ids", "history_action_seconds", *(("history_item_side_ids",) if side_features else ()))


# An event list (a history item's, a target's) holds actions: 0, the padding id, would be a padded slot with a time.
_NO_PADDING_EVENT = (
    "an event is an action id from 1 (0 is the padding id, which the collator adds and a list of events does not "
    "hold), as the tokenizer encodes one"
)


def _length(values: Any) -> int:
    """The number of values of an optional list column of a row (None or missing: 0), for lists, arrays and tensors
    alike (``values or ()`` asks an array for its truth value, and a numpy ``[0]`` reads as no values)."""
    return 0 if values is None else len(values)


def _columns_from_rows(
    features: Sequence[dict[str, Any]], side_features: int, item_keys: bool, user_keys: bool = False,
    history_ages: bool = False,
) -> _Columns:
    def column(name: str) -> list:
        return [row[name] for row in features]

    item_lists = column("history_item_ids")
    items = _lengths(item_lists, "history_item_ids")
    per_item = {}
    for name in _per_item_columns(side_features):
        lists = column(name)
        _check_items_per_example(name, _lengths(lists, name), items)
        per_item[name] = list(chain.from_iterable(lists))
    return _Columns(
        user_ids=_ints(column("user_id"), "user_id"),
        item_ids=_ints(column("item_id"), "item_id"),
        raw_items=column("item") if item_keys else None,
        # no row with a "user" key: no user column (the hashed user_ids group the examples)
        raw_users=[row.get("user") for row in features] if user_keys and any("user" in row for row in features) else None,
        item_side_ids=_lists_from_rows(column("item_side_ids"), "item_side_ids", "ids") if side_features else None,
        history_items=_lists_from_rows(item_lists, "history_item_ids", "ids"),
        history_side_ids=(
            _lists_from_rows(per_item["history_item_side_ids"], "history_item_side_ids", "ids") if side_features else None
        ),
        history_event_ids=_lists_from_rows(per_item["history_action_ids"], "history_action_ids", "ids"),
        history_event_seconds=_lists_from_rows(per_item["history_action_seconds"], "history_action_seconds", "seconds"),
        labels=_lists_from_rows(column("action_ids"), "action_ids", "ids"),
        label_seconds=_lists_from_rows(column("action_seconds"), "action_seconds", "seconds"),
        **(_session_times_from_rows(features) if history_ages else {}),
    )


# What else a command that is still to build its models can do about data without the session times.
LEAVE_THE_TIMES_OUT = ", or leave the time features out (--no-time-features; the simple baselines without -times)"
# ... and what a saved model that reads them can do: nothing but be given data that holds them.
A_SAVED_MODEL_READS_THEM = " (the model was trained to read them)"


def check_session_time_columns(names: Sequence[str], where: str, otherwise: str = LEAVE_THE_TIMES_OUT) -> None:
    """Refuse data without both :data:`SESSION_TIME_COLUMNS` (``names``: its columns) where the history sessions'
    times are read, saying that data written before ``history_session_starts`` existed must be prepared again, and
    ``otherwise`` what else helps ("" where a saved model reads them: it cannot leave its features out)."""
    missing = [name for name in SESSION_TIME_COLUMNS if name not in names]
    if missing:
        raise ValueError(
            f"{where} has no column(s) {missing}, which the history sessions' times are read from "
            "(history_time_features, the regression's time_features): data written before history_session_starts "
            f"existed lacks it; run a2gen prepare (or a2gen simulate) again{otherwise}."
        )


def session_time_resolution(split) -> int:
    """The largest number of seconds every ``session_start`` of ``split`` (a ``datasets.Dataset`` or any table with
    the column) is a whole multiple of: 1 for a log of seconds, 86,400 for dates without a time of day; 0 when the
    column is missing, empty or all 0."""
    if "session_start" not in split.column_names or len(split) == 0:
        return 0
    if isinstance(split, datasets.Dataset):  # its rows (a selection or shuffle included), not its whole table
        split = split.with_format("arrow", columns=["session_start"])[:]
    starts = pc.cast(split.column("session_start"), pa.int64()).to_numpy(zero_copy_only=False)
    return int(np.gcd.reduce(np.abs(starts)))


def _span(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count > 1 else ''}"
    return f"{seconds:g} s"


def coarse_session_times_note(split, where: str) -> str | None:
    """A warning when the session times of ``split`` are coarser than the shortest spans the time features read
    (:data:`~a2gen_hf.features_a2gen.HISTORY_DECAY_SCALES`, :data:`~a2gen_hf.features_a2gen.HISTORY_TIME_SCALES`):
    those features then read little or nothing (dates without a time of day: the ten-minute and hour decays, the
    hour and day windows), and serving must floor the times the same way. None when the times are fine enough."""
    resolution = session_time_resolution(split)
    # Ages are whole multiples of the resolution: a decay over a tenth of it or less is exp(-10) or less past age 0,
    # and a window no longer than it holds the sessions of the target's own slot only.
    decays = [_span(scale) for scale in HISTORY_DECAY_SCALES if 10 * scale <= resolution]
    windows = [_span(scale) for scale in HISTORY_TIME_SCALES if scale <= resolution]
    if not decays and not windows:
        return None
    parts = ([f"the decays over {' and '.join(decays)}"] if decays else []) + (
        [f"the counts within the last {' and '.join(windows)} (the target item's too)"] if windows else []
    )
    return (
        f"{where}: every session start is a whole multiple of {_span(resolution)} (a log of dates without a time of "
        f"day, or rounded times), so some time features read little or nothing: {' and '.join(parts)}; the others "
        f"are read as usual. Serve such a model with request and history times floored "
        f"to {_span(resolution)}, as the training times are (docs/serving.md), or prepare a log with finer times."
    )


def _session_times_from_rows(features: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The rows' session times (:data:`SESSION_TIME_COLUMNS`); a row without them (or None) is refused, naming it."""
    bad = next((index for index, row in enumerate(features)
                if any(row.get(name) is None for name in SESSION_TIME_COLUMNS)), None)  # fmt: skip
    if bad is not None:
        lacking = [name for name in SESSION_TIME_COLUMNS if features[bad].get(name) is None]
        raise CollationError(
            f"A2GenDataCollator: example {bad} of the batch has no {lacking}; this collator gives the history items' "
            "ages (history_ages=True, a model with history_time_features): every example needs session_start and "
            "history_session_starts (Unix seconds), as a2gen prepare writes them.",
            example=bad,
        )
    return {
        "session_starts": _ints([row["session_start"] for row in features], "session_start", _UNIX_SECONDS),
        "history_session_starts": _lists_from_rows(
            [row["history_session_starts"] for row in features], "history_session_starts", "unix_seconds"
        ),
    }


def _first_null(array: pa.Array) -> int:
    return int(np.flatnonzero(np.asarray(array.is_null().to_numpy(zero_copy_only=False)))[0])


def _arrow_values(array: pa.Array, column: str, kind: str) -> np.ndarray:
    """Arrow values -> int64 ids (a null refused) or float64 seconds (a null is NaN, an unknown time); values that
    do not cast (``3.7`` or ``"u5"`` as an id, an id beyond int64, a list) are refused naming the column."""
    try:
        numeric = pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_null(array.type)
        if kind == "seconds":
            if not numeric:  # Arrow casts "1e3" to 1000.0 and True to 1.0, which the rows route refuses
                raise CollationError(
                    f"A2GenDataCollator: column {column!r} holds {array.type} values (the first: {array[0].as_py()!r}), "
                    "not times in seconds (numbers, or null when unknown)."
                )
            return np.asarray(pc.fill_null(pc.cast(array, pa.float64()), np.nan).to_numpy(zero_copy_only=False))
        noun = "Unix seconds" if kind == "unix_seconds" else "id"
        if array.null_count:
            raise CollationError(
                f"A2GenDataCollator: column {column!r} holds a null {noun} (value {_first_null(array)} of the batch's)."
            )
        if not numeric:
            # Arrow casts "547" to 547 and True to 1, which the rows route refuses: ids are numbers on both routes.
            raise CollationError(
                f"A2GenDataCollator: column {column!r} holds {array.type} values (the first: {array[0].as_py()!r}), "
                f"not {_UNIX_SECONDS if kind == 'unix_seconds' else _IDS_PLURAL}."
            )
        return np.asarray(pc.cast(array, pa.int64()).to_numpy(zero_copy_only=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        wanted = {"seconds": "times in seconds (numbers)", "unix_seconds": "whole Unix seconds"}.get(kind, "integer ids")
        raise CollationError(
            f"A2GenDataCollator: column {column!r} ({array.type}) does not hold {wanted}: {error}."
        ) from None


def _arrow_lists(array: pa.Array, column: str) -> tuple[pa.Array, np.ndarray]:
    """A list array -> (its values laid end to end, each list's length); a null list is refused, naming its owner."""
    if array.null_count:
        raise CollationError(f"A2GenDataCollator: list {_first_null(array)} of column {column!r} in the batch is null.")
    lengths = np.asarray(pc.list_value_length(array).to_numpy(zero_copy_only=False), dtype=np.int64)
    return pc.list_flatten(array), lengths


def _columns_from_arrow(
    table: pa.Table | pa.RecordBatch, side_features: int, item_keys: bool, user_keys: bool = False,
    history_ages: bool = False,
) -> _Columns:
    def column(name: str) -> pa.Array:
        values = table.column(name)
        return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values

    def lists(name: str, kind: str = "ids") -> _Lists:
        values, lengths = _arrow_lists(column(name), name)
        return _Lists(_arrow_values(values, name, kind), lengths)

    history_items = lists("history_item_ids")
    per_item = {}
    for name in _per_item_columns(side_features):
        item_lists, counts = _arrow_lists(column(name), name)
        _check_items_per_example(name, counts, history_items.lengths)
        values, lengths = _arrow_lists(item_lists, name)
        per_item[name] = _Lists(_arrow_values(values, name, "seconds" if name.endswith("seconds") else "ids"), lengths)
    return _Columns(
        user_ids=_arrow_values(column("user_id"), "user_id", "ids"),
        item_ids=_arrow_values(column("item_id"), "item_id", "ids"),
        raw_items=column("item").to_pylist() if item_keys else None,
        raw_users=column("user").to_pylist() if user_keys and "user" in table.column_names else None,
        item_side_ids=lists("item_side_ids") if side_features else None,
        history_items=history_items,
        history_side_ids=per_item.get("history_item_side_ids"),
        history_event_ids=per_item["history_action_ids"],
        history_event_seconds=per_item["history_action_seconds"],
        labels=lists("action_ids"),
        label_seconds=lists("action_seconds", "seconds"),
        **(
            {
                "session_starts": _arrow_values(column("session_start"), "session_start", "unix_seconds"),
                "history_session_starts": lists("history_session_starts", "unix_seconds"),
            }
            if history_ages
            else {}
        ),
    )


def _joined_tables(features: Any) -> Any:
    """A list of Arrow tables or record batches (what a stream ``with_format("arrow")`` yields: one per example) as
    one table; a list of pandas DataFrames (``with_format("pandas")``) is refused, naming the format. Anything else
    is returned as it is."""
    if not isinstance(features, list) or not features:
        return features
    if all(isinstance(part, (pa.Table, pa.RecordBatch)) for part in features):
        tables = [pa.Table.from_batches([part]) if isinstance(part, pa.RecordBatch) else part for part in features]
        return pa.concat_tables(tables, promote_options="default")
    if type(features[0]).__name__ == "DataFrame":
        raise TypeError(
            "A2GenDataCollator got pandas DataFrames (a dataset with_format('pandas')): give it rows (the format "
            "None), Arrow tables (with_format('arrow')) or a datasets.Dataset."
        )
    return features


def _check_rows(features: Any) -> None:
    """A batch given as rows is a sequence of dicts (one per example); anything else is refused, naming it."""
    if isinstance(features, (Mapping, str, bytes)) or not isinstance(features, Sequence):
        raise TypeError(
            f"A2GenDataCollator takes a list of examples (dicts of columns) or an Arrow table, got "
            f"{type(features).__name__}; a dict of columns is one Arrow table: pa.table(columns)."
        )
    bad = next((index for index, row in enumerate(features) if not isinstance(row, Mapping)), None)
    if bad is not None:
        raise TypeError(f"A2GenDataCollator: example {bad} of the batch is {features[bad]!r}, not a dict of columns.")


class A2GenDataCollator:
    r"""
    Collates examples (dicts with the columns of ``docs/design.md``, "Examples on disk") into a batch.

    History: the most recent ``max_history_items`` items are kept (the lists are oldest first), each with its first
    ``max_events_per_item`` events; N and E are the longest kept lengths in the batch (at least 1), right-padded with
    zeros. Labels: the first ``max_actions + 1`` actions of the target sequence (start included), padded with 0 to
    exactly ``T = max_actions + 1``. Times are normalised with the tokenizer; unknown (NaN) and padded times are 0.0
    with time mask 0; an infinite or negative time raises ``ValueError``, as does an id outside the tokenizer's
    buckets (or an action id outside its vocabulary), naming the example and the column. Unknown columns in a row are
    ignored. What it refuses about the examples raises :class:`CollationError` (a ``ValueError``; a missing column:
    :class:`MissingColumnsError`, also a ``KeyError``), whose ``example`` is the example's position in the batch.

    Returns a dict of tensors (B = batch, F = side features; the two ``*side_ids`` tensors only when F > 0):
    ``user_ids`` / ``item_ids`` (B,) long, ``item_side_ids`` (B, F) long, ``history_item_ids`` (B, N) long,
    ``history_item_side_ids`` (B, N, F) long, ``history_mask`` (B, N) long, ``history_action_ids`` (B, N, E) long,
    ``history_action_times`` (B, N, E) float, ``history_time_mask`` (B, N, E) long, ``labels`` (B, T) long,
    ``label_times`` (B, T) float, ``label_time_mask`` (B, T) long; with ``item_keys=True`` also ``item_keys`` (B,) long,
    the 63-bit keys of the rows' raw ``item`` ids (:meth:`A2GenActionTokenizer.item_keys`); with ``history_ages=True``
    also ``history_item_ages`` (B, N) float, the seconds from each kept history item's session start to the example's
    (0 at padding), which time-aware features read (``A2GenConfig.history_time_features``).

    Args:
        tokenizer: the fitted :class:`A2GenActionTokenizer` saved with the data (its time statistics are used).
        max_history_items / max_events_per_item / max_actions: the caps (as in :class:`A2GenConfig`).
        num_item_side_features: F; ``None`` reads it from the widest row's ``item_side_ids`` (0 when absent; a row
            with fewer is refused).
        drop_repeated_start: leave out of the labels every start action after position 0 (e.g. repeated clicks
            on e-commerce logs), so that the target sequence holds start, the other actions, then the end action
            (``A2GenConfig.target_drops_repeated_start``; off by default).
        item_keys: also key every row's raw ``item`` id (a column then required), for a model whose popularity counts
            are keyed by raw id (``popularity_keys="raw_ids"``; :meth:`from_config` reads it off the config).
        history_ages: also give ``history_item_ages`` from the rows' ``session_start`` and ``history_session_starts``
            (:data:`SESSION_TIME_COLUMNS`, then required: ``a2gen prepare`` and the simulator write both; data folders
            written before the second existed lack it), for a model with ``history_time_features``
            (:meth:`from_config` reads it off the config). Off, those columns are not read.
        user_keys: also give ``user_keys`` `(B,)`, 63-bit keys of the rows' raw ``user`` ids, which evaluation
            groups GAUC and NDCG@K by (:class:`~a2gen_hf.A2GenTrainer` switches it on for its evaluation batches and
            takes the tensor out before the model sees it). Not a model input. Rows without a ``user`` column get
            none (the hashed ``user_ids`` then group them); a row whose ``user`` is None among rows with the column
            is refused, naming it (before: that batch alone fell back to ``user_ids``, splitting its users' groups).
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
        user_keys: bool = False,
        history_ages: bool = False,
    ):
        for name, value in (
            ("max_history_items", max_history_items),
            ("max_events_per_item", max_events_per_item),
            ("max_actions", max_actions),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}={value!r} must be a whole number >= 1.")
        self.tokenizer = tokenizer
        self.max_history_items = max_history_items
        self.max_events_per_item = max_events_per_item
        self.max_actions = max_actions
        self.num_item_side_features = num_item_side_features
        self.drop_repeated_start = drop_repeated_start
        self.item_keys = item_keys
        self.user_keys = user_keys
        self.history_ages = history_ages

    @classmethod
    def from_config(cls, config: A2GenConfig, tokenizer: A2GenActionTokenizer) -> A2GenDataCollator:
        """A collator with ``config``'s caps and number of item side features; ``tokenizer`` must agree with
        ``config`` (:meth:`~a2gen_hf.A2GenActionTokenizer.check_compatible`: the same actions, time statistics and
        buckets), or the times and ids it writes would mean something else to the model."""
        tokenizer.check_compatible(config)
        return cls(
            tokenizer,
            max_history_items=config.max_history_items,
            max_events_per_item=config.max_events_per_item,
            max_actions=config.max_actions,
            num_item_side_features=config.num_item_side_features,
            drop_repeated_start=getattr(config, "target_drops_repeated_start", False),
            item_keys=popularity_keyed_by_raw_id(config),
            history_ages=bool(getattr(config, "history_time_features", False)),
        )

    def _required(self, side_features: int) -> tuple[str, ...]:
        return (
            REQUIRED_COLUMNS + (SIDE_FEATURE_COLUMNS if side_features else ()) + (("item",) if self.item_keys else ())
            + (SESSION_TIME_COLUMNS if self.history_ages else ())
        )

    def _missing_error(
        self, missing: list[str], where: str, side_features: int, example: int | None = None
    ) -> MissingColumnsError:
        why = (
            "; 'item' (the raw item id) because the model's popularity counts are keyed by raw id: keep the "
            "column (remove_unused_columns=False) or train with popularity_keys='buckets'"
            if "item" in missing
            else ""
        ) + (
            "; 'history_session_starts' because the model reads the history sessions' times "
            "(history_time_features): data written before the column existed lacks it, run a2gen prepare (or a2gen "
            "simulate) again"
            if "history_session_starts" in missing
            else ""
        )
        return MissingColumnsError(
            f"A2GenDataCollator: {where} has no column(s) {missing}; rows need {list(self._required(side_features))} "
            f"(docs/design.md, 'Examples on disk'){why}. With a transformers Trainer, the columns the model's forward "
            "does not name are dropped unless remove_unused_columns=False: use A2GenTrainer, or "
            "a2gen_training_arguments(...) (which sets it).",
            missing, self._required(side_features), example,
        )

    def _check_columns(self, features: Sequence[dict[str, Any]], side_features: int) -> None:
        required = self._required(side_features)
        for index, row in enumerate(features):
            missing = [name for name in required if name not in row]
            if missing:
                raise self._missing_error(missing, f"example {index} of the batch", side_features, index)

    @staticmethod
    def _raise_at(values: np.ndarray, bad: np.ndarray, rows: np.ndarray, column: str, allowed: str) -> None:
        """Raise naming the first example whose ``values`` are flagged by ``bad``; ``rows`` (same shape) owns each."""
        if bad.any():
            first = np.unravel_index(int(np.argmax(bad)), bad.shape)
            raise CollationError(
                f"A2GenDataCollator: example {int(rows[first])} of the batch has {column} value {values[first]}; "
                f"{allowed}.",
                example=int(rows[first]),
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
        self._raise_at(seconds, invalid_seconds(seconds), rows, column, SECONDS_RULE)
        known = np.isfinite(seconds)
        tokenizer = self.tokenizer  # checked above: the plain encoding, not the tokenizer's checking method again
        times = np.where(
            known, normalize_seconds(np.where(known, seconds, 0.0), tokenizer.time_log_mean, tokenizer.time_log_std), 0.0
        )
        return times.astype(np.float32), known.astype(np.int64)

    def __call__(
        self, features: Sequence[dict[str, Any]] | pa.Table | pa.RecordBatch | datasets.Dataset
    ) -> dict[str, torch.Tensor]:
        """Collate ``features``: a list of rows (dicts), or the same rows as one Arrow table (what
        :class:`ArrowBatches` hands a ``DataLoader``'s ``collate_fn``: no Python object per value) or a
        ``datasets.Dataset``."""
        if isinstance(features, datasets.Dataset):  # its rows (a select's included) as one table
            features = features.with_format("arrow")[:]
        features = _joined_tables(features)
        arrow = isinstance(features, (pa.Table, pa.RecordBatch))
        if not arrow:
            _check_rows(features)
        if len(features) == 0:
            raise ValueError("A2GenDataCollator got an empty list of examples.")
        side_features = self.num_item_side_features
        if arrow:
            if side_features is None:  # the widest row's: a row with fewer side features is then refused
                widths = (
                    pc.max(pc.list_value_length(features.column("item_side_ids"))).as_py()
                    if "item_side_ids" in features.column_names else None
                )  # fmt: skip
                side_features = widths or 0
            missing = [name for name in self._required(side_features) if name not in features.column_names]
            if missing:
                raise self._missing_error(missing, "the batch (an Arrow table)", side_features)
            columns = _columns_from_arrow(features, side_features, self.item_keys, self.user_keys, self.history_ages)
        else:
            if side_features is None:  # the widest row's: a row with fewer side features is then refused
                side_features = max(_length(row.get("item_side_ids")) for row in features)
            self._check_columns(features, side_features)
            columns = _columns_from_rows(features, side_features, self.item_keys, self.user_keys, self.history_ages)
        return self._collate(columns, side_features)

    def _collate(self, columns: _Columns, side_features: int) -> dict[str, torch.Tensor]:
        """The batch's tensors from its columns: the cuts, the padding and the time normalisation (one home for
        both kinds of input)."""
        batch_size = len(columns.user_ids)
        batch: dict[str, np.ndarray] = {"user_ids": columns.user_ids, "item_ids": columns.item_ids}
        if self.item_keys:
            raw_items = columns.raw_items
            if None in raw_items:
                raise CollationError(
                    f"A2GenDataCollator: example {raw_items.index(None)} of the batch has no raw 'item' id (None); "
                    "the model keys popularity counts by it: fill the column as the log spells the id.",
                    example=raw_items.index(None),
                )
            batch["item_keys"] = self.tokenizer.item_keys(raw_items)
        raw_users = columns.raw_users
        if self.user_keys and raw_users is not None:
            missing = first_missing_user(raw_users)
            if missing is not None:  # before: no user_keys for this batch, so evaluation grouped it by user_ids
                error = missing_user_error("A2GenDataCollator(user_keys=True), in this batch", missing)
                raise CollationError(str(error), example=missing) from None
            batch["user_keys"] = raw_id_keys(raw_users)  # evaluation's groups: the raw users, which user_ids can merge
        if side_features:
            self._check_widths(columns.item_side_ids, side_features, "item_side_ids", np.arange(batch_size))
            batch["item_side_ids"] = columns.item_side_ids.values.reshape(batch_size, side_features)

        # History items: keep the last max_history_items of each example (the lists are oldest first).
        lengths = columns.history_items.lengths
        kept = np.minimum(lengths, self.max_history_items)
        num_items = max(int(kept.max()), 1)
        owners, item_slot = _positions(lengths)  # each history item's example and place in it
        item_slot = item_slot - (lengths - kept)[owners]  # negative: an older item, cut
        keep_item = item_slot >= 0
        item_row, item_slot = owners[keep_item], item_slot[keep_item]
        history_item_ids = np.zeros((batch_size, num_items), dtype=np.int64)
        history_item_ids[item_row, item_slot] = columns.history_items.values[keep_item]
        history_mask = np.zeros((batch_size, num_items), dtype=np.int64)
        history_mask[item_row, item_slot] = 1
        batch["history_item_ids"] = history_item_ids
        if side_features:
            sides = columns.history_side_ids
            self._check_widths(sides, side_features, "history_item_side_ids", owners)
            side_ids = np.zeros((batch_size, num_items, side_features), dtype=np.int64)
            side_ids[item_row, item_slot] = sides.values.reshape(-1, side_features)[keep_item]
            batch["history_item_side_ids"] = side_ids
        batch["history_mask"] = history_mask
        if columns.history_session_starts is not None:
            batch["history_item_ages"] = self._history_ages(columns, owners, keep_item, item_row, item_slot, num_items)

        # Events of each kept history item: its first max_events_per_item.
        event_ids, event_seconds, event_item, event_slot = self._sequences(
            columns.history_event_ids, columns.history_event_seconds, self.max_events_per_item, owners,
            "history_action_ids", keep_item,
        )  # fmt: skip
        kept_item_index = np.cumsum(keep_item) - 1  # each kept item's position among the kept
        num_events = max(int(event_slot.max()) + 1 if event_slot.size else 0, 1)
        where = (item_row[kept_item_index[event_item]], item_slot[kept_item_index[event_item]], event_slot)
        self._raise_at(event_ids, event_ids == 0, where[0], "history_action_ids", _NO_PADDING_EVENT)
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
        skip_start = self.tokenizer.start_action_id if self.drop_repeated_start else None
        label_ids, label_seconds, label_row, label_slot = self._sequences(
            columns.labels, columns.label_seconds, length, np.arange(batch_size), "action_ids", drop=skip_start
        )
        self._raise_at(label_ids, label_ids == 0, label_row, "action_ids", _NO_PADDING_EVENT)
        first = label_slot == 0
        self._raise_at(
            label_ids, first & (label_ids != self.tokenizer.start_action_id), label_row, "action_ids",
            f"a target sequence begins with the start action {self.tokenizer.start_action!r} (id "
            f"{self.tokenizer.start_action_id}) at 0 s, as prepare and the simulator write it",
        )
        self._raise_at(
            label_seconds, first & (label_seconds != 0) & ~np.isnan(label_seconds), label_row, "action_seconds",
            "the start action is at 0 s: the other times count from it (seconds since the session's first event)",
        )
        times, known = self._normalized(label_seconds, label_row, "action_seconds")
        self._check_target_order(columns.labels, columns.label_seconds)
        for name, values, dtype in (
            ("labels", label_ids, np.int64),
            ("label_times", times, np.float32),
            ("label_time_mask", known, np.int64),
        ):
            grid = np.zeros((batch_size, length), dtype=dtype)
            grid[label_row, label_slot] = values
            batch[name] = grid
        self._check_ids(batch)
        # Arrow's arrays reach numpy read-only; torch wants writable memory.
        return {name: torch.from_numpy(values if values.flags.writeable else values.copy()) for name, values in batch.items()}

    def _history_ages(
        self, columns: _Columns, owners: np.ndarray, keep_item: np.ndarray, item_row: np.ndarray,
        item_slot: np.ndarray, num_items: int,
    ) -> np.ndarray:
        """`(B, N)` float32 seconds from each kept history item's session start to its example's session start (0 at
        padding); a history session that starts after its example's is refused (the history is what came before)."""
        starts = columns.history_session_starts
        _check_items_per_example("history_session_starts", starts.lengths, columns.history_items.lengths)
        for values, rows, column in (
            (columns.session_starts, np.arange(len(columns.session_starts)), "session_start"),
            (starts.values, owners, "history_session_starts"),
        ):  # as the request paths refuse them (tokenization_a2gen.MAX_UNIX_SECONDS); also keeps the ages in int64
            self._raise_at(
                values, np.abs(values) > MAX_UNIX_SECONDS, rows, column,
                f"a Unix time beyond {MAX_UNIX_SECONDS:g} s (the year 5138) is no time in seconds: give Unix seconds, "
                "not milliseconds or microseconds (divide by 1000 or 1e6)",
            )
        ages = columns.session_starts[owners] - starts.values  # int64 seconds, one per history item
        self._raise_at(
            starts.values, ages < 0, owners, "history_session_starts",
            "a history session starts no later than its example's session_start (Unix seconds, as prepare writes "
            "them)",
        )
        grid = np.zeros((len(columns.user_ids), num_items), dtype=np.float32)
        grid[item_row, item_slot] = ages[keep_item]
        return grid

    def _check_target_order(self, ids: _Lists, seconds: _Lists) -> None:
        """Every whole target (before the label window cuts it) is a timeline as the tokenizer encodes one: not
        empty, the end action only last, its known times never going back (ties stay; NaN times are unknown and
        skipped). A target that breaks one of these would train the model on a sequence no log holds."""
        end_id = self.tokenizer.end_action_id
        empty = ids.lengths == 0
        if empty.any():
            raise CollationError(
                f"A2GenDataCollator: example {int(np.argmax(empty))} of the batch has an empty target sequence "
                f"(action_ids=[]); a target holds at least the start action {self.tokenizer.start_action!r} at 0 s, "
                f"then the actions in time order, ending with {self.tokenizer.end_action!r} if the user left.",
                example=int(np.argmax(empty)),
            )
        sequence, slot = _positions(ids.lengths)
        self._raise_at(
            ids.values, (ids.values == end_id) & (slot != ids.lengths[sequence] - 1), sequence, "action_ids",
            f"the end action {self.tokenizer.end_action!r} (id {end_id}) ends a target: nothing may follow it",
        )
        known = ~np.isnan(seconds.values)
        owner, times = sequence[known], seconds.values[known]
        backwards = (owner[1:] == owner[:-1]) & (times[1:] < times[:-1])
        self._raise_at(
            times[1:], backwards, owner[1:], "action_seconds",
            "a target's known times never go back (it is the time-ordered sequence of the item's actions): sort "
            "its actions by time",
        )

    @staticmethod
    def _check_widths(lists: _Lists, width: int, column: str, owners: np.ndarray) -> None:
        """Every list of side ids must hold ``width`` values; the error names the first offending example."""
        bad = lists.lengths != width
        if bad.any():
            first = int(np.argmax(bad))
            raise CollationError(
                f"A2GenDataCollator: example {int(owners[first])} of the batch has {int(lists.lengths[first])} values "
                f"in column {column!r} where {width} are expected ({width} side features per item); every item needs "
                "the same number of side features.",
                example=int(owners[first]),
            )

    @staticmethod
    def _sequences(
        ids: _Lists, seconds: _Lists, cap: int, owners: np.ndarray, column: str, keep: np.ndarray | None = None,
        drop: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The first ``cap`` entries of each sequence whose ``keep`` is set (all when None), leaving out ``drop``
        wherever it is not the first entry: ids (V,), seconds (V,), each entry's sequence and its slot there.
        ``owners`` (one per sequence) is the example named when a sequence's ids and times differ in number."""
        if not np.array_equal(ids.lengths, seconds.lengths):
            bad = int(np.flatnonzero(ids.lengths != seconds.lengths)[0])
            raise CollationError(
                f"A2GenDataCollator: example {int(owners[bad])} of the batch has a sequence of {ids.lengths[bad]} "
                f"action ids but {seconds.lengths[bad]} times in {column!r}; each action needs one time (NaN when "
                "unknown).",
                example=int(owners[bad]),
            )
        sequence, slot = _positions(ids.lengths)
        chosen = np.ones(slot.shape, dtype=bool) if keep is None else keep[sequence]
        if drop is not None:
            chosen &= (slot == 0) | (ids.values != drop)
        counts = np.bincount(sequence[chosen], minlength=len(ids.lengths))
        slot = _positions(counts)[1]  # the slots once the left-out entries are gone
        taken = slot < cap
        entries = np.flatnonzero(chosen)[taken]
        return ids.values[entries], seconds.values[entries], sequence[entries], slot[taken]


class ArrowBatches(torch.utils.data.Dataset):
    """A ``datasets.Dataset`` whose batches reach a ``DataLoader``'s ``collate_fn`` as one Arrow table of the
    columns :class:`A2GenDataCollator` reads, instead of a list of dicts: a ``DataLoader`` fetches a batch through
    ``__getitems__``, and ``datasets`` would turn every value of every nested list into a Python object there (most
    of the time of a training step on a CPU: ~0.2 s for 256 examples of 50 history items). Same rows, same order
    (a shuffled dataset's index mapping included)."""

    def __init__(self, dataset: datasets.Dataset):
        columns = [name for name in dataset.column_names if name in COLLATED_COLUMNS]
        self.dataset = dataset.with_format("arrow", columns=columns)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> pa.Table:
        return self.dataset[index]

    def __getitems__(self, indices: list[int]) -> pa.Table:
        return self.dataset[indices]


def collation_rows(dataset):
    """What a ``DataLoader`` with :class:`A2GenDataCollator` should read: an :class:`ArrowBatches` view of a
    ``datasets.Dataset``, any other dataset (a list of rows, a torch ``Subset``) as it is."""
    return ArrowBatches(dataset) if isinstance(dataset, datasets.Dataset) else dataset
