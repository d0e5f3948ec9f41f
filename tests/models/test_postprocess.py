"""The postprocessor: boxes back to original pixels, optional NMS."""

import pytest
import torch

from detector.models.ia_detr import DetectorOutput
from detector.models.postprocess import PostProcessor


def test_postprocessor_maps_to_original_pixels():
    # a 400x300 (w x h) original resized to 200x150 and padded to 256x256: a box normalised by the resized
    # image (cx 0.5, cy 0.5, w 0.25, h 0.2) is x 150..250, y 120..180 in the original
    out = DetectorOutput(torch.tensor([[3.0, -1.0]]), torch.tensor([[[0.5, 0.5, 0.25, 0.2], [0.1, 0.1, 0.1, 0.1]]]))
    result = PostProcessor(top_k=2)(out, torch.tensor([[300, 400]]))[0]
    torch.testing.assert_close(result["boxes"][0], torch.tensor([150.0, 120.0, 250.0, 180.0]))
    assert result["scores"][0] > result["scores"][1]


def test_optional_nms_drops_only_overlapping_lower_scored_boxes():
    # on a 100x100 image: box 1 (8x8) lies inside box 0 (10x10), IoU 64/100, and scores lower; box 2 is
    # elsewhere; box 3 is box 2 shifted by 2 px in x and y, IoU 64/136 = 0.47, and scores lowest
    boxes = torch.tensor(
        [[[0.5, 0.5, 0.1, 0.1], [0.49, 0.49, 0.08, 0.08], [0.2, 0.2, 0.1, 0.1], [0.22, 0.22, 0.1, 0.1]]]
    )
    out = DetectorOutput(torch.tensor([[4.0, 3.0, 1.0, 0.5]]), boxes)
    sizes = torch.tensor([[100, 100]])
    plain = PostProcessor(top_k=4)(out, sizes)[0]
    assert len(plain["scores"]) == 4  # NMS-free by default, as the paper
    for iou, kept in ((0.5, [0, 2, 3]), (0.3, [0, 2]), (0.7, [0, 1, 2, 3])):
        result = PostProcessor(top_k=4, nms_iou=iou)(out, sizes)[0]
        torch.testing.assert_close(result["scores"], plain["scores"][kept], msg=f"nms_iou={iou}")
        torch.testing.assert_close(result["boxes"], plain["boxes"][kept], msg=f"nms_iou={iou}")
    with pytest.raises(ValueError, match="eval.nms_iou must lie in"):
        PostProcessor(nms_iou=1.5)
