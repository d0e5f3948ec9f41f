import pytest
import torch

from detector.attention import (
    BoxRelativePositionBias,
    CrossAttention,
    DoubleCrossAttention,
    IndirectAttention,
    MisalignedAttention,
    SequenceOffsetBias,
    attend,
    attend_reference,
    attention_weights,
)


def _inputs(b=3, h=4, nq=5, n=7, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    make = lambda *s: torch.randn(*s, generator=g, dtype=torch.float32, requires_grad=True)  # noqa: E731
    return make(b, h, nq, d), make(b, h, n, d), make(b, h, n, d), make(b, h, nq, n)


@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_fast_path_equals_reference_outputs_and_gradients(with_mask, with_bias):
    q, k, v, bias = _inputs()
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[0, 5:] = True
    mask[2, 1] = True
    args = (bias if with_bias else None, mask if with_mask else None)
    fast, ref = attend(q, k, v, *args), attend_reference(q, k, v, *args)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)
    grad_out = torch.randn_like(fast)
    tensors = [q, k, v] + ([bias] if with_bias else [])
    g_fast = torch.autograd.grad(fast, tensors, grad_out)
    g_ref = torch.autograd.grad(ref, tensors, grad_out)
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_masked_keys_get_no_weight():
    q, k, _v, bias = _inputs()
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[:, 3] = True
    weights = attention_weights(q, k, bias, mask)
    assert torch.all(weights[..., 3] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, 5))


def test_fully_masked_keys_never_nan():
    q, k, v, bias = _inputs()
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[1] = True  # every key of batch element 1 is padding
    for fn in (attend, attend_reference):
        out = fn(q, k, v, bias, mask)
        assert torch.isfinite(out).all()
        assert torch.all(out[1] == 0)
        (grads,) = torch.autograd.grad(out.sum(), [q])
        assert torch.isfinite(grads).all()


def test_strong_bias_picks_its_position():
    q, k, v, _ = _inputs()
    bias = torch.zeros(3, 4, 5, 7)
    bias[..., 4] = 1e4  # every query of every head strongly prefers position 4
    out = attend(q, k, v, bias)
    torch.testing.assert_close(out, v[:, :, 4:5, :].expand_as(out), rtol=0, atol=1e-5)


def test_sequence_offset_bias_depends_only_on_offset():
    module = SequenceOffsetBias(num_heads=3, hidden_dim=16)
    positions = torch.arange(6, dtype=torch.float32)[None].repeat(2, 1)
    bias = module(positions, num_keys=6)
    assert bias.shape == (2, 3, 6, 6)
    # same offset j - i -> same value: compare the diagonals
    torch.testing.assert_close(bias[:, :, 0, 1], bias[:, :, 3, 4])
    torch.testing.assert_close(bias[:, :, 2, 0], bias[:, :, 5, 3])


def _box_bias():
    torch.manual_seed(0)
    return BoxRelativePositionBias(num_heads=2, hidden_dim=32, stride=16, inputs="signed_log")


def test_box_bias_by_hand():
    module = _box_bias()
    boxes = torch.tensor([[[0.5, 0.5, 0.5, 0.25]]])  # image 64x128 (h x w): x 32..96 px, y 24..40 px
    bias = module(boxes, grid_size=(4, 8), image_sizes=torch.tensor([[64, 128]]))
    assert bias.shape == (1, 2, 1, 32)
    # column 3 (centre 3.5 cells): x1 = 2 cells -> dx1 = -1.5; x2 = 6 cells -> dx2 = 2.5
    from detector.attention.bias import signed_log

    dx = signed_log(torch.tensor([2.0 - 3.5, 6.0 - 3.5]))
    dy = signed_log(torch.tensor([1.5 - 1.5, 2.5 - 1.5]))  # row 1, centre 1.5 cells; y1 = 1.5, y2 = 2.5
    expected = module.mlp_x(dx) + module.mlp_y(dy)
    torch.testing.assert_close(bias[0, :, 0, 1 * 8 + 3], expected)


def test_box_bias_moves_with_the_box():
    module = _box_bias()
    sizes = torch.tensor([[128, 128]])
    box = torch.tensor([[[0.25, 0.25, 0.2, 0.2]]])
    shifted = box + torch.tensor([0.5, 0.5, 0, 0])
    a = module(box, (8, 8), sizes).view(2, 8, 8)
    b = module(shifted, (8, 8), sizes).view(2, 8, 8)
    assert not torch.allclose(a, b)
    # shifting the box by 4 cells shifts the bias map by 4 cells
    torch.testing.assert_close(a[:, :4, :4], b[:, 4:, 4:], rtol=1e-5, atol=1e-5)


def _block(kind, dim=16, heads=4):
    if kind == "indirect":
        return IndirectAttention(dim, heads, SequenceOffsetBias(heads, 8))
    return {"misaligned": MisalignedAttention, "cross": CrossAttention, "double": DoubleCrossAttention}[kind](
        dim, heads
    )


@pytest.mark.parametrize("kind", ["indirect", "misaligned", "cross", "double"])
def test_blocks_are_interchangeable(kind):
    torch.manual_seed(0)
    block = _block(kind)
    query, cond, content = torch.randn(2, 5, 16), torch.randn(2, 9, 16), torch.randn(2, 9, 16)
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[1, 6:] = True
    relation = {"query_positions": torch.arange(5.0)[None].repeat(2, 1), "num_keys": 9}
    out = block(query, cond, content, key_padding_mask=mask, relation=relation)
    assert out.shape == (2, 5, 16)
    out.sum().backward()
    assert all(p.grad is not None for p in block.parameters())


def test_blocks_read_the_right_sequences():
    torch.manual_seed(0)
    query, cond, content = torch.randn(1, 3, 16), torch.randn(1, 4, 16), torch.randn(1, 4, 16)
    relation = {"query_positions": torch.zeros(1, 3), "num_keys": 4}
    for kind in ("indirect", "misaligned"):
        block = _block(kind).eval()
        base = block(query, cond, content, relation=relation)
        changed_content = block(query, cond, content + 1, relation=relation)
        assert not torch.allclose(base, changed_content)  # values come from content
    cross = _block("cross").eval()
    torch.testing.assert_close(cross(query, cond, content), cross(query, cond, content + 1))


def test_indirect_attention_matches_naive_loop():
    torch.manual_seed(0)
    block = IndirectAttention(8, 2, SequenceOffsetBias(2, 8)).eval()
    query, cond, content = torch.randn(1, 3, 8), torch.randn(1, 4, 8), torch.randn(1, 4, 8)
    relation = {"query_positions": torch.arange(3.0)[None], "num_keys": 4}
    out = block(query, cond, content, relation=relation)
    q, k, v = block.q_proj(query)[0], block.k_proj(cond)[0], block.v_proj(content)[0]
    bias = block.bias(**relation)[0]
    heads = []
    for h in range(2):
        sl = slice(4 * h, 4 * h + 4)
        rows = []
        for i in range(3):
            s = torch.stack([q[i, sl] @ k[j, sl] / 2.0 + bias[h, i, j] for j in range(4)])
            a = torch.exp(s - s.max()) / torch.exp(s - s.max()).sum()
            rows.append(sum(a[j] * v[j, sl] for j in range(4)))
        heads.append(torch.stack(rows))
    expected = block.out_proj(torch.cat(heads, dim=-1))
    torch.testing.assert_close(out[0], expected, rtol=1e-5, atol=1e-6)


def test_length_mismatch_is_an_error():
    block = _block("misaligned")
    with pytest.raises(ValueError, match="same length"):
        block(torch.randn(1, 2, 16), torch.randn(1, 3, 16), torch.randn(1, 4, 16))
