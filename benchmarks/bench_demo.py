"""Wall time, CPU time, quality and checkpoint size of ``a2gen demo``, optionally beside another source tree.

    python benchmarks/bench_demo.py                                  # this checkout
    python benchmarks/bench_demo.py --baseline /path/to/old/src       # also an older tree, in the same run

Each demo runs in a fresh process (``python -m a2gen_hf.cli demo``, imports included) with ``OMP_WAIT_POLICY=PASSIVE``,
one after the other. On a shared machine the wall time depends on the load, so the load average is printed before
and after each run, the CPU time (user + system of the process) is given beside the wall time, and the ratio of two
trees is only meaningful within one run of this script. Results go to ``benchmarks/results/demo_bench.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "src"))  # this checkout's a2gen_hf, for its atomic writes (the demos run apart)
from a2gen_hf.output_folders import write_json_atomically, write_text_atomically  # noqa: E402


def source_folder(text: str) -> Path:
    """``--baseline``: an existing ``src/`` folder that holds an ``a2gen_hf`` package, resolved. Any other path would
    leave the demo to import the installed package, i.e. silently time this checkout against itself."""
    path = Path(text).expanduser().resolve()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such folder (give the src/ folder of another checkout)")
    if not (path / "a2gen_hf" / "cli.py").is_file():
        other = (path / "src" / "a2gen_hf" / "cli.py").is_file() and path / "src" != (REPOSITORY / "src").resolve()
        hint = f"; did you mean {path / 'src'}?" if other else ""
        raise argparse.ArgumentTypeError(
            f"{text}: no a2gen_hf package in it (a2gen_hf/cli.py); give the src/ folder of another checkout{hint}"
        )
    if path == (REPOSITORY / "src").resolve():
        raise argparse.ArgumentTypeError(f"{text} is this checkout's own src/: the baseline must be another checkout")
    return path


def folder_megabytes(path: Path) -> float:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file()) / 1e6


def run_demo(source: Path, label: str, extra: list[str]) -> dict:
    output = Path(tempfile.mkdtemp(prefix=f"demo_{label.replace(' ', '_')}_"))
    environment = {**os.environ, "PYTHONPATH": str(source), "OMP_WAIT_POLICY": "PASSIVE"}
    load_before = os.getloadavg()
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "a2gen_hf.cli", "demo", "--output", str(output), *extra],
        env=environment, capture_output=True, text=True,
    )
    wall = time.perf_counter() - started
    usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        if completed.returncode != 0:
            raise SystemExit(f"{label}: the demo failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
        return _run_record(output, label, source, wall, usage_before, usage_after, load_before, completed.stdout)
    finally:  # before: every run left its demo folder (data, checkpoint) in the temporary folder
        shutil.rmtree(output, ignore_errors=True)


def _run_record(output: Path, label: str, source: Path, wall: float, usage_before, usage_after, load_before,
                printed: str) -> dict:
    """One run's figures, read from its demo folder ``output``."""
    results = json.loads((output / "demo_results.json").read_text())
    mean_auc = {model: metrics.get("mean_auc") for model, metrics in results.items() if isinstance(metrics, dict)}
    return {
        "label": label,
        "source": str(source),
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(
            usage_after.ru_utime + usage_after.ru_stime - usage_before.ru_utime - usage_before.ru_stime, 1
        ),
        "load_before": [round(value, 2) for value in load_before],
        "load_after": [round(value, 2) for value in os.getloadavg()],
        "mean_auc": mean_auc,
        "checkpoint_mb": round(folder_megabytes(output / "checkpoint"), 2),
        "printed": printed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=source_folder,
                        help="src/ folder of another checkout to time first (e.g. the main branch)")
    parser.add_argument("--output", default=str(REPOSITORY / "benchmarks" / "results"), help="folder for the results")
    parser.add_argument("demo_args", nargs="*", help="extra options for `a2gen demo` (after --)")
    args = parser.parse_args()
    runs = []
    if args.baseline:
        runs.append(run_demo(args.baseline, "baseline", args.demo_args))
    runs.append(run_demo(REPOSITORY / "src", "this checkout", args.demo_args))
    lines = [
        "# `a2gen demo`",
        "",
        f"{os.cpu_count()} CPUs, torch threads: the demo's default; OMP_WAIT_POLICY=PASSIVE. Load averages (1, 5, 15 "
        "min) before and after each run: a busy machine is slower.",
        "",
        "| run | wall s | CPU s | load before | load after | mean AUC | checkpoint MB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        auc = ", ".join(f"{model} {value:.4f}" for model, value in run["mean_auc"].items() if value is not None)
        lines.append(
            f"| {run['label']} | {run['wall_seconds']} | {run['cpu_seconds']} | {run['load_before']} | "
            f"{run['load_after']} | {auc} | {run['checkpoint_mb']} |"
        )
    if len(runs) == 2:
        lines += ["", f"wall ratio baseline / this checkout: {runs[0]['wall_seconds'] / runs[1]['wall_seconds']:.2f}; "
                  f"CPU ratio: {runs[0]['cpu_seconds'] / runs[1]['cpu_seconds']:.2f}"]
    report = "\n".join(lines) + "\n"
    print(report)
    for run in runs:
        print(f"--- {run['label']} printed:\n{run['printed']}")
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    write_json_atomically(output / "demo_bench.json", runs)
    write_text_atomically(output / "demo_bench.md", report)


if __name__ == "__main__":
    main()
