"""The main job, end to end on the embedded benchmark, on a fresh machine:

generate the benchmark, train the CPU-tiny IA-DETR on the seen classes of split 1, evaluate seen and unseen
AP50 (standard protocol, repeats), run inference on one query/target pair and save the picture. The last
line printed is one JSON object with ``seen_ap50``, ``unseen_ap50`` (percent) and ``minutes``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from ..config import Config, load_config
from ..data.build import build_split_data
from ..data.episodes import evaluation_queries
from ..data.images import load_image
from ..data.transforms import crop_box
from ..engine.evaluate import evaluate_checkpoint
from ..engine.trainer import train
from ..evaluation.report import console_table, write_reports
from ..inference.predictor import Predictor
from ..synthetic.benchmark import generate
from ..visualize import draw_detections, save_rgb
from .common import command


@command()
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/demo")
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"))
    parser.add_argument("--data-root", default="datasets", help="where the benchmark is (or will be) generated")
    parser.add_argument("--minutes", type=float, help="training time budget (default: the config's)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    start = time.perf_counter()
    out = Path(args.out)
    root = Path(args.data_root)
    if not (root / "synthetic" / "annotations" / "test.json").is_file():
        print(f"[1/4] generating the embedded benchmark in {root / 'synthetic'}")
        generate(root / "synthetic", "default", seed=0, workers=2, progress=True)
    else:
        print(f"[1/4] using the embedded benchmark in {root / 'synthetic'}")
    overrides = [f"data.root={root}", f"train.output_dir={out / 'train'}", *args.overrides]
    overrides += [f"train.max_minutes={args.minutes}"] if args.minutes else []
    config = load_config(args.config, overrides)
    print(f"[2/4] training {args.config} (split {config.data.split}, at most {config.train.max_minutes} min)")
    summary = train(config, resume="auto", progress=not args.no_progress)
    print("[3/4] evaluation (standard protocol)")
    result = _final_eval(out, config)
    print(console_table(result))
    print("[4/4] inference on one query/target pair")
    picture = _infer_pair(out, config)
    report = {
        "out": str(out),
        "checkpoint": str(out / "train" / "last.pth"),
        "eval_report": str(out / "eval"),
        "picture": str(picture),
        "train_steps": summary["steps"],
        "train_minutes": summary["minutes"],
        "images_per_s": summary["images_per_s"],
        **{k: round(result[k], 2) for k in ("seen_ap50", "unseen_ap50", "seen_ap50_std", "unseen_ap50_std")},
        "minutes": round((time.perf_counter() - start) / 60, 2),
    }
    print(
        f"the web page on this checkpoint (pip install -e '.[app]' first): python tools/app.py --checkpoint "
        f"{out / 'train' / 'last.pth'}"
    )
    print(json.dumps(report))
    return report


def _final_eval(out: Path, config: Config) -> dict:
    checkpoint = out / "train" / "last.pth"
    result = evaluate_checkpoint(config, checkpoint, torch.device("cpu"), progress=False)
    settings = {"checkpoint": str(checkpoint), "split": config.data.split, "repeats": config.eval.repeats}
    write_reports(result, out / "eval", {**settings, "max_images": config.eval.max_images})
    return result


PICTURE_THRESHOLD = 0.25


def _infer_pair(out: Path, config: Config) -> Path:
    """The first test image holding at least two objects of one unseen class (the pair is chosen by the
    ground truth alone, before any prediction), with a query of that class from another image."""
    test = build_split_data(config.data, "test")
    unseen = sorted(test.data.category(n).id for n in test.split.unseen)
    record, category, query = next(
        (r, c, q[0])
        for r in test.data.images
        for c in unseen
        if int((r.labels == c).sum()) >= 2
        and len(r.boxes) >= 3
        and (q := evaluation_queries(test.pool, c, r.image_id, 1))
    )
    predictor = Predictor.from_checkpoint(out / "train" / "last.pth", device="cpu")
    result = predictor.predict(
        str(query.path), str(record.path), query_box=query.box, score_threshold=PICTURE_THRESHOLD
    )
    truth = record.boxes[record.labels == category]
    patch = crop_box(load_image(query.path), query.box)
    path = out / "inference.png"
    save_rgb(
        path, draw_detections(load_image(record.path), result["boxes"], result["scores"], patch, ground_truth=truth)
    )
    print(
        f"  query: {test.data.category(category).name} (unseen) from {query.path.name}; target {record.path.name} "
        f"with {len(truth)} of them (green); {len(result['boxes'])} detections >= {PICTURE_THRESHOLD} (red)"
    )
    return path


if __name__ == "__main__":
    raise SystemExit(main())
