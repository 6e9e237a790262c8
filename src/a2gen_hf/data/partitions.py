"""Streaming a validated log into partition files by user, so that conversion runs one partition at a time.

A user's rows all land in one partition, and sessions and histories never cross users, so each partition converts
on its own with memory bounded by its size. Partition files are Arrow IPC files of the validated columns (strings
as read, numbers parsed, each row's log line), rows in log order.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .compressed import estimated_rows
from .validation import BadRowCounter, ValidatedBatch, ValidatedLog

if TYPE_CHECKING:
    from .presets import LogPreset

_STRING_PREFIX, _NUMBER_PREFIX, _LINE_COLUMN = "string:", "number:", "line"
_SAMPLE_BYTES = 1 << 20  # the head of a text log read to estimate its bytes per row


def estimate_rows(path: Path, file_format: str) -> int:
    """Rows of a log: exact for Parquet (from its footer), from the bytes per line of the first MiB for text."""
    if file_format == "parquet":
        try:
            return pq.ParquetFile(path).metadata.num_rows
        except (pa.ArrowException, OSError):
            return 1  # a damaged file: the reader reports it
    return estimated_rows(path, _SAMPLE_BYTES)


def user_partitions(users: pa.Array, num_partitions: int) -> np.ndarray:
    """Partition of each row (int64, (rows,)): the CRC-32 of its raw user id's UTF-8 bytes modulo ``num_partitions``.

    CRC-32 rather than Python's ``hash`` so that the partitioning, and so the order of the examples, does not change
    from run to run; each distinct id of the batch is hashed once.
    """
    if num_partitions == 1:
        return np.zeros(len(users), dtype=np.int64)
    encoded = pc.dictionary_encode(users)
    distinct = encoded.dictionary.to_pylist()
    crcs = np.fromiter((zlib.crc32(user.encode("utf-8")) for user in distinct), dtype=np.int64, count=len(distinct))
    return (crcs % num_partitions)[encoded.indices.to_numpy(zero_copy_only=False)]


class PartitionWriter:
    """Writes validated batches into ``num_partitions`` Arrow files in ``folder``, each user's rows into one file."""

    def __init__(self, folder: Path, num_partitions: int, user_column: str):
        self.paths = [folder / f"partition-{index:05d}.arrow" for index in range(num_partitions)]
        self.user_column = user_column
        self.rows = 0
        self._writers: list[pa.ipc.RecordBatchFileWriter] = []

    def write(self, batch: ValidatedBatch) -> None:
        table = pa.table(
            {
                **{_STRING_PREFIX + name: values for name, values in batch.strings.items()},
                **{_NUMBER_PREFIX + name: values for name, values in batch.numbers.items()},
                _LINE_COLUMN: batch.lines,
            }
        )
        if not self._writers:
            self._writers = [pa.ipc.new_file(str(path), table.schema) for path in self.paths]
        self.rows += len(batch)
        partition = user_partitions(batch.strings[self.user_column], len(self.paths))
        order = np.argsort(partition, kind="stable")  # stable: rows stay in log order within a partition
        bounds = np.searchsorted(partition[order], np.arange(len(self.paths) + 1))
        if len(self.paths) > 1:
            table = table.take(pa.array(order))
        for writer, begin, end in zip(self._writers, bounds[:-1], bounds[1:]):
            if end > begin:
                writer.write_table(table.slice(begin, end - begin))

    def close(self) -> None:
        for writer in self._writers:
            writer.close()


def read_partition(path: Path, preset: LogPreset, source: str) -> ValidatedLog:
    """A partition file as a :class:`ValidatedLog` (strings memory-mapped) with its own "skip" bad-row counter."""
    table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
    strings = {name: table.column(_STRING_PREFIX + name) for name in preset.string_columns()}
    numbers = {
        name[len(_NUMBER_PREFIX) :]: table.column(name).to_numpy()
        for name in table.column_names
        if name.startswith(_NUMBER_PREFIX)
    }
    return ValidatedLog(
        source=source,
        rows_read=table.num_rows,
        strings=strings,
        numbers=numbers,
        lines=table.column(_LINE_COLUMN).to_numpy(),
        bad_rows=BadRowCounter(source, "skip"),
    )
