"""Camera geometry: calibration from config, feet that survive occlusion and the frame edge, and ground
positions and cross-view identities on the real EPFL Terrace cameras."""

from __future__ import annotations

import json

import numpy as np
import pytest

from configs import ConfigError, data_root
from pipeline.config import load_pipeline_config
from pipeline.geometry import CameraCalibration, HomographyError, bottom_visible, foot_points

TERRACE = data_root() / "multicam" / "epfl_terrace"
needs_terrace = pytest.mark.skipif(not (TERRACE / "terrace1-c0.mp4").is_file(),
                                   reason=f"EPFL Terrace absent under {TERRACE} (set MTMC_DATA)")
MOT15 = data_root() / "mot15"
needs_mot15 = pytest.mark.skipif(not (MOT15 / "TUD-Stadtmitte" / "gt" / "gt.txt").is_file()
                                 or not (MOT15 / "PETS09-S2L1" / "gt" / "gt.txt").is_file(),
                                 reason=f"MOT15 PETS09-S2L1 / TUD-Stadtmitte ground truth absent under {MOT15}")


LIVE_LINKED = 5  # of the 6 people, with one id in both views in live mode (6 measured)


def cameras(*entries):
    return load_pipeline_config(None, {"cameras": [dict(e) for e in entries]}).cameras


def test_calibration_reads_files_and_inline_matrices_and_maps_between_views(tmp_path):
    (tmp_path / "a.txt").write_text("2 0 0\n0 2 0\n0 0 1\n")
    calibration = CameraCalibration.from_config(
        cameras({"id": "a", "homography": str(tmp_path / "a.txt")}, {"id": "b", "homography": [1, 0, 5, 0, 1, 0, 0, 0, 1]}),
        ["a", "b", "c"])
    assert np.allclose(calibration.to_ground("a", [[1, 1]]), [[2, 2]])
    # a's image -> ground -> b's image: (1, 1) -> (2, 2) -> (-3, 2)
    assert np.allclose(calibration.to_ground("b", [[0, 0]]), [[5, 0]])
    between = calibration.between("a", "b")
    point = np.array([1.0, 1.0, 1.0])
    assert np.allclose((between @ point)[:2] / (between @ point)[2], [-3, 2])
    assert calibration.to_ground("c", [[1, 1]]) is None and calibration.between("a", "c") is None


def test_bad_calibration_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="'ghost', which is not a source"):
        CameraCalibration.from_config(cameras({"id": "ghost", "homography": np.eye(3).tolist()}), ["a"])
    with pytest.raises(HomographyError, match=r"cameras: a: homography: expected a 3x3 matrix"):
        CameraCalibration.from_config(cameras({"id": "a", "homography": [[1, 0], [0, 1]]}), ["a"])
    with pytest.raises(HomographyError, match="singular"):
        CameraCalibration.from_config(cameras({"id": "a", "homography": [[1, 2, 3], [2, 4, 6], [0, 0, 1]]}), ["a"])
    with pytest.raises(HomographyError, match="missing.txt: homography file not found"):
        CameraCalibration.from_config(cameras({"id": "a", "homography": str(tmp_path / "missing.txt")}), ["a"])
    with pytest.raises(ConfigError, match="has no homography"):
        cameras({"id": "a"})


def test_hidden_feet_are_placed_one_body_height_below_the_head():
    # a person walking down the frame: 100 px tall; from box 6 on, the frame's bottom edge (y = 300) cuts the box
    tops = np.arange(10) * 20.0 + 100
    boxes = np.column_stack([np.full(10, 50.0), tops, np.full(10, 90.0), np.minimum(tops + 100, 300)])
    visible = bottom_visible(boxes[:1], 300)[0], *[bottom_visible(b[None], 300)[0] for b in boxes[1:]]
    assert list(visible) == [True] * 5 + [False] * 5
    feet = foot_points(np.arange(10) / 25, boxes, visible)
    assert np.allclose(feet[:, 2], tops + 100)  # raw bottoms would stop at 300
    assert np.allclose(feet[:, 3], 100)


def test_a_person_in_front_hides_the_feet_of_the_one_behind():
    behind = [100, 50, 140, 150]   # feet at y 150
    in_front = [90, 80, 160, 230]  # covers (120, 150)
    beside = [300, 50, 340, 150]
    assert list(bottom_visible(np.array([behind, in_front, beside], float), 400)) == [False, True, True]


@needs_terrace
def test_terrace_run_writes_ground_positions_and_links_the_two_real_views(tmp_path):
    """150 frames of both real cameras with their ground-truth boxes and the dataset's calibration: every box has
    a ground position near the annotation's, and each person seen in both views has one global id."""
    from pipeline.motio import read_mot_rows
    from pipeline.runner import MultiCameraPipeline
    from tools.datasets.epfl_terrace import FrameRange, prepare_scene

    records = prepare_scene(tmp_path / "scene", FrameRange(900, 1050))
    det_files = [str(tmp_path / "scene" / "gt" / r["name"] / "gt" / "gt.txt") for r in records]
    config = load_pipeline_config(None, {
        "detector.name": "mot", "detector.det_files": det_files, "detector.conf": 0.5, "progress": False,
        "output.out": str(tmp_path / "out"), "cameras": [{"id": r["name"], "homography": r["homography"]} for r in records]})
    MultiCameraPipeline(config).run([r["video"] for r in records])
    mtmc = read_mot_rows(tmp_path / "out" / "mtmc.txt", min_columns=9)
    assert (mtmc[:, 7:9] != -1).all()
    person_of: dict[int, set] = {}
    for number, record in enumerate(records, start=1):
        gt = read_mot_rows(tmp_path / "scene" / "gt" / record["name"] / "gt" / "gt.txt")
        ours = mtmc[mtmc[:, 0] == number]
        near = []
        for row in ours:
            same_frame = gt[gt[:, 0] == row[2]]
            # the tracker reports Kalman-filtered boxes: the gt box is the nearest one, a few pixels off
            offset = np.abs(same_frame[:, 2:6] - row[3:7]).sum(1) if len(same_frame) else np.zeros(0)
            match = same_frame[[int(offset.argmin())]] if len(offset) and offset.min() < 12 else []
            if len(match):
                near.append(np.linalg.norm(match[0, 7:9] - row[7:9]))
                person_of.setdefault(int(row[1]), set()).add(int(match[0, 1]))
        assert len(near) > 0.8 * len(ours) and np.median(near) < 15  # ground units; people are 50+ apart
    people = set(gt[:, 1].astype(int))
    assert all(len(truth) == 1 for truth in person_of.values()), person_of  # no id covers two people
    cameras_of = {gid: {n for n in (1, 2) if (mtmc[(mtmc[:, 0] == n), 1] == gid).any()} for gid in person_of}
    assert sum(len(c) == 2 for c in cameras_of.values()) >= len(people) - 1  # linked across the views


def majority_ids(records: list[dict], scene, out) -> list[dict[int, int]]:
    """Per camera: ground-truth person -> the global id most of their boxes got in ``out``/mtmc.txt (people with
    100+ matched boxes)."""
    return [{p: max(v, key=v.get) for p, v in votes.items() if sum(v.values()) >= 100}
            for votes in id_votes(records, scene, out)]


def id_votes(records: list[dict], scene, out) -> list[dict[int, dict[int, int]]]:
    """Per camera: ground-truth person -> global id -> boxes of the person with that id in ``out``/mtmc.txt (the
    tracker reports Kalman-filtered boxes, matched to the nearest gt box)."""
    from pipeline.motio import read_mot_rows

    mtmc = read_mot_rows(out / "mtmc.txt", min_columns=9)
    per_camera = []
    for number, record in enumerate(records, start=1):
        gt = read_mot_rows(scene / "gt" / record["name"] / "gt" / "gt.txt")
        votes: dict[int, dict[int, int]] = {}
        for row in mtmc[mtmc[:, 0] == number]:
            same_frame = gt[gt[:, 0] == row[2]]
            offset = np.abs(same_frame[:, 2:6] - row[3:7]).sum(1) if len(same_frame) else np.zeros(0)
            if len(offset) and offset.min() < 12:
                person = int(same_frame[offset.argmin(), 1])
                votes.setdefault(person, {}).setdefault(int(row[1]), 0)
                votes[person][int(row[1])] += 1
        per_camera.append(votes)
    return per_camera


def votes_as_given(records: list[dict], scene, out, events: list[dict], merged: dict[int, int]
                   ) -> dict[int, dict[int, int]]:
    """Global id as events.jsonl assigned it (before a live merge renamed the files' rows) -> ground-truth person
    -> boxes: the rows of each assigned tracklet are those of its camera and frames under the id it lives on as."""
    from pipeline.motio import read_mot_rows

    mtmc = read_mot_rows(out / "mtmc.txt", min_columns=9)
    number = {r["name"]: n for n, r in enumerate(records, start=1)}
    frames = {e["uid"]: (e["first_frame"], e["last_frame"]) for e in events if e["event"] == "tracklet_finished"}
    gts = {r["name"]: read_mot_rows(scene / "gt" / r["name"] / "gt" / "gt.txt") for r in records}
    votes: dict[int, dict[int, int]] = {}
    for event in (e for e in events if e["event"] == "identity_assigned"):
        final = event["global_id"]
        while final in merged:
            final = merged[final]
        first, last = frames[event["uid"]]
        rows = mtmc[(mtmc[:, 0] == number[event["camera"]]) & (mtmc[:, 1] == final)
                    & (mtmc[:, 2] >= first) & (mtmc[:, 2] <= last)]
        gt = gts[event["camera"]]
        for row in rows:
            same_frame = gt[gt[:, 0] == row[2]]
            offset = np.abs(same_frame[:, 2:6] - row[3:7]).sum(1) if len(same_frame) else np.zeros(0)
            if len(offset) and offset.min() < 12:
                person = votes.setdefault(event["global_id"], {})
                person[int(same_frame[offset.argmin(), 1])] = person.get(int(same_frame[offset.argmin(), 1]), 0) + 1
    return votes


@needs_terrace
def test_terrace_first_half_links_the_two_real_views_without_calibration(tmp_path):
    """Frames 0-899: only four people, whose looks change too much across the views for appearance alone to
    pair them (the learned mapping used to find no seeds and never linked the cameras, MTMC IDF1 50.4). The
    plain defaults learn the views' mapping from the people's own paths: each person seen in both views has
    one global id there, and no id covers two people."""
    from pipeline.motio import read_mot_rows
    from pipeline.runner import MultiCameraPipeline
    from tools.datasets.epfl_terrace import FrameRange, prepare_scene

    records = prepare_scene(tmp_path / "scene", FrameRange(0, 900))
    det_files = [str(tmp_path / "scene" / "gt" / r["name"] / "gt" / "gt.txt") for r in records]
    config = load_pipeline_config(None, {"detector.name": "mot", "detector.det_files": det_files,
                                         "detector.conf": 0.5, "progress": False, "output.out": str(tmp_path / "out")})
    summary = MultiCameraPipeline(config).run([r["video"] for r in records])
    assert [(o["cameras"], o["source"]) for o in summary["overlapping_views"]] == \
        [([r["name"] for r in records], "learned")]
    ids_of_person = majority_ids(records, tmp_path / "scene", tmp_path / "out")
    in_both = set(ids_of_person[0]) & set(ids_of_person[1])
    assert len(in_both) >= 3
    assert all(ids_of_person[0][p] == ids_of_person[1][p] for p in in_both), ids_of_person
    assert len({ids_of_person[0][p] for p in in_both}) == len(in_both)  # one id per person


@needs_terrace
def test_terrace_live_learns_the_views_and_links_people_across_them_without_calibration(tmp_path):
    """Live mode (no offline pass) on the whole clip with ground-truth boxes and no calibration: it learns that the
    views overlap as it runs and relinks people given a second id before it knew (was: 2 of 6 linked). The
    identity stage learns in place, as the lab replays it: on the background worker (tested in
    test_association) the batch that takes a learning up depends on thread timing."""
    from pipeline.association.stage import IdentityStage
    from pipeline.live import LivePipeline
    from tools.datasets.epfl_terrace import prepare_scene

    records = prepare_scene(tmp_path / "scene", None)
    det_files = [str(tmp_path / "scene" / "gt" / r["name"] / "gt" / "gt.txt") for r in records]
    config = load_pipeline_config(None, {"detector.name": "mot", "detector.det_files": det_files, "detector.conf": 0.5,
                                         "progress": False, "output.out": str(tmp_path / "out"),
                                         "association.refine": False})
    summary = LivePipeline(config, identity_stage=IdentityStage(config)).run([r["video"] for r in records])
    assert [o["source"] for o in summary["overlapping_views"]] == ["learned"]
    first, second = majority_ids(records, tmp_path / "scene", tmp_path / "out")
    linked = [p for p in set(first) & set(second) if first[p] == second[p]]
    assert len(linked) >= LIVE_LINKED, (first, second)
    # the event stream says each merge, before any tracklet is assigned the kept id because of it
    lines = [json.loads(line) for line in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    merges = [[e["old_global_id"], e["global_id"]] for e in lines if e["event"] == "identities_merged"]
    assert merges and merges == summary["merged_identities"]
    given = {e["global_id"] for e in lines if e["event"] == "identity_assigned"}
    assert summary["identities"] == len(given - {gone for gone, _ in merges})  # a merged id is no one's any more
    # the files at the end: merged ids under the kept one, as many ids as the summary counts
    from pipeline.motio import read_mot_rows
    written = set(read_mot_rows(tmp_path / "out" / "mtmc.txt", min_columns=9)[:, 1].astype(int))
    assert not written & {gone for gone, _ in merges} and len(written) == summary["identities"]
    for record in records:  # and never one id twice in a frame of a camera
        pairs = read_mot_rows(tmp_path / "out" / f"{record['name']}.txt")[:, :2].astype(int)
        assert len(np.unique(pairs, axis=0)) == len(pairs), record["name"]
    # and each merge joined one person: the boxes given the old id (the tracklets events.jsonl assigned it) show
    # the person most of the kept id's other boxes show
    votes = votes_as_given(records, tmp_path / "scene", tmp_path / "out", lines, dict(merges))
    for gone, kept in merges:
        assert max(votes[gone], key=votes[gone].get) == max(votes[kept], key=votes[kept].get), (gone, kept, votes)


def test_live_assignment_follows_where_the_identities_open_tracks_are_now():
    """Two look-alikes are being tracked in camera a (their tracks still running); a new tracklet in camera b
    joins the one whose running track stands where its feet are on the ground, never the other."""
    from pipeline.association import Observation, OnlineAssociator
    from pipeline.config import AssociationConfig

    calibration = CameraCalibration({"a": np.eye(3), "b": np.eye(3)})  # one ground plane = both images
    associator = OnlineAssociator(AssociationConfig(center=False, online_metric=False, threshold=0.5),
                                  calibration=calibration)
    look = np.array([1.0, 0.0])

    def feet(start: float, x: float, n: int = 15) -> np.ndarray:  # time, foot x, foot y, body height 100
        return np.column_stack([start + np.arange(n) / 25, np.full(n, x), np.full(n, 300.0), np.full(n, 100.0)])

    first = [Observation(uid, "a", uid, 0.0, 0.56, look, continues=True, feet=feet(0.0, x))
             for uid, x in ((1, 100.0), (2, 400.0))]
    ids = {a.uid: a.global_id for a in associator.assign(first)}
    near_the_second = Observation(3, "b", 7, 1.0, 1.56, look, feet=feet(1.0, 405.0))
    running = {("a", 1): feet(1.0, 100.0), ("a", 2): feet(1.0, 402.0)}  # where the open tracks are now
    assert associator.assign([near_the_second], running)[0].global_id == ids[2]
    # without the running tracks there is no simultaneous evidence: appearance alone cannot tell them apart
    fresh = OnlineAssociator(AssociationConfig(center=False, online_metric=False, threshold=0.5), calibration=calibration)
    fresh.assign(first)
    without = fresh.distance_matrix([near_the_second], list(fresh.identities.values()))[0]
    assert without[0, 0] == without[0, 1]


@pytest.mark.parametrize("apart, matched", [(0.2, True), (0.45, False), (1.5, False)])
def test_live_a_tracklet_whose_feet_stand_apart_from_an_identity_is_someone_else(apart, matched):
    """A look-alike tracklet in camera b while the identity's track runs in camera a: feet within
    overlap_same_error body heights of it on the ground join it; 0.45 body heights apart (over
    overlap_tracklet_different_error, 0.4; was 1.0 as for whole tracks) is a second person, whatever the looks."""
    from pipeline.association import Observation, OnlineAssociator
    from pipeline.config import AssociationConfig

    calibration = CameraCalibration({"a": np.eye(3), "b": np.eye(3)})
    associator = OnlineAssociator(AssociationConfig(center=False, online_metric=False, threshold=0.5),
                                  calibration=calibration)
    look = np.array([1.0, 0.0])

    def feet(start: float, x: float, n: int = 15) -> np.ndarray:  # time, foot x, foot y, body height 100
        return np.column_stack([start + np.arange(n) / 25, np.full(n, x), np.full(n, 300.0), np.full(n, 100.0)])

    first = associator.assign([Observation(1, "a", 1, 0.0, 0.56, look, continues=True, feet=feet(0.0, 100.0))])[0]
    other_view = Observation(2, "b", 7, 1.0, 1.56, look, feet=feet(1.0, 100.0 + 100.0 * apart))
    assigned = associator.assign([other_view], {("a", 1): feet(1.0, 100.0)})[0]
    assert (assigned.global_id == first.global_id) == matched


def handed_on_while_another_track_ended(rematch: bool):
    """Person 1 leaves camera a (their track ends); the tracker goes on with person 2's track but now follows
    person 1, who stepped back in beside them. Returns the associator and the ids of 1, 2 and the continuation."""
    from pipeline.association import Observation, OnlineAssociator
    from pipeline.config import AssociationConfig

    associator = OnlineAssociator(AssociationConfig(center=False, online_metric=False, threshold=0.5,
                                                    rematch_continuations=rematch))
    one, two = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    ids = {a.uid: a.global_id for a in associator.assign([Observation(1, "a", 1, 0.0, 1.9, one),
                                                            Observation(2, "a", 2, 0.0, 1.9, two, continues=True)])}
    continuation = associator.assign([Observation(3, "a", 2, 2.0, 4.0, one, continues=True)])[0]
    return associator, ids[1], ids[2], continuation


def test_a_continuation_that_no_longer_matches_its_track_goes_to_the_person_it_matches():
    associator, first, second, continuation = handed_on_while_another_track_ended(rematch=True)
    assert (continuation.global_id, continuation.how) == (first, "matched")
    assert associator.by_track["a", 2] == first  # the track goes on under person 1
    assert ("a", 2) not in associator.identities[second].open_tracks  # person 2 is free in camera a again
    _, _, second, kept = handed_on_while_another_track_ended(rematch=False)
    assert (kept.global_id, kept.how) == (second, "continued")


def test_a_continuation_that_matches_no_one_keeps_its_identity():
    """A track whose look changes (a turn, an occlusion) is not split into a new identity online: opening one
    split ground-truth tracks on EPFL Terrace (live MTMC IDF1 86.9 -> 76.7)."""
    from pipeline.association import Observation, OnlineAssociator
    from pipeline.config import AssociationConfig

    associator = OnlineAssociator(AssociationConfig(center=False, online_metric=False, threshold=0.5))
    first = associator.assign([Observation(1, "a", 1, 0.0, 1.9, np.array([1.0, 0.0]), continues=True)])[0]
    turned = associator.assign([Observation(2, "a", 1, 2.0, 4.0, np.array([0.0, 1.0]), continues=True)])[0]
    assert (turned.global_id, turned.how) == (first.global_id, "continued")
    assert associator.identities_issued == 1


def looped_tracklets(camera: str, gt_file, seconds: float, rng, fps: float = 15.0, boxes_per_tracklet: int = 30):
    """Tracklets (Observations with feet) of one real MOT15 sequence's ground-truth tracks, the clip looped for
    ``seconds`` at ``fps`` as the live soak streams it; random unit looks."""
    from pipeline.association import Observation

    gt = np.loadtxt(gt_file, delimiter=",")
    length = gt[:, 0].max() / fps
    observations = []
    for loop in range(int(seconds // length) + 1):
        for track in np.unique(gt[:, 1]):
            rows = gt[gt[:, 1] == track]
            rows = rows[np.argsort(rows[:, 0])]
            times = rows[:, 0] / fps + loop * length
            boxes = np.column_stack([rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]])
            for start in range(0, len(rows) - 4, boxes_per_tracklet):
                part = slice(start, start + boxes_per_tracklet)
                look = rng.normal(size=64)
                observations.append(Observation(len(observations), camera, loop * 10_000 + int(track), times[part][0],
                                                times[part][-1], look / np.linalg.norm(look),
                                                feet=foot_points(times[part], boxes[part])))
    return observations


@needs_mot15
def test_busy_unrelated_real_views_learn_no_overlap_in_live_mode():
    """PETS09-S2L1 and TUD-Stadtmitte are two real places, streamed at once as in the soak: many people at the
    same times, looks that tell nothing. Chance mappings then explain dozens of pairs, by people that hardly move
    or that all keep to TUD's pavement; none may pass for a shared view (before: one with 13 pairs)."""
    from pipeline.association.offline import learn_view_overlaps

    rng = np.random.default_rng(0)
    observations = sorted(looped_tracklets("pets", MOT15 / "PETS09-S2L1" / "gt" / "gt.txt", 240, rng)
                          + looped_tracklets("tud", MOT15 / "TUD-Stadtmitte" / "gt" / "gt.txt", 240, rng),
                          key=lambda o: o.end_time)
    config = load_pipeline_config(None, {"association.refine": False}).association
    for window in (128, 256, 512):  # live mode learns from its last metric_window (512) tracklets
        assert learn_view_overlaps(observations[-window:], config) == [], window
