"""Frames on disk -> model-ready clips, with the training augmentations.

Resizing and normalisation are ``reid.preprocess``'s, so training sees exactly the pixels that the
Embedder feeds at inference. Augmentations: horizontal flip (one decision per clip, so the frames
of a clip stay consistent for the temporal attention) and random erasing (per frame, as occlusions
come and go along a tracklet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch

from reid.preprocess import normalize, resize_crop


@dataclass(frozen=True)
class AugmentConfig:
    flip_prob: float = 0.5
    erase_prob: float = 0.5
    erase_area: tuple[float, float] = (0.02, 0.4)  # share of the frame area
    erase_aspect: tuple[float, float] = (0.3, 3.3)  # height / width of the erased box


def read_frames(paths: Sequence[str]) -> list[np.ndarray]:
    """BGR uint8 images; a missing or unreadable file is an error naming it."""
    frames = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"{path}: image missing or unreadable")
        frames.append(image)
    return frames


def to_clip(frames_bgr: Sequence[np.ndarray], size: tuple[int, int]) -> torch.Tensor:
    """N BGR crops -> (N, 3, H, W) float32, resized and ImageNet-normalised."""
    rgb = np.stack([resize_crop(f, size) for f in frames_bgr])
    return normalize(torch.from_numpy(rgb)).contiguous()


def augment_clip(clip: torch.Tensor, aug: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    """Flip the whole (N, 3, H, W) clip with ``flip_prob``; erase a random box in each frame with ``erase_prob``."""
    if rng.random() < aug.flip_prob:
        clip = clip.flip(-1)
    clip = clip.clone()
    for frame in clip:
        if rng.random() < aug.erase_prob:
            erase_random_box(frame, aug, rng)
    return clip


def erase_random_box(frame: torch.Tensor, aug: AugmentConfig, rng: np.random.Generator, tries: int = 10,
                     noise: bool = True) -> None:
    """Zhong et al. 2020 random erasing: fill a random box of a (C, H, W) image with noise (in normalised
    units), or of a feature map with zeros (``noise=False``)."""
    _, height, width = frame.shape
    for _ in range(tries):
        area = rng.uniform(*aug.erase_area) * height * width
        aspect = np.exp(rng.uniform(np.log(aug.erase_aspect[0]), np.log(aug.erase_aspect[1])))
        box_h, box_w = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
        if 0 < box_h < height and 0 < box_w < width:
            top, left = rng.integers(0, height - box_h), rng.integers(0, width - box_w)
            fill = rng.standard_normal((frame.shape[0], box_h, box_w)).astype(np.float32) if noise else 0.0
            frame[:, top : top + box_h, left : left + box_w] = torch.from_numpy(fill) if noise else fill
            return
