"""Convert real interaction logs (Taobao UserBehavior, Tmall IJCAI-15, KuaiRand, or your own) into A2Gen examples.

The rules (sessions, the t = 0 anchor, ties, the end action, history, splits) are described in ``docs/data.md``;
:func:`convert_log` applies them column-wise and returns a :class:`ConversionResult`.
"""

from __future__ import annotations

import copy
import ctypes
import logging
import math
import multiprocessing
import numbers
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial, reduce
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from ..configuration_a2gen import MAX_ACTIONS_LIMIT
from ..output_folders import (
    AROUND,
    INSIDE,
    IS,
    output_lock,
    overlap,
    real_path,
    remove_dead_work_folders,
    staging_folder,
    switch_in,
)
from ..tokenization_a2gen import A2GenActionTokenizer
from .buckets import BUCKET_FIELDS, bucket_record, check_bucket_bounds, format_bucket_record, warn_of_few_buckets
from .buckets import data_sized_buckets as _sized_buckets
from .examples import (
    SPLITS,
    ExampleBuilder,
    LabelWindowCounts,
    LogTimeMoments,
    Sessions,
    SplitRule,
    action_counts,
    dense_ranks,
    label_window_counts,
    load_sessions,
    save_sessions,
    sort_order,
    write_examples,
)
from .folder import (
    check_replaceable,
    data_file_digest,
    data_file_name,
    write_data_summary,
    write_dataset_dict_files,
)
from .partitions import PartitionWriter, estimate_rows, read_partition
from .presets import PRESETS, TIME_UNITS, LogPreset, preset_named  # noqa: F401  (PRESETS, TIME_UNITS: old home)
from .validation import (
    BAD_ROW_REASONS,
    PLAUSIBLE_UNIX_SECONDS,
    BadRowCounter,
    LogFormatError,
    ValidatedBatches,
    ValidatedLog,
    finer_time_unit_hint,
    share_text,
    spelled_twice,
)
from .validation import utc_text as _utc

logger = logging.getLogger(__name__)

DEFAULT_SESSION_GAP_SECONDS = 3 * 86400
DEFAULT_MAX_HISTORY_ITEMS = 50
DEFAULT_PARTITION_ROWS = 1_000_000
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
@dataclass
class ConversionResult:
    """What :func:`convert_log` produced: the examples, the tokenizer fitted on the train split, the summary."""

    dataset: datasets.DatasetDict
    tokenizer: A2GenActionTokenizer
    summary: dict[str, Any]
    output_dir: Path | None = None


def _codes(values: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Dictionary-encode a string column: int64 codes (rows,) and the distinct values."""
    encoded = pc.dictionary_encode(values)
    if encoded.num_chunks == 0:
        return np.empty(0, dtype=np.int64), pa.array([], type=pa.string())
    codes = np.concatenate([chunk.indices.to_numpy(zero_copy_only=False) for chunk in encoded.chunks])
    return codes.astype(np.int64), encoded.chunks[0].dictionary


def _drop_duplicates(log: ValidatedLog, rows: np.ndarray, duplicate: np.ndarray, describe) -> np.ndarray:
    """Report rows ``rows[duplicate]`` (each equal to the row before it) as duplicate events; return kept rows."""
    found = np.flatnonzero(duplicate)
    if found.size:
        first = found[np.argmin(log.lines[rows[found]])]
        line = log.lines[rows[first]]
        message = (
            f"{log.source}:{line}: duplicate event: {describe(rows[first])} already on line "
            f"{log.lines[rows[first - 1]]}"
        )
        log.bad_rows.add("duplicate_event", found.size, message, line)
    return rows[~duplicate]


def _seconds_text(seconds: float) -> str:
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def _group_starts(*keys: np.ndarray) -> np.ndarray:
    """True where a row starts a new run of equal ``keys`` (rows sorted by them)."""
    starts = np.ones(len(keys[0]), dtype=bool)
    if len(starts):
        starts[1:] = np.logical_or.reduce([key[1:] != key[:-1] for key in keys])
    return starts


def _encoded(log: ValidatedLog, preset: LogPreset) -> tuple[dict[str, np.ndarray], dict[str, pa.Array]]:
    codes, dictionaries = {}, {}
    for name in preset.string_columns():
        codes[name], dictionaries[name] = _codes(log.strings[name])
    return codes, dictionaries


def _first_known_codes(codes: np.ndarray, dictionary: pa.Array, first_rows: np.ndarray) -> np.ndarray:
    """`(S,)` each session's code of a side-feature column: its first row's, or, where that value is empty, the first
    non-empty one among its rows (session ``s`` holds ``codes[first_rows[s]:first_rows[s + 1]]``), so that a value
    logged on a later event is kept rather than read as unknown."""
    if not len(first_rows):
        return codes[first_rows]
    empty = np.array([value is None or value == "" for value in dictionary.to_pylist()], dtype=bool)
    positions = np.where(empty[codes], len(codes), np.arange(len(codes)))
    first_known = np.minimum.reduceat(positions, first_rows)
    return codes[np.where(first_known < len(codes), first_known, first_rows)]


def _sessions(
    log: ValidatedLog,
    preset: LogPreset,
    codes,
    dictionaries,
    rows,
    first_rows,
    start,
    end,
    offsets,
    action_ids,
    seconds,
) -> Sessions:
    return Sessions(
        users=dictionaries[preset.user_column],
        items=dictionaries[preset.item_column],
        side_fields=preset.side_feature_columns,
        side_values=[dictionaries[name] for name in preset.side_feature_columns],
        user_codes=codes[preset.user_column][rows[first_rows]],
        item_codes=codes[preset.item_column][rows[first_rows]],
        side_codes=np.stack(
            [_first_known_codes(codes[name][rows], dictionaries[name], first_rows) for name in preset.side_feature_columns],
            axis=1,
        )
        if preset.side_feature_columns
        else np.zeros((len(first_rows), 0), dtype=np.int64),
        start=start,
        end=end,
        event_offsets=offsets,
        event_action_ids=action_ids,
        event_seconds=seconds.astype(np.float32),
        first_lines=log.lines[rows[first_rows]],
    )


def _tie_order(actions: np.ndarray, preset: LogPreset) -> np.ndarray:
    """`(N,)` the order of same-second events: the start action 0, the end action after every other, the rest by
    their vocabulary ids."""
    order = actions.astype(np.int64, copy=True)
    order[actions == preset.action_id(preset.start_action)] = 0
    order[actions == preset.action_id(preset.end_action)] = len(preset.action_names) + 1
    return order


# How each session of an event log with a duration column got its end (the summary's "event_durations" counts).
END_RULES = {
    "end_from_duration": "no logged end action: the end action where the last logged duration ends (the latest of "
                         "its rows' time plus duration)",
    "end_at_last_event_duration_shorter": "every logged duration ends before the session's last event: the end action "
                                          "at that event (an end cannot precede the session's events)",
    "end_at_last_event_no_duration": "no row of the session logs a duration: the end action at its last event",
    "end_logged": "a logged end action: at its own time (the duration is not read)",
}
# Not a rule but a check of the unit: sessions of "end_from_duration" whose end lies more than a day after their last
# event (a 90 s watch logged in milliseconds and read as seconds lasts 25 hours).
LONG_DURATION_COUNT = "end_from_duration_over_a_day_after_last_event"
LONG_DURATION_SECONDS = 86_400.0


def _session_ends(
    times: np.ndarray, durations: np.ndarray | None, first: np.ndarray, last: np.ndarray, logged_end: np.ndarray,
    decimals: int | None = None,
) -> tuple[np.ndarray, dict[str, int]]:
    """`(S,)` each session's end (Unix seconds) and, with ``durations``, how many sessions got it by each rule of
    :data:`END_RULES` (the sessions' rows are ``first[s]..last[s]`` of the sorted ``times`` / ``durations``, seconds,
    NaN = unknown): the time of the logged end action (``logged_end``), else the latest moment a known duration ends
    (each row's time plus its duration: a duration runs from the row that logs it, so a replay later in the session
    counts from the replay), else (no known duration, or every one ends before the last event) the last event's
    time."""
    end = times[last]
    if durations is None:
        return end, {}
    ends_of_rows = times + durations
    if decimals is not None:
        # Both were divided by 1000 when read (ms): t/1000 + d/1000 misses (t + d)/1000 by a rounding step as often as
        # not, which would put a session that ends the millisecond the next begins in its history or not by chance.
        # Snapped to the millisecond it is the very number the other's start was read as; a sum a real fraction of a
        # millisecond off the grid (12000.5 ms) is no rounding step (those are below 1e-6 s) and stays as it is.
        snapped = np.round(ends_of_rows, decimals)
        ends_of_rows = np.where(np.abs(ends_of_rows - snapped) < 1e-6, snapped, ends_of_rows)
    ends_of_rows = np.where(np.isnan(durations), -np.inf, ends_of_rows)
    watched = np.maximum.reduceat(ends_of_rows, first) if len(first) else np.empty(0)  # -inf: no row logs one
    known = np.isfinite(watched)
    from_duration = ~logged_end & known & (watched >= end)
    counts = {
        "end_from_duration": from_duration,
        LONG_DURATION_COUNT: from_duration & (watched - end > LONG_DURATION_SECONDS),
        "end_at_last_event_duration_shorter": ~logged_end & known & (watched < end),
        "end_at_last_event_no_duration": ~logged_end & ~known,
        "end_logged": logged_end,
    }
    return np.where(from_duration, watched, end), {rule: int(mask.sum()) for rule, mask in counts.items()}


def sessions_from_events(log: ValidatedLog, preset: LogPreset, session_gap_seconds: float) -> Sessions:
    """Cut an event log into (user, item) sessions and write each as start, ..., end action (see docs/data.md)."""
    return _event_sessions(log, preset, session_gap_seconds)[0]


def _event_sessions(
    log: ValidatedLog, preset: LogPreset, session_gap_seconds: float
) -> tuple[Sessions, dict[str, int]]:
    """:func:`sessions_from_events` and, for a preset with a duration column, how many sessions got their end by
    each rule of :data:`END_RULES` (empty without one)."""
    codes, dictionaries = _encoded(log, preset)
    users, items = codes[preset.user_column], codes[preset.item_column]
    times, actions = log.numbers[preset.time_column], log.numbers["action_id"]
    # Ties of (user, item, time): the start action first, the end action last, the others in vocabulary order,
    # then by line (so that a same-second start opens its session and a same-second end closes it, wherever the
    # vocabulary lists them).
    (time_ranks,) = dense_ranks(times)
    rows = sort_order([users, items, time_ranks, _tie_order(actions, preset)], log.lines)
    duplicate = ~_group_starts(users[rows], items[rows], times[rows], actions[rows])

    def describe(row: int) -> str:
        action = preset.action_names[actions[row] - 1]
        return f"user {dictionaries[preset.user_column][users[row]]}, item {dictionaries[preset.item_column][items[row]]}, {action} at {_seconds_text(times[row])}"

    # A duplicate is dropped (a bad row) whatever its duration: its duration is not read, as nothing of a bad row is.
    rows = _drop_duplicates(log, rows, duplicate, describe)
    users, items, times, actions = users[rows], items[rows], times[rows], actions[rows]
    durations = log.numbers[preset.duration_column][rows] if preset.duration_column is not None else None

    end_id, start_id = preset.action_id(preset.end_action), preset.action_id(preset.start_action)
    new_session = _group_starts(users, items)
    if len(rows):
        new_session[1:] |= (np.diff(times) > session_gap_seconds) | (actions[:-1] == end_id)
    first = np.flatnonzero(new_session)
    last = np.r_[first[1:], len(rows)] - 1
    session_of_row = np.cumsum(new_session) - 1
    add_start = actions[first] != start_id
    add_end = actions[last] != end_id
    offsets = np.zeros(len(first) + 1, dtype=np.int64)
    np.cumsum(last - first + 1 + add_start + add_end, out=offsets[1:])

    start = times[first]
    decimals = 3 if "ms" in (preset.time_unit, preset.duration_unit) else None  # see _session_ends
    end, end_counts = _session_ends(times, durations, first, last, ~add_end, decimals)
    action_ids = np.empty(offsets[-1], dtype=np.int64)
    seconds = np.empty(offsets[-1], dtype=np.float64)
    positions = offsets[session_of_row] + add_start[session_of_row] + (np.arange(len(rows)) - first[session_of_row])
    action_ids[positions] = actions
    seconds[positions] = times - start[session_of_row]
    action_ids[offsets[:-1][add_start]] = start_id  # the anchor: start at the first event's moment
    seconds[offsets[:-1][add_start]] = 0.0
    action_ids[offsets[1:][add_end] - 1] = end_id  # no logged leave: leave at the session's end (_session_ends)
    seconds[offsets[1:][add_end] - 1] = (end - start)[add_end]
    sessions = _sessions(log, preset, codes, dictionaries, rows, first, start, end, offsets, action_ids, seconds)
    return sessions, end_counts


def sessions_from_views(log: ValidatedLog, preset: LogPreset) -> Sessions:
    """One session per view row: start at 0, the flagged actions (unknown times), the end action after the duration."""
    codes, dictionaries = _encoded(log, preset)
    users, items = codes[preset.user_column], codes[preset.item_column]
    times = log.numbers[preset.time_column]
    (time_ranks,) = dense_ranks(times)
    rows = sort_order([users, items, time_ranks], log.lines)

    def describe(row: int) -> str:
        return f"user {dictionaries[preset.user_column][users[row]]}, video {dictionaries[preset.item_column][items[row]]} viewed at {_seconds_text(times[row])}"

    rows = _drop_duplicates(log, rows, ~_group_starts(users[rows], items[rows], times[rows]), describe)
    duration = log.numbers[preset.duration_column][rows]
    # Columns of the (views, 2 + flags) grid: start, the flags in the preset's order, end; absent flags drop out.
    present = np.column_stack(
        [
            np.ones(len(rows), bool),
            *(log.numbers[name][rows] for name in preset.flag_columns),
            np.ones(len(rows), bool),
        ]
    )
    grid_ids = np.array(
        [preset.action_id(preset.start_action)]
        + [preset.action_id(action) for action in preset.flag_columns.values()]
        + [preset.action_id(preset.end_action)]
    )
    grid_seconds = np.full(present.shape, np.nan)
    grid_seconds[:, 0] = 0.0
    grid_seconds[:, -1] = duration
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(present.sum(axis=1), out=offsets[1:])
    start = times[rows]
    first = np.arange(len(rows))
    action_ids = np.broadcast_to(grid_ids, present.shape)[present]
    return _sessions(
        log,
        preset,
        codes,
        dictionaries,
        rows,
        first,
        start,
        start + duration,
        offsets,
        action_ids,
        grid_seconds[present],
    )


@dataclass
class _Conversion:
    """What every partition's work needs (sent to the worker processes)."""

    preset: LogPreset
    source: str
    work_dir: Path
    dataset_dir: Path
    num_partitions: int
    session_gap_seconds: float
    max_history_items: int
    min_history: int
    tokenizer: A2GenActionTokenizer
    chunk_size: int
    boundaries: tuple[float, float] = (0.0, 0.0)

    def rows_file(self, index: int) -> Path:
        return self.work_dir / f"partition-{index:05d}.arrow"

    def sessions_file(self, index: int) -> Path:
        return self.work_dir / f"sessions-{index:05d}"

    def examples_file(self, split: str, index: int) -> Path:
        return self.dataset_dir / split / data_file_name(index, self.num_partitions)


@dataclass
class _PartitionSessions:
    """One partition after its sessions are cut: their number and start range, its duplicate events, its distinct
    raw users (a count: partitions hold disjoint users), items and side-feature values per field."""

    count: int
    first_start: float
    last_start: float
    bad_rows: BadRowCounter
    users: int = 0
    items: pa.Array | None = None
    side_values: tuple[pa.Array, ...] = ()
    longest_seconds: float = 0.0  # the longest session's time from its start to its end
    end_counts: dict[str, int] = field(default_factory=dict)  # event logs with a duration column: END_RULES counts
    busiest_user: tuple[int, str] = (0, "")  # (its valid rows, its raw id): partitions hold disjoint users
    user_values: pa.Array | None = None  # its distinct raw users (for ids spelled two ways, :func:`spelled_twice`)


@dataclass
class _PartitionExamples:
    """One partition after its examples are written: examples and action counts per split, train time moments."""

    examples: list[int]
    action_counts: list[np.ndarray]
    time_moments: LogTimeMoments
    label_windows: list[LabelWindowCounts]
    # The same with the targets' repeated start actions left out (the collator's drop_repeated_start).
    label_windows_without_repeats: list[LabelWindowCounts]
    digests: list[str]  # of its data file of each split (the splits' fingerprints are made of them)


def _cut_sessions(conversion: _Conversion, index: int) -> _PartitionSessions:
    """Cut one partition's rows into sessions and keep them in a file for :func:`_write_examples`."""
    preset = conversion.preset
    log = read_partition(conversion.rows_file(index), preset, conversion.source)
    conversion.rows_file(index).unlink()
    if log.lines.size == 0:  # the session code assumes at least one row
        return _PartitionSessions(0, math.inf, -math.inf, log.bad_rows)
    end_counts: dict[str, int] = {}
    if preset.is_view_log:
        sessions = sessions_from_views(log, preset)
    else:
        sessions, end_counts = _event_sessions(log, preset, conversion.session_gap_seconds)
    save_sessions(sessions, conversion.sessions_file(index))
    return _PartitionSessions(
        len(sessions),
        float(sessions.start.min()),
        float(sessions.start.max()),
        log.bad_rows,
        len(sessions.users),
        sessions.items,
        tuple(sessions.side_values),
        float((sessions.end - sessions.start).max()),
        end_counts,
        _busiest_user(log.strings[preset.user_column]),
        sessions.users,
    )


def _busiest_user(users: pa.ChunkedArray) -> tuple[int, str]:
    """(rows, raw id) of the user with the most valid rows among ``users`` (a partition's user column)."""
    counts = pc.value_counts(users.combine_chunks() if isinstance(users, pa.ChunkedArray) else users)
    rows = np.asarray(counts.field("counts").to_numpy(zero_copy_only=False))
    busiest = int(np.argmax(rows))
    return int(rows[busiest]), str(counts.field("values")[busiest].as_py())


def _distinct_counts(cut: list[_PartitionSessions], num_side_fields: int) -> dict[str, int]:
    """Distinct raw users, items and side-feature values (summed over the fields, as they share one table)."""

    def distinct(arrays: list) -> int:
        arrays = [array for array in arrays if array is not None and len(array)]
        return len(pc.unique(pa.chunked_array(arrays))) if arrays else 0

    return {
        "users": sum(partition.users for partition in cut),
        "items": distinct([partition.items for partition in cut]),
        "side_values": sum(
            distinct([partition.side_values[field] for partition in cut if partition.side_values])
            for field in range(num_side_fields)
        ),
    }


def _warn_of_ids_spelled_twice(source: str, preset: LogPreset, cut: list[_PartitionSessions]) -> None:
    """Warn where one number is spelled two ways among the distinct users or items (``007`` and ``7``, ``7.0`` and
    ``7``): they are two ids, as the log may mean (zero-padded codes can be distinct), so nothing is merged; the
    warning names the column, how many numbers and an example, and how to merge them if they are one id."""
    for name, arrays in ((preset.user_column, [partition.user_values for partition in cut]),
                         (preset.item_column, [partition.items for partition in cut])):  # fmt: skip
        arrays = [array for array in arrays if array is not None and len(array)]
        if not arrays:
            continue
        count, example = spelled_twice(pc.unique(pa.chunked_array(arrays)) if len(arrays) > 1 else arrays[0])
        if count:
            logger.warning(
                f"{source}: column {name!r} spells {count:,} number(s) in more than one way, e.g. {example}; each "
                "spelling is its own id (hashed as written, as at serving), so they are counted as different users or "
                "items. If they are one id, write the column in one spelling and prepare again (e.g. in pandas "
                f"`frame[{name!r}] = pd.to_numeric(frame[{name!r}]).astype('int64')`); if the spellings are distinct "
                "codes (zero-padded ids), this warning can be ignored."
            )


def _write_examples(conversion: _Conversion, index: int) -> _PartitionExamples:
    """Write one partition's examples into its data file of each split; count its actions and train times."""
    num_actions = len(conversion.preset.action_names)
    if not conversion.sessions_file(index).exists():  # a partition without rows
        for split in SPLITS:
            write_examples(conversion.examples_file(split, index), [])
        nothing = LabelWindowCounts(0, np.zeros(0, np.int64), np.zeros(num_actions, np.int64))
        return _PartitionExamples(
            [0] * len(SPLITS), [np.zeros(num_actions, np.int64)] * len(SPLITS), LogTimeMoments(), [nothing] * len(SPLITS),
            [nothing] * len(SPLITS), [data_file_digest(conversion.examples_file(split, index)) for split in SPLITS],
        )
    sessions = load_sessions(conversion.sessions_file(index))
    shutil.rmtree(conversion.sessions_file(index))
    split_of_session = np.searchsorted(conversion.boundaries, sessions.start, side="right")
    builder = ExampleBuilder(sessions, conversion.tokenizer, conversion.max_history_items)
    chosen = builder.available >= conversion.min_history
    examples, counts, windows, windows_without_repeats = [], [], [], []
    max_actions, start_id = conversion.tokenizer.max_actions, conversion.tokenizer.start_action_id
    for split_index, split in enumerate(SPLITS):
        in_split = (split_of_session == split_index) & chosen
        targets = builder.by_time[in_split[builder.by_time]]
        chunks = (
            targets[begin : begin + conversion.chunk_size] for begin in range(0, len(targets), conversion.chunk_size)
        )
        write_examples(conversion.examples_file(split, index), map(builder.batch, chunks))
        examples.append(len(targets))
        counts.append(action_counts(sessions, in_split, num_actions))
        windows.append(label_window_counts(sessions, in_split, num_actions, max_actions))
        windows_without_repeats.append(label_window_counts(sessions, in_split, num_actions, max_actions, start_id))
    # Fitted on the train split's examples (the sessions --min-history keeps), as rules.time_statistics_fitted_on
    # and docs/data.md say; before, on every train-period session, --min-history's excluded ones too.
    moments = LogTimeMoments.of_sessions(sessions, (split_of_session == 0) & chosen)
    digests = [data_file_digest(conversion.examples_file(split, index)) for split in SPLITS]
    return _PartitionExamples(examples, counts, moments, windows, windows_without_repeats, digests)


def _check_open_files(num_partitions: int, partition_rows: int) -> None:
    """The rows are split into one open file per partition at once: refuse, before any is opened, more partitions
    than the process may hold files open (before: ``OSError: Too many open files`` midway)."""
    try:
        import resource
    except ImportError:  # not on this platform (Windows): nothing to check
        return
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit != resource.RLIM_INFINITY and num_partitions + 64 > limit:  # 64: the files the process holds anyway
        raise ValueError(
            f"partition_rows={partition_rows:,} makes {num_partitions:,} partitions, each an open file while the log is "
            f"read, above this process's limit of {limit:,} open files (ulimit -n): raise partition_rows (CLI: "
            "--partition-rows) or the limit."
        )


def _parent_death_signal() -> bool:
    """Linux: have the kernel send this process SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``); False
    where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (AttributeError, OSError):
        return False
    return prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0


def _watch_parent(parent: int) -> None:
    """A worker's watchdog thread where no death signal is available: exit once the parent is gone."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: the worker ends when its parent dies (SIGKILL, SIGTERM, the OOM killer), instead of
    waiting forever on its call queue (an orphan holding memory and, before, the output's lock)."""
    if not _parent_death_signal():
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the parent died before the signal was set up
        os._exit(1)


@contextmanager
def _partition_map(num_proc: int, progress: bool | None) -> Iterator[Callable[..., list]]:
    """``map(function, partitions, desc)`` over ``num_proc`` forked worker processes (in this process when 1).

    Processes, not threads: hashing ids (BLAKE2b in Python) holds the GIL (threads took ~10% longer on 10M rows).
    Forked before the log is read, the workers start small and share the imported modules; they run numpy, pyarrow
    and hashlib only.
    """

    def bar(results: Iterable, total: int, desc: str) -> list:
        return list(tqdm(results, total=total, desc=desc, unit=" partitions", disable=progress is False or None))

    if num_proc == 1 or "fork" not in multiprocessing.get_all_start_methods():
        yield lambda function, indices, desc: bar(map(function, indices), len(indices), desc)
        return
    # An executor, not multiprocessing.Pool: a worker killed from outside (the OOM killer) breaks the executor, which
    # raises, where a Pool waits forever for the lost partition.
    # The workers close their copy of the output lock at the fork (output_folders) and end with their parent.
    executor = ProcessPoolExecutor(
        num_proc, mp_context=multiprocessing.get_context("fork"), initializer=_exit_with_parent,
        initargs=(os.getpid(),),
    )

    def run(function: Callable, indices: Sequence[int], desc: str) -> list:
        try:
            return bar(executor.map(function, indices), len(indices), desc)
        except BrokenProcessPool:
            raise RuntimeError(
                f"A worker process died while converting the log ({desc}), killed from outside: most often the "
                "system ran out of memory. Convert with smaller partitions or fewer workers (partition_rows / "
                "num_proc; CLI: --partition-rows, --num-proc)."
            ) from None

    try:
        yield run
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def convert_log(
    input_path: str | Path,
    preset: str | LogPreset = "taobao",
    output_dir: str | Path | None = None,
    on_bad_rows: str = "error",
    file_format: str | None = None,
    session_gap_seconds: float = DEFAULT_SESSION_GAP_SECONDS,
    max_history_items: int = DEFAULT_MAX_HISTORY_ITEMS,
    min_history: int = 0,
    split_rule: SplitRule | None = None,
    tokenizer: A2GenActionTokenizer | None = None,
    chunk_size: int = 65536,
    progress: bool | None = None,
    partition_rows: int = DEFAULT_PARTITION_ROWS,
    num_proc: int | None = None,
    data_sized_buckets: tuple[str, ...] | None = None,
    fit_time_statistics: bool = True,
    max_actions: int | None = None,
) -> ConversionResult:
    """Convert an interaction log into the A2Gen example schema of ``docs/design.md``.

    The log streams through in batches into partition files by user (about ``partition_rows`` rows each); the
    partitions are cut into sessions and written as examples by ``num_proc`` processes, straight into the
    ``save_to_disk`` layout. Within a split, examples are ordered by partition, then by (session start, user, item).

    Args:
        input_path: a CSV, JSONL or Parquet log.
        preset: a name of :data:`PRESETS` or a :class:`LogPreset`.
        output_dir: where to write the ``DatasetDict`` (``save_to_disk`` layout), ``tokenizer/`` and
            ``a2gen_data.json``; ``None`` keeps the examples in memory.
        on_bad_rows: ``"error"`` (default: stop at the first bad row), ``"skip"`` (drop and count) or ``"warn"``
            (drop, count and warn once per reason).
        file_format: ``"csv"``, ``"jsonl"`` or ``"parquet"``; guessed from the extension when ``None``.
        session_gap_seconds: event logs: a (user, item) pair's next event starts a new session after this gap.
        max_history_items: history items kept per example (the most recent).
        min_history: only sessions with at least this many earlier sessions of the user become examples.
        split_rule: the time boundaries of train / validation / test (default: the last two sevenths).
        tokenizer: a tokenizer with the preset's vocabulary and your bucket counts; one with bucket counts sized
            from the data otherwise. The result's tokenizer is a copy of it whose time statistics are (re)fitted on
            the train split; the one given is left as it is.
        chunk_size: examples assembled per Arrow record batch.
        progress: show progress bars (``None``: only on a terminal).
        partition_rows: rows per partition, the unit of work and of memory (about 0.3 KB per row in a worker, plus
            one chunk of examples). The log's rows are estimated from its size (exact for Parquet); a log of at most
            ``partition_rows`` rows is one partition, converted in this process.
        num_proc: worker processes (default ``min(2, os.cpu_count())``; 1, or a platform without ``fork``: all in
            this process); the number of partitions is rounded up to a multiple of it.
        data_sized_buckets: the tokenizer's bucket fields (``"user_buckets"``, ``"item_buckets"``,
            ``"side_feature_buckets"``) to set from the data: :func:`~a2gen_hf.data.buckets.buckets_for` the
            distinct raw ids (recorded in the summary's ``"distinct"``). ``None``: all three when no ``tokenizer`` is
            given, none otherwise.
        fit_time_statistics: fit the tokenizer's time statistics on the train split (default). ``False`` keeps those
            of the ``tokenizer`` given (required then): newer logs prepared with a saved model's tokenizer, for
            training that model on (``--init-from``), whose times it normalises as it was trained to.
        max_actions: the actions after the start that a model of this data generates and that its labels keep (the
            tokenizer's ``max_actions``; K of the paper); ``None``: the ``tokenizer``'s, 6 for a new one. The
            examples keep whole sessions; the summary's ``labels`` (and a warning) count the sessions longer than
            that and the positives after it, which the occurrence targets then miss.

    Returns:
        A :class:`ConversionResult`.
    """
    preset, split_rule, num_proc, max_actions, data_sized_buckets = _checked_conversion_arguments(
        preset, split_rule, session_gap_seconds, max_history_items, min_history, partition_rows, num_proc,
        tokenizer, fit_time_statistics, max_actions, data_sized_buckets,
    )
    tokenizer = _conversion_tokenizer(tokenizer, preset, max_actions)
    stream = ValidatedBatches(input_path, preset, on_bad_rows=on_bad_rows, file_format=file_format, progress=progress)
    num_partitions, num_proc = _partition_counts(stream, partition_rows, num_proc)
    output_dir = Path(output_dir) if output_dir is not None else None
    if output_dir is not None:
        check_output_dir(stream.path, output_dir)
    with ExitStack() as stack:
        warned = stack.enter_context(_recorded_warnings())
        work, dataset_dir = _conversion_folders(stack, stream.path, output_dir)
        partition_map = stack.enter_context(_partition_map(num_proc, progress))
        for split in SPLITS:
            (dataset_dir / split).mkdir(parents=True, exist_ok=True)
        conversion = _Conversion(
            preset=preset,
            source=stream.source,
            work_dir=work,
            dataset_dir=dataset_dir,
            num_partitions=num_partitions,
            session_gap_seconds=session_gap_seconds,
            max_history_items=max_history_items,
            min_history=min_history,
            tokenizer=tokenizer,
            chunk_size=chunk_size,
        )
        _partition_log(stream, conversion)
        cut, span = _cut_partitions(conversion, partition_map, stream, split_rule)
        distinct = _distinct_counts(cut, len(preset.side_feature_columns))
        fixed = {name: None if name in data_sized_buckets else getattr(tokenizer, name) for name in BUCKET_FIELDS}
        for name, count in _sized_buckets(distinct, fixed).items():  # before any id is hashed
            setattr(tokenizer, name, count)
        warn_of_few_buckets(distinct, {name: count for name, count in fixed.items() if count is not None})
        _warn_of_ids_spelled_twice(stream.source, preset, cut)
        written, examples = _write_partitions(conversion, partition_map, input_path, split_rule, span,
                                              fit_time_statistics)  # fmt: skip
        summary = _summary(input_path, preset, session_gap_seconds, max_history_items, min_history, conversion,
                           stream, cut, written, examples, tokenizer, distinct, data_sized_buckets)  # fmt: skip
        if not fit_time_statistics:  # a saved model's tokenizer: its statistics, and its K
            summary["rules"]["time_statistics_fitted_on"] = "kept from the tokenizer given (not fitted on this log)"
            summary["labels"]["max_actions_fixed"] = True
        _warn_of_summary(stream.source, summary)
        summary["warnings"] = list(warned)
        if output_dir is None:
            dataset = datasets.load_from_disk(str(dataset_dir), keep_in_memory=True)
        else:
            shutil.rmtree(work)
            write_data_summary(dataset_dir, tokenizer, summary)
            switch_in(dataset_dir, output_dir)
            dataset = datasets.load_from_disk(str(output_dir))
    return ConversionResult(dataset=dataset, tokenizer=tokenizer, summary=summary, output_dir=output_dir)


def _checked_conversion_arguments(
    preset: str | LogPreset,
    split_rule: SplitRule | None,
    session_gap_seconds: float,
    max_history_items: int,
    min_history: int,
    partition_rows: int,
    num_proc: int | None,
    tokenizer: A2GenActionTokenizer | None,
    fit_time_statistics: bool,
    max_actions: int | None,
    data_sized_buckets: tuple[str, ...] | None,
) -> tuple[LogPreset, SplitRule, int, int | None, tuple[str, ...]]:
    """:func:`convert_log`'s arguments checked (a ``ValueError`` naming the first one refused) and their defaults
    filled in: ``(preset, split_rule, num_proc, max_actions, data_sized_buckets)``."""
    preset = preset_named(preset)
    split_rule = split_rule or SplitRule()
    if not (isinstance(session_gap_seconds, (int, float)) and math.isfinite(session_gap_seconds)
            and session_gap_seconds >= 0):  # fmt: skip
        raise ValueError(
            f"session_gap_seconds={session_gap_seconds!r} must be a finite number of seconds >= 0 (CLI: "
            "--session-gap-seconds), e.g. 259200 for three days."
        )
    if max_history_items < 1 or min_history < 0:
        raise ValueError(f"max_history_items={max_history_items} must be >= 1 and min_history={min_history} >= 0.")
    num_proc = num_proc if num_proc is not None else min(2, os.cpu_count() or 1)
    if partition_rows < 1 or num_proc < 1:
        raise ValueError(f"partition_rows={partition_rows} and num_proc={num_proc} must be >= 1.")
    if not fit_time_statistics and tokenizer is None:
        raise ValueError("fit_time_statistics=False keeps the time statistics of the tokenizer given: pass tokenizer=.")
    if max_actions is not None:
        if isinstance(max_actions, bool) or not isinstance(max_actions, numbers.Integral) or max_actions < 1:
            raise ValueError(f"max_actions={max_actions!r} must be a whole number >= 1 (CLI: --max-actions).")
        max_actions = int(max_actions)
    if max_actions is not None and tokenizer is not None and tokenizer.max_actions != max_actions:
        raise ValueError(
            f"max_actions={max_actions} differs from the tokenizer's {tokenizer.max_actions}: a saved model generates "
            "its tokenizer's number of actions; drop max_actions (CLI: --max-actions) or prepare without the "
            "tokenizer (--tokenizer)."
        )
    if data_sized_buckets is None:
        data_sized_buckets = tuple(BUCKET_FIELDS) if tokenizer is None else ()
    if tokenizer is not None:  # bucket counts set by hand: refused above the model's bound before the log is read
        check_bucket_bounds({name: getattr(tokenizer, name) for name in BUCKET_FIELDS if name not in data_sized_buckets})
    return preset, split_rule, num_proc, max_actions, data_sized_buckets


def _conversion_tokenizer(
    tokenizer: A2GenActionTokenizer | None, preset: LogPreset, max_actions: int | None
) -> A2GenActionTokenizer:
    """The tokenizer the conversion fills in: a copy of the one given (the caller's keeps its statistics and buckets,
    even when the conversion fails), refused where its side features or actions are not the preset's; a new one
    with the preset's actions (and ``max_actions``) otherwise."""
    tokenizer = copy.deepcopy(tokenizer) if tokenizer is not None else A2GenActionTokenizer(
        action_names=list(preset.action_names), start_action=preset.start_action, end_action=preset.end_action,
        **({} if max_actions is None else {"max_actions": max_actions}),
    )
    if tokenizer.side_feature_fields is None:  # saved with the tokenizer: the pipeline hashes raw side features
        tokenizer.side_feature_fields = list(preset.side_feature_columns)
    elif list(tokenizer.side_feature_fields) != list(preset.side_feature_columns):
        # Side ids are hashed per field name: another name, another number or order of fields would give the saved
        # model's side embeddings ids that mean something else (or a width it was not built for), silently.
        raise ValueError(
            f"The tokenizer's side features {list(tokenizer.side_feature_fields)} differ from the side-feature "
            f"columns {list(preset.side_feature_columns)} of preset {preset.name!r}: a model of that tokenizer reads "
            "side ids hashed by those field names, in that order. Read the log with a preset whose "
            "side_feature_columns are the tokenizer's (Python: dataclasses.replace(preset, side_feature_columns=(...)); "
            "CLI: the generic preset's --generic-side-features), renaming the log's columns if they have other names; "
            "or prepare the log without --tokenizer, for a model trained from scratch."
        )
    if list(tokenizer.action_names) != list(preset.action_names):
        raise ValueError(
            f"The tokenizer's actions {tokenizer.action_names} differ from preset {preset.name!r}'s "
            f"{list(preset.action_names)}; build the tokenizer with the preset's action_names."
        )
    return tokenizer


def _partition_counts(stream: ValidatedBatches, partition_rows: int, num_proc: int) -> tuple[int, int]:
    """``(num_partitions, num_proc)``: about ``partition_rows`` rows of the log (estimated from its size) per
    partition, at most one process per partition, and equal shares for the processes; refused where the partitions'
    files would not fit under the limit of open files."""
    # At least one partition: a log without rows (a Parquet file says so exactly) is then refused by its reader.
    num_partitions = max(1, math.ceil(estimate_rows(stream.path, stream.file_format) / partition_rows))
    num_proc = min(num_proc, num_partitions)
    num_partitions = math.ceil(num_partitions / num_proc) * num_proc  # equal shares for the workers
    _check_open_files(num_partitions, partition_rows)
    return num_partitions, num_proc


def _conversion_folders(stack: ExitStack, input_path: Path, output_dir: Path | None) -> tuple[Path, Path]:
    """``(work, dataset_dir)``: the partitions' work folder and the folder the ``DatasetDict`` is written to, removed
    when ``stack`` closes unless switched in. With an ``output_dir``: one writer per folder (its lock, held until
    ``stack`` closes), the data set built beside it (a failure leaves the old output as it was), a killed run's
    leftovers removed first. Without: a temporary folder."""
    if output_dir is not None:
        # One writer per folder; built beside it and switched in whole; a killed run's leftovers removed first.
        stack.enter_context(output_lock(output_dir))
        check_output_dir(input_path, output_dir)  # again, now that no other prepare can change it
        dataset_dir = staging_folder(output_dir)
        stack.callback(shutil.rmtree, dataset_dir, ignore_errors=True)  # a failure leaves the old output as it was
        work = dataset_dir / WORK_FOLDER
        work.mkdir()
    else:
        remove_dead_work_folders(tempfile.gettempdir(), f"{WORK_FOLDER}_")  # of conversions killed by a signal
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"{WORK_FOLDER}_{os.getpid()}_")))
        dataset_dir = work / "dataset"
    return work, dataset_dir


def _partition_log(stream: ValidatedBatches, conversion: _Conversion) -> None:
    """The partition phase: the log's valid rows streamed into the partition files by user; a log with none left
    is refused (:func:`_no_valid_rows_error`)."""
    writer = PartitionWriter(conversion.work_dir, conversion.num_partitions, conversion.preset.user_column)
    try:
        for batch in stream:
            writer.write(batch)
    finally:
        writer.close()
    if writer.rows == 0:
        if stream.bad_rows.mode == "warn":  # in "skip", the error below says it all
            stream.bad_rows.finish(stream.rows_read)
        raise _no_valid_rows_error(stream, conversion.preset)


def _no_valid_rows_error(stream: ValidatedBatches, preset: LogPreset) -> LogFormatError:
    """The refusal of a log none of whose rows is valid: the rows dropped per reason, with the hints for a time
    window or a time unit that does not fit the log."""
    outside = stream.bad_rows.counts.get("outside_window", 0)
    implausible = stream.bad_rows.counts.get("implausible_time", 0)
    hint = (
        f" {outside} of them lie outside the time window of preset {preset.name!r}, "
        f"{preset.time_window[0]}..{preset.time_window[1]}: for a log of another period pass time_window=None "
        "or its own window (CLI: --time-window none or FIRST,LAST)."
        if outside else ""
    ) + (
        f" {implausible} of them lie after the year 5000 read as {preset.time_unit!r}: "
        f"{finer_time_unit_hint(preset)}."
        if implausible else ""
    )
    return LogFormatError(
        f"{stream.source}: no valid rows are left ({_dropped_text(stream.bad_rows)}).{hint}"
        + _why_no_rows_text(stream.bad_rows)
    )


def _cut_partitions(
    conversion: _Conversion, partition_map: Callable[..., list], stream: ValidatedBatches, split_rule: SplitRule
) -> tuple[list[_PartitionSessions], tuple[float, float]]:
    """The session phase: each partition cut into sessions, the duplicate events counted with the bad rows (whose
    count is then final), and the split boundaries set on ``conversion`` from the sessions' start range.
    ``(cut, (first_start, last_start))``."""
    cut = partition_map(partial(_cut_sessions, conversion), range(conversion.num_partitions), "sessions")
    stream.bad_rows.add_partitions([partition.bad_rows for partition in cut])  # duplicate events
    stream.bad_rows.finish(stream.rows_read)
    first_start = min(partition.first_start for partition in cut)
    last_start = max(partition.last_start for partition in cut)
    _warn_of_times_in_1970(stream.source, conversion.preset, (first_start, last_start))
    _check_explicit_boundaries(stream.source, conversion.preset, split_rule, (first_start, last_start))
    conversion.boundaries = split_rule.boundaries(np.array([first_start, last_start]))
    return cut, (first_start, last_start)


def _write_partitions(
    conversion: _Conversion,
    partition_map: Callable[..., list],
    input_path: str | Path,
    split_rule: SplitRule,
    span: tuple[float, float],
    fit_time_statistics: bool,
) -> tuple[list[_PartitionExamples], dict[str, int]]:
    """The write phase: each partition's examples written into the splits' data files (the tokenizer's buckets set
    before), the splits checked against the time rule, the time statistics fitted on the train split (where
    ``fit_time_statistics``) and the ``DatasetDict``'s own files written. ``(written, examples per split)``."""
    written = partition_map(partial(_write_examples, conversion), range(conversion.num_partitions), "examples")
    examples = {
        split: sum(partition.examples[index] for partition in written) for index, split in enumerate(SPLITS)
    }
    _check_time_split(input_path, examples, conversion.min_history, split_rule, span, conversion.preset)
    if fit_time_statistics:
        reduce(LogTimeMoments.merge, [partition.time_moments for partition in written]).fit(conversion.tokenizer)
    digests = {split: [partition.digests[index] for partition in written] for index, split in enumerate(SPLITS)}
    write_dataset_dict_files(conversion.dataset_dir, conversion.num_partitions, digests)
    return written, examples


def _warn_of_summary(source: str, summary: dict[str, Any]) -> None:
    """The summary's warnings, each led by the log's name: labels cut at K, event durations worth a look, and
    actions that no example trains."""
    if (window := label_window_text(summary)) is not None:
        logger.warning(f"{source}: {window}")
    if event_durations_need_a_look(summary):
        logger.warning(f"{source}: {event_durations_text(summary)}")
    if (untrained := untrained_actions_text(summary)) is not None:
        logger.warning(f"{source}: {untrained}")
    if (busy := busiest_user_text(summary)) is not None:
        logger.warning(f"{source}: {busy}")


class _WarningRecorder(logging.Handler):
    """Keeps the text of each warning the package logs while it is attached."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _recorded_warnings() -> Iterator[list[str]]:
    """The warnings this process logs through the ``a2gen_hf`` loggers within the block (a list that fills as they
    come), for the summary: a reader of ``a2gen_data.json`` sees what prepare warned of."""
    recorder = _WarningRecorder()
    package = logging.getLogger("a2gen_hf")
    package.addHandler(recorder)
    try:
        yield recorder.messages
    finally:
        package.removeHandler(recorder)


# A user holding this share of a log's valid rows or more is warned of (a crawler, a shared or a test account?).
BUSY_USER_SHARE = 0.1


def _busiest_user_record(cut: list[_PartitionSessions], rows_kept: int) -> dict[str, Any]:
    """The user with the most valid rows over every partition, with its share of the rows kept."""
    rows, user = max((partition.busiest_user for partition in cut), default=(0, ""))
    return {"user": user, "rows": rows, "share": rows / rows_kept if rows_kept else 0.0}


def busiest_user_text(summary: dict[str, Any]) -> str | None:
    """The warning on a user holding :data:`BUSY_USER_SHARE` of the log's valid rows or more, or None."""
    busiest = summary.get("busiest_user") or {}
    if busiest.get("share", 0.0) < BUSY_USER_SHARE or summary.get("sessions", 0) <= 1:
        return None
    return (
        f"user {busiest['user']!r} holds {busiest['rows']:,} of the valid rows ({100 * busiest['share']:.1f} %). One "
        "user this heavy weighs on the count and time features' statistics, on the choices made on validation and "
        "on the test split's verdicts, for every user: on a Taobao-format log with one crawler-like user holding 30 % "
        "of the rows, the sparse_logs recipe was significantly worse than the plain regression on buy. If it is a "
        "crawler, a shared or a test account, remove its rows from the log and prepare again."
    )


def _summary(input_path, preset, session_gap_seconds, max_history_items, min_history, conversion, stream, cut,
             written, examples, tokenizer, distinct, data_sized_buckets) -> dict[str, Any]:  # fmt: skip
    """What ``a2gen_data.json`` records: the source, the rules, rows read and dropped, examples and frequencies."""
    validation_start, test_start = conversion.boundaries
    action_names = list(preset.action_names)
    return {
        "source": str(input_path),
        "preset": _preset_record(preset),
        "rules": {
            "session_gap_seconds": session_gap_seconds,
            "max_history_items": max_history_items,
            "min_history": min_history,
            "validation_start": validation_start,
            "test_start": test_start,
            "time_statistics_fitted_on": "train split: known times of every action after the start",
        },
        "rows_read": stream.rows_read,
        "header_line_skipped": stream.header_skipped,
        "values_trimmed": stream.values_trimmed,
        "rows_kept": stream.rows_read - sum(stream.bad_rows.counts.values()),
        "rows_dropped": dict(sorted(stream.bad_rows.counts.items())),
        "first_dropped": dict(sorted(stream.bad_rows.first_messages.items())),
        # the dropped rows of an allowed value written otherwise (Buy for buy), which their message says how to keep
        "dropped_fixable": {
            reason: {"rows": count, "first": stream.bad_rows.fixable_messages[reason]}
            for reason, count in sorted(stream.bad_rows.fixable_counts.items())
        },
        "sessions": sum(partition.count for partition in cut),
        # sessions that became no example: fewer than min_history earlier sessions of their user
        "sessions_below_min_history": sum(partition.count for partition in cut) - sum(examples.values()),
        "busiest_user": _busiest_user_record(cut, stream.rows_read - sum(stream.bad_rows.counts.values())),
        **_event_durations_record(preset, cut),
        "partitions": conversion.num_partitions,
        "examples": examples,
        "action_frequencies": {
            split: dict(zip(action_names, map(int, sum(partition.action_counts[index] for partition in written))))
            for index, split in enumerate(SPLITS)
        },
        "labels": {**_label_window_record(written, tokenizer.max_actions, action_names),
                   "longest_session_seconds": max(partition.longest_seconds for partition in cut)},
        "time_log_mean": tokenizer.time_log_mean,
        "time_log_std": tokenizer.time_log_std,
        **bucket_record(
            distinct,
            {name: getattr(tokenizer, name) for name in BUCKET_FIELDS},
            {name: name in data_sized_buckets for name in BUCKET_FIELDS},
        ),
    }


# ---------------------------------------------------------------------------------------------------------------
# The ranked actions a split never holds: the one rule, for prepare (from the summary's action frequencies) and for
# a2gen train and a2gen compare (training.data_setup.untrained_actions, from the training split's action ids)


def ranked_actions(action_names: Sequence[str], start_action: str, end_action: str) -> list[str]:
    """The actions a model ranks (scores): every action but the start and the end, which every session holds."""
    return [name for name in action_names if name not in (start_action, end_action)]


def actions_never_counted(
    counts: dict[str, int], action_names: Sequence[str], start_action: str, end_action: str
) -> list[str]:
    """The ranked actions (:func:`ranked_actions`) that ``counts`` (action name -> occurrences, e.g. in the training
    split) never counts: nothing can learn them."""
    return [name for name in ranked_actions(action_names, start_action, end_action) if not counts.get(name, 0)]


def no_ranked_action_text(ranked: Sequence[str], examples: int, start_action: str, end_action: str,
                          consequence: str = "") -> str:  # fmt: skip
    """Why training data whose training split (``examples`` examples) holds none of the ``ranked`` actions is of no
    use (``consequence``: what that means to the caller), and how to get data that is."""
    return (
        f"none of the ranked actions ({', '.join(ranked)}) happens in the training split ({examples} examples), so "
        f"no model can learn any of them{consequence}. Use a log where they happen before the validation period "
        "(rules.validation_start in a2gen_data.json): a longer log, or one whose action column maps its events to "
        f"them (the preset's action_mapping); {start_action} and {end_action} are in every session and are not ranked."
    )


def untrained_text(untrained: Sequence[str], consequence: str = "") -> str:
    """The warning on ranked actions that never happen in the training split (``consequence``: what else that means
    to the caller)."""
    return (f"{', '.join(untrained)} never happen in the training split: no model can learn them, so their test AUCs "
            f"are chance (undefined where the test split holds none either){consequence}")  # fmt: skip


def untrained_actions_text(summary: dict[str, Any]) -> str | None:
    """Prepare's warning on the ranked actions that the training split of a converted log never holds (``None``: it
    holds each), from the summary's ``action_frequencies``: before, a log of clicks only, or one whose buys were all
    dropped (``Buy`` for ``buy``), was refused only by ``a2gen compare`` or ``a2gen train``, after their setup. Says
    which of them the whole log lacks too, and how to get data that holds them."""
    preset = summary["preset"]
    names, start, end = preset["action_names"], preset["start_action"], preset["end_action"]
    frequencies = summary["action_frequencies"]
    untrained = actions_never_counted(frequencies["train"], names, start, end)
    if not untrained:
        return None
    ranked = ranked_actions(names, start, end)
    if set(untrained) == set(ranked):
        text = no_ranked_action_text(ranked, summary["examples"]["train"], start, end,
                                     ": a2gen train and a2gen compare refuse this folder")  # fmt: skip
    else:
        text = untrained_text(untrained, " and a2gen compare gives them no verdict") + "."
    later = {name: {split: counts.get(name, 0) for split, counts in frequencies.items() if counts.get(name, 0)}
             for name in untrained}  # fmt: skip
    absent = [name for name in untrained if not later[name]]
    held_out = [name for name in untrained if later[name]]
    if held_out:
        text += " " + "; ".join(
            f"{name} happens only in " + ", ".join(f"{split} ({count})" for split, count in later[name].items())
            for name in held_out
        ) + ": a longer log, or a later validation start (--validation-start), puts them in training as well."
    if absent:
        mapping = preset.get("action_mapping") or {}
        raw = {name: [value for value, action in mapping.items() if action == name] for name in absent}
        text += (
            f" The whole log holds no {', '.join(absent)} either"
            + (" (the preset reads " + "; ".join(
                f"{name} from the action value(s) {', '.join(map(repr, values))}" for name, values in raw.items() if values
            ) + ")" if any(raw.values()) else "")
            + ": check that its action column writes them as the preset does"
        )
        dropped = summary.get("rows_dropped", {}).get("unknown_action", 0)
        fixable = summary.get("dropped_fixable", {}).get("unknown_action")
        if fixable:
            text += (f"; {fixable['rows']} of its rows were dropped as unknown_action for an allowed action written "
                     f"otherwise (the first: {fixable['first'].split(': column')[0]}): fix them as the unknown_action "
                     "warning says")
        elif dropped:
            text += (f"; {dropped} rows were dropped as unknown_action, the first: "
                     f"{summary['first_dropped']['unknown_action']}")
        text += "."
    return text


def _event_durations_record(preset: LogPreset, cut: list[_PartitionSessions]) -> dict[str, Any]:
    """The summary's ``event_durations`` of an event log with a duration column: the column, its unit and how many
    sessions got their end by each rule of :data:`END_RULES`; nothing for other logs."""
    if preset.duration_column is None or preset.is_view_log:
        return {}
    counts = {
        rule: sum(partition.end_counts.get(rule, 0) for partition in cut) for rule in (*END_RULES, LONG_DURATION_COUNT)
    }
    return {"event_durations": {"column": preset.duration_column, "unit": preset.duration_unit, **counts}}


def event_durations_text(summary: dict[str, Any]) -> str | None:
    """The summary line on where an event log's sessions end given its duration column (and, when some durations end
    before their session's last event, the warning that says so), or None for other logs."""
    record = summary.get("event_durations")
    if not record:
        return None
    column, unit = record["column"], record["unit"]
    unit_name = {"s": "seconds", "ms": "milliseconds"}[unit]
    text = (
        f"session ends by the duration column {column!r} ({unit_name}): {record['end_from_duration']} where the "
        f"logged duration ends, {record['end_at_last_event_no_duration']} at the last event (no duration logged), "
        f"{record['end_logged']} at a logged end action (its own time; the duration is not read)"
    )
    check = f"check that {column!r} holds each view's duration in {unit_name} (duration_unit={unit!r}; CLI: " \
            "--generic-duration-unit)"
    if shorter := record["end_at_last_event_duration_shorter"]:
        text = (
            f"{text}; {shorter} at the last event, as their durations end before it (an end cannot precede the "
            f"session's events): if that is more than a few, {check}"
        )
    if long := record.get(LONG_DURATION_COUNT, 0):
        text = (
            f"{text}; {long} of the sessions that end where a duration ends do so more than a day after their last "
            f"event: if that is more than a few, {check}"
            + (" (a duration in milliseconds read as seconds lasts 1000 times too long)" if unit == "s" else "")
        )
    return text


def event_durations_need_a_look(summary: dict[str, Any]) -> bool:
    """Whether :func:`event_durations_text` holds a warning on the duration column's unit."""
    record = summary.get("event_durations") or {}
    return bool(record.get("end_at_last_event_duration_shorter") or record.get(LONG_DURATION_COUNT))


def _label_window_record(written: list[_PartitionExamples], max_actions: int, action_names: list[str]) -> dict:
    """The summary's ``labels``: the window the labels keep (``max_actions``), per split the examples whose sessions
    are longer and the positives that fall after it, the most actions after the start of any session and the fewest
    that 99 % fit in; the same under ``"without_repeated_starts"`` for targets read with ``--drop-repeated-start``;
    ``"max_actions_fixed"`` (set by :func:`convert_log`) when a saved model's tokenizer set K."""

    def record(windows: list[LabelWindowCounts]) -> dict:
        every = reduce(LabelWindowCounts.merge, windows)
        return {
            "longest_session_actions": every.longest,
            "session_actions_p99": every.share_within(0.99),
            "longer_examples": {split: window.longer for split, window in zip(SPLITS, windows)},
            "positives_after_the_labels": {
                split: {name: int(count) for name, count in zip(action_names, window.lost) if count}
                for split, window in zip(SPLITS, windows)
            },
        }

    def merged(field: str) -> list[LabelWindowCounts]:
        return [reduce(LabelWindowCounts.merge, [getattr(part, field)[index] for part in written])
                for index in range(len(SPLITS))]  # fmt: skip

    return {
        "max_actions": max_actions,
        "max_actions_fixed": False,
        **record(merged("label_windows")),
        "without_repeated_starts": record(merged("label_windows_without_repeats")),
    }


def label_window_text(summary: dict[str, Any]) -> str | None:
    """The summary line (and warning) on sessions longer than the labels keep, or None when every session fits."""
    labels = summary.get("labels")
    if not labels or not any(labels["longer_examples"].values()):
        return None
    longer = ", ".join(f"{split} {count}" for split, count in labels["longer_examples"].items())
    lost = "; ".join(
        f"{split} " + ", ".join(f"{name}={count}" for name, count in counts.items())
        for split, counts in labels["positives_after_the_labels"].items() if counts
    )  # fmt: skip
    return (
        f"sessions longer than the labels keep (the start and max_actions={labels['max_actions']} actions after it): "
        f"{longer} examples; the longest has {labels['longest_session_actions']} actions after the start"
        + (f", 99 % have at most {labels['session_actions_p99']}" if "session_actions_p99" in labels else "")
        + ". Their later actions are not labels: "
        + (f"positives that happen only after the window, counted as not happening: {lost}. " if lost
           else "no action's only occurrence is among them. ")
        + _without_repeats_text(labels.get("without_repeated_starts"))
        + _keep_them_text(labels, _session_gap_text(summary))
    )


def _keep_them_text(labels: dict[str, Any], gap_text: str) -> str:
    """How to keep the later actions: a larger --max-actions (at most :data:`MAX_ACTIONS_LIMIT`, which a longer
    session cannot fit: then the shorter session gap of ``gap_text`` comes first), or, with a saved tokenizer, what
    that costs."""
    if labels.get("max_actions_fixed"):
        return ("The saved tokenizer (--tokenizer) fixes K: a model with a larger one needs a data folder prepared "
                "without it, and training from scratch." + gap_text)  # fmt: skip
    longest = labels["longest_session_actions"]
    if longest <= MAX_ACTIONS_LIMIT:
        return (f"To keep them, prepare again with --max-actions {longest} (a model generates and scores that many "
                "actions; each one costs time and memory)." + gap_text)  # fmt: skip
    return (gap_text.lstrip() + (" " if gap_text else "")
            + f"No model generates {longest:,} actions: --max-actions is at most {MAX_ACTIONS_LIMIT:,} (--max-actions "
            f"{MAX_ACTIONS_LIMIT} keeps the first {MAX_ACTIONS_LIMIT:,} actions of each session, at a cost in time and "
            "memory per action)" + ("; sessions this long are best cut as said above." if gap_text else "."))


def _session_gap_text(summary: dict[str, Any]) -> str:
    """For an event log: how long the longest session lasts and that a shorter session gap cuts long ones (a
    session runs on while a (user, item) pair's events are at most the gap apart: 3 days by default, Taobao's)."""
    gap = summary.get("rules", {}).get("session_gap_seconds")
    if gap is None or summary.get("preset", {}).get("action_column") is None:  # a view log: a session per row
        return ""
    longest = summary["labels"].get("longest_session_seconds")
    span = ("from its first event to its end action, its logged duration included" if "event_durations" in summary
            else "from its first to its last event")
    lasts = f" (the longest lasts {_span_text(longest)} {span})" if longest is not None else ""
    shorter = 1800 if gap > 1800 else max(1, gap // 4)  # a gap below the one in use (30 min, or a quarter of it)
    return (
        f" Sessions are cut where a (user, item) pair's events are more than session_gap_seconds={gap:g} "
        f"({_span_text(gap)}) apart{lasts}: if this log's sessions are shorter visits than that, prepare again with a "
        f"shorter gap, e.g. --session-gap-seconds {shorter:g} for {_span_text(shorter)} (Python: "
        f"convert_log(session_gap_seconds={shorter:g})), which cuts long sessions into several instead of raising K."
    )


def _span_text(seconds: float) -> str:
    """``seconds`` in the largest unit that keeps it at least 1: ``45 s``, ``30 min``, ``2.5 h``, ``3 days``."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            value = f"{seconds / size:.3g}"
            return f"{value} {'day' if unit == 'days' and value == '1' else unit}"
    return f"{seconds:.3g} s"


def _without_repeats_text(record: dict[str, Any] | None) -> str:
    """What the window leaves out of targets read with ``--drop-repeated-start`` (repeated starts left out)."""
    if record is None:
        return ""
    longer = sum(record["longer_examples"].values())
    if not longer:
        return ("With --drop-repeated-start (targets without repeated start actions, as the paper_inputs recipe reads "
                "them) every session fits. ")
    return (f"With --drop-repeated-start {longer} examples are still longer (the longest has "
            f"{record['longest_session_actions']} actions after the start). ")


# A time split by fractions of the sessions' start-time span that leaves training less than this share of the
# examples is refused (below TINY) or warned about (below SMALL): a few times far from the others stretch the span.
TINY_TRAINING_SHARE, SMALL_TRAINING_SHARE = 0.01, 0.1


def _warn_of_times_in_1970(source: str, preset: LogPreset, span: tuple[float, float]) -> None:
    """Warn when every session of a log read as Unix seconds or milliseconds starts within 1970 (``span``: the first
    and last session start, in seconds): the time column likely holds another unit (a Tmall mmdd date read as seconds
    puts half a year into ten minutes; Unix seconds read as milliseconds, :func:`_seconds_read_as_ms_text`)."""
    first, last = span
    if preset.time_unit not in ("s", "ms") or last >= 365 * 86400:
        return
    where = f"{source}: every session starts in 1970 (the first at {_utc(first)}, the last at {_utc(last)}) with the "
    read = f"time column {preset.time_column!r} read as {preset.time_unit!r}"
    logger.warning(where + read + (_seconds_read_as_ms_text(preset, span) or (
        ": if it holds dates (mmdd) or another unit, set --time-unit (tmall's dates: leave it at the preset's mmdd); "
        "times counted from some start of your own are fine.")))


def _seconds_read_as_ms_text(preset: LogPreset, span: tuple[float, float]) -> str | None:
    """``; read as Unix seconds ...: these look like Unix seconds`` where the time column is read as milliseconds and
    the session starts (``span``, in seconds), read as Unix seconds, lie in :data:`PLAUSIBLE_UNIX_SECONDS`; else
    None."""
    first, last = span[0] * 1000, span[1] * 1000
    low, high = PLAUSIBLE_UNIX_SECONDS
    if preset.time_unit != "ms" or not low <= first <= last < high:
        return None
    return (f"; read as Unix seconds they start from {_utc(first)} to {_utc(last)}: these look like Unix seconds: "
            "pass --time-unit s (time_unit='s'). Read as milliseconds every gap and age is 1000 times too short "
            "(sessions may merge).")


def _check_explicit_boundaries(
    source: str, preset: LogPreset, split_rule: SplitRule, span: tuple[float, float]
) -> None:
    """Refuse a split boundary given in milliseconds (as a ``time_ms`` log counts) instead of Unix seconds: one that
    lies after every session start and, read as milliseconds, among the sessions' starts (from the first to the
    last: a boundary meant to split the log lies there); it put every session in train without a word (before). Warn
    of another boundary after every session start, which leaves the later splits empty: meant when a log is
    prepared for training only (a far boundary, e.g. 1e12, is how to ask for that), a mistake otherwise."""
    first, last = span
    after = [(name, value) for name in ("validation_start", "test_start")
             if (value := getattr(split_rule, name)) is not None and value > last]  # fmt: skip

    def where(name: str, value: float) -> str:
        emptied = "the validation and test splits get" if name == "validation_start" else "the test split gets"
        return (f"{name}={value:.17g} ({_utc(value)}) lies after every session start of the log (the first at "
                f"{_utc(first)}, the last at {_utc(last)}), so {emptied} no example")  # fmt: skip

    for name, value in after:
        # A log whose times count from some start of its own (first session before 1973) is no millisecond case:
        # any boundary after its last start may be meant as "everything in train" (warned below).
        if first >= 1e8 and first <= value / 1000 <= last:
            raise ValueError(
                f"{source}: {where(name, value)}. Boundaries are Unix seconds, whatever the log's time unit "
                f"({preset.time_unit!r} here); read as milliseconds this one is {value / 1000:.17g} s = "
                f"{_utc(value / 1000)}, among the log's times: give the boundaries in Unix seconds "
                "(SplitRule(validation_start=, test_start=), in Python also as datetimes; CLI: --validation-start, "
                "--test-start)."
            )
    if after:
        logger.warning(f"{source}: {where(*after[0])}; if that is not meant, give the boundaries in Unix seconds "
                       "within the log's span (CLI: --validation-start, --test-start).")  # fmt: skip


def _check_time_split(
    input_path: str | Path, examples: dict[str, int], min_history: int, split_rule: SplitRule, span: tuple[float, float],
    preset: LogPreset | None = None,
) -> None:
    """
    Refuse a conversion whose training split holds no example (nothing could be trained on it), or, when the split
    comes from fractions of the sessions' start-time ``span``, only a sliver of them: a few rows with a time far from
    the rest (0, a default for a missing time, another unit) stretch the span, so that nearly every session lands in
    test (before: a model trained on 12 of 9,269 examples, exit 0). Below :data:`SMALL_TRAINING_SHARE`: a warning.
    """
    first, last, name = *span, Path(input_path).name
    total, train = sum(examples.values()), examples["train"]
    stretched = (
        f"sessions start from {_utc(first)} to {_utc(last)} and the split takes fractions of that span: times far "
        "from the others (0 or another default for a missing time, another unit) stretch it. Drop those rows, or "
        "set the boundaries yourself (CLI: --validation-start, --test-start, in Unix seconds)"
    )
    if not train:
        if min_history:
            cause = (
                f"min_history={min_history} keeps only sessions with that many earlier sessions of their user; lower "
                "it (CLI: --min-history)"
            )
        elif first == last:
            flags = "--generic-time-column, --time-unit" if preset is None or preset.name == "generic" else "--time-unit"
            cause = (
                f"every session starts at the same second ({_utc(first)}), so no time split can separate them; check "
                f"the log's time column (CLI: {flags}), or, to put every example in train (no validation or test), "
                "prepare with SplitRule(validation_fraction=0, test_fraction=0) (CLI: --validation-fraction 0 "
                "--test-fraction 0)"
            )
        else:
            given = ", ".join(f"{name}={value:.17g} ({_utc(value)})" for name in ("validation_start", "test_start")
                              if (value := getattr(split_rule, name)) is not None)  # fmt: skip
            cause = (
                "the split boundaries leave the training split no session"
                + (f" ({given}, and sessions start from {_utc(first)} to {_utc(last)}; boundaries are Unix seconds)"
                   if given else "")
                + "; move them later (CLI: --validation-fraction, --test-fraction, --validation-start, --test-start)"
            )
        raise ValueError(f"{name}: no training examples (examples {examples}): {cause}.")
    _warn_of_empty_held_out_splits(name, examples, split_rule, stretched)
    if split_rule.validation_start is not None or min_history or train >= SMALL_TRAINING_SHARE * total:
        return
    message = f"{name}: the time split leaves training {train:,} of {total:,} examples ({examples}): {stretched}."
    if train < TINY_TRAINING_SHARE * total:
        raise ValueError(message)
    logger.warning(message)


def _warn_of_empty_held_out_splits(name: str, examples: dict[str, int], split_rule: SplitRule, stretched: str) -> None:
    """Warn when the rule asks for a validation or test split (a fraction above 0 or a start) and it got no example:
    early stopping, the recipes' choices on validation and every comparison need them (``a2gen compare`` refuses)."""
    asked = {
        "validation": split_rule.validation_fraction > 0 or split_rule.validation_start is not None,
        "test": split_rule.test_fraction > 0 or split_rule.test_start is not None,
    }
    empty = [split for split, wanted in asked.items() if wanted and not examples.get(split)]
    if not empty:
        return
    cause = (
        "the boundaries you set leave them no session (CLI: --validation-start, --test-start, in Unix seconds)"
        if split_rule.validation_start is not None or split_rule.test_start is not None else stretched
    )
    logger.warning(
        f"{name}: the time split leaves {' and '.join(empty)} no example (examples {examples}), although the rule "
        f"asks for {'them' if len(empty) > 1 else 'it'}: {cause}. Training without validation cannot stop early or "
        "choose the recipes' settings, and a comparison needs both."
    )


WORK_FOLDER = "_a2gen_partitions"


def check_output_dir(input_path: Path, output_dir: str | Path) -> None:
    """Refuse an output folder that is the input, lies inside it or around it, is a file, or holds files that a
    prepare did not write (the new dataset replaces the whole folder), or that is the current folder or holds it.
    Links are followed where they point (:func:`~a2gen_hf.output_folders.overlap`), as the write follows them."""
    _check_not_around_the_current_folder(output_dir)
    relation = overlap(output_dir, input_path)
    if relation in (IS, INSIDE):
        raise ValueError(f"The output folder {output_dir} is the input log {input_path} or lies inside it; choose "
                         "an output folder elsewhere.")  # fmt: skip
    if relation == AROUND:
        raise ValueError(f"The input log {input_path} lies inside the output folder {output_dir}, which prepare "
                         "replaces as a whole; choose an output folder that does not contain the input.")  # fmt: skip
    check_replaceable(output_dir, "a2gen prepare", also_ours=(WORK_FOLDER,))


def _check_not_around_the_current_folder(output_dir: str | Path) -> None:
    """Refuse an output folder that is the current folder or holds it (``.``, ``''``, ``..``): prepare replaces it as
    a whole, which deleted the folder the process (and the user's shell) runs in, and then failed on a relative path."""
    try:
        here = real_path(os.getcwd())
    except FileNotFoundError:  # the current folder is gone already: nothing to protect
        return
    relation = overlap(output_dir, here)
    if relation not in (IS, AROUND):
        return
    what = "names the current folder" if str(output_dir) in ("", ".") else (
        f"is the current folder {here}" if relation == IS else f"holds the current folder {here}")
    raise ValueError(
        f"The output folder {str(output_dir)!r} {what}: prepare replaces its output folder as a whole, which would "
        "delete the folder you run in. Give a new folder inside it instead, e.g. data/taobao (CLI: --output)."
    )


def _preset_record(preset: LogPreset) -> dict[str, Any]:
    record = asdict(preset)
    return {key: list(value) if isinstance(value, tuple) else value for key, value in record.items()}


def _dropped_text(bad_rows: BadRowCounter) -> str:
    if not bad_rows.counts:
        return "none dropped"
    return ", ".join(f"{count} {reason}" for reason, count in sorted(bad_rows.counts.items()))


def _why_no_rows_text(bad_rows: BadRowCounter) -> str:
    """`` Why: ...`` for a log that lost every row: each reason in words, then the first message of the most common
    reason, which names its column and what that column must hold (left out for the reasons whose way out the
    message already gives: outside_window, implausible_time)."""
    if not bad_rows.counts:
        return ""
    reasons = sorted(bad_rows.counts.items(), key=lambda pair: (-pair[1], pair[0]))
    why = " Why: " + "; ".join(f"{count} {reason}: {BAD_ROW_REASONS[reason]}" for reason, count in reasons) + "."
    common = reasons[0][0]
    if common in ("outside_window", "implausible_time"):
        return why
    first = "The first row" if len(reasons) == 1 else f"The first {common} row"
    return f"{why} {first}: {bad_rows.first_messages[common]}."


def _dropped_lines(summary: dict[str, Any]) -> list[str]:
    """Per reason of the dropped rows: their share of the rows read and the first message (which says how to keep
    such rows: ``--time-window none``, the action in another case), and the first row of an allowed value written
    otherwise where that is another row. Before, a log of another period lost 62 % of its rows with a count alone."""
    lines = []
    rows_read = summary.get("rows_read") or 0
    fixable = summary.get("dropped_fixable", {})
    for reason, count in summary["rows_dropped"].items():
        share = f" ({share_text(count, rows_read)} of the rows read)" if rows_read else ""
        first = summary.get("first_dropped", {}).get(reason)
        lines.append(f"  {reason}: {count}{share}" + (f"; first: {first}" if first else ""))
        if reason in fixable and fixable[reason]["first"] != first:
            lines.append(f"    {fixable[reason]['rows']} of them an allowed value written otherwise; first: "
                         f"{fixable[reason]['first']}")  # fmt: skip
    return lines


def format_summary(summary: dict[str, Any], warned: bool = False) -> str:
    """Human-readable lines: rows read and dropped, sessions, examples per split, action frequencies. ``warned``
    (``a2gen prepare``, whose warnings reach stderr): the paragraph on sessions longer than the labels keep, which
    :func:`convert_log` logs as a warning, is cut to its counts here instead of being printed twice."""
    lines = [
        f"source: {summary['source']} (preset {summary['preset']['name']})",
        f"rows read: {summary['rows_read']}, sessions: {summary['sessions']}"
        + (f" ({summary['sessions_below_min_history']:,} with fewer than min_history="
           f"{summary['rules']['min_history']} earlier sessions of their user: no example)"
           if summary.get("sessions_below_min_history") else "")
        + (" (line 1 names the preset's columns: read as a header, not as a row)"
           if summary.get("header_line_skipped") else ""),
        *([f"values read without the spaces or tabs around them: {summary['values_trimmed']}"]
          if summary.get("values_trimmed") else []),
        *([f"busiest user: {summary['busiest_user']['user']!r}, {summary['busiest_user']['rows']:,} rows "
           f"({100 * summary['busiest_user']['share']:.1f} % of the rows kept)"]
          if summary.get("busiest_user", {}).get("rows") else []),
        "rows dropped: "
        + (
            ", ".join(f"{reason}={count}" for reason, count in summary["rows_dropped"].items())
            if summary["rows_dropped"]
            else "none"
        ),
        *_dropped_lines(summary),
        "examples: " + ", ".join(f"{split}={count}" for split, count in summary["examples"].items()),
    ]
    for split, frequencies in summary["action_frequencies"].items():
        lines.append(f"actions ({split}): " + ", ".join(f"{name}={count}" for name, count in frequencies.items()))
    lines.append(
        f"time statistics (train): log_mean={summary['time_log_mean']:.4f}, log_std={summary['time_log_std']:.4f}"
    )
    if (tables := format_bucket_record(summary)) is not None:
        lines.append(tables)
    if (durations := event_durations_text(summary)) is not None:
        lines.append(durations)
    if (window := label_window_text(summary)) is not None:
        if warned:
            longer = ", ".join(f"{split} {count}" for split, count in summary["labels"]["longer_examples"].items())
            window = (f"sessions longer than the labels keep: {longer} examples (the warning above says what that "
                      "costs and how to keep their later actions)")  # fmt: skip
        lines.append(window)
    return "\n".join(lines)
