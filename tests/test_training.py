"""Training: data folder -> model config, `a2gen train`, checkpoints, exact resume after SIGKILL, 2-process DDP."""

import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from conftest import accelerate_two_processes, reset_accelerate_state
from safetensors.torch import load_file

from a2gen_hf import A2GenConfigError, AutoModelForActionGeneration, MMoEConfig
from a2gen_hf.cli import main
from a2gen_hf.data import A2GenDataCollator
from a2gen_hf.training.data_setup import (
    MODEL_CHOICES,
    create_model,
    load_data_dir,
    model_config_from_tokenizer,
)
from a2gen_hf.training.loop import (
    CHECKPOINT_MANIFEST,
    TrainingSettings,
    latest_checkpoint,
    make_accelerator,
    shard_for_process,
    train,
    train_from_data_dir,
)

REPO = Path(__file__).resolve().parents[1]
TINY = {"hidden_size": 16, "id_embedding_size": 16}
TINY_FLAGS = ["--hidden-size", "16", "--id-embedding-size", "16", "--no-progress"]


@pytest.fixture(scope="module", autouse=True)
def offline_caches(tmp_path_factory):
    cache = tmp_path_factory.mktemp("hf_home")
    saved = {name: os.environ.get(name) for name in ("HF_HOME", "HF_DATASETS_CACHE", "HF_HUB_OFFLINE")}
    os.environ.update(HF_HOME=str(cache), HF_DATASETS_CACHE=str(cache / "datasets"), HF_HUB_OFFLINE="1")
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and the child processes use one too, so results compare bitwise)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def data_dir(simulated_data_dir, offline_caches):
    return simulated_data_dir


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}


def cpu_ddp_env() -> dict[str, str]:
    """`accelerate launch --multi_gpu` on CPU processes (gloo), also on a machine with a GPU: there Accelerate's
    barrier would name a CUDA device for the gloo group, so the GPU is hidden from the processes."""
    return {**child_env(), "ACCELERATE_USE_CPU": "1", "CUDA_VISIBLE_DEVICES": ""}


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model" / "model.safetensors"))


def log_of(folder: Path) -> list[dict]:
    return json.loads((folder / "training_log.json").read_text())["log_history"]


def trained_log(data_dir, output: Path, *flags: str) -> dict:
    """``a2gen train`` of the tiny model on ``data_dir`` into ``output`` with ``flags``; its training_log.json."""
    assert main(["train", "--data", str(data_dir), "--output", str(output), *flags, *TINY_FLAGS]) == 0
    return json.loads((output / "training_log.json").read_text())


# ---------------------------------------------------------------------------------------------- data folder


def test_load_data_dir_and_model_config(data_dir):
    dataset, tokenizer, metadata = load_data_dir(data_dir)
    assert set(dataset) == {"train", "validation", "test"} and metadata["source"] == "simulator"
    config = model_config_from_tokenizer(tokenizer, dataset, generator="eag", hidden_size=16)
    assert config.action_names == tokenizer.action_names and config.generator_type == "eag"
    assert (config.item_buckets, config.user_buckets, config.side_feature_buckets) == (4096, 1024, 256)
    assert (config.time_log_mean, config.time_log_std) == (tokenizer.time_log_mean, tokenizer.time_log_std)
    assert config.num_item_side_features == len(dataset["train"][0]["item_side_ids"]) == 2
    assert config.max_history_items == 5  # the longest history in the data
    longest_events = max(len(events) for row in dataset["train"] for events in row["history_action_ids"])
    assert config.max_events_per_item == min(longest_events, tokenizer.max_actions + 1)
    assert config.hidden_size == 16

    # A streaming split is not scanned: side features from its first row, caps at their defaults.
    streamed = model_config_from_tokenizer(tokenizer, dataset["train"].to_iterable_dataset())
    assert streamed.num_item_side_features == 2 and streamed.max_history_items == 100

    baseline = model_config_from_tokenizer(tokenizer, dataset, config_class=MMoEConfig, num_experts=2)
    assert isinstance(baseline, MMoEConfig) and baseline.num_experts == 2
    for name in MODEL_CHOICES:
        model = create_model(name, tokenizer, dataset["validation"], **TINY)
        batch = A2GenDataCollator.from_config(model.config, tokenizer)(dataset["validation"].select(range(4)))
        assert torch.isfinite(model(**batch).loss)


@pytest.mark.parametrize("name", ["a2gen-iag", "mmoe-fair"])
def test_create_model_shares_rows_among_rare_ids(data_dir, name):
    from collections import Counter

    dataset, tokenizer, _ = load_data_dir(data_dir)
    model = create_model(name, tokenizer, dataset, rare_id_threshold=3, rare_id_buckets=8, **TINY)
    features = model.base_model.features if name.startswith("a2gen") else model.inputs.features
    targets = Counter(dataset["train"]["item_id"])
    frequent = [item for item, count in targets.items() if count >= 3]
    rare = [item for item, count in targets.items() if count < 3]
    assert frequent and rare
    rows = features.item_rows
    assert all(rows[item] == item for item in frequent)
    assert all(rows[item] == tokenizer.item_buckets + item % 8 for item in rare)
    users = Counter(dataset["train"]["user_id"])
    assert all((features.user_rows[user] == user) == (count >= 3) for user, count in users.items())
    with pytest.raises(TypeError, match="needs the ids of an on-disk train split"):
        create_model(name, tokenizer, dataset["train"].to_iterable_dataset(), rare_id_threshold=3, **TINY)


@pytest.mark.parametrize("name", ["a2gen-iag", "ple-fair"])
def test_create_model_fits_target_popularity_on_train(data_dir, name):
    dataset, tokenizer, _ = load_data_dir(data_dir)
    model = create_model(name, tokenizer, dataset, target_popularity_features=True, **TINY)
    extra = model.base_model.extra_features if name.startswith("a2gen") else model.inputs.extra_features
    popularity = extra.popularity_features
    train = dataset["train"]
    assert popularity.item_totals.sum() == popularity.category_totals.sum() == len(train)
    item = train[0]["item_id"]
    assert popularity.item_totals[item] == sum(1 for row in train["item_id"] if row == item)
    like = tokenizer.action_names.index("like") + 1
    likes = sum(like in actions[1:] for actions in train["action_ids"])
    assert popularity.category_counts[:, like].sum() == likes


@pytest.mark.parametrize("name", ["a2gen-iag", "mmoe-fair"])
def test_create_model_keys_target_popularity_by_raw_item_id(data_dir, name):
    """popularity_keys='raw_ids': one row per distinct raw train item (the config records how many), counted as the
    regression counts it; the collator then gives the model the keys, and a split without 'item' is refused."""
    from a2gen_hf.data.collator import A2GenDataCollator

    dataset, tokenizer, _ = load_data_dir(data_dir)
    model = create_model(name, tokenizer, dataset, target_popularity_features=True, popularity_keys="raw_ids", **TINY)
    extra = model.base_model.extra_features if name.startswith("a2gen") else model.inputs.extra_features
    popularity = extra.popularity_features
    train = dataset["train"]
    raw_items = train["item"]
    assert model.config.popularity_table_size == len(set(raw_items)) == len(popularity.item_totals)
    assert popularity.item_totals.sum() == len(train)
    row = int(torch.searchsorted(popularity.item_table_keys, torch.tensor(tokenizer.item_keys([raw_items[0]]))))
    assert popularity.item_totals[row] == raw_items.count(raw_items[0])
    batch = A2GenDataCollator.from_config(model.config, tokenizer)([dataset["test"][index] for index in range(4)])
    assert batch["item_keys"].tolist() == tokenizer.item_keys(dataset["test"]["item"][:4]).tolist()
    model.eval()
    model.predict_actions(**{key: value for key, value in batch.items() if not key.startswith("label")})
    with pytest.raises(ValueError, match="no 'item' column"):
        create_model(name, tokenizer, train.remove_columns("item"), target_popularity_features=True,
                     popularity_keys="raw_ids", **TINY)


def test_data_folder_and_config_errors(data_dir, tmp_path):
    dataset, tokenizer, _ = load_data_dir(data_dir)
    with pytest.raises(ValueError, match=r"no field\(s\) \['hiden_size'\]"):
        model_config_from_tokenizer(tokenizer, dataset, hiden_size=8)
    with pytest.raises(ValueError, match=r"\['item_buckets'\] are read from the data"):
        model_config_from_tokenizer(tokenizer, dataset, item_buckets=10)
    with pytest.raises(A2GenConfigError, match="divisible"):
        model_config_from_tokenizer(tokenizer, dataset, hidden_size=10)
    with pytest.raises(ValueError, match="Unknown model 'bert'"):
        create_model("bert", tokenizer, dataset)
    # What the model name fixes: an agreeing override passes, a contradicting one is refused (before: an IAG model
    # trained under generator="eag", a bare TypeError for generator_type).
    assert create_model("a2gen-eag", tokenizer, dataset["validation"], generator="eag", **TINY).config.generator_type == "eag"
    for override, message in (
        ({"generator": "eag"}, r"model_name='a2gen-iag' fixes generator_type='iag', but the overrides give "
                               r"generator='eag': use model_name='a2gen-eag' instead"),
        ({"generator_type": "eag"}, r"give generator_type='eag': use model_name='a2gen-eag'"),
    ):
        with pytest.raises(ValueError, match=message):
            create_model("a2gen-iag", tokenizer, dataset, **override, **TINY)
    with pytest.raises(ValueError, match=r"fixes history_input='items'.*use model_name='mmoe-fair' instead"):
        create_model("mmoe", tokenizer, dataset, history_input="items_and_events", **TINY)
    with pytest.raises(ValueError, match=r"fixes history_input='items'.*use model_name='ple-fair' instead"):
        create_model("ple", tokenizer, dataset, history_input="items_and_events", **TINY)  # its own family's
    with pytest.raises(TypeError, match=r"not dict; wrap a dict of splits as datasets.DatasetDict\(splits\)"):
        create_model("a2gen-iag", tokenizer, dict(dataset))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_data_dir(tmp_path / "missing")
    (tmp_path / "tokenizer").mkdir()
    with pytest.raises(FileNotFoundError, match="has no a2gen_data.json"):
        load_data_dir(tmp_path)
    (tmp_path / "a2gen_data.json").write_text('{"source": "x",\n oops}')
    with pytest.raises(ValueError, match=r"a2gen_data.json, line 2, column 2"):
        load_data_dir(tmp_path)
    for text, kind in (("null", "NoneType"), ("5", "int"), ("[]", "list")):  # before: a TypeError deep inside
        (tmp_path / "a2gen_data.json").write_text(text)
        with pytest.raises(ValueError, match=rf"a2gen_data.json holds a JSON {kind}, not an object"):
            load_data_dir(tmp_path)
    (tmp_path / "a2gen_data.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(ValueError, match=r"a2gen_data.json: not UTF-8 text"):
        load_data_dir(tmp_path)
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(data_dir, damaged)
    arrow = sorted((damaged / "test").glob("*.arrow"))[0]
    arrow.write_bytes(arrow.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"the examples of split\(s\) \['test'\] are missing or damaged"):
        load_data_dir(damaged)
    shutil.rmtree(damaged / "validation")
    with pytest.raises(ValueError, match=r"the examples of split\(s\) \['validation', 'test'\] are missing"):
        load_data_dir(damaged)


# ----------------------------------------------------------------------------------------------- checkpoints


def fake_checkpoint(folder: Path, files: dict[str, bytes], manifest: dict[str, int] | None) -> Path:
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    if manifest is not None:
        (folder / CHECKPOINT_MANIFEST).write_text(json.dumps({"step": 0, "resume_key": {}, "files": manifest}))
    return folder


def test_latest_checkpoint_never_picks_a_partial_one(tmp_path):
    complete = fake_checkpoint(tmp_path / "checkpoint-3", {"model.safetensors": b"abcd"}, {"model.safetensors": 4})
    fake_checkpoint(tmp_path / ".tmp-checkpoint-9", {"model.safetensors": b"abcd"}, {"model.safetensors": 4})
    fake_checkpoint(tmp_path / "checkpoint-8", {"model.safetensors": b"abcd"}, None)  # no manifest
    fake_checkpoint(tmp_path / "checkpoint-7", {"model.safetensors": b"ab"}, {"model.safetensors": 4})  # truncated
    fake_checkpoint(tmp_path / "checkpoint-6", {}, {"optimizer.bin": 10})  # a listed file is missing
    fake_checkpoint(tmp_path / "checkpoint-x", {}, {})
    assert latest_checkpoint(tmp_path) == complete
    assert latest_checkpoint(tmp_path / "nothing-here") is None


def test_resuming_names_the_checkpoints_it_skips_and_refuses_when_none_is_left(data_dir, tmp_path, capsys, caplog):
    """Damaged manifests (valid JSON, not a manifest): with the newest one damaged the run resumes from the one
    before and warns naming it; with all damaged --resume is refused (before: an INFO line, a start from step 0 and
    the checkpoints rotated away)."""
    argv = ["train", "--data", str(data_dir), "--output", str(tmp_path / "run"), "--batch-size", "32",
            "--checkpoint-every", "2", "--keep-checkpoints", "0", *TINY_FLAGS]  # fmt: skip
    assert main([*argv, "--max-steps", "4"]) == 0
    (tmp_path / "run" / "checkpoint-4" / CHECKPOINT_MANIFEST).write_text("5")
    with caplog.at_level(logging.WARNING, logger="a2gen_hf.training.checkpointing"):
        assert main([*argv, "--max-steps", "4", "--resume"]) == 0
    assert "Resuming from checkpoint-2, not from the newer incomplete ones (checkpoint-4: its a2gen_checkpoint" in caplog.text
    for step in (2, 4):
        (tmp_path / "run" / f"checkpoint-{step}" / CHECKPOINT_MANIFEST).write_text("5")
    assert main([*argv, "--max-steps", "6", "--resume"]) == 2
    error = capsys.readouterr().err
    assert "holds checkpoints but none is complete (checkpoint-2: its a2gen_checkpoint.json is missing or unreadable" in error
    assert sorted(path.name for path in (tmp_path / "run").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]


def test_a_resume_that_replans_a_decaying_schedule_says_so(data_dir, tmp_path, caplog):
    """More steps on resume under a linear schedule moved the learning rate (x0.25 -> x0.625 here) without a word;
    a constant schedule and a resume with the same length stay quiet."""
    for schedule, warned in (("linear", True), ("constant", False)):
        argv = ["train", "--data", str(data_dir), "--output", str(tmp_path / schedule), "--batch-size", "32",
                "--checkpoint-every", "3", "--lr-schedule", schedule, *TINY_FLAGS]  # fmt: skip
        assert main([*argv, "--max-steps", "4"]) == 0
        shutil.rmtree(tmp_path / schedule / "model")
        (tmp_path / schedule / "training_log.json").unlink(missing_ok=True)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="a2gen_hf.training.loop"):
            assert main([*argv, "--max-steps", "8", "--resume"]) == 0
        assert ("Resumed at step 3 with 8 planned steps instead of the checkpoint's 4: the linear schedule" in caplog.text) == warned
        if warned:
            assert "now gives the learning rate x0.625 where the interrupted run was at x0.25" in caplog.text


def test_a_resume_killed_in_its_test_evaluation_leaves_no_earlier_metrics_beside_the_new_model(
    data_dir, tmp_path, monkeypatch, capsys
):
    """From a probe: a finished run resumed with more --max-steps and killed during its test evaluation left the
    first run's eval_results.json beside the new model (which `a2gen push --eval-results` would put on its card)."""
    from a2gen_hf.training import loop

    argv = ["train", "--data", str(data_dir), "--output", str(tmp_path / "run"), "--batch-size", "32",
            "--checkpoint-every", "3", *TINY_FLAGS]  # fmt: skip
    assert main([*argv, "--max-steps", "3"]) == 0
    assert (tmp_path / "run" / "eval_results.json").is_file()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "evaluate_model", killed)
    assert main([*argv, "--max-steps", "6", "--resume"]) == 130
    assert not (tmp_path / "run" / "eval_results.json").exists()  # before: the 3-step run's metrics
    assert "interrupted during the test evaluation, after training" in capsys.readouterr().err


def test_a_finished_run_resumed_with_more_steps_logs_as_an_uninterrupted_one(data_dir, tmp_path):
    """A checkpoint at the planned last step held that step's closing log entry and a zeroed running loss: resumed
    with more steps, the log gained an entry there and the next entry covered only the later steps. Resumed as it
    is (nothing left to train), the run still writes that entry."""
    def losses(name, steps, resume=False):
        argv = ["train", "--data", str(data_dir), "--output", str(tmp_path / name), "--batch-size", "32",
                "--checkpoint-every", "5", "--log-every", "4", "--lr-schedule", "constant", "--max-steps", str(steps),
                *TINY_FLAGS, *(["--resume"] if resume else [])]  # fmt: skip
        assert main(argv) == 0
        log = json.loads((tmp_path / name / "training_log.json").read_text())["log_history"]
        return [entry for entry in log if "loss" in entry]

    uninterrupted = losses("whole", 8)
    finished = losses("extended", 5)
    assert [entry["step"] for entry in finished] == [4, 5] and "grad_norm" in finished[-1]
    assert losses("extended", 8, resume=True) == uninterrupted  # before: entries at 4, 5, 8 (8 over steps 6-8)
    assert losses("again", 5) == finished
    assert losses("again", 5, resume=True) == finished  # the closing entry written by the resumed run


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--no-eval-at-epoch-end"], "--no-eval-at-epoch-end evaluates at the step evaluations only, but --eval-every "
         "None (no step evaluations): set --eval-every 100 (or another step count) or --eval-at-epoch-end."),
        (["--scale-eval-every"], "set --eval-every 100 (or another step count) or --no-scale-eval-every."),
        (["--select-generator-by-loss", "--no-best-epoch"], "set --select-by mean_auc and --best-epoch, or switch it "
         "off, with the freezing that needs it: --no-select-generator-by-loss --no-freeze-ranking"),
    ],
)
def test_train_setting_errors_name_flags_once(data_dir, tmp_path, capsys, flags, message):
    """Before: bare field names ("set eval_every_steps (e.g. 100)") and flags twice ("--best-epoch (--best-epoch)")."""
    argv = ["train", "--data", str(data_dir), "--output", str(tmp_path / "run"), "--max-steps", "1", *flags]
    assert main([*argv, *TINY_FLAGS]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "eval_every_steps" not in err and "(--" not in err


def test_a_resume_with_fewer_steps_than_the_checkpoint_is_refused(data_dir, tmp_path, capsys):
    """Before: --max-steps 3 on a 5-step checkpoint evaluated and saved again, said "trained 5 steps" and logged
    max_steps 3 beside a log that ran to step 5."""
    argv = ["train", "--data", str(data_dir), "--output", str(tmp_path / "run"), "--batch-size", "32",
            "--checkpoint-every", "5", "--max-steps", "5", *TINY_FLAGS]  # fmt: skip
    assert main(argv) == 0
    log = (tmp_path / "run" / "training_log.json").read_bytes()
    capsys.readouterr()
    assert main([*argv[:-len(TINY_FLAGS) - 2], "--max-steps", "3", *TINY_FLAGS, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint-5 is at step 5, beyond the 3 steps this run is set to (--max-steps 3)" in err, err
    assert (tmp_path / "run" / "training_log.json").read_bytes() == log  # the finished run's files stay as they were


# ------------------------------------------------------------------------------------------------ a2gen train


def test_cli_train_without_best_epoch_says_the_last_weights_are_saved(data_dir, tmp_path, capsys):
    """Before: "best validation epoch: 0 (step N)" was printed beside the last weights it saved."""
    argv = ["train", "--data", str(data_dir), "--output", str(tmp_path / "run"), "--epochs", "2", "--batch-size",
            "64", "--no-best-epoch", *TINY_FLAGS]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "best validation epoch" not in printed
    best = json.loads((tmp_path / "run" / "training_log.json").read_text())["best_step"]
    last = int(re.search(r"trained (\d+) steps", printed)[1])
    said = ("; the best validation evaluation, step" if best != last
            else ": the best validation evaluation's too")  # a best at the last step is kept after all (from a probe)
    assert "model saved to" in printed and f"(the last weights, --no-best-epoch{said}" in printed


def test_cli_train_saves_model_log_and_test_metrics(data_dir, tmp_path, capsys):
    output = tmp_path / "run"
    argv = ["train", "--data", str(data_dir), "--output", str(output), "--epochs", "2", "--batch-size", "64",
            "--checkpoint-every", "3", "--log-every", "2", "--model", "a2gen-eag", *TINY_FLAGS]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "best validation epoch" in printed and "model saved to" in printed

    model = AutoModelForActionGeneration.from_pretrained(output / "model")
    assert model.config.generator_type == "eag" and model.config.hidden_size == 16
    assert (output / "model" / "vocab.json").exists()  # the tokenizer travels with the model
    metrics = json.loads((output / "eval_results.json").read_text())  # strict JSON (NaN -> null)
    assert metrics["num_examples"] == 41 and set(metrics["auc"]) == {"like", "follow", "forward", "comment"}
    assert "oracle_auc" in metrics  # the simulator's oracle is compared on the test split
    log = json.loads((output / "training_log.json").read_text())
    validation = [entry for entry in log["log_history"] if "validation_loss" in entry]
    assert [entry["epoch"] for entry in validation] == [0, 1]
    best = min(validation, key=lambda entry: entry["validation_loss"])["epoch"]
    assert log["best_epoch"] == best
    # The saved model is the best epoch's: its weights are the ones kept on disk for that epoch.
    kept = load_file(str(output / "best_model.safetensors"))
    torch.testing.assert_close(kept, weights(output), rtol=0, atol=0)
    assert {path.name for path in output.glob("checkpoint-*")} == {"checkpoint-9", "checkpoint-12"}  # keep 2

    # Training into a folder with checkpoints needs --resume; a finished run resumed trains no more steps.
    assert main(argv) == 2
    assert "already holds checkpoint-12" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0
    assert "Resumed from" in capsys.readouterr().err
    # ... and one whose checkpoints are gone still holds a finished run (before: replaced its model, kept its best
    # weights beside the new run's files).
    for checkpoint in output.glob("checkpoint-*"):
        shutil.rmtree(checkpoint)
    assert main(argv) == 2
    assert "holds an earlier run (training_log.json, best_model.safetensors)" in capsys.readouterr().err


def test_training_never_writes_into_the_data_folder(data_dir, tmp_path):
    """Before: each epoch's shuffle wrote a cache-*.arrow file of indices into DATA/train (a read-only data folder
    failed with PermissionError; a glob of *.arrow then read index rows as examples)."""
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    before = sorted(str(path.relative_to(data)) for path in data.rglob("*"))
    settings = TrainingSettings(output_dir=str(tmp_path / "run"), num_epochs=2, batch_size=32, show_progress=False,
                                cpu=True)  # fmt: skip
    train_from_data_dir(data, settings, "a2gen-iag", TINY)
    reset_accelerate_state()
    assert sorted(str(path.relative_to(data)) for path in data.rglob("*")) == before


def test_dataloader_workers_give_the_same_run(data_dir, tmp_path, monkeypatch):
    """--dataloader-num-workers 2 reads and collates the batches in two processes: the same batches, so the same log
    (losses, validation, test metrics) and the same weights as in the training process; a negative count is refused."""
    from a2gen_hf.data.split_checks import SCHEMA_CHECK_ROWS

    collate = A2GenDataCollator.__call__

    def collate_and_record(self, rows):  # which process collated (worker processes write to a file)
        if len(rows) > SCHEMA_CHECK_ROWS:  # not the check of every split's first and last rows before training
            with open(tmp_path / "collated_by", "a") as file:
                file.write(f"{os.getpid()}\n")
        return collate(self, rows)

    monkeypatch.setattr(A2GenDataCollator, "__call__", collate_and_record)
    runs, collators = {}, {}
    for workers in (0, 2):
        (tmp_path / "collated_by").unlink(missing_ok=True)
        output = tmp_path / f"workers{workers}"
        argv = ["train", "--data", str(data_dir), "--output", str(output), "--epochs", "2", "--batch-size", "64",
                "--log-every", "1", "--eval-every", "3", "--dataloader-num-workers", str(workers), "--cpu",
                *TINY_FLAGS]
        assert main(argv) == 0
        log = json.loads((output / "training_log.json").read_text())
        assert log["settings"]["dataloader_num_workers"] == workers
        runs[workers] = (log["log_history"], json.loads((output / "eval_results.json").read_text()), weights(output))
        collators[workers] = set((tmp_path / "collated_by").read_text().split())
    assert collators[0] == {str(os.getpid())} and str(os.getpid()) not in collators[2] and len(collators[2]) >= 2
    (history0, metrics0, weights0), (history2, metrics2, weights2) = runs[0], runs[2]
    assert sum("validation_loss" in entry for entry in history0) >= 3
    assert [entry.get("loss") for entry in history0] == [entry.get("loss") for entry in history2]
    assert [entry.get("validation_loss") for entry in history0] == [entry.get("validation_loss") for entry in history2]
    assert metrics0["auc"] == metrics2["auc"]
    torch.testing.assert_close(weights0, weights2, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"dataloader_num_workers=-1 must be >= 0"):
        TrainingSettings(output_dir=str(tmp_path), dataloader_num_workers=-1)


def test_learning_rate_schedules(data_dir, tmp_path):
    from a2gen_hf.training.loop import learning_rate_factor

    assert [learning_rate_factor("linear", step, 4) for step in range(4)] == [1.0, 0.75, 0.5, 0.25]
    assert learning_rate_factor("cosine", 2, 4) == pytest.approx(0.5) and learning_rate_factor("constant", 3, 4) == 1
    log = trained_log(data_dir, tmp_path / "linear", "--max-steps", "4", "--batch-size", "32", "--log-every", "1",
                      "--lr-schedule", "cosine")
    factors = [entry["lr_factor"] for entry in log["log_history"] if "lr_factor" in entry]
    assert factors == pytest.approx([learning_rate_factor("cosine", step, 4) for step in range(4)])
    with pytest.raises(ValueError, match=r"lr_schedule='step'; use one of \['constant', 'linear', 'cosine', 'plateau'\]"):
        TrainingSettings(output_dir=str(tmp_path), lr_schedule="step")


def test_early_stopping_selects_by_validation_mean_auc(data_dir, tmp_path, caplog):
    """Up to 30 epochs with patience 1 on validation mean AUC, evaluating every 4 steps and after every epoch."""
    output = tmp_path / "early"
    caplog.set_level(logging.INFO, logger="a2gen_hf.training.loop")
    argv = ["train", "--data", str(data_dir), "--output", str(output), "--epochs", "30", "--batch-size", "64",
            "--dense-lr", "1e-2", "--embedding-lr", "1e-2", "--select-by", "mean_auc", "--patience", "2",
            "--eval-every", "4", "--lr-schedule", "plateau", *TINY_FLAGS]
    assert main(argv) == 0
    log = json.loads((output / "training_log.json").read_text())
    evaluations = [entry for entry in log["log_history"] if "validation_loss" in entry]
    steps_per_epoch = math.ceil(323 / 64)
    # Every 4 steps and at every epoch's end, never twice at one step.
    expected = sorted({step for step in range(1, 30 * steps_per_epoch + 1)
                       if step % 4 == 0 or step % steps_per_epoch == 0})
    steps = [entry["step"] for entry in evaluations]
    assert steps == expected[: len(steps)]
    assert log["stopped_early"] and len(steps) < len(expected)  # 30 epochs never ran
    scores = [entry["validation_mean_auc"] for entry in evaluations]
    best = max(range(len(scores)), key=lambda index: (scores[index], -index))  # the first of equal maxima
    assert log["best_step"] == steps[best] and evaluations[best]["epoch"] == log["best_epoch"]
    assert all(score <= scores[best] for score in scores[best + 1 :]) and len(scores) - 1 - best == 2
    assert evaluations[-1]["early_stop"] and evaluations[-1]["lr_scale"] == 0.25  # plateau: halved twice
    assert set(evaluations[0]["validation_auc"]) <= {"like", "follow", "forward", "comment"}
    # The returned model is the best evaluation's.
    torch.testing.assert_close(load_file(str(output / "best_model.safetensors")), weights(output), rtol=0, atol=0)
    # One log line per evaluation (long runs without a progress bar show them).
    lines = [record.getMessage() for record in caplog.records if record.name == "a2gen_hf.training.loop"
             and record.getMessage().startswith("step ")]
    assert len(lines) == len(evaluations)
    assert lines[best].startswith(f"step {steps[best]} (epoch {evaluations[best]['epoch']}): validation loss ")
    assert f"mean AUC {scores[-1]:.4f}" in lines[-1] and lines[-1].endswith("stopping early")


def test_evaluations_spaced_by_steps_only(data_dir, tmp_path):
    """--eval-every K --no-eval-at-epoch-end: evaluations every K steps whatever an epoch's length, none at epoch
    ends, and the run's last step evaluated too; patience and the plateau schedule then count those evaluations."""
    steps_per_epoch = math.ceil(323 / 64)  # 6: epoch ends are not multiples of 4
    output = tmp_path / "steps"
    argv = ["train", "--data", str(data_dir), "--output", str(output), "--epochs", "3", "--batch-size", "64",
            "--select-by", "mean_auc", "--eval-every", "4", "--no-eval-at-epoch-end", "--lr-schedule", "plateau",
            *TINY_FLAGS]
    assert main(argv) == 0
    log = json.loads((output / "training_log.json").read_text())
    steps = [entry["step"] for entry in log["log_history"] if "validation_loss" in entry]
    total = 3 * steps_per_epoch
    assert steps == [*range(4, total, 4), total] and total % 4 != 0
    assert log["settings"]["eval_at_epoch_end"] is False
    with pytest.raises(ValueError, match="eval_at_epoch_end=False evaluates at the step evaluations only, but eval_every_steps=None"):
        TrainingSettings(output_dir=str(tmp_path), eval_at_epoch_end=False)


def test_scale_eval_every_spaces_evaluations_by_the_validation_split(data_dir, tmp_path):
    """--scale-eval-every: evaluations every max(K, ceil(validation examples / examples per step)) steps, the
    interval logged; unchanged where the validation split holds at most K steps' examples; refused without K."""
    from types import SimpleNamespace

    from a2gen_hf.training.loop import evaluation_interval

    validation = len(load_data_dir(data_dir)[0]["validation"])
    interval = math.ceil(validation / 16)
    assert interval > 2
    log = trained_log(data_dir, tmp_path / "scaled", "--epochs", "2", "--batch-size", "16", "--eval-every", "2",
                      "--scale-eval-every", "--no-eval-at-epoch-end")
    steps = [entry["step"] for entry in log["log_history"] if "validation_loss" in entry]
    total = 2 * math.ceil(323 / 16)
    assert steps == [*range(interval, total, interval), total][: len(steps)] and steps[-1] == total
    assert log["eval_every_steps_used"] == interval and log["settings"]["scale_eval_every"] is True
    one, two = SimpleNamespace(num_processes=1), SimpleNamespace(num_processes=2)
    settings = TrainingSettings(output_dir=str(tmp_path), batch_size=16, eval_every_steps=2, scale_eval_every=True)
    assert evaluation_interval(settings, range(validation), one) == interval
    assert evaluation_interval(settings, range(validation), two) == max(2, math.ceil(validation / 32))
    assert evaluation_interval(settings, range(20), one) == 2  # a small split: K itself
    assert evaluation_interval(replace(settings, scale_eval_every=False), range(validation), one) == 2
    with pytest.raises(ValueError, match="scale_eval_every=True spaces the step evaluations out .* eval_every_steps=None"):
        TrainingSettings(output_dir=str(tmp_path), scale_eval_every=True)


def test_eval_before_training_lets_the_starting_weights_win(data_dir, tmp_path):
    """--eval-before-training evaluates step 0; when no later evaluation beats it, the starting weights come back."""
    output = tmp_path / "start"
    argv = ["train", "--data", str(data_dir), "--output", str(output), "--epochs", "2", "--batch-size", "64",
            "--dense-lr", "0.3", "--embedding-lr", "0.3", "--select-by", "loss", "--eval-before-training", *TINY_FLAGS]
    assert main(argv) == 0  # learning rates this large only make the loss worse
    log = json.loads((output / "training_log.json").read_text())
    evaluations = [entry for entry in log["log_history"] if "validation_loss" in entry]
    assert evaluations[0]["step"] == 0 and len(evaluations) == 3
    assert log["best_step"] == 0 and evaluations[0]["validation_loss"] < min(e["validation_loss"] for e in evaluations[1:])


def test_early_stopping_waits_for_min_steps(data_dir, tmp_path):
    """--min-steps M: evaluations without improvement before step M do not end the run; the first one at or after M
    does (learning rates this large only make the loss worse, so the starting weights stay the best)."""
    steps_per_epoch = math.ceil(323 / 64)
    stops = {}
    for min_steps in (0, 3 * steps_per_epoch):
        output = tmp_path / f"min{min_steps}"
        argv = ["train", "--data", str(data_dir), "--output", str(output), "--epochs", "6", "--batch-size", "64",
                "--dense-lr", "0.3", "--embedding-lr", "0.3", "--select-by", "loss", "--eval-before-training",
                "--patience", "1", "--min-steps", str(min_steps), *TINY_FLAGS]
        assert main(argv) == 0
        log = json.loads((output / "training_log.json").read_text())
        evaluations = [entry for entry in log["log_history"] if "validation_loss" in entry]
        assert log["stopped_early"] and log["best_step"] == 0 and evaluations[-1]["early_stop"]
        assert not any(entry.get("early_stop") for entry in evaluations[:-1])
        assert log["settings"]["early_stopping_min_steps"] == min_steps
        stops[min_steps] = evaluations[-1]["step"]
    assert stops == {0: steps_per_epoch, 3 * steps_per_epoch: 3 * steps_per_epoch}


def test_patience_from_step_neither_counts_nor_decays_before_it(data_dir, tmp_path):
    """--patience-from-step S: evaluations before step S without improvement neither count towards the patience nor
    halve the learning rates (plateau); counting starts at S (so with patience 2 the run ends one evaluation later
    than --min-steps S would end it, which counts them)."""
    steps_per_epoch = math.ceil(323 / 64)
    runs = {}
    for name, flags in (("from", ["--patience-from-step", str(2 * steps_per_epoch)]),
                        ("min", ["--min-steps", str(2 * steps_per_epoch)]), ("none", [])):
        output = tmp_path / name
        argv = ["train", "--data", str(data_dir), "--output", str(output), "--epochs", "8", "--batch-size", "64",
                "--dense-lr", "0.3", "--embedding-lr", "0.3", "--select-by", "loss", "--eval-before-training",
                "--patience", "2", "--lr-schedule", "plateau", *flags, *TINY_FLAGS]
        assert main(argv) == 0
        log = json.loads((output / "training_log.json").read_text())
        assert log["stopped_early"] and log["best_step"] == 0
        runs[name] = {entry["step"]: entry["lr_scale"] for entry in log["log_history"] if "validation_loss" in entry}
    spe = steps_per_epoch
    assert runs["none"] == {0: 1.0, spe: 0.5, 2 * spe: 0.25}
    assert runs["min"] == {0: 1.0, spe: 0.5, 2 * spe: 0.25}
    assert runs["from"] == {0: 1.0, spe: 1.0, 2 * spe: 0.5, 3 * spe: 0.25}
    assert json.loads((tmp_path / "from" / "training_log.json").read_text())["settings"]["patience_from_step"] == 2 * spe
    with pytest.raises(ValueError, match=r"patience_from_step=-1 must be >= 0"):
        TrainingSettings(output_dir=str(tmp_path), patience_from_step=-1)


def test_min_delta_keeps_the_best_unless_beaten_by_more(data_dir, tmp_path):
    """--min-delta d: an evaluation becomes the best only if it beats the best by more than d; with d larger than
    any change in validation AUC the first evaluation stays the best and the patience runs out after it."""
    runs = {}
    for delta in ("0", "1.0"):
        output = tmp_path / f"delta{delta}"
        argv = ["train", "--data", str(data_dir), "--output", str(output), "--epochs", "4", "--batch-size", "64",
                "--dense-lr", "1e-2", "--embedding-lr", "1e-2", "--select-by", "mean_auc", "--patience", "2",
                "--min-delta", delta, *TINY_FLAGS]
        assert main(argv) == 0
        log = json.loads((output / "training_log.json").read_text())
        runs[delta] = [entry for entry in log["log_history"] if "validation_loss" in entry], log
    evaluations, log = runs["1.0"]
    assert log["best_step"] == evaluations[0]["step"] and log["stopped_early"] and len(evaluations) == 3
    assert log["settings"]["selection_min_delta"] == 1.0
    evaluations, log = runs["0"]
    scores = [entry["validation_mean_auc"] for entry in evaluations]
    assert log["best_step"] == evaluations[scores.index(max(scores))]["step"]


def test_selection_settings_errors(data_dir, tmp_path):
    with pytest.raises(ValueError, match=r"selection_metric='auc'; use one of \['loss', 'mean_auc'\]"):
        TrainingSettings(output_dir=str(tmp_path), selection_metric="auc")
    with pytest.raises(ValueError, match="early_stopping_patience=0 must be >= 1"):
        TrainingSettings(output_dir=str(tmp_path), early_stopping_patience=0)
    # counts and steps are whole numbers (before: checkpoint_every=1.5 fired every third step, and 1.5 accumulation
    # steps were reported as a mixed-precision error)
    for name, value, allowed in (("checkpoint_every", 1.5, "a whole number"),
                                 ("gradient_accumulation_steps", 1.5, "a whole number"),
                                 ("early_stopping_patience", True, "a whole number or None")):  # fmt: skip
        with pytest.raises(ValueError, match=rf"{name}={value!r} must be {allowed}\."):
            TrainingSettings(output_dir=str(tmp_path), **{name: value})
    assert TrainingSettings(output_dir=str(tmp_path), max_steps=torch.tensor(3).item()).max_steps == 3  # a plain int
    with pytest.raises(ValueError, match=r"early_stopping_min_steps=-1 must be >= 0 \(0: no minimum\)"):
        TrainingSettings(output_dir=str(tmp_path), early_stopping_min_steps=-1)
    with pytest.raises(ValueError, match=r"selection_min_delta=-0.1 must be >= 0"):
        TrainingSettings(output_dir=str(tmp_path), selection_min_delta=-0.1)
    for name, value, flag in (("dense_learning_rate", float("nan"), "--dense-lr"),
                              ("embedding_learning_rate", -1.0, "--embedding-lr"),
                              ("weight_decay", float("inf"), "--weight-decay")):  # fmt: skip
        with pytest.raises(ValueError, match=rf"{name}={value} must be a finite number >= 0 \(CLI: {flag}\)"):
            TrainingSettings(output_dir=str(tmp_path), **{name: value})
    dataset, tokenizer, _ = load_data_dir(data_dir)
    model = create_model("mmoe", tokenizer, dataset, **TINY)
    settings = TrainingSettings(output_dir=str(tmp_path), early_stopping_patience=2, show_progress=False)
    with pytest.raises(ValueError, match="no eval_dataset was given"):
        train(model, dataset["train"], A2GenDataCollator.from_config(model.config, tokenizer), settings)


def test_mixed_precision_errors_and_bf16_on_cpu(data_dir, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU's refusal of fp16")
    with pytest.raises(ValueError, match="'fp16' needs a GPU"):
        make_accelerator(TrainingSettings(output_dir=str(tmp_path), mixed_precision="fp16"))
    AcceleratorState._reset_state(reset_partial_state=True)
    assert main(["train", "--data", str(data_dir), "--output", str(tmp_path / "fp16"), "--mixed-precision", "fp16"]) == 2
    assert "Fix: use --mixed-precision no (or bf16" in capsys.readouterr().err
    AcceleratorState._reset_state(reset_partial_state=True)
    settings = TrainingSettings(output_dir=str(tmp_path / "bf16"), max_steps=2, batch_size=32, mixed_precision="bf16",
                                log_every=1, show_progress=False)
    result, _ = train_from_data_dir(data_dir, settings, "a2gen-iag", TINY)
    losses = [entry["loss"] for entry in result.log_history if "loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    # Another precision in the same Python process: Accelerate's process-wide state would refuse it (restart Python);
    # a run outside a distributed launch starts a state of its own.
    result, _ = train_from_data_dir(data_dir, replace(settings, output_dir=str(tmp_path / "fp32"), mixed_precision="no"),
                                    "a2gen-iag", TINY)
    assert AcceleratorState().mixed_precision == "no" and len(result.log_history) >= 2


def test_train_refuses_an_accelerator_built_for_other_settings(data_dir, tmp_path):
    dataset, tokenizer, _ = load_data_dir(data_dir)
    model = create_model("mmoe", tokenizer, dataset, **TINY)
    accelerator = make_accelerator(TrainingSettings(output_dir=str(tmp_path)))
    settings = TrainingSettings(output_dir=str(tmp_path), gradient_accumulation_steps=2)
    with pytest.raises(ValueError, match=r"built with \{'gradient_accumulation_steps': 1\} but the settings say"):
        train(model, dataset["train"], A2GenDataCollator.from_config(model.config, tokenizer), settings,
              accelerator=accelerator)


def test_an_empty_validation_split_trains_without_evaluations(data_dir, tmp_path, caplog):
    """Before, every evaluation of the empty split scored a loss of 0, so the first one was kept as the best and
    training's later steps were thrown away. Now the run keeps its last weights; early stopping is refused."""
    dataset, tokenizer, _ = load_data_dir(data_dir)
    model = create_model("mmoe", tokenizer, dataset, **TINY)
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    empty = dataset["validation"].select([])
    settings = TrainingSettings(output_dir=str(tmp_path / "a"), max_steps=4, batch_size=32, eval_every_steps=1,
                                show_progress=False)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="a2gen_hf.training.loop"):
        result = train(model, dataset["train"], collator, settings, eval_dataset=empty)
    assert "The validation split is empty (0 examples)" in caplog.text
    history = json.loads((tmp_path / "a" / "training_log.json").read_text())["log_history"]
    assert not any("validation_loss" in entry for entry in history)
    assert result.global_step == 4
    with pytest.raises(ValueError, match=r"The training split is empty \(0 examples\)"):
        train(model, empty, collator, replace(settings, output_dir=str(tmp_path / "c")))
    # Inputs of other kinds are refused before training (before: a TypeError at the first evaluation, an epoch on)
    with pytest.raises(TypeError, match=r"train_dataset is a generator; train\(\) reads map-style examples"):
        train(model, (row for row in dataset["train"]), collator, replace(settings, output_dir=str(tmp_path / "d")))
    stream = dataset["validation"].to_iterable_dataset()
    with pytest.raises(TypeError, match=r"eval_dataset is a IterableDataset; the validation evaluations read a"):
        train(model, dataset["train"], collator, replace(settings, output_dir=str(tmp_path / "e")), eval_dataset=stream)
    with pytest.raises(ValueError, match=r"The validation split is empty \(0 examples\), but early_stopping_patience"):
        train(model, dataset["train"], collator, replace(settings, output_dir=str(tmp_path / "b"),
                                                         early_stopping_patience=2), eval_dataset=empty)  # fmt: skip


def test_a_diverged_validation_loss_stops_the_run_before_any_weights_are_kept(data_dir, tmp_path, capsys):
    """A learning rate of 16: the training loss of step 1 is still finite, the validation loss is not. Before, the
    run saved those weights as the model (best_epoch -1) and failed later in the test metrics."""
    assert main(["train", "--data", str(data_dir), "--output", str(tmp_path / "run"), "--max-steps", "1",
                 "--dense-lr", "16", "--embedding-lr", "16", *TINY_FLAGS]) == 2  # fmt: skip
    assert "The validation loss is nan at step 1 (epoch 0): training diverged; lower" in capsys.readouterr().err
    assert not (tmp_path / "run" / "model").exists()


# ----------------------------------------------------------------------------------------------- exact resume


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(data_dir, tmp_path, capsys):
    # Dropout on and gradient accumulation 2: RNG states, data order, accumulation and optimizer must all restore.
    # On the CPU, whose sums are deterministic (a GPU's atomic adds differ between any two runs).
    flags = ["--cpu", "--data", str(data_dir), "--epochs", "3", "--batch-size", "8", "--gradient-accumulation-steps", "2",
             "--checkpoint-every", "7", "--log-every", "5", "--hidden-dropout-prob", "0.2", *TINY_FLAGS]
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "a2gen_hf.cli", "train", "--output", str(killed), *flags],
        env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while latest_checkpoint(killed) is None:
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    last = latest_checkpoint(killed)
    assert not (killed / "model").exists(), "the run finished before it was killed"
    total_steps = 3 * math.ceil(math.ceil(323 / 8) / 2)
    assert int(last.name.split("-")[1]) < total_steps
    # Half-written checkpoints a crash may leave behind are never resumed from.
    (killed / ".tmp-checkpoint-998").mkdir(exist_ok=True)
    (killed / "checkpoint-999").mkdir()
    (killed / "checkpoint-999" / "model.safetensors").write_bytes(b"partial")

    assert main(["train", "--output", str(killed), "--resume", *flags]) == 0
    assert f"Resumed from {last}" in capsys.readouterr().err
    uninterrupted = tmp_path / "uninterrupted"
    assert main(["train", "--output", str(uninterrupted), *flags]) == 0

    resumed_weights, reference = weights(killed), weights(uninterrupted)
    assert resumed_weights.keys() == reference.keys()
    for name, value in reference.items():
        torch.testing.assert_close(resumed_weights[name], value, rtol=0, atol=1e-6, msg=name)
    resumed_log, reference_log = log_of(killed), log_of(uninterrupted)
    assert [entry["step"] for entry in resumed_log] == [entry["step"] for entry in reference_log]
    for resumed_entry, reference_entry in zip(resumed_log, reference_log):
        for key, value in reference_entry.items():
            assert resumed_entry[key] == pytest.approx(value, rel=1e-5), (key, reference_entry)


@pytest.mark.parametrize("workers", [0, 2])
def test_streaming_resume_replays_each_shard(data_dir, tmp_path, workers):
    """A stream resumed from a checkpoint replays what the interrupted run consumed and ends where one run ends, also
    with its shards read and collated by worker processes (whose number then decides the order: a resume with
    another number is refused by name)."""
    dataset, tokenizer, _ = load_data_dir(data_dir)
    stream = dataset["train"].select(range(80)).to_iterable_dataset(num_shards=4)

    # 80 examples in batches of 16: 5 per pass (6 with 2 workers of 40 each), so 7 steps cross into the second
    # (reshuffled) pass.
    def run(folder: Path, max_steps: int | None, resume: bool, workers: int = workers) -> torch.Tensor:
        settings = TrainingSettings(output_dir=str(folder), max_steps=max_steps, batch_size=16, checkpoint_every=3,
                                    resume=resume, log_every=100, shuffle_buffer_size=20, show_progress=False,
                                    cpu=True, dataloader_num_workers=workers)
        torch.manual_seed(0)
        model = create_model("a2gen-iag", tokenizer, dataset, **TINY)
        result = train(model, stream, A2GenDataCollator.from_config(model.config, tokenizer), settings)
        AcceleratorState._reset_state(reset_partial_state=True)
        return torch.nn.utils.parameters_to_vector(result.model.parameters()).detach()

    reference = run(tmp_path / "straight", 7, resume=False)
    run(tmp_path / "interrupted", 3, resume=False)
    resumed = run(tmp_path / "interrupted", 7, resume=True)
    torch.testing.assert_close(resumed, reference, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="set max_steps"):
        run(tmp_path / "no-steps", None, resume=False)
    if workers:
        with pytest.raises(ValueError, match="dataloader_num_workers: checkpoint 2, now 1"):
            run(tmp_path / "interrupted", 9, resume=True, workers=1)
        AcceleratorState._reset_state(reset_partial_state=True)


def test_streaming_workers_read_every_example_of_a_pass_once(data_dir, tmp_path, monkeypatch):
    """With 2 worker processes a stream of 4 shards is read and collated outside the training process, and one pass
    (each worker's 40 examples in batches of 16, 16 and 8) holds every example once."""
    dataset, tokenizer, _ = load_data_dir(data_dir)
    rows = dataset["train"].select(range(80))
    stream = rows.add_column("row", list(range(80))).to_iterable_dataset(num_shards=4)
    model = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    record = tmp_path / "collated"

    def recording_collator(examples):
        with open(record, "a") as file:
            file.writelines(f"{os.getpid()} {example['row']}\n" for example in examples)
        return collator(examples)

    settings = TrainingSettings(output_dir=str(tmp_path / "run"), max_steps=6, batch_size=16, show_progress=False,
                                cpu=True, dataloader_num_workers=2)
    train(model, stream, recording_collator, settings)
    AcceleratorState._reset_state(reset_partial_state=True)
    seen = [line.split() for line in record.read_text().splitlines()]
    assert sorted(int(row) for _, row in seen) == list(range(80))
    assert len({pid for pid, _ in seen}) == 2 and str(os.getpid()) not in {pid for pid, _ in seen}


# ------------------------------------------------------------------------------------------ 2 processes (DDP)

# Run by both processes of one `accelerate launch` (one launch: starting Python + torch is most of the cost):
# 1. examples/train_accelerate.py as a script, with the arguments after the data folder;
# 2. the training loop on a streaming dataset, recording the example rows each process collates.
DDP_PROBE = textwrap.dedent(
    """
    import json, runpy, sys
    from accelerate import Accelerator
    from a2gen_hf.data import A2GenDataCollator
    from a2gen_hf.training.data_setup import create_model, load_data_dir
    from a2gen_hf.training.loop import TrainingSettings, train

    example, data_dir, streaming_output, *example_args = sys.argv[1:]
    sys.argv = [example, "--data", data_dir, *example_args]
    try:
        runpy.run_path(example, run_name="__main__")
    except SystemExit as done:
        assert done.code == 0, f"{example} exited with {done.code}"

    dataset, tokenizer, _ = load_data_dir(data_dir)
    rows = dataset["train"].add_column("row", list(range(len(dataset["train"]))))
    model = create_model("a2gen-iag", tokenizer, dataset, hidden_size=16, id_embedding_size=16)
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    seen = []

    def recording_collator(examples):
        seen.extend(example["row"] for example in examples)
        return collator(examples)

    settings = TrainingSettings(output_dir=streaming_output, max_steps=3, batch_size=16, show_progress=False)
    accelerator = Accelerator()
    train(model, rows.to_iterable_dataset(num_shards=4), recording_collator, settings, accelerator=accelerator)
    with open(f"{streaming_output}/rows-{accelerator.process_index}.json", "w") as file:
        json.dump({"rows": seen, "processes": accelerator.num_processes}, file)
    """
)


@pytest.mark.slow
def test_two_process_ddp_step_equals_one_process_step(data_dir, tmp_path):
    ddp, streaming = tmp_path / "ddp", tmp_path / "streaming"
    probe = tmp_path / "ddp_probe.py"
    probe.write_text(DDP_PROBE)
    command = [
        *accelerate_two_processes(), str(probe),
        str(REPO / "examples" / "train_accelerate.py"), str(data_dir), str(streaming),
        "--output", str(ddp), "--max-steps", "1", "--batch-size", "8", "--log-every", "1", *TINY_FLAGS,
    ]
    done = subprocess.run(command, env=cpu_ddp_env(), capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]

    single, accumulated = tmp_path / "single", tmp_path / "accumulated"
    for folder, batch_size, accumulation in ((single, 16, 1), (accumulated, 8, 2)):
        settings = TrainingSettings(output_dir=str(folder), max_steps=1, batch_size=batch_size, log_every=1,
                                    gradient_accumulation_steps=accumulation, show_progress=False, cpu=True)
        train_from_data_dir(data_dir, settings, "a2gen-iag", TINY)
        reset_accelerate_state()

    # Same first step: 2 processes x 8 = 1 process x 16 = 2 micro-batches x 8. The gradient norm would be off by
    # the world size (or the accumulation steps) if a loss were scaled twice.
    first = {folder.name: log_of(folder)[0] for folder in (ddp, single, accumulated)}
    assert first["ddp"]["step"] == 1
    for name in ("single", "accumulated"):
        assert first["ddp"]["grad_norm"] == pytest.approx(first[name]["grad_norm"], rel=1e-5)
        assert first["ddp"]["loss"] == pytest.approx(first[name]["loss"], rel=1e-5)
    reference = weights(ddp)
    for folder in (single, accumulated):
        for name, value in weights(folder).items():
            # An attention key bias gets no gradient (softmax ignores a shift shared by all keys): AdamW's first
            # step turns its rounding noise into +-lr, so it is not compared.
            if not name.endswith("key.bias"):
                torch.testing.assert_close(value, reference[name], rtol=0, atol=1e-6, msg=f"{folder.name}: {name}")

    # A streaming input is split across the processes: disjoint examples, 3 steps x 16 each.
    seen = [json.loads((streaming / f"rows-{rank}.json").read_text()) for rank in (0, 1)]
    assert all(part["processes"] == 2 for part in seen)
    rows = [set(part["rows"]) for part in seen]
    assert len(seen[0]["rows"]) == len(rows[0]) == 48 and len(seen[1]["rows"]) == len(rows[1]) == 48
    assert not rows[0] & rows[1]


@pytest.mark.slow
def test_two_process_ddp_trains_the_sparse_logs_recipe(simulated_data_dir, tmp_path):
    """`accelerate launch` of `a2gen train --recipe sparse_logs` on 2 processes: the id-free model's unread id tables
    take no gradient (DDP stopped at its second step before), the residual fit, the generator's own selection and the
    give-back run on both processes, and the main one saves the model and its log; each process's batches come from a
    worker process of its own."""
    output = tmp_path / "ddp-sparse"
    command = [
        *accelerate_two_processes(), "-m", "a2gen_hf.cli", "train",
        "--recipe", "sparse_logs", "--data", str(simulated_data_dir), "--output", str(output), "--epochs", "2",
        "--batch-size", "8", "--hidden-size", "8", "--num-attention-heads", "2", "--id-embedding-size", "8",
        "--no-progress", "--dataloader-num-workers", "1",  # each process's shard read by a worker of its own
    ]
    done = subprocess.run(command, env=cpu_ddp_env(), capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    log = json.loads((output / "training_log.json").read_text())
    steps = [entry["step"] for entry in log["log_history"] if "validation_loss" in entry]
    assert steps[0] == 0 and len(steps) >= 3 and log["best_generator_step"] in steps[1:]
    assert set(log["given_back_to_the_start"]) == {"median_times_for", "regression_for"}
    assert (output / "model" / "model.safetensors").exists() or any((output / "model").glob("*.safetensors"))


@pytest.mark.slow
def test_two_process_ddp_keeps_the_same_weight_average_as_one_process(data_dir, tmp_path):
    """`accelerate launch` of `a2gen train --ema-decay` on 2 processes x 8 examples: the saved model (the average after
    the last step) and the checkpoint's average are those of one process x 16, so each process's average follows the
    same synchronised weights and the main process saves it."""
    from a2gen_hf.cli import main
    from a2gen_hf.training.weight_average import WEIGHT_AVERAGE_FILE

    flags = ["train", "--data", str(data_dir), "--max-steps", "3", "--ema-decay", "0.5", "--checkpoint-every", "3",
             "--no-best-epoch", *TINY_FLAGS]
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    command = [
        *accelerate_two_processes(), "-m", "a2gen_hf.cli",
        *flags, "--batch-size", "8", "--output", str(ddp),
    ]
    done = subprocess.run(command, env=cpu_ddp_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert main([*flags, "--batch-size", "16", "--cpu", "--output", str(single)]) == 0
    reset_accelerate_state()
    reference = weights(single)
    for name, value in weights(ddp).items():
        if not name.endswith("key.bias"):  # see test_two_process_ddp_step_equals_one_process_step
            torch.testing.assert_close(value, reference[name], rtol=0, atol=1e-5, msg=name)
    averages = [load_file(str(next(folder.glob(f"checkpoint-*/{WEIGHT_AVERAGE_FILE}")))) for folder in (ddp, single)]
    assert averages[0].keys() == averages[1].keys()
    for name, value in averages[0].items():
        if not name.endswith("key.bias"):
            torch.testing.assert_close(value, averages[1][name], rtol=0, atol=1e-5, msg=name)
    # Resumed on 2 processes (before: "device cpu:0 is invalid", blamed on the checkpoint, every time).
    resume = [*command[: command.index("--max-steps") + 1], "4", *command[command.index("--max-steps") + 2 :], "--resume"]
    done = subprocess.run(resume, env=cpu_ddp_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    log = json.loads((ddp / "training_log.json").read_text())
    assert [entry["step"] for entry in log["log_history"] if "loss" in entry][-1] == 4
    assert (ddp / "checkpoint-3").is_dir()


def test_shard_for_process_splits_whole_shards():
    from datasets import Dataset

    class Rank:
        def __init__(self, index):
            self.process_index, self.num_processes = index, 2

    stream = Dataset.from_dict({"row": list(range(40))}).to_iterable_dataset(num_shards=4)
    parts = [[row["row"] for row in shard_for_process(stream, Rank(index))] for index in (0, 1)]
    assert sorted(parts[0] + parts[1]) == list(range(40)) and not set(parts[0]) & set(parts[1])


# ------------------------------------------------------------------- options beyond the paper (issue 13)


def test_any_slot_readout_is_one_minus_the_product_over_slots():
    from a2gen_hf import A2GenConfig
    from a2gen_hf.modeling_a2gen import action_predictions_from_slots

    config = A2GenConfig(action_names=["start", "like", "follow", "leave"], slot_readout="any_slot")
    probabilities = torch.softmax(torch.randn(3, 4, config.vocab_size, generator=torch.Generator().manual_seed(0)), -1)
    times = torch.zeros(3, 4)
    read = action_predictions_from_slots(config, probabilities, times).action_probabilities
    expected = 1 - torch.prod(1 - probabilities, dim=1)
    torch.testing.assert_close(read[:, 2:4], expected[:, 2:4])
    sequence = action_predictions_from_slots(A2GenConfig(action_names=config.action_names), probabilities, times)
    assert (sequence.action_probabilities[:, 2:4] < read[:, 2:4]).all()  # predicted ends cut the sequence readout
    with pytest.raises(A2GenConfigError, match=r"slot_readout='last'.*\['sequence', 'any_slot', 'sampler'\]"):
        A2GenConfig(slot_readout="last")


def test_sampler_readout_is_how_often_generate_samples_each_action():
    """From a probe: the default readout counts a slot's padding as the sequence's end, generate() never samples
    padding, so P(action) was not the sampler's (6x lower with padding favoured, and the same samples). The sampler
    readout is the probability that generate(do_sample=True) draws the action from the same IAG slots."""
    from conftest import build_tiny_model, make_batch

    model = build_tiny_model("iag", seed=3, slot_readout="sampler")
    with torch.no_grad():  # favour padding and the end in the slots, as an untrained or unlucky model may
        model.generator.heads.action.bias[0] += 2.0
        model.generator.heads.action.bias[model.config.end_action_id] -= 1.0
    batch = {k: v for k, v in make_batch(model.config, batch_size=2, seed=4).items() if not k.startswith("label")}
    samples = 4000
    torch.manual_seed(0)
    with torch.no_grad():
        read = model.predict_actions(**batch).action_probabilities
        sequences = model.generate(**batch, do_sample=True, num_return_sequences=samples, top_k=0)
    sequences = sequences.view(2, samples, -1)
    drawn = torch.stack([(sequences == a).any(-1).double().mean(1) for a in range(model.config.vocab_size)], 1)
    actions = slice(2, model.config.vocab_size)  # after padding and start
    error = (read[:, actions].double() - drawn[:, actions]).abs()
    standard = (drawn[:, actions] * (1 - drawn[:, actions]) / samples).sqrt().clamp_min(1e-3)
    assert (error < 4.5 * standard).all(), (read, drawn)
    model.config.slot_readout = "sequence"  # the default reads other probabilities off the same slots
    sequence = model.predict_actions(**batch).action_probabilities
    assert ((sequence[:, actions].double() - drawn[:, actions]).abs() > 6 * standard).any()


@pytest.mark.parametrize("name", ["a2gen-iag", "mmoe-fair"])
def test_wide_path_adds_a_linear_logit_over_the_extra_features(data_dir, name):
    dataset, tokenizer, _ = load_data_dir(data_dir)
    options = dict(history_count_features=True, target_popularity_features=True, wide_path=True, **TINY)
    if name.startswith("a2gen"):
        options["occurrence_head"] = True
    model = create_model(name, tokenizer, dataset, **options).eval()
    rows = dataset["validation"]
    batch = A2GenDataCollator.from_config(model.config, tokenizer)([rows[index] for index in range(8)])
    wide = model.occurrence_head.wide if name.startswith("a2gen") else model.wide
    field = "occurrence_logits" if name.startswith("a2gen") else "logits"  # what predict_actions ranks with
    with torch.no_grad():
        before = getattr(model(**batch), field)
        wide.linear.bias.fill_(1.0)
        after = getattr(model(**batch), field)
    ranked = [model.config.action_id(a) for a in ("like", "follow", "forward", "comment")]
    torch.testing.assert_close(after[:, ranked], before[:, ranked] + 1.0, atol=1e-5, rtol=0)
    unranked = [0, model.config.start_action_id, model.config.end_action_id]
    torch.testing.assert_close(after[:, unranked], before[:, unranked])
    with pytest.raises(A2GenConfigError, match="wide_path=True reads the count / popularity features"):
        create_model(name, tokenizer, dataset, wide_path=True, **TINY)
    implied = create_model("a2gen-iag", tokenizer, dataset, history_count_features=True, wide_path=True, **TINY)
    assert implied.config.occurrence_head and implied.occurrence_head.wide is not None  # the wide path needs the head


def test_collator_can_drop_repeated_start_actions_from_the_labels(data_dir):
    dataset, tokenizer, _ = load_data_dir(data_dir)
    start, leave = tokenizer.start_action_id, tokenizer.end_action_id
    row = {**dataset["train"][0], "action_ids": [start, start, 3, start, leave], "action_seconds": [0, 1, 2, 3, 4]}
    labels = A2GenDataCollator(tokenizer, drop_repeated_start=True)([row])
    assert labels["labels"][0, :4].tolist() == [start, 3, leave, 0]
    assert labels["label_times"][0, 1] == A2GenDataCollator(tokenizer)([row])["label_times"][0, 2]  # times travel along
    config = model_config_from_tokenizer(tokenizer, dataset, target_drops_repeated_start=True)
    assert A2GenDataCollator.from_config(config, tokenizer).drop_repeated_start


def test_cli_train_and_compare_warm_the_moment_table(data_dir, tmp_path, capsys):
    from a2gen_hf.training.compare import ComparisonSettings, run_comparison
    from a2gen_hf.training.moment_factorization import start_moment_table_from_events

    table = ["--event-item-moments", "16", "--event-moment-source", "table"]
    base = ["train", "--data", str(data_dir), "--max-steps", "1", "--batch-size", "8", *TINY_FLAGS, *table]
    dataset, tokenizer, _ = load_data_dir(data_dir)
    model = create_model("a2gen-iag", tokenizer, dataset, hidden_size=16, id_embedding_size=16,
                         history_event_item_moments=16, history_event_moment_source="table")
    written = start_moment_table_from_events(model, tokenizer, dataset)["rows_written"]
    rows = {}
    for name in ("off", "trainable", "frozen"):
        assert main([*base, "--output", str(tmp_path / name), "--moment-warm-start", name]) == 0
        rows[name] = weights(tmp_path / name)["a2gen.features.item_moments.table.weight"]
    nonzero = {name: int((table.abs().sum(1) > 0).sum()) for name, table in rows.items()}
    # One step of 8 examples touches fewer rows than the warm start writes; the warm runs keep them all, and the
    # frozen table is the warm start itself.
    assert nonzero["off"] < written == nonzero["frozen"] <= nonzero["trainable"]
    assert not torch.equal(rows["trainable"], rows["frozen"])
    model.a2gen.features.item_moments.table.weight.requires_grad_(False)
    start_moment_table_from_events(model, tokenizer, dataset, frozen=True)
    torch.testing.assert_close(rows["frozen"], model.a2gen.features.item_moments.table.weight.detach())
    capsys.readouterr()
    assert main(["train", "--data", str(data_dir), "--output", str(tmp_path / "bad"), "--moment-warm-start",
                 "frozen", *TINY_FLAGS]) == 2
    assert "--event-moment-source table" in capsys.readouterr().err
    settings = ComparisonSettings(
        models=["a2gen-iag", "mmoe"], seeds=1, simple_baselines=[], bootstrap_resamples=40,
        moment_warm_start="trainable",
        model_overrides=dict(history_event_item_moments=16, history_event_moment_source="table", **TINY),
        training=TrainingSettings(output_dir=str(tmp_path / "runs"), max_steps=1, show_progress=False),
    )
    report = run_comparison(data_dir, tmp_path / "out", settings)  # MMoE has no moment table: not warmed
    assert report["settings"]["moment_warm_start"] == "trainable"
    with pytest.raises(ValueError, match="needs A2Gen's \\(item,"):
        run_comparison(data_dir, tmp_path / "bad2", ComparisonSettings(models=["a2gen-iag"], moment_warm_start="frozen"))
    with pytest.raises(ValueError, match="moment_warm_start='yes' is unknown"):
        run_comparison(data_dir, tmp_path / "bad3", ComparisonSettings(models=["a2gen-iag"], moment_warm_start="yes"))


def test_cli_train_init_from_trains_every_weight_of_a_saved_model(data_dir, tmp_path, capsys, caplog, monkeypatch):
    """A second phase: the model a frozen-table run saved is evaluated first (its selected validation AUC) and then
    every weight trains, the table included; options that would build another model are refused by name."""
    table = ["--event-item-moments", "16", "--event-moment-source", "table"]
    base = ["train", "--data", str(data_dir), "--batch-size", "8", "--select-by", "mean_auc", *TINY_FLAGS, *table]
    assert main([*base, "--output", str(tmp_path / "first"), "--max-steps", "2", "--eval-every", "1",
                 "--moment-warm-start", "frozen"]) == 0
    first_log = json.loads((tmp_path / "first" / "training_log.json").read_text())
    first_best = max(entry["validation_mean_auc"] for entry in first_log["log_history"] if "validation_loss" in entry)
    saved = tmp_path / "first" / "model"
    second = [*base, "--init-from", str(saved), "--max-steps", "3", "--eval-before-training"]
    with caplog.at_level(logging.WARNING, logger="a2gen_hf"):  # a recipe's warm start gives way to the weights
        assert main([*second, "--output", str(tmp_path / "second"), "--no-best-epoch",
                     "--moment-warm-start", "frozen"]) == 0
    assert "the saved weights replace the warm starts" in caplog.text
    evaluations = [entry for entry in json.loads((tmp_path / "second" / "training_log.json").read_text())["log_history"]
                   if "validation_loss" in entry]
    assert evaluations[0]["step"] == 0 and evaluations[0]["validation_mean_auc"] == pytest.approx(first_best, abs=1e-6)
    name = "a2gen.features.item_moments.table.weight"
    before, after = weights(tmp_path / "first")[name], weights(tmp_path / "second")[name]
    assert not torch.equal(before, after)  # frozen in the first run, trained in the second
    capsys.readouterr()
    refusals = {
        "hidden_size (--hidden-size): 16 in the saved model, 32 here": ["--hidden-size", "32"],
        "holds a 'a2gen' model, not 'mmoe'": ["--model", "mmoe"],  # each field named with its flag (a probe, s25)
        "history_event_item_moments (--event-item-moments): 16 in the saved model, 8 here": ["--event-item-moments", "8"],
    }
    for message, flags in refusals.items():
        assert main([*second, "--output", str(tmp_path / "refused"), *flags]) == 2
        assert message in capsys.readouterr().err
    nowhere = [*base, "--init-from", str(tmp_path / "nowhere"), "--max-steps", "1"]
    assert main([*nowhere, "--output", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err  # an absolute path can be no Hub id: the folder alone is named
    assert f"{tmp_path / 'nowhere'}: no such folder ({tmp_path / 'nowhere'}). Give the folder that" in err, err
    assert not (tmp_path / "refused" / "model").exists()
    # A missing relative folder also reads as a Hub id ("runs/model"): before, only transformers' "couldn't connect
    # to 'https://huggingface.co'" came back, without a word about the folder.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    assert main([*base, "--init-from", "runs/nosuchmodel", "--max-steps", "1", "--output", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert f"runs/nosuchmodel: no such folder ({tmp_path / 'runs' / 'nosuchmodel'}), and no model was found for a Hub " \
           "repo of that name (" in err and "HF_HUB_OFFLINE=1" in err
    with pytest.raises(ValueError, match="gives every weight: drop the warm starts"):
        train_from_data_dir(data_dir, TrainingSettings(output_dir=str(tmp_path / "api"), max_steps=1),
                            model_overrides=dict(history_event_item_moments=16, history_event_moment_source="table",
                                                 **TINY), moment_warm_start="frozen", init_from=saved)


def test_compare_warm_starts_the_wide_path_and_selects_by_mean_auc(data_dir, tmp_path):
    from a2gen_hf.training.compare import ComparisonSettings, run_comparison

    overrides = dict(history_count_features=True, target_popularity_features=True, wide_path=True, **TINY)
    settings = ComparisonSettings(
        models=["mmoe-fair"], seeds=1, simple_baselines=[], bootstrap_resamples=40, wide_warm_start=True,
        wide_share_scale=10.0, model_overrides=overrides,
        training=TrainingSettings(output_dir=str(tmp_path / "runs"), num_epochs=3, early_stopping_patience=1,
                                  selection_metric="mean_auc", show_progress=False),
    )
    report = run_comparison(data_dir, tmp_path / "out", settings)
    assert report["settings"]["wide_warm_start"] and math.isfinite(report["models"]["mmoe-fair"]["mean_auc"]["mean"])
    # Every seed's value beside mean and std (before: mean and std only), and `a2gen report` still reads the file.
    saved = json.loads((tmp_path / "out" / "results.json").read_text())["models"]["mmoe-fair"]
    assert saved["mean_auc"]["seeds"] == [pytest.approx(saved["mean_auc"]["mean"])]
    assert all(len(cell["seeds"]) == 1 for cell in saved["auc"].values())
    from a2gen_hf.training.compare import render_report
    assert render_report(tmp_path / "out" / "results.json") == (tmp_path / "out" / "results.md").read_text()
    log = json.loads((tmp_path / "out" / "runs" / "mmoe-fair-seed0" / "training_log.json").read_text())
    evaluations = [entry for entry in log["log_history"] if "validation_loss" in entry]
    best = max(evaluations, key=lambda entry: entry["validation_mean_auc"])
    assert log["best_step"] == best["step"]
    table = (tmp_path / "out" / "results.md").read_text()
    assert "selection_metric=mean_auc" in table
    assert "Wide paths started as the logistic regression on counts: wide_residual=False" in table
    assert "wide_share_scale=10.0." in table and report["settings"]["wide_share_scale"] == 10.0
    choices = report["wide_start_regression"]["choices"]
    assert choices and all(choice["share_scale"] in (1.0, 10.0) and choice["C"] > 0 for choice in choices.values())
    with pytest.raises(ValueError, match=r"the wide warm start \(wide_warm_start=True\) starts the networks' wide path"):
        run_comparison(data_dir, tmp_path / "bad", ComparisonSettings(models=["mmoe"], wide_warm_start=True))


@pytest.mark.parametrize("name", ["a2gen-iag", "mmoe-fair"])
def test_every_tensor_comes_back_from_save_and_reload_even_where_fresh_memory_is_garbage(
    data_dir, name, tmp_path, monkeypatch
):
    """from_pretrained builds the model on the meta device and fills the tensors the file does not hold (buffers
    that are not saved) with `torch.empty_like`: memory that may hold NaN. Every tensor must come back, saved or
    rebuilt, whatever that memory held."""
    dataset, tokenizer, _ = load_data_dir(data_dir)
    options = dict(history_count_features=True, target_popularity_features=True, wide_path=True, **TINY)
    if name.startswith("a2gen"):
        options.update(occurrence_head=True, rare_id_threshold=2, rare_id_buckets=4)
    model = create_model(name, tokenizer, dataset, **options).eval()
    with torch.no_grad():  # every saved value differs from what a fresh model starts at
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.rand_like(tensor) + 0.5)
        if name.startswith("a2gen"):
            item_counts = torch.zeros(model.config.item_buckets, dtype=torch.long)
            item_counts[[10, 11]] = 5
            model.a2gen.features.mark_rare_ids(item_counts, torch.zeros(model.config.user_buckets), threshold=2)
    model.save_pretrained(tmp_path)
    empty_like = torch.empty_like

    def garbage_like(tensor, *args, **kwargs):
        value = empty_like(tensor, *args, **kwargs)
        return value.fill_(float("nan") if value.is_floating_point() else -7)

    monkeypatch.setattr(torch, "empty_like", garbage_like)
    reloaded = type(model).from_pretrained(tmp_path).eval()
    monkeypatch.undo()
    saved, rebuilt = dict(model.named_buffers()), dict(reloaded.named_buffers())
    assert saved.keys() == rebuilt.keys()
    for key, tensor in [*model.named_parameters(), *saved.items()]:
        torch.testing.assert_close(reloaded.get_parameter_or_buffer(key), tensor, msg=f"{key} did not come back")


def test_select_generator_by_loss_keeps_the_ranking_and_takes_the_generator_from_the_lowest_loss(
    simulated_data_dir, tmp_path, capsys
):
    """--select-generator-by-loss: the ranking's weights (the occurrence head) are the best mean-AUC evaluation's
    (here the start: --min-delta 1 keeps it), every other weight the lowest generator loss's (a trained one); the log
    names both steps. A ranking that reads the generator's weights is refused by name (exit 2)."""
    from safetensors.torch import load_file

    from a2gen_hf import A2GenForActionGeneration

    output = tmp_path / "split"
    argv = ["train", "--recipe", "sparse_logs", "--data", str(simulated_data_dir), "--epochs", "3", "--hidden-size",
            "8", "--num-attention-heads", "2", "--id-embedding-size", "8", "--no-progress", "--min-delta", "1.0",
            "--select-generator-by-loss", "--no-freeze-ranking"]  # the ranking trained, and selected apart
    assert main([*argv, "--output", str(output)]) == 0
    log = json.loads((output / "training_log.json").read_text())
    evaluations = [entry for entry in log["log_history"] if "validation_loss" in entry]
    lowest = min(evaluations, key=lambda entry: entry["validation_generator_loss"])["step"]
    assert log["best_step"] == 0 and log["best_generator_step"] == lowest > 0
    assert f"lowest validation generator loss: step {lowest}" in capsys.readouterr().out
    ranking, generator = load_file(output / "best_model.safetensors"), load_file(output / "best_generator.safetensors")
    model = A2GenForActionGeneration.from_pretrained(output / "model")
    saved = model.state_dict()
    heads = [name for name in saved if name.startswith("occurrence_head.") and name in ranking]
    others = [name for name in saved if name.startswith(("generator.", "a2gen.encoder.")) and name in generator]
    assert heads and others
    for name in heads:  # the ranking: the start's (actions given back to the regression have zero output rows)
        assert ((saved[name] == ranking[name]) | (saved[name] == 0)).all(), name
    assert torch.equal(saved["occurrence_head.hidden.weight"], ranking["occurrence_head.hidden.weight"])
    # ... and so are its scores: those of the best mean-AUC weights, on every action not given back.
    from a2gen_hf.data.collator import A2GenDataCollator
    from a2gen_hf.training.data_setup import load_data_dir

    data, tokenizer, _ = load_data_dir(simulated_data_dir)
    batch = A2GenDataCollator.from_config(model.config, tokenizer)([data["validation"][i] for i in range(len(data["validation"]))])
    best = A2GenForActionGeneration.from_pretrained(output / "model")
    best.load_state_dict(ranking, strict=False)
    kept = [tokenizer.convert_tokens_to_ids(name) for name in model.config.action_names
            if name not in log["given_back_to_the_start"]["regression_for"]]
    scores, expected = (m.eval().predict_actions(**batch).action_probabilities[:, kept] for m in (model, best))
    torch.testing.assert_close(scores, expected)
    assert not any(torch.equal(ranking[name], generator[name]) for name in others if ranking[name].dim() > 1)
    for name in others:  # the generator: the lowest loss's, times as kept or given back to the median
        if not name.startswith(("generator.heads.time", "generator.aux_heads.time")):
            assert torch.equal(saved[name], generator[name]), name
    refused = [*argv, "--occurrence-paths-input", "context", "--output", str(tmp_path / "refused")]
    assert main(refused) == 2 and not (tmp_path / "refused" / "model").exists()
    with pytest.raises(ValueError, match="select_generator_by_loss=True keeps the ranking"):
        TrainingSettings(output_dir=str(tmp_path), select_generator_by_loss=True)
    # (a probe) the message names only what is missing, and the way out the sparse_logs recipe's users need
    with pytest.raises(ValueError, match=r"set select_best_epoch=True, or switch it off, with the freezing that needs "
                                         r"it: select_generator_by_loss=False freeze_ranking=False \(the sparse_logs"):
        TrainingSettings(output_dir=str(tmp_path), select_generator_by_loss=True, selection_metric="mean_auc",
                         select_best_epoch=False)  # fmt: skip


def test_freeze_ranking_trains_the_generator_alone_and_selects_it_by_its_loss(simulated_data_dir, tmp_path):
    """freeze_ranking: after training, the ranking's state (the fitted occurrence head, the count features'
    statistics) is exactly the start's and ranks exactly as it did, while the generator trained; the best evaluation
    is the lowest generator loss (the ranking's mean AUC, the same at every evaluation, is computed once); the ranking's
    parameters take gradients again afterwards, also after a run that failed. Refused without
    select_generator_by_loss."""

    from accelerate import Accelerator

    from a2gen_hf.data.collator import A2GenDataCollator
    from a2gen_hf.training.data_setup import create_model, load_data_dir
    from a2gen_hf.training.loop import RANKING_PREFIXES, train
    from a2gen_hf.training.simple_baselines import start_from_regression

    data, tokenizer, _ = load_data_dir(simulated_data_dir)
    torch.manual_seed(0)
    model = create_model(
        "a2gen-iag", tokenizer, data, hidden_size=8, id_embedding_size=8, num_attention_heads=2,
        history_count_features=True, target_popularity_features=True, occurrence_head=True, wide_path=True,
        occurrence_paths_input="extra_only", use_id_embeddings=False,
    )  # fmt: skip
    start_from_regression(model, tokenizer, data, residual=True, frozen=True, fit_residual=True)
    start = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert any(name.startswith("occurrence_head.") for name in trainable)
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    batch = collator([data["validation"][i] for i in range(len(data["validation"]))])
    scores = model.eval().predict_actions(**batch).action_probabilities
    settings = TrainingSettings(
        output_dir=str(tmp_path), num_epochs=3, batch_size=16, dense_learning_rate=0.01, selection_metric="mean_auc",
        eval_every_steps=5, eval_before_training=True, select_generator_by_loss=True, freeze_ranking=True,
        show_progress=False,
    )  # fmt: skip
    result = train(model.train(), data["train"], collator, settings, eval_dataset=data["validation"],
                   accelerator=Accelerator(cpu=True))
    trained = result.model.state_dict()
    ranking = [name for name in start if name.startswith(RANKING_PREFIXES)]
    assert any(name.endswith("standardizer.count") for name in ranking)
    for name in ranking:
        assert torch.equal(trained[name], start[name]), name
    torch.testing.assert_close(result.model.eval().predict_actions(**batch).action_probabilities, scores)
    assert any(not torch.equal(trained[name], start[name]) for name in start if name.startswith("generator."))
    evaluations = [entry for entry in result.log_history if "validation_loss" in entry]
    assert len(evaluations) > 2 and [("validation_mean_auc" in entry) for entry in evaluations] == [True] + [False] * (
        len(evaluations) - 1)
    lowest = min(evaluations, key=lambda entry: entry["validation_generator_loss"])["step"]
    assert result.best_step == result.best_generator_step == lowest > 0
    assert {name for name, parameter in result.model.named_parameters() if parameter.requires_grad} == trainable
    assert not any(getattr(module, "frozen", False) for module in result.model.modules())

    def failing(features):
        raise RuntimeError("a bad batch")

    with pytest.raises(RuntimeError, match="a bad batch"):  # a failed run leaves the model as trainable as it came
        train(result.model, data["train"], failing, replace(settings, output_dir=str(tmp_path / "failed")),
              eval_dataset=data["validation"], accelerator=Accelerator(cpu=True))
    assert {name for name, parameter in result.model.named_parameters() if parameter.requires_grad} == trainable
    assert not any(getattr(module, "frozen", False) for module in result.model.modules())
    with pytest.raises(ValueError, match="freeze_ranking=True trains the generator alone"):
        TrainingSettings(output_dir=str(tmp_path), selection_metric="mean_auc", freeze_ranking=True)


def test_select_generator_by_loss_survives_a_resume(simulated_data_dir, tmp_path):
    """A run with the generator selected apart, stopped after 6 steps and resumed to 8, ends with the same best
    steps and the same weights as one run of 8 steps: the generator's best loss and step travel in the checkpoint."""
    from safetensors.torch import load_file

    base = ["train", "--recipe", "sparse_logs", "--data", str(simulated_data_dir), "--hidden-size", "8",
            "--num-attention-heads", "2", "--id-embedding-size", "8", "--no-progress", "--batch-size", "8",
            "--eval-every", "2", "--no-scale-eval-every", "--checkpoint-every", "2", "--dense-lr", "0.05",
            "--no-time-per-action", "--no-freeze-ranking", "--occurrence-linear-path", "--occurrence-hidden-size",
            "8", "--no-time-features", "--cpu"]  # the paper's time heads, the ranking trained as the recipe of
    # 2026-12-05 had it (without the history sessions' times): a trajectory whose generator's best comes by step 6
    assert main([*base, "--output", str(tmp_path / "whole"), "--max-steps", "8"]) == 0
    assert main([*base, "--output", str(tmp_path / "resumed"), "--max-steps", "6"]) == 0
    assert main([*base, "--output", str(tmp_path / "resumed"), "--max-steps", "8", "--resume"]) == 0
    logs = {name: json.loads((tmp_path / name / "training_log.json").read_text()) for name in ("whole", "resumed")}
    for key in ("best_step", "best_generator_step", "given_back_to_the_start"):
        assert logs["resumed"][key] == logs["whole"][key], key
    # The test needs the generator's best by the resume and a worse evaluation after it (step 8): a resumed run
    # that forgot its best would take step 8.
    assert 0 < logs["whole"]["best_generator_step"] <= 6
    whole, resumed = (load_file(next((tmp_path / name / "model").glob("*.safetensors"))) for name in ("whole", "resumed"))
    for name, tensor in whole.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=1e-6, msg=name)


def test_resume_a_checkpoint_written_before_a_field_existed(data_dir, tmp_path, capsys):
    """A checkpoint whose resume key lacks a setting or config field (written by an older version) resumes while the
    run uses that field's default (how the older run ran), and is refused, naming the field, when it does not."""
    output = tmp_path / "old"
    base = ["train", "--data", str(data_dir), "--output", str(output), "--batch-size", "64", "--checkpoint-every",
            "1", *TINY_FLAGS]
    assert main([*base, "--max-steps", "2"]) == 0
    manifest_path = latest_checkpoint(output) / CHECKPOINT_MANIFEST
    manifest = json.loads(manifest_path.read_text())
    for name in ("select_generator_by_loss", "patience_from_step"):  # fields a later version added
        del manifest["resume_key"]["settings"][name]
    del manifest["resume_key"]["model"]["config"]["occurrence_linear_path"]
    manifest_path.write_text(json.dumps(manifest))
    assert main([*base, "--max-steps", "3", "--patience-from-step", "5", "--resume"]) == 2
    assert "settings.patience_from_step (--patience-from-step): checkpoint '<absent>', now 5" in capsys.readouterr().err
    assert main([*base, "--max-steps", "3", "--resume"]) == 0
    assert json.loads((output / "training_log.json").read_text())["log_history"][-1]["step"] == 3


def test_a_comparison_of_simple_baselines_only_says_no_network_trained(data_dir, tmp_path):
    """Before: "networks: mean ± std over 1 seeds" and the networks' training settings, with no network trained."""
    from a2gen_hf.training.compare import ComparisonSettings, run_comparison

    settings = ComparisonSettings(models=[], seeds=1, simple_baselines=["propensity"], bootstrap_resamples=40)
    run_comparison(data_dir, tmp_path / "out", settings)
    table = (tmp_path / "out" / "results.md").read_text()
    assert "simple baselines only (no network trained)" in table
    assert "over 1 seeds" not in table and "Networks trained with" not in table


def test_a_warmup_as_long_as_the_run_is_warned_about(simulated_data_dir, tmp_path, caplog):
    """From a probe: --warmup-steps 100 in a 2-step run trained every step at a few % of the rate, without a word."""
    import logging

    base = ["train", "--data", str(simulated_data_dir), "--hidden-size", "8", "--id-embedding-size", "8",
            "--no-progress", "--max-steps", "2", "--cpu"]
    with caplog.at_level(logging.WARNING, logger="a2gen_hf.training.loop"):
        assert main([*base, "--output", str(tmp_path / "long"), "--warmup-steps", "100"]) == 0
    assert "warmup_steps=100 (--warmup-steps) is not shorter than the run's 2 steps" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="a2gen_hf.training.loop"):
        assert main([*base, "--output", str(tmp_path / "short"), "--warmup-steps", "1"]) == 0
    assert "--warmup-steps" not in caplog.text
