"""``a2gen compare``: train several models on the same splits and report the paper's tables honestly.

Every network (A2Gen IAG / EAG, paper-style MMoE / PLE on pooled history items, fairly fed MMoE / PLE whose
history also carries each item's timed actions) is trained by the same loop on the same train split, selected on
validation (loss or mean AUC, ``TrainingSettings.selection_metric``), and scored on the test split by the same metric code as the simple baselines (user propensity,
popularity, logistic regression on counts, constant median time). The table gives mean ± std over seeds, positive
counts, and paired bootstrap confidence intervals of each model's AUC difference to A2Gen on seed-averaged
predictions. Ablations (``a2gen-iag:notime``, ``a2gen-iag:noevents``) feed A2Gen a history without event times or
without events.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import secrets
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import set_seed

from ..configuration_a2gen import A2GenConfig
from ..data.collator import (
    A2GenDataCollator,
    check_session_time_columns,
    coarse_session_times_note,
    collation_rows,
)
from ..data.logs import ranked_actions
from ..metrics import ORACLE_COLUMNS, action_targets, compute_action_metrics, predict_dataloader, user_groups
from ..metrics.action_metrics import mean_auc_actions, mean_auc_label, undefined_auc_reasons
from ..metrics.tables import GAUC_NOTE, gauc_cell, too_few_gauc_groups, users_text
from ..output_folders import (
    output_lock,
    read_json_file,
    remove_dead_work_folders,
    replacing_file,
    write_json_atomically,
    write_text_atomically,
)
from ..plotting import RANKING_TABLES, SUMMARY_TABLES, check_comparison_report, plot_comparison
from .checkpointing import claim_marked_runs, foreign_run_error, is_marked_run, start_marked_run
from .data_setup import (  # noqa: F401  (actions_without_training_positives: its old home was here)
    MODEL_CHOICES,
    actions_without_training_positives,
    create_model,
    load_data_dir,
    model_config_from_tokenizer,
    refuse_without_validation,
    untrained_actions,
    warn_of_moments_without_item_times,
    warn_of_settings_the_model_drops,
)
from .give_back import give_back_to_the_start
from .loop import TrainingSettings, generator_selection_applies, train
from .moment_factorization import apply_moment_start, check_moment_start
from .simple_baselines import (
    SIMPLE_BASELINES,
    ActionTargets,
    check_start_has_a_wide_path,
    check_wide_start,
    start_from_regression,
)
from .statistics import (
    MIN_CLASS_GROUPS,
    MIN_GROUPS,
    MIN_RESAMPLES,
    class_group_counts,
    has_both_classes,
    mean_std,
    paired_bootstrap_auc_difference,
    significance_label,
    too_few_class_groups,
    undefined_auc_difference,
)

logger = logging.getLogger(__name__)

NETWORK_LABELS = {
    "a2gen-iag": "A2Gen-IAG",
    "a2gen-eag": "A2Gen-EAG",
    "mmoe": "MMoE (paper-style: pooled history items)",
    "ple": "PLE (paper-style: pooled history items)",
    "mmoe-fair": "MMoE, fairly fed (history items + timed actions)",
    "ple-fair": "PLE, fairly fed (history items + timed actions)",
}
# The verdict of an action no model learned (never in the training split): its AUCs are chance.
UNTRAINED_VERDICT = "no verdict: never in the training split"

# The simple baselines' names in tables and verdicts (training/simple_baselines.py).
BASELINE_LABELS = {
    "propensity": "user propensity (count rule)",
    "popularity": "item / category popularity",
    "logreg": "logistic regression on counts",
    "count-network": "regression + network on counts",
    "logreg-shares": "logistic regression on counts, share-scaled",
    "count-network-shares": "regression + network on counts, share-scaled",
    "logreg-times": "logistic regression on counts and history times",
    "logreg-shares-times": "logistic regression on counts and history times, share-scaled",
    "median-time": "constant median time",
}


def _zero_history_times(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    batch["history_action_times"] = torch.zeros_like(batch["history_action_times"])
    batch["history_time_mask"] = torch.zeros_like(batch["history_time_mask"])
    if "history_item_ages" in batch:  # when the history sessions happened: every one "now"
        batch["history_item_ages"] = torch.zeros_like(batch["history_item_ages"])
    return batch


def _remove_history_events(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    batch = _zero_history_times(batch)
    batch["history_action_ids"] = torch.zeros_like(batch["history_action_ids"])
    return batch


ABLATIONS: dict[str, Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]] = {
    "notime": _zero_history_times,
    "noevents": _remove_history_events,
}


def check_ablations_with_the_start(models: Sequence[str], wide_warm_start: bool, config) -> None:
    """Refuse an ablation of ``models`` that removes what the wide warm start's regression (and its residual fit),
    fitted on the whole history before training, reads: ``:noevents`` (its counts read the events) and, where
    ``config.history_time_features`` is on, ``:notime`` (its time features read the times). The ablated batches would
    feed it inputs it was never fitted on: a probe's ``:notime`` row under the sparse_logs recipe read a buy AUC of
    0.33, below chance, with verdicts built on it. Without time features ``:notime`` leaves the start's inputs as
    they are, and is kept."""
    removed = {"noevents": True, "notime": bool(getattr(config, "history_time_features", False))}
    ablated = [name for name in models if removed.get(parse_model_name(name)[1] or "", False)]
    if ablated and wide_warm_start:
        raise ValueError(
            f"{', '.join(ablated)}: the ablation removes from the batches part of the history that the wide warm start "
            "(--wide-warm-start, set by the sparse_logs recipe) reads: it fits the ranking on the whole history before "
            "training, then would read the ablated inputs it was never fitted on, and the row would measure nothing. "
            "Compare the ablation without the fitted start (--no-wide-warm-start --wide-share-scale 1 "
            "--no-wide-residual --no-wide-frozen --no-wide-residual-fit --no-freeze-ranking "
            "--no-select-generator-by-loss), or measure what the times give the start with the simple baselines "
            "logreg-shares-times against logreg-shares (--simple)."
        )


class AblatedCollator:
    """The package collator followed by an ablation of the history (same for training and evaluation)."""

    def __init__(self, collator: A2GenDataCollator, ablation: str):
        self.collator = collator
        self.ablate = ABLATIONS[ablation]

    def __call__(self, rows):
        return self.ablate(self.collator(rows))


def parse_model_name(name: str) -> tuple[str, str | None]:
    """``"a2gen-iag:notime"`` -> ``("a2gen-iag", "notime")``; raises with the allowed names."""
    network, colon, ablation = name.partition(":")
    if colon and not ablation:
        raise ValueError(f"{name!r} ends with ':' and names no ablation; use one of {sorted(ABLATIONS)}, or drop the ':'.")
    if network not in MODEL_CHOICES and network not in SIMPLE_BASELINES:
        raise ValueError(
            f"Unknown model {name!r}; networks: {sorted(MODEL_CHOICES)}, simple baselines: {sorted(SIMPLE_BASELINES)}, "
            f"optionally with an ablation ':{'|:'.join(ABLATIONS)}' on a network."
        )
    if ablation and (ablation not in ABLATIONS or network not in MODEL_CHOICES):
        raise ValueError(f"Ablation {ablation!r} in {name!r}: use one of {sorted(ABLATIONS)} on a network.")
    return network, ablation or None


def predict_dataset(
    model, dataset, collator, batch_size: int = 1024, generate: bool = False, num_workers: int = 0
) -> dict[str, np.ndarray]:
    """``predict_actions`` over a dataset in order: probabilities and normalised expected times `(n, V)`
    (:func:`~a2gen_hf.metrics.predict_dataloader`, the package's one prediction loop); with ``generate`` also the
    next action `(n,)` (greedy ``generate()`` for A2Gen, :func:`~a2gen_hf.metrics.predicted_next_actions` for the
    others) and, for A2Gen, the generated sequences. ``num_workers``: processes that collate the batches."""
    loader = DataLoader(collation_rows(dataset), batch_size=batch_size, collate_fn=collator, num_workers=num_workers)
    return predict_dataloader(model, loader, generate=generate, references=False)


def test_references(dataset, collator, batch_size: int = 4096) -> dict[str, np.ndarray]:
    """Labels, label times and masks of every example, padded to the collator's width, the user of each example
    (``group_ids``: GAUC and NDCG@K / Recall@K group by it; the raw user, :func:`user_groups`, where the examples
    have it, else the hashed ``user_ids``), plus oracle columns."""
    parts: dict[str, list[np.ndarray]] = {}
    users = user_groups(dataset)
    for batch in DataLoader(collation_rows(dataset), batch_size=batch_size, collate_fn=collator):
        for name in ("labels", "label_times", "label_time_mask"):
            parts.setdefault(name, []).append(batch[name].numpy())
        if users is None and "user_ids" in batch:
            parts.setdefault("group_ids", []).append(batch["user_ids"].numpy())
    references = {name: np.concatenate(values) for name, values in parts.items()}
    if users is not None:
        references["group_ids"] = users
    for column in ORACLE_COLUMNS:
        if column in dataset.column_names:
            references[column] = np.asarray(dataset[column], dtype=np.float64)
    return references


BOOTSTRAP_UNITS = ("users", "examples")


@dataclass
class ComparisonSettings:
    """How ``a2gen compare`` trains and tests. ``training`` holds the loop's settings (its output_dir is replaced)."""

    models: Sequence[str] = ("a2gen-iag", "a2gen-eag", "mmoe", "ple")
    seeds: int = 3
    simple_baselines: Sequence[str] = ("propensity", "popularity", "logreg", "median-time")
    bootstrap_resamples: int = 1000
    # What the paired bootstrap resamples: "users" (whole users: their examples are not independent) or "examples".
    bootstrap_unit: str = "users"
    training: TrainingSettings | None = None
    model_overrides: dict[str, Any] | None = None
    # Start every network's wide path (model_overrides["wide_path"]) as the logistic regression on counts.
    wide_warm_start: bool = False
    # With wide_warm_start: start A2Gen as the regression (warm_start_wide_path(residual=True)).
    wide_residual: bool = False
    # With wide_residual: keep the regression's coefficients fixed while training (start_from_regression(frozen=True)).
    wide_frozen: bool = False
    # With wide_frozen: fit what the network adds to the regression before training (residual_fit.fit_residual_paths).
    wide_residual_fit: bool = False
    # With wide_warm_start: the regression may also shrink the user propensities this many times less, per action
    # (chosen on validation; 1 = the plain regression; simple_baselines.CountFeatureLogisticRegression).
    wide_share_scale: float = 1.0
    # Start each A2Gen's (item, moment) table from who engaged where in train, then train it ("trainable") or keep it
    # fixed ("frozen"); "off": as initialised (moment_factorization.apply_moment_start).
    moment_warm_start: str = "off"

    def __post_init__(self) -> None:
        if self.bootstrap_resamples < MIN_RESAMPLES:  # before: 1 or 3 resamples gave confident, wrong verdicts
            raise ValueError(
                f"bootstrap_resamples={self.bootstrap_resamples}: a 95 % percentile interval needs at least "
                f"{MIN_RESAMPLES} resamples (with fewer, its 2.5 % and 97.5 % points are the extreme resamples and the "
                "verdicts read off it mean nothing); the default is 1000."
            )
        if self.bootstrap_unit not in BOOTSTRAP_UNITS:
            raise ValueError(f"bootstrap_unit={self.bootstrap_unit!r} is not one of {', '.join(BOOTSTRAP_UNITS)}.")


def run_comparison(data_dir: str | Path, output_dir: str | Path, settings: ComparisonSettings) -> dict[str, Any]:
    """Train and test every model, write ``results.json``, ``results.md`` and ``results.png`` to ``output_dir``.

    The output folder is held for the whole comparison (a second one into it at the same time is refused with
    ``OutputBusyError``). An earlier comparison's results are removed before the first run is trained (a comparison
    stopped part way leaves none to read as current), and its run folders (those compare marked, :data:`RUN_MARKER`)
    that this one does not train again are removed once its results are written, so that ``runs/`` holds exactly the
    runs ``results.json`` describes; other folders there are kept, and one at the name of a run this comparison
    trains is refused before any work.
    """
    output_dir = Path(output_dir)
    existed = output_dir.exists()
    with output_lock(output_dir):
        try:
            return _run_comparison(data_dir, output_dir, settings)
        except BaseException:
            if not existed and output_dir.is_dir() and not any(output_dir.iterdir()):
                output_dir.rmdir()  # a refused comparison leaves no empty folder of its own behind
            raise


def _log_fit_notes(who: str, notes: Sequence[str], logged: set[str]) -> None:
    """Warn of a fit's ``notes`` (e.g. "logreg[buy]: 0 of 1485 validation rows are positive, so no AUC can choose C;
    ..."), each text once (``logged``: those already warned of; the regression baselines note the same splits)."""
    for note in notes:
        if note not in logged:
            logged.add(note)
            logger.warning(f"{who}: {note}")


def _ranked_positives(occurs: np.ndarray, tokenizer) -> dict[str, int]:
    """Per ranked action, the examples of ``occurs`` `(n, V)` (does each action id happen) where it happens."""
    ranked = ranked_actions(tokenizer.action_names, tokenizer.start_action, tokenizer.end_action)
    return {name: int(occurs[:, tokenizer.action_names.index(name) + 1].sum()) for name in ranked}


ONE_CLASS_CONSEQUENCES = {
    "validation": "nothing chosen on validation can read it: the regressions choose its C blind (the middle of "
                  "their grid), and the residual fit and a selection by mean AUC leave it out",
    "test": "its test AUC is undefined (n/a, no bootstrap verdict), and the mean AUC averages over the other actions "
            "only, so it is no figure to compare with a mean over every action (the tables' header says which)",
}


def warn_of_one_class_actions(data_dir, split: str, positives: dict[str, int], examples: int) -> list[str]:
    """Before anything is fitted: warn where the ``split`` (validation or test) of ``examples`` examples holds one
    class only of a ranked action (``positives``: the examples where each happens), e.g. a log whose few buys all
    fall in its training period, saying what that costs. Returns those actions. (:func:`~a2gen_hf.training.
    data_setup.untrained_actions` warns of the training split.)"""
    reasons = undefined_auc_reasons(positives, examples) if examples else {}
    if reasons:
        counts = ", ".join(f"{action} ({positives[action]} of {examples} examples positive)" for action in reasons)
        logger.warning(f"{data_dir}: the {split} split holds one class only of {counts}: "
                       f"{ONE_CLASS_CONSEQUENCES.get(split, 'its AUC there is undefined')}.")  # fmt: skip
    return list(reasons)


# The file compare writes into each of its run folders before training there: the only folders of OUTPUT/runs it
# replaces or removes (a killed compare's too, whose results.json may be missing). Any other folder there is left
# alone, and one at a name this comparison trains is refused before any work.
RUN_MARKER = ".a2gen-compare-run"
RESULTS_FILE, RESULTS_MARKDOWN, RESULTS_PLOT = "results.json", "results.md", "results.png"
PREDICTIONS_FILE = "test_predictions.npz"
RESULT_FILES = (RESULTS_MARKDOWN, PREDICTIONS_FILE, RESULTS_PLOT, RESULTS_FILE)  # in the order they are moved in


def run_folder_name(name: str, seed: int) -> str:
    """The folder of ``OUTPUT/runs`` in which a comparison trains model ``name`` with ``seed``."""
    return f"{name}-seed{seed}"


def _network_runs(models: Sequence[str], seeds: int) -> list[str]:
    """The run folders of the networks among ``models`` (simple baselines train none), ``seeds`` each; names that
    are no model are left out."""
    runs = []
    for name in models:
        try:
            network = parse_model_name(str(name))[0]
        except ValueError:
            continue
        if network in MODEL_CHOICES:
            runs += [run_folder_name(name, seed) for seed in range(seeds)]
    return runs


def _runs_of_an_earlier_results_json(output_dir: Path) -> set[str]:
    """The run folders an earlier ``results.json`` in ``output_dir`` describes (a compare older than
    :data:`RUN_MARKER` marked none); empty where there is none or it cannot be read."""
    try:
        report = json.loads((output_dir / RESULTS_FILE).read_text())
        return set(_network_runs(list(report["models"]), int(report["seeds"])))
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _is_compare_run(path: Path) -> bool:
    return is_marked_run(path, RUN_MARKER)


def _foreign_folder_error(path: Path, output_dir: Path) -> ValueError:
    return foreign_run_error(path, "a2gen compare", "choose another --output")


def _check_and_claim_run_folders(output_dir: Path, planned: Sequence[str]) -> None:
    """Before any work: refuse where a folder of ``OUTPUT/runs`` that compare did not write has the name of one of this
    comparison's runs (nothing of it is replaced), then mark the run folders the earlier ``results.json`` describes
    (written by a compare older than :data:`RUN_MARKER`) as compare's, so that they stay known as compare's once that
    results.json is removed (:func:`~a2gen_hf.training.checkpointing.claim_marked_runs`)."""
    claim_marked_runs(output_dir / "runs", planned, RUN_MARKER, _runs_of_an_earlier_results_json(output_dir),
                      lambda path: _foreign_folder_error(path, output_dir))  # fmt: skip


def _retire_earlier_results(output_dir: Path) -> None:
    """Before the first run folder is replaced: remove the earlier comparison's results (results.json first), so that
    a comparison stopped part way leaves no results that read as those of the runs beside them."""
    removed = []
    for name in (RESULTS_FILE, *RESULT_FILES[:-1]):  # results.json first
        path = output_dir / name
        if path.is_file():
            path.unlink()
            removed.append(name)
    if removed:
        logger.info(f"Removed the earlier comparison's {', '.join(removed)} in {output_dir}: this one replaces them.")


def _start_run_folder(path: Path, output_dir: Path) -> None:
    """Replace an earlier compare's run folder ``path`` (marked :data:`RUN_MARKER`), then mark the new one before
    anything is trained in it; a folder compare did not write is refused (checked before any work too)."""
    start_marked_run(path, RUN_MARKER, lambda: _foreign_folder_error(path, output_dir))


def _remove_runs_of_an_earlier_comparison(runs_dir: Path, trained: set[str]) -> None:
    """Delete the run folders of ``runs_dir`` that an earlier comparison wrote (marked :data:`RUN_MARKER`) and this
    one did not train, naming them; any other folder is kept."""
    if not runs_dir.is_dir():
        return
    stale = sorted(
        path for path in runs_dir.iterdir()
        if path.is_dir() and not path.is_symlink() and path.name not in trained and _is_compare_run(path)
    )  # fmt: skip
    for path in stale:
        shutil.rmtree(path)
    if stale:
        logger.info(f"Removed the runs of an earlier comparison in {runs_dir} that this one did not train: "
                    f"{', '.join(path.name for path in stale)}.")


def _check_result_paths(output_dir: Path) -> None:
    """Before any work: something other than a file (a folder, a link to one) at one of the result files' names
    would stop them from being moved in after every run was trained."""
    for name in RESULT_FILES:
        path = output_dir / name
        if path.is_dir() or path.is_symlink() and not path.is_file():
            raise ValueError(f"{path} is not a file, and the comparison writes its {name} there: move it away, or "
                             "choose another --output.")


def _run_comparison(data_dir: str | Path, output_dir: Path, settings: ComparisonSettings) -> dict[str, Any]:
    _check_and_claim_run_folders(output_dir, _network_runs(settings.models, settings.seeds))  # before any work
    _check_result_paths(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    dataset, tokenizer, metadata = load_data_dir(data_dir)
    if len(dataset.get("test") or []) == 0:  # before anything trains (before: "the dataloader is empty" after it)
        sizes = ", ".join(f"{name} {len(rows)}" for name, rows in dataset.items())
        raise ValueError(
            f"{data_dir}: the test split is empty or missing ({sizes}); a comparison scores every model on it. Prepare "
            "the log with a test split (a2gen prepare --test-fraction above 0; see rules.test_start in a2gen_data.json), "
            "or simulate one (a2gen simulate --test-fraction above 0)."
        )
    base_config = model_config_from_tokenizer(tokenizer, dataset, **(settings.model_overrides or {}))
    collator = A2GenDataCollator.from_config(base_config, tokenizer)
    vocabulary = dict(
        action_names=base_config.action_names,
        start_action=base_config.start_action,
        end_action=base_config.end_action,
        time_log_mean=base_config.time_log_mean,
        time_log_std=base_config.time_log_std,
    )
    training = settings.training or TrainingSettings(output_dir=str(output_dir / "runs"))
    check_wide_start(
        settings.wide_warm_start, settings.wide_residual, settings.wide_frozen, settings.wide_residual_fit,
        settings.wide_share_scale,
    )
    check_start_has_a_wide_path(settings.wide_warm_start, base_config)
    check_ablations_with_the_start(settings.models, settings.wide_warm_start, base_config)
    check_moment_start(base_config, settings.moment_warm_start)
    check_validation_split(data_dir, dataset, settings, tokenizer)
    timed = [name for name in settings.simple_baselines if getattr(SIMPLE_BASELINES.get(name), "reads_times", False)]
    if (base_config.history_time_features and settings.models) or timed:  # before anything trains
        readers = (["the networks (--time-features)"] if base_config.history_time_features and settings.models else [])
        check_session_time_columns(dataset["train"].column_names, f"{data_dir}, read by {' and '.join(readers + timed)},")
        note = coarse_session_times_note(dataset["train"], f"{data_dir}, read by {' and '.join(readers + timed)}")
        if note:
            logger.warning(note)
    references = test_references(dataset["test"], collator)  # collates the test split: after the column checks
    untrained = untrained_actions(data_dir, dataset["train"], base_config, " and their bootstrap rows get no verdict")
    validation_size = len(dataset.get("validation") or [])
    if validation_size:  # as the regressions that choose C on it read it
        validation_occurs = ActionTargets.from_dataset(dataset["validation"], tokenizer).occurs
        warn_of_one_class_actions(data_dir, "validation", _ranked_positives(validation_occurs, tokenizer), validation_size)
    test_occurs = action_targets(references["labels"], None, None, base_config.vocab_size)[0]
    warn_of_one_class_actions(data_dir, "test", _ranked_positives(test_occurs, tokenizer), len(references["labels"]))
    # The networks of --models (a simple baseline may be named there too: it trains no network and is left out).
    networks = [name for name in dict.fromkeys(parse_model_name(name)[0] for name in settings.models)
                if name in MODEL_CHOICES]  # fmt: skip
    if any(MODEL_CHOICES[network][0] is A2GenConfig for network in networks):  # the (item, moment) options are A2Gen's
        warn_of_moments_without_item_times(base_config, metadata, data_dir)
    for network in networks:  # as a2gen train warns, once per network that is not A2Gen
        warn_of_settings_the_model_drops(network, settings.model_overrides)
    regression = None
    logged_notes: set[str] = set()  # what a fit could not do, logged once (every seed's network reuses one regression)
    per_model: dict[str, dict[str, Any]] = {}
    trained_runs: set[str] = set()
    _retire_earlier_results(output_dir)  # every check passed: the earlier results stop reading as current
    for name in [*settings.models, *settings.simple_baselines]:
        network, ablation = parse_model_name(name)
        seed_predictions, seed_metrics = [], []
        seeds = range(settings.seeds) if network in MODEL_CHOICES else range(1)
        for seed in tqdm(seeds, desc=name, leave=False):
            if network in MODEL_CHOICES:
                model_collator = AblatedCollator(collator, ablation) if ablation else collator
                set_seed(seed)
                model = create_model(network, tokenizer, dataset, **(settings.model_overrides or {}))
                # The residual fit and the generator's own selection are A2Gen's (its occurrence head); MMoE and PLE
                # get the rest of the recipe.
                fit_residual = settings.wide_residual_fit and getattr(model, "occurrence_head", None) is not None
                if settings.wide_warm_start:
                    regression = start_from_regression(
                        model, tokenizer, dataset, settings.wide_residual, regression, frozen=settings.wide_frozen,
                        fit_residual=fit_residual, seed=seed, share_scale=settings.wide_share_scale,
                    )
                    # what the regression could not fit, or chose on very few examples (as a2gen train logs them)
                    _log_fit_notes("wide start", regression.notes_, logged_notes)
                apply_moment_start(model, tokenizer, dataset, settings.moment_warm_start)
                # MMoE / PLE (or an A2Gen ranking off the generator's states): one set of weights, one selection
                split_generator = training.select_generator_by_loss and generator_selection_applies(model)
                run_settings = replace(
                    training, output_dir=str(output_dir / "runs" / run_folder_name(name, seed)), seed=seed,
                    select_generator_by_loss=split_generator, freeze_ranking=training.freeze_ranking and split_generator,
                )  # fmt: skip
                if (fit_residual, split_generator) != (settings.wide_residual_fit, training.select_generator_by_loss):
                    logger.info(f"{name}: no occurrence head on the counts alone, so no residual fit and no separate "
                                "generator selection (A2Gen's); the rest of the settings apply")
                # compare owns the runs/ folders it marked: a second compare replaces them, and no other folder
                _start_run_folder(Path(run_settings.output_dir), output_dir)
                trained_runs.add(Path(run_settings.output_dir).name)
                trained = train(model, dataset["train"], model_collator, run_settings, eval_dataset=dataset["validation"])
                if settings.wide_residual:  # what training did not improve on validation goes back to the start
                    give_back_to_the_start(trained.model, tokenizer, dataset, ranking=fit_residual)
                predictions = predict_dataset(
                    trained.model, dataset["test"], model_collator, training.eval_batch_size, generate=True,
                    num_workers=training.dataloader_num_workers,
                )
            else:
                baseline = SIMPLE_BASELINES[network](tokenizer)
                baseline.fit(dataset["train"], validation=dataset["validation"])
                _log_fit_notes(name, getattr(baseline, "notes_", ()), logged_notes)
                predictions = baseline.predict(dataset["test"])
            seed_predictions.append(predictions)
            seed_metrics.append(compute_action_metrics(predictions, references, **vocabulary))
        averaged = {
            key: np.mean([prediction[key] for prediction in seed_predictions], axis=0)
            for key in ("action_probabilities", "expected_times")
        }
        per_model[name] = {"predictions": averaged, "metrics": seed_metrics}

    report = summarize(per_model, references, base_config, settings, metadata)
    if untrained:
        report["untrained_actions"] = untrained
        for rows in report.get("bootstrap", {}).values():  # results.json says what results.md says
            for action in untrained:
                if action in rows and not math.isnan(rows[action]["difference"]):
                    rows[action]["verdict"] = UNTRAINED_VERDICT
    if regression is not None:  # what validation chose for the regression every wide path started from
        report["wide_start_regression"] = {"choices": regression.choices(), "notes": list(regression.notes_)}
    report["settings"] = {
        "data_dir": str(Path(data_dir).resolve()),  # which data folder: results of two can be told apart
        "model_overrides": dict(settings.model_overrides or {}),
        "wide_warm_start": settings.wide_warm_start,
        "wide_residual": settings.wide_residual,
        "wide_frozen": settings.wide_frozen,
        "wide_residual_fit": settings.wide_residual_fit,
        "wide_share_scale": settings.wide_share_scale,
        "moment_warm_start": settings.moment_warm_start,
        "training": {key: value for key, value in asdict(training).items() if key != "output_dir"},
    }
    report["environment"] = environment_record()
    _write_results(output_dir, report, per_model, references)
    _remove_runs_of_an_earlier_comparison(output_dir / "runs", trained_runs)
    return report


RESULTS_STAGING = ".a2gen-compare-results-"


def _write_results(output_dir: Path, report: dict, per_model: dict[str, Any], references: dict[str, np.ndarray]) -> None:
    """Write the comparison's four files (the tables, the predictions, the plot, then ``results.json``) into a work
    folder of ``output_dir`` and move them into place together once all are made, ``results.json`` last, so that a
    comparison stopped while they are made leaves none of them half done or missing beside the others. Where one
    cannot be made (or the run is stopped then), the ones already made are still moved in, ``results.json`` among
    them, and the error goes on: the results are not lost."""
    remove_dead_work_folders(output_dir, RESULTS_STAGING)  # of a comparison killed by a signal
    staging = output_dir / f"{RESULTS_STAGING}{os.getpid()}_{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        write_json_atomically(staging / RESULTS_FILE, report)  # strict JSON: an undefined figure is null
        write_text_atomically(staging / RESULTS_MARKDOWN, format_markdown(report))
        save_test_predictions(staging / PREDICTIONS_FILE, per_model, references)
        plot_comparison(report, staging / RESULTS_PLOT)
    finally:
        failed = []  # each file is moved on its own: one that cannot be keeps none of the others (results.json) out
        for name in RESULT_FILES:
            if (staging / name).is_file():
                try:
                    os.replace(staging / name, output_dir / name)
                except OSError as error:
                    failed.append((name, error))
        if not failed:
            shutil.rmtree(staging, ignore_errors=True)
    if failed:
        names = ", ".join(name for name, _ in failed)
        raise OSError(f"could not move {names} into {output_dir} ({failed[0][1]}); the file(s) stay in {staging} "
                      "until the next comparison in this folder.") from failed[0][1]


ENVIRONMENT_PACKAGES = ("a2gen-hf", "torch", "transformers", "numpy", "scipy", "scikit-learn", "datasets", "pyarrow")


def environment_record() -> dict[str, Any]:
    """What a report's figures may depend on beyond the code and the data: the Python and package versions (a
    regression's choice of C moved the sample's figure between machines once), torch's thread count, the OpenMP
    setting and the load average at the end."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ENVIRONMENT_PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {
        "python": platform.python_version(), "packages": versions, "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "load_average": list(os.getloadavg()),
    }


def check_validation_split(data_dir, dataset, settings: ComparisonSettings, tokenizer) -> None:
    """Before anything trains: refuse an empty (or missing) validation split where the wide start or a simple
    baseline chooses its settings on it, naming them."""
    needing = [name for name in settings.simple_baselines if SIMPLE_BASELINES[name](tokenizer).needs_validation]
    if settings.wide_warm_start:
        needing.insert(0, "the wide start (wide_warm_start: its regression's C)")
    refuse_without_validation(data_dir, dataset, needing)




def save_test_predictions(path: Path, per_model: dict[str, Any], references: dict[str, np.ndarray]) -> None:
    """What the bootstrap read, so that a report can be analysed again without training: each model's seed-averaged
    probabilities `(n, V)` (key ``probabilities/<model>``, ``:`` written ``+``), the labels `(n, T)` and each
    example's user ``group_ids`` `(n,)`. Load with ``numpy.load``."""
    arrays = {f"probabilities/{name.replace(':', '+')}": np.asarray(entry["predictions"]["action_probabilities"],
                                                                      dtype=np.float32)
              for name, entry in per_model.items()}  # fmt: skip
    arrays["labels"] = np.asarray(references["labels"])
    if references.get("group_ids") is not None:
        arrays["group_ids"] = np.asarray(references["group_ids"])
    with replacing_file(path) as temporary, open(temporary, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def bootstrap_groups(references: dict[str, np.ndarray], unit: str) -> np.ndarray | None:
    """The test examples' users for a bootstrap over users, or None (resample examples): asked for, or, with a
    warning, where the references have no users or too few to resample (``statistics.MIN_GROUPS``)."""
    if unit != "users":
        return None
    groups = references.get("group_ids")
    count = 0 if groups is None else len(np.unique(groups))
    if count < MIN_GROUPS:
        logger.warning(f"The test split holds {count} user(s), too few to resample users (at least {MIN_GROUPS}): the "
                       "paired bootstrap resamples examples instead (results.json: bootstrap_unit 'examples'), and a row "
                       f"where fewer than {MIN_CLASS_GROUPS} users hold the action's positives or negatives gets no "
                       "verdict.")
        return None
    return groups


def _spread(values: list[float]) -> dict[str, Any]:
    """Mean and std over seeds, and each seed's value (in seed order) for readers who test their own way."""
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "seeds": [float(value) for value in values]}


def summarize(per_model, references, config: A2GenConfig, settings: ComparisonSettings, metadata) -> dict[str, Any]:
    """Mean ± std over seeds per metric, positive counts, and bootstrap AUC differences against the reference."""
    scored_actions = [
        name for name in config.action_names if name not in (config.start_action, config.end_action)
    ]
    action_ids = [config.action_id(name) for name in scored_actions]
    occurs, _, _ = action_targets(references["labels"], None, None, config.vocab_size)
    first_metrics = next(iter(per_model.values()))["metrics"][0]
    report: dict[str, Any] = {
        "data": {key: metadata.get(key) for key in ("source", "preset", "num_examples") if key in metadata},
        "num_test_examples": int(len(references["labels"])),
        "positives": first_metrics["positives"],
        # the actions every mean_auc below averages over: those whose test AUC is defined (both classes in test)
        "mean_auc_actions": mean_auc_actions(first_metrics["positives"], int(len(references["labels"]))),
        "seeds": settings.seeds,
        "models": {},
        "bootstrap": {},
    }
    for name, entry in per_model.items():
        summary: dict[str, Any] = {}
        for table in SUMMARY_TABLES:
            values = [metrics[table] for metrics in entry["metrics"] if isinstance(metrics.get(table), dict)]
            if values:
                summary[table] = {action: _spread([value[action] for value in values]) for action in values[0]}
        summary["mean_auc"] = _spread([metrics["mean_auc"] for metrics in entry["metrics"]])
        gauc_groups = [metrics["gauc_groups"] for metrics in entry["metrics"] if "gauc_groups" in metrics]
        if gauc_groups:  # the users each GAUC averages over: the test split's, the same on every seed
            summary["gauc_groups"] = dict(gauc_groups[0])
        if all("next_action_accuracy" in metrics for metrics in entry["metrics"]):
            summary["next_action_accuracy"] = _spread([metrics["next_action_accuracy"] for metrics in entry["metrics"]])
        summary["label"] = model_label(name)
        report["models"][name] = summary

    reference = next((name for name in per_model if name.startswith("a2gen")), None)
    if reference is not None and len(per_model) > 1:  # A2Gen alone: nothing to compare, no bootstrap (nor its unit)
        report["bootstrap_reference"] = reference
        groups = bootstrap_groups(references, settings.bootstrap_unit)
        report["bootstrap_unit"] = "examples" if groups is None else "users"
        for name, entry in per_model.items():
            if name == reference:
                continue
            rows = {}
            for action, action_id in zip(scored_actions, action_ids):
                result = bootstrap_row(
                    occurs[:, action_id],
                    per_model[reference]["predictions"]["action_probabilities"][:, action_id],
                    entry["predictions"]["action_probabilities"][:, action_id],
                    settings.bootstrap_resamples, groups, references.get("group_ids"),
                )
                result["verdict"] = verdict(result, reference, name)
                rows[action] = result
            report["bootstrap"][name] = rows
    return report


def bootstrap_row(
    labels: np.ndarray, reference_scores: np.ndarray, scores: np.ndarray, resamples: int, groups: np.ndarray | None,
    users: np.ndarray | None,
) -> dict[str, Any]:
    """One action's paired bootstrap row (reference minus model), resampling ``groups`` (None: examples). Where the
    test examples' ``users`` are known, the row counts the users holding the action's positives and negatives
    whatever was resampled (``positive_users`` / ``negative_users``): a comparison on a few users gets no verdict,
    also when too few users made it resample examples (before: "logistic regression on counts better" from 1 user).
    An action with one class in the test split gets the undefined row."""
    if not has_both_classes(labels):  # e.g. no buy in a small log's test split
        return undefined_auc_difference(labels)
    row = paired_bootstrap_auc_difference(labels, reference_scores, scores, num_resamples=resamples, groups=groups)
    if users is not None:
        row.update(class_group_counts(labels, users))
    return row


def model_label(name: str) -> str:
    """A model's row label: ``"mmoe"`` -> ``"MMoE (paper-style: pooled history items)"``, ``"logreg"`` ->
    ``"logistic regression on counts"``, ``"a2gen-iag:notime"`` -> ``"A2Gen-IAG [ablation: notime]"``."""
    network, _, ablation = name.partition(":")
    label = NETWORK_LABELS.get(network) or BASELINE_LABELS.get(network, network)
    return f"{label} [ablation: {ablation}]" if ablation else label


def _short_label(name: str) -> str:
    """The model's name in a verdict: ``"a2gen-iag"`` -> ``"A2Gen-IAG"``, ``"mmoe-fair"`` -> ``"MMoE fairly fed"``,
    ``"logreg"`` -> ``"logistic regression on counts"``, ``"a2gen-iag:notime"`` -> ``"A2Gen-IAG:notime"``."""
    network, _, ablation = name.partition(":")
    label = model_label(network).split(" (")[0].replace(",", "")
    return f"{label}:{ablation}" if ablation else label


def verdict(row: dict[str, float], reference: str, name: str) -> str:
    """The verdict of one bootstrap row (its 95 % interval ``low``, ``high`` of reference minus ``name``), named
    after the models: ``"A2Gen-IAG better"``, ``"MMoE fairly fed better"``, "no significant difference",
    "undefined: one class only" for the NaN row of an action the test split holds one class of, or "no verdict: ..."
    for a row where too few users hold the action's positives or negatives, whatever was resampled
    (:func:`~a2gen_hf.training.statistics.too_few_class_groups`; its interval is kept, to read as too narrow)."""
    if not math.isnan(row["low"]) and (few := too_few_class_groups(row)) is not None:
        return few
    return significance_label(row["low"], row["high"], _short_label(reference), _short_label(name))


def ranking_markdown_lines(models: dict[str, Any], actions: list[str]) -> list[str]:
    """One Markdown table per recommender metric of :data:`RANKING_TABLES` that the models have (mean ± std over
    seeds), rows = models, columns = actions. The GAUC's headers name the users it averages over (``gauc_groups``,
    where the report has them), and a GAUC over too few reads n/a with its figure (:func:`~a2gen_hf.metrics.gauc_cell`),
    with a note under the table."""
    lines: list[str] = []
    for key, title in RANKING_TABLES:
        if not any(key in summary for summary in models.values()):
            continue
        users = _gauc_users(models) if key == "gauc" else {}
        titles = [f"{title} {a}" + (f" ({users_text(users[a])})" if a in users else "") for a in actions]
        lines += ["", "| model | " + " | ".join(titles) + " |", "| --- " * (len(actions) + 1) + "|"]
        for name, summary in models.items():
            lines.append(f"| {model_label(name)} | " + " | ".join(_ranking_cell(summary, key, a) for a in actions) + " |")
        if any(too_few_gauc_groups(count) for count in users.values()):
            lines += ["", GAUC_NOTE]
    return lines


def _gauc_users(models: dict[str, Any]) -> dict[str, int]:
    """The users each action's GAUC averages over (the first model's ``gauc_groups``: all score the same test
    examples); empty for a report written before they were kept."""
    return next((dict(summary["gauc_groups"]) for summary in models.values() if summary.get("gauc_groups")), {})


def _ranking_cell(summary: dict[str, Any], key: str, action: str) -> str:
    text = _cell(summary.get(key, {}).get(action))
    return gauc_cell(text, summary.get("gauc_groups", {}).get(action)) if key == "gauc" else text


def _cell(value: dict[str, float] | None, digits: int = 4) -> str:
    if not value or value.get("mean") is None or math.isnan(value["mean"]):
        return "n/a"
    if value.get("std") is None or math.isnan(value["std"]):  # one run: no spread (0.0 over seeds is shown)
        return f"{value['mean']:.{digits}f}"
    return f"{value['mean']:.{digits}f} ± {value['std']:.{digits}f}"


def _settings_lines(settings: dict[str, Any] | None) -> list[str]:
    """One line each for the networks' config overrides and training settings, so a table says how it was made."""
    if not settings:
        return []
    training = settings["training"]
    trained = ", ".join(
        f"{key}={training[key]}"
        for key in (
            "num_epochs", "batch_size", "dense_learning_rate", "embedding_learning_rate", "lr_schedule",
            "warmup_steps", "warmup_ratio", "selection_metric", "early_stopping_patience", "early_stopping_min_steps",
            "patience_from_step", "selection_min_delta", "eval_every_steps", "scale_eval_every", "eval_at_epoch_end",
            "select_generator_by_loss", "ema_decay", "ema_every_steps", "ema_warmup",
        )
        if key in training and (not key.startswith("ema_") or training.get("ema_decay") is not None)
    )
    overrides = ", ".join(f"{key}={value}" for key, value in sorted(settings["model_overrides"].items()))
    lines = [f"Networks trained with {trained}.", f"Network options: {overrides or 'the defaults'}."]
    if settings.get("wide_warm_start"):
        starts = ", ".join(
            f"{key}={settings[key]}"
            for key in ("wide_residual", "wide_frozen", "wide_residual_fit", "wide_share_scale")
            if key in settings
        )
        lines.append(f"Wide paths started as the logistic regression on counts: {starts}.")
    return lines


# The parts of the Markdown report, in order (format_markdown's ``sections``; `a2gen report --tables`).
MARKDOWN_SECTIONS = ("summary", "metrics", "ranking", "oracle", "bootstrap")


def format_markdown(report: dict[str, Any], sections: Sequence[str] = MARKDOWN_SECTIONS) -> str:
    """
    The report (``results.json`` of :func:`run_comparison`) as the paper's Tables 1-3 (AUC and MAE per action), plus
    counts, the recommender metrics, the oracle's share and the bootstrap intervals. Rows are labelled and verdicts
    worded from the model names and the saved intervals (:func:`model_label`, :func:`verdict`), so a report saved by
    an older version renders with today's wording. ``sections``: which of :data:`MARKDOWN_SECTIONS` to render.
    """
    unknown = [section for section in sections if section not in MARKDOWN_SECTIONS]
    if unknown:
        raise ValueError(f"Unknown report sections {unknown}; choose from {list(MARKDOWN_SECTIONS)}.")
    models = report["models"]
    actions = list(report["positives"])
    mae_actions = list(next(iter(models.values())).get("mae", {}))
    networks = any(parse_model_name(name)[0] in MODEL_CHOICES for name in models)
    seeds = report["seeds"]
    parts = {
        "summary": lambda: [
            f"Test examples: {report['num_test_examples']}; positives: "
            + ", ".join(f"{action} {count}" for action, count in report["positives"].items())
            + (f"; networks: mean ± std over {seeds} seed{'s' if seeds != 1 else ''}." if networks
               else "; simple baselines only (no network trained)."),
            *([f"Never in the training split, so learned by no model (AUCs at chance, no verdicts): "
               f"{', '.join(report['untrained_actions'])}."] if report.get("untrained_actions") else []),
            *(_settings_lines(report.get("settings")) if networks else []),
        ],
        "metrics": lambda: [*_metric_lines(models, actions, mae_actions, _mean_auc_title(report)),
                            *_next_action_lines(models)],
        "ranking": lambda: ranking_markdown_lines(models, actions),
        "oracle": lambda: _oracle_lines(models, actions),
        "bootstrap": lambda: _bootstrap_lines(report, actions),
    }
    blocks = [lines for lines in (parts[section]() for section in MARKDOWN_SECTIONS if section in sections) if lines]
    return "\n\n".join("\n".join(lines).strip("\n") for lines in blocks) + "\n"


def _mean_auc_title(report: dict[str, Any]) -> str:
    """The mean AUC's column title: "mean AUC", or what it averages over where a test AUC is undefined
    (:func:`~a2gen_hf.metrics.action_metrics.mean_auc_label`, from the report's test positives)."""
    return mean_auc_label(report["positives"], report.get("num_test_examples"), "test")


def _metric_lines(
    models: dict[str, Any], actions: list[str], mae_actions: list[str], mean_auc_title: str = "mean AUC"
) -> list[str]:
    lines = [
        "| model | " + " | ".join(f"AUC {a}" for a in actions) + f" | {mean_auc_title} | "
        + " | ".join(f"MAE {a}" for a in mae_actions) + " |",
        "| --- " * (len(actions) + len(mae_actions) + 2) + "|",
    ]
    for name, summary in models.items():
        auc = summary.get("auc", {})
        mae = summary.get("mae", {})
        lines.append(
            f"| {model_label(name)} | "
            + " | ".join(_cell(auc.get(a)) for a in actions)
            + f" | {_cell(summary['mean_auc'])} | "
            + " | ".join(_cell(mae.get(a)) for a in mae_actions)
            + " |"
        )
    if mae_actions:  # evaluate / demo print seconds ("MAE s"): say which unit this table uses
        lines += ["", "MAE in normalised time units (standardised log1p seconds, docs/design.md); results.json also "
                  "holds it in seconds (mae_seconds)."]
    return lines


def _next_action_lines(models: dict[str, Any]) -> list[str]:
    """The next action after start, right how often (A2Gen: greedy ``generate()``; the others: the earliest likely
    action); reports written before it was measured have none."""
    rows = [(name, summary["next_action_accuracy"]) for name, summary in models.items() if "next_action_accuracy" in summary]
    if not rows:
        return []
    return [
        "",
        "| model | next action right (A2Gen: greedy generate(); others: the earliest action with P >= 0.5) |",
        "| --- | --- |",
        *(f"| {model_label(name)} | {_cell(value)} |" for name, value in rows),
    ]


def _oracle_lines(models: dict[str, Any], actions: list[str]) -> list[str]:
    oracle = {name: s["oracle_auc"] for name, s in models.items() if "oracle_auc" in s}
    if not oracle:
        return []
    first = next(iter(oracle.values()))
    # The oracle's AUC is the same on every seed (the simulator's truth on fixed test examples): its mean alone.
    lines = ["Oracle (simulator ground truth) AUC: " + ", ".join(f"{a} {_cell({'mean': v.get('mean')})}"
                                                             for a, v in first.items())]
    lines += ["", "| model | " + " | ".join(f"share of oracle AUC above 0.5, {a}" for a in actions) + " |"]
    lines += ["| --- " * (len(actions) + 1) + "|"]
    for name, summary in models.items():
        share = summary.get("auc_share_of_oracle", {})
        lines.append(f"| {model_label(name)} | " + " | ".join(_cell(share.get(a), 3) for a in actions) + " |")
    return lines


def _bootstrap_lines(report: dict[str, Any], actions: list[str]) -> list[str]:
    if not report.get("bootstrap"):
        models = report.get("models", {})
        if len(models) < 2 or any(name.startswith("a2gen") for name in models):
            return []
        return ["No paired bootstrap: it compares every model with A2Gen, and no A2Gen model was compared "
                "(add a2gen-iag to --models)."]
    reference = report["bootstrap_reference"]
    lines = [
        f"Paired bootstrap of the AUC difference {_short_label(reference)} minus each model (95 % interval, "
        f"resampling {report.get('bootstrap_unit', 'examples')}, seed-averaged predictions):",  # examples: older reports
        "",
        "| model | " + " | ".join(actions) + " |",
        "| --- " * (len(actions) + 1) + "|",
    ]
    for name, rows in report["bootstrap"].items():
        cells = []
        for action in actions:
            # null: an undefined difference, as NaN (a results.json written as strict JSON)
            row = {key: math.nan if value is None else value for key, value in rows[action].items()}
            if math.isnan(row["difference"]):  # the test split holds one class of the action only
                cells.append(f"n/a ({verdict(row, reference, name)}: {row.get('positives', '?')} of "
                             f"{row.get('examples', '?')} test examples positive)")
                continue
            if action in report.get("untrained_actions", ()):  # no model learned it: a difference, no verdict
                cells.append(f"{row['difference']:+.4f} [{row['low']:+.4f}, {row['high']:+.4f}] {UNTRAINED_VERDICT}")
                continue
            cells.append(f"{row['difference']:+.4f} [{row['low']:+.4f}, {row['high']:+.4f}] "
                         f"{verdict(row, reference, name)}")
        lines.append(f"| {model_label(name)} | " + " | ".join(cells) + " |")
    return lines


def render_report(path: str | Path, sections: Sequence[str] = MARKDOWN_SECTIONS) -> str:
    """The Markdown tables of a saved ``results.json`` (`a2gen report`): :func:`format_markdown` of the file, whose
    structure is checked first (:func:`~a2gen_hf.plotting.check_comparison_report`: a damaged file gets one message
    naming it and the key that is wrong)."""
    report = read_json_file(path, "the results.json that `a2gen compare` wrote")
    check_comparison_report(report, str(path), markdown=True)
    return format_markdown(report, sections)
