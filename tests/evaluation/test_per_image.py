"""The official IA-DETR per-image protocol beside the dataset-level one: hand-computed cases where they differ."""

import numpy as np
import pytest
from toy_records import toy_record

from detector.data.episodes import Episode, evaluation_episodes, official_queries
from detector.data.query_pool import QueryPool, QueryRecord
from detector.data.records import Category, DetectionData
from detector.data.splits import Split
from detector.evaluation.per_image import interpolated_ap, match
from detector.evaluation.protocols import build_evaluator
from detector.evaluation.report import markdown_report

SPLIT = Split(seen=("cat",), unseen=("dog",))


def _data():
    return DetectionData(
        "toy",
        [Category(1, "cat"), Category(2, "dog")],
        [
            toy_record(1, [[0, 0, 10, 10], [50, 50, 90, 90]], [1, 2]),
            toy_record(2, [[20, 20, 40, 40]], [1]),
            toy_record(3, [[10, 10, 50, 50]], [2]),
        ],
    )


def _episode(data, image_id, category, repeat=0, present=True):
    return Episode(data.index_of(image_id), category, QueryRecord(category, -1, "q.jpg", (0, 0, 9, 9)), repeat, present)


def _det(boxes, scores):
    return {"boxes": np.array(boxes, np.float64).reshape(-1, 4), "scores": np.array(scores, np.float64)}


def test_interpolated_ap_by_hand():
    # one hit: the curve is 1 up to recall 1, then ramps to 0 at 1.01, past the grid: AP 1
    assert interpolated_ap(np.array([1.0]), np.array([1.0])) == pytest.approx(1.0)
    # a miss then a hit: (recall, precision) = (0, 0), (1, 0.5); the envelope is 0.5 from recall 0 (numpy's interp
    # takes the last of the two points at recall 0) to 1: AP 0.5
    assert interpolated_ap(np.array([0.0, 1.0]), np.array([0.0, 0.5])) == pytest.approx(0.5)
    # recall reaches only 0.5 at precision 0.5: 0.5 on [0, 0.5] (50 steps of 0.01), a ramp to 0 on [0.5, 0.51]
    # (one trapezoid of 0.01 * 0.25), 0 after: 0.25 + 0.0025
    assert interpolated_ap(np.array([0.0, 0.5]), np.array([0.0, 0.5])) == pytest.approx(0.2525)


def test_matching_takes_the_best_box_only_and_needs_iou_above_half():
    truth = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float64)
    boxes = np.array(
        [
            [0, 0, 10, 10],  # hit on box 0
            [1, 0, 10, 10],  # best is box 0 again (taken): a false positive, even if it overlaps nothing else
            [20, 0, 30, 10],  # hit on box 1
            [20, 0, 30, 10],  # every box taken: false positive
        ],
        np.float64,
    )
    np.testing.assert_array_equal(match(boxes, truth), [True, False, True, False])
    # IoU exactly 0.5 is not a hit (the official rule is strict)
    assert not match(np.array([[0, 0, 10, 5]], np.float64), truth[:1]).any()


def test_a_confident_false_positive_and_a_late_true_one_differ_between_the_protocols():
    data = _data()
    evaluator = build_evaluator("both", data, SPLIT)
    evaluator.process([_episode(data, 1, 1)], [_det([[0, 0, 10, 10]], [0.9])])  # image 1: a hit at 0.9
    # image 2: a miss at 0.95, then the hit at 0.2
    evaluator.process([_episode(data, 2, 1)], [_det([[60, 60, 80, 80], [20, 20, 40, 40]], [0.95, 0.2])])
    evaluator.process([_episode(data, 1, 2)], [_det([[50, 50, 90, 90]], [0.7])])
    evaluator.process([_episode(data, 3, 2)], [_det([[10, 10, 50, 50]], [0.6])])
    result = evaluator.evaluate()
    # coco (pycocotools over both images): miss 0.95, hit 0.9, hit 0.2 -> precision 0, 1/2, 2/3 at recall 0, 1/2, 1;
    # the envelope is 2/3 at every recall threshold -> 66.7
    assert result["protocol"] == "coco" and result["seen_ap50"] == pytest.approx(200 / 3, abs=0.01)
    # per-image: image 1 scores 1, image 2 (miss then hit) 0.5 -> (100 + 50) / 2
    per_image = result["per_image"]
    assert per_image["protocol"] == "per-image" and per_image["seen_ap50"] == pytest.approx(75.0)
    assert per_image["per_class"]["cat"]["images"] == 2
    assert result["unseen_ap50"] == pytest.approx(100.0) and per_image["unseen_ap50"] == pytest.approx(100.0)


def test_the_repeats_of_an_image_are_ranked_together():
    data = _data()
    evaluator = build_evaluator("per-image", data, SPLIT)
    evaluator.process([_episode(data, 2, 1, repeat=0)], [_det([[20, 20, 40, 40]], [0.3])])  # a hit at 0.3
    evaluator.process([_episode(data, 2, 1, repeat=1)], [_det([[60, 60, 80, 80]], [0.8])])  # a miss at 0.8
    # one list: miss 0.8, hit 0.3 against 2 repeats x 1 box -> recall 0, 1/2 at precision 0, 1/2: AP 0.2525
    result = evaluator.evaluate()
    assert result["seen_ap50"] == pytest.approx(25.25) and result["repeats"] == 2
    text = markdown_report(result, {"protocol": "per-image"})  # a per-image result alone makes a report
    assert "## Means over classes, protocol per-image" in text and "| cat | seen | 25.2 |" in text


def test_an_image_without_a_hit_scores_zero_and_absent_episodes_count_false_positives():
    data = _data()
    evaluator = build_evaluator("per-image", data, SPLIT)
    evaluator.process([_episode(data, 1, 1)], [_det([[60, 0, 90, 20]], [0.9])])
    evaluator.process([_episode(data, 2, 1)], [_det([[20, 20, 40, 40]], [0.9])])
    evaluator.process([_episode(data, 3, 1, present=False)], [_det([[0, 0, 5, 5]] * 2, [0.6, 0.35])])
    result = evaluator.evaluate()
    assert result["seen_ap50"] == pytest.approx(50.0)  # (0 + 100) / 2
    assert result["fp_per_absent_episode@0.3"] == 2 and result["fp_per_absent_episode@0.5"] == 1


def _pool(records):
    return QueryPool(records, [Category(1, "cat"), Category(2, "dog")])


def test_official_queries_may_come_from_the_image_itself_and_depend_on_the_file_name():
    data = _data()
    # cat exemplars: one in image 1, one in image 2; dog: one in image 1 only (a class in one image)
    records = [
        QueryRecord(1, 1, "1.jpg", (0, 0, 10, 10)),
        QueryRecord(1, 2, "2.jpg", (20, 20, 40, 40)),
        QueryRecord(2, 1, "1.jpg", (50, 50, 90, 90)),
    ]
    pool = _pool(records)
    chosen = official_queries(pool, [1, 2], "1.jpg", 5)
    # two cat exemplars repeated to 6 entries, shuffled, first 5: each exemplar drawn 2 or 3 times
    assert sorted(sum(q.image_id == i for q in chosen[1]) for i in (1, 2)) == [2, 3]
    assert [q.image_id for q in chosen[2]] == [1] * 5  # the image's own dog is its only exemplar
    assert official_queries(pool, [1, 2], "1.jpg", 5) == chosen  # seeded by the file name
    draws = {tuple(q.image_id for q in official_queries(pool, [1], f"{n}.jpg", 5)[1]) for n in range(20)}
    assert len(draws) > 1
    # the standard rule never queries an image with its own exemplar: the one-image dog gets no episode there
    standard = evaluation_episodes(data, pool, {1, 2}, repeats=5)
    assert not any(e.category_id == 2 and e.image_index == data.index_of(1) for r in standard for e in r)
    official = evaluation_episodes(data, pool, {1, 2}, repeats=5, queries="official")
    assert sum(e.category_id == 2 and e.image_index == data.index_of(1) for r in official for e in r) == 5
