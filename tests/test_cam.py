"""CAM: the head gate's input (issue: the paper's raw context), the short-sequence kernel against the spec written
out, and checkpoints written before ``cam_gate_input`` existed (fixtures saved by the earlier code)."""

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from test_modeling import GENERATORS

from a2gen_hf import A2GenConfig, A2GenConfigError, A2GenForActionGeneration, ContextAwareAttention

LEGACY_CHECKPOINTS = Path(__file__).parent / "fixtures" / "legacy_checkpoint"


def test_cam_gate_reads_the_raw_context_by_default():
    """The paper's figure and spec: G = softmax(linear(c)) on the raw context, not on the projected one."""
    torch.manual_seed(0)
    config = tiny_config("iag")
    assert config.cam_gate_input == "context"
    model = A2GenForActionGeneration(config)
    generation = model.generator.generation_attention
    assert generation.head_gate.in_features == model.a2gen.context_size
    cam = ContextAwareAttention(sequence_size=6, context_size=5, hidden_size=8, num_heads=4)
    torch.nn.init.normal_(cam.head_gate.weight)
    sequence, context = torch.randn(3, 7, 6), torch.randn(3, 5)
    _, _, gate = cam(sequence, context)
    torch.testing.assert_close(gate, torch.softmax(cam.head_gate(context), dim=-1))
    legacy = ContextAwareAttention(sequence_size=6, context_size=5, hidden_size=8, num_heads=4, gate_input="projected")
    _, _, gate = legacy(sequence, context)
    torch.testing.assert_close(gate, torch.softmax(legacy.head_gate(legacy.context_projection(context)), dim=-1))
    with pytest.raises(ValueError, match="gate_input='raw' is unknown"):
        ContextAwareAttention(6, 5, 8, 4, gate_input="raw")
    with pytest.raises(A2GenConfigError, match="cam_gate_input='raw' is unknown"):
        tiny_config("iag", cam_gate_input="raw")


@pytest.mark.parametrize("generator", GENERATORS)
def test_checkpoint_written_before_cam_gate_input_loads_with_its_outputs(generator):
    """A config.json without the field loads as gate_input="projected", with the outputs it gave when saved."""
    folder = LEGACY_CHECKPOINTS / generator
    assert "cam_gate_input" not in json.loads((folder / "config.json").read_text())
    model = A2GenForActionGeneration.from_pretrained(folder).eval()
    assert model.config.cam_gate_input == "projected"
    expected = json.loads((folder / "expected_outputs.json").read_text())
    batch = {name: torch.tensor(value) for name, value in expected["inputs"].items()}
    inputs = {name: value for name, value in batch.items() if not name.startswith("label")}
    with torch.no_grad():
        prediction = model.predict_actions(**inputs)
        output = model(**batch)
    tolerance = dict(rtol=1e-5, atol=1e-5)
    if generator == "iag":  # EAG's predict_actions itself changed since (it feeds back only continuing actions)
        torch.testing.assert_close(
            prediction.action_probabilities, torch.tensor(expected["action_probabilities"]), **tolerance
        )
        torch.testing.assert_close(prediction.expected_times, torch.tensor(expected["expected_times"]), **tolerance)
    torch.testing.assert_close(output.logits, torch.tensor(expected["logits"]), **tolerance)
    assert output.loss.item() == pytest.approx(expected["loss"], rel=1e-5)
    # Saved again, the folder says which gate it has, so it loads the same way with any later default.
    assert A2GenConfig.from_dict(model.config.to_dict()).cam_gate_input == "projected"


def reference_cam(cam, sequence, context, mask=None, causal=False):
    """CAM written out from the spec, one head at a time."""
    projected, projected_context = cam.sequence_projection(sequence), cam.context_projection(context)
    queries = cam.query_from_sequence(projected) + cam.query_from_context(projected_context)[:, None]
    keys, values = cam.key(projected), cam.value(projected)
    gate_input = context if cam.gate_input == "context" else projected_context
    gate = torch.softmax(cam.head_gate(gate_input), dim=-1)
    length, size = sequence.shape[1], cam.head_size
    allowed = torch.ones(sequence.shape[0], length, length, dtype=torch.bool)
    if causal:
        allowed &= torch.ones(length, length, dtype=torch.bool).tril()
    if mask is not None:
        allowed &= mask.bool()[:, None, :]
    output = projected_context[:, None].expand(-1, length, -1).clone()
    for head in range(cam.num_heads):
        part = slice(head * size, (head + 1) * size)
        scores = queries[..., part] @ keys[..., part].transpose(1, 2) / size**0.5
        weights = torch.softmax(scores.masked_fill(~allowed, -1e9), dim=-1) * allowed
        head_output = weights @ values[..., part] @ cam.head_output_weight[head] + cam.head_output_bias[head]
        output = output + gate[:, head, None, None] * head_output
    if mask is not None:
        output = output * mask[..., None]
    return output


@pytest.mark.parametrize("gate_input", ["context", "projected"])
@pytest.mark.parametrize("length", [6, 40])  # the short-sequence kernel, then batched matrix products
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("head_size", [None, 7])  # the heads split d = 16, or each has its own 7 (28 in all)
def test_cam_equals_the_spec_written_out(gate_input, length, causal, head_size):
    torch.manual_seed(0)
    cam = ContextAwareAttention(
        sequence_size=6, context_size=5, hidden_size=16, num_heads=4, gate_input=gate_input, head_size=head_size
    )
    assert cam.key.out_features == 4 * (head_size or 4)
    torch.nn.init.normal_(cam.head_gate.weight)
    sequence, context = torch.randn(3, length, 6, requires_grad=True), torch.randn(3, 5)
    mask = torch.ones(3, length)
    mask[0, length // 2 :] = 0
    mask[2] = 0  # an empty sequence
    reference = reference_cam(cam, sequence, context, mask, causal)
    with torch.no_grad():  # short sequences take the loop kernel without autograd
        fast, fast_probabilities, _ = cam(sequence, context, mask, causal=causal)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)
    output, probabilities, _ = cam(sequence, context, mask, causal=causal)
    torch.testing.assert_close(output, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast_probabilities, probabilities, rtol=1e-5, atol=1e-6)
    assert probabilities.shape == (3, 4, length, length)
    # Gradients reach the inputs and the returned probabilities alike.
    probabilities.retain_grad()
    (output.sum() + probabilities.sum()).backward()
    assert sequence.grad is not None and torch.isfinite(sequence.grad).all()
    assert probabilities.grad is not None
