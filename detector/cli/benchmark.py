"""Inference and training speed of a config on this machine: latency per pair, throughput, peak memory.

    python tools/benchmark.py --config configs/tiny_synthetic.yaml
    python tools/benchmark.py --config configs/ia_detr_r50.yaml --train-steps 3

Weights are random (speed does not depend on them); images are random at the config's test size (target) and
query size. Peak memory is the process's maximum resident set size (CPU) or CUDA's peak allocation.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import time

import numpy as np
import torch

from ..config import load_config
from ..data.dataset import Sample, collate
from ..engine.loop import amp_dtype_for, compute_losses
from ..inference.predictor import Predictor
from ..models import build
from ..models.fuse import fuse_batchnorm
from .common import command


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


@command()
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8, help="targets per call for the throughput figure")
    parser.add_argument("--train-steps", type=int, default=0, help="also time this many training steps")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    torch.manual_seed(0)
    model, criterion, _ = build(config, load_weights=False)
    predictor = Predictor(fuse_batchnorm(copy.deepcopy(model)), config, args.device)  # as from_checkpoint
    rng = np.random.default_rng(0)
    side = config.data.test_size
    target = rng.integers(0, 255, (side, int(side * 4 / 3), 3), dtype=np.uint8)
    query = rng.integers(0, 255, (config.data.query_size, config.data.query_size, 3), dtype=np.uint8)
    report = {
        "config": args.config,
        "device": str(predictor.device),
        "threads": torch.get_num_threads(),
        "target": list(target.shape[:2]),
        "query": list(query.shape[:2]),
    }
    report["latency_ms_per_pair"] = round(1000 * _time(lambda: predictor.predict(query, target), args.repeats), 1)
    batch_time = _time(lambda: predictor.predict(query, [target] * args.batch), max(1, args.repeats // 2))
    report[f"throughput_pairs_per_s_batch{args.batch}"] = round(args.batch / batch_time, 2)  # the Predictor's policy
    # the same targets in one model call, whatever the policy: what the policy was chosen from
    targets, queries = [predictor._target_tensor(target)] * args.batch, [predictor._query_tensor(query, None)]
    once = predictor.model.zero_padding  # else the query is encoded on the targets' grid, in each call
    encoded = predictor.encode_query(queries) if once else None
    forced = lambda: predictor._run(targets, queries, encoded, 0.3, None if once else {})  # noqa: E731
    forced_time = _time(forced, max(1, args.repeats // 2))
    report[f"throughput_pairs_per_s_one_call_of_{args.batch}"] = round(args.batch / forced_time, 2)
    if args.train_steps:
        model.to(predictor.device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        size = config.data.target_max_size
        box, label = torch.tensor([[0.5, 0.5, 0.2, 0.2]]), torch.tensor([1])
        target = {"boxes": box, "all_boxes": box, "class_boxes": box, "class_labels": label, "query_label": label[0]}
        query_side = config.data.query_size
        sample = Sample(
            torch.randn(3, size, size), torch.randn(3, query_side, query_side), target, {"size": (size, size)}
        )
        batch = collate([sample] * config.train.batch_size).to(predictor.device)

        amp_dtype = amp_dtype_for(config.train.amp, predictor.device)  # as tools/train.py: bf16 or fp16 on CUDA
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

        def train_step() -> None:
            with torch.autocast(predictor.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                losses = compute_losses(model, criterion, batch, 1.0)
            optimizer.zero_grad()
            scaler.scale(losses["loss"]).backward()
            scaler.step(optimizer)
            scaler.update()

        seconds = _time(train_step, args.train_steps)
        report["train_images_per_s"] = round(config.train.batch_size / seconds, 2)
        report["train_batch"] = config.train.batch_size
        report["train_precision"] = str(amp_dtype or torch.float32).removeprefix("torch.")
    if predictor.device.type == "cuda":
        report["peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    else:
        report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    raise SystemExit(main())
