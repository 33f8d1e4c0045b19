"""StreamSource against a real RTSP server (gst-rtsp-server on loopback) serving real MOT15 footage.

Cameras die, stall and come back here for real: servers are killed by process id and restarted on the
same port, frozen with SIGSTOP, or replaced by a socket that accepts and never answers.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
import time

import pytest

from configs import data_root
from pipeline.sources import Source, SourceError
from pipeline.sources.streams import StreamFrame, StreamOptions, StreamSource, StreamState, redact_url
from rtsp_fixtures import rtsp_clips, rtsp_servers  # noqa: F401  (pytest fixtures)

YOLOX = data_root() / "models" / "yolox_nano.onnx"
FAST = StreamOptions(read_timeout_s=2.0, open_timeout_s=5.0, backoff_initial_s=0.2, backoff_max_s=1.0,
                     gone_after_s=3.0, close_wait_s=1.0)
CONNECT_TIMEOUT_S = 10.0  # an ffmpeg RTSP open probes ~2 s of a 15 fps stream; room for a loaded CI box
MAX_GAP_S = 1.0  # a healthy 15 fps stream never goes this long without a frame


class Collector:
    """Reads one source continuously on its own thread, as a live consumer would."""

    def __init__(self, source: StreamSource) -> None:
        self.source = source
        self.frames: list[StreamFrame] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            frame = self.source.read(timeout=0.05)
            if frame is not None:
                self.frames.append(frame)

    def stop(self) -> list[StreamFrame]:
        self._stop.set()
        self._thread.join(2.0)
        return self.frames

    def since(self, wall_time: float) -> list[StreamFrame]:
        return [f for f in list(self.frames) if f.captured_at > wall_time]


def max_gap(frames: list[StreamFrame], start: float, end: float) -> float:
    times = [start] + [f.captured_at for f in frames if start <= f.captured_at <= end] + [end]
    return max(b - a for a, b in zip(times, times[1:]))


def wait_connected(*sources: StreamSource) -> None:
    for source in sources:
        assert source.wait_for_state(StreamState.CONNECTED, timeout=CONNECT_TIMEOUT_S), source.report()


@pytest.fixture(scope="module")
def detector():
    if not YOLOX.is_file():
        pytest.skip(f"YOLOX model absent: {YOLOX} (set MTMC_DATA)")
    from pipeline.detectors import YoloxOnnxDetector

    return YoloxOnnxDetector(YOLOX, conf=0.3)


@pytest.fixture
def closing():
    """Register sources to close at teardown, even when an assertion fails."""
    sources: list[StreamSource] = []
    yield sources.append
    for source in sources:
        source.close()


def open_stream(closing, url: str, camera_id: str, options: StreamOptions = FAST) -> StreamSource:
    source = StreamSource(url, camera_id, options)
    closing(source)
    return source


def test_two_live_streams_deliver_fresh_frames_the_detector_sees_people_in(rtsp_servers, detector, closing):
    server = rtsp_servers({"cam1": "tud", "cam2": "pets"})
    sources = [open_stream(closing, server.url(m), m) for m in ("cam1", "cam2")]
    assert all(isinstance(s, Source) and s.live for s in sources)
    wait_connected(*sources)
    start = time.time()
    collectors = [Collector(s) for s in sources]
    time.sleep(2.0)
    batches = [c.stop() for c in collectors]
    end = time.time()

    for source, frames in zip(sources, batches):
        assert len(frames) >= 20, (source.camera_id, len(frames))  # 15 fps for 2 s, minus start-up slack
        assert all(f.image.shape == (240, 320, 3) and f.camera_id == source.camera_id for f in frames)
        indexes = [f.index for f in frames]
        assert indexes == sorted(set(indexes))
        assert all(start - 3.0 <= f.captured_at <= end for f in frames)  # wall clock, fresh
        assert [f.timestamp for f in frames] == sorted(f.timestamp for f in frames)
        assert max_gap(frames, start + 0.5, end) < MAX_GAP_S
        assert source.report()["state"] == "connected"
    assert not (batches[0][-1].image == batches[1][-1].image).all()  # two different cameras
    persons = detector.detect([frames[-1] for frames in batches])
    assert [len(p) > 0 for p in persons] == [True, True], [len(p) for p in persons]


def test_unread_frames_are_dropped_and_the_next_read_is_the_newest(rtsp_servers, closing):
    server = rtsp_servers({"cam1": "tud"})
    source = open_stream(closing, server.url("cam1"), "cam1", StreamOptions(queue_size=2))
    wait_connected(source)
    before = source.report()
    time.sleep(1.5)  # nobody reads: the queue must stay at 2 and the rest be counted as dropped
    after = source.report()
    frame = source.read(timeout=1.0)

    read = after["frames_read"] - before["frames_read"]
    assert read >= 10 and after["queued"] <= 2
    assert after["frames_dropped"] - before["frames_dropped"] >= read - 2
    assert frame is not None and time.time() - frame.captured_at < 0.5
    assert frame.index >= after["frames_read"] - 2


def test_camera_killed_mid_run_reconnects_after_restart_while_other_never_stops(rtsp_servers, detector, closing):
    flaky_server = rtsp_servers({"cam1": "tud"})
    steady_server = rtsp_servers({"cam2": "pets"})
    flaky = open_stream(closing, flaky_server.url("cam1"), "cam1")
    steady = open_stream(closing, steady_server.url("cam2"), "cam2")
    wait_connected(flaky, steady)
    steady_frames = Collector(steady)
    flaky_frames = Collector(flaky)
    test_start = time.time()

    time.sleep(0.5)
    flaky_server.kill()
    killed_at = time.time()
    assert flaky.wait_for_state(StreamState.RECONNECTING, timeout=FAST.read_timeout_s + 2.0), flaky.report()
    time.sleep(2.0)  # the camera stays away for a while
    assert not flaky_frames.since(killed_at + 0.2)
    flaky_server.start()  # same port, same URL
    restarted_at = time.time()
    assert flaky.wait_for_state(StreamState.CONNECTED, timeout=CONNECT_TIMEOUT_S), flaky.report()
    time.sleep(1.0)
    test_end = time.time()

    after_restart = flaky_frames.since(restarted_at)
    assert len(after_restart) >= 5
    assert len(detector.detect([after_restart[-1]])[0]) > 0  # real frames of the restarted camera
    report = flaky.report()
    assert report["reconnects"] == 1 and report["connect_attempts"] >= 2, report
    warnings = " | ".join(report["warnings"])
    assert "stream lost" in warnings and "reconnected" in warnings, warnings

    steady_all = steady_frames.stop()
    flaky_frames.stop()
    assert max_gap(steady_all, test_start, test_end) < MAX_GAP_S  # never stalled by its neighbour
    assert steady.report()["connect_attempts"] == 1 and steady.state == StreamState.CONNECTED


def test_url_that_never_answers_goes_gone_and_never_holds_up_the_other_stream(rtsp_servers, closing):
    server = rtsp_servers({"cam2": "pets"})
    with socket.socket() as silent:  # accepts TCP connections (kernel backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        options = StreamOptions(open_timeout_s=6.0, read_timeout_s=1.0, backoff_initial_s=0.2, backoff_max_s=0.5,
                                gone_after_s=2.5, close_wait_s=1.0)
        start = time.time()
        dead = StreamSource(f"rtsp://127.0.0.1:{silent.getsockname()[1]}/never", "never", options)
        try:
            time.sleep(0.3)  # the dead camera is now inside its 6 s open
            steady = open_stream(closing, server.url("cam2"), "cam2")
            wait_connected(steady)
            steady_connect_s = time.time() - start - 0.3  # OpenCV's global open lock would make this > 5.7 s
            steady_frames = Collector(steady)
            assert dead.wait_for_state(StreamState.GONE, timeout=10.0), dead.report()
            gone_after = time.time() - start
            time.sleep(0.5)
            assert dead.read(timeout=0.1) is None
            report = dead.report()
        finally:
            closing_started = time.monotonic()
            dead.close()
            close_s = time.monotonic() - closing_started
    end = time.time()

    assert steady_connect_s < 5.0, steady_connect_s
    assert gone_after >= options.gone_after_s
    assert report["frames_read"] == 0 and report["connect_attempts"] >= 2 and "no answer" in report["last_error"]
    assert any("gone" in w for w in report["warnings"])
    assert close_s < options.close_wait_s + 0.5
    assert dead.state == StreamState.CLOSED
    assert max_gap(steady_frames.stop(), start + steady_connect_s + 1.0, end) < MAX_GAP_S


def test_stalled_camera_is_detected_and_close_returns_promptly(rtsp_servers, closing):
    server = rtsp_servers({"cam1": "tud"})
    source = open_stream(closing, server.url("cam1"), "cam1")
    wait_connected(source)
    server.signal(signal.SIGSTOP)  # the process freezes: TCP stays up, no data, no answers
    stalled_at = time.monotonic()
    assert source.wait_for_state(StreamState.RECONNECTING, timeout=FAST.read_timeout_s + 3.0), source.report()
    assert time.monotonic() - stalled_at >= FAST.read_timeout_s - 0.5  # noticed by the read timeout
    assert "stalled" in source.report()["last_error"]
    time.sleep(0.3)  # now the reader is blocked opening a frozen server
    started = time.monotonic()
    source.close()
    assert time.monotonic() - started < FAST.close_wait_s + 0.5
    assert source.state == StreamState.CLOSED


def test_credentials_never_appear_in_logs_reports_or_native_output(rtsp_servers, closing, caplog, capfd):
    caplog.set_level(logging.DEBUG, logger="pipeline.sources.streams")
    server = rtsp_servers({"cam1": "tud"}, credentials="viewer:S3cretPw")
    good = open_stream(closing, server.url("cam1", "viewer:S3cretPw"), "good")
    bad = open_stream(closing, server.url("cam1", "intruder:WrongPw9"), "bad")
    wait_connected(good)
    assert good.read(timeout=1.0) is not None  # basic auth passed through from the URL
    server.kill()
    assert good.wait_for_state(StreamState.RECONNECTING, timeout=FAST.read_timeout_s + 2.0)
    time.sleep(0.5)
    assert bad.report()["frames_read"] == 0 and bad.state in (StreamState.CONNECTING, StreamState.GONE)

    shown = [caplog.text, repr(good), repr(bad), json.dumps([good.report(), bad.report()])]
    good.close()
    bad.close()
    shown += list(capfd.readouterr())  # OpenCV's and ffmpeg's own messages on the real stdout/stderr
    text = "\n".join(shown)
    assert "rtsp://***@127.0.0.1" in text
    for secret in ("S3cretPw", "WrongPw9", "viewer", "intruder"):
        assert secret not in text


def test_give_up_ends_iteration_with_an_error_naming_the_redacted_url():
    with socket.socket() as probe:  # a port that was free a moment ago: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = StreamOptions(open_timeout_s=1.0, backoff_initial_s=0.1, backoff_max_s=0.3, give_up_after_s=1.5)
    source = StreamSource(f"rtsp://admin:hunter22@127.0.0.1:{port}/cam", options=options)
    started = time.monotonic()
    try:
        with pytest.raises(SourceError, match=rf"rtsp://\*\*\*@127.0.0.1:{port}/cam: cannot open") as caught:
            for _ in source:
                pass
    finally:
        source.close()
    assert 1.5 <= time.monotonic() - started < 5.0
    assert "hunter22" not in str(caught.value) and source.camera_id == "cam"
    assert source.report()["state"] == "closed" and any("gave up" in w for w in source.warnings)


def test_redact_url_removes_userinfo_and_secret_query_values():
    assert redact_url("rtsp://admin:p%40ss@10.0.0.7:554/Streaming/101") == "rtsp://***@10.0.0.7:554/Streaming/101"
    assert redact_url("rtmp://user@host/live") == "rtmp://***@host/live"
    assert redact_url("https://cam.example/video?token=abc&res=hd&api_key=k1") == \
        "https://cam.example/video?token=***&res=hd&api_key=***"
    assert redact_url("rtsp://10.0.0.7/stream1") == "rtsp://10.0.0.7/stream1"


def test_backoff_doubles_up_to_the_cap():
    options = StreamOptions(backoff_initial_s=0.5, backoff_factor=2.0, backoff_max_s=5.0, backoff_jitter=0.0)
    assert [options.backoff_delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    jittered = StreamOptions(backoff_initial_s=1.0, backoff_max_s=1.0, backoff_jitter=0.1)
    assert all(0.9 <= jittered.backoff_delay(9) <= 1.1 for _ in range(50))


def test_non_stream_specs_and_bad_options_are_rejected():
    with pytest.raises(SourceError, match=r"file:///tmp/x.mp4: not a stream URL"):
        StreamSource("file:///tmp/x.mp4")
    with pytest.raises(ValueError, match="queue_size must be >= 1"):
        StreamOptions(queue_size=0)
