"""What the simulator's inputs allow (docs/results.md (e)): AUC of gradient-boosted trees given hand-built features.

The learning curves (``benchmarks/learning_curve.py``) compare networks with the oracle, which knows each user's
latent tastes and every segment's topic. This script asks how much of that is learnable *from what a model sees*:
it re-simulates the same users (same config and seed as the curve's data folder, so the test rows are the curve's
test rows) and fits one ``HistGradientBoostingClassifier`` per engagement action on each feature set below, at each
training size (the first n of one fixed shuffle of the train examples of users ``[0, --users)``):

- ``latent``: the simulator's hidden truth (true tastes matched with the target's true topic shares, reflex
  probability, patience, reaction habit, duration). A sanity check of the learner: it should approach the oracle.
- ``timing``: an ideal reader of the inputs. Every engagement event of the 20 history sessions is attributed to the
  topic on screen at its moment (first-second likes counted apart as reflexes), normalised by the seconds watched
  per topic; the topic on screen when the user left early counts as a dislike; matched with the target's topic
  shares. The topics of a history or target video are a function of its item id (a model can learn them from the
  2,000 item ids), so this uses nothing a model could not learn.
- ``timing-visible``: the same history features, but the target's topics only as its two side features show them
  (category and opening topic), i.e. without learning the target's later segments from its id.
- ``occurrence``: the same without any time: each history video's engagement counts spread over its topics, and
  the counts. What a model that reads whether, not when, past actions happened could use.
- ``timing-side`` and ``occurrence-side``: the same two, but every video (history and target) known only by its two
  side features: an event at second t is spread over the opening topic (with the chance that the opening segment
  still runs at t) and the main-or-uniform topic otherwise. Nothing here needs the item ids.

    python benchmarks/simulator_ceiling.py --simulator-examples 1250000 --users 18800 \\
        --sizes 10000,30000,100000,300000 --test-users 6250 --output runs/ceiling

``--timing-parts`` also fits trees and a logistic regression on cumulative groups of the ``timing`` set's statistics
(per-action topic rates matched with the target, then all actions' per topic, early leaves, history counts and
reflexes, watched fraction, the target's duration) at the largest size: which of them carry the ideal reader's lead,
and whether a linear model reads them (docs/results.md (e)).

Writes ``simulator_ceiling.json`` and ``.md`` under ``--output`` (atomically) and prints the table.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before sklearn's OpenMP pool starts

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded from elsewhere: the flag checkers beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _arguments import non_negative_int, positive_int, positive_int_list  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--simulator-examples", type=positive_int, default=1_250_000,
                        help="num_examples of the simulation the curve used (it sets the split times only through "
                             "the config; users are drawn by index); default %(default)s")
    parser.add_argument("--simulator-seed", type=non_negative_int, default=0, help="default %(default)s")
    parser.add_argument("--users", type=positive_int, default=18_800,
                        help="train on examples of users [0, USERS) (~16 train examples each; 18,800 users give "
                             "over 300,000); default %(default)s")
    parser.add_argument("--test-users", type=positive_int, default=6_250,
                        help="test on the test examples of users [0, TEST_USERS): 6,250 = the curve's --max-test-examples "
                             "12366 rows; default %(default)s")
    parser.add_argument("--sizes", type=positive_int_list, default="10000,30000,100000,300000",
                        help="comma-separated training sizes (each <= the train pool); default %(default)s")
    parser.add_argument("--subset-seed", type=non_negative_int, default=0, help="default %(default)s")
    parser.add_argument("--timing-parts", action="store_true",
                        help="also fit trees and a logistic regression on cumulative groups of the timing set's "
                             "statistics at the largest size: which carry the ideal reader's lead")
    parser.add_argument("--output", required=True, type=Path, help="folder of simulator_ceiling.json / .md")
    return parser


if __name__ == "__main__":  # a bad value is refused now, before the slow imports below (sklearn, the simulator)
    build_parser().parse_args()

import numpy as np  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from a2gen_hf.data.simulator import (  # noqa: E402
    ENGAGEMENT_ACTIONS,
    SimulatorConfig,
    VideoCatalog,
    build_catalog,
    simulate_user,
)
from a2gen_hf.output_folders import write_text_atomically  # noqa: E402

FEATURE_SETS = ("latent", "timing", "timing-visible", "occurrence", "timing-side", "occurrence-side")
REFLEX_SECONDS = 1.0  # likes in a video's first second are reflexes (docs/simulator.md), not topic reactions


def topic_shares(config: SimulatorConfig, catalog: VideoCatalog) -> np.ndarray:
    """``(num_items, K)``: the share of each video's seconds that shows each topic."""
    counts = np.stack([(catalog.tick_topics == k).sum(axis=1) for k in range(config.num_topics)], axis=1)
    return counts / catalog.durations[:, None]


def visible_shares(config: SimulatorConfig, catalog: VideoCatalog) -> np.ndarray:
    """``(num_items, K)``: the topic shares expected from the two side features alone: the opening segment shows
    ``opening_topic``; each later one the main topic with ``main_topic_prob``, else a uniform topic (mean segment
    count)."""
    k = config.num_topics
    later = (config.min_segments + config.max_segments) / 2 - 1
    main = np.eye(k)[catalog.main_topics]
    opening = np.eye(k)[catalog.segment_topics[:, 0]]
    later_share = config.main_topic_prob * main + (1 - config.main_topic_prob) / k
    return (opening + later * later_share) / (1 + later)


def side_topic_at(config: SimulatorConfig, catalog: VideoCatalog, items: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """``(n, K)``: the topic distribution on screen at second ``seconds[i]`` of video ``items[i]`` as the side
    features alone tell it: the opening topic while the opening segment may still run (its length is uniform in
    ``[min_segment_seconds, max_segment_seconds]``), else the main topic with ``main_topic_prob``, else uniform."""
    k, low, high = config.num_topics, config.min_segment_seconds, config.max_segment_seconds
    opening_runs = np.clip((high - np.floor(seconds)) / (high - low + 1), 0.0, 1.0)[:, None]
    later = config.main_topic_prob * np.eye(k)[catalog.main_topics[items]] + (1 - config.main_topic_prob) / k
    return opening_runs * np.eye(k)[catalog.segment_topics[items, 0]] + (1 - opening_runs) * later


def session_statistics(catalog: VideoCatalog, items: np.ndarray, timelines, num_topics: int,
                       config: SimulatorConfig | None = None) -> dict[str, np.ndarray]:
    """Per session (rows of ``items``): events per action attributed to the topic on screen ``(n, 4, K)``, counts
    per action ``(n, 4)``, reflex likes ``(n,)``, seconds watched per topic ``(n, K)``, the topic on screen at an
    early leave ``(n, K)`` and the watched fraction ``(n,)``; with ``config``, also ``timed_side``, ``watched_side``
    and ``left_on_side``: the same attributed by the side features alone (``side_topic_at``)."""
    n = len(items)
    timed = np.zeros((n, len(ENGAGEMENT_ACTIONS), num_topics))
    counts = np.zeros((n, len(ENGAGEMENT_ACTIONS)))
    reflexes = np.zeros(n)
    left_on = np.zeros((n, num_topics))
    watched_fraction = np.zeros(n)
    ticks = np.arange(catalog.tick_topics.shape[1])
    topics = catalog.tick_topics[items]  # (n, D), -1 after the end
    leave_seconds = np.array([timeline[1][-1] for timeline in timelines])
    seen = (ticks[None, :] < leave_seconds[:, None]) & (topics >= 0)
    watched = np.stack([((topics == k) & seen).sum(axis=1) for k in range(num_topics)], axis=1).astype(float)
    durations = catalog.durations[items]
    for row, (ids, seconds) in enumerate(timelines):
        for action_id, moment in zip(ids[1:-1], seconds[1:-1]):
            action = action_id - 2  # ids: start 1, like 2 .. comment 5, leave 6
            counts[row, action] += 1
            if moment < REFLEX_SECONDS:
                reflexes[row] += 1
            else:
                timed[row, action, topics[row, int(moment)]] += 1
        if seconds[-1] < durations[row]:
            left_on[row, topics[row, int(seconds[-1])]] += 1
        watched_fraction[row] = seconds[-1] / durations[row]
    stats = {"timed": timed, "counts": counts, "reflexes": reflexes, "watched": watched, "left_on": left_on,
             "watched_fraction": watched_fraction}
    if config is not None:
        stats["timed_side"] = np.zeros_like(timed)
        stats["left_on_side"] = np.zeros_like(left_on)
        stats["watched_side"] = np.zeros_like(watched)
        for row, (ids, seconds) in enumerate(timelines):
            on_screen = ticks[seen[row]]
            stats["watched_side"][row] = side_topic_at(config, catalog, np.full(len(on_screen), items[row]),
                                                       on_screen.astype(float)).sum(axis=0)
            moments = [(action_id - 2, moment) for action_id, moment in zip(ids[1:-1], seconds[1:-1])
                       if moment >= REFLEX_SECONDS]
            if moments:
                spread = side_topic_at(config, catalog, np.full(len(moments), items[row]),
                                       np.array([moment for _, moment in moments]))
                for (action, _), distribution in zip(moments, spread):
                    stats["timed_side"][row, action] += distribution
            if seconds[-1] < durations[row]:
                stats["left_on_side"][row] = side_topic_at(config, catalog, items[row:row + 1],
                                                           np.array([seconds[-1]]))[0]
    return stats


def window_sums(values: np.ndarray, history: int, targets: int) -> np.ndarray:
    """Sum over the ``history`` sessions before each target: row j sums sessions ``[j, j + history)``."""
    cumulative = np.concatenate([np.zeros((1, *values.shape[1:])), np.cumsum(values, axis=0)])
    return cumulative[history:history + targets] - cumulative[:targets]


def user_features(config: SimulatorConfig, catalog: VideoCatalog, shares: np.ndarray, visible: np.ndarray,
                  user_index: int) -> tuple[list[str], dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """One user's target examples: their splits, a feature matrix per feature set, the occurrence labels ``(T, 4)``
    and the oracle probabilities ``(T, 4)``."""
    user = simulate_user(config, catalog, user_index)
    h, k = config.history_length, config.num_topics
    t = len(user.oracle_probs)
    stats = session_statistics(catalog, user.items, user.timelines, k, config)
    sums = {name: window_sums(value, h, t) for name, value in stats.items()}
    history_shares = shares[user.items]  # (H + T, K)
    exposure = window_sums(history_shares, h, t) + 1.0  # (T, K): videos' worth of each topic seen
    watched = sums["watched"] + 1.0
    occurrence_taste = window_sums(stats["counts"][:, :, None] * history_shares[:, None, :], h, t) / exposure[:, None]
    timing_taste = sums["timed"] / watched[:, None, :]  # (T, 4, K)
    dislike = sums["left_on"] / watched
    targets = user.items[h:]
    target_full, target_visible = shares[targets], visible[targets]
    durations = catalog.durations[targets][:, None].astype(float)
    segments = (catalog.segment_seconds[targets] > 0).sum(axis=1)[:, None].astype(float)

    def matched(taste: np.ndarray, target: np.ndarray) -> np.ndarray:  # (T, 4, K) x (T, K) -> (T, 4 + 1 + K)
        overall = taste.sum(axis=1)
        return np.concatenate([(taste * target[:, None, :]).sum(-1), (overall * target).sum(-1, keepdims=True),
                               overall * target], axis=1)

    history_scalars = np.concatenate([sums["counts"], sums["reflexes"][:, None]], axis=1)
    timing_scalars = np.concatenate([sums["watched_fraction"][:, None] / h, sums["left_on"].sum(1, keepdims=True)], 1)
    features = {
        "timing": np.concatenate([matched(timing_taste, target_full), (dislike * target_full).sum(-1, keepdims=True),
                                  history_scalars, timing_scalars, durations, segments], axis=1),
        "timing-visible": np.concatenate([matched(timing_taste, target_visible),
                                          (dislike * target_visible).sum(-1, keepdims=True), history_scalars,
                                          timing_scalars, durations], axis=1),
        "occurrence": np.concatenate([matched(occurrence_taste, target_full), sums["counts"], durations, segments],
                                     axis=1),
    }
    side_exposure = window_sums(visible[user.items], h, t) + 1.0
    side_occurrence = window_sums(stats["counts"][:, :, None] * visible[user.items][:, None, :], h, t)
    side_watched = sums["watched_side"] + 1.0
    features["timing-side"] = np.concatenate([
        matched(sums["timed_side"] / side_watched[:, None, :], target_visible),
        (sums["left_on_side"] / side_watched * target_visible).sum(-1, keepdims=True), history_scalars,
        timing_scalars, durations], axis=1)
    features["occurrence-side"] = np.concatenate([
        matched(side_occurrence / side_exposure[:, None], target_visible), sums["counts"], durations], axis=1)
    profile = user.profile
    traits = np.tile([profile.reflex_like_prob, profile.leave_hazard, float(profile.late_reactor)], (t, 1))
    features["latent"] = np.concatenate([(profile.tastes * target_full).sum(-1, keepdims=True),
                                         profile.tastes * target_full, traits, durations, segments], axis=1)
    labels = np.array([[action_id in ids for action_id in range(2, 2 + len(ENGAGEMENT_ACTIONS))]
                       for ids, _ in user.timelines[h:]], dtype=np.int8)
    splits = [config.split_of(int(start)) for start in user.session_starts[h:]]
    return splits, features, labels, user.oracle_probs[:, 1:1 + len(ENGAGEMENT_ACTIONS)]


def gather(config: SimulatorConfig, users: int, test_users: int) -> dict[str, dict[str, np.ndarray]]:
    """Train examples of users ``[0, users)`` and test examples of users ``[0, test_users)``, in the simulator's
    row order (user by user, sessions in time order), like the data folder's splits."""
    catalog = build_catalog(config)
    shares, visible = topic_shares(config, catalog), visible_shares(config, catalog)
    rows: dict[str, dict[str, list]] = {split: {"labels": [], "oracle": [], **{f: [] for f in FEATURE_SETS}}
                                        for split in ("train", "test")}
    for user_index in range(max(users, test_users)):
        splits, features, labels, oracle_probs = user_features(config, catalog, shares, visible, user_index)
        for split in ("train", "test"):
            if (split == "train" and user_index >= users) or (split == "test" and user_index >= test_users):
                continue
            keep = np.array([s == split for s in splits])
            if not keep.any():
                continue
            rows[split]["labels"].append(labels[keep])
            rows[split]["oracle"].append(oracle_probs[keep])
            for name in FEATURE_SETS:
                rows[split][name].append(features[name][keep])
    return {split: {name: np.concatenate(parts) for name, parts in columns.items()} for split, columns in rows.items()}


def score_actions(features: np.ndarray, labels: np.ndarray, test_features: np.ndarray, test_labels: np.ndarray,
                  oracle_auc: dict, learner: str = "trees") -> dict:
    """One model per engagement action (``"trees"``: gradient-boosted trees; ``"logistic regression"`` on standardised
    columns) fitted on ``features`` / ``labels`` `(n, 4)`: its test AUC per action, their mean and the mean share of
    the oracle's AUC lift."""
    auc = {}
    for a, action in enumerate(ENGAGEMENT_ACTIONS):
        if learner == "trees":
            model = HistGradientBoostingClassifier(max_iter=300, early_stopping=True, random_state=0)
            scores = model.fit(features, labels[:, a]).predict_proba(test_features)[:, 1]
        else:
            scaler = StandardScaler().fit(features)
            model = LogisticRegression(max_iter=3000).fit(scaler.transform(features), labels[:, a])
            scores = model.decision_function(scaler.transform(test_features))
        auc[action] = float(roc_auc_score(test_labels[:, a], scores))
    share = float(np.mean([(auc[x] - 0.5) / (oracle_auc[x] - 0.5) for x in ENGAGEMENT_ACTIONS]))
    return {"auc": auc, "mean_auc": float(np.mean(list(auc.values()))), "share_of_oracle_lift": share}


def fit_and_score(train: dict, test: dict, sizes: list[int], subset_seed: int, oracle_auc: dict) -> dict:
    """Test AUC per feature set, size and action, and the mean's share of the oracle's AUC lift."""
    order = np.random.default_rng(subset_seed).permutation(len(train["labels"]))
    results: dict = {}
    for name in FEATURE_SETS:
        for size in sizes:
            rows = np.sort(order[:size])
            started = time.perf_counter()
            cell = score_actions(train[name][rows], train["labels"][rows], test[name], test["labels"], oracle_auc)
            results.setdefault(name, {})[str(size)] = {**cell, "seconds": time.perf_counter() - started}
            print(f"{name} n={size}: mean AUC {cell['mean_auc']:.4f}, share of the oracle's lift "
                  f"{cell['share_of_oracle_lift']:.3f}", flush=True)
    return results


def timing_parts(num_topics: int) -> dict[str, int]:
    """The ``timing`` set's columns as cumulative groups, in the order :func:`user_features` lays them out: each name
    -> the number of leading columns it uses (the last is the whole set)."""
    matched = len(ENGAGEMENT_ACTIONS) + 1 + num_topics
    history = len(ENGAGEMENT_ACTIONS) + 1
    return {
        "per-action rates matched with the target": len(ENGAGEMENT_ACTIONS),
        "+ all actions' rates, per topic": matched,
        "+ early leaves on the target's topics": matched + 1,
        "+ history counts per action and reflexes": matched + 1 + history,
        "+ watched fraction and early leaves": matched + 1 + history + 2,
        "+ the target's duration and segments (all)": matched + 1 + history + 4,
    }


def fit_timing_parts(train: dict, test: dict, size: int, subset_seed: int, oracle_auc: dict, num_topics: int) -> dict:
    """Trees and a logistic regression (standardised columns) on each cumulative group of :func:`timing_parts`, at one
    training size: which of the ideal reader's statistics carry its lead, and whether a linear model reads them."""
    rows = np.sort(np.random.default_rng(subset_seed).permutation(len(train["labels"]))[:size])
    results: dict = {}
    for name, width in timing_parts(num_topics).items():
        features, test_features = train["timing"][rows, :width], test["timing"][:, :width]
        for learner in ("trees", "logistic regression"):
            cell = score_actions(features, train["labels"][rows], test_features, test["labels"], oracle_auc, learner)
            results.setdefault(name, {})[learner] = cell
            print(f"timing parts, {name} [{learner}] n={size}: mean AUC {cell['mean_auc']:.4f} "
                  f"({cell['share_of_oracle_lift']:.3f})", flush=True)
    return results


def markdown(report: dict) -> str:
    sizes = report["sizes"]
    lines = [
        f"Test examples: {report['num_test_examples']} (users 0..{report['test_users'] - 1}); train pool: "
        f"{report['num_train_pool']} examples of users 0..{report['users'] - 1}. Oracle test AUC: "
        + ", ".join(f"{a} {v:.4f}" for a, v in report["oracle"]["auc"].items())
        + f"; mean {report['oracle']['mean_auc']:.4f}.", "",
        "Test mean AUC (share of the oracle's AUC lift):", "",
        "| features | " + " | ".join(f"{size:,}" for size in sizes) + " |", "| --- " * (len(sizes) + 1) + "|",
    ]
    for name in FEATURE_SETS:
        cells = [report["results"][name][str(size)] for size in sizes]
        lines.append(f"| {name} | " + " | ".join(f"{c['mean_auc']:.4f} ({c['share_of_oracle_lift']:.2f})"
                                                  for c in cells) + " |")
    lines += ["", "Per action at the largest size:", "", "| features | " + " | ".join(ENGAGEMENT_ACTIONS) + " |",
              "| --- " * (len(ENGAGEMENT_ACTIONS) + 1) + "|"]
    for name in FEATURE_SETS:
        auc = report["results"][name][str(sizes[-1])]["auc"]
        lines.append(f"| {name} | " + " | ".join(f"{auc[a]:.4f}" for a in ENGAGEMENT_ACTIONS) + " |")
    if report.get("timing_parts"):
        lines += ["", f"The timing set's statistics, cumulatively, at {report['timing_parts_size']:,} training examples "
                  "(test mean AUC, share of the oracle's lift):", "",
                  "| statistics | trees | logistic regression |", "| --- | --- | --- |"]
        for name, cells in report["timing_parts"].items():
            lines.append(f"| {name} | " + " | ".join(
                f"{cells[learner]['mean_auc']:.4f} ({cells[learner]['share_of_oracle_lift']:.2f})"
                for learner in ("trees", "logistic regression")) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    sizes = sorted(set(args.sizes))
    config = SimulatorConfig(num_examples=args.simulator_examples, seed=args.simulator_seed)
    if max(args.users, args.test_users) > config.num_users:
        parser.error(f"--users / --test-users exceed the simulation's {config.num_users} users "
                     f"(--simulator-examples {args.simulator_examples} / {config.examples_per_user} per user)")
    print(f"load {os.getloadavg()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}", flush=True)
    started = time.perf_counter()
    data = gather(config, args.users, args.test_users)
    train, test = data["train"], data["test"]
    if sizes[-1] > len(train["labels"]):
        parser.error(f"--sizes {sizes[-1]} exceeds the {len(train['labels'])} train examples of {args.users} users")
    print(f"features of {len(train['labels'])} train and {len(test['labels'])} test examples in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    oracle_auc = {a: float(roc_auc_score(test["labels"][:, i], test["oracle"][:, i]))
                  for i, a in enumerate(ENGAGEMENT_ACTIONS)}
    report = {
        "simulator_examples": args.simulator_examples, "simulator_seed": args.simulator_seed, "users": args.users,
        "test_users": args.test_users, "sizes": sizes, "subset_seed": args.subset_seed,
        "num_train_pool": len(train["labels"]), "num_test_examples": len(test["labels"]),
        "oracle": {"auc": oracle_auc, "mean_auc": float(np.mean(list(oracle_auc.values())))},
        "results": fit_and_score(train, test, sizes, args.subset_seed, oracle_auc),
    }
    if args.timing_parts:
        report["timing_parts_size"] = sizes[-1]
        report["timing_parts"] = fit_timing_parts(train, test, sizes[-1], args.subset_seed, oracle_auc,
                                                  config.num_topics)
    report.update(load_at_end=os.getloadavg(), omp_num_threads=os.environ.get("OMP_NUM_THREADS"))
    args.output.mkdir(parents=True, exist_ok=True)
    write_text_atomically(args.output / "simulator_ceiling.json", json.dumps(report, indent=2))
    write_text_atomically(args.output / "simulator_ceiling.md", markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
