"""
Draw A2Gen's AUC difference to one baseline, per action and log, from several ``a2gen compare`` reports: one row per
log, one panel per action, the point and its 95 % paired bootstrap interval (filled: significant).

    python benchmarks/plot_stand_ins.py --baseline logreg --output other_logs.png \\
        "shared sample=runs/shared/results.json" "users 3 mod 8=runs/u83/results.json" ...
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ itself: the flag checkers
from _arguments import output_file  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", help="LABEL=PATH of an a2gen compare results.json, in drawing order")
    parser.add_argument("--baseline", default="logreg", help="the model A2Gen is compared with; default %(default)s")
    parser.add_argument("--output", type=output_file, required=True, help="the PNG to write")
    parser.add_argument("--title", default=None)
    args = parser.parse_args()
    for entry in args.reports:
        if "=" not in entry:
            parser.error(f"report {entry!r} must be LABEL=PATH")
    return args


def main() -> None:
    args = parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from a2gen_hf.output_folders import read_json_file, replacing_file
    from a2gen_hf.training.compare import model_label
    from a2gen_hf.training.statistics import too_few_class_groups

    rows, references = [], set()
    for entry in args.reports:
        label, _, path = entry.partition("=")
        try:
            report = read_json_file(path, "the results.json that `a2gen compare` wrote")
        except (OSError, ValueError) as error:
            raise SystemExit(f"plot_stand_ins.py: error: {error}") from None
        if args.baseline not in report.get("bootstrap", {}):
            raise SystemExit(f"{path}: no bootstrap rows against {args.baseline!r}")
        untrained = set(report.get("untrained_actions", ()))
        cells = {
            action: {**cell, "called": action not in untrained and too_few_class_groups(cell) is None}
            for action, cell in report["bootstrap"][args.baseline].items()
        }  # a row with no verdict (too few users, an action no model learned) is drawn as not significant
        rows.append((label, cells, report.get("bootstrap_unit", "examples")))
        references.add(report.get("bootstrap_reference", "a2gen-iag"))
    actions = list(rows[0][1])
    # The model every report compared with the baseline (its bootstrap_reference), named as the reports name it.
    reference = model_label(next(iter(references))).split(" (")[0] if len(references) == 1 else "A2Gen (each report's)"
    figure, axes = plt.subplots(
        1, len(actions), figsize=(3.2 * len(actions) + 2.5, 0.32 * len(rows) + 1.4), sharey=True, squeeze=False
    )
    axes = axes[0]
    for axis, action in zip(axes, actions):
        for y, (_, cells, _) in enumerate(rows):
            cell = cells.get(action) or {}
            difference, low, high = (cell.get(key) for key in ("difference", "low", "high"))
            if difference is None or math.isnan(difference):
                continue
            above, below = cell["called"] and low > 0, cell["called"] and high < 0
            color = "tab:green" if above else ("tab:red" if below else "tab:gray")
            axis.plot([low, high], [y, y], color=color, linewidth=2)
            axis.plot([difference], [y], "o", color=color, markerfacecolor=color if above or below else "white")
        axis.axvline(0, color="black", linewidth=0.8)
        axis.set_title(action)
        axis.set_xlabel(f"{reference} minus {args.baseline} (AUC)")
    axes[0].set_yticks(range(len(rows)), [label for label, _, _ in rows])
    axes[0].invert_yaxis()
    units = sorted({unit for _, _, unit in rows})
    figure.suptitle(args.title or f"95 % paired bootstrap intervals (resampling {', '.join(units)}); filled: significant")
    figure.tight_layout()
    with replacing_file(args.output) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
