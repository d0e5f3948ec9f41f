"""Pascal VOC from the standard VOCdevkit layout.

``VOCdevkit/VOC2007/{Annotations,ImageSets/Main,JPEGImages}`` and the same for VOC2012. The one-shot
protocol trains on 2007 + 2012 ``trainval`` and tests on 2007 ``test``. Objects marked ``difficult`` are
kept with ``ignore=True``: excluded from training targets and query pools, and ignored (neither hit nor
false positive) in evaluation, as the VOC protocol does.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from .coco import AnnotationError
from .records import Category, DetectionData, ImageRecord

VOC_CLASSES = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]


def load_voc(devkit: str | Path, sets: list[tuple[str, str]], name: str = "voc") -> DetectionData:
    """Load VOC image sets, e.g. ``sets=[("2007", "trainval"), ("2012", "trainval")]``.

    Category ids are 1..20 in the standard class order. Image ids are running integers (1-based) in the
    order of the image-set files; VOC boxes are 1-based inclusive pixel coordinates and are converted to
    0-based ``xyxy`` (``x1 - 1, y1 - 1, x2, y2``).
    """
    devkit = Path(devkit)
    categories = [Category(i + 1, n) for i, n in enumerate(VOC_CLASSES)]
    ids = {n: i + 1 for i, n in enumerate(VOC_CLASSES)}
    images: list[ImageRecord] = []
    for year, image_set in sets:
        root = devkit / f"VOC{year}"
        list_file = root / "ImageSets" / "Main" / f"{image_set}.txt"
        if not list_file.is_file():
            raise AnnotationError(
                f"Pascal VOC image set {list_file} does not exist; expected the VOCdevkit layout "
                f"{devkit}/VOC{year}/{{Annotations,ImageSets/Main,JPEGImages}}"
            )
        for stem in list_file.read_text().split():
            images.append(_parse(root, stem, len(images) + 1, ids))
    return DetectionData(name, categories, images)


def _parse(root: Path, stem: str, image_id: int, ids: dict[str, int]) -> ImageRecord:
    xml_file = root / "Annotations" / f"{stem}.xml"
    try:
        tree = ET.parse(xml_file).getroot()
    except (OSError, ET.ParseError) as error:
        raise AnnotationError(f"cannot read VOC annotation {xml_file}: {error}") from error
    size = tree.find("size")
    width, height = int(size.findtext("width")), int(size.findtext("height"))
    boxes, labels, ignore = [], [], []
    for obj in tree.iter("object"):
        name = obj.findtext("name").strip()
        if name not in ids:
            raise AnnotationError(f"{xml_file}: unknown VOC class {name!r}; known: {', '.join(ids)}")
        bb = obj.find("bndbox")
        x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        box = np.clip([x1 - 1, y1 - 1, x2, y2], 0, [width, height, width, height])
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            continue
        boxes.append(box)
        labels.append(ids[name])
        ignore.append(obj.findtext("difficult", "0").strip() == "1")
    return ImageRecord(
        image_id=image_id,
        path=root / "JPEGImages" / f"{stem}.jpg",
        width=width,
        height=height,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        labels=np.asarray(labels, np.int64),
        ignore=np.asarray(ignore, bool),
    )
