import pytest
import torch

from detector.engine.hooks import ProgressLines, RunClock, TimeDecay, TimeLimit
from detector.engine.loop import Position, StepReport


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _report(position: Position) -> StepReport:
    return StepReport(position, {"loss": torch.tensor(1.0)}, 1e-4, 1.0)


def test_the_clock_adds_this_process_time_to_the_run_time_it_resumed_with():
    """A run resumed with 120 s behind it, 30 s into this process: 150 s; with a synchronising function the
    processes' mean elapsed time is what counts (here a stand-in that halves it)."""
    now, position = FakeClock(), Position(step=5, seconds=120.0)
    clock = RunClock(position.seconds, start=now(), now=now)
    now.t += 30
    clock(_report(position))
    assert position.seconds == pytest.approx(150.0)
    RunClock(120.0, start=70.0, synchronise=lambda elapsed: elapsed / 2, now=now)(_report(position))
    assert position.seconds == pytest.approx(120.0 + (130.0 - 70.0) / 2)


def test_the_time_limit_counts_the_run_time_over_its_resumes():
    limit = TimeLimit(minutes=2)
    assert not limit(_report(Position(seconds=119.9)))
    assert limit(_report(Position(seconds=120.0)))
    assert not TimeLimit(minutes=0)(_report(Position(seconds=1e9)))  # 0: no limit


def test_the_lr_drop_by_time_fires_once_at_its_fraction_of_the_cap():
    """A 10-minute cap and lr_drop_at 0.8: nothing before 480 s, one drop at the first step past it (logged with
    the step it moved to), never again; a drop that comes by steps anyway is not logged."""
    calls, logged = [], []

    def drop() -> int:
        calls.append(True)
        return 9

    decay = TimeDecay(minutes=10, fraction=0.8, drop=drop, log=logged.append)
    decay(_report(Position(step=7, seconds=479.0)))
    assert calls == [] and logged == []
    decay(_report(Position(step=8, seconds=481.0)))
    decay(_report(Position(step=9, seconds=900.0)))
    assert calls == [True] and len(logged) == 1 and "from step 9" in logged[0]
    quiet = []
    TimeDecay(10, 0.8, drop=lambda: None, log=quiet.append)(_report(Position(step=9, seconds=500.0)))
    assert quiet == []
    TimeDecay(0, 0.8, drop=lambda: pytest.fail("no cap, no drop by time"))(_report(Position(seconds=1e9)))


def test_without_a_bar_a_line_comes_each_interval_with_the_time_left_from_the_recent_pace():
    """Started at step 100 with 50 s behind it, 1,000 steps, one step each 20 s: nothing until 60 s have passed
    (step 103, 110 s), then a line whose estimate is the 897 steps left at 3 steps a minute, 299 minutes; the next
    line comes 60 s after that one, not after the first step; a 30-minute cap shortens the estimate to the cap."""
    lines = []
    hook = ProgressLines(lines.append, Position(step=100, seconds=50.0), max_steps=1000, interval=60.0)
    for step in range(101, 107):
        hook(StepReport(Position(step=step, seconds=50.0 + 20 * (step - 100)), {"loss": torch.tensor(0.5)}, 1e-4, 8.0))
    assert len(lines) == 2
    assert lines[0].startswith("step 103 / 1,000 (10%): loss 0.5000, lr 1.00e-04, 8.0 images/s;")
    assert lines[0].endswith("1.8 min in, about 299.0 min left")
    assert lines[1].startswith("step 106 / 1,000 (11%)") and lines[1].endswith("about 298.0 min left")
    capped = []
    hook = ProgressLines(capped.append, Position(step=100, seconds=50.0), 1000, max_minutes=30, interval=60.0)
    hook(StepReport(Position(step=103, seconds=110.0), {"loss": torch.tensor(0.5)}, 1e-4, 8.0))
    assert capped[0].endswith("about 28.2 min left")  # (1800 - 110) s
