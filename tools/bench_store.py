"""Identity store on EPFL Terrace: chained runs against one whole run, and search by image.

1. Chained: the two halves of each camera (video frames 0-899 and 900-1799, cut as separate files) run one
   after the other on one new store; their mtmc.txt joined on one timeline (the second half's frames + 900)
   is scored against the whole sequence's ground truth, next to one run over the whole clips (with a store
   of its own, which changes no id: a new store's clock starts at 0). Continuity: each ground-truth person
   seen in both halves, and whether the second run gave them (majority of their boxes) an id the first run
   gave them (majority per camera); and the people new in the second half that took an id of the first.
2. Search: the whole run's store; for each person and camera, ``--queries`` crops at random frames (seeded)
   through ``mtmc identities search``'s ranking (tools/identities.py rank_identities, colour-normalised as
   that camera); rank-1 = the top identity is the one the run gave most of that person's boxes.

    python -m tools.bench_store [--out runs/bench_store] [--detections gt yolox] [--queries 5] [--reid W.pt] \
        [--calibrated] [--live]

``--live``: every run in live mode (online ids only, pipeline/live.py), and the second half once more on a
store of its own: what the first run's store brings (its identities, and the views it learned to overlap,
which a fresh live run learns only after tens of seconds).

Detections as tools/bench_terrace.py: gt = ground-truth boxes through the mot detector, yolox = YOLOX-Nano.
Predicted boxes are matched to ground-truth boxes of their frame at IoU >= 0.5.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from configs import UserError, data_root
from pipeline.motio import read_mtmc_rows
from tools.bench_terrace import DETECTIONS, check_inputs, detection_overrides
from tools.datasets.epfl_terrace import DATASET, FrameRange, prepare_scene
from tools.evaluation import evaluate_mtmc, write_json

HALVES = (FrameRange(0, 900), FrameRange(900, 1800))
MIN_QUERY_HEIGHT = 48  # pixels: a query crop a person would pick


def run(scene: Path, records: list[dict], source: str, out: Path, store: Path, data: Path, reid: str,
        calibrated: bool, live: bool = False) -> Path:
    from pipeline.config import load_pipeline_config
    from pipeline.live import LivePipeline
    from pipeline.runner import MultiCameraPipeline

    cameras = [r["name"] for r in records]
    overrides = {**detection_overrides(source, scene, cameras, data), "output.out": str(out), "progress": False,
                 "store.path": str(store), "reid.weights": reid, "association.refine": not live}
    if calibrated:  # the dataset's image -> ground homographies, as tools/bench_terrace.py --calibrated
        overrides["cameras"] = [{"id": r["name"], "homography": r["homography"]} for r in records]
    pipeline = LivePipeline if live else MultiCameraPipeline
    summary = pipeline(load_pipeline_config(None, overrides)).run([r["video"] for r in records])
    if summary["failed_sources"]:
        raise RuntimeError(f"{out}: camera(s) {summary['failed_sources']} failed")
    return out / "mtmc.txt"


def fresh(store: Path) -> Path:
    for path in (store, Path(f"{store}-wal"), Path(f"{store}-shm")):
        path.unlink(missing_ok=True)
    return store


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x, y, w, h box with (N, 4) such boxes."""
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2])
    y2 = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter / (box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter)


def person_ids(gt: np.ndarray, pred: np.ndarray, camera: int | None = None) -> dict[int, int]:
    """Ground-truth person -> the predicted id most of their matched boxes got (AI City rows; all cameras, or
    the camera numbered ``camera``)."""
    if camera is not None:
        gt, pred = gt[gt[:, 0] == camera], pred[pred[:, 0] == camera]
    votes: dict[int, dict[int, int]] = {}
    by_key: dict[tuple[int, int], np.ndarray] = {}
    for row in gt:
        by_key.setdefault((int(row[0]), int(row[2])), []).append(row)
    for row in pred:
        candidates = by_key.get((int(row[0]), int(row[2])))
        if not candidates:
            continue
        candidates = np.asarray(candidates)
        overlap = iou(row[3:7], candidates[:, 3:7])
        if overlap.max() >= 0.5:
            person = int(candidates[overlap.argmax(), 1])
            votes.setdefault(person, {}).setdefault(int(row[1]), 0)
            votes[person][int(row[1])] += 1
    return {person: max(counts, key=counts.get) for person, counts in votes.items()}


def chained(data: Path, out: Path, source: str, reid: str, calibrated: bool, live: bool = False) -> dict[str, Any]:
    folder = data / DATASET
    whole_records = prepare_scene(out / "scene_whole", None, folder)
    whole_store = fresh(out / f"whole_{source}.sqlite")
    whole = run(out / "scene_whole", whole_records, source, out / f"whole_{source}", whole_store, data, reid,
                calibrated, live)
    store = fresh(out / f"chained_{source}.sqlite")
    parts = []
    for number, frames in enumerate(HALVES, start=1):
        scene = out / f"scene_half{number}"
        records = prepare_scene(scene, frames, folder)
        pred = read_mtmc_rows(run(scene, records, source, out / f"half{number}_{source}", store, data, reid,
                                  calibrated, live))
        gt = read_mtmc_rows(scene / "mtmc_gt.txt")
        parts.append((frames, pred, gt))
    joined = np.vstack([np.column_stack([p[:, :2], p[:, 2] + frames.start, p[:, 3:]]) for frames, p, _ in parts])
    joined_file = out / f"chained_{source}_mtmc.txt"
    np.savetxt(joined_file, joined, fmt=["%d", "%d", "%d", "%.2f", "%.2f", "%.2f", "%.2f", "%d", "%d"])
    gt_file = out / "scene_whole" / "mtmc_gt.txt"
    whole_idf1 = evaluate_mtmc(gt_file, whole)["MTMC"]["IDF1"]
    chained_idf1 = evaluate_mtmc(gt_file, joined_file)["MTMC"]["IDF1"]
    (_, pred1, gt1), (_, pred2, gt2) = parts
    second = person_ids(gt2, pred2)
    first: dict[int, set[int]] = {}
    for camera in range(1, len(whole_records) + 1):
        for person, global_id in person_ids(gt1, pred1, camera).items():
            first.setdefault(person, set()).add(global_id)
    both = sorted(set(first) & set(second))
    kept = [p for p in both if second[p] in first[p]]
    old_ids = set(pred1[:, 1].astype(int).tolist())
    inherited = [p for p in set(second) - set(first) if second[p] in old_ids]
    result = {}
    if live:  # the second half again, on a store of its own
        alone = run(out / "scene_half2", prepare_scene(out / "scene_half2", HALVES[1], folder), source,
                    out / f"half2_alone_{source}", fresh(out / f"half2_alone_{source}.sqlite"), data, reid,
                    calibrated, live)
        result["half2_alone_idf1"] = evaluate_mtmc(out / "scene_half2" / "mtmc_gt.txt", alone)["MTMC"]["IDF1"]
    return result | {"whole_idf1": whole_idf1, "chained_idf1": chained_idf1, "ratio": chained_idf1 / whole_idf1,
            "half_idf1": [evaluate_mtmc(out / f"scene_half{n}" / "mtmc_gt.txt", out / f"half{n}_{source}" / "mtmc.txt")
                          ["MTMC"]["IDF1"] for n in (1, 2)],
            "people_in_both_halves": len(both), "kept_their_id": len(kept),
            "new_people_given_an_old_id": len(inherited), "ids": {str(p): [sorted(first[p]), second[p]] for p in both},
            "whole_store": str(whole_store),
            "whole_mtmc": str(whole)}


def search_rank1(out: Path, source: str, queries: int, reid: str, seed: int = 0) -> dict[str, Any]:
    from pipeline.store import IdentityStore
    from tools.identities import latest_run_config, normalise_colours, rank_identities, search_embedder

    scene = out / "scene_whole"
    gt = read_mtmc_rows(scene / "mtmc_gt.txt")
    truth = person_ids(gt, read_mtmc_rows(out / f"whole_{source}" / "mtmc.txt"))
    store = IdentityStore(out / f"whole_{source}.sqlite", readonly=True)
    config = latest_run_config(store)
    embedder = search_embedder(store, config, reid)
    rng = np.random.default_rng(seed)
    records = {r["number"]: r for r in _cameras(scene)}
    hits, per_person = [], {}
    for person in sorted(truth):
        for number, record in records.items():
            rows = gt[(gt[:, 1] == person) & (gt[:, 0] == number) & (gt[:, 6] >= MIN_QUERY_HEIGHT)]
            for row in rows[rng.choice(len(rows), min(queries, len(rows)), replace=False)] if len(rows) else []:
                crop = _crop(Path(record["video"]), int(row[2]) - 1, row[3:7])
                crops = normalise_colours(store, [crop], record["name"])
                ranked = rank_identities(store, embedder, crops, config)
                hit = bool(ranked) and ranked[0][0] == truth[person]
                hits.append(hit)
                per_person.setdefault(person, []).append(hit)
    store.close()
    return {"queries": len(hits), "rank1": float(np.mean(hits)) if hits else 0.0,
            "people": len(per_person), "people_mostly_first": int(sum(np.mean(h) > 0.5 for h in per_person.values())),
            "rank1_per_person": {str(p): float(np.mean(h)) for p, h in per_person.items()}}


def _cameras(scene: Path) -> list[dict]:
    import json

    return json.loads((scene / "cameras.json").read_text())


def _crop(video: Path, frame: int, box: np.ndarray) -> np.ndarray:
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, frame)
    ok, image = capture.read()
    capture.release()
    if not ok:
        raise FileNotFoundError(f"{video}: frame {frame} cannot be read")
    x, y, w, h = (int(round(v)) for v in box)
    return image[max(y, 0):y + h, max(x, 0):x + w].copy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="data root (default: $MTMC_DATA)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_store"))
    parser.add_argument("--detections", nargs="+", choices=list(DETECTIONS), default=["gt"])
    parser.add_argument("--queries", type=int, default=5, help="search queries per person and camera")
    parser.add_argument("--reid", default="", help="ReID weights for every run (default: the Embedder's)")
    parser.add_argument("--calibrated", action="store_true",
                        help="give the runs the dataset's image -> ground homographies (config cameras:)")
    parser.add_argument("--live", action="store_true", help="every run in live mode (online ids only)")
    args = parser.parse_args(argv)
    data = Path(args.data) if args.data else data_root()
    report = {}
    try:
        check_inputs(data, args.detections)
        args.out.mkdir(parents=True, exist_ok=True)
        for source in args.detections:
            result = chained(data, args.out, source, args.reid, args.calibrated, args.live)
            result["search"] = search_rank1(args.out, source, args.queries, args.reid or None)
            report[source] = result
            print(f"{DETECTIONS[source]}: MTMC IDF1 whole {100 * result['whole_idf1']:.1f}, chained halves "
                  f"{100 * result['chained_idf1']:.1f} (ratio {result['ratio']:.3f}; halves alone "
                  f"{100 * result['half_idf1'][0]:.1f}, {100 * result['half_idf1'][1]:.1f}); "
                  f"{result['kept_their_id']} of "
                  f"{result['people_in_both_halves']} people seen in both halves kept their id, "
                  f"{result['new_people_given_an_old_id']} new people took an old one; search rank-1 "
                  f"{100 * result['search']['rank1']:.1f}% of {result['search']['queries']} queries, "
                  f"{result['search']['people_mostly_first']} of {result['search']['people']} people ranked first "
                  f"by most of their queries" + (f"; second half on a store of its own "
                                                   f"{100 * result['half2_alone_idf1']:.1f}" if args.live else ""),
                  flush=True)
    except (UserError, ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    write_json(args.out / "results.json", report)
    print(f"results in {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
