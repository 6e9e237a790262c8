"""
How often the user bootstrap's 95 % interval holds the true AUC difference when an action's positives come from a
few users only: what ``statistics.MIN_CLASS_GROUPS`` (the fewest users on each side of an action for a verdict) rests
on.

Each case simulates ``--users`` users of ``--per-user`` examples whose positives are held by exactly k of them, and
two scorers that add an error of their own per user; the truth is the difference on a population of the same kind
(``--population`` users, the same share holding positives). Prints, per k, the share of cases whose interval holds
the truth for ``statistics.paired_bootstrap_auc_difference(..., groups=users)`` (users stratified by the classes they
hold) and for an unstratified user bootstrap (resamples without both classes drawn again), to tell the stratification
from the number of users as the cause.

    python benchmarks/bootstrap_few_positive_users.py --positive-users 1,2,4,6,8,10,12,16,24 --cases 150
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ itself: the flag checkers
from _arguments import positive_int, positive_int_list  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--positive-users", type=positive_int_list, default=[1, 2, 4, 8, 16],
                        help="k, the users holding the positives, comma-separated; default 1,2,4,8,16")
    parser.add_argument("--users", type=positive_int, default=60, help="users per case; default %(default)s")
    parser.add_argument("--per-user", type=positive_int, default=20, help="examples per user; default %(default)s")
    parser.add_argument("--cases", type=positive_int, default=150, help="cases per k; default %(default)s")
    parser.add_argument("--resamples", type=positive_int, default=300, help="bootstrap resamples; default %(default)s")
    parser.add_argument("--population", type=positive_int, default=60000,
                        help="users of the population the truth is measured on; default %(default)s")
    args = parser.parse_args()
    if max(args.positive_users) > args.users:
        parser.error(f"--positive-users {max(args.positive_users)} is more than --users {args.users}.")
    return args


def sample(rng, users: int, per_user: int, positive_users: int | None = None, share: float | None = None):
    """Labels, two scorers' scores and each example's user; the positives held by ``positive_users`` users (or each
    user holding them with probability ``share``)."""
    import numpy as np

    user = np.repeat(np.arange(users), per_user)
    if share is None:
        holds = np.zeros(users, bool)
        holds[rng.choice(users, positive_users, replace=False)] = True
    else:
        holds = rng.random(users) < share
    signal = rng.normal(size=user.size)
    labels = holds[user] & (rng.random(user.size) < 1 / (1 + np.exp(-signal)))
    a = signal + rng.normal(0, 1, users)[user] + rng.normal(size=user.size)
    b = 0.8 * signal + rng.normal(0, 1, users)[user] + rng.normal(size=user.size)
    return labels, a, b, user


def unstratified_interval(labels, a, b, user, resamples: int, seed: int) -> tuple[float, float]:
    """95 % interval of AUC(a) - AUC(b), resampling users freely (a resample without both classes drawn again)."""
    import numpy as np

    from a2gen_hf.training.statistics import weighted_auc

    rng = np.random.default_rng(seed)
    count, differences = user.max() + 1, []
    while len(differences) < resamples:
        weights = np.bincount(rng.integers(0, count, count), minlength=count)[user][None, :].astype(float)
        if not (weights[0] * labels).any() or not (weights[0] * ~labels).any():
            continue
        differences.append(weighted_auc(labels, a, weights)[0] - weighted_auc(labels, b, weights)[0])
    low, high = np.percentile(differences, [2.5, 97.5])
    return float(low), float(high)


def main() -> None:
    args = parse_args()
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from a2gen_hf.training.statistics import paired_bootstrap_auc_difference

    rng = np.random.default_rng(0)
    print(f"{args.users} users of {args.per_user} examples, {args.cases} cases per k, {args.resamples} resamples")
    for k in args.positive_users:
        labels, a, b, _ = sample(rng, args.population, 1, share=k / args.users)
        truth = roc_auc_score(labels, a) - roc_auc_score(labels, b)
        held = {"stratified (the package's)": 0, "unstratified": 0}
        for case in range(args.cases):
            labels, a, b, user = sample(rng, args.users, args.per_user, positive_users=k)
            while not labels.any():
                labels, a, b, user = sample(rng, args.users, args.per_user, positive_users=k)
            row = paired_bootstrap_auc_difference(labels, a, b, args.resamples, seed=case, groups=user)
            held["stratified (the package's)"] += row["low"] <= truth <= row["high"]
            low, high = unstratified_interval(labels, a, b, user, args.resamples, case)
            held["unstratified"] += low <= truth <= high
        print(f"k = {k}: coverage " + ", ".join(f"{name} {count / args.cases:.2f}" for name, count in held.items())
              + " (nominal 0.95)", flush=True)


if __name__ == "__main__":
    main()
