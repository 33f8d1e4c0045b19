"""The rule that picks Embedder()'s model: best.json in <cache>/reid_models when its file exists, matches
its sha256 and loads; otherwise the zero-shot default. The cache is a tmp folder: nothing here depends on
whether this machine has a trained model."""

from __future__ import annotations

import json

import pytest
import torch

from configs import CACHE_ENV, data_root
from reid import model_store
from reid.checkpoint import CheckpointError, save_checkpoint
from reid.embedder import Embedder
from reid.model import ReIDConfig, build_model

torch.set_num_threads(1)
SMALL = ReIDConfig(pretrained="random", input_size=(64, 32), embed_dim=24, num_classes=3)
DEFAULT_WEIGHTS = data_root() / "models" / "osnet_x0_25_msmt17.onnx"
needs_default_weights = pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(),
                                           reason=f"real data not found: {DEFAULT_WEIGHTS} (set MTMC_DATA)")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def small_checkpoint(path, seed: int = 0):
    cfg = ReIDConfig(**{**SMALL.to_dict(), "init_seed": seed})
    return save_checkpoint(path, build_model(cfg), cfg, {"data": "cuhk03/train"})


def test_published_model_is_what_embedder_uses(tmp_path, cache):
    record, best = model_store.publish(small_checkpoint(tmp_path / "a.pt"), "CUHK03 train", "cuhk03/val", {"rank1": 0.8})
    assert best and (cache / "reid_models" / record.file).is_file()
    assert json.loads((cache / "reid_models" / "best.json").read_text())["sha256"] == record.sha256
    embedder = Embedder()
    assert embedder.embedding_dim == 24
    assert embedder.model_info["file"] == str(cache / "reid_models" / record.file)
    assert embedder.model_info["sha256"] == record.sha256 and "cuhk03/train" in embedder.model_info["training_data"]


def test_a_worse_model_does_not_replace_the_best(tmp_path):
    first, _ = model_store.publish(small_checkpoint(tmp_path / "a.pt"), "x", "cuhk03/val", {"rank1": 0.8})
    second, best = model_store.publish(small_checkpoint(tmp_path / "b.pt", seed=1), "x", "cuhk03/val", {"rank1": 0.7})
    assert not best and model_store.read_best().file == first.file != second.file
    _, forced = model_store.publish(tmp_path / "b.pt", "x", "cuhk03/val", {"rank1": 0.7}, force=True)
    assert forced and model_store.read_best().file == second.file


@needs_default_weights
def test_without_a_valid_best_model_the_zero_shot_default_runs(tmp_path, cache):
    assert model_store.best_model_file() is None and Embedder().model_info["file"] == str(DEFAULT_WEIGHTS)
    record, _ = model_store.publish(small_checkpoint(tmp_path / "a.pt"), "x", "cuhk03/val", {"rank1": 0.8})
    (cache / "reid_models" / record.file).write_bytes(b"changed")  # no longer the file best.json names
    with pytest.warns(UserWarning, match="sha256 differs"):
        assert Embedder().embedding_dim == 512
    (cache / "reid_models" / "best.json").write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable"):
        assert Embedder().model_info["file"] == str(DEFAULT_WEIGHTS)


def test_bad_weights_files_raise_errors_naming_them(tmp_path):
    video = tmp_path / "some.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(100))
    with pytest.raises(CheckpointError, match=f"{video}: not a readable checkpoint"):
        Embedder(weights=video)
    with pytest.raises(CheckpointError, match="checkpoint not found: .*missing.pt"):
        Embedder(weights=tmp_path / "missing.pt")
    fake_onnx = tmp_path / "model.onnx"
    fake_onnx.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=f"{fake_onnx}: not a readable ONNX model"):
        Embedder(weights=fake_onnx)
    truncated = tmp_path / "truncated.pt"
    whole = small_checkpoint(tmp_path / "whole.pt").read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CheckpointError, match=f"{truncated}: not a readable checkpoint"):
        Embedder(weights=truncated)
