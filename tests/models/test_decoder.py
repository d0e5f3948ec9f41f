"""The decoder: iterative box refinement by hand, and where look-forward-twice sends gradients."""

import torch

from detector.models.box_ops import inverse_sigmoid
from detector.models.build import build_fusion
from detector.models.decoder import Decoder, DecoderLayer


def _decoder(look_forward_twice: bool) -> Decoder:
    torch.manual_seed(0)
    layers = [DecoderLayer(build_fusion("indirect", 32, 4, 16, 0.0), 32, 4, 64) for _ in range(3)]
    decoder = Decoder(layers, 32, look_forward_twice)
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
    assert out.hidden.shape == (3, 1, 5, 32) and out.boxes.shape == (3, 1, 5, 4)
    previous = reference
    for layer in range(3):
        delta = decoder.box_heads[layer](out.hidden[layer])
        expected = (inverse_sigmoid(previous) + delta).sigmoid()
        torch.testing.assert_close(out.boxes[layer], expected, rtol=1e-5, atol=1e-6)
        previous = expected


def _box_head_grads(look_forward_twice: bool) -> list[bool]:
    decoder = _decoder(look_forward_twice)
    out, _ = _run(decoder)
    out.boxes[2].sum().backward()  # the last layer's box loss only
    return [
        bool(head[-1].weight.grad is not None and head[-1].weight.grad.abs().sum() > 0) for head in decoder.box_heads
    ]


def test_look_forward_twice_sends_the_box_loss_to_earlier_box_heads():
    # without it, a layer's box loss reaches only its own box head (earlier boxes enter detached)
    assert _box_head_grads(look_forward_twice=False) == [False, False, True]
    # with it (as implemented here), through the undetached previous prediction, every earlier head too
    assert _box_head_grads(look_forward_twice=True) == [True, True, True]
