"""The history sessions' times (``history_item_ages``, ``history_time_features``) on the inference path: generate()
and predict_actions, the ranker, the tokenizer's encode_histories (triples and now=) and the pipeline's request
times. Each path gives the model the same ages as a batch that carries them, and a time-aware model without them is
refused by name."""

import copy
import datetime

import numpy as np
import pytest
import torch
from conftest import build_tiny_model, history_inputs, make_batch
from test_pipeline import REQUEST, history_item, make_pipe
from test_pipeline import tiny_model as pipeline_model
from test_serving import assert_same_prediction, candidates, naive_prediction, one_user

from a2gen_hf import A2GenActionTokenizer, ActionRequestError
from a2gen_hf.data import A2GenDataCollator
from a2gen_hf.ranking import USER_INPUT_NAMES, A2GenRanker

TIME_FEATURES = dict(history_count_features=True, history_time_features=True)
DAY = 86400.0


def timed_model(generator="iag", **overrides):
    return build_tiny_model(generator, **{**TIME_FEATURES, **overrides})


def ages_for(batch, seed=0, scale=3 * DAY):
    """Random ages (B, N) in seconds: some within the hour, some days old."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch["history_item_ids"].shape, generator=generator) * scale


# ------------------------------------------------------------------------------------------------------------------
# generate() and predict_actions


GENERATION_MODES = {
    "greedy": dict(do_sample=False, num_beams=1),
    "sample": dict(do_sample=True, num_beams=1, num_return_sequences=2),
    "beams": dict(do_sample=False, num_beams=3, num_return_sequences=2),
    "beam-sample": dict(do_sample=True, num_beams=2),
}


@pytest.mark.parametrize("mode", list(GENERATION_MODES))
@pytest.mark.parametrize("generator", ["iag", "eag"])
def test_generate_reads_history_item_ages(generator, mode):
    """generate(history_item_ages=...) decodes from the context the forward gives with those ages (before: refused as
    an unknown argument)."""
    model = timed_model(generator)
    batch = history_inputs(make_batch(model.config, batch_size=3))
    ages = ages_for(batch)
    options = dict(GENERATION_MODES[mode], max_new_tokens=model.config.max_actions, return_dict_in_generate=True)
    torch.manual_seed(7)
    generated = model.generate(**batch, history_item_ages=ages, **options)
    with torch.no_grad():
        context = model.a2gen(**batch, history_item_ages=ages, return_dict=True).generation_context
    torch.manual_seed(7)
    expected = model.generate_from_context(context, **options)
    torch.testing.assert_close(generated.sequences, expected.sequences)
    torch.testing.assert_close(generated.times, expected.times)


@pytest.mark.parametrize("generator", ["iag", "eag"])
def test_predict_actions_reads_history_item_ages_and_refuses_their_absence(generator):
    model = timed_model(generator)
    batch = history_inputs(make_batch(model.config, batch_size=3))
    recent = model.predict_actions(**batch, history_item_ages=ages_for(batch, scale=600.0))
    old = model.predict_actions(**batch, history_item_ages=ages_for(batch, scale=30 * DAY))
    assert (recent.action_probabilities - old.action_probabilities).abs().max() > 1e-4
    for call in (model.predict_actions, model.generate):
        with pytest.raises(ValueError, match="history_item_ages"):
            call(**batch)


def test_generate_keeps_the_ages_seconds_in_a_bfloat16_model():
    """A bfloat16 model reads the ages as its forward does (float32 seconds), not rounded to bfloat16 (8 bits: a day
    old item would read minutes off)."""
    model = timed_model("iag").to(torch.bfloat16)
    batch = history_inputs(make_batch(model.config, batch_size=3))
    batch["history_action_times"] = batch["history_action_times"].to(torch.bfloat16)
    ages = ages_for(batch) + 0.37  # no bfloat16 holds these
    encoded = model._encode_for_generation(dict(batch, history_item_ages=ages))
    with torch.no_grad():
        expected = model.a2gen(**batch, history_item_ages=ages, return_dict=True)
    torch.testing.assert_close(encoded.generation_context, expected.generation_context, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------------------------
# The ranker


def timed_user(config, padding=None, seed=0):
    user = one_user(config, padding, seed)
    user["history_item_ages"] = ages_for(user, seed)
    return user


@pytest.mark.parametrize("padding", [None, "left", "right"])
@pytest.mark.parametrize("generator", ["iag", "eag"])
def test_ranker_with_ages_equals_predict_actions(generator, padding):
    model = timed_model(generator)
    user = timed_user(model.config, padding)
    item_ids, item_side_ids = candidates(model.config, 20)
    ranker = A2GenRanker(model)
    state = ranker.encode_user(**user)
    assert state.history["history_item_ages"].shape == (1, 5)  # the real items only
    assert_same_prediction(
        ranker.score_candidates(state, item_ids, item_side_ids), naive_prediction(model, user, item_ids, item_side_ids)
    )


def test_ranker_ages_change_the_scores_and_generation():
    model = timed_model("iag")
    user = timed_user(model.config)
    item_ids, item_side_ids = candidates(model.config, 10)
    ranker = A2GenRanker(model)
    older = dict(user, history_item_ages=user["history_item_ages"] + 20 * DAY)
    scores = ranker.score_candidates(ranker.encode_user(**user), item_ids, item_side_ids)
    older_scores = ranker.score_candidates(ranker.encode_user(**older), item_ids, item_side_ids)
    assert (scores.action_probabilities - older_scores.action_probabilities).abs().max() > 1e-4
    assert_same_prediction(older_scores, naive_prediction(model, older, item_ids, item_side_ids))

    generated = ranker.generate(ranker.encode_user(**user), item_ids, item_side_ids, max_new_tokens=3)
    repeated = {name: value.expand(10, *value.shape[1:]) for name, value in user.items()}
    expected = model.generate(**repeated, item_ids=item_ids, item_side_ids=item_side_ids, max_new_tokens=3,
                              return_dict_in_generate=True)  # fmt: skip
    torch.testing.assert_close(generated.sequences, expected.sequences)


def test_ranker_cuts_the_ages_with_the_history():
    """Beyond max_history_items real items, the ranker keeps the most recent items' ages, as the collator does."""
    model = timed_model("iag", max_history_items=3)
    user = timed_user(model.config)  # 5 real items
    item_ids, item_side_ids = candidates(model.config, 8)
    ranker = A2GenRanker(model)
    state = ranker.encode_user(**user)
    torch.testing.assert_close(state.history["history_item_ages"], user["history_item_ages"][:, -3:])
    kept = {name: value[:, -3:] if name.startswith("history") else value for name, value in user.items()}
    assert_same_prediction(
        ranker.score_candidates(state, item_ids, item_side_ids), naive_prediction(model, kept, item_ids, item_side_ids)
    )


def test_ranker_refuses_a_time_aware_user_without_ages():
    model = timed_model("iag")
    user = timed_user(model.config)
    del user["history_item_ages"]
    with pytest.raises(ValueError, match=r"history_item_ages \(1, N\).*encode_histories.*session_start"):
        A2GenRanker(model).encode_user(**user)


@pytest.mark.parametrize(
    "ages, error",
    [
        (torch.full((1, 5), -1.0), "negative"),
        (torch.tensor([[1.0, float("nan"), 3.0, 4.0, 5.0]]), "NaN"),
        (torch.zeros(1, 4), r"history_item_ages must have shape \(1, 5\)"),
        (torch.ones(1, 5, dtype=torch.bool), "must hold seconds"),
    ],
)
def test_ranker_refuses_bad_ages(ages, error):
    model = timed_model("iag")
    user = dict(timed_user(model.config), history_item_ages=ages)
    with pytest.raises((ValueError, TypeError), match=error):
        A2GenRanker(model).encode_user(**user)


def test_ranker_of_a_model_without_time_features_ignores_ages():
    model = build_tiny_model("iag", history_count_features=True)
    user = timed_user(model.config)
    item_ids, item_side_ids = candidates(model.config, 6)
    ranker = A2GenRanker(model)
    with_ages = ranker.score_candidates(ranker.encode_user(**user), item_ids, item_side_ids)
    without = {name: value for name, value in user.items() if name != "history_item_ages"}
    plain = ranker.score_candidates(ranker.encode_user(**without), item_ids, item_side_ids)
    torch.testing.assert_close(with_ages.action_probabilities, plain.action_probabilities)
    assert "history_item_ages" in USER_INPUT_NAMES


# ------------------------------------------------------------------------------------------------------------------
# The tokenizer


@pytest.fixture
def tokenizer():
    return A2GenActionTokenizer(time_log_mean=1.5, time_log_std=1.1)


TIMELINE = [("start", 0.0), ("like", 2.0), ("leave", 18.0)]
NOW = 1_700_086_400


def test_encode_histories_gives_ages_laid_out_as_the_items(tokenizer):
    histories = [
        [("v1", TIMELINE, NOW - 3 * DAY), ("v2", TIMELINE, NOW - DAY), ("v3", TIMELINE[:2], NOW - 60)],
        [("v4", TIMELINE, NOW - 10)],
        [],
    ]
    encoded = tokenizer.encode_histories(histories, max_history_items=2, return_tensors="pt", now=NOW)
    assert encoded["history_item_ages"].dtype == torch.float32
    torch.testing.assert_close(
        encoded["history_item_ages"], torch.tensor([[DAY, 60.0], [10.0, 0.0], [0.0, 0.0]])
    )  # the most recent items, right-padded with 0 like history_item_ids
    assert encoded["history_mask"].tolist() == [[1, 1], [1, 0], [0, 0]]
    # One request time per example; Unix seconds far beyond float32's exact range still give exact ages, in whole
    # seconds as the collator makes them from prepared data (both times floored).
    per_example = tokenizer.encode_histories(
        [[("v1", TIMELINE, NOW - 5.5)], [("v1", TIMELINE, NOW)]], now=[NOW, NOW + 7.25]
    )
    assert per_example["history_item_ages"] == [[6.0], [7.0]]
    with pytest.raises(ValueError, match="beyond 1e\\+11 s .* not milliseconds"):
        tokenizer.encode_histories([[("v1", TIMELINE, NOW - 5)]], now=NOW * 1000)
    # Without triples: the inputs as before, no ages.
    assert "history_item_ages" not in tokenizer.encode_histories([[("v1", TIMELINE)]], return_tensors="pt")
    with pytest.raises(TypeError):  # now is keyword-only
        tokenizer.encode_histories([[("v1", TIMELINE, NOW - 5)]], None, None, None, NOW)


def test_encode_histories_ages_equal_the_collators(tokenizer):
    """The same history as triples and as an example row of the data (whole Unix seconds): the same ages."""
    starts = [NOW - 3 * 3600, NOW - 3600, NOW - 5]
    items = ["v1", "v2", "v3"]
    encoded = tokenizer.encode_histories([list(zip(items, [TIMELINE] * 3, starts))], max_history_items=2,
                                         return_tensors="pt", now=NOW)  # fmt: skip
    row = {
        "user_id": 1,
        "item_id": 1,
        "history_item_ids": [tokenizer.hash_item(item) for item in items],
        "history_action_ids": [tokenizer.encode_timeline(TIMELINE, repeated_start=True)["action_ids"]] * 3,
        "history_action_seconds": [[seconds for _, seconds in TIMELINE]] * 3,
        "action_ids": [tokenizer.start_action_id],
        "action_seconds": [0.0],
        "session_start": NOW,
        "history_session_starts": starts,
    }
    collator = A2GenDataCollator(tokenizer, max_history_items=2, max_events_per_item=4, max_actions=5, history_ages=True)
    batch = collator([row])
    for name in ("history_item_ids", "history_mask", "history_item_ages"):
        torch.testing.assert_close(encoded[name], batch[name], check_dtype=False)


@pytest.mark.parametrize(
    "histories, now, error",
    [
        ([[("v1", TIMELINE, NOW - 5), ("v2", TIMELINE)]], NOW, r"History 0, item 1: an \(item, timeline\) pair where"),
        ([[("v1", TIMELINE)], [("v2", TIMELINE, NOW - 5)]], NOW, "History 0, item 0: an \\(item, timeline\\) pair, but now"),
        ([[("v1", TIMELINE)], [("v2", TIMELINE, NOW - 5)]], None, r"History 1, item 0: an \(item, timeline, session_start\) triple where"),
        ([[("v1", TIMELINE, NOW - 5)]], None, r"History 0, item 0: .*triple, but no now="),
        ([[("v1", TIMELINE)]], NOW, r"pair, but now=\.\.\. was given"),
        ([[("v1", TIMELINE, NOW + 1)]], NOW, "History 0, item 0: session_start=.* is after now="),
        ([[("v1", TIMELINE, float("nan"))]], NOW, "History 0, item 0: session_start must be a finite number"),
        ([[("v1", TIMELINE, float("inf"))]], NOW, "History 0, item 0: session_start must be a finite number"),
        ([[("v1", TIMELINE, "yesterday")]], NOW, "History 0, item 0: session_start must be a number"),
        ([[("v1", TIMELINE, True)]], NOW, "History 0, item 0: session_start must be a number"),
        ([[("v1", TIMELINE, NOW - 5)]], float("nan"), "now must be a finite number"),
        ([[("v1", TIMELINE, NOW - 5)]], "now", "now must be a number of Unix seconds or a timezone-aware datetime, got str 'now'; convert a date"),
        ([[("v1", TIMELINE, NOW - 5)]], "2023-11-16T00:00:00Z", r"now must .*got str .*int\(datetime\.fromisoformat\(text\)\.timestamp\(\)\)"),
        ([[("v1", TIMELINE, NOW - 5)]], datetime.datetime(2023, 11, 16), r"now must .*naive datetime .*value\.replace\(tzinfo=datetime\.timezone\.utc\)"),
        ([[("v1", TIMELINE, NOW - 5)]], np.datetime64("2023-11-16T00:00:00"), r"now must .*datetime64 .*int\(np\.datetime64\(value, 's'\)\.astype\(int\)\)"),
        ([[("v1", TIMELINE, NOW - 5)]], np.array(["2023-11-16"], dtype="datetime64[ns]"), r"now must .*datetime64 array.*astype\('datetime64\[s\]'\)"),
        ([[("v1", TIMELINE, NOW - 5)]], datetime.date(2023, 11, 16), "now must .*a date has no time of day"),
        ([[("v1", TIMELINE, datetime.datetime(2023, 11, 15))]], NOW, "History 0, item 0: session_start must .*naive datetime"),
        ([[("v1", TIMELINE, "2023-11-15")]], NOW, r"History 0, item 0: session_start must .*fromisoformat"),
        ([[("v1", TIMELINE, NOW - 5)]], datetime.datetime(6000, 1, 1, tzinfo=datetime.UTC), r"now=6000-01-01T00:00:00\+00:00 lies after the year 5138.*check the date"),
        ([[("v1", TIMELINE, NOW - 5)]], np.float32(NOW), r"now=\d+ is a float32 number, which holds a Unix time of this size only to (64|128) s: give it as an int or a float64"),
        ([[("v1", TIMELINE, NOW - 5)]], np.array([NOW], dtype=np.float32), r"now\[0\]=\d+ is a float32 number"),
        ([[("v1", TIMELINE, torch.tensor(float(NOW - 5)))]], NOW, r"History 0, item 0: session_start=\d+ is a float32 number.*torch\.tensor\(1\.7e9\) makes a float32"),
        ([[("v1", TIMELINE, NOW - 5)]], [NOW, NOW], "now holds 2 times for 1 histories"),
        ([[("v1", TIMELINE, NOW - 5, "extra")]], NOW, "expected an \\(item, timeline\\) pair or an"),
    ],
)  # fmt: skip
def test_encode_histories_refuses_bad_session_times(tokenizer, histories, now, error):
    with pytest.raises(ValueError, match=error):
        tokenizer.encode_histories(histories, now=now)


def utc(seconds, hours=0):
    """Unix ``seconds`` as a timezone-aware datetime, in the zone ``hours`` east of UTC."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone(datetime.timedelta(hours=hours)))


def test_encode_histories_takes_timezone_aware_datetimes(tokenizer):
    """A timezone-aware datetime names one instant: it is read as its Unix seconds (fractions floored like numbers),
    whatever its zone."""
    starts = [NOW - DAY + 0.4, NOW - 60]
    numbers = tokenizer.encode_histories([[("v1", TIMELINE, starts[0]), ("v2", TIMELINE, starts[1])]], now=NOW + 0.9)
    dated = tokenizer.encode_histories(
        [[("v1", TIMELINE, utc(starts[0], hours=8)), ("v2", TIMELINE, utc(starts[1], hours=-5))]], now=utc(NOW + 0.9)
    )
    assert numbers["history_item_ages"] == [[DAY, 60.0]]
    assert dated["history_item_ages"] == numbers["history_item_ages"]
    per_example = tokenizer.encode_histories([[("v1", TIMELINE, NOW - 5)]] * 2, now=[utc(NOW), NOW + 5])
    assert per_example["history_item_ages"] == [[5.0], [10.0]]
    with pytest.raises(ValueError, match="session_start=.* is after now="):  # still checked as numbers
        tokenizer.encode_histories([[("v1", TIMELINE, utc(NOW + 3600, hours=2))]], now=utc(NOW))


def test_encode_histories_feeds_a_time_aware_model(tokenizer):
    model = timed_model("iag", num_item_side_features=0, num_user_side_lists=0)
    tokenizer = A2GenActionTokenizer.from_config(model.config)
    histories = [[("v1", TIMELINE, NOW - DAY), ("v2", TIMELINE, NOW - 60)], [("v3", TIMELINE, NOW - 3600)]]
    inputs = tokenizer.encode_histories(histories, return_tensors="pt", now=NOW)
    ids = dict(user_ids=torch.from_numpy(tokenizer.hash_users(["u1", "u2"])),
               item_ids=torch.from_numpy(tokenizer.hash_items(["v9", "v9"])))  # fmt: skip
    prediction = model.predict_actions(**ids, **inputs)
    assert prediction.action_probabilities.shape == (2, model.config.vocab_size)
    model.generate(**ids, **inputs, num_beams=2, max_new_tokens=2)


# ------------------------------------------------------------------------------------------------------------------
# The pipeline


def timed_request(time=NOW, starts=(NOW - 2 * DAY, NOW - 600)):
    request = copy.deepcopy(REQUEST)
    request["time"] = time
    for entry, start in zip(request["history"], starts):
        entry["session_start"] = start
    return request


@pytest.mark.parametrize("generator", ["iag", "eag"])
def test_pipeline_request_times_equal_predict_actions(generator):
    model = pipeline_model(generator, **TIME_FEATURES)
    tokenizer = A2GenActionTokenizer.from_config(model.config)
    pipe = make_pipe(model, tokenizer=tokenizer)
    request = timed_request(time=NOW + 0.9, starts=(NOW - 2 * DAY + 0.4, NOW - 600))  # fractions: floored
    results = pipe(request)
    batch = pipe.collator([pipe_row(pipe, request, candidate) for candidate in range(2)])
    assert batch["history_item_ages"].tolist() == [[2 * DAY, 600.0]] * 2
    inputs = {name: value.to(model.device) for name, value in batch.items() if not name.startswith("label")}
    expected = model.predict_actions(**inputs)
    generated = model.generate(**inputs, max_new_tokens=model.config.max_actions, return_dict_in_generate=True)
    for row, result in enumerate(results):
        for name, probability in result["action_probabilities"].items():
            action_id = model.config.action_id(name)
            assert probability == pytest.approx(expected.action_probabilities[row, action_id].item(), abs=1e-5)
        assert [action for action, _ in result["timeline"]] == [
            action for action, _ in tokenizer.decode_timeline(generated.sequences[row], generated.times[row])
        ]
    # Other ages, other scores: the pipeline gives them to the model.
    older = pipe(timed_request(starts=(NOW - 20 * DAY, NOW - 9 * DAY)))
    assert older[0]["action_probabilities"] != results[0]["action_probabilities"]


def pipe_row(pipe, request, candidate):
    """The example row of the data for ``request`` and its candidate ``candidate``, written by hand."""
    tokenizer, fields = pipe.tokenizer, ["category", "opening_topic"]

    def side(values):
        return [tokenizer.hash_side_feature(field, values[field]) if field in values else 0 for field in fields]

    raw = request["candidates"][candidate]
    raw = raw if isinstance(raw, dict) else {"item": raw}
    history = request["history"]
    return {
        "user_id": tokenizer.hash_user(request["user"]),
        "item_id": tokenizer.hash_item(raw["item"]),
        "item_side_ids": side(raw.get("side_features", {})),
        "history_item_ids": [tokenizer.hash_item(entry["item"]) for entry in history],
        "history_item_side_ids": [side(entry.get("side_features", {})) for entry in history],
        "history_action_ids": [tokenizer.encode_timeline(entry["events"], repeated_start=True)["action_ids"]
                               for entry in history],  # fmt: skip
        "history_action_seconds": [[seconds for _, seconds in entry["events"]] for entry in history],
        "action_ids": [tokenizer.start_action_id],
        "action_seconds": [0.0],
        "session_start": int(np.floor(request["time"])),
        "history_session_starts": [int(np.floor(entry["session_start"])) for entry in history],
    }


def test_pipeline_refuses_a_time_aware_request_without_times():
    pipe = make_pipe(pipeline_model("iag", **TIME_FEATURES))
    with pytest.raises(ActionRequestError, match=r'add "session_start" in history\[0\], history\[1\] and "time"'):
        pipe(REQUEST)
    partial = timed_request()
    del partial["history"][1]["session_start"]
    with pytest.raises(ActionRequestError, match=r'add "session_start" in history\[1\]\. '):
        pipe(partial)
    no_time = timed_request()
    del no_time["time"]
    with pytest.raises(ActionRequestError, match=r'add "time" in the request'):
        pipe(no_time)
    # An empty history has nothing to age.
    assert len(pipe({**REQUEST, "history": []})) == 2


@pytest.mark.parametrize(
    "request_, error",
    [
        (timed_request(starts=(NOW + 5, NOW)), r"history\[0\].session_start=.* is after the request's time"),
        (timed_request(time="now"), "time must be a number of Unix seconds"),
        (timed_request(time="2023-11-16T00:00:00Z"), r"time must be .*got str .*datetime\.fromisoformat\(text\)"),
        (timed_request(time=datetime.datetime(2023, 11, 16)), r"time must .*naive datetime .*tzinfo=datetime\.timezone"),
        (timed_request(time=np.datetime64("2023-11-16")), r"time must .*datetime64.*np\.datetime64\(value, 's'\)"),
        (timed_request(starts=(datetime.datetime(2023, 11, 14), NOW)), r"history\[0\]\.session_start must .*naive"),
        (timed_request(starts=(float("nan"), NOW)), r"history\[0\].session_start must be a finite number"),
        (timed_request(time=1e20), r"time=1e\+20 is beyond 1e\+11 s .* not milliseconds"),
    ],
)
@pytest.mark.parametrize("time_features", [True, False])
def test_pipeline_refuses_bad_request_times(request_, error, time_features):
    options = TIME_FEATURES if time_features else {}
    with pytest.raises(ActionRequestError, match=error):
        make_pipe(pipeline_model("iag", **options))(request_)


@pytest.mark.parametrize("time_features", [True, False])
def test_pipeline_takes_timezone_aware_request_times(time_features):
    pipe = make_pipe(pipeline_model("iag", **(TIME_FEATURES if time_features else {})))
    numbers = timed_request(time=NOW + 0.9, starts=(NOW - 2 * DAY + 0.4, NOW - 600))
    dated = timed_request(time=utc(NOW + 0.9, hours=8), starts=(utc(NOW - 2 * DAY + 0.4), utc(NOW - 600, hours=-3)))
    assert pipe(dated) == pipe(numbers)
    if time_features:  # the datetimes are read: other instants, other scores
        older = timed_request(time=utc(NOW), starts=(utc(NOW - 20 * DAY), utc(NOW - 9 * DAY)))
        assert pipe(older)[0]["action_probabilities"] != pipe(dated)[0]["action_probabilities"]


def history_with_starts(starts, time=NOW):
    """A request whose history has one entry per start (None: the entry gives no ``session_start``)."""
    request = copy.deepcopy(REQUEST)
    request["time"] = time
    request["history"] = [history_item(f"v{index}") for index in range(len(starts))]
    for entry, start in zip(request["history"], starts):
        if start is not None:
            entry["session_start"] = start
    return request


@pytest.mark.parametrize("time_features", [True, False])
def test_pipeline_refuses_a_history_listed_newest_first(time_features):
    """Session starts going back on more than 3/4 of the steps (4 or more starts) show a history listed newest first
    (the collator would keep its oldest items, the model read it reversed); it is refused, saying to reverse it."""
    pipe = make_pipe(pipeline_model("iag", **(TIME_FEATURES if time_features else {})))
    newest_first = [NOW - DAY, NOW - 2 * DAY, NOW - 3 * DAY, NOW - 4 * DAY]
    with pytest.raises(ActionRequestError, match=r"listed newest first: .* back in time on 3 of 3 steps .*reverse it"):
        pipe(history_with_starts(newest_first))
    assert len(pipe(history_with_starts(newest_first[::-1]))) == 2  # oldest first, as documented
    # Entries without a start are skipped; 4 of 5 steps back is more than 3/4.
    with pytest.raises(ActionRequestError, match="on 4 of 5 steps"):
        pipe(history_with_starts([NOW - DAY, None, NOW - 2 * DAY, NOW - 3 * DAY, NOW - 4 * DAY, NOW - 5 * DAY, NOW - 60]))


@pytest.mark.parametrize(
    "starts",
    [
        [NOW - 3 * DAY, NOW - 2 * DAY, NOW - DAY, NOW - DAY],  # ties are not steps back
        [NOW - 3 * DAY, NOW - 4 * DAY, NOW - DAY, NOW - 2 * DAY, NOW - 60],  # half the steps back, as prepared data has
        [NOW - DAY, NOW - 2 * DAY, NOW - 3 * DAY, NOW - 4 * DAY, NOW - 60],  # exactly 3/4: not more
        [NOW - DAY, NOW - 2 * DAY, NOW - 3 * DAY],  # too few starts to tell
        [NOW - DAY, None, NOW - 2 * DAY, None, NOW - 3 * DAY],  # 3 starts given
    ],
)
def test_pipeline_takes_a_history_whose_starts_go_back_on_few_steps(starts):
    """Prepared histories are ordered by end time: their starts go back on some steps; only most steps refuse."""
    pipe = make_pipe(pipeline_model("iag"))
    assert len(pipe(history_with_starts(starts))) == 2


def test_pipeline_of_a_model_without_time_features_ignores_request_times():
    pipe = make_pipe(pipeline_model("iag", history_count_features=True))
    assert pipe(timed_request()) == pipe(REQUEST)
