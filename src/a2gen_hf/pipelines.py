"""The ``"action-generation"`` pipeline: one user's raw history and candidate items in, ranked predictions out.

``import a2gen_hf`` registers it, so ``transformers.pipeline("action-generation", model=...)`` works like any other
task. The pipeline hashes raw ids and checks timelines with the tokenizer, lays the user's history out as a row of
the on-disk example schema (``docs/design.md``) for :class:`~a2gen_hf.data.A2GenDataCollator` (the same cuts and
time encoding as in training), and scores the candidates with :class:`~a2gen_hf.ranking.A2GenRanker`: the history
is encoded once, not once per candidate.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from types import GeneratorType
from typing import Any

import numpy as np
import torch
from transformers import Pipeline
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.utils import cached_file

from .auto import AutoModelForActionGeneration
from .data.collator import A2GenDataCollator
from .features_a2gen import popularity_keyed_by_raw_id
from .modeling_a2gen import A2GenForActionGeneration
from .ranking import USER_INPUT_NAMES, A2GenRanker, is_action_generation_model, with_dict_output
from .tokenization_a2gen import A2GenActionTokenizer, TimelineError, _unix_seconds

TASK = "action-generation"
REQUEST_KEYS = ("user", "history", "candidates", "time")
REQUIRED_REQUEST_KEYS = ("user", "history", "candidates")
# Generation options the pipeline passes on to generate() (anything else goes in generate_kwargs={...}).
GENERATION_OPTIONS = (
    "max_new_tokens", "do_sample", "num_beams", "num_return_sequences", "temperature", "top_p", "use_cache",
    "generation_config",
)
# push_to_hub's options that save_pretrained(..., push_to_hub=True) passes on to push_to_hub.
PUSH_OPTIONS = (
    "commit_message", "commit_description", "private", "token", "revision", "create_pr", "tags", "eval_results",
    "dataset_name", "license", "replace_card",
)
HISTORY_ITEM_KEYS = ("item", "events", "side_features", "session_start")
# generate()'s outputs that a result does not repeat: its ids and times are the timelines; the cache is internal.
TIMELINE_OUTPUTS = ("sequences", "times", "cache", "past_key_values")
CANDIDATE_KEYS = ("item", "side_features")


def _with_times(generate_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``generate_kwargs`` asking generate() for the times the timelines show (``return_dict_in_generate=True``, as
    :func:`~a2gen_hf.ranking.with_dict_output` sets it: on a copy of a ``generation_config`` given there, else as a
    keyword). An explicit ``return_dict_in_generate=False``, ids without times, is refused, as a keyword or set in
    the ``generation_config``."""
    kwargs = dict(generate_kwargs)
    config = kwargs.pop("generation_config", None)
    for given in (kwargs.get("return_dict_in_generate"), getattr(config, "return_dict_in_generate", None)):
        if given is not None and given is not True:
            raise ValueError(
                f"return_dict_in_generate={given!r}: the pipeline reads the generated times, which only generate()'s "
                "dict output holds; leave return_dict_in_generate out (the pipeline sets it)."
            )
    if config is not None:
        kwargs.pop("return_dict_in_generate", None)  # True: a keyword beside the config would make transformers warn
    config, kwargs = with_dict_output(config, kwargs)
    return kwargs if config is None else {**kwargs, "generation_config": config}


class ActionRequestError(ValueError):
    """Raised when an ``"action-generation"`` request is malformed; the message names the offending part."""


def generate_timelines(
    model: A2GenForActionGeneration, tokenizer: A2GenActionTokenizer, batch: Mapping[str, torch.Tensor]
) -> list[list[tuple[str, float | None]]]:
    """The most likely timeline of every example of ``batch`` (greedy ``generate``), decoded to ``(action, seconds)``.

    ``batch`` holds the forward's history inputs, e.g. a collator batch (labels are ignored).
    """
    tokenizer.check_compatible(model.config)  # another tokenizer's names or time scale would decode silently wrong
    generated = model.generate(
        **batch,
        do_sample=False,
        num_beams=1,
        max_new_tokens=model.config.max_actions,
        return_dict_in_generate=True,
    )
    return tokenizer.decode_timelines(generated.sequences, generated.times)


class ActionGenerationPipeline(Pipeline):
    r"""
    Ranks a list of candidate items for one user with an :class:`A2GenForActionGeneration` model: the user's history
    is encoded once and the candidates are scored together by :class:`~a2gen_hf.ranking.A2GenRanker` (the history
    is not repeated per candidate).

    Input, one request (a list of requests gives a list of results)::

        {
            "user": "u1",                                    # raw user id
            "history": [                                     # oldest first, most recent last (may be empty)
                {"item": "v7", "events": [("start", 0.0), ("like", 2.0), ("leave", 18.0)],
                 "side_features": {"category": "topic_3"},   # optional
                 "session_start": 1700000000},               # optional: when its session started, Unix seconds
                ...
            ],
            "candidates": ["v42", {"item": "v43", "side_features": {"category": "topic_1"}}],
            "time": 1700086400,                              # optional: the request's time, Unix seconds
        }

    Raw ids are hashed with the tokenizer; each history item's events are a timeline as
    :meth:`A2GenActionTokenizer.encode_timeline` takes it (start action first at 0 s, times in seconds since the
    item started, None = unknown). The collator keeps the model's caps: the last ``max_history_items`` history items,
    the first ``max_events_per_item`` events of each.

    Session times: a model that reads when the history sessions happened (``history_time_features``) needs each
    history entry's ``"session_start"`` (Unix seconds at which that item's session started) and the request's
    ``"time"`` (Unix seconds of the session the candidates are shown in; no history session starts after it): the
    model reads each history item's age, ``time - session_start``, as the collator makes it from the examples'
    ``history_session_starts`` and ``session_start`` (whole seconds: fractions are floored, as prepared data holds
    them). Such a request without them is refused, saying what to add (a request with an empty history needs
    neither). Other models do not read them: they are optional there, checked when given (finite numbers, no session
    after the request's time), and otherwise ignored. Either time may be a timezone-aware ``datetime.datetime`` too;
    a naive datetime, a ``numpy.datetime64`` or a date text is refused, saying how to convert it. A history whose
    session starts go back in time on more than 3/4 of its steps (4 starts or more) is refused as listed newest first.

    Item side features are given by field name. The field names (and their order) come from the checkpoint's
    tokenizer (``tokenizer.side_feature_fields``, saved by ``a2gen prepare`` / ``a2gen simulate``); for a tokenizer
    saved without them, pass ``side_feature_fields`` when the pipeline is built or called. They are needed only when a
    request gives side features: a field an item does not give, or gives as None or "", is unknown (bucket 0, as an
    empty value in a converted log).

    Output, one list per request with one dict per candidate::

        {"item": "v42",
         "score": 0.31,                                              # with rank_by only
         "action_probabilities": {"like": 0.31, ..., "leave": 0.62},  # P(action happens); the start action is left out
         "expected_seconds": {"like": 4.2, ..., "leave": 17.5},      # time of its first occurrence | it happens
                                                                     # (expected log-seconds, in seconds)
         "timeline": [("start", 0.0), ("like", 2.1), ("leave", 16.9)]}  # generate(), decoded

    The end action's probability is P(the sequence ends within the model's ``max_actions`` slots), not 1: every
    session ends, but a model that expects many actions first puts its end beyond the last slot.

    Call options:
        rank_by (`str` or `dict[str, float]`, *optional*): sort the candidates by the probability of this action, or
            by the weighted sum of action probabilities (``{"like": 1.0, "follow": 3.0}``), best first. Without it,
            the candidates keep their input order.
        top_k (`int`, *optional*): with ``rank_by``, return only the ``top_k`` best candidates.
        timelines (`bool`, default True): generate a timeline for each returned candidate (``False``: scores only).
        max_new_tokens, do_sample, num_beams, num_return_sequences, temperature, top_p, use_cache,
        generation_config, generate_kwargs (`dict`): generation options, as ``model.generate`` takes them (default:
            the model's generation config, greedy). With ``num_return_sequences > 1`` each result also has
            ``"timelines"``, all of that candidate's sequences (``"timeline"`` is the first). With
            ``output_scores`` / ``output_logits`` / ``output_attentions`` / ``output_hidden_states`` (in
            ``generate_kwargs``) each result also holds those outputs of the candidate, as lists (with beams also
            ``beam_indices`` and ``sequences_scores``; see :func:`_per_candidate`).
        side_feature_fields (`list[str]`): see above.

    Args:
        model (:class:`A2GenForActionGeneration`): the model, or a model id / folder for
            ``pipeline("action-generation", model=...)``.
        tokenizer (:class:`A2GenActionTokenizer` or a folder, *optional*): defaults to the tokenizer saved with the
            model (its folder or Hub repository), else ``A2GenActionTokenizer.from_config`` of the model's config
            (which carries the same actions, time statistics and buckets, but no side-feature field names). It must
            agree with the config (``check_compatible``).
    """

    # The factory's AutoTokenizer would build a default tokenizer for a folder without tokenizer files; the pipeline
    # resolves its tokenizer itself (see __init__).
    _load_tokenizer = False

    def __init__(
        self, model: A2GenForActionGeneration, tokenizer: A2GenActionTokenizer | str | None = None, **kwargs
    ):
        if not is_action_generation_model(model):
            raise TypeError(
                f'The "{TASK}" pipeline runs A2GenForActionGeneration models, got {type(model).__name__}; load the '
                "checkpoint with AutoModelForActionGeneration."
            )
        config = model.config
        if config.num_user_side_lists:
            raise ValueError(
                f"This model reads {config.num_user_side_lists} user side lists, which requests cannot carry; the "
                f'"{TASK}" pipeline feeds exactly what A2GenDataCollator builds (num_user_side_lists=0).'
            )
        if tokenizer is None:
            tokenizer = _saved_tokenizer(str(model.name_or_path)) or A2GenActionTokenizer.from_config(config)
        elif isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = A2GenActionTokenizer.from_pretrained(tokenizer)
        if not isinstance(tokenizer, A2GenActionTokenizer):
            raise TypeError(f"tokenizer must be an A2GenActionTokenizer, got {type(tokenizer).__name__}.")
        tokenizer.check_compatible(config)
        fields = tokenizer.side_feature_fields
        if fields is not None and config.num_item_side_features and len(fields) != config.num_item_side_features:
            raise ValueError(
                f"The tokenizer names {len(fields)} side-feature fields {fields}, but the model reads "
                f"{config.num_item_side_features}; save the tokenizer of the data the model was trained on."
            )
        super().__init__(model, tokenizer=tokenizer, **kwargs)
        self.collator = A2GenDataCollator.from_config(config, tokenizer)
        self.ranker = A2GenRanker(self.model)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """Save the model and the tokenizer to ``save_directory`` (created if missing), so that
        ``pipeline("action-generation", model=save_directory)`` loads the same pipeline back. ``kwargs`` go to
        ``model.save_pretrained`` (``max_shard_size``, ``variant``, ``state_dict``, ...) and, as transformers'
        ``Pipeline.save_pretrained`` passes them, to ``tokenizer.save_pretrained``. ``push_to_hub=True`` (with
        ``repo_id``, default the folder's name, and :meth:`push_to_hub`'s options) then pushes both in one commit.

        transformers' own save would write ``custom_pipelines`` into the model's config and copy this module as
        remote code, which cannot work for a package module (``import a2gen_hf`` registers the task anyway): it
        failed half-way and left the config changed, so that ``pipeline(model=folder)`` could no longer load any
        later save of the model. The model's config is not changed here.
        """
        push = kwargs.pop("push_to_hub", False)
        hub_options = {name: kwargs.pop(name) for name in PUSH_OPTIONS if name in kwargs}
        repo_id = kwargs.pop("repo_id", None)
        if not push and (hub_options or repo_id is not None):
            raise TypeError(
                f"save_pretrained got the Hub option(s) {sorted([*hub_options, *(['repo_id'] if repo_id else [])])} "
                "without push_to_hub=True; pass push_to_hub=True to push as well, or drop them."
            )
        if os.path.isfile(save_directory):
            raise NotADirectoryError(
                f"save_pretrained: {str(save_directory)!r} is a file; pass a folder (created if missing) to hold the "
                "model and the tokenizer."
            )
        os.makedirs(save_directory, exist_ok=True)
        self.model.save_pretrained(save_directory, **kwargs)
        self.tokenizer.save_pretrained(save_directory, **kwargs)
        if push:
            self.push_to_hub(repo_id or Path(save_directory).resolve().name, **hub_options)

    def push_to_hub(self, repo_id: str, *args, **kwargs):
        """``model.push_to_hub(repo_id, ..., tokenizer=<the pipeline's tokenizer>)``: the model, its tokenizer, the
        code and the A2Gen model card in one commit (transformers' ``Pipeline.push_to_hub`` options; see
        :func:`a2gen_hf.hub.push_model_to_hub` for ``eval_results`` and ``dataset_name``). ``pipeline(
        "action-generation", model=repo_id)`` loads it back."""
        if kwargs.get("tokenizer", self.tokenizer) is not self.tokenizer:
            raise ValueError(
                "push_to_hub: the pipeline pushes its own tokenizer; leave tokenizer= out, or push another with "
                "model.push_to_hub(repo_id, tokenizer=...)."
            )
        kwargs["tokenizer"] = self.tokenizer
        return self.model.push_to_hub(repo_id, *args, **kwargs)

    def __call__(self, inputs: dict[str, Any] | Iterable[dict[str, Any]], **kwargs) -> list[dict[str, Any]] | list:
        """Rank the candidates of one request (a dict) or of each request of a list or tuple (a list of results; an
        empty one for no requests); a generator or another iterator of requests is streamed, as transformers
        streams a generator: the results come as an iterator. See the class docstring."""
        batch_size = kwargs.get("batch_size", self._batch_size)
        if batch_size not in (None, 1):
            raise ValueError(
                f"batch_size={batch_size} is not supported: each request is already scored as one batch of its "
                "candidates; leave batch_size unset."
            )
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(inputs, list) and not inputs:
            return []  # before: transformers' own IndexError (it reads inputs[0])
        if isinstance(inputs, Iterator) and not isinstance(inputs, GeneratorType):
            inputs = (request for request in inputs)  # transformers streams generators only
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(
        self,
        side_feature_fields: Sequence[str] | None = None,
        rank_by: str | Mapping[str, float] | None = None,
        top_k: int | None = None,
        timelines: bool | None = None,
        generate_kwargs: Mapping[str, Any] | None = None,
        **options,
    ):
        unknown = sorted(set(options) - set(GENERATION_OPTIONS))
        if unknown:
            raise TypeError(
                f'The "{TASK}" pipeline got unknown parameters {unknown}; it takes side_feature_fields, rank_by, '
                f"top_k, timelines, generate_kwargs and the generation options {list(GENERATION_OPTIONS)}."
            )
        preprocess_parameters, forward_parameters = {}, {}
        if side_feature_fields is not None:
            preprocess_parameters["side_feature_fields"] = _field_names(side_feature_fields)
        if rank_by is not None:
            forward_parameters["rank_weights"] = self._rank_weights(rank_by)
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
                raise ValueError(f"top_k must be a positive int (the number of candidates to return), got {top_k!r}.")
            if rank_by is None:
                raise ValueError(
                    f"top_k={top_k} needs rank_by (an action name or {{action: weight}}) to say what is best."
                )
            forward_parameters["top_k"] = top_k
        if timelines is not None:
            forward_parameters["timelines"] = bool(timelines)
        if generate_kwargs is not None or options:
            if generate_kwargs is not None and not isinstance(generate_kwargs, Mapping):
                raise TypeError(f"generate_kwargs must be a dict of generate() options, got {generate_kwargs!r}.")
            forward_parameters["generate_kwargs"] = {**(generate_kwargs or {}), **options}
        if timelines is not None and not timelines and forward_parameters.get("generate_kwargs"):
            raise ValueError(
                f"Generation options {sorted(forward_parameters['generate_kwargs'])} with timelines=False: they only act "
                "on the timelines generated (the scores do not depend on them); drop them, or set timelines=True."
            )
        return preprocess_parameters, forward_parameters, {}

    def _rank_weights(self, rank_by: str | Mapping[str, float]) -> torch.Tensor:
        """``rank_by`` as one weight per action id `(vocab_size,)`."""
        config = self.model.config
        weights = {rank_by: 1.0} if isinstance(rank_by, str) else rank_by
        if not isinstance(weights, Mapping) or not weights:
            raise TypeError(f"rank_by must be an action name or a non-empty {{action: weight}} dict, got {rank_by!r}.")
        unknown = sorted(str(name) for name in weights if name not in config.action_names)
        if unknown:
            raise ValueError(f"rank_by names unknown action(s) {unknown}; the actions are {config.action_names}.")
        if config.start_action in weights:  # it opens every timeline: P = 1 for every candidate, no order
            ranked = [name for name in config.action_names if name != config.start_action]
            raise ValueError(
                f"rank_by names the start action {config.start_action!r}, which every candidate's timeline opens "
                f"with (probability 1: no ranking); rank by the actions after it: {ranked}."
            )
        vector = torch.zeros(config.vocab_size)
        for name, weight in weights.items():
            if isinstance(weight, (bool, np.bool_)) or not isinstance(weight, numbers.Real):
                raise TypeError(f"rank_by weight of {name!r} must be a number, got {type(weight).__name__} {weight!r}.")
            if not math.isfinite(weight):
                raise ValueError(f"rank_by weight of {name!r} must be finite, got {weight!r}.")
            vector[config.action_id(name)] = float(weight)
        return vector

    # ----------------------------------------------------------------------------------------------------------
    # Request -> rows of the example schema -> collator batch

    def _side_ids(self, side_features: Any, fields: list[str] | None, where: str) -> list[int]:
        """Hashed side features ``(F,)`` of one item."""
        width = self.model.config.num_item_side_features
        if side_features is None:
            return [0] * width
        if not isinstance(side_features, Mapping):
            raise ActionRequestError(f"{where}: side_features must be a dict {{field: raw value}}, got {side_features!r}.")
        if not side_features:
            return [0] * width
        if width == 0:
            raise ActionRequestError(
                f"{where}: side_features {dict(side_features)} given, but this model reads no item side features "
                "(num_item_side_features=0); leave them out."
            )
        if fields is None:
            raise ActionRequestError(
                f"{where}: this model reads {width} item side features, but its tokenizer was saved without their field "
                f"names; pass side_feature_fields=[...] (the {width} field names in the order the training data used) "
                "to the pipeline."
            )
        unknown = sorted(set(side_features) - set(fields))
        if unknown:
            raise ActionRequestError(f"{where}: unknown side feature field(s) {unknown}; the fields are {fields}.")
        # A missing, None or empty value is unknown: bucket 0, as an empty value in a converted log.
        return [
            0 if side_features.get(field) in (None, "")
            else _hashed(partial(self.tokenizer.hash_side_feature, field), side_features[field], f"{where}.{field}")
            for field in fields
        ]

    def _history_row(
        self, index: int, entry: Any, fields: list[str] | None
    ) -> tuple[int, list[int], list, list, float | None]:
        """Item id, side ids, action ids, seconds (NaN = unknown) and session start (Unix seconds, None when not given)
        of history entry ``index``."""
        where = f"history[{index}]"
        if not isinstance(entry, Mapping):
            raise ActionRequestError(f'{where} must be a dict {{"item": ..., "events": [...]}}, got {entry!r}.')
        _check_keys(entry, HISTORY_ITEM_KEYS, ("item", "events"), where)
        try:
            action_ids = self.tokenizer.encode_timeline(entry["events"], repeated_start=True)["action_ids"]
        except (TimelineError, ValueError) as error:
            raise ActionRequestError(f"{where} (item {entry['item']!r}): {error}") from None
        # encode_timeline validated every time; the collator normalises the raw seconds (the one time encoding).
        seconds = [math.nan if value is None else float(value) for _, value in entry["events"]]
        item_id = self._hash_item(entry["item"], where)
        session_start = entry.get("session_start")
        if session_start is not None:
            session_start = _request_seconds(session_start, f"{where}.session_start")
        return item_id, self._side_ids(entry.get("side_features"), fields, where), action_ids, seconds, session_start

    def _session_times(self, request: Mapping[str, Any], history_rows: list[tuple]) -> dict[str, Any]:
        """The example row's ``session_start`` and ``history_session_starts`` (whole Unix seconds, floored) for a model
        that reads the history sessions' times; nothing for other models (after checking what the request gives)."""
        time = request.get("time")
        time = None if time is None else _request_seconds(time, "time")
        starts = [row[4] for row in history_rows]
        for index, start in enumerate(starts):
            if start is not None and time is not None and start > time:
                raise ActionRequestError(
                    f"history[{index}].session_start={start!r} is after the request's time={time!r}; a history "
                    "session starts no later than the request (both Unix seconds)."
                )
        _check_oldest_first(starts)
        if not getattr(self.model.config, "history_time_features", False):
            return {}
        if not history_rows:  # nothing to age: the model reads no history item's time
            return {"session_start": 0 if time is None else math.floor(time), "history_session_starts": []}
        lacking = [f"history[{index}]" for index, start in enumerate(starts) if start is None]
        if lacking or time is None:
            missing = ([f'"session_start" in {", ".join(lacking)}'] if lacking else []) + (
                ['"time" in the request'] if time is None else []
            )
            raise ActionRequestError(
                f"This model reads when the history sessions happened (history_time_features=True): add "
                f"{' and '.join(missing)}. Give every history entry its session's start (\"session_start\": Unix "
                "seconds) and the request its time (\"time\": Unix seconds of the session the candidates are shown in)."
            )
        return {"session_start": math.floor(time), "history_session_starts": [math.floor(start) for start in starts]}

    def _hash_item(self, raw: Any, where: str) -> int:
        if raw is None or isinstance(raw, (Mapping, list, tuple)):
            raise ActionRequestError(f"{where}: the item id must be a raw id (string or number), got {raw!r}.")
        return _hashed(self.tokenizer.hash_item, raw, where)

    def preprocess(self, request: dict[str, Any], side_feature_fields: list[str] | None = None) -> dict[str, Any]:
        width = self.model.config.num_item_side_features
        if side_feature_fields is None:
            side_feature_fields = self.tokenizer.side_feature_fields
        if side_feature_fields is not None and width and len(side_feature_fields) != width:
            raise ActionRequestError(
                f"side_feature_fields={side_feature_fields} names {len(side_feature_fields)} fields, but the model "
                f"reads {width} item side features; give exactly {width} names."
            )
        if not isinstance(request, Mapping):
            raise ActionRequestError(
                f'A request is a dict {{"user": ..., "history": [...], "candidates": [...]}}, got '
                f"{type(request).__name__}."
            )
        _check_keys(request, REQUEST_KEYS, REQUIRED_REQUEST_KEYS, "the request")
        user = request["user"]
        if user is None or isinstance(user, (Mapping, list, tuple)):
            raise ActionRequestError(f"user must be a raw user id (string or number), got {user!r}.")
        history, candidates = request["history"], request["candidates"]
        if isinstance(history, (str, bytes, Mapping)) or not isinstance(history, Sequence):
            raise ActionRequestError(f"history must be a list of history items (oldest first), got {history!r}.")
        if isinstance(candidates, (str, bytes, Mapping)) or not isinstance(candidates, Sequence) or not candidates:
            raise ActionRequestError(
                f"candidates must be a non-empty list of raw item ids or {{\"item\": ..., \"side_features\": ...}} "
                f"dicts, got {candidates!r}."
            )

        raw_items, item_ids, item_side_ids = [], [], []
        for index, candidate in enumerate(candidates):
            where = f"candidates[{index}]"
            side_features = None
            if isinstance(candidate, Mapping):
                _check_keys(candidate, CANDIDATE_KEYS, ("item",), where)
                candidate, side_features = candidate["item"], candidate.get("side_features")
            item_ids.append(self._hash_item(candidate, where))
            item_side_ids.append(self._side_ids(side_features, side_feature_fields, where))
            raw_items.append(candidate)
        # One row of the example schema holds the user's history; the collator cuts, pads and normalises it exactly
        # as for training. Its target item is a placeholder: the candidates are scored by the ranker.
        history_rows = [self._history_row(index, entry, side_feature_fields) for index, entry in enumerate(history)]
        row = {
            "user_id": _hashed(self.tokenizer.hash_user, user, "user"),
            "history_item_ids": [row[0] for row in history_rows],
            "history_item_side_ids": [row[1] for row in history_rows],
            "history_action_ids": [row[2] for row in history_rows],
            "history_action_seconds": [row[3] for row in history_rows],
            "item": raw_items[0],
            "item_id": item_ids[0],
            "item_side_ids": item_side_ids[0],
            "action_ids": [self.tokenizer.start_action_id],
            "action_seconds": [0.0],
            **self._session_times(request, history_rows),
        }
        batch = self.collator([row])
        user_inputs = {name: value for name, value in batch.items() if name in USER_INPUT_NAMES}
        return {
            "user": user_inputs,
            "item_ids": torch.tensor(item_ids, dtype=torch.long),
            "item_side_ids": torch.tensor(item_side_ids, dtype=torch.long).view(len(item_ids), width) if width else None,
            "item_keys": (
                torch.from_numpy(self.tokenizer.item_keys(raw_items))
                if popularity_keyed_by_raw_id(self.model.config)
                else None
            ),
            "items": raw_items,
        }

    # ----------------------------------------------------------------------------------------------------------
    # Model and output

    def _forward(
        self,
        model_inputs: dict[str, Any],
        rank_weights: torch.Tensor | None = None,
        top_k: int | None = None,
        timelines: bool = True,
        generate_kwargs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        item_ids, item_side_ids, item_keys = (model_inputs[name] for name in ("item_ids", "item_side_ids", "item_keys"))
        state = self.ranker.encode_user(**model_inputs["user"])
        prediction = self.ranker.score_candidates(state, item_ids, item_side_ids, item_keys)
        order = torch.arange(item_ids.shape[0])
        scores = None
        if rank_weights is not None:
            scores = prediction.action_probabilities @ rank_weights.to(prediction.action_probabilities)
            order = torch.sort(scores.cpu(), descending=True, stable=True).indices[:top_k]
        selected_ids = item_ids[order]
        selected_side_ids = item_side_ids[order] if item_side_ids is not None else None
        selected_keys = item_keys[order] if item_keys is not None else None
        outputs = {
            "items": [model_inputs["items"][index] for index in order.tolist()],
            "scores": scores[order] if scores is not None else None,
            "action_probabilities": prediction.action_probabilities[order],
            "expected_seconds": prediction.expected_seconds[order],
            "timelines": None,
            "generate_outputs": {},
        }
        if timelines:
            generated = self.ranker.generate(
                state, selected_ids, selected_side_ids, item_keys=selected_keys, **_with_times(generate_kwargs or {})
            )
            decoded = self.tokenizer.decode_timelines(generated.sequences, generated.times)
            copies = len(decoded) // len(order)
            outputs["timelines"] = [decoded[row * copies : (row + 1) * copies] for row in range(len(order))]
            outputs["generate_outputs"] = {
                name: value for name, value in generated.items() if name not in TIMELINE_OUTPUTS
            }
        return outputs

    def postprocess(self, model_outputs: dict[str, Any]) -> list[dict[str, Any]]:
        config = self.model.config
        reported = [(name, config.action_id(name)) for name in config.action_names if name != config.start_action]
        probabilities = model_outputs["action_probabilities"].tolist()
        seconds = model_outputs["expected_seconds"].tolist()
        scores = model_outputs["scores"].tolist() if model_outputs["scores"] is not None else None
        timelines = model_outputs["timelines"]
        extra = _per_candidate(model_outputs["generate_outputs"], len(model_outputs["items"]))
        results = []
        for row, item in enumerate(model_outputs["items"]):
            result = {"item": item}
            if scores is not None:
                result["score"] = scores[row]
            result["action_probabilities"] = {name: probabilities[row][index] for name, index in reported}
            result["expected_seconds"] = {name: seconds[row][index] for name, index in reported}
            if timelines is not None:
                result["timeline"] = timelines[row][0]
                if len(timelines[row]) > 1:
                    result["timelines"] = timelines[row]
            result.update({name: values[row] for name, values in extra.items()})
            results.append(result)
        return results


def _per_candidate(outputs: Mapping[str, Any], candidates: int) -> dict[str, list]:
    """
    The outputs generate() was asked for beside the timelines (``output_scores``, ``output_logits``,
    ``output_attentions``, ``output_hidden_states``), one entry per candidate, as Python lists (transformers'
    text-generation pipeline returns them per record so). A candidate runs a block of rows: its sequences (greedy
    search, sampling) or its ``num_beams`` beams (beam search). ``scores`` / ``logits``: per row, its steps' scores
    over the actions `[rows][steps][actions]`; ``attentions`` / ``hidden_states``: per row, its steps' generator
    tensors `[rows][steps][tensors][...]`. With beams, per returned sequence (the ``timelines`` order):
    ``sequences_scores`` (with ``output_scores``) and ``beam_indices`` (with any of the four), which name for each
    step the row (the candidate's beam, from 0) the sequence extended, -1 after its end.
    """
    per_step = {name: value for name, value in outputs.items() if isinstance(value, tuple) and value}
    if not per_step:
        return {}
    first = next(iter(per_step.values()))[0]
    rows = (first if torch.is_tensor(first) else first[0]).shape[0] // candidates
    split = {
        name: [
            [
                [step[row].tolist() if torch.is_tensor(step) else [tensor[row].tolist() for tensor in step]
                 for step in value]
                for row in range(candidate * rows, (candidate + 1) * rows)
            ]
            for candidate in range(candidates)
        ]
        for name, value in per_step.items()
    }
    for name in ("sequences_scores", "beam_indices"):
        value = outputs.get(name)
        if torch.is_tensor(value):  # (candidates * returned, ...): each candidate's returned sequences
            blocks = value.cpu().chunk(candidates)
            if name == "beam_indices":  # a row of all candidates' beams -> the candidate's own beam
                blocks = [torch.where(block >= 0, block - index * rows, block) for index, block in enumerate(blocks)]
            split[name] = [block.tolist() for block in blocks]
    return split


def _saved_tokenizer(name_or_path: str) -> A2GenActionTokenizer | None:
    """The tokenizer saved beside a model (folder or Hub repository), or None when there is none."""
    if not name_or_path:
        return None
    if Path(name_or_path).is_dir():
        found = (Path(name_or_path) / "tokenizer_config.json").is_file()
    else:
        found = cached_file(name_or_path, "tokenizer_config.json", _raise_exceptions_for_missing_entries=False)
    return A2GenActionTokenizer.from_pretrained(name_or_path) if found else None


def _hashed(hash_one: Callable[[Any], int], raw: Any, where: str) -> int:
    """``hash_one(raw)``; an id the tokenizer cannot hash (NaN, a bool, a list, ...) is an error naming ``where``."""
    try:
        return hash_one(raw)
    except ValueError as error:
        raise ActionRequestError(f"{where}: {error}") from None


# A history whose session starts go back on more than this share of its adjacent steps (with at least
# MIN_STARTS_FOR_ORDER_CHECK starts given) is taken to be listed newest first, and refused. Prepared histories are
# ordered by end time, so some starts go back (on real data up to half of an example's steps); this is well above.
NEWEST_FIRST_SHARE = 0.75
MIN_STARTS_FOR_ORDER_CHECK = 4


def _check_oldest_first(starts: list[float | None]) -> None:
    """Refuses a request history that its session starts show to be listed newest first: the model and the
    collator (which keeps the last ``max_history_items``) read it oldest first, and a reversed one scores silently
    wrong. Entries without a session start are skipped."""
    given = [(index, start) for index, start in enumerate(starts) if start is not None]
    if len(given) < MIN_STARTS_FOR_ORDER_CHECK:
        return
    steps = len(given) - 1
    back = sum(later < earlier for (_, earlier), (_, later) in zip(given, given[1:]))
    if back > NEWEST_FIRST_SHARE * steps:
        (first, first_start), (last, last_start) = given[0], given[-1]
        raise ActionRequestError(
            f"The history looks listed newest first: its session starts go back in time on {back} of {steps} steps "
            f"(history[{first}].session_start={first_start!r}, history[{last}].session_start={last_start!r}). List "
            "the history oldest first, most recent last: reverse it (history[::-1]). A history is refused when its "
            f"starts go back on more than {NEWEST_FIRST_SHARE:.0%} of the steps between entries that give one."
        )


def _request_seconds(value: Any, where: str) -> float:
    """A request's Unix seconds (``time``, a history entry's ``session_start``): a finite number, else an error
    naming ``where``."""
    try:
        return _unix_seconds(value, where)
    except ValueError as error:
        raise ActionRequestError(str(error)) from None


def _field_names(side_feature_fields: Sequence[str]) -> list[str]:
    if isinstance(side_feature_fields, str) or not all(isinstance(field, str) for field in side_feature_fields):
        raise TypeError(f"side_feature_fields must be a list of field names, got {side_feature_fields!r}.")
    return list(side_feature_fields)


def _check_keys(entry: Mapping, allowed: Sequence[str], required: Sequence[str], where: str) -> None:
    missing = [key for key in required if key not in entry]
    unknown = sorted(set(entry) - set(allowed))
    if missing or unknown:
        problems = ([f"missing {missing}"] if missing else []) + ([f"unknown {unknown}"] if unknown else [])
        raise ActionRequestError(f"{where} has {' and '.join(problems)} key(s); its keys are {list(allowed)}.")


PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=ActionGenerationPipeline, pt_model=AutoModelForActionGeneration)
