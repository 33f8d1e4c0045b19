"""Scene-adaptive appearance metric, learned from a run's own tracklets without ground truth.

A generic (ImageNet) ReID feature mixes identity with pose, background and lighting. The run itself says
which differences matter: crops of one tracklet are one person (must-link), and two tracklets of different
local tracks of one camera that overlap in time are two people (cannot-link). Regularised linear
discriminant analysis on per-crop features keeps the few directions along which cannot-link tracklets
differ much more than crops of one tracklet vary:

    metric = SceneMetric.fit(groups, config)       # None when the run gives too few constraints
    vector = metric.embed(crop_features)           # unit vector; cosine distance between them

Tracklets, not whole local tracks, are the must-link groups: a long track may hold an identity switch,
and its crops would then teach the metric to ignore the very difference that separates two people
(measured on the held-out PETS layout: MTMC IDF1 68.5 with tracklets, 62.4 with local tracks).
PCA first (to at most ``pca_dims``, fewer when there are fewer crops) so the within scatter is
well-conditioned; shrinkage towards a scaled identity keeps it stable with few tracklets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import scipy.linalg

from pipeline.config import AssociationConfig


@dataclass
class CropGroup:
    """Per-crop appearance features of one tracklet (one person), with where and when it was seen."""

    camera_id: str
    track_id: int
    start_time: float
    end_time: float
    crops: np.ndarray  # (C, D) raw per-crop features, C may be 0


def embed_crops(embedder: Any, crop_lists: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """Per-crop features: every crop embedded as a one-frame tracklet (``embedder`` built with seq_len=1)."""
    flat = [crop for crops in crop_lists for crop in crops]
    vectors = embedder.embed([[crop] for crop in flat]) if flat else np.zeros((0, 0), np.float32)
    bounds = np.cumsum([0] + [len(crops) for crops in crop_lists])
    return [vectors[bounds[i]:bounds[i + 1]].astype(np.float16) for i in range(len(crop_lists))]


def cannot_link_pairs(groups: Sequence[CropGroup]) -> list[tuple[int, int]]:
    """Index pairs of groups of one camera's different tracks seen at overlapping times: two different people."""
    pairs = []
    for i, a in enumerate(groups):
        for j in range(i + 1, len(groups)):
            b = groups[j]
            if (a.camera_id == b.camera_id and a.track_id != b.track_id
                    and a.start_time <= b.end_time and b.start_time <= a.end_time):
                pairs.append((i, j))
    return pairs


SCATTER_CHUNK = 512  # crops per block when summing a scatter matrix: bounded temporaries in long live runs


def _mean_and_axes(crops_per_group: Sequence[np.ndarray], dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and the ``dims`` leading principal axes (D, dims) of all crops: from an SVD of the centred
    crops when they are fewer than the dimensions, else from the leading eigenvectors of their scatter
    (D x D, float32) summed block by block: 3x faster, and ~15 MB of temporaries instead of ~70 for the
    online metric's window of thousands of crops, refitted inside a live process."""
    count, width = sum(len(g) for g in crops_per_group), np.shape(crops_per_group[0])[1]
    if count < width:
        crops = np.concatenate(crops_per_group).astype(np.float64)
        mean = crops.mean(0)
        return mean, np.linalg.svd(crops - mean, full_matrices=False)[2][:dims].T
    mean = sum(np.asarray(g, dtype=np.float64).sum(0) for g in crops_per_group) / count
    scatter = np.zeros((width, width), np.float32)  # float32 is ample for fp16 features
    for block in _blocks(crops_per_group, SCATTER_CHUNK):
        block -= mean.astype(np.float32)
        scatter += block.T @ block
    leading = scipy.linalg.eigh(scatter, subset_by_index=[width - dims, width - 1], overwrite_a=True,
                                check_finite=False)[1]  # only the leading axes: little LAPACK workspace
    return mean, leading[:, ::-1].astype(np.float64)


def _blocks(crops_per_group: Sequence[np.ndarray], rows: int):
    """The groups' crops as float32 blocks of about ``rows`` rows."""
    pending, size = [], 0
    for group in crops_per_group:
        pending.append(group)
        size += len(group)
        if size >= rows:
            yield np.concatenate(pending).astype(np.float32)
            pending, size = [], 0
    if pending:
        yield np.concatenate(pending).astype(np.float32)


class SceneMetric:
    def __init__(self, mean: np.ndarray, projection: np.ndarray, pairs: int):
        self.mean = mean  # (D,) subtracted before projecting
        self.projection = projection  # (D, dims)
        self.pairs = pairs  # "different" pairs it was learned from (cannot-link pairs when fitted on a run)

    @classmethod
    def fit(cls, groups: Sequence[CropGroup], config: AssociationConfig) -> SceneMetric | None:
        """LDA with within-group scatter as 'same' and cannot-link mean differences as 'different'."""
        usable = [i for i, g in enumerate(groups) if len(g.crops) >= 2]
        kept = set(usable)
        pairs = [(i, j) for i, j in cannot_link_pairs(groups) if i in kept and j in kept]
        if len(pairs) < config.metric_min_pairs:
            return None
        position = {group: n for n, group in enumerate(usable)}
        different = [(position[i], position[j]) for i, j in pairs]
        return cls.from_groups([groups[i].crops for i in usable], different, config)

    @classmethod
    def from_groups(cls, crops_per_group: Sequence[np.ndarray], different: Sequence[tuple[int, int]],
                    config: AssociationConfig) -> SceneMetric:
        """The LDA itself: each group's crops show one person (within scatter), each pair in ``different``
        indexes two groups of different people (between scatter of their mean differences)."""
        count, width = sum(len(g) for g in crops_per_group), np.shape(crops_per_group[0])[1]
        dims = min(config.metric_pca_dims, count - 1, width)
        mean, basis = _mean_and_axes(crops_per_group, dims)
        reduced = [(np.asarray(group, dtype=np.float64) - mean) @ basis for group in crops_per_group]
        centres = [r.mean(0) for r in reduced]
        within = np.concatenate([r - c for r, c in zip(reduced, centres)])
        scatter_within = within.T @ within / len(within)
        scatter_within += config.metric_shrinkage * np.trace(scatter_within) / dims * np.eye(dims)
        between = np.asarray([centres[i] - centres[j] for i, j in different])
        scatter_between = between.T @ between / len(between)
        _, vectors = scipy.linalg.eigh(scatter_between, scatter_within)
        keep = min(config.metric_dims, dims)
        return cls(mean, basis @ vectors[:, ::-1][:, :keep], len(different))

    def project(self, crops: np.ndarray) -> np.ndarray:
        return (np.asarray(crops, dtype=np.float64) - self.mean) @ self.projection

    def embed_each(self, vectors: np.ndarray) -> np.ndarray:
        """Unit vector of each row: ``embed_each(mean crops of each group)`` equals ``embed`` of each group."""
        projected = self.project(vectors)
        return projected / np.clip(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12, None)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Unit vector of a group of crops of one person: its mean projected crop."""
        centre = self.project(crops).mean(0)
        return centre / max(float(np.linalg.norm(centre)), 1e-12)
