"""Hooks called by :func:`~detector.engine.loop.train_one_epoch` after every optimizer step.

Each is a small callable ``hook(report) -> stop?``: the progress bar and metrics log, periodic checkpoints,
periodic evaluation, and the wall-time limit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from .loop import StepReport


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


class ProgressHook:
    """The progress bar (loss, lr, images/s) and, every ``log_every`` steps, a row of the final layer's loss
    terms in ``log`` (None on the processes that do not log)."""

    def __init__(self, bar: tqdm, log: MetricsLog | None, log_every: int) -> None:
        self.bar, self.log, self.log_every = bar, log, log_every

    def __call__(self, report: StepReport) -> None:
        losses, position = report.losses, report.position
        self.bar.update(1)
        self.bar.set_postfix(
            loss=f"{losses['loss'].item():.3f}", lr=f"{report.lr:.2e}", img_s=f"{report.images_per_s:.1f}"
        )
        if self.log is not None and position.step % self.log_every == 0:
            terms = {k: round(v.item(), 4) for k, v in losses.items() if "_aux" not in k and "one2many" not in k}
            self.log(
                {
                    "step": position.step,
                    "epoch": position.epoch,
                    "lr": report.lr,
                    "images_per_s": round(report.images_per_s, 2),
                    **terms,
                }
            )


class EveryNSteps:
    """Calls ``action()`` every ``every`` optimizer steps (``every <= 0``: never)."""

    def __init__(self, every: int, action: Callable[[], object]) -> None:
        self.every, self.action = every, action

    def __call__(self, report: StepReport) -> None:
        if self.every > 0 and report.position.step % self.every == 0:
            self.action()


class TimeLimit:
    """Stops the run once ``minutes`` of wall time have passed since ``start`` (0: no limit)."""

    def __init__(self, minutes: float, start: float) -> None:
        self.minutes, self.start = minutes, start

    def __call__(self, report: StepReport) -> bool:
        return bool(self.minutes) and (time.perf_counter() - self.start) / 60 >= self.minutes
