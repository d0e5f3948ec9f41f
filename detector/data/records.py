"""The in-memory form every data set is loaded into: images with their boxes, and categories.

COCO JSON, Pascal VOC XML and the embedded benchmark all become a :class:`DetectionData`, so that splits,
query pools, episodes and the evaluator have one thing to read. Boxes are ``xyxy`` in absolute pixels of
the stored image. ``ignore`` marks boxes that must be neither trained on nor counted in evaluation
(COCO crowd regions, VOC "difficult" objects).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Category:
    id: int
    name: str


@dataclass
class ImageRecord:
    """One image and its annotations.

    Attributes:
        image_id: unique integer id (COCO ``image.id``; for VOC the running index in the file list).
        path: absolute path of the image file.
        width, height: size of the stored image in pixels.
        boxes: ``(N, 4)`` float32, ``xyxy`` absolute pixels.
        labels: ``(N,)`` int64 category ids.
        ignore: ``(N,)`` bool, crowd / difficult boxes.
    """

    image_id: int
    path: Path
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))

    def classes(self) -> set[int]:
        """Category ids with at least one non-ignored box in this image."""
        return {int(c) for c in self.labels[~self.ignore]}


@dataclass
class DetectionData:
    """A named set of :class:`ImageRecord` and its categories."""

    name: str
    categories: list[Category]
    images: list[ImageRecord]

    def __post_init__(self) -> None:
        self._by_id = {c.id: c for c in self.categories}
        self._by_name = {c.name: c for c in self.categories}
        self._image_index = {record.image_id: i for i, record in enumerate(self.images)}
        if len(self._image_index) != len(self.images):
            raise ValueError(f"data set {self.name} has duplicate image ids")

    def category(self, key: int | str) -> Category:
        """Look a category up by id or name; an unknown one raises ``KeyError`` listing the known ones."""
        table = self._by_name if isinstance(key, str) else self._by_id
        if key not in table:
            known = ", ".join(sorted(self._by_name))
            raise KeyError(f"unknown class {key!r} in data set {self.name}; known classes: {known}")
        return table[key]

    def index_of(self, image_id: int) -> int:
        return self._image_index[image_id]

    def class_names(self) -> list[str]:
        return [c.name for c in self.categories]

    def statistics(self) -> dict:
        """Counts a user checks first: images, boxes, classes, boxes per class, box sizes."""
        n_boxes = sum(len(r.boxes) for r in self.images)
        per_class = {c.name: 0 for c in self.categories}
        sides = []
        for record in self.images:
            for box, label in zip(record.boxes, record.labels):
                per_class[self._by_id[int(label)].name] += 1
                sides.append(max(box[2] - box[0], box[3] - box[1]))
        sides_array = np.asarray(sides) if sides else np.zeros(1)
        return {
            "images": len(self.images),
            "boxes": n_boxes,
            "classes": len(self.categories),
            "boxes_per_image": round(n_boxes / max(len(self.images), 1), 2),
            "box_longer_side_px": {
                "min": float(sides_array.min()),
                "median": float(np.median(sides_array)),
                "max": float(sides_array.max()),
            },
            "boxes_per_class": per_class,
        }

    def to_coco(self) -> dict:
        """The ground truth as a COCO-format dict (``bbox`` as ``xywh``), for pycocotools."""
        images, annotations = [], []
        for record in self.images:
            images.append(
                {
                    "id": record.image_id,
                    "file_name": record.path.name,
                    "width": record.width,
                    "height": record.height,
                }
            )
            for box, label, ignore in zip(record.boxes, record.labels, record.ignore):
                w, h = float(box[2] - box[0]), float(box[3] - box[1])
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": record.image_id,
                        "category_id": int(label),
                        "bbox": [float(box[0]), float(box[1]), w, h],
                        "area": w * h,
                        "iscrowd": int(ignore),
                    }
                )
        categories = [{"id": c.id, "name": c.name} for c in self.categories]
        return {"images": images, "annotations": annotations, "categories": categories}
