"""The Embedder's CPU fast path (cached ONNX export run by onnxruntime) against torch on real PETS09 crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from configs import REPO_ROOT
from reid.embedder import Embedder
from reid.model import build_model, load_config
from reid.onnx_cache import CACHE_ENV, model_hash
from reid.preprocess import clip_indices
from tests.test_embedder import DEFAULT_WEIGHTS, PEOPLE, pets_tracklets  # noqa: F401  (the real-crop fixture)

pytest.importorskip("onnxruntime")
if not DEFAULT_WEIGHTS.is_file():
    pytest.skip(f"real data not found: {DEFAULT_WEIGHTS} (set MTMC_DATA)", allow_module_level=True)
MOBILENET = REPO_ROOT / "configs" / "reid" / "sta_mobilenetv2.yaml"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(folder))
        yield folder


@pytest.fixture(scope="module")
def fast(cache):
    return Embedder(runtime="onnxruntime", threads=1)


def test_fast_path_matches_torch_on_real_crops(fast, pets_tracklets):  # noqa: F811
    tracklets = [pets_tracklets[(person, window)] for person in PEOPLE for window in (0, 1)]
    expected = Embedder(runtime="torch").embed(tracklets)
    actual = fast.embed(tracklets)
    assert fast.device.startswith("onnxruntime") and actual.shape == expected.shape
    cosine = (actual * expected).sum(axis=1)
    assert cosine.min() > 0.999, f"onnxruntime vs torch cosine per tracklet: {np.round(cosine, 5)}"


def test_frame_features_match_torch_and_one_frame_clips(fast, pets_tracklets):  # noqa: F811
    tracklets = [pets_tracklets[(person, 0)] for person in PEOPLE] + [pets_tracklets[(PEOPLE[0], 1)][:2]]  # 2 crops: repeats
    clips, frames = fast.embed_with_frames(tracklets)
    torch_embedder = Embedder(runtime="torch")
    torch_clips, torch_frames = torch_embedder.embed_with_frames(tracklets)
    np.testing.assert_allclose(clips, fast.embed(tracklets), atol=1e-6)  # the clip embedding is unchanged
    used = [sorted(set(clip_indices(len(t), fast.seq_len, "even")[0])) for t in tracklets]
    assert [len(f) for f in frames] == [len(u) for u in used] == [len(f) for f in torch_frames]
    cosine = (np.concatenate(frames) * np.concatenate(torch_frames)).sum(axis=1)
    assert cosine.min() > 0.999, f"onnxruntime vs torch per-crop cosine: {np.round(cosine, 5)}"
    one_frame = Embedder(runtime="torch", seq_len=1).embed([[t[i]] for t, u in zip(tracklets, used) for i in u])
    np.testing.assert_allclose(np.concatenate(torch_frames), one_frame, atol=1e-5)
    every_clips, every_crop = fast.embed_with_frames(tracklets, test_mode="all")  # consecutive clips: all crops
    assert [len(f) for f in every_crop] == [len(t) for t in tracklets] and every_clips.shape == clips.shape


def test_export_is_made_once_and_reused(fast, cache):
    exports = sorted((cache / "reid_onnx").glob("*.onnx"))
    assert len(exports) == 1, exports
    made = exports[0].stat().st_mtime_ns
    again = Embedder(runtime="auto", device="cpu")
    assert again.device.startswith("onnxruntime") and again.seq_len == fast.seq_len
    assert sorted((cache / "reid_onnx").glob("*.onnx")) == exports and exports[0].stat().st_mtime_ns == made


def test_cache_key_changes_with_weights_and_clip_length():
    cfg = load_config(MOBILENET, pretrained="random")
    model = build_model(cfg)
    key = model_hash(model, cfg, cfg.seq_len, opset=17)
    assert model_hash(build_model(cfg), cfg, cfg.seq_len, opset=17) == key  # same seeded init, same key
    assert model_hash(model, cfg, cfg.seq_len + 1, opset=17) != key
    with torch.no_grad():
        model.fc.bias[0] += 1e-3
    assert model_hash(model, cfg, cfg.seq_len, opset=17) != key


def test_unknown_runtime_is_an_error():
    with pytest.raises(ValueError, match="runtime must be one of"):
        Embedder(runtime="tensorrt")
