"""From sessions (one per user and target item) to the on-disk examples of ``docs/design.md``.

Everything here is columnar: sessions are numpy arrays with CSR event lists, history windows are found with one
``searchsorted``, and list columns are assembled from offsets with numpy gathers in chunks of examples, written
straight into the Arrow files of a ``DatasetDict.save_to_disk`` folder.
"""

from __future__ import annotations

import datetime
import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa

from ..time_encoding import floored_log_std
from ..tokenization_a2gen import A2GenActionTokenizer

SPLITS = ("train", "validation", "test")

EXAMPLE_SCHEMA = pa.schema(
    [
        ("user", pa.string()),
        ("item", pa.string()),
        ("user_id", pa.int64()),
        ("item_id", pa.int64()),
        ("item_side_ids", pa.list_(pa.int64())),
        ("history_item_ids", pa.list_(pa.int64())),
        ("history_item_side_ids", pa.list_(pa.list_(pa.int64()))),
        ("history_action_ids", pa.list_(pa.list_(pa.int64()))),
        ("history_action_seconds", pa.list_(pa.list_(pa.float32()))),
        ("action_ids", pa.list_(pa.int64())),
        ("action_seconds", pa.list_(pa.float32())),
        ("session_start", pa.int64()),
        # When each history item's session started (Unix seconds, floored as session_start): what time-aware
        # features read (A2GenConfig.history_time_features); the collator turns them into ages.
        ("history_session_starts", pa.list_(pa.int64())),
    ]
)
EXAMPLE_FEATURES = datasets.Features.from_arrow_schema(EXAMPLE_SCHEMA)
# The simulator's examples add the oracle: true P(action happens) and E[time | it happens], one per action name.
ORACLE_FEATURES = datasets.Features(
    {
        "oracle_action_prob": datasets.List(datasets.Value("float32")),
        "oracle_expected_seconds": datasets.List(datasets.Value("float32")),
    }
)
SIMULATED_FEATURES = datasets.Features({**EXAMPLE_FEATURES, **ORACLE_FEATURES})


@dataclass
class Sessions:
    """All sessions of a log; S sessions, F side-feature fields, V events in total.

    ``user_codes`` / ``item_codes`` (S,) index ``users`` / ``items`` (the raw ids); ``side_codes`` (S, F) index
    ``side_values[f]``; ``start`` / ``end`` (S,) are Unix seconds of the start action and of the end action (the last
    event's time, or the start plus the logged duration: view logs, event logs with a duration column); the events of session
    ``s`` are ``event_action_ids[event_offsets[s]:event_offsets[s + 1]]`` with ``event_seconds`` (float32, seconds
    since ``start[s]``, NaN = unknown), start action first and end action last. ``first_lines`` (S,) is the log line
    of each session's first event: it orders sessions that tie on everything else, whatever the partitioning.
    """

    users: pa.Array
    items: pa.Array
    side_fields: tuple[str, ...]
    side_values: list[pa.Array]
    user_codes: np.ndarray
    item_codes: np.ndarray
    side_codes: np.ndarray
    start: np.ndarray
    end: np.ndarray
    event_offsets: np.ndarray
    event_action_ids: np.ndarray
    event_seconds: np.ndarray
    first_lines: np.ndarray

    def __len__(self) -> int:
        return len(self.start)


_SESSION_ARRAYS = (
    "user_codes", "item_codes", "side_codes", "start", "end", "event_offsets", "event_action_ids", "event_seconds",
    "first_lines",
)


def save_sessions(sessions: Sessions, folder: Path) -> None:
    """Write ``sessions`` to ``folder`` without pickle: the numpy arrays in one ``.npz``, each id dictionary as Arrow."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(
        folder / "arrays.npz",
        side_fields=np.array(sessions.side_fields, dtype=str),
        **{name: getattr(sessions, name) for name in _SESSION_ARRAYS},
    )
    for name, values in (("users", sessions.users), ("items", sessions.items), *(
        (f"side-{index}", values) for index, values in enumerate(sessions.side_values)
    )):
        table = pa.table({"value": values})
        with pa.OSFile(str(folder / f"{name}.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)


def load_sessions(folder: Path) -> Sessions:
    """The sessions :func:`save_sessions` wrote to ``folder``."""

    def values(name: str) -> pa.Array:
        with pa.memory_map(str(folder / f"{name}.arrow")) as source:
            return pa.ipc.open_file(source).read_all().column("value").combine_chunks()

    with np.load(folder / "arrays.npz", allow_pickle=False) as arrays:
        side_fields = tuple(str(field) for field in arrays["side_fields"])
        loaded = {name: arrays[name] for name in _SESSION_ARRAYS}
    return Sessions(
        users=values("users"),
        items=values("items"),
        side_fields=side_fields,
        side_values=[values(f"side-{index}") for index in range(len(side_fields))],
        **loaded,
    )


def _unix_seconds(name: str, value: Any) -> float | None:
    """A split boundary as Unix seconds: a number as it is, a date or time (``datetime``, ``pandas.Timestamp``,
    ``numpy.datetime64``; without a time zone: UTC; a ``date``: its midnight UTC) converted; anything else refused
    naming the forms read."""
    if value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool)):
        return value
    if isinstance(value, numbers.Number) and not isinstance(value, numbers.Complex):  # Decimal: as its float
        return float(value)
    if type(value).__name__ == "NaTType" or (isinstance(value, np.datetime64) and np.isnat(value)):  # pandas.NaT
        raise ValueError(f"{name}=NaT is no time: give Unix seconds or a datetime, or None for the fraction split.")
    if isinstance(value, np.datetime64):
        return float(value.astype("datetime64[us]").astype(np.int64)) / 1e6
    if isinstance(value, datetime.datetime):  # pandas.Timestamp is one
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return value.timestamp()
    if isinstance(value, datetime.date):
        return float(datetime.datetime(value.year, value.month, value.day, tzinfo=datetime.UTC).timestamp())
    raise ValueError(
        f"{name}={value!r} ({type(value).__name__}) is no time: give Unix seconds (a number, e.g. 1512000000) or a "
        "datetime / pandas.Timestamp (read as UTC without a time zone)."
    )


@dataclass(frozen=True)
class SplitRule:
    """Time boundaries of the splits: ``session_start < validation_start`` is train, ``< test_start`` validation.

    Explicit Unix seconds win (a ``datetime`` / ``pandas.Timestamp`` / ``numpy.datetime64`` is read as its Unix
    seconds, one without a time zone as UTC; a ``date`` as its midnight UTC); otherwise the last ``test_fraction`` of
    the sessions' start-time range is test and the ``validation_fraction`` before it validation.
    """

    validation_fraction: float = 1 / 7
    test_fraction: float = 1 / 7
    validation_start: float | None = None
    test_start: float | None = None

    def __post_init__(self):
        fractions = (self.validation_fraction, self.test_fraction)
        if not all(math.isfinite(value) for value in fractions) or min(fractions) < 0 or sum(fractions) >= 1:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} and test_fraction={self.test_fraction} must be >= 0 "
                "and sum to less than 1 (CLI: --validation-fraction, --test-fraction)."
            )
        for name in ("validation_start", "test_start"):
            value = _unix_seconds(name, getattr(self, name))
            object.__setattr__(self, name, value)  # frozen: set once, as the Unix seconds
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name}={value} must be a finite Unix time in seconds, or None.")

    def boundaries(self, starts: np.ndarray) -> tuple[float, float]:
        first, last = float(starts.min()), float(starts.max())
        span = last - first
        test_start = self.test_start if self.test_start is not None else last - self.test_fraction * span
        if self.test_start is None and self.test_fraction == 0:
            # Sessions at or after test_start are tested: with no test share, none may be (not those at the last start).
            test_start = float(np.nextafter(last, math.inf))
        validation_start = (
            self.validation_start
            if self.validation_start is not None
            else test_start - self.validation_fraction * span
        )
        if validation_start > test_start and self.test_start is None:
            # Only validation_start given: the test start it comes after is derived, which the user never set.
            raise ValueError(
                f"validation_start={validation_start:.17g} must not be after the test split's start, "
                f"{test_start:.17g}, which was not given but comes from test_fraction={self.test_fraction:.6g} (that "
                f"share of the span of session starts, {first:.17g} to {last:.17g}, is test). Give test_start=SECONDS "
                "as well, after the validation start, or test_fraction=0, which puts no session in test."
            )
        if validation_start > test_start:
            raise ValueError(f"validation_start={validation_start} must not be after test_start={test_start}.")
        return validation_start, test_start


@dataclass
class LogTimeMoments:
    """Count, mean and sum of squared deviations of ``log1p(seconds)``; the moments of partitions merge into all's.

    :meth:`fit` gives the tokenizer the statistics ``fit_log_statistics`` computes on all the seconds at once (up to
    float rounding; bit for bit from a single partition).
    """

    count: int = 0
    mean: float = 0.0
    squares: float = 0.0

    @classmethod
    def of_sessions(cls, sessions: Sessions, chosen: np.ndarray) -> LogTimeMoments:
        """Moments of the known times of the chosen sessions' actions after the start."""
        counts = np.diff(sessions.event_offsets)
        in_chosen = np.repeat(chosen, counts)
        not_first = np.ones(len(sessions.event_seconds), dtype=bool)
        not_first[sessions.event_offsets[:-1][counts > 0]] = False
        seconds = sessions.event_seconds[in_chosen & not_first].astype(np.float64)
        logs = np.log1p(seconds[np.isfinite(seconds) & (seconds >= 0)])
        if logs.size == 0:
            return cls()
        mean = logs.mean()
        return cls(int(logs.size), float(mean), float(np.sum((logs - mean) ** 2)))

    def merge(self, other: LogTimeMoments) -> LogTimeMoments:
        """The moments of both sets of seconds (Chan et al.'s pairwise update)."""
        if other.count == 0 or self.count == 0:
            return other if self.count == 0 else self
        count = self.count + other.count
        delta = other.mean - self.mean
        return LogTimeMoments(
            count,
            self.mean + delta * other.count / count,
            self.squares + other.squares + delta**2 * self.count * other.count / count,
        )

    def fit(self, tokenizer: A2GenActionTokenizer) -> None:
        """Set the tokenizer's ``time_log_mean`` / ``time_log_std`` (the std through
        :func:`~a2gen_hf.time_encoding.floored_log_std`, as when fitting)."""
        if self.count == 0:
            raise ValueError(
                "The training split has no timed actions after the start to fit the time statistics on; move the "
                "split boundaries later (validation_fraction / test_fraction) or give a longer log."
            )
        tokenizer.time_log_mean = self.mean
        tokenizer.time_log_std = floored_log_std(math.sqrt(self.squares / self.count), self.mean)


def dense_ranks(*times: np.ndarray) -> list[np.ndarray]:
    """Dense int64 ranks of the values of all ``times`` arrays together (equal values share a rank), one per array.

    Sorting ranks (integers) is much faster than sorting the float times, and they compare as the times do.
    """
    joined = np.concatenate(times)
    order = np.argsort(joined)
    ordered = joined[order]
    is_new = np.ones(len(joined), dtype=bool)
    is_new[1:] = ordered[1:] != ordered[:-1]
    ranks = np.empty(len(joined), dtype=np.int64)
    ranks[order] = np.cumsum(is_new) - 1
    return np.split(ranks, np.cumsum([len(values) for values in times])[:-1])


def sort_order(keys: list[np.ndarray], tie_breaker: np.ndarray) -> np.ndarray:
    """Indices that sort by ``keys`` (non-negative integer arrays, the most significant first), ties by ``tie_breaker``.

    The same order as ``np.lexsort((tie_breaker, *reversed(keys)))``, several times faster when the keys pack into
    one int64: one quicksort of the packed key, then only the runs of equal keys are sorted by ``tie_breaker``.
    """
    packed, span = np.zeros(len(tie_breaker), dtype=np.int64), 1
    for key in reversed(keys):
        size = int(key.max()) + 1 if len(key) else 1
        if span * size >= 2**63:
            return np.lexsort((tie_breaker, *reversed(keys)))
        packed += key * span
        span *= size
    order = np.argsort(packed)
    ordered = packed[order]
    tied = ordered[1:] == ordered[:-1]
    if tied.any():
        in_run = np.zeros(len(order), dtype=bool)
        in_run[1:] |= tied
        in_run[:-1] |= tied
        positions = np.flatnonzero(in_run)
        run = np.cumsum(np.r_[True, ~tied])[positions]
        members = order[positions]
        order[positions] = members[np.lexsort((tie_breaker[members], run))]
    return order


def history_windows(
    sessions: Sessions, max_history_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For every session, the slice of ``order`` holding its history.

    ``order`` lists sessions by (user, end, start, first line); a session's history is the sessions of its user that
    ENDED before it started, i.e. a contiguous run ``order[low:high]`` (the most recent last), capped at
    ``max_history_items``. Returns ``order``, ``low``, ``high`` and the uncapped history length, each (S,).
    """
    end_rank, start_rank = dense_ranks(sessions.end, sessions.start)
    order = sort_order([sessions.user_codes, end_rank, start_rank], sessions.first_lines)
    # Composite keys (user, rank of the time) make one global searchsorted per session.
    user_key = sessions.user_codes.astype(np.int64) * (max(end_rank.max(), start_rank.max()) + 1)
    sorted_keys = (user_key + end_rank)[order]
    # Queries in increasing order make searchsorted fast: each search starts from the previous answer.
    start_key = user_key + start_rank
    by_start = np.argsort(start_key)
    high, user_low = np.empty_like(start_key), np.empty_like(start_key)
    high[by_start] = np.searchsorted(sorted_keys, start_key[by_start])
    user_low[by_start] = np.searchsorted(sorted_keys, user_key[by_start])
    low = np.maximum(user_low, high - max_history_items)
    return order, low, high, high - user_low


def _offsets_array(offsets: np.ndarray) -> pa.Array:
    if offsets[-1] > np.iinfo(np.int32).max:
        raise ValueError(
            f"A batch of examples holds {offsets[-1]} list values, more than Arrow's int32 list offsets allow; "
            "lower chunk_size."
        )
    return pa.array(offsets.astype(np.int32))


def _list_array(offsets: np.ndarray, values: pa.Array) -> pa.ListArray:
    return pa.ListArray.from_arrays(_offsets_array(offsets), values)


def _concatenated_ranges(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All integers of the ranges [low[i], high[i]) one after another, and the offsets (len + 1,) of each range."""
    lengths = high - low
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    positions = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1] - low, lengths)
    return positions, offsets


@dataclass
class _SessionColumns:
    """The hashed item ids, side ids (S, F) and CSR events of sessions, in some order of the sessions."""

    item_ids: np.ndarray
    side_ids: np.ndarray
    event_offsets: np.ndarray
    action_ids: np.ndarray
    seconds: np.ndarray

    def reordered(self, order: np.ndarray) -> _SessionColumns:
        """The same sessions listed in ``order``."""
        events, offsets = _concatenated_ranges(self.event_offsets[order], self.event_offsets[order + 1])
        return _SessionColumns(
            self.item_ids[order], self.side_ids[order], offsets, self.action_ids[events], self.seconds[events]
        )

    def side_lists(self, indices: np.ndarray) -> pa.ListArray:
        width = self.side_ids.shape[1]
        offsets = np.arange(len(indices) + 1, dtype=np.int64) * width
        return _list_array(offsets, pa.array(self.side_ids[indices].ravel()))

    def event_lists(self, indices: np.ndarray) -> tuple[pa.ListArray, pa.ListArray]:
        """The action ids and the seconds of the sessions' events: two list arrays with the same offsets."""
        events, offsets = _concatenated_ranges(self.event_offsets[indices], self.event_offsets[indices + 1])
        offsets = _offsets_array(offsets)
        return (
            pa.ListArray.from_arrays(offsets, pa.array(self.action_ids[events])),
            pa.ListArray.from_arrays(offsets, pa.array(self.seconds[events])),
        )


class ExampleBuilder:
    """Turns chosen target sessions into record batches of :data:`EXAMPLE_SCHEMA`."""

    def __init__(self, sessions: Sessions, tokenizer: A2GenActionTokenizer, max_history_items: int):
        self.sessions = sessions
        self.user_hashes = tokenizer.hash_users(sessions.users.to_pylist())
        item_hashes = tokenizer.hash_items(sessions.items.to_pylist())
        side_hashes = []
        for field, values in zip(sessions.side_fields, sessions.side_values):
            raws = values.to_pylist()
            hashes = tokenizer.hash_side_features(field, raws)
            hashes[np.array([raw == "" for raw in raws], dtype=bool)] = 0  # empty value = unknown = padding
            side_hashes.append(hashes)
        side_ids = (
            np.stack([hashes[codes] for hashes, codes in zip(side_hashes, sessions.side_codes.T)], axis=1)
            if side_hashes
            else np.zeros((len(sessions), 0), dtype=np.int64)
        )
        self.targets = _SessionColumns(
            item_hashes[sessions.item_codes],
            side_ids,
            sessions.event_offsets,
            sessions.event_action_ids,
            sessions.event_seconds,
        )
        self.order, self.low, self.high, self.available = history_windows(sessions, max_history_items)
        # The sessions in history order: a history is a run of consecutive sessions there, its data read in sequence.
        self.histories = self.targets.reordered(self.order)
        (start_rank,) = dense_ranks(sessions.start)
        # The order of the examples of a split: by (session start, user, item).
        self.by_time = sort_order([start_rank, sessions.user_codes, sessions.item_codes], np.arange(len(sessions)))

    def batch(self, targets: np.ndarray) -> pa.RecordBatch:
        """Record batch of the examples whose target sessions are ``targets`` (B,)."""
        sessions = self.sessions
        history, history_offsets = _concatenated_ranges(self.low[targets], self.high[targets])  # indices of order
        history_action_ids, history_action_seconds = self.histories.event_lists(history)
        action_ids, action_seconds = self.targets.event_lists(targets)
        columns = {
            "user": sessions.users.take(pa.array(sessions.user_codes[targets])),
            "item": sessions.items.take(pa.array(sessions.item_codes[targets])),
            "user_id": pa.array(self.user_hashes[sessions.user_codes[targets]]),
            "item_id": pa.array(self.targets.item_ids[targets]),
            "item_side_ids": self.targets.side_lists(targets),
            "history_item_ids": _list_array(history_offsets, pa.array(self.histories.item_ids[history])),
            "history_item_side_ids": _list_array(history_offsets, self.histories.side_lists(history)),
            "history_action_ids": _list_array(history_offsets, history_action_ids),
            "history_action_seconds": _list_array(history_offsets, history_action_seconds),
            "action_ids": action_ids,
            "action_seconds": action_seconds,
            "session_start": pa.array(np.floor(sessions.start[targets]).astype(np.int64)),
            "history_session_starts": _list_array(
                history_offsets, pa.array(np.floor(sessions.start[self.order[history]]).astype(np.int64))
            ),
        }
        return pa.RecordBatch.from_arrays(list(columns.values()), schema=EXAMPLE_SCHEMA)


def write_examples(path: Path, batches: Iterable[pa.RecordBatch]) -> None:
    """Write record batches of :data:`EXAMPLE_SCHEMA` to the Arrow stream file ``path`` (a ``save_to_disk`` shard)."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, EXAMPLE_FEATURES.arrow_schema) as writer:
        for batch in batches:
            writer.write_batch(batch)


@dataclass
class LabelWindowCounts:
    """What the labels' window (the start and ``max_actions`` actions after it) leaves out of some sessions:
    ``longer`` sessions hold more events than that, ``lengths[n]`` sessions have n actions after the start, and
    ``lost[id - 1]`` counts the sessions whose action ``id`` happens only after the window (a positive the occurrence
    targets do not see)."""

    longer: int
    lengths: np.ndarray
    lost: np.ndarray

    @property
    def longest(self) -> int:
        """The most actions after the start of any session (0 without sessions)."""
        return int(np.flatnonzero(self.lengths)[-1]) if self.lengths.any() else 0

    def share_within(self, share: float) -> int:
        """The fewest actions after the start that ``share`` of the sessions fit in (0 without sessions)."""
        total = int(self.lengths.sum())
        return int(np.searchsorted(np.cumsum(self.lengths), share * total)) if total else 0

    @staticmethod
    def merge(first: LabelWindowCounts, second: LabelWindowCounts) -> LabelWindowCounts:
        size = max(len(first.lengths), len(second.lengths))
        lengths = np.pad(first.lengths, (0, size - len(first.lengths))) + np.pad(
            second.lengths, (0, size - len(second.lengths))
        )
        return LabelWindowCounts(first.longer + second.longer, lengths, first.lost + second.lost)


def label_window_counts(
    sessions: Sessions, chosen: np.ndarray, num_actions: int, max_actions: int, drop: int | None = None
) -> LabelWindowCounts:
    """:class:`LabelWindowCounts` of the ``chosen`` sessions `(S,)` (bool) for labels of ``max_actions + 1`` events
    (what :class:`~a2gen_hf.data.collator.A2GenDataCollator` keeps); with ``drop`` (an action id) that action's
    repeats after the first event are left out first, as the collator's ``drop_repeated_start`` does."""
    def events(ids: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each event's session and position in it, for sessions of ``lengths`` events laid end to end."""
        session = np.repeat(np.arange(len(lengths)), lengths)
        return session, np.arange(len(ids)) - np.r_[0, np.cumsum(lengths)[:-1]][session]

    ids = sessions.event_action_ids
    lengths = np.diff(sessions.event_offsets)
    if drop is not None:
        session, position = events(ids, lengths)
        kept = ~((ids == drop) & (position >= 1))
        ids = ids[kept]
        lengths = np.bincount(session[kept], minlength=len(lengths))
    window = max_actions + 1
    histogram = np.bincount(np.maximum(lengths[chosen] - 1, 0)).astype(np.int64)
    longer = chosen & (lengths > window)
    if not longer.any():  # the usual case: no event needs looking at
        return LabelWindowCounts(0, histogram, np.zeros(num_actions, np.int64))
    session, position = events(ids, lengths)
    in_longer = longer[session]
    key = session[in_longer] * (num_actions + 1) + ids[in_longer]
    position = position[in_longer]
    seen = np.unique(key[(position >= 1) & (position < window)])  # after the start, inside the labels
    lost = np.setdiff1d(np.unique(key[position >= window]), seen)
    return LabelWindowCounts(
        int(longer.sum()), histogram, np.bincount(lost % (num_actions + 1), minlength=num_actions + 1)[1:]
    )


def action_counts(sessions: Sessions, chosen: np.ndarray, num_actions: int) -> np.ndarray:
    """How often each action (ids 1..num_actions, at index id - 1) occurs in the chosen sessions' sequences."""
    counts = np.diff(sessions.event_offsets)
    ids = sessions.event_action_ids[np.repeat(chosen, counts)]
    return np.bincount(ids, minlength=num_actions + 1)[1:]
