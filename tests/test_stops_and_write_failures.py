"""From a reliability probe (s25): what `a2gen train` says and leaves after Ctrl-C, SIGTERM and a full disk, output
paths it cannot serve (not UTF-8, read-only, inside the data), and the messages that named a flag twice or named
Python fields instead of flags."""

import errno
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from safetensors import SafetensorError

from a2gen_hf import cli, output_folders
from a2gen_hf.cli import main
from a2gen_hf.output_folders import OutputNotWritableError, output_lock, remove_dead_work_folders, staging_folder
from a2gen_hf.tokenization_a2gen import A2GenActionTokenizer
from a2gen_hf.training import checkpointing, loop

TINY_FLAGS = ["--hidden-size", "16", "--id-embedding-size", "16", "--no-progress", "--batch-size", "32"]


@pytest.fixture(autouse=True)
def offline_and_fresh_accelerate_state(monkeypatch, fresh_accelerate_state):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def error_of(capsys, command: str = "train") -> str:
    """The one error line of a command (anything else on stderr is a log message)."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(f"a2gen {command}: ")]
    assert len(lines) == 1, lines
    return lines[0]


def interrupted(*args, **kwargs):
    raise KeyboardInterrupt


# -- Ctrl-C and SIGTERM


def test_ctrl_c_in_training_after_an_earlier_model_says_resume(simulated_data_dir, tmp_path, monkeypatch, capsys):
    """A run killed in its test evaluation left model/ without eval_results.json; resumed with more steps and
    interrupted while training, the line said the (earlier, stale) model was saved and needed only `a2gen evaluate`.
    What this run did decides: it saved no model, so the advice is --resume."""
    output = tmp_path / "run"
    argv = ["train", "--data", str(simulated_data_dir), "--output", str(output), "--checkpoint-every", "2", *TINY_FLAGS]
    assert main([*argv, "--max-steps", "2"]) == 0
    (output / "eval_results.json").unlink()  # as a kill in the test evaluation leaves it
    capsys.readouterr()
    monkeypatch.setattr(loop._TrainingRun, "train_epochs", interrupted)
    assert main([*argv, "--max-steps", "4", "--resume"]) == 130
    error = error_of(capsys)
    assert error.startswith("a2gen train: interrupted; resume with --resume"), error
    assert "a2gen evaluate" not in error and "model was saved" not in error


def test_sigterm_prints_the_ctrl_c_line_and_exits_143(monkeypatch, capsys):
    """SIGTERM (timeout, scancel, a preempted job) ended a run with no line at all; it now stops the command as
    Ctrl-C does, with status 143 (128 + 15), and the handler is put back when the command ends."""
    before = signal.getsignal(signal.SIGTERM)

    def terminated(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("SIGTERM was not turned into an interruption")

    monkeypatch.setattr(cli, "run_train", terminated)
    assert main(["train", "--data", "d", "--output", "o", "--checkpoint-every", "5"]) == 143
    err = capsys.readouterr().err
    assert err.startswith("a2gen train: interrupted before the first checkpoint was complete (--checkpoint-every 5)") and err.count("\n") == 1
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_to_a_forked_child_ends_it_as_before(monkeypatch):
    """A forked worker (a data loader's, prepare's) keeps SIGTERM's default: it ends, it does not unwind as the
    command would."""
    monkeypatch.setattr(cli, "run_report", lambda args: _fork_and_terminate())
    assert main(["report", "r.json"]) == -signal.SIGTERM


def _fork_and_terminate() -> int:
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        finally:
            os._exit(3)  # reached only if SIGTERM did not end the child
    _, status = os.waitpid(child, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


# -- a full disk


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_checkpointing_is_one_line_and_leaves_no_partial_checkpoint(simulated_data_dir, tmp_path,
                                                                                      monkeypatch, capsys):
    output = tmp_path / "run"
    argv = ["train", "--data", str(simulated_data_dir), "--output", str(output), "--checkpoint-every", "2",
            "--max-steps", "4", *TINY_FLAGS]  # fmt: skip
    real_save_model = checkpointing.save_model

    def second_checkpoint_fails(module, path, *args, **kwargs):
        if "checkpoint-4" in path:
            no_space()
        return real_save_model(module, path, *args, **kwargs)

    monkeypatch.setattr(checkpointing, "save_model", second_checkpoint_fails)
    assert main(argv) == 2
    error = error_of(capsys)
    assert f"cannot write checkpoint-4 in {output}: no space left on the device. Free space there" in error
    assert "the folder holds one more than keep_checkpoints (CLI: --keep-checkpoints) keeps" in error
    assert error.endswith("Then run the same command with --resume: it continues from checkpoint-2."), error
    assert sorted(path.name for path in output.iterdir()) == ["checkpoint-2"]  # no .tmp-checkpoint-4
    monkeypatch.undo()
    # A plain rerun is refused with the flag named once (before: "pass --resume (--resume)").
    assert main(argv) == 2
    error = error_of(capsys)
    assert "already holds checkpoint-2 from an earlier run: pass --resume to continue it" in error, error
    assert "(--resume)" not in error and "resume=True" not in error


def test_a_full_disk_while_saving_the_model_removes_its_staging_folder(simulated_data_dir, tmp_path, monkeypatch,
                                                                       capsys):
    """The final save_pretrained failed with a traceback and left `.model.a2gen-staging-*`; a plain rerun was then
    refused without a word about --resume."""
    output = tmp_path / "run"
    argv = ["train", "--data", str(simulated_data_dir), "--output", str(output), "--max-steps", "2", *TINY_FLAGS]
    monkeypatch.setattr(A2GenActionTokenizer, "save_pretrained", no_space)
    assert main(argv) == 2
    error = error_of(capsys)
    assert f"cannot write model in {output}: no space left on the device." in error
    assert "run the same command with --resume: it starts from step 0 (no checkpoint is complete)" in error
    assert not list(tmp_path.glob("**/*a2gen-staging*")) and not (output / "model").exists()
    monkeypatch.undo()
    assert main(argv) == 2
    error = error_of(capsys)
    assert "holds an earlier run (training_log.json" in error and "pass --resume: with no checkpoint" in error


def test_a_safetensors_write_error_of_the_best_weights_is_named_too(simulated_data_dir, tmp_path, monkeypatch, capsys):
    """safetensors reports a full disk as SafetensorError("... I/O error: No space left on device (os error 28)"),
    not as an OSError."""
    output = tmp_path / "run"

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(checkpointing, "save_model", full)
    assert main(["train", "--data", str(simulated_data_dir), "--output", str(output), "--max-steps", "2",
                 *TINY_FLAGS]) == 2
    error = error_of(capsys)
    assert f"cannot write best_model.safetensors in {output}: no space left on the device." in error, error
    assert not (output / ".tmp-best-weights").exists()


def test_compare_after_a_full_disk_says_to_run_again_not_to_resume(simulated_data_dir, tmp_path, monkeypatch, capsys):
    """compare has no --resume (it trains its runs again): its line ends with that, not with train's advice."""
    from a2gen_hf.training import compare

    def full(*args, **kwargs):
        with output_folders.write_failures_named("best_model.safetensors", tmp_path / "cmp" / "runs" / "a",
                                                 "Then run the same command with resume=True (CLI: --resume)."):
            no_space()

    monkeypatch.setattr(compare, "run_comparison", full)
    assert main(["compare", "--data", str(simulated_data_dir), "--output", str(tmp_path / "cmp"), "--models",
                 "a2gen-iag"]) == 2
    error = error_of(capsys, "compare")
    assert error.endswith("no space left on the device. Free space there, or choose an output folder on a disk with "
                          "room. Then run the same command again."), error
    assert "resume" not in error


def test_other_write_errors_keep_their_reason():
    with pytest.raises(output_folders.OutputWriteError) as raised:
        with output_folders.write_failures_named("model", "runs/x", "Then retry."):
            raise OSError(errno.EIO, "Input/output error")
    assert str(raised.value) == "cannot write model in runs/x: Input/output error. Then retry."
    with pytest.raises(KeyError):  # not a write failure: as it is
        with output_folders.write_failures_named("model", "runs/x", "Then retry."):
            raise KeyError("x")


# -- output folders


def test_interrupted_checkpoint_folders_are_removed_when_a_run_starts(simulated_data_dir, tmp_path):
    """A `.tmp-checkpoint-N` of a killed run stayed for good when the resumed run never saved step N again."""
    output = tmp_path / "run"
    (output / ".tmp-checkpoint-120").mkdir(parents=True)
    (output / ".tmp-checkpoint-120" / "model.safetensors").write_bytes(b"partial")
    (output / ".tmp-notes").mkdir()  # not ours: stays
    assert main(["train", "--data", str(simulated_data_dir), "--output", str(output), "--max-steps", "1",
                 *TINY_FLAGS]) == 0
    assert not (output / ".tmp-checkpoint-120").exists() and (output / ".tmp-notes").is_dir()


def test_an_output_path_that_is_not_utf8_is_refused_before_any_work(tmp_path, capsys):
    output = os.fsdecode(bytes(tmp_path / "bad") + b"\xffname")
    assert main(["train", "--data", str(tmp_path / "data"), "--output", output, *TINY_FLAGS]) == 2
    error = error_of(capsys)
    assert "bad\\xffname is not a valid UTF-8 path" in error and "safetensors" in error
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_file_system_is_not_writable_like_a_refused_permission(tmp_path, monkeypatch):
    real_open, real_mkdir = os.open, Path.mkdir

    def read_only_open(path, *args, **kwargs):
        if str(path).endswith(output_folders.LOCK_SUFFIX):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only_open)
    with pytest.raises(OutputNotWritableError, match=r"is not writable \(Read-only file system\): the run writes a lock"):
        with output_lock(tmp_path / "out"):
            pass
    monkeypatch.setattr(os, "open", real_open)

    def read_only_mkdir(self, *args, **kwargs):
        if output_folders.STAGING_MARK in self.name:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only_mkdir)
    with pytest.raises(OutputNotWritableError, match="Give an output folder inside a folder you can write"):
        staging_folder(tmp_path / "out")


@pytest.mark.parametrize("inside", ["output", "data"])
def test_an_output_inside_the_data_or_around_it_is_refused(tmp_path, capsys, inside):
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    output, data_flag = (data / "train", data) if inside == "output" else (tmp_path, data)
    for command in ("train", "compare"):
        assert main([command, "--data", str(data_flag), "--output", str(output)]) == 2
        error = error_of(capsys, command)
        assert f"--output {output}" in error and f"--data {data_flag}" in error, error
        assert ("lies inside the data folder" if inside == "output" else "lies inside the output folder") in error
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["data", "train"]


def test_push_removes_the_work_folders_of_killed_pushes(tmp_path):
    """A push killed by a signal left its model-sized copy in /tmp (a2gen-push-*) for good; the next push removes
    those of processes that are gone."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / f"a2gen-push-{dead.pid}_abc").mkdir()
    (tmp_path / f"a2gen-push-{os.getpid()}_def").mkdir()  # a live push (this process)
    (tmp_path / "a2gen-push-old").mkdir()  # no pid: not ours to judge
    assert remove_dead_work_folders(tmp_path, "a2gen-push-") == [tmp_path / f"a2gen-push-{dead.pid}_abc"]
    assert {path.name for path in tmp_path.iterdir()} == {"a2gen-push-old", f"a2gen-push-{os.getpid()}_def"}


# -- messages: flags, not Python fields


def test_with_flags_names_the_resume_flag_once():
    message = "runs/x already holds checkpoint-2 from an earlier run: pass resume=True (CLI: --resume) to continue it"
    assert cli._with_flags(message, {"resume": False}) == (
        "runs/x already holds checkpoint-2 from an earlier run: pass --resume to continue it")


@pytest.mark.parametrize(("flags", "shown"), [
    (["--epochs", "0"], "--epochs 0 must be >= 1, or give --max-steps N"),
    (["--max-steps", "0"], "--max-steps 0 must be >= 1 (or leave it out: --epochs sets the run's length)"),
])  # fmt: skip
def test_a_run_without_steps_is_refused_naming_the_flags(tmp_path, capsys, flags, shown):
    assert main(["train", "--data", str(tmp_path / "d"), "--output", str(tmp_path / "o"), *flags]) == 2
    error = error_of(capsys)
    assert shown in error and "num_epochs" not in error and "max_steps" not in error


def test_init_from_differences_name_the_flags(simulated_data_dir, tmp_path, capsys):
    args = cli.parse_arguments(["train", "--data", "d", "--output", "o"])
    message = ("m does not fit this run: target_drops_repeated_start: True in the saved model, False here; "
               "history_pooling: 'sum' in the saved model, 'mean' here; item_buckets: 10 in the saved model, 20 here; "
               "use_id_embeddings: True in the saved model, False here. A model trained on ...")  # fmt: skip
    assert cli._saved_config_fields_with_flags(message, args) == (
        "m does not fit this run: target_drops_repeated_start (--drop-repeated-start): True in the saved model, False "
        "here; history_pooling (--history-pooling): 'sum' in the saved model, 'mean' here; item_buckets: 10 in the "
        "saved model, 20 here; use_id_embeddings (off with --id-free): True in the saved model, False here. A model "
        "trained on ...")
    first = tmp_path / "first"
    base = ["train", "--data", str(simulated_data_dir), "--max-steps", "1", *TINY_FLAGS]
    assert main([*base, "--output", str(first)]) == 0
    capsys.readouterr()
    assert main([*base, "--output", str(tmp_path / "second"), "--init-from", str(first / "model"),
                 "--history-pooling", "mean"]) == 2
    error = error_of(capsys)
    assert "history_pooling (--history-pooling): 'sum' in the saved model, 'mean' here" in error, error
    # The run folder instead of its model: the folder meant is named.
    assert main([*base, "--output", str(tmp_path / "third"), "--init-from", str(first)]) == 2
    assert f"Did you mean --init-from {first / 'model'}?" in error_of(capsys)



def test_resume_differences_name_the_flags(simulated_data_dir, tmp_path, capsys):
    """From a probe: a refused --resume listed `settings.dense_learning_rate: checkpoint ..., now ...`, not the flag."""
    args = cli.parse_arguments(["train", "--data", "d", "--output", "o"])
    message = ("differs: settings.dense_learning_rate: checkpoint 0.0005, now 0.001; settings.seed: checkpoint 0, now 2; "
               "model.config.hidden_size: checkpoint 16, now 32; data.fingerprint: checkpoint 'a', now 'b'")
    assert cli._saved_config_fields_with_flags(message, args) == (
        "differs: settings.dense_learning_rate (--dense-lr): checkpoint 0.0005, now 0.001; settings.seed (--seed): "
        "checkpoint 0, now 2; model.config.hidden_size (--hidden-size): checkpoint 16, now 32; data.fingerprint: "
        "checkpoint 'a', now 'b'")
    base = ["train", "--data", str(simulated_data_dir), "--output", str(tmp_path / "run"), "--checkpoint-every", "1",
            *TINY_FLAGS]
    assert main([*base, "--max-steps", "1"]) == 0
    capsys.readouterr()
    assert main([*base, "--max-steps", "2", "--resume", "--dense-lr", "0.001"]) == 2
    assert "settings.dense_learning_rate (--dense-lr): checkpoint" in error_of(capsys)


@pytest.mark.parametrize("command", ["evaluate", "generate"])
def test_a_run_folder_given_as_the_model_names_its_model_folder(tmp_path, capsys, command):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text(json.dumps({"model_type": "a2gen"}))
    assert main([command, "--model", str(run), "--data", str(tmp_path / "data")]) == 2
    error = error_of(capsys, command)
    assert f"{run} has no config.json" in error and f"Did you mean --model {run / 'model'}?" in error, error
    (run / "config.json").write_text("{}")  # a folder with its own config: no hint
    assert main([command, "--model", str(run), "--data", str(tmp_path / "data")]) == 2
    assert "Did you mean" not in error_of(capsys, command)


@pytest.mark.parametrize("name", ["someone/a2gen-model", "runs/missing/model"])
def test_a_model_that_is_neither_a_folder_nor_found_on_the_hub_says_both(tmp_path, monkeypatch, name):
    """Before: "someone/a2gen-model has no config.json (someone/a2gen-model/config.json does not exist)", after 30 s
    of retries where the Hub could not be reached: it blamed a folder that does not exist. Now the message says that
    no such folder exists, what a Hub repo of that name lacked, and how to stop waiting for the network."""
    from huggingface_hub import constants

    from a2gen_hf import A2GenForActionGeneration
    from a2gen_hf.strict_loading import CheckpointError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import: the variable alone is too late here
    with pytest.raises(CheckpointError) as raised:
        A2GenForActionGeneration.from_pretrained(name)
    message = str(raised.value)
    if name == "runs/missing/model":  # no Hub id can hold two slashes: the folder alone is named
        assert message == (f"{name}: no such folder ({tmp_path / name}). Give the folder that "
                           "model.save_pretrained(folder) wrote (an `a2gen train` run's OUTPUT/model), or a Hub repo "
                           "id (namespace/name) that holds one.")
    else:
        assert message.startswith(f"{name}: no such folder ({tmp_path / name}), and no model was found for a Hub repo")
        assert "HF_HUB_OFFLINE=1" in message and "does not exist);" not in message
