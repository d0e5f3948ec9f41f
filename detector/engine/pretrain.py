"""Optional backbone pre-training on seen-class crops, run before the first detection step.

The paper starts from an ImageNet-pretrained backbone (COCO-related classes removed). A backbone trained
from scratch, such as the CPU-tiny preset, starts with nothing, and learning what tells classes apart from
one query per detection episode is slow: the identity loss stays at chance for the first thousand steps.
This step trains the query path (backbone -> projection -> max-pooled embedding) with the identity head to
classify the training split's query-pool crops, which hold **seen classes only**, like a small labelled
pre-training set. A 64-pixel crop costs a small fraction of a detection episode, so a few hundred steps of
64 crops take a minute or two on a CPU and give the detector class-aware features from its first step.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.images import ImageReadError, load_image
from ..data.query_pool import QueryPool
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, QueryTransform
from ..models.criterion import check_labels
from ..models.ia_detr import IADETR

logger = logging.getLogger(__name__)


@dataclass
class Crops:
    """``images (N, 3, S, S)`` uint8 (each crop top-left, longer side ``S``), ``masks (N, S, S)`` (``True`` =
    padding) and ``labels (N,)`` category ids."""

    images: torch.Tensor
    masks: torch.Tensor
    labels: torch.Tensor


def extract_crops(pool: QueryPool, class_ids: set[int], size: int, max_crops: int, seed: int) -> Crops:
    """The pool's exemplars of ``class_ids`` (at most ``max_crops``, drawn with ``seed``), each resized so that
    its longer side is ``size`` and placed top-left on a ``size x size`` canvas. Unreadable images are skipped."""
    records = [r for c in sorted(class_ids) for r in pool.for_class(c)]
    if not records:
        raise ValueError("backbone pre-training found no query-pool exemplars of the training classes")
    if len(records) > max_crops:
        keep = np.random.default_rng(seed).choice(len(records), max_crops, replace=False)
        records = [records[i] for i in sorted(keep)]
    resize = QueryTransform(train=False, query_size=size, resize="longer_side")
    by_image = defaultdict(list)
    for record in records:
        by_image[record.path].append(record)
    images = np.zeros((len(records), size, size, 3), np.uint8)
    masks = np.ones((len(records), size, size), bool)
    labels = np.zeros(len(records), np.int64)
    count, skipped = 0, 0
    for path, group in by_image.items():
        try:
            image = load_image(path)
        except ImageReadError as error:
            skipped += 1
            logger.warning("pre-training skips %s: %s", path, error)
            continue
        for record in group:
            patch = resize(image, record.box, 0)  # the query path's own crop and resize, no augmentation
            h, w = patch.shape[:2]
            images[count, :h, :w] = patch
            masks[count, :h, :w] = False
            labels[count] = record.category_id
            count += 1
    if skipped:
        logger.warning("pre-training skipped %d unreadable images", skipped)
    return Crops(
        torch.from_numpy(images[:count]).permute(0, 3, 1, 2).contiguous(),
        torch.from_numpy(masks[:count]),
        torch.from_numpy(labels[:count]),
    )


def _augment(images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator, hflip: bool) -> torch.Tensor:
    """uint8 crops -> normalised float, with per-crop brightness/contrast jitter and (``hflip``) flips of the
    valid region; padding stays zero."""
    x = images.float() / 255.0
    n = len(x)
    contrast = 1.0 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.6
    brightness = (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.4
    x = ((x - 0.5) * contrast + 0.5 + brightness).clamp(0, 1)
    mean = torch.as_tensor(IMAGENET_MEAN, dtype=x.dtype)[:, None, None]
    std = torch.as_tensor(IMAGENET_STD, dtype=x.dtype)[:, None, None]
    x = (x - mean) / std
    if hflip:
        widths = (~masks[:, 0]).sum(-1)  # valid width of each crop (crops sit top-left)
        for i in torch.nonzero(torch.rand(n, generator=generator) < 0.5).flatten().tolist():
            w = int(widths[i])
            x[i, :, :, :w] = x[i, :, :, :w].flip(-1)
    return x * ~masks[:, None]


def pretrain_backbone(
    model: IADETR,
    crops: Crops,
    steps: int,
    batch_size: int,
    lr: float,
    device: torch.device,
    seed: int,
    hflip: bool = True,
    progress: bool = True,
) -> dict:
    """Train ``model.backbone`` and ``model.identity_head`` to classify ``crops`` through the query path.

    Returns ``steps``, ``seconds`` and the training ``accuracy`` over the last 50 steps."""
    if model.identity_head is None:
        raise ValueError("train.pretrain_steps > 0 needs an identity head: set model.identity_classes")
    classifier = model.identity_head.classifier
    check_labels(crops.labels, classifier.out_features)
    params = [p for p in model.backbone.parameters() if p.requires_grad] + list(classifier.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    warmup = max(1, steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    generator = torch.Generator().manual_seed(seed)
    model.backbone.train()
    start, correct = time.perf_counter(), []
    for _ in tqdm(range(steps), desc="pre-train backbone", disable=not progress, dynamic_ncols=True):
        index = torch.randint(len(crops.labels), (batch_size,), generator=generator)
        masks = crops.masks[index]
        images = _augment(crops.images[index], masks, generator, hflip).to(device)
        masks, labels = masks.to(device), crops.labels[index].to(device)
        features, cell_masks = model.backbone(images, masks)
        pooled = features.flatten(2).masked_fill(cell_masks.flatten(1)[:, None], float("-inf")).amax(-1)
        logits = classifier(pooled)
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        correct.append((logits.argmax(1) == labels).float().mean().item())
    return {
        "steps": steps,
        "seconds": round(time.perf_counter() - start, 1),
        "accuracy": round(float(np.mean(correct[-50:])), 4) if correct else 0.0,
    }
