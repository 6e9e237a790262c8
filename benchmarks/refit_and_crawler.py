"""
Two studies of the ``sparse_logs`` recipe's starting regression against the plain regression on counts (twenty-eighth
session; nothing adopted). Both read **test** splits, so neither can choose anything for the recipe; they say whether
a lever is worth a held-out rule at all.

- ``refit``: each regression is fitted on train with C (and the share scale) chosen per action on validation, as in
  ``a2gen compare``, then fitted again with those choices on train + validation (closer in time to test, and more
  data). Is the gap between the two regressions larger after the refit? Both get the refit, so it is fair.
- ``heavy-user`` (with ``--heavy-user ID``): the crawler log of ``stand_in_logs.py`` (one user holding 30 % of the
  rows). The two regressions fitted with that user's examples kept or left out of train and of validation (where
  the choices of C are made); test AUC over every test example and over the other users' examples.

    python benchmarks/refit_and_crawler.py --data data/users_mod4_2,data/users_mod8_6 --output runs/refit.json
    python benchmarks/refit_and_crawler.py --data data/crawler_users_mod8_3 --heavy-user 999999999 \\
        --output runs/crawler.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ itself: the flag checkers
from _arguments import comma_list, data_folder, output_file  # noqa: E402

REGRESSIONS = ("logreg", "logreg-shares-times")  # the plain regression on counts, the recipe's start


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=comma_list(data_folder, "data/a,data/b"), required=True,
                        help="data folders of `a2gen prepare` (with history_session_starts), comma-separated")
    parser.add_argument("--heavy-user", default=None,
                        help="the raw user id of a heavy user: run the heavy-user study instead of the refit")
    parser.add_argument("--output", type=output_file, required=True, help="JSON file to write")
    return parser.parse_args()


if __name__ == "__main__":  # a bad value is refused now, before the slow imports below
    parse_args()

import datasets  # noqa: E402
import numpy as np  # noqa: E402

from a2gen_hf.data.folder import load_data_dir  # noqa: E402
from a2gen_hf.metrics import ranked_action_ids  # noqa: E402
from a2gen_hf.metrics.auc import auc, has_both_classes  # noqa: E402
from a2gen_hf.output_folders import write_json_atomically  # noqa: E402
from a2gen_hf.training.simple_baselines import SIMPLE_BASELINES, ActionTargets  # noqa: E402


def test_aucs(model, test, occurs: np.ndarray, actions: dict[int, str], rows: np.ndarray | None = None) -> dict:
    """``{action name: test AUC}`` of ``model``'s probabilities over the test ``rows`` (all by default)."""
    scores = model.predict(test)["action_probabilities"]
    rows = np.arange(len(occurs)) if rows is None else rows
    return {name: auc(occurs[rows, action], scores[rows, action]) for action, name in actions.items()
            if has_both_classes(occurs[rows, action])}  # fmt: skip


def refit_study(dataset, tokenizer, actions: dict[int, str]) -> dict:
    """Per regression: the test AUCs fitted on train, and refitted per action on train + validation with the C and
    share scale validation chose for that action."""
    occurs = ActionTargets.from_dataset(dataset["test"], tokenizer).occurs
    both = datasets.concatenate_datasets([dataset["train"], dataset["validation"]])
    result = {}
    for kind in REGRESSIONS:
        chosen = SIMPLE_BASELINES[kind](tokenizer).fit(dataset["train"], dataset["validation"])
        refitted = {}
        for action, name in actions.items():
            if name not in chosen.chosen_c_:
                continue
            single = SIMPLE_BASELINES[kind](tokenizer, c_grid=(chosen.chosen_c_[name],),
                                            share_scales=(chosen.chosen_share_scale_[name],)).fit(both)  # fmt: skip
            refitted.update(test_aucs(single, dataset["test"], occurs, {action: name}))
        result[kind] = {"train": test_aucs(chosen, dataset["test"], occurs, actions), "refit": refitted}
    return result


def heavy_user_study(dataset, tokenizer, actions: dict[int, str], user: str) -> dict:
    """Per regression and per (train, validation) with or without ``user``'s examples: the test AUCs over every
    test example and over the other users' ones, and the C chosen per action."""
    def without(split):
        return split.filter(lambda raw: raw != user, input_columns="user", keep_in_memory=True)

    test_users = np.asarray(dataset["test"]["user"])
    if not (test_users == user).any():
        sys.exit(f"--heavy-user {user}: no test example of that user in the data folder.")
    others = np.flatnonzero(test_users != user)
    occurs = ActionTargets.from_dataset(dataset["test"], tokenizer).occurs
    result = {}
    for kind in REGRESSIONS:
        for train_name, train in (("train with", dataset["train"]), ("train without", without(dataset["train"]))):
            for validation_name, validation in (("validation with", dataset["validation"]),
                                                ("validation without", without(dataset["validation"]))):
                model = SIMPLE_BASELINES[kind](tokenizer).fit(train, validation)
                result[f"{kind} | {train_name} | {validation_name}"] = {
                    "all": test_aucs(model, dataset["test"], occurs, actions),
                    "others": test_aucs(model, dataset["test"], occurs, actions, others),
                    "chosen_c": dict(model.chosen_c_),
                }
    return result


def main() -> None:
    args = parse_args()
    datasets.disable_progress_bars()  # the heavy-user study's filters: one bar each
    report = {"study": "heavy-user" if args.heavy_user else "refit", "logs": {}}
    for folder in args.data:
        dataset, tokenizer, _ = load_data_dir(folder)
        actions = {action: tokenizer.action_names[action - 1] for action in ranked_action_ids(tokenizer)}
        name = Path(folder).name
        if args.heavy_user:
            found = report["logs"][name] = heavy_user_study(dataset, tokenizer, actions, args.heavy_user)
            for key, row in found.items():
                print(f"{name} | {key}: " + "  ".join(
                    f"{action} {row['all'][action]:.4f} / {row['others'][action]:.4f}" for action in row["all"]))
        else:
            found = report["logs"][name] = refit_study(dataset, tokenizer, actions)
            plain, start = found[REGRESSIONS[0]], found[REGRESSIONS[1]]
            print(f"{name}: " + "  ".join(
                f"{action} gap {start['train'][action] - plain['train'][action]:+.3f} -> "
                f"{start['refit'][action] - plain['refit'][action]:+.3f}"
                for action in plain["train"] if action in start["train"] and action in plain["refit"]
                and action in start["refit"]), flush=True)  # fmt: skip
    write_json_atomically(args.output, report)
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
