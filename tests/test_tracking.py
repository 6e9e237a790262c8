"""Experiment tracking and warmup on the Accelerate path: transformers' schedules, Accelerate's trackers."""

import math

import pytest
import torch
from accelerate import Accelerator
from conftest import RecordingTracker
from transformers import get_scheduler

from a2gen_hf.data import A2GenDataCollator
from a2gen_hf.training.data_setup import create_model, load_data_dir
from a2gen_hf.training.loop import LR_SCHEDULES, TrainingSettings, learning_rate_factor, make_accelerator, train

TINY = {"hidden_size": 16, "id_embedding_size": 16}


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.mark.parametrize("schedule", LR_SCHEDULES)
def test_learning_rate_factor_is_transformers_schedule(schedule):
    total, warmup = 12, 3
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    name = "constant_with_warmup" if schedule in ("constant", "plateau") else schedule  # plateau scales on evaluations
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)
    for step in range(total):
        assert learning_rate_factor(schedule, step, total, warmup) == pytest.approx(optimizer.param_groups[0]["lr"] / 2)
        optimizer.step()
        scheduler.step()
    # Without warmup: 1 at the start, then the documented decay.
    assert learning_rate_factor(schedule, 0, total) == 1.0
    expected = {"constant": 1.0, "plateau": 1.0, "linear": 0.5, "cosine": 0.5}[schedule]
    assert learning_rate_factor(schedule, 6, total) == pytest.approx(expected)


def test_settings_refuse_bad_tracking_and_warmup(tmp_path):
    with pytest.raises(ValueError, match="unknown \\['tensorbored'\\]"):
        TrainingSettings(output_dir=str(tmp_path), report_to="tensorbored")
    with pytest.raises(ValueError, match="warmup_ratio"):
        TrainingSettings(output_dir=str(tmp_path), warmup_ratio=1.5)
    assert TrainingSettings(output_dir=str(tmp_path), warmup_ratio=0.1).warmup_for(95) == 10
    assert TrainingSettings(output_dir=str(tmp_path), warmup_steps=4, warmup_ratio=0.5).warmup_for(95) == 4
    from accelerate.utils import is_aim_available

    if not is_aim_available():
        with pytest.raises(ValueError, match="'aim'\\] is not installed"):
            make_accelerator(TrainingSettings(output_dir=str(tmp_path), report_to="aim", cpu=True))


def small_run(data_dir, tmp_path, **settings):
    dataset, tokenizer, _ = load_data_dir(data_dir)
    torch.manual_seed(0)
    model = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    run = TrainingSettings(output_dir=str(tmp_path / "run"), max_steps=6, batch_size=32, log_every=1,
                           show_progress=False, cpu=True, **settings)
    return run, model, dataset, collator


def test_trackers_get_the_training_log(simulated_data_dir, tmp_path):
    settings, model, dataset, collator = small_run(
        simulated_data_dir, tmp_path, lr_schedule="linear", warmup_steps=3
    )
    tracker = RecordingTracker()
    accelerator = Accelerator(cpu=True, log_with=[tracker])
    result = train(model, dataset["train"], collator, settings, eval_dataset=dataset["validation"],
                   accelerator=accelerator)
    assert tracker.config["lr_schedule"] == "linear" and tracker.config["warmup_steps"] == 3 and tracker.finished
    steps = [(step, values) for step, values in tracker.entries if "loss" in values]
    assert [step for step, _ in steps] == [1, 2, 3, 4, 5, 6]
    # Warmup from 0 over 3 steps, then linear decay to 0 at step 6 (the factor is the one used by each step).
    assert [values["lr_factor"] for _, values in steps] == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0, 2 / 3, 1 / 3])
    assert all(math.isfinite(values["loss"]) for _, values in steps)
    validation = [values for _, values in tracker.entries if "validation_loss" in values]
    assert validation and validation[-1]["validation_loss"] == result.log_history[-1]["validation_loss"]


def test_tensorboard_writes_event_files(simulated_data_dir, tmp_path):
    pytest.importorskip("tensorboard")
    settings, model, dataset, collator = small_run(simulated_data_dir, tmp_path, report_to="tensorboard")
    train(model, dataset["train"], collator, settings)
    events = list((tmp_path / "run" / "tracking").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_cli_train_reports_to_a_missing_tracker_with_one_line(simulated_data_dir, tmp_path, capsys):
    from accelerate.utils import is_aim_available

    from a2gen_hf.cli import main

    if is_aim_available():
        pytest.skip("aim is installed here")
    status = main(["train", "--data", str(simulated_data_dir), "--output", str(tmp_path / "run"), "--max-steps", "1",
                   "--report-to", "aim", "--warmup-steps", "2", "--cpu", "--no-progress"])
    assert status == 2
    assert "a2gen train: error: --report-to 'aim': ['aim'] is not installed" in capsys.readouterr().err


def test_report_to_all_without_any_tracker_says_nothing_is_tracked(tmp_path, monkeypatch, caplog):
    """From a probe: --report-to all with no tracker installed trained without tracking and without a word."""
    import logging

    from a2gen_hf.training import loop

    monkeypatch.setattr(loop, "_tracker_available", lambda name: False)
    with caplog.at_level(logging.WARNING, logger="a2gen_hf.training.loop"):
        loop.make_accelerator(TrainingSettings(output_dir=str(tmp_path), report_to="all", cpu=True))
    assert "none is installed: nothing is tracked" in caplog.text
