"""The ``"action-generation"`` pipeline: one user's raw history and candidate items in, per-candidate predictions out.

``import a2gen_hf`` registers it, so ``transformers.pipeline("action-generation", model=...)`` works like any other
task. The pipeline hashes raw ids and checks timelines with the tokenizer, lays the request out as rows of the
on-disk example schema (``docs/design.md``) and lets :class:`~a2gen_hf.data.A2GenDataCollator` build the tensors,
exactly as for training.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .auto import AutoModelForActionGeneration
from .data.collator import A2GenDataCollator
from .modeling_a2gen import A2GenForActionGeneration
from .tokenization_a2gen import A2GenActionTokenizer, TimelineError

TASK = "action-generation"
REQUEST_KEYS = ("user", "history", "candidates")
HISTORY_ITEM_KEYS = ("item", "events", "side_features")
CANDIDATE_KEYS = ("item", "side_features")


class ActionRequestError(ValueError):
    """Raised when an ``"action-generation"`` request is malformed; the message names the offending part."""


def generate_timelines(
    model: A2GenForActionGeneration, tokenizer: A2GenActionTokenizer, batch: Mapping[str, torch.Tensor]
) -> list[list[tuple[str, float | None]]]:
    """The most likely timeline of every example of ``batch`` (greedy ``generate``), decoded to ``(action, seconds)``.

    ``batch`` holds the forward's history inputs, e.g. a collator batch (labels are ignored).
    """
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
    Scores a list of candidate items for one user with an :class:`A2GenForActionGeneration` model.

    Input, one request (a list of requests gives a list of results)::

        {
            "user": "u1",                                    # raw user id
            "history": [                                     # oldest first, most recent last (may be empty)
                {"item": "v7", "events": [("start", 0.0), ("like", 2.0), ("leave", 18.0)],
                 "side_features": {"category": "topic_3"}},  # optional
                ...
            ],
            "candidates": ["v42", {"item": "v43", "side_features": {"category": "topic_1"}}],
        }

    Raw ids are hashed with the tokenizer; each history item's events are a timeline as
    :meth:`A2GenActionTokenizer.encode_timeline` takes it (start action first at 0 s, times in seconds since the
    item started, None = unknown). The collator keeps the model's caps: the last ``max_history_items`` history items,
    the first ``max_events_per_item`` events of each.

    Item side features: a model with ``num_item_side_features = F > 0`` needs ``side_feature_fields``, the F field
    names in the order the data used (``["category", "opening_topic"]`` for the simulator), given when the pipeline is
    built or called. A field an item does not give, or gives as None or "", is unknown: bucket 0, as an
    empty value in a converted log.

    Output, one dict per candidate, in input order::

        {"item": "v42",
         "action_probabilities": {"like": 0.31, ..., "leave": 1.0},  # P(action happens); the start action is left out
         "expected_seconds": {"like": 4.2, ..., "leave": 17.5},      # E[time of its first occurrence | it happens]
         "timeline": [("start", 0.0), ("like", 2.1), ("leave", 16.9)]}  # greedy generate, decoded

    Args:
        model (:class:`A2GenForActionGeneration`): the model.
        tokenizer (:class:`A2GenActionTokenizer` or a folder, *optional*): defaults to the tokenizer saved in the
            model's folder, else ``A2GenActionTokenizer.from_config`` of the model's config (which carries the same
            actions, time statistics and buckets). It must agree with the config (``check_compatible``).
        side_feature_fields (`list[str]`, *optional*): see above.
    """

    # The factory's AutoTokenizer would build a default tokenizer for a folder without tokenizer files; the pipeline
    # resolves its tokenizer itself (see __init__).
    _load_tokenizer = False

    def __init__(
        self, model: A2GenForActionGeneration, tokenizer: A2GenActionTokenizer | str | None = None, **kwargs
    ):
        if not isinstance(model, A2GenForActionGeneration):
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
            folder = Path(str(model.name_or_path))
            if (folder / "tokenizer_config.json").is_file():
                tokenizer = A2GenActionTokenizer.from_pretrained(folder)
            else:
                tokenizer = A2GenActionTokenizer.from_config(config)
        elif isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = A2GenActionTokenizer.from_pretrained(tokenizer)
        if not isinstance(tokenizer, A2GenActionTokenizer):
            raise TypeError(f"tokenizer must be an A2GenActionTokenizer, got {type(tokenizer).__name__}.")
        tokenizer.check_compatible(config)
        super().__init__(model, tokenizer=tokenizer, **kwargs)
        self.collator = A2GenDataCollator.from_config(config, tokenizer)

    def __call__(self, inputs: dict[str, Any] | list[dict[str, Any]], **kwargs) -> list[dict[str, Any]] | list:
        """Score one request (a dict) or each request of a list; see the class docstring for both formats."""
        batch_size = kwargs.get("batch_size", self._batch_size)
        if batch_size not in (None, 1):
            raise ValueError(
                f"batch_size={batch_size} is not supported: each request is already scored as one batch of its "
                "candidates; leave batch_size unset."
            )
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, side_feature_fields: Sequence[str] | None = None, **unknown):
        if unknown:
            raise TypeError(
                f'The "{TASK}" pipeline got unknown parameters {sorted(unknown)}; it takes side_feature_fields.'
            )
        preprocess_parameters = {}
        if side_feature_fields is not None:
            if isinstance(side_feature_fields, str) or not all(isinstance(f, str) for f in side_feature_fields):
                raise TypeError(f"side_feature_fields must be a list of field names, got {side_feature_fields!r}.")
            preprocess_parameters["side_feature_fields"] = list(side_feature_fields)
        return preprocess_parameters, {}, {}

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
                f"{where}: this model reads {width} item side features; pass side_feature_fields=[...] (the {width} "
                "field names in the order the training data used) to the pipeline."
            )
        unknown = sorted(set(side_features) - set(fields))
        if unknown:
            raise ActionRequestError(f"{where}: unknown side feature field(s) {unknown}; the fields are {fields}.")
        # A missing, None or empty value is unknown: bucket 0, as an empty value in a converted log.
        return [
            0 if side_features.get(field) in (None, "") else self.tokenizer.hash_side_feature(field, side_features[field])
            for field in fields
        ]

    def _history_row(self, index: int, entry: Any, fields: list[str] | None) -> tuple[int, list[int], list, list]:
        """Item id, side ids, action ids and seconds (NaN = unknown) of history entry ``index``."""
        where = f"history[{index}]"
        if not isinstance(entry, Mapping):
            raise ActionRequestError(f'{where} must be a dict {{"item": ..., "events": [...]}}, got {entry!r}.')
        _check_keys(entry, HISTORY_ITEM_KEYS, ("item", "events"), where)
        try:
            action_ids = self.tokenizer.encode_timeline(entry["events"])["action_ids"]
        except (TimelineError, ValueError) as error:
            raise ActionRequestError(f"{where} (item {entry['item']!r}): {error}") from None
        # encode_timeline validated every time; the collator normalises the raw seconds (the one time encoding).
        seconds = [math.nan if value is None else float(value) for _, value in entry["events"]]
        item_id = self._hash_item(entry["item"], where)
        return item_id, self._side_ids(entry.get("side_features"), fields, where), action_ids, seconds

    def _hash_item(self, raw: Any, where: str) -> int:
        if raw is None or isinstance(raw, (Mapping, list, tuple)):
            raise ActionRequestError(f"{where}: the item id must be a raw id (string or number), got {raw!r}.")
        return self.tokenizer.hash_item(raw)

    def preprocess(self, request: dict[str, Any], side_feature_fields: list[str] | None = None) -> dict[str, Any]:
        width = self.model.config.num_item_side_features
        if side_feature_fields is not None and len(side_feature_fields) != width:
            raise ActionRequestError(
                f"side_feature_fields={side_feature_fields} names {len(side_feature_fields)} fields, but the model "
                f"reads {width} item side features; give exactly {width} names."
            )
        if not isinstance(request, Mapping):
            raise ActionRequestError(
                f'A request is a dict {{"user": ..., "history": [...], "candidates": [...]}}, got '
                f"{type(request).__name__}."
            )
        _check_keys(request, REQUEST_KEYS, REQUEST_KEYS, "the request")
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

        history_rows = [self._history_row(index, entry, side_feature_fields) for index, entry in enumerate(history)]
        shared = {
            "user_id": self.tokenizer.hash_user(user),
            "history_item_ids": [row[0] for row in history_rows],
            "history_item_side_ids": [row[1] for row in history_rows],
            "history_action_ids": [row[2] for row in history_rows],
            "history_action_seconds": [row[3] for row in history_rows],
            # The target's own sequence is unknown: only the start action, which every sequence opens with.
            "action_ids": [self.tokenizer.start_action_id],
            "action_seconds": [0.0],
        }
        raw_items, rows = [], []
        for index, candidate in enumerate(candidates):
            where = f"candidates[{index}]"
            side_features = None
            if isinstance(candidate, Mapping):
                _check_keys(candidate, CANDIDATE_KEYS, ("item",), where)
                candidate, side_features = candidate["item"], candidate.get("side_features")
            rows.append(
                {
                    **shared,
                    "item_id": self._hash_item(candidate, where),
                    "item_side_ids": self._side_ids(side_features, side_feature_fields, where),
                }
            )
            raw_items.append(candidate)
        batch = self.collator(rows)
        inputs = {name: value for name, value in batch.items() if not name.startswith("label")}
        return {"inputs": inputs, "items": raw_items}

    # ----------------------------------------------------------------------------------------------------------
    # Model and output

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        inputs = model_inputs["inputs"]
        prediction = self.model.predict_actions(**inputs)
        return {
            "items": model_inputs["items"],
            "action_probabilities": prediction.action_probabilities,
            "expected_seconds": prediction.expected_seconds,
            "timelines": generate_timelines(self.model, self.tokenizer, inputs),
        }

    def postprocess(self, model_outputs: dict[str, Any]) -> list[dict[str, Any]]:
        config = self.model.config
        reported = [(name, config.action_id(name)) for name in config.action_names if name != config.start_action]
        probabilities = model_outputs["action_probabilities"].tolist()
        seconds = model_outputs["expected_seconds"].tolist()
        return [
            {
                "item": item,
                "action_probabilities": {name: probabilities[row][index] for name, index in reported},
                "expected_seconds": {name: seconds[row][index] for name, index in reported},
                "timeline": timeline,
            }
            for row, (item, timeline) in enumerate(zip(model_outputs["items"], model_outputs["timelines"]))
        ]


def _check_keys(entry: Mapping, allowed: Sequence[str], required: Sequence[str], where: str) -> None:
    missing = [key for key in required if key not in entry]
    unknown = sorted(set(entry) - set(allowed))
    if missing or unknown:
        problems = ([f"missing {missing}"] if missing else []) + ([f"unknown {unknown}"] if unknown else [])
        raise ActionRequestError(f"{where} has {' and '.join(problems)} key(s); its keys are {list(allowed)}.")


PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=ActionGenerationPipeline, pt_model=AutoModelForActionGeneration)
