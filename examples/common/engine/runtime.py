"""Where a run executes: the device, the ``torchrun`` process group, and rank-0 logging.

One process, or many under ``torchrun`` (DistributedDataParallel; NCCL on GPUs, Gloo on CPU). Only rank 0
prints and writes: :func:`log` is the one rank-0 printer of the examples (the dataset scripts use it too, so
a data report appears once under ``torchrun``). It reads ``RANK`` from the environment, so it works before
the process group exists.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


def is_main_process() -> bool:
    """Rank 0, or no ``torchrun`` at all: the process that prints and writes."""
    return int(os.environ.get("RANK", "0")) == 0


def log(message: str, *, error: bool = False) -> None:
    """Print ``message`` on rank 0 only (to stderr with ``error``), flushed at once."""
    if is_main_process():
        print(message, file=sys.stderr if error else sys.stdout, flush=True)


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def setup_runtime(device_arg: str | None) -> Runtime:
    """Single process, or the process group ``torchrun`` describes in the environment."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_arg is None:
        device_arg = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_arg)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda requested but CUDA is not available")
        if world_size > 1 or device.index is None:
            device = torch.device("cuda", local_rank if world_size > 1 else (device.index or 0))
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Runtime(device, rank, world_size, local_rank)


def teardown_runtime(rt: Runtime) -> None:
    if rt.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(rt: Runtime, tensor: Tensor) -> Tensor:
    """The sum over ranks (the tensor itself in a single process)."""
    if rt.distributed:
        device = rt.device if rt.device.type == "cuda" else torch.device("cpu")
        t = tensor.to(device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.to(tensor.device)
    return tensor


__all__ = ["Runtime", "all_reduce_sum", "is_main_process", "log", "setup_runtime", "teardown_runtime"]
