"""COCO-format files that break the format: one line per problem naming the record, from the loader and the
checker alike."""

import copy
import json

import pytest

from detector.data.checker import check_coco
from detector.data.coco import AnnotationError, load_coco, record_problems

GOOD = {
    "images": [
        {"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
        {"id": 2, "file_name": "b.jpg", "width": 40, "height": 30},
    ],
    "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 12], "iscrowd": 0}],
    "categories": [{"id": 3, "name": "cat"}],
}


def _broken(change):
    coco = copy.deepcopy(GOOD)
    change(coco)
    return coco


CASES = [
    ("duplicate image id", lambda c: c["images"][1].update(id=1), "image 1: the id is used twice"),
    (
        "orphan annotation",
        lambda c: c["annotations"][0].update(image_id=99),
        "annotation 7: image_id 99 is not an image",
    ),
    ("NaN box", lambda c: c["annotations"][0].update(bbox=[1, float("nan"), 3, 4]), "annotation 7: bbox must be"),
    ("box of three", lambda c: c["annotations"][0].update(bbox=[1, 2, 3]), "four finite numbers"),
    ("string width", lambda c: c["images"][0].update(width="40"), "image 1: needs a positive integer 'width'"),
    ("null file name", lambda c: c["images"][0].update(file_name=None), "image 1: needs a 'file_name' string"),
    ("file name leaving the folder", lambda c: c["images"][0].update(file_name="../x.jpg"), "must be a path inside"),
    ("absolute file name", lambda c: c["images"][0].update(file_name="/etc/x.jpg"), "must be a path inside"),
    ("string category id", lambda c: c["annotations"][0].update(category_id="3"), "needs an integer 'category_id'"),
    ("no categories", lambda c: c.pop("categories"), "'categories' is missing"),
    ("images not a list", lambda c: c.update(images={"id": 1}), "'images' is not a list"),
]


@pytest.mark.parametrize("name, change, message", CASES, ids=[c[0] for c in CASES])
def test_broken_records_are_named_by_loader_and_checker(name, change, message, tmp_path):
    assert record_problems(GOOD) == []
    coco = _broken(change)
    assert any(message in line for line in record_problems(coco)), record_problems(coco)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(coco))
    with pytest.raises(AnnotationError, match="ann.json"):
        load_coco(path, tmp_path)
    report = check_coco(path, tmp_path, read_images=False)
    assert not report["ok"] and any(message in line for line in report["problems"]["invalid_records"])


def test_a_list_instead_of_an_object():
    assert "not a COCO object" in record_problems([GOOD])[0]
