import json

import pytest

from detector.cli.splits import main as splits_main
from detector.data.splits import COCO_CLASSES, coco_split, explicit_split, index_rule_split, voc_split
from detector.synthetic.benchmark import CLASSES

# COCO split 1's unseen classes as the one-shot papers (CoAE, BHRL, IA-DETR) list them.
COCO_SPLIT1_UNSEEN = [
    "person",
    "airplane",
    "boat",
    "parking meter",
    "dog",
    "elephant",
    "backpack",
    "suitcase",
    "sports ball",
    "skateboard",
    "wine glass",
    "spoon",
    "sandwich",
    "hot dog",
    "chair",
    "dining table",
    "mouse",
    "microwave",
    "refrigerator",
    "scissors",
]


def test_coco_split1_equals_published_list():
    assert list(coco_split(1).unseen) == COCO_SPLIT1_UNSEEN


def test_coco_splits_by_hand():
    # contiguous index: bicycle=2, car=3, motorcycle=4, bus=6, train=7, truck=8, traffic light=10
    assert coco_split(2).unseen[:3] == ("bicycle", "bus", "traffic light")
    assert coco_split(3).unseen[:3] == ("car", "train", "fire hydrant")
    assert coco_split(4).unseen[:3] == ("motorcycle", "truck", "stop sign")
    assert coco_split(4).unseen[-1] == "toothbrush"  # index 80
    assert coco_split(3).unseen[-1] == "hair drier"  # index 79


def test_coco_splits_partition_the_classes():
    unseen = [set(coco_split(k).unseen) for k in (1, 2, 3, 4)]
    assert all(len(u) == 20 for u in unseen)
    assert set().union(*unseen) == set(COCO_CLASSES)
    assert sum(len(u) for u in unseen) == 80
    for k in (1, 2, 3, 4):
        split = coco_split(k)
        assert set(split.seen) | set(split.unseen) == set(COCO_CLASSES)
        assert not set(split.seen) & set(split.unseen)


def test_rule_uses_contiguous_index_not_category_id():
    # COCO category ids have gaps (e.g. 12, 26, 29, ...): "stop sign" has id 13 but index 12, so the
    # category-id rule would put it in split 1; the contiguous-index rule puts it in split 4.
    assert "stop sign" not in coco_split(1).unseen
    assert "stop sign" in coco_split(4).unseen


def test_voc_split():
    split = voc_split()
    assert split.unseen == ("aeroplane", "cat", "cow", "sheep")
    assert len(split.seen) == 16


def test_synthetic_splits_by_hand():
    # 42 classes: 24 letters (no I, O), digits 3 4 6 7 9, then 13 shapes; split k holds out index % 4 == k % 4
    assert index_rule_split(CLASSES, 1).unseen == (
        "letter A", "letter E", "letter J", "letter N", "letter S", "letter W", "digit 3", "digit 9",
        "pentagon", "heart", "drop",
    )  # fmt: skip
    assert index_rule_split(CLASSES, 2).unseen[:7] == (
        "letter B", "letter F", "letter K", "letter P", "letter T", "letter X", "digit 4",
    )  # fmt: skip
    sizes = [len(index_rule_split(CLASSES, k).unseen) for k in (1, 2, 3, 4)]
    assert sizes == [11, 11, 10, 10]


def test_bad_split_and_unknown_class():
    with pytest.raises(ValueError, match="split must be"):
        index_rule_split(CLASSES, 5)
    with pytest.raises(ValueError, match="not in the data set"):
        explicit_split(["a", "b"], ["c"])


def test_splits_cli_prints_json(capsys):
    splits_main(["coco", "--split", "1"])
    result = json.loads(capsys.readouterr().out)
    assert result["unseen"] == COCO_SPLIT1_UNSEEN
    assert len(result["seen"]) == 60
