"""COCO-format annotation files (COCO itself, the embedded benchmark, any custom data set)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from .records import Category, DetectionData, ImageRecord

logger = logging.getLogger(__name__)


class AnnotationError(ValueError):
    """An annotation file that cannot be used as it is."""


def load_coco(annotation_file: str | Path, image_dir: str | Path, name: str | None = None) -> DetectionData:
    """Load a COCO-format JSON file through pycocotools.

    Boxes are converted from ``xywh`` to ``xyxy`` and clipped to the image; boxes with no area after
    clipping are dropped with one warning that counts them. Crowd boxes are kept with ``ignore=True``.
    An annotation whose ``category_id`` is not among the categories is an error naming it.
    """
    annotation_file, image_dir = Path(annotation_file), Path(image_dir)
    if not annotation_file.is_file():
        raise AnnotationError(f"annotation file {annotation_file} does not exist")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(annotation_file))
    except json.JSONDecodeError as error:
        raise AnnotationError(f"annotation file {annotation_file} is not valid JSON: {error}") from error
    for key in ("images", "annotations", "categories"):
        if key not in coco.dataset:
            raise AnnotationError(f"annotation file {annotation_file} has no '{key}' list (not COCO format)")
    categories = [
        Category(int(c["id"]), str(c["name"])) for c in sorted(coco.dataset["categories"], key=lambda c: c["id"])
    ]
    known = {c.id for c in categories}
    images, dropped = [], 0
    for image_id in sorted(coco.imgs):
        info = coco.imgs[image_id]
        width, height = int(info["width"]), int(info["height"])
        boxes, labels, ignore = [], [], []
        for ann in coco.imgToAnns.get(image_id, []):
            if ann["category_id"] not in known:
                raise AnnotationError(
                    f"annotation {ann.get('id')} of image {image_id} in {annotation_file} has category_id "
                    f"{ann['category_id']}, which is not in 'categories' (known ids: {sorted(known)})"
                )
            x, y, w, h = (float(v) for v in ann["bbox"])
            box = np.clip([x, y, x + w, y + h], 0, [width, height, width, height])
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                dropped += 1
                continue
            boxes.append(box)
            labels.append(int(ann["category_id"]))
            ignore.append(bool(ann.get("iscrowd", 0)))
        images.append(
            ImageRecord(
                image_id=int(image_id),
                path=image_dir / info["file_name"],
                width=width,
                height=height,
                boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                labels=np.asarray(labels, np.int64),
                ignore=np.asarray(ignore, bool),
            )
        )
    if dropped:
        logger.warning("%s: dropped %d degenerate boxes (no area inside the image)", annotation_file, dropped)
    return DetectionData(name or annotation_file.stem, categories, images)
