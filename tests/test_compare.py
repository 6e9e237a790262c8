"""`a2gen compare`: experiment tracking and warmup for every run (the options of `a2gen train`), and the re-rendering
of a saved report (`a2gen report`)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from accelerate import Accelerator
from conftest import RecordingTracker

from a2gen_hf import A2GenConfig
from a2gen_hf.cli import main
from a2gen_hf.training import compare
from a2gen_hf.training.statistics import paired_bootstrap_auc_difference

pytestmark = pytest.mark.slow


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def compare_argv(data_dir, output, *extra):
    return ["compare", "--data", str(data_dir), "--output", str(output), "--models", "a2gen-iag,mmoe",
            "--simple", "", "--seeds", "1", "--epochs", "1", "--batch-size", "64", "--bootstrap-resamples", "40",
            "--quiet", *extra]


def test_compare_tracks_every_run_with_warmup(simulated_data_dir, tmp_path, monkeypatch, capsys):
    """--report-to, --warmup-steps and --dataloader-num-workers reach every run's TrainingSettings; the run's
    Accelerate trackers get the settings and the per-step log, whose learning-rate factor follows transformers' warmup
    then linear decay."""
    runs = []
    real_train = compare.train

    def tracked_train(model, train_dataset, collator, settings, **kwargs):
        tracker = RecordingTracker()
        runs.append((settings, tracker))
        return real_train(model, train_dataset, collator, settings,
                          accelerator=Accelerator(cpu=True, log_with=[tracker]), **kwargs)

    monkeypatch.setattr(compare, "train", tracked_train)
    output = tmp_path / "compare"
    argv = compare_argv(simulated_data_dir, output, "--report-to", "tensorboard", "--warmup-steps", "2",
                        "--lr-schedule", "linear", "--dense-lr", "2e-3", "--log-every", "1",
                        "--dataloader-num-workers", "1")
    assert main(argv) == 0, capsys.readouterr().err
    assert [settings.output_dir for settings, _ in runs] == [
        str(output / "runs" / "a2gen-iag-seed0"), str(output / "runs" / "mmoe-seed0")
    ]
    for settings, tracker in runs:
        assert (settings.report_to, settings.warmup_steps, settings.lr_schedule) == ("tensorboard", 2, "linear")
        assert settings.dataloader_num_workers == 1
        assert settings.show_progress is False  # --quiet: no training bars
        assert tracker.config["warmup_steps"] == 2 and tracker.config["dense_learning_rate"] == 2e-3
        assert tracker.finished
        factors = [values["lr_factor"] for _, values in tracker.entries if "lr_factor" in values]
        total = len(factors)
        assert total >= 4
        expected = [step / 2 if step < 2 else (total - step) / (total - 2) for step in range(total)]
        assert factors == pytest.approx(expected)
        assert any("validation_loss" in values for _, values in tracker.entries)
    report = json.loads((output / "results.json").read_text())
    assert report["settings"]["training"]["warmup_steps"] == 2
    assert report["settings"]["training"]["dataloader_num_workers"] == 1
    assert report["settings"]["training"]["report_to"] == "tensorboard"
    assert "warmup_steps=2" in (output / "results.md").read_text()


def test_compare_names_a_missing_or_unknown_tracker_in_one_line(simulated_data_dir, tmp_path, capsys):
    from accelerate.utils import is_aim_available

    assert main(compare_argv(simulated_data_dir, tmp_path / "a", "--report-to", "tensorbored")) == 2
    err = capsys.readouterr().err
    assert "a2gen compare: error: --report-to 'tensorbored': unknown ['tensorbored']; use 'none', 'all' or of [" in err
    assert "Traceback" not in err
    if is_aim_available():
        pytest.skip("aim is installed here")
    assert main(compare_argv(simulated_data_dir, tmp_path / "b", "--report-to", "aim")) == 2
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if "a2gen compare: error:" in line)  # tqdm may print before it
    assert line.endswith("--report-to 'aim': ['aim'] is not installed; install it (aim: pip install aim) or choose "
                         "another tracker, or 'none'.")  # before: tensorboard's install line
    assert "Traceback" not in err


def test_compare_writes_tensorboard_event_files_per_run(simulated_data_dir, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    output = tmp_path / "compare"
    assert main(compare_argv(simulated_data_dir, output, "--report-to", "tensorboard", "--warmup-ratio", "0.2")) == 0
    for run in ("a2gen-iag-seed0", "mmoe-seed0"):
        events = list((output / "runs" / run / "tracking").rglob("events.out.tfevents.*"))
        assert events and events[0].stat().st_size > 0


# `a2gen report`: a saved results.json rendered again, with today's labels and verdict wording.

SAVED_REPORT = Path(__file__).resolve().parent.parent / "docs" / "img" / "results_taobao.json"


def test_report_renders_an_old_report_with_verdicts_named_after_the_models(capsys):
    saved = json.loads(SAVED_REPORT.read_text())
    old_wording = {row["verdict"] for rows in saved["bootstrap"].values() for row in rows.values()}
    assert {"A better", "B better"} <= old_wording  # written before verdicts were named after the models
    assert main(["report", str(SAVED_REPORT), "--tables", "bootstrap,"]) == 0  # empty entries skipped, as in --models
    table = capsys.readouterr().out
    assert table.startswith("Paired bootstrap of the AUC difference A2Gen-IAG minus each model")
    assert "resampling examples" in table.splitlines()[0]  # written before users were resampled: it says so
    assert not re.search(r"\b[AB] better\b", table)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines() if line.startswith("| ")}
    # MMoE: significantly better than A2Gen on collect and buy (intervals below 0), level on cart.
    mmoe = rows["MMoE (paper-style: pooled history items)"].split(" | ")[1:]
    assert mmoe[0].endswith("MMoE better") and mmoe[1].endswith("no significant difference")
    assert mmoe[2].strip(" |").endswith("MMoE better")
    assert "logistic regression on counts better" in rows["logistic regression on counts"]
    assert "A2Gen-IAG better" in rows["item / category popularity"]
    for name, cells in saved["bootstrap"].items():  # every verdict follows its saved interval
        for row in cells.values():
            assert compare.verdict(row, "a2gen-iag", name) == (
                "no significant difference" if row["low"] <= 0 <= row["high"]
                else ("A2Gen-IAG better" if row["low"] > 0 else f"{compare._short_label(name)} better")
            )


def test_report_of_a_fresh_comparison_is_its_results_md(simulated_data_dir, tmp_path, capsys):
    output = tmp_path / "compare"
    assert main(compare_argv(simulated_data_dir, output, "--simple", "propensity")) == 0
    capsys.readouterr()
    assert main(["report", str(output / "results.json"), "--output", str(tmp_path / "again.md")]) == 0
    assert capsys.readouterr().out == f"written to {tmp_path / 'again.md'}\n"
    assert (tmp_path / "again.md").read_text() == (output / "results.md").read_text()
    assert main(["report", str(output / "results.json"), "--tables", "metrics,bootstrap"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| model | AUC like") and "Paired bootstrap" in printed and "GAUC" not in printed
    # The test predictions are kept: the report's bootstrap rows come back from them without training.
    saved, report = np.load(output / "test_predictions.npz"), json.loads((output / "results.json").read_text())
    like = A2GenConfig().action_id("like")  # the simulator's vocabulary is the default one
    happens = (saved["labels"][:, 1:] == like).any(1)
    again = paired_bootstrap_auc_difference(
        happens, saved["probabilities/a2gen-iag"][:, like], saved["probabilities/mmoe"][:, like], num_resamples=20,
        groups=saved["group_ids"] if report["bootstrap_unit"] == "users" else None,
    )
    assert again["difference"] == pytest.approx(report["bootstrap"]["mmoe"]["like"]["difference"], abs=1e-6)


@pytest.mark.parametrize(
    ("content", "tables", "message"),
    [
        ('{"models": {}', "all", "line 1, column 14: not valid JSON"),
        ('{"auc": {"like": 0.7}}', "all", "is not a results.json of `a2gen compare`: it lacks ['models', "),
        (None, "metrics,tabels", "--tables 'metrics,tabels': unknown section(s) tabels; give some of summary, metrics"),
        (None, "ALL,", "--tables 'ALL,': unknown section(s) all; give some of"),
        (None, " , ", "--tables ' , ' names no section; give some of summary, metrics"),
    ],
)
def test_report_errors_name_the_file_or_the_section(tmp_path, capsys, content, tables, message):
    """(--tables: before, "Unknown report sections ['ALL']" named neither the flag nor the accepted "all".)"""
    path = tmp_path / "results.json"
    path.write_text(SAVED_REPORT.read_text() if content is None else content)
    assert main(["report", str(path), "--tables", tables]) == 2
    err = capsys.readouterr().err
    assert err.startswith("a2gen report: error: ") and message in err
    if content is not None:
        assert str(path) in err
    assert main(["report", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err


def test_report_tables_are_read_whatever_their_case(capsys):
    assert main(["report", str(SAVED_REPORT), "--tables", "ALL"]) == 0
    everything = capsys.readouterr().out
    assert main(["report", str(SAVED_REPORT), "--tables", "all"]) == 0 and capsys.readouterr().out == everything
    assert main(["report", str(SAVED_REPORT), "--tables", "Metrics"]) == 0 and capsys.readouterr().out


def test_spreads_over_seeds_and_the_oracles_auc_are_printed_as_they_are():
    """A spread of 0.0 over seeds is shown (it looked like one run); one run has none; the oracle's AUC, the same on
    every seed, is its mean alone."""
    from a2gen_hf.training.compare import _cell, _oracle_lines

    assert _cell({"mean": 0.5, "std": 0.0}) == "0.5000 ± 0.0000"
    assert _cell({"mean": 0.5, "std": float("nan")}) == _cell({"mean": 0.5}) == "0.5000"
    lines = _oracle_lines({"mmoe": {"oracle_auc": {"like": {"mean": 0.71, "std": 0.0}}}}, ["like"])
    assert lines[0] == "Oracle (simulator ground truth) AUC: like 0.7100"


def test_a_report_without_a2gen_says_why_it_has_no_bootstrap():
    from a2gen_hf.training.compare import format_markdown

    saved = json.loads(SAVED_REPORT.read_text())
    del saved["bootstrap"], saved["bootstrap_reference"]
    saved["models"] = {name: value for name, value in saved["models"].items() if not name.startswith("a2gen")}
    assert len(saved["models"]) >= 2
    assert "No paired bootstrap: it compares every model with A2Gen" in format_markdown(saved)


def test_report_says_when_none_of_the_asked_tables_is_there(tmp_path, capsys):
    saved = json.loads(SAVED_REPORT.read_text())
    del saved["bootstrap"], saved["bootstrap_reference"]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(saved))
    assert main(["report", str(path), "--tables", "bootstrap", "--output", str(tmp_path / "out.md")]) == 2
    assert "holds none of the tables asked for (--tables bootstrap)" in capsys.readouterr().err
    assert not (tmp_path / "out.md").exists()


def test_compare_selects_the_generator_apart_only_where_the_ranking_reads_none_of_it(simulated_data_dir, tmp_path,
                                                                                     capsys):
    """`a2gen compare` with the `sparse_logs` recipe's A2Gen-only parts (the residual fit of the occurrence head, the
    generator selected apart, the ranking held at the fit) over A2Gen and MMoE: A2Gen's run keeps its generator from the
    lowest generator loss (the log names the step); MMoE, with no occurrence head and one set of weights, gets the rest
    of the recipe (the wide path started as the frozen regression) instead of failing the comparison."""
    output = tmp_path / "split"
    argv = compare_argv(simulated_data_dir, output, "--select-by", "mean_auc", "--select-generator-by-loss",
                        "--freeze-ranking",
                        "--count-features", "--popularity-features", "--occurrence-head", "--occurrence-paths-input",
                        "extra_only", "--epochs", "2", "--wide-path", "--wide-warm-start", "--wide-residual",
                        "--wide-frozen", "--wide-residual-fit", "--eval-before-training")
    assert main(argv) == 0, capsys.readouterr().err
    a2gen = json.loads((output / "runs" / "a2gen-iag-seed0" / "training_log.json").read_text())
    mmoe = json.loads((output / "runs" / "mmoe-seed0" / "training_log.json").read_text())
    assert a2gen["settings"]["select_generator_by_loss"] and a2gen["best_generator_step"] >= 0
    assert a2gen["settings"]["freeze_ranking"] and a2gen["best_generator_step"] == a2gen["best_step"]
    assert not mmoe["settings"]["select_generator_by_loss"] and "best_generator_step" not in mmoe
    assert not mmoe["settings"]["freeze_ranking"]
    report = json.loads((output / "results.json").read_text())
    assert report["settings"]["training"]["select_generator_by_loss"]
    # The sequence side is measured too: the next action, right how often, for every network.
    for name in ("a2gen-iag", "mmoe"):
        assert 0.0 <= report["models"][name]["next_action_accuracy"]["mean"] <= 1.0, name
    assert "| A2Gen-IAG | " in (output / "results.md").read_text().split("next action right")[1]


def prepared_taobao_log(folder: Path, behaviours: list[str], users: int, seed: int, *prepare_flags: str) -> Path:
    """A small Taobao-format log whose rows take only ``behaviours`` (e.g. no fav or cart), prepared into
    ``folder / "data"``; returns that data folder."""
    rng = np.random.default_rng(seed)
    lines = [
        f"{user},{int(rng.integers(1, 40))},{int(rng.integers(1, 5))},{rng.choice(behaviours)},"
        f"{1511544000 + int(rng.integers(0, 700_000))}"
        for user in range(users) for _event in range(8)
    ]
    log = folder / "log.csv"
    log.write_text("\n".join(lines) + "\n")
    data = folder / "data"
    assert main(["prepare", "--preset", "taobao", "--input", str(log), "--output", str(data), "--quiet",
                 *prepare_flags]) == 0
    return data


def test_compare_reports_an_action_absent_from_the_test_split_as_undefined(tmp_path, capsys):
    """A log without fav or cart rows (a small log's test split can hold no buy): the run is not lost to the AUC
    bootstrap of those actions; their intervals are reported as undefined, with the counts that say why, and the
    action the log has is compared as usual."""
    data = prepared_taobao_log(tmp_path, ["pv", "buy"], users=40, seed=0)
    output = tmp_path / "compare"
    argv = compare_argv(data, output)
    argv[argv.index("--simple") + 1] = "logreg"
    assert main(argv) == 0
    error = capsys.readouterr().err
    report = json.loads((output / "results.json").read_text())
    assert report["positives"]["collect"] == report["positives"]["cart"] == 0 < report["positives"]["buy"]
    # Validation and test without an action are warned of (before: only the training split), and what the
    # regression baseline could not fit is logged (before: in no output at all).
    for split in ("validation", "test"):
        assert f"the {split} split holds one class only of collect (0 of " in error
    assert "logreg: logreg[collect]: 0 of" in error and "training rows are positive, so nothing can be fitted" in error
    # The mean AUC is buy's alone: the header says so (before: "mean AUC"), and results.json lists what it averages.
    assert report["mean_auc_actions"] == ["buy"]
    assert "| mean AUC (buy; collect, cart undefined: no positive in test) |" in (output / "results.md").read_text()
    for rows in report["bootstrap"].values():
        for action in ("collect", "cart"):
            assert rows[action]["difference"] is None and rows[action]["verdict"] == "undefined: one class only"
            assert rows[action]["positives"] == 0 and rows[action]["examples"] == report["num_test_examples"]
        assert 0 <= rows["buy"]["p_value"] <= 1 and rows["buy"]["low"] <= rows["buy"]["high"]
    table = (output / "results.md").read_text()
    assert f"n/a (undefined: one class only: 0 of {report['num_test_examples']} test examples positive)" in table


def test_a_log_without_any_ranked_action_in_training_is_refused_before_anything_is_fitted(tmp_path, capsys,
                                                                                        monkeypatch):
    """A click-only log under the sparse_logs recipe: before, the regressions, the residual fit and the start of
    training ran, and the loop refused on validation, leaving an empty run folder. Now one error first, saying what
    is wrong and what log works."""
    data = prepared_taobao_log(tmp_path, ["pv"], users=30, seed=1)
    for name in ("train", "start_from_regression", "create_model"):
        monkeypatch.setattr(compare, name, lambda *args, **kwargs: pytest.fail("fitted before refusing"))
    output = tmp_path / "refused"
    argv = ["compare", "--recipe", "sparse_logs", "--data", str(data), "--models", "a2gen-iag", "--simple", "logreg",
            "--seeds", "1", "--epochs", "1", "--bootstrap-resamples", "40", "--quiet", "--output", str(output)]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "none of the ranked actions (collect, cart, buy) happens in the training split" in error
    assert "Use a log where they happen before the validation period" in error
    assert not (output / "runs").exists() and not (output / "results.json").exists()


def test_a_validation_split_with_nothing_to_rank_names_the_counts_and_flags_that_work(tmp_path, capsys):
    """Favourites only early in the log: training has them, validation none of any ranked action, so validation
    cannot select by AUC; the error says why and the flags it names then run the comparison to its report."""
    rng = np.random.default_rng(1)
    start, lines = 1511544000, []
    for user in range(40):
        opens = int(rng.integers(0, 700_000))
        behaviours = ["pv", "fav"] if opens < 350_000 else ["pv"]
        lines += [f"{user},{int(rng.integers(1, 40))},1,{rng.choice(behaviours)},{start + opens + event * 600}"
                  for event in range(6)]
    (tmp_path / "log.csv").write_text("\n".join(lines) + "\n")
    data = tmp_path / "data"
    assert main(["prepare", "--preset", "taobao", "--input", str(tmp_path / "log.csv"), "--output", str(data),
                 "--quiet"]) == 0  # fmt: skip
    argv = ["compare", "--recipe", "sparse_logs", "--data", str(data), "--models", "a2gen-iag", "--simple", "logreg",
            "--seeds", "1", "--epochs", "1", "--bootstrap-resamples", "40", "--quiet"]
    assert main([*argv, "--output", str(tmp_path / "refused")]) == 2
    error = capsys.readouterr().err
    assert "positives per action: {'collect': 0, 'cart': 0, 'buy': 0}" in error
    assert "--select-by loss" in error and "--no-select-generator-by-loss --no-freeze-ranking" in error
    flags = ["--select-by", "loss", "--no-select-generator-by-loss", "--no-freeze-ranking"]
    assert main([*argv, "--output", str(tmp_path / "compare"), *flags]) == 0
    # The wide start's regression chose collect's C blind: said as `a2gen train` says it (before: results.json only).
    error = capsys.readouterr().err
    assert "wide start: logreg[collect]: 0 of" in error and "validation rows are positive, so no AUC can choose C" in error
    report = json.loads((tmp_path / "compare" / "results.json").read_text())
    assert all(row["verdict"] == "undefined: one class only" for row in report["bootstrap"]["logreg"].values())
    # What the figures may depend on beyond code and data is recorded (a regression's C once moved with the machine).
    environment = report["environment"]
    assert environment["packages"]["scikit-learn"] and environment["packages"]["torch"] and environment["torch_threads"] >= 1


def test_compare_refuses_an_empty_validation_split_before_training(tmp_path, capsys, monkeypatch):
    """Data prepared with --validation-fraction 0 and a comparison whose regression chooses C on validation: one
    error before any network trains, naming what needs the split and how to prepare one (before, sklearn's
    "Found array with 0 sample(s)" after the networks had trained); without such baselines it runs."""
    data = prepared_taobao_log(tmp_path, ["pv", "fav", "buy"], 30, 2, "--validation-fraction", "0")
    trained = []
    monkeypatch.setattr(compare, "train", lambda *args, **kwargs: trained.append(1) or pytest.fail("trained"))
    argv = compare_argv(data, tmp_path / "compare")
    argv[argv.index("--simple") + 1] = "propensity,logreg,count-network"
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "the validation split is empty, but logreg, count-network choose their settings on it" in error
    assert "--validation-fraction above 0" in error and not trained
    assert not (tmp_path / "compare").exists()  # refused: no empty output folder left behind
    assert main([*argv, "--recipe", "sparse_logs"]) == 2
    assert "the wide start (wide_warm_start: its regression's C), logreg, count-network" in capsys.readouterr().err


def test_compare_refuses_an_empty_test_split_before_training(tmp_path, capsys, monkeypatch):
    """Before: every network trained, then "The dataloader is empty: there is nothing to predict."."""
    data = prepared_taobao_log(tmp_path, ["pv", "fav", "buy"], 30, 2, "--test-start", "1700000000")  # after the log
    monkeypatch.setattr(compare, "train", lambda *args, **kwargs: pytest.fail("trained"))
    assert main(compare_argv(data, tmp_path / "compare")) == 2
    error = capsys.readouterr().err
    assert "the test split is empty or missing (" in error and "--test-fraction above 0" in error


def test_compare_runs_again_in_the_same_output(simulated_data_dir, tmp_path):
    """compare owns its runs/NAME-seedN folders: a second compare replaces them (training itself refuses a folder that
    holds an earlier run)."""
    argv = compare_argv(simulated_data_dir, tmp_path / "compare")
    argv[argv.index("--models") + 1] = "mmoe"
    for _ in range(2):
        assert main(argv) == 0
    runs = (tmp_path / "compare" / "runs").iterdir()
    assert sorted(path.name for path in runs if not path.name.startswith(".")) == ["mmoe-seed0"]  # not the locks
    assert json.loads((tmp_path / "compare" / "results.json").read_text())["models"].keys() == {"mmoe"}


def test_a_second_compare_leaves_only_its_own_runs_and_a_concurrent_one_is_refused(simulated_data_dir, tmp_path,
                                                                                   monkeypatch, capsys):
    """Before: the runs of an earlier compare that this one did not train stayed beside its results.json, and two
    compares into one output at once both ran, leaving a folder that held parts of each."""
    argv = compare_argv(simulated_data_dir, tmp_path / "compare")
    argv[argv.index("--models") + 1] = "mmoe"
    assert main([*argv, "--seeds", "2"]) == 0
    assert main(argv) == 0
    runs = (tmp_path / "compare" / "runs").iterdir()
    assert sorted(path.name for path in runs if not path.name.startswith(".")) == ["mmoe-seed0"]  # seed 1 removed
    (tmp_path / "compare" / "runs" / "notes").mkdir()  # a folder of the user's, no run: kept
    assert main(argv) == 0 and (tmp_path / "compare" / "runs" / "notes").is_dir()
    capsys.readouterr()
    monkeypatch.setattr(compare, "train", lambda *args, **kwargs: pytest.fail("trained"))
    code = (f"from a2gen_hf.output_folders import output_lock; import time\n"
            f"with output_lock({str(tmp_path / 'compare')!r}):\n    print('held', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        assert main(argv) == 2
        assert "is being written by another" in capsys.readouterr().err
    finally:
        child.kill()
        child.wait()


def test_an_action_never_in_the_training_split_gets_no_verdict(tmp_path, caplog):
    """Buys only in the test period: before, a logistic regression constant for buy, A2Gen's buy AUC 0.38 averaged
    in, and a "significant" verdict, with no note. Now a warning, `untrained_actions` and no verdict."""
    import logging

    rng = np.random.default_rng(0)
    start = 1511544000
    opens = rng.integers(0, 600_000, 60)  # each user's one session starts at its own time, before the test period
    early = [f"{user},{int(rng.integers(1, 40))},1,{rng.choice(['pv', 'fav', 'cart'])},{start + opens[user] + event * 600}"
             for user in range(60) for event in range(6)]  # fmt: skip
    late = [f"{100 + user},{int(rng.integers(1, 40))},1,{rng.choice(['pv', 'buy'])},"
            f"{start + 690_000 + int(rng.integers(0, 9_000))}" for user in range(30) for _event in range(3)]  # fmt: skip
    (tmp_path / "log.csv").write_text("\n".join(early + late) + "\n")
    data = tmp_path / "data"
    assert main(["prepare", "--preset", "taobao", "--input", str(tmp_path / "log.csv"), "--output", str(data),
                 "--quiet"]) == 0  # fmt: skip
    caplog.clear()  # prepare warns of it too: the check below is compare's own warning
    argv = compare_argv(data, tmp_path / "compare")
    argv[argv.index("--simple") + 1] = "logreg"
    with caplog.at_level(logging.WARNING, logger="a2gen_hf.training.compare"):
        assert main(argv) == 0
    assert "buy never happen in the training split" in caplog.text
    report = json.loads((tmp_path / "compare" / "results.json").read_text())
    assert report["untrained_actions"] == ["buy"] and report["positives"]["buy"] > 0
    markdown = (tmp_path / "compare" / "results.md").read_text()
    assert "Never in the training split, so learned by no model (AUCs at chance, no verdicts): buy." in markdown
    assert markdown.count("no verdict: never in the training split") == 2  # mmoe and logreg against A2Gen
    verdicts = [rows["buy"]["verdict"] for rows in report["bootstrap"].values()]  # results.json says the same
    assert verdicts and all(v == "no verdict: never in the training split" for v in verdicts)


@pytest.mark.parametrize("unit", ["users", "examples"])
def test_the_paired_bootstrap_resamples_users_unless_told_examples(unit):
    """Examples of one user are not independent: compare resamples whole users (references' group_ids) by default;
    results.json and the Markdown say which. Every user here holds 10 examples scored with a shared error."""

    config = A2GenConfig()
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(60), 10)
    labels = np.zeros((users.size, 3), dtype=np.int64)
    labels[:, 0] = config.action_id("start")
    habit = rng.normal(size=60)[users]
    for action in ("like", "follow", "forward", "comment"):  # one action per example (the last drawn)
        labels[rng.random(users.size) < 1 / (1 + np.exp(1.5 - 1.5 * habit)), 1] = config.action_id(action)
    scores = [habit[:, None] + rng.normal(size=(60, config.vocab_size))[users] + 0.3 * rng.random((users.size, 1))
              for _ in range(2)]
    per_model = {name: {"predictions": {"action_probabilities": score}, "metrics": [{"mean_auc": 0.5, "positives": {}}]}
                 for name, score in zip(("a2gen-iag", "mmoe"), scores)}
    references = {"labels": labels, "group_ids": users}
    settings = compare.ComparisonSettings(bootstrap_resamples=200, bootstrap_unit=unit)
    report = compare.summarize(per_model, references, config, settings, {})
    assert report["bootstrap_unit"] == unit
    assert f"resampling {unit}" in compare.format_markdown(report)
    like = config.action_id("like")
    expected = paired_bootstrap_auc_difference(
        labels[:, 1] == like, scores[0][:, like], scores[1][:, like], num_resamples=200,
        groups=users if unit == "users" else None,
    )
    assert report["bootstrap"]["mmoe"]["like"]["low"] == expected["low"]
    assert report["bootstrap"]["mmoe"]["like"]["high"] == expected["high"]
    with pytest.raises(ValueError, match="bootstrap_unit='clusters' is not one of users, examples"):
        compare.ComparisonSettings(bootstrap_unit="clusters")


def test_too_few_bootstrap_resamples_are_refused(simulated_data_dir, tmp_path, capsys):
    """Before: 1 or 3 resamples gave intervals of the extreme resamples and verdicts off them ("[-0.0896, -0.0896]
    user propensity better" for a difference of +0.0123)."""
    for resamples in (1, 3, 39):
        with pytest.raises(ValueError, match=rf"bootstrap_resamples={resamples}: a 95 % percentile interval needs at least 40"):
            compare.ComparisonSettings(bootstrap_resamples=resamples)
    compare.ComparisonSettings(bootstrap_resamples=40)
    assert main(compare_argv(simulated_data_dir, tmp_path / "compare", "--bootstrap-resamples", "3")) == 2
    assert "needs at least 40 resamples" in capsys.readouterr().err


def test_too_few_users_fall_back_to_resampling_examples_with_a_warning(caplog):
    users = np.repeat(np.arange(25), 4)
    assert compare.bootstrap_groups({"group_ids": users}, "users") is users
    assert compare.bootstrap_groups({"group_ids": users}, "examples") is None
    with caplog.at_level("WARNING"):
        assert compare.bootstrap_groups({"group_ids": users[:40]}, "users") is None  # 10 users
        assert compare.bootstrap_groups({}, "users") is None
    assert caplog.text.count("too few to resample users") == 2 and "holds 10 user(s)" in caplog.text


def _users_comparison(num_users: int, unit: str, seed: int = 0) -> dict:
    """summarize of A2Gen, which ranks like perfectly, against MMoE, which scores at random, on 200 test examples of
    ``num_users`` users (like in about a third of each user's examples; follow nowhere)."""
    config = A2GenConfig()
    rng = np.random.default_rng(seed)
    users = np.arange(200) % num_users
    labels = np.zeros((200, 3), dtype=np.int64)
    labels[:, 0] = config.action_id("start")
    likes = rng.random(200) < 0.35
    labels[likes, 1] = config.action_id("like")
    a2gen = rng.random((200, config.vocab_size))
    a2gen[:, config.action_id("like")] += 2 * likes
    metrics = [{"mean_auc": 0.5, "positives": {"like": int(likes.sum()), "follow": 0}}]
    per_model = {name: {"predictions": {"action_probabilities": scores}, "metrics": metrics}
                 for name, scores in (("a2gen-iag", a2gen), ("mmoe", rng.random((200, config.vocab_size))))}
    settings = compare.ComparisonSettings(bootstrap_resamples=200, bootstrap_unit=unit)
    return compare.summarize(per_model, {"labels": labels, "group_ids": users}, config, settings, {})


@pytest.mark.parametrize("unit", ["users", "examples"])
def test_a_comparison_on_a_handful_of_users_gets_no_verdict_whatever_it_resamples(unit, caplog):
    """From a probe: with 1 or 5 test users the bootstrap fell back to resampling examples, whose rows carried no user
    counts, so "logistic regression on counts better" was called from one user. Now every row counts the users on
    each side whenever the examples have users, and below MIN_CLASS_GROUPS gives no verdict, saying why."""
    with caplog.at_level("WARNING"):
        report = _users_comparison(5, unit)
    assert report["bootstrap_unit"] == "examples"
    if unit == "users":
        assert "holds 5 user(s), too few to resample users" in caplog.text and "gets no verdict" in caplog.text
    like = report["bootstrap"]["mmoe"]["like"]
    assert like["low"] > 0  # the interval alone would call A2Gen better
    assert (like["positive_users"], like["negative_users"]) == (5, 5)
    assert like["verdict"] == ("no verdict: 5 user(s) hold its positives and 5 user(s) hold its negatives, fewer than "
                               "10, so the interval is too narrow to call")
    assert like["verdict"] in compare.format_markdown(report)
    assert report["bootstrap"]["mmoe"]["follow"]["verdict"] == "undefined: one class only"
    many = _users_comparison(60, "examples")["bootstrap"]["mmoe"]["like"]  # enough users: counted, and a verdict
    assert many["positive_users"] >= 10 and many["verdict"] == "A2Gen-IAG better"


def test_a_gauc_over_a_few_users_reads_n_a_with_its_users_and_figure():
    """From a probe: "GAUC buy 0.0000", one user's single-positive AUC, printed as a plain figure. results.json keeps
    each GAUC's users (gauc_groups, added beside gauc), the table's header names them, and below MIN_GAUC_GROUPS the
    cell reads n/a with the users and the figure, and a note says why. A report written before keeps its figures."""
    config = A2GenConfig()
    labels = np.zeros((40, 3), dtype=np.int64)
    labels[:, 0], labels[::2, 1] = config.action_id("start"), config.action_id("like")
    metrics = {"mean_auc": 0.5, "positives": {}, "gauc": {"like": 0.0, "follow": 0.61},
               "gauc_groups": {"like": 1, "follow": 37}}
    per_model = {name: {"predictions": {"action_probabilities": np.random.default_rng(0).random((40, 7))},
                        "metrics": [metrics]} for name in ("a2gen-iag", "mmoe")}
    report = compare.summarize(per_model, {"labels": labels, "group_ids": np.arange(40) % 25}, config,
                               compare.ComparisonSettings(bootstrap_resamples=40), {})
    assert report["models"]["mmoe"]["gauc_groups"] == {"like": 1, "follow": 37}
    assert report["models"]["mmoe"]["gauc"]["like"]["mean"] == 0.0  # the figure itself is kept, under its old name
    lines = compare.ranking_markdown_lines(report["models"], ["like", "follow"])
    table = "\n".join(lines)
    assert "| model | GAUC like (1 user) | GAUC follow (37 users) |" in table
    assert "| A2Gen-IAG | n/a (1 user: 0.0000) | 0.6100 |" in table
    assert "over fewer than 10 such users it reads n/a" in table
    old = {name: {key: value for key, value in summary.items() if key != "gauc_groups"}
           for name, summary in report["models"].items()}
    old_table = "\n".join(compare.ranking_markdown_lines(old, ["like", "follow"]))
    assert "| model | GAUC like | GAUC follow |" in old_table and "| A2Gen-IAG | 0.0000 | 0.6100 |" in old_table
    assert "reads n/a" not in old_table
    from a2gen_hf.plotting import check_comparison_report

    with pytest.raises(ValueError, match=r"models.mmoe.gauc_groups.like is -1; a count is a whole number >= 0"):
        check_comparison_report({"models": {"mmoe": {**report["models"]["mmoe"], "gauc_groups": {"like": -1}}}})


def test_a2gen_alone_has_no_bootstrap_and_no_warning_about_it(caplog):
    """With A2Gen as the only model there is nothing to compare: before, too few test users still warned that the
    bootstrap would resample examples, and results.json recorded a unit for a bootstrap that never ran."""
    config = A2GenConfig()
    labels = np.zeros((40, 3), dtype=np.int64)
    labels[:, 0], labels[::2, 1] = config.action_id("start"), config.action_id("like")
    per_model = {"a2gen-iag": {"predictions": {"action_probabilities": np.random.default_rng(0).random((40, 7))},
                               "metrics": [{"mean_auc": 0.5, "positives": {}}]}}
    with caplog.at_level("WARNING"):
        report = compare.summarize(per_model, {"labels": labels, "group_ids": np.arange(40) % 10}, config,
                                   compare.ComparisonSettings(bootstrap_resamples=40), {})
    assert "bootstrap_unit" not in report and not report["bootstrap"] and "too few" not in caplog.text
    assert "bootstrap" not in compare.format_markdown(report).lower()


def test_every_simple_baseline_has_a_readable_label():
    from a2gen_hf.training.simple_baselines import SIMPLE_BASELINES

    for name in SIMPLE_BASELINES:  # before: logreg-shares and count-network-shares showed their raw names
        assert compare.model_label(name) in compare.BASELINE_LABELS.values(), name


def test_the_quickstarts_block_for_another_log_is_the_command_of_the_latest_stand_in_table():
    """Before: no one block; the commands were scattered in results.md's prose, prepare without --output (refused as
    written) and --simple lists that differed between sections."""
    from test_docs import ROOT, shell_commands

    from a2gen_hf import cli

    quickstart = (ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")
    block = quickstart.split("## Another Taobao-format log")[1].split("\n## ")[0]
    commands = [argv for _, argv in shell_commands(block)]
    prepares = [cli.parse_arguments(argv) for argv in commands if argv[0] == "prepare"]
    compares = [cli.parse_arguments(argv) for argv in commands if argv[0] == "compare"]
    assert prepares and compares and all(args.on_bad_rows == "skip" for args in prepares)
    # the --time-window none line is an alternative, commented out so that the block runs as a script (a log of the
    # preset's period with a few stray timestamps failed on the second prepare)
    assert "#   a2gen prepare --preset taobao --input LOG.csv --output data/NAME --on-bad-rows skip --time-window none" in block
    assert "INSTEAD of the line above" in block and "outside_window" in block and len(prepares) == 1
    assert {args.data for args in compares} == {args.output for args in prepares}  # the prepared folder, not the CSV
    results = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    latest = results.split("**Every stand-in again.**")[-1].split("| log |")[0]  # the last stand-in table's command
    listed = re.search(r"--simple\s+([a-z,-]+)", latest).group(1)
    assert all(args.simple == listed for args in compares)
    assert "quickstart.md#another-taobao-format-log" in latest
    for command in re.findall(r"`(a2gen (?:prepare|compare) [^`]*<log>[^`]*)`", results):  # every other-log command
        assert "--output" in command and "--data <log>" not in command, command


def test_compare_keeps_an_a2gen_train_run_in_its_runs_folder_and_refuses_one_at_a_run_name(simulated_data_dir,
                                                                                            tmp_path, capsys):
    """Before: compare deleted any `a2gen train` run in OUTPUT/runs (saved model included) with an INFO line only. Now
    it replaces or removes only the run folders a compare wrote (marked, or named by the earlier results.json of a
    compare older than the mark), keeps any other folder, and refuses one at the name of a run it trains before any
    work."""
    output = tmp_path / "compare"
    mine = output / "runs" / "my-tuned-model"
    assert main(["train", "--data", str(simulated_data_dir), "--output", str(mine), "--epochs", "1",
                 "--batch-size", "64", "--quiet"]) == 0
    saved = sorted(path.name for path in mine.iterdir())
    assert "model" in saved and "training_log.json" in saved
    argv = compare_argv(simulated_data_dir, output)
    argv[argv.index("--models") + 1] = "mmoe"
    assert main(argv) == 0
    assert sorted(path.name for path in mine.iterdir()) == saved  # kept, saved model included
    assert (output / "runs" / "mmoe-seed0" / compare.RUN_MARKER).is_file()
    (output / "runs" / "mmoe-seed0" / compare.RUN_MARKER).unlink()  # as an older compare left it: results.json names it
    assert main([*argv, "--seeds", "2"]) == 0 and sorted(path.name for path in mine.iterdir()) == saved
    assert json.loads((output / "results.json").read_text())["settings"]["data_dir"] == str(simulated_data_dir.resolve())
    assert main(argv) == 0  # mmoe-seed1 is an earlier compare's (marked): removed; the train run kept
    runs = sorted(path.name for path in (output / "runs").iterdir() if not path.name.startswith("."))
    assert runs == ["mmoe-seed0", "my-tuned-model"] and sorted(path.name for path in mine.iterdir()) == saved
    capsys.readouterr()
    refused = tmp_path / "refused"
    (refused / "runs").mkdir(parents=True)
    mine.rename(refused / "runs" / "mmoe-seed0")  # a train run at the name of a run compare trains
    assert main(compare_argv(simulated_data_dir, refused, "--simple", "propensity")) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and str(refused / "runs" / "mmoe-seed0") in error
    assert "move that folder" in error and "choose another --output" in error
    assert sorted(path.name for path in (refused / "runs" / "mmoe-seed0").iterdir()) == saved
    assert sorted(path.name for path in refused.iterdir()) == ["runs"]  # refused before any work


def test_a_killed_rerun_leaves_no_earlier_results_to_read_as_current(simulated_data_dir, tmp_path, monkeypatch,
                                                                     capsys):
    """Before: a rerun into the same output stopped after its first run left the earlier results.json (and
    results.md / .png, test_predictions.npz) beside the new run folders, and `a2gen report` rendered them silently.
    Now they are removed before the first run folder is written; running the command again completes."""
    output = tmp_path / "compare"
    argv = compare_argv(simulated_data_dir, output)
    argv[argv.index("--models") + 1] = "mmoe"
    assert main(argv) == 0
    assert main(["report", str(output / "results.json")]) == 0
    rerun = compare_argv(simulated_data_dir, output, "--epochs", "2")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(compare, "predict_dataset", interrupted)  # stopped right after its first run is trained
        assert main(rerun) == 130
    assert (output / "runs" / "a2gen-iag-seed0" / "training_log.json").is_file()
    left = {path.name for path in output.iterdir()}
    assert not left & {"results.json", "results.md", "results.png", "test_predictions.npz"}
    capsys.readouterr()
    assert main(["report", str(output / "results.json")]) == 2  # nothing rendered as current
    assert capsys.readouterr().out == ""
    assert main(rerun) == 0
    runs = sorted(path.name for path in (output / "runs").iterdir() if not path.name.startswith("."))
    assert runs == ["a2gen-iag-seed0", "mmoe-seed0"]
    report = json.loads((output / "results.json").read_text())
    assert report["models"].keys() == {"a2gen-iag", "mmoe"} and report["settings"]["training"]["num_epochs"] == 2


def test_the_four_result_files_are_moved_in_together_and_kept_when_one_cannot_be_made(simulated_data_dir, tmp_path,
                                                                                        monkeypatch, capsys):
    """Before: results.json was written first and the table, predictions and plot after it, one by one, so a
    comparison stopped in between left a results.json without its results.md / results.png. Now all four are made in
    a work folder and moved in together, results.json last; where one cannot be made (here the plot, or a stop
    then), those already made are moved in all the same and the error goes on."""
    output = tmp_path / "compare"
    argv = compare_argv(simulated_data_dir, output)
    argv[argv.index("--models") + 1] = "mmoe"
    moved = []
    real_replace = os.replace

    def recording_replace(source, target):
        moved.append(Path(target).name)
        return real_replace(source, target)

    with monkeypatch.context() as patch:
        patch.setattr(compare.os, "replace", recording_replace)
        assert main(argv) == 0
    assert moved[-4:] == ["results.md", "test_predictions.npz", "results.png", "results.json"]
    assert not list(output.glob(".a2gen-compare-results-*"))

    def broken_plot(*args, **kwargs):
        raise KeyboardInterrupt  # stopped while the plot is drawn

    (output / "results.png").unlink()
    with monkeypatch.context() as patch:
        patch.setattr(compare, "plot_comparison", broken_plot)
        assert main(argv) == 130
    left = {path.name for path in output.iterdir()}
    assert {"results.json", "results.md", "test_predictions.npz"} <= left and "results.png" not in left
    assert not list(output.glob(".a2gen-compare-results-*"))
    capsys.readouterr()
    assert main(["report", str(output / "results.json")]) == 0


def test_a_result_file_that_cannot_be_moved_in_keeps_the_others_and_a_folder_there_is_refused_first(tmp_path,
                                                                                                     monkeypatch):
    """(review) One move that failed (a folder at results.md) left every later file, results.json among them, in
    the work folder, which the next comparison deletes. Each file is now moved on its own, the error names what
    stayed where; and a folder at a result file's name is refused before any work."""
    output = tmp_path / "compare"
    output.mkdir()
    monkeypatch.setattr(compare, "format_markdown", lambda report: "md")
    monkeypatch.setattr(compare, "save_test_predictions", lambda path, *args: Path(path).write_bytes(b"npz"))
    monkeypatch.setattr(compare, "plot_comparison", lambda report, path: Path(path).write_bytes(b"png"))
    (output / "results.md").mkdir()
    with pytest.raises(OSError, match=r"could not move results.md into .*; the file\(s\) stay in .*a2gen-compare-results-"):
        compare._write_results(output, {"models": {}}, {}, {})
    assert json.loads((output / "results.json").read_text()) == {"models": {}}
    assert (output / "results.png").read_bytes() == b"png" and (output / "test_predictions.npz").is_file()
    with pytest.raises(ValueError, match=r"results.md is not a file, and the comparison writes its results.md there"):
        compare._check_result_paths(output)
    (output / "results.md").rmdir()
    compare._check_result_paths(output)  # files there are fine: they are replaced


def test_an_ablation_beside_the_fitted_wide_start_is_refused_before_any_work(simulated_data_dir, tmp_path, capsys):
    """(a probe) Under the sparse_logs recipe the ranking is fitted on the whole history before training (its time
    features read the times, its counts the events) and frozen; `a2gen-iag:notime` then fed it zeroed ages: a buy
    AUC of 0.33, below chance, and verdicts built on it. Such an ablation is refused, naming the way to run it."""
    output = tmp_path / "compare"
    status = main(["compare", "--recipe", "sparse_logs", "--data", str(simulated_data_dir), "--output", str(output),
                   "--models", "a2gen-iag,a2gen-iag:notime", "--seeds", "1", "--simple", "propensity"])  # fmt: skip
    assert status == 2
    error = capsys.readouterr().err
    assert "a2gen-iag:notime: the ablation removes from the batches part of the history that the wide warm start" in error
    assert "--no-wide-warm-start" in error and "logreg-shares-times against logreg-shares" in error
    assert not (output / "runs").exists()  # nothing trained
    # without time features, :notime leaves the start's inputs as they are: kept; :noevents never is
    from types import SimpleNamespace

    compare.check_ablations_with_the_start(["a2gen-iag:notime"], True, SimpleNamespace(history_time_features=False))
    with pytest.raises(ValueError, match="a2gen-iag:noevents: the ablation removes"):
        compare.check_ablations_with_the_start(["a2gen-iag:noevents"], True, SimpleNamespace(history_time_features=False))
    compare.check_ablations_with_the_start(["a2gen-iag:noevents"], False, SimpleNamespace(history_time_features=True))
