"""AdamW with layer-wise learning-rate decay for the backbone, warm-up, a step decay, and the backbone freeze."""

from __future__ import annotations

import torch
from torch import nn

from ..attention.bias import BoxRelativePositionBias, SequenceOffsetBias
from ..config import TrainConfig
from ..models.backbone import Backbone

# parameters of torchvision's Swin-v2 that, like the box-bias MLPs, parametrise position and not content: the
# continuous position-bias MLP and the attention's learned temperature (the official code's ``wd_norm_names``)
_FOREIGN_POSITION_NAMES = ("cpb_mlp", "logit_scale", "relative_position_bias_table")


def position_bias_parameters(modules: nn.Module) -> set[int]:
    """``id``s of the parameters that map relative positions to attention biases: every box-bias and
    sequence-offset MLP of ours, and Swin-v2's position-bias MLPs and logit scales."""
    ids = {
        id(p)
        for m in modules.modules()
        if isinstance(m, BoxRelativePositionBias | SequenceOffsetBias)
        for p in m.parameters()
    }
    ids |= {id(p) for n, p in modules.named_parameters() if any(k in n for k in _FOREIGN_POSITION_NAMES)}
    return ids


def build_optimizer(modules: nn.Module, backbone: Backbone, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of ``modules``.

    A parameter of backbone block ``depth`` (of ``count``, see ``block_depths``) trains at
    ``lr * backbone_lr_scale * layer_decay ** (count - 1 - depth)``; every other parameter (the backbone's
    projection included) at ``lr``. No weight decay on norm weights and biases (1-d parameters) nor, unless
    ``train.decay_position_bias``, on the position-bias MLPs (:func:`position_bias_parameters`).
    """
    depths, count = backbone.body.block_depths()
    body_params = {id(p): depths[n] for n, p in backbone.body.named_parameters()}
    no_decay = set() if config.decay_position_bias else position_bias_parameters(modules)
    groups: dict[tuple[float, float], list] = {}
    for name, param in modules.named_parameters():
        if not param.requires_grad:
            continue
        lr = config.lr
        if id(param) in body_params:
            lr = config.lr * config.backbone_lr_scale * config.layer_decay ** (count - 1 - body_params[id(param)])
        plain = param.ndim <= 1 or name.endswith(".bias") or id(param) in no_decay
        decay = 0.0 if plain else config.weight_decay
        groups.setdefault((lr, decay), []).append(param)
    param_groups = [{"params": p, "lr": lr, "weight_decay": wd} for (lr, wd), p in groups.items()]
    return torch.optim.AdamW(param_groups, lr=config.lr, weight_decay=config.weight_decay)


class StepSchedule:
    """The lr factor of step ``step``: a linear warm-up over ``warmup_steps``, then 1, then 0.1 from step ``drop``.
    A callable object rather than a closure so that LambdaLR keeps ``drop`` in its state dict: a drop brought
    forward by the clock (``train.lr_drop_by_time``) survives a resume."""

    def __init__(self, warmup_steps: int, drop: int) -> None:
        self.warmup_steps, self.drop = warmup_steps, drop

    def __call__(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        return warm * (0.1 if step >= self.drop else 1.0)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then constant, then x0.1 from step ``int(lr_drop_at * max_steps)``."""
    schedule = StepSchedule(config.warmup_steps, int(config.lr_drop_at * config.max_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def drop_lr_from_next_step(scheduler: torch.optim.lr_scheduler.LambdaLR) -> int | None:
    """Bring the step decay of a :func:`build_scheduler` schedule forward to the step after the coming one (the
    coming step's lr is already set; the scheduler sets the next as usual). Returns that step, or None when the
    drop comes by then anyway."""
    step = scheduler.last_epoch + 1
    if scheduler.lr_lambdas[0].drop <= step:
        return None
    for schedule in scheduler.lr_lambdas:  # one StepSchedule shared by every parameter group
        schedule.drop = step
    return step


def follow_config_on_resume(
    scheduler: torch.optim.lr_scheduler.LambdaLR, config: TrainConfig, saved: dict
) -> tuple[int, int] | None:
    """After a checkpoint's scheduler state is loaded: let the step decay follow ``config``, the run being resumed
    (a user who resumes with a larger ``train.max_steps`` to train longer expects the drop at ``lr_drop_at`` of the
    new length, not of the old one), unless the checkpoint's drop was brought forward by the clock
    (``train.lr_drop_by_time``), which stays. ``saved`` is the checkpoint's ``train`` config. The coming step's lr
    is set to the moved schedule's. Returns (old, new) drop step, or None when nothing moved."""
    if "lr_drop_at" not in saved or "max_steps" not in saved:
        return None
    stored = scheduler.lr_lambdas[0].drop
    planned = int(config.lr_drop_at * config.max_steps)
    if stored != int(saved["lr_drop_at"] * saved["max_steps"]) or stored == planned:
        return None  # brought forward by the clock, or already where this config puts it
    for schedule in scheduler.lr_lambdas:
        schedule.drop = planned
    coming = scheduler.last_epoch  # the index of the step the optimizer's lr is set for
    for group, base, schedule in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * schedule(coming)
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]
    return stored, planned


def freeze_step(config: TrainConfig) -> int | None:
    """The optimizer step from which the backbone body is frozen (``train.freeze_backbone_at`` of
    ``max_steps``), or None when it is never frozen."""
    if config.freeze_backbone_at is None:
        return None
    return round(config.freeze_backbone_at * config.max_steps)


def freeze_backbone_body(backbone: Backbone) -> int:
    """Stop training the backbone body (its projection, norm and any upsampler keep training), as the official
    code does from stage-2 epoch 2. Returns how many parameters were frozen. Their gradients stay ``None``, so
    AdamW leaves them alone (no update, no weight decay), and the backward pass stops at the body. As with the
    official freeze, a BatchNorm's running statistics (the CPU-tiny body's) keep updating in training mode."""
    frozen = [p for p in backbone.body.parameters() if p.requires_grad]
    for param in frozen:
        param.requires_grad_(False)
        param.grad = None
    return len(frozen)
