"""Wall time of ``a2gen --help`` and ``a2gen COMMAND --help`` for every command (issue 16: under one second).

    python benchmarks/bench_cli_help.py              # 5 runs per command
    python benchmarks/bench_cli_help.py --runs 9

Each run is a fresh process (``python -m a2gen_hf.cli ... --help``, interpreter start and imports included), timed
from start to exit; the median and the slowest of the runs are reported with the load average before and after, and
the heavy modules the parser imported (none expected: torch, transformers, datasets and numpy are imported only when
a command runs). Results go to ``benchmarks/results/cli_help.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
if str(REPOSITORY / "benchmarks") not in sys.path:  # loaded from elsewhere: the flag checkers beside this script
    sys.path.insert(0, str(REPOSITORY / "benchmarks"))
from _arguments import positive_int  # noqa: E402

HEAVY_MODULES = ("torch", "transformers", "datasets", "numpy")
PROBE = (
    "import sys\nfrom a2gen_hf import cli\nparser = cli.build_parser()\n"
    "print(sorted(name for name in {heavy!r} if name in sys.modules))"
)


def commands() -> list[list[str]]:
    sys.path.insert(0, str(REPOSITORY / "src"))
    from a2gen_hf.cli import COMMANDS

    return [[], *([name] for name in COMMANDS), ["plot"]]


def time_help(command: list[str], runs: int, environment: dict[str, str]) -> list[float]:
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        completed = subprocess.run([sys.executable, "-m", "a2gen_hf.cli", *command, "--help"], env=environment,
                                   capture_output=True, text=True)
        seconds.append(time.perf_counter() - started)
        if completed.returncode != 0:
            raise SystemExit(f"a2gen {' '.join(command)} --help exited with {completed.returncode}: {completed.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=positive_int, default=5, help="runs per command (default: 5)")
    parser.add_argument("--output", default=str(REPOSITORY / "benchmarks" / "results"), help="folder for the results")
    args = parser.parse_args()
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY / "src"), "OMP_WAIT_POLICY": "PASSIVE"}
    heavy = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY_MODULES)], env=environment,
                           capture_output=True, text=True, check=True).stdout.strip()
    load_before = os.getloadavg()
    rows = []
    for command in commands():
        seconds = time_help(command, args.runs, environment)
        name = " ".join(["a2gen", *command, "--help"])
        rows.append({"command": name, "median_s": statistics.median(seconds), "max_s": max(seconds), "runs": seconds})
        print(f"{name:<28} median {rows[-1]['median_s']:.3f} s, slowest {rows[-1]['max_s']:.3f} s", flush=True)
    load_after = os.getloadavg()
    result = {
        "runs_per_command": args.runs,
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "heavy_modules_imported_by_the_parser": heavy,
        "python": sys.version.split()[0],
        "commands": rows,
    }
    print(f"load average before {load_before}, after {load_after}; heavy modules the parser imports: {heavy}")
    from a2gen_hf.output_folders import write_json_atomically, write_text_atomically  # src/ is on the path (commands)

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    write_json_atomically(output / "cli_help.json", result)
    lines = [
        f"Wall time of `--help`, {args.runs} fresh processes each (`python benchmarks/bench_cli_help.py`); "
        f"{os.cpu_count()} CPUs, load average {load_before[0]:.2f} before and {load_after[0]:.2f} after; heavy "
        f"modules imported by the parser: {heavy}.",
        "",
        "| command | median (s) | slowest (s) |",
        "| --- | --- | --- |",
        *(f"| `{row['command']}` | {row['median_s']:.3f} | {row['max_s']:.3f} |" for row in rows),
    ]
    write_text_atomically(output / "cli_help.md", "\n".join(lines) + "\n")
    print(f"written to {output / 'cli_help.json'} and cli_help.md")


if __name__ == "__main__":
    main()
