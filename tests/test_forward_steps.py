"""The forward's named steps (encoder -> context -> EAG/IAG -> loss) keep the single-body forward's numbers."""

import pytest
import torch
from conftest import make_batch, tiny_config

from a2gen_hf import A2GenForActionGeneration
from a2gen_hf.modeling_a2gen import _aligned_targets, _counted_positions

# Saved from the forward before it was split into steps (HEAD b495663): loss, time loss, order loss and the global
# gradient norm of the seeded model below, in float32 (the norm summed in float64).
PINNED = {
    "iag": (15.058929443359375, 0.4053131341934204, 0.2742798924446106, 11.570442337816988),
    "eag": (9.352046966552734, 0.38401153683662415, 0.211961030960083, 8.483830829987419),
}


@pytest.mark.parametrize("generator", ["iag", "eag"])
def test_loss_and_gradient_norm_are_pinned(generator):
    """Time buckets (log_seconds), count features, the occurrence head, an unknown label time, training mode."""
    torch.manual_seed(0)
    config = tiny_config(generator, time_buckets=8, occurrence_head=True, history_count_features=True)
    model = A2GenForActionGeneration(config).train()
    batch = make_batch(config, seed=1)
    mask = torch.ones_like(batch["labels"])
    mask[:, 2] = 0
    out = model(**batch, label_time_mask=mask)
    out.loss.backward()
    norm = torch.linalg.vector_norm(
        torch.stack([p.grad.double().norm() for p in model.parameters() if p.grad is not None])
    )
    got = (out.loss.item(), out.time_loss.item(), out.order_loss.item(), norm.item())
    # Relative 1e-6: a change of the model moves these by far more; another CPU's BLAS rounding by far less.
    assert got == pytest.approx(PINNED[generator], rel=1e-6, abs=0)


def test_aligned_targets_cut_and_pad_to_the_predicted_positions():
    config = tiny_config("iag")
    labels = torch.tensor([[1, 3, 4, 0, 0]])
    times = torch.tensor([[0.0, 0.5, float("nan"), 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 0, 1, 1]])
    targets, target_times, known = _aligned_targets(config, labels, times, mask, 6, torch.float32)
    assert targets.tolist() == [[3, 4, 0, 0, 0, 0]]
    assert target_times.tolist() == [[0.5, 0.0, 0.0, 0.0, 0.0, 0.0]]  # unknown (NaN) and padding times are 0.0
    assert known.tolist() == [[True, False, False, False, False, False]]
    targets, _, _ = _aligned_targets(config, labels, times, mask, 2, torch.float32)
    assert targets.tolist() == [[3, 4]]
    with pytest.raises(ValueError, match="labels hold 4 actions after start but the model predicts 1"):
        _aligned_targets(config, labels, times, mask, 1, torch.float32)


def test_counted_positions_stop_after_the_end_for_eag_only():
    end = tiny_config("iag").end_action_id
    targets = torch.tensor([[3, end, 0, 0], [3, -100, 4, end]])
    assert _counted_positions(tiny_config("iag"), targets).tolist() == [
        [True, True, True, True],
        [True, False, True, True],
    ]
    assert _counted_positions(tiny_config("eag"), targets).tolist() == [
        [True, True, False, False],
        [True, False, True, True],
    ]


@pytest.mark.parametrize("generator", ["iag", "eag"])
def test_padded_and_packed_encodings_agree(generator):
    """_encode_padded and _encode_packed give the same Vec_hist and Seq_j; the padded one also its event embeddings."""
    torch.manual_seed(0)
    model = A2GenForActionGeneration(tiny_config(generator)).eval()
    batch = make_batch(model.config)
    batch["history_item_ids"][0, 3:] = 0  # a ragged history
    batch["history_action_ids"][0, 3:] = 0
    history = {key: value for key, value in batch.items() if not key.startswith("label")}
    model.a2gen.pack_history_items = False
    padded = model.a2gen(**history, output_hidden_states=True)
    model.a2gen.pack_history_items = True
    packed = model.a2gen(**history)
    torch.testing.assert_close(packed.history_representation, padded.history_representation)
    torch.testing.assert_close(packed.item_sequence_representations, padded.item_sequence_representations)
    assert padded.hidden_states[0].shape == (4, 5, 3, model.a2gen.event_embedding.output_size)
