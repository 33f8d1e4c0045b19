"""The order in which the associator hands tracklets to the identity stage.

EventTimeOrder (file runs) replays the local runner's frame loop (pipeline/runner.py ``_loop``) over the
camera streams as the workers report them: each camera's next frame is known once its record has arrived
(its watermark), so a frame step is taken only when every camera that has not ended has reported its next
frame. The steps, the cameras in each, the tracklets each step finished and the source-end flushes then
come in the local backend's order, and tracklets get the local backend's uids (numbered as they opened, step
by step, cameras in order): the identity stage sees exactly what it sees in one process, so the ids equal.

ArrivalOrder (live runs) hands tracklets on as they arrive: a stalled stream must not hold up the others.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

from pipeline.ray_backend.records import END, FLUSH, FRAME, OPENED, CameraRecord
from pipeline.tracklets import Tracklet

Deliver = Callable[[list[Tracklet], bool], None]  # (finished tracklets, flush): MultiCameraPipeline._queue


@dataclass
class CameraStream:
    fps: float | None = None  # None until the camera's OPENED record arrived
    records: deque[CameraRecord] = field(default_factory=deque)
    pending: CameraRecord | None = None  # the frame read and not yet stepped (the runner's state.pending)
    ended: bool = False  # its END record was taken
    closed: bool = False  # its END record arrived (or its worker died)
    dead_launch: int = -1  # its worker of this launch (and earlier) died: records still in flight are dropped
    last_time: float = -math.inf  # timestamp of its newest frame record


class Numbering:
    """Run-wide tracklet uids, given in the order the tracklets opened, for the workers' own uids."""

    def __init__(self) -> None:
        self._next = itertools.count(1)
        self._uids: dict[tuple[int, int], int] = {}  # (launch, worker uid) -> run uid

    def opened(self, record: CameraRecord) -> None:
        for local in record.created:
            self._uids[(record.launch, local)] = next(self._next)

    def renumbered(self, record: CameraRecord) -> list[Tracklet]:
        tracklets = record.tracklets
        for tracklet in tracklets:
            tracklet.uid = self._uids.pop((record.launch, tracklet.uid))
        return tracklets


class EventTimeOrder:
    def __init__(self, camera_ids: Sequence[str], deliver: Deliver):
        self.cameras = {camera: CameraStream() for camera in camera_ids}
        self.deliver = deliver
        self.numbering = Numbering()
        self.slot: float | None = None

    def add(self, record: CameraRecord) -> None:
        stream = self.cameras[record.camera]
        if record.launch <= stream.dead_launch:
            return
        if record.kind == OPENED:
            stream.fps = record.fps if record.status == "ok" else 0.0
            stream.ended = stream.closed = record.status != "ok"
            return
        if record.kind == FRAME:
            stream.last_time = record.timestamp
        stream.closed = stream.closed or record.kind == END
        stream.records.append(record)

    def lose(self, camera: str, launch: int) -> None:
        """The camera's worker died: its stream ends after the records that arrived (its open tracklets are lost)."""
        stream = self.cameras[camera]
        stream.dead_launch = max(stream.dead_launch, launch)
        if stream.fps is None:
            stream.fps, stream.ended = 0.0, True
        elif not stream.closed:
            stream.records.append(CameraRecord(camera, launch, END, status="failed"))
        stream.closed = True

    def watermark(self) -> float:
        """The video time every camera still sending has reported (-inf while one has not started)."""
        return min((s.last_time for s in self.cameras.values() if not s.closed), default=math.inf)

    def done(self) -> bool:
        return all(s.ended for s in self.cameras.values())

    def advance(self) -> None:
        """Take every frame step (and source end) the arrived records allow, as the local runner takes them."""
        if self.slot is None:
            if any(s.fps is None for s in self.cameras.values()):
                return
            self.slot = 0.5 / max((s.fps for s in self.cameras.values() if s.fps), default=25.0)
        while True:
            for stream in self.cameras.values():
                if stream.pending is None and not stream.ended:
                    if not stream.records:
                        return  # this camera's next frame is not known yet
                    self._read(stream, stream.records.popleft())
            live = [s for s in self.cameras.values() if s.pending is not None]
            if not live:
                return
            now = min(s.pending.timestamp for s in live)
            step = [s for s in live if s.pending.timestamp <= now + self.slot]
            for stream in step:
                self.numbering.opened(stream.pending)
            finished = [t for stream in step for t in self.numbering.renumbered(stream.pending)]
            for stream in step:
                stream.pending = None
            self.deliver(finished, False)

    def _read(self, stream: CameraStream, record: CameraRecord) -> None:
        if record.kind == FRAME:
            stream.pending = record
        elif record.kind in (END, FLUSH):
            stream.ended = record.kind == END
            self.deliver(self.numbering.renumbered(record), True)


class ArrivalOrder:
    """Live runs: tracklets in the order their records arrive; every record's tracklets are embedded at once."""

    def __init__(self, camera_ids: Sequence[str], deliver: Deliver):
        self.cameras = {camera: CameraStream() for camera in camera_ids}
        self.deliver = deliver
        self.numbering = Numbering()

    def add(self, record: CameraRecord) -> None:
        stream = self.cameras[record.camera]
        if record.launch <= stream.dead_launch or record.kind == OPENED:
            return
        if record.kind == FRAME:
            stream.last_time = record.timestamp
            self.numbering.opened(record)
        if record.tracklets:
            self.deliver(self.numbering.renumbered(record), True)

    def lose(self, camera: str, launch: int) -> None:
        """The camera's worker died; a new launch may take over (its records are kept)."""
        stream = self.cameras[camera]
        stream.dead_launch = max(stream.dead_launch, launch)

    def watermark(self) -> float:
        return math.inf  # live cameras never wait for each other

    def done(self) -> bool:
        return True

    def advance(self) -> None:
        pass
