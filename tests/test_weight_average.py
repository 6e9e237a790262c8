"""The weights' moving average (``TrainingSettings.ema_decay``, ``--ema-decay``): its arithmetic, what a run
evaluates, selects and returns, and its place in checkpoints and resumes."""

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from a2gen_hf.cli import main
from a2gen_hf.training.loop import CHECKPOINT_MANIFEST, TrainingSettings, latest_checkpoint
from a2gen_hf.training.weight_average import WEIGHT_AVERAGE_FILE, WeightAverage

FLAGS = ["--hidden-size", "16", "--id-embedding-size", "16", "--no-progress", "--batch-size", "64", "--cpu",
         "--dense-lr", "0.01", "--embedding-lr", "0.01"]  # fmt: skip


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    model[1].bias.requires_grad_(False)
    return model


def test_average_keeps_decay_per_step_whatever_the_update_interval():
    model = _model()
    start = [p.detach().clone() for p in model.parameters()]
    every_step, every_third = WeightAverage(model, 0.9), WeightAverage(model, 0.9, every=3)
    assert "1.bias" not in every_step.names  # frozen: not averaged
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert every_step.update(1) and not every_third.update(1) and not every_third.update(2)
    assert every_third.update(3)
    for name, average, first in zip(every_step.names, every_step.averages, start):
        torch.testing.assert_close(average, first + 0.1, msg=name)
    for name, average, first in zip(every_third.names, every_third.averages, start):
        torch.testing.assert_close(average, first + (1 - 0.9**3), msg=name)


def test_warmup_keeps_less_of_the_average_early_on():
    model = _model()
    plain, warmed = WeightAverage(model, 0.99), WeightAverage(model, 0.99, warmup=True)
    assert [warmed.kept(step) for step in (0, 1, 90, 10_000)] == [0.1, 2 / 11, 91 / 100, 0.99]
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    plain.update(1), warmed.update(1)
    torch.testing.assert_close(plain.averages[0], start + 0.01)
    torch.testing.assert_close(warmed.averages[0], start + 9 / 11)  # kept 2/11 of the start at step 1


def test_applied_puts_the_average_in_and_the_weights_back_even_after_an_error():
    model = _model()
    average = WeightAverage(model, 0.5)
    with torch.no_grad():
        model[0].weight.mul_(3.0)
    average.update(1)
    trained = model[0].weight.detach().clone()
    with pytest.raises(RuntimeError, match="inside"):
        with average.applied():
            torch.testing.assert_close(model[0].weight, average.averages[0])
            assert not torch.equal(model[0].weight, trained)
            raise RuntimeError("inside")
    torch.testing.assert_close(model[0].weight, trained, rtol=0, atol=0)


def test_a_failed_save_keeps_the_file_before_and_leaves_no_partial_file(tmp_path, monkeypatch):
    """The save wrote a fixed '.partial' name and left it behind when the write failed (a full disk)."""
    import a2gen_hf.training.weight_average as weight_average

    average = WeightAverage(nn.Linear(3, 2), 0.9)
    saved = average.save(tmp_path)
    before = saved.read_bytes()

    def half_written(tensors, filename):
        with open(filename, "wb") as handle:
            handle.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(weight_average, "save_file", half_written)
    with pytest.raises(OSError, match="No space left"):
        average.save(tmp_path)
    assert saved.read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == [WEIGHT_AVERAGE_FILE]


def test_load_state_dict_refuses_another_models_average():
    model = _model()
    average = WeightAverage(model, 0.9)
    state = {name: tensor.clone() for name, tensor in average.state_dict().items()}
    with pytest.raises(ValueError, match=r"missing \['0.weight'\]"):
        average.load_state_dict({k: v for k, v in state.items() if k != "0.weight"}, source="ckpt/file")
    with pytest.raises(ValueError, match=r"ckpt/file: 0.weight has shape \(1, 1\)"):
        average.load_state_dict({**state, "0.weight": torch.zeros(1, 1)}, source="ckpt/file")
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        average.load_state_dict({**{k: v + 5 for k, v in state.items()}, "0.bias": torch.full((2,), float("nan"))})
    torch.testing.assert_close(average.averages[0], state["0.weight"], rtol=0, atol=0)  # nothing taken
    average.load_state_dict({k: v + 1 for k, v in state.items()})
    torch.testing.assert_close(average.averages[0], state["0.weight"] + 1)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"ema_decay": 1.0}, "must be in"),
        ({"ema_decay": 0.0}, "must be in"),
        ({"ema_decay": 0.9, "ema_every_steps": 0}, "ema_every_steps=0"),
        # each names only what was set (before: "ema_every_steps=5 and ema_warmup=False" for --ema-every 5 alone)
        ({"ema_every_steps": 5}, r"^ema_every_steps=5 shapes .*set ema_decay too .* or leave ema_every_steps at 1\.$"),
        ({"ema_warmup": True}, r"^ema_warmup=True shapes .*set ema_decay too .* or leave ema_warmup False\.$"),
    ],
)
def test_settings_refuse_an_impossible_average(tmp_path, values, message):
    with pytest.raises(ValueError, match=message):
        TrainingSettings(output_dir=str(tmp_path), **values)


def test_a_run_evaluates_selects_and_returns_the_average(simulated_data_dir, tmp_path):
    """Without selection the saved model is the last checkpoint's average, not its trained weights; with selection
    the best evaluation's saved weights are the average at that step."""
    last = tmp_path / "last"
    common = [*FLAGS, "--data", str(simulated_data_dir), "--ema-decay", "0.5", "--checkpoint-every", "2",
              "--keep-checkpoints", "0", "--max-steps", "4"]  # fmt: skip
    assert main(["train", *common, "--output", str(last), "--no-best-epoch"]) == 0
    saved = load_file(str(last / "model" / "model.safetensors"))
    checkpoint = latest_checkpoint(last)
    assert checkpoint.name == "checkpoint-4"
    average, trained = (load_file(str(checkpoint / name)) for name in (WEIGHT_AVERAGE_FILE, "model.safetensors"))
    shared = [name for name in average if name in saved]
    assert len(shared) > 5
    for name in shared:
        torch.testing.assert_close(saved[name], average[name], rtol=0, atol=0, msg=name)
    assert any(not torch.equal(average[name], trained[name]) for name in shared)

    best = tmp_path / "best"
    assert main(["train", *common, "--output", str(best), "--eval-every", "2", "--select-by", "mean_auc"]) == 0
    best_step = json.loads((best / "training_log.json").read_text())["best_step"]
    selected = load_file(str(best / "model" / "model.safetensors"))
    average = load_file(str(best / f"checkpoint-{best_step}" / WEIGHT_AVERAGE_FILE))
    for name in shared:
        torch.testing.assert_close(selected[name], average[name], rtol=0, atol=0, msg=name)


def test_a_resumed_run_keeps_the_average_and_its_settings(simulated_data_dir, tmp_path, capsys):
    common = [*FLAGS, "--data", str(simulated_data_dir), "--ema-decay", "0.8", "--ema-every", "2",
              "--checkpoint-every", "2", "--no-best-epoch"]  # fmt: skip
    assert main(["train", *common, "--output", str(tmp_path / "whole"), "--max-steps", "6"]) == 0
    resumed = tmp_path / "resumed"
    assert main(["train", *common, "--output", str(resumed), "--max-steps", "4"]) == 0
    assert main(["train", *common, "--output", str(resumed), "--max-steps", "6", "--resume"]) == 0
    whole, again = (load_file(str(tmp_path / name / "model" / "model.safetensors")) for name in ("whole", "resumed"))
    for name, tensor in whole.items():
        torch.testing.assert_close(again[name], tensor, rtol=0, atol=1e-6, msg=name)

    other = [value if value != "0.8" else "0.9" for value in common]
    assert main(["train", *other, "--output", str(resumed), "--max-steps", "8", "--resume"]) == 2
    assert "settings.ema_decay (--ema-decay): checkpoint 0.8, now 0.9" in capsys.readouterr().err
    # A checkpoint whose manifest lists no average (as one written without --ema-decay would) is refused by name.
    manifest_path = latest_checkpoint(resumed) / CHECKPOINT_MANIFEST
    manifest = json.loads(manifest_path.read_text())
    del manifest["files"][WEIGHT_AVERAGE_FILE]
    manifest_path.write_text(json.dumps(manifest))
    assert main(["train", *common, "--output", str(resumed), "--max-steps", "8", "--resume"]) == 2
    assert f"holds no {WEIGHT_AVERAGE_FILE}" in capsys.readouterr().err
