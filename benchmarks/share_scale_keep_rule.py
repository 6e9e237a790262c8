"""
Which rule for the share scale of the ``sparse_logs`` recipe's starting regression: held-out validation AUC of that
regression under each rule, without reading any test split.

The recipe starts A2Gen from the logistic regression on counts whose fit per action may shrink the user propensities
ten times less (``wide_share_scale``): the share scale is chosen, with C, on validation among ten (scale, C) pairs,
keeping the best AUC. On a small validation split that choice is partly luck. The stricter rules here take the
share-scaled fit for an action only where its validation AUC is above the plain regression's (its own C chosen on
the same split) by more than z standard errors of the paired difference (DeLong, ``statistics.clearly_higher_auc``).
Validation chooses, so validation cannot judge: as ``residual_fit_keep_rule.py`` does, the validation split is cut
in two by user, both regressions choose on one half and the other half scores, both ways; with ``--fractions`` the
training split is cut to a share of its users, as a stand-in for smaller logs.

Decision rule, written before the first run (twentieth session, 03:50 UTC): adopt a stricter z only if its held-out
mean AUC, averaged over both directions, is (a) at least the present rule's averaged over the training shares and
(b) at no share lower than it by more than 0.002 (the fifteenth session's rule for the fit's keep rules).

Prints a table and writes ``--output`` (JSON): per training share, direction and rule, the scoring half's AUC per
action and the share scale each action took.

    python benchmarks/share_scale_keep_rule.py --data data/taobao --fractions 1,0.5,0.25,0.125 --rules 0,1,1.645 \\
        --output runs/share_scale_rule.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ itself: the flag checkers
from _arguments import data_folder, fraction_list, non_negative_float_list, output_file  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=data_folder, required=True, help="a data folder of `a2gen prepare`")
    parser.add_argument("--fractions", type=fraction_list, default=[1.0],
                        help="shares of the training split's users, comma-separated")
    parser.add_argument("--rules", type=non_negative_float_list, default=[0.0, 1.0, 1.645],
                        help="z values, comma-separated (0: the present rule, any validation gain)")
    parser.add_argument("--output", type=output_file, required=True, help="JSON file to write")
    return parser.parse_args()


if __name__ == "__main__":  # a bad value is refused now, before the slow imports below
    parse_args()

from datasets import DatasetDict  # noqa: E402
from residual_fit_keep_rule import held_out_row, held_out_splits, held_out_summary  # noqa: E402

from a2gen_hf.data.folder import load_data_dir  # noqa: E402
from a2gen_hf.metrics import ranked_action_aucs, ranked_action_ids  # noqa: E402
from a2gen_hf.output_folders import write_json_atomically  # noqa: E402
from a2gen_hf.training.simple_baselines import (  # noqa: E402
    ActionTargets,
    CountFeatureLogisticRegression,
    ShareScaledLogisticRegression,
)
from a2gen_hf.training.statistics import clearly_higher_auc, has_both_classes  # noqa: E402


def rule_scores(plain_choose, shares_choose, plain_score, shares_score, occurs_choose, actions, z) -> tuple:
    """`(n, V)` scores of the scoring half under rule ``z`` (per action: the share-scaled fit where it clearly beats
    the plain one on the choosing half, else the plain fit) and the actions that took the share-scaled fit."""
    scores, shared = plain_score.copy(), []
    for action in actions:
        labels = occurs_choose[:, action]
        if not has_both_classes(labels):
            continue
        if clearly_higher_auc(labels, shares_choose[:, action], plain_choose[:, action], z):
            scores[:, action] = shares_score[:, action]
            shared.append(action)
    return scores, shared


def main() -> None:
    args = parse_args()
    dataset, tokenizer, _ = load_data_dir(args.data)
    actions = ranked_action_ids(tokenizer)
    names = {action: tokenizer.action_names[action - 1] for action in actions}
    rows = []
    for fraction, train, direction, choosing, scoring in held_out_splits(dataset, args.fractions):
        started = time.time()
        data = DatasetDict({"train": train, "validation": choosing})
        plain = CountFeatureLogisticRegression(tokenizer).fit(data["train"], data["validation"])
        shares = ShareScaledLogisticRegression(tokenizer).fit(data["train"], data["validation"])
        occurs_choose = ActionTargets.from_dataset(choosing, tokenizer).occurs
        occurs_score = ActionTargets.from_dataset(scoring, tokenizer).occurs
        plain_choose, shares_choose = (model.predict(choosing)["action_probabilities"] for model in (plain, shares))
        plain_score, shares_score = (model.predict(scoring)["action_probabilities"] for model in (plain, shares))
        present = ranked_action_aucs(occurs_score, shares_score, tokenizer)  # the present rule: the joint choice
        results = {"present": (present, [a for a in actions if shares.choices().get(names[a], {}).get("share_scale", 1.0) != 1.0])}
        results["plain"] = (ranked_action_aucs(occurs_score, plain_score, tokenizer), [])
        for z in args.rules:
            if z == 0:
                continue  # the present rule (a z of 0 on the two fits' own choices is not the joint choice)
            scores, shared = rule_scores(plain_choose, shares_choose, plain_score, shares_score, occurs_choose,
                                         actions, z)  # fmt: skip
            results[f"z={z:g}"] = (ranked_action_aucs(occurs_score, scores, tokenizer), shared)
        for rule, (aucs, shared) in results.items():
            named = {names[a]: auc for a, auc in aucs.items()}
            rows.append(held_out_row(fraction, train, direction, rule, named, started,
                                     share_scaled=[names[a] for a in shared]))  # fmt: skip
    summary = held_out_summary(rows)
    write_json_atomically(args.output, {"data": args.data, "rows": rows, "summary": summary})


if __name__ == "__main__":
    main()
