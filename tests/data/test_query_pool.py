import json

import numpy as np
import pytest

from detector.data.query_pool import QueryPool, read_records
from detector.data.records import Category, DetectionData, ImageRecord


def _data(tmp_path):
    boxes = np.array([[0, 0, 40, 40], [50, 50, 55, 90], [10, 10, 60, 30], [0, 0, 30, 30]], np.float32)
    record = ImageRecord(
        1, tmp_path / "a.jpg", 100, 100, boxes, np.array([1, 1, 2, 2]), np.array([False, False, False, True])
    )
    return DetectionData("t", [Category(1, "cat"), Category(2, "dog")], [record])


def test_pool_excludes_small_and_ignored_boxes(tmp_path):
    pool = QueryPool.from_data(_data(tmp_path), min_size=16)
    assert [(q.category_id, q.box) for q in pool.records] == [(1, (0, 0, 40, 40)), (2, (10, 10, 60, 30))]
    assert pool.counts() == {"cat": 1, "dog": 1}
    assert len(QueryPool.from_data(_data(tmp_path), min_size=4)) == 3
    with pytest.raises(ValueError, match="min_size"):
        QueryPool.from_data(_data(tmp_path), min_size=0)


def test_detector_filter_keeps_matched_boxes(tmp_path):
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [1, 1, 40, 40], "score": 0.9},  # IoU ~0.95: keeps cat box
        {"image_id": 1, "category_id": 2, "bbox": [10, 10, 50, 20], "score": 0.5},  # score too low
    ]
    pool = QueryPool.from_data(_data(tmp_path), min_size=4, detections=detections)
    assert [q.box for q in pool.records] == [(0, 0, 40, 40)]


def test_save_load_round_trip(tmp_path):
    pool = QueryPool.from_data(_data(tmp_path), min_size=4)
    pool.save(tmp_path / "pools" / "p.json")
    body = json.loads((tmp_path / "pools" / "p.json").read_text())
    assert body["format"] == "ia-detr-query-pool" and len(body["queries"]) == 3
    loaded = QueryPool.load(tmp_path / "pools" / "p.json")
    assert loaded.records == pool.records
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="not an IA-DETR query pool"):
        QueryPool.load(tmp_path / "other.json")


def test_records_conversion(tmp_path):
    (tmp_path / "r.csv").write_text("file_name,x1,y1,x2,y2,category\na.jpg,1,2,30,40,dog\n")
    pool = QueryPool.from_records(read_records(tmp_path / "r.csv"), _data(tmp_path), tmp_path)
    assert pool.records[0].category_id == 2 and pool.records[0].image_id == 1
    assert pool.records[0].box == (1, 2, 30, 40)
    with pytest.raises(KeyError, match="unknown class 'horse'"):
        QueryPool.from_records(
            [{"file_name": "a.jpg", "bbox": [0, 0, 9, 9], "category": "horse"}], _data(tmp_path), tmp_path
        )
    with pytest.raises(ValueError, match="degenerate"):
        QueryPool.from_records(
            [{"file_name": "a.jpg", "bbox": [5, 0, 5, 9], "category": "dog"}], _data(tmp_path), tmp_path
        )
