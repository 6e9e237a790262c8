"""`a2gen compare`: experiment tracking and warmup for every run (the options of `a2gen train`), and the re-rendering
of a saved report (`a2gen report`)."""

import json

import pytest
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.tracking import GeneralTracker

from a2gen_hf.cli import main
from a2gen_hf.training import compare

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


class RecordingTracker(GeneralTracker):
    """Keeps what the loop logs, in memory (no tracker package is installed offline)."""

    name = "recording"
    requires_logging_directory = False

    def __init__(self):
        super().__init__()
        self.config, self.entries, self.finished = None, [], False

    @property
    def tracker(self):
        return self

    def store_init_configuration(self, values):
        self.config = values

    def log(self, values, step=None, **kwargs):
        self.entries.append((step, dict(values)))

    def finish(self):
        self.finished = True


def compare_argv(data_dir, output, *extra):
    return ["compare", "--data", str(data_dir), "--output", str(output), "--models", "a2gen-iag,mmoe",
            "--simple", "", "--seeds", "1", "--epochs", "1", "--batch-size", "64", "--bootstrap-resamples", "20",
            "--quiet", *extra]


def test_compare_tracks_every_run_with_warmup(simulated_data_dir, tmp_path, monkeypatch, capsys):
    """--report-to and --warmup-steps reach every run's TrainingSettings; the run's Accelerate trackers get the
    settings and the per-step log, whose learning-rate factor follows transformers' warmup then linear decay."""
    runs = []
    real_train = compare.train

    def tracked_train(model, train_dataset, collator, settings, **kwargs):
        tracker = RecordingTracker()
        runs.append((settings, tracker))
        return real_train(model, train_dataset, collator, settings,
                          accelerator=Accelerator(cpu=True, log_with=[tracker]), **kwargs)

    monkeypatch.setattr(compare, "train", tracked_train)
    output = tmp_path / "compare"
    argv = compare_argv(simulated_data_dir, output, "--report-to", "tensorboard", "--warmup-steps", "2",
                        "--lr-schedule", "linear", "--dense-lr", "2e-3", "--log-every", "1")
    assert main(argv) == 0, capsys.readouterr().err
    assert [settings.output_dir for settings, _ in runs] == [
        str(output / "runs" / "a2gen-iag-seed0"), str(output / "runs" / "mmoe-seed0")
    ]
    for settings, tracker in runs:
        assert (settings.report_to, settings.warmup_steps, settings.lr_schedule) == ("tensorboard", 2, "linear")
        assert settings.show_progress is False  # --quiet: no training bars
        assert tracker.config["warmup_steps"] == 2 and tracker.config["dense_learning_rate"] == 2e-3
        assert tracker.finished
        factors = [values["lr_factor"] for _, values in tracker.entries if "lr_factor" in values]
        total = len(factors)
        assert total >= 4
        expected = [step / 2 if step < 2 else (total - step) / (total - 2) for step in range(total)]
        assert factors == pytest.approx(expected)
        assert any("validation_loss" in values for _, values in tracker.entries)
    report = json.loads((output / "results.json").read_text())
    assert report["settings"]["training"]["warmup_steps"] == 2
    assert report["settings"]["training"]["report_to"] == "tensorboard"
    assert "warmup_steps=2" in (output / "results.md").read_text()


def test_compare_names_a_missing_or_unknown_tracker_in_one_line(simulated_data_dir, tmp_path, capsys):
    from accelerate.utils import is_aim_available

    assert main(compare_argv(simulated_data_dir, tmp_path / "a", "--report-to", "tensorbored")) == 2
    err = capsys.readouterr().err
    assert "a2gen compare: error: report_to='tensorbored': unknown ['tensorbored']; use 'none', 'all' or of [" in err
    assert "Traceback" not in err
    if is_aim_available():
        pytest.skip("aim is installed here")
    assert main(compare_argv(simulated_data_dir, tmp_path / "b", "--report-to", "aim")) == 2
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if "a2gen compare: error:" in line)  # tqdm may print before it
    assert line.endswith("report_to='aim': ['aim'] is not installed; install it (tensorboard: pip install "
                         "'a2gen_hf[tracking]') or choose another tracker, or 'none'.")
    assert "Traceback" not in err


def test_compare_writes_tensorboard_event_files_per_run(simulated_data_dir, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    output = tmp_path / "compare"
    assert main(compare_argv(simulated_data_dir, output, "--report-to", "tensorboard", "--warmup-ratio", "0.2")) == 0
    for run in ("a2gen-iag-seed0", "mmoe-seed0"):
        events = list((output / "runs" / run / "tracking").rglob("events.out.tfevents.*"))
        assert events and events[0].stat().st_size > 0
