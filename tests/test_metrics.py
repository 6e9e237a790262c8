"""Metrics on hand-computed toy cases; the evaluate modules load offline by path and agree with the functions."""

import math
import re
import socket
import sys

import numpy as np
import pytest
import torch
from conftest import make_batch, tiny_config
from sklearn.metrics import log_loss as sklearn_log_loss
from sklearn.metrics import ndcg_score, roc_auc_score
from test_baselines import baseline_config

from a2gen_hf import A2GenForActionGeneration, MMoEConfig, MMoEForActionPrediction
from a2gen_hf.metrics import (
    COUNT_KEYS,
    METRIC_NAMES,
    MIN_GAUC_GROUPS,
    action_auc,
    backward_time_rate,
    calibration,
    compute_action_metrics,
    evaluate_model,
    flatten_metrics,
    format_ranking_table,
    gauc,
    gauc_cell,
    load_metric,
    log_loss,
    metric_path,
    next_action_accuracy,
    oracle_comparison,
    predict_dataloader,
    predicted_next_actions,
    ranking_at_k,
    timing_mae,
)

NAMES = ["start", "like", "follow", "leave"]  # ids: pad 0, start 1, like 2, follow 3, leave 4
LABELS = [[1, 2, 4, 0], [1, 4, 0, 0], [1, 2, 3, 4], [1, 3, 4, 0]]
LABEL_TIMES = [[0.0, 0.5, 1.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.2, 0.3, 0.9], [0.0, 0.1, 0.4, 0.0]]
LABEL_TIME_MASK = [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 1, 0]]
GROUPS = [7, 7, 9, 9]  # two users with two examples each


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
    # evaluate imports the loaded modules as the package `evaluate_modules` of its cache folder: a package imported
    # from another folder (by an earlier test in this process, e.g. the docs' blocks) must not shadow this one.
    for name in [name for name in sys.modules if name.split(".")[0] == "evaluate_modules"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "path", [str(tmp_path / "hf" / "modules"), *sys.path])

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
    assert predicted_next_actions(probabilities, times, start_action_id=1, end_action_id=4).tolist() == [3, 3, 3, 3]
    probabilities[:, 3] = 0.1  # now like (rows 0, 2, at 0.4) or else leave (at 1.0)
    assert predicted_next_actions(probabilities, times, start_action_id=1, end_action_id=4).tolist() == [2, 4, 2, 4]
    # The end action qualifies whatever its probability (before: padding, id 0, came back where nothing else did).
    unlikely = np.full_like(probabilities, 0.1)
    assert predicted_next_actions(unlikely, times, start_action_id=1, end_action_id=4).tolist() == [4, 4, 4, 4]
    with pytest.raises(ValueError, match=r"end_action_id=0 must be an action id in \[1, 5\)"):
        predicted_next_actions(unlikely, times, start_action_id=1, end_action_id=0)


def test_backward_time_rate():
    sequences = [[1, 2, 4, 0], [1, 4, 0, 0], [1, 3, 2, 4], [1, 2, 0, 0]]
    times = [[0, 1, 2, 9], [0, 1, 0, 0], [0, 2, 1, 3], [0, 1, 0, 0]]  # padding times never count
    assert backward_time_rate(sequences, times) == {"backward_time_rate": 0.25, "sequence_count": 4, "notes": []}
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
    # Logits where probabilities belong, and time statistics that turn every MAE into 0 s (before: accepted)
    with pytest.raises(ValueError, match=r"from -2 to 3; every score must be a probability in \[0, 1\] \(logits\?"):
        action_auc(np.clip(probabilities * 10 - 2, -2, 3), LABELS, NAMES)
    for std in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match=r"time_log_std > 0"):
            timing_mae(times, LABELS, LABEL_TIMES, LABEL_TIME_MASK, NAMES, time_log_std=std)


def test_ids_and_time_masks_are_whole_numbers_not_truncated():
    # Before: 2.9 was cut to 2 (next action accuracy 1.0 below), labels + 0.7 gave the same AUC, a mask of 0.5 made
    # every time unknown, and strings were parsed.
    probabilities, times = toy_predictions()
    labels = np.array(LABELS)
    assert action_auc(probabilities, labels.astype(float), NAMES) == action_auc(probabilities, labels, NAMES)
    ragged = [[1, 2, 4], [1, 4], [1, 2, 3, 4], [1, 3, 4]]
    assert action_auc(probabilities, [np.array(row, dtype=float) for row in ragged], NAMES)["auc"] == {
        "like": 1.0, "follow": 0.5}
    with pytest.raises(ValueError, match=r"labels\[0, 0\] is 1.7; labels takes whole numbers \(ids\)"):
        action_auc(probabilities, labels + 0.7, NAMES)
    with pytest.raises(ValueError, match=r"labels\[2, 3\] is 4.5; labels takes whole numbers"):
        log_loss(probabilities, ragged[:2] + [[1, 2, 3, 4.5], [1, 3, 4]], NAMES)
    with pytest.raises(ValueError, match=r"labels\[1, 1\] is nan"):
        gauc(probabilities, [[1, 2], [1, math.nan], [1, 2], [1, 2]], GROUPS, NAMES)
    with pytest.raises(ValueError, match=r"labels holds <U\d+ values; it takes whole numbers"):
        action_auc(probabilities, labels.astype(str), NAMES)
    with pytest.raises(ValueError, match=r"next_actions\[0\] is 2.9; next_actions takes whole numbers"):
        next_action_accuracy([2.9, 4.0, 2.0, 3.0], LABELS)
    assert next_action_accuracy([2.0, 4.0, 2.0, 2.0], LABELS)["next_action_accuracy"] == 0.75
    metric = load_metric("next_action_accuracy")
    assert metric.compute(predictions=[2.0, 4, 2, 2], references=LABELS)["next_action_accuracy"] == 0.75
    with pytest.raises(ValueError, match=r"next_actions\[0\] is 2.9; next_actions takes whole numbers"):
        metric.compute(predictions=[2.9, 4, 2, 3], references=LABELS)  # the evaluate module too
    with pytest.raises(ValueError, match=r"sequences\[0, 1\] is 2.5"):
        backward_time_rate([[1, 2.5, 4]], [[0, 1, 2]])
    expected = timing_mae(times, LABELS, LABEL_TIMES, LABEL_TIME_MASK, NAMES)
    as_bools = timing_mae(times, LABELS, LABEL_TIMES, np.array(LABEL_TIME_MASK, dtype=bool), NAMES)
    assert as_bools["mae"] == expected["mae"] and as_bools["timed_count"] == expected["timed_count"]
    for mask, bad in ((np.full((4, 4), 0.5), r"\[0, 0\] is 0.5"), ([[1, 1, 2, 0]] * 4, r"\[0, 2\] is 2.0"),
                      ([[1, 1, 1, 0], [1, math.nan, 0, 0], [1, 1, 1, 1], [1, 0, 1, 0]], r"\[1, 1\] is nan")):
        with pytest.raises(ValueError, match=rf"label_time_mask{bad}; a time mask holds 1 \(time known\) or 0"):
            timing_mae(times, LABELS, LABEL_TIMES, mask, NAMES)


def test_evaluate_modules_load_offline_and_match_the_functions():
    probabilities, times = toy_predictions()
    references = [
        {"labels": a, "label_times": b, "label_time_mask": c} for a, b, c in zip(LABELS, LABEL_TIMES, LABEL_TIME_MASK)
    ]
    oracle_probabilities, oracle_seconds = oracle_columns()
    sequences = [[1, 2, 4, 0], [1, 4, 0, 0], [1, 3, 2, 4], [1, 2, 0, 0]]
    sequence_times = [[0, 1, 2, 0], [0, 1, 0, 0], [0, 2, 1, 3], [0, 1, 0, 0]]
    stats = dict(time_log_mean=0.3, time_log_std=1.5)
    grouped = [{"labels": labels, "group_id": group} for labels, group in zip(LABELS, GROUPS)]
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
        "gauc": (dict(predictions=probabilities, references=grouped, action_names=NAMES),
                 gauc(probabilities, LABELS, GROUPS, NAMES)),
        "log_loss": (dict(predictions=probabilities, references=LABELS, action_names=NAMES),
                     log_loss(probabilities, LABELS, NAMES)),
        "calibration": (dict(predictions=probabilities, references=LABELS, action_names=NAMES, num_bins=4),
                        calibration(probabilities, LABELS, NAMES, num_bins=4)),
        "ranking_at_k": (dict(predictions=probabilities, references=grouped, action_names=NAMES, top_k=[1, 2]),
                         ranking_at_k(probabilities, LABELS, GROUPS, NAMES, top_k=(1, 2))),
    }
    assert set(calls) == set(METRIC_NAMES)
    for name, (inputs, expected) in calls.items():
        metric = load_metric(name)
        assert metric.name == name
        computed = metric.compute(**inputs)
        assert set(computed) == set(expected), name
        assert flatten_metrics(computed) == pytest.approx(flatten_metrics(expected), nan_ok=True), name
        assert computed.get("notes") == expected.get("notes")
        assert str(computed.get("reliability")) == str(expected.get("reliability"))  # NaN in empty bins
    with pytest.raises(ValueError, match="Unknown a2gen_hf metric 'roc_auc'"):
        metric_path("roc_auc")


def test_grouped_modules_take_the_group_ids_the_functions_take():
    # Before: string ids failed with "invalid literal for int()" and 1.2 / 1.7 were cut into one group (another GAUC).
    probabilities, _ = toy_predictions()
    probabilities[:, 2] = [0.9, 0.1, 0.2, 0.8]
    modules = {"gauc": gauc, "ranking_at_k": ranking_at_k}
    for group_ids in (["u1", "u1", "u2", "u2"], [1.2, 1.7, 1.2, 1.7], [7, 7, 9, 9], [7.0, 7, np.int64(9), 9.0],
                      np.array([3, 5, 5, 3]), [7, "7", 7, "7"],  # a number and its text: two groups, as in gauc()
                      [True, True, 1, 1],  # a bool and the int 1: two groups (the modules merged them)
                      [2**62, 2**62, 2**62 + 1, 0.5]):  # float64 merged the two integers beyond 2**53 in gauc()
        references = [{"labels": labels, "group_id": group} for labels, group in zip(LABELS, group_ids)]
        for name, function in modules.items():
            computed = load_metric(name).compute(predictions=probabilities, references=references, action_names=NAMES)
            expected = function(probabilities, LABELS, group_ids, NAMES)
            assert flatten_metrics(computed) == pytest.approx(flatten_metrics(expected), nan_ok=True), (name, group_ids)
            assert computed["notes"] == expected["notes"]
    assert math.isnan(gauc(probabilities, LABELS, [1.2, 1.7, 1.2, 1.7], NAMES)["gauc"]["like"])  # not 1.2 -> 1
    for bad, shown in ((None, "None"), (math.nan, "nan"), ([1], r"\[1\]")):
        references = [{"labels": labels, "group_id": group} for labels, group in zip(LABELS, [1, 1, 2, bad])]
        for name in modules:
            with pytest.raises(ValueError, match=rf"references\[3\]\['group_id'\] is {shown}; every example needs"):
                load_metric(name).compute(predictions=probabilities, references=references, action_names=NAMES)
    with pytest.raises(ValueError, match=r"references\[0\] has no 'group_id' \(it has \['labels'\]\); every reference needs"):
        load_metric("gauc").compute(predictions=probabilities, references=[{"labels": row} for row in LABELS],
                                    action_names=NAMES)  # before: a bare KeyError('group_id') from datasets
    metric = load_metric("gauc")
    for row, labels in zip(probabilities, LABELS):
        metric.add(prediction=row, reference={"labels": labels, "group_id": "u1"})
    assert metric.compute(action_names=NAMES)["gauc"] == gauc(probabilities, LABELS, ["u1"] * 4, NAMES)["gauc"]


def test_timed_modules_take_references_without_a_time_mask():
    # Before: leaving label_time_mask out, as the functions allow (None), failed with a bare KeyError from datasets.
    probabilities, times = toy_predictions()
    oracle_probabilities, oracle_seconds = oracle_columns()
    unmasked = [{"labels": a, "label_times": b} for a, b in zip(LABELS, LABEL_TIMES)]
    computed = load_metric("timing_mae").compute(predictions=times, references=unmasked, action_names=NAMES)
    expected = timing_mae(times, LABELS, LABEL_TIMES, None, NAMES)
    assert flatten_metrics(computed) == pytest.approx(flatten_metrics(expected), nan_ok=True)
    assert computed["timed_count"] == expected["timed_count"] == {"like": 2, "follow": 2, "leave": 4}
    with_oracle = [dict(row, oracle_action_prob=p, oracle_expected_seconds=s)
                   for row, p, s in zip(unmasked, oracle_probabilities, oracle_seconds)]
    computed = load_metric("oracle_comparison").compute(predictions=probabilities, references=with_oracle, action_names=NAMES)
    expected = oracle_comparison(probabilities, LABELS, LABEL_TIMES, None, oracle_probabilities, oracle_seconds, NAMES)
    assert flatten_metrics(computed) == pytest.approx(flatten_metrics(expected), nan_ok=True)
    some_masked = unmasked[:2] + [dict(row, label_time_mask=mask) for row, mask in zip(unmasked[2:], LABEL_TIME_MASK[2:])]
    with pytest.raises(ValueError, match=r"references\[0\] has no label_time_mask but references\[2\] has one"):
        load_metric("timing_mae").compute(predictions=times, references=some_masked, action_names=NAMES)


def test_bfloat16_tensors_are_read_as_float32():
    """The docs promise tensors; a bfloat16 one (a bf16 model's output) raised numpy's "unsupported ScalarType"."""
    probabilities, times = toy_predictions()
    as_bf16 = torch.tensor(probabilities).bfloat16()
    expected = compute_action_metrics(
        {"action_probabilities": as_bf16.float().numpy(), "expected_times": times},
        {"labels": LABELS, "label_times": LABEL_TIMES}, NAMES,
    )
    computed = compute_action_metrics(
        {"action_probabilities": as_bf16, "expected_times": torch.tensor(times).bfloat16()},
        {"labels": LABELS, "label_times": LABEL_TIMES}, NAMES,
    )
    assert computed["auc"] == expected["auc"]


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
    assert set(result["gauc"]) == set(result["logloss"]) == set(result["ndcg_at_10"]) == set(result["auc"])
    assert sum(result["reliability"]["like"][b]["count"] for b in range(10)) == 8
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


def test_evaluate_model_groups_by_the_raw_user_not_the_hash_bucket():
    """GAUC and NDCG@K grouped examples by the collator's hashed user_ids, so users sharing a bucket were one group
    (a probe: 89 users in 86 buckets moved GAUC by up to 0.04). user_groups keys the raw users apart."""
    import datasets

    from a2gen_hf.metrics import user_groups

    torch.manual_seed(0)
    config = tiny_config()
    model = A2GenForActionGeneration(config).eval()
    batches = [make_batch(config, seed=seed) for seed in (0, 1)]
    for batch in batches:
        batch["user_ids"] = torch.ones_like(batch["user_ids"])  # every user in one bucket: one group by the hash
    users = [f"user_{index % 4}" for index in range(8)]
    examples = datasets.Dataset.from_dict({"user": users})
    keys = user_groups(examples)
    assert keys.dtype == np.int64 and len(set(keys.tolist())) == 4
    assert user_groups(examples.remove_columns("user")) is None
    merged = evaluate_model(model, batches)
    by_user = evaluate_model(model, batches, groups=keys)
    as_strings = evaluate_model(model, batches, groups=np.asarray(users))  # the keys lose nothing
    assert by_user["gauc"] == pytest.approx(as_strings["gauc"], nan_ok=True)
    assert by_user["ndcg_at_10"] == pytest.approx(as_strings["ndcg_at_10"], nan_ok=True)
    assert by_user["gauc"] != pytest.approx(merged["gauc"], nan_ok=True)
    with pytest.raises(ValueError, match="groups has 5 entries but the dataloader gave 8 examples"):
        evaluate_model(model, batches, groups=keys[:5])
    ints = datasets.Dataset.from_dict({"user": [1, 2, 1]}).with_format("torch")  # raw values, whatever the format
    assert user_groups(ints).tolist()[0] == user_groups(ints).tolist()[2] != user_groups(ints).tolist()[1]
    with pytest.raises(TypeError, match="a streamed IterableDataset cannot be aligned"):
        user_groups(examples.to_iterable_dataset())


def test_evaluate_model_refuses_a_shuffled_dataloader_with_groups_and_takes_user_keys():
    """Before: groups given beside DataLoader(shuffle=True) were paired with the wrong examples (a GAUC of 0.264 read
    as 0.323), and the user_keys of A2GenDataCollator(user_keys=True) reached predict_actions, which refused them."""
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    config = tiny_config()
    model = A2GenForActionGeneration(config).eval()
    batch = make_batch(config, seed=0)
    rows = [{name: value[index] for name, value in batch.items()} for index in range(len(batch["user_ids"]))]

    def collate(items):
        return {name: torch.stack([item[name] for item in items]) for name in items[0]}

    groups = np.arange(len(rows)) % 3
    with pytest.raises(ValueError, match=r"the dataloader shuffles them \(shuffle=True\)"):
        evaluate_model(model, DataLoader(rows, batch_size=4, shuffle=True, collate_fn=collate), groups=groups)
    in_order = evaluate_model(model, DataLoader(rows, batch_size=4, collate_fn=collate), groups=groups)

    def with_keys(items):
        return {**collate(items), "user_keys": torch.tensor([int(item["index"]) % 3 for item in items])}

    keyed = [{**row, "index": torch.tensor(index)} for index, row in enumerate(rows)]
    by_keys = evaluate_model(
        model, DataLoader(keyed, batch_size=4, collate_fn=lambda items: {
            key: value for key, value in with_keys(items).items() if key != "index"}), group_column="user_keys",
    )
    assert by_keys["gauc"] == pytest.approx(in_order["gauc"], nan_ok=True)


def test_recommender_metrics_toy():
    probabilities, times = toy_predictions()
    # like happens in rows 0 and 2: user 7 has rows 0 (0.9, yes) and 1 (0.1, no), user 9 rows 2 (0.8, yes), 3 (0.2).
    result = gauc(probabilities, LABELS, GROUPS, NAMES)
    assert result["gauc"]["like"] == 1.0 and result["gauc_groups"]["like"] == 2
    # follow happens in rows 2 and 3: every row of user 9, none of user 7, so no user has both classes.
    assert math.isnan(result["gauc"]["follow"]) and result["gauc_groups"]["follow"] == 0
    # mean_gauc averages the GAUCs the tables show (>= MIN_GAUC_GROUPS users): none here, so NaN with a note.
    assert result["notes"] == ["gauc[follow]: undefined (NaN), no group has both examples with and without it.",
                               "mean_gauc: undefined (NaN), no action's GAUC averages over at least 10 groups (users "
                               "holding both classes: like 2, follow 0)."]
    assert math.isnan(result["mean_gauc"])
    ranking = ranking_at_k(probabilities, LABELS, GROUPS, NAMES, top_k=(1,))
    assert ranking["ndcg_at_1"]["like"] == 1.0 and ranking["recall_at_1"]["like"] == 1.0
    # follow, user 9: both rows relevant, ties keep order; top 1 holds 1 of 2 positives.
    assert ranking["recall_at_1"]["follow"] == 0.5 and ranking["ndcg_at_1"]["follow"] == 1.0
    assert ranking["ranking_groups"] == {"like": 2, "follow": 1}
    losses = log_loss(probabilities, LABELS, NAMES)["logloss"]
    assert losses["follow"] == pytest.approx(math.log(2))
    assert losses["like"] == pytest.approx(-(math.log(0.9) + math.log(0.9) + math.log(0.8) + math.log(0.8)) / 4)
    calibrated = calibration(probabilities, LABELS, NAMES, num_bins=2)
    assert calibrated["predicted_rate"]["like"] == pytest.approx(0.5) and calibrated["observed_rate"]["like"] == 0.5
    assert calibrated["calibration"]["like"] == pytest.approx(1.0)
    low, high = calibrated["reliability"]["like"]
    assert (low["count"], low["mean_predicted"], low["observed_rate"]) == (2, pytest.approx(0.15), 0.0)
    assert (high["count"], high["mean_predicted"], high["observed_rate"]) == (2, pytest.approx(0.85), 1.0)
    assert calibrated["ece"]["like"] == pytest.approx(0.15)
    # follow: P = 0.5 falls in the upper bin (bins are [low, high), the last one closed).
    assert [row["count"] for row in calibrated["reliability"]["follow"]] == [0, 4]


def test_a_probability_on_a_bin_edge_opens_its_bin():
    """linspace's edge 0.30000000000000004 put p = 0.3 in [0.2, 0.3) and left [0.3, 0.4) empty."""
    from a2gen_hf.metrics import reliability_table

    probabilities = np.arange(11) / 10  # 0.0, 0.1, ..., 1.0: every edge once
    table = reliability_table(np.zeros(11), probabilities, num_bins=10)
    assert [row["count"] for row in table] == [1] * 9 + [2]  # the last bin is closed: 0.9 and 1.0
    assert [row["low"] for row in table] == [b / 10 for b in range(10)]
    assert table[3]["mean_predicted"] == pytest.approx(0.3) and table[7]["mean_predicted"] == pytest.approx(0.7)


def random_grouped_case(seed=0, size=600, ties=False):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 40, size)
    happens = rng.random(size) < 0.3
    scores = rng.random(size) * 0.7 + 0.3 * happens
    if ties:
        scores = np.round(scores, 1)
    labels = np.where(happens[:, None], [[1, 2, 4]], [[1, 4, 0]])
    probabilities = np.zeros((size, 5))
    probabilities[:, 2] = scores
    return groups, happens, probabilities, labels


def test_gauc_equals_per_user_sklearn_auc_weighted_by_examples():
    groups, happens, probabilities, labels = random_grouped_case(ties=True)
    aucs, weights = [], []
    for group in np.unique(groups):
        rows = groups == group
        if happens[rows].all() or not happens[rows].any():
            continue
        aucs.append(roc_auc_score(happens[rows], probabilities[rows, 2]))
        weights.append(rows.sum())
    result = gauc(probabilities, labels, groups, NAMES)
    assert result["gauc"]["like"] == pytest.approx(np.average(aucs, weights=weights))
    assert result["gauc_groups"]["like"] == len(aucs)
    assert math.isnan(result["gauc"]["follow"]) and "gauc[follow]" in result["notes"][0]
    # Group ids may be any values: strings group the same way.
    assert gauc(probabilities, labels, [f"u{g}" for g in groups], NAMES)["gauc"] == result["gauc"]
    with pytest.raises(ValueError, match="one group id"):
        gauc(probabilities, labels, groups[:-1], NAMES)


def test_group_ids_without_a_value_are_refused():
    # Before: None raised "'<' not supported" from np.unique, and the NaN rows silently formed one group.
    probabilities, _ = toy_predictions()
    for group_ids, first_bad in (([None, "a", "a", "b"], "0] is None"), ([np.nan, 1.0, np.nan, 1.0], "0] is nan"),
                                 ([1, 1, 2, None], "3] is None"), (torch.tensor([1.0, 1.0, 2.0, math.nan]), "3] is nan")):
        for metric in (gauc, ranking_at_k):
            with pytest.raises(ValueError, match=rf"group_ids\[{first_bad}; every example needs a group id"):
                metric(probabilities, LABELS, group_ids, NAMES)
    with pytest.raises(ValueError, match=r"group_ids\[1\] is nan"):
        compute_action_metrics(
            {"action_probabilities": probabilities, "expected_times": np.zeros((4, 5))},
            {"labels": LABELS, "label_times": LABEL_TIMES, "group_ids": [1.5, math.nan, 1.5, 2.5]}, NAMES,
        )
    # Ids of different kinds are different groups (as the bootstrap over users reads them), not refused.
    mixed = gauc(probabilities, LABELS, np.array(["a", b"a", "b", "b"], dtype=object), NAMES)
    assert mixed["gauc"] == gauc(probabilities, LABELS, ["a", "c", "b", "b"], NAMES)["gauc"]


def test_no_examples_give_nan_with_notes():
    # Before: gauc and compute_action_metrics with group ids raised IndexError (index -1) on zero rows.
    empty_probabilities, empty_labels = np.zeros((0, 5)), np.zeros((0, 4), dtype=np.int64)
    result = gauc(empty_probabilities, empty_labels, [], NAMES)
    assert math.isnan(result["gauc"]["like"]) and result["gauc_groups"] == {"like": 0, "follow": 0}
    assert math.isnan(result["mean_gauc"]) and "gauc[like]: undefined (NaN)" in result["notes"][0]
    result = compute_action_metrics(
        {"action_probabilities": empty_probabilities, "expected_times": empty_probabilities,
         "next_actions": np.zeros(0, dtype=np.int64), "sequences": empty_labels, "sequence_times": np.zeros((0, 4))},
        {"labels": empty_labels, "label_times": np.zeros((0, 4)), "group_ids": []}, NAMES, top_k=(1, 5),
    )
    assert result["num_examples"] == 0
    values = list(flatten_metrics(result).values())
    assert values and all(math.isnan(value) for value in values)
    for key in ("auc[like]", "mae[leave]", "logloss[like]", "calibration[like]", "gauc[follow]", "ndcg/recall[like]",
                "next_action_accuracy", "backward_time_rate"):
        assert any(note.startswith(key) for note in result["notes"]), key


def test_top_k_and_bins_are_positive_ints():
    # Before: top_k=[2.9] reported ndcg_at_2, [True] @1, ["5"] @5, 10 and [nan] raised TypeError / a bare
    # conversion error, and 2.0 bins a TypeError; without group ids a bad top_k passed unseen.
    probabilities, times = toy_predictions()
    ranked = ranking_at_k(probabilities, LABELS, GROUPS, NAMES, top_k=np.int64(2))
    assert ranked["ndcg_at_2"] == ranking_at_k(probabilities, LABELS, GROUPS, NAMES, top_k=(2,))["ndcg_at_2"]
    assert "ndcg_at_1" in ranking_at_k(probabilities, LABELS, GROUPS, NAMES, top_k=np.array([2, 1, 2]))
    predictions = {"action_probabilities": probabilities, "expected_times": times}
    references = {"labels": LABELS, "label_times": LABEL_TIMES}
    assert "ndcg_at_3" in compute_action_metrics(predictions, dict(references, group_ids=GROUPS), NAMES, top_k=3)
    for top_k in ([2.9], [True], ["5"], "10", [math.nan], 2.0, [], [0], None, {5: 1}, np.array([[1, 2]])):
        with pytest.raises(ValueError, match=r"top_k=.* must be a positive int or a sequence of them, the cut-offs"):
            ranking_at_k(probabilities, LABELS, GROUPS, NAMES, top_k=top_k)
        with pytest.raises(ValueError, match=r"top_k=.* must be a positive int or a sequence of them"):
            compute_action_metrics(predictions, references, NAMES, top_k=top_k)
    assert len(calibration(probabilities, LABELS, NAMES, num_bins=np.int64(3))["reliability"]["like"]) == 3
    for bins in (2.0, 2.5, True, "10", 0):
        with pytest.raises(ValueError, match=r"num_bins=.* must be a positive int"):
            calibration(probabilities, LABELS, NAMES, num_bins=bins)
        with pytest.raises(ValueError, match=r"calibration_bins=.* must be a positive int"):
            compute_action_metrics(predictions, references, NAMES, calibration_bins=bins)


def test_evaluate_model_checks_its_metric_options_before_predicting():
    class Unpredictable:
        config = tiny_config()

        def predict_actions(self, **batch):
            raise AssertionError("predicted before the options were checked")

    for options, message in ((dict(top_k=[2.9]), "top_k"), (dict(calibration_bins=2.5), "calibration_bins"),
                             (dict(topk=5), r"Unknown metric options \['topk'\]")):
        with pytest.raises(ValueError, match=message):
            evaluate_model(Unpredictable(), [make_batch(Unpredictable.config)], **options)


def test_log_loss_equals_sklearn():
    _, happens, probabilities, labels = random_grouped_case(seed=2)
    probabilities[0, 2] = 0.0  # clipped, not infinite
    expected = sklearn_log_loss(happens, np.clip(probabilities[:, 2], 1e-12, 1 - 1e-12))
    assert log_loss(probabilities, labels, NAMES)["logloss"]["like"] == pytest.approx(expected, rel=1e-3)
    assert math.isfinite(log_loss(probabilities, labels, NAMES)["mean_logloss"])


def test_the_ranking_table_names_the_users_of_each_gauc_and_reads_n_a_below_the_minimum():
    """From a probe: a GAUC over one user with one positive was printed as a plain "0.0000". The table now has the
    users each GAUC averages over beside it, and below MIN_GAUC_GROUPS the GAUC reads n/a with its figure."""
    probabilities, _ = toy_predictions()
    actions = {"auc": dict.fromkeys(("like", "follow"), 0.5)}  # the table's rows: the actions of the AUC
    few = {**actions, **gauc(probabilities, LABELS, GROUPS, NAMES)}  # like: 2 users with both classes; follow: none
    table = format_ranking_table({"m": few})
    header, like, follow = table.splitlines()[:3]

    def cells(line):  # the table's columns stand two spaces or more apart
        return re.split(r"\s{2,}", line.strip())

    assert cells(header) == ["action", "GAUC", "GAUC users"]
    assert cells(like) == ["like", "n/a (2 users: 1.0000)", "2"]
    assert cells(follow) == ["follow", "n/a", "0"]
    assert f"over fewer than {MIN_GAUC_GROUPS} such users it reads n/a" in table
    users = np.repeat(np.arange(MIN_GAUC_GROUPS), 2)  # every user one like and one not, ranked right
    labels = [[1, 2, 4] if row % 2 == 0 else [1, 4, 0] for row in range(users.size)]
    scores = np.zeros((users.size, 5))
    scores[:, 2] = np.where(np.arange(users.size) % 2 == 0, 0.9, 0.1)
    enough = format_ranking_table({"a": {**actions, **gauc(scores, labels, users, NAMES)}, "b": few})
    header, like = enough.splitlines()[:2]
    assert cells(header) == ["action", "GAUC a", "GAUC b", "GAUC users a", "GAUC users b"]
    assert cells(like) == ["like", "1.0000", "n/a (2 users: 1.0000)", str(MIN_GAUC_GROUPS), "2"]
    assert "reads n/a" not in format_ranking_table({"a": {**actions, **gauc(scores, labels, users, NAMES)}})
    assert gauc_cell("0.4092", None) == "0.4092" and gauc_cell("0.0000", 1) == "n/a (1 user: 0.0000)"


def test_flatten_keeps_counts_and_tables_out():
    probabilities, times = toy_predictions()
    result = compute_action_metrics(
        {"action_probabilities": probabilities, "expected_times": times, "next_actions": [2, 4, 2, 2]},
        {"labels": LABELS, "label_times": LABEL_TIMES, "label_time_mask": LABEL_TIME_MASK, "group_ids": GROUPS},
        NAMES,
        top_k=(1, 2),
    )
    assert result["gauc"]["like"] == 1.0 and result["positives"]["like"] == 2
    assert result["gauc_groups"]["like"] == 2 and "reliability" in result
    flat = flatten_metrics(result)
    assert flat["gauc_like"] == 1.0 and flat["ndcg_at_2_like"] == 1.0 and "logloss_like" in flat
    assert "calibration_like" in flat and "ece_like" in flat
    for key in flat:
        assert not any(key == count or key.startswith(f"{count}_") for count in COUNT_KEYS), key
        assert not key.startswith("reliability")
    table = format_ranking_table({"m": result})
    assert "GAUC" in table and "NDCG@2" in table and "Recall@1" in table and "like" in table
    without_groups = compute_action_metrics(
        {"action_probabilities": probabilities, "expected_times": times},
        {"labels": LABELS, "label_times": LABEL_TIMES}, NAMES,
    )
    assert "gauc" not in without_groups and "logloss" in without_groups


def test_predict_dataloader_is_the_one_loop():
    torch.manual_seed(0)
    config = tiny_config()
    model = A2GenForActionGeneration(config).eval()
    batches = [make_batch(config, seed=seed) for seed in (0, 1)]
    arrays = predict_dataloader(model, batches, generate=True)
    assert arrays["action_probabilities"].shape == (8, config.vocab_size)
    assert arrays["group_ids"].tolist() == torch.cat([b["user_ids"] for b in batches]).tolist()
    assert arrays["next_actions"].tolist() == arrays["sequences"][:, 1].tolist()
    expected = torch.cat([model.predict_actions(**b).action_probabilities for b in batches]).numpy()
    np.testing.assert_allclose(arrays["action_probabilities"], expected, rtol=1e-6)
    plain = predict_dataloader(model, batches, references=False)
    assert set(plain) == {"action_probabilities", "expected_times"}
    with pytest.raises(ValueError, match="empty"):
        predict_dataloader(model, [])


def test_a_group_column_the_batches_lack_is_refused():
    # Before: GAUC and NDCG / Recall were silently left out of the result for a misspelt or missing group column.
    config = tiny_config()
    model = A2GenForActionGeneration(config).eval()
    batches = [make_batch(config, seed=0)]
    with pytest.raises(ValueError, match=r"group_column='request_id' is missing in the batch \(its keys: \[.*'user_ids'"):
        evaluate_model(model, batches, group_column="request_id")
    with pytest.raises(ValueError, match="group_column='notes' is not a tensor"):
        predict_dataloader(model, [dict(batches[0], notes=["a"] * 4)], group_column="notes")
    assert "group_ids" not in predict_dataloader(model, batches, group_column=None)
    assert "gauc" not in evaluate_model(model, batches, group_column=None)
    assert "group_ids" not in predict_dataloader(model, batches, references=False, group_column="request_id")


def test_nan_label_times_are_unknown_and_refused_where_the_mask_says_known():
    """NaN reference times are unknown times (as in the data): without a mask they count as unknown, exactly as mask 0
    would; with a mask of 1 at a NaN the references are refused, naming the place (before: that action's MAE was NaN
    and the mean over actions silently left it out)."""
    from a2gen_hf.metrics import compute_action_metrics

    names = ["start", "like", "follow", "leave"]
    labels = [[1, 2, 4, 0], [1, 4, 0, 0], [1, 2, 3, 4], [1, 3, 4, 0]]
    times = [[0.0, 0.5, 1.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.2, 0.3, 0.9], [0.0, 0.1, 0.4, 0.0]]
    mask = [[1 if action else 0 for action in row] for row in labels]
    predictions = {"action_probabilities": np.full((4, 5), 0.5), "expected_times": np.zeros((4, 5))}
    unknown = [row[:] for row in mask]
    unknown[0][1] = 0
    expected = compute_action_metrics(predictions, {"labels": labels, "label_times": times,
                                                    "label_time_mask": unknown}, names)  # fmt: skip
    times[0][1] = math.nan
    without_mask = compute_action_metrics(predictions, {"labels": labels, "label_times": times}, names)
    assert without_mask["mae"] == expected["mae"] and without_mask["timed_count"] == expected["timed_count"]
    assert without_mask["timed_count"]["like"] == 1 and math.isfinite(without_mask["mean_mae"])
    with pytest.raises(ValueError, match=r"label_times\[0, 1\] is NaN where label_time_mask\[0, 1\] is 1"):
        compute_action_metrics(predictions, {"labels": labels, "label_times": times, "label_time_mask": mask}, names)


@pytest.mark.parametrize("ties", [False, True])
def test_ndcg_and_recall_equal_sklearn_per_group_and_average_over_tied_orders(ties):
    """Per group as sklearn's NDCG and the recall; tied scores count as in a random order (sklearn's tie-averaged
    NDCG, the expected recall), so the figures are the same whatever the rows' order (before: a relevant row first in
    a tie scored NDCG@10 1.0, last 0.0)."""
    groups, happens, probabilities, labels = random_grouped_case(seed=1 + ties, ties=ties)
    result = ranking_at_k(probabilities, labels, groups, NAMES, top_k=(3, 10))
    for k in (3, 10):
        ndcg, recall = [], []
        for group in np.unique(groups):
            rows = groups == group
            if not happens[rows].any():
                continue
            scores, relevant = probabilities[rows, 2], happens[rows].astype(float)
            ndcg.append(ndcg_score(relevant[None], scores[None], k=k) if rows.sum() > 1 else 1.0)
            above = scores[:, None] > scores[None, :]
            tied = scores[:, None] == scores[None, :]
            rank_low = above.sum(0)  # rows scored above each row
            block = tied.sum(0)
            in_top = np.clip((k - rank_low) / block, 0, 1)  # the chance each row lands in the top k
            recall.append((relevant * in_top).sum() / relevant.sum())
        assert result[f"ndcg_at_{k}"]["like"] == pytest.approx(np.mean(ndcg))
        assert result[f"recall_at_{k}"]["like"] == pytest.approx(np.mean(recall))
    reverse = np.arange(len(groups))[::-1]
    flipped = ranking_at_k(probabilities[reverse], labels[reverse], groups[reverse], NAMES, top_k=(3, 10))
    for key in ("ndcg_at_3", "recall_at_10"):
        assert flipped[key]["like"] == pytest.approx(result[key]["like"])
    with pytest.raises(ValueError, match="cut-offs"):
        ranking_at_k(probabilities, labels, groups, NAMES, top_k=(0,))


def test_an_infinite_mae_in_seconds_gets_a_note():
    """A finite normalised time too large for seconds gives an infinite MAE, which JSON writes as null: a note says
    why (before: none, so it read as undefined)."""
    from a2gen_hf.metrics import timing_mae

    times = np.zeros((4, 5))
    times[:, 4] = 1e4  # exp(1e4) seconds overflows
    result = timing_mae(times, LABELS, LABEL_TIMES, None, NAMES)
    assert math.isinf(result["mae_seconds"]["leave"]) and math.isfinite(result["mae"]["leave"])
    assert any(note.startswith("mae_seconds[leave]: infinite") for note in result["notes"])


def test_every_module_gives_nan_with_notes_for_no_examples():
    """Given no examples (predictions=[], references=[]), the modules failed on the empty list's shape, where the
    functions give NaN with notes (as the docs say)."""
    for name in ("action_auc", "gauc", "timing_mae", "log_loss", "calibration", "ranking_at_k", "oracle_comparison"):
        result = load_metric(name).compute(predictions=[], references=[], action_names=NAMES)
        assert result["notes"] and all("undefined" in note for note in result["notes"]), name
    for name in ("next_action_accuracy", "time_order"):
        result = load_metric(name).compute(predictions=[], references=[])
        assert math.isnan(next(value for key, value in result.items() if key.endswith(("accuracy", "rate")))), name


def test_label_and_generated_times_are_checked_where_they_were_read_wrong():
    probabilities, times = toy_predictions()
    # A row of times shorter than its labels: the missing time was padded as a known 0 s (an MAE of 1.5 for leave).
    with pytest.raises(ValueError, match=r"label_times\[0\] has 2 entries but labels\[0\] has 3"):
        timing_mae(np.zeros((2, 5)), [[1, 2, 4], [1, 2, 3, 4]], [[0.0, 1.0], [0.0, 1.0, 2.0, 3.0]], None, NAMES)
    with pytest.raises(ValueError, match=r"label_time_mask\[1\] has 3 entries but labels\[1\] has 4"):
        timing_mae(np.zeros((2, 5)), [[1, 2, 4], [1, 2, 3, 4]], [[0, 1, 2], [0, 1, 2, 3]], [[1, 1, 1], [1, 1, 1]], NAMES)
    # An infinite known label time: an infinite MAE, noted as if a prediction were too large.
    with pytest.raises(ValueError, match=r"label_times\[0, 1\] is inf; a known label time must be finite"):
        timing_mae(np.zeros((2, 5)), [[1, 2, 4], [1, 2, 4]], [[0, math.inf, 2], [0, 1, 2]], None, NAMES)
    masked = timing_mae(np.zeros((2, 5)), [[1, 2, 4], [1, 2, 4]], [[0, math.inf, 2], [0, 1, 2]],
                        [[1, 0, 1], [1, 1, 1]], NAMES)  # an unknown time may hold anything
    assert masked["timed_count"]["like"] == 1
    # NaN generated times compared false both ways and counted as in order.
    with pytest.raises(ValueError, match=r"sequence_times\[0, 1\] is nan for an action"):
        backward_time_rate([[1, 2, 4]], [[0.0, math.nan, 1.0]])
    with pytest.raises(ValueError, match="sequence_times is missing: give the generated times with the sequences"):
        compute_action_metrics({"action_probabilities": probabilities, "expected_times": times,
                                "sequences": [[1, 2, 4]] * 4}, {"labels": LABELS, "label_times": LABEL_TIMES}, NAMES)


def test_oracle_columns_are_checked_by_name():
    probabilities, _ = toy_predictions()
    oracle_probabilities, seconds = np.full((4, 4), 0.5), np.ones((4, 4))
    with pytest.raises(ValueError, match="the oracle columns have 3 rows for 4 label rows"):  # before: numpy IndexError
        oracle_comparison(probabilities, LABELS, LABEL_TIMES, None, oracle_probabilities[:3], seconds[:3], NAMES)
    with pytest.raises(ValueError, match="oracle_action_prob has 4 rows and oracle_expected_seconds 3"):
        oracle_comparison(probabilities, LABELS, LABEL_TIMES, None, oracle_probabilities, seconds[:3], NAMES)
    for bad in (math.inf, -5.0):  # before: a finite 9e307 MAE; "is NaN (the action cannot happen)"
        wrong = seconds.copy()
        wrong[0, 1] = bad
        with pytest.raises(ValueError, match=rf"oracle_expected_seconds\[0, 1\] is {bad}; an expected time is a finite"):
            oracle_comparison(probabilities, LABELS, LABEL_TIMES, None, oracle_probabilities, wrong, NAMES)


def test_the_metrics_table_names_the_logs_own_end_action():
    """The end action's time row is named as the log names its end action (a shop log's `exit`), not "leave (watch
    time)" whatever the log; the oracle column reads that action's time."""
    from a2gen_hf.metrics import format_metrics_table

    probabilities, times = toy_predictions()
    oracle_probabilities, oracle_seconds = oracle_columns()
    names = ["start", "like", "follow", "exit"]
    result = compute_action_metrics(
        {"action_probabilities": probabilities, "expected_times": times},
        {"labels": LABELS, "label_times": LABEL_TIMES, "label_time_mask": LABEL_TIME_MASK,
         "oracle_action_prob": oracle_probabilities, "oracle_expected_seconds": oracle_seconds},
        names, end_action="exit",
    )
    rows = format_metrics_table({"model": result}).splitlines()
    end_row = next(row for row in rows if row.startswith("exit (end of the session)"))
    assert f"{result['leave_mae_seconds']:.2f}" in end_row and f"{result['oracle_mae_seconds']['exit']:.2f}" in end_row
    assert not any("leave" in row or "watch time" in row for row in rows)


def test_the_zero_time_tolerance_and_start_equal_to_end_are_checked():
    """Before: a NaN tolerance made every mae_nonzero NaN with counts of 0 (a string failed in numpy, after the whole
    prediction loop of evaluate_model); start_action == end_action failed with a bare KeyError."""
    probabilities, times = toy_predictions()
    predictions = {"action_probabilities": probabilities, "expected_times": times}
    references = {"labels": np.array(LABELS), "label_times": np.array(LABEL_TIMES),
                  "label_time_mask": np.array(LABEL_TIME_MASK)}
    for tolerance in (float("nan"), -1.0, "1", True):
        with pytest.raises(ValueError, match=r"zero_time_tolerance_seconds=.* must be a finite number of seconds >= 0"):
            compute_action_metrics(predictions, references, NAMES, zero_time_tolerance_seconds=tolerance)
    assert compute_action_metrics(predictions, references, NAMES, zero_time_tolerance_seconds=0)["auc"]
    torch.manual_seed(0)
    config = tiny_config()
    with pytest.raises(ValueError, match=r"zero_time_tolerance_seconds=nan must be"):
        evaluate_model(A2GenForActionGeneration(config).eval(), [make_batch(config)], zero_time_tolerance_seconds=math.nan)
    with pytest.raises(ValueError, match="start_action and end_action are both 'leave'"):
        compute_action_metrics(predictions, references, NAMES, start_action="leave")


def test_text_tables_keep_their_columns_with_wide_action_names():
    """From a probe: `a2gen evaluate`'s columns went out of line after a CJK action name (two columns on screen)."""
    from a2gen_hf.metrics.tables import _aligned, display_width

    assert display_width("收藏") == 4 and display_width("like") == 4 and display_width("e\u0301") == 1
    lines = _aligned([["action", "AUC"], ["收藏", "0.5000"], ["like_❤", "0.7000"], ["e\u0301x", "0.1"]]).splitlines()
    assert len({display_width(line) for line in lines}) == 1  # every row ends in the same screen column
    assert lines[1].startswith("收藏  ") and lines[1].endswith("0.5000")


def test_label_rows_without_the_start_action_are_refused():
    """From a probe: rows written the text-model way (actions without the start) lost their first action from every
    metric without a word (like counted once instead of twice here)."""
    probabilities, times = toy_predictions()
    without_start = [row[1:] + [0] for row in LABELS]
    with pytest.raises(ValueError, match=r"labels\[0\] opens with 2, not the start action 'start' \(id 1\)"):
        action_auc(probabilities, without_start, NAMES)
    references = {"labels": np.array(without_start), "label_times": np.array(LABEL_TIMES)}
    with pytest.raises(ValueError, match=r"not the start action 'start'.*tokenizer\.encode_labels"):
        compute_action_metrics({"action_probabilities": probabilities, "expected_times": times}, references, NAMES)
    assert action_auc(probabilities, LABELS, NAMES)["positives"]["like"] == 2  # the start given: read as before


def test_a_label_time_beyond_seconds_is_named_as_such():
    """From a probe: an infinite MAE in seconds from a label time blamed the predicted time, and NaN had no note."""
    _, times = toy_predictions()
    huge = np.array(LABEL_TIMES)
    huge[0, 1] = 1e6  # a normalised label time no seconds can hold
    result = timing_mae(times, LABELS, huge, LABEL_TIME_MASK, NAMES)
    assert any(note.startswith("mae_seconds[like]: infinite, some true (label) time is beyond what seconds can hold")
               for note in result["notes"])  # fmt: skip
    both = np.array(times, dtype=float)
    both[0, 2] = 1e6
    result = timing_mae(both, LABELS, huge, LABEL_TIME_MASK, NAMES)
    assert "mae_seconds[like]: NaN, some predicted time is beyond what seconds can hold (a normalised time of 1e+06) " \
           "and some true (label) time is beyond" in " ".join(result["notes"])
