import cv2
import numpy as np
import pytest
import torch
from inference_helpers import pattern_image, save_random_checkpoint
from PIL import Image

from detector.cli.infer import main as infer_main
from detector.inference.predictor import Predictor


def test_scaled_images_map_to_original_pixels(tmp_path):
    # as many queries as grid cells (6 x 8): every proposal is selected, so near-ties cannot change the set
    predictor = Predictor.from_checkpoint(
        save_random_checkpoint(tmp_path / "m.pth", "model.num_queries=48", "eval.max_detections=48"), "cpu"
    )
    query = pattern_image(40, 40, 1)
    small = pattern_image(96, 144, 2)  # resized to 96 x 128 (the longer side capped): scale 0.889
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
    query = pattern_image(40, 56, 1)
    targets = [pattern_image(96, 144, 2), pattern_image(120, 90, 3), pattern_image(100, 100, 4)]
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
    rgb = pattern_image(64, 80, 5)
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
    image = pattern_image(64, 80)
    with pytest.raises(ValueError, match="outside the 80x64"):
        predictor.predict(image, image, query_box=(100, 10, 120, 30))
    with pytest.raises(ValueError, match="smaller than 4 pixels"):
        predictor.predict(image, image, query_box=(10, 10, 12, 40))
    with pytest.raises(ValueError, match="x2 <= x1"):
        predictor.predict(image, image, query_box=(30, 10, 20, 40))
    clipped = predictor.predict(image, image, query_box=(-10, -10, 40, 40), score_threshold=0.0)
    assert clipped["boxes"].shape == (8, 4)


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
    query, target = pattern_image(50, 60, 1), pattern_image(120, 160, 4)
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


def test_cpu_batching_groups_targets_by_grid_and_large_models_run_one_at_a_time(checkpoint, monkeypatch):
    import detector.inference.predictor as module

    predictor = Predictor.from_checkpoint(checkpoint, "cpu", batch_size=2)
    query = torch.zeros(3, 32, 32)
    # test_size 96: grids of 96x128 (two), 96x96 (two), 128x96 (one); at most 2 a call
    shapes = [(96, 120), (96, 96), (96, 128), (90, 96), (128, 96)]
    assert predictor._batches(shapes, [query]) == [[0, 2], [1, 3], [4]]
    monkeypatch.setattr(module, "CPU_BATCHING_MAX_PARAMETERS", 0)  # as a large model
    assert predictor._batches(shapes, [query]) == [[0], [1], [2], [3], [4]]


def test_compile_failure_or_mismatch_falls_back_to_the_eager_outputs(checkpoint, monkeypatch, caplog):
    query, target = pattern_image(40, 56, 1), pattern_image(96, 144, 2)
    eager = Predictor.from_checkpoint(checkpoint, "cpu").predict(query, target, score_threshold=0.0)

    def broken(model):
        def run(*args):
            raise RuntimeError("no C++ compiler")

        return run

    def wrong(model):
        def run(*args):
            out = model(*args)
            out.logits = out.logits + 1.0
            return out

        return run

    for fake, message in ((broken, "torch.compile failed"), (wrong, "differ from the eager")):
        monkeypatch.setattr(torch, "compile", fake)
        predictor = Predictor.from_checkpoint(checkpoint, "cpu", compile=True)
        with caplog.at_level("WARNING"):
            result = predictor.predict(query, target, score_threshold=0.0)
        assert message in caplog.text and predictor.compiled is None
        np.testing.assert_allclose(result["scores"], eager["scores"], atol=1e-6)
        np.testing.assert_allclose(result["boxes"], eager["boxes"], atol=1e-4)
