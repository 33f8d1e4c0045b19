"""From BGR crops to model input: validation, resizing, frame sampling, normalisation.

Training and inference should share ``resize_crop`` and ``normalize`` so the model sees the
same pixels in both. Frames are kept as uint8 until they reach the device: 4x less to copy.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB
IMAGENET_STD = (0.229, 0.224, 0.225)
TEST_MODES = ("even", "all")


def check_tracklets(tracklets: Sequence[Sequence[np.ndarray]]) -> None:
    """ValueError naming the tracklet (and crop) index for anything that is not a list of BGR crops."""
    for index, crops in enumerate(tracklets):
        if isinstance(crops, np.ndarray) and crops.ndim == 3:
            raise ValueError(f"tracklet {index}: expected a list of crops, got a single image array")
        if len(crops) == 0:
            raise ValueError(f"tracklet {index}: has no crops")
        for position, crop in enumerate(crops):
            _check_crop(crop, f"tracklet {index}, crop {position}")


def _check_crop(crop: np.ndarray, where: str) -> None:
    if not isinstance(crop, np.ndarray):
        raise ValueError(f"{where}: expected a numpy array, got {type(crop).__name__}")
    if crop.ndim != 3 or crop.shape[2] != 3:
        raise ValueError(f"{where}: expected an H x W x 3 BGR image, got shape {crop.shape}")
    if crop.shape[0] == 0 or crop.shape[1] == 0:
        raise ValueError(f"{where}: crop has size 0 (shape {crop.shape})")
    if crop.dtype != np.uint8:
        raise ValueError(f"{where}: expected dtype uint8, got {crop.dtype}")


def resize_crop(crop_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """BGR crop of any size (1x1 included) -> RGB uint8 of ``size`` = (height, width)."""
    import cv2  # here, not at the top: timing the model on a bare CUDA machine must not need OpenCV

    height, width = size
    shrinking = crop_bgr.shape[0] > height or crop_bgr.shape[1] > width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR  # AREA avoids aliasing when shrinking
    resized = cv2.resize(np.ascontiguousarray(crop_bgr), (width, height), interpolation=interpolation)
    return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)


def sample_even(length: int, n: int) -> list[int]:
    """N frame indices spread evenly over [0, length), first and last included; repeats when length < N."""
    if length < 1 or n < 1:
        raise ValueError(f"need length >= 1 and n >= 1, got length={length}, n={n}")
    return np.linspace(0, length - 1, n).round().astype(int).tolist()


def consecutive_clips(length: int, n: int) -> list[list[int]]:
    """All frames as consecutive N-frame clips (test protocol of the paper).

    A short tail is completed with the frames just before it (the last clip is the final N
    frames), so every frame is used and every clip is real footage; fewer than N frames give
    one evenly sampled clip with repeats.
    """
    if length < n:
        return [sample_even(length, n)]
    clips = [list(range(start, start + n)) for start in range(0, length - n + 1, n)]
    if length % n:
        clips.append(list(range(length - n, length)))
    return clips


def clip_indices(length: int, n: int, mode: str) -> list[list[int]]:
    if mode == "even":
        return [sample_even(length, n)]
    if mode == "all":
        return consecutive_clips(length, n)
    raise ValueError(f"test mode must be one of {TEST_MODES}, got {mode!r}")


def normalize(frames_rgb_uint8: torch.Tensor) -> torch.Tensor:
    """(..., H, W, 3) uint8 RGB -> (..., 3, H, W) float32 ImageNet-normalised.

    The result is a permuted view of NHWC memory, i.e. already channels_last for convolutions.
    """
    mean = torch.tensor(IMAGENET_MEAN, device=frames_rgb_uint8.device) * 255
    std = torch.tensor(IMAGENET_STD, device=frames_rgb_uint8.device) * 255
    scaled = (frames_rgb_uint8.float() - mean) / std
    return scaled.movedim(-1, -3)
