"""Edge cases of the metrics from probe s29: what a summary averages over, cut-offs K that no group exceeds, the log
loss's one clipping rule, the low-level AUC helpers' inputs (non-finite scores, sparse ids, bfloat16), TorchRec ids
out of range, and the checks of a bootstrap row."""

import json
import math
import os
import re
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss as sklearn_log_loss
from sklearn.metrics import roc_auc_score

from a2gen_hf.metrics import (
    MIN_GAUC_GROUPS,
    compute_action_metrics,
    flatten_metrics,
    format_ranking_table,
    gauc,
    gauc_cell,
    group_aucs,
    log_loss,
    oracle_comparison,
    ranking_at_k,
)
from a2gen_hf.metrics.action_metrics import group_numbers
from a2gen_hf.metrics.auc import auc, midranks
from a2gen_hf.metrics.tables import too_few_gauc_groups
from a2gen_hf.training import statistics

NAMES = ["start", "like", "follow", "leave"]  # ids: pad 0, start 1, like 2, follow 3, leave 4


def _users_case(like_users: int, follow_users: int, rows_per_user: int = 2, seed: int = 0):
    """Per user ``rows_per_user`` examples; like has both classes in the first ``like_users`` users, follow in the
    first ``follow_users`` (the others hold no positive of it)."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(max(like_users, follow_users) + 2), rows_per_user)
    first_row = np.r_[True, users[1:] != users[:-1]]
    labels = []
    for user, first in zip(users, first_row):
        actions = [1]
        if first and user < like_users:
            actions.append(2)
        if first and user < follow_users:
            actions.append(3)
        labels.append(actions + [4] + [0] * (4 - len(actions)))
    probabilities = np.zeros((users.size, 5))
    probabilities[:, 2:4] = rng.random((users.size, 2))
    return probabilities, labels, users


# --- 1. mean_gauc averages the GAUCs the tables show ---------------------------------------------------------------


def test_mean_gauc_leaves_out_the_gaucs_the_tables_print_n_a():
    """Probe s29: mean_gauc averaged a GAUC from 4 users (0.125) into 0.44, while the tables printed it n/a; over the
    GAUCs shown it is 0.64."""
    probabilities, labels, users = _users_case(like_users=MIN_GAUC_GROUPS + 2, follow_users=3)
    result = gauc(probabilities, labels, users, NAMES)
    assert result["gauc_groups"] == {"like": MIN_GAUC_GROUPS + 2, "follow": 3}
    assert result["mean_gauc"] == result["gauc"]["like"]  # follow's GAUC (3 users) is left out
    from a2gen_hf.metrics.action_metrics import mean_gauc_label

    assert mean_gauc_label(result["gauc_groups"]) == f"mean GAUC (like; follow n/a: fewer than {MIN_GAUC_GROUPS} users)"
    table = format_ranking_table({"m": {"auc": {"like": 0.5, "follow": 0.5}, **result}})
    last = [line for line in table.splitlines() if line.startswith("mean GAUC")]
    assert last and last[0].startswith("mean GAUC (like) ") and f"{result['mean_gauc']:.4f}" in last[0]
    # The probe's smallest case: one user, one GAUC of 0 -> NaN with a note, not 0.0.
    one = gauc(np.tile([0, 1, 0.9, 0.1, 1], (6, 1)), [[1, 2, 4, 0], [1, 4, 0, 0]] * 3, list("aabbcc"), NAMES)
    assert math.isnan(one["mean_gauc"]) and any(note.startswith("mean_gauc: undefined") for note in one["notes"])


def test_the_tables_and_the_mean_read_one_rule_for_too_few_users():
    from a2gen_hf.metrics.action_metrics import gauc_is_shown, mean_gauc_label

    for groups in (None, 0, 1, MIN_GAUC_GROUPS - 1, MIN_GAUC_GROUPS, MIN_GAUC_GROUPS + 5):
        shown = gauc_cell("0.5000", groups) == "0.5000"
        assert shown == gauc_is_shown(groups) or groups == 0
        assert too_few_gauc_groups(groups) == (groups is not None and groups > 0 and not gauc_is_shown(groups))
    assert mean_gauc_label({"like": 12, "follow": 0}) == "mean GAUC (like; follow undefined: no user holds both classes)"
    assert mean_gauc_label({"like": 12, "follow": 10}) == "mean GAUC"


# --- 2. NDCG@K / Recall@K where no group has more than K candidates ------------------------------------------------


def test_ranking_at_k_reports_the_groups_over_k_and_notes_a_k_no_group_exceeds():
    """Probe s29: with at most 5 examples per user, Recall@10 was 1.0000 for every action and model, unremarked."""
    probabilities, labels, users = _users_case(like_users=12, follow_users=12, rows_per_user=3)
    result = ranking_at_k(probabilities, labels, users, NAMES, top_k=(1, 10))
    assert result["recall_at_10"]["like"] == 1.0
    assert result["ranking_groups_over_10"] == {"like": 0, "follow": 0}
    assert result["ranking_groups_over_1"] == {"like": 12, "follow": 12}
    assert any(note.startswith("ndcg_at_10/recall_at_10[like]: only 0 of the 12 groups") for note in result["notes"])
    assert not any(note.startswith("ndcg_at_1/") for note in result["notes"])
    full = compute_action_metrics(
        {"action_probabilities": probabilities, "expected_times": np.zeros_like(probabilities)},
        {"labels": labels, "label_times": np.zeros((len(labels), 5)), "group_ids": users}, NAMES, top_k=(1, 10),
    )
    assert full["ranking_groups_over_10"] == {"like": 0, "follow": 0}
    assert not any(key.startswith("ranking_groups_over") for key in flatten_metrics(full))  # a count
    table = format_ranking_table({"m": full})
    assert "NDCG@10 / Recall@10: few users hold more than 10 examples" in table and "like 0 of 12" in table
    assert "NDCG@1 / Recall@1" not in table


# --- 3. LogLoss: one clipping rule (float64's eps) for every input ------------------------------------------------


FLOAT64_EPS = float(np.finfo(np.float64).eps)


@pytest.fixture
def evaluate_cache(tmp_path, monkeypatch):
    """evaluate's caches in ``tmp_path``, offline; it imports the modules it loads as the package `evaluate_modules`
    of its cache folder, so one imported from another folder (an earlier test's) is dropped first (as
    tests/test_metrics.py's ``offline`` fixture does)."""
    import sys

    import evaluate

    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    monkeypatch.setattr(evaluate.config, "HF_MODULES_CACHE", tmp_path / "modules")
    monkeypatch.setattr(evaluate.config, "HF_METRICS_CACHE", tmp_path / "metrics")
    for name in [name for name in sys.modules if name.split(".")[0] == "evaluate_modules"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "path", [str(tmp_path / "modules"), *sys.path])


def test_log_loss_is_one_number_for_float32_float64_lists_tensors_and_the_evaluate_module(evaluate_cache):
    """Review of b2254e8 (B5): the eps followed the input's dtype, so float32 p = [1.0, 0.9] for like gave 9.12 as
    an array and 19.17 through load_metric("log_loss") (stored as float64) or as lists. One rule now: float64's eps
    for every input; sklearn (>= 1.5) clips float32 at float32's eps, which differs only near exact 0 and 1."""
    from a2gen_hf.metrics import load_metric

    labels = [[1, 4, 0, 0], [1, 2, 3, 4]]  # like and follow happen in the second example only
    p32 = np.zeros((2, 5), dtype=np.float32)
    p32[:, 2] = [1.0, 0.9]  # like: a certain miss (exactly 1) and a hit
    p32[:, 3] = [0.5, 0.0]  # follow: a certain miss (exactly 0)
    expected = {
        "like": -(math.log(FLOAT64_EPS) + math.log(float(np.float32(0.9)))) / 2,
        "follow": -(math.log(0.5) + math.log(FLOAT64_EPS)) / 2,
    }
    module = load_metric("log_loss").compute(predictions=p32, references=labels, action_names=NAMES)
    for given in (p32, p32.astype(np.float64), p32.tolist(), p32.astype(np.float64).tolist(), torch.from_numpy(p32),
                  torch.from_numpy(p32).double()):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # float32 and finer: no warning
            result = log_loss(given, labels, NAMES)
        assert result["logloss"] == pytest.approx(expected, rel=1e-12), type(given)
        assert result["logloss"] == module["logloss"] and result["mean_logloss"] == module["mean_logloss"]
    assert -math.log(FLOAT64_EPS) == pytest.approx(36.04, abs=0.01)  # the docstring's figures for a certain miss
    assert sklearn_log_loss([0], np.float32([1.0]), labels=[0, 1]) == pytest.approx(15.94, abs=0.01)
    rng = np.random.default_rng(0)  # away from 0 and 1 the float32 figure is sklearn's too
    p = rng.uniform(0.01, 0.99, (50, 5)).astype(np.float32)
    rows = [[1, 2, 4, 0] if rng.random() < 0.4 else [1, 4, 0, 0] for _ in range(50)]
    happens = [row[1] == 2 for row in rows]
    assert log_loss(p, rows, NAMES)["logloss"]["like"] == pytest.approx(sklearn_log_loss(happens, p[:, 2]), rel=1e-6)


def test_float16_and_bfloat16_probabilities_are_warned_about_in_the_log_loss_and_in_predict_batch():
    """Probe s29: p = 0.999 stored as bfloat16 is 1.0, and the log loss read 18.37 (float32: 3.80), silently."""
    labels = [[1, 2, 3], [1, 3, 0]]
    names = ["start", "like", "leave"]
    certain_miss = -(math.log(0.5) + math.log(FLOAT64_EPS)) / 2  # the near-1 value became 1.0: float64's eps
    for name, near_one in (("bfloat16", 0.999), ("float16", 0.9999)):
        probabilities = torch.zeros(2, 4)
        probabilities[:, 2] = torch.tensor([0.5, near_one])
        as_numpy = [probabilities.numpy().astype(np.float16)] if name == "float16" else []  # numpy has no bfloat16
        for coarse in (probabilities.to(getattr(torch, name)), *as_numpy):
            with pytest.warns(UserWarning, match=f"{name}, too coarse for a log loss: {name} stores {near_one} as 1.0"):
                result = log_loss(coarse, labels, names)
            assert any(note.startswith(f"logloss: the probabilities are {name}") for note in result["notes"])
            assert result["logloss"]["like"] == pytest.approx(certain_miss, rel=1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # float32: no warning, and near_one is not 1.0
            assert log_loss(probabilities, labels, names)["logloss"]["like"] == pytest.approx(
                -(math.log(0.5) + math.log(1 - float(np.float32(near_one)))) / 2, rel=1e-6)
    probabilities[:, 2] = torch.tensor([0.5, 0.999])

    from a2gen_hf.metrics.evaluation import predict_batch

    class HalfModel:
        def predict_actions(self, **batch):
            from a2gen_hf import A2GenActionPrediction

            return A2GenActionPrediction(action_probabilities=probabilities.bfloat16(), expected_times=torch.zeros(2, 4))

    with pytest.warns(UserWarning, match="predict_batch: the probabilities are bfloat16, too coarse"):
        outputs = predict_batch(HalfModel(), {})
    assert outputs["action_probabilities"].dtype == torch.float32


# --- 4. group_aucs: finite scores, any ids ---------------------------------------------------------------------------


def test_group_aucs_refuses_non_finite_scores_and_reads_any_group_ids():
    with pytest.raises(ValueError, match="scores holds NaN or inf; every score must be finite"):
        group_aucs([1, 0, 1, 0], [0.9, np.nan, 0.2, np.inf], [0, 0, 1, 1])
    occurs, scores = [1, 0, 1, 0, 0], [0.9, 0.1, 0.2, 0.8, 0.3]
    dense = group_aucs(occurs, scores, [0, 0, 1, 1, 1])
    for ids in ([0, 0, 10**11, 10**11, 10**11], [-1, -1, 5, 5, 5], ["u1", "u1", "u2", "u2", "u2"],
                torch.tensor([3, 3, 7, 7, 7])):
        aucs, sizes = group_aucs(occurs, scores, ids)  # before: MemoryError (745 GiB), a numpy error, a ValueError
        np.testing.assert_array_equal(aucs, dense[0])
        np.testing.assert_array_equal(sizes, dense[1])
    with pytest.raises(ValueError, match=r"groups\[1\] is None"):
        group_aucs([1, 0], [0.9, 0.1], [0, None])


# --- 5. bfloat16 tensors in the low-level helpers ---------------------------------------------------------------------


def test_bfloat16_tensors_are_read_by_every_low_level_helper():
    rng = np.random.default_rng(1)
    labels = torch.from_numpy((rng.random(200) < 0.3).astype(np.int64))
    scores = torch.from_numpy(rng.random(200)).bfloat16()
    as32 = scores.float().numpy()
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels.numpy(), as32), abs=1e-12)
    np.testing.assert_array_equal(midranks(scores), midranks(as32))
    users = torch.arange(200) % 25
    np.testing.assert_array_equal(midranks(scores, users.bfloat16()), midranks(as32, users.numpy()))
    np.testing.assert_array_equal(group_numbers(users.bfloat16(), 200), group_numbers(users.numpy(), 200))
    np.testing.assert_array_equal(group_aucs(labels, scores, users)[0], group_aucs(labels.numpy(), as32, users.numpy())[0])
    probabilities = torch.zeros(200, 5)
    probabilities[:, 2] = scores.float()
    rows = [[1, 2, 4, 0] if bool(value) else [1, 4, 0, 0] for value in labels]
    assert gauc(probabilities, rows, users.bfloat16(), NAMES)["gauc"] == gauc(probabilities, rows, users, NAMES)["gauc"]
    full, resampled = statistics.bootstrap_aucs(labels.bfloat16(), [scores], num_resamples=3, groups=users.bfloat16())
    again = statistics.bootstrap_aucs(labels.numpy(), [as32], num_resamples=3, groups=users.numpy())
    np.testing.assert_array_equal(full, again[0])
    np.testing.assert_array_equal(resampled, again[1])


# --- 6. TorchRec ids out of range --------------------------------------------------------------------------------


torchrec_only = pytest.mark.skipif(
    not __import__("a2gen_hf.torchrec_tables", fromlist=["x"]).is_torchrec_available(), reason="TorchRec is optional"
)


@torchrec_only
def test_a_torchrec_table_refuses_ids_out_of_range_naming_the_table():
    from a2gen_hf.torchrec_tables import TorchRecIdTable, check_ids_in_range

    table = TorchRecIdTable("item_table", 50, 4)
    for bad in (50, 10**6, -1):
        with pytest.raises(ValueError, match=rf"TorchRec table 'item_table': id {bad} .*outside its rows 0 \.\. 49"):
            table(torch.tensor([[3, bad]]))
    assert table(torch.tensor([0, 49])).shape == (2, 4)
    check_ids_in_range(torch.zeros(0, dtype=torch.long), 50, "item_table")  # no ids: nothing to check


def _sharded_out_of_range(rank: int, port: int, out: str) -> None:
    """One gloo process: a row-wise sharded tiny model's item table looked up with an id past its rows."""
    import gc

    import torch.distributed as dist
    from test_torchrec_tables import tiny_model

    from a2gen_hf.torchrec_tables import TorchRecIdTable, shard_model

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        sharded = shard_model(tiny_model(seed=1), sharding_type="row_wise", optimizer="sgd")
        table = next(module for module in sharded.module.modules()
                     if isinstance(module, TorchRecIdTable) and module.num_embeddings == 60)
        outcome = {"in_range": table(torch.tensor([59])).shape[-1]}
        try:
            table(torch.tensor([60]))
            outcome["error"] = None
        except ValueError as error:
            outcome["error"] = str(error)
        with open(out, "w") as file:
            json.dump(outcome, file)
        del sharded, table
        gc.collect()
    finally:
        dist.destroy_process_group()


@torchrec_only
@pytest.mark.slow
def test_a_sharded_torchrec_table_refuses_ids_out_of_range():
    """Probe s29: sharded, fbgemm's bounds check set id 60 of a 50-row table to 0 and only logged it."""
    import tempfile

    import torch.multiprocessing as mp
    from test_torchrec_tables import _free_port

    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "outcome.json")
        mp.start_processes(_sharded_out_of_range, args=(_free_port(), out), nprocs=1, start_method="spawn")
        with open(out) as file:
            outcome = json.load(file)
    assert outcome["in_range"] == 8
    assert outcome["error"] and re.search(r"TorchRec table '.*': id 60 .*outside its rows 0 \.\. 59", outcome["error"])


# --- 7. small ones -----------------------------------------------------------------------------------------------


def test_an_evaluate_module_without_action_names_says_how_to_give_them(evaluate_cache):
    from a2gen_hf.metrics import load_metric

    metric = load_metric("action_auc")
    metric.add_batch(predictions=[[0, 1, 0.9, 0.5, 1], [0, 1, 0.1, 0.5, 1]], references=[[1, 2, 4], [1, 4, 0]])
    with pytest.raises(ValueError, match=r"needs action_names.*compute\(predictions=\.\.\., references=\.\.\., "
                                         r"action_names=config\.action_names\)"):
        metric.compute()
    assert metric.compute(action_names=NAMES)["auc"]["like"] == 1.0  # the examples added stay added


def test_the_p_value_and_the_interval_agree_where_np_percentile_rounds_past_zero():
    """Probe s29: the 97.5 % point of these resamples is -0.4 + 0.8 * (0.1 - -0.4) = 0 exactly; np.percentile gave
    -1.4e-15 (an interval excluding 0) beside p = 0.05000000000000004 (not below 0.05)."""
    resampled = np.r_[np.full(46, -3.0), -0.4, 0.1, 0.8]
    summary = statistics._difference_summary(-1.0, resampled)
    excluded = summary["low"] > 0 or summary["high"] < 0
    assert excluded == (summary["p_value"] < 0.05)
    assert summary["high"] == 0.0 and summary["p_value"] == 0.05
    rng = np.random.default_rng(3)
    for _ in range(300):
        values = np.round(rng.normal(rng.normal(0, 1.5), 1, int(rng.integers(40, 300))), 1)
        p_value = statistics.percentile_p_value(values)
        for level in (0.1, 0.05, 0.01):
            low, high = statistics.percentile_interval(values, 1 - level)
            assert (low > 0 or high < 0) == (p_value < level), (low, high, p_value, level)


def test_a_bootstrap_row_with_an_impossible_p_value_or_difference_is_refused(tmp_path, capsys):
    from a2gen_hf.cli import main
    from a2gen_hf.plotting import check_comparison_report

    cell = {"mean": 0.7, "std": 0.01}
    row = {"difference": 0.05, "low": -0.01, "high": 0.09, "p_value": 0.2, "auc_a": 0.75, "auc_b": 0.70}
    report = {
        "models": {name: {"auc": {"like": cell}, "mean_auc": cell} for name in ("a2gen-iag", "mmoe")},
        "positives": {"like": 5}, "num_test_examples": 40, "seeds": 1,
        "bootstrap": {"mmoe": {"like": row}}, "bootstrap_reference": "a2gen-iag",
    }
    check_comparison_report(report, "results.json", markdown=True)
    for edit, message in (
        ({"p_value": 3}, r"bootstrap\.mmoe\.like\.p_value is 3; a p-value lies in \[0, 1\]"),
        ({"p_value": -0.1}, r"bootstrap\.mmoe\.like\.p_value is -0\.1; a p-value lies in \[0, 1\]"),
        ({"difference": 0.2}, r"bootstrap\.mmoe\.like\.difference is 0\.2 but auc_a - auc_b is 0\.05"),
        ({"auc_a": 1.5}, r"bootstrap\.mmoe\.like\.auc_a is 1\.5; an AUC lies in \[0, 1\]"),
    ):
        damaged = json.loads(json.dumps(report))
        damaged["bootstrap"]["mmoe"]["like"].update(edit)
        with pytest.raises(ValueError, match=message):
            check_comparison_report(damaged, "results.json", markdown=True)
        path = tmp_path / "results.json"
        path.write_text(json.dumps(damaged))
        assert main(["report", str(path)]) == 2
        assert re.search(message, capsys.readouterr().err)
    undefined = json.loads(json.dumps(report))  # an undefined row (null) stays fine
    undefined["bootstrap"]["mmoe"]["like"].update(dict.fromkeys(("difference", "low", "high", "p_value", "auc_a",
                                                                 "auc_b")))
    check_comparison_report(undefined, "results.json", markdown=True)


def test_the_share_of_the_oracle_is_nan_where_the_oracle_barely_beats_chance():
    """Probe s29: an oracle AUC just above 0.5 made auc_share_of_oracle -3.8."""
    MIN_ORACLE_LIFT = 0.01  # noqa: N806 (action_metrics.MIN_ORACLE_LIFT, as documented)
    rng = np.random.default_rng(0)
    n = 400
    happens = rng.random(n) < 0.5
    labels = [[1, 2, 4, 0] if value else [1, 4, 0, 0] for value in happens]
    probabilities = np.zeros((n, 5))
    probabilities[:, 2] = rng.random(n)
    oracle = np.full((n, 4), 0.5)
    oracle[np.flatnonzero(happens)[0], 1] = 0.6  # a weak oracle: one positive above the tie, AUC 0.5 + 1 / (2 P)
    seconds = np.ones((n, 4))
    result = oracle_comparison(probabilities, labels, np.zeros((n, 4)), None, oracle, seconds, NAMES)
    lift = result["oracle_auc"]["like"] - 0.5
    assert 0 < lift < MIN_ORACLE_LIFT
    assert math.isnan(result["auc_share_of_oracle"]["like"])
    assert any(note.startswith("auc_share_of_oracle[like]: undefined (NaN), the oracle AUC") and "less than 0.01"
               in note for note in result["notes"])
    oracle[:, 1] = np.where(happens, 0.9, 0.1)  # a clear oracle: the share as before
    clear = oracle_comparison(probabilities, labels, np.zeros((n, 4)), None, oracle, seconds, NAMES)
    assert clear["auc_share_of_oracle"]["like"] == pytest.approx(
        (roc_auc_score(happens, probabilities[:, 2]) - 0.5) / (clear["oracle_auc"]["like"] - 0.5))


def test_the_prediction_loops_float32_log_loss_is_the_evaluate_modules_on_saturated_probabilities(evaluate_cache):
    """The loop's probabilities are float32 (predict_batch casts them); with a saturated head (like at exactly 1.0,
    the bias at +40) evaluate_model's LogLoss is the evaluate module's on the same values (float64's eps both),
    not sklearn's float32 clip (before the review of b2254e8 it was; the test then ran on probabilities in
    0.22-0.46, where the two clips agree, and could not tell)."""
    from conftest import make_batch, tiny_config

    from a2gen_hf import A2GenForActionGeneration
    from a2gen_hf.metrics import action_targets, evaluate_model, load_metric, predict_dataloader

    torch.manual_seed(0)
    config = tiny_config()
    model = A2GenForActionGeneration(config).eval()
    with torch.no_grad():
        model.generator.heads.action.bias[2] += 40  # like: P = 1.0 in float32
    batches = [make_batch(config, seed=seed) for seed in (0, 1)]
    arrays = predict_dataloader(model, batches)
    assert arrays["action_probabilities"].dtype == np.float32
    like = arrays["action_probabilities"][:, 2]
    occurs, _, _ = action_targets(arrays["labels"], None, None, config.vocab_size)
    misses = int((~occurs[:, 2]).sum())
    assert (like == 1.0).all() and 0 < misses < len(like)  # certain misses: where the two clips differ
    result = evaluate_model(model, batches, group_column=None)
    module = load_metric("log_loss").compute(
        predictions=arrays["action_probabilities"].tolist(), references=arrays["labels"].tolist(),
        action_names=list(config.action_names), end_action=config.end_action,
    )
    assert result["logloss"] == pytest.approx(module["logloss"], rel=1e-12)
    assert result["logloss"]["like"] == pytest.approx(-misses * math.log(FLOAT64_EPS) / len(like), rel=1e-9)
    float32_clip = sklearn_log_loss(occurs[:, 2], like, labels=[0, 1])  # sklearn's: 15.9 per miss, not 36.0
    assert float32_clip == pytest.approx(-misses * math.log(np.finfo(np.float32).eps) / len(like), rel=1e-5)


# --- Review of b2254e8: a NaN selection metric, one reading of ranking_groups_over_K, tensor_as_numpy's home -------


def test_a_nan_metric_for_best_model_is_warned_of_once_and_the_last_weights_are_kept(simulated_data_dir, tmp_path):
    """Review of b2254e8 (B4): mean_gauc is NaN where no action has MIN_GAUC_GROUPS users holding both classes, and
    transformers' selection compares with np.greater (False against NaN): no best checkpoint, early stopping counting
    every evaluation as no improvement, and nothing said. A2GenTrainer now warns once, with the note."""
    from a2gen_hf.data import A2GenDataCollator
    from a2gen_hf.training.data_setup import create_model, load_data_dir
    from a2gen_hf.training.trainer import A2GenTrainer, a2gen_compute_metrics, a2gen_training_arguments

    dataset, tokenizer, _ = load_data_dir(simulated_data_dir)
    torch.manual_seed(0)
    model = create_model("a2gen-iag", tokenizer, dataset, hidden_size=16, id_embedding_size=16)
    args = a2gen_training_arguments(
        str(tmp_path), per_device_train_batch_size=32, per_device_eval_batch_size=64, report_to="none",
        disable_tqdm=True, use_cpu=True, seed=0, max_steps=3, eval_strategy="steps", eval_steps=1,
        save_strategy="steps", save_steps=1, load_best_model_at_end=True, metric_for_best_model="mean_gauc",
    )
    trainer = A2GenTrainer(
        model=model, args=args, train_dataset=dataset["train"], eval_dataset=dataset["validation"].select(range(12)),
        data_collator=A2GenDataCollator.from_config(model.config, tokenizer),
        compute_metrics=a2gen_compute_metrics(model.config),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    said = [str(warning.message) for warning in caught if "metric_for_best_model='mean_gauc' is NaN" in str(warning.message)]
    assert len(said) == 1, said  # three NaN evaluations, one warning
    assert f"mean_gauc: undefined (NaN), no action's GAUC averages over at least {MIN_GAUC_GROUPS} groups" in said[0]
    assert "load_best_model_at_end keeps the last weights" in said[0] and "metric_for_best_model='loss'" in said[0]
    gaucs = [entry["eval_mean_gauc"] for entry in trainer.state.log_history if "eval_mean_gauc" in entry]
    assert len(gaucs) == 3 and all(math.isnan(value) for value in gaucs)
    assert trainer.state.best_model_checkpoint is None  # what the warning says: no best, the last weights stay
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # outside training no selection reads it: no warning
        trainer.evaluate()


def test_ranking_groups_over_k_keys_are_read_by_one_function():
    """Review of b2254e8 (D2): is_count_key and the tables' notes each parsed the key; one function reads it now,
    and digits that int() reads but are not ASCII ("²") are no cut-off for either."""
    from a2gen_hf.metrics.action_metrics import is_count_key, ranking_over_k_cutoff
    from a2gen_hf.metrics.tables import ranking_cut_off_notes

    assert ranking_over_k_cutoff("ranking_groups_over_10") == 10
    for key in ("ranking_groups_over_", "ranking_groups_over_x", "ranking_groups_over_\u00b2", "ranking_groups", "ndcg_at_10"):
        assert ranking_over_k_cutoff(key) is None, key
    assert is_count_key("ranking_groups_over_5") and is_count_key("ranking_groups")
    assert not is_count_key("ranking_groups_over_\u00b2")
    result = {"ranking_groups": {"like": 12}, "ranking_groups_over_010": {"like": 0}, "ranking_groups_over_\u00b2": {"like": 0}}
    notes = ranking_cut_off_notes({"m": result})
    assert len(notes) == 1 and notes[0].startswith("NDCG@10 / Recall@10: few users hold more than 10 examples")


def test_the_package_imports_tensor_as_numpy_from_its_home():
    """Review of b2254e8 (D6): training/trainer.py imported tensor_as_numpy from metrics.action_metrics, a
    re-export; every module of the package imports it from metrics.auc."""
    import ast
    from pathlib import Path

    import a2gen_hf

    root = Path(a2gen_hf.__file__).parent
    wrong = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and any(alias.name == "tensor_as_numpy" for alias in node.names):
                if (node.module or "").split(".")[-1] != "auc":
                    wrong.append(f"{path.relative_to(root)}: from {'.' * node.level}{node.module}")
    assert not wrong, wrong
