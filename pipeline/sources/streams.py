"""Live network streams (rtsp://, rtmp://, http(s)://) as pipeline sources that stay live for hours.

    source = StreamSource("rtsp://user:secret@10.0.0.7/stream1", "door", StreamOptions(queue_size=2))
    frame = source.read(timeout=0.1)        # newest frame or None: never stalls a multi-camera loop
    for frame in source: ...                # or iterate; blocks while the camera is down
    source.report()                         # state, counters, redacted URL: for logs and summary.json
    source.close()                          # returns promptly even if a read is stuck in the network

One daemon thread per stream owns the OpenCV capture (FFMPEG backend, RTSP over TCP, open and read
timeouts). It reconnects with capped exponential backoff, keeps only the newest ``queue_size`` frames
(older ones are dropped and counted) and stamps each frame with wall-clock capture time. States:
CONNECTING (never connected yet) -> CONNECTED -> RECONNECTING (lost, retrying) -> GONE (down longer
than ``gone_after_s``; still retried at the backoff cap, so it resumes when the camera returns) and
CLOSED. A failing stream never touches the others: each has its own thread, queue and capture.
Credentials in URLs never leave this module: logs, warnings, errors and reports use ``redact_url``.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Any, Iterator
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import cv2

from pipeline.config import StreamOptions
from pipeline.sources.base import Frame, SourceError

log = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https")
SECRET_QUERY_KEYS = re.compile(r"pass|pwd|token|secret|key|auth|sig|credential", re.IGNORECASE)
FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
THREAD_SAFE_ENV = "OPENCV_FFMPEG_IS_THREAD_SAFE"
STALL_FRACTION = 0.9  # of read_timeout_s: slower reads only happen when the interrupt fired
MAX_WARNINGS = 50  # a camera flapping for hours must not grow the summary without bound
_ENV_LOCK = threading.Lock()
_CLOCK_ORIGIN = time.monotonic()  # shared by all streams of the process so their timestamps line up


class StreamState(str, Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    GONE = "gone"
    CLOSED = "closed"


@dataclass
class StreamFrame(Frame):
    captured_at: float = 0.0  # wall-clock time.time() when the frame came off the stream


def is_stream_url(spec: str) -> bool:
    return urlsplit(spec).scheme.lower() in STREAM_SCHEMES


def redact_url(url: str) -> str:
    """``rtsp://user:pw@host:554/s?token=x`` -> ``rtsp://***@host:554/s?token=***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if SECRET_QUERY_KEYS.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _secrets_of(url: str) -> list[str]:
    """Every substring of ``url`` that must never be shown, longest first."""
    parts = urlsplit(url)
    secrets = [url]
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        secrets += [userinfo, *(s for s in userinfo.split(":", 1) if len(s) >= 3)]
    secrets += [v for k, v in parse_qsl(parts.query) if SECRET_QUERY_KEYS.search(k) and v]
    secrets += [unquote(s) for s in secrets]  # messages may show percent-encoded parts decoded
    return sorted(set(secrets), key=len, reverse=True)


def default_stream_camera_id(url: str) -> str:
    """``rtsp://user:pw@10.0.0.7:554/live/cam3`` -> ``cam3``; a bare host -> ``10.0.0.7``."""
    parts = urlsplit(url)
    name = parts.path.rstrip("/").rsplit("/", 1)[-1]
    return name or parts.hostname or "stream"


def _configure_ffmpeg_env() -> None:
    """Process-wide OpenCV/FFmpeg settings read at every open; a user's own values are kept.

    RTSP over TCP: UDP loses packets (smeared frames) on busy networks and is blocked by most NATs.
    Thread-safe opens: by default OpenCV serialises every FFmpeg open behind one global lock, so one
    camera that never answers would hold every other camera's reconnect for its whole open timeout.
    FFmpeg itself has been thread-safe since 4.0 (OpenCV then logs one warning per open).
    """
    with _ENV_LOCK:
        current = os.environ.get(FFMPEG_OPTIONS_ENV, "")
        if "rtsp_transport" not in current:
            os.environ[FFMPEG_OPTIONS_ENV] = "|".join(filter(None, [current, "rtsp_transport;tcp"]))
        os.environ.setdefault(THREAD_SAFE_ENV, "1")


class LatestFrameQueue:
    """Bounded queue that keeps the newest items: a put on a full queue evicts the oldest."""

    def __init__(self, size: int) -> None:
        self._items: deque[StreamFrame] = deque()
        self._size = size
        self._ready = threading.Condition()
        self._closed = False

    def put(self, item: StreamFrame) -> bool:
        """Add ``item``; True when an older item had to be dropped for it."""
        with self._ready:
            dropped = len(self._items) >= self._size
            if dropped:
                self._items.popleft()
            self._items.append(item)
            self._ready.notify()
            return dropped

    def get(self, timeout: float | None) -> StreamFrame | None:
        """Oldest kept item, waiting up to ``timeout`` seconds (None = until one comes or close)."""
        with self._ready:
            self._ready.wait_for(lambda: self._items or self._closed, timeout)
            return self._items.popleft() if self._items else None

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def __len__(self) -> int:
        return len(self._items)


class StreamSource:
    """A live stream behind the ``pipeline.sources.Source`` protocol, read by its own thread."""

    live = True

    def __init__(self, url: str, camera_id: str | None = None, options: StreamOptions | None = None) -> None:
        if not is_stream_url(url):
            raise SourceError(f"{redact_url(url)}: not a stream URL (schemes: {', '.join(STREAM_SCHEMES)})")
        self._url = url
        self._secrets = _secrets_of(url)
        self.url = redact_url(url)
        self.camera_id = camera_id or default_stream_camera_id(url)
        self.options = options or StreamOptions()
        self.fps = 25.0  # replaced by the stream's own rate once connected
        self.warnings: list[str] = []
        self._queue = LatestFrameQueue(self.options.queue_size)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._counts = {"frames_read": 0, "frames_dropped": 0, "frames_delivered": 0,
                        "connect_attempts": 0, "reconnects": 0}
        self._state = StreamState.CONNECTING
        self._state_since = time.time()
        self._last_frame_at: float | None = None
        self._last_error = ""
        self._gave_up = False
        self._ever_connected = False
        self._thread = threading.Thread(target=self._run, name=f"stream-{self.camera_id}", daemon=True)
        self._thread.start()
        atexit.register(self._join_at_exit)

    def __repr__(self) -> str:
        return f"StreamSource({self.url!r}, camera_id={self.camera_id!r}, state={self.state.value})"

    # ---- consumer side ---------------------------------------------------------------------------
    @property
    def state(self) -> StreamState:
        return self._state

    def read(self, timeout: float | None = 0.0) -> StreamFrame | None:
        """The oldest kept frame, waiting at most ``timeout`` s; None when there is none yet."""
        frame = self._queue.get(timeout)
        if frame is not None:
            self._count("frames_delivered")
        return frame

    def __iter__(self) -> Iterator[StreamFrame]:
        """Frames as they arrive, until close(); raises SourceError if the stream gave up."""
        while not self._stop.is_set():
            frame = self.read(timeout=0.5)
            if frame is not None:
                yield frame
            elif self._gave_up:
                raise SourceError(f"{self.url}: {self._last_error or 'stream gone'}")

    @property
    def gave_up(self) -> bool:
        """True once the reader stopped for good (down longer than ``give_up_after_s``)."""
        return self._gave_up

    def wait_for_state(self, *states: StreamState, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._state not in states and time.monotonic() < deadline:
            time.sleep(0.02)
        return self._state in states

    def report(self) -> dict[str, Any]:
        """JSON-ready status for summaries: no credentials, all counters, state and its start time."""
        with self._lock:
            return {"camera": self.camera_id, "source": self.url, "state": self._state.value,
                    "state_since": self._state_since, "last_frame_at": self._last_frame_at,
                    "last_error": self._last_error, "queued": len(self._queue), **self._counts,
                    "warnings": list(self.warnings)}

    def close(self) -> None:
        """Stop the reader; returns within ``close_wait_s`` even if a read is blocked on the network."""
        self._stop.set()
        self._queue.close()
        self._thread.join(self.options.close_wait_s)
        if self._thread.is_alive():
            log.info("%s: reader still blocked in the network; it exits at its open or read timeout",
                     self.camera_id)
        self._set_state(StreamState.CLOSED, "closed")

    def _join_at_exit(self) -> None:
        """At interpreter exit, wait (bounded by the network timeouts) for a reader that close() left blocked in
        an open or read: exiting while FFmpeg is inside one aborts the process ('terminate called without an
        active exception', exit code -6) after every output was written."""
        self._stop.set()
        self._thread.join(self.options.open_timeout_s + self.options.read_timeout_s + 1.0)

    # ---- reader thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        down_since = time.monotonic()
        while not self._stop.is_set():
            capture = self._open()
            if capture is not None:
                frames = self._pump(capture)
                capture.release()
                if frames:
                    failures, down_since = 0, time.monotonic()
            if self._stop.is_set() or self._down_too_long(time.monotonic() - down_since):
                return
            failures += 1
            self._stop.wait(self.options.backoff_delay(failures))

    def _open(self) -> cv2.VideoCapture | None:
        _configure_ffmpeg_env()
        self._count("connect_attempts")
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.options.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.options.read_timeout_s * 1000)]
        try:
            capture = cv2.VideoCapture(self._url, cv2.CAP_FFMPEG, params)
        except cv2.error as err:
            self._note_failure(f"cannot open: {err}")
            return None
        if not capture.isOpened():
            self._note_failure(f"cannot open (no answer within {self.options.open_timeout_s:g} s, refused or "
                               "not a stream)")
            return None
        fps = capture.get(cv2.CAP_PROP_FPS)
        if fps and 0 < fps < 1000:
            self.fps = float(fps)
        return capture

    def _pump(self, capture: cv2.VideoCapture) -> int:
        """Read frames into the queue until the stream fails or close(); returns frames read."""
        frames = 0
        while not self._stop.is_set():
            started = time.monotonic()
            ok, image = capture.read()
            # After a read timeout FFmpeg's threaded decoder still hands out the frames it was holding,
            # as successes: stale pictures stamped "now". A read that took the timeout is a stall.
            stalled = time.monotonic() - started >= STALL_FRACTION * self.options.read_timeout_s
            if not ok or image is None or stalled:
                if not self._stop.is_set():
                    self._note_failure(f"stream lost after {frames} frames (ended, stalled "
                                       f"> {self.options.read_timeout_s:g} s or dropped)")
                break
            self._deliver(image)
            if frames == 0:
                self._on_connected()
            frames += 1
        return frames

    def _deliver(self, image) -> None:
        captured_at = time.time()
        with self._lock:
            index = self._counts["frames_read"]
            self._counts["frames_read"] += 1
            self._last_frame_at = captured_at
        frame = StreamFrame(self.camera_id, index, time.monotonic() - _CLOCK_ORIGIN, image, captured_at)
        if self._queue.put(frame):
            self._count("frames_dropped")

    def _on_connected(self) -> None:
        if self._ever_connected:
            self._count("reconnects")
            self._warn(f"reconnected after {time.time() - self._state_since:.1f} s {self._state.value}")
        self._ever_connected = True
        self._set_state(StreamState.CONNECTED, f"connected at {self.fps:g} fps")

    def _note_failure(self, reason: str) -> None:
        with self._lock:
            self._last_error = self._scrub(reason)
        if self._state == StreamState.CONNECTED:
            self._warn(self._last_error)
            self._set_state(StreamState.RECONNECTING, self._last_error)
        else:
            log.debug("%s: %s", self.camera_id, self._last_error)

    def _down_too_long(self, down_for: float) -> bool:
        """Move to GONE after gone_after_s; True (stop for good) after give_up_after_s."""
        give_up = self.options.give_up_after_s
        if give_up and down_for >= give_up:
            self._gave_up = True
            self._warn(f"gave up after {down_for:.1f} s without frames: {self._last_error}")
            self._set_state(StreamState.GONE, "gave up")
            self._queue.close()
            return True
        if down_for >= self.options.gone_after_s and self._state != StreamState.GONE:
            self._warn(f"gone: no frames for {down_for:.1f} s ({self._last_error}); still retrying")
            self._set_state(StreamState.GONE, self._last_error)
        return False

    # ---- bookkeeping -----------------------------------------------------------------------------
    def _set_state(self, state: StreamState, why: str) -> None:
        with self._lock:
            if state == self._state or self._state == StreamState.CLOSED:
                return
            self._state, self._state_since = state, time.time()
        level = logging.INFO if state in (StreamState.CONNECTED, StreamState.CLOSED) else logging.WARNING
        log.log(level, "camera %s (%s): %s: %s", self.camera_id, self.url, state.value, self._scrub(why))

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _warn(self, message: str) -> None:
        with self._lock:
            self.warnings.append(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {self._scrub(message)}")
            del self.warnings[:-MAX_WARNINGS]

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, self.url if secret == self._url else "***")
        return text
