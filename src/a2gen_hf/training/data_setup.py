"""
From a data folder to a model: derive the model configuration the data dictates and build the model (used by
``a2gen train``, ``a2gen compare`` and ``a2gen demo``).

The data folder itself (its layout, :func:`load_data_dir`) is owned by :mod:`a2gen_hf.data.folder`; its names are
re-exported here for old imports.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict
from transformers import PreTrainedModel

from ..configuration_a2gen import GENERATORS, A2GenConfig, ActionSequenceConfig
from ..configuration_baselines import MMoEConfig, PLEConfig
from ..data.folder import DATA_SUMMARY_FILE, TOKENIZER_FOLDER, load_data_dir, load_parquet  # noqa: F401  (old home)
from ..data.logs import actions_never_counted, no_ranked_action_text, ranked_actions, untrained_text
from ..features_a2gen import TargetPopularityFeatures, popularity_keyed_by_raw_id
from ..modeling_a2gen import A2GenFeatureEmbeddings, A2GenForActionGeneration
from ..modeling_baselines import MMoEForActionPrediction, PLEForActionPrediction
from ..strict_loading import CONFIG_NAME, looks_like_hub_id, missing_config_error, missing_model_message
from ..tokenization_a2gen import A2GenActionTokenizer

logger = logging.getLogger(__name__)

# The models `a2gen train --model` (and `a2gen compare`) can build: config class, model class, fixed config values.
MODEL_CHOICES: dict[str, tuple[type[A2GenConfig], type[PreTrainedModel], dict[str, Any]]] = {
    "a2gen-iag": (A2GenConfig, A2GenForActionGeneration, {"generator_type": "iag"}),
    "a2gen-eag": (A2GenConfig, A2GenForActionGeneration, {"generator_type": "eag"}),
    "mmoe": (MMoEConfig, MMoEForActionPrediction, {"history_input": "items"}),
    "ple": (PLEConfig, PLEForActionPrediction, {"history_input": "items"}),
    # Fairly fed: each history item also carries its timed action events, as A2Gen's history does.
    "mmoe-fair": (MMoEConfig, MMoEForActionPrediction, {"history_input": "items_and_events"}),
    "ple-fair": (PLEConfig, PLEForActionPrediction, {"history_input": "items_and_events"}),
}

# Config fields the data decides: overriding them would make the model disagree with the saved ids and times.
DATA_FIELDS = (
    "action_names",
    "start_action",
    "end_action",
    "time_log_mean",
    "time_log_std",
    "user_buckets",
    "item_buckets",
    "side_feature_buckets",
    "num_item_side_features",
)


def _longest(dataset: Dataset, column: str, nested: bool) -> int:
    """Longest list in ``column`` (of the inner lists when ``nested``), read from Arrow without Python rows."""
    longest = 0
    for table in dataset.select_columns([column]).with_format("arrow").iter(batch_size=100_000):
        values = table.column(column)
        if nested:
            values = pc.list_flatten(values)
        lengths = pc.list_value_length(values)
        if len(lengths):
            longest = max(longest, int(pc.max(lengths).as_py() or 0))
    return longest


def _splits(dataset) -> list:
    if isinstance(dataset, (DatasetDict, IterableDatasetDict)):
        return list(dataset.values())
    if isinstance(dataset, (Dataset, IterableDataset)):
        return [dataset]
    raise TypeError(
        f"dataset must be a Dataset, an IterableDataset or a DatasetDict / IterableDatasetDict of them, not "
        f"{type(dataset).__name__}; wrap a dict of splits as datasets.DatasetDict(splits)."
    )


def _accepted_fields(config_class: type[ActionSequenceConfig]) -> set[str]:
    """The overrides ``config_class`` takes: its fields, its aliases and the fields it accepts and drops."""
    return config_class.field_names() | set(config_class.aliases) | config_class.ignored_fields | {"generator"}


def model_config_from_tokenizer(
    tokenizer: A2GenActionTokenizer,
    dataset: DatasetDict | Dataset | IterableDataset | IterableDatasetDict,
    generator: str = "iag",
    config_class: type[A2GenConfig] = A2GenConfig,
    **overrides: Any,
) -> A2GenConfig:
    """
    The model configuration the data decides, with ``overrides`` for the architecture.

    Read from the tokenizer: ``action_names``, ``start_action`` / ``end_action``, ``time_log_mean`` /
    ``time_log_std``, the bucket counts and ``max_actions``. The bucket counts are the embedding tables' rows: the
    tokenizer's ids lie in ``[0, buckets)``, and ``a2gen prepare`` / ``a2gen simulate`` size them from the distinct ids
    of the data unless the user set them (:mod:`a2gen_hf.data.buckets`), so the tables follow the data. Read from the examples (every split of ``dataset``,
    scanned column-wise in Arrow): ``num_item_side_features`` (the width of ``item_side_ids``, 0 without it),
    ``max_history_items`` = the longest history, capped at :class:`A2GenConfig`'s default (100), and
    ``max_events_per_item`` = the most events of a history item, capped at ``max_actions + 1`` (a whole target
    sequence). A streaming dataset is not scanned: its first example gives the side features and the caps keep
    their defaults.

    Args:
        tokenizer: the data folder's fitted tokenizer.
        dataset: the examples (a ``DatasetDict`` from :func:`load_data_dir`, or one split).
        generator: ``"iag"`` or ``"eag"`` (A2Gen only; the baselines ignore it).
        config_class: :class:`A2GenConfig`, :class:`MMoEConfig` or :class:`PLEConfig`.
        overrides: any other field of ``config_class`` (``hidden_size``, ``num_attention_heads``, the caps, ...).

    Raises:
        ValueError: an override names an unknown field or one the data decides (:data:`DATA_FIELDS`).
    """
    if generator not in GENERATORS:
        raise ValueError(f"generator={generator!r} is unknown; use one of {list(GENERATORS)}.")
    unknown = sorted(set(overrides) - _accepted_fields(config_class))
    if unknown:
        raise ValueError(f"{config_class.__name__} has no field(s) {unknown}; check the spelling of the overrides.")
    fixed = sorted(set(overrides) & set(DATA_FIELDS))
    if fixed:
        raise ValueError(
            f"{fixed} are read from the data's tokenizer and examples and cannot be overridden; re-create the data "
            "folder (a2gen simulate / a2gen prepare) to change them."
        )
    splits = _splits(dataset)
    first = next(iter(splits[0])) if splits and isinstance(splits[0], IterableDataset) else None
    columns = splits[0].column_names if isinstance(splits[0], Dataset) else list(first or {})
    if "item_side_ids" in columns:
        row = first if first is not None else splits[0][0]
        side_features = len(row["item_side_ids"])
    else:
        side_features = 0
    history_cap = A2GenConfig.field_default("max_history_items")
    max_actions = int(overrides.get("max_actions", tokenizer.max_actions))
    values: dict[str, Any] = {"max_actions": max_actions}
    scannable = [split for split in splits if isinstance(split, Dataset) and len(split)]
    if scannable:
        longest_history = max(_longest(split, "history_item_ids", nested=False) for split in scannable)
        most_events = max(_longest(split, "history_action_ids", nested=True) for split in scannable)
        values["max_history_items"] = max(1, min(longest_history, history_cap))
        values["max_events_per_item"] = max(1, min(most_events, max_actions + 1))
    values.update(
        action_names=list(tokenizer.action_names),
        start_action=tokenizer.start_action,
        end_action=tokenizer.end_action,
        time_log_mean=tokenizer.time_log_mean,
        time_log_std=tokenizer.time_log_std,
        user_buckets=tokenizer.user_buckets,
        item_buckets=tokenizer.item_buckets,
        side_feature_buckets=tokenizer.side_feature_buckets,
        num_item_side_features=side_features,
    )
    if issubclass(config_class, A2GenConfig) and "generator_type" not in overrides:
        values["generator_type"] = overrides.pop("generator", generator)
    values.update(overrides)
    return config_class(**values)


def _without_what_the_name_fixes(model_name: str, fixed: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` less the fields ``model_name`` fixes (``generator`` being ``generator_type``'s alias): one that
    agrees is dropped, one that contradicts the name is refused (before: silently lost, or a bare TypeError)."""
    kept = dict(overrides)
    config_class, model_class, _ = MODEL_CHOICES[model_name]
    for field, value in fixed.items():
        for name in (field, *(alias for alias, target in config_class.aliases.items() if target == field)):
            if name in kept and kept.pop(name) != value:
                others = [choice for choice, (_, other_class, other) in MODEL_CHOICES.items()
                          if other_class is model_class and other.get(field) == overrides[name]]  # fmt: skip
                instead = f"use model_name={others[0]!r} instead" if others else f"{field} is {value!r} for this model"
                raise ValueError(
                    f"model_name={model_name!r} fixes {field}={value!r}, but the overrides give {name}="
                    f"{overrides[name]!r}: {instead}, or drop the override."
                )
    return kept


def settings_the_model_drops(model_name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The ``overrides`` (set away from A2Gen's defaults) that ``model_name``'s config accepts and drops: A2Gen's own
    fields (:data:`~a2gen_hf.configuration_a2gen.A2GEN_ONLY_FIELDS`) for MMoE and PLE, so one set of options serves
    every network of a comparison; a single run says which of them it does not use."""
    config_class = MODEL_CHOICES[model_name][0] if model_name in MODEL_CHOICES else A2GenConfig
    dropped = config_class.ignored_fields - {"generator"}
    return {
        name: value for name, value in overrides.items()
        if name in dropped and value is not None and value != A2GenConfig.field_default(name)
    }  # fmt: skip


def warn_of_settings_the_model_drops(model_name: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Warn of the A2Gen settings among ``overrides`` that ``model_name`` (MMoE, PLE) accepts and does not use
    (:func:`~a2gen_hf.training.data_setup.settings_the_model_drops`), naming each with its value: they are accepted
    so that one recipe serves every network, but never silently. ``a2gen train`` says it for its model and ``a2gen
    compare`` once per such network, in the same words. Returns them (empty for A2Gen)."""
    unused = settings_the_model_drops(model_name, overrides or {})
    if unused:
        shown = ", ".join(f"{name}={value!r}" for name, value in sorted(unused.items()))
        logger.warning(f"{model_name} is not A2Gen: these A2Gen settings do not apply to it and are not used: {shown}.")
    return unused


def create_model(
    model_name: str,
    tokenizer: A2GenActionTokenizer,
    dataset: DatasetDict | Dataset | IterableDataset | IterableDatasetDict,
    **overrides: Any,
) -> PreTrainedModel:
    """
    A freshly initialised model of :data:`MODEL_CHOICES` (``a2gen-iag``, ``a2gen-eag``, ``mmoe``, ``ple``,
    ``mmoe-fair``, ``ple-fair``) sized
    for the data by :func:`model_config_from_tokenizer`; ``overrides`` go to the config. Seed first
    (``transformers.set_seed``) for reproducible weights.
    """
    if model_name not in MODEL_CHOICES:
        raise ValueError(f"Unknown model {model_name!r}; choose one of {list(MODEL_CHOICES)}.")
    config_class, model_class, fixed = MODEL_CHOICES[model_name]
    overrides = _without_what_the_name_fixes(model_name, fixed, overrides)
    config = model_config_from_tokenizer(tokenizer, dataset, config_class=config_class, **fixed, **overrides)
    model = model_class(config)
    train = dataset["train"] if isinstance(dataset, (DatasetDict, IterableDatasetDict)) else dataset
    if config.rare_id_threshold > 0:
        fit_rare_id_buckets(model, train)
    if config.target_popularity_features:
        fit_target_popularity(model, train, tokenizer)
    return model


def model_to_train_from(
    path: str | os.PathLike,
    model_name: str,
    tokenizer: A2GenActionTokenizer,
    dataset: DatasetDict | Dataset | IterableDataset | IterableDatasetDict,
    **overrides: Any,
) -> PreTrainedModel:
    """
    A model saved with ``save_pretrained`` (``a2gen train``'s ``OUTPUT/model``, or a Hub id) to train on: its config
    and weights, every weight trainable (a moment table kept fixed in the run that saved it trains now). The model
    keeps its architecture: ``model_name`` and ``overrides`` (what would have built it, see :func:`create_model`)
    must agree with the saved config, and the data must decide the same tables and actions
    (:data:`DATA_FIELDS`).

    Raises:
        FileNotFoundError: ``path`` is neither a folder nor a Hub id.
        CheckpointError (a ValueError): the folder holds no ``config.json`` (e.g. an ``a2gen train`` checkpoint-N).
        ValueError: ``path`` holds another kind of model than ``model_name``, the data decides another config
            (other actions or id tables: another data folder's tokenizer), or an override differs from the saved
            config; each names the field and both values.
    """
    if model_name not in MODEL_CHOICES:
        raise ValueError(f"Unknown model {model_name!r}; choose one of {list(MODEL_CHOICES)}.")
    config_class, model_class, fixed = MODEL_CHOICES[model_name]
    if not os.path.isdir(path) and not looks_like_hub_id(path):
        raise FileNotFoundError(missing_model_message(path))
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, CONFIG_NAME)):
        raise missing_config_error(path)
    try:
        saved_type = config_class.get_config_dict(str(path))[0].get("model_type")
    except OSError as error:  # not a folder here, and the Hub did not answer for the id (offline, or no such model)
        if os.path.isdir(path):
            raise
        raise FileNotFoundError(missing_model_message(path, error)) from None
    if saved_type != config_class.model_type:
        kinds = [name for name, (kind, _, _) in MODEL_CHOICES.items() if kind.model_type == saved_type]
        raise ValueError(
            f"{path} holds a {saved_type!r} model, not {model_name!r}; pass the model it holds "
            f"({' / '.join(kinds) or 'none of ' + str(list(MODEL_CHOICES))})."
        )
    saved = config_class.from_pretrained(str(path))
    built = model_config_from_tokenizer(tokenizer, dataset, config_class=config_class, **fixed, **overrides)
    asked = [config_class.aliases.get(name, name) for name in [*fixed, *overrides]]
    differences = [
        f"{name}: {getattr(saved, name)!r} in the saved model, {getattr(built, name)!r} here"
        for name in dict.fromkeys([*DATA_FIELDS, *asked])
        if hasattr(saved, name) and not _same_value(getattr(saved, name), getattr(built, name))
    ]
    if differences:
        raise ValueError(
            f"{path} does not fit this run: " + "; ".join(differences) + ". A model trained on from a saved one keeps "
            "its architecture and its data's tokenizer: pass the options that built it (the same --model, --recipe "
            "and architecture flags) and a data folder made with the same tokenizer."
        )
    model = model_class.from_pretrained(str(path))
    model.requires_grad_(True)
    for module in model.modules():  # ... but the tables an id-free model never reads
        if hasattr(module, "freeze_unread_tables"):
            module.freeze_unread_tables()
    return model


def _same_value(saved: Any, built: Any) -> bool:
    if isinstance(saved, float) and isinstance(built, float):
        return math.isclose(saved, built, rel_tol=1e-6, abs_tol=1e-9)
    return saved == built


def flat_ids(dataset: Dataset, column: str) -> np.ndarray:
    """All ids of ``column`` (ids, or lists of ids, nested or not), flattened in row order, as int64."""
    values = dataset.select_columns([column]).with_format("arrow")[:].column(column).combine_chunks()
    while pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        values = pc.list_flatten(values)
    return values.to_numpy(zero_copy_only=False).astype(np.int64)


def id_counts(dataset: Dataset, column: str, buckets: int) -> np.ndarray:
    """How often each hashed id occurs in ``column`` -> `(buckets,)`."""
    ids = flat_ids(dataset, column)
    if ids.size and (ids.min() < 0 or ids.max() >= buckets):
        raise ValueError(
            f"Column {column!r} holds id {int(ids.max() if ids.max() >= buckets else ids.min())} outside "
            f"[0, {buckets}); use the tokenizer saved with this data folder."
        )
    return np.bincount(ids, minlength=buckets)


def _on_disk(train, option: str) -> Dataset:
    if not isinstance(train, Dataset):
        raise TypeError(
            f"{option} needs the ids of an on-disk train split to count them, not a {type(train).__name__}; load the "
            "data folder without streaming, or count the ids yourself (see docs/model.md, 'Options for sparse logs')."
        )
    return train


def train_item_keys(train: Dataset, tokenizer: A2GenActionTokenizer) -> np.ndarray:
    """The raw-id keys (:meth:`A2GenActionTokenizer.item_keys`) of the ``train`` split's target items `(n,)`."""
    if "item" not in train.column_names:
        raise ValueError(
            "popularity_keys='raw_ids' keys the popularity counts by the raw item id, but the train split has no "
            f"'item' column (columns: {train.column_names}); prepare the data with `a2gen prepare` / `a2gen "
            "simulate` (they keep it), or pass --popularity-keys buckets."
        )
    raw = train.select_columns(["item"]).with_format("arrow")[:].column("item").combine_chunks()
    if raw.null_count:
        row = int(np.flatnonzero(raw.is_null().to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"Row {row} of the train split has no raw 'item' id; fill it as the log spells the id.")
    return tokenizer.item_keys(raw.to_pylist())


def fit_target_popularity(model: PreTrainedModel, train: Dataset, tokenizer: A2GenActionTokenizer) -> None:
    """Fill the model's :class:`TargetPopularityFeatures` with the action counts of the ``train`` split's targets
    (per item, keyed as ``config.popularity_keys`` says, and per category, item side feature 0); keyed by raw id,
    ``config.popularity_table_size`` becomes the number of distinct train items."""
    from .simple_baselines import ActionTargets

    train = _on_disk(train, "target_popularity_features")
    occurs = torch.from_numpy(ActionTargets.from_dataset(train, tokenizer).occurs)
    raw_ids = popularity_keyed_by_raw_id(model.config)
    items = torch.from_numpy(train_item_keys(train, tokenizer) if raw_ids else flat_ids(train, "item_id"))
    if model.config.num_item_side_features:
        side_ids = flat_ids(train, "item_side_ids").reshape(len(train), -1)
        categories = torch.from_numpy(side_ids[:, 0].copy())
    else:
        categories = torch.zeros_like(items)
    for module in model.modules():
        if isinstance(module, TargetPopularityFeatures):
            module.fit(items, categories, occurs)  # keyed by raw id, it sets config.popularity_table_size


def fit_rare_id_buckets(model: PreTrainedModel, train: Dataset) -> dict[str, int]:
    """
    Count in how many examples of the ``train`` split every hashed user id is the user and every item id the target
    (history lists repeat an item in every later example of its user, so they are not counted) and point the buckets seen fewer than ``config.rare_id_threshold`` times at the model's shared
    rows (:meth:`A2GenFeatureEmbeddings.mark_rare_ids`). Returns the numbers of buckets seen and rare per table.
    """
    config = model.config
    if config.rare_id_threshold <= 0:
        raise ValueError("The model's config has rare_id_threshold=0; set it > 0 to share rows among rare ids.")
    train = _on_disk(train, "rare_id_threshold")
    item_counts = id_counts(train, "item_id", config.item_buckets)
    user_counts = id_counts(train, "user_id", config.user_buckets)
    summary = {}
    for module in model.modules():
        if isinstance(module, A2GenFeatureEmbeddings):
            summary = module.mark_rare_ids(
                torch.from_numpy(item_counts), torch.from_numpy(user_counts), config.rare_id_threshold
            )
    return summary


# ---------------------------------------------------------------------------------------------------------------
# What a2gen train and a2gen compare check in the data before anything is fitted


def actions_without_training_positives(train: Any, config: A2GenConfig) -> list[str]:
    """The scored actions (not start, not end) that no example of ``train`` (a ``datasets.Dataset`` with
    ``action_ids``) holds: nothing can learn them, e.g. a log whose buys all fall in its test period. The rule is the
    data layer's (:func:`~a2gen_hf.data.logs.actions_never_counted`), which prepare applies to its action counts."""
    ids = pc.list_flatten(train.data.column("action_ids")).to_numpy(zero_copy_only=False)
    counts = np.bincount(ids.astype(np.int64), minlength=config.vocab_size)
    by_name = {name: int(counts[config.action_id(name)]) for name in config.action_names}
    return actions_never_counted(by_name, config.action_names, config.start_action, config.end_action)


def untrained_actions(data_dir, train: Any, config: A2GenConfig, consequence: str = "") -> list[str]:
    """Before anything is fitted (``a2gen train`` and ``a2gen compare``): the ranked actions that never happen in
    ``train`` (:func:`actions_without_training_positives`), warned of (``consequence``: what else that means to the
    caller); a log whose training split holds no ranked action at all (a log of clicks only) is refused. Before, the
    regressions, the residual fit and the start of training ran first, and the loop refused on validation, leaving an
    empty run folder. ``a2gen prepare`` warns of the same (:func:`~a2gen_hf.data.logs.untrained_actions_text`)."""
    untrained = actions_without_training_positives(train, config)
    ranked = ranked_actions(config.action_names, config.start_action, config.end_action)
    if ranked and set(untrained) == set(ranked):
        raise ValueError(f"{data_dir}: " + no_ranked_action_text(
            ranked, len(train), config.start_action, config.end_action, " and a comparison has nothing to rank"
        ))  # fmt: skip
    if untrained:
        logger.warning(f"{data_dir}: {untrained_text(untrained, consequence)}.")
    return untrained


def refuse_without_validation(data_dir, dataset, needing: list[str]) -> None:
    """Refuse an empty (or missing) validation split of ``dataset`` where what ``needing`` names chooses its
    settings on it (``a2gen compare``, and ``a2gen train`` with the wide start), saying how to get one."""
    if len(dataset.get("validation") or []) > 0 or not needing:
        return
    raise ValueError(
        f"{data_dir}: the validation split is empty, but {', '.join(needing)} choose their settings on it: "
        "prepare the log with a validation split (a2gen prepare --validation-fraction above 0, the default 1/7; if "
        "it was, the time split's boundaries left validation no session: see rules.validation_start / test_start "
        "in a2gen_data.json, or set them with --validation-start / --test-start; a simulated folder: a2gen simulate "
        "--validation-fraction above 0), or leave them out."
    )


def item_times_problem(metadata: dict[str, Any] | None) -> str | None:
    """
    Why a data folder's action times are not moments inside their items, read from its ``a2gen_data.json``
    (``metadata``, the third value of :func:`~a2gen_hf.training.data_setup.load_data_dir`), or None where they are or
    where the summary does not say. A prepared log says it by the preset that read it (``preset``): an event log
    without a duration column (Taobao's format, ``--preset taobao`` or ``generic`` without
    ``--generic-duration-column``) times each action from the first event of its (user, item) session, which the gap
    rule cuts after days; day-level dates (``tmall``) have no time of day; a view log (``kuairand``: one session per
    row) gives its engagement actions no time of their own. The simulator's sessions and an event log with a
    duration column (a view's watch time: each event lies inside the view) time actions inside the item.
    """
    if not isinstance(metadata, dict) or metadata.get("source") == "simulator":
        return None
    preset = metadata.get("preset")
    if not isinstance(preset, dict):
        return None
    name = preset.get("name")
    if preset.get("time_unit") == "mmdd":
        return f"its times are dates (preset {name!r}: day-level times), not moments inside an item"
    if preset.get("action_column") is None:  # a view log: the flagged actions have unknown times, with or without
        flagged = sorted(set((preset.get("flag_columns") or {}).values()))  # a duration column (the view's length)
        return (f"it is a view log (preset {name!r}, one session per row): its engagement actions "
                f"({', '.join(flagged) or 'the flagged ones'}) have no time of their own")
    if preset.get("duration_column") is None:
        gap = (metadata.get("rules") or {}).get("session_gap_seconds")
        cut = f" cut by a gap of {gap:g} s" if isinstance(gap, (int, float)) else ""
        return (f"it is an event log without a duration column (preset {name!r}, Taobao's format): its times run "
                f"from the first event of each (user, item) session{cut}, not moments inside the item")
    return None


def warn_of_moments_without_item_times(config, metadata: dict[str, Any] | None, data_dir) -> str | None:
    """
    Before training: A2Gen's (item, moment) options (``history_event_item_moments``, ``--event-item-moments``, which
    the ``timed_video`` recipe sets with its moment table and warm start) read each event's time as a moment inside
    its item (a like 12 s into a video). On data whose times are not (:func:`item_times_problem`) they learn from
    moments the log does not hold: warn, naming the recipe that fits such logs (``sparse_logs``). Not refused: the
    run trains as asked. Returns the warning, or None.
    """
    moments = getattr(config, "history_event_item_moments", 0) or 0
    problem = item_times_problem(metadata) if moments > 0 else None
    if problem is None:
        return None
    message = (
        f"{data_dir}: {problem}. The (item, moment) options (--event-item-moments {moments}, set by the timed_video "
        "recipe with its moment table and warm start) read each event's time as a moment inside its item (a like "
        "12 s into a video), which this log does not record: the timed_video recipe is for logs that time actions "
        "inside recurring items (short video). For a log like this one (e.g. Taobao's format) the sparse_logs recipe "
        "fits (--recipe sparse_logs)."
    )
    logger.warning(message)
    return message
