"""STA: parameter-free spatial-temporal attention and fusion (docs/STA.md, steps 2-6).

Shapes: B clips, N frames per clip, D channels, H x W feature map, K horizontal stripes.

Stripe rule when H is not a multiple of K: stripe k covers rows
[round_half_up(k*H/K), round_half_up((k+1)*H/K)), so stripes differ in height by at most one row
and every row belongs to exactly one stripe (H=6, K=4 -> rows [0,2) [2,3) [3,5) [5,6)).
H < K would leave empty stripes and is an error.

All arithmetic runs in float32: the squared-energy sums over 1280-2048 channels overflow fp16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Keeps g defined (uniform) for an all-zero feature map instead of 0/0.
_ENERGY_EPS = 1e-12


def stripe_bounds(height: int, k: int) -> list[int]:
    """Row boundaries of K stripes over ``height`` rows: K+1 increasing ints from 0 to height."""
    if k < 1:
        raise ValueError(f"number of stripes must be >= 1, got {k}")
    if height < k:
        raise ValueError(f"feature map height {height} is smaller than the number of stripes {k}")
    return [int(i * height / k + 0.5) for i in range(k + 1)]


def stripe_of_rows(height: int, k: int) -> list[int]:
    """For each row, the index of the stripe it belongs to."""
    bounds = stripe_bounds(height, k)
    return [stripe for stripe in range(k) for _ in range(bounds[stripe], bounds[stripe + 1])]


def _row_to_stripe_matrix(height: int, k: int, device: torch.device) -> torch.Tensor:
    """(K, H) 0/1 matrix: entry (k, h) is 1 when row h lies in stripe k."""
    rows = torch.tensor(stripe_of_rows(height, k), device=device)
    return F.one_hot(rows, k).T.float()


def spatial_attention(feats: torch.Tensor) -> torch.Tensor:
    """g_n(h,w) = sum_d f^2 / sum_{h,w,d} f^2, per frame: (B, N, D, H, W) -> (B, N, H, W)."""
    energy = feats.float().pow(2).sum(dim=2) + _ENERGY_EPS
    return energy / energy.sum(dim=(2, 3), keepdim=True)


def sta_attention(feats: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial attention g (B, N, H, W) and temporal stripe scores S (B, N, K).

    Each g[b, n] sums to 1; for each (b, k) the N values S[b, :, k] sum to 1.
    """
    if feats.dim() != 5:
        raise ValueError(f"expected features of shape (B, N, D, H, W), got {tuple(feats.shape)}")
    g = spatial_attention(feats)
    rows_to_stripes = _row_to_stripe_matrix(g.shape[2], k, g.device)
    stripe_scores = torch.einsum("bnh,kh->bnk", g.sum(dim=3), rows_to_stripes)
    return g, stripe_scores / stripe_scores.sum(dim=1, keepdim=True)


def sta_fusion(feats: torch.Tensor, S: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fuse N frames into two maps (B, D, H, W) using stripe scores S (B, N, K).

    F1 (pick-max): each stripe copied from the frame with the highest S for that stripe
    (ties: the earliest frame). F2 (weighted sum): each stripe is sum_n S[n, k] * f_n.
    """
    feats = feats.float()
    rows_to_stripes = _row_to_stripe_matrix(feats.shape[3], k, feats.device)
    best_frame = F.one_hot(S.argmax(dim=1), S.shape[1]).transpose(1, 2).float()  # (B, N, K)
    pick_max = _blend_frames(feats, best_frame, rows_to_stripes)
    weighted = _blend_frames(feats, S.float(), rows_to_stripes)
    return pick_max, weighted


def _blend_frames(feats: torch.Tensor, stripe_weights: torch.Tensor, rows_to_stripes: torch.Tensor) -> torch.Tensor:
    """sum_n w[n, stripe(h)] * f_n[:, h, :] for every row h."""
    row_weights = torch.einsum("bnk,kh->bnh", stripe_weights, rows_to_stripes)
    return torch.einsum("bnh,bndhw->bdhw", row_weights, feats)


def frame_regularizer(g: torch.Tensor, pairs: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Inter-frame regulariser Reg = ||g_i - g_j||_F, averaged over the B clips (scalar).

    ``pairs`` (B, 2) gives the frame indices (i, j) per clip; by default a random pair i != j is
    drawn per clip. A clip of one frame has no pair and contributes 0.
    """
    batch, frames = g.shape[:2]
    if frames < 2:
        return g.new_zeros(())
    if pairs is None:
        pairs = _random_frame_pairs(batch, frames, g.device, generator)
    clip = torch.arange(batch, device=g.device)
    diff = g[clip, pairs[:, 0]] - g[clip, pairs[:, 1]]
    return diff.flatten(1).norm(dim=1).mean()


def _random_frame_pairs(batch: int, frames: int, device: torch.device,
                        generator: torch.Generator | None) -> torch.Tensor:
    first = torch.randint(frames, (batch,), generator=generator)
    # An offset in [1, N-1] guarantees the second frame differs from the first.
    second = (first + torch.randint(1, frames, (batch,), generator=generator)) % frames
    return torch.stack([first, second], dim=1).to(device)
