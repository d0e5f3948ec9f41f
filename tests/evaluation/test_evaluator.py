import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detector.data.episodes import Episode
from detector.data.query_pool import QueryRecord
from detector.data.records import Category, DetectionData, ImageRecord
from detector.data.splits import Split
from detector.evaluation.evaluator import OneShotEvaluator, summarise_repeats
from detector.evaluation.report import console_table
from detector.evaluation.template_baseline import TemplateMatcher


def _data():
    images = [
        ImageRecord(
            10,
            Path("a.jpg"),
            100,
            100,
            np.array([[10, 10, 30, 30], [50, 50, 90, 90]], np.float32),
            np.array([1, 2]),
            np.array([False, False]),
        ),
        ImageRecord(
            11,
            Path("b.jpg"),
            100,
            100,
            np.array([[0, 0, 40, 40], [60, 60, 80, 80]], np.float32),
            np.array([1, 1]),
            np.array([False, False]),
        ),
        ImageRecord(
            12,
            Path("c.jpg"),
            100,
            100,
            np.array([[5, 5, 50, 50]], np.float32),
            np.array([2]),
            np.array([False]),
        ),
    ]
    return DetectionData("toy", [Category(1, "cat"), Category(2, "dog")], images)


def _episode(data, image_id, category, present=True, repeat=0):
    query = QueryRecord(category, -1, "q.jpg", (0, 0, 10, 10))
    return Episode(data.index_of(image_id), category, query, repeat, present)


SPLIT = Split(seen=("cat",), unseen=("dog",))


def test_ground_truth_detections_give_100():
    data = _data()
    evaluator = OneShotEvaluator(data, SPLIT)
    for repeat in range(3):
        for record in data.images:
            for category in sorted(record.classes()):
                boxes = record.boxes[record.labels == category]
                evaluator.process(
                    [_episode(data, record.image_id, category, repeat=repeat)],
                    [{"boxes": boxes, "scores": np.ones(len(boxes))}],
                )
    result = evaluator.evaluate()
    assert result["seen_ap50"] == pytest.approx(100.0) and result["unseen_ap50"] == pytest.approx(100.0)
    assert result["seen_ap50_std"] == pytest.approx(0.0) and result["repeats"] == 3
    assert result["per_class"]["dog"]["unseen"] and result["per_class"]["cat"]["ap50"] == pytest.approx(100.0)


def test_mix_of_hits_and_misses_equals_pycocotools_directly():
    data = _data()
    detections = {
        (10, 1): ([[11, 11, 31, 31], [60, 0, 90, 20]], [0.9, 0.95]),  # hit (IoU 0.82) below a miss
        (11, 1): ([[0, 0, 38, 41], [61, 60, 80, 81], [0, 60, 20, 80]], [0.8, 0.3, 0.6]),  # two hits, one miss
        (10, 2): ([[0, 0, 10, 10]], [0.7]),  # miss
        (12, 2): ([[5, 5, 49, 52]], [0.4]),  # hit
    }
    evaluator = OneShotEvaluator(data, SPLIT)
    coco_dets = []
    for (image_id, category), (boxes, scores) in detections.items():
        evaluator.process(
            [_episode(data, image_id, category)], [{"boxes": np.array(boxes), "scores": np.array(scores)}]
        )
        coco_dets += [
            {
                "image_id": image_id,
                "category_id": category,
                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                "score": s,
            }
            for b, s in zip(boxes, scores)
        ]
    result = evaluator.evaluate()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = data.to_coco()
        gt.createIndex()
        direct = COCOeval(gt, gt.loadRes(coco_dets), "bbox")
        direct.evaluate()
        direct.accumulate()
    for k, name in enumerate(["cat", "dog"]):
        p = direct.eval["precision"][0, :, k, 0, -1]
        assert result["per_class"][name]["ap50"] == pytest.approx(100 * p[p > -1].mean())
    # by hand for dog: one hit (score 0.4) after one miss (0.7) -> precision 0.5 at recall 1 of 1 GT in c.jpg,
    # and the dog in a.jpg is never found: recall reaches 0.5 with precision 0.5 -> AP50 = 0.5 * 51/101 * 100
    assert result["unseen_ap50"] == pytest.approx(100 * 0.5 * 51 / 101, abs=0.01)
    # operating points by hand (IoU 0.5): cats (3 boxes) scored 0.95 miss, 0.9 hit, 0.8 hit, 0.6 miss, 0.3 hit;
    # dogs (2 boxes) 0.7 miss, 0.4 hit
    expected = {
        0.3: (3 / 5, 3 / 3, 1 / 2, 1 / 2),
        0.4: (2 / 4, 2 / 3, 1 / 2, 1 / 2),
        0.6: (2 / 4, 2 / 3, 0 / 1, 0 / 2),
    }
    for t, (seen_p, seen_r, unseen_p, unseen_r) in expected.items():
        assert result[f"seen_precision@{t}"] == pytest.approx(100 * seen_p)
        assert result[f"seen_recall@{t}"] == pytest.approx(100 * seen_r)
        assert result[f"unseen_precision@{t}"] == pytest.approx(100 * unseen_p)
        assert result[f"unseen_recall@{t}"] == pytest.approx(100 * unseen_r)


def test_absent_episodes_count_false_positives():
    data = _data()
    evaluator = OneShotEvaluator(data, SPLIT)
    for image_id in (10, 11):  # every cat found exactly, score 0.9
        cats = data.images[data.index_of(image_id)].boxes[data.images[data.index_of(image_id)].labels == 1]
        evaluator.process([_episode(data, image_id, 1)], [{"boxes": cats, "scores": np.full(len(cats), 0.9)}])
    evaluator.process([_episode(data, 12, 2)], [{"boxes": np.array([[5, 5, 50, 50]]), "scores": np.array([0.9])}])
    # cat queried in c.jpg (no cat): detections at 0.95, 0.4, 0.2; dog queried in b.jpg (no dog): one at 0.35
    evaluator.process(
        [_episode(data, 12, 1, present=False)],
        [{"boxes": np.array([[0, 0, 10, 10]] * 3), "scores": np.array([0.95, 0.4, 0.2])}],
    )
    evaluator.process(
        [_episode(data, 11, 2, present=False)],
        [{"boxes": np.array([[0, 0, 10, 10]]), "scores": np.array([0.35])}],
    )
    result = evaluator.evaluate()
    assert result["fp_per_absent_episode@0.3"] == pytest.approx(3 / 2)
    assert result["fp_per_absent_episode@0.5"] == pytest.approx(1 / 2)
    assert result["seen_ap50"] == pytest.approx(100.0)  # the standard protocol never sees the false positive
    # with it: one false positive ranked above three hits -> interpolated precision 3/4 at every recall
    assert result["seen_ap50_with_absent"] == pytest.approx(75.0)


def test_a_class_or_pair_no_episode_could_search_is_not_scored_as_missed():
    data = _data()
    data = DetectionData(  # bird: one instance in a.jpg, so no exemplar outside its image and no episode
        "toy",
        [*data.categories, Category(3, "bird")],
        [
            ImageRecord(
                10,
                Path("a.jpg"),
                100,
                100,
                np.array([[10, 10, 30, 30], [50, 50, 90, 90], [35, 0, 45, 8]], np.float32),
                np.array([1, 2, 3]),
                np.array([False, False, False]),
            ),
            *data.images[1:],
        ],
    )
    split = Split(seen=("cat", "bird"), unseen=("dog",))
    evaluator = OneShotEvaluator(data, split)
    for image_id in (10, 11):  # every cat found exactly
        record = data.images[data.index_of(image_id)]
        cats = record.boxes[record.labels == 1]
        evaluator.process([_episode(data, image_id, 1)], [{"boxes": cats, "scores": np.ones(len(cats))}])
    # dog searched in c.jpg only (found); the dog of a.jpg was never searched for
    evaluator.process([_episode(data, 12, 2)], [{"boxes": np.array([[5, 5, 50, 50]]), "scores": np.array([0.9])}])
    result = evaluator.evaluate()
    assert result["unqueried_classes"] == ["bird"]
    assert "bird" not in result["per_class"] or np.isnan(result["per_class"]["bird"]["ap50"])
    assert result["seen_ap50"] == pytest.approx(100.0)  # the mean of cat alone, not (100 + 0) / 2
    assert result["unseen_ap50"] == pytest.approx(100.0)  # the unsearched dog of a.jpg is not a miss
    assert "bird" in console_table(result)


def test_template_baseline_finds_a_pasted_object():
    rng = np.random.default_rng(0)
    patch = rng.integers(0, 255, (24, 30, 3), dtype=np.uint8)
    target = np.full((200, 240, 3), 128, np.uint8)
    target[100:124, 50:80] = patch
    result = TemplateMatcher(sides=(30,)).predict(patch, target)
    best = result["boxes"][np.argmax(result["scores"])]
    np.testing.assert_allclose(best, [50, 100, 80, 124], atol=1)
    assert result["scores"].max() > 0.99


def test_repeats_summary_skips_undefined_figures_without_warnings():
    # precision at a threshold no detection reaches is undefined (nan) in that repeat: the mean and std are over the
    # repeats where it is defined, and a figure undefined in every repeat stays nan, quietly
    rows = [
        {"repeat": r, "per_class": {"dog": {"ap50": ap}}, "unseen_ap50": ap, "unseen_precision@0.6": p, "never": np.nan}
        for r, (ap, p) in enumerate([(40.0, np.nan), (50.0, 50.0), (60.0, 70.0)])
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = summarise_repeats(rows, SPLIT, images=7)
    assert out["unseen_ap50"] == pytest.approx(50.0) and out["unseen_ap50_std"] == pytest.approx((200 / 3) ** 0.5)
    assert out["unseen_precision@0.6"] == pytest.approx(60.0) and out["unseen_precision@0.6_std"] == pytest.approx(10.0)
    assert np.isnan(out["never"]) and np.isnan(out["never_std"])
    assert out["per_class"] == {
        "dog": {"ap50": pytest.approx(50.0), "ap50_std": pytest.approx((200 / 3) ** 0.5), "unseen": True}
    }
    assert out["repeats"] == 3 and out["images"] == 7
