"""Search a photo collection: an index of encoded targets gives what the whole network gives pair by pair; updates
encode only what changed; a foreign or stale index is refused; the command line writes ranked COCO results."""

import contextlib
import io
import json
import os

import numpy as np
import pytest
import torch
from inference_helpers import pattern_image, save_random_checkpoint
from PIL import Image
from pycocotools.coco import COCO

from detector.cli.index import main as index_main
from detector.cli.search import main as search_main
from detector.data.dataset import pad_to_grid
from detector.inference.predictor import Predictor, _grid
from detector.inference.search import IndexFileError, Searcher, TargetIndex

QUERY_BOX = (5, 5, 45, 40)


def _photos(folder, sizes=((96, 144), (120, 90), (96, 144), (64, 64), (130, 100))):
    folder.mkdir(exist_ok=True)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(pattern_image(h, w, 10 + i)).save(folder / f"{i}.png")
    return sorted(folder.glob("*.png"))


def _whole_network(predictor, query, target):
    """The reference: the whole model (both backbones, the decoder) on one padded (query, target) pair."""
    q = predictor._query_tensor(query, QUERY_BOX)
    t, original = predictor._target_tensor(target)
    grid = _grid([tuple(q.shape[1:]), tuple(t.shape[1:])], predictor.config.data.size_divisor)
    (ti, tm), (qi, qm) = pad_to_grid([t], *grid), pad_to_grid([q], *grid)
    with torch.no_grad():
        outputs = predictor.model(ti, tm, qi, qm, torch.tensor([tuple(t.shape[1:])]))
    return predictor._detections(outputs, [original], 0.0)[0]


@pytest.mark.parametrize("padding", ["zero", "backbone"])
def test_index_search_equals_the_whole_network_per_pair(checkpoint, tmp_path, padding):
    """Also with the official padding (backbone features on padding cells), where the query is encoded once
    per target grid instead of once."""
    if padding == "backbone":
        checkpoint = save_random_checkpoint(tmp_path / "canvas.pth", "model.padding_features=backbone")
    photos = _photos(tmp_path / "photos")
    query = pattern_image(50, 60, 1)
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    report = TargetIndex.update(tmp_path / "index", predictor, checkpoint, photos)
    assert (report.images, report.encoded, report.removed) == (5, 5, 0)
    searcher = Searcher(tmp_path / "index", checkpoint, device="cpu")
    found = searcher.detections(query, QUERY_BOX, score_threshold=0.0)
    api = predictor.predict(query, [str(p) for p in photos], QUERY_BOX, score_threshold=0.0)
    for path, det, from_api in zip(photos, found, api):
        reference = _whole_network(predictor, query, str(path))
        assert len(det["scores"]) == len(reference["scores"]) > 0
        np.testing.assert_allclose(det["scores"], reference["scores"], atol=1e-5)
        np.testing.assert_allclose(det["boxes"], reference["boxes"], atol=1e-3)
        np.testing.assert_allclose(from_api["scores"], reference["scores"], atol=1e-5)  # the Predictor's split too
    hits = searcher.search(query, QUERY_BOX, top=7, score_threshold=0.0)
    everything = sorted((s for det in found for s in det["scores"]), reverse=True)
    assert [h["score"] for h in hits] == pytest.approx(everything[:7])


def test_updates_encode_only_new_and_changed_files_and_forget_removed_ones(checkpoint, tmp_path):
    photos = _photos(tmp_path / "photos", ((96, 144), (120, 90)))
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    index = tmp_path / "index"
    TargetIndex.update(index, predictor, checkpoint, photos)
    again = TargetIndex.update(index, predictor, checkpoint, photos)
    assert (again.images, again.encoded, again.removed) == (2, 0, 0)
    Image.fromarray(pattern_image(80, 80, 99)).save(tmp_path / "photos" / "new.png")
    os.utime(photos[1], ns=(1, 1))  # "changed": another modification time
    grown = TargetIndex.update(index, predictor, checkpoint, sorted((tmp_path / "photos").glob("*.png")))
    assert (grown.images, grown.encoded, grown.removed) == (3, 2, 1)
    photos[0].unlink()
    shrunk = TargetIndex.update(index, predictor, checkpoint, sorted((tmp_path / "photos").glob("*.png")))
    assert (shrunk.images, shrunk.encoded, shrunk.removed) == (2, 0, 1)
    assert len(list((index / "shards").glob("*.pt"))) == 1  # the first shard has no entry left: deleted
    # the updated index still gives the whole network's detections
    searcher = Searcher(index, checkpoint, device="cpu")
    query = pattern_image(50, 60, 1)
    for entry, det in zip(searcher.index.entries, searcher.detections(query, QUERY_BOX, 0.0)):
        np.testing.assert_allclose(det["scores"], _whole_network(predictor, query, entry["file"])["scores"], atol=1e-5)


def test_a_foreign_stale_or_damaged_index_is_refused(checkpoint, tmp_path):
    photos = _photos(tmp_path / "photos", ((96, 144),))
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    TargetIndex.update(tmp_path / "index", predictor, checkpoint, photos)
    other = save_random_checkpoint(tmp_path / "other.pth", "model.num_queries=6")
    with pytest.raises(IndexFileError, match="was built with checkpoint .* rebuild it"):
        Searcher(tmp_path / "index", other, device="cpu")
    with pytest.raises(IndexFileError, match="was built with checkpoint"):  # nor can it be extended
        TargetIndex.update(tmp_path / "index", Predictor.from_checkpoint(other, "cpu"), other, photos)
    resized = Predictor.from_checkpoint(checkpoint, "cpu")
    resized.config.data.test_size = 128
    with pytest.raises(IndexFileError, match="preprocessing"):
        TargetIndex(tmp_path / "index").check(resized, checkpoint)
    manifest = tmp_path / "index" / "manifest.json"
    saved = manifest.read_text()
    manifest.write_text(saved.replace('"format": 1', '"format": 99'))
    with pytest.raises(IndexFileError, match="format 99"):
        TargetIndex(tmp_path / "index")
    manifest.write_text(saved[:40])
    with pytest.raises(IndexFileError, match="damaged"):
        TargetIndex(tmp_path / "index")
    with pytest.raises(IndexFileError, match="not an index"):
        TargetIndex(tmp_path / "photos")


def test_command_line_index_then_search_writes_ranked_coco_results(checkpoint, tmp_path):
    _photos(tmp_path / "photos")
    Image.fromarray(pattern_image(50, 60, 1)).save(tmp_path / "query.png")
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"not an image")
    index = ["--out", str(tmp_path / "index"), "--device", "cpu", "--no-progress"]
    summary = index_main(["--checkpoint", str(checkpoint), "--images", str(tmp_path / "photos"), *index])
    assert summary["images"] == 5 and len(summary["unreadable"]) == 1 and "broken.jpg" in summary["unreadable"][0]
    out = tmp_path / "search"
    options = ["--out", str(out), "--score-threshold", "0", "--top", "5", "--pictures", "2", "--device", "cpu"]
    query = ["--query", str(tmp_path / "query.png"), "--query-box", "5,5,45,40"]
    body = search_main(["--index", str(tmp_path / "index"), *query, *options])
    hits = json.loads((out / "hits.json").read_text())
    assert hits == body["hits"] and len(hits) == 5
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert len(list(out.glob("*.png"))) == 2  # pictures of the two images holding the best hits
    meta = json.loads((out / "images.json").read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": meta["images"], "categories": meta["categories"], "annotations": []}
        gt.createIndex()
        results = gt.loadRes(str(out / "detections.json"))
    assert len(results.getAnnIds()) == body["detections"] > 0
    best = max(results.loadAnns(results.getAnnIds()), key=lambda r: r["score"])
    assert best["score"] == pytest.approx(hits[0]["score"])
    assert meta["images"][best["image_id"] - 1]["file_name"] == hits[0]["file"]
