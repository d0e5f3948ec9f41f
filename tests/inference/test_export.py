"""ONNX export: onnxruntime against PyTorch."""

import pytest
from inference_helpers import save_random_checkpoint
from small_model import OFFICIAL_MODEL

from detector.inference.export import check_onnx, export_onnx
from detector.inference.predictor import Predictor


@pytest.mark.parametrize("options", ["recipe", "official", "match_only"])
def test_onnx_export_matches_pytorch(checkpoint, tmp_path, options):
    if options == "official":
        checkpoint = save_random_checkpoint(tmp_path / "official.pth", *OFFICIAL_MODEL)
    if options == "match_only":  # the long config's score: the match term plus a bias
        checkpoint = save_random_checkpoint(tmp_path / "match.pth", "model.class_logit=similarity")
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    path = export_onnx(predictor.model, tmp_path / "m.onnx", size=128, query_size=32)
    diffs = check_onnx(predictor.model, path, size=128, query_size=32)
    assert diffs["max_abs_diff_scores"] < 1e-4 and diffs["max_abs_diff_boxes"] < 1e-4


def test_export_refuses_an_output_name_that_torchscript_would_overwrite(checkpoint, tmp_path):
    import pytest

    from detector.cli.export import main as export_main

    with pytest.raises(ValueError, match=r"must end in \.onnx"):
        export_main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.pt"), "--torchscript"])
    assert not (tmp_path / "m.pt").exists()


def test_onnx_runner_and_infer_cli_agree_with_the_pytorch_predictor(checkpoint, tmp_path):
    import json

    import numpy as np
    from inference_helpers import pattern_image
    from PIL import Image

    from detector.cli.export import main as export_main
    from detector.cli.infer import main as infer_main
    from detector.inference.onnx_runner import OnnxPredictor

    export_main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx")])
    runner = OnnxPredictor(tmp_path / "m.onnx")
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    query, targets = pattern_image(50, 60, 1), [pattern_image(96, 144, 2), pattern_image(120, 90, 3)]
    expected = predictor.predict(query, targets, query_box=(5, 5, 45, 40), score_threshold=0.0)
    got = runner.predict(query, targets, query_box=[5, 5, 45, 40], score_threshold=0.0)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-4)
        np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-2)
    Image.fromarray(query).save(tmp_path / "q.png")
    Image.fromarray(targets[0]).save(tmp_path / "t.png")
    args = ["--onnx", str(tmp_path / "m.onnx"), "--query", str(tmp_path / "q.png"), "--query-box", "5,5,45,40"]
    infer_main([*args, "--target", str(tmp_path / "t.png"), "--out", str(tmp_path / "o"), "--score-threshold", "0"])
    rows = json.loads((tmp_path / "o" / "detections.json").read_text())
    np.testing.assert_allclose(sorted(r["score"] for r in rows), sorted(expected[0]["scores"]), atol=1e-4)
