"""Two-stage query selection: dense proposals scored from the target features, and the top-k of them.

Every valid cell of the target feature grid predicts an objectness logit and a box (a delta, in logit
space, from an anchor box centred on the cell). The top-k boxes become the reference boxes of the object
queries (their positional part, "mixed selection"); their content part stays a learned embedding. The
proposals are trained class-agnostically on every box visible in training.
"""

from __future__ import annotations

import torch
from torch import nn

from .box_ops import inverse_sigmoid
from .layers import MLP


class ProposalHead(nn.Module):
    def __init__(self, dim: int, stride: int = 16, anchor_cells: float = 2.0) -> None:
        super().__init__()
        self.stride, self.anchor_cells = stride, anchor_cells
        self.norm = nn.LayerNorm(dim)
        self.score = nn.Linear(dim, 1)
        self.box = MLP(dim, dim, 4, 3)
        nn.init.zeros_(self.box[-1].weight)
        nn.init.zeros_(self.box[-1].bias)

    def anchors(self, grid_size: tuple[int, int], image_sizes: torch.Tensor) -> torch.Tensor:
        """``(B, h * w, 4)`` ``cxcywh`` anchors normalised by each image's valid size."""
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

    def forward(
        self,
        features: torch.Tensor,
        valid: torch.Tensor,
        grid_size: tuple[int, int],
        image_sizes: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``features (B, h*w, d)``, ``valid (B, h*w)`` bool (cells inside the target image).
        Returns ``logits (B, h*w)`` (``-1e4`` outside the image) and ``boxes (B, h*w, 4)`` ``cxcywh``."""
        x = self.norm(features)
        logits = self.score(x).squeeze(-1).masked_fill(~valid, -1e4)
        anchors = self.anchors(grid_size, image_sizes).clamp(1e-4, 1 - 1e-4)
        boxes = (inverse_sigmoid(anchors) + self.box(x)).sigmoid()
        return logits, boxes


def select_top_k(logits: torch.Tensor, boxes: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` highest-scoring proposal boxes ``(B, k, 4)``, detached (they seed the decoder), and their
    cell indices ``(B, k)``.

    With fewer cells than ``k`` (small images, many one-to-many queries) the ranking repeats cyclically.
    """
    index = logits.topk(min(k, logits.shape[1]), dim=1).indices
    if index.shape[1] < k:
        index = index.repeat(1, -(-k // index.shape[1]))[:, :k]
    return torch.gather(boxes, 1, index[..., None].expand(-1, -1, 4)).detach(), index
