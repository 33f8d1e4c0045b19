"""Tracklet features from image files and the query/gallery evaluation of a model.

Test-time modes (docs/STA.md, test protocol): ``all`` = every frame, in consecutive N-frame clips
whose embeddings are averaged (the paper's numbers); ``sample`` = one clip of N evenly spaced frames.
Features: ``embedding`` = the model's ReID feature (after FC + BN); ``pooled`` = the temporally
pooled backbone feature before the head, the meaningful one for an untrained (zero-shot) head.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from reid.datasets import TrackletRecord, VideoReIDDataset
from reid.metrics import RetrievalResult, cosine_distance, evaluate_retrieval
from reid.model import STAModel
from reid.preprocess import clip_indices
from reid.transforms import read_frames, to_clip

TEST_MODES = {"sample": "even", "all": "all"}  # our CLI names -> reid.preprocess modes
FEATURES = ("embedding", "pooled")


@torch.no_grad()
def tracklet_features(
    model: STAModel,
    tracklets: Sequence[TrackletRecord],
    mode: str = "all",
    feature: str = "embedding",
    clips_per_batch: int = 16,
    progress: str | None = None,
) -> torch.Tensor:
    """(T, F) features, one per tracklet: the mean over its clips (not normalised)."""
    if mode not in TEST_MODES or feature not in FEATURES:
        raise ValueError(f"mode must be one of {list(TEST_MODES)} and feature one of {FEATURES}; got {mode!r}, {feature!r}")
    model.eval()
    device = next(model.parameters()).device
    seq_len, size = model.cfg.seq_len, tuple(model.cfg.input_size)
    out = []
    for record in tqdm(tracklets, desc=progress, unit="tracklet", disable=progress is None, leave=False):
        indices = np.asarray(clip_indices(len(record.paths), seq_len, TEST_MODES[mode]))
        needed, position = np.unique(indices, return_inverse=True)  # read each frame once
        frames = to_clip(read_frames([record.paths[i] for i in needed]), size)
        clips = frames[torch.as_tensor(position.reshape(indices.shape))]
        parts = [_clip_features(model, c.to(device), feature) for c in clips.split(clips_per_batch)]
        out.append(torch.cat(parts).mean(dim=0))
    return torch.stack(out).cpu()


def _clip_features(model: STAModel, clips: torch.Tensor, feature: str) -> torch.Tensor:
    output = model.forward_maps(model.frame_features(clips))
    return (output.embedding if feature == "embedding" else output.features).float()


def evaluate_model(
    model: STAModel, dataset: VideoReIDDataset, mode: str = "all", feature: str = "embedding", progress: str | None = None
) -> RetrievalResult:
    """CMC/mAP of ``model`` on the dataset's query vs gallery; a tracklet in both is embedded once."""
    unique = unique_tracklets(dataset)
    features = tracklet_features(model, unique, mode, feature, progress=progress)
    return evaluate_features(dataset, dict(zip((r.paths for r in unique), features)))


def unique_tracklets(dataset: VideoReIDDataset) -> list[TrackletRecord]:
    """Query and gallery tracklets, each once (a tracklet may be in both)."""
    unique: dict[tuple[str, ...], TrackletRecord] = {}
    for record in (*dataset.query, *dataset.gallery):
        unique.setdefault(record.paths, record)
    return list(unique.values())


def evaluate_features(dataset: VideoReIDDataset, feature_of: Mapping[tuple[str, ...], torch.Tensor]) -> RetrievalResult:
    """CMC/mAP of query vs gallery given each tracklet's feature, keyed by its frame paths."""
    query = torch.stack([feature_of[r.paths] for r in dataset.query])
    gallery = torch.stack([feature_of[r.paths] for r in dataset.gallery])
    return evaluate_retrieval(
        cosine_distance(query, gallery),
        np.array([r.pid for r in dataset.query]),
        np.array([r.pid for r in dataset.gallery]),
        np.array([r.camid for r in dataset.query]),
        np.array([r.camid for r in dataset.gallery]),
    )
