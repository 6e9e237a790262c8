"""A seeded generative simulator of short-video sessions in which the *timing* of actions carries intent.

Real logs with actions timed inside a video are private, so this module generates them. The process (documented
with its formulas in ``docs/simulator.md``):

* a video is a sequence of segments, each with a topic and an integer duration in seconds;
* a user has latent tastes over topics, a patience, a reaction habit (quick or late within a segment) and may be a
  "habitual liker" who likes by reflex in the first second of any video;
* a session is simulated second by second ("ticks"): in tick ``t`` each not-yet-done engagement action fires with a
  hazard that depends on the taste for the topic of the segment being watched, then the user leaves with a hazard
  that also depends on it;
* every user's history is made of earlier sessions of the same process, so *when* a past like happened tells which
  segment (topic) triggered it, while *whether* it happened is ambiguous between topics and reflex.

The hazards are known, so the oracle (true P(action happens) and E[time | it happens]) is computed exactly by
summing over ticks: no Monte-Carlo is needed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict, Features, Value
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from ..configuration_a2gen import SHORT_VIDEO_ACTIONS
from ..output_folders import folder_output_problem
from ..tokenization_a2gen import A2GenActionTokenizer
from ..version import __version__
from .buckets import BUCKET_FIELDS, bucket_record, data_sized_buckets, format_bucket_record
from .examples import ORACLE_FEATURES, SIMULATED_FEATURES, SPLITS
from .folder import load_parquet, replacing_data_folder, shard_path, write_data_summary  # noqa: F401  (load_parquet: old home)
from .validation import LATEST_PLAUSIBLE_SECONDS

# The actions a user can take between start and leave, in vocabulary order.
ENGAGEMENT_ACTIONS = tuple(SHORT_VIDEO_ACTIONS[1:-1])
ITEM_SIDE_FIELDS = ("category", "opening_topic")
# Engagement actions happen in the first half of a tick, the leave in the second half: an action can share the
# leave's tick and still come before it, and the expected times below are exact.
ACTION_TICK_OFFSET = 0.25
LEAVE_TICK_OFFSET = 0.75
SECONDS_PER_DAY = 86_400

# The schema of the simulator's examples (``data/examples.py``: the examples' columns plus the oracle's).
ORACLE_COLUMNS = ORACLE_FEATURES
FEATURES = SIMULATED_FEATURES
ARROW_SCHEMA = FEATURES.arrow_schema


class SimulatorConfigError(ValueError):
    """Raised when a :class:`SimulatorConfig` holds values the simulator cannot use."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _kind_problems(config: Any) -> list[str]:
    """What in ``config`` is not of its field's kind: integers (a seed >= 0) where ``int`` is declared (before:
    10.5 examples or a seed of -1 failed inside the generator as "An error occurred while generating the dataset"),
    finite numbers where ``float`` is (NaN and inf passed every range check), pairs and mappings of finite numbers."""
    problems = []
    for item in fields(config):
        value, kind = getattr(config, item.name), str(item.type)
        if value is None and kind.endswith("| None"):
            continue
        if kind.startswith("int"):
            if not (_is_number(value) and isinstance(value, (int, np.integer))) or (item.name == "seed" and value < 0):
                problems.append(f"{item.name}={value!r} must be an integer" + (" >= 0." if item.name == "seed" else "."))
        elif kind == "float":
            if not (_is_number(value) and math.isfinite(value)):
                problems.append(f"{item.name}={value!r} must be a finite number.")
        elif kind.startswith(("tuple[float", "dict[str, float]")):
            values = value.values() if isinstance(value, dict) else value
            if not all(_is_number(number) and math.isfinite(number) for number in values):
                problems.append(f"{item.name}={value!r} must hold finite numbers.")
    return problems


@dataclass
class SimulatorConfig:
    """
    Sizes and parameters of the short-video session simulator. The defaults give a ~40k-example demo whose signal
    a small model can learn in minutes on 2 CPU cores.

    Args:
        num_examples: total number of (user, target video) examples over all splits.
        examples_per_user: target sessions per user; ``num_users = ceil(num_examples / examples_per_user)``.
        history_length: earlier sessions in each example's history (every user first watches this many
            "warm-up" videos before the simulated window, so every example has a full history).
        num_items / num_topics: catalogue size and number of latent topics.
        min_segments / max_segments: segments per video (inclusive range, uniform).
        min_segment_seconds / max_segment_seconds: integer duration of a segment in seconds (inclusive, uniform).
        main_topic_prob: probability that a segment shows its video's main topic (else a uniform topic).
        popularity_exponent: exposure probability of the item of popularity rank ``r`` is ``∝ (r + 1) ** -exponent``.
        num_favorite_topics: topics a user really cares for.
        favorite_taste_range / other_taste_range: uniform ranges of the taste ``w`` in [0, 1] for favourite and
            other topics.
        trigger_probabilities: for each engagement action, the probability ``rho_a`` that a fully watched segment
            of taste ``w`` triggers it is ``rho_a * w``.
        quick_reactor_fraction: share of users who react in the first half of a segment (the others react in its
            second half).
        habitual_liker_fraction / habitual_like_range: share of users who like by reflex in the first second of a
            video, and the range of that reflex probability.
        leave_hazard_range: per-second leave hazard ``lambda_u`` of a user (patience), uniform in this range.
        leave_taste_sensitivity: ``kappa`` in ``lambda = lambda_u * exp(kappa * (0.5 - w))``.
        max_leave_hazard: cap on the per-second leave hazard.
        validation_fraction / test_fraction: share of the simulated time window that goes to each split; the
            train split is the earliest part, test the latest.
        window_days: length of the simulated time window holding the target sessions.
        start_timestamp: Unix seconds at which the window starts.
        seed: seed of every random draw; the same config always gives the same rows.
        user_buckets / item_buckets / side_feature_buckets: hash-bucket counts of the tokenizer (embedding rows);
            ``None`` (default): sized from the data, :func:`~a2gen_hf.data.buckets.buckets_for` the number of users,
            videos and side-feature values (see :func:`distinct_counts`).
    """

    num_examples: int = 40_000
    examples_per_user: int = 20
    history_length: int = 20
    num_items: int = 2_000
    num_topics: int = 8
    min_segments: int = 3
    max_segments: int = 6
    min_segment_seconds: int = 3
    max_segment_seconds: int = 10
    main_topic_prob: float = 0.35
    popularity_exponent: float = 0.8
    num_favorite_topics: int = 2
    favorite_taste_range: tuple[float, float] = (0.7, 1.0)
    other_taste_range: tuple[float, float] = (0.0, 0.15)
    trigger_probabilities: dict[str, float] = field(
        default_factory=lambda: {"like": 0.5, "follow": 0.08, "forward": 0.12, "comment": 0.2}
    )
    quick_reactor_fraction: float = 0.5
    habitual_liker_fraction: float = 0.3
    habitual_like_range: tuple[float, float] = (0.3, 0.6)
    leave_hazard_range: tuple[float, float] = (0.01, 0.05)
    leave_taste_sensitivity: float = 2.5
    max_leave_hazard: float = 0.9
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    window_days: float = 28.0
    start_timestamp: int = 1_700_000_000
    seed: int = 0
    user_buckets: int | None = None
    item_buckets: int | None = None
    side_feature_buckets: int | None = None

    def __post_init__(self):
        self.favorite_taste_range = tuple(self.favorite_taste_range)
        self.other_taste_range = tuple(self.other_taste_range)
        self.habitual_like_range = tuple(self.habitual_like_range)
        self.leave_hazard_range = tuple(self.leave_hazard_range)
        self.trigger_probabilities = dict(self.trigger_probabilities)
        problems = _kind_problems(self)
        if problems:  # before any comparison below (a string or NaN there would fail or pass wrongly)
            raise SimulatorConfigError("Invalid SimulatorConfig:\n  - " + "\n  - ".join(problems))
        for name in (
            "num_examples", "examples_per_user", "history_length", "num_items", "num_topics", "min_segments",
            "min_segment_seconds", "num_favorite_topics", "user_buckets", "item_buckets", "side_feature_buckets",
        ):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                problems.append(f"{name}={getattr(self, name)} must be a positive integer.")
        for name in BUCKET_FIELDS:  # ids hash into rows 1 .. buckets - 1 (0 is padding)
            if getattr(self, name) == 1:
                problems.append(f"{name}=1 must be >= 2: row 0 is padding, ids hash into the rows after it.")
        for low, high in (("min_segments", "max_segments"), ("min_segment_seconds", "max_segment_seconds")):
            if getattr(self, high) < getattr(self, low):
                problems.append(f"{high}={getattr(self, high)} must be >= {low}={getattr(self, low)}.")
        if self.min_segment_seconds < 3:
            problems.append(
                f"min_segment_seconds={self.min_segment_seconds} must be >= 3: the first second of a video is kept "
                "for reflex likes, and quick reactors react in the first half of a segment (its first ceil(s / 2) "
                "seconds), so a first segment of 2 seconds would leave them no second to react to its topic."
            )
        if self.num_favorite_topics > self.num_topics:
            problems.append(  # said from num_topics, which the command line sets (num_favorite_topics: Python only)
                f"num_topics={self.num_topics} must be >= num_favorite_topics={self.num_favorite_topics}: each user's "
                "favourite topics are drawn from the topics."
            )
        for name in (
            "main_topic_prob", "quick_reactor_fraction", "habitual_liker_fraction", "max_leave_hazard",
            "validation_fraction", "test_fraction",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name}={getattr(self, name)} must be in [0, 1].")
        for name in ("favorite_taste_range", "other_taste_range", "habitual_like_range", "leave_hazard_range"):
            value = getattr(self, name)
            if len(value) != 2 or not 0.0 <= value[0] <= value[1] <= 1.0:
                problems.append(f"{name}={value} must be a (low, high) pair with 0 <= low <= high <= 1.")
        if sorted(self.trigger_probabilities) != sorted(ENGAGEMENT_ACTIONS):
            problems.append(
                f"trigger_probabilities has keys {sorted(self.trigger_probabilities)}; give exactly one probability "
                f"for each of {list(ENGAGEMENT_ACTIONS)}."
            )
        elif not all(0.0 <= p <= 1.0 for p in self.trigger_probabilities.values()):
            problems.append(f"trigger_probabilities={self.trigger_probabilities} must all be in [0, 1].")
        if self.validation_fraction + self.test_fraction >= 1.0:
            problems.append(
                f"validation_fraction + test_fraction = {self.validation_fraction + self.test_fraction} must be < 1 "
                "so that the train split is not empty."
            )
        if self.popularity_exponent < 0 or self.leave_taste_sensitivity < 0 or self.window_days <= 0:
            problems.append("popularity_exponent and leave_taste_sensitivity must be >= 0 and window_days > 0.")
        first = self.start_timestamp - self.history_length * SECONDS_PER_DAY  # the warm-up sessions come before
        last = self.start_timestamp + self.window_days * SECONDS_PER_DAY
        if first < 0 or last > LATEST_PLAUSIBLE_SECONDS:
            problems.append(
                f"start_timestamp={self.start_timestamp} with window_days={self.window_days} and history_length="
                f"{self.history_length} puts sessions from {first:.0f} to {last:.0f} Unix seconds; they must lie from "
                f"0 (1970) to {LATEST_PLAUSIBLE_SECONDS:.0f} (the year 5000, the latest time a2gen prepare reads)."
            )
        if problems:
            raise SimulatorConfigError("Invalid SimulatorConfig:\n  - " + "\n  - ".join(problems))

    @property
    def num_users(self) -> int:
        return math.ceil(self.num_examples / self.examples_per_user)

    @property
    def action_names(self) -> list[str]:
        return list(SHORT_VIDEO_ACTIONS)

    def targets_of(self, user_index: int) -> int:
        """Target sessions of user ``user_index`` (the last user takes the remainder of ``num_examples``)."""
        return min(self.examples_per_user, self.num_examples - user_index * self.examples_per_user)

    def split_of(self, session_start: int) -> str:
        """The split of a session that starts at ``session_start`` (Unix seconds): the time window is cut in three."""
        window = self.window_days * SECONDS_PER_DAY
        position = (session_start - self.start_timestamp) / window
        if position < 1.0 - self.validation_fraction - self.test_fraction:
            return "train"
        return "validation" if position < 1.0 - self.test_fraction else "test"

    def to_dict(self) -> dict:
        return asdict(self)


def _rng(config: SimulatorConfig, *stream: int) -> np.random.Generator:
    # One independent stream per (purpose, user): rows do not depend on the order or sharding of generation.
    return np.random.default_rng([config.seed, *stream])


@dataclass
class VideoCatalog:
    """
    The simulated videos. ``M`` = ``max_segments``, ``D`` = the longest video in seconds.

    Attributes:
        segment_topics (`np.ndarray` of shape `(num_items, M)`): topic of each segment, -1 = no segment.
        segment_seconds (`np.ndarray` of shape `(num_items, M)`): duration of each segment, 0 = no segment.
        main_topics (`np.ndarray` of shape `(num_items,)`): the video's main topic (its "category").
        exposure (`np.ndarray` of shape `(num_items,)`): probability that a session shows the video.
        tick_topics (`np.ndarray` of shape `(num_items, D)`): topic shown during second ``t``, -1 after the end.
        tick_segments (`np.ndarray` of shape `(num_items, D)`): index of the segment shown during second ``t``.
        durations (`np.ndarray` of shape `(num_items,)`): video length in seconds.
        reaction_ticks (`np.ndarray` of shape `(2, num_items, D)`): for quick (0) and late (1) reactors, 1 / the
            number of reaction seconds of the segment if second ``t`` is one of them, else 0.
    """

    segment_topics: np.ndarray
    segment_seconds: np.ndarray
    main_topics: np.ndarray
    exposure: np.ndarray
    tick_topics: np.ndarray
    tick_segments: np.ndarray
    durations: np.ndarray
    reaction_ticks: np.ndarray

    @property
    def names(self) -> list[str]:
        return [f"video_{index:06d}" for index in range(len(self.durations))]

    def side_features(self, index: int) -> list[str]:
        """Raw side features of a video, in ``ITEM_SIDE_FIELDS`` order: main topic and first segment's topic."""
        return [f"topic_{self.main_topics[index]}", f"topic_{self.segment_topics[index, 0]}"]


# Bytes the catalogue's per-second tables take per video and second of the longest video (int64 and float64 tables
# of shape (num_items, longest video), with their temporaries): what build_catalog needs at its peak.
CATALOG_BYTES_PER_TICK = 96


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation (MemAvailable of /proc/meminfo), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_catalog_fits(config: SimulatorConfig, available: int | None = None, copies: int = 1) -> None:
    """Refuse a catalogue whose per-second tables (``num_items`` x the longest possible video, ``max_segments`` x
    ``max_segment_seconds`` seconds), ``copies`` times (one per worker process), need more memory than is available
    (the host's ``MemAvailable``: a container's own limit is not seen), before allocating them (before: a
    MemoryError deep in datasets' generator, or minutes of swapping)."""
    available = _available_memory() if available is None else available
    needed = copies * config.num_items * config.max_segments * config.max_segment_seconds * CATALOG_BYTES_PER_TICK
    if available is not None and needed > available:
        raise SimulatorConfigError(
            f"SimulatorConfig(num_items={config.num_items}, max_segments={config.max_segments}, max_segment_seconds="
            f"{config.max_segment_seconds}): the catalogue's per-second tables need about {needed / 2**30:.1f} GiB "
            f"(num_items x max_segments x max_segment_seconds x {CATALOG_BYTES_PER_TICK} bytes"
            + (f", in each of {copies} workers" if copies > 1 else "")
            + f"), more than the {available / 2**30:.1f} GiB available. Lower num_items (CLI: --num-items)"
            + (" or the workers (CLI: --workers)" if copies > 1 else "")
            + ", or in Python the videos' length (max_segments, max_segment_seconds)."
        )


def _segments_at(segment_ends: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """``(N, D)``: for each video (row of ``segment_ends`` `(N, S)`, non-decreasing) and second of ``ticks`` `(D,)`,
    how many of its segments have ended by then: one sorted search over all rows at once (row ``r``'s keys shifted
    by ``r`` x (the largest end + 1)), without the `(N, D, S)` comparison."""
    rows, segments = segment_ends.shape
    span = int(max(segment_ends.max(initial=0), ticks.max(initial=0))) + 1
    shift = np.arange(rows, dtype=np.int64)[:, None] * span
    ends = (segment_ends.astype(np.int64) + shift).ravel()
    found = np.searchsorted(ends, (ticks[None, :].astype(np.int64) + shift).ravel(), side="right")
    return found.reshape(rows, len(ticks)) - np.arange(rows, dtype=np.int64)[:, None] * segments


def build_catalog(config: SimulatorConfig) -> VideoCatalog:
    """Draw the videos of ``config`` (deterministic for its seed)."""
    check_catalog_fits(config)
    rng = _rng(config, 0)
    num_items, max_segments = config.num_items, config.max_segments
    num_segments = rng.integers(config.min_segments, config.max_segments + 1, size=num_items)
    present = np.arange(max_segments)[None, :] < num_segments[:, None]
    main_topics = rng.integers(0, config.num_topics, size=num_items)
    shows_main = rng.random((num_items, max_segments)) < config.main_topic_prob
    random_topics = rng.integers(0, config.num_topics, size=(num_items, max_segments))
    segment_topics = np.where(present, np.where(shows_main, main_topics[:, None], random_topics), -1)
    seconds = rng.integers(config.min_segment_seconds, config.max_segment_seconds + 1, size=(num_items, max_segments))
    segment_seconds = np.where(present, seconds, 0)
    popularity_rank = rng.permutation(num_items)
    exposure = (popularity_rank + 1.0) ** -config.popularity_exponent
    exposure /= exposure.sum()

    durations = segment_seconds.sum(axis=1)
    max_duration = int(durations.max())
    ticks = np.arange(max_duration)
    segment_ends = np.cumsum(segment_seconds, axis=1)
    tick_segments = np.minimum(_segments_at(segment_ends, ticks), max_segments - 1)
    inside = ticks[None, :] < durations[:, None]
    tick_topics = np.where(inside, np.take_along_axis(segment_topics, tick_segments, axis=1), -1)
    tick_length = np.take_along_axis(segment_seconds, tick_segments, axis=1)
    tick_offset = ticks[None, :] - (np.take_along_axis(segment_ends, tick_segments, axis=1) - tick_length)
    half = (tick_length + 1) // 2
    # Quick reactors react in the first half of a segment, late ones in its second half; second 0 of a video is
    # reserved for reflex likes, so no topic reaction happens there.
    quick = inside & (tick_offset < half) & (ticks[None, :] > 0)
    late = inside & (tick_offset >= tick_length - half)
    reaction_ticks = np.zeros((2, num_items, max_duration))
    for habit, active in enumerate((quick, late)):
        per_segment = np.zeros((num_items, max_segments))
        np.add.at(per_segment, (np.nonzero(active)[0], tick_segments[active]), 1.0)
        count = np.take_along_axis(per_segment, tick_segments, axis=1)
        reaction_ticks[habit] = np.where(active, 1.0 / np.maximum(count, 1.0), 0.0)
    return VideoCatalog(
        segment_topics=segment_topics,
        segment_seconds=segment_seconds,
        main_topics=main_topics,
        exposure=exposure,
        tick_topics=tick_topics,
        tick_segments=tick_segments,
        durations=durations,
        reaction_ticks=reaction_ticks,
    )


@dataclass
class UserProfile:
    """Latent traits of one simulated user (never written to the examples)."""

    tastes: np.ndarray  # (num_topics,) in [0, 1]
    leave_hazard: float
    late_reactor: bool
    reflex_like_prob: float


def draw_user(config: SimulatorConfig, rng: np.random.Generator) -> UserProfile:
    """Draw a user's tastes (favourite topics high, the others low), patience, reaction habit and reflex."""
    tastes = rng.uniform(*config.other_taste_range, size=config.num_topics)
    favorites = rng.choice(config.num_topics, size=config.num_favorite_topics, replace=False)
    tastes[favorites] = rng.uniform(*config.favorite_taste_range, size=config.num_favorite_topics)
    leave_hazard = rng.uniform(*config.leave_hazard_range)
    late_reactor = bool(rng.random() >= config.quick_reactor_fraction)
    habitual = rng.random() < config.habitual_liker_fraction
    reflex_like_prob = rng.uniform(*config.habitual_like_range) if habitual else 0.0
    return UserProfile(tastes, float(leave_hazard), late_reactor, float(reflex_like_prob))


def session_hazards(
    config: SimulatorConfig, catalog: VideoCatalog, user: UserProfile, items: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """
    Per-second hazards of ``user`` watching ``items`` (shape `(n,)`).

    Returns:
        action_hazards (`np.ndarray` of shape `(n, 4, D)`): probability that each engagement action (in
            ``ENGAGEMENT_ACTIONS`` order) fires in second ``t`` if not done yet and the user is still watching.
        leave_hazards (`np.ndarray` of shape `(n, D)`): probability of leaving in second ``t``; 0 after the end.
    """
    topics = catalog.tick_topics[items]
    inside = topics >= 0
    taste = np.where(inside, user.tastes[np.maximum(topics, 0)], 0.0)
    reaction = catalog.reaction_ticks[int(user.late_reactor), items]
    trigger = np.array([config.trigger_probabilities[name] for name in ENGAGEMENT_ACTIONS])
    # A segment fully watched triggers action a with probability rho_a * w, spread evenly over its reaction seconds.
    segment_prob = trigger[None, :, None] * taste[:, None, :]
    action_hazards = np.where(reaction[:, None, :] > 0, 1.0 - (1.0 - segment_prob) ** reaction[:, None, :], 0.0)
    action_hazards[:, ENGAGEMENT_ACTIONS.index("like"), 0] = user.reflex_like_prob
    leave = user.leave_hazard * np.exp(config.leave_taste_sensitivity * (0.5 - taste))
    leave_hazards = np.where(inside, np.minimum(leave, config.max_leave_hazard), 0.0)
    return action_hazards, leave_hazards


def _survival_before(hazards: np.ndarray) -> np.ndarray:
    """P(no event before tick t) for per-tick hazards along the last axis."""
    survival = np.cumprod(1.0 - hazards, axis=-1)
    return np.concatenate([np.ones_like(survival[..., :1]), survival[..., :-1]], axis=-1)


def oracle(
    action_hazards: np.ndarray, leave_hazards: np.ndarray, durations: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """
    Exact P(action happens) and E[seconds | it happens] for every action of the vocabulary, by summing over ticks.

    Returns two arrays of shape `(n, len(SHORT_VIDEO_ACTIONS))`, in vocabulary order (start: 1 and 0 s; leave: 1 and
    the expected leave time; NaN where an action can never happen).
    """
    ticks = np.arange(leave_hazards.shape[-1], dtype=np.float64)
    watching = _survival_before(leave_hazards)  # (n, D): still watching when tick t starts
    first_fire = _survival_before(action_hazards) * action_hazards * watching[:, None, :]  # (n, 4, D)
    action_prob = first_fire.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        action_seconds = (first_fire * (ticks + ACTION_TICK_OFFSET)).sum(axis=-1) / action_prob
    completed = np.prod(1.0 - leave_hazards, axis=-1)
    leave_seconds = (watching * leave_hazards * (ticks + LEAVE_TICK_OFFSET)).sum(axis=-1) + completed * durations
    n = len(durations)
    probs = np.concatenate([np.ones((n, 1)), action_prob, np.ones((n, 1))], axis=1)
    seconds = np.concatenate([np.zeros((n, 1)), action_seconds, leave_seconds[:, None]], axis=1)
    return probs, np.where(probs > 0, seconds, np.nan)


def sample_timelines(
    action_hazards: np.ndarray, leave_hazards: np.ndarray, durations: np.ndarray, rng: np.random.Generator
) -> list[tuple[list[int], list[float]]]:
    """
    Draw one session per row of the hazards: ``(action_ids, seconds)`` in time order, ``start`` at 0 s first and
    ``leave`` last (ids as in the design: ``SHORT_VIDEO_ACTIONS[i]`` has id ``i + 1``).
    """
    n, num_actions, num_ticks = action_hazards.shape
    fires = rng.random(action_hazards.shape) < action_hazards
    leaves = rng.random(leave_hazards.shape) < leave_hazards
    jitter = rng.random((n, num_actions + 1)) * 0.5
    first_action_tick = fires.argmax(axis=-1)
    left_early = leaves.any(axis=-1)
    leave_tick = np.where(left_early, leaves.argmax(axis=-1), num_ticks)
    happened = fires.any(axis=-1) & (first_action_tick <= leave_tick[:, None])
    action_seconds = first_action_tick + jitter[:, :num_actions]
    leave_seconds = np.where(left_early, leave_tick + 0.5 + jitter[:, -1], durations)
    start_id, leave_id = 1, len(SHORT_VIDEO_ACTIONS)
    engagement_ids = [SHORT_VIDEO_ACTIONS.index(name) + 1 for name in ENGAGEMENT_ACTIONS]
    timelines = []
    for row in range(n):
        events = sorted(
            (float(action_seconds[row, a]), engagement_ids[a]) for a in range(num_actions) if happened[row, a]
        )
        timelines.append(
            (
                [start_id, *(action for _, action in events), leave_id],
                [0.0, *(seconds for seconds, _ in events), float(leave_seconds[row])],
            )
        )
    return timelines


def distinct_counts(config: SimulatorConfig, catalog: VideoCatalog | None = None) -> dict[str, int]:
    """Distinct users, videos and side-feature values (categories + opening topics) the simulated examples hold."""
    catalog = catalog if catalog is not None else build_catalog(config)
    side_values = len(np.unique(catalog.main_topics)) + len(np.unique(catalog.segment_topics[:, 0]))
    return {"users": config.num_users, "items": config.num_items, "side_values": side_values}


def bucket_counts(config: SimulatorConfig, catalog: VideoCatalog | None = None) -> dict[str, int]:
    """The tokenizer's bucket counts: the config's where set, else sized from :func:`distinct_counts`."""
    fixed = {name: getattr(config, name) for name in BUCKET_FIELDS}
    if all(value is not None for value in fixed.values()):
        return {name: int(value) for name, value in fixed.items()}
    return data_sized_buckets(distinct_counts(config, catalog), fixed)


def build_tokenizer(config: SimulatorConfig, catalog: VideoCatalog | None = None) -> A2GenActionTokenizer:
    """The (not yet time-fitted) tokenizer whose hashing gives the simulated examples their ids."""
    return A2GenActionTokenizer(
        action_names=config.action_names, start_action="start", end_action="leave", **bucket_counts(config, catalog),
        side_feature_fields=list(ITEM_SIDE_FIELDS),
    )


@dataclass
class SimulatedUser:
    """
    One user's sessions: ``history_length`` warm-up sessions before the window, then the target sessions.
    ``n`` = sessions, ``T`` = target sessions, ``A`` = ``len(SHORT_VIDEO_ACTIONS)``.

    Attributes:
        items (`np.ndarray` of shape `(n,)`): catalogue index of each session's video.
        session_starts (`np.ndarray` of shape `(n,)`): Unix seconds, increasing.
        timelines: per session ``(action_ids, seconds)``, start first and leave last.
        oracle_probs / oracle_seconds (`np.ndarray` of shape `(T, A)`): the oracle of each target session.
    """

    index: int
    profile: UserProfile
    items: np.ndarray
    session_starts: np.ndarray
    timelines: list[tuple[list[int], list[float]]]
    oracle_probs: np.ndarray
    oracle_seconds: np.ndarray

    @property
    def name(self) -> str:
        return f"user_{self.index:06d}"


def simulate_user(config: SimulatorConfig, catalog: VideoCatalog, user_index: int) -> SimulatedUser:
    """Simulate every session of user ``user_index`` (deterministic for the config's seed and the index)."""
    rng = _rng(config, 1, user_index)
    profile = draw_user(config, rng)
    history_length = config.history_length
    num_targets = config.targets_of(user_index)
    items = rng.choice(config.num_items, size=history_length + num_targets, p=catalog.exposure)
    # Warm-up sessions fill the history in the `history_length` days before the window; targets lie in the window.
    warmup_offsets = np.sort(rng.uniform(0, history_length * SECONDS_PER_DAY, history_length))[::-1]
    target_offsets = np.sort(rng.uniform(0, config.window_days * SECONDS_PER_DAY, num_targets))
    starts = (config.start_timestamp + np.concatenate([-warmup_offsets, target_offsets])).astype(np.int64)
    action_hazards, leave_hazards = session_hazards(config, catalog, profile, items)
    durations = catalog.durations[items].astype(np.float64)
    timelines = sample_timelines(action_hazards, leave_hazards, durations, rng)
    targets = slice(history_length, None)
    probs, seconds = oracle(action_hazards[targets], leave_hazards[targets], durations[targets])
    return SimulatedUser(user_index, profile, items, starts, timelines, probs, seconds)


class _HashedCatalog:
    """Hashed ids of every video and of its side features, computed once per run."""

    def __init__(self, catalog: VideoCatalog, tokenizer: A2GenActionTokenizer):
        self.names = catalog.names
        self.item_ids = tokenizer.hash_items(self.names).tolist()
        raw_sides = [catalog.side_features(index) for index in range(len(self.names))]
        columns = [
            tokenizer.hash_side_features(field_name, [sides[column] for sides in raw_sides])
            for column, field_name in enumerate(ITEM_SIDE_FIELDS)
        ]
        self.side_ids = np.stack(columns, axis=1).tolist()


def _user_rows(
    config: SimulatorConfig, user: SimulatedUser, hashed: _HashedCatalog, user_id: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    item_ids = [hashed.item_ids[item] for item in user.items]
    side_ids = [hashed.side_ids[item] for item in user.items]
    action_ids = [timeline[0] for timeline in user.timelines]
    action_seconds = [timeline[1] for timeline in user.timelines]
    for target in range(len(user.oracle_probs)):
        session = config.history_length + target
        history = slice(target, session)  # the `history_length` sessions just before, most recent last
        session_start = int(user.session_starts[session])
        yield config.split_of(session_start), {
            "user": user.name,
            "item": hashed.names[user.items[session]],
            "user_id": user_id,
            "item_id": item_ids[session],
            "item_side_ids": side_ids[session],
            "history_item_ids": item_ids[history],
            "history_item_side_ids": side_ids[history],
            "history_action_ids": action_ids[history],
            "history_action_seconds": action_seconds[history],
            "action_ids": action_ids[session],
            "action_seconds": action_seconds[session],
            "session_start": session_start,
            "history_session_starts": [int(start) for start in user.session_starts[history]],
            "oracle_action_prob": user.oracle_probs[target].tolist(),
            "oracle_expected_seconds": user.oracle_seconds[target].tolist(),
        }


def iter_examples(
    config: SimulatorConfig, user_range: tuple[int, int] | None = None, progress: bool = False
) -> Iterator[tuple[str, dict[str, Any]]]:
    """
    Yield ``(split, row)`` for every example, user by user (a user's rows in time order), holding one user's sessions
    in memory at a time. Rows follow ``FEATURES`` (the schema of ``docs/design.md``).

    Args:
        config: the simulator configuration.
        user_range: ``(first, stop)`` user indices to generate (default: all users). A user's rows do not depend on
            which other users are generated, so ranges can be generated in parallel.
        progress: show a tqdm bar over users.
    """
    first, stop = user_range if user_range is not None else (0, config.num_users)
    users = range(max(first, 0), min(stop, config.num_users))
    catalog = build_catalog(config)
    tokenizer = build_tokenizer(config, catalog)
    hashed = _HashedCatalog(catalog, tokenizer)
    user_ids = tokenizer.hash_users([f"user_{index:06d}" for index in users]).tolist()
    # No tqdm object at all without progress: even a disabled one makes a multiprocessing lock, which a worker process
    # of simulate_to_parquet would leave behind.
    shown = tqdm(users, desc="simulating users") if progress else users
    for user_index, user_id in zip(shown, user_ids):
        yield from _user_rows(config, simulate_user(config, catalog, user_index), hashed, user_id)


class _SummaryAccumulator:
    """Split sizes, action counts, mean leave time, the train times (for the time statistics) and the test oracle,
    gathered batch by batch so that no split has to be in memory."""

    def __init__(self, config: SimulatorConfig):
        self.config = config
        num_actions = len(SHORT_VIDEO_ACTIONS)
        self.examples = dict.fromkeys(SPLITS, 0)
        self.action_counts = {split: np.zeros(num_actions + 1, dtype=np.int64) for split in SPLITS}
        self.leave_seconds = dict.fromkeys(SPLITS, 0.0)
        self.train_seconds: list[np.ndarray] = []
        self.test_parts: dict[str, list[np.ndarray]] = {"prob": [], "expected": [], "happened": [], "seconds": []}

    def update(self, split: str, table: pa.Table) -> None:
        num_rows, num_actions = table.num_rows, len(SHORT_VIDEO_ACTIONS)
        if num_rows == 0:
            return
        ids = pc.list_flatten(table.column("action_ids")).to_numpy()
        seconds = pc.list_flatten(table.column("action_seconds")).to_numpy().astype(np.float64)
        rows = pc.list_parent_indices(table.column("action_ids")).to_numpy()
        is_first = np.r_[True, rows[1:] != rows[:-1]]
        is_last = np.r_[rows[1:] != rows[:-1], True]
        self.examples[split] += num_rows
        self.action_counts[split] += np.bincount(ids, minlength=num_actions + 1)
        self.leave_seconds[split] += float(seconds[is_last].sum())
        if split == "train":
            self.train_seconds.append(seconds[~is_first])
        if split == "test":
            happened = np.zeros((num_rows, num_actions), dtype=bool)
            actual = np.full((num_rows, num_actions), np.nan)
            happened[rows, ids - 1] = True
            actual[rows, ids - 1] = seconds
            self.test_parts["happened"].append(happened)
            self.test_parts["seconds"].append(actual)
            for key, column in (("prob", "oracle_action_prob"), ("expected", "oracle_expected_seconds")):
                values = pc.list_flatten(table.column(column)).to_numpy().astype(np.float64)
                self.test_parts[key].append(values.reshape(num_rows, num_actions))

    def _oracle_quality(self) -> dict[str, Any]:
        quality: dict[str, Any] = {
            "split": "test",
            "method": "exact: sums over one-second ticks of the known hazards (no Monte-Carlo)",
            "auc": {},
            "mae_seconds": {},
        }
        if not self.test_parts["prob"]:
            return quality
        parts = {key: np.concatenate(values) for key, values in self.test_parts.items()}
        for column, name in enumerate(SHORT_VIDEO_ACTIONS):
            happened = parts["happened"][:, column]
            if name in ENGAGEMENT_ACTIONS:
                # scikit-learn, not metrics.auc (the package's one AUC): data sits below metrics and cannot import it
                both_classes = 0 < happened.sum() < len(happened)
                quality["auc"][name] = roc_auc_score(happened, parts["prob"][:, column]) if both_classes else None
            if name != SHORT_VIDEO_ACTIONS[0] and happened.any():
                errors = np.abs(parts["expected"][happened, column] - parts["seconds"][happened, column])
                quality["mae_seconds"][name] = float(errors.mean())
        return quality

    def summary(self, tokenizer: A2GenActionTokenizer) -> dict[str, Any]:
        """The run's summary; fits ``tokenizer``'s time statistics on the train split first."""
        if not self.train_seconds or sum(len(part) for part in self.train_seconds) == 0:
            raise ValueError(
                "The simulated train split is empty, so the time statistics cannot be fitted; raise num_examples or "
                "lower validation_fraction + test_fraction."
            )
        tokenizer.fit_time_statistics(np.concatenate(self.train_seconds))
        return {
            "source": "simulator",
            "seed": self.config.seed,
            "simulator": self.config.to_dict(),
            "users": self.config.num_users,
            "items": self.config.num_items,
            "examples": dict(self.examples),
            "action_frequencies": {
                split: {name: int(counts[index + 1]) for index, name in enumerate(SHORT_VIDEO_ACTIONS)}
                for split, counts in self.action_counts.items()
            },
            "mean_leave_seconds": {
                split: self.leave_seconds[split] / self.examples[split] if self.examples[split] else None
                for split in SPLITS
            },
            "time_log_mean": tokenizer.time_log_mean,
            "time_log_std": tokenizer.time_log_std,
            "time_statistics_fitted_on": "train split: known times of every action after the start",
            "oracle": self._oracle_quality(),
            **bucket_record(
                distinct_counts(self.config),
                {name: getattr(tokenizer, name) for name in BUCKET_FIELDS},
                {name: getattr(self.config, name) is None for name in BUCKET_FIELDS},
            ),
        }


def format_simulation_summary(summary: dict[str, Any]) -> str:
    """Human-readable lines: examples per split, action frequencies, mean leave time, oracle quality."""
    lines = [
        f"simulator: seed {summary['seed']}, {summary['users']} users, {summary['items']} videos",
        "examples: " + ", ".join(f"{split}={count}" for split, count in summary["examples"].items()),
    ]
    for split, counts in summary["action_frequencies"].items():
        total = max(summary["examples"][split], 1)
        lines.append(
            f"actions ({split}): " + ", ".join(f"{name}={count} ({count / total:.1%})" for name, count in counts.items())
        )
    lines.append(
        "mean leave time: "
        + ", ".join(f"{split}={seconds:.2f} s" for split, seconds in summary["mean_leave_seconds"].items() if seconds)
    )
    oracle_quality = summary["oracle"]
    if oracle_quality["auc"]:
        lines.append(
            "oracle AUC (test): "
            + ", ".join(f"{name}={auc:.4f}" for name, auc in oracle_quality["auc"].items() if auc is not None)
        )
        lines.append(
            "oracle time MAE (test, s): "
            + ", ".join(f"{name}={mae:.3f}" for name, mae in oracle_quality["mae_seconds"].items())
        )
    lines.append(f"time statistics (train): log_mean={summary['time_log_mean']:.4f}, log_std={summary['time_log_std']:.4f}")
    if (tables := format_bucket_record(summary)) is not None:
        lines.append(tables)
    return "\n".join(lines)


def _check_shard_size(shard_size: int) -> None:
    if shard_size < 1:
        raise ValueError(f"shard_size={shard_size} must be a positive number of examples per Parquet file.")


@dataclass
class SimulationResult:
    """What :func:`simulate` returns: the examples, the tokenizer (time statistics fitted on train), the summary."""

    dataset: DatasetDict
    tokenizer: A2GenActionTokenizer
    summary: dict[str, Any]
    progress: bool = field(default=True, repr=False)  # simulate's: also shows datasets' bar over the rows saved

    def save(self, output_dir: str | Path) -> Path:
        """Write the layout of the log converters: ``save_to_disk`` files, ``tokenizer/`` and ``a2gen_data.json``.
        The folder is replaced as a whole (:func:`replacing_data_folder`): an earlier data folder there leaves no
        file behind; a folder holding other files is refused."""
        with replacing_data_folder(output_dir, "a2gen simulate") as staging:
            # An empty split gets one (empty) shard: datasets writes none for it otherwise, and cannot load that.
            empty = {split: 1 for split, rows in self.dataset.items() if not len(rows)}
            with datasets_progress_bars(self.progress):
                self.dataset.save_to_disk(str(staging), num_shards=empty)
            write_data_summary(staging, self.tokenizer, self.summary)
        return Path(output_dir)

    def write_parquet(self, output_dir: str | Path, shard_size: int = 100_000) -> list[Path]:
        """Write ``{split}/part-NNNNN.parquet`` files of at most ``shard_size`` rows, ``tokenizer/`` and
        ``a2gen_data.json``, replacing the folder as :meth:`save` does; read them back with :func:`load_parquet`.
        Returns the Parquet files."""
        _check_shard_size(shard_size)
        written = []
        with replacing_data_folder(output_dir, "a2gen simulate") as staging:
            for split, dataset in self.dataset.items():
                (staging / split).mkdir(parents=True, exist_ok=True)
                for shard, table in enumerate(dataset.with_format("arrow").iter(batch_size=shard_size)):
                    written.append(shard_path(Path(output_dir), split, shard))
                    pq.write_table(table, shard_path(staging, split, shard))
            write_data_summary(staging, self.tokenizer, self.summary)
        return written


@contextmanager
def datasets_progress_bars(shown: bool) -> Iterator[None]:
    """datasets' own progress bars ("Generating train split", "Saving the dataset") off for the duration unless
    ``shown``; the state they were in is restored after."""
    if shown or not datasets.is_progress_bar_enabled():
        yield
        return
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.enable_progress_bars()


_SIMULATOR_CODE_DIGEST = hashlib.sha256(Path(__file__).read_bytes() + __version__.encode()).hexdigest()


def _tagged_rows(config: SimulatorConfig, progress: bool, code: str = "") -> Iterator[dict[str, Any]]:
    """Every example of ``config`` with its split; ``code`` (the simulator's source digest) only keys the cache."""
    for split, row in iter_examples(config, progress=progress):
        yield {**row, "split": split}


def simulate(config: SimulatorConfig | None = None, progress: bool = True, cache_dir: str | None = None) -> SimulationResult:
    """
    Simulate ``config`` (default :class:`SimulatorConfig`) into a ``DatasetDict`` built with
    ``Dataset.from_generator`` (rows go to Arrow files in ``cache_dir`` or the datasets cache, not to memory), fit
    the tokenizer's time statistics on the train split and summarise the run; ``progress`` shows a bar over users,
    and ``progress=False`` also hides datasets' own bars, here and in :meth:`SimulationResult.save`.
    """
    config = config or SimulatorConfig()
    check_catalog_fits(config)  # here, not inside the generator, where datasets would wrap the error in its own
    # The cache folder takes the generated rows: one that cannot (a read-only folder, /proc) is named here, not by
    # datasets' errno about a file of its own.
    problem = folder_output_problem(cache_dir) if cache_dir is not None else None
    if problem:
        raise ValueError(f"cache_dir={problem}")
    tagged_features = Features({**FEATURES, "split": Value("string")})
    # The simulator's own code is part of the cache key: datasets hashes the generator by reference and its keyword
    # arguments, so after a change of this module the same config returned the old code's rows from the cache.
    gen_kwargs = {"config": config, "progress": progress, "code": _SIMULATOR_CODE_DIGEST}
    with datasets_progress_bars(progress):
        tagged = Dataset.from_generator(_tagged_rows, features=tagged_features, gen_kwargs=gen_kwargs,
                                        cache_dir=cache_dir)
    splits = tagged.data.column("split").to_numpy(zero_copy_only=False)
    rows = tagged.remove_columns("split")
    dataset = DatasetDict({split: rows.select(np.flatnonzero(splits == split)) for split in SPLITS})
    accumulator = _SummaryAccumulator(config)
    for split, split_rows in dataset.items():
        for table in split_rows.with_format("arrow").iter(batch_size=10_000):
            accumulator.update(split, table)
    tokenizer = build_tokenizer(config)
    return SimulationResult(dataset, tokenizer, accumulator.summary(tokenizer), progress=progress)


def simulate_to_parquet(
    config: SimulatorConfig,
    output_dir: str | Path,
    shard_size: int = 100_000,
    progress: bool = True,
    workers: int = 1,
) -> dict[str, Any]:
    """
    Stream ``config``'s examples into ``{split}/part-NNNNN.parquet`` files of at most ``shard_size`` rows, with
    ``tokenizer/`` and ``a2gen_data.json`` beside them; at most one shard per split (per worker) is in memory, so this
    scales to millions of examples. Returns the summary.

    ``workers`` > 1 generates contiguous ranges of users in that many processes (a user's rows do not depend on the
    others'): the rows and their order are the same as with one worker, only the shards break at the ranges' ends.
    The processes are spawned, so a script that calls this with ``workers`` > 1 must do so under
    ``if __name__ == "__main__":`` (as for any ``multiprocessing`` spawn); ``a2gen simulate --workers`` needs nothing.
    """
    _check_shard_size(shard_size)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r} must be a positive number of processes (1: no subprocesses).")
    with replacing_data_folder(output_dir, "a2gen simulate") as staging:  # replaced whole, as SimulationResult.save
        for split in SPLITS:
            (staging / split).mkdir(parents=True, exist_ok=True)
        accumulator = _SummaryAccumulator(config)
        if workers > 1:  # each worker builds its own catalogue
            check_catalog_fits(config, copies=workers)
        if workers == 1:
            for split, table in _write_user_range(config, (0, config.num_users), staging, shard_size, progress):
                accumulator.update(split, table)
        else:
            _write_in_parallel(config, staging, shard_size, progress, workers, accumulator)
        tokenizer = build_tokenizer(config)
        summary = accumulator.summary(tokenizer)
        write_data_summary(staging, tokenizer, summary)
    return summary


def _write_user_range(
    config: SimulatorConfig,
    user_range: tuple[int, int],
    output_dir: Path,
    shard_size: int,
    progress: bool = False,
    shard_name: Callable[[str, int], Path] | None = None,
) -> Iterator[tuple[str, pa.Table]]:
    """
    Write the examples of ``user_range`` into shards of at most ``shard_size`` rows; yield ``(split, table)`` for each
    shard written. ``shard_name(split, index)`` names the files (default: ``{split}/part-NNNNN.parquet``).
    """
    shard_name = shard_name or (lambda split, index: shard_path(output_dir, split, index))
    buffers: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    shards_written = dict.fromkeys(SPLITS, 0)

    def flush(split: str) -> pa.Table:
        table = pa.Table.from_pylist(buffers[split], schema=ARROW_SCHEMA)
        pq.write_table(table, shard_name(split, shards_written[split]))
        shards_written[split] += 1
        buffers[split].clear()
        return table

    for split, row in iter_examples(config, user_range=user_range, progress=progress):
        buffers[split].append(row)
        if len(buffers[split]) >= shard_size:
            yield split, flush(split)
    for split in SPLITS:
        if buffers[split]:
            yield split, flush(split)


# The columns the summary reads back from the shards that worker processes wrote.
_SUMMARY_COLUMNS = ["action_ids", "action_seconds", "oracle_action_prob", "oracle_expected_seconds"]


def _write_range_task(task: tuple[SimulatorConfig, tuple[int, int], str, int, int]) -> dict[str, int]:
    """One worker's part: the users of a range written as ``{split}/range-RRRRR-NNNNN.parquet``; shards per split."""
    config, user_range, folder, shard_size, index = task
    folder_path = Path(folder)
    counts = dict.fromkeys(SPLITS, 0)

    def name(split: str, shard: int) -> Path:
        return folder_path / split / f"range-{index:05d}-{shard:05d}.parquet"

    for split, _ in _write_user_range(config, user_range, folder_path, shard_size, shard_name=name):
        counts[split] += 1
    return counts


def _write_in_parallel(
    config: SimulatorConfig,
    output_dir: Path,
    shard_size: int,
    progress: bool,
    workers: int,
    accumulator: _SummaryAccumulator,
) -> None:
    """Users in ranges of about ``shard_size`` examples, written by ``workers`` processes into a scratch folder, then
    renamed into ``{split}/part-NNNNN.parquet`` in user order and read back for the summary."""
    import multiprocessing
    import shutil
    import tempfile

    users_per_range = max(1, shard_size // max(config.examples_per_user, 1))
    ranges = [(first, min(first + users_per_range, config.num_users)) for first in range(0, config.num_users, users_per_range)]
    scratch = Path(tempfile.mkdtemp(prefix=".simulating-", dir=output_dir))
    try:
        for split in SPLITS:
            (scratch / split).mkdir()
        tasks = [(config, user_range, str(scratch), shard_size, index) for index, user_range in enumerate(ranges)]
        # An executor, not multiprocessing.Pool: a worker that dies (killed from outside, or a script without the
        # __main__ guard that spawned processes need) breaks the executor, which raises, where a Pool restarts
        # workers forever.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context) as executor:
            try:
                counts = list(
                    tqdm(
                        executor.map(_write_range_task, tasks),
                        total=len(tasks),
                        desc=f"simulating users ({workers} workers)",
                        disable=not progress,
                    )
                )
            except BrokenProcessPool:
                raise RuntimeError(
                    f"A worker process of simulate_to_parquet(workers={workers}) died: a script that calls it with "
                    "workers > 1 must do so under `if __name__ == \"__main__\":` (the workers are spawned and import "
                    "the script again); otherwise the system most likely ran out of memory (fewer workers, a smaller "
                    "shard_size)."
                ) from None
        shards = dict.fromkeys(SPLITS, 0)
        for index, written in enumerate(counts):
            for split in SPLITS:
                for shard in range(written[split]):
                    part = scratch / split / f"range-{index:05d}-{shard:05d}.parquet"
                    target = shard_path(output_dir, split, shards[split])
                    part.replace(target)
                    shards[split] += 1
                    accumulator.update(split, pq.read_table(target, columns=_SUMMARY_COLUMNS))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def describe_example(config: SimulatorConfig, user_index: int = 0, target: int = 0, history_items: int = 2) -> str:
    """
    A readable account of one example: the user's latent traits, the target video's segments, the sampled timeline
    (with the segment and topic at each action's moment), its oracle, and the last ``history_items`` history items.
    """
    if not 0 <= user_index < config.num_users or not 0 <= target < config.targets_of(user_index):
        raise ValueError(
            f"user_index={user_index} / target={target} are out of range: this config has {config.num_users} users "
            f"and {config.examples_per_user} targets per user."
        )
    available = config.history_length + target  # the user's sessions before this target
    if isinstance(history_items, bool) or not isinstance(history_items, int) or not 0 <= history_items <= available:
        # before: a negative session index wrapped round, showing a later session as history, or an IndexError
        raise ValueError(
            f"history_items={history_items!r}: target {target} of user {user_index} has {available} earlier sessions; "
            f"give 0 to {available}."
        )
    catalog = build_catalog(config)
    user = simulate_user(config, catalog, user_index)
    profile = user.profile
    favorites = np.argsort(-profile.tastes)[: config.num_favorite_topics]
    reflex = f"reflex-likes {profile.reflex_like_prob:.2f} of videos in their first second"
    lines = [
        f"{user.name}: favourite topics "
        + ", ".join(f"{topic} (w={profile.tastes[topic]:.2f})" for topic in favorites)
        + f"; other tastes <= {np.delete(profile.tastes, favorites).max():.2f}",
        f"  leave hazard {profile.leave_hazard:.3f}/s, {'late' if profile.late_reactor else 'quick'} reactor, "
        + (reflex if profile.reflex_like_prob else "no reflex likes"),
    ]

    def video_lines(session: int, label: str) -> list[str]:
        item = int(user.items[session])
        ends = np.cumsum(catalog.segment_seconds[item])
        segments = [
            f"[{ends[s] - catalog.segment_seconds[item, s]}-{ends[s]} s topic {catalog.segment_topics[item, s]}]"
            for s in range(config.max_segments)
            if catalog.segment_topics[item, s] >= 0
        ]
        events = []
        for action_id, seconds in zip(*user.timelines[session]):
            name = SHORT_VIDEO_ACTIONS[action_id - 1]
            tick = min(int(seconds), int(catalog.durations[item]) - 1)
            where = f"seg {catalog.tick_segments[item, tick] + 1}, topic {catalog.tick_topics[item, tick]}"
            events.append(f"{name} {seconds:.2f} s" + ("" if name == "start" else f" ({where})"))
        return [
            f"{label} {catalog.names[item]} (category topic {catalog.main_topics[item]}): " + " ".join(segments),
            "    timeline: " + " | ".join(events),
        ]

    session = config.history_length + target
    lines += video_lines(session, "target")
    lines.append(
        "    oracle: "
        + ", ".join(
            f"P({name})={user.oracle_probs[target, column]:.3f} E[t]={user.oracle_seconds[target, column]:.2f} s"
            for column, name in enumerate(SHORT_VIDEO_ACTIONS)
            if name != SHORT_VIDEO_ACTIONS[0]
        )
    )
    for back in range(history_items, 0, -1):
        lines += video_lines(session - back, f"history[-{back}]")
    return "\n".join(lines)
