"""How well the moment table's warm start recovers what each second of each video shows (docs/results.md (e)).

``--moment-warm-start`` (``a2gen_hf.training.moment_factorization``) writes into A2Gen's (item, moment) table a
factorisation of which users engaged at which moment of which item in train. On the simulator the truth is known:
each second of each video shows one of 8 topics (``build_catalog`` rebuilds them from the data folder's simulator
config). This script computes the warm start's row vectors exactly as ``start_moment_table_from_events`` does, for
each rank and spread asked, on the first n examples of one fixed shuffle of the train split (the learning curves'
subsets), and reports a linear probe: the 3-fold cross-validated accuracy of a logistic regression that reads a
cell's topic off its vector (chance: about 1/8), over every (video, second) cell with a vector and over the cells of
the more-watched half of the videos, and the share of cells with a vector. It reads no validation or test row.

    python benchmarks/moment_layouts_probe.py --data data/simcurve/sim1250k-r16 --sizes 100000,1000000 \\
        --ranks 8,16,32 --spreads 0,1,2 --output runs/layouts-probe
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded from elsewhere: the flag checkers beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _arguments import (  # noqa: E402
    checked,
    non_negative_float_list,
    non_negative_int_list,
    positive_float,
    positive_int,
    positive_int_list,
)

# The comma-separated options, checked after parsing (before any data is read).
LIST_OPTIONS = {"sizes": positive_int_list, "ranks": positive_int_list, "spreads": non_negative_int_list,
                "leave_weights": non_negative_float_list}


def parse_arguments(argv: list[str] | None = None):
    """The arguments, every value checked, and the function that refuses one: on the command line (``argv`` None)
    argparse's usage error, exit status 2; from Python (``main(argv)``) a ValueError naming the option."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a data folder written by `a2gen simulate`")
    parser.add_argument("--sizes", default="100000",
                        help="training sizes (first n of one fixed shuffle of train; each <= the train split)")
    parser.add_argument("--ranks", default="16", help="ranks of the factorisation (the warm start uses 16)")
    parser.add_argument("--spreads", default="0,1", help="moments either side an engagement also counts for (1)")
    parser.add_argument("--leave-weights", default="0", help="weights of the leave as evidence against (0: none)")
    parser.add_argument("--moments", type=positive_int, default=64, help="moment buckets (history_event_item_moments)")
    parser.add_argument("--moment-seconds", type=positive_float, default=1.0, help="seconds per moment bucket")
    parser.add_argument("--output", required=True, help="folder for layouts_probe.json / .md")
    args = parser.parse_args(argv)

    def refuse(message: str):
        if argv is None:
            parser.error(message)
        raise ValueError(message)

    try:
        for name, check in LIST_OPTIONS.items():
            setattr(args, name, checked(getattr(args, name), check, "--" + name.replace("_", "-")))
    except ValueError as error:
        refuse(str(error))
    args.sizes = sorted(set(args.sizes))
    return args, refuse


if __name__ == "__main__":  # a bad value is refused now, before the slow imports below (torch, transformers: seconds)
    parse_arguments()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import cross_val_score  # noqa: E402

from a2gen_hf.data.folder import load_data_dir  # noqa: E402
from a2gen_hf.data.simulator import SimulatorConfig, build_catalog  # noqa: E402
from a2gen_hf.output_folders import write_text_atomically  # noqa: E402
from a2gen_hf.training.moment_factorization import collect_sessions, engagement_layouts  # noqa: E402


def simulator_catalog(folder: Path, metadata: dict):
    if "simulator" not in metadata:
        raise SystemExit(f"{folder} was not written by `a2gen simulate`: the probe needs the simulator's topics.")
    fields = SimulatorConfig.__dataclass_fields__
    return build_catalog(SimulatorConfig(**{key: value for key, value in metadata["simulator"].items() if key in fields}))


def probe(vectors: dict[int, np.ndarray], cells: list[tuple[int, int]], topics: np.ndarray, sessions_per_cell):
    """Cross-validated accuracy of reading the topic off the vectors, on all cells with a vector and the popular half."""
    found = [index for index, (key, _) in enumerate(cells) if key in vectors]
    features = np.stack([vectors[cells[index][0]] for index in found])
    labels = topics[found]
    weight = sessions_per_cell[found]
    popular = weight >= np.median(weight)
    score = lambda x, y: float(cross_val_score(LogisticRegression(max_iter=3000), x, y, cv=3).mean())  # noqa: E731
    return {"cells": len(cells), "cells_with_vector": len(found), "accuracy": score(features, labels),
            "accuracy_popular_half": score(features[popular], labels[popular])}


def main(argv: list[str] | None = None) -> dict:
    args, refuse = parse_arguments(argv)
    folder = Path(args.data)
    dataset, tokenizer, metadata = load_data_dir(folder)
    too_large = [size for size in args.sizes if size > len(dataset["train"])]
    if too_large:  # before: the whole train split, reported under the size asked for
        refuse(f"--sizes {too_large} exceed the {len(dataset['train'])} training examples of {folder}; give sizes "
               "up to that.")
    catalog = simulator_catalog(folder, metadata)
    buckets = tokenizer.hash_items(catalog.names)
    cells, topics = [], []
    for item, bucket in enumerate(buckets):
        for second in range(min(args.moments, catalog.tick_topics.shape[1])):
            if catalog.tick_topics[item, second] >= 0:
                cells.append((int(bucket) * args.moments + int(second * 1.0 // args.moment_seconds), int(bucket)))
                topics.append(int(catalog.tick_topics[item, second]))
    topics = np.array(topics)
    order = np.random.default_rng(0).permutation(len(dataset["train"]))  # learning_curve's subsets (subset seed 0)
    rows = []
    for size in args.sizes:
        train = dataset["train"].select(np.sort(order[:size]))
        started = time.perf_counter()
        sessions = collect_sessions(train, tokenizer, args.moments, args.moment_seconds)
        seconds = time.perf_counter() - started
        per_item = np.bincount(sessions.items, minlength=int(max(buckets)) + 1)
        sessions_per_cell = np.array([per_item[bucket] for _, bucket in cells])
        for rank in args.ranks:
            for spread, leave_weight in itertools.product(args.spreads, args.leave_weights):
                keys, vectors, summary = engagement_layouts(
                    sessions, lambda items, moments: items * args.moments + moments, rank, args.moments, spread,
                    leave_weight,
                )
                found = dict(zip(keys.tolist(), vectors.numpy()))
                row = {"size": size, "rank": rank, "spread": spread, "leave_weight": leave_weight,
                       "sessions": len(sessions),
                       "seconds_reading_sessions": round(seconds, 1), **probe(found, cells, topics, sessions_per_cell),
                       "median_engagements_per_row": summary["median_engagements_per_row"]}
                print(json.dumps(row), flush=True)
                rows.append(row)
    report = {"data": str(folder), "load": os.getloadavg(), "threads": torch.get_num_threads(), "rows": rows}
    lines = ["| training examples | rank | spread | leave weight | cells with a vector | probe accuracy "
             "| popular half |", "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {row['size']:,} | {row['rank']} | {row['spread']} | {row['leave_weight']:g} | "
              f"{row['cells_with_vector'] / row['cells']:.3f} | "
              f"{row['accuracy']:.3f} | {row['accuracy_popular_half']:.3f} |" for row in rows]
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    write_text_atomically(output / "layouts_probe.json", json.dumps(report, indent=2))
    write_text_atomically(output / "layouts_probe.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
