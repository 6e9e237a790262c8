"""End-to-end workflows of the CLI on tiny simulated data: demo, compare, evaluate, generate."""

import json
import os
import stat

import pytest
import torch
from conftest import reset_accelerate_state

from a2gen_hf import AutoModelForActionGeneration
from a2gen_hf.cli import main
from a2gen_hf.data.simulator import SimulatorConfig, simulate
from a2gen_hf.training.statistics import MIN_CLASS_GROUPS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sim")
    config = SimulatorConfig(
        num_examples=600, examples_per_user=20, history_length=5, num_items=100,
        item_buckets=1024, user_buckets=256, side_feature_buckets=64, seed=3,
    )
    simulate(config, progress=False, cache_dir=str(folder / "cache")).save(folder / "data")
    return folder / "data"


def test_demo_runs_the_whole_story(tmp_path, capsys):
    output = tmp_path / "demo"
    previous = os.umask(0o022)
    try:
        assert main(["demo", "--output", str(output), "--num-examples", "600", "--epochs", "1"]) == 0
    finally:
        os.umask(previous)
    # the weights as readable as the folder's other files (safetensors writes them 0600)
    assert stat.S_IMODE((output / "checkpoint" / "model.safetensors").stat().st_mode) == 0o644
    printed = capsys.readouterr().out
    assert "AUC a2gen-iag" in printed and "AUC mmoe" in printed and "AUC oracle" in printed
    assert printed.count("    greedy       start@0.0s") == 3 and printed.count("    actual       start@0.0s") == 3
    assert printed.count("    top actions  ") == 3 and printed.count("    sampled      start@0.0s") == 3
    lines = printed.splitlines()
    samples = [index for index, line in enumerate(lines) if line.startswith("    sampled      ")]
    assert all(lines[index + 1].lstrip().startswith("start@0.0s") for index in samples)  # three samples each
    # The tables follow the simulated catalogue (600 sessions: 30 users, 2,000 videos -> 32,768 item rows).
    summary = json.loads((output / "data" / "a2gen_data.json").read_text())
    assert summary["buckets"]["item_buckets"] == {"count": 32768, "from": "data"}
    assert (output / "checkpoint" / "model.safetensors").stat().st_size < 6_000_000  # 32,768 x 32 floats of items
    assert (output / "checkpoint" / "tokenizer_config.json").exists()
    assert (output / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(output.glob(".a2gen-simulate-cache-*"))  # datasets' cache of the rows: removed once saved
    results = json.loads((output / "demo_results.json").read_text())
    assert set(results) == {"a2gen-iag", "mmoe"}
    assert 0.0 <= results["a2gen-iag"]["auc"]["like"] <= 1.0
    # The README's command runs again in the same folder: the demo replaces its own runs (marked as its own; the
    # unmarked runs of a demo older than the marker, with its demo_results.json beside them, count as its own too).
    for name in ("a2gen-iag", "mmoe"):  # as a demo older than the marker left them
        (output / "runs" / name / ".a2gen-demo-run").unlink()
    assert main(["demo", "--output", str(output), "--num-examples", "600", "--epochs", "1", "--quiet"]) == 0
    assert (output / "runs" / "mmoe" / ".a2gen-demo-run").is_file()
    # An `a2gen train` run of one's own at a run's name is refused before any work (before: deleted with its model).
    foreign = tmp_path / "mine"
    (foreign / "runs" / "mmoe" / "model").mkdir(parents=True)
    (foreign / "runs" / "mmoe" / "training_log.json").write_text("{}")
    assert main(["demo", "--output", str(foreign), "--num-examples", "600", "--epochs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{foreign / 'runs' / 'mmoe'} holds files that `a2gen demo` did not write" in err
    assert (foreign / "runs" / "mmoe" / "training_log.json").is_file() and not (foreign / "data").exists()


def test_compare_writes_the_tables_with_baselines_and_bootstrap(data_dir, tmp_path, capsys):
    output = tmp_path / "compare"
    status = main([
        "compare", "--data", str(data_dir), "--output", str(output), "--models", "a2gen-iag,mmoe-fair,a2gen-iag:notime",
        "--simple", "propensity,median-time", "--seeds", "2", "--epochs", "1", "--bootstrap-resamples", "50",
    ])
    assert status == 0
    report = json.loads((output / "results.json").read_text())
    assert set(report["models"]) == {"a2gen-iag", "mmoe-fair", "a2gen-iag:notime", "propensity", "median-time"}
    assert report["models"]["a2gen-iag"]["auc"]["like"]["std"] >= 0  # two seeds give a spread
    assert report["models"]["median-time"]["mean_auc"]["mean"] == pytest.approx(0.5)
    assert set(report["bootstrap"]) == {"mmoe-fair", "a2gen-iag:notime", "propensity", "median-time"}
    for row in report["bootstrap"]["mmoe-fair"].values():
        assert row["low"] <= row["difference"] <= row["high"]
        few = min(row.get("positive_users", 99), row.get("negative_users", 99)) < MIN_CLASS_GROUPS  # 2 follows, 2 users
        assert row["verdict"].startswith("no verdict: ") if few else (
            row["verdict"] in ("A2Gen-IAG better", "MMoE fairly fed better", "no significant difference"))
    table = (output / "results.md").read_text()
    assert "GAUC like" in table and "NDCG@10 like" in table and "LogLoss like" in table
    assert "| A2Gen-IAG |" in table and "ablation: notime" in table and "positives" in table
    assert "Networks trained with num_epochs=1, batch_size=256" in table and "use_id_embeddings=True" in table
    assert report["settings"]["training"]["lr_schedule"] == "constant"
    assert (output / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert "Paired bootstrap" in capsys.readouterr().out


def test_compare_rejects_unknown_models(data_dir, tmp_path, capsys):
    assert main(["compare", "--data", str(data_dir), "--output", str(tmp_path), "--models", "gpt"]) == 2
    assert "--models 'gpt' is not a network; choose from a2gen-iag" in capsys.readouterr().err


def test_train_then_evaluate_and_generate(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(data_dir), "--output", str(run), "--model", "a2gen-eag", "--epochs", "1"]) == 0
    capsys.readouterr()
    json_path = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(run / "model"), "--data", str(data_dir), "--json", str(json_path)]) == 0
    table = capsys.readouterr().out
    assert "mean AUC" in table and "AUC oracle" in table
    metrics = json.loads(json_path.read_text())
    assert set(metrics["auc"]) == {"like", "follow", "forward", "comment"}
    assert main(["generate", "--model", str(run / "model"), "--data", str(data_dir), "--num-examples", "2",
                 "--num-beams", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("predicted: start@0.0s") == 2 and printed.count("actual:    start@0.0s") == 2
    assert "fewer than --num-examples" not in printed
    assert main(["generate", "--model", str(run / "model"), "--data", str(data_dir), "--num-examples", "100000"]) == 0
    captured = capsys.readouterr()  # a message, so on stderr (before: stdout, also with --quiet)
    assert "examples, fewer than --num-examples 100000: all of them are shown." in captured.err
    assert "fewer than" not in captured.out
    assert main(["generate", "--model", str(run / "model"), "--data", str(data_dir), "--num-examples", "100000",
                 "--quiet"]) == 0
    assert "fewer than" not in capsys.readouterr().err
    assert main(["evaluate", "--model", str(run / "model"), "--data", str(data_dir), "--json", ""]) == 2
    assert "--json '' names no file" in capsys.readouterr().err  # before: exit 0, nothing written
    assert main(["evaluate", "--model", str(run / "model"), "--data", str(json_path)]) == 2
    assert f"Data folder {json_path} is a file, not a folder" in capsys.readouterr().err


def test_evaluate_names_a_missing_checkpoint(data_dir, tmp_path, capsys):
    assert main(["evaluate", "--model", str(tmp_path / "nothing"), "--data", str(data_dir)]) == 2
    assert "a2gen evaluate: error:" in capsys.readouterr().err


def test_train_with_the_sparse_log_options_saves_and_evaluates_them(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--data", str(data_dir), "--output", str(run), "--epochs", "1", "--hidden-size", "16",
            "--count-features", "--occurrence-head", "--rare-id-threshold", "2", "--no-progress"]
    assert main(argv) == 0
    model = AutoModelForActionGeneration.from_pretrained(run / "model")
    config = model.config
    assert config.history_count_features and config.occurrence_head and config.rare_id_threshold == 2
    assert model.a2gen.extra_features.count_features.standardizer.count > 0  # statistics of the training examples were saved
    rows = model.a2gen.features.item_rows
    assert (rows >= config.item_buckets).any() and (rows == torch.arange(len(rows), dtype=rows.dtype)).any()
    capsys.readouterr()
    assert main(["evaluate", "--model", str(run / "model"), "--data", str(data_dir)]) == 0
    assert "AUC" in capsys.readouterr().out


def test_format_top_actions_orders_the_inner_actions_by_probability():
    from a2gen_hf import A2GenActionTokenizer
    from a2gen_hf.demo import format_top_actions

    tokenizer = A2GenActionTokenizer()  # pad, start, like, follow, forward, comment, leave
    probabilities = torch.tensor([0.0, 1.0, 0.2, 0.05, 0.5, 0.1, 1.0])
    seconds = torch.tensor([0.0, 0.0, 3.0, 4.0, 5.5, 6.0, 12.25])
    assert format_top_actions(tokenizer, probabilities, seconds, top=3) == (
        "forward 50.0% @ 5.5s, like 20.0% @ 3.0s, comment 10.0% @ 6.0s; leave @ 12.2s"
    )


def test_rows_in_a_list_are_reshuffled_per_epoch_like_a_dataset():
    from accelerate import Accelerator

    from a2gen_hf.training.loop import TrainingSettings, _epoch_loader

    rows = list(range(10))
    settings = TrainingSettings(output_dir="unused", batch_size=10, seed=4)
    reset_accelerate_state()  # a state an earlier test built on a GPU would refuse cpu=True
    accelerator = Accelerator(cpu=True)

    def order(epoch):
        return next(iter(_epoch_loader(rows, lambda batch: batch, settings, epoch, accelerator)))

    assert sorted(order(0)) == rows and order(0) == order(0) and order(0) != order(1)


def test_a_run_moved_in_beside_marked_runs_is_never_claimed_as_an_older_versions(tmp_path):
    """(review) The demo marked any unmarked run holding a run's files as an older demo's whenever demo_results.json
    was there, so a user's `a2gen train` run put at runs/a2gen-iag beside the demo's marked runs/mmoe was marked and
    then deleted. Older runs are claimed only where no run of the folder is marked (a version that marks its runs
    marks them all); compare follows the same rule (one home, claim_marked_runs)."""
    from a2gen_hf import demo
    from a2gen_hf.training import compare

    output = tmp_path / "demo"
    for name in demo.DEMO_MODELS:
        (output / "runs" / name).mkdir(parents=True)
        (output / "runs" / name / "training_log.json").write_text("{}")
    (output / demo.DEMO_RESULTS).write_text("{}")
    demo._check_and_claim_run_folders(output)  # a demo older than the marker: both claimed
    assert all((output / "runs" / name / demo.DEMO_RUN_MARKER).is_file() for name in demo.DEMO_MODELS)
    (output / "runs" / "a2gen-iag" / demo.DEMO_RUN_MARKER).unlink()  # the user's own run at that name
    with pytest.raises(ValueError, match=r"holds files that `a2gen demo` did not write"):
        demo._check_and_claim_run_folders(output)
    assert not (output / "runs" / "a2gen-iag" / demo.DEMO_RUN_MARKER).exists()

    output = tmp_path / "compare"
    for name in ("mmoe-seed0", "mmoe-seed1"):
        (output / "runs" / name).mkdir(parents=True)
        (output / "runs" / name / "training_log.json").write_text("{}")
    (output / "results.json").write_text(json.dumps({"models": {"mmoe": {}}, "seeds": 2}))
    (output / "runs" / "mmoe-seed1" / compare.RUN_MARKER).touch()  # this version's run: marked
    with pytest.raises(ValueError, match=r"holds files that `a2gen compare` did not write"):
        compare._check_and_claim_run_folders(output, ["mmoe-seed0", "mmoe-seed1"])
    assert not (output / "runs" / "mmoe-seed0" / compare.RUN_MARKER).exists()
