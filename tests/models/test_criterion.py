"""The criterion: pure losses (no parameters), near zero on perfect predictions, identity terms by hand."""

import math

import pytest
import torch
import torch.nn.functional as F
from model_helpers import tiny_detector
from torchvision.ops import sigmoid_focal_loss

from detector.models.heads import IdentityHead, IdentityOutput
from detector.models.ia_detr import DetectorOutput


def test_criterion_near_zero_on_perfect_predictions():
    _, criterion, _ = tiny_detector("model.identity_classes=0", "loss.query_metric_weight=0")
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


def test_criterion_owns_no_parameters():
    model, criterion, _ = tiny_detector("model.identity_classes=8", "loss.contrastive_dim=16")
    assert list(criterion.parameters()) == [] and list(criterion.buffers()) == []
    assert model.identity_head is not None and model.stage_one is not None  # the official stage-1 heads
    crop_only, _, _ = tiny_detector("loss.contrastive_dim=16", "train.stage1_recipe=crop_only")
    assert crop_only.contrastive_head is not None and crop_only.stage_one is None


def test_identity_terms_are_cross_entropies_of_the_heads_logits():
    _, criterion, _ = tiny_detector("model.identity_classes=0", "loss.query_metric_weight=0")
    torch.manual_seed(0)
    identity = IdentityOutput(query=torch.randn(2, 6), objects=torch.randn(2, 4, 6), boxes=torch.randn(3, 6))
    out = DetectorOutput(torch.zeros(2, 4), torch.rand(2, 4, 4) * 0.2 + 0.4, identity=identity)
    targets = [
        {"boxes": torch.zeros(0, 4), "class_labels": torch.tensor([1, 4]), "query_label": torch.tensor(2)},
        {"boxes": torch.zeros(0, 4), "class_labels": torch.tensor([5]), "query_label": torch.tensor(-1)},
    ]
    terms = criterion.identity_losses(
        out, targets, [(torch.tensor([1, 3]), torch.tensor([0, 1])), (torch.tensor([0]), torch.tensor([0]))]
    )
    # only episode 0 has a class: its query logits, and its matched objects 1 and 3
    torch.testing.assert_close(terms["query"], F.cross_entropy(identity.query[:1], torch.tensor([2])))
    torch.testing.assert_close(terms["matched"], F.cross_entropy(identity.objects[0, [1, 3]], torch.tensor([2, 2])))
    torch.testing.assert_close(terms["boxes"], F.cross_entropy(identity.boxes, torch.tensor([1, 4, 5])))
    targets[0]["class_labels"] = torch.tensor([1, 99])
    with pytest.raises(ValueError, match="identity_classes"):
        criterion.identity_losses(out, targets, [(torch.tensor([1]), torch.tensor([0]))] * 2)


def test_identity_matched_weight_scales_or_drops_the_decoder_term_alone():
    torch.manual_seed(1)
    identity = IdentityOutput(query=torch.randn(1, 6), objects=torch.randn(1, 4, 6), boxes=torch.randn(2, 6))
    out = DetectorOutput(torch.zeros(1, 4), torch.rand(1, 4, 4) * 0.2 + 0.4, identity=identity)
    targets = [{"boxes": torch.zeros(0, 4), "class_labels": torch.tensor([3, 4]), "query_label": torch.tensor(3)}]
    indices = [(torch.tensor([0, 2]), torch.tensor([0, 1]))]
    query = F.cross_entropy(identity.query, torch.tensor([3]))
    matched = F.cross_entropy(identity.objects[0, [0, 2]], torch.tensor([3, 3]))
    boxes = F.cross_entropy(identity.boxes, torch.tensor([3, 4]))
    plain = ("model.identity_classes=0", "loss.query_metric_weight=0")
    for factor in (1.0, 0.5):
        _, criterion, _ = tiny_detector(*plain, f"loss.identity_matched_weight={factor}")
        terms = criterion.identity_losses(out, targets, indices)
        torch.testing.assert_close(terms["matched"], factor * matched)
        torch.testing.assert_close(terms["query"], query)
        torch.testing.assert_close(terms["boxes"], boxes)
    _, criterion, _ = tiny_detector(*plain, "loss.identity_matched_weight=0")
    terms = criterion.identity_losses(out, targets, indices)
    assert sorted(terms) == ["boxes", "query"]


def test_query_metric_is_a_supervised_infonce_over_the_batch_boxes():
    """Two queries (classes 2 and 7) against three boxes (classes 2, 5, 2), unit features chosen so that every
    cosine is known: query 0 = e0, query 1 = e1; boxes e0, e1, (e0 + e1) / sqrt 2. Temperature 0.5."""
    _, criterion, _ = tiny_detector("model.identity_classes=8", "loss.query_metric_weight=3.0")
    criterion.query_metric_temperature = 0.5
    e = torch.eye(4)
    identity = IdentityOutput(
        query=torch.zeros(2, 8),
        objects=torch.zeros(2, 4, 8),
        boxes=torch.zeros(3, 8),
        query_features=torch.stack([e[0] * 3, e[1]]),  # scale does not matter: cosines
        box_features=torch.stack([e[0], e[1], (e[0] + e[1]) * 5]),
    )
    out = DetectorOutput(torch.zeros(2, 4), torch.rand(2, 4, 4) * 0.2 + 0.4, identity=identity)
    targets = [
        {"boxes": torch.zeros(0, 4), "class_labels": torch.tensor([2, 5]), "query_label": torch.tensor(2)},
        {"boxes": torch.zeros(0, 4), "class_labels": torch.tensor([2]), "query_label": torch.tensor(7)},
    ]
    # query 0: cosines (1, 0, 1/sqrt 2) / 0.5; positives boxes 0 and 2. Query 1 (class 7): no box, no term.
    r = 1 / math.sqrt(2)
    log_z = math.log(math.exp(2) + math.exp(0) + math.exp(2 * r))
    expected = -((2 - log_z) + (2 * r - log_z)) / 2
    assert criterion.query_metric_loss(out, targets).item() == pytest.approx(expected, rel=1e-5)
    targets[0]["boxes"] = torch.zeros(0, 4)
    losses = criterion(out, targets)
    assert losses["query_metric"].item() == pytest.approx(3.0 * expected, rel=1e-5)  # weighted
    targets[0]["query_label"] = torch.tensor(-1)  # stage 1: no class, nothing to learn
    assert criterion.query_metric_loss(out, targets).item() == 0.0


def test_identity_head_pools_the_box_feature():
    head = IdentityHead(dim=64, num_classes=9, stride=16)
    torch.manual_seed(0)
    c = torch.rand(64) + 0.5  # positive: bilinear samples mixing in the zero outside stay below it
    features = torch.zeros(1, 64, 8, 8)
    features[0, :, 2:5, 1:4] = c[:, None, None]  # cells y 2..4, x 1..3 = pixels y 32..80, x 16..64
    box = torch.tensor([[40.0 / 128, 56.0 / 128, 48.0 / 128, 48.0 / 128]])  # those 3x3 cells, cxcywh
    out = head(torch.zeros(1, 64), torch.zeros(1, 10, 64), features, [box], torch.tensor([[128, 128]]))
    torch.testing.assert_close(out.boxes, head.classifier(c[None]))
    torch.testing.assert_close(out.box_features, c[None])  # what the query metric loss compares
    torch.testing.assert_close(out.query_features, torch.zeros(1, 64))


def test_proposals_learn_the_decoders_targets_or_every_box():
    """Proposal 0 is the query-class box A exactly, proposal 1 is the other annotated box B shifted by 0.1 in cx.
    ``decoder`` (the official code): the proposals' one target is A, matched exactly: L1 0. ``all``: A and B
    are both targets, matched to proposals 0 and 1: L1 = (0 + 0.1) / 2 boxes, times the L1 weight 5."""
    a, b = torch.tensor([0.3, 0.3, 0.2, 0.2]), torch.tensor([0.7, 0.6, 0.2, 0.3])
    proposals = (
        torch.tensor([[5.0, 5.0, -5.0]]),
        torch.stack([a, b + torch.tensor([0.1, 0, 0, 0]), a * 0 + 0.9])[None],
    )
    out = DetectorOutput(torch.zeros(1, 2), torch.stack([a, b])[None], proposals=proposals)
    targets = [{"boxes": a[None], "all_boxes": torch.stack([a, b])}]
    for mode, l1 in (("decoder", 0.0), ("all", 5 * 0.1 / 2)):
        _, criterion, _ = tiny_detector(f"loss.proposal_targets={mode}")
        assert criterion(out, targets)["l1_proposals"].item() == pytest.approx(l1, abs=1e-6), mode


def test_official_stage1_detects_the_crop_and_every_box_and_groups_features_by_class():
    """A hand-made stage-1 episode: the crop C ("the query", channel 0) and two annotated boxes A, B of class 5
    and one D of class 7 ("an object", channel 1). Queries 0-3 sit exactly on C, A, B, D with their own channel
    high: matched one to one, L1 and GIoU 0. The contrastive term, by hand with temperature 0.5 (cosines 1
    within a class, 0 across, and the crop's feature equal to D's): class 5 has 4 pairs, each ``log(1 + 2
    e^-2)`` (negatives D and C at cosine 0); class 7 one pair, ``log(2 + 2 e^-2)`` (C is a negative at cosine
    1); the loss is the mean over the two classes."""
    from detector.models.heads import StageOneOutput

    _, criterion, _ = tiny_detector("loss.contrastive_weight=1.0", "loss.contrastive_temperature=0.5")
    c, a, b, d = (
        torch.tensor(v)
        for v in ([0.2, 0.2, 0.2, 0.2], [0.6, 0.3, 0.2, 0.2], [0.5, 0.7, 0.3, 0.2], [0.85, 0.8, 0.2, 0.3])
    )
    boxes = torch.stack([c, a, b, d, torch.tensor([0.5, 0.5, 0.05, 0.05])])[None]
    match = torch.tensor([[9.0, -9.0, -9.0, -9.0, -9.0]])
    objects = torch.tensor([[-9.0, 9.0, 9.0, 9.0, -9.0]])
    features = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.3, 0.3]]])
    out = DetectorOutput(match, boxes, stage_one=StageOneOutput(objects[None], features[None]))
    targets = [
        {
            "boxes": c[None],
            "object_boxes": torch.stack([a, b, d]),
            "object_labels": torch.tensor([5, 5, 7]),
            "all_boxes": torch.stack([c, a, b, d]),
        }
    ]
    losses = criterion(out, targets)
    assert losses["l1"].item() == pytest.approx(0.0, abs=1e-6) and losses["giou"].item() == pytest.approx(0.0, abs=1e-5)
    assert losses["class"].item() < 0.01
    expected = (math.log(1 + 2 * math.exp(-2)) + math.log(2 + 2 * math.exp(-2))) / 2
    assert losses["contrastive"].item() == pytest.approx(expected, rel=1e-5)
    swapped = DetectorOutput(match, boxes, stage_one=StageOneOutput((-objects)[None], features[None]))
    assert criterion(swapped, targets)["class"].item() > 1.0  # the boxes found, but called the wrong thing


def test_similarity_loss_is_the_focal_loss_of_the_match_term_alone_on_the_class_matches():
    """Query 1 of 3 sits on the one box (the match is certain); the term alone, every layer, weighted
    ``class_weight * similarity_weight``; with weight 0 there is no such term."""
    _, criterion, _ = tiny_detector(
        "model.identity_classes=0", "loss.query_metric_weight=0", "loss.similarity_weight=0.5"
    )
    gt = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    boxes = torch.tensor([[[0.2, 0.2, 0.1, 0.1], [0.5, 0.5, 0.2, 0.2], [0.8, 0.8, 0.1, 0.1]]])
    logits = torch.tensor([[-3.0, 4.0, -2.0]])
    similarity = torch.tensor([[[2.0, -3.0, 2.0]], [[-2.0, 3.0, -2.0]]])  # (L=2, B=1, N=3): wrong, then right
    targets = [{"boxes": gt, "all_boxes": gt, "query_label": torch.tensor(1)}]
    out = DetectorOutput(logits, boxes, aux=[(logits, boxes)], similarity=similarity)
    losses = criterion(out, targets)
    matched = torch.tensor([[0.0, 1.0, 0.0]])
    for key, layer in (("similarity", 1), ("similarity_aux0", 0)):
        focal = sigmoid_focal_loss(similarity[layer], matched, 0.25, 2.0, reduction="sum")
        torch.testing.assert_close(losses[key], 2.0 * 0.5 * focal)
    assert losses["similarity"] < 0.01 < 1.0 < losses["similarity_aux0"]

    _, off, _ = tiny_detector("model.identity_classes=0", "loss.query_metric_weight=0")
    assert not any(k.startswith("similarity") for k in off(out, targets))
