"""Derive pseudo-cameras from one real video and its MOT ground truth.

Each camera is a crop window of the source (windows may overlap), shifted in time (``delay``: camera
frame i shows source frame i - delay, black outside the source), with colour/brightness changes, a
scale and an optional horizontal flip. Ground-truth ids are the source's, hence shared across cameras.

Writes under --out:
  <camera>.mp4                         one video per camera
  gt/<camera>/gt/gt.txt, seqinfo.ini   per-camera MOT ground truth (MOT tree: tools/eval_mtmc.py, evaluate_mot)
  mtmc_gt.txt                          AI City ``camera_id id frame x y w h xworld yworld`` (camera_id = position
                                       in the config, 1-based, like run_pipeline.py's mtmc.txt)
  mtmc_gt_people.txt                   the same with one id per person (the layout's ``people`` file), if it names one
  cameras.json                         the camera list as used

    python tools/make_multicam.py --config configs/multicam_pets3.yaml --out runs/multicam_pets3
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from configs import REPO_ROOT, ConfigError, build_dataclass, data_root, read_yaml, resolve_data_path
from pipeline.motio import MOTFormatError, read_mot_rows
from tools.datasets.people import PEOPLE_GT, join_people, load_people


@dataclass
class CameraSpec:
    name: str
    crop: list[int] = field(default_factory=list)  # x, y, w, h in source pixels; empty = whole frame
    delay: int = 0  # frames
    gains: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # B, G, R multipliers
    brightness: float = 0.0  # added after the gains
    scale: float = 1.0
    flip: bool = False


@dataclass
class MulticamConfig:
    video: str  # relative paths are under the data root ($MTMC_DATA)
    gt: str
    cameras: list[CameraSpec]
    frames: int = 0  # source frames used, 0 = all
    min_visibility: float = 0.5  # fraction of a gt box inside the window for it to count in that camera
    fourcc: str = "mp4v"
    # where the source gt gives one person several ids (re-entries): a people file (tools/datasets/people.py),
    # relative to the folder that holds configs/ (the checkout, or the installed package, which ships
    # configs/datasets/); adds mtmc_gt_people.txt with them joined
    people: str = ""


def load_config(path: str | Path, frames: int | None = None) -> MulticamConfig:
    values = read_yaml(path)
    cameras = values.pop("cameras", None)
    if not cameras:
        raise ConfigError(f"{path}: 'cameras' must list at least one camera")
    values["cameras"] = [build_dataclass(CameraSpec, c, f"{path}: cameras[{i}]") for i, c in enumerate(cameras)]
    config = build_dataclass(MulticamConfig, values, str(path))
    if frames is not None:
        config.frames = frames
    names = [c.name for c in config.cameras]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: camera names must be unique, got {names}")
    return config


def window_of(camera: CameraSpec, width: int, height: int) -> tuple[int, int, int, int]:
    x, y, w, h = camera.crop if camera.crop else (0, 0, width, height)
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > width or y + h > height:
        raise ConfigError(f"camera {camera.name}: crop {camera.crop} is not inside the {width}x{height} source")
    return x, y, w, h


def transform_image(image: np.ndarray, camera: CameraSpec, window: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = window
    view = image[y : y + h, x : x + w].astype(np.float32)
    view = np.clip(view * np.asarray(camera.gains, dtype=np.float32) + camera.brightness, 0, 255).astype(np.uint8)
    if camera.scale != 1.0:
        view = cv2.resize(view, output_size(camera, window), interpolation=cv2.INTER_AREA)
    return view[:, ::-1].copy() if camera.flip else view


def output_size(camera: CameraSpec, window: tuple[int, int, int, int]) -> tuple[int, int]:
    return int(round(window[2] * camera.scale)), int(round(window[3] * camera.scale))


def transform_gt(rows: np.ndarray, camera: CameraSpec, window: tuple[int, int, int, int], num_frames: int,
                 min_visibility: float) -> np.ndarray:
    """Source gt rows -> this camera's rows (frames shifted, boxes clipped to the window, scaled, flipped)."""
    x, y, w, h = window
    out = rows.copy()
    out[:, 0] = rows[:, 0] + camera.delay
    x1 = np.clip(rows[:, 2], x, x + w)
    y1 = np.clip(rows[:, 3], y, y + h)
    x2 = np.clip(rows[:, 2] + rows[:, 4], x, x + w)
    y2 = np.clip(rows[:, 3] + rows[:, 5], y, y + h)
    area = np.clip(rows[:, 4] * rows[:, 5], 1e-6, None)
    visible = (x2 - x1) * (y2 - y1) / area
    out[:, 2:6] = np.column_stack([x1 - x, y1 - y, x2 - x1, y2 - y1]) * camera.scale
    if camera.flip:
        out[:, 2] = w * camera.scale - out[:, 2] - out[:, 4]
    keep = (visible >= min_visibility) & (out[:, 0] >= 1) & (out[:, 0] <= num_frames)
    return out[keep]


def write_gt(rows: np.ndarray, folder: Path, name: str, fps: float, length: int, size: tuple[int, int]) -> None:
    (folder / "gt").mkdir(parents=True, exist_ok=True)
    lines = [",".join([str(int(r[0])), str(int(r[1])), *(f"{v:.2f}" for v in r[2:6]), *(f"{v:g}" for v in r[6:])])
             for r in rows[np.lexsort((rows[:, 1], rows[:, 0]))]]
    (folder / "gt" / "gt.txt").write_text("\n".join(lines) + "\n" if lines else "")
    (folder / "seqinfo.ini").write_text(
        f"[Sequence]\nname={name}\nimDir=img1\nframeRate={fps:g}\nseqLength={length}\n"
        f"imWidth={size[0]}\nimHeight={size[1]}\nimExt=.jpg\n"
    )


def mtmc_gt_lines(number: int, rows: np.ndarray) -> list[str]:
    world = rows[:, 7:9] if rows.shape[1] >= 9 else np.full((len(rows), 2), -1.0)
    return [f"{number} {int(r[1])} {int(r[0])} {r[2]:.2f} {r[3]:.2f} {r[4]:.2f} {r[5]:.2f} {wx:g} {wy:g}"
            for r, (wx, wy) in zip(rows, world)]


def read_source(video: Path, frames: int) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise FileNotFoundError(f"{video}: cannot open the source video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    images = []
    while not frames or len(images) < frames:
        ok, image = capture.read()
        if not ok:
            break
        images.append(image)
    capture.release()
    if not images:
        raise FileNotFoundError(f"{video}: no readable frames")
    return images, fps


def people_of(config: MulticamConfig, root: Path) -> dict[int, int]:
    """gt id -> person id from the layout's people file ({} without one); it must name the layout's gt."""
    if not config.people:
        return {}
    path = resolve_data_path(config.people, REPO_ROOT)
    if not path.is_file():
        raise ConfigError(f"people: {config.people}: no such file (relative paths are under {REPO_ROOT})")
    return load_people(path, root, resolve_data_path(config.gt, root))


def make_multicam(config: MulticamConfig, out_dir: Path, root: Path) -> list[dict]:
    """Write the cameras' videos and ground truth; returns one record per camera."""
    person_of = people_of(config, root)
    images, fps = read_source(resolve_data_path(config.video, root), config.frames)
    gt = read_mot_rows(resolve_data_path(config.gt, root))
    gt = gt[gt[:, 0] <= len(images)]
    height, width = images[0].shape[:2]
    out_dir.mkdir(parents=True, exist_ok=True)
    records, mtmc, mtmc_people = [], [], []
    for number, camera in enumerate(config.cameras, start=1):
        window = window_of(camera, width, height)
        size = output_size(camera, window)
        video_path = out_dir / f"{camera.name}.mp4"
        writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*config.fourcc), fps, size)
        black = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        for index in tqdm(range(len(images)), desc=camera.name, unit="frame"):
            source_index = index - camera.delay
            in_range = 0 <= source_index < len(images)
            writer.write(transform_image(images[source_index], camera, window) if in_range else black)
        writer.release()
        rows = transform_gt(gt, camera, window, len(images), config.min_visibility)
        write_gt(rows, out_dir / "gt" / camera.name, camera.name, fps, len(images), size)
        mtmc += mtmc_gt_lines(number, rows)
        mtmc_people += mtmc_gt_lines(number, join_people(rows, person_of)) if person_of else []
        records.append({"number": number, "video": str(video_path), "gt_boxes": len(rows),
                        "identities": len(np.unique(rows[:, 1])), **asdict(camera)})
    (out_dir / "mtmc_gt.txt").write_text("\n".join(mtmc) + "\n")
    if person_of:
        (out_dir / PEOPLE_GT).write_text("\n".join(mtmc_people) + "\n")
    else:  # a layout without re-entries to join: no file from an earlier layout may be scored
        (out_dir / PEOPLE_GT).unlink(missing_ok=True)
    (out_dir / "cameras.json").write_text(json.dumps(records, indent=2) + "\n")
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/multicam_pets3.yaml", help="camera layout YAML")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--data", default=None, help="data root for relative paths (default: $MTMC_DATA)")
    parser.add_argument("--frames", type=int, default=None, help="use only the first N source frames")
    args = parser.parse_args(argv)
    root = Path(args.data) if args.data else data_root()
    try:
        records = make_multicam(load_config(args.config, args.frames), Path(args.out), root)
    except (ConfigError, MOTFormatError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for record in records:
        print(f"camera {record['number']} {record['name']}: {record['video']}, {record['gt_boxes']} gt boxes, "
              f"{record['identities']} identities")
    return 0


if __name__ == "__main__":
    sys.exit(main())
