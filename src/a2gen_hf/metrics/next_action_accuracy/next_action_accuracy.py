"""Next-action accuracy: the predicted first action after start vs. the true one."""

import datasets

from a2gen_hf.metrics import evaluate_module, next_action_accuracy


class NextActionAccuracy(evaluate_module.A2GenMetric):
    description = "Share of examples whose predicted first action after start is the true one (labels[1])."
    inputs_description = """
Args:
    predictions (`list[int]`): per example, the predicted first action id after start (a whole number).
    references (`list[list[int]]`): per example, the label sequence (start, a1, ..., end, padding).
Returns:
    next_action_accuracy (NaN when no label has an action after start), next_action_count, notes.
"""
    # float64, not int64: datasets would cut 2.9 to 2; next_action_accuracy refuses what is no whole number.
    features = datasets.Features({"predictions": datasets.Value("float64"), "references": evaluate_module.ACTION_IDS})

    def _compute(self, predictions, references):
        return next_action_accuracy(predictions, references)
