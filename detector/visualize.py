"""Pictures: detections drawn on a target image, the query exemplar(s) in a panel beside it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def draw_detections(
    target: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray | None = None,
    query: np.ndarray | list[np.ndarray] | None = None,
    colour: tuple[int, int, int] = (255, 40, 40),
    ground_truth: np.ndarray | None = None,
) -> np.ndarray:
    """A copy of RGB ``target`` with ``xyxy`` ``boxes`` (and scores) drawn, ground truth in green, and the
    query exemplar(s) (RGB patches) in a panel to the left of the target, so that no detection is hidden."""
    canvas = np.ascontiguousarray(target.copy())
    thickness = max(1, round(max(canvas.shape[:2]) / 300))
    for box in ground_truth if ground_truth is not None else []:
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (40, 220, 40), thickness)
    order = np.argsort(-np.asarray(scores)) if scores is not None else range(len(boxes))
    for i in order:  # best last, so that its label is on top
        x1, y1, x2, y2 = (round(float(v)) for v in boxes[i])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
    if scores is not None:
        for i in reversed(order):
            x1, y1 = round(float(boxes[i][0])), round(float(boxes[i][1]))
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
    if query is None:
        return canvas
    return _with_query_panel(canvas, query if isinstance(query, list) else [query])


def _with_query_panel(canvas: np.ndarray, queries: list[np.ndarray]) -> np.ndarray:
    """``canvas`` with a grey panel on its left holding the query patches, stacked, each at most a quarter of
    the target's width (at least 48 px)."""
    width = max(48, canvas.shape[1] // 4)
    tiles = []
    for patch in queries:
        scale = min(width / patch.shape[1], (canvas.shape[0] / len(queries)) / patch.shape[0], 4.0)
        size = (max(1, round(patch.shape[1] * scale)), max(1, round(patch.shape[0] * scale)))
        tiles.append(cv2.resize(patch, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST))
    height = max(canvas.shape[0], sum(t.shape[0] + 4 for t in tiles))
    out = np.full((height, width + 4 + canvas.shape[1], 3), 90, np.uint8)
    y = 2
    for tile in tiles:
        out[y : y + tile.shape[0], 2 : 2 + tile.shape[1]] = tile
        y += tile.shape[0] + 4
    out[: canvas.shape[0], width + 4 :] = canvas
    return out


def save_rgb(path: str | Path, image: np.ndarray) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[:, :, ::-1])):
        raise OSError(f"could not write image {path}")
