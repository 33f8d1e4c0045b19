"""Box geometry on (N, 4) arrays of ``x1, y1, x2, y2``."""

from __future__ import annotations

import numpy as np


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union, shape (len(a), len(b))."""
    if len(boxes_a) == 0 or len(boxes_b) == 0:
        return np.zeros((len(boxes_a), len(boxes_b)))
    a = boxes_a[:, None, :4]
    b = boxes_b[None, :, :4]
    inter_w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    inter_h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    """Centre x, centre y, aspect ratio w/h, height: the Kalman filter's measurement space."""
    w = boxes[:, 2] - boxes[:, 0]
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    return np.stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w / h, h], axis=1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    w = xyah[:, 2] * xyah[:, 3]
    h = xyah[:, 3]
    x1 = xyah[:, 0] - w / 2
    y1 = xyah[:, 1] - h / 2
    return np.stack([x1, y1, x1 + w, y1 + h], axis=1)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """Centre x, centre y, width, height."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return np.stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w, h], axis=1)


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    half = xywh[:, 2:4] / 2
    return np.concatenate([xywh[:, :2] - half, xywh[:, :2] + half], axis=1)
