"""Shared base of the ``evaluate`` modules shipped in ``a2gen_hf/metrics/<name>/<name>.py``.

A module file subclasses :class:`A2GenMetric` (or :class:`GroupedMetric`, :class:`TimedMetric`) through this module
(``evaluate_module.A2GenMetric``), never by importing the class into its namespace: evaluate 0.4 takes the first
``EvaluationModule`` subclass it finds there.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import evaluate
import numpy as np

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
# The label sequence and the group (user or request) of an example, for GAUC and NDCG@K / Recall@K. The group id is
# stored as text (group_id_text), so that string ids work and float ids are never cut to an integer.
GROUPED_LABELS = {"labels": ACTION_IDS, "group_id": datasets.Value("string")}

VOCABULARY_KWARGS = """
    action_names (`list[str]`): the model's action vocabulary (``config.action_names``); column ``i`` of a
        per-action input is action id ``i`` (0 = padding, ``action_names[i - 1]`` otherwise).
    start_action / end_action (`str`, defaults ``"start"`` / ``"leave"``).
"""
TIME_KWARGS = """
    time_log_mean / time_log_std (`float`): the time statistics (``config.time_log_mean`` / ``time_log_std``), to
        report seconds.
"""


def group_id_text(value: Any, where: str) -> str:
    """
    A group id as :class:`GroupedMetric` stores it (text), grouping as the functions do
    (:func:`~a2gen_hf.metrics.auc.group_numbers`): a string as itself, an integer (or a whole float: 7
    and 7.0 are one group) as its digits, another float by its repr (1.2 and 1.7 stay two groups), each kind marked
    so that a number and its text (7 and "7") stay two groups. None, NaN and anything else are refused, naming
    ``where``.
    """
    if isinstance(value, str):
        return "text:" + value
    if isinstance(value, (bool, np.bool_)):  # its own kind, as the functions group it: True and 1 are two groups
        return f"bool:{bool(value)}"
    if isinstance(value, (int, np.integer)):
        return f"number:{int(value)}"
    if isinstance(value, (float, np.floating)) and not math.isnan(value):
        return f"number:{int(value)}" if float(value).is_integer() else f"number:{float(value)!r}"
    raise ValueError(
        f"{where}['group_id'] is {value!r}; every example needs a group id (the user or request it belongs to), a "
        "string or an integer: drop the examples without one, or give each of them an id of its own."
    )


def time_mask(masks: Sequence[Any]) -> Sequence[Any] | None:
    """
    The references' ``label_time_mask`` column (None where :class:`TimedMetric` found none): None when no reference
    has one (every time known, as the functions take it), the column when all have one, refused when only some do.
    """
    missing = [index for index, mask in enumerate(masks) if mask is None]
    if len(missing) == len(masks):
        return None
    if not missing:
        return masks
    given = next(index for index, mask in enumerate(masks) if mask is not None)
    raise ValueError(
        f"references[{missing[0]}] has no label_time_mask but references[{given}] has one; give it to every reference "
        "or to none (then every time counts as known)."
    )


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

    def _reference(self, reference: Mapping[str, Any], where: str) -> Mapping[str, Any]:
        """One struct reference (a dict) as the module stores it; ``where`` names it in errors. As given here."""
        return reference

    def compute(self, *, predictions=None, references=None, **kwargs):
        """``evaluate``'s compute, the options the module cannot do without (``action_names``) checked first, by name:
        before, a missing one gave the bare ``TypeError: _compute() missing 1 required positional argument``. The
        examples added so far stay added, so compute can be called again with the option."""
        required = [
            name for name, parameter in inspect.signature(self._compute).parameters.items()
            if parameter.default is inspect.Parameter.empty
            and parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            and name not in ("predictions", "references") and kwargs.get(name) is None
        ]
        if required:
            module = getattr(self, "name", None) or type(self).__name__
            raise ValueError(
                f"The {module} metric needs {', '.join(required)}, which compute() was not given: pass it with the "
                f"inputs, e.g. load_metric({module!r}).compute(predictions=..., references=..., "
                f"{required[0]}=config.action_names) (the model config's or the tokenizer's action vocabulary, "
                "['start', 'like', ..., 'leave']); the examples added with add() / add_batch() are kept."
                if required == ["action_names"] else
                f"The {module} metric needs {', '.join(required)}, which compute() was not given: pass "
                f"{', '.join(f'{name}=...' for name in required)} to compute()."
            )
        return super().compute(predictions=predictions, references=references, **kwargs)

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """``evaluate``'s add_batch (compute() adds its inputs through it), struct references prepared first."""
        if isinstance(references, (list, tuple)):
            references = [
                self._reference(row, f"references[{index}]") if isinstance(row, Mapping) else row
                for index, row in enumerate(references)
            ]
        return super().add_batch(predictions=predictions, references=references, **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """``evaluate``'s add, a struct reference prepared first."""
        if isinstance(reference, Mapping):
            reference = self._reference(reference, "reference")
        return super().add(prediction=prediction, reference=reference, **kwargs)


class GroupedMetric(A2GenMetric):
    """A module whose references are :data:`GROUPED_LABELS`: the group ids go in as :func:`group_id_text`."""

    def _reference(self, reference: Mapping[str, Any], where: str) -> Mapping[str, Any]:
        if "group_id" not in reference:
            raise ValueError(
                f"{where} has no 'group_id' (it has {sorted(reference)}); every reference needs the id of the user or "
                "request its example belongs to, a string or an integer: {'labels': [...], 'group_id': 'user-7'}."
            )
        return {**reference, "group_id": group_id_text(reference["group_id"], where)}


class TimedMetric(A2GenMetric):
    """A module whose references hold :data:`LABEL_COLUMNS`: ``label_time_mask`` may be left out, as the functions
    allow (read back with :func:`time_mask`)."""

    def _reference(self, reference: Mapping[str, Any], where: str) -> Mapping[str, Any]:
        return reference if "label_time_mask" in reference else {**reference, "label_time_mask": None}
