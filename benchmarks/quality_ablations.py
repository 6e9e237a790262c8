"""Ablations of A2Gen's training recipe on a data folder (docs/results.md, "What moves paper mode").

Each variant is a set of config overrides and training settings; every run trains A2Gen (or another network) on
train, selects on validation, and saves its test predictions, so that the table can pair any two variants in a
bootstrap. ``run`` trains variants; ``table`` prints and writes the comparison (JSON + Markdown).

    python benchmarks/quality_ablations.py run --data data/taobao --output runs/ablations --variants paper-b,es-auc
    python benchmarks/quality_ablations.py table --data data/taobao --output runs/ablations --reference paper-b \\
        [--variants paper-b,es-auc] [--seeds 0,1]   # default: every run and seed in the folder
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import zlib
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded from elsewhere: the flag checkers beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _arguments import non_negative_int_list, output_folder, positive_int  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "table"])
    parser.add_argument("--data", required=True)
    parser.add_argument("--output", type=output_folder, required=True, help="the folder of the runs and tables")
    parser.add_argument("--variants", default=None,
                        help="comma-separated; run: default paper-b; table: the runs to table (default: all)")
    parser.add_argument("--seeds", type=non_negative_int_list, default=None,
                        help="comma-separated seeds (>= 0); run: default 0; table: the seeds to table (default: all)")
    parser.add_argument("--baselines", default="", help="comma-separated simple baselines to add (e.g. logreg)")
    parser.add_argument("--reference", default="paper-b", help="comma-separated: the variants to pair with")
    parser.add_argument("--resamples", type=positive_int, default=1000, help="bootstrap resamples of the table")
    parser.add_argument("--bootstrap-unit", choices=["users", "examples"], default="users",
                        help="what the paired bootstrap resamples: whole users (default) or single examples")
    parser.add_argument("--train-user-share", type=positive_int, default=1,
                        help="train on the users whose CRC-32 of the raw id is 0 modulo this (a smaller log; "
                             "validation and test unchanged)")
    return parser


if __name__ == "__main__":  # a bad value is refused now, before the slow imports below (torch, transformers: seconds)
    build_parser().parse_args()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from datasets import DatasetDict  # noqa: E402
from safetensors.torch import load_model  # noqa: E402

from a2gen_hf.data.collator import A2GenDataCollator  # noqa: E402
from a2gen_hf.metrics import action_targets  # noqa: E402
from a2gen_hf.output_folders import replacing_file, write_text_atomically  # noqa: E402
from a2gen_hf.training.checkpointing import remove_earlier_run  # noqa: E402
from a2gen_hf.training.compare import (  # noqa: E402
    AblatedCollator,
    bootstrap_groups,
    check_ablations_with_the_start,
    parse_model_name,
    predict_dataset,
    test_references,
)
from a2gen_hf.training.data_setup import create_model, load_data_dir  # noqa: E402
from a2gen_hf.training.give_back import give_back_to_the_start  # noqa: E402
from a2gen_hf.training.loop import TrainingSettings, train  # noqa: E402
from a2gen_hf.training.moment_factorization import apply_moment_start  # noqa: E402
from a2gen_hf.training.simple_baselines import SIMPLE_BASELINES, start_from_regression  # noqa: E402
from a2gen_hf.training.statistics import (  # noqa: E402
    mean_std,
    paired_bootstrap_auc_difference,
    significance_label,
    too_few_class_groups,
)

# Section (b) of docs/results.md: the documented paper-mode settings.
# The embedding tables start at N(0, 0.02) (the default); the "init1" variants start every table at unit scale,
# "actions1" the action table only (docs/results.md (d), "Why paper mode was weak").
PAPER_B = dict(
    model="a2gen-iag",
    overrides={"max_history_items": 20},
    training=dict(num_epochs=2, batch_size=512, dense_learning_rate=2e-3, embedding_learning_rate=5e-3),
)
INIT1 = {"initializer_range": 1.0, "action_embedding_init_std": 1.0}
EARLY_STOP = dict(num_epochs=10, early_stopping_patience=2)
SPARSE = {
    "history_count_features": True, "target_popularity_features": True, "occurrence_head": True,
    "use_id_embeddings": False, "history_pooling": "mean",
}
SPARSE_TRAINING = dict(
    batch_size=256, dense_learning_rate=6e-3, embedding_learning_rate=5e-3, lr_schedule="plateau", num_epochs=30,
    eval_every_steps=100, early_stopping_patience=2, selection_metric="mean_auc",
)


def variant(base: dict, overrides: dict | None = None, training: dict | None = None, **extra) -> dict:
    return {
        "model": extra.get("model", base["model"]),
        "overrides": {**base["overrides"], **(overrides or {})},
        "training": {**base["training"], **(training or {})},
        "readouts": extra.get("readouts", ("sequence",)),
    }


ES_LOSS = variant(PAPER_B, training={**EARLY_STOP, "selection_metric": "loss"})
ES_AUC = variant(PAPER_B, training={**EARLY_STOP, "selection_metric": "mean_auc"})
H50 = variant(ES_AUC, overrides={"max_history_items": 50}, readouts=("sequence", "any_slot"))
LR3 = variant(H50, training={"dense_learning_rate": 1e-3, "embedding_learning_rate": 1e-3, "batch_size": 256},
              readouts=("sequence", "any_slot"))
MEAN = variant(LR3, overrides={"history_pooling": "mean"}, readouts=("sequence", "any_slot"))
PROTO_ES_INIT1 = variant(
    PAPER_B,
    overrides={"history_pooling": "mean", "target_drops_repeated_start": True, **INIT1},
    training={"dense_learning_rate": 1e-3, "embedding_learning_rate": 1e-3, "batch_size": 256, **EARLY_STOP,
              "selection_metric": "mean_auc"},
)
PROTO_ES_INIT1_H50 = variant(PROTO_ES_INIT1, overrides={"max_history_items": 50})
# The `paper_inputs` recipe until 2026-12-04 (src/a2gen_hf/recipes/paper_inputs.yaml): one head of width 32, the
# square-root pooling and the log-seconds buckets on top of proto-es-init1-h50.
PAPER_INPUTS = variant(
    PROTO_ES_INIT1_H50, overrides={"num_attention_heads": 1, "history_pooling": "sqrt", "time_buckets": 32},
    readouts=("sequence", "any_slot"),
)
# The recipe since 2026-12-04 (docs/results.md (d), "The ids memorise"): the same without id embeddings, up to 30
# epochs, no early stop before 500 steps (the variants above it keep the ids and 10 epochs, as they were run).
PAPER_INPUTS_IDFREE = variant(
    PAPER_INPUTS, overrides={"use_id_embeddings": False},
    training={"num_epochs": 30, "early_stopping_min_steps": 500},
)
# The `sparse_logs` recipe (src/a2gen_hf/recipes/sparse_logs.yaml) since 2026-12-04 evening: the residual start
# with the item counts keyed by raw id, 16 events per history item and the time heads on the absolute error.
SPARSE_RECIPE = {
    "model": "a2gen-iag",
    "overrides": {**SPARSE, "max_history_items": 50, "max_events_per_item": 16, "wide_path": True,
                  "popularity_keys": "raw_ids", "time_loss": "l1"},
    "training": {**SPARSE_TRAINING, "eval_before_training": True}, "readouts": ("sequence",),
    "warm_start": True, "residual": True,
}

def sparse_frozen(overrides: dict | None = None, training: dict | None = None, **extra) -> dict:
    """The recipe above with the wide path frozen, plus ``overrides`` / ``training`` / other spec keys."""
    return {
        **SPARSE_RECIPE, "freeze_wide": True, **extra,
        "overrides": {**SPARSE_RECIPE["overrides"], **(overrides or {})},
        "training": {**SPARSE_RECIPE["training"], **(training or {})},
    }


# How the `paper_inputs` recipe reads the sequence (its options beyond the paper, without its training protocol).
PAPER_INPUTS_READING = {
    **INIT1, "num_attention_heads": 1, "history_pooling": "sqrt", "time_buckets": 32,
    "target_drops_repeated_start": True,
}
VARIANTS = {
    "paper-b": variant(PAPER_B, readouts=("sequence", "any_slot")),
    "es-loss": ES_LOSS,
    "es-auc": ES_AUC,
    "h50": H50,
    "lr1e-3": LR3,
    "mean-pool": MEAN,
    "mmoe-fair": variant(LR3, model="mmoe-fair"),
    # The fairly fed MMoE trained as proto-es-init1-h50 (unit-scale tables, one Adam at 1e-3, early stopping on
    # validation mean AUC): the comparison the paper-mode goal asks for.
    "mmoe-fair-init1": variant(PROTO_ES_INIT1_H50, model="mmoe-fair"),
    "sparse": {"model": "a2gen-iag", "overrides": {**SPARSE, "max_history_items": 50}, "training": SPARSE_TRAINING,
               "readouts": ("sequence",)},
    "sparse-wide": {"model": "a2gen-iag", "overrides": {**SPARSE, "max_history_items": 50, "wide_path": True},
                    "training": SPARSE_TRAINING, "readouts": ("sequence",)},
    "sparse-wide-warm": {"model": "a2gen-iag", "overrides": {**SPARSE, "max_history_items": 50, "wide_path": True},
                         "training": SPARSE_TRAINING, "readouts": ("sequence",), "warm_start": True},
    # The sparse recipe started *as* the fitted regression (its other occurrence paths at zero, the regression's
    # feature statistics kept) and trained on top of it; the starting weights are evaluated too, so selection on
    # validation keeps them unless training improves on them.
    "sparse-residual": {"model": "a2gen-iag", "overrides": {**SPARSE, "max_history_items": 50, "wide_path": True},
                        "training": {**SPARSE_TRAINING, "eval_before_training": True}, "readouts": ("sequence",),
                        "warm_start": True, "residual": True},
    # The same with the item counts keyed by raw item id, as the regression keys them (the recipe since 2026-12-04
    # evening; before, by the hashed item id, which items sharing a bucket share).
    "sparse-residual-rawkeys": {
        "model": "a2gen-iag",
        "overrides": {**SPARSE, "max_history_items": 50, "wide_path": True, "popularity_keys": "raw_ids"},
        "training": {**SPARSE_TRAINING, "eval_before_training": True}, "readouts": ("sequence",),
        "warm_start": True, "residual": True,
    },
    # ... and up to 16 events per history item, so that the count features see every event the regression reads,
    # with the standardisers scaling as sklearn's StandardScaler: the `sparse_logs` recipe since 2026-12-04 evening.
    "sparse-residual-rawkeys-e16": {
        "model": "a2gen-iag",
        "overrides": {**SPARSE, "max_history_items": 50, "max_events_per_item": 16, "wide_path": True,
                      "popularity_keys": "raw_ids"},
        "training": {**SPARSE_TRAINING, "eval_before_training": True}, "readouts": ("sequence",),
        "warm_start": True, "residual": True,
    },
    # The recipe as shipped since 2026-12-04 evening, and the same with 100 warmup steps (does the validation dip of
    # the first 100 steps after the residual start go away?).
    "sparse-recipe": SPARSE_RECIPE,
    "sparse-recipe-warmup100": {**SPARSE_RECIPE, "training": {**SPARSE_RECIPE["training"], "warmup_steps": 100}},
    # ... and with slower dense learning rates (does the dip go away, and does validation hold?).
    "sparse-recipe-dlr2e-3": {**SPARSE_RECIPE, "training": {**SPARSE_RECIPE["training"], "dense_learning_rate": 2e-3}},
    "sparse-recipe-dlr1e-3": {**SPARSE_RECIPE, "training": {**SPARSE_RECIPE["training"], "dense_learning_rate": 1e-3}},
    # The recipe with the regression's coefficients held fixed after the residual start (does the validation dip
    # come from Adam moving the fitted coefficients by the learning rate in noise directions?).
    "sparse-recipe-widefrozen": sparse_frozen(),
    # The recipe (wide path frozen) with the sequence part read as the `paper_inputs` recipe reads it (unit-scale
    # tables, one head of width 32, square-root pooling, log-seconds buckets, no repeated clicks as targets): that
    # reading learned the history best without counts (0.738); does it add more to the regression?
    "sparse-frozen-pi": sparse_frozen(PAPER_INPUTS_READING),
    # The recipe (wide path frozen) with the occurrence head's loss weighted 10x: the generator's losses (a
    # validation loss of 11.6-34.5 at the start, by seed) drive the shared parts in the first steps.
    "sparse-frozen-occ10": sparse_frozen({"occurrence_loss_weight": 10.0}),
    # The recipe (wide path frozen) evaluated every 100 steps only, not also at epoch ends (`eval_at_epoch_end`):
    # on a small log (20 steps an epoch) every epoch-end evaluation that does not beat the start halves the learning
    # rates and counts towards patience, so the run stops after ~40 steps, before the residual has risen above the
    # start (at 166-200 steps on the full sample).
    "sparse-frozen-steps": sparse_frozen(training={"eval_at_epoch_end": False}),
    # The recipe (wide path frozen) with the occurrence head's learned paths multiplied by 0.1 / 0.03
    # (`occurrence_path_scale`): Adam moves each zero-started weight by about the learning rate per step, so the
    # residual's logits move by up to (context width) x 6e-3 per step; does the dip after the start go away?
    "sparse-frozen-ps0.1": sparse_frozen({"occurrence_path_scale": 0.1}),
    "sparse-frozen-ps0.03": sparse_frozen({"occurrence_path_scale": 0.03}),
    # The recipe (wide path frozen) with the occurrence head's learned paths reading the context without the count
    # and popularity features (`occurrence_paths_input="without_extra"`): its linear path over those features would
    # otherwise move the regression's (regularised) coefficients, which freezing the wide path does not prevent.
    "sparse-frozen-nx": sparse_frozen({"occurrence_paths_input": "without_extra"}),
    # Against memorising a small log (the residual falls below the start once examples repeat): dropout 0.3 on the
    # hidden layers and the embedded side features, or the embedding tables (the items' categories) held at their
    # random start.
    "sparse-frozen-drop3": sparse_frozen({"hidden_dropout_prob": 0.3, "embedding_dropout_prob": 0.3}),
    "sparse-frozen-elr0": sparse_frozen(training={"embedding_learning_rate": 0.0}),
    # Batches of 64 instead of 256: four times the optimizer steps in the first pass over the data, where the
    # residual's gain on the full sample appears (best at 166-200 steps, epoch 1).
    "sparse-frozen-b64": sparse_frozen(training={"batch_size": 64}),
    # What the recipe's gain on the full sample is made of: the history's times zeroed (the count features do not
    # read them), or the occurrence head's learned paths reading the count and popularity features alone (a
    # one-hidden-layer network on the counts; the sequence then reaches the ranking only through them).
    # The second is the `sparse_logs` recipe since 2026-12-05 (docs/results.md (d), "What the gain is made of").
    "sparse-frozen-notime": sparse_frozen(model="a2gen-iag:notime"),
    "sparse-frozen-xo": sparse_frozen({"occurrence_paths_input": "extra_only"}),
    # ... and evaluations before step 300 / 600 neither count towards the patience nor halve the learning rates (the
    # first steps' dip, docs/results.md (d)).
    "sparse-frozen-xo-pf300": sparse_frozen({"occurrence_paths_input": "extra_only"}, {"patience_from_step": 300}),
    "sparse-frozen-xo-pf600": sparse_frozen({"occurrence_paths_input": "extra_only"}, {"patience_from_step": 600}),
    # ... the head's learned paths without their linear one (the frozen wide path holds the regression over the same
    # features; the linear path would move it off its fit), with and without that grace period.
    "sparse-frozen-xo-nolin": sparse_frozen({"occurrence_paths_input": "extra_only", "occurrence_linear_path": False}),
    # ... and what the network adds fitted before training, full batch, its L2 strength chosen on validation
    # (residual_fit.fit_residual_paths), then trained on with the patience from step 300.
    "sparse-frozen-xo-fit-pf300": sparse_frozen({"occurrence_paths_input": "extra_only"}, {"patience_from_step": 300},
                                                fit_residual=True),
    "sparse-frozen-xo-nolin-pf300": sparse_frozen(
        {"occurrence_paths_input": "extra_only", "occurrence_linear_path": False}, {"patience_from_step": 300}
    ),
    "sparse-frozen-pi-occ10": sparse_frozen({**PAPER_INPUTS_READING, "occurrence_loss_weight": 10.0}),
    # What the plain prototype did differently, all at once (QUALITY_NOTES.md): 50 items, one Adam at 1e-3, mean
    # pooling, the any-slot readout, no repeated clicks in the target sequence; early stopping on mean AUC.
    "proto": variant(MEAN, overrides={"target_drops_repeated_start": True}, readouts=("sequence", "any_slot")),
    # Affordable on a loaded 2-core machine: the paper-b protocol (20 items, 2 epochs, best by validation loss) with
    # the prototype's recipe differences (one Adam at 1e-3, batch 256, mean pooling, no repeated clicks as targets).
    "proto-h20": variant(
        PAPER_B,
        overrides={"history_pooling": "mean", "target_drops_repeated_start": True},
        training={"dense_learning_rate": 1e-3, "embedding_learning_rate": 1e-3, "batch_size": 256},
        readouts=("sequence", "any_slot"),
    ),
    # proto-h20 with early stopping on validation mean AUC, and with every embedding table (ids, actions) started
    # at unit scale, as plain PyTorch does, instead of N(0, 0.02).
    "proto-es-h20": variant(
        PAPER_B,
        overrides={"history_pooling": "mean", "target_drops_repeated_start": True},
        training={"dense_learning_rate": 1e-3, "embedding_learning_rate": 1e-3, "batch_size": 256, **EARLY_STOP,
                  "selection_metric": "mean_auc"},
    ),
    "proto-es-init1-h20": PROTO_ES_INIT1,
    # proto-es-init1-h20 with 50 history items; the same with dense Adam on the id tables (as the plain
    # re-implementation), not lazy row-wise updates.
    "proto-es-init1-h50": PROTO_ES_INIT1_H50,
    "proto-es-init1-h50-dense": variant(PROTO_ES_INIT1_H50, training={"sparse_embeddings": False}),
    # proto-es-init1-h50 with one attention head of width 32 instead of four of width 8 (the plain
    # re-implementation's heads are 32 wide each).
    "proto-es-init1-h50-heads1": variant(PROTO_ES_INIT1_H50, overrides={"num_attention_heads": 1}),
    # proto-es-init1-h50-heads1 with HSE's sums divided by the square root of the count (the plain re-implementation's CAM_item).
    "proto-es-init1-h50-heads1-sqrt": variant(
        PROTO_ES_INIT1_H50, overrides={"num_attention_heads": 1, "history_pooling": "sqrt"}
    ),
    # proto-es-init1-h50-heads1 with the events' log-seconds buckets embedded too (`time_buckets`), as the plain
    # re-implementation encodes times.
    "proto-es-init1-h50-heads1-tb32": variant(
        PROTO_ES_INIT1_H50, overrides={"num_attention_heads": 1, "time_buckets": 32}
    ),
    # Both: one head of width 32, the square-root pooling and the log-seconds buckets (the `paper_inputs` recipe).
    "proto-es-init1-h50-heads1-sqrt-tb32": PAPER_INPUTS,
    # The recipe with the history's event times zeroed (the timing ablation, `a2gen-iag:notime`), and with the
    # plateau schedule (the learning rates halved after an evaluation without improvement).
    "paper-inputs-notime": variant(PAPER_INPUTS, model="a2gen-iag:notime"),
    "paper-inputs-plateau": variant(PAPER_INPUTS, training={"lr_schedule": "plateau"}),
    # The fairly fed MMoE trained with the same recipe (it reads the same timed events, buckets included).
    "mmoe-fair-paper-inputs": variant(PAPER_INPUTS, model="mmoe-fair"),
    # The recipe with one cross layer of each history event with its item before CAM_act (beyond the paper:
    # `history_event_cross_layers`, docs/results.md (e)).
    "paper-inputs-cross1": variant(PAPER_INPUTS, overrides={"history_event_cross_layers": 1}),
    # The recipe with an (item, moment) vector per history event, decoded from the item's features, 64 buckets of
    # one second (beyond the paper: `history_event_item_moments`, docs/results.md (e)).
    "paper-inputs-moments64": variant(PAPER_INPUTS, overrides={"history_event_item_moments": 64}),
    # The recipe with the embedding tables at 3e-3 (the dense weights stay at 1e-3), alone and with the decoded (item,
    # moment) vectors: the pair that lifted the simulator at 1M (docs/results.md (e)).
    "paper-inputs-elr3e-3": variant(PAPER_INPUTS, training={"embedding_learning_rate": 3e-3}),
    "paper-inputs-moments64-elr3e-3": variant(
        PAPER_INPUTS, overrides={"history_event_item_moments": 64}, training={"embedding_learning_rate": 3e-3}
    ),
    # The recipe with the id tables slower (5e-4) or the dense weights faster (3e-3) than the other weights (1e-3):
    # on this sample ids are memorised before the history's actions are learned (docs/results.md (d)).
    "paper-inputs-elr5e-4": variant(PAPER_INPUTS, training={"embedding_learning_rate": 5e-4}),
    "paper-inputs-dlr3e-3": variant(PAPER_INPUTS, training={"dense_learning_rate": 3e-3}),
    "paper-inputs-dlr1e-2": variant(PAPER_INPUTS, training={"dense_learning_rate": 1e-2}),
    "paper-inputs-dlr2e-3": variant(PAPER_INPUTS, training={"dense_learning_rate": 2e-3}),
    # Dense weights at 3e-3, every learning rate halved after an evaluation without improvement.
    "paper-inputs-dlr3e-3-plateau": variant(
        PAPER_INPUTS, training={"dense_learning_rate": 3e-3, "lr_schedule": "plateau"}
    ),
    # The recipe against the memorising of ids (docs/results.md (d), "The ids memorise"): no id embeddings at all,
    # or dropout (0.3) on the embedded ids and side features.
    "paper-inputs-idfree": variant(PAPER_INPUTS, overrides={"use_id_embeddings": False}),
    "paper-inputs-edrop3": variant(PAPER_INPUTS, overrides={"embedding_dropout_prob": 0.3}),
    # Without ids and with up to 30 epochs: the `paper_inputs` recipe since 2026-12-04; its timing ablation, and the
    # fairly fed MMoE trained the same way.
    "paper-inputs-idfree-e30": PAPER_INPUTS_IDFREE,
    "paper-inputs-idfree-notime": variant(PAPER_INPUTS_IDFREE, model="a2gen-iag:notime"),
    # The same keeping a moving average of the weights (TrainingSettings.ema_decay; docs/training.md): 0.995 per step,
    # an average over about the last 200 steps (a little more than an epoch of the sample), with the warmup (fresh
    # weights), set before any run.
    "paper-inputs-idfree-e30-ema": variant(PAPER_INPUTS_IDFREE, training={"ema_decay": 0.995, "ema_warmup": True}),
    "mmoe-fair-paper-inputs-idfree": variant(PAPER_INPUTS_IDFREE, model="mmoe-fair"),
    # proto-es-init1-h50 with four heads of width 32 each (`head_dim`), as the plain re-implementation.
    "proto-es-init1-h50-hd32": variant(PROTO_ES_INIT1_H50, overrides={"head_dim": 32}),
    # h50 (paper mode as the `paper` recipe trains it) with the embedding tables started at unit scale.
    "h50-init1": variant(H50, overrides=INIT1),
    # h50 with the action embeddings at the time features' scale, the ids as before.
    "h50-actions1": variant(H50, overrides={"action_embedding_init_std": 1.0}),
    # Section (c)'s protocol (20 items, 1 epoch, linear decay) plus the wide path.
    "sparse-wide-h20": {
        "model": "a2gen-iag", "overrides": {**SPARSE, "max_history_items": 20, "wide_path": True},
        "training": dict(batch_size=256, dense_learning_rate=6e-3, embedding_learning_rate=5e-3, lr_schedule="linear",
                         num_epochs=1),
        "readouts": ("sequence",),
    },
    "sparse-wide-warm-h20": {
        "model": "a2gen-iag", "overrides": {**SPARSE, "max_history_items": 20, "wide_path": True},
        "training": dict(batch_size=256, dense_learning_rate=6e-3, embedding_learning_rate=5e-3, lr_schedule="linear",
                         num_epochs=1),
        "readouts": ("sequence",), "warm_start": True,
    },
}


def show_evaluations() -> None:
    """Print the training loop's one line per validation evaluation (these scripts train without progress bars)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("a2gen_hf.training.loop").setLevel(logging.INFO)
    logging.getLogger("a2gen_hf.training.residual_fit").setLevel(logging.INFO)


def run_variant(name: str, spec: dict, seed: int, data, tokenizer, output: Path) -> None:
    folder = output / name / f"seed{seed}"
    if (folder / "predictions.npz").exists():
        print(f"{name} seed {seed}: done already")
        return
    print(f"{name} seed {seed}: training", flush=True)
    torch.manual_seed(seed)
    network, ablation = parse_model_name(spec["model"])  # e.g. "a2gen-iag:notime": history times zeroed
    model = create_model(network, tokenizer, data, **spec["overrides"])
    if spec.get("init_from"):  # a second phase: every weight from an earlier run's file, all of them trained
        if spec.get("warm_start") or spec.get("moment_warm_start", "off") != "off":
            raise ValueError(f"{name}: init_from gives every weight; drop the warm starts ({spec}).")
        load_model(model, spec["init_from"])
    check_ablations_with_the_start([spec["model"]], bool(spec.get("warm_start")), model.config)  # as compare
    if spec.get("warm_start"):
        start_from_regression(
            model, tokenizer, data, residual=spec.get("residual", False), frozen=spec.get("freeze_wide", False),
            fit_residual=spec.get("fit_residual", False), seed=seed,
        )
    apply_moment_start(model, tokenizer, data, spec.get("moment_warm_start", "off"))
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    if ablation:
        collator = AblatedCollator(collator, ablation)
    settings = TrainingSettings(output_dir=str(folder / "run"), seed=seed, show_progress=False, **spec["training"])
    remove_earlier_run(settings.output_dir)  # a run that stopped before its predictions were written trains again
    started = time.perf_counter()
    result = train(model, data["train"], collator, settings, eval_dataset=data["validation"])
    if spec.get("warm_start") and spec.get("residual"):  # as a2gen compare: what training did not improve goes back
        give_back_to_the_start(result.model, tokenizer, data, ranking=spec.get("fit_residual", False))
    seconds = time.perf_counter() - started
    arrays = {}
    for readout in spec["readouts"]:
        if readout != "sequence":
            result.model.config.slot_readout = readout
        for split in ("validation", "test"):
            prediction = predict_dataset(result.model, data[split], collator)
            arrays[f"{split}_{readout}"] = prediction["action_probabilities"]
        result.model.config.slot_readout = "sequence"
    _save_predictions(folder, arrays)
    summary = {
        "seconds": seconds, "global_step": result.global_step, "best_epoch": result.best_epoch,
        "best_step": result.best_step, "stopped_early": result.stopped_early, "loadavg": os.getloadavg(),
        "threads": torch.get_num_threads(), "spec": spec,
        "evaluations": [entry for entry in result.log_history if "validation_loss" in entry],
    }
    write_text_atomically(folder / "summary.json", json.dumps(summary, indent=2, default=str))
    print(f"{name} seed {seed}: {seconds:.0f} s, {result.global_step} steps, best epoch {result.best_epoch}, "
          f"load {os.getloadavg()[0]:.1f}")


def keep_train_users(data, share: int):
    """``data`` with its train split cut to the users whose CRC-32 of the raw user id is 0 modulo ``share``.

    A smaller log's training split on the same validation and test splits, so that a recipe's behaviour on small logs
    can be chosen on the shared sample's validation split (docs/results.md (d)).
    """
    if share < 1:
        raise ValueError(f"--train-user-share must be a positive integer, got {share}.")
    if share == 1:
        return data
    users = data["train"]["user"]
    keep = [index for index, user in enumerate(users) if zlib.crc32(str(user).encode()) % share == 0]
    if not keep:
        raise ValueError(f"--train-user-share {share} keeps no training example: choose a smaller share.")
    data = DatasetDict({**data, "train": data["train"].select(keep)})
    print(f"train split cut to 1/{share} of the users: {len(keep)} of {len(users)} examples", flush=True)
    return data


def run_baseline(name: str, data, tokenizer, output: Path) -> None:
    folder = output / name / "seed0"
    if (folder / "predictions.npz").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    baseline = SIMPLE_BASELINES[name](tokenizer).fit(data["train"], validation=data["validation"])
    arrays = {f"{split}_sequence": baseline.predict(data[split])["action_probabilities"] for split in ("validation", "test")}
    _save_predictions(folder, arrays)
    write_text_atomically(folder / "summary.json", json.dumps({"spec": {"model": name}}))


def split_targets(data, tokenizer, split: str) -> tuple[np.ndarray, dict[str, int]]:
    vocab = len(tokenizer.action_names) + 1
    collator = A2GenDataCollator(tokenizer, max_history_items=1)
    labels = collator([data[split][index] for index in range(len(data[split]))])["labels"]
    occurs, _, _ = action_targets(labels.numpy(), None, None, vocab)
    ranked = {name: index + 1 for index, name in enumerate(tokenizer.action_names)
              if name not in (tokenizer.start_action, tokenizer.end_action)}
    return occurs, ranked


def load_runs(output: Path, seeds: list[int] | None = None) -> dict[str, list[dict[str, np.ndarray]]]:
    """The runs' predictions by label, one entry per seed; ``seeds``: only those (a run without any of them, a
    simple baseline's one fit, keeps what it has)."""
    runs = {}
    for folder in sorted(output.glob("*/seed*/predictions.npz")):
        with np.load(folder) as arrays:
            for key in arrays.files:
                split, _, readout = key.partition("_")
                label = folder.parent.parent.name + ("" if readout == "sequence" else f"+{readout}")
                runs.setdefault(label, {}).setdefault(folder.parent.name, {})[split] = arrays[key]
    wanted = None if seeds is None else {f"seed{seed}" for seed in seeds}
    return {
        label: [found[seed] for seed in sorted(found) if wanted is None or seed in wanted or not wanted & found.keys()]
        for label, found in runs.items()
    }


def split_groups(data, tokenizer, split: str, unit: str) -> np.ndarray | None:
    """Each example's user as ``a2gen compare`` groups them (the raw ``user`` column, else the hashed user ids), or
    None where the bootstrap resamples examples (asked for, or too few users: compare.bootstrap_groups)."""
    references = test_references(data[split], A2GenDataCollator(tokenizer, max_history_items=1))
    return bootstrap_groups(references, unit)


def table(data, tokenizer, output: Path, references: list[str], resamples: int, bootstrap_unit: str = "users",
          variants: list[str] | None = None, seeds: list[int] | None = None, baselines: list[str] = ()) -> dict:
    """The table of the runs in ``output``: all of them, or the ``variants`` (with their ``+readout`` rows), the
    references and the simple ``baselines`` asked for, and only the ``seeds`` asked for (before: both were ignored)."""
    from sklearn.metrics import roc_auc_score

    runs = load_runs(output, seeds)
    if variants is not None:
        kept = set(variants) | set(references) | set(baselines)
        runs = {label: seeds for label, seeds in runs.items() if label.split("+")[0] in kept}
    targets = {split: split_targets(data, tokenizer, split) for split in ("validation", "test")}
    groups = split_groups(data, tokenizer, "test", bootstrap_unit)
    unit = "examples" if groups is None else "users"
    report = {"reference": references[0], "references": references, "variants": {}, "bootstrap_unit": unit}
    for label, seeds in runs.items():
        entry = {"seeds": len(seeds)}
        for split, (occurs, ranked) in targets.items():
            per_seed = [{action: roc_auc_score(occurs[:, i], seed[split][:, i]) for action, i in ranked.items()}
                        for seed in seeds]
            entry[split] = {action: mean_std([auc[action] for auc in per_seed]) for action in ranked}
            entry[split]["mean"] = mean_std([float(np.mean(list(auc.values()))) for auc in per_seed])
        occurs, ranked = targets["test"]
        for reference in references:
            if label == reference or reference not in runs:
                continue
            a = np.mean([seed["test"] for seed in seeds], axis=0)
            b = np.mean([seed["test"] for seed in runs[reference]], axis=0)
            rows = entry.setdefault("bootstrap", {}).setdefault(reference, {})
            for action, i in ranked.items():
                result = paired_bootstrap_auc_difference(
                    occurs[:, i], a[:, i], b[:, i], num_resamples=resamples, groups=groups
                )
                # Named after the two runs ("paper-b better"), and none where too few users hold a class.
                result["verdict"] = too_few_class_groups(result) or significance_label(
                    result["low"], result["high"], label, reference
                )
                rows[action] = result
        report["variants"][label] = entry
    return report


def markdown(report: dict, reference: str | None = None) -> str:
    reference = reference or report["reference"]
    actions = [key for key in next(iter(report["variants"].values()))["test"] if key != "mean"]
    lines = [
        "| variant | seeds | validation mean AUC | test mean AUC | " + " | ".join(f"test {a}" for a in actions)
        + " | " + " | ".join(f"{a}: minus {reference}" for a in actions) + " |",
        "| --- " * (4 + 2 * len(actions)) + "|",
    ]
    for label, entry in report["variants"].items():
        cell = lambda value: f"{value[0]:.4f}" + ("" if np.isnan(value[1]) else f" ± {value[1]:.4f}")  # noqa: E731
        boot = entry.get("bootstrap", {}).get(reference, {})
        lines.append(
            f"| {label} | {entry['seeds']} | {cell(entry['validation']['mean'])} | {cell(entry['test']['mean'])} | "
            + " | ".join(cell(entry["test"][a]) for a in actions) + " | "
            + " | ".join(
                f"{boot[a]['difference']:+.3f} [{boot[a]['low']:+.3f}, {boot[a]['high']:+.3f}]" if a in boot else ""
                for a in actions
            )
            + " |"
        )
    unit = report.get("bootstrap_unit", "examples")  # older reports resampled examples
    lines += ["", f"Differences: 95 % paired bootstrap intervals of seed-averaged predictions, resampling {unit}."]
    return "\n".join(lines) + "\n"


def _save_predictions(folder: Path, arrays: dict) -> None:
    """``predictions.npz`` written atomically: its presence marks a finished run for a resume, so a run killed while
    writing it must leave none (before: a half-written file, taken for done, broke every later report)."""
    with replacing_file(folder / "predictions.npz") as temporary, open(temporary, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    variants = None if args.variants is None else list(filter(None, args.variants.split(",")))
    unknown = [name for name in (variants or []) if name not in VARIANTS] + [
        name for name in filter(None, args.baselines.split(",")) if name not in SIMPLE_BASELINES
    ]
    if unknown:  # before any training (before: a bare KeyError after the first variant had trained)
        parser.error(f"unknown variant or baseline {unknown}; variants: {', '.join(VARIANTS)}; baselines: "
                     f"{', '.join(SIMPLE_BASELINES)}.")
    show_evaluations()
    print(f"load {os.getloadavg()}, torch threads {torch.get_num_threads()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}", flush=True)
    data, tokenizer, _ = load_data_dir(args.data)
    data = keep_train_users(data, args.train_user_share)
    output = Path(args.output)
    if args.command == "run":
        for name in filter(None, args.baselines.split(",")):
            run_baseline(name, data, tokenizer, output)
        for name in variants if variants is not None else ["paper-b"]:
            for seed in args.seeds if args.seeds is not None else [0]:
                run_variant(name, VARIANTS[name], seed, data, tokenizer, output)
    else:
        runs = load_runs(output, args.seeds)
        if not runs:  # before: an empty ablations.json, then "generator raised StopIteration"
            parser.error(f"--output {output} holds no runs (*/seed*/predictions.npz); run them first: "
                         "quality_ablations.py run")
        missing = [name for name in args.reference.split(",") if name not in runs]
        if missing:  # before: empty difference columns and exit 0
            parser.error(f"--reference {args.reference}: no runs named {missing} in {output}; its runs: "
                         f"{', '.join(sorted(runs))}")
        report = table(data, tokenizer, output, args.reference.split(","), args.resamples, args.bootstrap_unit,
                       variants, args.seeds, list(filter(None, args.baselines.split(","))))
        write_text_atomically(output / "ablations.json", json.dumps(report, indent=2, default=float))
        text = "\n".join(markdown(report, reference) for reference in report["references"])
        write_text_atomically(output / "ablations.md", text)
        print(text)


if __name__ == "__main__":
    main()
