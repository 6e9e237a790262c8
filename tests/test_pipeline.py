"""The "action-generation" pipeline: registration, the same tensors as the collator, loading by path, clear errors."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_tiny_model
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY

import a2gen_hf
from a2gen_hf import (
    A2GenActionTokenizer,
    ActionGenerationPipeline,
    ActionRequestError,
)
from a2gen_hf.data import A2GenDataCollator

FIELDS = ["category", "opening_topic"]


def tiny_model(generator="iag", **overrides):
    settings = dict(max_history_items=3, num_user_side_lists=0, time_log_mean=1.5, time_log_std=1.1)
    return build_tiny_model(generator, **{**settings, **overrides})


def history_item(item, like_at=2.0, leave_at=18.0, **side_features):
    entry = {"item": item, "events": [("start", 0.0), ("like", like_at), ("leave", leave_at)]}
    if side_features:
        entry["side_features"] = side_features
    return entry


REQUEST = {
    "user": "u1",
    "history": [history_item("v7", category="topic_3", opening_topic="topic_1"), history_item("v8", 5.0, 30.0)],
    "candidates": ["v42", {"item": "v43", "side_features": {"category": "topic_1"}}],
}


def make_pipe(model, **kwargs):
    return pipeline("action-generation", model=model, side_feature_fields=FIELDS, **kwargs)


def test_registered_on_import():
    assert "action-generation" in PIPELINE_REGISTRY.get_supported_tasks()
    assert PIPELINE_REGISTRY.supported_tasks["action-generation"]["impl"] is ActionGenerationPipeline
    assert "ActionGenerationPipeline" in a2gen_hf.__all__


@pytest.mark.parametrize("generator", ["iag", "eag"])
def test_outputs_equal_the_model_on_collated_rows(generator):
    model = tiny_model(generator)
    tokenizer = A2GenActionTokenizer.from_config(model.config)
    results = make_pipe(model, tokenizer=tokenizer)(REQUEST)

    # The same request written as on-disk rows by hand, collated and run through the model directly.
    def side(values):
        return [tokenizer.hash_side_feature(field, values[field]) if field in values else 0 for field in FIELDS]

    start, like, leave = (tokenizer.convert_tokens_to_ids(name) for name in ("start", "like", "leave"))
    shared = {
        "user_id": tokenizer.hash_user("u1"),
        "history_item_ids": [tokenizer.hash_item("v7"), tokenizer.hash_item("v8")],
        "history_item_side_ids": [side({"category": "topic_3", "opening_topic": "topic_1"}), [0, 0]],
        "history_action_ids": [[start, like, leave], [start, like, leave]],
        "history_action_seconds": [[0.0, 2.0, 18.0], [0.0, 5.0, 30.0]],
        "action_ids": [start],
        "action_seconds": [0.0],
    }
    rows = [
        {**shared, "item_id": tokenizer.hash_item("v42"), "item_side_ids": [0, 0]},
        {**shared, "item_id": tokenizer.hash_item("v43"), "item_side_ids": side({"category": "topic_1"})},
    ]
    batch = A2GenDataCollator.from_config(model.config, tokenizer)(rows)
    # On a GPU machine the pipeline has moved the model to the GPU (transformers' default device).
    inputs = {name: value.to(model.device) for name, value in batch.items() if not name.startswith("label")}
    expected = model.predict_actions(**inputs)
    generated = model.generate(**inputs, max_new_tokens=model.config.max_actions, return_dict_in_generate=True)

    assert [result["item"] for result in results] == ["v42", "v43"]
    for row, result in enumerate(results):
        assert list(result["action_probabilities"]) == ["like", "follow", "forward", "comment", "leave"]
        for name, probability in result["action_probabilities"].items():
            action_id = model.config.action_id(name)
            assert probability == pytest.approx(expected.action_probabilities[row, action_id].item(), abs=1e-6)
            assert result["expected_seconds"][name] == pytest.approx(
                expected.expected_seconds[row, action_id].item(), rel=1e-5, abs=1e-6
            )
        assert_same_timeline(result["timeline"], tokenizer.decode_timeline(generated.sequences[row], generated.times[row]))
        assert result["timeline"][0] == ("start", 0.0)
    # Two different candidates (ids and side features) get different scores.
    assert results[0]["action_probabilities"] != results[1]["action_probabilities"]


def test_popularity_keyed_by_raw_id_reads_the_candidates_raw_ids():
    """A model whose popularity counts are keyed by raw item id: the pipeline keys the raw candidate ids. Two fits
    with the same follows on different items ("v42" or "v1") change the scores of "v42" only."""
    model = tiny_model(target_popularity_features=True, popularity_keys="raw_ids", occurrence_head=True)
    tokenizer = A2GenActionTokenizer.from_config(model.config)
    popularity = model.a2gen.extra_features.popularity_features
    occurs = torch.zeros(4, model.config.vocab_size)
    occurs[:3, model.config.action_id("follow")] = 1
    results = []
    for followed, other in (("v42", "v1"), ("v1", "v42")):
        keys = torch.from_numpy(tokenizer.item_keys([followed] * 3 + [other]))
        popularity.fit(keys, torch.zeros(4, dtype=torch.long), occurs)
        results.append(make_pipe(model, tokenizer=tokenizer)(REQUEST))
    assert results[0][0]["action_probabilities"] != results[1][0]["action_probabilities"]
    assert results[0][1]["action_probabilities"] == pytest.approx(results[1][1]["action_probabilities"], abs=1e-6)


def assert_same_timeline(timeline, expected):
    """Same actions; the same seconds up to float rounding (the ranker sums in another order than the batch)."""
    assert [action for action, _ in timeline] == [action for action, _ in expected]
    assert [seconds for _, seconds in timeline] == pytest.approx([seconds for _, seconds in expected], rel=1e-5)


def test_history_times_reach_the_model():
    pipe = make_pipe(tiny_model())
    early = pipe({**REQUEST, "history": [history_item("v7", like_at=1.0)]})
    late = pipe({**REQUEST, "history": [history_item("v7", like_at=15.0)]})
    assert early[0]["action_probabilities"] != late[0]["action_probabilities"]


def test_history_keeps_the_most_recent_items_like_the_collator():
    pipe = make_pipe(tiny_model())  # max_history_items=3
    history = [history_item(f"v{index}", like_at=1.0 + index) for index in range(5)]
    full = pipe({**REQUEST, "history": history})
    recent = pipe({**REQUEST, "history": history[-3:]})
    older = pipe({**REQUEST, "history": history[:3]})
    assert full == recent
    assert full != older


def test_empty_history_and_unknown_times():
    pipe = make_pipe(tiny_model())
    cold = pipe({**REQUEST, "history": []})
    untimed = pipe({**REQUEST, "history": [{"item": "v7", "events": [("start", None), ("like", None)]}]})
    # A later click on a history item, as logs hold (and the collator keeps): before, refused by the tokenizer.
    clicked_again = pipe({**REQUEST, "history": [{"item": "v7", "events": [("start", 0.0), ("start", 40.0)]}]})
    assert clicked_again[0]["action_probabilities"] != pipe({**REQUEST, "history": [
        {"item": "v7", "events": [("start", 0.0)]}]})[0]["action_probabilities"]  # fmt: skip
    for results in (cold, untimed, clicked_again):
        assert len(results) == 2
        for result in results:
            assert all(0.0 <= value <= 1.0 for value in result["action_probabilities"].values())
            assert all(math.isfinite(value) and value >= 0 for value in result["expected_seconds"].values())


def test_list_of_requests_gives_a_list_of_results():
    pipe = make_pipe(tiny_model())
    single = pipe(REQUEST)
    batched = pipe([REQUEST, {**REQUEST, "candidates": ["v1"]}])
    assert batched[0] == single
    assert [result["item"] for result in batched[1]] == ["v1"]


def test_loads_from_a_saved_folder(tmp_path):
    model = tiny_model()
    tokenizer = A2GenActionTokenizer.from_config(model.config)
    expected = make_pipe(model, tokenizer=tokenizer)(REQUEST)
    with_tokenizer, without_tokenizer = tmp_path / "with", tmp_path / "without"
    model.save_pretrained(with_tokenizer)
    tokenizer.save_pretrained(with_tokenizer)
    model.save_pretrained(without_tokenizer)

    loaded = pipeline("action-generation", model=str(with_tokenizer), side_feature_fields=FIELDS)
    assert isinstance(loaded.tokenizer, A2GenActionTokenizer)
    assert loaded(REQUEST) == expected
    # Without tokenizer files the pipeline builds the tokenizer from the config's identical settings.
    assert pipeline("action-generation", model=str(without_tokenizer), side_feature_fields=FIELDS)(REQUEST) == expected
    by_path = pipeline(
        "action-generation", model=str(without_tokenizer), tokenizer=str(with_tokenizer), side_feature_fields=FIELDS
    )
    assert by_path(REQUEST) == expected
    # A saved tokenizer that disagrees with the model is refused, not silently replaced.
    tokenizer.time_log_mean = 0.0
    tokenizer.save_pretrained(without_tokenizer)
    with pytest.raises(ValueError, match="time_log_mean: tokenizer has 0.0, config has 1.5"):
        pipeline("action-generation", model=str(without_tokenizer))


def test_side_feature_fields_can_be_given_per_call():
    model = tiny_model()
    pipe = pipeline("action-generation", model=model)
    assert pipe(REQUEST, side_feature_fields=FIELDS) == make_pipe(model)(REQUEST)
    # A request without side features needs no field names.
    assert len(pipe({**REQUEST, "history": [history_item("v7")], "candidates": ["v42"]})) == 1


@pytest.mark.parametrize(
    "request_, message",
    [
        ({**REQUEST, "candidates": []}, "candidates must be a non-empty list"),
        ({**REQUEST, "candidates": "v42"}, "candidates must be a non-empty list"),
        ({key: REQUEST[key] for key in ("user", "history")}, r"missing \['candidates'\]"),
        ({**REQUEST, "items": []}, r"unknown \['items'\]"),
        ({**REQUEST, "user": None}, "user must be a raw user id"),
        (
            {**REQUEST, "history": [{"item": "v7", "events": [("start", 0.0), ("like", 9.0), ("leave", 3.0)]}]},
            r"history\[0\] \(item 'v7'\): Events are out of time order",
        ),
        (
            {**REQUEST, "history": [{"item": "v7", "events": [("start", 0.0), ("dislike", 1.0)]}]},
            r"history\[0\] \(item 'v7'\): Unknown action 'dislike'",
        ),
        (
            {**REQUEST, "history": [{"item": "v7", "events": [("like", 1.0)]}]},
            r"history\[0\].*begins with 'like', not with the start action",
        ),
        ({**REQUEST, "history": [{"item": "v7", "events": [("start", -1.0)]}]}, r"history\[0\]"),
        ({**REQUEST, "history": [{"item": "v7"}]}, r"history\[0\] has missing \['events'\]"),
        ({**REQUEST, "candidates": [{"item": "v1", "side_features": {"color": "red"}}]}, r"unknown side feature"),
        ({**REQUEST, "candidates": [{"id": "v1"}]}, r"candidates\[0\] has missing \['item'\]"),
        ({**REQUEST, "candidates": [["v1"]]}, r"candidates\[0\]: the item id must be a raw id"),
        # Ids the tokenizer cannot hash (before: hashed by str(), NaN as "nan", an object by its address)
        ({**REQUEST, "candidates": ["v1", float("nan")]}, r"candidates\[1\]: Cannot hash the id nan: NaN / inf is no id"),
        ({**REQUEST, "candidates": [object()]}, r"candidates\[0\]: Cannot hash the id .* of type object"),
        ({**REQUEST, "candidates": [True]}, r"candidates\[0\]: Cannot hash the id True: a bool is no id"),
        ({**REQUEST, "user": float("nan")}, r"user: Cannot hash the id nan"),
        ({**REQUEST, "candidates": [{"item": "v1", "side_features": {"category": [1]}}]},
         r"candidates\[0\]\.category: Cannot hash the id \[1\] of type list"),
    ],
)
def test_malformed_requests_raise_clear_errors(request_, message):
    with pytest.raises(ActionRequestError, match=message):
        make_pipe(tiny_model())(request_)


def test_configuration_errors():
    model = tiny_model()
    with pytest.raises(ActionRequestError, match="pass side_feature_fields"):
        pipeline("action-generation", model=model)(REQUEST)
    with pytest.raises(ActionRequestError, match="names 1 fields, but the model reads 2"):
        pipeline("action-generation", model=model, side_feature_fields=["category"])(REQUEST)
    with pytest.raises(ActionRequestError, match="reads no item side features"):
        pipeline("action-generation", model=tiny_model(num_item_side_features=0))(REQUEST)
    with pytest.raises(ValueError, match="batch_size=2 is not supported"):
        make_pipe(model)([REQUEST, REQUEST], batch_size=2)
    with pytest.raises(TypeError, match=r"unknown parameters \['top_n'\]"):
        make_pipe(model)(REQUEST, top_n=3)
    with pytest.raises(ValueError, match="top_k=3 needs rank_by"):
        make_pipe(model)(REQUEST, top_k=3)
    with pytest.raises(ValueError, match=r"top_k must be a positive int .* got 0"):
        make_pipe(model)(REQUEST, rank_by="like", top_k=0)
    with pytest.raises(ValueError, match=r"rank_by names unknown action\(s\) \['dislike'\]"):
        make_pipe(model)(REQUEST, rank_by="dislike")
    with pytest.raises(ValueError, match="rank_by weight of 'like' must be finite, got nan"):
        make_pipe(model)(REQUEST, rank_by={"like": float("nan")})
    with pytest.raises(TypeError, match="rank_by weight of 'like' must be a number, got str '1'"):
        make_pipe(model)(REQUEST, rank_by={"like": "1"})
    with pytest.raises(ValueError, match=r"rank_by names the start action 'start'.*\['like', 'follow'"):
        make_pipe(model)(REQUEST, rank_by="start")
    other = A2GenActionTokenizer.from_config(model.config)
    other.time_log_mean = 0.0
    with pytest.raises(ValueError, match="time_log_mean"):
        make_pipe(model, tokenizer=other)
    with pytest.raises(ValueError, match="user side lists"):
        make_pipe(tiny_model(num_user_side_lists=2))


def test_missing_none_and_empty_side_features_are_unknown():
    pipe = make_pipe(tiny_model())

    def score(side_features):
        return pipe({**REQUEST, "candidates": [{"item": "v43", "side_features": side_features}]})

    omitted = score({"category": "topic_1"})
    assert score({"category": "topic_1", "opening_topic": ""}) == omitted
    assert score({"category": "topic_1", "opening_topic": None}) == omitted
    assert score({"category": "topic_1", "opening_topic": "topic_2"}) != omitted


# ---------------------------------------------------------------------------------------------------------------
# Ranking: one user, C candidates through the ranker; rank_by, top_k, generation options; a model id alone

CANDIDATES = ["v42", "v43", "v44", {"item": "v45", "side_features": {"category": "topic_2"}}, "v46", "v47"]


def test_ranks_by_an_action_or_a_weighted_score_and_cuts_to_top_k():
    pipe = make_pipe(tiny_model())
    request = {**REQUEST, "candidates": CANDIDATES}
    unranked = pipe(request)
    assert [result["item"] for result in unranked] == ["v42", "v43", "v44", "v45", "v46", "v47"]
    like = {result["item"]: result["action_probabilities"]["like"] for result in unranked}
    best = sorted(like, key=like.get, reverse=True)
    ranked = pipe(request, rank_by="like", top_k=3)
    assert [result["item"] for result in ranked] == best[:3]
    assert [result["score"] for result in ranked] == pytest.approx([like[item] for item in best[:3]])
    assert ranked[0]["timeline"][0] == ("start", 0.0)
    weights = {"like": 1.0, "leave": -2.0, "follow": 3.0}
    weighted = pipe(request, rank_by=weights)
    expected = {
        result["item"]: sum(weight * result["action_probabilities"][name] for name, weight in weights.items())
        for result in unranked
    }
    assert [result["item"] for result in weighted] == sorted(expected, key=expected.get, reverse=True)
    assert [result["score"] for result in weighted] == pytest.approx(sorted(expected.values(), reverse=True))


def test_scores_candidates_through_the_ranker_with_one_encoding_of_the_history(monkeypatch):
    from a2gen_hf.ranking import A2GenRanker

    model = tiny_model()
    pipe = make_pipe(model)
    expected = pipe({**REQUEST, "candidates": CANDIDATES})
    encodings = []
    encode = A2GenRanker.encode_user
    monkeypatch.setattr(A2GenRanker, "encode_user", lambda self, **inputs: encodings.append(inputs) or encode(self, **inputs))

    def refuse(*args, **kwargs):
        raise AssertionError("the pipeline must not run the full model on a repeated history")

    monkeypatch.setattr(model, "predict_actions", refuse)
    monkeypatch.setattr(model, "forward", refuse)
    assert pipe({**REQUEST, "candidates": CANDIDATES}) == expected
    assert len(encodings) == 1 and encodings[0]["history_item_ids"].shape[0] == 1


def test_generation_options_reach_generate():
    pipe = make_pipe(tiny_model())
    torch.manual_seed(0)
    sampled = pipe(REQUEST, do_sample=True, num_return_sequences=3, max_new_tokens=2)
    for result in sampled:
        assert len(result["timelines"]) == 3 and result["timeline"] == result["timelines"][0]
        assert all(len(timeline) <= 3 and timeline[0] == ("start", 0.0) for timeline in result["timelines"])
    beams = pipe(REQUEST, num_beams=2, generate_kwargs={"length_penalty": 0.5})
    assert all("timelines" not in result for result in beams)
    scores_only = pipe(REQUEST, timelines=False)
    assert all("timeline" not in result for result in scores_only)
    assert [r["action_probabilities"] for r in scores_only] == [r["action_probabilities"] for r in pipe(REQUEST)]
    with pytest.raises(ValueError, match="max_new_tokens"):
        pipe(REQUEST, max_new_tokens=99)
    # Before: accepted and ignored (max_new_tokens=99 is refused when timelines are generated).
    with pytest.raises(ValueError, match=r"Generation options \['max_new_tokens', 'num_beams'\] with timelines=False"):
        pipe(REQUEST, timelines=False, num_beams=3, max_new_tokens=99)
    with pytest.raises(ValueError, match="with timelines=False"):
        pipe(REQUEST, timelines=False, generate_kwargs={"do_sample": True})


def test_generate_kwargs_cannot_take_the_times_away_and_a_generation_config_is_not_mixed(monkeypatch):
    """From a probe: return_dict_in_generate=False in generate_kwargs crashed ('Tensor' object has no attribute
    'sequences'); a generation_config made transformers warn of mixing it with the pipeline's own keyword."""
    from transformers import GenerationConfig

    pipe = make_pipe(tiny_model())
    with pytest.raises(ValueError, match="return_dict_in_generate=False: the pipeline reads the generated times"):
        pipe(REQUEST, generate_kwargs={"return_dict_in_generate": False})
    calls, generate = [], pipe.ranker.generate
    monkeypatch.setattr(pipe.ranker, "generate", lambda *args, **kwargs: calls.append(kwargs) or generate(*args, **kwargs))
    config = GenerationConfig(max_new_tokens=2)
    results = pipe(REQUEST, generation_config=config)
    assert all(len(result["timeline"]) <= 3 for result in results)  # honoured: at most start + 2 actions
    assert not config.return_dict_in_generate  # the user's config is not changed
    # No generation keyword beside the config (transformers warns of "generation_config together with
    # generation-related arguments"): the pipeline's own return_dict_in_generate goes on a copy of the config.
    assert "return_dict_in_generate" not in calls[0] and calls[0]["generation_config"].return_dict_in_generate
    assert pipe(REQUEST, generate_kwargs={"return_dict_in_generate": True}) == pipe(REQUEST)


def test_generate_outputs_asked_for_are_returned_per_candidate():
    """From a probe (session 28): output_scores / output_logits / output_attentions / output_hidden_states were
    accepted and dropped. They come back per candidate, as lists (as transformers' text-generation pipeline returns
    them per record); a generation_config holding return_dict_in_generate=False is refused as the keyword is."""
    from transformers import GenerationConfig

    pipe = make_pipe(tiny_model("eag"))
    asked = dict(output_scores=True, output_logits=True, output_attentions=True, output_hidden_states=True)
    inputs = pipe.preprocess(REQUEST, side_feature_fields=FIELDS)
    state = pipe.ranker.encode_user(**inputs["user"])
    strategies = (({"do_sample": True, "num_return_sequences": 2}, 2), ({"num_beams": 3, "num_return_sequences": 2}, 3))
    for options, rows in strategies:  # rows: the candidate's sequences (sampling) or beams
        torch.manual_seed(0)
        results = pipe(REQUEST, **options, generate_kwargs=asked)
        torch.manual_seed(0)
        generated = pipe.ranker.generate(state, inputs["item_ids"], inputs["item_side_ids"], **options, **asked)
        for candidate, result in enumerate(results):
            block = slice(candidate * rows, (candidate + 1) * rows)  # the candidate's sequences or beams
            for name in ("scores", "logits"):
                torch.testing.assert_close(torch.tensor(result[name]), torch.stack(getattr(generated, name), 1)[block])
            for name in ("attentions", "hidden_states"):
                assert len(result[name]) == rows and len(result[name][0]) == len(getattr(generated, name))
                for step, tensors in enumerate(getattr(generated, name)):
                    for row in range(rows):
                        torch.testing.assert_close(torch.tensor(result[name][row][step][0]), tensors[0][block][row])
            if "num_beams" in options:  # per returned sequence; the beams counted from 0 within the candidate
                returned = slice(candidate * 2, (candidate + 1) * 2)
                torch.testing.assert_close(torch.tensor(result["sequences_scores"]), generated.sequences_scores[returned])
                indices = generated.beam_indices[returned]
                assert result["beam_indices"] == torch.where(indices >= 0, indices - candidate * rows, indices).tolist()
            else:
                assert "beam_indices" not in result and "sequences_scores" not in result
    plain = pipe(REQUEST, num_beams=3)  # nothing asked: nothing added
    assert all(set(result) == {"item", "action_probabilities", "expected_seconds", "timeline"} for result in plain)
    with pytest.raises(ValueError, match="return_dict_in_generate=False: the pipeline reads the generated times"):
        pipe(REQUEST, generation_config=GenerationConfig(return_dict_in_generate=False))


def test_side_feature_fields_come_from_the_saved_tokenizer(tmp_path):
    model = tiny_model()
    tokenizer = A2GenActionTokenizer.from_config(model.config, side_feature_fields=FIELDS)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = pipeline("action-generation", model=str(tmp_path))
    assert loaded.tokenizer.side_feature_fields == FIELDS
    assert loaded(REQUEST) == make_pipe(model, tokenizer=tokenizer)(REQUEST)
    wrong = A2GenActionTokenizer.from_config(model.config, side_feature_fields=["category"])
    with pytest.raises(ValueError, match=r"names 1 side-feature fields \['category'\], but the model reads 2"):
        pipeline("action-generation", model=model, tokenizer=wrong)


def test_simulated_data_saves_its_side_feature_fields(simulated_data_dir):
    tokenizer = A2GenActionTokenizer.from_pretrained(simulated_data_dir / "tokenizer")
    assert tokenizer.side_feature_fields == ["category", "opening_topic"]


PIPELINE_SCRIPT = """
sys.path.insert(0, os.environ["A2GEN_SOURCE"])  # the client runs with -I: this checkout's package, not another one
from transformers import pipeline

import a2gen_hf  # registers the task (transformers imported first, as the docs do)
repo_id, request = sys.argv[2], json.loads(sys.argv[3])
for remote in (False, True):
    pipe = pipeline("action-generation", model=repo_id, trust_remote_code=remote)
    results = pipe(request, rank_by="like", top_k=2)
    print("RESULTS", json.dumps({"remote": remote, "model_module": type(pipe.model).__module__,
                                 "package": os.path.dirname(os.path.dirname(a2gen_hf.__file__)),
                                 "fields": pipe.tokenizer.side_feature_fields, "results": results}))
"""


def test_pipeline_from_a_hub_model_id_alone_with_and_without_remote_code(tmp_path, monkeypatch):
    """A pushed checkpoint ranks from its id: the tokenizer and the side-feature field names come from the repo."""
    from hub_server import HubServer
    from huggingface_hub import constants
    from test_hub import run_client

    from a2gen_hf.hub import push_checkpoint

    model = tiny_model()
    tokenizer = A2GenActionTokenizer.from_config(model.config, side_feature_fields=FIELDS)
    request = {**REQUEST, "candidates": CANDIDATES}
    expected = json.loads(json.dumps(pipeline("action-generation", model=model, tokenizer=tokenizer)(
        request, rank_by="like", top_k=2)))
    with HubServer(tmp_path / "hub") as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        repo_id = push_checkpoint(model, "a2gen-pipeline", tokenizer=tokenizer, token=hub.token).repo_url.repo_id
        source = str(Path(a2gen_hf.__file__).parents[1])
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "home"), "A2GEN_SOURCE": source}
        result = run_client(PIPELINE_SCRIPT, tmp_path, repo_id, json.dumps(request), env=env)
    runs = [json.loads(line[len("RESULTS "):]) for line in result.stdout.splitlines() if line.startswith("RESULTS ")]
    assert all(run["package"] == source for run in runs)
    assert [run["remote"] for run in runs] == [False, True]
    # The task is the installed package's: with trust_remote_code=True too, its registered classes load the model.
    assert all(run["model_module"] == "a2gen_hf.modeling_a2gen" for run in runs)
    for run in runs:
        assert run["fields"] == FIELDS
        assert [r["item"] for r in run["results"]] == [r["item"] for r in expected]
        for got, want in zip(run["results"], expected):
            assert got["score"] == pytest.approx(want["score"], abs=1e-6)
            assert got["action_probabilities"] == pytest.approx(want["action_probabilities"], abs=1e-6)


def test_no_requests_a_tuple_and_an_iterator_of_requests():
    """[] is no requests (before: transformers' IndexError), a tuple a batch as a list is (before: refused as "a
    request ... got tuple"), and an iterator is streamed as transformers streams a generator (before: refused)."""
    pipe = make_pipe(tiny_model())
    assert pipe([]) == [] and pipe(()) == []
    expected = pipe([REQUEST, REQUEST])
    assert pipe((REQUEST, REQUEST)) == expected
    assert list(pipe(iter([REQUEST, REQUEST]))) == expected
    assert list(pipe(request for request in [REQUEST, REQUEST])) == expected


def test_rank_by_takes_numpy_weights_as_numbers():
    """Weights read from numpy or pandas (np.float32, np.int64) rank as the same Python numbers do (before: refused
    as "must be a finite number, got np.float32(1.0)")."""
    pipe = make_pipe(tiny_model())
    expected = pipe(REQUEST, rank_by={"like": 1.0, "follow": 2})
    assert pipe(REQUEST, rank_by={"like": np.float32(1.0), "follow": np.int64(2)}) == expected


def test_generate_timelines_refuses_a_tokenizer_that_does_not_match_the_model():
    """Another tokenizer's time statistics or action names decoded the timelines silently wrong (other seconds, other
    action names); it is refused naming the fields, as the pipeline refuses it."""
    from conftest import history_inputs, make_batch, tiny_config

    from a2gen_hf import generate_timelines

    model = build_tiny_model("iag", time_log_mean=2.0, time_log_std=1.5)
    inputs = history_inputs(make_batch(model.config, 2))
    assert len(generate_timelines(model, A2GenActionTokenizer.from_config(model.config), inputs)) == 2
    other_times = A2GenActionTokenizer.from_config(tiny_config(time_log_mean=5.0, time_log_std=0.5))
    with pytest.raises(ValueError, match=r"does not match the model config:\n  - time_log_mean: tokenizer has 5\.0"):
        generate_timelines(model, other_times, inputs)
    renamed = A2GenActionTokenizer.from_config(tiny_config(
        action_names=["start", "buy", "cart", "fav", "share", "leave"], time_log_mean=2.0, time_log_std=1.5))
    with pytest.raises(ValueError, match=r"action_names: tokenizer has \['start', 'buy'"):
        generate_timelines(model, renamed, inputs)
