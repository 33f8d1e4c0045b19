"""Frame sources that a process reads at its own pace: video files, image folders and webcams."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2

from pipeline.motio import read_seqinfo
from pipeline.sources.base import Frame, SourceError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


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
