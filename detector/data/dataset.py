"""Episodes as a torch dataset, and the collate function that puts a batch on one common grid.

The batch contract (:class:`Batch`):

- ``target_images``, ``query_images``: ``(B, 3, H, W)`` float, ImageNet-normalised, zero-padded at the
  bottom and right to one grid ``H x W`` (a multiple of ``size_divisor``); the query patch sits top-left.
- ``target_masks``, ``query_masks``: ``(B, H, W)`` bool, ``True`` on padding.
- ``targets[b]``: ``boxes`` ``(N, 4)``, the positives (what the query should find), in ``cxcywh``
  normalised by the target image's own (unpadded) width and height; ``all_boxes``: every box the proposals
  learn from; ``class_boxes``/``class_labels``: the boxes whose category id is known, and those ids (for the
  identity loss); ``query_label``: the query's category id, -1 when the query has no class (stage 1).
- ``target_index``: None, or, when target images have several queries each (training with
  ``train.queries_per_target`` above 1), ``(Q,)``: the target row of each query row; the query images,
  ``targets`` and ``meta`` then have ``Q`` rows and the target images ``B < Q``.
- ``meta[b]``: ``episode`` (the index of the episode in the data set's list), ``image_id``,
  ``category_id``, ``orig_size`` ``(H0, W0)`` of the image file, ``size`` ``(h, w)`` after resizing,
  ``present``, ``repeat``.

Which boxes are positives is decided by a target builder passed to the data set: :class:`OneShotTargets`
(stage 2: the boxes of the query's class) or :class:`SelfQueryTargets` (stage 1: the query crop itself).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .episodes import Episode
from .images import ImageReadError, load_image
from .records import DetectionData, ImageRecord
from .transforms import QueryTransform, TargetTransform, to_tensor

logger = logging.getLogger(__name__)


@dataclass
class Sample:
    target_image: torch.Tensor
    query_image: torch.Tensor
    target: dict[str, torch.Tensor]
    meta: dict = field(default_factory=dict)


@dataclass
class Batch:
    target_images: torch.Tensor
    target_masks: torch.Tensor
    query_images: torch.Tensor
    query_masks: torch.Tensor
    targets: list[dict[str, torch.Tensor]]
    meta: list[dict]
    # (Q,) int64: the target row each query row searches, when a target has several queries (None: row b, row b)
    target_index: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.target_images.to(device, non_blocking=True),
            self.target_masks.to(device, non_blocking=True),
            self.query_images.to(device, non_blocking=True),
            self.query_masks.to(device, non_blocking=True),
            [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in self.targets],
            self.meta,
            None if self.target_index is None else self.target_index.to(device, non_blocking=True),
        )

    def __len__(self) -> int:
        """The number of target images."""
        return self.target_images.shape[0]

    def image_sizes(self) -> torch.Tensor:
        """``(Q, 2)``: the unpadded ``(height, width)`` of the target each query row searches, on the batch's
        device."""
        return torch.tensor([m["size"] for m in self.meta], device=self.target_images.device)

    def target_sizes(self) -> torch.Tensor:
        """``(B, 2)``: each target image's unpadded ``(height, width)`` (:meth:`image_sizes` when every target
        has one query)."""
        sizes = self.image_sizes()
        if self.target_index is None:
            return sizes
        out = sizes.new_zeros((len(self), 2))
        out[self.target_index] = sizes
        return out


def xyxy_to_normalized_cxcywh(boxes: np.ndarray, width: int, height: int) -> torch.Tensor:
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2 / width, (boxes[:, 1] + boxes[:, 3]) / 2 / height
    w, h = (boxes[:, 2] - boxes[:, 0]) / width, (boxes[:, 3] - boxes[:, 1]) / height
    return torch.stack([cx, cy, w, h], dim=-1)


@dataclass
class EpisodeBoxes:
    """The boxes of one episode before augmentation (``xyxy`` pixels of the original image): ``boxes (N, 4)``,
    ``labels (N,)`` category ids (-1: no class), ``positive (N,)`` bool, and ``objects (N,)`` bool or None: the
    boxes the official stage 1 also detects, as "an object"."""

    boxes: np.ndarray
    labels: np.ndarray
    positive: np.ndarray
    objects: np.ndarray | None = None


class OneShotTargets:
    """Stage 2: the positives are the target's boxes of the query's class; every annotated box keeps its class."""

    def __call__(self, record: ImageRecord, episode: Episode) -> EpisodeBoxes:
        keep = ~record.ignore
        boxes, labels = record.boxes[keep], record.labels[keep]
        return EpisodeBoxes(boxes, labels, labels == episode.category_id)


class SelfQueryTargets:
    """Stage 1: the query is a crop of the target image and the crop is the positive ("the query"). With
    ``objects`` (the official recipe) every annotated box is also a target, "an object"; without, the annotated
    boxes stay in the target as negatives (with their classes, for the identity loss)."""

    def __init__(self, objects: bool = True) -> None:
        self.objects = objects

    def __call__(self, record: ImageRecord, episode: Episode) -> EpisodeBoxes:
        keep = ~record.ignore
        boxes = np.concatenate([record.boxes[keep], np.asarray([episode.query.box], np.float32)])
        labels = np.concatenate([record.labels[keep], [-1]])
        positive = np.zeros(len(boxes), bool)
        positive[-1] = True
        return EpisodeBoxes(boxes, labels, positive, ~positive if self.objects else None)


class EpisodeDataset(Dataset):
    """Item ``i`` is the :class:`Sample` of ``episodes[i]``; an unreadable image raises
    :class:`ImageReadError` naming the file (see :class:`SkipUnreadable` for training)."""

    def __init__(
        self,
        data: DetectionData,
        episodes: Sequence[Episode],
        target_transform: TargetTransform,
        query_transform: QueryTransform,
        seed: int = 0,
        targets: OneShotTargets | SelfQueryTargets | None = None,
        read: Callable[[str | Path], np.ndarray] = load_image,
    ) -> None:
        self.data, self.episodes = data, episodes
        self.read = read  # load_image, or an ImageCache
        self.target_transform, self.query_transform = target_transform, query_transform
        self.seed = seed
        self.targets = targets or OneShotTargets()

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, index: int) -> Sample:
        return self.load(index, self._seed(index))

    def _seed(self, index: int) -> int:
        epoch = getattr(self.episodes, "epoch", 0)
        return int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0] & 0x7FFFFFFF)

    def load(self, index: int, seed: int) -> Sample | list[Sample]:
        """The sample of episode ``index``, its augmentation drawn from ``seed``; for a group of episodes on one
        target image (:meth:`~.episodes.TrainEpisodeSampler.group`), one sample per episode, sharing one
        augmented target image (one tensor), each with its own query and positives."""
        group = self.episodes[index]
        episodes = group if isinstance(group, tuple) else (group,)
        first = episodes[0]
        if any(e.image_index != first.image_index for e in episodes):
            raise ValueError(f"the episodes of group {index} are on different target images")
        record = self.data.images[first.image_index]
        image = self.read(record.path)
        boxes = self.targets(record, first)
        # the transform carries row numbers as labels, so that every property of a surviving box follows it
        out = self.target_transform(image, boxes.boxes, np.arange(len(boxes.boxes)), seed)
        rows = out.labels
        h, w = out.image.shape[:2]
        target_image = to_tensor(out.image)
        all_boxes = xyxy_to_normalized_cxcywh(out.boxes, w, h)
        samples = []
        for slot, episode in enumerate(episodes):
            if slot:
                boxes = self.targets(record, episode)
            labels, positive = boxes.labels[rows], boxes.positive[rows]
            objects = boxes.objects[rows] if boxes.objects is not None else None
            query = self.query_transform(self.read(episode.query.path), episode.query.box, seed + 1 + slot)
            known = torch.as_tensor(labels >= 0)
            target = {
                "boxes": all_boxes[torch.as_tensor(positive)],
                "all_boxes": all_boxes,
                "class_boxes": all_boxes[known],
                "class_labels": torch.as_tensor(labels, dtype=torch.int64)[known],
                "query_label": torch.tensor(-1 if episode.category_id is None else episode.category_id),
            }
            if objects is not None:
                target["object_boxes"] = all_boxes[torch.as_tensor(objects)]
                target["object_labels"] = torch.as_tensor(labels, dtype=torch.int64)[torch.as_tensor(objects)]
            meta = {
                "episode": index,
                "image_id": record.image_id,
                "category_id": episode.category_id,
                "orig_size": (image.shape[0], image.shape[1]),
                "size": (h, w),
                "present": episode.present,
                "repeat": episode.repeat,
            }
            samples.append(Sample(target_image, to_tensor(query), target, meta))
        return samples if isinstance(group, tuple) else samples[0]


class SkipUnreadable(Dataset):
    """Training only: an episode whose image cannot be read is replaced by the next one (at most
    ``max_skips`` in a row), with a warning naming the file, so that one bad file does not end a long run.
    Evaluation never skips: a replaced episode would be scored against the wrong image."""

    def __init__(self, dataset: EpisodeDataset, max_skips: int = 10) -> None:
        self.dataset, self.max_skips = dataset, max_skips
        self.skipped = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample | list[Sample]:
        for attempt in range(self.max_skips + 1):
            position = (index + attempt) % len(self.dataset)
            try:
                return self.dataset.load(position, self.dataset._seed(index + attempt))
            except ImageReadError as error:
                self.skipped += 1
                logger.warning(
                    "skipping episode %d (%d skipped so far in this process): %s", position, self.skipped, error
                )
        raise RuntimeError(
            f"{self.max_skips + 1} consecutive episodes from {index} have unreadable images; "
            f"run tools/check_dataset.py on the data set"
        )


def pad_to_grid(images: list[torch.Tensor], height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad ``(3, h, w)`` images at the bottom/right to ``(B, 3, height, width)`` with padding masks."""
    batch = images[0].new_zeros((len(images), 3, height, width))
    masks = torch.ones((len(images), height, width), dtype=torch.bool)
    for i, image in enumerate(images):
        _, h, w = image.shape
        batch[i, :, :h, :w] = image
        masks[i, :h, :w] = False
    return batch, masks


def collate(samples: list[Sample | list[Sample]], size_divisor: int = 32, min_grid: tuple[int, int] = (0, 0)) -> Batch:
    """Put targets and queries of a batch on one common grid (see the module docstring), at least ``min_grid``
    ``(H, W)`` pixels: a fixed grid gives every batch the same shape (what a compiled model wants).

    An item that is a list of samples (episodes on one target image) adds its target image once and each of its
    queries as a row: the batch then has fewer target rows than query rows, and ``target_index`` says which
    target each query row searches."""
    groups = [s if isinstance(s, list) else [s] for s in samples]
    flat = [s for group in groups for s in group]
    images = [group[0].target_image for group in groups]
    shapes = [i.shape[1:] for i in images] + [s.query_image.shape[1:] for s in flat]
    height = math.ceil(max(max(h for h, _ in shapes), min_grid[0]) / size_divisor) * size_divisor
    width = math.ceil(max(max(w for _, w in shapes), min_grid[1]) / size_divisor) * size_divisor
    targets, target_masks = pad_to_grid(images, height, width)
    queries, query_masks = pad_to_grid([s.query_image for s in flat], height, width)
    index = None
    if len(flat) != len(groups):
        index = torch.tensor([g for g, group in enumerate(groups) for _ in group])
    return Batch(targets, target_masks, queries, query_masks, [s.target for s in flat], [s.meta for s in flat], index)
