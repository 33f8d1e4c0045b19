"""Live mode: cameras that never end, global ids as tracklets mature, a clean stop on a signal.

    pipeline = LivePipeline(config)            # association.refine is off: ids are final when emitted
    summary = pipeline.run(["rtsp://cam1/stream", "rtsp://cam2/stream"])

The loop polls every source without blocking (``StreamSource.read(timeout=0)``) and sends the frames
that are ready to the detector as one batch, so a camera that is down or stalled never holds up the
others. Stream states (connecting / connected / reconnecting / gone) become ``stream_state`` events;
a lost stream's tracks are ended and, once it is back, it is tracked afresh (its local track ids keep
counting up, so no new person inherits an old one's global id).

A track's first tracklet is cut, embedded and assigned once it holds ``live.mature_after`` boxes; the
track goes on under that id. Latency is measured from each frame's capture (``captured_at``) to the
end of its tracking step and to the written events of the tracklets it completed.

The run stops after ``live.duration_s`` or at the first SIGINT/SIGTERM: reading stops, tracklets in
flight are embedded and written, then the summary. A second signal exits at once.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import signal
import threading
import time
from collections import deque
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from pipeline.association import Assignment
from pipeline.config import PipelineConfig, TrackletConfig
from pipeline.geometry import CameraCalibration
from pipeline.runner import MultiCameraPipeline, SourceState
from pipeline.sources import Source, StreamSource, StreamState, is_stream_url
from pipeline.tracklets import CONTINUED_REASONS, MATURE, Tracklet, TrackletBuffer

log = logging.getLogger(__name__)

IDLE_WAIT_S = 0.005  # nothing to read: wait this long before polling again
LATENCY_WINDOW = 20_000  # latency samples kept (the newest): bounded memory on runs of any length


def is_live_run(sources: Sequence[str | Source], config: PipelineConfig) -> bool:
    """Live mode: any stream URL among the sources, or a bounded ``live.duration_s``."""
    return config.live.duration_s > 0 or any(isinstance(s, str) and is_stream_url(s) for s in sources)


class StopSignals:
    """First SIGINT/SIGTERM: ``requested`` names it and the loop winds down; a second one exits at once."""

    def __init__(self) -> None:
        self.requested = ""
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # Python only allows handlers there
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.requested:
            os.write(2, f"{name} again: exiting at once, outputs may be incomplete\n".encode())
            os._exit(128 + signum)
        self.requested = name
        log.warning("%s: stopping; finishing tracklets in flight and writing outputs (%s again exits at once)",
                    name, name)


class LatencyStats:
    """The newest ``LATENCY_WINDOW`` delays in seconds, summarised as median / p95 / max."""

    def __init__(self) -> None:
        self.samples: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.count = 0

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)
        self.count += 1

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {"n": 0, "median_s": None, "p95_s": None, "max_s": None}
        values = np.fromiter(self.samples, dtype=np.float64)
        return {"n": self.count, "median_s": round(float(np.median(values)), 4),
                "p95_s": round(float(np.percentile(values, 95)), 4), "max_s": round(float(values.max()), 4)}


class MaturingBuffer(TrackletBuffer):
    """Cuts a track's first tracklet once it holds ``mature_after`` boxes and the track goes on.

    The cut waits for the track's next box, which opens the continuation tracklet: a continuation
    therefore always follows and ends normally (lost / source end), so the associator never keeps an
    identity busy for a track that in fact ended exactly at the cut.
    """

    def __init__(self, config: TrackletConfig, mature_after: int, calibration: CameraCalibration | None = None):
        super().__init__(config, calibration)
        self.mature_after = mature_after
        self.continuing: set[tuple[str, int]] = set()  # tracks whose first tracklet was already cut

    def update(self, camera_id: str, frame_index: int, timestamp: float, image: np.ndarray,
               tracks: np.ndarray) -> list[Tracklet]:
        ripe = [self._finalise(key, MATURE) for key in self._ripe(camera_id, tracks)]
        return ripe + super().update(camera_id, frame_index, timestamp, image, tracks)

    def _ripe(self, camera_id: str, tracks: np.ndarray) -> list[tuple[str, int]]:
        if not self.mature_after:
            return []
        keys = ((camera_id, int(track_id)) for track_id in tracks[:, 4]) if len(tracks) else ()
        return [key for key in keys if key not in self.continuing and key in self.active
                and len(self.active[key]) >= self.mature_after]

    def _finalise(self, key: tuple[str, int], reason: str) -> Tracklet:
        if reason in CONTINUED_REASONS:
            self.continuing.add(key)
        else:
            self.continuing.discard(key)
        return super()._finalise(key, reason)


class RenumberedTracker:
    """A fresh tracker whose local ids start above ``offset``: ids stay unique per camera across resets."""

    def __init__(self, tracker: Any, offset: int):
        self.tracker = tracker
        self.offset = offset

    def update(self, detections: np.ndarray) -> np.ndarray:
        tracks = self.tracker.update(detections)
        if len(tracks):
            tracks = np.array(tracks, dtype=np.float64)
            tracks[:, 4] += self.offset
        return tracks


class LivePipeline(MultiCameraPipeline):
    """MultiCameraPipeline for live sources: polling loop, maturing tracklets, signals, latency."""

    background_refit = True  # the polling loop must not stall ~0.3 s while the online scene metric is refitted
    store_by_default = True  # identities survive restarts: <out>/identities.sqlite unless store.path says otherwise

    def __init__(self, config: PipelineConfig, **components: Any):
        config = copy.deepcopy(config)
        if config.association.refine:
            log.info("live mode: association.refine is off (global ids are final when emitted)")
        config.association.refine = False
        super().__init__(config, **components)
        if self.identity_stage is not None and self.identity_stage.offline:
            raise ValueError("live mode assigns ids online only: build its identity stage from a config with "
                             "association.refine false")

    def run(self, sources: Sequence[str | Source]) -> dict[str, Any]:
        with StopSignals() as self.stop:
            return super().run(sources)

    def _tracklet_buffer(self, calibration: CameraCalibration) -> TrackletBuffer:
        return MaturingBuffer(self.config.tracklets, self.config.live.mature_after, calibration)

    # ---- loop ----------------------------------------------------------------------------------------
    def _loop(self, states: list[SourceState]) -> None:
        self.frame_latency, self.event_latency = LatencyStats(), LatencyStats()
        self.captured_at: dict[int, float] = {}  # tracklet uid -> capture time of the frame that completed it
        self.step_captures: dict[str, float] = {}
        self.stream_states: dict[str, StreamState] = {}
        duration = self.config.live.duration_s
        self.writer.event("live_started", cameras=[s.camera_id for s in states], duration_s=duration or None,
                          time=time.time())
        started = time.monotonic()
        deadline = started + duration if duration else math.inf
        self.stopped_by = "signal"
        with tqdm(desc="live", unit="frame", disable=not self.config.progress) as bar:
            while not self.stop.requested:
                if time.monotonic() >= deadline:
                    self.stopped_by = "duration"
                    break
                self._watch_streams(states)
                batch = [state for state in states if self._poll(state)]
                if batch:
                    self._live_step(batch)
                    bar.update(len(batch))
                elif not any(self._readable(state) for state in states):
                    self.stopped_by = "sources ended"
                    break
                else:
                    self._assign_embedded()  # write what the embedding worker finished meanwhile
                    time.sleep(IDLE_WAIT_S)
        self.live_s = time.monotonic() - started
        self.writer.event("live_stopping", reason=self.stop.requested or self.stopped_by, time=time.time())
        log.info("live run stopping (%s) after %.1f s", self.stop.requested or self.stopped_by, self.live_s)

    @staticmethod
    def _readable(state: SourceState) -> bool:
        if state.status != "ok" or state.source is None:
            return False
        return not state.source.gave_up if isinstance(state.source, StreamSource) else state.frames is not None

    def _poll(self, state: SourceState) -> bool:
        """Take the source's next frame into ``state.pending`` if one is ready; never blocks on a stream."""
        if not self._readable(state):
            return False
        if not isinstance(state.source, StreamSource):  # files and webcams: read as fast as processed
            if self._next_frame(state):
                return True
            self._queue(self.buffer.flush(state.camera_id))
            return False
        state.pending = state.source.read(timeout=0)
        if state.pending is None:
            return False
        state.frames_read += 1
        return True

    def _live_step(self, batch: list[SourceState]) -> None:
        self.step_captures = {s.camera_id: s.pending.captured_at for s in batch if hasattr(s.pending, "captured_at")}
        self._step(batch)
        done = time.time()
        for captured in self.step_captures.values():
            self.frame_latency.add(done - captured)

    def _queue(self, finished: list[Tracklet], flush: bool = True) -> None:
        """Live: every finished tracklet goes to the embedder now (no waiting for a full batch)."""
        for tracklet in finished:
            if tracklet.camera_id in self.step_captures:
                self.captured_at[tracklet.uid] = self.step_captures[tracklet.camera_id]
        super()._queue(finished, flush=True)

    def _write(self, tracklets: list[Tracklet], assignments: list[Assignment]) -> None:
        super()._write(tracklets, assignments)
        written = time.time()
        for tracklet in tracklets:
            captured = self.captured_at.pop(tracklet.uid, None)
            if captured is not None:
                self.event_latency.add(written - captured)

    # ---- stream states ----------------------------------------------------------------------------
    def _watch_streams(self, states: list[SourceState]) -> None:
        for state in states:
            if not isinstance(state.source, StreamSource):
                continue
            current = state.source.state
            previous = self.stream_states.get(state.camera_id, StreamState.CONNECTING)
            if current == previous:
                continue
            self.stream_states[state.camera_id] = current
            report = state.source.report()
            self.writer.event("stream_state", camera=state.camera_id, state=current.value, previous=previous.value,
                              frames_processed=state.frames_read, frames_read=report["frames_read"],
                              error=report["last_error"] or None, time=time.time())
            if previous == StreamState.CONNECTED:  # its tracks ended with the stream
                self._queue(self.buffer.flush(state.camera_id))
            if current == StreamState.CONNECTED:
                self._restart_tracker(state)

    def _restart_tracker(self, state: SourceState) -> None:
        """A (re)connected stream starts a new scene at its own frame rate: track it afresh."""
        offset = max(state.track_ids, default=0)
        state.tracker = RenumberedTracker(self.tracker_factory(state.source.fps), offset)

    # ---- summary ----------------------------------------------------------------------------------
    def _summary(self, states: list[SourceState], final_ids: dict[int, int] | None, mode: str, wall: float) -> dict:
        streams = {s.camera_id: s.source.report() for s in states if isinstance(s.source, StreamSource)}
        for state in states:
            self._mark_failed_stream(state, streams.get(state.camera_id))
        summary = super()._summary(states, final_ids, mode, wall)
        for entry in summary["sources"]:
            if entry["camera"] in streams:
                entry["state"] = streams[entry["camera"]]["state"]
        read = sum(r["frames_read"] for r in streams.values())
        dropped = sum(r["frames_dropped"] for r in streams.values())
        summary["live"] = {
            "stopped_by": self.stop.requested or self.stopped_by,
            "duration_s": self.config.live.duration_s or None,
            "ran_s": round(self.live_s, 3),
            "mature_after": self.config.live.mature_after,
            "latency": {"capture_to_tracked": self.frame_latency.summary(),
                        "capture_to_event": self.event_latency.summary()},
            "frames_read": read,
            "frames_dropped": dropped,
            "dropped_share": round(dropped / read, 4) if read else None,
        }
        summary["streams"] = list(streams.values())
        return summary

    def _mark_failed_stream(self, state: SourceState, report: dict[str, Any] | None) -> None:
        """A stream that is gone or never delivered a frame counts as a failed source (exit code 2)."""
        if report is None or state.status != "ok":
            return
        if report["state"] == StreamState.GONE.value or report["frames_read"] == 0:
            what = "gone" if report["state"] == StreamState.GONE.value else "never delivered a frame"
            state.status, state.error = "failed", f"{what}: {report['last_error'] or 'no frames'}"
            self.writer.event("source_error", camera=state.camera_id, error=state.error, frame=state.frames_read)
