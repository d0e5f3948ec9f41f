"""Three attention blocks with one interface, so a model swaps them by construction alone.

Every block is called as ``block(query, conditioning, content, key_padding_mask=..., relation=...)``:

- ``query`` ``(B, Nq, d)``: the attending tokens (object queries in the detector);
- ``conditioning`` ``(B, n, d)``: the sequence that says *what* to look for (query-image features);
- ``content`` ``(B, n, d)``: the sequence the answer is read from (target-image features); position ``j`` of
  ``conditioning`` and of ``content`` index the same cell (pad the shorter sequence);
- ``key_padding_mask`` ``(B, n)`` bool, ``True`` where position ``j`` is padding;
- ``key_pos`` ``(B or 1, n, d)``, optional: a position code added to the keys only, never to the values (DETR's
  convention; the synthetic study uses it so that no value says where it came from);
- ``relation``: keyword arguments for the block's relation-bias module (ignored by blocks without one).

Blocks:

- :class:`IndirectAttention` (the paper's IA): keys from ``conditioning``, values from ``content``, plus the
  learned relation bias.
- :class:`MisalignedAttention`: keys from ``conditioning``, values from ``content``, no bias (the paper's
  naive baseline).
- :class:`CrossAttention`: keys and values both from ``conditioning`` (the query must carry the content,
  as in a standard transformer decoder).
- :class:`DoubleCrossAttention`: the detection baseline: ``content`` first cross-attends to
  ``conditioning``, then the query cross-attends to the result (keys and values from one sequence each time).
"""

from __future__ import annotations

import torch
from torch import nn

from .bias import AxisBias
from .functional import attend, attend_reference


class _MultiHead(nn.Module):
    """Projections and the head split shared by the blocks."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, reference: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.dropout = dim, num_heads, dropout
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.reference = reference  # use the written-out formula (tests, pictures)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.dim // self.num_heads).transpose(1, 2)

    def _attend(
        self,
        query: torch.Tensor,
        keys_from: torch.Tensor,
        values_from: torch.Tensor,
        key_padding_mask: torch.Tensor | None,
        bias: torch.Tensor | AxisBias | None,
        key_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if keys_from.shape[1] != values_from.shape[1]:
            raise ValueError(
                f"keys ({keys_from.shape[1]}) and values ({values_from.shape[1]}) must have the same "
                f"length; pad the shorter sequence"
            )
        q, k, v = (
            self._split(self.q_proj(query)),
            self._split(self.k_proj(keys_from if key_pos is None else keys_from + key_pos)),
            self._split(self.v_proj(values_from)),
        )
        if self.reference:
            out = attend_reference(q, k, v, bias, key_padding_mask)
        else:
            out = attend(q, k, v, bias, key_padding_mask, self.dropout if self.training else 0.0)
        b, _, nq, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, nq, self.dim))


class IndirectAttention(_MultiHead):
    """``softmax(q k^T / sqrt(d) + f(P)) v`` with ``k`` from ``conditioning`` and ``v`` from ``content``."""

    def __init__(
        self, dim: int, num_heads: int, bias: nn.Module, dropout: float = 0.0, reference: bool = False
    ) -> None:
        super().__init__(dim, num_heads, dropout, reference)
        self.bias = bias

    def forward(
        self,
        query: torch.Tensor,
        conditioning: torch.Tensor,
        content: torch.Tensor,
        *,
        key_padding_mask: torch.Tensor | None = None,
        relation: dict | None = None,
        key_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if relation is None:
            raise ValueError("IndirectAttention needs relation=... for its bias module")
        # a bias module that can give its row and column terms lets the fast path fold them in
        factors = getattr(self.bias, "factors", None)
        bias = self.bias(**relation) if self.reference or factors is None else factors(**relation)
        return self._attend(query, conditioning, content, key_padding_mask, bias, key_pos)


class MisalignedAttention(_MultiHead):
    """Keys from ``conditioning``, values from ``content``, plain scaled dot-product attention."""

    def forward(
        self,
        query: torch.Tensor,
        conditioning: torch.Tensor,
        content: torch.Tensor,
        *,
        key_padding_mask: torch.Tensor | None = None,
        relation: dict | None = None,
        key_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self._attend(query, conditioning, content, key_padding_mask, None, key_pos)


class CrossAttention(_MultiHead):
    """Keys and values from ``conditioning``; ``content`` is not read (the query carries it)."""

    def forward(
        self,
        query: torch.Tensor,
        conditioning: torch.Tensor,
        content: torch.Tensor | None = None,
        *,
        key_padding_mask: torch.Tensor | None = None,
        relation: dict | None = None,
        key_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self._attend(query, conditioning, conditioning, key_padding_mask, None, key_pos)


class DoubleCrossAttention(nn.Module):
    """``fused = content + CA(content, conditioning)``; ``out = CA(query, fused)`` (pre-normed fusion)."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, reference: bool = False) -> None:
        super().__init__()
        self.fuse = CrossAttention(dim, num_heads, dropout, reference)
        self.norm = nn.LayerNorm(dim)
        self.read = CrossAttention(dim, num_heads, dropout, reference)

    def forward(
        self,
        query: torch.Tensor,
        conditioning: torch.Tensor,
        content: torch.Tensor,
        *,
        key_padding_mask: torch.Tensor | None = None,
        relation: dict | None = None,
        key_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        fused = content + self.fuse(content, conditioning, key_padding_mask=key_padding_mask, key_pos=key_pos)
        return self.read(query, self.norm(fused), key_padding_mask=key_padding_mask, key_pos=key_pos)
