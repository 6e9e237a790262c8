"""
Where a data folder's rows are refused: the collator's refusals (:class:`~a2gen_hf.data.collator.CollationError`,
which know only the example's place in its batch) said with the folder, the split and the row there, and the check of
every split that ``a2gen train`` runs before its first step.
"""

from __future__ import annotations

# What fixes a data folder whose examples the collator refuses: the commands that write one never write such rows.
REWRITE_THE_DATA = (
    "Write the data folder again with a2gen prepare (or a2gen simulate): its examples are damaged, or were not "
    "written by them"
)


class SplitRowsError(ValueError):
    """Rows of a data folder's split that the collator refuses (:class:`~a2gen_hf.data.collator.CollationError`),
    said with the folder, the split and the row there (:func:`rows_message`)."""


def rows_message(
    error, data_dir: str, split: str, first_row: int | None, rows: int | None = None, where: str | None = None
) -> str:
    """The collator's refusal ``error`` of the ``rows`` rows of ``split`` of ``data_dir`` from ``first_row`` on (None:
    a batch somewhere in the split), said with its place in the split (before: "example 0 of the batch", and a missing
    column came with advice about transformers' Trainer) and the fix (:data:`REWRITE_THE_DATA`); ``where`` replaces
    "split SPLIT of DATA_DIR"."""
    from .collator import MissingColumnsError

    where = where or f"split {split!r} of {data_dir}"
    if isinstance(error, MissingColumnsError) and error.missing:
        return (f"{where} has no column(s) {error.missing}; the model reads {error.required} (docs/design.md, "
                f"'Examples on disk'). {REWRITE_THE_DATA}.")
    text = (error.args[0] if error.args else str(error)).removeprefix("A2GenDataCollator: ")
    if error.example is not None:
        place = f"a row of {where}" if first_row is None else f"row {first_row + error.example:,} of {where}"
        batch_place = f"example {error.example} of the batch"
        text = text.replace(batch_place, place, 1) if batch_place in text else f"{place}: {text}"
    elif first_row is None:
        text = f"{where}: {text}"
    else:  # a column's value or a history item's list: the batch's rows
        last = "" if rows is None else f" to {first_row + rows - 1:,}"
        text = f"{where}, rows {first_row:,}{last}: {text}"
    return f"{text.rstrip('.')}. {REWRITE_THE_DATA}."


def located_batches(loader, data_dir: str, split: str):
    """The batches of ``loader`` (the rows of ``split`` of ``data_dir`` in order, not shuffled); a batch the collator
    refuses raises :class:`SplitRowsError`, naming its row in the split."""
    from .collator import CollationError

    first, total, batches = 0, len(loader.dataset), iter(loader)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except CollationError as error:
            rows = min(loader.batch_size, total - first)
            raise SplitRowsError(rows_message(error, data_dir, split, first, rows)) from error
        first += len(batch["user_ids"])
        yield batch


def schema_collator(dataset, tokenizer):
    """A collator for checking the splits of ``dataset`` (a data folder's) against each other before a run trains on
    them: the side-feature width of the first split's first row (what the model is built with,
    :func:`~a2gen_hf.training.data_setup.model_config_from_tokenizer`); the raw items and session times are not read
    (a model may not read them: :func:`split_schema_error` checks that they are there), every other check is the
    model's collator's."""
    from .collator import A2GenDataCollator

    first = next(iter(dataset.values()))
    width = len(first[0]["item_side_ids"]) if "item_side_ids" in first.column_names and len(first) else 0
    return A2GenDataCollator(tokenizer, max_actions=tokenizer.max_actions, num_item_side_features=width)


# The rows of each split `a2gen train` collates before its first step: the first and the last few (about 10 ms a
# data folder, against a run that would train, save its model and only then fail on the test split).
SCHEMA_CHECK_ROWS = 8
CHECKED_BEFORE_TRAINING = "Nothing was trained (every split is checked before the first step)."


def split_schema_error(data_dir: str) -> str | None:
    """Why the splits of ``data_dir`` cannot all be collated as a run collates them, or None: a split without a column
    the first split holds (the raw items, the session times, the side features), or a wrong column, width or list
    length in its first or last :data:`SCHEMA_CHECK_ROWS` rows. A value further inside a split (a negative time in
    row 5,000) is found only when that batch is collated."""
    from .collator import COLLATED_COLUMNS, USER_COLUMN, CollationError
    from .folder import load_data_dir

    try:
        dataset, tokenizer, _ = load_data_dir(data_dir)
    except (OSError, ValueError):
        return None  # the run's own loading says what is wrong, as before
    first_name, first = next(iter(dataset.items()))
    # What the first split holds of what a run may read (one that every run reads and it lacks too: the collator's)
    read = [name for name in COLLATED_COLUMNS if name != USER_COLUMN and name in first.column_names]
    collator = schema_collator(dataset, tokenizer)
    for name, split in dataset.items():
        missing = [column for column in read if column not in split.column_names]
        if missing:
            return (f"split {name!r} of {data_dir} has no column(s) {missing}, which split {first_name!r} holds and "
                    f"a run may read (every split is collated alike; the raw items and session times are read by "
                    f"some options only, the others always). {REWRITE_THE_DATA}, or give every split the same "
                    f"columns. {CHECKED_BEFORE_TRAINING}")
        rows = split.with_format("arrow", columns=[column for column in split.column_names if column in read])
        head = min(SCHEMA_CHECK_ROWS, len(split))
        for start in sorted({0, max(head, len(split) - SCHEMA_CHECK_ROWS)}):
            stop = min(start + SCHEMA_CHECK_ROWS, len(split))
            if stop <= start:
                continue
            try:
                collator(rows[start:stop])
            except CollationError as error:
                return f"{rows_message(error, data_dir, name, start, stop - start)} {CHECKED_BEFORE_TRAINING}"
    return None


def test_rows_error(error, data_dir: str) -> str:
    """The collator's refusal ``error`` of a batch of the test split of ``data_dir`` (raised by a run's final scoring,
    which names only the batch's example), said with the row in the split: the test split is collated again, batch by
    batch, until the refused row is found (one collation pass at most, no model: far less than the scoring that
    failed). Without the data folder (or if no row is refused) the error is said with the split alone."""
    from torch.utils.data import DataLoader

    from .collator import CollationError, collation_rows
    from .folder import load_data_dir

    try:
        dataset, tokenizer, _ = load_data_dir(data_dir)
        for _ in located_batches(DataLoader(collation_rows(dataset["test"]), batch_size=1024,
                                             collate_fn=schema_collator(dataset, tokenizer)), data_dir, "test"):
            pass
    except SplitRowsError as located:
        return str(located)
    except (OSError, ValueError, KeyError, CollationError):
        pass
    return rows_message(error, data_dir, "test", None)
