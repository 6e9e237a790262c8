"""
Attention over many short sequences, summed over the query positions, with a hand-written backward.

CAM_act (HSE level 1) attends over each history item's few action events (E <= 16) and HSE then sums its outputs
over the events. Written as batched `(E x E)` matrix products, a training step spends most of its time in the
overhead of hundreds of thousands of tiny products and in torch's softmax over a last dimension of 6. Here every
tensor is laid out with the batch innermost, `(heads, head_size, L, B)`, so each step of the short loops over the
head size, the keys and the queries is one long vectorised multiply-add; and because only the sum over query
positions is needed, the attention's value sums are formed once per sequence instead of once per position:

    pooled[h, :, b] = sum_j col[h, j, b] v[h, :, j, b],   col[h, j, b] = sum_i w[i, b] P[h, i, j, b]

with ``P`` the masked softmax of ``q k^T`` over the keys j and ``w`` the query weights (1 at real positions). The
backward is the textbook one of softmax attention, in the same layout (checked against autograd with
``torch.autograd.gradcheck`` in tests/test_attention_kernels.py).
"""

from __future__ import annotations

import math

import torch

# Shifted scores are clamped before ``exp``. A CPU's vectorised ``exp`` takes a slow path, 10-400x slower per
# element, where its result is subnormal or 0 (inputs below about -87.3 in fp32), and every masked key's shifted score
# (``finfo.min`` minus the row's maximum) and most scores of sharp attention are far below that; multiply-adds with
# subnormal operands are about 60x slower too (both measured on this project's CPU). For a softmax (the exponentials
# are divided by a sum that holds the row's largest term, 1), ``exp(-70)`` = 4e-31 adds nothing visible, and the
# normalised weights and their products with values above about 5e-7 stay normal numbers.
EXP_FLOOR = -70.0


def shifted_exp(shifted: torch.Tensor, inplace: bool = False, normalised: bool = False) -> torch.Tensor:
    """
    ``exp`` of max-shifted scores (all <= 0) without ``exp``'s slow path (:data:`EXP_FLOOR`).

    ``normalised=True`` (the caller divides by the sum, as a softmax does): arguments below :data:`EXP_FLOOR` are
    raised to it. Otherwise (the factors of CAM_item's pooled attention, whose normalisers can legitimately be tiny
    and are guarded against underflow) only arguments below ``log(tiny) + 1`` are raised to it, in fp32 and fp64, so
    every exponential stays a normal number and nothing the guard needs changes. ``inplace=True`` overwrites
    ``shifted`` (a temporary without gradient) instead of allocating.
    """
    if normalised:
        floor = EXP_FLOOR
    else:
        floor = _TINY_EXP_FLOORS.get(shifted.dtype, -math.inf)
    if inplace:
        return shifted.clamp_min_(floor).exp_()
    return shifted.clamp_min(floor).exp()


# log(tiny) + 1 per float type: its exp is a normal number (3e-38 in fp32).
_TINY_EXP_FLOORS = {dtype: math.log(torch.finfo(dtype).tiny) + 1 for dtype in (torch.float32, torch.float64)}


def shifted_exp_(scores: torch.Tensor, dim: int) -> torch.Tensor:
    """In place: ``exp(scores - max over dim)`` for a softmax over ``dim``, floored at :data:`EXP_FLOOR`."""
    return shifted_exp(scores.sub_(scores.amax(dim, keepdim=True)), inplace=True, normalised=True)


def small_softmax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over a short dimension (a few heads or classes; the last by default), in at least fp32: written out,
    because torch's softmax kernel is several times slower on CPU when the last dimension is this short."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    exponentials = shifted_exp(logits - logits.detach().amax(dim=dim, keepdim=True), normalised=True)
    return exponentials / exponentials.sum(dim=dim, keepdim=True)


def _scores(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """`(h, dh, L, B)` queries and keys -> scores `(h, L_query, L_key, B)`, one multiply-add per head component."""
    scores = queries[:, 0].unsqueeze(2) * keys[:, 0].unsqueeze(1)
    for component in range(1, queries.shape[1]):
        scores.addcmul_(queries[:, component].unsqueeze(2), keys[:, component].unsqueeze(1))
    return scores


# Added to the scores of masked keys: far below any real score, so the row maximum is a real key's and their shifted
# exponentials floor at EXP_FLOOR like those of the finfo.min a masked_fill_ would write, and far enough from the
# float limits that adding a score to it never overflows (masked rows then come out the same, to the bit).
MASKED_KEY_BIAS = -1e30


def _masked_softmax_(scores: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """In place: softmax over the keys (dim 2) of `(h, L, L, B)` scores; a query with no real key gets zeros."""
    length, batch = key_mask.shape
    visible = key_mask.view(1, 1, length, batch)
    # An added (L, B) bias, not masked_fill_: with a mask broadcast over heads and queries masked_fill_ is about 6x
    # slower on a CPU (12 against 1.8 ms for 3.7 M scores, one thread).
    scores.add_(key_mask.logical_not().to(scores.dtype).mul_(MASKED_KEY_BIAS).view(1, 1, length, batch))
    shifted_exp_(scores, 2)
    scores.div_(scores.sum(2, keepdim=True))
    return scores.mul_(visible)


class PooledShortAttention(torch.autograd.Function):
    """
    `sum_i w_i softmax_j(q_i . k_j) v_j` for B short sequences at once, with `q = (sequence_queries +
    context_queries) * scale`.

    Inputs: ``projected`` `(3, heads, head_size, L, B)`, the sequence part of the queries, the keys and the values
    (one tensor, so the backward writes one gradient buffer instead of stacking three); ``context_queries``
    `(heads, head_size, B)`, added to every position's query; ``key_mask`` `(L, B)` bool (true at real keys);
    ``query_weights`` `(L, B)` (1 at real query positions, 0 at padding; no other values); ``scale``, a number.
    Output: `(heads, head_size, B)`. Gradients flow to ``projected`` and ``context_queries``.
    """

    @staticmethod
    def forward(ctx, projected, context_queries, key_mask, query_weights, scale):
        queries = (projected[0] + context_queries.unsqueeze(2)).mul_(scale)
        keys, values = projected[1], projected[2]
        length, batch = key_mask.shape
        # The weights are 0 or 1, so the rows of padded queries are zeroed in place: w_i P[i, j] serves the column
        # sums here and, as w_i^2 = w_i, the softmax backward below, which then needs no multiply by w.
        probabilities = _masked_softmax_(_scores(queries, keys), key_mask).mul_(query_weights.view(1, length, 1, batch))
        column_weights = probabilities.sum(1)  # (h, L_key, B)
        pooled = column_weights[:, 0].unsqueeze(1) * values[:, :, 0]
        for key in range(1, length):
            pooled.addcmul_(column_weights[:, key].unsqueeze(1), values[:, :, key])
        ctx.save_for_backward(projected, queries, probabilities, column_weights, query_weights)
        ctx.scale = scale
        return pooled

    @staticmethod
    def backward(ctx, grad_pooled):
        projected, queries, probabilities, column_weights, query_weights = ctx.saved_tensors
        keys, values = projected[1], projected[2]
        # The caller's permuted output gives a gradient strided along the batch; every product below broadcasts it
        # over positions, which runs several times faster with the batch contiguous (as every other operand is).
        grad_pooled = grad_pooled.contiguous()
        length = query_weights.shape[0]
        grad = torch.empty_like(projected)
        grad_queries, grad_keys, grad_values = grad.unbind(0)
        torch.mul(column_weights.unsqueeze(1), grad_pooled.unsqueeze(2), out=grad_values)
        grad_columns = values[:, 0] * grad_pooled[:, 0].unsqueeze(1)  # (h, L_key, B)
        for component in range(1, values.shape[1]):
            grad_columns.addcmul_(values[:, component], grad_pooled[:, component].unsqueeze(1))
        # Softmax backward: dS = P * (dP - sum_j P dP), with dP[i, j] = w_i * grad_columns[j]; the saved
        # probabilities are w_i P[i, j] (w in {0, 1}), which gives the same dS.
        row_terms = (probabilities * grad_columns.unsqueeze(1)).sum(2)  # (h, L_query, B)
        grad_scores = (grad_columns.unsqueeze(1) - row_terms.unsqueeze(2)).mul_(probabilities)
        torch.mul(grad_scores[:, :, 0].unsqueeze(1), keys[:, :, 0].unsqueeze(2), out=grad_queries)
        for key in range(1, length):
            grad_queries.addcmul_(grad_scores[:, :, key].unsqueeze(1), keys[:, :, key].unsqueeze(2))
        grad_queries.mul_(ctx.scale)
        torch.mul(grad_scores[:, 0].unsqueeze(1), queries[:, :, 0].unsqueeze(2), out=grad_keys)
        for query in range(1, length):
            grad_keys.addcmul_(grad_scores[:, query].unsqueeze(1), queries[:, :, query].unsqueeze(2))
        return grad, grad_queries.sum(2), None, None, None


def pooled_short_attention(
    projected: torch.Tensor, context_queries: torch.Tensor, mask: torch.Tensor, scale: float
) -> torch.Tensor:
    """
    Softmax attention of each real position over the real positions, summed over the real query positions.

    Args:
        projected: `(3, heads, head_size, L, B)`: the sequence part of the queries, the keys and the values; any
            float dtype (computed in at least fp32).
        context_queries: `(heads, head_size, B)`, the part of the queries every position of a sequence shares.
        mask: `(L, B)`, true at real positions.
        scale: the score scale (``1 / sqrt(head_size)``), applied to the queries.
    Returns:
        `(heads, head_size, B)` in at least fp32.
    """
    dtype = torch.promote_types(projected.dtype, torch.float32)
    mask = mask.bool()
    # Contiguous context queries (callers pass a transposed view): they are broadcast over every position.
    context_queries = context_queries.to(dtype).contiguous()
    return PooledShortAttention.apply(projected.to(dtype), context_queries, mask, mask.to(dtype), scale)
