"""Two-stage query selection: dense proposals scored from the target features, and the top-k of them.

Every valid cell predicts an objectness logit and a box (a delta, in logit space, from an anchor box centred on
the cell). The top-k boxes become the reference boxes of the object queries (their positional part, "mixed
selection"). Two designs (``model.proposals``):

- ``multi_level`` (the official code): four levels at strides 8, 16, 32 and 64 made from the stride-16 map (a
  transposed 2x2 convolution up, identity, one or two 2x2 convolutions down), each cell's anchor centred on it
  in units of the level's valid cells, ``0.05 * 2 ** level`` of the image wide and high; anchors outside
  ``(0.01, 0.99)`` are not proposed; features ``LayerNorm(Linear(.))``.
- ``single_level``: the stride-16 cells, anchors two cells wide, features ``LayerNorm(.)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .box_ops import inverse_sigmoid
from .layers import MLP


class _ChannelNorm(nn.Module):
    """LayerNorm over the channels of a ``(B, C, H, W)`` map."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _level_map(dim: int, stride: int, target: int) -> nn.Module:
    """From the ``stride`` map to the ``target``-stride one: 2x2 (transposed) convolutions, with a channel norm
    and GELU between two of them."""
    if target == stride:
        return nn.Identity()
    conv = nn.Conv2d if target > stride else nn.ConvTranspose2d
    steps = round(abs(math.log2(target / stride)))
    layers: list[nn.Module] = []
    for _ in range(steps - 1):
        layers += [conv(dim, dim, 2, 2), _ChannelNorm(dim), nn.GELU()]
    return nn.Sequential(*layers, conv(dim, dim, 2, 2))


MULTI_LEVEL_STRIDES = (8, 16, 32, 64)


class ProposalHead(nn.Module):
    """The single-level design: one proposal per stride-16 cell, its anchor two cells wide."""

    multi_level = False

    def __init__(self, dim: int, stride: int = 16, anchor_cells: float = 2.0) -> None:
        super().__init__()
        self.stride, self.anchor_cells = stride, anchor_cells
        self.norm = nn.LayerNorm(dim)
        self.score = nn.Linear(dim, 1)
        self.box = MLP(dim, dim, 4, 3)
        nn.init.zeros_(self.box[-1].weight)
        nn.init.zeros_(self.box[-1].bias)

    def anchors(self, grid_size: tuple[int, int], image_sizes: torch.Tensor) -> torch.Tensor:
        """``(B, h * w, 4)`` ``cxcywh`` anchors normalised by each image's size."""
        h, w = grid_size
        ys, xs = torch.meshgrid(
            torch.arange(h, device=image_sizes.device),
            torch.arange(w, device=image_sizes.device),
            indexing="ij",
        )
        cells = torch.stack([xs.flatten() + 0.5, ys.flatten() + 0.5], -1).to(torch.float32) * self.stride
        size = image_sizes.flip(-1).to(torch.float32)[:, None, :]  # (B, 1, 2) as (w, h)
        centres = cells[None] / size
        extent = torch.full_like(centres, self.anchor_cells * self.stride) / size
        return torch.cat([centres, extent], -1)

    def cells(
        self, features: torch.Tensor, valid: torch.Tensor, grid_size: tuple[int, int], image_sizes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The proposing cells' normalised features ``(B, N, d)``, validity ``(B, N)`` and anchors ``(B, N, 4)``."""
        return self.norm(features), valid, self.anchors(grid_size, image_sizes)

    def forward(
        self,
        features: torch.Tensor,
        valid: torch.Tensor,
        grid_size: tuple[int, int],
        image_sizes: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``features (B, h*w, d)``, ``valid (B, h*w)`` bool (cells inside the target image).
        Returns ``logits (B, N)`` (``-1e4`` where nothing is proposed) and ``boxes (B, N, 4)`` ``cxcywh``, one
        per proposing cell (:meth:`cells`)."""
        x, valid, anchors = self.cells(features, valid, grid_size, image_sizes)
        logits = self.score(x).squeeze(-1).masked_fill(~valid, -1e4)
        boxes = (inverse_sigmoid(anchors.clamp(1e-4, 1 - 1e-4)) + self.box(x)).sigmoid()
        return logits, boxes


class MultiLevelProposalHead(ProposalHead):
    """The official design: the cells of four levels (:data:`MULTI_LEVEL_STRIDES`) made from the stride-16 map,
    one level after the other; features ``LayerNorm(Linear(.))``."""

    multi_level = True

    def __init__(self, dim: int, stride: int = 16) -> None:
        super().__init__(dim, stride)
        self.level_maps = nn.ModuleList(_level_map(dim, stride, s) for s in MULTI_LEVEL_STRIDES)
        self.project = nn.Linear(dim, dim)

    @staticmethod
    def level_anchors(mask: torch.Tensor, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One level's anchors: ``mask (B, h, w)`` (``True`` = padding) -> ``(B, h * w, 4)`` ``cxcywh`` (cell
        ``(i, j)``: centre ``((j + 0.5) / valid_w, (i + 0.5) / valid_h)``, size ``0.05 * 2 ** level``, where
        ``valid_w``/``valid_h`` count the valid cells of the first row/column) and ``(B, h * w)`` validity (not
        padding, and every coordinate inside ``(0.01, 0.99)``)."""
        _, h, w = mask.shape
        valid_h = (~mask[:, :, 0]).sum(1).clamp(min=1).to(torch.float32)
        valid_w = (~mask[:, 0, :]).sum(1).clamp(min=1).to(torch.float32)
        ys, xs = torch.meshgrid(
            torch.arange(h, device=mask.device, dtype=torch.float32),
            torch.arange(w, device=mask.device, dtype=torch.float32),
            indexing="ij",
        )
        cx = (xs[None] + 0.5) / valid_w[:, None, None]
        cy = (ys[None] + 0.5) / valid_h[:, None, None]
        size = torch.full_like(cx, 0.05 * 2.0**level)
        anchors = torch.stack([cx, cy, size, size], -1).flatten(1, 2)
        inside = ((anchors > 0.01) & (anchors < 0.99)).all(-1)
        return anchors, inside & ~mask.flatten(1)

    def cells(
        self, features: torch.Tensor, valid: torch.Tensor, grid_size: tuple[int, int], image_sizes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, _, d = features.shape
        grid = features.transpose(1, 2).reshape(b, d, *grid_size)
        padding = ~valid.reshape(b, 1, *grid_size)
        out_features, out_valid, out_anchors = [], [], []
        for level, (level_map, level_stride) in enumerate(zip(self.level_maps, MULTI_LEVEL_STRIDES)):
            if min(grid_size) * self.stride < level_stride:  # a grid too small for this level: no cell in it
                continue
            level_features = level_map(grid)
            mask = F.interpolate(padding.float(), size=level_features.shape[-2:]).bool()[:, 0]
            anchors, inside = self.level_anchors(mask, level)
            out_features.append(level_features.flatten(2).transpose(1, 2) * inside[..., None])
            out_valid.append(inside)
            out_anchors.append(anchors)
        features = self.norm(self.project(torch.cat(out_features, 1)))
        return features, torch.cat(out_valid, 1), torch.cat(out_anchors, 1)


def select_top_k(logits: torch.Tensor, boxes: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` highest-scoring proposal boxes ``(B, k, 4)``, detached (they seed the decoder), and their
    cell indices ``(B, k)``.

    With fewer cells than ``k`` (small images, many one-to-many queries) the ranking repeats cyclically.
    """
    index = logits.topk(min(k, logits.shape[1]), dim=1).indices
    if index.shape[1] < k:
        index = index.repeat(1, -(-k // index.shape[1]))[:, :k]
    return torch.gather(boxes, 1, index[..., None].expand(-1, -1, 4)).detach(), index
