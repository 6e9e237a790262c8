"""
Fine-tune a trained A2Gen (or MMoE / PLE) checkpoint with ``transformers.Trainer``.

The checkpoint is a folder written by ``save_pretrained`` with its tokenizer, e.g. the ``model/`` folder of
``a2gen train --output runs/iag``; the data is a folder written by ``a2gen simulate`` / ``a2gen prepare`` whose
tokenizer hashes ids the same way (its time statistics are the checkpoint's).

    python examples/finetune_with_trainer.py --checkpoint runs/iag/model --data data/sim --output runs/finetuned
    # several GPUs: the Trainer runs under accelerate launch / torchrun as usual
    accelerate launch --multi_gpu --num_processes 8 examples/finetune_with_trainer.py --checkpoint ... --data ...

Prints the validation metrics before and after fine-tuning (``eval_auc_like``, ``eval_mean_mae``, ...), then the
test split's (``test_auc_like``, ...), and saves the fine-tuned model and tokenizer to ``OUTPUT/model``. The "before"
metrics come from the Trainer's own evaluation at step 0 (``eval_on_start=True``), not from ``trainer.evaluate()``
before ``trainer.train()``: under ``accelerate launch`` such a first evaluation prepares the model for evaluation
alone, and ``train()`` then never wraps it for data parallelism (each process would train its own copy). Only the
main process prints.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from a2gen_hf import A2GenActionTokenizer, AutoModelForActionGeneration
from a2gen_hf.data import A2GenDataCollator
from a2gen_hf.training.data_setup import load_data_dir
from a2gen_hf.training.trainer import A2GenTrainer, a2gen_compute_metrics, a2gen_training_arguments


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="folder with config.json, model.safetensors, tokenizer")
    parser.add_argument("--data", required=True, help="data folder with train / validation / test splits")
    parser.add_argument("--output", required=True, help="Trainer output folder; the model goes to OUTPUT/model")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (overrides --epochs)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="dense weights")
    parser.add_argument("--embedding-learning-rate", type=float, default=2e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu", action="store_true", help="use the CPU even if a GPU is there")
    args = parser.parse_args(argv)
    if not (Path(args.checkpoint) / "config.json").is_file():  # before: the Hub's "repo id" error
        parser.error(f"--checkpoint {args.checkpoint}: no config.json there; give a folder written by save_pretrained, "
                     "e.g. the model/ folder of `a2gen train --output`.")
    if args.max_steps == 0 or (args.max_steps < 0 and args.epochs <= 0):  # before: an unchanged model saved as tuned
        parser.error(f"--epochs {args.epochs} / --max-steps {args.max_steps} train nothing; give --epochs > 0 or "
                     "--max-steps >= 1.")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    model = AutoModelForActionGeneration.from_pretrained(args.checkpoint)
    tokenizer = A2GenActionTokenizer.from_pretrained(args.checkpoint)
    dataset, data_tokenizer, _ = load_data_dir(args.data)
    # The examples' ids were hashed by the data folder's tokenizer: they must mean the same rows to the model's.
    data_tokenizer.check_same_ids(tokenizer, (f"the tokenizer of {args.data}", "the checkpoint's"))
    training_args = a2gen_training_arguments(
        args.output,
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        eval_strategy="epoch" if "validation" in dataset else "no",
        eval_on_start="validation" in dataset,  # the "before" metrics: evaluated inside train(), after DDP wrapping
        save_strategy="no",
        logging_steps=10,
        report_to="none",
        seed=args.seed,
        use_cpu=args.cpu,
    )
    trainer = A2GenTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset["train"],
        eval_dataset=dataset.get("validation"),
        data_collator=A2GenDataCollator.from_config(model.config, tokenizer),
        compute_metrics=a2gen_compute_metrics(model.config),
        embedding_learning_rate=args.embedding_learning_rate,
    )
    # No trainer.evaluate() before train(): see the docstring (eval_on_start evaluates the starting weights instead).
    trainer.train()
    main_process = trainer.is_world_process_zero()  # every process evaluates its part; one prints
    if "validation" in dataset:
        start = next(entry for entry in trainer.state.log_history if "eval_loss" in entry)  # eval_on_start's, step 0
        before = {key: value for key, value in start.items() if key.startswith("eval_")}
        if main_process:
            print("validation before:", json.dumps(before, indent=None))
        after = trainer.evaluate()
        if main_process:
            print("validation after:", json.dumps(after, indent=None))
    metrics = trainer.evaluate(dataset["test"], metric_key_prefix="test") if "test" in dataset else {}
    if metrics and main_process:
        print("test after:", json.dumps(metrics, indent=None))
    trainer.save_model(str(Path(args.output) / "model"))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(Path(args.output) / "model"))
    return metrics


if __name__ == "__main__":
    main()
