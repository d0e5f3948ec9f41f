"""The IA-DETR decoder: pre-norm layers of self-attention -> fusion block -> FFN, with iterative box
refinement and look-forward-twice.

The fusion block is passed in (Indirect Attention with the box bias by default; double cross-attention or
misaligned attention for the baselines). Each layer's box head predicts a delta (in logit space) that
refines the reference boxes; the refined, detached boxes give the next layer its box relative position bias,
so the bias follows the boxes. Query positions: ``proposals`` (the official code), one embedding of the
proposal boxes for every layer, or ``refined``, an MLP of each layer's refined boxes. With look-forward-twice
(DINO), the box a layer is supervised on is its delta applied to the previous layer's *undetached*
prediction, so each layer's loss also refines the layer before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .box_ops import inverse_sigmoid
from .layers import MLP
from .position_encoding import BoxPositionEmbedding, ProposalPositionEmbedding


class DecoderLayer(nn.Module):
    def __init__(self, fusion: nn.Module, dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.fusion = fusion
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(ffn_dim, dim)
        )
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        queries: torch.Tensor,
        query_pos: torch.Tensor,
        conditioning: torch.Tensor,
        content: torch.Tensor,
        key_padding_mask: torch.Tensor | None,
        relation: dict,
        self_attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = self.norm1(queries)
        qk = h + query_pos
        queries = queries + self.dropout(self.self_attn(qk, qk, h, attn_mask=self_attn_mask, need_weights=False)[0])
        h = self.norm2(queries) + query_pos
        queries = queries + self.dropout(
            self.fusion(h, conditioning, content, key_padding_mask=key_padding_mask, relation=relation)
        )
        return queries + self.dropout(self.ffn(self.norm3(queries)))


@dataclass
class DecoderOutput:
    """Per layer: ``hidden (L, B, Nq, d)`` (after the final norm) and ``boxes (L, B, Nq, 4)`` ``cxcywh``."""

    hidden: torch.Tensor
    boxes: torch.Tensor


class Decoder(nn.Module):
    def __init__(
        self,
        layers: list[DecoderLayer],
        dim: int,
        look_forward_twice: bool = True,
        reach: str = "previous",
        query_pos: str = "proposals",
    ) -> None:
        """``look_forward_twice``: a layer's box is its delta applied to the previous layer's box taken with its
        gradient, so the layer's box loss also trains earlier box heads. ``reach``: which ones, ``"previous"``
        (the layer before only, as the official code and DINO) or ``"all"`` (every earlier one, through the chain
        of undetached boxes). ``query_pos``: ``"proposals"`` or ``"refined"`` (see the module's docstring)."""
        super().__init__()
        if reach not in ("previous", "all"):
            raise ValueError(f"unknown look-forward reach {reach!r}; use previous or all")
        if query_pos not in ("proposals", "refined"):
            raise ValueError(f"unknown query position {query_pos!r}; use proposals or refined")
        self.reach = reach
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(dim)
        self.pos_once = query_pos == "proposals"
        self.query_pos = ProposalPositionEmbedding(dim) if self.pos_once else BoxPositionEmbedding(dim)
        self.box_heads = nn.ModuleList(MLP(dim, dim, 4, 3) for _ in layers)
        for head in self.box_heads:
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)
        self.look_forward_twice = look_forward_twice

    def forward(
        self,
        queries: torch.Tensor,
        reference: torch.Tensor,
        conditioning: torch.Tensor,
        content: torch.Tensor,
        key_padding_mask: torch.Tensor | None,
        grid_size: tuple[int, int],
        image_sizes: torch.Tensor,
        self_attn_mask: torch.Tensor | None = None,
    ) -> DecoderOutput:
        """``queries (B, Nq, d)`` content part; ``reference (B, Nq, 4)`` detached ``cxcywh`` boxes;
        ``conditioning``/``content`` ``(B, h*w, d)`` with position embeddings already added."""
        hidden, boxes = [], []
        previous = undetached = reference
        fixed_pos = self.query_pos(reference) if self.pos_once else None
        for layer, box_head in zip(self.layers, self.box_heads):
            relation = {"boxes": reference, "grid_size": grid_size, "image_sizes": image_sizes}
            queries = layer(
                queries,
                fixed_pos if fixed_pos is not None else self.query_pos(reference),
                conditioning,
                content,
                key_padding_mask,
                relation,
                self_attn_mask,
            )
            h = self.norm(queries)
            delta = box_head(h)
            if not self.look_forward_twice:
                base = reference
            else:  # the same value as reference; only the gradient's path differs
                base = undetached if self.reach == "previous" else previous
            predicted = (inverse_sigmoid(base) + delta).sigmoid()
            undetached = (inverse_sigmoid(reference) + delta).sigmoid()  # gradient to this layer's delta only
            reference = undetached.detach()
            previous = predicted
            hidden.append(h)
            boxes.append(predicted)
        return DecoderOutput(torch.stack(hidden), torch.stack(boxes))
