"""Frame sources: video files, image folders and webcams behind one small protocol.

A source is an iterable of ``Frame`` records. Anything that yields them can be a camera: a threaded
RTSP reader only has to implement ``Source`` (camera_id, fps, live, ``__iter__``, ``close``). Errors
that make a source unusable raise ``SourceError`` naming the source; recoverable problems (one broken
image in a folder) are collected in ``warnings`` and the source goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

import cv2
import numpy as np

from pipeline.motio import read_seqinfo

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


class SourceError(RuntimeError):
    """A source that cannot be opened or read; the message names the source."""


@dataclass
class Frame:
    camera_id: str
    index: int  # 0-based frame index within its source
    timestamp: float  # seconds since the source's first frame (shared clock for synchronised files)
    image: np.ndarray  # BGR uint8, H x W x 3


@runtime_checkable
class Source(Protocol):
    camera_id: str
    fps: float
    live: bool  # True when the frames cannot be read again (webcam, RTSP)
    warnings: list[str]

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


@dataclass
class VideoFileSource:
    path: Path
    camera_id: str
    max_frames: int = 0
    live: bool = False
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.is_file():
            raise SourceError(f"{self.path}: video file not found")
        self._capture = cv2.VideoCapture(str(self.path))
        if not self._capture.isOpened():
            raise SourceError(f"{self.path}: cannot open as a video (unsupported or corrupt file)")
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else 25.0
        self.frame_count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while not self.max_frames or index < self.max_frames:
            ok, image = self._capture.read()
            if not ok:
                break
            yield Frame(self.camera_id, index, index / self.fps, image)
            index += 1
        if index == 0:
            raise SourceError(f"{self.path}: video has no readable frames")
        if self.frame_count and index < min(self.frame_count, self.max_frames or self.frame_count) - 1:
            raise SourceError(f"{self.path}: decoding stopped at frame {index} of {self.frame_count}")

    def close(self) -> None:
        self._capture.release()


@dataclass
class ImageFolderSource:
    path: Path
    camera_id: str
    fps: float = 25.0
    max_frames: int = 0
    live: bool = False
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"{self.path}: folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        seqinfo = self.path.parent / "seqinfo.ini"
        if seqinfo.is_file():
            self.fps = read_seqinfo(self.path.parent).frame_rate

    def __iter__(self) -> Iterator[Frame]:
        files = self.files[: self.max_frames] if self.max_frames else self.files
        good = 0
        for index, file in enumerate(files):
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is None:
                self.warnings.append(f"{file}: unreadable image, frame {index} skipped")
                continue
            good += 1
            yield Frame(self.camera_id, index, index / self.fps, image)
        if good == 0:
            raise SourceError(f"{self.path}: none of the {len(files)} images could be read")

    def close(self) -> None:
        pass


@dataclass
class WebcamSource:
    device_index: int
    camera_id: str
    max_frames: int = 0
    live: bool = True
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._capture = cv2.VideoCapture(self.device_index)
        if not self._capture.isOpened():
            raise SourceError(f"webcam {self.device_index}: cannot open the device")
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else 30.0

    def __iter__(self) -> Iterator[Frame]:
        start = time.monotonic()
        index = 0
        while not self.max_frames or index < self.max_frames:
            ok, image = self._capture.read()
            if not ok:
                if index == 0:
                    raise SourceError(f"webcam {self.device_index}: no frames received")
                raise SourceError(f"webcam {self.device_index}: stream ended after {index} frames")
            yield Frame(self.camera_id, index, time.monotonic() - start, image)
            index += 1

    def close(self) -> None:
        self._capture.release()


def default_camera_id(spec: str) -> str:
    """``videos/cam1.mp4`` -> ``cam1``; ``0`` -> ``webcam0``; ``seq/img1`` -> ``seq``; a URL: its last path part."""
    from pipeline.streams import default_stream_camera_id, is_stream_url  # streams.py imports this module

    if is_stream_url(spec):
        return default_stream_camera_id(spec)
    if spec.isdigit():
        return f"webcam{spec}"
    path = Path(spec)
    if path.is_dir() and path.name == "img1":
        return path.parent.name
    return path.stem or spec


def shown_spec(spec: str) -> str:
    """A source spec as it may appear in logs, events and summaries: stream URLs without credentials."""
    from pipeline.streams import is_stream_url, redact_url

    return redact_url(spec) if is_stream_url(spec) else spec


def open_source(spec: str, camera_id: str | None = None, max_frames: int = 0, image_fps: float = 25.0) -> Source:
    """Open a source from a CLI spec: a stream URL, a webcam index, an image folder, or a video file."""
    from pipeline.streams import StreamSource, is_stream_url

    camera_id = camera_id or default_camera_id(spec)
    if is_stream_url(spec):
        return StreamSource(spec, camera_id)
    if spec.isdigit():
        return WebcamSource(int(spec), camera_id, max_frames=max_frames)
    path = Path(spec)
    if path.is_dir():
        return ImageFolderSource(path, camera_id, fps=image_fps, max_frames=max_frames)
    return VideoFileSource(path, camera_id, max_frames=max_frames)
