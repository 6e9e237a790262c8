"""
Train A2Gen (or MMoE / PLE) with its id tables sharded over processes by TorchRec (``a2gen_hf.torchrec_tables``).

Each process reads its share of every global batch; the user, item and side-feature tables are split row-wise (or
table-wise) over the processes and updated by TorchRec's fused row-wise optimizer in the backward pass; the dense
weights are replicated (DDP) and trained with AdamW. The result is a plain checkpoint (``OUTPUT/model``:
safetensors, config, tokenizer) that ``from_pretrained`` loads without TorchRec.

    # 2 CPU processes (gloo), the tables row-wise:
    torchrun --nproc_per_node 2 examples/train_sharded_torchrec.py --data data/sim --output runs/sharded
    # 8 GPUs on one machine (nccl), fused Adam on the tables:
    torchrun --nproc_per_node 8 examples/train_sharded_torchrec.py --data ... --output ... --device cuda --table-optimizer adam
    # 2 machines x 8 GPUs: the same on each machine, with --nnodes 2 --node_rank R --rdzv_endpoint HOST:PORT

Install TorchRec first: ``pip install -e ".[torchrec]" && pip install --no-deps torchrec==1.8.0`` (docs/torchrec.md).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import set_seed

from a2gen_hf.data import A2GenDataCollator
from a2gen_hf.data.collator import check_session_time_columns
from a2gen_hf.torchrec_tables import FUSED_OPTIMIZERS, SHARDING_TYPES, dense_parameters, plain_state_dict, shard_model
from a2gen_hf.training.data_setup import MODEL_CHOICES, create_model, load_data_dir


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1].strip())
    parser.add_argument("--data", required=True, help="data folder written by `a2gen simulate` / `a2gen prepare`")
    parser.add_argument("--output", required=True, help="the model goes to OUTPUT/model, the losses to OUTPUT/losses.json")
    parser.add_argument("--model", default="a2gen-iag", choices=list(MODEL_CHOICES))
    parser.add_argument("--sharding", default="row_wise", choices=SHARDING_TYPES, help="how the tables are split")
    parser.add_argument("--table-optimizer", default="rowwise_adagrad", choices=FUSED_OPTIMIZERS)
    parser.add_argument("--table-learning-rate", type=float, default=0.01)
    parser.add_argument("--dense-learning-rate", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256,
                        help="global batch (split over the processes), at most the training split's rows")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (-1: every epoch)")
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (nccl, one GPU per process)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-config", type=_config_fields, default={}, metavar="JSON",
                        help="model config fields as a JSON object, e.g. the count and time features of the sparse_logs "
                             "recipe: '{\"history_count_features\": true, \"history_time_features\": true}' (its "
                             "warm start and residual fit are a2gen train's; docs/torchrec.md)")
    args = parser.parse_args(argv)
    # A run that trains nothing is refused before any work (before: it saved the initial, random weights as
    # OUTPUT/model, which loads and evaluates like a trained checkpoint, and exited 0).
    if args.epochs < 1:
        parser.error(f"--epochs {args.epochs} trains nothing; give 1 or more.")
    if args.max_steps == 0 or args.max_steps < -1:
        parser.error(f"--max-steps {args.max_steps} trains nothing; give 1 or more, or -1 (the default) for every "
                     "step of --epochs.")
    if args.batch_size < 1:
        parser.error(f"--batch-size {args.batch_size} must be 1 or more (the global batch).")
    for flag, rate in (("--table-learning-rate", args.table_learning_rate), ("--dense-learning-rate",
                                                                            args.dense_learning_rate)):
        if not (math.isfinite(rate) and rate > 0):
            parser.error(f"{flag} {rate} must be a finite number > 0, e.g. 0.01.")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device} is no device; give cpu (gloo) or cuda (nccl, one GPU per process).")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA GPU here; use --device cpu (gloo).")
    if args.table_optimizer == "adam" and device.type == "cpu":  # before: refused after loading data and the model
        parser.error("--table-optimizer adam: TorchRec's fused Adam runs on GPUs only; on CPUs use sgd, adagrad or "
                     "rowwise_adagrad.")
    if Path(args.output).exists() and not Path(args.output).is_dir():  # before: found after training, at the save
        parser.error(f"--output {args.output} is a file; give a folder (the model goes to OUTPUT/model).")
    if not Path(args.data).is_dir():
        parser.error(f"--data {args.data}: no such folder; give a data folder of `a2gen simulate` / `a2gen prepare`.")
    if "RANK" not in os.environ:
        parser.error("run it under torchrun (it starts the processes and their group), e.g. torchrun "
                     "--nproc_per_node 2 examples/train_sharded_torchrec.py --data ... --output ...")
    return args


def _config_fields(text: str) -> dict:
    """``--model-config``: a JSON object of model config fields (checked by the config when the model is built)."""
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON ({error.msg})") from None
    if not isinstance(fields, dict):
        raise argparse.ArgumentTypeError(f"{text!r} must be a JSON object of config fields, e.g. '{{\"hidden_size\": 64}}'")
    return fields


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        train_and_save(args, device)
        # TorchRec's sharded modules hold threads that use the group: release them while it lives (torn down later,
        # at the interpreter's exit, they aborted a process now and then: "terminate called without an active
        # exception"), and let every process wait for rank 0's save.
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


def train_and_save(args: argparse.Namespace, device: torch.device) -> None:
    """Train on this process's share of every global batch; rank 0 saves. Every TorchRec object lives in here only."""
    rank, world_size = dist.get_rank(), dist.get_world_size()
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)

    def refuse(message: str) -> None:  # every process stops; one says why
        if rank == 0:
            print(f"train_sharded_torchrec.py: error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(2)

    if args.batch_size % world_size:
        refuse(f"--batch-size {args.batch_size} must be a multiple of the {world_size} processes.")
    try:
        dataset, tokenizer, _ = load_data_dir(args.data)
    except (OSError, ValueError) as error:  # not a data folder, or a damaged one: one line, not a traceback
        refuse(f"--data {args.data}: {error}")
    train_rows = len(dataset["train"])
    if args.batch_size > train_rows:  # only full global batches are trained (before: none, and the initial weights saved)
        largest = train_rows - train_rows % world_size
        fix = (f"give --batch-size {largest:,} or less (a multiple of the {world_size} processes)" if largest else
               f"the split has fewer rows than the {world_size} processes: use more data or fewer processes")
        refuse(f"--batch-size {args.batch_size:,} is larger than the {train_rows:,} rows of the training split of "
               f"{args.data}: not one full global batch, nothing would be trained; {fix}.")
    set_seed(args.seed)  # the same initial weights on every process
    try:
        model = create_model(args.model, tokenizer, dataset, **args.model_config)
    except ValueError as error:  # an unknown field, one the data decides, or a config that does not hold together
        refuse(f"--model-config: {error}")
    if getattr(model.config, "history_time_features", False):
        try:
            check_session_time_columns(dataset["train"].column_names, f"the training split of {args.data}")
        except ValueError as error:
            refuse(str(error))
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    sharded = shard_model(model, args.sharding, args.table_optimizer, args.table_learning_rate, device)
    optimizer = torch.optim.AdamW(dense_parameters(model), lr=args.dense_learning_rate)
    train, share = dataset["train"], args.batch_size // world_size
    losses, step = [], 0
    for epoch in range(args.epochs):
        if step == args.max_steps:  # --max-steps ends the run, not only the epoch it falls in
            break
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed + epoch)).tolist()
        for start in range(0, len(order) - args.batch_size + 1, args.batch_size):  # full global batches only
            rows = order[start + rank * share : start + (rank + 1) * share]
            batch = {k: v.to(device) for k, v in collator([train[i] for i in rows]).items()}
            loss = sharded(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            reduced = loss.detach().clone()
            dist.all_reduce(reduced)
            losses.append(float(reduced) / world_size)
            step += 1
            if rank == 0 and step % 10 == 0:
                print(f"epoch {epoch} step {step}: loss {losses[-1]:.4f}", flush=True)
            if step == args.max_steps:
                break
    state = plain_state_dict(sharded)  # collective: every process takes part
    if rank == 0:
        output = Path(args.output)
        model.save_pretrained(output / "model", state_dict=state)
        tokenizer.save_pretrained(output / "model")
        (output / "losses.json").write_text(json.dumps({"losses": losses, "processes": world_size}))
        print(f"saved {output / 'model'} after {step} steps (last loss {losses[-1]:.4f})")


if __name__ == "__main__":
    main()
