"""Per-camera multi-object trackers: boxes in, tracks out. Pure numpy.

    from trackers import create_tracker
    tracker = create_tracker("bytetrack", frame_rate=25, track_buffer=60)
    tracks = tracker.update(dets)   # dets (N, 5): x1, y1, x2, y2, score
    # tracks (M, 7): x1, y1, x2, y2, track_id, score, det_index

Parameters come from ``configs/trackers/<name>.yaml`` (or ``config=`` another YAML, e.g. the MOT15
calibrations ``configs/trackers/<name>_mot15.yaml``); keyword overrides win. Score thresholds depend on
the detector: the defaults suit YOLO-family detectors. A custom tracker only
needs an ``update(dets) -> tracks`` method with the same arrays to plug into the pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .byte_tracker import ByteTrackConfig, ByteTracker
from .buffered_byte_tracker import BufferedByteConfig, BufferedByteTracker

TRACKERS = {
    "bytetrack": (ByteTracker, ByteTrackConfig),
    "bytetrack_buffered": (BufferedByteTracker, BufferedByteConfig),
}
DEFAULT_TRACKER = "bytetrack_buffered"
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "trackers"


def available_trackers() -> list[str]:
    return sorted(TRACKERS)


def create_tracker(name: str = DEFAULT_TRACKER, config: str | Path | None = None, **overrides: Any):
    """Build tracker ``name`` from its YAML (or ``config``, a path) plus keyword overrides."""
    from configs import load_dataclass  # the one place a tracker touches a file: its parameters

    if name not in TRACKERS:
        raise ValueError(f"unknown tracker {name!r}; valid trackers: {', '.join(available_trackers())}")
    tracker_cls, config_cls = TRACKERS[name]
    path = Path(config) if config is not None else CONFIG_DIR / f"{name}.yaml"
    return tracker_cls(load_dataclass(config_cls, path if path.is_file() or config else None, **overrides))


__all__ = ["ByteTracker", "ByteTrackConfig", "BufferedByteTracker", "BufferedByteConfig", "create_tracker",
           "available_trackers", "DEFAULT_TRACKER", "TRACKERS"]
