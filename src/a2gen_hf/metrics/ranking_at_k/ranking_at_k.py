"""NDCG@K and Recall@K of each action over a group's (a user's or a request's) candidates."""

import datasets

from a2gen_hf.metrics import evaluate_module, ranking_at_k


class RankingAtK(evaluate_module.GroupedMetric):
    description = (
        "NDCG@K and Recall@K per action type (all but start and the end action): the examples of a group (user or "
        "request) are its candidates, ranked by P(action happens), relevant where the action happens; averaged "
        "over the groups with at least one relevant candidate."
    )
    inputs_description = (
        """
Args:
    predictions (`list[list[float]]`): per example, P(action happens) per action id.
    references (`list[dict]`): per example, {"labels": the label sequence (start, a1, ..., end, padding),
        "group_id": the user (or request) the example belongs to, a string or an integer (None / NaN refused)}.
"""
        + evaluate_module.VOCABULARY_KWARGS
        + """
    top_k (`list[int]`, default [10]): the cut-offs K.
Returns:
    ndcg_at_K and recall_at_K (`dict[str, float]`) for every K, ranking_groups (`dict[str, int]`),
    ranking_groups_over_K (`dict[str, int]`: of those, the groups with more than K candidates), notes (one where few
    groups hold more than K: the figure then barely tells models apart).
"""
    )
    features = datasets.Features({"predictions": evaluate_module.ACTION_SCORES, "references": evaluate_module.GROUPED_LABELS})

    def _compute(self, predictions, references, action_names, start_action="start", end_action="leave", top_k=(10,)):
        columns = evaluate_module.columns(references, evaluate_module.GROUPED_LABELS)
        return ranking_at_k(
            predictions, columns["labels"], columns["group_id"], action_names, start_action, end_action, top_k
        )
