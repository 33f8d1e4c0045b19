"""Readers for video ReID datasets on disk, all returning the same typed records.

Layouts:
- MARS: ``bbox_train/``, ``bbox_test/`` (images in ``<pid4>/`` sub-folders as MARS ships them,
  or flat), named ``PPPPCcTttttFfff.jpg``; ``info/`` holds ``train_name.txt``,
  ``test_name.txt``, ``tracks_train_info.mat`` / ``tracks_test_info.mat`` (rows: start, end,
  pid, camid; 1-based into the name list) and ``query_IDX.mat`` (1-based rows of the test tracks).
  As in MARS's own evaluation, the gallery is every test tracklet (a query finds itself only as a
  same-identity same-camera entry, which the metric ignores).
- DukeMTMC-VideoReID: ``train/``, ``query/``, ``gallery/`` -> ``<pid>/<tracklet>/<frame>.jpg``,
  the camera read from the frame name (``0001_C6_F0001_X00001.jpg``).
- CUHK03 (one camera pair, images as in ``../shared/data/reid/cuhk03``): ``train/`` and ``val/`` of
  ``PPPP_KK.jpg`` (person PPPP, image KK: 00-04 camera A, 05-09 camera B). The images of one person in
  one camera make one tracklet (camera A = 1, B = 2). The root gives train = ``train/``, query = camera-A
  tracklets of ``val/``, gallery = camera-B ones; one split folder alone gives all its tracklets as train
  and its A/B tracklets as query/gallery.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

MARS_NAME = re.compile(r"^(?P<pid>\d{4}|00-1)C(?P<cam>\d)T(?P<tracklet>\d{4})F(?P<frame>\d{3})\.jpg$")
DUKE_CAMERA = re.compile(r"_C(\d+)_")
CUHK03_NAME = re.compile(r"^(?P<pid>\d{4})_(?P<image>\d{2})\.jpg$")
CUHK03_IMAGES_PER_CAMERA = 5  # images 00-04: camera A, 05-09: camera B
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class DatasetError(ValueError):
    """A dataset folder that does not have the expected layout; the message names the path."""


@dataclass(frozen=True)
class TrackletRecord:
    """One tracklet: its frame image paths in temporal order, identity and camera."""

    paths: tuple[str, ...]
    pid: int
    camid: int


@dataclass(frozen=True)
class VideoReIDDataset:
    name: str
    root: str
    train: tuple[TrackletRecord, ...]
    query: tuple[TrackletRecord, ...]
    gallery: tuple[TrackletRecord, ...]

    @property
    def train_pids(self) -> list[int]:
        return sorted({t.pid for t in self.train})

    def summary(self) -> str:
        def part(name: str, records: tuple[TrackletRecord, ...]) -> str:
            frames = sum(len(t.paths) for t in records)
            return f"{name}: {len(records)} tracklets, {len({t.pid for t in records})} ids, {frames} frames"

        return f"{self.name} ({self.root}) | " + " | ".join(
            part(n, r) for n, r in (("train", self.train), ("query", self.query), ("gallery", self.gallery))
        )


def load_dataset(root: str | Path) -> VideoReIDDataset:
    """Detect the layout of ``root`` (MARS or DukeMTMC-VideoReID) and read it."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    if (root / "info").is_dir() or (root / "bbox_train").is_dir():
        return read_mars(root)
    if (root / "query").is_dir() or (root / "gallery").is_dir():
        return read_duke_video(root)
    if _has_cuhk03_images(root) or _has_cuhk03_images(root / "train"):
        return read_cuhk03(root)
    raise DatasetError(f"{root}: neither a MARS layout (info/, bbox_train/), DukeMTMC-VideoReID (train/, query/, "
                       "gallery/) nor CUHK03 (train/, val/ of PPPP_KK.jpg)")


# ---------------------------------------------------------------- MARS


def read_mars(root: str | Path) -> VideoReIDDataset:
    root = Path(root)
    info = _require_dir(root / "info")
    train_names = _read_names(info / "train_name.txt")
    test_names = _read_names(info / "test_name.txt")
    train_tracks = _read_mat_array(info / "tracks_train_info.mat", ("track_train_info", "tracks_train_info"))
    test_tracks = _read_mat_array(info / "tracks_test_info.mat", ("track_test_info", "tracks_test_info"))
    query_rows = _read_mat_array(info / "query_IDX.mat", ("query_IDX",)).astype(int).ravel() - 1
    if len(query_rows) and (query_rows.min() < 0 or query_rows.max() >= len(test_tracks)):
        raise DatasetError(f"{info / 'query_IDX.mat'}: indices must lie in 1..{len(test_tracks)}")
    train = _mars_tracklets(_require_dir(root / "bbox_train"), train_names, train_tracks, info / "tracks_train_info.mat")
    test = _mars_tracklets(_require_dir(root / "bbox_test"), test_names, test_tracks, info / "tracks_test_info.mat")
    train = tuple(t for t in train if t.pid >= 0)
    query = tuple(test[i] for i in query_rows)
    return VideoReIDDataset("mars", str(root), train, query, tuple(test))


def parse_mars_name(name: str) -> tuple[int, int, int, int]:
    """``0002C1T0012F001.jpg`` -> (pid 2, camera 1, tracklet 12, frame 1); ``00-1`` is pid -1."""
    match = MARS_NAME.match(name)
    if not match:
        raise DatasetError(f"{name!r} is not a MARS image name PPPPCcTttttFfff.jpg")
    pid = -1 if match["pid"] == "00-1" else int(match["pid"])
    return pid, int(match["cam"]), int(match["tracklet"]), int(match["frame"])


def format_mars_name(pid: int, camid: int, tracklet: int, frame: int) -> str:
    if not (0 <= pid <= 9999 and 1 <= camid <= 9 and 0 <= tracklet <= 9999 and 1 <= frame <= 999):
        raise DatasetError(f"cannot name pid={pid} cam={camid} tracklet={tracklet} frame={frame} in the MARS format")
    return f"{pid:04d}C{camid}T{tracklet:04d}F{frame:03d}.jpg"


def write_mars_info(info_dir: Path, split: str, names: list[str], tracks: np.ndarray) -> None:
    """Write ``<split>_name.txt`` and ``tracks_<split>_info.mat`` (key ``track_<split>_info`` as MARS)."""
    info_dir.mkdir(parents=True, exist_ok=True)
    (info_dir / f"{split}_name.txt").write_text("".join(n + "\n" for n in names))
    scipy.io.savemat(info_dir / f"tracks_{split}_info.mat", {f"track_{split}_info": tracks.astype(np.float64)})


def write_mars_query(info_dir: Path, query_rows_1based: np.ndarray) -> None:
    scipy.io.savemat(info_dir / "query_IDX.mat", {"query_IDX": np.asarray(query_rows_1based, dtype=np.float64)[None, :]})


def _mars_tracklets(image_dir: Path, names: list[str], tracks: np.ndarray, source: Path) -> list[TrackletRecord]:
    if tracks.ndim != 2 or tracks.shape[1] < 4:
        raise DatasetError(f"{source}: expected rows of (start, end, pid, camid), got shape {tracks.shape}")
    records = []
    for row_no, (start, end, pid, camid) in enumerate(tracks[:, :4].astype(int), start=1):
        if not 1 <= start <= end <= len(names):
            raise DatasetError(f"{source}: row {row_no} spans {start}..{end}, outside 1..{len(names)} names")
        paths = tuple(_mars_image_path(image_dir, n) for n in names[start - 1 : end])
        records.append(TrackletRecord(paths, int(pid), int(camid)))
    return records


def _mars_image_path(image_dir: Path, name: str) -> str:
    nested = image_dir / name[:4] / name
    if nested.is_file():
        return str(nested)
    flat = image_dir / name
    if flat.is_file():
        return str(flat)
    raise DatasetError(f"{nested}: image listed in the name file not found (nor {flat})")


def _read_names(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _read_mat_array(path: Path, keys: tuple[str, ...]) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        content = scipy.io.loadmat(path)
    except (ValueError, OSError) as err:
        raise DatasetError(f"{path}: not a readable .mat file: {err}") from None
    for key in keys:
        if key in content:
            return np.atleast_2d(content[key])
    found = sorted(k for k in content if not k.startswith("__"))
    raise DatasetError(f"{path}: none of the keys {list(keys)} found (has {found})")


# ---------------------------------------------------------------- CUHK03 (image pairs as short tracklets)


def read_cuhk03(root: str | Path) -> VideoReIDDataset:
    """The CUHK03 root (train/ + val/) or one of its split folders; see the module docstring."""
    root = Path(root)
    if _has_cuhk03_images(root):
        tracklets = cuhk03_tracklets(root)
        train, test = tracklets, tracklets
    else:
        train = cuhk03_tracklets(_require_dir(root / "train"))
        test = cuhk03_tracklets(_require_dir(root / "val"))
    query = tuple(t for t in test if t.camid == 1)
    gallery = tuple(t for t in test if t.camid == 2)
    return VideoReIDDataset("cuhk03", str(root), train, query, gallery)


def cuhk03_tracklets(split_dir: Path) -> tuple[TrackletRecord, ...]:
    """One tracklet per (person, camera), frames in image order."""
    frames: dict[tuple[int, int], list[str]] = {}
    for path in sorted(split_dir.iterdir()):
        match = CUHK03_NAME.match(path.name)
        if match is None:
            continue
        camid = 1 if int(match["image"]) < CUHK03_IMAGES_PER_CAMERA else 2
        frames.setdefault((int(match["pid"]), camid), []).append(str(path))
    if not frames:
        raise DatasetError(f"{split_dir}: no CUHK03 images named PPPP_KK.jpg")
    return tuple(TrackletRecord(tuple(paths), pid, camid) for (pid, camid), paths in sorted(frames.items()))


def _has_cuhk03_images(folder: Path) -> bool:
    return folder.is_dir() and any(CUHK03_NAME.match(p.name) for p in folder.iterdir())


# ---------------------------------------------------------------- DukeMTMC-VideoReID


def read_duke_video(root: str | Path) -> VideoReIDDataset:
    root = Path(root)
    splits = {name: _duke_split(_require_dir(root / name)) for name in ("train", "query", "gallery")}
    return VideoReIDDataset("dukemtmc-videoreid", str(root), splits["train"], splits["query"], splits["gallery"])


def _duke_split(split_dir: Path) -> tuple[TrackletRecord, ...]:
    records = []
    for pid_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        pid = _int_folder(pid_dir)
        for tracklet_dir in sorted(p for p in pid_dir.iterdir() if p.is_dir()):
            frames = sorted(str(p) for p in tracklet_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not frames:
                raise DatasetError(f"{tracklet_dir}: tracklet folder holds no images")
            records.append(TrackletRecord(tuple(frames), pid, _duke_camera(Path(frames[0]))))
    if not records:
        raise DatasetError(f"{split_dir}: no <pid>/<tracklet>/<frame>.jpg found")
    return tuple(records)


def _duke_camera(frame: Path) -> int:
    match = DUKE_CAMERA.search(frame.name)
    if not match:
        raise DatasetError(f"{frame}: cannot read the camera from the name (expected e.g. 0001_C6_F0001_X00001.jpg)")
    return int(match.group(1))


def _int_folder(path: Path) -> int:
    try:
        return int(path.name)
    except ValueError:
        raise DatasetError(f"{path}: identity folder name must be an integer") from None


def _require_dir(path: Path) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: required folder not found")
    return path
