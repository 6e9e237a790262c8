"""Strict ``from_pretrained`` for every model of this package: the weights exactly as saved, or a clear error.

``transformers`` alone loads a checkpoint that lacks tensors by initialising them at random (it only logs a
report), loads another model type's config into this one, casts a tensor whose safetensors header declares another
dtype (F32 bytes read as I32: garbage) and follows shard names of ``model.safetensors.index.json`` wherever they
point. :class:`StrictLoadingMixin` makes each of these a :class:`CheckpointError` on every path that ends in
``from_pretrained``: the model classes, ``AutoModel`` / ``AutoModelForActionGeneration``, the pipeline, the Hub
loader and :func:`a2gen_hf.checkpoints.load_checkpoint`. ``from_pretrained(..., strict=False)`` gives transformers'
own behaviour back. Weights are read from safetensors only (never a pickle). See ``docs/reliability.md``.

This module imports nothing from the package, so it travels with the modeling code pushed to the Hub.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from transformers import PretrainedConfig
from transformers.utils import cached_file

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PICKLED_WEIGHTS_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
CONFIG_NAME = "config.json"
GENERATION_CONFIG_NAME = "generation_config.json"
MAX_KEYS_SHOWN = 10
# from_pretrained keywords that say where files come from (passed on when this module resolves a file itself).
_HUB_KWARGS = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision", "subfolder")
_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
    "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}  # fmt: skip


# transformers logs a "LOAD REPORT" table (every missing, unexpected or mismatched tensor) before the strict loader
# raises its own error with the same list: hidden while the strict loader loads (this context only), kept otherwise.
_STRICT_LOAD = contextvars.ContextVar("a2gen_strict_load", default=False)


class _StrictLoadReportFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (_STRICT_LOAD.get() and "LOAD REPORT" in str(record.msg))


logging.getLogger("transformers.modeling_utils").addFilter(_StrictLoadReportFilter())


class CheckpointError(ValueError):
    """Raised when a checkpoint cannot be loaded exactly as it was saved; the message names the file."""


class DamagedWeightsError(CheckpointError, OSError):
    """A weight file that cannot be read (truncated, corrupt): a :class:`CheckpointError` and, like transformers'
    own file errors (and ``from_pretrained(..., strict=False)``'s), an ``OSError``."""


def shown_keys(keys) -> str:
    """The first :data:`MAX_KEYS_SHOWN` of ``keys``, sorted, then how many more."""
    keys = sorted(map(str, keys))
    more = f" and {len(keys) - MAX_KEYS_SHOWN} more" if len(keys) > MAX_KEYS_SHOWN else ""
    return ", ".join(keys[:MAX_KEYS_SHOWN]) + more


def _resolve(source: str, filename: str, hub_kwargs: dict[str, Any]) -> Path | None:
    """The local path of ``filename`` in ``source`` (a folder or a Hub repo, downloaded if needed), or None."""
    folder = Path(source) / hub_kwargs.get("subfolder", "")
    if folder.is_dir():
        path = folder / filename
        return path if path.is_file() else None
    try:
        found = cached_file(
            source, filename, _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False, **hub_kwargs,
        )  # fmt: skip
    except (OSError, ValueError):
        return None
    return Path(found) if found else None


def looks_like_hub_id(name: str | Path) -> bool:
    """Whether ``name`` can be a Hub repo id (``name`` or ``namespace/name``), as opposed to a path that can only be a
    local folder (``runs/x/model``, ``./model``, an absolute path)."""
    return re.fullmatch(r"[\w-][\w.-]*(/[\w-][\w.-]*)?", str(name)) is not None


def missing_model_message(source: str | Path, cause: BaseException | None = None) -> str:
    """The message for a model ``source`` that is no folder here: a path that can only be a folder is named as
    missing; a name that can be a Hub repo id also says that the Hub lookup found no model there (``cause``: what it
    raised), and how to read the local cache without waiting for an unreachable Hub (huggingface_hub retries for
    about 30 s)."""
    where = f"{source}: no such folder ({Path(source).absolute()})"
    advice = ("Give the folder that model.save_pretrained(folder) wrote (an `a2gen train` run's OUTPUT/model), or a "
              "Hub repo id (namespace/name) that holds one.")  # fmt: skip
    if not looks_like_hub_id(source):
        return f"{where}. {advice}"
    said = f" ({type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else cause!r})" if cause else ""
    return (
        f"{where}, and no model was found for a Hub repo of that name{said}: the repo does not exist or holds no "
        "model, it is not in the local cache, or the Hub could not be reached (then set HF_HUB_OFFLINE=1 to read "
        f"the cache alone without waiting for the network). {advice}"
    )


def missing_config_error(source: str | Path) -> CheckpointError:
    """The error for a model folder (or Hub repo) ``source`` without ``config.json``: transformers would build a
    default config and load the weights into it (silently when the shapes happen to agree). An ``a2gen train``
    checkpoint folder (``checkpoint-N``: weights and optimizer for ``--resume``, no config) gets a hint of its own
    (transformers.Trainer's ``checkpoint-N`` folders hold a config.json, so they never come here)."""
    hint = (
        " A checkpoint-N folder of `a2gen train` is kept for --resume (weights and optimizer state, no config): load "
        "the run's OUTPUT/model folder, or resume the run with --resume."
        if Path(source).name.startswith("checkpoint-") else ""
    )  # fmt: skip
    if not Path(source).exists():  # no folder: read as a Hub repo id, or not one at all
        return CheckpointError(missing_model_message(source))
    return CheckpointError(
        f"{source} has no config.json ({Path(source) / CONFIG_NAME} does not exist); a model folder needs the "
        "config.json written by model.save_pretrained(folder) (in Python, from_pretrained can also be given a config "
        f"object; transformers would otherwise build a default config silently).{hint}"
    )


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CheckpointError(
            f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); the {what} file is "
            "truncated or was edited by hand. Save the checkpoint again."
        ) from None
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{path}: not UTF-8 text ({error}); the {what} file is corrupt.") from None
    if not isinstance(content, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(content).__name__}.")
    return content


def shard_names(index: Path) -> list[str]:
    """The shard file names of a ``model.safetensors.index.json``; each must be a file in the index's own folder."""
    weight_map = _read_json(index, "weight index").get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index}: 'weight_map' is missing or empty; the index file is corrupt.")
    names = sorted({str(name) for name in weight_map.values()})
    outside = [
        name for name in names
        if not name or "/" in name or "\\" in name or name in (".", "..") or Path(name).is_absolute()
        or not name.endswith(".safetensors")
    ]  # fmt: skip
    if outside:
        raise CheckpointError(
            f"{index} names shard(s) {outside} outside its folder (or not safetensors); shards must be plain "
            "*.safetensors file names next to the index. The index was edited; save the checkpoint again."
        )
    return names


def check_weight_files(files: list[Path]) -> dict[str, tuple[Path, str]]:
    """Open each safetensors file (its header, not its data): ``{tensor: (file, header dtype)}``.

    Opening checks that the file covers every tensor it declares, so a truncated file is caught before any weight
    is read."""
    dtypes = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as file:
                for name in file.keys():
                    dtypes[name] = (path, file.get_slice(name).get_dtype())
        except (SafetensorError, OSError) as error:
            raise DamagedWeightsError(
                f"{path}: cannot be read as safetensors ({error}); the file is truncated or corrupt (an interrupted "
                "download or copy?). Download or save it again."
            ) from None
    return dtypes


def _weight_names(variant: str | None) -> tuple[str, str]:
    """The single-file and the index name of safetensors weights of ``variant``."""
    suffix = f".{variant}" if variant else ""
    return (
        SAFE_WEIGHTS_NAME.replace(".safetensors", f"{suffix}.safetensors"),
        SAFE_WEIGHTS_INDEX_NAME.replace(".safetensors", f"{suffix}.safetensors"),
    )


def remove_stale_weight_set(folder: Path, variant: str | None = None) -> None:
    """After a save into ``folder``: where it holds both a single weight file and an index, remove the set the save
    did not write. A single-file save has removed the old shards (transformers does), so its index names missing
    shards; a sharded save has all its shards, and the single file is the older one."""
    single_name, index_name = _weight_names(variant)
    single, index = folder / single_name, folder / index_name
    if not (single.is_file() and index.is_file()):
        return
    try:
        sharded_save = all((folder / name).is_file() for name in shard_names(index))
    except CheckpointError:  # an unreadable index: no save of ours wrote it
        sharded_save = False
    if sharded_save:
        single.unlink()
    else:
        index.unlink()


def weight_files(source: str, hub_kwargs: dict[str, Any], variant: str | None = None) -> tuple[list[Path], Path]:
    """The safetensors files of a checkpoint (one, or the shards of its index) and the file to name in errors."""
    single_name, index_name = _weight_names(variant)
    single = _resolve(source, single_name, hub_kwargs)
    folder = Path(source) / hub_kwargs.get("subfolder", "")
    if single is not None and folder.is_dir() and (folder / index_name).is_file():
        # transformers would load the single file and never look at the shards: possibly an older save's weights.
        raise CheckpointError(
            f"{folder} holds two sets of weights, {single_name} and {index_name} with its shards (a sharded save "
            "into a folder that held a single-file save, or the other way round, by another tool); which is the "
            "model is unknown. Save the model again into an empty folder, or delete the set that is not wanted."
        )
    if single is not None:
        return [single], single
    index = _resolve(source, index_name, hub_kwargs)
    if index is not None:
        files = [index.parent / name for name in shard_names(index)]
        absent = [path.name for path in files if not path.is_file()]
        if absent and not Path(source).is_dir():  # a Hub repo: fetch the shards the index names
            files = [_resolve(source, name, hub_kwargs) or index.parent / name for name in shard_names(index)]
            absent = [path.name for path in files if not path.is_file()]
        if absent:
            raise CheckpointError(f"{index} lists shard(s) {absent} that are not in {index.parent}; the copy is incomplete.")
        return files, index
    where = Path(source) / hub_kwargs.get("subfolder", "")
    pickled = [name for name in PICKLED_WEIGHTS_NAMES if (where / name).is_file()]
    hint = (
        f" It holds {pickled}, pickled weights that a2gen_hf never unpickles (loading them can run arbitrary code); "
        "if you trust their origin, load them yourself and save the model again with save_pretrained."
        if pickled
        else " Save the model with model.save_pretrained(folder), which writes model.safetensors."
    )
    raise CheckpointError(f"{where / single_name} does not exist.{hint}")


def _dtype_problems(model: torch.nn.Module, header: dict[str, tuple[Path, str]], saved_dtype: Any) -> list[str]:
    """Tensors whose header dtype is not the one the checkpoint's model has: the kind (float / integer) must match,
    and every floating tensor must have the dtype recorded in ``config.json`` (all one dtype when none is), except
    the buffers a module keeps in float32 whatever the model's dtype (its ``exact_buffers``: the counts and running
    statistics of a bfloat16 model), which may be float32."""
    state = model.state_dict()
    prefix = f"{model.base_model_prefix}." if getattr(model, "base_model", model) is model else ""
    kept_float32 = {
        f"{module_name}.{buffer}" if module_name else buffer
        for module_name, module in model.named_modules()
        for buffer in getattr(module, "exact_buffers", ())
    }
    problems, floating = [], {}
    for name, (_, text) in header.items():
        dtype = _DTYPES.get(text)
        local = name[len(prefix) :] if prefix and name.startswith(prefix) else name
        target = state.get(local)
        if target is None:
            continue
        if dtype is None or dtype.is_floating_point != target.is_floating_point() or (
            not target.is_floating_point() and dtype != target.dtype
        ):
            problems.append(f"{name} (file {text}, model {str(target.dtype).removeprefix('torch.')})")
        elif dtype.is_floating_point and not (local in kept_float32 and dtype == torch.float32):
            floating.setdefault(dtype, []).append(name)
    expected = getattr(torch, saved_dtype, None) if isinstance(saved_dtype, str) else None
    if isinstance(expected, torch.dtype) and expected.is_floating_point:
        problems += [
            f"{name} (file {str(dtype).removeprefix('torch.')}, config.json dtype {saved_dtype})"
            for dtype, names in floating.items() if dtype != expected for name in names
        ]  # fmt: skip
    elif len(floating) > 1:
        rare = sorted(floating, key=lambda dtype: len(floating[dtype]))[:-1]
        problems += [f"{name} (file {str(dtype).removeprefix('torch.')})" for dtype in rare for name in floating[dtype]]
    return problems


def loading_problems(model: torch.nn.Module, info: dict[str, Any], ignore_mismatched: bool, head_only_extra: bool):
    """What ``from_pretrained``'s loading report says is wrong (missing, unexpected, mismatched tensors)."""
    problems = []
    if info["missing_keys"]:
        problems.append(f"missing tensors (would be left at random initialisation): {shown_keys(info['missing_keys'])}")
    if info["unexpected_keys"] and not head_only_extra:
        problems.append(f"tensors the model does not have: {shown_keys(info['unexpected_keys'])}")
    if info["mismatched_keys"] and not ignore_mismatched:
        shapes = [f"{key} (file {tuple(saved)}, model {tuple(expected)})" for key, saved, expected in info["mismatched_keys"]]
        problems.append(f"tensors of another shape: {shown_keys(shapes)}")
    problems.extend(str(message) for message in info["error_msgs"])
    return problems


def non_finite_tensors(model: torch.nn.Module) -> list[str]:
    return [
        name
        for name, value in [*model.named_parameters(), *model.named_buffers()]
        if value.is_floating_point() and not torch.isfinite(value).all()
    ]


class StrictLoadingMixin:
    """``from_pretrained`` that refuses anything but the exact saved weights (``strict=False``: transformers' own).

    Refused, each with a :class:`CheckpointError` naming the file: a ``config.json`` of another ``model_type``; a
    ``generation_config.json`` that is not a JSON object (transformers would fall back to default generation options
    without a word);
    pickled weights only; shard names that leave the folder; a truncated or corrupt safetensors file; missing,
    unexpected (except a head's tensors when loading the base model from a head checkpoint) or mismatched tensors;
    a tensor whose header dtype is not the model's; NaN or inf weights.
    """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, strict: bool = True, **kwargs):
        if not strict:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        if pretrained_model_name_or_path is None:
            return cls._from_state_dict(*model_args, **kwargs)
        source = str(pretrained_model_name_or_path)
        hub_kwargs = {name: kwargs[name] for name in _HUB_KWARGS if kwargs.get(name) is not None}
        config_file = _resolve(source, CONFIG_NAME, hub_kwargs)
        if config_file is None and not isinstance(kwargs.get("config"), PretrainedConfig):
            raise missing_config_error(Path(source) / hub_kwargs.get("subfolder", ""))
        saved_config = _read_json(config_file, "model config") if config_file is not None else {}
        expected_type = cls.config_class.model_type
        if config_file is not None and saved_config.get("model_type") != expected_type:
            raise CheckpointError(
                f"{config_file}: model_type is {saved_config.get('model_type')!r}, but {cls.__name__} needs "
                f"{expected_type!r}; the folder holds another kind of model. Load it with its own class (or "
                "a2gen_hf.checkpoints.load_checkpoint, which picks the class from config.json)."
            )
        generation_file = _resolve(source, GENERATION_CONFIG_NAME, hub_kwargs)
        if generation_file is not None:  # transformers would read a damaged one as "none saved": default generation
            _read_json(generation_file, "generation config")
        files, where = weight_files(source, hub_kwargs, kwargs.get("variant"))
        header = check_weight_files(files)
        wants_info = kwargs.pop("output_loading_info", False)
        ignore_mismatched = kwargs.get("ignore_mismatched_sizes", False)
        kwargs["ignore_mismatched_sizes"] = True  # collect mismatches (reported below) instead of a bare RuntimeError
        kwargs.setdefault("use_safetensors", True)
        token = _STRICT_LOAD.set(not ignore_mismatched)  # the caller's ignore_mismatched_sizes: transformers' report is the only word
        try:
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
            )
        finally:
            _STRICT_LOAD.reset(token)
        architectures = saved_config.get("architectures") or []
        # AutoModel on a head checkpoint loads the base model; the head's tensors are the expected leftovers.
        head_only_extra = getattr(model, "base_model", model) is model and bool(architectures) and (
            architectures[0] != cls.__name__
        ) and all(not key.startswith(f"{model.base_model_prefix}.") for key in info["unexpected_keys"])
        problems = loading_problems(model, info, ignore_mismatched, head_only_extra)
        structural = list(problems)  # missing, unexpected or mismatched tensors: another model's weights or config
        dtypes = _dtype_problems(model, header, saved_config.get("dtype", saved_config.get("torch_dtype")))
        if dtypes:
            problems.append(f"tensors whose safetensors dtype is not the model's: {shown_keys(dtypes)}")
        non_finite = non_finite_tensors(model)
        if non_finite and not problems:
            overflow = _cast_overflow(model, header, non_finite, kwargs)
            if overflow is not None:  # the file is finite: the dtype= of the call made the inf, not the file
                raise CheckpointError(overflow)
        if non_finite:
            problems.append(f"tensors holding NaN or inf: {shown_keys(non_finite)}")
        if problems:
            config_name = config_file if config_file is not None else f"{source}/{CONFIG_NAME}"
            config_given = kwargs.get("config")
            overrides = _config_overrides(cls, kwargs, saved_config)
            head_missing = None if overrides or dtypes or non_finite else _encoder_only_message(
                cls, model, info, architectures, where, config_name
            )
            if head_missing is not None:
                raise CheckpointError(head_missing)
            raise CheckpointError(
                f"{where} does not fit {config_name} ({cls.__name__}):\n  - "
                + "\n  - ".join(problems)
                + "\n" + _cause_text(
                    overrides, where, config_name,
                    structural=bool(structural), python_hint=not isinstance(config_given, PretrainedConfig),
                )
            )
        return (model, info) if wants_info else model

    def save_pretrained(self, save_directory, *args, **kwargs):
        """``PreTrainedModel.save_pretrained``, then the other set of weights an earlier save left in the folder is
        removed (transformers removes old shards only: a sharded save beside an earlier ``model.safetensors`` left
        both, and loading read the old file)."""
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            remove_stale_weight_set(Path(save_directory), kwargs.get("variant"))
        return result

    @classmethod
    def _from_state_dict(cls, *model_args, **kwargs):
        """transformers' in-memory loading, ``from_pretrained(None, config=config, state_dict=tensors)``, with the
        strict checks on the tensors given (before: the name None was looked up as a Hub repo "None")."""
        if not isinstance(kwargs.get("config"), PretrainedConfig) or kwargs.get("state_dict") is None:
            raise CheckpointError(
                f"{cls.__name__}.from_pretrained(None, ...) loads tensors held in memory and needs both config= (an "
                f"{cls.config_class.__name__}) and state_dict= (the tensors); pass a folder or a Hub repo id to load a "
                "saved checkpoint."
            )
        wants_info = kwargs.pop("output_loading_info", False)
        ignore_mismatched = kwargs.get("ignore_mismatched_sizes", False)
        kwargs["ignore_mismatched_sizes"] = True
        token = _STRICT_LOAD.set(not ignore_mismatched)  # the caller's ignore_mismatched_sizes: transformers' report is the only word
        try:
            model, info = super().from_pretrained(None, *model_args, output_loading_info=True, **kwargs)
        finally:
            _STRICT_LOAD.reset(token)
        problems = loading_problems(model, info, ignore_mismatched, False)
        non_finite = non_finite_tensors(model)
        if non_finite:
            problems.append(f"tensors holding NaN or inf: {shown_keys(non_finite)}")
        if problems:
            raise CheckpointError(
                f"The state_dict given does not fit the config given ({cls.__name__}):\n  - " + "\n  - ".join(problems)
                + "\nPass the state_dict of a model built from this config (from_pretrained(None, ..., strict=False) "
                "loads it anyway)."
            )
        return (model, info) if wants_info else model


def _encoder_only_message(cls, model, info: dict, architectures: list, where, config_name) -> str | None:
    """Where a model with a head (A2GenForActionGeneration, through it AutoModelForActionGeneration) is loaded from
    a folder whose ``config.json`` says it holds the base model alone (``architectures`` ``["A2GenModel"]``) and
    only the head's tensors are missing: that, and how to load it (before: "config.json and model.safetensors come
    from different models", though neither file was replaced or edited). None for any other case."""
    base = getattr(model, "base_model", model)
    if base is model or not architectures or architectures[0] != type(base).__name__:
        return None
    prefix = f"{model.base_model_prefix}."
    missing = list(info["missing_keys"])
    if not missing or any(key.startswith(prefix) for key in missing) or info["unexpected_keys"] or (
        info["mismatched_keys"] or info["error_msgs"]
    ):
        return None
    heads = sorted({key.split(".", 1)[0] for key in missing})
    encoder = type(base).__name__
    head = " / ".join(heads)
    return (
        f"{Path(str(where)).parent} holds an encoder without the {head}: {Path(str(config_name)).name} says "
        f"architectures {architectures} and {Path(str(where)).name} has no {head} tensors ({shown_keys(missing)}), "
        f"which {cls.__name__} needs. Load it with AutoModel.from_pretrained or {encoder}.from_pretrained, or train "
        f"the {head} on it ({cls.__name__}.from_pretrained(..., strict=False) loads the encoder and starts the {head} "
        "from random weights)."
    )


def _requested_dtype(kwargs: dict) -> Any:
    """The ``dtype=`` (or ``torch_dtype=``) of a ``from_pretrained`` call, None when not given or ``"auto"``."""
    dtype = kwargs.get("dtype", kwargs.get("torch_dtype"))
    return None if dtype is None or dtype == "auto" else dtype


def _cast_overflow(model: torch.nn.Module, header: dict[str, tuple[Path, str]], non_finite: list[str],
                   kwargs: dict) -> str | None:  # fmt: skip
    """Where every tensor that holds NaN or inf after loading is finite in the file: the cast to the model's dtype
    overflowed. The message names the dtype, the largest magnitude in the file and the dtypes that hold it (before:
    "The weights were saved from another model or damaged", of a file that is fine). None otherwise."""
    prefix = f"{model.base_model_prefix}."
    largest, dtypes = 0.0, set()
    state = dict([*model.named_parameters(), *model.named_buffers()])
    for name in non_finite:
        key = name if name in header else prefix + name if prefix + name in header else None
        if key is None:
            return None
        path, _ = header[key]
        try:
            with safe_open(str(path), framework="pt") as file:
                saved = file.get_tensor(key)
        except (SafetensorError, OSError):
            return None
        if not saved.is_floating_point() or not torch.isfinite(saved).all():
            return None
        largest = max(largest, float(saved.double().abs().max()))
        dtypes.add(state[name].dtype)
    names = ", ".join(sorted(str(dtype).removeprefix("torch.") for dtype in dtypes))
    limits = ", ".join(f"{torch.finfo(dtype).max:.6g}" for dtype in sorted(dtypes, key=str))
    requested = _requested_dtype(kwargs)
    how = f"dtype={requested!r}" if requested is not None else names
    return (
        f"The cast to {how} overflowed: after loading, these tensors hold inf or NaN: {shown_keys(non_finite)}; in the "
        f"file they are finite, with a largest magnitude of {largest:.6g}, above {names}'s largest value {limits}. "
        "The file is fine: load with dtype=torch.float32 (or torch.bfloat16, which has float32's range)."
    )


def _config_overrides(cls, kwargs: dict, saved_config: dict) -> dict:
    """The keyword arguments of a ``from_pretrained`` call that set a config field to a value other than the saved
    one (``hidden_size=32``), or a ``config=`` object given instead of the saved file. A ``config=`` equal to the
    saved ``config.json`` (the one :func:`a2gen_hf.checkpoints.load_model` and ``a2gen evaluate`` read from the folder
    and pass on, or ``from_pretrained(folder)`` of the config class) changed nothing and is no override."""
    config = kwargs.get("config")
    if isinstance(config, PretrainedConfig):
        return {} if _is_saved_config(config, saved_config) else {"config": type(config).__name__}
    field_names = getattr(cls.config_class, "field_names", lambda: set())()
    aliases = getattr(cls.config_class, "aliases", {})
    return {
        key: value for key, value in kwargs.items()
        if aliases.get(key, key) in field_names and saved_config.get(aliases.get(key, key), object()) != value
    }  # fmt: skip


# Config entries that say where or with what a config was loaded, not what model it describes.
_PROVENANCE_KEYS = ("_name_or_path", "transformers_version", "_commit_hash", "_attn_implementation_autoset")


def _is_saved_config(config: PretrainedConfig, saved_config: dict) -> bool:
    """Whether ``config`` describes the same model as the ``config.json`` content ``saved_config``."""
    if not saved_config:
        return False
    try:
        saved = type(config).from_dict(dict(saved_config))
    except Exception:  # a config.json that does not load is not the config given
        return False

    def described(values: dict) -> dict:
        return {key: value for key, value in values.items() if key not in _PROVENANCE_KEYS}

    try:
        return described(config.to_dict()) == described(saved.to_dict())
    except Exception:  # values that do not compare: not shown to be the same
        return False


def _cause_text(
    overrides: dict, weights: Path | str = SAFE_WEIGHTS_NAME, config_name: Path | str = CONFIG_NAME,
    structural: bool = True, python_hint: bool = True,
) -> str:
    """The last line of a weights-do-not-fit error: the keywords that changed the config; where no keyword did and
    tensors are missing, extra or of another shape, that ``config.json`` and the weights come from different models;
    otherwise (NaN or a dtype alone) a damaged save."""
    if overrides:
        given = ", ".join(f"{key}={value!r}" for key, value in overrides.items())
        return (f"The keyword argument(s) {given} given to from_pretrained changed the model's shapes from the saved "
                "config's: leave them out to load the checkpoint as saved (a model of another size starts from its "
                "own weights, not these).")
    strict_hint = " (from_pretrained(..., strict=False) loads them anyway)" if python_hint else ""
    if structural:
        return (f"{Path(config_name).name} and {Path(weights).name} come from different models (one of them was "
                f"replaced by another model's file, or {Path(config_name).name} was edited): restore the file that was "
                "replaced, or save the model again so that both are written together"
                f"{strict_hint}.")
    return f"The weights were saved from another model or damaged; save both from the same model{strict_hint}."
