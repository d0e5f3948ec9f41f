"""What Indirect Attention costs: IA against plain attention at the detector's shapes, and the paper-sized
detector's forward against Hugging Face's DETR-R50, timed alternately in one process.

    python tools/benchmark_attention.py                        # batch 8, 300 queries, 32x32 cells, dim 256
    python tools/benchmark_attention.py --detr                 # + IA-DETR R50 vs DETR-R50 (pip install transformers)

Candidates run in rounds (one call each per round, after a warm-up), so that a machine's drift touches them
all alike; the median over rounds is reported, with each one's peak memory (CUDA: the allocator's peak;
CPU: the peak of the bytes allocated during one call, from torch's profiler).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..attention import BoxRelativePositionBias, IndirectAttention
from ..config import load_config
from ..models import build_model
from ..models.fuse import fuse_batchnorm
from .common import command

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # the profiler (peak memory) prints its start and stop otherwise


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float:
    """Peak of the memory allocated while ``fn`` runs, above what was allocated before, in MiB."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # allocations are charged to the op that made them (self memory), frees to "[memory]" events
    changes = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage)
    current = peak = 0
    for _, change in changes:
        current += change
        peak = max(peak, current)
    return peak / 2**20


def race(candidates: dict[str, Callable[[], object]], rounds: int, device: torch.device) -> dict[str, dict]:
    """Median milliseconds per call over ``rounds`` alternated rounds, and peak memory, per candidate."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in candidates}
    with torch.no_grad():
        for fn in candidates.values():
            fn()  # warm-up
        for _ in range(rounds):
            for name, fn in candidates.items():
                sync()
                start = time.perf_counter()
                fn()
                sync()
                times[name].append(time.perf_counter() - start)
        return {
            name: {
                "ms": round(1000 * statistics.median(times[name]), 1),
                "peak_mb": round(peak_memory_mb(fn, device), 1),
            }
            for name, fn in candidates.items()
        }


def attention_candidates(args: argparse.Namespace, device: torch.device) -> dict[str, Callable[[], object]]:
    torch.manual_seed(0)
    b, nq, side, dim, heads = args.batch, args.queries, args.side, args.dim, args.heads
    queries = torch.randn(b, nq, dim, device=device)
    conditioning, content = (
        torch.randn(b, side * side, dim, device=device),
        torch.randn(b, side * side, dim, device=device),
    )
    boxes = torch.rand(b, nq, 4, device=device) * 0.5 + 0.25
    relation = {"boxes": boxes, "grid_size": (side, side), "image_sizes": torch.full((b, 2), side * 16, device=device)}
    ia = IndirectAttention(dim, heads, BoxRelativePositionBias(heads, args.bias_hidden, 16)).to(device).eval()
    mha = torch.nn.MultiheadAttention(dim, heads, batch_first=True).to(device).eval()
    q = torch.randn(b, heads, nq, dim // heads, device=device)
    k = torch.randn(b, heads, side * side, dim // heads, device=device)
    v = torch.randn_like(k)
    no_padding = torch.zeros(b, side * side, dtype=torch.bool, device=device)
    return {
        "indirect_attention": lambda: ia(queries, conditioning, content, relation=relation),
        # as before the fast path: the plain bias formula, made dense, with the model's all-False mask
        "indirect_attention_plain_bias_and_mask": lambda: ia._attend(
            queries, conditioning, content, no_padding, ia.bias.reference(**relation)
        ),
        "box_bias_factors": lambda: ia.bias.factors(**relation),
        "box_bias_plain_formula": lambda: ia.bias.reference(**relation),
        "sdpa_no_bias": lambda: F.scaled_dot_product_attention(q, k, v),
        "nn_multihead_attention": lambda: mha(queries, content, content, need_weights=False),
    }


def detr_candidates(args: argparse.Namespace, device: torch.device) -> dict[str, Callable[[], object]]:
    try:
        from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig
    except ImportError as error:
        raise ValueError("--detr needs Hugging Face transformers: pip install transformers") from error
    torch.manual_seed(0)
    config = load_config(args.config)
    # as the Predictor runs it: batch norms folded into their convolutions
    ours = fuse_batchnorm(build_model(config.model, load_weights=False, query_extent=args.query_size)).to(device)
    detr_config = DetrConfig(
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        backbone_config=ResNetConfig(out_features=["stage4"]),
        num_queries=100,
    )
    detr = DetrForObjectDetection(detr_config).to(device).eval()
    side = args.target_size
    grid = -(-max(side, args.query_size) // 32) * 32
    target = torch.randn(1, 3, grid, grid, device=device)
    query = torch.zeros(1, 3, grid, grid, device=device)
    query_mask = torch.ones(1, grid, grid, dtype=torch.bool, device=device)
    query_mask[:, : args.query_size, : args.query_size] = False
    target_mask = torch.zeros(1, grid, grid, dtype=torch.bool, device=device)
    sizes = torch.tensor([[grid, grid]], device=device)
    pixels = torch.randn(1, 3, grid, grid, device=device)
    return {
        f"ia_detr_{config.model.backbone.name}": lambda: ours(target, target_mask, query, query_mask, sizes),
        "hf_detr_resnet50": lambda: detr(pixel_values=pixels),
    }


@command()
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--side", type=int, default=32, help="feature grid side in cells (32: 1,024 cells)")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--bias-hidden", type=int, default=512)
    parser.add_argument("--detr", action="store_true", help="also time the R50 model's forward against DETR-R50")
    parser.add_argument("--config", default="configs/ia_detr_r50.yaml")
    parser.add_argument("--target-size", type=int, default=512)
    parser.add_argument("--query-size", type=int, default=300)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    report: dict = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__}
    report["attention"] = race(attention_candidates(args, device), args.rounds, device)
    if args.detr:
        report["detector_forward"] = race(detr_candidates(args, device), max(1, args.rounds // 2), device)
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    raise SystemExit(main())
