"""A text log's bytes, whether the file is plain or compressed (gzip, bz2, xz), told by its first bytes.

``UserBehavior.csv.gz`` reads as ``UserBehavior.csv`` does: the same rows, the same line numbers. The readers
(``validation.py``) open every CSV and JSONL log through :func:`open_log_bytes`; the partitioner estimates a log's
rows through :func:`estimated_rows`. Archives (zip) and zstd are told apart so that the error can say what to do.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import math
import zlib
from pathlib import Path

from .errors import LogFormatError

# First bytes of each kind of file; the readable ones open through their stdlib module.
_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bz2",
    b"\xfd7zXZ\x00": "xz",
    b"PK\x03\x04": "zip",
    b"\x28\xb5\x2f\xfd": "zstd",
}
_OPENERS = {"gzip": lambda file: gzip.GzipFile(fileobj=file), "bz2": bz2.BZ2File, "xz": lzma.LZMAFile}
# Suffixes of compressed files, left out when the log's format is told by its extension (log.csv.gz is CSV).
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz")


def compression_of(path: Path) -> str | None:
    """``"gzip"``, ``"bz2"``, ``"xz"``, ``"zip"``, ``"zstd"`` or None (plain), from the file's first bytes."""
    with open(path, "rb") as handle:
        return compression_of_head(handle.read(10))


def compression_of_head(head: bytes) -> str | None:
    """:func:`compression_of` told from a file's first (at least 10) bytes ``head``."""
    kind = next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)
    # Only bz2's magic is text ("BZh", as a user id may start): it also needs a block size digit and a block or end
    # marker. The others hold bytes that no UTF-8 text starts with.
    if kind == "bz2" and not (head[3:4] in b"123456789" and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90")):
        return None
    return kind


_DECOMPRESSORS = {"gzip": "zcat", "bz2": "bzcat", "xz": "xzcat"}


def text_command(path: Path, command: str, prefix: str) -> str:
    """A shell command that runs the text filter ``command`` over the log at ``path`` into a new file named with
    ``prefix``: ``iconv ... log.csv > utf8_log.csv``, or for a compressed log ``zcat log.csv.gz | iconv ... >
    utf8_log.csv`` (the filter reads text, not the compressed bytes)."""
    kind = compression_of(path) if path.is_file() else None
    if kind in _DECOMPRESSORS:
        plain = path.stem if path.suffix.lower() in COMPRESSION_SUFFIXES else path.name
        return f"{_DECOMPRESSORS[kind]} {path.name} | {command} > {prefix}{plain}"
    return f"{command} {path.name} > {prefix}{path.name}"


def decompress_twice_command(path: Path, inner: str) -> str:
    """A shell command that decompresses the log at ``path``, compressed twice (its decompressed bytes are ``inner``
    data), into a plain file: ``zcat log.csv.gz | zcat > log.csv``."""
    outer = _DECOMPRESSORS.get(compression_of(path) or "", "zcat")
    plain = path.name
    while Path(plain).suffix.lower() in COMPRESSION_SUFFIXES:
        plain = Path(plain).stem
    plain = plain if plain != path.name else f"plain_{path.name}"
    if inner == "zip":
        return f"{outer} {path.name} > {plain}.zip && unzip {plain}.zip"
    return f"{outer} {path.name} | {_DECOMPRESSORS.get(inner, 'zstd -d')} > {plain}"


def format_suffix(path: Path) -> str:
    """The extension that names the log's format: ``log.csv.gz`` -> ``".csv"``."""
    if path.suffix.lower() in COMPRESSION_SUFFIXES:
        return Path(path.stem).suffix.lower()
    return path.suffix.lower()


class _Decompressed(io.RawIOBase):
    """The uncompressed bytes of a compressed file, which also closes the file and tells how far into it it read."""

    def __init__(self, path: Path, kind: str):
        self.path, self.kind = path, kind
        self.file = open(path, "rb")  # noqa: SIM115  (closed with this stream)
        self.stream = _OPENERS[kind](self.file)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            return self.stream.readinto(buffer)
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as error:  # what each module raises for bad data
            raise LogFormatError(
                f"{self.path.name}: the file starts as a {self.kind} file but cannot be decompressed ({error}); it is "
                "truncated or corrupt, or not compressed at all. Decompress it yourself to see, or write it again."
            ) from None

    def compressed_position(self) -> int:
        return self.file.tell()

    def close(self) -> None:
        self.stream.close()
        self.file.close()
        super().close()


class _CarriageReturnLines(io.RawIOBase):
    """A log whose lines end with a carriage return alone (classic Mac OS, Excel's "CSV (Macintosh)"), read with
    newlines instead: every reader then splits it at the same places, and numbers its lines as an editor does."""

    def __init__(self, stream: io.BufferedReader):
        self.stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(len(buffer))
        count = len(data)
        buffer[:count] = data.replace(b"\r", b"\n")
        return count

    def compressed_position(self) -> int:
        inner = getattr(self.stream.raw, "compressed_position", None)
        return inner() if inner is not None else self.stream.tell()

    def close(self) -> None:
        self.stream.close()
        super().close()


# Bytes read to tell a log's line ends: hundreds of rows.
_LINE_END_SAMPLE = 1 << 16


def check_not_an_archive(path: Path) -> str | None:
    """Refuse a zip archive or a zstd file (told by its first bytes, whatever its name), which the standard library
    does not stream, saying how to unpack it; else return :func:`compression_of`."""
    kind = compression_of(path)
    if kind in ("zip", "zstd"):
        unpack = "unzip it and pass the file inside" if kind == "zip" else f"decompress it first (zstd -d {path.name})"
        raise LogFormatError(f"{path.name}: the file is a {kind} {'archive' if kind == 'zip' else 'file'}; {unpack}.")
    return kind


def open_log_bytes(path: Path) -> io.BufferedReader:
    """The log's uncompressed bytes, buffered, for reading; the caller closes them. A text log whose first
    ``_LINE_END_SAMPLE`` bytes end their lines with a carriage return alone (no newline among them) is read with
    newlines in their place.

    Raises:
        LogFormatError: a zip archive or a zstd file, which the standard library does not stream (the message says
            how to unpack it); reading then raises it for compressed data that is truncated or corrupt.
    """
    kind = check_not_an_archive(path)
    raw = open(path, "rb") if kind is None else _Decompressed(path, kind)  # noqa: SIM115  (the caller closes it)
    stream = io.BufferedReader(raw, buffer_size=_LINE_END_SAMPLE)
    head = stream.peek(_LINE_END_SAMPLE)[:_LINE_END_SAMPLE]
    if b"\r" in head and b"\n" not in head:
        return io.BufferedReader(_CarriageReturnLines(stream))
    return stream


def estimated_rows(path: Path, sample_bytes: int) -> int:
    """Rows of a text log from the lines in its first ``sample_bytes`` (uncompressed): the file's size times the
    lines per byte; for a compressed file, per compressed byte read so far (an estimate, for sizing partitions)."""
    with open_log_bytes(path) as handle:
        head = handle.read(sample_bytes)
        position = getattr(handle.raw, "compressed_position", None)
        consumed = position() if position is not None else len(head)
    return math.ceil(path.stat().st_size * max(head.count(b"\n"), 1) / max(consumed, 1))
