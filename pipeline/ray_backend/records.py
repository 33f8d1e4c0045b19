"""What a camera worker tells the associator: one record per camera event, sent in chunks through Ray.

Frames never leave the worker's node: a record carries only a frame's timestamp, the local uids of the
tracklets that frame opened, and the tracklets it finished (boxes as one array, the few crops, feet).
"""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.tracklets import Tracklet

OPENED, FRAME, FLUSH, END = "opened", "frame", "flush", "end"


@dataclass
class CameraRecord:
    """``kind``: OPENED (``fps``, ``status``, ``error``), FRAME (one processed frame at ``timestamp``: the local
    uids it ``created``, the ``tracklets`` it finished), FLUSH (tracklets ended by a lost stream) or END (the
    source ended: its last ``tracklets``, ``status`` and ``error``). ``launch`` names the worker that sent it:
    tracklet uids are the worker's own, numbered per launch."""

    camera: str
    launch: int
    kind: str
    timestamp: float = float("nan")
    created: list[int] = field(default_factory=list)
    tracklets: list[Tracklet] = field(default_factory=list)
    fps: float = 0.0
    status: str = "ok"
    error: str = ""


@dataclass
class Chunk:
    """Records in the order the worker made them, the events (kind, fields) it wrote meanwhile and, when the
    run's online assignment uses them (IdentityStage.uses_running_feet), the recent feet of the worker's
    tracks still running (TrackletBuffer.running_feet) after its newest frame, for ``cameras``."""

    records: list[CameraRecord]
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    running: dict[tuple[str, int], np.ndarray] | None = None
    cameras: list[str] = field(default_factory=list)


def compact(tracklet: Tracklet) -> Tracklet:
    """The tracklet as it travels: its per-frame boxes as one (N, 5) array instead of N small ones."""
    return dataclasses.replace(tracklet, boxes=np.asarray(tracklet.boxes, dtype=np.float64).reshape(-1, 5))


def payload_bytes(value: Any) -> int:
    """Serialised size as Ray moves it (pickle 5, numpy buffers out of band), without copying the buffers."""
    buffers: list[pickle.PickleBuffer] = []
    head = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    return len(head) + sum(buffer.raw().nbytes for buffer in buffers)
