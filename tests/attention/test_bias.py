"""The box bias's fast path (chunked MLPs, row and column terms folded into the dot product) against the plain
formula: outputs and gradients."""

import pytest
import torch

from detector.attention import BoxRelativePositionBias, IndirectAttention, attend, attend_reference
from detector.attention.bias import CHUNK_ROWS, AxisBias, _ChunkedMLP, chunked_mlp
from detector.attention.functional import _folded


def _boxes(b, nq, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, nq, 4, generator=g) * 0.5 + 0.25).requires_grad_(True)


def test_axis_bias_dense_by_hand():
    rows = torch.tensor([1.0, 2.0]).view(1, 1, 1, 2)
    cols = torch.tensor([10.0, 20.0, 30.0]).view(1, 1, 1, 3)
    # row-major over the 2 x 3 grid: cell (r, c) = rows[r] + cols[c]
    assert AxisBias(rows, cols).dense().flatten().tolist() == [11, 21, 31, 12, 22, 32]


def test_chunked_mlp_equals_the_plain_call_with_gradients():
    torch.manual_seed(0)
    mlp = BoxRelativePositionBias(4, 16).mlp_x
    x = torch.randn(3, CHUNK_ROWS, 2, requires_grad=True)  # three chunks
    fast, plain = chunked_mlp(mlp, x), mlp(x)
    torch.testing.assert_close(fast, plain)
    grad = torch.randn_like(plain)
    for a, b in zip(
        torch.autograd.grad(fast, [x, *mlp.parameters()], grad),
        torch.autograd.grad(plain, [x, *mlp.parameters()], grad),
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_chunked_mlp_backward_passes_gradcheck():
    g = torch.Generator().manual_seed(0)
    make = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).requires_grad_(True)  # noqa: E731
    inputs = (make(10, 2), make(6, 2), make(6), make(3, 6), make(3), 4)  # 10 rows in chunks of 4
    assert torch.autograd.gradcheck(_ChunkedMLP.apply, inputs)


@pytest.mark.parametrize("inputs", ["linear", "signed_log"])
def test_box_bias_equals_its_reference_outputs_and_gradients(inputs):
    torch.manual_seed(0)
    module = BoxRelativePositionBias(num_heads=4, hidden_dim=32, inputs=inputs)
    boxes = _boxes(2, 300)  # 2 x 300 x 12 rows per axis: more than one chunk
    sizes = torch.tensor([[160, 192], [128, 192]])
    fast, ref = module(boxes, (10, 12), sizes), module.reference(boxes, (10, 12), sizes)
    assert fast.shape == (2, 4, 300, 120)
    scale = float(ref.abs().max())  # pixel offsets (linear) give values in the tens: compare relative to them
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6 * scale)
    grad = torch.randn_like(ref)
    tensors = [boxes, *module.parameters()]
    for a, b in zip(torch.autograd.grad(fast, tensors, grad), torch.autograd.grad(ref, tensors, grad)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(1.0, float(b.abs().max())))


@pytest.mark.parametrize("with_mask", [False, True])
def test_folded_axis_bias_equals_the_dense_formula(with_mask):
    g = torch.Generator().manual_seed(0)
    make = lambda *s: torch.randn(*s, generator=g).requires_grad_(True)  # noqa: E731
    q, k, v = make(2, 3, 5, 8), make(2, 3, 12, 8), make(2, 3, 12, 8)
    rows, cols = make(2, 3, 5, 3), make(2, 3, 5, 4)  # a 3 x 4 grid
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[1, 8:] = True
    padding = mask if with_mask else None
    fast = attend(q, k, v, AxisBias(rows, cols), padding)
    ref = attend_reference(q, k, v, AxisBias(rows, cols).dense(), padding)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)
    grad = torch.randn_like(ref)
    tensors = [q, k, v, rows, cols]
    for a, b in zip(torch.autograd.grad(fast, tensors, grad), torch.autograd.grad(ref, tensors, grad)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("with_mask", [False, True])
def test_indirect_attention_fast_path_equals_its_reference(with_mask):
    torch.manual_seed(0)
    fast = IndirectAttention(32, 4, BoxRelativePositionBias(4, 16))
    ref = IndirectAttention(32, 4, BoxRelativePositionBias(4, 16), reference=True)
    ref.load_state_dict(fast.state_dict())
    query, conditioning, content = torch.randn(2, 6, 32), torch.randn(2, 20, 32), torch.randn(2, 20, 32)
    relation = {"boxes": _boxes(2, 6), "grid_size": (4, 5), "image_sizes": torch.tensor([[64, 80], [64, 64]])}
    mask = torch.zeros(2, 20, dtype=torch.bool)
    mask[1, 16:] = True
    padding = mask if with_mask else None
    out_fast = fast(query, conditioning, content, key_padding_mask=padding, relation=relation)
    out_ref = ref(query, conditioning, content, key_padding_mask=padding, relation=relation)
    torch.testing.assert_close(out_fast, out_ref, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(out_ref)
    g_fast = torch.autograd.grad(out_fast, list(fast.parameters()), grad)
    g_ref = torch.autograd.grad(out_ref, list(ref.parameters()), grad)
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_folded_bias_equals_the_dense_formula():
    # the fold used off the CPU when no key is padding: bias terms as extra dimensions of q and k
    g = torch.Generator().manual_seed(1)
    make = lambda *s: torch.randn(*s, generator=g).requires_grad_(True)  # noqa: E731
    q, k, v, rows, cols = make(2, 3, 5, 8), make(2, 3, 12, 8), make(2, 3, 12, 8), make(2, 3, 5, 3), make(2, 3, 5, 4)
    fast = _folded(q, k, v, AxisBias(rows, cols), 0.0)
    ref = attend_reference(q, k, v, AxisBias(rows, cols).dense())
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)
    grad = torch.randn_like(ref)
    tensors = [q, k, v, rows, cols]
    for a, b in zip(torch.autograd.grad(fast, tensors, grad), torch.autograd.grad(ref, tensors, grad)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_bias_inputs_in_pixels_and_in_signed_log_cells_for_a_hand_made_box():
    from detector.attention.bias import BoxRelativePositionBias

    # a 64 x 96 image, stride 16: a 4 x 6 grid, column centres at x = 8, 24, 40, 56, 72, 88 px, rows at 8 ... 56
    box = torch.tensor([[[24 / 96, 20 / 64, 32 / 96, 24 / 64]]])  # cx, cy, w, h: x from 8 to 40, y from 8 to 32 px
    sizes = torch.tensor([[64, 96]])
    dy, dx = BoxRelativePositionBias(2, 8, 16, "linear")._offsets(box, (4, 6), sizes)
    expected_x = [[8 - c, 40 - c] for c in (8, 24, 40, 56, 72, 88)]
    expected_y = [[8 - r, 32 - r] for r in (8, 24, 40, 56)]
    torch.testing.assert_close(dx[0, 0], torch.tensor(expected_x, dtype=torch.float32))
    torch.testing.assert_close(dy[0, 0], torch.tensor(expected_y, dtype=torch.float32))
    dy, dx = BoxRelativePositionBias(2, 8, 16, "signed_log")._offsets(box, (4, 6), sizes)
    cells = torch.tensor(expected_x, dtype=torch.float32) / 16
    torch.testing.assert_close(dx[0, 0], torch.sign(cells) * torch.log2(1 + cells.abs()) / 3)
    with pytest.raises(ValueError, match="bias inputs"):
        BoxRelativePositionBias(2, 8, 16, "cells")
