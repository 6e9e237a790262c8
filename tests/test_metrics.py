"""Metrics on hand-computed toy cases; the evaluate modules load offline by path and agree with the functions."""

import math
import socket

import numpy as np
import pytest
import torch
from test_baselines import baseline_config
from test_modeling import make_batch, tiny_config
from transformers import EvalPrediction

from a2gen_hf import A2GenForActionGeneration, MMoEConfig, MMoEForActionPrediction
from a2gen_hf.metrics import (
    METRIC_NAMES,
    action_auc,
    backward_time_rate,
    compute_action_metrics,
    evaluate_model,
    flatten_metrics,
    load_metric,
    make_compute_metrics,
    metric_path,
    next_action_accuracy,
    oracle_comparison,
    predicted_next_actions,
    timing_mae,
)

NAMES = ["start", "like", "follow", "leave"]  # ids: pad 0, start 1, like 2, follow 3, leave 4
LABELS = [[1, 2, 4, 0], [1, 4, 0, 0], [1, 2, 3, 4], [1, 3, 4, 0]]
LABEL_TIMES = [[0.0, 0.5, 1.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.2, 0.3, 0.9], [0.0, 0.1, 0.4, 0.0]]
LABEL_TIME_MASK = [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 1, 0]]


def toy_predictions():
    probabilities = np.zeros((4, 5))
    probabilities[:, [1, 4]] = 1.0
    probabilities[:, 2] = [0.9, 0.1, 0.8, 0.2]  # like happens in rows 0 and 2: ranked perfectly
    probabilities[:, 3] = 0.5  # follow: constant score
    times = np.zeros((4, 5))
    times[:, 2], times[:, 3], times[:, 4] = 0.4, 0.0, 1.0
    return probabilities, times


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """Own HF caches, and any network connection fails the test."""
    import evaluate

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    monkeypatch.setattr(evaluate.config, "HF_MODULES_CACHE", tmp_path / "hf" / "modules")
    monkeypatch.setattr(evaluate.config, "HF_METRICS_CACHE", tmp_path / "hf" / "metrics")

    def refuse(*args, **kwargs):
        raise AssertionError("a metric tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_action_auc_toy():
    probabilities, _ = toy_predictions()
    result = action_auc(probabilities, LABELS, NAMES)
    assert result["auc"] == {"like": 1.0, "follow": 0.5}
    assert result["positives"] == {"like": 2, "follow": 2}
    assert result["mean_auc"] == 0.75 and result["notes"] == []
    reversed_scores = probabilities.copy()
    reversed_scores[:, 2] = 1 - reversed_scores[:, 2]
    assert action_auc(reversed_scores, LABELS, NAMES)["auc"]["like"] == 0.0


def test_single_class_auc_is_nan_with_a_note(recwarn):
    probabilities, _ = toy_predictions()
    labels = [[1, 2, 4], [1, 2, 4]]
    result = action_auc(probabilities[:2], labels, NAMES)
    assert math.isnan(result["auc"]["like"]) and math.isnan(result["auc"]["follow"])
    assert any("auc[like]" in note and "2 of 2" in note for note in result["notes"])
    assert len(recwarn) == 0


def test_timing_mae_toy():
    _, times = toy_predictions()
    result = timing_mae(times, LABELS, LABEL_TIMES, LABEL_TIME_MASK, NAMES)
    # like: |0.4 - 0.5|, |0.4 - 0.2|; follow: only row 2 has a known time (row 3's is masked); leave: 4 rows.
    assert result["mae"]["like"] == pytest.approx(0.15)
    assert result["mae"]["follow"] == pytest.approx(0.3)
    assert result["leave_mae"] == pytest.approx((0.0 + 1.0 + 0.1 + 0.6) / 4)
    assert result["timed_count"] == {"like": 2, "follow": 1, "leave": 4}
    # mean 0, std 1: seconds = expm1(z).
    expected = (abs(math.expm1(0.4) - math.expm1(0.5)) + abs(math.expm1(0.4) - math.expm1(0.2))) / 2
    assert result["mae_seconds"]["like"] == pytest.approx(expected)
    assert result["leave_mae_seconds"] == result["mae_seconds"]["leave"]


def test_timing_mae_separates_occurrences_at_zero_seconds():
    # z = (log1p(s) - 1) / 2: 0 s is z = -0.5.
    labels = [[1, 2, 4], [1, 2, 4]]
    label_times = [[-0.5, -0.5, 0.5], [-0.5, 0.5, 1.0]]
    predicted = np.zeros((2, 5))
    predicted[:, 2] = 0.0
    result = timing_mae(predicted, labels, label_times, None, NAMES, time_log_mean=1.0, time_log_std=2.0)
    assert result["mae"]["like"] == pytest.approx(0.5)
    assert result["mae_nonzero"]["like"] == pytest.approx(0.5) and result["timed_nonzero_count"]["like"] == 1
    assert result["timed_count"]["like"] == 2
    assert result["mae_seconds_nonzero"]["like"] == pytest.approx(abs(math.expm1(1.0) - math.expm1(2.0)))


def test_next_action_accuracy_and_rule():
    assert next_action_accuracy([2, 4, 2, 2], LABELS)["next_action_accuracy"] == 0.75
    probabilities, times = toy_predictions()
    # Candidates: P >= 0.5 (leave always). Follow (0.5) qualifies everywhere and is the earliest (0.0).
    assert predicted_next_actions(probabilities, times, start_action_id=1).tolist() == [3, 3, 3, 3]
    probabilities[:, 3] = 0.1  # now like (rows 0, 2, at 0.4) or else leave (at 1.0)
    assert predicted_next_actions(probabilities, times, start_action_id=1).tolist() == [2, 4, 2, 4]


def test_backward_time_rate():
    sequences = [[1, 2, 4, 0], [1, 4, 0, 0], [1, 3, 2, 4], [1, 2, 0, 0]]
    times = [[0, 1, 2, 9], [0, 1, 0, 0], [0, 2, 1, 3], [0, 1, 0, 0]]  # padding times never count
    assert backward_time_rate(sequences, times) == {"backward_time_rate": 0.25, "sequence_count": 4}
    with pytest.raises(ValueError, match="left-aligned"):
        backward_time_rate([[1, 0, 4]], [[0, 0, 1]])


def oracle_columns():
    probabilities = [[1, 0.9, 0.1, 1], [1, 0.1, 0.1, 1], [1, 0.9, 0.9, 1], [1, 0.2, 0.8, 1]]
    seconds = [[0.0, math.expm1(0.5), math.expm1(0.3), math.expm1(1.0)]] * 4
    return probabilities, seconds


def test_oracle_comparison():
    probabilities, _ = toy_predictions()
    oracle_probabilities, oracle_seconds = oracle_columns()
    result = oracle_comparison(
        probabilities, LABELS, LABEL_TIMES, LABEL_TIME_MASK, oracle_probabilities, oracle_seconds, NAMES
    )
    assert result["oracle_auc"] == {"like": 1.0, "follow": 1.0}
    assert result["auc_share_of_oracle"] == {"like": 1.0, "follow": 0.0}
    assert result["oracle_mae"]["follow"] == pytest.approx(0.0)  # row 2: 0.3 predicted and true
    assert result["oracle_mae"]["like"] == pytest.approx((0.0 + 0.3) / 2)
    nan_seconds = [row[:2] + [math.nan, row[3]] for row in oracle_seconds]
    with pytest.raises(ValueError, match="follow"):
        oracle_comparison(probabilities, LABELS, LABEL_TIMES, LABEL_TIME_MASK, oracle_probabilities, nan_seconds, NAMES)


def test_bad_inputs_are_refused():
    probabilities, times = toy_predictions()
    with pytest.raises(ValueError, match="5 action ids"):
        action_auc(probabilities[:, :4], LABELS, NAMES)
    with pytest.raises(ValueError, match="NaN"):
        action_auc(np.full((4, 5), np.nan), LABELS, NAMES)
    with pytest.raises(ValueError, match="3 predictions for 4"):
        timing_mae(times[:3], LABELS, LABEL_TIMES, LABEL_TIME_MASK, NAMES)
    with pytest.raises(ValueError, match="end_action='exit'"):
        action_auc(probabilities, LABELS, NAMES, end_action="exit")


def test_evaluate_modules_load_offline_and_match_the_functions():
    probabilities, times = toy_predictions()
    references = [
        {"labels": a, "label_times": b, "label_time_mask": c} for a, b, c in zip(LABELS, LABEL_TIMES, LABEL_TIME_MASK)
    ]
    oracle_probabilities, oracle_seconds = oracle_columns()
    sequences = [[1, 2, 4, 0], [1, 4, 0, 0], [1, 3, 2, 4], [1, 2, 0, 0]]
    sequence_times = [[0, 1, 2, 0], [0, 1, 0, 0], [0, 2, 1, 3], [0, 1, 0, 0]]
    stats = dict(time_log_mean=0.3, time_log_std=1.5)
    calls = {
        "action_auc": (dict(predictions=probabilities, references=LABELS, action_names=NAMES),
                       action_auc(probabilities, LABELS, NAMES)),
        "timing_mae": (dict(predictions=times, references=references, action_names=NAMES, **stats),
                       timing_mae(times, LABELS, LABEL_TIMES, LABEL_TIME_MASK, NAMES, **stats)),
        "next_action_accuracy": (dict(predictions=[2, 4, 2, 2], references=LABELS),
                                 next_action_accuracy([2, 4, 2, 2], LABELS)),
        "time_order": (dict(predictions=[{"sequences": s, "times": t} for s, t in zip(sequences, sequence_times)]),
                       backward_time_rate(sequences, sequence_times)),
        "oracle_comparison": (
            dict(
                predictions=probabilities,
                references=[
                    dict(row, oracle_action_prob=p, oracle_expected_seconds=s)
                    for row, p, s in zip(references, oracle_probabilities, oracle_seconds)
                ],
                action_names=NAMES,
                **stats,
            ),
            oracle_comparison(probabilities, LABELS, LABEL_TIMES, LABEL_TIME_MASK, oracle_probabilities,
                              oracle_seconds, NAMES, **stats),
        ),
    }
    assert set(calls) == set(METRIC_NAMES)
    for name, (inputs, expected) in calls.items():
        metric = load_metric(name)
        assert metric.name == name
        computed = metric.compute(**inputs)
        assert set(computed) == set(expected), name
        assert flatten_metrics(computed) == pytest.approx(flatten_metrics(expected)), name
        assert computed.get("notes") == expected.get("notes")
    with pytest.raises(ValueError, match="Unknown a2gen_hf metric 'roc_auc'"):
        metric_path("roc_auc")


def test_compute_action_metrics_combines_every_part():
    probabilities, times = toy_predictions()
    oracle_probabilities, oracle_seconds = oracle_columns()
    result = compute_action_metrics(
        {"action_probabilities": probabilities, "expected_times": times, "next_actions": [2, 4, 2, 2],
         "sequences": [[1, 4], [1, 4], [1, 4], [1, 4]], "sequence_times": [[0, 1], [0, 1], [0, 1], [0, -1]]},
        {"labels": LABELS, "label_times": LABEL_TIMES, "label_time_mask": LABEL_TIME_MASK,
         "oracle_action_prob": oracle_probabilities, "oracle_expected_seconds": oracle_seconds},
        NAMES,
    )
    assert result["auc"]["like"] == 1.0 and result["mae"]["follow"] == pytest.approx(0.3)
    assert result["next_action_accuracy"] == 0.75 and result["backward_time_rate"] == 0.25
    assert result["auc_share_of_oracle"]["follow"] == 0.0 and result["num_examples"] == 4
    flat = flatten_metrics(result)
    assert flat["auc_like"] == 1.0 and flat["leave_mae"] == result["leave_mae"] and "notes" not in flat
    with pytest.raises(ValueError, match="oracle_expected_seconds"):
        compute_action_metrics(
            {"action_probabilities": probabilities, "expected_times": times},
            {"labels": LABELS, "label_times": LABEL_TIMES, "oracle_action_prob": oracle_probabilities},
            NAMES,
        )


def test_make_compute_metrics_reads_baseline_outputs():
    torch.manual_seed(0)
    config = baseline_config(MMoEConfig)
    model = MMoEForActionPrediction(config).eval()
    batch = make_batch(config)
    with torch.no_grad():
        out = model(**batch)
    labels = tuple(batch[name].numpy() for name in ("labels", "label_times"))
    metrics = make_compute_metrics(config)(EvalPrediction(predictions=(out.logits.numpy(), out.times.numpy()),
                                                          label_ids=labels))
    prediction = model.predict_actions(**batch)
    expected = compute_action_metrics(
        {"action_probabilities": prediction.action_probabilities, "expected_times": prediction.expected_times},
        {"labels": batch["labels"], "label_times": batch["label_times"]},
        config.action_names,
        time_log_mean=config.time_log_mean,
        time_log_std=config.time_log_std,
    )
    for action in ("like", "follow"):
        assert metrics[f"auc_{action}"] == pytest.approx(expected["auc"][action], nan_ok=True)
    assert metrics["leave_mae"] == pytest.approx(expected["leave_mae"])
    with pytest.raises(ValueError, match="evaluate_model"):
        make_compute_metrics(config)(
            EvalPrediction(predictions=(np.zeros((4, 5, 7)), np.zeros((4, 5))), label_ids=labels)
        )


@pytest.mark.parametrize("kind", ["a2gen", "mmoe"])
def test_evaluate_model(kind):
    torch.manual_seed(0)
    config = tiny_config() if kind == "a2gen" else baseline_config(MMoEConfig)
    model = (A2GenForActionGeneration if kind == "a2gen" else MMoEForActionPrediction)(config).train()
    batches = [make_batch(config, seed=seed) for seed in (0, 1)]
    oracle_probabilities = np.repeat(np.linspace(0.1, 0.9, 8)[:, None], len(config.action_names), axis=1)
    oracle = {"oracle_action_prob": oracle_probabilities,
              "oracle_expected_seconds": np.ones((8, len(config.action_names)))}
    result = evaluate_model(model, batches, oracle=oracle)
    assert model.training  # restored
    assert result["num_examples"] == 8
    assert set(result["auc"]) == {"like", "follow", "forward", "comment"}
    assert set(result["mae"]) == {"like", "follow", "forward", "comment", "leave"}
    assert 0.0 <= result["next_action_accuracy"] <= 1.0
    assert ("backward_time_rate" in result) == (kind == "a2gen")
    assert set(result["oracle_auc"]) == set(result["auc"])
    model.eval()
    predictions = [model.predict_actions(**batch) for batch in batches]
    direct = compute_action_metrics(
        {name: torch.cat([p[name] for p in predictions]) for name in ("action_probabilities", "expected_times")},
        {name: torch.cat([b[name] for b in batches]) for name in ("labels", "label_times")},
        config.action_names,
    )
    assert flatten_metrics({"auc": result["auc"], "mae": result["mae"]}) == pytest.approx(
        flatten_metrics({"auc": direct["auc"], "mae": direct["mae"]}), nan_ok=True
    )
    with pytest.raises(ValueError, match="8 examples"):
        evaluate_model(model, batches, oracle={name: values[:5] for name, values in oracle.items()})
