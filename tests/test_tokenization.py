"""Tests of A2GenActionTokenizer: vocabulary, timelines, hashing and persistence."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer
from transformers.tokenization_utils_base import TruncationStrategy

from a2gen_hf import (
    ECOMMERCE_ACTIONS,
    SHORT_VIDEO_ACTIONS,
    A2GenActionTokenizer,
    A2GenConfig,
    TimelineError,
    UnknownActionError,
)
from a2gen_hf.time_encoding import fit_log_statistics

PAPER_TIMELINE = [("start", 0.0), ("like", 2.0), ("comment", 9.0), ("follow", 16.0), ("leave", 18.0)]


@pytest.fixture(autouse=True)
def _isolated_hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def tokenizer() -> A2GenActionTokenizer:
    return A2GenActionTokenizer()


def assert_same_timeline(decoded, expected):
    """Same actions; times equal within float32 quantisation (relative 1e-4 or absolute 1e-3 s)."""
    assert [action for action, _ in decoded] == [action for action, _ in expected]
    for (_, got), (_, want) in zip(decoded, expected):
        if want is None:
            assert got is None
        else:
            assert got == pytest.approx(want, rel=1e-4, abs=1e-3)


# ---------------------------------------------------------------------------------------------------------------
# Vocabulary


@pytest.mark.parametrize(
    "config",
    [A2GenConfig(), A2GenConfig(action_names=ECOMMERCE_ACTIONS, start_action="click")],
    ids=["short_video", "ecommerce"],
)
def test_vocabulary_matches_config(config):
    tokenizer = A2GenActionTokenizer.from_config(config)
    assert tokenizer.get_vocab() == {name: index for index, name in enumerate(config.id_to_action)}
    assert len(tokenizer) == tokenizer.vocab_size == config.vocab_size
    assert tokenizer.pad_token == "<pad>"
    assert tokenizer.pad_token_id == config.pad_token_id == 0
    assert tokenizer.bos_token_id == config.bos_token_id == config.start_action_id
    assert tokenizer.eos_token_id == config.eos_token_id == config.end_action_id
    tokenizer.check_compatible(config)


def test_default_vocabulary_is_short_video(tokenizer):
    assert tokenizer.action_names == SHORT_VIDEO_ACTIONS
    assert tokenizer.get_vocab() == {
        "<pad>": 0, "start": 1, "like": 2, "follow": 3, "forward": 4, "comment": 5, "leave": 6,
    }
    assert (tokenizer.bos_token, tokenizer.eos_token) == ("start", "leave")


def test_ecommerce_vocabulary_with_click_as_start():
    tokenizer = A2GenActionTokenizer(action_names=ECOMMERCE_ACTIONS, start_action="click")
    assert tokenizer.get_vocab() == {"<pad>": 0, "click": 1, "collect": 2, "cart": 3, "buy": 4, "leave": 5}
    assert tokenizer.bos_token_id == tokenizer.start_action_id == 1
    encoding = tokenizer.encode_timeline([("cart", 30.0), ("buy", 95.0)], add_start=True)
    assert encoding["action_ids"] == [1, 3, 4]
    assert_same_timeline(
        tokenizer.decode_timeline(encoding["action_ids"], encoding["action_times"]),
        [("click", 0.0), ("cart", 30.0), ("buy", 95.0)],
    )
    with pytest.raises(UnknownActionError, match="known actions are: click, collect, cart, buy, leave"):
        tokenizer.encode_timeline([("click", 0.0), ("like", 1.0)])


def test_text_call_maps_action_names_to_ids(tokenizer):
    assert tokenizer("start like leave")["action_ids"] == [1, 2, 6]
    assert tokenizer.tokenize("start  comment\tleave") == ["start", "comment", "leave"]
    batch = tokenizer(["start like leave", "start leave"], padding=True, return_tensors="pt")
    assert batch["action_ids"].tolist() == [[1, 2, 6], [1, 6, 0]]
    assert tokenizer("start like", padding="max_length", max_length=4)["action_ids"] == [1, 2, 0, 0]
    assert tokenizer.decode([1, 2, 6]) == "start like leave"
    assert tokenizer.decode([1, 2, 6, 0], skip_special_tokens=True) == "like"


def test_text_is_split_on_whitespace_only():
    # "restart" contains the special token "start": it must stay one action.
    tokenizer = A2GenActionTokenizer(action_names=["start", "restart", "leave"])
    assert tokenizer("start restart leave")["action_ids"] == [1, 2, 3]


def test_unknown_action_lists_known_actions(tokenizer):
    with pytest.raises(UnknownActionError) as error:
        tokenizer("start dance leave")
    assert "'dance'" in str(error.value)
    assert "start, like, follow, forward, comment, leave" in str(error.value)
    with pytest.raises(UnknownActionError, match="'dance' at event 1; known actions are: start, like"):
        tokenizer.encode_timeline([("start", 0.0), ("dance", 1.0)])
    with pytest.raises(UnknownActionError, match="'<pad>'"):
        tokenizer.encode_timeline([("start", 0.0), ("<pad>", 1.0)])
    assert issubclass(UnknownActionError, ValueError)


@pytest.mark.parametrize("role", ["start_action", "end_action"])
def test_invalid_start_or_end_action(role):
    with pytest.raises(UnknownActionError, match=f"'click' \\({role}\\); known actions are: start, like"):
        A2GenActionTokenizer(**{role: "click"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"action_names": ["start", "like", "like", "leave"]}, "duplicates"),
        ({"action_names": ["start", "<pad>", "leave"]}, "reserved for padding"),
        ({"action_names": ["start", "add to cart", "leave"]}, "not a single word"),
        ({"end_action": "start"}, "must differ"),
        ({"time_log_std": 0.0}, "std > 0"),
        ({"item_buckets": 1}, "item_buckets=1 must be >= 2"),
        ({"bos_token": "like"}, "bos_token='like' disagrees"),
    ],
)
def test_invalid_settings_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        A2GenActionTokenizer(**kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Timelines


def test_paper_example_encodes_and_decodes(tokenizer):
    encoding = tokenizer.encode_timeline(PAPER_TIMELINE)
    assert encoding["action_ids"] == [1, 2, 5, 3, 6]
    # Default statistics (mean 0, std 1): the normalised time is log1p(seconds).
    assert encoding["action_times"] == pytest.approx([math.log1p(s) for _, s in PAPER_TIMELINE])
    assert encoding["time_mask"] == [1, 1, 1, 1, 1]
    assert_same_timeline(tokenizer.decode_timeline(encoding["action_ids"], encoding["action_times"]), PAPER_TIMELINE)


def test_times_use_fitted_statistics(tokenizer):
    seconds = [0.0, 2.0, 9.0, 16.0, 18.0, 40.0, None, float("nan")]
    mean, std = tokenizer.fit_time_statistics(seconds)
    assert (mean, std) == fit_log_statistics([0.0, 2.0, 9.0, 16.0, 18.0, 40.0])
    assert (tokenizer.time_log_mean, tokenizer.time_log_std) == (mean, std)
    encoding = tokenizer.encode_timeline(PAPER_TIMELINE)
    assert encoding["action_times"] == pytest.approx([(math.log1p(s) - mean) / std for _, s in PAPER_TIMELINE])
    assert tokenizer.denormalize_times(tokenizer.normalize_seconds(16.0)) == pytest.approx(16.0)
    with pytest.raises(TimelineError, match="value 1 is -3.0 s"):
        tokenizer.fit_time_statistics([1.0, -3.0])


def test_unknown_times_are_masked(tokenizer):
    events = [("start", None), ("like", None), ("comment", 9.0), ("leave", 18.0)]
    encoding = tokenizer.encode_timeline(events)
    assert encoding["time_mask"] == [0, 0, 1, 1]
    assert encoding["action_times"][:2] == [0.0, 0.0]
    decoded = tokenizer.decode_timeline(encoding["action_ids"], encoding["action_times"], encoding["time_mask"])
    assert_same_timeline(decoded, events)


def test_decode_timeline_reads_low_precision_times_and_refuses_broken_ones(tokenizer):
    """bf16 / fp16 tensors decode as float32 does (before: numpy's "unsupported ScalarType BFloat16"); a NaN or inf
    time where the time is known is refused by position (before: ('like', nan)); a masked one stays None."""
    encoding = tokenizer.encode_timeline([("start", 0.0), ("like", 2.0), ("leave", 5.0)], return_tensors="pt")
    ids, times = encoding["action_ids"], encoding["action_times"]
    for dtype in (torch.bfloat16, torch.float16):
        expected = tokenizer.decode_timeline(ids, times.to(dtype).float())
        assert tokenizer.decode_timeline(ids, times.to(dtype)) == expected
    for bad in (float("nan"), float("inf")):
        broken = times.clone()
        broken[1] = bad
        with pytest.raises(ValueError, match=rf"action_times\[1\] is {bad} for action id 2, .* a normalised time must be finite"):
            tokenizer.decode_timeline(ids, broken)
        assert tokenizer.decode_timeline(ids, broken, [1, 0, 1])[1] == ("like", None)
    # A finite time past what float64 seconds hold decoded as ("like", inf) with numpy's overflow warning; -inf as 0 s.
    for bad in (1e4, float("-inf")):
        with pytest.raises(ValueError, match=r"action_times\[1\] is .* decode to finite seconds"):
            tokenizer.decode_timeline(ids, torch.tensor([0.0, bad, 0.5]))
    with np.errstate(over="ignore"):  # a Python float overflowed with OverflowError where arrays give inf
        assert tokenizer.denormalize_times(1e4) == math.inf == tokenizer.denormalize_times(np.array([1e4]))[0]


def test_add_start_prepends_the_start_action(tokenizer):
    encoding = tokenizer.encode_timeline([("like", 2.0), ("leave", 5.0)], add_start=True)
    assert encoding["action_ids"] == [1, 2, 6]
    assert encoding["time_mask"] == [1, 1, 1]
    with pytest.raises(TimelineError, match=r"prepend \('start', 0.0\) or pass add_start=True"):
        tokenizer.encode_timeline([("like", 2.0), ("leave", 5.0)])
    with pytest.raises(TimelineError, match="add_start=True already prepends it"):
        tokenizer.encode_timeline(PAPER_TIMELINE, add_start=True)


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([("start", 0.0), ("like", -1.0)], r"Event 1 \('like'\) has time -1.0 s; times must be finite and >= 0"),
        ([("start", 0.0), ("like", float("nan"))], r"Event 1 \('like'\) has time nan s"),
        ([("start", 0.0), ("like", float("inf"))], r"Event 1 \('like'\) has time inf s"),
        ([("start", 0.0), ("like", "2s")], r"has time '2s'; a time must be a number"),
        (
            [("start", 0.0), ("like", 9.0), ("comment", None), ("follow", 2.0)],
            r"out of time order: event 3 \('follow'\) is at 2.0 s but event 1 is at 9.0 s",
        ),
        ([("start", 0.0), ("leave", 5.0), ("like", 6.0)], r"Event 2 \('like'\) comes after the end action 'leave'"),
        ([("start", 0.0), ("like", 1.0), ("start", 2.0)], "Event 2 is the start action 'start', which may only open"),
        ([("start", 3.0), ("like", 4.0)], "is at 3.0 s; every timeline starts at 0 s"),
        ([("start", 0.0), ("like",)], "Event 1 is .*; each event must be a pair"),
        ([], "The timeline is empty"),
    ],
)
def test_malformed_timelines_raise_timeline_error(tokenizer, events, message):
    with pytest.raises(TimelineError, match=message):
        tokenizer.encode_timeline(events)


def test_equal_times_are_in_order(tokenizer):
    encoding = tokenizer.encode_timeline([("start", 0.0), ("like", 0.0), ("follow", 3.0), ("leave", 3.0)])
    assert encoding["action_ids"] == [1, 2, 3, 6]


def test_truncation_keeps_the_first_events(tokenizer):
    encoding = tokenizer.encode_timeline(PAPER_TIMELINE, max_length=3)
    assert encoding["action_ids"] == [1, 2, 5]  # the end action is cut
    # Bad events are reported even when truncation would have cut them.
    with pytest.raises(TimelineError, match="Event 4"):
        tokenizer.encode_timeline([*PAPER_TIMELINE[:4], ("leave", -1.0)], max_length=2)


def test_padding_to_max_length(tokenizer):
    encoding = tokenizer.encode_timeline(PAPER_TIMELINE[:2], max_length=4, pad_to_max_length=True)
    assert encoding["action_ids"] == [1, 2, 0, 0]
    assert encoding["action_times"][2:] == [0.0, 0.0]
    assert encoding["time_mask"] == [1, 1, 0, 0]
    with pytest.raises(ValueError, match="pad_to_max_length=True needs max_length"):
        tokenizer.encode_timeline(PAPER_TIMELINE, pad_to_max_length=True)
    with pytest.raises(ValueError, match="max_length=0 must be a positive integer"):
        tokenizer.encode_timeline(PAPER_TIMELINE, max_length=0)


def test_tensors_single_and_batch(tokenizer):
    single = tokenizer.encode_timeline(PAPER_TIMELINE, return_tensors="pt")
    assert single["action_ids"].shape == (5,) and single["action_ids"].dtype == torch.long
    assert single["action_times"].dtype == torch.float32
    assert single["time_mask"].dtype == torch.long

    timelines = [PAPER_TIMELINE, [("start", 0.0), ("like", None)], [("start", 0.0)]]
    batch = tokenizer.encode_timelines(timelines, return_tensors="pt")
    assert batch["action_ids"].tolist() == [[1, 2, 5, 3, 6], [1, 2, 0, 0, 0], [1, 0, 0, 0, 0]]
    assert batch["time_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0]]
    assert batch["action_times"][1:, 1:].abs().sum() == 0
    decoded = tokenizer.decode_timelines(batch["action_ids"], batch["action_times"], batch["time_mask"])
    for row, timeline in enumerate(timelines):
        assert_same_timeline(decoded[row], timeline)
    fixed = tokenizer.encode_timelines(timelines, max_length=7, pad_to_max_length=True, return_tensors="pt")
    assert fixed["action_ids"].shape == fixed["action_times"].shape == fixed["time_mask"].shape == (3, 7)


def test_batch_lists_are_ragged_and_errors_name_the_timeline(tokenizer):
    batch = tokenizer.encode_timelines([PAPER_TIMELINE, PAPER_TIMELINE[:2]])
    assert batch["action_ids"] == [[1, 2, 5, 3, 6], [1, 2]]
    with pytest.raises(TimelineError, match=r"Timeline 1: Events are out of time order"):
        tokenizer.encode_timelines([PAPER_TIMELINE, [("start", 0.0), ("like", 5.0), ("leave", 1.0)]])


def test_left_padding_is_skipped_by_decode():
    tokenizer = A2GenActionTokenizer(padding_side="left")
    batch = tokenizer.encode_timelines([PAPER_TIMELINE, PAPER_TIMELINE[:3]], return_tensors="pt")
    assert batch["action_ids"][1].tolist() == [0, 0, 1, 2, 5]
    assert batch["time_mask"][1].tolist() == [0, 0, 1, 1, 1]
    decoded = tokenizer.decode_timelines(batch["action_ids"], batch["action_times"], batch["time_mask"])
    assert_same_timeline(decoded[1], PAPER_TIMELINE[:3])


def test_decode_stops_after_end_and_accepts_arrays(tokenizer):
    ids = [1, 2, 6, 3, 0]  # a generated sequence may run past leave
    times = tokenizer.normalize_seconds(np.array([0.0, 2.0, 5.0, 7.0, 0.0]))
    expected = [("start", 0.0), ("like", 2.0), ("leave", 5.0)]
    for as_input in (list, np.asarray, torch.tensor):
        assert_same_timeline(tokenizer.decode_timeline(as_input(ids), as_input(list(times))), expected)
    with pytest.raises(ValueError, match="use decode_timelines for a batch"):  # one row is a batch of one: read
        tokenizer.decode_timeline(torch.tensor([ids, ids]), torch.tensor([list(times), list(times)]))
    with pytest.raises(ValueError, match="Action id 9 is out of range"):
        tokenizer.decode_timeline([1, 9], [0.0, 0.0])


timeline_strategy = st.integers(min_value=0, max_value=12).flatmap(
    lambda length: st.tuples(
        st.lists(st.sampled_from(["like", "follow", "forward", "comment"]), min_size=length, max_size=length),
        st.lists(st.floats(min_value=0.0, max_value=1e7), min_size=length + 1, max_size=length + 1),
        st.lists(st.booleans(), min_size=length + 2, max_size=length + 2),
        st.booleans(),
    )
)


@settings(max_examples=150, deadline=None)
@given(timeline_strategy)
def test_round_trip_property(drawn):
    middle, raw_times, known, with_end = drawn
    tokenizer = A2GenActionTokenizer(time_log_mean=2.5, time_log_std=3.0)
    times = sorted(raw_times)
    actions = [*middle, "leave"] if with_end else middle
    events = [("start", 0.0 if known[0] else None)]
    events += [(action, seconds if is_known else None) for action, seconds, is_known in zip(actions, times, known[1:])]

    encoding = tokenizer.encode_timeline(events)
    assert_same_timeline(
        tokenizer.decode_timeline(encoding["action_ids"], encoding["action_times"], encoding["time_mask"]), events
    )
    tensors = tokenizer.encode_timelines([events, events[:1]], return_tensors="pt")  # float32 times, padded row
    decoded = tokenizer.decode_timelines(tensors["action_ids"], tensors["action_times"], tensors["time_mask"])
    assert_same_timeline(decoded[0], events)
    assert_same_timeline(decoded[1], events[:1])


# ---------------------------------------------------------------------------------------------------------------
# Hashing


def test_hashing_is_stable_and_in_range(tokenizer):
    # Values computed once with BLAKE2b-64 (little-endian) % (buckets - 1) + 1; they must never change.
    assert tokenizer.hash_user("user-42") == 65611
    assert tokenizer.hash_user(7) == tokenizer.hash_user("7") == 35255
    assert tokenizer.hash_item("item-9") == 401478
    assert tokenizer.hash_item(12345) == 840857
    assert tokenizer.hash_side_feature("author", "a17") == 48650
    assert tokenizer.hash_side_feature("category", 3) == 911

    users = tokenizer.hash_users(f"u{i}" for i in range(5000))
    assert users.dtype == np.int64 and users.shape == (5000,)
    assert users.min() >= 1 and users.max() < tokenizer.user_buckets
    small = A2GenActionTokenizer(item_buckets=2)
    assert set(small.hash_items(range(100)).tolist()) == {1}


def test_item_keys_are_63_bits_of_the_item_hash_and_tell_ids_apart(tokenizer):
    import hashlib

    digest = int.from_bytes(hashlib.blake2b(b"item-9", digest_size=8).digest(), "little")
    assert tokenizer.item_keys(["item-9"]).tolist() == [digest >> 1]
    assert digest % (tokenizer.item_buckets - 1) + 1 == tokenizer.hash_item("item-9")  # the same digest
    assert tokenizer.item_keys([123]).tolist() == tokenizer.item_keys(["123"]).tolist()
    keys = tokenizer.item_keys(f"i{k}" for k in range(200_000))
    assert keys.dtype == np.int64 and keys.min() >= 0 and len(np.unique(keys)) == 200_000
    small = A2GenActionTokenizer(item_buckets=2)  # one bucket for all items, a key per item
    assert len(set(small.item_keys(range(100)).tolist())) == 100
    with pytest.raises(ValueError, match="Cannot hash a missing id"):
        tokenizer.item_keys(["a", None])


def test_vectorised_hashing_equals_single(tokenizer):
    raws = ["a", "ü-ß", 0, 2**70, np.int64(5), "x" * 300]
    assert tokenizer.hash_users(raws).tolist() == [tokenizer.hash_user(raw) for raw in raws]
    assert tokenizer.hash_items(np.array([3, 4])).tolist() == [tokenizer.hash_item(3), tokenizer.hash_item(4)]
    assert tokenizer.hash_side_features("author", ["a", "b"]).tolist() == [
        tokenizer.hash_side_feature("author", "a"),
        tokenizer.hash_side_feature("author", "b"),
    ]
    assert tokenizer.hash_users([]).shape == (0,)
    # Side features are keyed by their field: the same value in two fields lands in independent buckets.
    assert tokenizer.hash_side_feature("author", 1) != tokenizer.hash_side_feature("category", 1)
    with pytest.raises(ValueError, match="Cannot hash a missing id"):
        tokenizer.hash_items(["a", None])


# ---------------------------------------------------------------------------------------------------------------
# Persistence


def test_save_and_load_round_trip(tmp_path):
    tokenizer = A2GenActionTokenizer(
        action_names=ECOMMERCE_ACTIONS, start_action="click", max_actions=4, user_buckets=1234, item_buckets=5678,
        side_feature_buckets=91,
    )
    tokenizer.fit_time_statistics([0.1, 3.0, 17.5, 600.0, 86_400.0])
    tokenizer.save_pretrained(tmp_path / "saved")

    with open(tmp_path / "saved" / "vocab.json") as handle:
        assert json.load(handle) == tokenizer.get_vocab()
    with open(tmp_path / "saved" / "tokenizer_config.json") as handle:
        saved_config = json.load(handle)
    assert saved_config["tokenizer_class"] == "A2GenActionTokenizer"
    assert saved_config["auto_map"]["AutoTokenizer"][0] == "tokenization_a2gen.A2GenActionTokenizer"
    assert not (tmp_path / "saved" / "config.json").exists()

    for loader in (AutoTokenizer, A2GenActionTokenizer):
        loaded = loader.from_pretrained(tmp_path / "saved")
        assert type(loaded) is A2GenActionTokenizer
        for field in (
            "action_names", "start_action", "end_action", "max_actions", "user_buckets", "item_buckets",
            "side_feature_buckets",
        ):
            assert getattr(loaded, field) == getattr(tokenizer, field), field
        # Bit-identical statistics, so times normalise identically after reloading.
        assert loaded.time_log_mean.hex() == tokenizer.time_log_mean.hex()
        assert loaded.time_log_std.hex() == tokenizer.time_log_std.hex()
        assert loaded.get_vocab() == tokenizer.get_vocab()
        assert loaded.encode_timeline([("click", 0.0), ("buy", 30.0)]) == tokenizer.encode_timeline(
            [("click", 0.0), ("buy", 30.0)]
        )

    loaded.save_pretrained(tmp_path / "again")
    with open(tmp_path / "again" / "tokenizer_config.json") as handle:
        assert json.load(handle) == saved_config


def test_mismatched_vocab_file_is_rejected(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path)
    with open(tmp_path / "vocab.json", "w") as handle:
        json.dump({"<pad>": 0, "start": 1, "leave": 2}, handle)
    with pytest.raises(ValueError, match="vocab.json lists the actions \\['start', 'leave'\\]"):
        A2GenActionTokenizer.from_pretrained(tmp_path)


def test_saved_tokenizer_loads_standalone_and_hashes_ignore_pythonhashseed(tmp_path, tokenizer):
    """A fresh interpreter with another PYTHONHASHSEED, without a2gen_hf imported, loads the saved copy of this
    module (auto_map, trust_remote_code) and hashes exactly as this process does."""
    tokenizer.save_pretrained(tmp_path / "saved")
    script = (
        "import json, sys\n"
        "from transformers import AutoTokenizer\n"
        f"t = AutoTokenizer.from_pretrained({str(tmp_path / 'saved')!r}, trust_remote_code=True)\n"
        "assert 'a2gen_hf' not in sys.modules, 'the saved copy must not need the installed package'\n"
        "print(json.dumps([t.hash_user('user-42'), t.hash_item(12345), t.hash_side_feature('author', 'a17'),"
        " t.hash_items(['p', 'q']).tolist(), t.encode_timeline([('start', 0.0), ('like', 2.0)])['action_ids']]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "4242", "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [
        tokenizer.hash_user("user-42"),
        tokenizer.hash_item(12345),
        tokenizer.hash_side_feature("author", "a17"),
        tokenizer.hash_items(["p", "q"]).tolist(),
        [1, 2],
    ]


def test_autotokenizer_from_a_model_directory(tmp_path):
    config = A2GenConfig(action_names=ECOMMERCE_ACTIONS, start_action="click", time_log_mean=1.5, time_log_std=2.0)
    config.save_pretrained(tmp_path)
    A2GenActionTokenizer.from_config(config).save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is A2GenActionTokenizer
    loaded.check_compatible(config)


# ---------------------------------------------------------------------------------------------------------------
# Agreement with the model config


def test_from_config_and_check_compatible():
    config = A2GenConfig(time_log_mean=1.25, time_log_std=0.5, max_actions=8, item_buckets=77)
    tokenizer = A2GenActionTokenizer.from_config(config)
    assert (tokenizer.time_log_mean, tokenizer.time_log_std, tokenizer.max_actions, tokenizer.item_buckets) == (
        1.25, 0.5, 8, 77,
    )
    tokenizer.check_compatible(config)

    tokenizer.fit_time_statistics([1.0, 10.0, 100.0])
    with pytest.raises(ValueError, match="time_log_mean: tokenizer has .*, config has 1.25") as error:
        tokenizer.check_compatible(config)
    assert "time_log_std" in str(error.value) and "max_actions" not in str(error.value)
    with pytest.raises(ValueError, match="action_names: tokenizer has"):
        A2GenActionTokenizer(action_names=ECOMMERCE_ACTIONS, start_action="click").check_compatible(config)


# ---------------------------------------------------------------------------------------------------------------
# transformers' tokenizer contract (as TokenizerTesterMixin checks it) and inputs that feed forward


def test_encode_is_tokenize_then_convert(tokenizer):
    """TokenizerTesterMixin.test_internal_consistency: encode == convert_tokens_to_ids(tokenize(text))."""
    text = "start like comment leave"
    ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text))
    assert tokenizer.encode(text) == ids == tokenizer(text)["action_ids"]
    assert tokenizer.encode(text.split()) == ids and tokenizer.encode(ids) == ids
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.encode(text, return_tensors="pt").tolist() == [ids]
    assert tokenizer.encode(PAPER_TIMELINE) == tokenizer.encode_timeline(PAPER_TIMELINE)["action_ids"]


def test_a_timeline_with_times_as_text_is_refused_as_such(tokenizer):
    """[("start", "0"), ("like", "2.0")] is a batch of text pairs to transformers: it failed with "Unknown action
    '0'"; it is named as a timeline whose times are text. Text pairs of action names stay text pairs."""
    for timeline in ([("start", "0"), ("like", "2.0")], [["start", "0.0"]], [("start", 0.0), ("like", " 2 ")]):
        with pytest.raises(TypeError, match=r"Event \d \('(start|like)', '.*'\) has its time as text; .* float\(seconds\)"):
            tokenizer(timeline)
    with pytest.raises(TypeError, match=r"Timeline 1: event 1 \('leave', '3.0'\) has its time as text"):
        tokenizer([[("start", 0.0), ("leave", 3.0)], [("start", 0.0), ("leave", "3.0")]])
    pairs = tokenizer([("start like", "leave")])
    assert pairs["action_ids"] == [tokenizer.encode("start like") + tokenizer.encode("leave")]


def test_the_tensors_of_one_timeline_or_a_batch_decode_back(tokenizer):
    """tokenizer(timeline, return_tensors="pt") is a batch of one, (1, T): decode_timeline takes it back (a review:
    "needs 1-D"), and decode_timelines takes the encoding of a batch."""
    one = tokenizer(PAPER_TIMELINE, return_tensors="pt")
    assert_same_timeline(tokenizer.decode_timeline(one), PAPER_TIMELINE)
    short = [("start", 0.0), ("leave", 3.0)]
    batch = tokenizer([PAPER_TIMELINE, short], padding=True, return_tensors="pt")
    decoded = tokenizer.decode_timelines(batch)
    assert len(decoded) == 2
    assert_same_timeline(decoded[0], PAPER_TIMELINE)
    assert_same_timeline(decoded[1], short)


def test_one_timeline_with_tensors_is_a_batch_of_one_as_one_text_is(tokenizer):
    """transformers gives one text with return_tensors a batch axis, (1, T); one timeline did not (before: (T,) from
    tokenizer(timeline, return_tensors="pt") while tokenizer("start like", return_tensors="pt") gave (1, T))."""
    text = tokenizer("start like comment leave", return_tensors="pt")["action_ids"]
    one = tokenizer(PAPER_TIMELINE, return_tensors="pt")
    assert text.shape[0] == 1 and {tuple(value.shape) for value in one.values()} == {(1, len(PAPER_TIMELINE))}
    assert one["action_ids"][0].tolist() == tokenizer(PAPER_TIMELINE)["action_ids"]
    assert tokenizer.encode(PAPER_TIMELINE, return_tensors="pt").shape == (1, len(PAPER_TIMELINE))
    assert tokenizer.encode(PAPER_TIMELINE, return_tensors="np").shape == (1, len(PAPER_TIMELINE))


def test_calling_the_tokenizer_on_timelines(tokenizer):
    single = tokenizer(PAPER_TIMELINE)
    assert dict(single) == tokenizer.encode_timeline(PAPER_TIMELINE)
    short = [("start", 0.0), ("leave", 3.0)]
    batch = tokenizer([PAPER_TIMELINE, short], padding=True)
    assert batch["action_ids"][1] == [1, 6, 0, 0, 0] and batch["time_mask"][1] == [1, 1, 0, 0, 0]
    tensors = tokenizer([PAPER_TIMELINE, short], return_tensors="pt")
    assert tensors["action_ids"].shape == tensors["action_times"].shape == (2, 5)
    assert tokenizer(PAPER_TIMELINE, max_length=3, padding="max_length")["action_ids"] == [1, 2, 5]
    assert tokenizer([("like", 2.0)], add_start=True)["action_ids"] == [1, 2]
    with pytest.raises(TypeError, match="no second sequence"):
        tokenizer(PAPER_TIMELINE, short)


def test_the_vocabulary_cannot_grow(tokenizer):
    """As TokenizerTesterMixin.test_add_tokens_tokenizer asks: len() and ids stay consistent; here nothing is added."""
    size = len(tokenizer)
    assert tokenizer.add_tokens(["like", "leave"]) == 0
    with pytest.raises(ValueError, match=r"Cannot add \['share'\].*fixed action list"):
        tokenizer.add_tokens(["share"])
    with pytest.raises(ValueError, match="fixed action list"):
        tokenizer.add_special_tokens({"additional_special_tokens": ["<sep>"]})
    with pytest.raises(ValueError, match="eos_token"):
        tokenizer.add_special_tokens({"eos_token": "like"})
    assert len(tokenizer) == size == tokenizer.vocab_size and tokenizer.get_vocab() == tokenizer.vocab
    with pytest.raises(UnknownActionError):
        tokenizer.tokenize("start share")


def test_decoded_timeline_starts_at_exactly_zero_seconds():
    tokenizer = A2GenActionTokenizer(time_log_mean=2.3, time_log_std=1.7)  # float32 round trip: 3.6e-08 s
    times = torch.tensor([tokenizer.normalize_seconds(0.0), tokenizer.normalize_seconds(7.0)], dtype=torch.float32)
    decoded = tokenizer.decode_timeline([1, 6], times)
    assert decoded[0] == ("start", 0.0) and decoded[1][1] == pytest.approx(7.0, rel=1e-5)


def test_encoded_histories_and_labels_feed_forward_as_the_collator_does(tokenizer):
    from a2gen_hf import A2GenForActionGeneration
    from a2gen_hf.data import A2GenDataCollator

    config = A2GenConfig(hidden_size=16, id_embedding_size=8, action_embedding_size=8, time_embedding_size=8,
                         user_buckets=tokenizer.user_buckets, item_buckets=tokenizer.item_buckets, max_actions=4,
                         max_history_items=2, max_events_per_item=3)
    histories = [
        [("v1", [("start", 0.0), ("leave", 4.0)]), ("v2", PAPER_TIMELINE), ("v3", [("start", 0.0), ("like", None)])],
        [],
    ]
    targets = [PAPER_TIMELINE, [("start", 0.0), ("leave", 2.5)]]
    encoded = tokenizer.encode_histories(histories, max_history_items=2, max_events_per_item=3, return_tensors="pt")
    tokenizer.max_actions = config.max_actions  # labels are padded to max_actions + 1, as the collator pads them
    labels = tokenizer.encode_labels(targets, return_tensors="pt")
    rows = [
        {
            "user_id": tokenizer.hash_user(f"u{row}"),
            "item_id": tokenizer.hash_item("v9"),
            "history_item_ids": [tokenizer.hash_item(item) for item, _ in history],
            "history_action_ids": [tokenizer.encode_timeline(events)["action_ids"] for _, events in history],
            "history_action_seconds": [[math.nan if t is None else t for _, t in events] for _, events in history],
            "action_ids": tokenizer.encode_timeline(target)["action_ids"],
            "action_seconds": [t for _, t in target],
        }
        for row, (history, target) in enumerate(zip(histories, targets))
    ]
    collated = A2GenDataCollator.from_config(config, tokenizer)(rows)
    for name, value in {**encoded, **labels}.items():
        assert torch.equal(value, collated[name]), name
    torch.manual_seed(0)
    model = A2GenForActionGeneration(config).eval()
    inputs = {"user_ids": collated["user_ids"], "item_ids": collated["item_ids"], **encoded, **labels}
    assert torch.equal(model(**inputs).loss, model(**collated).loss)


def test_a_folder_without_tokenizer_files_is_refused_not_filled_with_defaults(tmp_path):
    """A model saved alone: AutoTokenizer / from_pretrained would build a default tokenizer whose ids, time
    statistics and buckets mean other things than the model's; it is refused naming from_config, which builds the
    matching one."""
    from a2gen_hf import A2GenForActionGeneration

    config = A2GenConfig(action_names=["start", "click", "buy", "leave"], time_log_mean=2.0, time_log_std=0.5,
                         item_buckets=200, user_buckets=50, hidden_size=16, num_attention_heads=2)  # fmt: skip
    A2GenForActionGeneration(config).save_pretrained(tmp_path)
    for load in (AutoTokenizer.from_pretrained, A2GenActionTokenizer.from_pretrained):
        with pytest.raises(OSError, match=r"holds no tokenizer files .*A2GenActionTokenizer\.from_config"):
            load(tmp_path)
    A2GenActionTokenizer.from_config(config).save_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").rename(tmp_path / "kept.json")  # a partial copy: vocab.json alone
    for load in (AutoTokenizer.from_pretrained, A2GenActionTokenizer.from_pretrained):
        # Before: "Unknown action 'start' (start_action)", the defaults read against the saved actions.
        with pytest.raises(OSError, match=r"holds vocab\.json but no tokenizer_config\.json, which holds"):
            load(tmp_path)
    (tmp_path / "kept.json").rename(tmp_path / "tokenizer_config.json")
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    loaded.check_compatible(config)
    assert loaded.get_vocab() == {"<pad>": 0, "start": 1, "click": 2, "buy": 3, "leave": 4}


def test_timeline_times_may_be_0d_tensors_and_a_bad_time_is_named(tokenizer):
    expected = tokenizer(PAPER_TIMELINE)
    as_tensors = [(action, torch.tensor(seconds)) for action, seconds in PAPER_TIMELINE]
    as_arrays = [(action, np.float32(seconds) if i % 2 else np.array(int(seconds))) for i, (action, seconds)
                 in enumerate(PAPER_TIMELINE)]  # fmt: skip
    for timeline in (as_tensors, as_arrays):
        encoded = tokenizer(timeline)
        assert encoded["action_ids"] == expected["action_ids"]
        assert encoded["action_times"] == pytest.approx(expected["action_times"])
    for bad in (torch.tensor(True), torch.tensor([1.0]), np.array([2.0])):
        with pytest.raises(TimelineError, match=r"Event 1 \('like'\) has time .*a time must be a number of seconds"):
            tokenizer([("start", 0.0), ("like", bad)])
    # (text, text) pairs stay text pairs, as for any tokenizer: no times
    assert tokenizer([("like follow", "comment")]) == {"action_ids": [[2, 3, 5]]}


def test_timelines_take_padding_side(tokenizer):
    short = [("start", 0.0), ("like", 2.0)]
    left = tokenizer([PAPER_TIMELINE, short], padding=True, padding_side="left")
    assert left["action_ids"][1] == [0, 0, 0, 1, 2] and left["time_mask"][1] == [0, 0, 0, 1, 1]
    right = tokenizer([PAPER_TIMELINE, short], padding="max_length", max_length=6, return_tensors="pt")
    assert right["action_ids"].tolist()[1] == [1, 2, 0, 0, 0, 0] and right["action_ids"].shape == (2, 6)
    single = tokenizer(short, padding="max_length", max_length=4, padding_side="left")
    assert single["action_ids"] == [0, 0, 1, 2]
    with pytest.raises(ValueError, match="padding='max_length' needs max_length"):
        tokenizer([short], padding="max_length")


@pytest.mark.parametrize("name, text, message", [
    ("vocab.json", "{oops", r"vocab\.json, line 1, column 2: Expecting property name .*save the tokenizer again"),
    ("vocab.json", "[1, 2]", r"vocab\.json is not an A2Gen action vocabulary"),
    # The same message for tokenizer_config.json as for vocab.json (before: "'folder': a tokenizer file
    # (tokenizer_config.json) is not valid JSON"). AutoTokenizer reads that file before any A2Gen class is known:
    # its error is transformers' own, which the package does not patch.
    ("tokenizer_config.json", "{bad", r"tokenizer_config\.json, line 1, column 2: Expecting property name .*; the "
                                      r"tokenizer file is damaged: save the tokenizer again\.$"),
    ("tokenizer_config.json", "[1]", r"tokenizer_config\.json is not a JSON object of the tokenizer's settings"),
])  # fmt: skip
def test_a_damaged_tokenizer_file_is_named(tmp_path, name, text, message):
    A2GenActionTokenizer().save_pretrained(tmp_path)
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=message) as raised:
        A2GenActionTokenizer.from_pretrained(tmp_path)
    assert str(tmp_path / name) in str(raised.value) or "is not a JSON object" in message
    if name == "tokenizer_config.json" and text == "{bad":
        assert isinstance(raised.value, json.JSONDecodeError)  # still one, for code that catches it


def test_a_tokenizer_config_that_is_no_utf8_is_named(tmp_path):
    A2GenActionTokenizer().save_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(ValueError, match=r"tokenizer_config\.json: not UTF-8 text \(.*\); the tokenizer file is "
                                         r"damaged: save the tokenizer again\."):  # fmt: skip
        A2GenActionTokenizer.from_pretrained(tmp_path)


def test_ids_hash_as_a_log_reads_them_and_ids_that_are_no_scalar_are_refused(tokenizer):
    """7, 7.0, "7", numpy's 7 and b"7" are one id, as a2gen prepare reads a log's id column (pandas turns an integer
    column with gaps into floats); NaN, bools and objects are refused (before: str() of them, an object's text
    changing from run to run)."""
    same = {tokenizer.hash_item(raw) for raw in (7, 7.0, "7", np.int64(7), np.float32(7.0), b"7")}
    assert same == {tokenizer.hash_item("7")}
    assert tokenizer.hash_item(2.5) == tokenizer.hash_item("2.5") and tokenizer.hash_user(-3) == tokenizer.hash_user("-3")
    for raw, message in ((float("nan"), "NaN / inf is no id"), (True, "a bool is no id"), (object(), "of type object"),
                         ([1], "of type list"), (b"\xff", "not UTF-8")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            tokenizer.hash_item(raw)


def test_check_same_ids_names_the_differences_and_a_fix_that_fits_them():
    data, model = A2GenActionTokenizer(item_buckets=100), A2GenActionTokenizer(item_buckets=200)
    data.check_same_ids(A2GenActionTokenizer(item_buckets=100, time_log_mean=2.0))  # time statistics may differ
    with pytest.raises(ValueError, match=r"item_buckets: data 100, model 200\). Prepare the data again with the "
                                         r"model's bucket counts \(--item-buckets 200\)"):
        data.check_same_ids(model, ("data", "model"))
    recorded = A2GenActionTokenizer(item_buckets=200, side_feature_fields=["category"])
    recorded.check_same_ids(model)  # fields not recorded on one side (a from_config tokenizer): no difference
    with pytest.raises(ValueError, match=r"side_feature_fields: .*\['category'\], .*\['topic'\]"):
        recorded.check_same_ids(A2GenActionTokenizer(item_buckets=200, side_feature_fields=["topic"]))
    other_log = A2GenActionTokenizer(action_names=["start", "click", "leave"], item_buckets=200)
    with pytest.raises(ValueError, match=r"action_names: .*Its actions or side-feature fields are another log's"):
        other_log.check_same_ids(model, ("data", "model"))


def test_special_tokens_cannot_be_reassigned_to_other_actions(tokenizer):
    """`tokenizer.pad_token = tokenizer.eos_token` (the text-model habit) made padding `leave` events and labels;
    `unk_token=...` and extra special tokens grew the fixed vocabulary. Each is refused; the same value passes."""
    for statement in ("tokenizer.pad_token = tokenizer.eos_token", "tokenizer.bos_token = 'like'",
                      "tokenizer.pad_token_id = 3", "tokenizer.eos_token_id = 2"):
        with pytest.raises(ValueError, match="cannot change"):
            exec(statement, {"tokenizer": tokenizer})
    with pytest.raises(ValueError, match=r"Cannot add \['<unk>'\]"):
        tokenizer.unk_token = "<unk>"
    with pytest.raises(ValueError, match=r"Cannot add \['dance'\]"):
        tokenizer.extra_special_tokens = ["dance"]
    tokenizer.pad_token, tokenizer.eos_token_id = "<pad>", tokenizer.end_action_id  # unchanged: fine
    assert (tokenizer.pad_token_id, tokenizer.eos_token) == (0, "leave")
    for keywords in ({"unk_token": "<unk>"}, {"extra_special_tokens": ["dance"]}, {"additional_special_tokens": ["x"]}):
        with pytest.raises(ValueError, match="Cannot add"):
            A2GenActionTokenizer(**keywords)
    for keywords in ({"max_actions": 2.7}, {"user_buckets": "3"}, {"item_buckets": True}):
        with pytest.raises(ValueError, match="must be a whole number"):
            A2GenActionTokenizer(**keywords)
    assert A2GenActionTokenizer(max_actions=3.0).max_actions == 3


def test_encode_histories_of_an_empty_batch_keeps_float_times(tokenizer):
    """Before: BatchEncoding made the (0, 1, 1) times of an empty batch int64."""
    for histories in ([], [[]]):
        encoded = tokenizer.encode_histories(histories, return_tensors="pt")
        assert encoded["history_action_times"].dtype == torch.float32
        assert encoded["history_item_ids"].dtype == torch.int64 and encoded["history_item_ids"].shape[0] == len(histories)


def test_usual_calls_refuse_what_they_would_get_wrong(tokenizer):
    timeline = [("start", 0.0), ("like", 1.0), ("comment", 2.0), ("leave", 5.0)]
    with pytest.raises(UnknownActionError, match="Unknown action 1 at event 0"):  # before: garbage via the text path
        tokenizer([(1, 0.0), (2, 1.0)])
    with pytest.raises(ValueError, match="Action id 2.7.* is not a whole number"):  # before: decoded as 'like'
        tokenizer.decode(torch.tensor([1.0, 2.7, 6.0]))
    assert tokenizer.decode(torch.tensor([1.0, 2.0, 6.0])) == "start like leave"
    with pytest.raises(ValueError, match="a timeline has 3 action_ids but 2 action_times"):
        tokenizer.pad([{"action_ids": [1, 2, 6], "action_times": [0.0, 1.0], "time_mask": [1, 1]},
                       {"action_ids": [1, 6], "action_times": [0.0, 2.0], "time_mask": [1, 1]}])
    tokenizer.truncation_side = "left"
    with pytest.raises(ValueError, match="truncation_side='left' would cut a timeline's start action away"):
        tokenizer(timeline, max_length=2)
    tokenizer.truncation_side = "right"
    assert A2GenActionTokenizer(model_max_length=3)(timeline, truncation=True)["action_ids"] == [1, 2, 5]
    encoding = tokenizer([("start", 0.0), ("like", None), ("leave", 4.0)])
    assert tokenizer.decode_timeline(encoding) == tokenizer.decode_timeline(
        encoding["action_ids"], encoding["action_times"], encoding["time_mask"]
    )
    assert tokenizer.decode_timeline(encoding)[1] == ("like", None)


def test_the_special_token_and_id_checks_keep_the_usual_calls_working(tokenizer):
    """From a review: a generator of ids, a batch of two-id sequences, the dict form of extra_special_tokens and
    truncation="do_not_truncate" work as before; None for a fixed role and an unknown *_token are refused."""
    assert tokenizer.convert_ids_to_tokens(i for i in [1, 2, 6]) == ["start", "like", "leave"]
    assert tokenizer([[1, 6]])["action_ids"] == [[1, 6]] and tokenizer.convert_ids_to_tokens(2) == "like"
    # One id as a 0-d tensor or numpy scalar (decode took it; this raised "iteration over a 0-d tensor").
    assert tokenizer.convert_ids_to_tokens(torch.tensor(2)) == tokenizer.convert_ids_to_tokens(np.int64(2)) == "like"
    with pytest.raises(ValueError, match="tokenizer.pad_token = None: this tokenizer's pad_token is '<pad>'"):
        tokenizer.pad_token = None
    assert A2GenActionTokenizer(extra_special_tokens={}).vocab_size == tokenizer.vocab_size
    with pytest.raises(ValueError, match=r"Cannot add \['dance'\]"):
        A2GenActionTokenizer(image_token="dance")
    with pytest.raises(ValueError, match=r"add_special_tokens\(eos_token='like'\): this tokenizer's eos_token is 'leave'"):
        tokenizer.add_special_tokens({"eos_token": "like"})
    timeline = [("start", 0.0), ("like", 1.0), ("comment", 2.0), ("leave", 5.0)]
    short = A2GenActionTokenizer(model_max_length=3)
    assert short(timeline, truncation="do_not_truncate")["action_ids"] == [1, 2, 5, 6]
    assert short.encode(timeline, truncation=True) == short(timeline, truncation=True)["action_ids"] == [1, 2, 5]


def test_a_folder_whose_config_names_an_unknown_special_token_is_refused_naming_it(tokenizer, tmp_path):
    """Earlier versions let `tokenizer.unk_token = "<unk>"` be saved (an id beyond the vocabulary); loading such a
    folder names it and the key to delete."""
    tokenizer.save_pretrained(tmp_path)
    config_file = tmp_path / "tokenizer_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "unk_token": "<unk>"}))
    with pytest.raises(ValueError, match=r"its tokenizer_config.json names a special token outside the vocabulary"):
        A2GenActionTokenizer.from_pretrained(tmp_path)


def test_an_empty_timeline_in_a_batch_is_named(tokenizer):
    """Before: the batch fell through to the text path ("Expected a pair of sequences, got 3 sequences", "Input must
    be a string ...", "You should supply an encoding ...")."""
    three = [("start", 0.0), ("like", 2.0), ("leave", 18.0)]
    for batch, index in (([three, []], 1), ([three[:2], []], 1), ([[]], 0), ([three, three, ()], 2)):
        with pytest.raises(ValueError, match=rf"Timeline {index}: The timeline is empty"):
            tokenizer(batch, padding=True)
    encoded = tokenizer([[("like", 2.0)], []], add_start=True, padding=True)  # with add_start it is a bare start
    assert encoded["action_ids"][1] == [tokenizer.convert_tokens_to_ids("start"), 0]


def test_numpy_times_are_float32_as_torch_times_are(tokenizer):
    """return_tensors="np" gave float64 times (the model refuses them) where "pt" and encode_histories give float32."""
    timeline = [("start", 0.0), ("like", 2.0), ("leave", 18.0)]
    for encoded, key in (
        (tokenizer(timeline, return_tensors="np"), "action_times"),
        (tokenizer([timeline, timeline[:2]], return_tensors="np"), "action_times"),
        (tokenizer.encode_timeline(timeline, return_tensors="np"), "action_times"),
        (tokenizer.encode_timelines([timeline], return_tensors="np"), "action_times"),
        (tokenizer.encode_labels([timeline], return_tensors="np"), "label_times"),
        (tokenizer.pad({"action_ids": [[1, 2]], "action_times": [[0.0, 0.5]], "time_mask": [[1, 1]]},
                       return_tensors="np"), "action_times"),
    ):  # fmt: skip
        assert encoded[key].dtype == np.float32, key
        assert encoded["action_ids" if key == "action_times" else "labels"].dtype == np.int64


def test_histories_keep_later_clicks_as_the_collator_does():
    """A log's item timeline may hold a later click (``click`` at 0 s and again at 127 s): the collator trains on such
    histories (about 12 % of the Taobao sample's history items), and encode_histories refused them, so a user's real
    history could not be encoded as in training. A timeline on its own still opens with its only start."""
    from a2gen_hf.data.collator import A2GenDataCollator

    tokenizer = A2GenActionTokenizer(action_names=["click", "collect", "cart", "buy", "leave"], start_action="click")
    events = [("click", 0.0), ("click", 127.0), ("cart", 130.0), ("leave", 131.0)]
    encoded = tokenizer.encode_histories([[("item-1", events)]], return_tensors="pt")
    assert encoded["history_action_ids"][0, 0].tolist() == tokenizer.convert_tokens_to_ids([name for name, _ in events])
    row = {"user_id": 1, "item_id": 2, "action_ids": [1, 5], "action_seconds": [0.0, 1.0],
           "history_item_ids": [int(encoded["history_item_ids"][0, 0])],
           "history_action_ids": [encoded["history_action_ids"][0, 0].tolist()],
           "history_action_seconds": [[seconds for _, seconds in events]]}  # fmt: skip
    collated = A2GenDataCollator(tokenizer)([row])
    for name in ("history_action_ids", "history_action_times", "history_time_mask"):
        assert torch.equal(collated[name], encoded[name].to(collated[name].dtype)), name
    with pytest.raises(TimelineError, match="Event 1 is the start action 'click', which may only open a timeline"):
        tokenizer.encode_timeline(events)
    assert tokenizer.encode_timeline(events, repeated_start=True)["action_ids"] == [1, 1, 3, 5]


# ---------------------------------------------------------------------------------------------------------------
# transformers' __call__ options on timelines


TWO_TIMELINES = [PAPER_TIMELINE, [("start", 0.0), ("leave", 3.0)]]


@pytest.mark.parametrize("truncation", [False, "do_not_truncate", TruncationStrategy.DO_NOT_TRUNCATE])
def test_do_not_truncate_in_any_spelling_is_refused_with_max_length(tokenizer, truncation):
    """Before: truncation=False with max_length was refused while "do_not_truncate" and its enum (transformers' same
    meaning) cut the timeline to max_length without a word."""
    with pytest.raises(ValueError, match=r"truncation=.* with max_length=3: timelines are cut to max_length"):
        tokenizer(PAPER_TIMELINE, max_length=3, truncation=truncation)
    assert tokenizer(PAPER_TIMELINE, truncation=truncation)["action_ids"] == [1, 2, 5, 3, 6]


def test_longest_first_cuts_as_true_and_pair_strategies_are_refused(tokenizer):
    """The strategies that cut one sequence (longest_first, only_first, as transformers cuts a single text) cut as
    True; only_second, which names a second sequence a timeline does not have, and unknown words are refused."""
    cut = tokenizer(PAPER_TIMELINE, max_length=3, truncation=True)
    for truncation in ("longest_first", TruncationStrategy.LONGEST_FIRST, "only_first", TruncationStrategy.ONLY_FIRST):
        assert dict(tokenizer(PAPER_TIMELINE, max_length=3, truncation=truncation)) == dict(cut)
    for truncation in (TruncationStrategy.ONLY_SECOND, "only_second", "sideways"):  # before: cut as True
        with pytest.raises(ValueError, match=r"truncation=.*: timelines take None, True / 'longest_first' .* or "
                                             r"False / 'do_not_truncate'"):  # fmt: skip
            tokenizer(PAPER_TIMELINE, max_length=3, truncation=truncation)
    assert dict(tokenizer(PAPER_TIMELINE, padding=True, add_special_tokens=np.bool_(True))) == dict(
        tokenizer(PAPER_TIMELINE, padding=True))  # a numpy bool is a bool


def test_transformers_call_options_pass_at_their_no_op_values(tokenizer):
    """Generic code (collators, pipelines) passes transformers' __call__ keywords at their defaults; before, any of
    them was a TypeError ("Encoding timelines takes max_length, ...")."""
    plain = dict(tokenizer(TWO_TIMELINES, padding=True))
    defaults = {"add_special_tokens": True, "return_attention_mask": None, "pad_to_multiple_of": None,
                "verbose": True, "return_token_type_ids": None, "stride": 0, "return_overflowing_tokens": False,
                "return_special_tokens_mask": False, "return_offsets_mapping": False, "return_length": False,
                "is_split_into_words": False}  # fmt: skip
    assert dict(tokenizer(TWO_TIMELINES, padding=True, **defaults)) == plain
    off = {"return_attention_mask": False, "verbose": False, "return_token_type_ids": False}
    assert dict(tokenizer(TWO_TIMELINES, padding=True, **off)) == plain
    # add_special_tokens=False is add_start=False: a timeline holds its start; add_start=True contradicts it.
    assert dict(tokenizer(PAPER_TIMELINE, add_special_tokens=False)) == dict(tokenizer(PAPER_TIMELINE))
    with pytest.raises(ValueError, match="add_special_tokens=False with add_start=True"):
        tokenizer([("like", 2.0)], add_start=True, add_special_tokens=False)
    assert tokenizer.encode(PAPER_TIMELINE, add_special_tokens=False) == [1, 2, 5, 3, 6]


@pytest.mark.parametrize(
    "name, value",
    [("stride", 2), ("is_split_into_words", True), ("return_token_type_ids", True),
     ("return_overflowing_tokens", True), ("return_special_tokens_mask", True), ("return_offsets_mapping", True)],
)  # fmt: skip
def test_transformers_call_options_timelines_cannot_honour_are_refused_by_name(tokenizer, name, value):
    with pytest.raises(ValueError, match=rf"{name}={value!r} is not supported for timelines: .*; pass "):
        tokenizer(TWO_TIMELINES, padding=True, **{name: value})
    with pytest.raises(ValueError, match=rf"{name}={value!r} is not supported for timelines"):  # before: ignored
        tokenizer.encode(PAPER_TIMELINE, **{name: value})


def test_return_attention_mask_and_return_length_are_honoured(tokenizer):
    padded = tokenizer(TWO_TIMELINES, padding=True, return_attention_mask=True, return_length=True)
    assert padded["attention_mask"] == [[1] * 5, [1, 1, 0, 0, 0]] and padded["length"] == [5, 2]
    assert padded["action_ids"] == tokenizer(TWO_TIMELINES, padding=True)["action_ids"]
    left = tokenizer(TWO_TIMELINES, padding=True, padding_side="left", return_attention_mask=True)
    assert left["attention_mask"][1] == [0, 0, 0, 1, 1] and left["action_ids"][1] == [0, 0, 0, 1, 6]
    assert tokenizer(TWO_TIMELINES, return_attention_mask=True)["attention_mask"] == [[1] * 5, [1, 1]]
    assert "attention_mask" not in tokenizer(TWO_TIMELINES, padding=True, return_attention_mask=False)
    one = tokenizer(PAPER_TIMELINE, return_attention_mask=True, return_length=True, return_tensors="pt")
    assert one["attention_mask"].tolist() == [[1] * 5] and one["length"].tolist() == [5]
    assert tokenizer(PAPER_TIMELINE, return_length=True)["length"] == 5
    with pytest.raises(ValueError, match="return_attention_mask='yes' must be True or False"):
        tokenizer(PAPER_TIMELINE, return_attention_mask="yes")


def test_pad_to_multiple_of_is_honoured_where_timelines_are_padded(tokenizer):
    padded = tokenizer(TWO_TIMELINES, padding=True, pad_to_multiple_of=4)
    assert padded["action_ids"] == [[1, 2, 5, 3, 6, 0, 0, 0], [1, 6, 0, 0, 0, 0, 0, 0]]
    assert dict(padded) == dict(tokenizer.pad(tokenizer(TWO_TIMELINES), pad_to_multiple_of=4))
    assert padded["time_mask"][1] == [1, 1, 0, 0, 0, 0, 0, 0]
    assert tokenizer(TWO_TIMELINES, pad_to_multiple_of=4, return_tensors="pt")["action_times"].shape == (2, 8)
    assert tokenizer(PAPER_TIMELINE, pad_to_multiple_of=4)["action_ids"] == [1, 2, 5, 3, 6]  # no padding asked
    with pytest.raises(ValueError, match="max_length=3 cuts the timelines and pad_to_multiple_of=4 would pad them"):
        tokenizer(TWO_TIMELINES, padding="max_length", max_length=3, pad_to_multiple_of=4)
    with pytest.raises(ValueError, match="pad_to_multiple_of=0 must be a positive integer or None"):
        tokenizer(TWO_TIMELINES, padding=True, pad_to_multiple_of=0)


def test_an_empty_batch_is_empty(tokenizer):
    """Before: tokenizer([]) failed in pad() with "You should supply an encoding ..."."""
    assert dict(tokenizer([])) == {"action_ids": [], "action_times": [], "time_mask": []}
    assert dict(tokenizer([], padding=True, return_attention_mask=True))["attention_mask"] == []
    for return_tensors in ("pt", "np"):
        encoded = tokenizer([], padding=True, return_tensors=return_tensors, return_length=True)
        assert {key: tuple(value.shape) for key, value in encoded.items()} == {
            "action_ids": (0, 0), "action_times": (0, 0), "time_mask": (0, 0), "length": (0,)}  # fmt: skip
        assert str(encoded["action_times"].dtype).endswith("float32")
        assert str(encoded["action_ids"].dtype).endswith("int64")


def test_convert_tokens_to_ids_of_none_is_none(tokenizer):
    """Before: TypeError: 'NoneType' object is not iterable; a token that is not set has no id (unk_token_id)."""
    assert tokenizer.convert_tokens_to_ids(None) is None and tokenizer.unk_token_id is None
    assert tokenizer.convert_tokens_to_ids("like") == 2 and tokenizer.convert_tokens_to_ids(["start"]) == [1]


def test_text_target_timelines_encode_as_labels(tokenizer):
    """tokenizer(text_target=...), the transformers way to ask for labels: before, a timeline there failed with
    "Expected a pair of sequences, got 2 sequences"."""
    timeline = [("start", 0.0), ("like", 2.0), ("leave", 18.0)]
    expected = tokenizer.encode_labels([timeline], return_tensors="pt")
    alone = tokenizer(text_target=timeline, return_tensors="pt")
    assert set(alone) == {"labels", "label_times", "label_time_mask"}
    assert all(torch.equal(alone[key], expected[key]) for key in expected)
    both = tokenizer([timeline, timeline[:2]], text_target=[timeline, timeline], return_tensors="pt", padding=True)
    assert both["action_ids"].shape == (2, 3) and both["labels"].shape == (2, tokenizer.max_actions + 1)
    with pytest.raises(TypeError, match=r"take only return_tensors, got \['padding'\]"):
        tokenizer(text_target=timeline, padding=True)
    one = tokenizer(timeline, text_target=timeline)  # one timeline: flat lists, the inputs' and the labels' alike
    assert one["labels"] == expected["labels"][0].tolist() and one["action_ids"] == [tokenizer.convert_tokens_to_ids(
        name) for name, _ in timeline]  # fmt: skip
    assert tokenizer(text_target=timeline)["label_times"] == pytest.approx(expected["label_times"][0].tolist())


def test_loading_from_the_vocab_file_of_a_tokenizer_folder_names_the_folder(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(OSError, match=r"is a file of a tokenizer folder; pass the folder"):
        A2GenActionTokenizer.from_pretrained(str(tmp_path / "vocab.json"))


@pytest.mark.parametrize(("mean", "std"), [(math.nan, 1.0), (0.0, 0.0), (0.0, -1.0), (math.inf, 1.0)])
def test_time_statistics_that_cannot_encode_times_are_refused_by_one_rule(mean, std):
    """The tokenizer and the metrics share time_encoding.time_statistics_problem (written three times before)."""
    from a2gen_hf.metrics import compute_action_metrics
    from a2gen_hf.time_encoding import time_statistics_problem

    assert time_statistics_problem(mean, std) is not None and time_statistics_problem(1.0, 2.0) is None
    with pytest.raises(ValueError, match=r"are invalid: both must be finite and time_log_std > 0 \(refit them"):
        A2GenActionTokenizer(time_log_mean=mean, time_log_std=std)
    predictions = {"action_probabilities": [[0.0, 0.5, 0.5, 0.5]], "expected_times": [[0.0, 0.0, 0.0, 0.0]]}
    references = {"labels": [[1, 2, 3]], "label_times": [[0.0, 0.1, 0.2]]}
    with pytest.raises(ValueError, match=r"time_log_std > 0 \(pass the model config's"):
        compute_action_metrics(predictions, references, action_names=["start", "like", "leave"], start_action="start",
                               end_action="leave", time_log_mean=mean, time_log_std=std)  # fmt: skip


def _saved_tokenizer_config(folder, **changes) -> str:
    """Save a tokenizer into ``folder``, change its tokenizer_config.json by ``changes``; the file's path."""
    A2GenActionTokenizer().save_pretrained(folder)
    path = os.path.join(folder, "tokenizer_config.json")
    with open(path, encoding="utf-8") as handle:
        saved = json.load(handle)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({**saved, **changes}, handle)
    return path


def test_a_bad_setting_in_tokenizer_config_names_the_file_and_how_to_get_it_back(tmp_path):
    """Before: "item_buckets='lots' must be a whole number." without the file or the fix (a2gen evaluate printed just
    that), while a JSON syntax error named both. A data folder's tokenizer/ says to prepare again; a model folder to
    copy the data folder's files or save the tokenizer again. The same value given as a keyword is the caller's: no
    file is blamed."""
    import re

    model_file = _saved_tokenizer_config(tmp_path / "model", item_buckets="lots")
    with pytest.raises(ValueError, match=rf"^{re.escape(model_file)}: item_buckets='lots' must be a whole number\. The "
                                         r"file was edited or is damaged: restore it, e\.g\. copy tokenizer_config\.json "
                                         r"and vocab\.json from the tokenizer/ folder of the data the model was trained "
                                         r"on \(a2gen train copies them into OUTPUT/model\)"):  # fmt: skip
        A2GenActionTokenizer.from_pretrained(tmp_path / "model")
    data = tmp_path / "data"
    data_file = _saved_tokenizer_config(data / "tokenizer", max_actions=-1)
    (data / "a2gen_data.json").write_text("{}")
    with pytest.raises(ValueError, match=rf"^{re.escape(data_file)}: max_actions=-1 must be a positive integer .*The "
                                         rf"file was edited or is damaged: restore it, or run a2gen prepare again "
                                         rf"\(it writes {re.escape(str(data))}'s tokenizer/"):  # fmt: skip
        A2GenActionTokenizer.from_pretrained(data / "tokenizer")
    _saved_tokenizer_config(tmp_path / "good")
    with pytest.raises(ValueError, match=r"^item_buckets='lots' must be a whole number\.$"):
        A2GenActionTokenizer.from_pretrained(tmp_path / "good", item_buckets="lots")
    with pytest.raises(TypeError, match=r"tokenizer_config\.json: side_feature_fields must be a list of field names"):
        A2GenActionTokenizer.from_pretrained(os.path.dirname(_saved_tokenizer_config(tmp_path / "fields",
                                                                                     side_feature_fields="category")))


def test_an_unknown_key_in_tokenizer_config_is_named_in_a_warning_and_transformers_keys_are_not(tmp_path, caplog):
    """config.json refuses unknown keys; tokenizer_config.json is transformers' open file (it keeps keys it does not
    know and writes them back; its versions add their own), so an unknown key is a warning naming the key, the file
    and the settings (before: accepted without a word, and a misspelt setting silently took its default)."""
    import logging

    path = _saved_tokenizer_config(tmp_path / "typo", item_bucketz=5)
    with caplog.at_level(logging.WARNING, logger="a2gen_hf.tokenization_a2gen"):
        loaded = A2GenActionTokenizer.from_pretrained(tmp_path / "typo")
    warnings = [record.getMessage() for record in caplog.records if "unknown key" in record.getMessage()]
    assert len(warnings) == 1 and loaded.item_buckets == A2GenActionTokenizer().item_buckets
    assert warnings[0].startswith(f"{path}: unknown key 'item_bucketz' is ignored (a misspelt 'item_buckets'?).")
    assert "action_names, end_action, item_buckets, max_actions" in warnings[0]
    caplog.clear()
    lost = _saved_tokenizer_config(tmp_path / "lost", item_bucketz=5)
    with open(lost, encoding="utf-8") as handle:
        saved = json.load(handle)
    saved.pop("item_buckets")  # the key renamed rather than added
    with open(lost, "w", encoding="utf-8") as handle:
        json.dump(saved, handle)
    with caplog.at_level(logging.WARNING, logger="a2gen_hf.tokenization_a2gen"):
        A2GenActionTokenizer.from_pretrained(tmp_path / "lost")
    assert "item_buckets is not in the file, so it takes its default" in caplog.text
    caplog.clear()
    # What transformers 4.x / 5.x write or read beside the settings (this package's own save writes tokenizer_class,
    # auto_map, added_tokens_decoder, backend, model_max_length and the special tokens) loads without a word
    # (split_special_tokens was taken for a list of special tokens before: "Cannot add ['False']").
    standard = {"clean_up_tokenization_spaces": False, "padding_side": "right", "truncation_side": "right",
                "model_input_names": ["action_ids", "action_times", "time_mask"], "split_special_tokens": False,
                "processor_class": None, "special_tokens_map_file": None, "tokenizer_file": None, "legacy": True,
                "additional_special_tokens": [], "extra_special_tokens": {}, "chat_template": None,
                "_commit_hash": None, "name_or_path": "x"}  # fmt: skip
    _saved_tokenizer_config(tmp_path / "standard", **standard)
    with caplog.at_level(logging.WARNING, logger="a2gen_hf.tokenization_a2gen"):
        A2GenActionTokenizer.from_pretrained(tmp_path / "standard")
    assert "unknown key" not in caplog.text
