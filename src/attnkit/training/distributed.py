"""Glue to PyTorch's own distributed engine: process groups, DDP and FSDP wrapping.

Launch with ``torchrun --nproc_per_node=N -m attnkit.cli train ...``; torchrun sets ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE``. Backend: NCCL on CUDA, gloo on CPU. Every rank computes
the same global batch slice layout, so N processes reproduce the single-process loss curve.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from attnkit.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size`` and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes logs and checkpoints."""
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0, option: str = "train.device") -> torch.device:
    """``"auto"`` picks CUDA when present; ``"cuda"`` uses the GPU of this local rank.
    ``option`` names the setting in errors."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{option} is 'cuda' but no CUDA device is available; use 'cpu' or 'auto'")
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise ConfigError(f"{option} must be 'auto', 'cpu' or 'cuda', got {name!r}")
    return torch.device("cpu")


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes in the environment (single process otherwise)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistInfo(device=resolve_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world_size, local_rank, dev)


def wrap_model(model: nn.Module, strategy: str, info: DistInfo) -> nn.Module:
    """Wrap for data parallelism: ``"ddp"`` (replicated) or ``"fsdp"`` (fully sharded, FSDP2).

    With FSDP every layer of each stack is sharded on its own, then the root.
    """
    if info.world_size == 1:
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
    if strategy == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(info.device.type, (info.world_size,))
        for module in model.modules():
            if isinstance(module, nn.ModuleList):
                for layer in module:
                    fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model
    raise ConfigError(f"train.distributed must be 'ddp' or 'fsdp', got {strategy!r}")


def sum_over_ranks(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The sum of a tensor over all ranks (a no-op for one process)."""
    if info.world_size > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    """Leave the process group (call once, at the end of a run)."""
    if info.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
