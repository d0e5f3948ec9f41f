"""Print a model's parameter count and FLOPs (torch's flop counter), per component, at a given input size.

FLOPs count one multiply-add as two operations, for one target and one query image (batch 1), in
inference mode (one-to-one queries only).
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..config import load_config
from ..models import build_model
from .common import command


def model_info(
    config_path: str, target_size: int | None = None, query_size: int | None = None, overrides: list[str] | None = None
) -> dict:
    """Parameters and FLOPs at ``target_size`` x ``target_size`` and ``query_size`` (default: the config's
    ``data.test_size`` and ``data.query_size``)."""
    config = load_config(config_path, overrides or [])
    target_size, query_size = target_size or config.data.test_size, query_size or config.data.query_size
    model = build_model(config.model, load_weights=False, query_extent=query_size).eval()
    components = {
        "backbone": model.backbone,
        "proposals": model.proposal_head,
        "decoder": model.decoder,
        "heads+queries": [model.class_heads, model.query_content]
        + [m for m in (model.content_proj, model.similarity) if m is not None],
        "training_only_heads": [m for m in (model.identity_head, model.contrastive_head) if m is not None],
    }
    params = {
        name: sum(p.numel() for m in (mods if isinstance(mods, list) else [mods]) for p in m.parameters())
        for name, mods in components.items()
    }
    params["total"] = sum(p.numel() for p in model.parameters())
    grid = -(-max(target_size, query_size) // 32) * 32
    target = torch.zeros(1, 3, grid, grid)
    target_mask = torch.ones(1, grid, grid, dtype=torch.bool)
    target_mask[:, :target_size, :target_size] = False
    query_mask = torch.ones(1, grid, grid, dtype=torch.bool)
    query_mask[:, :query_size, :query_size] = False
    model.requires_grad_(False)  # (the flop counter's module tracker trips over no_grad on some versions)
    counter = FlopCounterMode(display=False, depth=2)
    with counter:
        model(
            target,
            target_mask,
            torch.zeros(1, 3, grid, grid),
            query_mask,
            torch.tensor([[target_size, target_size]]),
        )
    by_module = counter.get_flop_counts()
    flops = {
        name: sum(by_module.get(f"IADETR.{attr}", {}).values())
        for name, attr in (("backbone", "backbone"), ("proposals", "proposal_head"), ("decoder", "decoder"))
    }
    flops["total"] = counter.get_total_flops()
    flops["other"] = flops["total"] - sum(v for k, v in flops.items() if k != "total")
    return {
        "config": config_path,
        "target_size": target_size,
        "query_size": query_size,
        "grid": grid,
        "parameters_M": {k: round(v / 1e6, 3) for k, v in params.items()},
        "gflops": {k: round(v / 1e9, 2) for k, v in flops.items()},
    }


@command()
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--target-size", type=int, help="default: the config's data.test_size")
    parser.add_argument("--query-size", type=int, help="default: the config's data.query_size")
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    args = parser.parse_args(argv)
    info = model_info(args.config, args.target_size, args.query_size, args.overrides)
    print(json.dumps(info, indent=1))
    return info


if __name__ == "__main__":
    raise SystemExit(main())
