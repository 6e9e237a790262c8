"""transformers.Trainer with A2Gen and the baselines: training, predict_actions metrics, the fine-tuning example."""

import functools
import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import EvalPrediction

from a2gen_hf import A2GenConfig
from a2gen_hf.data import A2GenDataCollator
from a2gen_hf.training.data_setup import create_model, load_data_dir
from a2gen_hf.training.trainer import (
    LABEL_NAMES,
    A2GenTrainer,
    a2gen_compute_metrics,
    a2gen_training_arguments,
)

REPO = Path(__file__).resolve().parents[1]
TINY = {"hidden_size": 16, "id_embedding_size": 16}
QUIET = {"report_to": "none", "disable_tqdm": True, "save_strategy": "no", "use_cpu": True, "seed": 0}


@pytest.fixture(scope="module", autouse=True)
def offline_caches_and_one_thread(tmp_path_factory):
    cache = tmp_path_factory.mktemp("hf_home")
    saved = {name: os.environ.get(name) for name in ("HF_HOME", "HF_DATASETS_CACHE", "HF_HUB_OFFLINE")}
    os.environ.update(HF_HOME=str(cache), HF_DATASETS_CACHE=str(cache / "datasets"), HF_HUB_OFFLINE="1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is the fastest on a shared machine
    yield
    torch.set_num_threads(threads)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def data_dir(simulated_data_dir, offline_caches_and_one_thread):
    return simulated_data_dir


def make_trainer(model, tokenizer, dataset, output_dir, embedding_learning_rate=None, **arguments):
    args = a2gen_training_arguments(str(output_dir), **{"per_device_train_batch_size": 32,
                                    "per_device_eval_batch_size": 64, **QUIET, **arguments})
    return A2GenTrainer(
        model=model,
        args=args,
        train_dataset=dataset["train"],
        eval_dataset=dataset["validation"],
        data_collator=A2GenDataCollator.from_config(model.config, tokenizer),
        compute_metrics=a2gen_compute_metrics(model.config),
        embedding_learning_rate=embedding_learning_rate,
    )


def test_trainer_trains_a2gen_and_reports_action_metrics(data_dir, tmp_path):
    dataset, tokenizer, _ = load_data_dir(data_dir)
    torch.manual_seed(0)
    model = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    trainer = make_trainer(model, tokenizer, dataset, tmp_path, embedding_learning_rate=1e-3, max_steps=12,
                           learning_rate=5e-3, lr_scheduler_type="constant", logging_steps=4)
    assert trainer.model_accepts_loss_kwargs is False
    forwarded_keys = set()
    hook = model.register_forward_pre_hook(lambda _, args, kwargs: forwarded_keys.update(kwargs), with_kwargs=True)

    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    hook.remove()

    assert after["eval_loss"] < before["eval_loss"] - 0.5
    assert "num_items_in_batch" not in forwarded_keys and {"labels", "label_times"} <= forwarded_keys
    for action in ("like", "follow", "forward", "comment"):
        assert 0.0 <= after[f"eval_auc_{action}"] <= 1.0
    assert math.isfinite(after["eval_mean_auc"]) and math.isfinite(after["eval_mae_leave"])
    # Counts stay out of the logged metrics; the recommender metrics group by user.
    assert not [key for key in after if key.startswith(("eval_num_examples", "eval_positives", "eval_timed_count"))]
    assert {"eval_gauc_like", "eval_logloss_like", "eval_ndcg_at_10_like", "eval_calibration_like"} <= set(after)
    assert 0.0 <= after["eval_next_action_accuracy"] <= 1.0
    # The embedding tables kept their own learning rate.
    rates = sorted(group["lr"] for group in trainer.optimizer.param_groups)
    assert rates == [1e-3, 5e-3]
    # The logged learning_rate is the dense weights' (args.learning_rate), not the first group's (the tables').
    logged = [entry["learning_rate"] for entry in trainer.state.log_history if "learning_rate" in entry]
    assert logged and all(rate == pytest.approx(5e-3) for rate in logged)


def test_trainer_evaluates_baselines_and_eag(data_dir, tmp_path):
    dataset, tokenizer, _ = load_data_dir(data_dir)
    for name in ("mmoe", "a2gen-eag"):
        model = create_model(name, tokenizer, dataset, **TINY)
        metrics = make_trainer(model, tokenizer, dataset, tmp_path / name).evaluate()
        assert math.isfinite(metrics["eval_loss"]) and math.isfinite(metrics["eval_auc_like"]), name
        assert math.isfinite(metrics["eval_mean_mae"]), name


def test_trainer_options_it_cannot_honour_are_refused_and_unconcatenated_batches_are_joined(data_dir, tmp_path):
    """label_smoothing_factor (before: a RuntimeError of shapes inside the Trainer, or EAG's "needs labels"), a
    checkpoint of `a2gen train` to resume from (before: a bare FileNotFoundError of trainer_state.json), and
    eval_do_concat_batches=False (before: "use A2GenTrainer, not transformers.Trainer", with A2GenTrainer)."""
    dataset, tokenizer, _ = load_data_dir(data_dir)
    torch.manual_seed(0)
    model = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    with pytest.raises(ValueError, match=r"label_smoothing_factor=0\.1: .*Set label_smoothing_factor=0"):
        make_trainer(model, tokenizer, dataset, tmp_path / "smoothed", label_smoothing_factor=0.1)
    for rate in (float("nan"), float("inf"), -1.0, True):  # before: trained to a NaN loss / moved the tables uphill
        with pytest.raises(ValueError, match=rf"embedding_learning_rate={rate!r} must be a finite number >= 0"):
            make_trainer(model, tokenizer, dataset, tmp_path / "rates", embedding_learning_rate=rate)
    concatenated = make_trainer(model, tokenizer, dataset, tmp_path / "joined", per_device_eval_batch_size=8)
    per_batch = make_trainer(model, tokenizer, dataset, tmp_path / "batches", per_device_eval_batch_size=8,
                             eval_do_concat_batches=False)
    expected, metrics = concatenated.evaluate(), per_batch.evaluate()
    for key in ("eval_mean_auc", "eval_gauc_like", "eval_mae_leave", "eval_next_action_accuracy"):
        assert metrics[key] == pytest.approx(expected[key], nan_ok=True), key
    checkpoint = tmp_path / "a2gen-run" / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    (checkpoint / "a2gen_checkpoint.json").write_text("{}")
    with pytest.raises(ValueError, match=r"checkpoint-4 is a checkpoint of `a2gen train` .*a2gen train --resume"):
        make_trainer(model, tokenizer, dataset, tmp_path / "resumed", max_steps=1).train(resume_from_checkpoint=str(checkpoint))


def test_resuming_from_a_checkpoint_of_another_model_or_config_is_refused(data_dir, tmp_path):
    """Before: Trainer loaded with strict=False and only warned, so an MMoE "resumed" from an A2Gen checkpoint trained
    its random weights, and another history_pooling read the weights under another meaning without a word."""
    from a2gen_hf.strict_loading import CheckpointError

    dataset, tokenizer, _ = load_data_dir(data_dir)
    torch.manual_seed(0)
    make_trainer(create_model("a2gen-iag", tokenizer, dataset, **TINY), tokenizer, dataset, tmp_path / "run",
                 max_steps=2, save_strategy="steps", save_steps=2, save_only_model=True).train()
    checkpoint = str(tmp_path / "run" / "checkpoint-2")
    with pytest.raises(CheckpointError, match=r"checkpoint of a 'a2gen' model, not of this 'a2gen_mmoe' model"):
        make_trainer(create_model("mmoe", tokenizer, dataset), tokenizer, dataset, tmp_path / "mmoe",
                     max_steps=3).train(resume_from_checkpoint=checkpoint)
    other = create_model("a2gen-iag", tokenizer, dataset, **{**TINY, "history_pooling": "mean"})
    with pytest.raises(CheckpointError, match=r"another config \(history_pooling: checkpoint '\w+', model 'mean'"):
        make_trainer(other, tokenizer, dataset, tmp_path / "mean", max_steps=3).train(resume_from_checkpoint=checkpoint)
    same = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    resumed = make_trainer(same, tokenizer, dataset, tmp_path / "same", max_steps=3).train(resume_from_checkpoint=checkpoint)
    assert resumed.global_step == 3


def test_batch_eval_metrics_gives_the_metrics_of_the_whole_split(data_dir, tmp_path):
    """Before: A2GenTrainer(batch_eval_metrics=True) failed at once, transformers blaming "your compute_metrics"."""
    dataset, tokenizer, _ = load_data_dir(data_dir)
    torch.manual_seed(0)
    model = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    whole = make_trainer(model, tokenizer, dataset, tmp_path / "whole", per_device_eval_batch_size=16).evaluate()
    batched = make_trainer(model, tokenizer, dataset, tmp_path / "batched", per_device_eval_batch_size=16,
                           batch_eval_metrics=True).evaluate()
    for key in ("eval_mean_auc", "eval_gauc_like", "eval_mae_leave", "eval_next_action_accuracy"):
        assert batched[key] == pytest.approx(whole[key], nan_ok=True), key
    again = make_trainer(model, tokenizer, dataset, tmp_path / "again", per_device_eval_batch_size=16,
                         batch_eval_metrics=True)
    assert again.evaluate()["eval_mean_auc"] == pytest.approx(again.evaluate()["eval_mean_auc"])  # nothing carried over


def test_training_args_bin_never_holds_the_hub_token(data_dir, tmp_path):
    """The Trainer pickles its arguments into training_args.bin and trainer.push_to_hub uploads it: before, hub_token
    went to the Hub in plain text. In memory (and in copies) the token stays, for pushing."""
    import copy
    import pickle

    from transformers import TrainingArguments

    dataset, tokenizer, _ = load_data_dir(data_dir)
    model = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    trainer = make_trainer(model, tokenizer, dataset, tmp_path, hub_token="hf_do_not_leak", max_steps=1)
    assert trainer.args.hub_token == "hf_do_not_leak" and copy.deepcopy(trainer.args).hub_token == "hf_do_not_leak"
    assert b"hf_do_not_leak" not in pickle.dumps(trainer.args)
    trainer.save_model(str(tmp_path / "saved"))
    saved = (tmp_path / "saved" / "training_args.bin").read_bytes()
    assert b"hf_do_not_leak" not in saved
    restored = torch.load(tmp_path / "saved" / "training_args.bin", weights_only=False)
    assert type(restored) is TrainingArguments and restored.hub_token is None
    assert restored.learning_rate == trainer.args.learning_rate


def test_the_card_of_a_run_that_loads_its_best_checkpoint_shows_that_checkpoints_metrics(data_dir, tmp_path):
    """load_best_model_at_end: the model pushed is the best checkpoint's, and so are the card's AUC and MAE (before:
    the last evaluation's, of weights thrown away)."""
    from huggingface_hub import ModelCard

    dataset, tokenizer, _ = load_data_dir(data_dir)
    torch.manual_seed(0)
    model = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    trainer = make_trainer(model, tokenizer, dataset, tmp_path, max_steps=4, learning_rate=5e-2, eval_strategy="steps",
                           eval_steps=1, save_strategy="steps", save_steps=1, load_best_model_at_end=True,
                           metric_for_best_model="mean_auc")  # fmt: skip
    trainer.processing_class = tokenizer
    trainer.train()
    evaluations = {entry["step"]: entry for entry in trainer.state.log_history if "eval_auc_like" in entry}
    best = trainer.state.best_global_step
    assert best in evaluations and len(evaluations) == 4
    trainer.create_model_card(dataset="simulated")
    card = ModelCard.load(tmp_path / "README.md")
    values = {result.metric_name: result.metric_value for result in card.data.eval_results}
    assert values["AUC (like)"] == pytest.approx(evaluations[best]["eval_auc_like"])  # (best is step 2 here)


def test_training_arguments_and_compute_metrics_errors(tmp_path):
    args = a2gen_training_arguments(str(tmp_path), report_to="none")
    assert args.remove_unused_columns is False and args.label_names == LABEL_NAMES
    # no pinned memory without an accelerator (torch warned at every evaluation); a choice of one's own stands
    assert args.dataloader_pin_memory is torch.accelerator.is_available()
    assert a2gen_training_arguments(str(tmp_path), use_cpu=True).dataloader_pin_memory is False
    assert a2gen_training_arguments(str(tmp_path), dataloader_pin_memory=True).dataloader_pin_memory is True
    with pytest.raises(ValueError, match="remove_unused_columns=True does not work"):
        a2gen_training_arguments(str(tmp_path), remove_unused_columns=True)
    with pytest.raises(ValueError, match="label_names"):
        a2gen_training_arguments(str(tmp_path), label_names=["labels"])
    compute = a2gen_compute_metrics(A2GenConfig())
    plain_trainer_outputs = EvalPrediction(predictions=(np.zeros((2, 6, 7)), np.zeros((2, 6))), label_ids=None)
    with pytest.raises(ValueError, match="use A2GenTrainer"):
        compute(plain_trainer_outputs)


def test_finetune_example_loads_a_checkpoint_and_saves_the_result(data_dir, tmp_path, monkeypatch, capsys):
    """The example fine-tunes and saves; its "before" metrics come from the evaluation at step 0 inside train()
    (eval_on_start), never from evaluate() before train(): under accelerate launch that first evaluation prepares the
    model for evaluation alone and train() then never wraps it in DDP (each process trained its own copy). Only the
    main process prints."""
    dataset, tokenizer, _ = load_data_dir(data_dir)
    torch.manual_seed(0)
    checkpoint = tmp_path / "checkpoint"
    create_model("a2gen-iag", tokenizer, dataset, **TINY).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    spec = importlib.util.spec_from_file_location("finetune_with_trainer", REPO / "examples" / "finetune_with_trainer.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    calls = []

    def recording(name):
        method = getattr(A2GenTrainer, name)

        def recorded(self, *args, **kwargs):
            # the Trainer's own evaluations inside train() (eval_on_start, eval_strategy) are part of "train"
            if not (calls and calls[-1] == "train" and self.is_in_train):
                calls.append(name)
            return method(self, *args, **kwargs)

        return recorded

    for name in ("train", "evaluate"):
        monkeypatch.setattr(A2GenTrainer, name, recording(name))

    output = tmp_path / "finetuned"
    metrics = example.main(["--checkpoint", str(checkpoint), "--data", str(data_dir), "--output", str(output),
                            "--max-steps", "6", "--batch-size", "32", "--learning-rate", "5e-3", "--cpu"])
    assert "test_num_examples" not in metrics and math.isfinite(metrics["test_mean_auc"])  # no counts logged
    assert (output / "model" / "model.safetensors").exists() and (output / "model" / "vocab.json").exists()
    assert calls[0] == "train", f"the example evaluates before train(): {calls}"
    labels = ("validation before:", "validation after:", "test after:")
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith(labels)]  # not the Trainer's
    assert [line.split(":")[0] + ":" for line in printed] == list(labels)
    before = json.loads(printed[0].split(":", 1)[1])
    assert math.isfinite(before["eval_loss"]) and before["eval_loss"] != json.loads(printed[1].split(":", 1)[1])["eval_loss"]

    monkeypatch.setattr(A2GenTrainer, "is_world_process_zero", lambda self: False)  # another process of a launch
    example.main(["--checkpoint", str(checkpoint), "--data", str(data_dir), "--output", str(tmp_path / "other"),
                  "--max-steps", "1", "--batch-size", "32", "--cpu"])
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith(labels)]


# Models and options whose weights differ: each must give every trainable weight a gradient at every step.
EVERY_WEIGHT_TRAINED = [
    *[(name, {}) for name in ("a2gen-iag", "a2gen-eag", "mmoe", "ple", "mmoe-fair", "ple-fair")],
    ("mmoe", {"use_id_embeddings": False}),
    ("a2gen-iag", {"use_id_embeddings": False, "occurrence_head": True, "occurrence_paths_input": "extra_only",
                   "occurrence_linear_path": False, "occurrence_hidden_size": 8, "history_count_features": True}),
    ("a2gen-iag", {"wide_path": True, "history_count_features": True, "history_propensity_features": True,
                   "target_popularity_features": True, "context_interactions": True, "time_per_action": True}),
    ("a2gen-eag", {"history_event_item_moments": 8, "history_event_moment_source": "table", "target_item_moments": True,
                   "history_item_exposure": True, "eag_position_embeddings": True, "eag_shared_event_embedding": False}),
    ("a2gen-iag", {"slot_readout": "any_slot", "cam_gate_input": "projected", "iag_slot_activation": "relu"}),
]


def test_training_arguments_skip_ddps_search_for_unused_weights(data_dir, tmp_path):
    """Every trainable weight of the package's models takes a gradient at every step (what an option leaves out is
    frozen): DDP is told not to search for unused ones (the Trainer's default searched, and warned at every 2-process
    run that it found none). A weight left without a gradient would stop DDP without the search: checked here."""
    assert a2gen_training_arguments(str(tmp_path), report_to="none").ddp_find_unused_parameters is False
    kept = a2gen_training_arguments(str(tmp_path), report_to="none", ddp_find_unused_parameters=True)
    assert kept.ddp_find_unused_parameters is True
    dataset, tokenizer, _ = load_data_dir(data_dir)
    rows = [dataset["train"][index] for index in range(8)]
    for name, options in EVERY_WEIGHT_TRAINED:
        torch.manual_seed(0)
        model = create_model(name, tokenizer, dataset, **TINY, **options)
        model.train()
        model(**A2GenDataCollator.from_config(model.config, tokenizer)(rows)).loss.backward()
        unused = [weight for weight, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not unused, f"{name} {options}: trainable weights without a gradient: {unused}"


def test_the_loss_of_a_padded_last_evaluation_batch_counts_its_real_examples_only(data_dir, tmp_path, monkeypatch):
    """Several processes, a split that does not divide evenly: the last batch of a process is padded with copies of
    the split's first examples, and the Trainer keeps its mean loss as the loss of the real ones (gather_for_metrics
    keeps `remainder` counts of the processes' losses). Process 1 of 2 with batches of 8 and 11 examples left for the
    last step holds 3 real ones: its loss is theirs, not that of all 8 rows (upstream eval_loss counted the copies)."""
    dataset, tokenizer, _ = load_data_dir(data_dir)
    torch.manual_seed(0)
    model = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    trainer = make_trainer(model, tokenizer, dataset, tmp_path, per_device_eval_batch_size=8)
    batch = next(iter(trainer.get_eval_dataloader()))
    model.eval()

    def loss_of(rows):
        with torch.no_grad():
            return model(**{k: v[:rows] for k, v in batch.items() if k != "user_keys"}).loss.item()

    def step_loss(position, prediction_loss_only=True):
        monkeypatch.setattr(trainer, "_evaluation_position", lambda: position, raising=False)
        inputs = {key: value.clone() for key, value in batch.items()}
        return trainer.prediction_step(model, inputs, prediction_loss_only=prediction_loss_only)[0].item()

    assert loss_of(3) != pytest.approx(loss_of(8), rel=1e-3)
    assert step_loss((2, 1, True, 11)) == pytest.approx(loss_of(3), rel=1e-6)
    assert step_loss((2, 1, True, 11), prediction_loss_only=False) == pytest.approx(loss_of(3), rel=1e-6)
    assert step_loss((2, 0, True, 11)) == pytest.approx(loss_of(8), rel=1e-6)  # process 0: all real
    assert step_loss((2, 1, False, 11)) == pytest.approx(loss_of(8), rel=1e-6)  # not the last batch
    assert step_loss((1, 0, True, 3)) == pytest.approx(loss_of(8), rel=1e-6)  # one process: no padding


def trainable(model):
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad and p.is_floating_point()}


def make_averaging_trainer(model, tokenizer, dataset, output_dir, decay=0.5, **arguments):
    settings = {**QUIET, "per_device_train_batch_size": 32, "per_device_eval_batch_size": 64, "learning_rate": 5e-3,
                "lr_scheduler_type": "constant", **arguments}
    return A2GenTrainer(
        model=model, args=a2gen_training_arguments(str(output_dir), **settings), train_dataset=dataset["train"],
        eval_dataset=dataset["validation"], data_collator=A2GenDataCollator.from_config(model.config, tokenizer),
        compute_metrics=a2gen_compute_metrics(model.config), weight_average_decay=decay,
    )


def test_trainer_weight_average_is_evaluated_and_ends_in_the_model(data_dir, tmp_path):
    """weight_average_decay: after every optimizer step the average moves by (1 - decay) towards the weights;
    evaluations during training score it; after training the model holds it; bad settings are refused at once."""
    from transformers import TrainerCallback

    dataset, tokenizer, _ = load_data_dir(data_dir)
    torch.manual_seed(0)
    model = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    expected = trainable(model)
    evaluated, trained = [], {}

    class Watch(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # runs after the trainer's own average update
            trained.update(trainable(model))
            for name, weight in trained.items():
                expected[name] += 0.5 * (weight - expected[name])

        def on_evaluate(self, args, state, control, **kwargs):
            evaluated.append({name: value.clone() for name, value in trainable(model).items()})

    trainer = make_averaging_trainer(model, tokenizer, dataset, tmp_path, max_steps=6, eval_strategy="steps",
                                     eval_steps=3)
    trainer.add_callback(Watch())
    trainer.train()
    assert len(evaluated) == 2
    final = trainable(model)
    for name, value in expected.items():
        torch.testing.assert_close(final[name], value, rtol=1e-5, atol=1e-6)
    # The evaluation at step 6 scored the average, not the weights the optimizer had reached.
    for name, value in final.items():
        torch.testing.assert_close(evaluated[-1][name], value)
    assert any(not torch.allclose(trained[name], value) for name, value in final.items())
    assert trainer.weight_average is None  # training is over: evaluate() now scores the model as it is
    for bad in ({"decay": 1.5}, {"decay": 0.0}):
        with pytest.raises(ValueError, match="must be in \\(0, 1\\)"):
            make_averaging_trainer(model, tokenizer, dataset, tmp_path / "bad", max_steps=1, **bad)


def test_trainer_weight_average_is_checkpointed_resumed_and_kept_at_the_best(data_dir, tmp_path):
    """Checkpoints hold the average; resuming restores it (a 2 + 2 step run ends as a 4-step one); a checkpoint
    without it is refused by name; with load_best_model_at_end the model ends as the best checkpoint's average."""
    from safetensors.torch import load_file

    from a2gen_hf.training.weight_average import WEIGHT_AVERAGE_FILE

    dataset, tokenizer, _ = load_data_dir(data_dir)
    saving = {"max_steps": 4, "save_strategy": "steps", "save_steps": 2}
    torch.manual_seed(0)
    whole = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    make_averaging_trainer(whole, tokenizer, dataset, tmp_path / "whole", **saving).train()
    assert (tmp_path / "whole" / "checkpoint-2" / WEIGHT_AVERAGE_FILE).is_file()

    torch.manual_seed(0)
    resumed = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    trainer = make_averaging_trainer(resumed, tokenizer, dataset, tmp_path / "whole", **saving)
    trainer.train(resume_from_checkpoint=str(tmp_path / "whole" / "checkpoint-2"))
    for name, value in trainable(whole).items():
        torch.testing.assert_close(trainable(resumed)[name], value, rtol=1e-5, atol=1e-6)

    (tmp_path / "whole" / "checkpoint-2" / WEIGHT_AVERAGE_FILE).unlink()
    torch.manual_seed(0)
    again = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    with pytest.raises(ValueError, match=f"checkpoint-2 holds no {WEIGHT_AVERAGE_FILE}"):
        make_averaging_trainer(again, tokenizer, dataset, tmp_path / "whole", **saving).train(
            resume_from_checkpoint=str(tmp_path / "whole" / "checkpoint-2")
        )

    torch.manual_seed(0)
    best = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    trainer = make_averaging_trainer(best, tokenizer, dataset, tmp_path / "best", max_steps=4, save_strategy="steps",
                                     save_steps=2, eval_strategy="steps", eval_steps=2, load_best_model_at_end=True,
                                     metric_for_best_model="eval_loss")
    trainer.train()
    kept = load_file(str(Path(trainer.state.best_model_checkpoint) / WEIGHT_AVERAGE_FILE))
    for name, value in trainable(best).items():
        torch.testing.assert_close(value, kept[name])


def test_trainer_weight_average_is_refused_with_sharded_weights(data_dir, tmp_path, monkeypatch):
    """DeepSpeed and FSDP shard the weights across processes: a whole-weight average is refused when the trainer is
    built, naming both and the way out."""
    from transformers import Trainer

    dataset, tokenizer, _ = load_data_dir(data_dir)
    model = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    original = Trainer.__init__

    def sharded(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.is_fsdp_enabled = True

    monkeypatch.setattr(Trainer, "__init__", sharded)
    with pytest.raises(ValueError, match="DeepSpeed and FSDP shard across processes: train without it, or with DDP"):
        make_averaging_trainer(model, tokenizer, dataset, tmp_path, max_steps=1)
    make_trainer(model, tokenizer, dataset, tmp_path / "plain")  # without the average nothing is refused


def test_trainer_reads_batches_as_arrow_tables_and_collates_them_as_rows(data_dir, tmp_path):
    """With A2GenDataCollator the Trainer's loaders read Arrow tables (ArrowBatches), the same batches as the rows
    in the same order; another collate function still gets the rows."""
    from a2gen_hf.data.collator import ArrowBatches
    from a2gen_hf.tokenization_a2gen import raw_id_keys

    dataset, tokenizer, _ = load_data_dir(data_dir)
    model = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    trainer = make_trainer(model, tokenizer, dataset, tmp_path)
    loader = trainer.get_eval_dataloader()
    assert isinstance(loader.dataset, ArrowBatches)
    collator = trainer.data_collator
    validation = dataset["validation"]
    for index, batch in enumerate(loader):
        rows = [validation[i] for i in range(64 * index, min(64 * (index + 1), len(validation)))]
        expected = collator(rows)
        assert set(batch) == {*expected, "user_keys"}  # evaluation batches carry the raw users' keys as well
        assert all(torch.equal(batch[name].cpu(), expected[name]) for name in expected)
        assert batch["user_keys"].tolist() == raw_id_keys(row["user"] for row in rows).tolist()
        if index == 2:
            break
    assert isinstance(trainer.get_train_dataloader().dataset, ArrowBatches)
    assert "user_keys" not in next(iter(trainer.get_train_dataloader()))  # training batches: model inputs only
    assert trainer.data_collator is collator and not collator.user_keys  # the switch is the evaluation loader's
    groups = trainer.predict(validation).predictions[3]  # what compute_metrics groups GAUC / NDCG by: the raw users
    assert groups.tolist() == raw_id_keys(validation["user"]).tolist()
    trainer.data_collator = lambda rows: collator(list(rows))
    assert not isinstance(trainer.get_eval_dataloader().dataset, ArrowBatches)


def test_plain_training_arguments_work_with_a2gen_trainer_and_the_plain_trainer_says_what_to_set(data_dir, tmp_path):
    """TrainingArguments' default remove_unused_columns=True dropped the raw columns the collator reads (user_id,
    action_seconds, ...), so A2GenTrainer failed with a KeyError; it now keeps them for A2GenDataCollator. The plain
    Trainer still drops them, and the collator's error says what to set."""
    from transformers import Trainer, TrainingArguments

    dataset, tokenizer, _ = load_data_dir(data_dir)
    model = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    args = TrainingArguments(str(tmp_path / "a"), max_steps=2, per_device_train_batch_size=32, **QUIET)
    assert args.remove_unused_columns
    trainer = A2GenTrainer(model=model, args=args, train_dataset=dataset["train"], data_collator=collator)
    assert trainer.train().global_step == 2
    # Streaming data too (before: the Trainer's column-removing wrapper of the collator raised the KeyError).
    streamed = A2GenTrainer(model=model, args=args, train_dataset=dataset["train"].to_iterable_dataset(num_shards=2),
                            eval_dataset=dataset["validation"].to_iterable_dataset(), data_collator=collator)  # fmt: skip
    assert streamed.train().global_step == 2 and math.isfinite(streamed.evaluate()["eval_loss"])
    plain = Trainer(model=model, args=TrainingArguments(str(tmp_path / "b"), max_steps=1, **QUIET),
                    train_dataset=dataset["train"], data_collator=collator)  # fmt: skip
    with pytest.raises(KeyError, match=r"has no column\(s\) .*remove_unused_columns=False: use A2GenTrainer"):
        plain.train()


def without_label_time_mask(collator):
    """A hand-built collate function as docs/training.md's plain Trainer invites: labels and label_times only."""
    return lambda rows: {key: value for key, value in collator(list(rows)).items() if key != "label_time_mask"}


def test_an_evaluation_batch_without_label_time_mask_is_refused_in_every_evaluation_path(data_dir, tmp_path):
    """The Trainer computes the loss only when every one of label_names is in the batch: without label_time_mask
    A2GenTrainer's loss-only evaluation reported no eval_loss, silently (only its metrics path refused it)."""
    dataset, tokenizer, _ = load_data_dir(data_dir)
    model = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    split = dataset["validation"].select(range(16))
    collate = without_label_time_mask(A2GenDataCollator.from_config(model.config, tokenizer))
    refusal = r"The evaluation batch has no \['label_time_mask'\] .*eval_loss.*A2GenDataCollator"
    for loss_only, metrics in ((True, None), (False, None), (False, a2gen_compute_metrics(model.config))):
        args = a2gen_training_arguments(str(tmp_path), per_device_eval_batch_size=8, prediction_loss_only=loss_only,
                                        **QUIET)  # fmt: skip
        trainer = A2GenTrainer(model=model, args=args, eval_dataset=split, data_collator=collate,
                               compute_metrics=metrics)  # fmt: skip
        with pytest.raises(ValueError, match=refusal):
            trainer.evaluate()
        with pytest.raises(ValueError, match=refusal):
            trainer.predict(split)
    # With the mask (A2GenDataCollator) the loss-only evaluation reports eval_loss.
    trainer.data_collator = A2GenDataCollator.from_config(model.config, tokenizer)
    trainer.args.prediction_loss_only = True
    assert math.isfinite(trainer.evaluate()["eval_loss"])


def test_the_plain_trainer_needs_every_label_column_or_label_names_without_the_mask(data_dir, tmp_path):
    """What docs/training.md says of the plain Trainer: it takes every forward argument named *label* as a label and
    computes eval_loss only when all of them are in the batch; label_names=["labels", "label_times"] evaluates
    batches without label_time_mask."""
    from transformers import Trainer, TrainingArguments

    dataset, tokenizer, _ = load_data_dir(data_dir)
    model = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    split = dataset["validation"].select(range(16))
    collate = without_label_time_mask(A2GenDataCollator.from_config(model.config, tokenizer))
    plain = {"remove_unused_columns": False, "per_device_eval_batch_size": 8, **QUIET}
    silent = Trainer(model=model, args=TrainingArguments(str(tmp_path / "a"), **plain), data_collator=collate)
    assert silent.label_names == LABEL_NAMES and "eval_loss" not in silent.evaluate(split)  # upstream behaviour
    told = Trainer(model=model, args=TrainingArguments(str(tmp_path / "b"), label_names=["labels", "label_times"],
                                                       **plain), data_collator=collate)  # fmt: skip
    assert math.isfinite(told.evaluate(split)["eval_loss"])


def test_an_evaluation_groups_every_example_by_one_rule(data_dir, tmp_path):
    """GAUC / NDCG@K groups: A2GenTrainer took the raw users (user_keys) for batches whose rows all had a user and
    the hashed user_ids for the others, silently, so a user whose rows spanned two such batches made two groups. Now
    a split whose user column misses some users is refused naming the example (at construction, evaluate and
    predict, streamed splits by the collator), a user split across two batches stays one group, and a batch that
    would group by the other column is refused."""
    from a2gen_hf.tokenization_a2gen import raw_id_keys

    dataset, tokenizer, _ = load_data_dir(data_dir)
    model = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    split = dataset["validation"].select(range(8))
    users = ["u0", "u1", "u2", "uA", "uA", "u5", "u6", "u7"]  # uA: the last row of batch 0, the first of batch 1
    split = split.remove_columns("user").add_column("user", users)
    trainer = make_trainer(model, tokenizer, {"train": dataset["train"], "validation": split}, tmp_path,
                           per_device_eval_batch_size=4)  # fmt: skip
    groups = trainer.predict(split).predictions[3]
    assert groups.tolist() == raw_id_keys(users).tolist() and groups[3] == groups[4]  # one group for uA
    assert "eval_gauc_like" in trainer.evaluate()

    partial = split.remove_columns("user").add_column("user", [*users[:5], None, *users[6:]])
    refusal = r"example 5 has no raw 'user' id \(None\).*remove_columns\('user'\)"
    with pytest.raises(ValueError, match="the eval dataset: " + refusal):
        make_trainer(model, tokenizer, {"train": dataset["train"], "validation": partial}, tmp_path)
    with pytest.raises(ValueError, match="the eval dataset: " + refusal):
        trainer.evaluate(partial)
    with pytest.raises(ValueError, match="the test dataset: " + refusal):
        trainer.predict(partial)
    with pytest.raises(ValueError, match=r"in this batch: example 1 has no raw 'user' id"):  # row 5: batch 1, row 1
        trainer.evaluate(partial.to_iterable_dataset())
    # Without a user column the whole split groups by the hashed user_ids.
    hashed = trainer.predict(split.remove_columns("user")).predictions[3]
    assert hashed.tolist() == split["user_id"]

    # A collate function whose batches switch columns mid-evaluation is refused, not grouped two ways.
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    collator.user_keys = True
    seen = []

    def first_batch_keyed(rows):
        seen.append(1)
        batch = collator(list(rows))
        return batch if len(seen) == 1 else {key: value for key, value in batch.items() if key != "user_keys"}

    trainer.data_collator = first_batch_keyed
    with pytest.raises(ValueError, match=r"would group its examples by 'user_ids', but the evaluation's first batch "
                                         r"grouped them by 'user_keys'"):  # fmt: skip
        trainer.evaluate(split)


# Names in the Trainer's evaluation output that are no metric of a2gen_compute_metrics.
TRAINER_BOOKKEEPING = ("eval_loss", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second",
                       "eval_model_preparation_time", "epoch")  # fmt: skip


def test_best_checkpoint_selection_follows_the_direction_of_the_packages_metrics(data_dir, tmp_path):
    """transformers takes greater_is_better=True for every metric name not ending in "loss": with
    metric_for_best_model="mean_mae" load_best_model_at_end kept the checkpoint with the highest MAE (the worst) and
    EarlyStoppingCallback stopped while the MAE improved. a2gen_training_arguments now defaults greater_is_better to
    False for the lower-is-better metrics, A2GenTrainer refuses the wrong direction and calibration_* (best at 1),
    and the one list of directions covers what a2gen_compute_metrics emits."""
    import re

    from transformers import TrainingArguments

    from a2gen_hf.training.trainer import (
        HIGHER_IS_BETTER_METRICS,
        LOWER_IS_BETTER_METRICS,
        UNORDERED_METRICS,
        metric_direction,
    )

    dataset, tokenizer, _ = load_data_dir(data_dir)
    torch.manual_seed(0)
    model = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    actions = list(model.config.action_names)
    # Every metric a2gen_compute_metrics emits has a direction: lower exactly for the errors (MAE, log loss, ECE).
    emitted = [key for key in make_trainer(model, tokenizer, dataset, tmp_path / "names").evaluate()
               if key not in TRAINER_BOOKKEEPING]  # fmt: skip
    directions = {key: metric_direction(key, actions) for key in emitted}
    assert None not in directions.values(), [key for key, value in directions.items() if value is None]
    lower = {key for key, value in directions.items() if value == "lower"}
    assert lower == {key for key in emitted if re.search(r"(^|_)(mae|logloss|ece)(_|$)", key)}
    assert {key for key, value in directions.items() if value == "unordered"} == {
        key for key in emitted if key.startswith("eval_calibration_")
    }
    every = [*LOWER_IS_BETTER_METRICS, *HIGHER_IS_BETTER_METRICS, *UNORDERED_METRICS]
    assert len(every) == len(set(every))  # each name in one list only

    # a2gen_training_arguments: lower-is-better names default to greater_is_better=False; a given value stands.
    for metric, expected in (("mean_mae", False), ("eval_mae_leave", False), ("logloss_like", False),
                             ("eval_ece_like", False), ("mean_auc", True), ("eval_loss", False)):  # fmt: skip
        assert a2gen_training_arguments(str(tmp_path), metric_for_best_model=metric).greater_is_better is expected
    given = a2gen_training_arguments(str(tmp_path), metric_for_best_model="mean_mae", greater_is_better=True)
    assert given.greater_is_better is True
    with pytest.raises(ValueError, match=r"metric_for_best_model='calibration_like' is the ratio .* best at 1"):
        a2gen_training_arguments(str(tmp_path), metric_for_best_model="calibration_like")

    # A2GenTrainer refuses a direction that would keep the worst checkpoint (also from plain TrainingArguments,
    # where transformers filled in True), and accepts the right one.
    def trainer(args):
        return A2GenTrainer(model=model, args=args, train_dataset=dataset["train"], eval_dataset=dataset["validation"],
                            data_collator=A2GenDataCollator.from_config(model.config, tokenizer))  # fmt: skip

    with pytest.raises(ValueError, match=r"metric_for_best_model='mean_mae' is lower-is-better, but "
                                         r"greater_is_better=True: load_best_model_at_end would keep the checkpoint with the higher value \(the worst\).* "
                                         r"Pass greater_is_better=False"):  # fmt: skip
        trainer(given)
    plain = {"remove_unused_columns": False, **QUIET}
    with pytest.raises(ValueError, match=r"'eval_mae_like' is lower-is-better, but greater_is_better=True"):
        trainer(TrainingArguments(str(tmp_path), metric_for_best_model="eval_mae_like", **plain))
    with pytest.raises(ValueError, match=r"'mean_auc' is higher-is-better, but greater_is_better=False"):
        trainer(TrainingArguments(str(tmp_path), metric_for_best_model="mean_auc", greater_is_better=False, **plain))
    with pytest.raises(ValueError, match=r"'eval_calibration_like' is the ratio"):
        trainer(TrainingArguments(str(tmp_path), metric_for_best_model="eval_calibration_like", **plain))
    trainer(TrainingArguments(str(tmp_path), metric_for_best_model="mae_like", greater_is_better=False, **plain))
    trainer(TrainingArguments(str(tmp_path), metric_for_best_model="mean_auc", **plain))
    trainer(TrainingArguments(str(tmp_path), metric_for_best_model="mean_logloss", **plain))  # ends in "loss": False

    # The run keeps the checkpoint with the lowest MAE (before: the highest).
    run = make_trainer(model, tokenizer, dataset, tmp_path / "best", max_steps=4, learning_rate=5e-2,
                       eval_strategy="steps", eval_steps=1, save_strategy="steps", save_steps=1,
                       load_best_model_at_end=True, metric_for_best_model="mean_mae")  # fmt: skip
    run.train()
    maes = {entry["step"]: entry["eval_mean_mae"] for entry in run.state.log_history if "eval_mean_mae" in entry}
    assert len(maes) == 4 and min(maes.values()) < max(maes.values())
    assert run.state.best_metric == min(maes.values())
    assert run.state.best_global_step == min(maes, key=maes.get)


def test_mixed_precision_training_leaves_the_models_forward_as_it_was(data_dir, tmp_path, fresh_accelerate_state):
    """Under bf16 Accelerate's prepare replaces model.forward with an autocast + float32-outputs wrapper and never
    takes it off: after A2GenTrainer(bf16=True).train() (or the Accelerate loop's train()) the user's model kept
    running in bf16, with other losses and predictions than the same weights loaded afresh. Now the model is left
    as it was, and the Trainer's own later forwards (evaluate, predict, another train) still run in bf16."""
    from conftest import reset_accelerate_state

    from a2gen_hf.training.loop import train
    from a2gen_hf.training.settings import TrainingSettings

    reset_accelerate_state()  # a state of another precision from an earlier test would be refused
    dataset, tokenizer, _ = load_data_dir(data_dir)
    validation = dataset["validation"].select(range(24))

    def fresh_copy(model):
        copy = type(model)(model.config)
        copy.load_state_dict(model.state_dict())
        return copy.eval()

    def is_plain(model):
        return "forward" not in model.__dict__ and "_original_forward" not in model.__dict__

    in_autocast = []  # per call of a Linear of the model: whether CPU autocast was on

    def record(*_):
        in_autocast.append(torch.is_autocast_enabled("cpu"))

    # MMoE's predict_actions goes through its forward (its layers run as F.linear: no hooks, so only A2Gen's calls
    # are recorded)
    for name in ("a2gen-iag", "mmoe"):
        torch.manual_seed(0)
        model = create_model(name, tokenizer, dataset, **TINY)
        collator = A2GenDataCollator.from_config(model.config, tokenizer)
        batch = collator([validation[index] for index in range(8)])
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.register_forward_hook(record)
        trainer = make_trainer(model, tokenizer, {"train": dataset["train"], "validation": validation},
                               tmp_path / name, max_steps=2, bf16=True)  # fmt: skip
        trainer.train()
        assert is_plain(model), name
        model.eval()
        in_autocast.clear()
        with torch.no_grad():
            outputs = model(**batch)
            prediction = model.predict_actions(**{k: v for k, v in batch.items() if not k.startswith("label")})
            copy = fresh_copy(model)
            assert torch.equal(outputs.loss, copy(**batch).loss), name
            expected = copy.predict_actions(**{k: v for k, v in batch.items() if not k.startswith("label")})
            assert torch.equal(prediction.action_probabilities, expected.action_probabilities), name
        recorded = name.startswith("a2gen")
        assert not recorded or (in_autocast and not any(in_autocast))
        # The Trainer's loss forwards after training still run in bf16 (as before), and leave the model as it was.
        for call in (trainer.evaluate, functools.partial(trainer.predict, validation)):
            in_autocast.clear()
            call()
            assert any(in_autocast) or not recorded
            assert is_plain(model), name
        in_autocast.clear()
        trainer.train()  # a second run on the prepared model: bf16 again
        assert (any(in_autocast) or not recorded) and is_plain(model), name

    # The Accelerate loop's Python API returns a plain float32 model.
    reset_accelerate_state()
    torch.manual_seed(0)
    model = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    settings = TrainingSettings(output_dir=str(tmp_path / "loop"), max_steps=2, batch_size=32, mixed_precision="bf16",
                                show_progress=False)  # fmt: skip
    trained = train(model, dataset["train"], collator, settings).model
    assert is_plain(trained) and not getattr(trained, "_is_accelerate_prepared", False)
    trained.eval()
    batch = collator([validation[index] for index in range(8)])
    with torch.no_grad():
        outputs = trained(**batch)
        assert outputs.logits.dtype == torch.float32
        assert torch.equal(outputs.loss, fresh_copy(trained)(**batch).loss)
    # (review) a run that fails leaves the caller's model plain too, not only one that finishes
    reset_accelerate_state()
    from a2gen_hf.training import loop

    def fail(run):
        raise RuntimeError("stopped")

    failed = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    settings = TrainingSettings(output_dir=str(tmp_path / "failed"), max_steps=2, batch_size=32, mixed_precision="bf16",
                                show_progress=False)  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loop._TrainingRun, "train_epochs", fail)
        with pytest.raises(RuntimeError, match="stopped"):
            train(failed, dataset["train"], collator, settings)
    assert is_plain(failed) and not getattr(failed, "_is_accelerate_prepared", False)


def test_the_plain_trainers_predictions_start_with_the_logits(data_dir, tmp_path):
    """transformers.Trainer gathers every forward output but the loss and config.keys_to_ignore_at_inference: before,
    predictions[0..4] were A2Gen's scalar sub-losses (one number per batch) and the logits came sixth, and with
    output_hidden_states / output_attentions predict() crashed concatenating batches whose histories are padded to
    other widths. A2GenTrainer's own predictions (predict_actions) are unchanged."""
    from transformers import Trainer

    dataset, tokenizer, _ = load_data_dir(data_dir)
    split = dataset["test"].select(range(20))
    for name, flags in (("a2gen-iag", {"output_hidden_states": True, "output_attentions": True}), ("a2gen-eag", {}),
                        ("mmoe", {}), ("ple", {})):  # fmt: skip
        torch.manual_seed(0)
        model = create_model(name, tokenizer, dataset, **TINY)
        for key, value in flags.items():
            setattr(model.config, key, value)
        collator = A2GenDataCollator.from_config(model.config, tokenizer)
        args = a2gen_training_arguments(str(tmp_path / name), per_device_eval_batch_size=8, **QUIET)
        predictions = Trainer(model=model, args=args, data_collator=collator).predict(split).predictions
        logits = predictions[0]
        vocab = model.config.vocab_size
        assert logits.shape[0] == 20 and logits.shape[-1] == vocab, (name, [p.shape for p in predictions])
        assert logits.ndim == (3 if name.startswith("a2gen") else 2), name
        model.eval()
        with torch.no_grad():
            first = model(**collator([split[index] for index in range(8)])).logits
        torch.testing.assert_close(torch.from_numpy(logits[:8, : first.shape[1]]), first), name
        assert all(part.shape[0] == 20 for part in predictions), name  # no per-batch scalars
        assert "keys_to_ignore_at_inference" not in model.config.to_dict()  # a class attribute, not saved
    ours = A2GenTrainer(model=model, args=args, data_collator=collator).predict(split).predictions
    assert [part.shape for part in ours] == [(20, vocab), (20, vocab), (20,), (20,)]


def test_predicting_examples_without_outcomes_points_to_the_inference_paths(data_dir, tmp_path):
    """Trainer.predict / evaluate score examples against their outcomes; a split without them was refused by the
    collator at the first batch (a KeyError naming remove_unused_columns, or "empty target sequence"). Now A2GenTrainer
    refuses it before any batch, and its refusal of a batch without labels too, pointing to predict_actions, the
    action-generation pipeline and A2GenRanker."""
    dataset, tokenizer, _ = load_data_dir(data_dir)
    model = create_model("a2gen-iag", tokenizer, dataset, **TINY)
    trainer = make_trainer(model, tokenizer, dataset, tmp_path, per_device_eval_batch_size=8)
    split = dataset["test"].select(range(12))
    pointer = r"model\.predict_actions\(.*the 'action-generation' pipeline.*A2GenRanker"
    without = split.remove_columns(["action_ids", "action_seconds"])
    with pytest.raises(ValueError, match=r"the test dataset has no column\(s\) \['action_ids', 'action_seconds'\]: "
                                         r"evaluate\(\) and predict\(\) score examples against their outcomes.*" + pointer):
        trainer.predict(without)
    with pytest.raises(ValueError, match=r"the eval dataset has no column\(s\).*" + pointer):
        trainer.evaluate(without)
    unobserved = split.map(lambda row: {"action_ids": [], "action_seconds": []}, keep_in_memory=True)
    with pytest.raises(ValueError, match=r"the test dataset has no outcome in any example .*" + pointer):
        trainer.predict(unobserved)
    assert trainer.predict(split).predictions[0].shape[0] == 12  # labelled examples: as before
    collate = without_label_time_mask(A2GenDataCollator.from_config(model.config, tokenizer))
    trainer.data_collator = collate
    with pytest.raises(ValueError, match=r"The evaluation batch has no \['label_time_mask'\].*" + pointer):
        trainer.predict(split)


def test_a_metric_name_that_reads_both_ways_is_refused_unless_the_direction_is_given(tmp_path):
    """(review) Without the eval datasets' names, "eval_auc_holdout_mae_like" (eval dataset "auc_holdout", metric
    mae_like) was read from the left as an AUC: greater_is_better stayed True and a plain Trainer kept the checkpoint
    with the worst MAE. Such a name is now refused, naming both readings, unless greater_is_better is given."""
    from a2gen_hf.training.trainer import metric_direction

    with pytest.raises(ValueError, match=r"reads two ways: from 'auc_holdout_mae_like' as auc \(higher is better\); "
                                         r"from 'mae_like' as mae \(lower is better\).*Pass greater_is_better"):
        a2gen_training_arguments(str(tmp_path), metric_for_best_model="eval_auc_holdout_mae_like")
    given = a2gen_training_arguments(str(tmp_path), metric_for_best_model="eval_auc_holdout_mae_like",
                                     greater_is_better=False)  # fmt: skip
    assert given.greater_is_better is False
    # the model's actions settle it (A2GenTrainer's reading), and names of one direction stay as they were
    assert metric_direction("auc_holdout_mae_like", ["like"]) == "lower"
    assert metric_direction("eval_holdout_mae_seconds_like") == "lower"
    assert metric_direction("eval_mean_auc") == "higher"
    with pytest.raises(ValueError, match="is the ratio"):  # calibration is refused with a given direction too
        a2gen_training_arguments(str(tmp_path), metric_for_best_model="calibration_like", greater_is_better=True)
    # (review) an eval dataset named like calibration: the given direction stands (before: refused as calibration)
    given = a2gen_training_arguments(str(tmp_path), metric_for_best_model="eval_calibration_set_mae_like",
                                     greater_is_better=False)  # fmt: skip
    assert given.greater_is_better is False
    with pytest.raises(ValueError, match=r"as calibration \(best at 1\); from 'mae_like' as mae \(lower is better\)"):
        a2gen_training_arguments(str(tmp_path), metric_for_best_model="eval_calibration_set_mae_like")
