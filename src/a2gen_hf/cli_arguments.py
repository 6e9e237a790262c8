"""The ``a2gen`` command's settings: one dataclass per group of options, turned into ``argparse`` options by
:func:`add_dataclass_arguments` (the ``HfArgumentParser`` idea without importing transformers, so that
``a2gen --help`` answers at once).

Each field becomes ``--field-name`` with its type, default and ``help`` (from the field's metadata); a ``bool``
field is a switch with its negation (``--id-free`` / ``--no-id-free``). The defaults mirror the library's settings
(:class:`~a2gen_hf.training.loop.TrainingSettings`,
:class:`~a2gen_hf.data.simulator.SimulatorConfig`, :class:`~a2gen_hf.demo.DemoSettings`, ``data/logs.py``):
``tests/test_cli.py`` checks that they agree. This module imports nothing heavy (no torch, transformers, datasets).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from typing import Any

# Names the parser offers before any heavy module is imported; tests/test_cli.py checks them against the library.
PRESET_NAMES = ("generic", "kuairand", "taobao", "tmall")
MODEL_NAMES = ("a2gen-iag", "a2gen-eag", "mmoe", "ple", "mmoe-fair", "ple-fair")
SIMPLE_BASELINE_NAMES = ("propensity", "popularity", "logreg", "logreg-shares", "logreg-times", "logreg-shares-times",
                         "count-network", "count-network-shares", "median-time")
MIXED_PRECISIONS = ("no", "bf16", "fp16")
LR_SCHEDULES = ("constant", "linear", "cosine", "plateau")
HISTORY_POOLINGS = ("sum", "mean", "sqrt")
MOMENT_SOURCES = ("item_features", "table")
MOMENT_STARTS = ("off", "trainable", "frozen")
POPULARITY_KEYS = ("buckets", "raw_ids")
SLOT_READOUTS = ("sequence", "any_slot", "sampler")
OCCURRENCE_PATHS_INPUTS = ("context", "without_extra", "extra_only")
TIME_UNITS = ("s", "ms", "mmdd")
REQUIRED = "required"


def option(help: str, default: Any = None, *, required: bool = False, choices: typing.Sequence | None = None,
           flag: str | None = None, metavar: str | None = None, once: str | None = None) -> Any:
    """A dataclass field that becomes an option: ``help`` is mandatory; ``required`` options must be given on the
    command line or in ``--config``; an option with ``once`` (what to do instead, said when it is given twice) is
    refused when given twice with different values (:class:`GivenOnce`)."""
    metadata = {"help": help, "choices": choices, "flag": flag, "metavar": metavar, REQUIRED: required, "once": once}
    return field(default=default, metadata=metadata)


class GivenOnce(argparse.Action):
    """Stores the option's value as argparse's ``store`` does, but a second occurrence with another value is an error
    naming both values and ``once`` (what to do instead): ``store`` keeps the last without a word, so ``--recipe
    sparse_logs ... --recipe paper`` silently dropped the first recipe. The same value again is accepted (nothing is
    dropped)."""

    def __init__(self, option_strings, dest, once: str, **kwargs) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.once = once

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        earlier = getattr(namespace, self.dest, None)
        # The default is no occurrence: a --config file's value (set as the default, a2gen_hf.cli._file_arguments)
        # is overridden by the command line, as every option's is.
        if earlier is not None and earlier is not self.default and earlier != values:
            raise argparse.ArgumentError(self, f"given twice ({earlier}, then {values}); {self.once}.")
        setattr(namespace, self.dest, values)


def _base_type(annotation: Any) -> type:
    """``int | None`` -> ``int``."""
    arguments = [argument for argument in typing.get_args(annotation) if argument is not type(None)]
    return arguments[0] if arguments else annotation


NONE = "none"


def _number_or_none(kind: type) -> Any:
    """The ``type=`` of an optional number (``int | None``): ``none`` (any case) is None, the "not set" that the
    default means, so that a recipe's or ``--config``'s value can be unset again; anything else is read by ``kind``."""

    def read(text: str) -> Any:
        return None if text.strip().lower() == NONE else kind(text)

    read.__name__ = kind.__name__  # argparse names the type in its errors ("invalid int value: 'x'")
    read.accepts_none = True
    return read


def _is_optional_number(annotation: Any, kind: type) -> bool:
    return kind in (int, float) and type(None) in typing.get_args(annotation)


def add_dataclass_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type) -> None:
    """Add one option per field of the dataclass ``cls`` (see the module's docstring)."""
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        metadata = item.metadata
        kind = _base_type(hints[item.name])
        flag = metadata.get("flag") or "--" + item.name.replace("_", "-")
        help_text = metadata["help"] + (" (required)" if metadata.get(REQUIRED) else "")
        if kind is bool:
            # --x and --no-x: a switch a --recipe or --config turned on can be turned off again on the command line.
            # argparse reads any flag that starts with --no- as the negation: a field named no_x would be set False
            # by --no-x, so switches are named by what they turn on.
            if flag.startswith("--no-"):
                raise ValueError(f"{cls.__name__}.{item.name}: name the switch by what it turns on ({flag}).")
            action = parser.add_argument(
                flag, dest=item.name, action=argparse.BooleanOptionalAction, default=item.default, help=help_text
            )
            action.help = help_text  # argparse appends "(default: False)" to a switch's help; the formatter decides
            continue
        optional_number = _is_optional_number(hints[item.name], kind)
        if optional_number and item.default is None:
            help_text += f"; {NONE}: not set (unsets a --recipe's or --config's value)"
        once = {"action": functools.partial(GivenOnce, once=metadata["once"])} if metadata.get("once") else {}
        parser.add_argument(
            flag,
            dest=item.name,
            type=_number_or_none(kind) if optional_number else kind,
            default=item.default,
            choices=metadata.get("choices"),
            metavar=metadata.get("metavar"),
            help=help_text,
            **once,
        )


def required_fields(*classes: type) -> list[str]:
    return [item.name for cls in classes for item in dataclasses.fields(cls) if item.metadata.get(REQUIRED)]


class HelpFormatter(argparse.HelpFormatter):
    """Shows every option's default, except switches (off) and options whose default is "not set" (their help
    says what happens then)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        return text + " (default: %(default)s)"

    def _split_lines(self, text: str, width: int) -> list[str]:
        """argparse's wrapping without breaks at hyphens, which would cut names such as ``logreg-shares-times``."""
        import textwrap

        return textwrap.wrap(self._whitespace_matcher.sub(" ", text).strip(), width, break_on_hyphens=False)


@dataclass
class CommonArguments:
    """Options every command has."""

    config: str | None = option(
        "a YAML (or JSON) file of this command's options: a flat mapping whose keys are the option names with "
        "underscores (e.g. batch_size: 512), and optionally recipe: NAME (as --recipe); options given on the command "
        "line override it; one per run; default: none",
        metavar="FILE",
        once="a run reads one --config file: merge them into one, or give the settings of one as flags (they "
             "override the file)",
    )
    recipe: str | None = option(
        "a named recipe of a2gen_hf/recipes (or a path to one), applied before --config and the command line; one "
        "per run; default: none",
        metavar="NAME",
        once="a run takes one recipe: keep one --recipe, and put the settings you want of the other into a --config "
             "file (applied after the recipe) or give them as flags",
    )
    quiet: bool = option("print only results and errors: no progress bars, no information messages", False)
    verbose: bool = option("also print debugging messages of a2gen_hf and transformers", False)


@dataclass
class PrepareArguments:
    preset: str = option("the log's format; generic: an event log described by the --generic-* options",
                         required=True, choices=PRESET_NAMES)
    input: str = option("the log file (CSV, JSONL or Parquet); one per run", required=True,
                        once="a run reads one log file: concatenate the files into one first (without their repeated "
                             "headers, e.g. `tail -q -n +2 a.csv b.csv > log.csv` for files with a header line), or "
                             "prepare each into its own --output")
    output: str = option("folder for the DatasetDict, tokenizer/ and a2gen_data.json", required=True,
                         once="a run writes one data folder: keep one --output")
    format: str | None = option("input format; default: from the file's extension", choices=("csv", "jsonl", "parquet"))
    on_bad_rows: str = option(
        "stop at the first bad row (error), or drop and count bad rows (skip / warn)", "error",
        choices=("error", "skip", "warn"),
    )
    time_window: str | None = option(
        "FIRST,LAST Unix seconds: rows with times outside are bad rows (outside_window), or none to keep every "
        "time; default: the preset's (taobao: the official window 1511539200,1512316799; the others: none)",
        metavar="FIRST,LAST|none",
    )
    time_unit: str | None = option(
        "unit of the time column: s (Unix seconds) or ms (Unix milliseconds); default: the preset's (taobao: s, "
        "kuairand: ms, tmall: mmdd dates, generic: --generic-time-unit)", choices=("s", "ms"),
    )
    delimiter: str | None = option(
        "the CSV delimiter, e.g. ';' or tab (write \\t); default: the preset's (',')", metavar="C"
    )
    quote_char: str | None = option(
        "the character that quotes CSV values (a quoted value may hold the delimiter), or none to read quotes as "
        "part of values; default: the preset's (generic: '\"', the others: none)", metavar="C|none"
    )
    session_gap_seconds: float = option("event logs: a (user, item) pair's next event starts a new session after "
                                        "this gap", 3 * 86400)
    max_history_items: int = option("history items kept per example (the most recent)", 50)
    min_history: int = option("only sessions with this many earlier sessions of the user become examples", 0)
    max_actions: int | None = option(
        "K: the actions after the start that a model of this data generates and that its labels keep; later actions "
        "of longer sessions are not labels (the summary counts them); default: 6, the paper's (with --tokenizer: "
        "the saved tokenizer's)", metavar="K",
    )
    validation_fraction: float = option("share of the time range that goes to validation", 1 / 7)
    test_fraction: float = option("share of the time range that goes to test (the last)", 1 / 7)
    validation_start: float | None = option("Unix seconds where validation starts; overrides --validation-fraction")
    test_start: float | None = option("Unix seconds where test starts; overrides --test-fraction")
    item_buckets: int | None = option("hash buckets of item ids (embedding rows); default: sized from the data, the "
                                      "next power of two at or above 16 times the distinct items")
    user_buckets: int | None = option("hash buckets of user ids; default: sized from the data (distinct users)")
    side_feature_buckets: int | None = option("hash buckets of side-feature values; default: sized from the data")
    tokenizer: str | None = option(
        "prepare with this saved tokenizer (a model folder such as a2gen train's OUTPUT/model, or a data folder's "
        "tokenizer/): its hash buckets, side-feature fields and time statistics are kept, so that the model trains on "
        "the newer log with a2gen train --init-from; default: a new tokenizer fitted on this log", metavar="DIR",
    )
    partition_rows: int = option("rows per user partition: the unit of work and of memory", 1_000_000)
    num_proc: int | None = option("worker processes; default: min(2, CPUs); 1 = this process")


@dataclass
class GenericLogArguments:
    """``--preset generic``: an event log with a header, one event per row (optionally with a duration column)."""

    actions: str | None = option(
        "generic: the action vocabulary, comma-separated, e.g. click,cart,buy,leave (required with --preset generic)",
        flag="--generic-actions",
    )
    start_action: str | None = option("generic: the action every sequence starts with; default: the first of "
                                      "--generic-actions", flag="--generic-start-action")
    end_action: str | None = option("generic: the action every sequence ends with (added when not logged); default: "
                                    "the last of --generic-actions", flag="--generic-end-action")
    action_mapping: str | None = option("generic: raw value=action pairs, comma-separated (pv=click,fav=collect); "
                                        "default: the raw values are the action names", flag="--generic-action-mapping")
    user_column: str = option("generic: column of the user id", "user_id", flag="--generic-user-column")
    item_column: str = option("generic: column of the item id", "item_id", flag="--generic-item-column")
    time_column: str = option("generic: column of the event time", "timestamp", flag="--generic-time-column")
    action_column: str = option("generic: column of the action", "action", flag="--generic-action-column")
    generic_time_unit: str = option("generic: unit of the time column (--time-unit, if given, wins)", "s",
                                    choices=("s", "ms"), flag="--generic-time-unit")
    duration_column: str | None = option(
        "generic: column of each view's duration (e.g. watch_ms, logged on the play rows; other rows may leave it "
        "empty; a duration runs from its row's time): a session without a logged end action ends where the last of "
        "its logged durations ends, or at its last event if that is later or none is logged; a logged end action "
        "keeps its time; default: none (the end action at the last event)",
        flag="--generic-duration-column", metavar="NAME",
    )
    generic_duration_unit: str | None = option(
        "generic: unit of --generic-duration-column: s (seconds) or ms (milliseconds); default: ms",
        choices=("s", "ms"), flag="--generic-duration-unit",
    )
    side_feature_columns: str = option("generic: item side-feature columns, comma-separated ('' for none)", "",
                                       flag="--generic-side-features")
    generic_delimiter: str = option("generic: CSV delimiter (--delimiter, if given, wins)", ",",
                                    flag="--generic-delimiter")


@dataclass
class SimulateArguments:
    output: str = option("folder for the DatasetDict, tokenizer/ and a2gen_data.json", required=True)
    num_examples: int = option("total (user, target video) examples over all splits", 40_000)
    seed: int = option("seed of every random draw", 0)
    examples_per_user: int = option("target sessions per user", 20)
    history_length: int = option("earlier sessions in each example's history", 20)
    num_items: int = option("catalogue size (videos)", 2_000)
    num_topics: int = option("latent topics", 8)
    validation_fraction: float = option("share of the simulated time window that goes to validation", 0.1)
    test_fraction: float = option("share of the simulated time window that goes to test (the last)", 0.1)
    item_buckets: int | None = option("hash buckets of video ids (embedding rows); default: sized from the catalogue, "
                                      "the next power of two at or above 16 times --num-items")
    user_buckets: int | None = option("hash buckets of user ids; default: sized from the number of users")
    side_feature_buckets: int | None = option("hash buckets of the side features (category and opening topic); "
                                              "default: sized from their values")
    parquet: bool = option("stream to {split}/part-NNNNN.parquet shards instead of save_to_disk (for millions of "
                           "examples)", False)
    shard_size: int = option("examples per Parquet shard (with --parquet)", 100_000)
    workers: int = option("processes that generate users in parallel (with --parquet; the rows are the same)", 1)


@dataclass
class TrainArguments:
    data: str = option("data folder (DatasetDict, tokenizer/, a2gen_data.json) from a2gen simulate / prepare", required=True)
    output: str = option("folder for checkpoints, model/, training_log.json and eval_results.json", required=True)
    model: str = option("the network to train", "a2gen-iag", choices=MODEL_NAMES)
    epochs: int = option("passes over the train split", 3)
    max_steps: int | None = option("stop after this many optimizer steps; default: train for --epochs")
    batch_size: int = option("examples per process and micro-step", 256)
    eval_batch_size: int = option("examples per batch of the validation and test passes", 1024)
    dataloader_num_workers: int = option("worker processes that read and collate the batches, so that a GPU does not "
                                         "wait for them (the batches are the same); 0: the training process", 0)
    gradient_accumulation_steps: int = option("micro-steps per optimizer step", 1)
    mixed_precision: str = option("autocast dtype", "no", choices=MIXED_PRECISIONS)
    checkpoint_every: int = option("steps between checkpoints; 0 = never", 0)
    keep_checkpoints: int = option("checkpoints kept; 0 = all", 2)
    resume: bool = option("continue from the last complete checkpoint in --output", False)
    init_from: str | None = option("start from the model saved in this folder (another run's OUTPUT/model) or Hub "
                                   "id and train all its weights (a moment table a recipe kept fixed too): a second "
                                   "phase at lower learning rates, or fine-tuning on newer logs with the same "
                                   "tokenizer; give the --model, --recipe and architecture flags that built it; "
                                   "default: fresh weights", metavar="MODEL_DIR")
    seed: int = option("seed of the weights and of the data order", 0)
    best_epoch: bool = option("keep the weights of the best validation evaluation (--no-best-epoch: the last ones)",
                              True)
    cpu: bool = option("train on the CPU even if a GPU is there", False)
    progress: bool = option("show progress bars (--no-progress: none)", True)


@dataclass
class OptimizationArguments:
    """Learning rates and their schedule (transformers' get_scheduler, with warmup), the same for `a2gen train` and
    every run of `a2gen compare` (TrainingSettings; docs/training.md)."""

    dense_lr: float = option("learning rate of the dense weights (the paper's 5e-4)", 5e-4)
    embedding_lr: float = option("learning rate of the embedding tables (the paper's 1e-4)", 1e-4)
    weight_decay: float = option("weight decay of the dense weights", 0.0)
    embedding_weight_decay: float = option("weight decay of the embedding tables", 0.0)
    max_grad_norm: float | None = option("clip the global gradient norm; default: no clipping")
    lr_schedule: str = option("decay both learning rates over the run's steps, or halve them after every validation "
                              "evaluation without improvement (plateau); constant: the paper", "constant",
                              choices=LR_SCHEDULES)
    warmup_steps: int = option("linear warmup of both learning rates from 0 over this many steps", 0)
    warmup_ratio: float = option("warmup as a share of the run's steps, when --warmup-steps is 0", 0.0)
    ema_decay: float | None = option("keep an exponential moving average of the weights, keeping this share of it per "
                                     "optimizer step (e.g. 0.999), and evaluate, select and save the average; "
                                     "default: no average")
    ema_every: int = option("optimizer steps between updates of the average (with --ema-decay; the decay stays per "
                            "step), to spend less time on large embedding tables", 1)
    ema_warmup: bool = option("keep min(D, (1 + t) / (10 + t)) of the average at step t instead of D (with "
                              "--ema-decay), for a run from fresh weights", False)


@dataclass
class TrackingArguments:
    """Experiment tracking through Accelerate's trackers, the same for `a2gen train` and every run of `a2gen compare`
    (docs/training.md, "Experiment tracking")."""

    report_to: str = option("Accelerate trackers, comma-separated: tensorboard (pip install 'a2gen_hf[tracking]'), "
                            "mlflow, aim, dvclive, trackio (offline), wandb, comet_ml, clearml, swanlab, all or none; "
                            "logs go to OUTPUT/tracking (compare: OUTPUT/runs/MODEL-seedN/tracking)", "none")
    log_every: int = option("optimizer steps between entries of the training log (and of the trackers)", 20)


@dataclass
class ArchitectureArguments:
    """Model width and caps; default: the config's, and the sizes the data gives are read from the data."""

    hidden_size: int | None = option("width of the model; default: the config's")
    id_embedding_size: int | None = option("width of the id embeddings; default: the config's")
    max_history_items: int | None = option("read at most this many recent history items; default: the data's longest "
                                           "history, capped at 100")
    max_events_per_item: int | None = option("events read per history item; default: the data's most, capped")
    hidden_dropout_prob: float | None = option("dropout of the hidden layers; default: the config's")


@dataclass
class SelectionArguments:
    """Validation, best-evaluation selection and early stopping (TrainingSettings; docs/training.md)."""

    select_by: str = option("keep the evaluation with the lowest validation loss or the highest mean AUC", "loss",
                            choices=("loss", "mean_auc"))
    patience: int | None = option("stop after this many validation evaluations without improvement; default: no "
                                  "early stopping (--epochs is then the number of epochs, else the maximum)")
    min_steps: int = option("early stopping ends no run before this many optimizer steps (the run's length still caps "
                            "it: --epochs, and a2gen train's --max-steps)", 0)
    patience_from_step: int = option("validation evaluations before this optimizer step still compete for the best "
                                     "but neither count towards --patience nor shrink the learning rates "
                                     "(--lr-schedule plateau): a start's first steps may dip before they gain", 0)
    min_delta: float = option("an evaluation replaces the best (and resets --patience) only if it beats it by more "
                              "than this (mean AUC, or loss with --select-by loss)", 0.0)
    eval_every: int | None = option("also evaluate on validation every this many optimizer steps; default: after "
                                    "epochs only")
    scale_eval_every: bool = option("with --eval-every K: evaluate every max(K, validation examples / examples per "
                                    "step) steps, so that a validation pass never costs more than the training "
                                    "between two (a large log's)", False)
    eval_at_epoch_end: bool = option("also evaluate at every epoch's end (--no-eval-at-epoch-end, with --eval-every: "
                                     "every that many steps only, whatever an epoch's length)", True)
    eval_before_training: bool = option("also evaluate the starting weights before the first step, as a candidate "
                                        "for the best evaluation (for warm-started wide paths)", False)
    select_generator_by_loss: bool = option("with --select-by mean_auc: keep the ranking (A2Gen's occurrence head on "
                                            "the counts, --occurrence-paths-input extra_only) from the best mean-AUC "
                                            "evaluation and every other weight (the generator, its times) from the "
                                            "lowest generator loss", False)
    freeze_ranking: bool = option("with --select-generator-by-loss: the ranking takes no training step (it stays as "
                                  "the run started it, e.g. the residual fit); training trains the generator "
                                  "alone, selected and stopped by its validation loss", False)


@dataclass
class FeatureArguments:
    """Optional inputs and heads of the networks (docs/model.md, "Options for sparse logs")."""

    id_free: bool = option("do not embed user / item ids (features only)", False)
    num_attention_heads: int | None = option("attention heads of A2Gen's CAMs; default: the config's (4)")
    head_dim: int | None = option("width of each of A2Gen's attention heads; default: hidden size / heads (the "
                                  "paper)")
    time_buckets: int = option("also embed each event's log-seconds bucket, floor(1.5 log1p(s)), in this many "
                               "buckets (0: the paper's continuous time encoding only)", 0)
    event_cross_layers: int = option("cross layers of each history event with its item before A2Gen's CAM_act "
                                     "(DCN-v2 style; 0: the paper's events; not in the paper)", 0)
    event_item_moments: int = option("give each history event a learned vector for its item and the moment it "
                                     "happened, in this many buckets of --event-moment-seconds (0: the paper's "
                                     "events; not in the paper)", 0)
    event_moment_seconds: float = option("width of a moment bucket of --event-item-moments, in seconds", 1.0)
    event_moment_source: str = option("where the (item, moment) vectors come from: item_features (decoded from the "
                                      "item's features) or table (a learned row per item and moment)",
                                      "item_features", choices=MOMENT_SOURCES)
    event_moment_topics: int = option("with --event-moment-source table: each (item, moment) row holds logits over "
                                      "this many shared topic vectors (0: free vectors; not in the paper)", 0)
    event_moment_smoothing: int = option("with --event-moment-source table: each moment also reads the rows up to "
                                         "this many buckets either side, weighted by learned weights (0: its own "
                                         "row; not in the paper)", 0)
    target_item_moments: bool = option("give the target item's features its moment profile: the --event-item-moments "
                                       "vectors at every moment, averaged with learned weights (not in the paper)",
                                       False)
    history_item_exposure: bool = option("give each history item's features the mean of its --event-item-moments "
                                         "vectors over the moments up to its latest event: what the user watched "
                                         "(not in the paper)", False)
    context_interactions: bool = option("append the products of Vec_hist and of the user with the target item to "
                                        "A2Gen's generation context (not in the paper)", False)
    history_pooling: str = option("how A2Gen's HSE reduces over positions: sum (the paper), mean, or sqrt "
                                  "(the sum over the square root of the count)", "sum", choices=HISTORY_POOLINGS)
    count_features: bool = option("give the networks the logistic regression's history count features "
                                  "(standardised)", False)
    time_features: bool = option("with --count-features, also read when the history sessions happened (per "
                                 "action, history items decayed by their age; items within the last hour / day, the "
                                 "target item within the last day; "
                                 "minutes since the last session); the data needs history_session_starts "
                                 "(a2gen prepare writes it)", False)
    popularity_features: bool = option("give the networks the target item's and category's train action rates "
                                       "(leave-one-out)", False)
    popularity_keys: str = option("with --popularity-features, key the item counts by raw_ids (the data's raw "
                                  "'item' ids, as the regression) or by buckets (the hashed item ids: items sharing "
                                  "a bucket share counts)", "raw_ids", choices=POPULARITY_KEYS)
    occurrence_head: bool | None = option("A2Gen ranks with a per-action occurrence head trained with binary "
                                          "cross-entropy (default: off, on with --wide-path, which needs it)", None)
    occurrence_paths_input: str = option("what A2Gen's occurrence head reads besides the wide path: the whole "
                                         "generation context, the context without the count / popularity features "
                                         "(left to the wide path), or those features alone; not in the paper",
                                         "context", choices=OCCURRENCE_PATHS_INPUTS)
    occurrence_linear_path: bool = option("A2Gen's occurrence head has a learned linear path besides its hidden layer "
                                          "(--no-occurrence-linear-path: the hidden layer alone, for a frozen wide "
                                          "path over the same features); not in the paper", True)
    occurrence_hidden_size: int | None = option("width of A2Gen's occurrence head's hidden layer; default: the "
                                                "model's hidden size; not in the paper")
    rare_id_threshold: int = option("users / target items with fewer training examples share embedding rows "
                                    "(0 = off)", 0)
    wide_path: bool = option("add a linear logit per action over the count / popularity features (needs them; for "
                             "A2Gen it is part of the occurrence head, which it switches on)", False)
    wide_warm_start: bool = option("start each network's wide path as the logistic regression on counts fitted on "
                                   "train", False)
    wide_residual: bool = option("with --wide-warm-start: start A2Gen as the regression (its other occurrence paths "
                                 "at zero, the regression's feature statistics kept), to learn what to add to it; "
                                 "pair with --eval-before-training", False)
    wide_frozen: bool = option("with --wide-residual: keep the regression's coefficients fixed while training (the "
                               "network learns only what to add to them)", False)
    wide_residual_fit: bool = option("with --wide-frozen: before training, fit what the network adds to the "
                                     "regression (the occurrence head's learned paths) full batch, its L2 strength "
                                     "chosen on validation, kept only if it beats the regression there (per "
                                     "action; after training too)", False)
    wide_share_scale: float = option("with --wide-warm-start: the regression's fit may also shrink the user "
                                     "propensities (share of history items with each action) this many times less "
                                     "than its other features, per action, chosen on validation like C (1 = the "
                                     "plain regression; the sparse_logs recipe: 10)", 1.0)
    moment_warm_start: str = option("start A2Gen's (item, moment) table (--event-moment-source table) from a "
                                    "factorisation of which users engaged at which moment of which item in train, "
                                    "then train it (trainable) or keep it fixed (frozen); not in the paper", "off",
                                    choices=MOMENT_STARTS)
    slot_readout: str = option("how A2Gen reads P(action) off its slots: while the sequence runs, over all slots, "
                               "or as generate() samples them", "sequence", choices=SLOT_READOUTS)
    drop_repeated_start: bool = option("leave repeated start actions (e.g. clicks) out of the target sequence", False)
    history_propensity: bool = option("give the networks the count rule's features (share of history items with "
                                      "each action)", False)
    embedding_dropout: float = option("dropout of the id embeddings", 0.0)
    embedding_init_std: float | None = option("std of the normal initialisation of the id and side-feature tables; "
                                              "default: the config's (0.02)")
    action_init_std: float | None = option("std of the normal initialisation of the action embeddings; default: the "
                                           "config's (0.02)")
    time_loss: str = option("time heads: squared error (their mean) or absolute error (their median)", "mse",
                            choices=("mse", "l1"))
    time_per_action: bool = option("A2Gen's time heads give each action its own time at every position (the time of "
                                   "a position is its action's) instead of one time per position; not in the paper",
                                   False)


@dataclass
class EvaluateArguments:
    model: str = option("folder written by save_pretrained (with the tokenizer): A2Gen, MMoE or PLE", required=True)
    data: str = option("data folder from a2gen prepare / a2gen simulate", required=True)
    split: str = option("the split to score", "test")
    batch_size: int = option("examples per batch", 1024)
    json: str | None = option('also write the metrics ({"auc": {action: value}, "mae": {action: normalised}, '
                              '"mae_seconds": {action: seconds}, ...}) to this file; default: print only')


@dataclass
class GenerateArguments:
    model: str = option("folder written by save_pretrained (an A2Gen model with its tokenizer)", required=True)
    data: str = option("data folder from a2gen prepare / a2gen simulate", required=True)
    split: str = option("the split to read examples from", "test")
    num_examples: int = option("examples to print, from the split's first row", 5)
    num_beams: int = option("beams of the search (1 = greedy)", 1)
    do_sample: bool = option("sample the actions instead of greedy / beam search (each action's time is the time head's "
                                "prediction, never sampled)", False)
    seed: int = option("seed of the sampling", 0)


@dataclass
class CompareArguments:
    data: str = option("data folder from a2gen prepare / a2gen simulate", required=True)
    output: str = option("folder for results.md, results.json, results.png and the runs", required=True)
    models: str = option("comma-separated networks (and ablations a2gen-iag:notime, a2gen-iag:noevents)",
                         "a2gen-iag,a2gen-eag,mmoe,ple")
    simple: str = option(f"comma-separated simple baselines ('' for none), of: {', '.join(SIMPLE_BASELINE_NAMES)}",
                         "propensity,popularity,logreg,median-time")
    seeds: int = option("training seeds per network", 3)
    epochs: int = option("passes over the train split (best epoch on validation)", 3)
    batch_size: int = option("examples per step", 256)
    dataloader_num_workers: int = option("worker processes that read and collate the batches of every run (as in a2gen "
                                         "train); 0: the training process", 0)
    max_history_items: int | None = option("read at most this many recent history items; default: the data's")
    max_events_per_item: int | None = option("events read per history item; default: the data's most, capped")
    bootstrap_resamples: int = option("resamples of the paired bootstrap of AUC differences", 1000)
    bootstrap_unit: str = option("what the paired bootstrap resamples: whole users (their examples are not independent) "
                                 "or single examples", "users", choices=("users", "examples"))


@dataclass
class ReportArguments:
    output: str | None = option("write the Markdown to this file (atomically); default: print it")
    tables: str = option("comma-separated parts to render, of summary, metrics, ranking, oracle, bootstrap; or all",
                         "all")


@dataclass
class DemoArguments:
    output: str = option("folder for the data, the checkpoint, the plot and the metrics", "a2gen-demo")
    num_examples: int = option("simulated sessions", 12_000)
    epochs: int = option("passes over the train split (best epoch on validation)", 2)
    batch_size: int = option("examples per step", 256)
    seed: int = option("seed of the simulation and the training", 0)


@dataclass
class PushArguments:
    private: bool = option("create the repo as private", False)
    dataset_name: str | None = option("the data set the metrics were measured on, for the model card (needed with "
                                      "--eval-results); default: none")
    eval_results: str | None = option(
        "the eval_results.json of `a2gen train` or the file of `a2gen evaluate --json` (or a JSON "
        '{"auc": {"like": 0.71}, "mae": {"like": 0.52}}): its per-action auc and mae go on the model card; default: '
        "a card without metrics"
    )
    commit_message: str = option("message of the Hub commit", "Upload A2Gen checkpoint")
    license: str = option("the model card's license (a Hub license id, e.g. apache-2.0, cc-by-nc-4.0 or other: say "
                          "the training data's terms where they bind the model)", "apache-2.0")
    replace_card: bool = option("replace a README.md already in the repo that was edited or written by hand; default: "
                                "kept, with a warning (a2gen_hf's own unedited card is always replaced)", False)
    revision: str | None = option("push to this branch, made from main where it does not exist yet (as transformers' "
                                  "push_to_hub); default: main")
    create_pr: bool = option("open a pull request with the commit instead of committing to the branch", False)


@dataclass
class BenchArguments:
    output: str | None = option("also write serving_bench.md / serving_bench.json to this folder; default: print only")
    quick: bool = option("C = 100 / 1,000 only and fewer repeats", False)
    compile: bool = option("add torch.compile rows (slow to warm up)", False)
    convert: bool = option("also time convert_log on a synthetic Taobao log", False)
    convert_rows: int | None = option("rows of that log; default: the script's, 1,000,000")
