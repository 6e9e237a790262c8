"""The ``a2gen`` command. Each subcommand is a pair of functions: ``add_<name>_command`` declares its arguments and
``run_<name>`` executes it; :func:`build_parser` lists the ``add_*`` functions."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def add_prepare_command(subparsers: argparse._SubParsersAction) -> None:
    from .data.logs import DEFAULT_MAX_HISTORY_ITEMS, DEFAULT_SESSION_GAP_SECONDS, PRESETS

    parser = subparsers.add_parser(
        "prepare",
        help="convert an interaction log (CSV, JSONL, Parquet) into A2Gen examples",
        description="Convert an interaction log into train / validation / test examples (split by time), a fitted "
        "tokenizer and a2gen_data.json. The rules are described in docs/data.md.",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True, help="the log's format")
    parser.add_argument("--input", required=True, help="the log file")
    parser.add_argument("--output", required=True, help="folder for the DatasetDict, tokenizer/ and a2gen_data.json")
    parser.add_argument("--format", choices=["csv", "jsonl", "parquet"], help="input format (default: extension)")
    parser.add_argument(
        "--on-bad-rows",
        choices=["error", "skip", "warn"],
        default="error",
        help="stop at the first bad row (default), or drop and count bad rows (skip / warn)",
    )
    parser.add_argument("--session-gap-seconds", type=float, default=DEFAULT_SESSION_GAP_SECONDS)
    parser.add_argument("--max-history-items", type=int, default=DEFAULT_MAX_HISTORY_ITEMS)
    parser.add_argument("--min-history", type=int, default=0, help="only sessions with this many earlier sessions")
    parser.add_argument("--validation-fraction", type=float, default=1 / 7, help="share of the time range")
    parser.add_argument("--test-fraction", type=float, default=1 / 7, help="share of the time range (the last)")
    parser.add_argument("--validation-start", type=float, help="Unix seconds; overrides --validation-fraction")
    parser.add_argument("--test-start", type=float, help="Unix seconds; overrides --test-fraction")
    parser.set_defaults(func=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    from .data.examples import SplitRule
    from .data.logs import convert_log, format_summary
    from .data.validation import LogFormatError

    split_rule = SplitRule(
        validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction,
        validation_start=args.validation_start,
        test_start=args.test_start,
    )
    try:
        result = convert_log(
            args.input,
            preset=args.preset,
            output_dir=args.output,
            on_bad_rows=args.on_bad_rows,
            file_format=args.format,
            session_gap_seconds=args.session_gap_seconds,
            max_history_items=args.max_history_items,
            min_history=args.min_history,
            split_rule=split_rule,
        )
    except (LogFormatError, FileNotFoundError, ValueError) as error:
        print(f"a2gen prepare: error: {error}", file=sys.stderr)
        return 2
    print(format_summary(result.summary))
    print(f"written to {args.output}")
    return 0


def add_push_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "push",
        help="push a checkpoint (model, tokenizer, code, model card) to the Hugging Face Hub in one commit",
        description="Push a folder written by save_pretrained to a Hub repo, with its tokenizer (from the folder or "
        "its tokenizer/ subfolder), its modeling code and a model card. The token comes from HF_TOKEN or "
        "`hf auth login`, never from the command line. See docs/hub.md.",
    )
    parser.add_argument("checkpoint", help="folder with config.json and model.safetensors")
    parser.add_argument("repo_id", help="namespace/name (or name: the token owner's namespace)")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--dataset-name", help="the training data set, for the model card")
    parser.add_argument("--eval-results", help='JSON file: {"auc": {"like": 0.71}, "mae": {"like": 0.52}}')
    parser.add_argument("--commit-message", default="Upload A2Gen checkpoint")
    parser.set_defaults(func=run_push)


def run_push(args: argparse.Namespace) -> int:
    import json

    from huggingface_hub.errors import HfHubHTTPError

    from .hub import push_checkpoint

    try:
        eval_results = None
        if args.eval_results:
            with open(args.eval_results, encoding="utf-8") as file:
                eval_results = json.load(file)
        commit = push_checkpoint(
            args.checkpoint,
            args.repo_id,
            eval_results=eval_results,
            private=args.private,
            commit_message=args.commit_message,
            dataset_name=args.dataset_name,
        )
    except json.JSONDecodeError as error:
        print(f"a2gen push: error: {args.eval_results}, line {error.lineno}, column {error.colno}: {error.msg}",
              file=sys.stderr)
        return 2
    except (HfHubHTTPError, FileNotFoundError, ValueError) as error:
        print(f"a2gen push: error: {error}", file=sys.stderr)
        return 2
    print(f"pushed {args.checkpoint} to {commit.repo_url.repo_id} as commit {commit.oid}")
    return 0


def add_simulate_command(subparsers: argparse._SubParsersAction) -> None:
    from .data.simulator import SimulatorConfig

    defaults = SimulatorConfig()
    parser = subparsers.add_parser(
        "simulate",
        help="generate short-video sessions in which action timing carries intent (docs/simulator.md)",
        description="Simulate train / validation / test examples (split by time) with their oracle, a fitted "
        "tokenizer and a2gen_data.json. The generative process is described in docs/simulator.md.",
    )
    parser.add_argument("--output", required=True, help="folder for the DatasetDict, tokenizer/ and a2gen_data.json")
    parser.add_argument("--num-examples", type=int, default=defaults.num_examples)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--examples-per-user", type=int, default=defaults.examples_per_user)
    parser.add_argument("--history-length", type=int, default=defaults.history_length)
    parser.add_argument("--num-items", type=int, default=defaults.num_items)
    parser.add_argument("--num-topics", type=int, default=defaults.num_topics)
    parser.add_argument("--validation-fraction", type=float, default=defaults.validation_fraction)
    parser.add_argument("--test-fraction", type=float, default=defaults.test_fraction)
    parser.add_argument(
        "--parquet",
        action="store_true",
        help="stream to {split}/part-NNNNN.parquet shards instead of save_to_disk (for millions of examples)",
    )
    parser.add_argument("--shard-size", type=int, default=100_000, help="examples per Parquet shard (with --parquet)")
    parser.set_defaults(func=run_simulate)


def run_simulate(args: argparse.Namespace) -> int:
    from .data.simulator import SimulatorConfig, format_simulation_summary, simulate, simulate_to_parquet

    try:
        config = SimulatorConfig(
            num_examples=args.num_examples,
            seed=args.seed,
            examples_per_user=args.examples_per_user,
            history_length=args.history_length,
            num_items=args.num_items,
            num_topics=args.num_topics,
            validation_fraction=args.validation_fraction,
            test_fraction=args.test_fraction,
        )
        if args.parquet:
            summary = simulate_to_parquet(config, args.output, shard_size=args.shard_size)
        else:
            result = simulate(config)
            result.save(args.output)
            summary = result.summary
    except (OSError, ValueError) as error:  # SimulatorConfigError is a ValueError
        print(f"a2gen simulate: error: {error}", file=sys.stderr)
        return 2
    print(format_simulation_summary(summary))
    print(f"written to {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="a2gen", description="A2Gen: data preparation, training and serving.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_prepare_command(subparsers)
    add_simulate_command(subparsers)
    add_push_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
