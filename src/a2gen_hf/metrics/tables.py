"""Plain-text tables of metric results (of :func:`~a2gen_hf.metrics.compute_action_metrics`), for the CLI and the demo."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from typing import Any

from .action_metrics import (
    MIN_GAUC_GROUPS,
    gauc_is_shown,
    mean_auc_label,
    mean_gauc_label,
    ranking_cut_off_too_large,
    ranking_over_k_cutoff,
)


def _number(value: Any, digits: int) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def display_width(text: str) -> int:
    """The columns ``text`` takes in a terminal: wide (East Asian) characters two, combining marks none."""
    return sum(0 if unicodedata.combining(char) else 2 if unicodedata.east_asian_width(char) in "WF" else 1
               for char in text)  # fmt: skip


def _aligned(rows: list[list[str]]) -> str:
    """Rows of cells -> text columns; the first column left-aligned, the others right-aligned (by the columns each
    cell takes on screen, so that wide action names such as CJK ones keep the columns straight)."""
    widths = [max(display_width(row[i]) for row in rows) for i in range(len(rows[0]))]

    def padded(cell: str, width: int, left: bool) -> str:
        fill = " " * (width - display_width(cell))
        return cell + fill if left else fill + cell

    return "\n".join("  ".join(padded(cell, width, i == 0) for i, (cell, width) in enumerate(zip(row, widths)))
                     for row in rows)  # fmt: skip


def end_action_of(metrics: Mapping[str, Any]) -> str:
    """The end action's name in a result of :func:`compute_action_metrics`: the one action timed (``mae_seconds``)
    but not ranked (``auc``; start is neither), whatever the log calls it (``leave``, ``exit``, ...); ``leave_mae``
    is its time's MAE. ``"end"`` where the result does not tell."""
    timed_only = [name for name in metrics.get("mae_seconds", {}) if name not in metrics.get("auc", {})]
    return timed_only[0] if len(timed_only) == 1 else "end"


def format_metrics_table(results: Mapping[str, Mapping[str, Any]], split: str | None = None) -> str:
    """
    A plain-text table of AUC, positives and timing MAE (seconds) per action for one or more models (results of
    :func:`compute_action_metrics` by model name, on the same examples), with the simulator oracle's columns when
    present. The mean AUC's row says what it averages over where an action's AUC is undefined
    (:func:`~a2gen_hf.metrics.action_metrics.mean_auc_label`; ``split``: the examples' split, named there).
    """
    first = next(iter(results.values()))
    with_oracle = "oracle_auc" in first
    header = ["action", "positives"] + [f"AUC {name}" for name in results] + (["AUC oracle"] if with_oracle else [])
    header += [f"MAE s {name}" for name in results] + (["MAE s oracle"] if with_oracle else [])
    number = _number

    rows = []
    for action in first["auc"]:
        cells = [action, str(first["positives"][action])]
        cells += [number(metrics["auc"][action], 4) for metrics in results.values()]
        cells += [number(first["oracle_auc"][action], 4)] if with_oracle else []
        cells += [number(metrics["mae_seconds"].get(action), 2) for metrics in results.values()]
        cells += [number(first["oracle_mae_seconds"].get(action), 2)] if with_oracle else []
        rows.append(cells)
    blank = [""] * (len(results) + with_oracle)
    end = end_action_of(first)
    rows.append(
        [f"{end} (end of the session)", ""] + blank
        + [number(metrics.get("leave_mae_seconds"), 2) for metrics in results.values()]
        + ([number(first["oracle_mae_seconds"].get(end), 2)] if with_oracle else [])
    )
    rows.append(
        [mean_auc_label(first["positives"], first.get("num_examples"), split), ""]
        + [number(metrics["mean_auc"], 4) for metrics in results.values()]
        + [""] * with_oracle + blank
    )
    return _aligned([header, *rows])


# (result key, column title, digits) of the ranking table; NDCG / Recall columns are added per K found.
RANKING_COLUMNS = (("gauc", "GAUC", 4), ("logloss", "LogLoss", 4), ("calibration", "pred/obs", 3), ("ece", "ECE", 4))
# The ranking table's column of the users each GAUC averages over (gauc_groups), after the GAUC columns.
GAUC_USERS_COLUMN = ("gauc_groups", "GAUC users", 0)
# Under a table with a GAUC over too few users.
GAUC_NOTE = (
    f"GAUC averages the AUC inside each user who holds both classes of the action (the users counted beside it); "
    f"over fewer than "
    f"{MIN_GAUC_GROUPS} such users it reads n/a, with the users and its figure in brackets: a few users' own AUCs "
    "are no average to compare models by."
)


def users_text(count: int) -> str:
    """``1`` -> "1 user", ``3`` -> "3 users"."""
    return f"{count} user{'s' if count != 1 else ''}"


def gauc_cell(text: str, groups: Any) -> str:
    """A GAUC as the tables print it: ``text`` (its figure as printed, e.g. "0.4092" or "0.4092 ± 0.0100") where it
    averages over at least :data:`~a2gen_hf.metrics.action_metrics.MIN_GAUC_GROUPS` users (``groups``: its
    ``gauc_groups``; None where not known, e.g. a report written before they were kept), else "n/a (1 user:
    0.0000)"; an undefined GAUC ("n/a") stays "n/a"."""
    if gauc_is_shown(groups) or text.startswith("n/a"):
        return text
    return f"n/a ({users_text(int(groups))}: {text})"


def too_few_gauc_groups(groups: Any) -> bool:
    """Whether a GAUC over ``groups`` users (None: not known) prints as n/a with its figure (:func:`gauc_cell`; the
    rule is :func:`~a2gen_hf.metrics.action_metrics.gauc_is_shown`, which ``mean_gauc`` reads too)."""
    return groups is not None and groups > 0 and not gauc_is_shown(groups)


def ranking_cut_off_notes(results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """
    Notes for a table of NDCG@K / Recall@K: one per K where, for some action, few of the users averaged over hold
    more than K examples (:func:`~a2gen_hf.metrics.action_metrics.ranking_cut_off_too_large`), with those counts.
    Results without ``ranking_groups_over_K`` (written before it was kept) get none.
    """
    first = next(iter(results.values()))
    notes = []
    for key in first:
        k = ranking_over_k_cutoff(key)
        if k is None:
            continue
        counted = first.get("ranking_groups", {})
        few = [f"{action} {over} of {counted.get(action)}" for action, over in first[key].items()
               if ranking_cut_off_too_large(over, counted.get(action))]  # fmt: skip
        if few:
            notes.append(
                f"NDCG@{k} / Recall@{k}: few users hold more than {k} examples (users with more than {k} of those "
                f"averaged over: {', '.join(few)}); a user with at most {k} has every example in the top {k}, so "
                f"Recall@{k} is 1 and NDCG@{k} the full-list NDCG whatever the model: these columns barely tell "
                "models apart (use a smaller top_k)."
            )
    return notes


def _ranking_cell(metrics: Mapping[str, Any], key: str, action: str, digits: int) -> str:
    value = metrics.get(key, {}).get(action)
    if key == GAUC_USERS_COLUMN[0]:
        return "n/a" if value is None else str(value)
    text = _number(value, digits)
    return gauc_cell(text, metrics.get("gauc_groups", {}).get(action)) if key == "gauc" else text


def format_ranking_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """
    A plain-text table of the recommender metrics per action for one or more models (results of
    :func:`compute_action_metrics` by model name): GAUC, LogLoss, calibration (mean predicted over observed rate),
    ECE and NDCG@K / Recall@K; a metric that no result has (GAUC without group ids) is left out. Beside the GAUC,
    the users it averages over (GAUC users); a GAUC over fewer than
    :data:`~a2gen_hf.metrics.action_metrics.MIN_GAUC_GROUPS` reads n/a with its figure in brackets
    (:func:`gauc_cell`), and a note under the table says why. Where the results hold ``mean_gauc``, a last row gives
    it, named by :func:`~a2gen_hf.metrics.action_metrics.mean_gauc_label` (the actions it averages over: those whose
    GAUC the table shows; the n/a cells and the note say why the others are left out). Where few users hold more than K examples, a note says that NDCG@K / Recall@K barely tell
    models apart (:func:`ranking_cut_off_notes`).
    """
    first = next(iter(results.values()))
    keys = [(key, title, digits) for key, title, digits in RANKING_COLUMNS if key in first]
    if "gauc" in first and GAUC_USERS_COLUMN[0] in first:
        keys.insert(1, GAUC_USERS_COLUMN)
    for key in first:
        for metric, title in (("ndcg_at_", "NDCG@"), ("recall_at_", "Recall@")):
            if key.startswith(metric) and key[len(metric):].isdigit():
                keys.append((key, f"{title}{key[len(metric):]}", 4))
    single = len(results) == 1
    header = ["action"] + [title if single else f"{title} {name}" for _, title, _ in keys for name in results]
    rows = [
        [action] + [_ranking_cell(metrics, key, action, digits) for key, _, digits in keys
                    for metrics in results.values()]
        for action in first["auc"]
    ]
    if "mean_gauc" in first and "gauc_groups" in first:
        rows.append(
            [mean_gauc_label(first["gauc_groups"], reasons=False)]
            + [_number(metrics.get("mean_gauc"), digits) if key == "gauc" else ""
               for key, _, digits in keys for metrics in results.values()]
        )
    thin = any(too_few_gauc_groups(metrics.get("gauc_groups", {}).get(action))
               for metrics in results.values() for action in first["auc"] if "gauc" in metrics)
    notes = ([GAUC_NOTE] if thin else []) + ranking_cut_off_notes(results)
    return _aligned([header, *rows]) + "".join(f"\n{note}" for note in notes)
