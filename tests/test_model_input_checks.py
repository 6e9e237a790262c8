"""The model's one input check (check_model_inputs) sees inputs and labels together, refuses id dtypes the embedding
tables do not take and masks that are not 0/1, and the ranker and the baselines refuse the same inputs the same way;
dummy_inputs is a batch that forward accepts."""

import pytest
import torch
from conftest import build_tiny_model, history_inputs, make_batch, tiny_config
from test_baselines import BASELINES, HISTORY_INPUTS, baseline_config

from a2gen_hf import A2GenForActionGeneration, A2GenRanker
from a2gen_hf.modeling_a2gen import A2GenModel

GENERATORS = ["iag", "eag"]
BAD_ID_DTYPES = [torch.int8, torch.int16, torch.uint8, torch.uint16, torch.uint32]
BAD_MASK_VALUES = [0.5, 2.0, -1.0, float("nan")]
ID_MESSAGE = r"{name} must hold integer ids \(torch\.long\), got dtype {dtype}; the embedding tables take torch\.long"


def id_message(name: str, dtype: torch.dtype) -> str:
    return ID_MESSAGE.format(name=name, dtype=str(dtype).replace(".", r"\."))


def mask_message(name: str) -> str:
    return rf"{name} must be a 0/1 mask .*, got (nan|-?[0-9.]+) at {name}\[0, 0"


# ---------------------------------------------------------------------------------------------------------------
# Labels of another batch size than the inputs (before: raw torch errors inside the loss or EAG's reshape)


@pytest.mark.parametrize("rows", [2, 6])
@pytest.mark.parametrize("generator", GENERATORS)
def test_labels_of_another_batch_size_are_refused_naming_both(generator, rows):
    model = build_tiny_model(generator)
    batch = make_batch(model.config, 3)
    labels = batch["labels"].repeat(2, 1)[:rows]
    label_times = batch["label_times"].repeat(2, 1)[:rows]
    with pytest.raises(ValueError, match=rf"labels has shape \({rows}, \d+\): its B dimension is {rows}, but user_ids gives B = 3"):
        model(**{**batch, "labels": labels, "label_times": label_times})
    with pytest.raises(ValueError, match=rf"label_time_mask has shape \({rows}, \d+\): its B dimension is {rows}, but user_ids gives B = 3"):
        model(**batch, label_time_mask=torch.ones_like(labels))


def test_eag_decoder_inputs_of_another_batch_size_are_refused():
    model = build_tiny_model("eag")
    batch = history_inputs(make_batch(model.config, 3))
    action_ids = torch.full((2, 1), model.config.start_action_id)
    with pytest.raises(ValueError, match=r"action_ids has shape \(2, 1\): its B dimension is 2, but user_ids gives B = 3"):
        model(**batch, action_ids=action_ids, action_times=torch.zeros(2, 1))


@pytest.mark.parametrize("generator", GENERATORS)
def test_labels_are_compared_with_the_encoder_outputs_batch(generator):
    model = build_tiny_model(generator)
    batch = make_batch(model.config, 3)
    encoded = model.a2gen(**history_inputs(batch))
    with pytest.raises(ValueError, match=r"labels has shape \(2, \d+\): its B dimension is 2, but encoder_outputs\.generation_context gives B = 3"):
        model(encoder_outputs=encoded, labels=batch["labels"][:2], label_times=batch["label_times"][:2])
    expected = model(**batch).loss  # the same batch through encoder_outputs gives the same loss
    torch.testing.assert_close(model(encoder_outputs=encoded, labels=batch["labels"], label_times=batch["label_times"]).loss, expected)


# ---------------------------------------------------------------------------------------------------------------
# Id dtypes: only int64 / int32 (before: int8/int16/uint8 died in F.embedding, uint16/uint32 in the range check's min)


@pytest.mark.parametrize("dtype", BAD_ID_DTYPES, ids=str)
@pytest.mark.parametrize("name", ["user_ids", "item_ids", "history_item_ids", "item_side_ids", "history_action_ids"])
def test_model_refuses_id_dtypes_the_tables_do_not_take(name, dtype):
    model = build_tiny_model("iag")
    inputs = history_inputs(make_batch(model.config, 3))
    bad = {**inputs, name: inputs[name].to(dtype)}
    for call in (model, model.predict_actions, model.generate):
        with pytest.raises(TypeError, match=id_message(name, dtype)):
            call(**bad)


@pytest.mark.parametrize("dtype", [torch.int16, torch.uint8])
def test_model_refuses_labels_of_a_small_integer_dtype(dtype):
    model = build_tiny_model("iag")
    batch = make_batch(model.config, 3)
    with pytest.raises(TypeError, match=id_message("labels", dtype)):
        model(**{**batch, "labels": batch["labels"].to(dtype)})


@pytest.mark.parametrize("generator", GENERATORS)
def test_int32_ids_are_still_read_as_int64_ids(generator):
    model = build_tiny_model(generator).eval()
    batch = make_batch(model.config, 3)
    as_int32 = {name: value.int() if name.endswith("ids") or name == "labels" else value for name, value in batch.items()}
    with torch.no_grad():
        torch.testing.assert_close(model(**as_int32).logits, model(**batch).logits, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.int16, torch.uint16])
@pytest.mark.parametrize(("config_class", "model_class"), BASELINES, ids=[m.__name__ for _, m in BASELINES])
def test_baselines_refuse_the_same_id_dtypes(config_class, model_class, dtype):
    model = model_class(baseline_config(config_class)).eval()
    inputs = history_inputs(make_batch(model.config, 3))
    with pytest.raises(TypeError, match=id_message("history_item_ids", dtype)):
        model.predict_actions(**{**inputs, "history_item_ids": inputs["history_item_ids"].to(dtype)})


def one_user(config) -> dict:
    batch = history_inputs(make_batch(config, 1))
    return {name: value for name, value in batch.items() if name not in ("item_ids", "item_side_ids")}


@pytest.mark.parametrize("dtype", BAD_ID_DTYPES, ids=str)
def test_ranker_uses_the_models_id_rule(dtype):
    model = build_tiny_model("iag").eval()
    ranker = A2GenRanker(model)
    user = one_user(model.config)
    for name in ("user_ids", "history_item_ids", "history_action_ids", "history_item_side_ids", "user_side_ids"):
        with pytest.raises(TypeError, match=id_message(name, dtype)):
            ranker.encode_user(**{**user, name: user[name].to(dtype)})
    state = ranker.encode_user(**user)
    candidates = make_batch(model.config, 4)
    with pytest.raises(TypeError, match=id_message("item_ids", dtype)):
        ranker.score_candidates(state, candidates["item_ids"].to(dtype), candidates["item_side_ids"])
    with pytest.raises(TypeError, match=id_message("item_side_ids", dtype)):
        ranker.score_candidates(state, candidates["item_ids"], candidates["item_side_ids"].to(dtype))


def test_ranker_still_cuts_long_histories_before_the_models_check():
    """The model's check refuses more than max_history_items real items; the ranker keeps the most recent ones."""
    model = build_tiny_model("iag").eval()
    ranker = A2GenRanker(model)
    limit = model.config.max_history_items
    long = history_inputs(make_batch(model.config, 1, items=limit + 3))
    user = {name: value for name, value in long.items() if name not in ("item_ids", "item_side_ids")}
    recent = {name: value[:, -limit:] if name.startswith("history") else value for name, value in user.items()}
    candidates = make_batch(model.config, 4)
    scores = [ranker.score_candidates(ranker.encode_user(**u), candidates["item_ids"], candidates["item_side_ids"])
              for u in (user, recent)]  # fmt: skip
    torch.testing.assert_close(scores[0].action_probabilities, scores[1].action_probabilities, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------------
# Masks: 0/1 only (before: 0.5, 2, -1 and NaN were read as 1, silently)


@pytest.mark.parametrize("value", BAD_MASK_VALUES, ids=str)
@pytest.mark.parametrize("name", ["history_mask", "history_time_mask", "label_time_mask"])
@pytest.mark.parametrize("generator", GENERATORS)
def test_model_refuses_masks_that_are_not_0_1(generator, name, value):
    model = build_tiny_model(generator)
    batch = make_batch(model.config, 3)
    shape = {"history_mask": batch["history_item_ids"].shape, "history_time_mask": batch["history_action_ids"].shape,
             "label_time_mask": batch["labels"].shape}[name]  # fmt: skip
    mask = torch.ones(shape)
    mask.view(-1)[0] = value
    with pytest.raises(ValueError, match=mask_message(name)):
        model(**batch, **{name: mask})
    if name != "label_time_mask":
        with pytest.raises(ValueError, match=mask_message(name)):
            model.predict_actions(**history_inputs(batch), **{name: mask})


def test_integer_masks_of_other_values_are_refused_too():
    model = build_tiny_model("iag")
    inputs = history_inputs(make_batch(model.config, 3))
    mask = torch.ones(inputs["history_item_ids"].shape, dtype=torch.long)
    mask[1, 2] = 2
    with pytest.raises(ValueError, match=r"history_mask must be a 0/1 mask .*, got 2 at history_mask\[1, 2\]"):
        model.predict_actions(**inputs, history_mask=mask)


@pytest.mark.parametrize("generator", GENERATORS)
def test_0_1_masks_of_any_dtype_are_taken(generator):
    model = build_tiny_model(generator).eval()
    batch = make_batch(model.config, 3)
    mask = torch.rand(batch["history_action_ids"].shape, generator=torch.Generator().manual_seed(0)) > 0.3
    with torch.no_grad():
        expected = model(**batch, history_time_mask=mask).logits
        for dtype in (torch.long, torch.int32, torch.uint8, torch.float32, torch.bfloat16):
            torch.testing.assert_close(model(**batch, history_time_mask=mask.to(dtype)).logits, expected, rtol=0, atol=0)


@pytest.mark.parametrize("value", BAD_MASK_VALUES, ids=str)
@pytest.mark.parametrize("name", ["history_mask", "history_time_mask"])
def test_ranker_refuses_masks_that_are_not_0_1(name, value):
    model = build_tiny_model("iag").eval()
    user = one_user(model.config)
    shape = user["history_item_ids"].shape if name == "history_mask" else user["history_action_ids"].shape
    mask = torch.ones(shape)
    mask.view(-1)[0] = value
    with pytest.raises(ValueError, match=mask_message(name)):
        A2GenRanker(model).encode_user(**user, **{name: mask})


@pytest.mark.parametrize(("config_class", "model_class"), BASELINES, ids=[m.__name__ for _, m in BASELINES])
def test_baselines_refuse_masks_that_are_not_0_1(config_class, model_class):
    model = model_class(baseline_config(config_class)).eval()
    inputs = history_inputs(make_batch(model.config, 3))
    with pytest.raises(ValueError, match=mask_message("history_mask")):
        model.predict_actions(**inputs, history_mask=torch.full(inputs["history_item_ids"].shape, 0.5))


# ---------------------------------------------------------------------------------------------------------------
# dummy_inputs (before: transformers' text default, {"input_ids": ...}, which forward refuses)

VARIANTS = [
    {},
    dict(num_user_side_lists=0, num_item_side_features=0),
    dict(history_count_features=True, history_time_features=True),
    dict(target_popularity_features=True, popularity_keys="raw_ids"),
    dict(occurrence_head=True),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(v) or "default")
@pytest.mark.parametrize("generator", GENERATORS)
def test_dummy_inputs_are_a_batch_forward_accepts(generator, variant):
    config = tiny_config(generator, **variant)
    for model_class in (A2GenForActionGeneration, A2GenModel):
        model = model_class(config).eval()
        inputs = model.dummy_inputs
        assert "input_ids" not in inputs and inputs["user_ids"].shape == (1,)
        with torch.no_grad():
            output = model(**inputs)
        first = output.logits if model_class is A2GenForActionGeneration else output.generation_context
        assert first.shape[0] == 1 and torch.isfinite(first).all()


@pytest.mark.parametrize("history_input", HISTORY_INPUTS)
@pytest.mark.parametrize(("config_class", "model_class"), BASELINES, ids=[m.__name__ for _, m in BASELINES])
def test_baseline_dummy_inputs_are_a_batch_forward_accepts(config_class, model_class, history_input):
    model = model_class(baseline_config(config_class, history_input=history_input)).eval()
    with torch.no_grad():
        output = model(**model.dummy_inputs)
    assert output.logits.shape == (1, model.config.vocab_size) and torch.isfinite(output.logits).all()


@pytest.mark.parametrize("sentinel", [-1e6, -999.0])
def test_a_sentinel_far_below_the_time_of_0_s_is_refused_by_the_model_and_the_ranker(sentinel):
    """No time of 0 s or more normalises there; a sentinel for "unknown" drove the attention queries to ~1e5,
    silently. Values just below 0 s (rounding, or the test batches' randn times) still pass."""
    model = build_tiny_model("iag").eval()
    inputs = history_inputs(make_batch(model.config, 2))
    times = inputs["history_action_times"].clone()
    times[1, 2, 1] = sentinel
    with pytest.raises(ValueError, match=r"history_action_times\[1, 2, 1\] = .* lies far below .*the normalised time "
                                         r"of 0 seconds.*time mask \(0\) instead of a sentinel"):  # fmt: skip
        model.predict_actions(**{**inputs, "history_action_times": times})
    ranker = A2GenRanker(model)
    user = {name: inputs[name][1:] for name in ("user_ids", "history_item_ids", "history_action_ids",
                                                "history_item_side_ids", "user_side_ids")}  # fmt: skip
    with pytest.raises(ValueError, match="lies far below"):
        ranker.encode_user(**user, history_action_times=times[1:])
    masked = torch.ones_like(times, dtype=torch.long)
    masked[1, 2, 1] = 0  # an unknown time, marked as such: read as unknown whatever its value
    assert torch.isfinite(model.predict_actions(**{**inputs, "history_action_times": times,
                                                   "history_time_mask": masked}).action_probabilities).all()  # fmt: skip
    near = inputs["history_action_times"].clone()
    near[1, 2, 1] = -5.0
    assert torch.isfinite(model.predict_actions(**{**inputs, "history_action_times": near}).action_probabilities).all()
