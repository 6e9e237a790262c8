"""Shared base of the ``evaluate`` modules shipped in ``a2gen_hf/metrics/<name>/<name>.py``.

A module file subclasses :class:`A2GenMetric` through this module (``evaluate_module.A2GenMetric``), never by
importing the class into its namespace: evaluate 0.4 takes the first ``EvaluationModule`` subclass it finds there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import evaluate

CITATION = """\
@article{li2026a2gen,
  title={Action-Aware Generative Sequence Modeling for Short Video Recommendation},
  author={Li and Lin and Guo and Zhou and Liu and others},
  journal={arXiv preprint arXiv:2604.25834},
  year={2026}
}
"""

ACTION_SCORES = datasets.Sequence(datasets.Value("float64"))
ACTION_IDS = datasets.Sequence(datasets.Value("int64"))
LABEL_COLUMNS = {"labels": ACTION_IDS, "label_times": ACTION_SCORES, "label_time_mask": ACTION_IDS}
# The label sequence and the group (user or request) of an example, for GAUC and NDCG@K / Recall@K.
GROUPED_LABELS = {"labels": ACTION_IDS, "group_id": datasets.Value("int64")}

VOCABULARY_KWARGS = """
    action_names (`list[str]`): the model's action vocabulary (``config.action_names``); column ``i`` of a
        per-action input is action id ``i`` (0 = padding, ``action_names[i - 1]`` otherwise).
    start_action / end_action (`str`, defaults ``"start"`` / ``"leave"``).
"""
TIME_KWARGS = """
    time_log_mean / time_log_std (`float`): the time statistics (``config.time_log_mean`` / ``time_log_std``), to
        report seconds.
"""


def columns(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, list]:
    """evaluate hands struct inputs over as one dict per example: turn them into one list per field."""
    return {name: [row[name] for row in rows] for name in names}


class A2GenMetric(evaluate.Metric):
    """An ``evaluate.Metric`` whose description, inputs and features are class attributes."""

    description: str
    inputs_description: str
    features: datasets.Features

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=self.description,
            citation=CITATION,
            inputs_description=self.inputs_description,
            features=self.features,
        )
