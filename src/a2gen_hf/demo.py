"""``a2gen demo``: the whole story on the built-in simulator in a few minutes on a laptop CPU.

Simulate short-video sessions whose action timing carries intent, train A2Gen (IAG) and MMoE on the same split,
evaluate both against the simulator's oracle, print the table and three predicted vs actual timelines, save the
A2Gen checkpoint with ``save_pretrained`` and draw a predicted-vs-actual timeline PNG.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import set_seed

from .data.collator import A2GenDataCollator, ArrowBatches, collation_rows
from .data.simulator import SimulatorConfig, simulate
from .metrics import ORACLE_COLUMNS, evaluate_model, format_metrics_table, user_groups
from .output_folders import give_open_modes, write_json_atomically
from .plotting import plot_timeline, ranked_action_probabilities
from .training.checkpointing import claim_marked_runs, earlier_run_in, foreign_run_error, start_marked_run
from .training.data_setup import create_model, load_data_dir, model_config_from_tokenizer
from .training.loop import TrainingSettings, train

DEMO_MODELS = ("a2gen-iag", "mmoe")
# The file the demo writes into each of its OUTPUT/runs/NAME folders before training there: the only run folders it
# replaces. Any other folder at such a name (an `a2gen train` run of one's own) is refused before any work.
DEMO_RUN_MARKER = ".a2gen-demo-run"
DEMO_RESULTS = "demo_results.json"
logger = logging.getLogger(__name__)


@dataclass
class DemoSettings:
    """Sizes chosen so the demo ends in well under a minute on 2 idle CPU cores (see benchmarks/bench_demo.py; a busy
    machine is several times slower): 12,000 sessions and 2 epochs reach the mean AUC that 16,000 and 3 epochs did."""

    output_dir: str = "a2gen-demo"
    num_examples: int = 12_000
    num_epochs: int = 2
    batch_size: int = 256
    seed: int = 0
    num_timelines: int = 3
    num_samples: int = 3
    # Higher than the paper's 5e-4 / 1e-4 so a few epochs suffice; chosen on the validation split.
    dense_learning_rate: float = 2e-3
    embedding_learning_rate: float = 5e-3


def _foreign_run_error(folder: Path) -> ValueError:
    return foreign_run_error(folder, "a2gen demo", "give the demo another --output")


def _check_and_claim_run_folders(output_dir: Path) -> None:
    """Before any work: refuse where a folder at one of the demo's run names holds files the demo did not write
    (nothing is replaced); mark as the demo's the runs of a demo older than :data:`DEMO_RUN_MARKER` (its
    ``demo_results.json`` beside them, the runs holding a run's files, no run marked), so that they are replaced as
    before (:func:`~a2gen_hf.training.checkpointing.claim_marked_runs`)."""
    runs = output_dir / "runs"
    older = [name for name in DEMO_MODELS if (output_dir / DEMO_RESULTS).is_file() and (runs / name).is_dir()
             and not (runs / name).is_symlink() and earlier_run_in(runs / name)]  # fmt: skip
    claim_marked_runs(runs, DEMO_MODELS, DEMO_RUN_MARKER, older, _foreign_run_error)


def run_demo(settings: DemoSettings | None = None) -> dict[str, Any]:
    """Run the demo; returns the metrics per model and the paths written."""
    settings = settings or DemoSettings()
    started = time.time()
    output_dir = Path(settings.output_dir)
    _check_and_claim_run_folders(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    logger.info(f"1/5 Simulating {settings.num_examples} short-video sessions (seed {settings.seed}) ...")
    # The bucket counts (embedding rows) follow the simulated catalogue and users (a2gen_hf.data.buckets).
    simulator_config = SimulatorConfig(num_examples=settings.num_examples, seed=settings.seed)
    # datasets' cache of the generated rows lives in a temporary folder, removed once the data is saved; the demo
    # then reads the saved folder (before: a copy of every demo's data stayed in ~/.cache/huggingface/datasets)
    with tempfile.TemporaryDirectory(prefix=".a2gen-simulate-cache-", dir=output_dir) as cache:
        simulate(simulator_config, progress=logger.isEnabledFor(logging.INFO), cache_dir=cache).save(output_dir / "data")
    dataset, tokenizer, _ = load_data_dir(output_dir / "data")
    base_config = model_config_from_tokenizer(tokenizer, dataset)
    collator = A2GenDataCollator.from_config(base_config, tokenizer)
    oracle = dataset["test"].select_columns(list(ORACLE_COLUMNS))[:]
    # The train rows as Arrow tables (ArrowBatches) but not a datasets.Dataset, so that the loop shuffles them by its
    # seeded permutation, as it did the rows once read into Python here (the demo's documented figures stay).
    train_rows = ArrowBatches(dataset["train"])
    validation = dataset["validation"].select_columns(
        [name for name in dataset["validation"].column_names if name not in ("user", "item", *ORACLE_COLUMNS)]
    )
    test_loader = DataLoader(collation_rows(dataset["test"]), batch_size=1024, collate_fn=collator)
    test_users = user_groups(dataset["test"])  # GAUC's groups: the raw users

    results, models = {}, {}
    for step, name in enumerate(DEMO_MODELS, start=2):
        logger.info(f"{step}/5 Training {name} for up to {settings.num_epochs} epochs (best epoch on validation) ...")
        set_seed(settings.seed)
        model = create_model(name, tokenizer, dataset)
        run_folder = output_dir / "runs" / name  # the demo's own: a second demo replaces it
        start_marked_run(run_folder, DEMO_RUN_MARKER, lambda folder=run_folder: _foreign_run_error(folder))
        trained = train(
            model,
            train_rows,
            collator,
            TrainingSettings(
                output_dir=str(output_dir / "runs" / name),
                num_epochs=settings.num_epochs,
                batch_size=settings.batch_size,
                seed=settings.seed,
                dense_learning_rate=settings.dense_learning_rate,
                embedding_learning_rate=settings.embedding_learning_rate,
            ),
            eval_dataset=validation,
        )
        models[name] = trained.model
        results[name] = evaluate_model(trained.model, test_loader, oracle=oracle, groups=test_users)

    logger.info("4/5 Test split, against the simulator's oracle (the best any model can do); MAE in seconds:")
    print(format_metrics_table(results))

    a2gen = models[DEMO_MODELS[0]]
    logger.info(
        f"\n5/5 {settings.num_timelines} test sessions (A2Gen-IAG): the actual timeline, the top actions with "
        f"P(happens) and the expected time, the greedy timeline and {settings.num_samples} sampled ones:"
    )
    examples = dataset["test"].select(range(settings.num_timelines))
    batch = collator([examples[i] for i in range(len(examples))])
    timelines = describe_sessions(a2gen, tokenizer, batch, examples, settings.num_samples, settings.seed)

    checkpoint = output_dir / "checkpoint"
    a2gen.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    give_open_modes(checkpoint)  # safetensors writes the weights 0600; readable as the folder's other files
    probabilities = ranked_action_probabilities(a2gen.config, timelines[0][2])
    plot_path = plot_timeline(timelines[0][0], timelines[0][1], output_dir / "timeline.png", probabilities=probabilities)
    write_json_atomically(output_dir / DEMO_RESULTS, results)  # strict JSON (NaN -> null), as eval_results.json
    elapsed = time.time() - started
    print(f"\nSaved the A2Gen checkpoint to {checkpoint} (load it with AutoModelForActionGeneration.from_pretrained),")
    print(f"the timeline plot to {plot_path} and the metrics to {output_dir / DEMO_RESULTS}.")
    # Counted from run_demo's start: the imports before it (some seconds, more on a busy machine) are not in it.
    print(f"Demo finished in {elapsed:.0f} s (after start-up).")
    return {"results": results, "checkpoint": str(checkpoint), "plot": str(plot_path), "seconds": elapsed}


def describe_sessions(model, tokenizer, batch, examples, num_samples: int = 3, seed: int = 0) -> list[tuple]:
    """Print, per example of ``batch``: the actual timeline, the top actions (:func:`format_top_actions`), the greedy
    timeline and ``num_samples`` sampled ones. Returns ``(greedy, actual, action probabilities (V,))`` per example."""
    inputs = {name: value.to(model.device) for name, value in batch.items()}  # a model trained on a GPU stays there
    with torch.no_grad():
        prediction = model.predict_actions(**inputs)
        greedy = model.generate(**inputs, return_dict_in_generate=True)
        torch.manual_seed(seed)
        sampled = (
            model.generate(**inputs, do_sample=True, num_return_sequences=num_samples, return_dict_in_generate=True)
            if num_samples
            else None
        )
    probabilities, expected_seconds = prediction.action_probabilities.cpu(), prediction.expected_seconds.cpu()
    timelines = []
    for index in range(len(examples)):
        predicted = tokenizer.decode_timeline(greedy.sequences[index], greedy.times[index])
        actual = tokenizer.decode_timeline(batch["labels"][index], batch["label_times"][index], batch["label_time_mask"][index])
        timelines.append((predicted, actual, probabilities[index]))
        print(f"  session {index} ({examples[index]['user']}, {examples[index]['item']})")
        print(f"    actual       {format_timeline(actual)}")
        print(f"    top actions  {format_top_actions(tokenizer, probabilities[index], expected_seconds[index])}")
        print(f"    greedy       {format_timeline(predicted)}")
        for sample in range(num_samples):
            row = index * num_samples + sample
            label = "sampled" if sample == 0 else ""
            print(f"    {label:<12} {format_timeline(tokenizer.decode_timeline(sampled.sequences[row], sampled.times[row]))}")
    return timelines


def format_top_actions(tokenizer, probabilities, seconds, top: int = 4) -> str:
    """``like 41.2% @ 6.2s, comment 18.0% @ 7.0s, ...; leave @ 12.3s``: the ``top`` most likely actions between start
    and end with P(happens) and the expected time of their first occurrence, then the expected end (watch) time.

    Args:
        probabilities / seconds (`torch.Tensor` of shape `(vocab_size,)`): one row of
            :class:`~a2gen_hf.modeling_a2gen.A2GenActionPrediction`'s ``action_probabilities`` / ``expected_seconds``.
    """
    inner = [
        (name, float(probabilities[index]), float(seconds[index]))
        for index, name in enumerate(tokenizer.ids_to_actions)
        if name not in (tokenizer.pad_token, tokenizer.start_action, tokenizer.end_action)
    ]
    inner.sort(key=lambda entry: -entry[1])
    end = float(seconds[tokenizer.end_action_id])
    shown = ", ".join(f"{name} {probability:.1%} @ {time:.1f}s" for name, probability, time in inner[:top])
    return f"{shown}; {tokenizer.end_action} @ {end:.1f}s"


def format_timeline(timeline: list[tuple[str, float | None]]) -> str:
    """``[("start", 0.0), ("like", 2.0)]`` -> ``start@0.0s, like@2.0s`` (``?`` for an unknown time)."""
    return ", ".join(f"{action}@{'?' if seconds is None else f'{seconds:.1f}s'}" for action, seconds in timeline)
