"""The decoder: iterative box refinement by hand, and where look-forward-twice sends gradients."""

import torch

from detector.models.box_ops import inverse_sigmoid
from detector.models.build import build_fusion
from detector.models.decoder import Decoder, DecoderLayer


def _decoder(look_forward_twice: bool, reach: str = "all") -> Decoder:
    torch.manual_seed(0)
    layers = [DecoderLayer(build_fusion("indirect", 32, 4, 16, 0.0), 32, 4, 64) for _ in range(4)]
    decoder = Decoder(layers, 32, look_forward_twice, reach)
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
