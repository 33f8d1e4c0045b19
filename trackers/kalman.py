"""Constant-velocity Kalman filter over many tracks at once.

Two measurement spaces, both ``(cx, cy, ., .)`` boxes with their four velocities as state:
  * ``xyah``: centre, aspect ratio w/h, height (SORT, DeepSORT, ByteTrack). The aspect ratio is
    nearly constant, so width follows height.
  * ``xywh``: centre, width, height (BoT-SORT), so width and height are estimated independently.
Noise scales with the box size so that near and far people behave alike. Every operation works on
stacked arrays, (T, 8) means and (T, 8, 8) covariances, so a frame costs a handful of numpy calls
however many tracks exist.
"""

from __future__ import annotations

import numpy as np

from .geometry import xyah_to_xyxy, xywh_to_xyxy, xyxy_to_xyah, xyxy_to_xywh

NDIM = 4
_MOTION = np.eye(2 * NDIM)
_MOTION[:NDIM, NDIM:] = np.eye(NDIM)


class BatchKalmanFilter:
    def __init__(self, box_space: str = "xyah", std_weight_position: float = 1.0 / 20,
                 std_weight_velocity: float = 1.0 / 160):
        if box_space not in ("xyah", "xywh"):
            raise ValueError(f"box_space must be 'xyah' or 'xywh', got {box_space!r}")
        self.box_space = box_space
        self.std_weight_position = std_weight_position
        self.std_weight_velocity = std_weight_velocity

    def measure(self, boxes: np.ndarray) -> np.ndarray:
        """``x1, y1, x2, y2`` boxes to this filter's measurement space."""
        return xyxy_to_xywh(boxes) if self.box_space == "xywh" else xyxy_to_xyah(boxes)

    def boxes(self, mean: np.ndarray) -> np.ndarray:
        """State means to ``x1, y1, x2, y2`` boxes."""
        return xywh_to_xyxy(mean[:, :NDIM]) if self.box_space == "xywh" else xyah_to_xyxy(mean[:, :NDIM])

    def _std(self, boxes: np.ndarray, weight: float, aspect_std: float) -> np.ndarray:
        """(T, 4) noise standard deviations proportional to box size (aspect ratio: a fixed std)."""
        if self.box_space == "xywh":
            return weight * boxes[:, [2, 3, 2, 3]]
        std = weight * boxes[:, [3, 3, 3, 3]]
        std[:, 2] = aspect_std
        return std

    def initiate(self, measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Means and covariances for new tracks from (T, 4) measurements."""
        mean = np.zeros((len(measurements), 2 * NDIM))
        mean[:, :NDIM] = measurements
        std = np.concatenate([self._std(measurements, 2 * self.std_weight_position, 1e-2),
                              self._std(measurements, 10 * self.std_weight_velocity, 1e-5)], axis=1)
        cov = np.zeros((len(measurements), 2 * NDIM, 2 * NDIM))
        _add_to_diagonal(cov, std**2)
        return mean, cov

    def predict(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(mean) == 0:
            return mean, cov
        std = np.concatenate([self._std(mean, self.std_weight_position, 1e-2),
                              self._std(mean, self.std_weight_velocity, 1e-5)], axis=1)
        mean = mean @ _MOTION.T
        cov = _MOTION @ cov @ _MOTION.T
        _add_to_diagonal(cov, std**2)
        return mean, cov

    def update(self, mean: np.ndarray, cov: np.ndarray, measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correct each track's state with its matched (T, 4) measurement."""
        if len(mean) == 0:
            return mean, cov
        innovation_cov = cov[:, :NDIM, :NDIM].copy()
        _add_to_diagonal(innovation_cov, self._std(mean, self.std_weight_position, 1e-1) ** 2)
        cross_cov = cov[:, :, :NDIM]  # cov @ H.T with H = [I 0]
        gain = np.linalg.solve(innovation_cov, cross_cov.transpose(0, 2, 1)).transpose(0, 2, 1)
        innovation = measurements - mean[:, :NDIM]
        mean = mean + np.einsum("tij,tj->ti", gain, innovation)
        cov = cov - gain @ innovation_cov @ gain.transpose(0, 2, 1)
        return mean, cov


def _add_to_diagonal(matrices: np.ndarray, values: np.ndarray) -> None:
    """In place: ``matrices[t] += diag(values[t])`` for a stack of square matrices."""
    idx = np.arange(values.shape[-1])
    matrices[:, idx, idx] += values
