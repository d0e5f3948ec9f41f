"""ONNX export: onnxruntime against PyTorch."""

from detector.inference.export import check_onnx, export_onnx
from detector.inference.predictor import Predictor


def test_onnx_export_matches_pytorch(checkpoint, tmp_path):
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
