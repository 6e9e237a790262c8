"""Strict, safe loading of a saved checkpoint folder: the model and its tokenizer exactly as saved, or a clear error.

``transformers`` on its own loads a checkpoint whose weights lack some tensors by initialising them at random (it
only logs a "newly initialized" report), fills in a default config when ``config.json`` is missing, and raises
bare ``SafetensorError`` / ``AttributeError`` messages that do not name the file for a truncated weight file or a
config of another model type. :func:`load_checkpoint` turns each of these into a :class:`CheckpointError` that
names the file and the mismatch. Weights are read from safetensors only; pickled ``pytorch_model.bin`` files are
refused, never unpickled. See ``docs/reliability.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import PreTrainedModel

from .configuration_a2gen import A2GenConfig
from .modeling_a2gen import A2GenForActionGeneration, A2GenModel
from .modeling_baselines import MMoEForActionPrediction, PLEForActionPrediction
from .strict_loading import (  # noqa: F401  (re-exported)
    CONFIG_NAME,
    MAX_KEYS_SHOWN,
    PICKLED_WEIGHTS_NAMES,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    CheckpointError,
    _read_json,
    missing_config_error,
)
from .tokenization_a2gen import A2GenActionTokenizer

TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
TOKENIZER_SUBFOLDER = "tokenizer"

# The architectures a checkpoint may name in config.json; the first class per model type is its default.
MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {
    model_class.__name__: model_class
    for model_class in (A2GenForActionGeneration, A2GenModel, MMoEForActionPrediction, PLEForActionPrediction)
}


def _model_class_and_config(folder: Path) -> tuple[type[PreTrainedModel], A2GenConfig]:
    """The model class named by ``config.json`` (one of :data:`MODEL_CLASSES`) and the config it holds."""
    config_file = folder / CONFIG_NAME
    if not config_file.is_file():
        raise missing_config_error(folder)
    config_dict = _read_json(config_file, "model config")
    model_types = {model_class.config_class.model_type for model_class in MODEL_CLASSES.values()}
    model_type = config_dict.get("model_type")
    if model_type not in model_types:
        raise CheckpointError(
            f"{config_file}: model_type is {model_type!r}, not a model of this package ({sorted(model_types)}); "
            "the folder holds another kind of model. Point to a folder saved from an A2Gen (or MMoE / PLE) model."
        )
    architectures = config_dict.get("architectures") or [
        next(name for name, model_class in MODEL_CLASSES.items() if model_class.config_class.model_type == model_type)
    ]
    model_class = MODEL_CLASSES.get(architectures[0])
    if model_class is None or model_class.config_class.model_type != model_type:
        raise CheckpointError(
            f"{config_file}: architectures {architectures} do not fit model_type {model_type!r}; expected one of "
            f"{[name for name, cls in MODEL_CLASSES.items() if cls.config_class.model_type == model_type]}."
        )
    try:
        config = model_class.config_class.from_dict(config_dict)
    except (ValueError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{config_file}: the config is invalid: {error}") from None
    return model_class, config


def _tokenizer_candidates(folder: Path) -> list[Path]:
    return [folder / TOKENIZER_CONFIG_NAME, folder / TOKENIZER_SUBFOLDER / TOKENIZER_CONFIG_NAME]


def saved_tokenizer_folder(folder: str | os.PathLike) -> Path | None:
    """Where a checkpoint folder keeps its tokenizer: the folder itself or its ``tokenizer/`` subfolder (None: none)."""
    tokenizer_file = next((path for path in _tokenizer_candidates(Path(folder)) if path.is_file()), None)
    return tokenizer_file.parent if tokenizer_file is not None else None


def _load_tokenizer(folder: Path, config: A2GenConfig) -> A2GenActionTokenizer:
    """The tokenizer saved in ``folder`` or ``folder/tokenizer``, checked against the model config."""
    candidates = _tokenizer_candidates(folder)
    tokenizer_file = next((path for path in candidates if path.is_file()), None)
    if tokenizer_file is None:
        raise CheckpointError(
            f"No tokenizer in {folder}: neither {candidates[0]} nor {candidates[1]} exists. The tokenizer carries the "
            "time statistics and id hashing the model was trained with; save it with tokenizer.save_pretrained(folder)."
        )
    tokenizer_class = _read_json(tokenizer_file, "tokenizer config").get("tokenizer_class")
    if tokenizer_class != A2GenActionTokenizer.__name__:
        raise CheckpointError(
            f"{tokenizer_file}: tokenizer_class is {tokenizer_class!r}, not {A2GenActionTokenizer.__name__!r}; the "
            "folder holds another model's tokenizer."
        )
    try:
        tokenizer = A2GenActionTokenizer.from_pretrained(tokenizer_file.parent, local_files_only=True)
    except (OSError, ValueError, TypeError) as error:
        raise CheckpointError(f"{tokenizer_file.parent}: the tokenizer cannot be loaded: {error}") from None
    try:
        tokenizer.check_compatible(config)
    except ValueError as error:
        raise CheckpointError(f"{tokenizer_file} disagrees with {folder / CONFIG_NAME}: {error}") from None
    return tokenizer


def load_model(path: str | os.PathLike) -> PreTrainedModel:
    """
    Load the model saved in the folder ``path``, strictly: the one model loader of a checkpoint folder
    (:func:`load_checkpoint`, ``a2gen evaluate``, ``a2gen push`` through :func:`a2gen_hf.hub.push_checkpoint`).

    Checks, in order: the folder exists; ``config.json`` exists, is valid JSON and describes a model of this package
    (its ``architectures`` pick the class: :class:`A2GenForActionGeneration`, :class:`A2GenModel`, MMoE or PLE);
    ``model.safetensors`` (or the shards of ``model.safetensors.index.json``) is complete; and the weights hold
    exactly the tensors the model has, with the same shapes: no tensor is left at its random initialisation and none
    is ignored.

    Returns:
        The model in eval mode on the CPU.

    Raises:
        CheckpointError: naming the file and what is wrong with it.
    """
    folder = Path(path)
    model_class, config = _checked_folder(folder)
    return _load_weights(folder, model_class, config)


def _checked_folder(folder: Path) -> tuple[type[PreTrainedModel], A2GenConfig]:
    if not folder.exists():
        raise CheckpointError(f"The checkpoint folder {folder} does not exist.")
    if not folder.is_dir():
        raise CheckpointError(f"The checkpoint folder {folder} is a file; pass the folder model.save_pretrained wrote.")
    return _model_class_and_config(folder)


def _load_weights(folder: Path, model_class: type[PreTrainedModel], config: A2GenConfig) -> PreTrainedModel:
    # Strict by default (StrictLoadingMixin): missing, unexpected or mismatched tensors, another dtype in the
    # safetensors header, shard names outside the folder and NaN weights are CheckpointErrors naming the file.
    return model_class.from_pretrained(folder, config=config, local_files_only=True).eval()


def load_checkpoint(path: str | os.PathLike) -> tuple[PreTrainedModel, A2GenActionTokenizer]:
    """
    Load the model and tokenizer saved in the folder ``path``, strictly.

    The model as :func:`load_model` loads it; the tokenizer (in the folder or its ``tokenizer/`` subfolder) must be an
    :class:`A2GenActionTokenizer` whose vocabulary, time statistics, ``max_actions`` and bucket counts equal the
    config's. The tokenizer is checked before the weights are read.

    Returns:
        `(model, tokenizer)`: the model in eval mode on the CPU, and its tokenizer.

    Raises:
        CheckpointError: naming the file and what is wrong with it.
    """
    folder = Path(path)
    model_class, config = _checked_folder(folder)
    tokenizer = _load_tokenizer(folder, config)
    return _load_weights(folder, model_class, config), tokenizer
