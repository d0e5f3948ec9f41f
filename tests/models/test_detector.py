import pytest
import torch

from detector.attention import (
    BoxRelativePositionBias,
    DoubleCrossAttention,
    IndirectAttention,
    MisalignedAttention,
)
from detector.config import load_config
from detector.models import build
from detector.models.matcher import HungarianMatcher
from detector.models.postprocess import PostProcessor

TINY = "configs/tiny_synthetic.yaml"


def _tiny(*overrides):
    config = load_config(
        TINY,
        [
            "model.backbone.width=16",
            "model.hidden_dim=64",
            "model.num_layers=2",
            "model.ffn_dim=128",
            "model.num_queries=10",
            "model.bias_hidden_dim=16",
            *overrides,
        ],
    )
    torch.manual_seed(0)
    return build(config)


def _batch(b=2, size=128, query=48):
    torch.manual_seed(1)
    target = torch.randn(b, 3, size, size)
    query_images = torch.zeros(b, 3, size, size)
    query_images[:, :, :query, :query] = torch.randn(b, 3, query, query)
    target_masks = torch.zeros(b, size, size, dtype=torch.bool)
    target_masks[1, :, 96:] = True  # second target is 96 px wide
    target[1, :, :, 96:] = 0
    query_masks = torch.ones(b, size, size, dtype=torch.bool)
    query_masks[:, :query, :query] = False
    sizes = torch.tensor([[size, size], [size, 96]])
    targets = [
        {
            "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3]]),
            "all_boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3]]),
            "all_labels": torch.tensor([3]),
            "query_label": torch.tensor(3),
        },
        {
            "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.1, 0.2]]),
            "all_boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.1, 0.2], [0.1, 0.1, 0.1, 0.1]]),
            "all_labels": torch.tensor([5, 5, 2]),
            "query_label": torch.tensor(5),
        },
    ]
    return (target, target_masks, query_images, query_masks, sizes), targets


@pytest.mark.parametrize("one2many", [0, 8])
def test_forward_backward_with_padding(one2many):
    model, criterion, _ = _tiny(f"model.num_queries_one2many={one2many}")
    inputs, targets = _batch()
    model.train()
    out = model(*inputs)
    assert out.logits.shape == (2, 10) and out.boxes.shape == (2, 10, 4)
    assert len(out.aux) == 1 and len(out.one2many) == (2 if one2many else 0)
    losses = criterion(out, targets)
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in trainable)
    assert all(torch.isfinite(p.grad).all() for p in trainable)
    model.eval()
    assert model(*inputs).one2many == []  # one-to-many queries are for training only


def test_padding_does_not_change_predictions():
    model, _, _ = _tiny()
    model.eval()
    inputs, _ = _batch()
    target, target_masks, query_images, query_masks, sizes = inputs
    small = model(target[1:, :, :, :], target_masks[1:], query_images[1:], query_masks[1:], sizes[1:])
    # pad the grid further (bottom/right): the result for the same image must not move
    pad = lambda x, v=0: torch.nn.functional.pad(x, (0, 32, 0, 32), value=v)  # noqa: E731
    big = model(
        pad(target[1:]),
        pad(target_masks[1:], True),
        pad(query_images[1:]),
        pad(query_masks[1:], True),
        sizes[1:],
    )
    torch.testing.assert_close(small.logits, big.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(small.boxes, big.boxes, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "fusion,cls",
    [("indirect", IndirectAttention), ("cross", DoubleCrossAttention), ("misaligned", MisalignedAttention)],
)
def test_fusion_blocks_swap_by_config(fusion, cls):
    model, criterion, _ = _tiny(f"model.fusion={fusion}")
    assert all(isinstance(layer.fusion, cls) for layer in model.decoder.layers)
    inputs, targets = _batch()
    criterion(model(*inputs), targets)["loss"].backward()


def test_box_bias_moves_with_boxes():
    model, _, _ = _tiny()
    bias = model.decoder.layers[0].fusion.bias
    assert isinstance(bias, BoxRelativePositionBias)
    sizes = torch.tensor([[128, 128]])
    a = bias(torch.tensor([[[0.3, 0.3, 0.2, 0.2]]]), (8, 8), sizes)
    b = bias(torch.tensor([[[0.6, 0.3, 0.2, 0.2]]]), (8, 8), sizes)
    assert not torch.allclose(a, b)


def test_k_shot_with_copies_equals_one_shot():
    model, _, _ = _tiny()
    model.eval()
    inputs, _ = _batch()
    target, target_masks, query_images, query_masks, sizes = inputs
    one = model(*inputs)
    three = model(
        target,
        target_masks,
        query_images[:, None].repeat(1, 3, 1, 1, 1),
        query_masks[:, None].repeat(1, 3, 1, 1),
        sizes,
    )
    torch.testing.assert_close(one.logits, three.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(one.boxes, three.boxes, rtol=1e-4, atol=1e-4)


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


def test_criterion_near_zero_on_perfect_predictions():
    from detector.models.ia_detr import DetectorOutput

    _, criterion, _ = _tiny("model.identity_classes=0")
    gt = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.1, 0.2]])
    boxes = torch.cat([gt, torch.rand(8, 4) * 0.1 + 0.45])[None]
    logits = torch.full((1, 10), -20.0)
    logits[0, :2] = 20.0
    targets = [{"boxes": gt, "all_boxes": gt, "query_label": torch.tensor(1)}]
    perfect = criterion(DetectorOutput(logits, boxes), targets)["loss"]
    assert perfect < 1e-3
    worse = criterion(DetectorOutput(logits, boxes + 0.05), targets)["loss"]
    flipped = logits.clone()
    flipped[0, :2] = -20.0
    wrong_class = criterion(DetectorOutput(flipped, boxes), targets)["loss"]
    assert worse > 0.3 and wrong_class > 1.0


def test_postprocessor_maps_to_original_pixels():
    from detector.models.ia_detr import DetectorOutput

    # a 400x300 (w x h) original resized to 200x150 and padded to 256x256: a box normalised by the resized
    # image (cx 0.5, cy 0.5, w 0.25, h 0.2) is x 150..250, y 120..180 in the original
    out = DetectorOutput(torch.tensor([[3.0, -1.0]]), torch.tensor([[[0.5, 0.5, 0.25, 0.2], [0.1, 0.1, 0.1, 0.1]]]))
    result = PostProcessor(top_k=2)(out, torch.tensor([[300, 400]]))[0]
    torch.testing.assert_close(result["boxes"][0], torch.tensor([150.0, 120.0, 250.0, 180.0]))
    assert result["scores"][0] > result["scores"][1]


def test_optional_nms_drops_only_overlapping_lower_scored_boxes():
    from detector.models.ia_detr import DetectorOutput

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


def test_unknown_fusion_names_choices():
    with pytest.raises(ValueError, match="choose one of indirect, cross, misaligned"):
        _tiny("model.fusion=other")


def test_query_content_is_embedding_plus_target_feature_at_proposal_cell():
    model, _, _ = _tiny()
    model.eval()
    inputs, _ = _batch()
    target, target_masks, *_rest, sizes = inputs
    seen = {}
    model.decoder.register_forward_pre_hook(lambda module, args: seen.update(queries=args[0]))
    model(*inputs)
    # independent recomputation: top-k cells of the proposal scores, their features, the projection
    features, masks = model.backbone(target, target_masks)
    seq = (features * ~masks[:, None]).flatten(2).transpose(1, 2)
    logits, _ = model.proposal_head(seq, ~masks.flatten(1), features.shape[-2:], sizes)
    for b in range(2):
        cells = logits[b].topk(10).indices
        expected = model.query_content.weight[:10] + model.content_proj(seq[b, cells])
        torch.testing.assert_close(seen["queries"][b], expected, rtol=1e-5, atol=1e-5)
    plain, _, _ = _tiny("model.content_from_target=false")
    assert plain.content_proj is None


def test_target_box_identity_is_cross_entropy_of_box_feature():
    from detector.models.ia_detr import DetectorOutput

    _, criterion, _ = _tiny()
    torch.manual_seed(0)
    c = torch.rand(64) + 0.5  # positive: bilinear samples mixing in the zero outside stay below it
    features = torch.zeros(1, 64, 8, 8)
    features[0, :, 2:5, 1:4] = c[:, None, None]  # cells y 2..4, x 1..3 = pixels y 32..80, x 16..64
    out = DetectorOutput(
        logits=torch.zeros(1, 10),
        boxes=torch.rand(1, 10, 4),
        hidden=torch.zeros(1, 10, 64),
        query_embedding=torch.zeros(1, 64),
        target_features=features,
        image_sizes=torch.tensor([[128, 128]]),
    )
    box = torch.tensor([[40.0 / 128, 56.0 / 128, 48.0 / 128, 48.0 / 128]])  # the 3x3 cells, cxcywh
    targets = [{"boxes": box, "all_boxes": box, "all_labels": torch.tensor([7]), "query_label": torch.tensor(7)}]
    loss = criterion.target_box_identity_loss(out, targets)
    expected = torch.nn.functional.cross_entropy(criterion.identity_head(c[None]), torch.tensor([7]))
    torch.testing.assert_close(loss, expected)
    # a stage-1 self-query box (label -1) is not a class: it is left out
    targets[0]["all_boxes"] = torch.cat([box, box])
    targets[0]["all_labels"] = torch.tensor([7, -1])
    torch.testing.assert_close(criterion.target_box_identity_loss(out, targets), expected)
    targets[0]["all_labels"] = torch.tensor([7, 99])
    with pytest.raises(ValueError, match="identity_classes"):
        criterion.target_box_identity_loss(out, targets)


def test_similarity_logit_is_scaled_cosine_and_is_wired_into_the_class_logits():
    from detector.models.ia_detr import SimilarityLogit

    head = SimilarityLogit(dim=3, num_layers=2, init_scale=4.0)
    with torch.no_grad():
        for proj in (head.object_proj, head.query_proj):
            proj.weight.copy_(torch.eye(3))
            proj.bias.zero_()
    hidden = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])[None, None].repeat(2, 1, 1, 1)  # (L=2, B=1, N=2, 3)
    query = torch.tensor([[2.0, 0.0, 0.0]])
    # cos((1,0,0), (1,0,0)) = 1, cos((1,1,0), (1,0,0)) = 1/sqrt(2)
    torch.testing.assert_close(head(hidden, query), torch.tensor([[[4.0, 4.0 / 2**0.5]]] * 2))

    model, _, _ = _tiny("model.match_similarity=true")
    model.eval()
    inputs, _ = _batch()
    with_term = model(*inputs).logits
    with torch.no_grad():
        model.similarity.scale.zero_()
    assert not torch.allclose(with_term, model(*inputs).logits)
