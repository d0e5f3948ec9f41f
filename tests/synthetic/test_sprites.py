"""The second generated family (sprites): classes are distinct, instances belong to their class, and the
generated data set loads as a custom COCO-format data set with a named unseen split."""

import numpy as np
import pytest
from pycocotools.coco import COCO

from detector.config import DataConfig
from detector.data.catalog import load_dataset, split_for
from detector.synthetic.benchmark import SIZES, BenchmarkSize, generate, render_image
from detector.synthetic.sprites import CLASSES, SPRITE_CLASSES, SPRITES, draw_sprite, sprite_masks

TINY = BenchmarkSize(train_images=24, test_images=12)


def _code(body: np.ndarray, marks: np.ndarray) -> np.ndarray:
    """0 background, 1 body, 2 painted markings."""
    return (body > 127).astype(np.int8) + (marks > 127)


def test_classes_are_distinct_and_instances_resemble_their_class():
    canonical = [_code(*sprite_masks(d)) for d in SPRITE_CLASSES]
    for i, a in enumerate(canonical):
        for b in canonical[i + 1 :]:
            assert (a != b).mean() > 0.05  # at least 5% of the frame differs between any two classes
    # an instance (jittered, before scaling and rotation) is nearest to its own class's canonical drawing
    rng = np.random.default_rng(0)
    hits = total = 0
    for k, definition in enumerate(SPRITE_CLASSES):
        for _ in range(5):
            sample = _code(*sprite_masks(definition, rng))
            hits += int(np.argmin([(sample != c).mean() for c in canonical]) == k)
            total += 1
    assert hits / total >= 0.9  # chance: 1/36


def test_instances_are_tight_and_markings_lie_on_the_body():
    rng = np.random.default_rng(1)
    for name in CLASSES:
        body, marks = draw_sprite(name, 48, rng)
        inside = body > 127
        assert body.shape == marks.shape
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any(), name
        assert 24 <= max(body.shape) <= 80, (name, body.shape)
        assert not (marks[body == 0] > 0).any()


def test_images_are_deterministic_and_differ_from_the_benchmark():
    a, objs_a = render_image(5, "test", 3, SIZES["default"], SPRITES)
    b, objs_b = render_image(5, "test", 3, SIZES["default"], SPRITES)
    glyphs, _ = render_image(5, "test", 3, SIZES["default"])
    assert np.array_equal(a, b) and objs_a == objs_b
    assert a.shape != glyphs.shape or not np.array_equal(a, glyphs)
    assert all(0 <= o["class_index"] < len(CLASSES) for o in objs_a)


@pytest.fixture(scope="module")
def sprites_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sprites")
    summary = generate(root, TINY, seed=0, workers=1, family=SPRITES)
    assert summary["family"] == "sprites" and summary["classes"] == 36
    return root


def test_loads_as_a_custom_data_set_with_a_named_split(sprites_root):
    coco = COCO(str(sprites_root / "annotations" / "train.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    config = DataConfig(
        dataset="custom",
        train_annotations=str(sprites_root / "annotations" / "train.json"),
        train_images=str(sprites_root / "train"),
        test_annotations=str(sprites_root / "annotations" / "test.json"),
        test_images=str(sprites_root / "test"),
        unseen_classes=["sprite 01", "sprite 05"],
    )
    data = load_dataset(config, "test")
    assert len(data.images) == TINY.test_images
    assert sum(len(r.boxes) for r in data.images) == len(COCO(str(sprites_root / "annotations" / "test.json")).anns)
    for record in data.images:
        assert record.path.is_file()
        assert (record.boxes[:, 2] > record.boxes[:, 0]).all() and (record.boxes[:, 2] <= record.width).all()
    split = split_for(config, [c.name for c in data.categories])
    assert split.unseen == ("sprite 01", "sprite 05") and len(split.seen) == 34
