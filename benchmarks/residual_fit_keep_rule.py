"""
Which keep rule for the residual fit: held-out validation AUC of the ``sparse_logs`` ranking under each rule
(``fit_residual_paths``' ``keep_z`` and ``cross_fit``), without reading any test split.

The ``sparse_logs`` recipe fits what its network adds to the logistic regression on counts and keeps the fit, per
action, only where it raises that action's validation AUC (``keep_z`` 0, the recipe's rule), or only where it raises
it by more than z standard errors of the paired difference (DeLong), or (``cross_fit``) only where the gain holds up
on validation users that did not choose the fit. Validation chooses the fit, so validation cannot judge
the rule: here the validation split is cut in two by user, the regression and the fit choose on one half (their C,
share scale, L2 strength and kept actions) and the other half scores, both ways. With ``--fractions`` the training
split is cut to a share of its users, as a stand-in for smaller logs (validation stays whole).

Prints a table and writes ``--output`` (JSON): per training share, seed, direction and z, the scoring half's AUC per
action and the actions the fit kept.

    python benchmarks/residual_fit_keep_rule.py --data data/taobao --fractions 1,0.5,0.25,0.125 --seeds 3 \\
        --rules 0,1.645,cross --output runs/keep_rule.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ itself: the flag checkers
from _arguments import data_folder  # noqa: E402


def parse_args() -> tuple[argparse.Namespace, list[str], list[float]]:
    """The command line, every value checked (argparse's usage error, exit status 2): the arguments, the keep rules
    and the training shares."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=data_folder, required=True, help="a data folder of `a2gen prepare`")
    parser.add_argument("--fractions", default="1", help="shares of the training split's users, comma-separated")
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds of the fit's hidden layer (0, 1, ...)")
    parser.add_argument("--rules", default="0,1.645,cross",
                        help="keep rules, comma-separated: a number z >= 0 is keep_z (0: the recipe's rule), `cross` the "
                             "cross-fitted rule")
    parser.add_argument("--recipe", default="sparse_logs")
    parser.add_argument("--output", required=True, help="JSON file to write")
    args = parser.parse_args()
    rules = args.rules.split(",")
    for rule in rules:
        try:
            if rule != "cross" and not float(rule) >= 0:
                raise ValueError
        except ValueError:
            parser.error(f"--rules: {rule!r} is neither a number >= 0 (keep_z) nor `cross`.")
    try:
        fractions = [float(value) for value in args.fractions.split(",")]
    except ValueError:
        parser.error(f"--fractions {args.fractions!r}: give shares in (0, 1], comma-separated, e.g. 1,0.5.")
    if not all(0 < fraction <= 1 for fraction in fractions):
        parser.error(f"--fractions {args.fractions!r}: every share must be in (0, 1].")
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds} must be >= 1.")
    return args, rules, fractions


if __name__ == "__main__":  # a bad value is refused now, before the slow imports below (torch, transformers: seconds)
    parse_args()

import numpy as np  # noqa: E402
from datasets import DatasetDict  # noqa: E402

from a2gen_hf.cli import _feature_overrides, parse_arguments  # noqa: E402
from a2gen_hf.data.collator import A2GenDataCollator  # noqa: E402
from a2gen_hf.data.folder import load_data_dir  # noqa: E402
from a2gen_hf.output_folders import write_json_atomically  # noqa: E402
from a2gen_hf.training.data_setup import create_model  # noqa: E402
from a2gen_hf.training.residual_fit import action_aucs, fit_learned_paths, halves_of, read_head_inputs  # noqa: E402
from a2gen_hf.training.simple_baselines import start_from_regression  # noqa: E402


def users_share(split, fraction: float, seed: int = 0):
    """``split`` cut to ``fraction`` of its users (drawn by ``seed``), every row of a user kept."""
    if fraction >= 1:
        return split
    users = np.asarray(split["user"])
    distinct = np.unique(users)
    kept = set(np.random.default_rng(seed).permutation(distinct)[: max(1, round(fraction * len(distinct)))].tolist())
    return split.select(np.flatnonzero([user in kept for user in users]).tolist())


def held_out_splits(dataset, fractions):
    """For every training share and direction: ``(fraction, train, direction, choosing, scoring)``, the training split
    cut to ``fraction`` of its users (:func:`users_share`) and the validation split's two user halves, one choosing
    and the other scoring, both ways (the protocol of the held-out benchmarks)."""
    halves = [half.tolist() for half in halves_of(np.asarray(dataset["validation"]["user"]))]
    for fraction in fractions:
        train = users_share(dataset["train"], fraction)
        for direction, (choose, score) in enumerate((halves, halves[::-1])):
            yield fraction, train, direction, dataset["validation"].select(choose), dataset["validation"].select(score)


def held_out_row(fraction, train, direction: int, rule: str, aucs: dict[str, float], started: float, **more) -> dict:
    """One held-out row (the training ``fraction`` and split ``train``, the ``direction``, the ``rule`` scored and its
    ``aucs`` per action name on the scoring half, whatever else ``more`` records), printed as it comes: the row
    format of the held-out benchmarks, summarised by :func:`held_out_summary`."""
    row = {"fraction": fraction, "train_examples": len(train), "direction": direction, "rule": rule, **more,
           "held_out_auc": aucs, "held_out_mean": float(np.mean(list(aucs.values())))}  # fmt: skip
    extra = "".join(f" {key.replace('_', ' ')} {value}" for key, value in more.items())
    print(f"share {fraction:g} ({len(train)} train) direction {direction} {rule}: held-out mean "
          f"{row['held_out_mean']:.4f} {json.dumps(aucs)}{extra} ({time.time() - started:.0f} s)", flush=True)
    return row


def held_out_summary(rows: list[dict], over: str = "both directions") -> dict[str, dict[str, float]]:
    """``{training share: {rule: mean held-out mean AUC}}`` of the held-out ``rows`` (each with ``fraction``,
    ``rule`` and ``held_out_mean``; shares and rules in the order they first appear), printed as the summary lines
    of the held-out benchmarks (this one, ``share_scale_keep_rule.py``, ``residual_fit_bagging.py``)."""
    rules = list(dict.fromkeys(row["rule"] for row in rows))
    summary = {
        str(fraction): {
            rule: float(np.mean([row["held_out_mean"] for row in rows if row["fraction"] == fraction
                                 and row["rule"] == rule]))
            for rule in rules
        }
        for fraction in dict.fromkeys(row["fraction"] for row in rows)
    }  # fmt: skip
    print(f"held-out validation mean AUC (mean over {over}):")
    for fraction, by_rule in summary.items():
        means = ", ".join(f"{rule}: {value:.4f}" for rule, value in by_rule.items())
        print(f"  training users share {fraction}: {means}")
    return summary


def main() -> None:
    args, rules, fractions = parse_args()
    recipe = parse_arguments(["compare", "--recipe", args.recipe, "--data", args.data, "--output", "unused"])
    overrides = {key: value for key, value in _feature_overrides(recipe).items() if value is not None}
    overrides.update({"max_history_items": recipe.max_history_items, "max_events_per_item": recipe.max_events_per_item})
    dataset, tokenizer, _ = load_data_dir(args.data)
    rows = []
    for fraction, train, direction, choosing, scoring in held_out_splits(dataset, fractions):
        data = DatasetDict({"train": train, "validation": choosing})
        regression = None
        for seed in range(args.seeds):
            started = time.time()
            model = create_model("a2gen-iag", tokenizer, data, **overrides)
            regression = start_from_regression(
                model, tokenizer, data, residual=True, regression=regression, frozen=True,
                share_scale=recipe.wide_share_scale,
            )  # fmt: skip
            model.eval()
            collator = A2GenDataCollator.from_config(model.config, tokenizer)
            inputs = {
                "train": read_head_inputs(model, train, collator, train=True),
                "choose": read_head_inputs(model, data["validation"], collator, train=False),
                "score": read_head_inputs(model, scoring, collator, train=False),
            }
            start_state = {key: value.clone() for key, value in model.occurrence_head.state_dict().items()}
            for rule in rules:
                head = model.occurrence_head
                head.load_state_dict(start_state)
                fit = fit_learned_paths(head, inputs["train"], inputs["choose"], model.config, seed=seed,
                                        keep_z=0.0 if rule == "cross" else float(rule), cross_fit=rule == "cross")
                aucs = action_aucs(head, inputs["score"], model.config)
                named = {model.config.action_names[action - 1]: auc for action, auc in aucs.items()}
                rows.append(held_out_row(
                    fraction, train, direction, rule, named, started, seed=seed, kept_fit=fit["fitted"] is not None,
                    regression_kept_for=fit["regression_kept_for"],
                ))  # fmt: skip
    summary = held_out_summary(rows, over="seeds and both directions")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomically(args.output, {"data": args.data, "rows": rows, "summary": summary})


if __name__ == "__main__":
    main()
