"""Oracle comparison: the simulator's true probabilities and times as a ceiling for the model's AUC and MAE."""

import datasets

from a2gen_hf.metrics import evaluate_module, oracle_comparison

ORACLE_REFERENCES = {
    **evaluate_module.LABEL_COLUMNS,
    "oracle_action_prob": evaluate_module.ACTION_SCORES,
    "oracle_expected_seconds": evaluate_module.ACTION_SCORES,
}


class OracleComparison(evaluate_module.TimedMetric):
    description = (
        "The simulator's oracle AUC and MAE per action and the model's share of the oracle's AUC above chance, "
        "(auc_model - 0.5) / (auc_oracle - 0.5)."
    )
    inputs_description = (
        """
Args:
    predictions (`list[list[float]]`): per example, the model's P(action happens) per action id.
    references (`list[dict]`): per example, {"labels", "label_times", "label_time_mask"} (the collator's;
        "label_time_mask" may be left out of every reference: all times known) and the simulator's
        "oracle_action_prob" / "oracle_expected_seconds" (one value per action name).
"""
        + evaluate_module.VOCABULARY_KWARGS
        + evaluate_module.TIME_KWARGS
        + """
Returns:
    oracle_auc, oracle_mae, oracle_mae_seconds, auc_share_of_oracle (per action; NaN where the oracle's AUC is less
    than 0.01 above 0.5), notes.
"""
    )
    features = datasets.Features({"predictions": evaluate_module.ACTION_SCORES, "references": ORACLE_REFERENCES})

    def _compute(
        self,
        predictions,
        references,
        action_names,
        start_action="start",
        end_action="leave",
        time_log_mean=0.0,
        time_log_std=1.0,
    ):
        columns = evaluate_module.columns(references, ORACLE_REFERENCES)
        return oracle_comparison(
            predictions,
            columns["labels"],
            columns["label_times"],
            evaluate_module.time_mask(columns["label_time_mask"]),
            columns["oracle_action_prob"],
            columns["oracle_expected_seconds"],
            action_names,
            start_action,
            end_action,
            time_log_mean,
            time_log_std,
        )
