import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from detector.cli.infer import main as infer_main
from detector.config import load_config
from detector.engine.checkpoint import save_checkpoint
from detector.inference.export import check_onnx, export_onnx
from detector.inference.predictor import Predictor
from detector.models import build

OVERRIDES = [
    "model.backbone.width=8",
    "model.hidden_dim=32",
    "model.num_layers=1",
    "model.ffn_dim=64",
    "model.num_queries=8",
    "model.bias_hidden_dim=16",
    "data.test_size=96",
    "data.target_max_size=128",
    "data.query_size=32",
    "eval.max_detections=8",
]


def _save(path, *extra):
    config = load_config("configs/tiny_synthetic.yaml", [*OVERRIDES, *extra])
    torch.manual_seed(0)
    model, _, _ = build(config)
    # give the batch-norm layers non-trivial running statistics, as a trained model has
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    save_checkpoint({"model": model.state_dict(), "config": config.to_dict()}, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("ckpt") / "model.pth")


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    image = cv2.resize(
        rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_NEAREST
    )
    return image


def test_scaled_images_map_to_original_pixels(tmp_path):
    # as many queries as grid cells (6 x 8): every proposal is selected, so near-ties cannot change the set
    predictor = Predictor.from_checkpoint(
        _save(tmp_path / "m.pth", "model.num_queries=48", "eval.max_detections=48"), "cpu"
    )
    query = _image(40, 40, 1)
    small = _image(96, 144, 2)  # resized to 96 x 128 (the longer side capped): scale 0.889
    large = cv2.resize(small, (288, 192), interpolation=cv2.INTER_NEAREST)  # the same picture at 2x
    a = predictor.predict(query, small, score_threshold=0.0)
    b = predictor.predict(query, large, score_threshold=0.0)
    assert len(a["boxes"]) == 48
    # same network input up to resampling, so the boxes in original pixels differ by the 2x factor
    # (near-tied scores of an untrained model may order them differently: compare each box to its nearest)
    distance = np.abs(b["boxes"][:, None, :] - 2 * a["boxes"][None, :, :]).max(-1)
    assert distance.min(1).max() < 3.0
    assert (a["boxes"][:, 2] <= 144).all() and (a["boxes"][:, 3] <= 96).all()


def test_batch_equals_one_by_one_and_k_shot_copies_equal_one_shot(checkpoint):
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    query = _image(40, 56, 1)
    targets = [_image(96, 144, 2), _image(120, 90, 3), _image(100, 100, 4)]
    batched = predictor.predict(query, targets, score_threshold=0.0)
    for target, result in zip(targets, batched):
        single = predictor.predict(query, target, score_threshold=0.0)
        np.testing.assert_allclose(result["boxes"], single["boxes"], atol=1e-3)
        np.testing.assert_allclose(result["scores"], single["scores"], atol=1e-5)
    three = predictor.predict([query, query, query], targets[0], score_threshold=0.0)
    np.testing.assert_allclose(three["scores"], batched[0]["scores"], atol=1e-5)
    np.testing.assert_allclose(three["boxes"], batched[0]["boxes"], atol=1e-3)


def test_inputs_of_every_kind(checkpoint, tmp_path):
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    rgb = _image(64, 80, 5)
    Image.fromarray(rgb).save(tmp_path / "t.png")
    reference = predictor.predict(rgb, rgb, score_threshold=0.0)
    for target in (
        str(tmp_path / "t.png"),
        Image.fromarray(rgb),
        np.dstack([rgb, np.full((64, 80), 255, np.uint8)]),
        rgb.astype(np.uint16) * 257,
    ):
        np.testing.assert_allclose(
            predictor.predict(rgb, target, score_threshold=0.0)["scores"], reference["scores"], atol=1e-5
        )
    gray = predictor.predict(rgb[:, :, 0], rgb[:, :, 1], score_threshold=0.0)
    assert gray["boxes"].shape == (8, 4)
    huge = predictor.predict(rgb, cv2.resize(rgb, (4000, 3200)), score_threshold=0.0)
    assert (huge["boxes"][:, 2] <= 4000).all() and huge["boxes"][:, 2].max() > 200


def test_bad_query_boxes(checkpoint):
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    image = _image(64, 80)
    with pytest.raises(ValueError, match="outside the 80x64"):
        predictor.predict(image, image, query_box=(100, 10, 120, 30))
    with pytest.raises(ValueError, match="smaller than 4 pixels"):
        predictor.predict(image, image, query_box=(10, 10, 12, 40))
    with pytest.raises(ValueError, match="x2 <= x1"):
        predictor.predict(image, image, query_box=(30, 10, 20, 40))
    clipped = predictor.predict(image, image, query_box=(-10, -10, 40, 40), score_threshold=0.0)
    assert clipped["boxes"].shape == (8, 4)


def test_cli_agrees_with_api_and_lists_bad_files(checkpoint, tmp_path):
    folder = tmp_path / "targets"
    folder.mkdir()
    targets = [_image(96, 144, 2), _image(120, 90, 3)]
    for i, image in enumerate(targets):
        Image.fromarray(image).save(folder / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    query = _image(50, 60, 1)
    Image.fromarray(query).save(tmp_path / "query.png")
    body = infer_main(
        [
            "--checkpoint",
            str(checkpoint),
            "--query",
            str(tmp_path / "query.png"),
            "--query-box",
            "5,5,45,40",
            "--target",
            str(folder),
            "--out",
            str(tmp_path / "out"),
            "--score-threshold",
            "0",
            "--no-progress",
        ]
    )
    written = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert len(written["images"]) == 2 and len(written["unreadable"]) == 1 and "broken.jpg" in written["unreadable"][0]
    assert (tmp_path / "out" / "0.png").is_file() and (tmp_path / "out" / "1.png").is_file()
    api = Predictor.from_checkpoint(checkpoint, "cpu").predict(
        query, targets[1], query_box=(5, 5, 45, 40), score_threshold=0.0
    )
    cli = [d for d in body["detections"] if d["file_name"].endswith("1.png")]
    np.testing.assert_allclose([d["score"] for d in cli], api["scores"], atol=1e-5)
    x, y, w, h = cli[0]["bbox"]
    np.testing.assert_allclose([x, y, x + w, y + h], api["boxes"][0], atol=1e-3)


def test_onnx_export_matches_pytorch(checkpoint, tmp_path):
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    path = export_onnx(predictor.model, tmp_path / "m.onnx", size=128, query_size=32)
    diffs = check_onnx(predictor.model, path, size=128, query_size=32)
    assert diffs["max_abs_diff_scores"] < 1e-4 and diffs["max_abs_diff_boxes"] < 1e-4


def _greedy_nms(boxes, scores, iou):
    """Naive reference: visit boxes by score, keep one unless it overlaps a kept box by more than ``iou``."""
    kept = []
    for i in np.argsort(-scores, kind="stable"):
        x1, y1, x2, y2 = boxes[i]
        ok = True
        for j in kept:
            a1, b1, a2, b2 = boxes[j]
            inter = max(0.0, min(x2, a2) - max(x1, a1)) * max(0.0, min(y2, b2) - max(y1, b1))
            union = (x2 - x1) * (y2 - y1) + (a2 - a1) * (b2 - b1) - inter
            ok &= inter / union <= iou
        if ok:
            kept.append(i)
    return kept


def test_nms_option_matches_a_naive_greedy_nms(checkpoint, tmp_path):
    query, target = _image(50, 60, 1), _image(120, 160, 4)
    plain = Predictor.from_checkpoint(checkpoint, "cpu").predict(query, target, score_threshold=0.0)
    assert len(plain["scores"]) == 8  # NMS-free by default: every one of the top-k
    for iou in (0.1, 0.5):
        expected = _greedy_nms(plain["boxes"], plain["scores"], iou)
        nms = Predictor.from_checkpoint(checkpoint, "cpu", nms_iou=iou).predict(query, target, score_threshold=0.0)
        np.testing.assert_allclose(nms["scores"], plain["scores"][expected], atol=1e-6)
        np.testing.assert_allclose(nms["boxes"], plain["boxes"][expected], atol=1e-4)
    assert len(_greedy_nms(plain["boxes"], plain["scores"], 0.1)) < 8, "the check needs overlapping boxes"
    Image.fromarray(query).save(tmp_path / "q.png")
    Image.fromarray(target).save(tmp_path / "t.png")
    args = ["--checkpoint", str(checkpoint), "--query", str(tmp_path / "q.png"), "--target", str(tmp_path / "t.png")]
    body = infer_main(
        [*args, "--out", str(tmp_path / "o"), "--score-threshold", "0", "--nms-iou", "0.1", "--no-progress"]
    )
    assert len(body["detections"]) == len(_greedy_nms(plain["boxes"], plain["scores"], 0.1))
