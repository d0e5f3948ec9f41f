"""Export a checkpoint to ONNX (and TorchScript) and check onnxruntime against PyTorch.

python tools/export.py --checkpoint outputs/demo/train/last.pth --out outputs/export/ia_detr.onnx

Writes the ONNX model, a JSON file beside it with the preprocessing it needs (``OnnxPredictor`` and
``tools/infer.py --onnx`` read it), and with ``--torchscript`` a traced module ending in ``.pt``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
from pathlib import Path

from ..inference.export import check_onnx, export_onnx, export_torchscript
from ..inference.onnx_runner import export_settings
from ..inference.predictor import Predictor
from .common import command


@command(failed=lambda report: not report["ok"])
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", default="outputs/export/ia_detr.onnx")
    parser.add_argument(
        "--size",
        type=int,
        help="grid side in pixels (default: the larger of the target's longest side and the query "
        "size, rounded up to 32)",
    )
    parser.add_argument("--torchscript", action="store_true", help="also write a traced TorchScript module")
    parser.add_argument("--tolerance", type=float, default=1e-3)
    args = parser.parse_args(argv)
    if Path(args.out).suffix != ".onnx":
        raise ValueError(f"--out {args.out} must end in .onnx (--torchscript writes the same name ending in .pt)")
    for module, extra in (("onnx", "export"), ("onnxruntime", "export")):
        if importlib.util.find_spec(module) is None:
            raise ValueError(
                f"export needs {module}: pip install 'ia-detr[{extra}]' (or pip install -e \".[{extra}]\")"
            )
    predictor = Predictor.from_checkpoint(args.checkpoint, device="cpu")
    data = predictor.config.data
    size = args.size or math.ceil(max(data.target_max_size, data.query_size) / 32) * 32
    path = export_onnx(predictor.model, args.out, size, data.query_size)
    settings = export_settings(vars(data), size, predictor.config.eval.max_detections, predictor.config.eval.nms_iou)
    path.with_suffix(".json").write_text(json.dumps(settings, indent=1))  # what OnnxPredictor needs
    report = {"onnx": str(path), "grid": size, **check_onnx(predictor.model, path, size, data.query_size)}
    if args.torchscript:
        report["torchscript"] = str(export_torchscript(predictor.model, path.with_suffix(".pt"), size, data.query_size))
    report["ok"] = max(report["max_abs_diff_scores"], report["max_abs_diff_boxes"]) <= args.tolerance
    print(json.dumps(report))
    if not report["ok"]:
        print(f"onnxruntime differs from PyTorch by more than {args.tolerance}")
    return report


if __name__ == "__main__":
    raise SystemExit(main())
