"""Encode a folder of target images once, for searching with any number of queries (tools/search.py).

    python tools/index.py --checkpoint outputs/demo/train/last.pth --images photos/ --out outputs/index

Run it again on the same --out after adding, changing or removing images: only new and changed files are encoded,
removed ones leave the index. An index belongs to one checkpoint and its preprocessing; another checkpoint is
refused (build a new index in another folder).
"""

from __future__ import annotations

import argparse
import json

from ..inference.batch import find_targets
from ..inference.predictor import Predictor
from ..inference.search import TargetIndex
from .common import command


@command()
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--images", required=True, help="a folder, an image or a glob pattern")
    parser.add_argument("--out", required=True, help="the index folder (created, or brought up to date)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=8, help="images read per step")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    images = find_targets(args.images)
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device)
    report = TargetIndex.update(args.out, predictor, args.checkpoint, images, args.batch_size, not args.no_progress)
    summary = {
        "index": args.out,
        "images": report.images,
        "encoded": report.encoded,
        "removed": report.removed,
        "unreadable": report.unreadable,
        "seconds": round(report.seconds, 2),
        "megabytes": round(report.bytes_on_disk / 2**20, 2),
    }
    print(json.dumps(summary))
    for line in report.unreadable:
        print(f"  unreadable, skipped: {line}")
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
