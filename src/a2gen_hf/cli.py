"""The ``a2gen`` command. Each subcommand is a pair of functions: ``add_<name>_command`` declares its arguments and
``run_<name>`` executes it; :func:`build_parser` lists the ``add_*`` functions."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def add_prepare_command(subparsers: argparse._SubParsersAction) -> None:
    from .data.logs import DEFAULT_MAX_HISTORY_ITEMS, DEFAULT_PARTITION_ROWS, DEFAULT_SESSION_GAP_SECONDS, PRESETS

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
    parser.add_argument("--item-buckets", type=int, default=1_000_000,
                        help="hash buckets of item ids (embedding rows; about 2-10x the distinct items keeps "
                        "collisions rare and tables small)")
    parser.add_argument("--user-buckets", type=int, default=100_000)
    parser.add_argument("--side-feature-buckets", type=int, default=100_000)
    parser.add_argument("--partition-rows", type=int, default=DEFAULT_PARTITION_ROWS,
                        help="rows per user partition: the unit of work and of memory")
    parser.add_argument("--num-proc", type=int, help="worker processes (default: min(2, CPUs); 1 = this process)")
    parser.set_defaults(func=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    from .data.examples import SplitRule
    from .data.logs import PRESETS, convert_log, format_summary
    from .data.validation import LogFormatError
    from .tokenization_a2gen import A2GenActionTokenizer

    preset = PRESETS[args.preset]
    try:  # bucket counts and split fractions are checked here (e.g. --item-buckets 1)
        tokenizer = A2GenActionTokenizer(
            action_names=list(preset.action_names),
            start_action=preset.start_action,
            end_action=preset.end_action,
            item_buckets=args.item_buckets,
            user_buckets=args.user_buckets,
            side_feature_buckets=args.side_feature_buckets,
        )
        split_rule = SplitRule(
            validation_fraction=args.validation_fraction,
            test_fraction=args.test_fraction,
            validation_start=args.validation_start,
            test_start=args.test_start,
        )
    except ValueError as error:
        print(f"a2gen prepare: error: {error}", file=sys.stderr)
        return 2
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
            tokenizer=tokenizer,
            partition_rows=args.partition_rows,
            num_proc=args.num_proc,
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
    parser.add_argument(
        "--eval-results",
        help="the eval_results.json of `a2gen train` or the file of `a2gen evaluate --json` (or a JSON "
        '{"auc": {"like": 0.71}, "mae": {"like": 0.52}}): its per-action auc and mae go on the model card',
    )
    parser.add_argument("--commit-message", default="Upload A2Gen checkpoint")
    parser.set_defaults(func=run_push)


def run_push(args: argparse.Namespace) -> int:
    import json

    from .hub import HUB_ERRORS, eval_results_from_metrics, hub_error_message, push_checkpoint

    eval_results = None
    if args.eval_results:
        try:
            with open(args.eval_results, encoding="utf-8") as file:
                eval_results, notes = eval_results_from_metrics(json.load(file))
        except json.JSONDecodeError as error:
            print(f"a2gen push: error: {args.eval_results}, line {error.lineno}, column {error.colno}: {error.msg}",
                  file=sys.stderr)
            return 2
        except (OSError, ValueError) as error:
            print(f"a2gen push: error: {args.eval_results}: {error}", file=sys.stderr)
            return 2
        for note in notes:
            print(f"a2gen push: note: {args.eval_results}: {note}")
    try:
        commit = push_checkpoint(
            args.checkpoint,
            args.repo_id,
            eval_results=eval_results or None,
            private=args.private,
            commit_message=args.commit_message,
            dataset_name=args.dataset_name,
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"a2gen push: error: {error}", file=sys.stderr)
        return 2
    except HUB_ERRORS as error:  # offline, unreachable, 401, ...: one line
        print(f"a2gen push: error: {hub_error_message(error)}", file=sys.stderr)
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
        "--item-buckets",
        type=int,
        default=defaults.item_buckets,
        help="hash buckets of video ids (embedding rows); size them to the catalogue (--num-items), e.g. 10x: "
        "large tables make AdamW slow on CPU",
    )
    parser.add_argument("--user-buckets", type=int, default=defaults.user_buckets, help="hash buckets of user ids")
    parser.add_argument(
        "--side-feature-buckets",
        type=int,
        default=defaults.side_feature_buckets,
        help="hash buckets of the side features (category and opening topic)",
    )
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
            item_buckets=args.item_buckets,
            user_buckets=args.user_buckets,
            side_feature_buckets=args.side_feature_buckets,
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


def _load_model_and_tokenizer(model_dir: str):
    """The checkpoint and its tokenizer, strictly (see a2gen_hf.checkpoints); evaluation mode."""
    from .checkpoints import load_checkpoint

    model, tokenizer = load_checkpoint(model_dir)
    return model.eval(), tokenizer


def _split_loader(model, tokenizer, data_dir: str, split: str, batch_size: int, limit: int | None = None):
    from torch.utils.data import DataLoader

    from .data.collator import A2GenDataCollator
    from .training.data_setup import load_data_dir

    dataset, _, _ = load_data_dir(data_dir)
    if split not in dataset:
        raise ValueError(f"split {split!r} is not in {data_dir}; it has {sorted(dataset)}.")
    examples = dataset[split] if limit is None else dataset[split].select(range(min(limit, len(dataset[split]))))
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    return examples, collator, DataLoader(examples, batch_size=batch_size, collate_fn=collator)


def add_evaluate_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a trained model on a split: AUC and timing MAE per action",
        description="Evaluate a saved model (A2Gen, MMoE or PLE) on a data folder's split and print the table.",
    )
    parser.add_argument("--model", required=True, help="folder written by save_pretrained (with the tokenizer)")
    parser.add_argument("--data", required=True, help="data folder from a2gen prepare / a2gen simulate")
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--json", help='write {"auc": {action: value}, "mae": {action: value}, ...} to this file')
    parser.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    import json

    from .metrics import ORACLE_COLUMNS, evaluate_model, format_metrics_table, format_ranking_table

    try:
        model, tokenizer = _load_model_and_tokenizer(args.model)
        examples, _, loader = _split_loader(model, tokenizer, args.data, args.split, args.batch_size)
    except (FileNotFoundError, ValueError) as error:
        print(f"a2gen evaluate: error: {error}", file=sys.stderr)
        return 2
    oracle = None
    if all(column in examples.column_names for column in ORACLE_COLUMNS):
        oracle = examples.select_columns(list(ORACLE_COLUMNS))[:]
    result = evaluate_model(model, loader, oracle=oracle)
    print(format_metrics_table({Path(args.model).name or "model": result}))
    print("\nRanking metrics (GAUC and NDCG / Recall over each user's examples; pred/obs = mean P over observed rate):")
    print(format_ranking_table({Path(args.model).name or "model": result}))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=float))
        print(f"written to {args.json}")
    return 0


def add_generate_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="print predicted vs actual timelines for examples of a split",
        description="Generate timed action sequences with a saved A2Gen model and print them beside the truth.",
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--num-examples", type=int, default=5)
    parser.add_argument("--num-beams", type=int, default=1)
    parser.add_argument("--do-sample", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    import torch

    from .demo import format_timeline

    try:
        model, tokenizer = _load_model_and_tokenizer(args.model)
    except (FileNotFoundError, ValueError) as error:
        print(f"a2gen generate: error: {error}", file=sys.stderr)
        return 2
    if not model.can_generate():
        print(f"a2gen generate: error: {type(model).__name__} does not generate sequences; use an A2Gen model.",
              file=sys.stderr)
        return 2
    try:
        examples, collator, _ = _split_loader(model, tokenizer, args.data, args.split, 1, limit=args.num_examples)
    except (FileNotFoundError, ValueError) as error:
        print(f"a2gen generate: error: {error}", file=sys.stderr)
        return 2
    batch = collator([examples[index] for index in range(len(examples))])
    torch.manual_seed(args.seed)
    generated = model.generate(
        **batch, num_beams=args.num_beams, do_sample=args.do_sample, return_dict_in_generate=True
    )
    for index in range(len(examples)):
        predicted = tokenizer.decode_timeline(generated.sequences[index], generated.times[index])
        actual = tokenizer.decode_timeline(
            batch["labels"][index], batch["label_times"][index], batch["label_time_mask"][index]
        )
        print(f"example {index} (user {examples[index]['user']}, item {examples[index]['item']})")
        print(f"  predicted: {format_timeline(predicted)}")
        print(f"  actual:    {format_timeline(actual)}")
    return 0


def add_compare_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="train several models on the same splits and write the paper-style table (Markdown, JSON, PNG)",
        description="Train each network for every seed on the same train split (best epoch on validation), score "
        "all models and the simple baselines on the test split, and report mean ± std, positive counts and "
        "paired bootstrap intervals of the AUC difference to A2Gen. Networks: a2gen-iag, a2gen-eag, mmoe, ple, "
        "mmoe-fair, ple-fair; ablations: a2gen-iag:notime, a2gen-iag:noevents.",
    )
    parser.add_argument("--data", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--models", default="a2gen-iag,a2gen-eag,mmoe,ple", help="comma-separated networks")
    parser.add_argument("--simple", default="propensity,popularity,logreg,median-time",
                        help="comma-separated simple baselines ('' for none)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dense-lr", type=float, default=5e-4)
    parser.add_argument("--embedding-lr", type=float, default=1e-4)
    parser.add_argument("--embedding-weight-decay", type=float, default=0.0)
    parser.add_argument("--lr-schedule", choices=["constant", "linear", "cosine"], default="constant",
                        help="decay both learning rates over the run's steps (default: constant, the paper)")
    parser.add_argument("--embedding-dropout", type=float, default=0.0)
    parser.add_argument("--max-history-items", type=int, help="read at most this many recent history items")
    parser.add_argument("--history-propensity", action="store_true",
                        help="give every network the count rule's features (share of history items with each action)")
    parser.add_argument("--id-free", action="store_true", help="do not embed user / item ids (features only)")
    _add_feature_arguments(parser)
    parser.add_argument("--time-loss", choices=["mse", "l1"], default="mse",
                        help="time heads of every network: squared error (mean) or absolute error (median)")
    parser.add_argument("--bootstrap-resamples", type=int, default=1000)
    parser.set_defaults(func=run_compare)


def _add_feature_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--history-pooling", choices=["sum", "mean"], default="sum",
                        help="how A2Gen's HSE reduces over positions: sum (the paper) or mean")
    parser.add_argument("--count-features", action="store_true",
                        help="give the networks the logistic regression's history count features (standardised)")
    parser.add_argument("--popularity-features", action="store_true",
                        help="give the networks the target item's and category's train action rates (leave-one-out)")
    parser.add_argument("--occurrence-head", action="store_true",
                        help="A2Gen ranks with a per-action occurrence head trained with binary cross-entropy")
    parser.add_argument("--rare-id-threshold", type=int, default=0,
                        help="users / target items with fewer training examples share embedding rows (0 = off)")


def _feature_overrides(args: argparse.Namespace) -> dict[str, object]:
    return {
        "history_pooling": args.history_pooling,
        "history_count_features": args.count_features,
        "occurrence_head": args.occurrence_head,
        "target_popularity_features": args.popularity_features,
        "rare_id_threshold": args.rare_id_threshold,
    }


def run_compare(args: argparse.Namespace) -> int:
    from .training.compare import ComparisonSettings, format_markdown, run_comparison
    from .training.loop import TrainingSettings

    settings = ComparisonSettings(
        models=[name for name in args.models.split(",") if name],
        simple_baselines=[name for name in args.simple.split(",") if name],
        seeds=args.seeds,
        bootstrap_resamples=args.bootstrap_resamples,
        training=TrainingSettings(
            output_dir=str(Path(args.output) / "runs"),
            num_epochs=args.epochs,
            batch_size=args.batch_size,
            dense_learning_rate=args.dense_lr,
            embedding_learning_rate=args.embedding_lr,
            embedding_weight_decay=args.embedding_weight_decay,
            lr_schedule=args.lr_schedule,
        ),
        model_overrides={
            "embedding_dropout_prob": args.embedding_dropout,
            "time_loss": args.time_loss,
            "history_propensity_features": args.history_propensity,
            "use_id_embeddings": not args.id_free,
            **_feature_overrides(args),
            **({"max_history_items": args.max_history_items} if args.max_history_items else {}),
        },
    )
    try:
        report = run_comparison(args.data, args.output, settings)
    except ValueError as error:
        print(f"a2gen compare: error: {error}", file=sys.stderr)
        return 2
    print(format_markdown(report))
    print(f"written to {args.output}/results.md, results.json and results.png")
    return 0


def add_demo_command(subparsers: argparse._SubParsersAction) -> None:
    from .demo import DemoSettings

    defaults = DemoSettings()
    parser = subparsers.add_parser(
        "demo",
        help="the whole story on the built-in simulator in a few minutes",
        description="Simulate sessions, train A2Gen (IAG) and MMoE, evaluate both against the oracle, print the "
        "table and three timelines, save the checkpoint and a timeline PNG.",
    )
    parser.add_argument("--output", default=defaults.output_dir)
    parser.add_argument("--num-examples", type=int, default=defaults.num_examples)
    parser.add_argument("--epochs", type=int, default=defaults.num_epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.set_defaults(func=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    from .demo import DemoSettings, run_demo

    run_demo(
        DemoSettings(
            output_dir=args.output,
            num_examples=args.num_examples,
            num_epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
        )
    )
    return 0


def add_train_command(subparsers: argparse._SubParsersAction) -> None:
    from .training.data_setup import MODEL_CHOICES
    from .training.loop import MIXED_PRECISIONS, TrainingSettings

    defaults = TrainingSettings(output_dir="")
    parser = subparsers.add_parser(
        "train",
        help="train A2Gen (or MMoE / PLE) on a data folder with Accelerate; evaluate on its test split",
        description="Train on the train split of a folder written by `a2gen simulate` / `a2gen prepare`, keep the "
        "epoch with the lowest validation loss, save the model and tokenizer to OUTPUT/model and the test metrics to "
        "OUTPUT/eval_results.json. One process as is; several with `accelerate launch --multi_gpu --num_processes N "
        "-m a2gen_hf.cli train ...`. See docs/training.md.",
    )
    parser.add_argument("--data", required=True, help="data folder (DatasetDict, tokenizer/, a2gen_data.json)")
    parser.add_argument("--output", required=True, help="folder for checkpoints, model/, training_log.json, eval results")
    parser.add_argument("--model", choices=list(MODEL_CHOICES), default="a2gen-iag")
    parser.add_argument("--epochs", type=int, default=defaults.num_epochs)
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (overrides --epochs)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="per process and micro-step")
    parser.add_argument("--eval-batch-size", type=int, default=defaults.eval_batch_size)
    parser.add_argument("--gradient-accumulation-steps", type=int, default=defaults.gradient_accumulation_steps)
    parser.add_argument("--mixed-precision", choices=list(MIXED_PRECISIONS), default=defaults.mixed_precision)
    parser.add_argument("--dense-lr", type=float, default=defaults.dense_learning_rate)
    parser.add_argument("--embedding-lr", type=float, default=defaults.embedding_learning_rate)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="of the dense weights")
    parser.add_argument("--max-grad-norm", type=float, help="clip the gradient norm (default: no clipping)")
    parser.add_argument("--lr-schedule", choices=["constant", "linear", "cosine"], default=defaults.lr_schedule,
                        help="decay both learning rates over the run's steps (default: constant, the paper)")
    parser.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps,
                        help="linear warmup of both learning rates from 0 over this many steps (default: 0)")
    parser.add_argument("--warmup-ratio", type=float, default=defaults.warmup_ratio,
                        help="warmup as a share of the run's steps, when --warmup-steps is 0 (default: 0)")
    parser.add_argument("--report-to", default=defaults.report_to,
                        help="Accelerate trackers, comma-separated: tensorboard (pip install 'a2gen_hf[tracking]'), "
                        "mlflow, aim, dvclive, trackio (offline), wandb, comet_ml, clearml, swanlab, all or none "
                        "(default); logs go to OUTPUT/tracking")
    parser.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every, help="steps; 0 = never")
    parser.add_argument("--keep-checkpoints", type=int, default=defaults.keep_checkpoints, help="0 = keep all")
    parser.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint in OUTPUT")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--log-every", type=int, default=defaults.log_every, help="steps between log entries")
    parser.add_argument(
        "--no-best-epoch", action="store_true", help="keep the last weights, not the best validation epoch's"
    )
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is there")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    architecture = parser.add_argument_group("model (default: the config's; data-given sizes are read from the data)")
    for flag, kind in (
        ("--hidden-size", int),
        ("--num-attention-heads", int),
        ("--id-embedding-size", int),
        ("--max-history-items", int),
        ("--max-events-per-item", int),
        ("--hidden-dropout-prob", float),
    ):
        architecture.add_argument(flag, type=kind)
    _add_feature_arguments(architecture)
    parser.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    import json

    from accelerate import PartialState

    from .training.loop import EVAL_RESULTS_FILE, MODEL_FOLDER, TrainingSettings, train_from_data_dir

    overrides = {
        name: getattr(args, name)
        for name in (
            "hidden_size",
            "num_attention_heads",
            "id_embedding_size",
            "max_history_items",
            "max_events_per_item",
            "hidden_dropout_prob",
        )
        if getattr(args, name) is not None
    }
    overrides.update(_feature_overrides(args))
    try:
        settings = TrainingSettings(
            output_dir=args.output,
            num_epochs=args.epochs,
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            eval_batch_size=args.eval_batch_size,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            mixed_precision=args.mixed_precision,
            dense_learning_rate=args.dense_lr,
            embedding_learning_rate=args.embedding_lr,
            weight_decay=args.weight_decay,
            max_grad_norm=args.max_grad_norm,
            lr_schedule=args.lr_schedule,
            warmup_steps=args.warmup_steps,
            warmup_ratio=args.warmup_ratio,
            report_to=args.report_to,
            checkpoint_every=args.checkpoint_every,
            keep_checkpoints=args.keep_checkpoints,
            resume=args.resume,
            seed=args.seed,
            log_every=args.log_every,
            select_best_epoch=not args.no_best_epoch,
            cpu=args.cpu,
            show_progress=not args.no_progress,
        )
        result, metrics = train_from_data_dir(args.data, settings, args.model, overrides)
    except (FileNotFoundError, ValueError, FloatingPointError) as error:  # A2GenConfigError is a ValueError
        print(f"a2gen train: error: {error}", file=sys.stderr)
        return 2
    if not PartialState().is_main_process:
        return 0
    if metrics is not None:
        summary = {key: metrics[key] for key in ("mean_auc", "mean_mae", "next_action_accuracy") if key in metrics}
        print(f"test: {json.dumps(summary)} (all metrics in {args.output}/{EVAL_RESULTS_FILE})")
    if result.best_epoch is not None:
        print(f"best validation epoch: {result.best_epoch}")
    print(f"trained {result.global_step} steps; model saved to {args.output}/{MODEL_FOLDER}")
    return 0


def add_plot_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="draw a PNG: a predicted vs actual timeline, training curves, or the model comparison",
        description="Draw pictures with matplotlib (no display needed). See docs/cli.md.",
    )
    kinds = parser.add_subparsers(dest="plot_kind", required=True, metavar="KIND")
    timeline = kinds.add_parser(
        "timeline",
        help="the generated timeline of one example above its actual timeline (the paper's intro figure)",
    )
    timeline.add_argument("--model", required=True, help="folder written by save_pretrained (an A2Gen model)")
    timeline.add_argument("--data", required=True, help="data folder from a2gen prepare / a2gen simulate")
    timeline.add_argument("--split", default="test")
    timeline.add_argument("--index", type=int, default=0, help="row of the split")
    curves = kinds.add_parser("curves", help="training and validation loss against the step")
    curves.add_argument("log", help="trainer_state.json (Trainer) or training_log.json (a2gen train)")
    comparison = kinds.add_parser("comparison", help="AUC (and timing MAE) per action and model, mean ± std")
    comparison.add_argument("results", help="results.json written by a2gen compare")
    for kind in (timeline, curves, comparison):
        kind.add_argument("--output", required=True, help="the PNG to write")
        kind.add_argument("--title", help="a title for the picture")
    parser.set_defaults(func=run_plot)


def run_plot(args: argparse.Namespace) -> int:
    from .plotting import plot_comparison, plot_timeline, plot_training_curves

    try:
        if args.plot_kind == "curves":
            path = plot_training_curves(args.log, args.output, title=args.title)
        elif args.plot_kind == "comparison":
            path = plot_comparison(args.results, args.output, title=args.title)
        else:
            from .pipelines import generate_timelines

            model, tokenizer = _load_model_and_tokenizer(args.model)
            if not model.can_generate():
                raise ValueError(f"{type(model).__name__} does not generate timelines; use an A2Gen model.")
            if args.index < 0:
                raise ValueError(f"--index {args.index} must be >= 0.")
            examples, collator, _ = _split_loader(model, tokenizer, args.data, args.split, 1, limit=args.index + 1)
            if args.index >= len(examples):
                raise ValueError(f"--index {args.index} is out of range: split {args.split!r} has {len(examples)} rows.")
            row = examples[args.index]
            batch = collator([row])
            predicted = generate_timelines(model, tokenizer, batch)[0]
            actual = tokenizer.decode_timeline(batch["labels"][0], batch["label_times"][0], batch["label_time_mask"][0])
            title = args.title or f"{args.split} row {args.index}: user {row['user']}, item {row['item']}"
            scores = model.predict_actions(**batch).action_probabilities[0]
            config = model.config
            probabilities = {name: float(scores[config.action_id(name)]) for name in config.action_names
                             if name not in (config.start_action, config.end_action)}
            path = plot_timeline(predicted, actual, args.output, title=title, probabilities=probabilities)
    except (FileNotFoundError, ValueError) as error:
        print(f"a2gen plot {args.plot_kind}: error: {error}", file=sys.stderr)
        return 2
    print(f"written to {path}")
    return 0


# The benchmark scripts live in the repository checkout, not in the installed package.
BENCHMARKS_FOLDER = Path(__file__).resolve().parents[2] / "benchmarks"


def add_bench_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="speed benchmarks: ranking latency, generate, training throughput (and log conversion)",
        description="Run benchmarks/bench_serving.py and, with --convert, benchmarks/bench_convert.py of the "
        "repository checkout the package is installed from (pip install -e .). Each script runs in its own Python "
        "process: bench_serving.py restarts itself with allocator settings that must be in place before the process "
        "starts. Figures and their caveats: docs/serving.md and benchmarks/README.md.",
    )
    parser.add_argument("--output", help="folder for serving_bench.md / serving_bench.json")
    parser.add_argument("--quick", action="store_true", help="C = 100 / 1,000 only and fewer repeats")
    parser.add_argument("--compile", action="store_true", help="add torch.compile rows (slow to warm up)")
    parser.add_argument("--convert", action="store_true", help="also time convert_log on a synthetic Taobao log")
    parser.add_argument("--convert-rows", type=int, help="rows of that log (default: the script's, 1,000,000)")
    parser.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    import subprocess

    if args.convert_rows is not None and not args.convert:
        print("a2gen bench: error: --convert-rows needs --convert.", file=sys.stderr)
        return 2
    serving = ["--output", args.output] if args.output else []
    serving += [flag for flag, wanted in (("--quick", args.quick), ("--compile", args.compile)) if wanted]
    runs = [("bench_serving.py", serving)]
    if args.convert:
        runs.append(("bench_convert.py", [] if args.convert_rows is None else ["--rows", str(args.convert_rows)]))
    missing = [name for name, _ in runs if not (BENCHMARKS_FOLDER / name).is_file()]
    if missing:
        print(
            f"a2gen bench: error: {', '.join(missing)} not found in {BENCHMARKS_FOLDER}. The benchmarks are scripts "
            "of the repository, not part of the installed package: clone the repository, install it with "
            "`pip install -e .` and run `a2gen bench` (or `python benchmarks/bench_serving.py`) there.",
            file=sys.stderr,
        )
        return 2
    for name, script_args in runs:
        print(f"a2gen bench: {' '.join(['benchmarks/' + name, *script_args])}", flush=True)
        returncode = subprocess.run([sys.executable, str(BENCHMARKS_FOLDER / name), *script_args]).returncode
        if returncode != 0:
            print(f"a2gen bench: error: benchmarks/{name} exited with status {returncode}.", file=sys.stderr)
            return returncode
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="a2gen", description="A2Gen: data preparation, training and serving.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_prepare_command(subparsers)
    add_simulate_command(subparsers)
    add_push_command(subparsers)
    add_train_command(subparsers)
    add_evaluate_command(subparsers)
    add_generate_command(subparsers)
    add_compare_command(subparsers)
    add_demo_command(subparsers)
    add_plot_command(subparsers)
    add_bench_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
