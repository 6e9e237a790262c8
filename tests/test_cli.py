"""The `a2gen` command: its parser (help, defaults, --config), `bench` (runs the repository's benchmark scripts), `simulate` and `prepare`'s bucket flags.

The real benchmarks take minutes; stand-in scripts in a temporary folder record the arguments they get instead.
"""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from a2gen_hf import A2GenActionTokenizer, cli

RECORDER = """
import json, sys
from pathlib import Path
with open(Path(__file__).with_suffix(".calls"), "a") as calls:
    calls.write(json.dumps({"python": sys.executable, "args": sys.argv[1:]}) + "\\n")
sys.exit(EXIT_CODE)
"""


def recorder_folder(folder: Path, exit_codes: dict[str, int] | None = None) -> Path:
    for name in ("bench_serving.py", "bench_convert.py"):
        code = (exit_codes or {}).get(name, 0)
        (folder / name).write_text(RECORDER.replace("EXIT_CODE", str(code)))
    return folder


def calls(folder: Path, name: str) -> list[dict]:
    path = folder / Path(name).with_suffix(".calls")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_bench_finds_the_repository_scripts():
    assert (cli.BENCHMARKS_FOLDER / "bench_serving.py").is_file()
    assert (cli.BENCHMARKS_FOLDER / "bench_convert.py").is_file()


def test_bench_passes_flags_through(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "BENCHMARKS_FOLDER", recorder_folder(tmp_path))
    assert cli.main(["bench", "--quick", "--compile", "--output", "out"]) == 0
    assert calls(tmp_path, "bench_serving.py") == [
        {"python": sys.executable, "args": ["--output", "out", "--quick", "--compile"]}
    ]
    assert calls(tmp_path, "bench_convert.py") == []  # only with --convert
    assert "a2gen bench: benchmarks/bench_serving.py --output out --quick --compile" in capsys.readouterr().out

    assert cli.main(["bench", "--convert", "--convert-rows", "5000"]) == 0
    assert calls(tmp_path, "bench_serving.py")[-1]["args"] == []
    assert calls(tmp_path, "bench_convert.py") == [{"python": sys.executable, "args": ["--rows", "5000"]}]


def test_bench_stops_at_a_failing_script(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "BENCHMARKS_FOLDER", recorder_folder(tmp_path, {"bench_serving.py": 3}))
    assert cli.main(["bench", "--convert"]) == 3
    assert "benchmarks/bench_serving.py exited with status 3" in capsys.readouterr().err
    assert calls(tmp_path, "bench_convert.py") == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench"], "bench_serving.py not found in"),
        (["bench", "--convert"], "bench_serving.py, bench_convert.py not found in"),
        (["bench", "--convert-rows", "10"], "--convert-rows needs --convert"),
    ],
)
def test_bench_reports_missing_scripts_and_bad_flags(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.setattr(cli, "BENCHMARKS_FOLDER", tmp_path / "benchmarks")
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    if "not found" in message:
        assert "pip install -e ." in err


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))
    # datasets reads the variable at import time; simulate() without cache_dir uses this attribute.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))


def test_simulate_bucket_flags_reach_the_tokenizer_and_the_ids(tmp_path, datasets_cache, capsys):
    output = tmp_path / "sim"
    argv = ["simulate", "--output", str(output), "--num-examples", "40", "--history-length", "3", "--num-items", "50",
            "--item-buckets", "500", "--user-buckets", "30", "--side-feature-buckets", "40"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    tokenizer = A2GenActionTokenizer.from_pretrained(output / "tokenizer")
    assert (tokenizer.item_buckets, tokenizer.user_buckets, tokenizer.side_feature_buckets) == (500, 30, 40)
    rows = datasets.load_from_disk(str(output))["train"]
    assert max(max(ids) for ids in rows["history_item_ids"]) < 500 and max(rows["item_id"]) < 500
    assert max(rows["user_id"]) < 30
    assert max(max(ids) for ids in rows["item_side_ids"]) < 40


def test_simulate_rejects_a_bucket_count_below_one(tmp_path, capsys):
    assert cli.main(["simulate", "--output", str(tmp_path / "sim"), "--item-buckets", "0"]) == 2
    assert "--item-buckets 0 must be a positive integer" in capsys.readouterr().err  # the flag, as typed


def test_the_parser_imports_no_heavy_module():
    """`a2gen --help` must answer at once: building the parser imports neither torch nor transformers nor datasets."""
    import subprocess

    code = (
        "import sys\nfrom a2gen_hf import cli\nparser = cli.build_parser()\n"
        "for command in cli.COMMANDS: cli._subparser(parser, command).format_help()\n"
        "print(sorted(name for name in ('torch', 'transformers', 'datasets', 'numpy') if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def _options(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((f"{name} {where}", option) for where, option in _options(sub))
        elif action.option_strings and action.dest != "help":
            yield action.option_strings[0], action


def test_every_option_has_help_and_shows_its_default():
    parser = cli.build_parser()
    options = list(_options(parser))
    assert len(options) > 100
    formatter = cli.HelpFormatter("a2gen")
    for where, action in options:
        assert action.help and len(action.help) > 10, f"{where} has no help text"
        shown = formatter._get_help_string(action)
        if action.default not in (None, False):
            assert "%(default)s" in shown, f"{where} does not show its default {action.default!r}"
        elif action.default is None and not action.required:
            assert "default" in action.help or "required" in action.help or "overrides" in action.help, (
                f"{where}: the help must say what happens when it is not given"
            )


def test_the_option_defaults_agree_with_the_library_settings():
    from a2gen_hf import configuration_a2gen
    from a2gen_hf.cli_arguments import (
        HISTORY_POOLINGS,
        LR_SCHEDULES,
        MIXED_PRECISIONS,
        MODEL_NAMES,
        MOMENT_SOURCES,
        MOMENT_STARTS,
        OCCURRENCE_PATHS_INPUTS,
        POPULARITY_KEYS,
        PRESET_NAMES,
        SLOT_READOUTS,
        DemoArguments,
        FeatureArguments,
        OptimizationArguments,
        PrepareArguments,
        SimulateArguments,
        TrackingArguments,
        TrainArguments,
    )
    from a2gen_hf.data import logs
    from a2gen_hf.data.simulator import SimulatorConfig
    from a2gen_hf.demo import DemoSettings
    from a2gen_hf.training import loop
    from a2gen_hf.training.data_setup import MODEL_CHOICES

    assert set(PRESET_NAMES) == {*logs.PRESETS, "generic"}
    assert MODEL_NAMES == tuple(MODEL_CHOICES)
    assert (MIXED_PRECISIONS, LR_SCHEDULES) == (loop.MIXED_PRECISIONS, loop.LR_SCHEDULES)
    assert HISTORY_POOLINGS == configuration_a2gen.HISTORY_POOLINGS
    assert MOMENT_SOURCES == configuration_a2gen.MOMENT_SOURCES
    from a2gen_hf.training import moment_factorization

    assert MOMENT_STARTS == moment_factorization.MOMENT_STARTS
    assert POPULARITY_KEYS == configuration_a2gen.POPULARITY_KEYS
    assert SLOT_READOUTS == configuration_a2gen.SLOT_READOUTS
    assert OCCURRENCE_PATHS_INPUTS == configuration_a2gen.OCCURRENCE_PATHS_INPUTS
    assert FeatureArguments().occurrence_paths_input == configuration_a2gen.A2GenConfig().occurrence_paths_input
    assert FeatureArguments().event_moment_source == configuration_a2gen.A2GenConfig().history_event_moment_source
    prepare = PrepareArguments()
    assert (prepare.session_gap_seconds, prepare.max_history_items, prepare.partition_rows) == (
        logs.DEFAULT_SESSION_GAP_SECONDS, logs.DEFAULT_MAX_HISTORY_ITEMS, logs.DEFAULT_PARTITION_ROWS
    )
    simulate, simulator = SimulateArguments(), SimulatorConfig()
    for name in ("num_examples", "seed", "examples_per_user", "history_length", "num_items", "num_topics",
                 "validation_fraction", "test_fraction", "item_buckets", "user_buckets", "side_feature_buckets"):
        assert getattr(simulate, name) == getattr(simulator, name), name
    settings = loop.TrainingSettings(output_dir="")
    renamed = {"epochs": "num_epochs", "dense_lr": "dense_learning_rate", "embedding_lr": "embedding_learning_rate",
               "ema_every": "ema_every_steps"}
    for group, names in (
        (TrainArguments(), ("epochs", "max_steps", "batch_size", "eval_batch_size", "gradient_accumulation_steps",
                            "mixed_precision", "checkpoint_every", "keep_checkpoints", "resume", "seed", "cpu")),
        (OptimizationArguments(), ("dense_lr", "embedding_lr", "weight_decay", "embedding_weight_decay",
                                   "max_grad_norm", "lr_schedule", "warmup_steps", "warmup_ratio", "ema_decay",
                                   "ema_every", "ema_warmup")),
        (TrackingArguments(), ("report_to", "log_every")),
    ):
        for name in names:
            assert getattr(group, name) == getattr(settings, renamed.get(name, name)), name
    demo, demo_settings = DemoArguments(), DemoSettings()
    assert (demo.output, demo.num_examples, demo.epochs, demo.batch_size, demo.seed) == (
        demo_settings.output_dir, demo_settings.num_examples, demo_settings.num_epochs, demo_settings.batch_size,
        demo_settings.seed,
    )


def test_compare_help_lists_every_simple_baseline_unbroken(capsys):
    """Found by a probe: `a2gen compare --help` named none of --simple's choices (logreg-times, ... were only found in
    an error); the names are listed, each on one line (argparse broke them at their hyphens)."""
    from a2gen_hf.cli import build_parser
    from a2gen_hf.cli_arguments import SIMPLE_BASELINE_NAMES
    from a2gen_hf.training.simple_baselines import SIMPLE_BASELINES

    assert SIMPLE_BASELINE_NAMES == tuple(SIMPLE_BASELINES)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["compare", "--help"])
    words = capsys.readouterr().out.replace(",", " ").split()
    assert set(SIMPLE_BASELINE_NAMES) <= set(words)


def test_train_and_compare_share_the_optimization_and_tracking_options():
    """One definition of the learning-rate, warmup and tracking options (OptimizationArguments, TrackingArguments)
    gives both commands the same flags, help and defaults."""
    from a2gen_hf.cli_arguments import OptimizationArguments, TrackingArguments

    parser = cli.build_parser()
    shared = ["--" + name.replace("_", "-") for group in (OptimizationArguments, TrackingArguments)
              for name in group.__dataclass_fields__]
    assert {"--warmup-steps", "--warmup-ratio", "--report-to", "--log-every", "--lr-schedule"} <= set(shared)
    actions = {command: {action.option_strings[0]: action for action in cli._subparser(parser, command)._actions
                         if action.option_strings} for command in ("train", "compare")}
    for flag in shared:
        train, compare = actions["train"][flag], actions["compare"][flag]
        assert (train.help, train.default, train.choices) == (compare.help, compare.default, compare.choices), flag
    args = cli.parse_arguments(["compare", "--data", "d", "--output", "o", "--warmup-ratio", "0.1", "--report-to",
                                "tensorboard", "--wide-frozen"])
    assert (args.warmup_ratio, args.report_to, args.warmup_steps, args.wide_frozen) == (0.1, "tensorboard", 0, True)
    # The model options of compare are train's too (FeatureArguments), mapped once onto the config's fields.
    args = cli.parse_arguments(["train", "--data", "d", "--output", "o", "--time-loss", "l1", "--history-propensity",
                                "--embedding-dropout", "0.1", "--head-dim", "32", "--time-buckets", "24",
                                "--history-pooling", "sqrt", "--event-cross-layers", "2", "--event-item-moments",
                                "48", "--event-moment-seconds", "0.5", "--event-moment-source", "table",
                                "--target-item-moments", "--context-interactions", "--event-moment-topics", "16",
                                "--event-moment-smoothing", "2", "--history-item-exposure"])
    overrides = cli._feature_overrides(args)
    assert overrides["history_event_cross_layers"] == 2
    assert (overrides["history_event_item_moments"], overrides["history_event_moment_seconds"]) == (48, 0.5)
    assert overrides["history_event_moment_source"] == "table"
    assert overrides["target_item_moments"] is True and overrides["context_interactions"] is True
    assert overrides["history_event_moment_topics"] == 16 and overrides["history_event_moment_smoothing"] == 2
    assert overrides["history_item_exposure"] is True
    assert (overrides["time_loss"], overrides["history_propensity_features"], overrides["embedding_dropout_prob"]) == (
        "l1", True, 0.1
    )
    assert (overrides["head_dim"], overrides["time_buckets"], overrides["history_pooling"]) == (32, 24, "sqrt")
    assert "head_dim" not in cli._feature_overrides(cli.parse_arguments(["train", "--data", "d", "--output", "o"]))


def test_config_file_gives_options_and_the_command_line_wins(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("data: data/sim\noutput: runs/sim\nbatch_size: 512\nepochs: 5\ncpu: true\nmodel: mmoe\n")
    args = cli.parse_arguments(["train", "--config", str(config), "--epochs", "2"])
    assert (args.data, args.output, args.batch_size, args.epochs, args.cpu, args.model) == (
        "data/sim", "runs/sim", 512, 2, True, "mmoe"
    )
    assert cli.parse_arguments(["train", "--data", "d", "--output", "o"]).batch_size == 256


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("data: d\noutput: o\nbatch_sise: 512\n", "unknown key 'batch_sise' for `a2gen train`; allowed keys: "),
        ("data: d\noutput: o\nmodel: transformer\n", "model: 'transformer' is not a value of --model; allowed values: "),
        ("- a\n- b\n", "must hold a mapping of option names to values"),
        ("data: [unclosed\n", "line 2"),
        ("output: o\n", "--data required (on the command line or in --config)"),
    ],
)
def test_config_file_errors_name_the_file_and_the_key(tmp_path, capsys, content, message):
    config = tmp_path / "run.yaml"
    config.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_arguments(["train", "--config", str(config)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    if "unknown key" in message:
        assert str(config) in err and "batch_size" in err and "embedding_lr" in err
    if "is not a value of" in message:  # the file named (before: argparse's "invalid choice", the flag only)
        assert str(config) in err and "a2gen-iag" in err


def test_public_names_resolve_through_the_lazy_package():
    import a2gen_hf

    for name in a2gen_hf.__all__:
        assert getattr(a2gen_hf, name) is not None, name
    assert set(a2gen_hf.__all__) <= set(dir(a2gen_hf))
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchName'"):
        a2gen_hf.NoSuchName  # noqa: B018


GENERIC_LOG = """user,video,event,ts,genre
u1,v1,open,100,g1
u1,v1,thumb,105,g1
u1,v1,close,130,g1
u1,v2,open,200,g2
u1,v2,close,210,g2
u2,v1,open,300,g1
u2,v3,open,400,g2
u2,v3,thumb,402,g2
u1,v3,open,500,g2
u2,v2,open,600,g2
u2,v2,close,650,g2
u1,v4,open,700,g1
"""


def test_prepare_reads_a_generic_event_log_and_sizes_the_tables_from_the_data(tmp_path, capsys):
    log = tmp_path / "events.csv"
    log.write_text(GENERIC_LOG)
    output = tmp_path / "data"
    argv = ["prepare", "--preset", "generic", "--input", str(log), "--output", str(output),
            "--generic-actions", "start,like,leave", "--generic-action-mapping", "open=start,thumb=like,close=leave",
            "--generic-user-column", "user", "--generic-item-column", "video", "--generic-action-column", "event",
            "--generic-time-column", "ts", "--generic-side-features", "genre", "--item-buckets", "100", "--quiet"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    summary = json.loads((output / "a2gen_data.json").read_text())
    assert summary["distinct"] == {"users": 2, "items": 4, "side_values": 2}
    assert summary["buckets"]["item_buckets"] == {"count": 100, "from": "user"}
    assert summary["buckets"]["user_buckets"] == {"count": 64, "from": "data"}  # 2 users: 16 x 2 + 1 -> 64
    tokenizer = A2GenActionTokenizer.from_pretrained(output / "tokenizer")
    assert (tokenizer.item_buckets, tokenizer.user_buckets, tokenizer.side_feature_buckets) == (100, 64, 64)
    assert tokenizer.action_names == ["start", "like", "leave"]
    rows = datasets.load_from_disk(str(output))
    assert sum(len(split) for split in rows.values()) == summary["sessions"] == 7
    assert "embedding rows: users 64 (2 distinct, set by the data)" in capsys.readouterr().out


def test_prepare_generic_without_actions_says_what_to_add(tmp_path, capsys):
    log = tmp_path / "events.csv"
    log.write_text(GENERIC_LOG)
    assert cli.main(["prepare", "--preset", "generic", "--input", str(log), "--output", str(tmp_path / "o")]) == 2
    assert "--preset generic needs --generic-actions" in capsys.readouterr().err


def test_recipe_gives_options_then_config_then_the_command_line(tmp_path, capsys):
    from a2gen_hf.recipes import load_recipe

    paper = load_recipe("paper")
    args = cli.parse_arguments(["train", "--data", "d", "--output", "o", "--recipe", "paper"])
    assert (args.epochs, args.patience, args.select_by) == (paper["epochs"], paper["patience"], paper["select_by"])
    config = tmp_path / "run.yaml"
    config.write_text("epochs: 4\n")
    args = cli.parse_arguments(["train", "--data", "d", "--output", "o", "--recipe", "paper", "--config", str(config),
                                "--patience", "5"])
    assert (args.epochs, args.patience, args.dense_lr) == (4, 5, paper["dense_lr"])
    with pytest.raises(SystemExit):
        cli.parse_arguments(["train", "--data", "d", "--output", "o", "--recipe", "no_such_recipe"])
    assert "--recipe no_such_recipe: " in capsys.readouterr().err


def fresh_python(code_or_args: list[str], env: dict[str, str] | None = None, cwd=None) -> subprocess.CompletedProcess:
    """A fresh interpreter in which a2gen_hf is imported before transformers (as `a2gen` and most scripts do)."""
    source = str(Path(cli.__file__).resolve().parents[1])
    full_env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "TRANSFORMERS_"))}
    full_env.update(PYTHONPATH=source, HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_PROGRESS_BARS="1", **(env or {}))
    return subprocess.run([sys.executable, *code_or_args], env=full_env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_command_line_saves_tokenizers_with_their_auto_map(tmp_path):
    """`a2gen simulate` (prepare, train alike) saves a tokenizer that AutoTokenizer finds with remote code: its
    auto_map and tokenization_a2gen.py, although the command imports a2gen_hf before transformers."""
    result = fresh_python(["-m", "a2gen_hf.cli", "simulate", "--output", str(tmp_path / "sim"), "--num-examples", "40",
                           "--history-length", "2", "--num-items", "20", "--quiet"],
                          env={"HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_CACHE": str(tmp_path / "hf" / "ds")})
    assert result.returncode == 0, result.stderr
    tokenizer_config = json.loads((tmp_path / "sim" / "tokenizer" / "tokenizer_config.json").read_text())
    assert tokenizer_config["auto_map"]["AutoTokenizer"][0] == "tokenization_a2gen.A2GenActionTokenizer"
    assert (tmp_path / "sim" / "tokenizer" / "tokenization_a2gen.py").is_file()


def test_push_from_python_and_the_command_line_carries_the_tokenizer_code(tmp_path):
    """push_checkpoint imported straight from a2gen_hf.hub (hub.md's example) and `a2gen push`, each in a fresh
    interpreter, push the tokenizer's code and auto_map, so the repo loads with trust_remote_code alone."""
    from hub_server import HubServer

    from a2gen_hf import A2GenConfig, A2GenForActionGeneration

    config = A2GenConfig(hidden_size=8, num_attention_heads=2, id_embedding_size=8, item_buckets=64, user_buckets=16,
                         side_feature_buckets=16)
    A2GenForActionGeneration(config).save_pretrained(tmp_path / "checkpoint")
    A2GenActionTokenizer.from_config(config).save_pretrained(tmp_path / "checkpoint")
    python_push = (
        "import sys\nfrom a2gen_hf.hub import push_checkpoint\n"
        "push_checkpoint(sys.argv[1], 'from-python')\n"
    )
    with HubServer(tmp_path / "hub") as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.token, "HF_HOME": str(tmp_path / "hf")}
        for name, args in (("from-python", ["-c", python_push, str(tmp_path / "checkpoint")]),
                           ("from-cli", ["-m", "a2gen_hf.cli", "push", str(tmp_path / "checkpoint"), "from-cli"])):
            result = fresh_python(args, env=env)
            assert result.returncode == 0, result.stderr
            files = hub.files(f"{hub.user}/{name}")
            assert "tokenization_a2gen.py" in files, name
            tokenizer_config = json.loads(files["tokenizer_config.json"])
            assert tokenizer_config["auto_map"]["AutoTokenizer"][0] == "tokenization_a2gen.A2GenActionTokenizer", name


@pytest.mark.parametrize("flag", ["--config", "--recipe"])
def test_an_empty_config_or_recipe_flag_is_refused(capsys, flag):
    """Before: `--config ""` (an unset variable in a script) was taken as no --config at all, silently."""
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_arguments(["train", "--data", "d", "--output", "o", flag, ""])
    assert exit_info.value.code == 2
    assert f"{flag} is empty: give the path of a YAML or JSON file" in capsys.readouterr().err


def test_an_empty_config_file_is_warned_of(tmp_path, caplog):
    config = tmp_path / "run.yaml"
    config.write_text("# nothing set yet\n")
    with caplog.at_level(logging.WARNING, logger="a2gen_hf"):
        args = cli.parse_arguments(["train", "--data", "d", "--output", "o", "--config", str(config)])
    assert args.batch_size == 256
    assert f"--config {config} holds no options" in caplog.text
    caplog.clear()
    config.write_text("{}\n")  # (review) an empty mapping holds no option either
    with caplog.at_level(logging.WARNING, logger="a2gen_hf"):
        cli.parse_arguments(["train", "--data", "d", "--output", "o", "--config", str(config)])
    assert f"--config {config} holds no options" in caplog.text
