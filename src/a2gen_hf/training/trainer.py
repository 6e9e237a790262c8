"""
``transformers.Trainer`` for A2Gen and its baselines.

The plain Trainer collects the forward's outputs for ``compute_metrics``; A2Gen's forward gives per-slot class
scores, not P(action happens). :class:`A2GenTrainer` evaluates with ``predict_actions`` instead (and, for models
that generate, the first generated action), so the same :func:`a2gen_compute_metrics` reports AUC / MAE / next-action
accuracy for A2Gen, MMoE and PLE. It can also give the embedding tables their own learning rate, as the paper does,
and keep a moving average of the weights (``weight_average_decay``), as the Accelerate loop's ``--ema-decay``.

    args = a2gen_training_arguments("runs/finetune", learning_rate=5e-4, num_train_epochs=1)
    trainer = A2GenTrainer(
        model=model, args=args, train_dataset=data["train"], eval_dataset=data["validation"],
        data_collator=A2GenDataCollator.from_config(model.config, tokenizer),
        compute_metrics=a2gen_compute_metrics(model.config), embedding_learning_rate=1e-4,
    )
"""

from __future__ import annotations

import contextlib
import copy
import copyreg
import functools
import json
import logging
import math
import numbers
import os
import warnings
from collections.abc import Callable
from types import MethodType
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc
import torch
from accelerate.utils import convert_outputs_to_fp32, extract_model_from_parallel, get_mixed_precision_context_manager
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_pt_utils import nested_gather
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, EvalPrediction

from ..configuration_a2gen import A2GenConfig
from ..data.collator import A_SAVED_MODEL_READS_THEM, A2GenDataCollator, check_session_time_columns, collation_rows
from ..host_memory import keep_freed_host_memory
from ..metrics import DEFAULT_TOP_K, compute_action_metrics, flatten_metrics, predict_batch
from ..metrics.auc import tensor_as_numpy
from ..metrics.evaluation import USER_KEYS_COLUMN, batch_groups, check_user_column, evaluation_group_column
from .checkpointing import CHECKPOINT_MANIFEST
from .loop import embedding_and_dense_groups
from .optimization import (
    SparseAdamW,
    clip_grad_norm_,
    id_tables,
    set_sparse_embeddings,
    sparse_gradients_supported,
    uses_sparse_embeddings,
    with_every_weight_in_the_graph,
)
from .weight_average import WeightAverage, check_average_settings

logger = logging.getLogger(__name__)
# TrainingArguments.optim values that SparseAdamW replaces (the same AdamW, also taking sparse gradients).
ADAMW_OPTIMS = ("adamw_torch", "adamw_torch_fused")

LABEL_NAMES = ["labels", "label_times", "label_time_mask"]
# The example columns the labels are built from (A2GenDataCollator): the actions that followed and their times.
OUTCOME_COLUMNS = ("action_ids", "action_seconds")

# The metrics of a2gen_compute_metrics by the way they improve, for metric_for_best_model and greater_is_better (the
# one list of them: tests/test_trainer.py compares it with what a2gen_compute_metrics emits). Names without the
# Trainer's "eval_" prefix; a per-action family ("mae") stands for its names "{family}_{action}" ("mae_like").
# transformers takes greater_is_better=True for every name not ending in "loss", so for the lower-is-better ones
# load_best_model_at_end kept the worst checkpoint and EarlyStoppingCallback stopped while they improved.
LOWER_IS_BETTER_METRICS = (
    "mae", "mae_seconds", "mae_nonzero", "mae_seconds_nonzero", "mean_mae", "leave_mae", "leave_mae_seconds",
    "logloss", "mean_logloss", "ece",
)  # fmt: skip
HIGHER_IS_BETTER_METRICS = (
    "auc", "mean_auc", "gauc", "mean_gauc", *(f"{kind}_at_{k}" for kind in ("ndcg", "recall") for k in DEFAULT_TOP_K),
    "next_action_accuracy",
)  # fmt: skip
# The predicted over the observed rate of an action: best at 1, so neither its highest nor its lowest value is best.
UNORDERED_METRICS = ("calibration",)


def metric_direction(metric: str, action_names: list[str] | tuple[str, ...] | None = None) -> str | None:
    """
    How a metric of :func:`a2gen_compute_metrics` improves: ``"lower"`` (:data:`LOWER_IS_BETTER_METRICS`),
    ``"higher"`` (:data:`HIGHER_IS_BETTER_METRICS`), ``"unordered"`` (:data:`UNORDERED_METRICS`), or None for any
    other name (``loss``, a metric of one's own). ``metric`` as ``metric_for_best_model`` takes it: with or without
    the ``eval_`` prefix, and with an eval dataset's name after it (``eval_validation_mae_like``) for a dict of eval
    datasets. Read from the left, the first place a known name starts decides; with ``action_names`` (the model
    config's) a per-action name must end in one of the actions. Without them, a name that reads as metrics of
    both directions from two places (the eval dataset ``auc_holdout`` in ``eval_auc_holdout_mae_like``) is refused
    (ValueError): pass ``greater_is_better`` yourself.
    """
    name = metric.removeprefix("eval_")
    readings = list(_metric_readings(name, action_names))
    if not readings:
        return None
    if action_names is None and len({direction for _, _, direction in readings}) > 1:
        said = "; ".join(f"from {name[start:]!r} as {family} ({WORDS[direction]})"
                         for start, family, direction in readings)  # fmt: skip
        raise ValueError(
            f"metric_for_best_model={metric!r} reads two ways: {said} (an eval dataset's name that begins like a "
            "metric). Pass greater_is_better yourself (True: higher is better), or rename the eval dataset."
        )
    return readings[0][2]


WORDS = {"lower": "lower is better", "higher": "higher is better", "unordered": "best at 1"}


def _metric_readings(name: str, action_names: list[str] | tuple[str, ...] | None):
    """``(start, family, direction)`` for each place of ``name``, from the left, where a metric family of
    :func:`metric_direction` starts and reads the rest (the longest family there: ``mae_seconds_like`` is
    mae_seconds, not mae)."""
    directions = {
        **dict.fromkeys(HIGHER_IS_BETTER_METRICS, "higher"), **dict.fromkeys(LOWER_IS_BETTER_METRICS, "lower"),
        **dict.fromkeys(UNORDERED_METRICS, "unordered"),
    }  # fmt: skip
    start = 0
    while True:
        rest = name[start:]
        known = [
            family for family in directions
            if rest == family or (rest.startswith(family + "_")
                                  and (action_names is None or rest[len(family) + 1 :] in action_names))
        ]  # fmt: skip
        if known:
            family = max(known, key=len)
            yield start, family, directions[family]
        start = name.find("_", start) + 1
        if start == 0:
            return


def _unordered_metric_error(metric: str) -> ValueError:
    return ValueError(
        f"metric_for_best_model={metric!r} is the ratio of the predicted to the observed rate of an action, best at "
        "1: neither its highest nor its lowest value is the best checkpoint. Select by ece_<action> or mean_logloss "
        "(calibration, lower is better) or mean_auc (ranking)."
    )


def a2gen_training_arguments(output_dir: str, **kwargs: Any) -> TrainingArguments:
    """
    ``TrainingArguments`` that work with the package's collator: ``remove_unused_columns=False`` (the collator
    reads the raw example columns, which the model's forward does not name) and
    ``label_names=["labels", "label_times", "label_time_mask"]`` (what ``compute_metrics`` receives as
    ``label_ids``), and ``ddp_find_unused_parameters=False`` unless given: :class:`A2GenTrainer` keeps every
    trainable weight of the package's models in the graph at every step under several processes (a batch whose
    histories are all empty would otherwise leave the history encoder out:
    :func:`~a2gen_hf.training.optimization.with_every_weight_in_the_graph`), so DDP need not search the graph for
    unused ones (the Trainer's default, True for a ``PreTrainedModel``, searches and warns that it found none, at
    every run); weights an option leaves out are frozen (``requires_grad=False``), which DDP skips. The Accelerate
    loop of ``a2gen train`` runs DDP the same way. Pass ``ddp_find_unused_parameters=True`` for a model of your own,
    or with a plain ``Trainer``. ``dataloader_pin_memory`` defaults to whether an accelerator is used (torch warns of
    pinned memory without one, at every evaluation). With a ``metric_for_best_model`` that is lower-is-better
    (:data:`LOWER_IS_BETTER_METRICS`: the MAEs, the log losses, the ECEs) ``greater_is_better`` defaults to False
    (transformers' default is True for every name not ending in "loss": ``load_best_model_at_end`` then kept the
    worst checkpoint). Every other argument is passed on.

    Raises:
        ValueError: ``kwargs`` sets either of the two to something else, or ``metric_for_best_model`` is a
            ``calibration_<action>`` (best at 1, neither highest nor lowest).
    """
    for name, required in (("remove_unused_columns", False), ("label_names", LABEL_NAMES)):
        if name in kwargs and kwargs[name] != required:
            raise ValueError(
                f"{name}={kwargs[name]!r} does not work with A2GenDataCollator; leave it out (it is set to {required!r})."
            )
    metric = kwargs.get("metric_for_best_model")
    if isinstance(metric, str):
        if kwargs.get("greater_is_better") is None:
            direction = metric_direction(metric)  # refuses a name that reads as both directions
        else:  # given: only the calibration check is left to do, where every reading is calibration
            found = {found for *_, found in _metric_readings(metric.removeprefix("eval_"), None)}
            direction = "unordered" if found == {"unordered"} else None
        if direction == "unordered":
            raise _unordered_metric_error(metric)
        if direction == "lower" and kwargs.get("greater_is_better") is None:
            kwargs["greater_is_better"] = False
    kwargs.update(remove_unused_columns=False, label_names=list(LABEL_NAMES))
    kwargs.setdefault("ddp_find_unused_parameters", False)
    # Pinned memory only where an accelerator reads it: on a CPU torch warns at every evaluation's DataLoader.
    kwargs.setdefault("dataloader_pin_memory", torch.accelerator.is_available() and not kwargs.get("use_cpu", False))
    return TrainingArguments(output_dir=output_dir, **kwargs)


@functools.cache
def _token_free_pickles(arguments_class: type) -> type:
    """
    ``arguments_class`` (``TrainingArguments`` or a subclass) whose pickle leaves out every ``*_token`` value (the
    Trainer writes its arguments to ``training_args.bin`` with ``torch.save`` and pushes that file to the Hub: before,
    ``hub_token`` went with it in plain text). In memory the arguments keep the token for pushing; a pickle unpickles
    as ``arguments_class`` with ``None`` there, as ``TrainingArguments.to_dict`` shows ``<HUB_TOKEN>``.
    """
    if getattr(arguments_class, "_token_free", False):
        return arguments_class

    def __reduce_ex__(self, protocol):
        state = {name: None if name.endswith("_token") else value for name, value in vars(self).items()}
        return copyreg._reconstructor, (arguments_class, object, None), state  # stdlib: unpickles anywhere

    def __copy__(self):  # copies in memory keep the token (only pickles leave it out)
        duplicate = object.__new__(type(self))
        duplicate.__dict__.update(vars(self))
        return duplicate

    def __deepcopy__(self, memo):
        duplicate = object.__new__(type(self))
        memo[id(self)] = duplicate
        duplicate.__dict__.update(copy.deepcopy(vars(self), memo))
        return duplicate

    return type(arguments_class.__name__, (arguments_class,), {
        "__reduce_ex__": __reduce_ex__, "__copy__": __copy__, "__deepcopy__": __deepcopy__, "_token_free": True,
        "__module__": arguments_class.__module__, "__qualname__": arguments_class.__qualname__,
    })  # fmt: skip


def _joined_batches(value: Any) -> Any:
    """With ``eval_do_concat_batches=False`` the Trainer hands ``compute_metrics`` a list of per-batch tuples of
    arrays: joined here into one tuple of arrays, as with the default concatenation. Anything else is returned."""
    if isinstance(value, list) and value and all(isinstance(batch, (tuple, list)) for batch in value):
        parts = {len(batch) for batch in value}
        if len(parts) == 1 and all(isinstance(part, np.ndarray) for batch in value for part in batch):
            return tuple(np.concatenate(columns) for columns in zip(*value))
    return value


def _on_host(value: Any) -> Any:
    """Tensors (in tuples / lists) as numpy arrays (bfloat16 as float32), for keeping a batch past its step."""
    if isinstance(value, (tuple, list)):
        return type(value)(_on_host(part) for part in value)
    return tensor_as_numpy(value) if torch.is_tensor(value) else value


def a2gen_compute_metrics(config: A2GenConfig) -> Callable[[Any], dict[str, float]]:
    """
    ``compute_metrics`` for :class:`A2GenTrainer`: its predictions are ``(action_probabilities, expected_times,
    next_actions, group_ids)``, each `(n, V)` / `(n,)` (the group is the user: GAUC and NDCG@K / Recall@K group by
    it), and ``label_ids`` the three label tensors. Returns :func:`~a2gen_hf.metrics.flatten_metrics` of
    :func:`~a2gen_hf.metrics.compute_action_metrics`, e.g. ``auc_like``, ``mean_auc``, ``mae_leave``,
    ``gauc_like``, ``logloss_like``, ``ndcg_at_10_like``, ``next_action_accuracy`` (the Trainer prefixes
    ``eval_``); counts stay out of it.

    With ``batch_eval_metrics=True`` the Trainer calls it once per batch (``compute_result=False``) and at the last
    batch (``compute_result=True``): the batches are kept on the host and the metrics (AUC, GAUC and the ranking
    metrics need the whole split) computed at the last one.
    """
    pending: list[tuple[Any, Any]] = []

    def compute_metrics(eval_prediction, compute_result: bool = True) -> dict[str, float]:
        # batch_eval_metrics: the split's batches are gathered on the host (tensors there; numpy arrays otherwise)
        batch = (_on_host(eval_prediction.predictions), _on_host(eval_prediction.label_ids))
        if not compute_result:
            pending.append(batch)
            return {}
        if pending:
            batches = [*pending, batch]
            pending.clear()
            eval_prediction = EvalPrediction(predictions=[part for part, _ in batches], label_ids=[part for _, part in batches])
        else:
            eval_prediction = EvalPrediction(predictions=batch[0], label_ids=batch[1])
        outputs = _joined_batches(eval_prediction.predictions)
        if not isinstance(outputs, (tuple, list)) or len(outputs) not in (3, 4):
            raise ValueError(
                "a2gen_compute_metrics expects the predictions of A2GenTrainer (probabilities, expected times, next "
                "actions, user ids); use A2GenTrainer, not transformers.Trainer."
            )
        label_ids = _joined_batches(eval_prediction.label_ids)
        if not isinstance(label_ids, (tuple, list)) or len(label_ids) != len(LABEL_NAMES):
            raise ValueError(f"compute_metrics needs label_ids for {LABEL_NAMES}; use a2gen_training_arguments(...).")
        predictions = dict(zip(("action_probabilities", "expected_times", "next_actions"), outputs))
        references = dict(zip(LABEL_NAMES, label_ids))
        if len(outputs) == 4:
            references["group_ids"] = outputs[3]
        result = compute_action_metrics(
            predictions, references, config.action_names, config.start_action,
            config.end_action, config.time_log_mean, config.time_log_std,
        )
        compute_metrics.notes = list(result["notes"])  # why a value is NaN: A2GenTrainer names it for its selection
        return flatten_metrics(result)

    compute_metrics.notes = []
    return compute_metrics


# Config entries that say nothing of the weights' meaning (configs without field_names(): all but these are compared).
_CONFIG_BOOKKEEPING = frozenset({"transformers_version", "architectures", "dtype", "torch_dtype", "auto_map", "_name_or_path"})


def check_checkpoint_fits(folder: str, model: nn.Module) -> None:
    """Refuse to resume ``model`` from the Trainer checkpoint ``folder`` when the checkpoint's ``config.json``
    describes another model (its type or any of its fields), or its weights hold other tensors than the model's:
    ``Trainer`` loads with ``strict=False`` and only warns, so training would go on from random weights (another
    model) or from weights read under another meaning (another ``history_pooling``)."""
    from ..strict_loading import CheckpointError, check_weight_files, weight_files

    config = getattr(model, "config", None)
    config_file = os.path.join(folder, "config.json")
    if config is not None and os.path.isfile(config_file):
        with open(config_file, encoding="utf-8") as file:
            saved = json.load(file)
        current = config.to_dict()
        if saved.get("model_type") != current.get("model_type"):
            raise CheckpointError(
                f"{folder} is a checkpoint of a {saved.get('model_type')!r} model, not of this "
                f"{current.get('model_type')!r} model ({type(model).__name__}): resume the run that wrote it with its "
                "own model, or start a new run (its weights load with from_pretrained(checkpoint))."
            )
        # The package's own fields (transformers' common ones carry nothing of the weights' meaning), as JSON has them.
        own = config.field_names() if hasattr(config, "field_names") else current.keys() - _CONFIG_BOOKKEEPING
        current = json.loads(json.dumps({key: current.get(key) for key in own & saved.keys()}))
        differ = sorted(key for key in current if saved[key] != current[key])
        if differ:
            shown = ", ".join(f"{key}: checkpoint {saved.get(key)!r}, model {current.get(key)!r}" for key in differ[:8])
            raise CheckpointError(
                f"{folder} was written by a model of another config ({shown}"
                + (f", and {len(differ) - 8} more" if len(differ) > 8 else "")
                + "): resuming reads its weights and optimizer state as this model's. Build the model from the "
                "checkpoint's config (from_pretrained(checkpoint)) to resume it, or start a new run (without "
                "resume_from_checkpoint) to train this config."
            )
    try:
        files, _ = weight_files(folder, {})
    except CheckpointError:
        return  # no safetensors weights (e.g. a pickled or FSDP checkpoint): transformers' own loading and messages
    saved_keys = set(check_weight_files(files))  # the files' headers (a truncated file is named here)
    state = model.state_dict()
    saved_storage = {state[key].data_ptr() for key in saved_keys & state.keys()}
    # a tensor tied to a saved one (same storage) is left out of the file by transformers: not missing
    missing = sorted(key for key in state.keys() - saved_keys if state[key].data_ptr() not in saved_storage)
    unexpected = sorted(saved_keys - state.keys())
    if missing or unexpected:
        raise CheckpointError(
            f"{folder} holds other tensors than {type(model).__name__}: missing {missing[:5]}"
            + (f" (+{len(missing) - 5})" if len(missing) > 5 else "") + f", unexpected {unexpected[:5]}"
            + (f" (+{len(unexpected) - 5})" if len(unexpected) > 5 else "")
            + "; resuming would train random weights where tensors are missing. Resume it with the model that wrote it."
        )


class A2GenTrainer(Trainer):
    """
    ``Trainer`` whose evaluation predictions are the ranking outputs of ``predict_actions``: `(B, V)`
    P(action happens), `(B, V)` expected normalised first-occurrence times, `(B,)` the next action (the first
    generated one for A2Gen, :func:`~a2gen_hf.metrics.predicted_next_actions` for the baselines; all three from
    :func:`~a2gen_hf.metrics.predict_batch`) and `(B,)` the user ids (when the batch has them). Use it with
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
        weight_average_decay (`float`, *optional*): keep a moving average of the trained weights
            (:class:`~a2gen_hf.training.weight_average.WeightAverage`, the Accelerate loop's ``--ema-decay``): the share
            kept per optimizer step, in (0, 1). Evaluations during training score the average (so ``metric_for_best_model``
            and early stopping follow it), every checkpoint also holds it (``weight_average.safetensors``, restored
            on ``resume_from_checkpoint``, which refuses a checkpoint without it), and after training the model's
            weights are the average: the best checkpoint's with ``load_best_model_at_end``, else the last. The
            optimizer trains the weights themselves. Refused with DeepSpeed and FSDP (sharded weights).
        weight_average_every (`int`, default 1): update the average every this many optimizer steps.
        weight_average_warmup (`bool`, default False): keep ``min(decay, (1 + t) / (10 + t))`` at step t, for runs
            from fresh weights.
        Other arguments: those of ``transformers.Trainer``.
    """

    def __init__(
        self,
        *args: Any,
        embedding_learning_rate: float | None = None,
        sparse_embeddings: bool = True,
        weight_average_decay: float | None = None,
        weight_average_every: int = 1,
        weight_average_warmup: bool = False,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.args.__class__ = _token_free_pickles(type(self.args))  # training_args.bin is pushed: no token in it
        self._check_session_times()
        if self.args.label_smoothing_factor:
            raise ValueError(
                f"label_smoothing_factor={self.args.label_smoothing_factor}: A2Gen, MMoE and PLE compute their own "
                "loss (actions and times); the Trainer's label smoothing would replace it with a token loss over "
                "outputs that are not token logits. Set label_smoothing_factor=0."
            )
        rate = embedding_learning_rate
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < math.inf):
            raise ValueError(
                f"embedding_learning_rate={rate!r} must be a finite number >= 0 (or None: the tables then train at "
                "args.learning_rate); NaN or inf would only show as a NaN loss, a negative rate moves the tables uphill."
            )
        self.embedding_learning_rate = embedding_learning_rate
        self._dense_group: int | None = None  # the optimizer group of the dense weights, where it is not the first
        self.sparse_embeddings = sparse_embeddings
        self.weight_average: WeightAverage | None = None
        self._weight_average_settings = None
        self._resumed_from: str | None = None
        self._group_column: Any = _PER_BATCH  # the column this evaluation groups its examples by
        self._check_eval_users(self.eval_dataset)
        self._check_best_metric()
        self._undefined_best_metrics: set[str] = set()  # metric_for_best_model keys already warned of as NaN
        if weight_average_decay is not None:
            check_average_settings(weight_average_decay, weight_average_every)  # now, not when training begins
            if self.is_deepspeed_enabled or self.is_fsdp_enabled:
                raise ValueError(
                    "weight_average_decay averages whole weights, which DeepSpeed and FSDP shard across processes: "
                    "train without it, or with DDP."
                )
            self._weight_average_settings = (weight_average_decay, weight_average_every, weight_average_warmup)
            self.add_callback(_WeightAverageCallback(self))

    def _check_session_times(self) -> None:
        """Before any step: a model that reads the history sessions' times refuses a train or eval dataset without
        their columns (data prepared before ``history_session_starts`` existed), naming the split, as ``a2gen train``
        does (before: the collator's KeyError at the first batch)."""
        if not getattr(getattr(self.model, "config", None), "history_time_features", False):
            return
        splits = [("the train dataset", self.train_dataset)]
        evals = self.eval_dataset if isinstance(self.eval_dataset, dict) else {"": self.eval_dataset}
        splits += [(f"the eval dataset{f' {name!r}' if name else ''}", split) for name, split in evals.items()]
        for where, split in splits:
            if getattr(split, "column_names", None) is not None:
                check_session_time_columns(split.column_names, where, otherwise=A_SAVED_MODEL_READS_THEM)

    def _check_best_metric(self) -> None:
        """
        Refuse ``metric_for_best_model`` with a ``greater_is_better`` that points the wrong way for the package's
        metrics (:func:`metric_direction`, with the model's actions and the eval datasets' names): a lower-is-better
        one (MAE, log loss, ECE) with True, the Trainer's default for every name not ending in "loss" (before:
        ``load_best_model_at_end`` kept the worst checkpoint and ``EarlyStoppingCallback`` stopped while the metric
        improved), a higher-is-better one with False, and ``calibration_<action>``, best at 1.
        """
        metric = self.args.metric_for_best_model
        if not isinstance(metric, str):
            return
        config = getattr(self.accelerator.unwrap_model(self.model), "config", None)
        actions = getattr(config, "action_names", None)
        name = metric.removeprefix("eval_")
        if isinstance(self.eval_dataset, dict):  # metrics named eval_<dataset>_<metric>
            name = next((name[len(key) + 1 :] for key in self.eval_dataset if name.startswith(f"{key}_")), name)
        try:
            direction = metric_direction(name, list(actions) if actions else None)
        except ValueError:  # reads as both directions (a model without action names): greater_is_better decides
            return
        if direction == "unordered":
            raise _unordered_metric_error(metric)
        wrong = {"lower": True, "higher": False}.get(direction)
        if wrong is not None and self.args.greater_is_better is wrong:
            worse = "higher" if direction == "lower" else "lower"
            raise ValueError(
                f"metric_for_best_model={metric!r} is {direction}-is-better, but greater_is_better={wrong}: "
                f"load_best_model_at_end would keep the checkpoint with the {worse} value (the worst) and "
                f"EarlyStoppingCallback would stop while it improves. Pass greater_is_better={not wrong} "
                "(a2gen_training_arguments sets it for the package's metrics when it is not given; transformers "
                "takes True for every name that does not end in 'loss')."
            )

    def _remove_unused_columns(self, dataset, description: str | None = None):
        """For :class:`A2GenDataCollator`, the batches as Arrow tables of the columns it reads
        (:class:`~a2gen_hf.data.collator.ArrowBatches`: the same rows in the same order, without a Python object per
        value; the Trainer calls this on every ``datasets.Dataset`` it makes a ``DataLoader`` of). The Trainer's own
        removal of the columns the forward does not name is skipped for it, whatever ``remove_unused_columns``
        says: that collator reads raw example columns (``user_id``, ``action_seconds``, ...) the forward never
        names. Other collators get the Trainer's removal."""
        if isinstance(self.data_collator, A2GenDataCollator):
            return collation_rows(dataset)
        return super()._remove_unused_columns(dataset, description)

    def get_eval_dataloader(self, eval_dataset=None):
        """``Trainer.get_eval_dataloader`` whose batches also carry ``user_keys`` (the raw users: GAUC and NDCG@K
        group by them; the hashed ``user_ids`` can merge users), where the collator is :class:`A2GenDataCollator`.
        A split whose ``user`` column misses some users is refused, naming the example (:meth:`_check_eval_users`)."""
        split = self.eval_dataset if eval_dataset is None else eval_dataset
        if isinstance(split, str) and isinstance(self.eval_dataset, dict):
            split = self.eval_dataset.get(split)
        self._check_outcomes(split)
        self._check_eval_users(split)
        with self._collating_user_keys():
            return super().get_eval_dataloader(eval_dataset)

    def get_test_dataloader(self, test_dataset):
        """``Trainer.get_test_dataloader``, with ``user_keys`` as in :meth:`get_eval_dataloader`."""
        self._check_outcomes(test_dataset, "the test dataset")
        self._check_eval_users(test_dataset, "the test dataset")
        with self._collating_user_keys():
            return super().get_test_dataloader(test_dataset)

    def _check_outcomes(self, splits: Any, where: str = "the eval dataset") -> None:
        """With :class:`A2GenDataCollator`, a split without the outcome columns (``action_ids``,
        ``action_seconds``), or a ``datasets.Dataset`` whose every example has an empty ``action_ids`` (sessions
        not observed yet), is refused before any batch, pointing to the inference paths
        (:data:`UNLABELLED_INFERENCE`); before: the collator's KeyError (which named ``remove_unused_columns``)
        or its "empty target sequence" at the first batch. Evaluation and prediction score examples against
        their outcomes."""
        if not isinstance(self.data_collator, A2GenDataCollator):
            return
        named = splits.items() if isinstance(splits, dict) else [("", splits)]
        for name, split in named:
            columns = getattr(split, "column_names", None)
            if not columns:  # no columns known (a list, a streamed split without features): the collator checks
                continue
            missing = [column for column in OUTCOME_COLUMNS if column not in columns]
            if missing:
                problem = f"has no column(s) {missing}"
            elif isinstance(split, datasets.Dataset) and len(split) and not _any_outcome(split):
                problem = "has no outcome in any example (every action_ids is empty)"
            else:
                continue
            raise ValueError(
                f"{where}{f' {name!r}' if name else ''} {problem}: evaluate() and predict() score examples against "
                f"their outcomes (the actions that followed, action_ids, and their times, action_seconds); "
                f"{UNLABELLED_INFERENCE}."
            )

    def _check_eval_users(self, splits: Any, where: str = "the eval dataset") -> None:
        """With :class:`A2GenDataCollator`, whose evaluation batches carry the raw users (``user_keys``), a split
        (``datasets.Dataset``) whose ``user`` column is None for some examples is refused before any step, naming
        the first (:func:`~a2gen_hf.metrics.evaluation.missing_user_error`): GAUC and NDCG@K group a whole
        evaluation by one rule. Streamed splits are checked batch by batch by the collator."""
        if not isinstance(self.data_collator, A2GenDataCollator):
            return
        named = splits.items() if isinstance(splits, dict) else [("", splits)]
        for name, split in named:
            check_user_column(split, f"{where}{f' {name!r}' if name else ''}")

    @contextlib.contextmanager
    def _collating_user_keys(self):
        collator = self.data_collator
        if isinstance(collator, A2GenDataCollator) and not collator.user_keys:
            self.data_collator = copy.copy(collator)
            self.data_collator.user_keys = True
        try:
            yield
        finally:
            self.data_collator = collator

    def _get_collator_with_removed_columns(self, data_collator: Callable, description: str | None = None) -> Callable:
        """For a streaming dataset (``datasets.IterableDataset``) the Trainer removes the unused columns in a wrapper
        of the collator instead of :meth:`_remove_unused_columns`: skipped for :class:`A2GenDataCollator` as well,
        for the same reason (it reads raw example columns the forward does not name)."""
        if isinstance(data_collator, A2GenDataCollator):
            return data_collator
        return super()._get_collator_with_removed_columns(data_collator, description)

    def _sparse_refusal(self) -> str | None:
        """Why this run cannot train the id tables with sparse gradients (None: it can)."""
        optim = str(getattr(self.args.optim, "value", self.args.optim))
        if optim not in ADAMW_OPTIMS:
            return f"optim={optim!r} takes dense gradients (adamw_torch takes sparse ones)"
        supported, reason = sparse_gradients_supported(self.accelerator)
        return None if supported else reason

    def _finalize_training(self, *args: Any, **kwargs: Any):
        """The Trainer's end of training, with ``training_loss`` (``train_loss``) averaged over the processes: the
        Trainer gathers the loss at each logging step but adds what was summed since the last one as each process's
        own, so under DDP every process reported a different figure (all of it, in a run shorter than
        ``logging_steps``)."""
        running = getattr(self, "_tr_loss", None)
        if self.args.world_size > 1 and isinstance(running, torch.Tensor):
            self._tr_loss = nested_gather(running, self.args.parallel_mode).mean()
        return super()._finalize_training(*args, **kwargs)

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False, **kwargs: Any):
        """The Trainer's loss; under several processes, training, with every weight in the graph
        (:func:`~a2gen_hf.training.optimization.with_every_weight_in_the_graph`), so that DDP without
        ``find_unused_parameters`` (this package's default) takes a batch whose histories are all empty."""
        result = super().compute_loss(model, inputs, return_outputs=return_outputs, **kwargs)
        if not (model.training and self.args.world_size > 1):
            return result
        if return_outputs:
            return with_every_weight_in_the_graph(result[0], model), result[1]
        return with_every_weight_in_the_graph(result, model)

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
            self._dense_group = len(groups) - 1
        if sparse:
            optimizer_class = SparseAdamW  # AdamW (fused or not, as `optim` says) that also takes sparse gradients
        self.optimizer = optimizer_class(groups, **optimizer_kwargs)
        return self.optimizer

    def _get_learning_rate(self) -> float:
        """The rate logged as ``learning_rate``: transformers logs the first parameter group's, which with
        ``embedding_learning_rate`` is the embedding tables' group; the logged rate is the dense weights'
        (``args.learning_rate`` and its schedule), as ``TrainingArguments`` names it (before: the tables' rate)."""
        if self._dense_group is None or self.optimizer is None:
            return super()._get_learning_rate()
        rate = self.optimizer.param_groups[self._dense_group]["lr"]
        return rate.item() if torch.is_tensor(rate) else float(rate)

    def train(self, *args: Any, **kwargs: Any):
        """
        ``Trainer.train``; the id tables are switched back to the model's own setting afterwards, and the model's
        ``forward`` is left as it was (:meth:`_forward_as_it_was`: with bf16 / fp16 it ran in autocast afterwards,
        before). Large freed host memory is kept for reuse (:func:`~a2gen_hf.host_memory.keep_freed_host_memory`).
        """
        keep_freed_host_memory()
        self._check_best_metric()  # the arguments may have changed since the trainer was built
        own_setting = bool(getattr(self.model.config, "sparse_embeddings", False))
        with self._forward_as_it_was():
            try:
                return super().train(*args, **kwargs)
            finally:
                set_sparse_embeddings(self.model, own_setting)

    @contextlib.contextmanager
    def _forward_as_it_was(self):
        """
        Runs a ``train`` / ``evaluate`` / ``predict`` call with the model's ``forward`` as the Trainer runs it and
        leaves it as it was. Under bf16 / fp16 Accelerate's ``prepare`` replaces ``model.forward`` with an autocast +
        float32-outputs wrapper and never takes it off: after ``train()`` (or a first ``evaluate()``) the user's model
        kept running its forward in mixed precision, giving other losses and outputs than the same weights saved
        and loaded (before). The wrapper now comes off when the call ends; a call that the Trainer does not prepare
        the model for again (it was prepared already) puts it back for its duration, so the Trainer's forwards run in
        mixed precision as before. DeepSpeed and FSDP own their models: left to them.
        """
        model = self.model
        if model is None or self.is_deepspeed_enabled or self.is_fsdp_enabled:
            yield
            return
        saved = {name: model.__dict__[name] for name in _FORWARD_ATTRIBUTES if name in model.__dict__}
        accelerator = self.accelerator
        prepared = getattr(model, "_is_accelerate_prepared", False) or self.model_wrapped is not model
        if accelerator.native_amp and "_original_forward" not in saved and prepared:
            # what Accelerator.prepare_model does, which returns at once for a model it prepared before
            autocast = get_mixed_precision_context_manager(accelerator.native_amp, accelerator.autocast_handler)
            forward = model._original_forward = model.forward
            if hasattr(forward, "__func__"):
                model.forward = MethodType(convert_outputs_to_fp32(autocast(forward.__func__)), model)
            else:
                model.forward = convert_outputs_to_fp32(autocast(forward))
        try:
            yield
        finally:
            for name in _FORWARD_ATTRIBUTES:
                if name in saved:
                    model.__dict__[name] = saved[name]
                else:
                    model.__dict__.pop(name, None)
            if self.model is not model and isinstance(self.model, nn.Module):  # model_init built a new one
                extract_model_from_parallel(self.model, keep_fp32_wrapper=False)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        if os.path.isfile(os.path.join(resume_from_checkpoint, CHECKPOINT_MANIFEST)):
            raise ValueError(
                f"{resume_from_checkpoint} is a checkpoint of `a2gen train` (its own format, no trainer_state.json): "
                "resume it with `a2gen train --resume`, or start a Trainer run from the run's OUTPUT/model with "
                "from_pretrained."
            )
        check_checkpoint_fits(resume_from_checkpoint, model if model is not None else self.model)
        self._resumed_from = resume_from_checkpoint  # the average is restored from it when training begins
        super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        # The average goes in first, so that a checkpoint the Trainer pushes (push_to_hub) or lists holds it.
        if self.weight_average is not None and self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            os.makedirs(folder, exist_ok=True)
            self.weight_average.save(folder)
        super()._save_checkpoint(model, trial)

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """``Trainer.evaluate``; while training with ``weight_average_decay``, of the weights' moving average. The
        model's ``forward`` is left as it was (:meth:`_forward_as_it_was`)."""
        with self._forward_as_it_was():
            if self.weight_average is None:
                metrics = super().evaluate(*args, **kwargs)
            else:
                with self.weight_average.applied():
                    metrics = super().evaluate(*args, **kwargs)
        self._warn_of_an_undefined_best_metric(metrics)
        return metrics

    def _warn_of_an_undefined_best_metric(self, metrics: dict[str, float]) -> None:
        """
        Warn once per metric, while training, where ``metric_for_best_model`` reads NaN (``mean_gauc`` of an eval
        dataset where no action has :data:`~a2gen_hf.metrics.MIN_GAUC_GROUPS` users holding both classes, an AUC
        of an action with one class): transformers compares with ``np.greater`` / ``np.less``, False against NaN,
        so no evaluation becomes the best by it, silently. The warning names the metric, the note of
        :func:`a2gen_compute_metrics` that says why it is NaN, what happens (the last weights are kept;
        ``EarlyStoppingCallback`` counts the evaluation as no improvement) and what to select by instead.
        """
        metric = self.args.metric_for_best_model
        if not isinstance(metric, str) or not getattr(self, "is_in_train", False):
            return
        key = metric if metric.startswith("eval_") else f"eval_{metric}"
        value = metrics.get(key)
        if not isinstance(value, float) or not math.isnan(value) or key in self._undefined_best_metrics:
            return
        self._undefined_best_metrics.add(key)
        if not self.is_world_process_zero():
            return
        name = key.removeprefix("eval_")
        if isinstance(self.eval_dataset, dict):  # metrics named eval_<dataset>_<metric>
            name = next((name[len(dataset) + 1 :] for dataset in self.eval_dataset if name.startswith(f"{dataset}_")), name)
        notes = getattr(self.compute_metrics, "notes", None) or []
        why = [note for note in notes if note.split(":", 1)[0].replace("[", "_").rstrip("]") == name]
        instead = "metric_for_best_model='loss' (greater_is_better=False)"
        if name != "mean_auc":
            instead += " or 'mean_auc' where the eval dataset defines it"
        warnings.warn(
            f"metric_for_best_model={metric!r} is NaN at step {self.state.global_step}: "
            f"{' '.join(why) if why else 'undefined on this eval dataset (compute_metrics gave no note)'} NaN is "
            "never better than a value, so no evaluation becomes the best by it: no best checkpoint is recorded "
            "(load_best_model_at_end keeps the last weights, save_strategy='best' saves none) and "
            "EarlyStoppingCallback counts every evaluation where it is NaN as no improvement. Select by "
            f"{instead}, or evaluate on more examples (more users per action for the GAUCs). Warned once.",
            UserWarning,
            stacklevel=2,
        )

    def predict(self, *args: Any, **kwargs: Any):
        """``Trainer.predict`` of labelled examples (the predictions of :meth:`prediction_step`, the loss and the
        metrics against their outcomes); the model's ``forward`` is left as it was (:meth:`_forward_as_it_was`). To
        score examples whose outcome is not known yet: :data:`UNLABELLED_INFERENCE`."""
        with self._forward_as_it_was():
            return super().predict(*args, **kwargs)

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
        # Every evaluation path (loss only or not): the Trainer computes the loss only when every one of label_names
        # is in the batch, so a batch without label_time_mask gave no eval_loss, silently (before).
        missing = [name for name in self.label_names if inputs.get(name) is None]
        if missing:
            raise ValueError(
                f"The evaluation batch has no {missing} (its keys: {sorted(inputs)}): the Trainer computes eval_loss "
                f"only when every one of label_names {list(self.label_names)} is in the batch, and would report "
                "none. Collate with A2GenDataCollator, which builds labels, label_times and label_time_mask (1 where "
                "label_times holds a known time, 0 at padding and unknown times) from the examples' action_ids / "
                "action_seconds, or add the missing tensors in your own collator. evaluate() and predict() score "
                f"examples against their outcomes; {UNLABELLED_INFERENCE}."
            )
        groups = self._evaluation_groups(inputs)
        inputs.pop(USER_KEYS_COLUMN, None)  # evaluation's groups (get_eval_dataloader), not a model input
        loss = super().prediction_step(model, inputs, prediction_loss_only=True, ignore_keys=ignore_keys)[0]
        real = self._real_rows_of_a_padded_batch(inputs)
        if loss is not None and real:  # the loss of the examples, not of the copies that pad them (see the method)
            part = {key: _first_rows(value, real) for key, value in inputs.items()}
            loss = super().prediction_step(model, part, prediction_loss_only=True, ignore_keys=ignore_keys)[0]
        if prediction_loss_only:
            return loss, None, None
        network = self.accelerator.unwrap_model(model)
        outputs = predict_batch(network, inputs, generate=True)
        probabilities = outputs["action_probabilities"]
        predictions = (probabilities, outputs["expected_times"], outputs["next_actions"])
        if groups is not None:  # one column for the whole evaluation: the raw users, else the hashed ids
            predictions += (groups,)
        labels = tuple(inputs[name] for name in self.label_names)
        return loss, predictions, labels

    def evaluation_loop(self, *args: Any, **kwargs: Any):
        """``Trainer.evaluation_loop``; the column the examples group by is chosen anew for each evaluation
        (:meth:`_evaluation_groups`)."""
        self._group_column = _UNDECIDED
        try:
            return super().evaluation_loop(*args, **kwargs)
        finally:
            self._group_column = _PER_BATCH

    def _evaluation_groups(self, inputs: dict[str, Any]) -> torch.Tensor | None:
        """
        The group of each example of this evaluation batch (GAUC, NDCG@K / Recall@K), by one column for the whole
        evaluation (:func:`~a2gen_hf.metrics.evaluation.evaluation_group_column` of its first batch): the raw users'
        ``user_keys`` where the split has a ``user`` column, else the hashed ``user_ids``. A batch that would group
        by the other column is refused (before: each batch took ``user_keys`` where all its rows had a user, else
        ``user_ids``, silently, so a user's rows in two batches made two groups).
        """
        found = evaluation_group_column(inputs)
        if self._group_column is _PER_BATCH:  # a prediction_step called outside an evaluation: this batch's own
            return batch_groups(inputs, found)
        if self._group_column is _UNDECIDED:
            self._group_column = found
        elif found != self._group_column:
            raise ValueError(
                f"This evaluation batch would group its examples by {found!r}, but the evaluation's first batch "
                f"grouped them by {self._group_column!r}; GAUC and NDCG@K group every example of an evaluation by "
                f"one rule ({USER_KEYS_COLUMN!r}: the raw users of a 'user' column; 'user_ids': the hashed ones), "
                "or a user would be split into two groups. Give every example a 'user', or none of them."
            )
        return batch_groups(inputs, self._group_column)

    def _evaluation_position(self) -> tuple[int, int, bool, int]:
        """``(processes, this process's index, at the evaluation loader's last batch, examples in the last global
        batch or -1 / 0)`` from Accelerate's state."""
        accelerator = self.accelerator
        state = accelerator.gradient_state
        return accelerator.num_processes, accelerator.process_index, bool(state.end_of_dataloader), state.remainder

    def _real_rows_of_a_padded_batch(self, inputs: dict[str, Any]) -> int | None:
        """
        Under several processes the last evaluation batch of a split that does not divide evenly is padded with
        copies of the split's first examples (Accelerate's ``even_batches``), and the Trainer counts each batch's
        mean loss ``eval_batch_size`` times, keeping the first ``remainder`` counts of the processes' last batches
        (``gather_for_metrics``): the padding then drops out of the predictions but not out of the loss, whose mean
        includes the copies. Returns how many leading rows of this process's last batch are real examples when
        some, not all, are (its loss is then recomputed over those); None otherwise (one process, any other batch).
        """
        processes, index, last, remainder = self._evaluation_position()
        labels = inputs.get("labels")
        if processes < 2 or not last or remainder is None or remainder <= 0 or not torch.is_tensor(labels):
            return None
        size = labels.shape[0]
        width = self.args.eval_batch_size  # the counts of each process's loss in the gathered losses
        real = min(max(remainder - index * width, 0), size)
        return real if 0 < real < size else None

    def create_model_card(
        self,
        language: str | None = None,
        license: str | None = None,
        tags: str | list[str] | None = None,
        model_name: str | None = None,
        finetuned_from: str | None = None,
        tasks: str | list[str] | None = None,
        dataset_tags: str | list[str] | None = None,
        dataset: str | list[str] | None = None,
        dataset_args: str | list[str] | None = None,
    ) -> None:
        """
        Writes the A2Gen model card (:func:`~a2gen_hf.hub.build_model_card`) to ``args.output_dir/README.md``, as
        ``trainer.push_to_hub()`` pushes it: the model's tags and ``custom_code``, the data set (``dataset``, else
        the train set's own name unless it is a generic one such as "generator"), and the per-action AUC and MAE of
        the last evaluation, or of the best checkpoint's with ``load_best_model_at_end`` (counts never).
        ``language``, ``finetuned_from``, ``tasks`` and ``dataset_args`` are not used.
        """
        from ..hub import build_model_card, dataset_name_of, eval_results_from_log_history

        if not self.is_world_process_zero():
            return
        network = self.accelerator.unwrap_model(self.model)
        names = [dataset] if isinstance(dataset, str) else list(dataset or dataset_tags or [])
        dataset_name = (names[0] if names else None) or dataset_name_of(self.train_dataset)
        # With load_best_model_at_end the model pushed is the best checkpoint's: its evaluation, not the last one.
        best_step = self.state.best_global_step if self.args.load_best_model_at_end else None
        eval_results = eval_results_from_log_history(self.state.log_history, network.config, best_step) or None
        tokenizer = self.processing_class if hasattr(self.processing_class, "decode_timeline") else None
        card = build_model_card(
            network,
            tokenizer,
            eval_results=eval_results if dataset_name else None,
            dataset_name=dataset_name,
            repo_id=self.hub_model_id or model_name,
            eval_split="validation",
            license=license or "apache-2.0",
            tags=[tags] if isinstance(tags, str) else list(tags or []),
        )
        card.save(os.path.join(self.args.output_dir, "README.md"))


# What A2GenTrainer's refusals of examples without outcomes point to.
UNLABELLED_INFERENCE = (
    "to score examples whose outcome is not known yet, use model.predict_actions(...) (P(action happens) and "
    "expected times of history inputs, e.g. tokenizer.encode_histories: docs/model.md), the 'action-generation' "
    "pipeline (one user's raw history and candidate items), or A2GenRanker (a2gen_hf.ranking: batched serving)"
)
# The attributes of a model through which Accelerate's prepare wraps its forward in mixed precision.
_FORWARD_ATTRIBUTES = ("forward", "_original_forward")

# A2GenTrainer._group_column before an evaluation's first batch, and outside evaluations (None: no groups).
_UNDECIDED = object()
_PER_BATCH = object()


def _any_outcome(split: datasets.Dataset) -> bool:
    """Whether some example of ``split`` has a non-empty ``action_ids`` (read in blocks of the one column, stopping
    at the first block that has one: the first, for labelled data)."""
    for block in split.select_columns(["action_ids"]).with_format("arrow").iter(batch_size=1024):
        if pc.max(pc.list_value_length(block.column("action_ids"))).as_py():
            return True
    return False


def _first_rows(value: Any, rows: int) -> Any:
    """The first ``rows`` examples of a batch entry (a tensor with a batch dimension), else the entry as it is."""
    return value[:rows] if torch.is_tensor(value) and value.dim() > 0 else value


class _WeightAverageCallback(TrainerCallback):
    """:class:`A2GenTrainer`'s moving average of the weights: started (or restored from the checkpoint resumed from)
    when training begins, moved after every optimizer step, put into the model when training ends."""

    def __init__(self, trainer: A2GenTrainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        trainer = self.trainer
        decay, every, warmup = trainer._weight_average_settings
        trainer.weight_average = WeightAverage(trainer.model, decay, every, warmup)
        if trainer._resumed_from is not None:
            trainer.weight_average.load(trainer._resumed_from)

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer.weight_average.update(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        trainer = self.trainer
        average, trainer.weight_average, trainer._resumed_from = trainer.weight_average, None, None
        if args.load_best_model_at_end and state.best_model_checkpoint is not None:
            average.load(state.best_model_checkpoint)  # the best evaluation scored that checkpoint's average
        average.copy_to_model()
