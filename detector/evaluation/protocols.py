"""One evaluator interface over the scoring protocols: ``coco`` (dataset-level, pycocotools), ``per-image`` (the
official IA-DETR's), or ``both`` from the same detections in one pass."""

from __future__ import annotations

import time

from ..data.episodes import Episode
from ..data.records import DetectionData
from ..data.splits import Split
from .errors import ErrorBreakdown
from .evaluator import OneShotEvaluator
from .per_image import PerImageEvaluator

PROTOCOLS = ("coco", "per-image", "both")


class Protocols:
    """Feeds every episode to each evaluator. ``evaluate()`` returns the first protocol's result with its
    ``protocol`` named; each further protocol's whole result sits under its name with ``_`` for ``-``
    (``result["per_image"]``, ``result["errors"]``)."""

    def __init__(self, evaluators: list) -> None:
        self.evaluators = evaluators

    def reset(self) -> None:
        for evaluator in self.evaluators:
            evaluator.reset()

    def drop(self, episode: Episode, reason: str) -> None:
        for evaluator in self.evaluators:
            evaluator.drop(episode, reason)

    def process(self, episodes: list[Episode], detections: list[dict]) -> None:
        for evaluator in self.evaluators:
            evaluator.process(episodes, detections)

    def evaluate(self) -> dict:
        """Each protocol's result also gives the seconds its scoring took (``scoring_seconds``)."""
        results = []
        for evaluator in self.evaluators:
            start = time.perf_counter()
            result = evaluator.evaluate()
            result["scoring_seconds"] = time.perf_counter() - start
            results.append(result)
        first, *others = results
        for evaluator, result in zip(self.evaluators[1:], others):
            first[evaluator.protocol.replace("-", "_")] = result
        return first


def build_evaluator(
    protocol: str, data: DetectionData, split: Split, max_detections: int = 100, errors: bool = False
) -> Protocols:
    """The evaluators of ``protocol``; with ``errors``, the breakdown of the detections by kind after them."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    names = ["coco", "per-image"] if protocol == "both" else [protocol]
    names += ["errors"] if errors else []
    kinds = {"coco": OneShotEvaluator, "per-image": PerImageEvaluator, "errors": ErrorBreakdown}
    return Protocols([kinds[name](data, split, max_detections) for name in names])
