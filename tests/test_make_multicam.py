"""make_multicam on 30 real PETS09 frames: videos, per-camera gt and AI City gt agree with the layout."""

import shutil

import cv2
import numpy as np
import pytest
import yaml

from configs import REPO_ROOT, ConfigError, data_root
from pipeline.motio import read_mot_rows
from tools.datasets.people import PEOPLE_GT, PETS_PEOPLE, join_people, load_people
from tools.make_multicam import load_config, make_multicam

PETS = data_root() / "mot15" / "PETS09-S2L1"
pytestmark = pytest.mark.skipif(not (PETS / "PETS09-S2L1.avi").is_file(), reason=f"PETS09 absent under {PETS}")
FRAMES = 30


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    out = tmp_path_factory.mktemp("multicam")
    layout = yaml.safe_load((REPO_ROOT / "configs" / "multicam_pets3.yaml").read_text())
    layout["cameras"][2]["delay"] = 10
    layout["cameras"].append({"name": "flipped", "crop": [288, 0, 480, 576], "scale": 0.5, "flip": True})
    (out / "layout.yaml").write_text(yaml.safe_dump(layout))
    make_multicam(load_config(out / "layout.yaml", FRAMES), out, data_root())
    return out


def gt(scene, camera):
    return read_mot_rows(scene / "gt" / camera / "gt" / "gt.txt")


def box(rows, frame, identity):
    match = rows[(rows[:, 0] == frame) & (rows[:, 1] == identity)]
    return match[0, 2:6] if len(match) else None


def test_videos_have_the_layout_size_and_length(scene):
    for camera, size in [("cam1", (480, 576)), ("cam3", (480, 576)), ("flipped", (240, 288))]:
        capture = cv2.VideoCapture(str(scene / f"{camera}.mp4"))
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
        assert (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))) == size


def test_delayed_camera_is_black_then_shows_the_recoloured_source(scene):
    cam1, cam3 = cv2.VideoCapture(str(scene / "cam1.mp4")), cv2.VideoCapture(str(scene / "cam3.mp4"))
    frames1 = [cam1.read()[1] for _ in range(FRAMES)]
    frames3 = [cam3.read()[1] for _ in range(FRAMES)]
    assert frames3[5].mean() < 3
    # cam3 = cam1 pixels x gains (1.15, 1.05, 0.85) - 15, up to codec noise
    expected = np.clip(frames1[2].astype(float) * [1.15, 1.05, 0.85] - 15, 0, 255)
    assert np.abs(frames3[12].astype(float) - expected).mean() < 6


def test_ground_truth_is_shared_shifted_clipped_and_flipped(scene):
    cam1, cam2, cam3, flipped = (gt(scene, c) for c in ("cam1", "cam2", "cam3", "flipped"))
    assert cam3[:, 0].min() == 11 and cam3[:, 0].max() == FRAMES
    inside_strip = cam1[(cam1[:, 2] > 300) & (cam1[:, 2] + cam1[:, 4] < 470)]  # fully in the shared strip
    assert len(inside_strip), "the overlapping windows share no person"
    for row in inside_strip:  # same person, same frame, box shifted by the windows' 288 px offset
        assert np.allclose(box(cam2, row[0], row[1]), row[2:6] - [288, 0, 0, 0], atol=0.02)
    for row in cam2[cam2[:, 0] == 1]:
        b = box(flipped, 1, row[1])
        assert np.allclose(b, [240 - (row[2] + row[4]) / 2, row[3] / 2, row[4] / 2, row[5] / 2], atol=0.02)
    assert np.all(cam1[:, 2] >= 0) and np.all(cam1[:, 2] + cam1[:, 4] <= 480 + 1e-6)


def test_ai_city_gt_lists_every_camera_row(scene):
    rows = read_mot_rows(scene / "mtmc_gt.txt", min_columns=9)
    for number, camera in enumerate(["cam1", "cam2", "cam3", "flipped"], start=1):
        mine = rows[rows[:, 0] == number]
        per_camera = gt(scene, camera)
        assert len(mine) == len(per_camera)
        assert set(mine[:, 1]) == set(per_camera[:, 1])


def test_window_outside_the_source_is_a_config_error(tmp_path):
    layout = {"video": "mot15/PETS09-S2L1/PETS09-S2L1.avi", "gt": "mot15/PETS09-S2L1/gt/gt.txt",
              "cameras": [{"name": "bad", "crop": [500, 0, 480, 576]}]}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(layout))
    with pytest.raises(ConfigError, match="camera bad: crop"):
        make_multicam(load_config(tmp_path / "bad.yaml", 2), tmp_path / "out", data_root())


def test_the_people_file_joins_each_return_into_one_person_never_two_at_once():
    """PETS09's MOT15 gt gives a person who re-enters the view a new id: 19 ids for 10 people. Joined, no person
    is ever twice in one frame (what make_multicam's check of the people file guarantees)."""
    rows = read_mot_rows(PETS / "gt" / "gt.txt")
    joined = join_people(rows, load_people(PETS_PEOPLE, data_root()))
    assert len(np.unique(rows[:, 1])) == 19 and len(np.unique(joined[:, 1])) == 10
    assert len(np.unique(joined[:, :2], axis=0)) == len(joined)
    assert set(joined[np.isin(rows[:, 1], [15, 14, 18, 8]), 1]) == {15}  # the earliest id names the person


def test_the_scene_is_scored_with_one_id_per_person_where_its_layout_names_a_people_file(scene, tmp_path):
    """mtmc_gt_people.txt is mtmc_gt.txt with the people file's ids joined; a layout without one leaves none
    behind (an earlier layout's file in the same folder would be scored)."""
    rows, people = (read_mot_rows(scene / name, min_columns=9) for name in ("mtmc_gt.txt", PEOPLE_GT))
    person_of = load_people(PETS_PEOPLE, data_root())
    assert np.array_equal(people, join_people(rows, person_of))
    layout = yaml.safe_load((scene / "layout.yaml").read_text())
    layout.pop("people")
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump(layout))
    shutil.copytree(scene, tmp_path / "again")
    make_multicam(load_config(tmp_path / "plain.yaml", 2), tmp_path / "again", data_root())
    assert not (tmp_path / "again" / PEOPLE_GT).exists()


@pytest.mark.parametrize("groups, message", [
    ([[1, 2]], r"same_person\[0\] \[1, 2\]: ids 1 and 2 are both in frame 467, so they are two people"),
    ([[19, 99]], r"same_person\[0\] \[19, 99\]: id\(s\) \[99\] are not in the ground truth"),
    ([[19, 1], [1, 15]], r"same_person\[1\] \[1, 15\]: id\(s\) \[1\] listed twice"),
    ([[19]], r"same_person\[0\] \[19\]: expected a list of two or more integer ids"),
], ids=["two people at once", "unknown id", "id in two groups", "one id"])
def test_a_wrong_people_file_is_an_error_naming_it_and_the_group_before_anything_is_written(tmp_path, groups,
                                                                                             message):
    people = {"gt": "mot15/PETS09-S2L1/gt/gt.txt", "same_person": groups}
    (tmp_path / "people.yaml").write_text(yaml.safe_dump(people))
    layout = yaml.safe_load((REPO_ROOT / "configs" / "multicam_pets3.yaml").read_text())
    layout["people"] = str(tmp_path / "people.yaml")
    (tmp_path / "layout.yaml").write_text(yaml.safe_dump(layout))
    with pytest.raises(ConfigError, match=f"people.yaml: {message}"):
        make_multicam(load_config(tmp_path / "layout.yaml", 2), tmp_path / "out", data_root())
    assert not (tmp_path / "out").exists()


def test_a_people_file_of_another_ground_truth_is_refused(tmp_path):
    people = {"gt": "mot15/TUD-Stadtmitte/gt/gt.txt", "same_person": []}
    (tmp_path / "people.yaml").write_text(yaml.safe_dump(people))
    layout = yaml.safe_load((REPO_ROOT / "configs" / "multicam_pets3.yaml").read_text())
    layout["people"] = str(tmp_path / "people.yaml")
    (tmp_path / "layout.yaml").write_text(yaml.safe_dump(layout))
    with pytest.raises(ConfigError, match="names the ids of .*TUD-Stadtmitte.*, not of .*PETS09-S2L1"):
        make_multicam(load_config(tmp_path / "layout.yaml", 2), tmp_path / "out", data_root())


def test_the_montage_shows_a_row_of_crops_for_every_id_of_every_group(tmp_path):
    from tools.datasets.people import main

    assert main(["--montage", str(tmp_path / "people.png")]) == 0
    image = cv2.imread(str(tmp_path / "people.png"))
    groups = yaml.safe_load(PETS_PEOPLE.read_text())["same_person"]
    rows_of_crops = (image.shape[0] - 12 * len(groups)) / 200
    assert rows_of_crops == sum(len(group) for group in groups)
    assert image[:200, 60:].std() > 20  # crops, not blank tiles


@pytest.mark.parametrize("content", ["gt: mot15/PETS09-S2L1/gt/gt.txt\n", "same_person: [[19, 1]]\n",
                                     "gt: mot15/PETS09-S2L1/gt/gt.txt\nsame_person: null\n", ""],
                         ids=["no groups", "no gt", "null groups", "empty"])
def test_a_people_file_without_its_keys_is_an_error_naming_it(tmp_path, content):
    (tmp_path / "people.yaml").write_text(content)
    with pytest.raises(ConfigError, match=r"people.yaml: expected 'gt: <MOT gt file>' and 'same_person:"):
        load_people(tmp_path / "people.yaml", data_root())


def test_a_people_gt_left_by_another_scene_is_refused_not_scored(scene, tmp_path):
    from pipeline.motio import MOTFormatError
    from tools.datasets.people import people_gt

    shutil.copytree(scene, tmp_path / "other")
    lines = (tmp_path / "other" / "mtmc_gt.txt").read_text().splitlines()
    (tmp_path / "other" / "mtmc_gt.txt").write_text("\n".join(lines[:-1]) + "\n")  # another scene's gt
    assert people_gt(scene).gt == scene / PEOPLE_GT
    with pytest.raises(MOTFormatError, match="not the rows of .*mtmc_gt.txt with people's ids joined"):
        people_gt(tmp_path / "other")
