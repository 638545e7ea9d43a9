"""torchrun / DistributedDataParallel set-up: one process per device, any number of nodes."""

from __future__ import annotations

import dataclasses
import logging
import os

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, and its ``local_rank`` on the node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files, logs progress and prints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """True when the environment variables torchrun sets are present."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun prepared (NCCL on CUDA, gloo elsewhere); no-op otherwise."""
    if not launched_by_torchrun():
        return DistInfo()
    info = DistInfo(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ["LOCAL_RANK"]),
    )
    if info.world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
        log.info("rank %d/%d joined (%s)", info.rank, info.world_size, backend)
    return info


def shutdown_distributed() -> None:
    """Leave the process group, if any."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
