"""The Ray actors: camera workers, embedders and the associator (plain classes; the driver wraps them with
``ray.remote`` and places them, pipeline/ray_backend/driver.py)."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Sequence

import ray

from pipeline.association import Embedded, IdentityStage
from pipeline.config import PipelineConfig
from pipeline.ray_backend.associator import Associator
from pipeline.ray_backend.records import END, FRAME, CameraRecord, Chunk
from pipeline.ray_backend.worker import camera_worker
from pipeline.runner import default_embedder, engine_threads

LIVE_SEND_EVERY_S = 0.05  # a live worker sends what it has at least this often (latency)
LEAD_POLL_S = 0.02


def node_id() -> str:
    return ray.get_runtime_context().get_node_id()


class RayOutbox:
    """Chunks of records to the associator. Backpressure: at most ``chunks_in_flight`` unprocessed messages
    per worker (the worker waits; a live stream drops frames meanwhile, pipeline/sources/streams.py), and in
    file runs no camera runs more than ``max_lead_s`` of video ahead of the slowest (the associator holds
    the faster cameras' tracklets until the slowest catch up: this bounds them)."""

    def __init__(self, associator: Any, config: PipelineConfig, live: bool):
        self.associator, self.live = associator, live
        self.chunk_frames, self.in_flight = config.ray.chunk_frames, config.ray.chunks_in_flight
        self.max_lead = config.ray.max_lead_s
        self.records: list[CameraRecord] = []
        self.events: list[tuple[str, dict]] = []
        self.sent: deque = deque()
        self.last_sent = time.monotonic()
        self.progress: dict[str, float] = {}  # camera -> newest frame time (cameras still sending)
        self.watermark = -float("inf")
        self.waited_s = 0.0
        self.running_feet: Callable[[], tuple[dict, list[str]]] | None = None  # set by the worker when used

    def put(self, record: CameraRecord) -> None:
        self.records.append(record)
        if record.kind == FRAME:
            self.progress[record.camera] = record.timestamp
        elif record.kind == END:
            self.progress.pop(record.camera, None)
        if (len(self.records) >= self.chunk_frames or record.kind == END
                or (self.live and (record.tracklets or self._overdue()))):
            self.send()

    def event(self, kind: str, fields: dict[str, Any]) -> None:
        self.events.append((kind, fields))

    def idle(self) -> None:
        if (self.records or self.events) and self._overdue():
            self.send()

    def _overdue(self) -> bool:
        return time.monotonic() - self.last_sent >= LIVE_SEND_EVERY_S

    def send(self) -> None:
        if not self.records and not self.events:
            return
        running, cameras = self.running_feet() if self.running_feet else (None, [])
        self.sent.append(self.associator.ingest.remote(Chunk(self.records, self.events, running, cameras)))
        self.records, self.events, self.last_sent = [], [], time.monotonic()
        started = time.perf_counter()
        while len(self.sent) > self.in_flight:
            self.watermark = ray.get(self.sent.popleft())
        if not self.live:
            while self.progress and min(self.progress.values()) - self.watermark > self.max_lead:
                time.sleep(LEAD_POLL_S)
                self.watermark = ray.get(self.associator.watermark.remote())
        self.waited_s += time.perf_counter() - started

    def close(self) -> None:
        self.send()
        ray.get(list(self.sent))
        self.sent.clear()


class CameraWorkerActor:
    """Reads, detects and tracks its cameras where it runs; ``max_concurrency=2`` lets ``stop`` reach a live run."""

    def __init__(self, config: PipelineConfig, live: bool, launch: int):
        self.config, self.live, self.launch = config, live, launch
        self.pipeline = camera_worker(config, live)
        self.started = threading.Event()

    def where(self) -> dict[str, Any]:
        return {"node": node_id(), "pid": os.getpid()}

    def run(self, specs: Sequence[str], camera_ids: Sequence[str], associator: Any,
            track_offsets: dict[str, int] | None = None) -> dict[str, Any]:
        outbox = RayOutbox(associator, self.config, self.live)
        self.pipeline.attach(outbox, self.launch, track_offsets)
        self.started.set()
        report = self.pipeline.run_cameras(specs, camera_ids)
        report.update(node=node_id(), launch=self.launch, waited_s=outbox.waited_s)
        return report

    def stop(self, reason: str = "SIGINT") -> None:
        if self.live and self.started.wait(timeout=60):
            self.pipeline.stop.requested = self.pipeline.stop.requested or reason


class EmbedderActor:
    """Embeds batches of tracklets for the associator (IdentityStage.embed: the runner's own embedding)."""

    def __init__(self, config: PipelineConfig):
        self.embedder = default_embedder(config, engine_threads())
        self.stage = IdentityStage(config)
        self.seconds = 0.0

    def describe(self) -> dict[str, Any]:
        e = self.embedder
        return {"model_info": getattr(e, "model_info", None), "embedding_dim": getattr(e, "embedding_dim", None),
                "seq_len": getattr(e, "seq_len", None), "test_mode": getattr(e, "test_mode", "even"),
                "node": node_id()}

    def embed(self, batch: list) -> Embedded:
        started = time.perf_counter()
        try:
            return self.stage.embed(self.embedder, batch)
        finally:
            self.seconds += time.perf_counter() - started

    def embed_crops(self, crop_lists: list) -> Any:
        return self.embedder.embed(crop_lists)

    def busy_seconds(self) -> float:
        return self.seconds


class EmbedderStandIn:
    """What the associator's identity store and crop counts read of the embedder; ``embed`` runs remotely."""

    def __init__(self, embedders: Sequence[Any], description: dict[str, Any]):
        self._embedders = list(embedders)
        self.model_info = description["model_info"]
        self.embedding_dim = description["embedding_dim"]
        self.seq_len = description["seq_len"]
        self.test_mode = description["test_mode"]
        self._next = 0

    def pick(self) -> Any:
        self._next = (self._next + 1) % len(self._embedders)
        return self._embedders[self._next]

    def embed(self, crop_lists: list) -> Any:
        return ray.get(self.pick().embed_crops.remote(crop_lists))

    def submit(self, batch: list) -> Future:
        return self.pick().embed.remote(batch).future()


class AssociatorActor:
    """The one owner of the identities (pipeline/ray_backend/associator.py) where the outputs are written."""

    def __init__(self, config: PipelineConfig, live: bool, embedders: Sequence[Any]):
        description = ray.get(embedders[0].describe.remote())
        self.stand_in = EmbedderStandIn(embedders, description)
        self.core = Associator(config, live, self.stand_in.submit, self.stand_in,
                               batches_in_flight=max(2, 2 * len(embedders)))

    def start(self, camera_ids: Sequence[str], specs: Sequence[str]) -> str:
        self.core.start(camera_ids, specs)
        return node_id()

    def ingest(self, chunk: Chunk) -> float:
        return self.core.ingest(chunk)

    def watermark(self) -> float:
        return self.core.watermark()

    def camera_lost(self, camera: str, launch: int, error: str) -> None:
        self.core.camera_lost(camera, launch, error)

    def track_offsets(self, cameras: Sequence[str]) -> dict[str, int]:
        return self.core.track_offsets(cameras)

    def progress(self) -> dict[str, int]:
        return dict(self.core.seen_frames)

    def finish(self, worker_reports: Sequence[dict], nodes: dict[str, list[str]], embed_seconds: float,
               wall: float) -> dict[str, Any]:
        return self.core.finish(worker_reports, nodes, embed_seconds, wall)
