"""Ranking many candidates for one user: the user's side once, the candidates batched.

``A2GenRanker(model).encode_user(...)`` runs everything that does not depend on the candidate once per request
(embeddings, level 1 of HSE, CAM_item's keys, values and the history part of its queries); ``score_candidates``
then scores C candidates in fixed-size blocks. It composes the model's own parts and holds no math of its own:

- CAM_item pooled over the history, for many candidates at once, is
  :meth:`ContextAwareAttention.sequence_state` / :meth:`ContextAwareAttention.pooled_output` (the algebra is in
  ``docs/serving.md``);
- the generator's per-slot distributions are :meth:`A2GenForActionGeneration.slot_distributions` (IAG:
  :meth:`ImplicitActionGenerator.slot_predictions`, its batch-innermost inference path), read by
  :func:`~a2gen_hf.modeling_a2gen.action_predictions_from_slots` as in ``predict_actions``;
- generation is :meth:`A2GenForActionGeneration.generate_from_context`.

Results equal ``predict_actions`` / ``generate`` on a batch that repeats the user's history once per candidate.
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch._dynamo import maybe_mark_dynamic  # no public name yet (torch 2.13)
from transformers import GenerationConfig
from transformers.utils import logging

from .features_a2gen import popularity_keyed_by_raw_id
from .generation_a2gen import A2GenBeamGenerateOutput, A2GenGenerateOutput
from .modeling_a2gen import (
    A2GenActionPrediction,
    A2GenForActionGeneration,
    check_binary_mask,
    check_model_inputs,
)

logger = logging.get_logger(__name__)

USER_INPUT_NAMES = (
    "user_ids",
    "history_item_ids",
    "history_action_ids",
    "history_action_times",
    "history_time_mask",
    "history_mask",
    "history_item_side_ids",
    "user_side_ids",
    "history_item_ages",
)
REQUIRED_USER_INPUTS = USER_INPUT_NAMES[:4]
# What a user's history lacks when its model reads the history sessions' times (history_time_features) and no
# history_item_ages came: how to give them, from each of the ways in.
MISSING_AGES = (
    "This model reads the history sessions' times (history_time_features=True): pass history_item_ages (1, N), the "
    "seconds from each history item's session start to the request's (target's) session start, laid out as "
    "history_item_ids (0 at padding). tokenizer.encode_histories(...) gives it from (item, timeline, session_start) "
    "triples and now=<request time, Unix seconds>; A2GenDataCollator from the rows' session_start and "
    "history_session_starts; an \"action-generation\" request from each history entry's \"session_start\" and the "
    "request's \"time\"."
)
DEFAULT_CHUNK_SIZE = 1000


class RankingWorkers:
    """
    Threads that run a ranker's blocks of candidates in parallel, each with one intra-op thread.

    On a CPU, blocks of candidates on separate threads can use the cores better than one block whose every small
    operator is split across OpenMP threads (each parallel operator waits for its whole team, which on a shared
    machine may not be scheduled for milliseconds). This pays only where a block runs without holding Python's GIL:
    ``A2GenRanker(compile=True, workers=N)`` compiles the blocks with inductor's C++ wrapper, whose graphs release
    the GIL while they run. Eager blocks hold it between their hundreds of small operators, and two of them on two
    threads took 1.8x as long as one alone (docs/serving.md), so the ranker does not allow workers without compile.

    Torch's intra-op thread count is a per-thread OpenMP setting that a thread takes from a process-wide default the
    first time it runs a parallel operator; ``torch.set_num_threads`` sets both. Each worker therefore first
    initialises itself, then sets one thread for itself; the pool then restores the process-wide default to the
    creating thread's count, so no other thread's setting changes. Work runs under ``torch.no_grad()`` (grad mode
    and autocast are per thread: a block that needs autocast enters it itself).

    Use :meth:`shared` to get the pool of a given size that every ranker of the process shares.
    """

    def __init__(self, count: int):
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"RankingWorkers needs a positive int number of threads, got {count!r}.")
        self.count = count
        self._executor = ThreadPoolExecutor(count, thread_name_prefix="a2gen-ranking")
        caller_threads = torch.get_num_threads()
        started = threading.Barrier(count)

        def start() -> None:
            torch.get_num_threads()  # torch's per-thread initialisation (from the process-wide default) first
            torch.set_num_threads(1)
            started.wait()  # every task on its own thread: all `count` threads exist and are set

        for future in [self._executor.submit(start) for _ in range(count)]:
            future.result()
        torch.set_num_threads(caller_threads)

    @classmethod
    def shared(cls, count: int) -> RankingWorkers:
        """The process's pool of ``count`` threads, created on first use."""
        with _SHARED_WORKERS_LOCK:
            if count not in _SHARED_WORKERS:
                _SHARED_WORKERS[count] = cls(count)
            return _SHARED_WORKERS[count]

    def map(self, function: Callable[[Any], Any], arguments: Sequence[Any]) -> list[Any]:
        """``[function(argument) for argument in arguments]``, in parallel on the workers; exceptions propagate."""
        futures = [self._executor.submit(_without_grad, function, argument) for argument in arguments]
        return [future.result() for future in futures]


_SHARED_WORKERS: dict[int, RankingWorkers] = {}
_SHARED_WORKERS_LOCK = threading.Lock()


def _without_grad(function: Callable[[Any], Any], argument: Any) -> Any:
    with torch.no_grad():
        return function(argument)


@dataclass
class UserState:
    """
    Candidate-independent terms of one user, from :meth:`A2GenRanker.encode_user`. Padding history items are
    dropped (they never change an output), so ``n`` below is the number of real history items.

    Args:
        user_features (`torch.FloatTensor` of shape `(1, user_feature_size)`).
        queries (`torch.FloatTensor` of shape `(heads, n, head_size)`): CAM_item's history part of the queries.
        keys / values (`torch.FloatTensor` of shape `(heads, n, head_size)`): CAM_item's keys and values.
        score_exponentials (`torch.FloatTensor` of shape `(heads, n, n)`): ``exp(A - rowmax(A))`` with
            ``A = queries @ keys^T / sqrt(head_size)``, the per-user factor of every candidate's attention.
        history (`dict`, *optional*): for a model with the count / propensity / popularity features, the user's
            real history items: ``history_action_ids`` `(1, n, E)`, ``history_mask`` `(1, n)`, ``history_item_ids``
            `(1, n)`, ``history_item_side_ids`` `(1, n, F)` or None and, for a model with ``history_time_features``,
            ``history_item_ages`` `(1, n)` float32 seconds; the features depend on the candidate.
    """

    user_features: torch.Tensor
    queries: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor
    score_exponentials: torch.Tensor
    history: dict[str, torch.Tensor | None] | None = None
    # Which model encoded it, and its weights then (:func:`weights_stamp`): a state is only scored by a ranker of
    # that model with those weights (a hot swap, weights reloaded in place, or the other model of an A/B pair would
    # otherwise mix one model's user terms with another's candidates, silently).
    model_stamp: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def num_history_items(self) -> int:
        return self.keys.shape[1]

    def __getstate__(self):
        raise TypeError(
            "A UserState belongs to the model object that encoded it (it is refused once that model's weights change) "
            "and cannot be pickled or saved: encode the user again with encode_user() in the process that scores."
        )

    def __copy__(self) -> UserState:
        """A copy in this process (``copy.copy``): the same tensors, still tied to the model that encoded them."""
        return replace(self, history=None if self.history is None else dict(self.history))

    def __deepcopy__(self, memo: dict) -> UserState:
        """A copy in this process with its own tensors (``copy.deepcopy``), still tied to the model that encoded them
        (the stamp, a weak reference and counters, is shared, not copied)."""
        tensors = {item.name: copy.deepcopy(getattr(self, item.name), memo)
                   for item in fields(self) if item.name != "model_stamp"}  # fmt: skip
        return replace(self, **tensors)

    def as_tuple(self) -> tuple[torch.Tensor, ...]:
        """The tensors, in field order, that lead the arguments of :class:`A2GenRankingProgram`."""
        return tuple(getattr(self, item.name) for item in fields(self) if item.name not in ("history", "model_stamp"))


def weights_stamp(model: nn.Module) -> tuple:
    """What identifies ``model`` and the values of its weights: a weak reference to it (an ``id()`` is reused by a
    model built where a freed one lay), how many times ``load_state_dict`` ran on it, and each parameter's and
    buffer's storage and in-place version, which an optimizer step or any in-place change moves (also one through
    ``detach()``; not one through ``.data``, which PyTorch does not count: after such edits, encode again). The model's tensors
    are listed once per model (and again after each ``load_state_dict``, whose ``assign=True`` replaces them), so a
    stamp costs a few microseconds per tensor, not a walk of the module tree."""
    return weakref.ref(model), _watch(model).stamp()


def _watch(model: nn.Module) -> _WeightsWatch:
    """The model's :class:`_WeightsWatch`, made at its first stamp."""
    watch = _WATCHES.get(model)
    if watch is None:
        watch = _WATCHES[model] = _WeightsWatch(model)
    return watch


class _WeightsWatch:
    """A model's tensors, listed once, and the number of its ``load_state_dict`` calls (a post hook)."""

    def __init__(self, model: nn.Module):
        self.loads = 0
        self.tensors = [*model.parameters(), *model.buffers()]
        model.register_load_state_dict_post_hook(self.loaded)

    def loaded(self, module: nn.Module, incompatible_keys: Any) -> None:
        self.loads += 1
        self.tensors = [*module.parameters(), *module.buffers()]

    def stamp(self) -> tuple:
        return self.loads, tuple((tensor.data_ptr(), _version(tensor)) for tensor in self.tensors)


# One watch per model object, dropped with the model.
_WATCHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _version(tensor: torch.Tensor) -> int:
    """The tensor's in-place version counter; -1 for a tensor made under ``torch.inference_mode`` (which keeps none,
    and can then only change through a new storage, which the stamp sees)."""
    return -1 if tensor.is_inference() else tensor._version


class A2GenRankingProgram(nn.Module):
    """
    The candidate side of ranking as one module with tensor-only inputs, so it can run eagerly, under
    ``torch.compile`` and through ``torch.export``. Holds no weights of its own: it calls the model's parts.

    forward(user_features `(1, Du)`, queries / keys / values `(H, n, dh)`, score_exponentials `(H, n, n)`,
    item_ids `(C,)`, item_side_ids `(C, F)` or None, extra_features `(C, De)` or None) -> action_probabilities,
    expected_times, expected_seconds, each `(C, vocab_size)`. ``extra_features`` are the model's
    :class:`~a2gen_hf.modeling_a2gen.ExtraContextFeatures` of the candidates (:meth:`A2GenRanker.extra_features`).

    ``report_underflow=True`` (what ``compile=True`` compiles): CAM_item always takes its factored form, and
    forward returns a fourth output, a bool tensor set when the factored form underflowed for some candidate of the
    block (the caller then recomputes the block with the default program, which takes the exact form). The
    compiled program is then one graph, without the data-dependent branch of
    :meth:`ContextAwareAttention.pooled_output`.
    """

    def __init__(self, model: A2GenForActionGeneration, report_underflow: bool = False):
        super().__init__()
        self.model = model
        self.report_underflow = report_underflow

    def generation_context(
        self, user_features, queries, keys, values, score_exponentials, item_ids, item_side_ids, extra_features=None
    ) -> torch.Tensor:
        """The context of CAM_gen, `(C, context_size)`, laid out as ``A2GenModel`` lays it out."""
        return self._context(
            user_features, queries, keys, values, score_exponentials, item_ids, item_side_ids, extra_features
        )[0]

    def _context(self, user_features, queries, keys, values, score_exponentials, item_ids, item_side_ids, extra_features):
        """The generation context and CAM_item's underflow flag (None without ``report_underflow``)."""
        encoder = self.model.a2gen
        item_features = encoder.features.target_item_features(item_ids, item_side_ids)
        # Vec_hist: CAM_item's outputs summed over the n history items (HSE's pooling), for every candidate.
        history = encoder.encoder.item_attention.pooled_output(
            queries, keys, values, score_exponentials, item_features, report_underflow=self.report_underflow
        )
        history, underflow = history if self.report_underflow else (history, None)
        history = encoder.encoder.scale_pooled(history, keys.shape[1])
        user_features = user_features.expand(item_ids.shape[0], -1)
        return encoder.generation_context(user_features, history, item_features, extra_features), underflow

    def forward(
        self,
        user_features,
        queries,
        keys,
        values,
        score_exponentials,
        item_ids,
        item_side_ids=None,
        extra_features=None,
    ):
        context, underflow = self._context(
            user_features, queries, keys, values, score_exponentials, item_ids, item_side_ids, extra_features
        )
        prediction = self.model.predictions_from_context(context)  # predict_actions' own tail
        outputs = (prediction.action_probabilities, prediction.expected_times, prediction.expected_seconds)
        return (*outputs, underflow) if self.report_underflow else outputs


class A2GenUserProgram(nn.Module):
    """
    The candidate-free terms of one user's real history items as one module with tensor-only inputs (so that
    ``compile=True`` compiles it, with the number of items dynamic): the items' features, level 1 of HSE (the
    model's packed path, :meth:`A2GenModel.encode_packed_item_events`) and CAM_item's sequence state
    (:meth:`ContextAwareAttention.sequence_state`). Holds no weights of its own.

    forward(history_item_ids `(1, n)`, history_item_side_ids `(1, n, F)` or None, history_action_ids /
    history_action_times `(1, n, E)`, history_time_mask `(1, n, E)` or None) -> queries, keys, values `(H, n, dh)`,
    score_exponentials `(H, n, n)`.
    """

    def __init__(self, model: A2GenForActionGeneration):
        super().__init__()
        self.model = model

    def forward(self, history_item_ids, history_item_side_ids, history_action_ids, history_action_times, history_time_mask):
        encoder = self.model.a2gen
        side_ids = None if history_item_side_ids is None else history_item_side_ids[0]
        actions, times = history_action_ids[0], history_action_times[0]
        time_mask = None if history_time_mask is None else history_time_mask[0]
        present = actions != 0
        features = encoder.features.history_item_features(history_item_ids[0], side_ids, times, time_mask, present)
        sequences = encoder.encode_packed_item_events(features, actions, times, time_mask, present, history_item_ids[0])
        return encoder.encoder.item_attention.sequence_state(torch.cat([features, sequences], dim=-1))


class A2GenRanker:
    """
    Scores many candidate items for one user at a time.

    Args:
        model (:class:`A2GenForActionGeneration`): put into eval mode (dropout off), as ranking needs.
        chunk_size (`int`, *optional*): score candidates in blocks of this many (per-user work is done once; default
            1,000: blocks keep the temporaries in cache, and compiled code sees one shape). ``None`` scores all
            candidates of a call in one block.
        compile (`bool`): run the candidate side through ``torch.compile``; needs ``chunk_size``, and the last block
            is padded so that every call has the same shape, with the number of history items dynamic, so that
            nothing recompiles for another C or another user (histories of fewer than 2 real items, which torch
            would specialise, run eagerly). ``encode_user``'s history terms
            (:class:`A2GenUserProgram`) are compiled the same way.
        dtype (`torch.dtype`, *optional*): ``torch.bfloat16`` runs the candidate side under autocast: matrix
            products in bf16; the attention exponentials, every softmax (IAG's auxiliary heads included) and
            CAM_item's normalisers stay in fp32 (see docs/serving.md for the accuracy cost). ``None`` keeps the
            model's dtype.
        workers (`int`): with ``compile=True`` on a CPU, how many threads (:class:`RankingWorkers`, each with one
            intra-op thread) score a call's blocks of ``chunk_size`` candidates in parallel (choose ``chunk_size``
            = C / workers); the blocks are compiled with inductor's C++ wrapper, which releases the GIL while they
            run. ``encode_user`` then runs on one of the workers too, so every operator of a call runs with one
            intra-op thread. 1 (the default) runs everything on the calling thread with torch's intra-op threads.
            Other devices ignore it; ``generate``, ``generation_context`` and ``export`` run on the calling thread.
            See docs/serving.md for when it pays.

    Inputs are checked: ids must be integer tensors inside their tables, and a history longer than
    ``config.max_history_items`` items (or ``max_events_per_item`` events per item) is cut as the collator cuts it:
    the most recent items, the first events of each (a warning says so).

    Example:
        >>> ranker = A2GenRanker(model)
        >>> state = ranker.encode_user(user_ids=..., history_item_ids=..., history_action_ids=..., ...)
        >>> scores = ranker.score_candidates(state, item_ids)  # A2GenActionPrediction, rows = candidates
    """

    def __init__(
        self,
        model: A2GenForActionGeneration,
        chunk_size: int | None = DEFAULT_CHUNK_SIZE,
        compile: bool = False,
        dtype: torch.dtype | None = None,
        workers: int = 1,
    ):
        if not is_action_generation_model(model):
            raise TypeError(f"A2GenRanker needs an A2GenForActionGeneration, got {type(model).__name__}.")
        if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)):
            raise TypeError(f"chunk_size must be an int (or None), got {type(chunk_size).__name__} {chunk_size!r}.")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size} must be a positive number of candidates (or None).")
        if compile and chunk_size is None:
            raise ValueError("compile=True needs a fixed chunk_size (e.g. 1000) so that no batch size recompiles.")
        if dtype not in (None, torch.bfloat16):
            raise ValueError(f"dtype={dtype} is not supported; use None (the model's dtype) or torch.bfloat16.")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers={workers!r} must be a positive int (1 = run on the calling thread).")
        if workers > 1 and not compile:
            raise ValueError(
                f"workers={workers} needs compile=True (and chunk_size = C / workers): eager blocks hold Python's GIL "
                "between their small operators, so threads do not run them in parallel (docs/serving.md)."
            )
        self.model = model.eval()
        self.config = model.config
        self.chunk_size = chunk_size
        self.dtype = dtype
        self.program = A2GenRankingProgram(model)
        # With workers, inductor's C++ wrapper: its compiled graphs release the GIL while they run.
        options = {"cpp_wrapper": True} if workers > 1 else None
        # Compiled: the program that reports CAM_item's underflow instead of branching on it (one graph per block).
        compiled_program = A2GenRankingProgram(model, report_underflow=True)
        self._run = torch.compile(compiled_program, dynamic=False, options=options) if compile else self.program
        self.user_program = A2GenUserProgram(model)
        self._user_run = torch.compile(self.user_program, dynamic=True, options=options) if compile else None
        self.workers = workers
        self.compile = compile
        self._compiled_warm = threading.Event()  # compile=True with workers: the first block compiles alone
        self._compile_lock = threading.Lock()

    def __getstate__(self):
        raise TypeError(
            "An A2GenRanker holds compiled code, locks and worker threads and cannot be pickled: save the model "
            "(model.save_pretrained) and build a ranker from it in the other process."
        )

    def __deepcopy__(self, memo: dict) -> A2GenRanker:
        """A ranker of a deep copy of the model, with the same options (its compiled code is built anew)."""
        return type(self)(copy.deepcopy(self.model, memo), self.chunk_size, self.compile, self.dtype, self.workers)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _check_eval_mode(self) -> None:
        """Ranking needs the model in eval mode (dropout off): the ranker set it, and refuses it if switched back."""
        if self.model.training:
            raise ValueError(
                "The ranker's model is in training mode (dropout on: scores would be random); call model.eval() "
                "before ranking (A2GenRanker set eval mode, something switched the model back to train())."
            )

    # ------------------------------------------------------------------------------------------------------------
    # The user

    @torch.no_grad()
    def encode_user(self, **user_inputs: torch.Tensor) -> UserState:
        """
        Runs the candidate-independent part once. Takes one user's inputs named as in ``forward``, with batch size
        1: ``user_ids`` `(1,)`, ``history_item_ids`` `(1, N)`, ``history_action_ids`` / ``history_action_times``
        `(1, N, E)` and, where used, ``history_time_mask``, ``history_mask``, ``history_item_side_ids``
        `(1, N, F)`, ``user_side_ids`` `(1, S, L)`, ``history_item_ages`` `(1, N)` (seconds from each history item's
        session start to the request's; required by a model with ``history_time_features``, ignored by others, as
        ``forward`` ignores it). Candidate inputs (``item_ids``) go to ``score_candidates``.
        Histories are oldest first; beyond ``max_history_items`` real items only the most recent are read.
        """
        self._check_eval_mode()
        inputs = self._checked_user_inputs(user_inputs)  # the real items only: CAM has no positions
        encoder = self.model.a2gen
        items, actions, times = (inputs[name] for name in ("history_item_ids", "history_action_ids", "history_action_times"))
        side_ids, time_mask, ages = (inputs.get(name) for name in ("history_item_side_ids", "history_time_mask",
                                                                   "history_item_ages"))  # fmt: skip

        run = self.user_program
        if self._user_run is not None and items.shape[1] >= 2:
            # Compiled with the number of items dynamic (torch specialises 0 and 1: such histories run eagerly), and
            # the events padded to max_events_per_item (padding events are masked: the same numbers), because
            # CAM_act's short loops are unrolled over the events.
            run = self._user_run
            missing = self.config.max_events_per_item - actions.shape[2]
            if missing > 0:
                actions, times = F.pad(actions, (0, missing)), F.pad(times, (0, missing))
                time_mask = None if time_mask is None else F.pad(time_mask, (0, missing))
            for tensor in (items, side_ids, actions, times, time_mask):
                if tensor is not None:
                    maybe_mark_dynamic(tensor, 1)
        history_inputs = (items, side_ids, actions, times, time_mask)

        def user_terms(_=None) -> tuple[torch.Tensor, ...]:
            user_features = encoder.features.user_features(inputs["user_ids"], inputs.get("user_side_ids"))
            return (user_features, *run(*history_inputs))

        # With workers, on one of them (one intra-op thread). Not split: level 1's cost hardly depends on the
        # number of items (its operators are many and small).
        workers = self._workers()
        state = user_terms() if workers is None else workers.map(user_terms, [None])[0]
        history = None
        if encoder.extra_features.size:
            history = {
                "history_action_ids": actions,
                "history_mask": torch.ones_like(items, dtype=torch.bool),
                "history_item_ids": items,
                "history_item_side_ids": side_ids,
            }
            if ages is not None:
                history["history_item_ages"] = ages
        return UserState(*state, history, model_stamp=weights_stamp(self.model))

    def _workers(self) -> RankingWorkers | None:
        """The shared pool of ``workers`` threads; None (``workers=1``, or not on a CPU): the calling thread."""
        if self.workers == 1 or self.device.type != "cpu":
            return None
        return RankingWorkers.shared(self.workers)

    def _most_recent(self, real: torch.Tensor) -> torch.Tensor:
        """The positions of the last ``max_history_items`` real items; warns when older ones are left out."""
        limit = self.config.max_history_items
        if real.numel() > limit:
            logger.warning_once(
                f"A2GenRanker: a history of {real.numel()} items is cut to the most recent "
                f"max_history_items={limit} (as the collator cuts it); pass at most {limit} items to silence this."
            )
            real = real[-limit:]
        return real

    def _checked_user_inputs(self, user_inputs: dict) -> dict[str, torch.Tensor]:
        """
        One user's inputs, checked by the model's own rule (:func:`check_model_inputs`: kinds, dtypes, shapes, id
        ranges, 0/1 masks, times and ages) after the ranker's own steps: the names it takes, side inputs the model
        does not read dropped (as ``forward`` ignores them), the batch-of-1 shapes, the history cut to its most
        recent ``max_history_items`` real items and each item's events to its first ``max_events_per_item`` real ones
        (as the collator cuts them), and times in the model's dtype. Returns the real history items only, on the
        model's device.
        """
        unknown = sorted(set(user_inputs) - set(USER_INPUT_NAMES))
        if unknown:
            raise ValueError(
                f"encode_user() got {unknown}; it takes the user's inputs {list(USER_INPUT_NAMES)}. Candidate ids "
                "(item_ids, item_side_ids) go to score_candidates()."
            )
        missing = [name for name in REQUIRED_USER_INPUTS if user_inputs.get(name) is None]
        if missing:
            raise ValueError(f"encode_user() is missing {missing}; pass one user's history (batch size 1).")
        config = self.config
        inputs = {name: value for name, value in user_inputs.items() if value is not None}
        # As forward(), side inputs the model does not read are ignored.
        if not config.num_item_side_features:
            inputs.pop("history_item_side_ids", None)
        if not config.num_user_side_lists:
            inputs.pop("user_side_ids", None)
        if not getattr(config, "history_time_features", False):
            inputs.pop("history_item_ages", None)
        elif "history_item_ages" not in inputs:
            raise ValueError(MISSING_AGES)
        for name, value in inputs.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(
                    f"{name} must be a torch.Tensor (batch size 1), got {type(value).__name__}; wrap lists with "
                    "torch.tensor([...])."
                )
        user_ids, history_item_ids = inputs["user_ids"], inputs["history_item_ids"]
        if user_ids.shape != (1,) or history_item_ids.dim() != 2 or history_item_ids.shape[0] != 1:
            raise ValueError(
                f"encode_user() encodes one user: user_ids must have shape (1,) and history_item_ids (1, N); got "
                f"{tuple(user_ids.shape)} and {tuple(history_item_ids.shape)}. Encode users one at a time."
            )
        items = history_item_ids.shape[1]
        actions = inputs["history_action_ids"]
        if actions.dim() != 3 or actions.shape[:2] != (1, items):
            raise ValueError(
                f"history_action_ids must have shape (1, N, E) = (1, {items}, E), got {tuple(actions.shape)}."
            )
        events = actions.shape[2]
        side_fields, side_lists = config.num_item_side_features, config.num_user_side_lists
        expected = {
            "history_action_times": (1, items, events),
            "history_time_mask": (1, items, events),
            "history_mask": (1, items),
            "history_item_side_ids": (1, items, side_fields),
            "history_item_ages": (1, items),
        }
        for name, shape in expected.items():
            if name in inputs and tuple(inputs[name].shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(inputs[name].shape)}.")
        if side_fields and "history_item_side_ids" not in inputs:
            raise ValueError(
                f"This model reads {side_fields} item side features: pass history_item_side_ids (1, N, {side_fields})."
            )
        if side_lists:
            side = inputs.get("user_side_ids")
            if side is None or side.dim() != 3 or side.shape[:2] != (1, side_lists):
                raise ValueError(
                    f"This model reads {side_lists} user side lists: pass user_side_ids of shape (1, {side_lists}, L), "
                    f"got {None if side is None else tuple(side.shape)}."
                )
        # Padding items are dropped (CAM has no positions), and of the real ones only the most recent are read.
        mask = inputs.get("history_mask")
        if mask is not None:
            check_binary_mask("history_mask", mask)  # before it selects the items
        real = self._most_recent(((history_item_ids if mask is None else mask)[0] != 0).nonzero().squeeze(1))
        for name in ("history_item_ids", "history_action_ids", "history_action_times", "history_time_mask",
                     "history_mask", "history_item_side_ids", "history_item_ages"):  # fmt: skip
            if name in inputs:
                inputs[name] = inputs[name][:, real.to(inputs[name].device)]
        actions, times = inputs["history_action_ids"], inputs["history_action_times"]
        parameter = next(self.model.parameters())
        if times.is_floating_point():  # any float dtype is taken, in the model's (the check refuses the others)
            inputs["history_action_times"] = times.to(parameter.dtype)
        # The collator keeps the first max_events_per_item events of each item; so does the ranker.
        limit = config.max_events_per_item
        if events > limit:
            real = actions != 0
            if (real.sum(-1) > limit).any():
                logger.warning_once(
                    f"A2GenRanker: history items with more than max_events_per_item={limit} events are cut to their "
                    "first events (as the collator cuts them)."
                )
            # Each item's real events first, in their order (before: the first `limit` positions were kept, so an item
            # whose events were padded on the left lost real events to padding, and its scores moved)
            order = torch.argsort((~real).to(torch.int8), dim=-1, stable=True)[..., :limit]
            for name in ("history_action_ids", "history_action_times", "history_time_mask"):
                if name in inputs:
                    inputs[name] = torch.gather(inputs[name], -1, order.to(inputs[name].device))
        check_model_inputs(config, parameter.dtype, **inputs)
        if "history_item_ages" in inputs:
            # float32 seconds, as the collator gives them and the time features read them (whatever the model's dtype)
            inputs["history_item_ages"] = inputs["history_item_ages"].to(torch.float32)
        return {name: value.to(parameter.device) for name, value in inputs.items()}

    def extra_features(
        self,
        user_state: UserState,
        item_ids: torch.LongTensor,
        item_side_ids: torch.LongTensor | None = None,
        item_keys: torch.LongTensor | None = None,
    ) -> torch.Tensor | None:
        """The model's count / propensity / popularity features of C candidates `(C, De)`; None without them."""
        if user_state.history is None:
            return None
        # The history keeps batch size 1: what depends on it alone is computed once for all candidates.
        return self.model.a2gen.extra_features(
            **user_state.history, item_ids=item_ids, item_side_ids=item_side_ids, item_keys=item_keys
        )

    # ------------------------------------------------------------------------------------------------------------
    # The candidates

    def _check_candidates(
        self,
        user_state: UserState,
        item_ids: torch.Tensor,
        item_side_ids: torch.Tensor | None,
        item_keys: torch.Tensor | None = None,
    ) -> None:
        if not isinstance(user_state, UserState):
            raise TypeError(f"user_state must be the UserState from encode_user(), got {type(user_state).__name__}.")
        if user_state.model_stamp is not None:
            model_ref, weights = user_state.model_stamp
            if model_ref() is not self.model:
                raise ValueError(
                    "user_state was encoded by another model than this ranker's (a cached state after a model swap, or "
                    "another model of an A/B pair): encode the user again with this ranker's encode_user()."
                )
            if weights != _watch(self.model).stamp():
                raise ValueError(
                    "user_state was encoded before this ranker's model changed its weights (load_state_dict, a training "
                    "step or another in-place change): encode the user again with encode_user()."
                )
        self._check_eval_mode()
        if not isinstance(item_ids, torch.Tensor):
            raise TypeError(
                f"item_ids must be a 1-D integer tensor of hashed candidate ids, shape (C,); got "
                f"{type(item_ids).__name__}. Wrap lists with torch.tensor([...])."
            )
        if item_ids.dim() != 1:
            raise ValueError(
                f"item_ids must be a 1-D integer tensor of candidate ids, shape (C,); got shape {tuple(item_ids.shape)}."
            )
        check_model_inputs(self.config, None, item_ids=item_ids)  # the model's dtype and range rule
        fields_needed = self.config.num_item_side_features
        if fields_needed and item_side_ids is None:
            raise ValueError(f"This model reads {fields_needed} item side features: pass item_side_ids (C, F).")
        if item_side_ids is not None:
            if not fields_needed:
                raise ValueError(
                    "This model has no item side features (num_item_side_features=0); drop item_side_ids."
                )
            if not isinstance(item_side_ids, torch.Tensor):
                raise TypeError(f"item_side_ids must be an integer tensor (C, F), got {type(item_side_ids).__name__}.")
            if tuple(item_side_ids.shape) != (item_ids.shape[0], fields_needed):
                raise ValueError(
                    f"item_side_ids must have shape (C, F) = ({item_ids.shape[0]}, {fields_needed}), "
                    f"got {tuple(item_side_ids.shape)}."
                )
            check_model_inputs(self.config, None, item_ids=item_ids, item_side_ids=item_side_ids)
        if popularity_keyed_by_raw_id(self.config) and item_keys is None:
            raise ValueError(
                "This model keys its popularity counts by raw item id (popularity_keys='raw_ids'): pass item_keys "
                "(C,), tokenizer.item_keys(raw candidate ids), beside item_ids."
            )
        if item_keys is not None and (
            not isinstance(item_keys, torch.Tensor)
            or item_keys.is_floating_point()
            or tuple(item_keys.shape) != (item_ids.shape[0],)
        ):
            raise ValueError(
                f"item_keys must be an integer tensor of shape (C,) = ({item_ids.shape[0]},), "
                "tokenizer.item_keys(raw candidate ids), got "
                f"{tuple(item_keys.shape) if isinstance(item_keys, torch.Tensor) else type(item_keys).__name__}."
            )

    @torch.no_grad()
    def score_candidates(
        self,
        user_state: UserState,
        item_ids: torch.LongTensor,
        item_side_ids: torch.LongTensor | None = None,
        item_keys: torch.LongTensor | None = None,
    ) -> A2GenActionPrediction:
        """
        Scores C candidates for the user of ``user_state``.

        Args:
            item_ids (`torch.LongTensor` of shape `(C,)`): hashed candidate item ids.
            item_side_ids (`torch.LongTensor` of shape `(C, F)`, *optional*): their side features.
            item_keys (`torch.LongTensor` of shape `(C,)`, *optional*): their raw-id keys
                (``tokenizer.item_keys``), required when the model's popularity counts are keyed by raw id.
        Returns:
            :class:`A2GenActionPrediction` with `(C, vocab_size)` tensors, equal to ``predict_actions`` on a batch
            that repeats the user's history C times (C = 0 gives empty tensors).
        """
        self._check_candidates(user_state, item_ids, item_side_ids, item_keys)
        item_ids = item_ids.to(self.device)
        item_side_ids = item_side_ids.to(self.device) if item_side_ids is not None else None
        item_keys = item_keys.to(self.device) if item_keys is not None else None
        total = item_ids.shape[0]
        if total == 0:
            empty = torch.zeros(0, self.config.vocab_size, device=item_ids.device)
            return A2GenActionPrediction(action_probabilities=empty, expected_times=empty, expected_seconds=empty)
        compiled = self._run is not self.program
        chunk = self.chunk_size or total
        user_terms = user_state.as_tuple()
        run = self._run
        if compiled and user_state.num_history_items < 2:  # sizes 0 and 1 would be specialised: run them eagerly
            run = self.program
        elif compiled:  # the number of history items varies from user to user: one graph for all of them
            for tensor in user_terms[1:]:
                maybe_mark_dynamic(tensor, 1)
        workers = self._workers()
        autocast = torch.autocast(self.device.type, dtype=self.dtype) if self.dtype is not None else nullcontext()

        def score_block(start: int) -> list[torch.Tensor]:
            ids = item_ids[start : start + chunk]
            side = item_side_ids[start : start + chunk] if item_side_ids is not None else None
            keys = item_keys[start : start + chunk] if item_keys is not None else None
            short = chunk - ids.shape[0]
            if short and compiled:  # keep the compiled shape fixed
                ids = F.pad(ids, (0, short))
                side = F.pad(side, (0, 0, 0, short)) if side is not None else None
                keys = F.pad(keys, (0, short)) if keys is not None else None
            with autocast:  # the extra features too, as predict_actions computes them
                extra = self.extra_features(user_state, ids, side, keys)
                result = run(*user_terms, ids, side, extra)
                if run is not self.program:
                    *result, underflow = result
                    if underflow:  # rare (very sharp attention): the block again, with CAM_item's exact form
                        result = self.program(*user_terms, ids, side, extra)
            return [tensor[: chunk - short].float() for tensor in result]

        starts = list(range(0, total, chunk))
        if workers is None:
            outputs = [score_block(start) for start in starts]
        else:
            outputs = []
            if compiled and not self._compiled_warm.is_set():
                with self._compile_lock:  # compiled once, on a worker (its code is built for one thread), alone
                    if not self._compiled_warm.is_set():
                        outputs = workers.map(score_block, starts[:1])
                        self._compiled_warm.set()
            outputs += workers.map(score_block, starts[len(outputs) :])
        probabilities, expected_times, seconds = (torch.cat(parts) if len(parts) > 1 else parts[0] for parts in zip(*outputs))
        return A2GenActionPrediction(
            action_probabilities=probabilities, expected_times=expected_times, expected_seconds=seconds
        )

    def generation_context(
        self,
        user_state: UserState,
        item_ids: torch.LongTensor,
        item_side_ids: torch.LongTensor | None = None,
        item_keys: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """The generation context `(C, context_size)` of C candidates, as ``A2GenModel`` would give it."""
        self._check_candidates(user_state, item_ids, item_side_ids, item_keys)
        item_ids = item_ids.to(self.device)
        item_side_ids = item_side_ids.to(self.device) if item_side_ids is not None else None
        item_keys = item_keys.to(self.device) if item_keys is not None else None
        with torch.no_grad():
            extra = self.extra_features(user_state, item_ids, item_side_ids, item_keys)
            return self.program.generation_context(*user_state.as_tuple(), item_ids, item_side_ids, extra)

    @torch.no_grad()
    def generate(
        self,
        user_state: UserState,
        item_ids: torch.LongTensor,
        item_side_ids: torch.LongTensor | None = None,
        generation_config: GenerationConfig | None = None,
        item_keys: torch.LongTensor | None = None,
        **kwargs,
    ) -> A2GenGenerateOutput | A2GenBeamGenerateOutput | torch.LongTensor:
        """
        Timed action sequences for C candidates of one user, as ``model.generate`` gives them on the batch that
        repeats the user's history C times: the same options (``max_new_tokens``, ``do_sample``, ``num_beams``,
        ``num_return_sequences``, ``use_cache``, ...; the model's generation config by default, which is greedy) and
        outputs, except that ``return_dict_in_generate`` defaults to True here, with a ``generation_config`` too
        (set on a copy of one that leaves it unset, so transformers does not warn of a keyword beside a config).
        ``return_dict_in_generate=False``, as a keyword or set in the ``generation_config``, gives the bare
        sequences. Returns sequences `(C * num_return_sequences, 1 + steps)` and their normalised times.
        """
        context = self.generation_context(user_state, item_ids, item_side_ids, item_keys)
        if context.shape[0] == 0:
            raise ValueError("generate() needs at least one candidate in item_ids.")
        generation_config, kwargs = with_dict_output(generation_config, kwargs)
        return self.model.generate_from_context(context, generation_config, **kwargs)

    # ------------------------------------------------------------------------------------------------------------
    # Export

    def export(
        self, user_state: UserState, item_ids: torch.LongTensor, item_side_ids: torch.LongTensor | None = None
    ) -> torch.export.ExportedProgram:
        """
        ``torch.export`` of the candidate side (:class:`A2GenRankingProgram`), with the number of candidates and of
        history items dynamic. Call the result as
        ``program.module()(*user_state.as_tuple(), item_ids, item_side_ids)`` -> (probabilities, expected times,
        expected seconds), under ``torch.inference_mode()`` or ``torch.no_grad()``: the program holds the model's
        weights, so a call outside them records a backward graph (several times slower, and ``.numpy()`` of its
        outputs fails). The example inputs need at least 2 history items and 2 candidates, and so do the program's
        calls: ``torch.export`` specialises sizes 0 and 1, so a request with one candidate or an empty history fails
        inside the program (``Runtime assertion failed for expression u0 >= 2``, or a reduction over an empty
        dimension), and a history of one item lies outside the exported range (it ran with torch 2.13, unpromised);
        score those with :meth:`score_candidates`, which takes any size.
        """
        if isinstance(user_state, UserState) and user_state.history is not None:
            raise ValueError(
                "export() covers models without the count, propensity or popularity features; score such a model "
                "with score_candidates (eagerly or with compile=True)."
            )
        self._check_candidates(user_state, item_ids, item_side_ids)
        if user_state.num_history_items < 2 or item_ids.shape[0] < 2:
            raise ValueError("export() traces with an example of at least 2 history items and 2 candidates.")
        candidates, history = torch.export.Dim("candidates"), torch.export.Dim("history_items")
        heads_dims = {1: history}
        dynamic_shapes = (
            None,
            heads_dims,
            heads_dims,
            heads_dims,
            {1: history, 2: history},
            {0: candidates},
            {0: candidates} if item_side_ids is not None else None,
        )
        with torch.no_grad():
            return torch.export.export(
                self.program,
                (*user_state.as_tuple(), item_ids, item_side_ids),
                dynamic_shapes=dynamic_shapes,
                # A shape fact torch 2.11 cannot prove for every candidate count (min(5 C, 20 C) == 5 C) becomes a
                # check at run time instead of a refused export (torch 2.13 proves it).
                prefer_deferred_runtime_asserts_over_guards=True,
            )


def with_dict_output(
    generation_config: GenerationConfig | None, kwargs: dict[str, Any]
) -> tuple[GenerationConfig | None, dict[str, Any]]:
    """``generation_config`` and generate() keywords ``kwargs`` asking for the dict output (with the times) unless
    they set ``return_dict_in_generate`` themselves: on a deep copy of a ``generation_config`` that leaves it unset (a
    keyword beside a config makes transformers warn of a deprecated mix the caller did not make), else as a keyword.
    A value the call gives, in the keywords or the config, is kept."""
    if "return_dict_in_generate" in kwargs:
        return generation_config, kwargs
    if generation_config is None:
        return None, {**kwargs, "return_dict_in_generate": True}
    if generation_config.return_dict_in_generate is None:
        generation_config = copy.deepcopy(generation_config)
        generation_config.return_dict_in_generate = True
    return generation_config, kwargs


def is_action_generation_model(model: Any) -> bool:
    """An :class:`A2GenForActionGeneration`, or the copy of it that ``trust_remote_code=True`` loads from a checkpoint."""
    if isinstance(model, A2GenForActionGeneration):
        return True
    return type(model).__name__ == "A2GenForActionGeneration" and getattr(model.config, "model_type", None) == "a2gen"
