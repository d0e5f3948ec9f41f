import numpy as np
from pycocotools.coco import COCO

from detector.data.coco import load_coco
from detector.synthetic.benchmark import CLASSES, SIZES, render_image, render_object


def test_benchmark_loads_in_pycocotools(synthetic_root):
    coco = COCO(str(synthetic_root / "annotations" / "test.json"))
    assert len(coco.getCatIds()) == len(CLASSES) >= 40
    assert len(coco.getImgIds()) == 24
    assert len(coco.getAnnIds()) > 24


def test_benchmark_properties(synthetic_root):
    data = load_coco(synthetic_root / "annotations" / "train.json", synthetic_root / "train")
    size = SIZES["default"]
    sides, per_class_instances = [], []
    for record in data.images:
        assert record.path.is_file()
        assert size.min_side <= record.width <= size.max_side
        assert size.min_side <= record.height <= size.max_side
        assert len(record.classes()) < len(CLASSES)  # some classes are absent from every image
        for label in set(record.labels.tolist()):
            per_class_instances.append(int((record.labels == label).sum()))
        box_sides = np.maximum(record.boxes[:, 2] - record.boxes[:, 0], record.boxes[:, 3] - record.boxes[:, 1])
        sides.extend(box_sides.tolist())
        assert (record.boxes[:, 2] <= record.width).all() and (record.boxes[:, 3] <= record.height).all()
    assert max(per_class_instances) <= 6 and min(per_class_instances) >= 1
    assert max(per_class_instances) >= 3  # multi-instance images exist
    # object scale spans at least 4x (rotation makes boxes a little larger than the drawn side)
    assert max(sides) / min(sides) >= 4


def test_render_is_deterministic_and_varies():
    a, objs_a = render_image(3, "train", 7, SIZES["default"])
    b, objs_b = render_image(3, "train", 7, SIZES["default"])
    c, _ = render_image(4, "train", 7, SIZES["default"])
    assert np.array_equal(a, b) and objs_a == objs_b
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_object_masks_are_tight():
    # boxes are the extent of the drawn mask: the mask touches all four sides of its own frame
    rng = np.random.default_rng(0)
    for name in CLASSES:
        mask = render_object(name, 48, rng) > 127
        assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any(), name
        assert 24 <= max(mask.shape) <= 80, (name, mask.shape)
