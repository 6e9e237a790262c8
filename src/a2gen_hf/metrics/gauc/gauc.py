"""GAUC: the AUC of each action inside every user's (or request's) examples, weighted by the group's size."""

import datasets

from a2gen_hf.metrics import evaluate_module, gauc


class Gauc(evaluate_module.GroupedMetric):
    description = (
        "Group AUC of P(action happens) per action type (all but start and the end action): the AUC inside every "
        "group (user or request), averaged with the group's number of examples as weight, over the groups that "
        "have both classes."
    )
    inputs_description = (
        """
Args:
    predictions (`list[list[float]]`): per example, P(action happens) per action id (predict_actions'
        action_probabilities).
    references (`list[dict]`): per example, {"labels": the label sequence (start, a1, ..., end, padding),
        "group_id": the user (or request) the example belongs to, a string or an integer (None / NaN refused)}.
"""
        + evaluate_module.VOCABULARY_KWARGS
        + """
Returns:
    gauc (`dict[str, float]`, NaN where no group has both classes), gauc_groups (`dict[str, int]`), mean_gauc (over
    the actions whose GAUC averages over at least 10 groups, as the tables show them; NaN with a note where none
    does), notes.
"""
    )
    features = datasets.Features({"predictions": evaluate_module.ACTION_SCORES, "references": evaluate_module.GROUPED_LABELS})

    def _compute(self, predictions, references, action_names, start_action="start", end_action="leave"):
        columns = evaluate_module.columns(references, evaluate_module.GROUPED_LABELS)
        return gauc(predictions, columns["labels"], columns["group_id"], action_names, start_action, end_action)
