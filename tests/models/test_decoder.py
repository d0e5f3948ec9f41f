"""The decoder: iterative box refinement by hand, and where look-forward-twice sends gradients."""

import math

import pytest
import torch

from detector.models.box_ops import inverse_sigmoid
from detector.models.build import build_fusion
from detector.models.decoder import Decoder, DecoderLayer


def _decoder(look_forward_twice: bool, reach: str = "all", query_pos: str = "refined") -> Decoder:
    torch.manual_seed(0)
    layers = [DecoderLayer(build_fusion("indirect", 32, 4, 16, 0.0), 32, 4, 64) for _ in range(4)]
    decoder = Decoder(layers, 32, look_forward_twice, reach, query_pos)
    for head in decoder.box_heads:  # non-zero deltas (the heads start at zero)
        torch.nn.init.normal_(head[-1].weight, std=0.1)
    return decoder


def _run(decoder: Decoder):
    torch.manual_seed(1)
    queries, reference = torch.randn(1, 5, 32), torch.rand(1, 5, 4) * 0.5 + 0.25
    memory = torch.randn(1, 12, 32)
    return decoder(queries, reference, memory, memory, None, (3, 4), torch.tensor([[48, 64]])), reference


def test_each_layer_refines_the_previous_box_by_its_delta():
    decoder = _decoder(look_forward_twice=False)
    out, reference = _run(decoder)
    assert out.hidden.shape == (4, 1, 5, 32) and out.boxes.shape == (4, 1, 5, 4)
    previous = reference
    for layer in range(4):
        delta = decoder.box_heads[layer](out.hidden[layer])
        expected = (inverse_sigmoid(previous) + delta).sigmoid()
        torch.testing.assert_close(out.boxes[layer], expected, rtol=1e-5, atol=1e-6)
        previous = expected


def _box_head_grads(look_forward_twice: bool, reach: str = "all") -> list[bool]:
    decoder = _decoder(look_forward_twice, reach)
    out, _ = _run(decoder)
    out.boxes[2].sum().backward()  # the third layer's box loss only (of four)
    return [
        bool(head[-1].weight.grad is not None and head[-1].weight.grad.abs().sum() > 0) for head in decoder.box_heads
    ]


def test_look_forward_twice_sends_the_box_loss_to_earlier_box_heads():
    # without it, a layer's box loss reaches only its own box head (earlier boxes enter detached)
    assert _box_head_grads(look_forward_twice=False) == [False, False, True, False]
    # the official code's (and DINO's): its own head and the previous layer's, exactly two
    assert _box_head_grads(look_forward_twice=True, reach="previous") == [False, True, True, False]
    # reach "all": through the chain of undetached predictions, every earlier head
    assert _box_head_grads(look_forward_twice=True, reach="all") == [True, True, True, False]


def test_the_reach_changes_gradients_only_never_the_boxes():
    outputs = []
    for twice, reach in ((False, "all"), (True, "previous"), (True, "all")):
        outputs.append(_run(_decoder(twice, reach))[0].boxes)
    torch.testing.assert_close(outputs[1], outputs[0])
    torch.testing.assert_close(outputs[2], outputs[0])


def _official_proposal_sine(boxes: torch.Tensor, d: int) -> torch.Tensor:
    """The official code's proposal embedding, written out element by element: for each of the 4 coordinates,
    ``d / 2`` channels, channel ``i`` = ``sin`` (even ``i``) or ``cos`` (odd ``i``) of ``2 pi c / 10000 ** (2 (i // 2)
    / (d / 2))``."""
    n = d // 2
    out = torch.zeros(*boxes.shape[:-1], 4 * n)
    for j in range(4):
        for i in range(n):
            angle = boxes[..., j] * 2 * math.pi / 10000 ** (2 * (i // 2) / n)
            out[..., j * n + i] = torch.sin(angle) if i % 2 == 0 else torch.cos(angle)
    return out


@pytest.mark.parametrize("query_pos", ["proposals", "refined"])
def test_query_positions_once_from_the_proposals_or_per_layer_from_the_refined_boxes(query_pos):
    """``proposals`` (the official code): every layer gets ``LayerNorm(Linear(sine(proposal boxes)))[:d]``,
    the same tensor; ``refined``: each layer its own, from its refined boxes."""
    decoder = _decoder(look_forward_twice=True, reach="previous", query_pos=query_pos)
    seen = []
    for layer in decoder.layers:
        layer.register_forward_pre_hook(lambda module, args: seen.append(args[1].detach().clone()))
    out, reference = _run(decoder)
    if query_pos == "proposals":
        pos = decoder.query_pos
        expected = pos.norm(pos.linear(_official_proposal_sine(reference, 32)))[..., :32]
        for layer_pos in seen:
            torch.testing.assert_close(layer_pos, expected, rtol=1e-5, atol=1e-5)
    else:
        torch.testing.assert_close(seen[0], decoder.query_pos(reference))
        torch.testing.assert_close(seen[2], decoder.query_pos(out.boxes[1]))  # layer 3: layer 2's refined boxes
        assert not torch.allclose(seen[0], seen[2])
