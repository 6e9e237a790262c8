"""Action tokenizer of A2Gen: action vocabulary, timed action sequences and stable id hashing.

An A2Gen "sentence" is the timeline of one (user, item) exposure: ``[("start", 0.0), ("like", 2.0), ...,
("leave", 18.0)]``. The tokenizer turns such timelines into the id / normalised-time tensors the model reads and
back, and hashes raw user / item / side-feature ids into embedding buckets. Its vocabulary always equals
``A2GenConfig``'s: id 0 is ``<pad>``, ``action_names[i]`` has id ``i + 1``.
"""

from __future__ import annotations

import datetime
import difflib
import hashlib
import inspect
import json
import logging
import math
import numbers
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizer
from transformers.tokenization_utils_base import VERY_LARGE_INTEGER, BatchEncoding
from transformers.utils import PaddingStrategy

from .configuration_a2gen import (
    MAX_ACTIONS_LIMIT,
    PAD_ACTION,
    SHORT_VIDEO_ACTIONS,
    A2GenConfig,
    action_name_problem,
    register_the_package,
)
from .time_encoding import (
    MAX_SECONDS,
    SECONDS_RULE,
    denormalize_times,
    fit_log_statistics,
    invalid_seconds,
    normalize_seconds,
    time_statistics_problem,
)

logger = logging.getLogger(__name__)

VOCAB_FILES_NAMES = {"vocab_file": "vocab.json"}

# Settings that must agree between a tokenizer and the A2GenConfig of the model it feeds.
CONFIG_FIELDS = (
    "action_names",
    "start_action",
    "end_action",
    "time_log_mean",
    "time_log_std",
    "max_actions",
    "user_buckets",
    "item_buckets",
    "side_feature_buckets",
)

# What makes an id (or action id) in saved examples mean the same row for two tokenizers: examples a data folder's
# tokenizer hashed can be read by a model whose tokenizer agrees on these (the time statistics may differ: the
# collator normalises raw seconds with the model's own).
ID_FIELDS = ("action_names", "start_action", "end_action", "user_buckets", "item_buckets", "side_feature_buckets")

Event = tuple[str, float | None]
MAX_BUCKETS = 2**63  # hashed ids are int64 tensors


# transformers' __call__ options that timelines take only at their no-op values (generic code, collators and
# pipelines, passes them), with what another value would ask for that a timeline has not.
TIMELINE_NO_OP_OPTIONS = {
    "stride": ((0,), "timelines are cut at max_length, not split into overlapping windows"),
    "is_split_into_words": ((False,), "a timeline is already a list of (action, seconds) events"),
    "return_token_type_ids": ((None, False), "timelines have no token types (there are no pairs)"),
    "return_overflowing_tokens": ((False,), "the events past max_length are dropped, not returned"),
    "return_special_tokens_mask": ((False,), "the start and end actions are events of the timeline, not added tokens"),
    "return_offsets_mapping": ((False,), "timelines are no text: there are no characters to map"),
}


# The options a text call takes: transformers' __call__ parameters (text, text_pair, ..., tokenizer_kwargs) and the
# two that its **kwargs read (split_special_tokens, max_target_length).
TEXT_CALL_OPTIONS = frozenset({
    "text_pair", "text_target", "text_pair_target", "add_special_tokens", "padding", "truncation", "max_length",
    "stride", "is_split_into_words", "pad_to_multiple_of", "padding_side", "return_tensors", "return_token_type_ids",
    "return_attention_mask", "return_overflowing_tokens", "return_special_tokens_mask", "return_offsets_mapping",
    "return_length", "verbose", "split_special_tokens", "max_target_length",
})  # fmt: skip


class UnknownActionError(ValueError):
    """Raised when an action name is not in the tokenizer's vocabulary."""


class TimelineError(ValueError):
    """Raised when a timeline of ``(action, seconds)`` events is malformed (order, times, start/end actions)."""


def _not_unicode(error: UnicodeEncodeError) -> ValueError:
    return ValueError(
        f"Cannot hash id {error.object!r}: it is not valid Unicode text ({error.reason} at position {error.start}); "
        "decode the log as UTF-8 without 'surrogateescape' or fix the id."
    )


def hash_to_bucket(text: str, buckets: int) -> int:
    """Stable bucket of ``text`` in ``[1, buckets)``: BLAKE2b-64 of its UTF-8 bytes, little-endian, ``% (buckets - 1) + 1``."""
    try:
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    except UnicodeEncodeError as error:  # a lone surrogate has no UTF-8 bytes
        raise _not_unicode(error) from None
    return int.from_bytes(digest, "little") % (buckets - 1) + 1


def _digests(texts: Iterable[str]) -> np.ndarray:
    """BLAKE2b-64 of every string's UTF-8 bytes, little-endian, as a uint64 array of shape ``(len(texts),)``."""
    blake2b = hashlib.blake2b
    try:
        digests = b"".join([blake2b(text.encode("utf-8"), digest_size=8).digest() for text in texts])
    except UnicodeEncodeError as error:
        raise _not_unicode(error) from None
    return np.frombuffer(digests, dtype="<u8")


def hash_to_buckets(texts: Iterable[str], buckets: int) -> np.ndarray:
    """:func:`hash_to_bucket` of every string, as an int64 array of shape ``(len(texts),)``."""
    # The modulo runs on uint64 so it equals Python's arbitrary-precision ``%`` bit for bit.
    return (_digests(texts) % np.uint64(buckets - 1) + np.uint64(1)).astype(np.int64)


def hash_to_keys(texts: Iterable[str]) -> np.ndarray:
    """
    A 63-bit key of every string, int64 `(len(texts),)` in ``[0, 2**63)``: the BLAKE2b-64 digest that
    :func:`hash_to_bucket` reduces to a bucket, shifted right by one bit instead. Unlike a bucket it tells ids apart:
    two of a million distinct ids share a key with probability about 1e-7.
    """
    return (_digests(texts) >> np.uint64(1)).astype(np.int64)


def raw_id_keys(raws: Iterable[Any]) -> np.ndarray:
    """The 63-bit key (:func:`hash_to_keys`) of each raw id as the tokenizer spells it, int64 `(n,)`: tells ids apart
    where hash buckets merge them (raw item ids for popularity counts; raw users for GAUC's groups)."""
    return hash_to_keys(map(_id_text, _raw_ids(raws, "raw_id_keys")))


def _raw_ids(raws: Any, name: str, one: str | None = None) -> Iterable[Any]:
    """``raws``, an iterable of raw ids, for the vectorised hashing ``name``; a ``TypeError`` naming ``name`` for a
    single id: a str or bytes (before: hashed character by character, one id per character) or a value that is no
    iterable (an int, a 0-d array; before: "'int' object is not iterable"). ``one`` names the call for one id."""
    single = isinstance(raws, (str, bytes, bytearray)) or not isinstance(raws, Iterable) or (
        isinstance(raws, (np.ndarray, torch.Tensor)) and raws.ndim == 0)  # fmt: skip
    if single:
        shown = repr(raws) if len(repr(raws)) <= 60 else repr(raws)[:57] + "..."
        fix = f"use {one} for one id, or wrap it in a list: [id]" if one else "wrap one id in a list: [id]"
        raise TypeError(f"{name} takes an iterable of raw ids (a list, tuple, array or Series), got "
                        f"{type(raws).__name__} {shown}; {fix}.")  # fmt: skip
    return raws


# What a value is read without, at its start and end: ASCII spaces and tabs, and the Unicode spaces and invisible
# characters that spreadsheets and copied web text add (no-break space, the typographic spaces, zero-width space /
# joiners, word joiner, byte order mark). No log's id, action or time means them: `a2gen prepare` reads
# values without them, and serving's ids (_id_text) are hashed without them too.
TRIMMED_CHARACTERS = (" \t\v\f\u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
                      "\u200b\u200c\u200d\u2028\u2029\u202f\u205f\u2060\u3000\ufeff")


def _id_text(raw: Any) -> str:
    """The text an id is hashed by, as ``a2gen prepare`` reads a log's id column: a string without the spaces and
    invisible characters around it (:data:`TRIMMED_CHARACTERS`, as prepare trims every value); an integer in
    decimal; a float that holds a whole number as that integer (``7.0`` -> ``"7"``: pandas turns an integer column
    with gaps into floats); other finite floats as Python writes them; bytes as UTF-8 text. Refused, naming the
    value: None, NaN / inf, bools and values that are no scalar (lists, dicts, objects, whose text would change from
    run to run): a ValueError, as for None."""
    if isinstance(raw, str):
        return raw.strip(TRIMMED_CHARACTERS)
    if raw is None:
        raise ValueError("Cannot hash a missing id (None); drop the row or map missing ids to 0 (padding) yourself.")
    if isinstance(raw, (bool, np.bool_)):
        raise ValueError(f"Cannot hash the id {raw!r}: a bool is no id; give ids as strings or integers.")
    if isinstance(raw, (numbers.Integral, np.integer)):
        return str(int(raw))
    if isinstance(raw, (numbers.Real, np.floating)):
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError(f"Cannot hash the id {raw!r}: NaN / inf is no id (a missing value?); drop the row or fill it.")
        return str(int(value)) if value.is_integer() and abs(value) < 2.0**53 else str(value)
    if isinstance(raw, (bytes, bytearray)):
        try:
            return bytes(raw).decode("utf-8").strip(TRIMMED_CHARACTERS)
        except UnicodeDecodeError:
            raise ValueError(f"Cannot hash the id {raw!r}: its bytes are not UTF-8 text.") from None
    raise ValueError(f"Cannot hash the id {raw!r} of type {type(raw).__name__}; give ids as strings or integers.")


class DamagedTokenizerFileError(json.JSONDecodeError):
    """A tokenizer file (``vocab.json``, ``tokenizer_config.json``) that is not valid JSON or UTF-8 text: a
    ``ValueError`` (and, for code that catches that, a ``json.JSONDecodeError``) whose message names the file, line
    and column and says to save the tokenizer again."""

    def __init__(self, path: Any, error: json.JSONDecodeError | UnicodeDecodeError):
        if isinstance(error, json.JSONDecodeError):
            super().__init__(error.msg, error.doc, error.pos)
            message = f"{path}, line {error.lineno}, column {error.colno}: {error.msg}"
        else:
            super().__init__(error.reason, "", error.start)
            message = f"{path}: not UTF-8 text ({error.reason})"
        self.path = str(path)
        self.args = (f"{message}; the tokenizer file is damaged: save the tokenizer again.",)

    def __str__(self) -> str:
        return self.args[0]

    def __reduce__(self):  # pickles as the ValueError it reads as (JSONDecodeError's own takes other arguments)
        return ValueError, self.args


def _read_json(path: str) -> Any:
    """A tokenizer file's JSON; a damaged one is a :class:`DamagedTokenizerFileError` naming the file, line and
    column."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DamagedTokenizerFileError(path, error) from None


def _tokenizer_config_path(name_or_path: Any, options: Mapping[str, Any]) -> str:
    """Where ``from_pretrained(name_or_path, **options)`` read ``tokenizer_config.json`` (a folder's file, or the
    copy of a Hub repository's in the cache), to name it in an error."""
    subfolder = options.get("subfolder") or ""
    local = os.path.join(str(name_or_path), subfolder, "tokenizer_config.json")
    if os.path.isdir(str(name_or_path)):
        return local
    try:
        from transformers.utils import cached_file

        found = cached_file(
            name_or_path, "tokenizer_config.json", cache_dir=options.get("cache_dir"), revision=options.get("revision"),
            subfolder=subfolder, local_files_only=True, _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )  # fmt: skip
    except Exception:  # only to name the file: a failed look-up names the repository's file instead
        found = None
    return found or f"{name_or_path}/{subfolder + '/' if subfolder else ''}tokenizer_config.json"


# Keys of tokenizer_config.json that transformers (4.x and 5.x) writes or reads besides a tokenizer's own settings:
# not this tokenizer's settings, but no sign of a damaged file either. Special tokens (``*_token``, ``*_tokens``) and
# private keys (``_...``) are known by their form.
TRANSFORMERS_TOKENIZER_KEYS = frozenset({
    "tokenizer_class", "auto_map", "added_tokens_decoder", "backend", "model_max_length", "max_len", "padding_side",
    "truncation_side", "model_input_names", "clean_up_tokenization_spaces", "split_special_tokens", "chat_template",
    "response_template", "response_schema", "chat_control_tokens", "processor_class", "name_or_path", "init_inputs",
    "model_specific_special_tokens", "special_tokens_map_file", "tokenizer_file", "add_bos_token", "add_eos_token",
    "add_prefix_space", "legacy", "use_fast", "files_loaded", "token_type_ids_pattern",
    "token_type_ids_include_special_tokens", "special_tokens_pattern", "device_map", "slow_tokenizer_class",
    "fast_tokenizer_files", "verbose", "spaces_between_special_tokens", "sp_model_kwargs", "is_local",
    "local_files_only", "trust_remote_code", "fix_mistral_regex", "extra_special_tokens", "additional_special_tokens",
})  # fmt: skip


def _rewrite_hint(config_file: Any) -> str:
    """How to get a good ``tokenizer_config.json`` back, in the terms of the folder that holds it: a data folder's
    ``tokenizer/`` (written by ``a2gen prepare``) or a model folder (``a2gen train`` copies the data folder's)."""
    folder = Path(str(config_file)).parent
    if folder.name == "tokenizer":  # a data folder's (this module travels to the Hub: it cannot read data.folder)
        return (f"The file was edited or is damaged: restore it, or run a2gen prepare again (it writes "
                f"{folder.parent}'s tokenizer/ and examples together; in a model folder, copy the training data's "
                "tokenizer/ files instead).")  # fmt: skip
    return ("The file was edited or is damaged: restore it, e.g. copy tokenizer_config.json and vocab.json from the "
            "tokenizer/ folder of the data the model was trained on (a2gen train copies them into OUTPUT/model), or "
            "save the tokenizer again (tokenizer.save_pretrained(folder)).")  # fmt: skip


def _time_values(values: Any, name: str, what: str) -> Any:
    """``values`` for :meth:`A2GenActionTokenizer.normalize_seconds` / ``denormalize_times`` (``name``): a real
    number, a numeric numpy array or tensor as given, a list or tuple as a float64 array (None = NaN, unknown); a
    ``TypeError`` naming the accepted types for anything else (text, bools, None)."""
    if isinstance(values, (list, tuple)):
        try:
            array = np.asarray([math.nan if value is None else value for value in values])
        except ValueError as error:  # ragged nesting
            raise TypeError(f"{name}: {what} {values!r} is no rectangular list of numbers ({error}).") from None
        if array.size and array.dtype.kind not in "iuf":
            raise TypeError(f"{name} takes {what} as numbers (a float, a list, numpy array or tensor of them; None or "
                            f"NaN = unknown), got {values!r}: convert them, e.g. [float(value) for value in ...].")  # fmt: skip
        return array.astype(np.float64)
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "iuf":
            raise TypeError(f"{name} takes {what} as numbers, got an array of dtype {values.dtype}; convert it with "
                            ".astype(float).")  # fmt: skip
        return values
    if isinstance(values, torch.Tensor):
        if values.dtype == torch.bool or values.is_complex():
            raise TypeError(f"{name} takes {what} as numbers, got a tensor of dtype {values.dtype}; convert it with "
                            ".float().")  # fmt: skip
        return values
    if isinstance(values, (bool, np.bool_)) or not isinstance(values, (numbers.Real, np.number)):
        raise TypeError(f"{name} takes {what} as a number, or a list, tuple, numpy array or tensor of numbers, got "
                        f"{type(values).__name__} {values!r}.")  # fmt: skip
    return values


def _checked_seconds(seconds: Any) -> Any:
    """``seconds`` (a number, array or tensor), refused with a ``ValueError`` naming the first value that breaks
    :data:`~a2gen_hf.time_encoding.SECONDS_RULE` (:func:`~a2gen_hf.time_encoding.invalid_seconds`)."""
    if isinstance(seconds, (torch.Tensor, np.ndarray)):
        bad = invalid_seconds(seconds)
        if not bad.any():
            return seconds
        position = [int(index) for index in (bad.nonzero()[0] if isinstance(bad, torch.Tensor) else np.argwhere(bad)[0])]
        where, value = f"seconds{position}", seconds[tuple(position)].item()
    elif bool(invalid_seconds(np.float64(seconds))):
        where, value = "seconds", seconds
    else:
        return seconds
    raise ValueError(f"normalize_seconds: {where} is {value!r}; {SECONDS_RULE}.")


def _whole_number(name: str, value: Any) -> int:
    """``value`` as an int where it is a whole number (3, 3.0, numpy ints); a ``ValueError`` naming ``name`` for
    2.7, "3", True or None (before: 2.7 silently became 2)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value).is_integer():
        raise ValueError(f"{name}={value!r} must be a whole number.")
    return int(value)


def _float32_times(encoding: BatchEncoding) -> BatchEncoding:
    """NumPy arrays built from Python floats are float64; times are float32 on every path (``"pt"`` builds float32,
    and the model refuses float64 times), so ``return_tensors="np"`` gives float32 too."""
    for key, value in encoding.items():
        if isinstance(value, np.ndarray) and value.dtype == np.float64:
            encoding[key] = value.astype(np.float32)
    return encoding


_ENTRY_FORMS = {2: "(item, timeline) pair", 3: "(item, timeline, session_start) triple"}


# The largest Unix time taken as seconds: a time in milliseconds (1.7e12 in 2024) or microseconds is refused.
MAX_UNIX_SECONDS = 1e11


def _unix_seconds(value: Any, what: str) -> float:
    """A finite real number of seconds (an int, a float, a NumPy or 0-d torch number; not a bool or a string), or a
    timezone-aware ``datetime.datetime`` (its ``timestamp()``; a naive one, a ``numpy.datetime64`` or a date text is
    refused, saying how to convert it: each could be in any time zone)."""
    _refuse_coarse_seconds(value, what)
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_complex() and value.dtype != torch.bool:
        value = value.item()
    if isinstance(value, datetime.datetime) and _is_timezone_aware(value):
        if value.timestamp() > MAX_UNIX_SECONDS:
            raise ValueError(f"{what}={value.isoformat()} lies after the year 5138, beyond any log's time: check the date.")
        value = value.timestamp()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"{what} must be a number of Unix seconds or a timezone-aware datetime, got {type(value).__name__} "
            f"{value!r}{_to_seconds_hint(value)}."
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number of Unix seconds, got {value!r}.")
    if abs(value) > MAX_UNIX_SECONDS:
        raise ValueError(
            f"{what}={value:g} is beyond {MAX_UNIX_SECONDS:g} s (the year 5138): give Unix seconds, not milliseconds "
            "or microseconds (divide by 1000 or 1e6)."
        )
    return value


def _refuse_coarse_seconds(value: Any, what: str) -> None:
    """Refuse Unix seconds held by a float narrower than 64 bits (a float32 NumPy number or 0-d tensor, as
    ``torch.tensor(1.7e9)`` makes) whose value it no longer holds to the second: a float32 keeps today's Unix times
    only to 128 s, so a session 30 s old read as 0 s, silently."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and value.is_floating_point():
        dtype, number = value.dtype, float(value)
    elif isinstance(value, np.floating) and value.dtype.itemsize < 8:
        dtype, number = torch.float16 if value.dtype == np.float16 else torch.float32, float(value)
    else:
        return
    if dtype.itemsize >= 8 or not math.isfinite(number) or number == 0:
        return
    step = torch.finfo(dtype).eps * 2.0 ** math.floor(math.log2(abs(number)))  # the gap between neighbouring values
    if step > 1:
        raise ValueError(
            f"{what}={number:.0f} is a {str(dtype).removeprefix('torch.')} number, which holds a Unix time of this "
            f"size only to {step:g} s: give it as an int or a float64 (int(value), or torch.tensor(..., "
            "dtype=torch.float64); torch.tensor(1.7e9) makes a float32)."
        )


def _is_timezone_aware(value: datetime.datetime) -> bool:
    """Whether ``value`` names one instant (it has a UTC offset); False for a naive datetime and pandas' NaT."""
    try:
        return value.utcoffset() is not None
    except ValueError:  # pandas.NaT: "NaTType does not support utcoffset"
        return False


def _to_seconds_hint(value: Any) -> str:
    """How to turn ``value`` (a date text, a naive datetime, a ``numpy.datetime64``) into Unix seconds; "" for other
    values."""
    if isinstance(value, (str, bytes)):
        return (
            "; convert a date text first, e.g. int(datetime.fromisoformat(text).timestamp()) for a text with its UTC "
            "offset ('2017-11-30T00:00:00Z', '...+08:00')"
        )
    if isinstance(value, datetime.datetime) and value != value:  # pandas.NaT
        return ": a missing time; give the time in Unix seconds"
    if isinstance(value, datetime.datetime):
        return (
            ", a naive datetime (no time zone, so its instant is unknown): attach its zone, e.g. "
            "value.replace(tzinfo=datetime.timezone.utc) where it is UTC, or give Unix seconds"
        )
    if isinstance(value, datetime.date):
        return ": a date has no time of day"
    if isinstance(value, np.datetime64):
        return (
            ", which carries no time zone: give Unix seconds, e.g. int(np.datetime64(value, 's').astype(int)) where "
            "it is UTC"
        )
    if isinstance(value, np.ndarray) and value.dtype.kind == "M":
        return (
            ", which carries no time zone: give Unix seconds, e.g. values.astype('datetime64[s]').astype(int) where "
            "they are UTC"
        )
    return ""


def _request_times(now: Any, batch: int) -> list[float]:
    """``encode_histories``'s ``now``: one number for the batch, or one per example -> one float per example."""
    if isinstance(now, np.ndarray) and now.dtype.kind == "M":  # tolist() would give naive datetimes or nanoseconds
        raise ValueError(f"now must be Unix seconds, got a datetime64 array{_to_seconds_hint(now)}.")
    if isinstance(now, np.ndarray) or (isinstance(now, torch.Tensor) and now.dim() > 0):
        now = list(now)  # its numbers keep their dtype: a float32 one is refused as such
    if isinstance(now, Sequence) and not isinstance(now, (str, bytes)):  # a text is refused as one time, with a hint
        if len(now) != batch:
            raise ValueError(
                f"now holds {len(now)} times for {batch} histories; give one request time (Unix seconds) per example, "
                "or one number for all."
            )
        return [_unix_seconds(value, f"now[{row}]") for row, value in enumerate(now)]
    return [_unix_seconds(now, "now")] * batch


def _check_request_time_given(width: int, request_times: list[float] | None, row: int, index: int) -> None:
    """Triples need ``now`` (their ages count to it); pairs refuse it (they carry no session start to age)."""
    if width == 3 and request_times is None:
        raise ValueError(
            f"History {row}, item {index}: an (item, timeline, session_start) triple, but no now=...: pass the "
            "request's time (Unix seconds of the session the targets are shown in) so that the history items' ages "
            "(now - session_start) can be given, or give (item, timeline) pairs."
        )
    if width == 2 and request_times is not None:
        raise ValueError(
            f"History {row}, item {index}: an (item, timeline) pair, but now=... was given: the ages need each history "
            "item's session start; give (item, timeline, session_start) triples, or leave now out."
        )


def _history_item_age(session_start: Any, now: float, row: int, index: int) -> float:
    """Whole seconds from a history item's session start to the request (``now``), both floored as prepare floors
    them (so that the ages are the collator's), refused when it starts after it."""
    start = _unix_seconds(session_start, f"History {row}, item {index}: session_start")
    if start > now:
        raise ValueError(
            f"History {row}, item {index}: session_start={session_start!r} is after now={now!r}; a history session "
            "starts no later than the request (both Unix seconds)."
        )
    return float(math.floor(now) - math.floor(start))


def _timeline_truncation(truncation: Any) -> bool | None:
    """``truncation`` of a timeline call as None (unset), True (keep the first ``max_length`` events) or False (cut
    nothing): transformers' strategy names and ``TruncationStrategy`` members (strings) mean what the bools mean
    (before: ``"do_not_truncate"`` with ``max_length`` cut the timeline where ``False`` was refused)."""
    if truncation is None or isinstance(truncation, bool):
        return truncation
    # "only_first" cuts the first (here: the only) sequence, as transformers does for a single text.
    if isinstance(truncation, str) and truncation in ("longest_first", "only_first", "do_not_truncate"):
        return truncation != "do_not_truncate"
    raise ValueError(
        f"truncation={truncation!r}: timelines take None, True / 'longest_first' / 'only_first' (keep the first "
        "max_length events) or False / 'do_not_truncate'; 'only_second' cuts the second text of a pair, and a "
        "timeline is one sequence."
    )


def _same_option(value: Any, option: Any) -> bool:
    """``value`` is the option value ``option``: the same bool or None (``0`` is no ``False``), or an equal integer."""
    if option is None or isinstance(option, bool):
        return value is option or (isinstance(value, np.bool_) and bool(value) is option)
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)) and value == option


def _check_flag(name: str, value: Any, allow_none: bool = False) -> None:
    """A ``ValueError`` naming ``name`` unless ``value`` is a bool (or None where ``allow_none``)."""
    if not (isinstance(value, (bool, np.bool_)) or (allow_none and value is None)):
        raise ValueError(f"{name}={value!r} must be True or False{' (or None)' if allow_none else ''}.")


def _is_seconds(value: Any) -> bool:
    """A real number (not a bool), or one held by a 0-d tensor or array: what a timeline's time may be."""
    if isinstance(value, torch.Tensor):
        return value.ndim == 0 and not value.dtype.is_complex and value.dtype != torch.bool
    if isinstance(value, np.ndarray):
        return value.ndim == 0 and (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer))
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class A2GenActionTokenizer(PreTrainedTokenizer):
    r"""
    Tokenizer of A2Gen action timelines.

    Vocabulary: id 0 is ``<pad>`` (the pad token), ``action_names[i]`` has id ``i + 1``, exactly as in
    :class:`A2GenConfig`; ``start_action`` is the bos token and ``end_action`` the eos token. Calling the tokenizer on
    text maps whitespace-separated action names to ids (``tokenizer("start like leave")["action_ids"] == [1, 2, 6]``,
    ``tokenizer.encode("start like leave") == [1, 2, 6]``); calling it on a timeline of ``(action, seconds)`` events,
    or on a list of timelines, encodes them with :meth:`encode_timeline` / :meth:`encode_timelines`. The vocabulary is
    fixed: ``add_tokens`` / ``add_special_tokens`` refuse actions it does not have.

    Model inputs: :meth:`encode_histories` returns the history tensors and :meth:`encode_labels` the label tensors under
    the names ``forward`` takes (``history_item_ids``, ``history_action_ids``, ``history_action_times``, ...,
    ``labels``, ``label_times``, ``label_time_mask``); the ``action_ids`` / ``action_times`` of a timeline encoding
    are EAG's decoder input of the same names (``time_mask`` has no forward argument: unknown times are 0.0).

    Times are encoded once, here: ``z = (log1p(seconds) - time_log_mean) / time_log_std`` (see
    ``a2gen_hf.time_encoding``), with the two statistics fitted on the training split by
    :meth:`fit_time_statistics` and saved with the tokenizer.

    Raw ids are hashed into embedding buckets with :meth:`hash_user`, :meth:`hash_item` and
    :meth:`hash_side_feature`: BLAKE2b with an 8-byte digest of the UTF-8 string ``str(raw)`` (side features hash
    ``f"{field}={raw}"``), read as a little-endian unsigned integer, taken modulo ``buckets - 1``, plus 1. Results lie
    in ``[1, buckets)`` (0 is padding) and do not depend on the process, the platform or ``PYTHONHASHSEED``.
    :meth:`item_keys` keeps 63 bits of the same digest instead, to tell items apart where buckets collide. Because
    ``str(raw)`` is hashed, ``123`` and ``"123"`` share a bucket while ``123.0`` does not: pass ids as the log spells
    them.

    Args:
        action_names (`list[str]`, *optional*): the action vocabulary without padding; defaults to the short-video
            actions ``start, like, follow, forward, comment, leave``.
        start_action / end_action (`str`): the actions that open (at 0 s) and close every timeline.
        time_log_mean / time_log_std (`float`): statistics of ``log1p(seconds)``.
        max_actions (`int`): K, the number of actions a model generates after ``start_action``.
        user_buckets / item_buckets / side_feature_buckets (`int`): hash-bucket counts, bucket 0 included.
        vocab_file (`str`, *optional*): a ``vocab.json`` written by :meth:`save_vocabulary`; checked against
            ``action_names`` (or, when ``action_names`` is not given, the source of it).
    """

    vocab_files_names = VOCAB_FILES_NAMES
    model_input_names = ["action_ids", "action_times", "time_mask"]

    def __init__(
        self,
        action_names: Sequence[str] | None = None,
        start_action: str = "start",
        end_action: str = "leave",
        time_log_mean: float = 0.0,
        time_log_std: float = 1.0,
        max_actions: int = 6,
        user_buckets: int = 100_000,
        item_buckets: int = 1_000_000,
        side_feature_buckets: int = 100_000,
        vocab_file: str | None = None,
        side_feature_fields: Sequence[str] | None = None,
        **kwargs,
    ):
        if vocab_file is not None:
            action_names = self._action_names_from_vocab_file(vocab_file, action_names)
        self.action_names = list(action_names) if action_names is not None else list(SHORT_VIDEO_ACTIONS)
        self.start_action = start_action
        self.end_action = end_action
        self.time_log_mean = float(time_log_mean)
        self.time_log_std = float(time_log_std)
        self.max_actions = _whole_number("max_actions", max_actions)
        self.user_buckets = _whole_number("user_buckets", user_buckets)
        self.item_buckets = _whole_number("item_buckets", item_buckets)
        self.side_feature_buckets = _whole_number("side_feature_buckets", side_feature_buckets)
        # The item side-feature field names, in the order of the ids' last dimension (saved with the tokenizer, so
        # the pipeline can hash raw side features of a checkpoint without being told the fields); None = unknown.
        if side_feature_fields is not None and (
            isinstance(side_feature_fields, str) or not all(isinstance(field, str) for field in side_feature_fields)
        ):
            raise TypeError(f"side_feature_fields must be a list of field names, got {side_feature_fields!r}.")
        self.side_feature_fields = list(side_feature_fields) if side_feature_fields is not None else None
        # The vocabulary must exist before the base class registers the special tokens against it.
        self.vocab = {PAD_ACTION: 0, **{name: index + 1 for index, name in enumerate(self.action_names)}}
        self.ids_to_actions = [PAD_ACTION, *self.action_names]
        self._validate()

        # from_pretrained adds these loading details; dropped so a reloaded tokenizer saves the same config.
        kwargs.pop("is_local", None)
        kwargs.pop("local_files_only", None)
        for key, value in (("bos_token", start_action), ("eos_token", end_action), ("pad_token", PAD_ACTION)):
            given = kwargs.pop(key, None)
            if given is not None and str(given) != value:
                raise ValueError(
                    f"{key}={str(given)!r} disagrees with this tokenizer's vocabulary, where it is {value!r}; "
                    "set start_action / end_action instead of bos_token / eos_token (the pad token is always <pad>)."
                )
            kwargs[key] = value
        # split_special_tokens (a flag transformers writes into tokenizer_config.json) names no tokens
        special = [key for key in kwargs if key.endswith(("_token", "special_tokens")) and key != "split_special_tokens"]
        for key in special:
            self._check_special_tokens(key, kwargs[key])
        register_the_package()  # the auto_map save_pretrained writes, also when this module was imported directly
        super().__init__(
            action_names=self.action_names,
            start_action=start_action,
            end_action=end_action,
            time_log_mean=self.time_log_mean,
            time_log_std=self.time_log_std,
            max_actions=self.max_actions,
            user_buckets=self.user_buckets,
            item_buckets=self.item_buckets,
            side_feature_buckets=self.side_feature_buckets,
            side_feature_fields=self.side_feature_fields,
            **kwargs,
        )
        self.__dict__["_special_tokens_fixed"] = True  # from here on, __setattr__ checks the special tokens

    def __setattr__(self, key: str, value: Any) -> None:
        """``tokenizer.pad_token = tokenizer.eos_token`` (the text-model habit) and the like are refused: padding
        would become ``leave`` events and labels. The bos / eos / pad tokens are the start action, the end action and
        ``<pad>``; other special tokens may only name tokens of the vocabulary (or None)."""
        role = key.removesuffix("_ids").removesuffix("_id") if key.endswith(("_id", "_ids")) else key
        if self.__dict__.get("_special_tokens_fixed") and (
            role in self.SPECIAL_TOKENS_ATTRIBUTES or role == "extra_special_tokens"
        ):
            tokens = value
            if key != role and value is not None:  # ids: the tokens they name (out-of-range ids refused there)
                tokens = [self._convert_id_to_token(v) for v in value] if isinstance(value, (list, tuple)) else (
                    self._convert_id_to_token(value))
            self._check_special_tokens(role, tokens, f"tokenizer.{key} = {value!r}", allow_none=False)
        super().__setattr__(key, value)

    def _check_special_tokens(self, role: str, tokens: Any, given: str | None = None, allow_none: bool = True) -> None:
        """``tokens`` (one, a list or dict of them, or None) fit the special-token ``role``: the fixed start / end /
        ``<pad>`` for bos / eos / pad (None only where ``allow_none``: a default being filled in), tokens of the
        vocabulary for the others; a ``ValueError`` naming what was given otherwise. The one home of these rules
        (the constructor, attribute assignment and ``add_special_tokens``)."""
        fixed = {"bos_token": self.start_action, "eos_token": self.end_action, "pad_token": PAD_ACTION}
        given = given or f"{role}={tokens!r}"
        if role in fixed:
            if (tokens is None and not allow_none) or (tokens is not None and str(tokens) != fixed[role]):
                raise ValueError(
                    f"{given}: this tokenizer's {role} is {fixed[role]!r} and cannot change (the actions' ids are shared "
                    "with the model; a pad token of another action would turn padding into events and labels). Set "
                    "start_action / end_action when building the tokenizer instead."
                )
            return
        if isinstance(tokens, Mapping):  # extra_special_tokens as transformers also takes them: {name: token}
            tokens = list(tokens.values())
        values = [] if tokens is None else list(tokens) if isinstance(tokens, (list, tuple)) else [tokens]
        unknown = [str(token) for token in values if str(token) not in self.vocab]
        if unknown:
            raise self._fixed_vocabulary_error(unknown)
        actions = [str(token) for token in values if str(token) not in self._special_actions()]
        if actions:
            raise ValueError(self._real_actions_special_message(actions, given))

    def _special_actions(self) -> set[str]:
        """The tokens that are special here: the start action, the end action and ``<pad>``."""
        return {self.start_action, self.end_action, PAD_ACTION}

    def _real_actions_special_message(self, actions: list[str], given: str) -> str:
        """Why real actions may not be special tokens (unk / additional / extra special, any role)."""
        return (
            f"{given}: {actions} {'is a real action' if len(actions) == 1 else 'are real actions'} of this tokenizer, "
            "which cannot be a special token: decode(..., skip_special_tokens=True) would drop every such event "
            "without a word (and the setting would be saved with the tokenizer). The special tokens are fixed: "
            f"{self.start_action!r} (bos), {self.end_action!r} (eos) and {PAD_ACTION!r} (pad); an A2Gen tokenizer has no "
            "unk, sep, cls, mask or additional special tokens."
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *init_inputs, **kwargs) -> A2GenActionTokenizer:
        """``PreTrainedTokenizer.from_pretrained``; a damaged JSON file is a :class:`DamagedTokenizerFileError`
        naming the file, line and column."""
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *init_inputs, **kwargs)
        except DamagedTokenizerFileError:
            raise
        except (json.JSONDecodeError, UnicodeDecodeError) as error:  # transformers read tokenizer_config.json
            path = _tokenizer_config_path(pretrained_model_name_or_path, kwargs)
            raise DamagedTokenizerFileError(path, error) from None
        except ValueError as error:
            if not str(error).startswith("Cannot add "):
                raise
            raise ValueError(
                f"{str(pretrained_model_name_or_path)!r}: its tokenizer_config.json names a special token outside the "
                f"vocabulary ({error}) - saved by an earlier version, which allowed it. Delete that key from "
                "tokenizer_config.json (an A2Gen tokenizer has no unk / sep / cls / mask tokens of its own)."
            ) from None

    @classmethod
    def _from_pretrained(cls, resolved_vocab_files, pretrained_model_name_or_path, init_configuration, *init_inputs,
                         **kwargs):  # fmt: skip
        # Without tokenizer files (a model saved alone) the base class would build a default tokenizer whose ids,
        # time statistics and buckets mean other things than the model's: refused, naming the two ways to get one.
        if resolved_vocab_files.get("tokenizer_config_file") is None and resolved_vocab_files.get("vocab_file") is None:
            raise OSError(
                f"{str(pretrained_model_name_or_path)!r} holds no tokenizer files (tokenizer_config.json, vocab.json): "
                "a model saved without its tokenizer? Build the tokenizer from the model's config, "
                "A2GenActionTokenizer.from_config(AutoConfig.from_pretrained(path)) (its actions, time statistics and "
                "buckets; no side-feature field names), or save the tokenizer beside the model "
                "(tokenizer.save_pretrained(path))."
            )
        config_file = resolved_vocab_files.get("tokenizer_config_file")
        given = Path(str(pretrained_model_name_or_path))
        if config_file is None and given.is_file() and (given.parent / "tokenizer_config.json").is_file():
            raise OSError(  # the transformers 4 single-file habit: the folder holds the whole tokenizer
                f"{str(pretrained_model_name_or_path)!r} is a file of a tokenizer folder; pass the folder, "
                f"A2GenActionTokenizer.from_pretrained({str(given.parent)!r}): its tokenizer_config.json holds the "
                "start and end actions, time statistics and bucket counts that vocab.json alone lacks."
            )
        if config_file is None:  # vocab.json alone (a partial copy): the rest would be defaults, silently
            raise OSError(
                f"{str(pretrained_model_name_or_path)!r} holds vocab.json but no tokenizer_config.json, which holds the "
                "tokenizer's start and end actions, time statistics and bucket counts (without it they would be "
                "defaults that mean other things than the model's): copy tokenizer_config.json too, or build the "
                "tokenizer from the model's config, A2GenActionTokenizer.from_config(AutoConfig.from_pretrained(path))."
            )
        saved = _read_json(config_file)
        if not isinstance(saved, dict):
            raise ValueError(f"{config_file} is not a JSON object of the tokenizer's settings; save the tokenizer again.")
        cls._warn_of_unknown_keys(saved, config_file)
        cls._refuse_special_actions_in_file(saved, config_file)
        try:
            return super()._from_pretrained(
                resolved_vocab_files, pretrained_model_name_or_path, init_configuration, *init_inputs, **kwargs
            )
        except (ValueError, TypeError) as error:
            # A setting of the file that the constructor refuses (item_buckets="lots"): the message names the file and
            # how to get a good one back (before: only "item_buckets='lots' must be a whole number."). Left as they
            # are: errors that name a file of the folder already and a special token outside the vocabulary (handled
            # by from_pretrained). One caused by a keyword argument of the call names the keyword (before: the file
            # was said to be edited or damaged, for bos_token="like" given to from_pretrained).
            text = str(error)
            if isinstance(error, json.JSONDecodeError) or text.startswith("Cannot add ") or (
                str(Path(str(config_file)).parent) in text
            ):
                raise
            given = cls._caller_settings(kwargs)
            if any(re.search(rf"\b{re.escape(key)}\b", text) for key in given):
                raise  # it names the keyword that caused it (bos_token='like' disagrees ...)
            if init_inputs or (given and not cls._file_is_at_fault(text, saved)):
                keywords = ", ".join(f"{key}={value!r}" for key, value in given.items()) or "positional arguments"
                message = (f"A2GenActionTokenizer.from_pretrained(..., {keywords}): {text.rstrip('. ')}. The cause is "
                           f"the keyword argument(s) given to from_pretrained, not {Path(str(config_file)).name} (read "
                           "as saved): leave them out or correct them.")
                try:
                    replaced = type(error)(message)
                except Exception:  # an error type that takes other arguments: its base type
                    replaced = TypeError(message) if isinstance(error, TypeError) else ValueError(message)
                raise replaced from None
            message = f"{config_file}: {text} {_rewrite_hint(config_file)}"
            try:
                replaced = type(error)(message)
            except Exception:  # an error type that takes other arguments: its base type
                replaced = TypeError(message) if isinstance(error, TypeError) else ValueError(message)
            raise replaced from None

    @classmethod
    def _caller_settings(cls, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments of a ``from_pretrained`` call that set the tokenizer (its settings, special tokens,
        transformers' tokenizer keys), not where the files come from."""
        return {
            key: value for key, value in kwargs.items()
            if key in cls._setting_names() or key in TRANSFORMERS_TOKENIZER_KEYS
            or (key.endswith(("_token", "_tokens")) and not key.startswith("_"))
        }  # fmt: skip

    @staticmethod
    def _file_is_at_fault(text: str, saved: Mapping[str, Any]) -> bool:
        """Whether an error's ``text`` names a key of the saved file (so the file, not a keyword, is the cause)."""
        return any(re.search(rf"\b{re.escape(str(key))}\b", text) for key in saved)

    @classmethod
    def _refuse_special_actions_in_file(cls, saved: Mapping[str, Any], config_file: Any) -> None:
        """A ``tokenizer_config.json`` that marks a real action special (``unk_token``, ``additional_special_tokens``
        / ``extra_special_tokens``, or an ``added_tokens_decoder`` entry with ``"special": true``) is refused naming
        the file: ``decode(..., skip_special_tokens=True)`` would drop the action's events without a word."""
        names = saved.get("action_names")
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            return  # the constructor names what is wrong with the file's actions
        fixed = {saved.get("start_action", "start"), saved.get("end_action", "leave"), PAD_ACTION}
        marked: dict[str, list[str]] = {}
        for key, value in saved.items():
            if key in ("bos_token", "eos_token", "pad_token") or not key.endswith(("_token", "_tokens")) or (
                key == "split_special_tokens"
            ):
                continue  # bos / eos / pad: the constructor checks them against the start, end and <pad>
            values = list(value.values()) if isinstance(value, Mapping) else value if isinstance(value, list) else [value]
            for token in values:
                token = token.get("content") if isinstance(token, Mapping) else token
                if isinstance(token, str) and token in names and token not in fixed:
                    marked.setdefault(key, []).append(token)
        decoder = saved.get("added_tokens_decoder")
        for entry in decoder.values() if isinstance(decoder, Mapping) else []:
            token = entry.get("content") if isinstance(entry, Mapping) else None
            if isinstance(token, str) and entry.get("special") and token in names and token not in fixed:
                marked.setdefault("added_tokens_decoder", []).append(token)
        if marked:
            where = "; ".join(f"{key}: {tokens}" for key, tokens in marked.items())
            raise ValueError(
                f"{config_file} marks real action(s) as special tokens ({where}): decode(..., skip_special_tokens=True) "
                "would drop their events without a word. The special tokens of an A2Gen tokenizer are its start "
                f"action, its end action and {PAD_ACTION!r}; delete those entries from the file (or save the tokenizer "
                "again)."
            )

    @classmethod
    def _setting_names(cls) -> set[str]:
        """The tokenizer's own settings: the keyword arguments of its constructor."""
        parameters = inspect.signature(cls.__init__).parameters.values()
        return {item.name for item in parameters if item.name != "self" and item.kind is item.POSITIONAL_OR_KEYWORD}

    @classmethod
    def _warn_of_unknown_keys(cls, saved: dict, config_file: Any) -> None:
        """Warn of keys of ``tokenizer_config.json`` that are neither this tokenizer's settings nor keys transformers
        writes (``item_bucketz``: a misspelt setting, whose real one then takes its default). A warning, not an error
        as ``config.json``'s unknown keys are: transformers keeps unknown tokenizer keys and writes them back, and its
        versions add and drop keys of their own, so a refusal would lock out files of another transformers version."""
        settings = cls._setting_names() - {"vocab_file"}
        unknown = sorted(
            key for key in saved
            if key not in settings and key not in TRANSFORMERS_TOKENIZER_KEYS and not key.startswith("_")
            and not key.endswith(("_token", "_tokens"))
        )  # fmt: skip
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(settings), n=1)
            meant = ""
            if close:
                default = "" if close[0] in saved else f"; {close[0]} is not in the file, so it takes its default"
                meant = f" (a misspelt {close[0]!r}?{default})"
            logger.warning(
                "%s: unknown key %r is ignored%s. The tokenizer's settings are %s; transformers' own keys (tokenizer_class, "
                "auto_map, special tokens, ...) are kept as they are. Delete or correct the key.",
                config_file, key, meant, ", ".join(sorted(settings)),
            )

    @staticmethod
    def _action_names_from_vocab_file(vocab_file: str, action_names: Sequence[str] | None) -> list[str]:
        vocab = _read_json(vocab_file)
        if not isinstance(vocab, dict) or not all(isinstance(index, int) for index in vocab.values()):
            raise ValueError(f"{vocab_file} is not an A2Gen action vocabulary (a JSON object of action -> id); save "
                             "the tokenizer again.")  # fmt: skip
        ordered = sorted(vocab, key=vocab.get)
        if ordered[:1] != [PAD_ACTION] or [vocab[name] for name in ordered] != list(range(len(ordered))):
            raise ValueError(
                f"{vocab_file} is not an A2Gen action vocabulary: it must map {PAD_ACTION!r} to 0 and the actions to "
                f"1, 2, ... without gaps, but it holds {vocab}."
            )
        if action_names is not None and list(action_names) != ordered[1:]:
            raise ValueError(
                f"{vocab_file} lists the actions {ordered[1:]}, but action_names={list(action_names)}; "
                "save the tokenizer again so that vocab.json and tokenizer_config.json agree."
            )
        return ordered[1:]

    def _validate(self) -> None:
        names = self.action_names
        if not names:
            raise ValueError("action_names is empty; give the data set's actions, e.g. ['start', 'like', 'leave'].")
        for name in names:
            if (problem := action_name_problem(name)) is not None:  # the config's rule too
                raise ValueError(problem)
        if len(set(names)) != len(names):
            raise ValueError(f"action_names has duplicates: {names}; list each action once.")
        if PAD_ACTION in names:
            raise ValueError(f"action_names must not contain {PAD_ACTION!r}: id 0 is reserved for padding.")
        for role in ("start_action", "end_action"):
            self._action_id(getattr(self, role), where=f" ({role})")
        if self.start_action == self.end_action:
            raise ValueError(f"start_action and end_action are both {self.start_action!r}; they must differ.")
        if (problem := time_statistics_problem(self.time_log_mean, self.time_log_std)) is not None:
            raise ValueError(f"{problem} (refit them with fit_time_statistics).")
        if not 1 <= self.max_actions <= MAX_ACTIONS_LIMIT:
            raise ValueError(
                f"max_actions={self.max_actions} must be a positive integer of at most {MAX_ACTIONS_LIMIT} (K: the "
                "actions a model generates after the start, one IAG slot each)."
            )
        for field in ("user_buckets", "item_buckets", "side_feature_buckets"):
            if not 2 <= getattr(self, field) <= MAX_BUCKETS:
                raise ValueError(
                    f"{field}={getattr(self, field)} must be >= 2 (bucket 0 is padding) and <= 2**63 (ids are int64)."
                )

    # ----------------------------------------------------------------------------------------------------------
    # Vocabulary (the PreTrainedTokenizer contract)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)

    @property
    def start_action_id(self) -> int:
        return self.vocab[self.start_action]

    @property
    def end_action_id(self) -> int:
        return self.vocab[self.end_action]

    def _unknown_action(self, name: Any, where: str = "") -> UnknownActionError:
        return UnknownActionError(
            f"Unknown action {name!r}{where}; known actions are: {', '.join(self.action_names)}."
        )

    def _action_id(self, name: Any, where: str = "") -> int:
        """Id of a real action (not padding); raises :class:`UnknownActionError` otherwise."""
        index = self.vocab.get(name) if isinstance(name, str) else None
        if not index:
            raise self._unknown_action(name, where)
        return index

    def _fixed_vocabulary_error(self, tokens: list[str]) -> ValueError:
        return ValueError(
            f"Cannot add {tokens}: an A2Gen tokenizer's vocabulary is the fixed action list {self.action_names} "
            "(plus <pad>), shared with the model's config, heads and embeddings. Build a tokenizer and a model with "
            "the new action_names instead (A2GenActionTokenizer(action_names=[...]), A2GenConfig(action_names=[...]))."
        )

    def add_tokens(self, new_tokens, special_tokens: bool = False) -> int:
        """Adds nothing: returns 0 for actions already in the vocabulary and refuses any other token."""
        tokens = list(new_tokens) if isinstance(new_tokens, (list, tuple)) else [new_tokens]
        unknown = [str(token) for token in tokens if str(token) not in self.vocab]
        if unknown:
            raise self._fixed_vocabulary_error(unknown)
        return 0

    def add_special_tokens(self, special_tokens_dict, replace_extra_special_tokens: bool = True) -> int:
        """Refuses tokens outside the vocabulary and a bos / eos / pad token other than start / end / ``<pad>``."""
        for key, value in dict(special_tokens_dict or {}).items():
            self._check_special_tokens(key, value, f"add_special_tokens({key}={value!r})")
        return super().add_special_tokens(special_tokens_dict, replace_extra_special_tokens)

    @staticmethod
    def _is_timeline(value: Any) -> bool:
        """A non-empty sequence of ``(action name, time)`` pairs whose times are not text (``("a b", "c")`` pairs
        are text pairs, as for any tokenizer); whether each time is seconds or None is checked when encoding, so
        that a bad one is named."""
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
            return False
        # An action given as an id is a timeline too, so that encoding names it, where the events are tuples or a time
        # is a float or None ([(1, 0.0)]); lists of two ints ([[1, 6]]) stay a batch of token ids, as in any tokenizer.
        events = all(
            isinstance(event, (tuple, list))
            and len(event) == 2
            and isinstance(event[0], (str, numbers.Integral))
            and not isinstance(event[1], (str, bytes))
            for event in value
        )
        named = events and all(isinstance(event[0], str) for event in value)
        timed = events and any(
            isinstance(event, tuple) or event[1] is None or isinstance(event[1], float) for event in value
        )
        return named or timed

    def __call__(self, text=None, *args, **kwargs) -> BatchEncoding:
        """
        Text (action names separated by whitespace) as in any tokenizer; a timeline ``[(action, seconds), ...]`` or a
        list of timelines through :meth:`encode_timeline` / :meth:`encode_timelines`. Timelines take ``max_length``
        (keep the first events), ``truncation`` (None, True / ``"longest_first"``; False / ``"do_not_truncate"``
        only without ``max_length``), ``padding`` (``True`` / ``"longest"`` or ``"max_length"``),
        ``pad_to_multiple_of``, ``padding_side``, ``add_start``, ``return_attention_mask`` (True adds
        ``attention_mask``, 1 per event and 0 per padding), ``return_length`` (``length``: the events kept per
        timeline) and ``return_tensors``, and return a :class:`~transformers.BatchEncoding` of ``action_ids``,
        ``action_times`` and ``time_mask``: lists, or with ``return_tensors`` tensors of shape (B, T), (1, T) for
        one timeline as for one text; a batch of timelines of different lengths is padded to the longest for
        tensors, as :meth:`encode_timelines` pads it. ``add_special_tokens`` adds nothing (a timeline holds its start;
        ``add_start`` prepends one) and transformers' other options are taken at their no-op values
        (:data:`TIMELINE_NO_OP_OPTIONS`). An empty list is an empty batch: empty lists, or (0, 0) tensors.

        ``text_target=`` target timeline(s) adds ``labels`` / ``label_times`` / ``label_time_mask`` as
        :meth:`encode_labels` builds them (the first ``max_actions + 1`` events, padded to that many; flat lists for
        one timeline without ``return_tensors``, as ``text``'s); the other options apply to ``text``, and without
        ``text`` only ``return_tensors`` is taken.
        """
        target = kwargs.get("text_target")
        if self._is_timeline(target) or (isinstance(target, (list, tuple)) and target and all(
            self._is_timeline(item) for item in target
        )):
            kwargs.pop("text_target")
            labels = self.encode_labels(
                [target] if self._is_timeline(target) else target, return_tensors=kwargs.get("return_tensors")
            )
            if self._is_timeline(target) and kwargs.get("return_tensors") is None:  # one timeline, one text: flat lists
                labels = BatchEncoding({name: rows[0] for name, rows in labels.items()})
            if text is None:
                options = sorted(set(kwargs) - {"return_tensors"})
                if options or args:
                    raise TypeError(
                        f"text_target= timelines alone are encoded as encode_labels encodes them and take only "
                        f"return_tensors, got {options or list(args)}; pass the inputs' timelines as text to apply "
                        "options to them."
                    )
                return labels
            encoding = self(text, *args, **kwargs)
            encoding.update(labels)
            return encoding
        if target is not None and text is not None:
            # Text targets as transformers encodes them: the target's ids as `labels`, with the call's options
            # (before: KeyError 'input_ids', the base class's name for what this tokenizer calls action_ids).
            kwargs.pop("text_target")
            pair_target = kwargs.pop("text_pair_target", None)
            target_encoding = self(target, *([pair_target] if pair_target is not None else []), **kwargs)
            encoding = self(text, *args, **kwargs)
            encoding["labels"] = target_encoding["action_ids"]
            return encoding
        single = self._is_timeline(text)
        # An empty timeline in a batch of timelines (or a batch of empty ones) is encoded, so that encoding names it;
        # an empty list is an empty batch (before: transformers' text path failed in pad()).
        if single or (isinstance(text, (list, tuple)) and all(
            self._is_timeline(item) or (isinstance(item, (list, tuple)) and not item) for item in text
        )):
            if args:
                raise TypeError("Timelines take no second sequence; pass options by keyword (max_length=...).")
            return self._call_timelines([text] if single else text, single, **kwargs)
        self._refuse_text_times(text)
        self._check_text_options(kwargs)
        return super().__call__(text, *args, **kwargs)

    @staticmethod
    def _check_text_options(kwargs: dict[str, Any]) -> None:
        """Text calls take transformers' ``__call__`` options (they work on text as for any slow tokenizer); an
        option no tokenizer call has (a typo), one a text call cannot honour (``return_offsets_mapping=True``: this
        Python tokenizer computes no character offsets) and the timeline-only ``add_start`` are refused, naming them
        (before: dropped silently, while the same options on a timeline were refused)."""
        extra = kwargs.get("tokenizer_kwargs")
        if extra is not None and not isinstance(extra, Mapping):
            raise TypeError(f"tokenizer_kwargs must be a dict of __call__ options, got {extra!r}.")
        options = {**(extra or {}), **{name: value for name, value in kwargs.items() if name != "tokenizer_kwargs"}}
        unknown = sorted(set(options) - TEXT_CALL_OPTIONS - {"add_start"})
        if unknown:
            raise TypeError(
                f"Unknown tokenizer option(s) {unknown} for text; a text call takes transformers' __call__ options "
                f"({', '.join(sorted(TEXT_CALL_OPTIONS))}). Check the spelling, or drop them."
            )
        if options.get("add_start"):
            raise ValueError(
                "add_start=True applies to timelines [(action, seconds), ...]; text is encoded as written: begin it "
                "with the start action instead (e.g. 'start like')."
            )
        if options.get("return_offsets_mapping"):
            raise ValueError(
                "return_offsets_mapping=True is not supported: this tokenizer (a Python tokenizer that splits action "
                "names on whitespace) computes no character offsets; pass False or leave it out (the i-th id is the "
                "i-th whitespace-separated name)."
            )

    def _text_time(self, value: Any) -> bool:
        """A text pair's second text that is a number and no action: a timeline's time read from a file as text."""
        if not isinstance(value, str) or value.strip() in self.vocab:
            return False
        try:
            float(value)
        except ValueError:
            return False
        return True

    def _refuse_text_times(self, text: Any) -> None:
        """``[("like", "2.0"), ...]`` (or a list of such) is a batch of text pairs to transformers; refuse it as the
        timeline it is meant to be, whose times are text (before: "Unknown action '2.0'")."""
        if not isinstance(text, (list, tuple)) or not text:
            return

        def events(value: Any) -> bool:
            return (isinstance(value, (list, tuple)) and bool(value) and isinstance(value[0], (list, tuple))
                    and len(value[0]) == 2 and isinstance(value[0][0], str))  # fmt: skip

        timelines = [text] if events(text) else [item for item in text if events(item)]
        for index, timeline in enumerate(timelines):
            for position, event in enumerate(timeline):
                if isinstance(event, (list, tuple)) and len(event) == 2 and self._text_time(event[1]):
                    where = f"Timeline {index}: event" if timeline is not text else "Event"
                    raise TypeError(
                        f"{where} {position} ({event[0]!r}, {event[1]!r}) has its time as text; a timeline's times "
                        f"are numbers of seconds or None: convert them, e.g. [(action, float(seconds)) for action, "
                        f"seconds in events]."
                    )

    def _call_timelines(
        self,
        timelines,
        single: bool,
        max_length: int | None = None,
        padding: bool | str = False,
        add_start: bool = False,
        return_tensors: str | None = None,
        truncation: bool | str | None = None,
        padding_side: str | None = None,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_length: bool = False,
        add_special_tokens: bool = True,
        verbose: bool = True,
        **options,
    ) -> BatchEncoding:
        self._check_call_options(options, add_special_tokens, add_start, verbose)
        _check_flag("return_attention_mask", return_attention_mask, allow_none=True)
        _check_flag("return_length", return_length)
        max_length = self._timeline_max_length(truncation, max_length)
        if padding not in (False, True, "longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding={padding!r}: use False, True / 'longest' or 'max_length'.")
        to_max_length = padding == "max_length"
        if to_max_length and max_length is None:
            raise ValueError("padding='max_length' needs max_length; give the length to pad to.")
        # Tensors of a batch are padded to its longest timeline even without padding (encode_timelines does so).
        pads = to_max_length or padding in (True, "longest") or bool(return_tensors and not single)
        self._check_pad_to_multiple_of(pad_to_multiple_of, max_length if pads else None)
        if not timelines:
            return self._empty_batch(return_tensors, bool(return_attention_mask), return_length)
        encoding = self.encode_timelines(timelines, max_length, add_start=add_start)
        lengths = [len(ids) for ids in encoding["action_ids"]]
        if pads or return_attention_mask:
            encoding = dict(self.pad(encoding, padding=("max_length" if to_max_length else "longest") if pads else False,
                                     max_length=max_length if to_max_length else None,
                                     pad_to_multiple_of=pad_to_multiple_of,
                                     return_attention_mask=bool(return_attention_mask),
                                     padding_side=padding_side))  # fmt: skip
        if return_length:
            encoding["length"] = lengths
        if single:
            encoding = {key: value[0] for key, value in encoding.items()}
        # One timeline with tensors is a batch of one, (1, T), as one text is in transformers; lists stay (T,).
        return _float32_times(BatchEncoding(encoding, tensor_type=return_tensors, prepend_batch_axis=single))

    def _timeline_max_length(self, truncation: Any, max_length: int | None) -> int | None:
        """The number of first events a timeline call keeps (None: all), from ``truncation`` and ``max_length``."""
        cuts = _timeline_truncation(truncation)
        if cuts is False and max_length is not None:
            raise ValueError(
                f"truncation={truncation!r} with max_length={max_length!r}: timelines are cut to max_length; "
                "leave truncation unset (or True) with max_length."
            )
        if cuts and max_length is None and self.model_max_length < VERY_LARGE_INTEGER:
            max_length = self.model_max_length  # as text: truncation=True cuts to model_max_length
        if max_length is not None and self.truncation_side == "left":
            raise ValueError(
                "truncation_side='left' would cut a timeline's start action away: timelines keep their first "
                "max_length events (the start opens them). Set truncation_side='right' (the default)."
            )
        return max_length

    @staticmethod
    def _check_call_options(options: dict[str, Any], add_special_tokens: Any, add_start: bool, verbose: Any) -> None:
        """transformers' other ``__call__`` options at their no-op values pass; another value, or an option no
        tokenizer call has, is refused naming it (generic code passes them; none may change the encoding silently)."""
        unknown = sorted(set(options) - set(TIMELINE_NO_OP_OPTIONS))
        if unknown:
            raise TypeError(
                f"Encoding timelines takes max_length, truncation, padding, pad_to_multiple_of, padding_side, "
                f"add_start, return_attention_mask, return_length and return_tensors (and transformers' "
                f"add_special_tokens, verbose, {', '.join(TIMELINE_NO_OP_OPTIONS)} at their defaults); got {unknown}."
            )
        for name, value in options.items():
            allowed, reason = TIMELINE_NO_OP_OPTIONS[name]
            if not any(_same_option(value, option) for option in allowed):
                shown = " or ".join(repr(option) for option in allowed)
                raise ValueError(f"{name}={value!r} is not supported for timelines: {reason}; pass {shown} or leave "
                                 "it out.")  # fmt: skip
        _check_flag("add_special_tokens", add_special_tokens)
        _check_flag("verbose", verbose)
        if not add_special_tokens and add_start:
            raise ValueError(
                "add_special_tokens=False with add_start=True: add_start prepends the start action (the bos token), "
                "the one token a timeline call adds; pass add_start=False or leave add_special_tokens out."
            )

    @staticmethod
    def _check_pad_to_multiple_of(multiple: Any, max_length: int | None) -> None:
        """``pad_to_multiple_of`` is None or a positive integer; where the timelines are both cut to ``max_length``
        and padded, ``max_length`` must be a multiple of it (as transformers requires of truncation and padding)."""
        if multiple is None:
            return
        if isinstance(multiple, bool) or not isinstance(multiple, numbers.Integral) or multiple < 1:
            raise ValueError(f"pad_to_multiple_of={multiple!r} must be a positive integer or None.")
        if max_length is not None and max_length % multiple:
            raise ValueError(
                f"max_length={max_length} cuts the timelines and pad_to_multiple_of={multiple} would pad them past "
                "it; give a max_length that is a multiple of pad_to_multiple_of."
            )

    def _empty_batch(self, return_tensors: str | None, attention_mask: bool, length: bool) -> BatchEncoding:
        """``tokenizer([])``: a batch of no timelines, as transformers' fast tokenizers return one: empty lists, or
        tensors of shape (0, 0) with the usual dtypes (int64 ids and masks, float32 times; ``length`` (0,))."""
        keys = [*self.model_input_names, *(["attention_mask"] if attention_mask else [])]
        arrays = {key: np.zeros((0, 0), dtype=np.float32 if key == "action_times" else np.int64) for key in keys}
        if length:
            arrays["length"] = np.zeros((0,), dtype=np.int64)
        if return_tensors is None:
            encoding = {key: [] for key in arrays}
        elif return_tensors == "pt":
            encoding = {key: torch.from_numpy(value) for key, value in arrays.items()}
        else:
            encoding = arrays
        return BatchEncoding(encoding, tensor_type=return_tensors)

    def encode(
        self,
        text,
        text_pair=None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        **kwargs,
    ) -> list[int]:
        """Action ids of text (names), pre-split names, ids or a timeline, as ``PreTrainedTokenizer.encode``."""
        if self._is_timeline(text):  # the options go through, so that one a timeline cannot take is refused
            return self(text, add_special_tokens=add_special_tokens, max_length=max_length, padding=padding,
                        truncation=truncation, stride=stride, padding_side=padding_side,
                        return_tensors=return_tensors, **kwargs)["action_ids"]  # fmt: skip
        if isinstance(text, (list, tuple)) and text and all(isinstance(token, str) for token in text):
            kwargs.setdefault("is_split_into_words", True)  # a list of names is one pre-split sequence
        padding_strategy, truncation_strategy, max_length, kwargs_updated = self._get_padding_truncation_strategies(
            padding=padding, truncation=truncation, max_length=max_length, **kwargs
        )
        kwargs.update(kwargs_updated)
        encoded = self._encode_plus(
            text,
            text_pair=text_pair,
            add_special_tokens=add_special_tokens,
            padding_strategy=padding_strategy,
            truncation_strategy=truncation_strategy,
            max_length=max_length,
            stride=stride,
            padding_side=padding_side,
            return_tensors=return_tensors,
            **kwargs,
        )
        return encoded["action_ids"]

    def tokenize(self, text: str, **kwargs) -> list[str]:
        """Split ``text`` into action names on whitespace.

        Overridden because the base class first cuts out special tokens anywhere in the text, which would split an
        action such as ``restart`` around the special token ``start``.
        """
        return self._tokenize(text)

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        tokens = text.split()
        for token in tokens:
            if token not in self.vocab:
                raise self._unknown_action(token, f" in {text!r}")
        return tokens

    def convert_tokens_to_ids(self, tokens: str | Iterable[str] | None) -> int | list[int] | None:
        """As transformers' own; None (a special token that is not set) gives None, as transformers 4 gave and as
        ``unk_token_id`` is None here (before: ``TypeError: 'NoneType' object is not iterable``)."""
        if tokens is None:
            return None
        return super().convert_tokens_to_ids(tokens)

    def _convert_token_to_id(self, token: str) -> int:
        if token not in self.vocab:
            raise self._unknown_action(token)
        return self.vocab[token]

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        """As transformers' own, but an id that is not a whole number (2.7, from a float tensor) is refused rather
        than truncated to another action."""
        if isinstance(ids, (str, bytes)) or (
            isinstance(ids, (list, tuple)) and any(isinstance(index, (str, bytes)) for index in ids)
        ):  # before: "could not convert string to float: 'start'"
            raise TypeError(
                f"decode / convert_ids_to_tokens take action ids (integers 0..{self.vocab_size - 1}), got text {ids!r}. "
                "For the ids of action names use convert_tokens_to_ids (a name or a list of names) or encode('start "
                "like ...')."
            )
        many = isinstance(ids, Iterable) and not isinstance(ids, (str, bytes)) and not (
            isinstance(ids, (torch.Tensor, np.ndarray)) and ids.ndim == 0
        )
        if many:
            ids = list(ids)  # a generator is read once: here, not by the check
        for index in ids if many else [ids]:
            if not isinstance(index, numbers.Integral) and not float(index).is_integer():
                raise ValueError(f"Action id {index!r} is not a whole number; ids are integers 0..{self.vocab_size - 1}.")
        if not many and not isinstance(ids, int):
            ids = int(ids)  # a 0-d tensor or numpy scalar: one id, as transformers' own call takes an int
        return super().convert_ids_to_tokens(ids, skip_special_tokens=skip_special_tokens)

    def _convert_id_to_token(self, index: int) -> str:
        if not 0 <= index < len(self.ids_to_actions):
            raise ValueError(f"Action id {index} is out of range; this vocabulary has ids 0..{self.vocab_size - 1}.")
        return self.ids_to_actions[index]

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        """Write ``vocab.json`` (``{action: id}``, ``<pad>`` = 0) into ``save_directory``."""
        if not os.path.isdir(save_directory):
            raise NotADirectoryError(f"Cannot save the vocabulary: {save_directory} is not a directory.")
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        vocab_file = os.path.join(save_directory, prefix + VOCAB_FILES_NAMES["vocab_file"])
        with open(vocab_file, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(self.vocab, indent=2, ensure_ascii=False) + "\n")
        return (vocab_file,)

    def prepare_for_model(
        self,
        ids: list[int],
        pair_ids: list[int] | None = None,
        padding: bool | str = False,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool | None = None,
        prepend_batch_axis: bool = False,
        **kwargs,
    ) -> BatchEncoding:
        """Ids of text input, named ``action_ids`` like every other output of this tokenizer (text carries no times).

        The base class names them ``input_ids``, which its own ``pad`` (keyed on ``model_input_names[0]``) rejects.
        """
        encoding = super().prepare_for_model(ids, pair_ids, max_length=max_length, return_attention_mask=False, **kwargs)
        encoding = {"action_ids" if key == "input_ids" else key: value for key, value in encoding.items()}
        if padding or return_attention_mask:
            encoding = self.pad(
                encoding,
                padding=padding,
                max_length=max_length,
                pad_to_multiple_of=pad_to_multiple_of,
                padding_side=padding_side,
                return_attention_mask=return_attention_mask,
            )
        return BatchEncoding(dict(encoding), tensor_type=return_tensors, prepend_batch_axis=prepend_batch_axis)

    def pad(self, *args, **kwargs) -> BatchEncoding:
        """transformers' ``pad``, with times in float32 for ``return_tensors="np"`` as for ``"pt"``."""
        return _float32_times(super().pad(*args, **kwargs))

    def _pad(
        self,
        encoded_inputs: dict[str, Any],
        max_length: int | None = None,
        padding_strategy: PaddingStrategy = PaddingStrategy.DO_NOT_PAD,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool | None = None,
    ) -> dict[str, Any]:
        """Pad ``action_ids`` (as the base class does) and, by the same amount, ``action_times`` (0.0) and
        ``time_mask`` (0), which must have one value per action (a ``ValueError`` otherwise)."""
        length = len(encoded_inputs[self.model_input_names[0]])
        for key in ("action_times", "time_mask"):
            if key in encoded_inputs and len(encoded_inputs[key]) != length:
                raise ValueError(
                    f"pad(): a timeline has {length} action_ids but {len(encoded_inputs[key])} {key}; give one of "
                    "each per action (encode_timeline makes them so)."
                )
        encoded_inputs = super()._pad(
            encoded_inputs,
            max_length=max_length,
            padding_strategy=padding_strategy,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_attention_mask=return_attention_mask,
        )
        difference = len(encoded_inputs[self.model_input_names[0]]) - length
        if difference:
            left = (padding_side or self.padding_side) == "left"
            for key, pad_value in (("action_times", 0.0), ("time_mask", 0)):
                if key in encoded_inputs:
                    padding = [pad_value] * difference
                    values = list(encoded_inputs[key])
                    encoded_inputs[key] = padding + values if left else values + padding
        return encoded_inputs

    # ----------------------------------------------------------------------------------------------------------
    # Timelines

    def _check_seconds(self, seconds: Any, position: int, action: str) -> float:
        if _is_seconds(seconds) and isinstance(seconds, (torch.Tensor, np.ndarray)):
            seconds = seconds.item()  # a 0-d tensor or array, e.g. a time read off another tensor
        if not _is_seconds(seconds):
            raise TimelineError(
                f"Event {position} ({action!r}) has time {seconds!r}; a time must be a number of seconds >= 0, "
                "or None when it is unknown."
            )
        try:
            value = float(seconds)
        except OverflowError:  # an integer beyond the float range
            value = math.inf if seconds > 0 else -math.inf
        if not math.isfinite(value) or value < 0:
            raise TimelineError(
                f"Event {position} ({action!r}) has time {value} s; times must be finite and >= 0 "
                "(use None for an unknown time)."
            )
        if value > MAX_SECONDS:
            raise TimelineError(
                f"Event {position} ({action!r}) has time {value:g} s, beyond {MAX_SECONDS:g} s (about 31,700 years); "
                "times are seconds since the item's start: check the unit (milliseconds?) or the anchor."
            )
        return value

    def _validate_timeline(
        self, events: Sequence[Event], add_start: bool, repeated_start: bool = False
    ) -> tuple[list[int], list[float | None]]:
        """Action ids and seconds of ``events``; raises :class:`TimelineError` naming the first bad event. With
        ``repeated_start`` a later start action (another click on the item, as a log holds them) is an event."""
        if isinstance(events, (str, bytes)) or not isinstance(events, Sequence):
            raise TimelineError(f"A timeline is a list of (action, seconds) pairs, got {type(events).__name__}.")
        action_ids: list[int] = []
        seconds: list[float | None] = []
        last_known: tuple[int, float] | None = None
        for position, event in enumerate(events):
            if isinstance(event, (str, bytes)) or not isinstance(event, Sequence) or len(event) != 2:
                raise TimelineError(
                    f"Event {position} is {event!r}; each event must be a pair (action, seconds), seconds a number "
                    ">= 0 or None."
                )
            action, value = event
            action_id = self._action_id(action, where=f" at event {position}")
            if value is not None:
                value = self._check_seconds(value, position, action)
            if action_ids and action_ids[-1] == self.end_action_id:
                raise TimelineError(
                    f"Event {position} ({action!r}) comes after the end action {self.end_action!r}; "
                    f"{self.end_action!r} must be the last event of a timeline."
                )
            opening = position == 0 and not add_start
            if action_id == self.start_action_id and (opening or not repeated_start):  # else a later click: an event
                if not opening:
                    raise TimelineError(
                        f"Event {position} is the start action {self.start_action!r}, which may only open a timeline"
                        + (" (add_start=True already prepends it; drop it from the events)." if add_start else ".")
                    )
                if value is not None and value != 0:
                    raise TimelineError(
                        f"The start action {self.start_action!r} is at {value} s; every timeline starts at 0 s "
                        "(measure the other times from the start of the item)."
                    )
            elif opening and action_id != self.start_action_id:
                raise TimelineError(
                    f"The timeline begins with {action!r}, not with the start action {self.start_action!r}; prepend "
                    f"({self.start_action!r}, 0.0) or pass add_start=True."
                )
            if value is not None:
                if last_known is not None and value < last_known[1]:
                    raise TimelineError(
                        f"Events are out of time order: event {position} ({action!r}) is at {value} s but event "
                        f"{last_known[0]} is at {last_known[1]} s; sort the events by time."
                    )
                last_known = (position, value)
            action_ids.append(action_id)
            seconds.append(value)
        if add_start:
            action_ids.insert(0, self.start_action_id)
            seconds.insert(0, 0.0)
        if not action_ids:
            raise TimelineError(
                f"The timeline is empty; it must at least hold ({self.start_action!r}, 0.0) (or pass add_start=True)."
            )
        return action_ids, seconds

    def encode_timeline(
        self,
        events: Sequence[Event],
        max_length: int | None = None,
        pad_to_max_length: bool = False,
        add_start: bool = False,
        return_tensors: str | None = None,
        repeated_start: bool = False,
    ) -> dict[str, Any]:
        """Encode one timeline of ``(action, seconds)`` events.

        ``seconds`` is the time since the item started (a number >= 0) or None when unknown. Events must be in
        non-decreasing order of their known times, begin with ``start_action`` (at 0 s or None) unless ``add_start``
        prepends ``(start_action, 0.0)``, and end at ``end_action`` if they hold it.

        Args:
            events: the timeline, e.g. ``[("start", 0.0), ("like", 2.0), ("leave", 18.0)]``.
            max_length: keep only the first ``max_length`` events (after ``add_start``); the end action may be cut.
            pad_to_max_length: pad to ``max_length`` with id 0, time 0.0 and time mask 0.
            add_start: prepend ``(start_action, 0.0)``; the events must then not contain the start action.
            return_tensors: ``"pt"`` for torch tensors instead of lists.
            repeated_start: accept later start actions (another click on the item at a later time, as a log holds
                them and the data collator keeps them in histories); otherwise the start may only open the timeline.

        Returns:
            `dict` with ``action_ids`` (T,) long, ``action_times`` (T,) float (normalised; 0.0 where unknown) and
            ``time_mask`` (T,) long (1 = the time is known).

        Raises:
            UnknownActionError: an action is not in the vocabulary.
            TimelineError: a time is negative, NaN or infinite, times go backwards, or start / end are misplaced.
        """
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
            raise ValueError(f"max_length={max_length!r} must be a positive integer or None.")
        if pad_to_max_length and max_length is None:
            raise ValueError("pad_to_max_length=True needs max_length; give the length to pad to.")
        action_ids, seconds = self._validate_timeline(events, add_start, repeated_start)
        if max_length is not None:
            action_ids, seconds = action_ids[:max_length], seconds[:max_length]
        encoding = {
            "action_ids": action_ids,
            # _validate_timeline checked every time: the plain encoding (a Python float each).
            "action_times": [
                0.0 if value is None else normalize_seconds(value, self.time_log_mean, self.time_log_std)
                for value in seconds
            ],
            "time_mask": [0 if value is None else 1 for value in seconds],
        }
        if pad_to_max_length or return_tensors:
            encoding = dict(
                self.pad(
                    encoding,
                    padding="max_length" if pad_to_max_length else False,
                    max_length=max_length,
                    return_attention_mask=False,
                    return_tensors=return_tensors,
                )
            )
        return encoding

    def encode_timelines(
        self,
        timelines: Sequence[Sequence[Event]],
        max_length: int | None = None,
        pad_to_max_length: bool = False,
        add_start: bool = False,
        return_tensors: str | None = None,
    ) -> dict[str, Any]:
        """Encode a batch of timelines with :meth:`encode_timeline`.

        Returns:
            `dict` of ``action_ids`` / ``action_times`` / ``time_mask``: lists of per-timeline lists (ragged unless
            ``pad_to_max_length``), or with ``return_tensors="pt"`` tensors of shape (B, T), padded to ``max_length``
            when ``pad_to_max_length`` and to the longest timeline otherwise.
        """
        if return_tensors and not timelines:
            raise ValueError("encode_timelines got no timelines; cannot build tensors of an empty batch.")
        encodings = []
        for index, timeline in enumerate(timelines):
            try:
                encodings.append(self.encode_timeline(timeline, max_length, pad_to_max_length, add_start))
            except ValueError as error:
                raise type(error)(f"Timeline {index}: {error}") from None
        batch = {key: [encoding[key] for encoding in encodings] for key in self.model_input_names}
        if return_tensors:
            batch = dict(self.pad(batch, padding="longest", return_attention_mask=False, return_tensors=return_tensors))
        return batch

    def encode_histories(
        self,
        histories: Sequence[Sequence[tuple[Any, Sequence[Event]] | tuple[Any, Sequence[Event], float]]],
        max_history_items: int | None = None,
        max_events_per_item: int | None = None,
        return_tensors: str | None = None,
        *,
        now: float | Sequence[float] | None = None,
    ) -> BatchEncoding:
        """Encode the histories of a batch into the history inputs of ``A2GenModel.forward``, named as it names them.

        A history is a list of ``(raw item id, timeline)`` pairs, oldest first; the item id is hashed with
        :meth:`hash_item` and the timeline encoded with :meth:`encode_timeline` (later clicks on an item, start
        actions after the first event, are events: ``repeated_start=True``). As the data collator does, the most
        recent ``max_history_items`` items are kept, each with its first ``max_events_per_item`` events, and the
        batch is right-padded with zeros to N items and E events (the longest kept, at least 1).

        For a model that reads the history sessions' times (``history_time_features``), give each item as an
        ``(raw item id, timeline, session_start)`` triple, ``session_start`` the Unix seconds at which that item's
        session started, and ``now``, the Unix seconds of the request (the start of the session the targets are
        shown in): ``history_item_ages`` = ``now - session_start`` is then returned too, as the collator makes it
        from the examples' ``history_session_starts`` and ``session_start`` (which are whole seconds). Either time
        may also be a timezone-aware ``datetime.datetime``; a naive one, a ``numpy.datetime64`` or a date text is
        refused, saying how to convert it.

        Args:
            histories: one history per example, a list of pairs, or of triples with ``now``; one call takes either
                pairs only or triples only.
            max_history_items / max_events_per_item (`int`, *optional*): the caps (the model config's).
            return_tensors (`str`, *optional*): ``"pt"`` for torch tensors, ``"np"`` for arrays, None for lists.
            now (`float` or `Sequence[float]`, *optional*, keyword-only): with triples, the request's time in Unix
                seconds: one number for every example, or one per example. No history session may start after it.

        Returns:
            :class:`~transformers.BatchEncoding` with ``history_item_ids`` (B, N), ``history_mask`` (B, N),
            ``history_action_ids`` (B, N, E), ``history_action_times`` (B, N, E, normalised; 0.0 where unknown) and
            ``history_time_mask`` (B, N, E); with triples also ``history_item_ages`` (B, N, float32 seconds; 0.0 at
            padding). With ``user_ids`` / ``item_ids`` (:meth:`hash_users`, :meth:`hash_items`)
            (and ``item_keys``, :meth:`item_keys`, for a model whose popularity counts are keyed by raw item id)
            these are the inputs of a model without side features:
            ``model.predict_actions(user_ids=..., item_ids=..., **tokenizer.encode_histories(..., return_tensors="pt"))``.

        Raises:
            ValueError: naming the history row and item, for a malformed entry or timeline, a call that mixes pairs
                and triples, triples without ``now`` (or ``now`` with pairs), a session start or ``now`` that is not
                a finite number, or a session start after ``now``.

        Example:
            >>> encoded = tokenizer.encode_histories(
            ...     [[("v7", [("start", 0.0), ("like", 2.0)], 1_700_000_000), ("v8", [("start", 0.0)], 1_700_050_000)]],
            ...     now=1_700_086_400, return_tensors="pt")
            >>> encoded["history_item_ages"]
            tensor([[86400., 36400.]])
        """
        for name, value in (("max_history_items", max_history_items), ("max_events_per_item", max_events_per_item)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name}={value!r} must be a positive integer or None.")
        if isinstance(histories, (str, bytes)) or not isinstance(histories, Sequence):
            raise ValueError("histories must be a list (one per example) of lists of (item, timeline) pairs.")
        request_times = None if now is None else _request_times(now, len(histories))
        items, encoded, starts = [], [], []
        width = None  # 2 (pairs) or 3 (triples), fixed by the call's first history item
        for row, history in enumerate(histories):
            if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
                raise ValueError(f"History {row} must be a list of (item, timeline) pairs, got {history!r}.")
            kept = list(history)[-max_history_items:] if max_history_items else list(history)
            row_items, row_timelines, row_starts = [], [], []
            for index, entry in enumerate(kept):
                if not isinstance(entry, (tuple, list)) or len(entry) not in (2, 3):
                    raise ValueError(
                        f"History {row}, item {index}: expected an (item, timeline) pair or an (item, timeline, "
                        f"session_start) triple, got {entry!r}."
                    )
                if width is None:
                    width = len(entry)
                    _check_request_time_given(width, request_times, row, index)
                elif len(entry) != width:
                    raise ValueError(
                        f"History {row}, item {index}: an {_ENTRY_FORMS[len(entry)]} where the call's earlier items are "
                        f"{_ENTRY_FORMS[width]}s; give every history item of the call as (item, timeline, "
                        "session_start) triples (with now=...), or every one as (item, timeline) pairs."
                    )
                try:
                    row_items.append(self.hash_item(entry[0]))
                    # Histories keep later clicks on an item, as the data collator does.
                    row_timelines.append(self.encode_timeline(entry[1], max_length=max_events_per_item,
                                                              repeated_start=True))
                except ValueError as error:
                    raise type(error)(f"History {row}, item {index}: {error}") from None
                if width == 3:
                    row_starts.append(_history_item_age(entry[2], request_times[row], row, index))
            items.append(row_items)
            encoded.append(row_timelines)
            starts.append(row_starts)
        batch, length = len(histories), max([len(row) for row in items] + [1])
        events = max([len(timeline["action_ids"]) for row in encoded for timeline in row] + [1])
        item_ids = np.zeros((batch, length), dtype=np.int64)
        action_ids = np.zeros((batch, length, events), dtype=np.int64)
        times = np.zeros((batch, length, events), dtype=np.float32)
        time_mask = np.zeros((batch, length, events), dtype=np.int64)
        ages = np.zeros((batch, length), dtype=np.float32)
        for row, (row_items, row_timelines) in enumerate(zip(items, encoded)):
            item_ids[row, : len(row_items)] = row_items
            ages[row, : len(starts[row])] = starts[row]  # float64 differences of Unix seconds, then float32
            for index, timeline in enumerate(row_timelines):
                count = len(timeline["action_ids"])
                action_ids[row, index, :count] = timeline["action_ids"]
                times[row, index, :count] = timeline["action_times"]
                time_mask[row, index, :count] = timeline["time_mask"]
        encoding = {
            "history_item_ids": item_ids,
            "history_mask": (item_ids != 0).astype(np.int64),
            "history_action_ids": action_ids,
            "history_action_times": times,
            "history_time_mask": time_mask,
        }
        if request_times is not None:  # triples (or no history item at all): the ages too
            encoding["history_item_ages"] = ages
        if return_tensors is None:
            encoding = {key: value.tolist() for key, value in encoding.items()}
        elif return_tensors == "pt":  # the arrays' own dtypes (BatchEncoding made an empty batch's times int64)
            encoding = {key: torch.from_numpy(value) for key, value in encoding.items()}
        return BatchEncoding(encoding, tensor_type=return_tensors)

    def encode_labels(self, timelines: Sequence[Sequence[Event]], return_tensors: str | None = None) -> BatchEncoding:
        """Encode target timelines as ``forward``'s ``labels`` / ``label_times`` / ``label_time_mask`` `(B, T)`.

        Each timeline keeps its first ``max_actions + 1`` events (start included) and is padded to exactly that many
        (id 0, time 0.0, mask 0), as the data collator builds labels.
        """
        length = self.max_actions + 1
        encoding = self.encode_timelines(timelines, max_length=length, pad_to_max_length=True)
        names = {"action_ids": "labels", "action_times": "label_times", "time_mask": "label_time_mask"}
        return _float32_times(
            BatchEncoding({names[key]: value for key, value in encoding.items()}, tensor_type=return_tensors)
        )

    def decode_timeline(
        self,
        action_ids: Sequence[int] | np.ndarray | torch.Tensor | Mapping[str, Any],
        action_times: Sequence[float] | np.ndarray | torch.Tensor | None = None,
        time_mask: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    ) -> list[tuple[str, float | None]]:
        """Turn ids (T,) and normalised times (T,) back into ``[(action, seconds), ...]``.

        Padding (id 0) is skipped wherever it sits; decoding stops after the first ``end_action``. Where
        ``time_mask`` (T,) is 0 the time is reported as None. Accepts lists, numpy arrays or 1-D tensors, or the
        encoding :meth:`encode_timeline` returned (its ``action_ids``, ``action_times`` and ``time_mask``). Pass the
        mask whenever the timeline has unknown times: they are stored as the normalised 0.0, which without the mask
        decodes as a made-up time (``expm1(time_log_mean)`` seconds); generated timelines have none.
        """
        if isinstance(action_ids, Mapping):
            if action_times is not None or time_mask is not None:
                raise TypeError("decode_timeline(encoding) reads the times and the mask from the encoding; pass nothing else.")
            encoding = action_ids
            action_ids, action_times, time_mask = (encoding["action_ids"], encoding["action_times"],
                                                   encoding.get("time_mask"))  # fmt: skip
        if action_times is None:
            raise TypeError("decode_timeline needs action_times (or an encoding of encode_timeline).")
        ids = self._as_array(action_ids, np.int64, "action_ids")
        times = self._as_array(action_times, np.float64, "action_times")
        mask = None if time_mask is None else self._as_array(time_mask, np.int64, "time_mask")
        if ids.ndim == 2 and len(ids) == 1 and times.shape == ids.shape:  # a batch of one: tokenizer(timeline, "pt")
            ids, times, mask = ids[0], times[0], None if mask is None else mask.reshape(-1)
        if ids.ndim != 1 or times.shape != ids.shape or (mask is not None and mask.shape != ids.shape):
            raise ValueError(
                f"decode_timeline needs 1-D action_ids, action_times and time_mask of one length, got shapes "
                f"{ids.shape}, {times.shape}, {None if mask is None else mask.shape}; use decode_timelines for a batch."
            )
        with np.errstate(over="ignore"):
            seconds = denormalize_times(times, self.time_log_mean, self.time_log_std)
        broken = ~(np.isfinite(times) & np.isfinite(seconds)) & (ids != self.vocab[PAD_ACTION]) & (True if mask is None else mask.astype(bool))
        if broken.any():
            position = int(np.argmax(broken))
            raise ValueError(
                f"decode_timeline: action_times[{position}] is {times[position]} for action id {ids[position]}, "
                f"{seconds[position]} seconds; a normalised time must be finite and decode to finite seconds (NaN, "
                "inf or a time past float64's range means the model or its inputs broke; mark an unknown time with "
                "time_mask 0)."
            )
        pad_id, start_id, end_id = self.vocab[PAD_ACTION], self.start_action_id, self.end_action_id
        timeline: list[tuple[str, float | None]] = []
        for position, action_id in enumerate(ids.tolist()):
            if action_id == pad_id:
                continue
            known = mask is None or bool(mask[position])
            value = float(seconds[position]) if known else None
            if action_id == start_id and not timeline and known:
                value = 0.0  # a timeline starts at 0 s by definition (float32 times round-trip to ~1e-8 s)
            timeline.append((self._convert_id_to_token(action_id), value))
            if action_id == end_id:
                break
        return timeline

    def decode_timelines(
        self,
        batch_action_ids: Sequence[Sequence[int]] | np.ndarray | torch.Tensor,
        batch_action_times: Sequence[Sequence[float]] | np.ndarray | torch.Tensor | None = None,
        batch_time_mask: Sequence[Sequence[int]] | np.ndarray | torch.Tensor | None = None,
    ) -> list[list[tuple[str, float | None]]]:
        """:meth:`decode_timeline` of each row of (B, T) ids, times and (optional) time mask, or of an encoding of a
        batch (``tokenizer([timelines], padding=True, return_tensors="pt")``)."""
        if isinstance(batch_action_ids, Mapping):
            if batch_action_times is not None or batch_time_mask is not None:
                raise TypeError("decode_timelines(encoding) reads the times and the mask from the encoding; pass nothing else.")
            encoding = batch_action_ids
            batch_action_ids, batch_action_times = encoding["action_ids"], encoding["action_times"]
            batch_time_mask = encoding.get("time_mask")
        if batch_action_times is None:
            raise TypeError("decode_timelines needs batch_action_times (or an encoding of a batch of timelines).")
        if batch_time_mask is None:
            batch_time_mask = [None] * len(batch_action_ids)
        if not len(batch_action_ids) == len(batch_action_times) == len(batch_time_mask):
            raise ValueError(
                f"decode_timelines got {len(batch_action_ids)} rows of ids, {len(batch_action_times)} of times and "
                f"{len(batch_time_mask)} of time masks; give one row of each per timeline."
            )
        return [
            self.decode_timeline(ids, times, mask)
            for ids, times, mask in zip(batch_action_ids, batch_action_times, batch_time_mask)
        ]

    @staticmethod
    def _as_array(values: Any, dtype: type, name: str) -> np.ndarray:
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu()
            # numpy has no bfloat16: floats go through float32 (exact for bf16 / fp16), integers as they are
            values = (values.float() if values.is_floating_point() and values.dtype != torch.float64 else values).numpy()
        try:
            array = np.asarray(values, dtype=dtype)
            # Integer conversion would truncate 2.5 to 2 without a word.
            exact = dtype is not np.int64 or np.array_equal(array, np.asarray(values, dtype=np.float64))
        except (TypeError, ValueError, OverflowError) as error:
            raise ValueError(f"{name} must be a list, numpy array or tensor of numbers: {error}") from None
        if not exact:
            raise ValueError(f"{name} must hold whole numbers (action ids), got {values!r}.")
        return array

    # ----------------------------------------------------------------------------------------------------------
    # Time statistics

    def fit_time_statistics(self, seconds: Iterable[float | None]) -> tuple[float, float]:
        """Fit, store and return ``(time_log_mean, time_log_std)`` of ``log1p(seconds)``.

        None and NaN mark unknown times and are left out; negative or infinite times raise :class:`TimelineError`.
        """
        try:
            values = np.asarray([np.nan if value is None else value for value in seconds], dtype=np.float64)
        except (TypeError, ValueError, OverflowError) as error:
            raise TimelineError(
                f"Cannot fit time statistics: {error}; times must be numbers of seconds (None or NaN when unknown)."
            ) from None
        bad = np.flatnonzero(np.isinf(values) | (values < 0))
        if bad.size:
            raise TimelineError(
                f"Cannot fit time statistics: value {bad[0]} is {values[bad[0]]} s; times must be finite and >= 0 "
                "(use None or NaN for unknown times)."
            )
        self.time_log_mean, self.time_log_std = fit_log_statistics(values[~np.isnan(values)])
        return self.time_log_mean, self.time_log_std

    def normalize_seconds(self, seconds: Any) -> Any:
        """Seconds (a number, numpy array or tensor; a list or tuple is read as an array, None in it as NaN) ->
        normalised times with this tokenizer's statistics, of the same type (an array for a list). NaN is an unknown
        time and stays NaN; a negative, infinite or far-future time (above ``MAX_SECONDS``) is a ``ValueError`` naming
        it (before: "math domain error", or -inf / NaN silently)."""
        seconds = _checked_seconds(_time_values(seconds, "normalize_seconds", "seconds"))
        return normalize_seconds(seconds, self.time_log_mean, self.time_log_std)

    def denormalize_times(self, times: Any) -> Any:
        """Normalised times (a number, numpy array or tensor; a list or tuple is read as an array, None in it as
        NaN) -> seconds (>= 0), of the same type (an array for a list)."""
        return denormalize_times(_time_values(times, "denormalize_times", "times"), self.time_log_mean,
                                 self.time_log_std)  # fmt: skip

    # ----------------------------------------------------------------------------------------------------------
    # Stable id hashing

    def hash_user(self, raw: Any) -> int:
        """Bucket of a raw user id in ``[1, user_buckets)`` (BLAKE2b-64 of ``str(raw)``)."""
        return hash_to_bucket(_id_text(raw), self.user_buckets)

    def hash_item(self, raw: Any) -> int:
        """Bucket of a raw item id in ``[1, item_buckets)`` (BLAKE2b-64 of ``str(raw)``)."""
        return hash_to_bucket(_id_text(raw), self.item_buckets)

    def hash_side_feature(self, field: str, raw: Any) -> int:
        """Bucket of a side-feature value in ``[1, side_feature_buckets)`` (BLAKE2b-64 of ``f"{field}={raw}"``)."""
        return hash_to_bucket(f"{field}={_id_text(raw)}", self.side_feature_buckets)

    def hash_users(self, raws: Iterable[Any]) -> np.ndarray:
        """:meth:`hash_user` of each raw id, as an int64 array of shape (n,); one id (a str) is refused."""
        return hash_to_buckets(map(_id_text, _raw_ids(raws, "hash_users", "hash_user")), self.user_buckets)

    def hash_items(self, raws: Iterable[Any]) -> np.ndarray:
        """:meth:`hash_item` of each raw id, as an int64 array of shape (n,); one id (a str) is refused."""
        return hash_to_buckets(map(_id_text, _raw_ids(raws, "hash_items", "hash_item")), self.item_buckets)

    def item_keys(self, raws: Iterable[Any]) -> np.ndarray:
        """
        The 63-bit key (:func:`hash_to_keys` of ``str(raw)``) of each raw item id, int64 `(n,)`: the ``item_keys``
        input of a model whose popularity counts are keyed by raw item id (``popularity_keys="raw_ids"``), so that
        items sharing an embedding bucket do not share counts.
        """
        return hash_to_keys(map(_id_text, _raw_ids(raws, "item_keys")))

    def hash_side_features(self, field: str, raws: Iterable[Any]) -> np.ndarray:
        """:meth:`hash_side_feature` of each raw value of ``field``, as an int64 array of shape (n,); one value (a
        str) is refused."""
        raws = _raw_ids(raws, "hash_side_features", "hash_side_feature(field, value)")
        return hash_to_buckets((f"{field}={_id_text(raw)}" for raw in raws), self.side_feature_buckets)

    # ----------------------------------------------------------------------------------------------------------
    # Agreement with the model configuration

    @classmethod
    def from_config(cls, config: A2GenConfig, **kwargs) -> A2GenActionTokenizer:
        """A tokenizer with ``config``'s actions, time statistics, ``max_actions`` and bucket counts."""
        return cls(**{field: getattr(config, field) for field in CONFIG_FIELDS}, **kwargs)

    def check_same_ids(self, other: A2GenActionTokenizer, names: tuple[str, str] = ("this", "the other")) -> None:
        """
        Raise ``ValueError`` when examples hashed by this tokenizer would mean other rows (ids, actions, side-feature
        values) to ``other``: they differ in an :data:`ID_FIELDS` setting or in their side-feature fields (where both
        record them: a tokenizer built with ``from_config`` does not). ``names``
        name the two in the message, e.g. ``("the data folder's tokenizer", "the model's")``.
        """
        differing = [field for field in ID_FIELDS if getattr(self, field) != getattr(other, field)]
        fields_of = (self.side_feature_fields, other.side_feature_fields)
        if None not in fields_of and list(fields_of[0]) != list(fields_of[1]):  # None: not recorded (from_config)
            differing.append("side_feature_fields")
        if not differing:
            return
        shown = "; ".join(f"{field}: {names[0]} {getattr(self, field)!r}, {names[1]} {getattr(other, field)!r}"
                          for field in differing)  # fmt: skip
        buckets = [field for field in differing if field.endswith("_buckets")]
        advice = (
            "Prepare the data again with the model's bucket counts ("
            + ", ".join(f"--{field.replace('_', '-')} {getattr(other, field)}" for field in buckets) + ")"
            if len(buckets) == len(differing)
            else "Its actions or side-feature fields are another log's: prepare this log with the preset (actions, "
            "side features) the model was trained on"
        )
        raise ValueError(
            f"{names[0]} and {names[1]} hash ids differently, so the examples' ids would point at other embedding rows "
            f"({shown}). {advice}, or use the data folder the model was trained on."
        )

    def check_compatible(self, config: A2GenConfig) -> None:
        """Raise ``ValueError`` naming every setting in which this tokenizer and ``config`` disagree."""
        mismatches = [
            f"{field}: tokenizer has {getattr(self, field)!r}, config has {getattr(config, field)!r}"
            for field in CONFIG_FIELDS
            if getattr(self, field) != getattr(config, field)
        ]
        if mismatches:
            raise ValueError(
                "The tokenizer does not match the model config:\n  - " + "\n  - ".join(mismatches) + "\nBuild one "
                "from the other (A2GenActionTokenizer.from_config(config), or copy the tokenizer's settings into the "
                "config) so that ids, times and buckets mean the same on both sides."
            )
