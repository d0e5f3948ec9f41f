"""Find the query's object in target images.

    python tools/infer.py --checkpoint best.pth --query mug.jpg --query-box 10,20,200,240 \\
        --target photos/ --out outputs/infer
    python tools/infer.py --checkpoint best.pth --query a.jpg b.jpg --query-box 10,20,200,240 whole ...   # k-shot
    python tools/infer.py --onnx outputs/export/ia_detr.onnx --query mug.jpg --target photos/   # onnxruntime

Writes ``detections.json`` in COCO results format (``image_id``, ``category_id`` 1, ``bbox`` ``[x, y, w, h]``,
``score``; ``pycocotools``' ``COCO.loadRes`` reads it), ``images.json`` beside it (the image ids with their file
names and sizes, as a COCO ``images`` list, and the query), and one picture per target with the boxes and scores
drawn and the query exemplar(s) beside it. Unreadable targets are skipped and listed at the end.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from ..data.images import load_image
from ..data.transforms import crop_box
from ..inference.batch import find_targets, picture_names, predict_images
from ..inference.onnx_runner import OnnxPredictor
from ..inference.predictor import Predictor, check_query_box, parse_box
from ..visualize import draw_detections, save_rgb
from .common import command


def read_queries(files: list[str], box_texts: list[str] | None) -> tuple[list, list]:
    """The query images of ``--query`` and their boxes from ``--query-box`` (one per image, checked against it)."""
    boxes = [parse_box(b) for b in box_texts] if box_texts else [None] * len(files)
    if len(boxes) != len(files):
        raise ValueError(f"got {len(files)} --query images but {len(boxes)} --query-box values")
    queries = [load_image(q) for q in files]
    return queries, [check_query_box(b, q.shape[1], q.shape[0]) if b else None for q, b in zip(queries, boxes)]


@command()
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="a training checkpoint")
    model.add_argument("--onnx", help="a model exported by tools/export.py, run with onnxruntime")
    parser.add_argument("--query", required=True, nargs="+", help="query image(s); several: k-shot")
    parser.add_argument("--query-box", nargs="+", help="X1,Y1,X2,Y2 or 'whole', one per query (default: whole)")
    parser.add_argument("--target", required=True, help="an image, a folder or a glob pattern")
    parser.add_argument("--out", default="outputs/infer")
    parser.add_argument("--score-threshold", type=float, default=0.3)
    parser.add_argument("--device", default="auto", help="auto (GPU if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--nms-iou", type=float, help="suppress duplicates above this IoU (default: the checkpoint's)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (pays over many targets)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    queries, boxes = read_queries(args.query, args.query_box)
    patches = [crop_box(q, b) if b else q for q, b in zip(queries, boxes)]
    paths = find_targets(args.target)
    out = Path(args.out)
    names = picture_names(paths)
    inputs = {p.resolve() for p in paths} | {Path(q).resolve() for q in args.query}
    for written in [out / n for n in names] + [out / "detections.json", out / "images.json"]:
        if written.resolve() in inputs:
            raise ValueError(f"--out {out} would overwrite the input image {written}; choose another --out folder")
    if args.onnx:
        predictor = OnnxPredictor(args.onnx)
    else:
        predictor = Predictor.from_checkpoint(args.checkpoint, args.device, args.nms_iou, args.batch_size, args.compile)
    out.mkdir(parents=True, exist_ok=True)
    images, rows, bad = [], [], []
    name_of = dict(zip(paths, names))
    results = predict_images(predictor, queries, boxes, paths, args.batch_size, args.score_threshold)
    for result in tqdm(results, total=len(paths), desc="infer", disable=args.no_progress):
        if result.error is not None:
            bad.append(result.error)
            continue
        image_id, (height, width) = len(images) + 1, result.image.shape[:2]
        images.append({"id": image_id, "file_name": str(result.path), "width": width, "height": height})
        det = result.detections
        for (x1, y1, x2, y2), score in zip(det["boxes"].tolist(), det["scores"].tolist()):
            rows.append({"image_id": image_id, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
        picture = draw_detections(result.image, det["boxes"], det["scores"], query=patches)
        save_rgb(out / name_of[result.path], picture)
    (out / "detections.json").write_text(json.dumps(rows))
    query = [{"file_name": q, "box": b} for q, b in zip(args.query, boxes)]
    meta = {"query": query, "images": images, "categories": [{"id": 1, "name": "query"}], "unreadable": bad}
    (out / "images.json").write_text(json.dumps(meta, indent=1))
    body = {**meta, "detections": rows}
    print(
        f"{len(images)} images, {len(rows)} detections >= {args.score_threshold}; "
        f"wrote {args.out}/detections.json (COCO results), images.json and one picture per image"
    )
    for line in bad:
        print(f"  unreadable, skipped: {line}")
    return body


if __name__ == "__main__":
    raise SystemExit(main())
