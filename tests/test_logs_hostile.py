"""Hostile inputs to log conversion from Python (probe 17): typed Parquet / JSON columns (nulls, dates, durations,
float and boolean ids), a saved tokenizer whose side features differ, split boundaries in another unit, inputs that
are no log file, and the determinism of a prepared folder."""

import dataclasses
import datetime
import json
import logging
import os
import zipfile
from decimal import Decimal

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from a2gen_hf import cli
from a2gen_hf.data import PRESETS, LogFormatError, SplitRule, convert_log

TAOBAO = dataclasses.replace(PRESETS["taobao"], time_window=None)
KEYED = dataclasses.replace(TAOBAO, columns=None)  # Parquet / JSONL: columns by name
KUAIRAND = PRESETS["kuairand"]
START = 1511544000


def taobao_frame() -> pd.DataFrame:
    """60 Taobao-format rows: 6 users, 10 clicks each an hour apart on items 1..5 of categories 1..2."""
    rng = np.random.default_rng(0)
    rows = [(user, int(rng.integers(1, 6)), int(rng.integers(1, 3)), "pv", START + user * 7 + k * 3600)
            for user in range(1, 7) for k in range(10)]  # fmt: skip
    return pd.DataFrame(rows, columns=list(TAOBAO.columns))


def convert(path, preset=KEYED, **kwargs):
    return convert_log(path, preset=preset, num_proc=1, progress=False, **kwargs)


def write_csv(frame: pd.DataFrame, path) -> str:
    frame.to_csv(path, header=False, index=False)
    return path


def write_parquet(frame_or_table, path) -> str:
    table = (
        frame_or_table
        if isinstance(frame_or_table, pa.Table)
        else pa.Table.from_pandas(frame_or_table, preserve_index=False)
    )
    pq.write_table(table, path)
    return path


def rows(result) -> str:
    """Every split's rows, as JSON text (so that NaN times, unknown ones, compare equal)."""
    return json.dumps({split: result.dataset[split].to_dict() for split in result.dataset}, sort_keys=True)


# -- C1: a null side feature is an empty one (0, "unknown"), as an empty CSV field


def test_null_side_features_in_parquet_and_json_lines_read_as_an_empty_csv_field(tmp_path):
    """Before: ``IndexError: index -9223372036854775808`` (a null's dictionary code cast to int64)."""
    frame = taobao_frame()
    missing = [0, 13, 27]
    text = frame.astype({"category_id": str})
    text.loc[missing, "category_id"] = ""
    expected = convert(write_csv(text, tmp_path / "log.csv"), TAOBAO)
    nullable = frame.astype({"category_id": "Int64"})
    nullable.loc[missing, "category_id"] = pd.NA
    floats = frame.astype({"category_id": float})
    floats.loc[missing, "category_id"] = np.nan
    records = frame.to_dict("records")
    lines = []
    for index, record in enumerate(records):
        if index == missing[0]:
            record = {key: value for key, value in record.items() if key != "category_id"}  # the key left out
        elif index in missing:
            record = {**record, "category_id": None}
        lines.append(json.dumps(record) + "\n")
    (tmp_path / "log.jsonl").write_text("".join(lines))
    for path in (write_parquet(nullable, tmp_path / "int64.parquet"), write_parquet(floats, tmp_path / "nan.parquet"),
                 tmp_path / "log.jsonl"):  # fmt: skip
        result = convert(path)
        assert rows(result) == rows(expected), path
    side_ids = {(row["user"], row["session_start"]): row["item_side_ids"] for row in expected.dataset["train"]}
    # the empty values fall on sessions' first events: each takes the category a later event of its session logs
    # (in every format alike, above), where it was padding, "unknown", before
    assert [0] not in side_ids.values()


# -- C2: a Parquet date column is read as midnight UTC of its day


@pytest.mark.parametrize("kind", [pa.date32(), pa.date64()])
def test_parquet_date_time_column_is_read_as_midnight_utc(tmp_path, kind):
    """Before: ``ArrowNotImplementedError: Unsupported cast from date32[day] to int64``."""
    frame = taobao_frame()
    frame["timestamp"] = START - START % 86400 + (frame.index % 10) * 86400  # a user's events one day apart
    expected = convert(write_csv(frame, tmp_path / "log.csv"), TAOBAO)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    dates = pa.array([datetime.datetime.fromtimestamp(t, datetime.UTC).date() for t in frame["timestamp"]], kind)
    result = convert(write_parquet(table.set_column(4, "timestamp", dates), tmp_path / "log.parquet"))
    assert rows(result) == rows(expected)
    assert result.dataset["train"][0]["session_start"] % 86400 == 0


# -- S1: a Parquet duration column is read in its own unit


def kuairand_frame() -> pd.DataFrame:
    return pd.DataFrame({"user_id": [1, 1, 2, 2], "video_id": [1, 2, 1, 3],
                         "time_ms": [1650000000000, 1650100000000, 1650200000000, 1650900000000],
                         "is_like": [0, 1, 0, 0], "is_follow": 0, "is_comment": 0, "is_forward": [1, 0, 0, 0],
                         "play_time_ms": [21902, 5000, 7000, 9000]})  # fmt: skip


def test_parquet_duration_columns_are_read_in_their_own_unit(tmp_path):
    """Before: the ticks of ``duration[us]`` (pandas' timedelta) read as milliseconds, a 21.902 s view lasting
    21,902 s; ``duration[s]`` a thousand times too short."""
    for unit in ("s", "ms", "us", "ns"):
        frame = kuairand_frame()
        if unit == "s":  # whole seconds
            frame["play_time_ms"] = [22000, 5000, 7000, 9000]
        expected = convert(write_parquet(frame, tmp_path / "ms.parquet"), KUAIRAND)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        ticks = {"s": 1 / 1000, "ms": 1, "us": 1000, "ns": 1_000_000}[unit]  # per millisecond
        durations = pa.array([round(value * ticks) for value in frame["play_time_ms"]], pa.int64())
        durations = durations.cast(pa.duration(unit))
        path = write_parquet(table.set_column(7, "play_time_ms", durations), tmp_path / f"{unit}.parquet")
        result = convert(path, KUAIRAND)
        assert rows(result) == rows(expected), unit
        assert max(row["action_seconds"][-1] for row in result.dataset["train"]) == pytest.approx(
            22.0 if unit == "s" else 21.902
        )


# -- S2: float ids are spelled as the tokenizer spells them at serving


def test_float_ids_hash_as_the_csv_and_the_tokenizer_spell_them(tmp_path):
    """pandas writes an integer id column with gaps as float64; pyarrow spelled 10000000005.0 "1.0000000005e+10"
    (another bucket than the CSV's "10000000005" and serving's ``hash_items([10000000005])``). Non-whole floats
    follow the tokenizer's ``_id_text`` too."""
    frame = taobao_frame()
    frame["item_id"] = frame["item_id"] + 10_000_000_000
    expected = convert(write_csv(frame, tmp_path / "log.csv"), TAOBAO)
    floats = frame.astype({"item_id": float})
    parquet = convert(write_parquet(floats, tmp_path / "log.parquet"))
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(record) + "\n" for record in floats.to_dict("records")))
    jsonl = convert(tmp_path / "log.jsonl")
    assert rows(parquet) == rows(expected) and rows(jsonl) == rows(expected)
    row = parquet.dataset["train"][0]
    assert row["item"] == str(int(row["item"])) and len(row["item"]) == 11
    assert parquet.tokenizer.hash_items([int(row["item"])])[0] == row["item_id"]
    assert parquet.tokenizer.item_keys([int(row["item"])]) == parquet.tokenizer.item_keys([row["item"]])
    # Side features that are no whole numbers: the text serving hashes them by (``hash_side_features``).
    odd = frame.astype({"category_id": float})
    odd["category_id"] = np.where(odd.index % 2, 3.5, 12345678901.5)
    result = convert(write_parquet(odd, tmp_path / "odd.parquet"))
    tokenizer = result.tokenizer
    for example in result.dataset["train"]:
        assert example["item_side_ids"][0] in set(tokenizer.hash_side_features("category_id", [3.5, 12345678901.5]))
    # The vectorised spelling (pyarrow for whole numbers below 2**53, _id_text for the rest) is _id_text's everywhere.
    from a2gen_hf.data.validation import _float_id_texts
    from a2gen_hf.tokenization_a2gen import _id_text

    odd = [0.0, -0.0, 7.0, -5.0, 3.5, 1e15 + 1, 2.0**53, 2.0**53 + 2, 1 - 2.0**53, 1e-7, 0.1, 12345678901.5, 1e-05]
    spelled = _float_id_texts(pa.array([*odd, float("nan"), float("inf"), None], pa.float64())).to_pylist()
    assert spelled == [_id_text(value) for value in odd] + [None, None, None]
    assert _float_id_texts(pa.array([0.1, 3.0, 16777216.0], pa.float32())).to_pylist() == [
        _id_text(float(np.float32(0.1))), "3", "16777216"]  # fmt: skip


# -- S5 / C7: booleans


def test_boolean_id_columns_are_refused(tmp_path):
    """Before: a bool user_id read as "true" / "false": 6 users became 1 (the tokenizer and the collator refuse a
    bool id)."""
    frame = taobao_frame()
    for column in ("user_id", "item_id"):
        typed = frame.astype({column: bool})
        with pytest.raises(LogFormatError, match=rf"column '{column}' holds booleans .* no ids"):
            convert(write_parquet(typed, tmp_path / f"{column}.parquet"))
    # A boolean side feature is a two-valued category (is_promoted): read as "true" / "false", as before (a review:
    # refusing it broke logs that prepared before); its rows are the CSV's with that text.
    flagged = frame.assign(category_id=frame["category_id"] % 2 == 0)
    as_text = flagged.assign(category_id=flagged["category_id"].map({True: "true", False: "false"}))
    assert rows(convert(write_parquet(flagged, tmp_path / "side.parquet"))) == rows(
        convert(write_parquet(as_text, tmp_path / "side_text.parquet")))  # fmt: skip
    (tmp_path / "log.jsonl").write_text("".join(json.dumps({**record, "item_id": True}) + "\n"
                                                for record in frame.to_dict("records")))  # fmt: skip
    with pytest.raises(LogFormatError, match=r"column 'item_id' holds booleans"):
        convert(tmp_path / "log.jsonl")


def test_boolean_flag_columns_read_as_0_and_1(tmp_path):
    """Before: a bool KuaiRand flag made every row a ``bad_flag`` (``must be 0 or 1, got 'true'``)."""
    views = kuairand_frame()
    expected = convert(write_parquet(views, tmp_path / "ints.parquet"), KUAIRAND)
    flags = views.astype({name: bool for name in KUAIRAND.flag_columns})
    result = convert(write_parquet(flags, tmp_path / "bools.parquet"), KUAIRAND)
    assert rows(result) == rows(expected) and result.summary["rows_dropped"] == {}
    assert sum(result.summary["action_frequencies"]["train"][name] for name in ("like", "forward")) >= 1


# -- S3: a saved tokenizer's side features must be the preset's


def test_a_saved_tokenizer_with_other_side_features_is_refused(tmp_path):
    """Before: the log's ``cat`` column hashed as ``cat=...`` (other side ids than the model reads), or no / two side
    ids per item, while the result's tokenizer still said ``['category_id']``."""
    log = write_csv(taobao_frame(), tmp_path / "log.csv")
    tokenizer = convert(log, TAOBAO).tokenizer
    assert convert(log, TAOBAO, tokenizer=tokenizer).tokenizer.side_feature_fields == ["category_id"]
    renamed = dataclasses.replace(TAOBAO, columns=("user_id", "item_id", "cat", "behavior_type", "timestamp"),
                                  side_feature_columns=("cat",))  # fmt: skip
    none = dataclasses.replace(TAOBAO, side_feature_columns=())
    for preset, shown in ((renamed, r"\['cat'\]"), (none, r"\[\]")):
        with pytest.raises(ValueError, match=rf"tokenizer's side features \['category_id'\] differ from the "
                           rf"side-feature columns {shown}"):  # fmt: skip
            convert(log, preset, tokenizer=tokenizer)
    frame = taobao_frame()
    frame["seller_id"] = 9
    wide = dataclasses.replace(KEYED, side_feature_columns=("category_id", "seller_id"))
    with pytest.raises(ValueError, match=r"\['category_id'\] differ .* \['category_id', 'seller_id'\]"):
        convert(write_parquet(frame, tmp_path / "wide.parquet"), wide, tokenizer=tokenizer)


# -- S4: split boundaries


def kuairand_views(tmp_path, start_ms=1650000000000, span_ms=10**9):
    rng = np.random.default_rng(0)
    count = 60
    views = pd.DataFrame({"user_id": rng.integers(1, 5, count), "video_id": rng.integers(1, 9, count),
                          "time_ms": start_ms + np.sort(rng.integers(0, span_ms, count)), "is_like": 0,
                          "is_follow": 0, "is_comment": 0, "is_forward": 0, "play_time_ms": 5000})  # fmt: skip
    return write_parquet(views, tmp_path / "views.parquet")


def test_split_boundaries_in_milliseconds_are_refused_and_datetimes_read(tmp_path, caplog):
    """Before: boundaries in the log's milliseconds put all 60 views in train without a word, and a
    ``pd.Timestamp`` boundary raised a bare ``TypeError: must be real number``."""
    log = kuairand_views(tmp_path)
    with pytest.raises(ValueError, match=r"validation_start=1650700000000 .* lies after every session start of the "
                       r"log \(the first at 2022-04-15 .*, the last at 2022-04-26 .*\).*read as milliseconds this one "
                       r"is 1650700000 s = 2022-04-23"):  # fmt: skip
        convert(log, KUAIRAND, split_rule=SplitRule(validation_start=1650700000000, test_start=1650850000000))
    with pytest.raises(ValueError, match=r"test_start=1650850000000 .* the test split gets no example"):
        convert(log, KUAIRAND, split_rule=SplitRule(validation_start=1650700000, test_start=1650850000000))
    seconds = convert(log, KUAIRAND, split_rule=SplitRule(validation_start=1650700000, test_start=1650850000))
    assert all(seconds.summary["examples"].values())
    stamps = SplitRule(validation_start=pd.Timestamp(1650700000, unit="s"),
                       test_start=datetime.datetime.fromtimestamp(1650850000, datetime.UTC))  # fmt: skip
    assert (stamps.validation_start, stamps.test_start) == (1650700000, 1650850000)
    assert rows(convert(log, KUAIRAND, split_rule=stamps)) == rows(seconds)
    with pytest.raises(ValueError, match=r"validation_start='2022-04-23' \(str\) is no time"):
        SplitRule(validation_start="2022-04-23")
    with pytest.raises(ValueError, match=r"no training examples .*validation_start=19000 \(1970-01-01 05:16:40 UTC\), "
                       r"test_start=19100 .* sessions start from 2022-04-15 .* to 2022-04-26 .*Unix seconds"):  # fmt: skip
        convert(log, KUAIRAND, split_rule=SplitRule(validation_start=19000, test_start=19100))  # days, not seconds
    with caplog.at_level(logging.WARNING):  # far in the future: every session in train, as asked, with a warning
        whole = convert(log, KUAIRAND, split_rule=SplitRule(validation_start=1e12, test_start=2e12))
    assert whole.summary["examples"] == {"train": 60, "validation": 0, "test": 0}
    assert "validation_start=1000000000000 (" in caplog.text and "the validation and test splits get no" in caplog.text
    # The far boundary the docs recommend, on a log from late 2001 over a year: 1e12 / 1000 (2001-09-09) lies just
    # before the log, not among its times, so it is no millisecond mistake (a review: the first check refused it).
    # A log whose times count from its own start (1970): a boundary after it is "everything in train", not ms.
    (tmp_path / "relative").mkdir()
    relative = kuairand_views(tmp_path / "relative", start_ms=0, span_ms=5 * 86_400_000)
    assert convert(relative, KUAIRAND, split_rule=SplitRule(validation_start=2e6, test_start=3e6)).summary[
        "examples"]["train"] == 60  # fmt: skip
    assert SplitRule(validation_start=Decimal("1650700000")).validation_start == 1650700000.0
    with pytest.raises(ValueError, match="validation_start=NaT is no time"):
        SplitRule(validation_start=pd.NaT)
    (tmp_path / "early").mkdir()
    early = kuairand_views(tmp_path / "early", start_ms=1_001_000_000_000, span_ms=30_000_000_000)
    assert convert(early, KUAIRAND, split_rule=SplitRule(validation_start=1e12, test_start=2e12)).summary[
        "examples"]["train"] == 60  # fmt: skip


# -- C6: inputs that are no log file


def test_inputs_that_are_no_log_file_are_refused_saying_what_is_read(tmp_path, capsys):
    """Before: a DataFrame, a Dataset or a list gave ``TypeError: expected str, bytes or os.PathLike object``; a
    folder ``Log file '...' does not exist``."""
    frame = taobao_frame()
    with pytest.raises(TypeError, match=r"path \(a str or os.PathLike\) of one CSV, JSONL or Parquet file, not "
                       r"pandas.*DataFrame; .*to_parquet"):  # fmt: skip
        convert(frame)
    with pytest.raises(TypeError, match=r"not datasets.*Dataset; .*to_parquet"):
        convert(datasets.Dataset.from_pandas(frame))
    with pytest.raises(TypeError, match=r"not builtins.list; for several files"):
        convert([write_csv(frame, tmp_path / "a.csv"), tmp_path / "a.csv"])
    (tmp_path / "parts").mkdir()
    write_parquet(frame, tmp_path / "parts" / "part-0.parquet")
    with pytest.raises(LogFormatError, match=r"parts' is a folder, not a file; a log is one CSV"):
        convert(tmp_path / "parts")
    code = cli.main(["prepare", "--preset", "taobao", "--input", str(tmp_path / "parts"), "--output",
                     str(tmp_path / "out"), "--quiet"])  # fmt: skip
    assert code == 2 and "is a folder, not a file" in capsys.readouterr().err


# -- D1: the same log prepared twice is the same folder


def test_the_same_log_prepared_twice_gives_byte_identical_folders_and_fingerprints(tmp_path):
    """Before: each ``state.json`` got a random ``_fingerprint``, so the resume key of training (rows and
    fingerprint) refused ``--resume`` on a data folder prepared again from the same log."""
    frame = taobao_frame()
    log = write_csv(frame, tmp_path / "log.csv")
    first = convert(log, TAOBAO, output_dir=tmp_path / "one").dataset
    second = convert(log, TAOBAO, output_dir=tmp_path / "two").dataset
    files = sorted(path.relative_to(tmp_path / "one") for path in (tmp_path / "one").rglob("*") if path.is_file())
    assert any(path.name == "state.json" for path in files)
    for path in files:
        assert (tmp_path / "one" / path).read_bytes() == (tmp_path / "two" / path).read_bytes(), path
    assert first["train"]._fingerprint == second["train"]._fingerprint
    assert first["train"]._fingerprint != first["validation"]._fingerprint
    frame.loc[0, "item_id"] = 99  # other data: another fingerprint
    other = convert(write_csv(frame, tmp_path / "other.csv"), TAOBAO, output_dir=tmp_path / "three").dataset
    assert other["train"]._fingerprint != first["train"]._fingerprint


# -- probe 22: a header line the CSV reader cannot take is refused at line 1, naming the column and the byte

GENERIC_FLAGS = ["--preset", "generic", "--generic-actions", "pv,buy,leave", "--time-window", "none", "--quiet"]


@pytest.mark.parametrize("header, column, shown", [
    (b"user_id,item_id,cat\xe9gorie,action,timestamp", 20, r"byte b'\xe9' is not UTF-8; re-encode the file"),
    (b'user_id,item_id,cat"x,action,timestamp', 20, 'an unbalanced " (a quoted name must end on the line)'),
    (b"user_id,item_id,c\rat,action,timestamp", 18, r"a carriage return (\r) is not part of the line's end"),
])  # fmt: skip
@pytest.mark.parametrize("mode", ["error", "skip"])
def test_a_header_line_with_an_odd_byte_is_refused_at_line_1_in_every_mode(tmp_path, capsys, header, column, shown,
                                                                           mode):  # fmt: skip
    log = tmp_path / "h.csv"
    log.write_bytes(header + b"\n" + b"".join(b"%d,%d,7,pv,%d\n" % (u, u, START + u) for u in range(20)))
    flags = [*GENERIC_FLAGS, "--on-bad-rows", mode, "--input", str(log), "--output", str(tmp_path / "out")]
    assert cli.main(["prepare", *flags]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"h.csv:1: the header line, column {column} (in the column name " in err and shown in err


def test_the_header_fix_commands_read_a_compressed_log_as_text(tmp_path, capsys):
    """Before: for log.csv.gz the advice was `iconv ... h.csv.gz > utf8_h.csv.gz`, which re-encodes compressed bytes."""
    import gzip

    log = tmp_path / "h.csv.gz"
    log.write_bytes(gzip.compress(b"user_id,item_id,cat\xe9gorie,action,timestamp\n1,1,7,pv,%d\n" % START))
    flags = [*GENERIC_FLAGS, "--input", str(log), "--output", str(tmp_path / "out")]
    assert cli.main(["prepare", *flags]) == 2
    assert "`zcat h.csv.gz | iconv -f cp1252 -t utf-8 > utf8_h.csv`" in capsys.readouterr().err


# -- probe 22: a JSON-lines error names the file's line, not pyarrow's row within its block


@pytest.mark.parametrize("block_size", [16 << 20, 8192])
@pytest.mark.parametrize("damage, line, shown", [
    (lambda lines: lines.__setitem__(450, lines[450][:-3]), 451, "JSON parse error"),
    (lambda lines: lines.__setitem__(300, lines[300].replace('"user_id": 299,', '"user_id": "u299",')), 301,
     "Column(/user_id) changed from number to string"),
])  # fmt: skip
def test_json_lines_errors_name_the_files_line(tmp_path, block_size, damage, line, shown):
    from a2gen_hf.data.validation import read_validated_log

    lines = [json.dumps({"user_id": k, "item_id": k % 7, "category_id": 1, "behavior_type": "pv", "timestamp": START + k})
             for k in range(500)]  # fmt: skip
    lines.insert(10, "")  # a blank line is a line of the file too
    damage(lines)
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LogFormatError) as raised:
        read_validated_log(path, KEYED, block_size=block_size, progress=False)
    assert str(raised.value).startswith(f"log.jsonl:{line}: not valid JSON lines (") and shown in str(raised.value)
    assert " in row " not in str(raised.value)
    if "user_id" in shown:  # no time or duration key: no number advice
        assert "Key 'user_id'" not in str(raised.value) and "must be numbers" not in str(raised.value)


@pytest.mark.parametrize("late, shown, advice", [
    ('"2017-11-30T00:00:00Z"', '"2017-11-30T00:00:00Z"', "Date / time text is not parsed: convert the column to "
     "numbers and write the log again, e.g. in pandas `frame['timestamp'] = pd.to_datetime(frame['timestamp'], "
     "utc=True).map(pd.Timestamp.timestamp)`, or for one value `date -u -d '2017-11-30T00:00:00Z' +%s`."),
    ("true", "true", "times must be numbers: Unix seconds as preset 'taobao' reads them"),
])  # fmt: skip
def test_a_json_lines_time_key_that_turns_into_text_gets_the_time_columns_advice(tmp_path, late, shown, advice):
    """From a probe: a JSON lines log whose time key holds numbers in the first block and ISO text (or a bool) later
    got only the generic "not valid JSON lines (... changed from number to string)" error, without the date advice a
    CSV's date text gets. It now names the key as the time column, its value, and how to convert the column (not
    the skip advice: skipping does not apply to a file that pyarrow refuses)."""
    from a2gen_hf.data.validation import read_validated_log

    lines = [json.dumps({"user_id": k, "item_id": k % 7, "category_id": 1, "behavior_type": "pv", "timestamp": START + k})
             for k in range(500)]  # fmt: skip
    lines[400] = lines[400].replace(f'"timestamp": {START + 400}', f'"timestamp": {late}')
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LogFormatError) as raised:
        read_validated_log(path, KEYED, block_size=8192, progress=False)
    message = str(raised.value)
    assert message.startswith("log.jsonl:401: not valid JSON lines (JSON parse error: Column(/timestamp) changed from "
                              "number to ")
    assert f"Key 'timestamp' (the time column) holds {shown} here; " in message and advice in message
    assert "on_bad_rows" not in message


# -- probe 22: rows joined by lone \r after the first 64 KiB are refused as such, in every mode


@pytest.mark.parametrize("mode", ["error", "skip", "warn"])
def test_rows_joined_by_lone_carriage_returns_are_refused_as_rows_in_every_mode(tmp_path, mode):
    rows = [f"{user},{100 + user % 9},1,pv,{START + 3600 * 24 + user}" for user in range(1, 2601)]
    path = tmp_path / "mixed.csv"  # 2,500 lines ending in \n (well over 64 KiB), then 100 rows ending in \r alone
    path.write_bytes(("\n".join(rows[:2500]) + "\n").encode() + ("\r".join(rows[2500:]) + "\r").encode())
    with pytest.raises(LogFormatError) as raised:
        convert(path, TAOBAO, on_bad_rows=mode)
    message = str(raised.value)
    assert message.startswith("mixed.csv:2501: the line holds 100 rows separated by carriage returns (\\r) alone")
    assert "tr '\\r' '\\n'" in message and "tr -d" not in message and "on_bad_rows" not in message


# -- probe 22: CSV flags as pandas writes them (0.0 / 1.0 for a column with a gap, True / False) read as 0 / 1


def test_csv_flags_written_as_floats_or_booleans_read_as_0_and_1(tmp_path):
    views = kuairand_frame()
    views.to_csv(tmp_path / "ints.csv", index=False)
    expected = convert(tmp_path / "ints.csv", KUAIRAND)
    floats = views.astype({name: float for name in KUAIRAND.flag_columns})
    floats.to_csv(tmp_path / "floats.csv", index=False)  # 1.0 / 0.0
    booleans = views.astype({name: bool for name in KUAIRAND.flag_columns})
    booleans.to_csv(tmp_path / "bools.csv", index=False)  # True / False
    text = (tmp_path / "bools.csv").read_text()
    (tmp_path / "cases.csv").write_text(text.replace("True", "TRUE").replace("False", "false"))
    for name in ("floats", "bools", "cases"):
        result = convert(tmp_path / f"{name}.csv", KUAIRAND)
        assert rows(result) == rows(expected) and result.summary["rows_dropped"] == {}, name
    (tmp_path / "yes.csv").write_text(text.replace("True", "yes", 1))
    with pytest.raises(LogFormatError, match=r"must be 0 or 1, got 'yes' \(read too: 0.0 / 1.0 and false / true in "
                                             r"any case\)"):  # fmt: skip
        convert(tmp_path / "yes.csv", KUAIRAND)


# -- probe 22: a pipe for --input is named as such; a zip / zstd file is told how to unpack by its content


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_pipe_as_the_log_is_refused_saying_prepare_reads_it_more_than_once(tmp_path, capsys):
    """Before: "Log file '/dev/stdin' does not exist." (a pipe exists; it can be read only once)."""
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(LogFormatError, match=r"pipe.csv' is a pipe, not a regular file, and prepare reads the log "
                                             r"more than once .* Write it to a file first"):  # fmt: skip
        convert(tmp_path / "pipe.csv", TAOBAO)
    code = cli.main(["prepare", "--preset", "taobao", "--input", str(tmp_path / "pipe.csv"), "--output",
                     str(tmp_path / "out"), "--quiet"])  # fmt: skip
    assert code == 2 and "is a pipe, not a regular file" in capsys.readouterr().err


def test_a_zip_or_zstd_file_is_told_how_to_unpack_whatever_its_extension(tmp_path):
    """Before: 'cannot tell the format from the extension '.zst'; name the file *.csv ...'; renaming it led to the
    real message."""
    (tmp_path / "log.csv.zst").write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 20)
    with zipfile.ZipFile(tmp_path / "log.zip", "w") as archive:
        archive.writestr("log.csv", "1,2,3,pv,1511544070\n")
    with pytest.raises(LogFormatError, match=r"log.csv.zst: the file is a zstd file; decompress it first \(zstd -d "):
        convert(tmp_path / "log.csv.zst", TAOBAO)
    with pytest.raises(LogFormatError, match=r"log.zip: the file is a zip archive; unzip it"):
        convert(tmp_path / "log.zip", TAOBAO)
    (tmp_path / "log.xyz").write_text("1,2,3,pv,1511544070\n")
    with pytest.raises(LogFormatError, match=r"cannot tell the format from the extension '.xyz'"):
        convert(tmp_path / "log.xyz", TAOBAO)


def test_header_names_are_read_without_the_spaces_around_them(tmp_path, capsys):
    """Probe 22: ``user_id, item_id, ...`` (a space after each comma) was refused as missing columns, while values
    written so are read."""
    rows = [f"{user}, {user % 5}, 7, pv, {START + user * 60}" for user in range(1, 40)]
    spaced, plain = tmp_path / "spaced.csv", tmp_path / "plain.csv"
    spaced.write_text("user_id, item_id, cat, action, timestamp\n" + "\n".join(rows) + "\n")
    plain.write_text("user_id,item_id,cat,action,timestamp\n" + "\n".join(row.replace(" ", "") for row in rows) + "\n")
    for name in ("spaced", "plain"):
        flags = [*GENERIC_FLAGS, "--generic-side-features", "cat", "--input", str(tmp_path / f"{name}.csv"),
                 "--output", str(tmp_path / f"out_{name}")]  # fmt: skip
        assert cli.main(["prepare", *flags]) == 0, capsys.readouterr().err
    read = [datasets.load_from_disk(str(tmp_path / f"out_{name}"))["train"].to_dict() for name in ("spaced", "plain")]
    assert read[0] == read[1] and read[0]["user_id"]


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ("1\t10\t5\tpv\t1511544071\n2\t11\t5\tpv\t1511544072\n", "--delimiter '\\t'"),
        ("1,10,5,PV,1511544071\n2,11,5,PV,1511544072\n", "'PV' is 'pv' in another case"),
    ],
    ids=["tab-separated", "action-in-another-case"],
)
def test_a_file_wide_cause_is_not_followed_by_the_advice_to_skip_rows(tmp_path, text, cause):
    """Found by a probe: the delimiter and letter-case errors named the cause, then advised --on-bad-rows skip, which
    would drop every row (every 'PV' row). The advice is left out where the message has found a file-wide cause, and
    kept for a row that is wrong on its own."""
    log = tmp_path / "log.csv"
    log.write_text(text)
    with pytest.raises(LogFormatError) as caught:
        convert(log, preset=TAOBAO)
    assert cause in str(caught.value) and "on-bad-rows skip" not in str(caught.value)
    single = tmp_path / "single.csv"
    for bad_row, problem in (("2,11,5,PX,1511544072", "unknown action 'PX'"), ("2,11,5", "truncated row")):
        single.write_text(f"1,10,5,pv,1511544071\n{bad_row}\n")
        with pytest.raises(LogFormatError, match=rf"{problem}.*--on-bad-rows skip"):
            convert(single, preset=TAOBAO)


def test_a_csv_read_as_parquet_is_said_to_be_maybe_no_parquet_file(tmp_path, capsys):
    """From a probe: `--format parquet` of a CSV said only that the file "is truncated or corrupt"."""
    from a2gen_hf.cli import main

    log = tmp_path / "log.csv"
    log.write_text("1,2,3,pv,1511658000\n1,4,3,pv,1511658060\n")
    assert main(["prepare", "--preset", "taobao", "--input", str(log), "--format", "parquet",
                 "--output", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "not a readable Parquet file" in err and "give --format csv or jsonl" in err
