"""
The one home of the rank statistics behind every AUC of the package: mid-ranks, the AUC (Mann-Whitney, ties counted
one half, equal to ``sklearn.metrics.roc_auc_score`` up to floating rounding), the AUC inside every group (GAUC), and
the check that labels hold both classes.

- :func:`midranks`: 1-based ranks, ties given their mean rank, over all examples or inside each group;
- :func:`auc_from_rank_sums`: the AUC from the positives' rank sum (exact: a rank sum is a sum of half-integers, so
  equal AUCs come out exactly equal);
- :func:`auc`: one AUC, NaN where the labels hold one class only; :func:`group_aucs`: the AUC of each group;
- :func:`has_both_classes`: whether labels hold a positive and a negative;
- :func:`tensor_as_numpy` / :func:`as_numpy`: the one conversion of a tensor (any device, bfloat16 too) to numpy that
  every metric reads its inputs through; :func:`finite_scores`: scores as float64, NaN / inf refused (the one check,
  for :func:`auc`, :func:`group_aucs` and the bootstrap).

The bootstrap's multiplicity form (every resample a vector of example weights) is
:func:`a2gen_hf.training.statistics.weighted_auc`; DeLong's test (:func:`~a2gen_hf.training.statistics.delong_auc_difference`)
builds on :func:`midranks`. The data package cannot import this one (data sits below metrics), so the simulator's
oracle AUC stays with scikit-learn.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch


def tensor_as_numpy(values: torch.Tensor) -> np.ndarray:
    """A tensor on any device as a numpy array; bfloat16, which numpy has not, as float32 (exactly)."""
    values = values.detach().cpu()
    return (values.float() if values.dtype == torch.bfloat16 else values).numpy()


def as_numpy(values: Any) -> Any:
    """`values` with a tensor read through :func:`tensor_as_numpy` (before, ``np.asarray`` of a bfloat16 tensor failed
    with "Got unsupported ScalarType BFloat16"); anything else as given."""
    return tensor_as_numpy(values) if isinstance(values, torch.Tensor) else values


def finite_scores(scores: Any, name: str = "scores", size: int | None = None, what: str = "labels") -> np.ndarray:
    """`scores` (a list, an array or a tensor, bfloat16 too) as float64 `(n,)`; refused where they hold NaN or inf, or
    (with ``size``) where there are not ``size`` of them, one per entry of ``what``."""
    values = np.asarray(as_numpy(scores), dtype=np.float64).reshape(-1)
    if size is not None and values.size != size:
        raise ValueError(f"{name} has {values.size} entries for {size} {what}; pass one score per example.")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} holds NaN or inf; every score must be finite.")
    return values


def has_both_classes(labels: Any) -> bool:
    """Whether 0/1 `labels` `(n,)` hold at least one positive and one negative: the AUC and its bootstrap need both."""
    array = np.asarray(as_numpy(labels)).reshape(-1).astype(bool)
    return bool(array.any() and not array.all())


def midranks(scores: Any, groups: Any | None = None) -> np.ndarray:
    """
    1-based ranks of `scores` `(n,)`, ties given their mean rank (``scipy.stats.rankdata``'s "average"), as float64
    `(n,)` in the order of `scores`.

    Args:
        groups: None (rank all examples together), or `(n,)` integer group numbers: rank inside each group (every group
            starting at rank 1).
    """
    scores = np.asarray(as_numpy(scores), dtype=np.float64).reshape(-1)
    size = scores.size
    if not size:
        return np.zeros(0)
    if groups is None:
        order = np.argsort(scores, kind="stable")
        ordered = scores[order]
        new_tie = np.r_[True, ordered[1:] != ordered[:-1]]
        position = None  # the 0-based rank inside the one group is the sorted position
    else:
        groups = np.asarray(as_numpy(groups)).reshape(-1)
        if groups.size != size:
            raise ValueError(f"groups has {groups.size} entries for {size} scores; pass one group per example.")
        order = np.lexsort((scores, groups))  # by group, then score
        group, ordered = groups[order], scores[order]
        new_group = np.r_[True, group[1:] != group[:-1]]
        position = np.arange(size) - np.flatnonzero(new_group)[np.cumsum(new_group) - 1]
        new_tie = new_group | np.r_[True, ordered[1:] != ordered[:-1]]  # a group's first example starts a tie group
    tie_first = np.flatnonzero(new_tie)
    tie_end = np.r_[tie_first[1:], size]  # one past each tie group's last
    if position is None:
        means = (tie_first + 1 + tie_end) / 2.0
    else:
        means = (position[tie_first] + 1 + position[tie_end - 1] + 1) / 2.0
    ranks = np.empty(size)
    ranks[order] = np.repeat(means, tie_end - tie_first)
    return ranks


def auc_from_rank_sums(rank_sums: Any, positives: Any, negatives: Any) -> Any:
    """The AUC (Mann-Whitney U over positives x negatives) from the positives' mid-rank sum and the class counts,
    elementwise; NaN (with no warning) where a class is empty."""
    rank_sums, positives, negatives = (np.asarray(value, dtype=np.float64) for value in (rank_sums, positives, negatives))
    with np.errstate(divide="ignore", invalid="ignore"):
        aucs = (rank_sums - positives * (positives + 1) / 2) / (positives * negatives)
    return np.where((positives == 0) | (negatives == 0), math.nan, aucs)


def _labels_and_scores(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    array = np.asarray(as_numpy(labels)).reshape(-1)
    if array.dtype != bool:
        if not np.isin(array, (0, 1)).all():
            raise ValueError(f"labels must be 0/1 (or bool) per example, got the values {np.unique(array)[:10].tolist()}.")
        array = array.astype(bool)
    return array, finite_scores(scores, size=array.size)


def auc(labels: Any, scores: Any) -> float:
    """
    AUC of `scores` `(n,)` for 0/1 (or bool) `labels` `(n,)`: P(score of a positive > score of a negative) + 1/2
    P(equal), as ``sklearn.metrics.roc_auc_score`` (up to floating rounding). NaN where the labels hold one class only
    (scikit-learn raises); non-finite scores are refused.
    """
    labels, scores = _labels_and_scores(labels, scores)
    positives = int(np.count_nonzero(labels))
    if positives in (0, labels.size):
        return math.nan
    rank_sum = midranks(scores)[labels].sum()
    return float(auc_from_rank_sums(rank_sum, positives, labels.size - positives))


def _dense_groups(groups: Any, size: int) -> np.ndarray:
    """`(n,)` group ids -> dense numbers 0 .. G - 1. Integer ids that already are 0 .. G - 1, every number used (what
    :func:`group_numbers` returns), are kept as they are; any other ids (strings,
    gaps, negative or huge integers) are numbered by ``group_numbers``, the one reading of group ids (before, the
    largest id sized the count arrays: an id of 10**11 asked for 745 GiB, a negative one failed in numpy)."""
    array = np.asarray(as_numpy(groups))
    if array.ndim == 1 and array.size == size and array.dtype.kind in "iu" and size:
        low, high = int(array.min()), int(array.max())
        if low == 0 and high < size and np.bincount(array, minlength=high + 1).all():
            return array.astype(np.int64, copy=False)
    return group_numbers(groups, size, name="groups")


def group_aucs(occurs: Any, scores: Any, groups: Any) -> tuple[np.ndarray, np.ndarray]:
    """
    AUC of `scores` `(n,)` for the bool `occurs` `(n,)` inside every group, ties counted one half (Mann-Whitney).
    Scores are checked as :func:`auc` checks them (:func:`finite_scores`: NaN and inf refused).

    Args:
        groups: `(n,)` group ids: dense numbers 0..G-1 (see ``np.unique(..., return_inverse=True)``) are used as they
            are; any other ids (strings, integers with gaps, negative or large ones) are numbered 0..G-1 in sorted
            order first, as :func:`group_numbers` reads them (None and NaN refused).

    Returns:
        aucs `(G,)` (NaN for a group with a single class) and sizes `(G,)` (the group's number of examples), group
        ``g`` being the ``g``-th id in sorted order.
    """
    occurs = np.asarray(as_numpy(occurs), dtype=bool).reshape(-1)
    scores = finite_scores(scores, size=occurs.size, what="entries of occurs")
    if not occurs.size:
        if np.asarray(as_numpy(groups)).size:
            raise ValueError(f"groups has {np.asarray(as_numpy(groups)).size} entries for 0 examples.")
        return np.zeros(0), np.zeros(0)
    groups = _dense_groups(groups, occurs.size)
    num_groups = int(groups.max()) + 1
    ranks = midranks(scores, groups)
    sizes = np.bincount(groups, minlength=num_groups).astype(np.float64)
    positives = np.bincount(groups, weights=occurs, minlength=num_groups)
    rank_sums = np.bincount(groups, weights=ranks * occurs, minlength=num_groups)
    return auc_from_rank_sums(rank_sums, positives, sizes - positives), sizes


def _first_bad(array: np.ndarray, bad: np.ndarray, name: str) -> str:
    """``name[i, j] is v`` for the first entry of `array` where the bool `bad` is set."""
    position = np.unravel_index(int(np.argmax(bad)), array.shape)
    return f"{name}[{', '.join(str(index) for index in position)}] is {array[position]}"


def _missing_groups(groups: np.ndarray) -> np.ndarray:
    """Where `groups` holds None or NaN (no group)."""
    if groups.dtype.kind in "fc":
        return np.isnan(groups)
    if groups.dtype.kind == "O":
        return np.fromiter(
            (value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)) for value in groups),
            dtype=bool, count=groups.size,
        )
    return np.zeros(groups.shape, dtype=bool)


def _group_key(value: Any) -> tuple[str, Any]:
    """What makes two ids one group: equal numbers (1, 1.0 and numpy's 1) are one, a number and its text ("1") are
    not."""
    if isinstance(value, str):
        return "text", value
    if isinstance(value, bytes):
        return "bytes", value
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return "number", value
    return type(value).__name__, value


def _floats_merge_integers(values: list) -> bool:
    """Whether numbers ``values`` mix floats with integers that float64 cannot hold exactly (beyond 2**53), which
    ``np.asarray`` would turn into one float array."""
    if not any(isinstance(value, (float, np.floating)) for value in values):
        return False
    return any(isinstance(value, (int, np.integer)) and not isinstance(value, bool) and abs(int(value)) > 2**53
               for value in values)  # fmt: skip


def group_numbers(group_ids: Any, size: int, name: str = "group_ids") -> np.ndarray:
    """
    `(n,)` group ids (user or request ids: integers, strings, a tensor or array of them) -> `(n,)` dense group numbers
    0 .. G - 1, the same for the same ids however they are passed (a list, an array, a tensor). Numbered in sorted
    order where the ids are of one kind, else in order of first appearance; a number and its text (``1`` and
    ``"1"``) are different groups. None and NaN are refused, naming the first such entry. The one reading of group
    ids: GAUC, NDCG@K / Recall@K and the bootstrap over users (:mod:`a2gen_hf.training.statistics`).
    """
    if isinstance(group_ids, torch.Tensor):
        group_ids = tensor_as_numpy(group_ids)  # bfloat16 too (before: "Got unsupported ScalarType BFloat16")
    if not isinstance(group_ids, np.ndarray) or group_ids.dtype == object:
        values = group_ids.tolist() if isinstance(group_ids, np.ndarray) else list(group_ids)
        kinds = {_group_key(value)[0] for value in values}
        # One kind: numpy's own array (sorted, fast); mixed kinds: objects, so that 1 and "1" are not made one text.
        # (None is a kind of its own, and NaN a number: the check below refuses both.)
        # So do integers beyond 2**53 beside floats, which float64 would merge (2**62 and 2**62 + 1).
        one_array = len(kinds) <= 1 and not _floats_merge_integers(values)
        group_ids = np.asarray(values) if one_array else np.asarray(values, dtype=object)
    groups = group_ids
    if groups.ndim != 1 or groups.shape[0] != size:
        raise ValueError(
            f"{name} has shape {groups.shape}; pass one group id (user or request) per example, ({size},)."
        )
    missing = _missing_groups(groups)
    if missing.any():
        position = int(np.argmax(missing))
        value = groups[position : position + 1].tolist()[0]  # None or a plain float nan, as the caller wrote it
        raise ValueError(
            f"{name}[{position}] is {value!r}; every example needs a group id (the user or request it belongs to): "
            "drop the examples without one, or give each of them an id of its own."
        )
    if groups.dtype.kind == "f" and not np.isfinite(groups).all():
        raise ValueError(f"{_first_bad(groups, ~np.isfinite(groups), name)}; a group id must be finite.")
    if groups.dtype.kind != "O":
        return np.unique(groups, return_inverse=True)[1].reshape(-1).astype(np.int64, copy=False)
    numbers_of: dict[tuple[str, Any], int] = {}
    return np.fromiter((numbers_of.setdefault(_group_key(value), len(numbers_of)) for value in groups), np.int64, size)
