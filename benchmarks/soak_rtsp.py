"""Soak test of live mode: run_pipeline.py on looped real RTSP streams for minutes, watching memory and delay.

    python benchmarks/soak_rtsp.py                      # 10 minutes, 2 cameras (TUD-Stadtmitte, PETS09-S2L1)
    python benchmarks/soak_rtsp.py --minutes 2 --warmup-minutes 0.5

A gst-rtsp-server (tests/rtsp_server.py, system python with python3-gi) loops 15 fps clips of the real
MOT15 videos on loopback; the pipeline runs as a subprocess with ``--duration``. Its RSS is sampled from
/proc; growth is measured over the live loop only (from its ``live_started`` event plus the warm-up to its
``live_stopping`` event): model loading before and the final flush after are not steady state. Latency (capture -> events written, capture -> tracked) and the dropped-frame share come from
the run's summary.json. Goals: RSS growth < 50 MB after warm-up, capture->event p95 < 2 s.
Writes ``<out>/soak.json`` (figures + RSS samples) next to the pipeline outputs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from configs import data_root

ROOT = Path(__file__).resolve().parents[1]


def _test_fixtures():
    """The test suite's real RTSP server (tests/rtsp_fixtures.py): not part of the installed package."""
    spec = importlib.util.spec_from_file_location("rtsp_fixtures", ROOT / "tests" / "rtsp_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there while it executes
    spec.loader.exec_module(module)
    return module


_fixtures = _test_fixtures()
CLIP_SOURCES, RtspServer, make_h264_clip, missing_tools = (
    _fixtures.CLIP_SOURCES, _fixtures.RtspServer, _fixtures.make_h264_clip, _fixtures.missing_tools)

MEMORY_GOAL_MB = 50.0
LATENCY_GOAL_S = 2.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="live run length (default 10)")
    parser.add_argument("--warmup-minutes", type=float, default=1.0, help="RSS growth is measured after this")
    parser.add_argument("--sample-s", type=float, default=5.0, help="RSS sampling period")
    parser.add_argument("--clips", nargs="+", default=["tud", "pets"], choices=sorted(CLIP_SOURCES),
                        help="one camera per clip, each on its own mount")
    parser.add_argument("--config", default=str(ROOT / "configs" / "rtsp.yaml"))
    parser.add_argument("--out", default=str(ROOT / "runs" / "soak_rtsp"))
    args = parser.parse_args(argv)
    if args.minutes <= 0 or not 0 <= args.warmup_minutes < args.minutes:
        parser.error("--minutes must be > 0 and --warmup-minutes in [0, --minutes)")
    return args


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process in MB, None once it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def start_server(clips: list[str], folder: Path) -> tuple[RtspServer, list[str]]:
    videos = {name: data_root() / CLIP_SOURCES[name] for name in clips}
    absent = [str(v) for v in videos.values() if not v.is_file()]
    if absent:
        raise SystemExit(f"error: real videos absent: {', '.join(absent)} (set MTMC_DATA)")
    mounts = {f"cam{i}": make_h264_clip(video, folder / f"{name}.h264")
              for i, (name, video) in enumerate(videos.items(), start=1)}
    server = RtspServer(mounts, folder).start()
    return server, [server.url(mount) for mount in mounts]


def run_pipeline(urls: list[str], args: argparse.Namespace) -> tuple[int, list[tuple[float, float]]]:
    """Run the live pipeline for ``--minutes``, sampling its RSS; returns (exit code, [(wall time, MB)])."""
    seconds = args.minutes * 60.0
    command = [sys.executable, str(ROOT / "run_pipeline.py"), "--config", args.config, "--sources", *urls,
               "--duration", str(seconds), "--out", args.out, "--progress", "false"]
    log = open(Path(args.out) / "soak_run.log", "wb")
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "YOLO_OFFLINE": "1"})
    log.close()
    samples: list[tuple[float, float]] = []
    started = time.monotonic()
    with tqdm(total=round(seconds), desc="soak", unit="s") as bar:
        while process.poll() is None:
            memory = rss_mb(process.pid)
            elapsed = time.monotonic() - started
            if memory is not None:
                samples.append((time.time(), memory))
            bar.n = min(round(elapsed), bar.total)
            bar.set_postfix(rss_mb=f"{memory or 0:.0f}")
            time.sleep(args.sample_s)
    return process.returncode, samples


def live_loop_span(out: Path) -> tuple[float, float]:
    """Wall-clock start and end of the live loop, from the run's events."""
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    times = {e["event"]: e["time"] for e in events if e["event"] in ("live_started", "live_stopping")}
    return times["live_started"], times["live_stopping"]


def memory_figures(samples: list[tuple[float, float]], start: float, end: float) -> dict:
    """RSS growth over [start, end] wall-clock seconds; times in the result are minutes since start."""
    after = [(t - start, m) for t, m in samples if start <= t <= end]
    if len(after) < 2:
        return {"samples_after_warmup": len(after)}
    times, memory = np.array(after).T
    slope = np.polyfit(times / 60.0, memory, 1)[0]
    return {"samples_after_warmup": len(after), "rss_at_warmup_mb": round(memory[0], 1),
            "rss_end_mb": round(memory[-1], 1), "rss_max_mb": round(memory.max(), 1),
            "growth_mb": round(memory[-1] - memory[0], 1), "growth_max_mb": round(memory.max() - memory[0], 1),
            "slope_mb_per_min": round(float(slope), 2)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reason = missing_tools()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 1
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="soak_rtsp_") as folder:
        server, urls = start_server(args.clips, Path(folder))
        try:
            code, samples = run_pipeline(urls, args)
        finally:
            server.kill()
    summary_path = Path(args.out) / "summary.json"
    if not summary_path.is_file():
        print(f"error: the pipeline wrote no summary (exit {code}); see {args.out}/soak_run.log", file=sys.stderr)
        return 1
    summary = json.loads(summary_path.read_text())
    live = summary["live"]
    loop_start, loop_end = live_loop_span(Path(args.out))
    result = {
        "minutes": args.minutes, "warmup_minutes": args.warmup_minutes, "exit_code": code,
        "memory": memory_figures(samples, loop_start + args.warmup_minutes * 60.0, loop_end),
        "latency": live["latency"], "dropped_share": live["dropped_share"], "frames_read": live["frames_read"],
        "frames_processed": summary["frames"], "throughput_fps": summary["throughput_fps"],
        "tracklets": summary["tracklets"], "identities": summary["identities"],
        "stage_ms_per_frame": summary["stage_ms_per_frame"],
        "rss_samples_min_mb": [(round((t - loop_start) / 60.0, 3), round(m, 1)) for t, m in samples],
    }
    (Path(args.out) / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    report(result)
    return 0 if code == 0 else 1


def report(result: dict) -> None:
    memory, latency = result["memory"], result["latency"]["capture_to_event"]
    tracked = result["latency"]["capture_to_tracked"]
    growth = memory.get("growth_max_mb")
    print(f"{result['minutes']:g} min, exit {result['exit_code']}: {result['frames_processed']} frames processed of "
          f"{result['frames_read']} received (dropped share {result['dropped_share']}), "
          f"{result['tracklets']} tracklets, {result['identities']} identities")
    print(f"RSS after {result['warmup_minutes']:g} min warm-up: {memory.get('rss_at_warmup_mb')} MB -> end "
          f"{memory.get('rss_end_mb')} MB (max growth {growth} MB, slope {memory.get('slope_mb_per_min')} MB/min); "
          f"goal < {MEMORY_GOAL_MB:g} MB: {'met' if growth is not None and growth < MEMORY_GOAL_MB else 'MISSED'}")
    print(f"latency capture->event median {latency['median_s']} s, p95 {latency['p95_s']} s "
          f"(goal p95 < {LATENCY_GOAL_S:g} s: "
          f"{'met' if latency['p95_s'] is not None and latency['p95_s'] < LATENCY_GOAL_S else 'MISSED'}); "
          f"capture->tracked median {tracked['median_s']} s, p95 {tracked['p95_s']} s")


if __name__ == "__main__":
    sys.exit(main())
