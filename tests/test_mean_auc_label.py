"""The mean AUC says what it averages over: a log without buy (the hardest action) read 0.02 *better* than the
intact log, as "mean AUC" over collect and cart, in every table and in `a2gen evaluate`, with no word of it."""

import json
import logging

import numpy as np
import pytest

from a2gen_hf.metrics import compute_action_metrics, format_metrics_table
from a2gen_hf.metrics.action_metrics import mean_auc_actions, mean_auc_label, undefined_auc_reasons
from a2gen_hf.training import compare

NAMES = ["start", "collect", "cart", "buy", "leave"]


def test_the_label_names_the_actions_averaged_and_why_the_rest_is_left_out():
    assert mean_auc_label({"collect": 5, "cart": 9, "buy": 3}, 20, "test") == "mean AUC"
    assert (mean_auc_label({"collect": 5, "cart": 9, "buy": 0}, 20, "test")
            == "mean AUC (collect, cart; buy undefined: no positive in test)")
    assert (mean_auc_label({"collect": 0, "cart": 20, "buy": 0}, 20)
            == "mean AUC (over no action; collect, buy undefined: no positive; cart undefined: every example positive)")
    assert undefined_auc_reasons({"collect": 0, "cart": 20}) == {"collect": "no positive"}  # the total not known
    assert mean_auc_actions({"collect": 5, "cart": 9, "buy": 0}, 20) == ["collect", "cart"]


def _metrics(buy: bool) -> dict:
    """Metrics of 8 examples where collect and cart happen in some, buy in one (``buy``) or none."""
    rng = np.random.default_rng(0)
    labels = [[1, 2, 5], [1, 3, 5], [1, 5, 0], [1, 2, 3, 5], [1, 5, 0], [1, 4 if buy else 2, 5], [1, 3, 5], [1, 5, 0]]
    width = max(map(len, labels))
    labels = np.array([row + [0] * (width - len(row)) for row in labels])
    times = np.where(labels > 0, 0.5, 0.0)
    predictions = {"action_probabilities": rng.random((8, 6)), "expected_times": rng.random((8, 6))}
    return compute_action_metrics(predictions, {"labels": labels, "label_times": times,
                                                "label_time_mask": (labels > 0).astype(int)}, NAMES)


def test_the_metrics_table_labels_a_mean_over_fewer_actions():
    """Before: "mean AUC" whether buy was in it or not."""
    without = _metrics(buy=False)
    assert np.isnan(without["auc"]["buy"]) and not np.isnan(without["mean_auc"])
    rows = format_metrics_table({"model": without}, split="test").splitlines()
    mean_row = next(row for row in rows if row.startswith("mean AUC"))
    assert mean_row.startswith("mean AUC (collect, cart; buy undefined: no positive in test)")
    assert f"{without['mean_auc']:.4f}" in mean_row
    rows = format_metrics_table({"model": _metrics(buy=True)}).splitlines()
    assert any(row.split("  ")[0] == "mean AUC" for row in rows)  # every AUC defined: the plain title


def _report(buy_positives: int) -> dict:
    spread = {"mean": 0.7, "std": None, "seeds": [0.7]}
    return {
        "num_test_examples": 100, "positives": {"collect": 10, "cart": 20, "buy": buy_positives}, "seeds": 1,
        "models": {"logreg": {"auc": {"collect": spread, "cart": spread,
                                      "buy": spread if buy_positives else {"mean": None, "std": None}},
                              "mean_auc": spread, "label": "logistic regression on counts"}},
        "bootstrap": {},
    }


def test_the_comparison_tables_header_says_what_the_mean_covers():
    """results.md (and `a2gen report` of an older results.json, from its positives): before, "| mean AUC |" alone."""
    table = compare.format_markdown(_report(0), ["metrics"])
    assert "| mean AUC (collect, cart; buy undefined: no positive in test) |" in table
    assert "| mean AUC |" in compare.format_markdown(_report(5), ["metrics"])


def test_a_validation_or_test_split_without_an_action_is_warned_of(caplog):
    """Before: only a training split without an action was warned of; a validation split without buy let the
    regression choose buy's C blind, with the note in results.json only."""
    with caplog.at_level(logging.WARNING, logger="a2gen_hf.training.compare"):
        assert compare.warn_of_one_class_actions("data", "validation", {"collect": 3, "buy": 0}, 50) == ["buy"]
        assert compare.warn_of_one_class_actions("data", "test", {"collect": 3, "buy": 0}, 50) == ["buy"]
        assert compare.warn_of_one_class_actions("data", "test", {"collect": 3, "buy": 2}, 50) == []
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("data: the validation split holds one class only of buy (0 of 50 examples positive)")
    assert "C blind" in messages[0]
    assert "mean AUC averages over the other actions only" in messages[1]


@pytest.fixture
def model_and_log_without_collect_and_cart(tmp_path):
    """A Taobao-format log of clicks and buys only (prepared) and an untrained tiny A2Gen saved with its tokenizer."""
    from a2gen_hf import A2GenForActionGeneration
    from a2gen_hf.cli import main
    from a2gen_hf.training.data_setup import load_data_dir, model_config_from_tokenizer

    rng = np.random.default_rng(3)
    lines = [f"{user},{int(rng.integers(1, 40))},{int(rng.integers(1, 5))},{rng.choice(['pv', 'pv', 'buy'])},"
             f"{1511544000 + int(rng.integers(0, 700_000))}" for user in range(40) for _event in range(8)]
    (tmp_path / "log.csv").write_text("\n".join(lines) + "\n")
    data = tmp_path / "data"
    assert main(["prepare", "--preset", "taobao", "--input", str(tmp_path / "log.csv"), "--output", str(data),
                 "--quiet"]) == 0  # fmt: skip
    dataset, tokenizer, _ = load_data_dir(data)
    config = model_config_from_tokenizer(tokenizer, dataset, hidden_size=16, num_attention_heads=2)
    A2GenForActionGeneration(config).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    return tmp_path / "model", data


def test_evaluate_labels_the_mean_and_prints_the_notes_to_stderr(model_and_log_without_collect_and_cart, tmp_path,
                                                                 capsys):
    """Before: `mean AUC 0.7810` on stdout and nothing on stderr (the undefined AUCs' notes in --json only)."""
    from a2gen_hf.cli import main

    model, data = model_and_log_without_collect_and_cart
    output = tmp_path / "metrics.json"
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--json", str(output)]) == 0
    captured = capsys.readouterr()
    metrics = json.loads(output.read_text())
    assert metrics["positives"]["collect"] == metrics["positives"]["cart"] == 0 < metrics["positives"]["buy"]
    assert "mean AUC (buy; collect, cart undefined: no positive in test)" in captured.out
    assert f"a2gen evaluate: note: auc[collect]: AUC undefined (NaN), 0 of {metrics['num_examples']}" in captured.err
    assert "mean_auc" in metrics and "mean_auc_actions" not in metrics  # the JSON keeps its keys
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--quiet"]) == 0
    assert "note:" not in capsys.readouterr().err  # --quiet: results and errors only; the label still says it
