"""Why is STA better or worse than average pooling here? Re-pool one backbone's frame maps many ways.

Runs the backbone once over every test frame, keeps the maps, then scores (CMC/mAP, MARS protocol,
pooled feature before any head) temporal poolings on the same maps: STA (F1 pick-max + F2
weighted), F1 alone, F2 alone, average, max, for several stripe counts K and clip lengths N, and
prints how peaked the STA stripe scores S are (1/N = uniform).

    python tools/reid_pooling_ablation.py --data runs/reid_data/mot15 --config configs/reid/train_cpu_mobilenetv2.yaml
    python tools/reid_pooling_ablation.py --data runs/reid_data/mot15 --weights runs/reid/sta_cpu/last.pt
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from tqdm import tqdm

from reid.attention import sta_attention, sta_fusion
from reid.checkpoint import load_checkpoint
from reid.datasets import load_dataset
from reid.evaluation import TEST_MODES, evaluate_features, unique_tracklets
from reid.model import build_model
from reid.preprocess import clip_indices
from reid.transforms import read_frames, to_clip
from tools.eval_reid import model_config


def pool(maps: torch.Tensor, how: str, k: int) -> torch.Tensor:
    """(C, N, D, h, w) clips -> (C, F) features."""
    maps = maps.float()
    if how == "avg":
        return maps.mean(dim=(3, 4)).mean(dim=1)
    if how == "max":
        return maps.mean(dim=(3, 4)).amax(dim=1)
    _, scores = sta_attention(maps, k)
    pick_max, weighted = sta_fusion(maps, scores, k)
    parts = {"sta": [pick_max, weighted], "sta-F1": [pick_max], "sta-F2": [weighted]}[how]
    return torch.cat(parts, dim=1).mean(dim=(2, 3))


@torch.no_grad()
def frame_maps(model, records) -> list[torch.Tensor]:
    size = tuple(model.cfg.input_size)
    return [torch.cat([model.backbone(b) for b in to_clip(read_frames(r.paths), size).split(64)]).half()
            for r in tqdm(records, desc="backbone maps", unit="tracklet")]


def stripe_score_peakedness(maps: list[torch.Tensor], n: int, k: int) -> float:
    """Mean over clips and stripes of max_n S(n, k): 1/N when S is uniform, 1 when one frame takes all."""
    values = []
    for m in maps:
        clips = m[torch.as_tensor(clip_indices(len(m), n, "all"))].float()
        _, scores = sta_attention(clips, k)
        values.append(scores.amax(dim=1).mean().item())
    return float(np.mean(values))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--weights", help="checkpoint whose backbone to use")
    parser.add_argument("--config", help="or a config: untrained head, ImageNet backbone")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if bool(args.weights) == bool(args.config):
        parser.error("give exactly one of --weights or --config")
    torch.set_num_threads(args.threads)
    model = load_checkpoint(args.weights)[0] if args.weights else build_model(model_config(args.config)).eval()
    dataset = load_dataset(args.data)
    records = unique_tracklets(dataset)
    maps = dict(zip((r.paths for r in records), frame_maps(model, records)))
    print("| pooling | K | N | mode | rank-1 | rank-5 | mAP |\n|---|---|---|---|---|---|---|")
    variants = [(h, 4, 4) for h in ("sta", "sta-F1", "sta-F2", "avg", "max")]
    variants += [("sta", k, 4) for k in (1, 2, 8)] + [(h, 4, n) for h in ("sta", "avg") for n in (2, 8)]
    for how, k, n in variants:
        for mode in TEST_MODES:
            feats = {p: pool(m[torch.as_tensor(clip_indices(len(m), n, TEST_MODES[mode]))], how, k).mean(dim=0)
                     for p, m in maps.items()}
            res = evaluate_features(dataset, feats)
            print(f"| {how} | {k} | {n} | {mode} | {100 * res.rank(1):.1f} | {100 * res.rank(5):.1f} | {100 * res.mAP:.1f} |", flush=True)
    for n in (2, 4, 8):
        print(f"STA stripe scores, N={n}, K=4: mean max_n S(n,k) = {stripe_score_peakedness(list(maps.values()), n, 4):.3f} "
              f"(uniform {1 / n:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
