"""Configuration of A2Gen (Action-Aware Generative Sequence Network, arXiv 2604.25834).

Typed dataclass configs in the transformers 5.x style (``@strict`` from ``huggingface_hub.dataclasses``):

- :class:`ActionSequenceConfig`: what every model of this package shares: the action vocabulary, the history and
  sequence caps, the id tables, the time encoding, the optional count / popularity features and the action and time
  loss weights (what the collator, the tokenizer, the shared embedding modules and the data setup read);
- :class:`A2GenConfig`: adds the A2Gen network (CAM width and heads, the generator, its losses and options).

The multi-task baselines' configs (``configuration_baselines.py``) build on :class:`ActionSequenceConfig`.
"""

import math
import numbers
import warnings
from dataclasses import MISSING, field, fields
from functools import wraps
from typing import Any, ClassVar

from huggingface_hub.dataclasses import strict
from huggingface_hub.errors import StrictDataclassError
from transformers import PretrainedConfig
from transformers.generation.configuration_utils import GenerationConfig

SHORT_VIDEO_ACTIONS = ["start", "like", "follow", "forward", "comment", "leave"]
ECOMMERCE_ACTIONS = ["click", "collect", "cart", "buy", "leave"]
PAD_ACTION = "<pad>"
GENERATORS = ("iag", "eag")
HISTORY_POOLINGS = ("sum", "mean", "sqrt")
MOMENT_SOURCES = ("item_features", "table")
TIME_LOSSES = ("mse", "l1")
# What the target popularity counts are keyed by: the item's embedding bucket (``item_ids``) or its raw id
# (``item_keys``, 63-bit keys of the raw ids: items that share a bucket keep their own counts).
POPULARITY_KEYS = ("buckets", "raw_ids")
CAM_GATE_INPUTS = ("context", "projected")
OCCURRENCE_PATHS_INPUTS = ("context", "without_extra", "extra_only")
TIME_LOSS_REDUCTIONS = ("mean", "sum")
IAG_SLOT_ACTIVATIONS = ("linear", "relu")

# Fields added after checkpoints were already published, with the value that reproduces those checkpoints. A
# config.json written before a field existed lacks it: ``A2GenConfig.from_dict`` (used by ``from_pretrained`` and
# ``checkpoints.load_checkpoint``) then reads the legacy value, so an old checkpoint loads with its own weights and
# gives the outputs it gave before. New configs write every field, so they get the paper's defaults below.
LEGACY_DEFAULTS = {
    "eag_position_embeddings": True,
    "eag_shared_event_embedding": False,
    "iag_slot_activation": "relu",
    "time_loss_reduction": "sum",
    "action_embedding_size": 16,
    "time_embedding_size": 16,
    "cam_gate_input": "projected",
}
SLOT_READOUTS = ("sequence", "any_slot", "sampler")
# The most actions after the start a model generates (K): IAG holds one slot per action and EAG decodes one step per
# action, so a K of millions allocates terabytes before the first step.
MAX_ACTIONS_LIMIT = 1024
# Upper bounds of the sizes and counts that build layers or tables: sanity bounds, far above every documented
# configuration (docs/model.md, "Sizes"), so that a typo (10**12) is refused at construction by its field, not by
# torch's allocator naming no field or by a build that loops until memory runs out. Within them, memory is still the
# user's to budget (a 2^32-row table of width 32 is 512 GiB).
MAX_WIDTH = 16_384  # a vector's width; 256x the widest documented (64), the width of the largest language models
MAX_TABLE_ROWS = 2**32  # rows of an id table; 1,024x the 2^22 rows a data folder sizes a table at (data/buckets.py)
MAX_FEATURE_COUNT = 1_024  # heads, time frequencies and buckets, side features and lists, moment topics
MAX_MOMENT_BUCKETS = 65_536  # moments of an item's timeline: 18 hours at 1 s a moment (the docs use 64)
MAX_EXPERTS = 256  # the baselines' experts (per level, and per task and level for PLE's own); the docs use <= 4
MAX_LEVELS = 16  # PLE's CGC levels (the PLE paper stacks 1 to 3)
# DCN-v2 cross layers of each history event with its item. The multiplicative cross grows with depth: at
# initialisation the tiny test model's loss is 9.8 / 11 / 10.8 / 10.1 with 2 / 4 / 6 / 8 layers, then 89 at 10,
# 167 at 20, 7e14 at 100, and the gradients are NaN at 300 (EAG alike). The docs use 1 or 2.
MAX_HISTORY_EVENT_CROSS_LAYERS = 8
# The initialisation stds (``initializer_range``, ``action_embedding_init_std``) and ``occurrence_path_scale``: the
# docs use at most 1.0 (unit-scale tables); at 1e308 the logits are NaN.
MAX_SCALE = 10.0
# Field -> (lowest, highest, what it is), the one table of the bounds above; the lowest value is also checked (with
# its own message) where the field is. A list field's bounds are those of each element.
SIZE_BOUNDS: dict[str, tuple[int, int, str]] = {
    **{
        name: (1, MAX_WIDTH, "MAX_WIDTH, a sanity bound on widths; the docs' widest is 64")
        for name in (
            "hidden_size", "head_dim", "id_embedding_size", "action_embedding_size", "time_embedding_size",
            "occurrence_hidden_size", "expert_hidden_sizes", "tower_hidden_sizes",
        )
    },
    **{name: (2, MAX_TABLE_ROWS, "MAX_TABLE_ROWS, a sanity bound on table rows; the docs' largest tables have 1 M rows")
       for name in ("user_buckets", "item_buckets", "side_feature_buckets")},
    "rare_id_buckets": (1, MAX_TABLE_ROWS, "MAX_TABLE_ROWS, a sanity bound on table rows"),
    "popularity_table_size": (0, MAX_TABLE_ROWS, "MAX_TABLE_ROWS, a sanity bound on table rows"),
    "num_attention_heads": (1, MAX_FEATURE_COUNT, "MAX_FEATURE_COUNT, a sanity bound on counts; the docs use at most 5 heads"),
    **{
        name: (0, MAX_FEATURE_COUNT, "MAX_FEATURE_COUNT, a sanity bound on counts")
        for name in (
            "num_time_frequencies", "time_buckets", "num_item_side_features", "num_user_side_lists",
            "history_event_moment_topics",
        )
    },
    "history_event_item_moments": (0, MAX_MOMENT_BUCKETS, "MAX_MOMENT_BUCKETS: 18 hours at 1 s a bucket; the docs use 64"),
    "history_event_moment_smoothing": (0, MAX_MOMENT_BUCKETS, "MAX_MOMENT_BUCKETS: 18 hours at 1 s a bucket; the docs use 64"),
    "history_event_cross_layers": (
        0, MAX_HISTORY_EVENT_CROSS_LAYERS,
        "MAX_HISTORY_EVENT_CROSS_LAYERS; the docs use 1 or 2, and deeper stacks blow up at initialisation: the "
        "loss is about 10 with 2 to 8 layers, 89 with 10, and the gradients are NaN with 300",
    ),
    "num_experts": (1, MAX_EXPERTS, "MAX_EXPERTS, a sanity bound; the docs use at most 4"),
    "num_specific_experts": (1, MAX_EXPERTS, "MAX_EXPERTS, a sanity bound; the docs use at most 4"),
    "num_shared_experts": (0, MAX_EXPERTS, "MAX_EXPERTS, a sanity bound; the docs use at most 4"),
    "num_levels": (1, MAX_LEVELS, "MAX_LEVELS, a sanity bound; the PLE paper stacks 1 to 3"),
}  # fmt: skip
# The fields MAX_SCALE bounds, with the range each takes.
SCALE_FIELDS = {
    "initializer_range": f"[0, {MAX_SCALE}]",
    "action_embedding_init_std": f"[0, {MAX_SCALE}]",
    "occurrence_path_scale": f"(0, {MAX_SCALE}]",
}


def shown(value: Any) -> str:
    """``repr(value)`` for a message, with an integer beyond 10^18 as its magnitude (``1e+21``, ``~10**400``: Python
    refuses to print one of over 4,300 digits) and a list element by element."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(shown(item) for item in value) + "]"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**18:
        try:
            return f"{value:.3g}"
        except OverflowError:  # beyond a float
            return f"{'-' if value < 0 else ''}~10**{int(abs(value).bit_length() * math.log10(2))}"
    return repr(value)


def end_id_problem(token: Any, vocab_size: int, start_action_id: int | None) -> str | None:
    """What keeps ``token`` from ending a sequence, or None: ``"not an action id"`` (not an integer, a bool, or outside
    ``[1, vocab_size)``) or ``"the start action"`` (it only opens a sequence and is never generated). The one rule
    of the config's ``eos_token_id`` and of ``generate()``'s."""
    if isinstance(token, bool) or not isinstance(token, numbers.Integral) or not 1 <= token < vocab_size:
        return "not an action id"
    return "the start action" if token == start_action_id else None


def action_name_problem(name: Any) -> str | None:
    """What is wrong with one action name, or None: the one rule of the config and the tokenizer (text input is split
    on whitespace, so a name must be one non-empty word)."""
    if not isinstance(name, str) or not name or name.split() != [name]:
        return (
            f"Action name {name!r} is not a single word; action names must be non-empty strings without whitespace "
            "(text input is split on whitespace)."
        )
    return None


# Fields that configs once had and no code reads: accepted and dropped (a FutureWarning when passed by hand; silently
# from a config.json, which wrote every field), so that old configs and checkpoints still load.
DEPRECATED_FIELDS = {
    "user_side_list_length": "the user side lists are mean-pooled over any number of ids, so their length is no setting",
}
# Keyword arguments that transformers itself passes to a config (``from_pretrained``, ``from_dict``, a saved
# config.json) beside the fields, and the generation parameters it drops from old config files.
TRANSFORMERS_KEYWORDS = frozenset(
    {
        "model_type", "auto_map", "name_or_path", "_name_or_path", "_commit_hash", "torch_dtype", "num_labels",
        "attn_implementation", "experts_implementation", "output_attentions", "per_layer_config",
        "_attn_implementation_internal", "_experts_implementation_internal",
        "custom_pipelines",  # set by transformers' Pipeline.save_pretrained for a registered task
        *GenerationConfig._get_default_generation_params(),
    }
)  # fmt: skip


# Keys that transformers' PretrainedConfig kept as attributes in 4.x (its common settings: tokenizer_class, prefix,
# task_specific_params, sep_token_id, ...) and transformers 5 keeps as plain attributes (BertConfig loads them):
# written into config.json by transformers 4.x, by tools that add config metadata, or by a user
# (config.tokenizer_class = ...). Loaded and saved as attributes, as transformers does; they change no A2Gen layer.
# Other unknown keys stay refused: they are misspelt fields (before: these were refused as unknown too).
TRANSFORMERS_KEPT_KEYS = frozenset(
    {
        "tokenizer_class", "tie_word_embeddings", "task_specific_params", "prefix", "sep_token_id",
        "decoder_start_token_id", "finetuning_task", "is_decoder", "add_cross_attention", "cross_attention_hidden_size",
        "tie_encoder_decoder", "torchscript", "use_bfloat16", "tf_legacy_loss", "pruned_heads",
        "_attn_implementation_autoset",
    }
)  # fmt: skip

# Keywords of transformers' loading that can reach from_dict unused (deprecated ones, or read by AutoConfig only):
# passed over, as transformers does, not refused as misspelt fields.
LOADING_KEYWORDS = frozenset(
    {
        "code_revision", "resume_download", "use_auth_token", "revision", "trust_remote_code", "local_files_only",
        "cache_dir", "proxies", "subfolder", "token", "force_download", "user_agent", "gguf_file", "adapter_kwargs",
    }
)  # fmt: skip


def register_the_package() -> None:
    """``a2gen_hf.register()`` (auto classes, the ``auto_map`` that ``save_pretrained`` writes, the A2Gen card of
    ``push_to_hub``), also when a model or tokenizer module was imported directly (``from a2gen_hf.modeling_a2gen
    import ...``), which imports transformers from inside the package and so skips the import hook. Nothing when
    loaded as remote code (a copy under ``transformers_modules``, which never imports the package)."""
    if not __name__.startswith("a2gen_hf."):
        return
    try:  # in a try block, which transformers' check of remote code's imports leaves out
        from a2gen_hf import register
    except ImportError:
        return
    register()


class A2GenConfigError(ValueError):
    """Raised when an :class:`A2GenConfig` is built with values that cannot work together."""


def typed_config(cls):
    """``@strict`` (the transformers 5.x typed config) with its errors turned into :class:`A2GenConfigError`, a
    ``ValueError`` that says which field was wrong."""
    cls = strict(cls)
    checked_init = cls.__init__

    @wraps(checked_init)
    def __init__(self, *args, **kwargs) -> None:
        check_alias_conflicts(cls, kwargs)
        try:
            checked_init(self, *args, **kwargs)
        except StrictDataclassError as error:
            raise A2GenConfigError(f"Invalid {cls.__name__}: {error}") from None

    cls.__init__ = __init__
    for name in ("validate", "__setattr__"):  # `config.validate()`, `config.hidden_size = "a"`: the same error type
        setattr(cls, name, _config_errors(getattr(cls, name), cls.__name__))
    return cls


def check_alias_conflicts(cls, kwargs: dict) -> None:
    """Refuse keyword arguments that give a field and one of its aliases different values (``generator="eag",
    generator_type="iag"``: before, the alias won whenever the field's value was its default)."""
    for alias, name in getattr(cls, "aliases", {}).items():
        if alias in kwargs and name in kwargs and kwargs[alias] != kwargs[name]:
            raise A2GenConfigError(
                f"{alias}={kwargs[alias]!r} and {name}={kwargs[name]!r} disagree: {alias} is another name of {name}; "
                "pass one."
            )


def _config_errors(method, class_name: str):
    """``method`` with ``@strict``'s errors raised as :class:`A2GenConfigError` (a ``ValueError``), so that one
    ``except ValueError`` / ``except A2GenConfigError`` catches a bad field however it was set."""
    if getattr(method, "_a2gen_config_errors", False):  # a subclass's decorator wraps its parent's wrapper once
        return method

    @wraps(method)
    def checked(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except StrictDataclassError as error:
            cause = error.__cause__ if isinstance(error.__cause__, A2GenConfigError) else None
            raise A2GenConfigError(str(cause) if cause else f"Invalid {class_name}: {error}") from None

    checked._a2gen_config_errors = True
    return checked


@typed_config
class ActionSequenceConfig(PretrainedConfig):
    r"""
    The fields every model of this package shares: the action vocabulary, the caps of a batch, the id tables and
    side features, the time encoding and statistics, the optional count / popularity features, the action and time
    losses and the initialisation. They mean what :class:`A2GenConfig` documents.

    Action ids are fixed by ``action_names``: id 0 is padding (``<pad>``), ``action_names[i]`` has id ``i + 1``.
    """

    # The fields of another model of the package that this config accepts and drops (so that one set of options,
    # e.g. ``a2gen compare``'s, and config.json files of older versions serve every model).
    ignored_fields: ClassVar[frozenset[str]] = frozenset()
    # Keyword aliases: name -> field.
    aliases: ClassVar[dict[str, str]] = {}
    VOCABULARY_FIELDS: ClassVar[tuple[str, ...]] = ("action_names", "start_action", "end_action")
    SPECIAL_ID_FIELDS: ClassVar[tuple[str, ...]] = (*VOCABULARY_FIELDS, "bos_token_id", "eos_token_id")

    action_names: list[str] | tuple[str, ...] = field(default_factory=lambda: list(SHORT_VIDEO_ACTIONS))
    start_action: str = "start"
    end_action: str = "leave"
    id_embedding_size: int = 32
    action_embedding_size: int = 32
    time_embedding_size: int = 32
    max_history_items: int = 100
    max_events_per_item: int = 6
    max_actions: int = 6
    action_loss_weight: float | int = 1.0
    time_loss_weight: float | int = 0.1
    time_loss: str = "mse"
    num_time_frequencies: int = 8
    time_buckets: int = 0
    time_log_mean: float | int = 0.0
    time_log_std: float | int = 1.0
    user_buckets: int = 100_000
    item_buckets: int = 1_000_000
    side_feature_buckets: int = 100_000
    num_item_side_features: int = 0
    num_user_side_lists: int = 0
    history_propensity_features: bool = False
    history_count_features: bool = False
    history_time_features: bool = False
    target_popularity_features: bool = False
    popularity_keys: str = "buckets"
    popularity_table_size: int = 0
    wide_path: bool = False
    target_drops_repeated_start: bool = False
    rare_id_threshold: int = 0
    rare_id_buckets: int = 64
    use_id_embeddings: bool = True
    sparse_embeddings: bool = False
    embedding_dropout_prob: float | int = 0.0
    initializer_range: float | int = 0.02
    action_embedding_init_std: float | int = 0.02
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        for alias, name in self.aliases.items():
            if alias in kwargs:
                value, given = kwargs.pop(alias), getattr(self, name)
                if given != self.field_default(name) and given != value:
                    raise A2GenConfigError(
                        f"{alias}={value!r} and {name}={given!r} disagree: {alias} is another name of {name}; pass one."
                    )
                setattr(self, name, value)
        for key in DEPRECATED_FIELDS.keys() & kwargs.keys():
            kwargs.pop(key)
            warnings.warn(
                f"{type(self).__name__}({key}=...) is deprecated and ignored: {DEPRECATED_FIELDS[key]}; drop it.",
                FutureWarning,
                stacklevel=4,
            )
        for key in self.ignored_fields & kwargs.keys():
            kwargs.pop(key)
        given_type = kwargs.pop("model_type", type(self).model_type)
        if given_type != type(self).model_type:  # transformers only warns, and the other model's fields are dropped
            raise A2GenConfigError(
                f"model_type={given_type!r}: a {type(self).__name__} is {type(self).model_type!r}. A config saved for "
                f"another model loads as its own class: AutoConfig.from_pretrained(path) (AutoModel picks the model)."
            )
        layers = kwargs.pop("num_hidden_layers", 1)
        if layers != 1:
            raise A2GenConfigError(
                f"num_hidden_layers={layers}: A2Gen has one cached layer (CAM_gen); it is not a setting."
                if self.model_type == "a2gen" else
                f"num_hidden_layers={layers}: {type(self).__name__} has no layer count setting; its depth is set by its "
                "own fields (see its docstring)."
            )
        unknown = sorted(set(kwargs) - TRANSFORMERS_KEYWORDS - TRANSFORMERS_KEPT_KEYS)
        if unknown:
            raise A2GenConfigError(
                f"{type(self).__name__} got unknown keyword argument(s) {unknown}; its fields are "
                f"{sorted(self.field_names())}" + (f" (and the aliases {sorted(self.aliases)})" if self.aliases else "")
                + ". Check the spelling."
            )
        self.action_names = list(self.action_names)
        self._validate()
        if self.bos_token_id is None:
            self.bos_token_id = self.start_action_id
        if self.eos_token_id is None:
            self.eos_token_id = self.end_action_id
        super().__post_init__(**kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        """Assignment as the constructor takes keywords: an alias sets its field (``config.generator = "eag"`` sets
        ``generator_type``; before, it left an attribute ``generator`` that transformers took for a sub-config, and
        building the model failed deep inside transformers), and a new vocabulary or start / end action derives
        ``bos_token_id`` / ``eos_token_id`` again where they held the old start's / end's ids (ids set by hand stay;
        before, the old ids were kept and the model refused them)."""
        if name in self.aliases:
            setattr(self, self.aliases[name], value)
            return
        if name not in self.VOCABULARY_FIELDS or "eos_token_id" not in self.__dict__:  # constructing: not yet
            super().__setattr__(name, value)
            return
        derived = self._derived_special_ids({key: getattr(self, key) for key in self.SPECIAL_ID_FIELDS}, {})
        super().__setattr__(name, value)
        names = list(self.action_names)
        for key, role in (("bos_token_id", "start_action"), ("eos_token_id", "end_action")):
            if key in derived:
                action = getattr(self, role)
                setattr(self, key, names.index(action) + 1 if action in names else None)

    @classmethod
    def field_names(cls) -> set[str]:
        """The config's own fields (this package's, not transformers' common ones)."""
        common = {item.name for item in fields(PretrainedConfig)}
        return {item.name for item in fields(cls)} - common

    @classmethod
    def field_default(cls, name: str) -> Any:
        """The default value of the field ``name``."""
        item = cls.__dataclass_fields__[name]
        return item.default_factory() if item.default is MISSING else item.default

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """
        As :meth:`PretrainedConfig.from_dict`, but a field missing from a saved `config_dict` (a config.json that
        ``save_pretrained`` wrote, with its ``transformers_version``, before the field existed) takes the value that
        reproduces that checkpoint (``LEGACY_DEFAULTS``), not the paper's,
        and the deprecated fields of old files (``DEPRECATED_FIELDS``) are dropped.
        """
        names = cls.field_names()
        # Only a file that save_pretrained wrote (it carries ``transformers_version``) can predate a field; a dict
        # written by hand gets today's defaults, as ``A2GenConfig(**fields)`` and ``AutoConfig.for_model`` do.
        saved = "transformers_version" in config_dict
        legacy = {key: value for key, value in LEGACY_DEFAULTS.items() if key in names and saved}
        current = {key: value for key, value in config_dict.items() if key not in DEPRECATED_FIELDS}
        # The package's own keyword arguments (``from_pretrained(path, generator="eag")``) go into the constructor, so
        # that aliases apply and the fields are checked together; transformers would set them afterwards, unchecked,
        # and drop an alias (before: ``generator="eag"`` gave IAG, ``hidden_size=-64`` was kept).
        check_alias_conflicts(cls, kwargs)
        given = {cls.aliases.get(key, key): kwargs.pop(key) for key in list(kwargs) if key in names | set(cls.aliases)}
        if given.keys() & {"action_names", "start_action", "end_action"}:
            derived = cls._derived_special_ids(current, given)
            current = {key: value for key, value in current.items() if key not in derived}
        wanted = kwargs.pop("return_unused_kwargs", False)
        config, unused = super().from_dict({**legacy, **current, **given}, return_unused_kwargs=True, **kwargs)
        if wanted:  # e.g. a model's from_pretrained, which hands the rest to the model's constructor
            return config, unused
        unknown = sorted(key for key in unused if not key.startswith("_") and key not in LOADING_KEYWORDS)
        if unknown:  # transformers drops them without a word; the constructor refuses them, and so does this
            raise A2GenConfigError(
                f"{cls.__name__}.from_dict / from_pretrained got unknown keyword argument(s) {unknown}; its fields are "
                f"{sorted(names)}" + (f" (and the aliases {sorted(cls.aliases)})" if cls.aliases else "")
                + ". Check the spelling."
            )
        return config

    @classmethod
    def from_json_file(cls, json_file):
        """
        As :meth:`PretrainedConfig.from_json_file`, read through :meth:`from_dict`, the one home of how a saved
        config.json is read: ``LEGACY_DEFAULTS`` for the fields an old file lacks, its deprecated fields dropped
        (before: transformers' ``cls(**dict)`` gave an old checkpoint's file today's defaults, another model than
        ``from_pretrained`` read from the same file).
        """
        return cls.from_dict(cls._dict_from_json_file(json_file))

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs) -> None:
        """As :meth:`PretrainedConfig.save_pretrained`, after checking that :meth:`from_pretrained` would read the file
        back: an attribute set on the config that is none of its fields (``config.experiment = "run-42"``) is refused
        here by name, as loading would refuse it (before: the folder was written and could not be loaded)."""
        self.check_saved_keys()
        super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)

    def check_saved_keys(self) -> None:
        """Refuse attributes that :meth:`to_dict` would write and :meth:`from_dict` refuse (no field, no
        transformers key): an :class:`A2GenConfigError` naming them and how to keep such metadata."""
        known = {item.name for item in fields(type(self))} | TRANSFORMERS_KEYWORDS | LOADING_KEYWORDS
        known |= TRANSFORMERS_KEPT_KEYS
        known |= {"model_type", "num_hidden_layers", "transformers_version", *self.ignored_fields, *DEPRECATED_FIELDS}
        unknown = sorted(key for key in self.to_dict() if not key.startswith("_") and key not in known)
        if unknown:
            raise A2GenConfigError(
                f"{type(self).__name__} has attribute(s) {unknown} that are none of its fields: saved, its config.json "
                f"could not be loaded again (from_pretrained refuses unknown keys, which catches misspelt fields). "
                f"Delete them before saving (del config.{unknown[0]}) and keep run metadata elsewhere: the model "
                "card, or the training arguments saved beside the model."
            )

    @classmethod
    def _derived_special_ids(cls, saved: dict, given: dict) -> set[str]:
        """Which of the saved ``bos_token_id`` / ``eos_token_id`` were derived from the saved vocabulary (the start's
        and end's ids) and not given again: when keywords change the vocabulary or its start / end action, from_dict
        drops them so that they are derived again (before: the old ids stayed: a reordered vocabulary's bos was
        refused as set by hand, and eos silently named another action). Ids set by hand stay."""
        names = list(saved.get("action_names") or cls.field_default("action_names"))
        derived = set()
        for key, role in (("bos_token_id", "start_action"), ("eos_token_id", "end_action")):
            action = saved.get(role, cls.field_default(role))
            if key not in given and action in names and saved.get(key) == names.index(action) + 1:
                derived.add(key)
        return derived

    # Vocabulary helpers: ids are derived from ``action_names`` so they can never disagree with it.
    @property
    def vocab_size(self) -> int:
        return len(self.action_names) + 1

    @property
    def id_to_action(self) -> list[str]:
        return [PAD_ACTION, *self.action_names]

    def action_id(self, name: str) -> int:
        if name not in self.action_names:
            raise A2GenConfigError(f"Unknown action {name!r}; this model's actions are {self.action_names}.")
        return self.action_names.index(name) + 1

    @property
    def start_action_id(self) -> int:
        return self.action_id(self.start_action)

    @property
    def end_action_id(self) -> int:
        return self.action_id(self.end_action)

    @property
    def start_time(self) -> float:
        """Normalised time of 0 seconds, where every sequence starts."""
        return (math.log1p(0.0) - self.time_log_mean) / self.time_log_std

    def validate_fields(self) -> None:
        """A class validator of ``@strict``: ``config.validate()`` checks the fields together, also after one was
        changed (``config.num_attention_heads = 5``); every model built from the config checks them too."""
        self._validate()

    def _validate(self) -> None:
        problems = self._problems()
        if problems:
            raise A2GenConfigError(f"Invalid {type(self).__name__}:\n  - " + "\n  - ".join(problems))

    def _problems(self) -> list[str]:
        """What is wrong with the shared fields (one line each)."""
        problems = []
        names = self.action_names
        for index, name in enumerate(names):  # as the tokenizer refuses them (before: accepted, refused by it later)
            if (problem := action_name_problem(name)) is not None:
                problems.append(f"action_names[{index}]: {problem}")
        if len(set(names)) != len(names):
            problems.append(f"action_names has duplicates: {names}; list each action once.")
        if PAD_ACTION in names:
            problems.append(f"action_names must not contain {PAD_ACTION!r}: id 0 is reserved for padding.")
        for role in ("start_action", "end_action"):
            if getattr(self, role) not in names:
                problems.append(f"{role}={getattr(self, role)!r} is not in action_names={names}; add it or pick one.")
        if self.start_action == self.end_action:
            problems.append("start_action and end_action must differ.")
        if self.time_loss not in TIME_LOSSES:
            problems.append(f"time_loss={self.time_loss!r} is unknown; use one of {list(TIME_LOSSES)}.")
        if self.wide_path and not (self.history_count_features or self.target_popularity_features):
            problems.append(
                "wide_path=True reads the count / popularity features: set history_count_features and / or "
                "target_popularity_features too (--count-features, --popularity-features)."
            )
        if self.history_time_features and not self.history_count_features:
            problems.append(
                "history_time_features=True adds the history sessions' times to the count features: set "
                "history_count_features too (--count-features)."
            )
        if self.popularity_keys not in POPULARITY_KEYS:
            problems.append(
                f"popularity_keys={self.popularity_keys!r} is unknown; use one of {list(POPULARITY_KEYS)}."
            )
        if self.popularity_table_size < 0:
            problems.append(f"popularity_table_size={self.popularity_table_size} must be >= 0 (items counted).")
        for name in (
            "id_embedding_size", "action_embedding_size", "time_embedding_size", "max_history_items",
            "max_events_per_item", "max_actions", "user_buckets", "item_buckets", "side_feature_buckets",
            "rare_id_buckets",
        ):  # fmt: skip
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} must be a positive integer.")
        for name in ("user_buckets", "item_buckets", "side_feature_buckets"):
            if getattr(self, name) == 1:  # as the tokenizer refuses it
                problems.append(f"{name}=1 must be >= 2: row 0 is padding, ids hash into the rows after it.")
        if self.max_actions > MAX_ACTIONS_LIMIT:
            problems.append(
                f"max_actions={self.max_actions} is beyond {MAX_ACTIONS_LIMIT}: a model holds one slot per action (IAG) "
                "or decodes one step per action (EAG); sessions that long are not what A2Gen models."
            )
        for name in (
            "num_item_side_features", "num_user_side_lists", "num_time_frequencies", "time_buckets",
            "rare_id_threshold",
        ):  # fmt: skip
            if getattr(self, name) < 0:
                problems.append(f"{name}={getattr(self, name)} must be >= 0.")
        if not 0.0 <= self.embedding_dropout_prob < 1.0:
            problems.append(f"embedding_dropout_prob={self.embedding_dropout_prob} must be in [0, 1).")
        for name in ("action_loss_weight", "time_loss_weight"):
            if getattr(self, name) < 0:
                problems.append(f"{name}={getattr(self, name)} must be >= 0.")
        if not self.time_log_std > 0:
            problems.append(f"time_log_std={self.time_log_std} must be > 0 (refit the tokenizer's time statistics).")
        number_fields = {item.name for item in fields(type(self)) if float in getattr(item.type, "__args__", ())}
        for name in sorted(self.field_names()):  # NaN passes every comparison above; inf overflows the maths
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                problems.append(f"{name}={value} must be a finite number.")
            elif name in number_fields and isinstance(value, int) and not _fits_a_float(value):  # e.g. 10**400
                problems.append(f"{name}={shown(value)} must be a finite number (this integer is beyond a float's range).")
        for name in ("initializer_range", "action_embedding_init_std"):
            if getattr(self, name) < 0:
                problems.append(f"{name}={getattr(self, name)} must be >= 0 (a standard deviation).")
        problems += self._bound_problems()
        if self.pad_token_id not in (None, 0):
            problems.append(
                f"pad_token_id={self.pad_token_id!r}: id 0 ({PAD_ACTION!r}) is the padding of every model of the package; "
                "another id is an action, so padding would read as that action. Leave pad_token_id unset."
            )
        eos = self.eos_token_id if isinstance(self.eos_token_id, list) else [self.eos_token_id]
        start = self.start_action_id if self.start_action in names else None
        found = {end_id_problem(token, len(names) + 1, start) for token in eos if token is not None}
        if "not an action id" in found:
            problems.append(
                f"eos_token_id={self.eos_token_id!r}: the ids that end a sequence are action ids 1..{len(names)} "
                f"({names}); leave it unset for end_action {self.end_action!r}."
            )
        elif "the start action" in found:
            problems.append(
                f"eos_token_id={self.eos_token_id!r} holds the start action {self.start_action!r} (id "
                f"{self.start_action_id}), which only opens a sequence and is never generated, so it would end nothing; "
                f"list other actions, or leave eos_token_id unset for end_action {self.end_action!r}."
            )
        if self.eos_token_id == []:
            problems.append(
                "eos_token_id=[] lists no id; give one or more action ids, or leave eos_token_id unset for end_action "
                f"{self.end_action!r} (which always ends a sequence)."
            )
        if self.bos_token_id is not None and self.start_action in names and self.bos_token_id != self.start_action_id:
            problems.append(
                f"bos_token_id={self.bos_token_id!r}: sequences open with start_action {self.start_action!r} (id "
                f"{self.start_action_id}); leave bos_token_id unset."
            )
        return problems

    def _bound_problems(self) -> list[str]:
        """The sizes and counts above their :data:`SIZE_BOUNDS` and the scales above :data:`MAX_SCALE` (the lowest
        values are checked with the fields)."""
        problems = []
        own = self.field_names()
        for name, (low, high, why) in SIZE_BOUNDS.items():
            value = getattr(self, name) if name in own else None
            values = value if isinstance(value, list) else [value]
            if any(isinstance(item, int) and not isinstance(item, bool) and item > high for item in values):
                each = "each entry" if isinstance(value, list) else "it"
                problems.append(
                    f"{name}={shown(value)} is out of range: {each} must be an integer from {low} to {high:,} ({why})."
                )
        for name, allowed in SCALE_FIELDS.items():
            value = getattr(self, name) if name in own else None
            if isinstance(value, int | float) and not isinstance(value, bool) and value > MAX_SCALE:
                problems.append(
                    f"{name}={shown(value)} is above MAX_SCALE={MAX_SCALE}: give a value in {allowed} (the docs use at "
                    "most 1.0, unit scale; a huge scale gives NaN logits)."
                )
        return problems


def _fits_a_float(value: int) -> bool:
    try:
        float(value)
    except OverflowError:
        return False
    return True


@typed_config
class A2GenConfig(ActionSequenceConfig):
    r"""
    Configuration of an A2Gen model: its action vocabulary, widths, the HSE history shape, the AAG generator and
    the loss weights of the paper.

    Action ids are fixed by ``action_names``: id 0 is padding (``<pad>``), ``action_names[i]`` has id ``i + 1``.
    ``start_action`` opens every action sequence at t = 0 and ``end_action`` closes it (the user leaves).

    Args:
        action_names (`list[str]`): the data set's action vocabulary, without padding. Short-video default
            ``start, like, follow, forward, comment, leave``; e-commerce ``click, collect, cart, buy, leave``.
        start_action / end_action (`str`): the actions that open and close a sequence; both must be in
            ``action_names``.
        hidden_size (`int`): model width d of every CAM (default 32, the paper's embedding size).
        num_attention_heads (`int`): heads per CAM (default 4); ``hidden_size`` must be divisible by it unless
            ``head_dim`` is set.
        head_dim (`int`, *optional*): width of each CAM head's queries, keys and values. ``None`` (default, the
            paper): ``hidden_size // num_attention_heads``, the heads splitting the width d. Set, each head gets its
            own ``head_dim`` (e.g. 4 heads of 32 at d = 32, as the plain re-implementation of docs/results.md (d));
            the heads' outputs are still projected back to d and gated.
        id_embedding_size (`int`): width of user / item / side-feature id embeddings.
        action_embedding_size / time_embedding_size (`int`): an event is embedded as concat(time, action); 32 + 32
            as in the paper (configs written before this default read 16 + 16, their saved values).
        max_history_items (`int`): N, the number of history items HSE reads (the most recent are kept).
        max_events_per_item (`int`): events per history item read by CAM_act.
        max_actions (`int`): K, the number of actions generated after ``start`` (IAG slots).
        eag_position_embeddings (`bool`): EAG adds a learned position embedding to each step. Not in the paper
            (``False``, default); the events' times already order the sequence. Old configs without the field: ``True``.
        eag_shared_event_embedding (`bool`): EAG embeds its (action, time) steps with the encoder's event embedding,
            one action table and one time encoding for history and generation as in the paper (``True``, default).
            ``False`` gives EAG tables of its own (configs written before the field existed).
        iag_slot_activation (`str`): IAG's K slots are ``"linear"`` maps of the tiled context (the paper, default)
            or ``"relu"`` of them (configs written before the field existed).
        time_loss_reduction (`str`): ``"mean"`` (default, the paper's MSE): the time losses (and IAG's auxiliary
            time loss) are each example's mean over its positions with a known time, averaged over examples;
            ``"sum"``: summed over positions per example and averaged over examples, which scales the weight by the
            number of timed targets (configs written before the field existed).
        compile_training (`bool`): in training mode, run HSE's level 1 (event embedding, CAM_act, pooling on the
            real history items), level 2 and the generator through ``torch.compile`` with dynamic sizes, so that
            batches with other numbers of real items do not recompile. Off by default, and best left off on CPU:
            since level 1 and level 2 have their own kernels, inductor's code for them is slower than eager (a 1 M-row
            IAG step 2.5x slower, first step 74 s; docs/performance.md).
        generator_type (`str`): ``"iag"`` (implicit autoregression, the paper's best) or ``"eag"`` (explicit).
            ``generator=`` is accepted as an alias; the attribute is not called ``generator`` because transformers
            reads a config attribute of that name as a sub-model config.
        action_loss_weight / time_loss_weight / order_loss_weight / aux_loss_weight (`float`): the paper's
            1 / 0.1 / 0.01 / 0.1.
        time_loss (`str`): ``"mse"`` (the paper; predicts the mean time) or ``"l1"`` (predicts the median, which
            suits zero-heavy times such as e-commerce actions logged at the click).
        num_time_frequencies (`int`): sinusoidal frequencies of the time encoding (0 = linear projection only).
        time_buckets (`int`): also give the time encoding a one-hot of the event's log-seconds bucket,
            ``floor(1.5 * log1p(seconds))`` capped at ``time_buckets - 1`` (a learned embedding per bucket, as the
            plain re-implementation of docs/results.md (d) encodes times). 0 (default, off): the paper's continuous
            encoding only. 32 buckets reach about 1e9 s.
        time_log_mean / time_log_std (`float`): statistics of ``log1p(seconds)`` fitted by the tokenizer; the model
            uses them only to report times in seconds and to place ``start`` at 0 s.
        user_buckets / item_buckets / side_feature_buckets (`int`): hash-bucket counts (bucket 0 is padding).
        num_item_side_features (`int`): side-feature fields per item (category, author, ...).
        num_user_side_lists (`int`): user side lists (e.g. recently liked items), each mean-pooled over its ids
            (any length; the paper uses 5 lists of 20 ids). The former ``user_side_list_length`` field was never read:
            it is accepted and dropped, so that old configs still load (deprecated; it will be refused later).
        cam_gate_input (`str`): what each CAM's head gate reads: ``"context"``, the raw context, as in the paper's
            figure and spec (default), or ``"projected"``, the context after CAM's context projection (configs written
            before the field existed, which load with it).
        history_pooling (`str`): how HSE reduces CAM outputs over positions (events, then history items): ``"sum"``
            (the paper), ``"mean"``, or ``"sqrt"`` (the sum divided by the square root of the count, as the plain
            re-implementation of docs/results.md (d) pools CAM_item). ``"mean"`` and ``"sqrt"`` are not in the paper.
        history_event_cross_layers (`int`): cross layers (DCN-v2, Wang et al. 2021) that let each history event
            interact with its own item's features before CAM_act: ``e <- e_0 * (W [e ; item] + b) + e``, per event,
            ``e_0`` the event embedding (zero where the event is absent). 0 (default) is the paper, whose events meet
            their item only inside CAM_act's attention scores and its context residual; with layers, what an
            action at a given moment of an item means (which part of the video was on screen) can be read off
            before pooling. At most ``MAX_HISTORY_EVENT_CROSS_LAYERS`` (8; 1 or 2 are the measured settings): the
            multiplicative cross grows with depth, and at initialisation the loss is about 10 with 2 to 8 layers, 89
            with 10 and 167 with 20, and the gradients are NaN with 300. An option beyond the paper (docs/results.md
            (e)).
        history_event_item_moments (`int`): moment buckets of the (item, moment) vectors: each history event gets a
            vector for its item and the moment it happened, ``floor(seconds / history_event_moment_seconds)`` capped
            at this count minus one, added to its embedding before CAM_act. 0 (default) is the paper. On a video's
            timeline the vector can learn what the video showed at that moment, which no side feature says. An
            option beyond the paper (docs/model.md, docs/results.md (e)).
        target_item_moments (`bool`): the target item's features also get its moment profile: the (item, moment)
            vectors of ``history_event_item_moments`` at every moment bucket, averaged with learned weights per
            bucket (shared by all items) and mapped to the item features' width, so that what a candidate shows over
            its timeline is described by the same vectors as what the history's events reacted to, and the targets'
            outcomes train them too. Needs ``history_event_item_moments``. False (default) is the paper. An option
            beyond the paper (docs/results.md (e)).
        history_item_exposure (`bool`): each history item's features also get what the user saw of it: the mean of
            its (item, moment) vectors of ``history_event_item_moments`` over the moment buckets from the first to
            that of its latest event with a known time (on a video, from the start to the leave), mapped to the item
            features' width. The events say at which moments the user reacted; this says what the user watched
            without reacting, the denominator of a per-topic engagement rate. Needs ``history_event_item_moments``.
            False (default) is the paper. An option beyond the paper (docs/results.md (e)).
        history_event_moment_seconds (`float`): the width of a moment bucket in seconds (default 1.0).
        history_event_moment_smoothing (`int`): with ``history_event_moment_source="table"``, a moment's vector
            averages the rows of the moments up to this many buckets either side (clamped to the item's buckets),
            with learned weights that start uniform: the events near a moment teach its row too (a video's content
            runs in segments of several seconds). 0 (default): each moment reads its own row. An option beyond the
            paper (docs/results.md (e)).
        history_event_moment_topics (`int`): with ``history_event_moment_source="table"``, each (item, moment) row
            holds logits over this many shared topic vectors instead of a free vector: the row's vector is the
            softmax of its logits times the topic vectors (``ItemMomentTable``), so a row learns *which* topic its
            moment shows, and every row teaches what a topic means. 0 (default): free vectors. An option beyond the
            paper (docs/results.md (e)).
        history_event_moment_source (`str`): where the (item, moment) vectors come from: ``"item_features"``
            (default; decoded from the item's features by a small network, ``ItemMomentDecoder``) or ``"table"``
            (a learned row per (item, moment), ``ItemMomentTable``: ``item_buckets x moments`` rows up to 2^21,
            hashed beyond; needs id embeddings).
        context_interactions (`bool`): append to the generation context the elementwise products of Vec_hist and of
            the user's features (each mapped to width d) with a map of the target item's features
            (:class:`~a2gen_hf.modeling_a2gen.TargetInteractions`), so that the linear IAG slot map can read
            "taste for this item" as a dot product, which a linear map of the concatenation cannot form. False
            (default) is the paper. An option beyond the paper (docs/results.md (e)).
        history_propensity_features (`bool`): also give the generator (and the baselines' towers) the count rule's
            features: per action, the share of history items whose events include it. Off in the paper.
        history_count_features (`bool`): also give the generator (and the baselines' towers) the count features of
            the logistic-regression baseline that the batch holds (per action: share of history items with it, the
            same over the 5 most recent and over the target's category, recency of its last occurrence; history
            length, shares and recency of the target item and category), standardised with running statistics of
            the training examples. Off in the paper.
        history_time_features (`bool`): with ``history_count_features``, also read *when* the history sessions
            happened: per action, the history items with it decayed by their age (ten minutes, an hour, a day, a week), the minutes since
            the most recent history session, the history items (all, and those of the target's category) within the
            last hour / day, and the target item itself within the last day
            (:class:`~a2gen_hf.features_a2gen.HistoryCountFeatures`). Reads the
            ``history_item_ages`` input, which the collator makes from the examples' ``history_session_starts``.
            Off in the paper.
        target_popularity_features (`bool`): also give the generator (and the baselines' towers) the target item's and
            its category's smoothed action rates on the training examples and their example counts, as the
            logistic-regression baseline reads them (left out for each training example's own outcome), fitted by
            ``create_model`` on the train split and saved with the model. Off in the paper.
        popularity_keys (`str`): what the popularity counts are keyed by: ``"buckets"``, the target's hashed
            ``item_ids`` (items sharing a bucket share counts), or ``"raw_ids"``, 63-bit keys of the raw item ids
            (the ``item_keys`` input: :meth:`~a2gen_hf.A2GenActionTokenizer.item_keys`, which the collator applies to
            the data's ``item`` column), so that the counts are those of the regression baseline, and an item unseen
            in train reads its category's rate whatever bucket it hashes to.
        popularity_table_size (`int`): with ``popularity_keys="raw_ids"``, the number of distinct train items
            counted; set by fitting the counts (``create_model``), so that ``from_pretrained`` builds the table.
        occurrence_head (`bool`): add a ranking head to A2Gen: per action, a logit of "it happens" from the generation
            context (a linear path plus a one-hidden-layer path), trained with binary cross-entropy (weight
            ``occurrence_loss_weight``); ``predict_actions`` then ranks with it instead of reading the generator's
            slots (times still come from the slots). Off in the paper.
        occurrence_loss_weight (`float`): weight of that binary cross-entropy in the loss.
        occurrence_path_scale (`float`): the occurrence head's learned paths (linear and hidden-layer, not the wide
            path) are multiplied by this (1.0). Adam moves every weight by about the learning rate per step whatever
            its gradient, so a zero-started linear path over a context of C inputs moves the logits by up to
            C x the learning rate per step; below 1 it moves them that much less, with the rest of the network at full
            rate (an output multiplier as in muP). For a head started at zero on top of a fitted regression (the
            residual start). Not in the paper.
        occurrence_paths_input (`str`): what the occurrence head's learned paths read: ``"context"``, the whole
            generation context (the default), or ``"without_extra"``, the context without the count / popularity
            features at its end, which then only the wide path reads (needs ``wide_path``; with a regression held in
            the wide path, the residual start, the linear path over the same features would otherwise move the
            regression's coefficients off its regularised fit), or ``"extra_only"``, those features alone (the head is
            then the wide path plus a one-hidden-layer network on the counts, and the history's sequence reaches the
            ranking only through them; the ``sparse_logs`` recipe's choice, docs/results.md (d)). Not in the paper.
        occurrence_linear_path (`bool`): the occurrence head's learned linear path (True). False leaves its
            hidden-layer path alone: with ``occurrence_paths_input="extra_only"`` and a wide path, the linear path reads
            the very features the wide path holds the regression over, so a frozen regression (``wide_frozen``) would
            still move off its regularised fit through it. Not in the paper.
        occurrence_hidden_size (`int`, *optional*): the width of the occurrence head's hidden layer; None (the
            default) is ``hidden_size``. The ranking's network on the counts (``occurrence_paths_input="extra_only"``)
            then has its own width, apart from the encoder's and the generator's. Not in the paper.
        wide_path (`bool`): add a linear ("wide") logit per action over the count / popularity features alone
            (:class:`~a2gen_hf.features_a2gen.WidePath`) to A2Gen's occurrence head (which it switches on) and to MMoE's /
            PLE's binary heads, trained jointly, so that the network contains the logistic regression on counts.
            Off in the paper.
        target_drops_repeated_start (`bool`): the collator leaves every start action after position 0 out of the
            target sequence (repeated clicks on e-commerce logs), so the generator predicts only the other actions
            and the end. Off (the data's sequence as logged) by default.
        slot_readout (`str`): how ``predict_actions`` reads P(action happens) off the generator's slots (the paper
            leaves it open): ``"sequence"`` (default) counts slot k only while the sequence is still running
            (no end or padding predicted before it); ``"any_slot"`` is ``1 - prod_k (1 - p_k(action))`` over all
            slots, ignoring predicted ends; ``"sampler"`` is the probability that ``generate(do_sample=True)``
            draws the action from the same slots (padding and ``start`` left out and each slot renormalised, as
            ``generate`` does; exact for IAG, whose slots do not depend on what was drawn). An option beyond the
            paper's text either way.
        time_per_action (`bool`): the time heads give one time per action at every position (a `(..., vocab_size)`
            output; the time of a position is the one of its action: the label's in training, the chosen action's
            in ``generate()``, each action's own in ``predict_actions``) instead of the paper's one time per position
            whatever its action, which must serve a collect at 0 s and a leave minutes later at once. IAG's CAM_gen
            then reads each slot's expected auxiliary time, ``sum_a p(a) t(a)``, where the paper's reads its one
            time. Off (the paper) by default; not in the paper.
        rare_id_threshold (`int`): users with fewer training examples than this, and items that are the target of
            fewer (counted by :func:`a2gen_hf.training.fit_rare_id_buckets`), share
            ``rare_id_buckets`` extra embedding rows (picked by id modulo), so that one-off ids do not get a
            row of their own to memorise. 0 (default, the paper) gives every bucket its own row.
        rare_id_buckets (`int`): the shared rows for rare ids, per table (users, items).
        use_id_embeddings (`bool`): ``False`` = id-free mode: user and item ids are not embedded (their vectors are
            zeros); only side features and the history's timed events inform the model, against id memorisation.
        sparse_embeddings (`bool`): the user, item and side-feature tables give sparse gradients
            (``nn.Embedding(sparse=True)``): backward and the optimizer touch only the rows a batch read. Needs an
            optimizer that takes sparse gradients (:class:`a2gen_hf.training.SparseAdamW`, ``torch.optim.SGD``,
            ``SparseAdam``, ``Adagrad``; ``AdamW`` refuses them). Off by default so that any optimizer works;
            ``a2gen train`` and :class:`~a2gen_hf.training.A2GenTrainer` switch it on for the run
            (docs/training.md, "Sparse embedding updates"). Weights and outputs are the same either way.
        hidden_dropout_prob / attention_probs_dropout_prob / embedding_dropout_prob (`float`): dropout rates.
        initializer_range (`float`): std of the normal initialisation of the id and side-feature tables (linear maps
            are LeCun-normal whatever it is). 0.02, transformers' usual value.
        action_embedding_init_std (`float`): the same for the action embedding table(s) of the events (0.02). At
            0.02 the actions start 50x below the time features beside them in every event. Unit scale for every
            table, with mean pooling and one learning rate of 1e-3, is what made paper mode learn the history's
            actions instead of memorising ids (docs/results.md (d), "Why paper mode was weak"); unit-scale actions
            alone, with the paper's sum pooling, left validation level (test +0.03, one seed).
        use_cache (`bool`): the default of ``generate(use_cache=...)``: EAG decodes with its key/value cache (exact;
            IAG has none). ``forward`` builds a cache only when asked (``use_cache=True`` or a cache passed).

    ``num_hidden_layers`` is 1: CAM_gen is the one layer whose keys and values EAG caches, so
    ``DynamicCache(config=config)`` has one layer, as the cache EAG builds itself.

    The fields are typed dataclass fields (the transformers 5.x style, checked by ``huggingface_hub``'s ``@strict``
    on construction and assignment); the fields shared with the multi-task baselines are declared by
    :class:`ActionSequenceConfig`. An unknown keyword argument is refused with an :class:`A2GenConfigError` that
    names it and the fields; so is a value of the wrong type. The sizes and counts that build layers or tables have
    generous upper bounds (:data:`SIZE_BOUNDS`: widths up to ``MAX_WIDTH`` = 16,384, table rows up to
    ``MAX_TABLE_ROWS`` = 2^32, ...), and ``initializer_range`` / ``action_embedding_init_std`` /
    ``occurrence_path_scale`` are at most ``MAX_SCALE`` = 10 (docs/model.md, "Sizes").
    """

    model_type = "a2gen"
    aliases: ClassVar[dict[str, str]] = {"generator": "generator_type"}
    # Outputs that transformers.Trainer's prediction_step leaves out of the predictions it gathers (GPT-2's config
    # lists past_key_values): the unweighted scalar sub-losses (one number per batch: before, predictions[0] was
    # action_loss, not the logits), EAG's cache, and the hidden states / attentions, whose history dimensions are
    # padded per batch and so cannot be concatenated across batches (before: output_hidden_states crashed predict).
    # Predictions then start with logits. A2GenTrainer's predictions (predict_actions) do not read it.
    keys_to_ignore_at_inference: ClassVar[list[str]] = [
        "action_loss", "time_loss", "order_loss", "aux_action_loss", "aux_time_loss", "occurrence_loss", "cache",
        "hidden_states", "attentions",
    ]  # fmt: skip

    hidden_size: int = 32
    num_attention_heads: int = 4
    head_dim: int | None = None
    generator_type: str = "iag"
    eag_position_embeddings: bool = False
    eag_shared_event_embedding: bool = True
    iag_slot_activation: str = "linear"
    time_loss_reduction: str = "mean"
    compile_training: bool = False
    order_loss_weight: float | int = 0.01
    aux_loss_weight: float | int = 0.1
    history_pooling: str = "sum"
    history_event_cross_layers: int = 0
    history_event_item_moments: int = 0
    history_event_moment_seconds: float | int = 1.0
    history_event_moment_topics: int = 0
    history_event_moment_smoothing: int = 0
    history_event_moment_source: str = "item_features"
    target_item_moments: bool = False
    history_item_exposure: bool = False
    context_interactions: bool = False
    cam_gate_input: str = "context"
    occurrence_head: bool = False
    occurrence_loss_weight: float | int = 1.0
    occurrence_path_scale: float | int = 1.0
    occurrence_paths_input: str = "context"
    occurrence_linear_path: bool = True
    occurrence_hidden_size: int | None = None
    slot_readout: str = "sequence"
    time_per_action: bool = False
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    use_cache: bool = True

    def __post_init__(self, **kwargs: Any) -> None:
        # A2Gen's wide path is part of its occurrence head, so it implies one.
        self.occurrence_head = self.occurrence_head or (self.wide_path and self.model_type == "a2gen")
        super().__post_init__(**kwargs)

    @property
    def num_hidden_layers(self) -> int:
        """Layers with a key/value cache: CAM_gen only (what ``DynamicCache(config=...)`` reads)."""
        return 1

    def _problems(self) -> list[str]:
        problems = super()._problems()
        if self.generator_type not in GENERATORS:
            problems.append(f"generator={self.generator_type!r} is unknown; use one of {list(GENERATORS)}.")
        if self.cam_gate_input not in CAM_GATE_INPUTS:
            problems.append(f"cam_gate_input={self.cam_gate_input!r} is unknown; use one of {list(CAM_GATE_INPUTS)}.")
        if self.time_loss_reduction not in TIME_LOSS_REDUCTIONS:
            problems.append(
                f"time_loss_reduction={self.time_loss_reduction!r} is unknown; use one of {list(TIME_LOSS_REDUCTIONS)}."
            )
        if self.iag_slot_activation not in IAG_SLOT_ACTIVATIONS:
            problems.append(
                f"iag_slot_activation={self.iag_slot_activation!r} is unknown; use one of {list(IAG_SLOT_ACTIVATIONS)}."
            )
        if self.slot_readout not in SLOT_READOUTS:
            problems.append(f"slot_readout={self.slot_readout!r} is unknown; use one of {list(SLOT_READOUTS)}.")
        if self.history_pooling not in HISTORY_POOLINGS:
            problems.append(f"history_pooling={self.history_pooling!r} is unknown; use one of {list(HISTORY_POOLINGS)}.")
        if isinstance(self.history_event_cross_layers, bool) or self.history_event_cross_layers < 0:
            problems.append(
                f"history_event_cross_layers={self.history_event_cross_layers!r} must be an integer >= 0 and at most "
                f"{MAX_HISTORY_EVENT_CROSS_LAYERS} (0: the paper's events; 1 or 2: cross layers of each event with its item)."
            )
        if isinstance(self.history_event_item_moments, bool) or self.history_event_item_moments < 0:
            problems.append(
                f"history_event_item_moments={self.history_event_item_moments!r} must be an integer >= 0 "
                "(0: the paper's events; e.g. 64: a vector per item and second of its first minute)."
            )
        if not self.use_id_embeddings and not self.num_item_side_features and not self.target_popularity_features:
            problems.append(
                "use_id_embeddings=False with num_item_side_features=0 and target_popularity_features=False: the "
                "model would see nothing of the target item, and every candidate would get the same score; embed "
                "the ids (use_id_embeddings=True; CLI --no-id-free), give the log's item side features when "
                "preparing it (e.g. `a2gen prepare --generic-side-features COLUMN`), or read the items' counts "
                "(target_popularity_features=True)."
            )
        if self.history_event_moment_source not in MOMENT_SOURCES:
            problems.append(
                f"history_event_moment_source={self.history_event_moment_source!r} is unknown; use one of "
                f"{list(MOMENT_SOURCES)}."
            )
        elif self.history_event_item_moments and self.history_event_moment_source == "table" and not self.use_id_embeddings:
            problems.append(
                "history_event_moment_source='table' needs item ids, but use_id_embeddings=False; use "
                "history_event_moment_source='item_features' or use_id_embeddings=True."
            )
        problems += self._moment_table_option_problems(
            "history_event_moment_topics", "free (item, moment) vectors; e.g. 16 topics"
        )
        problems += self._moment_table_option_problems(
            "history_event_moment_smoothing", "each moment reads its own row; e.g. 2 buckets either side"
        )
        if self.target_item_moments and not self.history_event_item_moments:
            problems.append(
                "target_item_moments=True needs the (item, moment) vectors of history_event_item_moments; set "
                "history_event_item_moments (e.g. 64) or target_item_moments=False."
            )
        if self.history_item_exposure and not self.history_event_item_moments:
            problems.append(
                "history_item_exposure=True needs the (item, moment) vectors of history_event_item_moments; set "
                "history_event_item_moments (e.g. 64) or history_item_exposure=False."
            )
        if not self.history_event_moment_seconds > 0:
            problems.append(
                f"history_event_moment_seconds={self.history_event_moment_seconds!r} must be > 0 (the width of a "
                "moment bucket in seconds, e.g. 1.0)."
            )
        if self.head_dim is not None and (isinstance(self.head_dim, bool) or not isinstance(self.head_dim, int)
                                          or self.head_dim < 1):
            problems.append(f"head_dim={self.head_dim!r} must be a positive integer (or None: hidden_size // heads).")
        if self.hidden_size < 1:
            problems.append(f"hidden_size={self.hidden_size} must be a positive integer.")
        if self.num_attention_heads < 1:
            problems.append(f"num_attention_heads={self.num_attention_heads} must be a positive integer (e.g. 4).")
        elif (
            self.head_dim is None and 1 <= self.hidden_size <= MAX_WIDTH and self.num_attention_heads <= MAX_FEATURE_COUNT
            and self.hidden_size % self.num_attention_heads
        ):  # only between valid sizes (before: hidden_size=-1 was also "not divisible", as -1 % 4 == 3)
            problems.append(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}; "
                "change one so that hidden_size % num_attention_heads == 0 (e.g. 32 and 4), or set head_dim (each "
                "head's own width, e.g. head_dim=8)."
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                problems.append(f"{name}={getattr(self, name)} must be in [0, 1).")
        for name in ("order_loss_weight", "aux_loss_weight", "occurrence_loss_weight"):
            if getattr(self, name) < 0:
                problems.append(f"{name}={getattr(self, name)} must be >= 0.")
        if self.occurrence_hidden_size is not None and self.occurrence_hidden_size < 1:
            problems.append(f"occurrence_hidden_size={self.occurrence_hidden_size} must be >= 1 (None: hidden_size).")
        if not self.occurrence_path_scale > 0:
            problems.append(f"occurrence_path_scale={self.occurrence_path_scale} must be > 0 (1.0: unscaled).")
        if self.occurrence_paths_input not in OCCURRENCE_PATHS_INPUTS:
            problems.append(
                f"occurrence_paths_input={self.occurrence_paths_input!r}; use one of {list(OCCURRENCE_PATHS_INPUTS)}."
            )
        elif self.occurrence_paths_input == "extra_only" and not (
            self.history_count_features or self.target_popularity_features or self.history_propensity_features
        ):
            problems.append(
                "occurrence_paths_input='extra_only' reads the count / popularity features, but none is switched on: "
                "set history_count_features and / or target_popularity_features, or occurrence_paths_input='context'."
            )
        elif self.occurrence_paths_input == "without_extra" and not self.wide_path:
            problems.append(
                "occurrence_paths_input='without_extra' leaves the count / popularity features to the wide path, but "
                "wide_path=False: set wide_path=True (--wide-path) or occurrence_paths_input='context'."
            )
        return problems

    def _moment_table_option_problems(self, name: str, meaning_of_zero: str) -> list[str]:
        """An option of the moment table (``history_event_moment_topics`` / ``_smoothing``): an integer >= 0, and
        not 0 only with ``history_event_item_moments`` and ``history_event_moment_source="table"``."""
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return [f"{name}={value!r} must be an integer >= 0 (0: {meaning_of_zero})."]
        if value and not (self.history_event_item_moments and self.history_event_moment_source == "table"):
            return [
                f"{name} needs the moment table: set history_event_item_moments (e.g. 64) and "
                f"history_event_moment_source='table', or {name}=0."
            ]
        return []


# The fields only A2Gen's network reads (what the baselines accept and drop).
A2GEN_ONLY_FIELDS = frozenset(A2GenConfig.field_names() - ActionSequenceConfig.field_names())
