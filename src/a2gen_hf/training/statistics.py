"""
Statistics for honest model comparisons: mean and spread over seeds, and paired bootstrap tests of AUC differences.

The bootstrap resamples examples, stratified by class (positives and negatives separately, with replacement, each
class keeping its size, as pROC does by default), so that every resample has an AUC even for a rare action; or,
given each example's group (its user), whole groups: a user's examples share the user's habits, so they are not
independent draws, and resampling them one by one gives intervals too narrow (on the Taobao sample's test split
1.2-1.35 times narrower; with per-user model errors, an example bootstrap called equal AUCs different in 16.5 % of
200 simulated cases at a nominal 5 %, the user bootstrap in 7 %: ``benchmarks/bootstrap_false_alarms.py``).
Groups are stratified by the classes they hold (positives only, negatives only, both; each stratum keeping its
size), so every resample holds both classes. Both models are scored on the same resamples (paired), which cancels
the variation the two share. A difference is called significant when its 95 % percentile interval excludes 0 (where
the users are known, only where at least :data:`MIN_CLASS_GROUPS` users hold each class, whatever was resampled:
:func:`too_few_class_groups`).

AUCs are computed from rank statistics with ties counted one half (equal to ``sklearn.metrics.roc_auc_score``), on
weighted examples: a resample is a vector of per-example multiplicities, so all resamples are scored at once
(:func:`weighted_auc`, the multiplicity form of :func:`a2gen_hf.metrics.auc.auc`, the package's one AUC; DeLong's test
uses its :func:`~a2gen_hf.metrics.auc.midranks`, and :func:`has_both_classes` lives there too).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from ..metrics.auc import as_numpy, auc_from_rank_sums, finite_scores, group_numbers, has_both_classes, midranks

NO_DIFFERENCE = "no significant difference"
# The verdict where an interval cannot be computed (the split holds one class of the action only).
UNDEFINED = "undefined: one class only"
# Resamples scored per block, at most: bounds the memory of the (block, n) multiplicity matrices ...
_BLOCK = 128
# ... and at most this many entries per matrix (fewer resamples per block for large n: weighted_auc holds several
# such float64 matrices at once, which at 128 resamples of a million examples came to some 9 GB). Up to 65,536
# examples the blocks stay 128 resamples, so the resamples drawn (and every interval) are as before.
_BLOCK_ENTRIES = 1 << 23


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """
    Mean and sample standard deviation (``ddof=1``) of e.g. one metric over seeds.

    The standard deviation of a single value is NaN (a spread needs two runs); NaN values propagate.
    """
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError("mean_std got no values; pass at least one (e.g. one metric per seed).")
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else math.nan


def _binary_labels(labels: Any) -> np.ndarray:
    array = np.asarray(as_numpy(labels)).reshape(-1)
    if not np.isin(array, (0, 1)).all():
        raise ValueError(f"labels must be 0/1 (or bool) per example, got the values {np.unique(array)[:10].tolist()}.")
    array = array.astype(bool)
    if not has_both_classes(array):
        raise ValueError(
            f"The AUC needs both classes, but {int(array.sum())} of {array.size} labels are positive; a bootstrap "
            "of it is undefined."
        )
    return array


def _scores(scores: Any, name: str, size: int) -> np.ndarray:
    """A scorer's `(n,)` scores, read and checked as every AUC of the package reads them
    (:func:`~a2gen_hf.metrics.auc.finite_scores`: tensors of any dtype, bfloat16 too; NaN / inf refused)."""
    return finite_scores(scores, name, size)


def weighted_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """
    AUC of `scores` `(n,)` for bool `labels` `(n,)` under example multiplicities `weights` `(R, n)` -> `(R,)`.

    P(score of a positive > score of a negative) + 1/2 P(equal), each example counted `weights` times: with all
    weights 1 it is :func:`a2gen_hf.metrics.auc.auc` (kept apart because it scores every resample of a block at once).
    """
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    group_starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])  # groups of tied scores
    positive = labels[order]
    ordered = weights[:, order]
    positives = np.add.reduceat(ordered * positive, group_starts, axis=1)  # (R, G)
    negatives = np.add.reduceat(ordered * ~positive, group_starts, axis=1)
    negatives_below = np.cumsum(negatives, axis=1) - negatives
    wins = (positives * (negatives_below + 0.5 * negatives)).sum(axis=1)
    return wins / (positives.sum(axis=1) * negatives.sum(axis=1))


def _stratified_multiplicities(strata: list[np.ndarray], size: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """`(block, size)` counts: each of `block` resamples draws every stratum's size from that stratum (indices into
    `size` units), with replacement."""
    offsets = (np.arange(block) * size)[:, None]
    drawn = np.concatenate([members[rng.integers(0, members.size, size=(block, members.size))] for members in strata], axis=1)
    return np.bincount((drawn + offsets).ravel(), minlength=block * size).reshape(block, size)


# Fewer groups than this give a bootstrap of a handful of distinct resamples (one group: an interval of width 0).
MIN_GROUPS = 20
# Fewer users than this holding an action's positives (or its negatives) give a user-bootstrap interval far too
# narrow: what varies from user to user cannot be resampled from a few users. Coverage of the true difference by the
# 95 % interval, simulated (60 users of 20 examples, the positives held by k of them;
# benchmarks/bootstrap_few_positive_users.py, 150 cases each, so +/- 2-4 points): k = 1: 19 %, 2: 64 %, 4: 85 %,
# 6: 91 %, 8: 87 %, 10: 91 %, 12: 91 %, 16: 96 %, 24: 94 %; with many users holding both classes 92-95 %. Most of the
# loss is below 10 (catastrophic at 1-2). Such a row keeps its interval, but no verdict.
MIN_CLASS_GROUPS = 10
# A 95 % percentile interval from fewer resamples than this has the extreme resamples for its 2.5 % and 97.5 % points
# (1 / 0.025 = 40); a comparison refuses fewer.
MIN_RESAMPLES = 40


def _group_index(groups: Any, size: int) -> np.ndarray:
    """Each example's group `(n,)` (users: a list, an array or a tensor of ids) -> dense indices 0 .. G - 1, read as
    every metric reads group ids (:func:`~a2gen_hf.metrics.auc.group_numbers`: ``1`` and ``"1"`` are
    different groups, None and NaN are refused); fewer than :data:`MIN_GROUPS` groups are refused."""
    index = group_numbers(groups.reshape(-1) if isinstance(groups, np.ndarray) else groups, size, name="groups")
    count = int(index.max()) + 1 if index.size else 0
    if count < MIN_GROUPS:
        raise ValueError(
            f"groups holds {count} distinct group(s): a bootstrap over fewer than {MIN_GROUPS} users draws a handful of "
            "distinct resamples (one user: an interval of width 0); resample examples instead (groups=None; "
            "a2gen compare --bootstrap-unit examples)."
        )
    return index


def class_group_counts(labels: Any, groups: Any) -> dict[str, int]:
    """``{"positive_users": .., "negative_users": ..}``: how many groups (users) of `(n,)` ``groups`` hold a positive
    and how many a negative of 0/1 `(n,)` ``labels`` (a user can count on both sides)."""
    array = np.asarray(as_numpy(labels)).reshape(-1).astype(bool)
    units = group_numbers(groups.reshape(-1) if isinstance(groups, np.ndarray) else groups, array.size, name="groups")
    return {"positive_users": int(np.unique(units[array]).size), "negative_users": int(np.unique(units[~array]).size)}


def too_few_class_groups(row: dict[str, Any]) -> str | None:
    """Why a bootstrap row gets no verdict (its ``positive_users`` / ``negative_users`` below
    :data:`MIN_CLASS_GROUPS`), or None (enough users, or a row without such counts: examples without user ids, or a
    report written before rows resampling examples counted them). The rule holds whatever was resampled: what varies
    from user to user cannot be measured on a few users, and resampling their examples one by one is worse still."""
    short = [f"{row[key]} user(s) hold its {side}" for key, side in (("positive_users", "positives"),
             ("negative_users", "negatives")) if row.get(key) is not None and row[key] < MIN_CLASS_GROUPS]  # fmt: skip
    if not short:
        return None
    return (f"no verdict: {' and '.join(short)}, fewer than {MIN_CLASS_GROUPS}, so the interval is too narrow to "
            "call")


def bootstrap_aucs(
    labels: Any, scores: Sequence[Any], num_resamples: int = 1000, seed: int = 0, groups: Any | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """
    AUCs of several scorers on the full sample and on the same stratified bootstrap resamples.

    Args:
        labels: `(n,)` 0/1. scores: k score vectors `(n,)`. groups: `(n,)` each example's group (its user), or None.
            With groups, whole groups are resampled (stratified by the classes each holds; at least
            :data:`MIN_GROUPS` groups); without,
            examples (stratified by class).

    Returns:
        full `(k,)` and resampled `(num_resamples, k)` AUCs.
    """
    if num_resamples < 1:
        raise ValueError(f"num_resamples={num_resamples} must be >= 1.")
    labels = _binary_labels(labels)
    scores = [_scores(values, f"scores[{index}]", labels.size) for index, values in enumerate(scores)]
    full = np.array([weighted_auc(labels, values, np.ones((1, labels.size)))[0] for values in scores])
    rng = np.random.default_rng(seed)
    if groups is None:
        units, strata = None, [np.flatnonzero(labels), np.flatnonzero(~labels)]
    else:
        # Groups stratified by which classes they hold (positives only, negatives only, both), each stratum keeping its
        # size: every resample then holds both classes, with no resample drawn again.
        units = _group_index(groups, labels.size)
        has_positive = np.bincount(units, weights=labels) > 0
        has_negative = np.bincount(units, weights=~labels) > 0
        kinds = has_positive.astype(np.int64) * 2 + has_negative
        strata = [members for kind in (1, 2, 3) if (members := np.flatnonzero(kinds == kind)).size]
    resampled = np.empty((num_resamples, len(scores)))
    per_block = max(1, min(_BLOCK, _BLOCK_ENTRIES // labels.size))
    for start in range(0, num_resamples, per_block):
        block = min(per_block, num_resamples - start)
        if units is None:
            weights = _stratified_multiplicities(strata, labels.size, block, rng)
        else:  # a group's multiplicity given to each of its examples
            weights = _stratified_multiplicities(strata, kinds.size, block, rng)[:, units]
        for index, values in enumerate(scores):
            resampled[start : start + block, index] = weighted_auc(labels, values, weights)
    return full, resampled


# The confidence of the interval a comparison reports; its p-value is compared with 1 minus it.
CONFIDENCE = Fraction(95, 100)


def _sorted_differences(resampled: Any) -> np.ndarray:
    values = np.sort(np.asarray(resampled, dtype=np.float64).reshape(-1))
    if not values.size:
        raise ValueError("resampled holds no value; pass the resampled differences (at least one).")
    if not np.isfinite(values).all():
        raise ValueError("resampled holds NaN or inf; every resampled difference must be finite.")
    return values


def _interpolated(values: np.ndarray, level: Fraction) -> float:
    """``np.percentile(values, 100 * level)`` (linear interpolation between the sorted ``values`` `(R,)`) computed
    exactly in rationals and rounded once to the nearest float: its sign is the exact one (np.percentile's rounding
    could give -1.4e-15 where the exact value is 0 or above), otherwise it may differ from np.percentile by an ulp."""
    position = level * (values.size - 1)
    index = math.floor(position)
    fraction = position - index
    if fraction == 0:
        return float(values[index])
    below, above = Fraction(float(values[index])), Fraction(float(values[index + 1]))
    return float(below + fraction * (above - below))


def percentile_interval(resampled: Any, confidence: float | Fraction = CONFIDENCE) -> tuple[float, float]:
    """
    The ``confidence`` percentile interval of `(R,)` resampled differences: the ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` quantiles by ``np.percentile``'s linear interpolation, computed exactly from the sorted
    resamples and rounded once (:func:`_interpolated`), so that whether it excludes 0 is exact and agrees with
    :func:`percentile_p_value` (``confidence`` is read as the decimal it is written as: 0.95 is 19/20).
    """
    confidence = Fraction(confidence).limit_denominator(10**9)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={float(confidence)} must lie strictly between 0 and 1 (e.g. 0.95).")
    values = _sorted_differences(resampled)
    return _interpolated(values, (1 - confidence) / 2), _interpolated(values, (1 + confidence) / 2)


# The levels a p-value is usually compared with: at these, the float p-value is kept on the exact side of the level.
_USUAL_LEVELS = (Fraction(1, 10), Fraction(1, 20), Fraction(1, 100))


def percentile_p_value(resampled: np.ndarray) -> float:
    """
    The two-sided p-value of 0 under the percentile interval of `(R,)` resampled differences: ``2 * min(t, 1 - t)``
    where ``t`` is the quantile level at which the linear interpolation of the sorted resamples (``np.percentile``'s)
    reaches 0, the level within the levels where it equals 0 closest to one half (all resamples 0: p = 1), 0 where
    every resample lies on one side of 0. Computed exactly in rationals from the same sorted resamples and the same
    rule as :func:`percentile_interval`, so the (1 - a) percentile interval excludes 0 exactly when p < a: the 95 %
    interval's verdict and ``p < 0.05`` never disagree (the former +1-smoothed share of resamples beyond 0 did, at
    the margin: an interval excluding 0 with p = 0.052; and np.percentile's float rounding once gave an upper bound
    of -1.4e-15 beside p = 0.05000000000000004). The exact p is rounded once to a float; where it lies below 0.1,
    0.05 or 0.01 by less than that rounding, the float is kept just below the level too.
    """
    values = _sorted_differences(resampled)
    count = values.size
    if values[0] > 0 or values[-1] < 0:
        return 0.0
    if count == 1:  # the one resample is 0
        return 1.0

    def level_of(index: int) -> Fraction:
        return Fraction(index, count - 1)

    def crossing(index: int) -> Fraction:
        """The level between sorted positions ``index`` and ``index + 1`` at which the interpolation reaches 0."""
        below, above = Fraction(float(values[index])), Fraction(float(values[index + 1]))
        return (index + (0 - below) / (above - below)) / (count - 1)

    first = int(np.searchsorted(values, 0.0, side="left"))  # the first value >= 0
    last = int(np.searchsorted(values, 0.0, side="right")) - 1  # the last value <= 0
    lowest = level_of(first) if values[first] == 0 or first == 0 else crossing(first - 1)
    highest = level_of(last) if values[last] == 0 or last == count - 1 else crossing(last)
    level = min(max(Fraction(1, 2), lowest), highest)
    exact = min(Fraction(1), 2 * min(level, 1 - level))
    p_value = float(exact)
    for usual in _USUAL_LEVELS:
        if exact < usual and not p_value < float(usual):
            p_value = math.nextafter(float(usual), 0.0)
    return p_value


def _difference_summary(full: float, resampled: np.ndarray) -> dict[str, float]:
    """Point difference, 95 % percentile interval (:func:`percentile_interval`) and two-sided bootstrap p-value
    (:func:`percentile_p_value`) of resampled differences, both from the same sorted resamples by the same rule."""
    low, high = percentile_interval(resampled)
    return {"difference": float(full), "low": low, "high": high, "p_value": percentile_p_value(resampled)}


def undefined_auc_difference(labels: Any) -> dict[str, float]:
    """
    The row of :func:`paired_bootstrap_auc_difference` for `labels` `(n,)` with one class only (e.g. no buy in a
    small log's test split): every figure NaN, the counts kept so that a report can say why.
    """
    array = np.asarray(labels).reshape(-1).astype(bool)
    return {
        **dict.fromkeys(("difference", "low", "high", "p_value", "auc_a", "auc_b"), math.nan),
        "positives": int(array.sum()), "examples": int(array.size),
    }


def paired_bootstrap_auc_difference(
    labels: Any, scores_a: Any, scores_b: Any, num_resamples: int = 1000, seed: int = 0, groups: Any | None = None
) -> dict[str, float]:
    """
    AUC(a) - AUC(b) on the same examples, with a 95 % paired, stratified bootstrap percentile interval.

    Args:
        labels: `(n,)` 0/1, the action happens. scores_a / scores_b: `(n,)` the two models' scores. groups: `(n,)`
            each example's user (resample users, :func:`bootstrap_aucs`), or None (resample examples).

    Returns:
        ``{"difference", "low", "high", "p_value", "auc_a", "auc_b"}``, with groups also ``"positive_users"`` and
        ``"negative_users"`` (:func:`class_group_counts`: below :data:`MIN_CLASS_GROUPS` the interval is too narrow
        to call, :func:`too_few_class_groups`); ``p_value`` is two-sided, the level at which the percentile interval
        reaches 0 (:func:`percentile_p_value`: the 95 % interval excludes 0 exactly when it is below 0.05).
    """
    full, resampled = bootstrap_aucs(labels, [scores_a, scores_b], num_resamples, seed, groups)
    summary = _difference_summary(full[0] - full[1], resampled[:, 0] - resampled[:, 1])
    counts = class_group_counts(labels, groups) if groups is not None else {}
    return {**summary, "auc_a": float(full[0]), "auc_b": float(full[1]), **counts}


def delong_auc_difference(labels: Any, scores_a: Any, scores_b: Any) -> tuple[float, float]:
    """
    AUC(a) - AUC(b) on the same examples and its standard error by DeLong's method (DeLong, DeLong and
    Clarke-Pearson 1988, in the fast form of Sun and Xu 2014): the variance of the paired difference from each
    positive's and each negative's share of the two AUCs, without resampling.

    Args:
        labels: `(n,)` 0/1, both classes present. scores_a / scores_b: `(n,)` the two models' scores.

    Returns:
        ``(difference, standard_error)``; the error is ``inf`` where a class has a single example (no variance to
        estimate) and 0 where the two scores rank every pair alike.
    """
    labels = _binary_labels(labels)
    scores = np.stack([_scores(scores_a, "scores_a", labels.size), _scores(scores_b, "scores_b", labels.size)])
    positives, negatives = scores[:, labels], scores[:, ~labels]
    m, n = positives.shape[1], negatives.shape[1]
    overall = np.stack([midranks(row) for row in np.concatenate([positives, negatives], axis=1)])
    within_positives = np.stack([midranks(row) for row in positives])
    within_negatives = np.stack([midranks(row) for row in negatives])
    aucs = auc_from_rank_sums(overall[:, :m].sum(axis=1), m, n)
    difference = float(aucs[0] - aucs[1])
    if m < 2 or n < 2:
        return difference, math.inf
    # Each positive's share: the fraction of negatives it outranks; each negative's: of positives outranking it.
    positive_shares = (overall[:, :m] - within_positives) / n
    negative_shares = 1.0 - (overall[:, m:] - within_negatives) / m
    covariance = np.cov(positive_shares) / m + np.cov(negative_shares) / n
    variance = covariance[0, 0] + covariance[1, 1] - 2.0 * covariance[0, 1]
    return difference, math.sqrt(max(float(variance), 0.0))


def clearly_higher_auc(labels: Any, scores: Any, reference: Any, z: float) -> bool:
    """
    Whether ``scores`` rank ``labels`` `(n,)` better than ``reference`` by more than ``z`` standard errors of the
    paired AUC difference (:func:`delong_auc_difference`); ``z = 0`` asks only that the AUC be higher. A rule for
    keeping what a model adds to a simpler one by a gain on a small validation split: with ``z`` = 1.645 (one-sided 95
    %) a gain of the size a few dozen positives give by chance is not taken for one.
    """
    if not (math.isfinite(z) and z >= 0):
        raise ValueError(f"z={z} must be a finite number >= 0 (standard errors; 0: any gain counts).")
    difference, error = delong_auc_difference(labels, scores, reference)
    if z == 0:
        return difference > 0
    return difference > z * error


def significance_label(low: float, high: float, name_a: str = "A", name_b: str = "B") -> str:
    """
    The verdict of a 95 % interval of ``A - B``, named after the models: ``"<name_a> better"`` (all above 0, e.g.
    "A2Gen-IAG better"), ``"<name_b> better"`` (all below), or "no significant difference"; :data:`UNDEFINED` for
    the NaN interval of :func:`undefined_auc_difference`.
    """
    if math.isnan(low) or math.isnan(high):
        return UNDEFINED
    if low > high:
        raise ValueError(f"The interval [{low}, {high}] is reversed; pass low <= high.")
    if low > 0:
        return f"{name_a} better"
    if high < 0:
        return f"{name_b} better"
    return NO_DIFFERENCE
