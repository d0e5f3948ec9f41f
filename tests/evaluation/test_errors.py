"""The breakdown of detections into hits, duplicates, confusions, loose boxes and background: hand-made cases."""

import numpy as np
from toy_records import toy_record

from detector.data.episodes import Episode
from detector.data.query_pool import QueryRecord
from detector.data.records import Category, DetectionData
from detector.data.splits import Split
from detector.evaluation.errors import classify
from detector.evaluation.protocols import build_evaluator
from detector.evaluation.report import console_table, markdown_report

SPLIT = Split(seen=("cat",), unseen=("dog",))
CAT, DOG = 1, 2


def _data():
    return DetectionData(
        "toy",
        [Category(CAT, "cat"), Category(DOG, "dog")],
        [
            toy_record(1, [[0, 0, 10, 10], [20, 0, 30, 10], [50, 50, 90, 90]], [CAT, CAT, DOG]),
            toy_record(2, [[10, 10, 50, 50], [60, 60, 70, 70]], [DOG, CAT], ignore=[False, True]),
        ],
    )


def _episode(data, image_id, category, present=True):
    return Episode(data.index_of(image_id), category, QueryRecord(category, -1, "q.jpg", (0, 0, 9, 9)), 0, present)


def _det(boxes, scores):
    return {"boxes": np.array(boxes, np.float64).reshape(-1, 4), "scores": np.array(scores, np.float64)}


def test_each_kind_by_hand():
    truth = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [50, 50, 90, 90]], np.float64)
    labels = np.array([CAT, CAT, DOG])
    boxes = np.array(
        [
            [0, 0, 10, 10],  # cat box 0: hit
            [0, 0, 10, 9],  # IoU 0.9 with cat box 0, taken: duplicate
            [50, 50, 90, 90],  # the dog: confusion with class 2
            [20, 0, 30, 4],  # IoU 0.4 with cat box 1: loose
            [60, 0, 70, 10],  # overlaps nothing: background
            [20, 0, 30, 10],  # cat box 1, still free: hit
            [20, 0, 30, 10],  # cat box 1 again: duplicate
        ],
        np.float64,
    )
    kinds, confused = classify(boxes, truth, labels, CAT)
    assert kinds == ["hit", "duplicate", "confusion", "loose", "background", "hit", "duplicate"]
    assert confused == [None, None, DOG, None, None, None, None]


def test_a_taken_box_gives_way_to_a_free_one_and_no_truth_means_background():
    # two overlapping cat boxes (IoU 2/3): the second identical detection is a hit on the free box, not a duplicate
    truth = np.array([[0, 0, 10, 10], [2, 0, 12, 10]], np.float64)
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], np.float64)
    kinds, _ = classify(boxes, truth, np.array([CAT, CAT]), CAT)
    assert kinds == ["hit", "hit", "duplicate"]
    kinds, confused = classify(boxes[:1], np.zeros((0, 4)), np.zeros(0, int), CAT)
    assert (kinds, confused) == (["background"], [None])
    # a box overlapping a cat box by 0.4 and a dog box by 0.6 answers the cat query with the dog: a confusion
    truth = np.array([[0, 0, 10, 10], [4, 0, 14, 10]], np.float64)
    kinds, confused = classify(np.array([[0, 0, 10, 4], [4, 0, 14, 10]], np.float64), truth, np.array([CAT, DOG]), CAT)
    assert kinds == ["loose", "confusion"] and confused == [None, DOG]


def test_breakdown_per_group_and_threshold():
    data = _data()
    evaluator = build_evaluator("coco", data, SPLIT, errors=True)
    episodes = [
        _episode(data, 1, CAT),  # seen: two cat boxes
        _episode(data, 2, DOG),  # unseen: one dog box (the ignored cat box is nobody's target)
        _episode(data, 1, DOG),  # unseen: one dog box
        _episode(data, 2, CAT, present=False),  # absent
    ]
    detections = [
        _det([[0, 0, 10, 10], [50, 50, 90, 90], [20, 0, 30, 10]], [0.9, 0.4, 0.2]),  # hit, confusion (dog), hit
        _det([[10, 10, 50, 50], [60, 60, 70, 70]], [0.35, 0.8]),  # hit; the ignored box: background
        _det([[0, 0, 10, 10]], [0.6]),  # the cat for a dog query: confusion with a seen class
        _det([[10, 10, 50, 50], [0, 80, 10, 90]], [0.5, 0.05]),  # absent: the dog (confusion); under every threshold
    ]
    evaluator.process(episodes, detections)
    result = evaluator.evaluate()
    errors = result["errors"]
    seen, unseen, absent = errors["seen"], errors["unseen"], errors["absent"]
    assert (seen["episodes"], seen["boxes"], unseen["episodes"], unseen["boxes"]) == (1, 2, 2, 2)
    assert seen["0.1"] == {
        "hit": 2, "duplicate": 0, "confusion": 1, "loose": 0, "background": 0,
        "recall": 1.0, "confusion_with_unseen": 1, "confusion_with_seen": 0,
    }  # fmt: skip
    assert seen["0.3"]["hit"] == 1 and seen["0.3"]["recall"] == 0.5 and seen["0.5"]["confusion"] == 0
    assert unseen["0.3"]["hit"] == 1 and unseen["0.3"]["background"] == 1 and unseen["0.3"]["recall"] == 0.5
    assert unseen["0.3"]["confusion_with_seen"] == 1 and unseen["0.5"]["hit"] == 0
    assert absent["0.1"]["confusion"] == 1 and absent["0.1"]["confusion_with_unseen"] == 1
    assert absent["0.1"]["background"] == 0  # the 0.05 detection is under every threshold
    # the hits are pycocotools' true positives: the same recall as its operating points
    for group in ("seen", "unseen"):
        for t in (0.3, 0.5):
            assert 100 * errors[group][f"{t}"]["recall"] == result[f"{group}_recall@{t}"]
    text = console_table(evaluator.evaluate())
    assert "where the detections go" in text and "unseen" in text.split("where the detections go")[1]
    assert "## Where the detections go" in markdown_report(evaluator.evaluate(), {})


def test_an_unreadable_image_leaves_the_breakdown():
    data = _data()
    evaluator = build_evaluator("coco", data, SPLIT, errors=True)
    evaluator.process([_episode(data, 1, CAT)], [_det([[0, 0, 10, 10]], [0.9])])
    evaluator.drop(_episode(data, 2, DOG), "unreadable")
    evaluator.process([_episode(data, 2, DOG)], [_det([[10, 10, 50, 50]], [0.9])])
    errors = evaluator.evaluate()["errors"]
    assert "unseen" not in errors and errors["seen"]["0.5"]["hit"] == 1
