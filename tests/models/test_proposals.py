"""Two-stage proposals: anchors by hand, padding cells never selected, top-k with fewer cells than queries."""

import torch

from detector.models.proposals import ProposalHead, select_top_k


def test_anchors_by_hand():
    head = ProposalHead(dim=32, stride=16, anchor_cells=2.0)
    anchors = head.anchors((2, 3), torch.tensor([[32, 48]]))  # a 48x32 (w x h) image, 3x2 cells
    assert anchors.shape == (1, 6, 4)
    # cell (row 1, column 2): centre (2.5 * 16, 1.5 * 16) = (40, 24) px; anchor 32 px square
    torch.testing.assert_close(anchors[0, 1 * 3 + 2], torch.tensor([40 / 48, 24 / 32, 32 / 48, 32 / 32]))
    torch.testing.assert_close(anchors[0, 0], torch.tensor([8 / 48, 8 / 32, 32 / 48, 32 / 32]))


def test_padding_cells_score_lowest_and_boxes_start_at_the_anchors():
    torch.manual_seed(0)
    head = ProposalHead(dim=32)
    valid = torch.tensor([[True, True, False, True, True, False]])
    logits, boxes = head(torch.randn(1, 6, 32), valid, (2, 3), torch.tensor([[32, 32]]))
    assert (logits[~valid] == -1e4).all() and (logits[valid] > -1e3).all()
    # the box MLP's last layer starts at zero: boxes equal the (clamped) anchors
    torch.testing.assert_close(boxes, head.anchors((2, 3), torch.tensor([[32, 32]])).clamp(1e-4, 1 - 1e-4))


def test_top_k_picks_the_best_cells_and_cycles_when_there_are_fewer():
    logits = torch.tensor([[0.1, 0.9, 0.5]])
    boxes = torch.arange(12, dtype=torch.float32).view(1, 3, 4)
    picked, cells = select_top_k(logits, boxes, 2)
    assert cells.tolist() == [[1, 2]] and torch.equal(picked[0, 0], boxes[0, 1])
    _, cells = select_top_k(logits, boxes, 5)
    assert cells.tolist() == [[1, 2, 0, 1, 2]]
