"""The top model: shapes, gradients, padding invariance, k-shot, fusion blocks, query content, heads."""

import pytest
import torch
from model_helpers import detector_batch, tiny_detector
from small_model import OFFICIAL_MODEL

from detector.attention import DoubleCrossAttention, IndirectAttention, MisalignedAttention


@pytest.mark.parametrize("one2many", [0, 8])
def test_forward_backward_with_padding(one2many):
    model, criterion, _ = tiny_detector(f"model.num_queries_one2many={one2many}")
    inputs, targets = detector_batch()
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
    model, _, _ = tiny_detector()
    model.eval()
    inputs, _ = detector_batch()
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
    model, criterion, _ = tiny_detector(f"model.fusion={fusion}")
    assert all(isinstance(layer.fusion, cls) for layer in model.decoder.layers)
    inputs, targets = detector_batch()
    criterion(model(*inputs), targets)["loss"].backward()


def test_k_shot_with_copies_equals_one_shot():
    model, _, _ = tiny_detector()
    model.eval()
    inputs, _ = detector_batch()
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


def test_unknown_fusion_names_choices():
    with pytest.raises(ValueError, match="model.fusion must be one of indirect, cross, misaligned"):
        tiny_detector("model.fusion=other")


def test_query_content_is_embedding_plus_target_feature_at_proposal_cell():
    model, _, _ = tiny_detector()
    model.eval()
    inputs, _ = detector_batch()
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
    plain, _, _ = tiny_detector("model.content_from_target=false")  # the official code: the embedding alone
    assert plain.content_proj is None
    plain.eval()
    plain.decoder.register_forward_pre_hook(lambda module, args: seen.update(queries=args[0]))
    plain(*inputs)
    torch.testing.assert_close(seen["queries"], plain.query_content.weight[None, :10].expand(2, -1, -1))


def test_training_only_heads_run_in_training_and_are_off_in_inference():
    model, criterion, _ = tiny_detector(
        "model.identity_classes=8", "loss.contrastive_dim=16", "train.stage1_recipe=crop_only"
    )
    inputs, targets = detector_batch()
    model.train()
    out = model(*inputs, class_boxes=[t["class_boxes"] for t in targets])
    assert out.identity.query.shape == (2, 8) and out.identity.objects.shape == (2, 10, 8)
    assert out.identity.boxes.shape == (4, 8)  # 1 + 3 labelled boxes, image 0's first
    assert out.contrastive.objects.shape == (2, 10, 16) and out.contrastive.query.shape == (2, 16)
    losses = criterion(out, targets)
    assert {"identity_query", "identity_matched", "identity_boxes", "contrastive"} <= set(losses)
    model.eval()
    inference = model(*inputs)
    assert inference.identity is None and inference.contrastive is None
    official, criterion, _ = tiny_detector("loss.contrastive_dim=16")  # the official stage-1 heads: 2 layers
    official.train()
    out = official(*inputs)
    assert out.stage_one.objects.shape == (2, 2, 10) and out.stage_one.features.shape == (2, 2, 10, 16)
    for t in targets:
        t["object_boxes"], t["object_labels"] = t["boxes"][:0], torch.zeros(0, dtype=torch.int64)
    assert {"contrastive", "contrastive_aux0"} <= set(criterion(out, targets))
    official.eval()
    assert official(*inputs).stage_one is None


def test_fast_attention_paths_give_the_reference_detector_outputs():
    # the model drops an all-False padding mask and folds the box bias; the reference blocks do neither
    model, _, _ = tiny_detector()
    model.eval()
    inputs, _ = detector_batch()
    target, target_masks, query_images, query_masks, sizes = inputs
    unpadded = (target[:1], target_masks[:1], query_images[:1], query_masks[:1], sizes[:1])
    with torch.no_grad():
        fast = [model(*inputs), model(*unpadded)]
        for layer in model.decoder.layers:
            layer.fusion.reference = True
        reference = [model(*inputs), model(*unpadded)]
    for a, b in zip(fast, reference):
        torch.testing.assert_close(a.logits, b.logits, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(a.boxes, b.boxes, rtol=1e-4, atol=1e-5)


def _pair(model, target, target_mask, query, query_mask, size):
    """The whole network on one (query, target) pair, each on its own tight grid."""
    return model(target[None], target_mask[None], query[None], query_mask[None], size[None])


def test_encode_once_and_decode_equals_the_whole_network_per_pair():
    """One query against three encoded targets, and three queries against one target, give what the forward
    gives pair by pair; a target encoded in a batch padded to a larger grid gives what it gives alone."""
    model, _, _ = tiny_detector()
    model.eval()
    (targets, target_masks, queries, query_masks, sizes), _ = detector_batch(b=2, size=128, query=48)
    torch.manual_seed(3)
    targets = torch.cat([targets, torch.randn(1, 3, 128, 128)])
    target_masks = torch.cat([target_masks, torch.zeros(1, 128, 128, dtype=torch.bool)])
    sizes = torch.cat([sizes, torch.tensor([[128, 128]])])
    queries = torch.cat([queries, queries.flip(-1).roll(5, -2)])[:3]
    query_masks = torch.cat([query_masks, query_masks])[:3]
    with torch.no_grad():
        encoded_targets = model.encode_target(targets, target_masks, sizes)
        encoded_queries = model.encode_query(queries[:, :, :48, :48], query_masks[:, :48, :48])  # own grid
        one_query = model.decode(encoded_queries.rows_of(0), encoded_targets)
        one_target = model.decode(encoded_queries, encoded_targets.rows([2]))
        for i in range(3):
            expected = _pair(model, targets[i], target_masks[i], queries[0], query_masks[0], sizes[i])
            torch.testing.assert_close(one_query.logits[i], expected.logits[0], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(one_query.boxes[i], expected.boxes[0], atol=1e-5, rtol=1e-4)
            expected = _pair(model, targets[2], target_masks[2], queries[i], query_masks[i], sizes[2])
            torch.testing.assert_close(one_target.logits[i], expected.logits[0], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(one_target.boxes[i], expected.boxes[0], atol=1e-5, rtol=1e-4)
        # the 96-px-wide second target encoded alone, on its own 128x96 grid
        alone = model.encode_target(targets[1:2, :, :, :96], target_masks[1:2, :, :96], sizes[1:2])
        narrow = model.decode(encoded_queries.rows_of(0), alone)
        torch.testing.assert_close(narrow.logits[0], one_query.logits[1], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(narrow.boxes[0], one_query.boxes[1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("disjoint", [True, False])
def test_one_to_many_queries_take_the_proposals_after_the_one_to_one_ones(disjoint):
    model, _, _ = tiny_detector("model.num_queries=3", "model.num_queries_one2many=4")
    model.one2many_disjoint = disjoint
    logits = torch.tensor([[0.1, 0.9, 0.5, 0.8, 0.2, 0.7, 0.3, 0.6, 0.0, 0.4]])  # ranking: 1 3 5 7 2 9 6 4 0 8
    boxes = torch.rand(1, 10, 4)
    reference, cells = model.select_queries(logits, boxes, 4)
    if disjoint:  # one top-7 ranking split in two: no proposal twice
        assert cells.tolist() == [[1, 3, 5, 7, 2, 9, 6]]
    else:  # the top 4 again: the one-to-many set repeats the one-to-one proposals
        assert cells.tolist() == [[1, 3, 5, 1, 3, 5, 7]]
    torch.testing.assert_close(reference, boxes[0, cells[0]][None])
    assert model.select_queries(logits, boxes, 0)[1].tolist() == [[1, 3, 5]]  # inference: one-to-one only


def test_with_backbone_features_on_padding_a_query_is_encoded_on_each_target_grid():
    """``model.padding_features: backbone`` (the official code): padding cells keep the backbone's features, the
    query is encoded over its whole canvas, and encode + decode still equals the forward; an encoding is refused
    on another grid rather than silently padded with zeros."""
    model, _, _ = tiny_detector("model.padding_features=backbone")
    model.eval()
    (targets, target_masks, queries, query_masks, sizes), _ = detector_batch(b=2, size=128, query=48)
    with torch.no_grad():
        target = model.encode_target(targets, target_masks, sizes)
        padding = target.mask[1]  # the second target is 96 px wide: its right cells are padding
        assert padding.any() and target.features[1][:, padding].abs().sum() > 0
        query = model.encode_query(queries, query_masks)
        assert query.canvas and query.features.shape[-2:] == (8, 8)
        assert query.features[0][:, query.mask[0]].abs().sum() > 0
        whole = model(targets, target_masks, queries, query_masks, sizes)
        split = model.decode(query, target)
        torch.testing.assert_close(split.logits, whole.logits)
        torch.testing.assert_close(split.boxes, whole.boxes)
        own = model.encode_query(queries[:, :, :64, :64], query_masks[:, :64, :64])
        with pytest.raises(ValueError, match="encoded on a 4x4-cell canvas.*encode it on the target's 8x8 grid"):
            model.decode(own, target)
    zero, _, _ = tiny_detector()
    with torch.no_grad():
        assert zero.encode_target(targets, target_masks, sizes).features[1][:, padding].abs().sum() == 0


@pytest.mark.parametrize("content", ["false", "true"])
def test_the_official_options_together_train_and_split_into_encode_and_decode(content):
    """Every fidelity option at its official value (and the paper's text for the query content): a training
    step reaches every parameter, and encode + decode equals the forward."""
    model, criterion, _ = tiny_detector(
        *OFFICIAL_MODEL, "model.num_queries_one2many=8", f"model.content_from_target={content}"
    )
    inputs, targets = detector_batch()
    for t in targets:
        t["all_boxes"] = t["boxes"]
    model.train()
    out = model(*inputs)
    assert out.proposals[0].shape[1] == 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2  # four levels of a 128 px grid
    criterion(out, targets)["loss"].backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        whole = model(*inputs)
        target, query = model.encode_target(*inputs[:2], inputs[4]), model.encode_query(*inputs[2:4])
        split = model.decode(query, target)
    torch.testing.assert_close(split.logits, whole.logits)
    torch.testing.assert_close(split.boxes, whole.boxes)


def test_several_queries_per_target_equal_the_target_repeated_per_query_outputs_and_gradients():
    """Encoding each target once for its queries (``target_index``) is the same network as giving each query its
    own copy of the target: the same outputs and losses, and the same gradients (the copies' gradients sum)."""
    model, criterion, _ = tiny_detector()
    model.train()
    (targets, target_masks, queries, query_masks, sizes), labels = detector_batch(b=2, size=128, query=48)
    index = torch.tensor([0, 1, 1, 0])
    torch.manual_seed(5)
    queries = torch.cat([queries, queries.flip(-1)])  # four queries, two per target
    query_masks = torch.cat([query_masks, query_masks])
    episodes = [labels[i] for i in index.tolist()]
    results = []
    for shared in (True, False):
        model.zero_grad()
        if shared:
            inputs = (targets, target_masks, queries, query_masks, sizes)
            outputs = model(*inputs, class_boxes=[t["class_boxes"] for t in episodes], target_index=index)
        else:
            inputs = (targets[index], target_masks[index], queries, query_masks, sizes[index])
            outputs = model(*inputs, class_boxes=[t["class_boxes"] for t in episodes])
        loss = criterion(outputs, episodes)["loss"]
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((outputs, loss.detach(), grads))
    (shared, shared_loss, shared_grads), (copies, copies_loss, copies_grads) = results
    assert shared.logits.shape == (4, model.num_queries)
    torch.testing.assert_close(shared.logits, copies.logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(shared.boxes, copies.boxes, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(shared_loss, copies_loss, atol=1e-5, rtol=1e-4)
    assert shared_grads.keys() == copies_grads.keys()
    assert any(name.startswith("backbone.") for name in shared_grads)
    for name in shared_grads:
        torch.testing.assert_close(shared_grads[name], copies_grads[name], atol=1e-5, rtol=1e-3, msg=name)
