"""ONNX export of the STA MobileNetV2 model: onnxruntime matches torch, dynamic batch, CLI errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from configs import REPO_ROOT
from reid.embedder import Embedder
from reid.model import build_model, load_config
from tools import export_reid

torch.set_num_threads(1)  # the 2 shared cores are busy: a second thread spins and slows tests 10x
pytest.importorskip("onnxruntime")
MOBILENET = REPO_ROOT / "configs" / "reid" / "sta_mobilenetv2.yaml"
SEQ_LEN = 3


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "sta_mnv2.onnx"
    assert export_reid.main(["--config", str(MOBILENET), "--out", str(out), "--seq-len", str(SEQ_LEN)]) == 0
    return out


@pytest.mark.parametrize("batch", [1, 4])
def test_onnxruntime_matches_torch_for_any_batch(exported, batch):
    cfg = load_config(MOBILENET)
    cosine = export_reid.onnx_vs_torch_cosine(build_model(cfg), exported, SEQ_LEN, cfg.input_size, batch=batch, seed=7)
    assert cosine.shape == (batch,) and cosine.min() > 0.999


def test_embedder_runs_the_onnx_file_like_torch(exported):
    rng = np.random.default_rng(0)
    tracklets = [[rng.integers(0, 256, (90, 35, 3), dtype=np.uint8) for _ in range(n)] for n in (1, 5, 12)]
    onnx_embedder = Embedder(weights=exported, test_mode="all")
    assert onnx_embedder.seq_len == SEQ_LEN and onnx_embedder.embedding_dim == 1024
    torch_vectors = Embedder(cfg=MOBILENET, seq_len=SEQ_LEN, test_mode="all").embed(tracklets)
    cosine = (onnx_embedder.embed(tracklets) * torch_vectors).sum(axis=1)
    assert cosine.min() > 0.999
    with pytest.raises(ValueError, match="exported for seq_len 3"):
        Embedder(weights=exported, seq_len=4)


def test_cli_errors_are_messages_not_tracebacks(tmp_path):
    missing = tmp_path / "missing.pt"
    result = subprocess.run([sys.executable, "tools/export_reid.py", "--weights", str(missing), "--out",
                             str(tmp_path / "x.onnx")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert f"checkpoint not found: {missing}" in result.stderr and "Traceback" not in result.stderr
    assert export_reid.main(["--config", str(MOBILENET), "--out", str(tmp_path / "x.onnx"), "--seq-len", "0"]) == 1
