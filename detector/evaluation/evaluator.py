"""The one-shot evaluator: the standard protocol with automatic repeats, and the extended protocol.

Standard (CoAE / BHRL / IA-DETR): an episode searches one test image for one class present in it, with the
query exemplar the image-id-seeded shuffle picks for that repeat. The detections of episode (image, class)
are scored as detections of that class in that image; COCO AP (pycocotools) is computed per class for each
repeat, averaged over the seen and over the unseen classes, and then the repeats give a mean and a standard
deviation. Extended (one flag): classes absent from an image are queried too; their detections can only be
false positives. It reports false positives per absent episode at score thresholds 0.1 to 0.6, and AP50
over present and absent episodes together. Both report precision and recall of the present episodes' detections
at those thresholds (IoU 0.5): the operating points a user's ``--score-threshold`` picks from.

Usage: ``reset()``, then ``process(episodes, detections)`` for every batch, then ``evaluate()``. An episode
that could not be run (an unreadable image) is reported with ``drop(episode, reason)``: its target image is
then left out of the scores entirely (every class and repeat), and the result counts what was left out.
"""

from __future__ import annotations

import contextlib
import io
from collections import defaultdict

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..data.episodes import Episode
from ..data.records import DetectionData
from ..data.splits import Split

# score thresholds of the operating-point table: precision and recall of the present episodes at IoU 0.5, and
# false positives per absent episode (extended protocol)
OPERATING_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
FP_THRESHOLDS = OPERATING_THRESHOLDS


class OneShotEvaluator:
    protocol = "coco"

    def __init__(self, data: DetectionData, split: Split, max_detections: int = 100) -> None:
        self.data, self.split, self.max_detections = data, split, max_detections
        self.seen_ids = [data.category(n).id for n in split.seen]
        self.unseen_ids = [data.category(n).id for n in split.unseen]
        self.reset()

    def reset(self) -> None:
        # per processed episode: (image id, repeat, present, COCO-format detections, class id)
        self.episodes: list[tuple[int, int, bool, list[dict], int]] = []
        self.dropped: list[tuple[int, str]] = []  # (image id, reason)

    def drop(self, episode: Episode, reason: str) -> None:
        """``episode`` could not be run: leave its target image out of every score."""
        self.dropped.append((self.data.images[episode.image_index].image_id, reason))

    def process(self, episodes: list[Episode], detections: list[dict]) -> None:
        """``detections[i]``: ``{"boxes": (k, 4) xyxy pixels of the original image, "scores": (k,)}`` for
        ``episodes[i]`` (tensors or arrays)."""
        for episode, det in zip(episodes, detections):
            image_id = self.data.images[episode.image_index].image_id
            boxes, scores = np.asarray(det["boxes"], np.float64), np.asarray(det["scores"], np.float64)
            order = np.argsort(-scores)[: self.max_detections]
            rows = [
                {
                    "image_id": image_id,
                    "category_id": episode.category_id,
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    "score": float(s),
                }
                for b, s in zip(boxes[order].tolist(), scores[order].tolist())
            ]
            self.episodes.append((image_id, episode.repeat, episode.present, rows, episode.category_id))

    def _collect(self) -> None:
        """Group the detections of the scored images by repeat (absent episodes apart)."""
        excluded = {image_id for image_id, _ in self.dropped}
        self.images = {e[0] for e in self.episodes} - excluded
        self.present: dict[int, list[dict]] = defaultdict(list)
        self.absent: dict[int, list[dict]] = defaultdict(list)
        self.absent_episodes: dict[int, int] = defaultdict(int)
        self.queried: set[tuple[int, int]] = set()  # (image id, class id) of the present episodes run
        for image_id, repeat, present, rows, category_id in self.episodes:
            if image_id in excluded:
                continue
            if present:
                self.present[repeat].extend(rows)
                self.queried.add((image_id, category_id))
            else:
                self.absent[repeat].extend(rows)
                self.absent_episodes[repeat] += 1

    def _ground_truth(self) -> COCO:
        """The scored images' boxes of the (image, class) pairs an episode searched. A pair no episode could
        search (a class whose only exemplars are in this image has no query) is not scored: counting its
        boxes as missed would charge the detector for an episode that never ran."""
        coco = self.data.to_coco()
        coco["images"] = [im for im in coco["images"] if im["id"] in self.images]
        coco["annotations"] = [a for a in coco["annotations"] if (a["image_id"], a["category_id"]) in self.queried]
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO()
            gt.dataset = coco
            gt.createIndex()
        return gt

    def _per_class_ap(self, gt: COCO, detections: list[dict]) -> dict[int, dict[str, float]]:
        """Per class id: AP (0.5:0.95), AP50, AP75 in percent, and ``counts`` (:meth:`_operating_counts`);
        classes without ground truth are left out."""
        class_ids = sorted(set(self.seen_ids) | set(self.unseen_ids))
        with_gt = {cid for cid in class_ids if gt.getAnnIds(catIds=[cid], iscrowd=False)}
        if not detections:
            nothing = {"ap": 0.0, "ap50": 0.0, "ap75": 0.0}
            return {cid: {**nothing, "counts": self._no_detections(gt, cid)} for cid in with_gt}
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes(detections)
            evaluator = COCOeval(gt, dt, "bbox")
            evaluator.params.imgIds = sorted(self.images)
            evaluator.params.catIds = class_ids
            evaluator.params.maxDets = [1, 10, self.max_detections]
            evaluator.evaluate()
            evaluator.accumulate()
        precision = evaluator.eval["precision"]  # (T iou, R recall, K class, A area, M maxdets)
        out = {}
        for k, cid in enumerate(class_ids):
            if cid not in with_gt:
                continue
            p = precision[:, :, k, 0, -1]

            def mean(values: np.ndarray) -> float:
                values = values[values > -1]
                return float(values.mean() * 100) if values.size else 0.0

            out[cid] = {"ap": mean(p), "ap50": mean(p[0]), "ap75": mean(p[5])}
        for cid, counts in self._operating_counts(evaluator).items():
            if cid in out:
                out[cid]["counts"] = counts
        return out

    @staticmethod
    def _operating_counts(evaluator: COCOeval) -> dict[int, np.ndarray]:
        """Per class: ``(len(OPERATING_THRESHOLDS), 3)`` true positives, false positives and ground-truth boxes
        among the detections scoring at least each threshold, from pycocotools' own matching at IoU 0.5 (all
        areas, the largest detection count). It matches detections in descending score order, so the matches
        above a threshold are those a run with only those detections would make."""
        counts: dict[int, np.ndarray] = defaultdict(lambda: np.zeros((len(OPERATING_THRESHOLDS), 3)))
        all_areas = evaluator.params.areaRng[0]
        for record in evaluator.evalImgs:
            if record is None or record["aRng"] != all_areas:
                continue
            scores = np.asarray(record["dtScores"], np.float64)
            matched = np.asarray(record["dtMatches"][0]) > 0
            ignored = np.asarray(record["dtIgnore"][0], bool)
            truth = int((~np.asarray(record["gtIgnore"], bool)).sum())
            for row, threshold in enumerate(OPERATING_THRESHOLDS):
                above = (scores >= threshold) & ~ignored
                counts[record["category_id"]][row] += (int((above & matched).sum()), int((above & ~matched).sum()), 0)
                counts[record["category_id"]][row, 2] += truth
        return dict(counts)

    def _no_detections(self, gt: COCO, cid: int) -> np.ndarray:
        truth = len(gt.getAnnIds(catIds=[cid], imgIds=sorted(self.images), iscrowd=False))
        counts = np.zeros((len(OPERATING_THRESHOLDS), 3))
        counts[:, 2] = truth
        return counts

    def evaluate(self) -> dict:
        """Every number: per repeat, per class, seen/unseen means, mean and std over repeats (percent), and
        ``dropped_episodes``, ``excluded_images``, ``drop_reasons`` (unique, sorted) for what could not be run."""
        self._collect()
        gt = self._ground_truth()
        repeats = sorted(set(self.present) | set(self.absent))
        per_repeat = []
        for r in repeats:
            classes = self._per_class_ap(gt, self.present[r])
            per_class = {
                self.data.category(c).name: {k: v for k, v in m.items() if k != "counts"} for c, m in classes.items()
            }
            row = {"repeat": r, "per_class": per_class}
            for group, ids in (("seen", self.seen_ids), ("unseen", self.unseen_ids)):
                for metric in ("ap", "ap50", "ap75"):
                    values = [classes[c][metric] for c in ids if c in classes]
                    row[f"{group}_{metric}"] = float(np.mean(values)) if values else float("nan")
                counts = sum(
                    (classes[c]["counts"] for c in ids if c in classes), np.zeros((len(OPERATING_THRESHOLDS), 3))
                )
                for index, threshold in enumerate(OPERATING_THRESHOLDS):
                    tp, fp, truth = counts[index].tolist()
                    row[f"{group}_precision@{threshold}"] = 100 * tp / (tp + fp) if tp + fp else float("nan")
                    row[f"{group}_recall@{threshold}"] = 100 * tp / truth if truth else float("nan")
            if self.absent_episodes.get(r):
                n = self.absent_episodes[r]
                for t in FP_THRESHOLDS:
                    row[f"fp_per_absent_episode@{t}"] = sum(d["score"] >= t for d in self.absent[r]) / n
                combined = self._per_class_ap(gt, self.present[r] + self.absent[r])
                for group, ids in (("seen", self.seen_ids), ("unseen", self.unseen_ids)):
                    values = [combined[c]["ap50"] for c in ids if c in combined]
                    row[f"{group}_ap50_with_absent"] = float(np.mean(values)) if values else float("nan")
            per_repeat.append(row)
        result = {"protocol": self.protocol, **summarise_repeats(per_repeat, self.split, len(self.images))}
        result["dropped_episodes"] = len(self.dropped)
        result["excluded_images"] = len({image_id for image_id, _ in self.dropped})
        result["drop_reasons"] = sorted({reason for _, reason in self.dropped})
        result["unqueried_classes"] = self._unqueried_classes()
        return result

    def _unqueried_classes(self) -> list[str]:
        """Split classes with boxes in the scored images but no episode at all (no exemplar outside the one
        image that holds them): they are left out of every mean, not scored as AP 0."""
        queried = {c for _, c in self.queried}
        annotated = {
            int(label)
            for record in self.data.images
            if record.image_id in self.images
            for label, ignore in zip(record.labels, record.ignore)
            if not ignore
        }
        ids = (set(self.seen_ids) | set(self.unseen_ids)) & annotated
        return sorted(self.data.category(c).name for c in ids - queried)


def summarise_repeats(per_repeat: list[dict], split: Split, images: int) -> dict:
    result: dict = {"repeats": len(per_repeat), "images": images, "per_repeat": per_repeat}
    scalar_keys = [k for k in (per_repeat[0] if per_repeat else {}) if k not in ("repeat", "per_class")]
    for key in scalar_keys:
        values = np.array([row[key] for row in per_repeat], np.float64)
        values = values[~np.isnan(values)]  # a repeat where the figure is undefined (no detection above a threshold)
        result[key] = float(values.mean()) if values.size else float("nan")
        result[f"{key}_std"] = float(values.std()) if values.size else float("nan")
    per_class: dict[str, dict] = {}
    for name in [*split.seen, *split.unseen]:
        values = [row["per_class"][name]["ap50"] for row in per_repeat if name in row["per_class"]]
        if values:
            per_class[name] = {
                "ap50": float(np.mean(values)),
                "ap50_std": float(np.std(values)),
                "unseen": name in split.unseen,
            }
    result["per_class"] = per_class
    return result
