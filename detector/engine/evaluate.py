"""Run a model (or the template baseline) over the evaluation episodes and score them."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..config import Config
from ..data.build import SplitData, build_split_data, build_transforms
from ..data.dataset import Batch, EpisodeDataset, Sample, collate
from ..data.episodes import Episode, evaluation_episodes
from ..data.images import ImageReadError, load_image
from ..data.transforms import crop_box
from ..evaluation.protocols import build_evaluator
from ..evaluation.template_baseline import TemplateMatcher
from ..models.build import build_postprocessor
from ..models.fuse import fuse_batchnorm
from ..models.ia_detr import IADETR
from ..models.postprocess import PostProcessor
from . import distributed
from .checkpoint import load_model

logger = logging.getLogger(__name__)


def episodes_for(config: Config, test: SplitData) -> list[Episode]:
    per_repeat = evaluation_episodes(
        test.data,
        test.pool,
        test.class_ids,
        config.eval.repeats,
        config.eval.absent_per_image if config.eval.absent else 0,
        config.eval.max_images,
        config.eval.queries,
    )
    return [episode for repeat in per_repeat for episode in repeat]


def _evaluator(config: Config, test: SplitData):
    """The scoring protocols ``config.eval`` names, over ``test``."""
    return build_evaluator(config.eval.protocol, test.data, test.split, config.eval.max_detections, config.eval.errors)


@dataclass
class Unreadable:
    """An evaluation episode whose image could not be read."""

    index: int
    reason: str


class _ReadOrReport(Dataset):
    """Evaluation items: the episode's sample, or :class:`Unreadable`. Never another episode instead."""

    def __init__(self, dataset: EpisodeDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample | Unreadable:
        try:
            return self.dataset[index]
        except ImageReadError as error:
            return Unreadable(index, str(error))


def _collate_readable(items: list, size_divisor: int) -> tuple[Batch | None, list[Unreadable]]:
    samples = [item for item in items if isinstance(item, Sample)]
    return (collate(samples, size_divisor) if samples else None), [i for i in items if isinstance(i, Unreadable)]


@torch.no_grad()
def evaluate_model(
    model: IADETR,
    postprocessor: PostProcessor,
    config: Config,
    test: SplitData,
    device: torch.device,
    progress: bool = True,
) -> dict:
    """Standard (and, with ``config.eval.absent``, extended) protocol; episodes are sharded over processes
    under torchrun and the detections gathered on every rank.

    Detections are keyed by the episode they answer. An episode whose image cannot be read is dropped with a
    warning naming the file; its target image is left out of the scores, and the result counts it
    (``dropped_episodes``, ``excluded_images``, ``drop_reasons``).
    """
    episodes = episodes_for(config, test)
    rank, world = distributed.rank(), distributed.world_size()
    indices = list(range(rank, len(episodes), world))
    target_tf, query_tf = build_transforms(config.data, train=False)
    dataset = EpisodeDataset(test.data, [episodes[i] for i in indices], target_tf, query_tf, seed=0)
    loader = DataLoader(
        _ReadOrReport(dataset),
        batch_size=config.eval.batch_size,
        shuffle=False,
        num_workers=config.data.num_workers,
        collate_fn=partial(_collate_readable, size_divisor=config.data.size_divisor),
    )
    was_training = model.training
    model.eval()
    start, processed, dropped = time.perf_counter(), [], []
    for batch, unreadable in tqdm(loader, desc="evaluate", disable=not progress or rank != 0, leave=False):
        for item in unreadable:
            logger.warning("evaluation drops episode %d: %s", indices[item.index], item.reason)
            dropped.append((indices[item.index], item.reason))
        if batch is None:
            continue
        batch = batch.to(device)
        outputs = model(
            batch.target_images, batch.target_masks, batch.query_images, batch.query_masks, batch.image_sizes()
        )
        original = torch.tensor([m["orig_size"] for m in batch.meta], device=device)
        for meta, det in zip(batch.meta, postprocessor(outputs, original)):
            processed.append((indices[meta["episode"]], {k: v.cpu().numpy() for k, v in det.items()}))
    model.train(was_training)
    seconds = time.perf_counter() - start
    evaluator = _evaluator(config, test)
    for part_processed, part_dropped in distributed.all_gather_object((processed, dropped)):
        for index, det in part_processed:
            evaluator.process([episodes[index]], [det])
        for index, reason in part_dropped:
            evaluator.drop(episodes[index], reason)
    result = evaluator.evaluate()
    result["episodes"] = len(episodes)
    result["seconds_per_episode"] = seconds / max(len(indices), 1)
    return result


def evaluate_checkpoint(config: Config, checkpoint: str | Path, device: torch.device, progress: bool = True) -> dict:
    """Evaluate checkpoint ``checkpoint`` (whose model config must match ``config``'s) on ``config``'s test split."""
    model, config = load_model(checkpoint, config)
    fuse_batchnorm(model)  # inference only: batch norms folded into their convolutions
    test = build_split_data(config.data, "test")
    return evaluate_model(model.to(device), build_postprocessor(config.eval), config, test, device, progress)


def evaluate_template(matcher: TemplateMatcher, config: Config, test: SplitData, progress: bool = True) -> dict:
    """The template baseline on the original images (no resizing), scored by the same evaluator."""
    episodes = episodes_for(config, test)
    evaluator = _evaluator(config, test)
    start = time.perf_counter()
    for episode in tqdm(episodes, desc="template baseline", disable=not progress, leave=False):
        target = load_image(test.data.images[episode.image_index].path)
        patch = crop_box(load_image(episode.query.path), episode.query.box)
        evaluator.process([episode], [matcher.predict(patch, target)])
    result = evaluator.evaluate()
    result["episodes"] = len(episodes)
    result["seconds_per_episode"] = (time.perf_counter() - start) / max(len(episodes), 1)
    return result
