"""Pictures: detections drawn on a target image with the query exemplar in a corner."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def draw_detections(
    target: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray | None = None,
    query: np.ndarray | None = None,
    colour: tuple[int, int, int] = (255, 40, 40),
    ground_truth: np.ndarray | None = None,
) -> np.ndarray:
    """Return a copy of RGB ``target`` with ``xyxy`` ``boxes`` (and scores) drawn, ground truth in green,
    and ``query`` (an RGB patch) inset at the top-left corner with a white frame."""
    canvas = np.ascontiguousarray(target.copy())
    thickness = max(1, round(max(canvas.shape[:2]) / 300))
    for box in ground_truth if ground_truth is not None else []:
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (40, 220, 40), thickness)
    for i, box in enumerate(boxes):
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        if scores is not None:
            label = f"{float(scores[i]):.2f}"
            (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
            cv2.rectangle(canvas, (x1, max(0, y1 - th - 4)), (x1 + tw + 2, max(th + 4, y1)), colour, -1)
            cv2.putText(
                canvas,
                label,
                (x1 + 1, max(th + 1, y1 - 3)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.4,
                (255, 255, 255),
                1,
                cv2.LINE_AA,
            )
    if query is not None:
        side = max(24, min(canvas.shape[:2]) // 4)
        scale = side / max(query.shape[:2])
        inset = cv2.resize(query, (max(1, round(query.shape[1] * scale)), max(1, round(query.shape[0] * scale))))
        h, w = inset.shape[:2]
        canvas[: h + 4, : w + 4] = 255
        canvas[2 : h + 2, 2 : w + 2] = inset
    return canvas


def save_rgb(path: str | Path, image: np.ndarray) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[:, :, ::-1])):
        raise OSError(f"could not write image {path}")
