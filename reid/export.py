"""ONNX export of STA models (opset 17, dynamic batch, fixed N frames), and a parity check.

Input ``clips``: (batch, N, 3, H, W) float32, RGB normalised with ImageNet mean/std (as
reid.preprocess.normalize produces); output ``embedding``: (batch, E), not L2-normalised.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from reid.model import STAModel

OPSET = 17


def export_onnx(model: STAModel, out: Path, seq_len: int, input_size: tuple[int, int]) -> Path:
    """Trace ``model`` (eval mode) to ``out`` with a dynamic batch dimension."""
    model = model.eval().cpu()
    example = torch.randn(2, seq_len, 3, *input_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # Shape checks in Python become constants in the trace: intended, N and H x W are fixed.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (example,), str(out), opset_version=OPSET, dynamo=False,
                          input_names=["clips"], output_names=["embedding"],
                          dynamic_axes={"clips": {0: "batch"}, "embedding": {0: "batch"}})
    return out


def onnx_vs_torch_cosine(model: STAModel, onnx_path: Path, seq_len: int, input_size: tuple[int, int],
                         batch: int = 3, seed: int = 0) -> np.ndarray:
    """Per-clip cosine similarity between onnxruntime and torch outputs on random clips."""
    import onnxruntime

    clips = torch.randn(batch, seq_len, 3, *input_size, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        expected = model.eval().cpu()(clips).numpy()
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    actual = session.run(None, {"clips": clips.numpy()})[0]
    return (actual * expected).sum(1) / (np.linalg.norm(actual, axis=1) * np.linalg.norm(expected, axis=1))
