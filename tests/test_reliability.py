"""Reliability (docs/reliability.md): damaged checkpoints, hostile inputs at inference, NaN losses, no unsafe
deserialisation, no token in any output, determinism.

Determinism of the simulator is covered by
``tests/test_simulator.py::test_same_seed_gives_identical_rows_and_another_seed_different_ones``.
"""

import ast
import hashlib
import json
import pickle
import re
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from conftest import TINY_SIZES, build_tiny_model, reset_accelerate_state
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import AutoModel, BertConfig
from transformers import pipeline as transformers_pipeline

from a2gen_hf import (
    A2GenActionTokenizer,
    A2GenForActionGeneration,
    A2GenModel,
    AutoModelForActionGeneration,
    MMoEConfig,
    TimelineError,
)
from a2gen_hf.checkpoints import CheckpointError, load_checkpoint
from a2gen_hf.cli import main as cli_main
from a2gen_hf.data import A2GenDataCollator
from a2gen_hf.hub import build_model_card, push_checkpoint
from a2gen_hf.modeling_baselines import MMoEForActionPrediction
from a2gen_hf.serving import A2GenRanker
from a2gen_hf.training.loop import TrainingSettings, latest_checkpoint, train

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "a2gen_hf"
GENERATORS = ["iag", "eag"]
TINY = TINY_SIZES


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def tiny_model(generator: str = "iag", seed: int = 0, **overrides) -> A2GenForActionGeneration:
    return build_tiny_model(generator, seed, **{"num_user_side_lists": 0, **overrides})


def tokenizer_for(model) -> A2GenActionTokenizer:
    return A2GenActionTokenizer.from_config(model.config)


def rows(count: int, seed: int = 0, history: int = 3, seconds_scale: float = 30.0) -> list[dict]:
    """Examples in the on-disk schema (docs/design.md) for the TINY config's buckets."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(count):
        events = rng.integers(1, 4, history)
        timeline = sorted(rng.exponential(seconds_scale, 3).tolist())
        examples.append(
            {
                "user_id": int(rng.integers(1, 50)),
                "item_id": int(rng.integers(1, 200)),
                "item_side_ids": rng.integers(1, 30, 2).tolist(),
                "history_item_ids": rng.integers(1, 200, history).tolist(),
                "history_item_side_ids": rng.integers(1, 30, (history, 2)).tolist(),
                "history_action_ids": [[1, *rng.integers(2, 6, n - 1).tolist()] for n in events],
                "history_action_seconds": [
                    [0.0, *np.sort(rng.exponential(seconds_scale, n - 1)).tolist()] for n in events
                ],
                "action_ids": [1, int(rng.integers(2, 6)), 6],
                "action_seconds": [0.0, timeline[0], timeline[1]],
            }
        )
    return examples


def collate(model, examples, tokenizer=None):
    return A2GenDataCollator.from_config(model.config, tokenizer or tokenizer_for(model))(examples)


def history_only(batch: dict) -> dict:
    return {name: value for name, value in batch.items() if not name.startswith("label")}


# ---------------------------------------------------------------------------------------------------------------
# 2. Corrupted or mismatched checkpoints


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory):
    """A tiny A2Gen model and its tokenizer, saved as save_pretrained writes them."""
    folder = tmp_path_factory.mktemp("checkpoint") / "a2gen"
    model = tiny_model()
    model.save_pretrained(folder)
    tokenizer_for(model).save_pretrained(folder)
    return folder, model


@pytest.fixture
def checkpoint(saved_checkpoint, tmp_path):
    """A fresh copy of the saved checkpoint, free to damage."""
    copy = tmp_path / "copy"
    shutil.copytree(saved_checkpoint[0], copy)
    return copy


def test_load_checkpoint_returns_the_saved_model_and_tokenizer(saved_checkpoint):
    folder, original = saved_checkpoint
    model, tokenizer = load_checkpoint(folder)
    assert type(model) is A2GenForActionGeneration and not model.training
    saved = original.state_dict()
    assert all(torch.equal(value, saved[name]) for name, value in model.state_dict().items())
    assert tokenizer.get_vocab() == tokenizer_for(original).get_vocab()
    assert sorted(path.name for path in folder.glob("*.safetensors")) == ["model.safetensors"]
    assert not list(folder.glob("*.bin")), "save_pretrained must write safetensors only"


def test_tokenizer_in_a_subfolder_and_sharded_weights_load(tmp_path):
    model = tiny_model("eag")
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    tokenizer_for(model).save_pretrained(tmp_path / "tokenizer")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    loaded, _ = load_checkpoint(tmp_path)
    assert torch.equal(loaded.generator.heads.action.weight, model.generator.heads.action.weight)
    shard = sorted(tmp_path.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=rf"lists shard\(s\) \['{shard.name}'\] that are not in"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("first_sharded", [False, True])
def test_a_save_over_the_other_kind_of_save_leaves_one_set_of_weights(tmp_path, first_sharded):
    """A sharded save into a folder holding model.safetensors (or the other way round): before, both sets stayed and
    from_pretrained read the single file, the older weights, without a word."""
    older, newer = tiny_model("iag", seed=0), tiny_model("iag", seed=1)
    older.save_pretrained(tmp_path, **({"max_shard_size": "20KB"} if first_sharded else {}))
    newer.save_pretrained(tmp_path, **({} if first_sharded else {"max_shard_size": "20KB"}))
    names = {path.name for path in tmp_path.glob("model*")}
    assert ("model.safetensors" in names) == first_sharded and ("model.safetensors.index.json" in names) != first_sharded
    loaded = A2GenForActionGeneration.from_pretrained(tmp_path)
    assert all(torch.equal(value, newer.state_dict()[name]) for name, value in loaded.state_dict().items())


def test_a_folder_holding_two_sets_of_weights_is_refused(tmp_path):
    tiny_model("iag").save_pretrained(tmp_path, max_shard_size="20KB")
    save_file(tiny_model("iag", seed=1).state_dict(), tmp_path / "model.safetensors")  # another tool's save
    with pytest.raises(CheckpointError, match="holds two sets of weights, model.safetensors and model.safetensors"):
        A2GenForActionGeneration.from_pretrained(tmp_path)


def test_from_pretrained_of_a_state_dict_in_memory(tmp_path):
    """transformers' from_pretrained(None, config=, state_dict=): before, "None" was looked up as a Hub repo."""
    model = tiny_model("eag")
    loaded = A2GenForActionGeneration.from_pretrained(None, config=model.config, state_dict=model.state_dict())
    assert all(torch.equal(value, model.state_dict()[name]) for name, value in loaded.state_dict().items())
    partial = {name: value for name, value in model.state_dict().items() if "heads" not in name}
    with pytest.raises(CheckpointError, match=r"state_dict given does not fit [^\n]*\n  - missing tensors"):
        A2GenForActionGeneration.from_pretrained(None, config=model.config, state_dict=partial)
    with pytest.raises(CheckpointError, match=r"needs both config= .* and state_dict="):
        A2GenForActionGeneration.from_pretrained(None, config=model.config)


def test_a_baseline_checkpoint_loads_as_its_class(tmp_path):
    config = MMoEConfig(**{**TINY, "hidden_size": 8})
    model = MMoEForActionPrediction(config)
    model.save_pretrained(tmp_path)
    A2GenActionTokenizer.from_config(config).save_pretrained(tmp_path)
    assert type(load_checkpoint(tmp_path)[0]) is MMoEForActionPrediction


def test_weights_that_do_not_fit_name_the_keywords_that_changed_the_shapes(saved_checkpoint):
    """from_pretrained(folder, hidden_size=...) builds a model the saved weights do not fit: the error says the
    keyword changed the shapes (before: that the checkpoint was saved from another model or damaged); a keyword
    equal to the saved value is no cause."""
    folder, model = saved_checkpoint
    wider = model.config.hidden_size * 2
    with pytest.raises(CheckpointError, match=rf"keyword argument\(s\) hidden_size={wider} given to from_pretrained "
                                              "changed the model's shapes") as raised:
        A2GenForActionGeneration.from_pretrained(folder, hidden_size=wider)
    assert "damaged" not in str(raised.value)
    same = A2GenForActionGeneration.from_pretrained(folder, hidden_size=model.config.hidden_size)
    assert same.config.hidden_size == model.config.hidden_size


@pytest.mark.parametrize("kept_bytes", [0, 5, 100, "half", "all but one"])
def test_truncated_weights_name_the_file(checkpoint, kept_bytes):
    weights = checkpoint / "model.safetensors"
    data = weights.read_bytes()
    keep = {"half": len(data) // 2, "all but one": len(data) - 1}.get(kept_bytes, kept_bytes)
    weights.write_bytes(data[:keep])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as raised:
        load_checkpoint(checkpoint)
    assert str(weights) in str(raised.value)


def test_from_pretrained_names_a_truncated_file_too(checkpoint):
    """transformers 5 alone raises safetensors' bare message; A2Gen's from_pretrained names the file: the strict
    loader before loading (CheckpointError), and with strict=False the load itself (OSError)."""
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: cannot be read as safetensors"):
        A2GenForActionGeneration.from_pretrained(checkpoint)
    with pytest.raises(OSError, match=r"model\.safetensors: cannot be read as safetensors") as raised:
        A2GenForActionGeneration.from_pretrained(checkpoint, strict=False)
    assert isinstance(raised.value.__cause__, SafetensorError)


def test_missing_weights_and_missing_config(checkpoint):
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors does not exist\. Save the model"):
        load_checkpoint(checkpoint)
    (checkpoint / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json does not exist"):
        load_checkpoint(checkpoint)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(checkpoint / "nowhere")


def test_from_pretrained_without_config_json_is_refused_not_defaulted(tmp_path):
    """Before: A2GenForActionGeneration.from_pretrained built a default config and loaded the weights into it, silently
    when the shapes agreed (time statistics then wrong), and failed inside transformers on a2gen train's checkpoint-N."""
    model = tiny_model(time_log_mean=3.0, time_log_std=0.5)
    model.save_pretrained(tmp_path / "model")
    (tmp_path / "model" / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"model has no config\.json .*from_pretrained can also be given a config object"):
        A2GenForActionGeneration.from_pretrained(tmp_path / "model")
    loaded = A2GenForActionGeneration.from_pretrained(tmp_path / "model", config=model.config)  # config given: fine
    assert loaded.config.time_log_mean == 3.0
    (tmp_path / "model").rename(tmp_path / "checkpoint-12")
    with pytest.raises(CheckpointError, match=r"checkpoint-N folder of `a2gen train` is kept for --resume"):
        A2GenForActionGeneration.from_pretrained(tmp_path / "checkpoint-12")
    from a2gen_hf.training.data_setup import model_to_train_from

    with pytest.raises(CheckpointError, match=r"checkpoint-12 has no config\.json"):  # --init-from; before: "a None model"
        model_to_train_from(tmp_path / "checkpoint-12", "a2gen-iag", tokenizer_for(model), None)


class _WritesMarker:
    """Unpickling this object creates a file: the proof that a pickle was (or was not) loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_pickled_weights_are_refused_and_never_unpickled(checkpoint, tmp_path):
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_WritesMarker(control)))
    assert control.exists(), "the marker must appear whenever the pickle is loaded"
    marker = tmp_path / "unpickled"
    (checkpoint / "model.safetensors").unlink()
    (checkpoint / "pytorch_model.bin").write_bytes(pickle.dumps(_WritesMarker(marker)))
    with pytest.raises(CheckpointError, match=r"never unpickles"):
        load_checkpoint(checkpoint)
    assert not marker.exists()


def test_config_of_another_model_type(checkpoint):
    bert = BertConfig(hidden_size=16, num_attention_heads=4, num_hidden_layers=1, intermediate_size=8)
    (checkpoint / "config.json").write_text(bert.to_json_string())
    with pytest.raises(CheckpointError, match=r"config\.json: model_type is 'bert', not a model of this package"):
        load_checkpoint(checkpoint)


def test_truncated_config_names_line_and_column(checkpoint):
    config = checkpoint / "config.json"
    config.write_text(config.read_text()[:40])
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON \(line \d+, column \d+"):
        load_checkpoint(checkpoint)


def test_truncated_generation_config_is_refused_not_replaced_by_defaults(checkpoint):
    """From a probe: transformers read a truncated generation_config.json as none saved, and generate() silently ran
    with the defaults (monotonic_times, max_length and do_sample all changed)."""
    assert (checkpoint / "generation_config.json").is_file()
    generation = checkpoint / "generation_config.json"
    generation.write_text(generation.read_text()[:20])
    with pytest.raises(CheckpointError, match=r"generation_config\.json: not valid JSON \(line \d+, column \d+.*generation config"):
        load_checkpoint(checkpoint)
    with pytest.raises(CheckpointError, match=r"generation_config\.json: not valid JSON"):
        A2GenForActionGeneration.from_pretrained(checkpoint)


def test_invalid_config_values_are_named(checkpoint):
    config = checkpoint / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "start_action": "click"}))
    with pytest.raises(CheckpointError, match=r"(?s)config\.json: the config is invalid: .*start_action='click'"):
        load_checkpoint(checkpoint)


def test_missing_and_unexpected_tensors_are_named_not_initialised_at_random(checkpoint):
    weights = checkpoint / "model.safetensors"
    tensors = load_file(weights)
    del tensors["generator.heads.time.bias"]
    tensors["leftover.weight"] = torch.zeros(2)
    save_file(tensors, weights, metadata={"format": "pt"})
    # transformers alone (strict=False) loads this model, with a random time-head bias (it only logs a report).
    A2GenForActionGeneration.from_pretrained(checkpoint, strict=False)
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(checkpoint)
    message = str(raised.value)
    assert str(weights) in message and "config.json" in message
    assert "missing tensors (would be left at random initialisation): generator.heads.time.bias" in message
    assert "tensors the model does not have: leftover.weight" in message


def test_weights_of_another_size_are_named(checkpoint):
    config = checkpoint / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "item_buckets": 300}))
    (checkpoint / "tokenizer_config.json").write_text(
        json.dumps({**json.loads((checkpoint / "tokenizer_config.json").read_text()), "item_buckets": 300})
    )
    with pytest.raises(
        CheckpointError, match=r"a2gen\.features\.item_embeddings\.weight \(file \(200, 8\), model \(300, 8\)\)"
    ):
        load_checkpoint(checkpoint)


def test_tokenizer_that_disagrees_with_the_config(checkpoint):
    A2GenActionTokenizer(
        action_names=["click", "collect", "cart", "buy", "leave"], start_action="click", max_actions=5,
        user_buckets=50, item_buckets=200, side_feature_buckets=30,
    ).save_pretrained(checkpoint)  # fmt: skip
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(checkpoint)
    message = str(raised.value)
    assert f"{checkpoint / 'tokenizer_config.json'} disagrees with {checkpoint / 'config.json'}" in message
    assert "action_names: tokenizer has ['click', 'collect', 'cart', 'buy', 'leave']" in message


def test_tokenizer_of_another_kind_or_none(checkpoint):
    tokenizer_config = checkpoint / "tokenizer_config.json"
    tokenizer_config.write_text(json.dumps({**json.loads(tokenizer_config.read_text()), "tokenizer_class": "Bert"}))
    with pytest.raises(CheckpointError, match=r"tokenizer_class is 'Bert', not 'A2GenActionTokenizer'"):
        load_checkpoint(checkpoint)
    tokenizer_config.unlink()
    with pytest.raises(CheckpointError, match=r"No tokenizer in .*tokenizer/tokenizer_config\.json exists"):
        load_checkpoint(checkpoint)


STRICT_LOADERS = {
    "class": lambda folder: A2GenForActionGeneration.from_pretrained(folder),
    "AutoModelForActionGeneration": lambda folder: AutoModelForActionGeneration.from_pretrained(folder),
    "AutoModel": lambda folder: AutoModel.from_pretrained(folder),
    "load_checkpoint": load_checkpoint,
    "pipeline": lambda folder: transformers_pipeline("action-generation", model=str(folder)),
    "push": lambda folder: push_checkpoint(folder, "someone/a2gen"),
}


def _damage(kind: str, folder: Path) -> str:
    """Damage a checkpoint one way; return the text its error must contain."""
    weights = folder / "model.safetensors"
    if kind == "missing tensor":
        tensors = load_file(weights)
        del tensors["a2gen.features.item_embeddings.weight"]
        save_file(tensors, weights, metadata={"format": "pt"})
        return r"missing tensors \(would be left at random initialisation\): (a2gen\.)?features\.item_embeddings\.weight"
    if kind == "unexpected tensor":
        tensors = {**load_file(weights), "a2gen.leftover": torch.zeros(3)}
        save_file(tensors, weights, metadata={"format": "pt"})
        return "tensors the model does not have"
    if kind == "NaN weight":
        tensors = load_file(weights)
        tensors["a2gen.features.item_embeddings.weight"][3, 1] = float("nan")
        save_file(tensors, weights, metadata={"format": "pt"})
        return r"tensors holding NaN or inf: (a2gen\.)?features\.item_embeddings\.weight"
    if kind == "header dtype":  # F32 relabelled I32: same bytes, read as integers
        data = weights.read_bytes()
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size])
        header["a2gen.features.item_embeddings.weight"]["dtype"] = "I32"
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (size - len(text))
        weights.write_bytes(data[:8] + text + data[8 + size :])
        return r"safetensors dtype is not the model's: a2gen\.features\.item_embeddings\.weight \(file I32, model float32\)"
    if kind == "another model type":
        mmoe = MMoEForActionPrediction(MMoEConfig(**{**TINY, "hidden_size": 8}))
        for path in folder.glob("*.safetensors"):
            path.unlink()
        (folder / "config.json").unlink()
        mmoe.save_pretrained(folder)
        return "model_type is 'a2gen_mmoe'"
    if kind == "shard outside the folder":
        outside = folder.parent / "elsewhere.safetensors"
        weights.rename(outside)
        index = {"metadata": {}, "weight_map": {name: "../elsewhere.safetensors" for name in load_file(outside)}}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
        return "outside its folder"
    if kind == "pickle only":
        weights.unlink()
        (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_WritesMarker(folder.parent / "unpickled")))
        return "never unpickles"
    raise AssertionError(kind)


DAMAGES = ["missing tensor", "unexpected tensor", "NaN weight", "header dtype", "another model type",
           "shard outside the folder", "pickle only"]  # fmt: skip


@pytest.mark.parametrize("loader", sorted(STRICT_LOADERS))
@pytest.mark.parametrize("damage", DAMAGES)
def test_every_loader_is_strict(checkpoint, loader, damage):
    expected = _damage(damage, checkpoint)
    if damage == "another model type":
        if loader == "push":  # push loads MMoE and PLE folders too (checked without reaching the network)
            from a2gen_hf.hub import _load_checkpoint

            assert type(_load_checkpoint(checkpoint)[0]) is MMoEForActionPrediction
            return
        if loader in ("AutoModel", "AutoModelForActionGeneration", "load_checkpoint"):  # they pick the config's class
            loaded = STRICT_LOADERS[loader](checkpoint)
            assert type(loaded[0] if isinstance(loaded, tuple) else loaded) is MMoEForActionPrediction
            return
        expected = {"pipeline": "got MMoEForActionPrediction"}.get(loader, expected)
    with pytest.raises((ValueError, TypeError), match=expected):
        STRICT_LOADERS[loader](checkpoint)
    assert not (checkpoint.parent / "unpickled").exists()


@pytest.mark.parametrize("damage", ["truncated", "pickle only", "no tokenizer", "offline", "NaN weight"])
def test_cli_push_fails_in_one_line_with_status_2(checkpoint, damage, capsys):
    if damage == "truncated":
        weights = checkpoint / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:5000])
    elif damage == "no tokenizer":
        for name in ("tokenizer_config.json", "vocab.json", "special_tokens_map.json"):
            (checkpoint / name).unlink(missing_ok=True)
    elif damage != "offline":
        _damage(damage, checkpoint)
    assert cli_main(["push", str(checkpoint), "someone/a2gen"]) == 2  # HF_HUB_OFFLINE=1 (fixture)
    error = capsys.readouterr().err
    errors = [line for line in error.splitlines() if line.startswith("a2gen push: error: ")]
    assert len(errors) == 1 and "Traceback" not in error
    if damage != "NaN weight":  # the strict loader lists each damaged tensor on a line of its own
        assert error.endswith(errors[0] + "\n")
    expected = {"truncated": "truncated or corrupt", "pickle only": "never unpickles", "no tokenizer": "No tokenizer",
                "offline": "check the network", "NaN weight": "NaN or inf"}[damage]  # fmt: skip
    assert expected in error


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--item-buckets", "1"], "--item-buckets 1 must be >= 2"),
        (["--session-gap-seconds", "nan"], "--session-gap-seconds nan must be a finite number of seconds >= 0, e.g."),
        (["--output", "{log}"], "is the input log"),
        (["--output", "{log}/inside"], "is the input log"),
        (["--output", "{folder}"], "lies inside the output folder"),
    ],
)
def test_cli_prepare_edges_fail_in_one_line_with_status_2(tmp_path, capsys, flags, message):
    log = tmp_path / "log.csv"
    log.write_text("".join(f"{row % 5},{100 + row},5,pv,{1511544070 + 600 * row}\n" for row in range(60)))
    flags = [flag.format(log=log, folder=tmp_path) for flag in flags]
    output = [] if "--output" in flags else ["--output", str(tmp_path / "out")]
    assert cli_main(["prepare", "--preset", "taobao", "--input", str(log), *output, *flags]) == 2
    error = capsys.readouterr().err
    assert error.startswith("a2gen prepare: error: ") and error.count("\n") == 1 and message in error
    assert log.is_file()


def test_strict_loaders_load_a_good_checkpoint_and_the_encoder_of_a_head_checkpoint(saved_checkpoint):
    folder, original = saved_checkpoint
    model = AutoModelForActionGeneration.from_pretrained(folder)
    assert torch.equal(model.generator.heads.action.weight, original.generator.heads.action.weight)
    encoder = AutoModel.from_pretrained(folder)  # the generator's tensors are the expected leftovers
    assert type(encoder) is A2GenModel
    assert torch.equal(encoder.features.item_embeddings.weight, original.a2gen.features.item_embeddings.weight)


# ---------------------------------------------------------------------------------------------------------------
# 3. Inputs at inference


@pytest.mark.parametrize("generator", GENERATORS)
def test_empty_history_gives_finite_predictions_and_sequences(generator):
    model = tiny_model(generator)
    examples = rows(3)
    for row in examples[:2]:
        for column in ("history_item_ids", "history_item_side_ids", "history_action_ids", "history_action_seconds"):
            row[column] = []
    batch = history_only(collate(model, examples))
    assert batch["history_mask"][:2].sum() == 0
    prediction = model.predict_actions(**batch)
    assert torch.isfinite(prediction.action_probabilities).all() and torch.isfinite(prediction.expected_seconds).all()
    sequences = model.generate(**batch)
    assert (sequences[:, 0] == model.config.start_action_id).all()


def test_long_history_keeps_the_most_recent_items():
    model = tiny_model()
    example = rows(1, history=40)[0]
    recent = {
        column: example[column][-model.config.max_history_items :]
        for column in ("history_item_ids", "history_item_side_ids", "history_action_ids", "history_action_seconds")
    }
    long_batch, recent_batch = collate(model, [example]), collate(model, [{**example, **recent}])
    assert long_batch["history_item_ids"][0].tolist() == example["history_item_ids"][-6:]
    assert all(torch.equal(long_batch[name], recent_batch[name]) for name in long_batch)
    assert torch.equal(
        model.predict_actions(**long_batch).action_probabilities,
        model.predict_actions(**recent_batch).action_probabilities,
    )


def test_unseen_ids_hash_into_the_buckets_the_model_has():
    model = tiny_model()
    tokenizer = tokenizer_for(model)
    unseen = ["never-seen-user", "ユーザー", "", "0", "9" * 50]
    users, items = tokenizer.hash_users(unseen), tokenizer.hash_items(unseen)
    assert ((users >= 1) & (users < model.config.user_buckets)).all()
    assert ((items >= 1) & (items < model.config.item_buckets)).all()
    examples = rows(len(unseen))
    for row, user, item in zip(examples, users, items):
        row["user_id"], row["item_id"] = int(user), int(item)
    assert torch.isfinite(model.predict_actions(**collate(model, examples)).action_probabilities).all()


def test_broken_times_raise_clear_errors_from_tokenizer_and_collator():
    model = tiny_model()
    tokenizer = tokenizer_for(model)
    for seconds in (float("nan"), float("inf"), -1.0):
        with pytest.raises(TimelineError, match="times must be finite and >= 0"):
            tokenizer.encode_timeline([("start", 0.0), ("like", seconds)])
    for seconds in (float("inf"), -0.5, -2.0):
        broken = rows(2)
        broken[1]["history_action_seconds"][0][-1] = seconds
        with pytest.raises(ValueError, match=r"example 1 of the batch has history_action_seconds value"):
            collate(model, broken)
        broken = rows(2)
        broken[0]["action_seconds"][1] = seconds
        with pytest.raises(ValueError, match=r"example 0 of the batch has action_seconds value"):
            collate(model, broken)
    unknown = rows(1)
    unknown[0]["action_seconds"][1] = float("nan")  # NaN is an unknown time, not an error
    assert collate(model, unknown)["label_time_mask"][0].tolist() == [1, 0, 1, 0, 0, 0]
    batch = collate(model, rows(2))
    batch["history_action_times"][0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="history_action_times holds NaN or inf"):
        model(**batch)


def test_out_of_bucket_ids_are_named_by_the_collator():
    model = tiny_model()
    broken = rows(3)
    broken[2]["item_id"] = model.config.item_buckets
    with pytest.raises(ValueError, match=r"example 2 of the batch has item_id value 200; ids must lie in \[0, 200\)"):
        collate(model, broken)


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("seconds_scale", [86400.0, 365 * 86400.0, 100 * 365 * 86400.0])
def test_times_of_days_and_years_give_finite_outputs(generator, seconds_scale):
    model = tiny_model(generator)
    examples = rows(4, seconds_scale=seconds_scale)
    tokenizer = tokenizer_for(model)
    for fitted in (False, True):
        if fitted:  # statistics fitted on short times: long ones lie far out on the normalised scale
            tokenizer.fit_time_statistics(np.random.default_rng(0).exponential(20.0, 100))
            # the model reads times on the tokenizer's scale (the collator refuses a tokenizer of another config)
            model.config.time_log_mean, model.config.time_log_std = tokenizer.time_log_mean, tokenizer.time_log_std
        batch = collate(model, examples, tokenizer)
        prediction = model.predict_actions(**batch)
        assert torch.isfinite(model(**batch).loss)
        assert torch.isfinite(prediction.action_probabilities).all() and torch.isfinite(prediction.expected_times).all()
        assert not prediction.expected_seconds.isnan().any()


@pytest.fixture(scope="module")
def ranker_and_user():
    model = tiny_model()
    batch = collate(model, rows(1))
    user = {name: batch[name] for name in ("user_ids", "history_item_ids", "history_action_ids",
                                           "history_action_times", "history_time_mask", "history_mask",
                                           "history_item_side_ids")}  # fmt: skip
    ranker = A2GenRanker(model, chunk_size=25_000)
    return model, ranker, ranker.encode_user(**user), batch


def test_ranking_zero_candidates_gives_empty_scores(ranker_and_user):
    model, ranker, state, _ = ranker_and_user
    scores = ranker.score_candidates(state, torch.zeros(0, dtype=torch.long), torch.zeros(0, 2, dtype=torch.long))
    assert scores.action_probabilities.shape == (0, model.config.vocab_size)
    with pytest.raises(ValueError, match="at least one candidate"):
        ranker.generate(state, torch.zeros(0, dtype=torch.long), torch.zeros(0, 2, dtype=torch.long))


def test_ranking_100000_candidates_in_chunks(ranker_and_user):
    model, ranker, state, batch = ranker_and_user
    generator = torch.Generator().manual_seed(0)
    item_ids = torch.randint(1, model.config.item_buckets, (100_000,), generator=generator)
    side_ids = torch.randint(1, model.config.side_feature_buckets, (100_000, 2), generator=generator)
    scores = ranker.score_candidates(state, item_ids, side_ids)
    probabilities = scores.action_probabilities
    assert probabilities.shape == (100_000, model.config.vocab_size)
    assert torch.isfinite(probabilities).all() and ((probabilities >= 0) & (probabilities <= 1)).all()
    assert torch.isfinite(scores.expected_seconds).all()
    repeated = {name: value.expand(3, *value.shape[1:]) for name, value in history_only(batch).items()}
    reference = model.predict_actions(**{**repeated, "item_ids": item_ids[-3:], "item_side_ids": side_ids[-3:]})
    torch.testing.assert_close(probabilities[-3:], reference.action_probabilities, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"item_ids must lie in \[0, item_buckets=200\)"):
        ranker.score_candidates(state, item_ids[:2] + 1000, side_ids[:2])


def empty_batch(model) -> dict:
    return {name: value[:0] for name, value in history_only(collate(model, rows(2))).items()}


@pytest.mark.parametrize("generator", GENERATORS)
def test_batch_of_zero_gives_empty_predictions_and_sequences(generator):
    model = tiny_model(generator)
    batch = empty_batch(model)
    assert model.predict_actions(**batch).action_probabilities.shape == (0, model.config.vocab_size)
    assert model.generate(**batch).shape[0] == 0
    assert model.generate(**batch, do_sample=True).shape[0] == 0


def test_beam_search_on_a_batch_of_zero():
    model = tiny_model("eag")
    assert model.generate(**empty_batch(model), num_beams=2).shape[0] == 0


def test_model_names_an_out_of_range_id():
    model = tiny_model()
    batch = collate(model, rows(2))
    batch["item_ids"][0] = model.config.item_buckets
    with pytest.raises(ValueError, match="item_ids"):
        model(**batch)


def _bad_inputs(batch: dict, case: str) -> tuple[dict, type, str]:
    """A collator batch damaged one way, the exception it must raise and the text its message must hold."""
    bad = dict(batch)
    if case == "plain list":
        bad["history_item_ids"] = batch["history_item_ids"].tolist()
        return bad, TypeError, r"history_item_ids must be a torch\.Tensor of shape \(B, N\), got list"
    if case == "float ids":
        bad["item_ids"] = batch["item_ids"].float()
        return bad, TypeError, r"item_ids must hold integer ids \(torch\.long\), got dtype torch\.float32"
    if case == "bool ids":
        bad["user_ids"] = batch["user_ids"] > 0
        return bad, TypeError, r"user_ids must hold integer ids \(torch\.long\), got dtype torch\.bool"
    if case == "float64 times":
        bad["history_action_times"] = batch["history_action_times"].double()
        return bad, TypeError, r"history_action_times must be a floating tensor of the model's dtype \(torch\.float32\), got torch\.float64"
    if case == "shapes that disagree":
        bad["history_action_ids"] = batch["history_action_ids"][:, :-1]
        return bad, ValueError, r"history_action_ids has shape .*: its N dimension is \d+, but history_item_ids gives N = \d+"
    if case == "2-d user ids":
        bad["user_ids"] = batch["user_ids"][:, None]
        return bad, ValueError, r"user_ids must have 1 dimension\(s\) \(B\), got shape \(\d+, 1\)"
    if case == "side features of another width":
        bad["item_side_ids"] = batch["item_side_ids"][:, :1]
        return bad, ValueError, r"item_side_ids has 1 in dimension F of \(B, F\) but the config says 2"
    if case == "too long a history":
        long = collate_unbounded(batch)
        return long, ValueError, r"example 0 holds 40 history items, more than the model's max_history_items=6"
    raise AssertionError(case)


def collate_unbounded(batch: dict) -> dict:
    """A batch of one example with 40 history items (the collator would keep 6)."""
    model = tiny_model()
    collator = A2GenDataCollator.from_config(model.config, tokenizer_for(model))
    collator.max_history_items = 1000
    return history_only(collator(rows(1, history=40)))


BAD_INPUTS = ["plain list", "float ids", "bool ids", "float64 times", "shapes that disagree", "2-d user ids",
              "side features of another width", "too long a history"]  # fmt: skip


@pytest.mark.parametrize("entry", ["forward", "predict_actions", "generate", "beam search"])
@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_model_inputs_raise_errors_that_name_the_argument(case, entry):
    model = tiny_model("eag")
    inputs, error, message = _bad_inputs(history_only(collate(model, rows(3))), case)
    call = {"forward": model, "predict_actions": model.predict_actions, "generate": model.generate,
            "beam search": lambda **batch: model.generate(**batch, num_beams=2)}[entry]  # fmt: skip
    if case == "float64 times" and entry != "forward":  # generation converts float inputs to the model's dtype
        reference = history_only(collate(model, rows(3)))
        output, expected = call(**inputs), call(**reference)
        if entry == "predict_actions":
            output, expected = output.action_probabilities, expected.action_probabilities
        assert torch.equal(output, expected)
        return
    with pytest.raises(error, match=message):
        call(**inputs)


def test_bad_labels_raise_errors_that_name_the_argument():
    model = tiny_model()
    batch = collate(model, rows(3))
    with pytest.raises(TypeError, match=r"labels must hold integer ids \(torch\.long\), got dtype torch\.float32"):
        model(**{**batch, "labels": batch["labels"].float()})
    with pytest.raises(ValueError, match=r"label_times has shape .*: its T dimension is \d+, but labels gives T"):
        model(**{**batch, "label_times": batch["label_times"][:, :-1]})


@pytest.mark.parametrize("generator", GENERATORS)
def test_nan_label_time_under_a_zero_mask_does_not_poison_the_loss(generator):
    model = tiny_model(generator)
    batch = collate(model, rows(3))
    batch["label_times"][:, 1] = float("nan")
    batch["label_time_mask"][:, 1] = 0
    assert torch.isfinite(model(**batch).loss)


def tiny_dataset(count: int = 24, seed: int = 0) -> datasets.Dataset:
    return datasets.Dataset.from_list(rows(count, seed=seed))


def run_training(output_dir: Path, seed: int = 0, steps: int = 4, model=None):
    model = model or tiny_model(seed=seed)
    settings = TrainingSettings(
        output_dir=str(output_dir), max_steps=steps, batch_size=8, log_every=1, seed=seed, cpu=True,
        show_progress=False, select_best_epoch=False,
    )  # fmt: skip
    collator = A2GenDataCollator.from_config(model.config, tokenizer_for(model))
    return train(model, tiny_dataset(), collator, settings)


def test_nan_loss_stops_training_naming_the_step_and_batch(tmp_path, fresh_accelerate_state):
    model = tiny_model()
    forward = model.forward
    calls = []

    def nan_on_third_call(**batch):
        output = forward(**batch)
        calls.append(1)
        if len(calls) == 3:
            output.loss = output.loss * float("nan")
        return output

    model.forward = nan_on_third_call
    with pytest.raises(FloatingPointError, match=r"Loss is nan at step 2, (micro-)?batch 2 of epoch 0; .*CLI: --dense-lr "
                                                 r"/ --embedding-lr; max_grad_norm, --max-grad-norm"):
        run_training(tmp_path, model=model)


# ---------------------------------------------------------------------------------------------------------------
# 5. No unsafe deserialisation, no token in any output

# Modules whose loading would run code from the file: never imported by the package.
PICKLING_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}
TOKEN_NAME = re.compile(r"^(hf_|access_|auth_|api_)?token$|^HF_TOKEN$", re.IGNORECASE)
OUTPUT_CALLS = {"print", "debug", "info", "warning", "warn", "error", "exception", "critical", "log", "write",
                "write_text", "echo", "set_postfix", "set_description"}  # fmt: skip
# (file, finding) -> why it is acceptable. Keep this list short and every entry justified.
ALLOWED_FINDINGS: dict[tuple[str, str], str] = {
    ("recipes/__init__.py", "yaml.load"): "Loader=_UniqueKeyLoader, a yaml.SafeLoader subclass that only adds a check "
    "for keys given twice: no Python objects are built from tags",
}


def call_name(node: ast.Call) -> str:
    function = node.func
    parts = []
    while isinstance(function, ast.Attribute):
        parts.append(function.attr)
        function = function.value
    if isinstance(function, ast.Name):
        parts.append(function.id)
    return ".".join(reversed(parts))


def keyword_value(node: ast.Call, name: str):
    for keyword in node.keywords:
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def unsafe_findings(tree: ast.AST) -> list[str]:
    """Code (not text in strings) that could deserialise untrusted data into running code."""
    findings = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            findings += [f"import {module}" for module in modules if module.split(".")[0] in PICKLING_MODULES]
        if not isinstance(node, ast.Call):
            continue
        name = call_name(node)
        if isinstance(node.func, ast.Name) and name in ("eval", "exec", "compile", "__import__"):
            findings.append(f"{name}()")
        if name.endswith("torch.load") and keyword_value(node, "weights_only") is not True:
            findings.append("torch.load without weights_only=True")
        if keyword_value(node, "weights_only") is False:
            findings.append(f"{name}(weights_only=False)")
        if keyword_value(node, "allow_pickle") is True:
            findings.append(f"{name}(allow_pickle=True)")
        if keyword_value(node, "trust_remote_code") is True:
            findings.append(f"{name}(trust_remote_code=True)")
        if name.endswith(("yaml.load", "register_for_checkpointing", "accelerator.load_state")):
            findings.append(name)
    return findings


def token_findings(tree: ast.AST) -> list[str]:
    """Output calls and f-strings that read a variable named like a token (or HF_TOKEN from the environment)."""

    def mentions_token(node: ast.AST) -> bool:
        for inner in ast.walk(node):
            if isinstance(inner, ast.Name) and TOKEN_NAME.match(inner.id):
                return True
            if isinstance(inner, ast.Attribute) and TOKEN_NAME.match(inner.attr):
                return True
            if isinstance(inner, ast.Constant) and inner.value == "HF_TOKEN" and not isinstance(node, ast.Constant):
                return True
        return False

    findings = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and call_name(node).split(".")[-1] in OUTPUT_CALLS:
            if any(mentions_token(argument) for argument in [*node.args, *(k.value for k in node.keywords)]):
                findings.append(f"{call_name(node)}() at line {node.lineno}")
        if isinstance(node, ast.JoinedStr) and any(
            isinstance(part, ast.FormattedValue) and mentions_token(part.value) for part in node.values
        ):
            findings.append(f"f-string at line {node.lineno}")
    return findings


def package_trees():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_the_package_never_deserialises_unsafely():
    findings = {(name, finding) for name, tree in package_trees() for finding in unsafe_findings(tree)}
    unjustified = findings - set(ALLOWED_FINDINGS)
    assert not unjustified, f"unsafe deserialisation (justify in ALLOWED_FINDINGS or remove): {sorted(unjustified)}"
    stale = set(ALLOWED_FINDINGS) - findings
    assert not stale, f"ALLOWED_FINDINGS entries no longer found in the code; remove them: {sorted(stale)}"


def test_the_scanners_catch_what_they_look_for():
    """The two scanners above are only worth something if they fire on the patterns they claim to catch."""
    unsafe = ast.parse(
        "import pickle\nfrom dill import loads\neval(text)\ntorch.load(path)\ntorch.load(path, weights_only=False)\n"
        "np.load(path, allow_pickle=True)\nAutoModel.from_pretrained(repo, trust_remote_code=True)\n"
        "torch.load(path, weights_only=True)\nmodel.eval()\nload(folder).eval()\n"
    )
    assert len(unsafe_findings(unsafe)) == 8  # the weights_only=True load and the .eval() methods are fine
    leaky = ast.parse(
        "print(token)\nlogger.info('pushing with %s', api.token)\nf'{os.environ[\"HF_TOKEN\"]}'\n"
        "warnings.warn(f'bad {hf_token}')\nprint(tokenizer.eos_token_id, 'token')\n"
    )
    assert len(token_findings(leaky)) == 5  # the f-string of warn counts twice; the last line is fine


def test_no_code_path_prints_or_logs_a_token():
    findings = [(name, finding) for name, tree in package_trees() for finding in token_findings(tree)]
    assert not findings, f"a token may reach an output: {findings}"


def test_cli_push_errors_and_the_model_card_never_show_the_token(saved_checkpoint, tmp_path, monkeypatch, capsys):
    secret = "hf_reliabilityTestSecret0123456789"
    monkeypatch.setenv("HF_TOKEN", secret)
    folder, model = saved_checkpoint
    card = str(build_model_card(model, tokenizer_for(model), repo_id="someone/a2gen"))
    assert secret not in card
    assert cli_main(["push", str(tmp_path / "missing"), "someone/a2gen"]) != 0
    captured = capsys.readouterr()
    assert "missing" in captured.err and secret not in captured.out + captured.err


def checkpointed_run(output_dir: Path, steps: int = 2, resume: bool = False, data=None, model=None, **changes):
    """A tiny run that checkpoints every 2 steps; returns its result."""
    model = model or tiny_model()
    settings = TrainingSettings(
        output_dir=str(output_dir), max_steps=steps, batch_size=8, checkpoint_every=2, cpu=True, show_progress=False,
        resume=resume, **changes,
    )  # fmt: skip
    collator = A2GenDataCollator.from_config(model.config, tokenizer_for(model))
    result = train(model, data if data is not None else tiny_dataset(), collator, settings)
    reset_accelerate_state()
    return result


def test_training_checkpoints_hold_no_pickle(tmp_path, fresh_accelerate_state):
    """Model, optimizer and RNG states are safetensors; counters, log and resume key are JSON."""
    checkpointed_run(tmp_path)
    checkpoint = tmp_path / "checkpoint-2"
    files = sorted(path.name for path in checkpoint.iterdir())
    assert files == ["a2gen_checkpoint.json", "model.safetensors", "optimizer.safetensors", "rng_state_0.safetensors"]
    for name in files[1:]:
        load_file(checkpoint / name)  # safetensors: a header and raw numbers, nothing that runs
    manifest = json.loads((checkpoint / "a2gen_checkpoint.json").read_text())
    assert manifest["progress"]["global_step"] == 2 and set(manifest["resume_key"]) == {"settings", "model", "data"}
    assert all(len(entry["sha256"]) == 64 for entry in manifest["files"].values())


def test_a_kill_while_saving_the_best_weights_leaves_nothing_a_run_does_not_remove(tmp_path, fresh_accelerate_state,
                                                                                    monkeypatch):
    """From a probe: safetensors writes through a .tmpXXXXXX file of its own beside its target; a kill during a best
    save left a model-sized file in the output folder that no run removed. It now goes into a staging folder, which
    the next run removes when it starts (with a .tmp-best file of earlier versions)."""
    from accelerate import Accelerator

    from a2gen_hf.training import checkpointing

    model = tiny_model()

    def killed_save(module, filename, metadata=None):
        Path(filename).with_name(".tmpAbC123").write_bytes(b"x" * 64)  # what safetensors writes first
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpointing, "save_model", killed_save)
    with pytest.raises(KeyboardInterrupt):
        checkpointing._save_best(Accelerator(cpu=True), model, tmp_path, 0, 2, 0.5)
    assert [path.name for path in tmp_path.iterdir()] == [".tmp-best-weights"]  # the leftover is inside it
    (tmp_path / ".tmp-best_model.safetensors").write_bytes(b"y")  # an earlier version's half-renamed file
    monkeypatch.undo()
    checkpointed_run(tmp_path)
    assert not (tmp_path / ".tmp-best-weights").exists() and not (tmp_path / ".tmp-best_model.safetensors").exists()
    checkpointing._save_best(Accelerator(cpu=True), model, tmp_path, 0, 2, 0.5)  # a save that completes
    assert (tmp_path / "best_model.safetensors").is_file() and not (tmp_path / ".tmp-best-weights").exists()


def test_planted_pickles_in_a_checkpoint_are_never_loaded(tmp_path, fresh_accelerate_state):
    """The files accelerate's load_state would unpickle (with weights_only=False for custom state) are never read,
    even when an attacker also lists them, with their sizes and digests, in the manifest."""
    checkpointed_run(tmp_path)
    checkpoint = tmp_path / "checkpoint-2"
    marker = tmp_path / "code-ran"
    manifest_file = checkpoint / "a2gen_checkpoint.json"
    manifest = json.loads(manifest_file.read_text())
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin", "pytorch_model.bin"):
        (checkpoint / name).write_bytes(pickle.dumps(_WritesMarker(marker)))
        data = (checkpoint / name).read_bytes()
        manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    manifest_file.write_text(json.dumps(manifest))
    result = checkpointed_run(tmp_path, steps=4, resume=True)
    assert result.global_step == 4 and not marker.exists()


def test_old_checkpoints_with_pickled_state_are_refused(tmp_path, fresh_accelerate_state):
    checkpointed_run(tmp_path)
    manifest_file = tmp_path / "checkpoint-2" / "a2gen_checkpoint.json"
    manifest = json.loads(manifest_file.read_text())
    del manifest["format"]
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="written by an older a2gen_hf .*never loads"):
        checkpointed_run(tmp_path, steps=4, resume=True)


@pytest.mark.parametrize("name", ["rng_state_0.safetensors", "optimizer.safetensors", "model.safetensors"])
def test_a_damaged_checkpoint_file_of_the_right_size_is_refused(tmp_path, name, fresh_accelerate_state):
    checkpointed_run(tmp_path)
    path = tmp_path / "checkpoint-2" / name
    data = bytearray(path.read_bytes())
    data[-8:] = b"\xff" * 8  # NaN bytes at the end of the data, same size
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{name} does not match the SHA-256 recorded"):
        checkpointed_run(tmp_path, steps=4, resume=True)


def test_a_non_finite_optimizer_state_is_refused_even_with_a_matching_digest(tmp_path, fresh_accelerate_state):
    checkpointed_run(tmp_path)
    checkpoint = tmp_path / "checkpoint-2"
    tensors = load_file(checkpoint / "optimizer.safetensors")
    tensors = {name: torch.full_like(value, float("nan")) if "exp_avg_sq" in name else value
               for name, value in tensors.items()}  # fmt: skip
    save_file(tensors, checkpoint / "optimizer.safetensors")
    manifest = json.loads((checkpoint / "a2gen_checkpoint.json").read_text())
    data = (checkpoint / "optimizer.safetensors").read_bytes()
    manifest["files"]["optimizer.safetensors"] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (checkpoint / "a2gen_checkpoint.json").write_text(json.dumps(manifest))
    with pytest.raises(FloatingPointError, match="optimizer.safetensors holds NaN or inf"):
        checkpointed_run(tmp_path, steps=4, resume=True)


def test_resume_key_names_what_differs(tmp_path, fresh_accelerate_state):
    checkpointed_run(tmp_path)
    with pytest.raises(ValueError, match=r"settings\.dense_learning_rate: checkpoint 0\.0005, now 0\.001"):
        checkpointed_run(tmp_path, steps=4, resume=True, dense_learning_rate=1e-3)
    with pytest.raises(ValueError, match=r"data\.fingerprint: checkpoint '\w+', now '\w+'"):
        checkpointed_run(tmp_path, steps=4, resume=True, data=tiny_dataset(seed=1))
    with pytest.raises(ValueError, match=r"model\.config\.hidden_size: checkpoint 16, now 32"):
        checkpointed_run(tmp_path, steps=4, resume=True, model=tiny_model(hidden_size=32))
    with pytest.raises(ValueError, match=r"model\.class: checkpoint 'A2GenForActionGeneration', now 'MMoE"):
        checkpointed_run(tmp_path, steps=4, resume=True, model=MMoEForActionPrediction(MMoEConfig(**TINY)))
    assert checkpointed_run(tmp_path, steps=4, resume=True, log_every=1).global_step == 4  # may change


def test_a_second_training_into_a_busy_output_folder_is_refused(tmp_path, fresh_accelerate_state):
    import fcntl
    import os

    descriptor = os.open(tmp_path / ".run.a2gen-lock", os.O_RDWR | os.O_CREAT)  # another run writes tmp_path/run
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match=r"run is being written by another a2gen run"):
            checkpointed_run(tmp_path / "run")
    finally:
        os.close(descriptor)
    assert not (tmp_path / "run").exists()
    assert checkpointed_run(tmp_path / "run").global_step == 2


def test_non_finite_weights_stop_training_before_anything_is_saved(tmp_path, fresh_accelerate_state):
    model = tiny_model()
    step, calls = torch.optim.AdamW.step, []

    def poisoning_step(self, *args, **kwargs):  # the second (last) step leaves a NaN bias; no forward follows
        result = step(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            with torch.no_grad():
                model.generator.heads.time.bias.fill_(float("nan"))
        return result

    torch.optim.AdamW.step = poisoning_step
    try:
        with pytest.raises(FloatingPointError, match=r"NaN or inf at step 2 \(generator\.heads\.time\.bias\)"):
            checkpointed_run(tmp_path, model=model)
    finally:
        torch.optim.AdamW.step = step
    assert latest_checkpoint(tmp_path) is None


# ---------------------------------------------------------------------------------------------------------------
# 6. Determinism (the simulator's: tests/test_simulator.py)


def test_same_seed_gives_the_same_training_curve(tmp_path, fresh_accelerate_state):
    first = run_training(tmp_path / "first", seed=3)
    reset_accelerate_state()
    second = run_training(tmp_path / "second", seed=3)
    reset_accelerate_state()
    other = run_training(tmp_path / "other", seed=4)
    assert len(first.log_history) == 4
    assert first.log_history == second.log_history
    assert first.log_history != other.log_history
    second_weights = second.model.state_dict()
    assert all(torch.equal(value, second_weights[name]) for name, value in first.model.state_dict().items())


@pytest.mark.parametrize("generator", GENERATORS)
def test_same_seed_gives_the_same_sequences(generator):
    batch = history_only(collate(tiny_model(generator), rows(16)))

    def generate(model_seed: int, sampling_seed: int | None):
        model = tiny_model(generator, seed=model_seed)
        if sampling_seed is None:
            return model.generate(**batch, return_dict_in_generate=True)
        torch.manual_seed(sampling_seed)
        return model.generate(**batch, do_sample=True, return_dict_in_generate=True)

    greedy, again = generate(0, None), generate(0, None)
    assert torch.equal(greedy.sequences, again.sequences) and torch.equal(greedy.times, again.times)
    sampled, resampled = generate(0, 7), generate(0, 7)
    assert torch.equal(sampled.sequences, resampled.sequences) and torch.equal(sampled.times, resampled.times)
    assert not torch.equal(sampled.sequences, generate(0, 8).sequences)
    assert not torch.equal(greedy.times, generate(1, None).times)



def test_seconds_passed_as_normalised_history_times_are_refused_by_the_model_and_the_ranker():
    """1800.0 (half an hour in seconds) where normalised times belong gave inf expected seconds, and 1e20 NaN scores,
    silently; the model's input check and the ranker refuse times above what MAX_SECONDS normalises to, naming the
    position; masked slots are not read."""
    from a2gen_hf import A2GenRanker

    model = tiny_model().eval()
    batch = collate(model, rows(2))
    masked = dict(batch)
    masked["history_action_times"] = batch["history_action_times"].clone()
    masked["history_action_times"][batch["history_time_mask"] == 0] = 1e20  # padding is never read
    model.predict_actions(**{k: v for k, v in masked.items() if not k.startswith("label")})
    broken = dict(batch)
    broken["history_action_times"] = batch["history_action_times"].clone()
    broken["history_action_times"][1, 0, 0] = 1800.0
    with pytest.raises(ValueError, match=r"history_action_times\[1, 0, 0\] = 1800 is above .* not seconds"):
        model(**broken)
    user = {name: broken[name][1:] for name in ("user_ids", "history_item_ids", "history_action_ids",
                                                 "history_action_times", "history_time_mask", "history_mask",
                                                 "history_item_side_ids") if name in broken}
    with pytest.raises(ValueError, match=r"history_action_times\[0, 0, 0\] = 1800 is above"):
        A2GenRanker(model).encode_user(**user)
