"""metrics.auc is the one home of mid-ranks, the AUC and the both-classes check: it agrees with scikit-learn and
scipy on ties, weights and groups, and the bootstrap, DeLong, GAUC and the action metrics agree with it."""

import math

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from a2gen_hf.metrics import action_metrics
from a2gen_hf.metrics.auc import auc, auc_from_rank_sums, group_aucs, has_both_classes, midranks
from a2gen_hf.training import residual_fit, statistics


def _cases(count=60, seed=0):
    """Random (labels, scores, dense groups): few to many distinct scores (ties), rare to common positives."""
    rng = np.random.default_rng(seed)
    for trial in range(count):
        n = int(rng.integers(2, 1500))
        levels = int(rng.choice([2, 5, 40, 0]))
        scores = rng.integers(0, levels, n) / levels if levels else rng.random(n)
        if trial % 5 == 0:
            scores = scores.astype(np.float32)
        labels = rng.random(n) < rng.choice([0.02, 0.2, 0.5, 0.95])
        groups = np.unique(rng.integers(0, int(rng.integers(1, 40)), n), return_inverse=True)[1]
        yield labels, scores, groups


def test_midranks_equal_scipy_rankdata_overall_and_inside_groups():
    for _, scores, groups in _cases():
        assert np.array_equal(midranks(scores), rankdata(scores))
        ranks = midranks(scores, groups)
        for group in np.unique(groups):
            assert np.array_equal(ranks[groups == group], rankdata(scores[groups == group]))
    assert midranks([]).shape == (0,) and midranks([], []).shape == (0,)
    with pytest.raises(ValueError, match="one group per example"):
        midranks([0.1, 0.2], [0])


def test_auc_equals_sklearn_with_ties_and_group_aucs_with_one_group():
    for labels, scores, _ in _cases():
        if not has_both_classes(labels):
            assert math.isnan(auc(labels, scores))
            continue
        value = auc(labels, scores)
        assert value == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        assert value == group_aucs(labels, scores, np.zeros(labels.size, dtype=np.int64))[0][0]
        assert auc(labels.astype(int), scores) == value


def test_auc_is_exact_so_equal_aucs_are_equal():
    rng = np.random.default_rng(3)
    labels = rng.random(5000) < 0.1
    scores = rng.integers(0, 50, 5000) / 50
    # a monotone transform ranks alike: the rank sum is exact, so the AUC is the same float, not merely close
    assert auc(labels, scores) == auc(labels, np.exp(3 * scores) - 7)
    assert float(auc_from_rank_sums(3.0, 2, 2)) == 0.0 and math.isnan(float(auc_from_rank_sums(1.0, 1, 0)))


def test_auc_refuses_what_sklearn_refuses():
    with pytest.raises(ValueError, match="finite"):
        auc([0, 1], [0.1, math.nan])
    with pytest.raises(ValueError, match="0/1"):
        auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="one score per example"):
        auc([0, 1, 1], [0.1, 0.2])
    assert math.isnan(auc([1, 1], [0.1, 0.2])) and math.isnan(auc([], []))


def test_group_aucs_equal_sklearn_per_group():
    for labels, scores, groups in _cases(count=20, seed=1):
        aucs, sizes = group_aucs(labels, scores, groups)
        for group in range(groups.max() + 1):
            inside = groups == group
            assert sizes[group] == inside.sum()
            if has_both_classes(labels[inside]):
                assert aucs[group] == pytest.approx(roc_auc_score(labels[inside], scores[inside]), abs=1e-12)
            else:
                assert math.isnan(aucs[group])


def test_weighted_auc_is_the_multiplicity_form_of_auc():
    rng = np.random.default_rng(2)
    for labels, scores, _ in _cases(count=30, seed=2):
        if not has_both_classes(labels):
            continue
        values = scores.astype(np.float64)
        assert statistics.weighted_auc(labels, values, np.ones((1, labels.size)))[0] == pytest.approx(
            auc(labels, scores), abs=1e-12
        )
        weights = rng.integers(0, 3, (3, labels.size))
        weights[:, np.flatnonzero(labels)[0]] += 1
        weights[:, np.flatnonzero(~labels)[0]] += 1
        for row in weights:
            repeated = np.repeat(np.arange(labels.size), row)
            expected = auc(labels[repeated], values[repeated])
            assert statistics.weighted_auc(labels, values, row[None, :])[0] == pytest.approx(expected, abs=1e-12)


def test_delong_gauc_and_action_metrics_build_on_the_one_auc():
    rng = np.random.default_rng(4)
    labels = rng.random(2000) < 0.15
    a = np.round(rng.random(2000) + 0.3 * labels, 2)
    b = np.round(rng.random(2000) + 0.1 * labels, 2)
    difference, error = statistics.delong_auc_difference(labels, a, b)
    assert difference == pytest.approx(auc(labels, a) - auc(labels, b), abs=1e-12) and error > 0
    notes = []
    assert action_metrics._auc(labels, a, "auc[like]", notes) == auc(labels, a) and not notes
    assert math.isnan(action_metrics._auc(np.zeros(3, dtype=bool), a[:3], "auc[buy]", notes))
    assert notes == ["auc[buy]: AUC undefined (NaN), 0 of 3 examples are positive."]
    assert action_metrics.group_aucs is group_aucs


def test_has_both_classes_has_one_home():
    assert statistics.has_both_classes is has_both_classes and residual_fit.has_both_classes is has_both_classes
    assert action_metrics.has_both_classes is has_both_classes
    assert has_both_classes([0, 1, 0]) and has_both_classes(np.array([[True], [False]]))
    assert not has_both_classes(np.zeros(5)) and not has_both_classes([True, True]) and not has_both_classes([])
    with pytest.raises(ValueError, match="both classes"):
        statistics.paired_bootstrap_auc_difference([1, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1], num_resamples=2)
