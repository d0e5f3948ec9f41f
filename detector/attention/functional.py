"""The attention formula with an additive relation bias, in a fast and a reference form.

``attend`` computes, per batch element and head::

    s_ij = q_i . k_j / sqrt(d_head) + bias_ij        (bias_ij = -inf where key j is padding)
    a_ij = softmax_j(s_ij)
    o_i  = sum_j a_ij v_j

The fast path hands the bias to ``torch.nn.functional.scaled_dot_product_attention`` as a float mask; the
reference path writes the formula out and is what the tests compare against. A row whose keys are all
padding has no distribution to take: both paths return zeros for it (never NaN).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _masks(key_padding_mask: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Split a ``(B, n)`` padding mask into the keys to hide and the batch rows with no key at all."""
    if key_padding_mask is None:
        return None, None
    empty = key_padding_mask.all(dim=-1)  # (B,)
    hide = key_padding_mask & ~empty[:, None]
    return hide, empty


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
    dropout: float = 0.0,
) -> torch.Tensor:
    """Fast path. Shapes: ``q (B, h, Nq, d)``, ``k, v (B, h, n, d)``, ``bias`` broadcastable to
    ``(B, h, Nq, n)``, ``key_padding_mask (B, n)`` bool (``True`` = padding). Returns ``(B, h, Nq, d)``."""
    hide, empty = _masks(key_padding_mask)
    mask = bias
    if hide is not None:
        blocked = torch.zeros(hide.shape, dtype=q.dtype, device=q.device).masked_fill(hide, float("-inf"))
        blocked = blocked[:, None, None, :]
        mask = blocked if mask is None else mask + blocked
    if mask is not None:
        mask = mask.to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    if empty is not None:  # (unconditional: no data-dependent branch, so the graph exports)
        out = out.masked_fill(empty[:, None, None, None], 0.0)
    return out


def attend_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The same formula written out (no dropout); the tests hold :func:`attend` to it."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if key_padding_mask is not None:
        weights = torch.nan_to_num(weights, nan=0.0)  # rows whose keys are all padding
    return weights @ v


def attention_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    bias: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The weights ``a_ij`` ``(B, h, Nq, n)``, for inspection and pictures."""
    eye = torch.eye(k.shape[-2], dtype=k.dtype, device=k.device).expand(*k.shape[:-1], k.shape[-2])
    return attend_reference(q, k, eye, bias, key_padding_mask)
