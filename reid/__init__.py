"""STA video person re-identification: model, attention maths, checkpoints, inference.

Names are imported on first use, so ``import reid.model`` does not pull in OpenCV or
onnxruntime (a bare CUDA machine can time the model with torch alone).
"""

from importlib import import_module

_EXPORTS = {
    "sta_attention": "reid.attention",
    "sta_fusion": "reid.attention",
    "frame_regularizer": "reid.attention",
    "ReIDConfig": "reid.model",
    "STAModel": "reid.model",
    "STAOutput": "reid.model",
    "build_model": "reid.model",
    "load_config": "reid.model",
    "WeightsUnavailableError": "reid.backbones",
    "CheckpointError": "reid.checkpoint",
    "save_checkpoint": "reid.checkpoint",
    "load_checkpoint": "reid.checkpoint",
    "Embedder": "reid.embedder",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'reid' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
