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

- :func:`give_back_the_median_times`: the times, unless the trained ones' validation MAE is below the median's by
  more than the validation examples' noise (per action with ``config.time_per_action``, where an action without
  validation times goes back too: trained times are kept only on evidence; :func:`clearly_lower`);
- :func:`give_back_to_the_regression`: each ranked action whose validation AUC the network does not raise above the
  regression's (with the fitted residual only: the plain residual start trains the wide path too).

:func:`give_back_to_the_start` applies both; ``a2gen train``, ``a2gen compare`` and the quality benchmark call it.
"""

from __future__ import annotations

import copy
import logging
import math

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.collator import A2GenDataCollator, collation_rows
from ..metrics import predict_dataloader
from ..metrics.action_metrics import action_targets
from .residual_fit import actions_not_clearly_raised, head_scores, read_head_inputs, zero_learned_paths
from .simple_baselines import ActionTargets, set_median_times

logger = logging.getLogger(__name__)


def _validation_time_errors(model: nn.Module, dataset, collator: A2GenDataCollator, batch_size: int) -> dict:
    """Per timed action (all but start), the absolute errors `(m,)` of ``model``'s normalised first-occurrence times
    on the ``dataset`` examples where the action happens with a known time, in the examples' order: the terms whose
    mean is :func:`~a2gen_hf.metrics.timing_mae`'s ``mae`` (a test holds them equal)."""
    arrays = predict_dataloader(model, DataLoader(collation_rows(dataset), batch_size=batch_size, collate_fn=collator))
    config = model.config
    _, times, known = action_targets(
        arrays["labels"], arrays["label_times"], arrays.get("label_time_mask"), config.vocab_size
    )
    predicted = arrays["expected_times"]
    return {
        name: np.abs(predicted[known[:, action], action] - times[known[:, action], action])
        for action, name in enumerate(config.action_names, start=1)
        if name != config.start_action
    }


# One-sided 95 % normal quantile: trained times are kept only where their validation MAE is below the median's by more
# than this many standard errors of the paired difference.
CLEARLY_LOWER_Z = 1.645


def clearly_lower(trained: list[np.ndarray], median: list[np.ndarray], z: float = CLEARLY_LOWER_Z) -> bool:
    """
    Whether the trained times' MAE is below the median's by more than the validation examples' noise: with per action
    the paired differences ``d = |trained error| - |median error|`` over the same examples, the mean over actions of
    their means (the difference of the MAEs the reports average) plus ``z`` standard errors (``sqrt(sum_a var(d_a) /
    n_a) / A``, actions taken as independent) is below 0. Actions with no example are left out; with none at all there
    is nothing to judge by and this returns True (the paper's one time head, judged over every action at once, then
    keeps its trained times; one action's time row without examples goes back instead,
    :func:`give_back_the_median_times`). An action with one example takes the mean variance of the
    others; one example alone (no variance to estimate) is never clear. On the small logs the recipe is for, a buy
    time judged on 21-37 validation examples was kept by a lower MAE that test then reversed on three logs of five
    (docs/results.md (d)).
    """
    differences = [t - m for t, m in zip(trained, median) if len(t)]
    if not differences:
        return True
    estimated = [d.var(ddof=1) for d in differences if len(d) > 1]
    if not estimated:
        return False
    variances = [d.var(ddof=1) if len(d) > 1 else float(np.mean(estimated)) for d in differences]
    mean = float(np.mean([d.mean() for d in differences]))
    error = math.sqrt(sum(variance / len(d) for variance, d in zip(variances, differences))) / len(differences)
    return mean + z * error < 0


def give_back_the_median_times(model: nn.Module, tokenizer, dataset, batch_size: int = 1024) -> list[str]:
    """
    The generator's time layer (its final :class:`~a2gen_hf.modeling_a2gen.A2GenActionHeads`' time, the one the
    reported times come from; IAG's auxiliary heads, which feed its CAM_gen, stay as trained) back at the constant
    median of ``dataset["train"]`` (:func:`~a2gen_hf.training.simple_baselines.set_median_times`) unless the trained
    layer's validation time MAE (:func:`~a2gen_hf.metrics.timing_mae` on ``dataset["validation"]``) is clearly below
    the median's (:func:`clearly_lower`: by more than the noise of the validation examples): with the paper's one
    time per position, for every action at once by the mean over actions (kept where validation has no known time at
    all); with ``config.time_per_action``, per action (that action's row; an action without a known validation time
    goes back, as nothing shows its trained times better, :func:`_trained_row_kept`). Returns the names of the actions
    whose times went back; none when the model has no time heads (MMoE, PLE: their times are their own).
    """
    generator = getattr(model, "generator", None)  # MMoE and PLE have none
    if generator is None:
        return []
    head = generator.heads.time
    trained_state = copy.deepcopy(head.state_dict())
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    targets = ActionTargets.from_dataset(dataset["train"], tokenizer)
    if not targets.known.any():
        return []
    trained = _validation_time_errors(model, dataset["validation"], collator, batch_size)
    set_median_times(head, targets)
    constant = _validation_time_errors(model, dataset["validation"], collator, batch_size)
    with torch.no_grad():
        if head.out_features == 1:  # one time per position: every action's or none
            keep = clearly_lower(list(trained.values()), list(constant.values()))
            given_back = [] if keep else list(trained)
            if not given_back:
                head.load_state_dict(trained_state)
        else:
            given_back = []
            for name in trained:
                if not _trained_row_kept(trained[name], constant[name]):
                    given_back.append(name)
                    continue
                row = model.config.action_names.index(name) + 1
                head.weight[row] = trained_state["weight"][row]
                head.bias[row] = trained_state["bias"][row]
    logger.info(
        f"after training, the median times given back for {given_back or 'no action'} (validation MAE trained "
        f"{_rounded(trained)}, the median's {_rounded(constant)})"
    )
    return given_back


def _trained_row_kept(trained: np.ndarray, median: np.ndarray) -> bool:
    """Whether one action's trained time row is kept (``config.time_per_action``): only on evidence, its validation
    errors `(m,)` clearly below the median's (:func:`clearly_lower`); without a validation time (m = 0) it goes back,
    even where the train split held none of its times either."""
    return len(trained) > 0 and clearly_lower([trained], [median])


def _rounded(errors: dict) -> dict:
    """The MAE per action (and the mean over the actions with examples), rounded, for the log line."""
    maes = {name: round(float(values.mean()), 4) for name, values in errors.items() if len(values)}
    return {"mean": round(float(np.mean(list(maes.values()))), 4) if maes else math.nan, **maes}


def give_back_to_the_regression(model: nn.Module, tokenizer, validation, batch_size: int = 1024) -> list[str]:
    """
    After training a residual start: every ranked action whose validation AUC the network does not raise above the
    regression's (the same head with its learned paths at zero,
    :func:`~a2gen_hf.training.residual_fit.actions_not_clearly_raised`) goes back to the regression alone, as in the
    fit. Selection on the *mean* AUC may keep an evaluation that gained on one action and lost on another;
    on a small validation split that is noise as often as not. Returns the names of the actions given back.
    """
    head = model.occurrence_head
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    inputs = read_head_inputs(model, validation, collator, train=False, batch_size=batch_size)
    regression = copy.deepcopy(head).eval()
    zero_learned_paths(regression)
    was_training = head.training
    network = head_scores(head.eval(), inputs)
    head.train(was_training)
    given_back = actions_not_clearly_raised(network, head_scores(regression, inputs), inputs, model.config)
    zero_learned_paths(head, given_back)
    names = [model.config.action_names[action - 1] for action in given_back]
    logger.info(f"after training, the regression alone for {names or 'no action'} (validation AUC not raised)")
    return names


def give_back_to_the_start(model: nn.Module, tokenizer, dataset, ranking: bool) -> dict[str, bool | list[str]]:
    """
    Both rules of this module on a trained residual start: :func:`give_back_the_median_times`, and with ``ranking``
    (the start had a fitted residual, ``wide_residual_fit``) :func:`give_back_to_the_regression`. ``dataset`` needs
    its ``train`` and ``validation`` splits. Returns ``{"median_times_for": the actions whose times went back to the
    median, "regression_for": the actions given back to the regression}``; nothing is given back when ``dataset`` has
    no validation split.
    """
    if dataset.get("validation") is None or not len(dataset["validation"]):
        logger.info("after training, nothing given back to the start: the data has no validation split to judge by")
        return {"median_times_for": [], "regression_for": []}
    regression_for = give_back_to_the_regression(model, tokenizer, dataset["validation"]) if ranking else []
    median_times_for = give_back_the_median_times(model, tokenizer, dataset)
    return {"median_times_for": median_times_for, "regression_for": regression_for}
