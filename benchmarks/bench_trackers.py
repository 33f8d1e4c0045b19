"""Speed and accuracy of our trackers against Ultralytics' on the same MOT15 public detections.

    python benchmarks/bench_trackers.py [--data ROOT/mot15] [--repeats 5] [--clock cpu|wall] [--out DIR]

Every tracker sees the same per-frame (N, 5) detections of every sequence under --data. Timing covers
only the ``update`` calls (detections are loaded and, for Ultralytics, wrapped beforehand); frames/s is
over all sequences, the median of --repeats interleaved runs. The default clock is this process's CPU
time, which other jobs on a shared machine barely disturb; --clock wall measures elapsed time.
Accuracy is TrackEval's (tools/evaluation) on the first run's output, written as MOT files under --out.
Ultralytics trackers run with their own YAML defaults (BoT-SORT without ReID and without global motion
compensation) plus one tuned ByteTrack.
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

os.environ.setdefault("YOLO_OFFLINE", "1")

from configs import data_root
from pipeline.motio import MOTFormatError, find_sequences, write_mot_results
from tools.evaluation import COMBINED, evaluate_mot
from tools.track_mot import load_sequence, track_sequence
from trackers import CONFIG_DIR as TRACKER_CONFIGS, available_trackers, create_tracker

BASELINE = "ultralytics bytetrack"
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
# Ultralytics runs to build: (name, yaml in ultralytics/cfg/trackers, overrides of that yaml).
ULTRALYTICS_RUNS = (
    ("ultralytics bytetrack", "bytetrack.yaml", {}),
    ("ultralytics bytetrack tuned", "bytetrack.yaml", {"track_high_thresh": 0.8, "new_track_thresh": 0.9}),
    ("ultralytics botsort", "botsort.yaml", {"gmc_method": "none", "with_reid": False}),
    ("ultralytics ocsort", "ocsort.yaml", {}),
)
# Published in the shared data README (TrackEval, these 7 MOT15 sequences): HOTA, MOTA, IDF1 in %.
# Reproducing them checks that the detections reach Ultralytics' trackers as their own pipeline hands them over.
DATA_README_REFERENCE = {
    "ultralytics bytetrack": (36.7, 36.1, 46.8),
    "ultralytics botsort": (37.2, 36.6, 47.3),
    "ultralytics bytetrack tuned": (37.8, 41.8, 50.1),
}
REFERENCE_TOLERANCE = 0.2


@dataclass
class Sequence:
    name: str
    frame_rate: float
    frames: list[np.ndarray]


@dataclass
class TrackerRun:
    """A tracker to benchmark: ``make(frame_rate)`` builds a fresh tracker; ``wrap`` turns (N, 5) dets into its input."""

    name: str
    make: Callable[[float], Any]
    wrap: Callable[[np.ndarray], Any] = lambda dets: dets


class UltralyticsDetections:
    """The part of ultralytics' ``Boxes`` (after ``.cpu().numpy()``) that its trackers read, on numpy arrays."""

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray):
        self.xyxy, self.conf, self.cls = xyxy, conf, cls
        self.xywh = np.column_stack([(xyxy[:, 0:2] + xyxy[:, 2:4]) / 2, xyxy[:, 2:4] - xyxy[:, 0:2]])

    @classmethod
    def from_dets(cls, dets: np.ndarray) -> "UltralyticsDetections":
        dets = dets.astype(np.float32)  # what a detector's Boxes carry
        return cls(dets[:, :4], dets[:, 4], np.zeros(len(dets), dtype=np.float32))

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index) -> "UltralyticsDetections":
        return UltralyticsDetections(self.xyxy[index], self.conf[index], self.cls[index])


# ---------------------------------------------------------------- tracker set


def our_runs() -> list[TrackerRun]:
    """Each of our trackers with its default YAML, and with its MOT15 calibration where one exists."""
    runs = []
    for name in available_trackers():
        runs.append(TrackerRun(f"ours {name}", lambda fps, name=name: create_tracker(name, frame_rate=fps)))
        mot15 = TRACKER_CONFIGS / f"{name}_mot15.yaml"
        if mot15.is_file():
            runs.append(TrackerRun(f"ours {name} (mot15.yaml)",
                                   lambda fps, name=name, cfg=mot15: create_tracker(name, cfg, frame_rate=fps)))
    return runs


def ultralytics_runs() -> tuple[list[TrackerRun], list[str]]:
    """The Ultralytics trackers this installed version has, and notes on those it lacks."""
    import ultralytics
    from ultralytics.trackers.track import TRACKER_MAP
    from ultralytics.utils import ROOT

    runs, notes = [], []
    for name, yaml_name, overrides in ULTRALYTICS_RUNS:
        path = ROOT / "cfg" / "trackers" / yaml_name
        tracker_type = yaml_name.removesuffix(".yaml")
        if tracker_type not in TRACKER_MAP or not path.is_file():
            notes.append(f"{name}: not in ultralytics {ultralytics.__version__} (TRACKER_MAP has {sorted(TRACKER_MAP)})")
            continue
        args = _ultralytics_args(path, overrides)
        runs.append(TrackerRun(name, _ultralytics_factory(TRACKER_MAP[args.tracker_type], args),
                               UltralyticsDetections.from_dets))
    return runs, notes


def _ultralytics_args(path: Path, overrides: dict):
    from ultralytics.utils import IterableSimpleNamespace

    try:
        from ultralytics.utils import YAML
        values = YAML.load(path)
    except ImportError:  # older ultralytics releases have only yaml_load
        from ultralytics.utils import yaml_load
        values = yaml_load(path)
    unknown = set(overrides) - set(values)
    if unknown:
        raise ValueError(f"{path}: has no keys {sorted(unknown)}")
    return IterableSimpleNamespace(**{**values, **overrides})


def _ultralytics_factory(tracker_cls, args) -> Callable[[float], Any]:
    # Older releases take frame_rate and scale track_buffer by frame_rate / 30; newer ones (8.4) count
    # track_buffer in frames whatever the frame rate, which is how the data README's figures reproduce.
    if "frame_rate" in inspect.signature(tracker_cls).parameters:
        return lambda fps: tracker_cls(args=args, frame_rate=int(round(fps)))
    return lambda fps: tracker_cls(args=args)


# ---------------------------------------------------------------- timing and evaluation


def load_sequences(data: Path) -> list[Sequence]:
    dirs = find_sequences(data)
    if not dirs:
        raise FileNotFoundError(f"no sequence with det/det.txt under {data} (pass --data or set MTMC_DATA)")
    return [Sequence(d.name, *load_sequence(d)) for d in dirs]


def time_updates(run: TrackerRun, sequences: list[Sequence],
                 clock: Callable[[], float]) -> tuple[float, dict[str, list[np.ndarray]]]:
    """Seconds (of ``clock``) spent in ``update`` over all sequences, and its outputs per sequence."""
    total, outputs = 0.0, {}
    for seq in sequences:
        tracker = run.make(seq.frame_rate)
        inputs = [run.wrap(dets) for dets in seq.frames]
        start = clock()
        outputs[seq.name] = [tracker.update(frame) for frame in inputs]
        total += clock() - start
    return total, outputs


class _Replay:
    """Hands back recorded tracker outputs, so that ``track_sequence`` turns them into MOT rows untimed."""

    def __init__(self, outputs: list[np.ndarray]):
        self._outputs = iter(outputs)

    def update(self, _dets) -> np.ndarray:
        return next(self._outputs)  # columns 0-5 (x1, y1, x2, y2, id, score) mean the same for all trackers


def write_results(outputs: dict[str, list[np.ndarray]], sequences: list[Sequence], folder: Path) -> None:
    for seq in sequences:
        rows = track_sequence(_Replay(outputs[seq.name]), seq.frames)
        write_mot_results(folder / f"{seq.name}.txt", rows)


def benchmark(runs: list[TrackerRun], sequences: list[Sequence], repeats: int, out: Path,
              clock: Callable[[], float]) -> dict[str, list[float]]:
    """Frames/s of each run's updates, one per repeat; the first repeat's tracks are written to ``out/<run>/``."""
    seconds: dict[str, list[float]] = {run.name: [] for run in runs}
    with tqdm(total=repeats * len(runs), desc="tracking", unit="run") as progress:
        for repeat in range(repeats):  # interleaved, so that a busy moment on the machine hits every tracker alike
            for run in runs:
                progress.set_postfix_str(run.name)
                elapsed, outputs = time_updates(run, sequences, clock)
                seconds[run.name].append(elapsed)
                if repeat == 0:
                    write_results(outputs, sequences, result_folder(out, run.name))
                progress.update()
    num_frames = sum(len(seq.frames) for seq in sequences)
    return {name: [num_frames / max(t, 1e-12) for t in times] for name, times in seconds.items()}


def result_folder(out: Path, run_name: str) -> Path:
    return out / run_name.replace(" ", "_")


def evaluate_runs(runs: list[TrackerRun], data: Path, sequences: list[Sequence], out: Path) -> dict[str, dict]:
    names = [seq.name for seq in sequences]
    return {run.name: evaluate_mot(data, result_folder(out, run.name), seqs=names)
            for run in tqdm(runs, desc="evaluating", unit="run")}


# ---------------------------------------------------------------- report


def summary_table(fps: dict[str, float], metrics: dict[str, dict]) -> str:
    baseline = fps.get(BASELINE)
    lines = [f"| tracker | frames/s | ratio vs {BASELINE} | HOTA | MOTA | IDF1 | IDSW |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, rate in fps.items():
        m = metrics[name][COMBINED]
        ratio = f"{rate / baseline:.2f}x" if baseline else "n/a"
        lines.append(f"| {name} | {rate:,.0f} | {ratio} | {100 * m['HOTA']:.1f} | {100 * m['MOTA']:.1f} "
                     f"| {100 * m['IDF1']:.1f} | {m['IDSW']:.0f} |")
    return "\n".join(lines)


def per_sequence_table(name: str, results: dict[str, dict]) -> str:
    lines = [f"Per sequence, {name}:", "| sequence | HOTA | IDF1 |", "|---|---:|---:|"]
    lines += [f"| {seq} | {100 * m['HOTA']:.1f} | {100 * m['IDF1']:.1f} |" for seq, m in results.items()]
    return "\n".join(lines)


def reference_check(metrics: dict[str, dict]) -> list[str]:
    """One line per Ultralytics run the data README publishes figures for: ours minus theirs."""
    lines = []
    for name, reference in DATA_README_REFERENCE.items():
        if name not in metrics:
            continue
        measured = [100 * metrics[name][COMBINED][k] for k in ("HOTA", "MOTA", "IDF1")]
        worst = max(abs(a - b) for a, b in zip(measured, reference))
        verdict = "ok" if worst <= REFERENCE_TOLERANCE + 1e-9 else "MISMATCH"
        lines.append(f"{name}: HOTA/MOTA/IDF1 {'/'.join(f'{v:.1f}' for v in measured)} vs data README "
                     f"{'/'.join(f'{v:.1f}' for v in reference)} -> {verdict} (max diff {worst:.2f})")
    return lines


def speed_goal(fps: dict[str, float]) -> str:
    ours, theirs = fps.get("ours bytetrack"), fps.get(BASELINE)
    if not ours or not theirs:
        return "speed goal: not measured (ours bytetrack or ultralytics bytetrack missing)"
    verdict = "met" if ours >= 2 * theirs else "NOT met"
    return f"speed goal (ours bytetrack >= 2x {BASELINE}): {ours / theirs:.2f}x -> {verdict}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root() / "mot15",
                        help="MOT root with <seq>/det/det.txt, seqinfo.ini and gt/gt.txt (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per tracker; the median counts")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                        help="cpu: process CPU time (robust on a shared machine); wall: elapsed time")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_trackers"), help="folder for the MOT result files")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    try:
        sequences = load_sequences(args.data)
        theirs, notes = ultralytics_runs()
        runs = our_runs() + theirs
        fps_runs = benchmark(runs, sequences, args.repeats, args.out, CLOCKS[args.clock])
        metrics = evaluate_runs(runs, args.data, sequences, args.out)
    except (MOTFormatError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    fps = {name: statistics.median(rates) for name, rates in fps_runs.items()}
    num_frames = sum(len(seq.frames) for seq in sequences)
    print(f"\n{len(sequences)} sequences, {num_frames} frames; frames/s = tracker updates only, "
          f"{args.clock} clock, median of {args.repeats} runs")
    print(summary_table(fps, metrics))
    print("frames/s range over the runs: " + ", ".join(f"{n} {min(r):,.0f}-{max(r):,.0f}" for n, r in fps_runs.items()))
    print("\n".join(["", speed_goal(fps), *reference_check(metrics), *notes]))
    best = max(metrics, key=lambda name: metrics[name][COMBINED]["HOTA"])
    print("\n" + per_sequence_table(best, metrics[best]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
