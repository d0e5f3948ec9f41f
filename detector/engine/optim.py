"""AdamW with layer-wise learning-rate decay for the backbone, warm-up and a step decay."""

from __future__ import annotations

import torch
from torch import nn

from ..config import TrainConfig
from ..models.backbone import Backbone


def build_optimizer(modules: nn.Module, backbone: Backbone, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of ``modules``.

    A parameter of backbone block ``depth`` (of ``count``, see ``block_depths``) trains at
    ``lr * backbone_lr_scale * layer_decay ** (count - 1 - depth)``; every other parameter (the backbone's
    projection included) at ``lr``. Norm weights and biases (1-d parameters) get no weight decay.
    """
    depths, count = backbone.body.block_depths()
    body_params = {id(p): depths[n] for n, p in backbone.body.named_parameters()}
    groups: dict[tuple[float, float], list] = {}
    for name, param in modules.named_parameters():
        if not param.requires_grad:
            continue
        lr = config.lr
        if id(param) in body_params:
            lr = config.lr * config.backbone_lr_scale * config.layer_decay ** (count - 1 - body_params[id(param)])
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
