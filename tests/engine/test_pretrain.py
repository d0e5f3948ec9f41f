from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from detector.config import load_config
from detector.data.query_pool import QueryPool, QueryRecord
from detector.data.records import Category
from detector.engine.pretrain import _augment, extract_crops, pretrain_backbone
from detector.models import build

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _pool(tmp_path):
    """Two images: red squares (class 1) in one, blue wide bars (class 2) in the other."""
    red = np.full((120, 160, 3), 128, np.uint8)
    blue = red.copy()
    records = []
    for i, x in enumerate((10, 60, 110)):
        red[20:60, x : x + 40] = (220, 30, 30)
        records.append(QueryRecord(1, 0, tmp_path / "red.png", (float(x), 20.0, x + 40.0, 60.0)))
        blue[70 + 10 * i : 78 + 10 * i, 20:100] = (30, 30, 220)
        records.append(QueryRecord(2, 1, tmp_path / "blue.png", (20.0, 70.0 + 10 * i, 100.0, 78.0 + 10 * i)))
    cv2.imwrite(str(tmp_path / "red.png"), red[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "blue.png"), blue[:, :, ::-1])
    return QueryPool(records, [Category(1, "red"), Category(2, "blue")])


def test_crops_keep_aspect_top_left_and_labels(tmp_path):
    crops = extract_crops(_pool(tmp_path), {1, 2}, size=32, max_crops=100, seed=0)
    assert crops.images.shape == (6, 3, 32, 32) and crops.labels.tolist().count(1) == 3
    square, bar = crops.labels.tolist().index(1), crops.labels.tolist().index(2)
    assert not crops.masks[square].any()  # 40x40 box -> the whole 32x32 canvas
    # an 80x8 bar -> 32 wide, round(8 * 32 / 80) = 3 rows high, at the top
    assert (~crops.masks[bar]).sum(0).max() == 3 and not crops.masks[bar][:3].any() and crops.masks[bar][3:].all()
    assert crops.images[square, 0].float().mean() > 200 and crops.images[bar, 2, :3].float().mean() > 200
    assert (crops.images[bar][:, 3:] == 0).all()
    # only the asked classes, at most max_crops
    assert set(extract_crops(_pool(tmp_path), {2}, 32, 100, 0).labels.tolist()) == {2}
    assert len(extract_crops(_pool(tmp_path), {1, 2}, 32, 4, 0).labels) == 4
    with pytest.raises(ValueError, match="no query-pool exemplars"):
        extract_crops(_pool(tmp_path), {7}, 32, 100, 0)


def test_augment_keeps_padding_zero_and_flips_the_valid_part_only():
    images = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    images[0, :, :, :2] = 255  # bright left edge of a 6-wide crop
    masks = torch.ones(1, 8, 8, dtype=torch.bool)
    masks[0, :, :6] = False
    flips = 0
    for seed in range(20):
        x = _augment(images, masks, torch.Generator().manual_seed(seed), hflip=True)
        assert (x[0, :, :, 6:] == 0).all()
        flipped = bool(x[0, 0, 0, 5] > x[0, 0, 0, 0])  # the bright edge moved to the valid part's right end
        flips += flipped
        assert not (_augment(images, masks, torch.Generator().manual_seed(seed), hflip=False)[0, 0, 0, 5] > 0.5)
    assert 3 <= flips <= 17


def test_pretraining_learns_the_classes_and_touches_only_backbone_and_identity_head(tmp_path):
    config = load_config(
        CONFIGS / "tiny_synthetic.yaml",
        ["model.backbone.width=8", "model.hidden_dim=32", "model.num_layers=1", "model.ffn_dim=64"],
    )
    torch.manual_seed(0)
    model, _, _ = build(config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    crops = extract_crops(_pool(tmp_path), {1, 2}, 32, 100, 0)
    report = pretrain_backbone(model, crops, 120, 6, 3e-3, torch.device("cpu"), 0, progress=False)
    assert report["steps"] == 120 and report["accuracy"] >= 0.9  # chance: 0.5
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("backbone.body") for k in changed)
    assert changed and all(k.startswith(("backbone.", "identity_head.")) for k in changed)
    assert any(k.startswith("identity_head.") for k in changed)
    no_head_config = ["model.identity_classes=0", "loss.query_metric_weight=0"]
    no_head, _, _ = build(load_config(CONFIGS / "tiny_synthetic.yaml", no_head_config))
    with pytest.raises(ValueError, match="model.identity_classes"):
        pretrain_backbone(no_head, crops, 1, 2, 1e-3, torch.device("cpu"), 0, progress=False)
