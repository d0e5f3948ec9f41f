"""Where the false positives come from: each detection of an episode sorted into one kind of outcome.

AP says how well the detections are ranked; it does not say what the wrong ones are. This evaluator (``tools/eval.py
--errors``) takes each episode's detections in descending score order and gives each the first kind it qualifies
for, the IoU threshold being 0.5 as in AP50:

- ``hit``: overlaps a box of the queried class that no higher-scored detection of the episode has taken (the box it
  overlaps most among those is taken);
- ``duplicate``: overlaps a box of the queried class, but only boxes already taken;
- ``confusion``: overlaps a box of another class: the model answered the query with an object that is not of its
  class (the box's class counted as seen or unseen);
- ``loose``: overlaps a box of the queried class by at least 0.1, less than 0.5: found, badly boxed;
- ``background``: none of these.

Counts are given at each score threshold of :data:`THRESHOLDS` for the seen and the unseen classes (and for
absent-class episodes, whose detections can only be confusions or background), with the recall (hits over the boxes
of the queried classes). Boxes marked ``ignore`` are left out as targets of every kind. An episode whose image could
not be read is left out.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

import numpy as np

from ..data.episodes import Episode
from ..data.records import DetectionData
from ..data.splits import Split
from .per_image import pairwise_iou

IOU_THRESHOLD = 0.5
LOOSE_IOU = 0.1
THRESHOLDS = (0.1, 0.3, 0.5)
KINDS = ("hit", "duplicate", "confusion", "loose", "background")


def classify(
    boxes: np.ndarray, truth: np.ndarray, truth_labels: np.ndarray, class_id: int
) -> tuple[list[str], list[int | None]]:
    """The kind of each detection (``boxes`` in descending score order, xyxy) against an image's ``truth`` boxes
    and their labels, for a query of ``class_id``; and, for a confusion, the class of the box it overlaps most
    among the other classes' (else ``None``)."""
    if len(truth) == 0:
        return ["background"] * len(boxes), [None] * len(boxes)
    kinds: list[str] = []
    confused: list[int | None] = []
    own = truth_labels == class_id
    taken = np.zeros(len(truth), bool)
    for row in pairwise_iou(boxes, truth):
        free = np.where(own & ~taken, row, -1.0)
        mine = np.where(own, row, -1.0)
        other = np.where(~own, row, -1.0)
        label = None
        if free.max() >= IOU_THRESHOLD:
            taken[int(free.argmax())] = True
            kind = "hit"
        elif mine.max() >= IOU_THRESHOLD:
            kind = "duplicate"
        elif other.max() >= IOU_THRESHOLD:
            kind, label = "confusion", int(truth_labels[int(other.argmax())])
        elif mine.max() >= LOOSE_IOU:
            kind = "loose"
        else:
            kind = "background"
        kinds.append(kind)
        confused.append(label)
    return kinds, confused


class _Episode(NamedTuple):
    image_id: int
    group: str  # seen | unseen | absent
    boxes: int  # boxes of the queried class in the image
    detections: list[tuple[float, str, int | None]]  # (score, kind, confused class), scores >= min(THRESHOLDS)


class ErrorBreakdown:
    """Same interface as the scoring protocols (``reset``, ``process``, ``drop``, ``evaluate``); ``evaluate()``
    returns ``{"seen": ..., "unseen": ..., "absent": ...}``, each with ``boxes`` (of the queried classes in its
    episodes), ``episodes`` and, per threshold ``"0.3"``, the count of every kind, ``recall`` and
    ``confusion_with_seen`` / ``confusion_with_unseen``."""

    protocol = "errors"

    def __init__(self, data: DetectionData, split: Split, max_detections: int = 100) -> None:
        self.data, self.max_detections = data, max_detections
        self.unseen_ids = {data.category(n).id for n in split.unseen}
        self.reset()

    def reset(self) -> None:
        self.episodes: list[_Episode] = []
        self.dropped: set[int] = set()

    def drop(self, episode: Episode, reason: str) -> None:
        self.dropped.add(self.data.images[episode.image_index].image_id)

    def process(self, episodes: list[Episode], detections: list[dict]) -> None:
        for episode, det in zip(episodes, detections):
            record = self.data.images[episode.image_index]
            scores = np.asarray(det["scores"], np.float64)
            order = np.argsort(-scores, kind="stable")[: self.max_detections]
            order = order[scores[order] >= min(THRESHOLDS)]  # kept in score order, so taken boxes stay the same
            keep = ~record.ignore
            truth, labels = record.boxes[keep].astype(np.float64), record.labels[keep]
            boxes = np.asarray(det["boxes"], np.float64)[order]
            kinds, confused = classify(boxes, truth, labels, episode.category_id)
            if not episode.present:
                group = "absent"
            else:
                group = "unseen" if episode.category_id in self.unseen_ids else "seen"
            wanted = int((labels == episode.category_id).sum())
            rows = list(zip(scores[order].tolist(), kinds, confused, strict=True))
            self.episodes.append(_Episode(record.image_id, group, wanted, rows))

    def evaluate(self) -> dict:
        result: dict = {"protocol": self.protocol}
        for group in ("seen", "unseen", "absent"):
            rows = [e for e in self.episodes if e.group == group and e.image_id not in self.dropped]
            if not rows:
                continue
            boxes = sum(e.boxes for e in rows)
            part: dict = {"episodes": len(rows), "boxes": boxes}
            for threshold in THRESHOLDS:
                picked = [d for e in rows for d in e.detections if d[0] >= threshold]
                counts = Counter(kind for _, kind, _ in picked)
                entry = {kind: counts.get(kind, 0) for kind in KINDS}
                entry["recall"] = entry["hit"] / boxes if boxes else float("nan")
                partners = [label for _, kind, label in picked if kind == "confusion"]
                entry["confusion_with_unseen"] = sum(label in self.unseen_ids for label in partners)
                entry["confusion_with_seen"] = len(partners) - entry["confusion_with_unseen"]
                part[f"{threshold}"] = entry
            result[group] = part
        return result


def errors_table(errors: dict) -> str:
    """The breakdown as console lines: per group and threshold, the count of each kind and the recall."""
    lines = ["where the detections go (IoU 0.5; tools/eval.py --errors, detector/evaluation/errors.py):"]
    lines.append(f"{'':8s} {'score':>6s} " + " ".join(f"{k:>10s}" for k in KINDS) + f" {'recall':>7s}")
    for group in ("seen", "unseen", "absent"):
        if group not in errors:
            continue
        for threshold in THRESHOLDS:
            entry = errors[group][f"{threshold}"]
            counts = " ".join(f"{entry[k]:>10d}" for k in KINDS)
            recall = "" if group == "absent" else f"{100 * entry['recall']:>6.1f}%"
            lines.append(f"{group:8s} {'>=' + str(threshold):>6s} {counts} {recall:>7s}")
    return "\n".join(lines)
