"""Evaluate one-shot AP50 (and AP, AP75) on seen and unseen classes with automatic repeats.

    python tools/eval.py --config configs/tiny_synthetic.yaml --checkpoint outputs/tiny/last.pth
    python tools/eval.py --config configs/tiny_synthetic.yaml --baseline template
    python tools/eval.py --config configs/coco/split1.yaml --checkpoint s1.pth s2.pth s3.pth s4.pth --out four/
    python tools/eval.py --config configs/tiny_synthetic.yaml --checkpoint outputs/tiny/last.pth --protocol both

With several checkpoints (one per split, each knowing its split), the four-split table is written too.
Under torchrun the episodes are sharded over processes and gathered on rank 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..config import load_config
from ..data.build import build_split_data
from ..engine import distributed
from ..engine.checkpoint import load_checkpoint
from ..engine.evaluate import evaluate_checkpoint, evaluate_template
from ..evaluation.report import console_table, four_split_table, write_reports
from ..evaluation.template_baseline import TemplateMatcher
from .common import command, dry_run


@command()
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--checkpoint", nargs="+", default=[])
    parser.add_argument("--baseline", choices=["template"], help="evaluate the template-matching baseline instead")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--split", type=int)
    parser.add_argument("--absent", action="store_true", help="extended protocol: also query absent classes")
    parser.add_argument("--max-images", type=int)
    parser.add_argument(
        "--protocol",
        choices=["coco", "per-image", "both"],
        help="coco: pycocotools AP over the test set (CoAE, BHRL; the default); per-image: the official IA-DETR's "
        "AP50 per (image, class) averaged over images; both: the two from one pass",
    )
    parser.add_argument(
        "--queries", choices=["standard", "official"], help="query choice: standard (default) or the official code's"
    )
    parser.add_argument(
        "--errors",
        action="store_true",
        help="also sort every detection into hit, duplicate, confusion (another class's object), loose or background",
    )
    parser.add_argument("--out", default="outputs/eval")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--dry-run", action="store_true", help="validate the config and overrides, print it resolved, and stop"
    )
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    args = parser.parse_args(argv)
    # "--checkpoint a.pth key=value" hands the override to --checkpoint: give it back
    overrides = [c for c in args.checkpoint if "=" in c and not Path(c).exists()] + list(args.overrides)
    args.checkpoint = [c for c in args.checkpoint if c not in overrides]
    overrides += [f"eval.repeats={args.repeats}"] if args.repeats else []
    overrides += ["eval.absent=true"] if args.absent else []
    overrides += [f"eval.max_images={args.max_images}"] if args.max_images is not None else []
    overrides += [f"data.split={args.split}"] if args.split else []
    overrides += [f"eval.protocol={args.protocol}"] if args.protocol else []
    overrides += [f"eval.queries={args.queries}"] if args.queries else []
    overrides += ["eval.errors=true"] if args.errors else []
    if not args.checkpoint and not args.baseline:
        parser.error("give --checkpoint FILE [FILE ...] or --baseline template")
    base = load_config(args.config, overrides)
    if args.dry_run:
        return dry_run(base)
    device = distributed.init_from_environment(base.train.device)
    runs = [(None, base)] if args.baseline else []
    for path in args.checkpoint:
        split = load_checkpoint(path)["config"]["data"]["split"] if len(args.checkpoint) > 1 else base.data.split
        runs.append((path, dataclasses.replace(base, data=dataclasses.replace(base.data, split=split))))
    results: dict[int, dict] = {}
    for path, config in runs:
        if path is None:
            test = build_split_data(config.data, "test")
            result = evaluate_template(TemplateMatcher(), config, test, not args.no_progress)
        else:
            result = evaluate_checkpoint(config, path, device, not args.no_progress)
        results[config.data.split] = result
        if distributed.is_main():
            out = Path(args.out) / (f"split{config.data.split}" if len(runs) > 1 else "")
            settings = {
                "config": args.config,
                "checkpoint": path or f"baseline: {args.baseline}",
                "dataset": config.data.dataset,
                "split": config.data.split,
                "repeats": config.eval.repeats,
                "absent": config.eval.absent,
                "max_images": config.eval.max_images,
                "protocol": config.eval.protocol,
                "queries": config.eval.queries,
                "errors": config.eval.errors,
                "test_size": config.data.test_size,
            }
            write_reports(result, out, settings)
            print(f"split {config.data.split} ({path or args.baseline}), {result['episodes']} episodes, ", end="")
            print(f"{1000 * result['seconds_per_episode']:.1f} ms/episode\n{console_table(result)}")
    if len(results) > 1 and distributed.is_main():
        table = four_split_table(results, base.data.dataset)
        (Path(args.out) / "splits.md").write_text(table + "\n")
        print(table)
    if distributed.is_main():
        keys = ("protocol", "seen_ap50", "unseen_ap50", "seen_ap50_std", "unseen_ap50_std")

        def summary(r: dict) -> dict:
            nested = {"per_image": summary(r["per_image"])} if isinstance(r.get("per_image"), dict) else {}
            return {**{k: r[k] for k in keys if k in r}, **nested}

        print(json.dumps({split: summary(r) for split, r in results.items()}))
    return results


if __name__ == "__main__":
    raise SystemExit(main())
