"""One query against many target images: the loop behind ``tools/infer.py``, usable from Python.

predictor = Predictor.from_checkpoint("best.pth")
for item in predict_images(predictor, "mug.jpg", (10, 20, 200, 240), find_targets("photos/")):
    item.path, item.detections  # or item.error for an unreadable image
"""

from __future__ import annotations

import glob
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.images import ImageReadError, load_image
from .predictor import ImageLike, Predictor

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def find_targets(spec: str | Path) -> list[Path]:
    """A file, a folder (its images, sorted) or a glob pattern."""
    path = Path(spec)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if path.is_file():
        return [path]
    matches = sorted(Path(p) for p in glob.glob(str(spec)))
    if not matches:
        raise FileNotFoundError(f"--target {spec} is not a file, a folder or a glob pattern that matches anything")
    return matches


def picture_names(paths: list[Path]) -> list[str]:
    """One distinct picture name per target: ``stem.png``; ``stem_ext.png`` where two targets share a stem,
    then a counter."""
    stems = Counter(p.stem for p in paths)
    names, used = [], set()
    for path in paths:
        stem = path.stem
        name = f"{stem}.png" if stems[stem] == 1 else f"{stem}_{path.suffix.lstrip('.')}.png"
        base, n = name[:-4], 1
        while name in used:
            n += 1
            name = f"{base}_{n}.png"
        used.add(name)
        names.append(name)
    return names


@dataclass
class TargetResult:
    """The detections in one target (``xyxy`` pixels, scores), or the reason it could not be read."""

    path: Path
    image: np.ndarray | None = None
    detections: dict[str, np.ndarray] | None = None
    error: str | None = None


def predict_images(
    predictor: Predictor,
    query_image: ImageLike | list[ImageLike],
    query_box: tuple | list[tuple | None] | None,
    paths: list[Path],
    batch_size: int = 4,
    score_threshold: float = 0.3,
) -> Iterator[TargetResult]:
    """Run the query (k-shot: a list of query images, and of boxes) against ``paths`` ``batch_size`` targets at a
    time, in order; an unreadable target yields a result with ``error`` and the rest go on."""
    for start in range(0, len(paths), batch_size):
        readable = []
        for path in paths[start : start + batch_size]:
            try:
                readable.append(TargetResult(path, load_image(path)))
            except ImageReadError as error:
                yield TargetResult(path, error=str(error))
        if not readable:
            continue
        detections = predictor.predict(
            query_image, [r.image for r in readable], query_box=query_box, score_threshold=score_threshold
        )
        for result, det in zip(readable, detections):
            result.detections = det
            yield result
