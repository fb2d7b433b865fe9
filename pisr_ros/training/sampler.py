"""Which images each training iteration sees, on every rank, from any iteration on.

Training counts iterations, not epochs, and may stop and resume anywhere. The draws form one
endless stream, the concatenation of per-epoch permutations of the dataset (epoch ``e``
shuffled by a generator seeded ``[seed, e]``). Global iteration ``t`` takes stream positions
``[t * B * W, (t + 1) * B * W)`` for batch size ``B`` per rank and ``W`` ranks; rank ``r`` takes
the ``r``-th slice of ``B``. This shards like ``DistributedSampler`` (every rank sees disjoint
images, each epoch covers the dataset once), but iteration ``t``'s batch is a pure function of
``t``, so a resumed run sees exactly the images an uninterrupted one would have.

Each key is ``(index, position)``: the dataset seeds that draw's augmentation with it, so the
same image drawn twice is augmented differently, and identically on a rerun.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class IterationBatchSampler(Sampler):
    def __init__(self, num_items: int, batch_size: int, seed: int, start: int, stop: int,
                 rank: int = 0, world_size: int = 1):
        if num_items < 1 or batch_size < 1:
            raise ValueError("need at least one item and a batch size of at least 1")
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.start, self.stop = start, stop
        self.rank, self.world_size = rank, world_size
        self._epoch = -1
        self._perm = np.arange(0)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def index_at(self, position: int) -> int:
        epoch, i = divmod(position, self.num_items)
        if epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_items)
            self._epoch = epoch
        return int(self._perm[i])

    def batch_keys(self, iteration: int) -> list[tuple[int, int]]:
        first = (iteration * self.world_size + self.rank) * self.batch_size
        return [(self.index_at(p), p) for p in range(first, first + self.batch_size)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for t in range(self.start, self.stop):
            yield self.batch_keys(t)
