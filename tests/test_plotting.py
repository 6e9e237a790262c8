"""Pictures: timeline (paper intro style), training curves from both log formats, comparison bars, `a2gen plot`."""

import json
import math

import matplotlib.image
import matplotlib.pyplot
import numpy as np
import pytest

from a2gen_hf.cli import main
from a2gen_hf.plotting import (
    END_COLOR,
    PALETTE,
    UNTRAINED_HATCH,
    comparison_figure,
    plot_comparison,
    plot_timeline,
    plot_training_curves,
    timeline_figure,
    training_curves,
)

PREDICTED = [("start", 0.0), ("like", 2.3), ("comment", 8.1), ("leave", 17.4)]
ACTUAL = [("start", 0.0), ("like", 2.0), ("comment", 9.0), ("follow", 16.0), ("forward", 16.5), ("leave", 18.0)]
TRAINER_STATE = {
    "log_history": [
        {"step": 10, "epoch": 0.5, "loss": 2.0, "learning_rate": 1e-3},
        {"step": 20, "epoch": 1.0, "loss": 1.5},
        {"step": 20, "epoch": 1.0, "eval_loss": 1.7, "eval_runtime": 0.1},
        {"step": 20, "epoch": 1.0, "train_loss": 1.75, "train_runtime": 3.0},
    ]
}
LOOP_LOG = {
    "settings": {},
    "log_history": [
        {"step": 5, "epoch": 0, "loss": 1.2},
        {"step": 10, "epoch": 0, "loss": 0.9},
        {"step": 10, "epoch": 0, "validation_loss": 1.0},
    ],
}
RESULTS = {
    "models": {
        "a2gen-iag": {
            "label": "A2Gen-IAG",
            "auc": {"like": {"mean": 0.72, "std": 0.01}, "follow": {"mean": 0.74, "std": 0.02}},
            "mae": {"like": {"mean": 0.5, "std": 0.02}, "leave": {"mean": 0.44, "std": 0.01}},
            "oracle_auc": {"like": {"mean": 0.8, "std": 0.0}, "follow": {"mean": 0.82, "std": 0.0}},
        },
        "mmoe": {
            "label": "MMoE",
            "auc": {"like": {"mean": 0.68, "std": 0.01}, "follow": {"mean": math.nan, "std": math.nan}},
            "mae": {"like": {"mean": 0.85, "std": 0.03}, "leave": {"mean": 0.86, "std": 0.02}},
        },
    }
}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    matplotlib.pyplot.close("all")  # timeline_figure hands its figure over open


def read_png(path):
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    return image


def count_pixels(image, hex_color, tolerance=0.06):
    target = np.array([int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(image[..., :3] - target).max(-1) < tolerance).sum())


def test_timeline_draws_two_rows_and_the_end_action_in_red(tmp_path):
    both = read_png(plot_timeline(PREDICTED, ACTUAL, tmp_path / "both.png", title="user u1, item v42"))
    one = read_png(plot_timeline(PREDICTED, path=tmp_path / "one.png"))
    assert both.shape[0] > 1.5 * one.shape[0]  # the actual row sits under the predicted one
    assert count_pixels(one, END_COLOR) > 50
    no_leave = read_png(plot_timeline(PREDICTED[:-1], path=tmp_path / "no_leave.png"))
    assert count_pixels(no_leave, END_COLOR) == 0


def test_timeline_lists_unknown_times_and_rejects_bad_events(tmp_path):
    assert plot_timeline([("start", 0.0), ("like", None), ("leave", 40.0)], path=tmp_path / "t.png").is_file()
    with pytest.raises(ValueError, match=r"predicted\[1\] \('like'\) is at -2.0 s"):
        plot_timeline([("start", 0.0), ("like", -2.0)], path=tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"actual\[0\] is 'start'"):
        plot_timeline(PREDICTED, ["start"], path=tmp_path / "x.png")
    with pytest.raises(TypeError, match="list of"):
        plot_timeline("start like", path=tmp_path / "x.png")


def figure_texts(figure):
    """The texts of each axes of a figure, in drawing order."""
    return [[text.get_text() for text in axis.texts] for axis in figure.axes]


def test_timeline_has_a_title_and_no_duplicate_time_labels():
    overlapping = [("start", 0.0), ("like", 0.0), ("comment", 0.0), ("follow", 4.87), ("forward", 4.88), ("leave", 9.0)]
    figure = timeline_figure(overlapping, [("start", 0.0), ("like", 0.0), ("leave", 10.0)])
    assert figure._suptitle.get_text() == "Predicted vs actual timeline"
    for texts in figure_texts(figure):
        times = [text for text in texts if text.endswith("s") and text[:-1].replace(".", "").isdigit()]
        assert len(times) == len(set(times)), times  # start, like and comment at 0 s: one "0s"
    predicted_times = [text for text in figure_texts(figure)[0] if text.endswith("s") and text[0].isdigit()]
    assert predicted_times == ["0s", "4.87s", "4.88s", "9s"]
    assert timeline_figure(overlapping, title="user u1")._suptitle.get_text() == "user u1"
    assert timeline_figure(overlapping)._suptitle.get_text() == "Predicted timeline"


def test_timeline_shows_the_action_probabilities_beside_the_greedy_timeline(tmp_path):
    probabilities = {"like": 0.81, "follow": 0.12, "comment": 0.3}
    figure = timeline_figure(PREDICTED, ACTUAL, probabilities=probabilities)
    bars = figure.axes[-1]
    assert bars.get_title() == "P(action happens)"
    assert [label.get_text() for label in bars.get_yticklabels()] == ["comment", "follow", "like"]
    assert sorted(round(patch.get_width(), 2) for patch in bars.patches) == [0.12, 0.3, 0.81]
    assert {"0.81", "0.12", "0.30"} <= set(figure_texts(figure)[-1])
    assert figure._suptitle.get_text() == "Predicted (greedy) vs actual timeline"
    image = read_png(plot_timeline(PREDICTED, ACTUAL, tmp_path / "p.png", probabilities=probabilities))
    assert count_pixels(image, PALETTE[0]) > 200  # like's bar and marker share its colour
    with pytest.raises(ValueError, match=r"probabilities\['like'\] = 1.5"):
        timeline_figure(PREDICTED, probabilities={"like": 1.5})


def test_training_curves_read_trainer_and_loop_logs(tmp_path):
    trainer = training_curves(TRAINER_STATE)
    assert trainer == {"training loss": ([10.0, 20.0], [2.0, 1.5]), "validation loss": ([20.0], [1.7])}
    log_file = tmp_path / "training_log.json"
    log_file.write_text(json.dumps(LOOP_LOG))
    assert training_curves(log_file) == {"training loss": ([5.0, 10.0], [1.2, 0.9]), "validation loss": ([10.0], [1.0])}
    assert training_curves(LOOP_LOG["log_history"]) == training_curves(log_file)
    assert read_png(plot_training_curves(log_file, tmp_path / "curves.png")).shape[1] > 300


def test_training_curves_errors(tmp_path):
    with pytest.raises(ValueError, match="no 'loss', 'eval_loss' or 'validation_loss'"):
        training_curves({"log_history": [{"step": 1, "learning_rate": 0.1}]})
    with pytest.raises(ValueError, match=r"log_history\[0\].*needs a 'step'"):
        training_curves({"log_history": [{"loss": 1.0}]})
    with pytest.raises(ValueError, match="without a log_history list"):
        training_curves({"best_epoch": 1})
    broken = tmp_path / "broken.json"
    broken.write_text('{"log_history": [\n  {"step": 1,, "loss": 2}]}')
    with pytest.raises(ValueError, match=r"broken.json, line 2, column 14"):
        training_curves(broken)
    with pytest.raises(FileNotFoundError, match="missing.json does not exist"):
        training_curves(tmp_path / "missing.json")


def test_training_curves_read_infinity_and_leave_out_the_points_that_are_not_finite(tmp_path, caplog, capsys):
    """transformers writes trainer_state.json with plain json.dumps: an overflowing run holds "grad_norm": Infinity
    and "loss": Infinity (the package's training_log.json too). Such a log is read and plotted from its finite
    points, with a warning counting the others (before: refused as "not a figure any command writes"); a
    results.json holding Infinity is still refused."""
    state = {"log_history": [
        {"step": 1, "loss": 9.1, "grad_norm": math.inf},
        {"step": 2, "loss": math.inf, "grad_norm": math.inf},
        {"step": 3, "loss": math.nan},
        {"step": 4, "loss": 7.5, "grad_norm": -math.inf},
        {"step": 4, "eval_loss": 8.0},
        {"step": 4, "train_loss": math.inf},  # the closing summary: no point of the curve
    ]}
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps(state, indent=2))  # Infinity, -Infinity and NaN, as Trainer writes them
    assert "Infinity" in path.read_text()
    with caplog.at_level("WARNING", logger="a2gen_hf"):
        curves = training_curves(path)
    assert curves == {"training loss": ([1.0, 4.0], [9.1, 7.5]), "validation loss": ([4.0], [8.0])}
    assert f"{path}: 2 of 4 training loss points are not finite (Infinity, NaN); the training loss curve is drawn " \
           "from its 2 finite points" in caplog.text
    assert main(["plot", "curves", str(path), "--output", str(tmp_path / "c.png")]) == 0
    assert "2 of 4 training loss points are not finite" in capsys.readouterr().err
    assert read_png(tmp_path / "c.png").shape[1] > 300
    # A curve without a finite point is not drawn; a log without any finite loss, or with a step that is not finite,
    # is refused.
    caplog.clear()
    with caplog.at_level("WARNING", logger="a2gen_hf"):
        assert list(training_curves({"log_history": [{"step": 1, "loss": 2.0}, {"step": 1, "eval_loss": math.inf}]})) \
            == ["training loss"]
    assert "1 of 1 validation loss points is not finite (Infinity); the validation loss curve is not drawn" in caplog.text
    path.write_text(json.dumps({"log_history": [{"step": 1, "loss": math.inf}, {"step": 2, "loss": -math.inf}]}))
    with pytest.raises(ValueError, match=r"no loss in the log is finite \(2 of 2 training loss points are not finite "
                                         r"\(Infinity, -Infinity\)\).*lower learning rate"):
        training_curves(path)
    path.write_text('{"log_history": [{"step": Infinity, "loss": 1.0}]}')
    with pytest.raises(ValueError, match=r"log_history\[0\].step is Infinity; a step must be a finite number"):
        training_curves(path)
    results = tmp_path / "results.json"
    results.write_text(json.dumps(RESULTS).replace('"mean": 0.72', '"mean": Infinity', 1))
    with pytest.raises(ValueError, match="Infinity is not a figure any command writes"):
        plot_comparison(results, tmp_path / "r.png")


def test_comparison_bars_with_and_without_mae(tmp_path):
    results_file = tmp_path / "results.json"
    results_file.write_text(json.dumps(RESULTS))
    with_mae = read_png(plot_comparison(results_file, tmp_path / "with_mae.png"))
    auc_only = {"models": {name: {"auc": summary["auc"]} for name, summary in RESULTS["models"].items()}}
    without_mae = read_png(plot_comparison(auc_only, tmp_path / "auc_only.png"))
    assert with_mae.shape[1] > 1.4 * without_mae.shape[1]  # the MAE panel sits beside the AUC panel
    with pytest.raises(ValueError, match='non-empty "models"'):
        plot_comparison({"models": {}}, tmp_path / "x.png")
    # An action with no value for any model (no buy in a small test split): its group, "n/a" marks only, stays inside
    # the axes (before: the x-limits followed the drawn bars, and the last group fell off the chart).
    undefined = {"mean": None, "std": None}
    no_last = {"models": {name: {"auc": {**summary["auc"], "zz": undefined}} for name, summary in RESULTS["models"].items()}}
    plot_comparison(no_last, tmp_path / "no_last.png")  # draws
    from a2gen_hf.plotting import _grouped_bars

    figure, axis = matplotlib.pyplot.subplots()
    _grouped_bars(axis, no_last["models"], "auc", baseline=0.5)
    low, high = axis.get_xlim()
    matplotlib.pyplot.close(figure)
    marks = [text.get_position()[0] for text in axis.texts if text.get_text() == "n/a"]
    assert marks and all(low < mark < high for mark in marks) and high >= len(axis.get_xticks()) - 0.5
    with pytest.raises(ValueError, match='has an "auc" table'):
        plot_comparison({"models": {"m": {"mae": {}}}}, tmp_path / "x.png")


def test_an_action_never_in_training_is_hatched_and_noted_in_the_comparison_plot(tmp_path):
    """From a probe: results.json listed buy in untrained_actions, and the plot drew A2Gen's buy bar well above the
    others with no mark. Now its bars are hatched, its name is noted "never in training", and the legend says so."""

    def marks(figure):
        axis = figure.axes[0]
        hatched = [bar for bar in axis.patches if bar.get_hatch() == UNTRAINED_HATCH]
        notes = [label.get_text() for label in axis.get_xticklabels() if "never in training" in label.get_text()]
        legend = [text.get_text() for text in axis.get_legend().get_texts()]
        return hatched, notes, legend

    hatched, notes, legend = marks(comparison_figure({**RESULTS, "untrained_actions": ["follow"]}))
    follow = 1  # the second group of bars
    assert len(hatched) == 2 and all(abs(bar.get_x() + bar.get_width() / 2 - follow) < 0.5 for bar in hatched)
    assert notes == ["follow\n(never in training)"]
    assert "hatched: never in training" in legend
    hatched, notes, legend = marks(comparison_figure(RESULTS))
    assert not hatched and not notes and not any("never in training" in text for text in legend)
    written = tmp_path / "results.json"
    written.write_text(json.dumps({**RESULTS, "untrained_actions": ["follow"]}, allow_nan=True))
    assert read_png(plot_comparison(written, tmp_path / "untrained.png")).shape[1] > 300


def test_impossible_figures_of_a_results_json_are_refused_naming_the_file_and_the_key(tmp_path, capsys):
    """A hand-edited results.json: a negative std (before: matplotlib's "'yerr' must not contain negative values"),
    a rate outside [0, 1] (before: an AUC of 1e308 printed as a 300-digit number), a negative MAE, an AUC difference
    outside [-1, 1] and a bootstrap_reference that names no model (before: "PLE minus each model") are refused by
    a2gen report and a2gen plot comparison, naming the file and the key. An MAE or a log loss above 1 is fine."""
    row = {"difference": 0.04, "low": -0.01, "high": 0.09}
    report = {
        "models": {name: {**summary, "mean_auc": {"mean": 0.7, "std": 0.01}} for name, summary in RESULTS["models"].items()},
        "positives": {"like": 5, "follow": 3}, "num_test_examples": 40, "seeds": 2,
        "bootstrap": {"mmoe": {"like": row, "follow": row}}, "bootstrap_reference": "a2gen-iag",
    }
    report["models"]["mmoe"]["logloss"] = {"like": {"mean": 2.5, "std": 0.1}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(report))
    assert main(["report", str(path)]) == 0
    assert main(["plot", "comparison", str(path), "--output", str(tmp_path / "r.png")]) == 0
    capsys.readouterr()

    def refused(edit, message, plot=True):
        damaged = json.loads(json.dumps(report))
        edit(damaged)
        path.write_text(json.dumps(damaged))
        for command, kind in ((["report", str(path)], "report"),
                              (["plot", "comparison", str(path), "--output", str(tmp_path / "x.png")], "plot comparison")):
            if kind == "report" or plot:
                assert main(command) == 2
                assert f"a2gen {kind}: error: {path}: {message}" in capsys.readouterr().err
        assert not (tmp_path / "x.png").exists()

    mmoe = lambda r: r["models"]["mmoe"]  # noqa: E731
    refused(lambda r: mmoe(r)["auc"]["like"].update(std=-1), "models.mmoe.auc.like.std is -1; a standard deviation is "
            "never negative: give the figure a2gen compare wrote")
    refused(lambda r: mmoe(r)["auc"]["like"].update(mean=1e308), "models.mmoe.auc.like.mean is 1e+308; an AUC lies "
            "in [0, 1]")
    refused(lambda r: mmoe(r)["mean_auc"].update(mean=-0.2), "models.mmoe.mean_auc.mean is -0.2; a mean AUC lies in")
    refused(lambda r: mmoe(r).update(next_action_accuracy={"mean": 1.5, "std": 0.0}),
            "models.mmoe.next_action_accuracy.mean is 1.5; an accuracy lies in [0, 1]")
    refused(lambda r: mmoe(r)["mae"]["like"].update(mean=-0.5), "models.mmoe.mae.like.mean is -0.5; an MAE is never "
            "negative")
    refused(lambda r: r["bootstrap"]["mmoe"]["like"].update(high=3.0), "bootstrap.mmoe.like.high is 3.0; a difference "
            "of two AUCs lies in [-1, 1]")
    refused(lambda r: r.update(bootstrap_reference="ple"), "bootstrap_reference 'ple' is no model of models; it must "
            "be the one the bootstrap rows compare with, one of 'a2gen-iag', 'mmoe'.")
    # (a probe) what the file says twice must agree: before, each was rendered with rc 0, and drawn by `plot
    # comparison`, which checked only what it draws
    refused(lambda r: r["models"].pop("mmoe"), "bootstrap.mmoe compares a model that models does not hold")
    refused(lambda r: r["positives"].update(like=999), "positives.like is 999, outside 0 to the 40 test examples")
    refused(lambda r: r["positives"].update(like=-3), "positives.like is -3, outside 0")
    refused(lambda r: r.update(num_test_examples=0), "num_test_examples 0 and seeds 2 must be whole numbers of at "
            "least 1")
    refused(lambda r: mmoe(r)["auc"]["like"].update(seeds=[0.6, 0.7, 0.8]), "models.mmoe.auc.like.seeds holds 3 "
            "values where seeds says 2")


def test_cli_plot_curves_and_comparison(tmp_path, capsys):
    log_file, results_file = tmp_path / "trainer_state.json", tmp_path / "results.json"
    log_file.write_text(json.dumps(TRAINER_STATE))
    results_file.write_text(json.dumps(RESULTS))
    assert main(["plot", "curves", str(log_file), "--output", str(tmp_path / "c.png")]) == 0
    assert main(["plot", "comparison", str(results_file), "--output", str(tmp_path / "r.png"), "--title", "T"]) == 0
    assert (tmp_path / "c.png").is_file() and (tmp_path / "r.png").is_file()
    assert main(["plot", "curves", str(tmp_path / "nope.json"), "--output", str(tmp_path / "x.png")]) == 2
    assert "a2gen plot curves: error:" in capsys.readouterr().err


def test_cli_plot_timeline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_home" / "datasets"))
    from a2gen_hf import A2GenForActionGeneration
    from a2gen_hf.data import SimulatorConfig, simulate
    from a2gen_hf.training.data_setup import load_data_dir, model_config_from_tokenizer

    data_dir, model_dir = tmp_path / "data", tmp_path / "model"
    config = SimulatorConfig(num_examples=40, examples_per_user=10, history_length=3, num_items=20, seed=1)
    simulate(config, progress=False, cache_dir=str(tmp_path / "cache")).save(data_dir)
    dataset, tokenizer, _ = load_data_dir(data_dir)
    model_config = model_config_from_tokenizer(tokenizer, dataset, hidden_size=16, num_attention_heads=2)
    A2GenForActionGeneration(model_config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)  # a checkpoint carries its tokenizer (a2gen train / demo save both)

    output = tmp_path / "timeline.png"
    arguments = ["plot", "timeline", "--model", str(model_dir), "--data", str(data_dir), "--output", str(output)]
    assert main([*arguments, "--index", "1"]) == 0
    assert count_pixels(read_png(output), END_COLOR) > 0  # the actual timeline ends with leave
    assert main([*arguments, "--index", "100000"]) == 2
    assert "--index 100000 is out of range" in capsys.readouterr().err


def test_names_the_font_cannot_draw_are_said_once_and_long_names_are_slanted(tmp_path, caplog):
    """From a probe: a CJK action name was drawn as empty boxes, with one matplotlib warning per character on stderr,
    and long names overlapped under their groups."""
    import warnings

    from a2gen_hf.plotting import LONG_TICK_LABEL, undrawable_names

    missing = "收藏" if undrawable_names(["收藏"]) else None  # a machine with a CJK font draws it: nothing to say
    long_name = "add_to_cart_quickly"
    assert len(long_name) > LONG_TICK_LABEL
    renamed = {name: {**summary, "auc": {("收藏" if action == "like" else long_name): value
                                         for action, value in summary["auc"].items()}}
               for name, summary in RESULTS["models"].items()}  # fmt: skip
    report = tmp_path / "results.json"
    report.write_text(json.dumps({"models": renamed}, allow_nan=True))
    with warnings.catch_warnings(record=True) as caught, caplog.at_level("WARNING", logger="a2gen_hf.plotting"):
        warnings.simplefilter("always")
        plot_comparison(report, tmp_path / "names.png")
    assert not [w for w in caught if "missing from font" in str(w.message)]  # matplotlib's per-glyph warnings
    said = [record.getMessage() for record in caplog.records if "no glyph" in record.getMessage()]
    if missing:  # said once, naming the action, whatever the number of its characters
        assert len(said) == 1 and said[0].startswith(f"The action name(s) ['{missing}'] hold characters the plots' font")
    else:
        assert said == []
    figure = comparison_figure({"models": renamed})
    assert {label.get_rotation() for label in figure.axes[0].get_xticklabels()} == {25.0}
    assert {label.get_rotation() for label in comparison_figure(RESULTS).axes[0].get_xticklabels()} == {0.0}


@pytest.mark.parametrize("actions, label", [(["like", "comment"], "test mean AUC (like, comment)"), (None, "test mean AUC")])
def test_the_learning_curve_names_the_actions_its_mean_covers(tmp_path, monkeypatch, actions, label):
    import a2gen_hf.plotting as plotting

    drawn = {}
    monkeypatch.setattr(plotting, "_save", lambda figure, path: drawn.setdefault("figure", figure))
    report = {"sizes": [10, 100], "curves": {"a2gen-iag": {"points": {"10": {"test_mean_auc": {"mean": 0.6, "std": 0.01}}}}}}
    if actions:
        report["actions"] = actions
    plotting.plot_learning_curve(report, tmp_path / "curve.png")
    assert drawn["figure"].axes[0].get_ylabel() == label
    matplotlib.pyplot.close(drawn["figure"])
