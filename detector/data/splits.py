"""One-shot splits as data: which classes are seen in training and which are held out.

COCO (as CoAE, AIT, BHRL and IA-DETR): index the 80 classes 1..80 in order of category id
(person = 1); split ``k`` (1..4) holds out the classes whose index satisfies ``index % 4 == k % 4``.
The rule applies to the contiguous index, never to the COCO category id, whose gaps would select
different classes. The embedded benchmark uses the same rule over its own classes. Pascal VOC has a
single split whose unseen classes are aeroplane, cat, cow and sheep.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .records import DetectionData
from .voc import VOC_CLASSES

COCO_CLASSES = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
]

VOC_UNSEEN = ["aeroplane", "cat", "cow", "sheep"]


@dataclass(frozen=True)
class Split:
    """Seen (training) and unseen (held-out) class names, each in the data set's class order."""

    seen: tuple[str, ...]
    unseen: tuple[str, ...]

    def to_dict(self) -> dict[str, list[str]]:
        return {"seen": list(self.seen), "unseen": list(self.unseen)}


def index_rule_split(class_names: list[str], split: int) -> Split:
    """Hold out the classes whose 1-based position in ``class_names`` is ``split`` modulo 4."""
    if split not in (1, 2, 3, 4):
        raise ValueError(f"split must be 1, 2, 3 or 4, got {split}")
    unseen = tuple(n for i, n in enumerate(class_names, start=1) if i % 4 == split % 4)
    seen = tuple(n for n in class_names if n not in unseen)
    return Split(seen, unseen)


def coco_split(split: int) -> Split:
    return index_rule_split(COCO_CLASSES, split)


def voc_split() -> Split:
    return Split(tuple(c for c in VOC_CLASSES if c not in VOC_UNSEEN), tuple(VOC_UNSEEN))


def explicit_split(class_names: list[str], unseen: list[str]) -> Split:
    """A split for custom data: the unseen classes are named; every other class is seen."""
    unknown = [n for n in unseen if n not in class_names]
    if unknown:
        raise ValueError(f"unseen classes {unknown} are not in the data set; its classes: {class_names}")
    return Split(tuple(n for n in class_names if n not in unseen), tuple(n for n in class_names if n in unseen))


def seen_only(data: DetectionData, split: Split) -> DetectionData:
    """The training view of ``data``: unseen-class boxes are removed (the objects stay in the images,
    unlabeled, as the protocol prescribes); images keep their ids."""
    seen_ids = {data.category(n).id for n in split.seen}
    images = []
    for record in data.images:
        keep = [int(label) in seen_ids for label in record.labels]
        images.append(replace(record, boxes=record.boxes[keep], labels=record.labels[keep], ignore=record.ignore[keep]))
    return DetectionData(f"{data.name}-seen", data.categories, images)
