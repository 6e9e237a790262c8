"""The count / propensity / popularity features and the wide path in a bfloat16 model, the float32 counting buffers
behind them, and the time masks read as booleans on every path (probe 17, F6 and F7)."""

import pytest
import torch
from conftest import history_inputs, make_batch, tiny_config

from a2gen_hf import A2GenForActionGeneration, MMoEConfig, MMoEForActionPrediction, PLEConfig, PLEForActionPrediction
from a2gen_hf.features_a2gen import RunningStandardizer, TargetPopularityFeatures

OPTIONS = {
    "counts": dict(history_count_features=True),
    "propensities": dict(history_propensity_features=True),
    "popularity": dict(target_popularity_features=True),
    "wide": dict(history_count_features=True, target_popularity_features=True, wide_path=True),
    "occurrence": dict(history_count_features=True, wide_path=True, occurrence_head=True),
}
EXACT_BUFFERS = ("mean", "variance", "count", "item_counts", "item_totals", "category_counts", "category_totals")


def baseline(model_class, config_class, **options):
    shared = tiny_config().to_diff_dict()
    for key in ("model_type", "transformers_version", "generator_type"):
        shared.pop(key, None)
    torch.manual_seed(0)
    return model_class(config_class(**{**shared, **options})).eval()


def a2gen(generator="iag", **options):
    torch.manual_seed(0)
    return A2GenForActionGeneration(tiny_config(generator, **options)).eval()


def fit_popularity(model, examples=3000):
    """Count `examples` training examples (more than bfloat16 holds exactly) into the model's popularity features."""
    popularity = next(module for module in model.modules() if isinstance(module, TargetPopularityFeatures))
    generator = torch.Generator().manual_seed(1)
    items = torch.randint(1, 4, (examples,), generator=generator)
    categories = torch.randint(1, 3, (examples,), generator=generator)
    occurs = torch.rand(examples, model.config.vocab_size, generator=generator) < 0.3
    popularity.fit(items, categories, occurs)
    return popularity


def exact_buffers(model):
    return {
        name: buffer for name, buffer in model.named_buffers()
        if name.rsplit(".", 1)[-1] in EXACT_BUFFERS and "features" in name
    }  # fmt: skip


CASES = [(kind, name) for kind in ("iag", "eag", "mmoe", "ple") for name in OPTIONS
         if kind in ("iag", "eag") or name != "occurrence"]  # fmt: skip


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("kind, options", CASES, ids=[f"{kind}-{name}" for kind, name in CASES])
def test_a_bfloat16_model_runs_with_the_extra_features(kind, options, training):
    """Before: `mat1 and mat2 must have the same dtype, but got Float and BFloat16` (the features came out float32)."""
    options = OPTIONS[options]
    if kind in ("mmoe", "ple"):
        classes = (MMoEForActionPrediction, MMoEConfig) if kind == "mmoe" else (PLEForActionPrediction, PLEConfig)
        model = baseline(*classes, **options)
    else:
        model = a2gen(kind, **options)
    batch = make_batch(model.config)
    reference = model(**batch)
    half = model.to(torch.bfloat16).train(training)
    output = half(**batch)
    assert torch.isfinite(output.loss) and output.logits.dtype == torch.bfloat16
    if not training:
        torch.testing.assert_close(output.logits.float(), reference.logits, atol=0.5, rtol=0.1)  # bfloat16 rounding
        prediction = half.predict_actions(**history_inputs(batch))
        assert torch.isfinite(prediction.action_probabilities).all()
        if kind in ("iag", "eag"):
            sequences = half.generate(**history_inputs(batch), max_new_tokens=3)
            assert sequences.shape[0] == batch["user_ids"].shape[0]


def test_counting_buffers_stay_float32_and_exact_in_a_bfloat16_model():
    """bfloat16 holds integers exactly only up to 256: cast, the counts were rounded, and the running count of
    examples stopped growing. They now stay float32 (with their values) through .to(bfloat16) and .half()."""
    model = a2gen(**OPTIONS["wide"])
    fit_popularity(model)
    standardizer = model.a2gen.extra_features.count_features.standardizer
    standardizer.count.fill_(1001.0)
    before = {name: buffer.clone() for name, buffer in exact_buffers(model).items()}
    assert len(before) == 10 and any(buffer.max() > 256 for buffer in before.values())
    model.to(torch.bfloat16)
    after = exact_buffers(model)
    assert {name: buffer.dtype for name, buffer in after.items()} == dict.fromkeys(before, torch.float32)
    for name, buffer in after.items():
        assert torch.equal(buffer, before[name]), name
    assert model.a2gen.extra_features.output_dtype_reference.dtype == torch.bfloat16
    assert model.a2gen.features.item_embeddings.weight.dtype == torch.bfloat16
    model.train()(**make_batch(model.config))  # a batch of 4 more examples: 1005 (bfloat16 would say 1008 or 1000)
    assert standardizer.count.item() == 1005.0 and standardizer.count.dtype == torch.float32
    model.half()
    assert all(buffer.dtype == torch.float32 for buffer in exact_buffers(model).values())
    assert standardizer.count.item() == 1005.0
    model.double()  # float64 applies as to any buffer
    assert all(buffer.dtype == torch.float64 for buffer in exact_buffers(model).values())


def test_bfloat16_popularity_features_are_those_of_float32():
    """The popularity features are computed from the float32 counts (leave-one-out included) and only then cast:
    they are the float32 model's features rounded once to bfloat16."""
    model = a2gen(target_popularity_features=True).train()
    fit_popularity(model)
    batch = make_batch(model.config)
    extra = model.a2gen.extra_features
    popularity = extra.popularity_features
    popularity.standardizer.frozen = True
    outcomes = torch.zeros(4, model.config.vocab_size)
    outcomes[:, 2] = 1.0
    inputs = (batch["history_action_ids"], batch["history_item_ids"] != 0, batch["history_item_ids"], batch["item_ids"],
              batch["history_item_side_ids"], batch["item_side_ids"], outcomes)  # fmt: skip
    expected = extra(*inputs)
    model.to(torch.bfloat16)
    features = extra(*inputs)
    assert features.dtype == torch.bfloat16
    assert torch.equal(features, expected.to(torch.bfloat16))


def test_running_statistics_count_exactly_in_a_bfloat16_model():
    standardizer = RunningStandardizer(3).to(torch.bfloat16).train()
    features = torch.randn(4, 3)
    for _ in range(100):
        standardizer(features)
    assert standardizer.count.dtype == torch.float32 and standardizer.count.item() == 400.0
    torch.testing.assert_close(standardizer.mean, features.mean(0))


@pytest.mark.parametrize("generator", ["iag", "eag"])
def test_saved_counts_load_exactly_in_float32_and_bfloat16(tmp_path, generator):
    """A float32 save loads exactly; loaded with dtype=torch.bfloat16 it is the float32 model cast to bfloat16,
    counts float32 and unrounded."""
    model = a2gen(generator, **OPTIONS["wide"])
    fit_popularity(model)
    model.a2gen.extra_features.count_features.standardizer.count.fill_(123_457.0)
    batch = make_batch(model.config)
    model.save_pretrained(tmp_path)
    loaded = A2GenForActionGeneration.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded(**batch).logits, model(**batch).logits)
    half = A2GenForActionGeneration.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    assert half.dtype == torch.bfloat16
    cast = model.to(torch.bfloat16)
    loaded_state, cast_state = half.state_dict(), cast.state_dict()
    assert loaded_state.keys() == cast_state.keys()
    for name, value in cast_state.items():
        assert value.dtype == loaded_state[name].dtype and torch.equal(value, loaded_state[name]), name
    assert loaded_state["a2gen.extra_features.count_features.standardizer.count"].item() == 123_457.0
    assert torch.equal(half(**batch).logits, cast(**batch).logits)


def test_a_bfloat16_save_loads_exactly_with_strict_loading(tmp_path):
    """The counting buffers stay float32 in a bfloat16 file: strict loading (which wants every other floating tensor
    in config.json's dtype) accepts them as the buffers a module keeps exact, and strict=False loads the same."""
    model = a2gen(**OPTIONS["wide"])
    fit_popularity(model)
    model.to(torch.bfloat16)
    batch = make_batch(model.config)
    model.save_pretrained(tmp_path)
    for strict in (True, False):
        loaded = A2GenForActionGeneration.from_pretrained(tmp_path, strict=strict).eval()
        assert loaded.dtype == torch.bfloat16
        assert all(buffer.dtype == torch.float32 for buffer in exact_buffers(loaded).values())
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)


# ----------------------------------------------------------------------------------------------------------------
# Time masks: nonzero = known, on every path


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool, torch.int32])
@pytest.mark.parametrize("generator", ["iag", "eag"])
def test_a_time_mask_is_read_as_a_boolean_on_every_path(generator, dtype):
    """Before: the packed path read history_time_mask as a boolean and the padded one (output_hidden_states,
    output_attentions) multiplied by it, so a mask of 2s changed the logits by 0.58 with hidden states asked for;
    EAG's decoder multiplied its input by label_time_mask too. A 0/1 mask of any dtype is read the same way on every
    path, and a mask holding other values (2, 0.5) is refused, naming it (before: read as 1)."""
    model = a2gen(generator)
    batch = make_batch(model.config)
    ones = torch.ones_like(batch["history_action_ids"])
    ones[:, :, 1] = 0
    label_ones = torch.ones_like(batch["labels"])
    label_ones[:, 2] = 0
    typed = dict(history_time_mask=ones.to(dtype), label_time_mask=label_ones.to(dtype))
    reference = dict(history_time_mask=ones, label_time_mask=label_ones)
    with torch.no_grad():
        expected = model(**batch, **reference)
        for flags in ({}, {"output_hidden_states": True}, {"output_attentions": True}):
            output = model(**batch, **typed, **flags)
            torch.testing.assert_close(output.logits, expected.logits, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(output.times, expected.times, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(output.loss, expected.loss, atol=1e-5, rtol=1e-5)
        for value in (2, 0.5):
            for name, mask in reference.items():
                scaled = (mask * value).to(torch.float32 if isinstance(value, float) else torch.long)
                with pytest.raises(ValueError, match=rf"{name} must be a 0/1 mask"):
                    model(**batch, **{**reference, name: scaled})
