"""A tiny real RTSP server for tests: GStreamer's gst-rtsp-server serving H.264 files, looping forever.

Run it with the SYSTEM python (Debian's python3-gi; a venv python usually cannot import gi):

    /usr/bin/python3 tests/rtsp_server.py --port 0 --mount cam1=/tmp/a.h264 --mount cam2=/tmp/b.h264

Each file must be an Annex-B H.264 elementary stream without B-frames
(``ffmpeg ... -c:v libx264 -bf 0 -f h264 out.h264``): unlike mp4, it can be looped by ``multifilesrc``
without a seek, so a mount streams for as long as the server runs.
``--fps`` must be the rate the files were encoded at; the raw stream carries no timestamps of its own.
When the server listens it prints ``READY <port>`` on stdout (``--port 0`` picks a free port). It runs
until it is killed; tests stop it by process id.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

USER_ROLE = "user"


def parse_mount(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--mount {text!r}: expected NAME=FILE.h264")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"--mount {text!r}: file {path} not found")
    return name.strip("/"), Path(path)


def launch_line(path: Path, fps: int) -> str:
    caps = f"video/x-h264,stream-format=byte-stream,framerate={fps}/1"
    return (f'( multifilesrc location="{path}" loop=true caps="{caps}" ! h264parse name=parse '
            f"! rtph264pay name=pay0 pt=96 config-interval=1 )")


def copy_dts_to_pts(pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
    buffer = info.get_buffer()
    if buffer.pts == Gst.CLOCK_TIME_NONE:
        buffer.pts = buffer.dts
    return Gst.PadProbeReturn.OK


def stamp_presentation_times(factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
    """On a raw stream h264parse sets only decode times; without presentation times every RTP packet gets
    the same RTP timestamp and clients (ffmpeg) probe for seconds before they play. With no B-frames in
    the files, presentation time = decode time."""
    parser = media.get_element().get_by_name("parse")
    parser.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, copy_dts_to_pts)


def make_factory(path: Path, fps: int, protected: bool) -> GstRtspServer.RTSPMediaFactory:
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(path, fps))
    factory.connect("media-configure", stamp_presentation_times)
    factory.set_shared(True)  # one looping pipeline per mount, whoever connects
    if protected:
        factory.add_role_from_structure(Gst.Structure.from_string(
            f"{USER_ROLE}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true")[0])
    return factory


def make_auth(credentials: str) -> GstRtspServer.RTSPAuth:
    user, sep, password = credentials.partition(":")
    if not sep or not user:
        raise SystemExit(f"--credentials: expected USER:PASSWORD, got {credentials!r}")
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, USER_ROLE)
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    return auth


def build_server(args: argparse.Namespace) -> GstRtspServer.RTSPServer:
    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    if args.credentials:
        server.set_auth(make_auth(args.credentials))
    mounts = server.get_mount_points()
    for name, path in args.mount:
        mounts.add_factory(f"/{name}", make_factory(path, args.fps, protected=bool(args.credentials)))
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (printed when ready)")
    parser.add_argument("--mount", type=parse_mount, action="append", required=True, help="NAME=FILE.h264")
    parser.add_argument("--fps", type=int, default=15, help="frame rate the files were encoded at")
    parser.add_argument("--credentials", default="", help="USER:PASSWORD to require basic auth")
    args = parser.parse_args(argv)

    Gst.init(None)
    server = build_server(args)
    if server.attach(None) == 0:
        print(f"cannot listen on {args.address}:{args.port}", file=sys.stderr, flush=True)
        return 1
    print(f"READY {server.get_bound_port()}", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
