"""Search an index (tools/index.py) for a query's object: the best detections over the whole collection.

    python tools/search.py --index outputs/index --query mug.jpg --query-box 10,20,200,240 --out outputs/search
    python tools/search.py --index outputs/index --query a.jpg b.jpg --query-box 10,20,200,240 whole ...   # k-shot

Prints the best hits, ranked, and writes ``detections.json`` (COCO results format, every detection at or above the
threshold; ``image_id`` as in ``images.json``), ``images.json`` (the index's images as a COCO ``images`` list, and
the query) and ``hits.json`` (the ``--top`` best, ranked, with file names), plus a picture of each of the
``--pictures`` images with the best hits. The checkpoint is the one the index was built with (``--checkpoint``
gives its new location if it moved; it must be the same file).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..data.images import load_image
from ..data.transforms import crop_box
from ..inference.batch import picture_names
from ..inference.search import Searcher
from ..visualize import draw_detections, save_rgb
from .common import command
from .infer import read_queries


@command()
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True)
    parser.add_argument("--query", required=True, nargs="+", help="query image(s); several: k-shot")
    parser.add_argument("--query-box", nargs="+", help="X1,Y1,X2,Y2 or 'whole', one per query (default: whole)")
    parser.add_argument("--checkpoint", help="default: the path recorded in the index")
    parser.add_argument("--out", default="outputs/search")
    parser.add_argument("--top", type=int, default=20, help="hits printed and written to hits.json")
    parser.add_argument("--pictures", type=int, default=8, help="pictures of the images with the best hits")
    parser.add_argument("--score-threshold", type=float, default=0.3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    queries, boxes = read_queries(args.query, args.query_box)
    searcher = Searcher(args.index, args.checkpoint, device=args.device)
    entries = searcher.index.entries
    detections = searcher.detections(queries, boxes, args.score_threshold, args.batch_size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, hits = [], []
    for image_id, (entry, det) in enumerate(zip(entries, detections), start=1):
        for (x1, y1, x2, y2), score in zip(det["boxes"].tolist(), det["scores"].tolist()):
            rows.append({"image_id": image_id, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
            hits.append({"file": entry["file"], "image_id": image_id, "box": [x1, y1, x2, y2], "score": score})
    hits.sort(key=lambda hit: -hit["score"])
    images = [
        {"id": i, "file_name": e["file"], "width": e["width"], "height": e["height"]} for i, e in enumerate(entries, 1)
    ]
    query = [{"file_name": q, "box": b} for q, b in zip(args.query, boxes)]
    (out / "detections.json").write_text(json.dumps(rows))
    meta = {"query": query, "images": images, "categories": [{"id": 1, "name": "query"}]}
    (out / "images.json").write_text(json.dumps(meta, indent=1))
    (out / "hits.json").write_text(json.dumps(hits[: args.top], indent=1))
    best_images = list(dict.fromkeys(hit["image_id"] for hit in hits))[: args.pictures]
    patches = [crop_box(q, b) if b else q for q, b in zip(queries, boxes)]
    paths = [Path(entries[i - 1]["file"]) for i in best_images]
    for image_id, path, name in zip(best_images, paths, picture_names(paths)):
        det = detections[image_id - 1]
        save_rgb(out / name, draw_detections(load_image(path), det["boxes"], det["scores"], query=patches))
    for rank, hit in enumerate(hits[: args.top], start=1):
        box = ", ".join(f"{v:.0f}" for v in hit["box"])
        print(f"{rank:3d}. {hit['score']:.3f}  {hit['file']}  [{box}]")
    print(f"{len(rows)} detections >= {args.score_threshold} in {len(entries)} images; wrote {out}/hits.json,")
    print("  detections.json (COCO results), images.json and pictures of the best images")
    return {"hits": hits[: args.top], "detections": len(rows), "images": len(entries)}


if __name__ == "__main__":
    raise SystemExit(main())
