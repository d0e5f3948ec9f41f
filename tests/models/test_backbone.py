import math

import pytest
import torch
import torchvision

from detector.models.backbone import Backbone, TorchvisionBackbone, WeightsError, load_backbone_weights


def test_local_resnet_weights_load_and_mismatches_are_reported(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    torch.nn.init.constant_(reference.layer1[0].conv1.weight, 0.125)
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    body = TorchvisionBackbone("resnet18")
    report = load_backbone_weights(body, "resnet18", str(tmp_path / "r18.pth"))
    assert report["missing"] == [] and set(report["unexpected"]) == {"fc.weight", "fc.bias"}
    assert torch.all(body.body[4][0].conv1.weight == 0.125)  # layer1 is the 5th block of the body

    state = reference.state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=r"layer1.0.conv1.weight: file \(3, 3, 3, 3\) vs model \(64, 64, 3, 3\)"):
        load_backbone_weights(TorchvisionBackbone("resnet18"), "resnet18", str(tmp_path / "bad.pth"))
    with pytest.raises(WeightsError, match="does not exist"):
        load_backbone_weights(TorchvisionBackbone("resnet18"), "resnet18", str(tmp_path / "missing.pth"))
    with pytest.raises(WeightsError, match="unknown torchvision weights ResNet18_Weights.NOPE"):
        load_backbone_weights(TorchvisionBackbone("resnet18"), "resnet18", "NOPE")


def test_offline_download_error_says_what_to_do(monkeypatch):
    enum = torchvision.models.get_weight("ResNet18_Weights.IMAGENET1K_V1")

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(type(enum), "get_state_dict", offline)
    with pytest.raises(WeightsError, match="may be offline.*local file"):
        load_backbone_weights(TorchvisionBackbone("resnet18"), "resnet18", "IMAGENET1K_V1")


@pytest.mark.parametrize("name,channels", [("resnet50", 2048), ("swin_v2_s", 768)])
def test_paper_backbones_give_stride_16(name, channels):
    from detector.models.backbone import Backbone

    body = TorchvisionBackbone(name)
    assert body.out_channels == channels
    backbone = Backbone(body, 256).eval()
    with torch.no_grad():
        features, masks = backbone(torch.randn(1, 3, 128, 160), torch.zeros(1, 128, 160, dtype=torch.bool))
    assert features.shape == (1, 256, 8, 10) and masks.shape == (1, 8, 10)


def test_swin_v2_s_is_built_as_the_official_one():
    """Window 16, drop-path rising to 0.1, and position-bias inputs scaled by the pre-training windows 12, 12, 12,
    6: offset ``d`` -> ``sign(u) log2(1 + |u|) / 3`` with ``u = 8 d / (window - 1)``, checked by hand."""
    body = TorchvisionBackbone("swin_v2_s")
    stages = [body.body[0][i] for i in (1, 3, 5, 7)]
    assert all(block.attn.window_size == [16, 16] for stage in stages for block in stage)
    assert stages[3][1].stochastic_depth.p == pytest.approx(0.1) and stages[0][0].stochastic_depth.p == 0.0
    table = stages[0][0].attn.relative_coords_table[0]  # (31, 31, 2): offsets -15..15 in (dy, dx)
    assert table[15, 15 + 11, 1].item() == pytest.approx(math.log2(1 + 8) / 3)  # dx = 11 = window 12 - 1
    assert table[15 - 15, 15, 0].item() == pytest.approx(-math.log2(1 + 8 * 15 / 11) / 3)  # dy = -15
    last = stages[3][0].attn.relative_coords_table[0]
    assert last[15, 15 + 5, 1].item() == pytest.approx(math.log2(1 + 8) / 3)  # stage 4: window 6 - 1 = 5
    plain = TorchvisionBackbone("swin_v2_s", swin_pretrained_windows=None)  # torchvision's rule: its own window
    assert plain.body[0][1][0].attn.relative_coords_table[0, 15, 30, 1].item() == pytest.approx(math.log2(9) / 3)


def test_the_learned_upsampler_halves_the_channels_and_sits_outside_the_body():
    learned = Backbone(TorchvisionBackbone("resnet18"), 64)
    bilinear = Backbone(TorchvisionBackbone("resnet18", upsample="bilinear"), 64)
    assert isinstance(learned.upsample, torch.nn.ConvTranspose2d) and learned.upsample.out_channels == 256
    assert bilinear.upsample is None and bilinear.input_proj.in_channels == 512
    assert not any(p is learned.upsample.weight for p in learned.body.parameters())  # trains when the body freezes
    for backbone in (learned.eval(), bilinear.eval()):
        with torch.no_grad():
            features, masks = backbone(torch.randn(1, 3, 96, 128), torch.zeros(1, 96, 128, dtype=torch.bool))
        assert features.shape == (1, 64, 6, 8) and masks.shape == (1, 6, 8)


def _reference_name(key: str) -> list[str]:
    """Our torchvision key -> the SimMIM checkpoint's name(s), written out from the reference code's layout."""
    parts = key.split(".")
    if key.startswith("norm."):
        return ["encoder.norm." + parts[1]]
    k = int(parts[1])
    if k == 0:
        return ["encoder.patch_embed." + {"0": "proj", "2": "norm"}[parts[2]] + "." + parts[3]]
    if k % 2 == 0:
        return [f"encoder.layers.{(k - 2) // 2}.downsample." + ".".join(parts[2:])]
    rest = ".".join(parts[3:])
    rest = rest.replace("mlp.0.", "mlp.fc1.").replace("mlp.3.", "mlp.fc2.").replace("cpb_mlp", "rpe_mlp")
    head = f"encoder.layers.{(k - 1) // 2}.blocks.{parts[2]}."
    if rest == "attn.qkv.bias":
        return [head + "attn.q_bias", head + "attn.v_bias"]
    return [head + rest]


def test_a_simmim_checkpoint_in_the_reference_names_loads_tensor_by_tensor(tmp_path):
    """Every tensor of a Swin-v2-S, renamed to the SimMIM checkpoint's layout (``encoder.`` prefix, ``layers.i.
    blocks.j``, ``rpe_mlp``, separate ``q_bias``/``v_bias``), with its decoder and mask token: each lands where it
    came from, the key bias is zero, and the report lists what did not fit."""
    source = TorchvisionBackbone("swin_v2_s")
    torch.manual_seed(0)
    ours = {"features": source.body[0], "norm": source.body[1]}
    expected = {
        f"{p}.{k}": torch.randn_like(v)
        for p, m in ours.items()
        for k, v in m.state_dict().items()
        if "relative_" not in k  # buffers the model rebuilds
    }
    reference = {"encoder.mask_token": torch.zeros(1, 1, 96), "decoder.0.weight": torch.zeros(3, 768, 1, 1)}
    for key, value in expected.items():
        names = _reference_name(key)
        if len(names) == 2:  # q and v biases; the key bias (middle third) must come back as zero
            third = value.numel() // 3
            reference[names[0]], reference[names[1]] = value[:third], value[2 * third :]
            expected[key] = torch.cat([value[:third], torch.zeros(third), value[2 * third :]])
        else:
            reference[names[0]] = value
    reference["encoder.layers.0.blocks.0.attn.relative_coords_table"] = torch.zeros(1, 23, 23, 2)
    path = tmp_path / "simmim.pth"
    torch.save({"model": reference}, path)
    target = TorchvisionBackbone("swin_v2_s")
    report = load_backbone_weights(target, "swin_v2_s", str(path))
    assert report["missing"] == [] and sorted(report["unexpected"]) == ["decoder.0.weight", "encoder.mask_token"]
    assert report["loaded"] == len(expected) and report["converted"] == len(reference) - 3
    loaded = {
        f"{p}.{k}": v
        for p, m in {"features": target.body[0], "norm": target.body[1]}.items()
        for k, v in m.state_dict().items()
    }
    for key, value in expected.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0, msg=key)
