"""Set losses: sigmoid focal loss, L1 and GIoU after Hungarian matching, on every decoder layer, on the
two-stage proposals, and on the one-to-many queries (hybrid matching, ground truth repeated ``k`` times).

Optional training-only terms, on the outputs of the model's training-only heads (:mod:`.heads`):
- ``identity``: cross-entropy of the base-class logits of the query embedding, of the decoder outputs
  matched to the query's boxes, and of every labelled target box.
- ``similarity``: the focal loss of the class logits, also on the query-match term alone (``similarity``, the
  part of each one-to-one logit that compares the object with the query), with the same matches.
- ``query_metric``: class-agnostic metric learning on the same features: each query embedding against every
  labelled box of the batch's targets, the boxes of its class the positives (supervised InfoNCE over cosine
  similarities). Unlike the identity classifier it names no class, so what it teaches is "like the query",
  which is what an unseen class needs.
- ``contrastive`` (stage 1, crop-only recipe): InfoNCE between each episode's first matched object and its query
  embedding.
- the official stage-1 recipe (:class:`~.heads.StageOneOutput`): a second class ("an object") for every
  annotated box beside the crop ("the query"), matched and regressed with it, and a contrastive loss between
  matched objects grouped by class (``contrastive``, ``contrastive_aux{i}``, ``contrastive_one2many{i}``).

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
        query_metric_weight: float = 0.0,
        query_metric_temperature: float = 0.1,
        similarity_weight: float = 0.0,
        identity_matched_weight: float = 1.0,
    ) -> None:
        """``proposal_targets``: what the dense two-stage proposals learn to find: ``decoder``, the decoder's
        targets (stage 2: the query class's boxes; the official code), or ``all``, every annotated box
        (class-agnostic objectness)."""
        super().__init__()
        self.matcher = matcher
        self.weights = {
            "class": class_weight,
            "l1": l1_weight,
            "giou": giou_weight,
            "similarity": class_weight * similarity_weight,
        }
        self.alpha, self.gamma = focal_alpha, focal_gamma
        self.one2many_repeats, self.one2many_weight = one2many_repeats, one2many_weight
        self.identity_weight, self.identity_matched_weight = identity_weight, identity_matched_weight
        self.contrastive_weight, self.temperature = contrastive_weight, contrastive_temperature
        self.proposal_targets = proposal_targets
        self.query_metric_weight, self.query_metric_temperature = query_metric_weight, query_metric_temperature

    def set_loss(
        self,
        logits: torch.Tensor,
        boxes: torch.Tensor,
        targets: list[torch.Tensor],
        num_boxes: float,
        channels: list[torch.Tensor] | None = None,
        similarity: torch.Tensor | None = None,
    ) -> tuple[dict[str, torch.Tensor], list]:
        """Unweighted ``class``/``l1``/``giou`` losses of one prediction set, normalised by ``num_boxes``. With
        ``logits (B, N, C)``, ``channels[b]`` holds each target's class (the focal loss covers every channel).
        With ``similarity (B, N)``, the query-match term of channel 0, also ``similarity``: its own focal loss
        against the same matches."""
        indices = self.matcher(logits, boxes, targets, channels)
        onehot = torch.zeros_like(logits)
        for b, (rows, cols) in enumerate(indices):
            if channels is None:
                onehot[b, rows.to(logits.device)] = 1.0
            else:
                onehot[b, rows.to(logits.device), channels[b][cols].to(logits.device)] = 1.0
        focal = sigmoid_focal_loss(logits.float(), onehot.float(), self.alpha, self.gamma, reduction="sum")
        terms = {"class": focal / num_boxes}
        if similarity is not None:
            query_channel = onehot if channels is None else onehot[..., 0]
            terms["similarity"] = (
                sigmoid_focal_loss(similarity.float(), query_channel.float(), self.alpha, self.gamma, reduction="sum")
                / num_boxes
            )
        batch_index = torch.cat([torch.full_like(r, b) for b, (r, _) in enumerate(indices)]).to(boxes.device)
        pred_index = torch.cat([r for r, _ in indices]).to(boxes.device)
        matched = boxes[batch_index, pred_index].float()
        target = torch.cat([t[c.to(t.device)] for t, (_, c) in zip(targets, indices)]).float()
        if len(target):
            l1 = F.l1_loss(matched, target, reduction="sum")
            giou = (1 - torch.diag(generalized_box_iou(cxcywh_to_xyxy(matched), cxcywh_to_xyxy(target)))).sum()
        else:
            l1 = giou = boxes.sum() * 0.0
        return {**terms, "l1": l1 / num_boxes, "giou": giou / num_boxes}, indices

    def forward(
        self, outputs: DetectorOutput, targets: list[dict[str, torch.Tensor]], num_boxes: float | None = None
    ) -> dict[str, torch.Tensor]:
        """Weighted losses by name (``class``, ``l1``, ``giou`` for the final layer; ``*_aux{i}``,
        ``*_proposals``, ``*_one2many{i}``, ``identity_*``, ``contrastive``) and their sum under ``loss``.

        ``num_boxes``: the normaliser; pass the all-reduced count when training on several processes.
        """
        boxes = [t["boxes"] for t in targets]
        stage_one, channels, labels = outputs.stage_one, None, None
        if stage_one is not None:  # the official stage 1: the crop is "the query" (0), every box "an object" (1)
            objects = [t["object_boxes"] for t in targets]
            channels = [
                torch.cat([torch.zeros(len(b), dtype=torch.int64), torch.ones(len(o), dtype=torch.int64)])
                for b, o in zip(boxes, objects)
            ]
            labels = [
                torch.cat([torch.full((len(b),), -1, device=o.device), t["object_labels"].to(o.device)])
                for b, o, t in zip(boxes, objects, targets)
            ]
            boxes = [torch.cat([b, o]) for b, o in zip(boxes, objects)]
        if num_boxes is None:
            num_boxes = float(max(sum(len(b) for b in boxes), 1))
        losses: dict[str, torch.Tensor] = {}
        nq, layers = outputs.logits.shape[1], len(outputs.aux) + 1

        def add(suffix: str, terms: dict[str, torch.Tensor], scale: float = 1.0) -> None:
            for name, value in terms.items():
                losses[name + suffix] = value * self.weights[name] * scale

        def one_set(suffix, logits, pred, layer, part, set_boxes, set_channels, set_labels, count, scale=1.0):
            if stage_one is not None:
                logits = torch.stack([logits, stage_one.objects[layer][:, part]], -1)
            similarity = None
            if self.weights["similarity"] and outputs.similarity is not None and part == o2o:
                similarity = outputs.similarity[layer]
            terms, matched = self.set_loss(logits, pred, set_boxes, count, set_channels, similarity)
            add(suffix, terms, scale)
            if stage_one is not None:
                features = stage_one.features[layer][:, part]
                loss = self.grouped_contrastive_loss(features, matched, set_labels)
                losses["contrastive" + suffix] = self.contrastive_weight * scale * loss
            return matched

        o2o = slice(0, nq)
        indices = one_set("", outputs.logits, outputs.boxes, layers - 1, o2o, boxes, channels, labels, num_boxes)
        for i, (logits, pred) in enumerate(outputs.aux):
            one_set(f"_aux{i}", logits, pred, i, o2o, boxes, channels, labels, num_boxes)
        if outputs.proposals is not None and self.proposal_targets == "decoder":
            add("_proposals", self.set_loss(*outputs.proposals, boxes, num_boxes)[0])
        elif outputs.proposals is not None:
            every_box = [t["all_boxes"] for t in targets]
            count = float(max(sum(len(b) for b in every_box), 1))
            add("_proposals", self.set_loss(*outputs.proposals, every_box, count)[0])
        if outputs.one2many:
            k = self.one2many_repeats
            repeated = [b.repeat(k, 1) for b in boxes]
            repeated_channels = [c.repeat(k) for c in channels] if channels is not None else None
            repeated_labels = [c.repeat(k) for c in labels] if labels is not None else None
            o2m = slice(nq, None)
            for i, (logits, pred) in enumerate(outputs.one2many):
                suffix, count = f"_one2many{i}", num_boxes * k
                one_set(
                    suffix,
                    logits,
                    pred,
                    i,
                    o2m,
                    repeated,
                    repeated_channels,
                    repeated_labels,
                    count,
                    self.one2many_weight,
                )
        if outputs.identity is not None:
            for name, value in self.identity_losses(outputs, targets, indices).items():
                losses[f"identity_{name}"] = self.identity_weight * value
            if self.query_metric_weight:
                losses["query_metric"] = self.query_metric_weight * self.query_metric_loss(outputs, targets)
        if outputs.contrastive is not None:
            losses["contrastive"] = self.contrastive_weight * self.contrastive_loss(outputs, indices)
        losses["loss"] = sum(losses.values())
        return losses

    def grouped_contrastive_loss(
        self, features: torch.Tensor, indices: list, labels: list[torch.Tensor]
    ) -> torch.Tensor:
        """The official stage 1's contrastive loss (AlignDet's): the matched objects' features ``(B, N, p)``
        grouped by the class of their target (``labels[b]``; -1, the crop, is never an anchor). For each class
        with matches ``m``, every ordered pair ``(i, j)`` of its matches is a positive against every match of the
        other classes (detached), ``-log softmax`` of cosine similarities over ``temperature``; the mean over
        pairs, then over classes."""
        flat = features.flatten(0, 1)
        n = features.shape[1]
        rows = torch.cat([r.to(flat.device) + b * n for b, (r, _) in enumerate(indices)])
        if len(rows) == 0:
            return features.sum() * 0.0
        matched = F.normalize(flat[rows].float(), dim=-1)
        classes = torch.cat([labels[b][c.to(labels[b].device)] for b, (_, c) in enumerate(indices)]).to(flat.device)
        total, count = features.sum() * 0.0, 0
        for label in torch.unique(classes):
            if int(label) == -1:
                continue
            same = classes == label
            group, negatives = matched[same], matched[~same].detach()
            m = len(group)
            positive = group @ group.T  # (m anchors, m keys)
            negative = (group @ negatives.T)[:, None, :].expand(m, m, len(negatives))
            logits = torch.cat([positive[..., None], negative], -1).reshape(m * m, -1) / self.temperature
            total = total + F.cross_entropy(logits, torch.zeros(m * m, dtype=torch.int64, device=logits.device))
            count += 1
        return total / max(count, 1)

    def identity_losses(self, outputs: DetectorOutput, targets: list[dict], indices: list) -> dict[str, torch.Tensor]:
        """Identity cross-entropies before ``identity_weight``: ``query`` (pooled query image), ``matched`` (decoder
        outputs matched to the query's boxes, times ``identity_matched_weight``; absent at 0), ``boxes`` (every
        target box with a class). Episodes whose query has no class (``query_label`` -1, stage 1) add no ``query``
        or ``matched`` term."""
        identity = outputs.identity
        labels = torch.stack([t["query_label"] for t in targets]).to(identity.query.device)
        terms: dict[str, torch.Tensor] = {}
        known = labels >= 0
        if bool(known.any()):
            check_labels(labels, identity.query.shape[-1])
            terms["query"] = F.cross_entropy(identity.query[known], labels[known])
            rows = [(b, r.to(labels.device)) for b, (r, _) in enumerate(indices) if known[b] and len(r)]
            if rows and self.identity_matched_weight:
                matched = torch.cat([identity.objects[b, r] for b, r in rows])
                matched_labels = torch.cat([labels[b].repeat(len(r)) for b, r in rows])
                terms["matched"] = self.identity_matched_weight * F.cross_entropy(matched, matched_labels)
        if identity.boxes is not None:
            box_labels = torch.cat([t["class_labels"] for t in targets]).to(identity.boxes.device)
            if len(box_labels):
                check_labels(box_labels, identity.boxes.shape[-1])
                terms["boxes"] = F.cross_entropy(identity.boxes, box_labels)
            else:
                terms["boxes"] = identity.boxes.sum() * 0.0
        return terms

    def query_metric_loss(self, outputs: DetectorOutput, targets: list[dict]) -> torch.Tensor:
        """Supervised InfoNCE between each episode's query embedding and every labelled box of the batch (target
        features pooled in the box, as the identity head pools them): ``-mean_p log softmax_j(cos(q, f_j) / t)``
        over the boxes ``p`` of the query's class, averaged over the episodes that have one. Episodes whose
        query has no class (stage 1) or whose class has no box in the batch add nothing."""
        identity = outputs.identity
        if identity.query_features is None or identity.box_features is None or not len(identity.box_features):
            return identity.query.sum() * 0.0
        queries = F.normalize(identity.query_features.float(), dim=-1)
        boxes = F.normalize(identity.box_features.float(), dim=-1)
        query_labels = torch.stack([t["query_label"] for t in targets]).to(queries.device)
        box_labels = torch.cat([t["class_labels"] for t in targets]).to(queries.device)
        positive = (query_labels[:, None] == box_labels[None]) & (query_labels[:, None] >= 0)
        rows = positive.any(1)
        if not bool(rows.any()):
            return queries.sum() * 0.0
        log_prob = F.log_softmax(queries[rows] @ boxes.T / self.query_metric_temperature, dim=1)
        mask = positive[rows].float()
        return (-(log_prob * mask).sum(1) / mask.sum(1)).mean()

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
