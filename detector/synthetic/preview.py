"""A picture of a generated data set: test images with one class's boxes and a query exemplar inset."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..data.coco import load_coco
from ..data.episodes import evaluation_queries
from ..data.images import load_image
from ..data.query_pool import QueryPool
from ..data.transforms import crop_box
from ..visualize import draw_detections, save_rgb


def benchmark_preview(root: str | Path, out: str | Path, count: int = 4) -> None:
    """A strip of ``count`` test images of the embedded benchmark, each with the boxes of one class in
    red, the other classes' in white, and a query exemplar of that class (from another image) beside it."""
    root = Path(root)
    data = load_coco(root / "annotations" / "test.json", root / "test")
    pool = QueryPool.from_data(data)
    tiles = []
    for record in data.images:
        if len(tiles) == count:
            break
        classes = sorted(record.classes())
        if not classes:
            continue
        category = classes[0]
        queries = evaluation_queries(pool, category, record.image_id, 1)
        if not queries:
            continue
        query = crop_box(load_image(queries[0].path), queries[0].box)
        image = load_image(record.path)
        for box in record.boxes[record.labels != category]:  # the other classes' boxes in white
            x1, y1, x2, y2 = (int(v) for v in box)
            cv2.rectangle(image, (x1, y1), (x2, y2), (255, 255, 255), 1)
        tile = draw_detections(image, record.boxes[record.labels == category], query=query)
        tiles.append(cv2.resize(tile, (round(300 * tile.shape[1] / tile.shape[0]), 300)))
    save_rgb(out, np.concatenate(tiles, axis=1))
