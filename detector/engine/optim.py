"""AdamW with layer-wise learning-rate decay for the backbone, warm-up and a step decay."""

from __future__ import annotations

import torch
from torch import nn

from ..config import TrainConfig


def backbone_depth(name: str, body: nn.Module) -> tuple[int, int]:
    """``(depth, count)`` of a backbone parameter: the index of its top-level block in the body's sequence
    (Swin: of its stage inside ``features``), counted from the input."""
    parts = name.split(".")
    blocks = list(body.children())
    if len(blocks) == 1 or not parts[0].isdigit():
        return 0, 1
    if isinstance(blocks[0], nn.Sequential) and len(blocks) == 2 and parts[0] == "0":  # swin: (features, norm)
        return int(parts[1]), len(blocks[0]) + 1
    return int(parts[0]), len(blocks)


def build_optimizer(modules: nn.Module, backbone_body: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """Param groups: backbone blocks at ``lr * backbone_lr_scale * layer_decay^(count - 1 - depth)``, the rest at
    ``lr``; no weight decay on norms and biases."""
    body_params = {id(p): n for n, p in backbone_body.named_parameters()}
    groups: dict[tuple[float, float], list] = {}
    for name, param in modules.named_parameters():
        if not param.requires_grad:
            continue
        lr = config.lr
        if id(param) in body_params:
            depth, count = backbone_depth(body_params[id(param)], backbone_body)
            lr = config.lr * config.backbone_lr_scale * config.layer_decay ** (count - 1 - depth)
        decay = 0.0 if param.ndim <= 1 or name.endswith(".bias") else config.weight_decay
        groups.setdefault((lr, decay), []).append(param)
    param_groups = [{"params": p, "lr": lr, "weight_decay": wd} for (lr, wd), p in groups.items()]
    return torch.optim.AdamW(param_groups, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then constant, then x0.1 after ``lr_drop_at * max_steps``."""
    drop = int(config.lr_drop_at * config.max_steps)

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps > 0 else 1.0
        return warm * (0.1 if step >= drop else 1.0)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
