"""A second generated one-shot data set, for checking that a recipe is not tuned to the embedded benchmark.

The embedded benchmark (:mod:`detector.synthetic.benchmark`) draws glyphs and geometric shapes. This family
draws *sprites*: 36 classes of made-up objects, each defined by a body outline (a closed curve with a
class-specific dominant symmetry and two lesser harmonics), a layout of one to three parts (ellipses
either cut out of the body or painted on it) and a surface pattern (plain, stripes at a class-specific
period and angle, or spots of a class-specific size). An instance jitters the outline's harmonics and the
parts' positions, takes any colour, is scaled over 20-96 pixels and rotated by up to 30 degrees, so
colour says nothing about the class. Backgrounds are different from the benchmark's as well: multi-octave
value noise between two colours, with soft blobs that belong to no class.

The class definitions are a pure function of the class index (the same in every seed and subset); the
images are a pure function of ``(seed, subset, image index)``. It is written in COCO format with the same
layout as the benchmark and is loaded as a custom data set (``data.dataset: custom``)::

    python tools/make_synthetic.py --family sprites --out datasets/sprites
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .benchmark import Family, scale_and_rotate

NUM_CLASSES = 36
CLASSES = tuple(f"sprite {i + 1:02d}" for i in range(NUM_CLASSES))
PATTERNS = ("plain", "stripes", "spots")
_CLASS_SEED = 7919  # fixed: sprite classes are the same in every data set generated with any seed
_FRAME = 128
_ROWS, _COLS = np.mgrid[:_FRAME, :_FRAME].astype(np.float32)  # pixel coordinates of the frame


@dataclass(frozen=True)
class SpriteClass:
    harmonics: tuple[tuple[int, float, float], ...]  # (order, amplitude, phase) of the outline's radius
    parts: tuple[tuple[float, float, float, float, float], ...]  # (x, y, half-width, half-height, angle)
    parts_cut: bool  # parts are holes in the body (else painted on it)
    pattern: str
    pattern_scale: float  # stripe period or spot radius, as a fraction of the frame
    pattern_angle: float


def sprite_class(index: int) -> SpriteClass:
    """The definition of class ``index`` (0-based)."""
    rng = np.random.default_rng([_CLASS_SEED, index])
    dominant = int(rng.integers(2, 8))
    others = rng.choice([k for k in range(1, 9) if k != dominant], 2, replace=False)
    harmonics = [(dominant, float(rng.uniform(0.16, 0.3)), float(rng.uniform(0, 2 * np.pi)))]
    harmonics += [(int(k), float(rng.uniform(0.02, 0.1)), float(rng.uniform(0, 2 * np.pi))) for k in others]
    parts = []
    for _ in range(int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))):
        radius, theta = rng.uniform(0.0, 0.2), rng.uniform(0, 2 * np.pi)
        parts.append(
            (
                float(0.5 + radius * math.cos(theta)),
                float(0.5 + radius * math.sin(theta)),
                float(rng.uniform(0.05, 0.12)),
                float(rng.uniform(0.03, 0.08)),
                float(rng.uniform(0, 180)),
            )
        )
    pattern = PATTERNS[index % 3]  # an even share of each pattern
    return SpriteClass(
        harmonics=tuple(harmonics),
        parts=tuple(parts),
        parts_cut=bool(rng.random() < 0.5),
        pattern=pattern,
        pattern_scale=float(rng.uniform(0.1, 0.2) if pattern == "stripes" else rng.uniform(0.035, 0.06)),
        pattern_angle=float(rng.uniform(0, np.pi)),
    )


SPRITE_CLASSES = tuple(sprite_class(i) for i in range(NUM_CLASSES))


def sprite_masks(definition: SpriteClass, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The body mask and the painted-markings mask of one sprite in a 128-pixel frame; ``rng`` jitters
    the instance (``None``: the class's canonical drawing)."""
    jitter = (lambda scale: rng.normal(0, scale)) if rng is not None else (lambda scale: 0.0)
    theta = np.linspace(0, 2 * np.pi, 180, endpoint=False)
    radius = np.ones_like(theta)
    for order, amplitude, phase in definition.harmonics:
        radius += amplitude * (1 + jitter(0.1)) * np.cos(order * theta + phase + jitter(0.1))
    radius *= 0.46 / radius.max()
    points = np.stack([0.5 + radius * np.cos(theta), 0.5 + radius * np.sin(theta)], 1) * _FRAME
    body = np.zeros((_FRAME, _FRAME), np.uint8)
    cv2.fillPoly(body, [points.astype(np.int32)], 255, cv2.LINE_AA)
    parts = np.zeros_like(body)
    for x, y, half_w, half_h, angle in definition.parts:
        centre = (int((x + jitter(0.015)) * _FRAME), int((y + jitter(0.015)) * _FRAME))
        axes = (max(2, int(half_w * _FRAME)), max(2, int(half_h * _FRAME)))
        cv2.ellipse(parts, centre, axes, angle + jitter(5), 0, 360, 255, -1, cv2.LINE_AA)
    marks = np.zeros_like(body)
    yy, xx = _ROWS, _COLS
    if definition.pattern == "stripes":
        period = definition.pattern_scale * _FRAME
        along = xx * math.cos(definition.pattern_angle) + yy * math.sin(definition.pattern_angle)
        marks[(along % period) < period * 0.45] = 255
    elif definition.pattern == "spots":
        spot = definition.pattern_scale * _FRAME
        step = spot * 3.2
        offset = (rng.uniform(0, step, 2) if rng is not None else np.zeros(2)).astype(np.float32)
        near_x = np.abs(((xx + offset[0]) % step) - step / 2)
        near_y = np.abs(((yy + offset[1]) % step) - step / 2)
        marks[near_x**2 + near_y**2 < spot**2] = 255
    if definition.parts_cut:
        body = cv2.subtract(body, parts)
    else:
        marks = np.maximum(marks, parts)
    return body, cv2.min(marks, body)


def draw_sprite(class_name: str, side: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One instance of ``class_name``: its mask (longer side about ``side``) and its markings."""
    body, marks = sprite_masks(SPRITE_CLASSES[CLASSES.index(class_name)], rng)
    scaled_body, scaled_marks = scale_and_rotate([body, marks], side, rng, max_angle=30.0)
    return scaled_body, scaled_marks


def sprite_background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Value noise over four octaves between two colours, soft blobs of no class, sensor noise."""
    noise = np.zeros((h, w), np.float32)
    for octave in range(4):
        cells = 2 ** (octave + 1)
        grid = rng.uniform(0, 1, (cells + 1, cells + 1)).astype(np.float32)
        noise += cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC) / 2**octave
    noise = (noise - noise.min()) / max(float(np.ptp(noise)), 1e-6)
    low, high = rng.uniform(20, 235, (2, 3)).astype(np.float32)
    image = low + (high - low) * noise[:, :, None]
    for _ in range(int(rng.integers(2, 9))):
        blob = np.zeros((h, w), np.float32)
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(6, 40)), int(rng.integers(6, 40)))
        cv2.ellipse(blob, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        blob = cv2.GaussianBlur(blob, (0, 0), float(rng.uniform(2, 8)))[:, :, None]
        image = image * (1 - blob) + rng.uniform(0, 255, 3).astype(np.float32) * blob
    image += rng.normal(0, rng.uniform(2, 10), (h, w, 1)).astype(np.float32)
    return np.clip(image, 0, 255)


SPRITES = Family("sprites", CLASSES, draw_sprite, sprite_background, "IA-DETR sprites one-shot data set")
