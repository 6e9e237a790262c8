"""Hostile logs of probe s29 (docs/data.md): float32 / decimal Parquet columns, placeholder ids, one id spelled two
ways, repeated --input / --output, a header in another order, a seconds log read as milliseconds, --config lists,
compressed header hints, JSON lines errors, preset errors by flag, bucket counts set by hand and --min-history's
time statistics."""

import dataclasses
import gzip
import json
import logging
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from a2gen_hf.cli import main
from a2gen_hf.data import PRESETS, LogFormatError, convert_log

TAOBAO = PRESETS["taobao"]
KEYED = dataclasses.replace(TAOBAO, columns=None)  # Parquet / JSONL: columns by name
START = 1511544000  # inside the Taobao preset's time window


def frame(users: int = 6, per_user: int = 10) -> pd.DataFrame:
    """Taobao rows: each user clicks ``per_user`` items an hour apart (new sessions a day apart every 3 clicks)."""
    rng = np.random.default_rng(0)
    rows = [(user, int(rng.integers(1, 40)), int(rng.integers(1, 4)), "pv", START + user * 7 + k * 3600 + (k // 3) * 86400)
            for user in range(1, users + 1) for k in range(per_user)]  # fmt: skip
    return pd.DataFrame(rows, columns=list(TAOBAO.columns))


def convert(path, preset=TAOBAO, **kwargs):
    return convert_log(path, preset=preset, num_proc=1, progress=False, **kwargs)


def write_csv(data: pd.DataFrame, path) -> str:
    data.to_csv(path, header=False, index=False)
    return str(path)


def prepare(tmp_path, *flags) -> int:
    return main(["prepare", "--preset", "taobao", "--num-proc", "1", "--quiet", *flags])


# -- 1. float32 Parquet columns


def test_float32_ids_above_2_24_are_imprecise(tmp_path):
    """Before: 100 distinct float32 item ids above 2**24 merged into 51 without a word (the check used 2**53)."""
    data = frame()
    data["item_id"] = (30_000_001 + np.arange(len(data))).astype(np.float32)
    path = tmp_path / "f32.parquet"
    pq.write_table(pa.Table.from_pandas(data, preserve_index=False), path)
    with pytest.raises(LogFormatError, match=r"beyond 2\*\*24, read as a float32"):
        convert(path, KEYED)


def test_float32_unix_seconds_are_refused(tmp_path):
    """Before: times rounded to 128 s were read as they were (false duplicates, moved sessions)."""
    data = frame()
    data["timestamp"] = data["timestamp"].astype(np.float32)
    path = tmp_path / "f32ts.parquet"
    pq.write_table(pa.Table.from_pandas(data, preserve_index=False), path)
    with pytest.raises(LogFormatError, match=r"'timestamp' \(the time column\) is stored as float32.*int64 or float64"):
        convert(path, KEYED)


# -- 2. placeholder ids


@pytest.mark.parametrize("placeholder", ["\\N", "NULL", "NaN", "None"])
def test_placeholder_ids_are_bad_rows(tmp_path, placeholder):
    """Before: every \\N user became one user."""
    data = frame().astype({"user_id": str})
    data.loc[::7, "user_id"] = placeholder
    path = write_csv(data, tmp_path / "log.csv")
    with pytest.raises(LogFormatError, match="a placeholder for no value"):
        convert(path)
    result = convert(path, on_bad_rows="skip")
    assert result.summary["rows_dropped"] == {"empty_value": len(data.loc[::7])}
    assert result.summary["distinct"]["users"] == 6


def test_placeholder_category_is_unknown(tmp_path):
    data = frame().astype({"category_id": str})
    data.loc[::5, "category_id"] = "NULL"
    result = convert(write_csv(data, tmp_path / "log.csv"))
    data.loc[::5, "category_id"] = ""
    empty = convert(write_csv(data, tmp_path / "empty.csv"))  # an empty category: unknown (padding)
    assert result.dataset["train"]["item_side_ids"] == empty.dataset["train"]["item_side_ids"]


# -- 5. one id spelled two ways


@pytest.mark.parametrize("space", ["\u00a0", "\u200b", "\ufeff", "\u3000"])
def test_unicode_spaces_around_ids_are_trimmed(tmp_path, space):
    data = frame().astype({"user_id": str})
    data.loc[::2, "user_id"] = space + data.loc[::2, "user_id"] + space
    result = convert(write_csv(data, tmp_path / "log.csv"))
    assert result.summary["distinct"]["users"] == 6
    assert result.summary["values_trimmed"] == len(data.loc[::2])


@pytest.mark.parametrize("space", [" ", "\t", "\u00a0", "\u200b", "\ufeff"])
def test_serving_hashes_an_id_without_the_characters_prepare_trims(space):
    from a2gen_hf.tokenization_a2gen import A2GenActionTokenizer

    tokenizer = A2GenActionTokenizer(action_names=["start", "like", "leave"], user_buckets=1000, item_buckets=1000)
    for raw in ("7", "u42"):
        assert tokenizer.hash_user(space + raw + space) == tokenizer.hash_user(raw)
        assert tokenizer.hash_item((raw + space).encode()) == tokenizer.hash_item(raw)


def test_one_number_spelled_two_ways_is_warned_of(tmp_path, caplog):
    data = frame().astype({"user_id": str})
    data.loc[::2, "user_id"] = "00" + data.loc[::2, "user_id"]
    with caplog.at_level(logging.WARNING):
        result = convert(write_csv(data, tmp_path / "log.csv"))
    assert result.summary["distinct"]["users"] == 12  # not merged: zero-padded codes may be distinct ids
    assert "column 'user_id' spells 6 number(s) in more than one way, e.g. '001' and '1'" in caplog.text


# -- 6. decimal ids


def test_decimal_ids_are_spelled_as_integers(tmp_path):
    data = frame()
    table = pa.Table.from_pandas(data, preserve_index=False)
    decimals = pa.array([Decimal(value).quantize(Decimal("0.01")) for value in data["item_id"]], pa.decimal128(20, 2))
    pq.write_table(table.set_column(1, "item_id", decimals), tmp_path / "dec.parquet")
    pq.write_table(table, tmp_path / "int.parquet")
    decimal, integer = convert(tmp_path / "dec.parquet", KEYED), convert(tmp_path / "int.parquet", KEYED)
    assert decimal.dataset["train"]["item"] == integer.dataset["train"]["item"]
    assert decimal.dataset["train"]["item_id"] == integer.dataset["train"]["item_id"]


# -- 7. --min-history


def test_min_history_fits_time_statistics_on_the_examples_and_counts_the_rest(tmp_path):
    path = write_csv(frame(per_user=20), tmp_path / "log.csv")
    every = convert(path)
    some = convert(path, min_history=3)
    assert some.summary["sessions_below_min_history"] == some.summary["sessions"] - sum(some.summary["examples"].values())
    assert some.summary["sessions_below_min_history"] > 0 and every.summary["sessions_below_min_history"] == 0
    assert some.tokenizer.time_log_mean != every.tokenizer.time_log_mean


# -- 3. / 10. one --input, one --output


def test_input_and_output_given_twice_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_csv(frame(), "a.csv")
    write_csv(frame(), "b.csv")
    with pytest.raises(SystemExit):
        prepare(tmp_path, "--input", "a.csv", "--input", "b.csv", "--output", "out")
    assert "--input: given twice (a.csv, then b.csv); a run reads one log file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        prepare(tmp_path, "--input", "a.csv", "--output", "out", "--output", "out2")
    assert "--output: given twice (out, then out2)" in capsys.readouterr().err
    # A --config file's input is overridden by the command line, as every option's is.
    (tmp_path / "c.yaml").write_text("input: missing.csv\noutput: out_c\n")
    assert prepare(tmp_path, "--config", "c.yaml", "--input", "a.csv") == 0
    assert (tmp_path / "out_c" / "a2gen_data.json").is_file()


def test_a_config_list_for_a_one_value_option_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("input: [a.csv, b.csv]\n")
    with pytest.raises(SystemExit):
        prepare(tmp_path, "--config", "c.yaml", "--output", "out")
    assert "input holds a list (['a.csv', 'b.csv']), but --input takes one value" in capsys.readouterr().err


# -- 4. / 11. header hints


def test_a_header_in_another_order_is_named_so(tmp_path):
    data = frame()[["user_id", "category_id", "item_id", "behavior_type", "timestamp"]]
    path = tmp_path / "log.csv"
    data.to_csv(path, index=False)
    with pytest.raises(LogFormatError) as error:
        convert(path)
    assert "the preset's columns in another order" in str(error.value)
    assert "tail -n +2" not in str(error.value)


def test_the_header_hint_of_a_compressed_log_decompresses(tmp_path):
    data = frame().rename(columns={"behavior_type": "type"})
    path = tmp_path / "log.csv.gz"
    path.write_bytes(gzip.compress(data.to_csv(index=False).encode()))
    with pytest.raises(LogFormatError, match=r"`zcat log\.csv\.gz \| tail -n \+2 \| gzip > rows_log\.csv\.gz`"):
        convert(path)


# -- 9. seconds read as milliseconds


def test_seconds_read_as_ms_are_shown_in_the_unit_read(tmp_path):
    path = write_csv(frame(), tmp_path / "log.csv")
    with pytest.raises(LogFormatError, match=r"\(read as 'ms': .*1970-01-18.*CLI: --time-unit s\)"):
        convert(path, dataclasses.replace(TAOBAO, time_unit="ms"))


# -- 12. JSON lines


def test_jsonl_duplicate_key_names_the_file_line(tmp_path):
    lines = [json.dumps(row) for row in frame().to_dict("records")]
    lines[5] = lines[5][:-1] + ', "user_id": 999}'
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LogFormatError, match=r"log\.jsonl:6: not valid JSON lines"):
        convert(path, KEYED)


def test_a_csv_read_as_jsonl_is_named_so(tmp_path):
    path = write_csv(frame(), tmp_path / "log.csv")
    with pytest.raises(LogFormatError, match=r"does not look like JSON lines at all \(it starts with '1'.*--format csv"):
        convert(path, KEYED, file_format="jsonl")


# -- 13. preset errors by flag


def test_preset_errors_name_the_flags(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_csv(frame(), "a.csv")
    assert main(["prepare", "--preset", "generic", "--generic-actions", "click,buy,leave", "--generic-action-mapping",
                 "pv=purchase", "--input", "a.csv", "--output", "out"]) == 2  # fmt: skip
    assert "(CLI: --generic-action-mapping), is not in action_names ['click', 'buy', 'leave'] (CLI: --generic-actions)" \
        in capsys.readouterr().err
    assert prepare(tmp_path, "--input", "a.csv", "--output", "out", "--quote-char", ",") == 2
    assert "(CLI: --quote-char, or none for None; the delimiter: --delimiter)" in capsys.readouterr().err


# -- 14. bucket counts set by hand


def test_bucket_counts_set_by_hand_are_checked(tmp_path, capsys, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    write_csv(frame(), "a.csv")
    assert prepare(tmp_path, "--input", "a.csv", "--output", "out", "--item-buckets", str(2**40)) == 2
    assert "--item-buckets 1,099,511,627,776 must be between 2 and 4,294,967,296" in capsys.readouterr().err
    assert prepare(tmp_path, "--input", "a.csv", "--output", "out2", "--item-buckets", "2") == 0
    err = capsys.readouterr().err
    assert "item_buckets=2 (CLI: --item-buckets) gives" in err and "share a row" in err
