"""Optional learned heads of IA-DETR beyond the class and box heads.

- :class:`SimilarityLogit`: an explicit "same class as the query?" term added to each class logit.
- :class:`BiasLogit`: a class "head" that ignores the object's features (``model.class_logit: similarity``:
  the logit is the query-match term plus one learned bias per layer).
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
from .layers import MLP


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


class BiasLogit(nn.Module):
    """A learned bias as every object's class logit, whatever its features (one per decoder layer): with
    :class:`SimilarityLogit` added, the score is the query match alone, with no query-independent part that
    could learn which objects are of the training classes."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden (.., d)`` -> ``(.., 1)``."""
        return self.bias.expand(*hidden.shape[:-1], 1)


class ContentProjection(nn.Sequential):
    """``LayerNorm -> Linear`` of the target feature picked at each query's proposal cell."""

    def __init__(self, dim: int) -> None:
        super().__init__(nn.LayerNorm(dim), nn.Linear(dim, dim))


@dataclass
class IdentityOutput:
    """Base-class logits ``(.., C)``: ``query (B, C)`` of the pooled query embedding, ``objects (B, Nq, C)`` of
    the final-layer one-to-one decoder outputs, ``boxes (M, C)`` of the target features pooled in the
    ``class_boxes`` given to the model, in order (image 0's boxes first). ``query_features (B, d)`` and
    ``box_features (M, d)``: what the classifier saw for ``query`` and ``boxes`` (the query-box metric loss)."""

    query: torch.Tensor
    objects: torch.Tensor
    boxes: torch.Tensor | None = None
    query_features: torch.Tensor | None = None
    box_features: torch.Tensor | None = None


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
        boxes = features = None
        if class_boxes is not None:
            rois = []
            for b, cxcywh in enumerate(class_boxes):
                height, width = image_sizes[b].to(target_features)
                xyxy = cxcywh_to_xyxy(cxcywh.to(target_features)) * torch.stack([width, height, width, height])
                rois.append(torch.cat([xyxy.new_full((len(xyxy), 1), float(b)), xyxy], 1))
            rois = torch.cat(rois)
            pooled = roi_align(target_features.float(), rois, 3, spatial_scale=1.0 / self.stride, aligned=True)
            features = pooled.amax(dim=(2, 3)).to(target_features.dtype)
            boxes = self.classifier(features)
        query = self.classifier(query_embedding)
        return IdentityOutput(query, self.classifier(hidden), boxes, query_embedding, features)


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


@dataclass
class StageOneOutput:
    """The official stage-1 recipe's training-only outputs, per decoder layer, for every query (one-to-one, then
    one-to-many): ``objects (L, B, N)``, the "an object" logits; ``features (L, B, N, p)``, the projections the
    class-grouped contrastive loss compares."""

    objects: torch.Tensor
    features: torch.Tensor


class StageOneHeads(nn.Module):
    """Per decoder layer, a second class logit ("an object": stage 1 labels every base-class box with it, beside
    the crop's "the query") and a 3-layer projection MLP for the contrastive loss (the official code's
    ``feature_embed``). Training only: stage 2 does not build them."""

    def __init__(self, dim: int, layers: int, projection_dim: int) -> None:
        super().__init__()
        self.object_heads = nn.ModuleList(nn.Linear(dim, 1) for _ in range(layers))
        self.feature_heads = nn.ModuleList(MLP(dim, dim, projection_dim, 3) for _ in range(layers))
        for head in self.object_heads:
            nn.init.constant_(head.bias, -4.595)  # the focal-loss prior, as the class heads

    def forward(self, hidden: torch.Tensor) -> StageOneOutput:
        objects = torch.stack([head(h).squeeze(-1) for head, h in zip(self.object_heads, hidden)])
        features = torch.stack([head(h) for head, h in zip(self.feature_heads, hidden)])
        return StageOneOutput(objects, features)
