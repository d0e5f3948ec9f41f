"""Indirect Attention, its two baselines, and relation biases. See ``blocks.py`` for the interface."""

from .bias import BoxRelativePositionBias, SequenceOffsetBias
from .blocks import CrossAttention, DoubleCrossAttention, IndirectAttention, MisalignedAttention
from .functional import attend, attend_reference, attention_weights

__all__ = [
    "BoxRelativePositionBias",
    "CrossAttention",
    "DoubleCrossAttention",
    "IndirectAttention",
    "MisalignedAttention",
    "SequenceOffsetBias",
    "attend",
    "attend_reference",
    "attention_weights",
]
