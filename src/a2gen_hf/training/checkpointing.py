"""Checkpoints of the Accelerate training loop: writing them atomically, finding the latest complete one, and
resuming from it exactly.

A checkpoint (format 2) is a folder ``checkpoint-<step>`` holding ``model.safetensors``, ``optimizer.safetensors``,
the weights' moving average when the run keeps one (``weight_average.safetensors``), one
``rng_state_<process>.safetensors`` per process and the JSON manifest ``a2gen_checkpoint.json`` (step counters, the
log, optimizer groups, loss scaler, the resume key, and the size and SHA-256 of every file). Nothing is pickled and
nothing is unpickled. The weights of the best evaluation so far are kept beside the checkpoints
(``best_model.safetensors``) so that a resumed run selects the same one as an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
from collections.abc import Callable, Iterable
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from accelerate import Accelerator
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from ..output_folders import file_digest, give_open_mode, give_open_modes, write_failures_named, write_text_atomically
from .settings import TrainingSettings
from .weight_average import WEIGHT_AVERAGE_FILE, WeightAverage, missing_average

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"

# Written last into a checkpoint: its presence and the files it lists make a checkpoint complete.
CHECKPOINT_MANIFEST = "a2gen_checkpoint.json"

BEST_MODEL_FILE = "best_model.safetensors"
# With select_generator_by_loss: the weights of the evaluation with the lowest generator loss.
BEST_GENERATOR_FILE = "best_generator.safetensors"
# Written when a run ends (its settings, log history and best step).
TRAINING_LOG_FILE = "training_log.json"
# What a run leaves in its output folder besides its checkpoints: a new run does not mix its files with them.
RUN_FILES = (TRAINING_LOG_FILE, BEST_MODEL_FILE, BEST_GENERATOR_FILE)

# The settings a resumed run may change: how long to train, and what is logged, checkpointed, shown and evaluated (and
# how map-style batches are read, which does not change them; a stream's worker count does, see _resume_key).
# Every other setting (and the number of processes, the model and the data) is part of the resume key.
RESUME_FREE_SETTINGS = (
    "output_dir", "resume", "num_epochs", "max_steps", "log_every", "checkpoint_every", "keep_checkpoints",
    "show_progress", "eval_batch_size", "cpu", "report_to", "dataloader_num_workers",
)  # fmt: skip

# Checkpoint files (format 2: safetensors and JSON only; format 1, accelerate's save_state, held pickles).
CHECKPOINT_FORMAT = 2

CHECKPOINT_MODEL_FILE = "model.safetensors"

CHECKPOINT_OPTIMIZER_FILE = "optimizer.safetensors"

RNG_STATE_PREFIX = "rng_state_"


class _Progress:
    """Step counters saved with every checkpoint, so a resumed run continues at the same batch."""

    def __init__(self):
        self.global_step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.best_validation_loss = math.inf
        self.best_epoch = -1
        # Selection: the best evaluation's score (higher is better: minus the loss, or the mean AUC) and step,
        # evaluations since it, the plateau schedule's learning-rate scale, and whether early stopping fired.
        self.best_score = -math.inf
        self.best_step = -1
        # select_generator_by_loss: the lowest validation loss of the generator and its step.
        self.best_generator_loss = math.inf
        self.best_generator_step = -1
        self.evaluations_without_improvement = 0
        self.lr_scale = 1.0
        self.stopped_early = False
        self.last_evaluated_step = -1
        # The optimizer steps the run planned (what its learning-rate schedule decays over); None in older checkpoints.
        self.total_steps: int | None = None
        self.log_history: list[dict[str, Any]] = []
        # Sum and count of the micro-batch losses since the last log entry (this process's).
        self.running_loss = 0.0
        self.running_count = 0
        # A checkpoint at the run's planned last step, off the --log-every schedule, is written before that step's
        # closing log entry (so that a run resumed with more steps logs as an uninterrupted one): the entry's learning-
        # rate factor and gradient norm, for a resumed run that has nothing left to train to write it.
        self.closing_entry: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        vars(self).update(state)


def _checkpoint_step(path: Path) -> int | None:
    suffix = path.name[len(CHECKPOINT_PREFIX) :]
    return int(suffix) if path.name.startswith(CHECKPOINT_PREFIX) and suffix.isdigit() else None


def _listed_size(entry: Any) -> int | None:
    """A manifest's file entry: ``{"bytes": n, "sha256": hex}`` (or a bare size, written by older versions)."""
    size = entry.get("bytes") if isinstance(entry, dict) else entry
    return size if isinstance(size, int) and not isinstance(size, bool) else None


def _read_manifest(checkpoint: Path) -> dict[str, Any] | None:
    """The checkpoint's manifest if the checkpoint is complete (every listed file present, at its size), else None.

    Sizes only: cheap enough to scan every checkpoint. The SHA-256 digests are checked before resuming
    (:func:`_verify_checkpoint`)."""
    return _manifest_or_problem(checkpoint)[0]


def _manifest_or_problem(checkpoint: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(manifest, None)`` for a complete checkpoint, else ``(None, why it is not)``."""
    try:
        manifest = json.loads((checkpoint / CHECKPOINT_MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        entries = list(files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return None, f"its {CHECKPOINT_MANIFEST} is missing or unreadable ({type(error).__name__}: {error})"
    for name, entry in entries:
        path = checkpoint / name
        size = _listed_size(entry)
        if size is None or not _is_plain_name(name) or not path.is_file() or path.stat().st_size != size:
            return None, f"{name!r}, listed in its {CHECKPOINT_MANIFEST}, is missing or not of the listed size"
    return manifest, None


def _is_plain_name(name: str) -> bool:
    """A file name inside the checkpoint folder itself: no separator, not ``..``, not absolute."""
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def _earlier_run_files(folder: Path) -> list[str]:
    """The :data:`RUN_FILES` an earlier run left in ``folder``."""
    return [name for name in RUN_FILES if (folder / name).exists()]


def is_marked_run(folder: Path, marker: str) -> bool:
    """Whether ``folder`` is a run folder that a command owning its runs wrote: it holds that command's ``marker``
    file (``a2gen compare``'s ``.a2gen-compare-run``, ``a2gen demo``'s ``.a2gen-demo-run``)."""
    return folder.is_dir() and not folder.is_symlink() and (folder / marker).is_file()


def foreign_run_folder(folder: Path, marker: str) -> bool:
    """Whether something stands at ``folder`` that the command marking its runs with ``marker`` may not replace: a
    link, a file, or a folder that holds files without the marker (an ``a2gen train`` run, the user's files)."""
    if folder.is_symlink():
        return True
    return folder.exists() and (not folder.is_dir() or (not (folder / marker).is_file() and any(folder.iterdir())))


def foreign_run_error(folder: Path, command: str, instead: str) -> ValueError:
    """The error of a command that marks its runs (``command``: ``a2gen compare``, ``a2gen demo``) for a folder at one
    of its run names that it did not write (:func:`foreign_run_folder`); ``instead``: the way out besides moving it."""
    return ValueError(
        f"{folder} holds files that `{command}` did not write (an `a2gen train` run?), and `{command}` trains its run "
        f"{folder.name} there: move that folder away, or {instead}."
    )


def claim_marked_runs(
    runs_dir: Path, names: Iterable[str], marker: str, older: Iterable[str], foreign: Callable[[Path], Exception]
) -> None:
    """
    Before any work, for the run folders ``runs_dir/NAME`` (``names``) that a command marking its runs with
    ``marker`` will train in: raise ``foreign(folder)`` for anything there it may not replace
    (:func:`foreign_run_folder`; nothing is replaced), except the unmarked runs named in ``older``, which a version
    of the command older than the marker wrote: those (all of them, trained again or not) are marked as the
    command's own. They are claimed only where no folder of ``runs_dir`` holds the marker: a version that marks its
    runs marked every one, so an unmarked folder beside a marked one is someone else's (a run moved in by hand).
    """
    if not runs_dir.is_dir():
        return
    marked = any(is_marked_run(path, marker) for path in runs_dir.iterdir())
    older = set() if marked else set(older)
    for name in names:
        folder = runs_dir / name
        if folder.is_symlink() or folder.exists() and not folder.is_dir():
            raise foreign(folder)
        if name not in older and foreign_run_folder(folder, marker):
            raise foreign(folder)
    for name in sorted(older):
        folder = runs_dir / name
        if folder.is_dir() and not folder.is_symlink() and not is_marked_run(folder, marker):
            (folder / marker).touch()


def start_marked_run(folder: Path, marker: str, foreign: Callable[[], Exception]) -> None:
    """Make ``folder`` a new run folder of the command that marks its runs with ``marker``: an earlier run it marked
    is replaced, a missing or empty folder is used, and the marker is written before anything is trained there.
    Anything else there (:func:`foreign_run_folder`) raises ``foreign()``: nothing of it is removed."""
    if is_marked_run(folder, marker):
        logger.info(f"Replacing the earlier run in {folder}.")
        shutil.rmtree(folder)
    elif foreign_run_folder(folder, marker):
        raise foreign()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / marker).touch()


def remove_earlier_run(output_dir: str | os.PathLike) -> None:
    """
    Delete ``output_dir`` when it holds an earlier run (its :data:`RUN_FILES` or ``checkpoint-N`` folders), so that
    a benchmark that owns its run folders (``benchmarks/quality_ablations.py``; ``a2gen compare`` and ``a2gen demo``
    mark theirs, :func:`start_marked_run`) runs again in the same output; :func:`train` itself refuses such a
    folder. Any other folder is left as it is.
    """
    folder = Path(output_dir)
    if folder.is_dir() and earlier_run_in(folder):
        logger.info(f"Replacing the earlier run in {folder}.")
        shutil.rmtree(folder)


def earlier_run_in(folder: Path) -> bool:
    """Whether the existing folder ``folder`` holds an earlier run: its :data:`RUN_FILES` or ``checkpoint-N``
    folders."""
    return bool(_earlier_run_files(folder)) or any(_checkpoint_step(path) is not None for path in folder.iterdir())


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """
    The newest complete ``checkpoint-N`` folder of ``output_dir``, or None. Half-written checkpoints are never
    returned: they are written as ``.tmp-checkpoint-N`` and renamed when done, and a ``checkpoint-N`` whose
    manifest is missing or lists a missing or truncated file (a partial copy) is skipped.
    """
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    complete = [
        (step, path)
        for path in folder.iterdir()
        if path.is_dir() and (step := _checkpoint_step(path)) is not None and _read_manifest(path) is not None
    ]
    return max(complete, default=(None, None))[1]


def _report_skipped_checkpoints(output_dir: Path, chosen: Path | None) -> None:
    """Resuming: warn of each ``checkpoint-N`` newer than the one resumed from that is incomplete, naming why; with
    none to resume from, refuse (starting over would write new checkpoints over them)."""
    chosen_step = -1 if chosen is None else _checkpoint_step(chosen)
    skipped = sorted(
        (step, path.name, problem)
        for path in (Path(output_dir).iterdir() if Path(output_dir).is_dir() else ())
        if path.is_dir() and (step := _checkpoint_step(path)) is not None and step > chosen_step
        and (problem := _manifest_or_problem(path)[1]) is not None
    )  # fmt: skip
    reasons = "; ".join(f"{name}: {problem}" for _, name, problem in skipped)
    if skipped and chosen is None:
        raise ValueError(
            f"resume: {output_dir} holds checkpoints but none is complete ({reasons}). Repair them, or move them away "
            "to start from step 0."
        )
    if skipped:
        logger.warning(f"Resuming from {chosen.name}, not from the newer incomplete ones ({reasons}).")


def _data_key(dataset) -> dict[str, Any]:
    """What identifies the training data: rows and content fingerprint (map-style), features and shards (streaming).

    ``datasets`` derives a map-style dataset's fingerprint from its content (in memory) or keeps the one saved with
    it (``save_to_disk`` / ``load_from_disk``), so the same data gives the same key in every run."""
    if isinstance(dataset, datasets.Dataset):
        return {"rows": len(dataset), "fingerprint": dataset._fingerprint}
    features = getattr(dataset, "features", None)
    return {
        "kind": type(dataset).__name__,
        "num_shards": getattr(dataset, "num_shards", None),
        "columns": sorted(features) if features is not None else None,
    }


def _model_key(model: nn.Module) -> dict[str, Any]:
    """The model's class and its config (without the fields that do not change the network)."""
    config = getattr(model, "config", None)
    values = config.to_dict() if config is not None else {}
    for volatile in ("transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype"):
        values.pop(volatile, None)
    return {"class": type(model).__name__, "config": json.loads(json.dumps(values, default=str))}


def _resume_key(
    settings: TrainingSettings, accelerator: Accelerator, model: nn.Module | None = None, train_dataset=None
) -> dict[str, Any]:
    """Everything a resumed run must share with the run that wrote the checkpoint: the settings that decide the data
    order and the optimizer's steps (all of :class:`TrainingSettings` but :data:`RESUME_FREE_SETTINGS`), the number
    of processes, the model (class and config) and the training data (:func:`_data_key`)."""
    values = {key: value for key, value in asdict(settings).items() if key not in RESUME_FREE_SETTINGS}
    if isinstance(train_dataset, datasets.IterableDataset):  # a stream's worker processes form its batches
        values["dataloader_num_workers"] = settings.dataloader_num_workers
    key: dict[str, Any] = {"settings": {**values, "num_processes": accelerator.num_processes}}
    if model is not None:
        key["model"] = _model_key(accelerator.unwrap_model(model))
    if train_dataset is not None:
        key["data"] = _data_key(train_dataset)
    return json.loads(json.dumps(key))  # the form it has once read back from the manifest


def _key_differences(
    saved: dict[str, Any], current: dict[str, Any], defaults: dict[str, Any] | None = None
) -> list[str]:
    """``"settings.seed: checkpoint 0, now 1"`` for each value that differs (config fields listed one by one). With
    ``defaults`` (the same shape: :func:`_key_defaults`), a setting or config field the checkpoint does not list (it
    was written before the field existed) is no difference while it has its default, which is how the older run ran."""
    differences = []

    def compare(prefix: str, old: Any, new: Any, default: Any) -> None:
        if isinstance(old, dict) and isinstance(new, dict):
            for name in sorted(set(old) | set(new), key=str):
                compare(
                    f"{prefix}.{name}" if prefix else str(name), old.get(name, "<absent>"), new.get(name, "<absent>"),
                    default.get(name, "<absent>") if isinstance(default, dict) else "<absent>",
                )  # fmt: skip
        elif old == "<absent>" and new != "<absent>" and new == default:
            return
        elif old != new:
            differences.append(f"{prefix}: checkpoint {old!r}, now {new!r}")

    compare("", saved, current, defaults or {})
    return differences


def _key_defaults(model: nn.Module | None) -> dict[str, Any]:
    """The resume key's defaults: every :class:`TrainingSettings` field's default and the model config class's."""
    settings = {field.name: field.default for field in fields(TrainingSettings) if field.default is not MISSING}
    key: dict[str, Any] = {"settings": settings}
    config = getattr(model, "config", None)
    if config is not None:
        try:
            key["model"] = {"config": type(config)().to_dict()}
        except (TypeError, ValueError):  # a config class without defaults for every field
            pass
    return json.loads(json.dumps(key, default=str))


def _check_finite_weights(model: nn.Module, when: str) -> None:
    """Raise ``FloatingPointError`` naming the parameters that hold NaN or inf (never save or return such a model)."""
    bad = [name for name, value in model.named_parameters() if not torch.isfinite(value).all()]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise FloatingPointError(
            f"The weights became NaN or inf {when} ({shown}); the run stops so that no such model is saved. Lower "
            "the learning rate, set --max-grad-norm, or resume from an earlier checkpoint."
        )


def _rng_file(process_index: int) -> str:
    return f"{RNG_STATE_PREFIX}{process_index}.safetensors"


def _save_rng_states(path: Path) -> None:
    """This process's Python, NumPy, torch (and CUDA) RNG states as safetensors (numbers only, no pickle)."""
    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    tensors = {
        "torch": torch.get_rng_state(),
        "python": torch.tensor(internal, dtype=torch.int64),
        "numpy": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
    }
    if torch.cuda.is_available():
        tensors.update({f"cuda.{index}": state for index, state in enumerate(torch.cuda.get_rng_state_all())})
    metadata = {
        "python": json.dumps([version, gauss]),
        "numpy": json.dumps([kind, int(position), int(has_gauss), float(cached)]),
    }
    save_file(tensors, str(path), metadata=metadata)


def _load_rng_states(path: Path) -> None:
    with safe_open(str(path), framework="pt") as file:
        metadata = file.metadata() or {}
        tensors = {name: file.get_tensor(name) for name in file.keys()}
    try:
        version, gauss = json.loads(metadata["python"])
        kind, position, has_gauss, cached = json.loads(metadata["numpy"])
        random.setstate((version, tuple(int(value) for value in tensors["python"].tolist()), gauss))
        np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), position, has_gauss, cached))
        torch.set_rng_state(tensors["torch"])
    except (KeyError, ValueError, TypeError, RuntimeError) as error:
        raise ValueError(f"{path}: not a valid RNG state file ({error}); resume from another checkpoint.") from None
    cuda = sorted((name for name in tensors if name.startswith("cuda.")), key=lambda name: int(name.split(".")[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[name] for name in cuda][: torch.cuda.device_count()])


def _optimizer_tensors(optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer's state as flat tensors (``"<param>.<name>"``) and JSON (its parameter groups, scalar states)."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{index}.{name}"] = value
    groups = [{name: list(value) if isinstance(value, tuple) else value for name, value in group.items()}
              for group in state["param_groups"]]  # fmt: skip
    return tensors, {"param_groups": groups, "scalars": scalars}


def _optimizer_state(tensors: dict[str, torch.Tensor], described: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in [*tensors.items(), *described["scalars"].items()]:
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    groups = [{name: tuple(value) if name == "betas" else value for name, value in group.items()}
              for group in described["param_groups"]]  # fmt: skip
    return {"state": state, "param_groups": groups}


def _save_checkpoint(
    accelerator: Accelerator,
    output_dir: Path,
    step: int,
    settings: TrainingSettings,
    model: nn.Module | None = None,
    optimizer=None,
    progress: _Progress | None = None,
    resume_key: dict[str, Any] | None = None,
    weight_average: WeightAverage | None = None,
) -> None:
    """
    Write ``checkpoint-<step>``: ``model.safetensors``, ``optimizer.safetensors``, the weights' moving average
    (``weight_average.safetensors``, with ``ema_decay``), one ``rng_state_<process>.safetensors`` per process and the
    ``a2gen_checkpoint.json`` manifest (step counters, the log, optimizer groups, loss scaler, resume key, and the size
    and SHA-256 of every file). No file is a pickle. Written as ``.tmp-checkpoint-<step>``
    and renamed when complete.
    """
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    temporary = output_dir / f".tmp-{CHECKPOINT_PREFIX}{step}"
    module = accelerator.unwrap_model(model)
    _check_finite_weights(module, f"at step {step}")
    if accelerator.is_main_process:
        for stale in (temporary, final):
            if stale.exists():
                shutil.rmtree(stale)
        with _writing(final, temporary, _ROOM_FOR_ONE_MORE):
            temporary.mkdir()
    accelerator.wait_for_everyone()
    with _writing(final, temporary, _ROOM_FOR_ONE_MORE):
        _save_rng_states(temporary / _rng_file(accelerator.process_index))
        if accelerator.is_main_process:
            save_model(module, str(temporary / CHECKPOINT_MODEL_FILE))
            tensors, described = _optimizer_tensors(optimizer)
            save_file(tensors, str(temporary / CHECKPOINT_OPTIMIZER_FILE))
            if weight_average is not None:
                weight_average.save(temporary)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with _writing(final, temporary, _ROOM_FOR_ONE_MORE):
            scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else None
            files = {
                path.name: {"bytes": path.stat().st_size, "sha256": file_digest(path)}
                for path in sorted(temporary.iterdir())
                if path.is_file()
            }
            manifest = {
                "format": CHECKPOINT_FORMAT,
                "step": step,
                "progress": progress.state_dict(),
                "optimizer": described,
                "scaler": scaler,
                "resume_key": resume_key if resume_key is not None else _resume_key(settings, accelerator),
                "files": files,
            }
            write_text_atomically(temporary / CHECKPOINT_MANIFEST, json.dumps(manifest, indent=2))
            give_open_modes(temporary)  # safetensors writes 0600: readable as the run's other files (0644 at umask 022)
            os.replace(temporary, final)  # atomic: a checkpoint either exists complete or not at all
        if settings.keep_checkpoints:
            older = sorted(
                (path for path in output_dir.iterdir() if _checkpoint_step(path) is not None and _read_manifest(path)),
                key=_checkpoint_step,
            )
            for stale in older[: -settings.keep_checkpoints]:
                shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()


# What a full disk while checkpointing asks for (a run keeps its newest checkpoints and writes the next beside them).
_ROOM_FOR_ONE_MORE = ("While the newest checkpoint is written the folder holds one more than keep_checkpoints (CLI: "
                      "--keep-checkpoints) keeps.")


def _writing(target: Path, staging: Path, note: str = ""):
    """A failed write of ``target`` (a checkpoint, the best weights) through ``staging``: one line naming the folder
    and, for a full disk, the space (:func:`~a2gen_hf.output_folders.write_failures_named`), with ``note`` and how to
    go on; ``staging`` is removed."""
    return write_failures_named(
        target.name, target.parent, lambda: " ".join(filter(None, [note, resume_advice(target.parent)])), staging
    )


def resume_advice(output_dir: Path) -> str:
    """How to go on after a run into ``output_dir`` stopped (a full disk, say): the same command with --resume,
    from the newest complete checkpoint, or from step 0 where there is none (a plain run is refused: the folder
    holds the run's files)."""
    latest = latest_checkpoint(output_dir)
    where = f"continues from {latest.name}" if latest is not None else "starts from step 0 (no checkpoint is complete)"
    return f"Then run the same command with resume=True (CLI: --resume): it {where}."


def _verify_checkpoint(checkpoint: Path, manifest: dict[str, Any]) -> None:
    """Refuse a checkpoint an older version wrote (it holds pickles) or whose files changed after it was written."""
    if manifest.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{checkpoint} was written by an older a2gen_hf (its state is pickled, which this version never loads); "
            "start a new output folder, or resume it with the version that wrote it."
        )
    for name, entry in manifest["files"].items():
        expected = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(expected, str) or file_digest(checkpoint / name) != expected:
            raise ValueError(
                f"{checkpoint / name} does not match the SHA-256 recorded in {checkpoint / CHECKPOINT_MANIFEST}: the "
                "file was changed or damaged after the checkpoint was written. Delete this checkpoint to resume from "
                "an earlier one, or start a new output folder."
            )
    missing = [name for name in (CHECKPOINT_MODEL_FILE, CHECKPOINT_OPTIMIZER_FILE) if name not in manifest["files"]]
    if missing:
        raise ValueError(f"{checkpoint}: the manifest lists no {missing}; the checkpoint is incomplete.")


def _resume(
    accelerator: Accelerator,
    output_dir: Path,
    settings: TrainingSettings,
    model: nn.Module | None = None,
    optimizer=None,
    progress: _Progress | None = None,
    resume_key: dict[str, Any] | None = None,
    weight_average: WeightAverage | None = None,
) -> Path | None:
    """
    Load the latest complete checkpoint (when resuming) after checking that it was made with the same settings,
    model and data (:func:`_resume_key`) and that every file still has the SHA-256 its manifest records. Only
    safetensors and JSON are read; nothing is unpickled.
    """
    existing = latest_checkpoint(output_dir)
    if settings.resume:
        _report_skipped_checkpoints(output_dir, existing)
    if not settings.resume:
        if existing is not None:
            raise ValueError(
                f"{output_dir} already holds {existing.name} from an earlier run: pass resume=True (CLI: --resume) "
                "to continue it, or choose an empty output folder."
            )
        earlier = _earlier_run_files(output_dir)
        if earlier:  # a finished run without checkpoints: its model and best weights would be replaced or mixed
            raise ValueError(
                f"{output_dir} holds an earlier run ({', '.join(earlier)}): a new run would replace its model and "
                "leave its files beside the new ones. Choose an empty output folder, move the earlier run away, or, "
                "to train that run again (say, it stopped before its model was saved), pass resume=True (CLI: "
                "--resume): with no checkpoint it starts from step 0 and replaces those files."
            )
        return None
    if existing is None:
        if accelerator.is_main_process:
            logger.info(f"No complete checkpoint in {output_dir}: starting from step 0.")
        return None
    manifest = _read_manifest(existing)
    _verify_checkpoint(existing, manifest)
    current = resume_key if resume_key is not None else _resume_key(settings, accelerator)
    saved = manifest.get("resume_key") or {}
    different = _key_differences(
        {name: saved.get(name) for name in current}, current, _key_defaults(accelerator.unwrap_model(model))
    )
    if different:
        shown = "; ".join(different[:10]) + (f"; and {len(different) - 10} more" if len(different) > 10 else "")
        raise ValueError(
            f"{existing} was written by a run with other settings, model or data ({shown}). Resume with the same "
            "ones (only --epochs / --max-steps, --log-every, --checkpoint-every, --keep-checkpoints, --eval-batch-size, "
            "--report-to, --dataloader-num-workers and the progress display may change), or start a new output folder."
        )
    rng_file = existing / _rng_file(accelerator.process_index)
    if _rng_file(accelerator.process_index) not in manifest["files"]:
        raise ValueError(f"{rng_file} is not in the checkpoint; it was written by another number of processes.")
    module = accelerator.unwrap_model(model)
    try:
        # The weights' own device: accelerator.device is "cpu:0" under CPU DDP, which safetensors refuses.
        device = str(next(module.parameters()).device)
        load_model(module, str(existing / CHECKPOINT_MODEL_FILE), strict=True, device=device)
        with safe_open(str(existing / CHECKPOINT_OPTIMIZER_FILE), framework="pt") as file:
            tensors = {name: file.get_tensor(name) for name in file.keys()}
        optimizer.load_state_dict(_optimizer_state(tensors, manifest["optimizer"]))
        if weight_average is not None:
            _load_weight_average(weight_average, existing, manifest)
    except (RuntimeError, ValueError, KeyError, TypeError, SafetensorError) as error:
        raise ValueError(f"{existing}: the checkpoint does not fit this model and optimizer ({error}).") from None
    if manifest.get("scaler") is not None and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(manifest["scaler"])
    _check_finite_weights(module, f"in {existing / CHECKPOINT_MODEL_FILE}")
    if any(not torch.isfinite(value).all() for value in tensors.values() if value.is_floating_point()):
        raise FloatingPointError(
            f"{existing / CHECKPOINT_OPTIMIZER_FILE} holds NaN or inf; resume from another checkpoint."
        )
    _load_rng_states(rng_file)
    progress.load_state_dict(manifest["progress"])
    return existing


def _load_weight_average(weight_average: WeightAverage, checkpoint: Path, manifest: dict[str, Any]) -> None:
    """Restore the weights' moving average from ``checkpoint`` (written with the same ``ema_decay``)."""
    if WEIGHT_AVERAGE_FILE not in manifest["files"]:  # the manifest, whose digests were checked, is the authority
        raise missing_average(checkpoint)
    weight_average.load(checkpoint)


# The folder a best-weights file is written in before it is renamed into the output folder: safetensors writes through
# a temporary file of its own (``.tmpXXXXXX``) beside its target, which a kill would leave behind, model-sized, under a
# name nothing knows; inside this folder it goes with the folder (:func:`remove_interrupted_best_saves`).
_BEST_STAGING = ".tmp-best-weights"


def remove_interrupted_checkpoints(output_dir: Path) -> None:
    """Remove the ``.tmp-checkpoint-N`` folders of runs killed (or stopped by a full disk) while checkpointing: a save
    replaces only its own step's, and a resumed run that never saves step N again kept that one, checkpoint-sized, for
    good. Called by the main process when a run starts, under the output folder's lock."""
    for path in output_dir.glob(f".tmp-{CHECKPOINT_PREFIX}*"):
        if path.is_dir() and _checkpoint_step(path.with_name(path.name.removeprefix(".tmp-"))) is not None:
            shutil.rmtree(path, ignore_errors=True)


def remove_interrupted_best_saves(output_dir: Path) -> None:
    """Remove what a run killed while saving its best weights left (the staging folder and, from earlier versions, a
    ``.tmp-<best file>``); called by the main process when a run starts, under the output folder's lock."""
    shutil.rmtree(output_dir / _BEST_STAGING, ignore_errors=True)
    for name in (BEST_MODEL_FILE, BEST_GENERATOR_FILE):
        (output_dir / f".tmp-{name}").unlink(missing_ok=True)


def _save_best(
    accelerator: Accelerator,
    model: nn.Module,
    output_dir: Path,
    epoch: int,
    step: int,
    score: float,
    file_name: str = BEST_MODEL_FILE,
) -> None:
    if accelerator.is_main_process:
        staging = output_dir / _BEST_STAGING
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        metadata = {"epoch": str(epoch), "step": str(step), "score": repr(score)}
        with _writing(output_dir / file_name, staging):
            save_model(accelerator.unwrap_model(model), str(staging / file_name), metadata=metadata)
            give_open_mode(staging / file_name)  # safetensors writes 0600: readable as the run's other files
            os.replace(staging / file_name, output_dir / file_name)
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()


def _load_best(
    model: nn.Module,
    output_dir: Path,
    step: int,
    file_name: str = BEST_MODEL_FILE,
    keep_prefix: str | tuple[str, ...] | None = None,
) -> None:
    """Load the weights saved at the evaluation of ``step`` (``file_name`` in ``output_dir``); with ``keep_prefix``
    (one or several), every weight and buffer but those whose names start with it (they stay as they are)."""
    path = output_dir / file_name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the weights of the best evaluation (step {step}) were saved there."
        )
    with safe_open(str(path), framework="pt") as file:
        saved_step = (file.metadata() or {}).get("step")
    if saved_step != str(step):
        raise RuntimeError(
            f"{path} holds step {saved_step} but the run's best evaluation was at step {step}; the output folder was "
            "changed by another run. Train again in an empty folder."
        )
    device = str(next(model.parameters()).device)
    if keep_prefix is None:
        load_model(model, str(path), device=device)
        return
    saved = load_file(str(path), device=device)
    _, unexpected = model.load_state_dict(
        {name: tensor for name, tensor in saved.items() if not name.startswith(keep_prefix)}, strict=False
    )
    if unexpected:
        raise RuntimeError(f"{path} holds weights this model does not have ({unexpected[:3]}); train again.")
