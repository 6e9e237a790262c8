"""
After training a residual start: what training did not improve on validation goes back to the start.

The ``sparse_logs`` recipe starts A2Gen as the logistic regression on counts
(:func:`~a2gen_hf.training.simple_baselines.start_from_regression`, ``residual=True``): the regression in the wide
path, its time heads at the train split's median time (the constant-median rule), and, with ``fit_residual``, a
network on the counts fitted on top (:mod:`~a2gen_hf.training.residual_fit`). Training then goes on from there and
selection keeps the evaluation with the best validation *mean AUC*. That choice reads the ranking only, and the mean
over actions: an evaluation may gain on one action and lose on another, and it carries whatever time heads training
had reached by then. On a small log both are noise as often as not (docs/results.md (d)). So after training, per
part of the model the start could give, the start is given back where it is at least as good on validation:

- :func:`give_back_the_median_times`: the time heads, when the trained ones' validation MAE is not below the
  median's;
- :func:`give_back_to_the_regression`: each ranked action whose validation AUC the network does not raise above the
  regression's (with the fitted residual only: the plain residual start trains the wide path too).

:func:`give_back_to_the_start` applies both; ``a2gen train``, ``a2gen compare`` and the quality benchmark call it.
"""

from __future__ import annotations

import copy
import logging
import math

from torch import nn
from torch.utils.data import DataLoader

from ..data.collator import A2GenDataCollator
from ..metrics import predict_dataloader, timing_mae
from .residual_fit import action_aucs, read_head_inputs, zero_learned_paths
from .simple_baselines import ActionTargets, start_times_at_the_median, time_heads

logger = logging.getLogger(__name__)


def validation_time_mae(model: nn.Module, dataset, collator: A2GenDataCollator, batch_size: int = 1024) -> float:
    """The mean over actions of the first-occurrence time MAE (normalised units, :func:`~a2gen_hf.metrics.timing_mae`,
    the measure of the reports) of ``model``'s expected times on ``dataset``; NaN when no action has a known time."""
    arrays = predict_dataloader(model, DataLoader(dataset, batch_size=batch_size, collate_fn=collator))
    config = model.config
    return timing_mae(
        arrays["expected_times"],
        arrays["labels"],
        arrays["label_times"],
        arrays.get("label_time_mask"),
        config.action_names,
        config.start_action,
        config.end_action,
    )["mean_mae"]


def give_back_the_median_times(model: nn.Module, tokenizer, dataset, batch_size: int = 1024) -> bool:
    """
    The time heads back at the start's constant median (:func:`~a2gen_hf.training.simple_baselines.
    start_times_at_the_median`, the median of ``dataset["train"]``) when the trained heads' validation time MAE
    (:func:`validation_time_mae` on ``dataset["validation"]``) is not below it. Returns whether they were given back;
    nothing changes when the model has no time heads or validation has no known time.
    """
    heads = time_heads(model)
    if not heads:  # not an A2Gen generator (a baseline): its times are its own
        return False
    trained_heads = [copy.deepcopy(head.state_dict()) for head in heads]
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    trained = validation_time_mae(model, dataset["validation"], collator, batch_size)
    if start_times_at_the_median(model, ActionTargets.from_dataset(dataset["train"], tokenizer)) is None:
        return False
    constant = validation_time_mae(model, dataset["validation"], collator, batch_size)
    if math.isnan(trained) or math.isnan(constant) or trained < constant:
        for head, state in zip(heads, trained_heads):
            head.load_state_dict(state)
        logger.info(
            f"after training, the trained times kept (validation MAE {trained:.4f}, the median's {constant:.4f})"
        )
        return False
    logger.info(
        f"after training, the median times given back (validation MAE {trained:.4f}, the median's {constant:.4f})"
    )
    return True


def give_back_to_the_regression(model: nn.Module, tokenizer, validation, batch_size: int = 1024) -> list[str]:
    """
    After training a residual start: every ranked action whose validation AUC the network does not raise above the
    regression's (the same head with its learned paths at zero) goes back to the regression alone, as in the fit.
    Selection on the *mean* AUC may keep an evaluation that gained on one action and lost on another; on a small
    validation split that is noise as often as not. Returns the names of the actions given back.
    """
    head = model.occurrence_head
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    inputs = read_head_inputs(model, validation, collator, train=False, batch_size=batch_size)
    regression = copy.deepcopy(head).eval()
    zero_learned_paths(regression)
    was_training = head.training
    network = action_aucs(head.eval(), inputs, model.config)
    head.train(was_training)
    alone = action_aucs(regression, inputs, model.config)
    given_back = [action for action, auc in network.items() if auc <= alone[action]]
    zero_learned_paths(head, given_back)
    names = [model.config.action_names[action - 1] for action in given_back]
    logger.info(f"after training, the regression alone for {names or 'no action'} (validation AUC not raised)")
    return names


def give_back_to_the_start(model: nn.Module, tokenizer, dataset, ranking: bool) -> dict[str, bool | list[str]]:
    """
    Both rules of this module on a trained residual start: :func:`give_back_the_median_times`, and with ``ranking``
    (the start had a fitted residual, ``wide_residual_fit``) :func:`give_back_to_the_regression`. ``dataset`` needs
    its ``train`` and ``validation`` splits. Returns ``{"median_times": given back or not, "regression_for": the
    actions given back to the regression}``; nothing is given back when ``dataset`` has no validation split.
    """
    if dataset.get("validation") is None or not len(dataset["validation"]):
        logger.info("after training, nothing given back to the start: the data has no validation split to judge by")
        return {"median_times": False, "regression_for": []}
    regression_for = give_back_to_the_regression(model, tokenizer, dataset["validation"]) if ranking else []
    return {"median_times": give_back_the_median_times(model, tokenizer, dataset), "regression_for": regression_for}
