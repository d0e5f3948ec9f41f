"""Searching a collection through an index against running the whole network on every (query, target) pair.

    python tools/benchmark_search.py --config configs/tiny_synthetic.yaml --targets 500 --queries 20
    python tools/benchmark_search.py --config configs/ia_detr_r50.yaml --targets 100 --queries 5

Random weights (speed does not depend on them), random images written to a temporary folder (two aspect ratios,
at the config's test size). Measured in one run:

- plain: the whole network per pair, as before the model was split (both backbones and the decoder each call,
  targets batched as the Predictor batches them), timed on ``--plain-sample`` targets per query (a pair costs
  the same whatever the collection's size);
- index: ``tools/index.py``'s encoding of all targets (timed apart, once), then each query decoded against every
  stored target (``Searcher``);
- the ratio of pairs/s, index over plain, and what ``--queries`` queries cost in all with the encoding counted;
- the index's size on disk per image.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..config import load_config
from ..engine.checkpoint import save_checkpoint
from ..inference.predictor import Predictor
from ..inference.search import Searcher, TargetIndex
from ..models import build
from .common import command


@command()
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--targets", type=int, default=500)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--plain-sample", type=int, default=40, help="targets timed on the plain path per query")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    torch.manual_seed(0)
    model, _, _ = build(config, load_weights=False)
    rng = np.random.default_rng(0)
    side = config.data.test_size
    shapes = [(side, int(side * 4 / 3)), (int(side * 4 / 3), side)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        paths = []
        for i in range(args.targets):
            h, w = shapes[i % 2]
            small = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
            paths.append(folder / f"{i:05d}.jpg")
            Image.fromarray(small).resize((w, h)).save(paths[-1], quality=90)
        checkpoint = save_checkpoint(
            {"model": copy.deepcopy(model).state_dict(), "config": config.to_dict()}, Path(tmp) / "model.pth"
        )
        predictor = Predictor.from_checkpoint(checkpoint, args.device)
        queries = [
            rng.integers(0, 255, (config.data.query_size, config.data.query_size, 3), dtype=np.uint8)
            for _ in range(args.queries)
        ]

        # plain: the whole network per pair (the query's backbone every call), on a sample of the targets
        sample = [predictor._target_tensor(p) for p in paths[: args.plain_sample]]
        plain_query = [predictor._query_tensor(queries[0], None)]
        shapes_ = [tuple(t.shape[1:]) for t, _ in sample]
        predictor._run(sample[:1], plain_query, None, 0.3)  # warm-up
        start = time.perf_counter()
        with torch.no_grad():
            for group in predictor._batches(shapes_, plain_query):
                predictor._run([sample[i] for i in group], plain_query, None, 0.3)
        plain_pairs_per_s = len(sample) / (time.perf_counter() - start)

        report_index = TargetIndex.update(Path(tmp) / "index", predictor, checkpoint, paths)
        searcher = Searcher(Path(tmp) / "index", checkpoint, device=args.device)
        searcher.detections(queries[0])  # warm-up (and the shards' first, memory-mapped read)
        start = time.perf_counter()
        for query in queries:
            searcher.detections(query)
        search_seconds = time.perf_counter() - start
    pairs = args.queries * args.targets
    index_pairs_per_s = pairs / search_seconds
    # the ratio of the printed rates, so that dividing the two figures gives the printed ratio
    plain_shown, index_shown = round(plain_pairs_per_s, 2), round(index_pairs_per_s, 2)
    ratio = index_shown / plain_shown if plain_shown else index_pairs_per_s / plain_pairs_per_s
    report = {
        "config": args.config,
        "device": str(predictor.device),
        "threads": torch.get_num_threads(),
        "targets": args.targets,
        "queries": args.queries,
        "plain_pairs_per_s": plain_shown,
        "index_encode_seconds": round(report_index.seconds, 2),
        "index_encode_images_per_s": round(args.targets / report_index.seconds, 2),
        "index_search_pairs_per_s": index_shown,
        "ratio_search_over_plain": round(ratio, 2),
        "index_mb_per_image": round(report_index.bytes_on_disk / 2**20 / args.targets, 3),
    }
    for q in sorted({1, args.queries}):
        plain = q * args.targets / plain_pairs_per_s
        indexed = report_index.seconds + q * args.targets / index_pairs_per_s
        report[f"{q}_queries_seconds_plain_vs_index_with_encoding"] = [round(plain, 1), round(indexed, 1)]
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    raise SystemExit(main())
