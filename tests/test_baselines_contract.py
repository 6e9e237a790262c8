"""MMoE / PLE read a batch as A2Gen does: unknown label times, empty batches and output flags."""

import re

import pytest
import torch
from conftest import make_batch
from test_baselines import BASELINES, HISTORY_INPUTS, baseline_config

from a2gen_hf import MMoEConfig, PLEConfig

IDS = [model_class.__name__ for _, model_class in BASELINES]


def build(config_class, model_class, **overrides):
    torch.manual_seed(0)
    config = baseline_config(config_class, **overrides)
    return model_class(config), make_batch(config)


def loss_and_gradients(model, batch):
    model.zero_grad()
    out = model(**batch)
    out.loss.backward()
    return out, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("unknown", [float("nan"), float("inf")])
@pytest.mark.parametrize("time_loss", ["mse", "l1"])
@pytest.mark.parametrize(("config_class", "model_class"), BASELINES, ids=IDS)
def test_unknown_label_times_are_never_read(config_class, model_class, time_loss, unknown):
    # label_time_mask 0 says "unknown": the input check lets such a time be NaN, and A2Gen's loss never reads it.
    model, batch = build(config_class, model_class, time_loss=time_loss)
    model.train()
    mask = torch.ones_like(batch["labels"])
    mask[:, 1] = 0  # the first action of every example (the end action for the one-action row) has no known time
    zeros = batch["label_times"].clone()
    zeros[:, 1] = 0.0
    poisoned = zeros.clone()
    poisoned[:, 1] = unknown
    torch.manual_seed(1)
    expected, expected_gradients = loss_and_gradients(model, {**batch, "label_times": zeros, "label_time_mask": mask})
    torch.manual_seed(1)
    out, gradients = loss_and_gradients(model, {**batch, "label_times": poisoned, "label_time_mask": mask})
    for part in ("loss", "action_loss", "time_loss"):
        assert torch.isfinite(getattr(out, part)), part
        torch.testing.assert_close(getattr(out, part), getattr(expected, part))
    assert expected.time_loss > 0  # the other actions' known times still count
    assert gradients.keys() == expected_gradients.keys()
    for name, gradient in gradients.items():
        assert torch.isfinite(gradient).all(), name  # not even the backward may read the unknown time
        torch.testing.assert_close(gradient, expected_gradients[name], msg=name)


@pytest.mark.parametrize("history_input", HISTORY_INPUTS)
@pytest.mark.parametrize(("config_class", "model_class"), BASELINES, ids=IDS)
def test_an_empty_batch_is_refused_by_name_only_for_a_loss(config_class, model_class, history_input):
    """A loss needs an example; prediction on no examples gives empty outputs, as A2Gen's predict_actions does
    (before: predict_actions was refused with a message about a loss it does not compute)."""
    model, batch = build(config_class, model_class, history_input=history_input)
    model.eval()
    empty = {name: value[:0] for name, value in batch.items()}
    with pytest.raises(ValueError, match="the batch holds no examples: labels has shape \\(0, \\d+\\)"):
        model(**empty)
    prediction = model.predict_actions(**empty)
    vocab = model.config.vocab_size
    for name in ("action_probabilities", "expected_times", "expected_seconds"):
        assert getattr(prediction, name).shape == (0, vocab), name
    without_labels = {name: value for name, value in empty.items() if not name.startswith("label")}
    output = model(**without_labels)
    assert output.loss is None and output.logits.shape[0] == 0
    assert model(**{name: value[:1] for name, value in batch.items()}).loss.isfinite()  # one example is a batch


@pytest.mark.parametrize("flag", ["output_hidden_states", "output_attentions"])
@pytest.mark.parametrize(("config_class", "model_class"), BASELINES, ids=IDS)
def test_output_flags_are_refused_never_ignored(config_class, model_class, flag, tmp_path):
    model, batch = build(config_class, model_class)
    model.eval()
    name = model_class.__name__.removesuffix("ForActionPrediction")
    with pytest.raises(ValueError, match=f"{flag}=True \\(forward\\): {name} has no hidden states or attentions"):
        model(**batch, **{flag: True})
    with pytest.raises(ValueError, match=flag):
        model.predict_actions(**batch, **{flag: True})
    reference = model(**batch)
    for off in (False, None):  # the "off" values pass and change nothing
        torch.testing.assert_close(model(**batch, **{flag: off}).logits, reference.logits)

    # Asked for by the config: refused at forward the same way (before: silently ignored).
    flagged, _ = build(config_class, model_class, **{flag: True})
    with pytest.raises(ValueError, match=f"{flag}=True \\(the config\\)"):
        flagged(**batch)
    assert flagged(**batch, **{flag: False}).loss.isfinite()  # the argument overrides the config, as in transformers
    model.save_pretrained(tmp_path)
    loaded = model_class.from_pretrained(tmp_path, **{flag: True})
    with pytest.raises(ValueError, match=f"{flag}=True \\(the config\\)"):
        loaded(**batch)


@pytest.mark.parametrize(
    ("field", "huge"),
    [
        ("num_experts", 10**12), ("num_levels", 10**12), ("num_specific_experts", 10**12),
        ("num_shared_experts", 10**12), ("expert_hidden_sizes", [64, 10**12]), ("tower_hidden_sizes", [10**12]),
        ("item_buckets", 10**12), ("id_embedding_size", 10**12),
    ],
)  # fmt: skip
def test_sizes_and_counts_above_their_bounds_are_refused_by_field(field, huge):
    """Before: accepted, and building ran a Python loop until memory was exhausted (PLE's num_levels=10**12 was still
    building after 30 s; num_experts=10**12 a MemoryError after 45 s) or failed in torch's allocator."""
    from a2gen_hf import A2GenConfigError

    config_class = PLEConfig if field in ("num_levels", "num_specific_experts", "num_shared_experts") else MMoEConfig
    each = "each entry" if isinstance(huge, list) else "it"
    with pytest.raises(
        A2GenConfigError, match=rf"{field}={re.escape(str(huge))} is out of range: {each} must be an integer from"
    ) as refused:
        config_class(**{field: huge})
    from a2gen_hf.configuration_a2gen import SIZE_BOUNDS

    low, high, _ = SIZE_BOUNDS[field]
    assert f"must be an integer from {low} to {high:,} (MAX_" in str(refused.value)
    config_class(**{field: [high] if isinstance(huge, list) else high})  # the bound itself is allowed


@pytest.mark.parametrize(("config_class", "model_class"), BASELINES, ids=IDS)
def test_refusals_inherited_from_a2gen_name_the_baseline_and_its_parts(config_class, model_class):
    """Before: MMoE / PLE refused gradient checkpointing because of "its layers (CAM, HSE, the generator)" and
    resize_token_embeddings because "A2Gen's action vocabulary is fixed": another model's parts."""
    model, _ = build(config_class, model_class)
    name = model_class.__name__
    with pytest.raises(
        ValueError, match=rf"{name} does not support gradient checkpointing: its layers \(.*the experts"
    ) as refused:
        model.gradient_checkpointing_enable()
    assert "CAM" not in str(refused.value) and "generator" not in str(refused.value)
    with pytest.raises(
        NotImplementedError, match=rf"{name}'s action vocabulary is fixed by config.action_names"
    ) as refused:
        model.resize_token_embeddings(10)
    assert "A2Gen" not in str(refused.value) and "generator" not in str(refused.value)
    assert f"build a new {config_class.__name__} with the new action_names" in str(refused.value)
