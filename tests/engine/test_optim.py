"""Optimizer param groups against learning rates computed by hand from the configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detector.config import load_config
from detector.engine.optim import (
    build_optimizer,
    build_scheduler,
    drop_lr_from_next_step,
    follow_config_on_resume,
    freeze_step,
)
from detector.models import build_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def lr_of(optimizer: torch.optim.Optimizer, param: torch.nn.Parameter) -> float:
    return next(g["lr"] for g in optimizer.param_groups if any(p is param for p in g["params"]))


def decay_of(optimizer: torch.optim.Optimizer, param: torch.nn.Parameter) -> float:
    return next(g["weight_decay"] for g in optimizer.param_groups if any(p is param for p in g["params"]))


def test_resnet50_layer_decay_one_rate_per_stage():
    config = load_config(CONFIGS / "ia_detr_r50.yaml", ["model.backbone.weights=null"])
    model = build_model(config.model, load_weights=False)
    optimizer = build_optimizer(model, model.backbone, config.train)
    body = dict(model.backbone.body.named_parameters())
    base = 2e-4  # train.lr, no extra backbone factor (as the official code); layer_decay 0.9, five depths
    expected = {
        "body.0.weight": base * 0.9**4,  # conv1 (stem)
        "body.4.0.conv1.weight": base * 0.9**3,  # layer1
        "body.5.3.conv3.weight": base * 0.9**2,  # layer2
        "body.6.5.conv2.weight": base * 0.9,  # layer3
        "body.7.2.conv3.weight": base,  # layer4
    }
    for name, lr in expected.items():
        assert lr_of(optimizer, body[name]) == pytest.approx(lr, rel=1e-9), name
    assert lr_of(optimizer, model.backbone.input_proj.weight) == pytest.approx(2e-4)
    assert lr_of(optimizer, model.decoder.layers[0].ffn[0].weight) == pytest.approx(2e-4)
    rates = {round(g["lr"], 15) for g in optimizer.param_groups}
    assert len(rates) == 5  # five backbone depths, layer4 at the head's rate


def test_swin_v2_s_layer_decay_one_rate_per_block():
    config = load_config(CONFIGS / "ia_detr_swin_v2_s.yaml", ["model.backbone.weights=null"])
    model = build_model(config.model, load_weights=False)
    optimizer = build_optimizer(model, model.backbone, config.train)
    body = dict(model.backbone.body.named_parameters())
    # the official layer ids: patch embedding 0, the 2 + 2 + 18 + 2 blocks 1..24, the final norm 25, and a
    # parameter at id k trains at lr * 0.9 ** (25 - k); no extra backbone factor
    expected = {
        "body.0.0.0.weight": 0,  # patch embedding conv
        "body.0.1.0.attn.qkv.weight": 1,  # stage 1, block 0
        "body.0.1.1.mlp.0.weight": 2,  # stage 1, block 1
        "body.0.2.reduction.weight": 2,  # patch merging after stage 1: the id of the block before it
        "body.0.3.0.attn.qkv.weight": 3,  # stage 2, block 0
        "body.0.5.17.mlp.0.weight": 22,  # stage 3, last block: 2 + 2 + 18
        "body.0.7.1.attn.proj.weight": 24,  # stage 4, last block
        "body.1.weight": 25,  # final norm
    }
    assert config.train.backbone_lr_scale == 1.0
    for name, layer_id in expected.items():
        lr = 2e-4 * 0.9 ** (25 - layer_id)
        assert lr_of(optimizer, body[name]) == pytest.approx(lr, rel=1e-9), name
    rates = {round(g["lr"], 15) for g in optimizer.param_groups}
    assert len(rates) == 26  # ids 0..25; the final norm shares the head's rate


def test_no_weight_decay_on_norms_and_biases():
    config = load_config(CONFIGS / "tiny_synthetic.yaml")
    model = build_model(config.model, load_weights=False)
    optimizer = build_optimizer(model, model.backbone, config.train)
    layer = model.decoder.layers[0]
    assert decay_of(optimizer, layer.ffn[0].weight) == config.train.weight_decay
    assert decay_of(optimizer, layer.ffn[0].bias) == 0.0
    assert decay_of(optimizer, layer.norm1.weight) == 0.0
    assert decay_of(optimizer, model.backbone.norm.weight) == 0.0


def test_position_bias_mlps_get_no_weight_decay_in_the_paper_configs():
    """The official code keeps its box-bias MLPs (``cpb_mlp``), Swin-v2's position-bias MLPs and logit scales
    out of weight decay; ``train.decay_position_bias: true`` decays their weight matrices as any other."""
    for option, expected in (("false", 0.0), ("true", 0.05)):
        config = load_config(
            CONFIGS / "ia_detr_swin_v2_s.yaml",
            ["model.backbone.weights=null", f"train.decay_position_bias={option}"],
        )
        model = build_model(config.model, load_weights=False)
        optimizer = build_optimizer(model, model.backbone, config.train)
        bias = model.decoder.layers[2].fusion.bias
        assert decay_of(optimizer, bias.mlp_x[0].weight) == expected
        assert decay_of(optimizer, bias.mlp_y[2].weight) == expected
        block = dict(model.backbone.body.named_parameters())
        assert decay_of(optimizer, block["body.0.1.0.attn.cpb_mlp.0.weight"]) == expected
        assert decay_of(optimizer, block["body.0.1.0.attn.logit_scale"]) == expected
        assert decay_of(optimizer, bias.mlp_x[0].bias) == 0.0  # biases never decay
        assert decay_of(optimizer, block["body.0.1.0.attn.qkv.weight"]) == 0.05  # content weights always do
        assert decay_of(optimizer, model.decoder.layers[2].fusion.q_proj.weight) == 0.05


def _ten_step_schedule():
    """Warm-up over 4 steps, 10 steps, lr x0.1 from step int(0.8 * 10) = 8."""
    config = load_config(
        CONFIGS / "tiny_synthetic.yaml", ["train.warmup_steps=4", "train.max_steps=10", "train.lr_drop_at=0.8"]
    )
    model = build_model(config.model, load_weights=False)
    optimizer = build_optimizer(model, model.backbone, config.train)
    return config, model, optimizer, build_scheduler(optimizer, config.train)


def _lr_factors(config, optimizer, scheduler, after_step=lambda step: None):
    """The lr factor of each of 10 steps; ``after_step(step)`` runs where the training loop's hooks do."""
    seen = []
    for step in range(10):
        seen.append(optimizer.param_groups[0]["lr"] / config.train.lr)
        optimizer.step()
        scheduler.step()
        after_step(step)
    return seen


def test_scheduler_warmup_then_drop():
    config, _, optimizer, scheduler = _ten_step_schedule()
    # warm-up (s + 1) / 4 for steps 0..3, then 1, then x0.1 from step int(0.8 * 10) = 8
    assert _lr_factors(config, optimizer, scheduler) == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1, 1, 1, 0.1, 0.1])


def test_a_drop_brought_forward_sets_the_coming_lr_and_survives_the_state_dict():
    """``drop_lr_from_next_step`` after step 2 of 10 (drop due at 8): step 3 keeps the lr the scheduler set for
    it, step 4 onwards is x0.1; a fresh scheduler loading the state dict keeps the drop at 4; a second call
    moves nothing."""
    config, model, optimizer, scheduler = _ten_step_schedule()
    states = []

    def hook(step):
        if step == 2:  # after the scheduler has set the lr of step 3
            assert drop_lr_from_next_step(scheduler) == 4 and drop_lr_from_next_step(scheduler) is None
            states.append(scheduler.state_dict())

    seen = _lr_factors(config, optimizer, scheduler, hook)
    assert seen == pytest.approx([0.25, 0.5, 0.75, 1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert [g["lr"] for g in optimizer.param_groups] == scheduler.get_last_lr()
    fresh = build_scheduler(build_optimizer(model, model.backbone, config.train), config.train)
    assert fresh.lr_lambdas[0].drop == 8
    fresh.load_state_dict(states[0])
    assert fresh.lr_lambdas[0].drop == 4 and fresh.lr_lambdas[0](4) == pytest.approx(0.1)


def _resumed_after_three_steps(drop_forward: bool = False, *overrides: str):
    """The ten-step schedule (drop at 8) stepped three times, then loaded into a fresh scheduler built from the
    ten-step config with ``overrides``, as a resumed run does; ``drop_forward``: the clock moved the drop to 4 first."""
    config, model, optimizer, scheduler = _ten_step_schedule()
    for step in range(3):
        optimizer.step()
        scheduler.step()
        if drop_forward and step == 2:
            drop_lr_from_next_step(scheduler)
    saved = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    resumed = load_config(
        CONFIGS / "tiny_synthetic.yaml",
        ["train.warmup_steps=4", "train.max_steps=10", "train.lr_drop_at=0.8", *overrides],
    )
    optimizer = build_optimizer(model, model.backbone, resumed.train)
    scheduler = build_scheduler(optimizer, resumed.train)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    moved = follow_config_on_resume(scheduler, resumed.train, config.to_dict()["train"])
    return resumed, optimizer, scheduler, moved


def test_a_resume_with_more_steps_moves_the_drop_to_the_new_length():
    """Resumed at step 3 with max_steps 20: the drop moves from int(0.8 * 10) = 8 to int(0.8 * 20) = 16."""
    config, optimizer, scheduler, moved = _resumed_after_three_steps(False, "train.max_steps=20")
    assert moved == (8, 16) and all(s.drop == 16 for s in scheduler.lr_lambdas)
    seen = []
    for _ in range(3, 18):  # steps 3..17
        seen.append(optimizer.param_groups[0]["lr"] / config.train.lr)
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([1.0] * 13 + [0.1] * 2)  # warm-up done at step 3 ((3 + 1) / 4); x0.1 from 16
    assert scheduler.state_dict()["lr_lambdas"][0]["drop"] == 16  # the next checkpoint keeps it


def test_a_resume_with_a_drop_already_passed_trains_its_next_step_at_the_dropped_lr():
    """Resumed at step 3 with lr_drop_at 0.2 (drop at 2): step 3 itself, whose lr was set before the checkpoint,
    trains at x0.1."""
    config, optimizer, scheduler, moved = _resumed_after_three_steps(False, "train.lr_drop_at=0.2")
    assert moved == (8, 2)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(
        [config.train.lr * 0.1] * len(optimizer.param_groups)
    )
    assert scheduler.get_last_lr() == pytest.approx([config.train.lr * 0.1] * len(optimizer.param_groups))


def test_a_drop_the_clock_brought_forward_stays_on_resume():
    """The clock moved the drop to 4; resumed with max_steps 20, it stays at 4; with an unchanged schedule nothing
    moves either."""
    _, _, scheduler, moved = _resumed_after_three_steps(True, "train.max_steps=20")
    assert moved is None and scheduler.lr_lambdas[0].drop == 4
    _, _, scheduler, moved = _resumed_after_three_steps(False)
    assert moved is None and scheduler.lr_lambdas[0].drop == 8


def test_freeze_step_is_the_fraction_of_max_steps_or_never():
    official = load_config(CONFIGS / "ia_detr_swin_v2_s.yaml", ["train.max_steps=14000"]).train
    assert freeze_step(official) == 2002  # from epoch 2 of 14 (0.143 of the steps, rounded)
    assert official.lr_drop_at * 14 == pytest.approx(11, abs=0.01)  # lr x0.1 after epoch 11 of 14
    assert freeze_step(load_config(CONFIGS / "tiny_synthetic.yaml").train) is None
