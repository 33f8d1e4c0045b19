#!/usr/bin/env bash
# STA embedding on a CUDA GPU: throughput in fp32 and fp16 (autocast + channels_last, as reid.Embedder
# runs on CUDA), batch 32 tracklets, N = 4 and 8, three backbones, and a check that fp16 embeddings
# match fp32 ones (cosine >= 0.99). Backbones: STA-OSNet x0.25 (the default Embedder; its MSMT17 weights from
# $MTMC_DATA/models or the torch hub cache, else random init, which the table says), MobileNetV2, ResNet-50. Installs nothing: uses .venv/bin/python when present, else python3.
# Run from anywhere: bash benchmarks/gpu_check.sh   (exits 0 with a message when there is no CUDA)
set -u
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi

if ! command -v "$PY" >/dev/null 2>&1; then
    echo "gpu_check: no python interpreter ($PY) found" >&2
    exit 1
fi
missing=$("$PY" -c 'import importlib.util as u; print(" ".join(m for m in ("torch", "torchvision", "numpy", "yaml", "tqdm") if u.find_spec(m) is None))')
if [ -n "$missing" ]; then
    echo "gpu_check: $PY lacks the python modules: $missing (pip install -r requirements.txt, or at least torch torchvision numpy pyyaml tqdm)" >&2
    exit 1
fi
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA device available to torch $("$PY" -c 'import torch; print(torch.__version__)'); nothing to measure."
    exit 0
fi
"$PY" -c 'import torch; print("gpu_check:", torch.cuda.get_device_name(), "| torch", torch.__version__, "| CUDA", torch.version.cuda)'
exec "$PY" benchmarks/bench_reid.py --device cuda --engines torch-fp32 torch-fp16 --batch 32 --runs 10 \
    --seq-lens 4 8 --backbones osnet_x0_25 mobilenetv2 resnet50 --min-cosine 0.99 "$@"
