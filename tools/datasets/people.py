"""Ground truth with one id per person: the ids a dataset gives one person who leaves the view and comes back,
joined.

MOTChallenge ground truth starts a new id when a person re-enters the view (single-camera MOT scores it so);
the product keeps the person's global id. A people file (configs/datasets/pets09_s2l1_people.yaml) lists the
groups of ids that are one person; make_multicam writes ``mtmc_gt_people.txt`` (``PEOPLE_GT``) with them
joined beside ``mtmc_gt.txt`` when its layout names one (``people:``), and the demo and the lab score both.

    python -m tools.datasets.people --montage runs/pets_people.png   # crops of every group, to check by eye
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from configs import REPO_ROOT, ConfigError, build_dataclass, data_root, read_yaml, resolve_data_path
from pipeline.motio import MOTFormatError, read_mot_rows

PEOPLE_GT = "mtmc_gt_people.txt"
PETS_PEOPLE = REPO_ROOT / "configs" / "datasets" / "pets09_s2l1_people.yaml"


@dataclass
class PeopleFile:
    gt: str  # the MOT ground truth whose ids the groups name; relative paths are under the data root
    same_person: list[list[int]]  # each: the ids of one person, earliest first


def load_people(path: str | Path, root: Path, gt: Path | None = None) -> dict[int, int]:
    """gt id -> person id (the first id of its group) for the grouped ids, checked against the ground truth.
    ``gt``, when given, is the ground truth the caller joins: it must be the file the people file names."""
    people = read_people(path)
    source = resolve_data_path(people.gt, root)
    if gt is not None and Path(gt).resolve() != source.resolve():
        raise ConfigError(f"{path}: names the ids of {source}, not of {gt}")
    try:
        rows = read_mot_rows(source)
    except MOTFormatError as err:
        raise ConfigError(f"{path}: gt: {err}") from None
    check_groups(people.same_person, rows, str(path))
    return {identity: group[0] for group in people.same_person for identity in group}


def read_people(path: str | Path) -> PeopleFile:
    values = read_yaml(path)
    if not isinstance(values.get("gt"), str) or not isinstance(values.get("same_person"), list):
        raise ConfigError(f"{path}: expected 'gt: <MOT gt file>' and 'same_person: [[id, id, ...], ...]'")
    return build_dataclass(PeopleFile, values, str(path))


def check_groups(groups: list[list[int]], rows: np.ndarray, source: str) -> None:
    """Each group: two or more ids of the ground truth, in no other group, never two of them in one frame."""
    frames = {int(i): set(rows[rows[:, 1] == i, 0].astype(int)) for i in np.unique(rows[:, 1])}
    group_of: dict[int, int] = {}
    for number, group in enumerate(groups):
        where = f"{source}: same_person[{number}] {group}"
        if not isinstance(group, list) or len(group) < 2 or not all(type(i) is int for i in group):
            raise ConfigError(f"{where}: expected a list of two or more integer ids")
        unknown = [i for i in group if i not in frames]
        if unknown:
            raise ConfigError(f"{where}: id(s) {unknown} are not in the ground truth")
        if len(set(group)) < len(group):
            raise ConfigError(f"{where}: an id listed twice")
        earlier = sorted(i for i in group if i in group_of)
        if earlier:
            raise ConfigError(f"{where}: id(s) {earlier} listed twice (also in same_person[{group_of[earlier[0]]}])")
        for position, first in enumerate(group):
            for second in group[position + 1:]:
                together = frames[first] & frames[second]
                if together:
                    raise ConfigError(f"{where}: ids {first} and {second} are both in frame {min(together)}, "
                                      "so they are two people")
        group_of.update({i: number for i in group})


def join_people(rows: np.ndarray, person_of: dict[int, int]) -> np.ndarray:
    """Rows (id in column 1) with every grouped id replaced by its person's id."""
    joined = rows.copy()
    joined[:, 1] = [person_of.get(int(i), int(i)) for i in rows[:, 1]]
    return joined


class ScenePeople(NamedTuple):
    gt: Path  # the scene's mtmc_gt_people.txt
    person_of: dict[int, int]  # gt id -> person id, for the ids it joined


def people_gt(scene: Path) -> ScenePeople | None:
    """The scene's one-id-per-person MTMC ground truth, where its source gives a person several ids; it must be
    the scene's mtmc_gt.txt row for row but the ids (not a file left by another scene)."""
    path = Path(scene) / PEOPLE_GT
    if not path.is_file():
        return None
    ids, people = (read_mot_rows(Path(scene) / name, min_columns=7) for name in ("mtmc_gt.txt", PEOPLE_GT))
    if ids.shape != people.shape or not np.array_equal(np.delete(ids, 1, axis=1), np.delete(people, 1, axis=1)):
        raise MOTFormatError(f"{path}: not the rows of {Path(scene) / 'mtmc_gt.txt'} with people's ids joined "
                             "(left from another scene? make the scene again)")
    return ScenePeople(path, {int(i): int(p) for i, p in zip(ids[:, 1], people[:, 1]) if i != p})


def draw_montage(path: str | Path, root: Path, out: Path, crops: int = 7) -> None:
    """One row of crops per listed id (spread over its frames), groups one under the other, for checking by eye."""
    import cv2

    people = read_people(path)
    gt_path = resolve_data_path(people.gt, root)
    rows = read_mot_rows(gt_path)
    videos = sorted(gt_path.parent.parent.glob("*.avi")) + sorted(gt_path.parent.parent.glob("*.mp4"))
    if not videos:
        raise FileNotFoundError(f"{gt_path.parent.parent}: no video beside the ground truth to cut crops from")
    wanted = {int(i): rows[rows[:, 1] == i] for group in people.same_person for i in group}
    picks = {i: r[np.linspace(0, len(r) - 1, crops).astype(int)] for i, r in wanted.items()}
    by_frame: dict[int, list[tuple[int, int, np.ndarray]]] = {}
    for identity, chosen in picks.items():
        for slot, row in enumerate(chosen):
            by_frame.setdefault(int(row[0]), []).append((identity, slot, row[2:6]))
    tiles: dict[tuple[int, int], np.ndarray] = {}
    capture, frame = cv2.VideoCapture(str(videos[0])), 0
    while by_frame and frame < max(by_frame):
        ok, image = capture.read()
        frame += 1
        if not ok:
            break
        height, width = image.shape[:2]
        for identity, slot, (x, y, w, h) in by_frame.get(frame, []):
            x1, y1 = min(max(int(x), 0), width), min(max(int(y), 0), height)
            crop = image[y1:min(int(y + h), height), x1:min(int(x + w), width)]
            if crop.size:  # a box outside the frame keeps its blank tile
                tiles[identity, slot] = cv2.resize(crop, (80, 200))
    blank = np.zeros((200, 80, 3), np.uint8)
    lines = []
    for group in people.same_person:
        for identity in group:
            label = np.zeros((200, 60, 3), np.uint8)
            cv2.putText(label, str(identity), (4, 110), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
            lines.append(np.hstack([label] + [tiles.get((identity, s), blank) for s in range(crops)]))
        lines.append(np.full((12, 60 + 80 * crops, 3), 255, np.uint8))
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.vstack(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", default=str(PETS_PEOPLE), help="people file (YAML)")
    parser.add_argument("--data", default=None, help="data root (default: $MTMC_DATA or ../shared/data)")
    parser.add_argument("--montage", required=True, help="PNG to write: crops of every listed id, by group")
    args = parser.parse_args(argv)
    root = Path(args.data) if args.data else data_root()
    try:
        load_people(args.people, root)
        draw_montage(args.people, root, Path(args.montage))
    except (ConfigError, MOTFormatError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.montage}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
