"""ONNX export of STA models (opset 17, dynamic batch, fixed N frames), and a parity check.

Input ``clips``: (batch, N, 3, H, W) float32, RGB normalised with ImageNet mean/std (as
reid.preprocess.normalize produces); outputs ``embedding``: (batch, E), the clip's embedding, and
``frame_embedding``: (batch, N, E), each frame embedded as a one-frame clip (STAModel.frame_embeddings),
from the same backbone pass; neither is L2-normalised.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from reid.model import STAModel

OPSET = 17
OUTPUTS = ("embedding", "frame_embedding")


class _ClipAndFrames(torch.nn.Module):
    """Traces STAModel.embed_with_frames: both outputs of one backbone pass."""

    def __init__(self, model: STAModel):
        super().__init__()
        self.model = model

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.embed_with_frames(clips)


def export_onnx(model: STAModel, out: Path, seq_len: int, input_size: tuple[int, int]) -> Path:
    """Trace ``model`` (eval mode) to ``out`` with a dynamic batch dimension."""
    model = model.eval().cpu()
    example = torch.randn(2, seq_len, 3, *input_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # Shape checks in Python become constants in the trace: intended, N and H x W are fixed.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(_ClipAndFrames(model), (example,), str(out), opset_version=OPSET, dynamo=False,
                          input_names=["clips"], output_names=list(OUTPUTS),
                          dynamic_axes={name: {0: "batch"} for name in ("clips", *OUTPUTS)})
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
