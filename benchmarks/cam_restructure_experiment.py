"""Experiment: what a restructured CAM forward would give a training step (docs/performance.md, "What is left").

The same math as ``ContextAwareAttention.forward`` without a cache or causal mask, restructured: one fused Q/K/V
matmul, the scale folded into the queries, the key mask broadcast, and the head gate applied before the per-head
output projection (one (L, H*dh) x (H*dh, d) product instead of H full-width projections and a gate-weighted sum).
It monkeypatches the class in this process only, checks that the loss is unchanged and times interleaved training
steps of both versions. A measurement for whoever changes CAM, not a code path of the package.

    OMP_WAIT_POLICY=PASSIVE GEN=iag FILL=1.0 REPS=3 python benchmarks/cam_restructure_experiment.py
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from profile_training_step import training_batch  # noqa: E402

from a2gen_hf import A2GenConfig, A2GenForActionGeneration  # noqa: E402
from a2gen_hf.modeling_a2gen import ContextAwareAttention  # noqa: E402

original = ContextAwareAttention.forward

def restructured(self, sequence, context, sequence_mask=None, causal=False, cache=None):
    if cache is not None or causal:
        return original(self, sequence, context, sequence_mask, causal, cache)
    b, length, _ = sequence.shape
    h, dh = self.num_heads, self.head_size
    projected = self.sequence_projection(sequence)
    projected_context = self.context_projection(context)
    weight = torch.cat([self.query_from_sequence.weight, self.key.weight, self.value.weight])
    bias = torch.cat([self.query_from_sequence.bias, self.key.bias, self.value.bias])
    qkv = F.linear(projected, weight, bias).view(b, length, 3, h, dh)
    q = (qkv[:, :, 0] + self.query_from_context(projected_context).view(b, 1, h, dh)).transpose(1, 2)
    k, v = qkv[:, :, 1].transpose(1, 2), qkv[:, :, 2].transpose(1, 2)
    scores = (q * (dh ** -0.5)) @ k.transpose(-1, -2)
    if sequence_mask is not None:
        key_mask = sequence_mask.bool()[:, None, None, :]
        scores = scores.masked_fill(~key_mask, torch.finfo(scores.dtype).min)
    probabilities = torch.softmax(scores, -1)
    if sequence_mask is not None:
        probabilities = probabilities * key_mask.any(-1, keepdim=True)
    states = self.attention_dropout(probabilities) @ v  # (b, h, l, dh)
    gate = torch.softmax(self.head_gate(projected_context), -1)
    gated = (states * gate[:, :, None, None]).transpose(1, 2).reshape(b, length, h * dh)
    residual = (gate @ self.head_output_bias + projected_context).unsqueeze(1)
    out = gated @ self.head_output_weight.reshape(h * dh, -1) + residual
    if sequence_mask is not None:
        out = out * sequence_mask.unsqueeze(-1).to(out.dtype)
    return out, probabilities, gate

def main() -> None:
    torch.set_num_threads(2)
    fill = float(os.environ.get("FILL", "1.0"))
    args = argparse.Namespace(batch_size=256, items=100, events=6, fill=fill, left_pad=False)
    config = A2GenConfig(generator=os.environ.get("GEN", "iag"), item_buckets=65536, user_buckets=16384)
    torch.manual_seed(0)
    model = A2GenForActionGeneration(config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    batch = training_batch(config, args)
    versions = {"original": original, "restructured": restructured}
    losses = {}
    with torch.no_grad():
        for name, forward in versions.items():
            ContextAwareAttention.forward = forward
            losses[name] = model(**batch).loss.item()
    print("loss", losses)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        optimizer.step()

    times = {name: [] for name in versions}
    for forward in versions.values():  # warm-up
        ContextAwareAttention.forward = forward
        step()
    for _ in range(int(os.environ.get("REPS", "4"))):
        for name, forward in versions.items():
            ContextAwareAttention.forward = forward
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    ContextAwareAttention.forward = original
    print("load average", os.getloadavg(), "threads", torch.get_num_threads())
    base = statistics.median(times["original"])
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"{name}: {median * 1e3:.0f} ms/step, {256 / median:.0f} examples/s, {base / median:.2f}x")


if __name__ == "__main__":
    main()
