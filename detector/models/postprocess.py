"""Turn detector outputs into boxes in pixels of the original target image."""

from __future__ import annotations

import torch
import torchvision

from .box_ops import cxcywh_to_xyxy
from .ia_detr import DetectorOutput


class PostProcessor:
    """Top-``k`` detections per image, as ``xyxy`` absolute pixels of the original image, with scores.

    Boxes are normalised by the resized, unpadded target, which is a uniform rescaling of the original
    image, so multiplying by the original ``(width, height)`` undoes both the resize and the padding.

    The detector is NMS-free (one-to-one matching), as in the paper; ``nms_iou > 0`` optionally suppresses
    lower-scored boxes overlapping a kept one by more than that IoU, for under-trained models that still
    predict duplicates.
    """

    def __init__(self, top_k: int = 100, nms_iou: float = 0.0) -> None:
        if not 0.0 <= nms_iou <= 1.0:
            raise ValueError(f"eval.nms_iou must lie in [0, 1] (0 turns NMS off), got {nms_iou}")
        self.top_k = top_k
        self.nms_iou = nms_iou

    @torch.no_grad()
    def __call__(self, outputs: DetectorOutput, original_sizes: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """``original_sizes (B, 2)`` as ``(height, width)``. Returns ``[{"scores": (k,), "boxes": (k, 4)}]``
        sorted by score."""
        scores = outputs.logits.float().sigmoid()
        k = min(self.top_k, scores.shape[1])
        top, index = scores.topk(k, dim=1)
        boxes = torch.gather(outputs.boxes.float(), 1, index[..., None].expand(-1, -1, 4))
        h, w = original_sizes[:, 0:1].float(), original_sizes[:, 1:2].float()
        scale = torch.stack([w, h, w, h], -1)
        boxes = cxcywh_to_xyxy(boxes) * scale
        boxes = torch.minimum(boxes.clamp(min=0), scale)
        results = [{"scores": s, "boxes": b} for s, b in zip(top, boxes)]
        if self.nms_iou > 0:
            for r in results:
                keep = torchvision.ops.nms(r["boxes"], r["scores"], self.nms_iou)  # sorted by score, as before
                r["scores"], r["boxes"] = r["scores"][keep], r["boxes"][keep]
        return results
