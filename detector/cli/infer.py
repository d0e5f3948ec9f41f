"""Find the query's object in target images.

    python tools/infer.py --checkpoint best.pth --query mug.jpg --query-box 10,20,200,240 \\
        --target photos/ --out outputs/infer

Writes ``detections.json`` (COCO results format, plus each image's file name) and one picture per target
with the boxes and scores drawn and the query exemplar inset top-left. Unreadable targets are skipped and
listed at the end.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

from tqdm import tqdm

from ..data.images import ImageReadError, load_image
from ..data.transforms import crop_box
from ..engine.checkpoint import CheckpointError
from ..inference.predictor import Predictor, check_query_box
from ..visualize import draw_detections, save_rgb

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def find_targets(spec: str) -> list[Path]:
    """A file, a folder (its images, sorted) or a glob pattern."""
    path = Path(spec)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if path.is_file():
        return [path]
    matches = sorted(Path(p) for p in glob.glob(spec))
    if not matches:
        raise FileNotFoundError(f"--target {spec} is not a file, a folder or a glob pattern that matches anything")
    return matches


def parse_box(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) != 4:
        raise ValueError(f"--query-box {text!r} must be X1,Y1,X2,Y2 (four numbers)")
    return tuple(float(v) for v in parts)


def run(
    checkpoint: str,
    query: str,
    target: str,
    out: str,
    query_box: str | None = None,
    score_threshold: float = 0.3,
    device: str = "auto",
    batch_size: int = 4,
    progress: bool = True,
    nms_iou: float | None = None,
) -> dict:
    predictor = Predictor.from_checkpoint(checkpoint, device, nms_iou)
    query_image = load_image(query)
    box = parse_box(query_box)
    if box is not None:
        box = check_query_box(box, query_image.shape[1], query_image.shape[0])
    patch = crop_box(query_image, box) if box else query_image
    paths = find_targets(target)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results, bad, images = [], [], []
    for start in tqdm(range(0, len(paths), batch_size), desc="infer", disable=not progress):
        arrays, names = [], []
        for path in paths[start : start + batch_size]:
            try:
                arrays.append(load_image(path))
                names.append(path)
            except ImageReadError as error:
                bad.append(str(error))
        if not arrays:
            continue
        detections = predictor.predict(query_image, arrays, query_box=box, score_threshold=score_threshold)
        for path, array, det in zip(names, arrays, detections):
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": str(path), "width": array.shape[1], "height": array.shape[0]})
            for (x1, y1, x2, y2), score in zip(det["boxes"].tolist(), det["scores"].tolist()):
                results.append(
                    {
                        "image_id": image_id,
                        "file_name": str(path),
                        "category_id": 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "score": score,
                    }
                )
            save_rgb(out_dir / f"{path.stem}.png", draw_detections(array, det["boxes"], det["scores"], query=patch))
    body = {"query": query, "query_box": box, "images": images, "detections": results, "unreadable": bad}
    (out_dir / "detections.json").write_text(json.dumps(body, indent=1))
    return body


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
    parser.add_argument(
        "--nms-iou",
        type=float,
        help="suppress duplicates above this IoU (default: the checkpoint's eval.nms_iou, 0 = off)",
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        body = run(
            args.checkpoint,
            args.query,
            args.target,
            args.out,
            args.query_box,
            args.score_threshold,
            args.device,
            args.batch_size,
            not args.no_progress,
            args.nms_iou,
        )
    except (ImageReadError, CheckpointError, FileNotFoundError, ValueError) as error:
        if argv is not None:
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(
        f"{len(body['images'])} images, {len(body['detections'])} detections >= {args.score_threshold}; "
        f"wrote {args.out}/detections.json and one picture per image"
    )
    if body["unreadable"]:
        print(f"{len(body['unreadable'])} unreadable images were skipped:")
        for line in body["unreadable"]:
            print(f"  {line}")
    return body


if __name__ == "__main__":
    main()
