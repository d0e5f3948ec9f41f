"""Optional learned heads of IA-DETR beyond the class and box heads.

- :class:`SimilarityLogit`: an explicit "same class as the query?" term added to each class logit.
- :class:`ContentProjection`: the target feature at a query's proposal cell, projected into the query's
  content (``q_i = m_i + y_pi(i)``, the paper's Definition 1).
- :class:`IdentityHead` (training only): classifies into the base (seen) classes the pooled query
  embedding, every decoder output, and the target features pooled in labelled target boxes. Labels exist in
  training; supervising class identity teaches the features to tell classes apart instead of becoming a
  generic "any object" detector (see the README's recipe section).
- :class:`ContrastiveHead` (training only, stage 1): projections of decoder outputs and of the pooled query
  embedding for a contrastive loss.

The losses on their outputs are in :mod:`detector.models.criterion`, which owns no parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from .box_ops import cxcywh_to_xyxy


class SimilarityLogit(nn.Module):
    """``scale_l * cos(A h, B e)`` between each object's layer-``l`` decoder features ``h`` and the pooled
    query embedding ``e``."""

    def __init__(self, dim: int, num_layers: int, init_scale: float = 5.0) -> None:
        super().__init__()
        self.object_proj, self.query_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.scale = nn.Parameter(torch.full((num_layers,), init_scale))

    def forward(self, hidden: torch.Tensor, query_embedding: torch.Tensor) -> torch.Tensor:
        """``hidden (L, B, N, d)``, ``query_embedding (B, d)`` -> ``(L, B, N)``."""
        objects = F.normalize(self.object_proj(hidden), dim=-1)
        query = F.normalize(self.query_proj(query_embedding), dim=-1)
        return (objects * query[None, :, None]).sum(-1) * self.scale[:, None, None]


class ContentProjection(nn.Sequential):
    """``LayerNorm -> Linear`` of the target feature picked at each query's proposal cell."""

    def __init__(self, dim: int) -> None:
        super().__init__(nn.LayerNorm(dim), nn.Linear(dim, dim))


@dataclass
class IdentityOutput:
    """Base-class logits ``(.., C)``: ``query (B, C)`` of the pooled query embedding, ``objects (B, Nq, C)`` of
    the final-layer one-to-one decoder outputs, ``boxes (M, C)`` of the target features pooled in the
    ``class_boxes`` given to the model, in order (image 0's boxes first)."""

    query: torch.Tensor
    objects: torch.Tensor
    boxes: torch.Tensor | None = None


class IdentityHead(nn.Module):
    def __init__(self, dim: int, num_classes: int, stride: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(dim, num_classes)
        self.stride = stride

    def forward(
        self,
        query_embedding: torch.Tensor,
        hidden: torch.Tensor,
        target_features: torch.Tensor,
        class_boxes: list[torch.Tensor] | None,
        image_sizes: torch.Tensor,
    ) -> IdentityOutput:
        """``class_boxes[b] (M_b, 4)``: ``cxcywh`` boxes normalised by target ``b``'s unpadded size; each is
        max-pooled over a 3x3 RoIAlign of ``target_features (B, d, h, w)`` (stride ``self.stride``)."""
        boxes = None
        if class_boxes is not None:
            rois = []
            for b, cxcywh in enumerate(class_boxes):
                height, width = image_sizes[b].to(target_features)
                xyxy = cxcywh_to_xyxy(cxcywh.to(target_features)) * torch.stack([width, height, width, height])
                rois.append(torch.cat([xyxy.new_full((len(xyxy), 1), float(b)), xyxy], 1))
            rois = torch.cat(rois)
            pooled = roi_align(target_features.float(), rois, 3, spatial_scale=1.0 / self.stride, aligned=True)
            boxes = self.classifier(pooled.amax(dim=(2, 3)).to(target_features.dtype))
        return IdentityOutput(self.classifier(query_embedding), self.classifier(hidden), boxes)


@dataclass
class ContrastiveOutput:
    """Projections for the stage-1 contrastive loss: ``objects (B, Nq, p)``, ``query (B, p)``."""

    objects: torch.Tensor
    query: torch.Tensor


class ContrastiveHead(nn.Module):
    def __init__(self, dim: int, projection_dim: int) -> None:
        super().__init__()
        self.object_proj, self.query_proj = nn.Linear(dim, projection_dim), nn.Linear(dim, projection_dim)

    def forward(self, hidden: torch.Tensor, query_embedding: torch.Tensor) -> ContrastiveOutput:
        return ContrastiveOutput(self.object_proj(hidden), self.query_proj(query_embedding))
