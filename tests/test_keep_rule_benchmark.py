"""benchmarks/residual_fit_keep_rule.py: the held-out check of the residual fit's keep rules runs on a data folder and
scores every rule on validation users that did not choose it."""

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _benchmark(name: str = "residual_fit_keep_rule"):
    path = ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_keep_rules_are_scored_on_the_other_half(simulated_data_dir, tmp_path, monkeypatch, capsys):
    output = tmp_path / "keep.json"
    monkeypatch.setattr(sys, "argv", [
        "residual_fit_keep_rule.py", "--data", str(simulated_data_dir), "--fractions", "1,0.5", "--seeds", "1",
        "--rules", "0,1.645,cross", "--output", str(output),
    ])  # fmt: skip
    _benchmark().main()
    report = json.loads(output.read_text())
    rows = report["rows"]
    assert len(rows) == 2 * 2 * 3  # shares x directions x rules
    assert {row["rule"] for row in rows} == {"0", "1.645", "cross"}
    halves = {row["train_examples"] for row in rows}
    assert len(halves) == 2  # the half share cuts the training split
    for row in rows:
        assert 0.0 <= row["held_out_mean"] <= 1.0 and row["held_out_auc"]
    assert set(report["summary"]) == {"1.0", "0.5"}
    assert "held-out validation mean AUC" in capsys.readouterr().out


def test_bad_arguments_are_refused_before_any_work(tmp_path, monkeypatch, capsys):
    import pytest

    module = _benchmark()
    for flags, message in (
        (["--data", str(tmp_path / "none")], "no such folder"),
        (["--data", str(tmp_path), "--rules", "0,foo"], "'foo' is neither a number >= 0"),
        (["--data", str(tmp_path), "--fractions", "0"], "every share must be in (0, 1]"),
        (["--data", str(tmp_path), "--seeds", "0"], "--seeds 0 must be >= 1"),
    ):
        monkeypatch.setattr(sys, "argv", ["residual_fit_keep_rule.py", *flags, "--output", str(tmp_path / "k.json")])
        with pytest.raises(SystemExit):
            module.main()
        assert message in capsys.readouterr().err


def test_bagging_scores_one_fit_and_the_mean_of_several_on_the_other_half(simulated_data_dir, tmp_path, monkeypatch,
                                                                          capsys):
    output = tmp_path / "bagging.json"
    monkeypatch.setattr(sys, "argv", [
        "residual_fit_bagging.py", "--data", str(simulated_data_dir), "--fractions", "1", "--bags", "2",
        "--output", str(output),
    ])  # fmt: skip
    _benchmark("residual_fit_bagging").main()
    report = json.loads(output.read_text())
    rows = report["rows"]
    rules = ["single (seed 0)", "mean of 2 fits", "mean of 2 fits, kept per action", "single, mean over 2 seeds"]
    assert [row["rule"] for row in rows] == rules * 2  # both directions
    for row in rows:
        assert 0.0 <= row["held_out_mean"] <= 1.0 and row["held_out_auc"]
    assert set(report["summary"]["1.0"]) == set(rules)
    assert "held-out validation mean AUC" in capsys.readouterr().out


def test_further_levers_score_every_lever_against_the_recipe_on_the_other_half(simulated_data_dir, tmp_path,
                                                                               monkeypatch, capsys):
    output = tmp_path / "levers.json"
    monkeypatch.setattr(sys, "argv", [
        "further_levers.py", "--data", str(simulated_data_dir), "--fractions", "1", "--output", str(output),
    ])  # fmt: skip
    module = _benchmark("further_levers")
    module.main()
    rows = json.loads(output.read_text())["rows"]
    assert [row["rule"] for row in rows] == ["recipe", *module.LEVERS] * 2  # both directions
    for row in rows:
        assert 0.0 <= row["held_out_mean"] <= 1.0 and row["held_out_auc"]
    assert "held-out validation mean AUC" in capsys.readouterr().out


def test_a_pooled_fit_gives_each_action_the_stacked_models_logits():
    """pooled_fit folds the shared and the action's own coefficients (and its intercept column) into one linear
    function per action: the very logits of the stacked regression on that action's rows."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    module = _benchmark("further_levers")
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 4))
    labels = np.stack([features[:, 0] + rng.normal(size=300) > 0, features[:, 0] - features[:, 1] > 0.5], axis=1)
    fits = module.pooled_fit(features, labels.astype(float), c=0.1, shared_scale=3.0)
    own = np.zeros((300, 8))
    own[:, 4:] = features  # the second action's rows
    intercepts = np.tile([0.0, module.INTERCEPT_SCALE], (300, 1))
    rows = np.hstack([3.0 * features, own, intercepts])
    stacked = np.vstack([np.hstack([3.0 * features, np.hstack([features, np.zeros((300, 4))]),
                                    np.tile([module.INTERCEPT_SCALE, 0.0], (300, 1))]), rows])
    reference = LogisticRegression(C=0.1, max_iter=2000, fit_intercept=False).fit(stacked, labels.T.reshape(-1))
    coefficients, intercept = fits[1]
    np.testing.assert_allclose(features @ coefficients + intercept, reference.decision_function(rows), atol=1e-6)
    assert not np.allclose(fits[0][0], fits[1][0])  # each action keeps its own part


def test_counters_read_only_sessions_that_ended_before_the_target_started():
    import datasets
    import numpy as np

    from a2gen_hf.tokenization_a2gen import A2GenActionTokenizer

    tokenizer = A2GenActionTokenizer(action_names=["click", "cart", "buy", "leave"], start_action="click",
                                     end_action="leave")
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in ("click", "cart", "buy", "leave")}

    def session(item, category, start, actions, seconds):
        return {"item": item, "item_side_ids": [category], "session_start": start, "action_ids": actions,
                "action_seconds": seconds}

    rows = [
        session("a", 1, 1_000, [ids["click"], ids["cart"], ids["leave"]], [0.0, 5.0, 10.0]),  # ends 1,010
        session("a", 1, 1_005, [ids["click"], ids["buy"], ids["leave"]], [0.0, 50.0, 100.0]),  # ends 1,105
        session("b", 1, 1_020, [ids["click"], ids["leave"]], [0.0, 1.0]),  # ends 1,021
        session("a", 1, 1_100, [ids["click"], ids["leave"]], [0.0, 1.0]),  # the target: starts 1,100
    ]
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:3]),
                                   "test": datasets.Dataset.from_list(rows[3:])})
    features = _benchmark("further_levers").Counters(splits, tokenizer).features(splits["test"])
    actions = len(tokenizer.action_names)
    sessions, cart, buy = (np.expm1(features[0, k]) for k in (0, ids["cart"], ids["buy"]))
    # item "a", within a day: the first session only (the second had not ended at 1,100; "b" is another item)
    assert np.allclose([sessions, cart, buy], [1.0, 1.0, 0.0])
    category_sessions = np.expm1(features[0, 3 * (1 + 2 * actions)])  # category 1, within a day: "a" and "b"
    assert np.isclose(category_sessions, 2.0)
