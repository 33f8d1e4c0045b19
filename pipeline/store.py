"""The identity store: identities that survive restarts, in one SQLite file (Python's sqlite3, no server).

    store = IdentityStore(path)                      # locks the file (a second run is refused), migrates it
    resume = store.begin_run(config, model, sources) # the run's clock offset, stored identities, next id
    store.save_batch(sightings, identities, state)   # one transaction per assigned batch
    store.save_final(final_ids, identities, state)   # file runs: the offline pass's ids, one transaction
    store.save_views(overlaps)                       # camera pairs whose views were learned to overlap
    store.end_run(colour_stats); store.close()
    IdentityStore(path, readonly=True)               # queries (tools/identities.py): no lock, never written

Tables: ``identities`` (global id, first / last seen, the bounded gallery of embeddings and per-entry mean
per-crop features the online associator matches against, per-camera spans), ``sightings`` (one per tracklet:
camera, local track, times, frames, global id, how it was assigned, distance, one JPEG thumbnail),
``runs`` (start, end, config, the ReID model that embedded), ``metric_crops`` (the per-crop features of the
newest ``association.metric_window`` tracklets, so a resumed run refits the same online scene metric) and
``state`` (next global id, the store clock, the embedding centre, the model, cameras' colour statistics, and
the mappings between views learned to overlap: cameras do not move, so a run that resumes starts with them
instead of learning them again; a live run without calibration learned them only after 33 s of EPFL Terrace).

The store clock: each run's tracklet times are shifted by ``clock_offset`` = the store clock's end so far +
RUN_GAP_S, so the periods of runs never overlap and files can be chained like live restarts (a resumed
identity can never look busy, and ``forget_after_s`` counts store-clock time: a restart's downtime is not
counted). Wall times (shown by queries, used by ``retention_days``) are the run's start time + its source
clock, the start moved past the previous run's last wall time when a file run went faster than real time (so
that they too never overlap between runs). Resumed identities come back without their spans: a restart breaks
every local track, so neither the one-place-at-once rule nor transition windows apply across it.

Safety: WAL mode; a batch is committed before the runner writes its events, so every ``identity_assigned``
line of events.jsonl has its sighting here even after ``kill -9``. Synchronous NORMAL: a commit is in the OS
when it returns (it survives the process however it dies, as events.jsonl does) but not fsynced, so a power
cut may lose the last batches of both; FULL's fsync per batch stalled live loops on a loaded disk. A file written by a
newer schema, a corrupted file or another application's SQLite file is refused and left untouched; a
second process opening the store for writing is refused by an flock on ``<store>.lock`` (released by the OS
when the holder dies).
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import socket
import sqlite3
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np

from configs import UserError
from pipeline.association.constraints import add_span
from pipeline.association.online import Identity
from pipeline.association.overlap import CameraOverlap
from pipeline.association.scene_metric import CropGroup

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
APPLICATION_ID = 0x4D544D43  # "MTMC": tells our files from other SQLite files
RUN_GAP_S = 1.0  # store-clock seconds between the end of one run and the start of the next
PRUNE_EVERY_S = 3600.0  # a live run that never ends prunes old sightings this often (wall clock)
MAX_SPANS_PER_CAMERA = 100  # newest spans kept per identity and camera (queries only)
SECONDS_PER_DAY = 86400.0

MIGRATIONS = {  # schema version -> the SQL that makes it from the previous one
    1: """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,          -- unix time
    ended_at REAL,
    status TEXT NOT NULL,              -- running | ended | interrupted
    clock_offset REAL NOT NULL,        -- store clock at the run's source time 0
    clock_end REAL NOT NULL,           -- latest store-clock time of its sightings
    wall_origin REAL NOT NULL,         -- unix time of the run's source time 0
    pid INTEGER,
    sources TEXT NOT NULL,             -- JSON list
    config TEXT NOT NULL,              -- JSON PipelineConfig
    model TEXT NOT NULL                -- JSON: the ReID model that embedded
);
CREATE TABLE identities (
    global_id INTEGER PRIMARY KEY,
    first_seen REAL NOT NULL,          -- store clock
    last_seen REAL NOT NULL,
    first_wall REAL NOT NULL,          -- unix time
    last_wall REAL NOT NULL,
    gallery BLOB,                      -- .npy (G, D) float32 unit embeddings, oldest first
    crop_means BLOB,                   -- .npy (G, C) float16 mean per-crop feature per entry (nan row: none)
    spans TEXT NOT NULL,               -- JSON camera -> [[start, end], ...] (store clock)
    run_id INTEGER                     -- the last run that saw it
);
CREATE TABLE sightings (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    uid INTEGER NOT NULL,              -- the tracklet's uid in its run's events.jsonl
    camera TEXT NOT NULL,
    track_id INTEGER NOT NULL,
    part INTEGER NOT NULL,
    start_time REAL NOT NULL,          -- store clock
    end_time REAL NOT NULL,
    start_wall REAL NOT NULL,          -- unix time
    end_wall REAL NOT NULL,
    first_frame INTEGER NOT NULL,      -- 1-based, as in events.jsonl
    last_frame INTEGER NOT NULL,
    frames INTEGER NOT NULL,           -- boxes
    global_id INTEGER NOT NULL,        -- final (after a file run's offline pass)
    online_id INTEGER NOT NULL,        -- as identity_assigned gave it
    how TEXT NOT NULL,                 -- matched | new | continued | relinked
    distance REAL,
    space TEXT,
    thumbnail BLOB,                    -- JPEG
    UNIQUE (run_id, uid)
);
CREATE INDEX sightings_by_identity ON sightings (global_id, start_time);
CREATE INDEX sightings_by_wall ON sightings (end_wall);
CREATE TABLE metric_crops (
    sighting_id INTEGER PRIMARY KEY,
    camera TEXT NOT NULL,
    track_id INTEGER NOT NULL,
    start_time REAL NOT NULL,
    end_time REAL NOT NULL,
    features BLOB NOT NULL             -- .npy (C, D) float16
);
CREATE TABLE state (key TEXT PRIMARY KEY, value);
""",
}


class StoreError(UserError):
    """An identity store that cannot be used as asked; the message names the file and what to do."""


# ---- records ---------------------------------------------------------------------------------------------
@dataclass
class Sighting:
    """One assigned tracklet as the store keeps it (times on the store clock)."""

    uid: int
    camera_id: str
    track_id: int
    part: int
    start_time: float
    end_time: float
    first_frame: int
    last_frame: int
    frames: int
    global_id: int
    how: str
    distance: float
    space: str = ""
    thumbnail: bytes | None = None
    metric_crops: np.ndarray | None = None  # (C, D) per-crop features for the online scene metric


@dataclass
class AssociatorState:
    """What the online associator needs besides its identities to go on where it stopped."""

    next_id: int = 1
    centre_total: np.ndarray | None = None
    centre_count: int = 0


@dataclass
class Resume:
    """What a run takes from the store when it begins."""

    run_id: int
    clock_offset: float
    identities: list[Identity] = field(default_factory=list)
    metric_groups: list[CropGroup] = field(default_factory=list)
    state: AssociatorState = field(default_factory=AssociatorState)
    views: list[CameraOverlap] = field(default_factory=list)  # learned overlapping views, source "store"


def encode_array(values: np.ndarray | None) -> bytes | None:
    if values is None:
        return None
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(values), allow_pickle=False)
    return buffer.getvalue()


def decode_array(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.load(io.BytesIO(blob), allow_pickle=False)


def thumbnail_jpeg(crop: np.ndarray, height: int, quality: int) -> bytes | None:
    """The crop scaled to ``height`` pixels (aspect kept) as JPEG bytes; None for an empty crop."""
    if crop is None or crop.size == 0:
        return None
    scale = height / crop.shape[0]
    size = (max(1, round(crop.shape[1] * scale)), height)
    resized = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    ok, data = cv2.imencode(".jpg", resized, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return data.tobytes() if ok else None


def model_key(info: dict[str, Any]) -> str:
    """What makes two models' embeddings comparable: name, dimension and the weights' digest, or without one
    the training data (not the file's path, which differs between machines)."""
    keys = ("model", "embedding_dim") + (("sha256",) if info.get("sha256") else ("training_data",))
    return json.dumps({k: info.get(k) for k in keys}, sort_keys=True)


def describe_model(embedder: Any) -> dict[str, Any]:
    """reid.Embedder.model_info plus the embedding dimension; a stand-in embedder is named by its class."""
    info = dict(getattr(embedder, "model_info", None) or {})
    info.setdefault("model", f"{type(embedder).__module__}.{type(embedder).__qualname__}")
    info["embedding_dim"] = getattr(embedder, "embedding_dim", None)
    return info


def _gallery_arrays(identity: Identity) -> tuple[np.ndarray | None, np.ndarray | None]:
    if not identity.gallery:
        return None, None
    gallery = np.asarray(identity.gallery, dtype=np.float32)
    present = [m for m in identity.crop_means if m is not None]
    if not present:
        return gallery, None
    means = np.full((len(identity.crop_means), len(present[0])), np.nan, dtype=np.float16)
    for row, mean in enumerate(identity.crop_means):
        if mean is not None:
            means[row] = mean
    return gallery, means


def identity_from_row(global_id: int, last_seen: float, gallery: bytes | None, crop_means: bytes | None,
                      gallery_size: int) -> Identity:
    """A stored identity as the online associator holds it: gallery and crop means, no spans (see above)."""
    vectors, means = decode_array(gallery), decode_array(crop_means)
    rows = [] if vectors is None else list(vectors)
    mean_rows = [None if means is None or np.isnan(means[r]).any() else means[r].astype(np.float32)
                 for r in range(len(rows))]
    return Identity(global_id, deque(rows, maxlen=gallery_size), deque(mean_rows, maxlen=gallery_size),
                    last_seen=last_seen)


def merge_spans(stored: dict[str, list], new: dict[str, list]) -> dict[str, list]:
    spans = {camera: [tuple(s) for s in values] for camera, values in stored.items()}
    for camera, values in new.items():
        for start, end in values:
            add_span(spans.setdefault(camera, []), start, end)
    return {camera: [list(s) for s in values[-MAX_SPANS_PER_CAMERA:]] for camera, values in spans.items()}


# ---- the store -------------------------------------------------------------------------------------------
class IdentityStore:
    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self.run: dict[str, Any] | None = None  # the run begun by this process
        self._lock = None
        self._last_prune = 0.0
        self.retention_days = 0.0
        self.metric_window = 0
        if readonly:
            if not self.path.is_file():
                raise StoreError(f"{self.path}: no identity store there")
            self._db = self._connect(f"file:{self.path}?mode=ro", uri=True)
            self._check()
        else:
            self._lock = _take_lock(self.path)
            try:
                self._db = self._connect(str(self.path))
                self._check()
                self._migrate()
            except BaseException:
                self._release()
                raise

    def _connect(self, target: str, uri: bool = False) -> sqlite3.Connection:
        try:
            return sqlite3.connect(target, uri=uri, isolation_level=None, timeout=30.0)
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: cannot open the identity store ({err})") from None

    def _check(self) -> None:
        """Refuse, without writing anything, a file that is not an identity store this version can use."""
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            application = self._db.execute("PRAGMA application_id").fetchone()[0]
            tables = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            health = "ok" if self.readonly else self._db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{self.path}: not a readable identity store ({err}); the file was left untouched") \
                from None
        if tables and application != APPLICATION_ID:
            raise StoreError(f"{self.path}: a SQLite file of another application, not an identity store; "
                             "left untouched (pass another --store)")
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: written by a newer mtmc (store schema {version}; this one knows up to "
                             f"{SCHEMA_VERSION}); left untouched: upgrade mtmc or pass another --store")
        if health != "ok":
            raise StoreError(f"{self.path}: the identity store is corrupted (integrity check: {health}); left "
                             "untouched: restore a copy or pass another --store")
        if self.readonly and version < SCHEMA_VERSION:
            raise StoreError(f"{self.path}: an empty or older identity store (schema {version}); a run with "
                             f"--store {self.path} creates or migrates it")

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:  # a new file: these must precede the first table
            self._db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            self._db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            self._db.executescript(f"BEGIN IMMEDIATE; {MIGRATIONS[target]} PRAGMA user_version = {target}; COMMIT;")
            log.info("%s: identity store schema %d", self.path, target)

    # ---- state ---------------------------------------------------------------------------------------
    def _get(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def _put(self, key: str, value: Any) -> None:
        self._db.execute("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                         "value = excluded.value", (key, value))

    def _put_state(self, state: AssociatorState, clock_end: float) -> None:
        self._put("next_id", state.next_id)
        self._put("clock_end", max(clock_end, self._get("clock_end", clock_end)))
        self._put("wall_end", max(self._wall(clock_end), self._get("wall_end", 0.0)))
        if state.centre_total is not None:
            self._put("centre_total", encode_array(np.asarray(state.centre_total, np.float64)))
            self._put("centre_count", state.centre_count)

    @property
    def model(self) -> dict[str, Any] | None:
        text = self._get("model")
        return json.loads(text) if text else None

    @property
    def colour_stats(self) -> dict[str, dict[str, list[float]]]:
        return json.loads(self._get("colour_stats", "{}"))

    @property
    def learned_views(self) -> list[CameraOverlap]:
        return [CameraOverlap(v["first"], v["second"], np.asarray(v["homography"], np.float64), v["seeds"],
                              v["inliers"], "store") for v in json.loads(self._get("learned_views", "[]"))]

    def save_views(self, overlaps: Iterable[CameraOverlap]) -> None:
        """Remember learned (not calibrated) overlapping views; a pair learned again replaces its mapping."""
        views = {(v.first, v.second): v for v in self.learned_views}
        views.update({(v.first, v.second): v for v in overlaps if v.source != "calibration"})
        if not views:
            return
        with self._transaction():
            self._put("learned_views", json.dumps([
                {"first": v.first, "second": v.second, "homography": np.asarray(v.homography).tolist(),
                 "seeds": v.seeds, "inliers": v.inliers} for v in views.values()]))

    # ---- runs ----------------------------------------------------------------------------------------
    def begin_run(self, config: dict[str, Any], model: dict[str, Any], sources: Sequence[str],
                  forget_after_s: float, gallery_size: int, metric_window: int, retention_days: float = 0.0,
                  on_model_mismatch: str = "refuse", reembed: Any = None) -> Resume:
        """Start a run: check the model, mark runs that died as interrupted, take the store clock, prune, and
        return what the associator resumes from. ``reembed``: a function crops -> embeddings, used when
        ``on_model_mismatch`` is 'reembed'."""
        self._check_model(model, on_model_mismatch, reembed)
        clock_end = self._get("clock_end")
        offset = 0.0 if clock_end is None else float(clock_end) + RUN_GAP_S
        self.retention_days, self.metric_window = retention_days, metric_window
        now = time.time()
        wall_origin = max(now, float(self._get("wall_end", 0.0)) + RUN_GAP_S)
        with self._transaction():
            self._db.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
            cursor = self._db.execute(
                "INSERT INTO runs (started_at, status, clock_offset, clock_end, wall_origin, pid, sources, config, "
                "model) VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                (now, offset, offset, wall_origin, os.getpid(), json.dumps(list(sources)),
                 json.dumps(config, default=str), json.dumps(model)))
            if self.model is None:
                self._put("model", json.dumps(model))
        self.run = {"id": cursor.lastrowid, "wall_origin": wall_origin, "clock_offset": offset}
        self.prune()
        horizon = offset - forget_after_s if forget_after_s > 0 else float("-inf")
        return Resume(self.run["id"], offset, self.load_identities(gallery_size, horizon),
                      self.load_metric_groups(metric_window), self.load_state(), self.learned_views)

    def _check_model(self, model: dict[str, Any], on_mismatch: str, reembed: Any) -> None:
        stored = self.model
        if stored is None or model_key(stored) == model_key(model):
            return
        if on_mismatch == "refuse":
            raise StoreError(
                f"{self.path}: its identities were embedded by ReID model {stored.get('model')!r} "
                f"(sha256 {str(stored.get('sha256'))[:12]}), this run embeds with {model.get('model')!r} "
                f"(sha256 {str(model.get('sha256'))[:12]}): different embedding spaces cannot be matched. Pass "
                "--store.on_model_mismatch reembed (embed the stored thumbnails with this model) or new (move "
                "this store aside and start a new one), or the model the store was made with")
        if on_mismatch == "new":
            self._move_aside()
        else:
            self._reembed(model, reembed)

    def _move_aside(self) -> None:
        self._db.close()
        aside = self.path.with_name(f"{self.path.stem}.{time.strftime('%Y%m%d-%H%M%S')}{self.path.suffix}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                os.replace(source, f"{aside}{suffix}")
        log.warning("%s: made with another ReID model; moved to %s, starting a new store", self.path, aside)
        self._db = self._connect(str(self.path))
        self._migrate()

    def _reembed(self, model: dict[str, Any], embed: Any) -> None:
        """Every identity's gallery from its newest thumbnails, embedded by this run's model (one crop each);
        the per-crop features and the centre of the old model are dropped."""
        rows = self._db.execute("SELECT global_id, gallery FROM identities").fetchall()
        with self._transaction():
            for global_id, gallery in rows:
                size = max(len(decode_array(gallery) if gallery else []), 1)
                thumbnails = self._db.execute(
                    "SELECT thumbnail FROM sightings WHERE global_id = ? AND thumbnail IS NOT NULL "
                    "ORDER BY end_time DESC LIMIT ?", (global_id, size)).fetchall()
                crops = [cv2.imdecode(np.frombuffer(t, np.uint8), cv2.IMREAD_COLOR) for (t,) in reversed(thumbnails)]
                vectors = np.asarray(embed([[c] for c in crops]), np.float32) if crops else None
                self._db.execute("UPDATE identities SET gallery = ?, crop_means = NULL WHERE global_id = ?",
                                 (encode_array(vectors), global_id))
            self._db.execute("DELETE FROM metric_crops")
            self._db.execute("DELETE FROM state WHERE key IN ('centre_total', 'centre_count')")
            self._put("model", json.dumps(model))
        log.warning("%s: %d identities re-embedded from their thumbnails with %s", self.path, len(rows),
                    model.get("model"))

    def end_run(self, colour_stats: dict[str, dict[str, list[float]]] | None = None) -> None:
        if self.run is None:
            return
        with self._transaction():
            self._db.execute("UPDATE runs SET ended_at = ?, status = 'ended' WHERE id = ?",
                             (time.time(), self.run["id"]))
            if colour_stats:
                self._put("colour_stats", json.dumps({**self.colour_stats, **colour_stats}))
        self.prune()
        self.run = None

    def close(self) -> None:
        try:
            self._db.close()
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file releases the flock
            self._lock = None

    def _transaction(self) -> "_Transaction":
        return _Transaction(self._db)

    # ---- writing -------------------------------------------------------------------------------------
    def _wall(self, clock: float) -> float:
        return self.run["wall_origin"] + clock - self.run["clock_offset"]

    def save_batch(self, sightings: Sequence[Sighting], identities: Iterable[Identity], state: AssociatorState,
                   merged: Sequence[tuple[int, int]] = ()) -> None:
        """One assigned batch, in one transaction: its sightings, the identities they touched, the state;
        ``merged``: (gone, kept) ids, in the order live mode merged them: the gone identity's row is removed and
        its sightings take the kept id (``online_id`` keeps the one they were given)."""
        run_id = self.run["id"]
        first_seen: dict[int, float] = {}
        for s in sightings:
            first_seen[s.global_id] = min(first_seen.get(s.global_id, s.start_time), s.start_time)
        clock_end = max((s.end_time for s in sightings), default=self.run["clock_offset"])
        with self._transaction():
            for s in sightings:
                cursor = self._db.execute(
                    "INSERT INTO sightings (run_id, uid, camera, track_id, part, start_time, end_time, start_wall, "
                    "end_wall, first_frame, last_frame, frames, global_id, online_id, how, distance, space, thumbnail) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, s.uid, s.camera_id, s.track_id, s.part, s.start_time, s.end_time,
                     self._wall(s.start_time), self._wall(s.end_time), s.first_frame, s.last_frame, s.frames,
                     s.global_id, s.global_id, s.how, None if np.isnan(s.distance) else s.distance, s.space or None,
                     s.thumbnail))
                if s.metric_crops is not None and len(s.metric_crops):
                    self._db.execute("INSERT INTO metric_crops VALUES (?, ?, ?, ?, ?, ?)",
                                     (cursor.lastrowid, s.camera_id, s.track_id, s.start_time, s.end_time,
                                      encode_array(np.asarray(s.metric_crops, np.float16))))
            for gone, kept in merged:
                self._merge_identity(gone, kept, first_seen)
            for identity in identities:
                self._upsert_identity(identity, first_seen.get(identity.global_id, identity.last_seen), run_id)
            self._db.execute("DELETE FROM metric_crops WHERE sighting_id NOT IN (SELECT sighting_id FROM metric_crops "
                             "ORDER BY sighting_id DESC LIMIT ?)", (max(self.metric_window, 0),))
            self._db.execute("UPDATE runs SET clock_end = max(clock_end, ?) WHERE id = ?", (clock_end, run_id))
            self._put_state(state, clock_end)
        if time.time() - self._last_prune > PRUNE_EVERY_S:
            self.prune()

    def _merge_identity(self, gone: int, kept: int, first_seen: dict[int, float]) -> None:
        row = self._db.execute("SELECT first_seen FROM identities WHERE global_id = ?", (gone,)).fetchone()
        if row:
            first_seen[kept] = min(first_seen.get(kept, row[0]), row[0])
        self._db.execute("DELETE FROM identities WHERE global_id = ?", (gone,))
        self._db.execute("UPDATE sightings SET global_id = ? WHERE global_id = ?", (kept, gone))

    def _upsert_identity(self, identity: Identity, first_seen: float, run_id: int) -> None:
        gallery, means = _gallery_arrays(identity)
        row = self._db.execute("SELECT first_seen, first_wall, spans FROM identities WHERE global_id = ?",
                               (identity.global_id,)).fetchone()
        stored_spans = json.loads(row[2]) if row else {}
        if row and row[0] <= first_seen:
            first_seen, first_wall = row[0], row[1]
        else:
            first_wall = self._wall(first_seen)
        spans = merge_spans(stored_spans, identity.spans)
        self._db.execute(
            "INSERT OR REPLACE INTO identities (global_id, first_seen, last_seen, first_wall, last_wall, gallery, "
            "crop_means, spans, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (identity.global_id, first_seen, identity.last_seen, first_wall, self._wall(identity.last_seen),
             encode_array(gallery), encode_array(means), json.dumps(spans), run_id))

    def save_final(self, final_ids: dict[int, int], identities: Iterable[Identity], state: AssociatorState) -> None:
        """A file run's offline pass: this run's sightings take their final ids, the identities it touched get
        the galleries rebuilt by the caller and spans / first and last seen from their sightings; an identity
        left without sightings is removed. One transaction."""
        run_id = self.run["id"]
        with self._transaction():
            before = {gid for (gid,) in self._db.execute(
                "SELECT DISTINCT global_id FROM sightings WHERE run_id = ?", (run_id,))}
            self._db.executemany("UPDATE sightings SET global_id = ? WHERE run_id = ? AND uid = ?",
                                 [(gid, run_id, uid) for uid, gid in final_ids.items()])
            rebuilt = {identity.global_id: identity for identity in identities}
            for global_id in before | set(rebuilt):
                self._rewrite_identity(global_id, rebuilt.get(global_id), run_id)
            self._put_state(state, self._get("clock_end", self.run["clock_offset"]))

    def _rewrite_identity(self, global_id: int, identity: Identity | None, run_id: int) -> None:
        rows = self._db.execute("SELECT camera, start_time, end_time, start_wall, end_wall FROM sightings "
                                "WHERE global_id = ? ORDER BY start_time", (global_id,)).fetchall()
        if not rows:
            self._db.execute("DELETE FROM identities WHERE global_id = ?", (global_id,))
            return
        spans: dict[str, list] = {}
        for camera, start, end, _, _ in rows:
            add_span(spans.setdefault(camera, []), start, end)
        if identity is None:  # no gallery rebuilt: keep the stored one
            stored = self._db.execute("SELECT gallery, crop_means FROM identities WHERE global_id = ?",
                                      (global_id,)).fetchone() or (None, None)
            gallery, means = stored
        else:
            gallery, means = (encode_array(a) for a in _gallery_arrays(identity))
        last = max(rows, key=lambda r: r[2])
        self._db.execute(
            "INSERT OR REPLACE INTO identities (global_id, first_seen, last_seen, first_wall, last_wall, gallery, "
            "crop_means, spans, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (global_id, rows[0][1], last[2], rows[0][3], last[4], gallery, means,
             json.dumps(merge_spans({}, spans)), run_id))

    def prune(self) -> None:
        """Remove sightings and identities last seen more than ``retention_days`` ago; give the space back."""
        self._last_prune = time.time()
        if self.retention_days <= 0 or self.readonly:
            return
        cutoff = time.time() - self.retention_days * SECONDS_PER_DAY
        with self._transaction():
            removed = self._db.execute("DELETE FROM sightings WHERE end_wall < ?", (cutoff,)).rowcount
            self._db.execute("DELETE FROM identities WHERE last_wall < ?", (cutoff,))
            self._db.execute("DELETE FROM metric_crops WHERE sighting_id NOT IN (SELECT id FROM sightings)")
        if removed:
            self._db.execute("PRAGMA incremental_vacuum")
            log.info("%s: pruned %d sightings older than %g days", self.path, removed, self.retention_days)

    # ---- reading -------------------------------------------------------------------------------------
    def load_identities(self, gallery_size: int, horizon: float = float("-inf")) -> list[Identity]:
        rows = self._db.execute("SELECT global_id, last_seen, gallery, crop_means FROM identities WHERE last_seen "
                                ">= ? ORDER BY global_id", (horizon,)).fetchall()
        return [identity_from_row(*row, gallery_size) for row in rows]

    def load_metric_groups(self, window: int) -> list[CropGroup]:
        rows = self._db.execute("SELECT camera, track_id, start_time, end_time, features FROM metric_crops "
                                "ORDER BY sighting_id DESC LIMIT ?", (window,)).fetchall()
        return [CropGroup(camera, track, start, end, decode_array(features))
                for camera, track, start, end, features in reversed(rows)]

    def load_state(self) -> AssociatorState:
        total = self._get("centre_total")
        return AssociatorState(int(self._get("next_id", 1)), decode_array(total), int(self._get("centre_count", 0)))

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Rows as sqlite3.Row (by column name) for the query tools."""
        self._db.row_factory = sqlite3.Row
        try:
            return self._db.execute(sql, parameters).fetchall()
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{self.path}: cannot read the identity store ({err})") from None
        finally:
            self._db.row_factory = None

    def integrity(self) -> str:
        return self._db.execute("PRAGMA integrity_check").fetchone()[0]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on an exception."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: Any, *exc: Any) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def _take_lock(path: Path):
    """An exclusive flock on ``<path>.lock`` holding this process's description, or StoreError naming the
    holder. The OS releases it when the process ends, however it ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(f"{path}.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise StoreError(f"{path}: in use by another run ({holder}); two runs cannot write one identity store at "
                         "once: wait for it to end, or pass another --store") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")
    handle.flush()
    return handle


def store_path(config: Any, live: bool) -> Path | None:
    """The store a run uses: ``store.path``; by default <out>/identities.sqlite for live runs, none for files."""
    path = config.store.path
    if path.lower() == "none" or (not path and not live):
        return None
    return Path(path) if path else Path(config.output.out) / "identities.sqlite"


def colour_stats_of(colour: Any) -> dict[str, dict[str, Any]]:
    """pipeline.appearance.CameraColourStats as JSON: what search --camera normalises query crops with."""
    return {camera: {"mode": colour.mode, "mean": colour.mean[camera].tolist(), "std": colour.std[camera].tolist()}
            for camera in getattr(colour, "mean", {})}
