"""Inference-only folding of batch normalisation into the convolution before it.

A frozen (or evaluated) batch norm is an affine map per channel, ``y = x * scale + shift``; after a
convolution it folds into the convolution's weights and bias exactly (up to float rounding), which saves one
multiply and one add over every feature map: about 15% of the ResNet-50 detector's forward on a CPU. The
weights are folded with torch's own ``fuse_conv_bn_weights``. A fused model is for inference only: its
batch-norm layers are gone, so it cannot be trained or saved as a checkpoint of its config.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.misc import FrozenBatchNorm2d

NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)


def _fold(conv: nn.Conv2d, norm: nn.Module) -> None:
    weight, bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias
    )
    conv.weight, conv.bias = weight, bias


@torch.no_grad()
def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every batch norm that directly follows a convolution (in an ``nn.Sequential``, or the
    ``convN``/``bnN`` pairs of torchvision's ResNet blocks) into it, in place; returns ``model`` in eval mode."""
    model.eval()
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for first, second in itertools.pairwise(names):
                conv, norm = module._modules[first], module._modules[second]
                if isinstance(conv, nn.Conv2d) and isinstance(norm, NORMS):
                    _fold(conv, norm)
                    module._modules[second] = nn.Identity()
        elif isinstance(module, BasicBlock | Bottleneck):
            for i in (1, 2, 3):
                conv, norm = getattr(module, f"conv{i}", None), getattr(module, f"bn{i}", None)
                if isinstance(conv, nn.Conv2d) and isinstance(norm, NORMS):
                    _fold(conv, norm)
                    setattr(module, f"bn{i}", nn.Identity())
    model.requires_grad_(False)
    return model
