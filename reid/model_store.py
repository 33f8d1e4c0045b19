"""The trained ReID models of this machine, and the rule that picks the one ``Embedder()`` uses.

Trained checkpoints are kept outside git, in ``<cache>/reid_models/`` (``<cache>``: $MTMC_CACHE, else
runs/cache in a checkout; configs.cache_root). ``best.json`` there names the best one:

    {"file": "sta_osnet_x0_25_<sha12>.pt", "sha256": "...", "training_data": "...", "metrics": {...},
     "data": "<evaluation set>", "created": "..."}

The rule: ``Embedder()`` with no argument uses the model that best.json names if that file exists, its
sha256 matches and it loads; otherwise (a warning says why, when best.json exists) the zero-shot model of
configs/reid/embedder.yaml. ``publish`` (tools/reid_model.py) copies a checkpoint in and rewrites best.json
only when its rank-1 on the same evaluation set beats the current best's, or when forced.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from configs import cache_root
from reid.backbones import OSNET_BACKBONES, pretrained_weights_file
from reid.model import ReIDConfig

MANIFEST = "best.json"


@dataclass(frozen=True)
class ModelRecord:
    file: str                  # file name inside the models folder
    sha256: str
    training_data: str
    data: str = ""             # the evaluation set the metrics are from
    metrics: dict[str, float] | None = None
    created: str = ""


def models_dir() -> Path:
    return cache_root() / "reid_models"


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_best() -> ModelRecord | None:
    """best.json's record, or None when there is none; a broken one warns and counts as none."""
    manifest = models_dir() / MANIFEST
    if not manifest.is_file():
        return None
    try:
        record = ModelRecord(**json.loads(manifest.read_text()))
    except (ValueError, TypeError) as err:
        warnings.warn(f"{manifest}: unreadable ({err}); using the zero-shot default ReID model", stacklevel=2)
        return None
    return record


def best_model_file() -> Path | None:
    """The checkpoint best.json names, when it exists and its sha256 matches; else None (with a warning)."""
    record = read_best()
    if record is None:
        return None
    path = models_dir() / record.file
    if not path.is_file():
        warnings.warn(f"{models_dir() / MANIFEST} names {path}, which does not exist; using the zero-shot "
                      "default ReID model", stacklevel=2)
        return None
    if sha256_of(path) != record.sha256:
        warnings.warn(f"{path}: sha256 differs from {models_dir() / MANIFEST}; using the zero-shot default ReID model",
                      stacklevel=2)
        return None
    return path


def publish(checkpoint: str | Path, training_data: str, data: str, metrics: dict[str, float], force: bool = False,
            stem: str = "") -> tuple[ModelRecord, bool]:
    """Copy ``checkpoint`` into the models folder as ``<stem>_<sha256[:12]>.pt``; make it the best when its rank-1
    on ``data`` beats the current best's on the same set (or ``force``). Returns (its record, whether it is now
    the best)."""
    digest = sha256_of(checkpoint)
    name = f"{stem or Path(checkpoint).stem}_{digest[:12]}.pt"
    folder = models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / name).is_file():
        shutil.copyfile(checkpoint, folder / f"{name}.partial")
        os.replace(folder / f"{name}.partial", folder / name)
    record = ModelRecord(name, digest, training_data, data, dict(metrics), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    current = read_best()
    better = (force or current is None or current.data != data or best_model_file() is None
              or metrics.get("rank1", 0.0) > (current.metrics or {}).get("rank1", 0.0))
    if better:
        _write_json(folder / MANIFEST, asdict(record))
    return record, better


def describe(path: str | Path, training_data: str) -> dict[str, Any]:
    """{file, sha256, training_data}: what summaries print about the weights that ran."""
    path = Path(path)
    return {"file": str(path), "sha256": sha256_of(path) if path.is_file() else "", "training_data": training_data}


def describe_checkpoint(path: str | Path, cfg: ReIDConfig, meta: dict[str, Any]) -> dict[str, Any]:
    trained_on = meta.get("data") or "unknown (no 'data' in the checkpoint)"
    return {**describe(path, f"{cfg.pretrained} backbone, fine-tuned on {trained_on}"), "model": model_name(cfg)}


def describe_config_model(cfg: ReIDConfig) -> dict[str, Any]:
    """A model built from a config: its backbone's pretrained weights file, and whether its head is trained."""
    source = pretrained_weights_file(cfg.backbone, cfg.pretrained, cfg.backbone_weights)
    pretrained_head = cfg.backbone in OSNET_BACKBONES and cfg.head_init == "pretrained"
    head = "head = its embedding layer" if pretrained_head else "untrained head"
    return {**describe(source or "", f"{cfg.pretrained} backbone ({head}), zero-shot"), "model": model_name(cfg)}


def model_name(cfg: ReIDConfig) -> str:
    return f"{cfg.temporal_pool.upper()}-{cfg.backbone} ({cfg.pretrained})"


def _write_json(path: Path, content: dict) -> None:
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(content, indent=1))
    os.replace(partial, path)  # readers see the old or the new manifest, never half of one
