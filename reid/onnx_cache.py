"""A torch STA model's ONNX export, made once and reused from a cache folder.

On CPU onnxruntime runs the MobileNetV2 STA model about 2x faster than torch (benchmarks/bench_reid.py),
but exporting takes seconds, so each export is kept as ``<cache>/reid_onnx/<name>_<hash>.onnx``. The hash
covers every parameter and buffer of the model, its config, N, the exporter's opset, the torch version
and the source of the modules defining the model and its export (so its outputs): other weights, settings,
model or export code never reuse a stale file. ``<cache>`` is configs.cache_root().
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from configs import CACHE_ENV, cache_root  # noqa: F401  (re-exported: reid's one cache location)
from reid.model import ReIDConfig

# the reid code that defines what is exported, and the exporter (its outputs)
MODEL_SOURCES = ("model.py", "attention.py", "backbones.py", "osnet.py", "export.py")


def model_hash(model: torch.nn.Module, cfg: ReIDConfig, seq_len: int, opset: int) -> str:
    digest = hashlib.sha256()
    settings = {"config": cfg.to_dict(), "seq_len": seq_len, "opset": opset, "torch": torch.__version__}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for source in MODEL_SOURCES:
        digest.update((Path(__file__).parent / source).read_bytes())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def cached_onnx(model: torch.nn.Module, cfg: ReIDConfig, seq_len: int, root: Path | None = None) -> Path:
    """Path of ``model``'s ONNX export for N = ``seq_len`` clips, exporting it on the first call."""
    from reid.export import OPSET, export_onnx

    key = model_hash(model, cfg, seq_len, OPSET)
    path = (root or cache_root()) / "reid_onnx" / f"sta_{cfg.backbone}_{cfg.temporal_pool}_n{seq_len}_{key}.onnx"
    if path.is_file():
        return path
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.onnx")
    export_onnx(model, partial, seq_len, tuple(cfg.input_size))
    os.replace(partial, path)  # atomic: a concurrent process sees no file or a whole one
    return path
