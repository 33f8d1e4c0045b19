"""Association experiments without re-running the whole pipeline each time.

Two stages:
  record  the product's own pipeline (pipeline.runner.MultiCameraPipeline, or pipeline.live.LivePipeline with
          --live) runs once on the scene and its identity stage records every embedded batch in the order it
          assigned them (tracklets with crops, STA vectors, per-crop features); cached, keyed by every setting
          that changes them (detector, tracker, tracklets, ReID, batching, clip mode)
  replay  a fresh pipeline.association.IdentityStage assigns the recorded batches under the settings asked
          for (online assignment + the offline pass) -> mtmc.txt -> TrackEval MTMC IDF1, plus appearance
          diagnostics against the ground truth (same/different person distance AUC, MTMC IDF1 with oracle
          association = the ceiling association can reach on these tracklets, and with the scene metric fitted
          on the ground-truth identities instead of the run's own constraints = what the best linear metric of
          these features gives the offline pass), and per pair of overlapping views the reprojection errors of
          tracklet pairs of the same and of different people (view_pair_errors, bins PAIR_ERROR_EDGES); where the
          scene has mtmc_gt_people.txt (a source that gives a person who comes back a new id), "people" holds
          the run's scores with one id per person (tools/datasets/people.py), and its oracle ceiling
With the settings of the recorded run the replay gives that run's global ids exactly (tests/test_pipeline.py).

    mtmc lab --config configs/demo.yaml --scene runs/demo/cameras --detector mot \
        --cache runs/assoc_lab --set association.threshold=0.6 --set tracklets.colour_norm=meanstd

``--extra NAME=VIDEO,DETFILE`` adds a camera from another scene as a negative control: it has no ground
truth here, and any global id it shares with the scene's cameras is a false cross-camera link (reported as
"negctl_shared"; the scene's MTMC IDF1 is scored on the scene's own cameras only).

Final figures must come from run_pipeline.py / tools/demo.py; this tool only ranks settings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from configs import parse_overrides
from pipeline.association import Embedded, IdentityStage, Observation, clip_mode
from pipeline.association.online import normalise
from pipeline.association.overlap import CameraOverlap, common_points, reprojection_error
from pipeline.association.records import has_crop_features
from pipeline.association.scene_metric import CropGroup, SceneMetric
from pipeline.config import PipelineConfig, load_pipeline_config
from pipeline.motio import read_mot_rows, rows_by_frame
from pipeline.sinks import mtmc_lines
from pipeline.tracklets import Tracklet
from reid.model_store import best_model_file
from tools.datasets.people import people_gt
from tools.evaluation import evaluate_mtmc
from trackers.geometry import iou_matrix

# embedded batches in the order the pipeline assigned them, with the running tracks' feet at that moment
Record = list[tuple[list[Tracklet], Embedded, dict | None]]


def settings_key(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


class RecordingStage(IdentityStage):
    """The pipeline's identity stage, keeping every batch it assigns (crops included) for replays."""

    def __init__(self, config: PipelineConfig, background_refit: bool = False):
        super().__init__(config, background_refit)
        self.record: Record = []

    def assign(self, tracklets, embedded, crops_per_embed=None, running=None):
        self.record.append((list(tracklets), embedded, running))
        return super().assign(tracklets, embedded, crops_per_embed, running)


def record_run(config: PipelineConfig, sources: list[str], out: Path, live: bool = False) -> Record:
    """Run the product's pipeline on ``sources`` and return what its identity stage assigned, batch by batch."""
    from pipeline.live import LivePipeline
    from pipeline.runner import MultiCameraPipeline

    config = replace(config, output=replace(config.output, out=str(out), save_video=False))
    stage = RecordingStage(config, background_refit=False)
    pipeline_class = LivePipeline if live else MultiCameraPipeline
    pipeline_class(config, identity_stage=stage).run(sources)
    return stage.record


def replay(record: Record, config: PipelineConfig, info: dict | None = None, metric: SceneMetric | None = None
           ) -> dict[int, int]:
    """uid -> global id: the recorded batches assigned by a fresh IdentityStage under ``config``, then its
    offline pass (with ``metric`` instead of the one it would learn, when given)."""
    stage = IdentityStage(config)
    ids: dict[int, int] = {}
    for tracklets, embedded, running in record:
        ids.update({a.uid: a.global_id for a in stage.assign(tracklets, embedded, running=running)})
    final, _ = stage.finish(metric)
    if info is not None:
        info.update(stage.info)
    if final is None:  # online: as the runner writes its files at the end, merged ids under the kept one (the
        # writer's guard against one id twice in a frame, which needs rows, is not replayed: it acts only on runs
        # longer than forget_after_s)
        merged_into = stage.merged_into
        return {uid: merged_into.get(global_id, global_id) for uid, global_id in ids.items()}
    return final


def observations_of(record: Record, config: PipelineConfig) -> list[Observation]:
    """Every recorded tracklet as the associator sees it (with foot points), in assignment order."""
    stage = IdentityStage(config)
    return [o for tracklets, embedded, _ in record for o in stage.observations_of(tracklets, embedded)]


def write_mtmc(tracklets: list[Tracklet], ids: dict[int, int], cameras: list[str], path: Path) -> None:
    number = {c: i + 1 for i, c in enumerate(cameras)}
    path.write_text("".join(mtmc_lines(number[t.camera_id], t.mot_rows(ids[t.uid])) for t in tracklets))


def gt_labels(tracklets: list[Tracklet], scene: Path) -> list[int]:
    """Majority ground-truth id of each tracklet's boxes (IoU >= 0.5), -1 when none matches."""
    per_camera: dict[str, list[np.ndarray]] = {}
    labels = []
    for t in tracklets:
        if t.camera_id not in per_camera:
            path = scene / "gt" / t.camera_id / "gt" / "gt.txt"
            per_camera[t.camera_id] = rows_by_frame(read_mot_rows(path), 100000) if path.is_file() else []
        votes: dict[int, int] = {}
        for frame, box in zip(t.frames, t.boxes):
            gt = per_camera[t.camera_id][frame] if frame < len(per_camera[t.camera_id]) else np.zeros((0, 6))
            if len(gt):
                g = np.column_stack([gt[:, 2], gt[:, 3], gt[:, 2] + gt[:, 4], gt[:, 3] + gt[:, 5]])
                ious = iou_matrix(box[None, :4], g)[0]
                if ious.max() >= 0.5:
                    gid = int(gt[ious.argmax(), 1])
                    votes[gid] = votes.get(gid, 0) + 1
        labels.append(max(votes, key=votes.get) if votes else -1)
    return labels


def oracle_ids(tracklets: list[Tracklet], labels: list[int]) -> dict[int, int]:
    """Each tracklet under its gt id (longest first), a fresh id where that would repeat an id in a frame."""
    taken: dict[tuple[str, int], set[int]] = {}
    ids = {}
    for t, label in sorted(zip(tracklets, labels), key=lambda pair: -len(pair[0])):
        frames = taken.setdefault((t.camera_id, label), set())
        if label < 0 or frames.intersection(t.frames):
            ids[t.uid] = 100000 + t.uid
        else:
            ids[t.uid] = label
            frames.update(t.frames)
    return ids


def separation(observations: list[Observation], labels: list[int], centre: bool) -> dict[str, float]:
    """ROC AUC of (negated) cosine distance for same vs different person, over cross-camera pairs."""
    keep = [i for i, o in enumerate(observations) if o.embedding is not None and labels[i] >= 0]
    vectors = np.asarray([observations[i].embedding for i in keep])
    if centre:
        vectors = normalise(vectors - vectors.mean(0))
    distance = 1.0 - vectors @ vectors.T
    same, different = [], []
    for a in range(len(keep)):
        for b in range(a + 1, len(keep)):
            if observations[keep[a]].camera_id != observations[keep[b]].camera_id:
                (same if labels[keep[a]] == labels[keep[b]] else different).append(distance[a, b])
    same, different = np.asarray(same), np.asarray(different)
    auc = float((same[:, None] < different[None, :]).mean()) if len(same) and len(different) else float("nan")
    return {"auc": round(auc, 4), "same": round(float(np.median(same)), 3),
            "different": round(float(np.median(different)), 3)}


PAIR_ERROR_EDGES = (0.0, 0.25, 0.5, 1.0, float("inf"))  # overlap_same_error, tracklet / track different_error


def view_pair_errors(observations: list[Observation], labels: list[int], overlaps: list[CameraOverlap],
                     min_common: int) -> dict[str, dict[str, list[int]]]:
    """Per pair of views the run found (learned or calibrated): its tracklet pairs seen at >= min_common
    common times, counted by reprojection error (box heights; PAIR_ERROR_EDGES) for the same ground-truth
    person and for different people: how well a threshold on it tells them apart."""
    table = {}
    for view in overlaps:
        counts = {"same": [0] * (len(PAIR_ERROR_EDGES) - 1), "different": [0] * (len(PAIR_ERROR_EDGES) - 1)}
        seen = [(o, l) for o, l in zip(observations, labels) if o.feet is not None and l >= 0]
        firsts = [(o, l) for o, l in seen if o.camera_id == view.first]
        seconds = [(o, l) for o, l in seen if o.camera_id == view.second]
        for first, label in firsts:
            for second, other in seconds:
                mine, theirs = common_points(first.feet, second.feet)
                if len(mine) >= min_common:
                    error = reprojection_error(view.homography, mine, theirs)
                    counts["same" if label == other else "different"][
                        int(np.searchsorted(PAIR_ERROR_EDGES, error, side="right")) - 1] += 1
        table[f"{view.first}-{view.second}"] = counts
    return table


def gt_metric(observations: list[Observation], labels: list[int], config: PipelineConfig) -> SceneMetric | None:
    """The scene metric fitted on ground-truth identities (every crop of a person is 'same', every two people
    'different') instead of the run's own constraints: no linear metric of these features does better."""
    crops: dict[int, list[np.ndarray]] = {}
    for observation, label in zip(observations, labels):
        if label >= 0 and has_crop_features(observation):
            crops.setdefault(label, []).append(observation.crop_features)
    groups = [np.concatenate(parts) for parts in crops.values() if sum(len(p) for p in parts) >= 2]
    if len(groups) < 2:
        return None
    different = [(i, j) for i in range(len(groups)) for j in range(i + 1, len(groups))]
    return SceneMetric.from_groups(groups, different, config.association)


def metric_separation(observations: list[Observation], labels: list[int], config: PipelineConfig
                      ) -> dict[str, float] | None:
    """separation() in the scene metric learned the way the offline pass learns it."""
    usable = [has_crop_features(o) for o in observations]
    groups = [CropGroup(o.camera_id, o.track_id, o.start_time, o.end_time, o.crop_features)
              for o, ok in zip(observations, usable) if ok]
    metric = SceneMetric.fit(groups, config.association)
    if metric is None:
        return None
    projected = [replace(o, embedding=metric.embed(o.crop_features) if ok else None)
                 for o, ok in zip(observations, usable)]
    return {**separation(projected, labels, False), "pairs": metric.pairs}


GT_METRIC_THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def gt_metric_score(record: Record, tracklets, observations, labels, config, cameras, scene: Path, out: Path
                    ) -> dict | None:
    """Best MTMC IDF1 (and its metric_threshold) of the runner's association with gt_metric() in the offline
    pass, the threshold chosen on the scene itself: an upper bound, not a result (scene cameras only)."""
    metric = gt_metric(observations, labels, config)
    if metric is None or not config.association.refine:
        return None
    scores = {}
    for threshold in GT_METRIC_THRESHOLDS:
        swept = replace(config, association=replace(config.association, metric_threshold=threshold))
        scores[threshold] = evaluate(tracklets, replay(record, swept, metric=metric), cameras, scene,
                                     out)["mtmc_idf1"]
    best = max(scores, key=scores.get)
    return {"mtmc_idf1": scores[best], "metric_threshold": best}


def evaluate(tracklets, ids, cameras, scene: Path, out: Path, gt: Path | None = None) -> dict[str, float]:
    """Scores of ``ids`` against ``gt`` (default: the scene's mtmc_gt.txt)."""
    write_mtmc(tracklets, ids, cameras, out)
    return {**idf1_scores(evaluate_mtmc(gt or scene / "mtmc_gt.txt", out)), "identities": len(set(ids.values()))}


def idf1_scores(metrics: dict) -> dict[str, float]:
    per_camera = [m["IDF1"] for m in metrics["per_camera"].values()]
    mean = float(np.mean(per_camera))
    return {"mtmc_idf1": round(100 * metrics["MTMC"]["IDF1"], 1), "mean_cam_idf1": round(100 * mean, 1),
            "ratio": round(metrics["MTMC"]["IDF1"] / mean, 3), "per_cam": [round(100 * v, 1) for v in per_camera]}


def parse_extra(item: str) -> tuple[str, str, str]:
    name, _, paths = item.partition("=")
    video, _, dets = paths.partition(",")
    if not (name and video and dets):
        raise SystemExit(f"--extra {item!r}: expected NAME=VIDEO,DETFILE")
    for path in (video, dets):
        if not Path(path).is_file():
            raise SystemExit(f"--extra {item!r}: no such file {path}")
    return name, video, dets


def shared_ids(tracklets: list[Tracklet], ids: dict[int, int], scene_cameras: list[str]) -> int:
    """Global ids present both in the scene's cameras and in a negative-control camera."""
    inside = {ids[t.uid] for t in tracklets if t.camera_id in scene_cameras}
    outside = {ids[t.uid] for t in tracklets if t.camera_id not in scene_cameras}
    return len(inside & outside)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="pipeline config (default: the defaults, as run_pipeline.py)")
    parser.add_argument("--scene", required=True, help="make_multicam output folder (videos, gt, mtmc_gt.txt)")
    parser.add_argument("--cameras", nargs="+", default=None, help="camera names (default: cameras.json)")
    parser.add_argument("--detector", default="mot", help="mot (scene gt boxes) | yolox | a model file")
    parser.add_argument("--cache", default="runs/assoc_lab")
    parser.add_argument("--set", action="append", default=[], help="dotted.key=value config override")
    parser.add_argument("--live", action="store_true", help="record and replay as live mode (online ids only)")
    parser.add_argument("--calibrated", action="store_true",
                        help="give the cameras the homographies in the scene's cameras.json (config cameras:)")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=VIDEO,DETFILE",
                        help="negative-control camera from another scene (no identity may be shared with it)")
    return parser.parse_args(argv)


def scene_sources(args: argparse.Namespace) -> tuple[list[str], list[str], list[str], list[str]]:
    """(scene cameras, all cameras, their sources, their det files): the scene's, then the --extra ones."""
    scene = Path(args.scene)
    cameras = args.cameras or [r["name"] for r in json.loads((scene / "cameras.json").read_text())]
    records = {r["name"]: r for r in json.loads((scene / "cameras.json").read_text())} if not args.cameras else {}
    sources = [str(records[c]["video"]) if c in records else str(scene / f"{c}.mp4") for c in cameras]
    det_files = [str(scene / "gt" / c / "gt" / "gt.txt") for c in cameras]
    extras = [parse_extra(item) for item in args.extra]
    return (list(cameras), cameras + [n for n, _, _ in extras], sources + [v for _, v, _ in extras],
            det_files + [d for _, _, d in extras])


def recorded(config: PipelineConfig, sources: list[str], cameras: list[str], cache: Path, live: bool) -> Record:
    """The pipeline's recorded batches for these settings, from the cache or from a fresh run."""
    model = config.reid.weights or str(best_model_file() or "zero-shot default")  # what Embedder() would load
    # calibrated runs, and live runs that learn the views, also record the running tracks' feet at each
    # assignment (IdentityStage.uses_running_feet)
    running_feet = live and IdentityStage(config).uses_running_feet
    key = settings_key("record v2", cameras, sources, config.detector, config.tracker, config.tracklets, config.reid,
                       model, clip_mode(config.association), config.max_frames, live, config.cameras,
                       *(["running feet"] if running_feet else []))
    path = cache / f"record_{key}.pkl"
    if not path.is_file():
        path.write_bytes(pickle.dumps(record_run(replace(config, camera_ids=cameras), sources,
                                                 cache / f"run_{key}", live)))
    return pickle.loads(path.read_bytes())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    scene, cache = Path(args.scene), Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    scene_cameras, cameras, sources, det_files = scene_sources(args)
    overrides = {"detector.name": args.detector, "progress": False, **parse_overrides(args.set)}
    if args.detector == "mot":
        overrides.update({"detector.det_files": det_files, "detector.conf": 0.5})
    if args.live:
        overrides["association.refine"] = False
    if args.calibrated:
        overrides["cameras"] = [{"id": r["name"], "homography": r["homography"]}
                                for r in json.loads((scene / "cameras.json").read_text()) if "homography" in r]
    config = load_pipeline_config(args.config, overrides)
    record = recorded(config, sources, cameras, cache, args.live)
    info: dict = {}
    ids = replay(record, config, info)
    tracklets = [t for batch, _, _ in record for t in batch]
    observations = observations_of(record, config)
    result = {"negctl_shared": shared_ids(tracklets, ids, scene_cameras)} if args.extra else {}
    result["overlaps"] = [f"{f.first}-{f.second} {f.inliers}/{f.seeds}" for f in info.get("overlaps", [])]
    keep = [i for i, t in enumerate(tracklets) if t.camera_id in scene_cameras]
    tracklets, observations = [tracklets[i] for i in keep], [observations[i] for i in keep]
    labels = gt_labels(tracklets, scene)
    oracle = oracle_ids(tracklets, labels)
    result |= {"tracklets": len(tracklets), **evaluate(tracklets, ids, scene_cameras, scene, cache / "mtmc.txt"),
               "oracle_mtmc_idf1": evaluate(tracklets, oracle, scene_cameras, scene, cache / "oracle.txt")["mtmc_idf1"],
               "gt_metric_mtmc_idf1": gt_metric_score(record, tracklets, observations, labels, config, scene_cameras,
                                                      scene, cache / "gt_metric.txt"),
               "separation": separation(observations, labels, config.association.center),
               "view_pair_errors": view_pair_errors(observations, labels, info.get("overlaps", []),
                                                    config.association.overlap_min_common),
               "metric_separation": metric_separation(observations, labels, config)}
    people = people_gt(scene)
    if people is not None:  # the source gave a person who came back a new id: scored with those joined too
        oracle = oracle_ids(tracklets, [people.person_of.get(label, label) for label in labels])
        result["people"] = {**idf1_scores(evaluate_mtmc(people.gt, cache / "mtmc.txt")),
                            "oracle_mtmc_idf1": evaluate(tracklets, oracle, scene_cameras, scene,
                                                         cache / "oracle_people.txt", people.gt)["mtmc_idf1"]}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
