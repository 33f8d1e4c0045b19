"""Pipeline speed per stage for 2 and 4 cameras, against decode + detection alone on the same inputs.

    python benchmarks/bench_pipeline.py [--frames 100] [--cameras 2 4] [--runs 3]

Cameras are distinct pseudo-cameras cut from PETS09-S2L1 by tools/make_multicam.py with the layout
configs/bench_pets4.yaml (built once under --out; the 2-camera case uses the first two). For each
camera count the baseline (read every frame, run the detector batched across cameras, as the pipeline
does) and the whole pipeline take turns --runs times after a short warm-up, with the same detector and
embedder objects, so load from other processes falls on both alike; the table gives medians. The CPU
ratio divides this process's CPU seconds (all threads) instead of wall seconds: the pipeline overlaps
embedding with detection on a second core, so its wall ratio can be below its CPU ratio. Also printed:
crops the tracklet-level ReID embedded against the detections a per-detection ReID would embed.
``--store`` adds a third contender, the pipeline writing an identity store (pipeline/store.py, a new file
each run), and prints its wall ratio to the pipeline without one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from configs import REPO_ROOT, ConfigError, data_root

GOAL = 1.30
WARMUP_FRAMES = 10


@dataclass
class Timing:
    wall_s: float
    cpu_s: float


@dataclass
class Result:
    cameras: int
    frames: int
    baseline: list[Timing] = field(default_factory=list)
    pipeline: list[Timing] = field(default_factory=list)
    summaries: list[dict] = field(default_factory=list)
    stored: list[Timing] = field(default_factory=list)  # the pipeline with an identity store (--store)

    def median(self, runs: list[Timing], attribute: str) -> float:
        return statistics.median(getattr(t, attribute) for t in runs)

    def ratio(self, attribute: str) -> float:
        return self.median(self.pipeline, attribute) / self.median(self.baseline, attribute)

    def stage_ms(self, stage: str) -> float:
        return statistics.median(s["stage_ms_per_frame"][stage] for s in self.summaries)


def timed(function, *args) -> tuple[Timing, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    value = function(*args)
    return Timing(time.perf_counter() - wall, time.process_time() - cpu), value


def build_cameras(layout: Path, frames: int, out: Path) -> list[Path]:
    """The layout's camera videos with ``frames`` frames each, made once and reused."""
    from tools.make_multicam import load_config, make_multicam

    folder = out / f"cameras_{frames}"
    if not (folder / "cameras.json").is_file():
        make_multicam(load_config(layout, frames), folder, data_root())
    return [Path(record["video"]) for record in json.loads((folder / "cameras.json").read_text())]


def decode_and_detect(detector, sources: list[str], camera_ids: list[str], max_frames: int) -> None:
    """Read every frame and run the detector, one batch per step with the next frame of each camera."""
    from pipeline.sources import open_source

    streams = [iter(open_source(s, c, max_frames)) for s, c in zip(sources, camera_ids)]
    while streams:
        batch, alive = [], []
        for stream in streams:
            frame = next(stream, None)
            if frame is not None:
                batch.append(frame)
                alive.append(stream)
        streams = alive
        detector.detect(batch)


def bench_cameras(args: argparse.Namespace, videos: list[Path], count: int) -> Result:
    from pipeline.config import load_pipeline_config
    from pipeline.detectors import create_detector
    from pipeline.runner import MultiCameraPipeline, default_embedder, engine_threads

    sources, camera_ids = [str(v) for v in videos[:count]], [v.stem for v in videos[:count]]

    def config(frames: int, store: str = ""):
        return load_pipeline_config(args.config, {"max_frames": frames, "progress": False, "camera_ids": camera_ids,
                                                  "output.out": f"{args.out}/{count}cams", "store.path": store})

    threads = engine_threads()  # the pipeline's own setting, so the baseline runs the same detector
    timed_config = config(args.frames)
    detector = create_detector(timed_config.detector, camera_ids, timed_config.device, threads)
    embedder = default_embedder(timed_config, threads)

    def pipeline(frames: int, store: str = "") -> dict:
        return MultiCameraPipeline(config(frames, store), detector=detector, embedder=embedder).run(sources)

    def stored_pipeline(frames: int) -> dict:
        store = Path(f"{args.out}/{count}cams/identities.sqlite")
        for leftover in (store, Path(f"{store}-wal"), Path(f"{store}-shm")):
            leftover.unlink(missing_ok=True)
        return pipeline(frames, str(store))

    decode_and_detect(detector, sources, camera_ids, WARMUP_FRAMES)
    pipeline(WARMUP_FRAMES)
    result = Result(count, args.frames)
    for run in range(args.runs):
        order = ("baseline", "pipeline") + (("stored",) if args.store else ())
        for which in (order if run % 2 == 0 else order[::-1]):
            if which == "stored":
                result.stored.append(timed(stored_pipeline, args.frames)[0])
            elif which == "baseline":
                timing, _ = timed(decode_and_detect, detector, sources, camera_ids, args.frames)
                result.baseline.append(timing)
            else:
                timing, summary = timed(pipeline, args.frames)
                result.pipeline.append(timing)
                result.summaries.append(summary)
        print(f"  {count} cameras, run {run + 1}/{args.runs}: decode+detect {result.baseline[-1].wall_s:.1f} s, "
              f"pipeline {result.pipeline[-1].wall_s:.1f} s", file=sys.stderr)
    return result


def print_table(results: list[Result], runs: int) -> None:
    from pipeline.runner import STAGES

    print(f"\nmedian of {runs} interleaved runs; goal: whole pipeline <= {GOAL:.2f} x decode+detect (wall)")
    header = (f"{'cams':>4} {'frames':>6} | {'dec+det s':>9} {'pipeline s':>10} {'ratio':>6} {'goal':>5} | "
              f"{'cpu ratio':>9} {'fps':>6} | {'tracklets':>9} {'crops embedded':>14} {'detections':>10}")
    print(header)
    print("-" * len(header))
    for r in results:
        summary = r.summaries[0]  # counts are the same in every run
        ratio = r.ratio("wall_s")
        fps = r.cameras * r.frames / r.median(r.pipeline, "wall_s")
        print(f"{r.cameras:>4} {r.frames:>6} | {r.median(r.baseline, 'wall_s'):>9.2f} "
              f"{r.median(r.pipeline, 'wall_s'):>10.2f} {ratio:>6.2f} {'ok' if ratio <= GOAL else 'MISS':>5} | "
              f"{r.ratio('cpu_s'):>9.2f} {fps:>6.1f} | {summary['tracklets']:>9} {summary['crops_embedded']:>14} "
              f"{summary['detections']:>10}")
    for r in results:
        if r.stored:
            stored, plain = r.median(r.stored, "wall_s"), r.median(r.pipeline, "wall_s")
            print(f"{r.cameras} cameras: with an identity store {stored:.2f} s, without {plain:.2f} s: "
                  f"ratio {stored / plain:.3f}")
    print("\nms per frame by stage (pipeline, median); embed runs on a worker thread beside detection (and on the "
          "main thread for batches the worker has not started when the main thread would wait), embed_wait is the "
          "main thread waiting for it")
    print(f"{'cams':>4} | " + " ".join(f"{stage:>10}" for stage in STAGES) + f" | {'dec+det':>8}")
    for r in results:
        baseline_ms = 1000 * r.median(r.baseline, "wall_s") / (r.cameras * r.frames)
        print(f"{r.cameras:>4} | " + " ".join(f"{r.stage_ms(stage):>10.2f}" for stage in STAGES)
              + f" | {baseline_ms:>8.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100, help="frames per camera")
    parser.add_argument("--cameras", type=int, nargs="+", default=[2, 4], help="camera counts to time")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each, interleaved (median reported)")
    parser.add_argument("--layout", type=Path, default=REPO_ROOT / "configs" / "bench_pets4.yaml",
                        help="tools/make_multicam.py layout with at least max(--cameras) cameras")
    parser.add_argument("--config", default=str(REPO_ROOT / "configs" / "demo.yaml"), help="pipeline config")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_pipeline"))
    parser.add_argument("--store", action="store_true", help="also time the pipeline writing an identity store")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.runs < 1 or min(args.cameras) < 1:
        parser.error("--frames, --runs and --cameras must be >= 1")
    try:
        videos = build_cameras(args.layout, args.frames, args.out)
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err} (PETS09-S2L1 is read from the data root: set MTMC_DATA)", file=sys.stderr)
        return 1
    if max(args.cameras) > len(videos):
        print(f"error: --cameras {max(args.cameras)} needs that many distinct cameras; {args.layout} has "
              f"{len(videos)}", file=sys.stderr)
        return 1
    results = [bench_cameras(args, videos, count) for count in args.cameras]
    print_table(results, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
