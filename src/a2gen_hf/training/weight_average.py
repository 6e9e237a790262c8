"""An exponential moving average of the trained weights (``TrainingSettings.ema_decay``), evaluated and kept in their
place.

Every ``every`` optimizer steps the average moves towards the weights: ``average += (1 - decay ** every) *
(weights - average)``, so ``decay`` is the weight an average keeps per optimizer step whatever ``every`` is (timm's
``ModelEmaV3``, Polyak averaging). It starts as the weights the run starts from; with ``warmup`` the share kept
at step t is ``min(decay, (1 + t) / (10 + t))`` (TensorFlow's and timm's warmup), so that a run from fresh weights
does not remember them for about ``1 / (1 - decay)`` steps. Validation evaluations, the best
evaluation's saved weights and the run's final weights are the average's; the optimizer goes on training the
weights themselves. Only trainable floating-point parameters are averaged (buffers and frozen weights stay the
model's). The average is saved in checkpoints as safetensors (:data:`WEIGHT_AVERAGE_FILE`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..output_folders import replacing_file

# The average's file in a checkpoint folder.
WEIGHT_AVERAGE_FILE = "weight_average.safetensors"


def check_average_settings(decay: float, every: int) -> None:
    """Refuse a ``decay`` outside (0, 1) or an ``every`` below 1, naming them."""
    if not 0.0 < decay < 1.0:
        raise ValueError(f"decay={decay} must be in (0, 1): the share of the average kept per optimizer step.")
    if every < 1:
        raise ValueError(f"every={every} must be >= 1 (optimizer steps between updates of the average).")


def missing_average(folder: str | os.PathLike) -> ValueError:
    """The error for a checkpoint ``folder`` without :data:`WEIGHT_AVERAGE_FILE`, resumed with an average."""
    return ValueError(
        f"{folder} holds no {WEIGHT_AVERAGE_FILE}: it was written without a moving average of the weights. "
        "Resume without the average (--ema-decay / weight_average_decay), or start a new output folder."
    )


class WeightAverage:
    """The moving average of ``model``'s trainable parameters.

    Args:
        model: the unwrapped model (a DDP-wrapped one's ``module``): its parameters are read in place.
        decay: the share of the average kept per optimizer step, in (0, 1); 0.999 averages over about 1,000 steps.
        every: update every this many optimizer steps (with ``decay ** every``), to spend less time on large tables.
        warmup: keep ``min(decay, (1 + step) / (10 + step))`` per step instead of ``decay``.
    """

    def __init__(self, model: nn.Module, decay: float, every: int = 1, warmup: bool = False):
        check_average_settings(decay, every)
        self.decay, self.every, self.warmup = decay, every, warmup
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad and p.is_floating_point()]
        self.names = [name for name, _ in named]
        self.parameters = [p for _, p in named]
        with torch.no_grad():
            self.averages = [p.detach().clone() for p in self.parameters]

    @torch.no_grad()
    def update(self, step: int) -> bool:
        """After optimizer step ``step`` (counted from 1): move the average when ``step`` is a multiple of ``every``;
        True when it moved."""
        if step % self.every:
            return False
        torch._foreach_lerp_(self.averages, [p.detach() for p in self.parameters], 1.0 - self.kept(step) ** self.every)
        return True

    def kept(self, step: int) -> float:
        """The share of the average kept per optimizer step at ``step``: ``decay``, lower early on with ``warmup``."""
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Put the average in the model's parameters (the end of a run that keeps its last weights)."""
        torch._foreach_copy_(self.parameters, self.averages)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block the model's parameters hold the average; afterwards the trained weights again."""
        with torch.no_grad():
            trained = [p.detach().clone() for p in self.parameters]
            self.copy_to_model()
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.parameters, trained)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The average by parameter name, on the CPU (what a checkpoint saves; like ``nn.Module.state_dict``, CPU
        tensors are the average itself, not copies)."""
        return {name: average.detach().contiguous().cpu() for name, average in zip(self.names, self.averages)}

    @torch.no_grad()
    def load_state_dict(self, tensors: dict[str, torch.Tensor], source: str = "the checkpoint") -> None:
        """Restore the average from :meth:`state_dict`'s tensors; ``ValueError`` naming ``source`` when they are not
        this model's trainable parameters (names, shapes) or hold NaN or inf."""
        missing = [name for name in self.names if name not in tensors]
        unexpected = [name for name in tensors if name not in set(self.names)]
        if missing or unexpected:
            raise ValueError(
                f"{source} averages other parameters than this model trains (missing {missing[:3]}, unexpected "
                f"{unexpected[:3]}); resume with the model and options that wrote it."
            )
        for name, average in zip(self.names, self.averages):  # every tensor checked before any is taken
            saved = tensors[name]
            if saved.shape != average.shape:
                raise ValueError(
                    f"{source}: {name} has shape {tuple(saved.shape)}, the model's {tuple(average.shape)}; resume "
                    "with the model that wrote it."
                )
            if saved.is_floating_point() and not torch.isfinite(saved).all():
                raise FloatingPointError(f"{source}: the average of {name} holds NaN or inf; resume from another one.")
        for name, average in zip(self.names, self.averages):
            average.copy_(tensors[name].to(device=average.device, dtype=average.dtype))

    def save(self, folder: str | os.PathLike) -> Path:
        """Write :meth:`state_dict` to ``folder``/:data:`WEIGHT_AVERAGE_FILE` (safetensors; written under a temporary
        name and renamed, so that a reader never sees half a file). Returns the file's path."""
        path = Path(folder) / WEIGHT_AVERAGE_FILE
        with replacing_file(path) as temporary:  # removed if the write fails (a full disk leaves no half file)
            save_file(self.state_dict(), str(temporary))
        return path

    def load(self, folder: str | os.PathLike) -> None:
        """Restore the average that :meth:`save` wrote to ``folder``; ``ValueError`` naming the folder when it holds
        none (it was written without an average), and :meth:`load_state_dict`'s checks."""
        path = Path(folder) / WEIGHT_AVERAGE_FILE
        if not path.is_file():
            raise missing_average(folder)
        self.load_state_dict(load_file(str(path)), source=str(path))
