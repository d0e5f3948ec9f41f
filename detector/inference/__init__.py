"""Inference on image pairs: the predictor (Python API)."""

from .predictor import Predictor

__all__ = ["Predictor"]
