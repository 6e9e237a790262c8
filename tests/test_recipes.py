"""The shipped recipes: readable YAML whose keys are options of `a2gen train` and `a2gen compare`."""

import argparse

import pytest

from a2gen_hf.cli import build_parser
from a2gen_hf.recipes import RECIPE_NAMES, load_recipe, recipe_path


def command_parser(name: str) -> argparse.ArgumentParser:
    subparsers = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    return subparsers.choices[name]


def as_flags(recipe: dict, parser: argparse.ArgumentParser | None = None) -> list[str]:
    """The recipe written as the command-line flags it stands for (False as ``--no-...`` where ``parser`` has it)."""
    negatable = {option for action in (parser._actions if parser else []) for option in action.option_strings}
    flags = []
    for key, value in recipe.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is False:
            flags += [f"--no-{flag[2:]}"] if f"--no-{flag[2:]}" in negatable else []
        elif value is not None:
            flags += [flag, str(value)]
    return flags


@pytest.mark.parametrize("name", RECIPE_NAMES)
@pytest.mark.parametrize("command", ["train", "compare"])
def test_shipped_recipes_are_valid_options_of_train_and_compare(name, command):
    recipe = load_recipe(name)
    parser = command_parser(command)
    destinations = {action.dest for action in parser._actions}
    assert recipe and set(recipe) <= destinations, set(recipe) - destinations
    args = parser.parse_args(["--data", "d", "--output", "o", *as_flags(recipe, parser)])
    for key, value in recipe.items():
        assert getattr(args, key) == value, key
    assert recipe_path(name).read_text().lstrip().startswith("#")  # readable: it says what it is


def test_paper_recipe_is_the_paper_and_sparse_recipe_has_no_fixed_epoch_count():
    paper, sparse = load_recipe("paper"), load_recipe("sparse_logs")
    assert (paper["dense_lr"], paper["embedding_lr"], paper["lr_schedule"]) == (5e-4, 1e-4, "constant")
    assert not any(paper.get(key) for key in ("count_features", "popularity_features", "occurrence_head", "id_free"))
    assert paper["history_pooling"] == "sum"
    # Sparse logs of any size: the epochs are a maximum, early stopping and the plateau schedule follow validation.
    assert sparse["patience"] >= 1 and sparse["lr_schedule"] == "plateau" and sparse["select_by"] == "mean_auc"
    # It starts as the regression and keeps the regression's coefficients while the network learns what to add.
    assert sparse["wide_warm_start"] and sparse["wide_residual"] and sparse["wide_frozen"] and sparse["wide_residual_fit"]
    assert sparse["select_generator_by_loss"] and sparse["occurrence_paths_input"] == "extra_only"
    # The regression may shrink towards the count rule, per action; the -shares baselines use the same scale.
    from a2gen_hf.training.simple_baselines import SHARE_SCALE

    assert sparse["wide_share_scale"] == SHARE_SCALE == 10.0


def test_timed_video_recipe_warms_a_frozen_moment_table_and_runs(simulated_data_dir, tmp_path):
    from a2gen_hf.cli import main
    from a2gen_hf.training.moment_factorization import check_moment_start

    recipe = load_recipe("timed_video")
    assert recipe["event_moment_source"] == "table" and recipe["target_item_moments"]
    assert recipe["moment_warm_start"] == "frozen" and recipe["patience"] >= 1 and recipe["lr_schedule"] == "plateau"
    output = tmp_path / "run"
    assert main(["train", "--recipe", "timed_video", "--data", str(simulated_data_dir), "--output", str(output),
                 "--max-steps", "2", "--hidden-size", "16", "--id-embedding-size", "8", "--no-progress"]) == 0
    from a2gen_hf import AutoModelForActionGeneration

    model = AutoModelForActionGeneration.from_pretrained(output / "model")
    check_moment_start(model.config, "frozen")  # the saved config has the table the recipe warms
    assert model.config.target_item_moments and model.a2gen.features.item_moments.table.weight.abs().sum() > 0


def test_load_recipe_from_a_file_and_its_errors(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("# my settings\ndense_lr: 1.0e-3\nmodels: a2gen-iag,mmoe\ncount_features: true\n")
    assert load_recipe(str(path)) == {"dense_lr": 1e-3, "models": "a2gen-iag,mmoe", "count_features": True}
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    assert load_recipe(str(tmp_path / "empty.yaml")) == {}
    with pytest.raises(FileNotFoundError, match=r"neither a shipped recipe \['paper', 'paper_inputs', 'sparse_logs', 'timed_video'\]"):
        load_recipe("sparse")
    (tmp_path / "list.yaml").write_text("- dense_lr\n")
    with pytest.raises(ValueError, match=r"list.yaml: a recipe is a mapping .* not a list"):
        load_recipe(str(tmp_path / "list.yaml"))
    (tmp_path / "nested.yaml").write_text("dense_lr: [1, 2]\n")
    with pytest.raises(ValueError, match=r"nested.yaml: dense_lr is a list; recipe values are single"):
        load_recipe(str(tmp_path / "nested.yaml"))
    (tmp_path / "broken.yaml").write_text("dense_lr: 1\n  bad: : x\n")
    with pytest.raises(ValueError, match=r"broken.yaml, line 2, column \d+: not valid YAML"):
        load_recipe(str(tmp_path / "broken.yaml"))


def test_train_with_the_sparse_logs_recipe_starts_as_the_regression(simulated_data_dir, tmp_path):
    """`a2gen train --recipe sparse_logs` on a tiny log: the wide path is warm-started (residual), the starting
    weights are evaluated at step 0 and compete in selection, and the run saves a model and test metrics."""
    import json

    from a2gen_hf.cli import main

    output = tmp_path / "sparse"
    argv = ["train", "--recipe", "sparse_logs", "--data", str(simulated_data_dir), "--output", str(output),
            "--epochs", "2", "--hidden-size", "8", "--num-attention-heads", "2", "--id-embedding-size", "8",
            "--no-progress"]
    assert main(argv) == 0
    log = json.loads((output / "training_log.json").read_text())
    evaluations = [entry for entry in log["log_history"] if "validation_loss" in entry]
    assert evaluations[0]["step"] == 0 and "validation_mean_auc" in evaluations[0]
    # The ranking is held at the fit (freeze_ranking): the best evaluation is the generator's lowest loss.
    assert log["settings"]["freeze_ranking"] and not any("validation_mean_auc" in entry for entry in evaluations[1:])
    lowest = min(evaluations, key=lambda entry: entry["validation_generator_loss"])["step"]
    assert log["best_step"] == log["best_generator_step"] == lowest
    # What training did not improve on validation went back to the start, and the log says what.
    assert set(log["given_back_to_the_start"]) == {"median_times_for", "regression_for"}
    # How the model was started is recorded too (before: only logged): the options and what the fit kept.
    start = log["start"]
    assert start["wide_warm_start"] and start["wide_residual"] and start["wide_residual_fit"] and start["model"]
    assert set(start["residual_fit"]) == {"start", "fitted", "weight_decay", "regression_kept_for", "one_class_in_training"}
    assert set(start["regression_choices"]) and all("C" in choice for choice in start["regression_choices"].values())
    assert (output / "model" / "config.json").exists() and (output / "eval_results.json").exists()
    config = json.loads((output / "model" / "config.json").read_text())
    assert config["wide_path"] and config["occurrence_head"] and not config["use_id_embeddings"]
    assert config["occurrence_paths_input"] == "extra_only"  # what the network adds reads the counts alone
    assert (config["occurrence_linear_path"], config["occurrence_hidden_size"]) == (False, 64)  # count-network's
    # Patience counts from step 300: the first steps' dip neither stops the run nor halves the rates.
    assert log["settings"]["patience_from_step"] == 300
    assert all(entry["lr_scale"] == 1.0 for entry in evaluations if entry["step"] < 300)
    # The item counts are keyed by raw id, one row per distinct train item, and reload with the model.
    from a2gen_hf import A2GenForActionGeneration
    from a2gen_hf.training.data_setup import load_data_dir

    distinct = len(set(load_data_dir(simulated_data_dir)[0]["train"]["item"]))
    assert (config["popularity_keys"], config["popularity_table_size"]) == ("raw_ids", distinct)
    reloaded = A2GenForActionGeneration.from_pretrained(output / "model")
    assert reloaded.a2gen.extra_features.popularity_features.item_totals.shape == (distinct,)
    # The saved times are the median's (weights 0) exactly where the log says they were given back.
    given_back, head = log["given_back_to_the_start"]["median_times_for"], reloaded.generator.heads.time
    if head.out_features == 1:
        assert (not head.weight.any()) == bool(given_back)
    for action, name in enumerate(reloaded.config.action_names[1:] if head.out_features > 1 else [], start=2):
        assert (not head.weight[action].any()) == (name in given_back), name
    # A second phase with the same recipe: its warm starts (the regression, residual, frozen) give way to the weights.
    second = ["train", *argv[1:argv.index("--output")], "--output", str(tmp_path / "second"), *argv[argv.index("--epochs"):],
              "--init-from", str(output / "model"), "--eval-before-training"]
    assert main(second) == 0
    evaluations = [entry for entry in json.loads((tmp_path / "second" / "training_log.json").read_text())["log_history"]
                   if "validation_loss" in entry]
    # ... and ranks as the first run's saved model does: its fit, held through training (scored at its step 0).
    held = next(entry["validation_mean_auc"] for entry in log["log_history"] if "validation_mean_auc" in entry)
    assert evaluations[0]["step"] == 0 and evaluations[0]["validation_mean_auc"] == pytest.approx(held, abs=1e-6)


def test_train_with_the_paper_inputs_recipe_builds_the_options_it_names(simulated_data_dir, tmp_path):
    """`a2gen train --recipe paper_inputs`: the paper's inputs only (ids not embedded), with the reading options the
    recipe names."""
    import json

    from a2gen_hf.cli import main

    output = tmp_path / "paper_inputs"
    argv = ["train", "--recipe", "paper_inputs", "--data", str(simulated_data_dir), "--output", str(output),
            "--epochs", "1", "--hidden-size", "8", "--id-embedding-size", "8", "--no-progress"]
    assert main(argv) == 0
    config = json.loads((output / "model" / "config.json").read_text())
    assert not config["use_id_embeddings"] and not config["history_count_features"] and not config["occurrence_head"]
    assert (config["num_attention_heads"], config["history_pooling"], config["time_buckets"]) == (1, "sqrt", 32)
    assert (config["initializer_range"], config["action_embedding_init_std"]) == (1.0, 1.0)
    assert config["target_drops_repeated_start"]
    settings = json.loads((output / "training_log.json").read_text())["settings"]
    assert (settings["early_stopping_patience"], settings["early_stopping_min_steps"]) == (2, 500)


def test_switches_named_no_something_do_what_they_say():
    """argparse reads a flag that starts with --no- as a negation: --no-best-epoch and --no-progress once set their
    fields to False, so the best weights were kept and the bars shown whatever the user asked."""
    from a2gen_hf.cli import parse_arguments

    base = ["train", "--data", "d", "--output", "o"]
    assert (parse_arguments(base).best_epoch, parse_arguments(base).progress) == (True, True)
    chosen = parse_arguments([*base, "--no-best-epoch", "--no-progress"])
    assert (chosen.best_epoch, chosen.progress) == (False, False)


def test_a_switch_a_recipe_turns_on_can_be_turned_off_by_the_command_line_or_a_config_file(tmp_path):
    from a2gen_hf.cli import parse_arguments

    base = ["train", "--recipe", "sparse_logs", "--data", "d", "--output", "o"]
    assert parse_arguments(base).id_free is True
    assert parse_arguments([*base, "--no-id-free"]).id_free is False
    assert parse_arguments(["train", "--data", "d", "--output", "o"]).id_free is False
    settings = tmp_path / "mine.yaml"
    settings.write_text("id_free: false\n")
    assert parse_arguments([*base, "--config", str(settings)]).id_free is False
    assert parse_arguments([*base, "--config", str(settings), "--id-free"]).id_free is True


def test_an_optional_number_a_recipe_sets_can_be_unset_by_none_or_null(tmp_path, capsys):
    """Before: `--patience 0` was refused ("or None: off") and `patience: null` in --config silently dropped, so a
    recipe's early stopping could not be turned off."""
    from a2gen_hf.cli import main, parse_arguments

    base = ["train", "--recipe", "sparse_logs", "--data", "d", "--output", "o"]
    recipe = parse_arguments(base)
    assert recipe.patience is not None and recipe.eval_every is not None
    assert parse_arguments([*base, "--patience", "none"]).patience is None
    assert parse_arguments([*base, "--max-grad-norm", "None"]).max_grad_norm is None
    settings = tmp_path / "mine.yaml"
    settings.write_text("patience: null\neval_every: null\n")
    unset = parse_arguments([*base, "--config", str(settings)])
    assert unset.patience is None and unset.eval_every is None
    assert parse_arguments([*base, "--config", str(settings), "--patience", "4"]).patience == 4
    settings.write_text("batch_size: null\n")  # not an optional number: refused naming the key
    with pytest.raises(SystemExit) as exited:
        main([*base, "--config", str(settings)])
    assert exited.value.code == 2
    assert "batch_size: null is not a value of --batch-size" in capsys.readouterr().err


def test_a_config_file_value_is_checked_naming_the_file_and_key_and_keys_given_twice_are_refused(tmp_path, capsys):
    """Before: argparse's "argument --batch-size: invalid int value: '64.7'" (no file, no key), and a key given twice
    silently took the last value."""
    from a2gen_hf.cli import main

    base = ["train", "--data", str(tmp_path / "data"), "--output", str(tmp_path / "out")]
    for text, message in (
        ("batch_size: 64.7\n", "batch_size: 64.7 is not a value of --batch-size (not a valid int)"),
        ("patience: true\n", "patience: True is not a value of --patience"),
        ("select_by: auc\n", "select_by: 'auc' is not a value of --select-by; allowed values: loss, mean_auc"),
        ("batch_size: 64\nbatch_size: 32\n", "line 2, column 1: not valid YAML (key 'batch_size' is given twice "
                                               "(first on line 1); keep one)"),
    ):
        settings = tmp_path / "settings.yaml"
        settings.write_text(text)
        with pytest.raises(SystemExit) as exited:
            main([*base, "--config", str(settings)])
        assert exited.value.code == 2
        error = capsys.readouterr().err
        assert str(settings) in error and message in error, error


def test_wide_path_with_the_occurrence_head_turned_off_is_refused(simulated_data_dir, tmp_path, capsys):
    """A2Gen's wide path needs its occurrence head: before, --no-occurrence-head was overridden without a word."""
    from a2gen_hf.cli import main

    for extra in (["--count-features", "--wide-path", "--no-occurrence-head"], ["--recipe", "paper", "--count-features", "--wide-path"]):
        argv = ["train", "--data", str(simulated_data_dir), "--output", str(tmp_path / "out"), *extra]
        assert main(argv) == 2
        assert "--wide-path needs A2Gen's occurrence head" in capsys.readouterr().err
        assert not (tmp_path / "out").exists()


def test_the_recipes_wide_start_without_a_wide_path_is_refused_before_the_regression_is_fitted(
    simulated_data_dir, tmp_path, capsys, monkeypatch
):
    """(a probe) `--recipe sparse_logs --no-wide-path`: train fitted the regression (minutes on a real log), then
    said "build it with --wide-path"; now refused before any fit, naming both ways out."""
    from a2gen_hf.cli import main
    from a2gen_hf.training import simple_baselines

    fits = []
    monkeypatch.setattr(simple_baselines.CountFeatureLogisticRegression, "fit", lambda self, *a, **k: fits.append(1))
    argv = ["train", "--recipe", "sparse_logs", "--no-wide-path", "--data", str(simulated_data_dir), "--output",
            str(tmp_path / "out"), "--max-steps", "2"]  # fmt: skip
    assert main(argv) == 2
    assert ("the wide warm start (--wide-warm-start) starts the networks' wide path, which is off (--no-wide-path): "
            "switch it on (--wide-path), or the wide start off (--no-wide-warm-start") in capsys.readouterr().err
    assert fits == [] and not (tmp_path / "out" / "model").exists()


def test_train_mmoe_with_the_sparse_logs_recipe_applies_what_applies_to_it(simulated_data_dir, tmp_path, caplog):
    """`a2gen train --model mmoe --recipe sparse_logs`: the recipe's A2Gen-only parts (the residual fit of the
    occurrence head, the generator selected apart) are not applied, with a warning that names them; the wide path
    still starts as the frozen regression and the run saves a model."""
    import json
    import logging

    from a2gen_hf.cli import main

    output = tmp_path / "mmoe"
    argv = ["train", "--model", "mmoe", "--recipe", "sparse_logs", "--data", str(simulated_data_dir), "--output",
            str(output), "--epochs", "1", "--hidden-size", "8", "--id-embedding-size", "8", "--no-progress"]
    with caplog.at_level(logging.WARNING, logger="a2gen_hf.training.loop"):
        assert main(argv) == 0
    assert "mmoe is not A2Gen: trained without the residual fit (--wide-residual-fit)" in caplog.text
    # the recipe's A2Gen-only model settings are named too (before: "the other settings apply", while they were dropped)
    assert "mmoe is not A2Gen: these A2Gen settings do not apply to it and are not used: " in caplog.text
    assert "occurrence_head=True" in caplog.text and "time_per_action=True" in caplog.text
    log = json.loads((output / "training_log.json").read_text())
    assert not log["settings"]["select_generator_by_loss"] and "best_generator_step" not in log
    assert (output / "model" / "config.json").exists()
    # A second phase with the same --model and --recipe (before: refused, advising flags the recipe does not set)
    second = ["train", "--model", "mmoe", "--recipe", "sparse_logs", "--data", str(simulated_data_dir), "--output",
              str(tmp_path / "second"), "--init-from", str(output / "model"), "--max-steps", "2", "--no-progress"]
    assert main(second) == 0 and (tmp_path / "second" / "model" / "config.json").exists()


def test_train_mmoe_with_the_timed_video_recipe_skips_the_moment_warm_start(simulated_data_dir, tmp_path, caplog):
    """Before: refused, advising --event-item-moments and --event-moment-source, which the recipe sets (the table
    they build is A2Gen's, and a2gen compare skipped it for MMoE already)."""
    import logging

    from a2gen_hf.cli import main

    argv = ["train", "--model", "mmoe", "--recipe", "timed_video", "--data", str(simulated_data_dir), "--output",
            str(tmp_path / "mmoe"), "--max-steps", "2", "--no-progress"]
    with caplog.at_level(logging.WARNING, logger="a2gen_hf.training.loop"):
        assert main(argv) == 0
    assert "mmoe is not A2Gen: trained without the moment warm start (--moment-warm-start frozen)" in caplog.text


def test_load_yaml_stays_safe_and_refuses_keys_given_twice():
    """The loader behind --config and recipes is yaml.SafeLoader plus the duplicate-key check: no object tags."""
    import yaml

    from a2gen_hf.recipes import load_yaml

    assert load_yaml("a: 1\nb: {c: 2}\n") == {"a": 1, "b": {"c": 2}}
    with pytest.raises(yaml.YAMLError, match="could not determine a constructor"):
        load_yaml("a: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(yaml.YAMLError, match=r"key 'c' is given twice \(first on line 3\)"):
        load_yaml("a: 1\nb:\n  c: 2\n  c: 3\n")


def test_config_files_read_as_their_flags_say(tmp_path, capsys):
    """Found by a probe: merge keys (<<: *defaults) were refused; `mixed_precision: no` (YAML's false) was refused
    listing "no" among the allowed values; prepare's --generic-* options needed their internal names (`actions`, not
    `generic_actions`); a nested mapping became its repr as a value; `quiet: true` was an unknown key."""
    from a2gen_hf.cli import parse_arguments

    def parsed(text, *command):
        settings = tmp_path / "settings.yaml"
        settings.write_text(text)
        return parse_arguments([*(command or ("train", "--data", "d", "--output", "o")), "--config", str(settings)])

    merged = parsed("<<: &defaults {batch_size: 64, epochs: 3}\nepochs: 2\n")  # a merged key given again overrides
    assert (merged.batch_size, merged.epochs) == (64, 2)
    words = parsed("mixed_precision: no\nmoment_warm_start: off\nquiet: true\n")
    assert (words.mixed_precision, words.moment_warm_start, words.quiet) == ("no", "off", True)
    generic = parsed("generic_actions: click,buy\ngeneric_user_column: uid\n", "prepare", "--input", "x.csv",
                     "--output", "o", "--preset", "generic")  # fmt: skip
    assert (generic.actions, generic.user_column) == ("click,buy", "uid")
    assert parsed("actions: click,buy\n", "prepare", "--input", "x.csv", "--output", "o", "--preset", "generic").actions == "click,buy"
    for text, message in (
        ("output: {dir: runs, name: x}\n", "output holds a mapping; a --config file is a flat mapping"),
        ("lr_schedule: yes\n", "lr_schedule: True (YAML reads unquoted yes / no / on / off as true / false) is not a"),
    ):
        with pytest.raises(SystemExit):
            parsed(text)
        assert message in capsys.readouterr().err


def test_an_anchor_under_an_x_key_is_shared_by_merge_keys_and_other_unknown_keys_are_still_refused(tmp_path, capsys):
    """Found by a probe: cli.md promised `<<: *defaults`, but the top-level key that carries the anchor was refused
    as unknown. Keys that start with `x-` (docker-compose's extension fields) are now ignored."""
    from a2gen_hf.cli import parse_arguments

    def parsed(text):
        settings = tmp_path / "settings.yaml"
        settings.write_text(text)
        return parse_arguments(["train", "--data", "d", "--output", "o", "--config", str(settings)])

    merged = parsed("x-defaults: &d {max_steps: 1, epochs: 3}\n<<: *d\nepochs: 2\n")
    assert (merged.max_steps, merged.epochs) == (1, 2)
    assert parsed("x-defaults: &d {max_steps: 1}\n<<: *d\n").max_steps == 1
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("x-base: &b {dense_lr: 0.001}\n<<: *b\n")
    assert load_recipe(str(recipe)) == {"dense_lr": 0.001}
    for text in ("defaults: &d {max_steps: 1}\n<<: *d\n", "x_defaults: 1\n"):
        with pytest.raises(SystemExit):
            parsed(text)
        error = capsys.readouterr().err
        key = text.split(":")[0]
        assert f"unknown key {key!r} for `a2gen train`; allowed keys: " in error
        assert f"starts with x-: x-{key}." in error  # the way to keep such a key


@pytest.mark.parametrize("command", [["evaluate", "--model", "m", "--data", "d"], ["simulate", "--output", "o"]])
def test_a_shipped_recipe_on_a_command_it_is_not_for_says_so(command, capsys):
    """(a probe) --recipe sparse_logs on evaluate / simulate / ... listed the recipe's first key as unknown and
    suggested an x- prefix, editing a file the user does not own."""
    from a2gen_hf.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--recipe", "sparse_logs"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert (f"--recipe sparse_logs: the shipped recipes hold training settings, for `a2gen train` and `a2gen "
            f"compare`; `a2gen {command[0]}` takes none of them") in err and "x-" not in err
