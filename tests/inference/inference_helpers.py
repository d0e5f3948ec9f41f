"""Helpers for the inference tests: a checkpoint of a small random model, and patterned images."""

from pathlib import Path

import cv2
import numpy as np
import torch
from small_model import SMALL

from detector.config import load_config
from detector.engine.checkpoint import save_checkpoint
from detector.models import build

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny_synthetic.yaml"
OVERRIDES = [*SMALL, "eval.max_detections=8"]


def save_random_checkpoint(path, *extra):
    config = load_config(CONFIG, [*OVERRIDES, *extra])
    torch.manual_seed(0)
    model, _, _ = build(config)
    # give the batch-norm layers non-trivial running statistics, as a trained model has
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    save_checkpoint({"model": model.state_dict(), "config": config.to_dict()}, path)
    return path


def pattern_image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    image = cv2.resize(
        rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_NEAREST
    )
    return image
