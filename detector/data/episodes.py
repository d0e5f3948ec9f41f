"""One-shot episodes: which target image is searched for which class, with which query exemplar.

Training (:class:`TrainEpisodeSampler`): each target image that holds a seen class is visited once per
epoch in a seeded order; the class is drawn among the seen classes present in it with weights inversely
proportional to the class's image frequency; the query exemplar is drawn from the class's pool, never from
the target image itself. Episode ``(epoch, index)`` is a pure function of the seed, so a resumed run
continues with exactly the episodes it would have seen.

Evaluation (:func:`evaluation_episodes`), the standard protocol: for every test image and every evaluated
class present in it, a RNG seeded with the image id shuffles the class's pool and repeat ``r`` uses the
query at position ``r``. Exemplars cropped from the test image itself are removed from the pool first.
Optionally (extended protocol) classes absent from the image are queried the same way.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .query_pool import QueryPool, QueryRecord
from .records import DetectionData


@dataclass(frozen=True)
class Episode:
    """Search ``data.images[image_index]`` for class ``category_id`` given exemplar ``query``; ``category_id``
    is None when the query has no class (stage 1: a crop of the target image itself)."""

    image_index: int
    category_id: int | None
    query: QueryRecord
    repeat: int = 0
    present: bool = True


class TrainEpisodeSampler:
    """Seeded, resumable training episodes over the images of ``data`` that hold a class of ``class_ids``.

    ``absent_fraction``: that share of the episodes (drawn per episode) queries a training class that is not in
    the target image instead, uniformly among those with exemplars: the episode has no positive, so every
    detection is a false one and the model learns to look at the query rather than at what it has seen.

    ``queries_per_target`` ``k > 1``: each visit of a target image is a group of ``k`` episodes on that image
    (:meth:`group`), so one encoding of the target serves ``k`` queries. The first is :meth:`episode`'s (the same
    as with ``k = 1``); the others take the image's other present classes first, without repeats (drawn with the
    same inverse-frequency weights), then, once every present class has a query, present classes again with
    other exemplars. The same image asked for different classes, each answer its own boxes, is the lesson that
    the query decides what is found.
    """

    def __init__(
        self,
        data: DetectionData,
        pool: QueryPool,
        class_ids: set[int],
        seed: int = 0,
        absent_fraction: float = 0.0,
        queries_per_target: int = 1,
    ) -> None:
        if not 0.0 <= absent_fraction < 1.0:
            raise ValueError(f"absent_fraction must be in [0, 1); got {absent_fraction}")
        if queries_per_target < 1:
            raise ValueError(f"queries_per_target must be at least 1; got {queries_per_target}")
        self.data, self.pool, self.seed = data, pool, seed
        self.absent_fraction = absent_fraction
        self.queries_per_target = queries_per_target
        self.class_ids = set(class_ids)
        self.eligible: list[int] = []
        self.present: list[list[int]] = []
        frequency: dict[int, int] = {}
        for index, record in enumerate(data.images):
            usable = sorted(c for c in record.classes() & self.class_ids if self._has_query(c, record.image_id))
            if usable:
                self.eligible.append(index)
                self.present.append(usable)
                for c in usable:
                    frequency[c] = frequency.get(c, 0) + 1
        if not self.eligible:
            raise ValueError(
                f"no image of {data.name} holds a training class with a query exemplar from "
                f"another image; check the split and the query pool"
            )
        self.frequency = frequency
        self._epoch, self._order = -1, np.arange(0)

    def _has_query(self, category_id: int, image_id: int) -> bool:
        return bool((self.pool.image_ids(category_id) != image_id).any())

    def __len__(self) -> int:
        return len(self.eligible)

    def order(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch = epoch
            self._order = np.random.default_rng([self.seed, epoch]).permutation(len(self.eligible))
        return self._order

    def epoch(self, epoch: int) -> EpochEpisodes:
        return EpochEpisodes(self, epoch)

    def episode(self, epoch: int, index: int) -> Episode:
        slot = int(self.order(epoch)[index % len(self.eligible)])
        image_index = self.eligible[slot]
        rng = np.random.default_rng([self.seed, epoch, index])
        classes = self.present[slot]
        if self.absent_fraction and rng.random() < self.absent_fraction:
            in_image = {int(c) for c in self.data.images[image_index].labels}  # ignored boxes too
            absent = [c for c in sorted(self.frequency) if c not in in_image]
            if absent:  # (an image holding every training class has none)
                category = absent[int(rng.integers(len(absent)))]
                return Episode(image_index, category, self._draw_query(category, image_index, rng), present=False)
        weights = np.array([1.0 / self.frequency[c] for c in classes])
        category = classes[int(rng.choice(len(classes), p=weights / weights.sum()))]
        return Episode(image_index, category, self._draw_query(category, image_index, rng))

    def group(self, epoch: int, index: int) -> tuple[Episode, ...]:
        """The ``queries_per_target`` episodes of visit ``(epoch, index)``, all on one target image (see the class
        docstring); a pure function of the seed, like :meth:`episode`."""
        first = self.episode(epoch, index)
        episodes = [first]
        slot = int(self.order(epoch)[index % len(self.eligible)])
        classes = self.present[slot]
        used = {first.category_id} if first.present else set()
        for extra in range(1, self.queries_per_target):
            rng = np.random.default_rng([self.seed, epoch, index, extra])
            fresh = [c for c in classes if c not in used] or classes
            weights = np.array([1.0 / self.frequency[c] for c in fresh])
            category = fresh[int(rng.choice(len(fresh), p=weights / weights.sum()))]
            used.add(category)
            episodes.append(Episode(first.image_index, category, self._draw_query(category, first.image_index, rng)))
        return tuple(episodes)

    def _draw_query(self, category_id: int, image_index: int, rng: np.random.Generator) -> QueryRecord:
        candidates = self.pool.for_class(category_id)
        image_id = self.data.images[image_index].image_id
        for _ in range(32):  # rejection first: pools of frequent classes are large
            query = candidates[int(rng.integers(len(candidates)))]
            if query.image_id != image_id:
                return query
        others = [q for q in candidates if q.image_id != image_id]
        return others[int(rng.integers(len(others)))]


class SelfQueryEpisodes:
    """Stage-1 (self-supervised) episodes: the query is a random crop of the target image itself; pair it with
    ``SelfQueryTargets``, which makes the crop the positive. ``official``: width and height each uniform from 8
    px to the side minus 8 px, the position uniform (the official code's); else 10-40% of the shorter side,
    aspect 1:2 to 2:1. Seeded per ``(epoch, index)`` like :class:`TrainEpisodeSampler`."""

    queries_per_target = 1  # one crop per target (train.queries_per_target is stage 2's)

    def __init__(self, data: DetectionData, seed: int = 0, official: bool = True) -> None:
        self.data, self.seed, self.official = data, seed, official
        self.eligible = list(range(len(data.images)))
        self._epoch, self._order = -1, np.arange(0)

    def __len__(self) -> int:
        return len(self.eligible)

    def epoch(self, epoch: int) -> EpochEpisodes:
        return EpochEpisodes(self, epoch)

    def episode(self, epoch: int, index: int) -> Episode:
        if epoch != self._epoch:
            self._epoch = epoch
            self._order = np.random.default_rng([self.seed, epoch]).permutation(len(self.eligible))
        record = self.data.images[self.eligible[int(self._order[index % len(self.eligible)])]]
        rng = np.random.default_rng([self.seed, epoch, index, 1])
        if self.official:
            x1, y1, w, h = official_crop(record.width, record.height, rng)
        else:
            side = min(record.width, record.height) * rng.uniform(0.1, 0.4)
            aspect = np.exp(rng.uniform(-np.log(2), np.log(2)))
            w, h = min(record.width, side * np.sqrt(aspect)), min(record.height, side / np.sqrt(aspect))
            x1, y1 = rng.uniform(0, record.width - w), rng.uniform(0, record.height - h)
        query = QueryRecord(None, record.image_id, record.path, (x1, y1, x1 + w, y1 + h))
        return Episode(self.data.index_of(record.image_id), None, query)


def official_crop(width: int, height: int, rng: np.random.Generator, min_pixels: int = 8) -> tuple[int, ...]:
    """The official stage 1's crop ``(x, y, w, h)``: ``w`` uniform in ``[8, width - 8]`` (8 below 16 px, the whole
    side below 8), likewise ``h``, and the corner uniform where the crop fits (``[0, width - w)``)."""

    def side(length: int) -> int:
        low = min(min_pixels, length)
        return int(rng.integers(low, max(low, length - min_pixels) + 1))

    w, h = side(width), side(height)
    x = int(rng.integers(width - w)) if w < width else 0
    y = int(rng.integers(height - h)) if h < height else 0
    return x, y, w, h


class EpochEpisodes(Sequence):
    """The training episodes of one epoch, indexable (so a data loader can start mid-epoch)."""

    def __init__(self, sampler: TrainEpisodeSampler | SelfQueryEpisodes, epoch: int) -> None:
        self.sampler, self.epoch = sampler, epoch

    def __len__(self) -> int:
        return len(self.sampler)

    def __getitem__(self, index: int) -> Episode | tuple[Episode, ...]:
        """Episode ``index``; a tuple of episodes on one target image where the sampler has ``queries_per_target``
        above 1 (:meth:`TrainEpisodeSampler.group`)."""
        if self.sampler.queries_per_target > 1:
            return self.sampler.group(self.epoch, index)
        return self.sampler.episode(self.epoch, index)


def evaluation_queries(pool: QueryPool, category_id: int, image_id: int, repeats: int) -> list[QueryRecord]:
    """The standard protocol's queries for repeats ``0..repeats-1`` of (image, class).

    ``RandomState(image_id)`` shuffles the class's pool (without the image's own exemplars); repeat ``r``
    takes position ``r`` (cycling when the pool is shorter than ``repeats``). Empty if the pool has none.
    """
    records = pool.for_class(category_id)
    candidates = np.flatnonzero(pool.image_ids(category_id) != image_id)
    if len(candidates) == 0:
        return []
    order = np.random.RandomState(image_id % 2**32).permutation(len(candidates))
    return [records[int(candidates[order[r % len(candidates)]])] for r in range(repeats)]


def official_queries(pool: QueryPool, class_ids: list[int], file_name: str, repeats: int) -> dict[int, list]:
    """The official IA-DETR code's queries for one test image: Python's ``random`` seeded with the image's file
    name; for each class in ``class_ids`` order, the class's whole pool (the image's own exemplars included),
    repeated until it holds at least ``repeats`` entries, is shuffled and its first ``repeats`` are the
    queries of repeats ``0..repeats-1``. Classes without exemplars get none."""
    rng = random.Random(file_name)
    chosen = {}
    for category_id in class_ids:
        records = pool.for_class(category_id)
        if not records:
            continue
        indices = list(range(len(records))) * (repeats // len(records) + 1 if len(records) < repeats else 1)
        rng.shuffle(indices)
        chosen[category_id] = [records[i] for i in indices[:repeats]]
    return chosen


def evaluation_episodes(
    data: DetectionData,
    pool: QueryPool,
    class_ids: set[int],
    repeats: int = 5,
    absent_per_image: int = 0,
    max_images: int = 0,
    queries: str = "standard",
) -> list[list[Episode]]:
    """Episodes of the standard protocol, one list per repeat.

    With ``absent_per_image > 0`` each image also gets that many classes of ``class_ids`` that are not
    annotated in it and have exemplars (drawn with a RNG seeded by the image id), marked ``present=False``.
    ``queries="official"`` draws the present classes' queries by :func:`official_queries` instead of
    :func:`evaluation_queries` (absent classes keep the standard rule: the official code has no absent episodes).
    """
    images = data.images[:max_images] if max_images else data.images
    per_repeat: list[list[Episode]] = [[] for _ in range(repeats)]
    for record in images:
        index = data.index_of(record.image_id)
        present = sorted(record.classes() & class_ids)
        absent: list[int] = []
        if absent_per_image:
            annotated = {int(c) for c in record.labels}
            choices = sorted(c for c in class_ids - annotated if pool.for_class(c))
            rng = np.random.default_rng([record.image_id, 1])
            absent = sorted(int(c) for c in rng.choice(choices, min(absent_per_image, len(choices)), replace=False))
        official = official_queries(pool, present, record.path.name, repeats) if queries == "official" else {}
        for category_id, is_present in [(c, True) for c in present] + [(c, False) for c in absent]:
            if is_present and queries == "official":
                chosen = official.get(category_id, [])
            else:
                chosen = evaluation_queries(pool, category_id, record.image_id, repeats)
            for repeat, query in enumerate(chosen):
                per_repeat[repeat].append(Episode(index, category_id, query, repeat, is_present))
    return per_repeat
