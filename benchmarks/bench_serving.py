"""Serving-speed figures for A2Gen: ranking latency (naive vs cached vs a plain re-implementation of the same
algebra), training throughput, EAG generate latency.

Every row reports its median / p90 latency, FLOP/s as a share of this machine's measured fp32 matmul peak and the
peak memory, in one table printed at the end and written as Markdown + JSON to ``--output``. These are figures,
not timed tests; see benchmarks/README.md and docs/serving.md.

    python benchmarks/bench_serving.py --output bench_out            # the full table (a few minutes on 2 cores)
    python benchmarks/bench_serving.py --quick --output bench_out    # C = 100 / 1,000 only, fewer repeats
    python benchmarks/bench_serving.py --quick --no-training --output bench_out   # ranking rows only
    python benchmarks/bench_serving.py --profile --generators iag --output bench_out  # where a ranking call's time goes
    python benchmarks/bench_serving.py --quick --no-training --generators iag --compile --workers 2  # + compiled rows

"plain" rows time a compact re-implementation of the same algebra in plain PyTorch (what a throwaway prototype
would write, ``plain_scores`` below), in the same process and on the same model, so that the ranker's overhead is a
ratio measured under the same load.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded from elsewhere: the helpers beside this script
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_environment  # noqa: E402
from _arguments import choice_list, positive_int  # noqa: E402

HISTORY_ITEMS, EVENTS_PER_ITEM = 100, 6


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, help="folder for serving_bench.md / serving_bench.json")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when torch sees one, else cpu)")
    parser.add_argument("--threads", type=positive_int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="C = 100 / 1,000 only and fewer repeats")
    parser.add_argument("--repeats", type=positive_int, default=20, help="timed calls per cached row (naive rows use fewer)")
    parser.add_argument("--chunk-size", type=positive_int, default=1000, help="candidate block of the cached path")
    parser.add_argument("--compile", action="store_true", help="add torch.compile rows (slow to warm up)")
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="also time A2GenRanker(compile=True, workers=N, chunk_size=C/N) at C = 1,000: N threads of one intra-op "
        "thread each (warms up for a minute or more)",
    )
    parser.add_argument("--name", default="serving_bench", help="file stem of the results under --output")
    parser.add_argument(
        "--sparse-log-options",
        action="store_true",
        help="rank with a model that has the propensity, count and popularity features and the occurrence head",
    )
    parser.add_argument("--no-training", action="store_true", help="skip the training rows")
    parser.add_argument("--generators", type=choice_list(("iag", "eag")), default="iag,eag",
                        help="comma-separated: iag, eag")
    parser.add_argument("--keep-environment", action="store_true",
                        help="do not re-run with the settings of bench_environment.py (the caller's environment)")
    parser.add_argument("--wait-policy", choices=bench_environment.WAIT_POLICIES, default=None,
                        help=bench_environment.WAIT_POLICY_HELP)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only profile one ranking call (C = 1,000) by part, at 1 thread and at --threads, and exit",
    )
    args = parser.parse_args()
    if args.device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", args.device):  # before torch is imported
        parser.error(f"argument --device: {args.device!r}: the benchmark runs on cpu, cuda or cuda:N")
    return args


if __name__ == "__main__":  # a bad value is refused now, before the re-run and the slow imports below
    parse_args()

# OpenMP's wait policy and the allocator settings must be in the environment before the process starts: re-run with
# them (bench_environment.py).
bench_environment.enter()

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from a2gen_hf import A2GenConfig, A2GenForActionGeneration  # noqa: E402
from a2gen_hf.modeling_a2gen import action_predictions_from_slots  # noqa: E402
from a2gen_hf.output_folders import write_text_atomically  # noqa: E402
from a2gen_hf.ranking import A2GenRanker  # noqa: E402


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:  # Linux: writing 5 resets the process's peak resident set size (VmHWM)
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def time_calls(function: Callable[[], object], repeats: int, device: torch.device) -> list[float]:
    """Seconds per call, after one warm-up call."""
    function()
    synchronize(device)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def count_flops(function: Callable[[], object]) -> int:
    """Matrix-product FLOPs of one call (FlopCounterMode counts mm / bmm / addmm / SDPA, not elementwise ops)."""
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of large square matrix products on this machine (best of a few)."""
    size = 8192 if device.type == "cuda" else 1024
    left = torch.randn(size, size, device=device, dtype=dtype)
    right = torch.randn(size, size, device=device, dtype=dtype)
    best = min(time_calls(lambda: left @ right, 5, device))
    return 2 * size**3 / best


def user_inputs(config: A2GenConfig, device: torch.device, batch: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    """One user with a full history of 100 items x 6 events, repeated `batch` times."""
    generator = torch.Generator().manual_seed(seed)
    action_ids = torch.randint(1, config.vocab_size, (1, HISTORY_ITEMS, EVENTS_PER_ITEM), generator=generator)
    action_ids[..., 0] = config.start_action_id
    inputs = {
        "user_ids": torch.randint(1, config.user_buckets, (1,), generator=generator),
        "history_item_ids": torch.randint(1, config.item_buckets, (1, HISTORY_ITEMS), generator=generator),
        "history_action_ids": action_ids,
        "history_action_times": torch.randn(1, HISTORY_ITEMS, EVENTS_PER_ITEM, generator=generator).sort(-1).values,
    }
    return {name: value.expand(batch, *value.shape[1:]).to(device) for name, value in inputs.items()}


def training_batch(config: A2GenConfig, device: torch.device, batch: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    inputs = user_inputs(config, device, batch)
    inputs["user_ids"] = torch.randint(1, config.user_buckets, (batch,), generator=generator).to(device)
    inputs["item_ids"] = torch.randint(1, config.item_buckets, (batch,), generator=generator).to(device)
    labels = torch.randint(2, config.end_action_id, (batch, config.max_actions + 1), generator=generator)
    labels[:, 0], labels[:, -1] = config.start_action_id, config.end_action_id
    inputs["labels"] = labels.to(device)
    inputs["label_times"] = torch.randn(batch, config.max_actions + 1, generator=generator).sort(-1).values.to(device)
    return inputs


class Table:
    def __init__(self, peak: float, device: torch.device):
        self.rows: list[dict] = []
        self.peak, self.device = peak, device

    def add(self, name: str, seconds: list[float], flops: int, items: int, unit: str, note: str = "") -> dict:
        median = statistics.median(seconds)
        p90 = sorted(seconds)[min(len(seconds) - 1, int(0.9 * len(seconds)))]
        row = {
            "row": name,
            "median_ms": 1e3 * median,
            "p90_ms": 1e3 * p90,
            f"{unit}_per_s": items / median,
            "gflop_per_call": flops / 1e9,
            "share_of_fp32_peak": flops / median / self.peak,
            "peak_memory_mib": peak_memory_mib(self.device),
            "note": note,
        }
        self.rows.append(row)
        print(f"  {name}: {row['median_ms']:.2f} ms {note}", flush=True)
        return row

    def markdown(self) -> str:
        lines = [
            "| row | median ms | p90 ms | throughput | GFLOP / call | % fp32 peak | peak mem MiB | note |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for row in self.rows:
            unit = next(key for key in row if key.endswith("_per_s"))
            lines.append(
                f"| {row['row']} | {row['median_ms']:.2f} | {row['p90_ms']:.2f} | {row[unit]:,.0f} "
                f"{unit.replace('_per_s', '/s')} | {row['gflop_per_call']:.4f} | {100 * row['share_of_fp32_peak']:.1f} | "
                f"{row['peak_memory_mib']:.0f} | {row['note']} |"
            )
        return "\n".join(lines)


def plain_scores(model: A2GenForActionGeneration, state, item_ids: torch.Tensor) -> torch.Tensor:
    """
    P(action happens) `(C, V)` for an IAG model without side features, written out in plain PyTorch from the
    model's weights: CAM_item pooled with E = exp(A - rowmax A) (state from encode_user), the IAG generator with
    CAM_gen over the slots as broadcast multiply-sums. The bar the ranker is held to, in the same process.
    """
    encoder, generator = model.a2gen, model.generator
    item_attention, slot_attention = encoder.encoder.item_attention, generator.generation_attention
    heads, size = item_attention.num_heads, item_attention.head_size

    def gate_of(attention, context, projected):
        gate_input = context if attention.gate_input == "context" else projected
        return torch.softmax(attention.head_gate(gate_input), dim=-1)

    items = encoder.features.item_embeddings(item_ids)  # (C, Fi)
    candidates, count = items.shape[0], state.keys.shape[1]
    projected = item_attention.context_projection(items)
    context_queries = item_attention.query_from_context(projected).view(candidates, heads, size)
    scores = state.keys @ (context_queries.permute(1, 2, 0) / size**0.5)  # (H, n, C)
    weights = torch.exp(scores - scores.amax(dim=1, keepdim=True))
    normalisers = state.score_exponentials @ weights
    column_weights = weights * (state.score_exponentials.transpose(1, 2) @ normalisers.reciprocal())
    pooled = (state.values.transpose(1, 2) @ column_weights).permute(2, 0, 1)  # (C, H, dh)
    gate = gate_of(item_attention, items, projected)
    history = (pooled * gate[..., None]).reshape(candidates, -1) @ item_attention.head_output_weight.reshape(
        heads * size, -1
    ) + count * (gate @ item_attention.head_output_bias + projected)
    context = torch.cat([state.user_features.expand(candidates, -1), history, items], dim=-1)

    slots = generator.slot_projection(context)
    if model.config.iag_slot_activation == "relu":
        slots = torch.relu(slots)
    slots = slots.view(candidates, generator.num_slots, -1)
    aux_logits, aux_times = generator.aux_heads(slots)
    sequence = torch.cat([slots, torch.softmax(aux_logits, dim=-1), aux_times.unsqueeze(-1)], dim=-1)
    length = sequence.shape[1]
    projected_slots = slot_attention.sequence_projection(sequence)
    projected_context = slot_attention.context_projection(context)
    queries = slot_attention.query_from_sequence(projected_slots) + slot_attention.query_from_context(
        projected_context
    ).unsqueeze(1)
    queries = queries.view(candidates, length, 1, heads, size) / size**0.5
    keys = slot_attention.key(projected_slots).view(candidates, 1, length, heads, size)
    values = slot_attention.value(projected_slots).view(candidates, 1, length, heads, size)
    probabilities = torch.softmax((queries * keys).sum(-1), dim=2)
    states = (probabilities.unsqueeze(-1) * values).sum(2)  # (C, L, H, dh)
    gate = gate_of(slot_attention, context, projected_context)
    gated = (states * gate[:, None, :, None]).reshape(candidates, length, heads * size)
    output = gated @ slot_attention.head_output_weight.reshape(heads * size, -1) + (
        gate @ slot_attention.head_output_bias + projected_context
    ).unsqueeze(1)
    logits, times = generator.heads(output)
    return action_predictions_from_slots(model.config, torch.softmax(logits, dim=-1), times).action_probabilities


SPARSE_LOG_OPTIONS = dict(
    history_propensity_features=True, history_count_features=True, target_popularity_features=True, occurrence_head=True
)


def ranking_rows(table: Table, args: argparse.Namespace, device: torch.device, generator_type: str) -> None:
    torch.manual_seed(0)
    options = SPARSE_LOG_OPTIONS if args.sparse_log_options else {}
    config = A2GenConfig(generator=generator_type, **options)
    model = A2GenForActionGeneration(config).to(device).eval()
    ranker = A2GenRanker(model, chunk_size=args.chunk_size)
    if options:
        generator_type += " + sparse-log options"
    user = user_inputs(config, device)
    counts = [100, 1000] if args.quick else [100, 1000, 10000]
    state = ranker.encode_user(**user)
    reset_peak_memory(device)
    table.add(
        f"{generator_type} encode_user (per request)",
        time_calls(lambda: ranker.encode_user(**user), args.repeats, device),
        count_flops(lambda: ranker.encode_user(**user)),
        1,
        "users",
    )
    for count in counts:
        items = torch.randint(1, config.item_buckets, (count,), device=device)
        naive_batch = user_inputs(config, device, min(count, args.chunk_size))

        def naive(count=count, items=items, naive_batch=naive_batch) -> None:
            # The plain batched predict_actions on the repeated history, in blocks so 10,000 fits in memory.
            for start in range(0, count, args.chunk_size):
                block = items[start : start + args.chunk_size]
                model.predict_actions(**{k: v[: block.shape[0]] for k, v in naive_batch.items()}, item_ids=block)

        def cached(items=items) -> None:
            ranker.score_candidates(ranker.encode_user(**user), items)

        naive_repeats = max(2, args.repeats // (4 if count < 10000 else 10))
        reset_peak_memory(device)
        naive_row = table.add(
            f"{generator_type} rank C={count:,} naive predict_actions",
            time_calls(naive, naive_repeats, device),
            count_flops(naive),
            count,
            "candidates",
        )
        reset_peak_memory(device)
        cached_row = table.add(
            f"{generator_type} rank C={count:,} cached (encode_user + score)",
            time_calls(cached, args.repeats, device),
            count_flops(cached),
            count,
            "candidates",
        )
        cached_row["note"] = f"{naive_row['median_ms'] / cached_row['median_ms']:.1f}x faster than naive"
        if generator_type == "iag" and not args.sparse_log_options and count == 1000:
            with torch.no_grad():
                error = (plain_scores(model, state, items) - ranker.score_candidates(state, items).action_probabilities)
            timed = {"ranker": [], "plain": []}
            calls = {
                "ranker": cached,
                "plain": lambda items=items: plain_scores(model, ranker.encode_user(**user), items),
            }
            with torch.no_grad():
                for _ in range(args.repeats):  # interleaved, so that both see the same load
                    for name, call in calls.items():
                        timed[name].extend(time_calls(call, 1, device))
            reset_peak_memory(device)
            plain_row = table.add(
                f"{generator_type} rank C={count:,} plain re-implementation (encode_user + plain_scores)",
                timed["plain"], count_flops(calls["plain"]), count, "candidates",
                f"max abs prob. difference to the ranker {error.abs().max().item():.1e}",
            )
            interleaved = statistics.median(timed["ranker"])
            plain_row["note"] += (
                f"; interleaved medians: ranker {1e3 * interleaved:.2f} ms, plain {plain_row['median_ms']:.2f} ms, "
                f"plain / ranker = {plain_row['median_ms'] / 1e3 / interleaved:.2f}"
            )
    items = torch.randint(1, config.item_buckets, (1000,), device=device)
    reference = ranker.score_candidates(state, items).action_probabilities
    bf16_ranker = A2GenRanker(model, chunk_size=args.chunk_size, dtype=torch.bfloat16)
    error = (bf16_ranker.score_candidates(state, items).action_probabilities - reference).abs().max().item()
    reset_peak_memory(device)
    table.add(
        f"{generator_type} rank C=1,000 cached, bf16 autocast (score only)",
        time_calls(lambda: bf16_ranker.score_candidates(state, items), args.repeats, device),
        count_flops(lambda: bf16_ranker.score_candidates(state, items)),
        1000,
        "candidates",
        f"max abs prob. error vs fp32 {error:.1e}",
    )
    compiled_rankers = {}
    if args.compile:
        compiled_rankers["torch.compile"] = A2GenRanker(model, chunk_size=args.chunk_size, compile=True)
    if args.workers > 1:
        chunk = -(-1000 // args.workers)
        compiled_rankers[f"torch.compile, {args.workers} workers x 1 thread, blocks of {chunk}"] = A2GenRanker(
            model, chunk_size=chunk, compile=True, workers=args.workers
        )
    if compiled_rankers:
        first_calls = {}
        for name, compiled in compiled_rankers.items():
            start = time.perf_counter()
            compiled.score_candidates(compiled.encode_user(**user), items)
            first_calls[name] = time.perf_counter() - start
            error = (compiled.score_candidates(state, items).action_probabilities - reference).abs().max().item()
            first_calls[name] = (first_calls[name], error)
        # Interleaved with the eager ranker, so that every variant sees the same load.
        calls = {"eager": lambda: ranker.score_candidates(ranker.encode_user(**user), items)}
        calls.update(
            {name: (lambda compiled=compiled: compiled.score_candidates(compiled.encode_user(**user), items))
             for name, compiled in compiled_rankers.items()}
        )
        timed = {name: [] for name in calls}
        for _ in range(args.repeats):
            for name, call in calls.items():
                timed[name].extend(time_calls(call, 1, device))
        eager_median = statistics.median(timed["eager"])
        for name in compiled_rankers:
            seconds, error = first_calls[name]
            row = table.add(
                f"{generator_type} rank C=1,000 cached, {name} (encode_user + score)",
                timed[name],
                count_flops(lambda: ranker.score_candidates(ranker.encode_user(**user), items)),
                1000,
                "candidates",
            )
            row["note"] = (
                f"first call (compiling) {seconds:.0f} s; max abs prob. difference to eager {error:.1e}; "
                f"interleaved with the eager ranker ({1e3 * eager_median:.2f} ms): eager / this = "
                f"{eager_median / statistics.median(timed[name]):.2f}"
            )
    if generator_type == "eag":
        batch = user_inputs(config, device, 1000)
        for use_cache in (False, True):
            reset_peak_memory(device)
            table.add(
                f"eag generate C=1,000 model.generate use_cache={use_cache}",
                time_calls(
                    lambda use_cache=use_cache: model.generate(**batch, item_ids=items, use_cache=use_cache), 3, device
                ),
                count_flops(lambda use_cache=use_cache: model.generate(**batch, item_ids=items, use_cache=use_cache)),
                1000,
                "sequences",
            )
        reset_peak_memory(device)
        table.add(
            "eag generate C=1,000 ranker.generate (user cache + KV cache)",
            time_calls(lambda: ranker.generate(ranker.encode_user(**user), items), args.repeats, device),
            count_flops(lambda: ranker.generate(ranker.encode_user(**user), items)),
            1000,
            "sequences",
        )


def profile_ranking(args: argparse.Namespace, device: torch.device, generator_type: str) -> tuple[str, dict]:
    """
    Where one ranking call (one user, C = 1,000) spends its time: the per-user part (encode_user), the per-candidate
    part before the generator (item features, CAM_item pooled over the history, the context) and the generator with
    the readout, timed alone (median wall and thread CPU ms of --repeats calls) at 1 thread and at --threads; then
    torch.profiler's operators with the most self CPU time in a whole call at --threads.
    """
    from torch.profiler import profile

    torch.manual_seed(0)
    config = A2GenConfig(generator=generator_type)
    model = A2GenForActionGeneration(config).to(device).eval()
    ranker = A2GenRanker(model, chunk_size=args.chunk_size)
    user = user_inputs(config, device)
    items = torch.randint(1, config.item_buckets, (1000,), device=device)
    state = ranker.encode_user(**user)
    with torch.no_grad():
        context = ranker.generation_context(state, items)
        slots = model.slot_distributions(context)
    parts = {
        "encode_user (per user)": lambda: ranker.encode_user(**user),
        "generation_context (item features, CAM_item pooled, context)": lambda: ranker.generation_context(state, items),
        "generator (slot_distributions)": lambda: model.slot_distributions(context),
        "readout (action_predictions_from_slots)": lambda: action_predictions_from_slots(config, *slots),
        "score_candidates (the three above but encode_user)": lambda: ranker.score_candidates(state, items),
        "whole call (encode_user + score_candidates)": lambda: ranker.score_candidates(ranker.encode_user(**user), items),
    }
    thread_counts = sorted({1, args.threads})
    figures: dict = {}
    with torch.no_grad():
        for threads in thread_counts:
            torch.set_num_threads(threads)
            for name, call in parts.items():
                call()
                wall, cpu = [], []
                for _ in range(args.repeats):
                    start, start_cpu = time.perf_counter(), time.thread_time()
                    call()
                    wall.append(time.perf_counter() - start)
                    cpu.append(time.thread_time() - start_cpu)
                figures.setdefault(name, {})[threads] = (1e3 * statistics.median(wall), 1e3 * statistics.median(cpu))
        torch.set_num_threads(args.threads)
        with profile() as profiler:
            for _ in range(5):
                parts["whole call (encode_user + score_candidates)"]()
    header = " | ".join(f"{threads} thread{'s' * (threads > 1)}: wall / thread CPU ms" for threads in thread_counts)
    lines = [f"| {generator_type} part, C = 1,000 | {header} |", "| --- |" + " ---: |" * len(thread_counts)]
    for name, by_threads in figures.items():
        cells = " | ".join(f"{by_threads[threads][0]:.2f} / {by_threads[threads][1]:.2f}" for threads in thread_counts)
        lines.append(f"| {name} | {cells} |")
    events = sorted(profiler.key_averages(), key=lambda event: event.self_cpu_time_total, reverse=True)
    total = sum(event.self_cpu_time_total for event in events)
    lines += ["", f"Operators by self CPU time, 5 whole calls at {args.threads} thread(s):", "",
              "| operator | calls per call | self CPU ms per call | share |", "| --- | ---: | ---: | ---: |"]
    for event in events[:12]:
        lines.append(
            f"| `{event.key}` | {event.count / 5:.0f} | {event.self_cpu_time_total / 5e3:.2f} | "
            f"{100 * event.self_cpu_time_total / total:.1f} % |"
        )
    markdown = "\n".join(lines)
    print(markdown, flush=True)
    return markdown, {name: {str(threads): value for threads, value in by_threads.items()} for name, by_threads in figures.items()}


def training_rows(table: Table, args: argparse.Namespace, device: torch.device, batch_size: int = 256) -> None:
    models = {  # the A2Gen generators asked for (--generators; before: both were always timed)
        f"A2Gen {generator.upper()}": lambda generator=generator: A2GenForActionGeneration(A2GenConfig(generator=generator))
        for generator in args.generators
    }
    if importlib.util.find_spec("a2gen_hf.modeling_baselines") is not None:
        from a2gen_hf.configuration_baselines import MMoEConfig, PLEConfig
        from a2gen_hf.modeling_baselines import MMoEForActionPrediction, PLEForActionPrediction

        models["MMoE"] = lambda: MMoEForActionPrediction(MMoEConfig())
        models["PLE"] = lambda: PLEForActionPrediction(PLEConfig())
    for name, build in models.items():
        torch.manual_seed(0)
        model = build().to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
        batch = training_batch(model.config, device, batch_size)

        def step(model=model, optimizer=optimizer, batch=batch) -> None:
            optimizer.zero_grad(set_to_none=True)
            model(**batch).loss.backward()
            optimizer.step()

        reset_peak_memory(device)
        table.add(
            f"train {name} (batch {batch_size}, fwd+bwd+Adam)",
            time_calls(step, max(3, args.repeats // 4), device),
            count_flops(step),
            batch_size,
            "examples",
            f"embedding width {model.config.id_embedding_size}",
        )


def main() -> None:
    args = parse_args()
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(args.device)  # its form was checked with the arguments
    if device.type == "cuda" and not torch.cuda.is_available():  # before: a raw traceback (bench_training refused it)
        print(f"bench_serving.py: error: --device {args.device}: no CUDA device is visible to torch {torch.__version__}; "
              "use --device cpu", file=sys.stderr)
        raise SystemExit(2)
    args.threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(args.threads)
    with open("/proc/loadavg") as handle:
        load = handle.read().split()[:3]
    settings = {
        "command": " ".join(["python", *sys.argv]),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "intra_op_threads": torch.get_num_threads(),
        "inter_op_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": load,
        **{name: os.environ.get(name) for name in (*bench_environment.RECORDED, "OMP_NUM_THREADS")},
    }
    print("settings:", json.dumps(settings), flush=True)
    peak = matmul_peak(device, torch.float32)
    settings["fp32_matmul_peak_gflops"] = peak / 1e9
    settings["bf16_matmul_peak_gflops"] = matmul_peak(device, torch.bfloat16) / 1e9
    print(f"fp32 matmul peak {peak / 1e9:.1f} GFLOP/s, bf16 {settings['bf16_matmul_peak_gflops']:.1f}", flush=True)
    if args.profile:
        results = {generator_type: profile_ranking(args, device, generator_type) for generator_type in args.generators}
        with open("/proc/loadavg") as handle:
            settings["load_average_after"] = handle.read().split()[:3]
        if args.output:
            args.output.mkdir(parents=True, exist_ok=True)
            body = "\n\n".join(markdown for markdown, _ in results.values())
            stem = "serving_profile" if args.name == "serving_bench" else args.name  # before: --name was ignored
            write_text_atomically(args.output / f"{stem}.md", f"Settings: `{json.dumps(settings)}`\n\n{body}\n")
            write_text_atomically(
                args.output / f"{stem}.json",
                json.dumps({"settings": settings, "parts": {name: parts for name, (_, parts) in results.items()}}, indent=1),
            )
        return
    table = Table(peak, device)
    for generator_type in args.generators:
        ranking_rows(table, args, device, generator_type)
    if not args.no_training:
        training_rows(table, args, device)
    with open("/proc/loadavg") as handle:
        settings["load_average_after"] = handle.read().split()[:3]
    markdown = table.markdown()
    print("\n" + json.dumps(settings) + "\n\n" + markdown)
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        write_text_atomically(args.output / f"{args.name}.md", f"Settings: `{json.dumps(settings)}`\n\n{markdown}\n")
        write_text_atomically(args.output / f"{args.name}.json", json.dumps({"settings": settings, "rows": table.rows}, indent=1))


if __name__ == "__main__":
    main()
