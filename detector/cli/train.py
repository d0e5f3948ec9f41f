"""Train IA-DETR: python tools/train.py --config FILE [key.sub=value ...] [--resume auto|PATH].

Under torchrun (``torchrun --nproc_per_node N tools/train.py ...``) each process trains on its shard of
every batch with DistributedDataParallel (nccl on GPU, gloo on CPU); rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import argparse
import json
import logging

from ..config import load_config
from ..engine import distributed
from ..engine.trainer import train
from .common import command, dry_run


@command()
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--resume", help="'auto' (the run folder's last.pth, if any) or a checkpoint path")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--dry-run", action="store_true", help="validate the config and overrides, print it resolved, and stop"
    )
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(args.config, args.overrides)
    if args.dry_run:
        return dry_run(config)
    summary = train(config, resume=args.resume, progress=not args.no_progress)
    if distributed.is_main():
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
