"""Timed action-sequence generation for A2Gen through the standard ``generate()`` API.

A generated sequence opens with ``start`` at 0 s; each step picks the next action from the generator's class
scores and records the time the generator predicted at that step (with ``monotonic_times``, the default, never
earlier than the previous action's: :func:`ordered_times`). Everything that does not depend on the times is
transformers' own machinery: the generation config and its defaults (``_prepare_generation_config``), the special
tokens (``_prepare_special_tokens``), the logits processors and stopping criteria (``_get_logits_processor`` /
``_get_stopping_criteria``, so ``bad_words_ids``, ``min_new_tokens``, ``eos_token_id``, ``max_time``, ... act as on a
text model) and the vectorised beam-search steps of ``GenerationMixin``. Only the loops are ours, because the times
must follow the tokens: EAG feeds each (action, time) back (with or without its key/value cache), IAG reads its K
slots from one pass.

Conventions (see ``docs/model.md``, "Conventions"): padding (id 0) and the start action are never generated after
position 0; the end action (``leave``) always ends a sequence, in addition to ``generation_config.eos_token_id``.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch.nn import functional as F
from transformers import GenerationConfig, GenerationMixin
from transformers.cache_utils import DynamicCache
from transformers.generation import (
    GenerateBeamDecoderOnlyOutput,
    GenerateDecoderOnlyOutput,
    InfNanRemoveLogitsProcessor,
    LogitsProcessorList,
    StoppingCriteriaList,
)
from transformers.generation.configuration_utils import GenerationMode

from .attention_kernels import small_softmax
from .configuration_a2gen import end_id_problem

logger = logging.getLogger(__name__)

_LABEL_INPUTS = ("labels", "label_times", "label_time_mask")
_HISTORY_INPUTS = (
    "user_ids",
    "item_ids",
    "history_item_ids",
    "history_action_ids",
    "history_action_times",
    "history_time_mask",
    "history_mask",
    "item_side_ids",
    "history_item_side_ids",
    "user_side_ids",
    "item_keys",
    "history_item_ages",
)
# Inputs in seconds, read as given (the features cast them to float32): not cast to a bfloat16 / float16 model's
# dtype, whose 8 / 11 bit mantissa would round a day's seconds by minutes.
_SECONDS_INPUTS = ("history_item_ages",)
_SUPPORTED_MODES = (
    GenerationMode.GREEDY_SEARCH,
    GenerationMode.SAMPLE,
    GenerationMode.BEAM_SEARCH,
    GenerationMode.BEAM_SAMPLE,
)
# A2Gen's own generation option: each generated action's time is at least the previous action's (see ordered_times).
MONOTONIC_TIMES = "monotonic_times"

# GenerationConfig fields that need machinery A2Gen's timed decode does not have: any value but the default is
# refused (never accepted and ignored). Values listed in _HARMLESS_VALUES mean "off" and pass.
_UNSUPPORTED_OPTIONS = {
    "num_beam_groups": "group (diverse) beam search is not implemented for timed sequences",
    "diversity_penalty": "it only acts in group beam search (num_beam_groups > 1), which A2Gen does not implement",
    "constraints": "constrained beam search is not implemented for timed sequences",
    "force_words_ids": "constrained beam search is not implemented for timed sequences",
    "penalty_alpha": "contrastive search needs the hidden states of a text decoder",
    "dola_layers": "DoLa needs the layers of a text decoder",
    "guidance_scale": "classifier-free guidance needs an unconditional prompt, which a history does not have",
    "encoder_repetition_penalty": "the encoder reads histories, not token ids",
    "encoder_no_repeat_ngram_size": "the encoder reads histories, not token ids",
    "prompt_lookup_num_tokens": "assisted decoding is not implemented for timed sequences",
    "assistant_early_exit": "assisted decoding is not implemented for timed sequences",
    "is_assistant": "assisted decoding is not implemented for timed sequences",
    "use_mtp": "multi-token prediction is not implemented",
    "speculation_type": "speculative decoding is not implemented",
    "token_healing": "it rewrites text prompts",
    "stop_strings": "actions are not text; pass eos_token_id=[action ids] to stop at given actions",
    "forced_bos_token_id": "every sequence already opens with the start action, which is never generated again",
    "decoder_start_token_id": "A2Gen is not an encoder-decoder text model; sequences open with config.start_action",
    "low_memory": "the timed decode has no sequential low-memory mode",
    "cache_implementation": "EAG decodes with its own dynamic key/value cache only (use_cache=True/False)",
    "max_cache_len": "EAG's cache is dynamic, not static",
    "compile_config": "the timed decode loop is not compiled",
    "prefill_chunk_size": "there is no prompt to prefill",
    "watermarking_config": (
        "a text watermark biases a pseudo-random share of the vocabulary at every step, to be detected in text "
        "later; on a handful of action ids it only distorts the timelines and detects nothing (and "
        "seeding_scheme='selfhash' reads more ids than there are actions); leave watermarking_config unset"
    ),
}
_HARMLESS_VALUES = {
    ("num_beam_groups", 1), ("diversity_penalty", 0.0), ("cache_implementation", "dynamic"), ("guidance_scale", 1.0),
}


def _explicit_lengths(kwargs: dict) -> frozenset[str]:
    """Which of ``max_length`` / ``min_length`` a generate() call passed itself (not None), as transformers tells a
    length the call set from one its generation config holds."""
    return frozenset(name for name in ("max_length", "min_length") if kwargs.get(name) is not None)


def in_model_dtype(value: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A floating input (times) in the model's dtype: a bfloat16 / float16 model reads the collator's float32 times,
    as ids reach any model through its embedding tables. Other inputs are returned as they are."""
    return value.to(dtype) if torch.is_tensor(value) and value.is_floating_point() else value


def _moderate_length_penalty(penalty, max_actions: int) -> bool:
    """Whether beam search can divide by ``length ** penalty`` (a Python float) for every length it reaches (at most
    the start and ``max_actions`` actions, plus one)."""
    try:
        value = float(penalty)
    except (OverflowError, TypeError, ValueError):
        return False
    return math.isfinite(value) and abs(value) * math.log(max_actions + 2) < 700


def _listed_ids(value) -> list:
    """A generation option that holds one id or several (``eos_token_id``, ``suppress_tokens``, ...) as a list."""
    if value is None:
        return []
    if isinstance(value, numbers.Integral) or (torch.is_tensor(value) and value.dim() == 0):
        return [value]
    return list(value.tolist() if torch.is_tensor(value) else value)


def _refuse_blocked_rows(scores: torch.Tensor, live: torch.Tensor, position: int) -> None:
    """``ValueError`` when a row that must go on (``live``, `(R,)`) has no action left: every score `(R, V)` is -inf
    (or NaN, said apart) after the logits processors, so it could only be padded (greedy), fail to sample, or end empty."""
    blocked = live & ~torch.isfinite(scores).any(-1)
    if blocked.any():
        row = int(blocked.nonzero()[0])
        if torch.isnan(scores[row]).any():
            raise ValueError(
                f"No action can follow at position {position} of row {row}: its scores are NaN, from the model's logits "
                "(weights or inputs that hold NaN or inf, or a float16 overflow: run in float32 or bfloat16) or from a "
                "logits processor of your own."
            )
        raise ValueError(
            f"No action can follow at position {position} of row {row}: after the logits processors every action "
            "scores -inf (suppress_tokens, begin_suppress_tokens, bad_words_ids, no_repeat_ngram_size, "
            "min_new_tokens / min_length (which hold back every end id, the end action and eos_token_id, until "
            "reached) or a processor of your own block them all, padding and the start action never being "
            "generated). Leave at least one action allowed at every step: block fewer actions, or lower "
            "min_new_tokens / min_length."
        )


def _refuse_blocked_examples(
    log_probs: torch.Tensor, beam_scores: torch.Tensor, finished: torch.Tensor, returned: int, position: int
) -> None:
    """
    Beam search's :func:`_refuse_blocked_rows`: ``ValueError`` when an example that still lacks ``returned`` finished
    sequences (``finished`` `(B, num_beams)`) has no live beam (``beam_scores`` `(B, num_beams)` above the -1e9 that
    marks placeholder and finished beams) with an action left in ``log_probs`` `(B * num_beams, V)`: it could only
    return unfinished, -1e9-scored sequences. One blocked beam among others is beam search's business: it drops out.
    """
    batch_size, num_beams = beam_scores.shape
    live = (beam_scores > -1e9).reshape(-1, 1)
    open_scores = log_probs.masked_fill(~live, -math.inf).reshape(batch_size, -1)
    _refuse_blocked_rows(open_scores, finished.sum(-1) < returned, position)


def _refuse_placeholder_sequences(sequences: torch.LongTensor, prompt_len: int) -> None:
    """
    ``ValueError`` when beam search would return, for some example, fewer distinct finished sequences than asked:
    ``sequences`` `(B, returned, L)` holds, where an example has fewer timelines to finish than ``returned`` (e.g.
    ``max_actions=1`` and six beams over five actions, or two actions only), transformers' placeholders, scored -1e9
    (or that divided by a length penalty): a sequence with no generated action (``[start]``), or a copy of another
    returned sequence. Beam search never returns either otherwise: every real sequence generates at least one action
    (padding and the start are never generated) and its beams' paths are distinct.
    """
    returned = sequences.shape[1]
    if sequences.shape[2] > prompt_len:
        empty = sequences[:, :, prompt_len] == 0  # (B, returned)
    else:
        empty = torch.ones(sequences.shape[:2], dtype=torch.bool, device=sequences.device)
    # (B, returned, returned): row j repeats an earlier row i < j of its example (one pass, no loop per example)
    same = (sequences[:, :, None, :] == sequences[:, None, :, :]).all(-1).tril(diagonal=-1)
    placeholder = empty | same.any(-1)
    if placeholder.any():
        example = int(placeholder.any(-1).nonzero()[0])
        distinct = int((~placeholder[example]).sum())
        raise ValueError(
            f"Beam search finds {distinct} distinct timeline(s) for example {example}, but num_return_sequences="
            f"{returned}: there are no more to finish within the actions allowed (max_new_tokens, the blocked "
            "or suppressed actions, no_repeat_ngram_size, ...), and the rest would be placeholders ([start] alone "
            f"or copies, scored -1e9). Ask for at most {distinct} sequence(s), or allow more actions."
        )


def times_of_actions(times: torch.Tensor, actions: torch.LongTensor) -> torch.Tensor:
    """
    The time of each position's action: ``times`` `(...)` (the paper's heads: one time per position, whatever its
    action) or `(..., V)` (``config.time_per_action``: one per action) and ``actions`` `(...)` -> `(...)`. Padding
    and ignored labels (ids below 0) read the time of padding.
    """
    if times.dim() == actions.dim():
        return times
    return times.gather(-1, actions.clamp_min(0).unsqueeze(-1)).squeeze(-1)


def never_generated(config) -> tuple[int, int]:
    """The action ids ``generate()`` never draws: padding (0) and ``start`` (a sequence opens with one). The one rule
    of :meth:`A2GenGenerationMixin._allowed_scores` and of the ``"sampler"`` readout of ``predict_actions``."""
    return 0, config.start_action_id


def generated_actions(config) -> list[int]:
    """The action ids ``generate()`` may draw: every id but :func:`never_generated`'s."""
    return [action_id for action_id in range(config.vocab_size) if action_id not in never_generated(config)]


def ordered_times(times: torch.Tensor, previous: torch.Tensor, monotonic: bool) -> torch.Tensor:
    """
    The time `(R,)` to record for each row's next action, given the time its generator predicted (``times`` `(R,)`)
    and the time of the row's previous action (``previous`` `(R,)`): with ``monotonic`` the later of the two, so a
    generated timeline never goes back in time; otherwise the prediction as it is.

    The generator predicts each step's time on its own (the paper's time head; its time-order loss only discourages
    a step earlier than the one before), so a raw timeline can say the user left before commenting. Normalised times
    order as seconds do, so the clamp in normalised time is the clamp in seconds.
    """
    if not monotonic:
        return times
    return torch.maximum(times, previous.to(times.dtype))


@dataclass
class A2GenGenerateOutput(GenerateDecoderOnlyOutput):
    """
    :class:`~transformers.generation.GenerateDecoderOnlyOutput` plus ``times``.

    Args:
        times (`torch.FloatTensor` of shape `(batch_size * num_return_sequences, sequence_length)`): the normalised
            time of every action in ``sequences`` (``start`` at the normalised 0 s, padding 0.0), in float32, in
            time order unless ``monotonic_times=False`` asked for the generator's raw times; the tokenizer's ``decode_timeline(sequences[i], times[i])`` turns a row into ``[(action, seconds), ...]``.
        attentions / hidden_states: with ``output_attentions`` / ``output_hidden_states``, one tuple per generated
            action holding what ``forward`` returns at that step: the encoder's tensors (see
            :class:`~a2gen_hf.A2GenModelOutput`; absent from ``generate_from_context``) followed by CAM_gen's
            probabilities `(rows, heads, 1, keys)` (EAG with the cache; `(rows, heads, step + 1, step + 1)` without;
            IAG: the slot's row `(rows, heads, 1, K)`) / outputs `(rows, 1 or step + 1, hidden_size)`.
    """

    times: torch.FloatTensor | None = None


@dataclass
class A2GenBeamGenerateOutput(GenerateBeamDecoderOnlyOutput):
    """:class:`~transformers.generation.GenerateBeamDecoderOnlyOutput` plus ``times`` (see A2GenGenerateOutput)."""

    times: torch.FloatTensor | None = None


@dataclass
class _Step:
    """One decoding step for every row: logits `(R, V)`, time `(R,)` (each action's, `(R, V)`, with ``time_per_action``),
    CAM_gen outputs and probabilities."""

    logits: torch.Tensor
    times: torch.Tensor
    states: torch.Tensor
    probabilities: torch.Tensor


# The step given the tokens and times fed so far `(R, L)`.
StepFunction = Callable[[torch.LongTensor, torch.Tensor], _Step]


class A2GenGenerationMixin(GenerationMixin):
    """Adds ``generate`` / ``generate_from_context`` (timed sequences) and the slots behind ``predict_actions``."""

    # ------------------------------------------------------------------------------------------------------------
    # Inputs

    def _encode_for_generation(
        self, model_kwargs: dict, output_attentions: bool = False, output_hidden_states: bool = False,
        method: str = "generate",
    ):
        """The encoder's output (its ``generation_context`` `(B, C)`) for the history inputs in ``model_kwargs``."""
        model_kwargs = dict(model_kwargs)
        for name in (*_LABEL_INPUTS, "use_cache", "output_attentions", "output_hidden_states"):
            model_kwargs.pop(name, None)
        unknown = set(model_kwargs) - set(_HISTORY_INPUTS)
        if unknown:
            options = " plus generation options (max_new_tokens, do_sample, num_beams, ...)" if method == "generate" else ""
            raise ValueError(
                f"{method}() got unknown arguments {sorted(unknown)}; it takes the history inputs "
                f"{list(_HISTORY_INPUTS)}{options}."
            )
        missing = [name for name in _HISTORY_INPUTS[:5] if model_kwargs.get(name) is None]
        if missing:  # the named error forward gives, not Python's about positional arguments
            raise ValueError(f"Missing inputs {missing}: pass them to {method}() (the collator builds them).")
        # Float inputs (times) follow the model's dtype, as token ids would through an embedding table; seconds
        # (history_item_ages) reach the model as given, as its forward reads them.
        model_kwargs = {
            name: value if name in _SECONDS_INPUTS else in_model_dtype(value, self.dtype)
            for name, value in model_kwargs.items()
        }
        return self.a2gen(
            **model_kwargs,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )

    # ------------------------------------------------------------------------------------------------------------
    # Generation config

    def _new_token_budget(self, generation_config: GenerationConfig) -> int:
        """Actions to generate after ``start``: ``max_new_tokens``, else ``max_length - 1``, within config.max_actions."""
        for name in ("max_new_tokens", "max_length", "min_new_tokens", "min_length"):
            value = getattr(generation_config, name, None)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
                raise ValueError(f"{name}={value!r} must be a whole number of actions (an int) or None.")
        requested = generation_config.max_new_tokens
        if requested is None:
            requested = (generation_config.max_length or self.config.max_actions + 1) - 1
        if not 1 <= requested <= self.config.max_actions:
            raise ValueError(
                f"A2Gen generates 1 to config.max_actions={self.config.max_actions} actions after start, "
                f"got max_new_tokens={requested} (or max_length={generation_config.max_length}); "
                "pass max_new_tokens within that range."
            )
        return requested

    def _check_generation_config(self, generation_config: GenerationConfig) -> None:
        """Refuse, with the reason, every option the timed decode cannot honour."""
        defaults = GenerationConfig._get_default_generation_params()
        for name, reason in _UNSUPPORTED_OPTIONS.items():
            value = getattr(generation_config, name, None)
            harmless = any(name == option and value == off for option, off in _HARMLESS_VALUES)
            if value is None or value is False or value == defaults.get(name) or harmless:
                continue
            raise ValueError(f"A2Gen's generate() does not support {name}={value!r}: {reason}.")
        num_beams = generation_config.num_beams
        if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams < 1:
            raise ValueError(f"num_beams={num_beams!r} must be a positive integer (1 = no beam search).")
        returned = generation_config.num_return_sequences
        if isinstance(returned, bool) or not isinstance(returned, int) or returned < 1:
            raise ValueError(f"num_return_sequences={returned!r} must be a positive integer.")
        penalty = generation_config.length_penalty
        if num_beams > 1 and penalty is not None and not _moderate_length_penalty(penalty, self.config.max_actions):
            raise ValueError(
                f"length_penalty={penalty!r} overflows the beams' length ** length_penalty; give a finite value of "
                "moderate size (1.0, the default, averages the log-probabilities over the length; 0 sums them)."
            )
        mode = generation_config.get_generation_mode()
        if mode not in _SUPPORTED_MODES:
            raise ValueError(
                f"A2Gen's generate() supports greedy search, sampling and beam search (with or without sampling), "
                f"not {mode.value}."
            )
        vocab = self.config.vocab_size
        eos = generation_config.eos_token_id
        for token in _listed_ids(eos):
            if end_id_problem(token, vocab, self.config.start_action_id):  # the config's rule
                raise ValueError(
                    f"eos_token_id={eos!r}: every end id must be an action id (an integer, not a bool) in [1, {vocab}) "
                    f"other than the start action {self.config.start_action!r} "
                    f"({[self.config.id_to_action[action] for action in generated_actions(self.config)]})."
                )
        for name in ("suppress_tokens", "begin_suppress_tokens"):
            # transformers ignores ids outside the vocabulary here: a typo would suppress nothing, without a word.
            value = getattr(generation_config, name, None)
            wrong = [
                token for token in _listed_ids(value)
                if isinstance(token, bool) or not isinstance(token, numbers.Integral) or not 0 <= token < vocab
            ]
            if wrong:
                raise ValueError(
                    f"{name}={value!r} holds {wrong}, which are not action ids: give ids (ints, not bools) in "
                    f"[0, {vocab}) ({self.config.id_to_action}), e.g. {name}=[{self.config.end_action_id}] for "
                    f"'{self.config.end_action}'."
                )
        forced = generation_config.forced_eos_token_id
        allowed = generated_actions(self.config)
        names = [self.config.id_to_action[action_id] for action_id in allowed]
        for action_id in _listed_ids(forced):
            if isinstance(action_id, bool) or not isinstance(action_id, numbers.Integral) or action_id not in allowed:
                raise ValueError(
                    f"forced_eos_token_id={forced!r}: the forced last action must be an action id other than start "
                    f"('{self.config.start_action}', which only opens a timeline) and '<pad>' (0): one of {allowed} "
                    f"({names})."
                )
        bos = generation_config.bos_token_id
        if bos is not None and bos != self.config.start_action_id:
            raise ValueError(
                f"bos_token_id={bos!r}: A2Gen sequences always open with config.start_action "
                f"{self.config.start_action!r} (id {self.config.start_action_id}); leave bos_token_id unset."
            )
        pad = generation_config.pad_token_id
        if pad not in (None, 0) or isinstance(pad, bool):
            named = f" (the action {self.config.id_to_action[pad]!r})" if isinstance(pad, int) and 0 < pad < vocab else ""
            raise ValueError(
                f"pad_token_id={pad!r}{named}: finished sequences are filled with the padding id 0 ('<pad>'), which "
                "decoding skips; any other id is an action and would read as more actions. Leave pad_token_id unset."
            )
        monotonic = getattr(generation_config, MONOTONIC_TIMES, True)
        if not isinstance(monotonic, bool):
            raise ValueError(
                f"{MONOTONIC_TIMES}={monotonic!r} must be True (the default: each generated action's time is at least "
                "the previous action's) or False (the generator's raw times, which can go back in time)."
            )

    @staticmethod
    def _take_monotonic_times(generation_config: GenerationConfig, model_kwargs: dict) -> None:
        """``monotonic_times=...`` given to generate() lands in ``model_kwargs`` when the model's generation config
        predates the option (a checkpoint saved without it): it is a generation option, moved onto the config."""
        if MONOTONIC_TIMES in model_kwargs:
            setattr(generation_config, MONOTONIC_TIMES, model_kwargs.pop(MONOTONIC_TIMES))

    def _prepare_timed_generation(
        self,
        context: torch.Tensor,
        generation_config: GenerationConfig,
        logits_processor: LogitsProcessorList | None,
        stopping_criteria: StoppingCriteriaList | None,
        prefix_allowed_tokens_fn: Callable | None,
        explicit_lengths: frozenset[str] = frozenset(),
    ) -> tuple[LogitsProcessorList, StoppingCriteriaList]:
        """Length limits, special tokens, processors and stopping criteria, all through transformers' own helpers.
        ``explicit_lengths``: which of ``max_length`` / ``min_length`` the call itself passed (a ``max_new_tokens`` /
        ``min_new_tokens`` beside them takes precedence, with transformers' warning)."""
        self._check_generation_config(generation_config)
        budget = self._new_token_budget(generation_config)
        if generation_config.max_new_tokens is not None and "max_length" in explicit_lengths:
            logger.warning(
                f"Both `max_new_tokens` (={generation_config.max_new_tokens}) and `max_length`(="
                f"{generation_config.max_length}) seem to have been set. `max_new_tokens` will take precedence."
            )  # transformers' words (GenerationMixin._prepare_generated_length)
        generation_config.max_new_tokens = budget
        generation_config.max_length = 1 + budget  # the prompt is the start action
        min_new = generation_config.min_new_tokens
        if min_new is not None:
            # As transformers: min_new_tokens wins over min_length (both would otherwise act, the longer winning).
            if "min_length" in explicit_lengths:
                logger.warning(
                    f"Both `min_new_tokens` (={min_new}) and `min_length`(={generation_config.min_length}) seem to "
                    "have been set. `min_new_tokens` will take precedence."
                )
            generation_config.min_length = 1 + min_new
        if (min_new is not None and min_new > budget) or (generation_config.min_length or 0) > 1 + budget:
            raise ValueError(
                f"min_new_tokens={min_new} / min_length={generation_config.min_length} cannot be met with at most "
                f"{budget} new actions (max_length={1 + budget}); lower them or raise max_new_tokens."
            )
        self._prepare_special_tokens(generation_config, device=context.device)
        # The end action always ends a timeline (the user left); eos_token_id may add others. Each id once: beam
        # search keeps (1 + end ids) * num_beams continuations, which must fit in the vocabulary.
        eos = generation_config._eos_token_tensor
        end_ids = list(dict.fromkeys([self.config.end_action_id, *([] if eos is None else eos.tolist())]))
        generation_config._eos_token_tensor = torch.tensor(end_ids, device=context.device)
        actions = generated_actions(self.config)
        if (generation_config.min_length or 0) > 1 and set(actions) <= set(end_ids):
            raise ValueError(
                f"min_new_tokens={min_new} / min_length={generation_config.min_length} forbid ending before "
                f"{generation_config.min_length - 1} action(s), but the end ids (the end action "
                f"'{self.config.end_action}' plus eos_token_id={generation_config.eos_token_id!r}) are every action "
                f"that can be generated ({[self.config.id_to_action[a] for a in actions]}), so no action can follow "
                "the start. Leave min_new_tokens / min_length unset, or leave at least one action out of eos_token_id."
            )
        if generation_config._pad_token_tensor is None or generation_config.pad_token_id is None:
            generation_config._pad_token_tensor = torch.tensor(0, device=context.device)
        processors = self._get_logits_processor(
            generation_config=generation_config,
            input_ids_seq_length=1,
            encoder_input_ids=None,
            prefix_allowed_tokens_fn=prefix_allowed_tokens_fn,
            logits_processor=logits_processor if logits_processor is not None else LogitsProcessorList(),
            device=context.device,
            model_kwargs={},
        )
        stopping = self._get_stopping_criteria(
            generation_config, stopping_criteria if stopping_criteria is not None else StoppingCriteriaList()
        )
        return processors, stopping

    # ------------------------------------------------------------------------------------------------------------
    # Public entry points

    @torch.no_grad()
    def generate(
        self,
        inputs: torch.Tensor | None = None,
        generation_config: GenerationConfig | None = None,
        logits_processor: LogitsProcessorList | None = None,
        stopping_criteria: StoppingCriteriaList | None = None,
        prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], list[int]] | None = None,
        synced_gpus: bool | None = None,
        assistant_model=None,
        streamer=None,
        negative_prompt_ids: torch.Tensor | None = None,
        negative_prompt_attention_mask: torch.Tensor | None = None,
        custom_generate=None,
        **kwargs,
    ) -> A2GenGenerateOutput | A2GenBeamGenerateOutput | torch.LongTensor:
        """
        Generate timed action sequences for the (user, target item) examples given as keyword inputs (the forward's
        history inputs, e.g. a collator batch; labels are ignored; ``history_item_ages`` `(B, N)` seconds for a model
        with ``history_time_features``, read as given, never cast to a low-precision model's dtype).

        Decoding strategies: greedy search, multinomial sampling (``do_sample=True``), beam search (``num_beams > 1``)
        and beam sampling (both). Honoured as transformers' ``generate`` honours them: ``max_new_tokens`` /
        ``max_length`` (at most config.max_actions actions after ``start``), ``min_new_tokens`` / ``min_length``,
        ``eos_token_id`` (one id or a list; the end action always ends a sequence too), ``pad_token_id`` (fills
        finished rows), ``num_return_sequences``, ``use_cache`` (EAG), every logits processor that reads only the
        generated ids (``temperature``, ``top_k``, ``top_p``, ``min_p``, ``typical_p``, ``epsilon_cutoff``,
        ``eta_cutoff``, ``repetition_penalty``, ``no_repeat_ngram_size``, ``bad_words_ids``, ``sequence_bias``,
        ``suppress_tokens``, ``begin_suppress_tokens``, ``forced_eos_token_id``, ``exponential_decay_length_penalty``,
        ``renormalize_logits``, ``remove_invalid_values``, ``prefix_allowed_tokens_fn``, custom ``logits_processor``),
        ``stopping_criteria`` and ``max_time``, ``length_penalty`` / ``early_stopping`` (beams), ``streamer`` (not with
        beams), ``output_scores`` / ``output_logits`` / ``output_attentions`` / ``output_hidden_states``. A2Gen's own
        option ``monotonic_times`` (default True) records each action's time as at least the previous action's, so a
        timeline never goes back in time (EAG is fed these times); ``monotonic_times=False`` gives the generator's raw
        per-step times (what ``backward_time_rate`` measures). Any other
        option that would change the result (group beam search, constraints, assistants, stop strings, static
        caches, watermarking, ids outside the vocabulary, ...) raises ``ValueError``; it is never silently ignored.
        So does transformers' continuous batching (``generate_batch``).

        Returns:
            `torch.LongTensor` of shape `(batch_size * num_return_sequences, 1 + generated)` (``start`` first,
            ``pad_token_id`` after the end), or with ``return_dict_in_generate=True`` an :class:`A2GenGenerateOutput`
            / :class:`A2GenBeamGenerateOutput` whose ``times`` give the normalised time of every action.
        """
        if inputs is not None:
            raise ValueError(
                "A2Gen's generate() takes its inputs as keyword arguments (user_ids=..., history_item_ids=..., ...), "
                "e.g. model.generate(**batch); a positional tensor is ambiguous."
            )
        refused = {
            "synced_gpus": synced_gpus or None,
            "assistant_model": assistant_model,
            "negative_prompt_ids": negative_prompt_ids,
            "negative_prompt_attention_mask": negative_prompt_attention_mask,
            "custom_generate": custom_generate,
        }
        given = [name for name, value in refused.items() if value is not None]
        if given:
            raise ValueError(
                f"A2Gen's generate() does not support {given}: assisted, synced, negative-prompt and custom decoding "
                "need a text decoder's prompt; use the history inputs and the generation options instead."
            )
        kwargs.pop("tokenizer", None)  # as transformers' generate(): only its stop_strings read it, refused here
        explicit_lengths = _explicit_lengths(kwargs)
        generation_config, model_kwargs = self._prepare_generation_config(generation_config, **kwargs)
        self._take_monotonic_times(generation_config, model_kwargs)
        self._check_generation_config(generation_config)
        encoded = self._encode_for_generation(
            model_kwargs, bool(generation_config.output_attentions), bool(generation_config.output_hidden_states)
        )
        return self._generate_timed(
            encoded.generation_context,
            generation_config,
            logits_processor,
            stopping_criteria,
            prefix_allowed_tokens_fn,
            streamer,
            encoder_outputs=encoded,
            explicit_lengths=explicit_lengths,
        )

    @torch.no_grad()
    def generate_from_context(
        self,
        context: torch.Tensor,
        generation_config: GenerationConfig | None = None,
        logits_processor: LogitsProcessorList | None = None,
        stopping_criteria: StoppingCriteriaList | None = None,
        prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], list[int]] | None = None,
        streamer=None,
        **kwargs,
    ) -> A2GenGenerateOutput | A2GenBeamGenerateOutput | torch.LongTensor:
        """
        :meth:`generate` from ready generation contexts `(B, context_size)` ([user ; Vec_hist ; item (; extra
        features)], the encoder's ``generation_context``), e.g. those :class:`~a2gen_hf.serving.A2GenRanker` computes
        once per user for many candidates. Takes the same generation options and returns the same outputs;
        ``attentions`` / ``hidden_states`` then hold only the generator's tensors.
        """
        kwargs.pop("tokenizer", None)  # as generate()
        explicit_lengths = _explicit_lengths(kwargs)
        generation_config, model_kwargs = self._prepare_generation_config(generation_config, **kwargs)
        self._take_monotonic_times(generation_config, model_kwargs)
        for name in ("output_attentions", "output_hidden_states", "use_cache"):
            model_kwargs.pop(name, None)
        if model_kwargs:
            raise ValueError(
                f"generate_from_context() got unknown arguments {sorted(model_kwargs)}; it takes the context and "
                "generation options (max_new_tokens, do_sample, num_beams, ...)."
            )
        context = self._checked_context(context, "generate_from_context")
        if not torch.isfinite(context).all():  # here, not in _checked_context: ranking compiles and exports that
            row = int((~torch.isfinite(context)).any(-1).nonzero()[0])
            raise ValueError(
                f"generate_from_context(): context row {row} holds NaN or inf; a generation context of finite inputs "
                "and weights is finite (a float16 overflow of the encoder can give inf: compute it in float32 or "
                "bfloat16)."
            )
        return self._generate_timed(
            context, generation_config, logits_processor, stopping_criteria, prefix_allowed_tokens_fn, streamer,
            explicit_lengths=explicit_lengths,
        )

    # transformers' continuous batching (ContinuousMixin) schedules text prompts of input_ids through a paged cache and
    # calls forward(input_ids=...): it cannot run A2Gen, and failed inside its worker, reported only as a request
    # status. Refused when called instead.

    def _refuse_continuous_batching(self, method: str):
        raise ValueError(
            f"{method}() (transformers' continuous batching) is not supported by A2Gen: it schedules text prompts "
            "(input_ids) through a paged key/value cache, and A2Gen generates from history inputs, with a time for "
            "every action. Generate timed sequences with model.generate(**batch) (a collator batch), or with "
            "A2GenRanker.generate for many candidates of one user (the history encoded once)."
        )

    def generate_batch(self, *args, **kwargs):
        """Refused: see :meth:`_refuse_continuous_batching`; use :meth:`generate`."""
        self._refuse_continuous_batching("generate_batch")

    def init_continuous_batching(self, *args, **kwargs):
        """Refused: see :meth:`_refuse_continuous_batching`; use :meth:`generate`."""
        self._refuse_continuous_batching("init_continuous_batching")

    def continuous_batching_context_manager(self, *args, **kwargs):
        """Refused: see :meth:`_refuse_continuous_batching`; use :meth:`generate`."""
        self._refuse_continuous_batching("continuous_batching_context_manager")

    def _checked_context(self, context: torch.Tensor, method: str) -> torch.Tensor:
        """``context`` `(B, context_size)` as the generator reads it: a float tensor of this model's context size (a
        ``ValueError`` naming it otherwise), cast to the model's dtype unless autocast runs (as forward casts times)."""
        size = self.a2gen.context_size
        if not torch.is_tensor(context) or context.dim() != 2 or context.shape[1] != size or not context.is_floating_point():
            got = f"shape {tuple(context.shape)}, {context.dtype}" if torch.is_tensor(context) else type(context).__name__
            raise ValueError(
                f"{method}(): context must be a float tensor (batch, {size}), this model's generation context (the "
                f"encoder's `generation_context`, as A2GenRanker computes it); got {got}."
            )
        if context.dtype != self.dtype and not torch.is_autocast_enabled(context.device.type):
            context = context.to(self.dtype)
        return context

    def _generate_timed(
        self,
        context,
        generation_config,
        logits_processor,
        stopping_criteria,
        prefix_allowed_tokens_fn,
        streamer,
        encoder_outputs=None,
        explicit_lengths: frozenset[str] = frozenset(),
    ):
        processors, stopping = self._prepare_timed_generation(
            context, generation_config, logits_processor, stopping_criteria, prefix_allowed_tokens_fn, explicit_lengths
        )
        beams = generation_config.num_beams > 1
        if beams and streamer is not None:
            raise ValueError("streamer cannot be used with beam search (as in transformers); set num_beams=1.")
        expand = max(generation_config.num_beams, generation_config.num_return_sequences)
        context = context.repeat_interleave(expand, dim=0)
        record = generation_config.return_dict_in_generate and (
            generation_config.output_attentions or generation_config.output_hidden_states
        )
        encoder_parts = self._expanded_encoder_parts(encoder_outputs, expand) if record else ((), ())
        use_cache = generation_config.use_cache is not False and self.config.generator_type == "eag"
        if beams:
            return self._beam_search_timed(context, generation_config, processors, stopping, encoder_parts, use_cache)
        return self._sample_timed(context, generation_config, processors, stopping, streamer, encoder_parts, use_cache)

    @staticmethod
    def _expanded_encoder_parts(encoder_outputs, expand: int) -> tuple[tuple, tuple]:
        """The encoder's attentions and hidden states, one row (block of rows) per generated sequence."""
        if encoder_outputs is None:
            return (), ()
        batch = encoder_outputs.history_representation.shape[0]

        def expand_rows(tensor: torch.Tensor) -> torch.Tensor:
            # CAM_act's attention has B * N rows (one per history item): repeat each example's block of rows.
            if batch == 0 or expand == 1:
                return tensor
            blocks = tensor.unflatten(0, (batch, tensor.shape[0] // batch))
            return blocks.repeat_interleave(expand, dim=0).flatten(0, 1)

        return tuple(
            tuple(expand_rows(tensor) for tensor in (parts or ()))
            for parts in (encoder_outputs.attentions, encoder_outputs.hidden_states)
        )

    # ------------------------------------------------------------------------------------------------------------
    # Steps

    def _make_step_function(self, context: torch.Tensor, use_cache: bool) -> tuple[StepFunction, DynamicCache | None]:
        if self.config.generator_type == "iag":
            slots = self.generator(context)

            def iag_step(tokens, times):
                slot = tokens.shape[1] - 1
                return _Step(
                    slots["logits"][:, slot],
                    slots["times"][:, slot],
                    slots["states"][:, slot : slot + 1],
                    slots["probabilities"][:, :, slot : slot + 1],
                )

            return iag_step, None

        cache = DynamicCache() if use_cache else None

        def eag_step(tokens, times):
            if cache is not None and cache.get_seq_length() > 0:
                tokens, times = tokens[:, -1:], times[:, -1:]
            generated = self.generator(context, tokens, times, cache=cache)
            return _Step(generated["logits"][:, -1], generated["times"][:, -1], generated["states"],
                         generated["probabilities"])

        return eag_step, cache

    def _allowed_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """
        float32 scores `(R, V)` where padding and the start action cannot be generated: a sequence opens with one
        ``start`` and ends with an end action (or the length limit).
        """
        scores = logits.to(dtype=torch.float32, copy=True)
        scores[:, list(never_generated(self.config))] = -float("inf")
        return scores

    def _processed_scores(
        self,
        processors: LogitsProcessorList,
        input_ids: torch.LongTensor,
        scores: torch.Tensor,
        refuse_blocked: Callable[[torch.Tensor], None],
    ) -> torch.Tensor:
        """
        ``processors(input_ids, scores)``, refusing rows left no action: ``refuse_blocked`` (:func:`_refuse_blocked_rows`
        or :func:`_refuse_blocked_examples` for the rows that must go on) is given the processed scores of the ids
        generate() may draw (:meth:`_allowed_scores`), -inf for every id that any processor blocked. With
        ``remove_invalid_values`` transformers' ``InfNanRemoveLogitsProcessor`` turns each -inf so far (padding, the
        start, blocked actions) into a finite number, so the ids at -inf are also read right before it: a blocked
        row would look open after it, and greedy search would pad mid-sequence, sampling draw the start or padding.
        Those ids (padding and the start always, even where NaN logits made them NaN) end at the smallest float, as
        that processor leaves them, whatever later processors did. Its other work (NaN to 0, +inf to the largest
        float) is honoured. Returns the processed scores.
        """
        blocked = None  # the ids at -inf before an InfNanRemoveLogitsProcessor, padding and the start
        segment = LogitsProcessorList()
        for processor in processors:
            if isinstance(processor, InfNanRemoveLogitsProcessor):
                scores = segment(input_ids, scores)
                blocked = torch.isneginf(scores) if blocked is None else blocked | torch.isneginf(scores)
                blocked[:, list(never_generated(self.config))] = True
                segment = LogitsProcessorList()
            segment.append(processor)
        scores = segment(input_ids, scores)
        allowed = self._allowed_scores(scores)
        if blocked is not None:
            allowed = allowed.masked_fill(blocked, -math.inf)
            scores = scores.masked_fill(blocked, torch.finfo(scores.dtype).min)
        else:  # padding and the start stay out, whatever a processor of the caller did to their scores
            scores = allowed
        refuse_blocked(allowed)
        return scores

    def _start_rows(self, rows: int, context: torch.Tensor) -> tuple[torch.LongTensor, torch.Tensor]:
        """`(rows, 1)` start actions and their time, in the model's dtype (what EAG is fed)."""
        tokens = torch.full((rows, 1), self.config.start_action_id, dtype=torch.long, device=context.device)
        times = torch.full((rows, 1), self.config.start_time, dtype=context.dtype, device=context.device)
        return tokens, times

    # ------------------------------------------------------------------------------------------------------------
    # Greedy search and sampling

    def _sample_timed(self, context, generation_config, processors, stopping, streamer, encoder_parts, use_cache):
        step_function, cache = self._make_step_function(context, use_cache)
        rows = context.shape[0]
        sequences, fed_times = self._start_rows(rows, context)
        fed_tokens = sequences
        times = fed_times.float()
        pad = generation_config._pad_token_tensor
        end_id = self.config.end_action_id
        unfinished = torch.ones(rows, dtype=torch.bool, device=context.device)
        monotonic = getattr(generation_config, MONOTONIC_TIMES, True)
        keep = generation_config.return_dict_in_generate
        scores = () if keep and generation_config.output_scores else None
        raw_logits = () if keep and generation_config.output_logits else None
        attentions = () if keep and generation_config.output_attentions else None
        hidden_states = () if keep and generation_config.output_hidden_states else None
        if streamer is not None:
            streamer.put(sequences.cpu())
        while rows and sequences.shape[1] < generation_config.max_length:
            step = step_function(fed_tokens, fed_times)
            logits = step.logits.to(dtype=torch.float32, copy=True)
            step_scores = self._processed_scores(
                processors, sequences, self._allowed_scores(logits),
                partial(_refuse_blocked_rows, live=unfinished, position=sequences.shape[1]),
            )
            if scores is not None:
                scores += (step_scores,)
            if raw_logits is not None:
                raw_logits += (logits,)
            if attentions is not None:
                attentions += ((*encoder_parts[0], step.probabilities),)
            if hidden_states is not None:
                hidden_states += ((*encoder_parts[1], step.states),)
            if generation_config.do_sample:
                next_tokens = torch.multinomial(F.softmax(step_scores, dim=-1), num_samples=1).squeeze(1)
            else:
                next_tokens = step_scores.argmax(-1)
            next_tokens = torch.where(unfinished, next_tokens, pad)
            sequences = torch.cat([sequences, next_tokens[:, None]], dim=1)
            # EAG is fed real actions only: a finished row repeats the end action, which keeps cached and uncached
            # decoding identical (padding is never a cached key).
            fed_next = torch.where(unfinished, next_tokens, end_id)
            # The chosen action's time, in time order with the previous one unless monotonic_times=False.
            next_times = ordered_times(times_of_actions(step.times, fed_next), fed_times[:, -1], monotonic)
            times = torch.cat([times, torch.where(unfinished, next_times.float(), 0.0)[:, None]], dim=1)
            fed_tokens = torch.cat([fed_tokens, fed_next[:, None]], dim=1)
            fed_times = torch.cat([fed_times, next_times[:, None]], dim=1)
            unfinished = unfinished & ~stopping(sequences, scores)
            if streamer is not None:
                streamer.put(next_tokens.cpu())
            if not unfinished.any():
                break
        if streamer is not None:
            streamer.end()
        if not keep:
            return sequences
        return A2GenGenerateOutput(
            sequences=sequences,
            times=times,
            scores=scores,
            logits=raw_logits,
            attentions=attentions,
            hidden_states=hidden_states,
            cache=cache,
        )

    # ------------------------------------------------------------------------------------------------------------
    # Beam search (transformers' vectorised steps; the times follow the beams through beam_indices)

    def _get_top_k_continuations(
        self,
        accumulated_log_probs: torch.Tensor,
        running_sequences: torch.Tensor,
        running_beam_indices: torch.Tensor,
        cur_len: int,
        decoder_prompt_len: int,
        do_sample: bool,
        beams_to_keep: int,
        num_beams: int,
        batch_size: int,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        transformers' step, except that beam sampling also works with A2Gen's few actions: there, fewer than
        ``beams_to_keep`` continuations can have a non-zero probability (at the first step only beam 0 is live, and
        logits processors may block most actions). So the continuations are drawn without replacement by the
        Gumbel-top-k trick (the same law as ``torch.multinomial`` without replacement): finite scores in proportion
        to their probability, even where it underflows to 0, and blocked ones (-inf) only after every finite one, as
        beam search's ``topk`` takes them; :func:`_refuse_blocked_examples` refuses an example none of whose beams can
        go on.
        """
        if not do_sample:
            return super()._get_top_k_continuations(
                accumulated_log_probs, running_sequences, running_beam_indices, cur_len, decoder_prompt_len,
                do_sample, beams_to_keep, num_beams, batch_size, **kwargs,
            )
        scores = accumulated_log_probs.nan_to_num(nan=-math.inf, posinf=math.inf)
        gumbel = -torch.empty_like(scores).exponential_().log()
        topk_indices = (scores + gumbel).topk(beams_to_keep, dim=-1).indices
        topk_log_probs = torch.gather(accumulated_log_probs, dim=1, index=topk_indices)
        topk_log_probs, order = topk_log_probs.sort(dim=-1, descending=True)
        topk_indices = topk_indices.gather(dim=-1, index=order)
        vocab_size = accumulated_log_probs.shape[-1] // num_beams
        topk_current_beam_indices = topk_indices // vocab_size
        topk_running_beam_indices = self._gather_beams(running_beam_indices, topk_current_beam_indices)
        topk_running_sequences = self._gather_beams(running_sequences, topk_current_beam_indices)
        topk_running_sequences[:, :, cur_len] = topk_indices % vocab_size
        batch_offset = torch.arange(batch_size, device=topk_indices.device).view(-1, 1) * num_beams
        topk_running_beam_indices[:, :, cur_len - decoder_prompt_len] = topk_current_beam_indices + batch_offset
        return topk_log_probs, topk_running_sequences, topk_running_beam_indices

    def _beam_search_timed(self, context, generation_config, processors, stopping, encoder_parts, use_cache):
        num_beams = generation_config.num_beams
        returned = generation_config.num_return_sequences
        max_length = generation_config.max_length
        length_penalty = float(generation_config.length_penalty)  # an int power stays an exact, unbounded int
        early_stopping = generation_config.early_stopping
        pad = int(generation_config._pad_token_tensor)
        rows = context.shape[0]
        batch_size = rows // num_beams
        device = context.device
        cur_len = prompt_len = 1
        keep = generation_config.return_dict_in_generate
        monotonic = getattr(generation_config, MONOTONIC_TIMES, True)
        beams_to_keep = max(2, 1 + generation_config._eos_token_tensor.shape[0]) * num_beams
        top_num_beam_mask = torch.zeros(beams_to_keep, dtype=torch.bool, device=device)
        top_num_beam_mask[:num_beams] = True

        step_function, cache = self._make_step_function(context, use_cache)
        start_tokens, running_times = self._start_rows(rows, context)
        running_sequences = torch.full((batch_size, num_beams, max_length), pad, dtype=torch.long, device=device)
        running_sequences[:, :, :1] = self._unflatten_beam_dim(start_tokens, batch_size, num_beams)
        sequences = running_sequences.clone()
        running_beam_scores = torch.zeros((batch_size, num_beams), dtype=torch.float, device=device)
        running_beam_scores[:, 1:] = -1e9  # identical beams at the start: only the first may expand
        beam_scores = torch.full((batch_size, num_beams), -1e9, dtype=torch.float, device=device)
        is_sent_finished = torch.zeros((batch_size, num_beams), dtype=torch.bool, device=device)
        is_early_stop_heuristic_unsatisfied = torch.ones((batch_size, 1), dtype=torch.bool, device=device)
        next_token_hits_stopping_criteria = torch.zeros((batch_size, num_beams), dtype=torch.bool, device=device)
        running_beam_indices = torch.full(
            (batch_size, num_beams, max_length - prompt_len), -1, dtype=torch.int32, device=device
        )
        beam_indices = running_beam_indices.clone()
        step_times: list[torch.Tensor] = []  # per step, the time(s) each running row predicted `(rows,)` / `(rows, V)`
        all_scores = () if keep and generation_config.output_scores else None
        raw_logits = () if keep and generation_config.output_logits else None
        attentions = () if keep and generation_config.output_attentions else None
        hidden_states = () if keep and generation_config.output_hidden_states else None

        finished = rows == 0
        while not finished:
            flat_running = self._flatten_beam_dim(running_sequences[:, :, :cur_len])
            # Only dead beams (score -1e9 or below) can hold padding: EAG is fed the end action there instead.
            fed_tokens = flat_running.masked_fill(flat_running == 0, self.config.end_action_id)
            step = step_function(fed_tokens, running_times)
            logits = step.logits.to(dtype=torch.float32, copy=True)
            log_probs = self._processed_scores(
                processors, flat_running, F.log_softmax(self._allowed_scores(logits), dim=-1),
                partial(_refuse_blocked_examples, beam_scores=running_beam_scores, finished=is_sent_finished,
                        returned=returned, position=cur_len),
            )
            if all_scores is not None:
                all_scores += (log_probs.clone(),)
            if raw_logits is not None:
                raw_logits += (logits,)
            if attentions is not None:
                attentions += ((*encoder_parts[0], step.probabilities),)
            if hidden_states is not None:
                hidden_states += ((*encoder_parts[1], step.states),)
            step_times.append(step.times.float())

            log_probs = self._unflatten_beam_dim(log_probs, batch_size, num_beams) + running_beam_scores[:, :, None]
            log_probs = torch.reshape(log_probs, (batch_size, -1))
            topk_log_probs, topk_running_sequences, topk_running_beam_indices = self._get_top_k_continuations(
                accumulated_log_probs=log_probs,
                running_sequences=running_sequences,
                running_beam_indices=running_beam_indices,
                cur_len=cur_len,
                decoder_prompt_len=prompt_len,
                do_sample=generation_config.do_sample,
                beams_to_keep=beams_to_keep,
                num_beams=num_beams,
                batch_size=batch_size,
            )
            next_token_hits_stopping_criteria = self._unflatten_beam_dim(
                stopping(self._flatten_beam_dim(topk_running_sequences[:, :, : cur_len + 1]), all_scores),
                batch_size,
                beams_to_keep,
            )
            running_sequences, running_beam_scores, running_beam_indices = self._get_running_beams_for_next_iteration(
                topk_log_probs=topk_log_probs,
                topk_running_sequences=topk_running_sequences,
                topk_running_beam_indices=topk_running_beam_indices,
                next_token_hits_stopping_criteria=next_token_hits_stopping_criteria,
                num_beams=num_beams,
            )
            sequences, beam_scores, beam_indices, is_sent_finished = self._update_finished_beams(
                sequences=sequences,
                topk_running_sequences=topk_running_sequences,
                beam_scores=beam_scores,
                topk_log_probs=topk_log_probs,
                beam_indices=beam_indices,
                topk_running_beam_indices=topk_running_beam_indices,
                is_early_stop_heuristic_unsatisfied=is_early_stop_heuristic_unsatisfied,
                is_sent_finished=is_sent_finished,
                next_token_hits_stopping_criteria=next_token_hits_stopping_criteria,
                top_num_beam_mask=top_num_beam_mask,
                num_beams=num_beams,
                cur_len=cur_len,
                decoder_prompt_len=prompt_len,
                length_penalty=length_penalty,
                early_stopping=early_stopping,
            )
            # Each running beam extends the row `origin` of this step: it inherits that row's times and cache.
            origin = self._flatten_beam_dim(running_beam_indices[..., cur_len - prompt_len]).long()
            chosen = self._flatten_beam_dim(running_sequences[:, :, cur_len])
            inherited = running_times[origin]
            chosen_times = ordered_times(times_of_actions(step.times[origin], chosen), inherited[:, -1], monotonic)
            running_times = torch.cat([inherited, chosen_times[:, None]], dim=1)
            if cache is not None:
                cache.reorder_cache(origin)
            cur_len += 1
            is_early_stop_heuristic_unsatisfied = self._check_early_stop_heuristic(
                is_early_stop_heuristic_unsatisfied=is_early_stop_heuristic_unsatisfied,
                running_beam_scores=running_beam_scores,
                beam_scores=beam_scores,
                is_sent_finished=is_sent_finished,
                cur_len=cur_len,
                max_length=max_length,
                decoder_prompt_len=prompt_len,
                early_stopping=early_stopping,
                length_penalty=length_penalty,
            )
            finished = not self._beam_search_has_unfinished_sequences(
                is_early_stop_heuristic_unsatisfied, is_sent_finished, next_token_hits_stopping_criteria, early_stopping
            )

        _refuse_placeholder_sequences(sequences[:, :returned, :], prompt_len)
        sequences = self._flatten_beam_dim(sequences[:, :returned, :])
        beam_scores = self._flatten_beam_dim(beam_scores[:, :returned])
        beam_indices = self._flatten_beam_dim(beam_indices[:, :returned, :])
        generated = int((beam_indices + 1).bool().sum(dim=1).max()) if rows else 0
        sequences = sequences[:, : prompt_len + generated]
        beam_indices = beam_indices[:, :generated]
        times = self._beam_times(context, sequences, beam_indices, step_times, monotonic)
        if not keep:
            return sequences
        return A2GenBeamGenerateOutput(
            sequences=sequences,
            times=times,
            sequences_scores=beam_scores if generation_config.output_scores else None,
            scores=all_scores,
            logits=raw_logits,
            beam_indices=beam_indices,
            attentions=attentions,
            hidden_states=hidden_states,
            cache=cache,
        )

    def _beam_times(
        self, context: torch.Tensor, sequences: torch.LongTensor, beam_indices: torch.Tensor,
        step_times: list[torch.Tensor], monotonic: bool,
    ) -> torch.Tensor:
        """The times `(R, L)` of the returned beams' tokens `(R, L)`: the start time the beams were fed, then for each
        generated token the time its beam predicted for it at that step (``step_times[position]`` of the running row
        ``beam_indices[:, position]``, `(rows,)` or `(rows, V)`), ordered as the beam was fed it; 0 after a beam's
        end (index -1)."""
        times = torch.zeros(sequences.shape, dtype=torch.float, device=sequences.device)
        times[:, 0] = self._start_rows(1, context)[1].float()[0, 0]  # the start time the beams were fed (model dtype)
        for position in range(beam_indices.shape[1]):
            source = beam_indices[:, position].long()
            predicted = times_of_actions(step_times[position][source.clamp_min(0)], sequences[:, position + 1])
            predicted = ordered_times(predicted, times[:, position], monotonic)
            times[:, position + 1] = torch.where(source >= 0, predicted, 0.0)
        return times

    # ------------------------------------------------------------------------------------------------------------
    # Ranking

    @torch.no_grad()
    def slot_distributions(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Per-slot class probabilities `(B, K, V)` and times `(B, K)` (`(B, K, V)` with ``config.time_per_action``;
        float32) from the generation context `(B, C)`.

        IAG: its K slots from one pass. EAG: K decoding steps with the key/value cache, feeding back at each step
        the most likely action that continues the sequence (not padding, not ``start``, not the end action): slot
        k's distribution is then the one given that the sequence is still running, which is what
        :func:`~a2gen_hf.modeling_a2gen.action_predictions_from_slots` weighs by the chance ``alive_k`` that it is.
        """
        context = self._checked_context(context, "slot_distributions")
        if self.config.generator_type == "iag":
            logits, times = self.generator.slot_predictions(context)
            return small_softmax(logits.float()), times.float()
        step_function, _ = self._make_step_function(context, use_cache=True)
        tokens, times = self._start_rows(context.shape[0], context)
        stops = {0, self.config.start_action_id, self.config.end_action_id}
        any_continuing = self.config.vocab_size > len(stops)  # decided in Python: torch.export traces this
        continuing = torch.ones(self.config.vocab_size, dtype=torch.bool, device=context.device)
        continuing[sorted(stops)] = False
        probabilities, slot_times = [], []
        for _ in range(self.config.max_actions):
            step = step_function(tokens, times)
            logits = step.logits.float()
            probabilities.append(small_softmax(logits))
            slot_times.append(step.times.float())
            if any_continuing:
                fed = logits.masked_fill(~continuing, -float("inf")).argmax(-1)
            else:  # a vocabulary of start and end only: nothing continues a sequence
                fed = torch.full_like(tokens[:, 0], self.config.end_action_id)
            tokens = torch.cat([tokens, fed[:, None]], dim=1)
            times = torch.cat([times, times_of_actions(step.times, fed)[:, None]], dim=1)
        return torch.stack(probabilities, dim=1), torch.stack(slot_times, dim=1)
