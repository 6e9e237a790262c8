"""The benchmark scripts refuse bad command-line values up front: argparse's usage error (exit status 2) naming the
flag, before any work and before their slow imports (benchmarks/_arguments.py); and they write their outputs
atomically. Each script runs in a fresh process with a bad value, as a user runs it."""

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


arguments = _load("_arguments")

# (script, its arguments (OUT: a fresh folder that must stay empty), the flag the error must name, more text it must
# hold). One bad value per script at least; the light scripts (no torch at import) get a few more.
CASES = [
    ("bench_cli_help.py", ["--runs", "0", "--output", "OUT"], "--runs", "must be a positive integer, got 0"),
    ("bench_convert.py", ["--rows", "0"], "--rows", "must be a positive integer, got 0"),
    ("bench_convert.py", ["--num-proc", "-1"], "--num-proc", "got -1"),
    ("bench_convert.py", ["--max-history-items", "two"], "--max-history-items", "must be an integer, got 'two'"),
    ("bench_demo.py", ["--baseline", "OUT/missing", "--output", "OUT"], "--baseline", "OUT/missing: no such folder"),
    ("bench_demo.py", ["--baseline", str(ROOT), "--output", "OUT"], "--baseline", "no a2gen_hf package"),
    # bench_environment.py has no flags of its own: the --wait-policy it reads is checked by its callers' parsers before
    # it re-runs them.
    ("bench_training.py", ["--wait-policy", "spin", "--output", "OUT"], "--wait-policy", "invalid choice: 'spin'"),
    ("bench_serving.py", ["--wait-policy=spin", "--output", "OUT"], "--wait-policy", "invalid choice: 'spin'"),
    ("bench_serving.py", ["--threads", "0", "--output", "OUT"], "--threads", "must be a positive integer, got 0"),
    ("bench_serving.py", ["--keep-environment", "--generators", "iag,foo"], "--generators", "(unknown: foo)"),
    ("bench_serving.py", ["--keep-environment", "--device", "tpu", "--output", "OUT"], "--device",
     "the benchmark runs on cpu, cuda or cuda:N"),  # before: a raw traceback, exit 1
    ("bench_training.py", ["--repeats", "0", "--output", "OUT"], "--repeats", "must be a positive integer, got 0"),
    ("bench_training.py", ["--keep-environment", "--batch-size", "-3"], "--batch-size", "got -3"),
    ("compare_event_groups.py", ["--data", "OUT/none", "--rounds", "1"], "--rounds", "must be an integer >= 2, got 1"),
    ("compare_sparse_updates.py", ["--data", "OUT/none", "--seeds", "0,-1", "--output", "OUT"], "--seeds",
     "each value must be an integer >= 0, got -1"),
    ("learning_curve.py", ["--data", "OUT/none", "--output", "OUT", "--sizes", "100,0"], "--sizes",
     "each value must be a positive integer, got 0"),
    ("learning_curve.py", ["--data", "OUT/none", "--output", "OUT", "--ema-decay", "nan"], "--ema-decay",
     "must be a finite number, got 'nan'"),
    ("moment_layouts_probe.py", ["--data", "OUT/none", "--output", "OUT", "--ranks", "0"], "--ranks",
     "each value must be a positive integer, got 0"),
    ("profile_training_step.py", ["--fill", "2", "--output", "OUT"], "--fill", "must be a share in (0, 1], got 2"),
    ("profile_training_step.py", ["--keep-environment", "--config", "[1]"], "--config", "must be a JSON object"),
    ("quality_ablations.py", ["run", "--data", "OUT/none", "--output", "OUT", "--train-user-share", "0"],
     "--train-user-share", "must be a positive integer, got 0"),
    ("bootstrap_false_alarms.py", ["--cases", "0"], "--cases", "must be a positive integer, got 0"),
    ("residual_fit_keep_rule.py", ["--data", "OUT", "--output", "OUT/keep.json", "--seeds", "0"], "--seeds",
     "must be >= 1"),
    ("plot_stand_ins.py", ["nolabel.json", "--output", "OUT/x.png"], "report", "'nolabel.json' must be LABEL=PATH"),
    ("share_scale_keep_rule.py", ["--data", "OUT", "--output", "OUT/x.json", "--fractions", "1,2"], "--fractions",
     "each value must be a share in (0, 1], got 2"),
    ("share_scale_keep_rule.py", ["--data", "OUT/none", "--output", "OUT/x.json"], "--data", "no such folder"),
    ("residual_fit_bagging.py", ["--data", "OUT/none", "--output", "OUT/x.json"], "--data", "no such folder"),
    ("history_time_features.py", ["--data", "OUT/none", "--output", "OUT/x.json"], "--data", "no such folder"),
    ("history_time_features.py", ["--data", "OUT", "--output", "OUT/x.json", "--fractions", "0"], "--fractions",
     "each value must be a share in (0, 1], got 0"),
    ("further_levers.py", ["--data", "OUT/none", "--output", "OUT/x.json"], "--data", "no such folder"),
    ("further_levers.py", ["--data", "OUT", "--output", "OUT/x.json", "--levers", "same-item,trees"], "--levers",
     "(unknown: trees)"),
    ("bootstrap_few_positive_users.py", ["--positive-users", "1,0"], "--positive-users",
     "each value must be a positive integer, got 0"),
    ("bootstrap_few_positive_users.py", ["--positive-users", "70", "--users", "60"], "--positive-users",
     "is more than --users 60"),
    ("residual_fit_bagging.py", ["--data", "OUT", "--output", "OUT/x.json", "--bags", "1"], "--bags",
     "at least 2 fits are needed"),
    ("stand_in_logs.py", ["--input", "OUT/none.csv", "--output", "OUT/logs", "--cold-start-rows", "0"],
     "--cold-start-rows", "must be a positive integer, got 0"),
    ("stand_in_logs.py", ["--input", "OUT/none.csv", "--output", "OUT/logs"], "--input", "OUT/none.csv is not a file"),
    ("stand_in_logs.py", ["--input", "OUT/none.csv", "--output", "OUT/logs", "--crawler-share", "1"],
     "--crawler-share", "must be below 1"),
    ("refit_and_crawler.py", ["--data", "OUT/none", "--output", "OUT/x.json"], "--data", "no such folder"),
    ("simulator_ceiling.py", ["--output", "OUT", "--sizes", "10,-5"], "--sizes",
     "each value must be a positive integer, got -5"),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{case[0]} {case[2]} {' '.join(case[1])}" for case in CASES])
def test_a_bad_value_is_refused_before_any_work(case, tmp_path):
    script, argv, flag, message = case
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-X", "importtime", str(BENCHMARKS / script),
               *(part.replace("OUT", str(tmp_path)) for part in argv)]  # fmt: skip
    completed = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    imported = [line.rsplit("|", 1)[-1].strip() for line in completed.stderr.splitlines() if line.startswith("import time:")]
    assert completed.returncode == 2, (completed.stdout[-2000:], completed.stderr[-3000:])
    error = "\n".join(line for line in completed.stderr.splitlines() if not line.startswith("import time:"))
    error = error.replace(str(tmp_path), "OUT")
    assert "Traceback" not in error and flag in error and message in error, error
    assert "error:" in error.splitlines()[-1]
    assert not list(tmp_path.iterdir()), "nothing is written before the arguments are checked"
    # Refused while parsing, before torch / transformers are imported (about 6 s on 2 cores): checked by what was
    # imported, not by a wall-clock bound that a loaded machine could break.
    assert not {"torch", "transformers"} & set(imported), f"{script} imported heavy modules before refusing {flag}"


def test_every_benchmark_script_has_a_refusal_case():
    scripts = {path.name for path in BENCHMARKS.glob("*.py") if not path.name.startswith("_")}
    covered = {case[0] for case in CASES} | {"bench_environment.py"}  # its --wait-policy: via bench_training / serving
    assert scripts <= covered, scripts - covered


# ---------------------------------------------------------------------------------------------------------------
# The checkers


@pytest.mark.parametrize(("check", "good", "expected"), [
    (arguments.positive_int, "3", 3),
    (arguments.non_negative_int, "0", 0),
    (arguments.positive_float, "1e-3", 1e-3),
    (arguments.non_negative_float, "0", 0.0),
    (arguments.fraction, "1", 1.0),
    (arguments.fraction, "0.25", 0.25),
    (arguments.int_at_least(2), "2", 2),
    (arguments.positive_int_list, "10000, 30000,", [10000, 30000]),
    (arguments.non_negative_int_list, "0,1,1", [0, 1, 1]),
    (arguments.non_negative_float_list, "0,0.5", [0.0, 0.5]),
    (arguments.fraction_list, "1,0.5", [1.0, 0.5]),
    (arguments.choice_list(("iag", "eag")), "eag,iag", ["eag", "iag"]),
    (arguments.json_object, '{"hidden_size": 8}', {"hidden_size": 8}),
])
def test_checkers_pass_valid_values(check, good, expected):
    assert check(good) == expected


@pytest.mark.parametrize(("check", "bad", "message"), [
    (arguments.positive_int, "0", "must be a positive integer, got 0"),
    (arguments.positive_int, "-2", "must be a positive integer, got -2"),
    (arguments.positive_int, "1.5", "must be an integer, got '1.5'"),
    (arguments.non_negative_int, "-1", "must be an integer >= 0, got -1"),
    (arguments.positive_float, "0", "must be a positive number, got 0"),
    (arguments.positive_float, "nan", "must be a finite number, got 'nan'"),
    (arguments.positive_float, "inf", "must be a finite number"),
    (arguments.positive_float, "x", "must be a number, got 'x'"),
    (arguments.non_negative_float, "-0.1", "must be a number >= 0, got -0.1"),
    (arguments.fraction, "0", "must be a share in (0, 1], got 0"),
    (arguments.fraction, "1.5", "must be a share in (0, 1], got 1.5"),
    (arguments.int_at_least(2), "1", "must be an integer >= 2, got 1"),
    (arguments.positive_int_list, "100,0", "'100,0': each value must be a positive integer, got 0"),
    (arguments.positive_int_list, " , ", "give at least one value"),
    (arguments.non_negative_int_list, "0,a", "each value must be an integer, got 'a'"),
    (arguments.non_negative_float_list, "-1", "each value must be a number >= 0, got -1"),
    (arguments.fraction_list, "1,2", "each value must be a share in (0, 1], got 2"),
    (arguments.choice_list(("iag", "eag")), "iag,foo", "(unknown: foo)"),
    (arguments.choice_list(("iag", "eag")), "", "give comma-separated names out of iag, eag"),
    (arguments.json_object, "[1]", "must be a JSON object"),
    (arguments.json_object, "{", "is not JSON"),
])
def test_checkers_refuse_with_a_message(check, bad, message):
    with pytest.raises(argparse.ArgumentTypeError) as error:
        check(bad)
    assert message in str(error.value)


def test_argparse_names_the_flag_and_exits_with_status_2(capsys):
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--threads", type=arguments.positive_int, default=2)
    parser.add_argument("--sizes", type=arguments.positive_int_list, default="10,20")
    assert (parser.parse_args([]).threads, parser.parse_args([]).sizes) == (2, [10, 20])  # string defaults converted
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--threads", "0"])
    assert exit_.value.code == 2
    assert "bench: error: argument --threads: must be a positive integer, got 0" in capsys.readouterr().err


def test_checked_raises_a_value_error_naming_the_option():
    assert arguments.checked("1,2", arguments.positive_int_list, "--sizes") == [1, 2]
    with pytest.raises(ValueError, match=r"^--sizes='0': each value must be a positive integer, got 0$"):
        arguments.checked("0", arguments.positive_int_list, "--sizes")
    with pytest.raises(ValueError, match=r"^--fill='2': must be a share in \(0, 1\], got 2$"):
        arguments.checked("2", arguments.fraction, "--fill")


# ---------------------------------------------------------------------------------------------------------------
# Script-specific checks and the atomic outputs


def test_bench_demo_baseline_must_be_another_checkouts_src(tmp_path):
    demo = _load("bench_demo")
    with pytest.raises(argparse.ArgumentTypeError, match="no such folder"):
        demo.source_folder(str(tmp_path / "missing"))
    other = tmp_path / "other"
    (other / "src" / "a2gen_hf").mkdir(parents=True)
    (other / "src" / "a2gen_hf" / "cli.py").write_text("")
    with pytest.raises(argparse.ArgumentTypeError, match=f"did you mean {other / 'src'}"):
        demo.source_folder(str(other))  # the checkout, not its src/
    assert demo.source_folder(str(other / "src")) == (other / "src").resolve()
    with pytest.raises(argparse.ArgumentTypeError, match="this checkout's own src/"):
        demo.source_folder(str(ROOT / "src"))


def test_moment_layouts_probe_refuses_sizes_beyond_the_train_split(simulated_data_dir, tmp_path):
    """Before: a size above the train split probed the whole split and labelled the row with the size asked for."""
    probe = _load("moment_layouts_probe")
    output = tmp_path / "probe"
    with pytest.raises(ValueError, match=r"--sizes \[100000\] exceed the \d+ training examples"):
        probe.main(["--data", str(simulated_data_dir), "--sizes", "100,100000", "--output", str(output)])
    with pytest.raises(ValueError, match="--ranks='4,0': each value must be a positive integer, got 0"):
        probe.main(["--data", str(simulated_data_dir), "--ranks", "4,0", "--output", str(output)])
    assert not output.exists()


def test_bench_cli_help_writes_its_results_atomically(tmp_path):
    """A real (short) run: both files written, no temporary sibling left behind."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_cli_help.py"), "--runs", "1", "--output", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cli_help.json", "cli_help.md"]
    import json

    assert json.loads((tmp_path / "cli_help.json").read_text())["runs_per_command"] == 1


def test_stand_in_logs_cut_as_awk_and_pair_the_cold_start_users(monkeypatch):
    """The stand-in cutter reads fields as awk does (a short or damaged row is kept where awk put it, for prepare to
    report) and gives every pair of one user's consecutive rows a new user id."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # its own import of _arguments
    stand_ins = _load("stand_in_logs")
    assert stand_ins.field(["9", "1", "12x"], 2) == 12.0 and stand_ins.field(["9", "1"], 4) == 0.0
    assert stand_ins.SLICES["days_first"](["100370", "1968385", "1875258", "pv"])  # awk: a missing $5 is 0
    rows = [["7", "a", "c", "pv", "1"], ["7", "b", "c", "pv", "2"], ["7", "c", "c", "buy", "3"], ["5", "d", "c", "pv", "4"]]
    assert stand_ins.cold_start_rows(rows) == [
        ["1", "a", "c", "pv", "1"], ["1", "b", "c", "pv", "2"], ["2", "c", "c", "buy", "3"], ["3", "d", "c", "pv", "4"],
    ]


def test_the_crawler_log_adds_one_user_holding_the_share_asked(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    stand_ins = _load("stand_in_logs")
    rows = [[str(user), f"i{index}", f"c{index % 3}", behaviour, str(1511600000 + 60 * index)]
            for index, (user, behaviour) in enumerate([(7, "pv"), (7, "buy"), (8, "pv"), (9, "fav")] * 5)]  # fmt: skip
    out = stand_ins.crawler_rows(rows, 0.3, seed=0)
    assert out[: len(rows)] == rows  # the log's own rows unchanged, first
    added = out[len(rows):]
    assert {row[0] for row in added} == {stand_ins.CRAWLER_USER} and len(added) / len(out) == pytest.approx(0.3, abs=0.02)
    pairs = {(row[1], row[2]) for row in rows}
    assert all((row[1], row[2]) in pairs and row[3] in {"pv", "buy", "fav"} for row in added)
    times = [int(row[4]) for row in added]
    assert times == sorted(times) and 1511600000 <= min(times) and max(times) <= 1511600000 + 60 * 19
    assert stand_ins.crawler_rows(rows, 0.3, seed=0) == out  # seeded


def test_plot_stand_ins_draws_rows_without_a_verdict_as_not_significant_and_names_the_reference(tmp_path, monkeypatch):
    """From a probe: a row with "no verdict" (6 users hold the positives) was drawn filled, as significant, and every
    panel read "A2Gen-IAG minus ..." whatever model the reports compared; a missing report was a traceback."""
    import json
    import sys

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = _load("plot_stand_ins")
    row = {"difference": 0.27, "low": 0.03, "high": 0.52, "p_value": 0.01}
    report = {"bootstrap_reference": "a2gen-eag", "bootstrap_unit": "users", "bootstrap": {"logreg": {
        "like": {**row, "positive_users": 40, "negative_users": 50},
        "follow": {**row, "positive_users": 6, "negative_users": 50}}}}  # fmt: skip
    path = tmp_path / "results.json"
    path.write_text(json.dumps(report))
    drawn = []
    import matplotlib.axes

    original = matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot", lambda self, *a, **k: drawn.append(k) or original(self, *a, **k))
    labels = []
    original_xlabel = matplotlib.axes.Axes.set_xlabel
    monkeypatch.setattr(matplotlib.axes.Axes, "set_xlabel",
                        lambda self, text, *a, **k: labels.append(text) or original_xlabel(self, text, *a, **k))
    monkeypatch.setattr(sys, "argv", ["plot_stand_ins.py", "--output", str(tmp_path / "p.png"), f"log={path}"])
    module.main()
    points = [kwargs for kwargs in drawn if "markerfacecolor" in kwargs]
    assert [point["markerfacecolor"] for point in points] == ["tab:green", "white"]  # like called, follow not
    assert labels == ["A2Gen-EAG minus logreg (AUC)"] * 2
    monkeypatch.setattr(sys, "argv", ["plot_stand_ins.py", "--output", str(tmp_path / "q.png"), f"x={tmp_path}/no.json"])
    with pytest.raises(SystemExit, match="no.json does not exist"):
        module.main()


def test_output_paths_of_the_benchmarks_are_made_before_the_work(tmp_path):
    """Before: a missing folder of --output failed after all the work, naming a hidden temporary file."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import argparse

    from _arguments import output_file, output_folder

    assert output_file(str(tmp_path / "new" / "deeper" / "results.json")) and (tmp_path / "new" / "deeper").is_dir()
    assert output_folder(str(tmp_path / "runs" / "ablations")) and (tmp_path / "runs" / "ablations").is_dir()
    with pytest.raises(argparse.ArgumentTypeError, match="is a folder or no name"):
        output_file(str(tmp_path))
    (tmp_path / "file").write_text("x")
    with pytest.raises(argparse.ArgumentTypeError, match="is a file or no name"):
        output_folder(str(tmp_path / "file"))
