"""OC-Byte: ByteTrack with observation-centric recovery and frame-rate-aware matching.

ByteTrack trusts its Kalman prediction. That fails in two common situations, which this tracker
addresses without appearance features:

* **Low frame rates** (surveillance cameras at 5-15 fps): people move a large part of their own
  width between frames, so predicted and detected boxes barely overlap. Boxes are expanded by a
  margin before IoU (the buffered IoU of C-BIoU, Yang et al. WACV 2023); the margin grows as the
  frame rate falls, so one parameter set serves 7 fps and 30 fps sequences.
* **Occlusion**: while a track is lost its prediction drifts. Observation-centric recovery (OCR,
  OC-SORT, Cao et al. CVPR 2023) gives unmatched tracks a second chance against their last
  *observed* box, and observation-centric re-update (ORU) replays the occlusion gap with a
  straight-line virtual trajectory once the track is found again, so the velocity estimate is not
  poisoned by the drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .byte_tracker import LOST, ByteTrackConfig, ByteTracker
from .geometry import iou_matrix, xyxy_to_xyah
from .matching import linear_assignment


@dataclass
class OCByteConfig(ByteTrackConfig):
    buffer_margin: float = 0.1  # box expansion (fraction of w/h per side) at 30 fps
    buffer_max: float = 0.5  # cap on the expansion at very low frame rates
    recovery_match_thresh: float = 0.7  # max 1-IoU cost against the last observed box (OCR)
    recovery_max_age: int = 30  # frames (at 30 fps) a lost track may be recovered by OCR
    re_update: bool = True  # ORU: replay the occlusion gap on re-association
    reconnect_distance: float = 0.0  # lost tracks: max centre distance in track heights (0 = off)
    reconnect_height_ratio: float = 1.5  # and max height ratio between track and detection
    reconnect_use_prediction: bool = True


class OCByteTracker(ByteTracker):
    config: OCByteConfig

    def __init__(self, config: OCByteConfig | None = None):
        super().__init__(config or OCByteConfig())

    @property
    def margin(self) -> float:
        cfg = self.config
        return min(cfg.buffer_max, cfg.buffer_margin * 30.0 / max(cfg.frame_rate, 1e-6))

    def _cost(self, track_idx: np.ndarray, dets: np.ndarray, fuse_score: bool) -> np.ndarray:
        similarity = iou_matrix(expand(self.tracks.boxes[track_idx], self.margin), expand(dets, self.margin))
        if fuse_score:
            similarity = similarity * dets[None, :, 4]
        return 1.0 - similarity

    def _associate_extra(self, dets, high, det_free, track_free) -> None:
        self._recover_by_last_observation(dets, high, det_free, track_free)
        self._reconnect_by_distance(dets, high, det_free, track_free)

    def _reconnect_by_distance(self, dets, high, det_free, track_free) -> None:
        cfg = self.config
        t = self.tracks
        if cfg.reconnect_distance <= 0:
            return
        track_idx = np.flatnonzero(t.confirmed & track_free & (t.state == LOST))
        det_idx = np.flatnonzero(high & det_free)
        if len(track_idx) == 0 or len(det_idx) == 0:
            return
        boxes = t.boxes[track_idx] if cfg.reconnect_use_prediction else t.obs_box[track_idx]
        tc = (boxes[:, :2] + boxes[:, 2:4]) / 2
        th = boxes[:, 3] - boxes[:, 1]
        d = dets[det_idx]
        dc = (d[:, :2] + d[:, 2:4]) / 2
        dh = d[:, 3] - d[:, 1]
        dist = np.linalg.norm(tc[:, None] - dc[None], axis=2) / th[:, None]
        ratio = np.maximum(th[:, None] / dh[None], dh[None] / th[:, None])
        cost = np.where(ratio <= cfg.reconnect_height_ratio, dist, np.inf)
        matches, _, _ = linear_assignment(cost, cfg.reconnect_distance)
        self._apply_matches(track_idx[matches[:, 0]], det_idx[matches[:, 1]], dets, det_free, track_free)

    def _recover_by_last_observation(self, dets, high, det_free, track_free) -> None:
        """OCR: unmatched confirmed tracks against leftover high-score boxes, by last observation."""
        t = self.tracks
        cfg = self.config
        if cfg.recovery_max_age <= 0:
            return
        max_age = max(1, round(cfg.frame_rate / 30.0 * cfg.recovery_max_age))
        track_idx = np.flatnonzero(t.confirmed & track_free & (self.frame_id - t.obs_frame <= max_age))
        det_idx = np.flatnonzero(high & det_free)
        if len(track_idx) == 0 or len(det_idx) == 0:
            return
        cost = 1.0 - iou_matrix(expand(t.obs_box[track_idx], self.margin), expand(dets[det_idx], self.margin))
        matches, _, _ = linear_assignment(cost, cfg.recovery_match_thresh)
        self._apply_matches(track_idx[matches[:, 0]], det_idx[matches[:, 1]], dets, det_free, track_free)

    def _on_rematch(self, track_idx: np.ndarray, boxes: np.ndarray) -> None:
        """ORU: re-run the filter from the last observation along a straight virtual path."""
        if not self.config.re_update:
            return
        t = self.tracks
        for i, box in zip(track_idx, boxes):
            gap = int(self.frame_id - t.obs_frame[i])
            if gap <= 1:
                continue
            start, end = xyxy_to_xyah(t.obs_box[i : i + 1]), xyxy_to_xyah(box[None])
            mean, cov = t.obs_mean[i : i + 1], t.obs_cov[i : i + 1]
            for step in range(1, gap):
                mean, cov = self.kalman.predict(mean, cov)
                mean, cov = self.kalman.update(mean, cov, start + (end - start) * step / gap)
            t.mean[i], t.cov[i] = self.kalman.predict(mean, cov)


def expand(boxes: np.ndarray, margin: float) -> np.ndarray:
    """Grow ``x1, y1, x2, y2`` boxes by ``margin`` of their width/height on every side."""
    if margin <= 0:
        return boxes[:, :4]
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    pad = np.stack([-w, -h, w, h], axis=1) * margin
    return boxes[:, :4] + pad
