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
    assert {"fetch_rows_median_ms", "collate_median_ms", "input_examples_per_s"} <= set(result["input_pipeline"])
    rows = result["rows"]
    assert [(row["model"], row["updates"]) for row in rows] == [
        ("MMoE", "dense"), ("MMoE", "sparse"), ("A2Gen-IAG", "dense"), ("A2Gen-IAG", "sparse")
    ]
    for row in rows:
        assert {"examples_per_s", "gflop_per_step", "share_of_fp32_peak", "step_median_ms", "collate_ms"} <= set(row)
        assert row["examples_per_s"] > 0 and row["gflop_per_step"] > 0
    assert "| MMoE |" in (tmp_path / "smoke.md").read_text()
