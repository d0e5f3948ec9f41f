"""Export a trained model to ONNX (and TorchScript), checked against PyTorch on the same inputs.

The exported graph takes a fixed grid (``--size``, default the test grid) and one query per target:
``target_images (B, 3, S, S)``, ``target_masks (B, S, S)`` bool, ``query_images (B, 3, S, S)``,
``query_masks (B, S, S)`` bool, ``image_sizes (B, 2)`` int64 (unpadded ``height, width``), and returns
``scores (B, Nq)`` (sigmoid) and ``boxes (B, Nq, 4)`` (``cxcywh``, normalised by the unpadded target).
Preprocess with ``detector.data.transforms`` and map boxes to pixels as ``PostProcessor`` does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..models.ia_detr import IADETR

INPUTS = ["target_images", "target_masks", "query_images", "query_masks", "image_sizes"]


class ExportedDetector(nn.Module):
    def __init__(self, model: IADETR) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, target_images, target_masks, query_images, query_masks, image_sizes):
        out = self.model(target_images, target_masks, query_images, query_masks, image_sizes)
        return out.logits.sigmoid(), out.boxes


def example_inputs(size: int, query_size: int, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    target = torch.randn(batch, 3, size, size, generator=generator)
    query = torch.zeros(batch, 3, size, size)
    query[:, :, :query_size, :query_size] = torch.randn(batch, 3, query_size, query_size, generator=generator)
    target_masks = torch.zeros(batch, size, size, dtype=torch.bool)
    query_masks = torch.ones(batch, size, size, dtype=torch.bool)
    query_masks[:, :query_size, :query_size] = False
    sizes = torch.full((batch, 2), size, dtype=torch.int64)
    return target, target_masks, query, query_masks, sizes


def export_onnx(model: IADETR, path: str | Path, size: int, query_size: int, opset: int = 17) -> Path:
    wrapper = ExportedDetector(model)
    inputs = example_inputs(size, query_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        wrapper,
        inputs,
        str(path),
        input_names=INPUTS,
        output_names=["scores", "boxes"],
        opset_version=opset,
        dynamic_axes={n: {0: "batch"} for n in [*INPUTS, "scores", "boxes"]},
        dynamo=False,
    )
    return path


def check_onnx(model: IADETR, path: str | Path, size: int, query_size: int, batch: int = 2) -> dict:
    """Largest absolute differences between onnxruntime and PyTorch on random inputs of ``batch`` pairs."""
    import onnxruntime

    inputs = example_inputs(size, query_size, batch, seed=1)
    with torch.no_grad():
        scores, boxes = ExportedDetector(model)(*inputs)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {name: tensor.numpy() for name, tensor in zip(INPUTS, inputs)}
    ort_scores, ort_boxes = session.run(["scores", "boxes"], feeds)
    return {
        "max_abs_diff_scores": float(np.abs(ort_scores - scores.numpy()).max()),
        "max_abs_diff_boxes": float(np.abs(ort_boxes - boxes.numpy()).max()),
    }


def export_torchscript(model: IADETR, path: str | Path, size: int, query_size: int) -> Path:
    traced = torch.jit.trace(ExportedDetector(model), example_inputs(size, query_size), check_trace=False)
    path = Path(path)
    traced.save(str(path))
    return path
