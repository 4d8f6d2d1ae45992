"""Several processes through ``torchrun`` (paper §IV trains on two GPUs): DDP set-up from the
environment torchrun provides, a resumable DistributedSampler, small collective helpers.

One process per GPU (NCCL), or per CPU slot with gloo. Rank 0 alone logs and writes
checkpoints. Without torchrun's variables everything runs as a world of one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this World started the process group (and ends it: ``shutdown``)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> World:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR/PORT);
    a world of one when not launched by torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return World()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    owns = not dist.is_initialized()
    if owns:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return World(rank, world_size, local_rank, owns)


def shutdown(world: World) -> None:
    """End the process group if ``init_distributed`` started it."""
    if world.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def training_device(requested: str | None = None) -> torch.device:
    """The device a process trains on: ``requested``, else its local GPU, else the CPU. A bare
    "cuda" means this process's local GPU (torchrun's LOCAL_RANK)."""
    from csrinfer.devices import torch_device

    device = torch_device(requested)
    if device.type == "cuda" and device.index is None:
        device = torch_device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    return device


def all_reduce_mean(values: torch.Tensor, world: World) -> torch.Tensor:
    """Mean of a tensor over processes (identity for a world of one)."""
    if world.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= world.world_size
    return values


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


class ResumableSampler(DistributedSampler):
    """DistributedSampler that can start an epoch part-way (``set_epoch(epoch, start)``), so a
    resumed run sees exactly the samples an uninterrupted one would.

    Its order depends only on (seed, epoch), like DistributedSampler's; it is also used for a
    world of one.
    """

    def __init__(self, dataset, world: World, shuffle: bool = True, seed: int = 0):
        super().__init__(dataset, num_replicas=world.world_size, rank=world.rank, shuffle=shuffle, seed=seed,
                         drop_last=False)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """``start``: samples of this process to skip at the beginning of the epoch."""
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self):
        return iter(list(super().__iter__())[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start
