"""What the identity stage passes around: one finished tracklet as the associator sees it, and its assignment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Observation:
    """What the associator knows of one finished tracklet."""

    uid: int
    camera_id: str
    track_id: int
    start_time: float
    end_time: float
    embedding: np.ndarray | None  # L2-normalised; None when the tracklet had no usable crop
    continues: bool = False  # the local track goes on in a later tracklet (cut at max_length)
    crop_features: np.ndarray | None = None  # (C, D) per-crop features for the scene metric, if computed
    feet: np.ndarray | None = None  # (N, 4) time, foot x, foot y, body height (geometry.foot_points)


@dataclass
class Assignment:
    uid: int
    global_id: int
    distance: float  # to the identity's gallery at assignment; nan for new or inherited identities
    how: str  # matched | new | continued
    space: str = ""  # of the distance: "scene metric" (at metric_threshold) or "cosine" (at threshold)


def has_crop_features(observation: Observation) -> bool:
    """Embedded, with per-crop features for the scene metric."""
    return (observation.embedding is not None and observation.crop_features is not None
            and len(observation.crop_features) > 0)


def _crop_mean(observation: Observation) -> np.ndarray | None:
    return np.asarray(observation.crop_features, np.float32).mean(0) if has_crop_features(observation) else None
