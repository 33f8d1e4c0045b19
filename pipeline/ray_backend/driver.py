"""RayPipeline: the pipeline spread over a Ray cluster, with MultiCameraPipeline's ``run(sources) -> summary``.

    summary = RayPipeline(config).run(["cam1.mp4", "cam2.mp4", "rtsp://cam3/stream"])

Placement: camera workers SPREAD over the nodes (``ray.cameras_per_worker`` cameras each: their frames stay
on that node); embedder actors on the GPUs when the cluster has some (``ray.embedder_gpus`` each), else on
the driver's node; the associator, which writes the outputs, on the driver's node. Faults: a camera worker
that dies is started again elsewhere for a live run (up to ``ray.max_restarts`` times per worker; its
stream resumes, its tracks numbered on); in a file run its cameras are reported failed (exit code 2) and
the others finish. Embedders are restarted by Ray (they hold no state).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from configs import UserError
from pipeline.config import PipelineConfig, RayConfig
from pipeline.live import StopSignals, is_live_run
from pipeline.ray_backend.associator import live_config
from pipeline.runner import MultiCameraPipeline
from pipeline.sources import Source, shown_spec

log = logging.getLogger(__name__)

INSTALL_HINT = "the ray backend needs Ray: pip install 'mtmc[ray]' (or pip install ray==2.60.0)"
ASSOCIATOR_CPUS = 0.1
WAIT_S = 0.5  # the driver looks at signals this often
PLACE_TIMEOUT_S = 180.0  # camera workers start (process, imports) within this or the run stops
MIN_RESTART_S = 1.0  # a live worker restarted near the end of live.duration_s still runs this long


def require_ray():
    try:
        import ray
    except ImportError as err:
        raise UserError(f"--backend ray: {INSTALL_HINT}") from err
    return ray


@contextlib.contextmanager
def ray_runtime(config: RayConfig, cpus_needed: float) -> Iterator[Any]:
    """The Ray runtime to run on: the one already initialised, the cluster at ``address``, or a local one
    (logical CPUs enough for every actor: they share the cores as the local backend's threads do)."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    if config.address:
        ray.init(address=config.address, logging_level=logging.WARNING)
    else:
        cores = os.cpu_count() or 1
        ray.init(num_cpus=max(cores, math.ceil(cpus_needed)), object_store_memory=config.object_store_mb * 2**20,
                 include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()


def check_room(ray, cpus: float, workers: int) -> None:
    """Actors that do not fit would wait for resources for ever: say so instead."""
    have = ray.cluster_resources().get("CPU", 0)
    if have < cpus:
        raise UserError(f"the Ray cluster has {have:g} CPUs, the run's actors need {cpus:g} ({workers} camera "
                        "workers x ray.worker_cpus + ray.embedders x ray.embedder_cpus + the associator): lower "
                        "ray.worker_cpus or ray.embedder_cpus, raise ray.cameras_per_worker, or add nodes")


@dataclass
class Launch:
    actor: Any
    cameras: list[str]
    number: int
    restarts: int = 0


class RayPipeline:
    def __init__(self, config: PipelineConfig):
        self.config = config

    def run(self, sources: Sequence[str | Source]) -> dict[str, Any]:
        if not sources:
            raise ValueError("no sources given")
        if not all(isinstance(s, str) for s in sources):
            raise ValueError("the ray backend takes sources as paths or URLs (each camera is opened where it runs)")
        camera_ids = MultiCameraPipeline(self.config)._camera_ids(sources)
        if self.config.output.save_video:
            log.warning("ray backend: output.save_video is not supported (frames stay on the camera workers' nodes)")
        self.live = is_live_run(sources, self.config)
        config = live_config(self.config) if self.live else self.config
        self.specs = dict(zip(camera_ids, sources))
        groups = [camera_ids[i:i + config.ray.cameras_per_worker]
                  for i in range(0, len(camera_ids), config.ray.cameras_per_worker)]
        cpus = len(groups) * config.ray.worker_cpus + config.ray.embedders * config.ray.embedder_cpus + ASSOCIATOR_CPUS
        with StopSignals() as self.stop, ray_runtime(config.ray, cpus) as ray:
            check_room(ray, cpus, len(groups))
            return self._run(ray, config, camera_ids, groups)

    def _run(self, ray, config: PipelineConfig, camera_ids: list[str], groups: list[list[str]]) -> dict[str, Any]:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from pipeline.ray_backend import actors

        here = ray.get_runtime_context().get_node_id()
        self.ray, self.run_config = ray, config
        self.worker_class = ray.remote(actors.CameraWorkerActor)
        embedders = self._embedders(ray, actors, config, here)
        associator = ray.remote(actors.AssociatorActor).options(
            num_cpus=ASSOCIATOR_CPUS, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
        ).remote(config, self.live, embedders)
        self.associator = associator
        ray.get(associator.start.remote(camera_ids, [shown_spec(self.specs[c]) for c in camera_ids]))
        self.launches = itertools.count()
        self.nodes: dict[str, list[str]] = {camera: [] for camera in camera_ids}  # the nodes that ran it, in order
        self.started = time.perf_counter()
        reports = self._wait(self._launch(groups))
        wall = time.perf_counter() - self.started
        embed_seconds = sum(ray.get([e.busy_seconds.remote() for e in embedders]))
        return ray.get(associator.finish.remote(reports, self.nodes, embed_seconds, wall))

    def _embedders(self, ray, actors, config: PipelineConfig, here: str) -> list[Any]:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        gpus = config.ray.embedder_gpus
        if gpus < 0:
            total = ray.cluster_resources().get("GPU", 0)
            gpus = min(1.0, total / config.ray.embedders) if total else 0.0
        options: dict[str, Any] = {"num_cpus": config.ray.embedder_cpus, "num_gpus": gpus,
                                   "max_restarts": -1, "max_task_retries": -1}
        if not gpus:  # CPU embedders stay by the associator when there is room there
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(here, soft=True)
        cls = ray.remote(actors.EmbedderActor)
        return [cls.options(**options).remote(config) for _ in range(config.ray.embedders)]

    # ---- camera workers ------------------------------------------------------------------------------------
    def _worker_config(self, cameras: list[str], restarts: int) -> PipelineConfig:
        """The run's config for a worker of ``cameras``: det files given per source are the worker's own; a
        restarted live worker runs for what is left of ``live.duration_s``."""
        config = copy.deepcopy(self.run_config)
        config.camera_ids = list(self.specs)  # all the run's cameras: calibration is checked against them
        files = config.detector.det_files
        if len(files) == len(self.specs) and not (len(files) == 1 and "{camera}" in files[0]):
            by_camera = dict(zip(self.specs, files))
            config.detector.det_files = [by_camera[c] for c in cameras]
        if restarts and config.live.duration_s:
            left = config.live.duration_s - (time.perf_counter() - self.started)
            config.live.duration_s = max(left, MIN_RESTART_S)
        return config

    def _launch(self, groups: list[list[str]], restarts: int = 0, offsets: dict[str, int] | None = None
                ) -> dict[Any, Launch]:
        """Start one camera worker per group of cameras (in parallel); their ``run`` refs -> Launch."""
        launches = [Launch(self.worker_class.options(
            num_cpus=self.run_config.ray.worker_cpus, scheduling_strategy="SPREAD", max_concurrency=2,
        ).remote(self._worker_config(cameras, restarts), self.live, number), cameras, number, restarts)
            for cameras, number in zip(groups, self.launches)]
        try:
            places = self.ray.get([launch.actor.where.remote() for launch in launches], timeout=PLACE_TIMEOUT_S)
        except self.ray.exceptions.GetTimeoutError:
            raise UserError(f"camera workers not placed within {PLACE_TIMEOUT_S:g} s: the cluster lacks the "
                            "resources (ray.worker_cpus per worker) on its nodes") from None
        for launch, where in zip(launches, places):
            for camera in launch.cameras:
                self.nodes[camera].append(where["node"])
        return {launch.actor.run.remote([self.specs[c] for c in launch.cameras], launch.cameras, self.associator,
                                        offsets): launch for launch in launches}

    def _wait(self, running: dict[Any, Launch]) -> list[dict[str, Any]]:
        """Wait for the camera workers; restart (live) or report (files) those that die."""
        ray = self.ray
        self.running = running  # run ref -> Launch, for a look from outside (tests)
        reports, stopping = [], False
        while running:
            ready, _ = ray.wait(list(running), num_returns=1, timeout=WAIT_S)
            if self.stop.requested and not stopping:
                stopping = True
                for launch in running.values():
                    launch.actor.stop.remote(self.stop.requested)
            for ref in ready:
                launch = running.pop(ref)
                try:
                    reports.append(ray.get(ref))
                except ray.exceptions.RayActorError as err:
                    running.update(self._after_death(launch, err, stopping))
        return reports

    def _after_death(self, launch: Launch, err: Exception, stopping: bool) -> dict[Any, Launch]:
        error = f"camera worker died ({type(err).__name__}) on node {self.nodes[launch.cameras[0]][-1]}"
        log.warning("cameras %s: %s", ", ".join(launch.cameras), error)
        for camera in launch.cameras:
            self.ray.get(self.associator.camera_lost.remote(camera, launch.number, error))
        if not self.live or stopping or launch.restarts >= self.run_config.ray.max_restarts:
            return {}
        offsets = self.ray.get(self.associator.track_offsets.remote(launch.cameras))
        return self._launch([launch.cameras], launch.restarts + 1, offsets)
