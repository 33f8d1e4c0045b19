"""STA embedding throughput: tracklets per second by backbone, clip length N and engine.

    python benchmarks/bench_reid.py                      # CPU: STA-OSNet x0.25 (the default) vs STA-MobileNetV2,
                                                         # torch vs onnxruntime, N = 4 and 8
    python benchmarks/bench_reid.py --device cuda --engines torch-fp32 torch-fp16 --batch 32

Each engine runs Embedder.embed_clips on the same resized uint8 clips (normalisation and the
model, not the crop resizing): tracklets/s = batch / median wall time of --runs timed calls after
a warm-up, engines taking turns call by call. tracklets/CPU-s divides by this process's CPU time
instead, which other users of a shared machine disturb less. The table also gives each engine's
speed ratios and minimum cosine similarity against the first engine on the same clips. Untrained weights time the same
as trained ones (a fine-tuned STA-OSNet has the zero-shot one's architecture); a backbone whose pretrained weights are
absent is timed with random init, and the table says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from configs import REPO_ROOT
from reid.backbones import WeightsUnavailableError
from reid.checkpoint import load_checkpoint, save_checkpoint
from reid.embedder import Embedder
from reid.model import ReIDConfig, build_model, load_config

ENGINES = ("torch", "torch-fp32", "torch-fp16", "onnxruntime")
BACKBONES = ("osnet_x0_25", "mobilenetv2", "resnet50")  # each has configs/reid/sta_<backbone>.yaml


@dataclasses.dataclass
class Result:
    backbone: str
    seq_len: int
    engine: str
    tracklets_per_s: float      # wall clock
    tracklets_per_cpu_s: float  # per CPU-second of this process: less sensitive to other load
    cosine_vs_first: float
    weights: str


def prepare_model(backbone: str, seq_len: int, pretrained: str, workdir: Path) -> tuple[Path, ReIDConfig, str]:
    """A checkpoint of the backbone's STA model, its config and a label for its weights.

    ImageNet weights when available, else random init. A random-init net in eval mode has
    exploding or vanishing activations (MobileNetV2's fall to ~1e-8, below fp16's range), which
    would make the fp16-vs-fp32 check meaningless: its BatchNorm statistics are re-estimated on
    random input so activations have a trained-like scale. Speed is unaffected.
    """
    cfg = load_config(REPO_ROOT / "configs" / "reid" / f"sta_{backbone}.yaml", seq_len=seq_len)
    if pretrained == "random":
        cfg = dataclasses.replace(cfg, pretrained="random")
    label = cfg.pretrained
    try:
        model = build_model(cfg)
    except WeightsUnavailableError:
        cfg = dataclasses.replace(cfg, pretrained="random")
        model = build_model(cfg)
        label = "random (pretrained weights absent)"
    if cfg.pretrained == "random":
        calibrate_batchnorm(model, cfg)
    path = save_checkpoint(workdir / f"{backbone}_n{seq_len}.pt", model, cfg, {"weights": label})
    return path, cfg, label


def calibrate_batchnorm(model: torch.nn.Module, cfg: ReIDConfig, clips: int = 4) -> None:
    """Set every BatchNorm's running statistics to those of one batch of N(0, 1) clips."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: one batch sets the statistics exactly
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.train()(torch.randn(clips, cfg.seq_len, 3, *cfg.input_size, generator=generator))
    model.eval()


def make_embedder(engine: str, checkpoint: Path, cfg: ReIDConfig, device: str) -> Embedder:
    if engine == "onnxruntime":
        from reid.export import export_onnx

        model, _, _ = load_checkpoint(checkpoint)
        path = export_onnx(model, checkpoint.with_suffix(".onnx"), cfg.seq_len, cfg.input_size)
        return Embedder(weights=path)
    return Embedder(weights=checkpoint, device=device, fp16=engine == "torch-fp16")


def time_call(embedder: Embedder, pixels: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(wall seconds, CPU seconds of this process, output) of one call."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    output = embedder.embed_clips(pixels)  # returns numpy: the device work is finished
    return time.perf_counter() - wall, time.process_time() - cpu, output


def time_engines(embedders: list[Embedder], pixels: np.ndarray, runs: int) -> list[tuple[float, float, np.ndarray]]:
    """Per engine: median wall and CPU seconds per call, and its output.

    Engines take turns call by call, so a load change on a shared machine hits all of them alike.
    """
    outputs = [embedder.embed_clips(pixels) for embedder in embedders]  # warm-up: allocations, kernel choice
    timings: list[list[tuple[float, float]]] = [[] for _ in embedders]
    for _ in range(runs):
        for index, embedder in enumerate(embedders):
            wall, cpu, outputs[index] = time_call(embedder, pixels)
            timings[index].append((wall, cpu))
    return [(statistics.median(w for w, _ in t), statistics.median(c for _, c in t), out)
            for t, out in zip(timings, outputs)]


def cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def bench(backbones: list[str], seq_lens: list[int], engines: list[str], device: str, batch: int,
          runs: int, pretrained: str) -> list[Result]:
    from tqdm import tqdm

    results = []
    rng = np.random.default_rng(0)
    steps = [(b, n) for b in backbones for n in seq_lens]
    with tempfile.TemporaryDirectory() as tmp:
        for backbone, seq_len in tqdm(steps, desc="bench_reid", unit="config"):
            checkpoint, cfg, weights = prepare_model(backbone, seq_len, pretrained, Path(tmp))
            pixels = rng.integers(0, 256, (batch, seq_len, *cfg.input_size, 3), dtype=np.uint8)
            embedders = [make_embedder(engine, checkpoint, cfg, device) for engine in engines]
            timed = time_engines(embedders, pixels, runs)
            reference = timed[0][2]
            for engine, (wall, cpu, output) in zip(engines, timed):
                results.append(Result(backbone, seq_len, engine, batch / wall, batch / cpu,
                                      cosine_min(output, reference), weights))
    return results


def format_table(results: list[Result], engines: list[str]) -> str:
    first = {(r.backbone, r.seq_len): r for r in results if r.engine == engines[0]}
    lines = [f"| backbone | N | weights | engine | tracklets/s | ratio vs {engines[0]} | tracklets/CPU-s | "
             f"ratio (CPU) | cosine vs {engines[0]} |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        base = first[(r.backbone, r.seq_len)]
        lines.append(f"| {r.backbone} | {r.seq_len} | {r.weights} | {r.engine} | {r.tracklets_per_s:.2f} | "
                     f"{r.tracklets_per_s / base.tracklets_per_s:.2f} | {r.tracklets_per_cpu_s:.2f} | "
                     f"{r.tracklets_per_cpu_s / base.tracklets_per_cpu_s:.2f} | {r.cosine_vs_first:.5f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["osnet_x0_25", "mobilenetv2"], choices=BACKBONES,
                        help="osnet_x0_25: the default Embedder's STA-OSNet; mobilenetv2: the earlier default")
    parser.add_argument("--seq-lens", nargs="+", type=int, default=[4, 8])
    parser.add_argument("--engines", nargs="+", default=["torch", "onnxruntime"], choices=ENGINES,
                        help="torch = torch-fp32; torch-fp16 = autocast (CUDA only); onnxruntime = CPU export")
    parser.add_argument("--device", default="cpu", help="torch device: cpu | cuda | auto")
    parser.add_argument("--batch", type=int, default=2, help="tracklets (clips) per call")
    parser.add_argument("--runs", type=int, default=5, help="timed calls per measurement (median reported)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch and onnxruntime (0: torch's default)")
    parser.add_argument("--min-cosine", type=float, default=0.0,
                        help="exit 1 when an engine's embeddings differ more than this from the first engine's")
    parser.add_argument("--pretrained", choices=["config", "random"], default="config",
                        help="config: the YAML's weights, random init where they are absent")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.batch < 1 or args.runs < 1 or min(args.seq_lens) < 1:
        print("error: --batch, --runs and --seq-lens must be >= 1", file=sys.stderr)
        return 2
    if "torch-fp16" in args.engines and not args.device.startswith("cuda"):
        print("error: --engines torch-fp16 needs --device cuda", file=sys.stderr)
        return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"error: --device {args.device} but CUDA is not available", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads (torch and onnxruntime)"
    results = bench(args.backbones, args.seq_lens, args.engines, args.device, args.batch, args.runs, args.pretrained)
    print(f"\nSTA embedding throughput on {device_name}: batch {args.batch} tracklets, input 256x128, "
          f"median of {args.runs} runs (model + normalisation; crop resizing not included; "
          "random-init models get BatchNorm statistics from random input)")
    print(format_table(results, args.engines))
    worst = min(r.cosine_vs_first for r in results)
    if worst < args.min_cosine:
        print(f"FAIL: cosine {worst:.5f} < --min-cosine {args.min_cosine} against {args.engines[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
