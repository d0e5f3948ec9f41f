"""Backbones shared by the target and the query image: single-scale features at stride 16, width ``d``.

- ResNet-18/50 (torchvision, frozen batch norm): the last stage (stride 32) upsampled x2;
- Swin-v2-S (torchvision's blocks), built as the official IA-DETR's: window 16, drop-path 0.1, position-bias
  coordinates scaled by the window its weights were pre-trained with (12, 12, 12, 6 for the SimMIM weights); at
  the official sizes (at most 512 px, 16 x 16 cells at stride 32) the last stage's one window is the whole map, as
  the official code's two global blocks;
- ``tiny``: four conv stages (stride 16), GroupNorm, for CPU training on the embedded benchmark.

The stride-32 map is upsampled x2 by a learned 2x2 transposed convolution to half the channels (the official
code's), or bilinearly; then a 1x1 conv + GroupNorm to the model width. Pretrained weights come from a torchvision
weights name (downloaded only when asked, with a clear error when offline) or a local file in torchvision's key
names or in the Swin reference code's (Microsoft's Swin-v2 and SimMIM checkpoints: converted key by key); the
mapped, missing and unexpected keys are reported.
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
    """A torchvision classifier's feature extractor. ``upsample="bilinear"``: the stride-32 output upsampled x2
    here (stride 16 out); ``"learned"``: the stride-32 output as is (``stride`` 32), for :class:`Backbone`'s
    learned upsampler. Swin-v2-S: ``swin_window``, ``drop_path`` and ``swin_pretrained_windows`` (one per stage:
    the window its weights were pre-trained with, which scales the position-bias MLP's inputs, as Swin-v2's
    reference code; ``None``: the window itself, torchvision's rule)."""

    def __init__(
        self,
        name: str,
        upsample: str = "learned",
        swin_window: int = 16,
        swin_pretrained_windows: list[int] | None = (12, 12, 12, 6),
        drop_path: float = 0.1,
    ) -> None:
        super().__init__()
        self.name = name
        if upsample not in ("learned", "bilinear"):
            raise ValueError(f"unknown upsampling {upsample!r}; use learned or bilinear")
        self.bilinear = upsample == "bilinear"
        self.stride = STRIDE if self.bilinear else 2 * STRIDE
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
            from torchvision.models.swin_transformer import PatchMergingV2, SwinTransformer, SwinTransformerBlockV2

            net = SwinTransformer(
                patch_size=[4, 4],
                embed_dim=96,
                depths=[2, 2, 18, 2],
                num_heads=[3, 6, 12, 24],
                window_size=[swin_window, swin_window],
                stochastic_depth_prob=drop_path,
                block=SwinTransformerBlockV2,
                downsample_layer=PatchMergingV2,
            )
            if swin_pretrained_windows is not None:
                _scale_position_bias_inputs(net.features, list(swin_pretrained_windows))
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
        if not self.bilinear:
            return features.contiguous()
        upsampled = F.interpolate(features, scale_factor=2.0, mode="bilinear", align_corners=False)
        return upsampled.contiguous()


def _scale_position_bias_inputs(features: nn.Sequential, pretrained_windows: list[int]) -> None:
    """Swin-v2's continuous position bias reads relative offsets divided by ``window - 1`` of the window the
    weights were pre-trained with (Swin-v2's reference code; torchvision divides by the current window's): the
    offset table of each stage's blocks, recomputed for ``pretrained_windows`` (one per stage)."""
    stages = [module for index, module in enumerate(features) if index % 2 == 1]
    for stage, pretrained in zip(stages, pretrained_windows, strict=True):
        for block in stage:
            attention = block.attn
            h, w = attention.window_size
            dy = torch.arange(-(h - 1), h, dtype=torch.float32)
            dx = torch.arange(-(w - 1), w, dtype=torch.float32)
            table = torch.stack(torch.meshgrid(dy, dx, indexing="ij"), -1)[None] / (pretrained - 1) * 8
            table = torch.sign(table) * torch.log2(table.abs() + 1.0) / 3.0
            attention.relative_coords_table.copy_(table)


class Backbone(nn.Module):
    """``forward(images (B, 3, H, W), pixel_masks (B, H, W)) -> (features (B, d, h, w), masks (B, h, w))``
    with ``h, w = ceil(H/16), ceil(W/16)`` and masks ``True`` on padding."""

    def __init__(self, body: nn.Module, hidden_dim: int, trainable: bool = True) -> None:
        """A ``body`` of stride 32 gets a learned upsampler, ``ConvTranspose2d(C, C / 2, 2, 2)``: the official
        code's, outside the body (it trains when the body is frozen, at the head's learning rate)."""
        super().__init__()
        self.body = body
        channels = body.out_channels
        self.upsample = None
        if getattr(body, "stride", STRIDE) == 2 * STRIDE:
            self.upsample = nn.ConvTranspose2d(channels, channels // 2, 2, 2)
            channels //= 2
        self.input_proj = nn.Conv2d(channels, hidden_dim, 1)
        self.norm = MaskedGroupNorm(32, hidden_dim)
        self.stride = STRIDE
        if not trainable:
            self.body.requires_grad_(False)

    def forward(self, images: torch.Tensor, pixel_masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(images, pixel_masks)
        if self.upsample is not None:
            features = self.upsample(features)
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
    renamed = 0
    if name == "swin_v2_s" and is_reference_swin(state):
        state, renamed = reference_swin_to_torchvision(state)
    if name == "swin_v2_s":  # position tables and masks follow this model's windows, not the file's
        state = {k: v for k, v in state.items() if not k.endswith(_RECOMPUTED)}
    report = load_matching(_target_module(body, name), state, f"backbone weights {weights}")
    report["missing"] = [k for k in report["missing"] if not k.endswith(_RECOMPUTED)]
    return {**report, "converted": renamed}


def is_reference_swin(state: dict) -> bool:
    """Whether ``state`` uses the Swin reference code's names (``layers.i.blocks.j``, ``patch_embed``), as
    Microsoft's Swin-v2 and SimMIM checkpoints do, rather than torchvision's (``features.k.j``)."""
    return any(".blocks." in key or key.startswith(("patch_embed.", "encoder.patch_embed.")) for key in state)


_REFERENCE_PREFIXES = ("module.", "encoder.", "backbone.")
_RECOMPUTED = ("relative_coords_table", "relative_position_index", "attn_mask")  # buffers, rebuilt at init
_REFERENCE_BLOCK_NAMES = {"mlp.fc1.": "mlp.0.", "mlp.fc2.": "mlp.3.", "attn.rpe_mlp.": "attn.cpb_mlp."}


def reference_swin_to_torchvision(state: dict) -> tuple[dict, int]:
    """A Swin-v2 state dict in the reference code's names -> torchvision's (the keys of ``{"features": ...,
    "norm": ...}``), and how many tensors were renamed. Stage ``i``'s blocks are ``features.(2i+1)``, its patch
    merging ``features.(2i+2)``; ``q_bias`` and ``v_bias`` become ``qkv.bias`` (zero for the keys, as
    torchvision's Swin-v2 keeps it); the final norm (``norm`` or the detection code's ``norm3``) is ``norm``. What
    has no counterpart (the SimMIM decoder and mask token) keeps its name, so that the report lists it as
    unexpected; position tables and attention masks are buffers the model rebuilds, and are dropped."""
    out: dict = {}
    biases: dict[str, dict[str, torch.Tensor]] = {}
    renamed = 0
    for key, value in state.items():
        if key.endswith(_RECOMPUTED):
            continue
        short = key
        for prefix in _REFERENCE_PREFIXES:
            short = short.removeprefix(prefix)
        parts = short.split(".")
        new = None
        if short.startswith("patch_embed.proj."):
            new = "features.0.0." + parts[-1]
        elif short.startswith("patch_embed.norm."):
            new = "features.0.2." + parts[-1]
        elif parts[0] == "layers" and len(parts) > 3 and parts[2] == "blocks":
            stage, rest = int(parts[1]), ".".join(parts[3:])
            for old, replacement in _REFERENCE_BLOCK_NAMES.items():
                rest = rest.replace(old, replacement)
            if rest.endswith(("attn.q_bias", "attn.v_bias")):
                block = f"features.{2 * stage + 1}.{rest.rsplit('.', 2)[0]}"
                biases.setdefault(block, {})[rest.rsplit(".", 1)[1]] = value
                renamed += 1
                continue
            new = f"features.{2 * stage + 1}.{rest}"
        elif parts[0] == "layers" and len(parts) > 3 and parts[2] == "downsample":
            new = f"features.{2 * int(parts[1]) + 2}." + ".".join(parts[3:])
        elif parts[0] in ("norm", "norm3") and len(parts) == 2:
            new = "norm." + parts[1]
        if new is None:
            out[key] = value
        else:
            out[new] = value
            renamed += 1
    for block, pair in biases.items():
        q, v = pair.get("q_bias"), pair.get("v_bias")
        if q is not None and v is not None:
            out[f"{block}.attn.qkv.bias"] = torch.cat([q, torch.zeros_like(q), v])
        else:
            out.update({f"{block}.attn.{name}": value for name, value in pair.items()})
    return out, renamed


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
        raise WeightsError(
            f"weights file {path} does not exist; put the file there, or set model.backbone.weights to another "
            f"file, a torchvision weights name, or null (random initialisation)"
        )
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
    loaded = sum(1 for k in state if k in own)
    return {"loaded": loaded, "missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys)}
