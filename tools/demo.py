"""The main job end to end on real data (what ``make demo`` runs).

Builds three pseudo-cameras from PETS09-S2L1 (configs/multicam_pets3.yaml: two overlapping windows with
different colour, plus a 200-frame delayed recoloured copy of one window), runs the pipeline on them with
the YOLOX-Nano detector (configs/demo.yaml), and prints MTMC IDF1 next to the per-camera IDF1: on MOT15's ids,
which give a person who comes back a new id, and with one id per person (configs/datasets/pets09_s2l1_people.yaml).

    python tools/demo.py --data ../shared/data --out runs/demo [--frames 300]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from configs import REPO_ROOT, ConfigError

MISSING_DATA = """error: demo input missing: {what}
The demo needs (read in place, never copied into the repo):
  <data>/mot15/PETS09-S2L1/PETS09-S2L1.avi and gt/gt.txt  (MOTChallenge 2D MOT 2015, https://motchallenge.net/data/MOT15/;
                                                          the video is PETS 2009 S2.L1 View 1, University of Reading)
  <data>/models/yolox_nano.onnx                           (YOLOX-Nano ONNX, https://github.com/Megvii-BaseDetection/YOLOX releases)
Pass --data DIR or set MTMC_DATA (default ../shared/data)."""


def check_inputs(data: Path) -> str | None:
    for path in (data / "mot15/PETS09-S2L1/PETS09-S2L1.avi", data / "mot15/PETS09-S2L1/gt/gt.txt",
                 data / "models/yolox_nano.onnx"):
        if not path.is_file():
            return str(path)
    return None


def run_demo(data: Path, out: Path, frames: int, config: Path, layout: Path) -> dict:
    from pipeline.config import load_pipeline_config
    from pipeline.runner import MultiCameraPipeline
    from tools.datasets.people import people_gt
    from tools.evaluation import evaluate_mtmc
    from tools.make_multicam import load_config, make_multicam

    cameras_dir = out / "cameras"
    records = make_multicam(load_config(layout, frames), cameras_dir, data)
    sources = [record["video"] for record in records]
    overrides = {"output.out": str(out / "pipeline"),
                 "detector.model": str(data / "models" / "yolox_nano.onnx")}
    summary = MultiCameraPipeline(load_pipeline_config(config, overrides)).run(sources)
    metrics = evaluate_mtmc(cameras_dir / "mtmc_gt.txt", out / "pipeline" / "mtmc.txt")
    people = people_gt(cameras_dir)
    people_metrics = None if people is None else evaluate_mtmc(people.gt, out / "pipeline" / "mtmc.txt")
    return {"summary": summary, "metrics": metrics, "people_metrics": people_metrics}


def report(result: dict) -> None:
    metrics, summary = result["metrics"], result["summary"]
    per_camera = {name: m["IDF1"] for name, m in metrics["per_camera"].items()}
    mean_camera = sum(per_camera.values()) / len(per_camera)
    mtmc = metrics["MTMC"]["IDF1"]
    print(f"mode: {summary['mode']}; {summary['frames']} frames, {summary['identities']} global ids, "
          f"{summary['throughput_fps']} frames/s")
    for name, value in per_camera.items():
        print(f"  camera {name}: IDF1 {100 * value:.1f}")
    print(f"MTMC IDF1 {100 * mtmc:.1f} (mean per-camera IDF1 {100 * mean_camera:.1f}; "
          f"ratio {mtmc / mean_camera:.2f}, target >= 0.90)")
    people = result.get("people_metrics")
    if people:  # MOT ground truth gives a person who re-enters the view a new id; the product keeps theirs
        per_camera = [m["IDF1"] for m in people["per_camera"].values()]
        print(f"MTMC IDF1 {100 * people['MTMC']['IDF1']:.1f} with one id per person (mtmc_gt_people.txt: the ids "
              f"the ground truth gives one person who comes back, joined; mean per-camera IDF1 "
              f"{100 * sum(per_camera) / len(per_camera):.1f})")


def main(argv: list[str] | None = None) -> int:
    scene_parser = argparse.ArgumentParser(add_help=False)
    scene_parser.add_argument("--scene", choices=("pets", "terrace"), default="pets")
    scene, rest = scene_parser.parse_known_args(argv)
    if scene.scene == "terrace":  # the real two-camera benchmark, with its own options
        from tools.bench_terrace import main as bench_terrace

        return bench_terrace(rest)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scene", choices=("pets", "terrace"), default="pets",
                        help="pets: PETS09 pseudo-cameras (default); terrace: EPFL Terrace, two real cameras "
                             "(tools/bench_terrace.py, its own options)")
    parser.add_argument("--data", default=None, help="data root (default: $MTMC_DATA or ../shared/data)")
    parser.add_argument("--out", default="runs/demo", help="output folder")
    parser.add_argument("--frames", type=int, default=0, help="use only the first N source frames (0 = all 795)")
    parser.add_argument("--config", default=str(REPO_ROOT / "configs" / "demo.yaml"), help="pipeline config")
    parser.add_argument("--layout", default=str(REPO_ROOT / "configs" / "multicam_pets3.yaml"), help="camera layout")
    args = parser.parse_args(argv)
    from configs import data_root

    data = Path(args.data) if args.data else data_root()
    missing = check_inputs(data)
    if missing:
        print(MISSING_DATA.format(what=missing), file=sys.stderr)
        return 1
    try:
        result = run_demo(data, Path(args.out), args.frames, Path(args.config), Path(args.layout))
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
