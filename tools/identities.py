"""Queries over an identity store (pipeline/store.py), read-only: it may be open in a running pipeline.

    mtmc identities --store runs/live/identities.sqlite list
    mtmc identities --store S show 12 [--sheet id12.png]       # sightings in time order + a contact sheet PNG
    mtmc identities --store S search --image crop.jpg [more.jpg ...] [--top 5] [--camera cam1]
    mtmc identities --store S export --format csv|jsonl [--table identities|sightings] [--out FILE]

Times are shown in local time with the timezone. ``search`` embeds the crops as one tracklet with the ReID model
the store was made with (its file, as the runs recorded it, or ``--reid``; another model is refused) and ranks
the stored identities as the online associator would match them: gallery distance in the scene metric learned
from the store's newest tracklets where both sides have per-crop features, else the centred cosine, each
relative to its threshold. ``--camera`` maps the crops' colours as the pipeline mapped that camera's crops.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from configs import ConfigError, build_dataclass
from pipeline.store import IdentityStore, StoreError, describe_model, model_key
from reid.transforms import read_frames

SHEET_CELL = (80, 128)  # width, height of one thumbnail on the contact sheet
SHEET_CAPTION = 30
SHEET_COLUMNS = 10
SHEET_MAX = 100  # sightings on one sheet (evenly spread over the identity's sightings)
IDENTITY_COLUMNS = ("global_id", "cameras", "first_seen", "last_seen", "sightings")
SIGHTING_COLUMNS = ("id", "run_id", "uid", "camera", "track_id", "part", "start", "end", "first_frame", "last_frame",
                    "frames", "global_id", "online_id", "how", "distance", "space")


def local_time(unix: float | None) -> str:
    if unix is None:
        return ""
    return datetime.fromtimestamp(unix).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def iso_time(unix: float | None) -> str:
    return "" if unix is None else datetime.fromtimestamp(unix).astimezone().isoformat(timespec="milliseconds")


# ---- reading -----------------------------------------------------------------------------------------------
def identity_rows(store: IdentityStore) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT i.global_id, i.first_wall, i.last_wall, count(s.id) AS sightings, "
        "group_concat(DISTINCT s.camera) AS cameras FROM identities i LEFT JOIN sightings s "
        "ON s.global_id = i.global_id GROUP BY i.global_id ORDER BY i.global_id")
    return [{"global_id": r["global_id"], "cameras": ",".join(sorted((r["cameras"] or "").split(",")) if r["cameras"]
                                                                 else []),
             "first_seen": r["first_wall"], "last_seen": r["last_wall"], "sightings": r["sightings"]} for r in rows]


def sighting_rows(store: IdentityStore, global_id: int | None = None, thumbnails: bool = False) -> list[dict]:
    columns = "id, run_id, uid, camera, track_id, part, start_wall, end_wall, first_frame, last_frame, frames, " \
              "global_id, online_id, how, distance, space" + (", thumbnail" if thumbnails else "")
    where, parameters = ("WHERE global_id = ?", (global_id,)) if global_id is not None else ("", ())
    rows = store.query(f"SELECT {columns} FROM sightings {where} ORDER BY start_time, id", parameters)
    return [{**{k: r[k] for k in r.keys() if k not in ("start_wall", "end_wall")}, "start": r["start_wall"],
             "end": r["end_wall"]} for r in rows]


def latest_run_config(store: IdentityStore):
    """The PipelineConfig of the store's newest run (defaults where a key is not understood)."""
    from pipeline.config import PipelineConfig

    rows = store.query("SELECT config FROM runs ORDER BY id DESC LIMIT 1")
    if not rows:
        raise StoreError(f"{store.path}: no run has written this store yet")
    try:
        return build_dataclass(PipelineConfig, json.loads(rows[0]["config"]), f"{store.path} (newest run's config)")
    except (ConfigError, TypeError, ValueError):
        return PipelineConfig()


# ---- list / show / export -------------------------------------------------------------------------------
def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    lines = [list(header)] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def list_identities(store: IdentityStore) -> str:
    rows = identity_rows(store)
    cells = [(r["global_id"], r["cameras"], local_time(r["first_seen"]), local_time(r["last_seen"]), r["sightings"])
             for r in rows]
    return table(cells, ("id", "cameras", "first seen", "last seen", "sightings")) + f"\n{len(rows)} identities"


def show_identity(store: IdentityStore, global_id: int, sheet: Path | None) -> str:
    sightings = sighting_rows(store, global_id, thumbnails=sheet is not None)
    if not sightings:
        raise StoreError(f"{store.path}: no identity {global_id} (or none of its sightings are kept)")
    cells = [(local_time(s["start"]), local_time(s["end"]), s["camera"], s["track_id"],
              f"{s['first_frame']}-{s['last_frame']}", s["run_id"], s["how"],
              "" if s["distance"] is None else f"{s['distance']:.3f}") for s in sightings]
    text = f"identity {global_id}: {len(sightings)} sightings\n"
    text += table(cells, ("start", "end", "camera", "track", "frames", "run", "how", "distance"))
    if sheet is not None:
        cv2.imwrite(str(sheet), contact_sheet(sightings))
        text += f"\ncontact sheet: {sheet}"
    return text


def contact_sheet(sightings: Sequence[dict]) -> np.ndarray:
    """Thumbnails in time order on a grid, each captioned with its camera and local time (BGR image)."""
    if len(sightings) > SHEET_MAX:
        sightings = [sightings[i] for i in np.linspace(0, len(sightings) - 1, SHEET_MAX).round().astype(int)]
    width, height = SHEET_CELL
    columns = min(SHEET_COLUMNS, max(len(sightings), 1))
    rows = -(-len(sightings) // columns)
    sheet = np.full((rows * (height + SHEET_CAPTION), columns * width, 3), 255, np.uint8)
    for index, sighting in enumerate(sightings):
        top, left = (index // columns) * (height + SHEET_CAPTION), (index % columns) * width
        thumbnail = sighting.get("thumbnail")
        image = cv2.imdecode(np.frombuffer(thumbnail, np.uint8), cv2.IMREAD_COLOR) if thumbnail else None
        if image is not None:
            scale = min(width / image.shape[1], height / image.shape[0])
            image = cv2.resize(image, (max(1, int(image.shape[1] * scale)), max(1, int(image.shape[0] * scale))))
            x, y = left + (width - image.shape[1]) // 2, top + (height - image.shape[0]) // 2
            sheet[y:y + image.shape[0], x:x + image.shape[1]] = image
        moment = datetime.fromtimestamp(sighting["start"]).astimezone().strftime("%H:%M:%S")
        for line, text in enumerate((str(sighting["camera"])[-12:], moment)):
            cv2.putText(sheet, text, (left + 2, top + height + 12 + 13 * line), cv2.FONT_HERSHEY_SIMPLEX, 0.33,
                        (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


def export(store: IdentityStore, what: str, form: str) -> str:
    if what == "identities":
        rows, columns = identity_rows(store), IDENTITY_COLUMNS
        times = ("first_seen", "last_seen")
    else:
        rows, columns = sighting_rows(store), SIGHTING_COLUMNS
        times = ("start", "end")
    rows = [{**r, **{t: iso_time(r[t]) for t in times}} for r in rows]
    if form == "jsonl":
        return "".join(json.dumps({c: r[c] for c in columns}) + "\n" for r in rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# ---- search ----------------------------------------------------------------------------------------------
def normalise_colours(store: IdentityStore, crops: list[np.ndarray], camera: str | None) -> list[np.ndarray]:
    """The crops as the pipeline's colour normalisation mapped ``camera``'s crops (its stored statistics)."""
    if camera is None:
        return crops
    from pipeline.appearance import CameraColourStats

    stats = store.colour_stats.get(camera)
    if stats is None:
        known = ", ".join(sorted(store.colour_stats)) or "none"
        raise StoreError(f"{store.path}: no colour statistics of camera {camera!r} (known: {known})")
    colour = CameraColourStats(stats["mode"])
    colour.mean[camera], colour.std[camera] = np.asarray(stats["mean"]), np.asarray(stats["std"])
    return [colour.normalise(camera, crop) for crop in crops]


def search_embedder(store: IdentityStore, config: Any, weights: str | None) -> Any:
    """The store's ReID model: ``weights``, else the file its runs recorded; refused when it is another model."""
    from pipeline.runner import default_embedder

    stored = store.model or {}
    chosen = weights or (stored.get("file") if stored.get("file") and Path(stored["file"]).is_file() else None)
    config.reid.weights = chosen or config.reid.weights
    embedder = default_embedder(config)
    mine = describe_model(embedder)
    if stored and model_key(mine) != model_key(stored):
        raise StoreError(f"{store.path}: made with ReID model {stored.get('model')!r} ({stored.get('file')}), "
                         f"this search would embed with {mine.get('model')!r} ({mine.get('file')}): pass that "
                         "model with --reid")
    return embedder


def rank_identities(store: IdentityStore, embedder: Any, crops: list[np.ndarray], config: Any
                    ) -> list[tuple[int, float, str]]:
    """(global id, distance relative to its threshold, space) of every stored identity, nearest first."""
    from pipeline.association import Observation, OnlineAssociator, clip_mode
    from pipeline.association.scene_metric import SceneMetric

    association = config.association
    associator = OnlineAssociator(association)
    state = store.load_state()
    groups = store.load_metric_groups(association.metric_window)
    associator.adopt(store.load_identities(association.gallery_size), state.next_id, (),
                     (state.centre_total, state.centre_count))
    if association.scene_metric and groups:
        try:
            associator.metric = SceneMetric.fit(groups, association)
        except np.linalg.LinAlgError:
            associator.metric = None
    vectors, per_crop = embedder.embed_with_frames([crops], clip_mode(association))
    query = Observation(0, "query", -1, 0.0, 0.0, vectors[0], crop_features=per_crop[0])
    identities = list(associator.identities.values())
    distance, in_metric = associator.distance_matrix([query], identities)
    threshold = np.where(in_metric, association.metric_threshold, association.threshold)
    ranked = sorted(range(len(identities)), key=lambda c: distance[0, c] / threshold[0, c])
    return [(identities[c].global_id, float(distance[0, c] / threshold[0, c]),
             "scene metric" if in_metric[0, c] else "cosine") for c in ranked if distance[0, c] < 1e5]


def search(store: IdentityStore, images: Sequence[str], top: int, camera: str | None, weights: str | None) -> str:
    config = latest_run_config(store)
    crops = normalise_colours(store, read_frames(images), camera)
    ranked = rank_identities(store, search_embedder(store, config, weights), crops, config)[:top]
    seen = {r["global_id"]: r for r in identity_rows(store)}
    cells = [(rank, gid, f"{relative:.3f}", space, seen.get(gid, {}).get("cameras", ""),
              local_time(seen.get(gid, {}).get("last_seen"))) for rank, (gid, relative, space) in enumerate(ranked, 1)]
    return table(cells, ("rank", "id", "distance / threshold", "space", "cameras", "last seen"))


# ---- command line ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtmc identities", description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="identity store (SQLite file a run wrote with --store)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="a table of the stored identities")
    show = commands.add_parser("show", help="one identity's sightings in time order, and a contact sheet PNG")
    show.add_argument("global_id", type=int)
    show.add_argument("--sheet", default=None, help="contact sheet PNG to write (default: identity_<ID>.png)")
    show.add_argument("--no-sheet", action="store_true", help="write no contact sheet")
    find = commands.add_parser("search", help="rank the stored identities by distance to one person's crops")
    find.add_argument("--image", nargs="+", required=True, metavar="CROP", help="crop image(s) of one person")
    find.add_argument("--top", type=int, default=5)
    find.add_argument("--camera", default=None, help="the camera the crops come from (colour normalisation)")
    find.add_argument("--reid", default=None, help="ReID weights (default: the model the store was made with)")
    out = commands.add_parser("export", help="identities or sightings as CSV or JSON lines")
    out.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    out.add_argument("--table", choices=("identities", "sightings"), default="identities")
    out.add_argument("--out", default=None, help="file to write (default: standard output)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    store = IdentityStore(args.store, readonly=True)
    try:
        if args.command == "list":
            text = list_identities(store)
        elif args.command == "show":
            sheet = None if args.no_sheet else Path(args.sheet or f"identity_{args.global_id}.png")
            text = show_identity(store, args.global_id, sheet)
        elif args.command == "search":
            text = search(store, args.image, args.top, args.camera, args.reid)
        else:
            text = export(store, args.table, args.format)
            if args.out:
                Path(args.out).write_text(text)
                text = f"{args.table}: {args.out}"
    finally:
        store.close()
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


if __name__ == "__main__":
    from tools.cli import run_main  # one-line errors and the shared exit codes, as under `mtmc identities`

    sys.exit(run_main(main, sys.argv[1:]))
