"""Sequence models for the synthetic tasks that differ only in their attention block.

Each model embeds the conditioning sequence ``X`` and the content sequence ``Y`` (token + learned
position), forms one query per content position as ``q_i = m_i + y_i`` (a learned embedding plus the
value-side feature, ``pi(i) = i``), and runs ``layers`` pre-norm decoder layers of
self-attention -> attention block -> FFN. With Indirect Attention each query also keeps a reference
position ``r_i`` (``i`` at the first layer) that a zero-initialised linear head moves after every layer, so
the offset bias ``f(j - r_i)`` evolves across layers as the detector's box bias does with its boxes.
"""

from __future__ import annotations

import torch
from torch import nn

from ..attention import CrossAttention, IndirectAttention, MisalignedAttention, SequenceOffsetBias
from .tasks import ALPHABET, LENGTH

BLOCKS = ("indirect", "cross", "misaligned")


def make_block(kind: str, dim: int, heads: int) -> nn.Module:
    if kind == "indirect":
        return IndirectAttention(dim, heads, SequenceOffsetBias(heads, hidden_dim=64))
    if kind == "cross":
        return CrossAttention(dim, heads)
    if kind == "misaligned":
        return MisalignedAttention(dim, heads)
    raise ValueError(f"unknown attention block {kind!r}; choose one of {BLOCKS}")


class DecoderLayer(nn.Module):
    def __init__(self, block: nn.Module, dim: int, heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.block = block
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(inplace=True), nn.Linear(ffn_dim, dim))

    def forward(self, q: torch.Tensor, x: torch.Tensor, y: torch.Tensor, relation: dict) -> torch.Tensor:
        h = self.norm1(q)
        q = q + self.self_attn(h, h, h, need_weights=False)[0]
        q = q + self.block(self.norm2(q), x, y, relation=relation)
        return q + self.ffn(self.norm3(q))


class SequenceModel(nn.Module):
    """``forward(x, y) -> logits``: ``(B, n, n)`` per-token position logits (sorting) or ``(B, n)``
    start-position logits (retrieval)."""

    def __init__(
        self, block: str, per_token: bool, dim: int = 128, heads: int = 4, layers: int = 6, ffn_dim: int = 256
    ) -> None:
        super().__init__()
        self.kind = block
        self.token = nn.Embedding(ALPHABET + 1, dim)
        self.pos_x, self.pos_y = nn.Embedding(LENGTH, dim), nn.Embedding(LENGTH, dim)
        self.query_embed = nn.Embedding(LENGTH, dim)
        self.input_norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(
            DecoderLayer(make_block(block, dim, heads), dim, heads, ffn_dim) for _ in range(layers)
        )
        self.moves_reference = block == "indirect"
        self.refine = nn.ModuleList(nn.Linear(dim, 1) for _ in range(layers)) if self.moves_reference else None
        if self.refine is not None:
            for head in self.refine:
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, LENGTH if per_token else 1)

    def embed(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        positions = torch.arange(x.shape[1], device=x.device)
        xe = self.input_norm(self.token(x) + self.pos_x(positions))
        ye = self.input_norm(self.token(y) + self.pos_y(positions))
        return xe, ye, self.query_embed(positions)[None] + ye

    def forward(self, x: torch.Tensor, y: torch.Tensor, return_biases: bool = False):
        xe, ye, q = self.embed(x, y)
        reference = torch.arange(x.shape[1], device=x.device, dtype=q.dtype)[None].expand(x.shape[0], -1)
        biases = []
        for index, layer in enumerate(self.layers):
            relation = {"query_positions": reference, "num_keys": x.shape[1]}
            if return_biases and self.moves_reference:
                biases.append(layer.block.bias(**relation).detach())
            q = layer(q, xe, ye, relation)
            if self.refine is not None:
                reference = reference + self.refine[index](q).squeeze(-1)
        logits = self.head(self.norm(q)).squeeze(-1)
        return (logits, biases) if return_biases else logits
