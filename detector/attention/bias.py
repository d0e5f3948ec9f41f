"""Relation biases ``f(P_ij)``: learned functions of how query ``i`` relates to key/value position ``j``.

Each module returns an additive attention bias of shape ``(B, heads, Nq, n)``, one value per head.

- :class:`SequenceOffsetBias`: for sequences, ``P_ij = j - r_i`` where ``r_i`` is query ``i``'s reference
  position (``r_i = i`` at the first layer; a model may move it from layer to layer).
- :class:`BoxRelativePositionBias`: for detection, the offsets of a query box's ``x1, x2`` to every column
  centre and of its ``y1, y2`` to every row centre of the feature grid, each pair through a
  ``2 -> hidden -> heads`` MLP; the column and row biases are summed by broadcasting over the ``h x w`` grid.
  When the boxes move (iterative refinement), the bias moves with them.

The box bias is a sum of a row term and a column term, so :meth:`BoxRelativePositionBias.factors` returns the
two (an :class:`AxisBias`) and lets the attention fold them into its dot product instead of adding a dense
``(B, heads, Nq, h * w)`` tensor. Its MLPs run in row chunks that stay in cache rather than materialising the
``(B, Nq, cells per axis, hidden)`` activation at once; :meth:`BoxRelativePositionBias.reference` is the plain
formula the fast path is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

CHUNK_ROWS = 2048  # MLP rows per chunk: 2048 x 512 hidden floats = 4 MiB, cache-sized; measured best of 512-8192


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, outputs))


def _mlp_rows(x: torch.Tensor, w1, b1, w2, b2, rows: int) -> torch.Tensor:
    """``relu(x w1^T + b1) w2^T + b2`` for ``x (N, inputs)``, ``rows`` rows at a time into one output, the
    hidden activation in one reused ``(rows, hidden)`` buffer."""
    out = x.new_empty(x.shape[0], w2.shape[0])
    hidden = x.new_empty(min(rows, x.shape[0]), w1.shape[0])
    for start in range(0, x.shape[0], rows):
        n = min(rows, x.shape[0] - start)
        h = torch.addmm(b1, x[start : start + n], w1.t(), out=hidden[:n]).relu_()
        torch.addmm(b2, h, w2.t(), out=out[start : start + n])
    return out


class _ChunkedMLP(torch.autograd.Function):
    """The 2-layer ReLU MLP in row chunks; the backward pass recomputes each chunk's hidden activation instead
    of keeping all of them, so training holds ``O(rows x hidden)`` instead of ``O(N x hidden)``."""

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, rows):
        ctx.save_for_backward(x, w1, b1, w2)
        ctx.rows = rows
        return _mlp_rows(x, w1, b1, w2, b2, rows)

    @staticmethod
    def backward(ctx, grad):
        x, w1, b1, w2 = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = torch.empty_like(x)
        grad_w1, grad_b1, grad_w2 = torch.zeros_like(w1), torch.zeros_like(b1), torch.zeros_like(w2)
        hidden = x.new_empty(min(ctx.rows, x.shape[0]), w1.shape[0])
        for start in range(0, x.shape[0], ctx.rows):
            n = min(ctx.rows, x.shape[0] - start)
            xs, gs = x[start : start + n], grad[start : start + n]
            h = torch.addmm(b1, xs, w1.t(), out=hidden[:n])
            active = h > 0
            h.relu_()
            grad_w2.addmm_(gs.t(), h)
            dh = (gs @ w2).mul_(active)
            grad_w1.addmm_(dh.t(), xs)
            grad_b1 += dh.sum(0)
            torch.mm(dh, w1, out=grad_x[start : start + n])
        return grad_x, grad_w1, grad_b1, grad_w2, grad.sum(0), None


def chunked_mlp(mlp: nn.Sequential, x: torch.Tensor, rows: int = CHUNK_ROWS) -> torch.Tensor:
    """``mlp(x)`` for a ``Linear -> ReLU -> Linear`` MLP, ``rows`` rows of ``x (..., inputs)`` at a time.

    On the CPU each chunk's hidden activation stays in cache and is never kept for the whole input (the
    backward pass recomputes it); the result equals ``mlp(x)`` to float rounding. Elsewhere (CUDA, where
    autocast may be on) and when traced for export, it is ``mlp(x)``.
    """
    if x.device.type != "cpu" or x.dtype != torch.float32 or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return mlp(x)  # (an exported graph keeps the plain layers)
    first, _, last = mlp
    flat = x.reshape(-1, x.shape[-1]).contiguous()
    out = _ChunkedMLP.apply(flat, first.weight, first.bias, last.weight, last.bias, rows)
    return out.view(*x.shape[:-1], last.out_features)


@dataclass
class AxisBias:
    """A grid bias that is a row term plus a column term: ``bias[b, h, i, r * w + c] = rows[b, h, i, r] +
    cols[b, h, i, c]``, with ``rows (B, heads, Nq, h)`` and ``cols (B, heads, Nq, w)``."""

    rows: torch.Tensor
    cols: torch.Tensor

    def dense(self) -> torch.Tensor:
        """The full ``(B, heads, Nq, h * w)`` bias, row-major over the grid."""
        return (self.rows[..., :, None] + self.cols[..., None, :]).flatten(-2)


class SequenceOffsetBias(nn.Module):
    """``bias[b, h, i, j] = MLP(j - r_bi)[h]`` (2-layer ReLU MLP, one output per head)."""

    def __init__(self, num_heads: int, hidden_dim: int = 64) -> None:
        super().__init__()
        self.mlp = _mlp(1, hidden_dim, num_heads)

    def forward(self, query_positions: torch.Tensor, num_keys: int) -> torch.Tensor:
        """``query_positions``: ``(B, Nq)`` float reference positions. Returns ``(B, heads, Nq, n)``."""
        keys = torch.arange(num_keys, device=query_positions.device, dtype=query_positions.dtype)
        offsets = keys[None, None, :] - query_positions[:, :, None]  # (B, Nq, n)
        return self.mlp(offsets.unsqueeze(-1)).permute(0, 3, 1, 2)


def signed_log(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) log2(1 + |x|) / 3``: keeps offsets of a few cells distinct and far ones bounded."""
    return torch.sign(x) * torch.log2(1.0 + x.abs()) / 3.0


BIAS_INPUTS = ("linear", "signed_log")


class BoxRelativePositionBias(nn.Module):
    """Box relative position bias over a feature grid of ``stride`` pixels per cell.

    ``inputs`` says what the MLPs read, per box edge and grid row or column: ``"linear"``, the offset in pixels
    (edge minus cell centre), as every config of the official IA-DETR code (``--decoder_rpe_type linear``);
    ``"signed_log"``, ``sign(d) log2(1 + |d|) / 3`` of the offset in cells, which keeps near offsets distinct and
    far ones bounded (the CPU-tiny recipe's choice).
    """

    def __init__(self, num_heads: int, hidden_dim: int = 512, stride: int = 16, inputs: str = "linear") -> None:
        super().__init__()
        if inputs not in BIAS_INPUTS:
            raise ValueError(f"unknown bias inputs {inputs!r}; use one of {', '.join(BIAS_INPUTS)}")
        self.stride, self.inputs = stride, inputs
        self.mlp_x = _mlp(2, hidden_dim, num_heads)
        self.mlp_y = _mlp(2, hidden_dim, num_heads)

    def _offsets(
        self, boxes: torch.Tensor, grid_size: tuple[int, int], image_sizes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Offsets of the box edges to the row centres ``(B, Nq, h, 2)`` and the column centres ``(B, Nq, w, 2)``:
        in pixels (``linear``) or signed-log cells (``signed_log``)."""
        h, w = grid_size
        cx, cy, bw, bh = boxes.unbind(-1)
        height, width = image_sizes[:, 0:1].to(boxes.dtype), image_sizes[:, 1:2].to(boxes.dtype)
        # box edges in cell units; cell j spans [j, j + 1), its centre is j + 0.5
        x_edges = torch.stack([cx - bw / 2, cx + bw / 2], -1) * (width / self.stride)[..., None]
        y_edges = torch.stack([cy - bh / 2, cy + bh / 2], -1) * (height / self.stride)[..., None]
        cols = torch.arange(w, device=boxes.device, dtype=boxes.dtype) + 0.5
        rows = torch.arange(h, device=boxes.device, dtype=boxes.dtype) + 0.5
        dy = y_edges[:, :, None, :] - rows[None, None, :, None]
        dx = x_edges[:, :, None, :] - cols[None, None, :, None]
        if self.inputs == "linear":
            return dy * self.stride, dx * self.stride
        return signed_log(dy), signed_log(dx)

    def factors(self, boxes: torch.Tensor, grid_size: tuple[int, int], image_sizes: torch.Tensor) -> AxisBias:
        """The bias as its row and column terms (same arguments as :meth:`forward`)."""
        dy, dx = self._offsets(boxes, grid_size, image_sizes)
        rows = chunked_mlp(self.mlp_y, dy).permute(0, 3, 1, 2).contiguous()  # (B, heads, Nq, h)
        cols = chunked_mlp(self.mlp_x, dx).permute(0, 3, 1, 2).contiguous()  # (B, heads, Nq, w)
        return AxisBias(rows, cols)

    def forward(self, boxes: torch.Tensor, grid_size: tuple[int, int], image_sizes: torch.Tensor) -> torch.Tensor:
        """Args:
            boxes: ``(B, Nq, 4)`` ``cxcywh`` normalised by each target image's own (unpadded) size.
            grid_size: ``(h, w)`` cells of the (padded) feature grid.
            image_sizes: ``(B, 2)`` unpadded target ``(height, width)`` in pixels.

        Returns ``(B, heads, Nq, h * w)`` in row-major grid order.
        """
        return self.factors(boxes, grid_size, image_sizes).dense()

    def reference(self, boxes: torch.Tensor, grid_size: tuple[int, int], image_sizes: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` written plainly: both MLPs over every offset at once, then the broadcast sum."""
        dy, dx = self._offsets(boxes, grid_size, image_sizes)
        bias_x = self.mlp_x(dx).permute(0, 3, 1, 2)  # (B, heads, Nq, w)
        bias_y = self.mlp_y(dy).permute(0, 3, 1, 2)  # (B, heads, Nq, h)
        return (bias_y[..., :, None] + bias_x[..., None, :]).flatten(-2)
