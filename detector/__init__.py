"""IA-DETR: one-shot object detection with Indirect Attention."""

__version__ = "0.1.0"
