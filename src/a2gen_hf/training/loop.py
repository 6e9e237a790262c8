"""The Accelerate training loop behind ``a2gen train``, ``a2gen compare`` and ``examples/train_accelerate.py``.

One process or many (DDP through ``accelerate launch``), gradient accumulation, bf16 / fp16, separate learning
rates for embedding tables and dense weights, checkpoints every N steps written atomically, exact resume, best-epoch
selection on the validation loss and evaluation at the end. Works with any model of this package that takes the
collator's batch and returns ``.loss`` (A2Gen, MMoE, PLE).

Exact resume: a checkpoint holds the model, the optimizer (and fp16 loss scaler), every process's RNG states and
the step counters; map-style data is reshuffled per epoch with ``seed + epoch`` and the consumed batches of the
current epoch are skipped, a streaming input replays each process's shard and skips what it consumed. The weights of
the best epoch so far are kept on disk (``best_model.safetensors``) rather than in memory, so a resumed run selects
the same epoch as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, replace
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any

import datasets
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import DistributedType, set_seed
from datasets.distributed import split_dataset_by_node
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from ..data.collator import A2GenDataCollator, collation_rows
from ..features_a2gen import freeze_statistics
from ..host_memory import keep_freed_host_memory
from ..metrics import ORACLE_COLUMNS, evaluate_model, predict_batch, ranked_action_aucs, ranked_action_ids, user_groups
from ..output_folders import (
    output_lock,
    recover,
    staging_folder,
    switch_in,
    write_failures_named,
    write_json_atomically,
    write_text_atomically,
)
from .checkpointing import (  # noqa: F401  (re-exported: their old home)
    BEST_GENERATOR_FILE,
    BEST_MODEL_FILE,
    CHECKPOINT_FORMAT,
    CHECKPOINT_MANIFEST,
    CHECKPOINT_MODEL_FILE,
    CHECKPOINT_OPTIMIZER_FILE,
    CHECKPOINT_PREFIX,
    RESUME_FREE_SETTINGS,
    RNG_STATE_PREFIX,
    TRAINING_LOG_FILE,
    _check_finite_weights,
    _load_best,
    _Progress,
    _resume,
    _resume_key,
    _save_best,
    _save_checkpoint,
    latest_checkpoint,
    remove_interrupted_best_saves,
    remove_interrupted_checkpoints,
    resume_advice,
)
from .data_setup import (
    create_model,
    load_data_dir,
    model_to_train_from,
    refuse_without_validation,
    untrained_actions,
    warn_of_moments_without_item_times,
    warn_of_settings_the_model_drops,
)
from .optimization import (
    SparseAdamW,
    clip_grad_norm_,
    set_sparse_embeddings,
    sparse_gradients_supported,
    with_every_weight_in_the_graph,
)
from .settings import (  # noqa: F401  (re-exported: their old home)
    LR_SCHEDULES,
    MIXED_PRECISIONS,
    SELECTION_METRICS,
    TRACKERS,
    TRACKING_PROJECT,
    TrainingResult,
    TrainingSettings,
    tracker_names,
)
from .weight_average import WeightAverage

# Fused AdamW for the dense gradients: one pass over each tensor (6-7x faster than the per-tensor loop on a CPU).
OPTIMIZER_FUSED = True

logger = logging.getLogger(__name__)
MODEL_FOLDER = "model"
EVAL_RESULTS_FILE = "eval_results.json"
# The model folders the last run into each output folder saved in this process (:func:`train_from_data_dir`):
# `a2gen train`'s Ctrl-C line tells a model this run saved (then stopped in its test evaluation) from one an earlier
# run left (this run stopped in training).
_MODELS_SAVED_HERE: set[str] = set()


def saved_by_this_process(model_folder: str | os.PathLike) -> bool:
    """Whether the latest :func:`train_from_data_dir` into ``OUTPUT`` (``model_folder`` is its ``OUTPUT/model``) saved
    that model in this process."""
    return os.path.realpath(model_folder) in _MODELS_SAVED_HERE










def embedding_and_dense_groups(
    model: nn.Module,
    dense_learning_rate: float,
    embedding_learning_rate: float,
    weight_decay: float = 0.0,
    embedding_weight_decay: float = 0.0,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: the ``nn.Embedding`` tables, then every other trainable weight."""
    embedding_ids = {id(module.weight) for module in model.modules() if isinstance(module, nn.Embedding)}
    embeddings = [p for p in model.parameters() if id(p) in embedding_ids and p.requires_grad]
    dense = [p for p in model.parameters() if id(p) not in embedding_ids and p.requires_grad]
    return [
        {"params": embeddings, "lr": embedding_learning_rate, "weight_decay": embedding_weight_decay},
        {"params": dense, "lr": dense_learning_rate, "weight_decay": weight_decay},
    ]


def parameter_groups(model: nn.Module, settings: TrainingSettings) -> list[dict[str, Any]]:
    """Embedding tables and dense weights, each with the learning rate and weight decay of ``settings``."""
    return embedding_and_dense_groups(
        model,
        settings.dense_learning_rate,
        settings.embedding_learning_rate,
        settings.weight_decay,
        settings.embedding_weight_decay,
    )


@lru_cache(maxsize=8)
def _schedule(schedule: str, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """transformers' schedule (``get_scheduler``) as a function of the step: its ``LambdaLR`` multiplier."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule={schedule!r}; use one of {list(LR_SCHEDULES)}.")
    # plateau: constant here (after any warmup); the run scales it down on evaluations that do not improve
    name = "constant_with_warmup" if schedule in ("constant", "plateau") else schedule
    probe = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    return get_scheduler(name, probe, num_warmup_steps=warmup_steps, num_training_steps=max(total_steps, 1)).lr_lambdas[0]


def learning_rate_factor(schedule: str, step: int, total_steps: int, warmup_steps: int = 0) -> float:
    """The multiplier of the base learning rates at optimizer step ``step`` (0-based) of ``total_steps``, from
    transformers' schedules (``get_scheduler``): a linear warmup from 0 over ``warmup_steps``, then 1 (``constant``),
    a straight line towards 0 (``linear``) or a half cosine towards 0 (``cosine``). A function of the step alone,
    so a resumed run continues the same schedule."""
    return float(_schedule(schedule, warmup_steps, total_steps)(step))


def configure_embedding_updates(model: nn.Module, settings: TrainingSettings, accelerator: Accelerator | None = None) -> bool:
    """
    Switch the id tables of ``model`` to sparse gradients when ``settings.sparse_embeddings`` asks for it and the
    run supports it (:func:`~a2gen_hf.training.optimization.sparse_gradients_supported`: one process, or DDP on
    gloo), else to dense ones, saying so when a request is refused. Call before ``accelerator.prepare``.

    Returns:
        The model's previous setting, to restore with ``set_sparse_embeddings`` after training.
    """
    enabled = settings.sparse_embeddings
    if enabled:
        supported, reason = sparse_gradients_supported(accelerator)
        if not supported:
            message = f"Sparse embedding updates are off for this run: {reason}; the id tables train with dense AdamW."
            (accelerator.print if accelerator is not None else logger.warning)(message)
            enabled = False
    return set_sparse_embeddings(model, enabled)


def create_optimizer(model: nn.Module, settings: TrainingSettings) -> SparseAdamW:
    """
    The optimizer of :func:`train`: :class:`~a2gen_hf.training.optimization.SparseAdamW` (AdamW for dense
    gradients, lazy row-wise AdamW for the sparse gradients of the id tables) over :func:`parameter_groups`.
    """
    return SparseAdamW(parameter_groups(model, settings), fused=OPTIMIZER_FUSED)


def _forget_a_single_process_state() -> None:
    """Accelerate keeps one state per Python process and refuses an ``Accelerator`` for other settings (``cpu``,
    ``mixed_precision``) once one was built: a session that trained on the GPU and then asks for the CPU, or for
    another precision, would be told to restart Python. A process outside a distributed launch holds nothing there
    worth keeping between runs, so each of its runs starts a state of its own; the processes of ``accelerate launch``
    (their process group started) keep theirs."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


def make_accelerator(settings: TrainingSettings) -> Accelerator:
    """
    The ``Accelerator`` for ``settings`` (its distributed setup comes from ``accelerate launch``).

    Raises:
        ValueError: the device cannot run ``settings.mixed_precision``: fp16 on a CPU (where Accelerate would
            silently train in fp32) or bf16 on a GPU without bfloat16.
    """
    advice = "use --mixed-precision no (or bf16 on a CPU or an NVIDIA Ampere or newer GPU)"
    trackers = tracker_names(settings.report_to)
    missing = [name for name in trackers if name != "all" and not _tracker_available(name)]
    if missing:
        how = "; ".join(
            "tensorboard: pip install 'a2gen_hf[tracking]'" if name == "tensorboard" else f"{name}: pip install {name}"
            for name in missing
        )
        raise ValueError(
            f"report_to={settings.report_to!r}: {missing} is not installed; install it ({how}) or choose another "
            "tracker, or 'none'."
        )
    if "all" in trackers and not any(_tracker_available(name) for name in TRACKERS):
        logger.warning(
            "report_to='all' (--report-to all) tracks with every installed tracker, and none is installed: nothing is "
            "tracked. Install one (tensorboard: pip install 'a2gen_hf[tracking]') or pass --report-to none."
        )
    _forget_a_single_process_state()
    try:
        accelerator = Accelerator(
            gradient_accumulation_steps=settings.gradient_accumulation_steps,
            mixed_precision=settings.mixed_precision,
            cpu=settings.cpu,
            log_with=trackers or None,
            project_dir=str(Path(settings.output_dir) / "tracking") if trackers else None,
        )
    except ValueError as error:
        raise ValueError(f"mixed_precision={settings.mixed_precision!r}: {error} Fix: {advice}.") from None
    if settings.mixed_precision == "fp16" and accelerator.device.type == "cpu":
        raise ValueError(f"mixed_precision='fp16' needs a GPU; this run is on the CPU. Fix: {advice}.")
    return accelerator


def _tracker_available(name: str) -> bool:
    from accelerate import utils

    return bool(getattr(utils, f"is_{name}_available", lambda: False)())


def _start_tracking(accelerator: Accelerator, settings: TrainingSettings) -> bool:
    """Starts the accelerator's trackers with the run's settings as their config; False when it has none."""
    if not accelerator.log_with:
        return False
    config = {key: value if isinstance(value, (int, float, str, bool)) else str(value)
              for key, value in asdict(settings).items()}
    accelerator.init_trackers(TRACKING_PROJECT, config=config)
    return True








































def _chunks(rows, size: int) -> Iterator[list]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def shard_for_process(dataset: datasets.IterableDataset, accelerator: Accelerator) -> datasets.IterableDataset:
    """
    This process's part of a streaming dataset: whole shards when ``dataset.num_shards`` is a multiple of the
    number of processes (e.g. ``Dataset.to_iterable_dataset(num_shards=4)`` on 2 processes), else every
    ``num_processes``-th example. The parts of different processes are disjoint.
    """
    return split_dataset_by_node(
        dataset, rank=accelerator.process_index, world_size=accelerator.num_processes
    )


def _stream_batches(dataset, collator, settings: TrainingSettings, accelerator: Accelerator, skip: int):
    """
    Endless micro-batches of this process's shard, reshuffled (buffer of ``shuffle_buffer_size``) on each pass;
    the first ``skip`` are read and dropped (the replay that makes a resumed run continue where it stopped).
    With ``settings.dataloader_num_workers`` = W > 0 the shard's shards are read, shuffled and collated in W worker
    processes (each forms its own batches; the ``DataLoader`` takes them in turn), so W decides the order of the
    batches and is part of a stream's resume key. Yields ``(pass_index, batch)``.
    """
    shard = shard_for_process(dataset, accelerator).shuffle(
        seed=settings.seed, buffer_size=settings.shuffle_buffer_size
    )
    workers = settings.dataloader_num_workers
    pass_index = 0
    while True:
        shard.set_epoch(pass_index)
        empty = True
        if workers:
            parts = DataLoader(
                shard, batch_size=settings.batch_size, collate_fn=collator, **loader_options(settings, accelerator.device)
            )
        else:
            parts = _chunks(shard, settings.batch_size)  # rows, collated below unless skipped
        for part in parts:
            empty = False
            if skip:
                skip -= 1
                continue
            batch = part if workers else collator(part)
            yield pass_index, {key: value.to(accelerator.device) for key, value in batch.items()}
        if empty:
            raise ValueError(
                f"Process {accelerator.process_index} got no examples from the streaming dataset "
                f"({dataset.num_shards} shards, {accelerator.num_processes} processes); give it more examples or "
                "as many shards as processes (Dataset.to_iterable_dataset(num_shards=...))."
            )
        pass_index += 1


def loader_options(settings: TrainingSettings, device: torch.device) -> dict:
    """``DataLoader`` keywords for ``settings.dataloader_num_workers``: the worker processes that read and collate the
    batches, and page-locked batches where they go to a GPU."""
    return {"num_workers": settings.dataloader_num_workers, "pin_memory": device.type == "cuda"}


def _evaluation_loader(dataset, collator, settings: TrainingSettings, device: torch.device) -> DataLoader:
    """The validation and test passes' batches of ``dataset``, in order (``eval_batch_size``, :func:`loader_options`)."""
    return DataLoader(
        collation_rows(dataset), batch_size=settings.eval_batch_size, collate_fn=collator,
        **loader_options(settings, device),
    )


def _epoch_loader(dataset, collator, settings: TrainingSettings, epoch: int, accelerator: Accelerator):
    """Map-style data reshuffled with ``seed + epoch`` (a resumed epoch sees the same order), sharded by Accelerate:
    a ``datasets.Dataset`` by its ``shuffle`` (and read as Arrow tables, :class:`~a2gen_hf.data.collator.ArrowBatches`),
    any other (e.g. a list of rows already read into Python) by a seeded permutation. The loader has its own generator so that making it
    does not draw from the global RNG (dropout's)."""
    if isinstance(dataset, datasets.Dataset):
        # In memory: the indices are never written beside the data (a read-only or shared data folder trains too).
        shuffled = collation_rows(dataset.shuffle(seed=settings.seed + epoch, keep_in_memory=True))
    else:
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(settings.seed + epoch))
        shuffled = torch.utils.data.Subset(dataset, order.tolist())
    loader = DataLoader(
        shuffled,
        batch_size=settings.batch_size,
        collate_fn=collator,
        shuffle=False,
        generator=torch.Generator().manual_seed(settings.seed),
        **loader_options(settings, accelerator.device),
    )
    return accelerator.prepare_data_loader(loader)


# select_generator_by_loss: the state the ranking reads (A2Gen's occurrence head, and the running statistics that
# standardise the count features it reads), kept from the best mean-AUC evaluation while every other weight comes
# from the one with the lowest generator loss.
RANKING_PREFIXES = ("occurrence_head.", "a2gen.extra_features.")


def generator_selection_applies(model: nn.Module) -> bool:
    """Whether ``model``'s ranking and generator share no weight, so that ``select_generator_by_loss`` can keep each
    from its own evaluation: A2Gen's occurrence head on the count features alone (``occurrence_paths_input=
    "extra_only"``: the head then reads no encoder or generator weight, the feature block having none)."""
    config = getattr(model, "config", None)
    return getattr(model, "occurrence_head", None) is not None and (
        getattr(config, "occurrence_paths_input", None) == "extra_only"
    )


def freeze_ranking_state(model: nn.Module) -> Callable[[], None]:
    """``freeze_ranking``: the ranking's state (:data:`RANKING_PREFIXES`) takes no step while training: its
    parameters no gradient, its running feature statistics no update. Returns what undoes it (the parameters that
    took gradients take them again, the statistics update again in training mode)."""
    parameters = [
        parameter for name, parameter in model.named_parameters()
        if name.startswith(RANKING_PREFIXES) and parameter.requires_grad
    ]  # fmt: skip
    for parameter in parameters:
        parameter.requires_grad_(False)
    thaw = freeze_statistics(model, RANKING_PREFIXES)

    def undo() -> None:
        for parameter in parameters:
            parameter.requires_grad_(True)
        thaw()

    return undo


def check_generator_selection(model: nn.Module, settings: TrainingSettings) -> None:
    """Refuse ``settings.select_generator_by_loss`` for a model whose ranking reads weights that the generator
    selection would replace (:func:`generator_selection_applies`)."""
    if not settings.select_generator_by_loss or generator_selection_applies(model):
        return
    config = getattr(model, "config", None)
    head = getattr(model, "occurrence_head", None)
    paths = getattr(config, "occurrence_paths_input", None)
    raise ValueError(
        "select_generator_by_loss (--select-generator-by-loss) keeps the ranking's weights (A2Gen's occurrence "
        "head) from the best mean-AUC evaluation and every other weight from the lowest generator loss; the "
        "ranking must then read none of the others: use A2Gen with occurrence_head=True and "
        f"occurrence_paths_input='extra_only' (this model: {type(model).__name__}, occurrence head "
        f"{head is not None}, occurrence_paths_input={paths!r}), or drop the option "
        "(--no-select-generator-by-loss)."
    )


def plain_model(module: nn.Module) -> nn.Module:
    """
    ``module`` (unwrapped, its mixed-precision wrapper taken off: ``unwrap_model(..., keep_fp32_wrapper=False)``)
    as a model Accelerate never prepared: its own ``forward`` (not an instance attribute bound to the class's) and
    no ``_is_accelerate_prepared`` mark, with which a later ``Accelerator.prepare`` of it (another ``train`` of the
    returned model) would return it at once, without autocast, device placement or DDP. Before, ``train`` returned
    the model with Accelerate's bf16 / fp16 autocast wrapper still on ``forward``: its losses and outputs differed
    from the same weights saved and loaded.
    """
    bound = module.__dict__.get("forward")
    if getattr(bound, "__self__", None) is module and getattr(bound, "__func__", None) is type(module).forward:
        del module.__dict__["forward"]
    module.__dict__.pop("_is_accelerate_prepared", None)
    return module


def process_part(dataset, accelerator: Accelerator):
    """This process's disjoint, contiguous part of the evaluation split ``dataset``: the parts of ``datasets``'
    ``shard(num_processes, index, contiguous=True)``, but a process past the split's end gets an empty part, where
    ``shard`` raises IndexError (a validation split with fewer examples than processes crashed at the first
    validation, after the training before it)."""
    size, processes, index = len(dataset), accelerator.num_processes, accelerator.process_index
    share, extra = divmod(size, processes)
    start = share * index + min(index, extra)
    rows = range(start, start + share + (1 if index < extra else 0))
    return dataset.select(rows if rows else [])  # select(range(1, 1)) of a 1-row split raises IndexError too


@torch.no_grad()
def validation_losses(
    model: nn.Module, dataset, collator, settings: TrainingSettings, accelerator: Accelerator
) -> dict[str, float]:
    """
    ``{"loss": mean loss, "generator_loss": the same without the occurrence head's part}`` over ``dataset``,
    weighted by batch size, each process evaluating a disjoint contiguous part (no example counted twice) with the
    unwrapped model (no collective calls in the forward). For a model without an occurrence loss both are the same.
    """
    module = accelerator.unwrap_model(model)
    module.eval()
    part = process_part(dataset, accelerator)
    total = torch.zeros(3, device=accelerator.device, dtype=torch.float64)  # loss, generator loss, examples
    weight = getattr(module.config, "occurrence_loss_weight", 0.0)
    if len(part):
        loader = _evaluation_loader(part, collator, settings, accelerator.device)
        show = settings.show_progress and accelerator.is_local_main_process
        for batch in tqdm(loader, desc="validation", unit=" batches", leave=False, disable=not show):
            batch = {key: value.to(accelerator.device) for key, value in batch.items()}
            with accelerator.autocast():
                outputs = module(**batch)
            loss = outputs.loss.double()
            occurrence = getattr(outputs, "occurrence_loss", None)
            generator = loss - weight * occurrence.double() if occurrence is not None else loss
            size = float(batch["labels"].shape[0])
            total += torch.stack([loss * size, generator * size, torch.tensor(size, device=total.device)])
    total = accelerator.reduce(total, reduction="sum")
    module.train()
    mean = total[:2] / total[2].clamp_min(1)
    return {"loss": mean[0].item(), "generator_loss": mean[1].item()}


def evaluation_summary(entry: dict[str, Any], best_step: int) -> str:
    """One line for the log of an evaluation entry of ``log_history`` (long runs without a progress bar show it)."""
    parts = [f"step {entry['step']} (epoch {entry['epoch']}): validation loss {entry['validation_loss']:.4f}"]
    if "validation_generator_loss" in entry:
        parts.append(f"generator loss {entry['validation_generator_loss']:.4f}")
    if "validation_mean_auc" in entry:
        parts.append(f"mean AUC {entry['validation_mean_auc']:.4f}")
    parts.append(f"best step {best_step}")
    if entry.get("early_stop"):
        parts.append("stopping early")
    return ", ".join(parts)


@torch.no_grad()
def validation_mean_auc(
    model: nn.Module, dataset, collator, settings: TrainingSettings, accelerator: Accelerator
) -> dict[str, Any]:
    """
    ``{"mean_auc": float, "auc": {action: float}}``: the AUC of the model's P(action happens) (the
    ``action_probabilities`` of :func:`~a2gen_hf.metrics.predict_batch`, as evaluation scores them) against the
    targets (:func:`~a2gen_hf.targets.first_occurrence_targets`) per ranked action over ``dataset``, and its mean
    over the actions with both classes. Each process predicts a disjoint contiguous part; the parts are gathered, so
    every process gets the same numbers.

    Raises:
        ValueError: no ranked action has both positive and negative examples in ``dataset`` (select by ``loss``).
    """
    from ..targets import first_occurrence_targets

    module = accelerator.unwrap_model(model)
    module.eval()
    config = module.config
    part = process_part(dataset, accelerator)
    scores, targets = [], []
    for batch in _evaluation_loader(part, collator, settings, accelerator.device):
        batch = {key: value.to(accelerator.device) for key, value in batch.items()}
        with accelerator.autocast():
            scores.append(predict_batch(module, batch)["action_probabilities"])
        occurs, _, _ = first_occurrence_targets(batch["labels"], batch["label_times"], None, config.vocab_size)
        targets.append(occurs.float())
    width = config.vocab_size
    local = (
        torch.cat([torch.cat(scores), torch.cat(targets)], dim=1)
        if scores
        else torch.zeros(0, 2 * width, device=accelerator.device)
    )
    # Uneven parts: pad to the longest with rows flagged invalid, gather, drop the padding.
    local = torch.cat([local, torch.ones(len(local), 1, device=local.device)], dim=1)
    gathered = accelerator.gather(accelerator.pad_across_processes(local, dim=0)).cpu().double().numpy()
    gathered = gathered[gathered[:, -1] > 0]
    probabilities, occurs = gathered[:, :width], gathered[:, width : 2 * width] > 0.5
    aucs = ranked_action_aucs(occurs, probabilities, config)
    auc = {config.action_names[action - 1]: value for action, value in aucs.items()}
    module.train()
    if not auc:
        positives = {config.action_names[action - 1]: int(occurs[:, action].sum()) for action in ranked_action_ids(config)}
        raise ValueError(
            f"The validation split ({len(occurs)} examples) has no ranked action with both positive and negative "
            f"examples (positives per action: {positives}), so no AUC can select the best evaluation. Use a longer "
            "validation split (a2gen prepare --validation-fraction) or select by the loss: selection_metric='loss' "
            "(--select-by loss; where select_generator_by_loss or freeze_ranking is on, as in the sparse_logs recipe, "
            "switch them off too: --no-select-generator-by-loss --no-freeze-ranking). A log that holds none of the "
            "ranked actions has nothing to rank."
        )
    return {"mean_auc": float(sum(auc.values()) / len(auc)), "auc": auc}






def train(
    model: nn.Module,
    train_dataset,
    collator,
    settings: TrainingSettings,
    eval_dataset=None,
    accelerator: Accelerator | None = None,
) -> TrainingResult:
    """
    Train ``model`` on ``train_dataset``; see :func:`_train`. The main process holds the lock of
    ``settings.output_dir`` for the whole run (:func:`~a2gen_hf.output_folders.output_lock`): a second run into the
    same folder fails at once with ``OutputBusyError`` (a ``ValueError``) instead of mixing its checkpoints, log
    and model with this one's.
    """
    accelerator = accelerator or make_accelerator(settings)
    with _output_lock(accelerator, settings.output_dir):
        return _train(model, train_dataset, collator, settings, eval_dataset, accelerator)


@contextmanager
def _messages_of_the_main_process(accelerator: Accelerator):
    """The package's information messages and warnings from the main process only: with several processes each
    fits the same start (the regression, the residual fit, the give-back after training) and would print every line
    once per process. Errors still come from every process."""
    package = logging.getLogger("a2gen_hf")
    level = package.level
    if not accelerator.is_main_process:
        package.setLevel(logging.ERROR)
    try:
        yield
    finally:
        package.setLevel(level)


def _output_lock(accelerator: Accelerator, output_dir: str | os.PathLike):
    """The output folder's lock, held by the main process (the others write only what it coordinates)."""
    return output_lock(output_dir) if accelerator.is_main_process else nullcontext()


def _train(
    model: nn.Module,
    train_dataset,
    collator,
    settings: TrainingSettings,
    eval_dataset=None,
    accelerator: Accelerator | None = None,
) -> TrainingResult:
    """
    Train ``model`` on ``train_dataset`` (a ``datasets.Dataset``, or a ``datasets.IterableDataset`` with
    ``settings.max_steps``) with ``collator``. With ``eval_dataset`` (a ``datasets.Dataset``) the model is evaluated
    after every epoch (streaming: at the end) and every ``settings.eval_every_steps`` steps, by the validation loss
    and, with ``selection_metric="mean_auc"``, the validation mean AUC; with ``settings.select_best_epoch`` the
    weights of the best evaluation are returned (the networks here overfit id embeddings after one or two epochs),
    and ``early_stopping_patience`` ends the run after that many evaluations without improvement. Writes
    checkpoints and ``training_log.json`` to ``settings.output_dir``.

    The steps: :func:`_check_run` (the inputs fit together), :class:`_TrainingRun` (optimizer, resume, schedule),
    :meth:`_TrainingRun.train_on_stream` or :meth:`_TrainingRun.train_epochs`, then :meth:`_TrainingRun.finish`.

    Raises:
        FloatingPointError: the loss became NaN or inf; the message names the step and the batch (or, for the
            validation loss, the step).
        ValueError: early stopping or the plateau schedule without an ``eval_dataset``; the output folder holds
            checkpoints and ``resume`` is off, or they were written with other settings, model or data (see
            :func:`_resume_key`); a streaming input without ``max_steps``; an ``accelerator`` whose
            gradient accumulation or mixed precision differs from ``settings``.
    """
    accelerator = accelerator or make_accelerator(settings)
    _check_accelerator(accelerator, settings)
    keep_freed_host_memory()  # every step's large temporaries reuse memory instead of being page-faulted anew
    set_seed(settings.seed)
    eval_dataset = _usable_eval_dataset(eval_dataset, settings)
    _check_run(train_dataset, settings, eval_dataset)
    if getattr(model.config, "history_time_features", False):  # before any step: not at the first batch
        from ..data.collator import check_session_time_columns, coarse_session_times_note

        for name, split in (("the training split", train_dataset), ("the validation split", eval_dataset)):
            if split is not None and getattr(split, "column_names", None) is not None:
                check_session_time_columns(split.column_names, name)
        note = coarse_session_times_note(train_dataset, "The training split") if hasattr(
            train_dataset, "column_names") else None  # fmt: skip
        if note and accelerator.is_main_process:
            logger.warning(note)
    if accelerator.is_main_process:
        Path(settings.output_dir).mkdir(parents=True, exist_ok=True)
        remove_interrupted_best_saves(Path(settings.output_dir))  # we hold the folder's lock
        remove_interrupted_checkpoints(Path(settings.output_dir))
    accelerator.wait_for_everyone()
    run = _TrainingRun(model, train_dataset, collator, settings, eval_dataset, accelerator)
    try:
        if run.streaming:
            run.train_on_stream()
        else:
            run.train_epochs()
    except BaseException:
        run.unfreeze_ranking()  # a failed run leaves the caller's model as trainable as it came
        plain_model(accelerator.unwrap_model(run.model, keep_fp32_wrapper=False))  # and without the bf16 wrapper
        raise
    return run.finish()


def _check_accelerator(accelerator: Accelerator, settings: TrainingSettings) -> None:
    """The accelerator accumulates gradients and casts as ``settings`` say (:func:`make_accelerator` builds one)."""
    built = {
        "gradient_accumulation_steps": accelerator.gradient_accumulation_steps,
        "mixed_precision": accelerator.mixed_precision,
    }
    sharded = accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)
    if settings.ema_decay is not None and sharded:
        raise ValueError(
            f"ema_decay averages each process's whole copy of the weights, but {accelerator.distributed_type.value} "
            "shards them: train without --ema-decay, or with plain data parallelism (DDP)."
        )
    differing = {key: value for key, value in built.items() if value != getattr(settings, key)}
    if differing:
        wanted = {key: getattr(settings, key) for key in differing}
        raise ValueError(
            f"The accelerator was built with {differing} but the settings say {wanted}; build it with "
            "make_accelerator(settings)."
        )


def _usable_eval_dataset(eval_dataset, settings: TrainingSettings):
    """``eval_dataset``, or None for an empty validation split (``a2gen prepare --validation-fraction 0``): an
    evaluation of no examples would score a loss of 0 and keep the first evaluation's weights. Training then keeps
    its last weights, as without a validation split; what follows the evaluations is refused."""
    if eval_dataset is None or not hasattr(eval_dataset, "__len__") or len(eval_dataset):
        return eval_dataset
    if settings.early_stopping_patience is not None or settings.lr_schedule == "plateau":
        raise ValueError(
            "The validation split is empty (0 examples), but early_stopping_patience and lr_schedule='plateau' follow "
            "its evaluations: prepare the data with a validation split (a2gen prepare --validation-fraction, e.g. "
            "0.14), or turn them off (CLI: no --patience, an --lr-schedule other than plateau)."
        )
    logger.warning("The validation split is empty (0 examples): training runs without evaluations and keeps its "
                   "last weights.")  # fmt: skip
    return None


def _check_run(train_dataset, settings: TrainingSettings, eval_dataset) -> None:
    """A streaming input needs ``max_steps``; early stopping and the plateau schedule need an ``eval_dataset``."""
    if isinstance(train_dataset, datasets.IterableDataset) and settings.max_steps is None:
        raise ValueError("A streaming (IterableDataset) input has no length: set max_steps.")
    streaming = isinstance(train_dataset, datasets.IterableDataset)
    if not streaming and not (hasattr(train_dataset, "__len__") and hasattr(train_dataset, "__getitem__")):
        raise TypeError(
            f"train_dataset is a {type(train_dataset).__name__}; train() reads map-style examples (a datasets.Dataset, "
            "a list of rows, a torch Dataset with a length) or, with max_steps, a datasets.IterableDataset: e.g. "
            "load_data_dir(folder)[0]['train'], or datasets.Dataset.from_list(rows)."
        )
    if eval_dataset is not None and not isinstance(eval_dataset, datasets.Dataset):
        raise TypeError(
            f"eval_dataset is a {type(eval_dataset).__name__}; the validation evaluations read a datasets.Dataset "
            "(each process scores its own part of it): e.g. datasets.Dataset.from_list(rows), or a stream's "
            "first rows as one (Dataset.from_generator)."
        )
    if hasattr(train_dataset, "__len__") and not len(train_dataset):
        raise ValueError("The training split is empty (0 examples): there is nothing to train on; prepare the data "
                         "again with a training split (a2gen prepare names what emptied it).")  # fmt: skip
    if eval_dataset is None and (settings.early_stopping_patience is not None or settings.lr_schedule == "plateau"):
        raise ValueError(
            "early_stopping_patience and lr_schedule='plateau' follow the validation evaluations, but no "
            "eval_dataset was given: pass the validation split, or turn them off."
        )


def evaluation_interval(settings: TrainingSettings, eval_dataset, accelerator: Accelerator) -> int | None:
    """The optimizer steps between two evaluations within an epoch: ``settings.eval_every_steps`` (None: none), and
    with ``settings.scale_eval_every`` at least the steps that train on as many examples as the validation split
    holds (each step trains on ``batch_size * gradient_accumulation_steps * num_processes``; a split without a
    length, streamed, is not counted)."""
    steps = settings.eval_every_steps
    if steps is None or not settings.scale_eval_every or eval_dataset is None or not hasattr(eval_dataset, "__len__"):
        return steps
    per_step = settings.batch_size * settings.gradient_accumulation_steps * accelerator.num_processes
    return max(steps, math.ceil(len(eval_dataset) / per_step))


class _TrainingRun:
    """One run of :func:`train`: the prepared model and optimizer, the step counters (:class:`_Progress`, resumed
    from the latest checkpoint when asked), the schedule's length, the progress bar and the tracking.

    Its steps, in the order :func:`_train` calls them: ``__init__`` (optimizer, resume, schedule), then
    :meth:`train_on_stream` or :meth:`train_epochs` (each micro-batch through :meth:`step`, each evaluation through
    :meth:`evaluate`), then :meth:`finish` (best weights, ``training_log.json``, the result)."""

    def __init__(self, model, train_dataset, collator, settings: TrainingSettings, eval_dataset, accelerator):
        self.train_dataset, self.collator, self.settings = train_dataset, collator, settings
        self.eval_dataset, self.accelerator = eval_dataset, accelerator
        self.output_dir = Path(settings.output_dir)
        self.streaming = isinstance(train_dataset, datasets.IterableDataset)
        check_generator_selection(model, settings)
        self.unfreeze_ranking = freeze_ranking_state(model) if settings.freeze_ranking else (lambda: None)
        self.previous_sparse_embeddings = configure_embedding_updates(model, settings, accelerator)
        optimizer = create_optimizer(model, settings)
        self.base_learning_rates = [group["lr"] for group in optimizer.param_groups]
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.weight_average = (
            None
            if settings.ema_decay is None
            else WeightAverage(
                accelerator.unwrap_model(self.model), settings.ema_decay, settings.ema_every_steps, settings.ema_warmup
            )
        )
        self.progress = _Progress()
        self.resume_key = _resume_key(settings, accelerator, self.model, train_dataset)
        checkpoint = _resume(
            accelerator, self.output_dir, settings, self.model, self.optimizer, self.progress, self.resume_key,
            self.weight_average,
        )  # fmt: skip
        if checkpoint is not None and accelerator.is_main_process:
            logger.info(f"Resumed from {checkpoint} (step {self.progress.global_step}).")
        self.tracking = _start_tracking(accelerator, settings)
        self.accumulation = settings.gradient_accumulation_steps
        self.epoch_micro_batches: int | None = None  # this process's micro-batches in the current epoch (map-style)
        if self.streaming:
            self.total_steps, self.steps_per_epoch = settings.max_steps, None
        else:
            loader = _epoch_loader(train_dataset, collator, settings, 0, accelerator)
            self.steps_per_epoch = math.ceil(len(loader) / self.accumulation)
            self.total_steps = settings.max_steps or self.steps_per_epoch * settings.num_epochs
        if checkpoint is not None and self.total_steps is not None and self.progress.global_step > self.total_steps:
            # before: the run evaluated and saved again, said "trained 60 steps", and logged max_steps 20
            planned = (
                f"max_steps={settings.max_steps}" if settings.max_steps
                else f"num_epochs={settings.num_epochs} of {self.steps_per_epoch} steps"
            )
            raise ValueError(
                f"{checkpoint} is at step {self.progress.global_step}, beyond the {self.total_steps} steps this run is "
                f"set to ({planned}): a resumed run can only train longer. Raise it to train on, or start a new run "
                "in another output folder."
            )
        self.warmup_steps = settings.warmup_for(self.total_steps)
        if self.warmup_steps >= self.total_steps and settings.warmup_steps and accelerator.is_main_process:
            logger.warning(
                f"warmup_steps={settings.warmup_steps} (--warmup-steps) is not shorter than the run's "
                f"{self.total_steps} steps: every step trains below the full learning rate and the schedule's decay "
                "never starts; lower it, or give --warmup-ratio (a share of the run) instead."
            )
        self._warn_about_a_replanned_schedule()
        self.progress.total_steps = self.total_steps
        self.eval_every_steps = evaluation_interval(settings, eval_dataset, accelerator)
        if self.eval_every_steps != settings.eval_every_steps and accelerator.is_main_process:
            logger.info(
                f"Evaluating every {self.eval_every_steps} steps, not {settings.eval_every_steps} "
                f"(scale_eval_every: the validation split's {len(eval_dataset):,} examples)."
            )
        self.select_best = settings.select_best_epoch and eval_dataset is not None
        self.bar = tqdm(
            total=self.total_steps,
            initial=self.progress.global_step,
            desc="training",
            disable=not (settings.show_progress and accelerator.is_local_main_process),
        )
        self.running_loss = torch.tensor(self.progress.running_loss, device=accelerator.device)

    def _warn_about_a_replanned_schedule(self) -> None:
        """A resumed run with another --epochs / --max-steps decays its learning rate over the new total: where that
        moves the rate of the next step (linear, cosine, a warmup ratio), say so, with the two rates; the run then
        matches neither the interrupted plan nor an uninterrupted run of the new length."""
        planned, step, settings = self.progress.total_steps, self.progress.global_step, self.settings
        if planned is None or planned == self.total_steps or step == 0 or not self.accelerator.is_main_process:
            return
        before = learning_rate_factor(settings.lr_schedule, step, planned, settings.warmup_for(planned))
        after = learning_rate_factor(settings.lr_schedule, step, self.total_steps, self.warmup_steps)
        if not math.isclose(before, after, rel_tol=1e-9, abs_tol=1e-12):
            logger.warning(
                f"Resumed at step {step} with {self.total_steps} planned steps instead of the checkpoint's {planned}: "
                f"the {settings.lr_schedule} schedule (warmup {settings.warmup_for(planned)} -> {self.warmup_steps} "
                f"steps) now gives the learning rate x{after:.4g} where the interrupted run was at x{before:.4g}. "
                "The run matches neither plan; resume with the original --epochs / --max-steps to continue it "
                "exactly, or train the longer run from the start."
            )

    def _done(self) -> bool:
        return self.progress.global_step >= self.total_steps or self.progress.stopped_early

    def evaluate_starting_weights(self) -> None:
        """With ``settings.eval_before_training``: evaluate once before the first step (not again on resume)."""
        if self.settings.eval_before_training and self.eval_dataset is not None and self.progress.global_step == 0:
            if self.progress.last_evaluated_step != 0:
                self.evaluate()

    def train_on_stream(self) -> None:
        """A streaming input: this process's shard, replayed past what a resumed run consumed, until ``max_steps``."""
        progress = self.progress
        self.write_closing_entry()
        self.evaluate_starting_weights()
        self.model.train()
        if progress.global_step < self.total_steps:
            skip = progress.global_step * self.accumulation
            stream = _stream_batches(self.train_dataset, self.collator, self.settings, self.accelerator, skip=skip)
            for batch_index, (pass_index, batch) in enumerate(stream):
                progress.epoch = pass_index
                if self.step(batch, batch_index) and self._done():
                    break
        if self.eval_dataset is not None and not progress.stopped_early:
            self.end_of_pass()

    def train_epochs(self) -> None:
        """Map-style data: epoch after epoch (a resumed epoch skips the batches it consumed), each one evaluated.

        A checkpoint taken at an epoch's last step precedes that epoch's validation: a run resumed from it validates.
        """
        progress = self.progress
        self.write_closing_entry()
        self.evaluate_starting_weights()
        self.model.train()
        while not progress.stopped_early and (progress.global_step < self.total_steps or progress.step_in_epoch > 0):
            if progress.global_step < self.total_steps:
                loader = _epoch_loader(self.train_dataset, self.collator, self.settings, progress.epoch, self.accelerator)
                self.epoch_micro_batches = len(loader)
                skip = progress.step_in_epoch * self.accumulation
                batches = self.accelerator.skip_first_batches(loader, skip) if skip else loader
                for batch_index, batch in enumerate(batches, start=skip):
                    if self.step(batch, batch_index) and self._done():
                        break
            if progress.stopped_early:  # stopped by an evaluation within the epoch
                break
            self.end_of_pass()

    def end_of_pass(self) -> None:
        """The end of an epoch (or of the stream): evaluate unless this step just was (or, with
        ``eval_at_epoch_end=False``, unless training goes on), and count the epoch."""
        due = self.settings.eval_at_epoch_end or self._done()
        if self.eval_dataset is not None and due and self.progress.last_evaluated_step != self.progress.global_step:
            self.evaluate()
        self.progress.epoch += 1
        self.progress.step_in_epoch = 0

    def _learning_rate_factor(self) -> float:
        """Set the optimizer's learning rates for the next step (schedule, warmup, plateau scale); return the factor."""
        factor = learning_rate_factor(
            self.settings.lr_schedule, self.progress.global_step, self.total_steps, self.warmup_steps
        )
        factor *= self.progress.lr_scale
        for group, base in zip(self.optimizer.param_groups, self.base_learning_rates):
            group["lr"] = base * factor
        return factor

    def _accumulation_scale(self, batch_index: int) -> float:
        """What micro-batch ``batch_index`` of the epoch multiplies its loss by before ``accelerator.backward``, which
        divides every loss by ``gradient_accumulation_steps`` (N): 1, except in an epoch whose micro-batch count is not
        a multiple of N, where the last optimizer step holds only the r < N left over and Accelerate still divides
        by N (the step's gradient would shrink to r / N of one batch's): there N / r, so that the step averages the
        r micro-batches it really holds, as the other steps average their N. Streaming input has no epoch end (every
        step holds N); DeepSpeed scales the loss in its own engine."""
        count, accumulation = self.epoch_micro_batches, self.accumulation
        if accumulation == 1 or count is None or self.accelerator.distributed_type == DistributedType.DEEPSPEED:
            return 1.0
        short = count % accumulation
        return accumulation / short if short and batch_index >= count - short else 1.0

    def step(self, batch: dict[str, torch.Tensor], batch_index: int) -> bool:
        """One micro-batch; True when it completed an optimizer step (then evaluated, logged, checkpointed as due)."""
        settings, progress, accelerator = self.settings, self.progress, self.accelerator
        logging_step = (progress.global_step + 1) % settings.log_every == 0 or progress.global_step + 1 == self.total_steps
        factor = self._learning_rate_factor()
        with accelerator.accumulate(self.model):
            loss = self.model(**batch).loss
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"Loss is {loss.item()} at step {progress.global_step}, micro-batch {batch_index} of epoch "
                    f"{progress.epoch}; check that batch's inputs or lower the learning rates (dense_learning_rate / "
                    "embedding_learning_rate, CLI: --dense-lr / --embedding-lr; max_grad_norm, --max-grad-norm, clips "
                    "the steps)."
                )
            if accelerator.num_processes > 1:  # a weight this process's batch left out would stall DDP's reduction
                loss = with_every_weight_in_the_graph(loss, self.model)
            scale = self._accumulation_scale(batch_index)
            accelerator.backward(loss if scale == 1 else loss * scale)
            grad_norm = None
            if accelerator.sync_gradients and (logging_step or settings.max_grad_norm is not None):
                grad_norm = clip_grad_norm_(self.model.parameters(), settings.max_grad_norm or math.inf, accelerator)
            self.optimizer.step()
            self.optimizer.zero_grad()
        self.running_loss += loss.detach().float()
        progress.running_count += 1
        if not accelerator.sync_gradients:
            return False
        progress.global_step += 1
        progress.step_in_epoch += 1
        if self.weight_average is not None:
            self.weight_average.update(progress.global_step)
        self.bar.update(1)
        last_of_epoch = not self.streaming and progress.step_in_epoch == self.steps_per_epoch
        if (
            self.eval_dataset is not None
            and self.eval_every_steps
            and progress.global_step % self.eval_every_steps == 0
            and not (last_of_epoch and settings.eval_at_epoch_end)  # the end of the epoch evaluates anyway
        ):
            self.evaluate()
        checkpoint = bool(settings.checkpoint_every) and progress.global_step % settings.checkpoint_every == 0
        # The planned last step's entry, off the --log-every schedule, closes this run's log; a checkpoint there is
        # written before it, so that a run resumed with more steps (--epochs / --max-steps raised) sums on as an
        # uninterrupted one (whose next entry covers these steps too), and one resumed as it is writes the entry.
        closing = logging_step and progress.global_step % settings.log_every != 0
        if logging_step and not (closing and checkpoint):
            self._log_training(factor, grad_norm)
        if checkpoint:
            # The checkpoint (written by the main process) holds one running loss for every process: the mean of
            # the processes' partial sums. Each resumed process adds its own losses to it, and the next log entry's
            # mean over processes is then the uninterrupted run's (this process's own sum would stand in for all).
            progress.running_loss = accelerator.reduce(self.running_loss, reduction="mean").item()
            progress.closing_entry = {"factor": factor, "grad_norm": None if grad_norm is None else float(grad_norm)}
            _save_checkpoint(
                accelerator, self.output_dir, progress.global_step, settings, self.model, self.optimizer, progress,
                self.resume_key, self.weight_average,
            )  # fmt: skip
            progress.closing_entry = None
            if closing:
                self._log_training(factor, grad_norm)
        return True

    def write_closing_entry(self) -> None:
        """A run resumed from a checkpoint at its planned last step (nothing left to train) writes that step's log
        entry, which the checkpoint was saved before (:meth:`step`)."""
        progress = self.progress
        if progress.closing_entry is not None and progress.running_count and progress.global_step >= self.total_steps:
            self._log_training(progress.closing_entry["factor"], progress.closing_entry["grad_norm"])
        progress.closing_entry = None

    def _log_training(self, factor: float, grad_norm) -> None:
        """Append the mean loss since the last entry (over every process), the learning-rate factor and the norm."""
        progress = self.progress
        mean_loss = self.accelerator.reduce(self.running_loss / progress.running_count, reduction="mean").item()
        entry = {"step": progress.global_step, "epoch": progress.epoch, "loss": mean_loss, "lr_factor": factor}
        if grad_norm is not None:  # DeepSpeed clips inside its engine and reports no norm here
            entry["grad_norm"] = float(grad_norm)
        progress.log_history.append(entry)
        if self.tracking:
            self.accelerator.log({key: value for key, value in entry.items() if key != "step"}, step=progress.global_step)
        self.bar.set_postfix(loss=f"{mean_loss:.4f}")
        self.running_loss.zero_()
        progress.running_count = 0

    def evaluate(self) -> None:
        """Validation loss (and mean AUC), best-evaluation bookkeeping, the plateau schedule and early stopping; of
        the weights' moving average when the run keeps one (``ema_decay``)."""
        with self.weight_average.applied() if self.weight_average is not None else nullcontext():
            self._evaluate()

    def _evaluate(self) -> None:
        settings, progress, accelerator = self.settings, self.progress, self.accelerator
        progress.last_evaluated_step = progress.global_step
        entry: dict[str, Any] = {"step": progress.global_step, "epoch": progress.epoch}
        losses = validation_losses(self.model, self.eval_dataset, self.collator, settings, accelerator)
        if not math.isfinite(losses["loss"]):  # weights that diverge are never kept as the best, nor saved
            raise FloatingPointError(
                f"The validation loss is {losses['loss']} at step {progress.global_step} (epoch {progress.epoch}): "
                "training diverged; lower the learning rates (dense_learning_rate / embedding_learning_rate, CLI: "
                "--dense-lr / --embedding-lr)."
            )
        entry["validation_loss"] = losses["loss"]
        score = -entry["validation_loss"]
        if settings.select_generator_by_loss:
            entry["validation_generator_loss"] = losses["generator_loss"]
            if not settings.freeze_ranking:  # frozen: the best evaluation below is the best generator's
                self._keep_best_generator(losses["generator_loss"])
        first = progress.best_step < 0  # no evaluation scored yet (a resumed run carries its best step)
        if settings.selection_metric == "mean_auc" and (first or not settings.freeze_ranking):
            auc = validation_mean_auc(self.model, self.eval_dataset, self.collator, settings, accelerator)
            entry["validation_mean_auc"], entry["validation_auc"] = auc["mean_auc"], auc["auc"]
            score = auc["mean_auc"]
        if settings.freeze_ranking:  # the ranking is the start's at every evaluation: what training moves decides
            score = -losses["generator_loss"]
        progress.best_validation_loss = min(progress.best_validation_loss, entry["validation_loss"])
        if score > progress.best_score + settings.selection_min_delta:
            progress.best_score, progress.best_epoch, progress.best_step = score, progress.epoch, progress.global_step
            progress.evaluations_without_improvement = 0
            if self.select_best:
                _save_best(accelerator, self.model, self.output_dir, progress.epoch, progress.global_step, score)
        elif progress.global_step >= settings.patience_from_step:  # before it: the start's transient, not counted
            progress.evaluations_without_improvement += 1
            if settings.lr_schedule == "plateau":
                progress.lr_scale *= settings.plateau_factor
            patience = settings.early_stopping_patience
            if (
                patience is not None
                and progress.evaluations_without_improvement >= patience
                and progress.global_step >= settings.early_stopping_min_steps
            ):
                progress.stopped_early = True
                entry["early_stop"] = True
        entry["lr_scale"] = progress.lr_scale
        progress.log_history.append(entry)
        if accelerator.is_main_process:
            logger.info(evaluation_summary(entry, progress.best_step))
        if self.tracking:
            scalars = {key: value for key, value in entry.items() if isinstance(value, (int, float)) and key != "step"}
            accelerator.log(scalars, step=progress.global_step)

    def _keep_best_generator(self, generator_loss: float) -> None:
        """select_generator_by_loss: save the weights of the evaluation with the lowest generator loss so far."""
        progress = self.progress
        if generator_loss < progress.best_generator_loss:
            progress.best_generator_loss, progress.best_generator_step = generator_loss, progress.global_step
            _save_best(
                self.accelerator, self.model, self.output_dir, progress.epoch, progress.global_step, -generator_loss,
                file_name=BEST_GENERATOR_FILE,
            )  # fmt: skip

    def finish(self) -> TrainingResult:
        """Close the bar and the trackers, restore the embeddings' gradient kind, check the weights, load the best
        evaluation's weights (when selected), write ``training_log.json`` and return the result."""
        progress, accelerator = self.progress, self.accelerator
        self.bar.close()
        if self.tracking:
            accelerator.end_training()
        trained = plain_model(accelerator.unwrap_model(self.model, keep_fp32_wrapper=False))
        set_sparse_embeddings(trained, self.previous_sparse_embeddings)
        self.unfreeze_ranking()
        _check_finite_weights(trained, "at the end of training")
        accelerator.wait_for_everyone()
        if self.select_best and progress.best_step >= 0:
            _load_best(trained, self.output_dir, progress.best_step)
        elif self.weight_average is not None:  # the last weights: the average's
            self.weight_average.copy_to_model()
        generator_step = None
        if self.select_best and self.settings.freeze_ranking and progress.best_step >= 0:
            generator_step = progress.best_step  # selected by the generator's loss, with the ranking as it started
        elif self.select_best and self.settings.select_generator_by_loss and progress.best_generator_step >= 0:
            generator_step = progress.best_generator_step
            if generator_step != progress.best_step:  # the ranking stays the best mean-AUC evaluation's
                _load_best(trained, self.output_dir, generator_step, BEST_GENERATOR_FILE, keep_prefix=RANKING_PREFIXES)
        if accelerator.is_main_process:
            log = {
                "settings": asdict(self.settings),
                "log_history": progress.log_history,
                "best_epoch": progress.best_epoch,
                "best_step": progress.best_step,
                "stopped_early": progress.stopped_early,
                "eval_every_steps_used": self.eval_every_steps,
                **({"best_generator_step": generator_step} if generator_step is not None else {}),
            }
            write_text_atomically(self.output_dir / TRAINING_LOG_FILE, json.dumps(log, indent=2))
        found = progress.best_step >= 0
        return TrainingResult(
            model=trained,
            global_step=progress.global_step,
            log_history=progress.log_history,
            best_epoch=progress.best_epoch if found else None,
            output_dir=str(self.output_dir),
            best_step=progress.best_step if found else None,
            stopped_early=progress.stopped_early,
            best_generator_step=generator_step,
        )


def train_from_data_dir(
    data_dir: str | os.PathLike,
    settings: TrainingSettings,
    model_name: str = "a2gen-iag",
    model_overrides: dict[str, Any] | None = None,
    accelerator: Accelerator | None = None,
    wide_warm_start: bool = False,
    wide_residual: bool = False,
    wide_frozen: bool = False,
    wide_residual_fit: bool = False,
    moment_warm_start: str = "off",
    init_from: str | os.PathLike | None = None,
    wide_share_scale: float = 1.0,
) -> tuple[TrainingResult, dict[str, Any] | None]:
    """
    What ``a2gen train`` does: load a data folder (:func:`load_data_dir`), build ``model_name`` sized for it
    (:func:`create_model`, seeded with ``settings.seed``, ``model_overrides`` for the architecture; with
    ``wide_warm_start`` its wide path started as the logistic regression on counts fitted on train,
    :func:`~a2gen_hf.training.simple_baselines.warm_start_wide_path`, ``residual=wide_residual``; ``wide_frozen`` keeps
    its coefficients fixed, :func:`~a2gen_hf.training.simple_baselines.start_from_regression`, and
    ``wide_residual_fit`` fits what the network adds to it before training,
    :func:`~a2gen_hf.training.residual_fit.fit_residual_paths`; ``wide_share_scale`` k > 1 lets that regression
    shrink the user propensities k times less, per action, chosen on validation; with
    ``moment_warm_start="trainable"`` or ``"frozen"`` its (item, moment) table started from who engaged where in
    train, :func:`~a2gen_hf.training.moment_factorization.start_moment_table_from_events`; with ``init_from``, a
    saved model's folder or Hub id, that model instead, every weight trainable,
    :func:`~a2gen_hf.training.data_setup.model_to_train_from`), :func:`train`
    it on ``train`` with ``validation`` for best-epoch selection, then save it with ``save_pretrained`` and the
    tokenizer into ``output_dir/model`` and write :func:`~a2gen_hf.metrics.evaluate_model` of the ``test`` split
    (with the simulator's oracle when the split has it) to ``output_dir/eval_results.json`` (NaN written as null).
    Saving and evaluating happen on the main process.

    Returns:
        ``(result, metrics)``; ``metrics`` is None without a ``test`` split and on the other processes.
    """
    accelerator = accelerator or make_accelerator(settings)
    _MODELS_SAVED_HERE.discard(os.path.realpath(Path(settings.output_dir) / MODEL_FOLDER))  # not this run's (yet)
    with _output_lock(accelerator, settings.output_dir), _messages_of_the_main_process(accelerator):
        return _train_from_data_dir(
            data_dir, settings, model_name, model_overrides, accelerator, wide_warm_start, wide_residual, wide_frozen,
            wide_residual_fit, moment_warm_start, init_from, wide_share_scale,
        )


def _check_training_data(data_dir, dataset, config, wide_warm_start: bool) -> None:
    """Before anything is fitted, as ``a2gen compare`` does: refuse a training split without any ranked action (a
    log of clicks only) and a wide start without a validation split to choose its regression's C on; warn of the
    actions that never happen in training (nothing can learn them: their test AUCs are chance)."""
    train = dataset.get("train")
    if train is None or len(train) == 0:
        return  # refused with the training split's own message by train()
    untrained_actions(data_dir, train, config)
    if wide_warm_start:
        refuse_without_validation(data_dir, dataset, ["the wide start (--wide-warm-start, on in the sparse_logs "
                                                      "recipe; --no-wide-warm-start leaves it out: its regression's C)"])


def _give_back_after_a_second_phase(model, tokenizer, dataset, init_from, settings: TrainingSettings) -> dict:
    """
    After a run from a saved model (``init_from``) whose config has a wide path (``wide_path``: what every regression
    start needs; the ``sparse_logs`` recipe's first phase starts the model as the regression, and ``--init-from``
    refuses the warm-start flags, as the saved weights hold that start): the times training did not improve on
    validation go back to the train median, as after the first phase
    (:func:`~a2gen_hf.training.give_back.give_back_the_median_times`; selection reads the ranking, or with
    ``--select-generator-by-loss`` the generator's whole loss, never the time MAE alone). The ranking is not given
    back to the regression (``regression_for`` is None: not judged): its weights are the saved model's, which the
    first phase already judged, while ``--freeze-ranking`` holds them; trained (every weight trains from a saved
    model, the wide path too), the regression they started from is no longer known, which a warning says.
    """
    from .give_back import give_back_to_the_start

    if not settings.freeze_ranking and getattr(model, "generator", None) is not None:
        logger.warning(
            f"Trained on from {init_from} (--init-from): the ranking trained in this run, its wide path too, so "
            "after training it is not given back per action to the regression the saved model may have started from "
            "(that regression is no longer known); the times are given back to the median as after a first phase. "
            "--freeze-ranking (with --select-generator-by-loss, as the sparse_logs recipe sets) keeps the saved "
            "model's ranking."
        )
    given_back = give_back_to_the_start(model, tokenizer, dataset, ranking=False)
    return {**given_back, "regression_for": None}


def _train_from_data_dir(
    data_dir,
    settings,
    model_name,
    model_overrides,
    accelerator,
    wide_warm_start=False,
    wide_residual=False,
    wide_frozen=False,
    wide_residual_fit=False,
    moment_warm_start="off",
    init_from=None,
    wide_share_scale=1.0,
) -> tuple[TrainingResult, Any]:
    from .moment_factorization import apply_moment_start, check_moment_start
    from .simple_baselines import check_start_has_a_wide_path, check_wide_start, start_from_regression

    check_wide_start(wide_warm_start, wide_residual, wide_frozen, wide_residual_fit, wide_share_scale)
    # How the model was started, beside the training settings in training_log.json (the run's record).
    recorded: dict[str, Any] = {
        "model": model_name, "init_from": None if init_from is None else str(init_from),
        "wide_warm_start": wide_warm_start, "wide_residual": wide_residual, "wide_frozen": wide_frozen,
        "wide_residual_fit": wide_residual_fit, "wide_share_scale": wide_share_scale,
        "moment_warm_start": moment_warm_start,
    }  # fmt: skip
    dataset, tokenizer, metadata = load_data_dir(data_dir)
    set_seed(settings.seed)
    if init_from is not None:
        if wide_warm_start or wide_residual or wide_frozen or wide_residual_fit or moment_warm_start != "off":
            raise ValueError(
                f"init_from={str(init_from)!r} gives every weight: drop the warm starts (--wide-warm-start, "
                f"--wide-residual, --wide-frozen, --wide-residual-fit, --moment-warm-start {moment_warm_start}); the run that saved the "
                "model applied them."
            )
        model = model_to_train_from(init_from, model_name, tokenizer, dataset, **(model_overrides or {}))
        _check_training_data(data_dir, dataset, model.config, wide_warm_start=False)
    else:
        model = create_model(model_name, tokenizer, dataset, **(model_overrides or {}))
        check_start_has_a_wide_path(wide_warm_start, model.config)  # before anything is fitted
        _check_training_data(data_dir, dataset, model.config, wide_warm_start)
        warn_of_settings_the_model_drops(model_name, model_overrides)
    a2gen = getattr(model, "generator", None) is not None
    if a2gen:
        warn_of_moments_without_item_times(model.config, metadata, data_dir)
    if not a2gen and (wide_residual_fit or settings.select_generator_by_loss or settings.freeze_ranking):
        # As a2gen compare does with a recipe over several networks: the residual fit and the generator's own
        # selection are A2Gen's (its occurrence head); MMoE and PLE get the rest, in a first run and in a second
        # (--init-from) alike. (An A2Gen built without the occurrence head they need is refused by name below.)
        logger.warning(
            f"{model_name} is not A2Gen: trained without the residual fit (--wide-residual-fit) and without "
            "selecting a generator apart (--select-generator-by-loss, --freeze-ranking), both A2Gen's."
        )
        wide_residual_fit = False
        settings = replace(settings, select_generator_by_loss=False, freeze_ranking=False)
    if init_from is None:
        if wide_warm_start:
            regression = start_from_regression(
                model, tokenizer, dataset, residual=wide_residual, frozen=wide_frozen, fit_residual=wide_residual_fit,
                seed=settings.seed, share_scale=wide_share_scale,
            )
            for note in regression.notes_:  # what the regression could not fit, or chose on very few examples
                logger.warning(f"wide start: {note}")
            recorded["regression_choices"] = regression.choices()
            recorded["regression_notes"] = list(regression.notes_)
            recorded["residual_fit"] = regression.residual_fit_
        if a2gen:
            check_moment_start(model.config, moment_warm_start)
        elif moment_warm_start != "off":  # the (item, moment) table is A2Gen's, as in a2gen compare
            logger.warning(f"{model_name} is not A2Gen: trained without the moment warm start (--moment-warm-start "
                           f"{moment_warm_start}), A2Gen's.")
        apply_moment_start(model, tokenizer, dataset, moment_warm_start)
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    result = train(
        model, dataset["train"], collator, settings, eval_dataset=dataset.get("validation"), accelerator=accelerator
    )
    additions: dict[str, Any] = {"start": recorded}
    if wide_residual:  # what training did not improve on validation goes back to the start
        from .give_back import give_back_to_the_start

        additions["given_back_to_the_start"] = give_back_to_the_start(
            result.model, tokenizer, dataset, ranking=wide_residual_fit
        )
    elif init_from is not None and getattr(model.config, "wide_path", False):
        additions["given_back_to_the_start"] = _give_back_after_a_second_phase(
            result.model, tokenizer, dataset, init_from, settings
        )
    if accelerator.is_main_process:  # the run's log says how the saved model was started and what it holds
        log_path = Path(settings.output_dir) / TRAINING_LOG_FILE
        log = json.loads(log_path.read_text())
        write_text_atomically(log_path, json.dumps({**log, **additions}, indent=2))
    output_dir = Path(settings.output_dir)
    metrics = None
    if accelerator.is_main_process:
        recover(output_dir / MODEL_FOLDER)  # a killed run's half-saved model (we hold the output folder's lock)
        staging = staging_folder(output_dir / MODEL_FOLDER)  # the model appears complete or not at all
        with write_failures_named(MODEL_FOLDER, output_dir, lambda: resume_advice(output_dir), partial=staging):
            result.model.save_pretrained(str(staging))
            tokenizer.save_pretrained(str(staging))
        # An earlier model's test metrics (a finished run resumed with more steps) go before the new model comes in:
        # a run killed between the two then leaves a model without metrics, which `a2gen train`'s interruption
        # message and a second --resume both handle, never a model beside another model's metrics.
        (output_dir / EVAL_RESULTS_FILE).unlink(missing_ok=True)
        switch_in(staging, output_dir / MODEL_FOLDER)
        _MODELS_SAVED_HERE.add(os.path.realpath(output_dir / MODEL_FOLDER))
        if "test" in dataset and len(dataset["test"]):
            test = dataset["test"]
            loader = _evaluation_loader(test, collator, settings, accelerator.device)
            oracle = test.select_columns(list(ORACLE_COLUMNS))[:] if set(ORACLE_COLUMNS) <= set(test.column_names) else None
            batches = tqdm(loader, desc="test", unit=" batches", leave=False, disable=not settings.show_progress)
            metrics = evaluate_model(result.model, batches, oracle=oracle, groups=user_groups(test))
            write_json_atomically(output_dir / EVAL_RESULTS_FILE, metrics)  # strict JSON: NaN -> null
        else:
            logger.warning(f"{data_dir} has no test split: {EVAL_RESULTS_FILE} is not written.")
    accelerator.wait_for_everyone()
    return result, metrics
