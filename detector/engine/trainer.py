"""Training: ``train(config)`` for a laptop CPU, one GPU or many (torchrun).

``train`` builds what a run needs (data, episode source and target builder, model, criterion, optimizer,
hooks), restores a checkpoint when resuming, and runs :func:`~detector.engine.loop.train_one_epoch` epoch
after epoch. Training is counted in optimizer steps. Episode ``(epoch, index)`` and its augmentation are pure
functions of the seed, and batch ``g`` of an epoch is episodes ``[g * B * W, (g + 1) * B * W)`` (``B`` per
process, ``W`` processes), so the sampler's position is just ``(epoch, batch)``: a resumed run continues with
exactly the batches an uninterrupted run would have seen, and on CPU reaches the same weights.
"""

from __future__ import annotations

import fcntl
import json
import logging
import time
from functools import partial
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..config import Config, save_config
from ..data.build import SplitData, build_split_data, build_transforms
from ..data.dataset import EpisodeDataset, OneShotTargets, SelfQueryTargets, SkipUnreadable, collate
from ..data.episodes import SelfQueryEpisodes, TrainEpisodeSampler
from ..data.images import ImageCache, load_image
from ..models import build
from ..models.ia_detr import IADETR
from . import distributed
from .checkpoint import (
    FORMAT,
    CheckpointError,
    check_model_config,
    find_resumable,
    initialise_from,
    load_checkpoint,
    prune,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .compiling import compile_for_training, eager
from .evaluate import evaluate_model
from .hooks import EveryNSteps, MetricsLog, ProgressHook, ProgressLines, RunClock, TimeDecay, TimeLimit
from .loop import Position, amp_dtype_for, cpu_has_native_bf16, train_one_epoch
from .optim import (
    build_optimizer,
    build_scheduler,
    drop_lr_from_next_step,
    follow_config_on_resume,
    freeze_backbone_body,
    freeze_step,
)
from .pretrain import extract_crops, pretrain_backbone

logger = logging.getLogger(__name__)


def build_episode_source(
    config: Config, data: SplitData
) -> tuple[TrainEpisodeSampler | SelfQueryEpisodes, OneShotTargets | SelfQueryTargets]:
    """The episodes of ``train.stage`` and the target builder that goes with them: stage 1, crops of the
    target image as queries (the crop is the positive); stage 2, one-shot episodes on the seen classes."""
    if config.train.stage == 1:
        if config.train.queries_per_target > 1:
            raise ValueError(
                "train.queries_per_target applies to stage 2 (one-shot episodes); stage 1's query is a crop of its "
                "own target: set train.queries_per_target=1"
            )
        official = config.train.stage1_recipe == "official"
        return SelfQueryEpisodes(data.data, config.train.seed, official), SelfQueryTargets(objects=official)
    train = config.train
    sampler = TrainEpisodeSampler(
        data.data, data.pool, data.class_ids, train.seed, train.absent_fraction, train.queries_per_target
    )
    return sampler, OneShotTargets()


def _batches(length: int, batch_size: int, world: int, rank: int, start: int) -> list[list[int]]:
    per_step = batch_size * world
    count = length // per_step if length >= per_step else 1
    return [[(g * per_step + rank * batch_size + i) % length for i in range(batch_size)] for g in range(start, count)]


def _pretrain(config: Config, model: IADETR, data: SplitData, device: torch.device, show: bool) -> dict:
    train = config.train
    crops = extract_crops(data.pool, data.class_ids, train.pretrain_crop_size, train.pretrain_max_crops, train.seed)
    return pretrain_backbone(
        model,
        crops,
        train.pretrain_steps,
        train.pretrain_batch_size,
        train.pretrain_lr,
        device,
        train.seed,
        config.data.hflip,
        show,
    )


def _lock(out: Path) -> object:
    """An exclusive lock on the run folder, so that two runs never write one folder's checkpoints and metrics."""
    handle = (out / ".lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        handle.close()
        raise CheckpointError(
            f"another training run is writing to {out}; give this one another train.output_dir, or wait for it"
        ) from error
    return handle


def train(config: Config, resume: str | None = None, progress: bool = True) -> dict:
    """Train ``config``; ``resume`` is a checkpoint path, or ``"auto"`` for the newest checkpoint of the run
    folder that loads. The run folder is locked while this runs (released however it ends)."""
    device = distributed.init_from_environment(config.train.device)
    out = Path(config.train.output_dir)
    if not distributed.is_main():
        return _train(config, resume, progress, device, out)
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock(out)
    try:
        return _train(config, resume, progress, device, out)
    finally:
        lock.close()


def _train(config: Config, resume: str | None, progress: bool, device: torch.device, out: Path) -> dict:
    rank, world, main = distributed.rank(), distributed.world_size(), distributed.is_main()
    if main:
        save_config(config, out / "config.yaml")
    torch.manual_seed(config.train.seed)
    train_data = build_split_data(config.data, "train")
    sampler, targets = build_episode_source(config, train_data)
    model, criterion, postprocessor = build(config)
    if config.train.init_from and not resume:
        missing = initialise_from(model, config.train.init_from)
        logger.info("initialised from %s (kept their initial values: %s)", config.train.init_from, missing)
    model.to(device)
    log = MetricsLog(out, config.train.tensorboard) if main else None
    run_start = time.perf_counter()
    resume_path = find_resumable(out) if resume == "auto" else (Path(resume) if resume else None)
    resuming = resume_path is not None
    if config.train.pretrain_steps > 0 and not resuming:
        report = _pretrain(config, model, train_data, device, progress and main)
        if main:
            logger.info("backbone pre-trained: %s", report)
            log({"step": 0, **{f"pretrain_{k}": v for k, v in report.items()}})
    optimizer = build_optimizer(model, model.backbone, config.train)
    scheduler = build_scheduler(optimizer, config.train)
    amp_dtype = amp_dtype_for(config.train.amp, device)
    if device.type == "cpu" and amp_dtype == torch.bfloat16 and cpu_has_native_bf16() is False and main:
        logger.warning(
            "train.amp=bf16 on a CPU without bf16 instructions (no avx512_bf16 or amx_bf16): bf16 is emulated "
            "there and usually slower than full precision; set train.amp=off"
        )
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    ema = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.train.ema_decay))
        if config.train.ema_decay
        else None
    )
    position, best = Position(), -1.0
    if resuming:
        state = load_checkpoint(resume_path)
        check_model_config(state["config"]["model"], config.to_dict()["model"], resume_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        moved = follow_config_on_resume(scheduler, config.train, state["config"].get("train", {}))
        if moved and main:
            logger.info(
                "lr x0.1 from step %d, lr_drop_at of this run's train.max_steps (the checkpoint's run had it at %d)",
                moved[1],
                moved[0],
            )
        scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema"):
            ema.load_state_dict(state["ema"])
        position = Position(**state["position"])
        best = state.get("best", -1.0)
        set_rng_state(state["rng"])
        if main:
            logger.info("resumed from %s at step %d", resume_path, position.step)

    def checkpoint(extra_name: str | None = None) -> None:
        if not main:
            return
        state = {
            "format": FORMAT,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "position": position.__dict__,
            "rng": rng_state(),
            "best": best,
            "config": config.to_dict(),
        }
        save_checkpoint(state, out / f"checkpoint_{position.step:07d}.pth")
        save_checkpoint(state, out / "last.pth")
        prune(out, config.train.keep_checkpoints)
        if extra_name:
            save_checkpoint(state, out / extra_name)

    test_data: SplitData | None = None

    def evaluate_now() -> dict:
        nonlocal test_data, best
        test_data = test_data or build_split_data(config.data, "test")
        with eager():  # test images come at other sizes, in eval mode: compiling them costs more than it saves
            result = evaluate_model(
                ema.module if ema is not None else model, postprocessor, config, test_data, device, progress
            )
        if main:
            log({"step": position.step, **{k: v for k, v in result.items() if isinstance(v, float)}})
            if result["unseen_ap50"] > best:
                best = result["unseen_ap50"]
                checkpoint("best.pth")
        return result

    bar = tqdm(
        total=config.train.max_steps,
        initial=position.step,
        disable=not progress or not main,
        desc=f"train {out.name}",
        dynamic_ncols=True,
    )
    # the clock decides when to stop and (train.lr_drop_by_time) when to drop the lr: under torchrun all processes
    # must decide alike, so they agree on it every step (one small all-reduce) when a time cap is set
    clock_sync = partial(distributed.all_reduce_mean, device=device) if config.train.max_minutes and world > 1 else None
    frozen_from = freeze_step(config.train)
    frozen = False

    def freeze(report=None) -> None:
        nonlocal frozen
        step = position.step if report is None else report.position.step
        if frozen_from is not None and not frozen and step >= frozen_from:
            count, frozen = freeze_backbone_body(model.backbone), True
            if main:
                logger.info("backbone body frozen from step %d (%d parameter tensors)", step, count)

    freeze()  # a run resumed after the freeze step (or frozen from step 0)
    clock = [RunClock(position.seconds, run_start, clock_sync)]
    if config.train.lr_drop_by_time:
        log_drop = logger.info if main else None
        clock.append(
            TimeDecay(
                config.train.max_minutes, config.train.lr_drop_at, partial(drop_lr_from_next_step, scheduler), log_drop
            )
        )
    hooks = [
        *clock,
        freeze,
        ProgressHook(bar, log, config.train.log_every),
        *(
            [ProgressLines(logger.info, position, config.train.max_steps, config.train.max_minutes)]
            if main and not progress
            else []
        ),
        EveryNSteps(config.train.checkpoint_every, checkpoint),
        EveryNSteps(config.train.eval_every, evaluate_now),
        TimeLimit(config.train.max_minutes),
    ]
    grid = compile_for_training(model, config)
    if main and grid != (0, 0):
        logger.info("train.compile: backbone and decoder layers compiled; training batches on a %dx%d grid", *grid)
    ddp = DistributedDataParallel(model, find_unused_parameters=True) if world > 1 else model
    target_tf, query_tf = build_transforms(config.data, train=True)
    read = ImageCache(config.data.cache_mb) if config.data.cache_mb > 0 else load_image
    train_start, images = time.perf_counter(), 0
    stopped = position.step >= config.train.max_steps
    while not stopped:
        episodes = EpisodeDataset(
            train_data.data, sampler.epoch(position.epoch), target_tf, query_tf, config.train.seed, targets, read
        )
        loader = DataLoader(
            SkipUnreadable(episodes),
            batch_sampler=_batches(len(episodes), config.train.batch_size, world, rank, position.batch),
            num_workers=config.data.num_workers,
            collate_fn=partial(collate, size_divisor=config.data.size_divisor, min_grid=grid),
        )
        steps_before = position.step
        stopped = train_one_epoch(
            ddp,
            criterion,
            loader,
            optimizer,
            scheduler=scheduler,
            scaler=scaler,
            device=device,
            position=position,
            max_steps=config.train.max_steps,
            amp_dtype=amp_dtype,
            grad_accum=config.train.grad_accum,
            clip_grad_norm=config.train.clip_grad_norm,
            ema=ema,
            hooks=hooks,
            failure_dir=out,
        )
        images += (position.step - steps_before) * config.train.batch_size * config.train.grad_accum * world
        if not stopped:
            position.epoch, position.batch = position.epoch + 1, 0
    bar.close()
    train_seconds = time.perf_counter() - train_start
    checkpoint()
    result = evaluate_now() if config.train.eval_every >= 0 else {}
    distributed.barrier()
    fingerprint = float(sum(p.detach().double().sum() for p in model.parameters()))
    summary = {
        "output_dir": str(out),
        "steps": position.step,
        "epochs": position.epoch,
        "parameter_fingerprint": fingerprint,
        "minutes": round((time.perf_counter() - run_start) / 60, 2),
        "images_per_s": round(images / max(train_seconds, 1e-9), 2),
        "seen_ap50": result.get("seen_ap50"),
        "unseen_ap50": result.get("unseen_ap50"),
    }
    # every rank writes its own summary: identical fingerprints show that the replicas stayed in sync
    (out / ("summary.json" if main else f"summary_rank{rank}.json")).write_text(json.dumps(summary, indent=1))
    return summary
