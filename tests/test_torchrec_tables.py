"""TorchRec as the engine of the id tables: same math, plain checkpoints both ways, sharding over 2 CPU processes."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from a2gen_hf import A2GenConfig, A2GenForActionGeneration
from a2gen_hf.torchrec_tables import is_torchrec_available

pytestmark = pytest.mark.skipif(
    not is_torchrec_available(), reason="TorchRec is optional: pip install -e '.[torchrec]' && pip install --no-deps torchrec==1.8.0"
)

SIZES = dict(
    hidden_size=8, num_attention_heads=2, id_embedding_size=8, action_embedding_size=4, time_embedding_size=4,
    max_history_items=4, max_events_per_item=3, max_actions=3, user_buckets=50, item_buckets=60,
    side_feature_buckets=10, num_item_side_features=1,
)


def tiny_model(seed: int = 0, **overrides) -> A2GenForActionGeneration:
    torch.manual_seed(seed)
    return A2GenForActionGeneration(A2GenConfig(**{**SIZES, **overrides}))


def tiny_batch(seed: int, batch: int = 4) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    items, events = SIZES["max_history_items"], SIZES["max_events_per_item"]
    vocab = len(A2GenConfig().action_names) + 1
    history_item_ids = torch.randint(1, SIZES["item_buckets"], (batch, items), generator=generator)
    history_item_ids[0, 0] = 0  # a padding history item
    labels = torch.randint(2, vocab, (batch, SIZES["max_actions"] + 1), generator=generator)
    labels[:, 0] = 1
    return {
        "user_ids": torch.randint(1, SIZES["user_buckets"], (batch,), generator=generator),
        "item_ids": torch.randint(1, SIZES["item_buckets"], (batch,), generator=generator),
        "item_side_ids": torch.randint(1, SIZES["side_feature_buckets"], (batch, 1), generator=generator),
        "history_item_ids": history_item_ids,
        "history_item_side_ids": torch.randint(1, SIZES["side_feature_buckets"], (batch, items, 1), generator=generator),
        "history_action_ids": torch.randint(1, vocab, (batch, items, events), generator=generator),
        "history_action_times": torch.rand((batch, items, events), generator=generator),
        "labels": labels,
        "label_times": torch.rand((batch, SIZES["max_actions"] + 1), generator=generator),
    }


@pytest.mark.parametrize("generator", ["iag", "eag"])
def test_same_outputs_for_the_same_weights(generator):
    from a2gen_hf.torchrec_tables import TorchRecIdTable, use_torchrec_tables

    plain = tiny_model(generator=generator).eval()
    swapped = use_torchrec_tables(tiny_model(generator=generator)).eval()
    assert isinstance(swapped.a2gen.features.item_embeddings, TorchRecIdTable)
    batch = tiny_batch(1)
    with torch.no_grad():
        expected, got = plain(**batch), swapped(**batch)
    torch.testing.assert_close(got.loss, expected.loss)
    torch.testing.assert_close(got.logits, expected.logits)


def test_mmoe_with_user_side_lists_gives_the_same_outputs():
    """MMoE reads the item table for targets, histories and user side lists: in one call once swapped."""
    from a2gen_hf import MMoEConfig, MMoEForActionPrediction
    from a2gen_hf.torchrec_tables import use_torchrec_tables

    sizes = {key: value for key, value in SIZES.items() if key in MMoEConfig().to_dict()}

    def model():
        torch.manual_seed(0)
        return MMoEForActionPrediction(MMoEConfig(**sizes, num_user_side_lists=2))

    plain, swapped = model().eval(), use_torchrec_tables(model()).eval()
    assert swapped.inputs.features.updates_rows_in_backward()
    batch = dict(tiny_batch(1), user_side_ids=torch.randint(0, SIZES["item_buckets"], (4, 2, 3)))
    with torch.no_grad():
        expected, got = plain(**batch), swapped(**batch)
    torch.testing.assert_close(got.loss, expected.loss)
    torch.testing.assert_close(got.logits, expected.logits)


def test_an_id_free_model_with_side_features_gives_the_same_outputs():
    """Id-free: the id tables are frozen (kept plain), the side-feature table is swapped and read once per step."""
    from a2gen_hf.torchrec_tables import TorchRecIdTable, use_torchrec_tables

    plain = tiny_model(seed=8, use_id_embeddings=False).eval()
    swapped = use_torchrec_tables(tiny_model(seed=8, use_id_embeddings=False)).eval()
    features = swapped.a2gen.features
    assert isinstance(features.side_feature_embeddings, TorchRecIdTable) and features.updates_rows_in_backward()
    assert isinstance(features.item_embeddings, torch.nn.Embedding)
    with torch.no_grad():
        torch.testing.assert_close(swapped(**tiny_batch(3)).logits, plain(**tiny_batch(3)).logits)


def test_checkpoints_stay_plain_both_ways(tmp_path):
    from a2gen_hf.torchrec_tables import use_torchrec_tables

    swapped = use_torchrec_tables(tiny_model(seed=3))
    assert "a2gen.features.item_embeddings.weight" in swapped.state_dict()
    swapped.save_pretrained(tmp_path / "from_torchrec")
    plain = A2GenForActionGeneration.from_pretrained(tmp_path / "from_torchrec")  # no TorchRec needed to load
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(value, swapped.state_dict()[key], msg=key)
    # and a plain checkpoint loads into the TorchRec layout
    other = tiny_model(seed=4)
    swapped.load_state_dict(other.state_dict())
    torch.testing.assert_close(swapped.a2gen.features.item_embeddings.weight, other.a2gen.features.item_embeddings.weight)


def test_padding_rows_get_no_gradient():
    from a2gen_hf.torchrec_tables import TorchRecIdTable

    table = TorchRecIdTable("t", 10, 4)
    table(torch.tensor([[0, 3], [3, 0]])).sum().backward()
    grad = table.weight.grad
    assert torch.count_nonzero(grad[0]) == 0 and torch.count_nonzero(grad[3]) == 4


def test_no_ids_bf16_and_frozen_tables_behave_as_the_plain_tables(caplog):
    """Before: a lookup of no ids (a new user's history of 0 items) raised torchrec's IndexError; a bf16 table gave
    float32 rows (mat1 and mat2 must have the same dtype); a frozen table came back trainable."""
    from a2gen_hf.torchrec_tables import TorchRecIdTable, torchrec_parameters, use_torchrec_tables
    from a2gen_hf.training.optimization import set_sparse_embeddings

    table = TorchRecIdTable("t", 10, 4)
    assert table(torch.zeros(2, 0, dtype=torch.long)).shape == (2, 0, 4)
    plain, swapped = tiny_model(seed=5).eval(), use_torchrec_tables(tiny_model(seed=5)).eval()
    batch = {key: value[:, :0] if key.startswith("history_") else value for key, value in tiny_batch(2).items()}
    with torch.no_grad():
        torch.testing.assert_close(swapped(**batch).logits, plain(**batch).logits)
        low, low_plain = swapped.to(torch.bfloat16), plain.to(torch.bfloat16)
        assert low.a2gen.features.item_embeddings(torch.tensor([1, 2])).dtype == torch.bfloat16
        torch.testing.assert_close(low(**tiny_batch(2)).logits, low_plain(**tiny_batch(2)).logits)
    frozen = tiny_model(seed=6)
    frozen.a2gen.features.user_embeddings.weight.requires_grad_(False)
    use_torchrec_tables(frozen)
    assert isinstance(frozen.a2gen.features.user_embeddings, torch.nn.Embedding)
    assert not frozen.a2gen.features.user_embeddings.weight.requires_grad
    assert isinstance(frozen.a2gen.features.item_embeddings, TorchRecIdTable) and torchrec_parameters(frozen)
    # A Trainer's sparse updates do not reach TorchRec tables: said, not silent.
    with caplog.at_level("WARNING"):
        set_sparse_embeddings(frozen, True)
    assert "updates the TorchRec tables as dense weights" in caplog.text


def test_a_refused_fused_optimizer_leaves_the_model_as_it_was():
    import torch.distributed as dist

    from a2gen_hf.torchrec_tables import shard_model, torchrec_parameters

    model = tiny_model(seed=7)
    if not dist.is_initialized():
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        with pytest.raises(ValueError, match="fused optimizer 'lamb' is not one of"):
            shard_model(model, optimizer="lamb")
        assert not torchrec_parameters(model)  # before: its tables were swapped, then the name refused
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train(rank: int, world_size: int, port: int, sharding_type: str, steps: int, out: str) -> None:
    """Plain SGD on both engines: `world_size` processes each take their share of every global batch. As
    examples/train_sharded_torchrec.py: TorchRec's objects are released while the group lives (later, at the
    interpreter's exit, their threads aborted a process now and then: 2 runs of 8 failed), then every process waits for
    rank 0's save."""
    import gc

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        _train_and_save(rank, world_size, sharding_type, steps, out)
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _train_and_save(rank: int, world_size: int, sharding_type: str, steps: int, out: str) -> None:
    from a2gen_hf.torchrec_tables import dense_parameters, plain_state_dict, shard_model

    model = tiny_model(seed=7, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, embedding_dropout_prob=0.0)
    sharded = shard_model(model, sharding_type=sharding_type, optimizer="sgd", learning_rate=0.05)
    optimizer = torch.optim.SGD(dense_parameters(model), lr=0.05)
    losses = []
    for step in range(steps):
        batch = tiny_batch(100 + step, batch=8)
        share = {k: v.chunk(world_size)[rank] for k, v in batch.items()}
        loss = sharded(**share).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss))
    state = plain_state_dict(sharded)
    if rank == 0:
        torch.save({"state": state, "losses": losses}, out)
        # Saving the sharded tables as they are is refused naming plain_state_dict (before: torch's "torch function
        # 'storage', with args: (ShardedTensor(..." from inside safetensors).
        with pytest.raises(ValueError, match=r"sharded over processes \(shard_model\): gather them first"):
            model.save_pretrained(out + ".folder")


def _reference(steps: int) -> dict[str, torch.Tensor]:
    model = tiny_model(seed=7, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, embedding_dropout_prob=0.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for step in range(steps):
        model(**tiny_batch(100 + step, batch=8)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.state_dict()


@pytest.mark.slow
@pytest.mark.parametrize("sharding_type", ["row_wise", "table_wise"])
def test_sharded_training_over_two_processes_matches_one(tmp_path, sharding_type):
    out = str(tmp_path / "sharded.pt")
    mp.start_processes(_train, args=(2, _free_port(), sharding_type, 3, out), nprocs=2, start_method="spawn")
    result = torch.load(out)
    expected = _reference(3)
    assert set(result["state"]) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(result["state"][key], value, atol=2e-5, rtol=1e-4, msg=key)


NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, embedding_dropout_prob=0.0)


def _batch_reading_items_twice(step: int) -> dict[str, torch.Tensor]:
    batch = tiny_batch(100 + step, batch=8)
    batch["history_item_ids"][:, 1] = batch["item_ids"]  # every target is also in its user's history
    return batch


def _fused_adagrad(rank: int, port: int, steps: int, out: str) -> None:
    import gc

    import torch.distributed as dist

    from a2gen_hf.torchrec_tables import dense_parameters, plain_state_dict, shard_model

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        model = tiny_model(seed=7, **NO_DROPOUT)
        sharded = shard_model(model, optimizer="adagrad", learning_rate=0.05)
        optimizer = torch.optim.SGD(dense_parameters(model), lr=0.05)
        for step in range(steps):
            sharded(**_batch_reading_items_twice(step)).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        torch.save(plain_state_dict(sharded), out)
        del sharded, model, optimizer
        gc.collect()
    finally:
        dist.destroy_process_group()


def _sharded_logits_of_views(rank: int, port: int, out: str) -> None:
    """One gloo process: a sharded copy of the tiny model scores one batch with its user ids contiguous, as a strided
    slice and as one user expanded to the batch; the logits, and the plain model's, saved to ``out``."""
    import copy
    import gc

    import torch.distributed as dist

    from a2gen_hf.torchrec_tables import shard_model, use_torchrec_tables

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        plain = tiny_model(seed=3, **NO_DROPOUT).eval()
        sharded = shard_model(use_torchrec_tables(copy.deepcopy(plain)), sharding_type="row_wise").eval()
        batch = tiny_batch(5, batch=6)
        views = {"strided": torch.arange(7, 19)[::2], "expanded": torch.tensor([7]).expand(6)}
        logits = {}
        with torch.no_grad():
            for name, ids in views.items():
                logits[name] = sharded(**{**batch, "user_ids": ids}).logits
                logits[name + "-plain"] = plain(**{**batch, "user_ids": ids}).logits
        torch.save(logits, out)
        del sharded, plain
        gc.collect()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_sharded_tables_read_strided_and_expanded_ids_as_the_plain_tables():
    """From a probe: fbgemm read a non-contiguous id tensor (a strided slice, or one user expanded to its candidates)
    as if it were contiguous, so a sharded table looked up other (garbage) rows, silently (logits 0.1 off)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "logits.pt")
        mp.start_processes(_sharded_logits_of_views, args=(_free_port(), out), nprocs=1, start_method="spawn")
        logits = torch.load(out)
    for name in ("strided", "expanded"):
        torch.testing.assert_close(logits[name], logits[name + "-plain"], atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.slow
def test_a_row_read_twice_in_a_step_gets_one_fused_update():
    """Before: the item table was read once for the targets and once for the histories, and TorchRec's fused Adagrad
    updated a row read by both twice, each time from its part of the gradient (the weights 0.27 off a plain Adagrad's
    after 3 steps); now each table is read in one call (A2GenFeatureEmbeddings.batch_features)."""
    import tempfile

    steps = 3
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "fused.pt")
        mp.start_processes(_fused_adagrad, args=(_free_port(), steps, out), nprocs=1, start_method="spawn")
        got = torch.load(out)
    reference = tiny_model(seed=7, **NO_DROPOUT)
    tables = [p for name, p in reference.named_parameters() if ".features." in name and name.endswith("embeddings.weight")]
    dense = [p for name, p in reference.named_parameters() if all(p is not table for table in tables)]
    optimizers = [torch.optim.Adagrad(tables, lr=0.05, eps=1e-8), torch.optim.SGD(dense, lr=0.05)]
    for step in range(steps):
        reference(**_batch_reading_items_twice(step)).loss.backward()
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad()
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(got[key], value, atol=1e-4, rtol=1e-4, msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("model_config", [{}, {"history_count_features": True, "history_time_features": True}])
def test_sharded_example_trains_and_saves_a_plain_checkpoint(tmp_path, simulated_data_dir, model_config):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "examples" / "train_sharded_torchrec.py"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
        str(script), "--data", str(simulated_data_dir), "--output", str(tmp_path), "--batch-size", "32",
        "--max-steps", "3", "--epochs", "2",  # the steps end the run, not only their epoch
        "--model-config", json.dumps(model_config),  # the time features: the collator gives their ages
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    model = A2GenForActionGeneration.from_pretrained(tmp_path / "model")  # plain: no TorchRec in the layout
    assert all(getattr(model.config, name) == value for name, value in model_config.items())
    assert type(model.a2gen.features.item_embeddings) is torch.nn.Embedding
    assert torch.isfinite(model.a2gen.features.item_embeddings.weight).all()
    assert len(json.loads((tmp_path / "losses.json").read_text())["losses"]) == 3


def _sharded_example():
    import importlib.util
    from pathlib import Path

    script = Path(__file__).parents[1] / "examples" / "train_sharded_torchrec.py"
    spec = importlib.util.spec_from_file_location("train_sharded_torchrec", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("flags", "message"), [
    (["--epochs", "0"], "--epochs 0 trains nothing; give 1 or more."),
    (["--max-steps", "0"], "--max-steps 0 trains nothing; give 1 or more, or -1 (the default)"),
    (["--max-steps", "-3"], "--max-steps -3 trains nothing"),
    (["--batch-size", "0"], "--batch-size 0 must be 1 or more"),
    (["--model-config", "[1]"], "must be a JSON object of config fields"),
    (["--model-config", "{oops"], "is not JSON"),
])
def test_sharded_example_refuses_a_run_that_trains_nothing(tmp_path, capsys, flags, message):
    """Before: --epochs 0, --max-steps 0, or a --batch-size above the training split trained nothing, saved the
    initial random weights as OUTPUT/model (loading and evaluating like a trained checkpoint) and exited 0."""
    example = _sharded_example()
    with pytest.raises(SystemExit) as stop:
        example.main(["--data", str(tmp_path / "data"), "--output", str(tmp_path / "out"), *flags])
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--table-learning-rate", "-1"], "--table-learning-rate -1.0 must be a finite number > 0"),
    (["--dense-learning-rate", "nan"], "--dense-learning-rate nan must be a finite number > 0"),
    (["--table-optimizer", "adam"], "--table-optimizer adam: TorchRec's fused Adam runs on GPUs only"),
    (["--device", "gpu0"], "--device gpu0 is no device; give cpu (gloo) or cuda"),
    (["--output", "FILE"], "is a file; give a folder (the model goes to OUTPUT/model)"),
    (["--data", "MISSING"], "no such folder; give a data folder of `a2gen simulate` / `a2gen prepare`"),
    ([], "run it under torchrun"),
])
def test_sharded_example_refuses_bad_options_before_any_work(tmp_path, capsys, monkeypatch, simulated_data_dir, flags,
                                                            message):
    """From a probe: these gave raw tracebacks (torch's, fbgemm's, init_process_group's), some only after loading the
    data and building the model, or (an --output that is a file) after the whole run."""
    monkeypatch.delenv("RANK", raising=False)
    (tmp_path / "file").write_text("")
    chosen = {"FILE": str(tmp_path / "file"), "MISSING": str(tmp_path / "missing")}
    arguments = ["--data", str(simulated_data_dir), "--output", str(tmp_path / "out")]
    arguments += [chosen.get(flag, flag) for flag in flags]
    with pytest.raises(SystemExit) as stop:
        _sharded_example().main(arguments)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_sharded_example_refuses_a_batch_larger_than_the_training_split(tmp_path, capsys, monkeypatch,
                                                                       simulated_data_dir):
    from datasets import load_from_disk

    rows = len(load_from_disk(str(simulated_data_dir))["train"])
    for name, value in dict(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port())).items():
        monkeypatch.setenv(name, value)  # one process, in this one: the check comes before any sharding
    with pytest.raises(SystemExit) as stop:
        _sharded_example().main(["--data", str(simulated_data_dir), "--output", str(tmp_path / "out"),
                                 "--batch-size", str(rows + 1)])
    assert stop.value.code == 2
    assert (f"train_sharded_torchrec.py: error: --batch-size {rows + 1:,} is larger than the {rows:,} rows of the "
            f"training split of {simulated_data_dir}: not one full global batch, nothing would be trained; give "
            f"--batch-size {rows:,} or less") in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_sharded_example_refuses_a_model_config_the_model_cannot_take(tmp_path, capsys, monkeypatch,
                                                                      simulated_data_dir):
    for name, value in dict(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port())).items():
        monkeypatch.setenv(name, value)  # one process, in this one: the check comes before any sharding
    with pytest.raises(SystemExit) as stop:
        _sharded_example().main(["--data", str(simulated_data_dir), "--output", str(tmp_path / "out"),
                                 "--batch-size", "8", "--model-config", '{"hiden_size": 8}'])
    assert stop.value.code == 2
    assert "train_sharded_torchrec.py: error: --model-config: " in (err := capsys.readouterr().err)
    assert "hiden_size" in err and not (tmp_path / "out").exists()
