"""Set losses: sigmoid focal loss, L1 and GIoU after Hungarian matching, on every decoder layer, on the
two-stage proposals, and on the one-to-many queries (hybrid matching, ground truth repeated ``k`` times).

Optional training-only terms, on the outputs of the model's training-only heads (:mod:`.heads`):
- ``identity``: cross-entropy of the base-class logits of the query embedding, of the decoder outputs
  matched to the query's boxes, and of every labelled target box.
- ``contrastive`` (stage 1): InfoNCE between each episode's first matched object and its query embedding.

The criterion owns no parameters: everything learned is in the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import generalized_box_iou, sigmoid_focal_loss

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
        identity_weight: float = 1.0,
        contrastive_weight: float = 2.0,
        contrastive_temperature: float = 0.5,
        proposal_targets: str = "decoder",
    ) -> None:
        """``proposal_targets``: what the dense two-stage proposals learn to find: ``decoder``, the decoder's
        targets (stage 2: the query class's boxes; the official code), or ``all``, every annotated box
        (class-agnostic objectness)."""
        super().__init__()
        self.matcher = matcher
        self.weights = {"class": class_weight, "l1": l1_weight, "giou": giou_weight}
        self.alpha, self.gamma = focal_alpha, focal_gamma
        self.one2many_repeats, self.one2many_weight = one2many_repeats, one2many_weight
        self.identity_weight = identity_weight
        self.contrastive_weight, self.temperature = contrastive_weight, contrastive_temperature
        self.proposal_targets = proposal_targets

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
        if outputs.proposals is not None and self.proposal_targets == "decoder":
            add("_proposals", self.set_loss(*outputs.proposals, boxes, num_boxes)[0])
        elif outputs.proposals is not None:
            every_box = [t["all_boxes"] for t in targets]
            count = float(max(sum(len(b) for b in every_box), 1))
            add("_proposals", self.set_loss(*outputs.proposals, every_box, count)[0])
        if outputs.one2many:
            repeated = [b.repeat(self.one2many_repeats, 1) for b in boxes]
            count = num_boxes * self.one2many_repeats
            for i, (logits, pred) in enumerate(outputs.one2many):
                add(f"_one2many{i}", self.set_loss(logits, pred, repeated, count)[0], self.one2many_weight)
        if outputs.identity is not None:
            for name, value in self.identity_losses(outputs, targets, indices).items():
                losses[f"identity_{name}"] = self.identity_weight * value
        if outputs.contrastive is not None:
            losses["contrastive"] = self.contrastive_weight * self.contrastive_loss(outputs, indices)
        losses["loss"] = sum(losses.values())
        return losses

    def identity_losses(self, outputs: DetectorOutput, targets: list[dict], indices: list) -> dict[str, torch.Tensor]:
        """Unweighted identity cross-entropies: ``query`` (pooled query image), ``matched`` (decoder outputs
        matched to the query's boxes), ``boxes`` (every target box with a class). Episodes whose query has no
        class (``query_label`` -1, stage 1) add no ``query`` or ``matched`` term."""
        identity = outputs.identity
        labels = torch.stack([t["query_label"] for t in targets]).to(identity.query.device)
        terms: dict[str, torch.Tensor] = {}
        known = labels >= 0
        if bool(known.any()):
            check_labels(labels, identity.query.shape[-1])
            terms["query"] = F.cross_entropy(identity.query[known], labels[known])
            rows = [(b, r.to(labels.device)) for b, (r, _) in enumerate(indices) if known[b] and len(r)]
            if rows:
                matched = torch.cat([identity.objects[b, r] for b, r in rows])
                matched_labels = torch.cat([labels[b].repeat(len(r)) for b, r in rows])
                terms["matched"] = F.cross_entropy(matched, matched_labels)
        if identity.boxes is not None:
            box_labels = torch.cat([t["class_labels"] for t in targets]).to(identity.boxes.device)
            if len(box_labels):
                check_labels(box_labels, identity.boxes.shape[-1])
                terms["boxes"] = F.cross_entropy(identity.boxes, box_labels)
            else:
                terms["boxes"] = identity.boxes.sum() * 0.0
        return terms

    def contrastive_loss(self, outputs: DetectorOutput, indices: list) -> torch.Tensor:
        """InfoNCE between each episode's first matched object projection and its query projection, the other
        episodes of the batch being negatives (stage 1: 128-d projections, temperature 0.5)."""
        projected = outputs.contrastive
        rows = [(b, int(r[0])) for b, (r, _) in enumerate(indices) if len(r)]
        if len(rows) < 2:
            return projected.query.sum() * 0.0
        batch = torch.tensor([b for b, _ in rows], device=projected.query.device)
        objects = F.normalize(projected.objects[batch, torch.tensor([q for _, q in rows])], dim=-1)
        queries = F.normalize(projected.query[batch], dim=-1)
        logits = objects @ queries.T / self.temperature
        return F.cross_entropy(logits, torch.arange(len(rows), device=logits.device))


def check_labels(labels: torch.Tensor, num_classes: int) -> None:
    """Category ids must fit the identity head: an error naming ``model.identity_classes`` otherwise."""
    if len(labels) and int(labels.max()) >= num_classes:
        raise ValueError(
            f"category id {int(labels.max())} needs model.identity_classes > {int(labels.max())}, it is {num_classes}"
        )
