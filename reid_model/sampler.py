"""P x K identity sampler: every batch holds P distinct patients with K images each."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from deid.errors import InputError


class PKSampler(Sampler[int]):
    """Yield dataset indices in batches of ``p`` identities x ``k`` images.

    Identities are served from a stream of random permutations, so every identity comes up once
    per pass over all identities; one that would repeat inside a batch waits for the next batch.
    An identity with at
    least ``k`` images contributes ``k`` distinct ones; with fewer, all of its images plus
    draws with replacement up to ``k`` (oversampling). All randomness comes from ``generator``,
    whose state advances, so successive epochs differ and a re-seeded generator replays them.

    For distributed training, every rank builds the same sampler (same seed) with its own
    ``rank``; rank ``r`` keeps batches ``r, r + world_size, ...`` of the common stream.

    Parameters
    ----------
    labels : Sequence[int]
        Identity label of every dataset item.
    p : int
        Identities per batch.
    k : int
        Images per identity in a batch.
    num_batches : int
        Batches per epoch (per rank).
    generator : torch.Generator
        Source of all randomness.
    rank, world_size : int
        Distributed position; defaults to a single process.

    Raises
    ------
    InputError
        If an argument is not positive, there are fewer than ``p`` identities, or the rank is
        outside ``[0, world_size)``.
    """

    def __init__(
        self,
        labels: Sequence[int],
        p: int,
        k: int,
        num_batches: int,
        generator: torch.Generator,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        for name, value in (("p", p), ("k", k), ("num_batches", num_batches)):
            if value < 1:
                raise InputError(f"PKSampler: {name} must be >= 1, got {value}.")
        if not 0 <= rank < world_size:
            raise InputError(f"PKSampler: rank {rank} is outside [0, world_size={world_size}).")
        by_label: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            by_label.setdefault(int(label), []).append(index)
        if len(by_label) < p:
            raise InputError(
                f"PKSampler: {len(by_label)} identities cannot fill batches of p={p} distinct "
                "identities; lower batch_p or add patients."
            )
        self._groups = [torch.tensor(v) for _, v in sorted(by_label.items())]
        self.p, self.k, self.num_batches = p, k, num_batches
        self.generator = generator
        self.rank, self.world_size = rank, world_size

    @classmethod
    def from_batch_size(
        cls,
        labels: Sequence[int],
        batch_size: int,
        k: int,
        num_batches: int,
        generator: torch.Generator,
        **kwargs: int,
    ) -> PKSampler:
        """Build from a total batch size, which must be a multiple of ``k``."""
        if k < 1 or batch_size % k:
            raise InputError(
                f"PKSampler: batch_size={batch_size} must be a multiple of k={k} images per "
                "identity."
            )
        return cls(labels, batch_size // k, k, num_batches, generator, **kwargs)

    def __len__(self) -> int:
        return self.num_batches * self.p * self.k

    def _instances(self, group: torch.Tensor) -> torch.Tensor:
        order = group[torch.randperm(len(group), generator=self.generator)]
        if len(group) >= self.k:
            return order[: self.k]
        extra = torch.randint(len(group), (self.k - len(group),), generator=self.generator)
        return torch.cat([order, group[extra]])

    def __iter__(self) -> Iterator[int]:
        queue: list[int] = []
        for step in range(self.num_batches * self.world_size):
            if len(set(queue)) < self.p:
                queue += torch.randperm(len(self._groups), generator=self.generator).tolist()
            chosen, rest = [], []
            for i in queue:  # the first p distinct identities; repeats wait for the next batch
                (chosen if len(chosen) < self.p and i not in chosen else rest).append(i)
            queue = rest
            # Every rank draws the same stream, so generator states stay in step.
            batch = torch.cat([self._instances(self._groups[i]) for i in chosen])
            if step % self.world_size == self.rank:
                yield from batch.tolist()
