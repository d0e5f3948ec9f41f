"""Check a COCO-format data set before training on it.

Reports records that break the format (see ``coco.record_problems``: wrong field kinds, duplicate ids, orphan
annotations, non-finite boxes, file names outside the image folder), missing or unreadable images, images whose
stored size differs from the annotation, degenerate or out-of-image boxes, annotations with unknown category ids,
and classes without a usable query exemplar.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from .coco import record_problems
from .images import ImageReadError, load_image


def check_coco(
    annotation_file: str | Path, image_dir: str | Path, min_query_size: float = 16.0, read_images: bool = True
) -> dict:
    """Return a report ``{"ok": bool, "problems": {kind: [messages]}, "counts": {...}}``."""
    annotation_file, image_dir = Path(annotation_file), Path(image_dir)
    problems: dict[str, list[str]] = {
        k: []
        for k in (
            "missing_images",
            "unreadable_images",
            "size_mismatch",
            "degenerate_boxes",
            "boxes_outside_image",
            "unknown_category_ids",
            "classes_without_queries",
        )
    }
    try:
        coco = json.loads(annotation_file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        return {"ok": False, "problems": {"annotation_file": [f"{annotation_file}: {error}"]}, "counts": {}}
    invalid = record_problems(coco)
    if invalid:  # the checks below read these fields: report what is broken first
        return {"ok": False, "problems": {"invalid_records": invalid}, "counts": {}}
    categories = {c["id"]: c["name"] for c in coco.get("categories", [])}
    images = {im["id"]: im for im in coco.get("images", [])}
    usable, boxes = Counter(), Counter()
    for ann in coco.get("annotations", []):
        where = f"annotation {ann.get('id')} (image {ann.get('image_id')})"
        if ann.get("category_id") not in categories:
            problems["unknown_category_ids"].append(f"{where}: category_id {ann.get('category_id')}")
            continue
        image = images.get(ann.get("image_id"))
        x, y, w, h = ann["bbox"]
        boxes[ann["category_id"]] += 1
        if w < 1 or h < 1:
            problems["degenerate_boxes"].append(f"{where}: bbox {ann['bbox']} has width or height below 1 px")
            continue
        if image and (x < -0.5 or y < -0.5 or x + w > image["width"] + 0.5 or y + h > image["height"] + 0.5):
            problems["boxes_outside_image"].append(
                f"{where}: bbox {ann['bbox']} leaves the {image['width']}x{image['height']} image"
            )
        if not ann.get("iscrowd", 0) and min(w, h) >= min_query_size:
            usable[ann["category_id"]] += 1
    for cid, name in categories.items():
        if usable[cid] == 0:
            problems["classes_without_queries"].append(
                f"class {name!r} (id {cid}) has no box at all"
                if boxes[cid] == 0
                else f"class {name!r} (id {cid}) has {boxes[cid]} boxes, none with both sides >= {min_query_size} px"
            )
    for image in images.values():
        path = image_dir / image["file_name"]
        if not path.is_file():
            problems["missing_images"].append(str(path))
        elif read_images:
            try:
                array = load_image(path)
            except ImageReadError as error:
                problems["unreadable_images"].append(str(error))
                continue
            if array.shape[:2] != (image["height"], image["width"]):
                problems["size_mismatch"].append(
                    f"{path}: file is {array.shape[1]}x{array.shape[0]}, annotation says "
                    f"{image['width']}x{image['height']}"
                )
    counts = {
        "images": len(images),
        "annotations": len(coco.get("annotations", [])),
        "classes": len(categories),
    }
    return {"ok": not any(problems.values()), "problems": problems, "counts": counts}
