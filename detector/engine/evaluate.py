"""Run a model (or the template baseline) over the evaluation episodes and score them."""

from __future__ import annotations

import time
from functools import partial

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..config import Config
from ..data.build import SplitData, build_transforms
from ..data.dataset import EpisodeDataset, collate
from ..data.episodes import Episode, evaluation_episodes
from ..data.images import load_image
from ..data.transforms import crop_box
from ..evaluation.evaluator import OneShotEvaluator
from ..evaluation.template_baseline import TemplateMatcher
from ..models.ia_detr import IADETR
from ..models.postprocess import PostProcessor
from . import distributed


def episodes_for(config: Config, test: SplitData) -> list[Episode]:
    per_repeat = evaluation_episodes(
        test.data,
        test.pool,
        test.class_ids,
        config.eval.repeats,
        config.eval.absent_per_image if config.eval.absent else 0,
        config.eval.max_images,
    )
    return [episode for repeat in per_repeat for episode in repeat]


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
    under torchrun and the detections gathered on every rank."""
    episodes = episodes_for(config, test)
    rank, world = distributed.rank(), distributed.world_size()
    shard = episodes[rank::world]
    target_tf, query_tf = build_transforms(config.data, train=False)
    dataset = EpisodeDataset(test.data, shard, target_tf, query_tf, seed=0)
    loader = DataLoader(
        dataset,
        batch_size=config.eval.batch_size,
        shuffle=False,
        num_workers=config.data.num_workers,
        collate_fn=partial(collate, size_divisor=config.data.size_divisor),
    )
    was_training = model.training
    model.eval()
    start, processed = time.perf_counter(), []
    for i, batch in enumerate(tqdm(loader, desc="evaluate", disable=not progress or rank != 0, leave=False)):
        batch = batch.to(device)
        sizes = torch.tensor([m["size"] for m in batch.meta], device=device)
        outputs = model(batch.target_images, batch.target_masks, batch.query_images, batch.query_masks, sizes)
        original = torch.tensor([m["orig_size"] for m in batch.meta], device=device)
        detections = postprocessor(outputs, original)
        first = i * config.eval.batch_size
        for j, det in enumerate(detections):
            processed.append((first + j, {k: v.cpu().numpy() for k, v in det.items()}))
    model.train(was_training)
    seconds = time.perf_counter() - start
    gathered = distributed.all_gather_object([(rank + world * i, det) for i, det in processed])
    evaluator = OneShotEvaluator(test.data, test.split, config.eval.max_detections)
    for index, det in sorted((pair for part in gathered for pair in part), key=lambda p: p[0]):
        evaluator.process([episodes[index]], [det])
    result = evaluator.evaluate()
    result["episodes"] = len(episodes)
    result["seconds_per_episode"] = seconds / max(len(shard), 1)
    return result


def evaluate_template(matcher: TemplateMatcher, config: Config, test: SplitData, progress: bool = True) -> dict:
    """The template baseline on the original images (no resizing), scored by the same evaluator."""
    episodes = episodes_for(config, test)
    evaluator = OneShotEvaluator(test.data, test.split, config.eval.max_detections)
    start = time.perf_counter()
    for episode in tqdm(episodes, desc="template baseline", disable=not progress, leave=False):
        target = load_image(test.data.images[episode.image_index].path)
        patch = crop_box(load_image(episode.query.path), episode.query.box)
        evaluator.process([episode], [matcher.predict(patch, target)])
    result = evaluator.evaluate()
    result["episodes"] = len(episodes)
    result["seconds_per_episode"] = (time.perf_counter() - start) / max(len(episodes), 1)
    return result
