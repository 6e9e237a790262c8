"""The training loop's gradient accumulation at an epoch's end, the running loss a checkpoint keeps for every process,
what Ctrl-C says after training, and one 2-process launch: the fine-tuning example under DDP, the Trainer's eval_loss
of a split that does not divide evenly, and the first log entry after a resume."""

import argparse
import json
import os
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from conftest import accelerate_two_processes, make_batch, reset_accelerate_state, tiny_config
from test_trainer import offline_caches_and_one_thread  # noqa: F401  (the module's offline caches, one thread)

from a2gen_hf import A2GenForActionGeneration, cli
from a2gen_hf.cli import main
from a2gen_hf.data import A2GenDataCollator
from a2gen_hf.training import loop
from a2gen_hf.training.data_setup import create_model, load_data_dir
from a2gen_hf.training.loop import CHECKPOINT_MANIFEST, TrainingSettings, train
from a2gen_hf.training.trainer import A2GenTrainer, a2gen_compute_metrics, a2gen_training_arguments

REPO = Path(__file__).resolve().parents[1]

TINY = {"hidden_size": 16, "id_embedding_size": 16, "hidden_dropout_prob": 0.0}
TINY_FLAGS = ["--hidden-size", "16", "--id-embedding-size", "16", "--no-progress", "--cpu"]


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def tiny_run(data_dir, output, rows: int, **settings):
    """train() of the tiny IAG (no dropout) on the first ``rows`` training examples; the result and its log."""
    dataset, tokenizer, _ = load_data_dir(data_dir)
    torch.manual_seed(0)
    model = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    options = {"show_progress": False, "cpu": True, "log_every": 1, "select_best_epoch": False, **settings}
    result = train(model, dataset["train"].select(range(rows)), collator,
                   TrainingSettings(output_dir=str(output), **options))
    reset_accelerate_state()
    return result


def test_a_short_last_accumulation_averages_the_micro_batches_it_holds(simulated_data_dir, tmp_path):
    """40 examples: batches of 16 give 16, 16, 8; micro-batches of 8 accumulated 2 at a time give (8, 8), (8, 8),
    (8): the epoch's last step holds one micro-batch. Before, Accelerate still divided its loss by 2 and that step's
    gradient was half the large batch's; now every step, the last included, equals the large batch's."""
    large = tiny_run(simulated_data_dir, tmp_path / "large", 40, num_epochs=1, batch_size=16)
    accumulated = tiny_run(simulated_data_dir, tmp_path / "accumulated", 40, num_epochs=1, batch_size=8,
                           gradient_accumulation_steps=2)
    norms = [[entry["grad_norm"] for entry in result.log_history if "grad_norm" in entry]
             for result in (large, accumulated)]
    assert len(norms[0]) == len(norms[1]) == 3
    assert norms[1] == pytest.approx(norms[0], rel=1e-5)  # before: the third was half the large batch's
    losses = [[entry["loss"] for entry in result.log_history if "loss" in entry] for result in (large, accumulated)]
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)
    reference = dict(large.model.named_parameters())
    for name, value in accumulated.model.named_parameters():
        if not name.endswith("key.bias"):  # no gradient: AdamW turns its rounding noise into +-lr (test_training.py)
            torch.testing.assert_close(value, reference[name], rtol=0, atol=1e-6, msg=name)


def test_the_accumulation_scale_of_each_micro_batch():
    run = loop._TrainingRun.__new__(loop._TrainingRun)
    run.accelerator = Accelerator(cpu=True)
    run.accumulation, run.epoch_micro_batches = 3, 8  # steps of (0, 1, 2), (3, 4, 5) and the short (6, 7)
    assert [run._accumulation_scale(index) for index in range(8)] == [1, 1, 1, 1, 1, 1, 1.5, 1.5]
    run.epoch_micro_batches = 9  # no short step
    assert {run._accumulation_scale(index) for index in range(9)} == {1}
    run.epoch_micro_batches = None  # streaming: no epoch end
    assert run._accumulation_scale(7) == 1


def test_a_checkpoint_keeps_the_running_loss_averaged_over_processes(simulated_data_dir, tmp_path, monkeypatch):
    """The main process writes one running loss (the sum of the micro-batch losses since the last log entry) into
    the checkpoint, and every resumed process restores it before the next entry averages over processes: it must be
    the mean of the processes' sums, not the main process's own. One process stands in for two here: a second
    process whose sums are this one's + 2 makes every mean over processes this process's value + 1."""
    means = []

    def reduce(self, tensor, reduction="sum", scale=1.0):
        if reduction == "mean" and tensor.dim() == 0:
            means.append(tensor.item())
            return tensor + 1.0
        return tensor.clone()

    monkeypatch.setattr(Accelerator, "reduce", reduce)
    losses = []
    real_step = loop._TrainingRun.step

    def step(self, batch, batch_index):
        hook = self.model.register_forward_hook(lambda module, args, output: losses.append(output.loss.item()))
        try:
            return real_step(self, batch, batch_index)
        finally:
            hook.remove()

    monkeypatch.setattr(loop._TrainingRun, "step", step)
    # Checkpoint at step 3, the next log entry at step 4: the checkpoint holds the sum of steps 1-3.
    tiny_run(simulated_data_dir, tmp_path / "run", 64, max_steps=4, batch_size=16, checkpoint_every=3, log_every=4)
    manifest = json.loads((tmp_path / "run" / "checkpoint-3" / CHECKPOINT_MANIFEST).read_text())
    saved = manifest["progress"]["running_loss"]
    own = sum(losses[:3])
    assert manifest["progress"]["running_count"] == 3
    assert saved == pytest.approx(own + 1.0, rel=1e-6)  # before: own, the main process's sum alone


# ------------------------------------------------------------------------------------------------------ Ctrl-C


def test_ctrl_c_in_the_test_evaluation_says_how_to_score_the_saved_model(simulated_data_dir, tmp_path, monkeypatch,
                                                                         capsys):
    """Interrupted while scoring the test split (the model already saved, no eval_results.json): the line names the
    `a2gen evaluate` command that writes the metrics, and that command does (before: "run the command again", which
    the folder's earlier-run files then refused)."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "evaluate_model", interrupted)
    output = tmp_path / "run"
    assert main(["train", "--data", str(simulated_data_dir), "--output", str(output), "--max-steps", "2",
                 "--batch-size", "32", *TINY_FLAGS]) == 130
    error = capsys.readouterr().err
    assert (output / "model" / "config.json").is_file() and not (output / "eval_results.json").exists()
    assert "no checkpoint was written" not in error and "interrupted during the test evaluation" in error
    command = error[error.index("`a2gen evaluate") + 1 : error.rindex("`")].split()
    assert command[:4] == ["a2gen", "evaluate", "--model", str(output / "model")]
    monkeypatch.undo()
    assert main(command[1:]) == 0
    assert "mean_auc" in json.loads((output / "eval_results.json").read_text())
    assert main(["train", "--data", str(simulated_data_dir), "--output", str(output), "--max-steps", "2",
                 *TINY_FLAGS]) == 2  # a plain run again is still refused, as the line no longer suggests it


def interrupted_args(output, data, checkpoint_every=0):
    return argparse.Namespace(command="train", output=str(output), data=str(data), checkpoint_every=checkpoint_every)


def test_ctrl_c_messages_follow_what_the_output_folder_holds(tmp_path, monkeypatch):
    data, output = tmp_path / "data", tmp_path / "run"
    (data / "test").mkdir(parents=True)
    # Nothing written yet: run again; with checkpoints: resume.
    assert cli.interrupted_message(interrupted_args(output, data)).startswith(
        "interrupted; no checkpoint was written (--checkpoint-every 0): run the command again")
    # (a probe) with checkpoints, but none complete yet: before, "continues from the last checkpoint", which --resume
    # did not find (only a half-written .tmp-checkpoint-N), so it started from step 0
    assert cli.interrupted_message(interrupted_args(output, data, 5)) == (
        f"interrupted before the first checkpoint was complete (--checkpoint-every 5): the same command with --resume "
        f"starts again from step 0 in {output}")
    from a2gen_hf.training import checkpointing

    monkeypatch.setattr(checkpointing, "latest_checkpoint", lambda folder: Path(folder) / "checkpoint-5")
    assert cli.interrupted_message(interrupted_args(output, data, 5)).startswith("interrupted; resume with --resume")
    # An evaluation kept its best weights, no checkpoint: a plain run into the folder is refused, --resume starts over.
    output.mkdir()
    (output / "best_model.safetensors").write_bytes(b"")
    message = cli.interrupted_message(interrupted_args(output, data))
    assert "best_model.safetensors" in message and "run the command again with --resume" in message
    # The model saved by this run, the test metrics not written.
    from a2gen_hf.training import loop

    monkeypatch.setattr(loop, "saved_by_this_process", lambda folder: True)
    (output / "model").mkdir()
    (output / "model" / "config.json").write_text("{}")
    for every in (0, 5):
        message = cli.interrupted_message(interrupted_args(output, data, every))
        assert f"a2gen evaluate --model {output / 'model'} --data {data} --json {output / 'eval_results.json'}" in message
    (data / "test").rmdir()  # no test split: nothing more to do
    assert "the data has no test split" in cli.interrupted_message(interrupted_args(output, data))
    # A finished run (eval_results.json written), resumed and interrupted: resume again.
    (output / "eval_results.json").write_text("{}")
    assert cli.interrupted_message(interrupted_args(output, data, 5)).startswith("interrupted; resume with --resume")


def test_ctrl_c_is_reported_by_the_main_process_only(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_train", interrupted)
    argv = ["train", "--data", "d", "--output", "o", "--checkpoint-every", "5"]
    monkeypatch.setenv("RANK", "1")  # another process of accelerate launch / torchrun
    assert main(argv) == 130
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    assert main(argv) == 130
    assert capsys.readouterr().err.startswith("a2gen train: interrupted before the first checkpoint was complete (--checkpoint-every 5)")


# ------------------------------------------------------------------------------------------ 2 processes (DDP)

# Run by both processes of one `accelerate launch` (starting Python + torch is most of its ~25 s):
# 1. examples/finetune_with_trainer.py, recording whether train() wrapped the model in DDP and the trained weights;
# 2. A2GenTrainer.evaluate of the validation split (36 examples) in batches of 10 per process (the last padded);
# 3. the Accelerate loop: a checkpoint at step 3, a log entry at step 4, and a run resumed from that checkpoint.
DDP_PROBE = textwrap.dedent(
    """
    import hashlib, json, os, runpy, shutil, sys
    import torch
    from accelerate import Accelerator, PartialState
    from a2gen_hf.data import A2GenDataCollator
    from a2gen_hf.training.data_setup import create_model, load_data_dir
    from a2gen_hf.training.loop import TrainingSettings, train
    from a2gen_hf.training.trainer import A2GenTrainer, a2gen_compute_metrics, a2gen_training_arguments

    example, data_dir, out = sys.argv[1:4]
    rank = int(os.environ["RANK"])
    dataset, tokenizer, _ = load_data_dir(data_dir)
    tiny = {"hidden_size": 16, "id_embedding_size": 16}
    result = {}
    torch.manual_seed(0)
    checkpoint = os.path.join(out, f"checkpoint{rank}")  # the same weights (seed 0), a folder per process
    create_model("a2gen-iag", tokenizer, dataset, **tiny).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    real_train = A2GenTrainer.train

    def train_and_record(self, *args, **kwargs):
        output = real_train(self, *args, **kwargs)
        result["wrapped"] = type(self.model_wrapped).__name__
        result["training_loss"] = output.training_loss
        weights = b"".join(p.detach().numpy().tobytes() for p in self.model.parameters())
        result["weights"] = hashlib.sha256(weights).hexdigest()
        return output

    A2GenTrainer.train = train_and_record
    sys.argv = [example, "--checkpoint", checkpoint, "--data", data_dir, "--output", os.path.join(out, "ft"),
                "--max-steps", "2", "--batch-size", "16", "--learning-rate", "5e-3"]
    runpy.run_path(example, run_name="__main__")
    A2GenTrainer.train = real_train

    torch.manual_seed(0)
    model = create_model("a2gen-iag", tokenizer, dataset, **tiny)
    arguments = a2gen_training_arguments(os.path.join(out, "ev"), per_device_eval_batch_size=10, report_to="none",
                                         disable_tqdm=True)
    trainer = A2GenTrainer(model=model, args=arguments, eval_dataset=dataset["validation"],
                           data_collator=A2GenDataCollator.from_config(model.config, tokenizer),
                           compute_metrics=a2gen_compute_metrics(model.config))
    result["eval_loss"] = trainer.evaluate()["eval_loss"]

    settings = dict(max_steps=4, batch_size=8, checkpoint_every=3, log_every=4, keep_checkpoints=0,
                    show_progress=False, select_best_epoch=False)

    def run(folder, resume):
        torch.manual_seed(0)
        model = create_model("a2gen-iag", tokenizer, dataset, **tiny)
        outcome = train(model, dataset["train"], A2GenDataCollator.from_config(model.config, tokenizer),
                        TrainingSettings(output_dir=folder, resume=resume, **settings), accelerator=Accelerator())
        return [entry for entry in outcome.log_history if "loss" in entry][-1]

    result["uninterrupted"] = run(os.path.join(out, "reference"), False)
    state = PartialState()
    if state.is_main_process:
        os.makedirs(os.path.join(out, "resumed"))
        shutil.copytree(os.path.join(out, "reference", "checkpoint-3"), os.path.join(out, "resumed", "checkpoint-3"))
    state.wait_for_everyone()
    result["resumed"] = run(os.path.join(out, "resumed"), True)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as file:
        json.dump(result, file)
    """
)


@pytest.mark.slow
def test_two_processes_fine_tune_with_ddp_count_each_example_once_and_resume_the_log(simulated_data_dir, tmp_path):
    """Under `accelerate launch` with 2 processes: (1) the fine-tuning example trains with DDP (before, its
    evaluate() before train() left the model unwrapped and each process trained its own copy) and prints once;
    (2) the Trainer's eval_loss of 36 examples in batches of 10 per process is the one-process loss (before, the 4
    copies that pad process 1's last batch counted in it), and its training_loss is the processes' mean, one figure (before,
each process's own); (3) the first log entry after a resume from a checkpoint
    between two entries is the uninterrupted run's (before, every process restored the main process's partial sum)."""
    probe = tmp_path / "probe.py"
    probe.write_text(DDP_PROBE)
    command = [
        *accelerate_two_processes(), str(probe),
        str(REPO / "examples" / "finetune_with_trainer.py"), str(simulated_data_dir), str(tmp_path),
    ]
    environment = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1",
                   "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [rank["wrapped"] for rank in ranks] == ["DistributedDataParallel"] * 2
    assert ranks[0]["weights"] == ranks[1]["weights"]  # synchronised: one model, whichever process saves it
    # 2 steps, no logging step between: the Trainer's whole training_loss was each process's own before
    assert ranks[0]["training_loss"] == pytest.approx(ranks[1]["training_loss"], rel=1e-6)
    assert done.stdout.count("validation before:") == 1 and done.stdout.count("test after:") == 1
    assert "find_unused_parameters=True" not in done.stderr  # a2gen_training_arguments: no search, no warning

    dataset, tokenizer, _ = load_data_dir(simulated_data_dir)
    torch.manual_seed(0)
    model = create_model("a2gen-iag", tokenizer, dataset, hidden_size=16, id_embedding_size=16)
    arguments = a2gen_training_arguments(str(tmp_path / "one"), per_device_eval_batch_size=10, report_to="none",
                                         disable_tqdm=True, use_cpu=True)
    trainer = A2GenTrainer(model=model, args=arguments, eval_dataset=dataset["validation"],
                           data_collator=A2GenDataCollator.from_config(model.config, tokenizer),
                           compute_metrics=a2gen_compute_metrics(model.config))
    assert len(dataset["validation"]) % 20 and len(dataset["validation"]) % 20 > 10  # process 1's last batch padded
    one_process = trainer.evaluate()["eval_loss"]
    for rank in ranks:
        assert rank["eval_loss"] == pytest.approx(one_process, rel=1e-6)
        assert rank["uninterrupted"]["step"] == rank["resumed"]["step"] == 4
        assert rank["resumed"]["loss"] == pytest.approx(rank["uninterrupted"]["loss"], rel=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# A batch whose histories are all empty under DDP without find_unused_parameters


def _empty_history_batch(config, seed):
    batch = make_batch(config, seed=seed)
    if seed == 0:  # every example of the first step is a user's first session: nothing in its history
        batch.update(history_item_ids=torch.zeros_like(batch["history_item_ids"]),
                     history_action_ids=torch.zeros_like(batch["history_action_ids"]))  # fmt: skip
    return batch


def _ddp_steps(rank: int, port: int, out: str) -> None:
    """Three DDP steps, the first on a batch without histories. As in the TorchRec tests, the DDP model is released
    while the process group lives (gc, barrier, then destroy): destroyed after the group, its reducer joined gloo's
    threads while they waited for the GIL, and the process hung (one CI run)."""
    import gc

    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        _ddp_train(rank, out)
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _ddp_train(rank: int, out: str) -> None:
    from a2gen_hf.training.optimization import with_every_weight_in_the_graph

    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(A2GenForActionGeneration(tiny_config("iag")).train())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(3):
        loss = with_every_weight_in_the_graph(model(**_empty_history_batch(model.module.config, step + rank)).loss, model)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    if rank == 0:
        Path(out).write_text("3 steps")


def test_a_batch_without_histories_keeps_every_weight_in_the_graph(tmp_path):
    """Histories that are all empty skip the history encoder: 26 of IAG's weights took no gradient, and DDP without
    find_unused_parameters (Accelerate's default, and a2gen_training_arguments') failed on the next step ("Expected
    to have finished reduction in the prior iteration"). The loop and A2GenTrainer add 0 x one element of each weight
    under several processes: same loss and gradients, every weight in the graph."""
    import socket

    import torch.multiprocessing as mp

    from a2gen_hf.training.optimization import with_every_weight_in_the_graph

    torch.manual_seed(0)
    model = A2GenForActionGeneration(tiny_config("iag")).train()
    batch = _empty_history_batch(model.config, 0)
    loss = model(**batch).loss
    loss.backward()
    left_out = {name for name, p in model.named_parameters() if p.grad is None}
    assert left_out, "the premise: an empty-history batch leaves the history encoder without gradients"
    plain = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    touched = with_every_weight_in_the_graph(model(**batch).loss, model)
    assert touched.item() == loss.item()
    touched.backward()
    assert all(p.grad is not None for p in model.parameters())
    for name, p in model.named_parameters():
        expected = plain.get(name, torch.zeros_like(p))
        assert torch.equal(p.grad, expected), name
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "done.txt"
    context = mp.start_processes(_ddp_steps, args=(port, str(out)), nprocs=2, start_method="spawn", join=False)
    deadline = time.monotonic() + 240
    while not context.join(timeout=5):  # a hung process fails the test instead of the whole run
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two DDP processes did not finish within 240 s")
    assert out.read_text() == "3 steps"


def test_each_process_evaluates_its_own_part_even_of_a_split_smaller_than_the_processes():
    """(a probe) The validation passes split the split with datasets' shard(contiguous=True), which raises IndexError
    on a process past the split's end: a 1-example validation split crashed a 2-process run at its first
    validation, after the training before it. The parts are shard's, and such a process gets an empty one."""
    from types import SimpleNamespace

    import datasets

    for size in (0, 1, 2, 3, 7, 36):
        split = datasets.Dataset.from_dict({"row": list(range(size))})
        for processes in (1, 2, 3, 4):
            parts = [list(loop.process_part(split, SimpleNamespace(num_processes=processes, process_index=index))["row"])
                     for index in range(processes)]  # fmt: skip
            assert sum(parts, []) == list(range(size))  # every example once, in order
            for index, part in enumerate(parts):
                if index < size:
                    assert part == list(split.shard(processes, index, contiguous=True)["row"])
                else:
                    assert part == []
                    if size:  # what the loop called before (an empty split shards to empty parts)
                        with pytest.raises(IndexError):
                            split.shard(processes, index, contiguous=True)
