"""Hungarian matching between predictions and ground-truth boxes (one class, "matches the query"; stage 1 of the
official recipe adds a second, "an object")."""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torchvision.ops import generalized_box_iou

from .box_ops import cxcywh_to_xyxy


class HungarianMatcher(nn.Module):
    """Cost = ``class_cost * focal_cost + l1_cost * L1 + giou_cost * (-GIoU)``.

    The focal-style class cost is ``alpha (1 - p)^gamma (-log p) - (1 - alpha) p^gamma (-log(1 - p))``
    for the foreground probability ``p`` (Deformable DETR's), so matching and loss agree.
    """

    def __init__(
        self,
        class_cost: float = 2.0,
        l1_cost: float = 5.0,
        giou_cost: float = 2.0,
        alpha: float = 0.25,
        gamma: float = 2.0,
    ) -> None:
        super().__init__()
        self.class_cost, self.l1_cost, self.giou_cost = class_cost, l1_cost, giou_cost
        self.alpha, self.gamma = alpha, gamma

    def cost_matrix(
        self,
        logits: torch.Tensor,
        boxes: torch.Tensor,
        target_boxes: torch.Tensor,
        target_channels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``logits (N,)``, ``boxes (N, 4)``, ``target_boxes (M, 4)`` (``cxcywh``) -> cost ``(N, M)``. With
        several classes, ``logits (N, C)`` and each target's class ``target_channels (M,)``: the class cost of a
        target is that of its channel (stage 1's "the query" and "an object")."""
        p = logits.float().sigmoid()
        positive = self.alpha * (1 - p) ** self.gamma * -(p + 1e-8).log()
        negative = (1 - self.alpha) * p**self.gamma * -(1 - p + 1e-8).log()
        if logits.dim() == 2:
            class_cost = (positive - negative)[:, target_channels.to(logits.device)]
        else:
            class_cost = (positive - negative)[:, None]
        l1 = torch.cdist(boxes.float(), target_boxes.float(), p=1)
        giou = generalized_box_iou(cxcywh_to_xyxy(boxes.float()), cxcywh_to_xyxy(target_boxes.float()))
        return self.class_cost * class_cost + self.l1_cost * l1 - self.giou_cost * giou

    @torch.no_grad()
    def forward(
        self,
        logits: torch.Tensor,
        boxes: torch.Tensor,
        targets: list[torch.Tensor],
        channels: list[torch.Tensor] | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``logits (B, N)`` (or ``(B, N, C)`` with each target's class in ``channels[b] (M_b,)``), ``boxes (B, N,
        4)``, ``targets[b] (M_b, 4)``. Returns, per image, the matched ``(prediction indices, target indices)``,
        ``min(N, M_b)`` pairs sorted by prediction index."""
        b, n = logits.shape[:2]
        sizes = [len(t) for t in targets]
        if sum(sizes) == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            return [(empty, empty) for _ in range(b)]
        # one batched cost computation, split per image
        flat = logits.flatten(0, 1)
        target_channels = torch.cat(channels) if channels is not None else None
        costs = self.cost_matrix(flat, boxes.flatten(0, 1), torch.cat(targets), target_channels).view(b, n, -1).cpu()
        out = []
        for i, chunk in enumerate(costs.split(sizes, dim=-1)):
            rows, cols = linear_sum_assignment(chunk[i].numpy())
            out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return out
