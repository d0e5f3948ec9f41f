"""Sequence models for the synthetic tasks that differ only in their attention block.

Each model embeds the conditioning sequence ``X`` and the content sequence ``Y`` as tokens, forms one query
per content position as ``q_i = m_i + y_i`` (a learned embedding plus the value-side feature, ``pi(i) = i``),
and runs ``layers`` pre-norm decoder layers of self-attention -> attention block -> FFN.

Where position codes go decides what a block can answer. By default (``value_positions=False``) a learned
position code is added to the *keys* only (DETR's convention), so no value says where it came from: a block
that must answer with a position has to get it from where its attention goes (IA: also from its relation
bias). ``value_positions=True`` is the first version of the study: the code is added to both sequences, so
values carry it too and any block can read a position off them. ``zero_values=True`` zeroes every value
(the control that shows what a model scores with nothing read through the block).

With Indirect Attention each query also keeps a reference position ``r_i`` (``i`` at the first layer) that a
zero-initialised linear head moves after every layer, so the offset bias ``f(j - r_i)`` evolves across layers
as the detector's box bias does with its boxes.
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

    def forward(
        self, q: torch.Tensor, x: torch.Tensor, y: torch.Tensor, relation: dict, key_pos: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = self.norm1(q)
        q = q + self.self_attn(h, h, h, need_weights=False)[0]
        q = q + self.block(self.norm2(q), x, y, relation=relation, key_pos=key_pos)
        return q + self.ffn(self.norm3(q))


class SequenceModel(nn.Module):
    """``forward(x, y) -> logits``: ``(B, n, n)`` per-token position logits (sorting) or ``(B, n)``
    start-position logits (retrieval)."""

    def __init__(
        self,
        block: str,
        per_token: bool,
        dim: int = 128,
        heads: int = 4,
        layers: int = 6,
        ffn_dim: int = 256,
        value_positions: bool = False,
        zero_values: bool = False,
    ) -> None:
        super().__init__()
        self.kind, self.value_positions = block, value_positions
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
        if zero_values:
            for layer in self.layers:
                layer.block.v_proj.register_forward_hook(lambda module, inputs, output: torch.zeros_like(output))

    def embed(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(conditioning, content, queries, key position code or None)``."""
        positions = torch.arange(x.shape[1], device=x.device)
        if self.value_positions:
            xe = self.input_norm(self.token(x) + self.pos_x(positions))
            ye = self.input_norm(self.token(y) + self.pos_y(positions))
            key_pos = None
        else:
            xe, ye = self.input_norm(self.token(x)), self.input_norm(self.token(y))
            key_pos = self.pos_x(positions)[None]
        return xe, ye, self.query_embed(positions)[None] + ye, key_pos

    def forward(self, x: torch.Tensor, y: torch.Tensor, trace: bool = False):
        """``logits``, or ``(logits, trace)`` with ``trace = {"bias": [...], "reference": [...]}``: per layer,
        IA's relation bias ``(B, heads, Nq, n)`` and the reference positions ``(B, Nq)`` it was computed from
        (empty lists for the other blocks)."""
        xe, ye, q, key_pos = self.embed(x, y)
        reference = torch.arange(x.shape[1], device=x.device, dtype=q.dtype)[None].expand(x.shape[0], -1)
        record: dict[str, list[torch.Tensor]] = {"bias": [], "reference": []}
        for index, layer in enumerate(self.layers):
            relation = {"query_positions": reference, "num_keys": x.shape[1]}
            if trace and self.moves_reference:
                record["bias"].append(layer.block.bias(**relation).detach())
                record["reference"].append(reference.detach())
            q = layer(q, xe, ye, relation, key_pos)
            if self.refine is not None:
                reference = reference + self.refine[index](q).squeeze(-1)
        logits = self.head(self.norm(q)).squeeze(-1)
        return (logits, record) if trace else logits
