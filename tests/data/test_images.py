import json

import numpy as np
import pytest
from PIL import Image

from detector.data.coco import AnnotationError, load_coco
from detector.data.images import ImageReadError, load_image


def test_missing_and_corrupt_images(tmp_path):
    with pytest.raises(ImageReadError, match="does not exist"):
        load_image(tmp_path / "nope.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(ImageReadError, match="bad.jpg: not a decodable image"):
        load_image(bad)
    truncated = tmp_path / "truncated.png"
    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(ImageReadError, match="truncated.png"):
        load_image(truncated)


def test_grayscale_rgba_16bit(tmp_path):
    Image.fromarray(np.full((8, 9), 200, np.uint8), mode="L").save(tmp_path / "g.png")
    gray = load_image(tmp_path / "g.png")
    assert gray.shape == (8, 9, 3) and (gray == 200).all()

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    rgba[0, 0, 3] = 0  # one transparent pixel
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.shape == (4, 4, 3) and out[1, 1].tolist() == [200, 0, 0] and out[0, 0].tolist() == [0, 0, 0]

    sixteen = np.full((5, 6), 65535, np.uint16)
    sixteen[0, 0] = 0
    Image.fromarray(sixteen).save(tmp_path / "d.png")
    out = load_image(tmp_path / "d.png")
    assert out.dtype == np.uint8 and out.shape == (5, 6, 3) and out[1, 1, 0] == 255 and out[0, 0, 0] == 0


def test_exif_rotation_applied(tmp_path):
    array = np.zeros((10, 20, 3), np.uint8)
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert load_image(tmp_path / "r.jpg").shape == (20, 10, 3)


def _coco(tmp_path, annotations, categories=({"id": 1, "name": "a"},)):
    body = {
        "images": [{"id": 1, "file_name": "x.jpg", "width": 100, "height": 50}],
        "annotations": annotations,
        "categories": list(categories),
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(body))
    return path


def test_coco_loader_errors_and_cleaning(tmp_path):
    path = _coco(tmp_path, [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [0, 0, 5, 5]}])
    with pytest.raises(AnnotationError, match="category_id 7"):
        load_coco(path, tmp_path)
    path = _coco(
        tmp_path,
        [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [90, 40, 30, 30]},  # leaves the image: clipped
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 10]},  # degenerate: dropped
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10], "iscrowd": 1},
        ],
    )
    record = load_coco(path, tmp_path).images[0]
    assert record.boxes.tolist() == [[90, 40, 100, 50], [5, 5, 15, 15]]
    assert record.ignore.tolist() == [False, True]
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(AnnotationError, match="not valid JSON"):
        load_coco(tmp_path / "broken.json", tmp_path)
    (tmp_path / "empty.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    assert load_coco(tmp_path / "empty.json", tmp_path).images == []


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path):
    from PIL import Image

    from detector.data.images import MAX_PIXELS, ImageReadError, load_image

    path = tmp_path / "huge.png"
    Image.new("1", (11_000, 10_000)).save(path)  # 110 megapixels, a few kilobytes on disk
    assert MAX_PIXELS < 11_000 * 10_000
    with pytest.raises(ImageReadError, match="110 megapixels, above the 100-megapixel limit"):
        load_image(path)


def test_image_cache_keeps_decoded_images_up_to_its_size(tmp_path):
    from detector.data.images import ImageCache

    paths = []
    for i in range(3):  # 32 x 32 x 3 = 3,072 bytes each
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((32, 32, 3), i * 40, np.uint8)).save(paths[-1])
    cache = ImageCache(max_mb=7000 / 2**20)  # room for two of them
    first = cache(paths[0])
    np.testing.assert_array_equal(first, load_image(paths[0]))
    assert cache(paths[0]) is first and (cache.hits, cache.misses) == (1, 1)
    with pytest.raises(ValueError, match="read-only"):
        first[0, 0, 0] = 1  # a transform writing into its input would corrupt the next episode's image
    cache(paths[1])
    cache(paths[0])  # paths[0] is now the most recently used, so paths[1] goes first
    cache(paths[2])
    assert len(cache) == 2 and cache.bytes == 2 * 3072
    assert cache(paths[0]) is first and cache.misses == 3
    cache(paths[1])  # dropped, so decoded again
    assert cache.misses == 4
    missing = tmp_path / "late.png"
    with pytest.raises(ImageReadError, match="does not exist"):
        cache(missing)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(missing)
    assert cache(missing).shape == (8, 8, 3)  # the error was not cached
    with pytest.raises(ValueError, match="positive size"):
        ImageCache(0)
