"""Checkpoints: the format-0 -> 1 key migration, on a checkpoint written by the code before the heads moved."""

from pathlib import Path

import torch

from detector.config import Config, from_dict
from detector.engine.checkpoint import FORMAT, load_checkpoint, load_model
from detector.models import build

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_format0_checkpoint_loads_and_gives_the_outputs_it_gave_when_written():
    # checkpoint_v0.pth and its outputs were written at commit bab5f2f (identity head and contrastive
    # projections in the criterion, saved under train_step as criterion.*)
    raw = torch.load(FIXTURES / "checkpoint_v0.pth", weights_only=True)
    assert "format" not in raw and any(k.startswith("criterion.identity_head") for k in raw["train_step"])
    reference = torch.load(FIXTURES / "checkpoint_v0_outputs.pt", weights_only=True)
    target, target_mask, query, query_mask, sizes = reference["inputs"]
    inputs = (target.float(), target_mask, query.float(), query_mask, sizes)

    state = load_checkpoint(FIXTURES / "checkpoint_v0.pth")
    assert state["format"] == FORMAT and "train_step" not in state
    config = from_dict(Config, state["config"])
    model, _, _ = build(config, load_weights=False)  # with the contrastive head, as in training
    model.load_state_dict(state["model"])  # strict: every key accounted for
    model.eval()
    with torch.no_grad():
        out = model(*inputs)
        torch.testing.assert_close(out.logits, reference["logits"])
        torch.testing.assert_close(out.boxes, reference["boxes"])
        torch.testing.assert_close(model.identity_head.classifier(out.query_embedding), reference["identity_query"])
        torch.testing.assert_close(
            model.contrastive_head.query_proj(out.query_embedding), reference["contrastive_query"]
        )

    inference, _ = load_model(FIXTURES / "checkpoint_v0.pth")
    assert not inference.training
    with torch.no_grad():
        torch.testing.assert_close(inference(*inputs).logits, reference["logits"])
