"""The identity half of the pipeline, run by the one associator actor: it owns the identities.

It is the runner's own identity path (MultiCameraPipeline: _queue -> IdentityStage.batches, embedding,
_assign_embedded -> IdentityStage.assign, _write, _finish, _summary; the identity store when there is one) fed
by the camera workers' records in the local backend's order (pipeline/ray_backend/order.py); only the
embedding runs elsewhere, on the embedder actors (``submit``).
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from concurrent.futures import Future
from typing import Any, Callable, Sequence

from pipeline.config import PipelineConfig
from pipeline.ray_backend.order import ArrivalOrder, EventTimeOrder
from pipeline.ray_backend.records import FRAME, Chunk, payload_bytes
from pipeline.runner import MultiCameraPipeline, SourceState
from pipeline.tracklets import Tracklet


def live_config(config: PipelineConfig) -> PipelineConfig:
    """Live runs assign online only, as LivePipeline does."""
    config = copy.deepcopy(config)
    config.association.refine = False
    return config


class RemoteState(SourceState):
    """A camera as its worker reported it (or as the associator saw it, when its worker died)."""

    def __init__(self, camera_id: str, spec: str, report: dict[str, Any], track_ids: Sequence[int]):
        super().__init__(spec, camera_id, status=report["status"], error=report["error"],
                         frames_read=report["frames"], detections=report["detections"], track_ids=set(track_ids))
        self.remote_report = report

    def report(self) -> dict[str, Any]:
        return dict(self.remote_report)


class RunningTracks:
    """What the runner's identity path reads of its TrackletBuffer: the running tracks' recent feet, as the
    camera workers last reported them (pipeline/ray_backend/records.py Chunk.running)."""

    def __init__(self) -> None:
        self.by_camera: dict[str, dict[tuple[str, int], Any]] = {}

    def update(self, running: dict[tuple[str, int], Any], cameras: Sequence[str]) -> None:
        for camera in cameras:
            self.by_camera[camera] = {key: feet for key, feet in running.items() if key[0] == camera}

    def running_feet(self) -> dict[tuple[str, int], Any]:
        return {key: feet for tracks in self.by_camera.values() for key, feet in tracks.items()}


class Associator(MultiCameraPipeline):
    """``submit(batch) -> Future`` embeds one batch (IdentityStage.embed) elsewhere; ``embedder``: a stand-in
    with the embedder's description (model_info, embedding_dim, seq_len, test_mode, embed) for the store."""

    embeds_while_waiting = False  # the batches run on the embedder actors; their futures cannot be taken back

    def __init__(self, config: PipelineConfig, live: bool, submit: Callable[[list[Tracklet]], Future],
                 embedder: Any, batches_in_flight: int):
        super().__init__(live_config(config) if live else config, embedder=embedder)
        self.live = live
        self.background_refit = self.store_by_default = live
        self.batches_in_flight = batches_in_flight
        self._submit = submit

    def start(self, camera_ids: Sequence[str], specs: Sequence[str]) -> None:
        self.camera_ids, self.specs = list(camera_ids), list(specs)
        self._open_outputs(self.camera_ids, self.specs)
        self.buffer = RunningTracks()
        self.order = (ArrivalOrder if self.live else EventTimeOrder)(self.camera_ids, self._queue)
        self.seen_frames: dict[str, int] = defaultdict(int)
        self.seen_tracks: dict[str, set[int]] = defaultdict(set)
        self.moved = defaultdict(int)  # bytes: records in, batches out to the embedders
        self.busy_s = 0.0
        self.received = 0  # tracklets in records so far
        self.held_peak = 0  # most tracklets received and not yet assigned (waiting for a watermark or embedding)

    # ---- what the workers send ------------------------------------------------------------------------
    def ingest(self, chunk: Chunk) -> float:
        """Take one worker message; return the watermark (video time every camera still sending has reached)."""
        started = time.perf_counter()
        self.moved["records"] += payload_bytes(chunk)
        for kind, fields in chunk.events:
            self.writer.event(kind, **fields)
        if chunk.running is not None:
            self.buffer.update(chunk.running, chunk.cameras)
        for record in chunk.records:
            self.seen_frames[record.camera] += record.kind == FRAME
            self.received += len(record.tracklets)
            self.order.add(record)
        self.order.advance()
        self.held_peak = max(self.held_peak, self.received - self.identities.counts["tracklets"])
        self.busy_s += time.perf_counter() - started
        return self.order.watermark()

    def watermark(self) -> float:
        return self.order.watermark()

    def camera_lost(self, camera: str, launch: int, error: str) -> None:
        """The camera's worker died (launch ``launch``); for a file source, the camera ends here as failed."""
        self.writer.event("source_error", camera=camera, error=error, frame=self.seen_frames[camera])
        self.order.lose(camera, launch)
        self.order.advance()

    def track_offsets(self, cameras: Sequence[str]) -> dict[str, int]:
        """The largest local track id seen per camera: a restarted worker numbers its tracks above it."""
        return {camera: max(self.seen_tracks[camera], default=0) for camera in cameras}

    # ---- the runner's hooks -------------------------------------------------------------------------------
    def _queue(self, finished: list[Tracklet], flush: bool = False) -> None:
        for tracklet in finished:
            self.seen_tracks[tracklet.camera_id].add(tracklet.track_id)
        super()._queue(finished, flush)

    def _submit_embedding(self, batch: list[Tracklet]) -> Future:
        self.moved["batches"] += payload_bytes(batch)
        return self._submit(batch)

    # ---- the end -------------------------------------------------------------------------------------------
    def finish(self, worker_reports: Sequence[dict[str, Any]], nodes: dict[str, list[str]],
               embed_seconds: float, wall: float) -> dict[str, Any]:
        """Assign what is left, run the offline pass, write the outputs and return the summary."""
        started = time.perf_counter()
        try:
            self.order.advance()
            self._queue([], flush=True)
            self._assign_embedded(keep=0)
            final_ids, mode = self._finish()
            states, colour = self._remote_states(worker_reports)
            for report in worker_reports:
                for stage, seconds in report["seconds"].items():
                    self.timer.seconds[stage] += seconds
                self.counts["detections"] += report["detections"]
            self.timer.seconds["embed"] += embed_seconds
            self.busy_s += time.perf_counter() - started
            summary = self._summary(states, final_ids, mode, wall)
            self._describe_ray(summary, nodes, worker_reports)
            self.writer.write_summary(summary)
            self.writer.close()
        finally:
            self.identities.close_store(colour if "colour" in locals() else None)
        return summary

    def _remote_states(self, worker_reports: Sequence[dict[str, Any]]) -> tuple[list[RemoteState], dict]:
        reported = {c["report"]["camera"]: c for report in worker_reports for c in report["cameras"]}
        colour = {camera: stats for report in worker_reports for camera, stats in report["colour"].items()}
        states = []
        for camera, spec in zip(self.camera_ids, self.specs):
            entry = reported.get(camera)
            if entry is None:  # its worker died: what reached the associator
                report = {"camera": camera, "source": spec, "status": "failed", "error": "camera worker lost",
                          "frames": self.seen_frames[camera], "fps": None, "detections": 0,
                          "tracks": len(self.seen_tracks[camera]), "warnings": []}
                entry = {"report": report, "track_ids": sorted(self.seen_tracks[camera])}
            states.append(RemoteState(camera, spec, entry["report"], entry["track_ids"]))
        return states, colour

    def _describe_ray(self, summary: dict[str, Any], nodes: dict[str, list[str]],
                      worker_reports: Sequence[dict[str, Any]]) -> None:
        tracklets = max(self.identities.counts["tracklets"], 1)
        for entry in summary["sources"]:
            entry["node"] = (nodes.get(entry["camera"]) or [None])[-1]
            entry["nodes"] = nodes.get(entry["camera"], [])
        streams = [c["stream"] for report in worker_reports for c in report["cameras"] if c.get("stream")]
        if streams:
            summary["streams"] = streams
        summary["backend"] = "ray"
        summary["ray"] = {
            "nodes": {camera: (where or [None])[-1] for camera, where in nodes.items()},
            "bytes_per_tracklet": {"records": round(self.moved["records"] / tracklets),
                                   "embed_batches": round(self.moved["batches"] / tracklets)},
            # busy, less the waits for the embedders: what one associator spends per tracklet
            "associator_ms_per_tracklet": round(1000 * (self.busy_s - self.timer.seconds["embed_wait"]) / tracklets, 3),
            "held_tracklets_peak": self.held_peak,
            "held_mb_peak": round(self.held_peak * self.moved["records"] / max(self.received, 1) / 2**20, 2),
            "associate_ms_per_tracklet": round(1000 * self.timer.seconds["associate"] / tracklets, 3),
            "embed_ms_per_tracklet": round(1000 * self.timer.seconds["embed"] / tracklets, 3),
        }
