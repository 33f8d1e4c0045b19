"""Per-camera colour normalisation of ReID crops.

Cameras of one network differ in white balance, gain and offset; a ReID model trained (or, worse, not
trained) on other cameras reads those differences as identity. Each camera's frames give a running
per-channel mean and standard deviation of the scene, and every crop of that camera is mapped so that the
scene statistics match one fixed reference: ``meanstd`` undoes a per-channel gain and offset, ``gray``
(gray-world, von Kries) a per-channel gain only.
"""

from __future__ import annotations

import numpy as np

COLOUR_NORMS = ("none", "gray", "meanstd")
REFERENCE_MEAN = 110.0  # grey level every camera's scene mean is mapped to
REFERENCE_STD = 55.0
BLANK_STD = 2.0  # a frame this flat (black before a delayed camera starts, lost signal) says nothing
PIXEL_STEP = 8  # statistics from every 8th pixel in each direction: ~0.1 ms a frame


class CameraColourStats:
    """Running per-channel scene statistics per camera (exponential average over ``horizon`` frames)."""

    def __init__(self, mode: str = "meanstd", horizon: int = 500):
        if mode not in COLOUR_NORMS:
            raise ValueError(f"colour norm must be one of {COLOUR_NORMS}, got {mode!r}")
        self.mode = mode
        self.horizon = horizon
        self.mean: dict[str, np.ndarray] = {}
        self.std: dict[str, np.ndarray] = {}
        self.frames: dict[str, int] = {}

    def observe(self, camera_id: str, image: np.ndarray) -> None:
        if self.mode == "none":
            return
        pixels = image[::PIXEL_STEP, ::PIXEL_STEP].reshape(-1, image.shape[-1]).astype(np.float64)
        std = pixels.std(0)
        if std.max() < BLANK_STD:
            return
        count = self.frames.get(camera_id, 0) + 1
        self.frames[camera_id] = count
        weight = max(1.0 / count, 1.0 / self.horizon)  # plain mean at first, then exponential forgetting
        mean = pixels.mean(0)
        self.mean[camera_id] = mean if count == 1 else (1 - weight) * self.mean[camera_id] + weight * mean
        self.std[camera_id] = std if count == 1 else (1 - weight) * self.std[camera_id] + weight * std

    def normalise(self, camera_id: str, crop: np.ndarray) -> np.ndarray:
        """The crop as the reference camera would see it (unchanged before any frame of the camera was seen)."""
        if self.mode == "none" or camera_id not in self.mean:
            return crop
        mean = self.mean[camera_id]
        if self.mode == "gray":
            mapped = crop.astype(np.float32) * (REFERENCE_MEAN / np.maximum(mean, 1.0)).astype(np.float32)
        else:
            scale = REFERENCE_STD / np.maximum(self.std[camera_id], 1.0)
            mapped = (crop.astype(np.float32) - mean.astype(np.float32)) * scale.astype(np.float32) + REFERENCE_MEAN
        return np.clip(mapped, 0, 255).astype(np.uint8)
