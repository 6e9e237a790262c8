"""
Five more levers for the ``sparse_logs`` recipe's starting regression, judged on held-out validation without
reading any test split (twenty-fourth and twenty-fifth sessions; none adopted):

- ``same-item``: per action, what the user did on the target item itself before (log1p of the earlier sessions on
  it with the action, their share of the sessions on it, 1 / (1 + position of the most recent one));
- ``counters``: "real-time counters" of a serving system, rebuilt from the examples of every split: what every user
  did on the target item, and on its category, in sessions that had *ended* before the target session started,
  within a day, a week and ever (log1p of the sessions and per action, and the smoothed per-action rates);
- ``per-action-times``: per action the regression with the time features or without them, whichever has the
  higher AUC on the choosing half (each with its own C and share scale chosen there);
- ``boosted-trees``: ``sklearn``'s histogram gradient boosting on the regression's features (counts and times),
  per action, learning rate and leaves chosen on the choosing half: a stronger fairly fed baseline?
- ``pooled-actions`` (twenty-fifth session; its rule, the same, written at 15:43 UTC before its first run): one
  joint logistic regression over the ranked actions, each action's coefficients a shared vector plus its own
  (:func:`pooled_fit`), so that an action with few positives borrows from the others (buy from cart); per action the
  choosing half picks among the recipe's own fit and the pooled fits (C in 0.001..1, the shared part's penalty 1 or 9
  times weaker).

Each is scored against the recipe's regression (``logreg-shares-times``) by the protocol of the held-out benchmarks
(``residual_fit_keep_rule.held_out_splits``): the validation split is cut in two by user, both choose on one half
and the other half scores, both ways; with ``--fractions`` the training split is cut to a share of its users.

Decision rule, written before the first runs (12:50-12:57 UTC): adopt a lever only if its held-out mean AUC,
averaged over both directions, is above the recipe's regression by at least 0.002 averaged over the training shares
1, 0.5, 0.25 and 0.125, and at no share lower by more than 0.002 (the rule of ``history_time_features.py``).

    python benchmarks/further_levers.py --data data/taobao --fractions 1,0.5,0.25,0.125 \\
        --output runs/further_levers.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ itself: the flag checkers
from _arguments import choice_list, data_folder, fraction_list, output_file  # noqa: E402

LEVERS = ("same-item", "counters", "per-action-times", "boosted-trees", "pooled-actions")
DAY = 86400
COUNTER_WINDOWS = (DAY, 7 * DAY, None)  # None: every earlier session


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=data_folder, required=True,
                        help="a data folder of `a2gen prepare` (with history_session_starts)")
    parser.add_argument("--fractions", type=fraction_list, default=[1.0],
                        help="shares of the training split's users, comma-separated")
    parser.add_argument("--levers", type=choice_list(LEVERS), default=list(LEVERS),
                        help=f"comma-separated, of {', '.join(LEVERS)} (default: all)")
    parser.add_argument("--output", type=output_file, required=True, help="JSON file to write")
    return parser.parse_args()


if __name__ == "__main__":  # a bad value is refused now, before the slow imports below
    parse_args()

import numpy as np  # noqa: E402
from residual_fit_keep_rule import held_out_row, held_out_splits, held_out_summary  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from a2gen_hf.data.folder import load_data_dir  # noqa: E402
from a2gen_hf.metrics import ranked_action_aucs, ranked_action_ids  # noqa: E402
from a2gen_hf.output_folders import write_json_atomically  # noqa: E402
from a2gen_hf.training.simple_baselines import (  # noqa: E402
    ActionTargets,
    HistoryCounts,
    ShareScaledLogisticRegression,
    TimedShareScaledLogisticRegression,
)


def same_item_features(dataset, vocab_size: int, window: int) -> np.ndarray:
    """`(n, 3A)`: per action, log1p of the earlier sessions on the target item with it, their share of the sessions
    on the target item, and 1 / (1 + position of the most recent one) (0 without one)."""
    history = HistoryCounts.from_dataset(dataset, vocab_size, window)
    present = history.item_actions[:, 1:].astype(np.float64)
    with_action = history.per_example_sum(present, history.same_item)
    on_item = history.per_example_sum(history.same_item.astype(np.float64))
    recency = np.stack([
        1.0 / (1.0 + history.most_recent_age(history.item_actions[:, a] & history.same_item))
        for a in range(1, vocab_size)
    ], axis=1)  # fmt: skip
    return np.concatenate([np.log1p(with_action), with_action / np.maximum(on_item, 1)[:, None], recency], axis=1)


def _sessions(dataset, tokenizer) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per example: raw item, category (item side feature 0), start and end (Unix seconds) and `(n, A)` outcomes."""
    start = np.asarray(dataset["session_start"], dtype=np.int64)
    offsets = [np.nanmax(seconds) if len(seconds) else 0.0 for seconds in dataset["action_seconds"]]
    end = start + np.nan_to_num(np.asarray(offsets, dtype=np.float64)).astype(np.int64)
    category = np.array([sides[0] if sides else 0 for sides in dataset["item_side_ids"]], dtype=np.int64)
    occurs = ActionTargets.from_dataset(dataset, tokenizer).occurs[:, 1:].astype(np.float64)
    return np.asarray(dataset["item"]), category, start, end, occurs


class Counters:
    """What every user did on an item and on a category in sessions that ended before a given time: every split's
    examples (one per session) sorted by (key, end), with running sums of the sessions and of each action."""

    def __init__(self, dataset, tokenizer):
        self.tokenizer = tokenizer
        parts = [_sessions(dataset[split], tokenizer) for split in dataset]
        items, category, _, end, occurs = (np.concatenate(columns) for columns in zip(*parts))
        self.items, item_codes = np.unique(items, return_inverse=True)
        self.tables = {}
        for name, key in (("item", item_codes), ("category", category)):
            order = np.lexsort((end, key))
            sums = np.cumsum(np.c_[np.ones(len(order)), occurs[order]], axis=0)
            self.tables[name] = (key[order], end[order], np.vstack([np.zeros((1, sums.shape[1])), sums]))

    def features(self, dataset) -> np.ndarray:
        """`(n, 6 (1 + 2A))`: per key (item, category) and window, log1p of the sessions and of those with each
        action, and each action's rate smoothed by 0.1 pseudo-positives in one pseudo-session."""
        items, category, start, _, _ = _sessions(dataset, self.tokenizer)
        item_codes = np.clip(np.searchsorted(self.items, items), 0, len(self.items) - 1)
        columns = []
        for name, key in (("item", item_codes), ("category", category)):
            sorted_keys, ends, sums = self.tables[name]
            below = _first_at_or_after(sorted_keys, ends, key, start)
            for window in COUNTER_WINDOWS:
                since = np.zeros_like(start) if window is None else start - window
                counts = sums[below] - sums[_first_at_or_after(sorted_keys, ends, key, since)]
                columns += [np.log1p(counts), (counts[:, 1:] + 0.1) / (counts[:, :1] + 1.0)]
        return np.concatenate(columns, axis=1)


def _first_at_or_after(sorted_keys: np.ndarray, ends: np.ndarray, key: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Per query, the position of the first (key, end) at or after (`key`, `time`) in the sorted table."""
    first = np.searchsorted(sorted_keys, key, side="left")
    last = np.searchsorted(sorted_keys, key, side="right")
    return np.array([lo + np.searchsorted(ends[lo:hi], t, side="left") for lo, hi, t in zip(first, last, time)])


def with_extra(extra) -> type:
    """The recipe's regression with `extra(dataset)` `(n, k)` columns after its own."""

    class Extended(TimedShareScaledLogisticRegression):
        def features(self, dataset, exclude=None):
            return np.concatenate([super().features(dataset, exclude), extra(dataset)], axis=1)

    return Extended


def per_action_times(tokenizer, train, choosing, scoring, actions) -> np.ndarray:
    """The timed regression's probabilities on `scoring`, with the untimed one's for the actions where it has the
    higher AUC on `choosing`."""
    timed = TimedShareScaledLogisticRegression(tokenizer).fit(train, choosing)
    plain = ShareScaledLogisticRegression(tokenizer).fit(train, choosing)
    occurs = ActionTargets.from_dataset(choosing, tokenizer).occurs
    timed_aucs = ranked_action_aucs(occurs, timed.predict(choosing)["action_probabilities"], tokenizer)
    plain_aucs = ranked_action_aucs(occurs, plain.predict(choosing)["action_probabilities"], tokenizer)
    probabilities = timed.predict(scoring)["action_probabilities"]
    plain_probabilities = plain.predict(scoring)["action_probabilities"]
    for action in actions:
        if action in timed_aucs and plain_aucs[action] > timed_aucs[action]:  # AUCs of the actions with both classes
            probabilities[:, action] = plain_probabilities[:, action]
    return probabilities


def boosted_trees(tokenizer, train, choosing, scoring, actions) -> np.ndarray:
    """Per action, gradient-boosted trees on the timed regression's features (early stopping on 15 % of train),
    learning rate and leaves chosen on `choosing`; the regression's probabilities for an action without both
    classes."""
    regression = TimedShareScaledLogisticRegression(tokenizer).fit(train, choosing)
    probabilities = regression.predict(scoring)["action_probabilities"]
    train_occurs = ActionTargets.from_dataset(train, tokenizer).occurs
    choosing_occurs = ActionTargets.from_dataset(choosing, tokenizer).occurs
    features = {
        "train": regression.features(train, exclude=train_occurs),
        "choosing": regression.features(choosing),
        "scoring": regression.features(scoring),
    }
    for action in actions:
        if len(np.unique(train_occurs[:, action])) < 2 or len(np.unique(choosing_occurs[:, action])) < 2:
            continue
        fits = [
            HistGradientBoostingClassifier(
                learning_rate=rate, max_leaf_nodes=leaves, max_iter=500, early_stopping=True, validation_fraction=0.15,
                n_iter_no_change=20, l2_regularization=1.0, random_state=0,
            ).fit(features["train"], train_occurs[:, action])
            for rate in (0.03, 0.1) for leaves in (7, 15)
        ]  # fmt: skip
        best = max(fits, key=lambda fit: roc_auc_score(choosing_occurs[:, action],
                                                       fit.predict_proba(features["choosing"])[:, 1]))
        probabilities[:, action] = best.predict_proba(features["scoring"])[:, 1]
    return probabilities


POOLED_C_GRID = (0.001, 0.01, 0.1, 1.0)
POOLED_SHARED_SCALES = (1.0, 3.0)
INTERCEPT_SCALE = 10.0  # the intercept columns' value: their penalty 100 times weaker, nearly none


def pooled_fit(features: np.ndarray, labels: np.ndarray, c: float, shared_scale: float) -> list[tuple[np.ndarray, float]]:
    """One L2-penalised logistic regression over `A` actions at once: `features` `(n, D)` standardised, `labels`
    `(n, A)`. The rows are stacked per action, and action `a`'s logit is `x @ (shared_scale * w + w_a) + b_a`, so each
    action's coefficients shrink towards a vector shared by all (the shared part's penalty `shared_scale`² times
    weaker). Returns per action its `(D,)` coefficients and intercept."""
    n, d = features.shape
    actions = labels.shape[1]
    blocks = []
    for index in range(actions):
        own = np.zeros((n, actions * d))
        own[:, index * d:(index + 1) * d] = features
        intercepts = np.zeros((n, actions))
        intercepts[:, index] = INTERCEPT_SCALE
        blocks.append(np.hstack([shared_scale * features, own, intercepts]))
    model = LogisticRegression(C=c, max_iter=2000, fit_intercept=False).fit(np.vstack(blocks), labels.T.reshape(-1))
    weights = model.coef_[0]
    return [
        (shared_scale * weights[:d] + weights[d + index * d:d + (index + 1) * d],
         float(INTERCEPT_SCALE * weights[d + actions * d + index]))
        for index in range(actions)
    ]  # fmt: skip


def pooled_actions(tokenizer, train, choosing, scoring, actions) -> np.ndarray:
    """The recipe's regression's probabilities on `scoring`, with those of a :func:`pooled_fit` for each action where
    one has a higher AUC on `choosing` than the recipe's own fit (ties keep the recipe)."""
    regression = TimedShareScaledLogisticRegression(tokenizer).fit(train, choosing)
    probabilities = regression.predict(scoring)["action_probabilities"]
    own = regression.predict(choosing)["action_probabilities"]
    train_occurs = ActionTargets.from_dataset(train, tokenizer).occurs
    choosing_occurs = ActionTargets.from_dataset(choosing, tokenizer).occurs
    fitted = [action for action in actions if action in regression.models_]
    standardised = {
        "train": regression.scaler_.transform(regression.features(train, exclude=train_occurs)),
        "choosing": regression.scaler_.transform(regression.features(choosing)),
        "scoring": regression.scaler_.transform(regression.features(scoring)),
    }
    judged = [action for action in fitted if len(np.unique(choosing_occurs[:, action])) == 2]
    best = {action: (roc_auc_score(choosing_occurs[:, action], own[:, action]), None) for action in judged}
    for shared_scale in POOLED_SHARED_SCALES:
        for c in POOLED_C_GRID:
            fits = pooled_fit(standardised["train"], train_occurs[:, fitted], c, shared_scale)
            for action, (coefficients, intercept) in zip(fitted, fits):
                if action not in best:
                    continue
                auc = roc_auc_score(choosing_occurs[:, action], standardised["choosing"] @ coefficients + intercept)
                if auc > best[action][0]:
                    best[action] = (auc, (coefficients, intercept))
    for action, (_, fit) in best.items():
        if fit is not None:
            probabilities[:, action] = 1.0 / (1.0 + np.exp(-(standardised["scoring"] @ fit[0] + fit[1])))
    return probabilities


def main() -> None:
    args = parse_args()
    dataset, tokenizer, _ = load_data_dir(args.data)
    if "history_session_starts" not in dataset["train"].column_names:
        sys.exit(f"--data {args.data} has no history_session_starts column: prepare it again with this version.")
    actions = ranked_action_ids(tokenizer)
    names = {action: tokenizer.action_names[action - 1] for action in actions}
    vocab_size = len(tokenizer.action_names) + 1
    counters = Counters(dataset, tokenizer) if "counters" in args.levers else None
    regressions = {
        "same-item": with_extra(lambda split: same_item_features(split, vocab_size, 50)),
        "counters": with_extra(lambda split: counters.features(split)),
    }
    rows = []
    for fraction, train, direction, choosing, scoring in held_out_splits(dataset, args.fractions):
        occurs = ActionTargets.from_dataset(scoring, tokenizer).occurs
        for rule in ("recipe", *args.levers):
            started = time.time()
            if rule in ("recipe", *regressions):
                fitted = (regressions.get(rule) or TimedShareScaledLogisticRegression)(tokenizer).fit(train, choosing)
                probabilities = fitted.predict(scoring)["action_probabilities"]
            else:
                chosen = {"per-action-times": per_action_times, "boosted-trees": boosted_trees,
                          "pooled-actions": pooled_actions}[rule]
                probabilities = chosen(tokenizer, train, choosing, scoring, actions)
            aucs = ranked_action_aucs(occurs, probabilities, tokenizer)
            rows.append(held_out_row(fraction, train, direction, rule, {names[a]: auc for a, auc in aucs.items()},
                                     started))
    summary = held_out_summary(rows)
    write_json_atomically(args.output, {"data": args.data, "rows": rows, "summary": summary})


if __name__ == "__main__":
    main()
