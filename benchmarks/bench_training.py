"""Training-speed figures: examples/s, FLOP/s and share of the measured fp32 peak of one training step, per model.

For A2Gen-IAG, A2Gen-EAG, MMoE and PLE at default widths, batch 256, history 100 items x 6 events, fp32: one
optimizer step (zero_grad, forward, backward, optimizer) timed with data-sized tables (65,536 item rows) and with
1,000,000-row item tables, each with dense and with sparse embedding updates (``a2gen_hf.training.optimization``).
The input pipeline is timed apart: reading 256 rows from an Arrow ``datasets.Dataset`` (what the DataLoader does)
and ``A2GenDataCollator`` turning them into tensors. The batch the model trains on is the collator's, from
synthetic rows with uniformly drawn ids (the most distinct rows per batch: the hardest case for sparse updates).

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one step (matrix products only), the peak
is a 1024^3 fp32 matrix product measured in the same run with the same threads. Figures, not timed tests: see
benchmarks/README.md and docs/training.md ("Speed").

    python benchmarks/bench_training.py                         # the full table, 2 threads (~5 min on 2 cores)
    python benchmarks/bench_training.py --models iag --tables 1m --updates sparse   # one row
    python benchmarks/bench_training.py --quick --output /tmp/out                   # tiny smoke run
    python benchmarks/bench_training.py --models iag --tables 1m --updates sparse --compile   # + compile_training rows
    python benchmarks/bench_training.py --device cuda        # the model steps on a GPU (collating stays on the CPU)

``--compile`` adds, for A2Gen, rows with ``config.compile_training=True`` (docs/performance.md) after the eager
rows; their first step (compiling, minutes) is reported apart (``first_step_s``), and the eager and compiled steps
are then timed interleaved, so that both see the same load (``eager_over_compiled``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded from elsewhere: the helpers beside this script
    sys.path.insert(0, str(Path(__file__).resolve().parent))
# OpenMP's wait policy and the allocator settings must be in the environment before the process starts: re-run with
# them (bench_environment.py).
import bench_environment  # noqa: E402
from _arguments import positive_int  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command line, without the checks that need torch (``--device``) or the model table (:func:`parse_args`)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results", help="folder for the results")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--device", default="cpu", help="where the model steps: cpu (default), cuda or cuda:N")
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--history-items", type=positive_int, default=100)
    parser.add_argument("--events", type=positive_int, default=6, help="events per history item")
    parser.add_argument("--repeats", type=positive_int, default=6, help="timed steps per row (after one warm-up step)")
    parser.add_argument("--models", default="iag,eag,mmoe,ple", help="comma-separated: iag,eag,mmoe,ple")
    parser.add_argument("--tables", default="data,1m", help="comma-separated: data (65,536 item rows), 1m")
    parser.add_argument("--updates", default="dense,sparse", help="comma-separated: dense, sparse")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 2 repeats: a smoke run, not figures")
    parser.add_argument(
        "--compile", action="store_true", help="add A2Gen rows with config.compile_training=True (compiling takes minutes)"
    )
    parser.add_argument("--name", help="file stem of the results (default training_bench_<device>_<threads>cores)")
    parser.add_argument("--keep-environment", action="store_true",
                        help="do not re-run with the settings of bench_environment.py (the caller's environment)")
    parser.add_argument("--wait-policy", choices=bench_environment.WAIT_POLICIES, default=None,
                        help=bench_environment.WAIT_POLICY_HELP)
    return parser


if __name__ == "__main__":  # a bad value is refused now, before the re-run and the slow imports below
    build_parser().parse_args()

bench_environment.enter()

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from a2gen_hf import A2GenActionTokenizer, A2GenConfig, A2GenForActionGeneration  # noqa: E402
from a2gen_hf.configuration_baselines import MMoEConfig, PLEConfig  # noqa: E402
from a2gen_hf.data.collator import A2GenDataCollator, ArrowBatches  # noqa: E402
from a2gen_hf.host_memory import keep_freed_host_memory  # noqa: E402
from a2gen_hf.modeling_baselines import MMoEForActionPrediction, PLEForActionPrediction  # noqa: E402
from a2gen_hf.output_folders import write_text_atomically  # noqa: E402
from a2gen_hf.training.loop import TrainingSettings, configure_embedding_updates, create_optimizer  # noqa: E402

MODELS: dict[str, Callable[..., torch.nn.Module]] = {
    "iag": lambda **sizes: A2GenForActionGeneration(A2GenConfig(generator="iag", **sizes)),
    "eag": lambda **sizes: A2GenForActionGeneration(A2GenConfig(generator="eag", **sizes)),
    "mmoe": lambda **sizes: MMoEForActionPrediction(MMoEConfig(**sizes)),
    "ple": lambda **sizes: PLEForActionPrediction(PLEConfig(**sizes)),
}
MODEL_NAMES = {"iag": "A2Gen-IAG", "eag": "A2Gen-EAG", "mmoe": "MMoE", "ple": "PLE"}
TABLES = {
    "data": {"item_buckets": 65_536, "user_buckets": 16_384, "side_feature_buckets": 256},
    "1m": {"item_buckets": 1_000_000, "user_buckets": 100_000, "side_feature_buckets": 100_000},
}
QUICK_TABLES = {
    "data": {"item_buckets": 512, "user_buckets": 128, "side_feature_buckets": 16},
    "1m": {"item_buckets": 4096, "user_buckets": 512, "side_feature_buckets": 16},
}
UPDATES = ("dense", "sparse")
RESULT_KEYS = (
    "model", "tables", "updates", "item_rows", "parameters", "step_median_ms", "step_p90_ms", "examples_per_s",
    "gflop_per_step", "gflop_per_s", "share_of_fp32_peak", "collate_ms", "examples_per_s_with_input",
)
COMPILABLE = ("iag", "eag")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    for option, allowed in (("models", MODELS), ("tables", TABLES), ("updates", UPDATES)):
        chosen = [value for value in getattr(args, option).split(",") if value]
        unknown = [value for value in chosen if value not in allowed]
        if unknown or not chosen:
            parser.error(f"--{option} {getattr(args, option)!r}: choose from {list(allowed)}")
        setattr(args, option, chosen)
    try:
        args.device = torch.device(args.device)
    except RuntimeError as error:
        parser.error(f"--device {args.device!r}: {error}; use cpu, cuda or cuda:N")
    if args.device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is visible to torch {torch.__version__}; use --device cpu")
    if args.quick:
        args.batch_size, args.history_items, args.events, args.repeats = 8, 5, 3, 2
    return args


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def synchronize(device: torch.device | None = None) -> None:
    """Wait for the GPU's queued work (a timer around a GPU call otherwise measures its launch only); no-op on a CPU."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(function: Callable[[], object], repeats: int, device: torch.device | None = None) -> list[float]:
    """Seconds per call, after one warm-up call (on a GPU: until its work is done)."""
    function()
    synchronize(device)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def matmul_peak(device: torch.device) -> float:
    """FLOP/s of fp32 matrix products on ``device`` (best of 5): 1024^3 with the current threads on a CPU, 8192^3 on
    a GPU (TF32 off, as torch's default)."""
    size = 1024 if device.type == "cpu" else 8192
    left, right = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    return 2 * size**3 / min(time_calls(lambda: left @ right, 5, device))


def synthetic_rows(count: int, tokenizer: A2GenActionTokenizer, history_items: int, events: int, seed: int = 0):
    """``count`` examples in the on-disk schema (docs/design.md), full histories, uniformly drawn hashed ids."""
    rng = np.random.default_rng(seed)
    names = tokenizer.action_names
    start, end = names.index(tokenizer.start_action) + 1, names.index(tokenizer.end_action) + 1
    middle = [i for i in range(1, len(names) + 1) if i not in (start, end)]
    rows = []
    for _ in range(count):
        counts = rng.integers(1, events + 1, history_items)
        history_actions = [[start, *rng.choice(middle, n - 1).tolist()] for n in counts]
        history_seconds = [np.sort(rng.exponential(30.0, n)).astype(np.float32).tolist() for n in counts]
        length = int(rng.integers(0, tokenizer.max_actions))
        actions = [start, *rng.choice(middle, length).tolist(), end]
        rows.append({
            "user_id": int(rng.integers(1, tokenizer.user_buckets)),
            "item_id": int(rng.integers(1, tokenizer.item_buckets)),
            "history_item_ids": rng.integers(1, tokenizer.item_buckets, history_items).tolist(),
            "history_action_ids": history_actions,
            "history_action_seconds": history_seconds,
            "action_ids": actions,
            "action_seconds": np.concatenate([[0.0], np.sort(rng.exponential(30.0, len(actions) - 1))]).tolist(),
        })
    return rows


def input_pipeline(tokenizer, config: A2GenConfig, args: argparse.Namespace) -> tuple[dict, dict[str, torch.Tensor]]:
    """Times of reading a batch from an Arrow dataset and of collating it, both ways: as the training loops read it
    (``ArrowBatches``: one Arrow table) and as a list of row dicts (``datasets``' own ``__getitems__``, what the
    Hugging Face ``Trainer`` reads); the collated batch (the same both ways)."""
    rows = synthetic_rows(args.batch_size * 2, tokenizer, args.history_items, args.events)
    dataset = datasets.Dataset.from_list(rows).shuffle(seed=0)  # gathered through an index mapping, as in training
    collator = A2GenDataCollator.from_config(config, tokenizer)
    indices = list(range(args.batch_size))
    tables = ArrowBatches(dataset)
    batch_rows, batch_table = dataset.__getitems__(indices), tables.__getitems__(indices)
    fetch = time_calls(lambda: dataset.__getitems__(indices), args.repeats)
    collate = time_calls(lambda: collator(batch_rows), args.repeats)
    fetch_arrow = time_calls(lambda: tables.__getitems__(indices), args.repeats)
    collate_arrow = time_calls(lambda: collator(batch_table), args.repeats)
    figures = {
        "batch_size": args.batch_size,
        "fetch_rows_median_ms": 1e3 * statistics.median(fetch),
        "collate_median_ms": 1e3 * statistics.median(collate),
        "fetch_arrow_median_ms": 1e3 * statistics.median(fetch_arrow),
        "collate_arrow_median_ms": 1e3 * statistics.median(collate_arrow),
    }
    figures["input_examples_per_s_rows"] = args.batch_size / (
        (figures["fetch_rows_median_ms"] + figures["collate_median_ms"]) / 1e3
    )
    figures["input_examples_per_s"] = args.batch_size / (
        (figures["fetch_arrow_median_ms"] + figures["collate_arrow_median_ms"]) / 1e3
    )
    print(
        f"input pipeline, batch {args.batch_size}: as Arrow tables (the training loops) read "
        f"{figures['fetch_arrow_median_ms']:.1f} ms + collate {figures['collate_arrow_median_ms']:.1f} ms "
        f"({figures['input_examples_per_s']:,.0f} examples/s); as row dicts (Trainer) read "
        f"{figures['fetch_rows_median_ms']:.1f} ms + collate {figures['collate_median_ms']:.1f} ms "
        f"({figures['input_examples_per_s_rows']:,.0f} examples/s)",
        flush=True,
    )
    batch = collator(batch_table)
    expected = collator(batch_rows)
    assert all(torch.equal(batch[name], expected[name]) for name in expected), "the two routes collate differently"
    return figures, batch


def input_ms(figures: dict) -> float:
    """A batch's input time in the training loops: reading it as an Arrow table and collating it."""
    return figures["fetch_arrow_median_ms"] + figures["collate_arrow_median_ms"]


def training_step(name: str, updates: str, sizes: dict, batch, args, compile_training: bool = False):
    """
    A model of ``name`` in training mode, its optimizer as ``a2gen train`` creates it, and one step on ``batch``; the
    host allocator kept as training keeps it (``a2gen_hf.host_memory``; ``A2GEN_KEEP_FREED_HOST_MEMORY=0``: not).
    """
    keep_freed_host_memory()
    torch.manual_seed(0)
    config_sizes = {**sizes, "max_history_items": args.history_items, "max_events_per_item": args.events}
    if compile_training:
        config_sizes["compile_training"] = True
    model = MODELS[name](**config_sizes).train().to(args.device)
    settings = TrainingSettings(output_dir="", sparse_embeddings=updates == "sparse")
    configure_embedding_updates(model, settings)
    optimizer = create_optimizer(model, settings)

    batch = {key: value.to(args.device) for key, value in batch.items()}

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        optimizer.step()

    return model, step


def step_row(name: str, tables: str, updates: str, sizes: dict, batch, collate_ms: float, peak: float, args) -> dict:
    model, step = training_step(name, updates, sizes, batch, args)
    seconds = time_calls(step, args.repeats, args.device)
    return result_row(name, tables, updates, sizes, model, step, seconds, collate_ms, peak, args)


def compiled_row(name: str, tables: str, updates: str, sizes: dict, batch, collate_ms: float, peak: float, args) -> dict:
    """``config.compile_training=True``: the first step (compiling) apart, then steps interleaved with eager ones."""
    eager_model, eager_step = training_step(name, updates, sizes, batch, args)
    model, step = training_step(name, updates, sizes, batch, args, compile_training=True)
    start = time.perf_counter()
    step()
    synchronize(args.device)
    first_step = time.perf_counter() - start
    eager_step()
    seconds, eager_seconds = [], []
    for _ in range(args.repeats):
        for timed, call in ((eager_seconds, eager_step), (seconds, step)):
            synchronize(args.device)
            start = time.perf_counter()
            call()
            synchronize(args.device)
            timed.append(time.perf_counter() - start)
    row = result_row(name, tables, updates, sizes, model, step, seconds, collate_ms, peak, args, "compiled")
    row["first_step_s"] = first_step
    row["eager_over_compiled"] = statistics.median(eager_seconds) / statistics.median(seconds)
    print(
        f"  first (compiling) step {first_step:.0f} s; interleaved eager {1e3 * statistics.median(eager_seconds):.1f} ms"
        f" / compiled = {row['eager_over_compiled']:.2f}",
        flush=True,
    )
    return row


def result_row(name, tables, updates, sizes, model, step, seconds, collate_ms, peak, args, mode="eager") -> dict:
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    median = statistics.median(seconds)
    row = {
        "model": MODEL_NAMES[name],
        "mode": mode,
        "tables": tables,
        "updates": updates,
        "item_rows": sizes["item_buckets"],
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "step_median_ms": 1e3 * median,
        "step_p90_ms": 1e3 * sorted(seconds)[min(len(seconds) - 1, int(0.9 * len(seconds)))],
        "examples_per_s": args.batch_size / median,
        "gflop_per_step": flops / 1e9,
        "gflop_per_s": flops / median / 1e9,
        "share_of_fp32_peak": flops / median / peak,
        "collate_ms": collate_ms,
        "examples_per_s_with_input": args.batch_size / (median + collate_ms / 1e3),
    }
    print(
        f"  {row['model']:10s} {mode:8s} {tables:4s} {updates:6s} step {row['step_median_ms']:8.1f} ms  "
        f"{row['examples_per_s']:8,.0f} ex/s  {100 * row['share_of_fp32_peak']:5.1f} % of peak  "
        f"(with collate {row['examples_per_s_with_input']:,.0f} ex/s)",
        flush=True,
    )
    return row


def markdown(settings: dict, pipeline: dict, rows: list[dict]) -> str:
    lines = [
        "# Training speed (benchmarks/bench_training.py)",
        "",
        f"Device: {settings['device_name']}. Settings: `{json.dumps(settings)}`",
        "",
        f"Input pipeline, batch {pipeline['batch_size']}, one process: as Arrow tables (`ArrowBatches`, what the "
        f"training loops read) {pipeline['fetch_arrow_median_ms']:.1f} ms to read, "
        f"{pipeline['collate_arrow_median_ms']:.1f} ms to collate ({pipeline['input_examples_per_s']:,.0f} "
        f"examples/s); as row dicts (`datasets`' `__getitems__`, what the Hugging Face Trainer reads) "
        f"{pipeline['fetch_rows_median_ms']:.1f} ms and {pipeline['collate_median_ms']:.1f} ms "
        f"({pipeline['input_examples_per_s_rows']:,.0f} examples/s).",
        "",
        "Model step = zero_grad + forward + backward + optimizer step on a collated batch (median of the timed steps).",
        "",
        f"Load average (1 min) {settings['load_average_1_5_15_before'][0]} before and "
        f"{settings['load_average_1_5_15_after'][0]} after on {settings['cpu_count']} CPUs"
        + (
            ": the machine was shared, so compare rows of this run with each other (ratios), not with other runs."
            if settings["load_average_1_5_15_before"][0] > settings["cpu_count"]
            else "."
        ),
        "",
        "| model | item rows | updates | parameters | step ms (median) | p90 ms | examples/s | GFLOP / step "
        "| GFLOP/s | % fp32 peak | examples/s incl. collate |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        model = row["model"]
        if row.get("mode") == "compiled":
            model += (
                f", compile_training (first step {row['first_step_s']:.0f} s; interleaved eager / compiled "
                f"{row['eager_over_compiled']:.2f})"
            )
        lines.append(
            f"| {model} | {row['item_rows']:,} | {row['updates']} | {row['parameters']:,} | "
            f"{row['step_median_ms']:.1f} | {row['step_p90_ms']:.1f} | {row['examples_per_s']:,.0f} | "
            f"{row['gflop_per_step']:.3f} | {row['gflop_per_s']:.1f} | {100 * row['share_of_fp32_peak']:.1f} | "
            f"{row['examples_per_s_with_input']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = {
        "device": str(args.device),
        "device_name": torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "intra_op_threads": torch.get_num_threads(),
        "inter_op_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15_before": load_average(),
        "batch_size": args.batch_size,
        "history": f"{args.history_items} items x {args.events} events",
        "quick": args.quick,
        "command": " ".join(["python", *sys.argv]),
        **{name: os.environ.get(name) for name in (*bench_environment.RECORDED, "OMP_NUM_THREADS")},
        "keep_freed_host_memory": keep_freed_host_memory(),  # as training does; False: the system allocator
    }
    print("settings:", json.dumps(settings), flush=True)
    peak = matmul_peak(args.device)
    settings["fp32_matmul_peak_gflops"] = peak / 1e9
    where = f"{torch.get_num_threads()} threads" if args.device.type == "cpu" else settings["device_name"]
    print(f"fp32 matmul peak {peak / 1e9:.1f} GFLOP/s on {where}", flush=True)
    table_sizes = QUICK_TABLES if args.quick else TABLES
    rows, pipeline = [], None
    for tables in args.tables:
        sizes = table_sizes[tables]
        tokenizer = A2GenActionTokenizer(
            user_buckets=sizes["user_buckets"], item_buckets=sizes["item_buckets"],
            side_feature_buckets=sizes["side_feature_buckets"],
        )
        config = A2GenConfig(**sizes, max_history_items=args.history_items, max_events_per_item=args.events)
        figures, batch = input_pipeline(tokenizer, config, args)
        pipeline = pipeline or figures
        for name in args.models:
            for updates in args.updates:
                rows.append(step_row(name, tables, updates, sizes, batch, input_ms(figures), peak, args))
                if args.compile and name in COMPILABLE:
                    rows.append(
                        compiled_row(name, tables, updates, sizes, batch, input_ms(figures), peak, args)
                    )
    settings["load_average_1_5_15_after"] = load_average()
    result = {"settings": settings, "input_pipeline": pipeline, "rows": rows}
    text = markdown(settings, pipeline, rows)
    print("\n" + text)
    stem = args.name or (
        f"training_bench_cpu_{args.threads}cores" if args.device.type == "cpu" else f"training_bench_{args.device.type}"
    ) + ("_quick" if args.quick and not args.name else "")  # a smoke run never replaces the committed figures
    args.output.mkdir(parents=True, exist_ok=True)
    for suffix, content in ((".json", json.dumps(result, indent=1) + "\n"), (".md", text)):
        write_text_atomically(args.output / f"{stem}{suffix}", content)
    print(f"wrote {args.output / stem}.json and .md")
    return result


if __name__ == "__main__":
    main()
