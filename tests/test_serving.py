"""Serving: cached candidate scoring equals predict_actions / generate; chunking, export, empty and bad inputs."""

import copy
import gc
import pickle

import pytest
import torch
from conftest import make_batch, tiny_config
from test_modeling import pad_history

from a2gen_hf import A2GenForActionGeneration, ContextAwareAttention
from a2gen_hf.ranking import USER_INPUT_NAMES, A2GenRanker, UserState

TIME_TOLERANCE = dict(rtol=1e-4, atol=1e-5)


def build(generator="iag", **overrides):
    torch.manual_seed(0)
    config = tiny_config(generator, **overrides)
    return A2GenForActionGeneration(config).eval(), config


def one_user(config, padding=None, seed=0):
    batch = make_batch(config, batch_size=1, items=5, events=3, seed=seed)
    if padding is not None:
        batch = pad_history(batch, extra_items=3, extra_events=2, left=padding == "left")
    return {name: value for name, value in batch.items() if name in USER_INPUT_NAMES and value is not None}


def candidates(config, count, seed=1):
    generator = torch.Generator().manual_seed(seed)
    item_ids = torch.randint(1, config.item_buckets, (count,), generator=generator)
    if not config.num_item_side_features:
        return item_ids, None
    return item_ids, torch.randint(
        1, config.side_feature_buckets, (count, config.num_item_side_features), generator=generator
    )


def naive_prediction(model, user, item_ids, item_side_ids, item_keys=None):
    """predict_actions on the user's history repeated once per candidate."""
    repeated = {name: value.expand(item_ids.shape[0], *value.shape[1:]) for name, value in user.items()}
    keys = {} if item_keys is None else {"item_keys": item_keys}
    return model.predict_actions(**repeated, item_ids=item_ids, item_side_ids=item_side_ids, **keys)


def assert_same_prediction(cached, reference):
    assert (cached.action_probabilities - reference.action_probabilities).abs().max() <= 1e-5
    torch.testing.assert_close(cached.expected_times, reference.expected_times, **TIME_TOLERANCE)


@pytest.mark.parametrize("generator", ["iag", "eag"])
@pytest.mark.parametrize("padding", [None, "left", "right"])
@pytest.mark.parametrize("side_features", [True, False])
@pytest.mark.parametrize("count", [1, 50])
def test_cached_scoring_equals_predict_actions(generator, padding, side_features, count):
    overrides = {} if side_features else dict(num_item_side_features=0, num_user_side_lists=0)
    model, config = build(generator, **overrides)
    user = one_user(config, padding)
    item_ids, item_side_ids = candidates(config, count)
    ranker = A2GenRanker(model)
    cached = ranker.score_candidates(ranker.encode_user(**user), item_ids, item_side_ids)
    assert cached.action_probabilities.shape == (count, config.vocab_size)
    assert_same_prediction(cached, naive_prediction(model, user, item_ids, item_side_ids))


@pytest.mark.parametrize("padding", [None, "left"])
def test_cached_scoring_with_event_item_cross_layers_equals_predict_actions(padding):
    """The ranker's per-user level 1 runs the cross layers as the model's forward does."""
    model, config = build("iag", history_event_cross_layers=2)
    user = one_user(config, padding)
    item_ids, item_side_ids = candidates(config, 20)
    ranker = A2GenRanker(model)
    cached = ranker.score_candidates(ranker.encode_user(**user), item_ids, item_side_ids)
    assert_same_prediction(cached, naive_prediction(model, user, item_ids, item_side_ids))


@pytest.mark.parametrize("variant", ["plain", "tied", "exposure"])
@pytest.mark.parametrize("source", ["item_features", "table"])
@pytest.mark.parametrize("generator", ["iag", "eag"])
def test_cached_scoring_with_item_moments_equals_predict_actions(generator, source, variant):
    """The ranker's per-user level 1 adds the (item, moment) vectors as the model's forward does; with ``tied``, it
    also builds the candidates' features (their moment profiles) and the generation context (with the target
    interactions) through the model's own methods; with ``exposure``, the history items' features get the moments
    watched as the forward gives them."""
    tied = variant == "tied"
    options = {"plain": {}, "tied": dict(target_item_moments=True, context_interactions=True),
               "exposure": dict(history_item_exposure=True)}[variant]
    model, config = build(generator, history_event_item_moments=16, history_event_moment_source=source, **options)
    with torch.no_grad():  # learned weights (the table and the moment weights start at zero)
        if source == "table":
            model.a2gen.features.item_moments.table.weight.normal_()
        if tied:
            model.a2gen.features.target_moment_logits.normal_()
    user = one_user(config, "left")
    item_ids, item_side_ids = candidates(config, 20)
    ranker = A2GenRanker(model)
    cached = ranker.score_candidates(ranker.encode_user(**user), item_ids, item_side_ids)
    assert_same_prediction(cached, naive_prediction(model, user, item_ids, item_side_ids))


def make_underflow(model, config):
    """History and candidate query parts of CAM_item that cancel (A[l, j] = -b[j], both spanning thousands of
    units): the true attention is uniform, but each factor alone is so sharp that the factored normaliser underflows."""
    attention = model.a2gen.encoder.item_attention
    direction, context_bias = 1e3 * torch.randn(config.hidden_size), torch.randn(config.hidden_size)
    with torch.no_grad():
        attention.query_from_sequence.weight.zero_()
        attention.query_from_sequence.bias.copy_(direction)
        attention.context_projection.weight.zero_()
        attention.context_projection.bias.copy_(context_bias)
        attention.query_from_context.weight.copy_(
            -torch.outer(direction, context_bias) / context_bias.dot(context_bias)
        )


@pytest.mark.parametrize("pooling", ["sum", "mean", "sqrt"])
def test_mean_pooling_and_sharp_attention_fallback(pooling, monkeypatch):
    model, config = build("iag", history_pooling=pooling)
    user, (item_ids, item_side_ids) = one_user(config), candidates(config, 20)
    ranker = A2GenRanker(model)
    exact_calls = []
    exact = ContextAwareAttention._exact_pooled_heads
    monkeypatch.setattr(
        ContextAwareAttention, "_exact_pooled_heads", staticmethod(lambda *args: exact_calls.append(1) or exact(*args))
    )
    assert_same_prediction(
        ranker.score_candidates(ranker.encode_user(**user), item_ids, item_side_ids),
        naive_prediction(model, user, item_ids, item_side_ids),
    )
    assert not exact_calls
    make_underflow(model, config)
    cached = ranker.score_candidates(ranker.encode_user(**user), item_ids, item_side_ids)
    assert exact_calls
    assert torch.isfinite(cached.action_probabilities).all()
    assert_same_prediction(cached, naive_prediction(model, user, item_ids, item_side_ids))


@pytest.mark.parametrize("sparse_log_options", [False, True])
def test_empty_history_scores_like_the_model(sparse_log_options):
    """With the count features, a user without history (its padding dropped: 0 items) failed inside their recency
    (``amin`` over an empty dimension); the model itself failed on a history of 0 columns."""
    model, config = build("iag", **(SPARSE_LOG_OPTIONS if sparse_log_options else {}))
    user = one_user(config)
    user["history_mask"] = torch.zeros_like(user["history_item_ids"])
    item_ids, item_side_ids = candidates(config, 4)
    ranker = A2GenRanker(model)
    state = ranker.encode_user(**user)
    assert state.num_history_items == 0
    expected = naive_prediction(model, user, item_ids, item_side_ids)
    assert_same_prediction(ranker.score_candidates(state, item_ids, item_side_ids), expected)
    no_columns = {name: value[:, :0] if name.startswith("history_") else value for name, value in user.items()}
    assert_same_prediction(naive_prediction(model, no_columns, item_ids, item_side_ids), expected)


@pytest.mark.parametrize("generator", ["iag", "eag"])
def test_chunked_scoring_equals_unchunked(generator):
    model, config = build(generator)
    user, (item_ids, item_side_ids) = one_user(config), candidates(config, 23)
    whole = A2GenRanker(model)
    chunked = A2GenRanker(model, chunk_size=5)
    state = whole.encode_user(**user)
    one, other = (
        whole.score_candidates(state, item_ids, item_side_ids),
        chunked.score_candidates(state, item_ids, item_side_ids),
    )
    # Blocks change only the order of fp32 sums (unit-scale embeddings: logits of order 10): rounding, not 1e-3.
    torch.testing.assert_close(other.action_probabilities, one.action_probabilities, rtol=0, atol=5e-6)
    torch.testing.assert_close(other.expected_seconds, one.expected_seconds, **TIME_TOLERANCE)


@pytest.mark.parametrize(
    "generator, overrides",
    [
        ("iag", {}),
        ("eag", {}),
        ("iag", {"time_per_action": True}),
        ("eag", {"time_per_action": True}),
        ("iag", {"history_event_item_moments": 16, "target_item_moments": True, "context_interactions": True}),
        ("iag", {"history_event_item_moments": 16, "history_event_moment_source": "table",
                 "history_event_moment_topics": 4, "history_event_moment_smoothing": 1, "target_item_moments": True,
                 "history_item_exposure": True}),
    ],
)
def test_exported_program_equals_eager(generator, overrides):
    model, config = build(generator, **overrides)
    ranker = A2GenRanker(model)
    state = ranker.encode_user(**one_user(config))
    item_ids, item_side_ids = candidates(config, 8)
    program = ranker.export(state, item_ids, item_side_ids)
    # Another user and another number of candidates: both dimensions are dynamic.
    other_state = ranker.encode_user(**one_user(config, padding="left", seed=3))
    other_ids, other_side_ids = candidates(config, 13, seed=4)
    with torch.no_grad():
        exported = program.module()(*other_state.as_tuple(), other_ids, other_side_ids)
    eager = ranker.score_candidates(other_state, other_ids, other_side_ids)
    torch.testing.assert_close(exported[0], eager.action_probabilities, rtol=0, atol=1e-6)
    torch.testing.assert_close(exported[1], eager.expected_times, **TIME_TOLERANCE)


@pytest.mark.parametrize("use_cache", [True, False])
def test_generate_equals_model_generate(use_cache):
    model, config = build("eag")
    user, (item_ids, item_side_ids) = one_user(config), candidates(config, 12)
    ranker = A2GenRanker(model)
    ours = ranker.generate(ranker.encode_user(**user), item_ids, item_side_ids, use_cache=use_cache)
    repeated = {name: value.expand(12, *value.shape[1:]) for name, value in user.items()}
    reference = model.generate(
        **repeated, item_ids=item_ids, item_side_ids=item_side_ids, use_cache=use_cache, return_dict_in_generate=True
    )
    assert torch.equal(ours.sequences, reference.sequences)
    torch.testing.assert_close(ours.times, reference.times, **TIME_TOLERANCE)


def test_bf16_autocast_runs_and_stays_close_on_a_tiny_model():
    model, config = build("iag")
    user, (item_ids, item_side_ids) = one_user(config), candidates(config, 10)
    state = A2GenRanker(model).encode_user(**user)
    full = A2GenRanker(model).score_candidates(state, item_ids, item_side_ids)
    half = A2GenRanker(model, dtype=torch.bfloat16).score_candidates(state, item_ids, item_side_ids)
    assert half.action_probabilities.dtype == torch.float32
    assert (half.action_probabilities - full.action_probabilities).abs().max() < 0.1


def test_empty_candidate_list_returns_empty_tensors():
    model, config = build("iag")
    ranker = A2GenRanker(model)
    state = ranker.encode_user(**one_user(config))
    result = ranker.score_candidates(
        state, torch.zeros(0, dtype=torch.long), torch.zeros(0, config.num_item_side_features, dtype=torch.long)
    )
    for tensor in (result.action_probabilities, result.expected_times, result.expected_seconds):
        assert tensor.shape == (0, config.vocab_size)


def test_malformed_inputs_give_clear_errors():
    model, config = build("iag")
    ranker = A2GenRanker(model)
    user = one_user(config)
    state = ranker.encode_user(**user)
    item_ids, item_side_ids = candidates(config, 3)
    with pytest.raises(ValueError, match="one user"):
        ranker.encode_user(**{name: torch.cat([value, value]) for name, value in user.items()})
    with pytest.raises(ValueError, match="score_candidates"):
        ranker.encode_user(**user, item_ids=item_ids)
    with pytest.raises(ValueError, match="missing"):
        ranker.encode_user(user_ids=user["user_ids"])
    with pytest.raises(ValueError, match="1-D integer"):
        ranker.score_candidates(state, item_ids[None], item_side_ids)
    with pytest.raises(ValueError, match="item_buckets"):
        ranker.score_candidates(state, item_ids + config.item_buckets, item_side_ids)
    with pytest.raises(ValueError, match="item_side_ids"):
        ranker.score_candidates(state, item_ids)
    with pytest.raises(ValueError, match=r"\(C, F\)"):
        ranker.score_candidates(state, item_ids, item_side_ids[:2])
    with pytest.raises(TypeError, match="UserState"):
        ranker.score_candidates(user, item_ids, item_side_ids)
    with pytest.raises(ValueError, match="chunk_size"):
        A2GenRanker(model, compile=True, chunk_size=None)
    with pytest.raises(ValueError, match="bfloat16"):
        A2GenRanker(model, dtype=torch.float16)
    assert isinstance(state, UserState)


SPARSE_LOG_OPTIONS = dict(
    history_propensity_features=True, history_count_features=True, target_popularity_features=True, occurrence_head=True
)


def with_fitted_popularity(model, config):
    """Give the popularity features counts (random outcomes of 40 examples), so that they vary with the candidate."""
    generator = torch.Generator().manual_seed(5)
    item_ids = torch.randint(1, config.item_buckets, (40,), generator=generator)
    categories = torch.randint(1, config.side_feature_buckets, (40,), generator=generator)
    occurs = torch.rand(40, config.vocab_size, generator=generator) < 0.3
    model.a2gen.extra_features.popularity_features.fit(item_ids, categories, occurs)
    return model


@pytest.mark.parametrize("generator", ["iag", "eag"])
@pytest.mark.parametrize("padding", [None, "left"])
@pytest.mark.parametrize("time_per_action", [False, True])
def test_scoring_with_the_sparse_log_options_equals_predict_actions(generator, padding, time_per_action):
    model, config = build(generator, **SPARSE_LOG_OPTIONS, time_per_action=time_per_action)
    model = with_fitted_popularity(model, config)
    user = one_user(config, padding)
    item_ids, item_side_ids = candidates(config, 30)
    item_ids[:3] = user["history_item_ids"][0, -3:]  # candidates seen in the history change the count features
    ranker = A2GenRanker(model, chunk_size=7)
    state = ranker.encode_user(**user)
    cached = ranker.score_candidates(state, item_ids, item_side_ids)
    assert_same_prediction(cached, naive_prediction(model, user, item_ids, item_side_ids))
    timelines = ranker.generate(state, item_ids[:4], item_side_ids[:4])
    repeated = {name: value.expand(4, *value.shape[1:]) for name, value in user.items()}
    reference = model.generate(**repeated, item_ids=item_ids[:4], item_side_ids=item_side_ids[:4],
                               return_dict_in_generate=True)
    assert torch.equal(timelines.sequences, reference.sequences)
    torch.testing.assert_close(timelines.times, reference.times, **TIME_TOLERANCE)
    with pytest.raises(ValueError, match="export\\(\\) covers models without the count, propensity or popularity"):
        ranker.export(state, item_ids, item_side_ids)


@pytest.mark.parametrize("compile", [False, True])
def test_scoring_with_popularity_keyed_by_raw_id_equals_predict_actions(compile):
    """Candidates that share a bucket but not a raw id read their own counts, in the ranker as in predict_actions;
    the ranker, generate and the model refuse to score such a model without item_keys."""
    model, config = build("iag", **SPARSE_LOG_OPTIONS, popularity_keys="raw_ids")
    generator = torch.Generator().manual_seed(5)
    counted_keys = torch.randint(0, 2**62, (40,), generator=generator)
    occurs = torch.rand(40, config.vocab_size, generator=generator) < 0.3
    categories = torch.randint(1, config.side_feature_buckets, (40,), generator=generator)
    popularity = model.a2gen.extra_features.popularity_features
    assert popularity.fit(counted_keys, categories, occurs) == len(counted_keys.unique())
    user = one_user(config)
    item_ids, item_side_ids = candidates(config, 30)
    item_ids[:] = item_ids[0]  # one bucket for all: only the keys tell the candidates apart
    item_side_ids[:] = item_side_ids[0]
    item_keys = torch.cat([counted_keys[:20], torch.randint(2**62, 2**63 - 1, (10,), generator=generator)])
    ranker = A2GenRanker(model, chunk_size=7, compile=compile)
    state = ranker.encode_user(**user)
    scored = ranker.score_candidates(state, item_ids, item_side_ids, item_keys)
    reference = naive_prediction(model, user, item_ids, item_side_ids, item_keys)
    assert_same_prediction(scored, reference)
    probabilities = reference.action_probabilities
    assert not torch.allclose(probabilities[:20], probabilities[:1].expand(20, -1))  # own counts per key
    torch.testing.assert_close(probabilities[20:], probabilities[20:21].expand(10, -1))  # unseen: the category's
    timelines = ranker.generate(state, item_ids[:4], item_side_ids[:4], item_keys=item_keys[:4])
    repeated = {name: value.expand(4, *value.shape[1:]) for name, value in user.items()}
    expected = model.generate(**repeated, item_ids=item_ids[:4], item_side_ids=item_side_ids[:4],
                              item_keys=item_keys[:4], return_dict_in_generate=True)
    assert torch.equal(timelines.sequences, expected.sequences)
    with pytest.raises(ValueError, match="pass item_keys"):
        ranker.score_candidates(state, item_ids, item_side_ids)
    with pytest.raises(ValueError, match=r"item_keys must be an integer tensor of shape \(C,\)"):
        ranker.score_candidates(state, item_ids, item_side_ids, item_keys[:3])
    with pytest.raises(ValueError, match="pass item_keys"):
        naive_prediction(model, user, item_ids, item_side_ids)


def test_exported_program_with_an_occurrence_head_equals_eager():
    model, config = build("iag", occurrence_head=True)
    ranker = A2GenRanker(model)
    state = ranker.encode_user(**one_user(config))
    item_ids, item_side_ids = candidates(config, 8)
    program = ranker.export(state, item_ids, item_side_ids)
    with torch.no_grad():
        exported = program.module()(*state.as_tuple(), item_ids, item_side_ids)
    eager = ranker.score_candidates(state, item_ids, item_side_ids)
    torch.testing.assert_close(exported[0], eager.action_probabilities, rtol=0, atol=1e-6)
    assert_same_prediction(eager, naive_prediction(model, one_user(config), item_ids, item_side_ids))


# ---------------------------------------------------------------------------------------------------------------
# Checked inputs: types, shapes and id ranges name the argument; long histories are cut as the collator cuts them


@pytest.mark.parametrize(
    "change, error, message",
    [
        (dict(user_ids=[3]), TypeError, r"user_ids must be a torch.Tensor .* got list"),
        (dict(history_item_ids="1 2 3"), TypeError, r"history_item_ids must be a torch.Tensor .* got str"),
        (dict(user_ids=torch.tensor([3.0])), TypeError, r"user_ids must hold integer ids \(torch.long\), got dtype torch.float32; the embedding tables take torch.long \(or torch.int32\)"),
        (dict(history_item_ids=torch.ones(1, 5, dtype=torch.bool)), TypeError, r"history_item_ids must hold integer ids"),
        (dict(user_ids=torch.tensor([10_000])), ValueError, r"user_ids must lie in \[0, user_buckets=50\), got values from 10000"),
        (dict(history_item_ids=torch.tensor([[1, 2, 3, 4, -1]])), ValueError, r"history_item_ids must lie in \[0, item_buckets=200\)"),
        (dict(history_action_ids=torch.full((1, 5, 3), 99)), ValueError, r"history_action_ids must lie in \[0, vocab_size=7\), got values from 99 to 99; encode actions with the tokenizer"),
        (dict(history_item_side_ids=torch.full((1, 5, 2), 30)), ValueError, r"history_item_side_ids must lie in \[0, side_feature_buckets=30\)"),
        (dict(user_side_ids=torch.full((1, 2, 3), 200)), ValueError, r"user_side_ids must lie in \[0, item_buckets=200\)"),
        (dict(history_action_ids=torch.ones(1, 4, 3, dtype=torch.long)), ValueError, r"history_action_ids must have shape \(1, N, E\) = \(1, 5, E\), got \(1, 4, 3\)"),
        (dict(history_action_times=torch.zeros(1, 5, 2)), ValueError, r"history_action_times must have shape \(1, 5, 3\), got \(1, 5, 2\)"),
        (dict(history_action_times=torch.zeros(1, 5, 3, dtype=torch.long)), TypeError, r"history_action_times must be a floating tensor"),
        (dict(history_action_times=torch.full((1, 5, 3), float("nan"))), ValueError, r"history_action_times holds NaN"),
        (dict(history_mask=torch.ones(1, 5, dtype=torch.complex64)), TypeError, r"history_mask must be a 0/1 mask \(bool or integer\), got dtype torch.complex64"),
        (dict(history_item_side_ids=torch.ones(1, 5, 3, dtype=torch.long)), ValueError, r"history_item_side_ids must have shape \(1, 5, 2\)"),
        (dict(user_side_ids=torch.ones(1, 3, 3, dtype=torch.long)), ValueError, r"user_side_ids of shape \(1, 2, L\), got \(1, 3, 3\)"),
    ],
)
def test_encode_user_checks_its_inputs(change, error, message):
    model, config = build("iag")
    with pytest.raises(error, match=message):
        A2GenRanker(model).encode_user(**{**one_user(config), **change})


def test_float_masks_are_read_as_the_model_reads_them():
    """A 0/1 float history or time mask, which forward and predict_actions take, scores as the bool one (before: the
    ranker alone refused it)."""
    model, config = build("iag")
    user = one_user(config)
    mask, time_mask = user["history_item_ids"] != 0, torch.rand(user["history_action_times"].shape) > 0.3
    item_ids, item_side_ids = candidates(config, 6)
    ranker = A2GenRanker(model)
    as_bool = ranker.score_candidates(ranker.encode_user(**user, history_mask=mask, history_time_mask=time_mask),
                                      item_ids, item_side_ids)
    as_float = ranker.score_candidates(
        ranker.encode_user(**user, history_mask=mask.float(), history_time_mask=time_mask.float()), item_ids,
        item_side_ids,
    )
    torch.testing.assert_close(as_float.action_probabilities, as_bool.action_probabilities, rtol=0, atol=0)
    torch.testing.assert_close(as_float.expected_times, as_bool.expected_times, rtol=0, atol=0)


def test_generate_returns_times_with_a_generation_config_too():
    """return_dict_in_generate defaults to True with a generation_config as well (before: bare ids, no times)."""
    from transformers import GenerationConfig

    model, config = build("eag")
    ranker = A2GenRanker(model)
    state = ranker.encode_user(**one_user(config))
    item_ids, item_side_ids = candidates(config, 3)
    for generation_config in (GenerationConfig(max_new_tokens=2), model.generation_config):
        output = ranker.generate(state, item_ids, item_side_ids, generation_config=generation_config)
        assert output.times.shape == output.sequences.shape
    bare = ranker.generate(state, item_ids, item_side_ids, generation_config=GenerationConfig(max_new_tokens=2),
                           return_dict_in_generate=False)
    assert isinstance(bare, torch.Tensor) and bare.dtype == torch.long


def test_generate_with_a_generation_config_adds_no_keyword_and_honours_its_return_dict_in_generate(monkeypatch):
    """From a probe (session 28): the ranker added return_dict_in_generate=True as a keyword beside a
    generation_config, so transformers warned of a deprecated mix the user did not make, and a config's explicit
    return_dict_in_generate=False was overridden."""
    from transformers import GenerationConfig

    model, config = build("iag")
    ranker = A2GenRanker(model)
    state = ranker.encode_user(**one_user(config))
    item_ids, item_side_ids = candidates(config, 2)
    calls, generate_from_context = [], model.generate_from_context
    monkeypatch.setattr(model, "generate_from_context",
                        lambda *args, **kwargs: calls.append((args, kwargs)) or generate_from_context(*args, **kwargs))
    given = GenerationConfig(max_new_tokens=2)
    output = ranker.generate(state, item_ids, item_side_ids, generation_config=given)
    (_, passed), kwargs = calls[-1]
    assert "return_dict_in_generate" not in kwargs and passed.return_dict_in_generate is True
    assert given.return_dict_in_generate is None  # set on a copy: the caller's config is not changed
    assert output.times.shape == output.sequences.shape
    bare = ranker.generate(state, item_ids, item_side_ids,
                           generation_config=GenerationConfig(max_new_tokens=2, return_dict_in_generate=False))
    assert isinstance(bare, torch.Tensor) and torch.equal(bare, output.sequences)
    ranker.generate(state, item_ids, item_side_ids)  # no config: the keyword, as before
    assert calls[-1][1]["return_dict_in_generate"] is True


def test_score_candidates_checks_its_inputs():
    model, config = build("iag")
    ranker = A2GenRanker(model)
    state = ranker.encode_user(**one_user(config))
    item_ids, item_side_ids = candidates(config, 3)
    for ids, error, message in (
        ([1, 2, 3], TypeError, r"item_ids must be a 1-D integer tensor .* got list"),
        (item_ids.float(), TypeError, r"item_ids must hold integer ids \(torch.long\), got dtype torch.float32"),
        (item_ids.to(torch.int16), TypeError, r"item_ids must hold integer ids \(torch.long\), got dtype torch\.int16"),
        (item_ids.bool(), TypeError, r"item_ids must hold integer ids"),
        (-item_ids, ValueError, r"item_ids must lie in \[0, item_buckets=200\)"),
    ):
        with pytest.raises(error, match=message):
            ranker.score_candidates(state, ids, item_side_ids)
    with pytest.raises(ValueError, match=r"item_side_ids must lie in \[0, side_feature_buckets=30\)"):
        ranker.score_candidates(state, item_ids, item_side_ids + 30)
    with pytest.raises(TypeError, match=r"item_side_ids must be an integer tensor \(C, F\), got list"):
        ranker.score_candidates(state, item_ids, item_side_ids.tolist())
    with pytest.raises(TypeError, match="chunk_size must be an int"):
        A2GenRanker(model, chunk_size=2.5)


def test_a_state_encoded_before_the_weights_changed_is_refused():
    """Before: only the model's id() was compared, so weights reloaded in place (load_state_dict) or a new model
    built at a freed one's address passed the check (a probe measured probabilities off by 0.30)."""
    model, config = build("iag")
    other, _ = build("iag")
    with torch.no_grad():  # a different model's weights, loaded into the serving model in place
        for parameter in other.parameters():
            parameter.add_(0.1)
    ranker = A2GenRanker(model)
    state = ranker.encode_user(**one_user(config))
    item_ids, item_side_ids = candidates(config, 3)
    before = ranker.score_candidates(state, item_ids, item_side_ids)
    model.load_state_dict(other.state_dict())
    with pytest.raises(ValueError, match=r"encoded before this ranker's model changed its weights \(load_state_dict"):
        ranker.score_candidates(state, item_ids, item_side_ids)
    fresh = ranker.score_candidates(ranker.encode_user(**one_user(config)), item_ids, item_side_ids)
    assert not torch.allclose(fresh.action_probabilities, before.action_probabilities)
    state = ranker.encode_user(**one_user(config))
    model.load_state_dict(other.state_dict(), assign=True)  # new tensors, listed again after the load
    with pytest.raises(ValueError, match="encoded before this ranker's model changed its weights"):
        ranker.score_candidates(state, item_ids, item_side_ids)
    state = ranker.encode_user(**one_user(config))
    with torch.no_grad():  # an optimizer step's in-place change
        next(model.parameters()).add_(1e-3)
    with pytest.raises(ValueError, match="encoded before this ranker's model changed its weights"):
        ranker.score_candidates(state, item_ids, item_side_ids)
    state = ranker.encode_user(**one_user(config))
    with torch.no_grad():  # a weight average's copy through detach() (torch.optim.swa_utils.AveragedModel)
        next(model.parameters()).detach().mul_(0.5)
    with pytest.raises(ValueError, match="encoded before this ranker's model changed its weights"):
        ranker.score_candidates(state, item_ids, item_side_ids)
    with pytest.raises(TypeError, match="cannot be pickled or saved: encode the user again"):
        pickle.dumps(ranker.encode_user(**one_user(config)))
    # Copies in the process are states of the same model (before: copy.copy / copy.deepcopy refused them too).
    state = ranker.encode_user(**one_user(config))
    scores = ranker.score_candidates(state, item_ids, item_side_ids).action_probabilities
    for copied in (copy.copy(state), copy.deepcopy(state)):
        assert torch.equal(ranker.score_candidates(copied, item_ids, item_side_ids).action_probabilities, scores)
    assert copy.deepcopy(state).keys.data_ptr() != state.keys.data_ptr()
    # A ranker copies as a ranker of a copy of the model (before: "cannot pickle '_thread.lock' object").
    copied_ranker = copy.deepcopy(ranker)
    assert copied_ranker.model is not model and copied_ranker.chunk_size == ranker.chunk_size
    fresh_copy = copied_ranker.score_candidates(copied_ranker.encode_user(**one_user(config)), item_ids, item_side_ids)
    assert torch.equal(fresh_copy.action_probabilities, scores)
    with pytest.raises(ValueError, match="user_state was encoded by another model than this ranker's"):
        copied_ranker.score_candidates(state, item_ids, item_side_ids)
    with pytest.raises(TypeError, match="An A2GenRanker holds compiled code.*cannot be pickled: save the model"):
        pickle.dumps(ranker)
    # A model freed and another built in its place: the state's weak reference is dead, whatever id() says.
    state = A2GenRanker(other).encode_user(**one_user(config))
    del other
    gc.collect()
    with pytest.raises(ValueError, match="user_state was encoded by another model than this ranker's"):
        ranker.score_candidates(state, item_ids, item_side_ids)


def test_a_state_of_another_model_and_a_model_in_training_mode_are_refused():
    """Before: another model's cached state was scored silently (probabilities off by up to 0.6 after a model swap),
    and a model switched back to train() scored with dropout (two identical calls differed)."""
    model, config = build("iag", hidden_dropout_prob=0.5)
    other, _ = build("iag", hidden_dropout_prob=0.5)
    ranker, other_ranker = A2GenRanker(model), A2GenRanker(other)
    state = ranker.encode_user(**one_user(config))
    item_ids, item_side_ids = candidates(config, 3)
    with pytest.raises(ValueError, match="user_state was encoded by another model than this ranker's"):
        other_ranker.score_candidates(state, item_ids, item_side_ids)
    with pytest.raises(ValueError, match="user_state was encoded by another model"):
        other_ranker.generate(state, item_ids, item_side_ids)
    A2GenRanker(model).score_candidates(state, item_ids, item_side_ids)  # another ranker of the same model: fine
    model.train()
    with pytest.raises(ValueError, match=r"in training mode .*call model\.eval\(\)"):
        ranker.score_candidates(state, item_ids, item_side_ids)
    with pytest.raises(ValueError, match="in training mode"):
        ranker.encode_user(**one_user(config))
    model.eval()
    assert ranker.score_candidates(state, item_ids, item_side_ids).action_probabilities.shape[0] == 3


def test_long_histories_are_cut_to_the_most_recent_items_and_first_events():
    model, config = build("iag")  # max_history_items=6, max_events_per_item=4
    long_user = one_user(config, seed=2)
    batch = make_batch(config, batch_size=1, items=40, events=9, seed=4)
    long_user.update({name: batch[name] for name in ("history_item_ids", "history_item_side_ids",
                                                       "history_action_ids", "history_action_times")})
    cut = {
        **long_user,
        **{name: long_user[name][:, -config.max_history_items :] for name in ("history_item_ids", "history_item_side_ids")},
        **{name: long_user[name][:, -config.max_history_items :, : config.max_events_per_item]
           for name in ("history_action_ids", "history_action_times")},
    }
    ranker = A2GenRanker(model)
    item_ids, item_side_ids = candidates(config, 5)
    state = ranker.encode_user(**long_user)
    assert state.num_history_items == config.max_history_items
    assert_same_prediction(ranker.score_candidates(state, item_ids, item_side_ids),
                           naive_prediction(model, cut, item_ids, item_side_ids))


def test_the_serving_module_still_exports_the_ranker():
    import a2gen_hf
    import a2gen_hf.ranking
    import a2gen_hf.serving

    assert a2gen_hf.serving.A2GenRanker is a2gen_hf.ranking.A2GenRanker is a2gen_hf.A2GenRanker
    assert a2gen_hf.serving.UserState is UserState


def test_ranking_calls_no_private_method_of_the_model():
    """ranking.py composes the model's public parts: no `model._x`, `.a2gen._x`, `attention._x` reach-ins."""
    import ast
    import inspect

    import a2gen_hf.ranking

    tree = ast.parse(inspect.getsource(a2gen_hf.ranking))
    private = sorted(
        {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr.startswith("_")
         and not node.attr.startswith("__") and not (isinstance(node.value, ast.Name) and node.value.id == "self")}
    )
    # `_version`: torch's in-place version counter of a tensor (no public name), read by `weights_stamp`.
    assert [name for name in private if name != "_version"] == [], private


def test_shifted_exp_floors_only_what_is_negligible():
    """shifted_exp: exact above its floors, normal numbers below them (CPU exp and multiply-adds are slow there)."""
    from a2gen_hf.attention_kernels import EXP_FLOOR, shifted_exp

    tiny = torch.finfo(torch.float32).tiny
    shifted = torch.tensor([0.0, -1.0, -30.0, -69.0, -86.0, -87.5, -100.0, -1e4, torch.finfo(torch.float32).min])
    plain = shifted_exp(shifted)
    assert torch.equal(plain[:5], shifted[:5].exp())  # untouched above log(tiny) + 1
    assert (plain >= tiny).all() and (plain[5:] <= 3 * tiny).all()  # no subnormal, no zero
    normalised = shifted_exp(shifted, normalised=True)
    assert torch.equal(normalised[:4], shifted[:4].exp())  # untouched above EXP_FLOOR
    assert (normalised[4:] == torch.tensor(EXP_FLOOR).exp()).all()
    in_place = shifted.clone()
    assert torch.equal(shifted_exp(in_place, inplace=True, normalised=True), normalised)
    assert torch.equal(in_place, normalised)
    # As a softmax (divided by its sum, which holds exp(0) = 1), the floor is invisible next to fp32 rounding.
    rows = torch.randn(64, 7, dtype=torch.float64) * 300
    shifted_rows = (rows - rows.amax(-1, keepdim=True)).float()
    weights = shifted_exp(shifted_rows, normalised=True)
    weights = weights / weights.sum(-1, keepdim=True)
    assert (weights - torch.softmax(rows, -1)).abs().max() < 1e-6
    assert (weights >= tiny).all()


@pytest.mark.parametrize("generator", ["iag", "eag"])
def test_sharp_attention_scores_like_the_model_in_float64(generator):
    """
    Large weights make every attention of CAM_item, CAM_gen and the gates sharp: most exponentials then fall below
    the floors of shifted_exp. The fp32 ranker still equals predict_actions computed in fp64 (where no floor is
    reached), so the floors change nothing that fp32 can show.
    """
    model, config = build(generator, num_item_side_features=0, num_user_side_lists=0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "attention" in name and name.endswith("weight"):
                parameter.mul_(8.0)
    user, (item_ids, _) = one_user(config, "left"), candidates(config, 40)
    ranker = A2GenRanker(model, chunk_size=16)  # 40 candidates: blocks of 16, 16 and 8
    state = ranker.encode_user(**user)
    assert (state.score_exponentials < 1e-30).any()  # the history's own attention is sharp
    cached = ranker.score_candidates(state, item_ids)
    exact = naive_prediction(model.double(), {name: value.double() if value.is_floating_point() else value
                                              for name, value in user.items()}, item_ids, None)
    # (slot_distributions hands fp32 slot probabilities to the readout, so `exact` is fp64 up to the logits)
    assert (cached.action_probabilities - exact.action_probabilities).abs().max() <= 1e-4
    torch.testing.assert_close(cached.expected_times, exact.expected_times, rtol=1e-3, atol=1e-3)


@pytest.mark.slow
def test_compiled_scoring_equals_eager_and_does_not_recompile(monkeypatch):
    """compile=True: the same numbers as eager; fixed blocks (the last one padded) so other C do not recompile."""
    from torch._dynamo.utils import counters

    graphs_before = counters["stats"]["unique_graphs"]
    model, config = build("iag")
    user = one_user(config)
    eager, compiled = A2GenRanker(model, chunk_size=8), A2GenRanker(model, chunk_size=8, compile=True)
    state = eager.encode_user(**user)
    item_ids, item_side_ids = candidates(config, 20)
    torch.testing.assert_close(
        compiled.score_candidates(state, item_ids, item_side_ids).action_probabilities,
        eager.score_candidates(state, item_ids, item_side_ids).action_probabilities, rtol=0, atol=1e-6,
    )
    frames = counters["stats"]["unique_graphs"]
    item_ids, item_side_ids = candidates(config, 11, seed=2)
    torch.testing.assert_close(
        compiled.score_candidates(state, item_ids, item_side_ids).action_probabilities,
        eager.score_candidates(state, item_ids, item_side_ids).action_probabilities, rtol=0, atol=1e-6,
    )
    assert counters["stats"]["unique_graphs"] == frames
    # The compiled block is one graph (plus the user's terms): CAM_item's underflow is reported, not branched on,
    # and a block whose factored form underflows is scored again eagerly, with the exact form.
    assert counters["stats"]["unique_graphs"] - graphs_before == 1
    exact_calls = []
    exact = ContextAwareAttention._exact_pooled_heads
    monkeypatch.setattr(
        ContextAwareAttention, "_exact_pooled_heads", staticmethod(lambda *args: exact_calls.append(1) or exact(*args))
    )
    make_underflow(model, config)
    assert_same_prediction(
        compiled.score_candidates(compiled.encode_user(**user), item_ids, item_side_ids),
        naive_prediction(model, user, item_ids, item_side_ids),
    )
    assert exact_calls


@pytest.mark.parametrize(
    "overrides",
    [{}, {"iag_slot_activation": "relu"}, {"cam_gate_input": "projected"}, {"max_actions": 1}, {"head_dim": 24},
     {"time_per_action": True}, {"time_per_action": True, "max_actions": 1}],
)
def test_iag_slot_predictions_equal_forward(overrides):
    """IAG's batch-innermost inference path (what predict_actions and the ranker read) equals its forward."""
    model, config = build("iag", **overrides)
    context = 3 * torch.randn(37, model.a2gen.context_size)
    with torch.no_grad():
        reference = model.generator(context)
        logits, times = model.generator.slot_predictions(context)
    time_shape = (config.max_actions, config.vocab_size) if config.time_per_action else (config.max_actions,)
    assert logits.shape == (37, config.max_actions, config.vocab_size) and times.shape == (37, *time_shape)
    torch.testing.assert_close(logits, reference["logits"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(times, reference["times"], rtol=1e-5, atol=1e-5)
    empty_logits, empty_times = model.generator.slot_predictions(context[:0])
    assert empty_logits.shape == (0, config.max_actions, config.vocab_size) and empty_times.shape == (0, *time_shape)
    # With gradients it is forward itself (training never takes the inference path).
    context.requires_grad_(True)
    logits, _ = model.generator.slot_predictions(context)
    logits.sum().backward()
    assert context.grad is not None


@pytest.mark.parametrize("generator", ["iag", "eag"])
def test_heads_wider_than_their_share_of_the_width_score_like_the_model(generator):
    """head_dim set (each head 24 wide at hidden 16), square-root pooling and log-seconds buckets: cached ranking
    still equals predict_actions."""
    model, config = build(generator, head_dim=24, history_pooling="sqrt", time_buckets=8)
    assert model.a2gen.encoder.item_attention.attention_size == 24 * config.num_attention_heads
    user, (item_ids, item_side_ids) = one_user(config, "left"), candidates(config, 30)
    ranker = A2GenRanker(model)
    assert_same_prediction(
        ranker.score_candidates(ranker.encode_user(**user), item_ids, item_side_ids),
        naive_prediction(model, user, item_ids, item_side_ids),
    )


def test_events_wider_than_the_cap_keep_each_item_s_real_events_whatever_their_padding_side():
    """Before: the ranker kept the first max_events_per_item positions, so an item whose 3 events were padded on the
    left (5 columns, a cap of 3) lost 2 of them to padding, and its scores moved from predict_actions' by 0.02."""
    torch.manual_seed(0)
    model = A2GenForActionGeneration(tiny_config("iag", max_events_per_item=3, num_user_side_lists=0,
                                                 num_item_side_features=0)).eval()
    ranker = A2GenRanker(model)
    items = torch.tensor([7, 3, 9])
    user = {"user_ids": torch.tensor([4]), "history_item_ids": torch.tensor([[11, 12]]),
            "history_action_ids": torch.tensor([[[1, 2, 5, 0, 0], [0, 0, 1, 2, 5]]]),
            "history_action_times": torch.tensor([[[0.0, -0.2, 0.1, 0.0, 0.0], [0.0, 0.0, 0.0, 0.3, 0.5]]]),
            "history_time_mask": torch.tensor([[[1, 1, 1, 0, 0], [0, 0, 1, 1, 1]]])}
    right = dict(user, history_action_ids=user["history_action_ids"][..., :3].clone(),
                 history_action_times=user["history_action_times"][..., :3].clone(),
                 history_time_mask=user["history_time_mask"][..., :3].clone())
    right["history_action_ids"][0, 1] = torch.tensor([1, 2, 5])  # item 12's events moved to the front
    right["history_action_times"][0, 1] = torch.tensor([0.0, 0.3, 0.5])
    right["history_time_mask"][0, 1] = 1
    with torch.no_grad():
        expected = model.predict_actions(**{k: v.expand(3, *v.shape[1:]) for k, v in right.items()}, item_ids=items)
    scored = ranker.score_candidates(ranker.encode_user(**user), items)
    torch.testing.assert_close(scored.action_probabilities, expected.action_probabilities, atol=1e-5, rtol=0)


def test_exact_pooled_fallback_computes_in_fp32_under_bf16_autocast():
    """The exact fallback of pooled_output ran torch's SDPA under CPU bf16 autocast (A2GenRanker(dtype=...)) in bf16:
    0.06 off the fp32 result on 50 positions, the least precise of CAM's forms although it is the exact one. It now
    shares summed_output's autocast-off, >= fp32 SDPA (sdpa_in_fp32)."""
    from a2gen_hf.modeling_a2gen import sdpa_in_fp32

    generator = torch.Generator().manual_seed(0)
    heads, count, head_size, contexts = 2, 50, 8, 3
    queries, keys, values = (4 * torch.randn(heads, count, head_size, generator=generator) for _ in range(3))
    context_queries = 4 * torch.randn(contexts, heads, head_size, generator=generator)
    operands = (queries, keys, values, None, context_queries, None, None)
    expected = ContextAwareAttention._exact_pooled_heads(*operands)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = ContextAwareAttention._exact_pooled_heads(*operands)
        states = sdpa_in_fp32(queries.bfloat16(), keys, values)
    assert under_autocast.dtype == torch.float32 and states.dtype == torch.float32
    torch.testing.assert_close(under_autocast, expected, rtol=1e-5, atol=1e-5)
