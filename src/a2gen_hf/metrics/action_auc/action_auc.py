"""Action AUC: does the model rank the examples where an action happens above those where it does not."""

import datasets

from a2gen_hf.metrics import action_auc, evaluate_module


class ActionAuc(evaluate_module.A2GenMetric):
    description = "AUC of P(action happens) per action type (all but start and the end action): the rank-sum AUC of a2gen_hf.metrics.auc (ties count one half)."
    inputs_description = (
        """
Args:
    predictions (`list[list[float]]`): per example, P(action happens) per action id (predict_actions'
        action_probabilities).
    references (`list[list[int]]`): per example, the label sequence (start, a1, ..., end, padding).
"""
        + evaluate_module.VOCABULARY_KWARGS
        + """
Returns:
    auc (`dict[str, float]`, NaN where only one class is present), positives (`dict[str, int]`), mean_auc, notes.
"""
    )
    features = datasets.Features(
        {"predictions": evaluate_module.ACTION_SCORES, "references": evaluate_module.ACTION_IDS}
    )

    def _compute(self, predictions, references, action_names, start_action="start", end_action="leave"):
        return action_auc(predictions, references, action_names, start_action, end_action)
