"""EPFL Terrace, sequence 1: two real overlapping cameras with cross-camera ground truth, as a project scene.

Reads a folder (default ``<data root>/multicam/epfl_terrace``) holding, per camera (``terrace1-c0``, ...):
  <camera>.mp4              the video (360x288, 25 fps; frame i of every camera was taken at the same time)
  <camera>.gt.txt           multi-view annotation in Vatic's format, one box a line, space separated:
                            ``id x1 y1 x2 y2 frame lost occluded generated "label"`` (frame 0-based; the id
                            is the person's, the same in every camera)
  <camera>.homography.txt   3x3 matrix mapping an image point (x, y, 1) to a common ground plane

and writes it in tools/make_multicam.py's layout, which tools/eval_mtmc.py and tools/association_lab.py read:
  <out>/<camera>.mp4            symlink to the original for the whole sequence; for a cut (``--frames``) a
                                lossless FFV1 copy of those frames (the pipeline has no start offset)
  <out>/gt/<camera>/gt/gt.txt   MOT15 rows ``frame, id, x, y, w, h, 1, ground x, ground y, -1``; frame 1 = the
  <out>/gt/<camera>/seqinfo.ini cut's first frame; ground x, y = the box's bottom centre through the homography
  <out>/mtmc_gt.txt             AI City rows; camera_id = 1-based position in cameras.json, which is the order
                                the cameras are given to run_pipeline.py in (its mtmc.txt numbers them so)
  <out>/cameras.json            per camera: number, name, video, source video, first frame, frames, homography

What counts as ground truth:
- ``lost = 1`` rows are dropped: the person is not in that view.
- ``occluded`` and ``generated`` rows are kept, they are real positions. ``generated`` rows are the annotation
  tool's interpolation between key frames: 95% (c0) and 97% (c1) of the visible rows of the 1,800 frames, so
  dropping them would leave 299 and 214 boxes. ``occluded`` rows (6% / 12%) are not worse positions: the
  foot points of one person seen in both views agree to a median 22.6 ground units when either box is
  occluded vs 21.0 when neither is.

    python -m tools.datasets.epfl_terrace --out runs/terrace/scene [--frames 900:1800] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from configs import UserError, data_root
from pipeline.geometry import project, read_homography
from pipeline.motio import MOTFormatError, read_text_rows
from tools.evaluation import check_unique_ids
from tools.make_multicam import mtmc_gt_lines, write_gt

DATASET = Path("multicam") / "epfl_terrace"
VATIC_FIELDS = 'id x1 y1 x2 y2 frame lost occluded generated "label"'
ID, X1, Y1, X2, Y2, FRAME, LOST, OCCLUDED, GENERATED = range(9)
CUT_FOURCC = "FFV1"  # lossless: a cut's frames are the original's pixels


@dataclass(frozen=True, eq=False)
class Camera:
    name: str  # the files' stem, e.g. terrace1-c0
    video: Path
    gt_file: Path
    homography_file: Path
    homography: np.ndarray  # (3, 3) image -> ground plane
    gt: np.ndarray  # visible boxes as MOT rows, see mot_rows()


@dataclass(frozen=True)
class FrameRange:
    """Video frames ``start`` .. ``end - 1`` (0-based, end exclusive like a slice); ``end`` 0 = to the video's end."""

    start: int = 0
    end: int = 0

    def within(self, length: int) -> FrameRange:
        end = min(self.end or length, length)
        if self.start >= end:
            raise ValueError(f"frames {self.start}:{self.end or ''} select nothing of a {length}-frame video")
        return FrameRange(self.start, end)

    def __len__(self) -> int:
        return self.end - self.start


def parse_frame_range(text: str) -> FrameRange:
    """``START:END`` (either may be empty) -> FrameRange; ``900:1800`` is the second half of the sequence."""
    start, sep, end = text.partition(":")
    try:
        frames = FrameRange(int(start or 0), int(end or 0))
    except ValueError:
        frames = None
    if not sep or frames is None or frames.start < 0 or frames.end < 0 or (frames.end and frames.end <= frames.start):
        raise ValueError(f"frames {text!r}: expected START:END with 0 <= START < END (0-based, END exclusive)")
    return frames


# ---------------------------------------------------------------- reading


def read_vatic_rows(path: str | Path) -> np.ndarray:
    """(N, 9) rows ``id x1 y1 x2 y2 frame lost occluded generated`` of a Vatic annotation file (label dropped).

    Raises MOTFormatError naming file and line for a malformed row.
    """
    return read_text_rows(path, _vatic_row, 9)


def _vatic_row(text: str, where: str) -> list[float]:
    fields = text.split(maxsplit=9)
    if len(fields) != 10:
        raise MOTFormatError(f"{where}: expected {VATIC_FIELDS}, got {text!r}")
    try:
        values = [float(v) for v in fields[:9]]
    except ValueError:
        raise MOTFormatError(f"{where}: non-numeric value in {text!r}") from None
    if not np.all(np.isfinite(values)):
        raise MOTFormatError(f"{where}: non-finite value in {text!r}")
    for column, name in ((ID, "id"), (FRAME, "frame")):
        if values[column] < 0 or values[column] != int(values[column]):
            raise MOTFormatError(f"{where}: {name} must be an integer >= 0, got {fields[column]!r}")
    for column, name in ((LOST, "lost"), (OCCLUDED, "occluded"), (GENERATED, "generated")):
        if values[column] not in (0.0, 1.0):
            raise MOTFormatError(f"{where}: {name} must be 0 or 1, got {fields[column]!r}")
    if not values[LOST] and (values[X2] < values[X1] or values[Y2] < values[Y1]):
        raise MOTFormatError(f"{where}: box corners must satisfy x1 <= x2 and y1 <= y2 in {text!r}")
    return values


def mot_rows(vatic: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """Visible Vatic rows as MOT15 rows ``frame (1-based), id, x, y, w, h, 1, ground x, ground y, -1``, sorted."""
    visible = vatic[vatic[:, LOST] == 0]
    x1, y1, x2, y2 = (visible[:, c] for c in (X1, Y1, X2, Y2))
    ground = project(homography, np.column_stack([(x1 + x2) / 2, y2]))
    ones = np.ones(len(visible))
    rows = np.column_stack([visible[:, FRAME] + 1, visible[:, ID], x1, y1, x2 - x1, y2 - y1, ones, ground, -ones])
    return rows[np.lexsort((rows[:, 1], rows[:, 0]))]


def default_folder() -> Path:
    return data_root() / DATASET


def load_cameras(folder: str | Path | None = None) -> list[Camera]:
    """Every camera of the folder (one per ``<camera>.gt.txt``, by name), with its video, gt and homography."""
    folder = Path(folder) if folder is not None else default_folder()
    gt_files = sorted(folder.glob("*.gt.txt"))
    if not gt_files:
        raise FileNotFoundError(f"{folder}: no <camera>.gt.txt annotation files (EPFL Terrace; see the data README)")
    cameras = []
    for gt_file in gt_files:
        name = gt_file.name.removesuffix(".gt.txt")
        video, homography_file = folder / f"{name}.mp4", folder / f"{name}.homography.txt"
        if not video.is_file():
            raise FileNotFoundError(f"{video}: video of camera {name} not found")
        homography = read_homography(homography_file)
        rows = mot_rows(read_vatic_rows(gt_file), homography)
        check_unique_ids(rows, gt_file)
        cameras.append(Camera(name, video, gt_file, homography_file, homography, rows))
    return cameras


# ---------------------------------------------------------------- writing the scene layout


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    length: int
    size: tuple[int, int]  # width, height


def video_info(path: Path) -> VideoInfo:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FileNotFoundError(f"{path}: cannot open the video")
    info = VideoInfo(capture.get(cv2.CAP_PROP_FPS) or 25.0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
                     (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))))
    capture.release()
    return info


def cut_rows(rows: np.ndarray, frames: FrameRange) -> np.ndarray:
    """MOT rows of video frames ``frames``, renumbered so that the range's first frame is frame 1."""
    index = rows[:, 0] - 1
    cut = rows[(index >= frames.start) & (index < frames.end)].copy()
    cut[:, 0] -= frames.start
    return cut


def link_video(source: Path, target: Path) -> None:
    target.unlink(missing_ok=True)  # never write through an old link into the original
    os.symlink(source.resolve(), target)


def write_cut(source: Path, frames: FrameRange, target: Path, info: VideoInfo, name: str) -> None:
    target.unlink(missing_ok=True)
    capture = cv2.VideoCapture(str(source))
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*CUT_FOURCC), info.fps, info.size)
    try:
        for index in tqdm(range(frames.end), desc=f"cut {name}", unit="frame", leave=False):
            ok, image = capture.read() if index >= frames.start else (capture.grab(), None)
            if not ok:
                raise FileNotFoundError(f"{source}: frame {index} cannot be read ({info.length} frames expected)")
            if image is not None:
                writer.write(image)
    finally:
        capture.release()
        writer.release()


def previous_cuts(out: Path) -> dict[str, tuple[str, int, int]]:
    """Camera -> (source video, first frame, frames) of the cuts an earlier write_scene left in ``out``: reused."""
    listing = out / "cameras.json"
    try:
        records = json.loads(listing.read_text()) if listing.is_file() else []
        return {r["name"]: (r["source_video"], r["first_frame"], r["frames"]) for r in records
                if (out / f"{r['name']}.mp4").is_file() and video_info(out / f"{r['name']}.mp4").length == r["frames"]}
    except (ValueError, KeyError, TypeError, FileNotFoundError):  # not a listing of ours: write everything anew
        return {}


def write_scene(cameras: list[Camera], out: str | Path, frames: FrameRange | None = None) -> list[dict]:
    """Write the cameras (cut to ``frames``, default all) in the make_multicam layout; one record per camera."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    previous = previous_cuts(out)
    records, mtmc = [], []
    for number, camera in enumerate(cameras, start=1):
        info = video_info(camera.video)
        span = (frames or FrameRange()).within(info.length)
        video = out / f"{camera.name}.mp4"
        if len(span) == info.length:
            link_video(camera.video, video)
        elif previous.get(camera.name) != (str(camera.video.resolve()), span.start, len(span)) or video.is_symlink():
            write_cut(camera.video, span, video, info, camera.name)
        rows = cut_rows(camera.gt, span)
        write_gt(rows, out / "gt" / camera.name, camera.name, info.fps, len(span), info.size)
        mtmc += mtmc_gt_lines(number, rows)
        records.append({"number": number, "name": camera.name, "video": str(video),
                        "source_video": str(camera.video.resolve()), "first_frame": span.start, "frames": len(span),
                        "fps": info.fps, "size": list(info.size), "gt_boxes": len(rows),
                        "identities": len(np.unique(rows[:, 1])), "homography_file": str(camera.homography_file),
                        "homography": camera.homography.tolist()})
    (out / "mtmc_gt.txt").write_text("\n".join(mtmc) + "\n")
    (out / "cameras.json").write_text(json.dumps(records, indent=2) + "\n")
    return records


def prepare_scene(out: str | Path, frames: FrameRange | None = None, folder: str | Path | None = None) -> list[dict]:
    """load_cameras(folder) then write_scene(out, frames)."""
    return write_scene(load_cameras(folder), out, frames)


def frame_range_arg(text: str) -> FrameRange:
    try:
        return parse_frame_range(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="scene folder to write")
    parser.add_argument("--data", default=None,
                        help=f"data root (default: $MTMC_DATA); the dataset is <data>/{DATASET}")
    parser.add_argument("--frames", type=frame_range_arg, default=None, metavar="START:END",
                        help="0-based video frames START..END-1 (default: all)")
    args = parser.parse_args(argv)
    folder = Path(args.data) / DATASET if args.data else default_folder()
    try:
        records = prepare_scene(args.out, args.frames, folder)
    except (UserError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for record in records:
        print(f"camera {record['number']} {record['name']}: {record['video']} (frames {record['first_frame']}.."
              f"{record['first_frame'] + record['frames'] - 1}), {record['gt_boxes']} gt boxes, "
              f"{record['identities']} identities")
    return 0


if __name__ == "__main__":
    sys.exit(main())
