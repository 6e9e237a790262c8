"""benchmarks/simulator_ceiling.py: events are attributed to the topic on screen at their moment, history windows
sum the right sessions, and the script reports every feature set at every size on a tiny simulation."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from a2gen_hf.data.simulator import SimulatorConfig, build_catalog

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("simulator_ceiling", ROOT / "benchmarks" / "simulator_ceiling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_events_go_to_the_topic_on_screen_and_reflexes_apart():
    script = load_script()
    config = SimulatorConfig(num_examples=40, seed=0)
    catalog = build_catalog(config)
    item = int(np.argmax(catalog.durations >= 9))  # a video of at least 9 seconds
    topics = catalog.tick_topics[item]
    # start, like at 0.3 s (a reflex), comment at 5.4 s, leave at 7.6 s (early); ids: like 2, comment 5, leave 6.
    timeline = ([1, 2, 5, 6], [0.0, 0.3, 5.4, 7.6])
    stats = script.session_statistics(catalog, np.array([item]), [timeline], config.num_topics)
    assert stats["reflexes"][0] == 1 and stats["counts"][0].tolist() == [1, 0, 0, 1]
    assert stats["timed"][0, 0].sum() == 0  # the reflex like says nothing about topics
    assert stats["timed"][0, 3, topics[5]] == 1 and stats["timed"][0].sum() == 1
    assert stats["left_on"][0, topics[7]] == 1 and stats["left_on"].sum() == 1
    assert stats["watched"][0].sum() == 8  # seconds 0..7 were on screen
    assert stats["watched_fraction"][0] == pytest.approx(7.6 / catalog.durations[item])


def test_window_sums_add_the_sessions_just_before_each_target():
    script = load_script()
    values = np.arange(6.0)[:, None]  # sessions 0..5; history 3, targets 3 (sessions 3, 4, 5)
    assert script.window_sums(values, 3, 3)[:, 0].tolist() == [0 + 1 + 2, 1 + 2 + 3, 2 + 3 + 4]


def test_ceiling_reports_every_feature_set_and_size(tmp_path, capsys):
    script = load_script()
    report = script.main(["--simulator-examples", "2000", "--users", "60", "--test-users", "60",
                          "--sizes", "300,600", "--output", str(tmp_path)])
    saved = json.loads((tmp_path / "simulator_ceiling.json").read_text())
    assert saved["results"].keys() == set(script.FEATURE_SETS) and report["sizes"] == [300, 600]
    for name in script.FEATURE_SETS:
        for size in ("300", "600"):
            cell = saved["results"][name][size]
            assert set(cell["auc"]) == {"like", "follow", "forward", "comment"} and 0 <= cell["mean_auc"] <= 1
    assert 0.5 < saved["oracle"]["mean_auc"] <= 1
    assert "| timing |" in (tmp_path / "simulator_ceiling.md").read_text()
    assert "timing_parts" not in saved
    with pytest.raises(SystemExit):
        script.main(["--simulator-examples", "2000", "--users", "500", "--output", str(tmp_path)])
    assert "exceed the simulation's 100 users" in capsys.readouterr().err


def test_side_features_spread_a_moment_over_the_opening_and_the_main_topic():
    script = load_script()
    config = SimulatorConfig(num_examples=40, seed=0)
    catalog = build_catalog(config)
    items = np.array([0, 0, 0])
    spread = script.side_topic_at(config, catalog, items, np.array([1.5, 6.2, 12.0]))
    assert np.allclose(spread.sum(axis=1), 1.0)
    opening, main = catalog.segment_topics[0, 0], catalog.main_topics[0]
    assert spread[0, opening] == pytest.approx(1.0)  # the opening segment lasts at least 3 s
    later = config.main_topic_prob + (1 - config.main_topic_prob) / config.num_topics
    assert spread[2, main] == pytest.approx(later)  # past 10 s the opening segment is over
    assert 0 < spread[1, opening] < 1


def test_timing_parts_cover_the_timing_set_cumulatively(tmp_path):
    """--timing-parts: trees and a logistic regression on cumulative groups of the timing set's columns, the last
    group being the whole set (the same trees' AUC as the timing row), at the largest size."""
    script = load_script()
    report = script.main(["--simulator-examples", "2000", "--users", "60", "--test-users", "60",
                          "--sizes", "300,600", "--timing-parts", "--output", str(tmp_path)])
    widths = list(script.timing_parts(8).values())
    assert widths == sorted(widths) and widths[0] == 4
    config = script.SimulatorConfig(num_examples=2000, seed=0)
    data = script.gather(config, 2, 2)
    assert data["train"]["timing"].shape[1] == widths[-1]  # the last group is every column of the timing set
    parts = report["timing_parts"]
    assert list(parts) == list(script.timing_parts(8)) and report["timing_parts_size"] == 600
    whole = parts[list(parts)[-1]]["trees"]
    assert whole["auc"] == pytest.approx(report["results"]["timing"]["600"]["auc"])
    assert all(0 <= cell[learner]["mean_auc"] <= 1 for cell in parts.values() for learner in ("trees", "logistic regression"))
    assert "| + early leaves on the target's topics |" in (tmp_path / "simulator_ceiling.md").read_text()
