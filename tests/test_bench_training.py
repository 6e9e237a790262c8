"""Smoke test of benchmarks/bench_training.py: it runs at tiny sizes and writes the documented JSON (no timing asserted)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_training_quick_writes_json_and_markdown(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, str(ROOT / "benchmarks" / "bench_training.py"), "--quick", "--keep-environment",
        "--threads", "1", "--models", "mmoe,iag", "--tables", "data", "--output", str(tmp_path), "--name", "smoke",
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads((tmp_path / "smoke.json").read_text())
    assert {"settings", "input_pipeline", "rows"} <= set(result)
    assert {"load_average_1_5_15_before", "intra_op_threads", "fp32_matmul_peak_gflops"} <= set(result["settings"])
    assert (result["settings"]["device"], result["settings"]["device_name"]) == ("cpu", "cpu")
    assert {"fetch_rows_median_ms", "collate_median_ms", "input_examples_per_s"} <= set(result["input_pipeline"])
    rows = result["rows"]
    assert [(row["model"], row["updates"]) for row in rows] == [
        ("MMoE", "dense"), ("MMoE", "sparse"), ("A2Gen-IAG", "dense"), ("A2Gen-IAG", "sparse")
    ]
    for row in rows:
        assert {"examples_per_s", "gflop_per_step", "share_of_fp32_peak", "step_median_ms", "collate_ms"} <= set(row)
        assert row["examples_per_s"] > 0 and row["gflop_per_step"] > 0
    assert "| MMoE |" in (tmp_path / "smoke.md").read_text()


def test_bench_training_refuses_a_device_it_cannot_use(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    base = [sys.executable, str(ROOT / "benchmarks" / "bench_training.py"), "--quick", "--keep-environment",
            "--output", str(tmp_path)]
    completed = subprocess.run([*base, "--device", "gpu"], env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 2 and "--device 'gpu'" in completed.stderr and "use cpu, cuda or cuda:N" in completed.stderr
    import torch

    if not torch.cuda.is_available():
        completed = subprocess.run([*base, "--device", "cuda"], env=env, capture_output=True, text=True, timeout=600)
        assert completed.returncode == 2 and "no CUDA device is visible" in completed.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_bench_environment_sets_the_wait_policy_the_run_asks_for(tmp_path):
    """--wait-policy wins, else the caller's OMP_WAIT_POLICY, else PASSIVE; "default" leaves it unset; the caller's
    allocator settings win; the re-run process records what it ran with."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_environment as environment
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    base = {"PATH": "/bin", "MALLOC_TRIM_THRESHOLD_": "1"}
    assert environment.environment([], base)["OMP_WAIT_POLICY"] == "PASSIVE"
    assert environment.environment(["--wait-policy", "ACTIVE"], base)["OMP_WAIT_POLICY"] == "ACTIVE"
    assert environment.environment([], {**base, "OMP_WAIT_POLICY": "ACTIVE"})["OMP_WAIT_POLICY"] == "ACTIVE"
    unset = environment.environment(["--wait-policy=default"], {**base, "OMP_WAIT_POLICY": "ACTIVE"})
    assert "OMP_WAIT_POLICY" not in unset and unset[environment.RERUN_MARKER] == "1"
    assert (unset["MALLOC_TRIM_THRESHOLD_"], unset["MALLOC_MMAP_THRESHOLD_"], unset["PATH"]) == ("1", "33554432", "/bin")
    try:
        environment.wait_policy(["--wait-policy", "spin"])
    except SystemExit as error:
        assert "'spin' is not one of PASSIVE, ACTIVE, default" in str(error)
    else:
        raise AssertionError("an unknown policy must be refused")
    # End to end: the script re-runs itself once and records the policy it ran with (null: OpenMP's default).
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_WAIT_POLICY", environment.RERUN_MARKER)}
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_training.py"), "--quick", "--wait-policy", "ACTIVE",
               "--threads", "1", "--models", "mmoe", "--tables", "data", "--updates", "sparse",
               "--output", str(tmp_path), "--name", "policy"]
    completed = subprocess.run(command, env={**env, "PYTHONPATH": str(ROOT / "src")}, capture_output=True, text=True,
                               timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert json.loads((tmp_path / "policy.json").read_text())["settings"]["OMP_WAIT_POLICY"] == "ACTIVE"
