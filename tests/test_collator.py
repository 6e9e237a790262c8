"""Tests of A2GenDataCollator: shapes, dtypes, truncation, padding, time normalisation and masks."""

import inspect
import math
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from a2gen_hf import A2GenConfig
from a2gen_hf.data import A2GenDataCollator, convert_log
from a2gen_hf.modeling_a2gen import A2GenForActionGeneration
from a2gen_hf.tokenization_a2gen import CONFIG_FIELDS, A2GenActionTokenizer

FIXTURES = Path(__file__).resolve().parent / "fixtures"
NAN = float("nan")
FORWARD_NAMES = {
    "user_ids", "item_ids", "item_side_ids", "history_item_ids", "history_item_side_ids", "history_mask",
    "history_action_ids", "history_action_times", "history_time_mask", "labels", "label_times", "label_time_mask",
}  # fmt: skip


@pytest.fixture
def tokenizer():
    return A2GenActionTokenizer(time_log_mean=1.0, time_log_std=2.0)


def example(history_lengths, side=(7, 8), actions=(1, 2, 6), seconds=(0.0, NAN, 30.0), extra=True):
    """A row of the on-disk schema; history item k (oldest first) has id 10 + k and k + 1 events."""
    row = {
        "user_id": 3,
        "item_id": 4,
        "item_side_ids": list(side),
        "history_item_ids": [10 + k for k in range(history_lengths)],
        "history_item_side_ids": [[20 + k, 30 + k] for k in range(history_lengths)],
        "history_action_ids": [[1] + [2] * k for k in range(history_lengths)],
        "history_action_seconds": [[0.0] + [float(k + j) for j in range(k)] for k in range(history_lengths)],
        "action_ids": list(actions),
        "action_seconds": list(seconds),
    }
    if extra:
        row.update(user="u", item="i", session_start=1511544070, oracle_action_prob=[0.1])
    return row


def test_shapes_dtypes_and_keys(tokenizer):
    collator = A2GenDataCollator(tokenizer, max_history_items=10, max_events_per_item=6, max_actions=4)
    batch = collator([example(3), example(1)])
    assert set(batch) == FORWARD_NAMES
    shapes = {name: tuple(value.shape) for name, value in batch.items()}
    assert shapes == {
        "user_ids": (2,), "item_ids": (2,), "item_side_ids": (2, 2), "history_item_ids": (2, 3),
        "history_item_side_ids": (2, 3, 2), "history_mask": (2, 3), "history_action_ids": (2, 3, 3),
        "history_action_times": (2, 3, 3), "history_time_mask": (2, 3, 3), "labels": (2, 5), "label_times": (2, 5),
        "label_time_mask": (2, 5),
    }  # fmt: skip
    for name, value in batch.items():
        expected = torch.float32 if name.endswith("times") else torch.int64
        assert value.dtype == expected, name


def test_keys_are_parameters_of_forward(tokenizer):
    parameters = inspect.signature(A2GenForActionGeneration.forward).parameters
    assert set(A2GenDataCollator(tokenizer)([example(2)])) <= set(parameters)


def test_values_padding_and_time_masks(tokenizer):
    batch = A2GenDataCollator(tokenizer, max_actions=4)([example(3), example(1)])
    assert batch["history_item_ids"].tolist() == [[10, 11, 12], [10, 0, 0]]
    assert batch["history_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["history_item_side_ids"][0, 2].tolist() == [22, 32]
    assert batch["history_item_side_ids"][1, 1].tolist() == [0, 0]
    assert batch["history_action_ids"][0].tolist() == [[1, 0, 0], [1, 2, 0], [1, 2, 2]]
    assert batch["history_time_mask"][0].tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    expected = tokenizer.normalize_seconds(np.array([0.0, 2.0, 3.0]))
    assert batch["history_action_times"][0, 2].numpy() == pytest.approx(expected, abs=1e-6)
    assert batch["history_action_times"][0, 0, 1:].tolist() == [0.0, 0.0]
    # Labels: padded with 0 to max_actions + 1; the unknown time is 0.0 with mask 0.
    assert batch["labels"][0].tolist() == [1, 2, 6, 0, 0]
    assert batch["label_time_mask"][0].tolist() == [1, 0, 1, 0, 0]
    label_times = batch["label_times"][0].tolist()
    assert label_times[0] == pytest.approx((math.log1p(0.0) - 1.0) / 2.0)
    assert label_times[1] == 0.0 and label_times[3:] == [0.0, 0.0]
    assert label_times[2] == pytest.approx((math.log1p(30.0) - 1.0) / 2.0)


def test_truncation_keeps_recent_items_and_first_events(tokenizer):
    collator = A2GenDataCollator(tokenizer, max_history_items=2, max_events_per_item=2, max_actions=1)
    long_sequence = example(5, actions=(1, 2, 3, 4, 6), seconds=(0.0, 1.0, 2.0, 3.0, 4.0))
    batch = collator([long_sequence])
    assert batch["history_item_ids"].tolist() == [[13, 14]]
    assert batch["history_action_ids"].tolist() == [[[1, 2], [1, 2]]]
    assert batch["labels"].tolist() == [[1, 2]]
    assert tuple(batch["label_times"].shape) == (1, 2)


def test_empty_histories_and_no_side_features(tokenizer):
    row = example(0, side=())
    del row["history_item_side_ids"]
    batch = A2GenDataCollator(tokenizer, max_actions=2)([row, row])
    assert set(batch) == FORWARD_NAMES - {"item_side_ids", "history_item_side_ids"}
    assert batch["history_item_ids"].tolist() == [[0], [0]] and batch["history_mask"].sum() == 0
    assert tuple(batch["history_action_ids"].shape) == (2, 1, 1)


def test_missing_columns_and_inconsistent_rows_raise(tokenizer):
    collator = A2GenDataCollator(tokenizer)
    row = example(2)
    del row["history_action_seconds"]
    with pytest.raises(KeyError, match=r"example 1 of the batch has no column\(s\) \['history_action_seconds'\]"):
        collator([example(1), row])
    with pytest.raises(KeyError, match="history_item_side_ids"):
        A2GenDataCollator(tokenizer, num_item_side_features=2)([_without(example(1), "history_item_side_ids")])
    with pytest.raises(ValueError, match="example 0 of the batch has a sequence of 3 action ids but 2 times in 'action_ids'"):
        collator([example(1, seconds=(0.0, 1.0))])
    with pytest.raises(ValueError, match="example 1 of the batch has 1 values in column 'item_side_ids' where 2 are"):
        collator([example(1), example(1, side=(5,))])
    row = example(3)
    row["history_action_ids"] = row["history_action_ids"][:2]
    with pytest.raises(ValueError, match="example 1 of the batch has 2 lists in 'history_action_ids' but 3 history"):
        collator([example(1), row])
    row = example(2)
    row["action_ids"] = None
    with pytest.raises(ValueError, match="list 1 of column 'action_ids' in the batch is None, not a list"):
        collator([example(1), row])
    row = example(2)
    row["history_item_ids"][1] = None
    with pytest.raises(ValueError, match=r"column 'history_item_ids' holds None \(object\), not an integer id"):
        collator([row])


@pytest.mark.parametrize("column, value, message", [
    ("user_id", 3.7, r"column 'user_id' holds 3\.7 \(float64\), not an integer id"),
    ("item_id", True, r"column 'item_id' holds True \(bool\), not an integer id"),
    ("user_id", 2**70, r"column 'user_id' holds 1180591620717411303424 \(object\), not an integer id"),
    ("history_item_ids", [10.9, 11.2], r"column 'history_item_ids' holds 10\.9 \(float64\)"),
    ("history_item_ids", [True, 5], r"column 'history_item_ids' holds True \(int64\), not an integer id"),  # was [1, 5]
    ("history_item_ids", "12", r"list 0 of column 'history_item_ids' in the batch is '12', not a list"),
    ("action_seconds", [0.0, {}, 30.0], r"column 'action_seconds' holds \{\}, not a time in seconds"),
])  # fmt: skip
def test_values_that_are_no_id_or_time_are_refused_on_both_routes(tokenizer, column, value, message):
    """Before, the rows route cut 3.7 to 3, read True as 1 and split the string '12' into the ids 1 and 2, while the
    Arrow route failed inside pyarrow without naming the column. A whole-number float (7.0) is an id on both."""
    collator = A2GenDataCollator(tokenizer)
    with pytest.raises(ValueError, match=message):
        collator([{**example(2), column: value}])
    whole = collator([{**example(2), "user_id": 7.0}])
    assert whole["user_ids"].tolist() == [7] and whole["user_ids"].dtype == torch.long
    if column == "user_id" and value == 3.7:
        table = pa.Table.from_pylist([{**example(2), "user_id": 3.7}])
        with pytest.raises(ValueError, match=r"column 'user_id' \(double\) does not hold integer ids"):
            collator(table)


@pytest.mark.parametrize(("column", "values", "shown"), [
    ("user_id", [True, False], "bool values (the first: True)"),
    ("item_id", ["46571", "12"], "string values (the first: '46571')"),
    ("history_item_ids", [["3", "4"], ["5", "6"]], "string values (the first: '3')"),
])  # fmt: skip
def test_the_arrow_route_refuses_text_and_bool_ids_as_the_rows_route_does(tokenizer, column, values, shown):
    """Arrow cast "547" to 547 and True to 1: a data folder with text id columns trained without a word."""
    collator = A2GenDataCollator(tokenizer)
    rows = [{**example(2), column: value} for value in values]
    with pytest.raises(ValueError, match=rf"column '{column}' holds "):
        collator(rows)
    with pytest.raises(ValueError, match=rf"column '{column}' holds {re.escape(shown)}, not integer ids"):
        collator(pa.Table.from_pylist(rows))


@pytest.mark.parametrize(("column", "value", "shown"), [
    ("history_action_seconds", [["0"], ["0", "1"]], "'0'"),  # numpy parsed "1e3" as 1000 s and "nan" as unknown
    ("history_action_seconds", [[False], [False, True]], "False"),  # True was 1 s
    ("action_seconds", ["0", " 1e3 ", "30"], "'0'"),
])  # fmt: skip
def test_text_and_bools_are_no_times_on_either_route(tokenizer, column, value, shown):
    collator = A2GenDataCollator(tokenizer)
    row = {**example(2), column: value}
    with pytest.raises(ValueError, match=rf"column '{column}' holds {re.escape(shown)}, not a time in seconds"):
        collator([row])
    with pytest.raises(ValueError, match=rf"column '{column}' holds (string|bool) values .*not times in seconds"):
        collator(pa.Table.from_pylist([row]))


@pytest.mark.parametrize("value", [{11, 10}, {10: "a", 11: "b"}])
def test_a_set_or_a_mapping_is_no_history_list(tokenizer, value):
    """A set collated in its own iteration order (history order decides which items are kept), a dict as its keys."""
    with pytest.raises(ValueError, match=r"list 0 of column 'history_item_ids' .* not a list \(a set or mapping has no order"):
        A2GenDataCollator(tokenizer)([{**example(2), "history_item_ids": value}])


@pytest.mark.parametrize(("column", "value", "shown"), [
    ("user_id", [3], "[3]"), ("user_id", np.array([3]), "array([3])"), ("history_item_ids", [[10], [11]], "[10]"),
])  # fmt: skip
def test_a_list_where_one_id_belongs_is_named_as_such(tokenizer, column, value, shown):
    """The message showed the id inside (\"holds 3 (int64), not an integer id\")."""
    with pytest.raises(ValueError, match=rf"column '{column}' holds {re.escape(shown)}, a list where a single value"):
        A2GenDataCollator(tokenizer)([{**example(2), column: value}])


def test_from_config_refuses_a_tokenizer_of_another_config():
    """It normalised every time with the other tokenizer's statistics, without a word."""
    config = A2GenConfig(time_log_mean=2.0, time_log_std=1.5)
    other = A2GenActionTokenizer.from_config(A2GenConfig(time_log_mean=5.0, time_log_std=0.5))
    with pytest.raises(ValueError, match=r"does not match the model config:\n  - time_log_mean: tokenizer has 5\.0"):
        A2GenDataCollator.from_config(config, other)
    assert A2GenDataCollator.from_config(config, A2GenActionTokenizer.from_config(config)).max_actions == config.max_actions


def test_a_batch_that_is_no_list_of_rows_and_rows_of_other_widths_are_refused(tokenizer):
    collator = A2GenDataCollator(tokenizer)
    with pytest.raises(TypeError, match=r"takes a list of examples .* got dict; .*pa\.table\(columns\)"):
        collator({"user_id": [1]})
    with pytest.raises(TypeError, match=r"example 1 of the batch is None, not a dict of columns"):
        collator([example(1), None])
    # Side features read off the widest row: a first row without them no longer drops them for the whole batch.
    with pytest.raises(KeyError, match=r"example 0 of the batch has no column\(s\) \['item_side_ids'"):
        collator([_without(_without(example(1), "item_side_ids"), "history_item_side_ids"), example(1)])


def test_item_keys_are_the_raw_item_ids_keys(tokenizer):
    """item_keys=True (a model whose popularity counts are keyed by raw id): the keys of the rows' raw 'item' ids;
    123 and "123" share a key as they share a bucket; a missing column or id is refused, naming the example."""
    collator = A2GenDataCollator(tokenizer, item_keys=True)
    batch = collator([{**example(1), "item": "v7"}, {**example(2), "item": 123}, {**example(1), "item": "123"}])
    assert batch["item_keys"].dtype == torch.long
    assert batch["item_keys"].tolist() == tokenizer.item_keys(["v7", "123", "123"]).tolist()
    assert batch["item_keys"][0] != batch["item_keys"][1] and batch["item_keys"].min() >= 0
    assert "item_keys" not in A2GenDataCollator(tokenizer)([example(1)])
    with pytest.raises(KeyError, match=r"example 1 of the batch has no column\(s\) \['item'\].*keyed by raw id"):
        collator([{**example(1), "item": "v7"}, example(1, extra=False)])
    with pytest.raises(ValueError, match="example 1 of the batch has no raw 'item' id"):
        collator([{**example(1), "item": "v7"}, {**example(1), "item": None}])
    config = A2GenConfig(target_popularity_features=True, popularity_keys="raw_ids", time_log_mean=1.0, time_log_std=2.0)
    assert A2GenDataCollator.from_config(config, tokenizer).item_keys
    config = A2GenConfig(popularity_keys="raw_ids", time_log_mean=1.0, time_log_std=2.0)
    assert not A2GenDataCollator.from_config(config, tokenizer).item_keys


def _without(row, column):
    return {name: value for name, value in row.items() if name != column}


def test_from_config_and_converted_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))
    result = convert_log(FIXTURES / "kuairand_log.csv", "kuairand", progress=False)
    config = A2GenConfig(max_history_items=3, max_events_per_item=4,
                         **{field: getattr(result.tokenizer, field) for field in CONFIG_FIELDS})
    collator = A2GenDataCollator.from_config(config, result.tokenizer)
    batch = collator(result.dataset["train"].to_list())
    assert "item_side_ids" not in batch
    assert batch["history_item_ids"].shape[1] <= 3 and batch["history_action_ids"].shape[2] <= 4
    # KuaiRand: interactions have unknown times, only start and leave are timed.
    labels, mask = batch["labels"], batch["label_time_mask"]
    start, leave = result.tokenizer.start_action_id, result.tokenizer.end_action_id
    assert bool(((labels == start) | (labels == leave)).eq(mask.bool()).all())


def _random_rows(rng, count, side_features=2, max_items=8, max_events=7, max_labels=9):
    """Rows of every shape the collator cuts: histories longer than the cap, empty ones, repeated starts, NaN times;
    targets as prepare writes them (start first, times in order, the end action only last)."""
    rows = []
    for index in range(count):
        items = int(rng.integers(0, max_items + 1))
        events = [int(rng.integers(1, max_events + 1)) for _ in range(items)]
        labels = int(rng.integers(1, max_labels + 1))
        label_ids = [1, *(int(v) for v in rng.integers(1, 6, labels - 1))]  # no end action in the middle
        if labels > 1 and rng.random() < 0.5:
            label_ids[-1] = 6  # the user left
        label_seconds = [0.0, *np.sort(rng.integers(0, 100, labels - 1)).astype(float)]
        label_seconds = [NAN if position and rng.random() < 0.2 else value for position, value in enumerate(label_seconds)]
        rows.append({
            "user": f"u{index}", "item": f"i{index % 5}", "user_id": int(rng.integers(0, 8)),
            "item_id": int(rng.integers(0, 16)),
            "item_side_ids": [int(v) for v in rng.integers(0, 32, side_features)],
            "history_item_ids": [int(v) for v in rng.integers(1, 16, items)],
            "history_item_side_ids": [[int(v) for v in rng.integers(0, 32, side_features)] for _ in range(items)],
            "history_action_ids": [[int(v) for v in rng.integers(1, 7, n)] for n in events],
            "history_action_seconds": [
                [float(v) if v < 50 else NAN for v in rng.integers(0, 60, n).astype(np.float32)] for n in events
            ],
            "action_ids": label_ids,
            "action_seconds": label_seconds,
            "session_start": 1511544070,
        })  # fmt: skip
    return rows


@pytest.mark.parametrize("drop_repeated_start", [False, True])
@pytest.mark.parametrize("side_features", [0, 2])
def test_arrow_tables_collate_exactly_as_their_rows(tokenizer, drop_repeated_start, side_features):
    """The Arrow route (what ArrowBatches hands a DataLoader) gives the same tensors as the rows, cuts and padding
    included, also for a shuffled dataset's gathered rows and for a slice that starts mid-table."""
    import datasets

    from a2gen_hf.data.collator import ArrowBatches, collation_rows

    rng = np.random.default_rng(side_features + 2 * drop_repeated_start)
    rows = _random_rows(rng, 64, side_features=side_features)
    if not side_features:
        rows = [_without(_without(row, "item_side_ids"), "history_item_side_ids") for row in rows]
    collator = A2GenDataCollator(
        tokenizer, max_history_items=5, max_events_per_item=4, max_actions=4, drop_repeated_start=drop_repeated_start,
        item_keys=True,
    )  # fmt: skip
    rows = [{**row, "note": "a column the collator does not read"} for row in rows]
    shuffled = datasets.Dataset.from_list(rows).shuffle(seed=1)
    wrapped = collation_rows(shuffled)
    assert isinstance(wrapped, ArrowBatches) and collation_rows(rows) is rows
    for indices in ([0], list(range(10, 40)), list(range(64))):
        table = wrapped.__getitems__(indices)
        assert "note" not in table.column_names and "user" in table.column_names  # user: for user_keys
        expected = collator([shuffled[i] for i in indices])
        got = collator(table)
        assert set(got) == set(expected)
        for name in expected:
            assert got[name].dtype == expected[name].dtype, name
            assert torch.equal(got[name], expected[name]), name
    loader = torch.utils.data.DataLoader(wrapped, batch_size=16, collate_fn=collator)
    first = next(iter(loader))
    assert torch.equal(first["labels"], collator([shuffled[i] for i in range(16)])["labels"])


def test_a_list_of_one_row_tables_collates_as_its_rows(tokenizer):
    """What a stream with_format("arrow") yields, one table per example (before: "example 0 of the batch is
    pyarrow.Table ..." with the whole table printed); pandas frames are refused naming the format."""
    import datasets

    rows = _random_rows(np.random.default_rng(0), 12, side_features=2)
    stream = datasets.Dataset.from_list(rows).to_iterable_dataset().with_format("arrow")
    tables = list(stream)
    assert all(isinstance(table, pa.Table) and table.num_rows == 1 for table in tables)
    collator = A2GenDataCollator(tokenizer, max_history_items=5, max_events_per_item=4, max_actions=4)
    expected, got = collator(rows), collator(tables)
    assert all(torch.equal(got[name], expected[name]) for name in expected)
    assert all(torch.equal(collator([t.to_batches()[0] for t in tables])[n], expected[n]) for n in expected)
    with pytest.raises(TypeError, match=r"got pandas DataFrames \(a dataset with_format\('pandas'\)\)"):
        collator([table.to_pandas() for table in tables])


def test_arrow_tables_are_refused_as_their_rows_are(tokenizer):
    import pyarrow as pa

    collator = A2GenDataCollator(tokenizer, item_keys=True)
    table = pa.Table.from_pylist([{**example(2), "item": "a"}, {**example(1), "item": "b"}])
    with pytest.raises(KeyError, match=r"the batch \(an Arrow table\) has no column\(s\) \['action_seconds'\]"):
        collator(table.drop_columns(["action_seconds"]))
    nulls = table.set_column(table.column_names.index("user_id"), "user_id", pa.array([3, None], pa.int64()))
    with pytest.raises(ValueError, match="column 'user_id' holds a null id"):
        collator(nulls)
    bad = pa.Table.from_pylist([{**example(1), "item": "a", "action_seconds": [0.0, 1.0]}])
    with pytest.raises(ValueError, match="example 0 of the batch has a sequence of 3 action ids but 2 times"):
        collator(bad)
    broken = pa.Table.from_pylist([{**example(1), "item": "a", "action_seconds": [0.0, -1.0, 2.0]}])
    with pytest.raises(ValueError, match="example 0 of the batch has action_seconds value -1.0"):
        collator(broken)


def test_targets_begin_with_the_start_and_times_stay_below_the_tokenizers_limit(tokenizer):
    """A target sequence without its start action lost its first action to the start's place, and a time beyond
    1e12 s (which the tokenizer refuses) normalised to z in the hundreds: both refused, naming the example."""
    collator = A2GenDataCollator(tokenizer)
    row = example(2)
    with pytest.raises(ValueError, match="example 0 of the batch has action_ids value 2; a target sequence begins"):
        collator([example(2, actions=(2, 6), seconds=(0.0, 5.0))])
    with pytest.raises(ValueError, match="has action_seconds value 5.0; the start action is at 0 s"):
        collator([example(2, seconds=(5.0, NAN, 30.0))])
    far = example(2, seconds=(0.0, NAN, 2e12))
    with pytest.raises(ValueError, match=r"example 1 of the batch has action_seconds value 2000000000000.0; times must be finite seconds from 0 to 1e\+12"):
        collator([row, far])


@pytest.mark.parametrize("route", ["rows", "arrow"])
def test_targets_that_are_no_timeline_are_refused_naming_the_example(tokenizer, route):
    """An empty target passed as all padding, an end action mid-target and times going back trained the model on
    sequences no log holds; each is refused (also past the label window), ties and NaN times between stay."""
    import pyarrow as pa

    collator = A2GenDataCollator(tokenizer, max_actions=2)

    def collate(*rows):
        return collator(pa.Table.from_pylist(list(rows)) if route == "arrow" else list(rows))

    good = example(2)
    with pytest.raises(ValueError, match=r"example 1 of the batch has an empty target sequence \(action_ids=\[\]\)"):
        collate(good, example(2, actions=(), seconds=()))
    with pytest.raises(ValueError, match="example 0 of the batch has action_ids value 6; the end action 'leave' .* ends a target"):
        collate(example(2, actions=(1, 6, 2), seconds=(0.0, 4.0, 9.0)), good)
    with pytest.raises(ValueError, match="example 1 of the batch has action_seconds value 3.0; a target's known times never go back"):
        collate(good, example(2, actions=(1, 2, 5, 4, 6), seconds=(0.0, 8.0, NAN, 9.0, 3.0)))  # beyond max_actions
    ties = collate(good, example(2, actions=(1, 2, 5, 6), seconds=(0.0, 8.0, NAN, 8.0)))
    assert ties["labels"].tolist()[1] == [1, 2, 5]


@pytest.mark.parametrize("route", ["rows", "arrow"])
def test_user_keys_are_the_raw_users_keys_when_asked_for(tokenizer, route):
    """Evaluation's groups: 63-bit keys of the raw users (users sharing a user_ids bucket stay apart); only with
    user_keys=True. Rows without a user column get none; a row whose user is None among rows with one is refused,
    naming it (before: that batch alone got no user_keys, so evaluation grouped it by the hashed user_ids)."""
    import pyarrow as pa

    from a2gen_hf.tokenization_a2gen import raw_id_keys

    rows = [{**example(1), "user": user} for user in ("u1", "u2", "u1")]

    def collate(collator, batch):
        return collator(pa.Table.from_pylist(batch) if route == "arrow" else batch)

    assert "user_keys" not in collate(A2GenDataCollator(tokenizer), rows)
    keys = collate(A2GenDataCollator(tokenizer, user_keys=True), rows)["user_keys"]
    assert keys.tolist() == raw_id_keys(["u1", "u2", "u1"]).tolist() and keys[0] != keys[1]
    without = [{**row, "user": None} if index == 1 else row for index, row in enumerate(rows)]
    with pytest.raises(ValueError, match=r"in this batch: example 1 has no raw 'user' id \(None\).*remove_columns"):
        collate(A2GenDataCollator(tokenizer, user_keys=True), without)
    no_column = [{key: value for key, value in row.items() if key != "user"} for row in rows]
    assert "user_keys" not in collate(A2GenDataCollator(tokenizer, user_keys=True), no_column)


def test_the_padding_id_inside_an_event_list_is_refused(tokenizer):
    """A 0 inside a target's or a history item's events became a padded slot with a known time (label_time_mask 1);
    the tokenizer refuses '<pad>' as an action."""
    collator = A2GenDataCollator(tokenizer)
    row = example(2)
    target = {**row, "action_ids": [row["action_ids"][0], 0, *row["action_ids"][1:]],
              "action_seconds": [0.0, 0.5, *row["action_seconds"][1:]]}  # fmt: skip
    history = {**row, "history_action_ids": [[*row["history_action_ids"][0], 0], *row["history_action_ids"][1:]],
               "history_action_seconds": [[*row["history_action_seconds"][0], None], *row["history_action_seconds"][1:]]}
    for column, bad in (("action_ids", target), ("history_action_ids", history)):
        for batch in ([row, bad], pa.Table.from_pylist([row, bad])):
            with pytest.raises(ValueError, match=rf"example 1 of the batch has {column} value 0; an event is an action"):
                collator(batch)


def test_caps_must_be_whole_numbers(tokenizer):
    """max_history_items=2.5 passed the check and failed later inside numpy indexing (IndexError)."""
    for value in (2.5, 0, True, "3"):
        with pytest.raises(ValueError, match=r"max_history_items=.* must be a whole number >= 1"):
            A2GenDataCollator(tokenizer, max_history_items=value)
    assert A2GenDataCollator(tokenizer, max_history_items=np.int64(3)).max_history_items == 3
