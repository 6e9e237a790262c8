"""
What running level 1 in event-length groups gains on a log: training steps on a data folder's first batches with the
history items grouped by where their events end (the default, ``modeling_a2gen._event_length_groups``) and in one
group, interleaved in one process so that both see the same load. Prints the groups of the first batch, the median
step of each way and their ratio. A figure, not a test (benchmarks/README.md).

    OMP_NUM_THREADS=1 python benchmarks/compare_event_groups.py --data data/simcurve/sim1250k
    python benchmarks/compare_event_groups.py --data data/taobao --threads 2 --rounds 12
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded from elsewhere: the flag checkers beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _arguments import int_at_least, positive_int  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a data folder from `a2gen prepare` or `a2gen simulate`")
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--batches", type=positive_int, default=6,
                        help="distinct batches, from the start of the train split")
    parser.add_argument("--rounds", type=int_at_least(2), default=8,
                        help="passes over the batches (the first is warm-up, so at least 2)")
    parser.add_argument("--history-items", type=positive_int, default=50)
    parser.add_argument("--threads", type=positive_int, default=1)
    return parser.parse_args()


if __name__ == "__main__":  # a bad value is refused now, before the slow imports below (torch, transformers: seconds)
    parse_args()

import torch  # noqa: E402

from a2gen_hf import modeling_a2gen  # noqa: E402
from a2gen_hf.data import A2GenDataCollator  # noqa: E402
from a2gen_hf.host_memory import keep_freed_host_memory  # noqa: E402
from a2gen_hf.training.data_setup import create_model, load_data_dir  # noqa: E402
from a2gen_hf.training.loop import TrainingSettings, configure_embedding_updates, create_optimizer  # noqa: E402

# Level 1 splits no group when it may not leave one with fewer items than this.
ONE_GROUP = sys.maxsize


def real_event_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """`(M, E)`: the real events of the batch's items that have any, as level 1 packs them."""
    events = batch["history_action_ids"] != 0
    return events.reshape(-1, events.shape[-1])[events.any(-1).reshape(-1)]


def main() -> None:
    args = parse_args()
    keep_freed_host_memory()
    torch.set_num_threads(args.threads)
    dataset, tokenizer, _ = load_data_dir(args.data)
    torch.manual_seed(0)
    model = create_model("a2gen-iag", tokenizer, dataset, max_history_items=args.history_items).train()
    settings = TrainingSettings(output_dir="", sparse_embeddings=True)
    configure_embedding_updates(model, settings)
    optimizer = create_optimizer(model, settings)
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    train = dataset["train"]
    starts = range(0, min(len(train), args.batch_size * args.batches), args.batch_size)
    batches = [collator([train[i] for i in range(start, min(start + args.batch_size, len(train)))]) for start in starts]
    first = real_event_mask(batches[0])
    groups = modeling_a2gen._event_length_groups(first)
    print(f"first batch: {tuple(batches[0]['history_action_ids'].shape)} (batch, items, events); groups (columns, "
          f"items): {[(length, len(first) if members is None else len(members)) for length, members in groups]}")
    # The smallest group level 1 runs apart: the default, or larger than any batch (one group, as before the groups).
    ways = {"one group": ONE_GROUP, "grouped": modeling_a2gen.MIN_EVENT_GROUP_ITEMS}
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for round_index in range(args.rounds):
        for batch in batches:
            for name, min_items in ways.items():
                modeling_a2gen.MIN_EVENT_GROUP_ITEMS = min_items
                start = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                model(**batch).loss.backward()
                optimizer.step()
                if round_index:
                    seconds[name].append(time.perf_counter() - start)
    modeling_a2gen.MIN_EVENT_GROUP_ITEMS = ways["grouped"]
    single, split = (statistics.median(seconds[name]) * 1e3 for name in ways)
    print(f"{args.data}: one group {single:.1f} ms, grouped {split:.1f} ms a step (medians), one / grouped "
          f"{single / split:.2f}")


if __name__ == "__main__":
    main()
