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
    out = xyxy_to_xywh(boxes)
    out[:, 3] = np.maximum(out[:, 3], 1e-6)
    out[:, 2] /= out[:, 3]
    return out


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    xywh = xyah[:, :4].copy()
    xywh[:, 2] *= xywh[:, 3]
    return xywh_to_xyxy(xywh)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """Centre x, centre y, width, height."""
    out = np.empty((len(boxes), 4))
    out[:, 2:4] = boxes[:, 2:4] - boxes[:, 0:2]
    out[:, 0:2] = boxes[:, 0:2] + out[:, 2:4] / 2
    return out


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    out = np.empty((len(xywh), 4))
    half = xywh[:, 2:4] / 2
    out[:, 0:2] = xywh[:, 0:2] - half
    out[:, 2:4] = xywh[:, 0:2] + half
    return out
