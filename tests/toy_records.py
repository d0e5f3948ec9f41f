"""Hand-made image records for evaluator tests: 100 x 100 images whose boxes and labels a test writes out."""

from pathlib import Path

import numpy as np

from detector.data.records import ImageRecord


def toy_record(image_id: int, boxes: list, labels: list, ignore: list | None = None) -> ImageRecord:
    """An image ``{image_id}.jpg`` (never read) with ``boxes`` (xyxy) of ``labels``; no box ignored unless given."""
    return ImageRecord(
        image_id,
        Path(f"{image_id}.jpg"),
        100,
        100,
        np.array(boxes, np.float32),
        np.array(labels),
        np.zeros(len(labels), bool) if ignore is None else np.array(ignore),
    )
