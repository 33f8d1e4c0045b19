"""MOTChallenge files: detections, ground truth, results and seqinfo.ini.

Every reader validates as it goes and names the file and line of the first bad row, because a
silently mis-parsed line shows up much later as a wrong metric that nobody can trace.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from configs import UserError


class MOTFormatError(UserError, ValueError):
    """A MOTChallenge file that cannot be parsed; the message names file and line."""


@dataclass(frozen=True)
class SeqInfo:
    name: str
    frame_rate: float
    length: int
    width: int = 0
    height: int = 0


def read_seqinfo(seq_dir: str | Path) -> SeqInfo:
    """Read ``seq_dir/seqinfo.ini``; frame count falls back to the detections when absent."""
    seq_dir = Path(seq_dir)
    ini = seq_dir / "seqinfo.ini"
    parser = configparser.ConfigParser()
    if ini.is_file():
        parser.read(ini)
    section = parser["Sequence"] if parser.has_section("Sequence") else {}
    try:
        return SeqInfo(
            name=section.get("name", seq_dir.name),
            frame_rate=float(section.get("frameRate", 30)),
            length=int(section.get("seqLength", 0)),
            width=int(section.get("imWidth", 0)),
            height=int(section.get("imHeight", 0)),
        )
    except ValueError as err:
        raise MOTFormatError(f"{ini}: {err}") from None


def read_mot_rows(path: str | Path, min_columns: int = 6) -> np.ndarray:
    """Parse a comma (or space) separated MOT file into an (N, C) float64 array.

    Columns: frame, id, x, y, w, h, score/conf, ... Rows must have at least ``min_columns``
    numeric values, a frame >= 1 and a non-negative width and height.
    """
    path = Path(path)
    if not path.is_file():
        raise MOTFormatError(f"{path}: file not found")
    rows: list[list[float]] = []
    width = None
    with path.open() as handle:
        for line_no, line in enumerate(handle, start=1):
            text = line.strip()
            if not text:
                continue
            fields = text.replace(",", " ").split()
            try:
                values = [float(v) for v in fields]
            except ValueError:
                raise MOTFormatError(f"{path}:{line_no}: non-numeric value in {text!r}") from None
            if len(values) < min_columns:
                raise MOTFormatError(
                    f"{path}:{line_no}: expected at least {min_columns} columns, got {len(values)} in {text!r}"
                )
            if values[0] < 1 or values[0] != int(values[0]):
                raise MOTFormatError(f"{path}:{line_no}: frame must be an integer >= 1, got {fields[0]!r}")
            if values[4] < 0 or values[5] < 0 or not np.all(np.isfinite(values[:6])):
                raise MOTFormatError(f"{path}:{line_no}: box width/height must be finite and >= 0 in {text!r}")
            width = width or len(values)
            values = (values + [-1.0] * width)[:width] if len(values) != width else values
            rows.append(values)
    if not rows:
        return np.zeros((0, max(min_columns, 10)), dtype=np.float64)
    return np.asarray(rows, dtype=np.float64)


def detections_by_frame(rows: np.ndarray, num_frames: int) -> list[np.ndarray]:
    """Split MOT det rows into per-frame (N, 5) arrays ``x1, y1, x2, y2, score`` (index 0 = frame 1)."""
    last = int(rows[:, 0].max()) if len(rows) else 0
    num_frames = max(num_frames, last)
    boxes = np.empty((len(rows), 5), dtype=np.float64)
    if len(rows):
        boxes[:, 0:2] = rows[:, 2:4]
        boxes[:, 2:4] = rows[:, 2:4] + rows[:, 4:6]
        boxes[:, 4] = rows[:, 6] if rows.shape[1] > 6 else 1.0
    order = np.argsort(rows[:, 0], kind="stable") if len(rows) else np.zeros(0, dtype=int)
    frames = rows[order, 0].astype(int) if len(rows) else np.zeros(0, dtype=int)
    boxes = boxes[order]
    bounds = np.searchsorted(frames, np.arange(1, num_frames + 2))
    return [boxes[bounds[i] : bounds[i + 1]] for i in range(num_frames)]


def write_mot_results(path: str | Path, rows: np.ndarray) -> None:
    """Write (N, >=6) rows ``frame, id, x, y, w, h[, score]`` as a MOTChallenge result file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        for row in rows:
            score = row[6] if len(row) > 6 else 1.0
            handle.write(
                f"{int(row[0])},{int(row[1])},{row[2]:.2f},{row[3]:.2f},{row[4]:.2f},{row[5]:.2f},{score:.3f},-1,-1,-1\n"
            )


def find_sequences(root: str | Path, required: str = "det/det.txt") -> list[Path]:
    """Sequence folders directly under ``root`` (or ``root`` itself) that contain ``required``."""
    root = Path(root)
    if (root / required).is_file():
        return [root]
    return sorted(p for p in root.iterdir() if (p / required).is_file()) if root.is_dir() else []


def read_mtmc_rows(path: str | Path) -> np.ndarray:
    """Parse an AI City / DukeMTMC multi-camera file into an (N, 9) float64 array.

    Columns: camera_id, id, frame, x, y, w, h[, xworld, yworld] (space or comma separated);
    missing world coordinates are -1. Camera and frame must be integers (frame >= 1).
    """
    return read_text_rows(path, _mtmc_row, 9)


def read_text_rows(path: str | Path, parse_row: Callable[[str, str], list[float]], columns: int) -> np.ndarray:
    """(N, columns) float64 rows of a text file, one per non-blank line, each parsed by ``parse_row(text,
    "file:line")``, which raises MOTFormatError naming that place for a malformed line."""
    path = Path(path)
    if not path.is_file():
        raise MOTFormatError(f"{path}: file not found")
    rows: list[list[float]] = []
    with path.open() as handle:
        for line_no, line in enumerate(handle, start=1):
            text = line.strip()
            if text:
                rows.append(parse_row(text, f"{path}:{line_no}"))
    return np.asarray(rows, dtype=np.float64).reshape(-1, columns)


def _mtmc_row(text: str, where: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise MOTFormatError(f"{where}: non-numeric value in {text!r}") from None
    if len(values) < 7:
        raise MOTFormatError(f"{where}: expected camera_id id frame x y w h [xworld yworld], got {text!r}")
    if not np.all(np.isfinite(values[:7])):
        raise MOTFormatError(f"{where}: non-finite value in {text!r}")
    if values[0] < 0 or values[0] != int(values[0]):
        raise MOTFormatError(f"{where}: camera_id must be an integer >= 0 in {text!r}")
    if values[2] < 1 or values[2] != int(values[2]):
        raise MOTFormatError(f"{where}: frame must be an integer >= 1 in {text!r}")
    if values[5] < 0 or values[6] < 0:
        raise MOTFormatError(f"{where}: box width/height must be >= 0 in {text!r}")
    return (values + [-1.0, -1.0])[:9]


def rows_by_frame(rows: np.ndarray, num_frames: int, frame_column: int = 0) -> list[np.ndarray]:
    """Split rows into per-frame arrays by their 1-based frame column (index 0 = frame 1).

    Rows with a frame beyond ``num_frames`` are dropped; callers that must reject them check first.
    """
    frames = rows[:, frame_column].astype(int) if len(rows) else np.zeros(0, dtype=int)
    order = np.argsort(frames, kind="stable")
    frames, rows = frames[order], rows[order]
    bounds = np.searchsorted(frames, np.arange(1, num_frames + 2))
    return [rows[bounds[i] : bounds[i + 1]] for i in range(num_frames)]
