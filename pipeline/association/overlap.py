"""Geometric evidence between cameras whose views overlap: from their calibration, or learned from the run itself.

With both cameras calibrated (pipeline/geometry.py) the mapping between their images is known: the ground-plane
homographies, one inverted. Otherwise it is learned from the run, with no labels:

Two cameras that see the same floor relate their people's foot points (bottom-centre of the boxes) by one
homography. For each camera pair, local tracks seen at the same times that are each other's nearest
neighbour by appearance (and under the merge threshold) are likely the same person; their foot points at
common times are fitted by RANSAC (the simplest of similarity, affine and homography that explains them,
see ``fit_homography``). When enough of those pairs agree with it
(``overlap_min_pairs`` and ``overlap_min_share``), the cameras overlap, and every pair of their simultaneous
tracks gets a reprojection error: the median over common times of |H(foot in A) - foot in B| in units of
the box height in B. Small means one person at one place; large means two people. Cameras that do not
overlap (another place, or the same place at another time) give no consistent fit and no evidence.

    errors, fits = overlap_errors(feet, cameras, distance, threshold, config, calibration)   # nan = no evidence
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from pipeline.config import AssociationConfig
from pipeline.geometry import CameraCalibration, project

POINTS_PER_PAIR = 30  # correspondences a seed pair contributes to the fit, so long tracks do not outvote short ones


@dataclass
class CameraOverlap:
    first: str
    second: str
    homography: np.ndarray  # (3, 3): foot points of ``first`` -> image of ``second``
    seeds: int  # appearance-confident simultaneous pairs tried (0: from the calibration)
    inliers: int  # of them, pairs the homography explains
    source: str = "learned"  # learned | calibration


def common_points(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of two foot-point arrays at the times both have (to the millisecond)."""
    _, rows_a, rows_b = np.intersect1d(np.round(a[:, 0] * 1000).astype(np.int64),
                                       np.round(b[:, 0] * 1000).astype(np.int64), return_indices=True)
    return a[rows_a], b[rows_b]


def reprojection_error(homography: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Median distance between projected feet of ``a`` and feet of ``b``, in box heights of ``b``."""
    distance = np.linalg.norm(project(homography, a[:, 1:3]) - b[:, 1:3], axis=1)
    return float(np.median(distance / np.maximum(b[:, 3], 1.0)))


def fit_homography(pairs: list[tuple[np.ndarray, np.ndarray]], config: AssociationConfig
                   ) -> tuple[np.ndarray, int] | None:
    """The foot-point mapping that explains the most seed pairs, as a 3x3 matrix, and how many it explains;
    None when too few pairs agree.

    Three RANSAC models, simplest first: similarity, affine, homography; a more general one is taken only
    when it explains more pairs. Seed pairs often lie in a narrow strip (where the views overlap), and a
    full homography fitted there can match the strip while extrapolating wildly elsewhere, turning every
    simultaneous pair outside the strip into a false "different people"."""
    sampled = [(a[idx], b[idx]) for a, b in pairs
               for idx in [np.linspace(0, len(a) - 1, min(len(a), POINTS_PER_PAIR)).astype(int)]]
    src = np.concatenate([a[:, 1:3] for a, _ in sampled])
    dst = np.concatenate([b[:, 1:3] for _, b in sampled])
    pixels = config.overlap_fit_error * float(np.median(np.concatenate([b[:, 3] for _, b in sampled])))
    best, best_inliers = None, []
    for estimate in (_similarity, _affine, _homography):
        model = estimate(src, dst, pixels)
        if _usable(model):
            inliers = [pair for pair in pairs if reprojection_error(model, *pair) <= config.overlap_fit_error]
            if len(inliers) > len(best_inliers):
                best, best_inliers = model, inliers
    if len(best_inliers) < config.overlap_min_pairs or len(best_inliers) < config.overlap_min_share * len(pairs):
        return None
    return best, len(best_inliers)


def _similarity(src: np.ndarray, dst: np.ndarray, pixels: float) -> np.ndarray | None:
    matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=pixels)
    return None if matrix is None else np.vstack([matrix, [0.0, 0.0, 1.0]])


def _affine(src: np.ndarray, dst: np.ndarray, pixels: float) -> np.ndarray | None:
    matrix, _ = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=pixels)
    return None if matrix is None else np.vstack([matrix, [0.0, 0.0, 1.0]])


def _homography(src: np.ndarray, dst: np.ndarray, pixels: float) -> np.ndarray | None:
    return cv2.findHomography(src, dst, cv2.RANSAC, pixels)[0]


def _usable(homography: np.ndarray | None) -> bool:
    return (homography is not None and bool(np.isfinite(homography).all())
            and abs(np.linalg.det(homography[:2, :2])) > 1e-6)


def overlap_errors(feet: Sequence[np.ndarray | None], cameras: Sequence[str], distance: np.ndarray,
                   threshold: float, config: AssociationConfig, calibration: CameraCalibration | None = None
                   ) -> tuple[np.ndarray, list[CameraOverlap]]:
    """Reprojection error (box heights) of every simultaneous pair of tracks of two overlapping cameras; nan
    where there is no geometric evidence. ``feet[i]``: foot points of track i (geometry.foot_points) or None.
    A calibrated camera pair uses its calibration; the others a learned mapping when ``config.overlap``."""
    errors = np.full((len(feet), len(feet)), np.nan)
    cameras = np.asarray(cameras)
    names = sorted(set(cameras.tolist()))
    fits = []
    for k, first in enumerate(names):
        for second in names[k + 1:]:
            rows = [int(i) for i in np.flatnonzero(cameras == first) if feet[i] is not None]
            cols = [int(j) for j in np.flatnonzero(cameras == second) if feet[j] is not None]
            known = calibration.between(first, second) if calibration is not None else None
            if known is not None:
                _fill_errors(known, _simultaneous(feet, rows, cols, config), errors)
                fits.append(CameraOverlap(first, second, known, 0, 0, "calibration"))
            elif config.overlap:
                fit = _camera_pair(feet, rows, cols, distance, threshold, config, errors)
                if fit is not None:
                    fits.append(CameraOverlap(first, second, *fit))
    return errors, fits


def _simultaneous(feet, rows: list[int], cols: list[int], config: AssociationConfig) -> dict:
    """(i, j) -> their foot points at common times, for the track pairs seen together long enough."""
    common = {}
    for i in rows:
        for j in cols:
            a, b = common_points(feet[i], feet[j])
            if len(a) >= config.overlap_min_common:
                common[i, j] = (a, b)
    return common


def _fill_errors(homography: np.ndarray, common: dict, errors: np.ndarray) -> None:
    for (i, j), (a, b) in common.items():
        errors[i, j] = errors[j, i] = reprojection_error(homography, a, b)


def _camera_pair(feet, rows: list[int], cols: list[int], distance: np.ndarray, threshold: float,
                 config: AssociationConfig, errors: np.ndarray) -> tuple[np.ndarray, int, int] | None:
    """Fit one camera pair; on success fill ``errors`` for its simultaneous tracks and return
    (homography, seeds, inliers)."""
    common = _simultaneous(feet, rows, cols, config)
    seeds = _mutual_nearest(common, distance, threshold)
    if len(seeds) < config.overlap_min_pairs:
        return None
    fitted = fit_homography([common[pair] for pair in seeds], config)
    if fitted is None:
        return None
    homography, inliers = fitted
    _fill_errors(homography, common, errors)
    return homography, len(seeds), inliers


def _mutual_nearest(common: dict, distance: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Simultaneous pairs that are each other's nearest simultaneous neighbour by appearance, under threshold."""
    best_of_row: dict[int, tuple[float, int]] = {}
    best_of_col: dict[int, tuple[float, int]] = {}
    for i, j in common:
        d = distance[i, j]
        if np.isfinite(d) and d < threshold:
            best_of_row[i] = min(best_of_row.get(i, (np.inf, -1)), (d, j))
            best_of_col[j] = min(best_of_col.get(j, (np.inf, -1)), (d, i))
    return [(i, j) for i, (_, j) in best_of_row.items() if best_of_col[j][1] == i]
