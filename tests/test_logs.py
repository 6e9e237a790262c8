"""Tests of a2gen_hf.data log conversion: real Taobao samples, Tmall / KuaiRand fixtures, every bad-row message."""

import csv
import dataclasses
import json
import math
from collections import defaultdict
from functools import partial
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from a2gen_hf import cli
from a2gen_hf.data import PRESETS, LogFormatError, SplitRule, convert_log, format_summary
from a2gen_hf.data.partitions import user_partitions

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
TINY = SHARED_DATA / "taobao_userbehavior_tiny.csv"
SAMPLE = SHARED_DATA / "taobao_userbehavior_sample.csv"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TAOBAO_COLUMNS = PRESETS["taobao"].columns
DAY = 86400

needs_shared_data = pytest.mark.skipif(
    not TINY.is_file() or not SAMPLE.is_file(),
    reason=f"the Taobao sample logs are not in {SHARED_DATA} (the shared data folder beside the repository)",
)


@pytest.fixture(scope="module")
def tiny_result():
    return convert_log(TINY, "taobao", on_bad_rows="skip", max_history_items=1000, progress=False)


def reference_sessions(path: Path, gap: float = 3 * DAY) -> dict:
    """Plain-Python reading of the docs/data.md rules: {user: [(item, start, end, actions, seconds), ...]}."""
    rank = {"pv": 1, "fav": 2, "cart": 3, "buy": 4}
    names = {"pv": "click", "fav": "collect", "cart": "cart", "buy": "buy"}
    low, high = PRESETS["taobao"].time_window
    pairs = defaultdict(list)
    with open(path) as handle:
        for user, item, _, behaviour, timestamp in csv.reader(handle):
            if low <= int(timestamp) <= high:
                pairs[user, item].append((int(timestamp), rank[behaviour], names[behaviour]))
    sessions = defaultdict(list)
    for (user, item), events in pairs.items():
        events.sort(key=lambda event: event[:2])
        groups = [[events[0]]]
        for previous, event in zip(events, events[1:]):
            if event[0] - previous[0] > gap:
                groups.append([])
            groups[-1].append(event)
        for group in groups:
            start, end = group[0][0], group[-1][0]
            actions = [name for _, _, name in group]
            seconds = [float(time - start) for time, _, _ in group]
            if actions[0] != "click":
                actions, seconds = ["click", *actions], [0.0, *seconds]
            sessions[user].append((item, start, end, [*actions, "leave"], [*seconds, float(end - start)]))
    return sessions


@needs_shared_data
def test_tiny_log_matches_the_documented_rules_without_leakage(tiny_result):
    tokenizer = tiny_result.tokenizer
    sessions = reference_sessions(TINY)
    dataset = tiny_result.dataset
    assert sum(dataset.num_rows.values()) == sum(map(len, sessions.values())) == tiny_result.summary["sessions"]
    every_seventh = [row for split in dataset.values() for row in split.select(range(0, len(split), 7)).to_list()]
    for row in every_seventh:
        by_item_start = {(item, start): rest for item, start, *rest in sessions[row["user"]]}
        end, actions, seconds = by_item_start[row["item"], row["session_start"]]
        assert tokenizer.convert_ids_to_tokens(row["action_ids"]) == actions
        assert row["action_seconds"] == seconds
        assert row["user_id"] == tokenizer.hash_user(row["user"]) and row["item_id"] == tokenizer.hash_item(row["item"])
        # History: exactly the user's sessions that ended before this one began, ordered by end time (sessions
        # with equal end times may come in any order among themselves).
        earlier = [session for session in sessions[row["user"]] if session[2] < row["session_start"]]
        history = list(zip(row["history_item_ids"], map(len, row["history_action_ids"])))
        assert len(history) == len(earlier)
        for end in sorted({session[2] for session in earlier}):
            group = sorted((tokenizer.hash_item(s[0]), len(s[3])) for s in earlier if s[2] == end)
            assert sorted(history[: len(group)]) == group
            history = history[len(group) :]


@needs_shared_data
def test_tiny_log_splits_by_time_and_fits_time_statistics_on_train(tiny_result):
    dataset, summary = tiny_result.dataset, tiny_result.summary
    starts = {split: np.array(dataset[split]["session_start"]) for split in ("train", "validation", "test")}
    assert all(len(values) > 100 for values in starts.values())
    assert starts["train"].max() < summary["rules"]["validation_start"] <= starts["validation"].min()
    assert starts["validation"].max() < summary["rules"]["test_start"] <= starts["test"].min()
    train_seconds = [s for seconds in dataset["train"]["action_seconds"] for s in seconds[1:]]
    logs = np.log1p(np.array(train_seconds))
    assert tiny_result.tokenizer.time_log_mean == pytest.approx(logs.mean(), rel=1e-6)
    assert tiny_result.tokenizer.time_log_std == pytest.approx(logs.std(), rel=1e-6)
    assert summary["rows_dropped"] == {"outside_window": 1}


@needs_shared_data
def test_history_cap_keeps_the_most_recent_items(tiny_result):
    capped = convert_log(TINY, "taobao", on_bad_rows="skip", max_history_items=3, progress=False)
    full = tiny_result.dataset["test"]
    assert capped.dataset["test"]["history_item_ids"] == [ids[-3:] for ids in full["history_item_ids"]]
    assert capped.dataset["test"]["history_action_seconds"] == [s[-3:] for s in full["history_action_seconds"]]
    assert max(map(len, full["history_item_ids"])) > 3


@needs_shared_data
def test_min_history_keeps_only_sessions_with_enough_history(tiny_result):
    result = convert_log(TINY, "taobao", on_bad_rows="skip", min_history=5, max_history_items=2, progress=False)
    assert all(len(ids) == 2 for ids in result.dataset["train"]["history_item_ids"])
    assert 0 < result.summary["examples"]["train"] < tiny_result.summary["examples"]["train"]


@needs_shared_data
def test_sample_log_error_mode_names_the_first_bad_line():
    with pytest.raises(LogFormatError, match=r"taobao_userbehavior_sample.csv:4171: column 'timestamp' value "):
        convert_log(SAMPLE, "taobao", progress=False)
    # Without the window check, the first bad row is the truncated last line.
    no_window = dataclasses.replace(PRESETS["taobao"], time_window=None)
    with pytest.raises(LogFormatError, match=r"sample.csv:84476: truncated row: 4 of 5 columns, column 'timestamp'"):
        convert_log(SAMPLE, no_window, progress=False)


@needs_shared_data
def test_sample_log_skip_counts_every_dropped_row(tmp_path):
    result = convert_log(SAMPLE, "taobao", output_dir=tmp_path / "out", on_bad_rows="skip", progress=False)
    assert result.summary["rows_read"] == 84476
    assert result.summary["rows_dropped"] == {"outside_window": 35, "truncated_row": 1}
    assert result.summary["rows_kept"] == 84476 - 36
    assert sum(result.summary["examples"].values()) == result.summary["sessions"]
    written = json.loads((tmp_path / "out" / "a2gen_data.json").read_text())
    assert written["rows_dropped"] == {"outside_window": 35, "truncated_row": 1}
    reloaded = datasets.load_from_disk(str(tmp_path / "out"))
    assert reloaded["test"].num_rows == result.summary["examples"]["test"]
    assert (tmp_path / "out" / "tokenizer" / "tokenizer_config.json").is_file()
    assert not (tmp_path / "out" / "_staging").exists()


@needs_shared_data
def test_warn_mode_warns_once_per_reason(caplog, recwarn):
    """Through the package's logger (the CLI prints it as its other warnings, a2gen_data.json keeps it); before, a raw
    Python warning with the code location and source line (`cli.py:194: UserWarning: ...` / `result = convert_log(`)."""
    with caplog.at_level("WARNING", logger="a2gen_hf"):
        result = convert_log(TINY, "taobao", on_bad_rows="warn", progress=False)
    dropped = [record.getMessage() for record in caplog.records if " dropped " in record.getMessage()]
    assert len(dropped) == 1
    assert dropped[0].startswith("taobao_userbehavior_tiny.csv: --on-bad-rows warn dropped 1 of the 4321 rows read "
                                 "(< 0.1 %) as outside_window")
    assert "--time-window none" in dropped[0] and dropped[0] in result.summary["warnings"]
    assert not [warning for warning in recwarn if "dropped" in str(warning.message)]


@needs_shared_data
@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
def test_jsonl_and_parquet_inputs_give_the_csv_examples(tmp_path, file_format):
    rows = TINY.read_text().splitlines()[:600]
    csv_path = tmp_path / "head.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    table = pa.table({name: [row.split(",")[i] for row in rows] for i, name in enumerate(TAOBAO_COLUMNS)})
    table = table.set_column(4, "timestamp", table["timestamp"].cast(pa.int64()))
    path = tmp_path / f"head.{file_format}"
    if file_format == "parquet":
        pq.write_table(table, path, row_group_size=100)
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in table.to_pylist()))
    expected = convert_log(csv_path, "taobao", progress=False).dataset
    converted = convert_log(path, "taobao", progress=False).dataset
    for split in expected:
        assert converted[split].to_dict() == expected[split].to_dict()


@pytest.mark.parametrize("kind", [pa.timestamp("s"), pa.timestamp("ms"), pa.timestamp("us", tz="UTC")])
def test_parquet_native_timestamps_are_read_as_unix_times(tmp_path, kind):
    """Before: every row a bad number ("'2017-11-24 17:21:10.000' is not a number"), and --on-bad-rows skip left none."""
    log = _taobao_log(tmp_path / "log.csv")
    rows = [line.split(",") for line in log.read_text().splitlines()]
    table = pa.table({name: [row[i] for row in rows] for i, name in enumerate(TAOBAO_COLUMNS)})
    seconds = table["timestamp"].cast(pa.int64())
    native = pa.array([int(value) * {"s": 1, "ms": 1000, "us": 1_000_000}[kind.unit] for value in seconds.to_pylist()],
                      pa.int64()).cast(kind)  # fmt: skip
    pq.write_table(table.set_column(4, "timestamp", native), tmp_path / "log.parquet")
    expected = convert_log(log, "taobao", progress=False)
    converted = convert_log(tmp_path / "log.parquet", "taobao", progress=False)
    assert converted.summary["rows_kept"] == len(rows) and converted.summary["examples"] == expected.summary["examples"]
    for split in expected.dataset:
        assert converted.dataset[split].to_dict() == expected.dataset[split].to_dict()
    tmall = dataclasses.replace(PRESETS["taobao"], time_unit="mmdd", year=2015)
    with pytest.raises(LogFormatError, match=r"column 'timestamp' holds dates / timestamps .* reads 'mmdd' numbers"):
        convert_log(tmp_path / "log.parquet", tmall, progress=False)


def test_tmall_day_level_log(tmp_path):
    result = convert_log(FIXTURES / "tmall_user_log.csv", "tmall", progress=False)
    tokenizer = result.tokenizer
    rows = {
        (row["user"], row["item"], row["session_start"]): row
        for split in result.dataset.values()
        for row in split
    }
    nov = {day: int(np.datetime64(f"2015-11-{day:02d}").astype("datetime64[s]").astype(np.int64)) for day in (1, 2, 6)}
    # Same-day click and buy: ties in vocabulary order, all at 0 s.
    same_day = rows["1", "101", nov[1]]
    assert tokenizer.convert_ids_to_tokens(same_day["action_ids"]) == ["click", "buy", "leave"]
    assert same_day["action_seconds"] == [0.0, 0.0, 0.0]
    next_day = rows["1", "102", nov[2]]
    assert tokenizer.convert_ids_to_tokens(next_day["action_ids"]) == ["click", "collect", "leave"]
    assert next_day["action_seconds"] == [0.0, DAY, DAY]
    assert next_day["item_side_ids"][2] == 0  # empty brand_id -> padding (unknown)
    assert next_day["item_side_ids"][0] == tokenizer.hash_side_feature("cat_id", "7")
    # Item 101 of user 2 seen again after 5 days (> 3-day gap): a second session with the first in its history.
    revisit = rows["2", "101", nov[6]]
    assert tokenizer.hash_item("101") in revisit["history_item_ids"]
    assert result.summary["examples"] == {"train": 7, "validation": 1, "test": 3}


def test_kuairand_views_mask_unknown_times():
    result = convert_log(FIXTURES / "kuairand_log.csv", "kuairand", progress=False)
    tokenizer = result.tokenizer
    rows = {(row["user"], row["item"], row["session_start"]): row for split in result.dataset.values() for row in split}
    everything = rows["0", "13", 1649649600]
    assert tokenizer.convert_ids_to_tokens(everything["action_ids"]) == [
        "start", "like", "follow", "forward", "comment", "leave"
    ]
    seconds = everything["action_seconds"]
    assert seconds[0] == 0.0 and seconds[-1] == 45.25 and all(math.isnan(s) for s in seconds[1:-1])
    skipped = rows["1", "15", 1649574000]
    assert tokenizer.convert_ids_to_tokens(skipped["action_ids"]) == ["start", "leave"]
    assert skipped["action_seconds"] == [0.0, 0.0]
    assert result.summary["sessions"] == 10


def _write(tmp_path: Path, text: str, name: str = "log.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = "1,100,5,pv,1511544070\n"


@pytest.mark.parametrize(
    "text, message",
    [
        (GOOD + "1,101,5,look,1511544071\n", r"log.csv:2: column 'behavior_type' has unknown action 'look'; allowed "
         r"values: \['pv', 'fav', 'cart', 'buy'\]"),
        (GOOD + "1,101,5,pv,soon\n", r"log.csv:2: column 'timestamp' is not a number: 'soon'"),
        (GOOD + "1,101,5,pv,\n", r"log.csv:2: column 'timestamp' is empty"),
        (GOOD + ",101,5,pv,1511544071\n", r"log.csv:2: column 'user_id' is empty"),
        (GOOD + "1,101,5,pv\n" + GOOD, r"log.csv:2: truncated row: 4 of 5 columns, column 'timestamp' is missing"),
        (GOOD + "1,101,5,pv,1511544071,9\n", r"log.csv:2: 6 columns where 5 are expected"),
        (GOOD + "\n" + GOOD, r"log.csv:2: the line is empty"),
        (GOOD + "1,101,5,pv,1400000000\n", r"log.csv:2: column 'timestamp' value '1400000000' lies outside"),
        (GOOD + "2,7,5,pv,1511544071\n" + GOOD, r"log.csv:3: duplicate event: user 1, item 100, click at "
         r"1511544070 already on line 1"),
    ],
)
def test_bad_row_messages_name_file_line_column_and_value(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(LogFormatError, match=message) as error:
        convert_log(path, "taobao", progress=False)
    assert "on_bad_rows='skip'" in str(error.value)


@pytest.mark.parametrize("unit, named", [("s", "Unix seconds"), ("ms", "Unix milliseconds")])
def test_a_time_before_1970_is_told_how_to_shift_the_column_not_to_skip_rows(tmp_path, unit, named):
    """From a probe: a log shifted to 1960 (negative Unix times) was refused as a generic negative number, with the
    advice to skip such rows (every row of the log). Now the message says that times before 1970 are not read and how
    to shift the column; skipping still counts the row under negative_number."""
    preset = dataclasses.replace(PRESETS["taobao"], time_unit=unit, time_window=None)
    path = _write(tmp_path, GOOD + "1,101,5,pv,-315355130\n")
    with pytest.raises(LogFormatError) as error:
        convert_log(path, preset, progress=False)
    message = str(error.value)
    assert message.startswith("log.csv:2: column 'timestamp' is negative: '-315355130'; times before 1970 "
                              f"(negative {named}) are not read. Shift the column by a constant")
    assert "`frame['timestamp'] -= frame['timestamp'].min()`" in message
    assert "--on-bad-rows skip" not in message and "would drop every row before 1970" in message
    from a2gen_hf.data.validation import read_validated_log

    skipped = read_validated_log(path, preset, on_bad_rows="skip", progress=False)
    assert skipped.bad_rows.counts == {"negative_number": 1} and skipped.lines.tolist() == [1]


def test_skip_mode_counts_reasons_and_keeps_line_numbers_after_bad_rows(tmp_path):
    text = GOOD + "1,101,5,pv\n" + "\n" + "1,102,5,pv,1511544090\n" + "1,103,5,pv,later\n" + "1,104,5,pv,1511550000\n"
    result = convert_log(_write(tmp_path, text), "taobao", on_bad_rows="skip", progress=False)
    assert result.summary["rows_dropped"] == {"bad_number": 1, "empty_line": 1, "truncated_row": 1}
    assert result.summary["first_dropped"]["bad_number"].startswith("log.csv:5: column 'timestamp'")
    assert result.summary["rows_read"] == 6 and result.summary["sessions"] == 3


def test_file_level_errors(tmp_path):
    with pytest.raises(LogFormatError, match="log.csv: the file is empty"):
        convert_log(_write(tmp_path, ""), "taobao", progress=False)
    with pytest.raises(LogFormatError, match=r"missing column\(s\) \['action_type'\]; its header has"):
        convert_log(_write(tmp_path, "user_id,item_id,cat_id,seller_id,brand_id,time_stamp\n"), "tmall")
    with pytest.raises(LogFormatError, match="has no rows"):
        convert_log(_write(tmp_path, "user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type\n"), "tmall")
    with pytest.raises(LogFormatError, match="cannot tell the format"):
        convert_log(_write(tmp_path, GOOD, "log.dat"), "taobao")
    with pytest.raises(ValueError, match="Unknown preset 'tianchi'"):
        convert_log(_write(tmp_path, GOOD), "tianchi")


def test_tmall_dates_and_kuairand_flags_are_validated(tmp_path):
    header = (FIXTURES / "tmall_user_log.csv").read_text().splitlines()[0]
    with pytest.raises(LogFormatError, match=r"log.csv:2: column 'time_stamp' is not an mmdd date of 2015: '1131'"):
        convert_log(_write(tmp_path, header + "\n1,101,7,55,900,1131,0\n"), "tmall", progress=False)
    lines = (FIXTURES / "kuairand_log.csv").read_text().splitlines()
    bad = lines[1].split(",")
    bad[6] = "2"  # is_like
    with pytest.raises(LogFormatError, match=r"log.csv:3: column 'is_like' must be 0 or 1, got '2'"):
        convert_log(_write(tmp_path, "\n".join([lines[0], lines[2], ",".join(bad)]) + "\n"), "kuairand")


def test_explicit_split_boundaries(tmp_path):
    nov = {day: int(np.datetime64(f"2015-11-{day:02d}").astype("datetime64[s]").astype(np.int64)) for day in (5, 9)}
    rule = SplitRule(validation_start=nov[5], test_start=nov[9])
    result = convert_log(FIXTURES / "tmall_user_log.csv", "tmall", split_rule=rule, progress=False)
    assert max(result.dataset["train"]["session_start"]) < nov[5] <= min(result.dataset["validation"]["session_start"])
    assert max(result.dataset["validation"]["session_start"]) < nov[9] <= min(result.dataset["test"]["session_start"])


def _killed_from_outside(conversion, partition):
    """What the OOM killer does to a worker process."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_from_outside_fails_the_conversion_instead_of_hanging(tmp_path, monkeypatch):
    """Before (multiprocessing.Pool): the parent waited forever, idle, for the lost partition."""
    from a2gen_hf.data import logs

    monkeypatch.setattr(logs, "_write_examples", _killed_from_outside)
    with pytest.raises(RuntimeError, match=r"A worker process died .*--partition-rows, --num-proc"):
        convert_log(_taobao_log(tmp_path / "log.csv"), "taobao", output_dir=tmp_path / "out", partition_rows=40,
                    num_proc=2, progress=False)  # fmt: skip
    assert not (tmp_path / "out").exists() and not [path for path in tmp_path.iterdir() if "staging" in path.name]


def test_more_partitions_than_open_files_are_refused_up_front(tmp_path, monkeypatch):
    """Before: OSError "Too many open files" midway, from the partition writers. (The limit is reported lower, not
    set lower: a pytest worker may already hold more files than 256.)"""
    import resource

    log = _taobao_log(tmp_path / "log.csv", users=60)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    monkeypatch.setattr(resource, "getrlimit", lambda which: (256, hard))
    with pytest.raises(ValueError, match=r"partition_rows=1 makes \d+ partitions, .*limit of 256 open files"):
        convert_log(log, "taobao", output_dir=tmp_path / "out", partition_rows=1, num_proc=1, progress=False)
    assert not (tmp_path / "out").exists()


def test_the_tokenizer_given_is_left_as_it_is(tmp_path):
    """Before: convert_log refitted the caller's tokenizer in place (time statistics, data-sized buckets, side-feature
    fields), even when the conversion then failed."""
    from a2gen_hf import A2GenActionTokenizer

    preset = PRESETS["taobao"]
    given = A2GenActionTokenizer(action_names=list(preset.action_names), start_action=preset.start_action,
                                 end_action=preset.end_action, item_buckets=1000, user_buckets=100)  # fmt: skip
    before = given.get_vocab(), given.time_log_mean, given.time_log_std, given.side_feature_fields
    result = convert_log(_taobao_log(tmp_path / "log.csv"), "taobao", tokenizer=given, progress=False)
    assert result.tokenizer is not given and result.tokenizer.time_log_mean != given.time_log_mean
    assert result.tokenizer.item_buckets == 1000 and result.tokenizer.side_feature_fields == ["category_id"]
    with pytest.raises(ValueError, match="no training examples"):
        convert_log(tmp_path / "log.csv", "taobao", tokenizer=given, min_history=10**6, progress=False,
                    data_sized_buckets=("item_buckets",))  # fmt: skip
    assert (given.get_vocab(), given.time_log_mean, given.time_log_std, given.side_feature_fields) == before
    assert given.item_buckets == 1000


def test_cli_prepare_writes_the_dataset_and_prints_a_summary(tmp_path, capsys):
    output = tmp_path / "prepared"
    code = cli.main(["prepare", "--preset", "tmall", "--input", str(FIXTURES / "tmall_user_log.csv"),
                     "--output", str(output)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "examples: train=7, validation=1, test=3" in printed and "rows dropped: none" in printed
    assert "actions (train): click=" in printed
    assert datasets.load_from_disk(str(output))["train"].num_rows == 7
    assert json.loads((output / "a2gen_data.json").read_text())["preset"]["name"] == "tmall"


def test_cli_prepare_partition_flags_reach_the_conversion(tmp_path, capsys):
    output = tmp_path / "partitioned"
    code = cli.main(["prepare", "--preset", "tmall", "--input", str(FIXTURES / "tmall_user_log.csv"),
                     "--output", str(output), "--partition-rows", "5", "--num-proc", "1"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((output / "a2gen_data.json").read_text())
    assert summary["partitions"] > 1 and summary["examples"] == {"train": 7, "validation": 1, "test": 3}


def test_cli_prepare_reports_bad_rows_as_an_error(tmp_path, capsys):
    path = _write(tmp_path, GOOD + "1,101,5,look,1511544071\n")
    code = cli.main(["prepare", "--preset", "taobao", "--input", str(path), "--output", str(tmp_path / "out")])
    assert code == 2
    assert "log.csv:2: column 'behavior_type' has unknown action 'look'" in capsys.readouterr().err


def sorted_examples(split: datasets.Dataset) -> pa.Table:
    """A split's examples in a canonical order, (user, item, session start), to compare across partitionings."""
    table = split.data.table
    keys = [("user", "ascending"), ("item", "ascending"), ("session_start", "ascending")]
    return table.take(pc.sort_indices(table, keys)).combine_chunks()


def assert_same_conversion(partitioned, single) -> None:
    """Same examples per split, bad rows, sessions, action frequencies and (up to rounding) time statistics."""
    for split in ("train", "validation", "test"):
        assert sorted_examples(partitioned.dataset[split]).equals(sorted_examples(single.dataset[split])), split
    for key in ("rows_read", "rows_kept", "rows_dropped", "first_dropped", "sessions", "examples", "rules"):
        assert partitioned.summary[key] == single.summary[key], key
    assert partitioned.summary["action_frequencies"] == single.summary["action_frequencies"]
    for key in ("time_log_mean", "time_log_std"):
        assert partitioned.summary[key] == pytest.approx(single.summary[key], rel=1e-6, abs=1e-6)
        assert getattr(partitioned.tokenizer, key) == partitioned.summary[key]


@needs_shared_data
def test_partitioned_conversion_gives_the_single_partition_examples(tmp_path):
    single = convert_log(SAMPLE, "taobao", on_bad_rows="skip", progress=False, num_proc=1)
    assert single.summary["partitions"] == 1 and single.dataset["train"].cache_files == []  # in memory
    partitioned = convert_log(
        SAMPLE, "taobao", output_dir=tmp_path / "out", on_bad_rows="skip", progress=False, partition_rows=20_000,
        num_proc=2,
    )
    assert partitioned.summary["partitions"] == 6  # 5 of ~20,000 rows, rounded up to a multiple of the 2 workers
    assert_same_conversion(partitioned, single)
    # The folder is a save_to_disk layout: one Arrow file per partition and split, memory-mapped back.
    assert sorted(path.name for path in (tmp_path / "out" / "test").glob("*.arrow")) == [
        f"data-{index:05d}-of-00006.arrow" for index in range(6)
    ]
    reloaded = datasets.load_from_disk(str(tmp_path / "out"))
    assert {split: reloaded[split].num_rows for split in reloaded} == single.summary["examples"]
    assert not [path for path in (tmp_path / "out").iterdir() if path.name.startswith("_a2gen_partitions_")]


def users_in_distinct_partitions(count: int, num_partitions: int) -> list[str]:
    """``count`` user ids whose rows land in ``count`` different partitions."""
    candidates = [str(user) for user in range(1, 200)]
    first_user = {}
    for user, partition in zip(candidates, user_partitions(pa.array(candidates), num_partitions)):
        first_user.setdefault(int(partition), user)
    return list(first_user.values())[:count]


@pytest.mark.parametrize("on_bad_rows", ["skip", "error"])
def test_duplicates_and_bad_rows_in_different_partitions(tmp_path, on_bad_rows):
    late, early, other = users_in_distinct_partitions(3, num_partitions=4)
    t = 1511544070
    rows = [
        f"{late},100,5,pv,{t}",
        f"{early},200,5,pv,{t + 10}",
        f"{other},300,5,pv,{t + 20}",
        f"{early},200,5,pv,{t + 10}",  # line 4: the earliest duplicate, in one partition
        f"{other},301,5,look,{t + 30}",  # line 5: a bad row, in another
        f"{late},100,5,pv,{t}",  # line 6: a later duplicate, in a third
        f"{late},101,5,cart,{t + 86400}",
        f"{early},201,5,pv,{t + 5 * 86400}",
        f"{other},302,5,buy,{t + 8 * 86400}",
        f"{late},100,5,buy,{t + 8 * 86400}",
        f"{early},200,5,fav,{t + 7 * 86400}",
        f"{other},300,5,pv,{t + 4 * 86400}",
    ]
    if on_bad_rows == "error":
        del rows[4]  # without the bad row, the earliest duplicate is the first error whatever the partitioning
    path = _write(tmp_path, "\n".join(rows) + "\n")
    convert = partial(convert_log, path, "taobao", on_bad_rows=on_bad_rows, progress=False)
    if on_bad_rows == "error":
        for options in ({"num_proc": 1}, {"partition_rows": 3, "num_proc": 2}):
            with pytest.raises(LogFormatError, match=rf"log.csv:4: duplicate event: user {early}, item 200, click "):
                convert(**options)
        return
    single = convert(num_proc=1)
    partitioned = convert(partition_rows=3, num_proc=2)
    assert partitioned.summary["partitions"] == 4
    assert single.summary["rows_dropped"] == {"duplicate_event": 2, "unknown_action": 1}
    assert single.summary["first_dropped"]["duplicate_event"].startswith("log.csv:4: duplicate event: ")
    assert_same_conversion(partitioned, single)


def test_empty_splits_are_written_and_load_but_not_an_empty_training_split(tmp_path):
    """Validation and test splits may be empty (a small log); a conversion without a training example is refused,
    naming what emptied it (before: written, and training failed with an IndexError)."""
    result = convert_log(_taobao_log(tmp_path / "log.csv"), "taobao", output_dir=tmp_path / "out", progress=False,
                         split_rule=SplitRule(validation_fraction=0.0, test_fraction=0.0))  # fmt: skip
    assert result.summary["examples"]["validation"] == 0 and result.summary["examples"]["train"] > 0
    assert result.summary["examples"]["test"] == 0  # before: the sessions at the last start were tested
    assert datasets.load_from_disk(str(tmp_path / "out"))["validation"].num_rows == 0
    only_validation = convert_log(_taobao_log(tmp_path / "log2.csv"), "taobao", progress=False,
                                  split_rule=SplitRule(validation_fraction=0.3, test_fraction=0.0)).summary  # fmt: skip
    assert only_validation["examples"]["test"] == 0 and only_validation["examples"]["validation"] > 0
    with pytest.raises(ValueError, match=r"tmall_user_log\.csv: no training examples .*min_history=100 keeps only"):
        convert_log(FIXTURES / "tmall_user_log.csv", "tmall", output_dir=tmp_path / "out2", min_history=100)
    assert not (tmp_path / "out2").exists()


def test_an_empty_train_split_fails_without_leaving_a_half_written_dataset(tmp_path):
    path = _write(tmp_path, GOOD + "1,101,5,pv,1511544090\n")
    output = tmp_path / "out"
    everything_validation = SplitRule(validation_start=0, test_start=2e9)
    with pytest.raises(ValueError, match=r"log\.csv: no training examples .*the split boundaries leave the training"):
        convert_log(path, "taobao", output_dir=output, split_rule=everything_validation, progress=False)
    assert not output.exists() and sorted(path.name for path in tmp_path.iterdir()) == [".out.a2gen-lock", "log.csv"]
    # A failing re-prepare leaves the earlier dataset (and nothing else) as it was.
    convert_log(path, "taobao", output_dir=output, progress=False)
    before = {item.relative_to(output): item.read_bytes() for item in output.rglob("*") if item.is_file()}
    with pytest.raises(ValueError, match=r"log\.csv: no training examples .*the split boundaries leave the training"):
        convert_log(path, "taobao", output_dir=output, split_rule=everything_validation, progress=False)
    assert {item.relative_to(output): item.read_bytes() for item in output.rglob("*") if item.is_file()} == before


def test_a_time_split_that_leaves_validation_empty_is_warned_about(tmp_path, caplog):
    """A few rows far after the rest stretch the span: validation gets no session (before: prepare said nothing and
    train refused later in terms of the Python API)."""
    import logging
    import re

    no_window = dataclasses.replace(PRESETS["taobao"], time_window=None)
    lines = _taobao_log(tmp_path / "log.csv", users=60).read_text().splitlines()
    late = [f"{3000 + user},7,1,pv,{1_600_000_000 + user}" for user in range(3)]  # three sessions in 2020
    (tmp_path / "late.csv").write_text("\n".join(lines + late) + "\n")
    with caplog.at_level(logging.WARNING, logger="a2gen_hf.data.logs"):
        result = convert_log(tmp_path / "late.csv", no_window, output_dir=tmp_path / "out", progress=False)
    assert result.summary["examples"]["validation"] == 0 and result.summary["examples"]["test"] == 3
    assert re.search(r"late\.csv: the time split leaves validation no example .*sessions start from 2017-.* to "
                     r"2020-.*--validation-start", caplog.text)  # fmt: skip
    recorded = json.loads((tmp_path / "out" / "a2gen_data.json").read_text())["warnings"]  # for a later reader too
    assert any(warning.startswith("late.csv: the time split leaves validation no example") for warning in recorded)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="a2gen_hf.data.logs"):  # asked for no validation: nothing to say
        convert_log(tmp_path / "late.csv", no_window, output_dir=tmp_path / "none", progress=False,
                    split_rule=SplitRule(validation_fraction=0))  # fmt: skip
    assert "leaves validation" not in caplog.text
    recorded = json.loads((tmp_path / "none" / "a2gen_data.json").read_text())["warnings"]
    assert not any("leaves validation" in warning for warning in recorded)  # (this log has no fav or cart: said so)


# ---------------------------------------------------------------------------------------------- safe output folders


def test_a_time_split_stretched_by_outlying_times_is_refused_or_warned_about(tmp_path, caplog):
    """A few rows at time 0 (a default for a missing time) under --time-window none stretch the span the split takes
    fractions of: before, 12 of 9,269 examples were training (exit 0, absurd metrics), and a log whose rows all
    share one time got "no timed actions after the start to fit the time statistics on"."""
    import logging

    no_window = dataclasses.replace(PRESETS["taobao"], time_window=None)
    log = _taobao_log(tmp_path / "log.csv", users=60)
    lines = log.read_text().splitlines()
    outlying = [f"{1000 + user},7,1,pv,0" for user in range(2)]  # two sessions in 1970
    (tmp_path / "zeros.csv").write_text("\n".join(lines + outlying) + "\n")
    with pytest.raises(ValueError, match=r"zeros\.csv: the time split leaves training \d+ of \d+ examples .*"
                                         r"from 1970-01-01 00:00:00 UTC .*--validation-start, --test-start"):
        convert_log(tmp_path / "zeros.csv", no_window, output_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    # Many more early sessions: a small training share is a warning, not an error.
    early = [f"{2000 + user},7,1,pv,{1_400_000_000 + user}" for user in range(20)]
    (tmp_path / "early.csv").write_text("\n".join(lines + early) + "\n")
    with caplog.at_level(logging.WARNING, logger="a2gen_hf.data.logs"):
        result = convert_log(tmp_path / "early.csv", no_window, output_dir=tmp_path / "early", progress=False)
    assert "the time split leaves training 20 of" in caplog.text and result.summary["examples"]["train"] == 20
    same = [line.rsplit(",", 1)[0] + ",1511544000" for line in lines]
    (tmp_path / "same.csv").write_text("\n".join(same) + "\n")
    with pytest.raises(ValueError, match=r"every session starts at the same second \(2017-11-24 17:20:00 UTC\)"):
        convert_log(tmp_path / "same.csv", "taobao", output_dir=tmp_path / "same", progress=False,
                    on_bad_rows="skip")  # fmt: skip


def _taobao_log(path: Path, users: int = 30, seed: int = 0) -> Path:
    """A small valid Taobao log: each user clicks and sometimes buys items over the preset's time window."""
    rng = np.random.default_rng(seed)
    lines = []
    for user in range(users):
        for _event in range(6):
            time = 1511544000 + int(rng.integers(0, 700_000))
            lines.append(f"{user},{int(rng.integers(1, 40))},{int(rng.integers(1, 5))},{rng.choice(['pv', 'buy'])},{time}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _files(folder: Path) -> dict[str, bytes]:
    return {str(item.relative_to(folder)): item.read_bytes() for item in sorted(folder.rglob("*")) if item.is_file()}


def test_a_second_prepare_into_a_locked_folder_is_refused(tmp_path):
    import fcntl
    import os

    log, output = _taobao_log(tmp_path / "log.csv"), tmp_path / "out"
    descriptor = os.open(tmp_path / ".out.a2gen-lock", os.O_RDWR | os.O_CREAT)  # another writer holds the lock
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.pwrite(descriptor, b"4242\n", 0)
        with pytest.raises(ValueError, match=r"out is being written by another a2gen run \(process 4242\)"):
            convert_log(log, "taobao", output_dir=output, progress=False)
    finally:
        os.close(descriptor)
    assert not output.exists()
    convert_log(log, "taobao", output_dir=output, progress=False)  # the lock died with its holder
    assert (output / "a2gen_data.json").is_file()


def test_prepare_refuses_outputs_it_must_not_replace(tmp_path):
    log = _taobao_log(tmp_path / "log.csv")
    with pytest.raises(ValueError, match="is the input log .* or lies inside it"):
        convert_log(log, "taobao", output_dir=log, progress=False)
    with pytest.raises(ValueError, match="is the input log .* or lies inside it"):
        convert_log(log, "taobao", output_dir=log / "out", progress=False)
    with pytest.raises(ValueError, match="lies inside the output folder"):
        convert_log(log, "taobao", output_dir=tmp_path, progress=False)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"holds files that a2gen prepare did not write \(notes.txt\)"):
        convert_log(log, "taobao", output_dir=mine, progress=False)
    assert (mine / "notes.txt").read_text() == "keep me"
    for gap in (float("nan"), float("inf"), -1.0):
        with pytest.raises(ValueError, match="session_gap_seconds=.* must be a finite number"):
            convert_log(log, "taobao", output_dir=tmp_path / "gap", session_gap_seconds=gap, progress=False)


# Each kill point: what the forked child process patches to kill itself with SIGKILL there.
KILL_POINTS = {
    "while reading": "PartitionWriter.write",
    "before the switch": "switch_in",
    "between the two renames of a switch": "rename",
    "after the switch, before the previous folder is deleted": "rmtree",
}


def _prepare_and_die(log: Path, output: Path, point: str) -> None:
    """In a forked child: convert ``log`` into ``output`` and SIGKILL the process at ``point``."""
    import os
    import signal

    import a2gen_hf.data.logs as logs
    import a2gen_hf.output_folders as folders

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "PartitionWriter.write":
        logs.PartitionWriter.write = die
    elif point == "switch_in":
        logs.switch_in = die
    else:
        folders._exchange = lambda first, second: False  # the two-rename switch of systems without renameat2
        module = folders.os if point == "rename" else folders.shutil
        real, mark = getattr(module, point), "a2gen-staging" if point == "rename" else "a2gen-previous"

        def die_on_mark(path, *args, **kwargs):  # rename(staging, target) / rmtree(previous): the switch's last steps
            if mark in str(path):
                die()
            return real(path, *args, **kwargs)

        setattr(module, point, die_on_mark)
    logs.convert_log(log, "taobao", output_dir=output, progress=False, num_proc=1)


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_a_killed_prepare_leaves_the_old_dataset_or_the_new_one_and_the_next_run_cleans_up(tmp_path, point):
    import os

    old_log, new_log = _taobao_log(tmp_path / "old.csv", seed=0), _taobao_log(tmp_path / "new.csv", users=40, seed=1)
    output = tmp_path / "out"
    convert_log(old_log, "taobao", output_dir=output, progress=False)
    old = _files(output)
    child = os.fork()  # a child process (cheaper to start than a new interpreter) that dies at the kill point
    if child == 0:
        try:
            _prepare_and_die(new_log, output, KILL_POINTS[point])
        finally:
            os._exit(3)  # reached only if the kill point never came
    _, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9, status
    leftovers = sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".out.a2gen-"))
    assert leftovers[0] == ".out.a2gen-lock" and len(leftovers) > 1  # the killed run's staging and / or previous folder
    if point.startswith("after the switch"):
        assert json.loads((output / "a2gen_data.json").read_text())["source"] == str(new_log)
    elif output.exists():
        assert _files(output) == old  # never a mix: the complete old dataset
    # The next run on the folder repairs it (the old dataset is put back first), then replaces it whole.
    result = convert_log(new_log, "taobao", output_dir=output, progress=False)
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".out.")) == [".out.a2gen-lock"]
    assert json.loads((output / "a2gen_data.json").read_text())["source"] == str(new_log)
    assert len(datasets.load_from_disk(str(output))["train"]) == result.summary["examples"]["train"]


# ------------------------------------------------------------------------------------- one row per physical line


def _numbered_log(count: int) -> list[str]:
    return [f"{row % 7},{100 + row},5,pv,{1511544070 + row}" for row in range(count)]


def test_a_stray_quote_loses_no_line_and_shifts_no_line_number(tmp_path):
    lines = _numbered_log(200)
    lines[80] = '1,"101,5,pv,1511544071'  # line 81: an unbalanced quote (unquoted logs: part of the item id)
    lines[149] = "1,102,5,look,1511544072"  # line 150: a bad action
    path = _write(tmp_path, "\n".join(lines) + "\n")
    result = convert_log(path, "taobao", on_bad_rows="skip", progress=False)
    assert result.summary["rows_read"] == 200 and result.summary["rows_dropped"] == {"unknown_action": 1}
    assert result.summary["first_dropped"]["unknown_action"].startswith("log.csv:150: ")
    with pytest.raises(LogFormatError, match=r"log\.csv:150: column 'behavior_type' has unknown action 'look'"):
        convert_log(path, "taobao", progress=False)


def test_a_quoted_preset_refuses_an_unbalanced_quote_line_by_line(tmp_path):
    preset = dataclasses.replace(PRESETS["taobao"], name="quoted", quote_char='"')
    lines = _numbered_log(50)
    lines[9] = '1,"10,1",5,pv,1511544071'  # a quoted value holding the delimiter: one value
    lines[20] = '1,"101,5,pv,1511544071'  # line 21: unbalanced
    path = _write(tmp_path, "\n".join(lines) + "\n")
    result = convert_log(path, preset, on_bad_rows="skip", progress=False)
    assert result.summary["rows_read"] == 50 and result.summary["rows_dropped"] == {"unbalanced_quote": 1}
    with pytest.raises(LogFormatError, match=r"log\.csv:21: the line has an unbalanced \""):
        convert_log(path, preset, progress=False)


def test_a_stray_carriage_return_is_one_bad_line_and_shifts_no_line_number(tmp_path):
    """pyarrow ends a row at a lone \\r, while the line checks counted only \\n: a stray \\r made one line two bad rows
    and shifted every later line number; \\r\\r\\n line ends read each line as a row and an empty line."""
    lines = _numbered_log(300)
    lines[99] = "1,101,5,p\rv,1511544071"  # line 100
    lines[199] = "1,102,5,zz,1511544072"  # line 200: a bad action
    path = _write(tmp_path, "\n".join(lines) + "\n")
    result = convert_log(path, "taobao", on_bad_rows="skip", progress=False)
    assert result.summary["rows_read"] == 300
    assert result.summary["rows_dropped"] == {"carriage_return": 1, "unknown_action": 1}
    assert result.summary["first_dropped"]["unknown_action"].startswith("log.csv:200: ")
    with pytest.raises(LogFormatError, match=r"log\.csv:100: a carriage return \(\\r\) at column 10 is not part of"):
        convert_log(path, "taobao", progress=False)
    doubled = _write(tmp_path, "\r\r\n".join(_numbered_log(20)) + "\r\r\n", "doubled.csv")
    with pytest.raises(LogFormatError, match=r"doubled\.csv:1: a carriage return .* `tr -d '\\r'"):
        convert_log(doubled, "taobao", progress=False)
    assert _write(tmp_path, "\r\n".join(lines[:99]) + "\r\n", "crlf.csv").exists()  # \r\n stays a line end
    assert convert_log(tmp_path / "crlf.csv", "taobao", progress=False).summary["rows_read"] == 99


@pytest.mark.parametrize("compressed", [False, True])
def test_carriage_return_line_ends_read_as_newlines(tmp_path, compressed):
    """Logs whose lines end with \\r alone (classic Mac OS, Excel's "CSV (Macintosh)"): before, the line checks saw
    one line (over 1 MiB: refused; one bad byte: the whole file one bad row), and a quoted preset failed with a
    traceback from Python's csv module."""
    import gzip

    lines = _numbered_log(3000)
    lines[149] = "1,102,5,zz,1511544072"  # line 150: a bad action
    lines[2499] = "1,103,5,pv,\xff1511544073"  # line 2500: not UTF-8
    data = ("\r".join(lines) + "\r").encode("utf-8", "surrogateescape").replace("\xff".encode(), b"\xff")
    lf_data = data.replace(b"\r", b"\n")
    name = "mac.csv.gz" if compressed else "mac.csv"
    (tmp_path / name).write_bytes(gzip.compress(data) if compressed else data)
    (tmp_path / "unix.csv").write_bytes(lf_data)
    quoted = dataclasses.replace(PRESETS["taobao"], name="quoted", quote_char='"')
    for preset in ("taobao", quoted):
        mac = convert_log(tmp_path / name, preset, on_bad_rows="skip", progress=False).summary
        unix = convert_log(tmp_path / "unix.csv", preset, on_bad_rows="skip", progress=False).summary
        assert mac["rows_read"] == 3000 and mac["rows_dropped"] == {"unknown_action": 1, "not_utf8": 1}
        assert mac["first_dropped"]["unknown_action"].startswith(f"{name}:150: ")
        assert mac["first_dropped"]["not_utf8"].startswith(f"{name}:2500: ")
        assert mac["examples"] == unix["examples"]


def test_an_empty_compressed_log_is_named_empty(tmp_path):
    import gzip

    (tmp_path / "empty.csv.gz").write_bytes(gzip.compress(b""))
    with pytest.raises(LogFormatError, match=r"empty\.csv\.gz: the file is empty once decompressed; it needs one row"):
        convert_log(tmp_path / "empty.csv.gz", "taobao", progress=False)


@pytest.mark.parametrize("neighbour", [None, "1,101,5,pv,not-a-time"])
def test_a_number_s_verdict_does_not_depend_on_its_batch(tmp_path, neighbour):
    lines = _numbered_log(20)
    lines[4] = "1,200,5,pv,1.5115440e9"  # scientific notation: a number
    lines[5] = "1,201,5,pv,1e999"  # overflows to inf: not a number
    if neighbour:
        lines[6] = neighbour
    path = _write(tmp_path, "\n".join(lines) + "\n")
    result = convert_log(path, "taobao", on_bad_rows="skip", progress=False)
    dropped = {"bad_number": 2 if neighbour else 1}
    assert result.summary["rows_dropped"] == dropped and result.summary["rows_read"] == 20
    assert result.summary["first_dropped"]["bad_number"].startswith("log.csv:6: column 'timestamp' is not a number")


def test_a_50_mb_line_and_bytes_that_are_not_utf8_are_bad_rows_with_their_line(tmp_path):
    lines = [line.encode() for line in _numbered_log(30)]
    lines[2] = b"1,100,5,pv," + b"9" * (50 << 20)  # line 3: 50 MB
    lines[9] = b"1,1\xff0,5,pv,1511544079"  # line 10: latin-1, not UTF-8
    path = tmp_path / "log.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = convert_log(path, "taobao", on_bad_rows="skip", progress=False)
    assert result.summary["rows_read"] == 30
    assert result.summary["rows_dropped"] == {"line_too_long": 1, "not_utf8": 1}
    assert result.summary["first_dropped"]["line_too_long"].startswith("log.csv:3: the line is")
    assert result.summary["first_dropped"]["not_utf8"].startswith("log.csv:10: byte b'\\xff' at column 4 is not UTF-8")
    with pytest.raises(LogFormatError, match=r"log\.csv:3: the line is .*longer than 1,048,576 bytes"):
        convert_log(path, "taobao", progress=False)


def test_cli_prepare_time_window_keeps_a_log_of_another_period(tmp_path, capsys):
    """A Taobao-format log a year later than the official window: refused with a message that names the way out,
    kept whole with --time-window none, cut to a window of its own with --time-window FIRST,LAST."""
    log = _taobao_log(tmp_path / "log.csv")
    year = 365 * 86400
    rows = [line.split(",") for line in log.read_text().splitlines()]
    log.write_text("".join(f"{u},{i},{c},{a},{int(t) + year}\n" for u, i, c, a, t in rows))
    argv = ["prepare", "--preset", "taobao", "--input", str(log), "--quiet"]
    assert cli.main([*argv, "--output", str(tmp_path / "refused"), "--on-bad-rows", "skip"]) == 2
    error = capsys.readouterr().err
    assert f"no valid rows are left ({len(rows)} outside_window). {len(rows)} of them lie outside" in error
    assert "--time-window none" in error
    assert cli.main([*argv, "--output", str(tmp_path / "all")]) == 2
    assert "lies outside the time window 1511539200..1512316799" in capsys.readouterr().err
    assert cli.main([*argv, "--output", str(tmp_path / "all"), "--time-window", "none"]) == 0
    summary = json.loads((tmp_path / "all" / "a2gen_data.json").read_text())
    assert summary["rows_kept"] == len(rows) and summary["preset"]["time_window"] is None
    middle = sorted(int(t) + year for *_, t in rows)[len(rows) // 2]
    window = f"{middle},{middle + 10 * 86400}"
    assert cli.main([*argv, "--output", str(tmp_path / "cut"), "--time-window", window, "--on-bad-rows", "skip"]) == 0
    summary = json.loads((tmp_path / "cut" / "a2gen_data.json").read_text())
    kept = sum(int(t) + year >= middle for *_, t in rows)
    assert summary["rows_kept"] == kept and summary["rows_dropped"] == {"outside_window": len(rows) - kept}
    for bad, message in (("1,0", "FIRST (1) is after LAST (0)"), ("x", "is not FIRST,LAST")):
        assert cli.main([*argv, "--output", str(tmp_path / "bad"), "--time-window", bad]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists() and not (tmp_path / "refused").exists()


def test_a_header_line_in_a_header_less_log_is_read_as_a_header(tmp_path):
    """Line 1 that names the preset's columns (in any case) is no event: the data read are those of the file without
    it, line numbers stay the file's own, and the summary says so. A first line with other names is a bad row."""
    plain = _taobao_log(tmp_path / "plain.csv")
    with_header = tmp_path / "header.csv"
    with_header.write_text("User_ID, item_id,category_id,behavior_type,TIMESTAMP\n" + plain.read_text())
    expected = convert_log(plain, "taobao", output_dir=tmp_path / "a", progress=False)
    result = convert_log(with_header, "taobao", output_dir=tmp_path / "b", progress=False)
    assert result.summary["header_line_skipped"] and not expected.summary["header_line_skipped"]
    assert result.summary["rows_read"] == expected.summary["rows_read"]
    assert result.summary["examples"] == expected.summary["examples"]
    for split in expected.dataset:
        assert result.dataset[split][:] == expected.dataset[split][:]
    assert "read as a header" in format_summary(result.summary)
    bad = tmp_path / "bad.csv"
    bad.write_text(with_header.read_text().replace("behavior_type", "behavior", 1) + "1,2,3,pv,1\n")
    with pytest.raises(LogFormatError, match=r"bad\.csv:1: column 'behavior_type' has unknown action 'behavior'"):
        convert_log(bad, "taobao", output_dir=tmp_path / "c", progress=False)
    skipped = convert_log(bad, "taobao", output_dir=tmp_path / "d", on_bad_rows="skip", progress=False).summary
    assert skipped["rows_dropped"] == {"outside_window": 1, "unknown_action": 1}
    assert skipped["first_dropped"]["outside_window"].startswith(f"bad.csv:{expected.summary['rows_read'] + 2}:")


def test_milliseconds_read_as_seconds_are_refused_with_the_unit_that_reads_them(tmp_path, capsys):
    """A Taobao-format log with millisecond times: each time read as seconds lies after the year 5000, a bad row
    (implausible_time, not outside_window) whose message names --time-unit ms, even with --time-window none;
    with --time-unit ms the log prepares exactly as its seconds twin."""
    plain = _taobao_log(tmp_path / "plain.csv")
    rows = [line.split(",") for line in plain.read_text().splitlines()]
    log = tmp_path / "ms.csv"
    log.write_text("".join(f"{u},{i},{c},{a},{t}000\n" for u, i, c, a, t in rows))
    argv = ["prepare", "--preset", "taobao", "--input", str(log), "--quiet"]
    for extra in ([], ["--time-window", "none"]):
        assert cli.main([*argv, "--output", str(tmp_path / "refused"), *extra]) == 2
        error = capsys.readouterr().err
        assert f"ms.csv:1: column 'timestamp' value '{rows[0][4]}000' read as 's'" in error
        assert "lies after the year 5000" in error and "--time-unit ms" in error
    assert cli.main([*argv, "--output", str(tmp_path / "refused"), "--on-bad-rows", "skip"]) == 2
    error = capsys.readouterr().err
    assert f"no valid rows are left ({len(rows)} implausible_time)" in error and "--time-unit ms" in error
    assert not (tmp_path / "refused").exists()
    assert cli.main([*argv, "--output", str(tmp_path / "ms"), "--time-unit", "ms"]) == 0
    assert cli.main(["prepare", "--preset", "taobao", "--input", str(plain), "--quiet", "--output", str(tmp_path / "s")]) == 0
    read = {name: datasets.load_from_disk(str(tmp_path / name)) for name in ("ms", "s")}
    for split in read["s"]:
        assert read["ms"][split][:] == read["s"][split][:]
    assert json.loads((tmp_path / "ms" / "a2gen_data.json").read_text())["preset"]["time_unit"] == "ms"
    generic = ["prepare", "--preset", "generic", "--generic-actions", "pv,buy,leave", "--quiet"]
    header_log = tmp_path / "generic.csv"
    header_log.write_text("user_id,item_id,action,timestamp\n" + "".join(f"{u},{i},{a},{t}000\n" for u, i, _, a, t in rows))
    assert cli.main([*generic, "--input", str(header_log), "--output", str(tmp_path / "g1")]) == 2
    assert "--time-unit ms" in capsys.readouterr().err
    assert cli.main([*generic, "--input", str(header_log), "--output", str(tmp_path / "g2"), "--time-unit", "ms"]) == 0
    assert cli.main([*generic, "--input", str(header_log), "--output", str(tmp_path / "g3"), "--generic-time-unit", "ms"]) == 0


def test_a_log_with_another_delimiter_is_named_and_read_with_delimiter(tmp_path, capsys):
    """A tab- or semicolon-separated Taobao log: the truncated-row error says which delimiter splits the line into
    the preset's columns and names --delimiter; with it the log prepares as its comma twin. A header read as one
    column gets the same hint; a --delimiter that is not one character is refused."""
    plain = _taobao_log(tmp_path / "plain.csv")
    assert cli.main(["prepare", "--preset", "taobao", "--input", str(plain), "--quiet", "--output", str(tmp_path / "c")]) == 0
    expected = datasets.load_from_disk(str(tmp_path / "c"))
    for name, delimiter, flag in (("tabs.tsv", "\t", "\\t"), ("semi.csv", ";", ";")):
        log = tmp_path / name
        log.write_text(plain.read_text().replace(",", delimiter))
        argv = ["prepare", "--preset", "taobao", "--input", str(log), "--quiet"]
        assert cli.main([*argv, "--output", str(tmp_path / "refused")]) == 2
        error = capsys.readouterr().err
        assert f"{name}:1: truncated row: 1 of 5 columns" in error
        assert f"the line splits into 5 columns at {delimiter!r}" in error and f"--delimiter '{flag}'" in error
        assert cli.main([*argv, "--output", str(tmp_path / name.split(".")[0]), "--delimiter", flag]) == 0
        read = datasets.load_from_disk(str(tmp_path / name.split(".")[0]))
        for split in expected:
            assert read[split][:] == expected[split][:]
    header = tmp_path / "kuairand.tsv"
    header.write_text((FIXTURES / "kuairand_log.csv").read_text().replace(",", "\t"))
    with pytest.raises(LogFormatError, match=r"the line splits into \d+ columns at '\\t'.*--delimiter '\\t'"):
        convert_log(header, "kuairand", output_dir=tmp_path / "k", progress=False)
    result = convert_log(header, dataclasses.replace(PRESETS["kuairand"], delimiter="\t"), output_dir=tmp_path / "k",
                         progress=False)
    assert result.summary["rows_read"] > 0
    argv = ["prepare", "--preset", "taobao", "--input", str(plain), "--quiet", "--output", str(tmp_path / "bad")]
    for bad in (";;", ""):
        assert cli.main([*argv, "--delimiter", bad]) == 2
        assert "is not one character" in capsys.readouterr().err


def test_a_utf8_byte_order_mark_is_no_part_of_the_first_value_or_column_name(tmp_path):
    """A file saved with a UTF-8 byte order mark (spreadsheet exports): the header of a preset that reads one still
    names its columns, a header-less log's header line is still recognised, and no user id carries the mark."""
    plain = _taobao_log(tmp_path / "plain.csv")
    expected = convert_log(plain, "taobao", output_dir=tmp_path / "a", progress=False)
    bom = b"\xef\xbb\xbf"
    header = b"user_id,item_id,category_id,behavior_type,timestamp\n"
    for name, prefix in (("bom.csv", bom), ("bom_header.csv", bom + header)):
        log = tmp_path / name
        log.write_bytes(prefix + plain.read_bytes())
        result = convert_log(log, "taobao", output_dir=tmp_path / name.split(".")[0], progress=False)
        assert result.summary["header_line_skipped"] == (name == "bom_header.csv")
        for split in expected.dataset:
            assert result.dataset[split][:] == expected.dataset[split][:]
    generic = dataclasses.replace(
        PRESETS["taobao"], name="generic", columns=None, time_window=None, side_feature_columns=()
    )
    log = tmp_path / "generic.csv"
    log.write_bytes(bom + header + plain.read_bytes())
    result = convert_log(log, generic, output_dir=tmp_path / "g", progress=False)
    assert result.summary["rows_read"] == expected.summary["rows_read"]


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz"])
def test_a_compressed_log_reads_as_the_plain_one(tmp_path, suffix):
    """log.csv.gz / .bz2 / .xz (told by their first bytes, the format by the extension before the compression's):
    the same examples and the same line numbers in bad-row messages as the plain file; the row estimate that sizes
    the partitions reads the uncompressed lines; a zip archive is refused saying to unzip it."""
    import bz2
    import gzip
    import lzma

    from a2gen_hf.data.partitions import estimate_rows

    compress = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}[suffix]
    plain = _taobao_log(tmp_path / "plain.csv")
    text = plain.read_text().splitlines()
    text[7] = text[7].rsplit(",", 1)[0] + ",12"  # a time outside the window on line 8
    plain.write_text("\n".join(text) + "\n")
    packed = tmp_path / f"log.csv{suffix}"
    packed.write_bytes(compress(plain.read_bytes()))
    expected = convert_log(plain, "taobao", output_dir=tmp_path / "a", on_bad_rows="skip", progress=False)
    result = convert_log(packed, "taobao", output_dir=tmp_path / "b", on_bad_rows="skip", progress=False)
    assert result.summary["first_dropped"]["outside_window"].startswith(f"log.csv{suffix}:8: ")
    assert result.summary["rows_dropped"] == expected.summary["rows_dropped"] == {"outside_window": 1}
    for split in expected.dataset:
        assert result.dataset[split][:] == expected.dataset[split][:]
    assert estimate_rows(packed, "csv") == pytest.approx(len(text), rel=0.2)
    rows = [dict(zip(TAOBAO_COLUMNS, line.split(","))) for line in text if not line.endswith(",12")]
    lines = "".join(json.dumps({**row, "timestamp": int(row["timestamp"])}) + "\n" for row in rows).encode()
    (tmp_path / "log.jsonl").write_bytes(lines)
    (tmp_path / f"log.jsonl{suffix}").write_bytes(compress(lines))
    keyed = dataclasses.replace(PRESETS["taobao"], columns=None)
    read = [convert_log(tmp_path / name, keyed, output_dir=tmp_path / name.replace(".", "_"), progress=False).dataset
            for name in ("log.jsonl", f"log.jsonl{suffix}")]
    for split in read[0]:
        assert read[1][split][:] == read[0][split][:] == expected.dataset[split][:]
    import zipfile

    with zipfile.ZipFile(tmp_path / "log.zip", "w") as packed_zip:
        packed_zip.write(plain, "plain.csv")
    archive = tmp_path / "log.zip"
    with pytest.raises(LogFormatError, match=r"log\.zip: the file is a zip archive; unzip it"):
        convert_log(archive, "taobao", output_dir=tmp_path / "z", file_format="csv", progress=False)


def test_a_damaged_compressed_log_is_refused_and_text_that_looks_compressed_is_not(tmp_path):
    """A truncated gzip or corrupt xz log stops with a LogFormatError naming the file (in either bad-row mode); a
    plain log whose first user id starts as bz2's magic ("BZh") is read as text."""
    import gzip

    plain = _taobao_log(tmp_path / "plain.csv")
    packed = gzip.compress(plain.read_bytes())
    for name, content in (("cut.csv.gz", packed[: len(packed) // 2]), ("bad.csv.xz", b"\xfd7zXZ\x00garbage")):
        (tmp_path / name).write_bytes(content)
        for mode in ("skip", "error"):
            with pytest.raises(LogFormatError, match=rf"{name}: the file starts as a \w+ file but cannot be decompressed"):
                convert_log(tmp_path / name, "taobao", output_dir=tmp_path / "out", on_bad_rows=mode, progress=False)
    text = tmp_path / "bzh.csv"
    text.write_text(plain.read_text().replace("0,", "BZh9,", 1))
    result = convert_log(text, "taobao", output_dir=tmp_path / "t", progress=False)
    assert result.summary["rows_read"] == len(plain.read_text().splitlines())


def test_spaces_around_values_are_dropped_and_counted(tmp_path, capsys):
    """``1, 2, 3, pv, 1511544070`` (a space after each comma) and a tab after a value read as the plain log: the same
    examples, the trimmed values counted in the summary and printed; a value of spaces only is an empty value."""
    plain = _taobao_log(tmp_path / "plain.csv")
    expected = convert_log(plain, "taobao", output_dir=tmp_path / "a", progress=False)
    assert expected.summary["values_trimmed"] == 0
    lines = plain.read_text().splitlines()
    spaced = tmp_path / "spaced.csv"
    spaced.write_text("\n".join([line.replace(",", ", ") for line in lines[:-1]] + [lines[-1] + "\t"]) + "\n")
    argv = ["prepare", "--preset", "taobao", "--input", str(spaced), "--quiet", "--output", str(tmp_path / "b")]
    assert cli.main(argv) == 0
    trimmed = 4 * (len(lines) - 1) + 1
    assert f"values read without the spaces or tabs around them: {trimmed}" in capsys.readouterr().out
    read = datasets.load_from_disk(str(tmp_path / "b"))
    for split in expected.dataset:
        assert read[split][:] == expected.dataset[split][:]
    assert json.loads((tmp_path / "b" / "a2gen_data.json").read_text())["values_trimmed"] == trimmed
    blank = tmp_path / "blank.csv"
    blank.write_text("1,  ,5,pv,1511544071\n")
    with pytest.raises(LogFormatError, match=r"blank\.csv:1: column 'item_id' is empty"):
        convert_log(blank, "taobao", progress=False)


def test_a_log_that_quotes_its_values_is_named_and_read_with_quote_char(tmp_path, capsys):
    """An export that quotes every value: read without quoting (the shipped presets), the error names --quote-char;
    with it, the log prepares as its plain twin. The generic preset quotes by default (a side feature holding the
    delimiter stays one value); --quote-char none turns quoting off."""
    plain = _taobao_log(tmp_path / "plain.csv")
    assert cli.main(["prepare", "--preset", "taobao", "--input", str(plain), "--quiet", "--output", str(tmp_path / "c")]) == 0
    expected = datasets.load_from_disk(str(tmp_path / "c"))
    quoted = tmp_path / "quoted.csv"
    quoted.write_text("".join(",".join(f'"{v}"' for v in line.split(",")) + "\n" for line in plain.read_text().splitlines()))
    argv = ["prepare", "--preset", "taobao", "--input", str(quoted), "--quiet"]
    assert cli.main([*argv, "--output", str(tmp_path / "refused")]) == 2
    error = capsys.readouterr().err
    assert "quoted.csv:1: column 'behavior_type' has unknown action" in error and "--quote-char '\"'" in error
    assert cli.main([*argv, "--output", str(tmp_path / "q"), "--quote-char", '"']) == 0
    read = datasets.load_from_disk(str(tmp_path / "q"))
    for split in expected:
        assert read[split][:] == expected[split][:]
    one_quoted = tmp_path / "one.csv"  # only a value holding the delimiter is quoted, as CSV writers do
    one_quoted.write_text('1,"10,1",5,pv,1511544071\n')
    with pytest.raises(LogFormatError, match=r"one\.csv:1: 6 columns where 5 are expected .*--quote-char"):
        convert_log(one_quoted, "taobao", progress=False)
    generic = tmp_path / "generic.csv"
    rows = [line.split(",") for line in plain.read_text().splitlines()]
    shelves = {"1": '"books, fiction"', "2": "toys"}
    generic.write_text("user_id,item_id,shelf,action,timestamp\n" + "".join(
        f"{user},{item},{shelves.get(category, 'home')},{action},{time}\n" for user, item, category, action, time in rows))
    flags = ["prepare", "--preset", "generic", "--input", str(generic), "--quiet", "--generic-actions", "pv,buy,leave",
             "--generic-side-features", "shelf"]
    assert cli.main([*flags, "--output", str(tmp_path / "g")]) == 0
    assert f"rows read: {len(rows)}," in capsys.readouterr().out
    assert cli.main([*flags, "--output", str(tmp_path / "g2"), "--quote-char", "none"]) == 2
    first = 2 + next(i for i, row in enumerate(rows) if row[2] == "1")
    assert f"generic.csv:{first}: 6 columns where 5 are expected" in capsys.readouterr().err
    for bad in ("''", "ab"):
        assert cli.main([*flags, "--output", str(tmp_path / "g3"), "--quote-char", bad]) == 2
        assert "is not one character" in capsys.readouterr().err
    with pytest.raises(ValueError, match="quote_char must be one character other than a line break and the delimiter"):
        dataclasses.replace(PRESETS["taobao"], quote_char=",")


def test_an_action_in_another_case_is_refused_saying_so(tmp_path):
    log = tmp_path / "upper.csv"
    log.write_text("1,10,5,PV,1511544071\n")
    with pytest.raises(LogFormatError, match=r"unknown action 'PV'; .*\('PV' is 'pv' in another case"):
        convert_log(log, "taobao", progress=False)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
def test_a_utf16_or_utf32_log_is_refused_naming_its_encoding(tmp_path, encoding):
    """Every line of a UTF-16 / UTF-32 log would be a bad row: the file is refused before any row, in every bad-row
    mode, the message naming the encoding iconv reads it with (with or without a byte order mark); so are a Parquet
    file named .csv and binary data."""
    plain = _taobao_log(tmp_path / "plain.csv")
    log = tmp_path / "wide.csv"
    log.write_bytes(plain.read_text().encode(encoding))
    name = {"utf-16": "UTF-16", "utf-16-le": "UTF-16LE", "utf-16-be": "UTF-16BE", "utf-32": "UTF-32",
            "utf-32-le": "UTF-32LE"}[encoding]  # fmt: skip
    for mode in ("skip", "error"):
        with pytest.raises(LogFormatError, match=rf"wide\.csv: the file is {name} text .*`iconv -f {name} -t UTF-8"):
            convert_log(log, "taobao", on_bad_rows=mode, progress=False)
    if encoding == "utf-16":
        pq.write_table(pa.table({"user_id": ["1"]}), tmp_path / "table.csv")
        with pytest.raises(LogFormatError, match=r"table\.csv: the file is a Parquet file; .*--format parquet"):
            convert_log(tmp_path / "table.csv", "taobao", on_bad_rows="skip", progress=False)
        (tmp_path / "binary.csv").write_bytes(b"1,2\x00\x17\x00\x00\x01,3\n")
        with pytest.raises(LogFormatError, match=r"binary\.csv: the file holds NUL bytes"):
            convert_log(tmp_path / "binary.csv", "taobao", on_bad_rows="skip", progress=False)


def test_a_header_naming_other_columns_is_a_bad_row_that_says_so(tmp_path):
    """Line 1 of a header-less Taobao log naming other columns (UserID,...): still a bad row (counted by skip), whose
    message says it looks like a header and how to remove it; a first row of data never gets that hint."""
    plain = _taobao_log(tmp_path / "plain.csv")
    log = tmp_path / "other.csv"
    log.write_text("UserID,ItemID,CategoryID,BehaviorType,Timestamp\n" + plain.read_text())
    with pytest.raises(LogFormatError, match=r"other\.csv:1: column 'behavior_type' has unknown action 'BehaviorType'.*"
                                             r"line 1 looks like a header .*`tail -n \+2 other\.csv"):
        convert_log(log, "taobao", progress=False)
    result = convert_log(log, "taobao", on_bad_rows="skip", progress=False)
    assert result.summary["rows_dropped"] == {"unknown_action": 1} and not result.summary["header_line_skipped"]
    bad_first = tmp_path / "bad_first.csv"
    bad_first.write_text("1,10,5,look,1511544071\n" + plain.read_text())
    with pytest.raises(LogFormatError, match=r"unknown action 'look'") as raised:
        convert_log(bad_first, "taobao", progress=False)
    assert "looks like a header" not in str(raised.value)


def test_json_and_parquet_columns_that_cannot_be_ids_are_refused(tmp_path):
    """Ids beyond 2**53 written as JSON numbers are read as floats whose last digits are gone (before: 30 users
    merged into one, exit 0): each is a bad row naming the fix. Lists and structs, repeated column names, one
    column in two roles and a Parquet file without rows are refused naming them (before: tracebacks)."""
    keyed = dataclasses.replace(PRESETS["taobao"], columns=None)
    rows = [{"user_id": 10**20 + user, "item_id": 7, "category_id": 1, "behavior_type": "pv", "timestamp": 1511544070 + user}
            for user in range(3)]  # fmt: skip
    log = tmp_path / "big.jsonl"
    log.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(LogFormatError, match=r"big\.jsonl:1: column 'user_id' value 1e\+20 is a number beyond 2\*\*53"):
        convert_log(log, keyed, progress=False)
    mixed = tmp_path / "mixed.jsonl"  # small ids in the same (float) column stay exact: kept
    mixed.write_text(log.read_text() + "".join(json.dumps({**row, "user_id": 5 + i}) + "\n" for i, row in enumerate(rows)))
    result = convert_log(mixed, keyed, on_bad_rows="skip", progress=False)
    assert result.summary["rows_read"] == 6 and result.summary["rows_dropped"] == {"imprecise_id": 3}
    table = pa.table({"user_id": [[1], [2]], "item_id": ["a", "b"], "category_id": ["1", "1"],
                      "behavior_type": ["pv", "pv"], "timestamp": [1511544070, 1511544071]})  # fmt: skip
    pq.write_table(table, tmp_path / "nested.parquet")
    with pytest.raises(LogFormatError, match=r"nested\.parquet: column 'user_id' holds values of type list"):
        convert_log(tmp_path / "nested.parquet", keyed, progress=False)
    pq.write_table(table.slice(0, 0), tmp_path / "empty.parquet")
    with pytest.raises(LogFormatError, match=r"empty\.parquet: the file has no rows"):
        convert_log(tmp_path / "empty.parquet", keyed, progress=False)
    twice = pa.Table.from_arrays([pa.array(["1"]), pa.array(["2"]), pa.array(["a"]), pa.array(["1"]), pa.array(["pv"]),
                                  pa.array([1511544070])],
                                 names=["user_id", "user_id", "item_id", "category_id", "behavior_type", "timestamp"])  # fmt: skip
    pq.write_table(twice, tmp_path / "twice.parquet")
    with pytest.raises(LogFormatError, match=r"column\(s\) \['user_id'\] appear more than once"):
        convert_log(tmp_path / "twice.parquet", keyed, progress=False)
    with pytest.raises(ValueError, match=r"column\(s\) \['user_id'\] are given more than one role"):
        dataclasses.replace(keyed, item_column="user_id")


def test_prepare_with_a_saved_tokenizer_keeps_it_for_training_on_with_init_from(tmp_path, capsys):
    """docs/training.md's "fine-tuning on newer logs prepared with the same tokenizer": before, prepare had no way to
    use a saved tokenizer and refitted the time statistics, so --init-from then refused the newer data folder."""
    from a2gen_hf.cli import main
    from a2gen_hf.training.data_setup import create_model, load_data_dir, model_to_train_from

    older, newer = _taobao_log(tmp_path / "older.csv", seed=0), _taobao_log(tmp_path / "newer.csv", users=40, seed=1)
    assert main(["prepare", "--preset", "taobao", "--input", str(older), "--output", str(tmp_path / "d1"), "--quiet"]) == 0
    dataset, tokenizer, _ = load_data_dir(tmp_path / "d1")
    model = create_model("a2gen-iag", tokenizer, dataset, hidden_size=8, num_attention_heads=2, id_embedding_size=8)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    argv = ["prepare", "--preset", "taobao", "--input", str(newer), "--output", str(tmp_path / "d2"), "--quiet"]
    assert main([*argv, "--tokenizer", str(tmp_path / "model")]) == 0
    new_dataset, new_tokenizer, summary = load_data_dir(tmp_path / "d2")
    assert summary["rules"]["time_statistics_fitted_on"].startswith("kept from the tokenizer given")
    for name in ("time_log_mean", "time_log_std", "item_buckets", "user_buckets", "side_feature_buckets"):
        assert getattr(new_tokenizer, name) == getattr(tokenizer, name), name
    model_to_train_from(tmp_path / "model", "a2gen-iag", new_tokenizer, new_dataset, hidden_size=8,
                        num_attention_heads=2, id_embedding_size=8)  # fmt: skip
    argv[argv.index("--output") + 1] = str(tmp_path / "d3")  # one --output per run (a second one is refused)
    assert main([*argv, "--tokenizer", str(tmp_path / "model"), "--item-buckets", "64"]) == 2
    assert "--tokenizer keeps the saved tokenizer's hash buckets; drop --item-buckets" in capsys.readouterr().err


def _long_sessions_log(tmp_path: Path) -> Path:
    """Taobao rows: per user one item with 9 pv then a buy (buy at position 10 after the start), one item with a buy
    at position 2, and one with 3 pv only; users 1..12, one day apart."""
    lines = []
    for user in range(1, 13):
        start = 1511544000 + (user - 1) * 40000
        lines += [f"{user},10{user},5,pv,{start + second}\n" for second in range(10)]
        lines.append(f"{user},10{user},5,buy,{start + 10}\n")
        lines += [f"{user},20{user},5,pv,{start + 100}\n", f"{user},20{user},5,buy,{start + 101}\n"]
        lines += [f"{user},30{user},5,pv,{start + 200 + second}\n" for second in range(3)]
    return _write(tmp_path, "".join(lines))


def test_sessions_longer_than_the_labels_are_counted_and_max_actions_keeps_them(tmp_path, caplog, capsys):
    """The labels keep the start and max_actions actions after it: the summary (and a warning) counts the longer
    sessions and the positives only after the window, which the occurrence targets would miss; --max-actions keeps
    them; a saved tokenizer's K cannot be changed."""
    log = _long_sessions_log(tmp_path)
    whole = SplitRule(validation_start=1e12, test_start=2e12)  # every session in train
    with caplog.at_level("WARNING"):
        result = convert_log(log, "taobao", output_dir=tmp_path / "k6", split_rule=whole, progress=False)
    labels = result.summary["labels"]
    # pv x10 + buy + leave: 11 actions after the start; the window holds positions 1..6.
    assert labels["max_actions"] == 6 and labels["longest_session_actions"] == 11
    assert labels["session_actions_p99"] == 11  # a third of the sessions have 11 actions after the start
    assert labels["longer_examples"] == {"train": 12, "validation": 0, "test": 0}
    assert labels["positives_after_the_labels"]["train"] == {"buy": 12, "leave": 12}
    assert "--max-actions 11" in caplog.text and "buy=12" in format_summary(result.summary)
    # Read with --drop-repeated-start the nine repeated pv go: click, buy, leave fits.
    assert labels["without_repeated_starts"]["longer_examples"]["train"] == 0
    assert labels["without_repeated_starts"]["longest_session_actions"] == 2  # buy, leave
    assert "With --drop-repeated-start (targets without repeated start actions" in caplog.text
    assert not labels["max_actions_fixed"]
    caplog.clear()
    with caplog.at_level("WARNING"):  # a saved model's tokenizer fixes K: the advice says so
        fixed = convert_log(log, "taobao", split_rule=whole, tokenizer=result.tokenizer, fit_time_statistics=False,
                            progress=False)  # fmt: skip
    assert fixed.summary["labels"]["max_actions_fixed"] and "The saved tokenizer (--tokenizer) fixes K" in caplog.text
    assert "--max-actions 11" not in caplog.text

    result = convert_log(log, "taobao", output_dir=tmp_path / "k11", split_rule=whole, max_actions=11, progress=False)
    assert result.tokenizer.max_actions == 11
    assert result.summary["labels"]["longer_examples"]["train"] == 0
    assert "sessions longer" not in format_summary(result.summary)

    flags = ["prepare", "--preset", "taobao", "--input", str(log), "--quiet", "--validation-start", "1e12",
             "--test-start", "2e12"]  # fmt: skip
    assert cli.main([*flags, "--output", str(tmp_path / "cli"), "--max-actions", "11"]) == 0
    assert json.loads((tmp_path / "cli" / "tokenizer" / "tokenizer_config.json").read_text())["max_actions"] == 11
    capsys.readouterr()
    tokenizer = ["--tokenizer", str(tmp_path / "k6" / "tokenizer")]
    assert cli.main([*flags, "--output", str(tmp_path / "t"), *tokenizer, "--max-actions", "11"]) == 2
    assert "--max-actions 11 differs from the tokenizer's 6" in capsys.readouterr().err
    assert cli.main([*flags, "--output", str(tmp_path / "z"), "--max-actions", "0"]) == 2
    with pytest.raises(ValueError, match="must be a whole number >= 1"):
        convert_log(log, "taobao", max_actions=2.5, progress=False)
    with pytest.raises(ValueError, match="at most 1024"):
        convert_log(log, "taobao", max_actions=10**9, progress=False)
    assert convert_log(log, "taobao", max_actions=np.int64(11), progress=False).tokenizer.max_actions == 11


def test_a_same_second_start_opens_and_a_same_second_end_closes_wherever_the_vocabulary_lists_them(tmp_path):
    """Ties of one second: the start action first, the end action last, the others in vocabulary order (before, with
    the start listed third a scroll came first and the logged start appeared mid-sequence; with the end listed
    second a same-second like after it became a session of its own)."""
    preset = dataclasses.replace(
        PRESETS["taobao"], name="generic", columns=("user_id", "item_id", "behavior_type", "timestamp"),
        action_names=("scroll", "close", "open", "like"), start_action="open", end_action="close",
        action_mapping={name: name for name in ("scroll", "close", "open", "like")}, time_window=None,
        side_feature_columns=(),
    )  # fmt: skip
    log = _write(tmp_path, "1,7,scroll,100\n1,7,open,100\n1,7,like,130\n1,7,close,130\n1,7,scroll,130\n")
    result = convert_log(log, preset, progress=False, split_rule=SplitRule(validation_start=1e12, test_start=2e12))
    assert result.summary["sessions"] == 1
    (example,) = result.dataset["train"]
    tokens = result.tokenizer.convert_ids_to_tokens(example["action_ids"])
    assert tokens == ["open", "scroll", "scroll", "like", "close"]
    assert example["action_seconds"] == [0.0, 0.0, 30.0, 30.0, 30.0]


def test_a_log_whose_sessions_all_start_in_1970_is_warned_about(tmp_path, caplog):
    """Tmall's mmdd dates read as Unix seconds (`--time-unit s`) put half a year into minutes: warned, naming the unit
    (before: no word); a log of real Unix times is not."""
    tmall = dataclasses.replace(PRESETS["tmall"], time_unit="s")
    lines = "user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type\n" + "".join(
        f"{user},{user * 10 + day},1,2,3,{date},0\n" for user in range(1, 9) for day, date in enumerate((511, 829, 1111))
    )
    with caplog.at_level("WARNING"):
        convert_log(_write(tmp_path, lines), tmall, progress=False)
    assert "every session starts in 1970" in caplog.text and "read as 's'" in caplog.text
    assert "these look like Unix seconds" not in caplog.text  # mmdd dates are no seconds
    caplog.clear()
    with caplog.at_level("WARNING"):
        convert_log(_long_sessions_log(tmp_path), "taobao", progress=False)
    assert "1970" not in caplog.text


def test_unix_seconds_read_as_milliseconds_are_told_to_pass_time_unit_s(tmp_path, caplog):
    """From a probe: a log of Unix seconds read with --time-unit ms got only the 1970 warning, which ends "times
    counted from some start of your own are fine" (sessions merged, every age 1000x too short). Read as seconds its
    session starts lie in 2017: the warning now says they look like Unix seconds and names --time-unit s. A clock of
    the log's own in milliseconds (starts in 1970 read as seconds too) keeps the old warning."""
    seconds_ms = dataclasses.replace(PRESETS["taobao"], time_unit="ms", time_window=None)
    lines = "".join(f"{user},{user * 10},5,pv,{1511544070 + user * 4 * DAY + k * 60}\n"
                    for user in range(1, 9) for k in range(3))  # fmt: skip
    with caplog.at_level("WARNING"):
        convert_log(_write(tmp_path, lines), seconds_ms, progress=False)
    assert "every session starts in 1970 (the first at 1970-01-18 " in caplog.text
    assert ("read as Unix seconds they start from 2017-11-28 17:21:10 UTC to 2017-12-26 17:21:10 UTC: these look like "
            "Unix seconds: pass --time-unit s") in caplog.text
    assert "start of your own are fine" not in caplog.text
    caplog.clear()
    own_clock = "".join(f"{user},{user * 10},5,pv,{user * 4 * DAY * 1000 + k * 60_000}\n"
                        for user in range(1, 9) for k in range(3))  # fmt: skip
    with caplog.at_level("WARNING"):
        convert_log(_write(tmp_path, own_clock, "own.csv"), seconds_ms, progress=False)
    assert "every session starts in 1970" in caplog.text and "start of your own are fine" in caplog.text
    assert "these look like Unix seconds" not in caplog.text


@pytest.mark.parametrize("unit, scale, named, factor", [
    ("ms", 10**6, "microseconds", "1,000"), ("s", 10**6, "microseconds", "1,000,000"),
    ("s", 10**9, "nanoseconds", "1,000,000,000"),
])  # fmt: skip
def test_microseconds_or_nanoseconds_read_as_s_or_ms_are_named_with_the_division(tmp_path, unit, scale, named, factor):
    """Times after the year 5000 in the preset's unit that read as Unix microseconds or nanoseconds (pandas'
    datetime64 written as integers) lie in 2017: the message names that unit and how to divide the column (before:
    "convert the column to Unix seconds or milliseconds", or "read it as ms", which is refused as well)."""
    preset = dataclasses.replace(PRESETS["taobao"], time_unit=unit, time_window=None)
    path = _write(tmp_path, f"1,100,5,pv,{1511544070 * scale}\n")
    with pytest.raises(LogFormatError) as error:
        convert_log(path, preset, progress=False)
    assert (f"lies after the year 5000: read as Unix {named} it is 2017-11-24 17:21:10 UTC: these look like Unix "
            f"{named}; divide the column by {factor} to Unix") in str(error.value)
    plain = _write(tmp_path, f"1,100,5,pv,{10**17}\n", "plain.csv")  # the year 3e9 in any unit: no unit named
    with pytest.raises(LogFormatError, match="lies after the year 5000: (convert the column|if the column holds)"):
        convert_log(plain, preset, progress=False)


def test_a_generic_action_name_with_a_space_names_the_mapping_that_fixes_it(tmp_path, capsys):
    log = _write(tmp_path, "user,item,action,time\n1,2,page view,100\n1,2,close,130\n")
    flags = ["prepare", "--preset", "generic", "--input", str(log), "--output", str(tmp_path / "out"), "--quiet",
             "--generic-user-column", "user", "--generic-item-column", "item", "--generic-action-column", "action",
             "--generic-time-column", "time"]  # fmt: skip
    assert cli.main([*flags, "--generic-actions", "page view,close"]) == 2
    assert "--generic-action-mapping 'page view=page_view,...'" in capsys.readouterr().err


def test_training_times_that_never_vary_are_warned_about(caplog):
    """A floored time_log_std (times that never vary) makes every other time normalise to thousands: warned."""
    from a2gen_hf.time_encoding import MIN_TIME_LOG_STD, fit_log_statistics

    with caplog.at_level("WARNING"):
        mean, std = fit_log_statistics([5.0] * 20)
    assert std == MIN_TIME_LOG_STD and "barely vary" in caplog.text and "Check the time column" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # sessions of one event: every time is 0 s, not a broken time column
        fit_log_statistics([0.0] * 20)
    assert "Every time is 0 s" in caplog.text and "Check the time column" not in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        fit_log_statistics([0.0, 5.0, 60.0])
    assert "barely vary" not in caplog.text


def test_a_missing_column_message_shows_a_long_header_cut(tmp_path):
    """A damaged or unreadable line 1 (here 3,000 names) was printed whole in the message (75 KB for a probe's)."""
    names = [f"column{index}" for index in range(3000)]
    path = _write(tmp_path, ",".join(names) + "\n" + ",".join("1" * 3000) + "\n")
    with pytest.raises(LogFormatError, match=r"its header has \['column0', .*'column19'\] and 2,980 more\. Rename") as error:
        convert_log(path, dataclasses.replace(PRESETS["taobao"], name="headed", columns=None), progress=False)
    assert len(str(error.value)) < 1000


def test_a_side_value_logged_after_a_sessions_first_event_is_kept(tmp_path):
    """A session whose first event has no category takes the first one logged on a later event of it (before: read
    as unknown, 0, though the log holds it); a session without any stays unknown."""
    day = 1511568000  # 25 Nov 2017, inside the taobao preset's window
    log = _write(tmp_path, "".join(
        f"{user},{item},{category},{action},{day + seconds}\n" for user, item, category, action, seconds in [
            (1, 100, "", "pv", 0), (1, 100, "", "fav", 5), (1, 100, 7, "cart", 10), (1, 100, 8, "buy", 20),
            (1, 200, "", "pv", 100), (2, 300, 9, "pv", 0), (2, 300, "", "cart", 30),
        ]
    ))
    result = convert_log(log, "taobao", progress=False, split_rule=SplitRule(validation_start=day + 10**6,
                                                                             test_start=day + 2 * 10**6))
    tokenizer = result.tokenizer
    side = {(row["user"], row["item"]): row["item_side_ids"][0] for row in result.dataset["train"]}
    assert side["1", "100"] == tokenizer.hash_side_feature("category_id", "7")
    assert side["1", "200"] == 0
    assert side["2", "300"] == tokenizer.hash_side_feature("category_id", "9")


def test_the_long_session_advice_suggests_a_gap_below_the_one_in_use():
    """Before: '--session-gap-seconds 1800 for 30 minutes' to a log prepared with that very gap."""
    from a2gen_hf.data.logs import _session_gap_text

    def advice(gap):
        summary = {"rules": {"session_gap_seconds": gap}, "preset": {"action_column": "behavior"},
                   "labels": {"longest_session_seconds": 4000.0}}  # fmt: skip
        return _session_gap_text(summary)

    assert "e.g. --session-gap-seconds 1800 for 30 min " in advice(259200)
    assert "e.g. --session-gap-seconds 450 for 7.5 min " in advice(1800)
    assert "--session-gap-seconds 1800 " not in advice(1800)
