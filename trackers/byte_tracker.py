"""ByteTrack: track by associating every detection box, high and low score.

Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every Detection Box", ECCV 2022.
Per frame:
  1. predict every track with a constant-velocity Kalman filter;
  2. match confirmed tracks (tracked and recently lost) to high-score detections by IoU;
  3. match the still-unmatched tracked tracks to low-score detections (occluded people often
     score low, and these boxes keep their tracks alive instead of starting false ones);
  4. match tentative tracks to the leftover high-score detections; unmatched tentatives die;
  5. start tentative tracks from leftover detections above ``new_track_thresh``;
  6. forget tracks lost for longer than the buffer.

All tracks live in stacked numpy arrays (see ``TrackTable``), so a frame costs a fixed number of
vectorised calls rather than a Python loop per track. Subclasses extend the association through
``_search_boxes`` (see ``buffered_byte_tracker.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import iou_matrix
from .kalman import BatchKalmanFilter
from .matching import linear_assignment

TENTATIVE, TRACKED, LOST = 0, 1, 2


@dataclass
class ByteTrackConfig:
    track_high_thresh: float = 0.6  # detections at or above: first association
    track_low_thresh: float = 0.1  # detections between low and high: second association only
    new_track_thresh: float = 0.7  # a leftover detection must score this to start a track
    match_thresh: float = 0.8  # max cost (1 - IoU) in the first association
    low_match_thresh: float = 0.5  # max cost in the second association
    tentative_match_thresh: float = 0.7  # max cost when confirming tentative tracks
    track_buffer: int = 30  # frames (at 30 fps) a lost track is kept for re-identification
    fuse_score: bool = True  # first-association cost uses IoU x detection score
    kalman_box_space: str = "xyah"  # "xyah" (ByteTrack) or "xywh" (BoT-SORT: width estimated on its own)
    frame_rate: float = 30.0


class TrackTable:
    """Column store of tracks: row i of every array belongs to one track."""

    COLUMNS = ("track_id", "state", "confirmed", "mean", "cov", "score", "last_frame", "det_index")

    def __init__(self):
        self.track_id = np.zeros(0, dtype=np.int64)
        self.state = np.zeros(0, dtype=np.int8)
        self.confirmed = np.zeros(0, dtype=bool)
        self.mean = np.zeros((0, 8))
        self.cov = np.zeros((0, 8, 8))
        self.score = np.zeros(0)
        self.last_frame = np.zeros(0, dtype=np.int64)
        self.det_index = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.track_id)

    def keep(self, mask: np.ndarray) -> None:
        if mask.all():
            return
        for name in self.COLUMNS:
            setattr(self, name, getattr(self, name)[mask])

    def append(self, other: "TrackTable") -> None:
        for name in self.COLUMNS:
            setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)]))



class ByteTracker:
    def __init__(self, config: ByteTrackConfig | None = None):
        self.config = config or ByteTrackConfig()
        self.kalman = BatchKalmanFilter(self.config.kalman_box_space)
        self.reset()

    @property
    def max_time_lost(self) -> int:
        return max(1, int(round(self.config.frame_rate / 30.0 * self.config.track_buffer)))

    def reset(self) -> None:
        self.tracks = TrackTable()
        self.frame_id = 0
        self._next_id = 1

    def update(self, dets: np.ndarray) -> np.ndarray:
        """Advance one frame. ``dets``: (N, 5) ``x1, y1, x2, y2, score``.

        Returns (M, 7) ``x1, y1, x2, y2, track_id, score, det_index`` for the confirmed tracks that a
        detection updated in this frame (``det_index`` is that detection's row in ``dets``).
        """
        dets = _as_detections(dets)
        cfg = self.config
        self.frame_id += 1
        t = self.tracks
        t.mean, t.cov = self.kalman.predict(*self._freeze_lost_height_velocity(t.mean, t.cov))
        self._predicted_boxes = self.kalman.boxes(t.mean)  # valid for every track not yet matched

        det_free = np.ones(len(dets), dtype=bool)
        track_free = np.ones(len(t), dtype=bool)
        scores = dets[:, 4]
        high = scores >= cfg.track_high_thresh
        low = (scores >= cfg.track_low_thresh) & ~high

        pool = t.confirmed & track_free
        self._match(pool, high & det_free, dets, cfg.match_thresh, cfg.fuse_score, det_free, track_free)
        pool = t.confirmed & track_free & (t.state == TRACKED)
        self._match(pool, low & det_free, dets, cfg.low_match_thresh, False, det_free, track_free)

        t.state[t.confirmed & track_free & (t.state == TRACKED)] = LOST
        tentative = ~t.confirmed & track_free
        self._match(tentative, high & det_free, dets, cfg.tentative_match_thresh, cfg.fuse_score, det_free, track_free)
        self._confirm(~t.confirmed & ~track_free)

        stale = (t.state == LOST) & (self.frame_id - t.last_frame > self.max_time_lost)
        t.keep(~(tentative & track_free) & ~stale)
        self._start_tracks(dets, np.flatnonzero(det_free & high & (scores >= cfg.new_track_thresh)))
        return self._output()

    # --- association steps -------------------------------------------------------------------

    def _match(self, track_mask, det_mask, dets, max_cost, fuse_score, det_free, track_free) -> None:
        track_idx = np.flatnonzero(track_mask)
        det_idx = np.flatnonzero(det_mask)
        if len(track_idx) == 0 or len(det_idx) == 0:
            return
        cost = self._cost(track_idx, dets[det_idx], fuse_score)
        matches, _, _ = linear_assignment(cost, max_cost)
        self._apply_matches(track_idx[matches[:, 0]], det_idx[matches[:, 1]], dets, det_free, track_free)

    def _cost(self, track_idx: np.ndarray, dets: np.ndarray, fuse_score: bool) -> np.ndarray:
        similarity = iou_matrix(self._search_boxes(track_idx), dets)
        if fuse_score:
            similarity = similarity * dets[None, :, 4]
        return 1.0 - similarity

    def _search_boxes(self, track_idx: np.ndarray) -> np.ndarray:
        """The boxes detections must overlap to match these tracks: their predictions."""
        return self._predicted_boxes[track_idx]

    def _apply_matches(self, track_idx, det_idx, dets, det_free, track_free) -> None:
        if len(track_idx) == 0:
            return
        t = self.tracks
        t.mean[track_idx], t.cov[track_idx] = self.kalman.update(
            t.mean[track_idx], t.cov[track_idx], self.kalman.measure(dets[det_idx, :4]))
        t.state[track_idx] = TRACKED
        t.score[track_idx] = dets[det_idx, 4]
        t.last_frame[track_idx] = self.frame_id
        t.det_index[track_idx] = det_idx
        det_free[det_idx] = False
        track_free[track_idx] = False

    # --- track life cycle --------------------------------------------------------------------

    def _confirm(self, mask: np.ndarray) -> None:
        count = int(mask.sum())
        self.tracks.confirmed[mask] = True
        self.tracks.track_id[mask] = np.arange(self._next_id, self._next_id + count)
        self._next_id += count

    def _start_tracks(self, dets: np.ndarray, det_idx: np.ndarray) -> None:
        if len(det_idx) == 0:
            return
        new = TrackTable()
        n = len(det_idx)
        new.mean, new.cov = self.kalman.initiate(self.kalman.measure(dets[det_idx, :4]))
        new.track_id = np.zeros(n, dtype=np.int64)
        new.state = np.full(n, TRACKED, dtype=np.int8)
        new.confirmed = np.zeros(n, dtype=bool)
        new.score = dets[det_idx, 4].copy()
        new.last_frame = np.full(n, self.frame_id, dtype=np.int64)
        new.det_index = det_idx.astype(np.int64)
        first = len(self.tracks)
        self.tracks.append(new)
        if self.frame_id == 1:  # as in ByteTrack: the first frame's tracks need no confirmation
            mask = np.zeros(len(self.tracks), dtype=bool)
            mask[first:] = True
            self._confirm(mask)

    def _freeze_lost_height_velocity(self, mean: np.ndarray, cov: np.ndarray):
        mean = mean.copy()
        mean[self.tracks.state != TRACKED, 7] = 0.0
        return mean, cov

    def _output(self) -> np.ndarray:
        t = self.tracks
        live = t.confirmed & (t.last_frame == self.frame_id)
        out = np.empty((int(live.sum()), 7))
        out[:, :4] = self.kalman.boxes(t.mean[live])
        out[:, 4] = t.track_id[live]
        out[:, 5] = t.score[live]
        out[:, 6] = t.det_index[live]
        return out


def _as_detections(dets) -> np.ndarray:
    dets = np.asarray(dets, dtype=np.float64)
    if dets.size == 0:
        return np.zeros((0, 5))
    if dets.ndim != 2 or dets.shape[1] < 5:
        raise ValueError(f"detections must be an (N, 5) array x1, y1, x2, y2, score; got shape {dets.shape}")
    if not np.all(np.isfinite(dets[:, :5])):
        raise ValueError("detections contain NaN or infinite values")
    return dets[:, :5]
