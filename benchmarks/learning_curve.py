"""Learning curves on the simulator (docs/results.md (e), issue 13 point 4): mean AUC against training examples.

The picture that tells a user when A2Gen pays. The simulation is made ONCE, at the largest size; validation and
test stay fixed, and every model is trained on the first n examples of one fixed shuffle of the train split (so
the subsets are nested), for each n of ``--sizes`` and each seed of ``--seeds``, selected and early-stopped on
validation mean AUC (``TrainingSettings(selection_metric="mean_auc", early_stopping_patience, eval_every_steps,
lr_schedule="plateau")``). Models: A2Gen-IAG, A2Gen-EAG, the fairly fed MMoE, the logistic regression on counts,
the timing ablation ``a2gen-iag:notime`` (history event times zeroed in training and test) and the oracle (the
simulator's true probabilities, nothing trained).

Runs are resumable: a run whose ``predictions.npz`` exists is skipped (benchmarks/quality_ablations.py's
``run_variant`` / ``run_baseline`` train and save them). The report is rebuilt from every saved run:
``learning_curve.json``, ``learning_curve.md`` and ``learning_curve.png`` under ``--output``, written atomically.

    # simulate once at the largest size (tables sized from the data): 1,250,000 examples -> ~1,000,000 train
    a2gen simulate --output data/sim1m --num-examples 1250000 --parquet
    OMP_WAIT_POLICY=PASSIVE python benchmarks/learning_curve.py --data data/sim1m --output runs/curve \\
        --sizes 10000,30000,100000,300000,1000000 --seeds 0,1,2 --threads 2
    # or let the script simulate when --data does not exist yet:
    python benchmarks/learning_curve.py --data data/sim125k --simulate-examples 125000 --output runs/curve \\
        --sizes 10000,30000 --seeds 0
    # the tables and plot again from saved runs, training nothing:
    python benchmarks/learning_curve.py --data data/sim1m --output runs/curve --sizes 10000,30000 --report-only
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its thread pool

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ itself: the flag checkers, the ablation helpers
from _arguments import (  # noqa: E402
    decay,
    json_object,
    non_negative_float,
    non_negative_int,
    non_negative_int_list,
    positive_int,
    positive_int_list,
)

DEFAULT_MODELS = ("a2gen-iag", "a2gen-eag", "mmoe-fair", "logreg", "a2gen-iag:notime")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, type=Path,
                        help="data folder from `a2gen simulate` (with the oracle columns), simulated at the largest size")
    parser.add_argument("--output", required=True, type=Path,
                        help="folder of the runs (n{size}/{model}/seed{k}/predictions.npz) and the report")
    parser.add_argument("--sizes", type=positive_int_list, default="10000,30000,100000,300000,1000000",
                        help="comma-separated training-set sizes n (each <= the train split); default %(default)s")
    parser.add_argument("--seeds", type=non_negative_int_list, default="0",
                        help="comma-separated seeds of the networks (>= 0); default %(default)s")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="comma-separated networks (a2gen-iag, a2gen-eag, mmoe-fair, ..., with :notime / "
                             ":noevents ablations) and simple baselines (logreg, ...); the oracle is always added; "
                             "a2gen-iag is the bootstrap reference and must be among them; default %(default)s")
    parser.add_argument("--train-models", default=None,
                        help="comma-separated subset of --models to train (default: all of them); the others are "
                             "reported from saved runs only, so two processes can share one --output")
    parser.add_argument("--simulate-examples", type=positive_int, default=None,
                        help="when --data does not exist, simulate this many examples into it first (~80 %% train)")
    parser.add_argument("--simulator-seed", type=non_negative_int, default=0,
                        help="seed of that simulation; default %(default)s")
    parser.add_argument("--subset-seed", type=non_negative_int, default=0,
                        help="seed of the one shuffle of train whose first n examples train at size n")
    parser.add_argument("--max-validation-examples", type=positive_int, default=20000,
                        help="select on the first this-many validation examples (the same for every size); "
                             "default %(default)s")
    parser.add_argument("--max-test-examples", type=positive_int, default=None,
                        help="score on the first this-many test examples only (default: all); with "
                             "--max-validation-examples, keeps a smaller simulation's (same seed) validation and test "
                             "while train grows")
    parser.add_argument("--max-epochs", type=positive_int, default=20,
                        help="epoch cap; runs stop early on validation mean AUC first; default %(default)s")
    parser.add_argument("--patience", type=positive_int, default=2,
                        help="evaluations without improvement before stopping; default %(default)s")
    parser.add_argument("--eval-every-steps", type=positive_int, default=500,
                        help="also evaluate every K optimizer steps within an epoch (always after each epoch); "
                             "default %(default)s")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="default %(default)s")
    parser.add_argument("--dense-lr", type=non_negative_float, default=2e-3,
                        help="dense learning rate (section (a)'s choice on the simulator); default %(default)s")
    parser.add_argument("--embedding-lr", type=non_negative_float, default=5e-3,
                        help="embedding learning rate; default %(default)s")
    parser.add_argument("--ema-decay", type=decay, default=None,
                        help="evaluate, select and keep a moving average of the weights (TrainingSettings.ema_decay, "
                             "e.g. 0.999); default: none")
    parser.add_argument("--ema-every", type=positive_int, default=1,
                        help="optimizer steps between updates of the average (with --ema-decay); default %(default)s")
    parser.add_argument("--ema-warmup", action="store_true",
                        help="keep less of the average early on (TrainingSettings.ema_warmup), for fresh weights")
    parser.add_argument("--overrides", type=json_object, default={},
                        help="JSON object of config overrides for every network, e.g. '{\"hidden_size\": 8}'")
    parser.add_argument("--moment-warm-start", default="off", choices=("off", "trainable", "frozen"),
                        help="start each A2Gen's (item, moment) table from who engaged where in the size's train "
                             "subset, then train it or keep it fixed (needs the table in --overrides; "
                             "docs/model.md); default %(default)s")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="a second phase: start every network from the selected weights of the same size, model "
                             "and seed in this earlier --output (run/best_model.safetensors) and train all of them, "
                             "the moment table included (with --moment-warm-start off); default: fresh weights")
    parser.add_argument("--in-sample-examples", type=non_negative_int, default=10000,
                        help="also score each network's selected weights on this many of its own training examples "
                             "(the generalisation gap; cached per run; 0: off); default %(default)s")
    parser.add_argument("--bootstrap-resamples", type=positive_int, default=1000, help="default %(default)s")
    parser.add_argument("--bootstrap-unit", choices=["users", "examples"], default="users",
                        help="what the paired bootstrap resamples: whole users or single examples; default %(default)s")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch intra-op threads; default %(default)s")
    parser.add_argument("--report-only", action="store_true", help="train nothing; rebuild the report from saved runs")
    return parser


if __name__ == "__main__":  # a bad value is refused now, before the slow imports below (torch, transformers: seconds)
    build_parser().parse_args()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from datasets import DatasetDict  # noqa: E402
from quality_ablations import run_baseline, run_variant, show_evaluations, split_targets, table  # noqa: E402
from safetensors.torch import load_model  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from a2gen_hf.configuration_a2gen import A2GenConfig  # noqa: E402
from a2gen_hf.data.collator import A2GenDataCollator  # noqa: E402
from a2gen_hf.data.simulator import SimulatorConfig, simulate_to_parquet  # noqa: E402
from a2gen_hf.output_folders import write_text_atomically  # noqa: E402
from a2gen_hf.plotting import plot_learning_curve  # noqa: E402
from a2gen_hf.training.compare import NETWORK_LABELS, AblatedCollator, parse_model_name, predict_dataset  # noqa: E402
from a2gen_hf.training.data_setup import MODEL_CHOICES, create_model, load_data_dir  # noqa: E402
from a2gen_hf.training.loop import BEST_MODEL_FILE, TrainingSettings  # noqa: E402
from a2gen_hf.training.moment_factorization import check_moment_start  # noqa: E402
from a2gen_hf.training.statistics import mean_std, significance_label, too_few_class_groups  # noqa: E402

REFERENCE = "a2gen-iag"
REPORT_NAME = "learning_curve"
LABELS = {
    **NETWORK_LABELS, "mmoe-fair": "MMoE, fairly fed", "logreg": "logistic regression on counts",
    "a2gen-iag:notime": "A2Gen-IAG, times zeroed",
}


def folder_name(model: str) -> str:
    """A model name as a folder name: ``a2gen-iag:notime`` -> ``a2gen-iag-notime``."""
    return model.replace(":", "-")


def load_or_simulate(data_dir: Path, simulate_examples: int | None, simulator_seed: int):
    """The data folder, simulated first (Parquet shards, tables sized from the data) when it does not exist and
    ``simulate_examples`` is given."""
    if not data_dir.exists():
        if simulate_examples is None:
            raise FileNotFoundError(
                f"--data {data_dir} does not exist: simulate it first (a2gen simulate --output {data_dir} "
                "--num-examples N --parquet) or pass --simulate-examples N."
            )
        started = time.perf_counter()
        simulate_to_parquet(SimulatorConfig(num_examples=simulate_examples, seed=simulator_seed), data_dir, progress=False)
        print(f"simulated {simulate_examples} examples into {data_dir} in {time.perf_counter() - started:.0f} s", flush=True)
    dataset, tokenizer, metadata = load_data_dir(data_dir)
    for split in ("train", "validation", "test"):
        if split not in dataset or len(dataset[split]) == 0:
            raise ValueError(f"{data_dir} has no (or an empty) {split} split; the learning curve needs all three.")
    if "oracle_action_prob" not in dataset["test"].column_names:
        raise ValueError(f"{data_dir}'s test split has no oracle_action_prob column: use a folder from a2gen simulate.")
    return dataset, tokenizer, metadata


def nested_subsets(dataset: DatasetDict, sizes: list[int], subset_seed: int, max_validation: int | None,
                   max_test: int | None = None):
    """``{n: DatasetDict(train=the first n of one fixed shuffle of train, validation, test)}``: nested train
    subsets; validation (its first ``max_validation`` examples) and test (its first ``max_test``) the same for every
    n. The simulator writes each split user by user and a user's rows do not depend on how many users are
    simulated, so the first rows of a larger simulation's validation and test are a smaller one's (same seed)."""
    train = dataset["train"]
    too_large = [size for size in sizes if size > len(train)]
    if too_large:
        raise ValueError(
            f"--sizes {too_large} exceed the {len(train)} training examples of the data; simulate more "
            f"(train is ~80 % of --num-examples) or drop those sizes."
        )
    order = np.random.default_rng(subset_seed).permutation(len(train))
    validation = dataset["validation"]
    if max_validation is not None and len(validation) > max_validation:
        validation = validation.select(range(max_validation))
    test = dataset["test"]
    if max_test is not None and len(test) > max_test:
        test = test.select(range(max_test))
    return {
        size: DatasetDict(train=train.select(np.sort(order[:size])), validation=validation, test=test)
        for size in sizes
    }


def average_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainingSettings of the weights' moving average (--ema-decay, --ema-every, --ema-warmup)."""
    return {"ema_decay": args.ema_decay, "ema_every_steps": args.ema_every, "ema_warmup": args.ema_warmup}


def training_spec(model: str, args: argparse.Namespace) -> dict[str, Any]:
    """The run_variant spec of a network: the shared config overrides and training settings."""
    return {
        "model": model,
        "overrides": dict(args.overrides),
        "training": dict(
            num_epochs=args.max_epochs, batch_size=args.batch_size, dense_learning_rate=args.dense_lr,
            embedding_learning_rate=args.embedding_lr, lr_schedule="plateau", selection_metric="mean_auc",
            early_stopping_patience=args.patience, eval_every_steps=args.eval_every_steps,
            **(average_settings(args) if args.ema_decay is not None else {}),
        ),
        "readouts": ("sequence",),
        "moment_warm_start": args.moment_warm_start,
    }


def saved_training_conflict(output: Path, args: argparse.Namespace) -> str | None:
    """Why the runs saved under ``output`` cannot be resumed or reported with this command's training settings, or
    None: the report states one set of settings, and a resume skips a finished run whatever it was trained with
    (before: a report of runs trained with batch 256 said the command's batch 64)."""
    wanted = {key: value for key, value in training_spec(REFERENCE, args)["training"].items()}
    for path in sorted(output.glob("n*/*/seed*/summary.json")):
        try:
            saved = json.loads(path.read_text()).get("spec", {}).get("training")
        except (OSError, ValueError):
            continue
        if not isinstance(saved, dict):
            continue
        keys = (set(saved) | set(wanted)) - {"eval_before_training"}  # --init-from's runs add it
        differing = {key: (saved.get(key), wanted.get(key)) for key in sorted(keys) if saved.get(key) != wanted.get(key)}
        if differing:
            shown = ", ".join(f"{key} {old!r} (this command: {new!r})" for key, (old, new) in differing.items())
            return (f"--output {output}: {path.parent} was trained with {shown}; give the same settings to resume or "
                    "report these runs, or a new --output.")
    return None


def run_all(subsets: dict[int, DatasetDict], tokenizer, output: Path, models: list[str], seeds: list[int],
            args: argparse.Namespace) -> None:
    """Train (or skip, when saved) every model at every size and seed; the smallest sizes first."""
    for size, data in subsets.items():
        for model in models:
            network, _ = parse_model_name(model)
            if network not in MODEL_CHOICES:  # a simple baseline: one fit, no seed
                started = time.perf_counter()
                done = (output / f"n{size}" / model / "seed0" / "predictions.npz").exists()
                run_baseline(model, data, tokenizer, output / f"n{size}")
                print(f"n{size}/{model}: {'done already' if done else f'{time.perf_counter() - started:.0f} s'}, "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
                continue
            for seed in seeds:
                spec = training_spec(model, args)
                if args.init_from is not None:
                    spec["training"]["eval_before_training"] = True  # the starting weights compete in selection
                    spec["init_from"] = str(
                        args.init_from / f"n{size}" / folder_name(model) / f"seed{seed}" / "run" / BEST_MODEL_FILE
                    )
                run_variant(f"n{size}/{folder_name(model)}", spec, seed, data, tokenizer, output)


def _flipped(row: dict[str, float], model: str) -> dict[str, Any]:
    """quality_ablations.table's bootstrap row (model minus A2Gen-IAG) turned into A2Gen-IAG minus model."""
    low, high = -row["high"], -row["low"]
    flipped = {
        "difference": -row["difference"], "low": low, "high": high, "p_value": row["p_value"],
        **{key: row[key] for key in ("positive_users", "negative_users") if key in row},
    }
    # no verdict where too few users hold a class (statistics.MIN_CLASS_GROUPS), as in `a2gen compare`
    flipped["verdict"] = too_few_class_groups(flipped) or significance_label(
        low, high, "A2Gen-IAG", LABELS.get(model, model)
    )
    return flipped


def oracle_aucs(test, occurs: np.ndarray, ranked: dict[str, int]) -> dict[str, float]:
    """The oracle's test AUC per ranked action: ``oracle_action_prob`` has one column per action name (no padding),
    so action id ``i`` is column ``i - 1``."""
    oracle = np.asarray(test["oracle_action_prob"], dtype=np.float64)
    return {action: float(roc_auc_score(occurs[:, i], oracle[:, i - 1])) for action, i in ranked.items()}


def in_sample_auc(model: str, folder: Path, data: DatasetDict, tokenizer, overrides: dict, limit: int) -> dict | None:
    """AUC per ranked action of a trained network's selected weights (``run/best_model.safetensors``) on the first
    ``limit`` examples of its own training subset, cached in ``train_auc.json`` beside its predictions: with the test
    AUC it shows the generalisation gap (memorising vs not learning). ``None`` when the run left no weights."""
    cached = folder / "train_auc.json"
    if cached.exists():
        return json.loads(cached.read_text())
    weights = folder / "run" / BEST_MODEL_FILE
    if not weights.is_file():
        return None
    network, ablation = parse_model_name(model)
    network_model = create_model(network, tokenizer, data, **overrides)
    load_model(network_model, str(weights))
    collator = A2GenDataCollator.from_config(network_model.config, tokenizer)
    if ablation:
        collator = AblatedCollator(collator, ablation)
    rows = data["train"].select(range(min(limit, len(data["train"]))))
    probabilities = predict_dataset(network_model.eval(), rows, collator)["action_probabilities"]
    occurs, ranked = split_targets({"train": rows}, tokenizer, "train")
    auc = {action: float(roc_auc_score(occurs[:, i], probabilities[:, i])) for action, i in ranked.items()}
    result = {"examples": len(rows), "auc": auc, "mean_auc": float(np.mean(list(auc.values())))}
    write_text_atomically(cached, json.dumps(result, indent=2))
    return result


def _run_summaries(folder: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(folder.glob("seed*/summary.json")):
        summary = json.loads(path.read_text())
        if "seconds" in summary:
            runs.append({
                "seed": path.parent.name, "seconds": summary["seconds"], "steps": summary["global_step"],
                "best_step": summary["best_step"], "stopped_early": summary["stopped_early"],
                "load_1min": summary["loadavg"][0], "threads": summary["threads"],
            })
    return runs


def build_report(subsets: dict[int, DatasetDict], tokenizer, output: Path, models: list[str], resamples: int,
                 settings: dict[str, Any], in_sample_examples: int = 0) -> dict[str, Any]:
    """Per size and model: test / validation mean AUC (mean ± std over seeds), AUC per action, the share of the
    oracle's AUC lift above chance, the paired bootstrap of A2Gen-IAG minus the model per action, the run times;
    and, per size, the drop from zeroing the history's times (A2Gen-IAG minus ``a2gen-iag:notime``). With
    ``in_sample_examples`` > 0, also each network's mean AUC on that many of its own training examples."""
    any_subset = next(iter(subsets.values()))
    occurs, ranked = split_targets(any_subset, tokenizer, "test")
    oracle = oracle_aucs(any_subset["test"], occurs, ranked)
    report: dict[str, Any] = {
        "sizes": list(subsets), "models": models, "actions": list(ranked), "settings": settings,
        "num_test_examples": len(any_subset["test"]), "num_validation_examples": len(any_subset["validation"]),
        "positives_test": {action: int(occurs[:, i].sum()) for action, i in ranked.items()},
        "oracle": {"auc": oracle, "mean_auc": float(np.mean(list(oracle.values())))},
        "curves": {model: {"label": LABELS.get(model, model), "points": {}} for model in models},
        "notime_drop": {},
    }
    for size, data in subsets.items():
        folder = output / f"n{size}"
        if not folder.exists():
            continue
        variants = table(data, tokenizer, folder, [REFERENCE], resamples, settings["bootstrap_unit"])["variants"]
        for model in models:
            entry = variants.get(folder_name(model))
            if entry is None:
                continue
            test = entry["test"]
            share = {action: (test[action][0] - 0.5) / (oracle[action] - 0.5) for action in ranked}
            share["mean"] = float(np.mean(list(share.values())))
            point = {
                "seeds": entry["seeds"],
                "test_mean_auc": _cell(entry["test"]["mean"]),
                "validation_mean_auc": _cell(entry["validation"]["mean"]),
                "test_auc": {action: _cell(test[action]) for action in ranked},
                "share_of_oracle_lift": share,
                "runs": _run_summaries(folder / folder_name(model)),
            }
            if in_sample_examples and parse_model_name(model)[0] in MODEL_CHOICES:
                in_sample = [
                    in_sample_auc(model, seed_folder, data, tokenizer, settings["overrides"], in_sample_examples)
                    for seed_folder in sorted((folder / folder_name(model)).glob("seed*"))
                ]
                in_sample = [entry["mean_auc"] for entry in in_sample if entry]
                if in_sample:
                    point["train_mean_auc"] = _cell(mean_std(in_sample))
            bootstrap = entry.get("bootstrap", {}).get(REFERENCE)
            if bootstrap:
                point["a2gen_iag_minus_model"] = {action: _flipped(bootstrap[action], model) for action in ranked}
            report["curves"][model]["points"][str(size)] = point
        drop = report["curves"].get("a2gen-iag:notime", {}).get("points", {}).get(str(size), {})
        if "a2gen_iag_minus_model" in drop:
            report["notime_drop"][str(size)] = drop["a2gen_iag_minus_model"]
    return report


def _cell(value) -> dict[str, float | None]:
    mean, std = value
    return {"mean": float(mean), "std": None if math.isnan(std) else float(std)}


def _format(cell: dict[str, float | None] | None, digits: int = 4) -> str:
    if not cell:
        return "not run"
    return f"{cell['mean']:.{digits}f}" + ("" if cell["std"] is None else f" ± {cell['std']:.{digits}f}")


def _interval(row: dict[str, Any]) -> str:
    return f"{row['difference']:+.4f} [{row['low']:+.4f}, {row['high']:+.4f}] {row['verdict']}"


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables: mean AUC, share of the oracle's lift, A2Gen-IAG minus each model per action,
    the timing ablation's drop, and the runs' times."""
    models, actions, sizes = report["models"], report["actions"], report["sizes"]
    curves = report["curves"]
    oracle = report["oracle"]
    settings = report["settings"]
    lines = [
        f"Test examples: {report['num_test_examples']} (positives: "
        + ", ".join(f"{a} {n}" for a, n in report["positives_test"].items())
        + f"); validation examples used for selection: {report['num_validation_examples']}. Networks: mean ± std over "
        f"seeds {settings['seeds']}; trained with {settings['training']}; config overrides "
        f"{settings['overrides'] or 'none (the defaults)'}.",
        "",
        "Oracle (the simulator's true probabilities) test AUC: "
        + ", ".join(f"{a} {v:.4f}" for a, v in oracle["auc"].items()) + f"; mean {oracle['mean_auc']:.4f}.",
        "",
        "Test mean AUC over the ranked actions:",
        "",
        "| training examples | " + " | ".join(curves[m]["label"] for m in models) + " | oracle |",
        "| --- " * (len(models) + 2) + "|",
    ]
    for size in sizes:
        cells = [_format(curves[m]["points"].get(str(size), {}).get("test_mean_auc")) for m in models]
        lines.append(f"| {size:,} | " + " | ".join(cells) + f" | {oracle['mean_auc']:.4f} |")
    lines += [
        "", "Share of the oracle's AUC lift above chance, (AUC - 0.5) / (oracle AUC - 0.5), mean over actions "
        "(per action in the JSON):", "",
        "| training examples | " + " | ".join(curves[m]["label"] for m in models) + " |",
        "| --- " * (len(models) + 1) + "|",
    ]
    for size in sizes:
        cells = []
        for m in models:
            share = curves[m]["points"].get(str(size), {}).get("share_of_oracle_lift")
            cells.append(f"{share['mean']:.3f}" if share else "not run")
        lines.append(f"| {size:,} | " + " | ".join(cells) + " |")
    gaps = [(size, m) for size in sizes for m in models if "train_mean_auc" in curves[m]["points"].get(str(size), {})]
    if gaps:
        lines += [
            "", "Generalisation gap: mean AUC of the selected weights on (up to "
            f"{settings.get('in_sample_examples')}) of their own training examples against the test mean AUC:", "",
            "| training examples | model | train mean AUC | test mean AUC |", "| --- " * 4 + "|",
        ]
        for size, m in gaps:
            point = curves[m]["points"][str(size)]
            lines.append(f"| {size:,} | {curves[m]['label']} | {_format(point['train_mean_auc'])} | "
                         f"{_format(point['test_mean_auc'])} |")
    lines += [
        "", f"Paired bootstrap ({settings['bootstrap_resamples']} resamples, stratified, resampling "
        f"{settings.get('bootstrap_unit', 'examples')}) of the test AUC difference "
        "A2Gen-IAG minus each model, seed-averaged predictions, 95 % interval:", "",
        "| training examples | model | " + " | ".join(actions) + " |",
        "| --- " * (len(actions) + 2) + "|",
    ]
    for size in sizes:
        for m in models:
            rows = curves[m]["points"].get(str(size), {}).get("a2gen_iag_minus_model")
            if rows:
                lines.append(f"| {size:,} | {curves[m]['label']} | " + " | ".join(_interval(rows[a]) for a in actions) + " |")
    if report["notime_drop"]:
        lines += [
            "", "Drop from zeroing the history's event times (A2Gen-IAG minus A2Gen-IAG trained and tested with the "
            "times zeroed), per action, 95 % interval:", "",
            "| training examples | " + " | ".join(actions) + " |",
            "| --- " * (len(actions) + 1) + "|",
        ]
        for size, rows in report["notime_drop"].items():
            lines.append(f"| {int(size):,} | " + " | ".join(_interval(rows[a]) for a in actions) + " |")
    lines += ["", "Training runs (seconds of training, optimizer steps, step of the selected weights, 1-min load "
              "average at the end, torch threads):", "",
              "| training examples | model | seed | seconds | steps | best step | stopped early | load | threads |",
              "| --- " * 9 + "|"]
    for size in sizes:
        for m in models:
            for run in curves[m]["points"].get(str(size), {}).get("runs", []):
                lines.append(
                    f"| {size:,} | {curves[m]['label']} | {run['seed']} | {run['seconds']:.0f} | {run['steps']} | "
                    f"{run['best_step']} | {run['stopped_early']} | {run['load_1min']:.1f} | {run['threads']} |"
                )
    return "\n".join(lines) + "\n"


def write_outputs(report: dict[str, Any], output: Path) -> list[Path]:
    """``learning_curve.json`` / ``.md`` / ``.png`` under ``output``, each written to a temporary sibling first."""
    output.mkdir(parents=True, exist_ok=True)
    paths = [output / f"{REPORT_NAME}.{suffix}" for suffix in ("json", "md", "png")]
    write_text_atomically(paths[0], json.dumps(report, indent=2))
    write_text_atomically(paths[1], markdown(report))
    with tempfile.TemporaryDirectory(dir=output) as staging:
        plot_learning_curve(report, Path(staging) / paths[2].name)
        os.replace(Path(staging) / paths[2].name, paths[2])
    return paths


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    show_evaluations()
    try:
        sizes = sorted(set(args.sizes))
        seeds = args.seeds
        models = [name for name in args.models.split(",") if name]
        for name in models:
            parse_model_name(name)
        if REFERENCE not in models:
            raise ValueError(f"--models {args.models!r} must include {REFERENCE}: every difference is against it.")
        train_models = models if args.train_models is None else [name for name in args.train_models.split(",") if name]
        unknown = [name for name in train_models if name not in models]
        if unknown or not train_models:
            raise ValueError(f"--train-models {args.train_models!r}: give a non-empty subset of --models {models}.")
        check_moment_start(A2GenConfig(**args.overrides), args.moment_warm_start)
        TrainingSettings(output_dir="", **average_settings(args))  # checks them
        if args.init_from is not None and args.moment_warm_start != "off":
            raise ValueError("--init-from starts from an earlier run's weights: use --moment-warm-start off.")
        if args.init_from is not None and not args.init_from.is_dir():
            raise ValueError(f"--init-from {args.init_from}: no such folder (an earlier run's --output).")
        if (conflict := saved_training_conflict(args.output, args)) is not None:
            raise ValueError(conflict)
    except ValueError as error:
        parser.error(str(error))
    torch.set_num_threads(args.threads)
    print(f"load {os.getloadavg()}, torch threads {torch.get_num_threads()}, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS')}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}", flush=True)
    dataset, tokenizer, _ = load_or_simulate(args.data, args.simulate_examples, args.simulator_seed)
    try:
        subsets = nested_subsets(dataset, sizes, args.subset_seed, args.max_validation_examples, args.max_test_examples)
    except ValueError as error:  # --sizes beyond the data's training split: a usage error, not a traceback
        raise SystemExit(f"learning_curve.py: error: {error}") from None
    if not args.report_only:
        run_all(subsets, tokenizer, args.output, train_models, seeds, args)
    settings = {
        "data": str(args.data), "seeds": seeds, "subset_seed": args.subset_seed, "overrides": args.overrides,
        "moment_warm_start": args.moment_warm_start, "init_from": None if args.init_from is None else str(args.init_from),
        "max_validation_examples": args.max_validation_examples, "max_test_examples": args.max_test_examples,
        "training": training_spec(REFERENCE, args)["training"], "bootstrap_resamples": args.bootstrap_resamples,
        "bootstrap_unit": args.bootstrap_unit, "in_sample_examples": args.in_sample_examples, "threads": torch.get_num_threads(),
        "load_at_report": os.getloadavg(),
    }
    report = build_report(
        subsets, tokenizer, args.output, models, args.bootstrap_resamples, settings, args.in_sample_examples
    )
    paths = write_outputs(report, args.output)
    print(markdown(report))
    print("written: " + ", ".join(str(path) for path in paths))
    return report


if __name__ == "__main__":
    main()
