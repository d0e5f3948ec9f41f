"""Helpers for the model tests: a tiny detector and a hand-made batch."""

from pathlib import Path

import torch

from detector.config import load_config
from detector.models import build

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny_synthetic.yaml"


def tiny_detector(*overrides):
    config = load_config(
        TINY,
        [
            "model.backbone.width=16",
            "model.hidden_dim=64",
            "model.num_layers=2",
            "model.ffn_dim=128",
            "model.num_queries=10",
            "model.bias_hidden_dim=16",
            *overrides,
        ],
    )
    torch.manual_seed(0)
    return build(config)


def detector_batch(b=2, size=128, query=48):
    torch.manual_seed(1)
    target = torch.randn(b, 3, size, size)
    query_images = torch.zeros(b, 3, size, size)
    query_images[:, :, :query, :query] = torch.randn(b, 3, query, query)
    target_masks = torch.zeros(b, size, size, dtype=torch.bool)
    target_masks[1, :, 96:] = True  # second target is 96 px wide
    target[1, :, :, 96:] = 0
    query_masks = torch.ones(b, size, size, dtype=torch.bool)
    query_masks[:, :query, :query] = False
    sizes = torch.tensor([[size, size], [size, 96]])
    targets = [
        {
            "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3]]),
            "all_boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3]]),
            "class_boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3]]),
            "class_labels": torch.tensor([3]),
            "query_label": torch.tensor(3),
        },
        {
            "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.1, 0.2]]),
            "all_boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.1, 0.2], [0.1, 0.1, 0.1, 0.1]]),
            "class_boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.1, 0.2], [0.1, 0.1, 0.1, 0.1]]),
            "class_labels": torch.tensor([5, 5, 2]),
            "query_label": torch.tensor(5),
        },
    ]
    return (target, target_masks, query_images, query_masks, sizes), targets
