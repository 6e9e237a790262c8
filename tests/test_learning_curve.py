"""benchmarks/learning_curve.py end to end on a tiny simulation: every model at every size lands in the JSON, the
Markdown and the plot, runs are resumed rather than retrained, and bad arguments are refused by name."""

import importlib.util
import json
from pathlib import Path

import pytest

from a2gen_hf.data.simulator import SimulatorConfig, simulate_to_parquet

ROOT = Path(__file__).resolve().parents[1]
TINY = '{"hidden_size": 8, "id_embedding_size": 8, "action_embedding_size": 8, "time_embedding_size": 8, "num_attention_heads": 2}'
MODELS = ["a2gen-iag", "a2gen-eag", "mmoe-fair", "logreg", "a2gen-iag:notime"]


def load_script():
    spec = importlib.util.spec_from_file_location("learning_curve", ROOT / "benchmarks" / "learning_curve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("curve") / "sim"
    config = SimulatorConfig(
        num_examples=600, examples_per_user=20, history_length=5, num_items=100,
        item_buckets=1024, user_buckets=256, side_feature_buckets=64, seed=3,
    )
    simulate_to_parquet(config, folder, progress=False)
    return folder


def arguments(data_dir, output, sizes="200,400"):
    return [
        "--data", str(data_dir), "--output", str(output), "--sizes", sizes, "--seeds", "0", "--threads", "1",
        "--max-epochs", "1", "--bootstrap-resamples", "30", "--overrides", TINY,
    ]


def test_learning_curve_writes_every_model_and_size_and_resumes(data_dir, tmp_path, capsys):
    script = load_script()
    output = tmp_path / "curve"
    report = script.main(arguments(data_dir, output))
    printed = capsys.readouterr().out
    assert "n200/a2gen-iag seed 0:" in printed and "n400/a2gen-iag-notime seed 0:" in printed and "load" in printed

    saved = json.loads((output / "learning_curve.json").read_text())
    assert saved["sizes"] == [200, 400] and saved["models"] == MODELS
    actions = ["like", "follow", "forward", "comment"]
    assert saved["actions"] == actions
    assert 0.5 < saved["oracle"]["mean_auc"] <= 1.0 and set(saved["oracle"]["auc"]) == set(actions)
    for model in MODELS:
        for size in ("200", "400"):
            point = saved["curves"][model]["points"][size]
            assert 0.0 <= point["test_mean_auc"]["mean"] <= 1.0
            assert set(point["share_of_oracle_lift"]) == {*actions, "mean"}
            if model != "a2gen-iag":
                for row in point["a2gen_iag_minus_model"].values():
                    assert row["low"] <= row["difference"] <= row["high"]
            if model != "logreg":  # networks record their run: seconds, steps, load
                assert point["runs"][0]["steps"] >= 1 and point["runs"][0]["seconds"] > 0
                assert 0.0 <= point["train_mean_auc"]["mean"] <= 1.0  # the selected weights on their own examples
    # The timing ablation's drop is A2Gen-IAG minus the ablation: the mean AUCs say which sign it must have.
    drop = saved["notime_drop"]["400"]
    full, ablated = (saved["curves"][m]["points"]["400"]["test_auc"]["like"]["mean"] for m in ("a2gen-iag", "a2gen-iag:notime"))
    assert drop["like"]["difference"] == pytest.approx(full - ablated)
    assert report["curves"].keys() == saved["curves"].keys()

    table = (output / "learning_curve.md").read_text()
    for label in ("A2Gen-IAG", "A2Gen-EAG", "MMoE, fairly fed", "logistic regression on counts", "A2Gen-IAG, times zeroed"):
        assert f"| {label} |" in table or f"| {label} " in table
    assert "| 200 |" in table and "| 400 |" in table and "oracle" in table and "Drop from zeroing" in table
    assert "Generalisation gap" in table
    assert "resampling users" in table and saved["settings"]["bootstrap_unit"] == "users"
    assert (output / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(output.glob(".*tmp*"))  # atomic writes leave no temporary files

    # A second call trains nothing: every run's predictions are on disk.
    script.main(arguments(data_dir, output))
    assert "done already" in capsys.readouterr().out


def test_learning_curve_refuses_sizes_beyond_the_train_split_and_bad_arguments(data_dir, tmp_path, capsys):
    script = load_script()
    # a usage error naming the flag, not a traceback (a probe: a ValueError from nested_subsets)
    with pytest.raises(SystemExit, match=r"learning_curve\.py: error: --sizes \[100000\] exceed the .* training examples"):
        script.main(arguments(data_dir, tmp_path, sizes="200,100000"))
    with pytest.raises(SystemExit):
        script.main([*arguments(data_dir, tmp_path), "--models", "mmoe-fair"])
    assert "must include a2gen-iag" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main([*arguments(data_dir, tmp_path)[:-2], "--overrides", "[1]"])
    assert "JSON object" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the warm start needs the moment table in the overrides
        script.main([*arguments(data_dir, tmp_path), "--moment-warm-start", "frozen"])
    assert "--event-moment-source table" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # checked before any data is read
        script.main([*arguments(data_dir, tmp_path), "--ema-decay", "1.5"])
    assert "argument --ema-decay: must be a decay in (0, 1), e.g. 0.999, got 1.5" in capsys.readouterr().err


def test_learning_curve_warms_the_moment_table(data_dir, tmp_path):
    import json

    script = load_script()
    overrides = {**json.loads(TINY), "history_event_item_moments": 16, "history_event_moment_source": "table"}
    argv = [*arguments(data_dir, tmp_path, sizes="400")[:-2], "--overrides", json.dumps(overrides), "--models",
            "a2gen-iag", "--moment-warm-start", "frozen", "--in-sample-examples", "0"]
    report = script.main(argv)
    assert report["settings"]["moment_warm_start"] == "frozen"
    summary = json.loads((tmp_path / "n400" / "a2gen-iag" / "seed0" / "summary.json").read_text())
    assert summary["spec"]["moment_warm_start"] == "frozen"
    from safetensors.torch import load_file

    table = load_file(str(tmp_path / "n400" / "a2gen-iag" / "seed0" / "run" / "best_model.safetensors"))
    norms = table["a2gen.features.item_moments.table.weight"].norm(dim=1)
    # Warmed and kept fixed: every row is zero or a unit vector times the warm start's scale (3).
    assert (norms > 0).sum() > 0 and bool(((norms == 0) | ((norms - 3).abs() < 1e-4)).all())
    # A second phase from those weights: they are evaluated first (step 0, the first run's selected validation AUC),
    # then trained.
    second = tmp_path / "phase2"
    argv = [*arguments(data_dir, second, sizes="400")[:-2], "--overrides", json.dumps(overrides), "--models",
            "a2gen-iag", "--init-from", str(tmp_path), "--in-sample-examples", "0"]
    report = script.main(argv)
    assert report["settings"]["init_from"] == str(tmp_path)
    first_best = max(entry["validation_mean_auc"] for entry in summary["evaluations"])
    summary = json.loads((second / "n400" / "a2gen-iag" / "seed0" / "summary.json").read_text())
    assert summary["evaluations"][0]["step"] == 0
    assert summary["evaluations"][0]["validation_mean_auc"] == pytest.approx(first_best, abs=1e-6)
    assert summary["evaluations"][-1]["validation_mean_auc"] != summary["evaluations"][0]["validation_mean_auc"]
    with pytest.raises(SystemExit):
        script.main([*argv, "--moment-warm-start", "frozen"])
    with pytest.raises(SystemExit):
        script.main([*argv[:-4], "--init-from", str(tmp_path / "nowhere")])


def test_nested_subsets_keep_the_first_validation_and_test_rows(data_dir):
    script = load_script()
    dataset, _, _ = script.load_or_simulate(data_dir, None, 0)
    subsets = script.nested_subsets(dataset, [100, 300], subset_seed=0, max_validation=20, max_test=25)
    small, large = subsets[100], subsets[300]
    assert len(small["test"]) == len(large["test"]) == 25 and len(small["validation"]) == 20
    assert small["test"]["session_start"] == dataset["test"]["session_start"][:25]  # the first rows, in order
    assert set(small["train"]["session_start"]) <= set(large["train"]["session_start"])  # nested train subsets
    uncapped = script.nested_subsets(dataset, [100], subset_seed=0, max_validation=None)[100]
    assert len(uncapped["test"]) == len(dataset["test"])


def test_train_models_trains_only_those_and_reports_every_saved_run(data_dir, tmp_path, capsys):
    script = load_script()
    output = tmp_path / "shared"
    base = [*arguments(data_dir, output, sizes="200"), "--models", "a2gen-iag,logreg", "--max-test-examples", "40",
            "--in-sample-examples", "0"]
    script.main([*base, "--train-models", "logreg"])
    assert (output / "n200" / "logreg" / "seed0" / "predictions.npz").exists()
    assert not (output / "n200" / "a2gen-iag").exists()  # left to the other process
    report = script.main([*base, "--train-models", "a2gen-iag"])
    assert report["num_test_examples"] == 40 and report["settings"]["max_test_examples"] == 40
    assert "a2gen_iag_minus_model" in report["curves"]["logreg"]["points"]["200"]  # both runs in one report
    with pytest.raises(SystemExit):
        script.main([*base, "--train-models", "mmoe-fair"])
    assert "--train-models" in capsys.readouterr().err


def test_saved_runs_trained_otherwise_are_not_resumed_or_reported_under_this_commands_settings(tmp_path):
    """A resume skips finished runs, and the report states one set of training settings: runs trained with other
    settings are refused, naming the setting (before: batch 256 runs reported as batch 64)."""
    module = load_script()
    args = module.build_parser().parse_args(["--data", "x", "--output", str(tmp_path), "--batch-size", "64"])
    run = tmp_path / "n100" / "a2gen-iag" / "seed0"
    run.mkdir(parents=True)
    saved = module.training_spec(module.REFERENCE, args)["training"]
    (run / "summary.json").write_text(json.dumps({"spec": {"training": {**saved, "eval_before_training": True}}}))
    assert module.saved_training_conflict(tmp_path, args) is None  # the same settings (and --init-from's flag)
    (run / "summary.json").write_text(json.dumps({"spec": {"training": {**saved, "batch_size": 256}}}))
    conflict = module.saved_training_conflict(tmp_path, args)
    assert "batch_size 256 (this command: 64)" in conflict and "a new --output" in conflict


def test_a_verdict_against_the_timing_ablation_names_it():
    """Before: the label "A2Gen-IAG, times zeroed" was cut at its comma, so an interval below 0 read "A2Gen-IAG better"
    where the model without times was the better one (six verdicts of the stored 10k curve)."""
    learning_curve = load_script()
    row = {"difference": 0.035, "low": 0.016, "high": 0.054, "p_value": 0.001}  # the ablation minus A2Gen-IAG
    assert learning_curve._flipped(row, "a2gen-iag:notime")["verdict"] == "A2Gen-IAG, times zeroed better"
    assert learning_curve._flipped({**row, "low": -0.01}, "logreg")["verdict"] == "no significant difference"
    # From a probe: a row over users whose positives 6 users hold got "A2Gen-IAG better"; `a2gen compare` gives none.
    few = learning_curve._flipped({**row, "positive_users": 6, "negative_users": 40}, "logreg")
    assert few["verdict"].startswith("no verdict: 6 user(s) hold its positives") and few["positive_users"] == 6
