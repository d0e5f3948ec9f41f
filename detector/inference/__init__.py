"""Inference on image pairs: the predictor (Python API), one query over many targets, and model loading."""

from ..engine.checkpoint import load_model
from .batch import find_targets, predict_images
from .predictor import Predictor

__all__ = ["Predictor", "find_targets", "load_model", "predict_images"]
