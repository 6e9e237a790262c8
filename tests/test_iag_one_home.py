"""IAG's math lives once: the batch-innermost inference path (``slot_predictions``) composes ``slots`` /
``slot_features``, and ``predict_actions`` and the ranker read their scores through one method,
``predictions_from_context``. Golden figures were saved from the code before that refactor (HEAD eacb836)."""

import pytest
import torch
from conftest import make_batch, tiny_config

from a2gen_hf import A2GenForActionGeneration
from a2gen_hf.features_a2gen import occurrence_probabilities
from a2gen_hf.ranking import USER_INPUT_NAMES, A2GenRanker

CONFIGS = {
    "iag": {},
    "iag relu, time_per_action": {"iag_slot_activation": "relu", "time_per_action": True},
    "iag occurrence_head, time_per_action": {"occurrence_head": True, "time_per_action": True},
}

# predict_actions' action_probabilities and expected_times on make_batch(config, batch_size=2, seed=3) of
# filled_model(**CONFIGS[name]), printed by the code before the refactor (HEAD eacb836).
GOLDEN = {
    "iag": (
        [
            [0, 1, 0.07981879, 0.4936586, 0.1320618, 0.01326942, 0.3368032],
            [0, 1, 0.1000097, 0.02584374, 0.1227341, 0.1067485, 0.3232808],
        ],
        [
            [0, 0, 1.710531, 1.633084, 1.669165, 1.641325, 1.719586],
            [0, 0, -0.6147348, -0.6293496, -0.6260145, -0.6401646, -0.6237541],
        ],
    ),
    "iag relu, time_per_action": (
        [
            [0, 1, 0.01589996, 0.6309556, 0.6053789, 0.1139773, 0.07376015],
            [0, 1, 0.02686054, 0.02730465, 0.002456903, 0.002641976, 0.1365476],
        ],
        [
            [0, 0, 2.025955, -1.129002, -1.911671, -0.6397676, 0.9923825],
            [0, 0, 0.09133445, -1.833869, -0.4147004, 1.358871, 1.473512],
        ],
    ),
    "iag occurrence_head, time_per_action": (
        [
            [0, 1, 0.01091724, 0.3291233, 0.8423662, 0.1730197, 0.4472258],
            [0, 1, 0.3362143, 0.8161401, 0.2243943, 0.9002163, 0.4570677],
        ],
        [
            [0, 0, 1.919524, -0.8783525, -1.625411, -0.634947, 1.110995],
            [0, 0, -0.05778253, -1.381887, -0.2972033, 1.080526, 1.288635],
        ],
    ),
}


def filled_model(**overrides):
    """A tiny IAG whose every parameter is drawn from its own seeded generator, in name order: its figures do not
    depend on the weight initialisation."""
    torch.manual_seed(0)
    model = A2GenForActionGeneration(tiny_config("iag", **overrides)).eval()
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for _, parameter in sorted(model.named_parameters()):
            scale = parameter.shape[-1] ** -0.5 if parameter.dim() > 1 else 0.1  # weights: unit-variance outputs
            parameter.copy_(scale * torch.randn(parameter.shape, generator=generator))
    return model


def history_inputs(config, batch_size=2, seed=3):
    batch = make_batch(config, batch_size=batch_size, seed=seed)
    return {name: value for name, value in batch.items() if name not in ("labels", "label_times", "label_time_mask")}


def golden_figures(name):
    """The figures GOLDEN holds (run with the package before the refactor to print them)."""
    model = filled_model(**CONFIGS[name])
    prediction = model.predict_actions(**history_inputs(model.config))
    return prediction.action_probabilities.tolist(), prediction.expected_times.tolist()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_predict_actions_equals_the_figures_saved_before_the_refactor(name):
    probabilities, times = golden_figures(name)
    saved_probabilities, saved_times = GOLDEN[name]
    torch.testing.assert_close(torch.tensor(probabilities), torch.tensor(saved_probabilities), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.tensor(times), torch.tensor(saved_times), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_features_first_steps_are_the_training_steps_transposed(name):
    """slots / slot_features with feature_dim=1 are the feature_dim=-1 tensors, batch moved innermost."""
    generator = filled_model(**CONFIGS[name]).generator
    context = torch.randn(9, generator.slot_projection.in_features, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        slots = generator.slots(context)
        columns = generator.slots(context, feature_dim=1)
        torch.testing.assert_close(columns, slots.permute(1, 2, 0), rtol=1e-5, atol=1e-6)
        logits, times, features = generator.slot_features(slots)
        column_logits, column_times, column_features = generator.slot_features(columns, feature_dim=1)
    torch.testing.assert_close(column_logits, logits.permute(1, 2, 0), rtol=1e-5, atol=1e-6)
    times = times if generator.aux_heads.time_per_action else times.unsqueeze(-1)
    torch.testing.assert_close(column_times, times.permute(1, 2, 0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(column_features, features.permute(1, 2, 0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="feature_dim"):
        generator.slots(context, feature_dim=0)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_predict_actions_and_the_ranker_read_one_tail(name, monkeypatch):
    """predict_actions and the ranker's program both go through predictions_from_context (a later override there
    reaches both paths), and give the same scores."""
    model = filled_model(**CONFIGS[name])
    inputs = history_inputs(model.config, batch_size=1)
    calls = []
    original = model.predictions_from_context

    def counted(context):
        calls.append(context.shape[0])
        return original(context)

    monkeypatch.setattr(model, "predictions_from_context", counted)
    item_ids, item_side_ids = inputs["item_ids"].repeat(4), inputs["item_side_ids"].repeat(4, 1)
    item_ids[1:] = torch.tensor([3, 17, 101])
    repeated = {key: value.expand(4, *value.shape[1:]) for key, value in inputs.items() if key in USER_INPUT_NAMES}
    reference = model.predict_actions(**repeated, item_ids=item_ids, item_side_ids=item_side_ids)
    ranker = A2GenRanker(model)
    user = {key: value for key, value in inputs.items() if key in USER_INPUT_NAMES and value is not None}
    ranked = ranker.score_candidates(ranker.encode_user(**user), item_ids, item_side_ids)
    assert calls == [4, 4]
    assert (ranked.action_probabilities - reference.action_probabilities).abs().max() <= 1e-5
    torch.testing.assert_close(ranked.expected_times, reference.expected_times, rtol=1e-4, atol=1e-5)
    if model.occurrence_head is not None:  # P(a) is the occurrence head's, the times still the slots'
        context = model.a2gen(**repeated, item_ids=item_ids, item_side_ids=item_side_ids).generation_context
        torch.testing.assert_close(reference.action_probabilities, occurrence_probabilities(model, context))


if __name__ == "__main__":  # print GOLDEN's figures with whichever package is importable
    for config_name in CONFIGS:
        print(repr(config_name), ":", golden_figures(config_name), ",")
