"""The paper's synthetic experiments and noise analysis: table, curves, bias picture, theory plots."""

from __future__ import annotations

import argparse
import dataclasses
import json

from ..study.experiment import TASKS, StudySettings, run_study
from ..study.models import BLOCKS
from .common import command


@command()
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="outputs/attention_study")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--blocks", default=",".join((*BLOCKS, "zero-values")), help="zero-values: the floor control")
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument(
        "--value-positions",
        action="store_true",
        help="the first version's rule: values carry the key index's position code (any block can read a position)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny settings, for tests (seconds)")
    args = parser.parse_args(argv)
    settings = StudySettings(
        tasks=tuple(args.tasks.split(",")),
        blocks=tuple(args.blocks.split(",")),
        seeds=args.seeds,
        epochs=args.epochs,
        train_size=args.train_size,
        workers=args.workers,
        value_positions=args.value_positions,
    )
    trials = 4000
    if args.quick:
        settings = dataclasses.replace(
            settings, seeds=2, epochs=2, train_size=100, test_size=50, layers=2, dim=32, workers=1
        )
        trials = 200
    report = run_study(settings, args.out, theory_trials=trials)
    print((__import__("pathlib").Path(args.out) / "results.md").read_text())
    print(json.dumps({"out": args.out, "minutes": report["minutes"]}))
    return report


if __name__ == "__main__":
    raise SystemExit(main())
