"""The STA video ReID model (docs/STA.md) and its avg/max temporal-pooling baselines.

A clip (B, N, 3, H, W) of normalised RGB frames goes through a per-frame backbone, a temporal
pooling, and a head: FC -> BatchNorm (-> ReLU) = embedding, then an optional identity classifier.
The three ``temporal_pool`` modes share backbone, head and training; only the pooling differs:
  sta: attention g, stripe scores S, pick-max map F1 and weighted map F2, concat -> GAP (2D);
  avg / max: GAP each frame (D), then mean / max over the N frames.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from configs import ConfigError, load_dataclass
from reid.attention import sta_attention, sta_fusion
from reid.backbones import BACKBONES, FEATURE_DIMS, PRETRAINED, build_backbone_and_embedding

TEMPORAL_POOLS = ("sta", "avg", "max")
HEAD_INITS = ("pretrained", "random")


@dataclass
class ReIDConfig:
    backbone: str = "mobilenetv2"          # mobilenetv2 | resnet50 | osnet_x1_0 | osnet_x0_75 | osnet_x0_5 | osnet_x0_25 | osnet_ibn_x1_0
    pretrained: str = "imagenet"           # imagenet | msmt17 (OSNet, ReID-trained) | random (only for tests/timing)
    backbone_weights: str = ""             # optional weights file: torchvision state dict; for OSNet a Torchreid .pth or ONNX
    head_init: str = "pretrained"          # pretrained: FC + BN start as the backbone's own embedding layer when it has one (OSNet)
    last_stride: int = 1                   # 1: 16x8 feature map at 256x128 (see reid/backbones.py)
    temporal_pool: str = "sta"             # sta | avg | max
    num_stripes: int = 4                   # K
    embed_dim: int = 1024                  # FC output = ReID feature size
    head_relu: bool = False                # ReLU after the embedding BatchNorm
    num_classes: int = 0                   # training identities; 0 = no classifier (inference)
    input_size: tuple[int, int] = (256, 128)  # frame height, width
    seq_len: int = 4                       # N frames per clip
    init_seed: int = 0                     # seeds the random parts, so an untrained head is reproducible

    def __post_init__(self) -> None:
        self.input_size = tuple(self.input_size)
        checks = [
            (self.backbone in BACKBONES, f"backbone must be one of {BACKBONES}, got {self.backbone!r}"),
            (self.pretrained in PRETRAINED, f"pretrained must be one of {PRETRAINED}, got {self.pretrained!r}"),
            (self.head_init in HEAD_INITS, f"head_init must be one of {HEAD_INITS}, got {self.head_init!r}"),
            (self.last_stride in (1, 2), f"last_stride must be 1 or 2, got {self.last_stride}"),
            (self.temporal_pool in TEMPORAL_POOLS, f"temporal_pool must be one of {TEMPORAL_POOLS}, got {self.temporal_pool!r}"),
            (self.num_stripes >= 1, f"num_stripes must be >= 1, got {self.num_stripes}"),
            (self.embed_dim >= 1, f"embed_dim must be >= 1, got {self.embed_dim}"),
            (self.num_classes >= 0, f"num_classes must be >= 0, got {self.num_classes}"),
            (self.seq_len >= 1, f"seq_len must be >= 1, got {self.seq_len}"),
            (len(self.input_size) == 2 and all(int(s) >= 32 for s in self.input_size),
             f"input_size must be [height, width], each >= 32, got {list(self.input_size)}"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ConfigError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (safe for torch.load(weights_only=True) and YAML)."""
        values = dataclasses.asdict(self)
        values["input_size"] = list(self.input_size)
        return values


def load_config(path: str | Path | None = None, **overrides: Any) -> ReIDConfig:
    """Defaults, then the YAML at ``path``, then keyword overrides (None values ignored)."""
    return load_dataclass(ReIDConfig, path, **overrides)


class STAOutput(NamedTuple):
    embedding: torch.Tensor          # (B, E): the ReID feature
    logits: torch.Tensor | None      # (B, C) when num_classes > 0
    attention: torch.Tensor          # (B, N, h, w) spatial attention g, for the inter-frame Reg
    features: torch.Tensor           # (B, 2D) for sta, (B, D) for avg/max: pooled, before the FC


class STAModel(nn.Module):
    """forward(clips (B, N, 3, H, W)): STAOutput in train mode, the embedding (B, E) in eval mode."""

    def __init__(self, cfg: ReIDConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone, embedding = build_backbone_and_embedding(cfg.backbone, cfg.pretrained, cfg.last_stride,
                                                                cfg.backbone_weights)
        feature_dim = FEATURE_DIMS[cfg.backbone]
        pooled_dim = 2 * feature_dim if cfg.temporal_pool == "sta" else feature_dim
        self.fc = nn.Linear(pooled_dim, cfg.embed_dim)
        self.bn = nn.BatchNorm1d(cfg.embed_dim)
        self.relu = nn.ReLU(inplace=True) if cfg.head_relu else nn.Identity()
        self.classifier = nn.Linear(cfg.embed_dim, cfg.num_classes) if cfg.num_classes > 0 else None
        self._init_head()
        if embedding is not None and cfg.head_init == "pretrained":
            self._copy_embedding(embedding)

    @property
    def embedding_dim(self) -> int:
        return self.cfg.embed_dim

    def _init_head(self) -> None:
        nn.init.kaiming_normal_(self.fc.weight, mode="fan_out")
        nn.init.zeros_(self.fc.bias)
        if self.classifier is not None:
            nn.init.normal_(self.classifier.weight, std=0.001)
            nn.init.zeros_(self.classifier.bias)

    @torch.no_grad()
    def _copy_embedding(self, embedding: nn.Sequential) -> None:
        """Start the head as the backbone's pretrained embedding (Linear, BatchNorm1d, ReLU) of the fused map.

        STA's pooled feature is [GAP F1, GAP F2]; FC = [W/2, W/2] gives W (GAP F1 + GAP F2) / 2, which for
        one frame (F1 = F2 = f) is exactly the pretrained network's embedding of that frame."""
        linear, norm = embedding[0], embedding[1]
        if self.cfg.embed_dim != linear.out_features or not self.cfg.head_relu:
            raise ConfigError(f"head_init: pretrained needs embed_dim: {linear.out_features} and head_relu: true "
                              f"(the {self.cfg.backbone} embedding), got embed_dim {self.cfg.embed_dim}, "
                              f"head_relu {self.cfg.head_relu}; or set head_init: random")
        copies = self.fc.in_features // linear.in_features
        self.fc.weight.copy_(linear.weight.repeat(1, copies) / copies)
        self.fc.bias.copy_(linear.bias)
        self.bn.load_state_dict(norm.state_dict())

    def frame_features(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, N, 3, H, W) -> per-frame feature maps (B, N, D, h, w)."""
        if clips.dim() != 5 or clips.shape[2] != 3:
            raise ValueError(f"expected clips of shape (B, N, 3, H, W), got {tuple(clips.shape)}")
        batch, frames = clips.shape[:2]
        maps = self.backbone(clips.flatten(0, 1))
        return maps.unflatten(0, (batch, frames))

    def temporal_pool(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled clip feature and attention g from per-frame maps (B, N, D, h, w)."""
        g, stripe_scores = sta_attention(feats, self.cfg.num_stripes)
        if self.cfg.temporal_pool == "sta":
            pick_max, weighted = sta_fusion(feats, stripe_scores, self.cfg.num_stripes)
            return torch.cat([pick_max, weighted], dim=1).mean(dim=(2, 3)), g
        per_frame = feats.float().mean(dim=(3, 4))
        pooled = per_frame.mean(dim=1) if self.cfg.temporal_pool == "avg" else per_frame.amax(dim=1)
        return pooled, g

    def forward(self, clips: torch.Tensor) -> STAOutput | torch.Tensor:
        output = self.forward_maps(self.frame_features(clips))
        return output if self.training else output.embedding

    def frame_embeddings(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, N, E): each frame's embedding as a one-frame clip, from per-frame maps (B, N, D, h, w).

        With one frame every stripe score is 1, so STA's pick-max and weighted maps are both the frame's
        map and the pooled feature is [GAP f, GAP f]; avg/max pooling of one frame is GAP f."""
        embedded = self.embed_frame_feature(maps.float().mean(dim=(3, 4)).flatten(0, 1))
        return embedded.unflatten(0, (-1, maps.shape[1]))  # -1: dynamic batch in ONNX

    def embed_frame_feature(self, pooled: torch.Tensor) -> torch.Tensor:
        """Head on (B, D) backbone features as if each were one frame's GAP ([x, x] for STA): e.g. the
        average- or max-pooled features of a clip through this model's own head."""
        if self.cfg.temporal_pool == "sta":
            pooled = torch.cat([pooled, pooled], dim=1)
        return self._head(pooled)

    def embed_with_frames(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode clip embeddings (B, E) and one-frame embeddings of every frame (B, N, E), one backbone pass."""
        maps = self.frame_features(clips)
        return self.forward_maps(maps).embedding, self.frame_embeddings(maps)

    def _head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.fc(pooled)))

    def forward_maps(self, maps: torch.Tensor) -> STAOutput:
        """Everything after the backbone, from per-frame maps (B, N, D, h, w): lets training feed the
        maps of a frozen, cached backbone stem and evaluation read the pooled feature. Logits are None
        in eval mode or without a classifier."""
        pooled, g = self.temporal_pool(maps)
        embedding = self._head(pooled)
        logits = self.classifier(embedding) if self.training and self.classifier is not None else None
        return STAOutput(embedding, logits, g, pooled)


def build_model(cfg: ReIDConfig) -> STAModel:
    """An STAModel whose randomly initialised parts depend only on ``cfg.init_seed``.

    Without the fixed seed an untrained head would differ between processes and their
    embeddings would not be comparable.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)
        return STAModel(cfg)
