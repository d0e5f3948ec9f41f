"""Relation biases ``f(P_ij)``: learned functions of how query ``i`` relates to key/value position ``j``.

Each module returns an additive attention bias of shape ``(B, heads, Nq, n)``, one value per head.

- :class:`SequenceOffsetBias`: for sequences, ``P_ij = j - r_i`` where ``r_i`` is query ``i``'s reference
  position (``r_i = i`` at the first layer; a model may move it from layer to layer).
- :class:`BoxRelativePositionBias`: for detection, the offsets of a query box's ``x1, x2`` to every column
  centre and of its ``y1, y2`` to every row centre of the feature grid, each pair through a
  ``2 -> hidden -> heads`` MLP; the column and row biases are summed by broadcasting over the ``h x w`` grid.
  When the boxes move (iterative refinement), the bias moves with them.
"""

from __future__ import annotations

import torch
from torch import nn


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, outputs))


class SequenceOffsetBias(nn.Module):
    """``bias[b, h, i, j] = MLP(j - r_bi)[h]`` (2-layer ReLU MLP, one output per head)."""

    def __init__(self, num_heads: int, hidden_dim: int = 64) -> None:
        super().__init__()
        self.mlp = _mlp(1, hidden_dim, num_heads)

    def forward(self, query_positions: torch.Tensor, num_keys: int) -> torch.Tensor:
        """``query_positions``: ``(B, Nq)`` float reference positions. Returns ``(B, heads, Nq, n)``."""
        keys = torch.arange(num_keys, device=query_positions.device, dtype=query_positions.dtype)
        offsets = keys[None, None, :] - query_positions[:, :, None]  # (B, Nq, n)
        return self.mlp(offsets.unsqueeze(-1)).permute(0, 3, 1, 2)


def signed_log(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) log2(1 + |x|) / 3``: keeps offsets of a few cells distinct and far ones bounded."""
    return torch.sign(x) * torch.log2(1.0 + x.abs()) / 3.0


class BoxRelativePositionBias(nn.Module):
    """Box relative position bias over a feature grid of ``stride`` pixels per cell."""

    def __init__(self, num_heads: int, hidden_dim: int = 512, stride: int = 16) -> None:
        super().__init__()
        self.stride = stride
        self.mlp_x = _mlp(2, hidden_dim, num_heads)
        self.mlp_y = _mlp(2, hidden_dim, num_heads)

    def forward(self, boxes: torch.Tensor, grid_size: tuple[int, int], image_sizes: torch.Tensor) -> torch.Tensor:
        """Args:
            boxes: ``(B, Nq, 4)`` ``cxcywh`` normalised by each target image's own (unpadded) size.
            grid_size: ``(h, w)`` cells of the (padded) feature grid.
            image_sizes: ``(B, 2)`` unpadded target ``(height, width)`` in pixels.

        Returns ``(B, heads, Nq, h * w)`` in row-major grid order.
        """
        h, w = grid_size
        cx, cy, bw, bh = boxes.unbind(-1)
        height, width = image_sizes[:, 0:1].to(boxes.dtype), image_sizes[:, 1:2].to(boxes.dtype)
        # box edges in cell units; cell j spans [j, j + 1), its centre is j + 0.5
        x_edges = torch.stack([cx - bw / 2, cx + bw / 2], -1) * (width / self.stride)[..., None]
        y_edges = torch.stack([cy - bh / 2, cy + bh / 2], -1) * (height / self.stride)[..., None]
        cols = torch.arange(w, device=boxes.device, dtype=boxes.dtype) + 0.5
        rows = torch.arange(h, device=boxes.device, dtype=boxes.dtype) + 0.5
        dx = signed_log(x_edges[:, :, None, :] - cols[None, None, :, None])  # (B, Nq, w, 2)
        dy = signed_log(y_edges[:, :, None, :] - rows[None, None, :, None])  # (B, Nq, h, 2)
        bias_x = self.mlp_x(dx).permute(0, 3, 1, 2)  # (B, heads, Nq, w)
        bias_y = self.mlp_y(dy).permute(0, 3, 1, 2)  # (B, heads, Nq, h)
        bias = bias_y[..., :, None] + bias_x[..., None, :]  # (B, heads, Nq, h, w)
        return bias.flatten(-2)
