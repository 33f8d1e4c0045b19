"""STA training loss: identity cross-entropy + batch-hard triplet + lambda * inter-frame regulariser."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reid.attention import frame_regularizer


def batch_hard_triplet(embeddings: torch.Tensor, pids: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Hermans et al. 2017: per anchor, the farthest positive and the nearest negative (Euclidean).

    Anchors without a positive or a negative in the batch are left out; 0 if none is left.
    """
    distances = torch.cdist(embeddings.float(), embeddings.float()).clamp_min(1e-12)
    same = pids[:, None] == pids[None, :]
    not_self = ~torch.eye(len(pids), dtype=torch.bool, device=pids.device)
    positive = same & not_self
    hardest_positive = (distances * positive).max(dim=1).values
    hardest_negative = distances.masked_fill(same, float("inf")).min(dim=1).values
    valid = positive.any(dim=1) & (~same).any(dim=1)
    if not valid.any():
        return embeddings.new_zeros(())
    return F.relu(hardest_positive - hardest_negative + margin)[valid].mean()


@dataclass(frozen=True)
class LossParts:
    total: torch.Tensor
    cross_entropy: float
    triplet: float
    regulariser: float


class STALoss(torch.nn.Module):
    def __init__(self, margin: float = 0.3, reg_lambda: float = 0.0):
        super().__init__()
        self.margin, self.reg_lambda = margin, reg_lambda

    def forward(self, embeddings: torch.Tensor, logits: torch.Tensor, attention: torch.Tensor,
                pids: torch.Tensor) -> LossParts:
        """``attention`` is the spatial attention g of shape (B, N, H, W); ``pids`` are class labels."""
        ce = F.cross_entropy(logits, pids)
        triplet = batch_hard_triplet(embeddings, pids, self.margin)
        reg = frame_regularizer(attention)
        total = ce + triplet + self.reg_lambda * reg
        return LossParts(total, ce.item(), triplet.item(), reg.item())
