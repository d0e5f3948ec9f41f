"""Box-aware transforms (albumentations) for target images and query patches.

Target images, in training: a horizontal flip and, half of the time, a random crop: ``detr`` (the official
code's: the shorter side to 400, 480 or 512, then a 384-512 px window anywhere, which may cut boxes; the parts
inside stay) or ``box_safe`` (a window that never cuts a box); then, always, the shorter side is resized to a
size drawn from ``sizes`` (``test_size`` at test time) and the longer side capped at ``max_size``.

Query patches: the exemplar box is cropped from its image and resized, ``square`` to ``query_size x
query_size`` (the official code; the aspect is not kept) or ``longer_side`` to ``query_size``; in training it is
augmented, ``official`` (torchvision's ops with the official probabilities: colour jitter 0.3, perspective 0.5,
grayscale 0.4, blur 0.5) or ``light`` (albumentations, milder: 0.8 / 0.3 / 0.1 / 0.2).

Each call takes a ``seed``, so that the augmentation of an episode is a pure function of its position in
training and a resumed run repeats it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch
from PIL import Image, ImageFilter

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


@dataclass
class TransformedTarget:
    """A target image after resizing, and its boxes (``xyxy`` pixels of the resized image)."""

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray


# the official code's crop branch: shorter side to one of these, then a window of 384-512 px each way
_DETR_CROP_PRESIZES = (400, 480, 512)
_DETR_CROP_RANGE = (384, 512)


class TargetTransform:
    def __init__(
        self,
        train: bool,
        sizes: list[int],
        max_size: int,
        test_size: int,
        hflip: bool = True,
        random_crop: bool = True,
        crop_style: str = "detr",
    ) -> None:
        ops: list[A.BasicTransform] = []
        self.detr_crop = train and random_crop and crop_style == "detr"
        if train and random_crop and crop_style == "box_safe":
            ops.append(A.BBoxSafeRandomCrop(erosion_rate=0.0, p=0.5))
        if train and hflip:
            ops.append(A.HorizontalFlip(p=0.5))
        self.sizes = list(sizes) if train else [test_size]
        self.max_size = max_size
        params = A.BboxParams(format="pascal_voc", label_fields=["labels"], clip=True, min_width=1, min_height=1)
        self.compose = A.Compose(ops, bbox_params=params) if ops else None

    def __call__(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, seed: int) -> TransformedTarget:
        boxes, labels = np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64)
        if self.compose is not None:
            self.compose.set_random_seed(seed)
            out = self.compose(image=image, bboxes=boxes, labels=labels)
            image, boxes, labels = (
                out["image"],
                np.asarray(out["bboxes"], np.float32).reshape(-1, 4),
                np.asarray(out["labels"], np.int64),
            )
        if self.detr_crop:
            rng = np.random.default_rng([seed, 1])
            if rng.random() < 0.5:
                image, boxes, labels = detr_random_crop(image, boxes, labels, rng)
        # DETR-style resize: shorter side to the drawn size unless the longer side would pass max_size.
        # albumentations' LongestMaxSize also enlarges, so this step (two lines of arithmetic) is ours.
        short = self.sizes[int(np.random.default_rng(seed).integers(len(self.sizes)))]
        image, boxes = resize_shorter(image, boxes, short, self.max_size)
        return TransformedTarget(image, boxes, labels)


def resize_shorter(
    image: np.ndarray, boxes: np.ndarray, short: int, max_size: float = float("inf")
) -> tuple[np.ndarray, np.ndarray]:
    """Resize so that the shorter side is ``short``, unless the longer side would pass ``max_size``."""
    h, w = image.shape[:2]
    scale = min(short / min(h, w), max_size / max(h, w))
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    boxes = boxes * np.array([new_w / w, new_h / h, new_w / w, new_h / h], np.float32)
    return image, boxes.reshape(-1, 4).astype(np.float32)


def detr_random_crop(
    image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The official code's crop branch (DETR's ``RandomSizeCrop(384, 512)`` after a resize of the shorter side
    to 400, 480 or 512): a window of ``randint(384, min(side, 512))`` pixels each way at a uniform position.
    Boxes are clipped to it and those left with no area dropped (their labels with them)."""
    image, boxes = resize_shorter(image, boxes, int(rng.choice(_DETR_CROP_PRESIZES)))
    h, w = image.shape[:2]
    low, high = _DETR_CROP_RANGE
    cw = int(rng.integers(min(low, w), min(w, high) + 1))
    ch = int(rng.integers(min(low, h), min(h, high) + 1))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    image = np.ascontiguousarray(image[y0 : y0 + ch, x0 : x0 + cw])
    boxes = boxes - np.array([x0, y0, x0, y0], np.float32)
    boxes = np.clip(boxes, 0, np.array([cw, ch, cw, ch], np.float32))
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return image, boxes[keep], labels[keep]


class QueryTransform:
    """Crop the query box and resize it (``square``: to ``query_size x query_size``; ``longer_side``: its
    longer side to ``query_size``); in training, augment it (``official`` or ``light``, see the module's
    docstring; a horizontal flip only when ``hflip``: data whose classes are not mirror-symmetric, such as
    glyphs, must not flip their queries)."""

    def __init__(
        self,
        train: bool,
        query_size: int,
        augment: bool = True,
        hflip: bool = True,
        resize: str = "square",
        augment_style: str = "official",
    ) -> None:
        if resize == "square":
            ops: list[A.BasicTransform] = [A.Resize(query_size, query_size, interpolation=cv2.INTER_LINEAR)]
        else:
            ops = [A.LongestMaxSize(max_size=query_size, interpolation=cv2.INTER_LINEAR)]
        official = augment_style in ("official", "official_stage1")
        self.official = OfficialQueryAugment(hflip, augment_style) if train and augment and official else None
        if train and augment and augment_style == "light":
            ops += [
                A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, p=0.8),
                A.HorizontalFlip(p=0.5 if hflip else 0.0),
                A.Perspective(scale=(0.02, 0.08), p=0.3),
                A.ToGray(p=0.1),
                A.GaussianBlur(blur_limit=(3, 5), p=0.2),
            ]
        self.compose = A.Compose(ops)

    def __call__(self, image: np.ndarray, box: tuple[float, float, float, float], seed: int) -> np.ndarray:
        patch = crop_box(image, box)
        self.compose.set_random_seed(seed)
        patch = self.compose(image=patch)["image"]
        return self.official(patch, seed) if self.official is not None else patch


class OfficialQueryAugment:
    """The official code's query augmentation, with torchvision's operations on a PIL image. Stage 2
    (``official``): colour jitter (0.4, 0.4, 0.4, 0.1) with p 0.3, a flip with p 0.5, a perspective warp
    (distortion 0.5, black fill) with p 0.5, grayscale with p 0.4 and a Gaussian blur of radius U(0.1, 2) with p
    0.5. Stage 1 (``official_stage1``, SimCLR's): jitter with p 0.8, grayscale 0.2, the blur 0.5, no flip or
    warp. Deterministic in ``seed`` (torch's generator is forked and seeded for the call)."""

    def __init__(self, hflip: bool, style: str = "official") -> None:
        from torchvision import transforms as T

        if style == "official_stage1":
            ops = [T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(p=0.2)]
        else:
            perspective = T.RandomPerspective(0.5, p=0.5, interpolation=T.InterpolationMode.BILINEAR, fill=0)
            ops = [
                T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.3),
                T.RandomHorizontalFlip(p=0.5 if hflip else 0.0),
                perspective,
                T.RandomGrayscale(p=0.4),
            ]
        self.ops = T.Compose(ops)

    def __call__(self, image: np.ndarray, seed: int) -> np.ndarray:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            pil = self.ops(Image.fromarray(image))
            if torch.rand(()).item() < 0.5:
                pil = pil.filter(ImageFilter.GaussianBlur(radius=0.1 + 1.9 * torch.rand(()).item()))
        return np.asarray(pil)


def crop_box(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Crop ``xyxy`` pixels (rounded outwards, clipped to the image); a box with no pixels is an error."""
    h, w = image.shape[:2]
    x1, y1 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if x2 - x1 < 1 or y2 - y1 < 1:
        raise ValueError(f"query box {tuple(round(v, 1) for v in box)} has no pixels inside the {w}x{h} image")
    return image[y1:y2, x1:x2]


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """RGB ``uint8`` ``(H, W, 3)`` -> normalised float ``(3, H, W)`` (ImageNet mean and std)."""
    array = (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
