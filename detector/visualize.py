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
        labels = [f"{float(scores[i]):.2f}" for i in order]
        sizes = [cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)[0] for label in labels]
        sizes = [(tw + 2, th + 4) for tw, th in sizes]
        places = place_labels(np.asarray(boxes, np.float64)[list(order)], sizes, canvas.shape[:2])
        for label, place in zip(labels, places):
            if place is None:
                continue
            x1, y1, x2, y2 = place
            cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), colour, -1)
            cv2.putText(canvas, label, (x1 + 1, y2 - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    if query is None:
        return canvas
    return _with_query_panel(canvas, query if isinstance(query, list) else [query])


def place_labels(
    boxes: np.ndarray, sizes: list[tuple[int, int]], image_size: tuple[int, int]
) -> list[tuple[int, int, int, int] | None]:
    """Where to draw each box's label, best box first: ``boxes`` ``(n, 4)`` xyxy in order of priority,
    ``sizes`` the labels' ``(width, height)``, ``image_size`` ``(H, W)``. Each label takes the first of these
    places that lies in the image and overlaps no label placed before it: above the box's top-left corner,
    inside it there, below the box, above its top-right corner, inside its bottom-left corner. A label with
    no free place is left out (``None``), so labels never cover each other; the best box always gets one.
    Returns ``(x1, y1, x2, y2)`` pixel rectangles (end exclusive)."""
    height, width = image_size
    placed: list[tuple[int, int, int, int]] = []
    out: list[tuple[int, int, int, int] | None] = []
    for box, (w, h) in zip(boxes, sizes):
        bx1, by1, bx2, by2 = (round(float(v)) for v in box)
        candidates = [(bx1, by1 - h), (bx1, by1), (bx1, by2), (bx2 - w, by1 - h), (bx1, by2 - h)]
        chosen = None
        for x, y in candidates:
            x, y = min(max(0, x), max(0, width - w)), min(max(0, y), max(0, height - h))
            rect = (x, y, x + w, y + h)
            if not any(rect[0] < p[2] and p[0] < rect[2] and rect[1] < p[3] and p[1] < rect[3] for p in placed):
                chosen = rect
                break
        if chosen is not None:
            placed.append(chosen)
        out.append(chosen)
    return out


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
