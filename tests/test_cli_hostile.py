"""`a2gen` on hostile input: every mistake is refused up front with `a2gen <command>: error: <message>` and exit
status 2 (no traceback), outputs are written atomically, inputs are never overwritten, Ctrl-C prints one line."""

import copy
import json
import math
from pathlib import Path

import pytest

from a2gen_hf import cli
from a2gen_hf.cli import main

SAVED_REPORT = Path(__file__).resolve().parent.parent / "docs" / "img" / "results_taobao.json"
LOOP_LOG = {"settings": {}, "log_history": [{"step": 5, "loss": 1.2}, {"step": 10, "validation_loss": 1.0}]}


def error_of(capsys, command: str) -> str:
    err = capsys.readouterr().err
    last_line = err.rstrip("\n").splitlines()[-1]  # after any progress bar of loading a model
    assert last_line.startswith(f"a2gen {command}: error: "), err
    assert "Traceback" not in err
    return err


def strict_json(text: str):
    """json.loads that refuses NaN / Infinity (what other tools' JSON parsers do)."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in JSON"))


# -- report / plot comparison / plot curves: their input


def test_report_refuses_to_overwrite_its_own_input(tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text(SAVED_REPORT.read_text())
    before = results.read_bytes()
    for output in (results, tmp_path / "sub" / ".." / "results.json"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        assert main(["report", str(results), "--output", str(output)]) == 2
        assert "is the results file being read" in error_of(capsys, "report")
    assert results.read_bytes() == before
    assert main(["report", str(results), "--output", str(tmp_path)]) == 2
    assert "is a folder; give a file name" in error_of(capsys, "report")


def damaged(change):
    report = json.loads(SAVED_REPORT.read_text())
    change(report)
    return report


DAMAGED_REPORTS = {
    "null": (None, "must hold the JSON object a2gen compare writes"),
    "models list": (damaged(lambda r: r.update(models=[])), 'needs a non-empty "models" mapping'),
    "auc list": (damaged(lambda r: r["models"]["mmoe"].update(auc=[0.5])), "models.mmoe.auc must be a mapping of action"),
    "auc string": (damaged(lambda r: r["models"]["mmoe"].update(auc="0.5")), "models.mmoe.auc must be a mapping of action"),
    "mean_auc number": (damaged(lambda r: r["models"]["ple"].update(mean_auc=5)), "models.ple.mean_auc must be a mapping"),
    "mean string": (damaged(lambda r: r["models"]["mmoe"]["auc"]["cart"].update(mean="0.7")),
                    "models.mmoe.auc.cart.mean must be a number or null, got str"),
}


@pytest.mark.parametrize("name", sorted(DAMAGED_REPORTS))
def test_damaged_results_json_names_the_file_and_the_key(tmp_path, capsys, name):
    content, message = DAMAGED_REPORTS[name]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(content))
    assert main(["report", str(path)]) == 2
    err = error_of(capsys, "report")
    assert str(path) in err and message in err
    assert main(["plot", "comparison", str(path), "--output", str(tmp_path / "r.png")]) == 2
    err = error_of(capsys, "plot comparison")
    assert str(path) in err and message in err
    assert not (tmp_path / "r.png").exists()


def test_damaged_bootstrap_rows_and_other_encodings(tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(damaged(lambda r: r["bootstrap"]["mmoe"]["cart"].pop("low"))))
    assert main(["report", str(path)]) == 2
    assert "bootstrap.mmoe.cart lacks 'low'" in error_of(capsys, "report")
    # strict JSON writes an undefined difference as null: rendered as the NaN row is
    nulls = damaged(lambda r: r["bootstrap"]["mmoe"]["cart"].update(difference=None, low=None, high=None))
    path.write_text(json.dumps(nulls))
    assert main(["report", str(path), "--tables", "bootstrap"]) == 0
    assert "n/a (undefined: one class only" in capsys.readouterr().out
    path.write_text(json.dumps(damaged(lambda r: r.update(untrained_actions="buy"))))
    assert main(["report", str(path)]) == 2
    assert "untrained_actions must be a list of action names, got str" in error_of(capsys, "report")
    path.write_bytes(b"\xff\xfe\x00{}")
    assert main(["report", str(path)]) == 2
    assert "is not UTF-8 text" in error_of(capsys, "report")
    for kind in ("comparison", "curves"):
        assert main(["plot", kind, str(path), "--output", str(tmp_path / "x.png")]) == 2
        assert "is not UTF-8 text" in error_of(capsys, f"plot {kind}")


def test_infinity_in_a_report_is_refused_at_its_line_and_column(tmp_path, capsys):
    """Python's json reads Infinity, which no command writes: a hand-edited report holding one is refused where it
    stands, not rendered as a figure. NaN (what earlier versions wrote for undefined) is read; the words inside a
    string are text."""
    report = damaged(lambda r: r.update(note="NaN or -Infinity in a string is text"))
    text = json.dumps(report, indent=2)
    path = tmp_path / "results.json"
    path.write_text(text)
    assert main(["report", str(path)]) == 0
    capsys.readouterr()
    # -Infinity, and a number beyond a float, which Python's json reads as inf without a word (before: rendered as
    # "inf ± 0.0019").
    for token in ("-Infinity", "1e400"):
        edited = text.replace('"mean": ', f'"mean": {token}, "was": ', 1)
        line = edited[:edited.index(f"{token}, ")].count("\n") + 1
        path.write_text(edited)
        for command in (["report", str(path)], ["plot", "comparison", str(path), "--output", str(tmp_path / "r.png")]):
            assert main(command) == 2
            err = error_of(capsys, " ".join(command[:2]) if command[0] == "plot" else "report")
            assert f"{path}, line {line}, column " in err and f"{token} is not a figure any command writes" in err
        assert not (tmp_path / "r.png").exists()


def test_damaged_training_log_names_the_entry(tmp_path, capsys):
    log = copy.deepcopy(LOOP_LOG)
    log["log_history"][1]["validation_loss"] = None
    path = tmp_path / "training_log.json"
    path.write_text(json.dumps(log))
    assert main(["plot", "curves", str(path), "--output", str(tmp_path / "c.png")]) == 2
    assert "log_history[1].validation_loss must be a number, got null" in error_of(capsys, "plot curves")
    path.write_text("null")
    assert main(["plot", "curves", str(path), "--output", str(tmp_path / "c.png")]) == 2
    assert "without a log_history list" in error_of(capsys, "plot curves")


# -- plot: where it writes


def test_plot_output_paths_and_atomic_write(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("training_log.json").write_text(json.dumps(LOOP_LOG))
    Path("afile").write_text("keep")
    assert main(["plot", "curves", "training_log.json", "--output", "afile/x.png"]) == 2
    assert "afile is a file, not a folder" in error_of(capsys, "plot curves")
    assert Path("afile").read_text() == "keep"
    assert main(["plot", "curves", "training_log.json", "--output", "ynoext"]) == 0
    assert capsys.readouterr().out == "written to ynoext.png\n" and Path("ynoext.png").is_file()
    Path("adir").mkdir()  # refused, as every command's file to write (before: adir.png written beside it)
    assert main(["plot", "curves", "training_log.json", "--output", "adir"]) == 2
    assert "--output adir is a folder" in error_of(capsys, "plot curves") and not Path("adir.png").exists()
    assert main(["plot", "curves", "training_log.json", "--output", "nodir/sub/x.png"]) == 2  # before: created
    assert "the folder nodir/sub does not exist" in error_of(capsys, "plot curves") and not Path("nodir").exists()
    assert main(["plot", "curves", "training_log.json", "--output", "adir/new.png/"]) == 2
    assert "ends with a slash" in error_of(capsys, "plot curves") and not Path("adir/new.png").exists()
    assert main(["plot", "curves", "training_log.json", "--output", "x.bogus"]) == 2
    assert "matplotlib writes no '.bogus' files" in error_of(capsys, "plot curves")
    assert sorted(path.name for path in tmp_path.iterdir() if ".tmp-" in path.name) == []  # no temporary left


# -- generate / evaluate: checked before the model is loaded (the model folder here does not exist)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--num-examples", "0"], "--num-examples 0 must be >= 1"),
        (["--num-examples", "-3"], "--num-examples -3 must be >= 1"),
        (["--num-beams", "0"], "--num-beams 0 must be >= 1"),
        (["--do-sample", "--seed", "99999999999999999999"], "--seed 99999999999999999999 is not a seed"),
    ],
)
def test_generate_checks_its_numbers_first(tmp_path, capsys, flags, message):
    assert main(["generate", "--model", str(tmp_path / "no-model"), "--data", str(tmp_path), *flags]) == 2
    assert message in error_of(capsys, "generate")


@pytest.mark.parametrize(
    ("json_path", "message"),
    [("adir", "--json {tmp}/adir is a folder"), ("missing/x.json", "the folder {tmp}/missing does not exist"),
     ("afile/x.json", "{tmp}/afile is a file, not a folder")],
)
def test_evaluate_checks_the_json_path_first(tmp_path, capsys, json_path, message):
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("")
    argv = ["evaluate", "--model", str(tmp_path / "no-model"), "--data", str(tmp_path), "--json", str(tmp_path / json_path)]
    assert main(argv) == 2
    assert message.format(tmp=tmp_path) in error_of(capsys, "evaluate")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A data folder (40 sessions), a copy whose test split is empty, and an untrained tiny A2Gen."""
    import shutil

    from a2gen_hf import A2GenForActionGeneration
    from a2gen_hf.data import SimulatorConfig, simulate
    from a2gen_hf.training.data_setup import load_data_dir, model_config_from_tokenizer

    folder = tmp_path_factory.mktemp("hostile")
    config = SimulatorConfig(num_examples=40, examples_per_user=10, history_length=3, num_items=20, seed=1)
    simulate(config, progress=False, cache_dir=str(folder / "cache")).save(folder / "data")
    dataset, tokenizer, _ = load_data_dir(folder / "data")
    shutil.copytree(folder / "data", folder / "empty")
    shutil.rmtree(folder / "empty" / "test")
    dataset["test"].select([]).save_to_disk(folder / "empty" / "test", num_shards=1)
    summary = json.loads((folder / "empty" / "a2gen_data.json").read_text())  # as a log without test sessions writes it
    summary["examples"]["test"] = 0
    (folder / "empty" / "a2gen_data.json").write_text(json.dumps(summary))
    model_config = model_config_from_tokenizer(tokenizer, dataset, hidden_size=16, num_attention_heads=2)
    A2GenForActionGeneration(model_config).save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    return folder


def test_an_empty_split_is_named_and_evaluate_writes_strict_json(tiny_checkpoint, tmp_path, capsys):
    model, empty = str(tiny_checkpoint / "model"), str(tiny_checkpoint / "empty")
    assert main(["evaluate", "--model", model, "--data", empty, "--quiet"]) == 2
    assert "split 'test' of" in (err := error_of(capsys, "evaluate")) and "has no rows" in err and "--split" in err
    assert main(["generate", "--model", model, "--data", empty, "--quiet"]) == 2
    assert "has no rows" in error_of(capsys, "generate")
    output = tmp_path / "metrics.json"
    argv = ["evaluate", "--model", model, "--data", str(tiny_checkpoint / "data"), "--json", str(output), "--quiet"]
    assert main(argv) == 0
    metrics = strict_json(output.read_text())
    assert set(metrics["auc"]) and all(value is None or math.isfinite(value) for value in metrics["auc"].values())
    assert [path.name for path in tmp_path.iterdir()] == ["metrics.json"]


def test_evaluate_piped_into_head_writes_its_json_and_exits_quietly(tiny_checkpoint, tmp_path):
    """Before: `a2gen evaluate --json F | head -1` printed the tables first, died of BrokenPipeError with a traceback,
    and F was never written (generate died the same way)."""
    import os
    import subprocess
    import sys

    model, data, output = str(tiny_checkpoint / "model"), str(tiny_checkpoint / "data"), tmp_path / "piped.json"
    for argv in (["evaluate", "--json", str(output)], ["generate", "--num-examples", "30"]):
        command = [sys.executable, "-m", "a2gen_hf.cli", *argv, "--model", model, "--data", data, "--quiet"]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={
            **os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})  # each print reaches the pipe at once
        process.stdout.readline()
        process.stdout.close()  # as `| head -1` does
        err = process.stderr.read().decode()
        assert process.wait(timeout=120) in (0, 141) and "Traceback" not in err, err
    assert strict_json(output.read_text())["auc"]


def test_evaluate_refuses_a_json_inside_the_model_or_data_folder(tiny_checkpoint, capsys):
    """Before: --json MODEL/config.json was written over the model's config, which then no longer loaded."""
    model, data = str(tiny_checkpoint / "model"), str(tiny_checkpoint / "data")
    before = (tiny_checkpoint / "model" / "config.json").read_bytes()
    for target, flag in ((f"{model}/config.json", "--model"), (f"{data}/test/new.json", "--data")):
        assert main(["evaluate", "--model", model, "--data", data, "--json", target, "--quiet"]) == 2
        assert f"--json {target} lies inside the {flag} folder" in error_of(capsys, "evaluate")
    assert (tiny_checkpoint / "model" / "config.json").read_bytes() == before


def test_a_data_folder_hashed_with_other_buckets_is_refused(tiny_checkpoint, tmp_path, capsys):
    """Before: evaluated and fine-tuned without a word, every id pointing at another embedding row."""
    import shutil

    from a2gen_hf import A2GenActionTokenizer

    other = tmp_path / "other"
    shutil.copytree(tiny_checkpoint / "data", other)
    tokenizer = A2GenActionTokenizer.from_pretrained(str(other / "tokenizer"))
    tokenizer.item_buckets *= 2
    tokenizer.save_pretrained(str(other / "tokenizer"))
    model = str(tiny_checkpoint / "model")
    for command in ("evaluate", "generate"):
        assert main([command, "--model", model, "--data", str(other), "--quiet"]) == 2
        err = error_of(capsys, command)
        assert "hash ids differently" in err and f"item_buckets: the tokenizer of {other} {tokenizer.item_buckets}" in err
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "finetune_with_trainer.py"
    spec = importlib.util.spec_from_file_location("finetune_with_trainer", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with pytest.raises(ValueError, match=r"item_buckets: the tokenizer of .* the checkpoint's"):
        example.main(["--checkpoint", model, "--data", str(other), "--output", str(tmp_path / "out"), "--max-steps", "1"])
    for flags, message in (
        (["--checkpoint", str(tmp_path / "none")], "no config.json there"),
        (["--checkpoint", model, "--epochs", "0"], "train nothing"),
        (["--checkpoint", model, "--max-steps", "0"], "train nothing"),
    ):
        with pytest.raises(SystemExit):
            example.main([*flags, "--data", str(other), "--output", str(tmp_path / "out2")])
        assert message in capsys.readouterr().err


# -- compare / demo / simulate / train / prepare: checked before anything is simulated or trained


@pytest.mark.parametrize(
    ("command", "flags", "message"),
    [
        ("compare", ["--seeds", "0"], "--seeds 0 must be >= 1"),
        ("compare", ["--seeds", "-2"], "--seeds -2 must be >= 1"),
        ("compare", ["--models", "", "--simple", ""], "name no model to compare"),
        ("compare", ["--models", "propensity"], "is a simple baseline; give it with --simple"),
        ("compare", ["--models", "nope"], "--models 'nope' is not a network; choose from a2gen-iag"),
        ("compare", ["--models", "a2gen-iag:foo"], "--models 'a2gen-iag:foo': Ablation 'foo' in 'a2gen-iag:foo'"),
        ("compare", ["--models", "a2gen-iag:"], "--models 'a2gen-iag:': 'a2gen-iag:' ends with ':' and names no"),
        ("compare", ["--models", "a2gen-iag:notime,a2gen-iag:notime "], "name ['a2gen-iag:notime'] more than once"),
        ("compare", ["--epochs", "0"], "--epochs 0 must be >= 1 (the most epochs each network trains"),
        ("compare", ["--models", "a2gen-iag,mmoe,a2gen-iag"], "name ['a2gen-iag'] more than once"),
        ("compare", ["--models", "", "--simple", "logreg,logreg"], "name ['logreg'] more than once"),
        ("compare", ["--output", "AFILE"], "exists and is a file; choose a folder name"),
        ("demo", ["--output", "AFILE"], "exists and is a file; choose a folder name"),
        ("bench", ["--quick", "--output", "AFILE"], "exists and is a file; choose a folder name"),  # before: minutes
        ("bench", ["--convert", "--convert-rows", "0"], "--convert-rows 0 must be >= 1"),  # of timing, then refused
        ("demo", ["--num-examples", "0"], "--num-examples 0: the demo needs at least 100 sessions"),
        ("demo", ["--epochs", "0"], "--epochs 0 must be >= 1"),
        ("demo", ["--batch-size", "0"], "--batch-size 0 must be >= 1"),
        ("demo", ["--seed", "-1"], "--seed -1 is not a seed"),
        ("demo", ["--seed", str(2**32)], "below 4,294,967,296"),
        ("simulate", ["--seed", "-1"], "--seed -1 is not a seed"),
        ("simulate", ["--num-examples", "0"], "--num-examples 0 must be a positive integer"),  # before: num_examples=0
        ("simulate", ["--output", "AFILE"], "exists and is a file; choose a folder name"),
        ("train", ["--output", "AFILE"], "exists and is a file; choose a folder name"),
    ],
)
def test_commands_check_their_arguments_first(tmp_path, capsys, command, flags, message):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    required = {
        "compare": ["--data", str(tmp_path / "no-data"), "--output", str(tmp_path / "out")],
        "demo": ["--output", str(tmp_path / "out")],
        "simulate": ["--output", str(tmp_path / "out")],
        "train": ["--data", str(tmp_path / "no-data"), "--output", str(tmp_path / "out")],
        "bench": [],
    }[command]
    flags = [str(afile) if flag == "AFILE" else flag for flag in flags]
    assert main([command, *required, *flags, "--quiet"]) == 2
    assert message in error_of(capsys, command)
    assert afile.read_text() == "keep" and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--generic-actions", ",,,"], "--generic-actions ',,,' names 0 action(s)"),
        (["--generic-actions", "start,like,leave", "--generic-action-mapping", "start=start,start=like"],
         "gives the raw value 'start' twice"),
        (["--generic-actions", "start,like,leave", "--generic-action-mapping", "open=start,thumb, up=like"],
         "a raw value that holds a comma cannot be mapped here: rewrite that value in the log first"),
        # before: TypeError '"delimiter" must be a 1-character string' from the csv module (--delimiter unescaped \t)
        (["--generic-actions", "start,like,leave", "--generic-delimiter", ";;"],
         "--generic-delimiter ';;' is not one character"),
    ],
)
def test_prepare_generic_actions_and_mapping(tmp_path, capsys, flags, message):
    log = tmp_path / "log.csv"
    log.write_text("user,item,time,action\n1,2,3,start\n")
    argv = ["prepare", "--preset", "generic", "--input", str(log), "--output", str(tmp_path / "out"), *flags]
    assert main(argv) == 2
    assert message in error_of(capsys, "prepare")


def test_prepare_generic_delimiter_takes_an_escaped_tab(tmp_path):
    log = tmp_path / "log.tsv"
    rows = [f"{user}\t{item}\t{1511544000 + 600 * item + user}\t{action}" for user in range(8) for item, action in
            enumerate(["start", "like", "leave"] * 2)]  # fmt: skip
    log.write_text("user_id\titem_id\ttimestamp\taction\n" + "\n".join(rows) + "\n")
    argv = ["prepare", "--preset", "generic", "--input", str(log), "--output", str(tmp_path / "out"), "--quiet",
            "--generic-actions", "start,like,leave", "--generic-delimiter", "\\t", "--validation-fraction", "0",
            "--test-fraction", "0"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((tmp_path / "out" / "a2gen_data.json").read_text())
    assert summary["rows_kept"] == len(rows) and summary["preset"]["delimiter"] == "\t"


def test_a_config_file_that_is_not_utf8(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--output", str(tmp_path / "out"), "--config", str(config)])
    assert exit_info.value.code == 2
    assert f"--config {config} is not UTF-8 text" in error_of(capsys, "simulate")


# -- Ctrl-C


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["train", "--data", "d", "--output", "o", "--checkpoint-every", "5"],
         "a2gen train: interrupted before the first checkpoint was complete (--checkpoint-every 5)"),  # nothing written yet
        (["train", "--data", "d", "--output", "o"], "a2gen train: interrupted; no checkpoint was written"),
        (["report", "r.json"], "a2gen report: interrupted\n"),
    ],
)
def test_ctrl_c_prints_one_line_and_exits_130(monkeypatch, capsys, argv, line):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, f"run_{argv[0]}", interrupted)
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count("\n") == 1 and "Traceback" not in err


def test_strict_json_is_the_one_writer_of_metrics_files(tmp_path):
    """eval_results.json, evaluate --json and demo_results.json all go through write_json_atomically: NaN / inf ->
    null, numpy numbers and arrays -> JSON ones, parsed back by a strict reader."""
    import json as json_module

    import numpy as np

    from a2gen_hf.output_folders import strict_json, write_json_atomically

    value = {"auc": {"like": float("nan"), "buy": np.float32(0.5)}, "counts": np.array([1, 2]), "pair": (np.int64(3), -float("inf"))}
    assert strict_json(value) == {"auc": {"like": None, "buy": 0.5}, "counts": [1, 2], "pair": [3, None]}
    write_json_atomically(tmp_path / "m.json", value)
    text = (tmp_path / "m.json").read_text()
    assert json_module.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict {name}")) == strict_json(value)
    assert [path.name for path in tmp_path.iterdir()] == ["m.json"]


def test_an_unknown_option_is_reported_by_its_command_with_the_closest_ones(capsys):
    """Before: argparse's top-level "a2gen: error: unrecognized arguments: --no-progess"."""
    with pytest.raises(SystemExit) as exited:
        main(["train", "--data", "d", "--output", "o", "--no-progess"])
    assert exited.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("a2gen train: error: unrecognized arguments: --no-progess")
    assert "did you mean --no-progress" in error and "see a2gen train --help" in error
    with pytest.raises(SystemExit):
        main(["compare", "--data", "d", "--output", "o", "--no-progress"])
    assert "a2gen compare: error: unrecognized arguments: --no-progress" in capsys.readouterr().err


def test_training_settings_errors_name_the_flags(simulated_data_dir, tmp_path, capsys):
    """`a2gen train --epochs 0` said "num_epochs=0", a Python field the command line has no option of; errors of
    the training settings name the flag given (train and compare alike)."""
    base = ["--data", str(simulated_data_dir), "--cpu"]
    for flag, value, shown in (("--epochs", "0", "--epochs 0"), ("--batch-size", "0", "--batch-size 0"),
                               ("--dense-lr", "-1", "--dense-lr -1.0")):
        assert main(["train", *base, "--output", str(tmp_path / "run"), flag, value]) == 2
        error = error_of(capsys, "train")
        assert shown in error and "num_epochs=" not in error and "batch_size=" not in error, error
    assert main(["compare", "--data", str(simulated_data_dir), "--output", str(tmp_path / "cmp"), "--epochs", "0",
                 "--models", "a2gen-iag"]) == 2
    assert "--epochs 0 must be >= 1" in error_of(capsys, "compare")
    # a switch is named in its --name / --no-name form, not as "--name False" (which the command line refuses)
    assert main(["train", *base, "--output", str(tmp_path / "run"), "--no-eval-at-epoch-end"]) == 2
    error = error_of(capsys, "train")
    assert "--no-eval-at-epoch-end evaluates" in error and "or --eval-at-epoch-end." in error and "False" not in error


def test_model_prepare_and_seed_errors_name_the_flags_too(simulated_data_dir, tmp_path, capsys):
    """From a probe of the docs (cli.md: "a value a setting refuses is named by its flag"): the config's and the
    start regression's checks said embedding_dropout_prob=2.0, history_event_moment_seconds=0.0, share_scale=0.0;
    prepare's said max_actions=0, partition_rows=0, item_buckets=1, validation_start=...; `train --seed -1` got
    numpy's "Seed must be between 0 and 2**32 - 1" after the imports."""
    base = ["train", "--data", str(simulated_data_dir), "--output", str(tmp_path / "run"), "--cpu", "--max-steps", "1"]
    for flags, shown in ((["--embedding-dropout", "2"], "--embedding-dropout 2.0 must be in [0, 1)"),
                         (["--event-moment-seconds", "0"], "--event-moment-seconds 0.0 must be > 0"),
                         (["--seed", "-1"], "--seed -1 is not a seed: give an integer >= 0 and below 4,294,967,296"),
                         (["--wide-share-scale", "0", "--wide-path", "--wide-warm-start"],
                          "--wide-share-scale 0.0 must be a finite number >= 1")):  # fmt: skip
        assert main([*base, *flags]) == 2
        err = capsys.readouterr().err  # a config's problems come as a list under its first line
        assert "a2gen train: error: " in err and shown in err and "Traceback" not in err, err
    log = tmp_path / "log.csv"
    log.write_text("".join(f"{user},{item},{item % 7},pv,{1511600000 + 60 * item}\n" for user in range(30)
                           for item in range(5)))  # fmt: skip
    prepare = ["prepare", "--preset", "taobao", "--input", str(log), "--output", str(tmp_path / "data"), "--quiet"]
    for flags, shown in ((["--max-actions", "0"], "--max-actions 0 must be a positive integer"),
                         (["--partition-rows", "0"], "--partition-rows 0 and --num-proc"),
                         (["--item-buckets", "1"], "--item-buckets 1 must be >= 2"),
                         (["--min-history", "-1"], "--min-history -1 >= 0"),
                         (["--validation-start", "1512200000", "--test-start", "1512100000"],
                          "--validation-start 1512200000.0 must not be after --test-start 1512100000.0")):
        assert main([*prepare, *flags]) == 2
        assert shown in error_of(capsys, "prepare")
    # --generic-* options beside another preset were read by no one (a probe: --generic-duration-column with taobao)
    assert main([*prepare, "--generic-duration-column", "watch_ms", "--generic-time-unit", "ms"]) == 2
    error = error_of(capsys, "prepare")
    assert "--generic-time-unit, --generic-duration-column describe a log read with --preset generic" in error
    # the Python API's "(CLI: --flag)" is dropped where the message starts with that flag, kept where it glosses a field
    assert main([*prepare, "--session-gap-seconds", "nan"]) == 2
    error = error_of(capsys, "prepare")
    assert "--session-gap-seconds nan must be a finite number" in error and "(CLI: --session-gap-seconds)" not in error
    assert main(prepare) == 0
    capsys.readouterr()
    again = [*prepare[:-3], "--output", str(tmp_path / "again"), "--quiet"]
    assert main([*again, "--tokenizer", str(tmp_path / "data" / "tokenizer"), "--max-actions", "11"]) == 2
    error = error_of(capsys, "prepare")
    assert "--max-actions 11 differs from the tokenizer's 6" in error and "drop max_actions (CLI: --max-actions)" in error


def test_a_run_into_its_own_data_folder_is_refused(simulated_data_dir, capsys):
    """--output equal to --data wrote the model, checkpoints and logs among the data's splits; refused before any
    work, naming both flags (train and compare)."""
    before = sorted(path.name for path in simulated_data_dir.iterdir())
    assert main(["train", "--data", str(simulated_data_dir), "--output", str(simulated_data_dir), "--cpu"]) == 2
    assert "is the data folder (--data" in error_of(capsys, "train")
    assert main(["compare", "--data", str(simulated_data_dir), "--output", f"{simulated_data_dir}/", "--models",
                 "a2gen-iag"]) == 2
    assert "is the data folder (--data" in error_of(capsys, "compare")
    assert sorted(path.name for path in simulated_data_dir.iterdir()) == before


def test_with_flags_leaves_the_python_hints_inside_calls_as_they_are():
    """Probe 22: ``dataclasses.replace(preset, side_feature_columns=(...))`` became ``replace(preset,
    --side-feature-columns (...))``."""
    arguments = {"side_feature_columns": "cat", "test_fraction": 0.0, "max_actions": 6}
    message = ("side_feature_columns=('a',) differ (Python: dataclasses.replace(preset, side_feature_columns=(...)); "
               "SplitRule(test_fraction=0)); max_actions=7 is refused")  # fmt: skip
    assert cli._with_flags(message, arguments) == (
        "--side-feature-columns ('a',) differ (Python: dataclasses.replace(preset, side_feature_columns=(...)); "
        "SplitRule(test_fraction=0)); --max-actions 7 is refused"
    )


def test_validation_start_alone_names_where_the_test_start_came_from(tmp_path, capsys):
    """Probe 22: "--validation-start X must not be after --test-start Y", a --test-start never given (Y came from
    --test-fraction)."""
    log = tmp_path / "log.csv"
    log.write_text("".join(f"{user},{user},1,pv,{1511600000 + user * 3600}\n" for user in range(1, 30)))
    flags = ["prepare", "--preset", "taobao", "--input", str(log), "--output", str(tmp_path / "out"), "--quiet",
             "--validation-start", "1511699000"]  # fmt: skip
    assert main(flags) == 2
    err = error_of(capsys, "prepare")
    assert "--validation-start 1511699000 must not be after the test split's start, " in err
    assert "which was not given but comes from --test-fraction 0.142857" in err
    assert "Give --test-start SECONDS as well" in err and "or --test-fraction 0, which puts no session in test" in err
    assert main([*flags, "--test-fraction", "0"]) == 0


# -- damaged example rows in a data folder's split (a probe: a traceback in evaluate / generate; train trained the whole
# run, saved its model, then failed on the test split with "example 0 of the batch")


def damaged_copy(source: Path, target: Path, split: str, change) -> Path:
    """A copy of the data folder ``source`` at ``target`` whose ``split`` is ``change(split)`` (a ``datasets.Dataset``
    that must ``map`` with ``keep_in_memory=True``: no cache file beside the shared folder's); its example counts in
    a2gen_data.json still hold, so that only the rows are damaged."""
    import shutil

    from datasets import load_from_disk

    shutil.copytree(source, target)
    changed = change(load_from_disk(str(source / split)))
    shutil.rmtree(target / split)
    changed.save_to_disk(str(target / split), num_shards=1)
    return target


def without_column(name: str):
    return lambda split: split.remove_columns([name])


def wider_side_features(split):
    """As another data folder's split with one more side feature per item (its count fixed up)."""
    return split.map(lambda row: {"item_side_ids": [*row["item_side_ids"], 1],
                                  "history_item_side_ids": [[*ids, 1] for ids in row["history_item_side_ids"]]},
                     keep_in_memory=True)  # fmt: skip


def timed_row(split, low: int = 0, high: int | None = None) -> int:
    """The first row from ``low`` (before ``high``) whose target holds a time above 0 s (negated: a broken time)."""
    return next(row for row, seconds in enumerate(split["action_seconds"][:high]) if row >= low and max(seconds) > 0)


def negative_time_at(row: int):
    def change(split):
        return split.map(lambda example, index: {"action_seconds": [-seconds if index == row else seconds
                                                                    for seconds in example["action_seconds"]]},
                         with_indices=True, keep_in_memory=True)  # fmt: skip

    return change


def one_error_line(capsys, command: str) -> str:
    """The stderr of a refused command: exactly one error line, the last, no traceback."""
    err = error_of(capsys, command)
    assert sum(f"a2gen {command}: error:" in line for line in err.splitlines()) == 1, err
    return err.rstrip("\n").splitlines()[-1]


def test_evaluate_and_generate_name_the_split_row_of_a_damaged_split(tiny_checkpoint, tmp_path, capsys):
    """Before: a traceback (rc 1) ending in `ValueError: A2GenDataCollator: example 0 of the batch has action_seconds
    value -84300.0` (a KeyError with advice about transformers' Trainer for a missing column)."""
    from datasets import load_from_disk

    source, model = tiny_checkpoint / "data", str(tiny_checkpoint / "model")
    row = timed_row(load_from_disk(str(source / "test")))
    cases = {
        "nocol": (without_column("history_action_seconds"), "split 'test' of {data} has no column(s) "
                                                            "['history_action_seconds']; the model reads"),
        "negative": (negative_time_at(row), f"row {row} of split 'test' of {{data}} has action_seconds value -"),
        "width": (wider_side_features, "row 0 of split 'test' of {data} has 3 values in column 'item_side_ids' where 2"),
    }  # fmt: skip
    for name, (change, message) in cases.items():
        data = damaged_copy(source, tmp_path / name, "test", change)
        for command, flags in (("evaluate", ["--batch-size", "2"]), ("generate", ["--num-examples", "3"])):
            assert main([command, "--model", model, "--data", str(data), "--quiet", *flags]) == 2, (name, command)
            line = one_error_line(capsys, command)
            assert message.format(data=data) in line, line
            assert "Write the data folder again with a2gen prepare" in line and "of the batch" not in line, line
            assert "Trainer" not in line  # the Python API's advice, not a CLI user's


TRAIN = ["--cpu", "--quiet", "--max-steps", "1", "--batch-size", "16", "--eval-batch-size", "16", "--hidden-size",
         "16", "--id-embedding-size", "8"]  # fmt: skip


@pytest.mark.parametrize(
    ("split", "change", "message"),
    [
        ("test", without_column("history_action_seconds"),
         "split 'test' of {data} has no column(s) ['history_action_seconds'], which split 'train' holds"),
        ("validation", wider_side_features,
         "row 0 of split 'validation' of {data} has 3 values in column 'item_side_ids' where 2 are expected"),
    ],
    ids=["test-without-a-column", "validation-with-wider-side-features"],
)  # fmt: skip
def test_train_checks_every_split_before_the_first_step(simulated_data_dir, tmp_path, capsys, split, change, message):
    """Before: the run trained, saved its model and only then failed on the test split ("example 0 of the batch"; a
    missing column: a traceback)."""
    data = damaged_copy(simulated_data_dir, tmp_path / "data", split, change)
    output = tmp_path / "run"
    assert main(["train", "--data", str(data), "--output", str(output), *TRAIN]) == 2
    line = one_error_line(capsys, "train")
    assert message.format(data=data) in line and "Write the data folder again with a2gen prepare" in line, line
    assert "Nothing was trained" in line
    assert not (output / "model").exists()


def test_a_bad_value_deep_in_test_says_the_trained_model_was_saved(simulated_data_dir, tmp_path, capsys):
    """A value the first and last rows do not show (a negative time in the middle of test) is found when the trained
    model scores the test split: the message names the row and says how to score the saved model once the data is
    fixed (before: "example 4 of the batch", nothing about the model)."""
    from datasets import load_from_disk

    test = load_from_disk(str(simulated_data_dir / "test"))
    row = timed_row(test, low=17, high=len(test) - 8)  # in the second test batch, past the rows checked up front
    data = damaged_copy(simulated_data_dir, tmp_path / "data", "test", negative_time_at(row))
    output = tmp_path / "run"
    assert main(["train", "--data", str(data), "--output", str(output), *TRAIN]) == 2
    line = one_error_line(capsys, "train")
    model = output / "model"
    assert f"row {row} of split 'test' of {data} has action_seconds value -" in line, line
    assert f"The trained model was saved to {model}" in line
    assert f"`a2gen evaluate --model {model} --data {data} --json {output / 'eval_results.json'}`" in line
    assert (model / "config.json").is_file() and not (output / "eval_results.json").exists()
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--quiet", "--batch-size", "16"]) == 2
    assert f"row {row} of split 'test' of {data} has action_seconds value -" in one_error_line(capsys, "evaluate")
