"""Found by a probe of the recipes (2026, s29): what `--recipe` / `--config` and the recipes' premises did without a
word. Each test fails on the code before its fix:

- `a2gen compare --recipe sparse_logs --models a2gen-iag,mmoe,ple` did not say which A2Gen settings MMoE and PLE do
  not use (`a2gen train --model mmoe` did);
- `a2gen train --init-from RUN/model` of a model with a wide path (the `sparse_logs` recipe's regression start) did
  not give the times back to the median after training (the first phase did);
- a second `--recipe` (or `--config`) replaced the first without a word;
- `recipe: sparse_logs` in a `--config` file was an unknown key;
- the `timed_video` recipe trained on a Taobao-format log (no action times inside the items) without a notice;
- `a2gen compare --help` named `--max-steps`, which compare does not have.
"""

import argparse
import json
import logging
import random
import re

import pytest

from a2gen_hf.cli import build_parser, main, parse_arguments

TRAIN_SIZES = ["--hidden-size", "8", "--num-attention-heads", "2", "--id-embedding-size", "8", "--no-progress"]


def write_taobao_log(path, users: int = 30, seed: int = 0) -> None:
    """A small log in Taobao's UserBehavior.csv format (no header; user, item, category, behaviour, Unix seconds inside
    the preset's window), each user's rows in time order."""
    generator = random.Random(seed)
    first = 1511539200
    rows = []
    for user in range(1, users + 1):
        for _ in range(8):
            item = generator.randrange(1, 80)
            seconds = first + generator.randrange(0, 8 * 86400)
            rows.append((user, item, item % 7, "pv", seconds))
            for behaviour in ("fav", "cart", "buy"):
                if generator.random() < 0.35:
                    seconds += generator.randrange(5, 5000)
                    rows.append((user, item, item % 7, behaviour, seconds))
    rows.sort(key=lambda row: (row[0], row[4]))
    path.write_text("".join(",".join(map(str, row)) + "\n" for row in rows))


@pytest.fixture(scope="module")
def taobao_data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("taobao")
    write_taobao_log(folder / "log.csv")
    assert main(["prepare", "--preset", "taobao", "--input", str(folder / "log.csv"), "--output",
                 str(folder / "data"), "--quiet"]) == 0  # fmt: skip
    return folder / "data"


def stop_before_training(monkeypatch):
    """`a2gen compare` stops, as a refusal does, once every check and warning before its first run is done."""
    from a2gen_hf.training import compare

    def stop(output_dir):
        raise ValueError("stopped by the test before training")

    monkeypatch.setattr(compare, "_retire_earlier_results", stop)


# 1. compare warns of the A2Gen-only settings, once per network that drops them, as train does


def test_compare_warns_once_per_network_of_the_a2gen_settings_it_does_not_use(
    simulated_data_dir, tmp_path, caplog, monkeypatch, capsys
):
    stop_before_training(monkeypatch)
    argv = ["compare", "--recipe", "sparse_logs", "--models", "a2gen-iag,mmoe,ple,mmoe-fair", "--data",
            str(simulated_data_dir), "--output", str(tmp_path / "out"), "--seeds", "2", "--simple", "", "--quiet"]
    with caplog.at_level(logging.WARNING, logger="a2gen_hf"):
        assert main(argv) == 2
    assert "stopped by the test before training" in capsys.readouterr().err
    # the words of a2gen train's warning (tests/test_recipes.py), from the same function
    for network in ("mmoe", "ple", "mmoe-fair"):
        lines = [record.getMessage() for record in caplog.records
                 if record.getMessage().startswith(f"{network} is not A2Gen: these A2Gen settings do not apply to it "
                                                   "and are not used: ")]  # fmt: skip
        assert len(lines) == 1, (network, caplog.text)  # once per network, not per seed
        assert "occurrence_head=True" in lines[0] and "time_per_action=True" in lines[0]
    assert "a2gen-iag is not A2Gen" not in caplog.text


def test_train_and_compare_share_the_warning_of_the_settings_a_network_drops(caplog):
    from a2gen_hf.training import compare, data_setup, loop

    assert compare.warn_of_settings_the_model_drops is loop.warn_of_settings_the_model_drops
    assert loop.warn_of_settings_the_model_drops is data_setup.warn_of_settings_the_model_drops
    with caplog.at_level(logging.WARNING, logger="a2gen_hf"):
        assert loop.warn_of_settings_the_model_drops("a2gen-iag", {"occurrence_head": True}) == {}
        assert loop.warn_of_settings_the_model_drops("ple", {"occurrence_head": True}) == {"occurrence_head": True}
    assert caplog.text.count("is not A2Gen") == 1


# 2. a second phase from a model with a wide path gives the times back as the first phase does


def test_a_second_phase_from_a_model_with_a_wide_path_gives_the_times_back_to_the_median(
    simulated_data_dir, tmp_path, caplog
):
    from a2gen_hf import A2GenForActionGeneration

    first = tmp_path / "first"
    base = ["train", "--recipe", "sparse_logs", "--data", str(simulated_data_dir), *TRAIN_SIZES]
    assert main([*base, "--output", str(first), "--max-steps", "2"]) == 0
    second = tmp_path / "second"
    assert main([*base, "--output", str(second), "--init-from", str(first / "model"), "--max-steps", "3"]) == 0
    log = json.loads((second / "training_log.json").read_text())
    # decided by the saved model's config (its wide path), not by --wide-residual, which --init-from drops
    assert log["start"]["init_from"] and not log["start"]["wide_residual"]
    given_back = log["given_back_to_the_start"]
    assert isinstance(given_back["median_times_for"], list)
    assert given_back["regression_for"] is None  # the ranking is not judged again (the log and docs say why)
    model = A2GenForActionGeneration.from_pretrained(second / "model")
    assert model.config.wide_path and model.config.time_per_action
    head = model.generator.heads.time
    for action, name in enumerate(model.config.action_names[1:], start=2):  # the saved rows are the median's there
        assert (not head.weight[action].any()) == (name in given_back["median_times_for"]), name
    # The ranking trained (--no-freeze-ranking): it cannot go back to a regression no longer known, and a warning says so
    with caplog.at_level(logging.WARNING, logger="a2gen_hf"):
        assert main([*base, "--output", str(tmp_path / "third"), "--init-from", str(first / "model"), "--max-steps",
                     "1", "--no-freeze-ranking"]) == 0  # fmt: skip
    assert "is not given back per action to the regression the saved model may have started from" in caplog.text
    assert json.loads((tmp_path / "third" / "training_log.json").read_text())["given_back_to_the_start"]


def test_a_second_phase_from_a_model_without_a_wide_path_gives_nothing_back(simulated_data_dir, tmp_path):
    base = ["train", "--data", str(simulated_data_dir), *TRAIN_SIZES, "--max-steps", "1"]
    assert main([*base, "--output", str(tmp_path / "first")]) == 0
    assert main([*base, "--output", str(tmp_path / "second"), "--init-from", str(tmp_path / "first" / "model")]) == 0
    assert "given_back_to_the_start" not in json.loads((tmp_path / "second" / "training_log.json").read_text())


# 3. a repeated --recipe / --config is refused, naming both values


@pytest.mark.parametrize("command", [["train", "--data", "d", "--output", "o"], ["compare", "--data", "d", "--output", "o"]])
def test_a_second_recipe_or_config_is_refused_naming_both(command, tmp_path, capsys):
    for repeated, message in (
        (["--recipe", "sparse_logs", "--recipe", "paper"], "argument --recipe: given twice (sparse_logs, then paper); "
                                                           "a run takes one recipe: keep one --recipe, and put the "
                                                           "settings you want of the other into a --config file"),
        (["--recipe=sparse_logs", "--rec", "paper"], "argument --recipe: given twice (sparse_logs, then paper)"),
        (["--config", "a.yaml", "--config", "b.yaml"], "argument --config: given twice (a.yaml, then b.yaml); a run "
                                                       "reads one --config file"),
    ):
        with pytest.raises(SystemExit) as exited:
            parse_arguments([*command, *repeated])
        assert exited.value.code == 2
        error = capsys.readouterr().err
        assert message in error, error
    # the same recipe twice drops nothing: accepted
    assert parse_arguments([*command, "--recipe", "paper", "--recipe", "paper"]).dense_lr == 5e-4


# 4. a --config file may name its recipe


def test_a_config_file_naming_its_recipe_is_the_recipe_then_the_file(tmp_path, capsys):
    base = ["train", "--data", "d", "--output", "o"]
    settings = tmp_path / "settings.yaml"
    settings.write_text("recipe: sparse_logs\ndense_lr: 0.001\n")
    plain = tmp_path / "plain.yaml"
    plain.write_text("dense_lr: 0.001\n")
    named = parse_arguments([*base, "--config", str(settings)])
    flagged = parse_arguments([*base, "--recipe", "sparse_logs", "--config", str(plain)])
    assert vars(named) == {**vars(flagged), "config": str(settings)}
    assert named.recipe == "sparse_logs" and named.id_free and named.dense_lr == 0.001  # the file over its recipe
    assert parse_arguments([*base, "--config", str(settings), "--dense-lr", "0.002"]).dense_lr == 0.002
    assert parse_arguments([*base, "--config", str(settings), "--recipe", "sparse_logs"]).dense_lr == 0.001  # the same
    (tmp_path / "mine.yaml").write_text("batch_size: 48\n")  # a recipe file, read from the config file's folder
    settings.write_text("recipe: mine.yaml\n")
    assert parse_arguments([*base, "--config", str(settings)]).batch_size == 48
    settings.write_text("recipe: null\nbatch_size: 32\n")
    assert parse_arguments([*base, "--config", str(settings)]).batch_size == 32
    for text, extra, message in (
        ("recipe: sparse_logs\n", ["--recipe", "paper"],
         f"--recipe paper and {settings}'s recipe: sparse_logs name two recipes; a run takes one"),
        ("recipe: 3\n", [], f"{settings}: recipe: 3 is not a recipe; give the name of a shipped one"),
        ("recipe: sparse\n", [], "is neither a shipped recipe"),
    ):
        settings.write_text(text)
        with pytest.raises(SystemExit) as exited:
            parse_arguments([*base, "--config", str(settings), *extra])
        assert exited.value.code == 2
        assert message in capsys.readouterr().err
    settings.write_text("recipe: sparse_logs\n")
    with pytest.raises(SystemExit):
        parse_arguments(["evaluate", "--model", "m", "--data", "d", "--config", str(settings)])
    assert "the shipped recipes hold training settings" in capsys.readouterr().err


# 5. the timed_video recipe on a log without action times inside its items: a warning naming sparse_logs


def test_item_times_are_read_from_the_data_folders_summary(simulated_data_dir, taobao_data_dir):
    from a2gen_hf.data.presets import PRESETS
    from a2gen_hf.training.data_setup import item_times_problem, load_data_dir

    assert item_times_problem(load_data_dir(simulated_data_dir)[2]) is None
    assert "event log without a duration column (preset 'taobao'" in item_times_problem(load_data_dir(taobao_data_dir)[2])

    def summary(preset, **changes):
        from dataclasses import asdict, replace

        return {"source": "log.csv", "preset": asdict(replace(PRESETS[preset], **changes)), "rules": {}}

    assert "dates" in item_times_problem(summary("tmall"))
    assert "view log" in item_times_problem(summary("kuairand"))
    assert item_times_problem(summary("taobao", name="generic", columns=None, duration_column="watch_ms")) is None
    assert item_times_problem({}) is None  # a summary that does not say: no warning


def test_timed_video_on_a_taobao_format_log_warns_naming_sparse_logs(taobao_data_dir, tmp_path, caplog, monkeypatch):
    argv = ["train", "--recipe", "timed_video", "--data", str(taobao_data_dir), "--output", str(tmp_path / "run"),
            "--max-steps", "1", "--hidden-size", "8", "--id-embedding-size", "8", "--no-progress"]
    with caplog.at_level(logging.WARNING, logger="a2gen_hf"):
        assert main(argv) == 0  # warned, not refused
    warning = "Taobao's format): its times run from the first event of each (user, item) session"
    assert caplog.text.count(warning) == 1 and "the sparse_logs recipe fits (--recipe sparse_logs)" in caplog.text
    # before training: the warning comes before the moment table's warm start
    messages = [record.getMessage() for record in caplog.records]
    assert any(warning in message for message in messages)
    caplog.clear()
    stop_before_training(monkeypatch)  # compare: once, before anything trains
    argv = ["compare", "--recipe", "timed_video", "--models", "a2gen-iag,mmoe", "--data", str(taobao_data_dir),
            "--output", str(tmp_path / "compare"), "--seeds", "2", "--simple", "", "--quiet"]
    with caplog.at_level(logging.WARNING, logger="a2gen_hf"):
        assert main(argv) == 2
    assert caplog.text.count(warning) == 1


def test_timed_video_on_simulated_short_video_warns_of_nothing(simulated_data_dir, caplog):
    from a2gen_hf.configuration_a2gen import A2GenConfig
    from a2gen_hf.training.data_setup import load_data_dir, warn_of_moments_without_item_times

    config = A2GenConfig(history_event_item_moments=64)
    with caplog.at_level(logging.WARNING, logger="a2gen_hf"):
        assert warn_of_moments_without_item_times(config, load_data_dir(simulated_data_dir)[2], "sim") is None
    assert not caplog.records


# 6. every flag an option's help names is one of its command's, or says whose it is


def test_option_help_names_only_flags_its_command_has():
    subparsers = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    for name, command in subparsers.choices.items():
        flags = {flag for action in command._actions for flag in action.option_strings}
        for action in command._actions:
            text = " ".join((action.help or "").split())
            for match in re.finditer(r"--[a-z][a-z0-9-]*[a-z0-9](?![a-z0-9-])", text):  # not a prefix (--generic-*)
                owner = re.search(r"a2gen [a-z]+(?:'s)? $", text[: match.start()])  # "a2gen train's --max-steps"
                assert match[0] in flags or owner, f"a2gen {name} {action.option_strings[0]}: {match[0]} ({text})"


def test_compare_in_python_with_a_simple_baseline_among_the_models_gets_past_the_warnings(simulated_data_dir, tmp_path,
                                                                                         monkeypatch):
    """The review of s29: the per-network warnings looked every --models name up as a network (KeyError: 'logreg')."""
    from a2gen_hf.training.compare import ComparisonSettings, run_comparison

    stop_before_training(monkeypatch)
    settings = ComparisonSettings(models=("a2gen-iag", "logreg"), simple_baselines=(), seeds=1)
    with pytest.raises(ValueError, match="stopped by the test before training"):
        run_comparison(simulated_data_dir, tmp_path / "out", settings)


def test_a_recipe_file_naming_another_recipe_says_a_recipe_cannot_include_one(tmp_path, capsys):
    """The review of s29: a recipe file's `recipe:` key got the unknown-key error with an x- anchor hint."""
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("recipe: sparse_logs\nbatch_size: 64\n")
    with pytest.raises(SystemExit):
        parse_arguments(["train", "--recipe", str(recipe), "--data", str(tmp_path), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert "the recipe names another recipe (recipe: 'sparse_logs')" in err and "x-recipe" not in err
