"""Timing MAE: error of the predicted first-occurrence time of each action, where it happens."""

import datasets

from a2gen_hf.metrics import evaluate_module, timing_mae


class TimingMae(evaluate_module.TimedMetric):
    description = (
        "MAE of the predicted time of each action's first occurrence (all but start; the end action's is the watch "
        "time) on the examples where it happens with a known time, in normalised units and seconds, on all "
        "occurrences and on those after 0 s."
    )
    inputs_description = (
        """
Args:
    predictions (`list[list[float]]`): per example, the expected normalised time per action id (predict_actions'
        expected_times).
    references (`list[dict]`): per example, {"labels", "label_times", "label_time_mask"} as the collator builds
        ("label_time_mask" may be left out of every reference: all times known).
"""
        + evaluate_module.VOCABULARY_KWARGS
        + evaluate_module.TIME_KWARGS
        + """
    zero_time_tolerance_seconds (`float`, default 1e-3): occurrences at or below it count as "at 0 s".
Returns:
    mae, mae_seconds, mae_nonzero, mae_seconds_nonzero, timed_count, timed_nonzero_count (per action), mean_mae,
    leave_mae, leave_mae_seconds, notes.
"""
    )
    features = datasets.Features(
        {"predictions": evaluate_module.ACTION_SCORES, "references": evaluate_module.LABEL_COLUMNS}
    )

    def _compute(
        self,
        predictions,
        references,
        action_names,
        start_action="start",
        end_action="leave",
        time_log_mean=0.0,
        time_log_std=1.0,
        zero_time_tolerance_seconds=1e-3,
    ):
        labels = evaluate_module.columns(references, evaluate_module.LABEL_COLUMNS)
        return timing_mae(
            predictions,
            labels["labels"],
            labels["label_times"],
            evaluate_module.time_mask(labels["label_time_mask"]),
            action_names,
            start_action,
            end_action,
            time_log_mean,
            time_log_std,
            zero_time_tolerance_seconds,
        )
