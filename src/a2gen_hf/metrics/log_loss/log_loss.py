"""LogLoss: binary cross-entropy of P(action happens) per action."""

import datasets

from a2gen_hf.metrics import evaluate_module, log_loss


class LogLoss(evaluate_module.A2GenMetric):
    description = (
        "Binary cross-entropy (natural log) of P(action happens) per action type (all but start and the end "
        "action), probabilities clipped to [eps, 1 - eps]."
    )
    inputs_description = (
        """
Args:
    predictions (`list[list[float]]`): per example, P(action happens) per action id.
    references (`list[list[int]]`): per example, the label sequence (start, a1, ..., end, padding).
"""
        + evaluate_module.VOCABULARY_KWARGS
        + """
Returns:
    logloss (`dict[str, float]`, NaN without examples; probabilities clipped at float64's eps, as the function
    `a2gen_hf.metrics.log_loss` clips every input: the same number for the same values), mean_logloss, notes.
"""
    )
    features = datasets.Features({"predictions": evaluate_module.ACTION_SCORES, "references": evaluate_module.ACTION_IDS})

    def _compute(self, predictions, references, action_names, start_action="start", end_action="leave"):
        return log_loss(predictions, references, action_names, start_action, end_action)
