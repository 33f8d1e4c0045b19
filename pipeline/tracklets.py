"""Tracklet buffer: per-camera tracks -> finished tracklets with a few good, time-spread crops.

Memory is bounded whatever the run length: a tracklet holds at most ``max_length`` boxes and
``crops_per_tracklet`` crops, and is finalised when its track is lost past ``lost_timeout`` frames,
reaches ``max_length`` (the track goes on in a new tracklet, ``part`` + 1), or its source ends.

Crop sampling keeps one crop per time bin, the best by quality; the bin width doubles whenever the
bins outnumber M, so a tracklet of any length ends with between M/2 and M crops spread over its span.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from pipeline.appearance import CameraColourStats
from pipeline.config import TrackletConfig
from pipeline.geometry import CameraCalibration, bottom_visible, foot_points

# Why a tracklet ended. After MAX_LENGTH and MATURE cuts the local track goes on in a new tracklet.
LOST, MAX_LENGTH, SOURCE_END = "lost", "max_length", "source_end"
MATURE = "mature"  # live mode cuts a track's first tracklet early so it gets a global id (pipeline/live.py)
CONTINUED_REASONS = (MAX_LENGTH, MATURE)


@dataclass
class Tracklet:
    uid: int  # unique in the run
    camera_id: str
    track_id: int  # the per-camera tracker's id
    part: int  # 0 for the first tracklet of a track, +1 after each max_length cut or re-appearance
    frames: list[int] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)  # x1, y1, x2, y2, score per frame
    visible: list[bool] = field(default_factory=list)  # per box: its bottom edge is seen (geometry.bottom_visible)
    crops: list[np.ndarray] = field(default_factory=list)  # filled when finalised, in time order
    feet: np.ndarray | None = None  # (N, 4) time, foot x, foot y, body height (geometry.foot_points), when finalised
    ground: np.ndarray | None = None  # (N, 2) ground-plane foot positions, when the camera is calibrated
    end_reason: str = ""  # LOST | MAX_LENGTH | SOURCE_END | MATURE
    # crop sampling state: bin index -> (quality, frame, crop)
    _bins: dict[int, tuple[float, int, np.ndarray]] = field(default_factory=dict, repr=False)
    _bin_width: int = field(default=1, repr=False)

    @property
    def first_frame(self) -> int:
        return self.frames[0]

    @property
    def last_frame(self) -> int:
        return self.frames[-1]

    @property
    def start_time(self) -> float:
        return self.timestamps[0]

    @property
    def end_time(self) -> float:
        return self.timestamps[-1]

    def __len__(self) -> int:
        return len(self.frames)

    def mot_rows(self, identity: int) -> np.ndarray:
        """(N, 9) rows ``frame (1-based), id, x, y, w, h, score, ground x, ground y`` of this tracklet under
        ``identity`` (ground -1, -1 when the camera is not calibrated)."""
        boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 5)
        rows = np.full((len(boxes), 9), -1.0)
        rows[:, 0] = np.asarray(self.frames) + 1
        rows[:, 1] = identity
        rows[:, 2:4] = boxes[:, :2]
        rows[:, 4:6] = boxes[:, 2:4] - boxes[:, :2]
        rows[:, 6] = boxes[:, 4]
        if self.ground is not None:
            rows[:, 7:9] = self.ground
        return rows


def crop_quality(boxes: np.ndarray, image_shape: tuple[int, ...], min_height: int) -> np.ndarray:
    """Score in [0, 1] per box: confident, tall, unoccluded by other boxes, not cut by the image border."""
    heights = boxes[:, 3] - boxes[:, 1]
    size = np.clip(heights / (4.0 * max(min_height, 1)), 0.0, 1.0)
    size[heights < min_height] = 0.0
    occluded = max_covered_fraction(boxes)
    height, width = image_shape[:2]
    inside = (boxes[:, 0] > 1) & (boxes[:, 1] > 1) & (boxes[:, 2] < width - 2) & (boxes[:, 3] < height - 2)
    return boxes[:, 4] * size * (1.0 - occluded) * np.where(inside, 1.0, 0.5)


def max_covered_fraction(boxes: np.ndarray) -> np.ndarray:
    """For each box, the largest fraction of its area covered by any single other box."""
    if len(boxes) < 2:
        return np.zeros(len(boxes))
    x1 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = np.clip((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-6, None)
    covered = inter / area[:, None]
    np.fill_diagonal(covered, 0.0)
    return covered.max(axis=1)


def crop_image(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    x1, y1 = max(int(box[0]), 0), max(int(box[1]), 0)
    x2, y2 = min(int(np.ceil(box[2])), width), min(int(np.ceil(box[3])), height)
    return image[y1:y2, x1:x2].copy()


class TrackletBuffer:
    """Collects the tracks of all cameras; ``update`` returns the tracklets finalised by that frame."""

    def __init__(self, config: TrackletConfig, calibration: CameraCalibration | None = None):
        self.config = config
        self.calibration = calibration
        self.active: dict[tuple[str, int], Tracklet] = {}
        self.parts: dict[tuple[str, int], int] = {}  # next part number per (camera, track)
        self._uids = itertools.count(1)
        self.colour = CameraColourStats(config.colour_norm)

    def update(self, camera_id: str, frame_index: int, timestamp: float, image: np.ndarray,
               tracks: np.ndarray) -> list[Tracklet]:
        finished = []
        self.colour.observe(camera_id, image)
        if len(tracks):
            quality = crop_quality(tracks[:, [0, 1, 2, 3, 5]], image.shape, self.config.min_crop_height)
            visible = bottom_visible(tracks[:, :4], image.shape[0])
            for track, score, seen in zip(tracks, quality, visible):
                finished.extend(self._add(camera_id, frame_index, timestamp, image, track, float(score), bool(seen)))
        finished.extend(self._expire(camera_id, frame_index))
        return finished

    def running_feet(self, recent: int = 50) -> dict[tuple[str, int], np.ndarray]:
        """(camera, track id) -> foot points (geometry.foot_points) of the last ``recent`` boxes of every running
        tracklet: where the people being tracked are now, for geometry with tracklets of other cameras."""
        return {key: foot_points(t.timestamps[-recent:], t.boxes[-recent:], t.visible[-recent:])
                for key, t in self.active.items()}

    def flush(self, camera_id: str | None = None) -> list[Tracklet]:
        """Finalise every active tracklet (of one camera, or all): the source ended."""
        keys = [k for k in self.active if camera_id is None or k[0] == camera_id]
        return [self._finalise(key, SOURCE_END) for key in keys]

    def _add(self, camera_id: str, frame_index: int, timestamp: float, image: np.ndarray, track: np.ndarray,
             quality: float, bottom_seen: bool) -> list[Tracklet]:
        key = (camera_id, int(track[4]))
        tracklet = self.active.get(key)
        if tracklet is None:
            part = self.parts.get(key, 0)
            self.parts[key] = part + 1
            tracklet = self.active[key] = Tracklet(next(self._uids), camera_id, key[1], part)
        tracklet.frames.append(frame_index)
        tracklet.timestamps.append(timestamp)
        tracklet.boxes.append(np.asarray([*track[:4], track[5]], dtype=np.float64))
        tracklet.visible.append(bottom_seen)
        if quality > 0:
            self._offer_crop(tracklet, frame_index, image, track[:4], quality)
        if len(tracklet) >= self.config.max_length:
            return [self._finalise(key, MAX_LENGTH)]
        return []

    def _offer_crop(self, tracklet: Tracklet, frame_index: int, image: np.ndarray, box: np.ndarray,
                    quality: float) -> None:
        slot = (frame_index - tracklet.first_frame) // tracklet._bin_width
        current = tracklet._bins.get(slot)
        if current is not None and current[0] >= quality:
            return
        tracklet._bins[slot] = (quality, frame_index, crop_image(image, box))
        while len(tracklet._bins) > self.config.crops_per_tracklet:
            self._widen_bins(tracklet)

    @staticmethod
    def _widen_bins(tracklet: Tracklet) -> None:
        tracklet._bin_width *= 2
        merged: dict[int, tuple[float, int, np.ndarray]] = {}
        for quality, frame, crop in tracklet._bins.values():
            slot = (frame - tracklet.first_frame) // tracklet._bin_width
            if slot not in merged or merged[slot][0] < quality:
                merged[slot] = (quality, frame, crop)
        tracklet._bins = merged

    def _expire(self, camera_id: str, frame_index: int) -> list[Tracklet]:
        timeout = self.config.lost_timeout
        lost = [k for k, t in self.active.items() if k[0] == camera_id and frame_index - t.last_frame > timeout]
        return [self._finalise(key, LOST) for key in lost]

    def _finalise(self, key: tuple[str, int], reason: str) -> Tracklet:
        tracklet = self.active.pop(key)
        tracklet.end_reason = reason
        tracklet.crops = [self.colour.normalise(tracklet.camera_id, crop)
                          for _, _, crop in sorted(tracklet._bins.values(), key=lambda item: item[1])]
        tracklet._bins = {}
        tracklet.feet = foot_points(tracklet.timestamps, tracklet.boxes, tracklet.visible)
        if self.calibration is not None:
            tracklet.ground = self.calibration.to_ground(tracklet.camera_id, tracklet.feet[:, 1:3])
        return tracklet
