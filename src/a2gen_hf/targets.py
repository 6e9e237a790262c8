"""The targets: which actions happen after ``start``, and when each first happens.

One definition, read by the losses, the metrics and the baselines: an action "happens" if it occurs in the label
sequence after position 0 (``start``); its time is the label time of its first occurrence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def is_time_known(time_mask: torch.Tensor) -> torch.BoolTensor:
    """
    How every path reads a time mask (``history_time_mask``, ``label_time_mask``): a boolean, nonzero = the time is
    known. The padded and packed encoders, the item-moment features, EAG's decoder inputs, the losses and the
    per-action targets all read it here, so a mask of other values than 0 / 1 gives the same outputs whichever path
    runs (e.g. with ``output_hidden_states``).
    """
    return time_mask != 0


def check_label_ids(labels: torch.Tensor, vocab_size: int) -> None:
    """``labels`` (any shape) hold action ids in ``[0, vocab_size)`` (0 = padding) or ``IGNORE_INDEX`` (-100): an id
    beyond the vocabulary fails inside torch naming no input, and another negative value would be read as padding."""
    if not labels.numel():
        return
    bad = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= vocab_size))
    if bad.any():
        position = [int(index) for index in bad.nonzero()[0]]
        raise ValueError(
            f"labels hold {int(labels[tuple(position)])} at position {tuple(position)}; label ids must be action ids "
            f"in [0, {vocab_size}) (0 = padding) or {IGNORE_INDEX} (ignored): encode the labels with the tokenizer "
            "saved with this model."
        )


def check_labels_open_with_start(labels: torch.Tensor, start_id: int, start_name: str) -> None:
    """Every label row `(B, T)` that holds an action opens with the start action: position 0 is the anchor the times
    count from and no target (EAG's first input), so a row written the text-model way, the actions without a start,
    would lose its first action from the loss without a word."""
    if labels.dim() != 2 or not labels.numel():
        return
    has_action = (labels[:, 1:] > 0).any(dim=1)
    bad = has_action & (labels[:, 0] != start_id)
    if bad.any():
        row = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"labels[{row}] opens with {int(labels[row, 0])}, not the start action {start_name!r} (id {start_id}): "
            "label sequences are start, a1, ..., end, padding, and position 0 is no target (the actions without a "
            "start would lose their first one). Encode them with tokenizer.encode_labels(...) or the collator."
        )


def first_occurrence_targets(
    labels: torch.LongTensor,
    label_times: torch.Tensor,
    label_time_mask: torch.Tensor | None,
    vocab_size: int,
) -> tuple[torch.BoolTensor, torch.Tensor, torch.BoolTensor]:
    """
    Per-action targets read off label sequences `(B, T)` (``start`` at position 0, which is skipped; 0 and -100
    are no action).

    Returns:
        occurs `(B, V)` bool: the action happens in ``labels[:, 1:]``; first_times `(B, V)`: the label time of its
        first occurrence (0.0 where it does not happen or that time is unknown, so that a NaN stored there never
        reaches a loss or its gradient); time_known `(B, V)` bool: it happens and that time is known
        (``label_time_mask``; all known when it is None).
    """
    check_label_ids(labels, vocab_size)  # before slicing, so that a bad id is named where the caller put it
    actions = labels[:, 1:]
    times = label_times[:, 1:]
    known = torch.ones_like(actions, dtype=torch.bool) if label_time_mask is None else is_time_known(label_time_mask[:, 1:])
    present = actions > 0
    if actions.shape[1] == 0:  # labels of the start alone (or of no examples): nothing happens
        nothing = torch.zeros(labels.shape[0], vocab_size, dtype=torch.bool, device=labels.device)
        return nothing, torch.zeros(nothing.shape, dtype=times.dtype, device=labels.device), nothing.clone()
    one_hot = F.one_hot(actions.clamp_min(0), vocab_size).bool() & present.unsqueeze(-1)  # (B, T-1, V)
    occurs = one_hot.any(dim=1)
    first_position = one_hot.to(torch.uint8).argmax(dim=1)  # argmax returns the first maximum
    time_known = occurs & known.gather(1, first_position)
    first_times = torch.where(time_known, times.gather(1, first_position), torch.zeros_like(occurs, dtype=times.dtype))
    return occurs, first_times, time_known

