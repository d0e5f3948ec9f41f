"""tools/infer.py over a folder: the same detections as the Python API, unreadable files listed."""

import json

import numpy as np
from inference_helpers import pattern_image
from PIL import Image

from detector.cli.infer import main as infer_main
from detector.inference.predictor import Predictor


def test_cli_agrees_with_api_and_lists_bad_files(checkpoint, tmp_path):
    folder = tmp_path / "targets"
    folder.mkdir()
    targets = [pattern_image(96, 144, 2), pattern_image(120, 90, 3)]
    for i, image in enumerate(targets):
        Image.fromarray(image).save(folder / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    query = pattern_image(50, 60, 1)
    Image.fromarray(query).save(tmp_path / "query.png")
    body = infer_main(
        [
            "--checkpoint",
            str(checkpoint),
            "--query",
            str(tmp_path / "query.png"),
            "--query-box",
            "5,5,45,40",
            "--target",
            str(folder),
            "--out",
            str(tmp_path / "out"),
            "--score-threshold",
            "0",
            "--no-progress",
        ]
    )
    written = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert len(written["images"]) == 2 and len(written["unreadable"]) == 1 and "broken.jpg" in written["unreadable"][0]
    assert (tmp_path / "out" / "0.png").is_file() and (tmp_path / "out" / "1.png").is_file()
    api = Predictor.from_checkpoint(checkpoint, "cpu").predict(
        query, targets[1], query_box=(5, 5, 45, 40), score_threshold=0.0
    )
    cli = [d for d in body["detections"] if d["file_name"].endswith("1.png")]
    np.testing.assert_allclose([d["score"] for d in cli], api["scores"], atol=1e-5)
    x, y, w, h = cli[0]["bbox"]
    np.testing.assert_allclose([x, y, x + w, y + h], api["boxes"][0], atol=1e-3)
