"""Calibration: predicted vs observed rate of each action, with a reliability table by probability bins."""

import datasets

from a2gen_hf.metrics import calibration, evaluate_module


class Calibration(evaluate_module.A2GenMetric):
    description = (
        "Calibration of P(action happens) per action type (all but start and the end action): mean prediction, "
        "observed rate, their ratio, the expected calibration error and a reliability table of equal-width bins."
    )
    inputs_description = (
        """
Args:
    predictions (`list[list[float]]`): per example, P(action happens) per action id.
    references (`list[list[int]]`): per example, the label sequence (start, a1, ..., end, padding).
"""
        + evaluate_module.VOCABULARY_KWARGS
        + """
    num_bins (`int`, default 10): bins of the reliability tables.
Returns:
    predicted_rate, observed_rate, calibration (predicted / observed, NaN when the action never happens), ece and
    reliability (per action, one {"low", "high", "count", "mean_predicted", "observed_rate"} per bin), notes.
"""
    )
    features = datasets.Features({"predictions": evaluate_module.ACTION_SCORES, "references": evaluate_module.ACTION_IDS})

    def _compute(self, predictions, references, action_names, start_action="start", end_action="leave", num_bins=10):
        return calibration(predictions, references, action_names, start_action, end_action, num_bins)
