"""Simple baselines: hand-computed count rule, popularity and medians, train-only fitting, logistic regression."""

import math

import numpy as np
import pyarrow as pa
import pytest
from datasets import Dataset
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from a2gen_hf import A2GenActionTokenizer
from a2gen_hf.data import A2GenDataCollator
from a2gen_hf.data.examples import EXAMPLE_SCHEMA
from a2gen_hf.metrics import action_targets, compute_action_metrics
from a2gen_hf.training.simple_baselines import (
    SIMPLE_BASELINES,
    ActionTargets,
    ConstantMedianTime,
    CountFeatureLogisticRegression,
    CountNetworkBaseline,
    HistoryCounts,
    PopularityBaseline,
    ShareScaledCountNetworkBaseline,
    ShareScaledLogisticRegression,
    TimedLogisticRegression,
    TimedShareScaledLogisticRegression,
    UserPropensityBaseline,
    share_scales_for,
)

ACTIONS = ["start", "like", "follow", "leave"]  # ids: start 1, like 2, follow 3, leave 4
START, LIKE, FOLLOW, LEAVE = 1, 2, 3, 4


@pytest.fixture
def tokenizer():
    return A2GenActionTokenizer(action_names=ACTIONS, start_action="start", end_action="leave")


def example(history=(), item="i0", category=7, actions=(START, LEAVE), seconds=None, history_categories=None,
            history_starts=None):
    """One row of the on-disk schema; `history` lists every history item's action ids (start first); the history
    sessions' starts (Unix seconds) only when `history_starts` is given (else the column is null: older data)."""
    history = [list(events) for events in history]
    seconds = [0.0] + [float(i) for i in range(1, len(actions))] if seconds is None else seconds
    history_categories = history_categories or [category] * len(history)
    return {
        "user": "u0",
        "item": item,
        "user_id": 1,
        "item_id": 1000 + int(item[1:]),
        "item_side_ids": [category],
        "history_item_ids": [500 + index for index in range(len(history))],
        "history_item_side_ids": [[value] for value in history_categories],
        "history_action_ids": history,
        "history_action_seconds": [[float(i) for i in range(len(events))] for events in history],
        "action_ids": list(actions),
        "action_seconds": list(seconds),
        "session_start": 10**6,
        **({} if history_starts is None else {"history_session_starts": list(history_starts)}),
    }


def dataset(rows):
    return Dataset(pa.Table.from_pylist(rows, schema=EXAMPLE_SCHEMA))


TOY_HISTORY = [
    [[START, LIKE, LEAVE], [START, LEAVE], [START, LIKE, FOLLOW, LEAVE]],
    [],
    [[START, FOLLOW, FOLLOW, LEAVE]],
]
TOY_TRAIN = dataset(
    [
        example(item="i1", actions=(START, LIKE, LEAVE)),
        example(item="i1", actions=(START, LEAVE)),
        example(item="i2", actions=(START, LIKE, FOLLOW, LEAVE)),
        example(item="i3", category=8, actions=(START, LEAVE)),
    ]
)
TRAIN_RATES = np.array([0.0, 0.0, 0.5, 0.25, 1.0])  # per action id: pad, start, like, follow, leave


def test_registry_names_every_baseline():
    assert SIMPLE_BASELINES == {
        "propensity": UserPropensityBaseline,
        "popularity": PopularityBaseline,
        "logreg": CountFeatureLogisticRegression,
        "logreg-shares": ShareScaledLogisticRegression,
        "logreg-times": TimedLogisticRegression,
        "logreg-shares-times": TimedShareScaledLogisticRegression,
        "count-network": CountNetworkBaseline,
        "count-network-shares": ShareScaledCountNetworkBaseline,
        "median-time": ConstantMedianTime,
    }


def test_count_rule_matches_hand_computation(tokenizer):
    test = dataset([example(history) for history in TOY_HISTORY])
    predicted = UserPropensityBaseline(tokenizer).fit(TOY_TRAIN).predict(test)["action_probabilities"]
    expected = np.array(
        [
            [0.0, 1.0, 2 / 3, 1 / 3, 1.0],
            TRAIN_RATES,  # no history: the train rate
            [0.0, 1.0, 0.0, 1.0, 1.0],  # FOLLOW twice on one item counts once
        ]
    )
    np.testing.assert_allclose(predicted, expected)


def test_count_rule_window_and_prior(tokenizer):
    test = dataset([example(TOY_HISTORY[0])])
    last_two = UserPropensityBaseline(tokenizer, window=2).fit(TOY_TRAIN).predict(test)["action_probabilities"]
    np.testing.assert_allclose(last_two[0, [LIKE, FOLLOW]], [1 / 2, 1 / 2])
    shrunk = UserPropensityBaseline(tokenizer, prior_strength=2.0).fit(TOY_TRAIN).predict(test)["action_probabilities"]
    np.testing.assert_allclose(shrunk[0, [LIKE, FOLLOW]], [(2 + 2 * 0.5) / 5, (1 + 2 * 0.25) / 5])


def test_popularity_is_hierarchically_smoothed_and_fitted_on_train_only(tokenizer):
    m = 2.0
    baseline = PopularityBaseline(tokenizer, smoothing=m)
    test = dataset(
        [
            example(item="i1"),  # 2 train rows of category 7 item i1, 1 like
            example(item="i9"),  # unseen item of a seen category
            example(item="i8", category=99),  # unseen item and category
        ]
    )
    # The validation split holds the unseen items with likes: it must not move the rates.
    validation = dataset([example(item="i9", actions=(START, LIKE, LEAVE)), example(item="i8", category=99)])
    predicted = baseline.fit(TOY_TRAIN, validation).predict(test)["action_probabilities"]
    category_like = (2 + m * 0.5) / (3 + m)  # category 7: 3 train rows, 2 likes
    assert predicted[0, LIKE] == pytest.approx((1 + m * category_like) / (2 + m))
    assert predicted[1, LIKE] == pytest.approx(category_like)
    np.testing.assert_allclose(predicted[2], TRAIN_RATES)
    np.testing.assert_allclose(PopularityBaseline(tokenizer, smoothing=m).fit(TOY_TRAIN).predict(test)["action_probabilities"], predicted)


def test_popularity_of_an_item_only_in_test_is_the_prior_without_side_features(tokenizer):
    rows = [example(item="i1", actions=(START, LIKE, LEAVE)), example(item="i2")]
    for row in rows:
        row["item_side_ids"], row["history_item_side_ids"] = [], []
    train = dataset(rows).remove_columns(["item_side_ids", "history_item_side_ids"])
    test = dataset([example(item="i5")]).remove_columns(["item_side_ids", "history_item_side_ids"])
    predicted = PopularityBaseline(tokenizer).fit(train).predict(test)["action_probabilities"]
    np.testing.assert_allclose(predicted[0], [0.0, 0.0, 0.5, 0.5 / 3, 1.0])  # follow, never on train: smoothed


def test_a_single_category_is_not_left_out_of_its_train_rows(tokenizer):
    """Without side features every item is in one category: left out of it, each train row's category rate told its
    own label apart (a positive row read a lower rate than every negative one), a perfect reversed label on train
    that the regression fitted, to probabilities about 100 times too low on every other split (a probe's KuaiRand-
    format log: predicted over observed 0.004 to 0.011)."""
    rows = [example(item=f"i{k // 2}", actions=(START, LIKE, LEAVE) if k % 3 == 0 else (START, LEAVE)) for k in range(30)]
    for row in rows:
        row["item_side_ids"], row["history_item_side_ids"] = [], []
    train = dataset(rows).remove_columns(["item_side_ids", "history_item_side_ids"])
    baseline = PopularityBaseline(tokenizer).fit(train)
    history = HistoryCounts.from_dataset(train, baseline.vocab_size, window=1)
    occurs = ActionTargets.from_dataset(train, tokenizer).occurs
    rates = baseline.rates(history, exclude=occurs)
    assert np.ptp(rates["category"][:, LIKE]) == 0  # the same for every row: no label in it
    assert rates["item"][0, LIKE] < rates["item"][1, LIKE]  # each item's own rate is still left out of
    regression = CountFeatureLogisticRegression(tokenizer, c_grid=(1.0,)).fit(train)
    predicted = regression.predict(train)["action_probabilities"][:, LIKE]
    assert predicted.mean() == pytest.approx(occurs[:, LIKE].mean(), rel=0.2)  # before: about 0


def test_targets_agree_with_the_metric_code(tokenizer):
    rows = [
        example(actions=(START, LIKE, START, LIKE, LEAVE), seconds=[0.0, 3.0, 5.0, 9.0, 12.0]),
        example(actions=(START, FOLLOW, LEAVE), seconds=[0.0, math.nan, 4.0]),
        example(actions=(START, LEAVE)),
    ]
    targets = ActionTargets.from_dataset(dataset(rows), tokenizer)
    batch = A2GenDataCollator(tokenizer, max_actions=8)(rows)
    occurs, times, known = action_targets(batch["labels"], batch["label_times"], batch["label_time_mask"], 5)
    np.testing.assert_array_equal(targets.occurs, occurs)
    np.testing.assert_array_equal(targets.known, known)
    np.testing.assert_allclose(targets.times, times, rtol=1e-6)
    assert targets.times[0, LIKE] == pytest.approx(math.log1p(3.0))  # the first occurrence's time


def test_median_time_baseline(tokenizer):
    train = dataset(
        [
            example(actions=(START, LIKE, LEAVE), seconds=[0.0, 0.0, 5.0]),
            example(actions=(START, LIKE, LEAVE), seconds=[0.0, 10.0, 20.0]),
            example(actions=(START, LIKE, LEAVE), seconds=[0.0, 30.0, 40.0]),
            example(actions=(START, LIKE, LEAVE), seconds=[0.0, math.nan, 40.0]),  # unknown time: not counted
        ]
    )
    predictions = ConstantMedianTime(tokenizer).fit(train).predict(dataset([example(), example()]))
    # like: median of 0, 10, 30 s; leave: of 5, 20, 40, 40 s (the mean of the middle two, in normalised units);
    # follow and the repeated start never happen on train: the median of all known times (0, 5, 10, 20, 30, 40, 40).
    overall, leave = math.log1p(20.0), (math.log1p(20.0) + math.log1p(40.0)) / 2
    expected_times = [0.0, overall, math.log1p(10.0), overall, leave]
    np.testing.assert_allclose(predictions["expected_times"], [expected_times] * 2)
    # The ranked actions have one class on these 4 rows: each gets its smoothed rate, (positives + 0.5) / 5; start and
    # end (not ranked; a session always ends) their plain rates.
    np.testing.assert_allclose(predictions["action_probabilities"], [[0.0, 0.0, 0.9, 0.1, 1.0]] * 2)


def separable_rows(count: int, seed: int, item_offset: int = 0):
    """Rows whose like happens exactly when the user liked more than half of their history items."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        liked = rng.random() < 0.5
        share = rng.uniform(0.6, 1.0) if liked else rng.uniform(0.0, 0.4)
        history = [[START, LIKE, LEAVE] if rng.random() < share else [START, LEAVE] for _ in range(10)]
        actions = (START, LIKE, LEAVE) if liked else (START, LEAVE)
        starts = np.sort(10**6 - rng.integers(0, 10 * 86400, size=len(history))).tolist()
        rows.append(example(history, item=f"i{item_offset + index}", actions=actions, history_starts=starts))
    return dataset(rows)


def test_logistic_regression_beats_random_on_separable_data(tokenizer):
    train, validation, test = separable_rows(200, 0), separable_rows(100, 1, 1000), separable_rows(100, 2, 2000)
    model = CountFeatureLogisticRegression(tokenizer).fit(train, validation)
    probabilities = model.predict(test)["action_probabilities"]
    labels = ActionTargets.from_dataset(test, tokenizer).occurs[:, LIKE]
    assert roc_auc_score(labels, probabilities[:, LIKE]) > 0.95
    assert model.chosen_c_["like"] in model.c_grid
    # follow never happens on train: its probability is its smoothed train rate (0 + 0.5) / (200 + 1), not 0.
    np.testing.assert_allclose(probabilities[:, FOLLOW], 0.5 / 201)


def test_logistic_regression_needs_validation_to_choose_c(tokenizer):
    train = separable_rows(60, 0)
    with pytest.raises(ValueError, match="chooses C"):
        CountFeatureLogisticRegression(tokenizer).fit(train)
    empty = train.select([])  # a data folder prepared with --validation-fraction 0
    with pytest.raises(ValueError, match=r"but got an empty validation split \(0 examples\).*--validation-fraction"):
        CountFeatureLogisticRegression(tokenizer).fit(train, empty)
    with pytest.raises(ValueError, match="share scales among \\(1.0, 10.0\\) on validation, but got no validation"):
        CountFeatureLogisticRegression(tokenizer, c_grid=(1.0,), share_scales=(1.0, 10.0)).fit(train)
    fixed = CountFeatureLogisticRegression(tokenizer, c_grid=(1.0,)).fit(train, empty)
    assert fixed.chosen_c_ == {"like": 1.0} and not fixed.needs_validation
    assert CountFeatureLogisticRegression(tokenizer).needs_validation
    no_likes = dataset([example([[START, LEAVE]]), example([[START, LIKE, LEAVE]])])
    fallback = CountFeatureLogisticRegression(tokenizer, c_grid=(0.1, 1.0, 10.0)).fit(train, no_likes)
    assert fallback.chosen_c_ == {"like": 1.0}
    assert "like" in fallback.notes_[0] and "0 of 2" in fallback.notes_[0]
    # An action the training rows never hold is named too (before: left out of the choices without a word).
    assert "logreg[follow]: 0 of 60 training rows are positive, so nothing can be fitted" in " ".join(fallback.notes_)


def _with_follow_everywhere(rows: Dataset) -> Dataset:
    """The rows with a follow just before the end of every target (follow then happens in every row)."""
    return rows.map(lambda row: {"action_ids": row["action_ids"][:-1] + [FOLLOW, LEAVE],
                                 "action_seconds": row["action_seconds"][:-1] + [row["action_seconds"][-1]] * 2})


@pytest.mark.parametrize("name", ["median-time", "popularity", "logreg", "logreg-shares-times", "count-network"])
def test_an_action_with_one_class_on_train_gets_its_smoothed_rate(tokenizer, name):
    """An action that never happens on train, or happens in every train row, has nothing to fit: every baseline that
    learns from the train labels predicts its smoothed rate (positives + 0.5) / (n + 1) for every row (before: the
    regression predicted exactly 0, a certainty no log holds); the count rule, which reads the history, keeps its
    shares."""
    train, validation, test = separable_rows(60, 0), separable_rows(40, 1, 1000), separable_rows(30, 2, 2000)
    never = SIMPLE_BASELINES[name](tokenizer).fit(train, validation)
    np.testing.assert_allclose(never.predict(test)["action_probabilities"][:, FOLLOW], 0.5 / 61)
    assert "logreg" not in name or "logreg[follow]: 0 of 60 training rows" in " ".join(never.notes_)
    always = SIMPLE_BASELINES[name](tokenizer).fit(_with_follow_everywhere(train), validation)
    np.testing.assert_allclose(always.predict(test)["action_probabilities"][:, FOLLOW], 60.5 / 61)
    np.testing.assert_allclose(always.base_rates_[FOLLOW], 1.0)  # the exact rate stays (the popularity prior)


def test_the_count_rule_keeps_its_shares_for_an_action_with_one_class_on_train(tokenizer):
    train = dataset([example(item="i1", actions=(START, LIKE, LEAVE)), example(item="i2")])  # follow never
    test = dataset([example([[START, FOLLOW, LEAVE], [START, LEAVE]])])
    predicted = UserPropensityBaseline(tokenizer).fit(train).predict(test)["action_probabilities"]
    assert predicted[0, FOLLOW] == 0.5  # its history share, not the smoothed rate 0.5 / 3


def _few_likes(tokenizer, count: int) -> Dataset:
    """Validation rows of which exactly ``count`` hold a like (and 40 - count do not)."""
    rows = separable_rows(200, 1, 1000)
    liked = ActionTargets.from_dataset(rows, tokenizer).occurs[:, LIKE]
    return rows.select(np.flatnonzero(liked)[:count].tolist() + np.flatnonzero(~liked)[: 40 - count].tolist())


def test_a_c_chosen_on_few_validation_positives_is_noted_and_still_chosen(tokenizer):
    """Where the validation AUC that chooses C rests on fewer than 5 positives the regression says so in notes_
    (before: only at 0 positives), and the choice is the one the AUC makes, as without the note."""
    from sklearn.linear_model import LogisticRegression

    train = separable_rows(60, 0)
    few = CountFeatureLogisticRegression(tokenizer, c_grid=(0.001, 1.0)).fit(train, _few_likes(tokenizer, 3))
    note = " ".join(few.notes_)
    assert "logreg[like]: C=" in note and "over 3 positive row(s) of 40, fewer than 5" in note
    features = few.scaler_.transform(few.features(_few_likes(tokenizer, 3)))
    train_features = few.scaler_.transform(few.features(train, ActionTargets.from_dataset(train, tokenizer).occurs))
    labels = ActionTargets.from_dataset(train, tokenizer).occurs[:, LIKE]
    validation_labels = ActionTargets.from_dataset(_few_likes(tokenizer, 3), tokenizer).occurs[:, LIKE]
    aucs = {c: roc_auc_score(validation_labels, LogisticRegression(C=c, max_iter=2000).fit(train_features, labels)
                             .decision_function(features)) for c in (0.001, 1.0)}
    assert few.chosen_c_["like"] == max(aucs, key=aucs.get)  # the first of equal AUCs, as max keeps it
    enough = CountFeatureLogisticRegression(tokenizer, c_grid=(0.001, 1.0)).fit(train, _few_likes(tokenizer, 5))
    assert not any("logreg[like]" in note for note in enough.notes_)


def noisy_share_rows(count, seed, item_offset=0):
    """Rows whose like depends on the user's like share (weakly) and on nothing else; few rows, so a strong L2
    penalty matters."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        share = rng.uniform(0.0, 1.0)
        history = [[START, LIKE, LEAVE] if rng.random() < share else [START, FOLLOW, LEAVE] for _ in range(8)]
        liked = rng.random() < 0.2 + 0.6 * share
        rows.append(example(history, item=f"i{item_offset + index}", actions=(START, LIKE, LEAVE) if liked else (START, LEAVE)))
    return dataset(rows)


def test_share_scaled_regression_chooses_the_scale_per_action_on_validation(tokenizer):
    """share_scales: each action's (scale, C) is the pair with the best validation AUC among every pair, the plain
    regression's included (so never below it on validation), and a scale multiplies the user propensities' columns
    only; probabilities and coefficients() agree with the chosen fit."""
    from sklearn.linear_model import LogisticRegression

    train, validation = noisy_share_rows(80, 0), noisy_share_rows(200, 1, 1000)
    grid = (0.001, 0.1)
    plain = CountFeatureLogisticRegression(tokenizer, c_grid=grid).fit(train, validation)
    scaled = CountFeatureLogisticRegression(tokenizer, c_grid=grid, share_scales=(1.0, 10.0)).fit(train, validation)
    assert plain.chosen_share_scale_ == {"like": 1.0}
    labels = ActionTargets.from_dataset(validation, tokenizer).occurs[:, LIKE]
    features = scaled.scaler_.transform(scaled.features(validation))
    train_features = scaled.scaler_.transform(scaled.features(train, ActionTargets.from_dataset(train, tokenizer).occurs))
    train_labels = ActionTargets.from_dataset(train, tokenizer).occurs[:, LIKE]
    aucs = {}
    for scale in (1.0, 10.0):
        weights = np.ones(features.shape[1])
        weights[: len(ACTIONS)] = scale  # the propensity block: one column per action id but padding
        for c in grid:
            fitted = LogisticRegression(C=c, max_iter=2000).fit(train_features * weights, train_labels)
            aucs[(scale, c)] = roc_auc_score(labels, fitted.decision_function(features * weights))
    chosen = (scaled.chosen_share_scale_["like"], scaled.chosen_c_["like"])
    assert aucs[chosen] == pytest.approx(max(aucs.values()))
    assert aucs[chosen] >= aucs[(1.0, plain.chosen_c_["like"])] - 1e-12
    forced = CountFeatureLogisticRegression(tokenizer, c_grid=(0.001,), share_scales=(10.0,)).fit(train)
    assert forced.chosen_share_scale_ == {"like": 10.0}
    coefficients, intercept = forced.coefficients(LIKE)
    propensities = np.arange(len(coefficients)) < len(ACTIONS)
    np.testing.assert_allclose(coefficients, forced.models_[LIKE].coef_[0] * np.where(propensities, 10.0, 1.0))
    features = forced.scaler_.transform(forced.features(validation))
    np.testing.assert_allclose(
        forced.predict(validation)["action_probabilities"][:, LIKE], expit(features @ coefficients + intercept), rtol=1e-6
    )
    # The lighter penalty lets the propensity's coefficient grow: the like share weighs more than with the plain fit.
    plain_fixed = CountFeatureLogisticRegression(tokenizer, c_grid=(0.001,)).fit(train)
    assert coefficients[LIKE - 1] > 2 * plain_fixed.coefficients(LIKE)[0][LIKE - 1] > 0


def test_regression_fits_are_the_same_whatever_the_threads(tokenizer):
    """fit_each runs the (scale, C) fits side by side on one BLAS thread each: the fitted regression is the same
    whatever BLAS and torch were set to (one thread, fitted one by one, or two), and BLAS is restored afterwards."""
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from a2gen_hf.training.simple_baselines import fit_each

    train, validation = noisy_share_rows(300, 0), noisy_share_rows(200, 1, 1000)
    before = [pool["num_threads"] for pool in threadpool_info()]
    threads = torch.get_num_threads()
    fitted = {}
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            with threadpool_limits(limits=count, user_api="blas"):
                fitted[count] = CountFeatureLogisticRegression(tokenizer, share_scales=(1.0, 10.0)).fit(train, validation)
    finally:
        torch.set_num_threads(threads)
    assert fitted[1].choices() == fitted[2].choices()
    for action, model in fitted[1].models_.items():
        np.testing.assert_array_equal(model.coef_, fitted[2].models_[action].coef_)
        np.testing.assert_array_equal(model.intercept_, fitted[2].models_[action].intercept_)
    assert [pool["num_threads"] for pool in threadpool_info()] == before
    assert fit_each(lambda key: key * 2, [3, 1, 2]) == {3: 6, 1: 2, 2: 4}


def test_share_scales_are_checked(tokenizer):
    assert share_scales_for(1.0) == (1.0,) and share_scales_for(10) == (1.0, 10.0)
    for bad in (0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="must be a finite number >= 1"):
            CountFeatureLogisticRegression(tokenizer, share_scales=(1.0, bad))
    with pytest.raises(ValueError, match="share_scales lists no scale"):
        CountFeatureLogisticRegression(tokenizer, share_scales=())
    from a2gen_hf.training.simple_baselines import check_wide_start

    with pytest.raises(ValueError, match=r"switch them on \(--wide-warm-start\), or the wide start off altogether "
                                         r"\(--no-wide-warm-start --wide-share-scale 1 \(it is 10\)\)"):
        check_wide_start(False, False, share_scale=10.0)
    # (a probe) the sparse_logs recipe sets the whole chain: --no-wide-warm-start alone gets one message naming
    # every flag to add (before: four refusals, one run at a time, each advising the warm start back on)
    with pytest.raises(ValueError, match=r"or the wide start off altogether \(--no-wide-warm-start --wide-share-scale "
                                         r"1 \(it is 10\) --no-wide-residual --no-wide-frozen --no-wide-residual-fit\)"):
        check_wide_start(False, True, True, True, share_scale=10.0)
    check_wide_start(True, True, True, True, share_scale=10.0)
    from a2gen_hf.training.simple_baselines import start_from_regression

    plain = CountFeatureLogisticRegression(tokenizer, c_grid=(1.0,)).fit(TOY_TRAIN)
    with pytest.raises(ValueError, match=r"fitted with share_scales=\(1.0,\), not \(1.0, 10.0\)"):
        start_from_regression(None, tokenizer, None, residual=True, regression=plain, share_scale=10.0)


def test_logistic_regression_train_features_leave_each_row_out(tokenizer):
    """A train row's features must not depend on its own label (its item / category / global rates leave it out)."""
    rows = list(TOY_TRAIN)
    flipped_rows = [dict(row) for row in rows]
    flipped_rows[0]["action_ids"], flipped_rows[0]["action_seconds"] = [START, LEAVE], [0.0, 1.0]  # row 0 loses its like
    features = {}
    for name, split in (("original", TOY_TRAIN), ("flipped", dataset(flipped_rows))):
        model = CountFeatureLogisticRegression(tokenizer, smoothing=2.0, c_grid=(1.0,)).fit(split)
        features[name] = model.features(split, exclude=ActionTargets.from_dataset(split, tokenizer).occurs)
    np.testing.assert_allclose(features["original"][0], features["flipped"][0])
    # Row 1 shares row 0's item: its features do see row 0's label.
    assert not np.allclose(features["original"][1], features["flipped"][1])


def test_predictions_feed_the_metric_code(tokenizer):
    train, validation, test = separable_rows(120, 0), separable_rows(60, 1), separable_rows(60, 2)
    rows = list(test)
    batch = A2GenDataCollator(tokenizer)(rows)
    references = {name: batch[name].numpy() for name in ("labels", "label_times", "label_time_mask")}
    for name, cls in SIMPLE_BASELINES.items():
        predictions = cls(tokenizer).fit(train, validation).predict(test)
        for key in ("action_probabilities", "expected_times"):
            assert predictions[key].shape == (60, len(ACTIONS) + 1)
        np.testing.assert_array_equal(predictions["action_probabilities"][:, 0], 0.0)
        # The next action: an action id (never padding or start), as predicted_next_actions reads the other two.
        start = tokenizer.convert_tokens_to_ids("start")
        assert predictions["next_actions"].shape == (60,)
        assert ((predictions["next_actions"] > 0) & (predictions["next_actions"] != start)).all(), name
        result = compute_action_metrics(predictions, references, ACTIONS, "start", "leave")
        assert 0.0 <= result["auc"]["like"] <= 1.0, name
        assert 0.0 <= result["next_action_accuracy"] <= 1.0, name


def test_clear_errors(tokenizer):
    with pytest.raises(RuntimeError, match="not fitted"):
        UserPropensityBaseline(tokenizer).predict(TOY_TRAIN)
    with pytest.raises(KeyError, match="history_action_ids"):
        UserPropensityBaseline(tokenizer).fit(TOY_TRAIN).predict(TOY_TRAIN.remove_columns("history_action_ids"))
    with pytest.raises(ValueError, match="action id 9"):
        UserPropensityBaseline(tokenizer).fit(dataset([example(actions=(START, 9, LEAVE))]))
    with pytest.raises(ValueError, match="window"):
        UserPropensityBaseline(tokenizer, window=0).fit(TOY_TRAIN).predict(TOY_TRAIN)


@pytest.mark.parametrize(
    "keys, interactions, scales",
    [("buckets", False, (1.0,)), ("raw_ids", False, (1.0,)), ("raw_ids", True, (1.0,)), ("raw_ids", False, (10.0,))],
)
def test_warm_started_wide_path_is_the_fitted_regression(simulated_data_dir, keys, interactions, scales):
    """Before training, A2Gen's wide logit of each action equals the regression's decision function (with the item
    counts keyed by bucket or, as the regression keys them, by raw id; with target interactions in the context too,
    so the wide path still finds the extra features at its end; with the user propensities' columns scaled)."""
    import torch

    from a2gen_hf.training.data_setup import create_model, load_data_dir
    from a2gen_hf.training.simple_baselines import warm_start_wide_path

    data, tokenizer, _ = load_data_dir(simulated_data_dir)
    regression = CountFeatureLogisticRegression(tokenizer, share_scales=scales).fit(data["train"], data["validation"])
    model = create_model(
        "a2gen-iag", tokenizer, data, hidden_size=16, id_embedding_size=16, history_count_features=True,
        target_popularity_features=True, occurrence_head=True, wide_path=True, popularity_keys=keys,
        context_interactions=interactions,
    ).eval()
    actions = len(tokenizer.action_names)  # every id but padding has its columns
    assert warm_start_wide_path(model, regression) == 4 * actions + 4 + 2 * actions + 2
    rows = data["validation"]
    batch = A2GenDataCollator.from_config(model.config, tokenizer)([rows[index] for index in range(len(rows))])
    batch.pop("labels"), batch.pop("label_times"), batch.pop("label_time_mask")
    with torch.no_grad():
        context = model.a2gen(**batch).generation_context
        wide = model.occurrence_head.wide(context).numpy()
    features = regression.scaler_.transform(regression.features(rows))
    for action, fitted in regression.models_.items():
        expected = fitted.decision_function(features * regression.column_weights_[action])
        np.testing.assert_allclose(wide[:, action], expected, atol=5e-3, err_msg=str(action))
    assert np.all(wide[:, [0, 1, len(tokenizer.action_names)]] == 0)  # padding, start and end are not ranked
    with pytest.raises(ValueError, match="no wide path"):
        warm_start_wide_path(create_model("a2gen-iag", tokenizer, data, hidden_size=16), regression)


def test_residual_warm_start_starts_a2gen_as_the_regression(simulated_data_dir):
    """residual=True: A2Gen's occurrence probabilities start as the regression's, and a training batch's update of
    the standardisers no longer replaces the regression's statistics."""
    import torch

    from a2gen_hf.training.data_setup import create_model, load_data_dir
    from a2gen_hf.training.simple_baselines import warm_start_wide_path

    data, tokenizer, _ = load_data_dir(simulated_data_dir)
    regression = CountFeatureLogisticRegression(tokenizer).fit(data["train"], data["validation"])
    model = create_model(
        "a2gen-iag", tokenizer, data, hidden_size=16, id_embedding_size=16, history_count_features=True,
        target_popularity_features=True, occurrence_head=True, wide_path=True,
    )
    warm_start_wide_path(model, regression, residual=True)
    rows = data["validation"]
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    batch = collator([rows[index] for index in range(len(rows))])
    train_batch = collator([data["train"][index] for index in range(16)])
    model.train()
    with torch.no_grad():
        model(**train_batch)  # one batch of standardiser updates, as the first training step makes
    model.eval()
    for name in ("labels", "label_times", "label_time_mask"):
        batch.pop(name)
    with torch.no_grad():
        probabilities = model.predict_actions(**batch).action_probabilities.numpy()
    expected = regression.predict(rows)["action_probabilities"]
    actions = [tokenizer.convert_tokens_to_ids(name) for name in tokenizer.action_names[1:-1]]
    np.testing.assert_allclose(probabilities[:, actions], expected[:, actions], atol=2e-2)


def _one_class_train(split: Dataset, never: int, always: int) -> Dataset:
    """The train split with action ``never`` taken out of every target and ``always`` put into every one (before the
    end, at the end's time)."""

    def change(row):
        kept = [(action, second) for action, second in zip(row["action_ids"], row["action_seconds"])
                if action not in (never, always)]
        ids, seconds = [action for action, _ in kept], [second for _, second in kept]
        return {"action_ids": ids[:-1] + [always, ids[-1]], "action_seconds": seconds[:-1] + [seconds[-1]] * 2}

    return split.map(change)


def test_a_started_model_predicts_the_smoothed_rate_of_an_action_with_one_class_on_train(simulated_data_dir):
    """The sparse_logs start (residual, frozen): an action that never happens on train gets P = its smoothed train
    rate 0.5 / (n + 1) on every example, and one that happens in every train row about 1 (before: the wide bias of an
    action the regression could not fit stayed 0, P = 0.5 for every example, however often it happened)."""
    import torch

    from a2gen_hf.training.data_setup import create_model, load_data_dir
    from a2gen_hf.training.simple_baselines import start_from_regression

    data, tokenizer, _ = load_data_dir(simulated_data_dir)
    ranked = [tokenizer.convert_tokens_to_ids(name) for name in tokenizer.action_names[1:-1]]
    never, always = ranked[0], ranked[1]
    changed = {"train": _one_class_train(data["train"], never, always), "validation": data["validation"]}
    n = len(changed["train"])
    torch.manual_seed(0)
    model = create_model(
        "a2gen-iag", tokenizer, data, hidden_size=16, id_embedding_size=16, history_count_features=True,
        target_popularity_features=True, occurrence_head=True, wide_path=True, occurrence_paths_input="extra_only",
        use_id_embeddings=False,
    )
    regression = start_from_regression(model, tokenizer, changed, residual=True, frozen=True)
    assert never not in regression.models_ and always not in regression.models_
    rows = data["validation"]
    batch = A2GenDataCollator.from_config(model.config, tokenizer)([rows[index] for index in range(len(rows))])
    for name in ("labels", "label_times", "label_time_mask"):
        batch.pop(name)
    with torch.no_grad():
        probabilities = model.eval().predict_actions(**batch).action_probabilities.double().numpy()
    np.testing.assert_allclose(probabilities[:, never], 0.5 / (n + 1), rtol=1e-3)
    np.testing.assert_allclose(probabilities[:, always], (n + 0.5) / (n + 1), rtol=1e-6)
    assert expit(model.occurrence_head.wide.linear.bias[never].item()) == pytest.approx(0.5 / (n + 1), rel=1e-4)
    # The regression alone predicts the same constants.
    expected = regression.predict(rows)["action_probabilities"]
    np.testing.assert_allclose(expected[:, [never, always]], probabilities[:, [never, always]], rtol=1e-3)


def test_frozen_residual_start_keeps_the_regression_while_the_network_learns(simulated_data_dir, tmp_path):
    """frozen=True: training leaves the wide path at the regression's coefficients and moves the occurrence head's
    other paths; frozen needs the residual start."""
    import torch

    from a2gen_hf.training.data_setup import create_model, load_data_dir
    from a2gen_hf.training.loop import TrainingSettings, train
    from a2gen_hf.training.simple_baselines import check_wide_start, start_from_regression

    data, tokenizer, _ = load_data_dir(simulated_data_dir)
    model = create_model(
        "a2gen-iag", tokenizer, data, hidden_size=16, id_embedding_size=16, history_count_features=True,
        target_popularity_features=True, occurrence_head=True, wide_path=True,
    )
    start_from_regression(model, tokenizer, data, residual=True, frozen=True)
    wide, head = model.occurrence_head.wide, model.occurrence_head
    assert not any(parameter.requires_grad for parameter in wide.parameters())
    before = {name: tensor.clone() for name, tensor in head.state_dict().items()}
    settings = TrainingSettings(output_dir=str(tmp_path / "run"), max_steps=3, batch_size=32, show_progress=False)
    trained = train(model, data["train"], A2GenDataCollator.from_config(model.config, tokenizer), settings).model
    after = trained.occurrence_head.state_dict()
    for name in ("wide.linear.weight", "wide.linear.bias"):
        assert torch.equal(after[name], before[name]), name
    assert not torch.equal(after["output.weight"], before["output.weight"])  # the residual paths learn
    # Without the head's linear path, the residual start zeroes the hidden-layer path's output alone.
    model = create_model(
        "a2gen-iag", tokenizer, data, hidden_size=16, id_embedding_size=16, history_count_features=True,
        target_popularity_features=True, occurrence_head=True, wide_path=True, occurrence_paths_input="extra_only",
        occurrence_linear_path=False,
    )
    start_from_regression(model, tokenizer, data, residual=True, frozen=True)
    assert model.occurrence_head.linear is None and not model.occurrence_head.output.weight.any()
    with pytest.raises(ValueError, match=r"--wide-residual is off while what needs it is on"):
        check_wide_start(True, False, True)


@pytest.mark.parametrize("model_name", ["a2gen-iag", "a2gen-eag"])
def test_residual_start_predicts_the_median_time(simulated_data_dir, model_name):
    """The residual start's times are the constant-median rule's overall median (not untrained heads' outputs)."""
    import torch

    from a2gen_hf.training.data_setup import create_model, load_data_dir
    from a2gen_hf.training.simple_baselines import ActionTargets, start_from_regression

    data, tokenizer, _ = load_data_dir(simulated_data_dir)
    model = create_model(
        model_name, tokenizer, data, hidden_size=16, id_embedding_size=16, history_count_features=True,
        target_popularity_features=True, occurrence_head=True, wide_path=True,
    )
    start_from_regression(model, tokenizer, data, residual=True)
    targets = ActionTargets.from_dataset(data["train"], tokenizer)
    median = float(np.median(targets.times[targets.known]))
    assert abs(median) > 0.05  # the untrained heads' output (about 0) would be far from it
    rows = data["validation"]
    batch = A2GenDataCollator.from_config(model.config, tokenizer)([rows[index] for index in range(len(rows))])
    for name in ("labels", "label_times", "label_time_mask"):
        batch.pop(name)
    model.eval()
    with torch.no_grad():
        times = model.predict_actions(**batch).expected_times
    actions = [tokenizer.convert_tokens_to_ids(name) for name in tokenizer.action_names[1:]]
    np.testing.assert_allclose(times[:, actions].numpy(), median, atol=1e-5)


def test_count_network_baseline_is_the_regression_plus_a_fitted_network(simulated_data_dir):
    """count-network: the regression plus a network fitted on its residual; on validation no ranked action scores
    below the regression (an action the network does not help is the regression's exactly); it needs validation."""
    from a2gen_hf.metrics import ranked_action_ids
    from a2gen_hf.training.data_setup import load_data_dir
    from a2gen_hf.training.simple_baselines import CountNetworkBaseline

    data, tokenizer, _ = load_data_dir(simulated_data_dir)
    regression = SIMPLE_BASELINES["logreg"](tokenizer).fit(data["train"], validation=data["validation"])
    network = SIMPLE_BASELINES["count-network"](tokenizer, hidden_size=8).fit(data["train"], data["validation"])
    occurs = ActionTargets.from_dataset(data["validation"], tokenizer).occurs
    ours, theirs = network.predict(data["validation"]), regression.predict(data["validation"])
    assert ours["action_probabilities"].shape == theirs["action_probabilities"].shape
    np.testing.assert_array_equal(ours["expected_times"], theirs["expected_times"])
    given_back = {tokenizer.convert_tokens_to_ids(name) for name in network.fit_["regression_kept_for"]}
    for action in ranked_action_ids(tokenizer):
        if occurs[:, action].all() or not occurs[:, action].any():
            continue
        mine = roc_auc_score(occurs[:, action], ours["action_probabilities"][:, action])
        reference = roc_auc_score(occurs[:, action], theirs["action_probabilities"][:, action])
        assert mine >= reference - 1e-6
        if action in given_back or network.fit_["fitted"] is None:
            np.testing.assert_allclose(ours["action_probabilities"][:, action],
                                       theirs["action_probabilities"][:, action], atol=1e-5)
    with pytest.raises(ValueError, match="chooses its L2 strength on validation, but got no validation split"):
        CountNetworkBaseline(tokenizer).fit(data["train"])
    with pytest.raises(ValueError, match="chooses its L2 strength on validation, but got an empty validation split"):
        CountNetworkBaseline(tokenizer, c_grid=(1.0,)).fit(data["train"], data["validation"].select([]))
