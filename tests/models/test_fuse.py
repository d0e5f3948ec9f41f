"""Batch norms folded into convolutions for inference: the same outputs, no batch norm left."""

import copy

import torch
from model_helpers import TINY, detector_batch

from detector.config import load_config
from detector.models import build_model
from detector.models.backbone import Backbone, TorchvisionBackbone
from detector.models.fuse import NORMS, fuse_batchnorm


def _random_statistics(module):
    torch.manual_seed(1)
    for m in module.modules():
        if isinstance(m, NORMS):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


def test_resnet_backbone_features_are_unchanged():
    torch.manual_seed(0)
    backbone = Backbone(TorchvisionBackbone("resnet18"), 32).eval()
    _random_statistics(backbone)
    fused = fuse_batchnorm(copy.deepcopy(backbone))
    assert not any(isinstance(m, NORMS) for m in fused.modules())
    assert not any(p.requires_grad for p in fused.parameters())
    images, masks = torch.randn(2, 3, 96, 128), torch.zeros(2, 96, 128, dtype=torch.bool)
    with torch.no_grad():
        a, b = backbone(images, masks)[0], fused(images, masks)[0]
    assert float((a - b).norm() / a.norm()) < 1e-5


def test_tiny_detector_outputs_are_unchanged():
    torch.manual_seed(0)
    model = build_model(load_config(TINY).model, load_weights=False).eval()
    _random_statistics(model)
    fused = fuse_batchnorm(copy.deepcopy(model))
    assert not any(isinstance(m, NORMS) for m in fused.modules())
    inputs, _ = detector_batch()
    with torch.no_grad():
        a, b = model(*inputs), fused(*inputs)
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.boxes, b.boxes, rtol=1e-4, atol=1e-5)
