"""MultiCameraPipeline: sources -> detector -> per-camera trackers -> tracklets -> STA -> global ids -> sinks.

    pipeline = MultiCameraPipeline(config)                 # components built by name from the config
    pipeline = MultiCameraPipeline(config, detector=d, embedder=e, tracker_factory=f)   # or passed in
    summary = pipeline.run(["cam1.mp4", "cam2.mp4"])       # specs or Source objects

Frames are taken in timestamp order across cameras (cameras may run at different frame rates); all
cameras whose next frame falls in the same time slot go to the detector as one batch. A source that
fails is recorded and dropped while the others go on. Finished tracklets are embedded in batches on a
worker thread while detection goes on, and assigned global ids in the order they finished.
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from pipeline.association import Assignment, Embedded, IdentityStage
from pipeline.config import PipelineConfig, config_to_dict
from pipeline.detectors import Detector, create_detector
from pipeline.geometry import CameraCalibration
from pipeline.render import render_video
from pipeline.sinks import OutputWriter
from pipeline.store import colour_stats_of
from pipeline.sources import Frame, Source, SourceError, default_camera_id, open_source, shown_spec
from pipeline.tracklets import Tracklet, TrackletBuffer

STAGES = ("decode", "detect", "track", "buffer", "embed", "embed_wait", "associate", "write")
MAX_BATCHES_IN_FLIGHT = 2  # bounds the crops held in memory when embedding falls behind detection


@dataclass
class SourceState:
    spec: str
    camera_id: str
    source: Source | None = None
    frames: Iterator[Frame] | None = None
    pending: Frame | None = None
    tracker: Any = None
    status: str = "ok"  # ok | failed
    error: str = ""
    frames_read: int = 0
    detections: int = 0
    track_ids: set[int] = field(default_factory=set)

    def report(self) -> dict[str, Any]:
        warnings = self.source.warnings if self.source is not None else []
        return {
            "camera": self.camera_id, "source": self.spec, "status": self.status, "error": self.error,
            "frames": self.frames_read, "fps": getattr(self.source, "fps", None), "detections": self.detections,
            "tracks": len(self.track_ids), "warnings": list(warnings),
        }


class StageTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def time(self, stage: str, function: Callable, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args)
        finally:
            self.seconds[stage] += time.perf_counter() - start


def default_tracker_factory(name: str, overrides: dict[str, Any]) -> Callable[[float], Any]:
    import trackers

    chosen = name or trackers.DEFAULT_TRACKER
    if chosen not in trackers.available_trackers():
        raise ValueError(f"unknown tracker {chosen!r}; valid: {', '.join(trackers.available_trackers())}")
    return lambda fps: trackers.create_tracker(chosen, frame_rate=fps, **overrides)


def engine_threads() -> int:
    """Intra-op threads for the detector and for the embedder: they run at the same time, so half the cores each."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // 2)


def default_embedder(config: PipelineConfig, threads: int | None = None, seq_len: int | None = None):
    from reid import Embedder

    return Embedder(weights=config.reid.weights or None, device=config.device, batch_size=config.reid.batch_size,
                    runtime="auto", threads=threads, seq_len=seq_len)


class MultiCameraPipeline:
    """``identity_stage``: a pipeline.association.IdentityStage (or subclass) to use instead of a new one."""

    background_refit = False  # the online scene metric is refitted in place: reproducible runs
    store_by_default = False  # file runs keep an identity store only when store.path is given
    batches_in_flight = MAX_BATCHES_IN_FLIGHT
    embeds_while_waiting = True  # the embedding worker is a local thread: see _embed_waiting_batches_here

    def __init__(self, config: PipelineConfig, detector: Detector | None = None, embedder: Any = None,
                 tracker_factory: Callable[[float], Any] | None = None, identity_stage: IdentityStage | None = None):
        self.config = config
        self.detector = detector
        self.embedder = embedder
        self.tracker_factory = tracker_factory
        self.identity_stage = identity_stage

    # ---- setup -------------------------------------------------------------------------------------
    def _camera_ids(self, sources: Sequence[str | Source]) -> list[str]:
        ids = list(self.config.camera_ids)
        if ids and len(ids) != len(sources):
            raise ValueError(f"camera_ids: {len(ids)} names for {len(sources)} sources")
        ids = ids or [s.camera_id if not isinstance(s, str) else default_camera_id(s) for s in sources]
        if len(set(ids)) != len(ids):
            raise ValueError(f"camera ids must be unique, got {ids}; pass --camera-ids")
        return ids

    def _open(self, spec: str | Source, camera_id: str) -> SourceState:
        state = SourceState(shown_spec(spec) if isinstance(spec, str) else repr(spec), camera_id)
        try:
            state.source = spec if not isinstance(spec, str) else open_source(
                spec, camera_id, self.config.max_frames, self.config.image_fps, self.config.live)
            state.source.camera_id = camera_id
            state.frames = iter(state.source)
        except SourceError as err:
            state.status, state.error = "failed", str(err)
        return state

    def _build_components(self, camera_ids: list[str]) -> None:
        self._build_camera_components(camera_ids)
        if self.embedder is None:
            self.embedder = default_embedder(self.config, engine_threads())

    def _build_camera_components(self, camera_ids: list[str]) -> None:
        """Detector and tracker factory: what a camera worker of the Ray backend builds (pipeline/ray_backend)."""
        if self.detector is None:
            self.detector = create_detector(self.config.detector, camera_ids, self.config.device, engine_threads())
        if self.tracker_factory is None:
            self.tracker_factory = default_tracker_factory(self.config.tracker.name, self.config.tracker.overrides)

    # ---- run ---------------------------------------------------------------------------------------
    def run(self, sources: Sequence[str | Source]) -> dict[str, Any]:
        if not sources:
            raise ValueError("no sources given")
        camera_ids = self._camera_ids(sources)
        states = [self._open(spec, camera) for spec, camera in zip(sources, camera_ids)]
        if all(state.status == "failed" for state in states):
            raise SourceError("no source could be opened: " + "; ".join(state.error for state in states))
        self._build_components(camera_ids)
        for state in states:
            if state.source is not None:
                state.tracker = self.tracker_factory(state.source.fps)
        self._open_outputs(camera_ids, [s.spec for s in states])
        self.buffer = self._tracklet_buffer(CameraCalibration.from_config(self.config.cameras, camera_ids))
        for state in states:
            if state.status == "failed":
                self.writer.event("source_error", camera=state.camera_id, error=state.error, frame=None)
        try:
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed") as self.embed_worker:
                self._loop(states)
                self._queue(self.buffer.flush(), flush=True)
                self._assign_embedded(keep=0)
            final_ids, mode = self._finish()
            wall = time.perf_counter() - started
            self._render(states, sources)
            summary = self._summary(states, final_ids, mode, wall)
            self.writer.write_summary(summary)
            self.writer.close()
        finally:
            self.identities.close_store(colour_stats_of(self.buffer.colour))
        return summary

    def _open_outputs(self, camera_ids: list[str], specs: list[str]) -> None:
        """Output files, identity stage (and its store), timers: the associator of the Ray backend opens them too."""
        self.writer = OutputWriter(Path(self.config.output.out), camera_ids, spool=self.config.association.refine)
        self.identities = self.identity_stage or IdentityStage(self.config, background_refit=self.background_refit)
        self.merges_written = 0  # of identities.merged_identities, written as events
        self.timer = StageTimer()
        # batches sent to the embedding worker, with the running tracks' feet when they were cut
        self.in_flight: deque[tuple[list[Tracklet], Future, dict | None]] = deque()
        self.counts = defaultdict(int)
        self.identities.open_store(self.config, self.embedder, specs, self.store_by_default)

    def _tracklet_buffer(self, calibration: CameraCalibration) -> TrackletBuffer:
        return TrackletBuffer(self.config.tracklets, calibration)

    def _loop(self, states: list[SourceState]) -> None:
        total = sum(self._expected_frames(s) for s in states if s.status == "ok")
        slot = 0.5 / max((s.source.fps for s in states if s.status == "ok"), default=25.0)
        with tqdm(total=total or None, desc="pipeline", unit="frame", disable=not self.config.progress) as bar:
            while True:
                for state in states:
                    if state.pending is None and state.status == "ok" and state.frames is not None:
                        if not self.timer.time("decode", self._next_frame, state):
                            self._queue(self.buffer.flush(state.camera_id), flush=True)
                live = [s for s in states if s.pending is not None]
                if not live:
                    return
                now = min(s.pending.timestamp for s in live)
                batch = [s for s in live if s.pending.timestamp <= now + slot]
                self._step(batch)
                bar.update(len(batch))

    def _expected_frames(self, state: SourceState) -> int:
        known = getattr(state.source, "frame_count", 0) or len(getattr(state.source, "files", []))
        return min(known, self.config.max_frames) if self.config.max_frames else known

    def _next_frame(self, state: SourceState) -> bool:
        """Read the camera's next frame; False when it has ended (normally or by an error)."""
        try:
            state.pending = next(state.frames)
            state.frames_read += 1
            return True
        except StopIteration:
            state.frames = None
        except Exception as err:  # any decode failure ends this camera only
            state.status, state.error, state.frames = "failed", f"{type(err).__name__}: {err}", None
            self.writer.event("source_error", camera=state.camera_id, error=state.error, frame=state.frames_read)
        return False

    def _step(self, batch: list[SourceState]) -> None:
        frames = [s.pending for s in batch]
        detections = self.timer.time("detect", self.detector.detect, frames)
        finished: list[Tracklet] = []
        for state, frame, dets in zip(batch, frames, detections):
            state.pending = None
            state.detections += len(dets)
            tracks = self.timer.time("track", state.tracker.update, np.asarray(dets, dtype=np.float64).reshape(-1, 5))
            state.track_ids.update(int(t) for t in tracks[:, 4])
            finished += self.timer.time("buffer", self.buffer.update, frame.camera_id, frame.index,
                                        frame.timestamp, frame.image, tracks)
        self.counts["steps"] += 1
        self.counts["detections"] += sum(len(d) for d in detections)
        self._queue(finished)

    # ---- tracklets -> identities (pipeline/association/stage.py decides what and when) --------------------
    def _queue(self, finished: list[Tracklet], flush: bool = False) -> None:
        """Send the batches the identity stage wants embedded to the embedding worker; assign what is done."""
        for batch in self.identities.batches(finished, flush):
            # the running tracks' feet as the batch was cut (not when it comes back): runs stay reproducible
            running = self.buffer.running_feet() if self.identities.uses_running_feet else None
            self.in_flight.append((batch, self._submit_embedding(batch), running))
        self._assign_embedded()

    def _submit_embedding(self, batch: list[Tracklet]) -> Future:
        return self.embed_worker.submit(self.timer.time, "embed", self.identities.embed, self.embedder, batch)

    def _assign_embedded(self, keep: int | None = None) -> None:
        """Assign ids to embedded batches, oldest first, waiting for the oldest while more than ``keep`` (default
        ``batches_in_flight``) are out."""
        keep = self.batches_in_flight if keep is None else keep
        while self.in_flight and (len(self.in_flight) > keep or self.in_flight[0][1].done()):
            if self.embeds_while_waiting and not self.in_flight[0][1].done():
                self._embed_waiting_batches_here()
            tracklets, future, running = self.in_flight.popleft()
            embedded: Embedded = self.timer.time("embed_wait", future.result)
            assignments = self.timer.time("associate", self.identities.assign, tracklets, embedded,
                                          self._crops_per_embed(), running)
            self.timer.time("write", self._write, tracklets, assignments)

    def _embed_waiting_batches_here(self) -> None:
        """This thread would only wait for the worker: it embeds the batches the worker has not started yet
        itself, newest first (the worker goes on from the oldest), with the same results. At the end of a
        400-frame run on 2 cores the flush's batches were 1.6 of the 2.9 s the pipeline added to decode + detect."""
        for position in reversed(range(len(self.in_flight))):
            tracklets, future, running = self.in_flight[position]
            if not future.cancel():  # running or done: the worker has it
                continue
            here: Future = Future()
            try:
                here.set_result(self.timer.time("embed", self.identities.embed, self.embedder, tracklets))
            except Exception as error:  # raised where the worker's would be: at future.result()
                here.set_exception(error)
            self.in_flight[position] = (tracklets, here, running)

    def _crops_per_embed(self) -> int:
        """Crops the embedder actually runs per tracklet (its clip length in 'even' mode)."""
        if not self.identities.wants_crop_features and getattr(self.embedder, "test_mode", "even") == "even":
            return getattr(self.embedder, "seq_len", self.config.tracklets.crops_per_tracklet)
        return self.config.tracklets.crops_per_tracklet

    def _write(self, tracklets: list[Tracklet], assignments: list[Assignment]) -> None:
        merged = self.identities.merged_identities[self.merges_written:]  # before the batch's ids: they name the kept
        self.merges_written += len(merged)
        for gone, kept in merged:
            self.writer.event("identities_merged", old_global_id=gone, global_id=kept)
        by_uid = {a.uid: a for a in assignments}
        for tracklet in tracklets:
            assignment = by_uid[tracklet.uid]
            self.writer.tracklet_rows(tracklet.camera_id, tracklet.uid, assignment.global_id, tracklet.mot_rows)
            self.writer.event(
                "tracklet_finished", uid=tracklet.uid, camera=tracklet.camera_id, track_id=tracklet.track_id,
                part=tracklet.part, first_frame=tracklet.first_frame + 1, last_frame=tracklet.last_frame + 1,
                boxes=len(tracklet), crops=len(tracklet.crops), reason=tracklet.end_reason,
            )
            self.writer.event(
                "identity_assigned", uid=tracklet.uid, camera=tracklet.camera_id, track_id=tracklet.track_id,
                global_id=assignment.global_id, how=assignment.how,
                distance=None if math.isnan(assignment.distance) else round(assignment.distance, 4),
                space=assignment.space or None,
            )
        self.writer.flush()

    def _finish(self) -> tuple[dict[int, int] | None, str]:
        final, mode = self.timer.time("associate", self.identities.finish)
        for uid, global_id in (final or {}).items():
            if global_id != self.identities.online_ids[uid]:
                self.writer.event("identity_updated", uid=uid, old_global_id=self.identities.online_ids[uid],
                                  global_id=global_id)
        # live mode's merges (events.jsonl keeps the ids as given, and each merge) also rename the rows written
        self.writer.finalise(final, renamed=self.identities.merged_into)
        return final, mode

    def _render(self, states: list[SourceState], sources: Sequence[str | Source]) -> None:
        if not self.config.output.save_video:
            return
        for state, spec in zip(states, sources):
            if state.source is None or state.source.live or not isinstance(spec, str):
                state.source and state.source.warnings.append("save_video: only file sources are re-read to render")
                continue
            again = open_source(spec, state.camera_id, self.config.max_frames, self.config.image_fps)
            out_dir = Path(self.config.output.out)
            render_video(again, out_dir / f"{state.camera_id}.txt", out_dir / f"{state.camera_id}.mp4",
                         self.config.output.video_fourcc)

    def _summary(self, states: list[SourceState], final_ids: dict[int, int] | None, mode: str, wall: float) -> dict:
        frames = sum(s.frames_read for s in states)
        per_frame = {stage: 1000.0 * self.timer.seconds.get(stage, 0.0) / max(frames, 1) for stage in STAGES}
        for state in states:
            state.source and state.source.close()
        failed = [s.camera_id for s in states if s.status != "ok"]
        return {
            "mode": mode,
            "frames": frames,
            "tracks": sum(len(s.track_ids) for s in states),
            "tracklets": self.identities.counts["tracklets"],
            "identities": self.identities.identities if final_ids is None else len(set(final_ids.values())),
            "detections": self.counts["detections"],
            "crops_embedded": self.identities.counts["crops_embedded"],
            # per-crop features for the scene metric (no extra pass)
            "crop_features": self.identities.counts["crop_features"],
            "refine_changes": self.identities.counts["refine_changes"],
            "geometry_cuts": self.identities.counts["geometry_cuts"],  # where overlapping views showed two people
            "overlapping_views": self.identities.overlapping_views,  # pipeline/association/overlap.py
            "merged_identities": self.identities.merged_identities,  # live: [newer, older] ids found to be one person
            "stage_ms_per_frame": {k: round(v, 3) for k, v in per_frame.items()},
            "wall_s": round(wall, 3),
            "throughput_fps": round(frames / wall, 2) if wall > 0 else None,
            "cameras": {camera: number for camera, number in self.writer.camera_numbers.items()},
            "sources": [s.report() for s in states],
            "failed_sources": failed,
            "store": self.identities.store_info or None,  # pipeline/store.py, when the run kept one
            "reid_model": getattr(self.embedder, "model_info", None),  # file, sha256, training data of the embedder
            "config": config_to_dict(self.config),
        }
