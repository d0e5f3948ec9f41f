"""The step loop: ``train_one_epoch(model, criterion, loader, optimizer, ...)`` with explicit arguments.

One call runs the batches of one loader (an epoch, or its rest after a resume), counting optimizer steps in
``position`` and calling each hook after every optimizer step; a hook that returns True stops the loop.
Mixed precision (CUDA autocast), gradient accumulation and clipping, EMA, and the non-finite loss guard live
here; what the hooks do (log, checkpoint, evaluate, stop at a time limit) is in :mod:`.hooks`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.dataset import Batch
from ..models.criterion import SetCriterion
from . import distributed
from .checkpoint import save_checkpoint


@dataclass
class Position:
    """Where training is: optimizer ``step``, ``epoch``, the next ``batch`` of the epoch, and the run's wall
    ``seconds`` so far (over all its processes, when it was interrupted and resumed)."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    seconds: float = 0.0


@dataclass
class StepReport:
    """What a hook sees after an optimizer step."""

    position: Position
    losses: dict[str, torch.Tensor]
    lr: float
    images_per_s: float


Hook = Callable[[StepReport], bool | None]


def amp_dtype_for(amp: str, device: torch.device, native_bf16: bool | None = None) -> torch.dtype | None:
    """The autocast dtype of ``train.amp`` on ``device``, None for full precision. On CUDA ``auto`` is bf16
    where supported, else fp16. Off CUDA (CPU autocast runs convolutions and matrix products in bf16) ``auto`` is
    bf16 on a CPU with bf16 instructions and full precision elsewhere: emulated bf16 is several times slower than
    fp32 (9x eager, 10x compiled on an AVX2-only EPYC; README). ``native_bf16``: whether this CPU has them; None
    reads ``/proc/cpuinfo`` (:func:`cpu_has_native_bf16`; unreadable counts as no). An explicit ``bf16``
    autocasts on any CPU."""
    if amp == "off":
        return None
    if device.type != "cuda":
        if amp == "auto":
            native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
            return torch.bfloat16 if native else None
        return torch.bfloat16 if amp == "bf16" else None
    if amp == "fp16" or (amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool | None:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX-BF16 in Linux's CPU flags); None where
    that cannot be read (not Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags = {word for line in text.splitlines() if line.startswith("flags") for word in line.split()}
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def compute_losses(
    model: nn.Module, criterion: SetCriterion, batch: Batch, num_boxes: float | None = None
) -> dict[str, torch.Tensor]:
    """Forward ``batch`` through ``model`` (training mode) and score it with ``criterion``. Non-finite outputs
    raise FloatingPointError before the matcher sees them (its assignment would fail on them, naming nothing)."""
    outputs = model(
        batch.target_images,
        batch.target_masks,
        batch.query_images,
        batch.query_masks,
        batch.target_sizes(),
        class_boxes=[t["class_boxes"] for t in batch.targets],
        target_index=batch.target_index,
    )
    if not (torch.isfinite(outputs.logits).all() and torch.isfinite(outputs.boxes).all()):
        raise FloatingPointError("the model's outputs are not finite (its weights or this batch's images)")
    return criterion(outputs, batch.targets, num_boxes)


def train_one_epoch(
    model: nn.Module,
    criterion: SetCriterion,
    loader: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    position: Position,
    max_steps: int,
    amp_dtype: torch.dtype | None = None,
    grad_accum: int = 1,
    clip_grad_norm: float = 0.0,
    ema: torch.optim.swa_utils.AveragedModel | None = None,
    hooks: Sequence[Hook] = (),
    failure_dir: Path | None = None,
) -> bool:
    """Train on ``loader`` until it ends (returns False) or ``max_steps`` is reached or a hook stops the run
    (returns True). ``model`` may be wrapped in DistributedDataParallel; EMA averages the unwrapped model."""
    plain = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    start, images, micro = time.perf_counter(), 0, 0
    for batch in loader:
        batch = batch.to(device)
        local_boxes = sum(len(t["boxes"]) + len(t.get("object_boxes", ())) for t in batch.targets)
        num_boxes = max(distributed.all_reduce_mean(float(local_boxes), device), 1.0)
        try:
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                losses = compute_losses(model, criterion, batch, num_boxes)
        except FloatingPointError as error:
            stop_non_finite(position, {"outputs": float("nan")}, batch, plain, failure_dir, str(error))
        loss = losses["loss"]
        if not torch.isfinite(loss):
            stop_non_finite(position, losses, batch, plain, failure_dir)
        scaler.scale(loss / grad_accum).backward()
        micro += 1
        position.batch += 1
        images += len(batch) * distributed.world_size()
        if micro % grad_accum:
            continue
        scaler.unscale_(optimizer)
        norm = nn.utils.clip_grad_norm_(plain.parameters(), clip_grad_norm if clip_grad_norm > 0 else float("inf"))
        if not scaler.is_enabled() and not torch.isfinite(norm):  # (fp16's scaler skips such steps by itself)
            stop_non_finite(position, {**losses, "gradient_norm": norm}, batch, plain, failure_dir)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        if ema is not None:
            ema.update_parameters(plain)
        position.step += 1
        report = StepReport(
            position, losses, optimizer.param_groups[-1]["lr"], images / max(time.perf_counter() - start, 1e-9)
        )
        stop = False
        for hook in hooks:
            stop = bool(hook(report)) or stop
        if stop or position.step >= max_steps:
            return True
    return False


def stop_non_finite(
    position: Position, losses: dict, batch: Batch, model: nn.Module, failure_dir: Path | None, detail: str = ""
) -> None:
    """Raise FloatingPointError naming the step and the non-finite terms, before the step changes the weights
    (so no checkpoint ever holds them); with ``failure_dir``, the weights before the step and the batch's image
    ids are saved there first, for a look at what went wrong."""
    terms = {k: float(v) for k, v in losses.items()}
    bad = [k for k, v in terms.items() if not math.isfinite(v)] + ([detail] if detail else [])
    where = ""
    if failure_dir is not None and distributed.is_main():
        path = failure_dir / f"nonfinite_step{position.step:07d}.pth"
        meta = [{k: v for k, v in m.items() if isinstance(v, int | float | bool)} for m in batch.meta]
        save_checkpoint({"model": model.state_dict(), "config": {}, "losses": terms, "batch_meta": meta}, path)
        where = f" The weights before this step and the batch's image ids are in {path}; the last good checkpoint is "
        where += f"{failure_dir}/last.pth."
    raise FloatingPointError(
        f"non-finite loss at step {position.step} (terms {bad}; all terms: {terms}).{where} "
        f"Lower train.lr or check the batch's boxes."
    )
