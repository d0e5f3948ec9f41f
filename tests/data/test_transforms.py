import numpy as np
import pytest
import torch

from detector.data.dataset import collate, xyxy_to_normalized_cxcywh
from detector.data.transforms import QueryTransform, TargetTransform, crop_box, detr_random_crop, to_tensor


def _image_with_rectangle(h=300, w=420, box=(100, 60, 180, 200)):
    image = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return image, np.array([box], np.float32)


def _ink_extent(image):
    ys, xs = np.nonzero(image[:, :, 0] > 127)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def test_train_transform_boxes_still_frame_the_drawn_object():
    image, boxes = _image_with_rectangle()
    transform = TargetTransform(train=True, sizes=[200, 256, 320], max_size=400, test_size=256, crop_style="box_safe")
    for seed in range(25):
        out = transform(image, boxes, np.array([3]), seed)
        assert out.image.shape[0] <= 400 and out.image.shape[1] <= 400
        assert min(out.image.shape[:2]) in (200, 256, 320) or max(out.image.shape[:2]) == 400
        assert len(out.boxes) == 1 and out.labels.tolist() == [3]
        np.testing.assert_allclose(out.boxes[0], _ink_extent(out.image), atol=2.0)


def test_test_transform_is_a_pure_resize():
    image, boxes = _image_with_rectangle()
    out = TargetTransform(train=False, sizes=[1], max_size=1000, test_size=150)(image, boxes, np.array([1]), 0)
    assert out.image.shape[:2] == (150, 210)
    np.testing.assert_allclose(out.boxes[0], boxes[0] * 0.5, atol=1e-3)


def test_query_patch_is_the_box_content():
    image, boxes = _image_with_rectangle()
    patch = crop_box(image, tuple(boxes[0]))
    assert patch.shape == (140, 80, 3) and (patch == 255).all()
    out = QueryTransform(train=False, query_size=70, resize="longer_side")(image, tuple(boxes[0]), 0)
    assert out.shape == (70, 40, 3)
    square = QueryTransform(train=False, query_size=70)(image, tuple(boxes[0]), 0)  # the official: 70 x 70
    assert square.shape == (70, 70, 3) and (square == 255).all()
    for style in ("official", "light"):
        augmented = QueryTransform(train=True, query_size=70, augment_style=style)(image, tuple(boxes[0]), 3)
        assert augmented.shape == (70, 70, 3)
        again = QueryTransform(train=True, query_size=70, augment_style=style)(image, tuple(boxes[0]), 3)
        np.testing.assert_array_equal(augmented, again)  # a pure function of the seed


def test_detr_crop_keeps_the_parts_of_boxes_inside_the_window():
    """Four white squares on black: after the crop, the boxes left are exactly the ink inside the window
    (a box cut by the window shrinks to its visible part; one outside it is dropped with its label)."""
    image = np.zeros((600, 800, 3), np.uint8)
    squares = [(20, 20, 120, 120), (350, 250, 450, 350), (650, 450, 780, 580), (700, 20, 790, 110)]
    for x1, y1, x2, y2 in squares:
        image[y1:y2, x1:x2] = 255
    boxes, labels = np.array(squares, np.float32), np.arange(4)
    sizes, dropped = set(), 0
    for seed in range(30):
        out, kept_boxes, kept = detr_random_crop(image, boxes, labels, np.random.default_rng(seed))
        h, w = out.shape[:2]
        assert 384 <= w <= 512 and 384 <= h <= 512
        sizes.add((h, w))
        dropped += 4 - len(kept)
        for box in kept_boxes:
            x1, y1, x2, y2 = np.round(box).astype(int)
            inside = out[y1:y2, x1:x2, 0]
            assert inside.size and (inside > 127).mean() > 0.9  # the box is (almost all) ink
        ink = (out[:, :, 0] > 127).sum()
        area = sum((b[2] - b[0]) * (b[3] - b[1]) for b in kept_boxes)
        assert area == pytest.approx(ink, rel=0.1, abs=60)  # and every ink pixel is in a box
    assert len(sizes) > 10 and dropped > 0


def test_collate_common_grid_and_masks():
    from detector.data.dataset import Sample

    samples = []
    for (h, w), (qh, qw) in [((100, 140), (60, 30)), ((130, 90), (64, 64))]:
        samples.append(Sample(torch.ones(3, h, w), torch.ones(3, qh, qw), {"boxes": torch.zeros(0, 4)}, {}))
    batch = collate(samples, size_divisor=32)
    assert batch.target_images.shape == (2, 3, 160, 160)
    assert batch.query_images.shape == (2, 3, 160, 160)
    assert not batch.target_masks[0, :100, :140].any() and batch.target_masks[0, 100:, :].all()
    assert batch.target_masks[0, :, 140:].all()
    assert not batch.query_masks[1, :64, :64].any() and batch.query_masks[1, 64:].all()
    assert (batch.target_images[batch.target_masks.unsqueeze(1).expand_as(batch.target_images)] == 0).all()


def test_box_normalisation_and_tensor():
    boxes = xyxy_to_normalized_cxcywh(np.array([[10, 20, 30, 60]]), width=100, height=200)
    torch.testing.assert_close(boxes, torch.tensor([[0.2, 0.2, 0.2, 0.2]]))
    tensor = to_tensor(np.full((4, 5, 3), 255, np.uint8))
    assert tensor.shape == (3, 4, 5)
    torch.testing.assert_close(
        tensor[:, 0, 0], torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225])
    )


def test_query_flip_follows_hflip():
    # left half bright, right half dark: a flip puts the bright half on the right
    image = np.zeros((100, 100, 3), np.uint8)
    image[:, :50] = 230
    box = (0.0, 0.0, 100.0, 100.0)

    def flipped(hflip, style):
        transform = QueryTransform(train=True, query_size=100, hflip=hflip, augment_style=style)
        sides = [transform(image, box, seed) for seed in range(40)]
        return sum(int(p[:, :50].mean() < p[:, 50:].mean()) for p in sides)

    for style in ("official", "light"):
        assert flipped(hflip=False, style=style) == 0, style  # glyph data: a mirrored query is another class
        assert 8 <= flipped(hflip=True, style=style) <= 32, style  # p = 0.5


def test_official_query_augmentation_turns_grayscale_at_its_probability():
    """The official recipe's grayscale probability is 0.4 (the light one's 0.1): counted over 200 seeds on a
    saturated patch (colour jitter at p 0.3 moves saturation by at most 40%, so only grayscale makes R = G = B)."""
    image = np.zeros((64, 64, 3), np.uint8)
    image[..., 0], image[..., 1] = 220, 40
    box = (0.0, 0.0, 64.0, 64.0)
    for style, p in (("official", 0.4), ("light", 0.1)):
        transform = QueryTransform(train=True, query_size=64, augment_style=style)
        gray = sum(
            int(np.ptp(transform(image, box, seed)[20:44, 20:44].astype(int), axis=2).max() <= 2) for seed in range(200)
        )
        assert abs(gray / 200 - p) < 0.08, (style, gray)
