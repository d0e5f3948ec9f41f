"""Two-stage proposals: anchors by hand (single and multi-level), padding cells never selected, top-k with fewer
cells than queries."""

import torch

from detector.models.proposals import MultiLevelProposalHead, ProposalHead, select_top_k


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


def test_multi_level_anchors_by_hand():
    """A 2 x 3 stride-16 grid whose third column is padding (a 32 x 32 image): level 0 (stride 8) is 4 x 6 with 4
    valid columns and rows, so cell (row 1, column 2) is centred at (2.5 / 4, 1.5 / 4), 0.05 wide; level 2
    (stride 32) is 1 x 1, centred (0.5, 0.5), 0.2 wide; level 3 (stride 64) has no cell."""
    torch.manual_seed(0)
    head = MultiLevelProposalHead(dim=32, stride=16)
    valid = torch.tensor([[True, True, False, True, True, False]])
    level0, inside0 = head.level_anchors(torch.tensor([[[False] * 4 + [True] * 2] * 4]), 0)
    torch.testing.assert_close(level0[0, 1 * 6 + 2], torch.tensor([2.5 / 4, 1.5 / 4, 0.05, 0.05]))
    assert inside0[0].view(4, 6)[:, :4].all() and not inside0[0].view(4, 6)[:, 4:].any()
    logits, boxes = head(torch.randn(1, 6, 32), valid, (2, 3), torch.tensor([[32, 32]]))
    assert logits.shape == (1, 24 + 6 + 1 + 0) and boxes.shape == (1, 31, 4)
    torch.testing.assert_close(boxes[0, 1 * 6 + 2], torch.tensor([2.5 / 4, 1.5 / 4, 0.05, 0.05]))  # zero deltas
    torch.testing.assert_close(boxes[0, 24 + 1], torch.tensor([1.5 / 2, 0.5 / 2, 0.1, 0.1]))  # level 1, (0, 1)
    torch.testing.assert_close(boxes[0, 30], torch.tensor([0.5, 0.5, 0.2, 0.2]))  # level 2
    proposed = logits[0] > -1e3
    assert proposed[:24].sum() == 16 and proposed[24:30].tolist() == [True, True, False, True, True, False]
    assert proposed[30]


def test_multi_level_anchors_outside_the_inner_image_are_not_proposed():
    """The official rule: an anchor with a coordinate outside (0.01, 0.99) is not proposed (a 0.8-wide level-4
    anchor is, a 1.6-wide level-5 one would not be)."""
    anchors, inside = MultiLevelProposalHead.level_anchors(torch.zeros(1, 1, 1, dtype=torch.bool), 4)
    torch.testing.assert_close(anchors[0, 0], torch.tensor([0.5, 0.5, 0.8, 0.8]))
    assert inside.all()
    assert not MultiLevelProposalHead.level_anchors(torch.zeros(1, 1, 1, dtype=torch.bool), 5)[1].any()
