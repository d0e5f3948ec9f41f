"""Backbones shared by the target and the query image: single-scale features at stride 16, width ``d``.

- ResNet-18/50 (torchvision, frozen batch norm): the last stage (stride 32) upsampled x2;
- Swin-v2-S (torchvision): the last stage (stride 32) upsampled x2;
- ``tiny``: four conv stages (stride 16), GroupNorm, for CPU training on the embedded benchmark.

Each is followed by a 1x1 conv + GroupNorm to the model width. Pretrained weights come from a torchvision
weights name (downloaded only when asked, with a clear error when offline) or a local file, whose key and
shape mismatches are reported.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

STRIDE = 16


class WeightsError(RuntimeError):
    """Backbone weights that cannot be obtained or do not fit."""


def _conv_unit(inputs: int, outputs: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU(inplace=True),
    )


class MaskedGroupNorm(nn.GroupNorm):
    """GroupNorm whose statistics are taken over the valid (non-padding) cells only, so that a feature does
    not depend on how much padding its batch needed."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            return super().forward(x)
        b, c, h, w = x.shape
        valid = (~mask).to(x.dtype)[:, None, None]  # (B, 1, 1, h, w)
        groups = x.view(b, self.num_groups, c // self.num_groups, h, w)
        count = valid.sum(dim=(2, 3, 4), keepdim=True).clamp(min=1) * (c // self.num_groups)
        mean = (groups * valid).sum(dim=(2, 3, 4), keepdim=True) / count
        var = (((groups - mean) * valid) ** 2).sum(dim=(2, 3, 4), keepdim=True) / count
        out = ((groups - mean) / torch.sqrt(var + self.eps)).view(b, c, h, w)
        return out * self.weight[None, :, None, None] + self.bias[None, :, None, None]


class TinyBackbone(nn.Module):
    """Four stride-2 stages (stride 16), widths ``w, 2w, 4w, 6w``, batch norm (running statistics at inference,
    so that features do not depend on the batch's padding)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 6 * width]
        # the first stage has a single strided conv: a second conv at half resolution would cost a fifth
        # of the network's compute for little gain at this scale
        units = [_conv_unit(3, widths[0], 2)]
        for i, o in itertools.pairwise(widths):
            units += [_conv_unit(i, o, 2), _conv_unit(o, o, 1)]
        self.units = nn.Sequential(*units)
        self.out_channels = widths[-1]

    def block_depths(self) -> tuple[dict[str, int], int]:
        """Layer-wise lr decay: each conv unit is one block, counted from the input."""
        return {name: int(name.split(".")[1]) for name, _ in self.named_parameters()}, len(self.units)

    def forward(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """With pixel ``masks (B, H, W)`` (``True`` = padding), padding is zeroed after every conv, so the
        features of an image do not depend on how far its batch was padded (exactly as conv zero-padding)."""
        x = images
        for unit in self.units:
            x = unit(x)
            if masks is not None:
                x = x * ~_resize_mask(masks, x.shape[-2:])[:, None]
        return x


def _resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(mask[:, None].float(), size=size, mode="nearest")[:, 0].bool()


class TorchvisionBackbone(nn.Module):
    """A torchvision classifier's feature extractor; the stride-32 output upsampled to stride 16."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        if name in ("resnet18", "resnet50"):
            net = getattr(torchvision.models, name)(weights=None, norm_layer=FrozenBatchNorm2d)
            self.body = nn.Sequential(
                net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4
            )
            self.out_channels = 512 if name == "resnet18" else 2048
            self.channels_last = False
            # convolutions in channels-last layout: measured 1.5x faster for ResNet-50 at 512x512 on a CPU
            self.body.to(memory_format=torch.channels_last)
        elif name == "swin_v2_s":
            net = torchvision.models.swin_v2_s(weights=None)
            self.body = nn.Sequential(net.features, net.norm)
            self.out_channels = 768
            self.channels_last = True
        else:
            raise ValueError(f"unknown backbone {name!r}; choose resnet18, resnet50, swin_v2_s or tiny")

    def block_depths(self) -> tuple[dict[str, int], int]:
        """``({parameter name: depth}, count)`` for layer-wise lr decay, depth 0 next to the input.

        ResNet: the stem is 0 and ``layer1..layer4`` are 1..4 (count 5). Swin-v2: every transformer block
        is one depth (the patch embedding is 0, blocks 1..24 for Swin-v2-S); a patch-merging layer takes the
        depth of the block before it and the final norm the depth above the last block (count 26), so the last
        block trains at ``layer_decay`` times the head's rate, as the official code's layer ids.
        """
        depths: dict[str, int] = {}
        if self.name.startswith("resnet"):  # body: conv1, bn1, relu, maxpool, layer1..layer4
            for name, _ in self.named_parameters():
                depths[name] = max(0, int(name.split(".")[1]) - 3)
            return depths, 5
        features = self.body[0]
        depth, last = 0, 0
        for index, stage in enumerate(features):
            if index > 0 and isinstance(stage, nn.Sequential):  # a stage of transformer blocks
                for block_index, block in enumerate(stage):
                    depth += 1
                    for name, _ in block.named_parameters():
                        depths[f"body.0.{index}.{block_index}.{name}"] = depth
            else:  # patch embedding (depth 0) or patch merging (the depth of the block before it)
                for name, _ in stage.named_parameters():
                    depths[f"body.0.{index}.{name}"] = depth
            last = depth
        for name, _ in self.body[1].named_parameters():  # the final norm: one above the last block
            depths[f"body.1.{name}"] = last + 1
        return depths, last + 2

    def forward(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        if self.channels_last:  # swin: (B, H, W, C) features
            features = self.body(images).permute(0, 3, 1, 2)
        else:
            features = self.body(images.contiguous(memory_format=torch.channels_last))
        upsampled = F.interpolate(features, scale_factor=2.0, mode="bilinear", align_corners=False)
        return upsampled.contiguous()


class Backbone(nn.Module):
    """``forward(images (B, 3, H, W), pixel_masks (B, H, W)) -> (features (B, d, h, w), masks (B, h, w))``
    with ``h, w = ceil(H/16), ceil(W/16)`` and masks ``True`` on padding."""

    def __init__(self, body: nn.Module, hidden_dim: int, trainable: bool = True) -> None:
        super().__init__()
        self.body = body
        self.input_proj = nn.Conv2d(body.out_channels, hidden_dim, 1)
        self.norm = MaskedGroupNorm(32, hidden_dim)
        self.stride = STRIDE
        if not trainable:
            self.body.requires_grad_(False)

    def forward(self, images: torch.Tensor, pixel_masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(images, pixel_masks)
        h, w = -(-images.shape[-2] // STRIDE), -(-images.shape[-1] // STRIDE)
        if features.shape[-2:] != (h, w):
            features = F.interpolate(features, size=(h, w), mode="bilinear", align_corners=False)
        masks = _resize_mask(pixel_masks, (h, w))
        return self.norm(self.input_proj(features), masks), masks


_WEIGHT_ENUMS = {
    "resnet18": "ResNet18_Weights",
    "resnet50": "ResNet50_Weights",
    "swin_v2_s": "Swin_V2_S_Weights",
}


def load_backbone_weights(body: nn.Module, name: str, weights: str) -> dict:
    """Load ``weights`` (a torchvision weights name such as ``IMAGENET1K_V2``, or a file) into ``body``.

    Returns ``{"missing": [...], "unexpected": [...]}`` (classifier heads are expected to be unexpected).
    Shape mismatches are an error naming each key.
    """
    if Path(weights).suffix in (".pth", ".pt", ".bin", ".safetensors") or Path(weights).exists():
        state = _read_state_file(Path(weights))
    else:
        if name not in _WEIGHT_ENUMS:
            raise WeightsError(f"backbone {name!r} has no torchvision weights; give a file path")
        try:
            enum = torchvision.models.get_weight(f"{_WEIGHT_ENUMS[name]}.{weights}")
        except (KeyError, ValueError) as error:
            raise WeightsError(f"unknown torchvision weights {_WEIGHT_ENUMS[name]}.{weights}") from error
        try:
            state = enum.get_state_dict(progress=False)
        except OSError as error:  # URLError is an OSError
            raise WeightsError(
                f"could not download {_WEIGHT_ENUMS[name]}.{weights} ({error}); this machine may be offline. "
                f"Download {enum.url} elsewhere and set model.backbone.weights to the local file"
            ) from error
    return load_matching(_target_module(body, name), state, f"backbone weights {weights}")


def _target_module(body: nn.Module, name: str) -> nn.Module:
    """The torchvision module whose key names the weights use (resnet: the body's layers by name)."""
    if name in ("resnet18", "resnet50"):
        names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
        return nn.ModuleDict(dict(zip(names, body.body)))
    if name == "swin_v2_s":
        return nn.ModuleDict({"features": body.body[0], "norm": body.body[1]})
    return body


def _read_state_file(path: Path) -> dict:
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as error:
            raise WeightsError(
                f"{path} is a .safetensors file, which needs the safetensors package: pip install safetensors "
                f"(or convert the weights to a .pth file)"
            ) from error

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return state


def load_matching(module: nn.Module, state: dict, what: str) -> dict:
    """``load_state_dict(strict=False)`` that refuses shape mismatches and reports missing/unexpected keys."""
    own = module.state_dict()
    mismatched = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if mismatched:
        raise WeightsError(f"{what} do not fit the model: " + "; ".join(mismatched[:10]))
    result = module.load_state_dict(state, strict=False)
    return {"missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys)}
