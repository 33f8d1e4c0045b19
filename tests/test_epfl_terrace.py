"""EPFL Terrace adapter on the real files: both views, ids shared across them, the scene layout and its scoring."""

import json

import cv2
import numpy as np
import pytest

from configs import data_root
from pipeline.motio import MOTFormatError, read_mot_rows, read_mtmc_rows
from tools.bench_terrace import results_table, source_config
from pipeline.geometry import HomographyError, read_homography
from tools.datasets.epfl_terrace import (FrameRange, load_cameras, parse_frame_range,
                                         read_vatic_rows, write_scene)
from tools.eval_mtmc import main as eval_mtmc_main
from tools.evaluation import evaluate_mtmc

TERRACE = data_root() / "multicam" / "epfl_terrace"
CAMERAS = ["terrace1-c0", "terrace1-c1"]
pytestmark = pytest.mark.skipif(not (TERRACE / "terrace1-c0.gt.txt").is_file(),
                                reason=f"EPFL Terrace absent under {TERRACE}")
CUT = FrameRange(900, 1050)  # 150 frames from the second half: the cut renumbers frames from its start
VALID = '3 10 20 40 120 7 0 1 1 "PERSON"'


@pytest.fixture(scope="module")
def cameras():
    return load_cameras(TERRACE)


@pytest.fixture(scope="module")
def scene(cameras, tmp_path_factory):
    out = tmp_path_factory.mktemp("terrace")
    write_scene(cameras, out, CUT)
    return out


def ground_points(camera) -> dict[tuple[int, int], np.ndarray]:
    return {(int(r[0]), int(r[1])): r[7:9] for r in camera.gt}


def test_reads_both_cameras_skipping_lost_rows(cameras):
    assert [c.name for c in cameras] == CAMERAS
    for camera in cameras:
        vatic = read_vatic_rows(camera.gt_file)
        visible = vatic[vatic[:, 6] == 0]
        assert len(vatic) == 16200 and len(camera.gt) == len(visible) > 5000
        assert camera.gt[:, 0].min() == visible[:, 5].min() + 1 and camera.gt[:, 0].max() == 1800
        first = visible[np.lexsort((visible[:, 0], visible[:, 5]))][0]  # 0-based frame -> MOT frame + 1, x2 -> w
        assert np.allclose(camera.gt[0, :6], [first[5] + 1, first[0], first[1], first[2], first[3] - first[1],
                                              first[4] - first[2]])
        assert camera.homography.shape == (3, 3) and camera.video.is_file()


def test_the_same_person_id_stands_at_the_same_ground_point_in_both_views(cameras):
    first, second = (ground_points(c) for c in cameras)
    assert set(np.unique(cameras[0].gt[:, 1])) == set(np.unique(cameras[1].gt[:, 1]))
    shared = sorted(first.keys() & second.keys())
    distance = np.array([np.linalg.norm(first[k] - second[k]) for k in shared])
    assert len(shared) > 5000
    assert np.median(distance) < 40 and np.mean(distance < 40) > 0.9  # README: within about 10-40 units
    by_frame: dict[int, list[tuple[int, np.ndarray]]] = {}
    for (frame, person), point in second.items():
        by_frame.setdefault(frame, []).append((person, point))
    nearest_is_same = [min(by_frame[frame], key=lambda other: np.linalg.norm(first[(frame, person)] - other[1]))[0]
                       == person for frame, person in shared if len(by_frame[frame]) > 1]
    assert np.mean(nearest_is_same) > 0.9  # with permuted ids it would be near chance


@pytest.mark.parametrize("bad_line", [
    "3 10 20 40 120 7 0 1 1",                  # no label
    '3 10 x 40 120 7 0 1 1 "PERSON"',          # not a number
    '3 10 20 40 120 7.5 0 1 1 "PERSON"',       # fractional frame
    '3 10 20 40 120 7 2 1 1 "PERSON"',         # lost must be 0 or 1
    '3 50 20 40 120 7 0 1 1 "PERSON"',         # x2 < x1
])
def test_a_malformed_annotation_line_names_file_and_line(tmp_path, bad_line):
    path = tmp_path / "cam.gt.txt"
    path.write_text(f"{VALID}\n{bad_line}\n")
    with pytest.raises(MOTFormatError, match=f"{path}:2: "):
        read_vatic_rows(path)


def test_a_bad_camera_in_the_folder_is_reported_by_file(tmp_path):
    for suffix in (".mp4", ".homography.txt"):
        (tmp_path / f"cam{suffix}").symlink_to(TERRACE / f"terrace1-c0{suffix}")
    (tmp_path / "cam.gt.txt").write_text(f"{VALID}\n{VALID}\n")  # one person twice in one frame
    with pytest.raises(MOTFormatError, match=f"{tmp_path / 'cam.gt.txt'}: track id 3 appears more than once"):
        load_cameras(tmp_path)


def test_the_real_homographies_read_as_written():
    for camera in CAMERAS:
        path = TERRACE / f"{camera}.homography.txt"
        assert np.array_equal(read_homography(path), np.loadtxt(path))


@pytest.mark.parametrize("text, message", [
    ("1 0 0\n0 1 0\n", "3x3"),
    ("1 0 0 0\n0 1 0\n0 0 1\n", "3x3"),
    ("1 0 0\n0 1 0\n0 0 one\n", r":3: non-numeric"),
    ("1 2 3\n4 5 6\n5 7 9\n", "singular"),  # third row = first + second
    ("1 0 0\n0 1 0\n0 0 nan\n", "non-finite"),
])
def test_an_unusable_homography_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "cam.homography.txt"
    path.write_text(text)
    with pytest.raises(HomographyError, match=f"{path}.*{message}"):
        read_homography(path)


def test_frame_ranges_parse_like_slices():
    assert parse_frame_range("900:1800") == FrameRange(900, 1800)
    assert parse_frame_range(":900").within(1800) == FrameRange(0, 900)
    assert parse_frame_range("900:").within(1800) == FrameRange(900, 1800)
    for bad in ("900", "10:5", "-1:5", "a:b"):
        with pytest.raises(ValueError, match="START:END"):
            parse_frame_range(bad)


def test_a_cut_has_the_original_pixels_and_renumbered_ground_truth(cameras, scene):
    records = json.loads((scene / "cameras.json").read_text())
    assert [(r["number"], r["name"], r["first_frame"], r["frames"]) for r in records] == \
        [(1, CAMERAS[0], 900, 150), (2, CAMERAS[1], 900, 150)]
    cut, original = cv2.VideoCapture(str(scene / f"{CAMERAS[1]}.mp4")), cv2.VideoCapture(str(cameras[1].video))
    assert int(cut.get(cv2.CAP_PROP_FRAME_COUNT)) == 150
    for _ in range(CUT.start):
        original.grab()
    assert np.array_equal(cut.read()[1], original.read()[1])
    for camera in cameras:
        rows = read_mot_rows(scene / "gt" / camera.name / "gt" / "gt.txt")
        expected = camera.gt[(camera.gt[:, 0] > CUT.start) & (camera.gt[:, 0] <= CUT.end)]
        assert len(rows) == len(expected) > 0 and rows[:, 0].min() >= 1 and rows[:, 0].max() == 150
        assert np.allclose(rows[:, 1:9], expected[:, 1:9], atol=0.01)
        assert np.array_equal(rows[:, 0], expected[:, 0] - CUT.start)


def test_the_whole_sequence_links_the_original_videos(cameras, tmp_path):
    write_scene(cameras, tmp_path)
    assert (tmp_path / f"{CAMERAS[0]}.mp4").resolve() == cameras[0].video.resolve()
    assert read_mtmc_rows(tmp_path / "mtmc_gt.txt")[:, 2].max() == 1800


def test_the_cut_scores_perfect_against_itself_and_worse_with_one_view_permuted(scene, tmp_path):
    gt = scene / "mtmc_gt.txt"
    assert eval_mtmc_main(["--gt", str(gt), "--pred", str(gt), "--json", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["MTMC"]["IDF1"] == 1.0
    rows = read_mtmc_rows(gt)
    second = rows[:, 0] == 2
    ids = np.unique(rows[second, 1])
    rows[second, 1] = np.roll(ids, 1)[np.searchsorted(ids, rows[second, 1])]  # view 2: person k gets k+1's id
    permuted = tmp_path / "permuted.txt"
    permuted.write_text("".join(" ".join(f"{v:g}" for v in row) + "\n" for row in rows))
    metrics = evaluate_mtmc(gt, permuted)
    assert all(m["IDF1"] == 1.0 for m in metrics["per_camera"].values())  # each view alone is still right
    assert metrics["MTMC"]["IDF1"] < 0.8


def test_bench_configs_and_table(scene, tmp_path):
    overrides = {"association.overlap": True, "detector.name": "yolox"}  # a source's detector wins over --set
    config = source_config("gt", scene, CAMERAS, data_root(), tmp_path, overrides)
    assert config.detector.name == "mot" and config.association.overlap and config.detector.conf == 0.5
    assert config.detector.det_files == [str(scene / "gt" / c / "gt" / "gt.txt") for c in CAMERAS]
    assert config.output.out == str(tmp_path / "run_gt")
    assert source_config("yolox", scene, CAMERAS, data_root(), tmp_path, {}).detector.model.endswith("yolox_nano.onnx")
    metrics = evaluate_mtmc(scene / "mtmc_gt.txt", scene / "mtmc_gt.txt")
    metrics["per_camera"] = dict(zip(CAMERAS, metrics["per_camera"].values()))
    table = results_table({"gt": {"metrics": metrics, "identities": 6, "throughput_fps": 40.0}})
    assert table.splitlines()[0].split()[:8] == ["detections", "MTMC", "IDF1", "IDP", "IDR", "c0", "HOTA", "c0"]
    assert table.splitlines()[1].split()[:5] == ["GT", "boxes", "100.0", "100.0", "100.0"]


def test_rewriting_a_scene_reuses_the_same_cut_and_redoes_another(cameras, tmp_path):
    video = tmp_path / f"{CAMERAS[0]}.mp4"
    write_scene(cameras, tmp_path, FrameRange(0, 20))
    written = video.stat().st_mtime_ns
    write_scene(cameras, tmp_path, FrameRange(0, 20))
    assert video.stat().st_mtime_ns == written
    write_scene(cameras, tmp_path, FrameRange(10, 30))
    original = cv2.VideoCapture(str(cameras[0].video))
    for _ in range(10):
        original.grab()
    assert np.array_equal(cv2.VideoCapture(str(video)).read()[1], original.read()[1])
