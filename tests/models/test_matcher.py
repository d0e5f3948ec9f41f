"""Hungarian matching: a hand-computed assignment, batched against per-image, empty targets."""

import torch

from detector.models.matcher import HungarianMatcher


def test_matcher_hand_computed_3x3():
    matcher = HungarianMatcher(class_cost=0.0, l1_cost=1.0, giou_cost=0.0)
    boxes = torch.tensor([[[0.1, 0.1, 0.1, 0.1], [0.5, 0.5, 0.1, 0.1], [0.9, 0.9, 0.1, 0.1]]])
    targets = [torch.tensor([[0.88, 0.9, 0.1, 0.1], [0.12, 0.1, 0.1, 0.1], [0.5, 0.52, 0.1, 0.1]])]
    # L1 costs: the diagonal assignment 0->1, 1->2, 2->0 costs 0.02 + 0.02 + 0.02
    rows, cols = matcher(torch.zeros(1, 3), boxes, targets)[0]
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [1, 2, 0]


def test_matcher_batched_equals_per_image_and_empty_targets():
    torch.manual_seed(0)
    matcher = HungarianMatcher()
    logits, boxes = torch.randn(3, 12), torch.rand(3, 12, 4) * 0.5 + 0.25
    targets = [torch.rand(4, 4) * 0.5 + 0.25, torch.zeros(0, 4), torch.rand(2, 4) * 0.5 + 0.25]
    batched = matcher(logits, boxes, targets)
    for i in range(3):
        single = matcher(logits[i : i + 1], boxes[i : i + 1], [targets[i]])[0]
        assert torch.equal(batched[i][0], single[0]) and torch.equal(batched[i][1], single[1])
    assert len(batched[1][0]) == 0
    assert all(len(r) == 0 for r, _ in matcher(logits, boxes, [torch.zeros(0, 4)] * 3))
