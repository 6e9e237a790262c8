"""Time order: how often generated action sequences have times that go backwards."""

import datasets

from a2gen_hf.metrics import backward_time_rate, evaluate_module


class TimeOrder(evaluate_module.A2GenMetric):
    description = "Share of generated action sequences whose times decrease somewhere between start and the end."
    inputs_description = """
Args:
    predictions (`list[dict]`): per generated sequence, {"sequences": action ids (start first, 0 = padding after
        the end action), "times": their times (normalised or seconds)}, e.g. generate()'s sequences and times.
Returns:
    backward_time_rate (NaN without sequences), sequence_count, notes.
"""
    features = datasets.Features(
        {"predictions": {"sequences": evaluate_module.ACTION_IDS, "times": evaluate_module.ACTION_SCORES}}
    )

    def _compute(self, predictions):
        generated = evaluate_module.columns(predictions, ("sequences", "times"))
        return backward_time_rate(generated["sequences"], generated["times"])
