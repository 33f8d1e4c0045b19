"""Tracking evaluation with TrackEval: MOTChallenge metrics per sequence, and multi-camera (MTMC) identity metrics.

All metric maths is TrackEval's. This module reads the files through ``pipeline.motio`` (so bad input is
reported by file and line), hands TrackEval the data in the shape it expects and reads the results back
as plain floats. Ratios (HOTA, DetA, AssA, MOTA, IDF1, IDP, IDR) are fractions in [0, 1]; counts (IDSW, FP,
FN, MT, ML, IDTP, IDFP, IDFN) are whole numbers stored as floats.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import re
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import trackeval
from trackeval.datasets._base_dataset import _BaseDataset
from trackeval.utils import TrackEvalException

from pipeline.motio import MOTFormatError, find_sequences, read_mot_rows, read_mtmc_rows, read_seqinfo, rows_by_frame

COMBINED = "COMBINED"
RATIO_METRICS = frozenset({"HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDP", "IDR"})
# Our metric name -> (TrackEval metric class name, TrackEval result field).
TRACKEVAL_FIELDS = {
    "HOTA": ("HOTA", "HOTA"),
    "DetA": ("HOTA", "DetA"),
    "AssA": ("HOTA", "AssA"),
    "MOTA": ("CLEAR", "MOTA"),
    "IDF1": ("Identity", "IDF1"),
    "IDP": ("Identity", "IDP"),
    "IDR": ("Identity", "IDR"),
    "IDSW": ("CLEAR", "IDSW"),
    "FP": ("CLEAR", "CLR_FP"),
    "FN": ("CLEAR", "CLR_FN"),
    "MT": ("CLEAR", "MT"),
    "ML": ("CLEAR", "ML"),
    "IDTP": ("Identity", "IDTP"),
    "IDFP": ("Identity", "IDFP"),
    "IDFN": ("Identity", "IDFN"),
}
MOT_METRICS = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDP", "IDR", "IDSW", "FP", "FN", "MT", "ML")
MTMC_METRICS = ("IDF1", "IDP", "IDR", "IDTP", "IDFP", "IDFN", "HOTA", "DetA", "AssA")
_QUIET = {"PRINT_CONFIG": False}


# ---------------------------------------------------------------- single camera (MOTChallenge)


def evaluate_mot(gt_root: str | Path, pred_dir: str | Path, seqs: list[str] | None = None) -> dict[str, dict[str, float]]:
    """HOTA, CLEAR and Identity metrics of ``pred_dir/<seq>.txt`` against every ``gt_root/<seq>/gt/gt.txt``.

    Returns ``{seq: {metric: value}, ..., "COMBINED": {...}}`` (see MOT_METRICS). ``seqs`` limits the
    sequences; otherwise every ground-truth sequence needs a prediction file. Runs in-process and silent.
    """
    seq_dirs = select_sequences(gt_root, seqs)
    pred_dir = Path(pred_dir).resolve()
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"prediction folder not found: {pred_dir}")
    rows, lengths = {}, {}
    for seq_dir in seq_dirs:
        rows[seq_dir.name], lengths[seq_dir.name] = _load_sequence(seq_dir, pred_dir / f"{seq_dir.name}.txt")
    dataset = _PreloadedMOT15(seq_dirs[0].parent, pred_dir, rows, lengths)
    metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR(_QUIET), trackeval.metrics.Identity(_QUIET)]
    try:
        per_seq = _run_evaluator(dataset, metrics)
    except TrackEvalException as err:
        raise MOTFormatError(f"{pred_dir} against {gt_root}: {err}") from None
    return {
        (COMBINED if seq == "COMBINED_SEQ" else seq): _pick(result["pedestrian"], MOT_METRICS)
        for seq, result in per_seq.items()
    }


def select_sequences(gt_root: str | Path, seqs: list[str] | None = None) -> list[Path]:
    """Sequence folders under ``gt_root`` with ``gt/gt.txt``, limited to ``seqs`` (in that order) when given."""
    found = {p.name: p for p in find_sequences(gt_root, required="gt/gt.txt")}
    if not found:
        raise FileNotFoundError(f"no sequence with gt/gt.txt under {gt_root}")
    if not seqs:
        return list(found.values())
    unknown = [s for s in seqs if s not in found]
    if unknown:
        raise FileNotFoundError(f"sequence(s) {unknown} not under {gt_root} (found: {sorted(found)})")
    return [found[s] for s in dict.fromkeys(seqs)]


def _load_sequence(seq_dir: Path, pred_file: Path) -> tuple[tuple[np.ndarray, np.ndarray], int]:
    if not pred_file.is_file():
        raise FileNotFoundError(f"{pred_file}: no prediction file for sequence {seq_dir.name}")
    gt_file = seq_dir / "gt" / "gt.txt"
    gt, pred = _read_ground_truth(gt_file), read_mot_rows(pred_file)
    length = read_seqinfo(seq_dir).length or _last_frame(gt, pred)
    for rows, path in ((gt, gt_file), (pred, pred_file)):
        _check_frames_and_ids(rows, length, path)
    return (gt, pred), length


def _read_ground_truth(path: Path) -> np.ndarray:
    """Ground truth read once per file version: tuning loops evaluate against the same files many times."""
    stat = path.stat()
    return _cached_mot_rows(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _cached_mot_rows(path: str, mtime_ns: int, size: int) -> np.ndarray:
    rows = read_mot_rows(path)
    rows.setflags(write=False)
    return rows


def _check_frames_and_ids(rows: np.ndarray, length: int, path: Path) -> None:
    beyond = rows[rows[:, 0] > length]
    if len(beyond):
        raise MOTFormatError(f"{path}: frame {int(beyond[0, 0])} is beyond the sequence length {length} (seqinfo.ini)")
    negative = rows[rows[:, 1] < 0]
    if len(negative):
        # TrackEval indexes an id table with the ids: a negative id would silently corrupt the mapping.
        raise MOTFormatError(
            f"{path}: negative track id {int(negative[0, 1])} in frame {int(negative[0, 0])} "
            "(a detection file rather than tracking results?)"
        )
    check_unique_ids(rows, path)


def _last_frame(*row_sets: np.ndarray, frame_column: int = 0) -> int:
    return max((int(r[:, frame_column].max()) for r in row_sets if len(r)), default=1)


class _PreloadedMOT15(trackeval.datasets.MotChallenge2DBox):
    """TrackEval's MOTChallenge dataset in MOT15 mode, fed rows already parsed and checked by pipeline.motio.

    Only file reading is replaced: TrackEval's reader crashes on 6-column results and takes a result
    file's 8th column for a class, while MOT15 files carry world coordinates there.
    """

    def __init__(self, gt_folder: Path, pred_dir: Path, rows: dict, lengths: dict[str, int]):
        self._rows = rows
        super().__init__(
            {
                "GT_FOLDER": str(gt_folder),
                "TRACKERS_FOLDER": str(pred_dir.parent),
                "TRACKERS_TO_EVAL": [pred_dir.name],
                "TRACKER_SUB_FOLDER": "",
                "SKIP_SPLIT_FOL": True,
                "BENCHMARK": "MOT15",
                "SEQ_INFO": dict(lengths),
                "PRINT_CONFIG": False,
            }
        )

    def _load_raw_file(self, tracker: str, seq: str, is_gt: bool) -> dict:
        gt, pred = self._rows[seq]
        return _raw_mot_data(gt if is_gt else pred, self.seq_lengths[seq], seq, is_gt)


def _raw_mot_data(rows: np.ndarray, num_timesteps: int, seq: str, is_gt: bool) -> dict:
    """The dict MotChallenge2DBox._load_raw_file returns, built from parsed MOT rows."""
    frames = rows_by_frame(rows, num_timesteps)
    prefix = "gt" if is_gt else "tracker"
    raw = {
        f"{prefix}_ids": [f[:, 1].astype(int) for f in frames],
        f"{prefix}_dets": [f[:, 2:6] for f in frames],
        f"{prefix}_classes": [np.ones(len(f), dtype=int) for f in frames],
        "num_timesteps": num_timesteps,
        "seq": seq,
    }
    confidence = [f[:, 6] if f.shape[1] > 6 else np.ones(len(f)) for f in frames]
    if is_gt:
        raw["gt_extras"] = [{"zero_marked": c.astype(int)} for c in confidence]
        raw["gt_crowd_ignore_regions"] = [np.empty((0, 4)) for _ in frames]
    else:
        raw["tracker_confidences"] = confidence
    return raw


def _run_evaluator(dataset, metrics: list) -> dict:
    """trackeval.Evaluator in-process with every print, log and output file switched off."""
    evaluator = trackeval.Evaluator(
        {
            "USE_PARALLEL": False,
            "BREAK_ON_ERROR": True,
            "LOG_ON_ERROR": None,
            "PRINT_RESULTS": False,
            "PRINT_CONFIG": False,
            "TIME_PROGRESS": False,
            "OUTPUT_SUMMARY": False,
            "OUTPUT_DETAILED": False,
            "PLOT_CURVES": False,
        }
    )
    # Evaluator prints progress (and a traceback before re-raising) whatever its config says.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        results, _ = evaluator.evaluate([dataset], metrics)
    return results[dataset.get_name()][dataset.tracker_list[0]]


def _pick(metric_results: dict[str, dict], names: tuple[str, ...]) -> dict[str, float]:
    """Our named metrics from TrackEval results; HOTA-family arrays are averaged over the IoU thresholds as TrackEval reports them."""
    picked = {}
    for name in names:
        metric, field = TRACKEVAL_FIELDS[name]
        picked[name] = float(np.mean(metric_results[metric][field]))
    return picked


# ---------------------------------------------------------------- multi camera (AI City / DukeMTMC)


def evaluate_mtmc(gt: str | Path, pred: str | Path) -> dict[str, dict]:
    """Multi-camera identity metrics: one global ID matching over all cameras, plus per-camera figures.

    ``gt`` and ``pred`` are each an AI City / DukeMTMC file (``camera_id id frame x y w h [xworld yworld]``)
    or a folder of per-camera MOT files ``<camera>.txt``. Cameras are concatenated on one timeline (each
    camera's frames shifted by the frames of the cameras before it) so that TrackEval's Identity metric
    matches each global ground-truth id to one predicted id across all cameras at once.
    Returns ``{"MTMC": {metric: value}, "per_camera": {camera: {metric: value}}}`` (see MTMC_METRICS).
    """
    gt_cams, pred_cams = load_cameras(gt, is_gt=True), load_cameras(pred, is_gt=False)
    unknown = sorted(set(pred_cams) - set(gt_cams))
    if unknown:
        raise MOTFormatError(f"{pred}: camera(s) {unknown} are not in the ground truth {gt} (it has {sorted(gt_cams)})")
    no_rows = np.zeros((0, 6))
    per_camera, timeline_gt, timeline_pred, offset = {}, [], [], 0
    for camera in sorted(gt_cams, key=_camera_order):
        cam_gt, cam_pred = gt_cams[camera][:, :6], pred_cams.get(camera, no_rows)[:, :6]
        length = _last_frame(cam_gt, cam_pred)
        per_camera[camera] = _identity_metrics(cam_gt, cam_pred, length, f"camera {camera} of {gt} / {pred}")
        timeline_gt.append(_shift_frames(cam_gt, offset))
        timeline_pred.append(_shift_frames(cam_pred, offset))
        offset += length
    combined = _identity_metrics(np.vstack(timeline_gt), np.vstack(timeline_pred), offset, f"{gt} / {pred}")
    return {"MTMC": combined, "per_camera": per_camera}


def load_cameras(path: str | Path, is_gt: bool) -> dict[str, np.ndarray]:
    """Camera name -> (N, >=6) rows ``frame, id, x, y, w, h`` from an AI City file or a folder of ``<camera>.txt``.

    Ground-truth rows that MOTChallenge marks as ignored (7th column 0) are dropped.
    """
    path = Path(path)
    if path.is_dir():
        return _load_camera_folder(path, is_gt)
    if not path.is_file():
        raise FileNotFoundError(f"not found: {path}")
    rows = read_mtmc_rows(path)
    return {
        _camera_key(str(int(cam))): rows[rows[:, 0] == cam][:, [2, 1, 3, 4, 5, 6]] for cam in np.unique(rows[:, 0])
    }


def _load_camera_folder(folder: Path, is_gt: bool) -> dict[str, np.ndarray]:
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"{folder}: no per-camera <camera>.txt files")
    cameras: dict[str, np.ndarray] = {}
    for file in files:
        key = _camera_key(file.stem)
        if key in cameras:
            raise MOTFormatError(f"{file}: camera {key!r} appears twice in {folder}")
        rows = read_mot_rows(file)
        keep = rows[:, 6] != 0 if is_gt and rows.shape[1] > 6 else np.ones(len(rows), dtype=bool)
        cameras[key] = rows[keep]
    return cameras


def _camera_key(name: str) -> str:
    """Camera names as numbers where they are numbers, so gt camera id 1 and a pred file c001.txt or 001.txt agree."""
    match = re.fullmatch(r"[cC]?(\d+)", name)
    return str(int(match.group(1))) if match else name


def _camera_order(key: str) -> tuple:
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def _shift_frames(rows: np.ndarray, offset: int) -> np.ndarray:
    shifted = rows.copy()
    shifted[:, 0] += offset
    return shifted


def _identity_metrics(gt: np.ndarray, pred: np.ndarray, num_timesteps: int, source: str) -> dict[str, float]:
    data = trackeval_sequence(gt, pred, num_timesteps, source)
    results = {
        "Identity": trackeval.metrics.Identity(_QUIET).eval_sequence(data),
        "HOTA": trackeval.metrics.HOTA().eval_sequence(data),
    }
    return _pick(results, MTMC_METRICS)


def trackeval_sequence(gt: np.ndarray, pred: np.ndarray, num_timesteps: int, source: str = "sequence") -> dict:
    """TrackEval's preprocessed sequence dict (ids made contiguous, box IoU as similarity) from MOT rows.

    Raises MOTFormatError naming ``source`` when an id appears twice in one frame.
    """
    check_unique_ids(gt, f"{source} (ground truth)")
    check_unique_ids(pred, f"{source} (prediction)")
    gt, num_gt_ids = _contiguous_ids(gt)
    pred, num_pred_ids = _contiguous_ids(pred)
    gt_frames, pred_frames = rows_by_frame(gt, num_timesteps), rows_by_frame(pred, num_timesteps)
    data = {
        "num_timesteps": num_timesteps,
        "num_gt_ids": num_gt_ids,
        "num_tracker_ids": num_pred_ids,
        "num_gt_dets": len(gt),
        "num_tracker_dets": len(pred),
        "gt_ids": [f[:, 1].astype(int) for f in gt_frames],
        "tracker_ids": [f[:, 1].astype(int) for f in pred_frames],
        "gt_dets": [f[:, 2:6] for f in gt_frames],
        "tracker_dets": [f[:, 2:6] for f in pred_frames],
        "similarity_scores": [
            _BaseDataset._calculate_box_ious(g[:, 2:6], p[:, 2:6], box_format="xywh")
            for g, p in zip(gt_frames, pred_frames)
        ],
    }
    return data


def check_unique_ids(rows: np.ndarray, source: str | Path) -> None:
    """A track id may appear once per frame; checked on the ids as written, before any relabelling."""
    frame_ids, counts = np.unique(rows[:, :2], axis=0, return_counts=True)
    if np.any(counts > 1):
        frame, track_id = frame_ids[counts > 1][0]
        raise MOTFormatError(f"{source}: track id {int(track_id)} appears more than once in frame {int(frame)}")


def _contiguous_ids(rows: np.ndarray) -> tuple[np.ndarray, int]:
    unique, contiguous = np.unique(rows[:, 1], return_inverse=True)
    relabelled = rows.astype(np.float64, copy=True)
    relabelled[:, 1] = contiguous
    return relabelled, len(unique)


# ---------------------------------------------------------------- reporting


def format_table(results: dict[str, dict[str, float]], columns: tuple[str, ...], name_header: str = "") -> str:
    """Fixed-width table: one row per key, ratios as percentages with one decimal, counts as integers."""
    width = max([len(name_header)] + [len(name) for name in results])
    lines = [f"{name_header:<{width}}" + "".join(f"{c:>8}" for c in columns)]
    for name, metrics in results.items():
        cells = (f"{100 * metrics[c]:8.1f}" if c in RATIO_METRICS else f"{metrics[c]:8.0f}" for c in columns)
        lines.append(f"{name:<{width}}" + "".join(cells))
    return "\n".join(lines)


def write_json(path: str | Path, results: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def cli_parser(description: str, gt_help: str, pred_help: str) -> argparse.ArgumentParser:
    """The arguments both evaluation CLIs share: --gt, --pred, --json."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt", required=True, type=Path, help=gt_help)
    parser.add_argument("--pred", required=True, type=Path, help=pred_help)
    parser.add_argument("--json", type=Path, help="also write the numbers (ratios in [0, 1]) to this file")
    return parser


def run_cli(evaluate: Callable[[], dict], table: Callable[[dict], str], json_path: Path | None) -> int:
    """Evaluate, print the table and write the JSON; bad input becomes ``error: ...`` and exit status 2."""
    try:
        results = evaluate()
    except (MOTFormatError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1  # EXIT_FAILED (pipeline/cli.py): bad input, nothing ran
    print(table(results))
    if json_path:
        write_json(json_path, results)
    return 0
