"""What a training run is told (:class:`TrainingSettings`, checked when built) and what it returns
(:class:`TrainingResult`), with the allowed values of its choices. No torch or Accelerate work happens here."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields
from typing import Any

from torch import nn

MIXED_PRECISIONS = ("no", "bf16", "fp16")

# Accelerate's trackers (``report_to``); tensorboard, mlflow, aim, dvclive and trackio write local files (offline).
TRACKERS = ("tensorboard", "wandb", "trackio", "aim", "comet_ml", "mlflow", "clearml", "dvclive", "swanlab")

TRACKING_PROJECT = "a2gen"

LR_SCHEDULES = ("constant", "linear", "cosine", "plateau")

# What picks the best evaluation (and drives early stopping and the plateau schedule).
SELECTION_METRICS = ("loss", "mean_auc")


# The command-line flags of the learning rates and weight decays (cli_arguments.TrainArguments), for messages.
_FLAGS = {"dense_learning_rate": "dense-lr", "embedding_learning_rate": "embedding-lr",
          "weight_decay": "weight-decay", "embedding_weight_decay": "embedding-weight-decay"}  # fmt: skip

@dataclass
class TrainingSettings:
    """
    What to train for and how. Learning rates default to the paper's: 5e-4 for dense weights and 1e-4 for embedding
    tables. ``batch_size`` is per process and per accumulation micro-step, so one optimizer step sees
    ``batch_size * gradient_accumulation_steps * num_processes`` examples. ``max_grad_norm`` clips the global
    gradient norm (``None``: no clipping; the norm is logged either way). ``checkpoint_every`` = 0 saves no
    checkpoints; ``keep_checkpoints`` = 0 keeps them all. ``lr_schedule`` scales both learning rates over the run's
    optimizer steps: ``constant`` (the paper), ``linear`` or ``cosine`` decay towards 0, after ``warmup_steps``
    (or ``warmup_ratio`` of the steps) of linear warmup from 0 (transformers' schedules,
    :func:`learning_rate_factor`; logged as ``lr_factor``). ``report_to``: Accelerate trackers to log the training
    log to, comma-separated (:data:`TRACKERS`, ``all`` = every installed one, ``none``); they write under
    ``output_dir/tracking``. ``sparse_embeddings``: the id tables give sparse
    gradients for the run and :class:`~a2gen_hf.training.optimization.SparseAdamW` updates only the rows each batch
    read (:func:`configure_embedding_updates`; dense where the process group cannot reduce sparse gradients).
    ``plateau``: the learning rates are multiplied by ``plateau_factor`` after every validation evaluation that does
    not improve on the best (so the decay follows the run, however many steps an epoch has), after any warmup.

    Validation and selection (with an ``eval_dataset``): the model is evaluated after every epoch and, with
    ``eval_every_steps`` = K, also every K optimizer steps within an epoch (so that a run on a large log is
    checked more often than once per epoch). ``scale_eval_every`` spaces those evaluations by at least one
    validation split's worth of training examples: every ``max(K, ceil(validation examples / examples per
    optimizer step))`` steps (:func:`~a2gen_hf.training.loop.evaluation_interval`), so that on a large log a
    validation pass (a forward over the whole split) never costs more than the training between two; on a log whose
    validation split holds at most K steps' examples nothing changes. ``eval_at_epoch_end=False`` (with ``eval_every_steps``) evaluates every
    K steps only, not at epoch ends (the last step of the run is evaluated too): evaluations are then spaced by steps
    whatever an epoch's length, so that patience and the plateau schedule mean the same on a log of 20 steps an epoch
    as on one of 2,000 (after every epoch, a small log would halve its learning rates and stop within a few dozen
    steps). ``selection_metric`` says what "better" means: ``loss`` (the lowest
    validation loss, the default) or ``mean_auc`` (the highest mean AUC over the ranked actions of
    ``predict_actions``, what the results tables report). With ``select_best_epoch`` the weights of the best
    evaluation are returned. ``early_stopping_patience`` = P stops the run after P evaluations in a row without
    improvement (``None``: train for ``num_epochs`` / ``max_steps``, which are then the maximum), but never before
    ``early_stopping_min_steps`` optimizer steps: a small log evaluates after every few steps, and a run that starts
    slowly (unit-scale tables at 1e-3 stay near chance for some hundred steps) would otherwise stop before it
    learned anything. ``patience_from_step`` = S goes further (Keras' ``start_from_epoch``, in steps): evaluations
    before step S still compete for the best (and are logged) but neither count towards the patience nor shrink the
    learning rates (plateau), so that the dip a residual start shows in its first hundred or so Adam steps is
    neither taken for a plateau nor answered by halving the learning rates its recovery needs (docs/results.md (d),
    "The first steps' dip"). ``selection_min_delta`` = d (transformers' ``early_stopping_threshold``, Keras' ``min_delta``):
    an evaluation replaces the best (and resets the patience) only if its score beats the best by more than d (in
    mean AUC, or in loss with ``selection_metric="loss"``), so that on a small validation split noise does not
    replace a good starting point.
    ``eval_before_training`` also evaluates the starting weights (step 0) before the first step, so that with
    ``select_best_epoch`` they compete with every later evaluation: a warm-started model (a wide path started as
    the fitted regression, :func:`~a2gen_hf.training.simple_baselines.warm_start_wide_path`) is then never returned
    worse on validation than it started.
    ``select_generator_by_loss`` (with ``selection_metric="mean_auc"`` and ``select_best_epoch``; A2Gen with an
    occurrence head that reads the count features alone, ``occurrence_paths_input="extra_only"``, so that the ranking
    reads none of the generator's weights): the ranking's state (the occurrence head and the statistics that
    standardise the count features it reads) comes from the best mean-AUC evaluation and every other weight (encoder,
    generator, time heads) from the evaluation with the lowest validation loss of the generator (the loss without the
    occurrence head's part). Without it, a run whose best ranking is its starting point (a residual start,
    ``eval_before_training``) returns an untrained generator: ``generate()`` then emits untrained sequences
    (docs/results.md (d), "The timed sequence").
    ``freeze_ranking`` (with ``select_generator_by_loss``): the ranking's state takes no training step at all (its
    weights no gradient, its feature statistics no update), so the run ranks exactly as it started (e.g. the fitted
    residual of ``wide_residual_fit``) and trains the generator alone; every evaluation's mean AUC is then the
    start's, so "better" means a lower validation generator loss (for the best evaluation, the patience, the plateau
    schedule and ``selection_min_delta``), and the mean AUC is computed at the first evaluation only.

    ``dataloader_num_workers`` = W (transformers' ``dataloader_num_workers``): the training, validation and test
    batches are read and collated in W worker processes (0: in the training process), pinned in page-locked memory
    when training on a GPU, so that a GPU does not wait for the collator. For map-style data the batches are the same
    either way (the order is drawn before the workers read it, and collating draws nothing), so a resumed run may
    change W; a stream's shards are split among the workers, each forming its own batches, so there W decides the
    order and a resume must keep it.

    ``ema_decay`` = d (Polyak averaging, timm's model EMA; ``None``: off): the run keeps an exponential moving average
    of the trainable weights, moved after every ``ema_every_steps`` optimizer steps by ``1 - d ** ema_every_steps``
    of its distance to the weights (so d is per optimizer step; 0.999 averages over about the last 1,000 steps), and
    starting as the starting weights. Every validation evaluation scores the average, the best evaluation's saved
    weights are the average's and so are the returned weights; the optimizer trains the weights themselves
    (:class:`~a2gen_hf.training.weight_average.WeightAverage`). Checkpoints save the average, and a resume must keep
    its settings. ``ema_every_steps`` > 1 spends less time on large embedding tables. ``ema_warmup`` keeps
    ``min(d, (1 + t) / (10 + t))`` at step t instead (TensorFlow's and timm's warmup), for a run from fresh weights,
    which the average would otherwise remember for about ``1 / (1 - d)`` steps.
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
    max_grad_norm: float | None = None
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "no"
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    resume: bool = False
    seed: int = 0
    log_every: int = 20
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    report_to: str = "none"
    select_best_epoch: bool = True
    selection_metric: str = "loss"
    early_stopping_patience: int | None = None
    early_stopping_min_steps: int = 0
    patience_from_step: int = 0
    selection_min_delta: float = 0.0
    eval_every_steps: int | None = None
    scale_eval_every: bool = False
    eval_at_epoch_end: bool = True
    eval_before_training: bool = False
    select_generator_by_loss: bool = False
    freeze_ranking: bool = False
    plateau_factor: float = 0.5
    shuffle_buffer_size: int = 10_000
    dataloader_num_workers: int = 0
    ema_decay: float | None = None
    ema_every_steps: int = 1
    ema_warmup: bool = False
    cpu: bool = False
    show_progress: bool = True
    sparse_embeddings: bool = True

    def __post_init__(self):
        self._check_whole_numbers()
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(f"mixed_precision={self.mixed_precision!r}; use one of {list(MIXED_PRECISIONS)}.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule={self.lr_schedule!r}; use one of {list(LR_SCHEDULES)}.")
        if self.selection_metric not in SELECTION_METRICS:
            raise ValueError(f"selection_metric={self.selection_metric!r}; use one of {list(SELECTION_METRICS)}.")
        for name in ("early_stopping_patience", "eval_every_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1 (or None: off).")
        if self.scale_eval_every and self.eval_every_steps is None:
            raise ValueError(
                "scale_eval_every=True spaces the step evaluations out by the validation split's size, but "
                "eval_every_steps=None (no step evaluations): set eval_every_steps=100 (or another step count) or "
                "scale_eval_every=False."
            )
        if not self.eval_at_epoch_end and self.eval_every_steps is None:
            raise ValueError(
                "eval_at_epoch_end=False evaluates at the step evaluations only, but eval_every_steps=None (no step "
                "evaluations): set eval_every_steps=100 (or another step count) or eval_at_epoch_end=True."
            )
        if self.early_stopping_min_steps < 0:
            raise ValueError(f"early_stopping_min_steps={self.early_stopping_min_steps} must be >= 0 (0: no minimum).")
        if self.patience_from_step < 0:
            raise ValueError(f"patience_from_step={self.patience_from_step} must be >= 0 (0: every evaluation counts).")
        if not self.selection_min_delta >= 0.0:
            raise ValueError(f"selection_min_delta={self.selection_min_delta} must be >= 0 (0: any improvement counts).")
        if self.select_generator_by_loss and not (self.selection_metric == "mean_auc" and self.select_best_epoch):
            needed = [setting for setting, missing in (("selection_metric=mean_auc", self.selection_metric != "mean_auc"),
                                                       ("select_best_epoch=True", not self.select_best_epoch)) if missing]
            raise ValueError(
                "select_generator_by_loss=True keeps the ranking from the best mean-AUC evaluation and the generator "
                f"from the lowest-loss one: set {' and '.join(needed)}, or switch it off, with the freezing that "
                "needs it: select_generator_by_loss=False freeze_ranking=False (the sparse_logs recipe sets both)."
            )
        if self.freeze_ranking and not self.select_generator_by_loss:
            raise ValueError(
                "freeze_ranking=True trains the generator alone and selects it by its own loss: set "
                "select_generator_by_loss=True too (with selection_metric=mean_auc)."
            )
        if not 0.0 < self.plateau_factor < 1.0:
            raise ValueError(f"plateau_factor={self.plateau_factor} must be in (0, 1): the learning rates shrink.")
        for name in ("dense_learning_rate", "embedding_learning_rate", "weight_decay", "embedding_weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < math.inf:
                raise ValueError(
                    f"{name}={value!r} must be a finite number >= 0 (CLI: --{_FLAGS[name]}); checked before training, "
                    "where NaN or inf would only show as a NaN loss."
                )
        for name in ("batch_size", "eval_batch_size", "gradient_accumulation_steps", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1.")
        if self.dataloader_num_workers < 0:
            raise ValueError(
                f"dataloader_num_workers={self.dataloader_num_workers} must be >= 0 (0: batches are read in the training "
                "process)."
            )
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(
                f"ema_decay={self.ema_decay} must be in (0, 1), the share of the average kept per optimizer step "
                "(e.g. 0.999), or None: no average."
            )
        if self.ema_every_steps < 1:
            raise ValueError(f"ema_every_steps={self.ema_every_steps} must be >= 1 (optimizer steps between updates).")
        if (self.ema_every_steps != 1 or self.ema_warmup) and self.ema_decay is None:
            given = [(f"ema_every_steps={self.ema_every_steps}", "ema_every_steps at 1")] * (self.ema_every_steps != 1)
            given += [("ema_warmup=True", "ema_warmup False")] * bool(self.ema_warmup)  # only what was set
            raise ValueError(
                f"{' and '.join(setting for setting, _ in given)} shape{'s' * (len(given) == 1)} the weights' average, "
                "but ema_decay is None (no average): set ema_decay too (e.g. 0.999), or leave "
                f"{' and '.join(default for _, default in given)}."
            )
        for name in ("checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"{name}={getattr(self, name)} must be >= 0 (0 = {'never' if name[0] == 'c' else 'all'})."
                )
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps={self.max_steps} must be >= 1 (or None: train for num_epochs).")
        if self.max_steps is None and self.num_epochs < 1:
            raise ValueError(f"num_epochs={self.num_epochs}: set num_epochs >= 1 or max_steps.")
        if self.num_epochs < 0:  # before: accepted beside max_steps, which then decides alone
            raise ValueError(f"num_epochs={self.num_epochs} must be >= 0 (with max_steps it may be 0: the steps decide).")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm={self.max_grad_norm} must be > 0 (or None: no clipping).")
        if self.warmup_steps < 0 or not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(
                f"warmup_steps={self.warmup_steps} must be >= 0 and warmup_ratio={self.warmup_ratio} in [0, 1)."
            )
        unknown = [name for name in tracker_names(self.report_to) if name not in (*TRACKERS, "all")]
        if unknown:
            raise ValueError(
                f"report_to={self.report_to!r}: unknown {unknown}; use 'none', 'all' or of {list(TRACKERS)}."
            )

    def _check_whole_numbers(self) -> None:
        """Refuse a count, a step or a size that is not a whole number (1.5 checkpoint steps fired every third step,
        1.5 accumulation steps gave Accelerate's error as a mixed-precision one); None where the field allows it."""
        for item in fields(self):
            if item.type not in ("int", "int | None"):
                continue
            value = getattr(self, item.name)
            if value is None and item.type == "int | None":
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                flag = f" (CLI: --{_FLAGS[item.name]})" if item.name in _FLAGS else ""
                allowed = "a whole number" + (" or None" if item.type == "int | None" else "")
                raise ValueError(f"{item.name}={value!r}{flag} must be {allowed}.")

    def warmup_for(self, total_steps: int) -> int:
        """Warmup steps of a run of ``total_steps``: ``warmup_steps``, else ``ceil(warmup_ratio * total_steps)``."""
        return self.warmup_steps or math.ceil(self.warmup_ratio * total_steps)


def tracker_names(report_to: str | None) -> list[str]:
    """``"tensorboard,mlflow"`` -> ``["tensorboard", "mlflow"]``; ``"none"``, ``""`` and None -> ``[]``."""
    names = [name.strip() for name in (report_to or "").split(",") if name.strip()]
    return [] if names == ["none"] else names


@dataclass
class TrainingResult:
    """What a run produced: the trained model (best epoch if selected), its log and where things were saved."""

    model: nn.Module
    global_step: int
    log_history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    output_dir: str | None = None
    best_step: int | None = None
    stopped_early: bool = False
    # With select_generator_by_loss: the evaluation whose weights (all but the occurrence head's) were kept.
    best_generator_step: int | None = None
