"""Sine position embeddings: for feature grids (normalised by each image's valid region) and for boxes."""

from __future__ import annotations

import math

import torch
from torch import nn


def sine_grid_embedding(mask: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """DETR's 2-D sine embedding. ``mask (B, h, w)`` bool, ``True`` on padding. Returns ``(B, dim, h, w)``.

    Coordinates are cumulative counts of valid cells, normalised to ``(0, 2 pi]`` over the valid region,
    so the same relative position in two differently padded images gets the same embedding.
    """
    valid = (~mask).to(torch.float32)
    y = valid.cumsum(1)
    x = valid.cumsum(2)
    eps = 1e-6
    y = y / (y[:, -1:, :] + eps) * 2 * math.pi
    x = x / (x[:, :, -1:] + eps) * 2 * math.pi
    half = dim // 2
    freqs = temperature ** (2 * (torch.arange(half, device=mask.device) // 2) / half)
    px, py = x[..., None] / freqs, y[..., None] / freqs
    px = torch.stack([px[..., 0::2].sin(), px[..., 1::2].cos()], dim=4).flatten(3)
    py = torch.stack([py[..., 0::2].sin(), py[..., 1::2].cos()], dim=4).flatten(3)
    return torch.cat([py, px], dim=3).permute(0, 3, 1, 2)


def sine_box_embedding(boxes: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Sine embedding of ``cxcywh`` boxes in ``[0, 1]``: ``(..., 4) -> (..., 4 * dim // 4)``.

    Each coordinate gets ``dim // 4`` channels (as in DAB/Deformable DETR query positions).
    """
    quarter = dim // 4
    freqs = temperature ** (2 * (torch.arange(quarter, device=boxes.device) // 2) / quarter)
    pos = boxes[..., None] * 2 * math.pi / freqs  # (..., 4, quarter)
    pos = torch.stack([pos[..., 0::2].sin(), pos[..., 1::2].cos()], dim=-1).flatten(-2)
    return pos.flatten(-2)


class BoxPositionEmbedding(nn.Module):
    """``MLP(sine(box))``: the positional part of an object query, from its reference box."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))

    def forward(self, boxes: torch.Tensor) -> torch.Tensor:
        return self.mlp(sine_box_embedding(boxes, self.dim))


class ProposalPositionEmbedding(nn.Module):
    """The official code's query positions, computed once from the proposal boxes: ``LayerNorm(Linear(sine(box)))``
    over ``2 d`` channels (``d / 2`` sine channels per coordinate), of which the first ``d`` are kept."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.linear = nn.Linear(2 * dim, 2 * dim)
        self.norm = nn.LayerNorm(2 * dim)

    def forward(self, boxes: torch.Tensor) -> torch.Tensor:
        return self.norm(self.linear(sine_box_embedding(boxes, 2 * self.dim)))[..., : self.dim]
