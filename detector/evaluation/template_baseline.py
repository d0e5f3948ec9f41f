"""A template-matching baseline: OpenCV normalised cross-correlation over several scales, then NMS.

It needs no training: the floor any learned one-shot detector must clear.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torchvision.ops import nms


class TemplateMatcher:
    """``predict(query_patch, target) -> {"boxes": (k, 4) xyxy, "scores": (k,)}`` on RGB ``uint8`` arrays.

    The template (the query patch, grayscale) is resized so that its longer side takes each of ``sides``
    pixels (aspect kept); every scale's correlation map contributes its ``per_scale`` best local maxima;
    boxes from all scales go through NMS. Scores are the correlation, mapped from [-1, 1] to [0, 1].
    """

    def __init__(
        self,
        sides: tuple[int, ...] = (16, 24, 32, 44, 60, 80, 104),
        per_scale: int = 20,
        nms_iou: float = 0.3,
        max_detections: int = 100,
    ) -> None:
        self.sides, self.per_scale, self.nms_iou, self.max_detections = (
            sides,
            per_scale,
            nms_iou,
            max_detections,
        )

    def predict(self, query_patch: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
        image = cv2.cvtColor(target, cv2.COLOR_RGB2GRAY)
        template = cv2.cvtColor(query_patch, cv2.COLOR_RGB2GRAY)
        boxes, scores = [], []
        for side in self.sides:
            scale = side / max(template.shape)
            tw, th = max(4, round(template.shape[1] * scale)), max(4, round(template.shape[0] * scale))
            if tw >= image.shape[1] or th >= image.shape[0]:
                continue
            resized = cv2.resize(template, (tw, th), interpolation=cv2.INTER_AREA)
            if resized.std() < 1e-3:
                continue  # a flat template correlates with nothing
            response = cv2.matchTemplate(image, resized, cv2.TM_CCOEFF_NORMED)
            peaks = (response == cv2.dilate(response, np.ones((5, 5), np.uint8))) & np.isfinite(response)
            ys, xs = np.nonzero(peaks)
            values = response[ys, xs]
            best = np.argsort(-values)[: self.per_scale]
            for y, x, v in zip(ys[best], xs[best], values[best]):
                boxes.append([x, y, x + tw, y + th])
                scores.append((v + 1) / 2)
        if not boxes:
            return {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32)}
        b, s = torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores, dtype=torch.float32)
        keep = nms(b, s, self.nms_iou)[: self.max_detections]
        return {"boxes": b[keep].numpy(), "scores": s[keep].numpy()}
