"""Data sets the project generates itself, in COCO format: the embedded benchmark (glyphs and shapes,
:mod:`.benchmark`) and a second family of made-up objects (:mod:`.sprites`), with a preview picture."""

from .benchmark import GLYPHS, SIZES, BenchmarkSize, generate
from .sprites import SPRITES

__all__ = ["GLYPHS", "SIZES", "SPRITES", "BenchmarkSize", "generate"]
