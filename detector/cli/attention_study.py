"""The paper's synthetic experiments and noise analysis: table, curves, bias picture, theory plots."""

from __future__ import annotations

import argparse
import json

from ..study.experiment import TASKS, StudySettings, run_study
from .common import command


@command()
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="outputs/attention_study")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny settings, for tests (seconds)")
    args = parser.parse_args(argv)
    settings = StudySettings(
        tasks=tuple(args.tasks.split(",")), seeds=args.seeds, epochs=args.epochs, workers=args.workers
    )
    trials = 4000
    if args.quick:
        settings = StudySettings(
            tasks=settings.tasks, seeds=2, epochs=2, train_size=100, test_size=50, layers=2, dim=32, workers=1
        )
        trials = 200
    report = run_study(settings, args.out, theory_trials=trials)
    print((__import__("pathlib").Path(args.out) / "results.md").read_text())
    print(json.dumps({"out": args.out, "minutes": report["minutes"]}))
    return report


if __name__ == "__main__":
    raise SystemExit(main())
