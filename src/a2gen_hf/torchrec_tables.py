"""TorchRec as the optional engine for A2Gen's id tables (users, items, item side features).

The default engine keeps each id table as an ``nn.Embedding`` on every device (Accelerate's data parallelism copies it
to every process). When the tables outgrow one device, :func:`use_torchrec_tables` swaps each table of a model's
:class:`~a2gen_hf.modeling_a2gen.A2GenFeatureEmbeddings` for a :class:`TorchRecIdTable`: the same rows in a TorchRec
``EmbeddingCollection``, called exactly like the ``nn.Embedding`` it replaces, so the model's math is unchanged.
:func:`shard_model` then hands the model to TorchRec's ``DistributedModelParallel``, which shards the tables
(row-wise or table-wise) over the processes of the default process group and updates them with a fused, row-wise
optimizer in the backward pass; the dense weights are replicated with DDP as usual.

Checkpoints stay plain: a swapped model's ``state_dict`` names each table ``...item_embeddings.weight`` as the
``nn.Embedding`` did, so ``save_pretrained`` writes the usual safetensors, ``from_pretrained`` loads them without
TorchRec, and a plain checkpoint loads into the TorchRec layout. A sharded model's tables are gathered with
:func:`plain_state_dict`.

TorchRec is optional: install it as ``docs/training.md`` says (``pip install -e ".[torchrec]"`` then
``pip install --no-deps torchrec==1.8.0``). Nothing here imports it until a function is called.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
from torch import nn

TABLE_NAMES = ("user_embeddings", "item_embeddings", "side_feature_embeddings")
# The optimizers TorchRec's fused CPU kernels run (fbgemm's CPU table-batched embeddings); "adam" runs on GPUs only.
FUSED_OPTIMIZERS = ("sgd", "adagrad", "rowwise_adagrad", "adam")
SHARDING_TYPES = ("row_wise", "table_wise")
_FEATURE = "ids"
_INSTALL = 'pip install -e ".[torchrec]" && pip install --no-deps torchrec==1.8.0'


def is_torchrec_available() -> bool:
    """Whether ``torchrec`` and ``fbgemm_gpu`` can be imported."""
    return importlib.util.find_spec("torchrec") is not None and importlib.util.find_spec("fbgemm_gpu") is not None


def _require_torchrec() -> None:
    if not is_torchrec_available():
        raise ImportError(f"The TorchRec engine needs torchrec 1.8.0 and fbgemm-gpu-cpu 1.8.0; install them with `{_INSTALL}`.")


class TorchRecIdTable(nn.Module):
    """
    One id table in a TorchRec ``EmbeddingCollection``, called like ``nn.Embedding(num_embeddings, embedding_dim,
    padding_idx=0)``: ids `(...)` long -> `(..., embedding_dim)`. Id 0 is padding: its output is zero and its row
    gets no gradient (as ``padding_idx=0`` does, with the padding row kept at zero). The state dict holds one tensor,
    ``weight``, as ``nn.Embedding``'s does. An id outside ``[0, num_embeddings)`` is refused with a ValueError naming
    the table, the id and the range (:func:`check_ids_in_range`), sharded or not: a sharded table's fbgemm lookup
    only logs such an id and reads row 0 in its place.
    """

    def __init__(self, name: str, num_embeddings: int, embedding_dim: int, device: torch.device | str = "cpu"):
        _require_torchrec()
        from torchrec import EmbeddingCollection, EmbeddingConfig

        super().__init__()
        self.table_name, self.num_embeddings, self.embedding_dim = name, num_embeddings, embedding_dim
        table = EmbeddingConfig(name=name, embedding_dim=embedding_dim, num_embeddings=num_embeddings, feature_names=[_FEATURE])
        self.collection = EmbeddingCollection(tables=[table], device=torch.device(device))
        self._register_state_dict_hook(TorchRecIdTable._plain_keys)
        self._register_load_state_dict_pre_hook(self._collection_keys)

    @property
    def _inner_key(self) -> str:
        return f"collection.embeddings.{self.table_name}.weight"

    @property
    def weight(self) -> torch.Tensor:
        """The table `(num_embeddings, embedding_dim)` while it is not sharded (dtype and device of its rows)."""
        return self.collection.embeddings[self.table_name].weight

    @staticmethod
    def _plain_keys(module: TorchRecIdTable, state_dict: dict, prefix: str, local_metadata: Any) -> None:
        inner = prefix + module._inner_key
        if inner in state_dict:
            state_dict[prefix + "weight"] = state_dict.pop(inner)

    def _collection_keys(self, state_dict: dict, prefix: str, *args: Any) -> None:
        if prefix + "weight" in state_dict:
            state_dict[prefix + self._inner_key] = state_dict.pop(prefix + "weight")

    @property
    def _rows_dtype(self) -> torch.dtype | None:
        """The dtype of the table's rows while it is not sharded (None once sharded: TorchRec owns them)."""
        embeddings = getattr(self.collection, "embeddings", None)
        return embeddings[self.table_name].weight.dtype if embeddings is not None else None

    def forward(self, ids: torch.LongTensor) -> torch.Tensor:
        from torchrec import KeyedJaggedTensor

        check_ids_in_range(ids, self.num_embeddings, self.table_name)
        flat = ids.reshape(-1).contiguous()  # fbgemm reads the values as laid out: a strided or expanded view of ids
        # (one user repeated for its candidates) would be read as other, garbage, ids
        # No ids (a new user's history, no history items): TorchRec cannot look up nothing, so the padding row is read
        # and dropped; every process still calls the collection, as a sharded table's collectives need.
        looked_up = flat if flat.numel() else flat.new_zeros(1)
        features = KeyedJaggedTensor.from_lengths_sync(
            keys=[_FEATURE], values=looked_up, lengths=torch.ones_like(looked_up, dtype=torch.int32)
        )
        rows = self.collection(features)[_FEATURE].values()[: flat.numel()]
        dtype = self._rows_dtype  # fbgemm's lookups give float32 rows for a bf16 / fp16 table
        if dtype is not None and rows.dtype != dtype:
            rows = rows.to(dtype)
        rows = rows * (flat != 0).unsqueeze(-1).to(rows.dtype)
        return rows.reshape(*ids.shape, self.embedding_dim)


def check_ids_in_range(ids: torch.Tensor, num_embeddings: int, table_name: str) -> None:
    """
    Refuse `ids` outside ``[0, num_embeddings)`` with a ValueError naming the table, the first such id and the range.
    Unsharded, torch raised a bare ``IndexError: index out of range in self`` (``RuntimeError`` for -1); sharded,
    fbgemm's bounds check set the id to 0 and logged it only, so the lookup silently read row 0 (the padding mask,
    built from the id, let the gradient reach that row). One check (and one device sync) per lookup; the model's
    inputs are range-checked before any lookup too, so this guards direct calls and ids made inside a model.
    """
    if ids.numel() == 0:
        return
    outside = (ids < 0) | (ids >= num_embeddings)
    if bool(outside.any()):
        position = tuple(int(index) for index in outside.nonzero()[0])
        bad = int(ids[position])
        where = f" (at position {list(position)} of ids of shape {list(ids.shape)})" if ids.dim() else ""
        raise ValueError(
            f"TorchRec table {table_name!r}: id {bad}{where} is outside its rows 0 .. {num_embeddings - 1} "
            f"(num_embeddings {num_embeddings}; 0 is padding). Map the ids into the table (the tokenizer's buckets) "
            "or give the table more rows; a sharded table would read row 0 in its place."
        )


def _id_table_owners(model: nn.Module) -> list[nn.Module]:
    """The modules that hold A2Gen's id tables (``A2GenFeatureEmbeddings``, in A2Gen, MMoE and PLE)."""
    from .modeling_a2gen import A2GenFeatureEmbeddings

    return [module for module in model.modules() if isinstance(module, A2GenFeatureEmbeddings)]


@torch.no_grad()
def use_torchrec_tables(model: nn.Module) -> nn.Module:
    """
    Swap every trainable id table of `model` (A2Gen, MMoE or PLE) for a :class:`TorchRecIdTable` holding the same
    rows, in place; returns `model`. Outputs are unchanged for the same weights. A frozen table (``requires_grad``
    False: an id-free model's, or one frozen by hand) stays an ``nn.Embedding``: TorchRec's tables always train, and
    there is nothing for its optimizer to update.
    """
    _require_torchrec()
    owners = _id_table_owners(model)
    if not owners:
        raise ValueError(f"{type(model).__name__} has no A2GenFeatureEmbeddings: nothing to move to TorchRec.")
    for owner_index, owner in enumerate(owners):
        for name in TABLE_NAMES:
            table = getattr(owner, name, None)
            if not isinstance(table, nn.Embedding) or not table.weight.requires_grad:
                continue
            swapped = TorchRecIdTable(
                f"{name}_{owner_index}", table.num_embeddings, table.embedding_dim, device=table.weight.device
            ).to(table.weight.dtype)
            swapped.weight.copy_(table.weight)
            setattr(owner, name, swapped)
    return model


def torchrec_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The rows of the swapped tables (updated by TorchRec's fused optimizer, not by the dense one)."""
    return [p for module in model.modules() if isinstance(module, TorchRecIdTable) for p in module.parameters()]


def dense_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every trainable weight of `model` but the swapped tables: give these to the usual optimizer."""
    tables = {id(p) for p in torchrec_parameters(model)}
    return [p for p in model.parameters() if id(p) not in tables and p.requires_grad]


def _fused_optimizer(name: str, learning_rate: float) -> tuple[type, dict[str, Any]]:
    import torchrec.optim as torchrec_optim

    choices = {
        "sgd": (torch.optim.SGD, {"lr": learning_rate}),
        "adagrad": (torch.optim.Adagrad, {"lr": learning_rate}),
        "rowwise_adagrad": (torchrec_optim.RowWiseAdagrad, {"lr": learning_rate}),
        "adam": (torch.optim.Adam, {"lr": learning_rate}),
    }
    if name not in choices:
        raise ValueError(f"fused optimizer {name!r} is not one of {', '.join(FUSED_OPTIMIZERS)}.")
    return choices[name]


def shard_model(
    model: nn.Module,
    sharding_type: str = "row_wise",
    optimizer: str = "rowwise_adagrad",
    learning_rate: float = 0.01,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """
    Swap `model`'s id tables for TorchRec tables (if not done yet) and wrap it in ``DistributedModelParallel`` over
    the default process group (``torch.distributed.init_process_group`` first; ``gloo`` on CPUs, ``nccl`` on GPUs):
    each table is sharded `sharding_type`-wise over the processes and updated in the backward pass by the fused
    `optimizer` at `learning_rate`; the dense weights are replicated (DDP) and need their own optimizer over
    ``dense_parameters(sharded.module)``. On CPUs fbgemm's fused kernels run ``sgd``, ``adagrad`` and
    ``rowwise_adagrad`` (``adam`` only on GPUs). Returns the ``DistributedModelParallel`` module.
    """
    _require_torchrec()
    import torch.distributed as dist
    from torchrec.distributed.model_parallel import DistributedModelParallel
    from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
    from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward

    if sharding_type not in SHARDING_TYPES:
        raise ValueError(f"sharding_type {sharding_type!r} is not one of {', '.join(SHARDING_TYPES)}.")
    if not dist.is_initialized():
        raise RuntimeError("shard_model needs torch.distributed: call init_process_group (gloo on CPUs) first.")
    device = torch.device(device)
    if optimizer == "adam" and device.type == "cpu":
        raise ValueError("TorchRec's fused Adam runs on GPUs only; on CPUs use sgd, adagrad or rowwise_adagrad.")
    optimizer_class, optimizer_kwargs = _fused_optimizer(optimizer, learning_rate)  # refused before any swap
    if not torchrec_parameters(model):
        use_torchrec_tables(model)
    apply_optimizer_in_backward(optimizer_class, torchrec_parameters(model), optimizer_kwargs)
    tables = [module.table_name for module in model.modules() if isinstance(module, TorchRecIdTable)]
    constraints = {name: ParameterConstraints(sharding_types=[sharding_type]) for name in tables}
    topology = Topology(world_size=dist.get_world_size(), compute_device=device.type)
    planner = EmbeddingShardingPlanner(topology=topology, constraints=constraints)
    plan = planner.collective_plan(model, None, dist.GroupMember.WORLD)
    return DistributedModelParallel(model, device=device, plan=plan)


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """
    The state dict of a sharded (``DistributedModelParallel``) or swapped model as the plain model names it, with
    every sharded table gathered in full. Collective: call it on every process; the tables are complete on rank 0
    (other ranks get empty tensors for them). Load it with ``A2GenForActionGeneration.load_state_dict`` or save it
    with ``save_pretrained(..., state_dict=...)``.
    """
    import torch.distributed as dist

    state = model.module.state_dict() if hasattr(model, "plan") else model.state_dict()
    plain = {}
    for key, value in state.items():
        key = key.removeprefix("_dmp_wrapped_module.").removeprefix("module.")
        if hasattr(value, "local_shards"):  # a ShardedTensor: gather it on rank 0
            full = torch.empty(value.size(), dtype=value.dtype) if dist.get_rank() == 0 else None
            value.gather(dst=0, out=full)
            value = full if full is not None else torch.empty(0, dtype=value.dtype)
        plain[key] = value.detach().cpu()
    return plain
