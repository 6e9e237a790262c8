"""
Evaluation of A2Gen and its baselines (paper section 7), as plain functions and as offline ``evaluate`` modules.

Every model answers ``predict_actions`` with an :class:`~a2gen_hf.A2GenActionPrediction` (columns = action ids,
column 0 padding); the targets are read off the label sequences (``start, a1, ..., leave, <pad>``) with
:func:`~a2gen_hf.targets.first_occurrence_targets`: an action "happens" if it occurs after ``start``,
its time is that of its first occurrence.

Result format of :func:`compute_action_metrics` / :func:`evaluate_model` (a ``dict``; actions by name):

- ``auc`` / ``positives``: AUC of P(happens) and the number of examples where it happens, per action except
  ``start`` and the end action (both always happen); ``mean_auc`` over the defined ones;
- ``mae`` / ``mae_seconds``: mean absolute error of the predicted first-occurrence time on the examples where
  the action happens and its time is known, in normalised units and in seconds, per action except ``start``
  (the end action's is the watch time: also ``leave_mae`` / ``leave_mae_seconds``); ``timed_count``;
  ``mae_nonzero`` / ``mae_seconds_nonzero`` / ``timed_nonzero_count``: the same on occurrences after 0 s;
  ``mean_mae`` over the actions;
- ``next_action_accuracy`` (with ``next_actions``): predicted first action after ``start`` vs. the true one;
- ``backward_time_rate`` (with generated ``sequences`` / ``sequence_times``): share of sequences whose times go
  backwards somewhere;
- ``oracle_auc`` / ``oracle_mae`` / ``oracle_mae_seconds`` / ``auc_share_of_oracle`` (with the simulator's
  ``oracle_action_prob`` / ``oracle_expected_seconds``): the oracle's scores and the model's share of the
  oracle's AUC above chance, ``(auc_model - 0.5) / (auc_oracle - 0.5)``;
- ``num_examples`` and ``notes`` (why a value is NaN, e.g. an action with a single class).

The ``evaluate`` modules beside this file (``action_auc``, ``timing_mae``, ``next_action_accuracy``,
``time_order``, ``oracle_comparison``) wrap the same functions; :func:`load_metric` loads them by path, offline.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from ..targets import first_occurrence_targets
from ..time_encoding import denormalize_times, normalize_seconds

METRICS_DIR = Path(__file__).resolve().parent
METRIC_NAMES = ("action_auc", "timing_mae", "next_action_accuracy", "time_order", "oracle_comparison")
ORACLE_COLUMNS = ("oracle_action_prob", "oracle_expected_seconds")


def metric_path(name: str) -> str:
    """The folder of the shipped ``evaluate`` module ``name`` (one of :data:`METRIC_NAMES`)."""
    if name not in METRIC_NAMES:
        raise ValueError(f"Unknown a2gen_hf metric {name!r}; the shipped ones are {list(METRIC_NAMES)}.")
    return str(METRICS_DIR / name)


def load_metric(name: str, **kwargs: Any):
    """``evaluate.load`` of a shipped module by its local path (no Hub access); ``kwargs`` go to ``evaluate.load``."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)


def _as_array(values: Any, name: str, dtype: type, ndim: int, pad_value: float | None = None) -> np.ndarray:
    """`values` (array, tensor or nested lists; ragged rows padded with `pad_value` when given) -> numpy array."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    try:
        array = np.asarray(values, dtype=dtype)
    except ValueError:
        rows = list(values)
        if pad_value is None or ndim != 2:
            raise ValueError(f"{name} must be a rectangular {ndim}-d array; its rows have different lengths.") from None
        width = max((len(row) for row in rows), default=0)
        array = np.full((len(rows), width), pad_value, dtype=dtype)
        for index, row in enumerate(rows):
            array[index, : len(row)] = row
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-d, got shape {array.shape}.")
    return array


def _action_ids(action_names: Sequence[str], start_action: str, end_action: str) -> tuple[list[int], list[int]]:
    """Ids (``action_names[i]`` is ``i + 1``) of the timed actions (all but start) and of those with an AUC."""
    for role, name in (("start_action", start_action), ("end_action", end_action)):
        if name not in action_names:
            raise ValueError(f"{role}={name!r} is not in action_names={list(action_names)}.")
    timed = [index + 1 for index, name in enumerate(action_names) if name != start_action]
    ranked = [action_id for action_id in timed if action_names[action_id - 1] != end_action]
    return timed, ranked


def _check_width(array: np.ndarray, name: str, action_names: Sequence[str]) -> None:
    if array.shape[1] != len(action_names) + 1:
        raise ValueError(
            f"{name} has {array.shape[1]} columns but there are {len(action_names) + 1} action ids (padding + "
            f"{list(action_names)}); pass one column per action id, as predict_actions returns them."
        )


def action_targets(
    labels: Any, label_times: Any | None, label_time_mask: Any | None, vocab_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy view of :func:`first_occurrence_targets`: occurs `(n, V)`, first times `(n, V)`, time known `(n, V)`."""
    labels = torch.as_tensor(_as_array(labels, "labels", np.int64, 2, pad_value=0))
    times = torch.zeros(labels.shape) if label_times is None else torch.as_tensor(
        _as_array(label_times, "label_times", np.float64, 2, pad_value=0.0)
    )
    mask = None if label_time_mask is None else torch.as_tensor(
        _as_array(label_time_mask, "label_time_mask", np.int64, 2, pad_value=0)
    )
    if times.shape != labels.shape or (mask is not None and mask.shape != labels.shape):
        raise ValueError(
            f"labels {tuple(labels.shape)}, label_times {tuple(times.shape)} and label_time_mask "
            f"{None if mask is None else tuple(mask.shape)} must have the same shape."
        )
    occurs, first_times, known = first_occurrence_targets(labels, times, mask, vocab_size)
    return occurs.numpy(), first_times.numpy(), known.numpy()


def _auc(occurs: np.ndarray, scores: np.ndarray, label: str, notes: list[str]) -> float:
    positives = int(occurs.sum())
    if positives in (0, occurs.size):
        notes.append(f"{label}: AUC undefined (NaN), {positives} of {occurs.size} examples are positive.")
        return math.nan
    return float(roc_auc_score(occurs, scores))


def _check_probabilities(probabilities: np.ndarray, name: str) -> None:
    if not np.isfinite(probabilities).all():
        raise ValueError(f"{name} holds NaN or inf; every score must be a finite probability.")


def action_auc(
    probabilities: Any, labels: Any, action_names: Sequence[str], start_action: str = "start", end_action: str = "leave"
) -> dict[str, Any]:
    """
    AUC of "the action happens" per action (all but start and end) and its positive count.

    Args:
        probabilities: `(n, V)` P(happens) per action id. labels: `(n, T)` label sequences.
    """
    probabilities = _as_array(probabilities, "probabilities", np.float64, 2)
    _check_width(probabilities, "probabilities", action_names)
    _check_probabilities(probabilities, "probabilities")
    occurs, _, _ = action_targets(labels, None, None, len(action_names) + 1)
    if occurs.shape[0] != probabilities.shape[0]:
        raise ValueError(f"{probabilities.shape[0]} predictions for {occurs.shape[0]} label rows; pass one per row.")
    _, ranked = _action_ids(action_names, start_action, end_action)
    notes: list[str] = []
    auc = {action_names[i - 1]: _auc(occurs[:, i], probabilities[:, i], f"auc[{action_names[i - 1]}]", notes) for i in ranked}
    defined = [value for value in auc.values() if not math.isnan(value)]
    return {
        "auc": auc,
        "positives": {action_names[i - 1]: int(occurs[:, i].sum()) for i in ranked},
        "mean_auc": float(np.mean(defined)) if defined else math.nan,
        "notes": notes,
    }


def _mean_absolute(errors: np.ndarray, where: np.ndarray) -> float:
    return float(np.abs(errors[where]).mean()) if where.any() else math.nan


def timing_mae(
    expected_times: Any,
    labels: Any,
    label_times: Any,
    label_time_mask: Any | None,
    action_names: Sequence[str],
    start_action: str = "start",
    end_action: str = "leave",
    time_log_mean: float = 0.0,
    time_log_std: float = 1.0,
    zero_time_tolerance_seconds: float = 1e-3,
) -> dict[str, Any]:
    """
    MAE of the first-occurrence time per action (all but start) where it happens and its time is known, in
    normalised units and in seconds, on all such occurrences and on those after ``zero_time_tolerance_seconds``.

    Args:
        expected_times: `(n, V)` predicted normalised times per action id. labels / label_times / label_time_mask:
            `(n, T)`. time_log_mean / time_log_std: the time statistics (the model config's) to convert to seconds.
    """
    expected_times = _as_array(expected_times, "expected_times", np.float64, 2)
    _check_width(expected_times, "expected_times", action_names)
    occurs, true_times, known = action_targets(labels, label_times, label_time_mask, len(action_names) + 1)
    if occurs.shape[0] != expected_times.shape[0]:
        raise ValueError(f"{expected_times.shape[0]} predictions for {occurs.shape[0]} label rows; pass one per row.")
    if not np.isfinite(expected_times[known]).all():
        raise ValueError("expected_times holds NaN or inf where the action happens; every prediction must be finite.")
    timed, _ = _action_ids(action_names, start_action, end_action)
    true_seconds = denormalize_times(true_times, time_log_mean, time_log_std)
    predicted_seconds = denormalize_times(expected_times, time_log_mean, time_log_std)
    nonzero = known & (true_seconds > zero_time_tolerance_seconds)
    result: dict[str, Any] = {key: {} for key in (
        "mae", "mae_seconds", "mae_nonzero", "mae_seconds_nonzero", "timed_count", "timed_nonzero_count"
    )}
    notes: list[str] = []
    for i in timed:
        name = action_names[i - 1]
        normalised_errors = expected_times[:, i] - true_times[:, i]
        seconds_errors = predicted_seconds[:, i] - true_seconds[:, i]
        result["mae"][name] = _mean_absolute(normalised_errors, known[:, i])
        result["mae_seconds"][name] = _mean_absolute(seconds_errors, known[:, i])
        result["mae_nonzero"][name] = _mean_absolute(normalised_errors, nonzero[:, i])
        result["mae_seconds_nonzero"][name] = _mean_absolute(seconds_errors, nonzero[:, i])
        result["timed_count"][name] = int(known[:, i].sum())
        result["timed_nonzero_count"][name] = int(nonzero[:, i].sum())
        if not known[:, i].any():
            notes.append(f"mae[{name}]: undefined (NaN), no example has it with a known time.")
    defined = [value for value in result["mae"].values() if not math.isnan(value)]
    result["mean_mae"] = float(np.mean(defined)) if defined else math.nan
    result["leave_mae"] = result["mae"][end_action]
    result["leave_mae_seconds"] = result["mae_seconds"][end_action]
    result["notes"] = notes
    return result


def next_action_accuracy(next_actions: Any, labels: Any) -> dict[str, Any]:
    """Share of examples whose predicted first action after start, `(n,)` ids, is the true one (``labels[:, 1]``)."""
    predicted = _as_array(next_actions, "next_actions", np.int64, 1)
    labels = _as_array(labels, "labels", np.int64, 2, pad_value=0)
    if labels.shape[0] != predicted.shape[0] or labels.shape[1] < 2:
        raise ValueError(
            f"next_actions {predicted.shape} needs one entry per label row and labels {labels.shape} at least "
            "two positions (start and the next action)."
        )
    truth = labels[:, 1]
    counted = truth > 0
    notes = [] if counted.any() else ["next_action_accuracy: undefined (NaN), no label has an action after start."]
    accuracy = float((predicted[counted] == truth[counted]).mean()) if counted.any() else math.nan
    return {"next_action_accuracy": accuracy, "next_action_count": int(counted.sum()), "notes": notes}


def backward_time_rate(sequences: Any, sequence_times: Any) -> dict[str, Any]:
    """
    Share of generated sequences whose times go backwards: `sequences` `(n, L)` action ids (``start`` first, 0 =
    padding after the end action) and their `sequence_times` `(n, L)` (normalised or seconds: the order is the same).
    """
    sequences = _as_array(sequences, "sequences", np.int64, 2, pad_value=0)
    times = _as_array(sequence_times, "sequence_times", np.float64, 2, pad_value=0.0)
    if sequences.shape != times.shape:
        raise ValueError(f"sequences {sequences.shape} and sequence_times {times.shape} must have the same shape.")
    present = sequences != 0
    if (present[:, 1:] & ~present[:, :-1]).any():
        raise ValueError("sequences must be left-aligned: padding (0) only after the last action of a row.")
    backwards = ((times[:, 1:] < times[:, :-1]) & present[:, 1:]).any(axis=1)
    rate = float(backwards.mean()) if len(backwards) else math.nan
    return {"backward_time_rate": rate, "sequence_count": int(len(backwards))}


def oracle_comparison(
    probabilities: Any,
    labels: Any,
    label_times: Any,
    label_time_mask: Any | None,
    oracle_action_prob: Any,
    oracle_expected_seconds: Any,
    action_names: Sequence[str],
    start_action: str = "start",
    end_action: str = "leave",
    time_log_mean: float = 0.0,
    time_log_std: float = 1.0,
) -> dict[str, Any]:
    """
    The simulator's oracle on the same examples: its AUC per action, its MAE (E[time | happens] vs the true time)
    in normalised units and seconds, and the model's share of the oracle's AUC above chance.

    Args:
        probabilities: `(n, V)` the model's P(happens) per action id.
        oracle_action_prob / oracle_expected_seconds: `(n, len(action_names))`, one column per action name (no
            padding column), as the simulator writes them; NaN seconds = the action cannot happen.
    """
    width = len(action_names)
    oracle_probabilities = _as_array(oracle_action_prob, "oracle_action_prob", np.float64, 2)
    oracle_seconds = _as_array(oracle_expected_seconds, "oracle_expected_seconds", np.float64, 2)
    for name, array in (("oracle_action_prob", oracle_probabilities), ("oracle_expected_seconds", oracle_seconds)):
        if array.shape[1] != width:
            raise ValueError(f"{name} has {array.shape[1]} columns; it needs one per action of {list(action_names)}.")
    _check_probabilities(oracle_probabilities, "oracle_action_prob")
    # Shift to action-id columns (padding first) so that the model's helpers apply unchanged.
    padding = np.zeros((oracle_probabilities.shape[0], 1))
    oracle_ids = np.concatenate([padding, oracle_probabilities], axis=1)
    oracle_times = np.concatenate([padding, normalize_seconds(oracle_seconds, time_log_mean, time_log_std)], axis=1)
    occurs, _, known = action_targets(labels, label_times, label_time_mask, width + 1)
    timed, _ = _action_ids(action_names, start_action, end_action)
    undefined = [action_names[i - 1] for i in timed if np.isnan(oracle_times[:, i][known[:, i]]).any()]
    if undefined:
        raise ValueError(
            f"oracle_expected_seconds is NaN (the action cannot happen) where {undefined} did happen; the oracle "
            "columns do not belong to these labels."
        )
    model = action_auc(probabilities, labels, action_names, start_action, end_action)
    oracle = action_auc(oracle_ids, labels, action_names, start_action, end_action)
    oracle_mae = timing_mae(
        np.nan_to_num(oracle_times, nan=0.0), labels, label_times, label_time_mask, action_names,
        start_action, end_action, time_log_mean, time_log_std,
    )
    share = {}
    notes = [note.replace("auc[", "oracle_auc[", 1) for note in oracle["notes"]]
    for name, oracle_value in oracle["auc"].items():
        model_value = model["auc"][name]
        if math.isnan(oracle_value) or oracle_value <= 0.5:
            share[name] = math.nan
            notes.append(f"auc_share_of_oracle[{name}]: undefined (NaN), the oracle AUC {oracle_value} is not above 0.5.")
        else:
            share[name] = (model_value - 0.5) / (oracle_value - 0.5)
    return {
        "oracle_auc": oracle["auc"],
        "oracle_mae": oracle_mae["mae"],
        "oracle_mae_seconds": oracle_mae["mae_seconds"],
        "auc_share_of_oracle": share,
        "notes": notes,
    }


def predicted_next_actions(probabilities: Any, expected_times: Any, start_action_id: int, threshold: float = 0.5):
    """
    First action after start for models that do not generate: among the actions with P(happens) >= `threshold`
    (the end action always qualifies), the one with the earliest expected time; `(n, V)` -> `(n,)` ids.
    """
    probabilities = _as_array(probabilities, "probabilities", np.float64, 2)
    times = _as_array(expected_times, "expected_times", np.float64, 2)
    candidates = probabilities >= threshold
    candidates[:, [0, start_action_id]] = False
    return np.where(candidates, times, np.inf).argmin(axis=1)


def compute_action_metrics(
    predictions: Mapping[str, Any],
    references: Mapping[str, Any],
    action_names: Sequence[str],
    start_action: str = "start",
    end_action: str = "leave",
    time_log_mean: float = 0.0,
    time_log_std: float = 1.0,
    zero_time_tolerance_seconds: float = 1e-3,
) -> dict[str, Any]:
    """
    All metrics in the format of this module's docstring.

    Args:
        predictions: ``action_probabilities`` `(n, V)` and ``expected_times`` `(n, V)` (an
            :class:`~a2gen_hf.A2GenActionPrediction` works), optionally ``next_actions`` `(n,)` and the generated
            ``sequences`` / ``sequence_times`` `(n, L)`.
        references: ``labels``, ``label_times``, ``label_time_mask`` `(n, T)` (the collator's), optionally the
            simulator's ``oracle_action_prob`` / ``oracle_expected_seconds`` `(n, len(action_names))`.
        action_names / start_action / end_action: the vocabulary (the model config's).
        time_log_mean / time_log_std: the time statistics, to report seconds.
        zero_time_tolerance_seconds: occurrences at or below this many seconds count as "at 0 s".
    """
    for name in ("action_probabilities", "expected_times"):
        if predictions.get(name) is None:
            raise ValueError(f"predictions need {name!r} (predict_actions returns it).")
    if references.get("labels") is None or references.get("label_times") is None:
        raise ValueError("references need 'labels' and 'label_times' (and 'label_time_mask'), as the collator builds.")
    vocabulary = dict(action_names=action_names, start_action=start_action, end_action=end_action)
    times = dict(time_log_mean=time_log_mean, time_log_std=time_log_std)
    labels, label_times, label_time_mask = (references.get(key) for key in ("labels", "label_times", "label_time_mask"))
    parts = [
        action_auc(predictions["action_probabilities"], labels, **vocabulary),
        timing_mae(
            predictions["expected_times"], labels, label_times, label_time_mask, **vocabulary, **times,
            zero_time_tolerance_seconds=zero_time_tolerance_seconds,
        ),
    ]
    if predictions.get("next_actions") is not None:
        parts.append(next_action_accuracy(predictions["next_actions"], labels))
    if predictions.get("sequences") is not None:
        parts.append(backward_time_rate(predictions["sequences"], predictions.get("sequence_times")))
    if any(references.get(key) is not None for key in ORACLE_COLUMNS):
        missing = [key for key in ORACLE_COLUMNS if references.get(key) is None]
        if missing:
            raise ValueError(f"The oracle needs both {list(ORACLE_COLUMNS)}; {missing} is missing.")
        parts.append(
            oracle_comparison(
                predictions["action_probabilities"], labels, label_times, label_time_mask,
                references["oracle_action_prob"], references["oracle_expected_seconds"], **vocabulary, **times,
            )
        )
    result: dict[str, Any] = {"num_examples": int(len(_as_array(labels, "labels", np.int64, 2, pad_value=0)))}
    notes: list[str] = []
    for part in parts:
        notes += part.pop("notes", [])
        result.update(part)
    result["notes"] = notes
    return result


def flatten_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """Scalar view for loggers and the Trainer: ``{"auc": {"like": v}}`` -> ``{"auc_like": v}``; notes dropped."""
    flat: dict[str, float] = {}
    for key, value in result.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}_{name}": float(inner) for name, inner in value.items()})
        elif isinstance(value, (int, float)):
            flat[key] = float(value)
    return flat


def make_compute_metrics(config) -> Callable[[Any], dict[str, float]]:
    """
    ``compute_metrics`` for ``transformers.Trainer`` with a multi-task baseline (MMoE / PLE).

    The Trainer collects the forward's outputs: for the baselines ``(logits, times, ...)`` with per-action
    log-odds and first-occurrence times `(n, V)`, so P(happens) is ``sigmoid(logits)``; and, with the default
    label names of these models, ``label_ids = (labels, label_times, label_time_mask)``. Returns
    :func:`flatten_metrics` of :func:`compute_action_metrics` (next action: :func:`predicted_next_actions`).

    A2Gen's forward returns per-slot class scores `(n, K, V)`, not P(happens) (that is read off a decode in
    ``predict_actions``, and EAG's forward is teacher-forced on the true sequence), so this function does not fit
    A2Gen. To evaluate A2Gen through the Trainer, use :class:`a2gen_hf.training.trainer.A2GenTrainer` with
    ``compute_metrics=a2gen_compute_metrics(model.config)`` (and ``a2gen_training_arguments``): its evaluation
    calls ``predict_actions`` (and ``generate`` for the next action) and reports the same metrics for A2Gen, MMoE
    and PLE. Outside the Trainer, :func:`evaluate_model` does the same over a dataloader.
    """

    def compute_metrics(eval_prediction) -> dict[str, float]:
        outputs = eval_prediction.predictions
        if not isinstance(outputs, (tuple, list)) or len(outputs) < 2:
            raise ValueError("compute_metrics expects the model outputs (logits, times, ...) of a multi-task baseline.")
        logits, times = (np.asarray(output) for output in outputs[:2])
        if logits.ndim != 2:
            raise ValueError(
                f"compute_metrics got logits of shape {logits.shape}: per-slot scores (A2Gen) do not give "
                "P(action happens); evaluate A2Gen with a2gen_hf.training.A2GenTrainer and "
                "compute_metrics=a2gen_compute_metrics(model.config), or a2gen_hf.metrics.evaluate_model(model, "
                "dataloader)."
            )
        label_ids = eval_prediction.label_ids
        if not isinstance(label_ids, (tuple, list)) or len(label_ids) not in (2, 3):
            raise ValueError(
                "compute_metrics needs label_ids = (labels, label_times[, label_time_mask]); keep the Trainer's "
                'default label_names or set label_names=["labels", "label_times", "label_time_mask"].'
            )
        references = dict(zip(("labels", "label_times", "label_time_mask"), label_ids))
        probabilities = expit(logits.astype(np.float64))
        predictions = {
            "action_probabilities": probabilities,
            "expected_times": times,
            "next_actions": predicted_next_actions(probabilities, times, config.start_action_id),
        }
        return flatten_metrics(
            compute_action_metrics(
                predictions, references, config.action_names, config.start_action, config.end_action,
                config.time_log_mean, config.time_log_std,
            )
        )

    return compute_metrics


def _padded_rows(tensor: torch.Tensor, width: int) -> np.ndarray:
    array = tensor.detach().cpu().numpy()
    return np.pad(array, ((0, 0), (0, width - array.shape[1])))


@torch.no_grad()
def evaluate_model(
    model, dataloader: Iterable[Mapping[str, torch.Tensor]], oracle: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """
    Runs ``predict_actions`` (and, for models that generate, greedy ``generate``) on every batch of `dataloader`
    (the collator's batches, with labels) and returns :func:`compute_action_metrics` of it all.

    The next action is the first generated one for A2Gen, :func:`predicted_next_actions` for the baselines; the
    backward-time rate is reported for models that generate. ``oracle`` (the simulator's ``oracle_action_prob`` /
    ``oracle_expected_seconds`` columns, e.g. ``dataset.select_columns(list(ORACLE_COLUMNS))[:]``) must list the
    examples in the dataloader's order (do not shuffle it).
    """
    config = model.config
    generates = model.can_generate()
    width = config.max_actions + 1
    collected: dict[str, list[np.ndarray]] = {}

    def keep(name: str, values: np.ndarray | torch.Tensor) -> None:
        collected.setdefault(name, []).append(values.detach().cpu().numpy() if torch.is_tensor(values) else values)

    was_training = model.training
    model.eval()
    try:
        for batch in dataloader:
            batch = {key: value.to(model.device) for key, value in batch.items() if torch.is_tensor(value)}
            if "labels" not in batch or "label_times" not in batch:
                raise ValueError("evaluate_model needs batches with labels and label_times (the collator's).")
            prediction = model.predict_actions(**batch)
            keep("action_probabilities", prediction.action_probabilities.float())
            keep("expected_times", prediction.expected_times.float())
            for name in ("labels", "label_times", "label_time_mask"):
                if name in batch:
                    keep(name, _padded_rows(batch[name], max(width, batch[name].shape[1])))
            if generates:
                generated = model.generate(**batch, return_dict_in_generate=True)
                keep("next_actions", generated.sequences[:, 1])
                keep("sequences", _padded_rows(generated.sequences, width))
                keep("sequence_times", _padded_rows(generated.times, width))
            else:
                keep("next_actions", predicted_next_actions(
                    prediction.action_probabilities, prediction.expected_times, config.start_action_id
                ))
    finally:
        model.train(was_training)
    if not collected:
        raise ValueError("evaluate_model got an empty dataloader.")
    arrays = {name: np.concatenate(parts) for name, parts in collected.items()}
    references = {name: arrays.pop(name) for name in ("labels", "label_times", "label_time_mask") if name in arrays}
    if oracle is not None:
        for name in ORACLE_COLUMNS:
            values = _as_array(oracle[name], name, np.float64, 2)
            if len(values) != len(references["labels"]):
                raise ValueError(
                    f"oracle[{name!r}] has {len(values)} rows but the dataloader gave {len(references['labels'])} "
                    "examples; pass the oracle columns of exactly the evaluated examples, in order."
                )
            references[name] = values
    return compute_action_metrics(
        arrays, references, config.action_names, config.start_action, config.end_action,
        config.time_log_mean, config.time_log_std,
    )


def format_metrics_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """
    A plain-text table of AUC, positives and timing MAE (seconds) per action for one or more models (results of
    :func:`compute_action_metrics` by model name), with the simulator oracle's columns when present.
    """
    first = next(iter(results.values()))
    with_oracle = "oracle_auc" in first
    header = ["action", "positives"] + [f"AUC {name}" for name in results] + (["AUC oracle"] if with_oracle else [])
    header += [f"MAE s {name}" for name in results] + (["MAE s oracle"] if with_oracle else [])

    def number(value: Any, digits: int) -> str:
        return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"

    rows = []
    for action in first["auc"]:
        cells = [action, str(first["positives"][action])]
        cells += [number(metrics["auc"][action], 4) for metrics in results.values()]
        cells += [number(first["oracle_auc"][action], 4)] if with_oracle else []
        cells += [number(metrics["mae_seconds"].get(action), 2) for metrics in results.values()]
        cells += [number(first["oracle_mae_seconds"].get(action), 2)] if with_oracle else []
        rows.append(cells)
    blank = [""] * (len(results) + with_oracle)
    rows.append(
        ["leave (watch time)", ""] + blank
        + [number(metrics.get("leave_mae_seconds"), 2) for metrics in results.values()]
        + ([number(first["oracle_mae_seconds"].get("leave"), 2)] if with_oracle else [])
    )
    rows.append(
        ["mean AUC", ""] + [number(metrics["mean_auc"], 4) for metrics in results.values()]
        + [""] * with_oracle + blank
    )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths)))
        for row in [header, *rows]
    )
