"""The Accelerate training loop behind ``a2gen train``, ``a2gen compare`` and ``examples/train_accelerate.py``.

One process or many (DDP through ``accelerate launch``), gradient accumulation, bf16 / fp16, separate learning
rates for embedding tables and dense weights, checkpoints every N steps written atomically, exact resume, best-epoch
selection on the validation loss and evaluation at the end. Works with any model of this package that takes the
collator's batch and returns ``.loss`` (A2Gen, MMoE, PLE).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

CHECKPOINT_PREFIX = "checkpoint-"


@dataclass
class TrainingSettings:
    """
    What to train for and how. Learning rates default to the paper's: 5e-4 for dense weights and 1e-4 for embedding
    tables. ``batch_size`` is per process and per accumulation micro-step.
    """

    output_dir: str
    num_epochs: int = 3
    max_steps: int | None = None
    batch_size: int = 256
    eval_batch_size: int = 1024
    dense_learning_rate: float = 5e-4
    embedding_learning_rate: float = 1e-4
    weight_decay: float = 0.0
    embedding_weight_decay: float = 0.0
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "no"
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    resume: bool = False
    seed: int = 0
    log_every: int = 20
    select_best_epoch: bool = True
    shuffle_buffer_size: int = 10_000
    cpu: bool = False
    show_progress: bool = True

    def __post_init__(self):
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision={self.mixed_precision!r}; use 'no', 'bf16' or 'fp16'.")
        if self.gradient_accumulation_steps < 1 or self.batch_size < 1:
            raise ValueError("gradient_accumulation_steps and batch_size must be >= 1.")
        if self.max_steps is None and self.num_epochs < 1:
            raise ValueError("Set num_epochs >= 1 or max_steps.")


@dataclass
class TrainingResult:
    """What a run produced: the trained model (best epoch if selected), its log and where things were saved."""

    model: nn.Module
    global_step: int
    log_history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    output_dir: str | None = None


class _Progress:
    """Step counters saved with every checkpoint, so a resumed run continues at the same batch."""

    def __init__(self):
        self.global_step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.best_validation_loss = math.inf
        self.best_epoch = -1
        self.log_history: list[dict[str, Any]] = []

    def state_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        vars(self).update(state)


def parameter_groups(model: nn.Module, settings: TrainingSettings) -> list[dict[str, Any]]:
    """Embedding tables and dense weights, each with its own learning rate and weight decay."""
    embedding_ids = {
        id(module.weight) for module in model.modules() if isinstance(module, nn.Embedding)
    }
    embeddings = [p for p in model.parameters() if id(p) in embedding_ids and p.requires_grad]
    dense = [p for p in model.parameters() if id(p) not in embedding_ids and p.requires_grad]
    return [
        {"params": embeddings, "lr": settings.embedding_learning_rate, "weight_decay": settings.embedding_weight_decay},
        {"params": dense, "lr": settings.dense_learning_rate, "weight_decay": settings.weight_decay},
    ]


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint; half-written ones never carry the final name (they are renamed when done)."""
    folder = Path(output_dir)
    candidates = [
        path
        for path in folder.glob(f"{CHECKPOINT_PREFIX}*")
        if path.is_dir() and path.name[len(CHECKPOINT_PREFIX) :].isdigit()
    ]
    return max(candidates, key=lambda path: int(path.name[len(CHECKPOINT_PREFIX) :]), default=None)


def _save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int, keep: int) -> None:
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    temporary = output_dir / f".tmp-{CHECKPOINT_PREFIX}{step}"
    if accelerator.is_main_process and temporary.exists():
        shutil.rmtree(temporary)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        os.replace(temporary, final)  # atomic: a checkpoint either exists complete or not at all
        older = sorted(
            (p for p in output_dir.glob(f"{CHECKPOINT_PREFIX}*") if p.name[len(CHECKPOINT_PREFIX) :].isdigit()),
            key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]),
        )
        for stale in older[:-keep] if keep > 0 else []:
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()


def _epoch_loader(dataset, collator, settings: TrainingSettings, epoch: int, accelerator: Accelerator):
    """Map-style data is reshuffled per epoch with seed + epoch (so a resumed epoch sees the same order) and
    sharded by Accelerate; a streaming dataset is split across processes by datasets itself."""
    if isinstance(dataset, datasets.IterableDataset):
        shard = datasets.distributed.split_dataset_by_node(
            dataset, rank=accelerator.process_index, world_size=accelerator.num_processes
        )
        shard = shard.shuffle(seed=settings.seed, buffer_size=settings.shuffle_buffer_size)
        shard.set_epoch(epoch)
        return DataLoader(shard, batch_size=settings.batch_size, collate_fn=collator), False
    shuffled = dataset.shuffle(seed=settings.seed + epoch) if isinstance(dataset, datasets.Dataset) else dataset
    loader = DataLoader(shuffled, batch_size=settings.batch_size, collate_fn=collator, shuffle=False)
    return accelerator.prepare_data_loader(loader), True


@torch.no_grad()
def validation_loss(model: nn.Module, dataset, collator, settings: TrainingSettings, accelerator: Accelerator) -> float:
    """Mean loss over the validation split, weighted by batch size and averaged across processes."""
    model.eval()
    loader = accelerator.prepare_data_loader(
        DataLoader(dataset, batch_size=settings.eval_batch_size, collate_fn=collator)
    )
    total = torch.zeros(2, device=accelerator.device)
    for batch in loader:
        size = batch["labels"].shape[0]
        total += torch.stack([model(**batch).loss.float() * size, torch.tensor(float(size), device=total.device)])
    total = accelerator.reduce(total, reduction="sum")
    model.train()
    return (total[0] / total[1].clamp_min(1)).item()


def train(
    model: nn.Module,
    train_dataset,
    collator,
    settings: TrainingSettings,
    eval_dataset=None,
    accelerator: Accelerator | None = None,
) -> TrainingResult:
    """
    Train ``model`` on ``train_dataset`` (a ``datasets.Dataset`` or ``IterableDataset`` of on-disk examples) with
    ``collator``. With ``eval_dataset`` and ``settings.select_best_epoch`` the weights of the epoch with the lowest
    validation loss are kept (the networks here overfit id embeddings after one or two epochs).

    Raises:
        FloatingPointError: the loss became NaN or inf; the message names the step and the batch.
    """
    output_dir = Path(settings.output_dir)
    accelerator = accelerator or Accelerator(
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        mixed_precision=settings.mixed_precision,
        cpu=settings.cpu,
    )
    set_seed(settings.seed)
    streaming = isinstance(train_dataset, datasets.IterableDataset)
    if streaming and settings.max_steps is None:
        raise ValueError("A streaming (IterableDataset) input has no length: set max_steps.")
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)

    optimizer = torch.optim.AdamW(parameter_groups(model, settings))
    model, optimizer = accelerator.prepare(model, optimizer)
    progress = _Progress()
    accelerator.register_for_checkpointing(progress)
    if settings.resume:
        checkpoint = latest_checkpoint(output_dir)
        if checkpoint is not None:
            accelerator.load_state(str(checkpoint))
            accelerator.print(f"Resumed from {checkpoint} (step {progress.global_step}).")

    steps_per_epoch = None
    if not streaming:
        world_batches = math.ceil(len(train_dataset) / (settings.batch_size * accelerator.num_processes))
        steps_per_epoch = math.ceil(world_batches / settings.gradient_accumulation_steps)
    total_steps = settings.max_steps or steps_per_epoch * settings.num_epochs
    best_state = None
    bar = tqdm(
        total=total_steps,
        initial=progress.global_step,
        desc="training",
        disable=not (settings.show_progress and accelerator.is_local_main_process),
    )
    model.train()
    running_loss, running_count = 0.0, 0
    while progress.global_step < total_steps:
        loader, prepared = _epoch_loader(train_dataset, collator, settings, progress.epoch, accelerator)
        skip = progress.step_in_epoch * settings.gradient_accumulation_steps
        batches = accelerator.skip_first_batches(loader, skip) if (skip and prepared) else loader
        for batch_index, batch in enumerate(batches, start=skip):
            if not prepared:
                batch = {key: value.to(accelerator.device) for key, value in batch.items()}
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"Loss is {loss.item()} at step {progress.global_step}, batch {batch_index} of epoch "
                        f"{progress.epoch}; check that batch's inputs or lower the learning rate."
                    )
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            running_loss += loss.detach().float().item()
            running_count += 1
            if not accelerator.sync_gradients:
                continue
            progress.global_step += 1
            progress.step_in_epoch += 1
            bar.update(1)
            if progress.global_step % settings.log_every == 0 or progress.global_step == total_steps:
                entry = {"step": progress.global_step, "epoch": progress.epoch, "loss": running_loss / running_count}
                progress.log_history.append(entry)
                bar.set_postfix(loss=f"{entry['loss']:.4f}")
                running_loss, running_count = 0.0, 0
            if settings.checkpoint_every and progress.global_step % settings.checkpoint_every == 0:
                _save_checkpoint(accelerator, output_dir, progress.global_step, settings.keep_checkpoints)
            if progress.global_step >= total_steps:
                break
        if not streaming or progress.global_step >= total_steps:
            if eval_dataset is not None:
                loss_value = validation_loss(model, eval_dataset, collator, settings, accelerator)
                progress.log_history.append(
                    {"step": progress.global_step, "epoch": progress.epoch, "validation_loss": loss_value}
                )
                if loss_value < progress.best_validation_loss:
                    progress.best_validation_loss, progress.best_epoch = loss_value, progress.epoch
                    if settings.select_best_epoch:
                        best_state = {
                            key: value.detach().clone()
                            for key, value in accelerator.unwrap_model(model).state_dict().items()
                        }
            progress.epoch += 1
            progress.step_in_epoch = 0
    bar.close()

    trained = accelerator.unwrap_model(model)
    if best_state is not None:
        trained.load_state_dict(best_state)
    if accelerator.is_main_process:
        (output_dir / "training_log.json").write_text(
            json.dumps(
                {"settings": asdict(settings), "log_history": progress.log_history, "best_epoch": progress.best_epoch},
                indent=2,
            )
        )
    return TrainingResult(
        model=trained,
        global_step=progress.global_step,
        log_history=progress.log_history,
        best_epoch=progress.best_epoch if progress.best_epoch >= 0 else None,
        output_dir=str(output_dir),
    )
