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
