"""Configuration of A2Gen (Action-Aware Generative Sequence Network, arXiv 2604.25834)."""

from __future__ import annotations

import math
import warnings

from transformers import PretrainedConfig

SHORT_VIDEO_ACTIONS = ["start", "like", "follow", "forward", "comment", "leave"]
ECOMMERCE_ACTIONS = ["click", "collect", "cart", "buy", "leave"]
PAD_ACTION = "<pad>"
GENERATORS = ("iag", "eag")
HISTORY_POOLINGS = ("sum", "mean")
TIME_LOSSES = ("mse", "l1")
CAM_GATE_INPUTS = ("context", "projected")
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
SLOT_READOUTS = ("sequence", "any_slot")
# Fields that configs once had and no code reads: accepted and dropped (a FutureWarning when passed by hand; silently
# from a config.json, which wrote every field), so that old configs and checkpoints still load.
DEPRECATED_FIELDS = {
    "user_side_list_length": "the user side lists are mean-pooled over any number of ids, so their length is no setting",
}


class A2GenConfigError(ValueError):
    """Raised when an :class:`A2GenConfig` is built with values that cannot work together."""


class A2GenConfig(PretrainedConfig):
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
        num_attention_heads (`int`): heads per CAM (default 4); ``hidden_size`` must be divisible by it.
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
            batches with other numbers of real items do not recompile. Off by default; see docs/performance.md.
        generator_type (`str`): ``"iag"`` (implicit autoregression, the paper's best) or ``"eag"`` (explicit).
            ``generator=`` is accepted as an alias; the attribute is not called ``generator`` because transformers
            reads a config attribute of that name as a sub-model config.
        action_loss_weight / time_loss_weight / order_loss_weight / aux_loss_weight (`float`): the paper's
            1 / 0.1 / 0.01 / 0.1.
        time_loss (`str`): ``"mse"`` (the paper; predicts the mean time) or ``"l1"`` (predicts the median, which
            suits zero-heavy times such as e-commerce actions logged at the click).
        num_time_frequencies (`int`): sinusoidal frequencies of the time encoding (0 = linear projection only).
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
        history_pooling (`str`): how HSE reduces CAM outputs over positions: ``"sum"`` (the paper) or ``"mean"``.
        history_propensity_features (`bool`): also give the generator (and the baselines' towers) the count rule's
            features: per action, the share of history items whose events include it. Off in the paper.
        history_count_features (`bool`): also give the generator (and the baselines' towers) the count features of
            the logistic-regression baseline that the batch holds (per action: share of history items with it, the
            same over the 5 most recent and over the target's category, recency of its last occurrence; history
            length, shares and recency of the target item and category), standardised with running statistics of
            the training examples. Off in the paper.
        target_popularity_features (`bool`): also give the generator (and the baselines' towers) the target item's and
            its category's smoothed action rates on the training examples and their example counts, as the
            logistic-regression baseline reads them (left out for each training example's own outcome), fitted by
            ``create_model`` on the train split and saved with the model. Off in the paper.
        occurrence_head (`bool`): add a ranking head to A2Gen: per action, a logit of "it happens" from the generation
            context (a linear path plus a one-hidden-layer path), trained with binary cross-entropy (weight
            ``occurrence_loss_weight``); ``predict_actions`` then ranks with it instead of reading the generator's
            slots (times still come from the slots). Off in the paper.
        occurrence_loss_weight (`float`): weight of that binary cross-entropy in the loss.
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
            slots, ignoring predicted ends. An option beyond the paper's text either way.
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
        initializer_range (`float`): std of the normal initialisation of weights and embeddings.
        use_cache (`bool`): the default of ``generate(use_cache=...)``: EAG decodes with its key/value cache (exact;
            IAG has none). ``forward`` builds a cache only when asked (``use_cache=True`` or a cache passed).

    ``num_hidden_layers`` is 1: CAM_gen is the one layer whose keys and values EAG caches, so
    ``DynamicCache(config=config)`` has one layer, as the cache EAG builds itself.
    """

    model_type = "a2gen"

    def __init__(
        self,
        action_names: list[str] | None = None,
        start_action: str = "start",
        end_action: str = "leave",
        hidden_size: int = 32,
        num_attention_heads: int = 4,
        id_embedding_size: int = 32,
        action_embedding_size: int = 32,
        time_embedding_size: int = 32,
        max_history_items: int = 100,
        max_events_per_item: int = 6,
        max_actions: int = 6,
        generator_type: str = "iag",
        eag_position_embeddings: bool = False,
        eag_shared_event_embedding: bool = True,
        iag_slot_activation: str = "linear",
        time_loss_reduction: str = "mean",
        compile_training: bool = False,
        action_loss_weight: float = 1.0,
        time_loss_weight: float = 0.1,
        order_loss_weight: float = 0.01,
        aux_loss_weight: float = 0.1,
        time_loss: str = "mse",
        num_time_frequencies: int = 8,
        time_log_mean: float = 0.0,
        time_log_std: float = 1.0,
        user_buckets: int = 100_000,
        item_buckets: int = 1_000_000,
        side_feature_buckets: int = 100_000,
        num_item_side_features: int = 0,
        num_user_side_lists: int = 0,
        history_pooling: str = "sum",
        cam_gate_input: str = "context",
        history_propensity_features: bool = False,
        history_count_features: bool = False,
        target_popularity_features: bool = False,
        occurrence_head: bool = False,
        occurrence_loss_weight: float = 1.0,
        slot_readout: str = "sequence",
        wide_path: bool = False,
        target_drops_repeated_start: bool = False,
        rare_id_threshold: int = 0,
        rare_id_buckets: int = 64,
        use_id_embeddings: bool = True,
        sparse_embeddings: bool = False,
        hidden_dropout_prob: float = 0.0,
        attention_probs_dropout_prob: float = 0.0,
        embedding_dropout_prob: float = 0.0,
        initializer_range: float = 0.02,
        use_cache: bool = True,
        **kwargs,
    ):
        self.action_names = list(action_names) if action_names is not None else list(SHORT_VIDEO_ACTIONS)
        self.start_action = start_action
        self.end_action = end_action
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.id_embedding_size = id_embedding_size
        self.action_embedding_size = action_embedding_size
        self.time_embedding_size = time_embedding_size
        self.max_history_items = max_history_items
        self.max_events_per_item = max_events_per_item
        self.max_actions = max_actions
        self.generator_type = kwargs.pop("generator", generator_type)
        for key in DEPRECATED_FIELDS.keys() & kwargs.keys():
            kwargs.pop(key)
            warnings.warn(
                f"{type(self).__name__}({key}=...) is deprecated and ignored: {DEPRECATED_FIELDS[key]}; drop it.",
                FutureWarning,
                stacklevel=2,
            )
        self.eag_position_embeddings = bool(eag_position_embeddings)
        self.eag_shared_event_embedding = bool(eag_shared_event_embedding)
        self.iag_slot_activation = iag_slot_activation
        self.time_loss_reduction = time_loss_reduction
        self.compile_training = bool(compile_training)
        self.action_loss_weight = action_loss_weight
        self.time_loss_weight = time_loss_weight
        self.order_loss_weight = order_loss_weight
        self.aux_loss_weight = aux_loss_weight
        self.time_loss = time_loss
        self.num_time_frequencies = num_time_frequencies
        self.time_log_mean = time_log_mean
        self.time_log_std = time_log_std
        self.user_buckets = user_buckets
        self.item_buckets = item_buckets
        self.side_feature_buckets = side_feature_buckets
        self.num_item_side_features = num_item_side_features
        self.num_user_side_lists = num_user_side_lists
        self.history_pooling = history_pooling
        self.cam_gate_input = cam_gate_input
        self.history_propensity_features = history_propensity_features
        self.history_count_features = history_count_features
        self.target_popularity_features = target_popularity_features
        # A2Gen's wide path is part of its occurrence head, so it implies one.
        self.occurrence_head = occurrence_head or (wide_path and self.model_type == "a2gen")
        self.occurrence_loss_weight = occurrence_loss_weight
        self.slot_readout = slot_readout
        self.wide_path = wide_path
        self.target_drops_repeated_start = target_drops_repeated_start
        self.rare_id_threshold = rare_id_threshold
        self.rare_id_buckets = rare_id_buckets
        self.use_id_embeddings = use_id_embeddings
        self.sparse_embeddings = sparse_embeddings
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.embedding_dropout_prob = embedding_dropout_prob
        self.initializer_range = initializer_range
        self.use_cache = use_cache
        layers = kwargs.pop("num_hidden_layers", 1)
        if layers != 1:
            raise A2GenConfigError(
                f"num_hidden_layers={layers}: A2Gen has one cached layer (CAM_gen); it is not a setting."
            )
        self._validate()
        kwargs.setdefault("pad_token_id", 0)
        kwargs.setdefault("bos_token_id", self.start_action_id)
        kwargs.setdefault("eos_token_id", self.end_action_id)
        super().__init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs) -> A2GenConfig:
        """
        As :meth:`PretrainedConfig.from_dict`, but a field missing from `config_dict` (a config.json written before
        the field existed) takes the value that reproduces that checkpoint (``LEGACY_DEFAULTS``), not the paper's.
        """
        current = {key: value for key, value in config_dict.items() if key not in DEPRECATED_FIELDS}
        return super().from_dict({**LEGACY_DEFAULTS, **current}, **kwargs)

    # Vocabulary helpers: ids are derived from ``action_names`` so they can never disagree with it.
    @property
    def vocab_size(self) -> int:
        return len(self.action_names) + 1

    @property
    def num_hidden_layers(self) -> int:
        """Layers with a key/value cache: CAM_gen only (what ``DynamicCache(config=...)`` reads)."""
        return 1

    @property
    def user_side_list_length(self) -> None:
        """Deprecated, always ``None``: the user side lists are mean-pooled over any number of ids."""
        return None

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

    def _validate(self) -> None:
        problems = []
        names = self.action_names
        if len(set(names)) != len(names):
            problems.append(f"action_names has duplicates: {names}; list each action once.")
        if PAD_ACTION in names:
            problems.append(f"action_names must not contain {PAD_ACTION!r}: id 0 is reserved for padding.")
        for role in ("start_action", "end_action"):
            if getattr(self, role) not in names:
                problems.append(f"{role}={getattr(self, role)!r} is not in action_names={names}; add it or pick one.")
        if self.start_action == self.end_action:
            problems.append("start_action and end_action must differ.")
        if self.generator_type not in GENERATORS:
            problems.append(f"generator={self.generator_type!r} is unknown; use one of {list(GENERATORS)}.")
        if self.time_loss not in TIME_LOSSES:
            problems.append(f"time_loss={self.time_loss!r} is unknown; use one of {list(TIME_LOSSES)}.")
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
        if self.wide_path and not (self.history_count_features or self.target_popularity_features):
            problems.append(
                "wide_path=True reads the count / popularity features: set history_count_features and / or "
                "target_popularity_features too (--count-features, --popularity-features)."
            )
        if self.slot_readout not in SLOT_READOUTS:
            problems.append(f"slot_readout={self.slot_readout!r} is unknown; use one of {list(SLOT_READOUTS)}.")
        if self.history_pooling not in HISTORY_POOLINGS:
            problems.append(f"history_pooling={self.history_pooling!r} is unknown; use one of {list(HISTORY_POOLINGS)}.")
        if self.num_attention_heads < 1 or self.hidden_size % self.num_attention_heads:
            problems.append(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}; "
                "change one so that hidden_size % num_attention_heads == 0 (e.g. 32 and 4)."
            )
        for field in (
            "hidden_size", "id_embedding_size", "action_embedding_size", "time_embedding_size",
            "max_history_items", "max_events_per_item", "max_actions", "user_buckets", "item_buckets",
            "side_feature_buckets", "rare_id_buckets",
        ):
            if int(getattr(self, field)) < 1:
                problems.append(f"{field}={getattr(self, field)} must be a positive integer.")
        for field in ("num_item_side_features", "num_user_side_lists", "num_time_frequencies", "rare_id_threshold"):
            if int(getattr(self, field)) < 0:
                problems.append(f"{field}={getattr(self, field)} must be >= 0.")
        for field in ("hidden_dropout_prob", "attention_probs_dropout_prob", "embedding_dropout_prob"):
            if not 0.0 <= getattr(self, field) < 1.0:
                problems.append(f"{field}={getattr(self, field)} must be in [0, 1).")
        for field in (
            "action_loss_weight", "time_loss_weight", "order_loss_weight", "aux_loss_weight", "occurrence_loss_weight"
        ):
            if getattr(self, field) < 0:
                problems.append(f"{field}={getattr(self, field)} must be >= 0.")
        if not isinstance(self.sparse_embeddings, bool):
            problems.append(f"sparse_embeddings={self.sparse_embeddings!r} must be True or False.")
        if not self.time_log_std > 0:
            problems.append(f"time_log_std={self.time_log_std} must be > 0 (refit the tokenizer's time statistics).")
        if problems:
            raise A2GenConfigError("Invalid A2GenConfig:\n  - " + "\n  - ".join(problems))
