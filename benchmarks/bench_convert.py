"""Benchmark of ``convert_log`` on a synthetic Taobao-format log.

The log follows the statistics of the real sample (see /work/shared/data/README.md): about 100 rows per user over
the 9-day window, about 0.76 distinct (user, item) pairs per row, behaviours ~90% pv / 5.5% cart / 3% fav / 2% buy,
later fav / cart / buy mostly on items the user viewed before, item popularity Zipf-like, ~10k categories.

    python benchmarks/bench_convert.py --rows 1000000
    python benchmarks/bench_convert.py --rows 10000000 --max-history-items 20

Prints generation time, conversion time (the ``convert_log`` call, imports excluded), rows/s, the CPU time of the
conversion (user + system, workers included: on a shared machine it tells the work from the waiting), the peak
memory of the conversion and the output size. The conversion runs in a fresh process. Its memory is sampled every
50 ms from /proc (Linux) over that process and its workers: the sum of their RSS, which counts the pages a forked
worker shares with its parent (the ~0.5 GiB of imported torch / transformers, among others) once per process, and
the sum of their PSS (proportional set size: each shared page divided among its sharers), the memory the tree
really holds. The peak ``ru_maxrss`` of the conversion process and of its largest worker are printed too.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded from elsewhere: the flag checkers beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _arguments import positive_int  # noqa: E402

WINDOW = (1511539200, 1512316799)
ROWS_PER_USER = 100
NUM_CATEGORIES = 10_000


def generate_log(path: Path, rows: int, seed: int = 0, chunk_users: int = 20_000) -> None:
    """Write a header-less ``user_id,item_id,category_id,behavior_type,timestamp`` CSV of about ``rows`` rows."""
    rng = np.random.default_rng(seed)
    num_users = max(rows // ROWS_PER_USER, 1)
    num_items = max(rows // 3, 1000)
    item_category = rng.integers(1, NUM_CATEGORIES, size=num_items)
    behaviours = np.array(["pv", "fav", "cart", "buy"])
    with pa_csv.CSVWriter(
        str(path),
        pa.schema([(name, pa.string()) for name in ("u", "i", "c", "b")] + [("t", pa.int64())]),
        write_options=pa_csv.WriteOptions(include_header=False, quoting_style="none"),
    ) as writer:
        written = 0
        for first_user in range(0, num_users, chunk_users):
            users = np.arange(first_user, min(first_user + chunk_users, num_users))
            counts = rng.poisson(ROWS_PER_USER, size=len(users)) + 1
            counts[-1] += max(rows - written - int(counts.sum()), 0) if users[-1] == num_users - 1 else 0
            user = np.repeat(users, counts)
            starts = np.repeat(np.cumsum(counts) - counts, counts)
            position = np.arange(len(user)) - starts
            times = np.sort(rng.integers(WINDOW[0], WINDOW[1], size=len(user)) + user * (1 << 32)) - user * (1 << 32)
            # A quarter of the rows return to an item of an earlier row of the same user (at a later time).
            returning = (rng.random(len(user)) < 0.24) & (position > 0)
            # Skewed popularity (the square of a uniform), popular items spread over the id range.
            items = (num_items * rng.random(len(user)) ** 2).astype(np.int64)
            items = (items * 2_654_435_761 + 12_345) % num_items
            earlier = starts + (rng.random(len(user)) * np.maximum(position, 1)).astype(np.int64)
            items[returning] = items[earlier[returning]]
            kind = np.where(
                returning,
                rng.choice(4, size=len(user), p=[0.62, 0.12, 0.17, 0.09]),
                rng.choice(4, size=len(user), p=[0.97, 0.01, 0.015, 0.005]),
            )
            table = pa.table(
                {
                    "u": pa.array((user + 1).astype(str)),
                    "i": pa.array((items + 1).astype(str)),
                    "c": pa.array(item_category[items].astype(str)),
                    "b": pa.array(behaviours[kind]),
                    "t": pa.array(times),
                }
            )
            writer.write_table(table)
            written += len(user)


def convert(path: Path, output: Path, max_history_items: int, partition_rows: int | None, num_proc: int | None, queue):
    from a2gen_hf.data import convert_log

    options = {"num_proc": num_proc}
    if partition_rows is not None:
        options["partition_rows"] = partition_rows
    begin, cpu_begin = time.perf_counter(), os.times()
    result = convert_log(
        path,
        "taobao",
        output_dir=output,
        on_bad_rows="skip",
        max_history_items=max_history_items,
        progress=False,
        **options,
    )
    seconds, cpu_end = time.perf_counter() - begin, os.times()
    cpu_seconds = sum(cpu_end[:4]) - sum(cpu_begin[:4])  # user + system, of the process and its workers
    own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    worker_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    queue.put((seconds, cpu_seconds, own_peak, worker_peak, result.summary))


def _process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (children of every thread), from /proc."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    pending.extend(int(child) for child in handle.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue  # it ended meanwhile
    return tree


def _memory_bytes(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in bytes; zeros once it has ended."""
    sizes = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name in ("Rss", "Pss"):
                    sizes[name] = int(value.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return sizes.get("Rss", 0), sizes.get("Pss", 0)


class TreeMemorySampler(threading.Thread):
    """Samples the summed RSS and PSS of a process and its descendants until stopped; keeps the peaks."""

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_rss = self.peak_pss = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            sizes = [_memory_bytes(pid) for pid in _process_tree(self.pid)]
            self.peak_rss = max(self.peak_rss, sum(rss for rss, _ in sizes))
            self.peak_pss = max(self.peak_pss, sum(pss for _, pss in sizes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=positive_int, default=1_000_000, help="rows of the generated log (>= 1)")
    parser.add_argument("--max-history-items", type=positive_int, default=50)
    parser.add_argument("--partition-rows", type=positive_int, default=None, help="convert_log's partition_rows")
    parser.add_argument("--num-proc", type=positive_int, default=None, help="convert_log's num_proc")
    parser.add_argument("--keep", action="store_true", help="keep the generated log and output (printed path)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="a2gen_bench_"))
    log = folder / "UserBehavior.csv"
    begin = time.perf_counter()
    generate_log(log, args.rows)
    print(f"generated {log.stat().st_size / 2**20:.0f} MiB in {time.perf_counter() - begin:.1f} s")

    # The conversion runs in a fresh process so that its memory is its own (and its workers').
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(
        target=convert,
        args=(log, folder / "out", args.max_history_items, args.partition_rows, args.num_proc, queue),
    )
    process.start()
    sampler = TreeMemorySampler(process.pid)
    sampler.start()
    seconds, cpu_seconds, own_peak, worker_peak, summary = queue.get()
    sampler.stopped.set()
    sampler.join()
    process.join()
    output_bytes = sum(file.stat().st_size for file in (folder / "out").rglob("*") if file.is_file())
    rows = summary["rows_read"]
    print(
        f"converted {rows:,} rows in {seconds:.1f} s ({rows / seconds:,.0f} rows/s, CPU {cpu_seconds:.1f} s); peak "
        "memory of the processes: "
        f"PSS {sampler.peak_pss / 2**30:.2f} GiB, RSS {sampler.peak_rss / 2**30:.2f} GiB (summed; ru_maxrss: "
        f"conversion process {own_peak / 2**30:.2f} GiB, largest worker {worker_peak / 2**30:.2f} GiB); "
        f"{summary['partitions']} partitions, "
        f"{summary['sessions']:,} sessions, examples {summary['examples']}, dropped {summary['rows_dropped']}, "
        f"output {output_bytes / 2**30:.2f} GiB; load average {os.getloadavg()[0]:.1f}"
    )
    if args.keep:
        print(f"kept in {folder}")
    else:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
