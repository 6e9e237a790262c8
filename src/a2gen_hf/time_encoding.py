"""The one time encoding of a2gen_hf: log-seconds, standardised with statistics fitted on training data.

``z = (log1p(seconds) - mean) / std`` maps seconds-to-days gaps onto a unit scale; the inverse is
``seconds = expm1(z * std + mean)``, clipped at 0 so a slightly negative prediction reads as 0 s.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import numpy as np
import torch

logger = logging.getLogger(__name__)

# Times beyond this are rejected: they are unit or anchoring mistakes, and their normalised values would overflow
# back to inf seconds when decoded.
MAX_SECONDS = 1e12


# What a time in seconds must be, as the collator and the tokenizer say it when one is not.
SECONDS_RULE = f"times must be finite seconds from 0 to {MAX_SECONDS:g} (NaN = unknown)"


def invalid_seconds(seconds):
    """Where ``seconds`` (a numpy array or tensor) breaks :data:`SECONDS_RULE`: negative, infinite or above
    :data:`MAX_SECONDS` (a unit error: nanoseconds, or a Unix time where seconds since the session's start belong).
    NaN, an unknown time, passes. A bool array or tensor of the same shape."""
    if isinstance(seconds, torch.Tensor):
        infinite = torch.isinf(seconds) if seconds.is_floating_point() else torch.zeros_like(seconds, dtype=torch.bool)
        return (seconds < 0) | (seconds > MAX_SECONDS) | infinite
    with np.errstate(invalid="ignore"):
        return (seconds < 0) | (seconds > MAX_SECONDS) | np.isinf(seconds)


def time_statistics_problem(mean: float, std: float) -> str | None:
    """Why ``(mean, std)`` cannot encode times (both must be finite numbers and the std > 0), or None when they can:
    the one rule of the tokenizer, the metrics and the config, each of which says where the statistics come from."""
    if math.isfinite(mean) and math.isfinite(std) and std > 0:
        return None
    return f"time_log_mean={mean} / time_log_std={std} are invalid: both must be finite and time_log_std > 0"


def log_seconds(times, mean: float, std: float):
    """Normalised times -> ``log1p(seconds)`` (``times * std + mean``), the inverse of the standardisation."""
    return times * std + mean


def normalize_seconds(seconds, mean: float, std: float):
    """Seconds (float, numpy array or tensor, >= 0) -> normalised times of the same type."""
    if isinstance(seconds, torch.Tensor):
        return (torch.log1p(seconds) - mean) / std
    if isinstance(seconds, np.ndarray):
        return (np.log1p(seconds) - mean) / std
    return (math.log1p(seconds) - mean) / std


def denormalize_times(times, mean: float, std: float):
    """Normalised times -> seconds (>= 0), same type as the input."""
    if isinstance(times, torch.Tensor):
        return torch.expm1(log_seconds(times, mean, std)).clamp_min(0.0)
    if isinstance(times, np.ndarray):
        return np.maximum(np.expm1(log_seconds(times, mean, std)), 0.0)
    try:
        return max(math.expm1(log_seconds(times, mean, std)), 0.0)
    except OverflowError:  # as numpy and torch give: inf seconds, not an error only for Python floats
        return math.inf


# The floor of a fitted time_log_std: times that (nearly) never vary would otherwise divide by 0.
MIN_TIME_LOG_STD = 1e-3


def floored_log_std(std: float, mean: float | None = None) -> float:
    """A fitted standard deviation of ``log1p(seconds)``, floored at :data:`MIN_TIME_LOG_STD`, with a warning when the
    floor applies: every other time then normalises to thousands (5 s against 0 s: z = 1,792), far outside what
    training saw, and bf16 resolves such inputs only every 8-64 units. ``mean`` (of the same logs) tells a split
    whose every time is 0 s (sessions of one event) from one whose times all share another value."""
    if std < MIN_TIME_LOG_STD:
        cause = (
            "every time is 0 s: the training sessions hold no event after their start (sessions of one event, "
            "common in a log of mostly single clicks), so the model learns no timing from them"
            if mean is not None and abs(mean) < MIN_TIME_LOG_STD
            else "Check the time column (one second for every event of a session?)"
        )
        logger.warning(
            f"The training times barely vary (std of log1p(seconds) {std:.2g}): time_log_std is floored at "
            f"{MIN_TIME_LOG_STD:g}, so any other time normalises to thousands. {cause[0].upper() + cause[1:]}; or "
            "give the tokenizer time statistics of your own."
        )
    return float(max(std, MIN_TIME_LOG_STD))


def fit_log_statistics(seconds: Iterable[float]) -> tuple[float, float]:
    """Mean and standard deviation of ``log1p(seconds)`` over finite, non-negative values (the std through
    :func:`floored_log_std`)."""
    values = np.asarray(list(seconds), dtype=np.float64)
    values = values[np.isfinite(values) & (values >= 0)]
    if values.size == 0:
        raise ValueError("Cannot fit time statistics: no finite, non-negative times were given.")
    logs = np.log1p(values)
    return float(logs.mean()), floored_log_std(float(logs.std()), float(logs.mean()))


def check_normalised_times(name: str, times: torch.Tensor, time_mask: torch.Tensor | None, mean: float, std: float) -> None:
    """
    Refuse ``times`` (where ``time_mask``, of their shape, is nonzero; None: all) above the normalised time of
    :data:`MAX_SECONDS` under (``mean``, ``std``): raw seconds passed where normalised times belong (1800.0 for half an
    hour) gave inf expected seconds and, larger, NaN scores, silently. Also refused: times more than the whole
    normalised range (0 s to :data:`MAX_SECONDS`) below the normalised time of 0 s, where nothing normalises (a
    sentinel such as -1e6 for an unknown time drove the attention queries to ~1e5, silently); values just below
    0 s (rounding, times normalised with close statistics) pass. ``name`` names the input in the error.
    """
    highest, lowest = normalize_seconds(MAX_SECONDS, mean, std), normalize_seconds(0.0, mean, std)
    above = times > highest + 1e-3 * abs(highest)
    below = times < lowest - (highest - lowest)
    bad = above | below
    if time_mask is not None:
        bad = bad & (time_mask != 0)
    if bad.any():
        position = [int(index) for index in bad.nonzero()[0].tolist()]
        value, statistics = times[tuple(position)].item(), f"time_log_mean={mean:g}, time_log_std={std:g}"
        if value > highest:
            raise ValueError(
                f"{name}{position} = {value:g} is above {highest:.4g}, the normalised time of {MAX_SECONDS:g} seconds "
                f"({statistics}): pass normalised times, as the tokenizer's encode_timeline and the collator give "
                "them (a2gen_hf.time_encoding.normalize_seconds), not seconds."
            )
        raise ValueError(
            f"{name}{position} = {value:g} lies far below {lowest:.4g}, the normalised time of 0 seconds "
            f"({statistics}), where no time normalises: mark an unknown time with the time mask (0) instead of a "
            "sentinel value, and pass times normalised with this model's tokenizer (its encode_timeline and the "
            "collator do; a2gen_hf.time_encoding.normalize_seconds)."
        )
