"""Run a tracker on MOTChallenge public detections and write MOTChallenge result files.

    python tools/track_mot.py --data ../shared/data/mot15 --out runs/mot15 \
        --config configs/trackers/bytetrack_buffered_mot15.yaml

For every sequence under --data with det/det.txt (and seqinfo.ini for frame rate and length) it
writes OUT/<seq>.txt. Online (causal) unless --interpolate N fills gaps of up to N frames afterwards.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from configs import ConfigError
from pipeline.motio import (MOTFormatError, detections_by_frame, find_sequences, read_mot_rows,
                            read_seqinfo, write_mot_results)
from trackers import DEFAULT_TRACKER, available_trackers, create_tracker
from trackers.interpolation import interpolate_gaps


def load_sequence(seq_dir: Path) -> tuple[float, list[np.ndarray]]:
    """Frame rate and per-frame (N, 5) detections of one MOT sequence folder."""
    info = read_seqinfo(seq_dir)
    rows = read_mot_rows(seq_dir / "det" / "det.txt", min_columns=7)
    return info.frame_rate, detections_by_frame(rows, info.length)


def track_sequence(tracker, frames: list[np.ndarray], min_box_area: float = 0.0) -> np.ndarray:
    """Run ``tracker`` over per-frame detections; returns MOT rows ``frame, id, x, y, w, h, score``."""
    out = []
    for frame_no, dets in enumerate(frames, start=1):
        tracks = tracker.update(dets)
        if len(tracks) == 0:
            continue
        w = tracks[:, 2] - tracks[:, 0]
        h = tracks[:, 3] - tracks[:, 1]
        rows = np.column_stack([np.full(len(tracks), frame_no), tracks[:, 4], tracks[:, 0], tracks[:, 1], w, h,
                                tracks[:, 5]])
        out.append(rows[w * h > min_box_area])
    return np.concatenate(out) if out else np.zeros((0, 7))


def run(data: Path, out: Path, tracker_name: str, config: Path | None, interpolate: int,
        overrides: dict | None = None) -> dict[str, float]:
    """Track every sequence; returns frames/s of the tracker alone per sequence."""
    sequences = find_sequences(data)
    if not sequences:
        raise FileNotFoundError(f"no sequence with det/det.txt under {data}")
    speeds = {}
    for seq_dir in tqdm(sequences, desc=f"{tracker_name}", unit="seq", leave=False):
        frame_rate, frames = load_sequence(seq_dir)
        tracker = create_tracker(tracker_name, config=config, frame_rate=frame_rate, **(overrides or {}))
        start = time.perf_counter()
        rows = track_sequence(tracker, frames)
        speeds[seq_dir.name] = len(frames) / max(time.perf_counter() - start, 1e-9)
        write_mot_results(out / f"{seq_dir.name}.txt", interpolate_gaps(rows, interpolate))
    return speeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="MOT root (folders with det/det.txt) or one sequence")
    parser.add_argument("--out", type=Path, required=True, help="folder for <seq>.txt results")
    parser.add_argument("--tracker", default=DEFAULT_TRACKER, help=f"one of {available_trackers()}")
    parser.add_argument("--config", type=Path, help="tracker YAML (default configs/trackers/<tracker>.yaml)")
    parser.add_argument("--interpolate", type=int, default=0, metavar="N",
                        help="offline: fill track gaps of up to N frames (0 = online output)")
    args = parser.parse_args(argv)
    try:
        speeds = run(args.data, args.out, args.tracker, args.config, args.interpolate)
    except (MOTFormatError, ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1  # EXIT_FAILED (pipeline/cli.py): bad input, nothing ran
    for name, fps in speeds.items():
        print(f"{name:<20} {fps:9.0f} frames/s")
    print(f"wrote {len(speeds)} result files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
