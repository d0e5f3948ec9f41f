"""Inference on image pairs: a predictor built from a checkpoint.

    predictor = Predictor.from_checkpoint("outputs/demo/train/best.pth")
    result = predictor.predict("query.jpg", "target.jpg", query_box=(10, 20, 90, 120))
    result["boxes"]   # (k, 4) xyxy pixels of the target image
    result["scores"]  # (k,)

Images may be paths, numpy arrays (RGB, gray, RGBA, 8 or 16 bit) or PIL images. ``target_image`` may be a
list (one result per target, batched); ``query_image`` may be a list (k-shot: the exemplars' feature maps
are averaged cell by cell, see ``IADETR.encode_query``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..config import Config
from ..data.dataset import pad_to_grid
from ..data.images import load_image, to_rgb_array
from ..data.transforms import QueryTransform, TargetTransform, to_tensor
from ..engine.checkpoint import load_model
from ..models.build import build_postprocessor
from ..models.fuse import fuse_batchnorm
from ..models.ia_detr import IADETR, DetectorOutput, QueryEncoding

logger = logging.getLogger(__name__)
ImageLike = str | Path | np.ndarray | Image.Image
MIN_QUERY_SIDE = 4
CPU_BATCHING_MAX_PARAMETERS = 10_000_000  # above this, a CPU runs one target per call (see Predictor._batches)


def read_any(image: ImageLike) -> np.ndarray:
    """An RGB ``uint8`` array from a path, an array or a PIL image."""
    if isinstance(image, str | Path):
        return load_image(image)
    return to_rgb_array(image)


def parse_box(text: str | None) -> tuple[float, float, float, float] | None:
    """A query box typed by a user (command line, web page): ``X1,Y1,X2,Y2`` (commas or spaces) -> a box;
    empty, ``None`` or ``whole`` -> ``None``, the whole image."""
    text = (text or "").strip()
    if not text or text.lower() == "whole":
        return None
    message = f"the query box {text!r} must be four numbers X1,Y1,X2,Y2 (pixels), or 'whole'"
    try:
        values = tuple(float(p) for p in text.replace(",", " ").split())
    except ValueError as error:
        raise ValueError(message) from error
    if len(values) != 4:
        raise ValueError(message)
    return values  # type: ignore[return-value]


def check_query_box(box: tuple[float, float, float, float], width: int, height: int) -> tuple[float, ...]:
    """Validate ``xyxy`` ``box`` against a ``width x height`` image; clip it; raise on a useless box."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise ValueError(f"query_box {box} has a coordinate that is not a finite number")
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"query_box {box} has x2 <= x1 or y2 <= y1; give (x1, y1, x2, y2) in pixels")
    cx1, cy1, cx2, cy2 = max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2)
    if cx2 <= cx1 or cy2 <= cy1:
        raise ValueError(f"query_box {box} lies outside the {width}x{height} query image")
    if min(cx2 - cx1, cy2 - cy1) < MIN_QUERY_SIDE:
        raise ValueError(
            f"query_box {box} is smaller than {MIN_QUERY_SIDE} pixels inside the {width}x{height} "
            f"image; draw a box around the whole object"
        )
    return cx1, cy1, cx2, cy2


def _as_boxes(query_box: tuple | list | None, count: int) -> list:
    """One box (or None) per query image. A flat sequence of four numbers, as JSON gives ``[x1, y1, x2, y2]``, is
    one box; a list of boxes (or Nones) gives one per image."""
    flat = isinstance(query_box, list | tuple | np.ndarray) and len(query_box) == 4
    if query_box is None or (flat and all(isinstance(v, int | float | np.number) for v in query_box)):
        return [query_box] * count
    if isinstance(query_box, list):
        return query_box
    raise ValueError(f"query_box {query_box!r} is neither a box (x1, y1, x2, y2) nor a list of boxes")


def _grid(shapes: list[tuple[int, int]], divisor: int) -> tuple[int, int]:
    """The common grid: the largest height and width, rounded up to ``divisor``."""
    return (
        math.ceil(max(h for h, _ in shapes) / divisor) * divisor,
        math.ceil(max(w for _, w in shapes) / divisor) * divisor,
    )


class Predictor:
    """Runs a trained model on (query, target) pairs with the preprocessing of its config."""

    def __init__(
        self,
        model: IADETR,
        config: Config,
        device: str | torch.device = "auto",
        batch_size: int = 8,
        compile: bool = False,
    ) -> None:
        """``batch_size``: the most targets per model call (see :meth:`_batches` for which go together).
        ``compile``: run the model through ``torch.compile`` (see :meth:`_forward`)."""
        self.device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.model = model.to(self.device).eval()
        self.parameters = sum(p.numel() for p in model.parameters())
        self.compiled = torch.compile(self.model) if compile else None
        self.compiled_checked = False
        self.config = config
        data = config.data
        self.target_transform = TargetTransform(False, [data.test_size], data.target_max_size, data.test_size)
        self.query_transform = QueryTransform(False, data.query_size, resize=data.query_resize)
        self.postprocessor = build_postprocessor(config.eval)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device = "auto",
        nms_iou: float | None = None,
        batch_size: int = 8,
        compile: bool = False,
    ) -> Predictor:
        """Model and preprocessing from the checkpoint's own config (EMA weights when the run kept them, batch
        norms folded into their convolutions); ``nms_iou`` replaces the config's ``eval.nms_iou`` (0: NMS-free)."""
        model, config = load_model(path)
        fuse_batchnorm(model)  # a model of its own, for inference only
        if nms_iou is not None:
            config.eval.nms_iou = nms_iou
        return cls(model, config, device, batch_size, compile)

    def _batches(self, shapes: list[tuple[int, int]], query_tensors: list[torch.Tensor]) -> list[list[int]]:
        """Which targets run together, at most ``batch_size`` a call. On a GPU: in order. On a CPU, batching
        only saves per-call overhead while every padded pixel costs compute: a small model (CPU-tiny: 89 pairs/s
        batched against 48 one at a time, ``tools/benchmark.py``) batches the targets that share one padded grid,
        and a large one (R50: 3.0 pairs/s one at a time against 2.6 in one call, even for same-size targets)
        runs one target a call."""
        if self.device.type == "cpu" and self.parameters > CPU_BATCHING_MAX_PARAMETERS:
            return [[i] for i in range(len(shapes))]
        divisor = self.config.data.size_divisor
        query_shapes = [tuple(q.shape[1:]) for q in query_tensors]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, shape in enumerate(shapes):
            key = _grid([shape, *query_shapes], divisor) if self.device.type == "cpu" else (0, 0)
            groups.setdefault(key, []).append(i)
        return [g[i : i + self.batch_size] for g in groups.values() for i in range(0, len(g), self.batch_size)]

    def _run(
        self,
        targets: list[tuple[torch.Tensor, tuple[int, int]]],
        query_tensors: list[torch.Tensor],
        query: QueryEncoding | None,
        threshold: float,
        on_grid: dict | None = None,
    ) -> list[dict[str, np.ndarray]]:
        """One model call: ``targets`` (resized image, original size) against the query (k-shot: several),
        whose encoding ``query`` was computed once for all targets (``None`` when the model runs compiled,
        which takes the query images every call). A model with backbone features on padding encodes the query
        on each grid instead: ``on_grid`` holds those encodings by grid, filled as the batches need them."""
        target_tensors = [t for t, _ in targets]
        grid = _grid([tuple(t.shape[1:]) for t in target_tensors + query_tensors], self.config.data.size_divisor)
        target_images, target_masks = pad_to_grid(target_tensors, *grid)
        sizes = torch.tensor([tuple(t.shape[1:]) for t in target_tensors], device=self.device)
        target_images, target_masks = target_images.to(self.device), target_masks.to(self.device)
        if on_grid is not None:
            if grid not in on_grid:
                on_grid[grid] = self.encode_query(query_tensors, grid)
            query = on_grid[grid]
        if query is not None:
            outputs = self.model.decode(query, self.model.encode_target(target_images, target_masks, sizes))
        else:
            outputs = self._forward(
                target_images, target_masks, *self._query_inputs(query_tensors, grid, len(targets)), sizes
            )
        return self._detections(outputs, [size for _, size in targets], threshold)

    def _query_inputs(self, query_tensors: list[torch.Tensor], grid: tuple[int, int], b: int) -> tuple:
        """The query images on ``grid``, one row per target: ``(B, 3, H, W)``, or ``(B, k, 3, H, W)`` k-shot."""
        query_images, query_masks = pad_to_grid(query_tensors, *grid)
        if len(query_tensors) > 1:
            query_images, query_masks = query_images[None], query_masks[None]
        query_images = query_images.expand(b, *query_images.shape[1:])
        query_masks = query_masks.expand(b, *query_masks.shape[1:])
        return query_images.to(self.device), query_masks.to(self.device)

    def encode_query(self, query_tensors: list[torch.Tensor], grid: tuple[int, int] | None = None) -> QueryEncoding:
        """The query's encoding (k-shot: one row, the exemplars averaged), computed once per ``predict``, on
        its own grid or on ``grid`` (pixels). A model with ``padding_features: backbone`` gives a canvas
        encoding, which is valid only on the grid it was computed on."""
        grid = grid or _grid([tuple(q.shape[1:]) for q in query_tensors], self.config.data.size_divisor)
        return self.model.encode_query(*self._query_inputs(query_tensors, grid, 1))

    def _detections(
        self, outputs: DetectorOutput, original_sizes: list[tuple[int, int]], threshold: float
    ) -> list[dict[str, np.ndarray]]:
        results = []
        for det in self.postprocessor(outputs, torch.tensor(original_sizes, device=self.device)):
            keep = det["scores"] >= threshold
            results.append({"boxes": det["boxes"][keep].cpu().numpy(), "scores": det["scores"][keep].cpu().numpy()})
        return results

    def _forward(self, *inputs: torch.Tensor) -> DetectorOutput:
        """The model, compiled when asked. Compiling pays only over many calls at one input shape (measured on
        a 2-core CPU: the first call takes about a minute; then the CPU-tiny model runs 1.7x and the R50 model
        1.2x faster). It never changes what is returned: if compilation fails, or the first compiled result
        differs from the eager one by more than float tolerance, the predictor warns and runs eagerly."""
        if self.compiled is None:
            return self.model(*inputs)
        try:
            outputs = self.compiled(*inputs)
        except Exception as error:  # any failure of the compiler stack: run eagerly, as without compile
            logger.warning("torch.compile failed (%s: %s); running eagerly", type(error).__name__, error)
            self.compiled = None
            return self.model(*inputs)
        if not self.compiled_checked:
            eager = self.model(*inputs)
            same = torch.allclose(outputs.logits, eager.logits, rtol=1e-3, atol=1e-4) and torch.allclose(
                outputs.boxes, eager.boxes, rtol=1e-3, atol=1e-4
            )
            if not same:
                logger.warning("the compiled model's outputs differ from the eager model's; running eagerly")
                self.compiled = None
                return eager
            self.compiled_checked = True
        return outputs

    def _query_tensor(self, image: ImageLike, box: tuple | None) -> torch.Tensor:
        array = read_any(image)
        h, w = array.shape[:2]
        box = check_query_box(box, w, h) if box is not None else (0.0, 0.0, float(w), float(h))
        return to_tensor(self.query_transform(array, box, seed=0))

    def _target_tensor(self, image: ImageLike) -> tuple[torch.Tensor, tuple[int, int]]:
        array = read_any(image)
        out = self.target_transform(array, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), seed=0)
        return to_tensor(out.image), array.shape[:2]

    @torch.no_grad()
    def predict(
        self,
        query_image: ImageLike | list[ImageLike],
        target_image: ImageLike | list[ImageLike],
        query_box: tuple | list[tuple | None] | None = None,
        score_threshold: float = 0.3,
    ) -> dict[str, np.ndarray] | list[dict[str, np.ndarray]]:
        """Detections of the query's class in the target(s): ``{"boxes": (k, 4) xyxy, "scores": (k,)}``.

        ``query_box``: where the object is in the query image (``xyxy`` pixels); ``None`` uses the whole
        image. With several query images, give one box (or ``None``) per image.
        """
        queries = query_image if isinstance(query_image, list) else [query_image]
        boxes = _as_boxes(query_box, len(queries))
        if len(boxes) != len(queries):
            raise ValueError(f"got {len(queries)} query images but {len(boxes)} query boxes")
        query_tensors = [self._query_tensor(q, b) for q, b in zip(queries, boxes)]
        targets = [self._target_tensor(t) for t in (target_image if isinstance(target_image, list) else [target_image])]
        results: list[dict[str, np.ndarray]] = [{} for _ in targets]
        eager = self.compiled is None
        # the query's encoding: once for every target, or (backbone features on padding) once per grid
        query = self.encode_query(query_tensors) if eager and self.model.zero_padding else None
        on_grid = {} if eager and not self.model.zero_padding else None
        for group in self._batches([tuple(t.shape[1:]) for t, _ in targets], query_tensors):
            detections = self._run([targets[i] for i in group], query_tensors, query, score_threshold, on_grid)
            for i, det in zip(group, detections):
                results[i] = det
        return results if isinstance(target_image, list) else results[0]
