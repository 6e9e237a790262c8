"""
How often the paired bootstrap calls a difference between two scorers of equal AUC, resampling examples or users.

Each case simulates users whose examples share the user's habits (a latent value that moves both the labels and
both scorers) and two scorers that each add an error of their own per user, so that the AUC difference is clustered
by user and equal in expectation. A 95 % interval should exclude 0 in about 5 % of the cases. Prints the rate for
``statistics.paired_bootstrap_auc_difference`` with ``groups=None`` (examples) and ``groups=users``.

    python benchmarks/bootstrap_false_alarms.py --cases 200 --users 80 --per-user 10 --resamples 300
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ itself: the flag checkers
from _arguments import positive_int  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=positive_int, default=200, help="simulated comparisons; default %(default)s")
    parser.add_argument("--users", type=positive_int, default=80, help="users per case; default %(default)s")
    parser.add_argument("--per-user", type=positive_int, default=10, help="examples per user; default %(default)s")
    parser.add_argument("--resamples", type=positive_int, default=300, help="bootstrap resamples; default %(default)s")
    parser.add_argument("--seed", type=int, default=1, help="default %(default)s")
    return parser.parse_args()


def case(rng, users: int, per_user: int):
    """One comparison: labels, the two scorers' scores and each example's user, `(users * per_user,)` each."""
    import numpy as np

    user = np.repeat(np.arange(users), per_user)
    habit = rng.normal(size=users)[user]
    labels = rng.random(users * per_user) < 1 / (1 + np.exp(-(1.5 * habit - 1.5)))
    a = habit + 0.8 * rng.normal(size=users)[user] + 0.3 * rng.normal(size=users * per_user)
    b = habit + 0.8 * rng.normal(size=users)[user] + 0.3 * rng.normal(size=users * per_user)
    return labels, a, b, user


def main() -> None:
    args = parse_args()
    import numpy as np

    from a2gen_hf.training.statistics import has_both_classes, paired_bootstrap_auc_difference

    rng = np.random.default_rng(args.seed)
    alarms, cases = {"examples": 0, "users": 0}, 0
    while cases < args.cases:
        labels, a, b, user = case(rng, args.users, args.per_user)
        if not has_both_classes(labels):
            continue
        for unit, groups in (("examples", None), ("users", user)):
            result = paired_bootstrap_auc_difference(labels, a, b, args.resamples, seed=cases, groups=groups)
            alarms[unit] += not (result["low"] <= 0 <= result["high"])
        cases += 1
    rates = {unit: count / cases for unit, count in alarms.items()}
    print(json.dumps({"cases": cases, "users": args.users, "per_user": args.per_user, "resamples": args.resamples,
                      "false_alarm_rate": rates, "nominal": 0.05, "load_average": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()
