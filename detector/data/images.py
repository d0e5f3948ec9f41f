"""Reading images robustly: one function that every loader uses.

Images are returned as ``uint8`` RGB arrays of shape ``(H, W, 3)`` with EXIF orientation applied:
grayscale is replicated to three channels, an alpha channel is composited over black and dropped,
16-bit images are scaled to 8 bits (65535 -> 255), float images in [0, 1] by 255, palette images are
expanded.
Anything that cannot be decoded raises :class:`ImageReadError`, which names the file and the fix.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# The largest image read, in pixels: 100 megapixels (10,000 x 10,000) take about 0.3 GB as RGB and are resized
# to the model's 512-pixel side anyway; a 400-megapixel one took 6.3 GB and 38 s. Larger files are refused
# before they are decoded, with the fix (downscale them first), rather than exhausting memory.
MAX_PIXELS = 100_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageReadError(ValueError):
    """An image that is missing, unreadable or corrupt."""

    def __init__(self, path: str | Path, reason: str, fix: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        message = f"cannot read image {self.path}: {reason}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)


def load_image(path: str | Path) -> np.ndarray:
    """Read ``path`` as an RGB ``uint8`` array ``(H, W, 3)``."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(
            path, "file does not exist", "check the image folder in the config or the annotation file_name"
        )
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageReadError(
                    path,
                    f"{width} x {height} is {width * height / 1e6:.0f} megapixels, above the "
                    f"{MAX_PIXELS / 1e6:.0f}-megapixel limit",
                    "downscale it first; the model works at a 512-pixel side",
                )
            image = ImageOps.exif_transpose(image)
            array = to_rgb_array(image)
    except Image.DecompressionBombError as error:  # Pillow refuses over twice its limit before reading the size
        raise ImageReadError(
            path,
            f"over {2 * MAX_PIXELS / 1e6:.0f} megapixels, above the {MAX_PIXELS / 1e6:.0f}-megapixel limit",
            "downscale it first; the model works at a 512-pixel side",
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ImageReadError(
            path, f"not a decodable image ({error})", "re-export the file or remove it from the data set"
        ) from error
    return array


class ImageCache:
    """:func:`load_image` that keeps decoded images in memory, up to ``max_mb`` megabytes (the least recently
    used dropped first), so that an image read again (in the next epoch, or as another episode's query) is not
    decoded again. Returned arrays are read-only: a transform that wrote into its input would fail loudly here
    rather than change what the next reader gets. Errors are not cached (a file fixed meanwhile is read)."""

    def __init__(self, max_mb: float) -> None:
        if max_mb <= 0:
            raise ValueError(f"an image cache needs a positive size in MB, got {max_mb}")
        self.max_bytes = int(max_mb * 2**20)
        self.bytes = 0
        self.hits = self.misses = 0
        self._images: OrderedDict[str, np.ndarray] = OrderedDict()

    def __call__(self, path: str | Path) -> np.ndarray:
        key = str(path)
        image = self._images.get(key)
        if image is not None:
            self._images.move_to_end(key)
            self.hits += 1
            return image
        self.misses += 1
        image = load_image(path)
        image.flags.writeable = False
        if image.nbytes <= self.max_bytes:
            self._images[key] = image
            self.bytes += image.nbytes
            while self.bytes > self.max_bytes:
                _, dropped = self._images.popitem(last=False)
                self.bytes -= dropped.nbytes
        return image

    def __len__(self) -> int:
        return len(self._images)


def to_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """Convert a PIL image or an array (gray, RGB, RGBA; 8, 16 or 32 bit) to an RGB ``uint8`` array."""
    if isinstance(image, Image.Image):
        if image.mode == "P":
            image = image.convert("RGBA")
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F") or image.mode in ("RGBA", "LA", "RGB", "L"):
            array = np.asarray(image)
        else:
            array = np.asarray(image.convert("RGB"))
    else:
        array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"image array must be (H, W), (H, W, 1|3|4); got shape {array.shape}")
    if array.dtype != np.uint8:
        array = _to_uint8(array)
    channels = array.shape[2]
    if channels in (2, 4):  # composite over black, then drop alpha
        alpha = array[:, :, -1:].astype(np.float32) / 255.0
        array = (array[:, :, :-1].astype(np.float32) * alpha).round().astype(np.uint8)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"image has no pixels (shape {array.shape})")
    return np.ascontiguousarray(array)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    values = array.astype(np.float64)
    peak = values.max(initial=0.0)
    if np.issubdtype(array.dtype, np.floating) and peak <= 1.0:
        values = values * 255.0  # floats in [0, 1]
    elif peak > 255:
        values = values / 257.0  # 16-bit range: 65535 -> 255
    return np.clip(values.round(), 0, 255).astype(np.uint8)
