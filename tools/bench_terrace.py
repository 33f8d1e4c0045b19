"""EPFL Terrace benchmark: the pipeline on two real overlapping views, with ground-truth boxes and with YOLOX-Nano.

Prepares the scene under <out>/scene (tools/datasets/epfl_terrace.py), runs pipeline.runner.MultiCameraPipeline
once per detection source with the config run_pipeline.py uses without flags (the PipelineConfig defaults, then
--set overrides), scores each run's mtmc.txt with TrackEval and prints one table: MTMC IDF1 / IDP / IDR and
per-camera HOTA / IDF1. The numbers go to <out>/results.json, the runs to <out>/run_<source>/.

    python -m tools.bench_terrace [--data DIR] [--out runs/terrace] [--frames 0:900] [--detections gt yolox] \\
        [--set association.overlap=true]

Detection sources: gt = the scene's ground-truth boxes through the mot detector (detector.conf 0.5, as
tools/association_lab.py feeds them), yolox = the default detector, <data>/models/yolox_nano.onnx.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from configs import UserError, data_root, parse_overrides
from tools.datasets.epfl_terrace import DATASET, FrameRange, frame_range_arg, prepare_scene
from tools.evaluation import evaluate_mtmc, write_json

if TYPE_CHECKING:
    from pipeline.config import PipelineConfig

DETECTIONS = {"gt": "GT boxes", "yolox": "YOLOX-Nano"}
YOLOX_MODEL = Path("models") / "yolox_nano.onnx"


def detection_overrides(source: str, scene: Path, cameras: list[str], data: Path) -> dict[str, Any]:
    if source == "gt":
        det_files = [str(scene / "gt" / camera / "gt" / "gt.txt") for camera in cameras]
        return {"detector.name": "mot", "detector.det_files": det_files, "detector.conf": 0.5}
    return {"detector.name": "yolox", "detector.model": str(data / YOLOX_MODEL)}


def source_config(source: str, scene: Path, cameras: list[str], data: Path, out: Path,
                  overrides: dict[str, Any]) -> PipelineConfig:
    """run_pipeline.py's config without flags (PipelineConfig defaults) + ``overrides`` + this detection source."""
    from pipeline.config import load_pipeline_config

    return load_pipeline_config(None, {**overrides, **detection_overrides(source, scene, cameras, data),
                                       "output.out": str(out / f"run_{source}")})


def run_source(config: PipelineConfig, records: list[dict], scene: Path, source: str) -> dict:
    """One pipeline run on the scene's videos (camera order = cameras.json, as mtmc_gt.txt numbers them), scored."""
    from pipeline.runner import MultiCameraPipeline

    run_dir = Path(config.output.out)
    summary = MultiCameraPipeline(config).run([record["video"] for record in records])
    if summary["failed_sources"]:
        errors = "; ".join(f"{s['camera']}: {s['error']}" for s in summary["sources"] if s["status"] != "ok")
        raise RuntimeError(f"{DETECTIONS[source]} run failed on camera(s) {errors}")
    metrics = evaluate_mtmc(scene / "mtmc_gt.txt", run_dir / "mtmc.txt")
    metrics["per_camera"] = {records[int(number) - 1]["name"]: values
                             for number, values in metrics["per_camera"].items()}
    return {"metrics": metrics, "run": str(run_dir), "frames": summary["frames"],
            "identities": summary["identities"], "throughput_fps": summary["throughput_fps"]}


def results_table(results: dict[str, dict]) -> str:
    """One row per detection source: MTMC IDF1, IDP, IDR, then HOTA and IDF1 of each camera (percent)."""
    cameras = list(next(iter(results.values()))["metrics"]["per_camera"])
    header = ["detections", "MTMC IDF1", "IDP", "IDR"]
    header += [f"{camera.rsplit('-', 1)[-1]} {metric}" for camera in cameras for metric in ("HOTA", "IDF1")]
    header += ["ids", "fps"]
    lines = [header]
    for source, result in results.items():
        mtmc, per_camera = result["metrics"]["MTMC"], result["metrics"]["per_camera"]
        cells = [DETECTIONS[source]] + [f"{100 * mtmc[m]:.1f}" for m in ("IDF1", "IDP", "IDR")]
        cells += [f"{100 * per_camera[c][m]:.1f}" for c in cameras for m in ("HOTA", "IDF1")]
        cells += [str(result["identities"]), f"{result['throughput_fps']:.1f}"]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(line[0].ljust(widths[0]) + "".join(f"  {cell:>{w}}" for cell, w in zip(line[1:], widths[1:]))
                     for line in lines)


def check_inputs(data: Path, sources: list[str]) -> None:
    if "yolox" in sources and not (data / YOLOX_MODEL).is_file():
        raise FileNotFoundError(f"{data / YOLOX_MODEL}: YOLOX-Nano ONNX weights not found "
                                "(https://github.com/Megvii-BaseDetection/YOLOX releases); "
                                "pass --data or --detections gt")


def run_bench(data: Path, out: Path, frames: FrameRange | None, sources: list[str], overrides: dict[str, Any],
              calibrated: bool = False) -> dict:
    """``calibrated``: give the pipeline the dataset's homographies (config ``cameras:``); else it learns
    where the views overlap from the run itself."""
    check_inputs(data, sources)
    scene = out / "scene"
    records = prepare_scene(scene, frames, data / DATASET)
    cameras = [record["name"] for record in records]
    if calibrated:
        overrides = {**overrides, "cameras": [{"id": r["name"], "homography": r["homography"]} for r in records]}
    configs = {source: source_config(source, scene, cameras, data, out, overrides) for source in sources}
    results = {}
    for position, (source, config) in enumerate(configs.items(), start=1):
        print(f"[{position}/{len(sources)}] {DETECTIONS[source]}: {len(records)} cameras x {records[0]['frames']} "
              f"frames -> {config.output.out}", flush=True)
        results[source] = run_source(config, records, scene, source)
    shown = {k: v for k, v in overrides.items() if k != "cameras"} | ({"calibrated": True} if calibrated else {})
    return {"scene": str(scene), "first_frame": records[0]["first_frame"], "frames": records[0]["frames"],
            "overrides": shown, "results": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="data root (default: $MTMC_DATA or ../shared/data)")
    parser.add_argument("--out", default="runs/terrace", help="output folder (scene, runs, results.json)")
    parser.add_argument("--frames", type=frame_range_arg, default=None, metavar="START:END",
                        help="0-based video frames START..END-1 (default: all 1,800)")
    parser.add_argument("--detections", nargs="+", choices=list(DETECTIONS), default=list(DETECTIONS),
                        help="detection sources to run (default: both)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="pipeline config override, e.g. association.overlap=true (repeatable)")
    parser.add_argument("--calibrated", action="store_true",
                        help="use the dataset's image -> ground homographies (config cameras:)")
    parser.add_argument("--json", type=Path, default=None, help="results file (default: <out>/results.json)")
    args = parser.parse_args(argv)
    data, out = (Path(args.data) if args.data else data_root()), Path(args.out)
    try:
        report = run_bench(data, out, args.frames, list(dict.fromkeys(args.detections)), parse_overrides(args.set),
                           args.calibrated)
    except (UserError, ValueError, FileNotFoundError, RuntimeError) as err:  # RuntimeError: a camera failed
        print(f"error: {err}", file=sys.stderr)
        return 1
    settings = ", ".join(f"{k}={v}" for k, v in report["overrides"].items()) or "defaults"
    print(f"EPFL Terrace, frames {report['first_frame']}..{report['first_frame'] + report['frames'] - 1}, {settings}")
    print(results_table(report["results"]))
    write_json(args.json or out / "results.json", report)
    print(f"results in {args.json or out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
