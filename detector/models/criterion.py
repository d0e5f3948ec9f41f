"""Set losses: sigmoid focal loss, L1 and GIoU after Hungarian matching, on every decoder layer, on the
two-stage proposals, and on the one-to-many queries (hybrid matching, ground truth repeated ``k`` times).

Optional training-only terms:
- ``identity``: a linear head classifies into the base (seen) classes the pooled query-image features, the
  matched query features, and the target features pooled in every labelled target box (RoIAlign, max).
  Labels exist in training; supervising class identity teaches the features to tell classes apart instead
  of becoming a generic "any object" detector (SPEC section 7).
- ``contrastive`` (stage 1): matched query features of the same target box under two views are pulled
  together; provided by the training engine when enabled.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import generalized_box_iou, roi_align, sigmoid_focal_loss

from .backbone import STRIDE
from .box_ops import cxcywh_to_xyxy
from .ia_detr import DetectorOutput
from .matcher import HungarianMatcher


class SetCriterion(nn.Module):
    def __init__(
        self,
        matcher: HungarianMatcher,
        class_weight: float = 2.0,
        l1_weight: float = 5.0,
        giou_weight: float = 2.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        one2many_repeats: int = 6,
        one2many_weight: float = 1.0,
        identity_classes: int = 0,
        hidden_dim: int = 256,
        identity_weight: float = 1.0,
        contrastive_dim: int = 0,
        contrastive_weight: float = 2.0,
        contrastive_temperature: float = 0.5,
    ) -> None:
        super().__init__()
        self.matcher = matcher
        self.weights = {"class": class_weight, "l1": l1_weight, "giou": giou_weight}
        self.alpha, self.gamma = focal_alpha, focal_gamma
        self.one2many_repeats, self.one2many_weight = one2many_repeats, one2many_weight
        self.identity_weight = identity_weight
        self.identity_head = nn.Linear(hidden_dim, identity_classes) if identity_classes else None
        self.contrastive_weight, self.temperature = contrastive_weight, contrastive_temperature
        self.project_box = nn.Linear(hidden_dim, contrastive_dim) if contrastive_dim else None
        self.project_query = nn.Linear(hidden_dim, contrastive_dim) if contrastive_dim else None

    def set_loss(
        self, logits: torch.Tensor, boxes: torch.Tensor, targets: list[torch.Tensor], num_boxes: float
    ) -> tuple[dict[str, torch.Tensor], list]:
        """Unweighted ``class``/``l1``/``giou`` losses of one prediction set, normalised by ``num_boxes``."""
        indices = self.matcher(logits, boxes, targets)
        onehot = torch.zeros_like(logits)
        for b, (rows, _) in enumerate(indices):
            onehot[b, rows.to(logits.device)] = 1.0
        focal = sigmoid_focal_loss(logits.float(), onehot.float(), self.alpha, self.gamma, reduction="sum")
        batch_index = torch.cat([torch.full_like(r, b) for b, (r, _) in enumerate(indices)]).to(boxes.device)
        pred_index = torch.cat([r for r, _ in indices]).to(boxes.device)
        matched = boxes[batch_index, pred_index].float()
        target = torch.cat([t[c.to(t.device)] for t, (_, c) in zip(targets, indices)]).float()
        if len(target):
            l1 = F.l1_loss(matched, target, reduction="sum")
            giou = (1 - torch.diag(generalized_box_iou(cxcywh_to_xyxy(matched), cxcywh_to_xyxy(target)))).sum()
        else:
            l1 = giou = boxes.sum() * 0.0
        return {"class": focal / num_boxes, "l1": l1 / num_boxes, "giou": giou / num_boxes}, indices

    def forward(
        self, outputs: DetectorOutput, targets: list[dict[str, torch.Tensor]], num_boxes: float | None = None
    ) -> dict[str, torch.Tensor]:
        """Weighted losses by name (``class``, ``l1``, ``giou`` for the final layer; ``*_aux{i}``,
        ``*_proposals``, ``*_one2many{i}``, ``identity_*``, ``contrastive``) and their sum under ``loss``.

        ``num_boxes``: the normaliser; pass the all-reduced count when training on several processes.
        """
        boxes = [t["boxes"] for t in targets]
        if num_boxes is None:
            num_boxes = float(max(sum(len(b) for b in boxes), 1))
        losses: dict[str, torch.Tensor] = {}

        def add(suffix: str, terms: dict[str, torch.Tensor], scale: float = 1.0) -> None:
            for name, value in terms.items():
                losses[name + suffix] = value * self.weights[name] * scale

        final, indices = self.set_loss(outputs.logits, outputs.boxes, boxes, num_boxes)
        add("", final)
        for i, (logits, pred) in enumerate(outputs.aux):
            add(f"_aux{i}", self.set_loss(logits, pred, boxes, num_boxes)[0])
        if outputs.proposals is not None:
            every_box = [t["all_boxes"] for t in targets]
            count = float(max(sum(len(b) for b in every_box), 1))
            add("_proposals", self.set_loss(*outputs.proposals, every_box, count)[0])
        if outputs.one2many:
            repeated = [b.repeat(self.one2many_repeats, 1) for b in boxes]
            count = num_boxes * self.one2many_repeats
            for i, (logits, pred) in enumerate(outputs.one2many):
                add(f"_one2many{i}", self.set_loss(logits, pred, repeated, count)[0], self.one2many_weight)
        if self.identity_head is not None:
            for name, value in self.identity_losses(outputs, targets, indices).items():
                losses[f"identity_{name}"] = self.identity_weight * value
        if self.project_box is not None:
            losses["contrastive"] = self.contrastive_weight * self.contrastive_loss(outputs, indices)
        losses["loss"] = sum(losses.values())
        return losses

    def identity_losses(self, outputs: DetectorOutput, targets: list[dict], indices: list) -> dict[str, torch.Tensor]:
        """Unweighted identity cross-entropies: ``query`` (pooled query image), ``matched`` (decoder outputs
        matched to the query's boxes), ``boxes`` (every labelled target box). None in stage 1, whose episodes
        (query cropped from the target, ``query_label`` -1) have no class."""
        labels = torch.stack([t["query_label"] for t in targets]).to(outputs.logits.device)
        known = labels >= 0
        if not bool(known.any()):
            return {}
        self.check_labels(labels)
        terms = {"query": F.cross_entropy(self.identity_head(outputs.query_embedding[known]), labels[known])}
        matched = [
            outputs.hidden[b, rows.to(labels.device)] if known[b] else outputs.hidden[b, :0]
            for b, (rows, _) in enumerate(indices)
        ]
        matched_labels = torch.cat([labels[b].repeat(len(m)) for b, m in enumerate(matched)])
        if len(matched_labels):
            terms["matched"] = F.cross_entropy(self.identity_head(torch.cat(matched)), matched_labels)
        if outputs.target_features is not None:
            terms["boxes"] = self.target_box_identity_loss(outputs, targets)
        return terms

    def check_labels(self, labels: torch.Tensor) -> None:
        """Category ids must fit the identity head: an error naming ``model.identity_classes`` otherwise."""
        classes = self.identity_head.out_features
        if len(labels) and int(labels.max()) >= classes:
            raise ValueError(
                f"category id {int(labels.max())} needs model.identity_classes > {int(labels.max())}, it is {classes}"
            )

    def target_box_identity_loss(self, outputs: DetectorOutput, targets: list[dict]) -> torch.Tensor:
        """Cross-entropy of the target features max-pooled (RoIAlign 3x3) in every box with a class label.

        Every labelled box of a target counts, not only the query's class: several times more identity
        samples per episode than the query alone, and the target features learn the same class space as the
        query embedding.
        """
        features = outputs.target_features
        rois, labels = [], []
        for b, target in enumerate(targets):
            keep = target["all_labels"] >= 0  # stage 1's self-query box has no class
            boxes = target["all_boxes"][keep].to(features)
            if not len(boxes):
                continue
            height, width = outputs.image_sizes[b].to(features)
            xyxy = cxcywh_to_xyxy(boxes) * torch.stack([width, height, width, height])
            rois.append(torch.cat([xyxy.new_full((len(xyxy), 1), float(b)), xyxy], 1))
            labels.append(target["all_labels"][keep].to(features.device))
        if not rois:
            return features.sum() * 0.0
        labels = torch.cat(labels)
        self.check_labels(labels)
        pooled = roi_align(features.float(), torch.cat(rois), 3, spatial_scale=1.0 / STRIDE, aligned=True)
        return F.cross_entropy(self.identity_head(pooled.amax(dim=(2, 3)).to(features.dtype)), labels)

    def contrastive_loss(self, outputs: DetectorOutput, indices: list) -> torch.Tensor:
        """InfoNCE between each episode's first matched decoder output and the pooled query-image features,
        the other episodes of the batch being negatives (stage 1: 128-d projections, temperature 0.5)."""
        rows = [(b, int(r[0])) for b, (r, _) in enumerate(indices) if len(r)]
        if len(rows) < 2:
            return outputs.query_embedding.sum() * 0.0
        batch = torch.tensor([b for b, _ in rows], device=outputs.hidden.device)
        boxes = F.normalize(self.project_box(outputs.hidden[batch, torch.tensor([q for _, q in rows])]), dim=-1)
        queries = F.normalize(self.project_query(outputs.query_embedding[batch]), dim=-1)
        logits = boxes @ queries.T / self.temperature
        return F.cross_entropy(logits, torch.arange(len(rows), device=logits.device))
