"""Constant-velocity Kalman filter over many tracks at once.

State per track: ``cx, cy, a, h, vcx, vcy, va, vh`` (centre, aspect ratio w/h, height and their
velocities), as in SORT/DeepSORT/ByteTrack. Noise scales with the box height so that the filter
behaves the same for near and far people. Every operation works on stacked arrays, (T, 8) means
and (T, 8, 8) covariances, so a frame costs a handful of numpy calls however many tracks exist.
"""

from __future__ import annotations

import numpy as np

NDIM = 4
_MOTION = np.eye(2 * NDIM)
_MOTION[:NDIM, NDIM:] = np.eye(NDIM)


class BatchKalmanFilter:
    def __init__(self, std_weight_position: float = 1.0 / 20, std_weight_velocity: float = 1.0 / 160):
        self.std_weight_position = std_weight_position
        self.std_weight_velocity = std_weight_velocity

    def initiate(self, measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Means and covariances for new tracks from (T, 4) xyah measurements."""
        n = len(measurements)
        mean = np.zeros((n, 2 * NDIM))
        mean[:, :NDIM] = measurements
        h = measurements[:, 3]
        p, v = self.std_weight_position, self.std_weight_velocity
        std = np.stack([2 * p * h, 2 * p * h, np.full(n, 1e-2), 2 * p * h,
                        10 * v * h, 10 * v * h, np.full(n, 1e-5), 10 * v * h], axis=1)
        return mean, _diag(std**2)

    def predict(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(mean) == 0:
            return mean, cov
        h = mean[:, 3]
        p, v = self.std_weight_position, self.std_weight_velocity
        n = len(mean)
        std = np.stack([p * h, p * h, np.full(n, 1e-2), p * h,
                        v * h, v * h, np.full(n, 1e-5), v * h], axis=1)
        mean = mean @ _MOTION.T
        cov = _MOTION @ cov @ _MOTION.T + _diag(std**2)
        return mean, cov

    def update(self, mean: np.ndarray, cov: np.ndarray, measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correct each track's state with its matched (T, 4) xyah measurement."""
        if len(mean) == 0:
            return mean, cov
        h = mean[:, 3]
        p = self.std_weight_position
        std = np.stack([p * h, p * h, np.full(len(mean), 1e-1), p * h], axis=1)
        innovation_cov = cov[:, :NDIM, :NDIM] + _diag(std**2)
        cross_cov = cov[:, :, :NDIM]  # cov @ H.T with H = [I 0]
        gain = np.linalg.solve(innovation_cov, cross_cov.transpose(0, 2, 1)).transpose(0, 2, 1)
        innovation = measurements - mean[:, :NDIM]
        mean = mean + np.einsum("tij,tj->ti", gain, innovation)
        cov = cov - gain @ innovation_cov @ gain.transpose(0, 2, 1)
        return mean, cov


def _diag(values: np.ndarray) -> np.ndarray:
    out = np.zeros(values.shape + (values.shape[-1],))
    idx = np.arange(values.shape[-1])
    out[..., idx, idx] = values
    return out
