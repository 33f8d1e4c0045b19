"""Camera geometry: image -> ground-plane homographies, and where a tracked person's feet are.

    calibration = CameraCalibration.from_config(config.cameras, camera_ids)   # ConfigError naming the file
    ground = calibration.to_ground("cam1", feet[:, 1:3])                      # (N, 2) or None (uncalibrated)
    between = calibration.between("cam1", "cam2")                             # cam1 image -> cam2 image, or None

Feet: the bottom centre of a box is where a person stands only while the box's bottom edge is seen. Boxes cut
by the frame edge or by a person in front lose their feet, and a detector's box height jitters; ``foot_points``
puts such feet one typical body height below the top of the box (the track's median height over its boxes with
a visible bottom) and smooths them over a few frames, so geometry also works with a real detector's boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from configs import ConfigError

# A true image-to-plane homography has a condition number of ~1e5 (pixel and ground scales differ); one that is
# singular to working precision has ~1e16.
MAX_CONDITION = 1e12
EDGE_MARGIN = 2.0  # pixels: a box bottom this close to the frame's bottom edge is cut by it
SMOOTHING_FRAMES = 5  # foot points are the running median over this many boxes


class HomographyError(ConfigError):
    """A homography (file or inline matrix) that is not a usable 3x3 matrix; the message names where it is."""


def check_homography(matrix: Any, where: str) -> np.ndarray:
    """``matrix`` as a finite, non-singular 3x3 float array (nested lists or 9 numbers), else HomographyError."""
    try:
        array = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise HomographyError(f"{where}: a homography must be 3x3 numbers, got {matrix!r}") from None
    if array.size == 9:
        array = array.reshape(3, 3)
    if array.shape != (3, 3):
        raise HomographyError(f"{where}: expected a 3x3 matrix, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise HomographyError(f"{where}: the matrix has non-finite values")
    singular = np.linalg.svd(array, compute_uv=False)
    if singular[-1] * MAX_CONDITION <= singular[0]:
        raise HomographyError(f"{where}: the matrix is singular (it maps the image onto a line or a point)")
    return array


def read_homography(path: str | Path) -> np.ndarray:
    """A 3x3 homography from a text file: 3 lines of 3 numbers, space, tab or comma separated (EPFL, PETS and
    WILDTRACK ship them so). HomographyError names the file (and line) when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise HomographyError(f"{path}: homography file not found")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            rows.append([float(value) for value in text.replace(",", " ").split()])
        except ValueError:
            raise HomographyError(f"{path}:{number}: non-numeric value in {text!r}") from None
    if len(rows) != 3 or any(len(row) != 3 for row in rows):
        raise HomographyError(f"{path}: expected a 3x3 matrix (3 lines of 3 numbers), got numbers per line "
                              f"{[len(row) for row in rows]}")
    return check_homography(rows, str(path))


def project(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 2) points through a 3x3 homography (divided by the third coordinate)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    mapped = np.column_stack([points, np.ones(len(points))]) @ homography.T
    return mapped[:, :2] / mapped[:, 2:3]


@dataclass
class CameraCalibration:
    """Image -> ground-plane homographies of the calibrated cameras (others are simply absent)."""

    to_plane: dict[str, np.ndarray]

    @classmethod
    def from_config(cls, cameras: Sequence[Any], camera_ids: Sequence[str] | None = None) -> CameraCalibration:
        """From the config's ``cameras`` entries (id + homography: a file path or an inline matrix); a camera
        that is not among ``camera_ids`` (the run's sources, when given) or is listed twice is a ConfigError."""
        to_plane: dict[str, np.ndarray] = {}
        for entry in cameras:
            if camera_ids is not None and entry.id not in camera_ids:
                raise ConfigError(f"cameras: calibration for camera {entry.id!r}, which is not a source "
                                  f"(cameras: {', '.join(camera_ids)}; name them with --camera-ids)")
            if entry.id in to_plane:
                raise ConfigError(f"cameras: camera {entry.id!r} is calibrated twice")
            if isinstance(entry.homography, str):
                to_plane[entry.id] = read_homography(entry.homography)
            else:
                to_plane[entry.id] = check_homography(entry.homography, f"cameras: {entry.id}: homography")
        return cls(to_plane)

    def __contains__(self, camera: str) -> bool:
        return camera in self.to_plane

    def to_ground(self, camera: str, points: np.ndarray) -> np.ndarray | None:
        """Ground-plane positions of image points of ``camera``; None when it is not calibrated."""
        homography = self.to_plane.get(camera)
        return None if homography is None else project(homography, points)

    def between(self, first: str, second: str) -> np.ndarray | None:
        """The homography taking ground points seen in ``first``'s image to ``second``'s image (both calibrated)."""
        if first not in self.to_plane or second not in self.to_plane:
            return None
        return np.linalg.inv(self.to_plane[second]) @ self.to_plane[first]


def bottom_visible(boxes: np.ndarray, image_height: int) -> np.ndarray:
    """Per box (x1, y1, x2, y2[, ...] of one frame): is its bottom edge seen? Not when it touches the frame's
    bottom edge, or when another box whose bottom is lower (a person nearer the camera) covers its bottom
    centre."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, boxes.shape[-1] if len(boxes) else 4)
    visible = boxes[:, 3] < image_height - EDGE_MARGIN
    if len(boxes) > 1:
        foot_x, foot_y = (boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]
        covers = ((boxes[None, :, 0] <= foot_x[:, None]) & (foot_x[:, None] <= boxes[None, :, 2])
                  & (boxes[None, :, 1] <= foot_y[:, None]) & (foot_y[:, None] < boxes[None, :, 3]))
        np.fill_diagonal(covers, False)
        visible &= ~covers.any(axis=1)
    return visible


def foot_points(timestamps: Sequence[float], boxes: Sequence[np.ndarray],
                visible: Sequence[bool] | None = None) -> np.ndarray:
    """(N, 4) rows ``time, foot x, foot y, body height`` of one track's boxes (x1, y1, x2, y2[, ...]).

    With ``visible`` (bottom_visible per box), feet of boxes whose bottom is hidden are placed one typical body
    height (the median height of the visible boxes) below the box top; then x, y and height are smoothed by a
    running median over SMOOTHING_FRAMES boxes."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(len(timestamps), -1)
    times = np.asarray(timestamps, dtype=np.float64)
    foot_x, foot_y, height = (boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3].copy(), boxes[:, 3] - boxes[:, 1]
    if visible is not None and len(boxes):
        visible = np.asarray(visible, dtype=bool)
        if visible.any() and not visible.all():
            typical = float(np.median(height[visible]))
            hidden = ~visible & (height < typical)  # a box taller than typical still shows where the feet are
            foot_y[hidden] = boxes[hidden, 1] + typical
            height[hidden] = typical
    return np.column_stack([times, running_median(foot_x), running_median(foot_y), running_median(height)])


def running_median(values: np.ndarray, window: int = SMOOTHING_FRAMES) -> np.ndarray:
    """Centred running median (shorter windows at the ends); a window of 1 or a short series is unchanged."""
    if window <= 1 or len(values) < 3:
        return values
    half = window // 2
    padded = np.pad(values, half, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1), axis=1)
