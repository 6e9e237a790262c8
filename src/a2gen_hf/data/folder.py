"""The data folder: what ``a2gen simulate`` and ``a2gen prepare`` write and ``a2gen train`` / ``compare`` read.

A data folder holds

- the examples, either as a ``DatasetDict.save_to_disk`` folder (:data:`DATASET_DICT_FILE` and one folder per split
  of Arrow files named by :func:`data_file_name`) or as the simulator's Parquet shards (``{split}/part-NNNNN.parquet``,
  :func:`shard_path`);
- the fitted tokenizer (:data:`TOKENIZER_FOLDER`) and the summary (:data:`DATA_SUMMARY_FILE`), both written by
  :func:`write_data_summary`.

This module owns those names: the writers (``logs.py``, ``simulator.py``) and the readers (:func:`load_data_dir`,
:func:`load_parquet`) use them from here. See ``docs/design.md``, "Examples on disk".
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import xxhash  # a dependency of datasets, which fingerprints with it too
from datasets import DatasetDict, load_dataset

from ..output_folders import file_digest, folder_output_problem, output_lock, staging_folder, switch_in
from ..tokenization_a2gen import A2GenActionTokenizer
from .examples import EXAMPLE_FEATURES, SIMULATED_FEATURES, SPLITS

logger = logging.getLogger(__name__)

DATA_SUMMARY_FILE = "a2gen_data.json"
TOKENIZER_FOLDER = "tokenizer"
DATASET_DICT_FILE = "dataset_dict.json"
PARQUET_SHARDS = "part-*.parquet"
# What a data folder holds; a prepare refuses to replace a folder with anything else (it is not ours to delete).
DATASET_ENTRIES = frozenset({*SPLITS, TOKENIZER_FOLDER, DATASET_DICT_FILE, DATA_SUMMARY_FILE})

LAYOUT_HELP = (
    f"a data folder holds {DATASET_DICT_FILE} (or {{split}}/{PARQUET_SHARDS}), {TOKENIZER_FOLDER}/ and "
    f"{DATA_SUMMARY_FILE}, as written by `a2gen simulate --output DIR` or `a2gen prepare --output DIR`"
)


def data_file_name(index: int, count: int) -> str:
    """Name of a split's ``index``-th Arrow file of ``count``, as ``Dataset.save_to_disk`` names its shards."""
    return f"data-{index:05d}-of-{count:05d}.arrow"


def shard_path(folder: Path, split: str, shard: int) -> Path:
    """Path of a split's ``shard``-th Parquet file (``{split}/part-NNNNN.parquet``)."""
    return folder / split / f"part-{shard:05d}.parquet"


def data_file_digest(path: Path) -> str:
    """The xxh3-64 digest (hex) of a data file's bytes, for :func:`write_dataset_dict_files`."""
    return file_digest(path, xxhash.xxh3_64)


def write_dataset_dict_files(output_dir: Path, num_files: int, file_digests: dict[str, list[str]]) -> None:
    """The JSON files of a ``DatasetDict.save_to_disk`` folder whose splits hold ``num_files`` data files each.

    The Arrow files themselves (``output_dir/<split>/data-*.arrow``, see :func:`data_file_name`) are written by
    :func:`write_examples`; with these files, ``datasets.load_from_disk`` memory-maps them in order. Each split's
    fingerprint (``datasets``' ``_fingerprint``, which the resume key of training reads) is derived from the digests
    of its files (:func:`data_file_digest`, ``file_digests[split]`` in file order): the same examples give the same
    fingerprint, so a data folder prepared again from the same log is the same data to ``a2gen train --resume``
    (before: a random one each time, and the resume was refused).
    """
    (output_dir / DATASET_DICT_FILE).write_text(json.dumps({"splits": list(SPLITS)}))
    for split in SPLITS:
        state = {
            "_data_files": [{"filename": data_file_name(index, num_files)} for index in range(num_files)],
            "_fingerprint": xxhash.xxh3_64(json.dumps(file_digests[split]).encode()).hexdigest(),
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        }
        (output_dir / split / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
        datasets.DatasetInfo(features=EXAMPLE_FEATURES).write_to_directory(str(output_dir / split))


def write_data_summary(folder: Path, tokenizer: A2GenActionTokenizer, summary: dict[str, Any]) -> None:
    """Write the fitted tokenizer (:data:`TOKENIZER_FOLDER`) and the summary (:data:`DATA_SUMMARY_FILE`) of a data
    folder beside its examples."""
    tokenizer.save_pretrained(str(folder / TOKENIZER_FOLDER))
    (folder / DATA_SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")


def _parquet_features(data_files: dict[str, list[str]]) -> datasets.Features:
    """The features of the shards: :data:`SIMULATED_FEATURES`, without ``history_session_starts`` where no shard
    holds it (shards written before the column existed read as before; only time features refuse them). Shards that
    hold it in part are refused, naming those without it (their rows would have no times beside rows with them)."""
    import pyarrow.parquet as pq

    paths = [path for paths in data_files.values() for path in paths]
    lacking = []
    for path in paths:
        try:
            names = pq.read_schema(path).names
        except Exception:  # noqa: BLE001 - not a Parquet file: load_dataset's error below names every shard
            return SIMULATED_FEATURES
        if "history_session_starts" not in names:
            lacking.append(path)
    if not lacking:
        return SIMULATED_FEATURES
    if len(lacking) < len(paths):
        raise ValueError(
            f"{len(lacking)} of the {len(paths)} Parquet shards lack the history_session_starts column (written before "
            f"it existed): {', '.join(lacking[:5])}{' ...' if len(lacking) > 5 else ''}. Write the whole folder again "
            "with this version (a2gen simulate), so that every row has the history sessions' times."
        )
    return datasets.Features({name: value for name, value in SIMULATED_FEATURES.items()
                              if name != "history_session_starts"})  # fmt: skip


def load_parquet(output_dir: str | Path, cache_dir: str | None = None) -> DatasetDict:
    """Read the Parquet shards written by :func:`~a2gen_hf.data.simulator.simulate_to_parquet` or
    :meth:`~a2gen_hf.data.simulator.SimulationResult.write_parquet` (with the oracle columns)."""
    output_dir = Path(output_dir)
    data_files = {
        split: sorted(str(path) for path in (output_dir / split).glob(PARQUET_SHARDS))
        for split in SPLITS
        if any((output_dir / split).glob(PARQUET_SHARDS))
    }
    if not data_files:
        raise FileNotFoundError(
            f"No Parquet shards under {output_dir}: expected {shard_path(output_dir, 'train', 0)} etc., as written "
            "by simulate_to_parquet or SimulationResult.write_parquet."
        )
    features = _parquet_features(data_files)
    try:
        dataset = load_dataset("parquet", data_files=data_files, features=features, cache_dir=cache_dir)
    except datasets.exceptions.DatasetGenerationError as error:  # a shard that is no Parquet file (truncated, ...)
        cause = error.__cause__ or error
        raise ValueError(
            f"{output_dir}: a Parquet shard cannot be read ({type(cause).__name__}: {cause}); the shards are "
            f"{', '.join(path for paths in data_files.values() for path in paths)}. Write the data folder again."
        ) from None
    # A split the writers left without rows (e.g. --validation-fraction 0) has a folder but no shard: it is read as an
    # empty split, as the save_to_disk layout reads it, not dropped.
    for split in SPLITS:
        if split not in dataset and (output_dir / split).is_dir():
            dataset[split] = datasets.Dataset.from_dict({name: [] for name in features}, features=features)
    return DatasetDict({split: dataset[split] for split in SPLITS if split in dataset})


def check_replaceable(output_dir: str | os.PathLike, command: str, also_ours: tuple[str, ...] = ()) -> None:
    """Refuse an output that is a file, or a folder holding entries that no data folder has (names in
    :data:`DATASET_ENTRIES`, or starting with one of ``also_ours``): the new data folder replaces the whole folder,
    and other files are not ours to delete."""
    target = Path(output_dir)
    problem = folder_output_problem(output_dir, beside=True)  # a file there, a folder taking no files, ...
    if problem:
        raise ValueError(f"The output {problem}")
    if target.is_dir():
        foreign = sorted(entry.name for entry in target.iterdir()
                         if entry.name not in DATASET_ENTRIES and not entry.name.startswith(also_ours))  # fmt: skip
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise ValueError(
                f"The output folder {output_dir} holds files that {command} did not write ({shown}); {command} "
                "replaces the whole folder, so choose a new or empty folder (or move those files)."
            )


@contextmanager
def replacing_data_folder(output_dir: str | os.PathLike, command: str) -> Iterator[Path]:
    """A new, empty folder to write a whole data folder into; when the block ends without an error it replaces
    ``output_dir`` at once (readers see the old data folder or the new one, never a mix), else it is removed and
    ``output_dir`` stays as it was. One writer at a time (see ``output_folders``); a folder holding other files is
    refused (:func:`check_replaceable`)."""
    check_replaceable(output_dir, command)
    with output_lock(output_dir):
        check_replaceable(output_dir, command)  # again, now that no other writer can change it
        staging = staging_folder(output_dir)
        try:
            yield staging
            switch_in(staging, output_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _load_saved_splits(folder: Path) -> DatasetDict:
    """``datasets.load_from_disk`` of a data folder; a split folder or Arrow file that is missing or damaged is an
    error naming the split and saying how to get a whole folder again."""
    try:
        return datasets.load_from_disk(str(folder))
    except json.JSONDecodeError as error:  # dataset_dict.json, a split's state.json or dataset_info.json
        raise ValueError(
            f"{folder}: a JSON file of the saved dataset (dataset_dict.json, or a split's state.json / "
            f"dataset_info.json) is damaged (line {error.lineno}, column {error.colno}: {error.msg}); write the data "
            "folder again (a2gen prepare / a2gen simulate)."
        ) from None
    except (FileNotFoundError, pa.ArrowInvalid, pa.ArrowIOError) as error:
        listed = json.loads((folder / DATASET_DICT_FILE).read_text(encoding="utf-8")).get("splits", [])
        broken = [split for split in listed if not _loads(folder / split)] or listed
        raise ValueError(
            f"{folder}: the examples of split(s) {broken} are missing or damaged ({type(error).__name__}: {error}); "
            "write the data folder again (a2gen prepare / a2gen simulate)."
        ) from None


def _loads(split_folder: Path) -> bool:
    try:
        datasets.Dataset.load_from_disk(str(split_folder))
    except (FileNotFoundError, pa.ArrowInvalid, pa.ArrowIOError):
        return False
    return True


def _check_example_counts(folder: Path, dataset: DatasetDict, metadata: dict[str, Any]) -> None:
    """Every split holds the examples ``a2gen_data.json`` counted when the folder was written: a Parquet shard or
    split deleted since would otherwise just leave fewer examples (the save_to_disk layout refuses such damage)."""
    counts = metadata.get("examples")
    if not isinstance(counts, dict):
        return  # written before the summary counted them
    for split, expected in counts.items():
        if not isinstance(expected, int) or isinstance(expected, bool):
            continue
        found = len(dataset[split]) if split in dataset else None
        if found != expected and not (found is None and expected == 0):
            held = "is missing" if found is None else f"holds {found:,} examples"
            raise ValueError(
                f"{folder}: the {split!r} split {held}, but {DATA_SUMMARY_FILE} records {expected:,}: its files are "
                "missing or damaged. Write the data folder again (a2gen prepare / a2gen simulate)."
            )


def load_data_dir(
    path: str | os.PathLike, cache_dir: str | None = None
) -> tuple[DatasetDict, A2GenActionTokenizer, dict[str, Any]]:
    """
    Load a data folder written by ``a2gen simulate`` (``save_to_disk`` or ``--parquet``) or ``a2gen prepare``.

    Returns:
        ``(dataset, tokenizer, metadata)``: the splits (``train`` and usually ``validation`` / ``test``), the
        fitted :class:`A2GenActionTokenizer` of ``tokenizer/`` and the parsed ``a2gen_data.json``.

    Raises:
        FileNotFoundError: the folder, its tokenizer, its summary or its examples are missing.
        ValueError: ``a2gen_data.json`` is not a JSON object (or not JSON), a split's examples are missing or
            damaged, or there is no ``train`` split.
    """
    folder = Path(path)
    layout_help = LAYOUT_HELP
    if not folder.is_dir():
        if folder.exists():
            raise FileNotFoundError(f"Data folder {folder} is a file, not a folder; {layout_help}.")
        raise FileNotFoundError(f"Data folder {folder} does not exist; {layout_help}.")
    for required in (TOKENIZER_FOLDER, DATA_SUMMARY_FILE):
        if not (folder / required).exists():
            raise FileNotFoundError(f"{folder} has no {required}; {layout_help}.")
    summary_path = folder / DATA_SUMMARY_FILE
    try:
        metadata = json.loads(summary_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{summary_path}, line {error.lineno}, column {error.colno}: {error.msg}") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{summary_path}: not UTF-8 text ({error.reason} at byte {error.start}); write it again "
                         "with a2gen prepare / a2gen simulate.") from None  # fmt: skip
    if not isinstance(metadata, dict):
        raise ValueError(
            f"{summary_path} holds a JSON {type(metadata).__name__}, not an object of the data's summary; write it "
            "again with a2gen prepare / a2gen simulate."
        )
    if (folder / DATASET_DICT_FILE).exists():
        dataset = _load_saved_splits(folder)
    elif any(folder.glob(f"*/{PARQUET_SHARDS}")):
        dataset = load_parquet(folder, cache_dir=cache_dir)
    else:
        raise FileNotFoundError(
            f"{folder} holds no examples (no {DATASET_DICT_FILE}, no */{PARQUET_SHARDS}); {layout_help}."
        )
    if not isinstance(dataset, DatasetDict) or "train" not in dataset:
        found = list(dataset) if isinstance(dataset, DatasetDict) else "a single Dataset"
        raise ValueError(f"{folder} must hold a DatasetDict with a 'train' split; found {found}.")
    _check_example_counts(folder, dataset, metadata)
    tokenizer = A2GenActionTokenizer.from_pretrained(str(folder / TOKENIZER_FOLDER))
    if "distinct" not in metadata:
        logger.info(
            f"{folder} was written before the tables were sized from the data: the models get its tokenizer's "
            f"{tokenizer.item_buckets} item / {tokenizer.user_buckets} user rows. Write it again with a2gen prepare / "
            "a2gen simulate (no --*-buckets) for tables that follow the number of distinct ids."
        )
    return dataset, tokenizer, metadata
