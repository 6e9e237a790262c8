"""
Do the history sessions' times add to the ``sparse_logs`` recipe's starting regression? Held-out validation AUC of
the share-scaled regression on counts with and without the time features (``time_features``: per action the history
items decayed by their age, the minutes since the last session, the history items within the last hour / day),
without reading any test split.

Validation chooses C and the share scale, so validation cannot judge: as ``share_scale_keep_rule.py`` does, the
validation split is cut in two by user, both regressions choose on one half and the other half scores, both ways;
with ``--fractions`` the training split is cut to a share of its users, as a stand-in for smaller logs.

Decision rule, written before the first run (twenty-third session, 10:10 UTC): switch the time features on in the
recipe only if their held-out mean AUC, averaged over both directions, is (a) above the regression's without them
by at least 0.002 averaged over the training shares and (b) at no share lower than it by more than 0.002 (the rule
of ``residual_fit_bagging.py``). Adopted (hour and day decays: +0.019, +0.024, +0.016, +0.012). A second
decision, rule written before its run (11:24 UTC, the same rule against the first version's figures, after a
throwaway held-out probe of further time features): the decays over ten minutes and a week as well, adopted
(0.7908 / 0.7805 / 0.7798 / 0.7850 against 0.7792 / 0.7741 / 0.7749 / 0.7770).

    python benchmarks/history_time_features.py --data data/taobao --fractions 1,0.5,0.25,0.125 \\
        --output runs/history_time_features.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ itself: the flag checkers
from _arguments import data_folder, fraction_list, output_file  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=data_folder, required=True,
                        help="a data folder of `a2gen prepare` (with history_session_starts)")
    parser.add_argument("--fractions", type=fraction_list, default=[1.0],
                        help="shares of the training split's users, comma-separated")
    parser.add_argument("--output", type=output_file, required=True, help="JSON file to write")
    return parser.parse_args()


if __name__ == "__main__":  # a bad value is refused now, before the slow imports below
    parse_args()

from residual_fit_keep_rule import held_out_row, held_out_splits, held_out_summary  # noqa: E402

from a2gen_hf.data.folder import load_data_dir  # noqa: E402
from a2gen_hf.metrics import ranked_action_aucs, ranked_action_ids  # noqa: E402
from a2gen_hf.output_folders import write_json_atomically  # noqa: E402
from a2gen_hf.training.simple_baselines import (  # noqa: E402
    ActionTargets,
    ShareScaledLogisticRegression,
    TimedShareScaledLogisticRegression,
)

VARIANTS = {"counts": ShareScaledLogisticRegression, "counts and times": TimedShareScaledLogisticRegression}


def main() -> None:
    args = parse_args()
    dataset, tokenizer, _ = load_data_dir(args.data)
    if "history_session_starts" not in dataset["train"].column_names:
        sys.exit(f"--data {args.data} has no history_session_starts column: prepare it again with this version.")
    actions = ranked_action_ids(tokenizer)
    names = {action: tokenizer.action_names[action - 1] for action in actions}
    rows = []
    for fraction, train, direction, choosing, scoring in held_out_splits(dataset, args.fractions):
        occurs = ActionTargets.from_dataset(scoring, tokenizer).occurs
        for rule, variant in VARIANTS.items():
            started = time.time()
            fitted = variant(tokenizer).fit(train, choosing)
            aucs = ranked_action_aucs(occurs, fitted.predict(scoring)["action_probabilities"], tokenizer)
            rows.append(held_out_row(fraction, train, direction, rule, {names[a]: auc for a, auc in aucs.items()},
                                     started))
    summary = held_out_summary(rows)
    write_json_atomically(args.output, {"data": args.data, "rows": rows, "summary": summary})


if __name__ == "__main__":
    main()
