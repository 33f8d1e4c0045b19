"""Export an STA ReID model to ONNX (opset 17, dynamic batch, fixed N frames) and verify it.

    python tools/export_reid.py --config configs/reid/sta_mobilenetv2.yaml --out runs/sta_mnv2.onnx
    python tools/export_reid.py --weights runs/train/best.pt --out runs/sta.onnx --seq-len 8

Input ``clips``: (batch, N, 3, H, W) float32, RGB normalised with ImageNet mean/std (as
reid.preprocess.normalize produces); output ``embedding``: (batch, E), not L2-normalised.
After export the file is run with onnxruntime and compared with torch on random clips.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from configs import ConfigError
from reid.backbones import WeightsUnavailableError
from reid.checkpoint import CheckpointError, load_checkpoint
from reid.export import export_onnx, onnx_vs_torch_cosine
from reid.model import build_model, load_config

MIN_COSINE = 0.999


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", type=Path, help="trained STA checkpoint (.pt)")
    source.add_argument("--config", type=Path, help="ReID config YAML: export the untrained (ImageNet-init) model")
    parser.add_argument("--out", type=Path, required=True, help="output .onnx file")
    parser.add_argument("--seq-len", type=int, default=None, help="frames per clip N (default: the config's seq_len)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.seq_len is not None and args.seq_len < 1:
        print(f"error: --seq-len must be >= 1, got {args.seq_len}", file=sys.stderr)
        return 1  # EXIT_FAILED (pipeline/cli.py): bad input, nothing ran
    try:
        if args.weights is not None:
            model, cfg, _ = load_checkpoint(args.weights)
        else:
            cfg = load_config(args.config)
            model = build_model(cfg)
    except (CheckpointError, ConfigError, WeightsUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1  # EXIT_FAILED (pipeline/cli.py): bad input, nothing ran
    seq_len = args.seq_len or cfg.seq_len
    export_onnx(model, args.out, seq_len, tuple(cfg.input_size))
    cosine = onnx_vs_torch_cosine(model, args.out, seq_len, tuple(cfg.input_size))
    print(f"wrote {args.out} ({cfg.backbone}, {cfg.temporal_pool}, N={seq_len}, input {list(cfg.input_size)}, "
          f"embedding {cfg.embed_dim}); onnxruntime vs torch cosine min {cosine.min():.6f}")
    if cosine.min() < MIN_COSINE:
        print(f"error: onnxruntime output differs from torch (cosine {cosine.min():.6f} < {MIN_COSINE})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
