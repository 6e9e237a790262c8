"""What the log reader says when a log's times or durations are text, when no row is left, and when sessions are
longer than the labels keep because the session gap is long."""

import json
from pathlib import Path

import pytest

from a2gen_hf import cli
from a2gen_hf.data import LogFormatError, SplitRule, convert_log, format_summary

SHOP = ["generic", "--generic-actions", "view,order,exit", "--generic-user-column", "uid", "--generic-item-column",
        "sku", "--generic-time-column", "ts", "--generic-action-column", "kind"]  # fmt: skip


def _iso_log(path: Path, rows: int = 12) -> Path:
    """A JSON-lines shop log whose times are ISO-8601 text, as many exports write them."""
    lines = [json.dumps({"uid": f"u{row % 3}", "sku": f"s{row % 4}", "kind": "view",
                         "ts": f"2022-04-17T03:{row:02d}:31.033319Z"}) for row in range(rows)]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def _prepare(tmp_path: Path, log: Path, *extra: str) -> int:
    return cli.main(["prepare", "--preset", *SHOP, "--input", str(log), "--output", str(tmp_path / "out"), "--quiet",
                     *extra])  # fmt: skip


def test_iso_times_say_times_are_numbers_and_how_to_convert_without_advising_skip(tmp_path, capsys):
    """Before: "column 'ts' is not a number ... or pass on_bad_rows='skip'", and skipping left no row."""
    assert _prepare(tmp_path, _iso_log(tmp_path / "shop.jsonl")) == 2
    error = capsys.readouterr().err
    assert "shop.jsonl:1: column 'ts' is not a number: '2022-04-17T03:00:31.033319Z'" in error
    assert "times must be numbers: Unix seconds" in error and "--time-unit ms" in error and "time_unit='ms'" in error
    assert "text is not parsed" in error and "pd.to_datetime" in error and "+%s" in error
    assert "--on-bad-rows skip" not in error and "pass on_bad_rows='skip'" not in error


def test_no_valid_rows_left_says_why_in_words_and_gives_the_column_hint(tmp_path, capsys):
    """Before: only "no valid rows are left (12 bad_number)"."""
    assert _prepare(tmp_path, _iso_log(tmp_path / "shop.jsonl"), "--on-bad-rows", "skip") == 2
    error = capsys.readouterr().err
    assert "no valid rows are left (12 bad_number)." in error
    assert "Why: 12 bad_number: a time or duration is not a number." in error
    assert "The first row: shop.jsonl:1: column 'ts' is not a number" in error and "times must be numbers" in error
    assert not (tmp_path / "out").exists()


def test_a_stray_word_in_the_time_column_still_advises_skipping_and_names_the_unit(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("1,100,5,pv,1511544070\n1,101,5,pv,soon\n")
    with pytest.raises(LogFormatError, match=r"log\.csv:2: column 'timestamp' is not a number: 'soon'; times must be "
                       r"numbers: Unix seconds as preset 'taobao' reads them") as error:  # fmt: skip
        convert_log(log, "taobao", progress=False)
    assert "on_bad_rows='skip'" in str(error.value) and "not parsed" not in str(error.value)


def test_clock_text_durations_say_durations_are_numbers_without_advising_skip(tmp_path):
    """A KuaiRand-style view log whose play time is clock text (as pandas writes a timedelta): before, the advice
    was to skip, which drops every row."""
    header = "user_id,video_id,time_ms,is_like,is_follow,is_comment,is_forward,play_time_ms\n"
    log = tmp_path / "views.csv"
    log.write_text(header + "1,10,1650000000000,0,0,0,0,0 days 00:00:21.902000\n")
    with pytest.raises(LogFormatError) as error:
        convert_log(log, "kuairand", progress=False)
    message = str(error.value)
    assert "views.csv:2: column 'play_time_ms' is not a number: '0 days 00:00:21.902000'" in message
    assert "durations must be numbers: milliseconds" in message and "duration_unit='s'" in message
    assert "pd.to_timedelta" in message and "on_bad_rows='skip' (CLI" not in message


def test_mmdd_dates_written_as_text_name_the_mmdd_form(tmp_path):
    log = tmp_path / "user_log.csv"
    log.write_text("user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type\n1,2,3,4,5,2015-11-11,0\n")
    with pytest.raises(LogFormatError, match=r"reads times as mmdd numbers, a day of 2015 .*strftime\('%m%d'\)"):
        convert_log(log, "tmall", progress=False)


def _long_visits_log(tmp_path: Path) -> Path:
    """Taobao rows: per user one item viewed 8 times, an hour apart (one session under the default 3-day gap)."""
    rows = [f"{user},10{user},5,pv,{1511544000 + user * 100 + hour * 3600}\n" for user in range(1, 7)
            for hour in range(8)]  # fmt: skip
    path = tmp_path / "log.csv"
    path.write_text("".join(rows))
    return path


def test_the_long_session_warning_names_the_session_gap_and_the_longest_span(tmp_path, caplog):
    """Before: the warning only said --max-actions."""
    whole = SplitRule(validation_start=1e12, test_start=2e12)  # every session in train
    with caplog.at_level("WARNING"):
        result = convert_log(_long_visits_log(tmp_path), "taobao", split_rule=whole, progress=False)
    for shown in (caplog.text, format_summary(result.summary)):
        assert "--max-actions 8" in shown and "session_gap_seconds=259200 (3 days)" in shown
        assert "--session-gap-seconds 1800" in shown and "convert_log(session_gap_seconds=1800)" in shown
        assert "the longest lasts 7 h from its first to its last event" in shown
    assert result.summary["labels"]["longest_session_seconds"] == 7 * 3600
    short = convert_log(_long_visits_log(tmp_path), "taobao", split_rule=whole, session_gap_seconds=1800,
                        progress=False)  # fmt: skip
    assert short.summary["labels"]["longer_examples"]["train"] == 0


def test_spans_are_named_in_their_own_unit():
    """A minute or an hour was called "1 day" in the long-session hint (the singular of days stood for every unit)."""
    from a2gen_hf.data.logs import _span_text

    assert [_span_text(s) for s in (45, 60, 90, 3600, 86400, 172800)] == [
        "45 s", "1 min", "1.5 min", "1 h", "1 day", "2 days",
    ]


def test_advice_on_sessions_longer_than_any_model_keeps_stays_within_max_actions(tmp_path, caplog):
    """Probe 22: "prepare again with --max-actions 3000", which the CLI then refused (at most 1024)."""
    rows = [f"1,777,5,pv,{1511600000 + k * 50}\n" for k in range(1100)]  # one item viewed 1,100 times
    rows += [f"{user},10{user},5,pv,{1511544000 + user * 100}\n" for user in range(2, 8)]
    (tmp_path / "log.csv").write_text("".join(rows))
    whole = SplitRule(validation_start=1e12, test_start=2e12)
    with caplog.at_level("WARNING"):
        convert_log(tmp_path / "log.csv", "taobao", split_rule=whole, progress=False)
    assert "--max-actions 1100" not in caplog.text and "No model generates 1,100 actions" in caplog.text
    assert caplog.text.index("--session-gap-seconds 1800") < caplog.text.index("--max-actions 1024 keeps the first")


def test_a_log_whose_sessions_start_at_one_second_is_told_how_to_keep_it_all_in_train(tmp_path, capsys):
    """Probe 22: the advice named --generic-time-column beside --preset taobao, which the CLI refuses."""
    (tmp_path / "one.csv").write_text("1,2268318,2520377,pv,1511544070\n")
    flags = ["prepare", "--preset", "taobao", "--input", str(tmp_path / "one.csv"), "--quiet"]
    assert cli.main([*flags, "--output", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "every session starts at the same second" in err and "--generic-time-column" not in err
    assert "(CLI: --time-unit)" in err and "(CLI: --validation-fraction 0 --test-fraction 0)" in err
    assert "SplitRule(validation_fraction=0, test_fraction=0)" in err  # the Python hint is not turned into flags
    assert cli.main([*flags, "--output", str(tmp_path / "b"), "--validation-fraction", "0", "--test-fraction", "0"]) == 0


def test_prepare_prints_the_long_session_paragraph_once(tmp_path, capsys):
    """It was printed twice: as prepare's warning (stderr) and again in the summary (stdout)."""
    from a2gen_hf.cli import main

    whole = ["--validation-start", "1e12", "--test-start", "2e12"]
    assert main(["prepare", "--preset", "taobao", "--input", str(_long_visits_log(tmp_path)), "--output",
                 str(tmp_path / "data"), *whole]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    assert (out + err).count("--session-gap-seconds 1800") == 1 and "--session-gap-seconds 1800" in err
    assert "sessions longer than the labels keep: train 6, validation 0, test 0 examples (the warning above" in out
