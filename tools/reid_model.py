"""Make the best offline ReID model of this machine: fine-tune, evaluate, and publish it to the cache.

    python tools/reid_model.py                       # train configs/reid/train_cpu_osnet_cuhk03.yaml, publish
    python tools/reid_model.py --checkpoint runs/reid/sta_osnet_cuhk03/last.pt   # publish a trained one

The checkpoint (evaluated at the end of training on the dataset's query/gallery, CUHK03 pair-1 val for the
default config) is copied to ``<cache>/reid_models/`` and becomes the model that ``reid.Embedder()`` uses
when its rank-1 beats the current best's on the same evaluation set (reid/model_store.py; ``--force`` to
publish regardless). Nothing is written into git: weights trained on the shared data sets are research-only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from configs import REPO_ROOT, ConfigError, parse_overrides
from reid.backbones import WeightsUnavailableError
from reid.checkpoint import CheckpointError, load_checkpoint
from reid.datasets import DatasetError
from reid.model_store import MANIFEST, models_dir, publish
from reid.training import load_run_config, train

DEFAULT_CONFIG = REPO_ROOT / "configs" / "reid" / "train_cpu_osnet_cuhk03.yaml"


def trained_checkpoint(args: argparse.Namespace) -> Path:
    if args.checkpoint:
        return Path(args.checkpoint)
    run = load_run_config(args.config, parse_overrides(args.overrides))
    print(f"training {run.model.backbone} ({run.model.temporal_pool}) on {run.data} -> {run.out}", flush=True)
    return train(run).checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="training config (tools/train_reid.py's format)")
    parser.add_argument("--checkpoint", help="publish this trained checkpoint instead of training one")
    parser.add_argument("--force", action="store_true", help="make it the best even if its rank-1 is lower")
    parser.add_argument("overrides", nargs="*", help="key=value training overrides, e.g. train.iterations=500")
    args = parser.parse_args(argv)
    try:
        checkpoint = trained_checkpoint(args)
        _, cfg, meta = load_checkpoint(checkpoint)
    except (ConfigError, DatasetError, CheckpointError, WeightsUnavailableError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1  # EXIT_FAILED (pipeline/cli.py): bad input, nothing ran
    metrics = meta.get("metrics") or {}
    data = str(Path(meta.get("data", "")).resolve())
    training_data = f"{cfg.backbone} {cfg.pretrained} weights, fine-tuned on {data} (train split)"
    record, is_best = publish(checkpoint, training_data, f"{data} (query/gallery)", metrics, force=args.force,
                              stem=f"{cfg.temporal_pool}_{cfg.backbone}_{Path(data).name}")
    print(f"metrics: {json.dumps({k: round(v, 4) for k, v in metrics.items()})}")
    print(f"published {models_dir() / record.file} (sha256 {record.sha256[:16]}...); "
          + (f"it is now the best ({models_dir() / MANIFEST})" if is_best else "the current best stays (higher rank-1)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
