"""Validation selection scores a batch as evaluation does: ``validation_mean_auc`` reads the model's scores through
``metrics.predict_batch`` (one definition of "the model's scores for a batch"), and its AUCs are evaluate_model's
on the same split, and those of the loop it had of its own (predict_actions + first_occurrence_targets)."""

import math

import pytest
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from a2gen_hf.data.collator import A2GenDataCollator, collation_rows
from a2gen_hf.metrics import evaluate_model, ranked_action_aucs
from a2gen_hf.targets import first_occurrence_targets
from a2gen_hf.training.data_setup import create_model, load_data_dir
from a2gen_hf.training.loop import TrainingSettings, validation_mean_auc

TINY = {"hidden_size": 16, "id_embedding_size": 16}


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def loaded(simulated_data_dir):
    return load_data_dir(simulated_data_dir)


def _model(name, tokenizer, data):
    torch.manual_seed(0)
    model = create_model(name, tokenizer, data, **TINY)
    with torch.no_grad():  # weights off their start, so that every action's scores spread
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


@torch.no_grad()
def _own_loop_aucs(model, dataset, collator, batch_size, accelerator):
    """What validation_mean_auc computed before it called predict_batch (one process)."""
    model.eval()
    scores, targets = [], []
    for batch in DataLoader(collation_rows(dataset), batch_size=batch_size, collate_fn=collator):
        with accelerator.autocast():
            prediction = model.predict_actions(**batch)
        scores.append(prediction.action_probabilities.float())
        targets.append(first_occurrence_targets(batch["labels"], batch["label_times"], None, model.config.vocab_size)[0])
    model.train()
    probabilities = torch.cat(scores).double().numpy()
    occurs = torch.cat(targets).float().double().numpy() > 0.5
    aucs = ranked_action_aucs(occurs, probabilities, model.config)
    return {model.config.action_names[action - 1]: value for action, value in aucs.items()}


@pytest.mark.parametrize(
    ("name", "precision"), [("a2gen-iag", "no"), ("a2gen-eag", "no"), ("mmoe", "no"), ("a2gen-iag", "bf16")]
)
def test_validation_mean_auc_is_evaluations_auc_and_its_own_loops(loaded, name, precision):
    data, tokenizer, _ = loaded
    model = _model(name, tokenizer, data)
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    settings = TrainingSettings(output_dir="unused", eval_batch_size=16)  # several batches, the last one short
    accelerator = Accelerator(cpu=True, mixed_precision=precision)
    validation = data["validation"]
    assert len(validation) > 2 * settings.eval_batch_size

    scored = validation_mean_auc(model, validation, collator, settings, accelerator)

    assert model.training  # given back in training mode
    assert scored["auc"] == _own_loop_aucs(model, validation, collator, settings.eval_batch_size, accelerator)
    assert len(scored["auc"]) >= 2 and len(set(scored["auc"].values())) > 1
    assert scored["mean_auc"] == sum(scored["auc"].values()) / len(scored["auc"])
    if precision == "no":  # evaluation predicts in the model's precision
        evaluated = evaluate_model(model, DataLoader(collation_rows(validation), batch_size=10, collate_fn=collator))
        defined = {action: value for action, value in evaluated["auc"].items() if not math.isnan(value)}
        assert scored["auc"] == pytest.approx(defined, rel=0, abs=1e-12)
        assert scored["mean_auc"] == pytest.approx(evaluated["mean_auc"], rel=0, abs=1e-12)
