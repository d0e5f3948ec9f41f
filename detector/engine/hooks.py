"""Hooks called by :func:`~detector.engine.loop.train_one_epoch` after every optimizer step.

Each is a small callable ``hook(report) -> stop?``: the progress bar and metrics log (without a bar, a log line a
minute), periodic checkpoints, periodic evaluation, the run's clock, the wall-time limit and the lr drop by time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from .loop import Position, StepReport


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


class ProgressLines:
    """Without a progress bar (``--no-progress``: a batch job's log), a line through ``say`` at most every
    ``interval`` seconds of the run's wall time: the step out of ``max_steps``, the loss, the lr, images/s, the
    minutes passed and an estimate of those left, from the steps per second since the last line (or, where the
    time cap ``max_minutes`` comes first, the time to the cap). Put it after :class:`RunClock`."""

    def __init__(
        self,
        say: Callable[[str], None],
        start: Position,
        max_steps: int,
        max_minutes: float = 0.0,
        interval: float = 60.0,
    ) -> None:
        self.say, self.max_steps, self.cap, self.interval = say, max_steps, max_minutes * 60, interval
        self.last_step, self.last_seconds = start.step, start.seconds

    def __call__(self, report: StepReport) -> None:
        position = report.position
        passed = position.seconds - self.last_seconds
        if passed < self.interval or position.step <= self.last_step:
            return
        left = (self.max_steps - position.step) * passed / (position.step - self.last_step)
        if self.cap:
            left = min(left, max(self.cap - position.seconds, 0.0))
        self.last_step, self.last_seconds = position.step, position.seconds
        self.say(
            f"step {position.step:,} / {self.max_steps:,} ({100 * position.step / self.max_steps:.0f}%): "
            f"loss {report.losses['loss'].item():.4f}, lr {report.lr:.2e}, {report.images_per_s:.1f} images/s; "
            f"{position.seconds / 60:.1f} min in, about {left / 60:.1f} min left"
        )


class EveryNSteps:
    """Calls ``action()`` every ``every`` optimizer steps (``every <= 0``: never)."""

    def __init__(self, every: int, action: Callable[[], object]) -> None:
        self.every, self.action = every, action

    def __call__(self, report: StepReport) -> None:
        if self.every > 0 and report.position.step % self.every == 0:
            self.action()


class RunClock:
    """Keeps ``position.seconds``, the run's wall time: the seconds it had when this process took it up
    (``position.seconds`` then) plus those since ``start``. Under torchrun every process takes the mean of the
    processes' clocks, so that the decisions taken on it (stop, drop the lr) come at the same step on all of them.
    Put it before the hooks that read the clock."""

    def __init__(
        self,
        position_seconds: float,
        start: float,
        synchronise: Callable[[float], float] | None = None,
        now: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.base, self.start, self.synchronise, self.now = position_seconds, start, synchronise, now

    def __call__(self, report: StepReport) -> None:
        elapsed = self.now() - self.start
        report.position.seconds = self.base + (self.synchronise(elapsed) if self.synchronise else elapsed)


class TimeLimit:
    """Stops the run once its wall time (``position.seconds``, kept by :class:`RunClock`, over all its resumes)
    reaches ``minutes`` (0: no limit)."""

    def __init__(self, minutes: float) -> None:
        self.minutes = minutes

    def __call__(self, report: StepReport) -> bool:
        return bool(self.minutes) and report.position.seconds >= self.minutes * 60


class TimeDecay:
    """Calls ``drop()`` once the run's wall time reaches ``fraction`` of ``minutes`` (``train.lr_drop_by_time``:
    the lr drop comes at ``lr_drop_at`` of the time cap if that comes before ``lr_drop_at`` of the steps, so a
    run that the cap stops has still annealed). ``drop()`` returns the step the drop was moved to, or None when it
    comes by then anyway; ``log`` hears about a move."""

    def __init__(
        self,
        minutes: float,
        fraction: float,
        drop: Callable[[], int | None],
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.seconds, self.drop, self.log, self.done = minutes * fraction * 60, drop, log, False

    def __call__(self, report: StepReport) -> None:
        if self.done or not self.seconds or report.position.seconds < self.seconds:
            return
        self.done = True
        step = self.drop()
        if step is not None and self.log is not None:
            self.log(
                f"lr x0.1 from step {step} (train.lr_drop_by_time): "
                f"{report.position.seconds / 60:.1f} of the {self.seconds / 60:.1f} minutes passed"
            )
