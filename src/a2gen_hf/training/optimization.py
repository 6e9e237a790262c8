"""
Sparse embedding updates: the id tables' gradients hold only the rows a batch read, and one optimizer updates
those rows row-wise (lazy Adam) and the dense weights with ordinary AdamW.

Why: the user / item / side-feature tables hold almost every parameter (1,000,000 x 32 item rows by default), but a
batch of 256 examples with 100 history items reads at most ~26,000 rows. With dense gradients, backward writes a
full-size zero-filled gradient and AdamW reads and writes every row of every table at every step (and weight decay
shrinks rows no example used). With ``nn.Embedding(sparse=True)`` the gradient is a sparse COO tensor of the rows
read, and :class:`SparseAdamW` touches only those.

The pieces, each usable alone:

- :func:`id_tables` / :func:`set_sparse_embeddings`: which tables give sparse gradients and switching them (the
  switch is a flag of ``nn.Embedding``: weights, outputs and state-dict keys do not change).
- :class:`SparseAdamW`: ``torch.optim.AdamW`` for dense gradients, lazy row-wise AdamW for sparse ones, one
  optimizer with one state dict (the same keys as ``AdamW``: Accelerate's ``save_state`` and the Trainer save and
  restore it as usual).
- :func:`clip_grad_norm_`: ``torch.nn.utils.clip_grad_norm_`` cannot read sparse gradients; this one can.
- :func:`sparse_gradients_supported`: whether the process group can all-reduce sparse gradients (gloo can, NCCL
  cannot); the training loop falls back to dense updates where it cannot.

Another embedding backend (e.g. TorchRec's fused, row-wise optimizers) plugs in at the same two places: a function
like :func:`set_sparse_embeddings` that converts the tables found by :func:`id_tables`, and an optimizer factory
like :func:`a2gen_hf.training.loop.create_optimizer` that returns one optimizer for the whole model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.autograd.graph import increment_version
from torch.optim.adamw import adamw

from ..modeling_a2gen import A2GenFeatureEmbeddings
from ..torchrec_tables import torchrec_parameters

logger = logging.getLogger(__name__)

# Process-group backends whose all-reduce accepts sparse tensors (DDP then reduces sparse gradients itself).
SPARSE_ALLREDUCE_BACKENDS = ("gloo",)


def id_tables(model: nn.Module) -> list[nn.Embedding]:
    """The hashed-id tables of ``model`` (users, items, item side features) that can give sparse gradients."""
    tables: list[nn.Embedding] = []
    for module in model.modules():
        if isinstance(module, A2GenFeatureEmbeddings):
            tables.extend(module.id_tables())
    return tables


def uses_sparse_embeddings(model: nn.Module) -> bool:
    """True when any id table of ``model`` gives sparse gradients."""
    return any(table.sparse for table in id_tables(model))


def set_sparse_embeddings(model: nn.Module, enabled: bool) -> bool:
    """
    Make the id tables of ``model`` give sparse (``enabled``) or dense gradients for the coming backward passes.
    Weights, outputs, the state dict and ``model.config`` (what a saved model is built with) are unchanged, so a
    training run can switch for its own duration and checkpoints keep the model's setting. Call it before
    wrapping the model in DDP (DDP reads the flags when it is built).

    Returns:
        The previous setting (True when any table was sparse), to restore it after training.
    """
    previous = uses_sparse_embeddings(model)
    for table in id_tables(model):
        table.sparse = bool(enabled)
    if enabled and torchrec_parameters(model):
        logger.warning(
            "%s holds TorchRec tables (use_torchrec_tables): sparse updates apply to nn.Embedding tables only, and "
            "TorchRec's fused optimizer to a model sharded with shard_model, so this run's optimizer updates the "
            "TorchRec tables as dense weights (as sparse_embeddings=False would).", type(model).__name__,
        )
    return previous


def with_every_weight_in_the_graph(loss: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """
    ``loss`` plus 0 times one element of every trainable weight but the id tables: the same value and gradients, and
    every weight takes a (zero) gradient. DDP without ``find_unused_parameters`` (Accelerate's default, and what
    the graph search would cost at every step) waits for a gradient of every weight: a process whose batch leaves a
    weight out (histories that are all empty skip the history encoder: CAM's projections, the event embedding) would
    stall the next step's reduction ("Expected to have finished reduction in the prior iteration"). The id tables
    are read by every batch (user and target ids) and may give sparse gradients, so they are left as they are.
    """
    tables = {id(table.weight) for table in id_tables(model)}
    touched = [p.reshape(-1)[:1] for p in model.parameters() if p.requires_grad and id(p) not in tables]
    if not touched:
        return loss
    return loss + 0.0 * torch.cat([t.to(loss.dtype) for t in touched]).sum()


def sparse_gradients_supported(accelerator: Any | None = None) -> tuple[bool, str]:
    """
    Whether sparse embedding gradients work in this run, and why not. One process: yes. DDP: only when the process
    group's all-reduce takes sparse tensors, i.e. on gloo (CPU); NCCL raises "NCCL does not support all_reduce with
    sparse tensors". FSDP, DeepSpeed and XLA shard or flatten parameters and need dense gradients.
    """
    if accelerator is None or accelerator.num_processes == 1:
        if accelerator is not None and accelerator.distributed_type.value in ("DEEPSPEED", "FSDP", "XLA"):
            return False, f"{accelerator.distributed_type.value} needs dense gradients"
        return True, ""
    kind = accelerator.distributed_type.value
    if kind not in ("MULTI_CPU", "MULTI_GPU", "MULTI_XPU", "MULTI_NPU", "MULTI_MLU", "MULTI_SDAA", "MULTI_MUSA"):
        return False, f"{kind} needs dense gradients"
    backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else None
    if backend not in SPARSE_ALLREDUCE_BACKENDS:
        return False, f"the {backend} process group cannot all-reduce sparse gradients (gloo can)"
    return True, ""


def distinct_rows(indices: torch.Tensor, num_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """
    The distinct values of the row indices `(nnz,)` of a table with ``num_rows`` rows, in increasing order `(R,)`,
    and each index's position among them `(nnz,)`: ``torch.unique(indices, return_inverse=True)`` without its sort.
    A mask over the table's rows finds the distinct ones in O(rows + nnz); on a CPU through NumPy, whose
    ``flatnonzero`` is several times faster than ``torch.nonzero`` on a million-row mask.
    """
    if indices.device.type == "cpu":
        ids = indices.numpy()
        seen = np.zeros(num_rows, dtype=bool)
        seen[ids] = True
        rows = np.flatnonzero(seen)
        position = np.empty(num_rows, dtype=np.int64)
        position[rows] = np.arange(rows.size)
        return torch.from_numpy(rows), torch.from_numpy(position[ids])
    seen = torch.zeros(num_rows, dtype=torch.bool, device=indices.device)
    seen[indices] = True
    rows = seen.nonzero().squeeze(1)
    position = torch.empty(num_rows, dtype=torch.int64, device=indices.device)
    position[rows] = torch.arange(rows.numel(), device=indices.device)
    return rows, position[indices]


# Row gathers and writes of a CPU table through NumPy: ``take`` and fancy assignment copy whole rows, 1.3-1.8x
# faster than ``index_select`` / ``index_put_`` on a 1,000,000 x 32 table (dtypes NumPy knows; others use torch).
_NUMPY_DTYPES = (torch.float32, torch.float64, torch.float16)


def _numpy_rows(table: torch.Tensor, rows: torch.Tensor) -> bool:
    return table.device.type == "cpu" and table.dtype in _NUMPY_DTYPES and table.is_contiguous()


def gather_rows(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``table.index_select(0, rows)``: a new `(R, ...)` tensor of the rows `(R,)` of ``table`` (no autograd)."""
    if _numpy_rows(table, rows):
        return torch.from_numpy(table.detach().numpy().take(rows.numpy(), axis=0))
    return table.index_select(0, rows)


def write_rows(table: torch.Tensor, rows: torch.Tensor, values: torch.Tensor) -> None:
    """``table[rows] = values`` in place, for distinct ``rows`` `(R,)` and ``values`` `(R, ...)` (no autograd)."""
    if _numpy_rows(table, rows) and values.dtype == table.dtype:
        table.detach().numpy()[rows.numpy()] = values.numpy()
        increment_version(table)  # as an in-place torch op would: autograd then sees that the tensor changed
    else:
        table.index_put_((rows,), values)


def summed_rows(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """
    The distinct rows of a sparse row gradient (COO, sparse in dimension 0) and their summed values: `(R,)` row
    indices in increasing order and `(R, D)` values. Equal to ``grad.coalesce()``, but without its sort
    (:func:`distinct_rows`), several times faster on a CPU.
    """
    if grad.is_coalesced():
        return grad.indices()[0], grad.values()
    values = grad._values()
    rows, positions = distinct_rows(grad._indices()[0], grad.shape[0])
    # Most rows of a batch are read once: start from each row's first entry and add only the repeats (an
    # index_add_ of every entry is a serial scatter on a CPU, several times slower than this gather).
    entries = torch.arange(positions.numel(), device=positions.device)
    first = torch.full_like(rows, positions.numel()).scatter_reduce_(0, positions, entries, reduce="amin")
    summed = values.index_select(0, first)
    repeats = (first.index_select(0, positions) != entries).nonzero().squeeze(1)
    if repeats.numel():
        summed.index_add_(0, positions.index_select(0, repeats), values.index_select(0, repeats))
    return rows, summed


def coalesced(grad: torch.Tensor) -> torch.Tensor:
    """``grad.coalesce()`` through :func:`summed_rows` (no sort)."""
    if grad.is_coalesced():
        return grad
    rows, values = summed_rows(grad)
    return torch.sparse_coo_tensor(rows.unsqueeze(0), values, grad.shape, is_coalesced=True, check_invariants=False)


class SparseAdamW(torch.optim.AdamW):
    r"""
    ``torch.optim.AdamW`` that also takes sparse gradients (from ``nn.Embedding(sparse=True)``).

    Dense gradients get AdamW exactly as ``torch.optim.AdamW`` computes it (same code, ``foreach`` as given).
    A sparse gradient of a table updates only the rows it holds ("lazy" Adam, as ``torch.optim.SparseAdam`` and
    TensorFlow's ``LazyAdamOptimizer``): for each row r in the batch, with the table's step count t,

        m_r <- beta1 m_r + (1 - beta1) g_r          v_r <- beta2 v_r + (1 - beta2) g_r^2
        w_r <- w_r (1 - lr wd) - lr / (1 - beta1^t) * m_r / (sqrt(v_r / (1 - beta2^t)) + eps)

    Rows the batch did not read keep their weights and moments: no weight decay, and no momentum step (dense Adam
    keeps moving a row for a while after its last gradient; see docs/training.md). Duplicate indices are summed
    first. With every row in the gradient the update equals dense AdamW's: the read rows are gathered and updated by
    torch's own AdamW kernel (fused when the optimizer is), then written back.

    The state has AdamW's keys (``step``, ``exp_avg``, ``exp_avg_sq`` per parameter), so ``state_dict`` /
    ``load_state_dict`` work as for AdamW and a checkpoint can be resumed with either kind of gradient.
    ``amsgrad`` and ``maximize`` are not supported for sparse gradients.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ):
        super().__init__(
            params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
            foreach=foreach, fused=fused,
        )
        # A fused AdamW lets a GradScaler hand it the scale instead of unscaling the gradients; the sparse
        # gradients have no such path, so the scaler must unscale every gradient itself (fp16 on a GPU).
        self._step_supports_amp_scaling = False

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        sparse = [
            (group, param)
            for group in self.param_groups
            for param in group["params"]
            if param.grad is not None and param.grad.is_sparse
        ]
        if not sparse:
            super().step()
            return loss
        # AdamW's own step skips parameters without a gradient: hide the sparse ones from it, then update them.
        held = [param.grad for _, param in sparse]
        for _, param in sparse:
            param.grad = None
        try:
            super().step()
        finally:
            for (_, param), grad in zip(sparse, held):
                param.grad = grad
        for group in self.param_groups:
            params = [param for sparse_group, param in sparse if sparse_group is group]
            if params:
                self._sparse_step(group, params)
        return loss

    def _sparse_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        """Lazy AdamW on the rows of the sparse gradients of ``params`` (one parameter group): the rows are
        gathered, updated by torch's own AdamW kernel (fused when the group is) and written back."""
        if group["amsgrad"] or group["maximize"]:
            raise ValueError(
                "SparseAdamW: amsgrad and maximize are not supported for sparse gradients; turn them off or train "
                "the embedding tables with dense gradients (sparse_embeddings=False)."
            )
        touched, weights, gradients, exp_avgs, exp_avg_sqs, steps = [], [], [], [], [], []
        for param in params:
            rows, values = summed_rows(param.grad)
            state = self.state[param]
            if not state:
                # As AdamW does: a fused optimizer keeps its step count on the parameter's device.
                device = param.device if group["fused"] else None
                state["step"] = torch.tensor(0.0, dtype=torch.float32, device=device)
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            if rows.numel() == 0:
                state["step"] += 1
                continue
            touched.append((param, rows, state))
            weights.append(gather_rows(param, rows))
            gradients.append(values)
            exp_avgs.append(gather_rows(state["exp_avg"], rows))
            exp_avg_sqs.append(gather_rows(state["exp_avg_sq"], rows))
            steps.append(state["step"])
        if not touched:
            return
        beta1, beta2 = group["betas"]
        adamw(
            weights, gradients, exp_avgs, exp_avg_sqs, [], steps, foreach=group["foreach"],
            fused=group["fused"], amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"],
            weight_decay=group["weight_decay"], eps=group["eps"], maximize=False,
        )
        for (param, rows, state), weight, exp_avg, exp_avg_sq in zip(touched, weights, exp_avgs, exp_avg_sqs):
            write_rows(state["exp_avg"], rows, exp_avg)
            write_rows(state["exp_avg_sq"], rows, exp_avg_sq)
            write_rows(param, rows, weight)


def clip_grad_norm_(parameters: Iterable[torch.Tensor], max_norm: float, accelerator: Any | None = None) -> torch.Tensor:
    """
    The total L2 norm of the gradients of ``parameters`` (dense and sparse), clipped in place to ``max_norm``
    (``math.inf``: only measured), as ``torch.nn.utils.clip_grad_norm_`` does for dense gradients. With an
    ``accelerator`` the gradients are unscaled first (fp16), and distributed setups whose clipping Accelerate
    owns (DeepSpeed, FSDP, XLA) are left to ``accelerator.clip_grad_norm_``. Sparse gradients are coalesced in place.
    """
    parameters = [param for param in parameters if param.grad is not None]
    if not any(param.grad.is_sparse for param in parameters):
        if accelerator is not None:
            return accelerator.clip_grad_norm_(parameters, max_norm)
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    if accelerator is not None:
        if accelerator.distributed_type.value in ("DEEPSPEED", "FSDP", "XLA"):
            return accelerator.clip_grad_norm_(parameters, max_norm)
        accelerator.unscale_gradients()
    parts = []
    for param in parameters:
        if param.grad.is_sparse:
            param.grad = coalesced(param.grad)
            parts.append(param.grad.values())
        else:
            parts.append(param.grad)
    norms = [torch.linalg.vector_norm(part.detach(), dtype=torch.float32) for part in parts]
    total = torch.linalg.vector_norm(torch.stack([norm.to(parts[0].device) for norm in norms]))
    coefficient = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    if max_norm != float("inf"):
        for part in parts:
            part.detach().mul_(coefficient.to(part.device, part.dtype))
    return total
