"""Print which classes a one-shot split holds out: {"seen": [...], "unseen": [...]} as JSON."""

from __future__ import annotations

import argparse
import json

from ..data.coco import load_coco
from ..data.splits import coco_split, explicit_split, index_rule_split, voc_split
from ..synthetic.benchmark import CLASSES
from .common import command


@command()
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", choices=["coco", "voc", "synthetic", "custom"])
    parser.add_argument("--split", type=int, default=1, help="1..4 (COCO and synthetic; VOC has one split)")
    parser.add_argument("--annotations", help="custom: a COCO-format JSON file (for its class names)")
    parser.add_argument("--unseen", default="", help="custom: comma-separated unseen class names")
    args = parser.parse_args(argv)
    if args.dataset == "coco":
        split = coco_split(args.split)
    elif args.dataset == "voc":
        split = voc_split()
    elif args.dataset == "synthetic":
        split = index_rule_split(CLASSES, args.split)
    else:
        if not args.annotations:
            parser.error("custom needs --annotations FILE (and --unseen a,b,c)")
        names = load_coco(args.annotations, ".").class_names()
        split = explicit_split(names, [n.strip() for n in args.unseen.split(",") if n.strip()])
    result = split.to_dict()
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    raise SystemExit(main())
