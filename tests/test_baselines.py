"""MMoE / PLE baselines: shapes, losses, targets, history modes, persistence and A2Gen's prediction format."""

import pytest
import torch
from conftest import make_batch, tiny_config
from transformers import AutoConfig, AutoModel

from a2gen_hf import (
    A2GenActionPrediction,
    A2GenConfigError,
    A2GenForActionGeneration,
    AutoModelForActionGeneration,
    MMoEConfig,
    MMoEForActionPrediction,
    PLEConfig,
    PLEForActionPrediction,
)
from a2gen_hf.modeling_baselines import first_occurrence_targets

BASELINES = [(MMoEConfig, MMoEForActionPrediction), (PLEConfig, PLEForActionPrediction)]
HISTORY_INPUTS = ["items", "items_and_events"]


def baseline_config(config_class, **overrides):
    shared = tiny_config().to_diff_dict()
    for key in ("model_type", "transformers_version", "generator_type"):
        shared.pop(key, None)
    shared.update(overrides)
    return config_class(**shared)


@pytest.fixture(params=[(b, h) for b in BASELINES for h in HISTORY_INPUTS], ids=lambda p: f"{p[0][1].__name__}-{p[1]}")
def model_and_batch(request):
    (config_class, model_class), history_input = request.param
    torch.manual_seed(0)
    config = baseline_config(config_class, history_input=history_input)
    return model_class(config).eval(), make_batch(config)


def test_shapes_losses_and_fixed_columns(model_and_batch):
    model, batch = model_and_batch
    config = model.config
    out = model(**batch)
    assert out.logits.shape == out.times.shape == (4, config.vocab_size)
    assert out.task_representations.shape == (4, len(config.task_action_ids), config.expert_hidden_sizes[-1])
    for part in ("loss", "action_loss", "time_loss"):
        assert getattr(out, part).ndim == 0 and torch.isfinite(getattr(out, part))
    expected = config.action_loss_weight * out.action_loss + config.time_loss_weight * out.time_loss
    torch.testing.assert_close(out.loss, expected)
    probabilities = torch.sigmoid(out.logits)
    assert (probabilities[:, 0] == 0).all()
    assert (probabilities[:, [config.start_action_id, config.end_action_id]] == 1).all()
    assert (out.times[:, config.start_action_id] == config.start_time).all()
    assert model(**batch, return_dict=False)[0] == out.loss


def test_first_occurrence_targets():
    labels = torch.tensor([[1, 2, 3, 2, 6, 0], [1, 6, 0, 0, 0, -100]])
    times = torch.tensor([[0.0, 0.1, 0.2, 0.3, 0.4, 0.0], [0.0, 0.5, 0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 0, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0]])
    occurs, first_times, known = first_occurrence_targets(labels, times, mask, vocab_size=7)
    assert occurs.tolist() == [[False, False, True, True, False, False, True], [False] * 6 + [True]]
    # The first like's time is unknown: the later known one does not replace it, and its stored value (0.1 here, NaN
    # where nothing was known) is not passed on (0.0), so no loss or gradient reads it.
    assert first_times[0, 2] == 0.0 and first_times[0, 6] == pytest.approx(0.4)
    assert not known[0, 2]
    assert known[0, 3] and known[1, 6] and not known[1, 2]
    assert first_times[1, 2] == 0.0 and not occurs[:, 1].any()  # start is never a target
    with pytest.raises(ValueError, match=r"label ids must be action ids in \[0, 7\)"):
        first_occurrence_targets(labels.clamp_max(7) + (labels == 6), times, mask, vocab_size=7)


def test_end_action_has_no_binary_loss_but_a_time_loss():
    config = baseline_config(MMoEConfig)
    model = MMoEForActionPrediction(config)
    assert len(model.heads.binary_heads) == len(config.action_names) - 2
    assert len(model.heads.time_heads) == len(config.action_names) - 1
    batch = make_batch(config)
    out = model(**batch)
    out.time_loss.backward()
    end_task = config.task_action_ids.index(config.end_action_id)
    assert model.heads.time_heads[end_task].weight.grad.abs().sum() > 0


def test_l1_time_loss_differs_from_mse():
    batch = make_batch(baseline_config(MMoEConfig))
    losses = {}
    for time_loss in ("mse", "l1"):
        torch.manual_seed(0)
        losses[time_loss] = MMoEForActionPrediction(baseline_config(MMoEConfig, time_loss=time_loss))(**batch)
    torch.testing.assert_close(losses["mse"].action_loss, losses["l1"].action_loss)
    assert not torch.isclose(losses["mse"].time_loss, losses["l1"].time_loss)


@pytest.mark.parametrize("config_class, model_class", BASELINES)
def test_overfits_one_batch(config_class, model_class):
    torch.manual_seed(0)
    config = baseline_config(config_class, history_input="items_and_events")
    model = model_class(config)
    batch = make_batch(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    first = model(**batch).loss.item()
    for _ in range(60):
        optimizer.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
    out = model(**batch)
    assert out.loss.item() < 0.05 * first
    occurs, _, _ = first_occurrence_targets(batch["labels"], batch["label_times"], None, config.vocab_size)
    binary = config.binary_action_ids
    assert torch.equal(torch.sigmoid(out.logits[:, binary]) > 0.5, occurs[:, binary])


@pytest.mark.parametrize("config_class, model_class", BASELINES)
def test_history_modes(config_class, model_class):
    configs = {mode: baseline_config(config_class, history_input=mode) for mode in HISTORY_INPUTS}
    models = {mode: model_class(configs[mode]).eval() for mode in HISTORY_INPUTS}
    assert models["items"].inputs.event_embedding is None
    extra = sum(p.numel() for p in models["items_and_events"].parameters()) - sum(
        p.numel() for p in models["items"].parameters()
    )
    assert extra > 0
    batch = make_batch(configs["items"])
    changed = dict(batch, history_action_times=batch["history_action_times"] + 1.0)
    changed["history_action_ids"] = batch["history_action_ids"].flip(-1)
    torch.testing.assert_close(models["items"](**changed).logits, models["items"](**batch).logits)
    events_model = models["items_and_events"]
    assert not torch.allclose(events_model(**changed).logits, events_model(**batch).logits)
    # The paper-style model does not need the event inputs at all.
    items_only = {k: v for k, v in batch.items() if not k.startswith("history_action")}
    torch.testing.assert_close(models["items"](**items_only).logits, models["items"](**batch).logits)
    with pytest.raises(ValueError, match="items_and_events"):
        events_model(**items_only)


def test_padding_history_items_does_not_change_outputs(model_and_batch):
    model, batch = model_and_batch
    padded = dict(batch)
    for key in ("history_item_ids", "history_item_side_ids", "history_action_ids", "history_action_times"):
        value = batch[key]
        padded[key] = torch.cat([value, torch.zeros(value.shape[0], 2, *value.shape[2:], dtype=value.dtype)], 1)
    padded["history_action_times"] = padded["history_action_times"] + 5.0 * (padded["history_action_ids"] == 0)
    torch.testing.assert_close(model(**padded).logits, model(**batch).logits, atol=1e-5, rtol=1e-5)


def test_predict_actions_has_a2gens_format(model_and_batch):
    model, batch = model_and_batch
    config = model.config
    prediction = model.predict_actions(**batch)
    reference = A2GenForActionGeneration(tiny_config()).eval().predict_actions(**batch)
    assert type(prediction) is type(reference) is A2GenActionPrediction
    assert list(prediction.keys()) == list(reference.keys())
    for name in prediction.keys():
        assert prediction[name].shape == reference[name].shape and prediction[name].dtype == reference[name].dtype
    assert (prediction.action_probabilities[:, config.start_action_id] == 1).all()
    assert (prediction.action_probabilities[:, config.end_action_id] == 1).all()
    assert (prediction.action_probabilities[:, 0] == 0).all()
    assert (prediction.expected_seconds[:, config.start_action_id] == 0).all()
    torch.testing.assert_close(prediction.action_probabilities, torch.sigmoid(model(**batch).logits))


@pytest.mark.parametrize("config_class, model_class", BASELINES)
def test_save_and_load_through_auto_classes(tmp_path, config_class, model_class):
    config = baseline_config(config_class, history_input="items_and_events", time_loss="l1")
    model = model_class(config).eval()
    model.save_pretrained(tmp_path)
    loaded_config = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded_config) is config_class
    assert loaded_config.history_input == "items_and_events" and loaded_config.time_loss == "l1"
    batch = make_batch(config)
    for auto_class in (AutoModel, AutoModelForActionGeneration):
        loaded = auto_class.from_pretrained(tmp_path).eval()
        assert type(loaded) is model_class
        torch.testing.assert_close(loaded(**batch).loss, model(**batch).loss)
    assert model.get_input_embeddings() is model.inputs.features.item_embeddings


def test_config_validation():
    with pytest.raises(A2GenConfigError, match="history_input='events'"):
        baseline_config(MMoEConfig, history_input="events")
    with pytest.raises(A2GenConfigError, match="time_loss"):
        baseline_config(PLEConfig, time_loss="huber")
    with pytest.raises(A2GenConfigError, match="num_experts=0"):
        baseline_config(MMoEConfig, num_experts=0)
    with pytest.raises(A2GenConfigError, match="no action besides start and end"):
        MMoEConfig(action_names=["start", "leave"])
    defaults = MMoEConfig()
    assert (defaults.num_experts, defaults.expert_hidden_sizes, defaults.time_loss_weight) == (4, [64, 32], 0.1)
    assert PLEConfig(num_levels=2).num_levels == 2
    assert PLEForActionPrediction(baseline_config(PLEConfig, num_levels=2)).experts.levels[0].shared_gate is not None


@pytest.mark.parametrize("tower_hidden_sizes", [[16], []])
def test_stacked_experts_and_heads_equal_one_module_at_a_time(tower_hidden_sizes):
    """MMoE's experts, gates, towers and heads run as a few stacked products; the same numbers as each module alone."""
    torch.manual_seed(0)
    config = baseline_config(MMoEConfig, tower_hidden_sizes=tower_hidden_sizes)
    model = MMoEForActionPrediction(config).eval()
    batch = make_batch(config)
    features = model.inputs(**{k: v for k, v in batch.items() if not k.startswith("label")})
    layer, heads = model.experts, model.heads
    expert_outputs = torch.stack([expert(features) for expert in layer.experts], dim=1)  # (B, E, h)
    expected_tasks = torch.stack(
        [torch.einsum("be,beh->bh", torch.softmax(gate(features), -1), expert_outputs) for gate in layer.gates], dim=1
    )
    tasks = layer(features)
    torch.testing.assert_close(tasks, expected_tasks, rtol=1e-5, atol=1e-6)
    towers = [tower(tasks[:, task]) for task, tower in enumerate(heads.towers)]
    expected_times = torch.cat([head(state) for head, state in zip(heads.time_heads, towers)], dim=-1)
    expected_binary = torch.cat([head(towers[task]) for head, task in zip(heads.binary_heads, heads.binary_tasks)], -1)
    logits, times = heads(tasks)
    torch.testing.assert_close(times[:, config.task_action_ids], expected_times, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits[:, config.binary_action_ids], expected_binary, rtol=1e-5, atol=1e-6)
    # Gradients reach every expert, gate, tower and head.
    model(**batch).loss.backward()
    unreached = [name for name, parameter in model.named_parameters()
                 if parameter.grad is None and not name.startswith("inputs.features.side")]
    assert not unreached, unreached


@pytest.mark.parametrize("config_class, model_class", BASELINES)
def test_baseline_inputs_are_checked_as_a2gen_s_are(config_class, model_class):
    """The baselines' forward names a bad input as A2Gen's does (before: raw torch errors), casts times to a
    bfloat16 model's dtype and reads int32 labels."""
    config = baseline_config(config_class)
    model = model_class(config).eval()
    batch = make_batch(config)
    cases = (
        ({"user_ids": batch["user_ids"] + 10_000}, ValueError, r"user_ids must lie in \[0, user_buckets=\d+\)"),
        ({"item_ids": batch["item_ids"][:2]}, ValueError, r"item_ids has shape \(2,\): its B dimension is 2"),
        ({"user_ids": batch["user_ids"].float()}, TypeError, r"user_ids must hold integer ids"),
        ({"labels": batch["labels"] - 5}, ValueError, r"labels hold -\d+ at position .*; label ids must be action ids"),
    )
    for change, error, message in cases:
        with pytest.raises(error, match=message):
            model(**{**batch, **change})
    expected = model(**batch).loss
    assert model(**{**batch, "labels": batch["labels"].int()}).loss == expected
    assert torch.isfinite(model.to(torch.bfloat16)(**batch).loss)
