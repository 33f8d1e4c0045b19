"""Frames in: video files, image folders, webcams and live network streams, behind one small protocol.

    source = open_source("cam1.mp4")            # or an image folder, a webcam index, an rtsp:// URL
    for frame in source: ...                    # Frame(camera_id, index, timestamp, image)

``base`` holds the records every source shares, ``files`` the sources read at the process's pace (video
files, image folders, webcams), ``streams`` the threaded readers of network cameras that reconnect.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import StreamOptions
from pipeline.sources.base import Frame, Source, SourceError
from pipeline.sources.files import IMAGE_SUFFIXES, ImageFolderSource, VideoFileSource, WebcamSource
from pipeline.sources.streams import (StreamFrame, StreamSource, StreamState, default_stream_camera_id,
                                      is_stream_url, redact_url)

__all__ = ["Frame", "Source", "SourceError", "VideoFileSource", "ImageFolderSource", "WebcamSource", "StreamFrame",
           "StreamSource", "StreamState", "IMAGE_SUFFIXES", "open_source", "default_camera_id", "shown_spec",
           "is_stream_url", "redact_url"]


def default_camera_id(spec: str) -> str:
    """``videos/cam1.mp4`` -> ``cam1``; ``0`` -> ``webcam0``; ``seq/img1`` -> ``seq``; a URL: its last path part."""
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
    return redact_url(spec) if is_stream_url(spec) else spec


def open_source(spec: str, camera_id: str | None = None, max_frames: int = 0, image_fps: float = 25.0,
                stream_options: StreamOptions | None = None) -> Source:
    """Open a source from a CLI spec: a stream URL, a webcam index, an image folder, or a video file."""
    camera_id = camera_id or default_camera_id(spec)
    if is_stream_url(spec):
        return StreamSource(spec, camera_id, stream_options)
    if spec.isdigit():
        return WebcamSource(int(spec), camera_id, max_frames=max_frames)
    path = Path(spec)
    if path.is_dir():
        return ImageFolderSource(path, camera_id, fps=image_fps, max_frames=max_frames)
    return VideoFileSource(path, camera_id, max_frames=max_frames)
