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


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def record_problems(coco: object) -> list[str]:
    """Every structural problem of a COCO-format mapping, one line each naming the record and the fix: lists
    and fields of the wrong kind, duplicate ids, annotations of images that do not exist, boxes that are not four
    finite numbers, ``file_name`` values that leave the image folder. Empty when the file can be loaded."""
    if not isinstance(coco, dict):
        return [f"the file holds a {type(coco).__name__}, not a COCO object with images, annotations, categories"]
    problems = []
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            problems.append(f"'{key}' is {'missing' if key not in coco else 'not a list'} (COCO format needs it)")
    if problems:
        return problems
    image_ids: set = set()
    for i, image in enumerate(coco["images"]):
        where = f"images[{i}]"
        if not isinstance(image, dict) or not isinstance(image.get("id"), int) or isinstance(image.get("id"), bool):
            problems.append(f"{where}: needs an integer 'id'")
            continue
        where = f"image {image['id']}"
        if image["id"] in image_ids:
            problems.append(f"{where}: the id is used twice; give every image its own id")
        image_ids.add(image["id"])
        name = image.get("file_name")
        if not isinstance(name, str) or not name:
            problems.append(f"{where}: needs a 'file_name' string")
        elif Path(name).is_absolute() or ".." in Path(name).parts:
            problems.append(
                f"{where}: file_name {name!r} must be a path inside the image folder (no '..', not absolute)"
            )
        for key in ("width", "height"):
            if not isinstance(image.get(key), int) or isinstance(image.get(key), bool) or image[key] < 1:
                problems.append(f"{where}: needs a positive integer '{key}', got {image.get(key)!r}")
    category_ids: set = set()
    for i, category in enumerate(coco["categories"]):
        if not isinstance(category, dict) or not isinstance(category.get("id"), int) or not category.get("name"):
            problems.append(f"categories[{i}]: needs an integer 'id' and a 'name'")
            continue
        if category["id"] in category_ids:
            problems.append(f"category {category['id']}: the id is used twice")
        category_ids.add(category["id"])
    for i, ann in enumerate(coco["annotations"]):
        where = f"annotation {ann.get('id', f'[{i}]')}" if isinstance(ann, dict) else f"annotations[{i}]"
        if not isinstance(ann, dict):
            problems.append(f"{where}: is not an object")
            continue
        if ann.get("image_id") not in image_ids:
            problems.append(f"{where}: image_id {ann.get('image_id')!r} is not an image of the file")
        if not isinstance(ann.get("category_id"), int):
            problems.append(f"{where}: needs an integer 'category_id', got {ann.get('category_id')!r}")
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_number(v) for v in bbox):
            problems.append(f"{where}: bbox must be [x, y, width, height], four finite numbers; got {bbox!r}")
    return problems


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
        raw = json.loads(annotation_file.read_text())
    except json.JSONDecodeError as error:
        raise AnnotationError(f"annotation file {annotation_file} is not valid JSON: {error}") from error
    problems = record_problems(raw)
    if problems:
        more = f" (and {len(problems) - 3} more; tools/check_dataset.py lists them all)" if len(problems) > 3 else ""
        raise AnnotationError(f"annotation file {annotation_file}: " + "; ".join(problems[:3]) + more)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = raw
        coco.createIndex()
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
