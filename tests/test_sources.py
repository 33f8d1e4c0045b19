"""Frame sources on real clips and on broken input."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from configs import data_root
from pipeline.sources import ImageFolderSource, Source, SourceError, VideoFileSource, WebcamSource, open_source

TUD_CAMPUS = data_root() / "mot15" / "TUD-Campus" / "TUD-Campus.mp4"
needs_tud = pytest.mark.skipif(not TUD_CAMPUS.is_file(), reason=f"real clip absent: {TUD_CAMPUS} (set MTMC_DATA)")


@needs_tud
def test_video_source_yields_indexed_timestamped_bgr_frames():
    source = open_source(str(TUD_CAMPUS), max_frames=12)
    frames = list(source)
    assert isinstance(source, Source) and source.camera_id == "TUD-Campus"
    assert [f.index for f in frames] == list(range(12))
    assert frames[0].image.shape == (480, 640, 3) and frames[0].image.dtype == np.uint8
    assert np.allclose([f.timestamp for f in frames], np.arange(12) / source.fps)


def test_missing_video_names_the_file(tmp_path):
    with pytest.raises(SourceError, match="nope.mp4: video file not found"):
        VideoFileSource(tmp_path / "nope.mp4", "cam")


def test_file_that_is_not_a_video(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 10)
    with pytest.raises(SourceError, match="junk.mp4"):
        list(VideoFileSource(junk, "cam"))


def test_zero_frame_video(tmp_path):
    empty = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    writer.release()
    with pytest.raises(SourceError, match="empty.avi"):
        list(VideoFileSource(empty, "cam"))


def write_truncated_avi(path: Path, frames: int = 30, keep_fraction: float = 0.5) -> None:
    """An MJPG AVI whose tail is cut off: decoding stops part-way, like a copy interrupted mid-file."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    for i in range(frames):
        writer.write(np.full((64, 96, 3), (i * 8) % 255, dtype=np.uint8))
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])


def test_video_cut_mid_file_raises_after_its_good_frames(tmp_path):
    path = tmp_path / "cut.avi"
    write_truncated_avi(path)
    source = VideoFileSource(path, "cut")
    got = []
    with pytest.raises(SourceError, match="decoding stopped at frame"):
        for frame in source:
            got.append(frame.index)
    assert 0 < len(got) < 30


def test_image_folder_skips_a_broken_image_with_a_warning(tmp_path):
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i:06d}.jpg"), np.full((40, 30, 3), 60 * i, dtype=np.uint8))
    (tmp_path / "000002.jpg").write_bytes(b"broken")
    source = ImageFolderSource(tmp_path, "folder", fps=5.0)
    frames = list(source)
    assert [f.index for f in frames] == [0, 1, 3]
    assert frames[2].timestamp == pytest.approx(3 / 5.0)
    assert len(source.warnings) == 1 and "000002.jpg" in source.warnings[0]


def test_image_folder_without_images(tmp_path):
    with pytest.raises(SourceError, match="no images"):
        ImageFolderSource(tmp_path, "empty")


def test_webcam_that_does_not_exist():
    with pytest.raises(SourceError, match="webcam 97"):
        list(WebcamSource(97, "webcam97", max_frames=1))
