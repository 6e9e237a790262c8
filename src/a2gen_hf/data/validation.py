"""Streaming, validated reading of interaction logs (CSV, JSONL, Parquet) into columnar arrays.

Every row is checked column by column with vectorised pyarrow / numpy operations. A bad row either stops the read
with a :class:`LogFormatError` naming the file, the line, the column and the value (``on_bad_rows="error"``), or is
dropped and counted under a reason (``"skip"``; ``"warn"`` also logs one warning per reason). ``"skip"`` logs a
warning for a reason that drops a noticeable share of the rows read (:data:`NOTICEABLE_SHARE`) or an action value
that is an allowed one in another case or spelling (``Buy`` for ``buy``). Nothing is dropped without being counted.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import stat
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ..tokenization_a2gen import (  # the one spelling of an id (serving hashes ids by it too)
    TRIMMED_CHARACTERS,
    _id_text,
)
from .compressed import (
    COMPRESSION_SUFFIXES,
    check_not_an_archive,
    compression_of,
    compression_of_head,
    decompress_twice_command,
    format_suffix,
    open_log_bytes,
    text_command,
)
from .errors import LogFormatError

if TYPE_CHECKING:
    from .presets import LogPreset

logger = logging.getLogger(__name__)

ON_BAD_ROWS = ("error", "skip", "warn")
# The longest CSV line read (pyarrow parses blocks of 16 MiB; real log lines are tens of bytes).
MAX_LINE_BYTES = 1 << 20

# Why a row can be dropped; the keys are the reasons counted in summaries and in ``a2gen_data.json``.
BAD_ROW_REASONS = {
    "truncated_row": "the row has fewer columns than the file's header (or the preset's column list)",
    "extra_columns": "the row has more columns than the file's header (or the preset's column list)",
    "empty_line": "the line is empty",
    "empty_value": "a user, item, action or time value is empty, or a user or item id is a placeholder for no value "
    "(NULL, \\N, NaN, None, ...: see PLACEHOLDER_TEXTS)",
    "unknown_action": "the action is not one of the preset's action values",
    "bad_number": "a time or duration is not a number",
    "negative_number": "a time or duration is negative",
    "bad_date": "a day-level date is not a valid mmdd date",
    "bad_flag": "a 0/1 flag column holds another value",
    "implausible_time": "the time, read in the preset's unit, lies after the year 5000 (milliseconds read as seconds)",
    "implausible_duration": "the duration, read in the preset's unit, is longer than 1e11 s (some 3,000 years)",
    "outside_window": "the timestamp lies outside the preset's time window",
    "imprecise_id": "a user or item id is a number beyond what its float type holds exactly (2**53 for float64, "
    "2**24 for a Parquet float32, 2**11 for float16): JSON / Parquet hold it as a float (digits lost)",
    "duplicate_event": "the same (user, item, action, time) event appears twice in a session",
    "not_utf8": "the line holds bytes that are not UTF-8",
    "line_too_long": f"the line is longer than {MAX_LINE_BYTES:,} bytes",
    "unbalanced_quote": "the line has an odd number of quote characters (quoted presets only)",
    "carriage_return": "the line holds a carriage return (\\r) that is not part of its line end",
}

# The values a 0/1 flag column may hold, lower-cased: false, true alternately (pandas writes a flag column with a gap
# as 0.0 / 1.0, and a bool column as False / True; a Parquet bool reads as 0 / 1).
FLAG_VALUES = ("0", "1", "0.0", "1.0", "false", "true")

# Times later than this (Unix seconds, the year 5138) are no log's: a time column read in too coarse a unit.
LATEST_PLAUSIBLE_SECONDS = 1e11
# Times that, read as Unix seconds, lie in 2000..2100 (UTC): a log's, not a clock of its own; a column whose values
# fall here once read in another unit holds that unit.
PLAUSIBLE_UNIX_SECONDS = (946_684_800, 4_102_444_800)
_FINER_UNIT = {"s": "ms", "ms": None, "mmdd": None}
# In ``on_bad_rows="skip"``, a reason that drops at least this share of the rows read is warned of (a log of another
# period losing most rows to the time window, a column with an extra field on every third row); below it, only the
# counts in the summary.
NOTICEABLE_SHARE = 0.01
_SKIP_HINT = "Fix or remove the row, or pass on_bad_rows='skip' (CLI: --on-bad-rows skip) to drop and count such rows."
# The one grammar of a number in a log: decimal digits with an optional fraction and exponent, e.g. 1511544070,
# 1.5e9, 2.5 (a sign only for the negative check). Every row is judged by it alone, never by its batch.
_DIGITS = r"([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"
_NUMBER_PATTERN = rf"^\+?{_DIGITS}$"
_NEGATIVE_PATTERN = rf"^-{_DIGITS}$"
_FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


@dataclass
class BadRowCounter:
    """Counts dropped rows per reason (or raises on the first one when ``mode == "error"``).

    Per reason it keeps the first message counted and the line it names; ``fixable_counts`` / ``fixable_messages``
    count (and keep the first message of) the dropped rows whose value is an allowed one written otherwise (an action
    ``Buy`` for ``buy``, ``collect`` for the raw ``fav``): their message says how to keep them.
    """

    source: str
    mode: str
    counts: Counter = field(default_factory=Counter)
    first_messages: dict[str, str] = field(default_factory=dict)
    first_lines: dict[str, int] = field(default_factory=dict)
    fixable_counts: Counter = field(default_factory=Counter)
    fixable_messages: dict[str, str] = field(default_factory=dict)
    fixable_lines: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str, count: int, first_message: str, line: int, skip_advice: bool = True) -> None:
        """Count ``count`` rows dropped for ``reason``; in ``"error"`` mode raise with ``first_message``, ending with
        the advice to skip such rows unless ``skip_advice`` is False (where skipping would drop every row, e.g. a
        time column of date text: the message then says how to fix the column)."""
        if count == 0:
            return
        if self.mode == "error":
            raise LogFormatError(f"{first_message}. {_SKIP_HINT}" if skip_advice else f"{first_message}.")
        self.counts[reason] += int(count)
        self.first_messages.setdefault(reason, first_message)
        self.first_lines.setdefault(reason, int(line))

    def add_fixable(self, reason: str, count: int, first_message: str, line: int) -> None:
        """Note that ``count`` of the rows counted under ``reason`` (by :meth:`add`) hold an allowed value written
        otherwise, ``first_message`` (which says how to keep them) naming the first."""
        if count == 0:
            return
        self.fixable_counts[reason] += int(count)
        self.fixable_messages.setdefault(reason, first_message)
        self.fixable_lines.setdefault(reason, int(line))

    def add_partitions(self, counters: list[BadRowCounter]) -> None:
        """Add the counts of counters that each saw one partition of the rows, as if one counter had seen them all.

        Per reason, the message of the smallest line wins (in ``"error"`` mode it is the one raised).
        """
        for reason in sorted({reason for counter in counters for reason in counter.counts}):
            holders = [counter for counter in counters if reason in counter.counts]
            earliest = min(holders, key=lambda counter: counter.first_lines[reason])
            count = sum(counter.counts[reason] for counter in holders)
            self.add(reason, count, earliest.first_messages[reason], earliest.first_lines[reason])
        for reason in sorted({reason for counter in counters for reason in counter.fixable_counts}):
            holders = [counter for counter in counters if reason in counter.fixable_counts]
            earliest = min(holders, key=lambda counter: counter.fixable_lines[reason])
            count = sum(counter.fixable_counts[reason] for counter in holders)
            self.add_fixable(reason, count, earliest.fixable_messages[reason], earliest.fixable_lines[reason])

    def to_warn_of(self, rows_read: int | None = None) -> list[str]:
        """The reasons a warning names: every reason in ``"warn"`` mode; in ``"skip"`` mode those that drop at least
        :data:`NOTICEABLE_SHARE` of ``rows_read`` (all of them when it is unknown) or any row of an allowed value
        written otherwise."""
        if self.mode == "warn":
            return sorted(self.counts)
        if self.mode != "skip":
            return []
        return sorted(
            reason for reason, count in self.counts.items()
            if self.fixable_counts.get(reason) or not rows_read or count >= NOTICEABLE_SHARE * rows_read
        )  # fmt: skip

    def warning_text(self, reason: str, rows_read: int | None = None) -> str:
        """One paragraph on the rows dropped for ``reason``: how many, their share of ``rows_read``, what the reason
        means, the first message (which says how to keep such rows) and, where the first is not one of them, the
        first row of an allowed value written otherwise."""
        count = self.counts[reason]
        share = f" of the {rows_read} rows read ({share_text(count, rows_read)})" if rows_read else " row(s)"
        text = (
            f"{self.source}: --on-bad-rows {self.mode} dropped {count}{share} as {reason} "
            f"({BAD_ROW_REASONS[reason]}). The first: {self.first_messages[reason]}."
        )
        fixable = self.fixable_counts.get(reason, 0)
        if fixable:
            if self.fixable_messages[reason] != self.first_messages[reason]:
                text += f" {fixable} of them hold an allowed value written otherwise, the first: " \
                        f"{self.fixable_messages[reason]}."
            elif fixable < count:
                text += f" {fixable} of them hold an allowed value written otherwise, as this one."
        if self.mode == "skip":
            text += (" If these rows belong in the data, fix the log or the option the message names and prepare "
                     "again; if they do not, this warning can be ignored (a2gen_data.json keeps the counts).")
        return text

    def finish(self, rows_read: int | None = None) -> None:
        """Log a warning per reason :meth:`to_warn_of` names (``rows_read``: the rows read, for the share)."""
        for reason in self.to_warn_of(rows_read):
            logger.warning(self.warning_text(reason, rows_read))


def share_text(count: int, total: int) -> str:
    """``count`` as a percentage of ``total`` (> 0), one decimal; a share that would read 0.0 % reads ``< 0.1 %``."""
    share = count / total
    return "< 0.1 %" if 0 < share < 0.0005 else f"{share * 100:.1f} %"


def _always(row: int) -> bool:
    return True


@dataclass
class _Problem:
    reason: str
    mask: np.ndarray  # (rows,) bool
    describe: Callable[[int], str]  # row index -> message without location
    # row index -> whether the "error" message may advise skipping such rows (not for date text in a time column)
    skip_advice: Callable[[int], bool] = _always
    # (rows,) bool: the rows whose value is an allowed one written otherwise (an action in another case); None: none
    fixable: np.ndarray | None = None


@dataclass
class ValidatedLog:
    """The valid rows of a log, column by column.

    ``strings`` hold id / side-feature columns as pyarrow arrays, ``numbers`` hold times (Unix seconds, float64),
    durations (seconds, float64), action ids (int64, the preset's vocabulary ids) and flags (bool), all of shape
    ``(rows,)``; ``lines`` holds each row's line (text files) or row number (Parquet), counted from 1.
    ``values_trimmed`` counts the values read without the spaces or tabs around them.
    """

    source: str
    rows_read: int
    strings: dict[str, pa.ChunkedArray]
    numbers: dict[str, np.ndarray]
    lines: np.ndarray
    bad_rows: BadRowCounter
    values_trimmed: int = 0


def detect_format(path: Path, file_format: str | None) -> str:
    if file_format is not None:
        if file_format not in set(_FORMATS.values()):
            raise LogFormatError(f"Unknown input format {file_format!r}; use one of ['csv', 'jsonl', 'parquet'].")
        return file_format
    suffix = format_suffix(path)  # log.csv.gz: CSV (compressed logs read as the plain ones, compressed.py)
    if suffix not in _FORMATS:
        check_not_an_archive(path)  # log.csv.zst, log.zip: how to unpack it, rather than how to name it
        raise LogFormatError(
            f"{path}: cannot tell the format from the extension {suffix!r}; name the file *.csv, *.jsonl or "
            "*.parquet, or pass file_format='csv' | 'jsonl' | 'parquet' (CLI: --format)."
        )
    return _FORMATS[suffix]


_BLANK_BYTES = b" \t\r\n"  # what a blank line holds


class CheckedLines(io.RawIOBase):
    """A text log as bytes for pyarrow, each physical line checked first: a line that is not UTF-8, is longer than
    ``max_line_bytes``, holds a carriage return other than its line end's (where pyarrow would end a row) or (with
    ``quote_char``) holds an odd number of quotes is handed on as an empty line and
    recorded in ``rejected`` (line -> (reason, message)), so that it is counted (or raised) as one bad row with its
    own line number, and every other line keeps its number. Chunks without such a line pass through untouched
    (one UTF-8 decode and a newline scan per 16 MiB). Blank lines that end the file (``...\n\n``, an editor's or a
    concatenation's) are no rows: they are dropped, and counted in ``trailing_blank_lines``."""

    def __init__(self, path: Path, max_line_bytes: int = MAX_LINE_BYTES, quote_char: str | None = None,
                 chunk_bytes: int = 16 << 20, delimiter: str = ",", width: int | None = None):  # fmt: skip
        self.path = path
        self.delimiter = delimiter.encode()
        self.width = width  # columns of a row, where known: tells a line of rows joined by a lone \r
        self.joined: str | None = None  # the message on the first line that holds several rows joined by \r
        self.max_line_bytes = max_line_bytes
        self.quote = quote_char.encode() if quote_char else None
        self.chunk_bytes = chunk_bytes
        self.handle = open_log_bytes(path)
        self.pending = bytearray()  # the start of a line whose end is not read yet
        self.output = bytearray()
        self.line = 1  # the number of the line ``pending`` starts
        self.skipping = False  # inside a line already rejected as too long
        self.eof = False
        self.rejected: dict[int, tuple[str, str]] = {}
        # Blank lines (empty, or only spaces / tabs) not yet followed by a line with content: handed on once one
        # follows (a blank line between rows stays a bad row); those that end the file are no rows and are dropped.
        self.held = bytearray()
        self.trailing_blank_lines = 0
        self.handed_on = False  # whether any line was handed on yet

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.handle.close()
        super().close()

    def readinto(self, buffer) -> int:
        while len(self.output) < len(buffer) and not self.eof:
            self._fill()
        count = min(len(buffer), len(self.output))
        buffer[:count] = self.output[:count]
        del self.output[:count]
        return count

    def _reject(self, reason: str, message: str) -> None:
        self.rejected[self.line] = (reason, f"{self.path.name}:{self.line}: {message}")
        self._emit(b"\n", blank=False)
        self.line += 1

    def _emit(self, lines: bytes, blank: bool | None = None) -> None:
        """Hand on complete ``lines``, holding back the blank lines that end them (see ``held``); ``blank=False``:
        hand them all on (a rejected line, handed on empty)."""
        end = len(lines) if blank is False else len(lines.rstrip(_BLANK_BYTES))
        if not end:
            self.held += lines
            return
        end = lines.find(b"\n", end - 1) + 1 or len(lines)  # the end of the last line with content
        self.handed_on = True
        self.output += self.held
        self.output += lines[:end]
        self.held[:] = lines[end:]

    def _joined_rows(self, text: bytes) -> int:
        """How many rows ``text`` holds when its carriage returns separate complete rows (each piece as many
        columns as a row has); 0 when they do not (a stray \\r inside one row)."""
        pieces = text.removesuffix(b"\r").split(b"\r")
        if self.width is None or self.width < 2 or len(pieces) < 2:
            return 0
        return len(pieces) if all(piece.count(self.delimiter) == self.width - 1 for piece in pieces) else 0

    def _fill(self) -> None:
        data = self.handle.read(self.chunk_bytes)
        if not data:
            self.eof = True
            if self.pending and not self.skipping:
                self._lines(bytes(self.pending) + b"\n")
            self.pending.clear()
            self.trailing_blank_lines = self.held.count(b"\n")  # the file's last lines, all blank: no rows
            self.held.clear()
            return
        if self.skipping:  # the rest of a too-long line: dropped up to its end
            end = data.find(b"\n")
            if end < 0:
                return
            self.skipping, data = False, data[end + 1 :]
        buffer = self.pending + data
        last = buffer.rfind(b"\n")
        complete, self.pending = bytes(buffer[: last + 1]), bytearray(buffer[last + 1 :])
        if complete:
            self._lines(complete)
        if len(self.pending) > self.max_line_bytes:
            self._reject("line_too_long", f"the line is longer than {self.max_line_bytes:,} bytes (its first bytes: "
                         f"{bytes(self.pending[:40])!r}); a log row is a few dozen bytes: the file is damaged here")  # fmt: skip
            self.pending.clear()
            self.skipping = True

    def _lines(self, complete: bytes) -> None:
        """Hand on complete lines (``complete`` ends with a newline), each checked."""
        codes = np.frombuffer(complete, dtype=np.uint8)
        ends = np.flatnonzero(codes == 10)
        starts = np.r_[0, ends[:-1] + 1]
        clean = int((ends - starts).max()) <= self.max_line_bytes
        if clean:  # a carriage return only as the first half of a line's \r\n (the CSV reader ends a row at one)
            returns = np.count_nonzero(codes == 13)
            clean = not returns or returns == np.count_nonzero(codes[ends[ends > 0] - 1] == 13)
        if clean and self.quote is not None:
            clean = not np.any(codes == self.quote[0])
        if clean:
            try:
                complete.decode("utf-8")
            except UnicodeDecodeError:
                clean = False
        if clean:
            self._emit(complete)
            self.line += len(ends)
            return
        for start, end in zip(starts.tolist(), ends.tolist()):  # the slow path, only for a chunk with a bad line
            text = complete[start:end]
            if len(text) > self.max_line_bytes:
                self._reject("line_too_long", f"the line is {len(text):,} bytes long, more than the "
                             f"{self.max_line_bytes:,} a log row may have; the file is damaged here")  # fmt: skip
                continue
            try:
                text.decode("utf-8")
            except UnicodeDecodeError as error:
                self._reject("not_utf8", f"byte {text[error.start : error.start + 1]!r} at column {error.start + 1} is "
                             "not UTF-8; re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)")  # fmt: skip
                continue
            stray = text[:-1].find(b"\r") if text.endswith(b"\r") else text.find(b"\r")
            if stray >= 0 and self.joined is None and (rows := self._joined_rows(text)):
                self.joined = (
                    f"{self.path.name}:{self.line}: the line holds {rows:,} rows separated by carriage returns (\\r) "
                    "alone (the line ends of classic Mac OS and Excel's \"CSV (Macintosh)\", e.g. appended to a file "
                    "with \\n line ends); skipping the line would drop them all. Convert the \\r to newlines first, "
                    "e.g. `sed 's/\\r$//' log.csv | tr '\\r' '\\n' > log_fixed.csv`"
                )
            if stray >= 0:
                self._reject("carriage_return", f"a carriage return (\\r) at column {stray + 1} is not part of the "
                             "line's end, and the CSV reader would end the row there; remove it (e.g. "
                             "`tr -d '\\r' < log.csv > log_fixed.csv` where the line ends are \\r\\r\\n or \\n)")  # fmt: skip
                continue
            if self.quote is not None and text.count(self.quote) % 2:
                self._reject("unbalanced_quote", f"the line has an unbalanced {self.quote.decode()} (text "
                             f"{text[:80]!r}); a quoted value must end on its own line")  # fmt: skip
                continue
            self._emit(complete[start : end + 1])
            self.line += 1


class _CsvBatches:
    """CSV batches with each valid row's line number, rows of the wrong width counted as bad rows."""

    def __init__(self, path: Path, preset: LogPreset, needed: list[str], block_size: int):
        self.path = path
        self.invalid_rows: list[tuple[int, int, int, str]] = []  # (line, expected, actual, text)
        first_fields = _split_line(_first_line(path), preset)
        if preset.columns is None:
            _check_header_line(path, preset)
            # Without the spaces or tabs around them, as values are read ("user_id, item_id, ...", as some writers
            # put a space after each comma); pyarrow gets these names, the header line is skipped.
            names = [name.strip(" \t") for name in first_fields]
            first_line = 2
        else:
            names = list(preset.columns)
            first_line = 2 if _names_the_columns(first_fields, preset) else 1
        _check_columns(path, needed, names, header=preset.columns is None, delimiter=preset.delimiter)
        # A header line in a file the preset reads without one is no event: it is skipped, and the summary says so.
        self.header_skipped = preset.columns is not None and first_line == 2
        # One naming other columns stays a bad row, whose message says what it looks like.
        other_header = preset.columns is not None and not self.header_skipped and _looks_like_a_header(
            first_fields, preset
        )
        self.line_hints = {1: _other_header_hint(first_fields, preset, path)} if other_header else {}
        self.names = names
        self.delimiter = preset.delimiter
        self.quote_char = preset.quote_char
        self.next_line = first_line
        self.lines = CheckedLines(path, quote_char=preset.quote_char, delimiter=preset.delimiter, width=len(names))
        self.row_text = preset.describe_row()
        with self._parse_errors():  # opening already parses the first block
            self.reader = pa_csv.open_csv(
                self.lines,
                read_options=pa_csv.ReadOptions(
                    use_threads=False,  # row numbers reach the invalid-row handler only in single-threaded parsing
                    block_size=block_size,
                    column_names=names,
                    skip_rows=first_line - 1,  # the header line
                ),
                parse_options=pa_csv.ParseOptions(
                    delimiter=preset.delimiter,
                    # Logs without quoting are read without it: a stray quote is a character of its value, and
                    # with quoting every line was checked to hold balanced quotes (CheckedLines): one row per line.
                    quote_char=preset.quote_char or False,
                    newlines_in_values=False,
                    invalid_row_handler=self._on_invalid_row,
                    ignore_empty_lines=False,  # keeps every physical line a row, so line numbers stay exact
                ),
                convert_options=pa_csv.ConvertOptions(
                    include_columns=needed,
                    column_types=dict.fromkeys(needed, pa.string()),
                    strings_can_be_null=False,
                ),
            )

    def _on_invalid_row(self, row) -> str:
        self.invalid_rows.append((row.number, row.expected_columns, row.actual_columns, row.text))
        return "skip"

    @contextmanager
    def _parse_errors(self) -> Iterator[None]:
        # Bytes that are not UTF-8 fail inside pyarrow (even its invalid-row handler cannot decode the row), so they
        # stop the read in every on_bad_rows mode rather than being dropped.
        try:
            yield
        except pa.ArrowInvalid as error:
            if self.lines.eof and not self.lines.handed_on:  # every line blank: dropped as the file's end
                raise LogFormatError(
                    f"{self.path.name}: the file has no rows, only {self.lines.trailing_blank_lines:,} blank "
                    f"line(s); it needs one row per event ({self.row_text})."
                ) from None
            raise LogFormatError(
                f"{self.path.name}: cannot be read as CSV after line {self.next_line - 1} ({error}). Remove or fix the "
                "damaged lines."
            ) from None

    def __iter__(self) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
        with self._parse_errors():
            for batch in self.reader:
                yield batch, self._take_lines(batch.num_rows)

    def _take_lines(self, count: int) -> np.ndarray:
        # Valid rows are the consecutive lines left over once the invalid ones (already reported) are removed.
        invalid = np.array([row[0] for row in self.invalid_rows if row[0] >= self.next_line], dtype=np.int64)
        candidates = np.arange(self.next_line, self.next_line + count + invalid.size, dtype=np.int64)
        lines = candidates[~np.isin(candidates, invalid)][:count]
        if count:
            self.next_line = int(lines[-1]) + 1
        return lines


def _check_text_encoding(path: Path) -> bytes:
    """Refuse a text log that is not UTF-8 text at all, where every line would be a bad row: UTF-16 or UTF-32 (a
    byte order mark, or a NUL byte before or after every character), a Parquet file, other binary data (NUL bytes,
    which no text log holds). The message says what the file is and what to do. Returns its first (uncompressed)
    bytes."""
    with open_log_bytes(path) as handle:
        head = handle.read(64)
    plain = path.name if format_suffix(path) == path.suffix.lower() else f"{path.stem} (decompressed)"
    encoding = _wide_encoding(head)
    if encoding is not None:
        problem = (f"is {encoding} text (its first bytes {head[:8]!r}), not UTF-8; convert it first, e.g. "
                   f"`iconv -f {encoding} -t UTF-8 {plain} > log.utf8{format_suffix(path)}`")  # fmt: skip
    elif head.startswith(b"PAR1"):
        problem = "is a Parquet file; name it *.parquet or pass file_format='parquet' (CLI: --format parquet)"
    elif (inner := compression_of_head(head)) is not None:  # decompressed, still compressed data: a gzip of a gzip
        problem = (f"is compressed twice: once decompressed, it is still {inner} data (its first bytes "
                   f"{head[:8]!r}); decompress it once more, e.g. `{decompress_twice_command(path, inner)}`")  # fmt: skip
    elif b"\x00" in head:
        problem = f"holds NUL bytes (its first bytes {head[:8]!r}): it is binary data, not a text log"
    else:
        return head
    raise LogFormatError(f"{path.name}: the file {problem}.")


def _wide_encoding(head: bytes) -> str | None:
    """The encoding (iconv's name) of text that starts with ``head`` when it is UTF-16 or UTF-32: told by a byte
    order mark, else by a NUL byte after (little-endian) or before (big-endian) every ASCII character."""
    for mark, name in ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"),
                       (b"\xfe\xff", "UTF-16")):  # fmt: skip
        if head.startswith(mark):
            return name
    if len(head) < 4:
        return None
    if not head[1::2].strip(b"\x00"):
        return "UTF-32LE" if not head[1::4].strip(b"\x00") and not head[2::4].strip(b"\x00") else "UTF-16LE"
    if not head[0::2].strip(b"\x00"):
        return "UTF-16BE"
    return None


def _first_line_bytes(path: Path) -> bytes:
    """Line 1 of a text log as bytes (at most one line's bytes; a longer one is no header), without a UTF-8 byte
    order mark (pyarrow skips it in the data too) and its line end (``\n``, ``\r\n``)."""
    with open_log_bytes(path) as handle:
        line = handle.readline(MAX_LINE_BYTES)
    line = line.removeprefix(b"\xef\xbb\xbf").removesuffix(b"\n")
    return line.removesuffix(b"\r")


def _first_line(path: Path) -> str:
    """:func:`_first_line_bytes` as text (a byte that is not UTF-8 replaced)."""
    return _first_line_bytes(path).decode("utf-8", errors="replace")


def _header_name_at(line: bytes, offset: int, delimiter: str) -> str:
    """The column name of the header ``line`` that holds byte ``offset``, for a message."""
    index = line[:offset].count(delimiter.encode())
    return line.split(delimiter.encode())[index].decode("utf-8", errors="replace")


def _check_header_line(path: Path, preset: LogPreset) -> None:
    """Refuse a header (line 1 of a file read with one) that the CSV reader cannot take: a byte that is not UTF-8
    (cp1252 from Excel), a carriage return inside it, an unbalanced quote (a quoted preset). Line 1 is no row that
    ``on_bad_rows`` could skip: before, it was handed on empty and pyarrow failed with a traceback."""
    line = _first_line_bytes(path)
    problem = None
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as error:
        offset = error.start
        problem = (f"byte {line[offset : offset + 1]!r} is not UTF-8; re-encode the file as UTF-8 (e.g. "
                   f"`{text_command(path, 'iconv -f cp1252 -t utf-8', 'utf8_')}`) or rename the column")  # fmt: skip
    if problem is None and (offset := line.find(b"\r")) >= 0:
        fix = text_command(path, "sed '1s/\\r//g'", "fixed_")
        problem = (f"a carriage return (\\r) is not part of the line's end, and the CSV reader would end the header "
                   f"there; remove it (e.g. `{fix}`)")  # fmt: skip
    quote = preset.quote_char.encode() if preset.quote_char else None
    if problem is None and quote is not None and line.count(quote) % 2:
        offset = line.rfind(quote)
        problem = (f"an unbalanced {preset.quote_char} (a quoted name must end on the line); remove it, or read "
                   "quotes as part of names and values (quote_char=None; CLI: --quote-char none)")  # fmt: skip
    if problem is not None:
        name = _header_name_at(line, offset, preset.delimiter)
        raise LogFormatError(f"{path.name}:1: the header line, column {offset + 1} (in the column name {name!r}): "
                             f"{problem}.")  # fmt: skip


def _split_line(line: str, preset: LogPreset) -> list[str]:
    """The fields of one line, split at the preset's delimiter (and, for a quoted preset, unquoted; a line the
    ``csv`` module refuses, e.g. one holding a ``\r``, split at every delimiter: its checks report it)."""
    if preset.quote_char is None:
        return line.split(preset.delimiter)
    try:
        return next(csv.reader([line], delimiter=preset.delimiter, quotechar=preset.quote_char), [""])
    except csv.Error:
        return line.split(preset.delimiter)


def _other_header_hint(fields: list[str], preset: LogPreset, path: Path) -> str:
    """`` (line 1 looks like a header ...)`` for a line 1 that names columns (:func:`_looks_like_a_header`): where it
    names the preset's own columns in another order, that the rows are in that order and how to read them (the
    generic preset's column flags, or reordering the columns; removing the line would read one column as another);
    else how to remove the line (for a compressed log, through its decompressor)."""
    names = [field.strip().strip('"') for field in fields]
    expected = list(preset.columns)
    if sorted(name.lower() for name in names) == sorted(name.lower() for name in expected):
        return (f" (line 1 is a header naming the preset's columns in another order: {names}, where preset "
                f"{preset.name!r} reads {expected} in that order and no header. Do not just remove the line: every "
                "row would be read with its columns swapped. Write the columns in the preset's order (e.g. in pandas "
                f"`frame[{expected}].to_csv(path, header=False, index=False)`), or read the file by its header with "
                "--preset generic and its column flags (--generic-user-column, --generic-item-column, "
                "--generic-time-column, --generic-action-column, ...))")
    return (f" (line 1 looks like a header naming other columns than the preset's {expected}, which reads files "
            f"without one: remove the line, e.g. `{_without_line_1(path)}`)")


def _without_line_1(path: Path) -> str:
    """A shell command that writes the log at ``path`` without its line 1, compressed again as it was."""
    kind = compression_of(path) if path.is_file() else None
    if kind in _RECOMPRESSORS:
        plain = path.stem if path.suffix.lower() in COMPRESSION_SUFFIXES else path.name
        decompress, compress, suffix = _RECOMPRESSORS[kind]
        return f"{decompress} {path.name} | tail -n +2 | {compress} > rows_{plain}{suffix}"
    return f"tail -n +2 {path.name} > rows_{path.name}"


# Compression kind (compressed.compression_of) -> (decompress to stdout, compress stdin, suffix).
_RECOMPRESSORS = {"gzip": ("zcat", "gzip", ".gz"), "bz2": ("bzcat", "bzip2", ".bz2"), "xz": ("xzcat", "xz", ".xz")}


def _looks_like_a_header(fields: list[str], preset: LogPreset) -> bool:
    """Whether the fields of line 1 are column names: as many as the preset's columns, none a number (a row's
    time always is) and none an action value of the preset."""
    names = [field.strip().strip('"') for field in fields]
    return (
        len(names) == len(preset.columns)
        and all(names)
        and not any(re.fullmatch(_NUMBER_PATTERN, name) for name in names)
        and not set(names) & set(preset.action_mapping)
    )


def _names_the_columns(fields: list[str], preset: LogPreset) -> bool:
    """Whether the fields of line 1 of a file the preset reads without a header name its columns (any case)."""
    return [part.strip().strip('"').lower() for part in fields] == [name.lower() for name in preset.columns]


def _shown_names(names: list[str], most: int = 20, width: int = 60) -> str:
    """Column names for a message: at most `most` of them, each cut to `width` characters (a damaged line 1 can be a
    megabyte long)."""
    shown = [name if len(name) <= width else f"{name[:width]}... ({len(name):,} characters)" for name in names[:most]]
    return f"{shown}" + (f" and {len(names) - most:,} more" if len(names) > most else "")


def _check_columns(path: Path, needed: list[str], found: list[str], header: bool, delimiter: str = ",") -> None:
    repeated = sorted({name for name in needed if found.count(name) > 1})
    if repeated:
        raise LogFormatError(
            f"{path.name}: column(s) {repeated} appear more than once among its columns {_shown_names(found)}; which one holds the "
            "values cannot be told. Give every column its own name."
        )
    missing = [name for name in needed if name not in found]
    if missing:
        where = "its header has" if header else "the preset names"
        hint = delimiter_hint(found[0], delimiter) if header and len(found) == 1 else ""  # another delimiter?
        raise LogFormatError(
            f"{path.name}: missing column(s) {missing}; {where} {_shown_names(found)}{hint}. Rename the columns or choose the preset "
            "that matches this file."
        )


def _record_batches(path: Path, file_format: str, preset: LogPreset, needed: list[str], block_size: int):
    """Batches of the needed columns (each with its rows' line numbers) and, for CSV, the invalid-row source."""
    if file_format == "csv":
        batches = _CsvBatches(path, preset, needed, block_size)
        return iter(batches), batches
    if file_format == "parquet":
        iterator = _native_times(_parquet_batches(path, needed, block_size), preset, path.name)
    else:  # JSON has no time type (pyarrow would read ISO-8601 strings as one: they stay text, as in a CSV)
        numbers = [name for name, _ in preset.number_columns()]
        iterator = _with_number_key_advice(_jsonl_batches(path, needed, block_size, numbers), preset)
    return _number_rows(iterator), None


# Ticks per second of Arrow's timestamp and duration units (and of the preset units "s" and "ms").
_ARROW_TICKS_PER_SECOND = {"s": 1, "ms": 1000, "us": 1_000_000, "ns": 1_000_000_000}


def _native_times(batches: Iterator[pa.RecordBatch], preset: LogPreset, source: str) -> Iterator[pa.RecordBatch]:
    """
    A time column that Parquet holds as a native timestamp or date, and a time or duration column held as a native
    duration, rewritten as numbers in the preset's unit of that column (Unix seconds or milliseconds; a timestamp
    without a time zone is read as UTC, a date as midnight UTC of its day, a duration in its own unit), so that its
    rows are read as the log's times and durations (before: a timestamp's every row a bad number, a date an error, a
    duration its raw ticks in the preset's unit: ``duration[us]`` milliseconds read as a thousand times longer).
    """
    for batch in batches:
        for name, unit in preset.number_columns():
            if name in batch.schema.names:
                batch = _native_column(batch, name, unit, name == preset.time_column, source)
        yield batch


def _native_column(batch: pa.RecordBatch, name: str, unit: str, is_time: bool, source: str) -> pa.RecordBatch:
    """``batch`` with its column ``name`` in ``unit`` numbers when it holds timestamps / dates (a time column) or
    durations; as it is otherwise."""
    values = batch.column(name)
    kind = values.type
    if is_time and (pa.types.is_date32(kind) or pa.types.is_date64(kind)):
        values = pc.cast(values, pa.timestamp("ms"))  # midnight UTC of the day: read as a timestamp without zone
    if not (is_time and pa.types.is_timestamp(values.type)) and not pa.types.is_duration(values.type):
        return batch
    if unit not in ("s", "ms"):  # the preset units a native time can be written in
        raise LogFormatError(
            f"{source}: column {name!r} holds dates / timestamps / durations ({kind}), but the preset reads {unit!r} "
            f"numbers; write the column as {unit!r} numbers."
        )
    have, want = _ARROW_TICKS_PER_SECOND[values.type.unit], _ARROW_TICKS_PER_SECOND[unit]
    ticks = pc.cast(values, pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64)  # NaN where null
    nulls = values.is_null().to_numpy(zero_copy_only=False)
    # By a whole factor, so that a whole number of the preset's unit stays exact (21902000 us -> 21902 ms).
    converted = pa.array(ticks * (want // have) if want >= have else ticks / (have // want), mask=nulls)
    return batch.set_column(batch.schema.get_field_index(name), name, converted)


def _parquet_batches(path: Path, needed: list[str], block_size: int) -> Iterator[pa.RecordBatch]:
    try:
        parquet = pq.ParquetFile(path)
        _check_columns(path, needed, parquet.schema_arrow.names, header=True)
        yield from parquet.iter_batches(batch_size=max(block_size // 64, 1024), columns=needed)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as error:  # what pyarrow raises for damaged files
        raise LogFormatError(
            f"{path.name}: not a readable Parquet file ({error}): it is truncated or corrupt (write it again), or it "
            "is no Parquet file at all (a CSV or JSON lines log read as Parquet: give --format csv or jsonl, or name "
            "the file by its real extension)."
        ) from None


def _jsonl_number_schema(path: Path, numbers: list[str], block_size: int) -> pa.Schema | None:
    """The explicit types of a JSON lines log's number columns (time, duration): float64 for each that the first
    block does not hold as text. pyarrow fixes a column's type from the first block (16 MiB) and refuses a later
    block whose values differ: a duration that is null or absent there and a number later ("changed from null to
    number"), or whole there and fractional later ("Failed to convert JSON to int64"); read as float64 throughout
    (whole numbers to 2**53 exactly), nulls and absent keys are unknown. A column written as text stays inferred (its
    numbers are parsed later, as a CSV's are)."""
    try:
        with open_log_bytes(path) as stream:
            first = pa_json.open_json(
                stream, read_options=pa_json.ReadOptions(block_size=block_size, use_threads=False)
            ).schema
    except (pa.ArrowException, OSError, EOFError, LogFormatError):
        return None  # the reading proper reports it
    typed = [name for name in numbers if name not in first.names or not pa.types.is_string(first.field(name).type)]
    return pa.schema([(name, pa.float64()) for name in typed]) if typed else None


def _jsonl_batches(path: Path, needed: list[str], block_size: int, numbers: list[str] = ()) -> Iterator[pa.RecordBatch]:
    schema = _jsonl_number_schema(path, list(numbers), block_size) if numbers else None
    try:
        reader = pa_json.open_json(
            open_log_bytes(path), read_options=pa_json.ReadOptions(block_size=block_size, use_threads=False),
            parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer"),
        )
        _check_columns(path, needed, reader.schema.names, header=True)
        for batch in reader:
            yield batch.select(needed)
    except pa.ArrowInvalid as error:
        line, key, value = _jsonl_error_at(path, str(error))
        text = re.sub(r" in row -?\d+", "", str(error)) if line is not None else str(error)
        raise _JsonKeyChangeError(
            f"{path.name}{'' if line is None else f':{line}'}: not valid JSON lines ({text}). Write one JSON object "
            f"per line, with the same type for a key on every line{_not_json_lines_hint(path, line)}.", key, value,
        ) from None


def _not_json_lines_hint(path: Path, line: int | None) -> str:
    """``; line 1 does not look like JSON lines (it starts with '1', not '{') ...`` where the line named is no JSON
    object at all (a CSV read as JSON lines); "" otherwise."""
    if line is None:
        return ""
    with open_log_bytes(path) as handle:
        for number, raw in enumerate(handle, 1):
            if number == line:
                text = raw.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
                break
        else:
            return ""
    if not text or text.startswith("{"):
        return ""
    return (f"; line {line} does not look like JSON lines at all (it starts with {text[:1]!r}, where a JSON object "
            f"starts with '{{': {text[:60]!r}): if the file is a CSV log, read it so with file_format='csv' (CLI: "
            "--format csv) and the preset of its columns, or name it *.csv")


class _JsonKeyChangeError(LogFormatError):
    """Not valid JSON lines; ``key`` and ``value``: the key whose type changed and its value on the line named (None
    where the error is another, or the line was not found)."""

    def __init__(self, message: str, key: str | None, value: object):
        super().__init__(message)
        self.key, self.value = key, value


def _with_number_key_advice(batches: Iterator[pa.RecordBatch], preset: LogPreset) -> Iterator[pa.RecordBatch]:
    """``batches`` of a JSON lines log, whose error for a time or duration key that turns from numbers into text
    (or another kind) says what the column must hold, and for date text how to convert it, as a CSV's would."""
    try:
        yield from batches
    except _JsonKeyChangeError as error:  # raised as the documented LogFormatError, with the advice if any
        raise LogFormatError(f"{error}{_number_key_advice(error.key, error.value, preset)}") from None


def _number_key_advice(key: str | None, value: object, preset: LogPreset) -> str:
    """`` Key 'timestamp' (the time column) holds ...; times must be numbers ...`` for the ``value`` of a time or
    duration ``key`` that is no number; "" for another key or value."""
    numbers = dict(preset.number_columns())
    if key not in numbers or value is None or _json_kind_is(value, "number"):
        return ""
    role = "time" if key == preset.time_column else "duration"
    text = value if isinstance(value, str) else json.dumps(value)
    return (f" Key {key!r} (the {role} column) holds {json.dumps(value)} here"
            f"{number_text_hint(text, key, preset, skip_note=False)}.")


# pyarrow's names of JSON kinds (its "changed from number to string") -> Python's types of json.loads' values.
_JSON_KINDS = {"number": (int, float), "string": (str,), "boolean": (bool,), "null": (type(None),), "object": (dict,),
               "array": (list,)}  # fmt: skip


def _json_kind_is(value: object, kind: str) -> bool:
    if isinstance(value, bool) and kind == "number":  # a bool is an int to Python, not to JSON
        return False
    return isinstance(value, _JSON_KINDS.get(kind, ()))


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _refuse_repeated_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object's pairs as a dict, refused (ValueError) where a key appears twice (pyarrow refuses those; json
    keeps the last), so that the line pyarrow means is found."""
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a key appears twice")
    return dict(pairs)


def _jsonl_error_at(path: Path, message: str) -> tuple[int | None, str | None, object]:
    """The file's line (from 1) that pyarrow's JSON error is about, and for a key whose type changed the key and its
    value there (else None, None): pyarrow's "in row N" counts from the start of its current block (16 MiB), from 0.
    Found by reading the lines again (only on this error): the first that is not a JSON object, or, for
    "Column(/key) changed from A to B", the first whose key holds a B. Line None: not found."""
    change = re.search(r"Column\(/([^)/]*)\) changed from \w+ to (\w+)", message)
    twice = "specified twice" in message  # a key twice in one object: json.loads would keep the last
    with open_log_bytes(path) as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw, parse_constant=_refuse_constant,
                                   object_pairs_hook=_refuse_repeated_keys if twice else None)
            except ValueError:  # UnicodeDecodeError too
                return number, None, None
            if not isinstance(value, dict):
                return number, None, None
            if change is not None and change[1] in value and _json_kind_is(value[change[1]], change[2]):
                return number, change[1], value[change[1]]
    return None, None, None


def _number_rows(batches: Iterator[pa.RecordBatch]) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    next_row = 1
    for batch in batches:
        yield batch, np.arange(next_row, next_row + batch.num_rows, dtype=np.int64)
        next_row += batch.num_rows


@dataclass
class ValidatedBatch:
    """The valid rows of one batch of a log: ``strings`` / ``numbers`` / ``lines`` as in :class:`ValidatedLog`."""

    strings: dict[str, pa.Array]
    numbers: dict[str, np.ndarray]
    lines: np.ndarray

    def __len__(self) -> int:
        return len(self.lines)


def _log_path(path: object) -> Path:
    """``path`` as a :class:`Path`; anything but one file's path (a DataFrame, a ``datasets.Dataset``, a list of
    files) is refused saying what is read and how to get such a file."""
    if isinstance(path, (str, os.PathLike)):
        return Path(path)
    kind = f"{type(path).__module__}.{type(path).__qualname__}"
    if isinstance(path, (list, tuple, set)):
        how = "for several files, convert each on its own, or write their rows into one file first"
    elif hasattr(path, "to_parquet"):  # a pandas DataFrame, a datasets.Dataset, a polars DataFrame
        how = "for rows in memory, write them to a file first (e.g. `frame.to_parquet('log.parquet')`) and pass its path"
    else:
        how = "pass the path of the log file"
    raise TypeError(f"The log must be the path (a str or os.PathLike) of one CSV, JSONL or Parquet file, not {kind}; "
                    f"{how}.")  # fmt: skip


def _not_a_regular_file(path: Path) -> str:
    """The message for a log that exists but is no regular file: a pipe (``/dev/stdin``, ``<(zcat ...)``, a FIFO),
    a terminal or another device, a socket. Before: "does not exist"."""
    mode = path.stat().st_mode
    kind = ("a pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a terminal or another device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "no regular file")  # fmt: skip
    return (
        f"Log file {str(path)!r} is {kind}, not a regular file, and prepare reads the log more than once (its size, "
        "its encoding and line ends, then its rows). Write it to a file first (e.g. `zcat log.csv.gz > log.csv`), or "
        "pass the compressed file itself: a .gz, .bz2 or .xz log is read as it is."
    )


class ValidatedBatches:
    """Streaming form of :func:`read_validated_log`: iterating yields one :class:`ValidatedBatch` per batch read.

    Memory holds one batch at a time. Bad rows are counted in ``bad_rows`` (or raise, in ``"error"`` mode) with the
    file's real line numbers as the batches go by; ``rows_read`` and ``bad_rows`` are complete once the iteration
    ends. ``bad_rows.finish(rows_read)`` (the warnings of ``"warn"`` and ``"skip"`` mode) is left to the caller,
    which may still count more bad rows (duplicate events). File-level problems (missing file, empty file, unknown
    format) raise here.
    """

    def __init__(
        self,
        path: str | Path,
        preset: LogPreset,
        on_bad_rows: str = "error",
        file_format: str | None = None,
        block_size: int = 16 << 20,
        progress: bool | None = None,
    ):
        path = _log_path(path)
        if on_bad_rows not in ON_BAD_ROWS:
            raise ValueError(f"on_bad_rows={on_bad_rows!r} is unknown; use one of {list(ON_BAD_ROWS)}.")
        if path.is_dir():
            raise LogFormatError(
                f"Log file {str(path)!r} is a folder, not a file; a log is one CSV, JSONL or Parquet file. For a "
                "folder of Parquet parts, write them into one file first, e.g. `pyarrow.parquet.write_table("
                "pyarrow.parquet.read_table(folder), 'log.parquet')`; for several text files, concatenate them "
                "(without their repeated headers)."
            )
        if path.exists() and not path.is_file():
            raise LogFormatError(_not_a_regular_file(path))
        if not path.is_file():
            raise FileNotFoundError(f"Log file {str(path)!r} does not exist.")
        if path.stat().st_size == 0:
            raise LogFormatError(
                f"{path.name}: the file is empty; it needs one row per event ({preset.describe_row()})."
            )
        self.path = path
        self.preset = preset
        self.file_format = detect_format(path, file_format)
        if self.file_format != "parquet" and not _check_text_encoding(path):  # so is a zip or zstd file, saying how
            raise LogFormatError(  # to unpack it; a compressed file of no bytes is empty too
                f"{path.name}: the file is empty once decompressed; it needs one row per event "
                f"({preset.describe_row()})."
            )
        self.block_size = block_size
        self.progress = progress
        self.source = path.name
        self.bad_rows = BadRowCounter(path.name, on_bad_rows)
        self.rows_read = 0
        self.header_skipped = False  # line 1 named the columns of a preset that reads header-less files
        self.values_trimmed = 0  # values read without the spaces or tabs around them

    def __iter__(self) -> Iterator[ValidatedBatch]:
        path, preset, bad_rows = self.path, self.preset, self.bad_rows
        needed = preset.needed_columns()
        batches, csv_source = _record_batches(path, self.file_format, preset, needed, self.block_size)
        self.header_skipped = csv_source is not None and csv_source.header_skipped
        string_names = preset.string_columns()
        reported_invalid = 0
        with tqdm(desc=f"reading {path.name}", unit=" rows", disable=self.progress is False or None) as bar:
            for batch, lines in batches:
                _refuse_joined_rows(csv_source)
                self.rows_read += batch.num_rows
                bar.update(batch.num_rows)
                columns, problems, trimmed = _validate_batch(batch, preset, path.name)
                self.values_trimmed += trimmed
                if csv_source is not None and csv_source.lines.rejected:
                    problems = _rejected_line_problems(csv_source.lines.rejected, lines) + problems
                flagged = np.logical_or.reduce([problem.mask for problem in problems])
                if csv_source is not None:
                    # Rows of the wrong width before this batch's first bad row come first (in "error" mode they
                    # raise).
                    first_bad = int(lines[flagged][0]) if flagged.any() else int(lines[-1]) + 1 if lines.size else 0
                    reported_invalid = _report_invalid_rows(csv_source, reported_invalid, bad_rows, first_bad)
                hints = csv_source.line_hints if csv_source is not None else {}
                first_rows = self.rows_read == batch.num_rows and (csv_source is None or not csv_source.invalid_rows)
                keep = _apply_problems(problems, flagged, lines, bad_rows, path.name, hints, first_rows)
                if csv_source is not None and lines.size:
                    reported_invalid = _report_invalid_rows(csv_source, reported_invalid, bad_rows, int(lines[-1]) + 1)
                keep_mask = pa.array(keep)
                yield ValidatedBatch(
                    strings={name: columns[name].filter(keep_mask) for name in string_names},
                    numbers={name: values[keep] for name, values in columns.items() if name not in string_names},
                    lines=lines[keep],
                )
            _refuse_joined_rows(csv_source)
            if csv_source is not None:
                _report_invalid_rows(csv_source, reported_invalid, bad_rows, None, self.rows_read)
                self.rows_read += len(csv_source.invalid_rows)
        if self.rows_read == 0:
            raise LogFormatError(f"{path.name}: the file has no rows ({preset.describe_row()}).")


def _refuse_joined_rows(csv_source: _CsvBatches | None) -> None:
    """A line holding many rows joined by lone carriage returns raises in every ``on_bad_rows`` mode: as one bad
    row it would drop them all (and \\r removed, they would be one row)."""
    if csv_source is not None and csv_source.lines.joined is not None:
        raise LogFormatError(f"{csv_source.lines.joined}.")


def read_validated_log(
    path: str | Path,
    preset: LogPreset,
    on_bad_rows: str = "error",
    file_format: str | None = None,
    block_size: int = 16 << 20,
    progress: bool | None = None,
) -> ValidatedLog:
    """Read ``path`` in batches of about ``block_size`` bytes and validate every row against ``preset``."""
    stream = ValidatedBatches(path, preset, on_bad_rows, file_format, block_size, progress)
    batches = list(stream)
    stream.bad_rows.finish(stream.rows_read)
    number_names = batches[0].numbers if batches else {}
    return ValidatedLog(
        source=stream.source,
        rows_read=stream.rows_read,
        strings={
            name: pa.chunked_array([batch.strings[name] for batch in batches], type=pa.string())
            for name in preset.string_columns()
        },
        numbers={name: np.concatenate([batch.numbers[name] for batch in batches]) for name in number_names},
        lines=np.concatenate([batch.lines for batch in batches]) if batches else np.empty(0, dtype=np.int64),
        bad_rows=stream.bad_rows,
        values_trimmed=stream.values_trimmed,
    )


def _rejected_line_problems(rejected: dict[int, tuple[str, str]], lines: np.ndarray) -> list[_Problem]:
    """The lines :class:`CheckedLines` handed on empty, as problems of their own reasons (ahead of "empty_line")."""
    problems = []
    for reason in sorted({reason for reason, _ in rejected.values()}):
        mask = np.array([rejected.get(line, ("",))[0] == reason for line in lines.tolist()], dtype=bool)
        problems.append(_Problem(reason, mask, lambda i: rejected[int(lines[i])][1].split(": ", 1)[1]))
    return problems


_OTHER_DELIMITERS = (",", "\t", ";", "|")


def delimiter_hint(text: str, delimiter: str, columns: int | None = None) -> str:
    """`` (... another delimiter ...)`` when ``text``, which holds no ``delimiter``, splits at a common other one
    (into exactly ``columns`` fields when given: a tab- or semicolon-separated file read with a comma); else ``""``."""
    for other in _OTHER_DELIMITERS:
        fields = text.count(other) + 1
        if other != delimiter and delimiter not in text and fields > 1 and columns in (None, fields):
            shown = "\\t" if other == "\t" else other
            return (
                f" (the line splits into {fields} columns at {other!r}: the file looks {other!r}-separated; read it "
                f"so with delimiter={other!r}, CLI: --delimiter '{shown}')"
            )
    return ""


_QUOTING_HINT = " (the file quotes its values: read it with quote_char='\"', CLI: --quote-char '\"')"


def quoting_hint(text: str, quote_char: str | None) -> str:
    """:data:`_QUOTING_HINT` when ``text`` (a value, or a line of several) holds double quotes that a log read
    without quoting takes as part of its values; else ``""``."""
    return _QUOTING_HINT if quote_char is None and text.count('"') >= 2 else ""


def _case_hint(value: str, allowed: list[str], mapping: dict[str, str] | None = None) -> str:
    """`` (... case ...)`` when ``value`` is an allowed value written in another case (``PV`` for ``pv``), or (given
    the preset's ``mapping``, raw value -> action) the name of the action that allowed values map to (``collect`` for
    ``fav``); else ``""``."""
    same = [name for name in allowed if name.casefold() == value.casefold()]
    if same:
        return (f" ({value!r} is {same[0]!r} in another case: the values are matched exactly; write the column in "
                "the allowed values' case, or, with --preset generic, map the raw values with "
                "--generic-action-mapping)")
    raw = [name for name in allowed if (mapping or {}).get(name, "").casefold() == value.casefold()]
    if not raw:
        return ""
    return (f" ({value!r} is the name of the action that the raw value {raw[0]!r} maps to: the column must hold the "
            f"raw values; write {raw[0]!r} for it, or, with --preset generic, map the log's values with "
            "--generic-action-mapping)")


def _fixable_actions(values: pa.Array, unknown: np.ndarray, allowed: list[str], mapping: dict[str, str]) -> np.ndarray:
    """(rows,) bool: the unknown actions among ``values`` that :func:`_case_hint` says how to keep (an allowed value in
    another case, or the name of an action that an allowed value maps to); decided once per distinct value."""
    if not unknown.any():
        return np.zeros(unknown.shape, dtype=bool)
    distinct = pc.unique(values.filter(pa.array(unknown))).to_pylist()
    hinted = [text for text in distinct if text is not None and _case_hint(text, allowed, mapping)]
    if not hinted:
        return np.zeros(unknown.shape, dtype=bool)
    return unknown & pc.fill_null(pc.is_in(values, value_set=pa.array(hinted, type=pa.string())), False).to_numpy(
        zero_copy_only=False
    )


def _all_bad(rows: int) -> str:
    """The end of an "error" message when every row read so far is bad (instead of the advice to skip them)."""
    return (f" (all {rows:,} rows read so far are bad rows: on_bad_rows='skip' would drop every one, so fix the file "
            "instead)")  # fmt: skip


def _report_invalid_rows(
    source: _CsvBatches, done: int, bad_rows: BadRowCounter, before: int | None, rows_read: int = 1
) -> int:
    """Report the not-yet-reported rows of the wrong width whose line is < ``before`` (all when None). ``rows_read``:
    the rows of the right width read so far (none: where every row read is of the wrong width, the "error" message
    does not advise skipping them)."""
    pending = [row for row in source.invalid_rows[done:] if before is None or row[0] < before]
    all_bad = _all_bad(len(source.invalid_rows)) if not rows_read and len(source.invalid_rows) > 1 else ""
    for line, expected, actual, text in pending:
        if not text.strip(TRIMMED_CHARACTERS + "\r\n"):  # only spaces / tabs: a blank line, as an empty one is
            bad_rows.add("empty_line", 1, f"{source.path.name}:{line}: the line is empty (it holds only spaces or "
                         f"tabs: {text[:20]!r})", line)  # fmt: skip
        elif actual < expected:
            hint = delimiter_hint(text, source.delimiter, expected)
            message = (
                f"{source.path.name}:{line}: truncated row: {actual} of {expected} columns, column "
                f"{source.names[actual]!r} is missing (text {text!r}){hint}"
            )
            # skipping would drop every row
            bad_rows.add("truncated_row", 1, message + all_bad, line, skip_advice=not hint and not all_bad)
        else:
            message = (
                f"{source.path.name}:{line}: {actual} columns where {expected} are expected (text {text!r})"
                + quoting_hint(text, source.quote_char) + _trailing_delimiter_hint(source, text, actual - expected)
            )
            bad_rows.add("extra_columns", 1, message + all_bad, line, skip_advice=not all_bad)
    return done + len(pending)


def _trailing_delimiter_hint(source: _CsvBatches, text: str, extra: int) -> str:
    """`` (the line ends with a delimiter ...)`` when ``text`` has one column too many because it ends with the
    delimiter (as some writers end every row); else ``""``."""
    if extra != 1 or not text.rstrip("\r").endswith(source.delimiter):
        return ""
    shown = {"\t": "\\t", "|": "\\|"}.get(source.delimiter, source.delimiter)
    command = text_command(source.path, f"sed -E 's/{shown}(\\r?)$/\\1/'", "fixed_")
    return (f" (the line ends with the delimiter {source.delimiter!r}, which makes an empty extra column; remove the "
            f"delimiter at the end of the lines, e.g. `{command}`)")


def _apply_problems(
    problems: list[_Problem], flagged: np.ndarray, lines: np.ndarray, bad_rows: BadRowCounter, name: str,
    line_hints: dict[int, str], first_rows: bool = False,
) -> np.ndarray:
    """Count (or raise on) the problems of one batch, a row's first problem winning; return the rows to keep.
    ``line_hints`` (line -> text) ends the message of a problem on that line. ``first_rows``: the batch holds every
    row read so far, so that when each of them is bad the "error" message does not advise skipping them."""

    def message(problem: _Problem, row: int) -> str:
        return f"{name}:{lines[row]}: {problem.describe(row)}{line_hints.get(int(lines[row]), '')}"

    if bad_rows.mode == "error" and flagged.any():
        first = int(np.argmax(flagged))
        problem = next(problem for problem in problems if problem.mask[first])
        text, advice = message(problem, first), problem.skip_advice(first)
        if advice and first_rows and flagged.size > 1 and flagged.all():
            text, advice = text + _all_bad(flagged.size), False
        bad_rows.add(problem.reason, 1, text, lines[first], advice)
    counted = np.zeros(flagged.shape, dtype=bool)
    for problem in problems:
        new = problem.mask & ~counted
        if new.any():
            first = int(np.argmax(new))
            bad_rows.add(problem.reason, int(new.sum()), message(problem, first), lines[first])
            if problem.fixable is not None and (fixable := new & problem.fixable).any():
                first = int(np.argmax(fixable))
                bad_rows.add_fixable(problem.reason, int(fixable.sum()), message(problem, first), lines[first])
        counted |= new
    return ~flagged


def _as_strings(values: pa.Array, name: str, source: str, role: str = "value") -> pa.Array:
    """A column's values as strings; a column of lists, structs or other values that are no string or number is
    refused naming it. ``role`` is ``"id"`` for user and item columns, ``"side"`` for side-feature columns, ``"flag"``
    for 0/1 flag columns.

    An id is spelled as the tokenizer spells it at serving (:func:`~a2gen_hf.tokenization_a2gen._id_text`, the one
    rule): a float id of a whole number as that integer (``10000000005.0`` -> ``"10000000005"``, as pandas writes an
    integer column with gaps; pyarrow's own text would be ``"1.0000000005e+10"``), another float as Python writes it,
    NaN / inf as missing (null); a boolean user or item column is refused (``true`` / ``false`` would merge every user
    or item into two), a boolean side feature (a two-valued category such as ``is_promoted``) reads as ``"true"`` /
    ``"false"``, as before. A boolean flag column reads as ``"0"`` / ``"1"``. Categorical (dictionary) columns read as
    their values.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if values.type == pa.string():
        return values
    if pa.types.is_boolean(values.type):
        if role == "flag":
            return pc.cast(pc.cast(values, pa.int8()), pa.string())
        if role == "id":
            raise LogFormatError(
                f"{source}: column {name!r} holds booleans (true / false), which are no ids: every row would share one "
                "of two values, merging the users or items (the tokenizer refuses a bool id too); write the column as "
                "string or integer ids."
            )
    if role in ("id", "side") and pa.types.is_floating(values.type):
        return _float_id_texts(values)
    if role in ("id", "side") and pa.types.is_decimal(values.type):
        return _decimal_id_texts(values)
    try:
        return pc.cast(values, pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid) as error:
        raise LogFormatError(
            f"{source}: column {name!r} holds values of type {values.type}, which do not read as text ({error}); a "
            "log's columns hold strings or numbers: write that column as such."
        ) from None


def _float_id_texts(values: pa.Array) -> pa.Array:
    """Float ids as :func:`~a2gen_hf.tokenization_a2gen._id_text` spells them; NaN and inf, which are no id, become
    null (an empty value). A whole number below 2**53 (what pandas writes for an integer column with gaps) is that
    integer, which pyarrow spells (float -> int64 -> text, as ``_id_text`` does: ``str(int(value))``); any other
    value is asked of ``_id_text`` once per distinct value (a few microseconds each)."""
    floats = pc.cast(values, pa.float64())
    finite = pc.fill_null(pc.is_finite(floats), False)
    whole = pc.and_(finite, pc.and_(pc.equal(pc.floor(floats), floats), pc.less(pc.abs(floats), _EXACT_FLOAT_LIMIT)))
    integers = pc.cast(pc.cast(pc.if_else(whole, floats, 0.0), pa.int64()), pa.string())
    texts = pc.if_else(whole, integers, pa.scalar(None, pa.string()))
    rest = pc.and_(finite, pc.invert(whole))
    if not pc.any(rest).as_py():
        return texts
    encoded = pc.dictionary_encode(pc.filter(floats, rest))
    spelled = pa.array([_id_text(value) for value in encoded.dictionary.to_pylist()], type=pa.string())
    return pc.replace_with_mask(texts, rest, pc.take(spelled, encoded.indices))


def _decimal_id_texts(values: pa.Array) -> pa.Array:
    """Decimal ids (a Parquet ``decimal128(20, 2)`` column) spelled as the same number in an integer or float column
    is: without the trailing zeros of the fraction and without a bare point (``2156592.00`` -> ``"2156592"``, as an
    int64 column and the tokenizer at serving spell it; ``12.50`` -> ``"12.5"``, as a float 12.5 is). pyarrow's own
    text keeps the column's scale, so one item hashed to another id than in an integer column."""
    texts = pc.cast(values, pa.string())
    if values.type.scale <= 0:
        return texts
    return pc.replace_substring_regex(pc.replace_substring_regex(texts, r"(\.[0-9]*?)0+$", r"\1"), r"\.$", "")


# JSON and Parquet numbers beyond 2**53 that are read as floats have lost their last digits: as ids they would merge.
_EXACT_FLOAT_LIMIT = 2.0**53
# The largest whole number below which every integer is exact, per float width (a float32 holds 24 bits of mantissa:
# 30000001 reads as 30000000, so ids above 2**24 merge in pairs).
_EXACT_INTEGER_LIMITS = {16: 2.0**11, 32: 2.0**24, 64: _EXACT_FLOAT_LIMIT}


def exact_integer_limit(kind: pa.DataType) -> float:
    """The magnitude from which a float of type ``kind`` no longer holds every integer (2**24 for float32)."""
    return _EXACT_INTEGER_LIMITS.get(kind.bit_width, _EXACT_FLOAT_LIMIT)


def _float_name(kind: pa.DataType) -> str:
    """``float32`` for pyarrow's ``float`` (its own name of a float32 reads as a float64 to most users)."""
    return f"float{kind.bit_width}" if pa.types.is_floating(kind) else str(kind)


def _limit_text(kind: pa.DataType) -> str:
    return f"2**{int(np.log2(exact_integer_limit(kind)))}"


def _imprecise_ids(values: pa.Array) -> np.ndarray:
    """Rows of a floating id column whose value is too large for its float type to hold every digit (2**53 for a
    float64, 2**24 for a float32, 2**11 for a float16: before, the float64 limit was used for every width, and a
    float32 column's ids above 2**24 merged without a word)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if not pa.types.is_floating(values.type):
        return np.zeros(len(values), dtype=bool)
    magnitude = np.abs(np.asarray(values.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.float64))
    return magnitude >= exact_integer_limit(values.type)


def _refuse_coarse_float_numbers(values: pa.Array, name: str, role: str, unit: str, source: str) -> None:
    """Refuse a time or duration column that Parquet holds as a float narrower than float64 (float32, float16)
    where its values are beyond what that width holds to the unit: a float32 of Unix seconds (about 1.5e9) is
    rounded to 128 s, which moved times by up to a minute without a word (and made false duplicate events)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    kind = values.type
    if not pa.types.is_floating(kind) or kind.bit_width >= 64:
        return
    magnitude = np.abs(np.asarray(values.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.float64))
    magnitude = magnitude[np.isfinite(magnitude)]
    limit = exact_integer_limit(kind)
    if not magnitude.size or magnitude.max() < limit:
        return
    largest = float(magnitude.max())
    step = float(np.spacing(np.array(largest, dtype=kind.to_pandas_dtype())))
    raise LogFormatError(
        f"{source}: column {name!r} (the {role} column) is stored as {_float_name(kind)}, which holds whole numbers "
        f"exactly only below {_limit_text(kind)}; its values reach {largest:.6g} {unit}, where {_float_name(kind)} "
        f"steps by {step:g} {unit}: "
        f"the {role}s were rounded when the file was written. Write the column as int64 or float64 (e.g. in pandas "
        f"`frame[{name!r}] = frame[{name!r}].astype('int64')` from the original values, before `to_parquet`)."
    )


def _trim_spaces(values: pa.Array) -> tuple[pa.Array, int]:
    """``values`` without the spaces, tabs and invisible characters around them (:data:`TRIMMED_CHARACTERS`; ``1, 2,
    pv`` reads as ``1,2,pv``, a no-break or zero-width space before an id is no part of it), and how many values had
    some."""
    trimmed = pc.utf8_trim(values, characters=TRIMMED_CHARACTERS)
    changed = pc.sum(pc.not_equal(pc.binary_length(values), pc.binary_length(trimmed))).as_py()
    return trimmed, int(changed or 0)


# A number as ids spell it: digits with an optional fraction (``007``, ``7.0``, ``7``).
_NUMERIC_ID = r"^[0-9]+(\.[0-9]*)?$"


def spelled_twice(values: pa.Array) -> tuple[int, str]:
    """Among the distinct ids ``values``, how many numbers are spelled in more than one way once leading zeros and a
    fraction of zeros are ignored (``007``, ``7`` and ``7.0`` are one number), and an example (``'007' and '7'``).
    Such ids are not merged (a log may mean zero-padded codes as distinct ids): :func:`convert_log` warns of them."""
    numeric = values.filter(pc.fill_null(pc.match_substring_regex(values, _NUMERIC_ID), False))
    if len(numeric) < 2:
        return 0, ""
    canonical = pc.replace_substring_regex(numeric, r"(\.[0-9]*?)0+$", r"\1")  # 7.50 -> 7.5, 7.0 -> 7.
    canonical = pc.replace_substring_regex(canonical, r"\.$", "")
    canonical = pc.replace_substring_regex(canonical, r"^0+([0-9])", r"\1")  # 007 -> 7, 0 stays 0
    table = pa.table({"canonical": canonical, "raw": numeric}).group_by("canonical").aggregate(
        [("raw", "count_distinct"), ("raw", "distinct")])  # fmt: skip
    spellings = np.asarray(table.column("raw_count_distinct").to_numpy(zero_copy_only=False))
    twice = np.flatnonzero(spellings > 1)
    if not twice.size:
        return 0, ""
    example = sorted(table.column("raw_distinct")[int(twice[0])].as_py())
    return int(twice.size), " and ".join(repr(text) for text in example[:3])


def _validate_batch(
    batch: pa.RecordBatch, preset: LogPreset, source: str
) -> tuple[dict[str, object], list[_Problem], int]:
    """Convert one batch column by column; return the converted columns, the problems found and the number of
    values read without the spaces around them."""
    columns: dict[str, object] = {}
    problems: list[_Problem] = []
    rows = batch.num_rows
    raw, trimmed = {}, 0
    roles = {**dict.fromkeys(preset.string_columns(), "id"), **dict.fromkeys(preset.side_feature_columns, "side"),
             **dict.fromkeys(preset.flag_columns, "flag")}  # fmt: skip
    numbers = dict(preset.number_columns())
    for name in preset.needed_columns():
        if name in numbers:
            role = "time" if name == preset.time_column else "duration"
            _refuse_coarse_float_numbers(batch.column(name), name, role, numbers[name], source)
        raw[name], count = _trim_spaces(_as_strings(batch.column(name), name, source, roles.get(name, "value")))
        trimmed += count
    for name in preset.side_feature_columns:  # a placeholder category is an unknown one, as an empty cell is
        raw[name] = pc.if_else(pa.array(_placeholder_mask(raw[name])), "", raw[name])
    empty = {name: _empty_mask(values) for name, values in raw.items()}
    all_empty = np.logical_and.reduce(list(empty.values())) if raw else np.zeros(rows, dtype=bool)
    problems.append(_Problem("empty_line", all_empty, lambda i: "the line is empty"))

    def value(name: str, i: int) -> str:
        return raw[name][i].as_py()

    for name in preset.required_string_columns():
        columns[name] = raw[name]
        problems.append(_Problem("empty_value", empty[name], lambda i, n=name: f"column {n!r} is empty"))
        placeholder = _placeholder_mask(raw[name]) & ~empty[name]
        problems.append(_Problem(
            "empty_value", placeholder,
            lambda i, n=name: f"column {n!r} holds {value(n, i)!r}, a placeholder for no value (read as such: "
            f"{_placeholders_text()}), not an id: such rows would all share one made-up user or item; fill the ids "
            "or drop those rows",
        ))  # fmt: skip
    for name in preset.required_string_columns():  # user and item ids (a side feature is a category: kept)
        kind = batch.column(name).type
        kind = kind.value_type if pa.types.is_dictionary(kind) else kind
        limit = _limit_text(kind) if pa.types.is_floating(kind) else "2**53"
        problems.append(_Problem(
            "imprecise_id", _imprecise_ids(batch.column(name)),
            lambda i, n=name, k=kind, lim=limit: f"column {n!r} value {value(n, i)} is a number beyond {lim}, read as "
            f"a {_float_name(k)} that lost its last digits (distinct ids would merge); write the ids as strings or int64",
        ))  # fmt: skip
    for name in preset.side_feature_columns:
        # Empty side features are kept: they hash to padding (0), "unknown"; so is a missing one (a null in Parquet
        # or JSON lines, a key a JSON line lacks), read as the empty field of a CSV.
        columns[name] = raw[name].fill_null("")

    if preset.action_column is not None:
        name = preset.action_column
        raw_values = list(preset.action_mapping)
        mapping = dict(preset.action_mapping)
        position = _index_in(raw[name], raw_values)
        lookup = np.array([preset.action_id(preset.action_mapping[v]) for v in raw_values] + [0], dtype=np.int64)
        columns["action_id"] = lookup[position]  # position -1 (unknown) reads the trailing 0
        problems.append(_Problem("empty_value", empty[name], lambda i, n=name: f"column {n!r} is empty"))
        unknown = position < 0
        problems.append(
            _Problem(
                "unknown_action",
                unknown,
                lambda i, n=name: f"column {n!r} has unknown action {value(n, i)!r}; allowed values: {raw_values}"
                + quoting_hint(value(n, i), preset.quote_char)
                + _case_hint(value(n, i), raw_values, mapping),
                # an action in another case: the column is fixed as a whole, skipping would drop every such row
                skip_advice=lambda i, n=name: not _case_hint(value(n, i), raw_values, mapping),
                fixable=_fixable_actions(raw[name], unknown, raw_values, mapping),
            )
        )

    for name in preset.flag_columns:
        position = _index_in(pc.utf8_lower(raw[name]), list(FLAG_VALUES))
        columns[name] = position % 2 == 1
        problems.append(
            _Problem("bad_flag", position < 0, lambda i, n=name: f"column {n!r} must be 0 or 1, got {value(n, i)!r} "
                     "(read too: 0.0 / 1.0 and false / true in any case)" + quoting_hint(value(n, i), preset.quote_char))
        )

    for name, unit in preset.number_columns():
        seconds, number_problems = _parse_numbers(raw[name], empty[name], name, unit, preset)
        columns[name] = seconds
        problems.extend(number_problems)
    problems.append(_implausible_times(columns[preset.time_column], preset, lambda i: value(preset.time_column, i)))
    if preset.duration_column is not None:
        problems.append(
            _implausible_durations(columns[preset.duration_column], preset, lambda i: value(preset.duration_column, i))
        )
    if preset.time_window is not None:
        low, high = preset.time_window
        name = preset.time_column
        seconds = columns[name]
        outside = ~np.isnan(seconds) & ((seconds < low) | (seconds > high))
        problems.append(
            _Problem(
                "outside_window",
                outside,
                lambda i: f"column {name!r} value {value(name, i)!r}{_read_as_text(seconds[i], preset)} lies outside "
                f"the time window {low}..{high} (Unix seconds; the window of preset {preset.name!r}; a log of another "
                "period: pass time_window=None or its own window, CLI: --time-window none or FIRST,LAST)"
                + _window_unit_hint(seconds[i], preset),
            )
        )
    return columns, problems, trimmed


def _read_as_text(seconds: float, preset: LogPreset) -> str:
    """`` (read as ms: 1511544.07 Unix seconds, 1970-01-18 ...)`` for a time not read in seconds; "" for seconds."""
    if preset.time_unit == "s":
        return ""
    return f" (read as {preset.time_unit!r}: {seconds:.10g} Unix seconds, {utc_text(seconds)})"


def _window_unit_hint(seconds: float, preset: LogPreset) -> str:
    """`` (read as seconds it would lie inside the window: ... --time-unit s)`` where the time, read in the other of
    the units s / ms, would lie inside the preset's window; "" otherwise."""
    factor = {"s": 1 / 1000, "ms": 1000}.get(preset.time_unit)
    if factor is None or preset.time_window is None:
        return ""
    low, high = preset.time_window
    other = "ms" if preset.time_unit == "s" else "s"
    if not low <= seconds * factor <= high:
        return ""
    named = {"s": "Unix seconds", "ms": "Unix milliseconds"}
    return (f"; read as {named[other]} it would lie inside the window ({utc_text(seconds * factor)}): the column "
            f"looks like {named[other]}, read it so with time_unit={other!r} (CLI: --time-unit {other})")


def finer_time_unit_hint(preset: LogPreset) -> str:
    """How to read a time column whose values, in ``preset.time_unit``, lie after the year 5000."""
    finer = _FINER_UNIT[preset.time_unit]
    if finer is None:
        return "convert the column to Unix seconds or milliseconds"
    return f"if the column holds Unix milliseconds, read it so (time_unit={finer!r}; CLI: --time-unit {finer})"


# Date or clock text, e.g. 2022-04-17T03:18:31Z, 17/04/2022, 03:18:31, 17.04.2022, 0 days 00:00:21, Apr 17 2022.
_DATE_TEXT = re.compile(
    r"[-/:T]|\d\.\d+\.\d|\bdays?\b|(?i:\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b)"
)


def looks_like_a_date(text: str) -> bool:
    """Whether ``text`` (a value that is no number) is a date, a time of day or a duration written as text: digits
    with ``-``, ``/``, ``:`` or ``T`` (ISO-8601), dots between three numbers, ``days`` or a month's name."""
    return any(character.isdigit() for character in text) and _DATE_TEXT.search(text) is not None


# Texts that logs write for "no value": in a column where an empty cell means unknown (an event log's duration) they
# are a way of writing that, which skipping their rows would throw away with the rows' events.
_UNKNOWN_TEXTS = frozenset({"na", "n/a", "nan", "null", "none", "nil", "\\n", "-", "?", "unknown"})


# Placeholders that mean "no id" in a user or item column (a row without one is a bad row, empty_value) and "no
# category" in a side-feature column (read as empty: unknown): the texts of :data:`_UNKNOWN_TEXTS` and MySQL's \N,
# matched in any case. The one list, shared with the duration columns above.
PLACEHOLDER_TEXTS = _UNKNOWN_TEXTS


def _placeholders_text() -> str:
    return ", ".join(sorted(PLACEHOLDER_TEXTS)) + " (any case)"


def _placeholder_mask(values: pa.Array) -> np.ndarray:
    """(rows,) bool: the values that are a placeholder for no value (:data:`PLACEHOLDER_TEXTS`, any case)."""
    found = pc.is_in(pc.utf8_lower(values), value_set=pa.array(sorted(PLACEHOLDER_TEXTS), type=pa.string()))
    return np.asarray(found.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def means_unknown(text: object, name: str, preset: LogPreset) -> bool:
    """Whether ``text``, a value of the number column ``name``, is a placeholder for an unknown value
    (:data:`_UNKNOWN_TEXTS`) in a column where unknown is allowed (:meth:`LogPreset.empty_means_unknown`)."""
    return preset.empty_means_unknown(name) and isinstance(text, str) and text.strip().lower() in _UNKNOWN_TEXTS


def number_text_hint(text: str, name: str, preset: LogPreset, skip_note: bool = True) -> str:
    """`` ; times must be numbers ...`` for the value ``text`` (no number) of the time or duration column ``name`` of
    ``preset``; for date or clock text (:func:`looks_like_a_date`) also that such text is not parsed and how to
    convert the column (skipping would drop every row written so); for a placeholder of an unknown duration
    (:func:`means_unknown`) that unknown is an empty cell, and how to write it so. ``skip_note``: end those two with
    what on_bad_rows='skip' would do (not where the value is no bad row, e.g. in a JSON lines error)."""
    is_time = name == preset.time_column
    must = f"; {_time_unit_text(preset) if is_time else _duration_unit_text(preset)}"
    if means_unknown(text, name, preset):
        return (f"{must}. An unknown duration is an empty cell (in JSON lines null or no key), not {text!r}: write "
                f"the column again with those cells empty, e.g. in pandas `frame[{name!r}] = pd.to_numeric("
                f"frame[{name!r}], errors='coerce')` before `frame.to_csv(...)`"
                + (" (on_bad_rows='skip' would drop every row written so, its event with it, not read the duration as "
                   "unknown)" if skip_note else ""))
    if not looks_like_a_date(text):
        return must
    if is_time and preset.time_unit == "mmdd":
        how = f"e.g. in pandas `frame[{name!r}] = pd.to_datetime(frame[{name!r}]).dt.strftime('%m%d')`"
    elif is_time:
        scale = " * 1000" if preset.time_unit == "ms" else ""
        how = (f"e.g. in pandas `frame[{name!r}] = pd.to_datetime(frame[{name!r}], utc=True).map(pd.Timestamp."
               f"timestamp){scale}`, or for one value `date -u -d {text!r} +%s`")
    else:
        scale = " * 1000" if preset.duration_unit == "ms" else ""
        how = f"e.g. in pandas `frame[{name!r}] = pd.to_timedelta(frame[{name!r}]).dt.total_seconds(){scale}`"
    kind = "date / time" if is_time else "duration"
    return (f"{must}. {kind.capitalize()} text is not parsed: convert the column to numbers and write the log "
            f"again, {how}"
            + (f" (on_bad_rows='skip' would drop every row whose {kind} is text, not read it)" if skip_note else ""))


def _time_unit_text(preset: LogPreset) -> str:
    """What the time column of ``preset`` holds, and the option that reads the other unit."""
    if preset.time_unit == "mmdd":
        return f"preset {preset.name!r} reads times as mmdd numbers, a day of {preset.year} (1111: 11 November)"
    other = "ms" if preset.time_unit == "s" else "s"
    named = {"s": "Unix seconds", "ms": "Unix milliseconds"}
    return (f"times must be numbers: {named[preset.time_unit]} as preset {preset.name!r} reads them, or "
            f"{named[other]} read with time_unit={other!r} (CLI: --time-unit {other})")


def _duration_unit_text(preset: LogPreset) -> str:
    """What the duration column of ``preset`` holds, and how to read the other unit."""
    other = "ms" if preset.duration_unit == "s" else "s"
    return (f"durations must be numbers: {'seconds' if preset.duration_unit == 's' else 'milliseconds'} as preset "
            f"{preset.name!r} reads them (duration_unit={preset.duration_unit!r}; for the other unit "
            f"`dataclasses.replace(preset, duration_unit={other!r})`"
            + (f", on the command line --generic-duration-unit {other}" if preset.name == "generic" else "") + ")")


def _implausible_times(seconds: np.ndarray, preset: LogPreset, shown: Callable[[int], str]) -> _Problem:
    """Times after :data:`LATEST_PLAUSIBLE_SECONDS` once read in ``preset.time_unit``: the column holds a finer unit."""
    name, unit = preset.time_column, preset.time_unit
    return _Problem(
        "implausible_time",
        ~np.isnan(seconds) & (seconds > LATEST_PLAUSIBLE_SECONDS),
        lambda i: f"column {name!r} value {shown(i)!r} read as {unit!r} (preset {preset.name!r}) lies after the "
        f"year 5000: {_implausible_time_hint(seconds[i], preset)}",
    )


# Units finer than milliseconds that a time column may hold (pandas' datetime64 as integers: nanoseconds).
_FINEST_UNITS = {"us": ("microseconds", 1_000_000), "ns": ("nanoseconds", 1_000_000_000)}


def _implausible_time_hint(seconds: float, preset: LogPreset) -> str:
    """How to read a time of ``seconds`` (read in ``preset.time_unit``) that lies after the year 5000: where its
    value read as Unix microseconds or nanoseconds lies in :data:`PLAUSIBLE_UNIX_SECONDS`, that it looks so and how to
    divide the column; else :func:`finer_time_unit_hint`."""
    ticks = _ARROW_TICKS_PER_SECOND.get(preset.time_unit)
    low, high = PLAUSIBLE_UNIX_SECONDS
    for named, unit_ticks in _FINEST_UNITS.values() if ticks else ():
        unix = seconds * ticks / unit_ticks
        if low <= unix < high:
            factor, name = unit_ticks // ticks, preset.time_column
            target = "seconds" if preset.time_unit == "s" else "milliseconds"
            return (f"read as Unix {named} it is {utc_text(unix)}: these look like Unix {named}; divide the column "
                    f"by {factor:,} to Unix {target} and write the log again, e.g. in pandas "
                    f"`frame[{name!r}] //= {factor}`")
    return finer_time_unit_hint(preset)


def utc_text(seconds: float) -> str:
    """Unix ``seconds`` as a UTC date and time, e.g. ``2017-11-25 00:00:00 UTC`` (``1e+20 s`` where out of range)."""
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return f"{seconds:g} s"


def _implausible_durations(seconds: np.ndarray, preset: LogPreset, shown: Callable[[int], str]) -> _Problem:
    """Durations longer than :data:`LATEST_PLAUSIBLE_SECONDS` once read in ``preset.duration_unit``: no view lasts
    that long, and the model encodes times up to 1e12 s only (``time_encoding.MAX_SECONDS``), so such a row would
    otherwise stop training later, far from its line."""
    name, unit = preset.duration_column, preset.duration_unit
    return _Problem(
        "implausible_duration",
        ~np.isnan(seconds) & (seconds > LATEST_PLAUSIBLE_SECONDS),
        lambda i: f"column {name!r} value {shown(i)!r} read as {unit!r} (preset {preset.name!r}) is a duration of "
        f"{seconds[i]:.3g} s, more than {LATEST_PLAUSIBLE_SECONDS:.0e} s (some 3,000 years): check the column and "
        f"its unit; {_duration_unit_text(preset)}",
    )


def _negative_problem(negative: np.ndarray, name: str, preset: LogPreset, shown: Callable[[int], str]) -> _Problem:
    """Negative values of the number column ``name``; for the time column in Unix seconds or milliseconds, a time
    before 1970, told how to shift the column and without the advice to skip (that would drop every such row)."""
    if name != preset.time_column or preset.time_unit not in ("s", "ms"):
        return _Problem("negative_number", negative, lambda i: f"column {name!r} is negative: {shown(i)}")
    return _Problem(
        "negative_number", negative, lambda i: f"column {name!r} is negative: {shown(i)}{negative_time_hint(preset)}",
        skip_advice=lambda i: False,
    )


def negative_time_hint(preset: LogPreset) -> str:
    """``: times before 1970 ... are not read`` and how to shift the time column of ``preset`` to read them."""
    name = preset.time_column
    named = "Unix seconds" if preset.time_unit == "s" else "Unix milliseconds"
    return (f"; times before 1970 (negative {named}) are not read. Shift the column by a constant so that every time "
            f"is 0 or later and write the log again, e.g. in pandas `frame[{name!r}] -= frame[{name!r}].min()`: "
            "sessions, ages and splits depend only on differences of times, so times counted from a start of your "
            "own are fine (shift --validation-start / --test-start, if given, by the same constant). "
            "on_bad_rows='skip' would drop every row before 1970, not read it")


def _index_in(values: pa.Array, allowed: list[str]) -> np.ndarray:
    """Position of each value in ``allowed`` (int64, -1 where it is not there)."""
    position = pc.index_in(values, value_set=pa.array(allowed, type=pa.string())).fill_null(-1)
    return np.asarray(position.to_numpy(zero_copy_only=False), dtype=np.int64)


def _empty_mask(values: pa.Array) -> np.ndarray:
    is_empty = pc.equal(pc.utf8_length(values), 0).fill_null(True)
    return np.asarray(is_empty.to_numpy(zero_copy_only=False), dtype=bool)


def _to_numpy(values: pa.Array, dtype) -> np.ndarray:
    return np.array(pc.cast(values, pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False), dtype=dtype)


def _parse_numbers(
    values: pa.Array, empty: np.ndarray, name: str, unit: str, preset: LogPreset
) -> tuple[np.ndarray, list[_Problem]]:
    """Parse a time / duration column in ``unit`` into seconds (float64, NaN where invalid or, for an event log's
    duration, empty: unknown) and the problems found."""
    year = preset.year
    filled = pc.if_else(pa.array(empty), "0", values)
    is_number = np.asarray(pc.match_substring_regex(filled, _NUMBER_PATTERN).to_numpy(zero_copy_only=False))
    is_negative = np.asarray(pc.match_substring_regex(filled, _NEGATIVE_PATTERN).to_numpy(zero_copy_only=False))
    numbers = _to_numpy(pc.if_else(pa.array(is_number | is_negative), filled, "0"), np.float64)
    non_numeric = ~(is_number | is_negative) | ~np.isfinite(numbers)  # 1e999 overflows to inf: not a number
    numbers[non_numeric | empty] = np.nan
    negative = numbers < 0
    numbers[negative] = np.nan

    def shown(i: int) -> str:
        return repr(values[i].as_py())

    problems = [
        # An event log's duration may be empty (unknown: logged on some of its rows only); no other number may.
        _Problem("empty_value", empty & (not preset.empty_means_unknown(name)), lambda i: f"column {name!r} is empty"),
        _Problem("bad_number", non_numeric & ~empty, lambda i: f"column {name!r} is not a number: {shown(i)}"
                 + quoting_hint(values[i].as_py(), preset.quote_char) + number_text_hint(values[i].as_py(), name, preset),
                 skip_advice=lambda i: not (looks_like_a_date(values[i].as_py())
                                            or means_unknown(values[i].as_py(), name, preset))),
        _negative_problem(negative, name, preset, shown),
    ]
    if unit == "s":
        return numbers, problems
    if unit == "ms":
        return numbers / 1000.0, problems
    # "mmdd": a day of ``year`` written as month * 100 + day (IJCAI-15 Tmall logs).
    whole = np.nan_to_num(numbers, nan=0).astype(np.int64)
    month, day = whole // 100, whole % 100
    first_month = np.datetime64(f"{year}-01", "M")
    dates = (first_month + np.clip(month - 1, 0, 11)).astype("datetime64[D]") + (day - 1)
    # A day past the month's end (0431) rolls into the next month, which the round trip below catches.
    rolled_over = (dates.astype("datetime64[M]") - first_month).astype(np.int64) != month - 1
    bad_date = ~np.isnan(numbers) & ((numbers != whole) | (month < 1) | (month > 12) | (day < 1) | rolled_over)
    seconds = np.where(bad_date | np.isnan(numbers), np.nan, dates.astype(np.int64) * 86400.0)
    problems.append(
        _Problem("bad_date", bad_date, lambda i: f"column {name!r} is not an mmdd date of {year}: {shown(i)}")
    )
    return seconds, problems
