"""The optional heads: the similarity logit by hand, and wired into the class logits."""

import torch
from model_helpers import detector_batch, tiny_detector

from detector.models.heads import SimilarityLogit


def test_similarity_logit_is_scaled_cosine_and_is_wired_into_the_class_logits():
    head = SimilarityLogit(dim=3, num_layers=2, init_scale=4.0)
    with torch.no_grad():
        for proj in (head.object_proj, head.query_proj):
            proj.weight.copy_(torch.eye(3))
            proj.bias.zero_()
    hidden = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])[None, None].repeat(2, 1, 1, 1)  # (L=2, B=1, N=2, 3)
    query = torch.tensor([[2.0, 0.0, 0.0]])
    # cos((1,0,0), (1,0,0)) = 1, cos((1,1,0), (1,0,0)) = 1/sqrt(2)
    torch.testing.assert_close(head(hidden, query), torch.tensor([[[4.0, 4.0 / 2**0.5]]] * 2))

    model, _, _ = tiny_detector("model.match_similarity=true")
    model.eval()
    inputs, _ = detector_batch()
    with_term = model(*inputs)
    head, scale = model.similarity, float(model.similarity.scale[-1].detach())
    with torch.no_grad():
        head.scale.zero_()
        without = model(*inputs).logits
        # the class logits differ by exactly the last layer's scaled cosine
        objects = torch.nn.functional.normalize(head.object_proj(with_term.hidden), dim=-1)
        query = torch.nn.functional.normalize(head.query_proj(with_term.query_embedding), dim=-1)
        expected = scale * (objects * query[:, None]).sum(-1)
    torch.testing.assert_close(with_term.logits - without, expected, rtol=1e-4, atol=1e-4)
    # the output names the term it added, for every layer (the loss on it alone)
    torch.testing.assert_close(with_term.similarity[-1], expected, rtol=1e-4, atol=1e-4)
    assert with_term.similarity.shape == (len(with_term.aux) + 1, *with_term.logits.shape)


def test_similarity_class_logit_is_the_match_term_plus_one_bias_per_layer():
    model, _, _ = tiny_detector("model.match_similarity=true", "model.class_logit=similarity")
    model.eval()
    inputs, _ = detector_batch()
    with torch.no_grad():
        for i, head in enumerate(model.class_heads):
            head.bias.fill_(-1.0 - i)
        out = model(*inputs)
    layers = [*[logits for logits, _ in out.aux], out.logits]
    for i, logits in enumerate(layers):  # no part of the score reads the object's features but the match term
        torch.testing.assert_close(logits - out.similarity[i], torch.full_like(logits, -1.0 - i))
    assert not any("weight" in name for name, _ in model.class_heads.named_parameters())
