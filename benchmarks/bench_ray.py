"""The Ray backend against the local backend: equal results, overhead, and a 16-camera run with bounded memory.

    python benchmarks/bench_ray.py idf1     [--frames 300]                 # MTMC IDF1, both backends, YOLOX-Nano
    python benchmarks/bench_ray.py overhead [--frames 100] [--cameras 2 4 8] [--runs 3]
    python benchmarks/bench_ray.py scale    [--frames 150] [--cameras 16]  # 2-node cluster, RSS + object store

Inputs: PETS09-S2L1 pseudo-cameras (configs/multicam_pets3.yaml for idf1, configs/bench_pets4.yaml for
the speed runs) and the EPFL Terrace views (tools/datasets/epfl_terrace.py), built once under --out.
Camera sets for the speed runs: 2 = two PETS views, 4 = the four PETS views, 8 = those and the four
Terrace views; more cameras loop over these (same videos, their own camera ids).

``overhead``: for each camera count, the local backend and Ray on one node (a local Ray runtime: one
raylet, the same 2 cores) take turns --runs times; then Ray on a two-node loopback cluster
(ray.cluster_utils.Cluster) --runs times. Wall = the summary's wall_s (from the first frame to the written
outputs; model loading excluded for both, Ray worker start-up included) and, for Ray, end-to-end (runtime
and actor start-up included). Medians; the ratio Ray / local is the overhead on the same cores. Per
tracklet: the bytes records and embedding batches put through the object store, and the associator's time.
``scale``: one run on the two-node cluster; the peak RSS of every process of the cluster (sampled every
0.5 s), the peak RSS of a raylet (which holds the object store) and the most tracklets the associator held
at once (received, not yet assigned) are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from configs import REPO_ROOT, data_root

YOLOX = Path("models") / "yolox_nano.onnx"
NODE = {"num_cpus": 6, "object_store_memory": 200 * 2**20}  # logical CPUs: 8 workers x 0.5 + embedder + associator


# ---- inputs -----------------------------------------------------------------------------------------------
def pets_cameras(out: Path, layout: str, frames: int) -> list[dict]:
    from tools.make_multicam import load_config, make_multicam

    scene = out / f"{Path(layout).stem}_{frames}"
    if not (scene / "cameras.json").is_file():
        make_multicam(load_config(REPO_ROOT / "configs" / layout, frames), scene, data_root())
    return [{**r, "scene": str(scene)} for r in json.loads((scene / "cameras.json").read_text())]


def terrace_cameras(out: Path, frames: int) -> list[dict]:
    from tools.datasets.epfl_terrace import FrameRange, prepare_scene

    scene = out / f"terrace_{frames}"
    return [{**r, "scene": str(scene)} for r in prepare_scene(scene, FrameRange(0, frames))]


def camera_set(out: Path, count: int, frames: int) -> tuple[list[str], list[str]]:
    """(sources, camera ids) of ``count`` cameras: PETS views, then Terrace views, looped."""
    pool = pets_cameras(out, "bench_pets4.yaml", frames)[:2 if count == 2 else 4]
    if count > 4:
        pool += terrace_cameras(out, frames)
    chosen = [pool[i % len(pool)] for i in range(count)]
    return [c["video"] for c in chosen], [f"{c['name']}_{i}" for i, c in enumerate(chosen)]


def config_for(out: Path, backend: str, frames: int, camera_ids: list[str], **extra: Any):
    from pipeline.config import load_pipeline_config

    return load_pipeline_config(None, {
        "output.out": str(out), "progress": False, "max_frames": frames, "backend": backend,
        "camera_ids": camera_ids, "detector.model": str(data_root() / YOLOX), **extra})


def run(backend: str, sources: list[str], config) -> tuple[dict, float]:
    from pipeline.ray_backend import RayPipeline
    from pipeline.runner import MultiCameraPipeline

    started = time.perf_counter()
    summary = (RayPipeline if backend == "ray" else MultiCameraPipeline)(config).run(sources)
    return summary, time.perf_counter() - started


# ---- Ray runtimes ------------------------------------------------------------------------------------------
class Runtime:
    """One node (a plain local runtime) or a two-node loopback cluster, initialised for this driver."""

    def __init__(self, nodes: int):
        import ray
        from ray.cluster_utils import Cluster

        self.ray, self.cluster = ray, None
        if nodes == 1:
            ray.init(num_cpus=NODE["num_cpus"], object_store_memory=NODE["object_store_memory"],
                     include_dashboard=False, logging_level="WARNING")
        else:
            self.cluster = Cluster(initialize_head=True, head_node_args=NODE)
            for _ in range(nodes - 1):
                self.cluster.add_node(**NODE)
            ray.init(address=self.cluster.address, logging_level="WARNING")

    def close(self) -> None:
        self.ray.shutdown()
        if self.cluster is not None:
            self.cluster.shutdown()


class Sampler:
    """Peak RSS of this process and all its descendants (the cluster's raylets and workers; shared pages
    counted in each), and the peak RSS of a raylet: the object store lives in the raylet, so its resident
    pages are the store's high-water mark (``ray memory`` needs grpc, which ray's minimal install lacks).
    Sampled every ``every_s`` seconds while a run goes on."""

    def __init__(self, every_s: float = 0.5):
        self.every_s, self.rss_peak, self.raylet_peak, self.rss_series = every_s, 0, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(self.every_s):
            rss = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    resident = process.memory_info().rss
                    if process.name() == "raylet":
                        self.raylet_peak = max(self.raylet_peak, resident)
                    rss += resident
                except psutil.Error:
                    pass
            self.rss_peak = max(self.rss_peak, rss)
            self.rss_series.append(rss)


# ---- tasks -------------------------------------------------------------------------------------------------
def task_idf1(args: argparse.Namespace) -> dict:
    from tools.evaluation import evaluate_mtmc

    scenes = {"pets3": pets_cameras(args.out, "multicam_pets3.yaml", args.frames),
              "terrace": terrace_cameras(args.out, args.frames)}
    runtime, results = Runtime(2), {}
    try:
        for name, records in scenes.items():
            sources, ids = [r["video"] for r in records], [r["name"] for r in records]
            scene = Path(records[0]["scene"])
            row = {}
            for backend in ("local", "ray"):
                out = args.out / f"idf1_{name}_{backend}"
                summary, _ = run(backend, sources, config_for(out, backend, args.frames, ids))
                row[backend] = round(evaluate_mtmc(scene / "mtmc_gt.txt", out / "mtmc.txt")["MTMC"]["IDF1"], 4)
            local, remote = (args.out / f"idf1_{name}_{b}" / "mtmc.txt" for b in ("local", "ray"))
            row["equal_outputs"] = local.read_text() == remote.read_text()
            results[name] = row
            print(f"{name}: MTMC IDF1 local {row['local']} ray {row['ray']}; identical mtmc.txt: "
                  f"{row['equal_outputs']}", flush=True)
    finally:
        runtime.close()
    return results


def task_overhead(args: argparse.Namespace) -> dict:
    sets = {count: camera_set(args.out, count, args.frames) for count in args.cameras}
    timings: dict[str, dict[int, list[dict]]] = {"local": {}, "ray1": {}, "ray2": {}}
    for nodes in (1, 2):
        runtime = Runtime(nodes)
        try:
            for repeat in range(args.runs):
                for count, (sources, ids) in sets.items():
                    contenders = ["local", f"ray{nodes}"] if nodes == 1 else [f"ray{nodes}"]
                    for name in contenders:
                        backend = "local" if name == "local" else "ray"
                        out = args.out / f"overhead_{name}_{count}"
                        summary, total = run(backend, sources, config_for(out, backend, args.frames, ids))
                        timings[name].setdefault(count, []).append(measure(summary, total))
                        print(f"{name} {count} cameras run {repeat + 1}: {timings[name][count][-1]}", flush=True)
        finally:
            runtime.close()
    return {"median": medians(timings), "runs": timings}


def measure(summary: dict, total: float) -> dict:
    row = {"wall_s": summary["wall_s"], "end_to_end_s": round(total, 2), "fps": summary["throughput_fps"],
           "frames": summary["frames"], "tracklets": summary["tracklets"]}
    if "ray" in summary:
        row.update({"bytes_per_tracklet": sum(summary["ray"]["bytes_per_tracklet"].values()),
                    "associator_ms_per_tracklet": summary["ray"]["associator_ms_per_tracklet"],
                    "associate_ms_per_tracklet": summary["ray"]["associate_ms_per_tracklet"],
                    "embed_ms_per_tracklet": summary["ray"]["embed_ms_per_tracklet"],
                    "nodes": len(set(summary["ray"]["nodes"].values()))})
    return row


def medians(timings: dict[str, dict[int, list[dict]]]) -> dict:
    table: dict[str, dict] = {}
    for name, by_count in timings.items():
        for count, rows in by_count.items():
            keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float))]
            table.setdefault(str(count), {})[name] = {k: round(statistics.median(r[k] for r in rows), 3) for k in keys}
    for count, row in table.items():
        if "local" in row:
            for name in ("ray1", "ray2"):
                if name in row:
                    row[f"{name}_over_local_wall"] = round(row[name]["wall_s"] / row["local"]["wall_s"], 3)
                    row[f"{name}_over_local_end_to_end"] = round(row[name]["end_to_end_s"] /
                                                                row["local"]["end_to_end_s"], 3)
    return table


def task_scale(args: argparse.Namespace) -> dict:
    count = args.cameras[0]
    sources, ids = camera_set(args.out, count, args.frames)
    runtime = Runtime(2)
    try:
        with Sampler() as sampler:
            out = args.out / f"scale_{count}"
            summary, total = run("ray", sources, config_for(out, "ray", args.frames, ids,
                                                            **{"ray.cameras_per_worker": args.cameras_per_worker}))
    finally:
        runtime.close()
    series = sampler.rss_series
    result = {**measure(summary, total), "cameras": count, "failed": summary["failed_sources"],
              "held_tracklets_peak": summary["ray"]["held_tracklets_peak"], "held_mb_peak": summary["ray"]["held_mb_peak"],
              "nodes_used": sorted(set(summary["ray"]["nodes"].values())),
              "rss_peak_mb": round(sampler.rss_peak / 2**20), "raylet_rss_peak_mb": round(sampler.raylet_peak / 2**20),
              "rss_mb_at_quartiles": [round(series[int(q * (len(series) - 1))] / 2**20) for q in (0.25, 0.5, 0.75, 1)]
              if series else []}
    print(json.dumps(result, indent=2), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=["idf1", "overhead", "scale"])
    parser.add_argument("--frames", type=int, default=None, help="frames per camera (idf1 300, overhead 100, scale 150)")
    parser.add_argument("--cameras", type=int, nargs="+", default=None, help="overhead: 2 4 8; scale: 16")
    parser.add_argument("--cameras-per-worker", type=int, default=2, help="scale: cameras per camera worker")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "bench_ray")
    args = parser.parse_args(argv)
    args.frames = args.frames or {"idf1": 300, "overhead": 100, "scale": 150}[args.task]
    args.cameras = args.cameras or ([16] if args.task == "scale" else [2, 4, 8])
    if not (data_root() / YOLOX).is_file():
        print(f"error: YOLOX-Nano weights absent: {data_root() / YOLOX} (set MTMC_DATA)", file=sys.stderr)
        return 1
    os.environ.setdefault("YOLO_OFFLINE", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"idf1": task_idf1, "overhead": task_overhead, "scale": task_scale}[args.task](args)
    path = args.out / f"{args.task}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    if args.task == "overhead":
        print(yaml.safe_dump(result["median"], sort_keys=False))
    print(f"results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
