"""The per-image protocol of the official IA-DETR code, beside the dataset-level one of CoAE and BHRL.

The official evaluation (``engine.py: evaluateall`` with ``datasets/evaluation/bbox_evaluator.py`` of
github.com/Bissmella/IA-DETR) scores every (test image, class present in it) on its own: the class's queries
(one per repeat) each search the image; the top detections of all of them, each matched to the image's boxes of
that class, form one small ranked list, scored with a YOLOv5-style AP50 (:func:`interpolated_ap`); the value is
averaged over the images of the class, then over the seen and the unseen classes. It differs from the dataset-level
AP of pycocotools (:class:`~detector.evaluation.evaluator.OneShotEvaluator`) in what it forgives: a detection
scored high on one image and a true one scored low on another are never ranked against each other, so per-image
AP is usually higher and the two are not comparable.

Matching, as in the official code: detections in descending score order; each takes its best-overlapping box of
the class; it is a true positive when that IoU is above 0.5 (strictly) and that box is not already taken, else a
false positive (it does not fall back to its second-best box); matching stops when every box is taken. An (image,
class) pair without any true positive scores 0.

Absent-class episodes (the extended protocol) have no box to find, so they have no per-image AP; they are scored by
the false positives per absent episode, which do not depend on the protocol.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..data.episodes import Episode
from ..data.records import DetectionData
from ..data.splits import Split
from .evaluator import FP_THRESHOLDS

IOU_THRESHOLD = 0.5


def interpolated_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """AP of one ranked list as the official code computes it (YOLOv5's ``compute_ap``, 101-point method).

    With ``r_1..r_n`` and ``p_1..p_n`` the recall and precision after each detection (in rank order), the curve is
    extended with ``(0, 1)`` in front and ``(r_n + 0.01, 0)`` behind, its precision made monotone from the right
    (``p~(r) = max_{r' >= r} p(r')``), and integrated with the trapezoid rule over 101 recalls
    ``x_k = k / 100``, the curve read by linear interpolation:

        AP = sum_{k=1..100} (x_k - x_{k-1}) * (P(x_k) + P(x_{k-1})) / 2,   P = interp(x, [0, r, r_n + 0.01], p~)

    Unlike pycocotools (which takes the envelope's value at the first recall >= x and averages 101 points), the
    interpolation blends neighbouring points and the sentinel gives the curve a ramp down after the last recall.
    """
    recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    mrec = np.concatenate(([0.0], recall, [recall[-1] + 0.01]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    y = np.interp(x, mrec, mpre)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def pairwise_iou(boxes: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """IoU of every box (N, 4) with every truth box (M, 4), xyxy: (N, M)."""
    x1 = np.maximum(boxes[:, None, 0], truth[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], truth[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], truth[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], truth[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    return inter / (area(boxes)[:, None] + area(truth)[None, :] - inter)


def match(boxes: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """True-positive flags of ``boxes`` (already in descending score order) against ``truth`` (xyxy), by the
    official rule (module docstring)."""
    hits = np.zeros(len(boxes), bool)
    if len(boxes) == 0 or len(truth) == 0:
        return hits
    overlaps = pairwise_iou(boxes, truth)
    best, which = overlaps.max(1), overlaps.argmax(1)
    taken: set[int] = set()
    for i in np.flatnonzero(best > IOU_THRESHOLD):
        if int(which[i]) not in taken:
            taken.add(int(which[i]))
            hits[i] = True
            if len(taken) == len(truth):
                break
    return hits


def pair_ap50(episodes: list[tuple[np.ndarray, np.ndarray]], truth: np.ndarray) -> float:
    """AP50 (0-1) of one (image, class): each episode's ``(boxes, scores)`` (descending scores) matched to
    ``truth`` on its own, then ranked together against ``len(episodes) * len(truth)`` boxes."""
    flags = [match(boxes, truth) for boxes, _ in episodes]
    hits = np.concatenate(flags) if flags else np.zeros(0, bool)
    if not hits.any():
        return 0.0
    scores = np.concatenate([s for _, s in episodes])
    hits = hits[np.argsort(-scores, kind="stable")]
    tp = np.cumsum(hits)
    recall = tp / (len(episodes) * len(truth))
    precision = tp / np.arange(1, len(hits) + 1)
    return interpolated_ap(recall, precision)


class PerImageEvaluator:
    """Same interface as :class:`~detector.evaluation.evaluator.OneShotEvaluator`: ``reset()``, ``process``
    for every batch, ``drop`` for an episode that could not be run (its image leaves every score), then
    ``evaluate()``. Numbers are percent; there is no spread over repeats, because the repeats of an image are
    ranked together."""

    protocol = "per-image"

    def __init__(self, data: DetectionData, split: Split, max_detections: int = 100) -> None:
        self.data, self.split, self.max_detections = data, split, max_detections
        self.seen_ids = {data.category(n).id for n in split.seen}
        self.unseen_ids = {data.category(n).id for n in split.unseen}
        self.reset()

    def reset(self) -> None:
        # (image id, class id) -> [(boxes, scores)] of the present episodes, one per repeat
        self.pairs: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
        self.absent: list[tuple[int, np.ndarray]] = []  # (image id, scores) of absent-class episodes
        self.dropped: list[tuple[int, str]] = []

    def drop(self, episode: Episode, reason: str) -> None:
        self.dropped.append((self.data.images[episode.image_index].image_id, reason))

    def process(self, episodes: list[Episode], detections: list[dict]) -> None:
        for episode, det in zip(episodes, detections):
            image_id = self.data.images[episode.image_index].image_id
            boxes, scores = np.asarray(det["boxes"], np.float64), np.asarray(det["scores"], np.float64)
            order = np.argsort(-scores, kind="stable")[: self.max_detections]
            if episode.present:
                self.pairs[(image_id, episode.category_id)].append((boxes[order], scores[order]))
            else:
                self.absent.append((image_id, scores[order]))

    def evaluate(self) -> dict:
        excluded = {image_id for image_id, _ in self.dropped}
        per_class: dict[int, list[float]] = defaultdict(list)
        for (image_id, class_id), episodes in sorted(self.pairs.items(), key=lambda item: item[0]):
            if image_id in excluded:
                continue
            record = self.data.images[self.data.index_of(image_id)]
            keep = (record.labels == class_id) & ~record.ignore
            per_class[class_id].append(100 * pair_ap50(episodes, record.boxes[keep].astype(np.float64)))
        result: dict = {
            "protocol": self.protocol,
            "images": len({i for i, _ in self.pairs} - excluded),
            "pairs": sum(len(v) for v in per_class.values()),
            "repeats": max((len(v) for v in self.pairs.values()), default=0),
        }
        names = {c: self.data.category(c).name for c in per_class}
        for group, ids in (("seen", self.seen_ids), ("unseen", self.unseen_ids)):
            values = [float(np.mean(per_class[c])) for c in sorted(ids) if c in per_class]
            result[f"{group}_ap50"] = float(np.mean(values)) if values else float("nan")
        result["per_class"] = {
            names[c]: {"ap50": float(np.mean(v)), "images": len(v), "unseen": c in self.unseen_ids}
            for c, v in sorted(per_class.items(), key=lambda item: names[item[0]])
        }
        absent = [scores for image_id, scores in self.absent if image_id not in excluded]
        if absent:
            for t in FP_THRESHOLDS:
                result[f"fp_per_absent_episode@{t}"] = sum(int((s >= t).sum()) for s in absent) / len(absent)
        result["dropped_episodes"] = len(self.dropped)
        result["excluded_images"] = len(excluded)
        result["drop_reasons"] = sorted({reason for _, reason in self.dropped})
        return result
