"""
``transformers.Trainer`` for A2Gen and its baselines.

The plain Trainer collects the forward's outputs for ``compute_metrics``; A2Gen's forward gives per-slot class
scores, not P(action happens). :class:`A2GenTrainer` evaluates with ``predict_actions`` instead (and, for models
that generate, the first generated action), so the same :func:`a2gen_compute_metrics` reports AUC / MAE / next-action
accuracy for A2Gen, MMoE and PLE. It can also give the embedding tables their own learning rate, as the paper does.

    args = a2gen_training_arguments("runs/finetune", learning_rate=5e-4, num_train_epochs=1)
    trainer = A2GenTrainer(
        model=model, args=args, train_dataset=data["train"], eval_dataset=data["validation"],
        data_collator=A2GenDataCollator.from_config(model.config, tokenizer),
        compute_metrics=a2gen_compute_metrics(model.config), embedding_learning_rate=1e-4,
    )
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import Trainer, TrainingArguments

from ..configuration_a2gen import A2GenConfig
from ..metrics import compute_action_metrics, flatten_metrics, predicted_next_actions
from .loop import embedding_and_dense_groups
from .optimization import (
    SparseAdamW,
    clip_grad_norm_,
    id_tables,
    set_sparse_embeddings,
    sparse_gradients_supported,
    uses_sparse_embeddings,
)

logger = logging.getLogger(__name__)
# TrainingArguments.optim values that SparseAdamW replaces (the same AdamW, also taking sparse gradients).
ADAMW_OPTIMS = ("adamw_torch", "adamw_torch_fused")

LABEL_NAMES = ["labels", "label_times", "label_time_mask"]


def a2gen_training_arguments(output_dir: str, **kwargs: Any) -> TrainingArguments:
    """
    ``TrainingArguments`` that work with the package's collator: ``remove_unused_columns=False`` (the collator
    reads the raw example columns, which the model's forward does not name) and
    ``label_names=["labels", "label_times", "label_time_mask"]`` (what ``compute_metrics`` receives as
    ``label_ids``). Every other argument is passed on.

    Raises:
        ValueError: ``kwargs`` sets either of the two to something else.
    """
    for name, required in (("remove_unused_columns", False), ("label_names", LABEL_NAMES)):
        if name in kwargs and kwargs[name] != required:
            raise ValueError(
                f"{name}={kwargs[name]!r} does not work with A2GenDataCollator; leave it out (it is set to {required!r})."
            )
    kwargs.update(remove_unused_columns=False, label_names=list(LABEL_NAMES))
    return TrainingArguments(output_dir=output_dir, **kwargs)


def a2gen_compute_metrics(config: A2GenConfig) -> Callable[[Any], dict[str, float]]:
    """
    ``compute_metrics`` for :class:`A2GenTrainer`: its predictions are ``(action_probabilities, expected_times,
    next_actions)``, each `(n, V)` / `(n,)`, and ``label_ids`` the three label tensors. Returns
    :func:`~a2gen_hf.metrics.flatten_metrics` of :func:`~a2gen_hf.metrics.compute_action_metrics`, e.g.
    ``auc_like``, ``mean_auc``, ``mae_leave``, ``next_action_accuracy`` (the Trainer prefixes ``eval_``).
    """

    def compute_metrics(eval_prediction) -> dict[str, float]:
        outputs = eval_prediction.predictions
        if not isinstance(outputs, (tuple, list)) or len(outputs) != 3:
            raise ValueError(
                "a2gen_compute_metrics expects the predictions of A2GenTrainer (probabilities, expected times, next "
                "actions); use A2GenTrainer, not transformers.Trainer."
            )
        label_ids = eval_prediction.label_ids
        if not isinstance(label_ids, (tuple, list)) or len(label_ids) != len(LABEL_NAMES):
            raise ValueError(f"compute_metrics needs label_ids for {LABEL_NAMES}; use a2gen_training_arguments(...).")
        predictions = dict(zip(("action_probabilities", "expected_times", "next_actions"), outputs))
        return flatten_metrics(
            compute_action_metrics(
                predictions, dict(zip(LABEL_NAMES, label_ids)), config.action_names, config.start_action,
                config.end_action, config.time_log_mean, config.time_log_std,
            )
        )

    return compute_metrics


class A2GenTrainer(Trainer):
    """
    ``Trainer`` whose evaluation predictions are the ranking outputs of ``predict_actions``: `(B, V)`
    P(action happens), `(B, V)` expected normalised first-occurrence times and `(B,)` the next action (the first
    generated one for A2Gen, :func:`~a2gen_hf.metrics.predicted_next_actions` for the baselines). Use it with
    :func:`a2gen_training_arguments` and :func:`a2gen_compute_metrics`.

    Args:
        embedding_learning_rate (`float`, *optional*): learning rate of the ``nn.Embedding`` tables (the paper's
            1e-4) while ``args.learning_rate`` applies to the dense weights; ``None``: one rate for all (the
            Trainer's own parameter groups). Weight decay applies to the dense weights only.
        sparse_embeddings (`bool`, default True): train the id tables with sparse gradients, updating only the
            rows each batch read (:mod:`a2gen_hf.training.optimization`). With ``optim="adamw_torch"`` /
            ``"adamw_torch_fused"`` (the defaults) the optimizer is then
            :class:`~a2gen_hf.training.optimization.SparseAdamW` with the arguments' betas, epsilon and weight
            decay; other ``optim`` values, an optimizer passed in ``optimizers=`` and DDP without gloo keep dense
            gradients (logged). The model's config is not changed: checkpoints load as the model was built.
        Other arguments: those of ``transformers.Trainer``.
    """

    def __init__(
        self,
        *args: Any,
        embedding_learning_rate: float | None = None,
        sparse_embeddings: bool = True,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.embedding_learning_rate = embedding_learning_rate
        self.sparse_embeddings = sparse_embeddings

    def _sparse_refusal(self) -> str | None:
        """Why this run cannot train the id tables with sparse gradients (None: it can)."""
        optim = str(getattr(self.args.optim, "value", self.args.optim))
        if optim not in ADAMW_OPTIMS:
            return f"optim={optim!r} takes dense gradients (adamw_torch takes sparse ones)"
        supported, reason = sparse_gradients_supported(self.accelerator)
        return None if supported else reason

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is not None:  # passed in `optimizers=`: the model's tables stay as they are
            return super().create_optimizer(model)
        network = self.model if model is None else model
        sparse = False
        if id_tables(network) and self.sparse_embeddings:
            refusal = self._sparse_refusal()
            if refusal is not None:
                logger.warning("A2GenTrainer: sparse embedding updates are off for this run: %s.", refusal)
            sparse = refusal is None
        set_sparse_embeddings(network, sparse)
        if not sparse and self.embedding_learning_rate is None:
            return super().create_optimizer(model)
        optimizer_class, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, network)
        if {"params", "model", "optimizer_dict"} & set(optimizer_kwargs):
            raise ValueError(
                f"optim={self.args.optim!r} builds its own parameter groups; embedding_learning_rate needs a plain "
                "optimizer such as adamw_torch (or pass embedding_learning_rate=None)."
            )
        if self.embedding_learning_rate is None:
            decay = set(self.get_decay_parameter_names(network))
            named = [(name, p) for name, p in network.named_parameters() if p.requires_grad]
            groups = [
                {"params": [p for name, p in named if name in decay], "weight_decay": self.args.weight_decay},
                {"params": [p for name, p in named if name not in decay], "weight_decay": 0.0},
            ]
        else:
            groups = embedding_and_dense_groups(
                network, self.args.learning_rate, self.embedding_learning_rate, weight_decay=self.args.weight_decay
            )
        if sparse:
            optimizer_class = SparseAdamW  # AdamW (fused or not, as `optim` says) that also takes sparse gradients
        self.optimizer = optimizer_class(groups, **optimizer_kwargs)
        return self.optimizer

    def train(self, *args: Any, **kwargs: Any):
        """``Trainer.train``; the id tables are switched back to the model's own setting afterwards."""
        own_setting = bool(getattr(self.model.config, "sparse_embeddings", False))
        try:
            return super().train(*args, **kwargs)
        finally:
            set_sparse_embeddings(self.model, own_setting)

    def _clip_grad_norm(self, model: nn.Module):
        if uses_sparse_embeddings(model):
            return clip_grad_norm_(model.parameters(), self.args.max_grad_norm, self.accelerator)
        return super()._clip_grad_norm(model)

    def _get_grad_norm(self, model: nn.Module, grad_norm=None):
        if grad_norm is None and uses_sparse_embeddings(model):
            grad_norm = clip_grad_norm_(model.parameters(), float("inf"), self.accelerator)
        return super()._get_grad_norm(model, grad_norm=grad_norm)

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor | None, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...] | None]:
        inputs = self._prepare_inputs(inputs)
        loss = super().prediction_step(model, inputs, prediction_loss_only=True, ignore_keys=ignore_keys)[0]
        if prediction_loss_only:
            return loss, None, None
        missing = [name for name in self.label_names if inputs.get(name) is None]
        if missing:
            raise ValueError(f"The evaluation batch has no {missing}; A2GenDataCollator builds them from the labels.")
        network = self.accelerator.unwrap_model(model)
        with torch.no_grad():
            prediction = network.predict_actions(**inputs)
            probabilities = prediction.action_probabilities.float()
            times = prediction.expected_times.float()
            if network.can_generate():
                next_actions = network.generate(**inputs, return_dict_in_generate=True).sequences[:, 1]
            else:
                chosen = predicted_next_actions(probabilities.cpu(), times.cpu(), network.config.start_action_id)
                next_actions = torch.from_numpy(np.asarray(chosen, dtype=np.int64)).to(probabilities.device)
        labels = tuple(inputs[name] for name in self.label_names)
        return loss, (probabilities, times, next_actions), labels
