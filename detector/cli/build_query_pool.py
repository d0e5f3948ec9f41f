"""Build a query (reference) pool from ground-truth boxes, or convert a list of (image, box) records.

Examples:
    python tools/build_query_pool.py --dataset synthetic --subset test --out pools/synthetic_test.json
    python tools/build_query_pool.py --dataset coco --subset test --detections dets.json \\
        --out pools/coco_val.json
    python tools/build_query_pool.py --dataset coco --subset test --records published.csv \\
        --image-root datasets/coco/val2017 --out pools/coco_val_published.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config import DataConfig
from ..data.catalog import load_dataset
from ..data.query_pool import QueryPool, read_records
from .common import command


@command()
def main(argv: list[str] | None = None) -> QueryPool:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=["synthetic", "coco", "voc", "custom"])
    parser.add_argument("--subset", default="test", choices=["train", "test"])
    parser.add_argument("--root", help="data root (default: $IA_DETR_DATA_ROOT or ./datasets)")
    parser.add_argument("--annotations", help="custom: COCO-format JSON")
    parser.add_argument("--images", help="custom: image folder")
    parser.add_argument("--min-size", type=float, default=16.0, help="minimum box side in pixels")
    parser.add_argument("--detections", help="COCO results JSON; keep only boxes a detection matches")
    parser.add_argument("--iou", type=float, default=0.5)
    parser.add_argument("--score", type=float, default=0.7)
    parser.add_argument("--records", help="convert (image, box) records (JSON list or CSV) instead")
    parser.add_argument("--image-root", help="with --records: folder the records' file names are relative to")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    config = DataConfig(
        dataset=args.dataset,
        root=args.root,
        **{f"{args.subset}_annotations": args.annotations, f"{args.subset}_images": args.images},
    )
    data = load_dataset(config, args.subset)
    if args.records:
        if not args.image_root:
            parser.error("--records needs --image-root")
        pool = QueryPool.from_records(read_records(args.records), data, args.image_root)
    else:
        detections = json.loads(Path(args.detections).read_text()) if args.detections else None
        pool = QueryPool.from_data(data, args.min_size, detections, args.iou, args.score)
    pool.save(args.out)
    counts = pool.counts()
    print(
        json.dumps(
            {
                "out": args.out,
                "queries": len(pool),
                "classes_without_queries": [n for n, c in counts.items() if c == 0],
                "per_class": counts,
            }
        )
    )
    return pool


if __name__ == "__main__":
    raise SystemExit(main())
