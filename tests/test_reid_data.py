"""Dataset readers (MARS, DukeMTMC-VideoReID), samplers, transforms and tools/make_reid_data.py."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from configs import REPO_ROOT, data_root
from reid.datasets import (DatasetError, format_mars_name, load_dataset, parse_mars_name, read_duke_video,
                           read_mars, write_mars_info, write_mars_query)
from reid.sampling import PKBatchSampler, restricted_random_indices
from reid.transforms import AugmentConfig, augment_clip, read_frames, to_clip
from tools import make_reid_data


def _write_image(path: Path, value: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((16, 8, 3), value, np.uint8))
    return str(path)


def _make_mars(root: Path) -> None:
    """Train: pid 5 (cams 1, 2). Test: pid 7 cams 1 and 2, pid 8 cam 1, a distractor -1 in cam 2."""
    splits = {"train": [(5, 1, 3), (5, 2, 2)], "test": [(7, 1, 2), (7, 2, 3), (8, 1, 2), (-1, 2, 1)]}
    for split, tracks in splits.items():
        names, rows = [], []
        for number, (pid, cam, length) in enumerate(tracks, start=1):
            start = len(names) + 1
            for frame in range(1, length + 1):
                name = format_mars_name(max(pid, 0), cam, number, frame)
                name = "00-1" + name[4:] if pid < 0 else name  # MARS spells the distractor pid -1 as 00-1
                _write_image(root / f"bbox_{split}" / name[:4] / name, 10 * frame)
                names.append(name)
            rows.append((start, len(names), pid, cam))
        write_mars_info(root / "info", split, names, np.array(rows))
    write_mars_query(root / "info", np.array([1, 2]))


def test_mars_reader_returns_tracklets_with_paths_pids_and_cameras(tmp_path):
    _make_mars(tmp_path)
    data = load_dataset(tmp_path)
    assert data.name == "mars"
    assert [(t.pid, t.camid, len(t.paths)) for t in data.train] == [(5, 1, 3), (5, 2, 2)]
    assert [(t.pid, t.camid) for t in data.query] == [(7, 1), (7, 2)]
    assert [(t.pid, t.camid) for t in data.gallery] == [(7, 1), (7, 2), (8, 1), (-1, 2)]
    assert data.train[0].paths[0].endswith("bbox_train/0005/0005C1T0001F001.jpg")
    assert all(Path(p).is_file() for t in data.gallery for p in t.paths)
    assert data.train_pids == [5]


def test_mars_names_round_trip_and_bad_names_are_rejected():
    assert parse_mars_name("0002C1T0012F001.jpg") == (2, 1, 12, 1)
    assert parse_mars_name("00-1C3T0001F010.jpg") == (-1, 3, 1, 10)
    assert parse_mars_name(format_mars_name(37, 2, 5, 999)) == (37, 2, 5, 999)
    with pytest.raises(DatasetError, match="not a MARS image name"):
        parse_mars_name("2C1T12F1.jpg")
    with pytest.raises(DatasetError, match="cannot name"):
        format_mars_name(1, 1, 1, 1000)


def test_mars_reader_names_the_missing_file(tmp_path):
    _make_mars(tmp_path)
    (tmp_path / "info" / "query_IDX.mat").unlink()
    with pytest.raises(DatasetError, match="query_IDX.mat: file not found"):
        read_mars(tmp_path)
    with pytest.raises(DatasetError, match="info: required folder not found"):
        read_mars(tmp_path / "bbox_train")


def test_mars_reader_names_a_missing_image(tmp_path):
    _make_mars(tmp_path)
    (tmp_path / "bbox_test" / "0008" / "0008C1T0003F002.jpg").unlink()
    with pytest.raises(DatasetError, match="0008C1T0003F002.jpg: image listed in the name file not found"):
        read_mars(tmp_path)


def _make_duke(root: Path) -> None:
    for split, pid, tracklet, cam, frames in [("train", 1, 1, 6, 3), ("train", 2, 4, 2, 2), ("query", 3, 1, 1, 2),
                                              ("gallery", 3, 2, 5, 4), ("gallery", 4, 1, 1, 2)]:
        for frame in range(1, frames + 1):
            _write_image(root / split / f"{pid:04d}" / f"{tracklet:04d}" / f"{pid:04d}_C{cam}_F{frame:04d}_X{frame:05d}.jpg", frame)


def test_duke_reader_returns_the_same_records(tmp_path):
    _make_duke(tmp_path)
    data = load_dataset(tmp_path)
    assert data.name == "dukemtmc-videoreid"
    assert [(t.pid, t.camid, len(t.paths)) for t in data.train] == [(1, 6, 3), (2, 2, 2)]
    assert [(t.pid, t.camid) for t in data.query] == [(3, 1)]
    assert [(t.pid, t.camid, len(t.paths)) for t in data.gallery] == [(3, 5, 4), (4, 1, 2)]
    assert data.gallery[0].paths == tuple(sorted(data.gallery[0].paths))


def test_duke_reader_errors_name_the_folder(tmp_path):
    _make_duke(tmp_path)
    for frame in (tmp_path / "query" / "0003" / "0001").iterdir():
        frame.unlink()
    with pytest.raises(DatasetError, match="0003/0001: tracklet folder holds no images"):
        read_duke_video(tmp_path)
    with pytest.raises(DatasetError, match="train/train: required folder not found"):
        read_duke_video(tmp_path / "train")
    with pytest.raises(DatasetError, match="neither a MARS layout"):
        load_dataset(tmp_path / "train")


def test_pk_sampler_gives_p_identities_with_k_tracklets_each():
    pids = [0] * 5 + [1] * 2 + [2] * 1 + [3] * 4 + [4] * 3
    sampler = PKBatchSampler(pids, p=3, k=2, seed=1)
    seen = set()
    for _ in range(3):  # epochs
        batches = list(sampler)
        assert batches
        for batch in batches:
            batch_pids = [pids[i] for i in batch]
            assert len(batch) == 6 and len(set(batch_pids)) == 3
            assert all(batch_pids.count(p) == 2 for p in set(batch_pids))
            seen.update(batch)
    assert seen == set(range(len(pids)))
    with pytest.raises(ValueError, match="at least P=6 identities"):
        PKBatchSampler(pids, p=6, k=2)


def test_restricted_random_sampling_takes_one_frame_per_chunk():
    rng = np.random.default_rng(0)
    for _ in range(50):
        indices = restricted_random_indices(10, 4, rng)  # chunks [0,2) [2,5) [5,7) [7,10)
        assert [lo <= i < hi for i, (lo, hi) in zip(indices, [(0, 2), (2, 5), (5, 7), (7, 10)])] == [True] * 4
    short = restricted_random_indices(2, 4, rng)
    assert sorted(set(short)) == [0, 1] and list(short) == sorted(short)


def test_clip_transform_flips_whole_clip_and_erases_frames(tmp_path):
    paths = []
    for i in range(2):
        image = np.zeros((20, 10, 3), np.uint8)
        image[:, :5] = 200  # bright left half
        paths.append(str(tmp_path / f"{i}.png"))
        cv2.imwrite(paths[-1], image)
    clip = to_clip(read_frames(paths), (32, 16))
    assert clip.shape == (2, 3, 32, 16) and clip.dtype == torch.float32
    flipped = augment_clip(clip, AugmentConfig(flip_prob=1.0, erase_prob=0.0), np.random.default_rng(0))
    assert torch.equal(flipped, clip.flip(-1))
    erased = augment_clip(clip, AugmentConfig(flip_prob=0.0, erase_prob=1.0), np.random.default_rng(0))
    assert all(not torch.equal(erased[i], clip[i]) for i in range(2))
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        read_frames([str(tmp_path / "missing.jpg")])


SEQ = data_root() / "mot15" / "TUD-Campus"


@pytest.mark.skipif(not (SEQ / "TUD-Campus.mp4").is_file(), reason=f"real data absent: {SEQ} (set MTMC_DATA)")
def test_make_reid_data_on_a_real_clip(tmp_path):
    gt = tmp_path / "gt_first60.txt"
    lines = [l for l in (SEQ / "gt" / "gt.txt").read_text().splitlines() if l and int(l.split(",")[0]) <= 60]
    gt.write_text("\n".join(lines) + "\n")
    out = tmp_path / "data"
    assert make_reid_data.main(["--video", str(SEQ / "TUD-Campus.mp4"), "--gt", str(gt), "--out", str(out),
                                "--segments", "2", "--min-frames", "8"]) == 0
    data = load_dataset(out)
    train_pids, test_pids = {t.pid for t in data.train}, {t.pid for t in data.gallery}
    assert train_pids and test_pids and not train_pids & test_pids
    for split in ("bbox_train", "bbox_test"):
        for image in (out / split).rglob("*.jpg"):
            pid, cam, _, _ = parse_mars_name(image.name)
            assert image.parent.name == f"{pid:04d}" and cam in (1, 2)
            assert cv2.imread(str(image)).shape[0] >= 24
    for query in data.query:  # every query has its identity in the other time segment
        assert any(g.pid == query.pid and g.camid != query.camid for g in data.gallery)
    assert all(len(t.paths) >= 8 for t in (*data.train, *data.gallery))
    with pytest.raises(SystemExit, match="already holds a dataset"):
        make_reid_data.main(["--video", str(SEQ / "TUD-Campus.mp4"), "--gt", str(gt), "--out", str(out)])


def test_make_reid_data_rejects_unpaired_flags(tmp_path, capsys):
    with pytest.raises(SystemExit):
        make_reid_data.main(["--video", "a.mp4", "--video", "b.mp4", "--gt", "a.txt", "--out", str(tmp_path)])
    assert "pass them in pairs" in capsys.readouterr().err


PETS = data_root() / "mot15" / "PETS09-S2L1"


@pytest.mark.skipif(not (PETS / "PETS09-S2L1.avi").is_file(), reason=f"real data absent: {PETS} (set MTMC_DATA)")
def test_make_reid_data_makes_one_identity_of_a_person_who_comes_back(tmp_path):
    """PETS09's gt calls the man in the long black coat 19, and 1 once he is back (frame 224); with the people
    file he is one identity (his boxes, visit and return, split into time segments as any track's)."""
    gt = tmp_path / "gt_first260.txt"
    lines = [l for l in (PETS / "gt" / "gt.txt").read_text().splitlines() if l and int(l.split(",")[0]) <= 260]
    gt.write_text("\n".join(lines) + "\n")
    (tmp_path / "people.yaml").write_text(f"gt: {gt}\nsame_person:\n  - [19, 1]\n  - [15, 14]\n")
    out = tmp_path / "data"
    args = ["--video", str(PETS / "PETS09-S2L1.avi"), "--gt", str(gt), "--segments", "2", "--test-fraction", "0.5"]
    assert make_reid_data.main([*args, "--out", str(out), "--people", str(tmp_path / "people.yaml")]) == 0
    sources = [line.split() for line in (out / "info" / "sources.txt").read_text().splitlines()[1:]]
    assert sorted(int(row[3]) for row in sources) == [9, 11, 12, 13, 15, 16, 17, 19]  # 10 gt ids, 8 people
    with pytest.raises(SystemExit, match="names the ids of .*PETS09-S2L1/gt/gt.txt, which is none of the --gt"):
        make_reid_data.main([*args, "--out", str(tmp_path / "other"), "--people",
                             str(REPO_ROOT / "configs" / "datasets" / "pets09_s2l1_people.yaml")])
