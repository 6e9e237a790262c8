"""Sparse embedding updates: sparse and dense gradients agree, SparseAdamW leaves unread rows alone, and every way
of training (the Accelerate loop with resume and bf16, the Trainer) runs with them."""

import copy
import logging

import pytest
import torch
from conftest import reset_accelerate_state
from safetensors.torch import load_file
from torch import nn

from a2gen_hf import A2GenConfig, A2GenForActionGeneration
from a2gen_hf.configuration_baselines import MMoEConfig
from a2gen_hf.data import A2GenDataCollator
from a2gen_hf.modeling_baselines import MMoEForActionPrediction
from a2gen_hf.training import TrainingSettings, create_model, load_data_dir, train
from a2gen_hf.training.optimization import (
    SparseAdamW,
    clip_grad_norm_,
    id_tables,
    set_sparse_embeddings,
    sparse_gradients_supported,
    uses_sparse_embeddings,
)
from a2gen_hf.training.trainer import A2GenTrainer, a2gen_training_arguments

SIZES = dict(
    item_buckets=64, user_buckets=32, side_feature_buckets=16, num_item_side_features=2, max_history_items=6,
    max_events_per_item=3, hidden_size=8, num_attention_heads=2, id_embedding_size=8, action_embedding_size=4,
    time_embedding_size=4,
)


def tiny_batch(config, seed: int, batch: int = 4) -> dict[str, torch.Tensor]:
    """A batch that reads only item rows < 40 and user rows < 20 (the rest stay unread)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.tensor([[1, 2, 3, config.end_action_id, 0, 0, 0]] * batch)
    return {
        "user_ids": torch.randint(1, 20, (batch,), generator=generator),
        "item_ids": torch.randint(1, 40, (batch,), generator=generator),
        "item_side_ids": torch.randint(0, 16, (batch, 2), generator=generator),
        "history_item_ids": torch.randint(0, 40, (batch, 6), generator=generator),
        "history_item_side_ids": torch.randint(0, 16, (batch, 6, 2), generator=generator),
        "history_action_ids": torch.randint(1, config.vocab_size, (batch, 6, 3), generator=generator),
        "history_action_times": torch.randn(batch, 6, 3, generator=generator),
        "labels": labels,
        "label_times": torch.randn(batch, 7, generator=generator).sort(-1).values,
    }


def models():
    torch.manual_seed(0)
    yield A2GenForActionGeneration(A2GenConfig(**SIZES))
    yield A2GenForActionGeneration(A2GenConfig(generator="eag", **SIZES))
    yield MMoEForActionPrediction(MMoEConfig(history_input="items_and_events", **SIZES))


@pytest.mark.parametrize("model", list(models()), ids=["iag", "eag", "mmoe-fair"])
def test_plain_sgd_gives_the_same_weights_with_sparse_and_dense_gradients(model):
    dense, sparse = copy.deepcopy(model), copy.deepcopy(model)
    assert set_sparse_embeddings(sparse, True) is False and uses_sparse_embeddings(sparse)
    assert len(id_tables(sparse)) == 3
    optimizers = [torch.optim.SGD(network.parameters(), lr=0.005) for network in (dense, sparse)]
    for step in range(3):
        for network, optimizer in zip((dense, sparse), optimizers):
            optimizer.zero_grad()
            network(**tiny_batch(network.config, step)).loss.backward()
            optimizer.step()
        assert sparse.get_input_embeddings().weight.grad.is_sparse
        assert not dense.get_input_embeddings().weight.grad.is_sparse
    for (name, expected), (_, actual) in zip(dense.state_dict().items(), sparse.state_dict().items()):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(dense.get_input_embeddings().weight, model.get_input_embeddings().weight)


def test_sparse_adamw_moves_only_the_rows_a_batch_read():
    model = next(models())
    dense, sparse = copy.deepcopy(model), copy.deepcopy(model)
    set_sparse_embeddings(sparse, True)
    groups = lambda network: [  # noqa: E731
        {"params": [t.weight for t in id_tables(network)], "weight_decay": 0.1},
        {"params": [p for n, p in network.named_parameters() if "features" not in n], "weight_decay": 0.0},
    ]
    optimizers = [torch.optim.AdamW(groups(dense), lr=1e-2), SparseAdamW(groups(sparse), lr=1e-2)]
    for step in range(3):
        for network, optimizer in zip((dense, sparse), optimizers):
            optimizer.zero_grad()
            network(**tiny_batch(network.config, step)).loss.backward()
            optimizer.step()
    before, after, dense_after = (m.a2gen.features.item_embeddings.weight.detach() for m in (model, sparse, dense))
    assert torch.equal(after[40:], before[40:]), "rows no batch read moved (weight decay or momentum)"
    assert not torch.equal(dense_after[40:], before[40:]), "dense AdamW should decay unread rows (test is void)"
    assert not torch.equal(after[1:40], before[1:40])
    assert torch.equal(after[0], before[0]), "the padding row must stay"
    user_before, user_after = (m.a2gen.features.user_embeddings.weight.detach() for m in (model, sparse))
    assert torch.equal(user_after[20:], user_before[20:])


def test_sparse_adamw_equals_adamw_when_every_row_is_read_and_its_state_round_trips():
    torch.manual_seed(0)
    table = nn.Embedding(6, 3)
    reference, lazy = copy.deepcopy(table), copy.deepcopy(table)
    lazy.sparse = True
    adamw = torch.optim.AdamW(reference.parameters(), lr=0.1, weight_decay=0.05)
    sparse_adamw = SparseAdamW(lazy.parameters(), lr=0.1, weight_decay=0.05)
    ids = torch.tensor([[0, 1, 2, 3, 4, 5, 5, 2]])  # every row, some twice
    targets = torch.randn(1, 8, 3)

    def step(embedding, optimizer):
        optimizer.zero_grad()
        ((embedding(ids) - targets) ** 2).sum().backward()
        optimizer.step()

    for _ in range(4):
        step(reference, adamw)
        step(lazy, sparse_adamw)
    torch.testing.assert_close(lazy.weight, reference.weight, rtol=0, atol=1e-6)
    state = sparse_adamw.state_dict()
    assert set(state["state"][0]) == {"step", "exp_avg", "exp_avg_sq"} and float(state["state"][0]["step"]) == 4
    # Resuming from the saved state continues exactly like the uninterrupted optimizer.
    resumed_table = copy.deepcopy(lazy)
    resumed = SparseAdamW(resumed_table.parameters(), lr=0.1, weight_decay=0.05)
    resumed.load_state_dict(copy.deepcopy(state))
    step(lazy, sparse_adamw)
    step(resumed_table, resumed)
    assert torch.equal(resumed_table.weight, lazy.weight)


def test_clip_grad_norm_reads_sparse_gradients_like_dense_ones():
    model = next(models())
    dense, sparse = copy.deepcopy(model), copy.deepcopy(model)
    set_sparse_embeddings(sparse, True)
    for network in (dense, sparse):
        network(**tiny_batch(network.config, 0)).loss.backward()
    with pytest.raises((NotImplementedError, RuntimeError)):
        torch.nn.utils.clip_grad_norm_(list(sparse.parameters()), 1.0)  # why clip_grad_norm_ exists here
    expected = torch.nn.utils.clip_grad_norm_(dense.parameters(), 0.1)
    actual = clip_grad_norm_(sparse.parameters(), 0.1)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=0)
    clipped = sparse.get_input_embeddings().weight.grad.to_dense()
    torch.testing.assert_close(clipped, dense.get_input_embeddings().weight.grad, rtol=1e-5, atol=1e-8)


def test_one_process_supports_sparse_gradients():
    assert sparse_gradients_supported(None) == (True, "")


# ----- every way of training -----


@pytest.fixture(scope="module")
def data(simulated_data_dir):
    return load_data_dir(simulated_data_dir)


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def unread_item_rows(dataset, buckets: int) -> torch.Tensor:
    read = torch.zeros(buckets, dtype=torch.bool)
    for column in ("item_id", "history_item_ids"):
        values = dataset[column]
        flat = [v for row in values for v in (row if isinstance(row, list) else [row])]
        read[torch.tensor(flat)] = True
    read[0] = True
    return ~read


def loop_settings(folder, **overrides) -> TrainingSettings:
    base = dict(
        output_dir=str(folder), max_steps=4, batch_size=32, log_every=1, embedding_learning_rate=1e-2,
        embedding_weight_decay=0.5, max_grad_norm=1.0, select_best_epoch=False, show_progress=False, cpu=True,
    )
    return TrainingSettings(**{**base, **overrides})


@pytest.mark.parametrize("mixed_precision", ["no", "bf16"])
def test_accelerate_loop_updates_only_read_rows_and_restores_the_model_setting(data, tmp_path, mixed_precision):
    dataset, tokenizer, _ = data
    torch.manual_seed(0)
    model = create_model("mmoe", tokenizer, dataset, id_embedding_size=8)
    initial = model.get_input_embeddings().weight.detach().clone()
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    settings = loop_settings(tmp_path / "sparse", mixed_precision=mixed_precision)
    result = train(model, dataset["train"], collator, settings)
    unread = unread_item_rows(dataset["train"], initial.shape[0])
    weights = result.model.get_input_embeddings().weight.detach()
    assert torch.equal(weights[unread], initial[unread]), "sparse updates decayed rows no batch read"
    assert not torch.equal(weights[~unread], initial[~unread])
    assert all(math_finite(entry["loss"]) and entry["grad_norm"] > 0 for entry in result.log_history if "loss" in entry)
    assert not uses_sparse_embeddings(result.model) and result.model.config.sparse_embeddings is False
    # The same run with dense updates decays every row (embedding_weight_decay): the check above can fail.
    reset_accelerate_state()
    torch.manual_seed(0)
    dense_model = create_model("mmoe", tokenizer, dataset, id_embedding_size=8)
    dense = train(dense_model, dataset["train"], collator, loop_settings(tmp_path / "dense", sparse_embeddings=False))
    assert not torch.equal(dense.model.get_input_embeddings().weight.detach()[unread], initial[unread])


def math_finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


def test_accelerate_loop_resumes_sparse_training_exactly(data, tmp_path):
    dataset, tokenizer, _ = data

    def run(folder, max_steps, resume=False):
        reset_accelerate_state()
        torch.manual_seed(0)
        model = create_model("a2gen-iag", tokenizer, dataset, hidden_size=8, id_embedding_size=8)
        collator = A2GenDataCollator.from_config(model.config, tokenizer)
        settings = loop_settings(folder, max_steps=max_steps, checkpoint_every=2, keep_checkpoints=0, resume=resume)
        return train(model, dataset["train"], collator, settings)

    whole = run(tmp_path / "whole", 5)
    run(tmp_path / "parts", 2)
    resumed = run(tmp_path / "parts", 5, resume=True)
    assert resumed.global_step == 5
    for name, expected in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], expected), name
    # SparseAdamW's state has AdamW's keys, saved as safetensors (no pickle) in the checkpoint
    optimizer_state = load_file(str(tmp_path / "parts" / "checkpoint-4" / "optimizer.safetensors"))
    assert {"0.step", "0.exp_avg", "0.exp_avg_sq"} <= set(optimizer_state)
    assert load_file(str(tmp_path / "parts" / "checkpoint-4" / "model.safetensors"))


def test_trainer_trains_with_sparse_updates_and_falls_back_for_other_optimizers(data, tmp_path, caplog):
    dataset, tokenizer, _ = data
    torch.manual_seed(0)
    model = create_model("a2gen-iag", tokenizer, dataset, hidden_size=8, id_embedding_size=8)
    initial = model.get_input_embeddings().weight.detach().clone()
    quiet = dict(report_to="none", disable_tqdm=True, save_strategy="no", use_cpu=True, seed=0, max_steps=3,
                 per_device_train_batch_size=32, weight_decay=0.5, max_grad_norm=1.0, logging_steps=1)
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    trainer = A2GenTrainer(model=model, args=a2gen_training_arguments(str(tmp_path / "a"), **quiet),
                           train_dataset=dataset["train"], data_collator=collator, embedding_learning_rate=1e-2)
    trainer.train()
    assert isinstance(trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer,
                      SparseAdamW)
    unread = unread_item_rows(dataset["train"], initial.shape[0])
    weights = model.get_input_embeddings().weight.detach()
    assert torch.equal(weights[unread], initial[unread]) and not torch.equal(weights[~unread], initial[~unread])
    norms = [entry["grad_norm"] for entry in trainer.state.log_history if "grad_norm" in entry]
    assert norms and all(norm > 0 for norm in norms)
    assert not uses_sparse_embeddings(model), "the model's own (dense) setting is restored after training"

    caplog.set_level(logging.WARNING)
    other = A2GenTrainer(model=model, args=a2gen_training_arguments(str(tmp_path / "b"), optim="sgd", **quiet),
                         train_dataset=dataset["train"], data_collator=collator)
    other.train()
    assert "sparse embedding updates are off" in caplog.text and "optim='sgd'" in caplog.text


def test_config_field_builds_sparse_tables_and_keeps_state_dict_keys(tmp_path):
    config = A2GenConfig(sparse_embeddings=True, **SIZES)
    model = A2GenForActionGeneration(config)
    assert uses_sparse_embeddings(model)
    model.save_pretrained(tmp_path)
    reloaded = A2GenForActionGeneration.from_pretrained(tmp_path, sparse_embeddings=False)
    assert not uses_sparse_embeddings(reloaded)
    assert reloaded.state_dict().keys() == model.state_dict().keys()
    with pytest.raises(ValueError, match="sparse_embeddings"):
        A2GenConfig(sparse_embeddings="yes")


def test_ddp_on_nccl_is_refused_with_a_reason(monkeypatch):
    class FakeAccelerator:
        num_processes = 2

        class distributed_type:  # noqa: N801
            value = "MULTI_GPU"

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_backend", lambda: "nccl")
    supported, reason = sparse_gradients_supported(FakeAccelerator())
    assert not supported and "nccl" in reason
    monkeypatch.setattr(torch.distributed, "get_backend", lambda: "gloo")
    assert sparse_gradients_supported(FakeAccelerator()) == (True, "")




def test_distinct_rows_and_row_copies_equal_torchs_own():
    from a2gen_hf.training.optimization import distinct_rows, gather_rows, summed_rows, write_rows

    generator = torch.Generator().manual_seed(0)
    indices = torch.randint(0, 50, (80,), generator=generator)
    rows, positions = distinct_rows(indices, 50)
    expected_rows, expected_positions = torch.unique(indices, return_inverse=True)
    assert torch.equal(rows, expected_rows) and torch.equal(positions, expected_positions)
    values = torch.randn(80, 3, generator=generator)
    grad = torch.sparse_coo_tensor(indices.unsqueeze(0), values, (50, 3), check_invariants=True)
    summed_indices, summed_values = summed_rows(grad)
    torch.testing.assert_close(
        torch.sparse_coo_tensor(summed_indices.unsqueeze(0), summed_values, (50, 3), check_invariants=True).to_dense(),
        grad.to_dense(),
    )
    for dtype in (torch.float32, torch.bfloat16):  # NumPy's copies, and torch's for dtypes NumPy lacks
        table = torch.randn(50, 3, generator=generator).to(dtype)
        assert torch.equal(gather_rows(table, rows), table[rows])
        new_rows = torch.randn(len(rows), 3, generator=generator).to(dtype)
        expected = table.clone()
        expected[rows] = new_rows
        version = table._version
        write_rows(table, rows, new_rows)
        assert torch.equal(table, expected) and table._version > version  # autograd sees the write


def test_fused_sparse_adamw_equals_fused_adamw_when_every_row_is_read():
    """The optimizer train() builds (fused=True): its row-wise update runs torch's fused kernel on the read rows."""
    torch.manual_seed(0)
    table = nn.Embedding(6, 3)
    reference, lazy = copy.deepcopy(table), copy.deepcopy(table)
    lazy.sparse = True
    optimizers = [
        torch.optim.AdamW(reference.parameters(), lr=0.1, weight_decay=0.05, fused=True),
        SparseAdamW(lazy.parameters(), lr=0.1, weight_decay=0.05, fused=True),
    ]
    ids = torch.tensor([[0, 1, 2, 3, 4, 5, 5, 2]])
    targets = torch.randn(1, 8, 3)
    for _ in range(3):
        for embedding, optimizer in zip((reference, lazy), optimizers):
            optimizer.zero_grad()
            ((embedding(ids) - targets) ** 2).sum().backward()
            optimizer.step()
    torch.testing.assert_close(lazy.weight, reference.weight, rtol=0, atol=1e-6)
    assert optimizers[1].state[lazy.weight]["step"].device == lazy.weight.device
