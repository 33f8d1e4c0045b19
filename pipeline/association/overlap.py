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

Few people, or views so different that few of them look alike across the cameras, give too few seeds, and a
few seeds in one corner of the views can fit a mapping that is off elsewhere. So geometry also proposes and
verifies by itself (``verified_by_trajectories``): one simultaneous pair whose feet walk far enough is enough
to fit a mapping, and a mapping that also explains other simultaneous pairs (one partner per track) that look
more alike than the rest is a candidate; of the two fits, the one explaining more pairs is the views' mapping.
A wrong pair's mapping explains itself only; among many people on unrelated paths chance mappings explain
pairs that hardly move or all keep to one line, and ``_motion_verified`` rejects those (for both fits).

    errors, fits = overlap_errors(feet, cameras, distance, threshold, config, calibration)   # nan = no evidence
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Sequence

import cv2
import numpy as np

from pipeline.config import AssociationConfig
from pipeline.geometry import CameraCalibration, project

POINTS_PER_PAIR = 30  # correspondences a seed pair contributes to the fit, so long tracks do not outvote short ones
MIN_WALK = 0.5  # box heights the feet of a pair must cover across their main direction (10-90%) to propose a mapping
PROPOSALS = 20  # simultaneous pairs tried as proposals, most alike first
MIN_VERIFIED = 3  # pairs (distinct tracks on both sides) a proposed mapping must explain
FOLLOW_RATIO = 0.5  # residual / spread of a pair's feet for the mapping to follow its motion (R^2 >= 0.75)
MIN_FOLLOWED_SHARE = 0.5  # of the pairs a proposed mapping explains, share whose motion it must follow
MIN_CROSSING = 0.25  # box heights the followed pairs' feet together must spread across their main direction, in
# each view (more than the fit's tolerance, overlap_fit_error 0.2), so the mapping is pinned across it too


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
    sampled = [_sampled(a, b, POINTS_PER_PAIR) for a, b in pairs]
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
    inliers = dict(enumerate(best_inliers))
    if not _motion_verified(best, _PairPoints(inliers), list(inliers), inliers):
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
            rows, cols = _with_feet(feet, cameras, first), _with_feet(feet, cameras, second)
            known = calibration.between(first, second) if calibration is not None else None
            if known is not None:
                _fill_errors(known, _simultaneous(feet, rows, cols, config), errors)
                fits.append(CameraOverlap(first, second, known, 0, 0, "calibration"))
            elif config.overlap:
                fit = _camera_pair(feet, rows, cols, distance, threshold, config, errors)
                if fit is not None:
                    fits.append(CameraOverlap(first, second, *fit))
    return errors, fits


def errors_under(fits: Sequence[CameraOverlap], feet: Sequence[np.ndarray | None], cameras: Sequence[str],
                 config: AssociationConfig) -> np.ndarray:
    """``overlap_errors`` with the camera pairs' mappings already known (found on other tracks of the same run)."""
    errors = np.full((len(feet), len(feet)), np.nan)
    cameras = np.asarray(cameras)
    for fit in fits:
        rows, cols = _with_feet(feet, cameras, fit.first), _with_feet(feet, cameras, fit.second)
        _fill_errors(fit.homography, _simultaneous(feet, rows, cols, config), errors)
    return errors


def _with_feet(feet: Sequence[np.ndarray | None], cameras: np.ndarray, camera: str) -> list[int]:
    """Indices of ``camera``'s tracks that have foot points."""
    return [int(i) for i in np.flatnonzero(cameras == camera) if feet[i] is not None]


def stands_with_another(fit: CameraOverlap, camera: str, before: np.ndarray, after: np.ndarray,
                        others: Sequence[Sequence[np.ndarray]], config: AssociationConfig) -> bool:
    """Whether the fit's other view shows two people in consecutive tracklets of one track of ``camera`` (their
    feet ``before`` and ``after``): the view's track nearest ``before`` (``others``: each a list of its
    tracklets' feet; within ``overlap_same_error``) is seen elsewhere at the times of ``after``, which stands
    with another (two people who walked together and part leave the track with the nearer one). The tracker
    handed the track on to someone else, or the partner's tracker did (appearance tells which: the caller asks
    only where the two tracklets also look apart)."""
    errors_before = np.array([_error_with_track(fit, camera, before, track, config) for track in others])
    errors_after = np.array([_error_with_track(fit, camera, after, track, config) for track in others])
    if not (errors_before <= config.overlap_same_error).any():
        return False
    partner = int(np.nanargmin(errors_before))
    someone_else_after = np.delete(errors_after, partner) <= config.overlap_same_error
    return bool(errors_after[partner] >= config.overlap_different_error and someone_else_after.any())


def _error_with_track(fit: CameraOverlap, camera: str, feet: np.ndarray, track: Sequence[np.ndarray],
                      config: AssociationConfig) -> float:
    """Lowest ``reprojection_error`` between a tracklet of ``camera`` and the tracklets of a track of the fit's
    other camera seen with it (``overlap_min_common`` common times); nan when none is."""
    best = np.nan
    start, end = feet[:, 0].min(), feet[:, 0].max()
    for other in track:
        if other[:, 0].max() < start or other[:, 0].min() > end:
            continue
        a, b = common_points(feet, other) if camera == fit.first else common_points(other, feet)
        if len(a) >= config.overlap_min_common:
            best = np.fmin(best, reprojection_error(fit.homography, a, b))
    return float(best)


def _simultaneous(feet, rows: list[int], cols: list[int], config: AssociationConfig) -> dict:
    """(i, j) -> their foot points at common times, for the track pairs seen together long enough."""
    common = {}
    spans = {k: (feet[k][:, 0].min(), feet[k][:, 0].max()) for k in rows + cols}
    for i in rows:
        for j in cols:
            if spans[i][1] < spans[j][0] or spans[j][1] < spans[i][0]:  # never seen at the same time
                continue
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
    (homography, seeds, inliers).

    Two candidates: the fit to the appearance seeds, and the fit to the pairs a trajectory proposal verified
    (``verified_by_trajectories``). The one that explains more of the simultaneous pairs is the views' mapping:
    a few seeds in one corner of the views can fit a mapping that is off elsewhere."""
    common = _simultaneous(feet, rows, cols, config)
    points = _PairPoints(common)
    seeds = _mutual_nearest(common, distance, threshold)
    verified = verified_by_trajectories(common, distance, config, points)
    candidates = [(seeds, fit_homography([common[pair] for pair in seeds], config)
                   if len(seeds) >= config.overlap_min_pairs else None),
                  (verified, fit_homography([common[pair] for pair in verified],
                                            replace(config, overlap_min_pairs=MIN_VERIFIED)) if verified else None)]
    candidates = [(pairs, fitted) for pairs, fitted in candidates if fitted is not None]
    if not candidates:
        return None
    pairs, (homography, inliers) = max(candidates, key=lambda candidate: len(
        _explained(points.errors(candidate[1][0]), common, config.overlap_fit_error)))
    _fill_errors(homography, common, errors)
    return homography, len(pairs), inliers


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


def verified_by_trajectories(common: dict, distance: np.ndarray, config: AssociationConfig,
                             points: _PairPoints) -> list[tuple[int, int]]:
    """The simultaneous pairs explained by the best mapping proposed from one pair's own trajectory; [] if none.

    Proposals: the ``PROPOSALS`` most alike pairs whose feet cover ``MIN_WALK`` box heights (a short, standing
    or straight track fits many mappings), each fitted alone (affine, homography). A proposal's explained
    pairs (``_explained``) must span ``MIN_VERIFIED`` tracks on each side, look more alike than the pairs it
    rejects, and show it is no chance (``_motion_verified``). Constants chosen on the first half of EPFL
    Terrace with ground-truth boxes (and PETS09 + TUD-Stadtmitte at once as the negative)."""
    walking = (pair for pair in sorted(common, key=lambda pair: distance[pair]) if _walk(common[pair][0]) >= MIN_WALK)
    best: list[tuple[int, int]] = []
    for pair in itertools.islice(walking, PROPOSALS):
        a, b = _sampled(*common[pair], 2 * POINTS_PER_PAIR)
        pixels = config.overlap_fit_error * float(np.median(b[:, 3]))
        for estimate in (_affine, _homography):
            model = estimate(np.ascontiguousarray(a[:, 1:3]), np.ascontiguousarray(b[:, 1:3]), pixels)
            if _usable(model):
                explained = _explained(points.errors(model), common, config.overlap_fit_error)
                if (len(explained) > len(best) and _look_alike(explained, common, distance)
                        and _motion_verified(model, points, explained, common)):
                    best = explained
    return best if _tracks_on_each_side(best) >= MIN_VERIFIED else []


class _PairPoints:
    """The simultaneous pairs' foot points, POINTS_PER_PAIR of each (``_sampled``), stacked once so that a
    proposed mapping's reprojection error of every pair is one array operation."""

    def __init__(self, common: dict):
        self.pairs = list(common)
        shape = (len(self.pairs), POINTS_PER_PAIR)
        self.first, self.second = np.full(shape + (2,), np.nan), np.full(shape + (2,), np.nan)
        self.heights = np.full(shape, np.nan)
        for row, pair in enumerate(self.pairs):
            a, b = _sampled(*common[pair], POINTS_PER_PAIR)
            self.first[row, :len(a)], self.second[row, :len(b)] = a[:, 1:3], b[:, 1:3]
            self.heights[row, :len(b)] = np.maximum(b[:, 3], 1.0)

    def followed(self, homography: np.ndarray) -> set[tuple[int, int]]:
        """Pairs whose motion the mapping follows: the residual (rms) under FOLLOW_RATIO x the spread of the
        second track's feet about their mean. A pair that hardly moves matches any mapping that lands near it;
        among many people on unrelated paths, chance mappings are explained by such pairs."""
        mapped = self._mapped(homography)
        residual = np.sqrt(np.nanmean(np.sum((mapped - self.second) ** 2, axis=2), axis=1))
        centred = self.second - np.nanmean(self.second, axis=1, keepdims=True)
        spread = np.sqrt(np.nanmean(np.sum(centred ** 2, axis=2), axis=1))
        return {pair for pair, r, s in zip(self.pairs, residual, spread) if r <= FOLLOW_RATIO * s}

    def errors(self, homography: np.ndarray) -> dict[tuple[int, int], float]:
        """pair -> ``reprojection_error`` under ``homography`` (median over the sampled common times)."""
        if not self.pairs:
            return {}
        distance = np.linalg.norm(self._mapped(homography) - self.second, axis=2) / self.heights
        return dict(zip(self.pairs, np.nanmedian(distance, axis=1).tolist()))

    def _mapped(self, homography: np.ndarray) -> np.ndarray:
        return project(homography, self.first.reshape(-1, 2)).reshape(self.first.shape)


def _walk(points: np.ndarray) -> float:
    """How far the feet spread across their main direction (a straight walk fixes no mapping): the 10-90% range
    along the minor principal axis, in median box heights."""
    centred = points[:, 1:3] - np.median(points[:, 1:3], axis=0)
    along = centred @ np.linalg.svd(centred, full_matrices=False)[2].T
    spread = np.percentile(along, 90, axis=0) - np.percentile(along, 10, axis=0)
    return float(spread.min() / max(np.median(points[:, 3]), 1.0))


def _motion_verified(model: np.ndarray, points: _PairPoints, explained: list, common: dict) -> bool:
    """Whether the pairs a mapping explains show it is no chance: at least MIN_FOLLOWED_SHARE of them move the way
    it maps (``_PairPoints.followed``), and those spread across their main direction in each view (``_walk`` of
    them all). Between busy unrelated views a chance mapping is explained by pairs that hardly move, or that
    all keep to one line (people on a pavement seen from the side), which leave the mapping free across it."""
    followed = points.followed(model)
    moving = [pair for pair in explained if pair in followed]
    if not moving or len(moving) < MIN_FOLLOWED_SHARE * len(explained):
        return False
    return min(_walk(np.concatenate([common[pair][side] for pair in moving])) for side in (0, 1)) >= MIN_CROSSING


def _sampled(a: np.ndarray, b: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.linspace(0, len(a) - 1, min(len(a), count)).astype(int)
    return a[idx], b[idx]


def _explained(errors: dict[tuple[int, int], float], common: dict, limit: float) -> list[tuple[int, int]]:
    """Pairs a mapping explains (``errors``: its reprojection error of each pair), lowest error first, skipping
    a pair whose track already has a partner at the same times (a track broken in one camera can have several
    partners, one at a time)."""
    explained: list[tuple[int, int]] = []
    for (i, j), error in sorted(errors.items(), key=lambda item: item[1]):
        if not error <= limit:
            break
        times = common[i, j][0][:, 0]
        if not any((i == k or j == m) and np.intersect1d(times, common[k, m][0][:, 0]).size
                   for k, m in explained):
            explained.append((i, j))
    return explained


def _tracks_on_each_side(pairs: list[tuple[int, int]]) -> int:
    return min(len({i for i, _ in pairs}), len({j for _, j in pairs}))


def _look_alike(explained: list[tuple[int, int]], common: dict, distance: np.ndarray) -> bool:
    """Appearance agrees with the geometry: explained pairs are closer (median) than the other simultaneous pairs."""
    others = [distance[pair] for pair in common if pair not in set(explained)]
    return not others or float(np.median([distance[pair] for pair in explained])) < float(np.median(others))
