"""Sampling: deterministic per (seed, epoch), sharded across ranks, so a resumed run sees the same batches."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """Shuffled (or class-weighted, with replacement) indices for one rank, a pure function of (seed, epoch).

    With ``weights`` the epoch draws ``len(weights)`` indices with replacement in proportion to them
    (oversampling); otherwise a permutation. The list is padded to a multiple of the world size and
    split round-robin, as ``DistributedSampler`` does.
    """

    def __init__(
        self,
        size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        weights: Tensor | None = None,
    ) -> None:
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.shuffle, self.weights, self.epoch = shuffle, weights, 0
        self.per_rank = math.ceil(size / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.weights is not None:
            order = torch.multinomial(self.weights.double(), self.size, replacement=True, generator=g)
        elif self.shuffle:
            order = torch.randperm(self.size, generator=g)
        else:
            order = torch.arange(self.size)
        indices = order.tolist()
        indices += indices[: self.per_rank * self.world_size - len(indices)]
        return iter(indices[self.rank :: self.world_size])


class ShardSampler(Sampler[int]):
    """Evaluation: rank r sees indices r, r + world, ...; no padding, so every image counts once."""

    def __init__(self, size: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, size, world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


__all__ = ["EpochSampler", "ShardSampler"]
