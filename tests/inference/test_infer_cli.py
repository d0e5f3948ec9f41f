"""tools/infer.py over a folder: COCO results that pycocotools loads, the same detections as the Python API,
k-shot, unreadable files listed, and nothing of the user's overwritten."""

import contextlib
import io
import json

import numpy as np
import pytest
from inference_helpers import pattern_image
from PIL import Image
from pycocotools.coco import COCO

from detector.cli.infer import main as infer_main
from detector.inference.batch import picture_names
from detector.inference.predictor import Predictor


def _folder(tmp_path):
    folder = tmp_path / "targets"
    folder.mkdir()
    targets = [pattern_image(96, 144, 2), pattern_image(120, 90, 3)]
    for i, image in enumerate(targets):
        Image.fromarray(image).save(folder / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    query = pattern_image(50, 60, 1)
    Image.fromarray(query).save(tmp_path / "query.png")
    return folder, targets, query


def test_cli_writes_coco_results_that_agree_with_the_api(checkpoint, tmp_path):
    folder, targets, query = _folder(tmp_path)
    out = tmp_path / "out"
    args = ["--checkpoint", str(checkpoint), "--query", str(tmp_path / "query.png"), "--query-box", "5,5,45,40"]
    infer_main([*args, "--target", str(folder), "--out", str(out), "--score-threshold", "0", "--no-progress"])
    meta = json.loads((out / "images.json").read_text())
    assert len(meta["images"]) == 2 and len(meta["unreadable"]) == 1 and "broken.jpg" in meta["unreadable"][0]
    assert (out / "0.png").is_file() and (out / "1.png").is_file()
    # the results file is what pycocotools loads, as written
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": meta["images"], "categories": meta["categories"], "annotations": []}
        gt.createIndex()
        results = gt.loadRes(str(out / "detections.json"))
    image_id = next(im["id"] for im in meta["images"] if im["file_name"].endswith("1.png"))
    rows = results.loadAnns(results.getAnnIds(imgIds=[image_id]))
    api = Predictor.from_checkpoint(checkpoint, "cpu").predict(query, targets[1], (5, 5, 45, 40), score_threshold=0)
    rows = sorted(rows, key=lambda r: -r["score"])
    np.testing.assert_allclose([r["score"] for r in rows], api["scores"], atol=1e-5)
    x, y, w, h = rows[0]["bbox"]
    np.testing.assert_allclose([x, y, x + w, y + h], api["boxes"][0], atol=1e-3)


def test_k_shot_from_the_command_line_equals_the_api(checkpoint, tmp_path):
    folder, targets, query = _folder(tmp_path)
    other = pattern_image(40, 40, 7)
    Image.fromarray(other).save(tmp_path / "other.png")
    queries = ["--query", str(tmp_path / "query.png"), str(tmp_path / "other.png"), "--query-box", "5,5,45,40", "whole"]
    target = ["--target", str(folder / "0.png"), "--out", str(tmp_path / "k"), "--score-threshold", "0"]
    body = infer_main(["--checkpoint", str(checkpoint), *queries, *target, "--no-progress"])
    api = Predictor.from_checkpoint(checkpoint, "cpu").predict(
        [query, other], targets[0], query_box=[(5, 5, 45, 40), None], score_threshold=0
    )
    np.testing.assert_allclose(sorted(r["score"] for r in body["detections"]), sorted(api["scores"]), atol=1e-5)
    written = json.loads((tmp_path / "k" / "images.json").read_text())
    assert [q["box"] for q in written["query"]] == [[5.0, 5.0, 45.0, 40.0], None]


def test_output_never_overwrites_an_input_and_pictures_never_collide(checkpoint, tmp_path):
    folder, _, _ = _folder(tmp_path)
    before = (folder / "0.png").read_bytes()
    args = ["--checkpoint", str(checkpoint), "--query", str(tmp_path / "query.png"), "--target", str(folder)]
    with pytest.raises(ValueError, match="would overwrite the input image"):
        infer_main([*args, "--out", str(folder), "--no-progress"])
    assert (folder / "0.png").read_bytes() == before
    names = picture_names([folder / "a.jpg", folder / "a.png", tmp_path / "a.png", folder / "b.jpg"])
    assert names == ["a_jpg.png", "a_png.png", "a_png_2.png", "b.png"]


def test_query_boxes_as_json_gives_them_and_bad_boxes(checkpoint):
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    query, target = pattern_image(50, 60, 1), pattern_image(96, 144, 2)
    as_list = predictor.predict(query, target, query_box=[5, 5, 45, 40], score_threshold=0)
    as_tuple = predictor.predict(query, target, query_box=(5, 5, 45, 40), score_threshold=0)
    np.testing.assert_allclose(as_list["scores"], as_tuple["scores"])
    with pytest.raises(ValueError, match="not a finite number"):
        predictor.predict(query, target, query_box=[float("nan")] * 4)
    tiny = predictor.predict(query, pattern_image(20, 16, 3), score_threshold=0)  # a target smaller than the inset
    assert len(tiny["scores"]) > 0
