"""Pictures: labels that never cover each other, the query beside the target (never over it), tiny targets."""

import numpy as np

from detector.visualize import draw_detections, place_labels


def _overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_labels_of_crowded_small_boxes_never_overlap_and_stay_in_the_image():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 90, (40, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(4, 12, (40, 2))], 1)  # 40 small boxes, many overlapping
    places = place_labels(boxes, [(26, 14)] * 40, (100, 120))
    rects = [p for p in places if p is not None]
    assert places[0] is not None and len(rects) > 5
    for i, a in enumerate(rects):
        assert a[0] >= 0 and a[2] <= 120 and a[1] >= 0 and a[3] <= 100
        assert a[2] - a[0] == 26 and a[3] - a[1] == 14
        for b in rects[i + 1 :]:
            assert not _overlap(a, b), (a, b)


def test_a_label_moves_inside_its_box_when_the_place_above_is_taken():
    boxes = np.array([[10, 30, 30, 50], [20, 30, 40, 50]])
    # first: above its top-left corner; second: above is taken by the first, inside its top-left corner is free
    assert place_labels(boxes, [(20, 10), (20, 10)], (100, 100)) == [(10, 20, 30, 30), (20, 30, 40, 40)]
    # at the image's top edge the place above is clipped into the image
    assert place_labels(np.array([[5, 0, 40, 20]]), [(20, 10)], (100, 100)) == [(5, 0, 25, 10)]


def test_query_panel_is_beside_the_target_and_tiny_targets_draw():
    target = np.random.default_rng(1).integers(0, 255, (10, 12, 3), dtype=np.uint8)
    query = np.full((30, 20, 3), 7, np.uint8)
    picture = draw_detections(target, np.zeros((0, 4)), np.zeros(0), query=query)
    assert picture.shape[1] == 48 + 4 + 12  # a 48-px panel, a gap, the target
    np.testing.assert_array_equal(picture[:10, 52:], target)  # the target is not covered anywhere
    drawn = draw_detections(target, np.array([[1.0, 1.0, 8.0, 9.0]]), np.array([0.9]), query=query)
    assert drawn.shape == picture.shape and not np.array_equal(drawn[:10, 52:], target)
