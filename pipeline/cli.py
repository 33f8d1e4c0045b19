"""Command line of run_pipeline.py: flags are named like the config keys (``--detector.conf 0.4``).

Stream URLs (rtsp://, rtmp://, http(s)://) or ``--duration`` select live mode (pipeline/live.py): online
ids as tracklets mature, until the duration ends or SIGINT/SIGTERM (a second signal exits at once).
Exit codes (the same for every ``mtmc`` command): 0 all sources processed; 1 nothing could run (bad config,
detector or ReID weights missing or unreadable, every source failed); 2 some source failed (the others'
outputs are complete and valid; in live mode: a stream that is gone or never delivered a frame); 64 usage
error (unknown or malformed flag).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import typing
from typing import Any, Sequence

from configs import UserError
from pipeline.config import config_fields, load_pipeline_config

EXIT_OK, EXIT_FAILED, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2, 64
EXIT_CODES_HELP = ("Exit codes: 0 all sources ran; 1 nothing ran (bad config, weights or sources); 2 some source "
                   "failed (the others' outputs are complete); 64 usage error.")

# short flags for the keys used most; each maps onto one config key
SHORTCUTS = {
    "--detector": ("detector.name", str, "yolox | ultralytics | mot, or a model file (.onnx YOLOX or Ultralytics "
                   "export, .pt, .engine, .torchscript) or MOT det file / pattern with {camera}"),
    "--reid": ("reid.weights", str, "STA checkpoint (.pt) or .onnx; default: ImageNet-initialised STA MobileNetV2"),
    "--tracker": ("tracker.name", str, "per-camera tracker name (default: trackers.DEFAULT_TRACKER)"),
    "--out": ("output.out", str, "output folder"),
    "--duration": ("live.duration_s", float, "live mode: stop after SECONDS (default: run until SIGINT/SIGTERM)"),
    "--backend": ("backend", str, "local (one process, default) | ray (cameras spread over a Ray cluster: "
                  "pip install 'mtmc[ray]')"),
    "--ray.address": ("ray.address", str, "ray backend: empty = start a local Ray runtime; auto or HOST:PORT = "
                      "join that cluster"),
    "--store": ("store.path", str, "identity store (SQLite) to resume from and write to; default: "
                "<out>/identities.sqlite for live runs, none for file runs; 'none': off"),
}


def camera_homography(text: str) -> dict[str, str]:
    camera, sep, path = text.partition("=")
    if not sep or not camera or not path:
        raise argparse.ArgumentTypeError(f"expected CAMERA=FILE, got {text!r}")
    return {"id": camera, "homography": path}


def parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return lowered in ("1", "true", "yes", "on")


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors exit with EXIT_USAGE, so that a script can tell them from a partial failure."""

    def error(self, message: str) -> typing.NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        allow_abbrev=False,
        description="Multi-camera person tracking: one global id per person across cameras.",
        epilog="Every config key is also a flag: --section.key VALUE (e.g. --detector.conf 0.4, "
               "--association.threshold 0.3). " + EXIT_CODES_HELP,
    )
    parser.add_argument("--sources", nargs="+", required=True, metavar="SRC",
                        help="stream URLs (rtsp/rtmp/http), video files, image folders or webcam indices, "
                             "one per camera")
    parser.add_argument("--config", default=None, help="YAML config (e.g. configs/pipeline.yaml)")
    parser.add_argument("--camera-ids", nargs="+", dest="camera_ids", default=None, help="one name per source")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda:N")
    parser.add_argument("--save-video", dest="output.save_video", action="store_const", const=True, default=None,
                        help="write an annotated video per camera")
    parser.add_argument("--mode", choices=["online", "offline"], default=None,
                        help="offline adds a final global association pass (association.refine)")
    parser.add_argument("--homography", nargs="+", dest="cameras", type=camera_homography, default=None,
                        metavar="CAMERA=FILE", help="calibrate cameras: image -> ground-plane 3x3 homography file "
                        "per camera id (= the config's cameras: section)")
    for flag, (key, kind, text) in SHORTCUTS.items():
        parser.add_argument(flag, dest=key, type=kind, default=None, help=f"{text} (= --{key})")
    for key, hint in config_fields().items():
        _add_key_flag(parser, key, hint)
    return parser


def _add_key_flag(parser: argparse.ArgumentParser, key: str, hint: Any) -> None:
    if f"--{key}" in parser._option_string_actions or key in ("camera_ids", "device"):
        return
    origin = typing.get_origin(hint)
    if hint in (int, float, str):
        parser.add_argument(f"--{key}", dest=key, type=hint, default=None, help=argparse.SUPPRESS)
    elif hint is bool:
        parser.add_argument(f"--{key}", dest=key, type=parse_bool, default=None, help=argparse.SUPPRESS)
    elif origin is list and typing.get_args(hint) == (str,):
        parser.add_argument(f"--{key}", dest=key, nargs="+", default=None, help=argparse.SUPPRESS)
    elif origin is dict:
        parser.add_argument(f"--{key}", dest=key, type=json.loads, default=None, help=argparse.SUPPRESS)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    values = {k: v for k, v in vars(args).items() if k not in ("sources", "config", "mode") and v is not None}
    if args.mode is not None:
        values["association.refine"] = args.mode == "offline"
    return values


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pipeline.live import LivePipeline, is_live_run
    from pipeline.runner import MultiCameraPipeline

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_pipeline_config(args.config, overrides_from_args(args))
        pipeline_class = LivePipeline if is_live_run(args.sources, config) else MultiCameraPipeline
        if config.backend == "ray":
            from pipeline.ray_backend import RayPipeline

            pipeline_class = RayPipeline
        summary = pipeline_class(config).run(args.sources)
    except (UserError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED
    return report(summary, config.output.out)


def report(summary: dict[str, Any], out_dir: str) -> int:
    for source in summary["sources"]:
        if source["status"] != "ok":
            print(f"error: camera {source['camera']} ({source['source']}): {source['error']}", file=sys.stderr)
        for warning in source["warnings"]:
            print(f"warning: camera {source['camera']}: {warning}", file=sys.stderr)
    stages = ", ".join(f"{k} {v:.1f}" for k, v in summary["stage_ms_per_frame"].items())
    print(f"{summary['frames']} frames, {summary['tracks']} tracks, {summary['identities']} identities; "
          f"mode: {summary['mode']}; {summary['throughput_fps']} frames/s; ms/frame: {stages}")
    if "live" in summary:
        live, latency = summary["live"], summary["live"]["latency"]["capture_to_event"]
        print(f"live: stopped by {live['stopped_by']} after {live['ran_s']} s; capture->event latency median "
              f"{latency['median_s']} s, p95 {latency['p95_s']} s; dropped frames {live['dropped_share']}")
    print(f"outputs in {out_dir}")
    failed = len(summary["failed_sources"])
    if failed == len(summary["sources"]):
        return EXIT_FAILED
    return EXIT_PARTIAL if failed else EXIT_OK
