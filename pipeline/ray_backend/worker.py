"""The camera half of the pipeline, run by a camera worker: read -> detect -> track -> tracklet buffer.

It is the runner's own frame loop (MultiCameraPipeline, or LivePipeline for live runs) over the worker's
cameras; what the runner would hand to its identity stage becomes CameraRecords for the associator
(pipeline/ray_backend/records.py), sent through an Outbox (chunks, backpressure; pipeline/ray_backend/actors.py).
"""

from __future__ import annotations

import time
from typing import Any, Protocol, Sequence

from pipeline.association import IdentityStage
from pipeline.config import PipelineConfig
from pipeline.geometry import CameraCalibration
from pipeline.live import LivePipeline, RenumberedTracker, StopSignals
from pipeline.ray_backend.records import END, FLUSH, FRAME, OPENED, CameraRecord, compact
from pipeline.runner import MultiCameraPipeline, SourceState, StageTimer
from pipeline.sources import StreamSource
from pipeline.store import colour_stats_of
from pipeline.tracklets import Tracklet


class Outbox(Protocol):
    running_feet: Any  # None, or () -> (TrackletBuffer.running_feet(), cameras) sent with each message

    def put(self, record: CameraRecord) -> None: ...
    def event(self, kind: str, fields: dict[str, Any]) -> None: ...
    def idle(self) -> None: ...  # nothing to read now: send what waits if it has waited long enough
    def close(self) -> None: ...  # send the rest and wait until the associator took it


class ForwardedEvents:
    """The runner's OutputWriter as far as the camera loop uses it: its events go to the associator."""

    def __init__(self, outbox: Outbox):
        self.outbox = outbox

    def event(self, kind: str, **fields: Any) -> None:
        self.outbox.event(kind, fields)


class CameraWorkerMixin:
    """Mixed in before MultiCameraPipeline or LivePipeline: ``run_cameras`` runs their frame loop alone."""

    def attach(self, outbox: Outbox, launch: int, track_offsets: dict[str, int] | None = None) -> None:
        self.outbox, self.launch = outbox, launch
        self.track_offsets = track_offsets or {}  # a restarted live camera's track ids go on above these
        self._in_step, self._ending, self._step_finished = False, None, []

    def run_cameras(self, specs: Sequence[str], camera_ids: Sequence[str]) -> dict[str, Any]:
        camera_ids = list(camera_ids)
        states = [self._open(spec, camera) for spec, camera in zip(specs, camera_ids)]
        self._build_camera_components(camera_ids)
        self.writer = ForwardedEvents(self.outbox)
        self.timer, self.counts = StageTimer(), {"detections": 0, "steps": 0}
        run_cameras = self.config.camera_ids or camera_ids  # the run's cameras (the driver names them all)
        self.buffer = self._tracklet_buffer(CameraCalibration.from_config(self.config.cameras, run_cameras))
        if IdentityStage(self.config).uses_running_feet:
            self.outbox.running_feet = lambda: (self.buffer.running_feet(), camera_ids)
        for state in states:
            if state.source is not None:
                state.tracker = self._tracker_for(state)
            else:
                self.writer.event("source_error", camera=state.camera_id, error=state.error, frame=None)
            self.outbox.put(CameraRecord(state.camera_id, self.launch, OPENED, status=state.status, error=state.error,
                                         fps=float(state.source.fps) if state.source is not None else 0.0))
        started = time.perf_counter()
        try:
            self._loop(states)
            for state in states:  # live runs stop with streams still going
                if state.status == "ok" and state.source is not None and state.frames is not None:
                    self._end(state, self.buffer.flush(state.camera_id))
            return self._report(states, time.perf_counter() - started)
        finally:
            self.outbox.close()

    def _tracker_for(self, state: SourceState) -> Any:
        offset = self.track_offsets.get(state.camera_id, 0)
        tracker = self.tracker_factory(state.source.fps)
        return RenumberedTracker(tracker, offset) if offset else tracker

    # ---- the runner's hooks ------------------------------------------------------------------------------
    def _next_frame(self, state: SourceState) -> bool:
        if super()._next_frame(state):
            return True
        self._ending = state  # the runner flushes its tracklets next (_queue)
        return False

    def _step(self, batch: list[SourceState]) -> None:
        stamps = [(state.camera_id, state.pending.timestamp) for state in batch]
        known = {tracklet.uid for tracklet in self.buffer.active.values()}
        self._in_step, self._step_finished = True, []
        try:
            super()._step(batch)
        finally:
            self._in_step = False
        created: dict[str, list[int]] = {}
        for tracklet in sorted(self.buffer.active.values(), key=lambda t: t.uid):
            if tracklet.uid not in known:
                created.setdefault(tracklet.camera_id, []).append(tracklet.uid)
        for camera, timestamp in stamps:
            finished = [compact(t) for t in self._step_finished if t.camera_id == camera]
            self.outbox.put(CameraRecord(camera, self.launch, FRAME, timestamp, created.get(camera, []), finished))

    def _queue(self, finished: list[Tracklet], flush: bool = False) -> None:
        if self._in_step:
            self._step_finished = finished
        elif self._ending is not None:
            state, self._ending = self._ending, None
            self._end(state, finished)
        else:  # a live stream was lost: its tracks ended, the camera goes on
            for camera in dict.fromkeys(t.camera_id for t in finished):
                self.outbox.put(CameraRecord(camera, self.launch, FLUSH,
                                             tracklets=[compact(t) for t in finished if t.camera_id == camera]))

    def _assign_embedded(self, keep: int | None = None) -> None:
        self.outbox.idle()  # the live loop calls this while no frame is ready

    def _end(self, state: SourceState, finished: list[Tracklet]) -> None:
        state.frames = None
        self.outbox.put(CameraRecord(state.camera_id, self.launch, END, tracklets=[compact(t) for t in finished],
                                     status=state.status, error=state.error))

    def _restart_tracker(self, state: SourceState) -> None:
        offset = max(max(state.track_ids, default=0), self.track_offsets.get(state.camera_id, 0))
        state.tracker = RenumberedTracker(self.tracker_factory(state.source.fps), offset)

    # ---- report ----------------------------------------------------------------------------------------
    def _report(self, states: list[SourceState], wall: float) -> dict[str, Any]:
        cameras = []
        for state in states:
            stream = state.source.report() if isinstance(state.source, StreamSource) else None
            if hasattr(self, "_mark_failed_stream"):
                self._mark_failed_stream(state, stream)
            entry = {"report": state.report(), "track_ids": sorted(state.track_ids), "stream": stream}
            if stream is not None:
                entry["report"]["state"] = stream["state"]
            cameras.append(entry)
            state.source and state.source.close()
        return {"cameras": cameras, "seconds": dict(self.timer.seconds), "detections": self.counts["detections"],
                "colour": colour_stats_of(self.buffer.colour), "wall_s": wall}


class FileCameraWorker(CameraWorkerMixin, MultiCameraPipeline):
    pass


class LiveCameraWorker(CameraWorkerMixin, LivePipeline):
    def run_cameras(self, specs: Sequence[str], camera_ids: Sequence[str]) -> dict[str, Any]:
        self.stop = StopSignals()  # not entered: a worker is stopped by its actor's stop() (not the main thread)
        return super().run_cameras(specs, camera_ids)


def camera_worker(config: PipelineConfig, live: bool) -> CameraWorkerMixin:
    return (LiveCameraWorker if live else FileCameraWorker)(config)
