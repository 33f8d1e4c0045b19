"""The CUHK03 reader: one tracklet per identity and camera, on the real shared split and on a made-up folder."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from configs import data_root
from reid.datasets import DatasetError, load_dataset

CUHK03 = data_root() / "reid" / "cuhk03"
needs_cuhk03 = pytest.mark.skipif(not (CUHK03 / "train").is_dir(), reason=f"real data not found: {CUHK03} (set MTMC_DATA)")


@needs_cuhk03
def test_real_split_sizes_and_cameras():
    dataset = load_dataset(CUHK03)
    assert dataset.name == "cuhk03" and len(dataset.train_pids) == 743 and len(dataset.train) == 1486
    assert sum(len(t.paths) for t in dataset.train) == 7239
    assert len(dataset.query) == len(dataset.gallery) == 100
    assert {t.camid for t in dataset.query} == {1} and {t.camid for t in dataset.gallery} == {2}
    assert {t.pid for t in dataset.query} == {t.pid for t in dataset.gallery}
    assert all(1 <= len(t.paths) <= 5 for t in (*dataset.train, *dataset.query, *dataset.gallery))


@needs_cuhk03
def test_a_split_folder_alone_is_its_own_query_and_gallery():
    val = load_dataset(CUHK03 / "val")
    assert len(val.train) == 200 and sum(len(t.paths) for t in (*val.query, *val.gallery)) == 938


def write_image(path) -> None:
    cv2.imwrite(str(path), np.zeros((128, 64, 3), np.uint8))


def test_images_group_by_person_and_camera(tmp_path):
    for name in ("0000_00.jpg", "0000_01.jpg", "0000_05.jpg", "0001_06.jpg", "0001_02.jpg"):
        write_image(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    dataset = load_dataset(tmp_path)
    tracklets = {(t.pid, t.camid): [p.rsplit("/", 1)[-1] for p in t.paths] for t in dataset.train}
    assert tracklets == {(0, 1): ["0000_00.jpg", "0000_01.jpg"], (0, 2): ["0000_05.jpg"],
                         (1, 1): ["0001_02.jpg"], (1, 2): ["0001_06.jpg"]}


def test_a_root_without_val_is_named(tmp_path):
    (tmp_path / "train").mkdir()
    write_image(tmp_path / "train" / "0000_00.jpg")
    with pytest.raises(DatasetError, match=f"{tmp_path / 'val'}: required folder not found"):
        load_dataset(tmp_path)
