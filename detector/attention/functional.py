"""The attention formula with an additive relation bias, in a fast and a reference form.

``attend`` computes, per batch element and head::

    s_ij = q_i . k_j / sqrt(d_head) + bias_ij        (bias_ij = -inf where key j is padding)
    a_ij = softmax_j(s_ij)
    o_i  = sum_j a_ij v_j

The fast path hands the bias to ``torch.nn.functional.scaled_dot_product_attention`` as a float mask. A bias
given as an :class:`~detector.attention.bias.AxisBias` (a row term plus a column term over an ``h x w`` grid)
is never built for the whole batch at once:

- on the CPU, one batch element at a time: its ``(heads, Nq, h * w)`` mask stays in cache (measured 3x faster
  than one SDPA call over a batch-sized mask at the detector's shapes);
- elsewhere, when no key is padding, folded into the dot product, exactly::

      [q_i / sqrt(d), rows_i, cols_i] . [k_j, onehot(row of j), onehot(column of j)]
          = q_i . k_j / sqrt(d) + rows_i[row of j] + cols_i[column of j]

  so SDPA runs without a mask, on kernels that take none (``v`` is zero-padded to the same width).

The reference path writes the formula out and is what the tests compare against. A row whose keys are all
padding has no distribution to take: every path returns zeros for it (never NaN).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .bias import AxisBias


def _masks(key_padding_mask: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Split a ``(B, n)`` padding mask into the keys to hide and the batch rows with no key at all."""
    if key_padding_mask is None:
        return None, None
    empty = key_padding_mask.all(dim=-1)  # (B,)
    hide = key_padding_mask & ~empty[:, None]
    return hide, empty


def _folded(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: AxisBias, dropout: float) -> torch.Tensor:
    """SDPA with an :class:`AxisBias` folded into the dot product (see the module docstring)."""
    h, w = bias.rows.shape[-1], bias.cols.shape[-1]
    d = q.shape[-1]
    if h * w != k.shape[-2]:
        raise ValueError(f"the bias grid {h}x{w} does not match the {k.shape[-2]} keys")
    eye_h = torch.eye(h, dtype=k.dtype, device=k.device)
    eye_w = torch.eye(w, dtype=k.dtype, device=k.device)
    cells = torch.cat([eye_h.repeat_interleave(w, 0), eye_w.repeat(h, 1)], 1)  # (h * w, h + w)
    q = torch.cat([q * d**-0.5, bias.rows.to(q.dtype), bias.cols.to(q.dtype)], -1)
    k = torch.cat([k, cells.expand(*k.shape[:-1], h + w)], -1)
    v = F.pad(v, (0, h + w))
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=1.0)[..., :d]


def _per_sample(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: AxisBias,
    key_padding_mask: torch.Tensor | None,
    dropout: float,
) -> torch.Tensor:
    """:func:`attend` one batch element at a time, each with its own dense mask."""
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()  # once, rather than inside every SDPA call
    outs = []
    for i in range(q.shape[0]):
        one = AxisBias(bias.rows[i : i + 1], bias.cols[i : i + 1])
        mask = key_padding_mask[i : i + 1] if key_padding_mask is not None else None
        outs.append(attend(q[i : i + 1], k[i : i + 1], v[i : i + 1], one.dense(), mask, dropout))
    return torch.cat(outs)


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | AxisBias | None = None,
    key_padding_mask: torch.Tensor | None = None,
    dropout: float = 0.0,
) -> torch.Tensor:
    """Fast path. Shapes: ``q (B, h, Nq, d)``, ``k, v (B, h, n, d)``, ``bias`` broadcastable to
    ``(B, h, Nq, n)`` or an :class:`AxisBias` over the ``n`` keys, ``key_padding_mask (B, n)`` bool (``True`` =
    padding). Returns ``(B, h, Nq, d)``."""
    if isinstance(bias, AxisBias):
        if q.device.type == "cpu" and not torch.jit.is_tracing():  # (a traced loop would fix the batch size)
            return _per_sample(q, k, v, bias, key_padding_mask, dropout)
        if key_padding_mask is None:
            return _folded(q, k, v, bias, dropout)
        bias = bias.dense()
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
    bias: torch.Tensor | AxisBias | None = None,
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The same formula written out (no dropout); the tests hold :func:`attend` to it."""
    if isinstance(bias, AxisBias):
        bias = bias.dense()
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
    bias: torch.Tensor | AxisBias | None = None,
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The weights ``a_ij`` ``(B, h, Nq, n)``, for inspection and pictures."""
    eye = torch.eye(k.shape[-2], dtype=k.dtype, device=k.device).expand(*k.shape[:-1], k.shape[-2])
    return attend_reference(q, k, eye, bias, key_padding_mask)
