"""Run an exported ONNX model with onnxruntime: the same preprocessing and postprocessing as the Predictor.

    predictor = OnnxPredictor("outputs/export/ia_detr.onnx")    # reads ia_detr.json, written beside it by export
    result = predictor.predict("query.jpg", "target.jpg", query_box=(10, 20, 90, 120))
    result["boxes"], result["scores"]                              # (k, 4) xyxy pixels of target.jpg, (k,)

The exported graph has a fixed square grid (``grid`` pixels): a resized target and the query patch must fit in
it, which they do for the export's own config (the grid is the larger of the target's longest side and the
query size). The runner needs only ``onnxruntime``, numpy and this package's transforms, not the checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import pad_to_grid
from ..data.transforms import QueryTransform, TargetTransform, to_tensor
from ..models.ia_detr import DetectorOutput
from ..models.postprocess import PostProcessor
from .predictor import ImageLike, _as_boxes, check_query_box, read_any


def export_settings(config_data: dict, grid: int, max_detections: int, nms_iou: float) -> dict:
    """What the runner needs to preprocess and postprocess as the Predictor does (written beside the model)."""
    keys = ("test_size", "target_max_size", "query_size", "query_resize")
    return {"grid": grid, **{k: config_data[k] for k in keys}, "max_detections": max_detections, "nms_iou": nms_iou}


class OnnxPredictor:
    def __init__(self, path: str | Path, providers: list[str] | None = None) -> None:
        import onnxruntime

        path = Path(path)
        settings_path = path.with_suffix(".json")
        if not settings_path.is_file():
            raise FileNotFoundError(f"{settings_path} is missing: export the model again with tools/export.py")
        self.settings = json.loads(settings_path.read_text())
        self.session = onnxruntime.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])
        s = self.settings
        self.target_transform = TargetTransform(False, [s["test_size"]], s["target_max_size"], s["test_size"])
        # settings written before query_resize existed come from models that kept the aspect
        self.query_transform = QueryTransform(False, s["query_size"], resize=s.get("query_resize", "longer_side"))
        self.postprocessor = PostProcessor(s["max_detections"], s["nms_iou"])

    def predict(
        self,
        query_image: ImageLike,
        target_image: ImageLike | list[ImageLike],
        query_box: tuple | list | None = None,
        score_threshold: float = 0.3,
    ) -> dict[str, np.ndarray] | list[dict[str, np.ndarray]]:
        """As :meth:`Predictor.predict` for one query image (the exported graph is one-shot)."""
        if isinstance(query_image, list):
            if len(query_image) != 1:
                raise ValueError("the exported model is one-shot: give one query image")
            query_image, query_box = query_image[0], _as_boxes(query_box, 1)[0]
        query = read_any(query_image)
        h, w = query.shape[:2]
        box = check_query_box(query_box, w, h) if query_box is not None else (0.0, 0.0, float(w), float(h))
        query_tensor = to_tensor(self.query_transform(query, box, seed=0))
        targets = target_image if isinstance(target_image, list) else [target_image]
        results = [self._one(query_tensor, read_any(t), score_threshold) for t in targets]
        return results if isinstance(target_image, list) else results[0]

    def _one(self, query: torch.Tensor, target: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
        out = self.target_transform(target, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), seed=0)
        image = to_tensor(out.image)
        grid = self.settings["grid"]
        if max(image.shape[1:]) > grid or max(query.shape[1:]) > grid:
            raise ValueError(f"a {tuple(image.shape[1:])} target does not fit the exported {grid}x{grid} grid")
        targets, target_masks = pad_to_grid([image], grid, grid)
        queries, query_masks = pad_to_grid([query], grid, grid)
        feeds = {
            "target_images": targets.numpy(),
            "target_masks": target_masks.numpy(),
            "query_images": queries.numpy(),
            "query_masks": query_masks.numpy(),
            "image_sizes": np.asarray([image.shape[1:]], np.int64),
        }
        scores, boxes = self.session.run(["scores", "boxes"], feeds)
        logits = torch.logit(torch.from_numpy(scores).double().clamp(1e-12, 1 - 1e-12)).float()
        outputs = DetectorOutput(logits, torch.from_numpy(boxes))
        det = self.postprocessor(outputs, torch.tensor([target.shape[:2]]))[0]
        keep = det["scores"] >= threshold
        return {"boxes": det["boxes"][keep].numpy(), "scores": det["scores"][keep].numpy()}
