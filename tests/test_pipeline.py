"""End-to-end runs of the multi-camera pipeline on short real clips (PETS09-S2L1 pseudo-cameras, TUD).

Detections come from the ground-truth files (the MOT-file detector), so these tests exercise tracking,
tracklets, STA embedding, association and outputs on real pixels without detector noise. The runs
share one embedder (the pipeline's default: the CPU fast path). Association unit tests use hand-made
vectors: they check the constraints, not the embedder.
"""

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from configs import REPO_ROOT, data_root
from pipeline.association import Observation, OnlineAssociator, refine_identities
from pipeline.config import AssociationConfig, TrackletConfig, load_pipeline_config
from pipeline.motio import read_mot_rows
from pipeline.runner import MultiCameraPipeline, default_embedder, engine_threads
from pipeline.tracklets import TrackletBuffer
from tools.datasets.people import people_gt
from tools.evaluation import evaluate_mtmc
from tools.make_multicam import load_config, make_multicam

MOT15 = data_root() / "mot15"
PETS_VIDEO = MOT15 / "PETS09-S2L1" / "PETS09-S2L1.avi"
TUD = MOT15 / "TUD-Stadtmitte"
needs_data = pytest.mark.skipif(not PETS_VIDEO.is_file() or not (TUD / "TUD-Stadtmitte.mp4").is_file(),
                                reason=f"PETS09/TUD clips absent under {MOT15} (set MTMC_DATA)")
FRAMES = 80


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """Three 80-frame pseudo-cameras: two overlapping windows and a 20-frame delayed recoloured copy."""
    out = tmp_path_factory.mktemp("scene")
    layout = yaml.safe_load((REPO_ROOT / "configs" / "multicam_pets3.yaml").read_text())
    layout["cameras"][2]["delay"] = 20
    (out / "layout.yaml").write_text(yaml.safe_dump(layout))
    make_multicam(load_config(out / "layout.yaml", FRAMES), out, data_root())
    return out


@pytest.fixture(scope="module")
def embedder():
    return default_embedder(load_pipeline_config(REPO_ROOT / "configs" / "pipeline.yaml", {}), engine_threads())


def scene_run(scene: Path, out: Path, cameras: list[str], extra_sources=(), extra_gt=(), **overrides):
    """(sources, config) of a run on the scene's cameras with their ground-truth boxes as detections."""
    sources = [str(scene / f"{c}.mp4") for c in cameras] + list(extra_sources)
    gt_files = [str(scene / "gt" / c / "gt" / "gt.txt") for c in cameras] + list(extra_gt)
    values = {"output.out": str(out), "progress": False, "max_frames": FRAMES, "detector.name": "mot",
              "detector.det_files": gt_files, "detector.conf": 0.5, **overrides}
    return sources, load_pipeline_config(None, values)


def run_scene(scene: Path, out: Path, cameras: list[str], embedder, extra_sources=(), extra_gt=(), **overrides):
    sources, config = scene_run(scene, out, cameras, extra_sources, extra_gt, **overrides)
    return MultiCameraPipeline(config, embedder=embedder).run(sources)


def final_ids(out: Path) -> dict[int, int]:
    """uid -> global id as the run's events give it: assigned online, then updated by the offline pass, or (live)
    under the id live mode merged it into."""
    assigned = {e["uid"]: e["global_id"] for e in events(out) if e["event"] == "identity_assigned"}
    merged = {e["old_global_id"]: e["global_id"] for e in events(out) if e["event"] == "identities_merged"}
    for uid, global_id in assigned.items():
        while global_id in merged:
            global_id = merged[global_id]
        assigned[uid] = global_id
    return {**assigned, **{e["uid"]: e["global_id"] for e in events(out) if e["event"] == "identity_updated"}}


def events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def three_cameras(scene, embedder, tmp_path_factory):
    out = tmp_path_factory.mktemp("run3")
    return out, run_scene(scene, out, ["cam1", "cam2", "cam3"], embedder)


@needs_data
def test_outputs_are_consistent_with_each_other(three_cameras):
    out, summary = three_cameras
    ids = set(final_ids(out).values())
    mtmc = read_mot_rows(out / "mtmc.txt", min_columns=9)
    total = 0
    for number, camera in enumerate(["cam1", "cam2", "cam3"], start=1):
        rows = read_mot_rows(out / f"{camera}.txt", min_columns=10)
        total += len(rows)
        assert set(rows[:, 1].astype(int)) <= ids
        pairs = rows[:, :2].astype(int)
        assert len(np.unique(pairs, axis=0)) == len(pairs), f"{camera}: an id twice in one frame"
        in_mtmc = mtmc[mtmc[:, 0] == number]
        assert np.allclose(np.sort(in_mtmc[:, 2]), np.sort(rows[:, 0]))  # same frames, AI City column order
    assert len(mtmc) == total > 0
    assert summary["identities"] == len(np.unique(mtmc[:, 1]))
    assert summary["reid_model"]["sha256"] and summary["reid_model"]["training_data"]  # which model ran
    assert summary["mode"].startswith("offline") and summary["failed_sources"] == []
    assert summary["crops_embedded"] < summary["detections"]
    # scene-metric features: at most one per crop the clips used (none dropped or doubled)
    assert 0 < summary["crop_features"] <= summary["crops_embedded"]


def test_an_online_run_writes_merged_ids_under_the_kept_one_never_twice_in_a_frame(tmp_path):
    """The end of a live run renames merged ids in the files; where the kept id is already in the frame (seen
    together longer ago than live mode remembers), those rows keep their id."""
    from pipeline.motio import read_mot_rows
    from pipeline.sinks import OutputWriter

    def rows_of(frames):
        return lambda global_id: np.array([[f, global_id, 10, 20, 30, 60, 0.9, -1, -1] for f in frames], float)

    writer = OutputWriter(tmp_path, ["a", "b"], spool=False)
    writer.tracklet_rows("a", 1, 4, rows_of([1, 2, 3]))   # id 4 in a, frames 1-3
    writer.tracklet_rows("a", 2, 5, rows_of([3, 4, 5]))   # id 5 in a, frame 3 with 4
    writer.tracklet_rows("b", 3, 5, rows_of([1, 2]))      # id 5 in b
    writer.tracklet_rows("b", 4, 7, rows_of([1]))         # someone else
    writer.finalise(None, renamed={5: 4})
    a, b = (read_mot_rows(tmp_path / f"{c}.txt") for c in "ab")
    assert a[:, :2].astype(int).tolist() == [[1, 4], [2, 4], [3, 4], [3, 5], [4, 4], [5, 4]]
    assert b[:, :2].astype(int).tolist() == [[1, 4], [1, 7], [2, 4]]
    mtmc = read_mot_rows(tmp_path / "mtmc.txt", min_columns=9)
    assert sorted(set(mtmc[:, 1].astype(int))) == [4, 5, 7]


def main_ids(out: Path, scene: Path, camera: str) -> dict[int, tuple[int, int]]:
    """gt person -> (the global id most of their boxes got in ``camera``, how many boxes). gt boxes are the
    detections, so each predicted box is a gt box up to the tracker's smoothing: the nearest one names it."""
    pred = read_mot_rows(out / f"{camera}.txt", min_columns=10)
    gt = read_mot_rows(scene / "gt" / camera / "gt" / "gt.txt")
    votes: dict[int, dict[int, int]] = {}
    for row in pred:
        same_frame = gt[gt[:, 0] == row[0]]
        if len(same_frame):
            nearest = same_frame[np.abs(same_frame[:, 2:6] - row[2:6]).sum(1).argmin()]
            person = votes.setdefault(int(nearest[1]), {})
            person[int(row[1])] = person.get(int(row[1]), 0) + 1
    return {person: (max(ids, key=ids.get), sum(ids.values())) for person, ids in votes.items()}


@needs_data
@pytest.mark.parametrize("other", ["cam2", "cam3"], ids=["overlapping view", "delayed copy: appearance only"])
def test_people_seen_in_two_cameras_get_one_global_id(three_cameras, scene, other):
    """Each person seen in cam1 and in the other camera for at least a second is one global id in both: cam2
    overlaps cam1 (geometry and appearance), cam3 shows cam1's view 20 frames later in other colours, so only
    appearance links it."""
    out, _ = three_cameras
    first, second = main_ids(out, scene, "cam1"), main_ids(out, scene, other)
    both = [p for p in first if p in second and min(first[p][1], second[p][1]) >= 10]
    assert len(both) >= 3, f"too few people in both cameras to judge: {both}"
    joined = [p for p in both if first[p][0] == second[p][0]]
    assert len(joined) >= 0.75 * len(both), f"one id in cam1 and {other} for {joined} of {both}"
    ids = [first[p][0] for p in both]
    assert len(set(ids)) == len(ids), f"two people share a global id in cam1: {first}"


@needs_data
def test_a_person_who_leaves_the_view_and_comes_back_keeps_their_global_id(embedder, tmp_path):
    """The whole PETS09 view, 260 frames, gt boxes: the man in the long black coat leaves at frame 147 and comes
    back at 224, the man in the leather jacket leaves at 206 and is back at 231; the MOT15 ground truth gives
    each return a new id (19 -> 1, 15 -> 14; configs/datasets/pets09_s2l1_people.yaml). Each keeps one global
    id, and no two people share one."""
    layout = yaml.safe_load((REPO_ROOT / "configs" / "multicam_pets3.yaml").read_text())
    layout.update(frames=260, cameras=[{"name": "view1"}])
    (tmp_path / "layout.yaml").write_text(yaml.safe_dump(layout))
    scene = tmp_path / "scene"
    make_multicam(load_config(tmp_path / "layout.yaml"), scene, data_root())
    assert people_gt(scene).person_of == {1: 19, 14: 15}  # the returns in these frames, under the earlier id
    run_scene(scene, tmp_path / "run", ["view1"], embedder, max_frames=260)
    ids = {gt_id: global_id for gt_id, (global_id, boxes) in main_ids(tmp_path / "run", scene, "view1").items()
           if boxes >= 10}
    assert ids[19] == ids[1] and ids[15] == ids[14], ids
    people = {}
    for gt_id, global_id in ids.items():
        people.setdefault(global_id, set()).add(gt_id)
    assert sorted(map(sorted, people.values())) == [[1, 19], [9], [11], [12], [13], [14, 15], [16], [17]], people
    scores = {name: evaluate_mtmc(scene / name, tmp_path / "run" / "mtmc.txt")["MTMC"]["IDF1"]
              for name in ("mtmc_gt.txt", "mtmc_gt_people.txt")}
    # the returns' boxes count for the person only where the ground truth joins them (0.94 vs 0.90 here)
    assert scores["mtmc_gt_people.txt"] > max(0.9, scores["mtmc_gt.txt"] + 0.03), scores


@needs_data
@pytest.mark.parametrize("live", [False, True], ids=["files", "live"])
def test_association_lab_replays_the_pipelines_own_ids(scene, embedder, tmp_path, live):
    """The lab ranks association settings by replaying what the pipeline's identity stage assigned: with the
    run's own settings it must give the run's ids exactly (offline pass included), live mode too."""
    from pipeline.live import LivePipeline
    from tools.association_lab import RecordingStage, replay

    sources, config = scene_run(scene, tmp_path, ["cam1", "cam2", "cam3"], **{"association.refine": not live})
    stage = RecordingStage(config)
    (LivePipeline if live else MultiCameraPipeline)(config, embedder=embedder, identity_stage=stage).run(sources)
    pipeline_ids = final_ids(tmp_path)
    assert len(pipeline_ids) == sum(len(batch) for batch, _, _ in stage.record) > 10
    info: dict = {}
    assert replay(stage.record, config, info) == pipeline_ids
    assert info.get("metric", "").startswith("scene metric") != live  # files: the replay ran the offline pass
    other = [load_pipeline_config(None, {"association.refine": not live, "association.metric_threshold": limit,
                                         "association.threshold": limit}) for limit in (0.05, 1.9)]
    assert any(replay(stage.record, c) != pipeline_ids for c in other)  # and it follows the settings it is given


class SlowWorkerEmbedder:
    """The real embedder, slowed on the embedding worker so batches queue up; records the threads that embed."""

    def __init__(self, embedder):
        self.embedder, self.threads = embedder, []

    def __getattr__(self, name):
        return getattr(self.embedder, name)

    def embed_with_frames(self, *args, **kwargs):
        self.threads.append(threading.current_thread().name)
        if threading.current_thread() is not threading.main_thread():
            time.sleep(0.3)
        return self.embedder.embed_with_frames(*args, **kwargs)


class WaitingPipeline(MultiCameraPipeline):
    embeds_while_waiting = False


@needs_data
def test_batches_the_worker_has_not_started_are_embedded_by_the_waiting_thread_with_the_same_ids(
        scene, embedder, tmp_path):
    outputs = {}
    for pipeline_class in (MultiCameraPipeline, WaitingPipeline):
        out = tmp_path / pipeline_class.__name__
        sources, config = scene_run(scene, out, ["cam1", "cam2"], **{"reid.batch_size": 2})
        slow = SlowWorkerEmbedder(embedder)
        pipeline_class(config, embedder=slow).run(sources)
        outputs[pipeline_class] = ((out / "mtmc.txt").read_text(), final_ids(out), slow.threads)
    (mtmc, ids, threads), (waited_mtmc, waited_ids, waited_threads) = outputs.values()
    assert "MainThread" in threads and "MainThread" not in waited_threads
    assert (mtmc, ids) == (waited_mtmc, waited_ids)


@needs_data
def test_unrelated_scene_shares_no_identity(scene, embedder, tmp_path):
    summary = run_scene(scene, tmp_path, ["cam1", "cam3"], embedder, extra_sources=[str(TUD / "TUD-Stadtmitte.mp4")],
                        extra_gt=[str(TUD / "gt" / "gt.txt")])
    pets = set(read_mot_rows(tmp_path / "cam1.txt")[:, 1]) | set(read_mot_rows(tmp_path / "cam3.txt")[:, 1])
    tud = set(read_mot_rows(tmp_path / "TUD-Stadtmitte.txt")[:, 1])
    assert tud and pets and not (tud & pets), f"ids shared with the unrelated camera: {tud & pets}"
    assert [s["frames"] for s in summary["sources"]] == [FRAMES] * 3


def image_folder_with_a_broken_image(folder: Path, count: int) -> Path:
    """``count`` frames of an empty 25 fps scene (nobody in it); frame 3 is a corrupt file."""
    folder.mkdir()
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:06d}.jpg"), np.full((120, 160, 3), 90 + i, dtype=np.uint8))
    (folder / "000003.jpg").write_bytes(b"not a jpeg")
    return folder


@needs_data
def test_failing_source_is_reported_while_the_others_finish(scene, embedder, tmp_path):
    from tests.test_sources import write_truncated_avi

    broken = tmp_path / "broken.avi"
    write_truncated_avi(broken, frames=40)
    empty_dets = tmp_path / "none.txt"
    empty_dets.write_text("")
    folder = image_folder_with_a_broken_image(tmp_path / "empty_room", 30)
    out = tmp_path / "out"
    summary = run_scene(scene, out, ["cam1"], embedder, extra_sources=[str(broken), str(tmp_path / "missing.mp4"), str(folder)],
                        extra_gt=[str(empty_dets)] * 3, image_fps=25.0)
    status = {s["camera"]: s for s in summary["sources"]}
    # a 25 fps camera beside a 10 fps one: both read to the end, the empty one gives an empty valid file
    assert status["empty_room"]["status"] == "ok" and status["empty_room"]["frames"] == 29
    assert "000003.jpg" in status["empty_room"]["warnings"][0]
    assert read_mot_rows(out / "empty_room.txt").size == 0
    assert status["cam1"]["status"] == "ok" and status["cam1"]["frames"] == FRAMES
    assert status["broken"]["status"] == "failed" and "decoding stopped" in status["broken"]["error"]
    assert 0 < status["broken"]["frames"] < 40
    assert status["missing"]["status"] == "failed" and "not found" in status["missing"]["error"]
    assert len(read_mot_rows(out / "cam1.txt")) > 0 and read_mot_rows(out / "broken.txt").size == 0
    errors = [e for e in events(out) if e["event"] == "source_error"]
    assert {e["camera"] for e in errors} == {"broken", "missing"}


@needs_data
def test_cli_exit_codes_and_messages(scene, tmp_path):
    base = [sys.executable, str(REPO_ROOT / "run_pipeline.py"), "--progress", "false", "--max_frames", "10",
            "--detector", "mot", "--detector.det_files", str(scene / "gt" / "cam1" / "gt" / "gt.txt")]
    missing = subprocess.run(base + ["--sources", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "a")],
                             capture_output=True, text=True)
    assert missing.returncode == 1 and "nope.mp4: video file not found" in missing.stderr
    assert "Traceback" not in missing.stderr
    typo = subprocess.run(base + ["--sources", str(scene / "cam1.mp4"), "--config", str(tmp_path / "x.yaml")],
                          capture_output=True, text=True)
    assert typo.returncode == 1 and "config file not found" in typo.stderr


def test_tracklet_buffer_bounds_crops_spreads_them_and_cuts_long_tracks():
    config = TrackletConfig(crops_per_tracklet=4, max_length=50, lost_timeout=5, min_crop_height=10)
    buffer = TrackletBuffer(config)
    image = np.zeros((200, 200, 3), dtype=np.uint8)
    finished = []
    for frame in range(120):
        track = np.array([[50, 40, 90, 140, 7, 0.5 + 0.4 * ((frame * 7) % 10) / 10, 0]])
        finished += buffer.update("cam", frame, frame / 10, image, track if frame < 110 else np.zeros((0, 7)))
    assert [len(t) for t in finished] == [50, 50, 10]
    assert [t.end_reason for t in finished] == ["max_length", "max_length", "lost"]
    assert [t.part for t in finished] == [0, 1, 2]
    for tracklet in finished[:2]:
        assert 2 <= len(tracklet.crops) <= 4 and tracklet.crops[0].shape == (100, 40, 3)
    assert buffer.active == {}


def observation(uid, camera, track, start, end, vector, continues=False):
    vector = np.asarray(vector, dtype=np.float64)
    return Observation(uid, camera, track, start, end, vector / np.linalg.norm(vector), continues)


def test_associator_never_puts_one_identity_twice_in_a_camera_at_once():
    associator = OnlineAssociator(AssociationConfig(threshold=0.5, center=False))
    first = associator.assign([observation(1, "c1", 1, 0, 10, [1, 0, 0])])
    # same appearance, same camera, overlapping time: must open a new identity
    second = associator.assign([observation(2, "c1", 2, 5, 15, [1, 0.01, 0])])
    # same appearance in another camera: joins; later re-entry in c1 after the first track ended: joins too
    third = associator.assign([observation(3, "c2", 9, 5, 15, [1, 0.02, 0]), observation(4, "c1", 3, 30, 40, [1, 0, 0.01])])
    assert first[0].how == second[0].how == "new" and first[0].global_id != second[0].global_id
    assert {a.how for a in third} == {"matched"}
    assert {a.uid: a.global_id for a in third}[4] in (first[0].global_id, second[0].global_id)


def test_running_track_keeps_its_identity_busy_and_topology_windows_apply():
    config = AssociationConfig(threshold=0.5, center=False,
                               transitions=[{"src": "c1", "dst": "c2", "min_s": 5, "max_s": 20}])
    config = load_pipeline_config(None, {"association": vars(config)}).association
    associator = OnlineAssociator(config)
    a = associator.assign([observation(1, "c1", 1, 0, 10, [1, 0], continues=True)])[0]
    # another c1 track after the cut, while track 1 is still running: may not join
    b = associator.assign([observation(2, "c1", 2, 12, 20, [1, 0.01])])[0]
    # c2 two seconds after c1 ended is outside the 5..20 s window: may not join either
    c = associator.assign([observation(3, "c2", 5, 12, 20, [1, 0])])[0]
    continued = associator.assign([observation(4, "c1", 1, 10.1, 25, [0, 1])])[0]
    assert b.global_id != a.global_id and c.global_id != a.global_id
    assert continued.how == "continued" and continued.global_id == a.global_id


def test_refinement_merges_split_identities_but_respects_constraints():
    config = AssociationConfig(threshold=0.2, refine_threshold=0.3, center=False)
    obs = [observation(1, "c1", 1, 0, 10, [1, 0.0]), observation(2, "c2", 1, 2, 12, [1, 0.5]),
           observation(3, "c1", 2, 5, 8, [1, -0.05]), observation(4, "c3", 1, 40, 50, [0, 1])]
    online = {1: 1, 2: 2, 3: 3, 4: 4}
    final = refine_identities(obs, online, config)
    assert final[1] == final[2] == 1  # cosine distance 0.106 < 0.3: merged, keeping the online id 1
    assert final[3] != final[1]  # same camera at the same time as uid 1
    assert final[4] not in (final[1], final[3])
