"""Annotated videos: boxes and global ids drawn on each camera's frames, one colour per identity.

Global ids are final only when the run ends (tracklets are matched after they finish), so videos are
rendered in a second pass over sources that can be read again (files, image folders).
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import cv2
import numpy as np

from pipeline.motio import read_mot_rows
from pipeline.sources import Source


def identity_colour(global_id: int) -> tuple[int, int, int]:
    hue = (global_id * 0.61803398875) % 1.0  # golden-ratio steps keep neighbouring ids apart
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(blue * 255), int(green * 255), int(red * 255)


def draw_tracks(image: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Draw MOT rows ``frame, id, x, y, w, h, ...`` of one frame onto a copy of ``image``."""
    canvas = image.copy()
    for row in rows:
        global_id = int(row[1])
        x, y, w, h = (int(round(v)) for v in row[2:6])
        colour = identity_colour(global_id)
        cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, 2)
        cv2.putText(canvas, str(global_id), (x, max(y - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2)
    return canvas


def render_video(source: Source, mot_file: Path, out_file: Path, fourcc: str = "mp4v") -> int:
    """Write ``out_file`` with the tracks of ``mot_file`` drawn on ``source``; returns frames written."""
    rows = read_mot_rows(mot_file, min_columns=6)
    by_frame = rows_by_frame(rows)
    writer = None
    written = 0
    try:
        for frame in source:
            if writer is None:
                height, width = frame.image.shape[:2]
                writer = cv2.VideoWriter(str(out_file), cv2.VideoWriter_fourcc(*fourcc), source.fps, (width, height))
            writer.write(draw_tracks(frame.image, by_frame.get(frame.index + 1, np.zeros((0, 7)))))
            written += 1
    finally:
        if writer is not None:
            writer.release()
        source.close()
    return written


def rows_by_frame(rows: np.ndarray) -> dict[int, np.ndarray]:
    if not len(rows):
        return {}
    frames = rows[:, 0].astype(int)
    return {int(f): rows[frames == f] for f in np.unique(frames)}
