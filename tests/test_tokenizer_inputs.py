"""Hostile inputs to the tokenizer's public helpers: vectorised hashing given one id, time conversion given lists or
broken seconds, and options a text call cannot honour."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from a2gen_hf import A2GenActionTokenizer
from a2gen_hf.tokenization_a2gen import raw_id_keys


@pytest.fixture
def tokenizer() -> A2GenActionTokenizer:
    return A2GenActionTokenizer(time_log_mean=2.0, time_log_std=1.5)


# --- one id given where an iterable of ids belongs (before: a string was hashed character by character) ------------


@pytest.mark.parametrize("call, raws, single", [
    ("hash_items", "abc", "use hash_item for one id"),
    ("hash_users", "u1", "use hash_user for one id"),
    ("hash_users", b"u1", "use hash_user for one id"),
    ("item_keys", "abc", "wrap one id in a list"),
    ("hash_items", 123, "use hash_item for one id"),
    ("item_keys", np.int64(7), "wrap one id in a list"),
    ("hash_items", np.array("abc"), "use hash_item for one id"),
])  # fmt: skip
def test_vectorised_hashing_refuses_one_id_naming_the_call(tokenizer, call, raws, single):
    with pytest.raises(TypeError, match=rf"^{call} takes an iterable of raw ids .*got {type(raws).__name__} .*{single}"):
        getattr(tokenizer, call)(raws)


def test_side_features_and_raw_id_keys_refuse_one_value(tokenizer):
    with pytest.raises(TypeError, match=r"hash_side_features takes an iterable .*got str 'xyz'; use "
                                        r"hash_side_feature\(field, value\) for one id"):  # fmt: skip
        tokenizer.hash_side_features("category", "xyz")
    with pytest.raises(TypeError, match=r"raw_id_keys takes an iterable of raw ids .*got str 'abc'"):
        raw_id_keys("abc")
    with pytest.raises(TypeError, match=r"raw_id_keys takes an iterable of raw ids .*got int 5"):
        raw_id_keys(5)


def test_vectorised_hashing_still_takes_every_iterable(tokenizer):
    one = tokenizer.hash_item("abc")
    for raws in (["abc"], ("abc",), np.array(["abc"]), (raw for raw in ["abc"]), torch.tensor([7])[:0]):
        got = tokenizer.hash_items(raws)
        assert got.dtype == np.int64 and (got.tolist() == [one] or got.size == 0)
    assert tokenizer.hash_users(["u1"]).tolist() == [tokenizer.hash_user("u1")]
    assert tokenizer.hash_side_features("f", ["x"]).tolist() == [tokenizer.hash_side_feature("f", "x")]
    assert tokenizer.item_keys(["abc"]).tolist() == raw_id_keys(["abc"]).tolist()


# --- normalize_seconds / denormalize_times ---------------------------------------------------------------------------

BAD_TIMES = "times must be finite seconds from 0 to 1e\\+12 \\(NaN = unknown\\)"


@pytest.mark.parametrize("seconds, where", [
    (-5.0, "seconds is -5.0"),  # before: "math domain error"
    (np.array([-1.0, 2.0]), r"seconds\[0\] is -1.0"),  # before: -inf, silently
    (np.array([1.0, np.inf]), r"seconds\[1\] is inf"),
    ([1.0, -2.0], r"seconds\[1\] is -2.0"),
    (torch.tensor([[1.0], [-3.0]]), r"seconds\[1, 0\] is -3.0"),
    (math.inf, "seconds is inf"),
    (2e12, "seconds is 2000000000000.0"),
])  # fmt: skip
def test_normalize_seconds_refuses_negative_infinite_and_far_future_seconds(tokenizer, seconds, where):
    with pytest.raises(ValueError, match=rf"normalize_seconds: {where}; {BAD_TIMES}"):
        tokenizer.normalize_seconds(seconds)


def test_time_conversions_take_lists_and_tuples_as_arrays(tokenizer):
    expected = tokenizer.normalize_seconds(np.array([1.0, 2.0]))
    for given in ([1.0, 2.0], (1, 2)):
        got = tokenizer.normalize_seconds(given)  # before: "must be real number, not list"
        assert isinstance(got, np.ndarray) and np.allclose(got, expected)
    with_unknown = tokenizer.normalize_seconds([1.0, None, math.nan])
    assert with_unknown[0] == expected[0] and np.isnan(with_unknown[1:]).all()  # NaN / None: unknown, kept
    back = tokenizer.denormalize_times(list(expected))  # before: "can't multiply sequence by non-int"
    assert isinstance(back, np.ndarray) and np.allclose(back, [1.0, 2.0])
    assert np.allclose(tokenizer.denormalize_times(tuple(expected)), [1.0, 2.0])
    # Numbers, arrays and tensors keep their type; NaN stays an unknown time.
    assert isinstance(tokenizer.normalize_seconds(3), float) and math.isnan(tokenizer.normalize_seconds(math.nan))
    assert tokenizer.normalize_seconds(torch.tensor([1.0, 2.0])).dtype == torch.float32
    assert tokenizer.normalize_seconds(np.zeros(0)).shape == (0,) and tokenizer.normalize_seconds([]).shape == (0,)


@pytest.mark.parametrize("call", ["normalize_seconds", "denormalize_times"])
@pytest.mark.parametrize("given", ["2.0", ["1", "2"], True, [True, False], None, np.array(["1"]), torch.tensor([True])])
def test_time_conversions_refuse_values_that_are_no_numbers(tokenizer, call, given):
    with pytest.raises(TypeError, match=rf"{call} takes (seconds|times) as (a )?numbers?"):
        getattr(tokenizer, call)(given)


# --- text calls refuse what they cannot honour, as timeline calls do -------------------------------------------------


def test_text_calls_refuse_unknown_and_unsupported_options(tokenizer):
    with pytest.raises(TypeError, match=r"Unknown tokenizer option\(s\) \['foo'\] for text"):
        tokenizer("start like", foo=1)  # before: {'action_ids': [1, 2]}, the option dropped
    with pytest.raises(TypeError, match=r"Unknown tokenizer option\(s\) \['retrun_tensors'\] for text"):
        tokenizer("start like", tokenizer_kwargs={"retrun_tensors": "pt"})
    with pytest.raises(ValueError, match=r"return_offsets_mapping=True is not supported: .*computes no character"):
        tokenizer("start like", return_offsets_mapping=True)  # before: no offset_mapping, no error
    with pytest.raises(ValueError, match=r"add_start=True applies to timelines"):
        tokenizer("like leave", add_start=True)  # before: no start added, silently
    with pytest.raises(TypeError, match=r"tokenizer_kwargs must be a dict"):
        tokenizer("start like", tokenizer_kwargs=1)
    with pytest.raises(TypeError, match=r"Unknown tokenizer option\(s\) \['foo'\]"):
        tokenizer(text_target="start like", foo=1)


def test_text_calls_keep_the_options_that_work_on_text(tokenizer):
    plain = tokenizer("start like")
    assert plain["action_ids"] == [1, 2]
    assert tokenizer("start like", return_token_type_ids=True)["token_type_ids"] == [0, 0]
    assert tokenizer("start like", return_special_tokens_mask=True)["special_tokens_mask"] == [0, 0]
    overflow = tokenizer("start like", return_overflowing_tokens=True, max_length=1, truncation=True, stride=0)
    assert overflow["action_ids"] == [1] and overflow["overflowing_tokens"] == [2]
    assert tokenizer(["start", "like"], is_split_into_words=True)["action_ids"] == [1, 2]
    for options in ({"return_offsets_mapping": False}, {"add_start": False}, {"verbose": False},
                    {"split_special_tokens": True}):  # fmt: skip
        assert tokenizer("start like", **options)["action_ids"] == [1, 2]
    padded = tokenizer("start like", tokenizer_kwargs={"padding": "max_length", "max_length": 4})
    assert padded["action_ids"] == [1, 2, 0, 0]
