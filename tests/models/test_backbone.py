import pytest
import torch
import torchvision

from detector.models.backbone import TorchvisionBackbone, WeightsError, load_backbone_weights


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
