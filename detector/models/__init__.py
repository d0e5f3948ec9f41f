"""IA-DETR: backbone, position encoding, proposals, decoder, top model, matcher, criterion, postprocessor."""

from .build import build, build_model
from .criterion import SetCriterion
from .ia_detr import IADETR, DetectorOutput
from .matcher import HungarianMatcher
from .postprocess import PostProcessor

__all__ = [
    "IADETR",
    "DetectorOutput",
    "HungarianMatcher",
    "PostProcessor",
    "SetCriterion",
    "build",
    "build_model",
]
