"""
The one prediction loop: a model's ranking outputs (and, for models that generate, its greedy sequences) over a
dataloader, and their metrics. ``a2gen evaluate``, ``a2gen train``, ``a2gen compare``, ``a2gen demo`` and
:class:`~a2gen_hf.training.trainer.A2GenTrainer` (per batch, through :func:`predict_batch`) all predict here.

Works with any model of this package: it calls ``model.predict_actions`` and ``model.generate`` only, and imports
no model module.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import RandomSampler
from tqdm.auto import tqdm

from ..data.collator import USER_COLUMN, first_missing_user, missing_user_error
from .action_metrics import (
    DEFAULT_CALIBRATION_BINS,
    DEFAULT_TOP_K,
    ORACLE_COLUMNS,
    _as_array,
    _metric_options,
    coarse_dtype,
    coarse_probabilities_message,
    compute_action_metrics,
    predicted_next_actions,
)

# The collator's label tensors, collected as the references of the metrics.
LABEL_COLUMNS = ("labels", "label_times", "label_time_mask")
# The batch tensor that groups examples for GAUC and NDCG@K / Recall@K by default (one group per user).
DEFAULT_GROUP_COLUMN = "user_ids"
# The options of compute_action_metrics that evaluate_model passes on.
METRIC_OPTIONS = ("top_k", "calibration_bins", "zero_time_tolerance_seconds")


@torch.no_grad()
def predict_batch(model, batch: Mapping[str, torch.Tensor], generate: bool = False) -> dict[str, torch.Tensor]:
    """
    The model's predictions for one collated batch (already on the model's device).

    Returns:
        ``action_probabilities`` and ``expected_times`` `(B, V)` float32 (``predict_actions``; probabilities that
        the model gave in float16 / bfloat16 are cast too, with a warning that they are too coarse for a log loss,
        :func:`~a2gen_hf.metrics.action_metrics.coarse_probabilities_message`); with ``generate``,
        ``next_actions`` `(B,)`: the first generated action after start for models that generate (then also the
        greedy ``sequences`` and the generator's raw ``sequence_times`` `(B, L)`, ``monotonic_times=False``),
        :func:`predicted_next_actions` for the others.
    """
    prediction = model.predict_actions(**batch)
    if (coarse := coarse_dtype(prediction.action_probabilities)) is not None:
        warnings.warn(f"predict_batch: {coarse_probabilities_message(coarse)}", UserWarning, stacklevel=2)
    outputs = {
        "action_probabilities": prediction.action_probabilities.float(),
        "expected_times": prediction.expected_times.float(),
    }
    if not generate:
        return outputs
    if model.can_generate():
        # The generator's raw times (generate() puts them in time order by default), so that backward_time_rate
        # measures the model rather than the clamp.
        generated = model.generate(**batch, return_dict_in_generate=True, monotonic_times=False)
        outputs.update(next_actions=generated.sequences[:, 1], sequences=generated.sequences,
                       sequence_times=generated.times)
    else:
        chosen = predicted_next_actions(
            outputs["action_probabilities"].cpu(), outputs["expected_times"].cpu(), model.config.start_action_id,
            end_action_id=model.config.end_action_id,
        )
        outputs["next_actions"] = torch.from_numpy(np.asarray(chosen, dtype=np.int64)).to(
            outputs["action_probabilities"].device
        )
    return outputs


def _padded_rows(array: np.ndarray, width: int) -> np.ndarray:
    return np.pad(array, ((0, 0), (0, width - array.shape[1])))


def _concatenate(name: str, parts: list[np.ndarray]) -> np.ndarray:
    """Batches -> one array; 2-d parts of different widths (labels, generated sequences) are right-padded with 0."""
    if parts[0].ndim == 2:
        width = max(part.shape[1] for part in parts)
        parts = [_padded_rows(part, width) for part in parts]
    return np.concatenate(parts)


# The batch tensor of the raw users' 63-bit keys (A2GenDataCollator(user_keys=True)): groups, never a model input.
USER_KEYS_COLUMN = "user_keys"


def check_user_column(examples: Any, where: str) -> None:
    """Refuses (:func:`missing_user_error`, naming the example's row) a ``datasets.Dataset`` whose ``user`` column
    misses some users; a split without the column, or another kind of data set, passes (its batches are checked
    as they are collated)."""
    import datasets

    if not isinstance(examples, datasets.Dataset) or USER_COLUMN not in (examples.column_names or []):
        return
    if examples.data.column(USER_COLUMN).null_count == 0:  # the table under any selection: no None anywhere
        return
    index = first_missing_user(examples.select_columns([USER_COLUMN]).with_format(None)[:][USER_COLUMN])
    if index is not None:
        raise missing_user_error(where, index)


def user_groups(examples: Any) -> np.ndarray | None:
    """
    The group of each example for GAUC and NDCG@K / Recall@K: a 63-bit key of its raw user id
    (:func:`~a2gen_hf.tokenization_a2gen.raw_id_keys` of the ``user`` column), int64 `(n,)`, in the examples' order;
    None where the examples have no ``user`` column. The collator's ``user_ids`` are hash buckets, which merge
    users (about 6 % of them at prepare's default bucket counts) into one group. An example whose ``user`` is None
    is refused, naming it (:func:`missing_user_error`).
    """
    import datasets

    from ..tokenization_a2gen import raw_id_keys

    if isinstance(examples, datasets.IterableDataset):
        raise TypeError(
            "user_groups needs the examples in order with a length (a datasets.Dataset split); a streamed "
            "IterableDataset cannot be aligned with the evaluated batches: evaluate a map-style split."
        )
    columns = getattr(examples, "column_names", None) or []
    if USER_COLUMN not in columns:
        return None
    users = examples.select_columns([USER_COLUMN]).with_format(None)[:][USER_COLUMN]  # raw values, not tensors
    missing = first_missing_user(users)
    if missing is not None:
        raise missing_user_error("user_groups", missing)
    return raw_id_keys(users)


def _check_groups_length(groups: Any, examples: int, source: str) -> None:
    """``evaluate_model``'s ``groups`` hold one group per evaluated example (a ``ValueError`` naming both counts)."""
    if len(groups) != examples:
        raise ValueError(
            f"groups has {len(groups)} entries but {source} {examples} examples; pass one group per evaluated example, "
            "in order (user_groups(examples) of the same split)."
        )


def batch_groups(batch: Mapping[str, Any], group_column: str | None = DEFAULT_GROUP_COLUMN) -> torch.Tensor | None:
    """
    The group of each example of one collated batch, for GAUC and NDCG@K / Recall@K: the batch's ``group_column``
    tensor, one value per example (``user_ids``, the hashed users, by default; ``user_keys``, the raw users'
    keys of ``A2GenDataCollator(user_keys=True)``); None with ``group_column=None``. The one home of this rule for
    :func:`predict_dataloader` and :class:`~a2gen_hf.A2GenTrainer` (which picks the column once per evaluation,
    :func:`evaluation_group_column`).

    Raises:
        ValueError: the batch has no such tensor (naming its keys).
    """
    if group_column is None:
        return None
    groups = batch.get(group_column)
    if not torch.is_tensor(groups):
        found = "is not a tensor" if group_column in batch else "is missing"
        raw = (
            f" ({USER_KEYS_COLUMN!r}: A2GenDataCollator(user_keys=True) adds them where the examples have a "
            f"{USER_COLUMN!r} column)" if group_column == USER_KEYS_COLUMN else ""
        )
        raise ValueError(
            f"group_column={group_column!r} {found} in the batch (its keys: {sorted(batch)}){raw}; pass the name of "
            f"the collated tensor that holds each example's group (the user: {DEFAULT_GROUP_COLUMN!r}), or "
            "group_column=None to report no GAUC / NDCG@K / Recall@K."
        )
    return groups


def evaluation_group_column(batch: Mapping[str, Any]) -> str | None:
    """The column an evaluation that names none groups by (:class:`~a2gen_hf.A2GenTrainer`): the raw users'
    ``user_keys`` where the batch carries them, else the hashed ``user_ids``, else None (no groups). Decided on an
    evaluation's first batch and then held for all of it, so that a user is never split between the two."""
    for column in (USER_KEYS_COLUMN, DEFAULT_GROUP_COLUMN):
        if torch.is_tensor(batch.get(column)):
            return column
    return None


def predict_dataloader(
    model,
    dataloader: Iterable[Mapping[str, Any]],
    generate: bool = False,
    references: bool = True,
    group_column: str | None = DEFAULT_GROUP_COLUMN,
    progress: bool = False,
    description: str = "predicting",
) -> dict[str, np.ndarray]:
    """
    :func:`predict_batch` over every batch of `dataloader` (the collator's batches), in order, in eval mode (the
    model's mode is restored after), concatenated into numpy arrays.

    Args:
        generate: also generate (greedy) the next action and, for models that generate, the sequences.
        references: also collect the batches' ``labels`` / ``label_times`` / ``label_time_mask`` and ``group_ids``
            (the batches' ``group_column`` tensor, the user by default; None: no groups).
        progress: show a progress bar (``description`` as its label).

    Returns:
        the predictions of :func:`predict_batch` and the references, each `(n, ...)`; the 2-d ones padded with 0 to
        the widest batch.

    Raises:
        ValueError: the dataloader is empty, or ``references`` is asked for and a batch has no labels or no
            ``group_column`` tensor.
    """
    collected: dict[str, list[np.ndarray]] = {}
    was_training = model.training
    model.eval()
    try:
        for batch in tqdm(dataloader, desc=description, disable=not progress, leave=False):
            groups = batch_groups(batch, group_column) if references else None
            batch = {key: value.to(model.device) for key, value in batch.items() if torch.is_tensor(value)}
            # the raw users of A2GenDataCollator(user_keys=True): evaluation's groups, not a model input (before:
            # predict_actions refused them)
            batch.pop(USER_KEYS_COLUMN, None)
            if references and ("labels" not in batch or "label_times" not in batch):
                raise ValueError(
                    "Evaluation needs batches with labels and label_times: build them with A2GenDataCollator from "
                    "examples that have action_ids / action_seconds."
                )
            outputs = predict_batch(model, batch, generate=generate)
            if references:
                outputs.update({name: batch[name] for name in LABEL_COLUMNS if name in batch})
                if groups is not None:
                    outputs["group_ids"] = groups
            for name, values in outputs.items():
                collected.setdefault(name, []).append(values.detach().cpu().numpy())
    finally:
        model.train(was_training)
    if not collected:
        raise ValueError("The dataloader is empty: there is nothing to predict.")
    return {name: _concatenate(name, parts) for name, parts in collected.items()}


def evaluate_model(
    model,
    dataloader: Iterable[Mapping[str, torch.Tensor]],
    oracle: Mapping[str, Any] | None = None,
    group_column: str | None = DEFAULT_GROUP_COLUMN,
    progress: bool = False,
    groups: Any = None,
    **metric_options: Any,
) -> dict[str, Any]:
    """
    Runs ``predict_actions`` (and, for models that generate, greedy ``generate``) on every batch of `dataloader`
    (the collator's batches, with labels; :func:`predict_dataloader`) and returns
    :func:`~a2gen_hf.metrics.compute_action_metrics` of it all.

    The next action is the first generated one for A2Gen, :func:`predicted_next_actions` for the baselines; the
    backward-time rate is reported for models that generate. GAUC and NDCG@K / Recall@K group the examples by the
    batches' ``group_column`` tensor (the user by default; a column the batches lack is refused; None: neither is
    reported); ``groups`` `(n,)` (e.g. :func:`user_groups` of the examples: their raw users, which the hashed
    ``user_ids`` can merge) replaces that tensor, one group per example in the dataloader's order. ``oracle`` (the
    simulator's ``oracle_action_prob`` / ``oracle_expected_seconds`` columns, e.g.
    ``dataset.select_columns(list(ORACLE_COLUMNS))[:]``) must list the examples in the dataloader's order (do not
    shuffle it). ``metric_options`` go to ``compute_action_metrics``
    (``top_k``, ``calibration_bins``, ``zero_time_tolerance_seconds``); they are checked before predicting.
    """
    unknown = sorted(set(metric_options) - set(METRIC_OPTIONS))
    if unknown:
        raise ValueError(f"Unknown metric options {unknown}; evaluate_model passes on only {list(METRIC_OPTIONS)}.")
    _metric_options(
        metric_options.get("top_k", DEFAULT_TOP_K), metric_options.get("calibration_bins", DEFAULT_CALIBRATION_BINS),
        metric_options.get("zero_time_tolerance_seconds", 1e-3),
    )
    if (groups is not None or oracle is not None) and isinstance(getattr(dataloader, "sampler", None), RandomSampler):
        # before: the given groups / oracle rows were paired with shuffled examples (a GAUC of 0.264 read as 0.323)
        raise ValueError(
            "groups / oracle list the examples in the data set's order, but the dataloader shuffles them "
            "(shuffle=True): evaluate with a DataLoader(..., shuffle=False)."
        )
    config = model.config
    size = len(dataloader.dataset) if hasattr(getattr(dataloader, "dataset", None), "__len__") else None
    if groups is not None and size is not None:  # before predicting, where the number of examples is known
        _check_groups_length(groups, size, "the dataloader's data set has")
    arrays = predict_dataloader(  # given groups replace the batches' group tensor: it is not collected
        model, dataloader, generate=True, group_column=None if groups is not None else group_column,
        progress=progress, description="evaluating",
    )
    width = config.max_actions + 1
    for name in ("sequences", "sequence_times", *LABEL_COLUMNS):
        if name in arrays and arrays[name].shape[1] < width:
            arrays[name] = _padded_rows(arrays[name], width)
    reference_names = (*LABEL_COLUMNS, "group_ids")
    reference_arrays = {name: arrays.pop(name) for name in reference_names if name in arrays}
    if groups is not None:
        groups = np.asarray(groups)
        _check_groups_length(groups, len(reference_arrays["labels"]), "the dataloader gave")
        reference_arrays["group_ids"] = groups
    if oracle is not None:
        for name in ORACLE_COLUMNS:
            values = _as_array(oracle[name], name, np.float64, 2)
            if len(values) != len(reference_arrays["labels"]):
                raise ValueError(
                    f"oracle[{name!r}] has {len(values)} rows but the dataloader gave {len(reference_arrays['labels'])} "
                    "examples; pass the oracle columns of exactly the evaluated examples, in order."
                )
            reference_arrays[name] = values
    return compute_action_metrics(
        arrays, reference_arrays, config.action_names, config.start_action, config.end_action,
        config.time_log_mean, config.time_log_std, **metric_options,
    )
