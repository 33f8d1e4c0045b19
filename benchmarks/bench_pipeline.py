"""Pipeline speed per stage for 2 and 4 cameras, against decode + detection alone on the same inputs.

    python benchmarks/bench_pipeline.py --videos runs/demo/cameras [--frames 200] [--cameras 2 4]

Cameras are the pseudo-camera videos of tools/make_multicam.py (``<videos>/*.mp4``, reused in turn when
more cameras are asked for than there are files). Also prints how many crops the tracklet-level ReID
embedded against the number of detections a per-detection ReID would have embedded.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from configs import REPO_ROOT  # noqa: E402


def camera_list(videos: list[Path], count: int) -> tuple[list[str], list[str]]:
    sources = [str(videos[i % len(videos)]) for i in range(count)]
    return sources, [f"cam{i + 1}" for i in range(count)]


def decode_and_detect(config, sources: list[str], camera_ids: list[str]) -> float:
    """Seconds to read every frame and run the detector, batched across cameras as the pipeline does."""
    from pipeline.detectors import create_detector
    from pipeline.sources import open_source

    detector = create_detector(config.detector, camera_ids, config.device)
    streams = [iter(open_source(s, c, config.max_frames)) for s, c in zip(sources, camera_ids)]
    start = time.perf_counter()
    while streams:
        batch, alive = [], []
        for stream in streams:
            frame = next(stream, None)
            if frame is not None:
                batch.append(frame)
                alive.append(stream)
        streams = alive
        detector.detect(batch)
    return time.perf_counter() - start


def full_pipeline(config, sources: list[str], camera_ids: list[str]) -> dict:
    from pipeline.runner import MultiCameraPipeline

    config.camera_ids = camera_ids
    return MultiCameraPipeline(config).run(sources)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", default="runs/demo/cameras", help="folder of camera videos (*.mp4)")
    parser.add_argument("--frames", type=int, default=200, help="frames per camera")
    parser.add_argument("--cameras", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--config", default=str(REPO_ROOT / "configs" / "demo.yaml"))
    parser.add_argument("--out", default="runs/bench_pipeline")
    args = parser.parse_args(argv)
    videos = sorted(Path(args.videos).glob("*.mp4"))
    if not videos:
        print(f"error: no *.mp4 in {args.videos}; make them with tools/make_multicam.py (or make demo)", file=sys.stderr)
        return 1
    from pipeline.config import load_pipeline_config

    for count in args.cameras:
        sources, camera_ids = camera_list(videos, count)
        overrides = {"max_frames": args.frames, "progress": False, "output.out": f"{args.out}/{count}cams"}
        baseline = decode_and_detect(load_pipeline_config(args.config, overrides), sources, camera_ids)
        summary = full_pipeline(load_pipeline_config(args.config, overrides), sources, camera_ids)
        stages = ", ".join(f"{k} {v:.1f}" for k, v in summary["stage_ms_per_frame"].items())
        print(f"{count} cameras x {args.frames} frames: decode+detect {baseline:.1f} s, whole pipeline "
              f"{summary['wall_s']:.1f} s (ratio {summary['wall_s'] / baseline:.2f}, target <= 1.30); "
              f"{summary['throughput_fps']} frames/s")
        print(f"  ms per frame: {stages}")
        print(f"  ReID crops embedded (tracklet level): {summary['crops_embedded']} in {summary['tracklets']} "
              f"tracklets; detections (what per-detection ReID would embed): {summary['detections']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
