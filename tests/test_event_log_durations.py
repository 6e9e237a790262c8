"""Event logs with a duration column (a short-video log's watch time on its play rows): LogPreset(action_column=...,
duration_column=...) and ``a2gen prepare --preset generic --generic-duration-column``; the rules are in docs/data.md
("Durations of event logs")."""

import dataclasses
import json
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from a2gen_hf import cli
from a2gen_hf.data import PRESETS, LogFormatError, LogPreset, SplitRule, convert_log, format_summary
from a2gen_hf.tokenization_a2gen import A2GenActionTokenizer

FIXTURES = Path(__file__).resolve().parent / "fixtures"
T0 = 1_700_000_000_000  # Unix milliseconds (November 2023): the logs' first time
EVERYTHING_IN_TRAIN = SplitRule(validation_start=4e9, test_start=4e9)  # 2096: no session is that late

VIDEO_EVENTS = LogPreset(
    name="video_events",
    action_names=("play", "like", "comment", "leave"),
    start_action="play",
    end_action="leave",
    user_column="user",
    item_column="video",
    time_column="ts_ms",
    time_unit="ms",
    action_column="event",
    action_mapping={"play": "play", "like": "like", "comment": "comment", "leave": "leave"},
    duration_column="watch_ms",
    duration_unit="ms",
)
WITHOUT_DURATIONS = dataclasses.replace(VIDEO_EVENTS, duration_column=None)


def _log(tmp_path: Path, rows: list[tuple], header: str = "user,video,ts_ms,event,watch_ms", name="log.csv") -> Path:
    """A CSV log of ``rows`` (user, video, seconds after T0, event, duration cell as written)."""
    path = tmp_path / name
    lines = [header] + [",".join([user, video, str(T0 + round(seconds * 1000)), event, *cells])
                        for user, video, seconds, event, *cells in rows]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def _convert(path: Path, preset: LogPreset = VIDEO_EVENTS, **options):
    options = {"split_rule": EVERYTHING_IN_TRAIN, "progress": False, **options}
    return convert_log(path, preset, **options)


def _sessions(result) -> dict[tuple[str, str, float], list[tuple[str, float]]]:
    """{(user, video, start in seconds after T0): [(action, seconds since the start), ...]} of every split."""
    tokenizer = result.tokenizer
    return {
        (row["user"], row["item"], row["session_start"] - T0 // 1000): list(
            zip(tokenizer.convert_ids_to_tokens(row["action_ids"]), row["action_seconds"])
        )
        for split in result.dataset.values()
        for row in split
    }


def test_log_preset_takes_an_action_column_with_a_duration_column():
    assert VIDEO_EVENTS.duration_column == "watch_ms" and VIDEO_EVENTS.action_column == "event"
    assert not VIDEO_EVENTS.is_view_log and PRESETS["kuairand"].is_view_log
    assert ("watch_ms", "ms") in VIDEO_EVENTS.number_columns() and "watch_ms" in VIDEO_EVENTS.needed_columns()
    # Empty durations are unknown in an event log only; a view log needs one on every row.
    assert VIDEO_EVENTS.empty_means_unknown("watch_ms") and not VIDEO_EVENTS.empty_means_unknown("ts_ms")
    assert not PRESETS["kuairand"].empty_means_unknown("play_time_ms")
    with pytest.raises(ValueError, match=r"column\(s\) \['ts_ms'\] are given more than one role"):
        dataclasses.replace(VIDEO_EVENTS, duration_column="ts_ms")


def test_log_preset_refuses_flag_columns_with_an_action_column_and_a_view_log_without_its_duration():
    for duration_column in ("watch_ms", None):  # without a duration the flags were ignored, silently
        with pytest.raises(ValueError, match=r"flag_columns \['liked'\] belong to view logs .* action_column\)"):
            dataclasses.replace(VIDEO_EVENTS, duration_column=duration_column, flag_columns={"liked": "like"})
    with pytest.raises(ValueError, match="flag_columns make a view log .* which needs duration_column"):
        dataclasses.replace(PRESETS["kuairand"], duration_column=None)
    with pytest.raises(ValueError, match="set action_column .* or duration_column"):
        dataclasses.replace(WITHOUT_DURATIONS, action_column=None)


def test_the_end_action_lies_at_the_start_plus_the_duration_of_the_start_row(tmp_path):
    result = _convert(_log(tmp_path, [("u1", "v1", 0, "play", "12000"), ("u1", "v1", 3, "like", "")]))
    assert _sessions(result) == {("u1", "v1", 0): [("play", 0.0), ("like", 3.0), ("leave", 12.0)]}
    assert result.summary["labels"]["longest_session_seconds"] == 12.0
    assert result.summary["event_durations"] == {
        "column": "watch_ms", "unit": "ms", "end_from_duration": 1, "end_at_last_event_duration_shorter": 0,
        "end_at_last_event_no_duration": 0, "end_logged": 0, "end_from_duration_over_a_day_after_last_event": 0,
    }


def test_a_duration_logged_on_a_later_row_runs_from_that_row(tmp_path):
    result = _convert(_log(tmp_path, [("u1", "v1", 0, "play", ""), ("u1", "v1", 2, "like", "9000")]))
    assert _sessions(result) == {("u1", "v1", 0): [("play", 0.0), ("like", 2.0), ("leave", 11.0)]}


def test_the_session_ends_where_the_last_logged_duration_ends(tmp_path):
    rows = [("u1", "v1", 0, "play", "15000"), ("u1", "v1", 2, "like", "9000"), ("u1", "v1", 4, "comment", "7000")]
    result = _convert(_log(tmp_path, rows))  # 0 + 15 beats 2 + 9 and 4 + 7
    assert _sessions(result) == {("u1", "v1", 0): [("play", 0.0), ("like", 2.0), ("comment", 4.0), ("leave", 15.0)]}


def test_a_replay_within_the_session_gap_ends_where_the_replay_ends(tmp_path):
    # One (user, video) session (the default gap is 3 days): the second view's 20 s count from its own start, not
    # from the session's (a duration from the session's start would end at 20 s, before the replay began).
    rows = [("u1", "v1", 0, "play", "10000"), ("u1", "v1", 3600, "play", "20000")]
    result = _convert(_log(tmp_path, rows))
    assert _sessions(result) == {("u1", "v1", 0): [("play", 0.0), ("play", 3600.0), ("leave", 3620.0)]}
    assert result.summary["event_durations"]["end_from_duration"] == 1
    assert result.summary["event_durations"]["end_at_last_event_duration_shorter"] == 0


def test_a_log_without_any_duration_prepares_as_the_same_log_without_the_column(tmp_path):
    rows = [("u1", "v1", 0, "play"), ("u1", "v1", 3, "like"), ("u1", "v2", 60, "play"), ("u1", "v2", 61, "leave"),
            ("u2", "v1", 5, "like"), ("u2", "v1", 9, "comment"), ("u1", "v1", 4 * 86400, "play"),
            ("u2", "v3", 7 * 86400, "play"), ("u2", "v3", 7 * 86400 + 30, "like")]  # fmt: skip
    with_column = _convert(_log(tmp_path, [(*row, "") for row in rows], name="empty.csv"))
    without = _convert(_log(tmp_path, rows, header="user,video,ts_ms,event", name="plain.csv"), WITHOUT_DURATIONS)
    for split in without.dataset:
        assert with_column.dataset[split][:] == without.dataset[split][:]
    assert (with_column.tokenizer.time_log_mean, with_column.tokenizer.time_log_std) == (
        without.tokenizer.time_log_mean, without.tokenizer.time_log_std)
    assert with_column.summary["sessions"] == without.summary["sessions"] == 5
    assert with_column.summary["rows_dropped"] == {}  # empty durations are no bad rows in an event log
    counts = with_column.summary["event_durations"]
    assert (counts["end_at_last_event_no_duration"], counts["end_logged"], counts["end_from_duration"]) == (4, 1, 0)
    assert "event_durations" not in without.summary
    # A view log still needs its duration on every row (empty_value), as before.
    lines = (FIXTURES / "kuairand_log.csv").read_text().splitlines()
    header, row = lines[0].split(","), lines[1].split(",")
    row[header.index("play_time_ms")] = ""
    view_log = tmp_path / "views.csv"
    view_log.write_text("\n".join([lines[0], lines[2], ",".join(row)]) + "\n")
    with pytest.raises(LogFormatError, match=r"views.csv:3: column 'play_time_ms' is empty"):
        convert_log(view_log, "kuairand", progress=False)


def test_a_duration_that_ends_before_the_last_event_ends_the_session_at_that_event(tmp_path, caplog):
    rows = [("u1", "v1", 0, "play", "1000"), ("u1", "v1", 5, "comment", ""), ("u1", "v2", 10, "play", "4000")]
    result = _convert(_log(tmp_path, rows))
    assert _sessions(result) == {
        ("u1", "v1", 0): [("play", 0.0), ("comment", 5.0), ("leave", 5.0)],  # not at 1 s, before the comment
        ("u1", "v2", 10): [("play", 0.0), ("leave", 4.0)],
    }
    counts = result.summary["event_durations"]
    assert (counts["end_at_last_event_duration_shorter"], counts["end_from_duration"]) == (1, 1)
    shown = format_summary(result.summary)
    assert "1 at the last event, as their durations end before it (an end cannot precede the session's events)" in shown
    assert "--generic-duration-unit" in shown
    assert "as their durations end before it" in caplog.text  # also warned of


def test_durations_in_milliseconds_read_as_seconds_are_warned_of(tmp_path, caplog):
    """A 90 s watch logged in milliseconds and read as seconds ends 25 hours after its last event: the summary counts
    such sessions and says which option to check (before: nothing hinted at the unit)."""
    rows = [("u1", "v1", 0, "play", "90000"), ("u1", "v1", 5, "like", ""), ("u1", "v2", 10, "play", "30")]
    as_seconds = dataclasses.replace(VIDEO_EVENTS, duration_unit="s")
    result = _convert(_log(tmp_path, rows), as_seconds)
    assert _sessions(result)[("u1", "v1", 0)][-1] == ("leave", 90000.0)  # read as told, only warned of
    counts = result.summary["event_durations"]
    assert (counts["end_from_duration"], counts["end_from_duration_over_a_day_after_last_event"]) == (2, 1)
    shown = format_summary(result.summary)
    assert "1 of the sessions that end where a duration ends do so more than a day after their last event" in shown
    assert "duration_unit='s'; CLI: --generic-duration-unit" in shown and "1000 times too long" in shown
    assert "more than a day after their last event" in caplog.text
    caplog.clear()
    read_right = _convert(_log(tmp_path, rows, name="right.csv"))  # milliseconds: 90 s, nothing to warn of
    assert read_right.summary["event_durations"]["end_from_duration_over_a_day_after_last_event"] == 0
    assert "more than a day" not in format_summary(read_right.summary) and "more than a day" not in caplog.text


def test_a_logged_end_action_keeps_its_own_time(tmp_path):
    rows = [("u1", "v1", 0, "play", "60000"), ("u1", "v1", 10, "leave", ""), ("u1", "v2", 0, "play", ""),
            ("u1", "v2", 4, "leave", "1000")]  # fmt: skip
    result = _convert(_log(tmp_path, rows))
    assert _sessions(result) == {
        ("u1", "v1", 0): [("play", 0.0), ("leave", 10.0)],  # not at 60 s
        ("u1", "v2", 0): [("play", 0.0), ("leave", 4.0)],  # a duration on the end row changes nothing either
    }
    assert result.summary["event_durations"]["end_logged"] == 2


def test_the_session_ends_at_the_duration_for_histories_too(tmp_path):
    """A view still watched when the next one starts is not yet in that one's history (it has not ended)."""
    rows = [("u1", "v1", 0, "play", "60000"), ("u1", "v2", 30, "play", ""), ("u1", "v3", 90, "play", "")]
    result = _convert(_log(tmp_path, rows))
    histories = {row["item"]: row["history_item_ids"] for split in result.dataset.values() for row in split}
    v1 = result.tokenizer.hash_item("v1")
    assert v1 not in histories["v2"]  # v1 runs until 60 s
    assert v1 in histories["v3"]
    without = _convert(_log(tmp_path, [row[:4] for row in rows], "user,video,ts_ms,event", "p.csv"), WITHOUT_DURATIONS)
    assert v1 in {row["item"]: row["history_item_ids"] for row in without.dataset["train"]}["v2"]


def test_a_duration_does_not_change_where_sessions_are_cut(tmp_path):
    day = 86400
    rows = [("u1", "v1", 0, "play", str(10 * day * 1000)), ("u1", "v1", 4 * day, "like", ""),
            ("u1", "v2", 0, "play", "5000"), ("u1", "v2", 1, "leave", ""), ("u1", "v2", 2, "like", "")]  # fmt: skip
    result = _convert(_log(tmp_path, rows))  # the default gap: 3 days
    assert _sessions(result) == {
        ("u1", "v1", 0): [("play", 0.0), ("leave", 10.0 * day)],
        ("u1", "v1", 4 * day): [("play", 0.0), ("like", 0.0), ("leave", 0.0)],  # cut by the gap, as without
        ("u1", "v2", 0): [("play", 0.0), ("leave", 1.0)],  # cut by the logged end action, as without
        ("u1", "v2", 2): [("play", 0.0), ("like", 0.0), ("leave", 0.0)],
    }
    assert result.summary["sessions"] == 4


@pytest.mark.parametrize(
    "value, reason, message",
    [
        ("-5", "negative_number", r"log.csv:3: column 'watch_ms' is negative: '-5'"),
        ("soon", "bad_number", r"log.csv:3: column 'watch_ms' is not a number: 'soon'; durations must be numbers"),
        ("inf", "bad_number", r"log.csv:3: column 'watch_ms' is not a number: 'inf'"),
        ("1e999", "bad_number", r"log.csv:3: column 'watch_ms' is not a number: '1e999'"),
        # Finite, but beyond any view and the model's time range: refused here, not at training's first batch.
        ("1e18", "implausible_duration", r"log.csv:3: column 'watch_ms' value '1e18' read as 'ms' \(preset "
         r"'video_events'\) is a duration of 1e\+15 s, more than 1e\+11 s .*duration_unit='ms'"),
    ],
)
def test_a_negative_or_non_numeric_duration_is_a_bad_row(tmp_path, value, reason, message):
    rows = [("u1", "v1", 0, "play", "2000"), ("u1", "v2", 0, "play", value), ("u1", "v2", 1, "like", "")]
    path = _log(tmp_path, rows)
    with pytest.raises(LogFormatError, match=message) as raised:
        _convert(path)
    assert "on_bad_rows='skip'" in str(raised.value) and "before 1970" not in str(raised.value)  # a time's advice
    result = _convert(path, on_bad_rows="skip")
    assert result.summary["rows_dropped"] == {reason: 1}
    assert result.summary["first_dropped"][reason].startswith("log.csv:3: column 'watch_ms'")
    assert _sessions(result) == {
        ("u1", "v1", 0): [("play", 0.0), ("leave", 2.0)],
        ("u1", "v2", 1): [("play", 0.0), ("like", 0.0), ("leave", 0.0)],  # its play row dropped, never read
    }


def test_a_view_log_refuses_an_implausible_duration_too(tmp_path):
    path = tmp_path / "views.csv"
    header = "user_id,video_id,time_ms,is_like,is_follow,is_forward,is_comment,play_time_ms"
    path.write_text(f"{header}\nu1,v1,{T0},1,0,0,0,12000\nu1,v2,{T0 + 5000},0,0,0,0,2e14\n")
    with pytest.raises(LogFormatError, match=r"views.csv:3: column 'play_time_ms' value '2e14' read as 'ms'"):
        _convert(path, PRESETS["kuairand"])


def test_a_duplicate_event_is_dropped_whatever_its_duration(tmp_path):
    rows = [("u1", "v1", 0, "play", "5000"), ("u1", "v1", 0, "play", "20000")]
    path = _log(tmp_path, rows)
    with pytest.raises(LogFormatError, match="log.csv:3: duplicate event: user u1, item v1, play at .* already on line 2"):
        _convert(path)
    result = _convert(path, on_bad_rows="skip")
    assert result.summary["rows_dropped"] == {"duplicate_event": 1}
    assert _sessions(result) == {("u1", "v1", 0): [("play", 0.0), ("leave", 5.0)]}  # the later copy is not read


def test_durations_in_seconds_and_milliseconds(tmp_path):
    rows = [("u1", "v1", 0, "play", "12.5"), ("u1", "v2", 0, "play", "")]
    seconds = _convert(_log(tmp_path, rows, name="s.csv"), dataclasses.replace(VIDEO_EVENTS, duration_unit="s"))
    millis = _convert(_log(tmp_path, [(*row[:4], row[4] and "12500") for row in rows], name="ms.csv"))
    for result in (seconds, millis):
        assert _sessions(result) == {
            ("u1", "v1", 0): [("play", 0.0), ("leave", 12.5)],
            ("u1", "v2", 0): [("play", 0.0), ("leave", 0.0)],
        }
    assert (seconds.summary["event_durations"]["unit"], millis.summary["event_durations"]["unit"]) == ("s", "ms")


def test_a_parquet_log_with_missing_durations_and_several_partitions(tmp_path):
    """Nulls of a Parquet float column are unknown durations; the counts add up over partitions and workers."""
    users = [f"u{index}" for index in range(8)]
    table = pa.table({
        "user": users * 2,
        "video": ["v1"] * 16,
        "ts_ms": [T0] * 8 + [T0 + 2000] * 8,
        "event": ["play"] * 8 + ["like"] * 8,
        "watch_ms": [7000.0, None] * 4 + [None, 9000.0] * 4,
    })  # fmt: skip
    pq.write_table(table, tmp_path / "log.parquet")
    result = _convert(tmp_path / "log.parquet", partition_rows=4, num_proc=2)
    assert result.summary["partitions"] > 1
    assert {actions[-1] for actions in _sessions(result).values()} == {("leave", 7.0), ("leave", 11.0)}  # the like at 2 s + 9 s
    counts = result.summary["event_durations"]
    assert counts["end_from_duration"] == 8 and result.summary["sessions"] == 8


GENERIC_LOG = """user,video,ts_ms,event,watch_ms
u1,v1,1700000000000,play,12000
u1,v1,1700000003000,like,
u1,v2,1700000100000,play,
u1,v2,1700000102000,comment,
u2,v1,1700000200000,play,1000
u2,v1,1700000205000,like,
u2,v2,1700000300000,play,30000
u2,v2,1700000301000,leave,
"""
GENERIC_FLAGS = ["--generic-actions", "play,like,comment,leave", "--generic-user-column", "user",
                 "--generic-item-column", "video", "--generic-time-column", "ts_ms", "--generic-time-unit", "ms",
                 "--generic-action-column", "event", "--validation-start", "4e9", "--test-start", "4e9", "--quiet"]


def test_prepare_generic_reads_the_duration_column(tmp_path, capsys):
    log = tmp_path / "events.csv"
    log.write_text(GENERIC_LOG)
    output = tmp_path / "data"
    argv = ["prepare", "--preset", "generic", "--input", str(log), "--output", str(output), *GENERIC_FLAGS,
            "--generic-duration-column", "watch_ms"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "session ends by the duration column 'watch_ms' (milliseconds): 1 where the logged duration ends" in out
    summary = json.loads((output / "a2gen_data.json").read_text())
    assert summary["preset"]["duration_column"] == "watch_ms" and summary["preset"]["action_column"] == "event"
    assert summary["event_durations"] == {
        "column": "watch_ms", "unit": "ms", "end_from_duration": 1, "end_at_last_event_duration_shorter": 1,
        "end_at_last_event_no_duration": 1, "end_logged": 1, "end_from_duration_over_a_day_after_last_event": 0,
    }
    tokenizer = A2GenActionTokenizer.from_pretrained(output / "tokenizer")
    rows = datasets.load_from_disk(str(output))["train"]
    ends = {(row["user"], row["item"]): (tokenizer.convert_ids_to_tokens(row["action_ids"])[-1], row["action_seconds"][-1])
            for row in rows}  # fmt: skip
    assert ends == {("u1", "v1"): ("leave", 12.0), ("u1", "v2"): ("leave", 2.0), ("u2", "v1"): ("leave", 5.0),
                    ("u2", "v2"): ("leave", 1.0)}  # fmt: skip

    # In seconds: --generic-duration-unit s.
    log.write_text(GENERIC_LOG.replace(",12000\n", ",12\n"))
    argv = ["prepare", "--preset", "generic", "--input", str(log), "--output", str(tmp_path / "s"), *GENERIC_FLAGS,
            "--generic-duration-column", "watch_ms", "--generic-duration-unit", "s"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    rows = datasets.load_from_disk(str(tmp_path / "s"))["train"]
    ends = {(row["user"], row["item"]): row["action_seconds"][-1] for row in rows}
    assert (ends["u1", "v1"], ends["u2", "v1"]) == (12.0, 1000.0)  # u2's 1000 now 1000 s, after its like at 5 s
    assert "as their durations end before it" not in capsys.readouterr().out  # none is cut short: nothing said


def test_prepare_generic_duration_errors_name_the_flag_or_the_column(tmp_path, capsys):
    log = tmp_path / "events.csv"
    log.write_text(GENERIC_LOG)
    base = ["prepare", "--preset", "generic", "--input", str(log), "--output", str(tmp_path / "o"), *GENERIC_FLAGS]
    assert cli.main([*base, "--generic-duration-column", "watch"]) == 2
    assert "events.csv: missing column(s) ['watch']; its header has" in capsys.readouterr().err
    assert cli.main([*base, "--generic-duration-unit", "s"]) == 2
    assert "--generic-duration-unit s gives the unit of the duration column, but no --generic-duration-column" in (
        capsys.readouterr().err)
    with pytest.raises(SystemExit):
        cli.main([*base, "--generic-duration-column", "watch_ms", "--generic-duration-unit", "min"])
    err = capsys.readouterr().err
    assert "--generic-duration-unit" in err and "'s'" in err and "'ms'" in err
    log.write_text(GENERIC_LOG.replace(",1000\n", ",-1000\n"))
    assert cli.main([*base, "--generic-duration-column", "watch_ms"]) == 2
    assert "events.csv:6: column 'watch_ms' is negative: '-1000'" in capsys.readouterr().err
    log.write_text(GENERIC_LOG.replace(",1000\n", ",12s\n"))
    assert cli.main([*base, "--generic-duration-column", "watch_ms"]) == 2
    err = capsys.readouterr().err
    assert "events.csv:6: column 'watch_ms' is not a number: '12s'" in err
    assert "on the command line --generic-duration-unit s" in err  # the flag, not only the Python spelling


def _ms_pairs(seed: int, count: int, kind: str) -> list[tuple[int, int]]:
    """``count`` (t, d) millisecond pairs for which t / 1000 + d / 1000 falls below (``"lt"``) or above (``"gt"``)
    (t + d) / 1000 as floats: the sums that missed the next session's start by a rounding step."""
    rng = np.random.default_rng(seed)
    pairs = []
    while len(pairs) < count:
        t, d = int(rng.integers(1_600_000_000_000, 1_700_000_000_000)), int(rng.integers(1000, 60000))
        if (t / 1000 + d / 1000 < (t + d) / 1000) if kind == "lt" else (t / 1000 + d / 1000 > (t + d) / 1000):
            pairs.append((t, d))
    return pairs


def test_a_millisecond_end_is_the_number_the_next_start_was_read_as(tmp_path):
    """From a probe: times and durations are each divided by 1000 when read, and their sum missed (t + d) / 1000 by a
    rounding step in about a quarter of rows: a like logged exactly when the watch ended counted as "the duration ends
    before the last event" (with a warning to check the unit), and a video started the millisecond the previous one
    ended was in its history for some users and not for others."""
    pairs = _ms_pairs(1, 6, "lt") + _ms_pairs(2, 6, "gt")
    path = tmp_path / "autoplay.csv"
    lines = ["user,video,ts_ms,event,watch_ms"]
    for n, (t, d) in enumerate(pairs):
        lines += [f"u{n},a,{t},play,{d}", f"u{n},a,{t + d},like,", f"u{n},b,{t + d},play,5000"]
    path.write_text("\n".join(lines) + "\n")
    result = _convert(path)
    counts = result.summary["event_durations"]
    assert counts["end_from_duration"] == 24 and counts["end_at_last_event_duration_shorter"] == 0
    a = result.tokenizer.hash_item("a")
    rows = [row for split in result.dataset.values() for row in split if row["item"] == "b"]
    assert len(rows) == 12 and not any(a in row["history_item_ids"] for row in rows)  # a ends as b starts: not yet


def test_a_jsonl_log_whose_first_block_has_no_or_whole_durations(tmp_path, monkeypatch):
    """From a probe: pyarrow fixes a JSON column's type from the first block (16 MiB), so a duration null or absent
    there and a number later ("changed from null to number"), or whole there and fractional later, was refused. The
    number columns are read as float64 unless the first block holds them as text."""
    import json as json_module

    from a2gen_hf.data import validation

    reader = validation._jsonl_batches
    monkeypatch.setattr(validation, "_jsonl_batches", lambda path, needed, block_size, numbers=(): reader(
        path, needed, 256, numbers))  # blocks of 256 bytes: the first holds no duration
    for name, late in (("null", {"watch_ms": None}), ("absent", {}), ("whole", {"watch_ms": 4000})):
        rows = [{"user": f"u{n}", "video": "v1", "ts_ms": T0 + 1000 * n, "event": "like", **late} for n in range(8)]
        rows += [{"user": "u9", "video": "v2", "ts_ms": T0, "event": "play", "watch_ms": 12000.5}]
        path = tmp_path / f"{name}.jsonl"
        path.write_text("\n".join(json_module.dumps(row) for row in rows) + "\n")
        sessions = _sessions(_convert(path))
        (start, _), (end, seconds) = sessions[("u9", "v2", 0)]
        assert (start, end) == ("play", "leave") and seconds == pytest.approx(12.0005, abs=1e-6), name  # float32
    text = tmp_path / "text.jsonl"  # durations written as text stay text, parsed as a CSV's are
    text.write_text("\n".join(json_module.dumps({"user": "u1", "video": "v1", "ts_ms": T0, "event": "play",
                                                 "watch_ms": "12000"}) for _ in range(1)) + "\n")
    assert _sessions(_convert(text))[("u1", "v1", 0)] == [("play", 0.0), ("leave", 12.0)]


@pytest.mark.parametrize("placeholder", ["NA", "NULL", "\\N", "n/a", "nan"])
def test_a_placeholder_for_an_unknown_duration_gets_no_advice_to_skip_its_rows(tmp_path, placeholder):
    """From a probe: "watch=NA" on the like rows got "durations must be numbers ... or pass on_bad_rows='skip'", which
    drops every like. It now says that unknown is an empty cell and how to write it so, without the skip advice."""
    path = _log(tmp_path, [("u1", "v1", 0, "play", "12000"), ("u1", "v1", 3, "like", placeholder)])
    with pytest.raises(LogFormatError) as raised:
        _convert(path)
    message = str(raised.value)
    assert "An unknown duration is an empty cell (in JSON lines null or no key)" in message
    assert "errors='coerce'" in message and "pass on_bad_rows='skip'" not in message
