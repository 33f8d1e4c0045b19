"""Evaluate video ReID models on a dataset's query/gallery: CMC rank-1/5/10/20 and mAP (MARS protocol).

    # fine-tuned checkpoints, one row each (and per test mode)
    python tools/eval_reid.py --data runs/reid_data/mot15 --weights runs/reid/sta_cpu/last.pt \\
        --weights runs/reid/avg_cpu/last.pt --modes all sample
    # zero-shot ImageNet backbone: STA vs average vs max pooling on the same backbone
    python tools/eval_reid.py --data runs/reid_data/mot15 --config configs/reid/train_cpu_mobilenetv2.yaml \\
        --compare-pooling

Features: a checkpoint is scored on its embedding (the ReID feature); a model built from a config is scored
on its embedding when its head starts as the backbone's own embedding layer (OSNet, head_init: pretrained),
else (an untrained head) on the temporally pooled backbone feature. Each model's weights file, sha256 and
training data are printed after the table and stored in the JSON rows. ``--compare-pooling``
re-pools each model's backbone maps with sta, avg and max (pooled feature, no head: the head of one
pooling does not fit the others' feature size).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import torch

from configs import ConfigError, read_yaml
from reid.checkpoint import CheckpointError, load_checkpoint
from reid.backbones import OSNET_BACKBONES, WeightsUnavailableError
from reid.model_store import describe_checkpoint, describe_config_model
from reid.datasets import DatasetError, load_dataset
from reid.evaluation import TEST_MODES, evaluate_model
from reid.metrics import RANKS
from reid.model import TEMPORAL_POOLS, ReIDConfig, STAModel, build_model, load_config
from reid.training import load_run_config
from tools.evaluation import write_json


@dataclasses.dataclass
class Candidate:
    name: str
    model: STAModel
    feature: str
    weights: dict = dataclasses.field(default_factory=dict)  # {file, sha256, training_data}: what ran


def models_to_score(args: argparse.Namespace) -> list[Candidate]:
    candidates = []
    for path in args.weights or []:
        model, cfg, meta = load_checkpoint(path)
        candidates.append(Candidate(f"{path} ({cfg.temporal_pool}, fine-tuned)", model, "embedding",
                                    describe_checkpoint(path, cfg, meta)))
    if args.config:
        cfg = model_config(args.config)
        # a head started from the backbone's own embedding layer (OSNet) is a real ReID feature; a random one is not
        feature = "embedding" if cfg.backbone in OSNET_BACKBONES and cfg.head_init == "pretrained" else "pooled"
        candidates.append(Candidate(f"{cfg.backbone} {cfg.pretrained} ({cfg.temporal_pool}, zero-shot)", build_model(cfg),
                                    feature, describe_config_model(cfg)))
    if args.compare_pooling:
        candidates = [variant for c in candidates for variant in pooling_variants(c)]
    return candidates


def model_config(path: str) -> ReIDConfig:
    """The model section of a training config, or a plain ReIDConfig YAML."""
    if "model" in read_yaml(path):
        return dataclasses.replace(load_run_config(path, {}).model, num_classes=0)
    return load_config(path)


def pooling_variants(candidate: Candidate) -> list[Candidate]:
    """The candidate's backbone (shared, not copied) under each temporal pooling, scored on the pooled feature."""
    variants = []
    for pool in TEMPORAL_POOLS:
        cfg = dataclasses.replace(candidate.model.cfg, temporal_pool=pool, num_classes=0, pretrained="random")
        model = build_model(cfg)
        model.backbone = candidate.model.backbone
        variants.append(Candidate(f"{candidate.name.split(' (')[0]} backbone, {pool} pooling", model.eval(), "pooled",
                                  candidate.weights))
    return variants


def print_table(rows: list[dict]) -> None:
    header = f"| model | mode | feature | {' | '.join(f'rank-{r}' for r in RANKS)} | mAP | queries |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        ranks = " | ".join(f"{100 * row[f'rank{r}']:.1f}" for r in RANKS)
        print(f"| {row['model']} | {row['mode']} | {row['feature']} | {ranks} | {100 * row['mAP']:.1f} | {row['queries']} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset root (MARS or DukeMTMC-VideoReID layout)")
    parser.add_argument("--weights", action="append", help="checkpoint from tools/train_reid.py; repeat to compare")
    parser.add_argument("--config", help="YAML: build an untrained model (ImageNet backbone) for a zero-shot baseline")
    parser.add_argument("--modes", nargs="+", default=["all"], choices=sorted(TEST_MODES),
                        help="all: every frame in N-frame clips, averaged; sample: N evenly spaced frames")
    parser.add_argument("--compare-pooling", action="store_true", help="STA vs avg vs max pooling on each model's backbone")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if not args.weights and not args.config:
        parser.error("give --weights CKPT (repeatable) and/or --config YAML")
    torch.set_num_threads(args.threads)
    try:
        dataset = load_dataset(args.data)
        candidates = models_to_score(args)
    except (DatasetError, CheckpointError, ConfigError, WeightsUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1  # EXIT_FAILED (pipeline/cli.py): bad input, nothing ran
    print(dataset.summary())
    rows = []
    for candidate in candidates:
        for mode in args.modes:
            result = evaluate_model(candidate.model, dataset, mode, candidate.feature, progress=f"{candidate.name} [{mode}]")
            rows.append({"model": candidate.name, "weights": candidate.weights, "mode": mode, "feature": candidate.feature,
                         **result.as_dict(),
                         "queries": result.num_queries})
            print(json.dumps(rows[-1]), flush=True)
    print_table(rows)
    for candidate in candidates:
        print(f"{candidate.name}: {candidate.weights}")
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
