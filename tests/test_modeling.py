"""Model contracts: shapes, padding invariance, causality, CAM gate, overfitting, generate, persistence."""

import pytest
import torch
from conftest import history_inputs, make_batch, tiny_config  # noqa: F401  (imported from here by older tests)
from transformers import AutoConfig, AutoModel

from a2gen_hf import (
    A2GenConfig,
    A2GenConfigError,
    A2GenForActionGeneration,
    A2GenModel,
    AutoModelForActionGeneration,
    ContextAwareAttention,
    modeling_a2gen,
)
from a2gen_hf.configuration_a2gen import LEGACY_DEFAULTS
from a2gen_hf.modeling_a2gen import (
    INPUT_SHAPES,
    EventMoments,
    ItemMomentDecoder,
    ItemMomentTable,
    TargetInteractions,
    times_of_actions,
)
from a2gen_hf.strict_loading import CheckpointError
from a2gen_hf.time_encoding import normalize_seconds

GENERATORS = ["iag", "eag"]


@pytest.fixture(params=GENERATORS)
def model_and_batch(request):
    torch.manual_seed(0)
    config = tiny_config(request.param)
    return A2GenForActionGeneration(config).eval(), make_batch(config)


def test_output_shapes_and_dtypes(model_and_batch):
    model, batch = model_and_batch
    config = model.config
    out = model(**batch, output_hidden_states=True, output_attentions=True)
    positions = config.max_actions
    assert out.logits.shape == (4, positions, config.vocab_size) and out.logits.dtype == torch.float32
    assert out.times.shape == (4, positions)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    for part in ("action_loss", "time_loss", "order_loss"):
        assert torch.isfinite(getattr(out, part))
    assert (out.aux_action_loss is not None) == (config.generator_type == "iag")
    assert out.history_representation.shape == (4, config.hidden_size)
    assert len(out.hidden_states) == 5 and len(out.attentions) == 3
    # CAM_act runs over B * N sequences; the returned tensor is the one it used (so gradients reach it).
    assert out.attentions[0].shape == (4 * 5, config.num_attention_heads, 3, 3)
    assert out.attentions[1].shape == (4, config.num_attention_heads, 5, 5)
    as_tuple = model(**batch, return_dict=False)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], out.loss)
    plain = model(**batch)
    assert plain.hidden_states is None and plain.attentions is None


def pad_history(batch, extra_items, extra_events, left):
    """Add padding history items (left or right) and padding events to every item."""
    padded = dict(batch)
    for key in ("history_item_ids", "history_item_side_ids", "history_action_ids", "history_action_times"):
        value = batch[key]
        if key in ("history_action_ids", "history_action_times"):
            value = torch.cat([value, torch.zeros(*value.shape[:2], extra_events, dtype=value.dtype)], dim=2)
        pad = torch.zeros(value.shape[0], extra_items, *value.shape[2:], dtype=value.dtype)
        if key == "history_action_times":
            pad = pad + 7.0  # garbage times on padding must not matter
        padded[key] = torch.cat([pad, value] if left else [value, pad], dim=1)
    padded["history_action_times"] = padded["history_action_times"].clone()
    padded["history_action_times"][padded["history_action_ids"] == 0] = 3.0
    return padded


@pytest.mark.parametrize("left", [True, False])
def test_padding_history_does_not_change_outputs(model_and_batch, left):
    model, batch = model_and_batch
    reference = model(**batch)
    padded = model(**pad_history(batch, extra_items=3, extra_events=2, left=left))
    for name in ("loss", "logits", "times", "history_representation"):
        torch.testing.assert_close(getattr(padded, name), getattr(reference, name), atol=1e-5, rtol=1e-5)


def test_padding_labels_does_not_change_loss(model_and_batch):
    model, batch = model_and_batch
    reference = model(**batch)
    shorter = dict(batch, labels=batch["labels"][:, :-1], label_times=batch["label_times"][:, :-1])
    keep = batch["labels"][:, -1] == 0  # rows whose last label is padding can lose it
    assert keep.sum() >= 2
    out = model(**{k: v[keep] for k, v in shorter.items()})
    ref = model(**{k: v[keep] for k, v in batch.items()})
    torch.testing.assert_close(out.loss, ref.loss, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(reference.loss)


def test_labels_padded_past_max_actions_give_the_same_loss(model_and_batch):
    """Both generators take labels padded past the max_actions + 1 steps the model reads (before: EAG refused them,
    IAG took them); real actions there are still refused."""
    model, batch = model_and_batch
    width = model.config.max_actions + 6
    pad = width - batch["labels"].shape[1]
    assert pad > 0
    padded = dict(
        batch,
        labels=torch.nn.functional.pad(batch["labels"], (0, pad), value=0),
        label_times=torch.nn.functional.pad(batch["label_times"], (0, pad), value=0.0),
    )
    torch.testing.assert_close(model(**padded).loss, model(**batch).loss, atol=1e-6, rtol=1e-6)
    padded["labels"][0, -1] = 1
    with pytest.raises(ValueError, match="max_actions"):
        model(**padded)


def test_eag_is_causal():
    torch.manual_seed(0)
    config = tiny_config("eag")
    model = A2GenForActionGeneration(config).eval()
    batch = make_batch(config)
    inputs = history_inputs(batch)
    action_ids = batch["labels"][:, :-1].clone()
    action_ids[action_ids == 0] = 2
    action_times = batch["label_times"][:, :-1]
    reference = model(**inputs, action_ids=action_ids, action_times=action_times)
    changed_ids, changed_times = action_ids.clone(), action_times.clone()
    changed_ids[:, 3:] = 4
    changed_times[:, 3:] = 9.0
    changed = model(**inputs, action_ids=changed_ids, action_times=changed_times)
    torch.testing.assert_close(changed.logits[:, :3], reference.logits[:, :3])
    torch.testing.assert_close(changed.times[:, :3], reference.times[:, :3])
    assert not torch.allclose(changed.logits[:, 3:], reference.logits[:, 3:])


def test_cam_head_gate_sums_to_one_and_masks_padding():
    torch.manual_seed(0)
    cam = ContextAwareAttention(sequence_size=6, context_size=5, hidden_size=8, num_heads=4)
    sequence, context = torch.randn(3, 7, 6), torch.randn(3, 5)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[0, 4:] = False
    mask[2] = False  # an empty sequence
    output, probabilities, gate = cam(sequence, context, mask)
    torch.testing.assert_close(gate.sum(-1), torch.ones(3))
    assert (gate > 0).all()
    assert output[0, 4:].abs().max() == 0 and output[2].abs().max() == 0
    assert probabilities[0, :, :4, 4:].abs().max() == 0
    torch.testing.assert_close(probabilities[0, :, :4].sum(-1), torch.ones(4, 4))
    assert torch.isfinite(output).all()


@pytest.mark.parametrize("generator", GENERATORS)
def test_tiny_model_overfits_one_batch(generator):
    torch.manual_seed(0)
    config = tiny_config(generator, hidden_size=32, id_embedding_size=16)
    model = A2GenForActionGeneration(config)
    batch = make_batch(config, batch_size=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = model(**batch).loss.item()
    for _ in range(150):
        optimizer.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1 * first, (first, loss.item())


def teacher_forced(model, inputs, sequences, times):
    """Forward pass over generated sequences: per position, predicted logits and the time of the generated action."""
    if model.config.generator_type == "eag":
        out = model(**inputs, action_ids=sequences[:, :-1], action_times=times[:, :-1])
    else:
        out = model(**inputs)
    steps = sequences.shape[1] - 1
    return out.logits[:, :steps], times_of_actions(out.times[:, :steps], sequences[:, 1:])


@pytest.mark.parametrize("mode", ["greedy", "sample", "beam"])
@pytest.mark.parametrize("time_per_action", [False, True])
def test_generate_matches_teacher_forced_forward(model_and_batch, mode, time_per_action):
    """generate()'s raw times (monotonic_times=False) are the forward's (with time_per_action: the time the forward
    gives the chosen action); its default times are the forward's raised to the previous action's time."""
    model, batch = model_and_batch
    if time_per_action:
        torch.manual_seed(0)
        model = A2GenForActionGeneration(tiny_config(model.config.generator_type, time_per_action=True)).eval()
    inputs = history_inputs(batch)
    options = {"greedy": {}, "sample": {"do_sample": True, "top_k": 0}, "beam": {"num_beams": 3}}[mode]
    for monotonic in (False, True):
        torch.manual_seed(1)
        out = model.generate(**inputs, return_dict_in_generate=True, monotonic_times=monotonic, **options)
        assert out.sequences.shape == out.times.shape
        assert (out.sequences[:, 0] == model.config.start_action_id).all()
        sequences, times = out.sequences, out.times
        logits, predicted_times = teacher_forced(model, inputs, sequences.clamp_min(0), times)
        if monotonic:
            predicted_times = torch.maximum(predicted_times, times[:, :-1])
        mask = sequences[:, 1:] != 0  # generated positions, up to and including the end action
        torch.testing.assert_close(predicted_times[mask], times[:, 1:][mask], atol=1e-5, rtol=1e-5)
    if mode == "greedy":
        # generate() never emits padding or the start action after position 0 (their scores are -inf), so compare
        # with those columns masked too.
        allowed = logits.clone()
        allowed[..., [0, model.config.start_action_id]] = -float("inf")
        assert torch.equal(allowed.argmax(-1)[mask], sequences[:, 1:][mask])
    # generation stops at the end action: nothing but padding follows it
    for row in sequences.tolist():
        if model.config.end_action_id in row:
            tail = row[row.index(model.config.end_action_id) + 1 :]
            assert all(token == 0 for token in tail)


def test_generate_returns_tensor_by_default_and_beam_output_type(model_and_batch):
    model, batch = model_and_batch
    inputs = history_inputs(batch)
    sequences = model.generate(**inputs)
    assert isinstance(sequences, torch.Tensor) and sequences.dtype == torch.long
    beam = model.generate(**inputs, num_beams=2, num_return_sequences=2, return_dict_in_generate=True,
                          output_scores=True)
    assert type(beam).__name__ == "A2GenBeamGenerateOutput"
    assert beam.sequences.shape[0] == 8 and beam.sequences_scores.shape == (8,)
    assert beam.beam_indices.shape[0] == 8
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(**inputs, max_new_tokens=model.config.max_actions + 1)


def test_seeded_sampling_is_reproducible(model_and_batch):
    model, batch = model_and_batch
    inputs = history_inputs(batch)
    torch.manual_seed(3)
    first = model.generate(**inputs, do_sample=True, return_dict_in_generate=True)
    torch.manual_seed(3)
    second = model.generate(**inputs, do_sample=True, return_dict_in_generate=True)
    assert torch.equal(first.sequences, second.sequences) and torch.equal(first.times, second.times)


@pytest.mark.parametrize("options", [{}, {"num_beams": 3}, {"do_sample": True}])
def test_eag_cache_and_no_cache_agree(options):
    torch.manual_seed(0)
    config = tiny_config("eag")
    model = A2GenForActionGeneration(config).eval()
    inputs = history_inputs(make_batch(config))
    torch.manual_seed(5)
    cached = model.generate(**inputs, use_cache=True, return_dict_in_generate=True, **options)
    torch.manual_seed(5)
    uncached = model.generate(**inputs, use_cache=False, return_dict_in_generate=True, **options)
    assert torch.equal(cached.sequences, uncached.sequences)
    torch.testing.assert_close(cached.times, uncached.times, atol=1e-6, rtol=1e-6)
    assert cached.cache is not None and uncached.cache is None


def test_predict_actions(model_and_batch):
    model, batch = model_and_batch
    prediction = model.predict_actions(**batch)
    config = model.config
    probabilities = prediction.action_probabilities
    assert probabilities.shape == (4, config.vocab_size)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    assert (probabilities[:, config.start_action_id] == 1).all()
    assert (prediction.expected_seconds >= 0).all() and torch.isfinite(prediction.expected_seconds).all()
    assert torch.allclose(prediction.expected_seconds[:, config.start_action_id], torch.zeros(4), atol=1e-4)


def test_save_load_identity_through_auto_classes(model_and_batch, tmp_path):
    model, batch = model_and_batch
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, A2GenConfig) and config.generator_type == model.config.generator_type
    reloaded = AutoModelForActionGeneration.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded, A2GenForActionGeneration)
    before, after = model(**batch), reloaded(**batch)
    assert torch.equal(before.logits, after.logits) and torch.equal(before.times, after.times)
    encoder = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(encoder, A2GenModel)
    encoded = encoder(**history_inputs(batch))
    assert torch.equal(encoded.history_representation, before.history_representation)


@pytest.mark.parametrize("generator", GENERATORS)
def test_times_per_action_save_and_reload(generator, tmp_path):
    """A model with ``time_per_action`` reloads with its per-action heads and gives the same times; the paper's
    one-time heads' weights do not load into it (a shape the strict loader names)."""
    torch.manual_seed(0)
    model = A2GenForActionGeneration(tiny_config(generator, time_per_action=True)).eval()
    batch = make_batch(model.config)
    model.save_pretrained(tmp_path / "per_action")
    reloaded = AutoModelForActionGeneration.from_pretrained(tmp_path / "per_action").eval()
    assert reloaded.config.time_per_action and reloaded.generator.heads.time.out_features == model.config.vocab_size
    torch.testing.assert_close(reloaded(**batch).times, model(**batch).times, rtol=0, atol=0)
    A2GenForActionGeneration(tiny_config(generator)).save_pretrained(tmp_path / "paper")
    with pytest.raises(CheckpointError, match="tensors of another shape: .*generator.heads.time.bias"):
        A2GenForActionGeneration.from_pretrained(tmp_path / "paper", time_per_action=True)


def test_init_weights_covers_every_parameter():
    config = tiny_config("iag")
    model = A2GenForActionGeneration(config)
    for parameter in model.parameters():
        parameter.data.fill_(float("nan"))
        if hasattr(parameter, "_is_hf_initialized"):
            del parameter._is_hf_initialized
    model.apply(model._init_weights)
    for name, parameter in model.named_parameters():
        assert torch.isfinite(parameter).all(), name


def test_input_embeddings_accessors(model_and_batch):
    model, _ = model_and_batch
    table = model.get_input_embeddings()
    assert table.num_embeddings == model.config.item_buckets
    replacement = torch.nn.Embedding(model.config.item_buckets, table.embedding_dim, padding_idx=0)
    model.set_input_embeddings(replacement)
    assert model.get_input_embeddings() is replacement
    assert model.base_model is model.a2gen


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"hidden_size": 30, "num_attention_heads": 4}, "not divisible by num_attention_heads"),
        ({"generator": "rnn"}, "generator='rnn' is unknown; use one of \\['iag', 'eag'\\]"),
        ({"action_names": ["like", "leave"]}, "start_action='start' is not in action_names"),
        ({"time_log_std": 0.0}, "time_log_std"),
        ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob"),
        ({"head_dim": 0}, "head_dim=0 must be a positive integer"),
    ],
)
def test_bad_config_messages(overrides, message):
    with pytest.raises(A2GenConfigError, match=message):
        A2GenConfig(**overrides)


def test_ecommerce_vocabulary():
    config = A2GenConfig(action_names=["click", "collect", "cart", "buy", "leave"], start_action="click")
    assert config.start_action_id == 1 and config.end_action_id == 5 and config.vocab_size == 6


def test_missing_side_features_and_nan_times_give_clear_errors(model_and_batch):
    model, batch = model_and_batch
    without_side = {k: v for k, v in batch.items() if k != "item_side_ids"}
    with pytest.raises(ValueError, match="item side features"):
        model(**without_side)
    bad_times = dict(batch, history_action_times=batch["history_action_times"].clone())
    bad_times["history_action_times"][0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        model(**bad_times)


@pytest.mark.parametrize("generator", ["iag", "eag"])
def test_labels_outside_the_vocabulary_are_refused_by_name(generator):
    """An id beyond the vocabulary failed inside torch ("Target 10 is out of bounds"), and a negative id other than
    -100 was trained as padding."""
    config = tiny_config(generator)
    model = A2GenForActionGeneration(config)
    batch = make_batch(config)
    ignored = batch["labels"].clone()
    ignored[:, 2:] = -100
    assert torch.isfinite(model(**{**batch, "labels": ignored}).loss)
    for value in (config.vocab_size, -1):
        labels = batch["labels"].clone()
        labels[1, 1] = value
        with pytest.raises(ValueError, match=rf"labels hold {value} at position \(1, 1\); label ids must be action ids"):
            model(**{**batch, "labels": labels})


@pytest.mark.parametrize("time_loss", ["mse", "l1"])
def test_an_unknown_label_time_reaches_neither_the_loss_nor_its_gradient(model_and_batch, time_loss):
    """A NaN label time where label_time_mask is 0: the loss was finite but 61 of IAG's weights got a NaN gradient
    (the mask selected the errors, and the backward of that selection is 0 * NaN); now equal to 0.0 in its place."""
    model, batch = model_and_batch
    model.config.time_loss = time_loss
    mask = torch.ones_like(batch["labels"])
    mask[:, 1] = 0
    gradients = []
    for unknown in (float("nan"), 0.0):
        times = batch["label_times"].clone()
        times[:, 1] = unknown
        model.zero_grad()
        out = model(**dict(batch, label_times=times, label_time_mask=mask))
        out.loss.backward()
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert torch.isfinite(out.loss)
    for name, gradient in gradients[0].items():
        assert torch.equal(gradient, gradients[1][name]), name


def test_a_model_built_from_another_model_s_config_is_refused_naming_both():
    """Before: AttributeError: 'MMoEConfig' object has no attribute 'hidden_size'."""
    from a2gen_hf import MMoEConfig, MMoEForActionPrediction

    with pytest.raises(TypeError, match="A2GenForActionGeneration is built from a A2GenConfig, got a MMoEConfig"):
        A2GenForActionGeneration(MMoEConfig())
    with pytest.raises(TypeError, match="MMoEForActionPrediction is built from a MMoEConfig, got a A2GenConfig"):
        MMoEForActionPrediction(A2GenConfig())


def test_time_loss_l1_regresses_the_median_option():
    torch.manual_seed(0)
    model = A2GenForActionGeneration(tiny_config("iag")).eval()
    batch = make_batch(model.config)
    squared = model(**batch)
    model.config.time_loss = "l1"
    absolute = model(**batch)
    targets, target_times = batch["labels"][:, 1:], batch["label_times"][:, 1:]
    known = targets > 0
    expected = (((absolute.times - target_times).abs() * known).sum(1) / known.sum(1)).mean()  # per-example mean
    torch.testing.assert_close(absolute.time_loss, expected)
    assert not torch.isclose(absolute.time_loss, squared.time_loss)
    with pytest.raises(A2GenConfigError, match="time_loss='huber' is unknown"):
        A2GenConfig(time_loss="huber")


@pytest.mark.parametrize("generator", GENERATORS)
def test_time_per_action_trains_each_label_on_its_own_actions_time(generator):
    """With ``time_per_action`` the heads give `(B, K, V)` times, the time loss reads each label's own action's time
    (moving the time of an action no label holds changes nothing, moving a held one does), the order loss the
    predicted action's, and predict_actions each action's own; the paper's heads are unchanged without it."""
    torch.manual_seed(0)
    model = A2GenForActionGeneration(tiny_config(generator, time_per_action=True)).eval()
    batch = make_batch(model.config)
    out = model(**batch)
    config = model.config
    assert out.times.shape == (4, config.max_actions, config.vocab_size)
    if generator == "iag":  # CAM_gen reads the slot's expected auxiliary time, sum_a p(a) t(a)
        assert out.aux_times.shape == out.times.shape
        slots = model.generator.slots(model.a2gen(**history_inputs(batch)).generation_context)
        aux_logits, aux_times, features = model.generator.slot_features(slots)
        expected = (torch.softmax(aux_logits, -1) * aux_times).sum(-1)
        assert features.shape[-1] == config.hidden_size + config.vocab_size + 1
        torch.testing.assert_close(features[..., -1], expected, rtol=1e-5, atol=1e-6)
    targets = batch["labels"][:, 1:]
    held = set(targets[targets > 0].tolist())
    absent = next(action for action in range(1, config.vocab_size) if action not in held)
    timed_first = targets[:, 0] > 0  # counted by EAG and IAG alike
    if "label_time_mask" in batch:
        timed_first &= batch["label_time_mask"][:, 1].bool()
    present = int(targets[timed_first.nonzero()[0, 0], 0])
    with torch.no_grad():
        model.generator.heads.time.bias[absent] += 3.0
        unmoved = model(**batch)
        model.generator.heads.time.bias[present] += 3.0
        moved = model(**batch)
    if generator == "iag":  # the final heads feed nothing: the logits stay, only the held action's time moves
        torch.testing.assert_close(unmoved.logits, out.logits)
        torch.testing.assert_close(unmoved.time_loss, out.time_loss)
    assert not torch.isclose(moved.time_loss, unmoved.time_loss)
    # predict_actions reads each action's own time: a constant row gives that constant as its expected time.
    with torch.no_grad():
        for head in (model.generator.heads.time,):
            head.weight.zero_()
            head.bias.copy_(torch.linspace(-1, 1, config.vocab_size))
        prediction = model.predict_actions(**history_inputs(batch))
    timed = [action for action in range(1, config.vocab_size) if action != config.start_action_id]
    if generator == "iag":
        torch.testing.assert_close(prediction.expected_times[:, timed], torch.linspace(-1, 1, config.vocab_size)[timed]
                                   .expand(4, -1), rtol=1e-5, atol=1e-5)
    assert A2GenForActionGeneration(tiny_config(generator)).generator.heads.time.out_features == 1


def test_history_propensity_is_the_count_rule():
    from a2gen_hf.modeling_a2gen import history_action_propensity

    action_ids = torch.tensor([[[1, 2, 0], [1, 3, 2], [1, 0, 0], [4, 4, 0]]])
    mask = torch.tensor([[1, 1, 1, 0]])  # the last item is padding
    propensity = history_action_propensity(action_ids, mask, vocab_size=5)
    torch.testing.assert_close(propensity, torch.tensor([[0.0, 1.0, 2 / 3, 1 / 3, 0.0]]))


@pytest.mark.parametrize("generator", GENERATORS)
def test_propensity_features_and_id_free_mode(generator):
    torch.manual_seed(0)
    config = tiny_config(generator, history_propensity_features=True, use_id_embeddings=False)
    model = A2GenForActionGeneration(config).eval()
    batch = make_batch(config)
    reference = model(**batch)
    assert torch.isfinite(reference.loss)
    other_ids = dict(batch, item_ids=batch["item_ids"] % 7 + 1, user_ids=batch["user_ids"] % 5 + 1,
                     history_item_ids=batch["history_item_ids"] % 3 + 1)
    torch.testing.assert_close(model(**other_ids).logits, reference.logits)  # ids are not read
    padded = model(**pad_history(batch, extra_items=2, extra_events=1, left=True))
    torch.testing.assert_close(padded.logits, reference.logits, atol=1e-5, rtol=1e-5)
    fewer_likes = dict(batch, history_action_ids=batch["history_action_ids"].clone())
    fewer_likes["history_action_ids"][fewer_likes["history_action_ids"] == 2] = 3
    assert not torch.allclose(model(**fewer_likes).logits, reference.logits)
    # The id tables are never read, so they take no gradient (DDP would otherwise wait for theirs): every other
    # trainable weight gets one.
    features = model.a2gen.features
    assert not features.item_embeddings.weight.requires_grad and not features.user_embeddings.weight.requires_grad
    model.train()
    model(**batch).loss.backward()
    assert [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
    # ... and stay frozen through save / from_pretrained (loading made every parameter trainable again: a
    # DistributedDataParallel fine-tune of a saved id-free model stopped at its second step)
    import tempfile

    from transformers import AutoModel

    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        for loaded in (A2GenForActionGeneration.from_pretrained(folder).a2gen, AutoModel.from_pretrained(folder)):
            tables = loaded.features.item_embeddings.weight, loaded.features.user_embeddings.weight
            assert [table.requires_grad for table in tables] == [False, False]


def test_cam_built_on_its_own_is_initialised():
    cam = ContextAwareAttention(sequence_size=6, context_size=5, hidden_size=8, num_heads=4)
    for name, parameter in cam.named_parameters():
        assert torch.isfinite(parameter).all(), name
    assert cam.head_output_weight.abs().sum() > 0 and cam.head_output_bias.abs().sum() == 0


def test_count_features_are_the_logistic_regression_counts():
    from a2gen_hf.modeling_a2gen import HistoryCountFeatures

    config = tiny_config("iag", action_names=["click", "collect", "cart", "leave"], start_action="click")
    features = HistoryCountFeatures(config).eval()  # fresh statistics: mean 0, variance 1, i.e. raw features
    # One example, 4 history slots, oldest first; the first slot is padding (left padding).
    action_ids = torch.tensor([[[0, 0], [1, 2], [1, 3], [1, 2]]])
    mask = torch.tensor([[0, 1, 1, 1]])
    history_items = torch.tensor([[0, 7, 8, 9]])
    categories = torch.tensor([[[0], [5], [6], [5]]])
    raw = features(action_ids, mask, history_items, torch.tensor([8]), categories, torch.tensor([[5]]))[0]
    actions = 4  # click, collect, cart, leave
    share, recent, category, recency = (raw[i * actions : (i + 1) * actions] for i in range(4))
    torch.testing.assert_close(share, torch.tensor([1.0, 2 / 3, 1 / 3, 0.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(recent, share, atol=1e-4, rtol=0)  # all 3 items are among the 5 most recent
    torch.testing.assert_close(category, torch.tensor([1.0, 1.0, 0.0, 0.0]), atol=1e-4, rtol=0)
    # collect: most recent item (age 0); cart: the middle one (age 1); leave: never.
    torch.testing.assert_close(recency, torch.tensor([1.0, 1.0, 0.5, 0.0]), atol=1e-4, rtol=0)
    once = raw[4 * actions :]
    expected = torch.tensor([float(torch.log1p(torch.tensor(3.0))), 1 / 3, 2 / 3, 1.0, 0.5])
    torch.testing.assert_close(once, expected, atol=1e-4, rtol=0)


def test_running_standardizer_uses_all_training_rows_and_freezes_in_eval():
    from a2gen_hf.modeling_a2gen import RunningStandardizer

    standardizer = RunningStandardizer(2)
    first, second = torch.randn(5, 2) * 3 + 1, torch.randn(1, 2)  # a batch of one must work too
    standardizer(first)
    standardizer(second)
    rows = torch.cat([first, second])
    torch.testing.assert_close(standardizer.mean, rows.mean(0))
    torch.testing.assert_close(standardizer.variance, rows.var(0, unbiased=False))
    standardizer.eval()
    output = standardizer(first)
    torch.testing.assert_close(output, (first - rows.mean(0)) / rows.var(0, unbiased=False).sqrt())
    assert standardizer.count == 6
    # As sklearn's StandardScaler: no floor under a small variance, and a constant column is only centred.
    from sklearn.preprocessing import StandardScaler

    rows = torch.tensor([[0.0, 5.0], [0.0, 5.0], [0.0, 5.0], [0.01, 5.0]], dtype=torch.float64)
    standardizer = RunningStandardizer(2).double()
    standardizer(rows)
    standardizer.eval()
    probe = torch.tensor([[0.02, 6.0]], dtype=torch.float64)
    expected = StandardScaler().fit(rows.numpy()).transform(probe.numpy())
    torch.testing.assert_close(standardizer(probe), torch.from_numpy(expected))


@pytest.mark.parametrize("generator", GENERATORS)
def test_count_features_and_occurrence_head(generator, tmp_path):
    torch.manual_seed(0)
    config = tiny_config(generator, history_count_features=True, occurrence_head=True, occurrence_loss_weight=0.5)
    model = A2GenForActionGeneration(config)
    batch = make_batch(config)
    trained = model(**batch)  # training mode: fits the standardiser's statistics
    assert model.a2gen.extra_features.count_features.standardizer.count == 4
    parts = ("action_loss", "time_loss", "order_loss", "aux_action_loss", "aux_time_loss")
    weights = dict(action_loss=1.0, time_loss=0.1, order_loss=0.01, aux_action_loss=0.1, aux_time_loss=0.1)
    expected = sum(weights[name] * getattr(trained, name) for name in parts if getattr(trained, name) is not None)
    torch.testing.assert_close(trained.loss, expected + 0.5 * trained.occurrence_loss)
    assert trained.occurrence_logits.shape == (4, config.vocab_size)

    model.eval()
    reference = model(**batch)
    padded = model(**pad_history(batch, extra_items=2, extra_events=1, left=True))
    torch.testing.assert_close(padded.occurrence_logits, reference.occurrence_logits, atol=1e-5, rtol=1e-5)
    prediction = model.predict_actions(**history_inputs(batch))
    expected_probabilities = torch.sigmoid(reference.occurrence_logits)
    scored = [a for a in range(1, config.vocab_size) if a != config.start_action_id]
    torch.testing.assert_close(prediction.action_probabilities[:, scored], expected_probabilities[:, scored])
    assert (prediction.action_probabilities[:, config.start_action_id] == 1).all()

    model.save_pretrained(tmp_path)
    reloaded = A2GenForActionGeneration.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reloaded.a2gen.extra_features.count_features.standardizer.mean, model.a2gen.extra_features.count_features.standardizer.mean)
    torch.testing.assert_close(reloaded(**batch).occurrence_logits, reference.occurrence_logits)


def test_occurrence_path_scale_and_input_of_the_learned_paths():
    """occurrence_path_scale s: the head's linear and hidden-layer paths give s x their logits; the wide path, added
    after, is not scaled; a scale <= 0 is refused by name. occurrence_paths_input: what those paths read."""
    from a2gen_hf.features_a2gen import A2GenOccurrenceHead

    heads = {}
    for scale in (1.0, 0.1):
        torch.manual_seed(0)
        config = tiny_config("iag", history_count_features=True, wide_path=True, occurrence_path_scale=scale)
        heads[scale] = A2GenOccurrenceHead(config, context_size=48)  # 19 + 29 extra features
    context = torch.randn(3, 48)
    wide = heads[1.0].wide(context)
    torch.testing.assert_close(heads[0.1](context) - wide, 0.1 * (heads[1.0](context) - wide))
    assert heads[0.1].wide is not None and torch.equal(heads[0.1].wide(context), wide)
    with pytest.raises(ValueError, match=r"occurrence_path_scale=0 must be > 0"):
        tiny_config("iag", occurrence_head=True, occurrence_path_scale=0)

    # What the learned paths read: the context without the extra features (left to the wide path), or those alone.
    torch.manual_seed(0)
    without = A2GenOccurrenceHead(tiny_config("iag", history_count_features=True, wide_path=True,
                                              occurrence_paths_input="without_extra"), context_size=48)
    only = A2GenOccurrenceHead(tiny_config("iag", history_count_features=True, occurrence_paths_input="extra_only"),
                               context_size=48)
    assert without.linear.in_features == without.hidden.in_features == 19
    assert only.linear.in_features == only.hidden.in_features == 29 and only.wide is None
    changed = context.clone()
    changed[:, 19:] += 1.0  # the extra features only
    torch.testing.assert_close(without(changed) - without.wide(changed), without(context) - without.wide(context))
    changed = context.clone()
    changed[:, :19] += 1.0  # everything but the extra features
    torch.testing.assert_close(only(changed), only(context))
    with pytest.raises(ValueError, match="occurrence_paths_input='without_extra' leaves the count / popularity"):
        tiny_config("iag", occurrence_head=True, history_count_features=True, occurrence_paths_input="without_extra")
    with pytest.raises(ValueError, match="occurrence_paths_input='extra_only' reads the count / popularity"):
        tiny_config("iag", occurrence_head=True, occurrence_paths_input="extra_only")
    with pytest.raises(ValueError, match=r"occurrence_paths_input='all'; use one of"):
        tiny_config("iag", occurrence_head=True, occurrence_paths_input="all")


def test_occurrence_head_without_its_linear_path():
    """occurrence_linear_path=False: the learned paths are the hidden layer alone (no `linear` weights; the logits are
    the hidden-layer path's plus the wide path's), and the option survives a save / load."""
    from a2gen_hf.features_a2gen import A2GenOccurrenceHead

    torch.manual_seed(0)
    config = tiny_config("iag", history_count_features=True, wide_path=True, occurrence_paths_input="extra_only",
                         occurrence_linear_path=False)
    head = A2GenOccurrenceHead(config, context_size=48)
    assert head.linear is None and not any(name.startswith("linear.") for name in head.state_dict())
    context = torch.randn(3, 48)
    expected = head.output(torch.relu(head.hidden(context[:, 19:]))) + head.wide(context)
    torch.testing.assert_close(head(context), expected)
    assert A2GenConfig.from_dict(config.to_dict()).occurrence_linear_path is False


def test_occurrence_head_has_its_own_width(tmp_path):
    """occurrence_hidden_size: the occurrence head's hidden layer has that width while the rest of the model keeps
    hidden_size; a saved model comes back with it; a width below 1 or not an integer is refused by name."""
    torch.manual_seed(0)
    config = tiny_config("iag", history_count_features=True, wide_path=True, occurrence_paths_input="extra_only",
                         occurrence_hidden_size=24)
    model = A2GenForActionGeneration(config).eval()
    assert model.occurrence_head.hidden.out_features == model.occurrence_head.output.in_features == 24 != config.hidden_size
    model.save_pretrained(tmp_path)
    reloaded = A2GenForActionGeneration.from_pretrained(tmp_path)
    assert reloaded.config.occurrence_hidden_size == 24 and reloaded.occurrence_head.hidden.out_features == 24
    assert A2GenForActionGeneration(tiny_config("iag", occurrence_head=True)).occurrence_head.hidden.out_features == (
        config.hidden_size)
    with pytest.raises(ValueError, match=r"occurrence_hidden_size=0 must be >= 1 \(None: hidden_size\)"):
        tiny_config("iag", occurrence_head=True, occurrence_hidden_size=0)
    with pytest.raises(ValueError, match="occurrence_hidden_size"):
        tiny_config("iag", occurrence_head=True, occurrence_hidden_size=2.5)


def test_rare_ids_share_rows_and_survive_save_load(tmp_path):
    torch.manual_seed(0)
    config = tiny_config("iag", rare_id_threshold=2, rare_id_buckets=4)
    model = A2GenForActionGeneration(config).eval()
    features = model.a2gen.features
    assert features.item_embeddings.num_embeddings == config.item_buckets + 4
    item_counts = torch.zeros(config.item_buckets, dtype=torch.long)
    item_counts[[10, 11]] = 5  # frequent; every other item is rare
    summary = features.mark_rare_ids(item_counts, torch.full((config.user_buckets,), 3), threshold=2)
    assert summary == {"item_buckets_seen": 2, "item_buckets_rare": 0, "user_buckets_seen": 49, "user_buckets_rare": 0}
    rows = features.item_rows
    assert rows[0] == 0 and rows[10] == 10 and rows[11] == 11
    assert rows[12] == config.item_buckets + 12 % 4 and rows[16] == rows[12]
    embedded = features.item_features(torch.tensor([12, 16, 13, 10]), torch.ones(4, 2, dtype=torch.long))
    torch.testing.assert_close(embedded[0], embedded[1])  # two rare items in the same shared row
    assert not torch.allclose(embedded[0], embedded[2]) and not torch.allclose(embedded[0], embedded[3])
    model.save_pretrained(tmp_path)
    reloaded = A2GenForActionGeneration.from_pretrained(tmp_path)
    assert torch.equal(reloaded.a2gen.features.item_rows, rows)
    with pytest.raises(ValueError, match=r"item_counts has shape \(3,\); give one count per item hash bucket"):
        features.mark_rare_ids(torch.zeros(3), torch.zeros(config.user_buckets), threshold=2)
    plain = A2GenForActionGeneration(tiny_config("iag")).a2gen.features
    with pytest.raises(ValueError, match="build it with rare_id_threshold > 0"):
        plain.mark_rare_ids(item_counts, torch.zeros(config.user_buckets), threshold=2)


def test_target_popularity_is_the_smoothed_rate_left_one_out():
    from a2gen_hf.modeling_a2gen import TargetPopularityFeatures

    config = tiny_config("iag", action_names=["click", "buy", "leave"], start_action="click")
    popularity = TargetPopularityFeatures(config).eval()
    # Four training examples: item 3 (category 9) twice, bought once; items 4 and 5 (category 8) never bought.
    occurs = torch.zeros(4, config.vocab_size)
    occurs[0, 2] = 1
    popularity.fit(torch.tensor([3, 3, 4, 5]), torch.tensor([9, 9, 8, 8]), occurs)
    m, prior = popularity.SMOOTHING, 0.25
    category = (1 + m * prior) / (2 + m)
    item = (1 + m * category) / (2 + m)
    raw = popularity(torch.tensor([3]), torch.tensor([9]))[0]  # fresh statistics: raw features
    buy = config.action_id("buy")
    torch.testing.assert_close(raw[buy], torch.logit(torch.tensor(item)), atol=1e-5, rtol=0)
    torch.testing.assert_close(raw[config.vocab_size + buy], torch.logit(torch.tensor(category)), atol=1e-5, rtol=0)
    torch.testing.assert_close(raw[-2:], torch.log1p(torch.tensor([2.0, 2.0])))
    # Example 0 itself, left out: item 3 then has one example without a buy.
    left_out = popularity(torch.tensor([3]), torch.tensor([9]), exclude=occurs[:1])[0]
    category_without = (0 + m * prior) / (1 + m)
    item_without = (0 + m * category_without) / (1 + m)
    torch.testing.assert_close(left_out[buy], torch.logit(torch.tensor(item_without)), atol=1e-5, rtol=0)
    # One category for all (no side features): its rate is left alone, the same for every training row (left out,
    # it told each row's label apart on train alone: a bought row read a lower rate than every other one).
    popularity.fit(torch.tensor([3, 3, 4, 5]), torch.tensor([0, 0, 0, 0]), occurs)
    rows = popularity(torch.tensor([3, 3, 4, 5]), torch.tensor([0, 0, 0, 0]), exclude=occurs)
    assert torch.equal(rows[:, config.vocab_size + buy], rows[:1, config.vocab_size + buy].expand(4))
    assert rows[0, buy] < rows[1, buy]  # the item's rate is still left out of


def test_popularity_keyed_by_raw_id_tells_apart_items_that_share_a_bucket(tmp_path):
    from a2gen_hf.modeling_a2gen import TargetPopularityFeatures

    config = tiny_config("iag", action_names=["click", "buy", "leave"], start_action="click",
                         target_popularity_features=True, popularity_keys="raw_ids")
    popularity = TargetPopularityFeatures(config).eval()
    assert popularity.item_counts.shape == (0, config.vocab_size)
    # Keys 2**40 (bought) and 7 share bucket 3; key 11 is never bought. Category 9 for all.
    occurs = torch.zeros(3, config.vocab_size)
    occurs[0, config.action_id("buy")] = 1
    keys = torch.tensor([2**40, 7, 11])
    assert popularity.fit(keys, torch.tensor([9, 9, 9]), occurs) == 3
    assert popularity.item_table_keys.tolist() == [7, 11, 2**40]
    same_bucket = torch.tensor([3, 3, 3])
    features = popularity(same_bucket, torch.tensor([9, 9, 9]), item_keys=torch.tensor([2**40, 7, 5]))
    buy = config.action_id("buy")
    m = popularity.SMOOTHING
    category = (1 + m * (1 / 3)) / (3 + m)
    expected = [(1 + m * category) / (1 + m), (0 + m * category) / (1 + m), category]  # key 5: never counted
    torch.testing.assert_close(features[:, buy], torch.logit(torch.tensor(expected)), atol=1e-5, rtol=0)
    torch.testing.assert_close(features[:, -2], torch.log1p(torch.tensor([1.0, 1.0, 0.0])))
    with pytest.raises(ValueError, match="pass item_keys"):
        popularity(same_bucket, torch.tensor([9, 9, 9]))
    # The table's size goes into the config, so that from_pretrained builds it; the counts are saved with the model.
    model = A2GenForActionGeneration(config)
    model.a2gen.extra_features.popularity_features.fit(keys, torch.tensor([9, 9, 9]), occurs)
    assert model.config.popularity_table_size == 3
    model.save_pretrained(tmp_path)
    reloaded = A2GenForActionGeneration.from_pretrained(tmp_path).a2gen.extra_features.popularity_features
    assert reloaded.item_table_keys.tolist() == [7, 11, 2**40]
    assert torch.equal(reloaded.item_counts, model.a2gen.extra_features.popularity_features.item_counts)
    with pytest.raises(A2GenConfigError, match="popularity_keys='hashed' is unknown"):
        tiny_config("iag", popularity_keys="hashed")


@pytest.mark.parametrize("generator", GENERATORS)
def test_popularity_features_leave_out_own_labels_only_while_training(generator, tmp_path):
    torch.manual_seed(0)
    config = tiny_config(generator, target_popularity_features=True)
    model = A2GenForActionGeneration(config)
    batch = make_batch(config)
    from a2gen_hf.modeling_baselines import first_occurrence_targets

    occurs = first_occurrence_targets(batch["labels"], batch["label_times"], None, config.vocab_size)[0]
    model.a2gen.extra_features.popularity_features.fit(batch["item_ids"], batch["item_side_ids"][:, 0], occurs)
    model.a2gen.extra_features.popularity_features.standardizer.eval()  # keep the statistics fixed to compare contexts
    seen = []
    model.generator.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach().clone()))
    model(**batch)  # training: own outcomes left out
    model.eval()
    model(**batch)
    size = model.a2gen.extra_features.popularity_features.size
    assert not torch.allclose(seen[0][:, -size:], seen[1][:, -size:])
    model.save_pretrained(tmp_path)
    reloaded = A2GenForActionGeneration.from_pretrained(tmp_path).eval()
    assert torch.equal(reloaded.a2gen.extra_features.popularity_features.item_counts, model.a2gen.extra_features.popularity_features.item_counts)
    torch.testing.assert_close(reloaded(**batch).logits, model(**batch).logits)


def ragged_history(batch, left):
    """`batch` padded (left or right) to 8 items x 5 events, with a different number of real items per row, an item
    that has an id but no event, and events dropped from some items."""
    padded = pad_history(batch, extra_items=3, extra_events=2, left=left)
    padded = {key: value.clone() for key, value in padded.items()}
    items = padded["history_item_ids"].shape[1]
    real = torch.ones(items, dtype=torch.bool)
    real[:3] = not left
    real[items - 3:] = left
    for row, dropped in enumerate([0, 2, 4, 1]):  # row r loses `dropped` more real items at the padding side
        keep = real.clone()
        positions = keep.nonzero().squeeze(1)
        keep[positions[:dropped] if left else positions[len(positions) - dropped:]] = False
        for key in ("history_item_ids", "history_item_side_ids", "history_action_ids"):
            padded[key][row, ~keep] = 0
    padded["history_action_ids"][0, 4, :] = 0  # a real item without events
    padded["history_action_ids"][0, 3, 1:] = 0  # an item with one event (position 3 is real in row 0 either way)
    return padded


@pytest.mark.parametrize("left", [True, False])
@pytest.mark.parametrize("generator", GENERATORS)
def test_packed_history_equals_padded_layout(generator, left, monkeypatch):
    """Level 1 on the real items only (the default) gives the padded layout's outputs and gradients, also when the
    items run in groups by where their events end (groups of any size here)."""
    monkeypatch.setattr(modeling_a2gen, "MIN_EVENT_GROUP_ITEMS", 1)
    torch.manual_seed(0)
    model = A2GenForActionGeneration(tiny_config(generator))
    batch = ragged_history(make_batch(model.config), left)
    results = {}
    for packed in (True, False):
        model.a2gen.pack_history_items = packed
        model.zero_grad()
        out = model(**batch)
        out.loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        results[packed] = (out, grads)
    (packed, packed_grads), (padded, padded_grads) = results[True], results[False]
    for name in ("loss", "logits", "times", "history_representation"):
        torch.testing.assert_close(getattr(packed, name), getattr(padded, name), atol=1e-5, rtol=1e-5)
    assert packed_grads.keys() == padded_grads.keys()
    for name, grad in packed_grads.items():
        # fp32 rounding grows with a tensor's scale (unit-scale embeddings give gradients of 10-50): the absolute
        # tolerance follows the largest entry of each gradient.
        scale = max(1.0, float(padded_grads[name].abs().max()))
        torch.testing.assert_close(grad, padded_grads[name], atol=1e-5 * scale, rtol=1e-4, msg=name)


@pytest.mark.parametrize("layers", [1, 2])
def test_event_item_cross_layers_read_the_item_and_keep_both_layouts_equal(layers):
    """history_event_cross_layers: CAM_act reads events crossed with their item; packed = padded; absent stay 0."""
    torch.manual_seed(0)
    model = A2GenForActionGeneration(tiny_config("iag", history_event_cross_layers=layers)).eval()
    encoder = model.a2gen.encoder
    assert len(encoder.event_cross.event_maps) == layers
    batch = ragged_history(make_batch(model.config), left=False)
    packed = model(**batch)
    model.a2gen.pack_history_items = False
    padded = model(**batch)
    torch.testing.assert_close(packed.history_representation, padded.history_representation, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed.logits, padded.logits, atol=1e-5, rtol=1e-5)
    # The same events under two different items are crossed differently; an absent event stays zero.
    events = torch.randn(2, 3, encoder.event_cross.event_maps[0].in_features)
    events[:, 2] = 0
    items = torch.randn(2, model.a2gen.features.item_feature_size)
    crossed = encoder.cross_events(events, items)
    assert crossed.shape == events.shape
    assert torch.equal(crossed[:, 2], torch.zeros_like(crossed[:, 2]))
    assert not torch.allclose(crossed[0], encoder.cross_events(events[:1], items[1:])[0])
    # Without cross layers the model is the paper's: no extra parameters.
    plain = A2GenForActionGeneration(tiny_config("iag"))
    assert plain.a2gen.encoder.event_cross is None
    assert not any("event_cross" in name for name in plain.state_dict())


def test_event_moments_are_buckets_of_seconds_capped():
    config = tiny_config("iag", history_event_item_moments=8, history_event_moment_seconds=2.0)
    seconds = torch.tensor([0.0, 1.9, 2.0, 5.5, 15.9, 16.0, 1e5])
    times = normalize_seconds(seconds, config.time_log_mean, config.time_log_std)
    assert EventMoments.from_config(config)(times).tolist() == [0, 0, 1, 2, 7, 7, 7]


@pytest.mark.parametrize("source", ["item_features", "table"])
@pytest.mark.parametrize("generator", ["iag", "eag"])
def test_item_moments_give_each_item_and_moment_a_vector_and_keep_both_layouts_equal(generator, source):
    """history_event_item_moments: an event's vector follows its item and its moment; packed = padded, in values
    and gradients; absent events and unknown times get none; the vectors change the outputs."""
    torch.manual_seed(0)
    config = tiny_config(
        generator, history_event_item_moments=8, history_event_moment_seconds=2.0, history_event_moment_source=source
    )
    model = A2GenForActionGeneration(config).eval()
    features = model.a2gen.features
    moments = features.item_moments
    if source == "table":
        assert moments.num_rows == config.item_buckets * 8 and not moments.hashed
        assert moments.table in features.id_tables()  # sparse with the id tables
        # The rows start at zero (the model starts as the paper's); the checks below read learned (here random) rows.
        assert not moments.table.weight.any()
        with torch.no_grad():
            moments.table.weight.normal_()
        item_ids = torch.tensor([3])
        z = normalize_seconds(torch.tensor([[0.5, 2.5, 4.5]]), config.time_log_mean, config.time_log_std)
        assert moments.rows(item_ids, z).tolist() == [[24, 25, 26]]
    else:
        assert isinstance(moments, ItemMomentDecoder)
        assert len(features.id_tables()) == 3  # not an id table: its gradients stay dense
    # The same action at the same moment of two items: two vectors; two times in one bucket: one.
    items = torch.tensor([[3, 3, 4]])
    item_features = features.item_features(items, torch.ones(1, 3, config.num_item_side_features, dtype=torch.long))
    at = normalize_seconds(torch.tensor([[[4.1, 5.9], [4.1, 6.1], [4.1, 6.1]]]), config.time_log_mean, config.time_log_std)
    present = torch.ones(1, 3, 2, dtype=torch.bool)
    vectors = features.item_moment_features(items, item_features, at, None, present)
    assert torch.equal(vectors[0, 0, 0], vectors[0, 1, 0]) and torch.equal(vectors[0, 0, 1], vectors[0, 0, 0])
    assert not torch.equal(vectors[0, 1, 1], vectors[0, 1, 0]) and not torch.equal(vectors[0, 2, 0], vectors[0, 1, 0])
    known = torch.tensor([[[1, 0], [1, 1], [1, 1]]])
    absent = features.item_moment_features(items, item_features, at, known, present & (items != 4).unsqueeze(-1))
    assert not absent[0, 0, 1].any() and not absent[0, 2].any() and absent[0, 0, 0].any()
    # Both layouts give the same outputs and gradients (the composed fast path is off: the events are formed).
    batch = ragged_history(make_batch(config), left=False)
    results = {}
    for packed in (True, False):
        model.zero_grad()
        model.a2gen.pack_history_items = packed
        out = model(**batch)
        out.loss.backward()
        grads = {name: p.grad.clone() for name, p in moments.named_parameters() if p.grad is not None}
        results[packed] = (out, grads)
    (packed, packed_grads), (padded, padded_grads) = results[True], results[False]
    torch.testing.assert_close(packed.logits, padded.logits, atol=1e-5, rtol=1e-5)
    assert packed_grads.keys() == padded_grads.keys() and packed_grads
    for name, grad in packed_grads.items():
        torch.testing.assert_close(grad, padded_grads[name], atol=1e-5, rtol=1e-4, msg=name)
        assert grad.abs().sum() > 0, name
    # The vectors change the model's outputs.
    with torch.no_grad():
        for parameter in moments.parameters():
            parameter.zero_()
    assert not torch.allclose(model(**batch).logits, padded.logits)
    # Without the option the model is the paper's.
    assert A2GenForActionGeneration(tiny_config(generator)).a2gen.features.item_moments is None


def test_item_moment_table_hashes_large_tables_into_a_bounded_one(monkeypatch):
    monkeypatch.setattr(ItemMomentTable, "MAX_ROWS", 1000)
    config = tiny_config("iag", history_event_item_moments=64, history_event_moment_source="table")
    moments = A2GenForActionGeneration(config).a2gen.features.item_moments
    assert (moments.num_rows, moments.hashed) == (1000, True)
    items = torch.arange(1, config.item_buckets).unsqueeze(-1)
    times = normalize_seconds(torch.arange(64.0).expand(len(items), 64), config.time_log_mean, config.time_log_std)
    rows = moments.rows(items, times)
    assert int(rows.min()) >= 0 and int(rows.max()) < 1000
    assert len(rows.unique()) > 0.5 * min(1000, rows.numel())  # spread over the table, not piled on a few rows


def test_item_moments_refuse_bad_settings():
    with pytest.raises(A2GenConfigError, match="history_event_item_moments=-1 must be an integer >= 0"):
        tiny_config("iag", history_event_item_moments=-1)
    with pytest.raises(A2GenConfigError, match="history_event_moment_seconds=0 must be > 0"):
        tiny_config("iag", history_event_item_moments=4, history_event_moment_seconds=0)
    with pytest.raises(A2GenConfigError, match="history_event_moment_source='rows' is unknown"):
        tiny_config("iag", history_event_item_moments=4, history_event_moment_source="rows")
    with pytest.raises(A2GenConfigError, match="'table' needs item ids, but use_id_embeddings=False"):
        tiny_config("iag", history_event_item_moments=4, history_event_moment_source="table", use_id_embeddings=False)
    # The decoder reads the item's features, ids or not.
    tiny_config("iag", history_event_item_moments=4, use_id_embeddings=False)


def assert_outputs_change_when_zeroed(model, batch, linear):
    """Zero ``linear``'s weight and bias in place and check that the model's logits on ``batch`` change: the map is
    used."""
    before = model(**batch).logits
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
    assert not torch.allclose(model(**batch).logits, before)


@pytest.mark.parametrize("source", ["item_features", "table"])
def test_target_item_moments_add_the_weighted_moment_profile_to_the_target_only(source):
    """target_item_moments: the target's features are its item features plus a map of its (item, moment) vectors
    averaged with the learned weights per moment; history items keep theirs; the outputs change with the profile."""
    torch.manual_seed(0)
    config = tiny_config(
        "iag", history_event_item_moments=8, history_event_moment_source=source, target_item_moments=True
    )
    model = A2GenForActionGeneration(config).eval()
    features = model.a2gen.features
    assert not features.target_moment_logits.any()  # every moment weighs the same at the start
    with torch.no_grad():
        features.target_moment_logits.normal_()
        if source == "table":
            features.item_moments.table.weight.normal_()
    item_ids, side_ids = torch.tensor([3, 5]), torch.ones(2, config.num_item_side_features, dtype=torch.long)
    plain = features.item_features(item_ids, side_ids)
    if source == "table":
        rows = item_ids.unsqueeze(-1) * 8 + torch.arange(8)
        vectors = features.item_moments.table.weight[rows]
    else:
        decoder = features.item_moments
        vectors = decoder.output(torch.relu(decoder.item_map(plain).unsqueeze(1) + decoder.moment_embeddings.weight))
    weights = torch.softmax(features.target_moment_logits, dim=0)
    expected = plain + features.target_moment_map((vectors * weights[:, None]).sum(1))
    torch.testing.assert_close(features.target_item_features(item_ids, side_ids), expected)
    assert_outputs_change_when_zeroed(model, make_batch(config), features.target_moment_map)
    torch.testing.assert_close(features.target_item_features(item_ids, side_ids), plain)
    # Without the option the target reads its item features, and the model has no such weights.
    paper = A2GenForActionGeneration(tiny_config("iag", history_event_item_moments=8))
    assert paper.a2gen.features.target_moment_map is None
    assert not any("target_moment" in name for name in paper.state_dict())


@pytest.mark.parametrize("source", ["item_features", "table"])
def test_history_item_exposure_adds_the_mean_vector_of_the_moments_watched(source, tmp_path):
    """history_item_exposure: a history item's features are its item features plus a map of the mean of its
    (item, moment) vectors over the buckets 0 .. the moment of its latest event with a known time; an item without
    such an event (padding, or every time unknown) gets nothing; the target keeps its features; the outputs change
    with it; it saves and reloads; it needs the moment vectors."""
    torch.manual_seed(0)
    config = tiny_config(
        "iag", history_event_item_moments=8, history_event_moment_source=source, history_item_exposure=True
    )
    model = A2GenForActionGeneration(config).eval()
    features = model.a2gen.features
    with torch.no_grad():
        if source == "table":
            features.item_moments.table.weight.normal_()
    item_ids = torch.tensor([[3, 5, 7, 0]])
    side_ids = torch.ones(1, 4, config.num_item_side_features, dtype=torch.long)
    seconds = torch.tensor([[[0.0, 2.5, 5.2], [0.0, 30.0, 0.0], [0.0, 1.0, 9.0], [0.0, 0.0, 0.0]]])
    times = normalize_seconds(seconds, config.time_log_mean, config.time_log_std)
    event_mask = torch.tensor([[[True, True, True], [True, True, False], [True, True, True], [False] * 3]])
    time_mask = torch.tensor([[[1, 1, 1], [1, 1, 1], [0, 0, 0], [1, 1, 1]]])
    plain = features.item_features(item_ids, side_ids)
    got = features.history_item_features(item_ids, side_ids, times, time_mask, event_mask)
    # Item 3 watched moments 0..5; item 5 0..7 (30 s is capped at the last bucket); item 7 no known time; 0 padding.
    for position, last in ((0, 5), (1, 7)):
        if source == "table":
            vectors = features.item_moments.table.weight[item_ids[0, position] * 8 + torch.arange(last + 1)]
        else:
            decoder = features.item_moments
            hidden = decoder.item_map(plain[0, position]) + decoder.moment_embeddings.weight[: last + 1]
            vectors = decoder.output(torch.relu(hidden))
        expected = plain[0, position] + features.exposure_map(vectors.mean(0))
        torch.testing.assert_close(got[0, position], expected)
    torch.testing.assert_close(got[0, 2:], plain[0, 2:])
    torch.testing.assert_close(features.target_item_features(item_ids, side_ids), plain)
    batch = make_batch(config)
    assert_outputs_change_when_zeroed(model, batch, features.exposure_map)
    with torch.no_grad():
        features.exposure_map.weight.normal_()
    model.save_pretrained(tmp_path)
    reloaded = A2GenForActionGeneration.from_pretrained(tmp_path).eval()
    assert reloaded.config.history_item_exposure
    torch.testing.assert_close(reloaded(**batch).logits, model(**batch).logits)
    paper = A2GenForActionGeneration(tiny_config("iag", history_event_item_moments=8))
    assert paper.a2gen.features.exposure_map is None
    assert not any("exposure" in name for name in paper.state_dict())
    with pytest.raises(A2GenConfigError, match="history_item_exposure=True needs the \\(item, moment\\) vectors"):
        tiny_config("iag", history_item_exposure=True)


def test_moment_topics_mix_shared_topic_vectors_by_the_softmax_of_each_row(tmp_path):
    """history_event_moment_topics: an (item, moment) row holds logits over K shared topic vectors and its vector is
    their softmax mix, for the history's events and the target's moment profile; rows at zero (the start) give every
    moment the mean topic vector; the model saves and reloads; it needs the table."""
    torch.manual_seed(0)
    config = tiny_config("iag", history_event_item_moments=8, history_event_moment_source="table",
                         history_event_moment_topics=4, target_item_moments=True)
    model = A2GenForActionGeneration(config).eval()
    table = model.a2gen.features.item_moments
    assert table.table.weight.shape[1] == 4 and not table.table.weight.any()
    topics = table.topic_vectors.weight
    item_rows = torch.tensor([3, 5])
    torch.testing.assert_close(table.every_moment(item_rows), topics.mean(0).expand(2, 8, -1))
    with torch.no_grad():
        table.table.weight.normal_()
    rows = item_rows.unsqueeze(-1) * 8 + torch.arange(8)
    expected = torch.softmax(table.table.weight[rows], dim=-1) @ topics
    torch.testing.assert_close(table.every_moment(item_rows), expected)
    times = torch.zeros(2, 3)
    known = torch.tensor([[True, True, False], [True, False, False]])
    events = table(item_rows, times, known)
    torch.testing.assert_close(events[0, 0], expected[0, table.moments(times)[0, 0]])
    assert not events[0, 2].any() and not events[1, 1:].any()
    batch = make_batch(config)
    model.save_pretrained(tmp_path)
    reloaded = A2GenForActionGeneration.from_pretrained(tmp_path).eval()
    assert reloaded.config.history_event_moment_topics == 4
    torch.testing.assert_close(reloaded(**batch).logits, model(**batch).logits)
    with pytest.raises(A2GenConfigError, match="history_event_moment_topics needs the moment table"):
        tiny_config("iag", history_event_item_moments=8, history_event_moment_topics=4)
    with pytest.raises(A2GenConfigError, match="history_event_moment_topics=-1 must be an integer >= 0"):
        tiny_config("iag", history_event_moment_topics=-1)


def test_moment_smoothing_averages_the_neighbouring_rows_with_learned_weights():
    """history_event_moment_smoothing w: a moment's vector is the rows of moments m - w .. m + w (clamped to the item's
    buckets) weighted by softmax(logits) (uniform at the start), for events and for the target's moment profile;
    unknown events stay zero; it needs the table."""
    torch.manual_seed(0)
    config = tiny_config("iag", history_event_item_moments=8, history_event_moment_source="table",
                         history_event_moment_smoothing=2, target_item_moments=True)
    model = A2GenForActionGeneration(config).eval()
    table = model.a2gen.features.item_moments
    with torch.no_grad():
        table.table.weight.normal_()
        table.smoothing_logits.normal_()
    weights = torch.softmax(table.smoothing_logits, dim=0)
    rows = table.table.weight

    def smoothed(item, moment):
        return sum(weights[d + 2] * rows[item * 8 + min(max(moment + d, 0), 7)] for d in range(-2, 3))

    profile = table.every_moment(torch.tensor([3]))
    for moment in (0, 1, 4, 7):
        torch.testing.assert_close(profile[0, moment], smoothed(3, moment))
    seconds = torch.tensor([[0.5, 6.5, 3.5]])
    times = normalize_seconds(seconds, config.time_log_mean, config.time_log_std)
    events = table(torch.tensor([5]), times, torch.tensor([[True, True, False]]))
    torch.testing.assert_close(events[0, 0], smoothed(5, 0))
    torch.testing.assert_close(events[0, 1], smoothed(5, 6))
    assert not events[0, 2].any()
    assert A2GenForActionGeneration(tiny_config("iag", history_event_item_moments=8, history_event_moment_source="table")
                                    ).a2gen.features.item_moments.smoothing_logits is None
    with pytest.raises(A2GenConfigError, match="history_event_moment_smoothing needs the moment table"):
        tiny_config("iag", history_event_item_moments=8, history_event_moment_smoothing=2)
    with pytest.raises(A2GenConfigError, match="history_event_moment_smoothing=-1 must be an integer >= 0"):
        tiny_config("iag", history_event_moment_smoothing=-1)


def test_target_moments_and_interactions_save_and_reload(tmp_path):
    torch.manual_seed(0)
    config = tiny_config("iag", history_event_item_moments=8, target_item_moments=True, context_interactions=True)
    model = A2GenForActionGeneration(config).eval()
    with torch.no_grad():
        model.a2gen.features.target_moment_logits.normal_()
    model.save_pretrained(tmp_path)
    reloaded = A2GenForActionGeneration.from_pretrained(tmp_path).eval()
    assert reloaded.config.target_item_moments and reloaded.config.context_interactions
    batch = make_batch(config)
    torch.testing.assert_close(reloaded(**batch).logits, model(**batch).logits)


def test_target_item_moments_refuse_a_model_without_moment_vectors():
    with pytest.raises(A2GenConfigError, match="target_item_moments=True needs the \\(item, moment\\) vectors"):
        tiny_config("iag", target_item_moments=True)


def test_context_interactions_append_history_and_user_products_with_the_target():
    """context_interactions: the context is [user ; Vec_hist ; item ; Vec_hist * A item ; (B user) * (C item)]."""
    torch.manual_seed(0)
    config = tiny_config("iag", context_interactions=True)
    model = A2GenForActionGeneration(config).eval()
    encoder = model.a2gen
    plain = A2GenForActionGeneration(tiny_config("iag")).a2gen
    assert isinstance(encoder.interactions, TargetInteractions)
    assert encoder.context_size == plain.context_size + 2 * config.hidden_size
    out = encoder(**{name: value for name, value in make_batch(config).items() if name in INPUT_SHAPES})
    interactions = encoder.interactions
    history, item, user = out.history_representation, out.target_item_features, out.user_features
    expected = torch.cat(
        [user, history, item, history * interactions.item_for_history(item),
         interactions.user(user) * interactions.item_for_user(item)],
        dim=-1,
    )
    torch.testing.assert_close(out.generation_context, expected)
    assert plain.interactions is None


def test_event_item_cross_layers_refuse_a_negative_count():
    with pytest.raises(A2GenConfigError, match="history_event_cross_layers=-1 must be an integer >= 0"):
        tiny_config("iag", history_event_cross_layers=-1)


@pytest.mark.parametrize(
    "overrides",
    [{"history_pooling": "mean"}, {"history_pooling": "sqrt", "head_dim": 12}, {"hidden_dropout_prob": 0.3}],
)
def test_pooling_inside_cam_equals_pooling_after_it(overrides):
    """HSE sums CAM's outputs inside CAM (no dropout active) or after it (dropout in training): the same model."""
    torch.manual_seed(0)
    model = A2GenForActionGeneration(tiny_config("iag", **overrides)).eval()
    batch = ragged_history(make_batch(model.config), left=False)
    packed = model(**batch)
    model.a2gen.pack_history_items = False
    padded = model(**batch)
    torch.testing.assert_close(packed.history_representation, padded.history_representation, atol=1e-5, rtol=1e-5)
    encoder = model.a2gen.encoder
    assert encoder.pools_inside_attention(encoder.item_attention)
    model.train()
    assert encoder.pools_inside_attention(encoder.item_attention) == ("hidden_dropout_prob" not in overrides)


@pytest.mark.parametrize("one_hot_limit", [64, 2])  # one-hot columns, and the row lookup of large vocabularies
@pytest.mark.parametrize("with_time_mask", [False, True])
@pytest.mark.parametrize("time_buckets", [0, 6])
def test_event_projection_without_events_equals_projecting_the_events(
    with_time_mask, one_hot_limit, time_buckets, monkeypatch
):
    """A2GenEventEmbedding.linear_features_first composes the maps: equal to F.linear on the formed events."""
    torch.manual_seed(0)
    model = A2GenForActionGeneration(tiny_config("iag", time_buckets=time_buckets))
    embedding, attention = model.a2gen.event_embedding, model.a2gen.encoder.action_attention
    monkeypatch.setattr(embedding, "ONE_HOT_ACTIONS", one_hot_limit)
    action_ids = torch.randint(0, model.config.vocab_size, (7, 5))
    times = torch.randn(7, 5)
    time_mask = (torch.rand(7, 5) > 0.3) if with_time_mask else None
    weight, bias = attention.sequence_maps()
    expected = torch.nn.functional.linear(embedding(action_ids, times, time_mask), weight, bias)
    projected = embedding.linear_features_first(action_ids, times, time_mask, weight, bias)
    assert projected.shape == (weight.shape[0], 7, 5)
    torch.testing.assert_close(projected.permute(1, 2, 0), expected, atol=1e-5, rtol=1e-5)


def test_packed_history_drops_padding_positions_and_events(monkeypatch):
    """Level 1 sees only items with real events, grouped by where their events end (groups of any size here), each
    group in the event columns its items use (the padding's two columns never)."""
    monkeypatch.setattr(modeling_a2gen, "MIN_EVENT_GROUP_ITEMS", 1)
    torch.manual_seed(0)
    model = A2GenForActionGeneration(tiny_config("iag")).eval()
    batch = ragged_history(make_batch(model.config), left=True)
    seen = []
    encode = model.a2gen.encode_packed_item_events
    model.a2gen.encode_packed_item_events = lambda *args: seen.append(args[1].shape) or encode(*args)
    model(**batch)
    real_items = int(((batch["history_action_ids"] != 0).any(-1) & (batch["history_item_ids"] != 0)).sum())
    # ragged_history's item with one event goes alone; the others' three events fill three columns.
    assert sorted(seen) == [torch.Size([1, 1]), torch.Size([real_items - 1, 3])]


def test_eag_follows_the_paper_by_default_and_keeps_the_old_tables_by_option():
    """Issue 14 point 2: EAG embeds its steps with the encoder's event embedding, without position embeddings."""
    torch.manual_seed(0)
    model = A2GenForActionGeneration(tiny_config("eag"))
    assert model.generator.position_embeddings is None and model.generator.event_embedding is None
    assert not any(name.startswith("generator.event_embedding") for name in model.state_dict())
    batch = make_batch(model.config)
    # The decoder's steps reach the encoder's action table: an action that only the labels hold gets a gradient.
    batch["history_action_ids"] = torch.where(batch["history_action_ids"] == 4, 2, batch["history_action_ids"])
    batch["labels"][:, 1] = 4
    model(**batch).loss.backward()
    assert model.a2gen.event_embedding.action_embeddings.weight.grad[4].abs().sum() > 0
    legacy = A2GenForActionGeneration(
        tiny_config("eag", eag_position_embeddings=True, eag_shared_event_embedding=False)
    )
    names = set(legacy.state_dict())
    assert "generator.position_embeddings.weight" in names
    assert "generator.event_embedding.action_embeddings.weight" in names


def test_iag_slots_are_a_linear_map_by_default():
    """Issue 14 point 3: IAG's slots are a linear map of the context (ReLU only by option)."""
    torch.manual_seed(0)
    model = A2GenForActionGeneration(tiny_config("iag"))
    context = torch.randn(3, model.a2gen.context_size)
    expected = model.generator.slot_projection(context).view(3, model.config.max_actions, model.config.hidden_size)
    torch.testing.assert_close(model.generator.slots(context), expected)
    assert (expected < 0).any()
    legacy = A2GenForActionGeneration(tiny_config("iag", iag_slot_activation="relu"))
    torch.testing.assert_close(legacy.generator.slots(context), torch.relu(
        legacy.generator.slot_projection(context).view(3, model.config.max_actions, model.config.hidden_size)
    ))
    with pytest.raises(A2GenConfigError, match="iag_slot_activation='tanh' is unknown"):
        tiny_config("iag", iag_slot_activation="tanh")


@pytest.mark.parametrize("generator", GENERATORS)
def test_time_losses_are_averaged_over_timed_positions(generator):
    """Issue 14 point 4: the time losses are per-example MSEs over the positions with a known time ("sum" by option)."""
    torch.manual_seed(0)
    model = A2GenForActionGeneration(tiny_config(generator)).eval()
    batch = make_batch(model.config)
    batch["label_time_mask"] = torch.ones_like(batch["labels"])
    batch["label_time_mask"][0, 1] = 0  # one unknown time
    out = model(**batch)
    targets, target_times = batch["labels"][:, 1:], batch["label_times"][:, 1:]
    known = (targets > 0) & batch["label_time_mask"][:, 1:].bool()
    if generator == "eag":  # EAG counts positions up to the true end
        ended = (targets == model.config.end_action_id) | (targets == 0)
        known &= (ended.long().cumsum(1) - ended.long()) == 0
    def per_example_mse(predicted):
        errors = [((predicted[row] - target_times[row]) ** 2)[known[row]] for row in range(len(known))]
        return torch.stack([row.mean() if len(row) else torch.tensor(0.0) for row in errors]).mean()

    squared = (out.times - target_times) ** 2
    torch.testing.assert_close(out.time_loss, per_example_mse(out.times))
    if generator == "iag":
        torch.testing.assert_close(out.aux_time_loss, per_example_mse(out.aux_times))
    # A split into equal halves averages to the whole batch's time loss (DDP and gradient accumulation rely on it).
    halves = [model(**{key: value[rows] for key, value in batch.items()}).time_loss for rows in (slice(0, 2), slice(2, 4))]
    torch.testing.assert_close((halves[0] + halves[1]) / 2, out.time_loss)
    model.config.time_loss_reduction = "sum"
    summed = model(**batch)
    torch.testing.assert_close(summed.time_loss, (squared * known).sum(1).mean())
    with pytest.raises(A2GenConfigError, match="time_loss_reduction='max' is unknown"):
        tiny_config(generator, time_loss_reduction="max")


def test_paper_defaults_and_legacy_fields_when_loading_old_configs():
    """Issue 14 point 5 (32 + 32 event embeddings) and how configs written before the options read."""
    config = A2GenConfig()
    assert (config.action_embedding_size, config.time_embedding_size) == (32, 32)
    assert (config.eag_position_embeddings, config.eag_shared_event_embedding) == (False, True)
    assert (config.iag_slot_activation, config.time_loss_reduction) == ("linear", "mean")
    # A new config round-trips with its own values; a dict without the new fields reads the old behaviour.
    assert A2GenConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()
    old = {key: value for key, value in config.to_dict().items() if key not in LEGACY_DEFAULTS}
    legacy = A2GenConfig.from_dict(old)
    for key, value in LEGACY_DEFAULTS.items():
        assert getattr(legacy, key) == value


@pytest.mark.parametrize("generator", GENERATORS)
def test_legacy_checkpoints_load_with_their_outputs(generator):
    """Checkpoints written before the paper-default options load with their weights and give the same outputs."""
    from pathlib import Path

    from safetensors.torch import load_file

    folder = Path(__file__).parent / "fixtures" / "legacy_checkpoints" / generator
    model, info = A2GenForActionGeneration.from_pretrained(folder, output_loading_info=True)
    assert not any(info.values()), info
    assert model.config.time_loss_reduction == "sum" and model.config.eag_position_embeddings
    expected = load_file(folder / "expected_outputs.safetensors")
    out = model.eval()(**make_batch(model.config))
    for name, value in expected.items():
        torch.testing.assert_close(getattr(out, name), value, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("generator", GENERATORS)
def test_returned_attentions_and_hidden_states_receive_gradients(generator):
    """Issue 14 point 16: the returned CAM_act attention (and every hidden state) is a tensor the loss depends on."""
    torch.manual_seed(0)
    model = A2GenForActionGeneration(tiny_config(generator))
    out = model(**make_batch(model.config), output_attentions=True, output_hidden_states=True)
    for tensor in (*out.attentions, *out.hidden_states):
        tensor.retain_grad()
    out.loss.backward()
    for index, tensor in enumerate(out.attentions):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0, f"attentions[{index}]"
    for index, tensor in enumerate(out.hidden_states):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0, f"hidden_states[{index}]"


def test_compile_training_compiles_once_per_part_and_saves_nothing(tmp_path):
    """compile_training wraps the training parts in torch.compile (built once, lazily); eval and saving unchanged."""
    from a2gen_hf.modeling_a2gen import _training_function

    model = A2GenForActionGeneration(tiny_config("iag", compile_training=True))
    keys = set(model.state_dict())
    function = model.generator.forward
    compiled = _training_function(model, "generator", function)
    assert compiled is not function and _training_function(model, "generator", function) is compiled
    model.eval()
    assert _training_function(model, "generator", function) is function
    model.save_pretrained(tmp_path)
    reloaded = A2GenForActionGeneration.from_pretrained(tmp_path)
    assert set(reloaded.state_dict()) == keys and reloaded.config.compile_training


@pytest.mark.slow
def test_torch_compile_of_the_whole_model_trains_and_evaluates_as_eager():
    """From a probe: torch.compile(model) (and TrainingArguments(torch_compile=True)) failed with KeyError: 'user_ids':
    the forward read its inputs with locals() after the id-range check, where torch.compile breaks the graph and
    resumes in a function that no longer holds them."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = A2GenForActionGeneration(tiny_config("iag", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                                 embedding_dropout_prob=0.0))
    compiled = torch.compile(model, backend="eager")  # dynamo's graph breaks and resumes, without inductor's build
    batch = make_batch(model.config)
    loss = compiled(**batch).loss
    loss.backward()
    gradient = model.generator.heads.action.weight.grad.clone()
    model.zero_grad()
    eager = model(**batch).loss
    eager.backward()
    torch.testing.assert_close(loss, eager, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gradient, model.generator.heads.action.weight.grad, rtol=1e-4, atol=1e-6)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(**batch).logits, model(**batch).logits, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()


def test_generate_expands_the_item_level_attention_per_example():
    """With num_return_sequences, CAM_act's (B * N)-row attention is repeated per example block, not per row."""
    torch.manual_seed(0)
    model = A2GenForActionGeneration(tiny_config("iag")).eval()
    inputs = history_inputs(make_batch(model.config))
    out = model.generate(**inputs, num_beams=2, num_return_sequences=2, return_dict_in_generate=True,
                         output_attentions=True)
    reference = model(**inputs, output_attentions=True).attentions[0]  # (B * N, heads, E, E)
    items = inputs["history_item_ids"].shape[1]
    step_attention = out.attentions[0][0]
    expected = reference.unflatten(0, (4, items)).repeat_interleave(2, dim=0).flatten(0, 1)
    torch.testing.assert_close(step_attention, expected)


def test_pooling_modes_scale_the_sum_by_the_count():
    """sum keeps the sum over real positions, mean divides it by their count, sqrt by its square root; none -> 0."""
    from a2gen_hf.features_a2gen import masked_pool, scale_pooled

    values = torch.arange(12.0).view(2, 3, 2)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    total = torch.tensor([[2.0, 4.0], [0.0, 0.0]])
    torch.testing.assert_close(masked_pool(values, mask, "sum"), total)
    torch.testing.assert_close(masked_pool(values, mask, "mean"), total / 2)
    torch.testing.assert_close(masked_pool(values, mask, "sqrt"), total / 2**0.5)
    torch.testing.assert_close(scale_pooled(torch.ones(3), 9, "sqrt"), torch.full((3,), 1 / 3))
    with pytest.raises(ValueError, match="'sum', 'mean' or 'sqrt'"):
        scale_pooled(total, 2, "max")


def test_time_buckets_are_log_seconds_bins_learned_as_one_vector_each():
    """time_buckets: bucket floor(1.5 log1p(s)), capped; z is mapped back to seconds with the config's statistics."""
    from a2gen_hf.time_encoding import normalize_seconds

    config = tiny_config("iag", time_buckets=5, time_log_mean=1.0, time_log_std=2.0)
    encoding = A2GenForActionGeneration(config).a2gen.event_embedding.time_encoding
    seconds = torch.tensor([0.0, 1.0, 4.0, 1e6])  # log1p: 0, 0.69, 1.61, 13.8 -> buckets 0, 1, 2, 4 (capped)
    z = normalize_seconds(seconds, 1.0, 2.0)
    one_hot = encoding.bucket_one_hot(z.unsqueeze(-1))
    assert one_hot.argmax(-1).tolist() == [0, 1, 2, 4] and one_hot.sum(-1).tolist() == [1.0] * 4
    basis = encoding.basis(z)
    assert basis.shape == (4, 1 + 2 * config.num_time_frequencies + 5)
    torch.testing.assert_close(basis[:, -5:], one_hot)
    assert encoding.projection.in_features == basis.shape[-1]


def test_event_length_groups_cover_every_item_once_with_the_columns_it_uses():
    """Items are grouped by where their events end (1, 2, 3-4, 5-8); a group reads its longest item's columns."""
    _event_length_groups = modeling_a2gen._event_length_groups
    ends = torch.tensor([2, 1, 6, 3, 2, 5, 4, 1])
    mask = torch.arange(8).unsqueeze(0) < ends.unsqueeze(1)  # (8 items, E = 8), right-padded
    mask[3, 1] = False  # a hole: the item still ends at 3
    groups = _event_length_groups(mask, min_items=1)
    members = torch.cat([group for _, group in groups])
    assert sorted(members.tolist()) == list(range(8))
    assert {length: sorted(group.tolist()) for length, group in groups} == {1: [1, 7], 2: [0, 4], 4: [3, 6], 6: [2, 5]}
    # A range with fewer than min_items items joins the next longer one; the longest range always closes a group.
    merged = _event_length_groups(mask, min_items=3)
    assert {length: sorted(group.tolist()) for length, group in merged} == {2: [0, 1, 4, 7], 6: [2, 3, 5, 6]}
    # One range: one group of all items in order, reading up to the longest end (padding columns dropped).
    assert _event_length_groups(mask[[0, 4]], min_items=1) == [(2, None)]
    assert _event_length_groups(torch.ones(3, 6, dtype=torch.bool)[:, :5], min_items=1) == [(5, None)]
    # Short rows (E <= 2), no items, and no more items than min_items (the default: all 8 here): one group.
    assert _event_length_groups(mask[:, :2], min_items=1) == [(2, None)]
    assert _event_length_groups(torch.zeros(0, 6, dtype=torch.bool)) == [(6, None)]
    assert _event_length_groups(mask) == [(6, None)]


def test_ragged_history_runs_level1_in_several_groups(monkeypatch):
    """The packed = padded tests above go through more than one event-length group."""
    seen = []
    original = modeling_a2gen._event_length_groups
    monkeypatch.setattr(modeling_a2gen, "MIN_EVENT_GROUP_ITEMS", 1)
    monkeypatch.setattr(modeling_a2gen, "_event_length_groups", lambda mask: seen.append(original(mask)) or seen[-1])
    torch.manual_seed(0)
    model = A2GenForActionGeneration(tiny_config("iag"))
    model(**ragged_history(make_batch(model.config), left=False))
    assert len(seen) == 1 and len(seen[0]) >= 2


def test_a_bfloat16_model_reads_float32_times_and_int32_labels(model_and_batch):
    """The collator's float32 times reach a bfloat16 model in its dtype (as generate() casts them; before, the
    first linear layer failed on the mixed dtypes); int32 labels are read as int32 ids are."""
    model, batch = model_and_batch
    loss = model(**batch).loss
    assert model(**{**batch, "labels": batch["labels"].int()}).loss == loss
    half = model.to(torch.bfloat16)
    output = half(**batch)  # float32 history and label times
    assert output.logits.dtype == torch.bfloat16 and torch.isfinite(output.loss)
    assert output.loss.item() == pytest.approx(loss.item(), rel=0.05)


@pytest.mark.parametrize("chance", [1e-6, 1e-13, 1e-30, 0.0])
def test_expected_time_is_the_slots_time_however_rare_the_action(chance):
    """Every slot says the action would come at z = 2: its expected time is 2 whatever its probability (before, a
    clamp of the weights' sum pulled it to 0.39 at 1e-13 and to 0 at 0), and a probability of exactly 0 gives the
    slots' mean time."""
    from a2gen_hf.modeling_a2gen import action_predictions_from_slots

    config = tiny_config()
    slots = config.max_actions
    probabilities = torch.zeros(1, slots, config.vocab_size)
    like = 2
    probabilities[..., like] = chance
    probabilities[..., 3] = 1.0 - chance  # another action fills the slots; nothing ends
    times = torch.full((1, slots), 2.0)
    prediction = action_predictions_from_slots(config, probabilities, times)
    assert prediction.expected_times[0, like].item() == pytest.approx(2.0)
    assert prediction.action_probabilities[0, like].item() == pytest.approx(1 - (1 - chance) ** slots, rel=0.05)  # float32


def test_an_empty_batch_scores_nothing_and_refuses_a_loss(model_and_batch):
    """A batch of no examples: the outputs have 0 rows; with labels the loss (a mean over none) was NaN, now refused."""
    model, batch = model_and_batch
    empty = {name: value[:0] for name, value in batch.items()}
    inputs = {name: value for name, value in empty.items() if not name.startswith("label")}
    if model.config.generator_type == "iag":
        assert model(**inputs).logits.shape[0] == 0
    with pytest.raises(ValueError, match=r"the batch holds no examples: labels has shape \(0, "):
        model(**empty)


@pytest.mark.parametrize("implementation", ["sdpa", "flash_attention_2"])
def test_an_attention_implementation_other_than_eager_is_refused_naming_cam(tmp_path, implementation):
    """Before: transformers' message asked the user to request support upstream; CAM is the package's own module."""
    A2GenForActionGeneration(tiny_config("iag")).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=f"attn_implementation='{implementation}'.*computes its attention in its own"):
        A2GenForActionGeneration.from_pretrained(tmp_path, attn_implementation=implementation)
    assert A2GenForActionGeneration.from_pretrained(tmp_path, attn_implementation="eager").config._attn_implementation == "eager"


def test_a_refused_attention_implementation_leaves_the_caller_s_config_as_it_was():
    """Before: from_config(cfg, attn_implementation="sdpa") was refused after transformers had written the setting
    into cfg, so every later model built from cfg failed with the same error."""
    from a2gen_hf import AutoModelForActionGeneration

    config = tiny_config("iag")
    for build in (AutoModelForActionGeneration.from_config, A2GenForActionGeneration._from_config):
        with pytest.raises(ValueError, match="attn_implementation='sdpa'.*computes its attention in its own"):
            build(config, attn_implementation="sdpa")
        assert config._attn_implementation != "sdpa"
        A2GenForActionGeneration(config)


def test_gradient_checkpointing_is_refused_with_the_reason_and_what_to_do():
    model = A2GenForActionGeneration(tiny_config("iag"))
    with pytest.raises(ValueError, match=r"does not support gradient checkpointing: its layers .* lower the batch size"):
        model.gradient_checkpointing_enable()


@pytest.mark.parametrize("generator", GENERATORS)
def test_labels_must_open_with_the_start_action(generator):
    """Before: labels written the text-model way (no start) were taken, and their first action left the loss."""
    config = tiny_config(generator)
    model = A2GenForActionGeneration(config).eval()
    batch = make_batch(config)
    shifted = dict(batch, labels=torch.cat([batch["labels"][:, 1:], batch["labels"][:, :1] * 0], dim=1))
    with pytest.raises(ValueError, match=r"labels\[\d+\] opens with \d+, not the start action 'start' \(id 1\)"):
        model(**shifted)
    ignored_start = dict(batch, labels=batch["labels"].clone())
    ignored_start["labels"][:, 0] = -100  # the anchor, EAG's first input: not to be masked
    with pytest.raises(ValueError, match=r"opens with -100, not the start action"):
        model(**ignored_start)
    assert torch.isfinite(model(**batch).loss)


def test_predict_actions_refuses_output_options_it_has_no_place_for(model_and_batch):
    model, batch = model_and_batch
    inputs = {name: value for name, value in batch.items() if not name.startswith("label")}
    for option in ("output_attentions", "output_hidden_states", "use_cache"):
        with pytest.raises(ValueError, match=rf"predict_actions\(\) got \['{option}'\]"):
            model.predict_actions(**inputs, **{option: True})
    assert model.predict_actions(**inputs, output_attentions=False).action_probabilities.shape[0] == len(batch["user_ids"])
