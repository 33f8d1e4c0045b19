"""Cut labelled tracklets out of real videos + MOT ground truth into the MARS video-ReID layout.

One identity's track is split in time into ``--segments`` parts; each part plays the role of a
camera, so a query (one part) must be matched against another part of the same person, never
against the frames next to it. Identities are split between train and test (disjoint), per video,
so every video contributes to both. Several ``--video/--gt`` pairs get consecutive pid ranges.

    python tools/make_reid_data.py \
        --video $D/PETS09-S2L1/PETS09-S2L1.avi --gt $D/PETS09-S2L1/gt/gt.txt \
        --video $D/TUD-Campus/TUD-Campus.mp4 --gt $D/TUD-Campus/gt/gt.txt --out runs/reid_data/mot15 \
        --people configs/datasets/pets09_s2l1_people.yaml   # PETS09's ids of one person who comes back: one identity
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from configs import ConfigError, data_root, resolve_data_path
from pipeline.motio import MOTFormatError, read_mot_rows
from reid.datasets import format_mars_name, write_mars_info, write_mars_query
from tools.datasets.people import join_people, load_people, read_people

MAX_TRACKLET_FRAMES = 999  # the F field of a MARS name has three digits


@dataclass(frozen=True)
class BoxFilter:
    min_height: int = 24
    min_width: int = 8
    min_visibility: float | None = None


@dataclass
class PlannedTracklet:
    pid: int
    camid: int
    tracklet_no: int
    frames: list[int]  # 0-based video frame indices
    boxes: list[tuple[int, int, int, int]]  # clipped x1, y1, x2, y2
    names: list[str] = field(default_factory=list)


@dataclass
class SourcePlan:
    video: Path
    gt: Path
    train: list[PlannedTracklet]
    test: list[PlannedTracklet]
    pid_of_track: dict[int, int]


def video_size(video: Path) -> tuple[int, int]:
    capture = cv2.VideoCapture(str(video))
    ok, frame = capture.read()
    capture.release()
    if not ok:
        raise SystemExit(f"error: --video {video}: cannot read a frame (missing file or unsupported codec)")
    return frame.shape[1], frame.shape[0]


def boxes_by_track(gt: Path, size: tuple[int, int], box_filter: BoxFilter, person_of: dict[int, int] | None = None
                   ) -> dict[int, list[tuple[int, tuple]]]:
    """Ground-truth rows grouped by track id: (0-based frame, clipped box), tiny/invisible boxes dropped.
    ``person_of`` (a people file's ids, tools/datasets/people.py) joins the ids of one person who came back."""
    rows = read_mot_rows(gt, min_columns=6)
    if person_of:
        rows = join_people(rows, person_of)
    if rows.shape[1] > 6:
        rows = rows[rows[:, 6] != 0]  # MOT gt "consider" flag: 0 marks ignore regions
    if box_filter.min_visibility is not None:
        rows = rows[_visibility(rows, gt) >= box_filter.min_visibility]
    tracks: dict[int, list[tuple[int, tuple]]] = {}
    for row in rows:
        box = clip_box(row[2:6], size)
        if box[3] - box[1] < box_filter.min_height or box[2] - box[0] < box_filter.min_width:
            continue
        tracks.setdefault(int(row[1]), []).append((int(row[0]) - 1, box))
    return {tid: sorted(items) for tid, items in sorted(tracks.items())}


def _visibility(rows: np.ndarray, gt: Path) -> np.ndarray:
    """MOT16+ gt column 9 is visibility in [0, 1]; MOT15 gt has world coordinates there instead."""
    if rows.shape[1] < 9 or rows[:, 8].min() < 0 or rows[:, 8].max() > 1:
        raise SystemExit(f"error: --min-visibility: {gt} has no visibility column (column 9 in [0, 1], MOT16+ gt)")
    return rows[:, 8]


def clip_box(xywh: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int]:
    width, height = size
    x1, y1 = max(0, int(round(xywh[0]))), max(0, int(round(xywh[1])))
    x2 = min(width, int(round(xywh[0] + xywh[2])))
    y2 = min(height, int(round(xywh[1] + xywh[3])))
    return x1, y1, x2, y2


def split_in_time(items: list, segments: int) -> list[list]:
    """Equal consecutive parts of a time-ordered list (the first parts get the remainder)."""
    return [[items[i] for i in part] for part in np.array_split(np.arange(len(items)), segments)]


def chop(items: list, max_len: int) -> list[list]:
    return [items[i : i + max_len] for i in range(0, len(items), max_len)]


def split_identities(track_ids: list[int], test_fraction: float, rng: np.random.Generator) -> tuple[set, set]:
    order = list(rng.permutation(track_ids))
    num_test = int(round(test_fraction * len(order)))
    if len(order) >= 2:
        num_test = min(max(num_test, 1), len(order) - 1)  # both splits non-empty when possible
    return set(order[num_test:]), set(order[:num_test])


def plan_source(
    video: Path, gt: Path, first_pid: int, args: argparse.Namespace, rng: np.random.Generator,
    person_of: dict[int, int] | None = None,
) -> SourcePlan:
    tracks = boxes_by_track(gt, video_size(video), BoxFilter(args.min_height, args.min_width, args.min_visibility),
                            person_of)
    tracklets_of: dict[int, list[tuple[int, list]]] = {}
    for tid, items in tracks.items():
        parts = [(cam, p) for cam, seg in enumerate(split_in_time(items, args.segments), 1) for p in chop(seg, MAX_TRACKLET_FRAMES)]
        kept = [(cam, p) for cam, p in parts if len(p) >= args.min_frames]
        if kept:
            tracklets_of[tid] = kept
    train_ids, test_ids = split_identities(sorted(tracklets_of), args.test_fraction, rng)
    pid_of_track = {tid: first_pid + i for i, tid in enumerate(sorted(tracklets_of))}
    plan = SourcePlan(video, gt, [], [], pid_of_track)
    for tid, parts in tracklets_of.items():
        target = plan.test if tid in test_ids else plan.train
        for number, (cam, items) in enumerate(parts, start=1):
            target.append(PlannedTracklet(pid_of_track[tid], cam, number, [f for f, _ in items], [b for _, b in items]))
    return plan


def write_crops(plan: SourcePlan, out: Path, jpeg_quality: int) -> None:
    """Read the video once, front to back, and write every planned crop."""
    wanted: dict[int, list[tuple[tuple, Path]]] = {}
    for split, tracklets in (("bbox_train", plan.train), ("bbox_test", plan.test)):
        for t in tracklets:
            t.names = [format_mars_name(t.pid, t.camid, t.tracklet_no, i) for i in range(1, len(t.frames) + 1)]
            folder = out / split / f"{t.pid:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            for frame, box, name in zip(t.frames, t.boxes, t.names):
                wanted.setdefault(frame, []).append((box, folder / name))
    capture = cv2.VideoCapture(str(plan.video))
    last = max(wanted) if wanted else -1
    for index in tqdm(range(last + 1), desc=f"crops {plan.video.name}", unit="frame"):
        ok, image = capture.read()
        if not ok:
            raise SystemExit(f"error: {plan.video}: video ends at frame {index} but {plan.gt} labels frame {last + 1}")
        for (x1, y1, x2, y2), path in wanted.get(index, []):
            cv2.imwrite(str(path), image[y1:y2, x1:x2], [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    capture.release()


def track_rows(tracklets: list[PlannedTracklet]) -> tuple[list[str], np.ndarray]:
    names: list[str] = []
    rows = []
    for t in tracklets:
        rows.append((len(names) + 1, len(names) + len(t.names), t.pid, t.camid))
        names.extend(t.names)
    return names, np.asarray(rows, dtype=np.int64).reshape(-1, 4)


def query_rows(test_rows: np.ndarray) -> np.ndarray:
    """1-based rows: the first tracklet of each (pid, camera) whose pid is seen in another camera too."""
    cams_of: dict[int, set] = {}
    for _, _, pid, cam in test_rows:
        cams_of.setdefault(int(pid), set()).add(int(cam))
    chosen, seen = [], set()
    for row_no, (_, _, pid, cam) in enumerate(test_rows, start=1):
        if len(cams_of[int(pid)]) > 1 and (pid, cam) not in seen:
            seen.add((pid, cam))
            chosen.append(row_no)
    return np.asarray(chosen, dtype=np.int64)


def make_dataset(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    if (out / "info").exists():
        raise SystemExit(f"error: --out {out}: already holds a dataset (info/); delete it or choose another folder")
    rng = np.random.default_rng(args.seed)
    plans: list[SourcePlan] = []
    next_pid = 1
    people = people_by_gt(args.people, args.gt)
    for video, gt in zip(args.video, args.gt):
        plans.append(plan_source(Path(video), Path(gt), next_pid, args, rng, people.get(gt)))
        next_pid += len(plans[-1].pid_of_track)
    for plan in plans:
        write_crops(plan, out, args.jpeg_quality)
    train_names, train_rows = track_rows([t for p in plans for t in p.train])
    test_names, test_rows = track_rows([t for p in plans for t in p.test])
    write_mars_info(out / "info", "train", train_names, train_rows)
    write_mars_info(out / "info", "test", test_names, test_rows)
    write_mars_query(out / "info", query_rows(test_rows))
    write_sources(out / "info" / "sources.txt", plans)
    print(
        f"wrote {out}: train {len(train_rows)} tracklets / {len(set(train_rows[:, 2]))} ids / {len(train_names)} frames; "
        f"test {len(test_rows)} tracklets / {len(set(test_rows[:, 2]))} ids / {len(test_names)} frames; "
        f"{len(query_rows(test_rows))} queries"
    )
    return out


def people_by_gt(people_files: list[str], gts: list[str]) -> dict[str, dict[int, int]]:
    """--gt path -> its people file's id map, for each --people (which must name one of the --gt files)."""
    maps = {}
    for path in people_files:
        named = resolve_data_path(read_people(path).gt, data_root()).resolve()
        gt = next((g for g in gts if Path(g).resolve() == named), None)
        if gt is None:
            raise ConfigError(f"--people {path}: names the ids of {named}, which is none of the --gt files")
        if gt in maps:
            raise ConfigError(f"--people {path}: a second people file for --gt {gt}")
        maps[gt] = load_people(path, data_root())
    return maps


def write_sources(path: Path, plans: list[SourcePlan]) -> None:
    """Provenance: which video and gt track id each pid came from, and its split."""
    lines = ["pid split video gt_track_id"]
    for plan in plans:
        test_pids = {t.pid for t in plan.test}
        for tid, pid in plan.pid_of_track.items():
            lines.append(f"{pid} {'test' if pid in test_pids else 'train'} {plan.video} {tid}")
    path.write_text("\n".join(lines) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", action="append", required=True, help="video file; repeat, paired in order with --gt")
    parser.add_argument("--gt", action="append", required=True, help="MOT gt.txt of the video (frame i+1 = video frame i)")
    parser.add_argument("--out", required=True, help="output dataset folder (keep it out of git, e.g. under runs/)")
    parser.add_argument("--test-fraction", type=float, default=0.5, help="share of identities held out for testing")
    parser.add_argument("--segments", type=int, default=2, help="time segments per track; each is one 'camera'")
    parser.add_argument("--min-frames", type=int, default=8, help="drop tracklets shorter than this")
    parser.add_argument("--min-height", type=int, default=24, help="skip boxes lower than this (pixels, after clipping)")
    parser.add_argument("--min-width", type=int, default=8, help="skip boxes narrower than this (pixels, after clipping)")
    parser.add_argument("--min-visibility", type=float, default=None, help="drop gt boxes below this visibility (MOT16+ gt)")
    parser.add_argument("--people", action="append", default=[],
                        help="people file (configs/datasets/pets09_s2l1_people.yaml) of one --gt: the ids it gives one "
                             "person who comes back are one identity")
    parser.add_argument("--jpeg-quality", type=int, default=95)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if len(args.video) != len(args.gt):
        parser.error(f"--video given {len(args.video)} times but --gt {len(args.gt)} times; pass them in pairs")
    if not 0 < args.test_fraction < 1:
        parser.error(f"--test-fraction must lie in (0, 1), got {args.test_fraction}")
    if not 1 <= args.segments <= 9:
        parser.error(f"--segments must be 1..9 (the camera digit of a MARS name), got {args.segments}")
    if args.min_frames < 1:
        parser.error(f"--min-frames must be >= 1, got {args.min_frames}")
    for flag, paths in (("--video", args.video), ("--gt", args.gt)):
        for p in paths:
            if not Path(p).is_file():
                parser.error(f"{flag} {p}: file not found")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        make_dataset(args)
    except (MOTFormatError, ConfigError) as err:
        raise SystemExit(f"error: {err}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
