"""Pipeline outputs in one folder, flushed as the run goes so a crash leaves valid files behind.

- ``<camera>.txt``: MOTChallenge rows with global ids (appended as identities are assigned; rewritten
  sorted, with the final ids, when the run ends).
- ``mtmc.txt``: AI City ``camera_id id frame x y w h xworld yworld`` over all cameras (camera_id is the
  1-based position of the source on the command line; summary.json maps numbers to names).
- ``events.jsonl``: one JSON object a line (tracklet_finished, identity_assigned, identity_updated,
  identities_merged (live: an id found to be another's person; its tracks go on under that id), source_error, ...).
- ``tracklets/<camera>.txt`` (runs with a global pass only): MOT rows keyed by tracklet uid, the spool the
  final rewrite reads, so nothing of the run's boxes has to stay in memory.
- ``summary.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.motio import read_mot_rows


def _world(rows: np.ndarray) -> np.ndarray:
    """Columns 7-8 (ground x, y; -1 unknown) of MOT rows, -1 where the rows have none."""
    return rows[:, 7:9] if rows.shape[1] >= 9 else np.full((len(rows), 2), -1.0)


def _number(value: float) -> str:
    return "-1" if value == -1 else f"{value:.2f}"


def mot_lines(rows: np.ndarray) -> str:
    """MOTChallenge lines ``frame,id,x,y,w,h,score,x_world,y_world,-1`` (world -1 when unknown)."""
    return "".join(
        f"{int(r[0])},{int(r[1])},{r[2]:.2f},{r[3]:.2f},{r[4]:.2f},{r[5]:.2f},{r[6]:.3f},"
        f"{_number(w[0])},{_number(w[1])},-1\n" for r, w in zip(rows, _world(rows))
    )


def mtmc_lines(camera_number: int, rows: np.ndarray) -> str:
    """AI City lines ``camera_id id frame x y w h xworld yworld`` (world -1 when unknown)."""
    return "".join(
        f"{camera_number} {int(r[1])} {int(r[0])} {r[2]:.2f} {r[3]:.2f} {r[4]:.2f} {r[5]:.2f} "
        f"{_number(w[0])} {_number(w[1])}\n" for r, w in zip(rows, _world(rows))
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value != value:
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class OutputWriter:
    def __init__(self, out_dir: str | Path, camera_ids: Sequence[str], spool: bool = True):
        """``spool``: keep the uid-keyed rows a global pass needs (``finalise(final_ids)``); online runs,
        whose ids are final when written (but for live mode's merges, renamed by id), do without."""
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if spool:
            (self.out_dir / "tracklets").mkdir(exist_ok=True)
        self.camera_numbers = {camera: number for number, camera in enumerate(camera_ids, start=1)}
        self._mot = {c: self._open(f"{c}.txt") for c in camera_ids}
        self._spool = {c: self._open(f"tracklets/{c}.txt") for c in camera_ids} if spool else {}
        self._mtmc = self._open("mtmc.txt")
        self._events = self._open("events.jsonl")

    def _open(self, name: str):
        return (self.out_dir / name).open("w", buffering=1)

    def event(self, kind: str, **fields: Any) -> None:
        self._events.write(json.dumps({"event": kind, **fields}, default=_json_default) + "\n")

    def tracklet_rows(self, camera_id: str, uid: int, global_id: int, rows_for) -> None:
        """Write one assigned tracklet: ``rows_for(id)`` gives its MOT rows under an id."""
        if self._spool:
            self._spool[camera_id].write(mot_lines(rows_for(uid)))
        rows = rows_for(global_id)
        self._mot[camera_id].write(mot_lines(rows))
        self._mtmc.write(mtmc_lines(self.camera_numbers[camera_id], rows))

    def flush(self) -> None:
        for handle in [*self._mot.values(), *self._spool.values(), self._mtmc, self._events]:
            handle.flush()

    def finalise(self, final_ids: dict[int, int] | None, renamed: dict[int, int] | None = None) -> None:
        """Rewrite the per-camera and MTMC files sorted by frame, with ``final_ids`` (tracklet uid -> id)
        when a global pass changed ids, else with the ids already written (online runs), those in ``renamed``
        (id -> id: identities live mode merged) under their new id."""
        for handle in [*self._mot.values(), *self._spool.values(), self._mtmc]:
            handle.close()
        mtmc_text = []
        for camera, number in self.camera_numbers.items():
            spool = self.out_dir / "tracklets" / f"{camera}.txt"
            rows = read_mot_rows(spool if final_ids is not None else self.out_dir / f"{camera}.txt", min_columns=7)
            if len(rows):
                if final_ids is not None:
                    rows[:, 1] = [final_ids[int(uid)] for uid in rows[:, 1]]
                elif renamed:
                    rows[:, 1] = _renamed_ids(rows, renamed)
                rows = rows[np.lexsort((rows[:, 1], rows[:, 0]))]
            _replace(self.out_dir / f"{camera}.txt", mot_lines(rows))
            mtmc_text.append(mtmc_lines(number, rows))
        _replace(self.out_dir / "mtmc.txt", "".join(mtmc_text))

    def write_summary(self, summary: dict[str, Any]) -> None:
        _replace(self.out_dir / "summary.json", json.dumps(summary, indent=2, default=_json_default) + "\n")

    def close(self) -> None:
        for handle in [*self._mot.values(), *self._spool.values(), self._mtmc, self._events]:
            if not handle.closed:
                handle.close()


def _renamed_ids(rows: np.ndarray, renamed: dict[int, int]) -> np.ndarray:
    """One camera's MOT rows' ids with ``renamed`` applied, except on rows where the new id is already in that
    frame: live mode merges identities never seen in one camera at once within its memory (forget_after_s), and
    a long run's earlier rows may have seen them together."""
    ids = rows[:, 1].astype(np.int64)
    new = np.asarray([renamed.get(int(i), int(i)) for i in ids], dtype=np.int64)
    pairs = np.stack([rows[:, 0].astype(np.int64), new], axis=1)
    _, inverse, counts = np.unique(pairs, axis=0, return_inverse=True, return_counts=True)
    clash = counts[inverse.ravel()] > 1
    return np.where(clash, ids, new)


def _replace(path: Path, text: str) -> None:
    """Write via a temporary file so a reader never sees a half-written result."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
