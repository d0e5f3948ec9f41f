"""Episodes as a torch dataset, and the collate function that puts a batch on one common grid.

The batch contract (:class:`Batch`):

- ``target_images``, ``query_images``: ``(B, 3, H, W)`` float, ImageNet-normalised, zero-padded at the
  bottom and right to one grid ``H x W`` (a multiple of ``size_divisor``); the query patch sits top-left.
- ``target_masks``, ``query_masks``: ``(B, H, W)`` bool, ``True`` on padding.
- ``targets[b]``: ``boxes`` ``(N, 4)`` of the query's class in ``cxcywh`` normalised by the target
  image's own (unpadded) width and height; ``all_boxes``/``all_labels``: every training-visible box and its
  category id (for auxiliary losses); ``query_label``: the query's category id.
- ``meta[b]``: ``image_id``, ``category_id``, ``orig_size`` ``(H0, W0)`` of the image file, ``size``
  ``(h, w)`` after resizing, ``present``, ``repeat``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from .episodes import SELF_QUERY, Episode
from .images import ImageReadError, load_image
from .records import DetectionData
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

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.target_images.to(device, non_blocking=True),
            self.target_masks.to(device, non_blocking=True),
            self.query_images.to(device, non_blocking=True),
            self.query_masks.to(device, non_blocking=True),
            [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in self.targets],
            self.meta,
        )

    def __len__(self) -> int:
        return self.target_images.shape[0]


def xyxy_to_normalized_cxcywh(boxes: np.ndarray, width: int, height: int) -> torch.Tensor:
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2 / width, (boxes[:, 1] + boxes[:, 3]) / 2 / height
    w, h = (boxes[:, 2] - boxes[:, 0]) / width, (boxes[:, 3] - boxes[:, 1]) / height
    return torch.stack([cx, cy, w, h], dim=-1)


class EpisodeDataset(Dataset):
    """Item ``i`` is the :class:`Sample` of ``episodes[i]``.

    A sample whose image cannot be read is skipped with a warning naming the file, and the next episode is
    used instead (at most ``max_skips`` in a row), so that one bad file does not end a long run.
    """

    def __init__(
        self,
        data: DetectionData,
        episodes: Sequence[Episode],
        target_transform: TargetTransform,
        query_transform: QueryTransform,
        seed: int = 0,
        max_skips: int = 10,
    ) -> None:
        self.data, self.episodes = data, episodes
        self.target_transform, self.query_transform = target_transform, query_transform
        self.seed, self.max_skips = seed, max_skips
        self.skipped = 0

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, index: int) -> Sample:
        for attempt in range(self.max_skips + 1):
            episode = self.episodes[(index + attempt) % len(self.episodes)]
            try:
                return self.load(episode, self._seed(index + attempt))
            except ImageReadError as error:
                self.skipped += 1
                logger.warning(
                    "skipping episode %d (%d skipped so far in this process): %s",
                    index + attempt,
                    self.skipped,
                    error,
                )
        raise RuntimeError(
            f"{self.max_skips + 1} consecutive episodes from {index} have unreadable images; "
            f"run tools/check_dataset.py on the data set"
        )

    def _seed(self, index: int) -> int:
        epoch = getattr(self.episodes, "epoch", 0)
        return int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0] & 0x7FFFFFFF)

    def load(self, episode: Episode, seed: int) -> Sample:
        record = self.data.images[episode.image_index]
        image = load_image(record.path)
        keep = ~record.ignore
        boxes, labels = record.boxes[keep], record.labels[keep]
        if episode.category_id == SELF_QUERY:  # stage 1: the query crop is the one positive
            boxes = np.concatenate([boxes, np.asarray([episode.query.box], np.float32)])
            labels = np.concatenate([labels, [SELF_QUERY]])
        out = self.target_transform(image, boxes, labels, seed)
        h, w = out.image.shape[:2]
        query = self.query_transform(load_image(episode.query.path), episode.query.box, seed + 1)
        matches = out.labels == episode.category_id
        target = {
            "boxes": xyxy_to_normalized_cxcywh(out.boxes[matches], w, h),
            "all_boxes": xyxy_to_normalized_cxcywh(out.boxes, w, h),
            "all_labels": torch.as_tensor(out.labels, dtype=torch.int64),
            "query_label": torch.tensor(episode.category_id, dtype=torch.int64),
        }
        meta = {
            "image_id": record.image_id,
            "category_id": episode.category_id,
            "orig_size": (image.shape[0], image.shape[1]),
            "size": (h, w),
            "present": episode.present,
            "repeat": episode.repeat,
        }
        return Sample(to_tensor(out.image), to_tensor(query), target, meta)


def pad_to_grid(images: list[torch.Tensor], height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad ``(3, h, w)`` images at the bottom/right to ``(B, 3, height, width)`` with padding masks."""
    batch = images[0].new_zeros((len(images), 3, height, width))
    masks = torch.ones((len(images), height, width), dtype=torch.bool)
    for i, image in enumerate(images):
        _, h, w = image.shape
        batch[i, :, :h, :w] = image
        masks[i, :h, :w] = False
    return batch, masks


def collate(samples: list[Sample], size_divisor: int = 32) -> Batch:
    """Put targets and queries of a batch on one common grid (see the module docstring)."""
    shapes = [s.target_image.shape[1:] for s in samples] + [s.query_image.shape[1:] for s in samples]
    height = math.ceil(max(h for h, _ in shapes) / size_divisor) * size_divisor
    width = math.ceil(max(w for _, w in shapes) / size_divisor) * size_divisor
    targets, target_masks = pad_to_grid([s.target_image for s in samples], height, width)
    queries, query_masks = pad_to_grid([s.query_image for s in samples], height, width)
    return Batch(targets, target_masks, queries, query_masks, [s.target for s in samples], [s.meta for s in samples])
