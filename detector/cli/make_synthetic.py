"""Generate the embedded one-shot benchmark (or the second generated family, sprites) and print its statistics."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..data.coco import load_coco
from ..data.splits import index_rule_split
from ..synthetic.benchmark import GLYPHS, SIZES, generate
from ..synthetic.preview import benchmark_preview
from ..synthetic.sprites import SPRITES
from .common import command

FAMILIES = {family.name: family for family in (GLYPHS, SPRITES)}
DEFAULT_OUT = {"glyphs": "datasets/synthetic", "sprites": "datasets/sprites"}


@command()
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--family",
        choices=sorted(FAMILIES),
        default="glyphs",
        help="glyphs: the embedded benchmark (data.dataset: synthetic); sprites: a second data set of made-up "
        "objects for checking a recipe elsewhere (data.dataset: custom, see configs/sprites.yaml)",
    )
    parser.add_argument("--out", help="output folder (default: datasets/synthetic or datasets/sprites)")
    parser.add_argument("--size", choices=sorted(SIZES), default="default")
    parser.add_argument("--small", action="store_const", const="small", dest="size", help="same as --size small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--preview", help="also save a picture of a few test images and a query exemplar")
    args = parser.parse_args(argv)
    family = FAMILIES[args.family]
    out = args.out or DEFAULT_OUT[family.name]
    summary = generate(out, args.size, args.seed, args.workers, progress=True, family=family)
    for subset in ("train", "test"):
        data = load_coco(Path(out) / "annotations" / f"{subset}.json", Path(out) / subset)
        stats = data.statistics()
        per_class = stats.pop("boxes_per_class")
        stats["boxes_per_class_min_max"] = [min(per_class.values()), max(per_class.values())]
        stats["images_without_class_median"] = sorted(
            sum(c.id not in r.classes() for r in data.images) for c in data.categories
        )[len(family.classes) // 2]
        summary[subset].update(stats)
    summary["splits"] = {
        k: {"seen": len(s.seen), "unseen": len(s.unseen)}
        for k, s in ((k, index_rule_split(list(family.classes), k)) for k in (1, 2, 3, 4))
    }
    if args.preview:
        benchmark_preview(out, args.preview)
        summary["preview"] = args.preview
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
