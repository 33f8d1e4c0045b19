"""One table, one run: rank-1 / mAP of ReID models and poolings on several query/gallery sets.

    python tools/reid_table.py --data ../shared/data/reid/cuhk03/val --data runs/reid_data/mot15 \\
        --model "MobileNetV2 STA (today's default)=configs/reid/sta_mobilenetv2.yaml" \\
        --model "OSNet x0.25 MSMT17, zero-shot=configs/reid/sta_osnet_x0_25.yaml" \\
        --model "OSNet x0.25, fine-tuned on CUHK03=runs/reid/sta_osnet_cuhk03/last.pt" --json runs/reid_table.json

Each model (a ReID config YAML: untrained or pretrained head; or a checkpoint) runs its backbone once over
every test frame ("all" mode: every frame, in consecutive N-frame clips). The frame maps are then scored
under each pooling, always on the same maps:
  sta          the model's embedding: STA fusion [F1, F2] -> its head (FC + BN (+ReLU))
  sta-pooled   STA fusion [F1, F2] -> GAP, no head
  avg / max    GAP per frame, mean / max over the clip's frames -> the same head, as a one-frame clip ([x, x]
               for an STA head; for a model trained with avg / max pooling this row is its own embedding)
  avg-pooled / max-pooled   the same without the head
  plain        each frame through the head alone (the backbone's own per-image embedding), averaged
A tracklet's feature is the mean over its clips; cosine distance; CMC/mAP under the MARS protocol.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from configs import ConfigError
from reid.backbones import WeightsUnavailableError
from reid.checkpoint import CheckpointError, load_checkpoint
from reid.datasets import DatasetError, load_dataset
from reid.evaluation import evaluate_features, unique_tracklets
from reid.model import STAModel, build_model, load_config
from reid.model_store import describe_checkpoint, describe_config_model
from reid.preprocess import clip_indices
from reid.transforms import read_frames, to_clip
from tools.evaluation import write_json

POOLINGS = ("sta", "sta-pooled", "avg", "avg-pooled", "max", "max-pooled", "plain")


def load_model(source: str) -> tuple[STAModel, dict]:
    """The model and what it is: {file, sha256, training_data, model}."""
    if source.endswith(".pt"):
        model, cfg, meta = load_checkpoint(source)
        return model, describe_checkpoint(source, cfg, meta)
    cfg = load_config(source)
    return build_model(cfg).eval(), describe_config_model(cfg)


@torch.no_grad()
def frame_maps(model: STAModel, records, desc: str) -> list[torch.Tensor]:
    size = tuple(model.cfg.input_size)
    return [torch.cat([model.backbone(b) for b in to_clip(read_frames(r.paths), size).split(32)])
            for r in tqdm(records, desc=desc, unit="tracklet", leave=False)]


@torch.no_grad()
def pooled_feature(model: STAModel, maps: torch.Tensor, how: str) -> torch.Tensor:
    """(F, D, h, w) frame maps of one tracklet -> its feature under pooling ``how``."""
    if how == "plain":
        return model.frame_embeddings(maps[None])[0].mean(dim=0)
    clips = maps[torch.as_tensor(clip_indices(len(maps), model.cfg.seq_len, "all"))]
    if how.startswith("sta"):
        output = model.forward_maps(clips)
        return (output.features if how == "sta-pooled" else output.embedding).mean(dim=0)
    per_frame = clips.mean(dim=(3, 4))
    pooled = per_frame.mean(dim=1) if how.startswith("avg") else per_frame.amax(dim=1)
    return (pooled if how.endswith("-pooled") else model.embed_frame_feature(pooled)).mean(dim=0)


def score_model(name: str, model: STAModel, datasets: dict[str, object]) -> list[dict]:
    rows = []
    for data_name, dataset in datasets.items():
        records = unique_tracklets(dataset)
        maps = frame_maps(model, records, f"{name} on {data_name}")
        for how in POOLINGS:
            if how.startswith("sta") and model.cfg.temporal_pool != "sta":
                continue  # an avg/max-trained model: its own pooling's row is its embedding
            features = {r.paths: pooled_feature(model, m.float(), how) for r, m in zip(records, maps)}
            result = evaluate_features(dataset, features)
            rows.append({"model": name, "pooling": how, "data": data_name, "rank1": result.rank(1),
                         "mAP": result.mAP, "queries": result.num_queries})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def format_table(rows: list[dict], data_names: list[str]) -> str:
    header = "| model | pooling | " + " | ".join(f"{d} rank-1 | {d} mAP" for d in data_names) + " |"
    lines = [header, "|" + "---|" * (2 + 2 * len(data_names))]
    keys = list(dict.fromkeys((r["model"], r["pooling"]) for r in rows))
    for model, pooling in keys:
        cells = []
        for data in data_names:
            row = next((r for r in rows if (r["model"], r["pooling"], r["data"]) == (model, pooling, data)), None)
            cells += [f"{row['rank1']:.3f}", f"{row['mAP']:.3f}"] if row else ["-", "-"]
        lines.append(f"| {model} | {pooling} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", required=True, help="dataset root; repeat for more columns")
    parser.add_argument("--model", action="append", required=True, help="NAME=config.yaml or NAME=checkpoint.pt")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the rows here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        datasets = {Path(d).name if Path(d).name not in ("val", "test") else "/".join(Path(d).parts[-2:]): load_dataset(d)
                    for d in args.data}
        models = [(name, load_model(source)) for name, _, source in (m.partition("=") for m in args.model)]
    except (ConfigError, DatasetError, CheckpointError, WeightsUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1  # EXIT_FAILED (pipeline/cli.py): bad input, nothing ran
    for dataset in datasets.values():
        print(dataset.summary())
    rows = [row for name, (model, _) in models for row in score_model(name, model, datasets)]
    print(format_table(rows, list(datasets)))
    for name, (_, weights) in models:
        print(f"{name}: {weights}")
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
