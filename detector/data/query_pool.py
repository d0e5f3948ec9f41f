"""Query (reference) pools: the exemplars one-shot episodes take their query patch from.

A pool is built from ground-truth boxes (crowd/difficult, degenerate and small boxes excluded), or
converted from a list of ``(image, box)`` records such as the published COCO pools (which kept only the
boxes a strong detector found with IoU > 0.5 and score > 0.7; :meth:`QueryPool.from_data` applies the same
filter when given that detector's results).

File format (JSON)::

    {"format": "ia-detr-query-pool", "version": 1,
     "image_root": "<folder; relative paths are taken from the pool file's folder>",
     "categories": [{"id": 1, "name": "person"}, ...],
     "queries": [{"category_id": 1, "image_id": 42, "file_name": "000000000042.jpg",
                  "bbox": [x1, y1, x2, y2]}, ...]}

``bbox`` is ``xyxy`` in absolute pixels of the image.
"""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

from .records import Category, DetectionData

FORMAT = "ia-detr-query-pool"


@dataclass(frozen=True)
class QueryRecord:
    """One exemplar: the box ``(x1, y1, x2, y2)`` of class ``category_id`` in image ``image_id`` (``category_id``
    None: a stage-1 crop with no class)."""

    category_id: int | None
    image_id: int
    path: Path
    box: tuple[float, float, float, float]


class QueryPool:
    """Exemplars grouped by class, each list in a fixed order (the order the evaluation RNG shuffles)."""

    def __init__(self, records: list[QueryRecord], categories: list[Category]) -> None:
        self.records = list(records)
        self.categories = list(categories)
        self._by_class: dict[int, list[QueryRecord]] = defaultdict(list)
        self._image_ids: dict[int, np.ndarray] = {}
        for record in self.records:
            self._by_class[record.category_id].append(record)

    def __len__(self) -> int:
        return len(self.records)

    def for_class(self, category_id: int) -> list[QueryRecord]:
        return self._by_class.get(category_id, [])

    def image_ids(self, category_id: int) -> np.ndarray:
        """Image id of every exemplar of ``category_id``, in pool order (cached)."""
        if category_id not in self._image_ids:
            self._image_ids[category_id] = np.array([q.image_id for q in self.for_class(category_id)], np.int64)
        return self._image_ids[category_id]

    def counts(self) -> dict[str, int]:
        return {c.name: len(self.for_class(c.id)) for c in self.categories}

    # --- building -----------------------------------------------------------------------------------------

    @classmethod
    def from_data(
        cls,
        data: DetectionData,
        min_size: float = 16.0,
        detections: list[dict] | None = None,
        iou_threshold: float = 0.5,
        score_threshold: float = 0.7,
    ) -> QueryPool:
        """Exemplars from the ground truth of ``data``.

        Args:
            min_size: boxes whose shorter side is below this many pixels are excluded.
            detections: optional COCO-results list (``image_id, category_id, bbox xywh, score``); when
                given, only boxes matched by a detection of the same class with IoU > ``iou_threshold``
                and score > ``score_threshold`` are kept (the published COCO pools' rule).
        """
        if min_size < 1:
            raise ValueError(f"min_size must be at least 1 pixel, got {min_size}")
        found = _detections_by_image(detections, score_threshold) if detections is not None else None
        records = []
        for image in data.images:
            for box, label, ignore in zip(image.boxes, image.labels, image.ignore):
                if ignore or min(box[2] - box[0], box[3] - box[1]) < min_size:
                    continue
                if found is not None and not _matched(box, int(label), found.get(image.image_id, []), iou_threshold):
                    continue
                records.append(QueryRecord(int(label), image.image_id, image.path, tuple(float(v) for v in box)))
        return cls(records, data.categories)

    @classmethod
    def from_records(cls, rows: list[dict], data: DetectionData, image_root: str | Path) -> QueryPool:
        """Convert ``[{"file_name", "bbox": [x1, y1, x2, y2], "category": name or id}, ...]``.

        ``image_id`` is looked up in ``data`` by file name when the row does not give one.
        """
        by_name = {image.path.name: image.image_id for image in data.images}
        records = []
        for i, row in enumerate(rows):
            missing = {"file_name", "bbox", "category"} - set(row)
            if missing:
                raise ValueError(f"query record {i} lacks {sorted(missing)}: {row}")
            category = data.category(int(row["category"]) if str(row["category"]).isdigit() else row["category"])
            x1, y1, x2, y2 = (float(v) for v in row["bbox"])
            if x2 - x1 < 1 or y2 - y1 < 1:
                raise ValueError(f"query record {i} has a degenerate box {row['bbox']} (x2 <= x1 or y2 <= y1)")
            image_id = int(row.get("image_id", by_name.get(Path(row["file_name"]).name, -1)))
            records.append(QueryRecord(category.id, image_id, Path(image_root) / row["file_name"], (x1, y1, x2, y2)))
        return cls(records, data.categories)

    # --- files --------------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        root = Path(os.path.commonpath([str(r.path.parent) for r in self.records])) if self.records else path.parent
        queries = [
            {
                "category_id": r.category_id,
                "image_id": r.image_id,
                "file_name": str(r.path.relative_to(root)),
                "bbox": [round(v, 2) for v in r.box],
            }
            for r in self.records
        ]
        body = {
            "format": FORMAT,
            "version": 1,
            "image_root": str(root.resolve()),
            "categories": [{"id": c.id, "name": c.name} for c in self.categories],
            "queries": queries,
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(body))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> QueryPool:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"query pool {path} does not exist; build one with tools/build_query_pool.py")
        body = json.loads(path.read_text())
        if body.get("format") != FORMAT:
            raise ValueError(
                f'{path} is not an IA-DETR query pool (no "format": "{FORMAT}"); convert '
                f"(image, box) records with tools/build_query_pool.py --records"
            )
        root = Path(body["image_root"])
        root = root if root.is_absolute() else path.parent / root
        categories = [Category(int(c["id"]), c["name"]) for c in body["categories"]]
        records = [
            QueryRecord(
                int(q["category_id"]),
                int(q["image_id"]),
                root / q["file_name"],
                tuple(float(v) for v in q["bbox"]),
            )
            for q in body["queries"]
        ]
        return cls(records, categories)


def read_records(path: str | Path) -> list[dict]:
    """Read (image, box) records from JSON (a list of objects) or CSV (file_name,x1,y1,x2,y2,category)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as handle:
            return [
                {"file_name": r[0], "bbox": [float(v) for v in r[1:5]], "category": r[5]}
                for r in csv.reader(handle)
                if r and not r[0].startswith("#") and r[0] != "file_name"
            ]
    rows = json.loads(path.read_text())
    if not isinstance(rows, list):
        raise ValueError(f"{path} must hold a JSON list of records")
    return rows


def _detections_by_image(detections: list[dict], score_threshold: float) -> dict[int, list[tuple[int, list]]]:
    found: dict[int, list[tuple[int, list]]] = defaultdict(list)
    for det in detections:
        if det["score"] > score_threshold:
            x, y, w, h = det["bbox"]
            found[int(det["image_id"])].append((int(det["category_id"]), [x, y, x + w, y + h]))
    return found


def _matched(box: np.ndarray, label: int, candidates: list[tuple[int, list]], iou_threshold: float) -> bool:
    boxes = [b for c, b in candidates if c == label]
    if not boxes:
        return False
    iou = box_iou(torch.tensor([box.tolist()]), torch.tensor(boxes, dtype=torch.float32))
    return bool((iou > iou_threshold).any())
