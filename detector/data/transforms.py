"""Box-aware transforms (albumentations) for target images and query patches.

Target images: optional safe random crop (never cuts a box out) and horizontal flip in training, then the
shorter side is resized to a size drawn from ``sizes`` (``test_size`` at test time) and the longer side is
capped at ``max_size``. Query patches: the exemplar box is cropped from its image, its longer side resized
to ``query_size``, and in training colour jitter, flip, perspective, grayscale and blur are applied.

Each call takes a ``seed``, so that the augmentation of an episode is a pure function of its position in
training and a resumed run repeats it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


@dataclass
class TransformedTarget:
    """A target image after resizing, and its boxes (``xyxy`` pixels of the resized image)."""

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray


class TargetTransform:
    def __init__(
        self,
        train: bool,
        sizes: list[int],
        max_size: int,
        test_size: int,
        hflip: bool = True,
        random_crop: bool = True,
    ) -> None:
        ops: list[A.BasicTransform] = []
        if train and random_crop:
            ops.append(A.BBoxSafeRandomCrop(erosion_rate=0.0, p=0.5))
        if train and hflip:
            ops.append(A.HorizontalFlip(p=0.5))
        self.sizes = list(sizes) if train else [test_size]
        self.max_size = max_size
        params = A.BboxParams(format="pascal_voc", label_fields=["labels"], clip=True, min_width=1, min_height=1)
        self.compose = A.Compose(ops, bbox_params=params) if ops else None

    def __call__(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, seed: int) -> TransformedTarget:
        if self.compose is not None:
            self.compose.set_random_seed(seed)
            out = self.compose(image=image, bboxes=boxes.reshape(-1, 4), labels=labels)
            image, boxes, labels = (
                out["image"],
                np.asarray(out["bboxes"], np.float32).reshape(-1, 4),
                out["labels"],
            )
        # DETR-style resize: shorter side to the drawn size unless the longer side would pass max_size.
        # albumentations' LongestMaxSize also enlarges, so this step (two lines of arithmetic) is ours.
        short = self.sizes[int(np.random.default_rng(seed).integers(len(self.sizes)))]
        h, w = image.shape[:2]
        scale = min(short / min(h, w), self.max_size / max(h, w))
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        boxes = boxes * np.array([new_w / w, new_h / h, new_w / w, new_h / h], np.float32)
        return TransformedTarget(image, boxes.reshape(-1, 4).astype(np.float32), np.asarray(labels, np.int64))


class QueryTransform:
    """Crop the query box and resize its longer side to ``query_size``; in training, augment it (colour
    jitter, perspective, grayscale, blur, and a horizontal flip when ``hflip``: data whose classes are not
    mirror-symmetric, such as glyphs, must not flip their queries)."""

    def __init__(self, train: bool, query_size: int, augment: bool = True, hflip: bool = True) -> None:
        ops: list[A.BasicTransform] = [A.LongestMaxSize(max_size=query_size, interpolation=cv2.INTER_LINEAR)]
        if train and augment:
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
        return self.compose(image=patch)["image"]


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
