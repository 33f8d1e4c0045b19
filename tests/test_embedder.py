"""Embedder: real PETS09 crops, test-time clip modes, batching, checkpoints and bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from configs import CACHE_ENV, ConfigError, data_root
from pipeline.motio import read_mot_rows
from reid.checkpoint import save_checkpoint
from reid.embedder import Embedder
from reid.model import ReIDConfig, build_model
from reid.preprocess import consecutive_clips, normalize, resize_crop, sample_even

torch.set_num_threads(1)  # the 2 shared cores are busy: a second thread spins and slows tests 10x
SMALL = ReIDConfig(pretrained="random", input_size=(64, 32), embed_dim=32)
PETS = data_root() / "mot15" / "PETS09-S2L1"
# People visible through both windows below, and two windows a minute of walking apart.
PEOPLE = (9, 11, 12, 13, 15, 19)
WINDOWS = (range(41, 81, 5), range(101, 141, 5))  # 1-based gt frames, 8 crops per tracklet
DEFAULT_WEIGHTS = data_root() / "models" / "osnet_x0_25_msmt17.onnx"  # the zero-shot default's backbone
needs_default_weights = pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(),
                                           reason=f"real data not found: {DEFAULT_WEIGHTS} (set MTMC_DATA)")


@pytest.fixture(autouse=True)
def no_trained_models(tmp_path, monkeypatch):
    """Embedder() must not depend on whether this machine has a trained model in its cache."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))


def random_crops(count: int, seed: int = 0, size=(48, 20)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(count)]


@pytest.fixture(scope="module")
def pets_tracklets() -> dict[tuple[int, int], list[np.ndarray]]:
    """(person, window) -> BGR crops cut from the PETS09-S2L1 video with ground-truth boxes."""
    video = PETS / "PETS09-S2L1.avi"
    if not video.is_file():
        pytest.skip(f"real data not found: {video} (set MTMC_DATA)")
    gt = read_mot_rows(PETS / "gt" / "gt.txt")
    boxes = {(int(r[0]), int(r[1])): r[2:6] for r in gt}
    wanted = {frame for window in WINDOWS for frame in window}
    tracklets: dict[tuple[int, int], list[np.ndarray]] = {}
    capture = cv2.VideoCapture(str(video))
    for frame in range(1, max(wanted) + 1):
        ok, image = capture.read()
        assert ok, f"{video}: cannot read frame {frame}"
        if frame not in wanted:
            continue
        window = next(i for i, w in enumerate(WINDOWS) if frame in w)
        for person in PEOPLE:
            x, y, w, h = boxes[(frame, person)].round().astype(int)
            crop = image[max(y, 0):y + h, max(x, 0):x + w]
            tracklets.setdefault((person, window), []).append(crop)
    capture.release()
    return tracklets


@needs_default_weights
def test_same_person_is_closer_than_different_people_on_real_crops(pets_tracklets):
    embedder = Embedder()
    first = embedder.embed([pets_tracklets[(p, 0)] for p in PEOPLE])
    second = embedder.embed([pets_tracklets[(p, 1)] for p in PEOPLE])
    cosine = first @ second.T
    same = np.diag(cosine).mean()
    different = cosine[~np.eye(len(PEOPLE), dtype=bool)].mean()
    print(f"PETS09 crops, zero-shot STA-OSNet x0.25: mean cosine same person {same:.3f}, different {different:.3f}")
    assert same > different
    assert (cosine.argmax(axis=1) == np.arange(len(PEOPLE))).mean() >= 0.5  # a ReID feature, not only a trend


@needs_default_weights
def test_default_embedder_output_is_unit_float32_and_reproducible():
    crops = random_crops(5)
    first, second = Embedder(), Embedder()
    vectors = first.embed([crops, crops[:1]])
    assert vectors.shape == (2, first.embedding_dim) == (2, 512) and vectors.dtype == np.float32
    assert first.model_info["file"] == str(DEFAULT_WEIGHTS) and "zero-shot" in first.model_info["training_data"]
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors, second.embed([crops, crops[:1]]))


def test_all_frames_mode_averages_consecutive_clips():
    crops = random_crops(11, size=(30, 12))
    model = build_model(SMALL).eval()
    with torch.inference_mode():
        clip_embeddings = [model(normalize(torch.from_numpy(np.stack([resize_crop(crops[i], SMALL.input_size)
                                                                      for i in clip])))[None])[0]
                           for clip in consecutive_clips(11, SMALL.seq_len)]
    expected = torch.nn.functional.normalize(torch.stack(clip_embeddings).mean(0), dim=0).numpy()
    actual = Embedder(cfg=SMALL, test_mode="all").embed([crops])[0]
    assert np.allclose(actual, expected, atol=1e-5)


def test_clip_sampling_rules():
    assert sample_even(10, 4) == [0, 3, 6, 9]
    assert sample_even(1, 4) == [0, 0, 0, 0]
    assert consecutive_clips(11, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [7, 8, 9, 10]]
    assert consecutive_clips(8, 4) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert consecutive_clips(2, 4) == [[0, 0, 1, 1]]


def test_results_do_not_depend_on_batch_size():
    tracklets = [random_crops(n, seed=n) for n in (1, 6, 9)]
    one_by_one = Embedder(cfg=SMALL, batch_size=1, test_mode="all").embed(tracklets)
    batched = Embedder(cfg=SMALL, batch_size=16, test_mode="all").embed(tracklets)
    assert np.allclose(one_by_one, batched, atol=1e-5)


@pytest.mark.parametrize("mode", ["even", "all"])
def test_any_crop_size_and_count(mode):
    sizes = [(1, 1), (3, 500), (600, 2), (200, 90)]
    tracklets = [random_crops(1, size=(1, 1)), [random_crops(1, i, s)[0] for i, s in enumerate(sizes)],
                 random_crops(200, seed=3, size=(40, 16))]
    vectors = Embedder(cfg=SMALL, test_mode=mode).embed(tracklets)
    assert vectors.shape == (3, 32) and np.isfinite(vectors).all()


def test_bad_input_is_named():
    embedder = Embedder(cfg=SMALL)
    assert embedder.embed([]).shape == (0, 32)
    good = random_crops(2)
    cases = [
        ([good, []], "tracklet 1: has no crops"),
        ([good, [np.zeros((0, 10, 3), np.uint8)]], "tracklet 1, crop 0: crop has size 0"),
        ([good + [np.zeros((10, 10), np.uint8)]], r"tracklet 0, crop 2: expected an H x W x 3"),
        ([[np.zeros((10, 10, 3), np.float32)]], "tracklet 0, crop 0: expected dtype uint8"),
        ([good[0]], "tracklet 0: expected a list of crops"),
    ]
    for tracklets, message in cases:
        with pytest.raises(ValueError, match=message):
            embedder.embed(tracklets)


def test_constructor_errors():
    with pytest.raises(ValueError, match="either weights"):
        Embedder(weights="x.pt", cfg=SMALL)
    with pytest.raises(ValueError, match="test_mode"):
        Embedder(cfg=SMALL, test_mode="random")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Embedder(cfg=SMALL, device="cuda")


def test_embedder_from_checkpoint_matches_the_saved_model(tmp_path):
    cfg = ReIDConfig(pretrained="random", input_size=(64, 32), embed_dim=16, num_classes=3, init_seed=5)
    path = save_checkpoint(tmp_path / "sta.pt", build_model(cfg), cfg, {"epoch": 1})
    tracklets = [random_crops(6, seed=1), random_crops(2, seed=2)]
    from_checkpoint = Embedder(weights=path)
    assert from_checkpoint.embedding_dim == 16
    assert np.allclose(from_checkpoint.embed(tracklets), Embedder(cfg=cfg).embed(tracklets), atol=1e-6)


def test_from_config_reads_model_and_runtime_options(tmp_path):
    cfg = ReIDConfig(pretrained="random", input_size=(64, 32), embed_dim=8)
    checkpoint = save_checkpoint(tmp_path / "sta.pt", build_model(cfg), cfg, {})
    config = tmp_path / "embedder.yaml"
    config.write_text(f"weights: {checkpoint}\ndevice: cpu\nbatch_size: 2\ntest_mode: all\n")
    embedder = Embedder.from_config(config)
    assert (embedder.batch_size, embedder.test_mode, embedder.device, embedder.embedding_dim) == (2, "all", "cpu", 8)
    config.write_text("weights: ''\nbatch: 2\n")
    with pytest.raises(ConfigError, match="batch"):
        Embedder.from_config(config)


def test_embed_clips_checks_its_input():
    embedder = Embedder(cfg=SMALL)
    assert embedder.embed_clips(np.zeros((3, 4, 64, 32, 3), np.uint8)).shape == (3, 32)
    with pytest.raises(ValueError, match=r"shape \(B, 4, 64, 32, 3\)"):
        embedder.embed_clips(np.zeros((3, 4, 32, 64, 3), np.uint8))
