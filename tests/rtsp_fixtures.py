"""Pytest fixtures for a real RTSP server on loopback (GStreamer's gst-rtsp-server, see rtsp_server.py).

Clips are cut from the real MOT15 videos with ffmpeg into H.264 elementary streams (short, 320 px wide,
15 fps) in a temporary folder; each test gets its own server processes, stopped by process id.
Import the fixtures into a test module: ``from rtsp_fixtures import rtsp_clips, rtsp_servers  # noqa: F401``.
Tests skip, with the reason, when ffmpeg, the system python's GStreamer bindings or the data are absent;
``.ci/install_system_deps.sh`` installs them on CI.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from configs import data_root

SYSTEM_PYTHON = os.environ.get("MTMC_GST_PYTHON", "/usr/bin/python3")  # needs python3-gi; venvs lack it
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
CLIP_FPS = 15
CLIP_SECONDS = 12
READY_TIMEOUT_S = 10.0
CLIP_SOURCES = {  # mount name -> real video under the data root
    "tud": Path("mot15/TUD-Stadtmitte/TUD-Stadtmitte.mp4"),
    "pets": Path("mot15/PETS09-S2L1/PETS09-S2L1.avi"),
}
GST_CHECK = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "needed = ('multifilesrc', 'h264parse', 'rtph264pay'); "
             "missing = [e for e in needed if not Gst.ElementFactory.find(e)]; "
             "print(' '.join(missing))")


def missing_tools() -> str:
    """Why the RTSP tests cannot run here, or '' when everything they need is present."""
    if shutil.which("ffmpeg") is None:
        return "ffmpeg not installed (run .ci/install_system_deps.sh)"
    if not Path(SYSTEM_PYTHON).is_file():
        return f"{SYSTEM_PYTHON} not found (set MTMC_GST_PYTHON to a python with python3-gi)"
    check = subprocess.run([SYSTEM_PYTHON, "-c", GST_CHECK], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or ["?"])[-1]
        return f"{SYSTEM_PYTHON} cannot load gst-rtsp-server ({last}); run .ci/install_system_deps.sh"
    if check.stdout.strip():
        missing = check.stdout.strip()
        return f"GStreamer elements missing: {missing} (plugins-good/-bad; .ci/install_system_deps.sh)"
    return ""


def make_h264_clip(video: Path, out: Path, seconds: int = CLIP_SECONDS, fps: int = CLIP_FPS) -> Path:
    """A looped-if-short, 320 px wide, constant-rate H.264 elementary stream of ``video``."""
    command = ["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(video), "-t", str(seconds),
               "-vf", f"scale=320:-2,fps={fps}", "-an", "-c:v", "libx264", "-preset", "ultrafast",
               "-tune", "zerolatency", "-bf", "0", "-g", str(fps), "-pix_fmt", "yuv420p", "-f", "h264", str(out)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return out


@dataclass
class RtspServer:
    """One gst-rtsp-server process serving ``mounts`` (name -> .h264 file) on a loopback port."""

    mounts: dict[str, Path]
    log_dir: Path
    credentials: str = ""
    port: int = 0
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> "RtspServer":
        """Start (again, on the same port once one was chosen) and wait until it listens."""
        command = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), "--fps", str(CLIP_FPS)]
        command += [arg for name, path in self.mounts.items() for arg in ("--mount", f"{name}={path}")]
        command += ["--credentials", self.credentials] if self.credentials else []
        stderr = open(self.log_dir / f"rtsp_server_{os.getpid()}_{time.monotonic_ns()}.log", "wb")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
        stderr.close()
        self.port = self._wait_ready()
        return self

    def _wait_ready(self) -> int:
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if selector.select(READY_TIMEOUT_S):
                line = self.process.stdout.readline().split()
                if line[:1] == ["READY"]:
                    return int(line[1])
        self.kill()
        raise RuntimeError(f"RTSP server not ready within {READY_TIMEOUT_S} s (logs in {self.log_dir})")

    def url(self, mount: str, credentials: str | None = None) -> str:
        userinfo = f"{credentials}@" if credentials else ""
        return f"rtsp://{userinfo}127.0.0.1:{self.port}/{mount}"

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL by process id: the harshest way a camera can vanish."""
        if self.process is None:
            return
        self.signal(signal.SIGCONT)  # a stopped process must run to die promptly
        self.signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process.stdout.close()
        self.process = None


@pytest.fixture(scope="session")
def rtsp_clips(tmp_path_factory) -> dict[str, Path]:
    """H.264 clips made once per session from the real videos: {"tud": ..., "pets": ...}."""
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    videos = {name: data_root() / rel for name, rel in CLIP_SOURCES.items()}
    absent = [str(v) for v in videos.values() if not v.is_file()]
    if absent:
        pytest.skip(f"real videos absent: {', '.join(absent)} (set MTMC_DATA)")
    folder = tmp_path_factory.mktemp("rtsp_clips")
    return {name: make_h264_clip(video, folder / f"{name}.h264") for name, video in videos.items()}


@pytest.fixture
def rtsp_servers(rtsp_clips, tmp_path):
    """Factory: ``rtsp_servers({"cam1": "tud"}, credentials="u:p")`` -> a started RtspServer.

    Every server started through it is killed by process id at teardown, even when the test fails.
    """
    started: list[RtspServer] = []

    def start(mounts: dict[str, str], credentials: str = "") -> RtspServer:
        server = RtspServer({m: rtsp_clips[clip] for m, clip in mounts.items()}, tmp_path, credentials)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.kill()
