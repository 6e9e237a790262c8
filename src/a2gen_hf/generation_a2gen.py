"""Timed action-sequence generation for A2Gen through the standard ``generate()`` API.

A generated sequence opens with ``start`` at 0 s; each step picks the next action from the generator's class
scores (greedy, sampling or beam search, with transformers' logits processors) and records the time the
generator predicted at that step. EAG decodes step by step (with or without a key/value cache); IAG reads its K
slots from one pass. Decoding stops at the end action (``leave``) or after ``max_new_tokens`` actions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import GenerationConfig, GenerationMixin
from transformers.cache_utils import DynamicCache
from transformers.generation import (
    GenerateBeamDecoderOnlyOutput,
    GenerateDecoderOnlyOutput,
    LogitsProcessorList,
    StoppingCriteriaList,
)

_LABEL_INPUTS = ("labels", "label_times", "label_time_mask")


@dataclass
class A2GenGenerateOutput(GenerateDecoderOnlyOutput):
    """
    :class:`~transformers.generation.GenerateDecoderOnlyOutput` plus ``times``.

    Args:
        times (`torch.FloatTensor` of shape `(batch_size * num_return_sequences, sequence_length)`): the normalised
            time of every action in ``sequences`` (``start`` at the normalised 0 s, padding 0.0); the tokenizer's
            ``decode_timeline(sequences[i], times[i])`` turns a row into ``[(action, seconds), ...]``.
    """

    times: torch.FloatTensor | None = None


@dataclass
class A2GenBeamGenerateOutput(GenerateBeamDecoderOnlyOutput):
    """:class:`~transformers.generation.GenerateBeamDecoderOnlyOutput` plus ``times`` (see A2GenGenerateOutput)."""

    times: torch.FloatTensor | None = None


# (token logits (B, V), predicted time (B,)) for step t, given the sequences and times so far.
StepFunction = Callable[[int, torch.LongTensor, torch.FloatTensor], tuple[torch.Tensor, torch.Tensor]]


class A2GenGenerationMixin(GenerationMixin):
    """Adds ``generate`` (timed sequences) and the per-slot distributions behind ``predict_actions``."""

    def _encode_for_generation(self, model_kwargs: dict) -> torch.Tensor:
        for name in _LABEL_INPUTS:
            model_kwargs.pop(name, None)
        model_kwargs.pop("use_cache", None)
        unknown = set(model_kwargs) - set(self._history_input_names())
        if unknown:
            raise ValueError(
                f"generate() got unknown arguments {sorted(unknown)}; it takes the history inputs "
                f"{self._history_input_names()} plus generation options (max_new_tokens, do_sample, num_beams, ...)."
            )
        return self.a2gen(**model_kwargs, return_dict=True).generation_context

    @staticmethod
    def _history_input_names() -> list[str]:
        return [
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
        ]

    def _make_step_function(self, context: torch.Tensor, use_cache: bool) -> tuple[StepFunction, DynamicCache | None]:
        if self.config.generator_type == "iag":
            slots = self.generator(context)

            def iag_step(step, sequences, times):
                return slots["logits"][:, step], slots["times"][:, step]

            return iag_step, None

        cache = DynamicCache() if use_cache else None

        def eag_step(step, sequences, times):
            if cache is not None:
                sequences, times = sequences[:, -1:], times[:, -1:]
            generated = self.generator(context, sequences, times, cache=cache)
            return generated["logits"][:, -1], generated["times"][:, -1]

        return eag_step, cache

    @staticmethod
    def _allowed_scores(logits: torch.Tensor) -> torch.Tensor:
        """Padding is never generated: a sequence ends with the end action (or the length limit)."""
        scores = logits.float().clone()
        scores[:, 0] = -float("inf")
        return scores

    def _start_sequences(self, batch_size: int, device: torch.device) -> tuple[torch.LongTensor, torch.FloatTensor]:
        sequences = torch.full((batch_size, 1), self.config.start_action_id, dtype=torch.long, device=device)
        times = torch.full((batch_size, 1), self.config.start_time, dtype=torch.float, device=device)
        return sequences, times

    def _new_token_budget(self, generation_config: GenerationConfig) -> int:
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

    @torch.no_grad()
    def generate(
        self,
        inputs: torch.Tensor | None = None,
        generation_config: GenerationConfig | None = None,
        logits_processor: LogitsProcessorList | None = None,
        stopping_criteria: StoppingCriteriaList | None = None,
        **kwargs,
    ) -> A2GenGenerateOutput | A2GenBeamGenerateOutput | torch.LongTensor:
        """
        Generate timed action sequences for the (user, target item) examples given as keyword inputs (the forward's
        history inputs, e.g. a collator batch; labels are ignored).

        Supports greedy search, multinomial sampling (``do_sample=True`` with temperature / top-k / top-p) and beam
        search (``num_beams > 1``), ``num_return_sequences``, ``max_new_tokens``, ``use_cache`` (EAG),
        custom ``logits_processor`` / ``stopping_criteria``, ``output_scores`` / ``output_logits``.

        Returns:
            `torch.LongTensor` of shape `(batch_size * num_return_sequences, 1 + generated)` (``start`` first,
            padding after the end action), or with ``return_dict_in_generate=True`` an :class:`A2GenGenerateOutput`
            / :class:`A2GenBeamGenerateOutput` whose ``times`` give the normalised time of every action.
        """
        if inputs is not None:
            raise ValueError(
                "A2Gen's generate() takes its inputs as keyword arguments (user_ids=..., history_item_ids=..., ...), "
                "e.g. model.generate(**batch); a positional tensor is ambiguous."
            )
        generation_config, model_kwargs = self._prepare_generation_config(generation_config, **kwargs)
        context = self._encode_for_generation(model_kwargs)
        return self.generate_from_context(context, generation_config, logits_processor, stopping_criteria)

    @torch.no_grad()
    def generate_from_context(
        self,
        context: torch.Tensor,
        generation_config: GenerationConfig | None = None,
        logits_processor: LogitsProcessorList | None = None,
        stopping_criteria: StoppingCriteriaList | None = None,
        **kwargs,
    ) -> A2GenGenerateOutput | A2GenBeamGenerateOutput | torch.LongTensor:
        """
        :meth:`generate` from a ready generation context `(B, context_size)` (``[user ; Vec_hist ; item]``, as
        ``A2GenModel`` returns it in ``generation_context``), e.g. the contexts of many candidates of one user that
        :class:`~a2gen_hf.ranking.A2GenRanker` builds without repeating the history. Takes the same generation
        options (``generation_config`` and keyword options such as ``max_new_tokens``, ``do_sample``,
        ``num_return_sequences``) and returns the same outputs.
        """
        if not isinstance(context, torch.Tensor) or context.dim() != 2:
            raise TypeError(
                "generate_from_context() takes the generation context as a tensor of shape (batch, context_size), "
                f"got {type(context).__name__} {tuple(getattr(context, 'shape', ()))}."
            )
        generation_config, model_kwargs = self._prepare_generation_config(generation_config, **kwargs)
        if model_kwargs:
            raise ValueError(
                f"generate_from_context() got unknown arguments {sorted(model_kwargs)}; it takes the context and "
                "generation options (max_new_tokens, do_sample, num_beams, ...)."
            )
        use_cache = generation_config.use_cache if generation_config.use_cache is not None else True
        max_new_tokens = self._new_token_budget(generation_config)
        processors = self._get_logits_processor(
            generation_config=generation_config,
            input_ids_seq_length=1,
            encoder_input_ids=None,
            logits_processor=logits_processor if logits_processor is not None else LogitsProcessorList(),
            device=context.device,
            model_kwargs={},
        )
        stopping = stopping_criteria if stopping_criteria is not None else StoppingCriteriaList()
        if context.shape[0] == 0:
            return self._empty_generation(context, generation_config)
        if generation_config.num_beams and generation_config.num_beams > 1:
            return self._beam_search_timed(context, generation_config, processors, stopping, max_new_tokens, use_cache)
        return self._sample_timed(context, generation_config, processors, stopping, max_new_tokens, use_cache)

    def _empty_generation(self, context, generation_config):
        """A batch of zero examples generates zero sequences (of the start action only)."""
        sequences, times = self._start_sequences(0, context.device)
        if not generation_config.return_dict_in_generate:
            return sequences
        if generation_config.num_beams and generation_config.num_beams > 1:
            return A2GenBeamGenerateOutput(sequences=sequences, times=times, sequences_scores=times[:, 0])
        return A2GenGenerateOutput(sequences=sequences, times=times)

    def _sample_timed(self, context, generation_config, processors, stopping, max_new_tokens, use_cache):
        copies = generation_config.num_return_sequences or 1
        context = context.repeat_interleave(copies, dim=0)
        step_function, cache = self._make_step_function(context, use_cache)
        sequences, times = self._start_sequences(context.shape[0], context.device)
        unfinished = torch.ones(context.shape[0], dtype=torch.bool, device=context.device)
        scores, raw_logits = [], []
        for step in range(max_new_tokens):
            logits, step_times = step_function(step, sequences, times)
            step_scores = processors(sequences, self._allowed_scores(logits))
            if generation_config.do_sample:
                next_actions = torch.multinomial(torch.softmax(step_scores, dim=-1), num_samples=1).squeeze(1)
            else:
                next_actions = step_scores.argmax(-1)
            next_actions = torch.where(unfinished, next_actions, torch.zeros_like(next_actions))
            next_times = torch.where(unfinished, step_times.float(), torch.zeros_like(step_times, dtype=torch.float))
            sequences = torch.cat([sequences, next_actions[:, None]], dim=1)
            times = torch.cat([times, next_times[:, None]], dim=1)
            scores.append(step_scores)
            raw_logits.append(logits)
            unfinished = unfinished & (next_actions != self.config.end_action_id)
            if len(stopping):
                unfinished = unfinished & ~stopping(sequences, step_scores)
            if not unfinished.any():
                break
        if not generation_config.return_dict_in_generate:
            return sequences
        return A2GenGenerateOutput(
            sequences=sequences,
            times=times,
            scores=tuple(scores) if generation_config.output_scores else None,
            logits=tuple(raw_logits) if generation_config.output_logits else None,
            cache=cache,
        )

    def _beam_search_timed(self, context, generation_config, processors, stopping, max_new_tokens, use_cache):
        num_beams = generation_config.num_beams
        returned = generation_config.num_return_sequences or 1
        if returned > num_beams:
            raise ValueError(f"num_return_sequences={returned} must be <= num_beams={num_beams}.")
        length_penalty = generation_config.length_penalty if generation_config.length_penalty is not None else 1.0
        batch_size, device = context.shape[0], context.device
        context = context.repeat_interleave(num_beams, dim=0)
        step_function, cache = self._make_step_function(context, use_cache)
        sequences, times = self._start_sequences(batch_size * num_beams, device)
        beam_scores = torch.full((batch_size, num_beams), -float("inf"), device=device)
        beam_scores[:, 0] = 0.0  # identical beams at the start: only the first may expand
        beam_history = torch.arange(batch_size * num_beams, device=device)[:, None] % num_beams
        finished: list[list[tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]]] = [[] for _ in range(batch_size)]
        done = [False] * batch_size
        end_id = self.config.end_action_id
        scores, raw_logits = [], []

        def normalised(score: float, length: int) -> float:
            return score / (length**length_penalty)

        for step in range(max_new_tokens):
            logits, step_times = step_function(step, sequences, times)
            log_probs = processors(sequences, torch.log_softmax(self._allowed_scores(logits), dim=-1))
            scores.append(log_probs)
            raw_logits.append(logits)
            vocab = log_probs.shape[-1]
            candidates = (beam_scores.view(-1, 1) + log_probs).view(batch_size, num_beams * vocab)
            top_scores, top_indices = candidates.topk(min(2 * num_beams, candidates.shape[1]), dim=1)
            next_beam_rows, next_tokens, next_scores = [], [], []
            for batch in range(batch_size):
                kept = 0
                for score, index in zip(top_scores[batch].tolist(), top_indices[batch].tolist()):
                    row = batch * num_beams + index // vocab
                    token = index % vocab
                    if score == -float("inf"):
                        break
                    if done[batch]:
                        break
                    if token == end_id:
                        finished[batch].append(
                            (
                                normalised(score, sequences.shape[1] + 1),
                                torch.cat([sequences[row], sequences.new_tensor([token])]),
                                torch.cat([times[row], step_times[row : row + 1].float()]),
                                torch.cat([beam_history[row], beam_history.new_tensor([row % num_beams])]),
                            )
                        )
                        continue
                    next_beam_rows.append(row)
                    next_tokens.append(token)
                    next_scores.append(score)
                    kept += 1
                    if kept == num_beams:
                        break
                while kept < num_beams:  # pad finished or exhausted batches with dead beams
                    next_beam_rows.append(batch * num_beams)
                    next_tokens.append(0)
                    next_scores.append(-float("inf"))
                    kept += 1
                finished[batch].sort(key=lambda hypothesis: hypothesis[0], reverse=True)
                del finished[batch][num_beams:]
                best_running = max(next_scores[-num_beams:])
                if len(finished[batch]) == num_beams and (
                    generation_config.early_stopping is True
                    or normalised(best_running, sequences.shape[1] + 1) <= finished[batch][-1][0]
                ):
                    done[batch] = True
            beam_rows = torch.tensor(next_beam_rows, dtype=torch.long, device=device)
            sequences = torch.cat([sequences[beam_rows], torch.tensor(next_tokens, device=device)[:, None]], dim=1)
            times = torch.cat([times[beam_rows], step_times[beam_rows].float()[:, None]], dim=1)
            beam_history = torch.cat([beam_history[beam_rows], (beam_rows % num_beams)[:, None]], dim=1)
            beam_scores = torch.tensor(next_scores, device=device).view(batch_size, num_beams)
            if cache is not None:
                cache.reorder_cache(beam_rows)
            if all(done) or (len(stopping) and stopping(sequences, log_probs).all()):
                break

        for batch in range(batch_size):  # beams that hit the length limit compete with the finished ones
            for beam in range(num_beams):
                row = batch * num_beams + beam
                if beam_scores[batch, beam] > -float("inf") and not done[batch]:
                    score = normalised(beam_scores[batch, beam].item(), sequences.shape[1])
                    finished[batch].append((score, sequences[row], times[row], beam_history[row]))
            finished[batch].sort(key=lambda hypothesis: hypothesis[0], reverse=True)

        best = [hypothesis for batch in range(batch_size) for hypothesis in finished[batch][:returned]]
        length = max(hypothesis[1].shape[0] for hypothesis in best)
        out_sequences = torch.zeros((len(best), length), dtype=torch.long, device=device)
        out_times = torch.zeros((len(best), length), dtype=torch.float, device=device)
        out_beams = torch.full((len(best), length - 1), -1, dtype=torch.long, device=device)
        for index, (_, tokens, token_times, beams) in enumerate(best):
            out_sequences[index, : tokens.shape[0]] = tokens
            out_times[index, : token_times.shape[0]] = token_times
            out_beams[index, : tokens.shape[0] - 1] = beams[1 : tokens.shape[0]]
        if not generation_config.return_dict_in_generate:
            return out_sequences
        return A2GenBeamGenerateOutput(
            sequences=out_sequences,
            times=out_times,
            sequences_scores=torch.tensor([hypothesis[0] for hypothesis in best], device=device),
            scores=tuple(scores) if generation_config.output_scores else None,
            logits=tuple(raw_logits) if generation_config.output_logits else None,
            beam_indices=out_beams if generation_config.output_scores else None,
            cache=cache,
        )

    @torch.no_grad()
    def slot_distributions(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Per-slot class probabilities `(B, K, V)` and times `(B, K)` from the generation context `(B, C)`: IAG's K
        slots from one pass, or the K steps of EAG's greedy decode (with the key/value cache).
        """
        if self.config.generator_type == "iag":  # all K slots from one pass: nothing is fed back
            slots = self.generator(context)
            return torch.softmax(slots["logits"].float(), dim=-1), slots["times"].float()
        step_function, _ = self._make_step_function(context, use_cache=True)
        sequences, times = self._start_sequences(context.shape[0], context.device)
        probabilities, slot_times = [], []
        for step in range(self.config.max_actions):
            logits, step_times = step_function(step, sequences, times)
            # Padding stays in: for IAG a padding slot means "the sequence has already ended".
            step_probabilities = torch.softmax(logits.float(), dim=-1)
            probabilities.append(step_probabilities)
            slot_times.append(step_times.float())
            sequences = torch.cat([sequences, step_probabilities.argmax(-1, keepdim=True)], dim=1)
            times = torch.cat([times, step_times.float()[:, None]], dim=1)
        return torch.stack(probabilities, dim=1), torch.stack(slot_times, dim=1)
