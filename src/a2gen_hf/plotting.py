"""Pictures: a timeline in the style of the paper's intro figure, training curves and the model comparison.

Every function writes a PNG with matplotlib's Agg backend (no display needed) and returns the path it wrote.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import warnings
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase  # noqa: E402

from .output_folders import file_output_problem, read_json_file, replacing_file  # noqa: E402

logger = logging.getLogger(__name__)

Timeline = Sequence[tuple[str, float | None]]
PathLike = str | os.PathLike

# The intro figure's colours: start in orange, leave in red; other actions take the palette in order of appearance.
START_COLOR = "#f0a22e"
END_COLOR = "#d62728"
# Height between stacked levels of action names (a name and its marker fit in one level).
LEVEL_STEP = 0.7
PALETTE = ("#4c72b0", "#ed7d1f", "#6aa79a", "#8172b2", "#937860", "#da8bc3", "#55a868", "#8c8c8c")


def output_path(path: PathLike, flag: str = "path") -> Path:
    """The file a picture of ``path`` is written to, checked before anything is drawn: a name without an extension
    gets ``.png`` (as matplotlib writes it), the extension must be a format matplotlib writes, and the path must not
    be a folder nor lie under a file. Raises ValueError naming ``flag`` (e.g. ``--output``) and what to change."""
    path = Path(path)
    if not path.name or path.name in (".", ".."):
        raise ValueError(f"{flag} {str(path)!r} names no file; give a file name such as plot.png.")
    if not path.suffix:
        path = path.with_name(path.name + ".png")
    kind = path.suffix[1:].lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if kind not in formats:
        raise ValueError(f"{flag} {path}: matplotlib writes no {path.suffix!r} files; end the name with one of "
                         f"{', '.join('.' + name for name in sorted(formats))} (e.g. .png).")
    problem = file_output_problem(path, f"plot.{kind}", create_folders=True)  # a missing folder is created
    if problem:
        raise ValueError(f"{flag} {problem}")
    return path


def _save(figure: plt.Figure, path: PathLike) -> Path:
    """Save ``figure`` to :func:`output_path` of ``path`` atomically: to a temporary file beside it, then renamed
    over it, so that a reader never sees half a picture. Returns the path written."""
    try:
        path = output_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing_file(path) as temporary, _without_glyph_warnings():
            figure.savefig(temporary, dpi=150, bbox_inches="tight", format=path.suffix[1:].lower())
    finally:
        plt.close(figure)
    return path


@contextmanager
def _without_glyph_warnings():
    """Drawing without matplotlib's warning per character its font lacks: :func:`warn_of_undrawable_names` says it
    once, naming the actions."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)
        yield


def undrawable_names(names: Sequence[str]) -> list[str]:
    """The ``names`` holding a character the plots' font (matplotlib's default family) has no glyph for: they would
    be drawn with empty boxes (e.g. CJK action names with only DejaVu Sans installed)."""
    from matplotlib.font_manager import FontProperties, findfont, get_font

    font = get_font(findfont(FontProperties()))
    return [name for name in names if any(not char.isspace() and font.get_char_index(ord(char)) == 0 for char in name)]


def warn_of_undrawable_names(names: Sequence[str]) -> None:
    """One warning naming the action names the plots' font cannot draw, and how to get a font that can."""
    missing = undrawable_names(names)
    if missing:
        family = matplotlib.rcParams["font.family"]
        logger.warning(
            f"The action name(s) {missing} hold characters the plots' font ({family}) has no glyph for: they are "
            "drawn as empty boxes. Install a font that has them (e.g. Noto Sans CJK) and name it in "
            "matplotlib.rcParams['font.sans-serif'] (or a matplotlibrc) before plotting."
        )


# Tick labels longer than this are drawn slanted, so that the names of neighbouring groups do not overlap.
LONG_TICK_LABEL = 10


def _check_timeline(timeline: Any, name: str) -> list[tuple[str, float | None]]:
    if isinstance(timeline, (str, bytes)) or not isinstance(timeline, Sequence):
        raise TypeError(f"{name} must be a list of (action, seconds) pairs, got {type(timeline).__name__}.")
    events = []
    for position, event in enumerate(timeline):
        if isinstance(event, (str, bytes)) or not isinstance(event, Sequence) or len(event) != 2:
            raise ValueError(f"{name}[{position}] is {event!r}; each event must be a pair (action, seconds or None).")
        action, seconds = event
        if seconds is not None and not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"{name}[{position}] ({action!r}) is at {seconds!r} s; times must be finite, >= 0 or None.")
        events.append((str(action), None if seconds is None else float(seconds)))
    return events


def _action_colors(rows: Sequence[Sequence[tuple[str, float | None]]], start: str, end: str) -> dict[str, str]:
    colors = {start: START_COLOR, end: END_COLOR}
    others = [action for events in rows for action, _ in events if action not in colors]
    for action in dict.fromkeys(others):
        colors[action] = PALETTE[(len(colors) - 2) % len(PALETTE)]
    return colors


def _stack_levels(
    labels: Sequence[tuple[float, int]], span: float, max_levels: int | None = None
) -> list[int | None]:
    """Level (0 = lowest) of each ``(position, characters)`` label so that labels on one level do not overlap;
    None for a label that fits on none of ``max_levels`` levels."""
    ends: list[float] = []  # right edge of the last label on each level
    levels: list[int | None] = []
    for position, characters in labels:
        half_width = (characters / 2 + 0.5) * 0.011 * span
        level = next((level for level, end in enumerate(ends) if position - half_width > end), len(ends))
        if max_levels is not None and level >= max_levels:
            levels.append(None)
            continue
        if level == len(ends):
            ends.append(position + half_width)
        else:
            ends[level] = position + half_width
        levels.append(level)
    return levels


def _check_probabilities(probabilities: Any) -> dict[str, float]:
    if not isinstance(probabilities, Mapping) or not probabilities:
        raise TypeError("probabilities must be a non-empty {action: P(action happens)} mapping.")
    checked = {}
    for action, value in probabilities.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"probabilities[{action!r}] = {value!r}; each must be a probability in [0, 1].")
        checked[str(action)] = float(value)
    return checked


def _time_labels(timed: Sequence[tuple[str, float]]) -> list[str | None]:
    """The time printed under each timed event: events at the same printed time (e.g. start and a reflex like,
    both at 0s) share one label, printed under the first of them (None for the others)."""
    seen: set[str] = set()
    labels: list[str | None] = []
    for _, seconds in timed:
        text = f"{seconds:.3g}s"
        labels.append(None if text in seen else text)
        seen.add(text)
    return labels


def timeline_figure(
    predicted: Timeline,
    actual: Timeline | None = None,
    title: str | None = None,
    start_action: str = "start",
    end_action: str = "leave",
    probabilities: Mapping[str, float] | None = None,
) -> plt.Figure:
    """The figure that :func:`plot_timeline` saves (same arguments); for notebooks, or to add to it."""
    rows = [("predicted", _check_timeline(predicted, "predicted"))]
    if actual is not None:
        rows.append(("actual", _check_timeline(actual, "actual")))
    probabilities = None if probabilities is None else _check_probabilities(probabilities)
    colors = _action_colors(
        [events for _, events in rows] + ([[(action, None) for action in probabilities]] if probabilities else []),
        start_action, end_action,
    )
    known_times = [seconds for _, events in rows for _, seconds in events if seconds is not None]
    span = max(known_times, default=0.0) or 1.0
    right = span * 1.12

    # A name that would overlap an earlier one goes up a level.
    levels = [_stack_levels([(seconds, len(action)) for action, seconds in events if seconds is not None], span)
              for _, events in rows]
    heights = [1.3 + LEVEL_STEP * max(row_levels, default=0) for row_levels in levels]
    figure_height = 0.75 * sum(height + 1.0 for height in heights) + 0.4
    figure = plt.figure(figsize=(13 if probabilities else 10, max(figure_height, 2.5 if probabilities else 0.0)))
    grid = figure.add_gridspec(
        len(rows), 2 if probabilities else 1, height_ratios=[height + 1.0 for height in heights],
        width_ratios=[3.2, 1] if probabilities else None, wspace=0.25,
    )
    axes = [figure.add_subplot(grid[index, 0]) for index in range(len(rows))]
    for axis, (label, events), row_levels, top in zip(axes, rows, levels, heights):
        axis.set_xlim(-0.22 * span, right + 0.02 * span)
        axis.set_ylim(-1.0, top)
        axis.axis("off")
        axis.annotate(
            "", xy=(right, 0), xytext=(-0.02 * span, 0), arrowprops=dict(arrowstyle="-|>", color="black", lw=1.6)
        )
        axis.text(right, -0.3, "Time", ha="right", va="top", style="italic", fontsize=11)
        axis.text(-0.21 * span, 0, label, ha="left", va="center", fontsize=12, weight="bold")
        timed = [(action, seconds) for action, seconds in events if seconds is not None]
        time_labels = _time_labels(timed)
        # Times of actions crowded together (e.g. 4.87 s and 4.88 s) get two levels; the ones left over are not
        # printed, their names and markers still are.
        printed = [(seconds, len(text)) for (_, seconds), text in zip(timed, time_labels) if text is not None]
        printed_levels = iter(_stack_levels(printed, span, 2))
        time_levels = [None if text is None else next(printed_levels) for text in time_labels]
        for index, ((action, seconds), level) in enumerate(zip(timed, row_levels)):
            color = colors[action]
            marker_height = 0.35 + LEVEL_STEP * level
            axis.plot([seconds, seconds], [0, marker_height], color="black", lw=1.2, zorder=1)
            axis.scatter([seconds], [marker_height], s=110, color=color, edgecolor="black", zorder=2)
            axis.text(seconds, marker_height + 0.18, action, ha="center", va="bottom", fontsize=10, color=color,
                      weight="bold" if action in (start_action, end_action) else "normal")
            if time_levels[index] is not None:
                axis.text(seconds, -0.15 - 0.35 * time_levels[index], time_labels[index], ha="center", va="top",
                          fontsize=9)
        unknown = [action for action, seconds in events if seconds is None]
        if unknown:
            axis.text(right, top - 0.2, "time unknown: " + ", ".join(unknown), ha="right", va="center", fontsize=9,
                      color="dimgray")
    if probabilities:
        bars = figure.add_subplot(grid[:, 1])
        names = list(probabilities)[::-1]  # first action on top
        values = [probabilities[name] for name in names]
        bars.barh(names, values, color=[colors[name] for name in names], edgecolor="black", height=0.6)
        for position, value in enumerate(values):
            inside = value > 0.8
            bars.text(value - 0.02 if inside else value + 0.02, position, f"{value:.2f}", va="center", fontsize=9,
                      ha="right" if inside else "left", color="white" if inside else "black")
        bars.set_xlim(0, 1)
        bars.set_xlabel("probability")
        bars.set_title("P(action happens)", fontsize=11)
        bars.spines[["top", "right"]].set_visible(False)
    default = ("Predicted (greedy) vs actual timeline" if probabilities else "Predicted vs actual timeline") if (
        actual is not None) else ("Predicted (greedy) timeline" if probabilities else "Predicted timeline")
    figure.suptitle(title if title is not None else default, fontsize=12)
    return figure


def ranked_action_probabilities(config, scores) -> dict[str, float]:
    """``{action: P(action happens)}`` for the plot's probability panel, from one row of ``predict_actions``'
    ``action_probabilities`` `(V,)` (the start and end actions, which every sequence has, are left out)."""
    return {
        name: float(scores[config.action_id(name)])
        for name in config.action_names
        if name not in (config.start_action, config.end_action)
    }


def plot_timeline(
    predicted: Timeline,
    actual: Timeline | None = None,
    path: PathLike = "timeline.png",
    title: str | None = None,
    start_action: str = "start",
    end_action: str = "leave",
    probabilities: Mapping[str, float] | None = None,
) -> Path:
    """
    Draw timelines as the paper's intro figure does: a horizontal time axis per row, one marker per action at its
    time with the action's name above and the time below, the start action in orange and the end action in red.

    Args:
        predicted: ``[(action, seconds), ...]`` as :meth:`A2GenActionTokenizer.decode_timeline` returns it (e.g.
            the greedy generation).
        actual: the true timeline, drawn as a second row under the prediction.
        path: the PNG to write.
        title: the title above the rows (e.g. the user and item); default "Predicted vs actual timeline" (or
            "Predicted timeline").
        start_action / end_action: the actions drawn in orange / red.
        probabilities: ``{action: P(action happens)}`` (e.g. ``predict_actions``' action_probabilities by name),
            drawn as bars beside the timelines: what the single greedy timeline does not show.

    Actions whose time is unknown (None) are listed at the right end of their row ("time unknown: ..."). Events at
    the same printed time share one time label; names that would overlap are stacked.

    Returns:
        `Path` of the PNG.
    """
    figure = timeline_figure(predicted, actual, title, start_action, end_action, probabilities)
    names = [str(action) for timeline in (predicted, actual or []) for action, _ in timeline]
    warn_of_undrawable_names(list(dict.fromkeys([*names, *(probabilities or {})])))
    return _save(figure, path)


def _load_json(source: Any, what: str, infinity: bool = False) -> Any:
    """The content of ``source``: a path read by :func:`read_json_file` (``infinity``: ``Infinity`` read as inf, for
    training logs), or the object itself."""
    if isinstance(source, (str, os.PathLike)):
        return read_json_file(source, f"the JSON file of the {what}", infinity=infinity)
    return source


def _source_name(source: Any, what: str) -> str:
    """How messages name the input: the path given, or ``what`` for an object passed in."""
    return str(source) if isinstance(source, (str, os.PathLike)) else what


def _type_name(value: Any) -> str:
    return "null" if value is None else "a bool" if isinstance(value, bool) else type(value).__name__


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


CELL = '{"mean": number, "std": number}'


# What a figure of a results.json is, for the tables and cells whose values have bounds: rates, which lie in [0, 1],
# and errors, ratios and losses, which are never negative (but may exceed 1). auc_share_of_oracle has no bounds (a
# model below chance has a negative share, one above the oracle on a finite split a share above 1).
RATE_FIGURES = {
    "auc": "an AUC", "oracle_auc": "an AUC", "gauc": "a GAUC", "ndcg_at_10": "an NDCG", "recall_at_10": "a recall",
    "mean_auc": "a mean AUC", "next_action_accuracy": "an accuracy",
}
NONNEGATIVE_FIGURES = {
    "mae": "an MAE", "mae_seconds": "an MAE", "mae_nonzero": "an MAE", "mae_seconds_nonzero": "an MAE",
    "logloss": "a log loss", "calibration": "a ratio of predicted to observed positives",
}
RESTORE = "give the figure a2gen compare wrote (compare again if it is lost), or null where it is not measured"


def _check_cell(cell: Any, where: str, source: str, kind: str | None = None) -> None:
    """A ``{"mean": .., "std": ..}`` summary cell; each number may be null (or NaN): not measured. A std is never
    negative; ``kind`` (a key of :data:`RATE_FIGURES` / :data:`NONNEGATIVE_FIGURES`) bounds the mean too."""
    if not isinstance(cell, Mapping):
        raise ValueError(f"{source}: {where} must be a mapping {CELL}, got {_type_name(cell)}.")
    for key in ("mean", "std"):
        value = cell.get(key)
        if value is not None and not _is_number(value):
            raise ValueError(f"{source}: {where}.{key} must be a number or null, got {_type_name(value)}.")
    mean, std = cell.get("mean"), cell.get("std")
    if std is not None and std < 0:  # NaN compares False: undefined, allowed
        raise ValueError(f"{source}: {where}.std is {std!r}; a standard deviation is never negative: {RESTORE}.")
    if mean is None or math.isnan(mean):
        return
    if kind in RATE_FIGURES and not 0.0 <= mean <= 1.0:
        raise ValueError(f"{source}: {where}.mean is {mean!r}; {RATE_FIGURES[kind]} lies in [0, 1]: {RESTORE}.")
    if kind in NONNEGATIVE_FIGURES and mean < 0:
        raise ValueError(f"{source}: {where}.mean is {mean!r}; {NONNEGATIVE_FIGURES[kind]} is never negative: "
                         f"{RESTORE}.")


def _check_table(table: Any, where: str, source: str, kind: str | None = None) -> None:
    if not isinstance(table, Mapping):
        raise ValueError(f"{source}: {where} must be a mapping of action -> {CELL}, got {_type_name(table)}.")
    for action, cell in table.items():
        _check_cell(cell, f"{where}.{action}", source, kind)


def _check_counts(table: Any, where: str, source: str) -> None:
    """A ``{action: count}`` table (e.g. the users each GAUC averages over): whole numbers, never negative."""
    if not isinstance(table, Mapping):
        raise ValueError(f"{source}: {where} must be a mapping of action -> count, got {_type_name(table)}.")
    for action, count in table.items():
        if not (_is_number(count) and float(count).is_integer() and count >= 0):
            raise ValueError(f"{source}: {where}.{action} is {count!r}; a count is a whole number >= 0: {RESTORE}.")


# The per-action tables of a model in results.json (a2gen compare writes them, check_comparison_report checks them)
# and its single cells.
SUMMARY_TABLES = (
    "auc", "mae", "mae_seconds", "mae_nonzero", "mae_seconds_nonzero", "oracle_auc", "auc_share_of_oracle"
)
# The recommender metrics (compute_action_metrics), summarised and tabled like the AUC: (key, column title).
RANKING_TABLES = (
    ("gauc", "GAUC"), ("logloss", "LogLoss"), ("calibration", "pred/obs"), ("ndcg_at_10", "NDCG@10"),
    ("recall_at_10", "Recall@10"),
)
SUMMARY_TABLES += tuple(key for key, _ in RANKING_TABLES)
MODEL_CELLS = ("mean_auc", "next_action_accuracy")


def check_comparison_report(report: Any, source: str = "comparison results", markdown: bool = False) -> None:
    """
    Check the structure of ``a2gen compare``'s ``results.json`` (or its dict) before anything reads it, so that a
    damaged file gets one message naming the file (``source``) and the key path that is wrong, e.g.
    ``results.json: models.mmoe.auc must be a mapping of action -> {"mean": number, "std": number}, got list``.
    ``markdown``: also require what the Markdown tables need (positives, counts, mean_auc). Whatever the report
    holds is checked either way, the parts a plot does not draw too (positives against the test examples, per-seed
    lists against ``seeds``, the bootstrap rows, the settings), so that ``a2gen report`` and ``a2gen plot
    comparison`` refuse the same self-contradicting file (a bootstrap row's ``p_value`` and AUCs outside [0, 1], or
    a ``difference`` that is not ``auc_a - auc_b``, included). Raises ValueError.
    """
    if not isinstance(report, Mapping):
        raise ValueError(f"{source} must hold the JSON object a2gen compare writes "
                         f'({{"models": {{...}}, ...}}), got {_type_name(report)}.')
    if markdown:
        missing = [key for key in ("models", "positives", "num_test_examples", "seeds") if key not in report]
        if missing:
            raise ValueError(f"{source} is not a results.json of `a2gen compare`: it lacks {missing}.")
    models = report.get("models")
    if not isinstance(models, Mapping) or not models:
        got = f"an empty {type(models).__name__}" if isinstance(models, (Mapping, list)) and not models else (
            _type_name(models))
        raise ValueError(f'{source} needs a non-empty "models" mapping of model name -> tables '
                         f'({{"models": {{name: {{"auc": {{...}}}}}}}}); got {got}.')
    for name, summary in models.items():
        where = f"models.{name}"
        if not isinstance(summary, Mapping):
            raise ValueError(f"{source}: {where} must be a mapping of table name -> table, got {_type_name(summary)}.")
        for table in SUMMARY_TABLES:
            if table in summary:
                _check_table(summary[table], f"{where}.{table}", source, table)
        for cell in MODEL_CELLS:
            if cell in summary:
                _check_cell(summary[cell], f"{where}.{cell}", source, cell)
        if "gauc_groups" in summary:
            _check_counts(summary["gauc_groups"], f"{where}.gauc_groups", source)
        if "label" in summary and not isinstance(summary["label"], str):
            raise ValueError(f"{source}: {where}.label must be a string, got {_type_name(summary['label'])}.")
        if markdown and "mean_auc" not in summary:
            raise ValueError(f"{source}: {where} lacks mean_auc ({CELL}).")
    positives = report.get("positives", {})
    if not isinstance(positives, Mapping):
        raise ValueError(f"{source}: positives must be a mapping of action -> count, got {_type_name(positives)}.")
    for action, count in positives.items():
        if not _is_number(count):
            raise ValueError(f"{source}: positives.{action} must be a count, got {_type_name(count)}.")
    for key in ("num_test_examples", "seeds"):
        if key in report and not _is_number(report[key]):
            raise ValueError(f"{source}: {key} must be a number, got {_type_name(report[key])}.")
    if "num_test_examples" in report and "seeds" in report:
        _check_consistent(report, models, positives, source)
    untrained = report.get("untrained_actions", [])
    if not isinstance(untrained, list) or not all(isinstance(action, str) for action in untrained):
        raise ValueError(f"{source}: untrained_actions must be a list of action names, got {_type_name(untrained)}.")
    bootstrap = report.get("bootstrap")
    if bootstrap:
        if not isinstance(bootstrap, Mapping):
            raise ValueError(f"{source}: bootstrap must be a mapping of model name -> {{action: row}}, got "
                             f"{_type_name(bootstrap)}.")
        reference = report.get("bootstrap_reference")
        if not isinstance(reference, str):
            raise ValueError(f"{source}: bootstrap_reference must name the model the bootstrap rows compare with, "
                             f"got {_type_name(reference)}.")
        if reference not in models:
            raise ValueError(f"{source}: bootstrap_reference {reference!r} is no model of models; it must be the one "
                             f"the bootstrap rows compare with, one of {', '.join(map(repr, models))}.")
        for name, rows in bootstrap.items():
            if name not in models:
                raise ValueError(f"{source}: bootstrap.{name} compares a model that models does not hold (one of "
                                 f"{', '.join(map(repr, models))}): {RESTORE}.")
            if not isinstance(rows, Mapping):
                raise ValueError(f"{source}: bootstrap.{name} must be a mapping of action -> row, got "
                                 f"{_type_name(rows)}.")
            for action in positives or rows:
                row = rows.get(action)
                where = f"bootstrap.{name}.{action}"
                if not isinstance(row, Mapping):
                    raise ValueError(f"{source}: {where} must be a mapping "
                                     f'{{"difference": .., "low": .., "high": ..}}, got {_type_name(row)}.')
                for key in ("difference", "low", "high"):
                    if key not in row:
                        raise ValueError(f"{source}: {where} lacks {key!r} (a number, or null where undefined).")
                    if row[key] is not None and not _is_number(row[key]):
                        raise ValueError(f"{source}: {where}.{key} must be a number or null, got "
                                         f"{_type_name(row[key])}.")
                for key in ("difference", "low", "high"):  # of two AUCs: in [-1, 1]; NaN, as null, not measured
                    if _is_number(row[key]) and not math.isnan(row[key]) and not -1.0 <= row[key] <= 1.0:
                        raise ValueError(f"{source}: {where}.{key} is {row[key]!r}; a difference of two AUCs lies in "
                                         f"[-1, 1]: {RESTORE}.")
                low, high = row["low"], row["high"]
                if _is_number(low) and _is_number(high) and low > high:
                    raise ValueError(f"{source}: {where} has low {low} above high {high}; the interval is reversed.")
                for key in ("p_value", "auc_a", "auc_b"):  # optional: rows of older reports lack them
                    value = row.get(key)
                    if value is not None and not _is_number(value):
                        raise ValueError(f"{source}: {where}.{key} must be a number or null, got {_type_name(value)}.")
                    if _is_number(value) and not math.isnan(value) and not 0.0 <= value <= 1.0:
                        what = "a p-value" if key == "p_value" else "an AUC"
                        raise ValueError(f"{source}: {where}.{key} is {value!r}; {what} lies in [0, 1]: {RESTORE}.")
                # The difference is auc_a - auc_b, the reference's AUC minus the model's (as floats: to rounding).
                figures = [row.get(key) for key in ("difference", "auc_a", "auc_b")]
                if all(_is_number(value) and math.isfinite(value) for value in figures):
                    difference, auc_a, auc_b = figures
                    if abs(difference - (auc_a - auc_b)) > 1e-9:
                        raise ValueError(f"{source}: {where}.difference is {difference!r} but auc_a - auc_b is "
                                         f"{auc_a - auc_b!r} ({auc_a!r} - {auc_b!r}); the difference is the one "
                                         f"minus the other: {RESTORE}.")
    settings = report.get("settings")
    if settings:
        if not isinstance(settings, Mapping):
            raise ValueError(f"{source}: settings must be a mapping, got {_type_name(settings)}.")
        for key in ("training", "model_overrides"):
            if not isinstance(settings.get(key), Mapping):
                raise ValueError(f"{source}: settings.{key} must be a mapping, got {_type_name(settings.get(key))}.")


def _check_consistent(report: Mapping, models: Mapping, positives: Mapping, source: str) -> None:
    """What one results.json says twice must agree (a hand edit or a damaged file made tables that contradict
    themselves, shown without a word): positives between 0 and the test examples, which are at least 1, and every
    per-seed list as long as ``seeds`` (or of one value: a simple baseline is fitted once)."""
    examples, seeds = report["num_test_examples"], report["seeds"]
    if examples < 1 or seeds < 1 or examples != int(examples) or seeds != int(seeds):
        raise ValueError(f"{source}: num_test_examples {examples!r} and seeds {seeds!r} must be whole numbers of at "
                         f"least 1: {RESTORE}.")
    for action, count in positives.items():
        if not 0 <= count <= examples:
            raise ValueError(f"{source}: positives.{action} is {count!r}, outside 0 to the {examples} test examples: "
                             f"{RESTORE}.")
    for name, summary in models.items():
        for table in SUMMARY_TABLES:
            cells = summary.get(table)
            for action, cell in (cells.items() if isinstance(cells, Mapping) else ()):
                values = cell.get("seeds") if isinstance(cell, Mapping) else None
                if isinstance(values, list) and len(values) not in (1, seeds):  # 1: a simple baseline, fitted once
                    raise ValueError(f"{source}: models.{name}.{table}.{action}.seeds holds {len(values)} values where "
                                     f"seeds says {seeds:g} (a simple baseline holds 1): {RESTORE}.")


def training_curves(log: Any) -> dict[str, tuple[list[float], list[float]]]:
    """
    ``{"training loss": (steps, values), "validation loss": (steps, values)}`` from a log: a path to, or the content
    of, a Trainer ``trainer_state.json`` or the Accelerate loop's ``training_log.json`` (both hold ``log_history``),
    or the ``log_history`` list itself. Trainer names the validation loss ``eval_loss``, the loop
    ``validation_loss``; Trainer's closing summary (``train_loss``) is not a point of the curve.

    Both writers use plain ``json.dumps``, so a run whose loss or gradient overflowed holds ``Infinity`` (``NaN``):
    such a log is read, a loss that is not finite is left out of its curve, and a warning says how many points were
    (a curve without a finite point is not drawn). Only when no loss at all is finite is the log refused.
    """
    content = _load_json(log, "training log", infinity=True)  # Infinity: a fact of a diverging run, not a hand edit
    source = _source_name(log, "training log")
    history = content.get("log_history") if isinstance(content, Mapping) else content
    if not isinstance(history, list):
        raise ValueError(
            f'{source}: a training log is trainer_state.json / training_log.json ({{"log_history": [...]}}) or its '
            f"log_history list; got {_type_name(content)} without a log_history list."
        )
    curves: dict[str, tuple[list[float], list[float]]] = {}
    left_out: dict[str, list[float]] = {}  # per curve, the values that are not finite
    for position, entry in enumerate(history):
        if not isinstance(entry, Mapping) or "step" not in entry:
            raise ValueError(f"{source}: log_history[{position}] is {entry!r}; each entry needs a 'step'.")
        for key in ("step", "loss", "eval_loss", "validation_loss"):
            if key in entry and not _is_number(entry[key]):
                raise ValueError(f"{source}: log_history[{position}].{key} must be a number, got "
                                 f"{_type_name(entry[key])}.")
        if not math.isfinite(entry["step"]):
            raise ValueError(f"{source}: log_history[{position}].step is {_json_literal(entry['step'])}; a step must "
                             "be a finite number (the optimisation step the entry was logged at).")
        for key, name in (("loss", "training loss"), ("eval_loss", "validation loss"), ("validation_loss", "validation loss")):
            if key in entry:
                steps, values = curves.setdefault(name, ([], []))
                if math.isfinite(entry[key]):
                    steps.append(float(entry["step"]))
                    values.append(float(entry[key]))
                else:
                    left_out.setdefault(name, []).append(float(entry[key]))
    if not curves:
        raise ValueError(
            "The training log has no 'loss', 'eval_loss' or 'validation_loss' entries to plot; was logging enabled "
            "(logging_steps / log_every)?"
        )
    if not any(steps for steps, _ in curves.values()):
        raise ValueError(
            f"{source}: no loss in the log is finite ({_left_out_counts(curves, left_out)}): the run diverged or "
            "overflowed from its first logged step, so there is no curve to plot. Train again with a lower learning "
            "rate (or, with fp16, a working loss scale)."
        )
    if left_out:
        logger.warning(
            f"{source}: {_left_out_counts(curves, left_out)}; "
            + "; ".join(f"the {name} curve is drawn from its {_points(len(curves[name][0]), 'finite ')}" if curves[name][0] else
                        f"the {name} curve is not drawn" for name in left_out)
            + " (the loss overflowed there: the run diverged, or fp16 training was still finding its loss scale)."
        )
    return {name: curve for name, curve in curves.items() if curve[0]}


def _points(count: int, kind: str = "") -> str:
    return f"{count} {kind}point{'s' if count != 1 else ''}"


def _json_literal(value: float) -> str:
    """How ``json.dumps`` writes a number that is not finite (``Infinity``, ``-Infinity``, ``NaN``), else repr."""
    return "NaN" if math.isnan(value) else "Infinity" if value == math.inf else "-Infinity" if value == -math.inf else (
        repr(value))


def _left_out_counts(curves: Mapping[str, tuple[list[float], list[float]]], left_out: Mapping[str, list[float]]) -> str:
    """E.g. "2 of 5 training loss points are not finite (Infinity, NaN)"."""
    return "; ".join(
        f"{len(values)} of {len(values) + len(curves[name][0])} {name} points "
        f"{'is' if len(values) == 1 else 'are'} not finite "
        f"({', '.join(dict.fromkeys(_json_literal(value) for value in values))})"
        for name, values in left_out.items()
    )


def plot_training_curves(log: Any, path: PathLike = "training_curves.png", title: str | None = None) -> Path:
    """Training and validation loss against the optimisation step; ``log`` as :func:`training_curves` reads it."""
    curves = training_curves(log)
    figure, axis = plt.subplots(figsize=(7, 4))
    for (name, (steps, values)), color in zip(curves.items(), ("#4c72b0", "#d62728")):
        axis.plot(steps, values, marker="o" if len(steps) <= 30 else None, ms=4, label=name, color=color)
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.grid(alpha=0.3)
    axis.legend()
    axis.set_title(title or "Training curves")
    with _without_glyph_warnings():
        figure.tight_layout()
    return _save(figure, path)


def _summary_value(cell: Any) -> tuple[float, float]:
    """(mean, std) of a ``{"mean": .., "std": ..}`` cell; NaN where absent."""
    if not isinstance(cell, Mapping):
        return math.nan, math.nan
    mean, std = cell.get("mean"), cell.get("std")
    return (math.nan if mean is None else float(mean)), (0.0 if std is None or math.isnan(std) else float(std))


# How the comparison plot marks an action that never happens in the training split (results.json's
# untrained_actions): its bars hatched, and this note under its name and in the legend.
UNTRAINED_HATCH = "//"
UNTRAINED_NOTE = "never in training"


def _grouped_bars(
    axis: plt.Axes, models: Mapping[str, Any], table: str, baseline: float, untrained: Sequence[str] = ()
) -> list[str]:
    """Bars of ``table`` per action (groups) and model; the bars of the ``untrained`` actions hatched, and
    :data:`UNTRAINED_NOTE` under their names."""
    actions = list(dict.fromkeys(action for summary in models.values() for action in summary.get(table, {})))
    width = 0.8 / max(len(models), 1)
    positions = np.arange(len(actions))
    for index, (name, summary) in enumerate(models.items()):
        values = [_summary_value(summary.get(table, {}).get(action)) for action in actions]
        means = np.array([mean for mean, _ in values])
        stds = np.array([std for _, std in values])
        bars = axis.bar(
            positions + (index - (len(models) - 1) / 2) * width,
            means - baseline,
            width,
            bottom=baseline,
            yerr=stds,
            capsize=3,
            label=summary.get("label", name),
            color=PALETTE[index % len(PALETTE)],
        )
        for bar, action in zip(bars.patches, actions):
            if action in untrained:
                bar.set_hatch(UNTRAINED_HATCH)
                bar.set_edgecolor("black")
        for position in np.flatnonzero(np.isnan(means)):
            axis.text(positions[position] + (index - (len(models) - 1) / 2) * width, baseline, "n/a", ha="center",
                      va="bottom", fontsize=8, rotation=90)
    axis.set_xticks(positions, [f"{action}\n({UNTRAINED_NOTE})" if action in untrained else action for action in actions])
    if any(len(action) > LONG_TICK_LABEL for action in actions):
        axis.tick_params(axis="x", labelrotation=25)
        for label in axis.get_xticklabels():
            label.set_horizontalalignment("right")
    if len(actions):  # every group inside the axes, also one of bars without a value (only "n/a" marks there)
        axis.set_xlim(-0.5, len(actions) - 0.5)
    axis.grid(axis="y", alpha=0.3)
    return actions


def _untrained_legend_handle() -> matplotlib.patches.Patch:
    """The legend's entry for the hatched bars of an action no model learned (its AUC at chance, or what a model made
    of all-negative labels)."""
    return matplotlib.patches.Patch(facecolor="white", edgecolor="black", hatch=UNTRAINED_HATCH,
                                    label=f"hatched: {UNTRAINED_NOTE}")


def plot_comparison(results: Any, path: PathLike = "results.png", title: str | None = None) -> Path:
    """
    Bar charts of the comparison report (``a2gen compare``'s ``results.json``, or its dict): action AUC per action
    and model with mean ± std over seeds as error bars, bars rising from chance (0.5), the simulator's oracle AUC as
    black marks when the report has it; and, when the report has ``mae``, timing MAE per action beside it.

    Format: ``{"models": {name: {"label": "...", "auc": {action: {"mean": .., "std": ..}}, "mae": {...},
    "oracle_auc": {...}}}, "untrained_actions": [...]}``; ``label``, ``mae``, ``oracle_auc`` and
    ``untrained_actions`` are optional, a missing or NaN mean draws no bar. The bars of an untrained action (never in
    the training split, so learned by no model) are hatched and noted "never in training".
    """
    return _save(comparison_figure(results, title), path)


def comparison_figure(results: Any, title: str | None = None) -> plt.Figure:
    """The figure that :func:`plot_comparison` saves (same arguments); for notebooks, or to add to it. The actions
    of the report's ``untrained_actions`` (never in the training split) have hatched bars, noted "never in
    training" under their names and in the legend."""
    report = _load_json(results, "comparison results")
    check_comparison_report(report, _source_name(results, "comparison results"))
    models = report["models"]
    if not any(summary.get("auc") for summary in models.values()):
        raise ValueError('No model of the comparison results has an "auc" table {action: {"mean": .., "std": ..}}.')
    untrained = report.get("untrained_actions", [])
    has_mae = any(summary.get("mae") for summary in models.values())
    figure, axes = plt.subplots(1, 2 if has_mae else 1, figsize=(13 if has_mae else 7.5, 4.5), squeeze=False)
    auc_axis = axes[0, 0]
    actions = _grouped_bars(auc_axis, models, "auc", baseline=0.5, untrained=untrained)
    warn_of_undrawable_names(actions)
    oracle = next((summary["oracle_auc"] for summary in models.values() if summary.get("oracle_auc")), None)
    if oracle:
        for position, action in enumerate(actions):
            mean, _ = _summary_value(oracle.get(action))
            auc_axis.hlines(mean, position - 0.42, position + 0.42, colors="black", linestyles="--",
                            label="oracle" if position == 0 else None)
    auc_axis.axhline(0.5, color="gray", lw=0.8)
    auc_axis.set_ylabel("AUC (bars from chance, 0.5)")
    auc_axis.set_title("Action AUC, mean ± std over seeds")
    handles, _ = auc_axis.get_legend_handles_labels()
    noted = any(action in untrained for action in actions)  # its tick label takes a second line: the legend lower
    if noted:
        handles.append(_untrained_legend_handle())
    auc_axis.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.17 if noted else -0.1),
                    ncol=min(len(handles), 3))
    if has_mae:
        mae_axis = axes[0, 1]
        _grouped_bars(mae_axis, models, "mae", baseline=0.0, untrained=untrained)
        mae_axis.set_ylabel("MAE (normalised time)")
        mae_axis.set_title("Timing MAE, mean ± std over seeds (lower is better)")
    if title:
        figure.suptitle(title)
    with _without_glyph_warnings():
        figure.tight_layout()
    return figure


def plot_learning_curve(report: Any, path: PathLike = "learning_curve.png", title: str | None = None) -> Path:
    """
    Mean AUC against the number of training examples (log x axis), one line per model with mean ± std over seeds
    as error bars, and the simulator's oracle as a dashed horizontal line (benchmarks/learning_curve.py).

    Format: ``{"sizes": [n, ...], "curves": {name: {"label": "...", "points": {str(n): {"test_mean_auc":
    {"mean": .., "std": ..}}}}}, "oracle": {"mean_auc": float}, "actions": [name, ...]}``; ``label``, ``oracle`` and
    ``actions`` (the actions the mean covers, named on the y axis) are optional, a size a model lacks draws no point.
    """
    report = _load_json(report, "learning-curve report")
    curves = report.get("curves") if isinstance(report, Mapping) else None
    sizes = report.get("sizes") if isinstance(report, Mapping) else None
    if not isinstance(curves, Mapping) or not curves or not sizes:
        raise ValueError('A learning-curve report needs "sizes" [n, ...] and a non-empty "curves" {name: {"points": {...}}}.')
    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    for index, (name, curve) in enumerate(curves.items()):
        points = curve.get("points", {})
        present = [size for size in sizes if str(size) in points]
        values = [_summary_value(points[str(size)].get("test_mean_auc")) for size in present]
        axis.errorbar(present, [mean for mean, _ in values], yerr=[std for _, std in values], marker="o", ms=4,
                      capsize=3, label=curve.get("label", name), color=PALETTE[index % len(PALETTE)])
    oracle = report.get("oracle", {}).get("mean_auc") if isinstance(report.get("oracle"), Mapping) else None
    if oracle is not None:
        axis.axhline(oracle, color="black", linestyle="--", lw=1.2, label="oracle (true probabilities)")
    axis.axhline(0.5, color="gray", lw=0.8)
    axis.set_xscale("log")
    axis.set_xticks(sizes, [f"{size:,}" for size in sizes])
    axis.minorticks_off()
    axis.set_xlabel("training examples")
    actions = report.get("actions")
    over = f" ({', '.join(map(str, actions))})" if isinstance(actions, list) and actions else ""
    axis.set_ylabel(f"test mean AUC{over}")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    axis.set_title(title or "Learning curves: mean AUC over the ranked actions")
    with _without_glyph_warnings():
        figure.tight_layout()
    return _save(figure, path)
