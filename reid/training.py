"""Training loop for the STA model: CE + batch-hard triplet + lambda * Reg, PK batches, restricted
random frame sampling, flip + random erasing, Adam with step decay; ends with an evaluation on the
dataset's query/gallery and a checkpoint carrying config and metadata.

Two input paths, same loss and sampling:
- ``frozen_blocks: 0``: end to end from pixels, augmentations drawn fresh for every clip.
- ``frozen_blocks: M > 0``: the first M backbone blocks keep their ImageNet weights and their output
  for every training frame is computed once, for four views (plain, flipped, erased, flipped and
  erased; the erased box drawn once per frame and view). Training then runs only the rest of the
  network, which is what makes a fine-tune fit in minutes on a shared 2-core CPU.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from configs import ConfigError, load_dataclass
from reid.checkpoint import save_checkpoint
from reid.datasets import TrackletRecord, load_dataset
from reid.evaluation import TEST_MODES, evaluate_model
from reid.losses import STALoss
from reid.model import ReIDConfig, STAModel, STAOutput, build_model
from reid.sampling import PKBatchSampler, restricted_random_indices
from reid.transforms import AugmentConfig, augment_clip, erase_random_box, read_frames, to_clip

STEM_VIEWS = ("pixels", "maps")


@dataclass
class TrainConfig:
    iterations: int = 300
    p: int = 8                     # identities per batch
    k: int = 4                     # tracklets per identity
    lr: float = 3e-4
    weight_decay: float = 5e-4
    lr_step: int = 200             # iterations between learning-rate decays
    lr_gamma: float = 0.1
    margin: float = 0.3            # batch-hard triplet margin
    reg_lambda: float = 1.0        # weight of the inter-frame attention regulariser Reg
    flip_prob: float = 0.5
    erase_prob: float = 0.5
    frozen_blocks: int = 0         # leading backbone blocks kept fixed and cached (0 = train end to end)
    freeze_backbone_bn: bool = False  # backbone BatchNorms keep their statistics (needed when BN is folded into convs)
    stem_views: str = "pixels"     # pixels: cache 4 views (flip x erase) made on the images; maps: cache the plain
                                   # frames only and flip / erase the cached maps (4x cheaper to cache)
    stem_cache: str = ""           # file to keep the cached stem outputs in, reused when data and settings match
    frame_stride: int = 1          # train on every s-th frame of each tracklet (near-duplicate frames cost time)
    seed: int = 0
    num_threads: int = 2
    device: str = "cpu"
    eval_mode: str = "all"         # sample | all (test-time clips), run once after training
    log_every: int = 10

    def __post_init__(self) -> None:
        problems = [msg for ok, msg in [
            (self.iterations >= 1, f"iterations must be >= 1, got {self.iterations}"),
            (self.p >= 2 and self.k >= 1, f"need p >= 2 and k >= 1, got p={self.p}, k={self.k}"),
            (self.lr > 0 and 0 < self.lr_gamma <= 1 and self.lr_step >= 1, "need lr > 0, 0 < lr_gamma <= 1, lr_step >= 1"),
            (self.reg_lambda >= 0 and self.margin >= 0, "reg_lambda and margin must be >= 0"),
            (self.frozen_blocks >= 0, f"frozen_blocks must be >= 0, got {self.frozen_blocks}"),
            (self.frame_stride >= 1, f"frame_stride must be >= 1, got {self.frame_stride}"),
            (self.stem_views in STEM_VIEWS, f"stem_views must be one of {STEM_VIEWS}, got {self.stem_views!r}"),
            (self.eval_mode in TEST_MODES, f"eval_mode must be one of {list(TEST_MODES)}, got {self.eval_mode!r}"),
        ] if not ok]
        if problems:
            raise ConfigError("; ".join(problems))


@dataclass
class TrainRunConfig:
    data: str = ""                 # dataset root (MARS or DukeMTMC-VideoReID layout)
    out: str = "runs/reid/train"   # checkpoint folder
    model: ReIDConfig = field(default_factory=ReIDConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def load_run_config(path: str | Path | None, overrides: dict[str, Any]) -> TrainRunConfig:
    """YAML, then dotted overrides such as ``{"train.iterations": 50, "model.temporal_pool": "avg"}``."""
    base = load_dataclass(TrainRunConfig, path)
    values = {"data": base.data, "out": base.out, "model": base.model.to_dict(), "train": dataclasses.asdict(base.train)}
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        if section not in ("", "model", "train"):
            raise ConfigError(f"override {key!r}: use data=, out=, model.<key>= or train.<key>=")
        (values[section] if section else values)[name] = value
    return load_dataclass(TrainRunConfig, None, **values)


@dataclass
class TrainResult:
    checkpoint: Path
    metrics: dict[str, float]
    losses: list[dict[str, float]]
    seconds: float


class PixelClips:
    """Clips decoded from image files, augmented afresh each time."""

    def __init__(self, tracklets: tuple[TrackletRecord, ...], cfg: ReIDConfig, aug: AugmentConfig):
        self.tracklets, self.cfg, self.aug = tracklets, cfg, aug

    def clip(self, index: int, rng: np.random.Generator) -> torch.Tensor:
        record = self.tracklets[index]
        frames = restricted_random_indices(len(record.paths), self.cfg.seq_len, rng)
        clip = to_clip(read_frames([record.paths[i] for i in frames]), tuple(self.cfg.input_size))
        return augment_clip(clip, self.aug, rng)

    def forward(self, model: STAModel, clips: torch.Tensor) -> STAOutput:
        return model(clips)


class CachedStemClips:
    """Clips of cached stem outputs: frame views (plain / flipped) x (intact / erased), made on the images
    (``views='pixels'``), or the plain view only, flipped and erased on the cached maps (``views='maps'``)."""

    def __init__(self, model: STAModel, tracklets: tuple[TrackletRecord, ...], frozen: int, aug: AugmentConfig,
                 rng: np.random.Generator, device: torch.device, cache_file: str = "", views: str = "pixels"):
        self.frozen, self.aug, self.seq_len, self.on_maps = frozen, aug, model.cfg.seq_len, views == "maps"
        self.stem = model.backbone[:frozen].eval()
        self.offsets = np.cumsum([0] + [len(t.paths) for t in tracklets])
        key = {"frames": [p for t in tracklets for p in t.paths], "frozen": frozen, "backbone": model.cfg.backbone,
               "pretrained": model.cfg.pretrained, "input_size": list(model.cfg.input_size),
               "erase": [list(aug.erase_area), list(aug.erase_aspect)], "views": views}
        cached = _read_stem_cache(cache_file, key)
        self.views = cached if cached is not None else self._compute(tracklets, tuple(model.cfg.input_size), rng, device)
        if cache_file and cached is None:
            Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
            torch.save({"key": key, "views": self.views}, cache_file)
        self.views = self.views.to(device)  # (F, flip, erase, C, h, w)

    @torch.no_grad()
    def _compute(self, tracklets, size, rng, device) -> torch.Tensor:
        always = AugmentConfig(flip_prob=0.0, erase_prob=1.0, erase_area=self.aug.erase_area, erase_aspect=self.aug.erase_aspect)
        chunks = []
        for record in tqdm(tracklets, desc="caching frozen stem", unit="tracklet"):
            plain = to_clip(read_frames(record.paths), size)
            views = []
            for flipped in (plain,) if self.on_maps else (plain, plain.flip(-1)):
                variants = [flipped] if self.on_maps else [flipped, augment_clip(flipped, always, rng)]
                views.append(torch.stack(variants, dim=1))  # (F, erase, 3, H, W)
            frames = torch.stack(views, dim=1).to(device)  # (F, flip, erase, 3, H, W)
            stem = torch.cat([self.stem(batch) for batch in frames.flatten(0, 2).split(64)])
            chunks.append(stem.unflatten(0, frames.shape[:3]).half())
        return torch.cat(chunks)

    def clip(self, index: int, rng: np.random.Generator) -> torch.Tensor:
        length = self.offsets[index + 1] - self.offsets[index]
        frames = self.offsets[index] + restricted_random_indices(int(length), self.seq_len, rng)
        flip = int(rng.random() < self.aug.flip_prob)
        erase = (rng.random(len(frames)) < self.aug.erase_prob).astype(int)
        if not self.on_maps:
            return self.views[torch.as_tensor(frames), flip, torch.as_tensor(erase)].float()
        maps = self.views[torch.as_tensor(frames), 0, 0].float()
        maps = maps.flip(-1) if flip else maps
        for frame, erased in zip(maps, erase):
            if erased:
                erase_random_box(frame, self.aug, rng, noise=False)
        return maps

    def forward(self, model: STAModel, stems: torch.Tensor) -> STAOutput:
        maps = model.backbone[self.frozen :](stems.flatten(0, 1)).unflatten(0, stems.shape[:2])
        return model.forward_maps(maps)


def train(run: TrainRunConfig) -> TrainResult:
    tc, started = run.train, time.time()
    torch.set_num_threads(tc.num_threads)
    torch.manual_seed(tc.seed)
    rng = np.random.default_rng(tc.seed)
    dataset = load_dataset(run.data)
    label_of = {pid: label for label, pid in enumerate(dataset.train_pids)}
    cfg = dataclasses.replace(run.model, num_classes=len(label_of))
    device = torch.device(tc.device)
    model = build_model(cfg).to(device)
    aug = AugmentConfig(tc.flip_prob, tc.erase_prob)
    tracklets = tuple(dataclasses.replace(t, paths=t.paths[:: tc.frame_stride]) for t in dataset.train)
    source = _clip_source(model, tracklets, tc, aug, device)
    _set_train_mode(model, tc.freeze_backbone_bn)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=tc.lr_step, gamma=tc.lr_gamma)
    loss_fn = STALoss(tc.margin, tc.reg_lambda)
    batches = _endless(PKBatchSampler([t.pid for t in dataset.train], tc.p, tc.k, tc.seed))
    losses = []
    progress = tqdm(range(tc.iterations), desc=f"train {cfg.temporal_pool}", unit="it")
    for iteration in progress:
        epoch, indices = next(batches)
        clips = torch.stack([source.clip(i, rng) for i in indices]).to(device)
        labels = torch.tensor([label_of[dataset.train[i].pid] for i in indices], device=device)
        out = source.forward(model, clips)
        parts = loss_fn(out.embedding, out.logits, out.attention, labels)
        optimizer.zero_grad()
        parts.total.backward()
        optimizer.step()
        scheduler.step()
        losses.append({"total": parts.total.item(), "ce": parts.cross_entropy, "triplet": parts.triplet, "reg": parts.regulariser})
        if iteration % tc.log_every == 0 or iteration == tc.iterations - 1:
            progress.set_postfix({k: f"{v:.3f}" for k, v in losses[-1].items()})
    metrics = evaluate_model(model.eval(), dataset, tc.eval_mode, progress="evaluating").as_dict()
    seconds = time.time() - started
    meta = {
        "iterations": tc.iterations, "epoch": epoch, "data": str(run.data), "metrics": metrics, "eval_mode": tc.eval_mode,
        "train": dataclasses.asdict(tc), "train_pids": dataset.train_pids, "seconds": round(seconds, 1),
        "loss_first": losses[0], "loss_last": _mean_losses(losses[-tc.log_every:]),
    }
    path = save_checkpoint(Path(run.out) / "last.pt", model, cfg, meta)
    return TrainResult(path, metrics, losses, seconds)


def _set_train_mode(model: STAModel, freeze_backbone_bn: bool) -> None:
    """Weights folded from an ONNX export turn each BatchNorm into an identity plus bias: batch statistics
    would replace that identity by a normalisation the pretrained network never had, so they stay fixed."""
    model.train()
    if freeze_backbone_bn:
        for module in model.backbone.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def _clip_source(model, tracklets, tc: TrainConfig, aug, device) -> PixelClips | CachedStemClips:
    if tc.frozen_blocks == 0:
        return PixelClips(tracklets, model.cfg, aug)
    if tc.frozen_blocks >= len(model.backbone):
        raise ConfigError(f"train.frozen_blocks={tc.frozen_blocks} leaves nothing to train: the backbone has {len(model.backbone)} blocks")
    for parameter in model.backbone[: tc.frozen_blocks].parameters():
        parameter.requires_grad_(False)
    # Its own generator, so the training draws are the same whether the cache is computed or loaded.
    cache_rng = np.random.default_rng([tc.seed, 1])
    return CachedStemClips(model, tracklets, tc.frozen_blocks, aug, cache_rng, device, tc.stem_cache, tc.stem_views)


def _read_stem_cache(cache_file: str, key: dict) -> torch.Tensor | None:
    if not cache_file or not Path(cache_file).is_file():
        return None
    content = torch.load(cache_file, map_location="cpu", weights_only=True)
    return content["views"] if content.get("key") == key else None


def _endless(sampler: PKBatchSampler) -> Iterator[tuple[int, list[int]]]:
    """(epoch, batch) pairs, epoch counted from 1, forever."""
    epoch = 0
    while True:
        epoch += 1
        for batch in sampler:
            yield epoch, batch


def _mean_losses(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
