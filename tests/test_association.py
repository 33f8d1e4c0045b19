"""Per-camera colour normalisation of ReID crops (pipeline/appearance.py) and its place in the tracklet buffer.

A camera's white balance / gain / offset is simulated on a real PETS09 frame the way tools/make_multicam.py
does it; normalisation must bring the crops of both cameras back to (nearly) the same pixels.
"""

import cv2
import numpy as np
import pytest

from configs import ConfigError, data_root
from pipeline.appearance import CameraColourStats
from pipeline.config import TrackletConfig, load_pipeline_config
from pipeline.tracklets import TrackletBuffer

PETS_VIDEO = data_root() / "mot15" / "PETS09-S2L1" / "PETS09-S2L1.avi"
needs_pets = pytest.mark.skipif(not PETS_VIDEO.is_file(), reason=f"PETS09-S2L1 video absent: {PETS_VIDEO} (set MTMC_DATA)")
PERSON = np.array([530.0, 120.0, 570.0, 220.0])  # a 40x100 patch of frame 0 (what matters here is colour)


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    capture = cv2.VideoCapture(str(PETS_VIDEO))
    ok, image = capture.read()
    capture.release()
    assert ok, f"cannot read {PETS_VIDEO}"
    return image


def recolour(image: np.ndarray, gains, brightness: float) -> np.ndarray:
    return np.clip(image.astype(np.float32) * np.asarray(gains, np.float32) + brightness, 0, 255).astype(np.uint8)


def crop(image: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = PERSON.astype(int)
    return image[y1:y2, x1:x2]


@needs_pets
@pytest.mark.parametrize("mode, gains, brightness", [("meanstd", [0.85, 1.0, 1.15], 12), ("gray", [1.15, 1.05, 0.85], 0)])
def test_normalisation_undoes_a_camera_colour_change(frame, mode, gains, brightness):
    other = recolour(frame, gains, brightness)
    stats = CameraColourStats(mode)
    stats.observe("a", frame)
    stats.observe("b", other)
    before = np.abs(crop(frame).astype(int) - crop(other).astype(int)).mean()
    after = np.abs(stats.normalise("a", crop(frame)).astype(int) - stats.normalise("b", crop(other)).astype(int)).mean()
    assert before > 10
    assert after < 2.0, f"{mode}: mean abs pixel difference {before:.1f} -> {after:.1f}"


@needs_pets
def test_blank_frames_do_not_enter_the_statistics(frame):
    """A delayed camera shows black frames first; they must not pull its mean towards zero."""
    stats, reference = CameraColourStats("meanstd"), CameraColourStats("meanstd")
    for _ in range(20):
        stats.observe("cam", np.zeros_like(frame))
    stats.observe("cam", frame)
    reference.observe("cam", frame)
    np.testing.assert_allclose(stats.mean["cam"], reference.mean["cam"])
    assert stats.frames["cam"] == 1


def test_unseen_camera_and_mode_none_leave_crops_unchanged():
    patch = np.random.default_rng(0).integers(0, 255, (40, 20, 3), dtype=np.uint8)
    assert CameraColourStats("meanstd").normalise("never-seen", patch) is patch
    stats = CameraColourStats("none")
    stats.observe("cam", patch)
    assert stats.normalise("cam", patch) is patch


def test_bad_mode_is_an_error():
    with pytest.raises(ValueError, match="colour norm"):
        CameraColourStats("hsv")
    with pytest.raises(ConfigError, match="tracklets.colour_norm"):
        load_pipeline_config(None, {"tracklets.colour_norm": "hsv"})


@needs_pets
def test_buffer_gives_normalised_crops(frame):
    """Two cameras with different colour see the same person: their tracklets' crops come out alike."""
    buffer = TrackletBuffer(TrackletConfig(colour_norm="meanstd", min_length=1))
    other = recolour(frame, [0.85, 1.0, 1.15], 12)
    track = np.array([[*PERSON, 1, 0.9]])
    for index in range(3):
        buffer.update("a", index, index / 7.0, frame, track)
        buffer.update("b", index, index / 7.0, other, track)
    finished = {t.camera_id: t for t in buffer.flush()}
    difference = np.abs(finished["a"].crops[0].astype(int) - finished["b"].crops[0].astype(int)).mean()
    assert len(finished["a"].crops) >= 1 and difference < 2.0
