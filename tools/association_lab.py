"""Association experiments without re-running the whole pipeline each time.

Three cached stages, each keyed by its settings:
  collect  sources -> detector -> trackers -> tracklet buffer (frame-synchronous, like the runner with
           equal frame rates); tracklets with their crops go to a pickle
  embed    the tracklets' crops -> STA embeddings (npy) and per-crop features (npz) for the scene-adaptive
           metric of the offline pass: as the runner makes them (one-frame embeddings of the crops the clips
           used, same backbone pass), or with --crop-features every each kept crop embedded alone
  score    online association (runner batching) + offline refinement -> mtmc.txt -> TrackEval MTMC IDF1,
           plus appearance diagnostics against the ground truth (same/different person distance AUC,
           MTMC IDF1 with oracle association = the ceiling association can reach on these tracklets, and with
           the scene metric fitted on the ground-truth identities instead of the run's own constraints = what
           the best linear metric of these features gives the offline pass)

    python tools/association_lab.py --config configs/demo.yaml --scene runs/demo/cameras --detector mot \\
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from pipeline.association import (Observation, OnlineAssociator, has_crop_features, normalise,  # noqa: E402
                                  refine_identities)
from configs import parse_overrides  # noqa: E402
from pipeline.config import PipelineConfig, load_pipeline_config  # noqa: E402
from pipeline.detectors import create_detector  # noqa: E402
from pipeline.motio import read_mot_rows, rows_by_frame  # noqa: E402
from pipeline.overlap import foot_points  # noqa: E402
from pipeline.runner import clip_mode, default_tracker_factory  # noqa: E402
from pipeline.scene_metric import CropGroup, SceneMetric, embed_crops  # noqa: E402
from pipeline.sinks import mtmc_lines  # noqa: E402
from pipeline.sources import open_source  # noqa: E402
from pipeline.tracklets import Tracklet, TrackletBuffer  # noqa: E402
from tools.evaluation import evaluate_mtmc  # noqa: E402
from trackers.geometry import iou_matrix  # noqa: E402


def settings_key(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def collect(config: PipelineConfig, sources: list[str], cameras: list[str]) -> list[Tracklet]:
    """Tracklets in the order the runner would finalise them (all cameras stepped frame by frame)."""
    opened = [open_source(s, c, config.max_frames) for s, c in zip(sources, cameras)]
    detector = create_detector(config.detector, cameras, "cpu")
    factory = default_tracker_factory(config.tracker.name, config.tracker.overrides)
    streams, trackers = [iter(s) for s in opened], [factory(s.fps) for s in opened]
    buffer = TrackletBuffer(config.tracklets)
    finished: list[Tracklet] = []
    with tqdm(desc="collect", unit="step") as bar:
        while streams:
            frames, alive = [], []
            for stream, tracker in zip(streams, trackers):
                frame = next(stream, None)
                if frame is not None:
                    frames.append(frame)
                    alive.append((stream, tracker))
            if not frames:
                break
            for frame, dets, (_, tracker) in zip(frames, detector.detect(frames), alive):
                tracks = tracker.update(np.asarray(dets, dtype=np.float64).reshape(-1, 5))
                finished += buffer.update(frame.camera_id, frame.index, frame.timestamp, frame.image, tracks)
            bar.update()
    return finished + buffer.flush()


def embed(tracklets: list[Tracklet], config: PipelineConfig, test_mode: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """STA vectors (NaN rows for tracklets too short to embed) and, as the runner makes them, per-crop features:
    the one-frame embeddings of the crops each clip used, from the same backbone pass (empty when not embedded)."""
    from reid import Embedder

    embedder = Embedder(weights=config.reid.weights or None, device="cpu", batch_size=config.reid.batch_size,
                        test_mode=test_mode, runtime="auto")
    vectors = np.full((len(tracklets), embedder.embedding_dim), np.nan, dtype=np.float32)
    crops = [np.zeros((0, embedder.embedding_dim), np.float16) for _ in tracklets]
    rows = [i for i, t in enumerate(tracklets) if t.crops and len(t) >= config.tracklets.min_length]
    for start in tqdm(range(0, len(rows), 16), desc="embed"):
        chunk = rows[start:start + 16]
        vectors[chunk], features = embedder.embed_with_frames([tracklets[i].crops for i in chunk])
        for i, f in zip(chunk, features):
            crops[i] = f.astype(np.float16)
    return vectors, crops


def embed_per_crop(tracklets: list[Tracklet], config: PipelineConfig) -> list[np.ndarray]:
    """Every kept crop as a 1-frame clip (a second backbone pass; the runner's way before embed_with_frames)."""
    from reid import Embedder

    embedder = Embedder(weights=config.reid.weights or None, device="cpu", batch_size=config.reid.batch_size,
                        seq_len=1, runtime="auto")
    features = []
    for start in tqdm(range(0, len(tracklets), 16), desc="embed crops"):
        features += embed_crops(embedder, [t.crops for t in tracklets[start:start + 16]])
    return features


def save_crop_features(path: Path, features: list[np.ndarray]) -> None:
    np.savez(path, features=np.concatenate(features), counts=[len(f) for f in features])


def observations_of(tracklets: list[Tracklet], vectors: np.ndarray, crops: list[np.ndarray] | None = None
                    ) -> list[Observation]:
    crops = crops if crops is not None else [None] * len(tracklets)
    return [Observation(t.uid, t.camera_id, t.track_id, t.start_time, t.end_time,
                        None if np.isnan(v).any() else v, continues=t.end_reason == "max_length", crop_features=c,
                        feet=foot_points(t.timestamps, t.boxes))
            for t, v, c in zip(tracklets, vectors, crops)]


def associate(observations: list[Observation], config: PipelineConfig, info: dict | None = None,
              metric: SceneMetric | None = None) -> dict[int, int]:
    """The runner's scheme: online batches of reid.batch_size tracklets, then the offline pass (with ``metric``
    instead of the one it would learn, when given)."""
    associator = OnlineAssociator(config.association)
    online: dict[int, int] = {}
    size = config.reid.batch_size
    for start in range(0, len(observations), size):
        online.update({a.uid: a.global_id for a in associator.assign(observations[start:start + size])})
    if not config.association.refine:
        return online
    return refine_identities(observations, online, config.association, info, metric)


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


def gt_metric_score(tracklets, observations, labels, config, cameras, scene: Path, out: Path) -> dict | None:
    """Best MTMC IDF1 (and its metric_threshold) of the runner's association with gt_metric() in the offline
    pass, the threshold chosen on the scene itself: an upper bound, not a result (scene cameras only)."""
    metric = gt_metric(observations, labels, config)
    if metric is None or not config.association.refine:
        return None
    scores = {}
    for threshold in GT_METRIC_THRESHOLDS:
        swept = replace(config, association=replace(config.association, metric_threshold=threshold))
        scores[threshold] = evaluate(tracklets, associate(observations, swept, metric=metric), cameras, scene,
                                     out)["mtmc_idf1"]
    best = max(scores, key=scores.get)
    return {"mtmc_idf1": scores[best], "metric_threshold": best}


def evaluate(tracklets, ids, cameras, scene: Path, out: Path) -> dict[str, float]:
    write_mtmc(tracklets, ids, cameras, out)
    metrics = evaluate_mtmc(scene / "mtmc_gt.txt", out)
    per_camera = [m["IDF1"] for m in metrics["per_camera"].values()]
    mean = float(np.mean(per_camera))
    return {"mtmc_idf1": round(100 * metrics["MTMC"]["IDF1"], 1), "mean_cam_idf1": round(100 * mean, 1),
            "ratio": round(metrics["MTMC"]["IDF1"] / mean, 3), "per_cam": [round(100 * v, 1) for v in per_camera],
            "identities": len(set(ids.values()))}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--scene", required=True, help="make_multicam output folder (videos, gt, mtmc_gt.txt)")
    parser.add_argument("--cameras", nargs="+", default=None, help="camera names (default: cameras.json)")
    parser.add_argument("--detector", default="mot", help="mot (scene gt boxes) | yolox")
    parser.add_argument("--cache", default="runs/assoc_lab")
    parser.add_argument("--set", action="append", default=[], help="dotted.key=value config override")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=VIDEO,DETFILE",
                        help="negative-control camera from another scene (no identity may be shared with it)")
    parser.add_argument("--test-mode", default=None, help="even | all (default: the runner's, pipeline.runner.clip_mode)")
    parser.add_argument("--crop-features", choices=("clip", "every"), default="clip",
                        help="scene-metric per-crop features: clip = the crops the clips used, from their backbone "
                             "pass (the runner); every = every kept crop embedded alone (a second pass)")
    args = parser.parse_args(argv)
    scene, cache = Path(args.scene), Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    cameras = args.cameras or [r["name"] for r in json.loads((scene / "cameras.json").read_text())]
    sources = [str(scene / f"{c}.mp4") for c in cameras]
    det_files = [str(scene / "gt" / c / "gt" / "gt.txt") for c in cameras]
    extras = [parse_extra(item) for item in args.extra]
    scene_cameras = list(cameras)
    cameras += [name for name, _, _ in extras]
    sources += [video for _, video, _ in extras]
    det_files += [dets for _, _, dets in extras]
    overrides = {"detector.name": args.detector, "progress": False, **parse_overrides(args.set)}
    if args.detector == "mot":
        overrides.update({"detector.det_files": det_files, "detector.conf": 0.5})
    config = load_pipeline_config(args.config, overrides)
    test_mode = args.test_mode or clip_mode(config.association)

    collect_key = settings_key(str(scene), cameras, sources, config.detector, config.tracker, config.tracklets)
    tracklet_file = cache / f"tracklets_{collect_key}.pkl"
    if not tracklet_file.is_file():
        tracklet_file.write_bytes(pickle.dumps(collect(config, sources, cameras)))
    tracklets = pickle.loads(tracklet_file.read_bytes())
    embed_key = settings_key(collect_key, config.reid.weights, test_mode, config.tracklets.min_length)
    vector_file, clip_crop_file = cache / f"vectors_{embed_key}.npy", cache / f"clipcrops_{embed_key}.npz"
    if not (vector_file.is_file() and clip_crop_file.is_file()):
        vectors, features = embed(tracklets, config, test_mode)
        np.save(vector_file, vectors)
        save_crop_features(clip_crop_file, features)
    crop_file = clip_crop_file if args.crop_features == "clip" else cache / f"percrop_{embed_key}.npz"
    if not crop_file.is_file():
        save_crop_features(crop_file, embed_per_crop(tracklets, config))
    stored = np.load(crop_file)
    crops = np.split(stored["features"], np.cumsum(stored["counts"])[:-1])
    observations = observations_of(tracklets, np.load(vector_file), crops)
    info: dict = {}
    ids = associate(observations, config, info)
    result = {"negctl_shared": shared_ids(tracklets, ids, scene_cameras)} if extras else {}
    result["overlaps"] = [f"{f.first}-{f.second} {f.inliers}/{f.seeds}" for f in info.get("overlaps", [])]
    extra_names = {name for name, _, _ in extras}
    keep = [i for i, t in enumerate(tracklets) if t.camera_id not in extra_names]
    tracklets, observations = [tracklets[i] for i in keep], [observations[i] for i in keep]
    labels = gt_labels(tracklets, scene)
    oracle = oracle_ids(tracklets, labels)
    result |= {"tracklets": len(tracklets), **evaluate(tracklets, ids, scene_cameras, scene, cache / "mtmc.txt"),
               "oracle_mtmc_idf1": evaluate(tracklets, oracle, scene_cameras, scene, cache / "oracle.txt")["mtmc_idf1"],
               "gt_metric_mtmc_idf1": gt_metric_score(tracklets, observations, labels, config, scene_cameras, scene,
                                                      cache / "gt_metric.txt"),
               "separation": separation(observations, labels, config.association.center),
               "metric_separation": metric_separation(observations, labels, config)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
