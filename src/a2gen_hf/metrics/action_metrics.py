"""
The metric math of a2gen_hf: arrays in, numbers out (numpy arrays, tensors or nested lists; no model, no loop).

Every model answers ``predict_actions`` with an :class:`~a2gen_hf.A2GenActionPrediction` (columns = action ids,
column 0 padding); the targets are read off the label sequences (``start, a1, ..., leave, <pad>``) with
:func:`~a2gen_hf.targets.first_occurrence_targets`: an action "happens" if it occurs after ``start``,
its time is that of its first occurrence.

Result format of :func:`compute_action_metrics` (a ``dict``; actions by name):

- ``auc`` / ``positives``: AUC of P(happens) and the number of examples where it happens, per action except
  ``start`` and the end action (both always happen); ``mean_auc`` over the defined ones (the tables name them,
  :func:`mean_auc_label`: "mean AUC (collect, cart; buy undefined: no positive in test)");
- ``mae`` / ``mae_seconds``: mean absolute error of the predicted first-occurrence time on the examples where
  the action happens and its time is known, in normalised units and in seconds, per action except ``start``
  (the end action's is the watch time: also ``leave_mae`` / ``leave_mae_seconds``); ``timed_count``;
  ``mae_nonzero`` / ``mae_seconds_nonzero`` / ``timed_nonzero_count``: the same on occurrences after 0 s;
  ``mean_mae`` over the actions;
- ``logloss``: binary cross-entropy of P(happens) per action (``mean_logloss``);
- ``predicted_rate`` / ``observed_rate`` / ``calibration`` (their ratio, 1 = calibrated) / ``ece`` (expected
  calibration error over ``reliability``: per action a table of equal-width probability bins with their count,
  mean prediction and observed rate), per action;
- with group ids (``references["group_ids"]``: the user, or the request, of each example):
  ``gauc`` (per-group AUC, weighted by the group's number of examples, groups with one class skipped;
  ``gauc_groups`` counts the groups used: the tables print a GAUC over fewer than :data:`MIN_GAUC_GROUPS` as n/a,
  its figure in brackets; ``mean_gauc`` over the actions whose GAUC they show, :func:`mean_gauc_label` names them)
  and ``ndcg_at_K`` / ``recall_at_K`` over each group's examples as its candidates (groups without a positive
  skipped; ``ranking_groups``; ``ranking_groups_over_K``: those with more than K candidates, a note where few do);
- ``next_action_accuracy`` (with ``next_actions``): predicted first action after ``start`` vs. the true one;
- ``backward_time_rate`` (with generated ``sequences`` / ``sequence_times``): share of sequences whose times go
  backwards somewhere;
- ``oracle_auc`` / ``oracle_mae`` / ``oracle_mae_seconds`` / ``auc_share_of_oracle`` (with the simulator's
  ``oracle_action_prob`` / ``oracle_expected_seconds``): the oracle's scores and the model's share of the
  oracle's AUC above chance, ``(auc_model - 0.5) / (auc_oracle - 0.5)`` (NaN where the oracle's lift
  ``auc_oracle - 0.5`` is below :data:`MIN_ORACLE_LIFT`);
- ``num_examples`` and ``notes`` (why a value is NaN, e.g. an action with a single class).

Counts (:data:`COUNT_KEYS`, ``ranking_groups_over_K``), the details of :data:`DETAIL_KEYS` and ``notes`` stay out of :func:`flatten_metrics`, the
scalar view that Trainer logs and trackers read.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..targets import check_labels_open_with_start, first_occurrence_targets
from ..time_encoding import denormalize_times, normalize_seconds, time_statistics_problem
from .auc import (  # noqa: F401  (group_numbers: re-exported, its old home was here)
    _first_bad,
    auc,
    group_aucs,
    group_numbers,
    has_both_classes,
    tensor_as_numpy,
)

ORACLE_COLUMNS = ("oracle_action_prob", "oracle_expected_seconds")
# Entries of a result that count examples (or groups): reported, but kept out of the scalar view.
COUNT_KEYS = (
    "num_examples", "positives", "timed_count", "timed_nonzero_count", "next_action_count", "sequence_count",
    "gauc_groups", "ranking_groups",
)
# ... and the counts per cut-off K, ``ranking_groups_over_K`` (the groups with more than K candidates): counts too.
RANKING_OVER_K_PREFIX = "ranking_groups_over_"
# Entries kept out of the scalar view too: the reliability tables, and the two rates whose ratio is `calibration`.
DETAIL_KEYS = ("reliability", "predicted_rate", "observed_rate")


def ranking_over_k_cutoff(key: str) -> int | None:
    """The cut-off K of a result's entry ``ranking_groups_over_K`` (``"ranking_groups_over_10"`` -> 10), None for
    any other key: the one reading of those keys (:func:`is_count_key`, the tables' notes)."""
    digits = key.removeprefix(RANKING_OVER_K_PREFIX)
    if digits == key or not (digits.isascii() and digits.isdigit()):
        return None
    return int(digits)


def is_count_key(key: str) -> bool:
    """Whether a result's entry ``key`` is a count (:data:`COUNT_KEYS`, ``ranking_groups_over_K``)."""
    return key in COUNT_KEYS or ranking_over_k_cutoff(key) is not None


DEFAULT_TOP_K = (10,)
# A GAUC averaged over fewer groups (users holding both classes of the action) than this is a few users' own AUCs,
# each from a handful of examples (one user with one positive: 0, 1 or anything between, by that one example), not a
# group average to compare models by: the tables (metrics.tables.gauc_cell) print it n/a with its figure in brackets
# and the number of users. The same bound as the bootstrap's users per class (training.statistics.MIN_CLASS_GROUPS).
MIN_GAUC_GROUPS = 10
# NDCG@K / Recall@K over groups of at most K candidates are fixed (Recall@K 1, NDCG@K the full-list NDCG, whatever
# the scores): where fewer than this many of the groups averaged over, or fewer than half of them, hold more than K
# candidates, a note says that the figure barely tells models apart (:func:`ranking_cut_off_too_large`).
MIN_RANKING_GROUPS_OVER_K = 10
# An oracle whose AUC is within this of 0.5 has almost no lift over chance to share: (auc - 0.5) / (oracle - 0.5)
# divides by it and swings wildly (a probe read -3.8), so auc_share_of_oracle is NaN with a note below it.
MIN_ORACLE_LIFT = 0.01
DEFAULT_CALIBRATION_BINS = 10
# Probabilities are clipped to [eps, 1 - eps] in the log loss at float64's eps, whatever their dtype: one number for
# the same values, whether they come as a float32 array (predict_batch, a2gen evaluate, the Trainer), float64, lists or
# through the evaluate module (which stores them as float64). sklearn >= 1.5 clips float32 input at float32's eps
# instead: for float32 probabilities of exactly 0 or 1 its figure is lower (a certain miss costs it 15.9 nats, here
# 36.0). Dtypes coarser than float32 (float16, bfloat16) store 0.999 as 1.0: a warning says so (coarse_dtype).
_LOGLOSS_EPS = float(np.finfo(np.float64).eps)
_FLOAT32_EPS = float(np.finfo(np.float32).eps)


def coarse_dtype(probabilities: Any) -> str | None:
    """The name of the floating dtype of `probabilities` as given (a tensor or an array) where it is coarser than
    float32 (float16, bfloat16), else None (lists, integers, float32, float64)."""
    if isinstance(probabilities, torch.Tensor) and probabilities.dtype.is_floating_point:
        eps, name = float(torch.finfo(probabilities.dtype).eps), str(probabilities.dtype).removeprefix("torch.")
    elif isinstance(probabilities, np.ndarray) and probabilities.dtype.kind == "f":
        eps, name = float(np.finfo(probabilities.dtype).eps), str(probabilities.dtype)
    else:
        return None
    return name if eps > _FLOAT32_EPS else None


# A probability each coarse dtype stores as 1.0 (bfloat16 keeps 8 bits below 1: 0.999 -> 1.0; float16 11: 0.9999).
_ROUNDED_TO_ONE = {"bfloat16": "0.999", "float16": "0.9999"}


def coarse_probabilities_message(dtype_name: str) -> str:
    """What a log loss of ``dtype_name`` (float16, bfloat16) probabilities is worth: the warning of :func:`log_loss`
    and of :func:`~a2gen_hf.metrics.evaluation.predict_batch`."""
    near_one = _ROUNDED_TO_ONE.get(dtype_name, "0.999")
    return (
        f"the probabilities are {dtype_name}, too coarse for a log loss: {dtype_name} stores {near_one} as 1.0, so "
        f"one confident miss costs the clipping bound (36 nats at float64's eps) rather than its true "
        f"-log(1 - {near_one}); the LogLoss is no figure to compare with a float32 model's. Score the model's "
        "probabilities in float32 (predict_actions(...).action_probabilities.float() of a float32 forward pass)."
    )


def _as_array(values: Any, name: str, dtype: type, ndim: int, pad_value: float | None = None) -> np.ndarray:
    """`values` (array, tensor or nested lists; ragged rows padded with `pad_value` when given) -> numpy array of
    `dtype`. An integer `dtype` (ids) takes whole numbers only: 1.0 is fine, 2.7 is refused, never truncated."""
    if isinstance(values, torch.Tensor):
        values = tensor_as_numpy(values)
    integral = np.issubdtype(dtype, np.integer)
    read_as = None if integral else dtype  # ids are read as given and checked before the cast
    try:
        array = np.asarray(values, dtype=read_as)
    except ValueError:
        if pad_value is None or ndim != 2:
            raise ValueError(f"{name} must be a rectangular {ndim}-d array; its rows have different lengths.") from None
        array = _ragged_rows(values, name, pad_value, read_as)
    if ndim == 2 and array.shape == (0,):  # no rows at all ([] from an evaluate module that was given none)
        array = array.reshape(0, 0)
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-d, got shape {array.shape}.")
    return _whole_numbers(array, name).astype(dtype, copy=False) if integral else array


def _ragged_rows(values: Any, name: str, pad_value: float, dtype: type | None) -> np.ndarray:
    """Rows of different lengths -> a 2-d array, each row left-aligned and padded with `pad_value`."""
    rows = list(values)
    lengths = np.array([len(row) for row in rows], dtype=np.int64)
    flat = np.asarray(np.concatenate(rows), dtype=dtype)
    if flat.ndim != 1:
        raise ValueError(f"{name} must be a 2-d array: a list of rows of numbers, got rows of shape {flat.shape[1:]}.")
    width = int(lengths.max())
    array = np.full((len(rows), width), pad_value, dtype=flat.dtype)
    array[np.arange(width) < lengths[:, None]] = flat
    return array


def _row_lengths(values: Any) -> list[int] | None:
    """Each row's length of `(n, T)` rows as given (an array's or tensor's: T), or None where `values` has no rows."""
    if values is None or isinstance(values, (str, bytes)):
        return None
    if isinstance(values, (np.ndarray, torch.Tensor)):
        return [values.shape[1]] * values.shape[0] if values.ndim == 2 else None
    try:
        return [len(row) for row in values]
    except TypeError:
        return None


def _check_rows_agree(first: tuple[str, Any], *others: tuple[str, Any]) -> None:
    """Rows that belong together (labels and their times, sequences and theirs) have the same lengths: ragged rows are
    padded, and a short row of times padded with 0.0 would read as a time known to be 0 s."""
    name, values = first
    lengths = _row_lengths(values)
    for other_name, other_values in others:
        other_lengths = _row_lengths(other_values)
        if lengths is None or other_lengths is None or len(other_lengths) != len(lengths):
            continue  # no rows to compare, or a count that the shape checks name
        for row, (length, other_length) in enumerate(zip(lengths, other_lengths)):
            if length != other_length:
                raise ValueError(
                    f"{other_name}[{row}] has {other_length} entries but {name}[{row}] has {length}; give one entry per "
                    f"entry of {name} (an unknown time as NaN or with time mask 0)."
                )


def _whole_numbers(array: np.ndarray, name: str) -> np.ndarray:
    """Ids read as given: integers and bools pass, floats only where they are whole numbers (never truncated)."""
    if array.dtype.kind in "biu":
        return array
    if array.dtype.kind != "f":
        raise ValueError(f"{name} holds {array.dtype} values; it takes whole numbers (ids), pass them as integers.")
    whole = np.isfinite(array) & (np.trunc(array) == array)
    if not whole.all():
        raise ValueError(
            f"{_first_bad(array, ~whole, name)}; {name} takes whole numbers (ids): 1.0 is fine, a fraction, NaN or inf "
            "is refused rather than cut to an integer. Pass the ids as integers."
        )
    return array


def _time_mask(values: Any, name: str) -> np.ndarray:
    """A `(n, T)` 0/1 time mask (bools fine) -> int64; any other value is refused rather than read as 0."""
    mask = _as_array(values, name, np.float64, 2, pad_value=0.0)
    bad = (mask != 0) & (mask != 1)
    if bad.any():
        raise ValueError(f"{_first_bad(mask, bad, name)}; a time mask holds 1 (time known) or 0 (unknown), bools fine.")
    return mask.astype(np.int64)


def _action_ids(action_names: Sequence[str], start_action: str, end_action: str) -> tuple[list[int], list[int]]:
    """Ids (``action_names[i]`` is ``i + 1``) of the timed actions (all but start) and of those with an AUC."""
    for role, name in (("start_action", start_action), ("end_action", end_action)):
        if name not in action_names:
            raise ValueError(f"{role}={name!r} is not in action_names={list(action_names)}.")
    if start_action == end_action:  # before: a bare KeyError further on
        raise ValueError(f"start_action and end_action are both {start_action!r}; they must be two different actions "
                         "(the model config's start_action and end_action).")
    timed = [index + 1 for index, name in enumerate(action_names) if name != start_action]
    ranked = [action_id for action_id in timed if action_names[action_id - 1] != end_action]
    return timed, ranked


def ranked_action_ids(vocabulary) -> list[int]:
    """Ids of the actions that get an AUC (all but padding, the start and the end action) of a config or a tokenizer
    (anything with ``action_names``, ``start_action`` and ``end_action``)."""
    return _action_ids(vocabulary.action_names, vocabulary.start_action, vocabulary.end_action)[1]


def ranked_action_aucs(occurs: np.ndarray, scores: np.ndarray, vocabulary) -> dict[int, float]:
    """``{action id: AUC}`` of `(n, V)` ``scores`` against `(n, V)` boolean ``occurs`` for the ranked actions of
    ``vocabulary`` (a config or a tokenizer, :func:`ranked_action_ids`) that have both classes; the others are left
    out (what validation selection averages)."""
    return {
        action: auc(occurs[:, action], scores[:, action])
        for action in ranked_action_ids(vocabulary)
        if has_both_classes(occurs[:, action])
    }


def _start(action_names: Sequence[str], start_action: str, end_action: str) -> tuple[int, str]:
    """The start action's (id, name) (``action_names[i]`` is id ``i + 1``), once :func:`_action_ids` has checked the
    vocabulary (before the labels are read: its errors name the vocabulary)."""
    _action_ids(action_names, start_action, end_action)
    return list(action_names).index(start_action) + 1, start_action


def _check_width(array: np.ndarray, name: str, action_names: Sequence[str]) -> np.ndarray:
    """`array` `(n, V)` with one column per action id; no rows at all (`(0, 0)`) read as `(0, V)`."""
    if array.shape == (0, 0):
        return array.reshape(0, len(action_names) + 1)
    if array.shape[1] != len(action_names) + 1:
        raise ValueError(
            f"{name} has {array.shape[1]} columns but there are {len(action_names) + 1} action ids (padding + "
            f"{list(action_names)}); pass one column per action id, as predict_actions returns them."
        )
    return array


@dataclass(frozen=True)
class _ReadTargets:
    """The targets of a set of labels, read once by :func:`compute_action_metrics` and passed to every part in place
    of the labels (reading them is the costly step of most metrics)."""

    occurs: np.ndarray
    first_times: np.ndarray
    known: np.ndarray


def action_targets(
    labels: Any, label_times: Any | None, label_time_mask: Any | None, vocab_size: int,
    start: tuple[int, str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy view of :func:`first_occurrence_targets`: occurs `(n, V)`, first times `(n, V)`, time known `(n, V)`.
    With ``start``, the start action's (id, name), a label row with an action that does not open with it is refused
    (its first action, at position 0, would be read as the start and lost from every metric)."""
    if isinstance(labels, _ReadTargets):
        if labels.occurs.shape[1] != vocab_size:
            raise ValueError(f"The targets were read for {labels.occurs.shape[1]} action ids, not {vocab_size}.")
        return labels.occurs, labels.first_times, labels.known
    _check_rows_agree(("labels", labels), ("label_times", label_times), ("label_time_mask", label_time_mask))
    labels = torch.as_tensor(_as_array(labels, "labels", np.int64, 2, pad_value=0))
    if labels.shape == (0, 0):  # no rows at all ([]): no targets, whatever width the times were read with
        labels = labels.reshape(0, 1)
        label_times = None if label_times is None else np.zeros((0, 1))
        label_time_mask = None if label_time_mask is None else np.zeros((0, 1))
    times = torch.zeros(labels.shape) if label_times is None else torch.as_tensor(
        _as_array(label_times, "label_times", np.float64, 2, pad_value=0.0)
    )
    mask = None if label_time_mask is None else torch.as_tensor(_time_mask(label_time_mask, "label_time_mask"))
    if times.shape != labels.shape or (mask is not None and mask.shape != labels.shape):
        raise ValueError(
            f"labels {tuple(labels.shape)}, label_times {tuple(times.shape)} and label_time_mask "
            f"{None if mask is None else tuple(mask.shape)} must have the same shape."
        )
    if start is not None:
        check_labels_open_with_start(labels, *start)
    times, mask = _unknown_times_as_nan(times, mask)
    occurs, first_times, known = first_occurrence_targets(labels, times, mask, vocab_size)
    return occurs.numpy(), first_times.numpy(), known.numpy()


def _unknown_times_as_nan(times: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """NaN label times are unknown times, as in the data (``action_seconds``): without a ``label_time_mask`` they
    become mask 0; with one, a NaN where the mask says known (1) is refused, naming the first place (before: that
    action's MAE was NaN, its nonzero MAE and the mean over actions silently left it out). A known time of +-inf is
    refused too (before: an infinite MAE, noted as if a prediction were too large)."""
    infinite = torch.isinf(times) & (True if mask is None else mask > 0)
    if infinite.any():
        row, column = (int(index) for index in infinite.nonzero()[0])
        raise ValueError(
            f"label_times[{row}, {column}] is {float(times[row, column])}; a known label time must be finite (an "
            "unknown one is NaN or has label_time_mask 0)."
        )
    missing = torch.isnan(times)
    if not missing.any():
        return times, mask
    if mask is None:
        mask = (~missing).to(times.dtype)
    else:
        clash = missing & (mask > 0)
        if clash.any():
            row, column = (int(index) for index in clash.nonzero()[0])
            raise ValueError(
                f"label_times[{row}, {column}] is NaN where label_time_mask[{row}, {column}] is 1 (known): mark an "
                "unknown time with label_time_mask 0 (the collator does), or give its time."
            )
    return torch.nan_to_num(times, nan=0.0), mask


def _auc(occurs: np.ndarray, scores: np.ndarray, label: str, notes: list[str]) -> float:
    if not has_both_classes(occurs):
        notes.append(f"{label}: AUC undefined (NaN), {int(occurs.sum())} of {occurs.size} examples are positive.")
        return math.nan
    return auc(occurs, scores)


def _check_probabilities(probabilities: np.ndarray, name: str) -> None:
    if not np.isfinite(probabilities).all():
        raise ValueError(f"{name} holds NaN or inf; every score must be a finite probability.")
    if probabilities.size and (probabilities.min() < 0.0 or probabilities.max() > 1.0):
        raise ValueError(
            f"{name} holds values from {probabilities.min():g} to {probabilities.max():g}; every score must be a "
            "probability in [0, 1] (logits? pass their sigmoid, as predict_actions returns it)."
        )


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value >= 1


def _positive_int(value: Any, name: str) -> int:
    """A count (bins): an int >= 1, numpy ints fine; floats, bools and strings are refused, never rounded."""
    if not _is_positive_int(value):
        raise ValueError(f"{name}={value!r} must be a positive int (a whole number >= 1 such as 10, not a float or a str).")
    return int(value)


def _cut_offs(top_k: Any) -> list[int]:
    """``top_k``, one positive int or a sequence of them (numpy ints fine) -> the sorted distinct cut-offs K."""
    values = [top_k] if _is_positive_int(top_k) else top_k
    if (
        not isinstance(values, (list, tuple, range, np.ndarray))
        or np.ndim(values) != 1
        or len(values) == 0
        or not all(_is_positive_int(value) for value in values)
    ):
        raise ValueError(
            f"top_k={top_k!r} must be a positive int or a sequence of them, the cut-offs K, e.g. 10 or (5, 10) (floats, "
            "bools and strings are refused, never rounded)."
        )
    return sorted({int(value) for value in values})


def _metric_options(
    top_k: Any, calibration_bins: Any, zero_time_tolerance_seconds: Any = 1e-3
) -> tuple[list[int], int]:
    """The checked options of :func:`compute_action_metrics`: the cut-offs and the number of calibration bins (and
    the zero-time tolerance, checked: a NaN made every ``mae_nonzero`` NaN with counts of 0, a string failed in numpy)."""
    tolerance = zero_time_tolerance_seconds
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) or not math.isfinite(tolerance) or (
        tolerance < 0
    ):
        raise ValueError(
            f"zero_time_tolerance_seconds={tolerance!r} must be a finite number of seconds >= 0 (occurrences at or "
            "below it count as 'at 0 s'; default 1e-3)."
        )
    return _cut_offs(top_k), _positive_int(calibration_bins, "calibration_bins")


def _check_time_statistics(time_log_mean: float, time_log_std: float) -> None:
    """Times convert to seconds only with a finite mean and a positive finite spread (the fitted tokenizer's)."""
    if (problem := time_statistics_problem(time_log_mean, time_log_std)) is not None:
        raise ValueError(f"{problem} (pass the model config's, fitted on the training split).")


def action_auc(
    probabilities: Any, labels: Any, action_names: Sequence[str], start_action: str = "start", end_action: str = "leave"
) -> dict[str, Any]:
    """
    AUC of "the action happens" per action (all but start and end) and its positive count.

    Args:
        probabilities: `(n, V)` P(happens) per action id. labels: `(n, T)` label sequences.
    """
    probabilities, occurs, ranked = _ranked_inputs(probabilities, labels, action_names, start_action, end_action)
    notes: list[str] = []
    aucs = {action_names[i - 1]: _auc(occurs[:, i], probabilities[:, i], f"auc[{action_names[i - 1]}]", notes) for i in ranked}
    defined = [value for value in aucs.values() if not math.isnan(value)]
    return {
        "auc": aucs,
        "positives": {action_names[i - 1]: int(occurs[:, i].sum()) for i in ranked},
        "mean_auc": float(np.mean(defined)) if defined else math.nan,
        "notes": notes,
    }


def undefined_auc_reasons(positives: Mapping[str, Any], num_examples: Any = None) -> dict[str, str]:
    """The ranked actions whose AUC is undefined (one class only, :func:`action_auc`) by their ``positives`` (the
    examples where each happens) among ``num_examples`` (None: not known, so only "no positive" is told), each with
    why: ``{"buy": "no positive"}``, ``{"cart": "every example positive"}``."""
    reasons = {}
    for action, count in positives.items():
        if count == 0:
            reasons[action] = "no positive"
        elif num_examples is not None and count == num_examples:
            reasons[action] = "every example positive"
    return reasons


def mean_auc_actions(positives: Mapping[str, Any], num_examples: Any = None) -> list[str]:
    """The actions ``mean_auc`` averages over: those of ``positives`` whose AUC is defined
    (:func:`undefined_auc_reasons`)."""
    undefined = undefined_auc_reasons(positives, num_examples)
    return [action for action in positives if action not in undefined]


def mean_auc_label(positives: Mapping[str, Any], num_examples: Any = None, split: str | None = None) -> str:
    """
    How a table names ``mean_auc``: "mean AUC" where every ranked action's AUC is defined, else what it averages
    over and why the rest is left out, e.g. ``"mean AUC (collect, cart; buy undefined: no positive in test)"``:
    a mean over fewer actions is no figure to compare with one over all of them (a log without buy, the hardest
    action, read 0.02 better than the intact log). ``positives`` / ``num_examples``: a result's (or a report's)
    counts of the examples scored; ``split``: their split's name, said in the label where given.
    """
    reasons = undefined_auc_reasons(positives, num_examples)
    if not reasons:
        return "mean AUC"
    by_reason: dict[str, list[str]] = {}
    for action, reason in reasons.items():
        by_reason.setdefault(reason, []).append(action)
    where = f" in {split}" if split else ""
    undefined = "; ".join(f"{', '.join(actions)} undefined: {reason}{where}" for reason, actions in by_reason.items())
    averaged = mean_auc_actions(positives, num_examples)
    return f"mean AUC ({', '.join(averaged) if averaged else 'over no action'}; {undefined})"


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
    _check_time_statistics(time_log_mean, time_log_std)
    _metric_options(DEFAULT_TOP_K, DEFAULT_CALIBRATION_BINS, zero_time_tolerance_seconds)
    expected_times = _as_array(expected_times, "expected_times", np.float64, 2)
    expected_times = _check_width(expected_times, "expected_times", action_names)
    occurs, true_times, known = action_targets(labels, label_times, label_time_mask, len(action_names) + 1,
                                               _start(action_names, start_action, end_action))
    if occurs.shape[0] != expected_times.shape[0]:
        raise ValueError(f"{expected_times.shape[0]} predictions for {occurs.shape[0]} label rows; pass one per row.")
    if not np.isfinite(expected_times[known]).all():
        raise ValueError("expected_times holds NaN or inf where the action happens; every prediction must be finite.")
    timed, _ = _action_ids(action_names, start_action, end_action)
    with np.errstate(over="ignore"):  # a time beyond what seconds hold is inf, and noted below
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
        elif not math.isfinite(result["mae_seconds"][name]):  # written to JSON as null: say why
            held = known[:, i]
            sides = (("some predicted", predicted_seconds[held, i], expected_times[held, i]),
                     ("some true (label)", true_seconds[held, i], true_times[held, i]))  # fmt: skip
            beyond = [
                f"{side} time is beyond what seconds can hold (a normalised time of {np.abs(normalised).max():.3g})"
                for side, seconds, normalised in sides
                if np.isinf(seconds).any()
            ]
            kind = "infinite" if math.isinf(result["mae_seconds"][name]) else "NaN"
            notes.append(f"mae_seconds[{name}]: {kind}, {' and '.join(beyond)}.")
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
    if labels.shape == (0, 0):  # no rows at all ([])
        labels = labels.reshape(0, 2)
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
    if sequence_times is None:
        raise ValueError("sequence_times is missing: give the generated times with the sequences (generate(..., "
                         "return_dict_in_generate=True) returns both as .sequences and .times).")
    _check_rows_agree(("sequences", sequences), ("sequence_times", sequence_times))
    sequences = _as_array(sequences, "sequences", np.int64, 2, pad_value=0)
    times = _as_array(sequence_times, "sequence_times", np.float64, 2, pad_value=0.0)
    if sequences.shape != times.shape:
        raise ValueError(f"sequences {sequences.shape} and sequence_times {times.shape} must have the same shape.")
    present = sequences != 0
    if (present[:, 1:] & ~present[:, :-1]).any():
        raise ValueError("sequences must be left-aligned: padding (0) only after the last action of a row.")
    unordered = present & np.isnan(times)  # NaN compares false both ways: it would count as in order
    if unordered.any():
        raise ValueError(f"{_first_bad(times, unordered, 'sequence_times')} for an action; generated times are numbers.")
    backwards = ((times[:, 1:] < times[:, :-1]) & present[:, 1:]).any(axis=1)
    rate = float(backwards.mean()) if len(backwards) else math.nan
    notes = [] if len(backwards) else ["backward_time_rate: undefined (NaN), there are no sequences."]
    return {"backward_time_rate": rate, "sequence_count": int(len(backwards)), "notes": notes}


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
    in normalised units and seconds, and the model's share of the oracle's AUC above chance,
    ``(auc - 0.5) / (oracle_auc - 0.5)``: NaN with a note where the oracle's AUC is less than :data:`MIN_ORACLE_LIFT`
    (0.01) above 0.5 (the share divides by that lift, and swung to -3.8 at an oracle AUC of 0.503).

    Args:
        probabilities: `(n, V)` the model's P(happens) per action id.
        oracle_action_prob / oracle_expected_seconds: `(n, len(action_names))`, one column per action name (no
            padding column), as the simulator writes them; NaN seconds = the action cannot happen.
    """
    width = len(action_names)
    oracle_probabilities = _as_array(oracle_action_prob, "oracle_action_prob", np.float64, 2)
    oracle_seconds = _as_array(oracle_expected_seconds, "oracle_expected_seconds", np.float64, 2)
    oracle_probabilities, oracle_seconds = (
        array.reshape(0, width) if array.shape == (0, 0) else array for array in (oracle_probabilities, oracle_seconds)
    )  # no rows at all ([])
    for name, array in (("oracle_action_prob", oracle_probabilities), ("oracle_expected_seconds", oracle_seconds)):
        if array.shape[1] != width:
            raise ValueError(f"{name} has {array.shape[1]} columns; it needs one per action of {list(action_names)}.")
    _check_probabilities(oracle_probabilities, "oracle_action_prob")
    if oracle_probabilities.shape[0] != oracle_seconds.shape[0]:
        raise ValueError(
            f"oracle_action_prob has {oracle_probabilities.shape[0]} rows and oracle_expected_seconds "
            f"{oracle_seconds.shape[0]}; give both one row per example."
        )
    impossible = ~np.isnan(oracle_seconds) & ~(np.isfinite(oracle_seconds) & (oracle_seconds >= 0))
    if impossible.any():
        raise ValueError(
            f"{_first_bad(oracle_seconds, impossible, 'oracle_expected_seconds')}; an expected time is a finite "
            "number of seconds >= 0, or NaN where the action cannot happen."
        )
    # Shift to action-id columns (padding first) so that the model's helpers apply unchanged.
    padding = np.zeros((oracle_probabilities.shape[0], 1))
    oracle_ids = np.concatenate([padding, oracle_probabilities], axis=1)
    oracle_times = np.concatenate([padding, normalize_seconds(oracle_seconds, time_log_mean, time_log_std)], axis=1)
    occurs, _, known = action_targets(labels, label_times, label_time_mask, width + 1,
                                      _start(action_names, start_action, end_action))
    if occurs.shape[0] != oracle_ids.shape[0]:
        raise ValueError(
            f"the oracle columns have {oracle_ids.shape[0]} rows for {occurs.shape[0]} label rows; give one oracle row "
            "per example, in the labels' order."
        )
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
        elif oracle_value - 0.5 < MIN_ORACLE_LIFT:
            share[name] = math.nan
            notes.append(
                f"auc_share_of_oracle[{name}]: undefined (NaN), the oracle AUC {oracle_value:.4f} is less than "
                f"{MIN_ORACLE_LIFT} above 0.5: a share of so small a lift over chance swings with every example "
                "(read oracle_auc and auc side by side instead)."
            )
        else:
            share[name] = (model_value - 0.5) / (oracle_value - 0.5)
    return {
        "oracle_auc": oracle["auc"],
        "oracle_mae": oracle_mae["mae"],
        "oracle_mae_seconds": oracle_mae["mae_seconds"],
        "auc_share_of_oracle": share,
        "notes": notes,
    }


def _ranked_inputs(
    probabilities: Any, labels: Any, action_names: Sequence[str], start_action: str, end_action: str
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Checked `(n, V)` probabilities, `(n, V)` occurs and the ids of the ranked actions (all but start and end)."""
    probabilities = _as_array(probabilities, "probabilities", np.float64, 2)
    probabilities = _check_width(probabilities, "probabilities", action_names)
    _check_probabilities(probabilities, "probabilities")
    occurs, _, _ = action_targets(labels, None, None, len(action_names) + 1, _start(action_names, start_action, end_action))
    if occurs.shape[0] != probabilities.shape[0]:
        raise ValueError(f"{probabilities.shape[0]} predictions for {occurs.shape[0]} label rows; pass one per row.")
    _, ranked = _action_ids(action_names, start_action, end_action)
    return probabilities, occurs, ranked


def gauc_is_shown(groups: Any) -> bool:
    """
    Whether a GAUC over ``groups`` users (its ``gauc_groups``; None where not known, e.g. a report written before
    they were kept) is read as a figure: at least :data:`MIN_GAUC_GROUPS` users. The one home of the rule: the tables
    print the others n/a with their figure in brackets (:func:`~a2gen_hf.metrics.tables.gauc_cell`) and ``mean_gauc``
    leaves them out (:func:`mean_gauc_actions`).
    """
    return groups is None or groups >= MIN_GAUC_GROUPS


def mean_gauc_actions(gauc_groups: Mapping[str, Any]) -> list[str]:
    """The actions ``mean_gauc`` averages over: those of ``gauc_groups`` (users each GAUC averages over) whose GAUC
    the tables show (:func:`gauc_is_shown`; an undefined GAUC has 0 users)."""
    return [action for action, groups in gauc_groups.items() if groups is not None and groups > 0
            and gauc_is_shown(groups)]  # fmt: skip


def mean_gauc_label(gauc_groups: Mapping[str, Any], reasons: bool = True) -> str:
    """
    How a table names ``mean_gauc``: "mean GAUC" where every ranked action's GAUC is shown, else what it averages
    over and why the rest is left out, e.g. ``"mean GAUC (like, comment; follow, forward n/a: fewer than 10 users;
    buy undefined: no user holds both classes)"`` (as :func:`mean_auc_label` names ``mean_auc``). ``reasons=False``:
    only what it averages over, ``"mean GAUC (like, comment)"`` (a table row whose n/a cells and note say why).
    """
    averaged = mean_gauc_actions(gauc_groups)
    if len(averaged) == len(gauc_groups):
        return "mean GAUC"
    if not reasons:
        return f"mean GAUC ({', '.join(averaged) if averaged else 'over no action'})"
    thin = [action for action, groups in gauc_groups.items() if groups and action not in averaged]
    undefined = [action for action, groups in gauc_groups.items() if not groups]
    reasons = ([f"{', '.join(thin)} n/a: fewer than {MIN_GAUC_GROUPS} users"] if thin else []) + (
        [f"{', '.join(undefined)} undefined: no user holds both classes"] if undefined else [])
    return f"mean GAUC ({', '.join(averaged) if averaged else 'over no action'}; {'; '.join(reasons)})"


def gauc(
    probabilities: Any,
    labels: Any,
    group_ids: Any,
    action_names: Sequence[str],
    start_action: str = "start",
    end_action: str = "leave",
) -> dict[str, Any]:
    """
    Group AUC per action (all but start and end): the AUC inside every group (user or request), averaged with the
    group's number of examples as weight, over the groups that have both classes (the usual GAUC of CTR papers).

    Args:
        probabilities: `(n, V)` P(happens) per action id. labels: `(n, T)` label sequences.
        group_ids: `(n,)` the group of each example (e.g. the collator's ``user_ids``).

    Returns:
        ``gauc`` and ``gauc_groups`` (groups used) per action, ``notes``, and ``mean_gauc``: the mean over the actions
        whose GAUC averages over at least :data:`MIN_GAUC_GROUPS` groups (the ones the tables show,
        :func:`mean_gauc_actions`; named by :func:`mean_gauc_label`), NaN with a note where none does (before, a GAUC
        from one user, 0 or 1 by a single example, went into the mean while the tables printed it n/a).
    """
    probabilities, occurs, ranked = _ranked_inputs(probabilities, labels, action_names, start_action, end_action)
    groups = group_numbers(group_ids, occurs.shape[0])
    result: dict[str, Any] = {"gauc": {}, "gauc_groups": {}}
    notes: list[str] = []
    for action_id in ranked:
        name = action_names[action_id - 1]
        aucs, sizes = group_aucs(occurs[:, action_id], probabilities[:, action_id], groups)
        defined = ~np.isnan(aucs)
        result["gauc_groups"][name] = int(defined.sum())
        if defined.any():
            result["gauc"][name] = float(np.sum(aucs[defined] * sizes[defined]) / np.sum(sizes[defined]))
        else:
            result["gauc"][name] = math.nan
            notes.append(f"gauc[{name}]: undefined (NaN), no group has both examples with and without it.")
    averaged = mean_gauc_actions(result["gauc_groups"])
    result["mean_gauc"] = float(np.mean([result["gauc"][action] for action in averaged])) if averaged else math.nan
    if not averaged and result["gauc_groups"]:
        notes.append(
            f"mean_gauc: undefined (NaN), no action's GAUC averages over at least {MIN_GAUC_GROUPS} groups (users "
            f"holding both classes: {', '.join(f'{a} {g}' for a, g in result['gauc_groups'].items())})."
        )
    result["notes"] = notes
    return result


def log_loss(
    probabilities: Any, labels: Any, action_names: Sequence[str], start_action: str = "start", end_action: str = "leave"
) -> dict[str, Any]:
    """
    Binary cross-entropy (natural log) of P(happens) per action (all but start and end), probabilities clipped to
    ``[eps, 1 - eps]`` at float64's eps (2.2e-16) whatever their dtype: a float32 array, a float64 one, lists and the
    ``log_loss`` evaluate module give one number for the same values. ``sklearn.metrics.log_loss`` (>= 1.5) clips
    float32 input at float32's eps (1.19e-7) instead, so for float32 probabilities of exactly 0 or 1 (or within
    1.2e-7 of them) the figures differ: a certain miss costs 36.0 nats here against sklearn's 15.9 (elsewhere, and
    for float64 input, they agree). float16 / bfloat16 probabilities are warned about (:func:`coarse_probabilities_message`: bfloat16 stores
    0.999 as 1.0). ``mean_logloss`` over the actions; ``notes`` (NaN without examples; the coarse dtype).
    """
    coarse = coarse_dtype(probabilities)
    probabilities, occurs, ranked = _ranked_inputs(probabilities, labels, action_names, start_action, end_action)
    losses = {}
    notes: list[str] = []
    if coarse is not None:
        message = coarse_probabilities_message(coarse)
        warnings.warn(f"log_loss: {message}", UserWarning, stacklevel=2)
        notes.append(f"logloss: {message}")
    for action_id in ranked:
        name = action_names[action_id - 1]
        p = np.clip(probabilities[:, action_id], _LOGLOSS_EPS, 1 - _LOGLOSS_EPS)
        y = occurs[:, action_id]
        losses[name] = float(-np.mean(np.where(y, np.log(p), np.log1p(-p)))) if y.size else math.nan
        if not y.size:
            notes.append(f"logloss[{name}]: undefined (NaN), there are no examples.")
    values = [value for value in losses.values() if not math.isnan(value)]
    return {"logloss": losses, "mean_logloss": float(np.mean(values)) if values else math.nan, "notes": notes}


def reliability_table(occurs: Any, probabilities: Any, num_bins: int = DEFAULT_CALIBRATION_BINS) -> list[dict[str, Any]]:
    """
    Reliability diagram of one action: `num_bins` equal-width bins of P(happens) over [0, 1] (the last one closed),
    each ``{"low", "high", "count", "mean_predicted", "observed_rate"}`` (NaN means in an empty bin).
    """
    num_bins = _positive_int(num_bins, "num_bins")
    occurs = np.asarray(occurs, dtype=np.float64).reshape(-1)
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    # Bin b holds [b / num_bins, (b + 1) / num_bins): floor(p * num_bins), so a p on an edge (0.3 of ten bins) opens
    # its bin (linspace's 0.30000000000000004 put it in the bin below).
    edges = np.arange(num_bins + 1) / num_bins
    bins = np.clip(np.floor(probabilities * num_bins).astype(np.int64), 0, num_bins - 1)
    counts = np.bincount(bins, minlength=num_bins)
    predicted = np.bincount(bins, weights=probabilities, minlength=num_bins)
    observed = np.bincount(bins, weights=occurs, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted, observed_rate = predicted / counts, observed / counts
    return [
        {"low": float(edges[b]), "high": float(edges[b + 1]), "count": int(counts[b]),
         "mean_predicted": float(mean_predicted[b]), "observed_rate": float(observed_rate[b])}
        for b in range(num_bins)
    ]


def calibration(
    probabilities: Any,
    labels: Any,
    action_names: Sequence[str],
    start_action: str = "start",
    end_action: str = "leave",
    num_bins: int = DEFAULT_CALIBRATION_BINS,
) -> dict[str, Any]:
    """
    Calibration of P(happens) per action (all but start and end): the mean prediction (``predicted_rate``), the
    share of examples where it happens (``observed_rate``), their ratio ``calibration`` (predicted over observed:
    1 is calibrated on average, above 1 over-predicts; NaN when the action never happens), the expected
    calibration error ``ece`` (bin weight times |mean prediction - observed rate|, summed over the bins) and the
    ``reliability`` table of :func:`reliability_table` (``num_bins``: a positive int).
    """
    num_bins = _positive_int(num_bins, "num_bins")
    probabilities, occurs, ranked = _ranked_inputs(probabilities, labels, action_names, start_action, end_action)
    result: dict[str, Any] = {key: {} for key in ("predicted_rate", "observed_rate", "calibration", "ece", "reliability")}
    notes: list[str] = []
    size = occurs.shape[0]
    for action_id in ranked:
        name = action_names[action_id - 1]
        p, y = probabilities[:, action_id], occurs[:, action_id]
        predicted = float(p.mean()) if size else math.nan
        observed = float(y.mean()) if size else math.nan
        result["predicted_rate"][name] = predicted
        result["observed_rate"][name] = observed
        if size and observed > 0:
            result["calibration"][name] = predicted / observed
        else:
            result["calibration"][name] = math.nan
            notes.append(f"calibration[{name}]: undefined (NaN), the action never happens in these examples.")
        table = reliability_table(y, p, num_bins)
        result["reliability"][name] = table
        result["ece"][name] = float(
            sum(row["count"] * abs(row["mean_predicted"] - row["observed_rate"]) for row in table if row["count"]) / size
        ) if size else math.nan
    result["notes"] = notes
    return result


def _tie_averaged(gain: np.ndarray, block_starts: np.ndarray) -> np.ndarray:
    """`(n,)` sorted gains -> each one replaced by the mean gain of its block (``block_starts``: True where a block of
    equal scores within a group begins)."""
    if not gain.size:
        return gain
    block = np.cumsum(block_starts) - 1
    return (np.bincount(block, weights=gain) / np.bincount(block))[block]


def ranking_cut_off_too_large(over_k: Any, groups: Any) -> bool:
    """
    Whether NDCG@K / Recall@K averaged over ``groups`` groups, of which ``over_k`` hold more than K candidates (a
    result's ``ranking_groups`` and ``ranking_groups_over_K``), barely tell models apart: fewer than
    :data:`MIN_RANKING_GROUPS_OVER_K` of them, or fewer than half, hold more than K. A group of at most K candidates
    puts all of them in the top K whatever the scores: its Recall@K is 1 and its NDCG@K the full-list NDCG. The one
    home of the rule, for the notes of :func:`ranking_at_k` and the tables. False where nothing is averaged (or the
    counts are not known).
    """
    if over_k is None or not groups:
        return False
    return over_k < MIN_RANKING_GROUPS_OVER_K or 2 * over_k < groups


def ranking_cut_off_note(k: int, action: str, over_k: int, groups: int) -> str:
    """The note of :func:`ranking_at_k` where :func:`ranking_cut_off_too_large` holds."""
    return (
        f"ndcg_at_{k}/recall_at_{k}[{action}]: only {over_k} of the {groups} groups averaged over hold more than {k} "
        f"candidates; in the others every candidate is in the top {k}, so their Recall@{k} is 1 and NDCG@{k} the "
        f"full-list NDCG whatever the scores: the figures barely tell models apart (use a smaller top_k)."
    )


def ranking_at_k(
    probabilities: Any,
    labels: Any,
    group_ids: Any,
    action_names: Sequence[str],
    start_action: str = "start",
    end_action: str = "leave",
    top_k: int | Sequence[int] = DEFAULT_TOP_K,
) -> dict[str, Any]:
    """
    NDCG@K and Recall@K per action (all but start and end), a group's examples (a user's or a request's) being its
    candidates, ranked by P(happens); relevance is 1 where the action happens. Averaged over the groups with at
    least one positive (the others have no ideal ranking). Tied scores count as in a random order, averaged: each
    position of a block of equal scores gets the block's mean relevance (the expected NDCG and Recall over the orders
    of the tie, as ``sklearn.metrics.ndcg_score`` computes it; before, the examples' order decided, and a constant
    predictor scored 0.79 or 0.68 by the rows' order). ``top_k``: one cut-off K or a sequence of them, positive
    ints.

    Returns:
        ``ndcg_at_K`` and ``recall_at_K`` per action for every K of `top_k`, ``ranking_groups`` (groups averaged
        over, per action), ``ranking_groups_over_K`` (of those, the groups with more than K candidates: the only ones
        where the scores decide anything at K; a count, left out of :func:`flatten_metrics`) and ``notes`` (one per
        action and K where few groups hold more than K candidates, :func:`ranking_cut_off_too_large`).
    """
    ks = _cut_offs(top_k)
    probabilities, occurs, ranked = _ranked_inputs(probabilities, labels, action_names, start_action, end_action)
    groups = group_numbers(group_ids, occurs.shape[0])
    size = groups.size
    num_groups = int(groups.max()) + 1 if size else 0
    result: dict[str, Any] = {f"{metric}_at_{k}": {} for k in ks for metric in ("ndcg", "recall")}
    result["ranking_groups"] = {}
    result.update({f"{RANKING_OVER_K_PREFIX}{k}": {} for k in ks})
    candidates = np.bincount(groups, minlength=num_groups)
    notes: list[str] = []
    discounts = 1.0 / np.log2(np.arange(2, max(ks) + 2))  # position 0 -> 1 / log2(2)
    ideal = np.r_[0.0, np.cumsum(discounts)]  # ideal DCG@K of P positives: ideal[min(P, K)]
    for action_id in ranked:
        name = action_names[action_id - 1]
        relevant = occurs[:, action_id].astype(np.float64)
        order = np.lexsort((-probabilities[:, action_id], groups))  # by group, best score first, stable
        group, gain, score = groups[order], relevant[order], probabilities[order, action_id]
        new_group = np.r_[True, group[1:] != group[:-1]] if size else np.zeros(0, dtype=bool)
        position = np.arange(size) - np.flatnonzero(new_group)[np.cumsum(new_group) - 1]
        positives = np.bincount(group, weights=gain, minlength=num_groups)
        gain = _tie_averaged(gain, new_group | np.r_[True, score[1:] != score[:-1]] if size else new_group)
        counted = positives > 0
        result["ranking_groups"][name] = int(counted.sum())
        if not counted.any():
            notes.append(f"ndcg/recall[{name}]: undefined (NaN), no group has an example where it happens.")
        for k in ks:
            over_k = int((counted & (candidates > k)).sum())
            result[f"{RANKING_OVER_K_PREFIX}{k}"][name] = over_k
            if ranking_cut_off_too_large(over_k, int(counted.sum())):
                notes.append(ranking_cut_off_note(k, name, over_k, int(counted.sum())))
            top = position < k
            dcg = np.bincount(group, weights=gain * top * discounts[np.minimum(position, max(ks) - 1)], minlength=num_groups)
            hits = np.bincount(group, weights=gain * top, minlength=num_groups)
            best = ideal[np.minimum(positives, k).astype(np.int64)]
            result[f"ndcg_at_{k}"][name] = float(np.mean(dcg[counted] / best[counted])) if counted.any() else math.nan
            result[f"recall_at_{k}"][name] = (
                float(np.mean(hits[counted] / positives[counted])) if counted.any() else math.nan
            )
    result["notes"] = notes
    return result


def predicted_next_actions(
    probabilities: Any, expected_times: Any, start_action_id: int, threshold: float = 0.5, *, end_action_id: int
):
    """
    First action after start for models that do not generate: among the actions with P(happens) >= `threshold`
    and the end action (``end_action_id``, which always qualifies: a session ends), the one with the earliest
    expected time; `(n, V)` -> `(n,)` ids, never padding or start.
    """
    probabilities = _as_array(probabilities, "probabilities", np.float64, 2)
    times = _as_array(expected_times, "expected_times", np.float64, 2)
    for name, action_id in (("start_action_id", start_action_id), ("end_action_id", end_action_id)):
        if isinstance(action_id, bool) or not isinstance(action_id, numbers.Integral) or not 0 < action_id < probabilities.shape[1]:
            raise ValueError(f"{name}={action_id!r} must be an action id in [1, {probabilities.shape[1]}).")
    candidates = probabilities >= threshold
    candidates[:, end_action_id] = True
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
    top_k: int | Sequence[int] = DEFAULT_TOP_K,
    calibration_bins: int = DEFAULT_CALIBRATION_BINS,
) -> dict[str, Any]:
    """
    All metrics in the format of this module's docstring.

    Args:
        predictions: ``action_probabilities`` `(n, V)` and ``expected_times`` `(n, V)` (an
            :class:`~a2gen_hf.A2GenActionPrediction` works), optionally ``next_actions`` `(n,)` and the generated
            ``sequences`` / ``sequence_times`` `(n, L)`.
        references: ``labels``, ``label_times``, ``label_time_mask`` `(n, T)` (the collator's), optionally the
            simulator's ``oracle_action_prob`` / ``oracle_expected_seconds`` `(n, len(action_names))` and
            ``group_ids`` `(n,)` (the user or request of each example) for GAUC and NDCG@K / Recall@K.
        action_names / start_action / end_action: the vocabulary (the model config's).
        time_log_mean / time_log_std: the time statistics, to report seconds.
        zero_time_tolerance_seconds: occurrences at or below this many seconds count as "at 0 s".
        top_k: the cut-offs K of NDCG@K / Recall@K, one positive int or a sequence of them (checked even without
            group ids). calibration_bins: bins of the reliability tables, a positive int.
    """
    top_k, calibration_bins = _metric_options(top_k, calibration_bins, zero_time_tolerance_seconds)
    for name in ("action_probabilities", "expected_times"):
        if predictions.get(name) is None:
            raise ValueError(f"predictions need {name!r} (predict_actions returns it).")
    if references.get("labels") is None or references.get("label_times") is None:
        raise ValueError("references need 'labels' and 'label_times' (and 'label_time_mask'), as the collator builds.")
    vocabulary = dict(action_names=action_names, start_action=start_action, end_action=end_action)
    times = dict(time_log_mean=time_log_mean, time_log_std=time_log_std)
    raw_labels, label_times, label_time_mask = (
        references.get(key) for key in ("labels", "label_times", "label_time_mask")
    )
    labels = _ReadTargets(*action_targets(raw_labels, label_times, label_time_mask, len(action_names) + 1,
                                          _start(action_names, start_action, end_action)))
    parts = [
        action_auc(predictions["action_probabilities"], labels, **vocabulary),
        timing_mae(
            predictions["expected_times"], labels, label_times, label_time_mask, **vocabulary, **times,
            zero_time_tolerance_seconds=zero_time_tolerance_seconds,
        ),
        log_loss(predictions["action_probabilities"], labels, **vocabulary),
        calibration(predictions["action_probabilities"], labels, **vocabulary, num_bins=calibration_bins),
    ]
    if references.get("group_ids") is not None:
        parts.append(gauc(predictions["action_probabilities"], labels, references["group_ids"], **vocabulary))
        parts.append(
            ranking_at_k(predictions["action_probabilities"], labels, references["group_ids"], **vocabulary, top_k=top_k)
        )
    if predictions.get("next_actions") is not None:
        parts.append(next_action_accuracy(predictions["next_actions"], raw_labels))
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
    result: dict[str, Any] = {"num_examples": int(labels.occurs.shape[0])}
    notes: list[str] = []
    for part in parts:
        notes += part.pop("notes", [])
        result.update(part)
    result["notes"] = notes
    return result


def flatten_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """
    Scalar view for loggers, trackers, the Trainer and model cards: ``{"auc": {"like": v}}`` -> ``{"auc_like": v}``.
    Counts (:data:`COUNT_KEYS` and ``ranking_groups_over_K``, :func:`is_count_key`), :data:`DETAIL_KEYS` (the ``reliability`` tables, ``predicted_rate`` and
    ``observed_rate``) and ``notes`` are left out.
    """
    flat: dict[str, float] = {}
    for key, value in result.items():
        if is_count_key(key) or key in DETAIL_KEYS:
            continue
        if isinstance(value, Mapping):
            flat.update(
                {f"{key}_{name}": float(inner) for name, inner in value.items()
                 if isinstance(inner, (int, float)) and not isinstance(inner, bool)}
            )
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[key] = float(value)
    return flat
