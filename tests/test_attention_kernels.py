"""The pooled attention kernels (issue 12): CAM's outputs summed inside CAM equal forward's outputs summed after."""

import pytest
import torch

from a2gen_hf.attention_kernels import PooledShortAttention, pooled_short_attention
from a2gen_hf.modeling_a2gen import ContextAwareAttention


def test_pooled_short_attention_gradients_match_autograd():
    torch.manual_seed(0)
    heads, head_size, length, batch = 2, 3, 5, 7
    projected = torch.randn(3, heads, head_size, length, batch, dtype=torch.float64, requires_grad=True)
    context_queries = torch.randn(heads, head_size, batch, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(length, batch) > 0.3
    mask[:, 0] = False  # one sequence without any real position
    assert torch.autograd.gradcheck(
        lambda p, c: PooledShortAttention.apply(p, c, mask, mask.double(), 0.7), (projected, context_queries)
    )


def test_pooled_short_attention_is_masked_softmax_attention_summed():
    torch.manual_seed(1)
    heads, head_size, length, batch = 3, 4, 6, 9
    projected = torch.randn(3, heads, head_size, length, batch)
    context_queries = torch.randn(heads, head_size, batch)
    mask = torch.rand(length, batch) > 0.4
    mask[0] = True
    queries, keys, values = (projected[0] + context_queries.unsqueeze(2)) * 0.5, projected[1], projected[2]
    scores = torch.einsum("hcib,hcjb->bhij", queries, keys).masked_fill(~mask.t()[:, None, None, :], float("-inf"))
    states = torch.softmax(scores, -1) @ values.permute(3, 0, 2, 1)  # (B, h, L, dh)
    expected = (states * mask.t()[:, None, :, None]).sum(2).permute(1, 2, 0)
    torch.testing.assert_close(pooled_short_attention(projected, context_queries, mask, 0.5), expected)


@pytest.mark.parametrize("length", [4, 40])  # the short kernel and the fused-attention path
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_summed_output_equals_forward_summed(length, dtype):
    torch.manual_seed(2)
    cam = ContextAwareAttention(sequence_size=10, context_size=6, hidden_size=8, num_heads=2).to(dtype)
    sequence = torch.randn(5, length, 10, dtype=dtype, requires_grad=True)
    context = torch.randn(5, 6, dtype=dtype, requires_grad=True)
    mask = torch.rand(5, length) > 0.5
    mask[0] = False  # an empty sequence sums to zero
    mask[1] = True
    expected = cam(sequence, context, mask)[0].sum(1)
    summed = cam.summed_output(sequence, context, mask)
    tolerance = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(summed, expected, **tolerance)
    assert summed[0].abs().max() == 0
    grads = torch.autograd.grad(expected.square().sum(), (sequence, context, cam.key.weight))
    pooled_grads = torch.autograd.grad(summed.square().sum(), (sequence, context, cam.key.weight))
    for grad, pooled_grad in zip(grads, pooled_grads):
        torch.testing.assert_close(pooled_grad, grad, **{"atol": 1e-4, "rtol": 1e-4} if tolerance else {})


@pytest.mark.parametrize("length", [6, 40])
def test_summed_output_under_bf16_autocast_keeps_softmax_in_fp32(length):
    torch.manual_seed(3)
    cam = ContextAwareAttention(sequence_size=10, context_size=6, hidden_size=8, num_heads=2)
    sequence, context = torch.randn(4, length, 10), torch.randn(4, 6)
    mask = torch.ones(4, length, dtype=torch.bool)
    expected = cam(sequence, context, mask)[0].sum(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        summed = cam.summed_output(sequence, context, mask)
    assert torch.isfinite(summed).all()
    torch.testing.assert_close(summed.float(), expected, atol=0.1, rtol=0.05)


def test_shifted_exp_floor_keeps_the_softmax_and_masked_keys_at_zero():
    """Scores of masked keys (finfo.min) are clamped before exp (its slow path); the softmax does not change."""
    from a2gen_hf.attention_kernels import EXP_FLOOR, shifted_exp_

    torch.manual_seed(3)
    scores = torch.randn(5, 6) * 10
    scores[:, 4:] = torch.finfo(torch.float32).min  # masked keys
    scores[0, 1] = -200.0  # a real key far below the row's maximum
    exponentials = shifted_exp_(scores.clone(), 1)
    assert exponentials.min() >= torch.exp(torch.tensor(EXP_FLOOR)) > 0
    probabilities = exponentials / exponentials.sum(1, keepdim=True)
    expected = torch.softmax(scores, 1)
    torch.testing.assert_close(probabilities, expected, rtol=1e-6, atol=1e-30)
    assert (probabilities[:, 4:] < 1e-30).all()
