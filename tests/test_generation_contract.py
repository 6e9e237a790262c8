"""transformers' contracts, checked the way its own common tests check them: generate() (GenerationTesterMixin),
the model and config (ModelTesterMixin), plus the EAG ranking decode and low-precision models."""

import inspect
import json

import pytest
import torch
from conftest import build_tiny_model, history_inputs, make_batch
from test_hub import run_client
from transformers import AutoModel, DynamicCache
from transformers.generation import BaseStreamer, LogitsProcessor, LogitsProcessorList

from a2gen_hf import A2GenForActionGeneration, A2GenModel

GENERATORS = ["iag", "eag"]


def tiny_model(generator, **overrides):
    model = build_tiny_model(generator, **overrides)
    return model, history_inputs(make_batch(model.config))


def favour(model, **biases):
    """Add ``biases`` ({action id: logit}) to the generator's final action head (large against its logits, which are
    of order 10 with unit-scale embeddings)."""
    with torch.no_grad():
        for action_id, bias in biases.items():
            model.generator.heads.action.bias[int(action_id)] += bias


def generated_steps(sequences):
    return sequences.shape[1] - 1


# --- bugs -----------------------------------------------------------------------------------------------------------


def test_eag_ranking_feeds_back_only_actions_that_continue_the_sequence():
    """Slot k is read from the state after k continuing actions; cached decoding equals one uncached forward."""
    model, inputs = tiny_model("eag")
    config = model.config
    favour(model, **{"0": 60.0, str(config.end_action_id): 50.0})  # padding and the end action win every argmax
    context = model.a2gen(**inputs).generation_context
    probabilities, times = model.slot_distributions(context)
    continuing = torch.ones(config.vocab_size, dtype=torch.bool)
    continuing[[0, config.start_action_id, config.end_action_id]] = False
    fed = probabilities.masked_fill(~continuing, -1.0).argmax(-1)[:, :-1]
    assert continuing[fed].all()
    start = torch.full((fed.shape[0], 1), config.start_action_id)
    start_time = torch.full((fed.shape[0], 1), config.start_time)
    uncached = model(
        **inputs, action_ids=torch.cat([start, fed], 1), action_times=torch.cat([start_time, times[:, :-1]], 1)
    )
    torch.testing.assert_close(torch.softmax(uncached.logits, -1), probabilities, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(uncached.times, times, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_predict_actions_and_generate_in_other_dtypes(generator, dtype):
    """The tiny config has user side lists; the inputs stay float32, as the collator makes them."""
    model, inputs = tiny_model(generator)
    reference = model.predict_actions(**inputs).action_probabilities
    model = model.to(dtype)
    prediction = model.predict_actions(**inputs)
    tolerance = 1e-6 if dtype == torch.float64 else 0.05
    torch.testing.assert_close(prediction.action_probabilities.float(), reference, atol=tolerance, rtol=0)
    for options in ({}, {"do_sample": True}, {"num_beams": 2}):
        out = model.generate(**inputs, return_dict_in_generate=True, **options)
        assert out.times.dtype == torch.float32 and torch.isfinite(out.times).all()


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("options", [{}, {"do_sample": True}, {"num_beams": 3}, {"do_sample": True, "num_beams": 2}])
def test_start_is_never_generated_after_position_zero(generator, options):
    model, inputs = tiny_model(generator)
    favour(model, **{str(model.config.start_action_id): 80.0})
    torch.manual_seed(0)
    sequences = model.generate(**inputs, **options)
    assert (sequences[:, 0] == model.config.start_action_id).all()
    assert not (sequences[:, 1:] == model.config.start_action_id).any()


# --- generate() against GenerationMixin -------------------------------------------------------------------------------


@pytest.mark.parametrize("generator", GENERATORS)
def test_bad_words_and_min_new_tokens_act_as_on_a_text_model(generator):
    model, inputs = tiny_model(generator)
    end = model.config.end_action_id
    favour(model, **{"2": 30.0})
    banned = model.generate(**inputs, bad_words_ids=[[2]], do_sample=True, num_beams=2)
    assert not (banned[:, 1:] == 2).any()
    favour(model, **{str(end): 100.0})  # the end action first, without min_new_tokens
    assert (model.generate(**inputs)[:, 1] == end).all()
    for options in ({}, {"num_beams": 2}, {"do_sample": True}):
        sequences = model.generate(**inputs, min_new_tokens=3, **options)
        assert not (sequences[:, 1:4] == end).any() and (sequences[:, 1:4] != 0).all()
        sequences = model.generate(**inputs, min_length=3, **options)  # counts start, as min_length counts a prompt
        assert not (sequences[:, 1:3] == end).any()


@pytest.mark.parametrize("generator", GENERATORS)
def test_min_new_tokens_takes_precedence_over_min_length_with_transformers_warning(generator, caplog):
    """As transformers' _prepare_generated_length: min_new_tokens wins (before, both acted and min_length=5 forced
    four actions), and both limits set in one call are warned of; so is max_length beside a saved max_new_tokens."""
    model, inputs = tiny_model(generator)
    end = model.config.end_action_id
    favour(model, **{str(end): 100.0})
    with caplog.at_level("WARNING", logger="a2gen_hf.generation_a2gen"):
        sequences = model.generate(**inputs, min_new_tokens=1, min_length=5)
    assert (sequences[:, 2] == end).all() and sequences.shape[1] == 3  # one action, then the end
    assert "`min_new_tokens` will take precedence" in caplog.text
    caplog.clear()
    assert model.generate(**inputs, min_new_tokens=1, min_length=7).shape[1] == 3  # not refused as impossible
    model.generation_config.max_new_tokens = 2
    with caplog.at_level("WARNING", logger="a2gen_hf.generation_a2gen"):
        assert model.generate(**inputs, max_length=6, min_new_tokens=2).shape[1] == 3
    assert "`max_new_tokens` will take precedence" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="a2gen_hf.generation_a2gen"):
        model.generate(**inputs, min_new_tokens=1)  # one limit of each kind: nothing to warn of
    assert "take precedence" not in caplog.text


@pytest.mark.parametrize("generator", GENERATORS)
def test_beam_search_refuses_to_return_placeholders_for_timelines_that_do_not_exist(generator):
    """From a probe: asked for more sequences than an example has timelines to finish, beam search returned
    transformers' placeholders, scored -1e9: [start] alone (five actions, max_actions=1, six asked) or copies (two
    actions; or no_repeat_ngram_size=1 over [like, leave]). Refused, naming how many exist; as many as exist pass."""
    for overrides, options, exist in (
        ({"max_actions": 1}, {"num_beams": 6, "num_return_sequences": 6}, 5),
        ({"action_names": ["start", "leave"]}, {"num_beams": 3, "num_return_sequences": 2}, 1),
        ({"action_names": ["start", "like", "leave"], "max_actions": 3},
         {"num_beams": 3, "num_return_sequences": 3, "no_repeat_ngram_size": 1}, 2),
    ):
        model, inputs = tiny_model(generator, **overrides)
        with pytest.raises(ValueError, match=rf"Beam search finds {exist} distinct timeline\(s\) for example 0"):
            model.generate(**inputs, **options)
        options = {**options, "num_return_sequences": exist, "num_beams": max(exist, 2)}
        out = model.generate(**inputs, **options, return_dict_in_generate=True, output_scores=True)
        assert (out.sequences_scores > -1e8).all()  # every one a real timeline


def test_generate_takes_a_tokenizer_as_transformers_generate_does():
    from a2gen_hf import A2GenActionTokenizer

    model, inputs = tiny_model("iag")
    tokenizer = A2GenActionTokenizer.from_config(model.config)
    torch.testing.assert_close(model.generate(**inputs, tokenizer=tokenizer), model.generate(**inputs))


@pytest.mark.parametrize("generator", GENERATORS)
def test_generation_config_eos_token_id_is_honoured(generator):
    model, inputs = tiny_model(generator)
    favour(model, **{"3": 40.0})
    for options in ({}, {"num_beams": 2}):
        sequences = model.generate(**inputs, eos_token_id=3, **options)
        for row in sequences.tolist():
            stop = next(i for i, token in enumerate(row) if token in (3, model.config.end_action_id))
            assert all(token == 0 for token in row[stop + 1 :])
    model.generation_config.eos_token_id = [3]  # saved in the model's generation config, as for a text model
    assert (model.generate(**inputs)[:, 2:] == 0).all()


@pytest.mark.parametrize(
    "options, name",
    [
        ({"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0}, "num_beam_groups"),
        ({"num_beams": 4, "diversity_penalty": 1.0}, "diversity_penalty"),
        ({"num_beams": 2, "force_words_ids": [[2]]}, "force_words_ids"),
        ({"penalty_alpha": 0.6, "top_k": 4}, "penalty_alpha"),
        ({"stop_strings": ["leave"]}, "stop_strings"),
        ({"guidance_scale": 2.0}, "guidance_scale"),
        ({"cache_implementation": "static"}, "cache_implementation"),
        ({"forced_bos_token_id": 2}, "forced_bos_token_id"),
        ({"num_beams": 0}, "num_beams"),
        ({"num_beams": -1}, "num_beams"),
        ({"bos_token_id": 2}, "bos_token_id"),
        ({"eos_token_id": 99}, "eos_token_id"),
        ({"min_new_tokens": 9}, "min_new_tokens"),
        ({"assistant_model": "x"}, "assistant_model"),
        # An assistant's stopping criterion read row 0's score for every row (or crashed without output_scores).
        ({"is_assistant": True, "return_dict_in_generate": True, "output_scores": True}, "is_assistant"),
        ({"is_assistant": True}, "is_assistant"),
        # A float budget passed greedy search and failed inside torch with beams; refused for every strategy.
        ({"max_new_tokens": 2.0}, "max_new_tokens=2.0 must be a whole number"),
        ({"max_new_tokens": 2.0, "num_beams": 2}, "max_new_tokens=2.0 must be a whole number"),
        ({"min_new_tokens": 1.5}, "min_new_tokens=1.5 must be a whole number"),
        # From a probe (session 28): a text watermark was not refused; seeding_scheme="selfhash" failed with an
        # IndexError inside transformers, "lefthash" biased the action ids.
        ({"watermarking_config": {"seeding_scheme": "selfhash"}}, "does not support watermarking_config=.*leave "
                                                                  "watermarking_config unset"),
        ({"watermarking_config": {"seeding_scheme": "lefthash"}}, "does not support watermarking_config"),
        # Ids outside the vocabulary suppressed nothing, without a word; a bool eos id was read as id 1 (start).
        ({"suppress_tokens": [99]}, r"suppress_tokens=\[99\] holds \[99\], which are not action ids: give ids .* in "
                                    r"\[0, 7\)"),
        ({"begin_suppress_tokens": [2, -1]}, r"begin_suppress_tokens=\[2, -1\] holds \[-1\], which are not action ids"),
        ({"suppress_tokens": [True]}, r"suppress_tokens=\[True\] holds \[True\]"),
        ({"eos_token_id": True}, r"eos_token_id=True: every end id must be an action id \(an integer, not a bool\)"),
        ({"eos_token_id": [2, True]}, r"eos_token_id=\[2, True\]: every end id must be an action id"),
        ({"eos_token_id": 1}, r"eos_token_id=1: every end id must be an action id .* other than the start action"),
    ],
)
def test_unsupported_options_are_refused_not_ignored(options, name):
    model, inputs = tiny_model("eag")
    with pytest.raises(ValueError, match=name):
        model.generate(**inputs, **options)


@pytest.mark.parametrize("options", [
    {"num_beam_groups": 1}, {"diversity_penalty": 0.0}, {"cache_implementation": "dynamic"}, {"guidance_scale": 1.0},
])  # fmt: skip
def test_options_at_their_off_value_are_accepted(options):
    """guidance_scale=1.0 is transformers' "no guidance" (before: refused as if it asked for guidance)."""
    model, inputs = tiny_model("eag")
    assert torch.equal(model.generate(**inputs, **options), model.generate(**inputs))


@pytest.mark.parametrize("generator", GENERATORS)
def test_beam_sampling_samples(generator):
    model, inputs = tiny_model(generator)
    outputs = set()
    for seed in range(8):
        torch.manual_seed(seed)
        # a high temperature: a random model's distributions can be sharp (logits of order 10)
        outputs.add(tuple(model.generate(**inputs, do_sample=True, num_beams=2, temperature=20.0).flatten().tolist()))
    assert len(outputs) > 1
    torch.manual_seed(0)
    first = model.generate(**inputs, num_beams=2, return_dict_in_generate=True, output_scores=True)
    torch.manual_seed(1)
    second = model.generate(**inputs, num_beams=2, return_dict_in_generate=True, output_scores=True)
    assert torch.equal(first.sequences, second.sequences)  # beam search without sampling stays deterministic


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("options", [{"num_return_sequences": 2, "do_sample": True}, {"num_beams": 2}])
@pytest.mark.parametrize("use_cache", [True, False])
def test_output_attentions_and_hidden_states(generator, options, use_cache):
    """As GenerationTesterMixin._check_attentions_for_generate: one tuple per generated token, rows = sequences."""
    model, inputs = tiny_model(generator)
    config = model.config
    out = model.generate(**inputs, return_dict_in_generate=True, output_attentions=True, output_hidden_states=True,
                         output_scores=True, use_cache=use_cache, **options)
    rows = 4 * 2
    steps = len(out.scores)
    assert len(out.attentions) == len(out.hidden_states) == steps >= 1
    encoder = model.a2gen(**inputs, output_attentions=True, output_hidden_states=True)
    cached = use_cache and generator == "eag"
    for step, (attentions, hidden_states) in enumerate(zip(out.attentions, out.hidden_states)):
        assert len(attentions) == len(encoder.attentions) + 1 and len(hidden_states) == len(encoder.hidden_states) + 1
        # CAM_act's attention has B * N rows (one per history item): each example's block is repeated.
        item_rows = encoder.attentions[0].unflatten(0, (4, -1))
        torch.testing.assert_close(attentions[0], item_rows.repeat_interleave(2, dim=0).flatten(0, 1))
        keys = {"iag": config.max_actions, "eag": step + 1}[generator]
        queries = 1 if generator == "iag" or cached else step + 1
        assert attentions[-1].shape == (rows, config.num_attention_heads, queries, keys)
        assert hidden_states[-1].shape == (rows, queries, config.hidden_size)


def test_outputs_and_generate_from_context_agree_with_generate():
    model, inputs = tiny_model("eag")
    with torch.no_grad():  # as generate() encodes (CAM picks its kernel by whether gradients are needed)
        context = model.a2gen(**inputs).generation_context
    for options in ({}, {"num_beams": 3, "num_return_sequences": 2, "output_scores": True}):
        expected = model.generate(**inputs, return_dict_in_generate=True, **options)
        actual = model.generate_from_context(context, return_dict_in_generate=True, **options)
        assert torch.equal(expected.sequences, actual.sequences) and torch.equal(expected.times, actual.times)
    beam = model.generate(**inputs, num_beams=2, return_dict_in_generate=True)
    assert beam.sequences_scores is None and beam.beam_indices.shape[0] == 4  # as transformers' beam output


@pytest.mark.parametrize("generator", GENERATORS)
def test_contexts_of_the_wrong_size_or_kind_are_refused_and_float64_is_cast(generator):
    """Before: torch's `mat1 and mat2 shapes cannot be multiplied (4x53 and 56x80)` / `must have the same dtype`."""
    model, inputs = tiny_model(generator)
    with torch.no_grad():
        context = model.a2gen(**inputs).generation_context
    size = context.shape[1]
    for method in (model.generate_from_context, model.slot_distributions):
        for wrong in (context[:, :-3], context.long(), context[0], context.tolist()):
            with pytest.raises(ValueError, match=rf"context must be a float tensor \(batch, {size}\)"):
                method(wrong)
    assert torch.equal(model.generate_from_context(context.double()), model.generate_from_context(context))
    torch.testing.assert_close(model.slot_distributions(context.double()), model.slot_distributions(context))
    broken = context.clone()
    broken[1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"context row 1 holds NaN or inf; .*float16 overflow"):  # before: blamed
        model.generate_from_context(broken)  # on the logits processors


def test_nan_scores_are_told_apart_from_blocked_actions():
    """Scores that are NaN (from the model or a processor) are not said to be blocked by suppress_tokens & co."""
    from transformers import LogitsProcessor, LogitsProcessorList

    class NaNScores(LogitsProcessor):
        def __call__(self, input_ids, scores):
            return torch.full_like(scores, float("nan"))

    model = build_tiny_model("iag")
    inputs = history_inputs(make_batch(model.config))
    with pytest.raises(ValueError, match=r"position 1 of row 0: its scores are NaN, from the model's logits .*or from a "
                                         r"logits processor of your own"):
        model.generate(**inputs, logits_processor=LogitsProcessorList([NaNScores()]))


def test_streamer_and_custom_logits_processor():
    model, inputs = tiny_model("eag")

    class Collect(BaseStreamer):
        def __init__(self):
            self.values, self.ended = [], False

        def put(self, value):
            self.values.append(value.reshape(value.shape[0], -1))

        def end(self):
            self.ended = True

    class Ban(LogitsProcessor):
        def __call__(self, input_ids, scores):
            scores[:, 3] = -float("inf")
            return scores

    streamer = Collect()
    sequences = model.generate(**inputs, streamer=streamer, logits_processor=LogitsProcessorList([Ban()]))
    assert streamer.ended and torch.equal(torch.cat(streamer.values, dim=1), sequences)
    assert not (sequences == 3).any()
    with pytest.raises(ValueError, match="streamer"):
        model.generate(**inputs, num_beams=2, streamer=Collect())


# --- the model and config contract ------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", [A2GenModel, A2GenForActionGeneration])
def test_model_main_input_name(model_class):
    """ModelTesterMixin.test_model_main_input_name: the main input is the first argument after self."""
    observed = list(inspect.signature(model_class.forward).parameters)[1]
    assert model_class.main_input_name == observed


def test_eag_cache_contract():
    model, inputs = tiny_model("eag")
    config = model.config
    assert config.use_cache is True and config.num_hidden_layers == 1
    actions = torch.tensor([[config.start_action_id, 2, 3]] * 4)
    times = torch.tensor([[config.start_time, 0.5, 0.9]] * 4)
    full = model(**inputs, action_ids=actions, action_times=times)
    assert full.cache is None  # forward builds a cache only when asked
    for cache in (None, DynamicCache(config=config)):
        first = model(**inputs, action_ids=actions[:, :2], action_times=times[:, :2], use_cache=True, cache=cache)
        assert len(first.cache.layers) == config.num_hidden_layers
        second = model(**inputs, action_ids=actions[:, 2:], action_times=times[:, 2:], past_key_values=first.cache)
        torch.testing.assert_close(second.logits[:, -1], full.logits[:, -1], atol=1e-6, rtol=1e-5)
        assert second.past_key_values is second.cache
    with pytest.raises(ValueError, match="not both"):
        model(**inputs, action_ids=actions, action_times=times, cache=DynamicCache(), past_key_values=DynamicCache())


def test_resize_token_embeddings_says_why_the_vocabulary_is_fixed():
    model, _ = tiny_model("iag")
    with pytest.raises(NotImplementedError, match="action_names"):
        model.resize_token_embeddings(model.config.vocab_size + 2)


def test_from_pretrained_names_a_truncated_weight_file(tmp_path):
    model, _ = tiny_model("iag")
    model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(OSError, match=r"model\.safetensors.*truncated"):
        A2GenForActionGeneration.from_pretrained(tmp_path)


ENCODER_SCRIPT = """
from transformers import AutoModel
encoder = AutoModel.from_pretrained(sys.argv[2], trust_remote_code=True)
print("CLASS", type(encoder).__name__, type(encoder).__module__.split(".")[0])
"""


def test_a_saved_generator_folder_loads_its_encoder_with_remote_code_only(tmp_path):
    model, inputs = tiny_model("iag")
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"] == "modeling_a2gen.A2GenModel"
    assert isinstance(AutoModel.from_pretrained(folder), A2GenModel)
    result = run_client(ENCODER_SCRIPT, tmp_path, str(folder), env={"HF_HOME": str(tmp_path / "home")}, isolate=True)
    assert "ISOLATED" in result.stdout and "CLASS A2GenModel transformers_modules" in result.stdout


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("strategy", [{}, {"do_sample": True}, {"num_beams": 2}])
def test_every_documented_logits_processor_and_criterion_runs(generator, strategy):
    """What generate()'s docstring promises works on every strategy (it crashed before the special tokens existed)."""
    model, inputs = tiny_model(generator)
    end = model.config.end_action_id
    options = [
        {"temperature": 0.7, "top_k": 3, "top_p": 0.9, "min_p": 0.05, "typical_p": 0.95},
        {"epsilon_cutoff": 1e-4, "eta_cutoff": 1e-4, "renormalize_logits": True, "remove_invalid_values": True},
        {"repetition_penalty": 1.3, "no_repeat_ngram_size": 2, "sequence_bias": {(2,): 2.0}},
        {"exponential_decay_length_penalty": (2, 1.5), "max_time": 30.0},
        {"prefix_allowed_tokens_fn": lambda batch_id, ids: [2, 3, end]},
    ]
    for option in options:
        torch.manual_seed(0)
        sequences = model.generate(**inputs, **strategy, **option)
        assert (sequences[:, 0] == model.config.start_action_id).all()
    torch.manual_seed(0)
    assert not (model.generate(**inputs, **strategy, suppress_tokens=[2, 3])[:, 1:] == 2).any()
    assert not (model.generate(**inputs, **strategy, begin_suppress_tokens=[end])[:, 1] == end).any()
    forced = model.generate(**inputs, **strategy, forced_eos_token_id=end, max_new_tokens=2, min_new_tokens=1)
    assert ((forced[:, 1] == end) | (forced[:, 2] == end)).all()


@pytest.mark.parametrize("options", [{"do_sample": True}, {"num_beams": 2, "num_return_sequences": 2}])
def test_cached_and_uncached_decoding_give_the_same_scores_for_every_row(options):
    """GenerationTesterMixin.test_generate_with/without cache, down to the scores of rows that already ended."""
    model, inputs = tiny_model("eag")
    outputs = []
    for use_cache in (True, False):
        torch.manual_seed(2)  # sampled rows end at steps 1, 2 and 1; one runs to the length limit
        outputs.append(
            model.generate(**inputs, use_cache=use_cache, return_dict_in_generate=True, output_scores=True, **options)
        )
    assert torch.equal(outputs[0].sequences, outputs[1].sequences)
    assert len(outputs[0].scores) == len(outputs[1].scores) > 1
    for cached, uncached in zip(outputs[0].scores, outputs[1].scores):
        torch.testing.assert_close(cached, uncached, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("generator", ["iag", "eag"])
@pytest.mark.parametrize("options", [
    {"begin_suppress_tokens": [2, 3, 4, 5, 6]},
    {"suppress_tokens": [2, 3, 4, 5, 6]},
    {"begin_suppress_tokens": [2, 3, 4, 5, 6], "do_sample": True},
    {"begin_suppress_tokens": [2, 3, 4, 5, 6], "num_beams": 2},
], ids=["begin-greedy", "all-greedy", "begin-sample", "begin-beams"])  # fmt: skip
def test_processors_that_block_every_action_are_refused(generator, options):
    """Before: greedy padded mid-sequence (then went on), sampling failed inside torch, beams returned [start]."""
    model = build_tiny_model(generator)
    inputs = history_inputs(make_batch(model.config))
    with pytest.raises(ValueError, match=r"No action can follow at position 1 of row 0: .*every action scores -inf"):
        model.generate(**inputs, **options)
    sequences = model.generate(**inputs, begin_suppress_tokens=[2, 3])  # some left: generated as before
    assert not (sequences[:, 1] == 2).any() and not (sequences[:, 1] == 3).any()


@pytest.mark.parametrize("generator", ["iag", "eag"])
@pytest.mark.parametrize("strategy", [
    {}, {"do_sample": True}, {"num_beams": 2}, {"num_beams": 3, "num_return_sequences": 3},
    {"num_beams": 2, "do_sample": True},
], ids=["greedy", "sample", "beams", "beams-returning-3", "beam-sample"])  # fmt: skip
def test_an_example_blocked_at_a_later_step_is_refused(generator, strategy):
    """min_new_tokens=5 blocks the end action until position 5, and no_repeat_ngram_size=1 every action already
    taken: at position 5 nothing is left. Before, beam search returned 4-action, -1e9-scored sequences without an end
    action (below min_new_tokens) and padding mid-sequence with num_return_sequences=3."""
    model = build_tiny_model(generator)
    inputs = history_inputs(make_batch(model.config))
    with pytest.raises(ValueError, match=r"No action can follow at position 5 of row 0"):
        model.generate(**inputs, **strategy, min_new_tokens=5, no_repeat_ngram_size=1)


@pytest.mark.parametrize("generator", ["iag", "eag"])
@pytest.mark.parametrize("num_beams", [2, 4])
def test_beam_sampling_runs_with_as_few_actions_as_beams(generator, num_beams):
    """With the end action suppressed and no action repeated, four actions can follow at the first step and fewer
    later; beam sampling keeps 2 * num_beams continuations. Before it refused ("only 2 actions can follow") what
    greedy, sampling and beam search all ran; now blocked continuations come last, as in beam search."""
    model = build_tiny_model(generator)
    inputs = history_inputs(make_batch(model.config))
    options = {"no_repeat_ngram_size": 1, "suppress_tokens": [model.config.end_action_id], "max_new_tokens": 4}
    torch.manual_seed(0)
    sequences = model.generate(**inputs, **options, num_beams=num_beams, do_sample=True)
    assert sequences.shape == (inputs["user_ids"].shape[0], 5)
    for row in sequences[:, 1:].tolist():  # four different actions, none the end action, no padding
        assert len(set(row)) == 4 and model.config.end_action_id not in row and 0 not in row


def test_generate_names_missing_inputs():
    model = build_tiny_model("iag")
    inputs = history_inputs(make_batch(model.config))
    inputs.pop("history_action_times")
    with pytest.raises(ValueError, match=r"Missing inputs \['history_action_times'\]: pass them to generate"):
        model.generate(**inputs)
    with pytest.raises(ValueError, match=r"Missing inputs \['history_action_times'\]: pass them to predict_actions"):
        model.predict_actions(**inputs)
    full = history_inputs(make_batch(model.config))
    with pytest.raises(ValueError, match=r"^predict_actions\(\) got unknown arguments \['num_beams'\]; it takes the history inputs \[.*\]\.$"):
        model.predict_actions(**full, num_beams=3)


@pytest.mark.parametrize("penalty", [1e9, -1e9, float("inf"), float("nan"), 10**400, 1000])
def test_a_length_penalty_that_overflows_is_refused_by_name(penalty):
    """Beam scores divide by length ** length_penalty (a Python float): a huge penalty raised a bare OverflowError."""
    model, inputs = tiny_model("iag")
    with pytest.raises(ValueError, match=r"length_penalty=.* overflows"):
        model.generate(**inputs, num_beams=2, length_penalty=penalty, max_new_tokens=3)
    model.generate(**inputs, num_beams=2, length_penalty=2.0, max_new_tokens=3)  # moderate values run
    model.generate(**inputs, num_beams=2, length_penalty=50, max_new_tokens=3)  # an int (before: int power overflow)


# --- times in time order (monotonic_times) ----------------------------------------------------------------------------


def goes_backwards(sequences, times):
    """Rows whose times go back somewhere among their actions (padding after the end does not count)."""
    present = sequences != 0
    return ((times[:, 1:] < times[:, :-1]) & present[:, 1:]).any(1)


def running_max(sequences, times):
    """Each present action's time raised to the latest time before it; padding stays 0.0."""
    return torch.where(sequences != 0, torch.cummax(times, dim=1).values, 0.0)


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("options", [{}, {"do_sample": True}, {"num_beams": 3}, {"do_sample": True, "num_beams": 2}])
def test_generated_times_are_in_time_order_unless_raw_times_are_asked_for(generator, options):
    model, inputs = tiny_model(generator)
    torch.manual_seed(0)
    raw = model.generate(**inputs, return_dict_in_generate=True, monotonic_times=False, **options)
    torch.manual_seed(0)
    ordered = model.generate(**inputs, return_dict_in_generate=True, **options)
    assert goes_backwards(raw.sequences, raw.times).any()  # the untrained generator's raw times do go back
    assert not goes_backwards(ordered.sequences, ordered.times).any()
    assert (ordered.times[:, 1:][ordered.sequences[:, 1:] != 0] >= model.config.start_time).all()  # never before 0 s
    if generator == "iag":  # IAG's slots do not read the fed times: the same actions, each time the running max
        assert torch.equal(raw.sequences, ordered.sequences)
        torch.testing.assert_close(ordered.times, running_max(raw.sequences, raw.times), atol=0, rtol=0)


@pytest.mark.parametrize("use_cache", [True, False])
def test_eag_is_fed_the_ordered_times_it_records(use_cache):
    """A teacher-forced forward on the generated actions and recorded times predicts, at every step, times whose
    running max with the previous recorded time are the recorded ones: the decode fed exactly what it returned."""
    model, inputs = tiny_model("eag")
    generated = model.generate(**inputs, return_dict_in_generate=True, use_cache=use_cache, max_new_tokens=5)
    sequences, times = generated.sequences, generated.times
    live = (sequences[:, 1:] != 0).all(1)  # rows that ran every step (finished rows are fed the end action)
    assert live.any()
    rows = {name: value[live] if torch.is_tensor(value) else value for name, value in inputs.items()}
    with torch.no_grad():
        forward = model(**rows, action_ids=sequences[live, :-1], action_times=times[live, :-1])
    predicted = torch.maximum(forward.times.float(), times[live, :-1])
    torch.testing.assert_close(predicted, times[live, 1:], atol=1e-6, rtol=1e-5)


def test_monotonic_times_is_a_saved_generation_option_and_checked(tmp_path):
    model, inputs = tiny_model("eag")
    assert model.generation_config.monotonic_times is True
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "generation_config.json").read_text())["monotonic_times"] is True
    from transformers import GenerationConfig

    raw = model.generate(**inputs, return_dict_in_generate=True, generation_config=GenerationConfig(monotonic_times=False))
    assert goes_backwards(raw.sequences, raw.times).any()
    model.generation_config.monotonic_times = False  # a model's own setting survives save / load
    model.save_pretrained(tmp_path / "raw")
    reloaded = A2GenForActionGeneration.from_pretrained(tmp_path / "raw")
    assert reloaded.generation_config.monotonic_times is False
    assert goes_backwards(*(lambda out: (out.sequences, out.times))(
        reloaded.generate(**inputs, return_dict_in_generate=True))).any()
    saved = json.loads((tmp_path / "raw" / "generation_config.json").read_text())
    del saved["monotonic_times"]  # a checkpoint saved before the option, as transformers marked it then
    (tmp_path / "raw" / "generation_config.json").write_text(json.dumps({**saved, "_from_model_config": True}))
    old = A2GenForActionGeneration.from_pretrained(tmp_path / "raw")
    assert old.generation_config.monotonic_times is True
    old.generation_config.monotonic_times = False  # set on a model loaded from such a checkpoint, then saved again
    old.save_pretrained(tmp_path / "resaved")
    assert A2GenForActionGeneration.from_pretrained(tmp_path / "resaved").generation_config.monotonic_times is False
    del model.generation_config.monotonic_times  # a checkpoint saved before the option: the keyword still works
    raw_again = model.generate(**inputs, return_dict_in_generate=True, monotonic_times=False)
    assert torch.equal(raw.times, raw_again.times)
    assert not goes_backwards(*(lambda out: (out.sequences, out.times))(
        model.generate(**inputs, return_dict_in_generate=True))).any()  # and the default is still in order
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="monotonic_times=.*True.*False"):
            model.generate(**inputs, monotonic_times=bad)
    context = model.a2gen(**inputs).generation_context
    ordered = model.generate_from_context(context, return_dict_in_generate=True)
    raw_context = model.generate_from_context(context, return_dict_in_generate=True, monotonic_times=False)
    assert not goes_backwards(ordered.sequences, ordered.times).any()
    assert goes_backwards(raw_context.sequences, raw_context.times).any()


def test_beams_record_the_start_time_they_were_fed_in_bfloat16():
    """Beams fed the start time rounded to bf16 but recorded the exact float32 one, so a time clamped to the start
    differed between greedy and beam outputs (0 s against about 0.005 s)."""
    model, inputs = tiny_model("iag", time_log_mean=2.3, time_log_std=1.3)
    model = model.to(torch.bfloat16)
    greedy = model.generate(**inputs, return_dict_in_generate=True)
    beams = model.generate(**inputs, return_dict_in_generate=True, num_beams=2)
    fed = torch.tensor(model.config.start_time, dtype=torch.bfloat16).float()
    assert fed != model.config.start_time  # the case this test is about
    assert (greedy.times[:, 0] == fed).all() and (beams.times[:, 0] == fed).all()
    assert not goes_backwards(beams.sequences, beams.times).any()


def test_a_pad_token_that_is_an_action_is_refused():
    """pad_token_id=3 filled finished sequences with the action of id 3 (decoded as more actions)."""
    model, inputs = tiny_model("iag")
    with pytest.raises(ValueError, match=r"pad_token_id=3 \(the action '.*'\): finished sequences are filled with the padding id 0"):
        model.generate(**inputs, pad_token_id=3, max_new_tokens=3)
    assert len(model.generate(**inputs, pad_token_id=0, max_new_tokens=3)) == len(inputs["item_ids"])


def test_a_checkpoint_without_a_generation_length_generates_up_to_max_actions(tmp_path):
    """A folder without generation_config.json (or one whose generation config has no length, as older transformers
    wrote it) loaded transformers' global max_length=20, which generate() refused though the user passed nothing."""
    model, inputs = tiny_model("iag")
    expected = model.generate(**inputs)
    model.save_pretrained(tmp_path / "none")
    (tmp_path / "none" / "generation_config.json").unlink()
    model.save_pretrained(tmp_path / "old")
    saved = json.loads((tmp_path / "old" / "generation_config.json").read_text())
    del saved["max_length"]
    (tmp_path / "old" / "generation_config.json").write_text(json.dumps({**saved, "_from_model_config": True}))
    for folder in ("none", "old"):
        loaded = A2GenForActionGeneration.from_pretrained(tmp_path / folder).eval()
        assert loaded.generation_config.max_length == model.config.max_actions + 1
        assert torch.equal(loaded.generate(**inputs), expected)


@pytest.mark.parametrize("generator", GENERATORS)
def test_forced_eos_token_id_is_honoured_or_refused_by_name(generator):
    """forced_eos_token_id=1 put a second start at the end, 0 ended with padding (the forced end did nothing), 99
    failed inside torch naming no option."""
    model, inputs = tiny_model(generator)
    config = model.config
    favour(model, **{"2": 40.0})  # the same action, never the end, at every step: the forced end shows
    for options in ({}, {"num_beams": 2}):
        sequences = model.generate(**inputs, max_new_tokens=3, forced_eos_token_id=config.end_action_id, **options)
        assert (sequences[:, -1] == config.end_action_id).all() and (sequences[:, 1:-1] == 2).all()
    for forced in (config.start_action_id, 0, config.vocab_size, [config.end_action_id, 99]):
        with pytest.raises(ValueError, match=r"forced_eos_token_id=.*: the forced last action must be an action id"):
            model.generate(**inputs, max_new_tokens=3, forced_eos_token_id=forced)


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("options", [
    {"suppress_tokens": [2, 3, 4, 5, 6]},
    {"suppress_tokens": [2, 3, 4, 5, 6], "do_sample": True},
    {"begin_suppress_tokens": [2, 3, 4, 5, 6]},
    {"suppress_tokens": [2, 3, 4, 5], "min_new_tokens": 2},
    {"min_new_tokens": 5, "no_repeat_ngram_size": 1},
    {"min_new_tokens": 5, "no_repeat_ngram_size": 1, "do_sample": True},
], ids=["suppress-greedy", "suppress-sample", "begin-suppress", "end-held-back-rest-suppressed", "blocked-before-it",
        "blocked-before-it-sample"])  # fmt: skip
def test_remove_invalid_values_does_not_hide_a_row_left_no_action(generator, options):
    """From a probe (session 28): transformers' InfNanRemoveLogitsProcessor turned the -inf of padding, the start and
    the blocked actions into a finite number, so a blocked row looked open: greedy search padded right after the
    start, sampling drew the start and padding mid-sequence. It is read before that processor now (the end action
    held back by min_new_tokens goes before it, suppress_tokens after it)."""
    model, inputs = tiny_model(generator)
    with pytest.raises(ValueError, match=r"No action can follow at position \d of row 0: .*every action scores -inf"):
        torch.manual_seed(0)
        model.generate(**inputs, **options, remove_invalid_values=True)


@pytest.mark.parametrize("generator", GENERATORS)
def test_remove_invalid_values_still_turns_nan_into_numbers_and_never_draws_padding_or_start(generator):
    """What remove_invalid_values is for stays honoured: NaN logits are read as 0 (refused without it), and padding
    and the start, at the smallest float after it, are never generated."""
    model, inputs = tiny_model(generator)
    end = model.config.end_action_id
    with torch.no_grad():
        model.generator.heads.action.bias[2:] = float("nan")  # every action's logit is NaN
    with pytest.raises(ValueError, match="its scores are NaN"):
        model.generate(**inputs)
    for options in ({}, {"do_sample": True}, {"num_beams": 2}):
        torch.manual_seed(0)
        sequences = model.generate(**inputs, remove_invalid_values=True, max_new_tokens=3, **options)
        for row in sequences[:, 1:].tolist():  # actions up to the end (no padding, no start), padding after it
            length = row.index(end) + 1 if end in row else len(row)
            assert all(token > model.config.start_action_id for token in row[:length]), (options, row)
            assert all(token == 0 for token in row[length:]), (options, row)


@pytest.mark.parametrize("generator", GENERATORS)
def test_continuous_batching_is_refused_with_what_to_use_instead(generator):
    """From a probe (session 28): the inherited generate_batch() reported forward()'s complaint about input_ids as a
    failed request status (and logged a traceback); init_continuous_batching() returned a manager."""
    model, _ = tiny_model(generator)
    calls = {
        "generate_batch": lambda: model.generate_batch(inputs=[[1]]),
        "init_continuous_batching": lambda: model.init_continuous_batching(),
        "continuous_batching_context_manager": lambda: model.continuous_batching_context_manager().__enter__(),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=rf"{name}\(\) \(transformers' continuous batching\) is not supported by "
                                             r"A2Gen: .*model.generate\(\*\*batch\).*A2GenRanker.generate"):
            call()


@pytest.mark.parametrize("generator", GENERATORS)
def test_repeated_end_ids_are_counted_once(generator):
    """From a probe (session 28): beam search kept (1 + end ids) * num_beams continuations counting repeats, more
    than the vocabulary holds: RuntimeError "selected index k out of range"."""
    model, inputs = tiny_model(generator)
    for repeated, distinct in (([2] * 6, [2]), ([2, 3, 4, 5, 2, 3], [2, 3, 4, 5])):
        for options in ({}, {"num_beams": 2}, {"num_beams": 3, "num_return_sequences": 2}):
            assert torch.equal(
                model.generate(**inputs, eos_token_id=repeated, **options),
                model.generate(**inputs, eos_token_id=distinct, **options),
            )


@pytest.mark.parametrize("generator", GENERATORS)
def test_min_length_with_every_action_an_end_id_is_refused_naming_them(generator):
    """From a probe (session 28): the error blamed suppress_tokens & co., which the call did not use, and advised
    leaving the end action allowed, which min_new_tokens held back."""
    model, inputs = tiny_model(generator)
    with pytest.raises(ValueError, match=r"min_new_tokens=2 / min_length=3 forbid ending before 2 action\(s\), but "
                                         r"the end ids \(the end action 'leave' plus eos_token_id=\[2, 3, 4, 5\]\) are "
                                         r"every action that can be generated"):
        model.generate(**inputs, eos_token_id=[2, 3, 4, 5], min_new_tokens=2)
    with pytest.raises(ValueError, match=r"min_new_tokens=None / min_length=2 forbid ending"):
        model.generate(**inputs, eos_token_id=[2, 3, 4, 5], min_length=2, num_beams=2)
    sequences = model.generate(**inputs, eos_token_id=[2, 3, 4], min_new_tokens=2)  # 'comment' is left to go on with
    assert (sequences[:, 1] == 5).all()


@pytest.mark.parametrize("generator", GENERATORS)
def test_a_callers_processor_cannot_make_generate_draw_the_start_or_padding_nor_numpy_ids_be_refused(generator):
    """(review) A logits processor of the caller that raised the start action's score made greedy search, sampling
    and beams emit the start mid-sequence, against the docs (padding and the start are never generated): they are
    kept out after every processor. And eos_token_id given as a numpy integer (2 is in range) was refused as 'not
    an action id'; transformers takes it, as suppress_tokens here did."""
    import numpy as np
    from transformers import LogitsProcessor, LogitsProcessorList

    class RaiseStart(LogitsProcessor):
        def __call__(self, input_ids, scores):
            scores = scores.clone()
            scores[:, 1] = 100.0
            scores[:, 0] = 90.0
            return scores

    model, inputs = tiny_model(generator)
    start = model.config.start_action_id
    for options in ({}, {"do_sample": True}, {"num_beams": 2}):
        torch.manual_seed(0)
        sequences = model.generate(**inputs, max_new_tokens=3, logits_processor=LogitsProcessorList([RaiseStart()]),
                                   **options)  # fmt: skip
        assert (sequences[:, 0] == start).all() and not (sequences[:, 1:] == start).any(), sequences
        assert not ((sequences[:, 1:] == 0).long().diff(dim=1) < 0).any()  # no action after padding
    end = model.config.end_action_id
    assert torch.equal(model.generate(**inputs, max_new_tokens=3, eos_token_id=np.int64(end)),
                       model.generate(**inputs, max_new_tokens=3, eos_token_id=end))  # fmt: skip
