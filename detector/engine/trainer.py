"""The training loop: one function, ``train(config)``, for a laptop CPU, one GPU or many (torchrun).

Training is counted in optimizer steps. Episode ``(epoch, index)`` and its augmentation are pure functions
of the seed, and batch ``g`` of an epoch is episodes ``[g * B * W, (g + 1) * B * W)`` (``B`` per process,
``W`` processes), so the sampler's position is just ``(epoch, batch)``: a resumed run continues with
exactly the batches an uninterrupted run would have seen, and on CPU reaches the same weights.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..config import Config, save_config
from ..data.build import SplitData, build_split_data, build_transforms
from ..data.dataset import Batch, EpisodeDataset, collate
from ..data.episodes import SelfQueryEpisodes, TrainEpisodeSampler
from ..models import build
from ..models.criterion import SetCriterion
from ..models.ia_detr import IADETR
from . import distributed
from .checkpoint import (
    CheckpointError,
    check_model_config,
    load_checkpoint,
    prune,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .evaluate import evaluate_model
from .optim import build_optimizer, build_scheduler
from .pretrain import extract_crops, pretrain_backbone

logger = logging.getLogger(__name__)


class TrainStep(nn.Module):
    """Model and criterion in one module, so that DistributedDataParallel synchronises both."""

    def __init__(self, model: IADETR, criterion: SetCriterion) -> None:
        super().__init__()
        self.model, self.criterion = model, criterion

    def forward(self, batch: Batch, num_boxes: float) -> dict[str, torch.Tensor]:
        sizes = torch.tensor([m["size"] for m in batch.meta], device=batch.target_images.device)
        outputs = self.model(batch.target_images, batch.target_masks, batch.query_images, batch.query_masks, sizes)
        return self.criterion(outputs, batch.targets, num_boxes)


@dataclass
class Position:
    step: int = 0
    epoch: int = 0
    batch: int = 0  # next batch of the epoch


def amp_dtype_for(config: Config, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``config.train.amp`` on ``device``: None (full precision) off CUDA."""
    if device.type != "cuda" or config.train.amp == "off":
        return None
    if config.train.amp == "fp16" or (config.train.amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def _batches(length: int, batch_size: int, world: int, rank: int, start: int) -> list[list[int]]:
    per_step = batch_size * world
    count = length // per_step if length >= per_step else 1
    return [[(g * per_step + rank * batch_size + i) % length for i in range(batch_size)] for g in range(start, count)]


def train(config: Config, resume: str | None = None, progress: bool = True) -> dict:
    """Train ``config``; ``resume`` is a checkpoint path, or ``"auto"`` for the run folder's ``last.pth``."""
    device = distributed.init_from_environment(config.train.device)
    rank, world, main = distributed.rank(), distributed.world_size(), distributed.is_main()
    out = Path(config.train.output_dir)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / "config.yaml")
    torch.manual_seed(config.train.seed)
    train_data = build_split_data(config.data, "train")
    if config.train.stage == 1:
        sampler = SelfQueryEpisodes(train_data.data, config.train.seed)
    else:
        sampler = TrainEpisodeSampler(train_data.data, train_data.pool, train_data.class_ids, config.train.seed)
    model, criterion, postprocessor = build(config)
    if config.train.init_from and not resume:
        state = load_checkpoint(config.train.init_from)
        result = model.load_state_dict(state["model"], strict=False)
        logger.info("initialised from %s (missing %s)", config.train.init_from, result.missing_keys)
    step_module = TrainStep(model, criterion).to(device)
    log = MetricsLog(out, config.train.tensorboard) if main else None
    run_start = time.perf_counter()
    resume_path = (out / "last.pth") if resume == "auto" else (Path(resume) if resume else None)
    resuming = resume_path is not None and (resume != "auto" or resume_path.exists())
    if config.train.pretrain_steps > 0 and not resuming:
        crops = extract_crops(
            train_data.pool,
            train_data.class_ids,
            config.train.pretrain_crop_size,
            config.train.pretrain_max_crops,
            config.train.seed,
        )
        report = pretrain_backbone(
            model,
            criterion,
            crops,
            config.train.pretrain_steps,
            config.train.pretrain_batch_size,
            config.train.pretrain_lr,
            device,
            config.train.seed,
            config.data.hflip,
            progress and main,
        )
        if main:
            logger.info("backbone pre-trained on %d crops: %s", len(crops.labels), report)
            log({"step": 0, **{f"pretrain_{k}": v for k, v in report.items()}})
    optimizer = build_optimizer(step_module, model.backbone, config.train)
    scheduler = build_scheduler(optimizer, config.train)
    amp_dtype = amp_dtype_for(config, device)
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
        step_module.load_state_dict(state["train_step"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema"):
            ema.load_state_dict(state["ema"])
        position = Position(**state["position"])
        best = state.get("best", -1.0)
        set_rng_state(state["rng"])
        if main:
            logger.info("resumed from %s at step %d", resume_path, position.step)

    ddp = DistributedDataParallel(step_module, find_unused_parameters=True) if world > 1 else step_module
    target_tf, query_tf = build_transforms(config.data, train=True)
    test_data: SplitData | None = None

    def checkpoint(path_name: str | None = None) -> None:
        if not main:
            return
        state = {
            "model": model.state_dict(),
            "train_step": step_module.state_dict(),
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
        if path_name:
            save_checkpoint(state, out / path_name)

    def evaluate_now() -> dict:
        nonlocal test_data, best
        test_data = test_data or build_split_data(config.data, "test")
        eval_model = ema.module if ema is not None else model
        result = evaluate_model(eval_model, postprocessor, config, test_data, device, progress)
        if main:
            log({"step": position.step, **{k: v for k, v in result.items() if isinstance(v, float)}})
            if result["unseen_ap50"] > best:
                best = result["unseen_ap50"]
                checkpoint("best.pth")
        return result

    start_time, images = time.perf_counter(), 0
    bar = tqdm(
        total=config.train.max_steps,
        initial=position.step,
        disable=not progress or not main,
        desc=f"train {out.name}",
        dynamic_ncols=True,
    )
    micro, stop = 0, False
    while position.step < config.train.max_steps and not stop:
        dataset = EpisodeDataset(train_data.data, sampler.epoch(position.epoch), target_tf, query_tf, config.train.seed)
        batches = _batches(len(dataset), config.train.batch_size, world, rank, position.batch)
        loader = DataLoader(
            dataset,
            batch_sampler=batches,
            num_workers=config.data.num_workers,
            collate_fn=partial(collate, size_divisor=config.data.size_divisor),
            persistent_workers=False,
        )
        for batch in loader:
            batch = batch.to(device)
            local_boxes = sum(len(t["boxes"]) for t in batch.targets)
            num_boxes = max(distributed.all_reduce_mean(float(local_boxes), device), 1.0)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                losses = ddp(batch, num_boxes)
            loss = losses["loss"]
            if not torch.isfinite(loss):
                _stop_non_finite(out, position, losses, batch, model, main)
            scaler.scale(loss / config.train.grad_accum).backward()
            micro += 1
            position.batch += 1
            images += len(batch) * world
            if micro % config.train.grad_accum:
                continue
            if config.train.clip_grad_norm > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(step_module.parameters(), config.train.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            position.step += 1
            elapsed = time.perf_counter() - start_time
            lr = optimizer.param_groups[-1]["lr"]
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}", img_s=f"{images / elapsed:.1f}")
            if main and position.step % config.train.log_every == 0:
                terms = {k: round(v.item(), 4) for k, v in losses.items() if "_aux" not in k and "one2many" not in k}
                log(
                    {
                        "step": position.step,
                        "epoch": position.epoch,
                        "lr": lr,
                        "images_per_s": round(images / elapsed, 2),
                        **terms,
                    },
                )
            if position.step % config.train.checkpoint_every == 0:
                checkpoint()
            if config.train.eval_every > 0 and position.step % config.train.eval_every == 0:
                evaluate_now()
            if position.step >= config.train.max_steps:
                break
            if config.train.max_minutes and (time.perf_counter() - run_start) / 60 >= config.train.max_minutes:
                stop = True
                break
        else:
            position.epoch, position.batch = position.epoch + 1, 0
    bar.close()
    checkpoint()
    result = evaluate_now() if config.train.eval_every >= 0 else {}
    distributed.barrier()
    fingerprint = float(sum(p.detach().double().sum() for p in step_module.parameters()))
    summary = {
        "output_dir": str(out),
        "steps": position.step,
        "epochs": position.epoch,
        "parameter_fingerprint": fingerprint,
        "minutes": round((time.perf_counter() - run_start) / 60, 2),
        "images_per_s": round(images / max(time.perf_counter() - start_time, 1e-9), 2),
        "seen_ap50": result.get("seen_ap50"),
        "unseen_ap50": result.get("unseen_ap50"),
    }
    # every rank writes its own summary: identical fingerprints show that the replicas stayed in sync
    (out / ("summary.json" if main else f"summary_rank{rank}.json")).write_text(json.dumps(summary, indent=1))
    return summary


class MetricsLog:
    """Appends rows to ``metrics.jsonl``; with ``tensorboard`` also writes scalars for TensorBoard."""

    def __init__(self, out: Path, tensorboard: bool = False) -> None:
        self.path, self.writer = out / "metrics.jsonl", None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:
                raise RuntimeError("train.tensorboard needs tensorboard: pip install tensorboard") from error
            self.writer = SummaryWriter(str(out / "tensorboard"))

    def __call__(self, row: dict) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, int | float):
                    self.writer.add_scalar(key, value, row["step"])
            self.writer.flush()


def _stop_non_finite(out: Path, position: Position, losses: dict, batch: Batch, model: IADETR, main: bool) -> None:
    terms = {k: float(v) for k, v in losses.items()}
    bad = [k for k, v in terms.items() if not math.isfinite(v)]
    if main:
        save_checkpoint(
            {
                "model": model.state_dict(),
                "config": {},
                "losses": terms,
                "batch_meta": [{k: v for k, v in m.items() if isinstance(v, int | float | bool)} for m in batch.meta],
            },
            out / f"nonfinite_step{position.step:07d}.pth",
        )
    raise FloatingPointError(
        f"non-finite loss at step {position.step} (terms {bad}; all terms: {terms}). The weights before this step "
        f"and the batch's image ids are in {out}/nonfinite_step{position.step:07d}.pth; the last good checkpoint is "
        f"{out}/last.pth. Lower train.lr or check the batch's boxes."
    )


__all__ = ["CheckpointError", "train"]
