"""Find the query's object in target images.

    python tools/infer.py --checkpoint best.pth --query mug.jpg --query-box 10,20,200,240 \\
        --target photos/ --out outputs/infer

Writes ``detections.json`` (each image's file name and size, and its detections as COCO-style rows) and one
picture per target with the boxes and scores drawn and the query exemplar inset. Unreadable targets are
skipped and listed at the end.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from ..data.images import load_image
from ..data.transforms import crop_box
from ..inference.batch import find_targets, predict_images
from ..inference.predictor import Predictor, check_query_box
from ..visualize import draw_detections, save_rgb
from .common import command


def parse_box(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) != 4:
        raise ValueError(f"--query-box {text!r} must be X1,Y1,X2,Y2 (four numbers)")
    return tuple(float(v) for v in parts)


@command()
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--query", required=True, help="query image")
    parser.add_argument("--query-box", help="X1,Y1,X2,Y2 of the object in the query image (default: whole image)")
    parser.add_argument("--target", required=True, help="an image, a folder or a glob pattern")
    parser.add_argument("--out", default="outputs/infer")
    parser.add_argument("--score-threshold", type=float, default=0.3)
    parser.add_argument("--device", default="auto", help="auto (GPU if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--nms-iou", type=float, help="suppress duplicates above this IoU (default: the checkpoint's)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (pays over many targets)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, args.nms_iou, args.batch_size, args.compile)
    query_image = load_image(args.query)
    box = parse_box(args.query_box)
    if box is not None:
        box = check_query_box(box, query_image.shape[1], query_image.shape[0])
    patch = crop_box(query_image, box) if box else query_image
    paths = find_targets(args.target)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images, rows, bad = [], [], []
    results = predict_images(predictor, query_image, box, paths, args.batch_size, args.score_threshold)
    for result in tqdm(results, total=len(paths), desc="infer", disable=args.no_progress):
        if result.error is not None:
            bad.append(result.error)
            continue
        image_id, (height, width) = len(images) + 1, result.image.shape[:2]
        images.append({"id": image_id, "file_name": str(result.path), "width": width, "height": height})
        det = result.detections
        for (x1, y1, x2, y2), score in zip(det["boxes"].tolist(), det["scores"].tolist()):
            row = {"image_id": image_id, "file_name": str(result.path), "category_id": 1, "score": score}
            rows.append({**row, "bbox": [x1, y1, x2 - x1, y2 - y1]})
        picture = draw_detections(result.image, det["boxes"], det["scores"], query=patch)
        save_rgb(out / f"{result.path.stem}.png", picture)
    body = {"query": args.query, "query_box": box, "images": images, "detections": rows, "unreadable": bad}
    (out / "detections.json").write_text(json.dumps(body, indent=1))
    print(
        f"{len(images)} images, {len(rows)} detections >= {args.score_threshold}; "
        f"wrote {args.out}/detections.json and one picture per image"
    )
    for line in bad:
        print(f"  unreadable, skipped: {line}")
    return body


if __name__ == "__main__":
    raise SystemExit(main())
