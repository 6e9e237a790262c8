"""Quality check of sparse embedding updates: the same runs of the Accelerate loop with dense AdamW and with lazy
row-wise AdamW (``TrainingSettings(sparse_embeddings=...)``), per model and seed, scored on the validation split.

    a2gen simulate --output data/sim --num-examples 20000 --item-buckets 16384 --user-buckets 4096 \\
        --side-feature-buckets 256
    python benchmarks/compare_sparse_updates.py --data data/sim --models mmoe,a2gen-iag --seeds 0,1

Writes ``training_sparse_vs_dense.json`` / ``.md`` to ``--output`` (default benchmarks/results): per run the mean
AUC over the non-end actions, the leave-time MAE, the best epoch and the training wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded from elsewhere: the flag checkers beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _arguments import choice_list, non_negative_float, non_negative_int_list, positive_int  # noqa: E402


def parse_args(model_choices=None) -> argparse.Namespace:
    """The command line; ``--models`` checked against ``model_choices`` when given (the training code's names)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="data folder written by `a2gen simulate` / `a2gen prepare`")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--models", type=str if model_choices is None else choice_list(model_choices),
                        default="mmoe,a2gen-iag", help="comma-separated: a2gen-iag, a2gen-eag, mmoe, ple, ...")
    parser.add_argument("--seeds", type=non_negative_int_list, default="0,1", help="comma-separated seeds >= 0")
    parser.add_argument("--epochs", type=positive_int, default=3)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--embedding-lr", type=non_negative_float, default=1e-4,
                        help="learning rate of the embedding tables")
    parser.add_argument("--name", default="training_sparse_vs_dense", help="file stem of the results")
    return parser.parse_args()


if __name__ == "__main__":  # a bad value is refused now, before the slow imports below (torch, transformers: seconds)
    parse_args()

import torch  # noqa: E402
from accelerate.state import AcceleratorState, GradientState  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from a2gen_hf.data import A2GenDataCollator  # noqa: E402
from a2gen_hf.metrics import ORACLE_COLUMNS, evaluate_model, flatten_metrics  # noqa: E402
from a2gen_hf.output_folders import write_text_atomically  # noqa: E402
from a2gen_hf.training import MODEL_CHOICES, TrainingSettings, create_model, load_data_dir, train  # noqa: E402


def one_run(data, model_name: str, seed: int, sparse: bool, args: argparse.Namespace, folder: str) -> dict:
    dataset, tokenizer, _ = data
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    torch.manual_seed(seed)
    model = create_model(model_name, tokenizer, dataset)
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    settings = TrainingSettings(
        output_dir=folder, num_epochs=args.epochs, seed=seed, sparse_embeddings=sparse, show_progress=False, cpu=True,
        embedding_learning_rate=args.embedding_lr,
    )
    start = time.perf_counter()
    result = train(model, dataset["train"], collator, settings, eval_dataset=dataset["validation"])
    seconds = time.perf_counter() - start
    validation = dataset["validation"]
    oracle = (
        validation.select_columns(list(ORACLE_COLUMNS))[:] if set(ORACLE_COLUMNS) <= set(validation.column_names) else None
    )
    metrics = flatten_metrics(evaluate_model(result.model, DataLoader(validation, 1024, collate_fn=collator), oracle))
    return {
        "model": model_name,
        "seed": seed,
        "updates": "sparse" if sparse else "dense",
        "mean_auc": metrics.get("mean_auc"),
        "mae_leave": metrics.get("mae_leave"),
        "best_epoch": result.best_epoch,
        "train_seconds": seconds,
        "steps": result.global_step,
    }


def main() -> None:
    args = parse_args(MODEL_CHOICES)
    torch.set_num_threads(args.threads)
    data = load_data_dir(args.data)
    settings = {
        "data": str(args.data),
        "train_examples": len(data[0]["train"]),
        "validation_examples": len(data[0]["validation"]),
        "item_buckets": data[1].item_buckets,
        "epochs": args.epochs,
        "embedding_learning_rate": args.embedding_lr,
        "threads": torch.get_num_threads(),
        "load_average_before": [round(value, 2) for value in os.getloadavg()],
    }
    print(json.dumps(settings), flush=True)
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for model_name in args.models:
            for seed in args.seeds:
                for sparse in (False, True):
                    folder = os.path.join(scratch, f"{model_name}-{seed}-{int(sparse)}")
                    runs.append(one_run(data, model_name, seed, sparse, args, folder))
                    print(json.dumps(runs[-1]), flush=True)
    settings["load_average_after"] = [round(value, 2) for value in os.getloadavg()]
    lines = [
        "# Sparse vs dense embedding updates: validation quality (benchmarks/compare_sparse_updates.py)",
        "",
        f"Settings: `{json.dumps(settings)}`",
        "",
        "| model | updates | seed | mean AUC (validation) | MAE leave (norm.) | best epoch | steps | train s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        lines.append(
            f"| {run['model']} | {run['updates']} | {run['seed']} | {run['mean_auc']:.4f} | {run['mae_leave']:.4f} | "
            f"{run['best_epoch']} | {run['steps']} | {run['train_seconds']:.0f} |"
        )
    lines += ["", "| model | updates | mean AUC over seeds | spread (max - min) |", "| --- | --- | ---: | ---: |"]
    for model_name in args.models:
        for updates in ("dense", "sparse"):
            values = [run["mean_auc"] for run in runs if run["model"] == model_name and run["updates"] == updates]
            lines.append(f"| {model_name} | {updates} | {statistics.mean(values):.4f} | {max(values) - min(values):.4f} |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    args.output.mkdir(parents=True, exist_ok=True)
    write_text_atomically(args.output / f"{args.name}.json", json.dumps({"settings": settings, "runs": runs}, indent=1))
    write_text_atomically(args.output / f"{args.name}.md", text)


if __name__ == "__main__":
    main()
