"""Which tracklets go into a batch and which frames into a clip.

- ``PKBatchSampler``: batches of P identities x K tracklets each, so batch-hard triplet mining always
  finds positives and negatives (an identity with fewer than K tracklets repeats some; the random
  frame sampling makes the repeats different clips).
- Restricted random frame sampling for training: N equal chunks of a tracklet, one random frame
  from each (test-time clips come from ``reid.preprocess.clip_indices``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


def restricted_random_indices(length: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """One random frame from each of N equal consecutive chunks (in order).

    A tracklet shorter than N gives each frame at least once, the rest repeated, still in order.
    """
    _check(length, n)
    if length < n:
        return np.sort(np.concatenate([np.arange(length), rng.integers(0, length, n - length)]))
    bounds = np.linspace(0, length, n + 1).astype(int)
    return np.array([rng.integers(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])])


def _check(length: int, n: int) -> None:
    if length < 1 or n < 1:
        raise ValueError(f"need a tracklet of >= 1 frames and N >= 1, got length={length}, N={n}")


class PKBatchSampler(Sampler[list[int]]):
    """Yields lists of P*K dataset indices: P distinct identities, K tracklets of each.

    One epoch uses every tracklet at least once: each identity's tracklets are shuffled and cut into
    groups of K (the last group, or an identity with < K tracklets, is filled by drawing again),
    then groups of P different identities are drawn at random until fewer than P identities are left.
    """

    def __init__(self, pids: Sequence[int], p: int, k: int, seed: int = 0):
        if p < 2 or k < 1:
            raise ValueError(f"PK sampling needs P >= 2 identities and K >= 1 tracklets, got P={p}, K={k}")
        self.index_of: dict[int, list[int]] = {}
        for index, pid in enumerate(pids):
            self.index_of.setdefault(int(pid), []).append(index)
        if len(self.index_of) < p:
            raise ValueError(f"PK sampling needs at least P={p} identities, the data has {len(self.index_of)}")
        self.p, self.k = p, k
        self.rng = np.random.default_rng(seed)

    def _groups(self) -> dict[int, list[list[int]]]:
        groups = {}
        for pid, indices in self.index_of.items():
            order = list(self.rng.permutation(indices))
            shortfall = -len(order) % self.k
            order += list(self.rng.choice(indices, shortfall, replace=True))
            groups[pid] = [order[i : i + self.k] for i in range(0, len(order), self.k)]
        return groups

    def __iter__(self) -> Iterator[list[int]]:
        groups = self._groups()
        while len(groups) >= self.p:
            chosen = self.rng.choice(sorted(groups), self.p, replace=False)
            batch = []
            for pid in chosen:
                batch.extend(int(i) for i in groups[pid].pop())
                if not groups[pid]:
                    del groups[pid]
            yield batch
