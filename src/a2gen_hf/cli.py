"""The ``a2gen`` command. Each subcommand's options are dataclasses of :mod:`a2gen_hf.cli_arguments` (listed in
:data:`COMMANDS`) and ``run_<name>`` executes it, importing the heavy modules (torch, transformers, datasets) only
then, so that ``a2gen --help`` answers at once. ``--config FILE`` / ``--recipe NAME`` give options from a file."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import math
import os
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .cli_arguments import (
    ArchitectureArguments,
    BenchArguments,
    CommonArguments,
    CompareArguments,
    DemoArguments,
    EvaluateArguments,
    FeatureArguments,
    GenerateArguments,
    GenericLogArguments,
    HelpFormatter,
    OptimizationArguments,
    PrepareArguments,
    PushArguments,
    ReportArguments,
    SelectionArguments,
    SimulateArguments,
    TrackingArguments,
    TrainArguments,
    add_dataclass_arguments,
    required_fields,
)
from .output_folders import (
    AROUND,
    INSIDE,
    IS,
    file_output_problem,
    folder_output_problem,
    overlap,
    overlap_problem,
    real_path,
)


def _output_folder_error(path: str, flag: str = "--output", beside: bool = False) -> str | None:
    """Why ``path`` cannot be the folder a command writes (checked before any work), or None; ``beside``: the command
    locks the folder or stages a new version of it beside it (:func:`folder_output_problem`)."""
    problem = folder_output_problem(path, beside=beside)
    return f"{flag} {problem}" if problem else None


def _output_is_data_error(output: str, data: str) -> str | None:
    """Why a run may not write into its own data folder, inside it, or around it (checked before any work), or
    None."""
    relation = overlap(output, data)
    if relation == IS:
        return (f"--output {output} is the data folder (--data {data}): the run's model, checkpoints and logs would be "
                "written among the data's splits; choose another folder, e.g. runs/NAME.")
    if relation == INSIDE:
        return (f"--output {output} lies inside the data folder (--data {data}): the run's model, checkpoints, logs "
                "and lock file would be written among the data's files (and a2gen prepare would then refuse the "
                "folder); choose a folder outside it, e.g. runs/NAME.")
    if relation == AROUND:
        return (f"--data {data} lies inside the output folder (--output {output}), which the run fills with its "
                "model, checkpoints and logs (a2gen compare replaces its runs); keep them apart: choose an output "
                "folder outside the data, e.g. runs/NAME, or move the data out.")
    return None


def _utf8_path_error(path: str, flag: str = "--output") -> str | None:
    """Why a model cannot be saved under ``path`` (checked before any work), or None: safetensors, which writes the
    weights, takes only paths that are valid UTF-8 (before, a run trained, then failed at its first save)."""
    absolute = os.path.abspath(path)
    try:
        absolute.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8, which Python keeps as surrogates
        shown = os.fsencode(absolute).decode("utf-8", "backslashreplace")
        return (f"{flag} {shown} is not a valid UTF-8 path, and the weights are written by safetensors, which takes "
                "only UTF-8 paths; choose a folder whose path is UTF-8 (rename the folder, or give another name).")
    return None


def _output_file_error(path: str, flag: str, example: str) -> str | None:
    """Why ``path`` cannot be the file a command writes (checked before any work), or None: it is a folder, its
    folder does not exist, or a file stands where a folder should."""
    problem = file_output_problem(path, example)
    return f"{flag} {problem}" if problem else None


def _inside_an_input_error(path: str, flag: str, inputs: dict[str, str]) -> str | None:
    """Why the output file ``path`` must not be written (it lies in the folder of an input the command reads, e.g.
    ``--json MODEL/config.json``, which would destroy that input), or None."""
    folders = {input_flag: folder for input_flag, folder in inputs.items() if folder and Path(folder).is_dir()}
    found = overlap_problem(path, folders, relations=(INSIDE,))
    if found is None:
        return None
    input_flag = found[0]
    return (f"{flag} {path} lies inside the {input_flag} folder {folders[input_flag]}, which the command reads (it "
            f"could overwrite one of its files); write it somewhere else, e.g. {flag} {Path(path).name}.")


def _same_file(first: str, second: str) -> bool:
    """Whether two paths name one file (symbolic links and ``..`` resolved; hard links where both exist)."""
    try:
        if os.path.exists(first) and os.path.exists(second):
            return os.path.samefile(first, second)
    except OSError:
        pass
    return real_path(first) == real_path(second)  # as every output check takes a path (no error on a link loop)


def _seed_error(seed: int, flag: str = "--seed", high: int | None = None) -> str | None:
    """Why ``seed`` is not a usable seed (non-negative, below ``high`` where given), or None."""
    if seed < 0 or (high is not None and seed >= high):
        bound = f" and below {high:,} (2**{high.bit_length() - 1})" if high is not None else ""
        return f"{flag} {seed} is not a seed: give an integer >= 0{bound}, e.g. {flag} 0."
    return None


def run_prepare(args: argparse.Namespace) -> int:
    from .data.examples import SplitRule
    from .data.logs import PRESETS, check_output_dir, convert_log, format_summary
    from .data.presets import parse_delimiter, parse_quote_char, parse_time_window
    from .data.validation import LogFormatError
    from .tokenization_a2gen import A2GenActionTokenizer

    try:  # the output is not the input log, around it or inside it, nor a folder of other files
        check_output_dir(Path(args.input), args.output)  # the text given: --output '' is named as such
        problem = _output_folder_error(args.output, beside=True)
    except ValueError as error:
        problem = str(error)
    if not problem and args.preset != "generic":
        problem = _generic_options_error(args)
    if problem:
        print(f"a2gen prepare: error: {problem}", file=sys.stderr)
        return 2
    try:
        preset = _generic_preset(args) if args.preset == "generic" else PRESETS[args.preset]
        if args.time_window is not None:
            preset = dataclasses.replace(preset, time_window=parse_time_window(args.time_window))
        if args.time_unit is not None:
            preset = dataclasses.replace(preset, time_unit=args.time_unit)
        if args.delimiter is not None:
            preset = dataclasses.replace(preset, delimiter=parse_delimiter(args.delimiter))
        if args.quote_char is not None:
            preset = dataclasses.replace(preset, quote_char=parse_quote_char(args.quote_char))
    except ValueError as error:
        print(f"a2gen prepare: error: {error}", file=sys.stderr)
        return 2
    given = {name: getattr(args, name) for name in ("item_buckets", "user_buckets", "side_feature_buckets")}
    try:  # bucket counts and split fractions are checked here (e.g. --item-buckets 1)
        if args.tokenizer is not None:
            tokenizer = _saved_tokenizer(args.tokenizer, given)
            given = {name: getattr(tokenizer, name) for name in given}  # none sized from the data
        else:
            tokenizer = A2GenActionTokenizer(
                action_names=list(preset.action_names),
                start_action=preset.start_action,
                end_action=preset.end_action,
                **{name: value for name, value in given.items() if value is not None},
                **({} if args.max_actions is None else {"max_actions": args.max_actions}),
            )
        split_rule = SplitRule(
            validation_fraction=args.validation_fraction,
            test_fraction=args.test_fraction,
            validation_start=args.validation_start,
            test_start=args.test_start,
        )
    except ValueError as error:  # bucket counts, --max-actions, the split: named by their flags
        print(f"a2gen prepare: error: {_with_flags(str(error), vars(args))}", file=sys.stderr)
        return 2
    try:
        result = convert_log(
            args.input,
            preset=preset,
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
            data_sized_buckets=tuple(name for name, value in given.items() if value is None),
            fit_time_statistics=args.tokenizer is None,
            max_actions=args.max_actions,
            progress=not args.quiet,
        )
    except (LogFormatError, FileNotFoundError) as error:  # about the log: its messages say what to run
        print(f"a2gen prepare: error: {error}", file=sys.stderr)
        return 2
    except ValueError as error:  # a setting (partition_rows=0 ...): named by its flag
        print(f"a2gen prepare: error: {_with_flags(str(error), vars(args))}", file=sys.stderr)
        return 2
    print(format_summary(result.summary, warned=True))  # its warnings reached stderr already (--quiet too)
    print(f"written to {args.output}")
    return 0


def _generic_options_error(args: argparse.Namespace) -> str | None:
    """``--generic-*`` options given beside another preset, which reads its own columns and actions: refused (they
    were read by no one, e.g. a --generic-duration-column beside --preset taobao), or None."""
    given = [field.metadata["flag"] for field in dataclasses.fields(GenericLogArguments)
             if getattr(args, field.name) != field.default]  # fmt: skip
    if not given:
        return None
    return (f"{', '.join(given)} describe a log read with --preset generic, but --preset {args.preset} reads its own "
            f"columns, actions and units: drop {'them' if len(given) > 1 else 'it'}, or pass --preset generic.")


def _saved_tokenizer(folder: str, buckets: dict[str, int | None]):
    """``prepare --tokenizer DIR``: the tokenizer saved in DIR (a model folder, or a data folder's ``tokenizer/``);
    bucket flags beside it are refused (its buckets are the model's)."""
    from .tokenization_a2gen import A2GenActionTokenizer

    given = [f"--{name.replace('_', '-')}" for name, value in buckets.items() if value is not None]
    if given:
        raise ValueError(f"--tokenizer keeps the saved tokenizer's hash buckets; drop {', '.join(given)}.")
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"--tokenizer {folder}: no such folder; give a2gen train's OUTPUT/model or a data folder's "
                         "tokenizer/.")  # fmt: skip
    try:
        return A2GenActionTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as error:
        raise ValueError(f"--tokenizer {folder}: {error}") from None


def _generic_preset(args: argparse.Namespace):
    """The :class:`LogPreset` of ``--preset generic`` from the ``--generic-*`` options."""
    from .data.logs import LogPreset
    from .data.presets import parse_delimiter

    if not args.actions:
        raise ValueError(
            "--preset generic needs --generic-actions, the action vocabulary in order, e.g. "
            "--generic-actions click,cart,buy,leave (see `a2gen prepare --help`, group genericlog)."
        )
    actions = tuple(name.strip() for name in args.actions.split(",") if name.strip())
    if len(actions) < 2:
        raise ValueError(
            f"--generic-actions {args.actions!r} names {len(actions)} action(s); give the action vocabulary in order, "
            "at least a start and an end action, comma-separated, e.g. --generic-actions click,cart,buy,leave."
        )
    spaced = next((name for name in actions if any(character.isspace() for character in name)), None)
    if spaced is not None:
        word = "_".join(spaced.split())
        raise ValueError(
            f"--generic-actions: {spaced!r} holds a space; action names are single words. Name the action {word!r} "
            f"and map the log's value to it: --generic-actions ...,{word},... --generic-action-mapping "
            f"'{spaced}={word},...' (the mapping lists every raw value)."
        )
    mapping = {name: name for name in actions}
    if args.action_mapping:
        pairs = [pair.split("=", 1) for pair in args.action_mapping.split(",") if pair.strip()]
        bad = [pair[0] for pair in pairs if len(pair) != 2]
        if bad:
            raise ValueError(
                f"--generic-action-mapping: {bad[0]!r} is not raw=action; write e.g. pv=click,fav=collect. Commas "
                "separate the pairs, so a raw value that holds a comma cannot be mapped here: rewrite that value in "
                "the log first, or prepare from Python with a LogPreset whose action_mapping is a dict "
                "(docs/data.md)."
            )
        mapping = {}
        for raw, action in pairs:
            if raw.strip() in mapping:
                raise ValueError(
                    f"--generic-action-mapping gives the raw value {raw.strip()!r} twice ({raw.strip()}="
                    f"{mapping[raw.strip()]} and {raw.strip()}={action.strip()}); map each raw value to one action."
                )
            mapping[raw.strip()] = action.strip()
    duration_column = args.duration_column or None  # '' (e.g. from a --config): none
    if duration_column is None and args.generic_duration_unit is not None:
        raise ValueError(
            f"--generic-duration-unit {args.generic_duration_unit} gives the unit of the duration column, but no "
            "--generic-duration-column names one; add --generic-duration-column NAME (e.g. watch_ms) or drop "
            "--generic-duration-unit."
        )
    return LogPreset(
        name="generic",
        action_names=actions,
        start_action=args.start_action or actions[0],
        end_action=args.end_action or actions[-1],
        user_column=args.user_column,
        item_column=args.item_column,
        time_column=args.time_column,
        time_unit=args.generic_time_unit,
        delimiter=parse_delimiter(args.generic_delimiter, "--generic-delimiter"),
        quote_char='"',  # your own CSV, as CSV writers write it: a value holding the delimiter is quoted
        action_column=args.action_column,
        action_mapping=mapping,
        duration_column=duration_column,
        duration_unit=args.generic_duration_unit or "ms",
        side_feature_columns=tuple(name.strip() for name in args.side_feature_columns.split(",") if name.strip()),
    )


def run_push(args: argparse.Namespace) -> int:
    import json

    from .hub import HUB_ERRORS, eval_results_from_metrics, hub_error_message, push_checkpoint, pushed_nothing

    eval_results = None
    if args.eval_results and args.dataset_name is None:  # checked before the file is read and its notes printed
        print("a2gen push: error: --eval-results needs --dataset-name, the data set the metrics were measured on "
              "(the model card's model-index names it).", file=sys.stderr)
        return 2
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
        for note in notes if not args.quiet else ():  # messages, not results: stderr
            print(f"a2gen push: note: {args.eval_results}: {note}", file=sys.stderr)
    try:
        commit = push_checkpoint(
            args.checkpoint,
            args.repo_id,
            eval_results=eval_results or None,
            private=args.private,
            commit_message=args.commit_message,
            dataset_name=args.dataset_name,
            license=args.license,
            replace_card=args.replace_card,
            revision=args.revision,
            create_pr=args.create_pr,
        )
    except (FileNotFoundError, ValueError) as error:
        hint = _run_folder_hint(args.checkpoint, "a2gen push") if isinstance(error, ValueError) else None
        print(f"a2gen push: error: {error}{' ' + hint if hint else ''}", file=sys.stderr)
        return 2
    except HUB_ERRORS as error:  # offline, unreachable, 401, ...: one line
        print(f"a2gen push: error: {hub_error_message(error)}", file=sys.stderr)
        return 2
    if pushed_nothing(commit):  # huggingface_hub skipped the commit: no file differs from the Hub's
        made = "no commit and no pull request were" if args.create_pr else "no commit was"
        print(f"nothing changed: {commit.repo_url.repo_id} already holds these files (commit {commit.oid}), so "
              f"{made} made")
        return 0
    where = f" ({commit.pr_url})" if commit.pr_url else (f" on {args.revision}" if args.revision else "")
    print(f"pushed {args.checkpoint} to {commit.repo_url.repo_id}{where} as commit {commit.oid}")
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    from .data.simulator import SimulatorConfig, format_simulation_summary, simulate, simulate_to_parquet

    # numpy's SeedSequence takes any integer >= 0 (the simulator seeds every stream with [seed, ...])
    # a saved data folder is locked and staged beside --output; Parquet files are written inside it
    problem = _output_folder_error(args.output, beside=not args.parquet) or _seed_error(args.seed)
    if problem:
        print(f"a2gen simulate: error: {problem}", file=sys.stderr)
        return 2
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
        if args.workers != 1 and not args.parquet:
            raise ValueError(f"--workers {args.workers} needs --parquet (only the streamed writer runs in parallel).")
        if args.parquet:
            summary = simulate_to_parquet(
                config, args.output, shard_size=args.shard_size, progress=not args.quiet, workers=args.workers
            )
        else:
            # datasets' cache of the generated rows, beside the output and removed once it is saved (before: a full
            # copy of every simulated data set stayed in ~/.cache/huggingface/datasets)
            parent = Path(os.path.abspath(args.output)).parent
            parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".a2gen-simulate-cache-", dir=parent) as cache:
                result = simulate(config, progress=not args.quiet, cache_dir=cache)
                result.save(args.output)
                summary = result.summary
    except (OSError, ValueError) as error:  # SimulatorConfigError is a ValueError
        problems = str(error).replace("Invalid SimulatorConfig:\n  - ", "").replace(".\n  - ", "; ")  # one line
        print(f"a2gen simulate: error: {_with_flags(problems, vars(args))}", file=sys.stderr)
        return 2
    print(format_simulation_summary(summary))
    print(f"written to {args.output}")
    return 0


def _load_model_and_tokenizer(model_dir: str):
    """The checkpoint and its tokenizer, strictly (see a2gen_hf.checkpoints); evaluation mode."""
    from .checkpoints import load_checkpoint

    try:
        model, tokenizer = load_checkpoint(model_dir)
    except (FileNotFoundError, ValueError) as error:
        hint = _run_folder_hint(model_dir, "--model")
        if hint is None:
            raise
        raise ValueError(f"{error} {hint}") from None
    return model.eval(), tokenizer


def _run_folder_hint(folder: str, flag: str) -> str | None:
    """For a model folder that is an ``a2gen train`` output folder (no config.json, but ``model/config.json`` in
    it): the folder meant, or None."""
    path = Path(folder)
    if (path / "config.json").exists() or not (path / "model" / "config.json").is_file():
        return None
    return f"Did you mean {flag} {path / 'model'}? (a2gen train saves its model in OUTPUT/model.)"


# How far apart (in log1p seconds) the data's and the model's mean event times may be before evaluate says so: 1.5 is
# a factor of about 4.5 in typical times; a unit read wrongly (seconds as milliseconds) moves it by more.
TIME_SCALE_SHIFT = 1.5


def time_scale_note(data_tokenizer, model_tokenizer, data_dir) -> str | None:
    """A warning when the data's fitted time statistics are far from the model's (``time_log_mean`` more than
    :data:`TIME_SCALE_SHIFT` apart): the model then reads times on another scale than it was trained on, as when a log
    is prepared with the wrong ``--time-unit`` (its times 1000 times off), and its timing errors are not comparable."""
    shift = data_tokenizer.time_log_mean - model_tokenizer.time_log_mean
    if abs(shift) <= TIME_SCALE_SHIFT:
        return None
    return (
        f"{data_dir}: its event times are on another scale than the model's (mean log1p seconds "
        f"{data_tokenizer.time_log_mean:.2f} against {model_tokenizer.time_log_mean:.2f} in training, typical times "
        f"{math.exp(shift):.3g} times {'longer' if shift > 0 else 'shorter'}). Fine for a log that differs; if both "
        "are the same kind of log, check the time unit it was prepared with (a2gen prepare --time-unit; "
        "a2gen_data.json)."
    )


def _split_loader(model, tokenizer, data_dir: str, split: str, batch_size: int, limit: int | None = None):
    from torch.utils.data import DataLoader

    from .data.collator import A_SAVED_MODEL_READS_THEM, A2GenDataCollator, check_session_time_columns, collation_rows
    from .training.data_setup import load_data_dir

    dataset, data_tokenizer, _ = load_data_dir(data_dir)
    data_tokenizer.check_same_ids(tokenizer, (f"the tokenizer of {data_dir}", "the model's"))
    note = time_scale_note(data_tokenizer, tokenizer, data_dir)
    if note:
        logging.getLogger("a2gen_hf").warning(note)
    if split not in dataset:
        raise ValueError(f"split {split!r} is not in {data_dir}; it has {sorted(dataset)}.")
    if len(dataset[split]) == 0:
        sizes = ", ".join(f"{name} {len(rows)}" for name, rows in dataset.items())
        raise ValueError(f"split {split!r} of {data_dir} has no rows ({sizes}); choose a split with rows with --split.")
    if getattr(model.config, "history_time_features", False):
        check_session_time_columns(dataset[split].column_names, f"split {split!r} of {data_dir}",
                                   otherwise=A_SAVED_MODEL_READS_THEM)
    examples = dataset[split] if limit is None else dataset[split].select(range(min(limit, len(dataset[split]))))
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    return examples, collator, DataLoader(collation_rows(examples), batch_size=batch_size, collate_fn=collator)


def run_evaluate(args: argparse.Namespace) -> int:
    from .metrics import ORACLE_COLUMNS, evaluate_model, format_metrics_table, format_ranking_table, user_groups
    from .output_folders import write_json_atomically

    problem = _output_file_error(args.json, "--json", "metrics.json") if args.json is not None else None
    if args.json is not None and not args.json.strip():
        problem = "--json '' names no file; give a file name (e.g. --json metrics.json) or leave --json out."
    if problem is None and args.json is not None:
        problem = _inside_an_input_error(args.json, "--json", {"--model": args.model, "--data": args.data})
    if problem is None and args.batch_size < 1:
        problem = f"--batch-size {args.batch_size} must be >= 1 (examples per batch)."
    if problem:
        print(f"a2gen evaluate: error: {problem}", file=sys.stderr)
        return 2
    try:
        model, tokenizer = _load_model_and_tokenizer(args.model)
        examples, _, loader = _split_loader(model, tokenizer, args.data, args.split, args.batch_size)
    except (FileNotFoundError, ValueError) as error:
        print(f"a2gen evaluate: error: {error}", file=sys.stderr)
        return 2
    oracle = None
    if all(column in examples.column_names for column in ORACLE_COLUMNS):
        oracle = examples.select_columns(list(ORACLE_COLUMNS))[:]
    from tqdm.auto import tqdm

    from .data.split_checks import SplitRowsError, located_batches

    batches = tqdm(located_batches(loader, args.data, args.split), total=len(loader), desc="evaluate",
                   unit=" batches", leave=False)
    try:
        result = evaluate_model(model, batches, oracle=oracle, groups=user_groups(examples))
    except SplitRowsError as error:  # before: a traceback, "example 0 of the batch"
        batches.close()
        print(f"a2gen evaluate: error: {error}", file=sys.stderr)
        return 2
    # The file first: a reader of stdout that stops early (| head) must not lose it (before: BrokenPipeError, no file).
    if args.json:  # strict JSON (NaN -> null), written beside the target and renamed over it
        try:
            write_json_atomically(args.json, result)
        except OSError as error:
            print(f"a2gen evaluate: error: cannot write --json {args.json}: {error.strerror or error}", file=sys.stderr)
            return 2
    # Why a value reads n/a (e.g. no buy in the split: its AUC is undefined and the mean AUC leaves it out): messages
    # about the results, not results, so stderr; the table's mean AUC row names what it averages over either way.
    for note in result.get("notes", []) if not args.quiet else ():
        print(f"a2gen evaluate: note: {note}", file=sys.stderr)
    print(format_metrics_table({Path(args.model).name or "model": result}, split=args.split))
    print("\nRanking metrics (GAUC and NDCG / Recall over each user's examples; pred/obs = mean P over observed rate):")
    print(format_ranking_table({Path(args.model).name or "model": result}))
    if args.json:
        print(f"written to {args.json}")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    import torch

    from .demo import format_timeline

    problem = None
    if args.num_examples < 1:
        problem = f"--num-examples {args.num_examples} must be >= 1 (examples to print from the split's first row)."
    elif args.num_beams < 1:
        problem = f"--num-beams {args.num_beams} must be >= 1 (1 = greedy search)."
    else:
        problem = _seed_error(args.seed, high=2**64)  # torch.manual_seed takes up to 2**64 - 1
    if problem:
        print(f"a2gen generate: error: {problem}", file=sys.stderr)
        return 2
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
    if len(examples) < args.num_examples and not args.quiet:  # a message, not a result: stderr
        print(f"note: the {args.split} split has {len(examples)} examples, fewer than --num-examples "
              f"{args.num_examples}: all of them are shown.", file=sys.stderr)
    from .data.collator import CollationError
    from .data.split_checks import rows_message

    try:
        batch = collator([examples[index] for index in range(len(examples))])
    except CollationError as error:  # before: a traceback, "example 0 of the batch"
        print(f"a2gen generate: error: {rows_message(error, args.data, args.split, 0, len(examples))}", file=sys.stderr)
        return 2
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


# TrainingSettings fields set from options, as {field: the option's dest}: each builds its settings from these, and
# errors that name a field are said with its flag (``num_epochs=0`` -> ``--epochs 0``).
OPTIMIZATION_FIELDS = {
    "dense_learning_rate": "dense_lr", "embedding_learning_rate": "embedding_lr", "weight_decay": "weight_decay",
    "embedding_weight_decay": "embedding_weight_decay", "max_grad_norm": "max_grad_norm",
    "lr_schedule": "lr_schedule", "warmup_steps": "warmup_steps", "warmup_ratio": "warmup_ratio",
    "ema_decay": "ema_decay", "ema_every_steps": "ema_every", "ema_warmup": "ema_warmup", "report_to": "report_to",
    "log_every": "log_every",
}
SELECTION_FIELDS = {
    "selection_metric": "select_by", "early_stopping_patience": "patience", "early_stopping_min_steps": "min_steps",
    "patience_from_step": "patience_from_step", "selection_min_delta": "min_delta", "eval_every_steps": "eval_every",
    "scale_eval_every": "scale_eval_every", "eval_at_epoch_end": "eval_at_epoch_end",
    "eval_before_training": "eval_before_training", "select_generator_by_loss": "select_generator_by_loss",
    "freeze_ranking": "freeze_ranking",
}


def _optimization_settings(args: argparse.Namespace) -> dict[str, object]:
    """The TrainingSettings of :class:`OptimizationArguments` and :class:`TrackingArguments` (learning rates,
    schedule, warmup; trackers and log interval)."""
    return {field: getattr(args, dest) for field, dest in OPTIMIZATION_FIELDS.items()}


def _selection_settings(args: argparse.Namespace) -> dict[str, object]:
    return {field: getattr(args, dest) for field, dest in SELECTION_FIELDS.items()}


def _occurrence_head_error(args: argparse.Namespace, models: Sequence[str]) -> str | None:
    """A2Gen's wide path is part of its occurrence head and switches it on; an occurrence head turned off outright
    (--no-occurrence-head, or a --recipe / --config that sets it false) beside --wide-path is refused, not
    overridden without a word."""
    if args.wide_path and args.occurrence_head is False and any(name.startswith("a2gen") for name in models):
        return (
            "--wide-path needs A2Gen's occurrence head (the wide logit is part of it), but occurrence_head is off "
            "(--no-occurrence-head, or a --recipe / --config that sets occurrence_head: false): drop one of the two, "
            "or pass --occurrence-head."
        )
    return None


# The config fields train / compare set from an option of another name ({field: the option's dest}): the one list
# of them, which also turns a config's message about such a field into one about the flag (`_with_flags`).
FEATURE_FIELD_FLAGS = {
    "history_count_features": "count_features",
    "history_time_features": "time_features",
    "target_popularity_features": "popularity_features",
    "target_drops_repeated_start": "drop_repeated_start",
    "history_propensity_features": "history_propensity",
    "embedding_dropout_prob": "embedding_dropout",
    "history_event_cross_layers": "event_cross_layers",
    "history_event_item_moments": "event_item_moments",
    "history_event_moment_seconds": "event_moment_seconds",
    "history_event_moment_source": "event_moment_source",
    "history_event_moment_topics": "event_moment_topics",
    "history_event_moment_smoothing": "event_moment_smoothing",
}
# ... and those set only when given.
_GIVEN_FEATURE_FIELD_FLAGS = {
    "num_attention_heads": "num_attention_heads", "head_dim": "head_dim",
    "occurrence_hidden_size": "occurrence_hidden_size", "initializer_range": "embedding_init_std",
    "action_embedding_init_std": "action_init_std",
}
# ... and those of the option's own name.
_SAME_NAME_FEATURES = (
    "history_pooling", "occurrence_paths_input", "occurrence_linear_path", "popularity_keys", "rare_id_threshold",
    "wide_path", "slot_readout", "time_loss", "time_per_action", "time_buckets", "target_item_moments",
    "history_item_exposure", "context_interactions",
)

# Every train / compare setting of another name than its option: their errors name the flag (`_with_flags`).
TRAINING_FIELD_FLAGS = {
    **OPTIMIZATION_FIELDS, **SELECTION_FIELDS, **FEATURE_FIELD_FLAGS, **_GIVEN_FEATURE_FIELD_FLAGS,
    "num_epochs": "epochs", "select_best_epoch": "best_epoch",
    "share_scale": "wide_share_scale",  # the start regression's check (simple_baselines.check_share_scale)
}


def _feature_overrides(args: argparse.Namespace) -> dict[str, object]:
    return {
        **{name: getattr(args, name) for name in _SAME_NAME_FEATURES},
        **{field: getattr(args, dest) for field, dest in FEATURE_FIELD_FLAGS.items()},
        **({} if args.occurrence_head is None else {"occurrence_head": args.occurrence_head}),
        "use_id_embeddings": not args.id_free,
        **{
            field: getattr(args, dest)
            for field, dest in _GIVEN_FEATURE_FIELD_FLAGS.items()
            if getattr(args, dest) is not None
        },
    }


def run_compare(args: argparse.Namespace) -> int:
    from .output_folders import OutputWriteError
    from .training.compare import ABLATIONS, ComparisonSettings, format_markdown, parse_model_name, run_comparison
    from .training.data_setup import MODEL_CHOICES
    from .training.loop import TrainingSettings
    from .training.simple_baselines import SIMPLE_BASELINES

    models = [name.strip() for name in args.models.split(",") if name.strip()]
    simple = [name.strip() for name in args.simple.split(",") if name.strip()]
    problem = (_output_is_data_error(args.output, args.data) or _output_folder_error(args.output, beside=True)
               or _utf8_path_error(args.output) or _occurrence_head_error(args, models))
    if problem is None and args.seeds < 1:
        problem = f"--seeds {args.seeds} must be >= 1 (training seeds per network)."
    if problem is None and args.bootstrap_resamples < 1:
        problem = f"--bootstrap-resamples {args.bootstrap_resamples} must be >= 1."
    if problem is None and args.epochs < 1:  # compare has no --max-steps: TrainingSettings' advice would name it
        problem = (f"--epochs {args.epochs} must be >= 1 (the most epochs each network trains; early stopping may end "
                   "it sooner).")
    if problem is None and not models and not simple:
        problem = (f"--models {args.models!r} and --simple {args.simple!r} name no model to compare; give at least "
                   f"one, e.g. --models {','.join(MODEL_CHOICES)} or --simple {','.join(SIMPLE_BASELINES)}.")
    try:  # names checked before anything trains
        for name in models:
            network = name.partition(":")[0]
            if network in SIMPLE_BASELINES:
                raise ValueError(f"--models {name!r} is a simple baseline; give it with --simple. Networks: "
                                 f"{', '.join(MODEL_CHOICES)}.")
            if network not in MODEL_CHOICES:
                raise ValueError(f"--models {name!r} is not a network; choose from {', '.join(MODEL_CHOICES)}, "
                                 f"optionally with an ablation ({', '.join(f':{name}' for name in ABLATIONS)}); "
                                 "simple baselines go in --simple.")
            try:
                parse_model_name(name)
            except ValueError as error:
                raise ValueError(f"--models {name!r}: {error}") from None
        for name in simple:
            if name not in SIMPLE_BASELINES:
                raise ValueError(f"--simple {name!r} is not a simple baseline; choose from "
                                 f"{', '.join(SIMPLE_BASELINES)} (networks go in --models).")
    except ValueError as error:
        problem = problem or str(error)
    if problem is None:  # a model named twice (as the model it names) would be trained twice, compared with itself
        keys = [parse_model_name(name) for name in models] + simple
        repeated = sorted({name for name, key in zip(models + simple, keys) if keys.count(key) > 1})
        if repeated:
            problem = (f"--models / --simple name {repeated} more than once; give each model once (--seeds repeats "
                       "runs).")
    if problem:
        print(f"a2gen compare: error: {problem}", file=sys.stderr)
        return 2
    try:  # TrainingSettings checks the values (e.g. an unknown --report-to tracker)
        settings = ComparisonSettings(
            models=models,
            simple_baselines=simple,
            seeds=args.seeds,
            bootstrap_resamples=args.bootstrap_resamples,
            bootstrap_unit=args.bootstrap_unit,
            wide_warm_start=args.wide_warm_start,
            wide_residual=args.wide_residual,
            wide_frozen=args.wide_frozen,
            wide_residual_fit=args.wide_residual_fit,
            wide_share_scale=args.wide_share_scale,
            moment_warm_start=args.moment_warm_start,
            training=TrainingSettings(
                output_dir=str(Path(args.output) / "runs"),
                num_epochs=args.epochs,
                batch_size=args.batch_size,
                dataloader_num_workers=args.dataloader_num_workers,
                show_progress=not args.quiet,
                **_optimization_settings(args),
                **_selection_settings(args),
            ),
            model_overrides={
                **_feature_overrides(args),
                **{
                    name: getattr(args, name)
                    for name in ("max_history_items", "max_events_per_item")
                    if getattr(args, name) is not None
                },
            },
        )
        report = run_comparison(args.data, args.output, settings)
    except OutputWriteError as error:  # a full disk: compare trains its runs again (it has no --resume)
        print(f"a2gen compare: error: {error.problem} Then run the same command again.", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as error:
        print(f"a2gen compare: error: {_with_flags(str(error), vars(args), TRAINING_FIELD_FLAGS)}", file=sys.stderr)
        return 2
    print(format_markdown(report))
    print(f"written to {args.output}/results.md, results.json and results.png")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from .output_folders import write_text_atomically
    from .training.compare import MARKDOWN_SECTIONS, render_report

    sections = MARKDOWN_SECTIONS if args.tables.strip().lower() == "all" else [
        name.strip().lower() for name in args.tables.split(",") if name.strip()  # empty entries skipped, as in --models
    ]
    unknown = [name for name in sections if name not in MARKDOWN_SECTIONS]
    choices = f"give some of {', '.join(MARKDOWN_SECTIONS)} (comma-separated) or all."
    problem = (f"--tables {args.tables!r} names no section; {choices}" if not sections else
               f"--tables {args.tables!r}: unknown section(s) {', '.join(unknown)}; {choices}" if unknown else None)
    if problem is None and args.output:
        if _same_file(args.output, args.results):
            problem = (f"--output {args.output} is the results file being read ({args.results}); writing the Markdown "
                       "there would replace it. Give another file, e.g. --output results.md.")
        else:
            problem = _output_file_error(args.output, "--output", "results.md")
    if problem:
        print(f"a2gen report: error: {problem}", file=sys.stderr)
        return 2
    try:
        markdown = render_report(args.results, sections)
        if not markdown.strip():
            raise ValueError(f"{args.results} holds none of the tables asked for (--tables {args.tables}); e.g. "
                             "bootstrap needs an A2Gen model and another model in the comparison.")
        if args.output:
            write_text_atomically(args.output, markdown)
    except (OSError, ValueError) as error:
        print(f"a2gen report: error: {error}", file=sys.stderr)
        return 2
    print(f"written to {args.output}" if args.output else markdown, end="\n" if args.output else "")
    return 0


# The fewest sessions of a demo: its validation and test splits take 10 % each, and it prints 3 test sessions.
DEMO_MIN_EXAMPLES = 100


def run_demo_command(args: argparse.Namespace) -> int:
    problem = _output_folder_error(args.output) or _utf8_path_error(args.output)
    if problem is None and args.num_examples < DEMO_MIN_EXAMPLES:
        problem = (f"--num-examples {args.num_examples}: the demo needs at least {DEMO_MIN_EXAMPLES} sessions "
                   "(its validation and test splits take 10 % each); e.g. --num-examples 12000.")
    if problem is None and args.epochs < 1:
        problem = f"--epochs {args.epochs} must be >= 1 (passes over the train split)."
    if problem is None and args.batch_size < 1:
        problem = f"--batch-size {args.batch_size} must be >= 1 (examples per step)."
    if problem is None:  # transformers' set_seed seeds numpy's global generator: below 2**32
        problem = _seed_error(args.seed, high=2**32)
    if problem:
        print(f"a2gen demo: error: {problem}", file=sys.stderr)
        return 2
    from .demo import DemoSettings, run_demo
    from .output_folders import OutputWriteError

    try:
        run_demo(
            DemoSettings(
                output_dir=args.output,
                num_examples=args.num_examples,
                num_epochs=args.epochs,
                batch_size=args.batch_size,
                seed=args.seed,
            )
        )
    except OutputWriteError as error:  # a full disk: the demo trains its runs again (it has no --resume)
        print(f"a2gen demo: error: {error.problem} Then run the same command again.", file=sys.stderr)
        return 2
    except (OSError, ValueError) as error:
        print(f"a2gen demo: error: {error}", file=sys.stderr)
        return 2
    return 0


NO_WARM_STARTS = {
    "wide_warm_start": False, "wide_residual": False, "wide_frozen": False, "wide_residual_fit": False,
    "wide_share_scale": 1.0, "moment_warm_start": "off",
}


def run_train(args: argparse.Namespace) -> int:
    import json

    from accelerate import PartialState

    from .data.collator import CollationError
    from .data.split_checks import rows_message, split_schema_error, test_rows_error
    from .output_folders import strict_json
    from .training.loop import (
        EVAL_RESULTS_FILE,
        MODEL_FOLDER,
        TrainingSettings,
        saved_by_this_process,
        train_from_data_dir,
    )

    overrides = {
        name: getattr(args, name)
        for name in (
            "hidden_size",
            "id_embedding_size",
            "max_history_items",
            "max_events_per_item",
            "hidden_dropout_prob",
        )
        if getattr(args, name) is not None
    }
    overrides.update(_feature_overrides(args))
    if not args.progress:  # --no-progress: none at all (before: transformers' "Writing model shards" still showed)
        hide_progress_bars()
    problem = (_output_is_data_error(args.output, args.data) or _output_folder_error(args.output, beside=True)
               or _utf8_path_error(args.output) or _training_length_error(args)
               or _occurrence_head_error(args, [args.model])
               or _seed_error(args.seed, high=2**32))  # transformers' set_seed seeds numpy's global generator
    if problem:
        print(f"a2gen train: error: {problem}", file=sys.stderr)
        return 2
    try:
        settings = TrainingSettings(
            output_dir=args.output,
            num_epochs=args.epochs,
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            eval_batch_size=args.eval_batch_size,
            dataloader_num_workers=args.dataloader_num_workers,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            mixed_precision=args.mixed_precision,
            **_optimization_settings(args),
            **_selection_settings(args),
            checkpoint_every=args.checkpoint_every,
            keep_checkpoints=args.keep_checkpoints,
            resume=args.resume,
            seed=args.seed,
            select_best_epoch=args.best_epoch,
            cpu=args.cpu,
            show_progress=args.progress and not args.quiet,
        )
        starts = {
            name: getattr(args, name)
            for name in ("wide_warm_start", "wide_residual", "wide_frozen", "wide_residual_fit", "wide_share_scale")
        }
        starts["moment_warm_start"] = args.moment_warm_start
        if args.init_from is not None and starts != NO_WARM_STARTS:
            # A recipe's warm starts were applied by the run that saved the model; its weights replace them here.
            logging.getLogger("a2gen_hf").warning(
                f"--init-from {args.init_from}: the saved weights replace the warm starts {starts}."
            )
            starts = NO_WARM_STARTS
        # Every split's columns, widths and list lengths before the first step (before: a split from another data
        # folder, or without a column, was found only when the trained model scored the test split)
        problem = split_schema_error(args.data)
        if problem:
            print(f"a2gen train: error: {problem}", file=sys.stderr)
            return 2
        result, metrics = train_from_data_dir(
            args.data, settings, args.model, overrides, **starts, init_from=args.init_from
        )
    except CollationError as error:  # a value deeper in a split than the check above reads
        model = Path(args.output) / MODEL_FOLDER
        if saved_by_this_process(model) and not (Path(args.output) / EVAL_RESULTS_FILE).exists():
            # the final scoring of the test split: the trained model is saved, and only the scoring is to do again
            print(f"a2gen train: error: {test_rows_error(error, args.data)} The trained model was saved to {model} "
                  f"before the test split was scored ({EVAL_RESULTS_FILE} is not written): once the data is fixed, "
                  f"score it with `a2gen evaluate --model {model} --data {args.data} --json "
                  f"{Path(args.output) / EVAL_RESULTS_FILE}` (training again is not needed).", file=sys.stderr)
        else:  # a training batch (shuffled) or a validation batch: nothing was saved as the run's model
            text = rows_message(error, args.data, "train", None, where=f"split 'train' or 'validation' of {args.data}")
            print(f"a2gen train: error: {text} (the run stopped before saving its model)", file=sys.stderr)
        return 2
    except (OSError, ValueError, FloatingPointError) as error:  # A2GenConfigError is a ValueError
        message = _with_flags(_saved_config_fields_with_flags(str(error), args), vars(args), TRAINING_FIELD_FLAGS)
        hint = _run_folder_hint(args.init_from, "--init-from") if args.init_from and "config.json" in message else None
        print(f"a2gen train: error: {message}{' ' + hint if hint else ''}", file=sys.stderr)
        return 2
    if not PartialState().is_main_process:
        return 0
    if metrics is not None:
        summary = {key: metrics[key] for key in ("mean_auc", "mean_mae", "next_action_accuracy") if key in metrics}
        print(f"test: {json.dumps(strict_json(summary))} (all metrics in {args.output}/{EVAL_RESULTS_FILE})")
    kept_best = settings.select_best_epoch and result.best_epoch is not None
    if kept_best:
        print(f"best validation epoch: {result.best_epoch} (step {result.best_step})")
    if result.best_generator_step is not None:
        print(f"generator (times, generate()) from the lowest validation generator loss: step {result.best_generator_step}")
    which = "" if kept_best or result.best_epoch is None else (
        f" (the last weights, --no-best-epoch; the best validation evaluation, step {result.best_step}, is not kept)"
        if result.best_step != result.global_step else " (the last weights, --no-best-epoch: the best validation "
        "evaluation's too)"
    )  # before: "best validation epoch: 0 (step 100)" beside the step-300 weights it saved
    print(f"trained {result.global_step} steps; model saved to {args.output}/{MODEL_FOLDER}{which}")
    return 0


def _training_length_error(args: argparse.Namespace) -> str | None:
    """``--epochs`` / ``--max-steps`` that train no step, said with the flags (TrainingSettings' own message names
    its fields, num_epochs and max_steps), or None."""
    if args.max_steps is not None and args.max_steps < 1:
        return f"--max-steps {args.max_steps} must be >= 1 (or leave it out: --epochs sets the run's length)."
    if args.max_steps is None and args.epochs < 1:
        return f"--epochs {args.epochs} must be >= 1, or give --max-steps N (train for N optimizer steps)."
    return None


# A config field whose option sets its opposite: named with that option.
_OPPOSITE_FIELD_FLAGS = {"use_id_embeddings": "id_free"}


def _saved_config_fields_with_flags(message: str, args: argparse.Namespace) -> str:
    """``--init-from``'s refusal lists the config fields in which the saved model differs from this run
    (``field: <saved> in the saved model, <built> here``, data_setup.model_to_train_from), and ``--resume``'s the
    settings and config fields in which the checkpoint does (``settings.field: checkpoint <old>, now <new>``): each
    with its flag where the command has one (``target_drops_repeated_start (--drop-repeated-start): ...``)."""
    flags = {field.name: field.metadata.get("flag") or "--" + field.name.replace("_", "-")
             for group in getattr(args, "option_groups", ()) for field in dataclasses.fields(group)}  # fmt: skip

    def named(match: re.Match) -> str:
        field, shown = match[2], match[1] + match[2]
        if field in _OPPOSITE_FIELD_FLAGS and _OPPOSITE_FIELD_FLAGS[field] in flags:
            return f"{shown} (off with {flags[_OPPOSITE_FIELD_FLAGS[field]]}): "
        flag = flags.get(TRAINING_FIELD_FLAGS.get(field, field))
        return f"{shown} ({flag}): " if flag else match[0]

    saved_or_checkpoint = r"(?=[^;]* in the saved model, |checkpoint [^;]*, now )"
    return re.sub(rf"(?<![\w.])((?:settings\.|model\.config\.)?)([a-z][a-z0-9_]*): {saved_or_checkpoint}", named, message)


def add_plot_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="draw a PNG: a predicted vs actual timeline, training curves, or the model comparison",
        description="Draw pictures with matplotlib (no display needed). See docs/cli.md.",
        formatter_class=HelpFormatter,
    )
    kinds = parser.add_subparsers(dest="plot_kind", required=True, metavar="KIND")
    timeline = kinds.add_parser(
        "timeline",
        help="the generated timeline of one example above its actual timeline (the paper's intro figure)",
        formatter_class=HelpFormatter,
    )
    timeline.add_argument("--model", required=True, help="folder written by save_pretrained (an A2Gen model)")
    timeline.add_argument("--data", required=True, help="data folder from a2gen prepare / a2gen simulate")
    timeline.add_argument("--split", default="test", help="the split to read the example from")
    timeline.add_argument("--index", type=int, default=0, help="row of the split")
    curves = kinds.add_parser("curves", help="training and validation loss against the step", formatter_class=HelpFormatter)
    curves.add_argument("log", help="trainer_state.json (Trainer) or training_log.json (a2gen train)")
    comparison = kinds.add_parser(
        "comparison", help="AUC (and timing MAE) per action and model, mean ± std", formatter_class=HelpFormatter
    )
    comparison.add_argument("results", help="results.json written by a2gen compare")
    default_titles = {timeline: "one naming the example", curves: "'Training curves'", comparison: "none"}
    for kind in (timeline, curves, comparison):
        kind.add_argument("--output", required=True, help="the PNG to write")
        kind.add_argument("--title", help=f"a title for the picture; default: {default_titles[kind]}")
        kind.add_argument("--quiet", action="store_true", help="print only results and errors")
        kind.add_argument("--verbose", action="store_true", help="also print debugging messages")
    parser.set_defaults(func=run_plot)


def run_plot(args: argparse.Namespace) -> int:
    from .plotting import (
        output_path,
        plot_comparison,
        plot_timeline,
        plot_training_curves,
        ranked_action_probabilities,
    )

    problem = _output_file_error(args.output, "--output", "plot.png")  # as every command's file to write
    if problem:
        print(f"a2gen plot {args.plot_kind}: error: {problem}", file=sys.stderr)
        return 2
    try:
        output_path(args.output, "--output")  # before any model is loaded
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
            probabilities = ranked_action_probabilities(model.config, scores)
            path = plot_timeline(predicted, actual, args.output, title=title, probabilities=probabilities)
    except (FileNotFoundError, ValueError) as error:
        print(f"a2gen plot {args.plot_kind}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. no permission to write --output
        print(f"a2gen plot {args.plot_kind}: error: cannot write --output {args.output}: {error.strerror or error}",
              file=sys.stderr)
        return 2
    print(f"written to {path}")
    return 0


# The benchmark scripts live in the repository checkout, not in the installed package.
BENCHMARKS_FOLDER = Path(__file__).resolve().parents[2] / "benchmarks"


def run_bench(args: argparse.Namespace) -> int:
    import subprocess

    problem = None
    if args.convert_rows is not None and not args.convert:
        problem = "--convert-rows needs --convert."
    elif args.convert_rows is not None and args.convert_rows < 1:
        problem = f"--convert-rows {args.convert_rows} must be >= 1 (rows of the log to convert)."
    elif args.output:
        problem = _output_folder_error(args.output)  # checked before minutes of timing, not after
    if problem:
        print(f"a2gen bench: error: {problem}", file=sys.stderr)
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


# name: (help line, description, option dataclasses, positional arguments (name, help), runner)
COMMANDS: dict[str, tuple[str, str, tuple[type, ...], tuple[tuple[str, str], ...], str]] = {
    "prepare": (
        "convert an interaction log (CSV, JSONL, Parquet) into A2Gen examples",
        "Convert an interaction log into train / validation / test examples (split by time), a fitted tokenizer and "
        "a2gen_data.json. The rules are described in docs/data.md; --preset generic reads your own event log.",
        (PrepareArguments, GenericLogArguments),
        (),
        "run_prepare",
    ),
    "simulate": (
        "generate short-video sessions in which action timing carries intent (docs/simulator.md)",
        "Simulate train / validation / test examples (split by time) with their oracle, a fitted tokenizer and "
        "a2gen_data.json. The generative process is described in docs/simulator.md.",
        (SimulateArguments,),
        (),
        "run_simulate",
    ),
    "push": (
        "push a checkpoint (model, tokenizer, code, model card) to the Hugging Face Hub in one commit",
        "Push a folder written by save_pretrained to a Hub repo, with its tokenizer (from the folder or its "
        "tokenizer/ subfolder), its modeling code and a model card. The token comes from HF_TOKEN or `hf auth login`, "
        "never from the command line. See docs/hub.md.",
        (PushArguments,),
        (("checkpoint", "folder with config.json and model.safetensors"),
         ("repo_id", "namespace/name (or name: the token owner's namespace)")),
        "run_push",
    ),
    "train": (
        "train A2Gen (or MMoE / PLE) on a data folder with Accelerate; evaluate on its test split",
        "Train on the train split of a folder written by `a2gen simulate` / `a2gen prepare`, keep the epoch with the "
        "lowest validation loss, save the model and tokenizer to OUTPUT/model and the test metrics to "
        "OUTPUT/eval_results.json. One process as is; several with `accelerate launch --multi_gpu --num_processes N "
        "-m a2gen_hf.cli train ...`. Options can come from --config FILE / --recipe NAME; the command line wins. "
        "See docs/training.md.",
        (TrainArguments, OptimizationArguments, TrackingArguments, SelectionArguments, ArchitectureArguments,
         FeatureArguments),
        (),
        "run_train",
    ),
    "evaluate": (
        "score a trained model on a split: AUC and timing MAE (seconds) per action",
        "Evaluate a saved model (A2Gen, MMoE or PLE) on a data folder's split and print the table.",
        (EvaluateArguments,),
        (),
        "run_evaluate",
    ),
    "generate": (
        "print predicted vs actual timelines for examples of a split",
        "Generate timed action sequences with a saved A2Gen model and print them beside the truth.",
        (GenerateArguments,),
        (),
        "run_generate",
    ),
    "compare": (
        "train several models on the same splits and write the paper-style table (Markdown, JSON, PNG)",
        "Train each network for every seed on the same train split (best epoch on validation), score all models and "
        "the simple baselines on the test split, and report mean ± std, positive counts and paired bootstrap "
        "intervals of the AUC difference to A2Gen. Networks: a2gen-iag, a2gen-eag, mmoe, ple, mmoe-fair, ple-fair; "
        "ablations: a2gen-iag:notime, a2gen-iag:noevents.",
        (CompareArguments, OptimizationArguments, TrackingArguments, SelectionArguments, FeatureArguments),
        (),
        "run_compare",
    ),
    "report": (
        "re-render the Markdown tables of a saved a2gen compare report (results.json)",
        "Print (or write with --output) the Markdown tables of a results.json written by `a2gen compare`, with "
        "today's labels and verdict wording (named after the models, e.g. \"A2Gen-IAG better\", decided by the "
        "saved 95 % intervals); nothing is retrained or rescored.",
        (ReportArguments,),
        (("results", "results.json written by a2gen compare"),),
        "run_report",
    ),
    "demo": (
        "the whole story on the built-in simulator in under a minute",
        "Simulate sessions, train A2Gen (IAG) and MMoE, evaluate both against the oracle, print the table, the top "
        "actions with their probabilities and a few sampled timelines, save the checkpoint and a timeline PNG.",
        (DemoArguments,),
        (),
        "run_demo_command",
    ),
    "bench": (
        "speed benchmarks: ranking latency, generate, training throughput (and log conversion)",
        "Run benchmarks/bench_serving.py and, with --convert, benchmarks/bench_convert.py of the repository checkout "
        "the package is installed from (pip install -e .). Each script runs in its own Python process: "
        "bench_serving.py restarts itself with allocator settings that must be in place before the process starts. "
        "Figures and their caveats: docs/serving.md and benchmarks/README.md.",
        (BenchArguments,),
        (),
        "run_bench",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``a2gen`` parser. Building it imports no heavy module: each command imports what it needs when it runs."""
    parser = argparse.ArgumentParser(
        prog="a2gen", description="A2Gen: data preparation, training and serving.", formatter_class=HelpFormatter
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_line, description, groups, positionals, runner) in COMMANDS.items():
        command = subparsers.add_parser(name, help=help_line, description=description, formatter_class=HelpFormatter)
        for positional, positional_help in positionals:
            command.add_argument(positional, help=positional_help)
        for index, group in enumerate(groups):
            if index == 0:  # the command's own options
                add_dataclass_arguments(command, group)
                continue
            title = group.__name__.removesuffix("Arguments").lower()
            description = group.__doc__ if not (group.__doc__ or "").startswith(group.__name__) else None
            add_dataclass_arguments(command.add_argument_group(title, description), group)
        add_dataclass_arguments(command.add_argument_group("common"), CommonArguments)
        command.set_defaults(func=globals()[runner], option_groups=groups)
    add_plot_command(subparsers)
    return parser


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._subparsers._group_actions:  # the subparsers action
        if command in action.choices:
            return action.choices[command]
    raise KeyError(command)


def _config_values(path: str, source: str) -> dict[str, Any]:
    """A flat YAML / JSON mapping of option names to values."""
    import yaml

    from .recipes import load_yaml

    try:
        with open(path, encoding="utf-8") as file:
            values = load_yaml(file.read())
    except OSError as error:
        raise ConfigError(f"{source} {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{source} {path} is not UTF-8 text (byte {error.start}: {error.reason}); give a YAML or "
                          "JSON file saved as UTF-8.") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{source} {path}{where}: not valid YAML ({getattr(error, 'problem', error)})") from None
    if not values and (values is None or isinstance(values, dict)):
        logging.getLogger("a2gen_hf").warning(
            "%s %s holds no options (the file is empty, only comments or {}): nothing of it is applied.", source, path
        )
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{source} {path} must hold a mapping of option names to values, not {type(values).__name__}.")
    return values


# The commands the shipped recipes (training settings) are written for.
RECIPE_COMMANDS = ("train", "compare")


class ConfigError(ValueError):
    """A --config / --recipe file that cannot be applied."""


def _file_arguments(command: argparse.ArgumentParser, values: dict[str, Any], source: str) -> list[str]:
    """``{"batch_size": 512, "cpu": true}`` -> ``["--batch-size", "512", "--cpu"]``, checked against the options of
    ``command`` (the keys are the options' flags with underscores, ``generic_actions`` for ``--generic-actions``; the
    option's internal name, where it differs, is read too). A list is refused for an option that takes one value
    (:func:`_takes_a_list`); an option given once per run (--input, --output) gets the file's value as its default."""
    from . import cli_arguments

    actions = [action for action in command._actions
               if action.option_strings and action.dest not in ("help", "config", "recipe")]  # fmt: skip
    options = {_file_key(action): action for action in actions}
    aliases = {action.dest: action for action in actions if action.dest not in options}
    arguments = []
    for key, value in values.items():
        if key not in options and key not in aliases:
            raise ConfigError(
                f"{source}: unknown key {key!r} for `a2gen {command.prog.split()[-1]}`; allowed keys: "
                f"{', '.join(sorted(options))}. (A key that only holds a YAML anchor for merge keys starts with x-: "
                f"x-{key}.)"
            )
        action = options.get(key) or aliases[key]
        flag = action.option_strings[0]
        if isinstance(value, dict):
            raise ConfigError(f"{source}: {key} holds a mapping; a --config file is a flat mapping of option: value.")
        if isinstance(value, bool) and action.choices is not None:
            value = _choice_for_a_yaml_bool(action, value, f"{source}: {key}")
        if isinstance(action, argparse.BooleanOptionalAction):
            if not isinstance(value, bool):
                raise ConfigError(f"{source}: {key} is a switch; give true or false, not {value!r}.")
            # false is written out (--no-x), so that a --config file can turn off what the recipe turned on.
            arguments += [flag if value else action.option_strings[1]]
        elif value is None:
            # null unsets an optional number (--patience none: no early stopping), as on the command line.
            if not getattr(action.type, "accepts_none", False):
                raise ConfigError(f"{source}: {key}: null is not a value of {flag}; give a value or leave the key out.")
            arguments += [f"{flag}=none"]
        else:
            if isinstance(value, (list, tuple)) and not _takes_a_list(action):
                raise ConfigError(
                    f"{source}: {key} holds a list ({value!r}), but {flag} takes one value; give one"
                    + (" (a run reads one log file: concatenate the files into one first, or prepare each into its "
                       "own --output)" if action.dest == "input" else "") + "."
                )
            text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
            _check_file_value(action, text, f"{source}: {key}: {value!r}")
            if isinstance(action, cli_arguments.GivenOnce):
                # One value per run: the file's is the default, which the command line overrides (an argument here
                # would be a second occurrence, refused as given twice).
                action.default = action.type(text) if callable(action.type) else text
                continue
            arguments += [f"{flag}={text}"]
    return arguments


def _takes_a_list(action: argparse.Action) -> bool:
    """Whether ``action`` takes several values, comma-separated (``--generic-actions``, ``--time-window
    FIRST,LAST``): a --config file may give them as a YAML list; any other option takes one value."""
    return "comma-separated" in (action.help or "") or "," in (action.metavar or "")


# The key of a --config file that names its recipe, as --recipe does.
CONFIG_RECIPE_KEY = "recipe"


def _recipe_of_the_config(value: Any, config: str, given: str | None) -> str | None:
    """The recipe that a ``--config`` file names (``recipe: sparse_logs``, or a path, read from the file's folder):
    applied as ``--recipe`` is, before the file's own values. ``null`` names none. Refused when ``--recipe`` names
    another (a run takes one recipe); the same recipe in both is that recipe."""
    from .recipes import RECIPE_NAMES

    if value is None:
        return given
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{config}: {CONFIG_RECIPE_KEY}: {value!r} is not a recipe; give the name of a shipped one "
                          f"({', '.join(RECIPE_NAMES)}) or the path of a recipe file.")
    named = value if value in RECIPE_NAMES or Path(value).is_absolute() else str(Path(config).parent / value)
    if given and given != named and not (
        given not in RECIPE_NAMES and named not in RECIPE_NAMES and Path(given).resolve() == Path(named).resolve()
    ):
        raise ConfigError(
            f"--recipe {given} and {config}'s {CONFIG_RECIPE_KEY}: {value} name two recipes; a run takes one: drop "
            f"--recipe or the file's {CONFIG_RECIPE_KEY} key, and give the settings you want of the other as flags or "
            "in the file."
        )
    return named


def _recipe_arguments(command: argparse.ArgumentParser, name: str, where: str, command_name: str) -> list[str]:
    """A recipe's options as flags (:func:`_file_arguments`); ``where`` names it in errors (``--recipe NAME``, or the
    --config file's ``recipe:`` key)."""
    try:
        from .recipes import RECIPE_NAMES, load_recipe
    except ImportError:
        raise ConfigError(f"{where}: this installation has no a2gen_hf.recipes module.") from None
    try:
        recipe = load_recipe(name)
    except (FileNotFoundError, ValueError, KeyError) as error:
        raise ConfigError(f"{where}: {error}") from None
    if CONFIG_RECIPE_KEY in recipe or "config" in recipe:
        key = CONFIG_RECIPE_KEY if CONFIG_RECIPE_KEY in recipe else "config"
        raise ConfigError(
            f"{where}: the recipe names another {key} ({key}: {recipe[key]!r}); a recipe holds options only and "
            "cannot include another file: give one recipe as --recipe (or a --config file's recipe: key) and put "
            "the other's settings into the --config file."
        )
    if name in RECIPE_NAMES and command_name not in RECIPE_COMMANDS:
        leave_out = "leave --recipe out" if where.startswith("--recipe") else f"remove the file's {CONFIG_RECIPE_KEY} key"
        raise ConfigError(
            f"{where}: the shipped recipes hold training settings, for "
            f"{' and '.join(f'`a2gen {other}`' for other in RECIPE_COMMANDS)}; `a2gen {command_name}` takes "
            f"none of them: {leave_out} (a model keeps what its recipe set in its saved config)."
        )
    return _file_arguments(command, recipe, f"recipe {name}")


def _with_flags(message: str, arguments: dict[str, Any], fields: Mapping[str, str] | None = None) -> str:
    """A message of the Python API (``num_examples=0 must be ...``) as the command line says it (``--num-examples 0
    must be ...``), for the fields that are options of the command: by name, or through ``fields`` ({field: the
    option's dest}, e.g. ``num_epochs`` -> ``epochs``: ``--epochs 0``); a switch's True / False is its ``--name`` /
    ``--no-name`` form."""
    fields = fields or {}

    def flag(match: re.Match) -> str:
        dest = fields.get(match[1], match[1])
        if dest not in arguments or _inside_a_call(message, match.start()):
            return match[0]
        name = dest.replace("_", "-")
        if match[2] is not None:  # a switch: --name / --no-name, no value
            return f"--{name}" if match[2] == "True" else f"--no-{name}"
        return f"--{name} "

    flagged = re.sub(r"\b([a-z][a-z0-9_]*)=(?:(True|False)\b)?", flag, message)

    def repeated(match: re.Match) -> str:
        """The Python API's "(CLI: --name)" where the message already names that flag: dropped, unless it glosses a
        field name just before it ("drop max_actions (CLI: --max-actions)")."""
        before = flagged[: match.start()]
        return "" if match[1] in before and not re.search(r"[a-z0-9]_[a-z0-9_]*$", before) else match[0]

    return re.sub(r" \(CLI: (--[a-z0-9-]+)\)", repeated, flagged)


def _inside_a_call(message: str, position: int) -> bool:
    """Whether ``position`` of ``message`` lies inside the parentheses of a Python call (``replace(preset,
    side_feature_columns=...)``, ``SplitRule(test_fraction=0)``): a Python hint, whose ``name=`` stays as it is."""
    depth = 0
    for index in range(position - 1, -1, -1):
        if message[index] == ")":
            depth += 1
        elif message[index] == "(":
            if depth == 0:
                return index > 0 and (message[index - 1].isalnum() or message[index - 1] in "_.")
            depth -= 1
    return False


def _file_key(action: argparse.Action) -> str:
    """The --config key of an option: its long flag with underscores (``--generic-actions`` -> ``generic_actions``)."""
    flag = next((flag for flag in action.option_strings if flag.startswith("--")), action.option_strings[0])
    return flag.lstrip("-").replace("-", "_")


# YAML 1.1 reads these unquoted words as booleans; an option whose values include them gets the word back.
_YAML_BOOL_WORDS = {False: ("no", "off", "false", "n"), True: ("yes", "on", "true", "y")}


def _choice_for_a_yaml_bool(action: argparse.Action, value: bool, where: str) -> Any:
    """A YAML boolean given to an option that takes words (``mixed_precision: no``, ``moment_warm_start: off``): the
    word among the option's choices that YAML read as ``value``; refused where the option has none."""
    for word in _YAML_BOOL_WORDS[value]:
        if action.choices is not None and word in action.choices:
            return word
    raise ConfigError(
        f"{where}: {value!r} (YAML reads unquoted yes / no / on / off as true / false) is not a value of "
        f"{action.option_strings[0]}; allowed values: {', '.join(map(str, action.choices))}."
    )


def _check_file_value(action: argparse.Action, text: str, where: str) -> None:
    """A --config / --recipe value checked as its option checks it, so that the error names the file and the key
    (argparse's own names only the flag, as if it came from the command line)."""
    try:
        converted = action.type(text) if callable(action.type) else text
    except (argparse.ArgumentTypeError, TypeError, ValueError) as error:
        kind = getattr(action.type, "__name__", "value")
        reason = str(error) if isinstance(error, argparse.ArgumentTypeError) else f"not a valid {kind}"
        raise ConfigError(f"{where} is not a value of {action.option_strings[0]} ({reason}).") from None
    if action.choices is not None and converted not in action.choices:
        allowed = ", ".join(map(str, action.choices))
        raise ConfigError(f"{where} is not a value of {action.option_strings[0]}; allowed values: {allowed}.")


def _parse_known(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_args(argv)``, but an unknown option is reported by the command it was given to, with the
    closest options it has (argparse's top-level parser said only "a2gen: error: unrecognized arguments")."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = _subparser(parser, args.command) if getattr(args, "command", None) else parser
        options = sorted({flag for action in command._actions for flag in action.option_strings})
        hints = []
        for flag in (item.split("=", 1)[0] for item in unknown if item.startswith("-")):
            close = difflib.get_close_matches(flag, options, n=3)
            hints.append(f"{flag}: did you mean {' / '.join(close)}?" if close else f"{flag}: no such option")
        command.error(f"unrecognized arguments: {' '.join(unknown)}" + (f" ({'; '.join(hints)})" if hints else "")
                      + f"; see a2gen {getattr(args, 'command', '') or ''} --help.")
    return args


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line; options of ``--recipe`` then ``--config`` come first, so the command line wins."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse_known(parser, argv)
    for flag in ("config", "recipe"):
        if getattr(args, flag, None) == "":
            parser.exit(2, f"a2gen {args.command}: error: --{flag} is empty: give the path of a YAML or JSON file"
                           + (" or a recipe's name" if flag == "recipe" else "") + ", or leave the flag out.\n")
    if getattr(args, "config", None) or getattr(args, "recipe", None):
        command = _subparser(parser, args.command)
        file_arguments = []
        try:
            values = _config_values(args.config, "--config") if args.config else {}
            # A recipe named in the --config file (`recipe: sparse_logs`) is applied as --recipe is: before the file.
            recipe, where = args.recipe, f"--recipe {args.recipe}"
            if CONFIG_RECIPE_KEY in values:
                recipe = _recipe_of_the_config(values.pop(CONFIG_RECIPE_KEY), args.config, args.recipe)
                if recipe != args.recipe:
                    where = f"{args.config}: {CONFIG_RECIPE_KEY}: {recipe}"
            if "config" in values:
                raise ConfigError(f"{args.config}: config: a --config file cannot name another one; merge the two "
                                  "into one file (or give the settings of one as flags).")
            if recipe:
                file_arguments += _recipe_arguments(command, recipe, where, args.command)
            if values:
                file_arguments += _file_arguments(command, values, args.config)
        except ConfigError as error:
            parser.exit(2, f"a2gen {args.command}: error: {error}\n")
        position = argv.index(args.command) + 1
        args = _parse_known(parser, [*argv[:position], *file_arguments, *argv[position:]])
        args.recipe = recipe  # the recipe applied, --recipe's or the --config file's
    missing = [name for name in required_fields(*getattr(args, "option_groups", ())) if getattr(args, name) is None]
    if missing:
        flags = ", ".join("--" + name.replace("_", "-") for name in missing)
        parser.exit(2, f"a2gen {args.command}: error: {flags} required (on the command line or in --config).\n")
    return args


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a message comes (it may be replaced, e.g. by pytest)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def hide_progress_bars() -> None:
    """No progress bars from here on: ours, transformers' ("Writing model shards"), the Hub's and datasets'."""
    os.environ["TQDM_DISABLE"] = "1"  # read where tqdm is first imported (tqdm >= 4.66): after that, the calls below
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # and the Hub's
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()


def configure_logging(quiet: bool = False, verbose: bool = False) -> None:
    """``a2gen_hf`` messages to stderr at INFO (WARNING with ``quiet``, DEBUG with ``verbose``), transformers' and
    datasets' verbosity to match, and no progress bars with ``quiet``."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logger = logging.getLogger("a2gen_hf")
    if not any(isinstance(handler, _StderrHandler) for handler in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
    if quiet:
        hide_progress_bars()
    if quiet or verbose:
        os.environ["TRANSFORMERS_VERBOSITY"] = "error" if quiet else "info"
        os.environ["DATASETS_VERBOSITY"] = "error" if quiet else "info"


# Commands that load, save and push no model or tokenizer: they skip the package's registration.
UNREGISTERED_COMMANDS = ("bench", "report")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt (:func:`_stop_on_sigterm`)."""


def _stop_on_sigterm():
    """While a command runs, SIGTERM (``timeout``, Slurm's ``scancel``, a preempted pod, the launcher of ``accelerate
    launch``) stops it as Ctrl-C does: cleanups run and the line on how to go on is printed. A forked child of this
    process (a data loader's or prepare's worker) ends at once, as without the handler. Returns a function that
    puts back the handler it replaced (nothing to put back off the main thread, where none can be installed)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    pid = os.getpid()

    def stop(signum, frame):
        if os.getpid() != pid:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise Terminated

    previous = signal.signal(signal.SIGTERM, stop)
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)  # --help exits here, before anything heavy is imported
    configure_logging(getattr(args, "quiet", False), getattr(args, "verbose", False))
    restore_sigterm = _stop_on_sigterm()
    try:
        if args.command not in UNREGISTERED_COMMANDS:
            # The auto classes and the tokenizer's auto_map (which save_pretrained writes, with its code), as when
            # transformers is imported before a2gen_hf: the lazy package registers only then (a2gen_hf.register).
            from . import register

            register()
        return args.func(args)
    except KeyboardInterrupt as interrupt:  # Ctrl-C or SIGTERM: one line, and the shell's status for the signal
        if os.environ.get("RANK", "0") == "0":  # under accelerate launch / torchrun: once, from the main process
            print(f"a2gen {_command_name(args)}: {interrupted_message(args)}", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT)  # 143 or 130
    except BrokenPipeError:  # stdout closed early (| head): quiet, the shell's status for SIGPIPE (128 + 13)
        # Python would report the error again when it flushes stdout at exit: point stdout at /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    finally:
        restore_sigterm()


def _command_name(args: argparse.Namespace) -> str:
    return f"plot {args.plot_kind}" if args.command == "plot" else args.command


def interrupted_message(args: argparse.Namespace) -> str:
    """What Ctrl-C (or SIGTERM) leaves and how to go on, from what this ``train`` did and left in its output folder:
    a model this process saved without its test metrics (stopped in the final test evaluation) is evaluated with
    ``a2gen evaluate``; otherwise the run resumes from its last checkpoint with --resume (a model an earlier run left,
    say before a resume with more steps, is not this run's), and without checkpoints runs again (with --resume where
    the interrupted run left files that a new run into the folder refuses)."""
    if args.command != "train":
        return "interrupted"
    output = Path(args.output)
    if "a2gen_hf.training.loop" in sys.modules:  # training had started: it may have written into the folder
        from .training.checkpointing import RUN_FILES
        from .training.loop import EVAL_RESULTS_FILE, MODEL_FOLDER, saved_by_this_process

        model = output / MODEL_FOLDER
        if saved_by_this_process(model) and not (output / EVAL_RESULTS_FILE).exists():
            if not (Path(args.data) / "test").is_dir():
                return f"interrupted after training; the model was saved to {model} (the data has no test split)"
            return (f"interrupted during the test evaluation, after training: the model was saved to {model}; "
                    f"score it with `a2gen evaluate --model {model} --data {args.data} --json "
                    f"{output / EVAL_RESULTS_FILE}` (training again is not needed)")
        left = [name for name in RUN_FILES if (output / name).exists()]
    else:
        left = []
    if args.checkpoint_every:
        from .training.checkpointing import latest_checkpoint

        if latest_checkpoint(output) is not None:
            return (f"interrupted; resume with --resume (the same command with --resume continues from the last "
                    f"checkpoint in {args.output})")
        return (f"interrupted before the first checkpoint was complete (--checkpoint-every {args.checkpoint_every}): "
                f"the same command with --resume starts again from step 0 in {args.output}")
    if left:
        return (f"interrupted; no checkpoint was written (--checkpoint-every 0), and {args.output} holds this run's "
                f"{', '.join(left)}, which a new run refuses: run the command again with --resume (with no "
                "checkpoint it starts from step 0) or into an empty folder (with --checkpoint-every N, a later run "
                "can resume with --resume)")
    return ("interrupted; no checkpoint was written (--checkpoint-every 0): run the command again (with "
            "--checkpoint-every N, a later run can resume with --resume)")


if __name__ == "__main__":
    sys.exit(main())
