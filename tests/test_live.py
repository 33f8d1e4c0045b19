"""Live mode end to end: run_pipeline.py (a real subprocess) on real RTSP streams from gst-rtsp-server.

Real MOT15 footage, the real YOLOX-Nano detector and the real STA embedder; cameras are killed and
restarted by process id, replaced by a socket that never answers, and the run is stopped by SIGINT.
Outputs are read while the run goes on and checked for completeness when it ends.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from configs import data_root
from pipeline.motio import read_mot_rows
from rtsp_fixtures import rtsp_clips, rtsp_servers  # noqa: F401  (pytest fixtures)

ROOT = Path(__file__).resolve().parents[1]
YOLOX = data_root() / "models" / "yolox_nano.onnx"
FAST_RECOVERY = ["--live.backoff_max_s", "1.0", "--live.read_timeout_s", "2.0", "--live.open_timeout_s", "3.0"]
START_TIMEOUT_S = 25.0  # model loading + first RTSP connect on a loaded 2-core box
MAX_FRAME_GAP = 30  # 2 s of a 15 fps stream: a camera whose processing stalled that long was held up

pytestmark = pytest.mark.skipif(not YOLOX.is_file(), reason=f"YOLOX-Nano weights absent: {YOLOX} (set MTMC_DATA)")


class LiveRun:
    """``run_pipeline.py`` in live mode as a subprocess whose outputs can be read while it runs."""

    def __init__(self, tmp_path: Path, sources: list[str], *extra: str):
        self.out = tmp_path / "out"
        self.log = tmp_path / "run.log"
        command = [sys.executable, str(ROOT / "run_pipeline.py"), "--config", str(ROOT / "configs/rtsp.yaml"),
                   "--sources", *sources, "--out", str(self.out), "--progress", "false", *FAST_RECOVERY, *extra]
        env = {**os.environ, "YOLO_OFFLINE": "1"}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def events(self) -> list[dict]:
        """The complete lines of events.jsonl so far (a line being written is left for the next read)."""
        path = self.out / "events.jsonl"
        text = path.read_text() if path.is_file() else ""
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def wait_for(self, predicate, timeout: float, what: str) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            events = self.events()
            if predicate(events):
                return events
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"{what} not seen within {timeout} s (exit {self.process.returncode}); log:\n{self.text()}")

    def finish(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"run did not end within {timeout} s; log:\n{self.text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def live_runs():
    runs: list[LiveRun] = []

    def start(*args, **kwargs) -> LiveRun:
        runs.append(LiveRun(*args, **kwargs))
        return runs[-1]

    yield start
    for run in runs:  # a failed test must not leave a pipeline running
        run.stop()


def assigned(events: list[dict], camera: str) -> list[dict]:
    return [e for e in events if e["event"] == "identity_assigned" and e["camera"] == camera]


def stream_states(events: list[dict], camera: str) -> list[dict]:
    return [e for e in events if e["event"] == "stream_state" and e["camera"] == camera]


def check_complete_outputs(out: Path, cameras: list[str]) -> tuple[dict, list[dict], dict[str, np.ndarray]]:
    """Every output parses, and every finished tracklet's boxes are in its camera's MOT file with its id."""
    summary = json.loads((out / "summary.json").read_text())
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    mot = {camera: read_mot_rows(out / f"{camera}.txt", min_columns=7) for camera in cameras}
    ids = {e["uid"]: e["global_id"] for e in events if e["event"] == "identity_assigned"}
    for camera in cameras:
        finished = [e for e in events if e["event"] == "tracklet_finished" and e["camera"] == camera]
        assert len(mot[camera]) == sum(e["boxes"] for e in finished), camera
        assert set(mot[camera][:, 1].astype(int)) == {ids[e["uid"]] for e in finished}, camera
    mtmc = np.loadtxt(out / "mtmc.txt", ndmin=2)
    assert len(mtmc) == sum(len(rows) for rows in mot.values())
    assert summary["mode"] == "online" and summary["refine_changes"] == 0
    return summary, events, mot


def max_frame_gap(rows: np.ndarray) -> int:
    frames = np.unique(rows[:, 0].astype(int))
    return int(np.diff(frames).max()) if len(frames) > 1 else 0


def source(summary: dict, camera: str) -> dict:
    return next(s for s in summary["sources"] if s["camera"] == camera)


def test_two_streams_with_credentials_give_ids_while_running_and_never_show_the_password(rtsp_servers, live_runs,
                                                                                         tmp_path):
    server = rtsp_servers({"cam1": "tud", "cam2": "pets"}, credentials="viewer:S3cretPw")
    run = live_runs(tmp_path, [server.url("cam1", "viewer:S3cretPw"), server.url("cam2", "viewer:S3cretPw")],
                    "--duration", "10")
    during = run.wait_for(lambda ev: assigned(ev, "cam1") and assigned(ev, "cam2"), START_TIMEOUT_S,
                          "identities on both cameras")
    assert run.process.poll() is None  # the ids came while the run was still going
    assert run.finish(30) == 0, run.text()

    summary, events, mot = check_complete_outputs(run.out, ["cam1", "cam2"])
    assert events[:len(during)] == during  # appended, never rewritten
    assert any(e["reason"] == "mature" for e in events if e["event"] == "tracklet_finished")
    live = summary["live"]
    assert live["stopped_by"] == "duration" and 9.5 <= live["ran_s"] < 13
    for name in ("capture_to_tracked", "capture_to_event"):
        latency = live["latency"][name]
        assert latency["n"] > 0 and 0 < latency["median_s"] <= latency["p95_s"] <= latency["max_s"], latency
    assert 0 <= live["dropped_share"] < 1
    assert [s["state"] for s in summary["streams"]] == ["connected", "connected"]
    assert all(len(rows) > 20 for rows in mot.values())

    shown = [run.log.read_text(errors="replace")] + [p.read_bytes().decode(errors="replace") for p in run.out.rglob("*") if p.is_file()]
    assert "rtsp://***@127.0.0.1" in (run.out / "summary.json").read_text()
    for text in shown:
        assert "S3cretPw" not in text and "viewer" not in text


def test_camera_killed_mid_run_resumes_after_restart_while_the_other_never_stops(rtsp_servers, live_runs,
                                                                                 tmp_path):
    flaky, steady = rtsp_servers({"cam1": "tud"}), rtsp_servers({"cam2": "pets"})
    run = live_runs(tmp_path, [flaky.url("cam1"), steady.url("cam2")], "--duration", "20")
    run.wait_for(lambda ev: assigned(ev, "cam1"), START_TIMEOUT_S, "an identity on cam1")
    flaky.kill()
    run.wait_for(lambda ev: stream_states(ev, "cam1")[-1]["state"] == "reconnecting", 6.0, "cam1 reconnecting")
    time.sleep(2.0)
    flaky.start()  # same port
    assert run.finish(35) == 0, run.text()

    summary, events, mot = check_complete_outputs(run.out, ["cam1", "cam2"])
    cam1_states = stream_states(events, "cam1")
    assert [e["state"] for e in cam1_states] == ["connected", "reconnecting", "connected"], cam1_states
    lost_at = cam1_states[1]["frames_read"]  # frame count of the reader when the stream was lost
    after_restart = mot["cam1"][mot["cam1"][:, 0] > lost_at + 1]
    assert len(after_restart) > 10, "no cam1 frame after the restart was tracked"
    assert any(e["first_frame"] > lost_at + 1 for e in events if e["event"] == "tracklet_finished"
               and e["camera"] == "cam1")
    assert [e["state"] for e in stream_states(events, "cam2")] == ["connected"]
    assert max_frame_gap(mot["cam2"]) <= MAX_FRAME_GAP, "cam2 processing stalled while cam1 was down"
    assert source(summary, "cam1")["status"] == "ok"
    assert summary["streams"][0]["reconnects"] == 1 and summary["streams"][1]["reconnects"] == 0


def test_url_that_never_answers_is_reported_gone_and_the_other_camera_is_complete(rtsp_servers, live_runs,
                                                                                 tmp_path):
    steady = rtsp_servers({"cam2": "pets"})
    with socket.socket() as silent:  # accepts TCP connections (kernel backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        never = f"rtsp://127.0.0.1:{silent.getsockname()[1]}/never"
        run = live_runs(tmp_path, [never, steady.url("cam2")], "--duration", "8", "--live.gone_after_s", "3")
        code = run.finish(35)
    assert code == 2, run.text()  # some source failed, the others are complete

    summary, events, mot = check_complete_outputs(run.out, ["never", "cam2"])
    assert summary["failed_sources"] == ["never"]
    assert source(summary, "never")["state"] == "gone" and "gone" in source(summary, "never")["error"]
    assert source(summary, "cam2")["status"] == "ok" and source(summary, "cam2")["frames"] > 30
    assert [e["state"] for e in stream_states(events, "never")] == ["gone"]
    assert len(mot["never"]) == 0 and len(mot["cam2"]) > 20 and assigned(events, "cam2")
    assert max_frame_gap(mot["cam2"]) <= MAX_FRAME_GAP
    assert "camera never" in run.text() and "gone" in run.text()


def test_sigint_mid_run_finishes_outputs_and_summary(rtsp_servers, live_runs, tmp_path):
    server = rtsp_servers({"cam1": "tud", "cam2": "pets"})
    run = live_runs(tmp_path, [server.url("cam1"), server.url("cam2")])  # no duration: runs until stopped
    run.wait_for(lambda ev: len([e for e in ev if e["event"] == "identity_assigned"]) >= 3, START_TIMEOUT_S,
                 "three identities")
    run.process.send_signal(signal.SIGINT)
    assert run.finish(20) == 0, run.text()

    summary, events, mot = check_complete_outputs(run.out, ["cam1", "cam2"])
    assert summary["live"]["stopped_by"] == "SIGINT" and summary["live"]["duration_s"] is None
    assert any(e["event"] == "live_stopping" and e["reason"] == "SIGINT" for e in events)
    assert all(len(rows) > 0 for rows in mot.values())
    assert summary["frames"] == sum(s["frames"] for s in summary["sources"]) > 0


def test_server_killed_and_pipeline_restarted_on_its_store_gives_people_in_view_their_old_ids(rtsp_servers,
                                                                                              live_runs, tmp_path):
    server = rtsp_servers({"cam1": "tud"})
    store, runs = tmp_path / "identities.sqlite", []
    for name in ("before", "after"):  # the clip starts again with the server: the same people come into view
        (tmp_path / name).mkdir()
        run = live_runs(tmp_path / name, [server.url("cam1")], "--store", str(store))
        run.wait_for(lambda ev: len(assigned(ev, "cam1")) >= 6, START_TIMEOUT_S + 15, "six assigned tracklets")
        server.kill()
        run.process.send_signal(signal.SIGINT)
        assert run.finish(30) in (0, 2), run.text()
        runs.append(assigned(run.events(), "cam1"))
        server.start()  # same port
    before_ids = {e["global_id"] for e in runs[0]}
    kept = [e for e in runs[1] if e["global_id"] in before_ids]
    assert any(e["how"] == "matched" for e in kept), runs[1]
    assert len(kept) >= len(runs[1]) / 2, (before_ids, runs[1])  # most tracklets after the restart
    assert all(e["global_id"] > max(before_ids) for e in runs[1] if e["global_id"] not in before_ids)


def test_first_signal_asks_to_stop_and_a_second_exits_at_once():
    script = ("import os, signal, sys, time\n"
              "from pipeline.live import StopSignals\n"
              "with StopSignals() as stop:\n"
              "    os.kill(os.getpid(), signal.SIGTERM)\n"
              "    time.sleep(0.1)\n"
              "    print('requested', stop.requested, flush=True)\n"
              "    os.kill(os.getpid(), signal.SIGINT)\n"
              "    time.sleep(5)\n"
              "print('not reached', flush=True)\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.stdout.splitlines() == ["requested SIGTERM"], done.stdout + done.stderr
    assert done.returncode == 128 + signal.SIGINT and "SIGINT again: exiting at once" in done.stderr
    assert time.monotonic() - started < 4.5  # did not sit out the sleep
