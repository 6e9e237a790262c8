"""
Averaging several fits of the network the ``sparse_logs`` recipe adds to the regression: held-out validation AUC of
one fit against the mean logit of K fits (each from its own initialisation), without reading any test split.

The recipe's ranking is the share-scaled regression on counts plus a one-hidden-layer network on the same features,
fitted full batch (``residual_fit.fit_learned_paths``: the L2 strength, the number of rounds and the actions that keep
the network all chosen on validation). On a small log that network is fitted on a few thousand examples, and one
initialisation's fit is partly luck; the mean logit of K fits is one network with K times the hidden units (each
output row divided by K), so it would fit in the recipe's head as it is. Validation chooses, so validation cannot
judge: as ``share_scale_keep_rule.py`` does, the validation split is cut in two by user, everything is chosen on one
half and the other half scores, both ways; with ``--fractions`` the training split is cut to a share of its users, as
a stand-in for smaller logs.

Decision rule, written before the first run (twenty-first session, 05:05 UTC): adopt the K-fit mean only if its
held-out mean AUC, averaged over both directions, is (a) above the single fit's by at least 0.001 averaged over the
training shares and (b) at no share lower than it by more than 0.002 (the fifteenth session's rule for the fit's keep
rules, plus a least gain worth a new option). The mean of the K single fits' own scores is printed too, to tell the
average from the luck of seed 0.

A second variant, added after the first run had failed (b) at an eighth of the users (on the guess that the fits kept
different actions there, and their mean blurred an action one fit kept with others that gave it back), judged by the
same rule: the
K-fit mean, then each action kept only where that mean raises the choosing half's AUC above the regression's
(the rows "kept per action", the rule each single fit applies to itself).

    python benchmarks/residual_fit_bagging.py --data data/taobao --fractions 1,0.5,0.25,0.125 --bags 5 \\
        --output runs/residual_fit_bagging.json
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
    parser.add_argument("--data", type=data_folder, required=True, help="a data folder of `a2gen prepare`")
    parser.add_argument(
        "--fractions", type=fraction_list, default=[1.0], help="shares of the training split's users, comma-separated"
    )
    parser.add_argument("--bags", type=int, default=5, help="fits averaged (each its own seed), at least 2")
    parser.add_argument("--output", type=output_file, required=True, help="JSON file to write")
    args = parser.parse_args()
    if args.bags < 2:
        parser.error(f"--bags {args.bags}: at least 2 fits are needed to average.")
    return args


if __name__ == "__main__":  # a bad value is refused now, before the slow imports below
    parse_args()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from residual_fit_keep_rule import held_out_row, held_out_splits, held_out_summary  # noqa: E402

from a2gen_hf.data.folder import load_data_dir  # noqa: E402
from a2gen_hf.metrics import ranked_action_aucs  # noqa: E402
from a2gen_hf.output_folders import write_json_atomically  # noqa: E402
from a2gen_hf.training.residual_fit import (  # noqa: E402
    HeadInputs,
    actions_not_clearly_raised,
    fit_learned_paths,
    head_scores,
)
from a2gen_hf.training.simple_baselines import (  # noqa: E402
    ActionTargets,
    ShareScaledCountNetworkBaseline,
    _CountNetworkHead,
)


def fitted_logits(network: ShareScaledCountNetworkBaseline, train, choosing, scoring, seeds) -> dict[str, list]:
    """`(n, V)` logits on ``choosing`` and on ``scoring`` (``{"choosing": [...], "scoring": [...]}``) of the network
    fitted with each seed of ``seeds`` on the regression already fitted in ``network`` (its L2 strength, rounds and
    kept actions chosen on ``choosing``), and of the regression alone (``"start"``, one per split)."""
    occurs = {name: ActionTargets.from_dataset(split, network.tokenizer).occurs
              for name, split in (("train", train), ("choosing", choosing), ("scoring", scoring))}  # fmt: skip
    inputs = {
        "train": HeadInputs(network._standardised(train, occurs["train"]), torch.from_numpy(occurs["train"])),
        "choosing": HeadInputs(network._standardised(choosing), torch.from_numpy(occurs["choosing"])),
        "scoring": HeadInputs(network._standardised(scoring), torch.from_numpy(occurs["scoring"])),
    }
    start = _CountNetworkHead(network, network.hidden_size)  # the output layer at zero: the regression alone
    logits = {"choosing": [], "scoring": [], "start": [head_scores(start, inputs[n]) for n in ("choosing", "scoring")]}
    for seed in seeds:
        torch.manual_seed(seed)
        head = _CountNetworkHead(network, network.hidden_size)
        fit_learned_paths(head, inputs["train"], inputs["choosing"], network.tokenizer, seed=seed)
        for name in ("choosing", "scoring"):
            logits[name].append(head_scores(head, inputs[name]))
    return logits, inputs["choosing"]


def kept_per_action(
    mean: dict[str, np.ndarray], start: list[np.ndarray], choosing: HeadInputs, tokenizer
) -> np.ndarray:
    """`(n, V)` the mean fit's logits on the scoring half, each action the regression's where the mean does not raise
    the choosing half's AUC (``residual_fit.actions_not_clearly_raised``, the single fit's own rule)."""
    scores = mean["scoring"].copy()
    for action in actions_not_clearly_raised(mean["choosing"], start[0], choosing, tokenizer):
        scores[:, action] = start[1][:, action]
    return scores


def main() -> None:
    args = parse_args()
    dataset, tokenizer, _ = load_data_dir(args.data)
    names = tokenizer.action_names
    rows = []
    for fraction, train, direction, choosing, scoring in held_out_splits(dataset, args.fractions):
        started = time.time()
        network = ShareScaledCountNetworkBaseline(tokenizer)
        network.fit(train, choosing)
        logits, choosing_inputs = fitted_logits(network, train, choosing, scoring, range(args.bags))
        occurs = ActionTargets.from_dataset(scoring, tokenizer).occurs

        def held_out(scores: np.ndarray, occurs=occurs) -> dict[str, float]:
            return {names[a - 1]: auc for a, auc in ranked_action_aucs(occurs, scores, tokenizer).items()}

        singles = [held_out(scores) for scores in logits["scoring"]]
        mean = {name: np.mean(logits[name], axis=0) for name in ("choosing", "scoring")}
        results = {
            "single (seed 0)": singles[0],
            f"mean of {args.bags} fits": held_out(mean["scoring"]),
            f"mean of {args.bags} fits, kept per action": held_out(
                kept_per_action(mean, logits["start"], choosing_inputs, tokenizer)
            ),
            f"single, mean over {args.bags} seeds": {name: float(np.mean([s[name] for s in singles]))
                                                     for name in singles[0]},
        }  # fmt: skip
        for rule, aucs in results.items():
            rows.append(held_out_row(fraction, train, direction, rule, aucs, started))
    summary = held_out_summary(rows)
    write_json_atomically(args.output, {"data": args.data, "bags": args.bags, "rows": rows, "summary": summary})


if __name__ == "__main__":
    main()
