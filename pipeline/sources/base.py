"""What every frame source shares: the Frame record, the Source protocol and SourceError.

A source is an iterable of ``Frame`` records. Anything that yields them can be a camera: it only has to
implement ``Source`` (camera_id, fps, live, ``__iter__``, ``close``). Errors that make a source unusable
raise ``SourceError`` naming the source; recoverable problems (one broken image in a folder) are collected
in ``warnings`` and the source goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol, runtime_checkable

import numpy as np

from configs import UserError


class SourceError(UserError, RuntimeError):
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
