"""Profile one training step (zero_grad, forward, backward, optimizer) with torch.profiler: where the time goes.

The step is the one ``a2gen train`` runs: the optimizer of ``a2gen_hf.training.loop.create_optimizer`` (SparseAdamW,
fused AdamW for the dense weights) with sparse embedding updates (``--updates dense`` for dense ones). Default inputs
follow issue 12: default widths, history 100 items x 6 events, batch 256, fp32, 2 threads, the library's default
tables (1,000,000 item rows, 100,000 user rows). The table lists the top operators by self CPU time (``--shapes``:
split by input shape); the timing line gives examples/s over a few steps (median), so that a change can be judged by
the ratio of two runs made one after the other on the same machine.

    python benchmarks/profile_training_step.py                         # A2Gen-IAG, full histories
    python benchmarks/profile_training_step.py --model mmoe            # the MMoE baseline (also: eag, ple)
    python benchmarks/profile_training_step.py --model eag --fill 0.5 --left-pad
    python benchmarks/profile_training_step.py --compile --output benchmarks/results

``--fill`` is the share of history items (and of their events) that are real; the rest is padding, placed on the
right (default) or on the left, as the collator does. ``--item-buckets`` / ``--user-buckets`` set the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded from elsewhere: the flag checkers beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _arguments import fraction, int_at_least, json_object, positive_int  # noqa: E402

MODEL_NAMES = ("iag", "eag", "mmoe", "ple")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "--generator", dest="model", choices=MODEL_NAMES, default="iag")
    parser.add_argument("--updates", choices=["sparse", "dense"], default="sparse", help="embedding updates")
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--items", type=positive_int, default=100, help="history items N")
    parser.add_argument("--events", type=positive_int, default=6, help="events per history item E")
    parser.add_argument("--fill", type=fraction, default=1.0, help="share of real history items and events, in (0, 1]")
    parser.add_argument("--left-pad", action="store_true", help="padding items on the left instead of the right")
    parser.add_argument("--item-buckets", type=int_at_least(2), default=1_000_000, help="item table rows (>= 2)")
    parser.add_argument("--user-buckets", type=int_at_least(2), default=100_000, help="user table rows (>= 2)")
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--steps", type=positive_int, default=8, help="timed steps (after 2 warm-up steps)")
    parser.add_argument("--rows", type=positive_int, default=25, help="operators in the table")
    parser.add_argument("--shapes", action="store_true", help="split the table by the operators' input shapes")
    parser.add_argument(
        "--compare-pooling",
        action="store_true",
        help="also time steps with HSE pooling after CAM (encoder.pool_inside_attention=False), interleaved, and "
        "print the ratio (A2Gen only)",
    )
    parser.add_argument("--compile", action="store_true", help="train with config.compile_training=True (A2Gen)")
    parser.add_argument("--config", type=json_object, default="{}",
                        help="extra A2GenConfig fields as JSON, e.g. '{\"hidden_size\": 64}'")
    parser.add_argument("--output", type=Path, help="folder for profile_<name>.md / .json")
    parser.add_argument("--keep-environment", action="store_true", help="do not re-run with OMP_WAIT_POLICY=PASSIVE")
    args = parser.parse_args()
    if args.model in ("mmoe", "ple") and (args.compile or args.compare_pooling):
        parser.error("--compile and --compare-pooling apply to A2Gen (--model iag or eag)")
    return args


if __name__ == "__main__":  # a bad value is refused now, before the re-run and the slow imports below
    parse_args()

# OpenMP spinning makes small ops 10-35x slower on a shared 2-core box (PERF_NOTES.md); set it before torch loads.
if "OMP_WAIT_POLICY" not in os.environ and "--keep-environment" not in sys.argv:
    os.execve(sys.executable, [sys.executable, *sys.argv], {"OMP_WAIT_POLICY": "PASSIVE", **os.environ})

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from a2gen_hf import A2GenConfig, A2GenForActionGeneration  # noqa: E402
from a2gen_hf.configuration_baselines import MMoEConfig, PLEConfig  # noqa: E402
from a2gen_hf.host_memory import keep_freed_host_memory  # noqa: E402
from a2gen_hf.modeling_baselines import MMoEForActionPrediction, PLEForActionPrediction  # noqa: E402
from a2gen_hf.output_folders import write_text_atomically  # noqa: E402
from a2gen_hf.training.loop import TrainingSettings, configure_embedding_updates, create_optimizer  # noqa: E402

MODELS = {"iag": A2GenForActionGeneration, "eag": A2GenForActionGeneration, "mmoe": MMoEForActionPrediction,
          "ple": PLEForActionPrediction}
CONFIGS = {"iag": A2GenConfig, "eag": A2GenConfig, "mmoe": MMoEConfig, "ple": PLEConfig}


def training_batch(config: A2GenConfig, args: argparse.Namespace) -> dict[str, torch.Tensor]:
    """Random ids and times; with ``fill < 1`` each example keeps a random number of real items and events."""
    generator = torch.Generator().manual_seed(0)
    batch, items, events = args.batch_size, args.items, args.events
    action_ids = torch.randint(1, config.vocab_size, (batch, items, events), generator=generator)
    action_ids[..., 0] = config.start_action_id
    item_ids = torch.randint(1, config.item_buckets, (batch, items), generator=generator)
    if args.fill < 1.0:
        # Real items per example uniform in [1, 2 * fill * N] (mean about fill * N), events per item in [1, E].
        real_items = torch.randint(1, max(2, int(2 * args.fill * items)), (batch,), generator=generator).clamp_max(items)
        positions = torch.arange(items)
        real = positions[None, :] >= items - real_items[:, None] if args.left_pad else positions < real_items[:, None]
        item_ids = item_ids * real
        real_events = torch.randint(1, events + 1, (batch, items, 1), generator=generator)
        action_ids = action_ids * (torch.arange(events) < real_events) * real[..., None]
    labels = torch.randint(2, config.end_action_id, (batch, config.max_actions + 1), generator=generator)
    labels[:, 0], labels[:, -1] = config.start_action_id, config.end_action_id
    return {
        "user_ids": torch.randint(1, config.user_buckets, (batch,), generator=generator),
        "item_ids": torch.randint(1, config.item_buckets, (batch,), generator=generator),
        "history_item_ids": item_ids,
        "history_action_ids": action_ids,
        "history_action_times": torch.randn(batch, items, events, generator=generator).sort(-1).values,
        "labels": labels,
        "label_times": torch.randn(batch, config.max_actions + 1, generator=generator).sort(-1).values,
    }


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    fields = dict(
        item_buckets=args.item_buckets,
        user_buckets=args.user_buckets,
        max_history_items=args.items,
        max_events_per_item=args.events,
    )
    if args.model in ("iag", "eag"):
        fields["generator"] = args.model
    fields.update(args.config)
    if args.compile:
        fields["compile_training"] = True
    config = CONFIGS[args.model](**fields)
    model = MODELS[args.model](config).train()
    # The optimizer, embedding updates and host allocator of `a2gen train`.
    keep_freed_host_memory()
    training = TrainingSettings(output_dir="", sparse_embeddings=args.updates == "sparse")
    configure_embedding_updates(model, training)
    optimizer = create_optimizer(model, training)
    batch = training_batch(config, args)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        optimizer.step()

    settings = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_before": [round(value, 2) for value in os.getloadavg()],
        "model": args.model,
        "updates": args.updates,
        "optimizer": type(optimizer).__name__,
        "batch_size": args.batch_size,
        "history": f"{args.items} x {args.events}",
        "fill": args.fill,
        "padding": "left" if args.left_pad else "right",
        "item_buckets": args.item_buckets,
        "user_buckets": args.user_buckets,
        "compile_training": bool(getattr(config, "compile_training", False)),
        "config": args.config,
    }
    warm_start = time.perf_counter()
    for _ in range(2):
        step()
    warm_up_seconds = time.perf_counter() - warm_start
    seconds = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    if args.compare_pooling:
        encoder, pooled_after = model.a2gen.encoder, []
        for _ in range(args.steps):
            encoder.pool_inside_attention = False
            start = time.perf_counter()
            step()
            pooled_after.append(time.perf_counter() - start)
            encoder.pool_inside_attention = True
            start = time.perf_counter()
            step()
            seconds.append(time.perf_counter() - start)
        settings["median_step_ms_pooling_after_cam"] = round(1e3 * statistics.median(pooled_after), 1)
        settings["median_step_ms_pooling_inside_cam"] = round(1e3 * statistics.median(seconds), 1)
        settings["pooling_inside_cam_speedup"] = round(statistics.median(pooled_after) / statistics.median(seconds), 2)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as profiler:
        for _ in range(2):
            step()
    settings["load_average_after"] = [round(value, 2) for value in os.getloadavg()]
    median = statistics.median(seconds)
    table = profiler.key_averages(group_by_input_shape=args.shapes).table(
        sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=48, max_shapes_column_width=60
    )
    summary = (
        f"{args.model}: median step {median * 1e3:.1f} ms over {args.steps} steps, "
        f"{args.batch_size / median:,.0f} examples/s (warm-up {warm_up_seconds:.1f} s); profile = 2 steps"
    )
    print(json.dumps(settings))
    print(summary)
    print(table)
    if args.output is not None:
        args.output.mkdir(parents=True, exist_ok=True)
        name = f"profile_{args.model}{'_compiled' if args.compile else ''}"
        record = {"settings": settings, "median_step_s": median, "examples_per_s": args.batch_size / median,
                  "step_seconds": seconds, "warm_up_s": warm_up_seconds}
        for suffix, text in ((".json", json.dumps(record, indent=2)),
                             (".md", f"Settings: `{json.dumps(settings)}`\n\n{summary}\n\n```\n{table}\n```\n")):
            write_text_atomically(args.output / f"{name}{suffix}", text)


if __name__ == "__main__":
    main()
