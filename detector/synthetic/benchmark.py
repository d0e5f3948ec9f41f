"""The embedded benchmark: a one-shot detection data set that the project generates itself.

Forty-two classes (24 letters, 5 digits, 13 geometric shapes) are drawn on textured, cluttered
backgrounds. Every instance varies: letters and digits use seven Hershey font faces (upright or italic,
including two script faces), shapes have jittered vertices and aspect ratio; each instance is drawn solid,
as an outline or hatched, with a random stroke thickness, filled with a solid colour, a gradient or a
noise texture, scaled over 20-96 pixels (4.8x) and rotated by up to 25 degrees. An image holds 1-4
classes with 1-6 instances each, objects may partly occlude each other (every object keeps at least 55%
of its pixels visible), and every object in an image is annotated, so any class not annotated in an image
is absent from it. Everything is a pure function of ``(seed, subset, image index)``.

The output is COCO format::

    ROOT/annotations/train.json   ROOT/annotations/test.json
    ROOT/train/000000.jpg ...     ROOT/test/000000.jpg ...

Boxes are the tight box of the whole drawn object, occluded parts included.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

LETTERS = list("ABCDEFGHJKLMNPQRSTUVWXYZ")  # no I and O: they are a stroke and a ring in most faces
DIGITS = list("34679")  # 0, 1, 2, 5 and 8 are too close to O, I, Z, S and B in some faces
SHAPES = [
    "circle",
    "triangle",
    "square",
    "pentagon",
    "hexagon",
    "star",
    "plus",
    "heart",
    "arrow",
    "crescent",
    "bolt",
    "drop",
    "trapezoid",
]
CLASSES = [f"letter {c}" for c in LETTERS] + [f"digit {c}" for c in DIGITS] + SHAPES
SUBSETS = {"train": 0, "test": 1}

FONTS = [
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
    cv2.FONT_HERSHEY_SCRIPT_COMPLEX,
]
STYLES = ("solid", "outline", "hatched")


@dataclass(frozen=True)
class BenchmarkSize:
    train_images: int
    test_images: int
    min_side: int = 240
    max_side: int = 360
    min_object: int = 20
    max_object: int = 96


SIZES = {
    "default": BenchmarkSize(train_images=4000, test_images=500),
    "small": BenchmarkSize(train_images=160, test_images=48),
}


# ---------------------------------------------------------------------------------------------------------
# one object: a binary mask in a canonical 128 px frame


def _regular_polygon(n: int, rng: np.random.Generator, inner: float | None = None) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, n if inner is None else 2 * n, endpoint=False) - np.pi / 2
    radius = np.ones_like(angles) if inner is None else np.where(np.arange(len(angles)) % 2 == 0, 1, inner)
    return np.stack([np.cos(angles) * radius, np.sin(angles) * radius], 1) * 0.45 + 0.5


_POLYGONS = {
    "triangle": [(0.5, 0.06), (0.95, 0.92), (0.05, 0.92)],
    "square": [(0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9)],
    "plus": [
        (0.36, 0.05),
        (0.64, 0.05),
        (0.64, 0.36),
        (0.95, 0.36),
        (0.95, 0.64),
        (0.64, 0.64),
        (0.64, 0.95),
        (0.36, 0.95),
        (0.36, 0.64),
        (0.05, 0.64),
        (0.05, 0.36),
        (0.36, 0.36),
    ],
    "arrow": [
        (0.05, 0.38),
        (0.55, 0.38),
        (0.55, 0.12),
        (0.95, 0.5),
        (0.55, 0.88),
        (0.55, 0.62),
        (0.05, 0.62),
    ],
    "bolt": [(0.55, 0.02), (0.2, 0.55), (0.45, 0.55), (0.35, 0.98), (0.8, 0.4), (0.55, 0.4), (0.7, 0.02)],
    "trapezoid": [(0.3, 0.2), (0.7, 0.2), (0.95, 0.8), (0.05, 0.8)],
}


def _shape_mask(name: str, rng: np.random.Generator) -> np.ndarray:
    size = 128
    mask = np.zeros((size, size), np.uint8)
    jitter = lambda pts: (np.asarray(pts) + rng.normal(0, 0.025, np.shape(pts))) * size  # noqa: E731
    if name == "circle":
        cv2.circle(mask, (64, 64), 56, 255, -1, cv2.LINE_AA)
    elif name == "crescent":
        cv2.circle(mask, (64, 64), 56, 255, -1, cv2.LINE_AA)
        cv2.circle(mask, (int(64 + rng.uniform(22, 34)), int(64 - rng.uniform(0, 14))), 50, 0, -1, cv2.LINE_AA)
    elif name == "heart":
        t = np.linspace(0, 2 * np.pi, 80)
        x, y = 16 * np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        pts = np.stack([x / 36 + 0.5, y / 36 + 0.47], 1)
        cv2.fillPoly(mask, [jitter(pts).astype(np.int32)], 255, cv2.LINE_AA)
    elif name == "drop":
        cv2.circle(mask, (64, 82), 40, 255, -1, cv2.LINE_AA)
        cv2.fillPoly(mask, [jitter([(0.5, 0.04), (0.81, 0.55), (0.19, 0.55)]).astype(np.int32)], 255, cv2.LINE_AA)
    elif name in ("pentagon", "hexagon", "star"):
        pts = {
            "pentagon": lambda: _regular_polygon(5, rng),
            "hexagon": lambda: _regular_polygon(6, rng),
            "star": lambda: _regular_polygon(5, rng, inner=0.42),
        }[name]()
        cv2.fillPoly(mask, [jitter(pts).astype(np.int32)], 255, cv2.LINE_AA)
    else:
        cv2.fillPoly(mask, [jitter(_POLYGONS[name]).astype(np.int32)], 255, cv2.LINE_AA)
    return mask


def _glyph_mask(char: str, rng: np.random.Generator) -> np.ndarray:
    font = int(FONTS[rng.integers(len(FONTS))]) | (cv2.FONT_ITALIC if rng.random() < 0.3 else 0)
    thickness = int(rng.integers(3, 10))
    canvas = np.zeros((200, 200), np.uint8)
    scale = 4.0 if font & 7 != cv2.FONT_HERSHEY_PLAIN else 8.0
    (w, h), _ = cv2.getTextSize(char, font, scale, thickness)
    cv2.putText(canvas, char, ((200 - w) // 2, (200 + h) // 2), font, scale, 255, thickness, cv2.LINE_AA)
    return canvas


def _ink_box(mask: np.ndarray) -> tuple[slice, slice] | None:
    """The rows and columns spanned by the mask's ink (> 127), or None for a blank mask."""
    ys, xs = np.nonzero(mask > 127)
    return (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)) if len(ys) else None


def _crop_to_ink(mask: np.ndarray) -> np.ndarray:
    box = _ink_box(mask)
    return mask[box] if box else mask


def _styled(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    style = STYLES[rng.choice(3, p=[0.5, 0.25, 0.25])]
    side = max(mask.shape)
    if style == "outline":
        k = max(3, int(side * rng.uniform(0.08, 0.16)))
        inner = cv2.erode(mask, np.ones((k, k), np.uint8))
        if (inner > 127).sum() > 0.05 * (mask > 127).sum():
            return cv2.subtract(mask, inner)
    elif style == "hatched":
        period = max(4, int(side * rng.uniform(0.12, 0.2)))
        yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
        angle = rng.uniform(0, np.pi)
        stripes = ((xx * np.cos(angle) + yy * np.sin(angle)) % period) < period * 0.55
        border = cv2.subtract(mask, cv2.erode(mask, np.ones((5, 5), np.uint8)))
        return np.maximum(np.where(stripes, mask, 0).astype(np.uint8), border)
    return mask


def scale_and_rotate(
    masks: list[np.ndarray], side: int, rng: np.random.Generator, max_angle: float = 25.0
) -> list[np.ndarray]:
    """Resize same-shaped masks so that the first one's longer side is about ``side`` (aspect ratio jittered
    by up to exp(0.2)), rotate them together by up to ``max_angle`` degrees, and crop all of them to the
    first one's ink."""
    aspect = math.exp(rng.uniform(-0.2, 0.2))
    h, w = masks[0].shape
    scale = side / max(h * aspect, w / aspect)
    new_w, new_h = max(3, round(w / aspect * scale)), max(3, round(h * aspect * scale))
    angle = rng.uniform(-max_angle, max_angle)
    diag = math.ceil(math.hypot(new_w, new_h)) + 2
    matrix = cv2.getRotationMatrix2D((new_w / 2, new_h / 2), angle, 1.0)
    matrix[:, 2] += [(diag - new_w) / 2, (diag - new_h) / 2]
    out = [
        cv2.warpAffine(cv2.resize(m, (new_w, new_h), interpolation=cv2.INTER_AREA), matrix, (diag, diag)) for m in masks
    ]
    box = _ink_box(out[0])
    return [m[box] for m in out] if box else out


def render_object(class_name: str, side: int, rng: np.random.Generator) -> np.ndarray:
    """A ``uint8`` mask (0..255) of one instance of ``class_name`` whose longer side is about ``side``."""
    kind, _, token = class_name.partition(" ")
    mask = _glyph_mask(token, rng) if kind in ("letter", "digit") else _shape_mask(class_name, rng)
    return scale_and_rotate([_styled(_crop_to_ink(mask), rng)], side, rng)[0]


def _draw_glyph_or_shape(class_name: str, side: int, rng: np.random.Generator) -> tuple[np.ndarray, None]:
    return render_object(class_name, side, rng), None


# ---------------------------------------------------------------------------------------------------------
# appearance and backgrounds


def random_colour(rng: np.random.Generator, away_from: np.ndarray | None = None) -> np.ndarray:
    for _ in range(20):
        hsv = np.uint8([[[rng.integers(0, 180), rng.integers(90, 256), rng.integers(70, 256)]]])
        colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
        if away_from is None or np.abs(colour - away_from).sum() > 150:
            return colour
    return 255.0 - away_from


def _fill(h: int, w: int, rng: np.random.Generator, background_mean: np.ndarray) -> np.ndarray:
    first = random_colour(rng, background_mean)
    kind = rng.choice(3, p=[0.5, 0.3, 0.2])
    if kind == 0:
        return np.broadcast_to(first, (h, w, 3)).astype(np.float32)
    if kind == 1:
        second = random_colour(rng, background_mean)
        t = np.linspace(0, 1, w if rng.random() < 0.5 else h, dtype=np.float32)
        t = t[None, :, None] if t.shape[0] == w else t[:, None, None]
        return (first * (1 - t) + second * t) * np.ones((h, w, 1), np.float32)
    noise = rng.normal(0, 30, (h, w, 1)).astype(np.float32)
    return np.clip(first + noise, 0, 255)


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    low = rng.uniform(0, 255, (rng.integers(2, 6), rng.integers(2, 6), 3)).astype(np.float32)
    image = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC) * rng.uniform(0.3, 0.8)
    image += rng.uniform(20, 120)
    if rng.random() < 0.5:  # stripes or checks
        period, angle = rng.uniform(8, 40), rng.uniform(0, np.pi)
        yy, xx = np.mgrid[:h, :w]
        wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) / period * 2 * np.pi)
        image += (wave[:, :, None] * rng.uniform(5, 25)).astype(np.float32)
    image += rng.normal(0, rng.uniform(2, 12), (h, w, 1)).astype(np.float32)
    for _ in range(rng.integers(3, 12)):  # clutter strokes that belong to no class
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(p1[0] + rng.integers(-60, 60)), int(p1[1] + rng.integers(-60, 60)))
        colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
        cv2.line(image, p1, p2, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    return np.clip(image, 0, 255)


# ---------------------------------------------------------------------------------------------------------
# one image


@dataclass(frozen=True)
class Family:
    """A kind of generated one-shot data set: its classes, how one instance is drawn and the backgrounds.

    ``draw(class_name, side, rng)`` returns the instance's mask (uint8, 0..255, longer side about ``side``)
    and an optional mask of the same shape of markings painted over it in a contrasting colour."""

    name: str
    classes: tuple[str, ...]
    draw: Callable[[str, int, np.random.Generator], tuple[np.ndarray, np.ndarray | None]]
    background: Callable[[int, int, np.random.Generator], np.ndarray]
    description: str


GLYPHS = Family("glyphs", tuple(CLASSES), _draw_glyph_or_shape, _background, "IA-DETR embedded one-shot benchmark")


def render_image(
    seed: int, subset: str, index: int, size: BenchmarkSize, family: Family = GLYPHS
) -> tuple[np.ndarray, list[dict]]:
    """Draw image ``index`` of ``subset``; return the RGB image and its annotations (class index, xyxy)."""
    rng = np.random.default_rng([seed, SUBSETS[subset], index])
    h, w = (int(v) for v in rng.integers(size.min_side, size.max_side + 1, 2))
    image = family.background(h, w, rng)
    owner = np.full((h, w), -1, np.int32)
    n_classes = int(rng.choice([1, 2, 3, 4], p=[0.3, 0.35, 0.25, 0.1]))
    classes = rng.choice(len(family.classes), n_classes, replace=False)
    plan = [int(c) for c in classes for _ in range(int(rng.choice(6, p=[0.45, 0.25, 0.12, 0.08, 0.05, 0.05])) + 1)]
    rng.shuffle(plan)
    objects: list[dict] = []
    pixel_counts: list[int] = []
    for class_index in plan:
        side = int(math.exp(rng.uniform(math.log(size.min_object), math.log(size.max_object))))
        mask, marks = family.draw(family.classes[class_index], side, rng)
        mh, mw = mask.shape
        if mh >= h or mw >= w:
            continue
        inside = mask > 127
        for _ in range(30):
            y, x = int(rng.integers(0, h - mh)), int(rng.integers(0, w - mw))
            covered = owner[y : y + mh, x : x + mw][inside]
            ok = all(
                (owner == k).sum() - (covered == k).sum() >= 0.55 * pixel_counts[k]
                for k in np.unique(covered[covered >= 0])
            )
            if ok:
                break
        else:
            continue
        region = image[y : y + mh, x : x + mw]
        fill = _fill(mh, mw, rng, region[inside].mean(0))
        alpha = (mask.astype(np.float32) / 255.0)[:, :, None]
        region = region * (1 - alpha) + fill * alpha
        if marks is not None:
            beta = alpha * (marks.astype(np.float32) / 255.0)[:, :, None]
            region = region * (1 - beta) + random_colour(rng, fill[inside].mean(0)) * beta
        image[y : y + mh, x : x + mw] = region
        owner[y : y + mh, x : x + mw][inside] = len(objects)
        ys, xs = np.nonzero(inside)
        objects.append(
            {
                "class_index": class_index,
                "box": [x + int(xs.min()), y + int(ys.min()), x + int(xs.max()) + 1, y + int(ys.max()) + 1],
            }
        )
        pixel_counts.append(int(inside.sum()))
    return np.clip(image, 0, 255).astype(np.uint8), objects


def _render_and_save(job: tuple[int, str, int, BenchmarkSize, str, Family]) -> tuple[int, int, list[dict]]:
    seed, subset, index, size, folder, family = job
    image, objects = render_image(seed, subset, index, size, family)
    cv2.imwrite(str(Path(folder) / f"{index:06d}.jpg"), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    return image.shape[0], image.shape[1], objects


def generate(
    root: str | Path,
    size: str | BenchmarkSize = "default",
    seed: int = 0,
    workers: int = 2,
    progress: bool = False,
    family: Family = GLYPHS,
) -> dict:
    """Write the data set under ``root``; return a summary with counts and the generation time."""
    size = SIZES[size] if isinstance(size, str) else size
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    summary = {"root": str(root), "family": family.name, "seed": seed, "classes": len(family.classes)}
    for subset, count in (("train", size.train_images), ("test", size.test_images)):
        folder = root / subset
        folder.mkdir(exist_ok=True)
        jobs = [(seed, subset, i, size, str(folder), family) for i in range(count)]
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                results = list(pool.map(_render_and_save, jobs, chunksize=16))
        else:
            results = [_render_and_save(job) for job in jobs]
        coco = _to_coco(subset, results, seed, size, family)
        (root / "annotations" / f"{subset}.json").write_text(json.dumps(coco))
        summary[subset] = {"images": count, "boxes": len(coco["annotations"])}
        if progress:
            print(f"  {subset}: {count} images, {len(coco['annotations'])} boxes")
    summary["seconds"] = round(time.perf_counter() - start, 1)
    return summary


def _to_coco(
    subset: str, results: list[tuple[int, int, list[dict]]], seed: int, size: BenchmarkSize, family: Family
) -> dict:
    images, annotations = [], []
    for index, (height, width, objects) in enumerate(results):
        images.append({"id": index + 1, "file_name": f"{index:06d}.jpg", "width": width, "height": height})
        for obj in objects:
            x1, y1, x2, y2 = obj["box"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": obj["class_index"] + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    categories = [
        {"id": i + 1, "name": n, "supercategory": n.split(" ")[0] if " " in n else "shape"}
        for i, n in enumerate(family.classes)
    ]
    info = {
        "description": f"{family.description} ({subset})",
        "family": family.name,
        "seed": seed,
        "size": size.__dict__,
    }
    return {"info": info, "images": images, "annotations": annotations, "categories": categories}
