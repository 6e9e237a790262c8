"""The ``evaluate`` modules shipped beside this file, one folder each, loaded by path (no Hub access)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

METRICS_DIR = Path(__file__).resolve().parent
METRIC_NAMES = (
    "action_auc", "timing_mae", "next_action_accuracy", "time_order", "oracle_comparison",
    "gauc", "log_loss", "calibration", "ranking_at_k",
)


def metric_path(name: str) -> str:
    """The folder of the shipped ``evaluate`` module ``name`` (one of :data:`METRIC_NAMES`)."""
    if name not in METRIC_NAMES:
        raise ValueError(f"Unknown a2gen_hf metric {name!r}; the shipped ones are {list(METRIC_NAMES)}.")
    return str(METRICS_DIR / name)


def load_metric(name: str, **kwargs: Any):
    """``evaluate.load`` of a shipped module by its local path (no Hub access); ``kwargs`` go to ``evaluate.load``."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)
