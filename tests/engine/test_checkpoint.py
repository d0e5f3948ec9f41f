"""Checkpoints: the format-0 -> 1 key migration, on a checkpoint written by the code before the heads moved."""

from pathlib import Path

import pytest
import torch

from detector.config import Config, from_dict
from detector.engine.checkpoint import (
    FORMAT,
    CheckpointError,
    find_resumable,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
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


def test_files_that_are_not_checkpoints_are_named_for_what_they_are(tmp_path):
    png = tmp_path / "picture.pth"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    with pytest.raises(CheckpointError, match="the file is a PNG image") as error:
        load_checkpoint(png)
    assert "weights_only" not in str(error.value)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty \(0 bytes\)"):
        load_checkpoint(empty)


def test_a_failed_write_keeps_the_previous_checkpoint_and_says_the_disk_is_full(tmp_path, monkeypatch):
    path = save_checkpoint({"model": {"w": torch.ones(2)}, "config": {}}, tmp_path / "last.pth")
    before = path.read_bytes()

    def full_disk(obj, handle):
        handle.write(b"partial")
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file: file write failed"
        )

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match="no space left on the device"):
        save_checkpoint({"model": {}, "config": {}}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]  # no temporary file left behind


def test_resume_auto_finds_the_newest_checkpoint_that_loads(tmp_path):
    for step in (10, 20):
        save_checkpoint({"model": {"step": torch.tensor(step)}, "config": {}}, tmp_path / f"checkpoint_{step:07d}.pth")
    (tmp_path / "last.pth").write_bytes(b"PK\x03\x04 truncated")
    assert find_resumable(tmp_path) == tmp_path / "checkpoint_0000020.pth"
    (tmp_path / "checkpoint_0000020.pth").write_bytes(b"")
    assert find_resumable(tmp_path) == tmp_path / "checkpoint_0000010.pth"
    assert find_resumable(tmp_path / "nothing") is None


def test_two_runs_cannot_share_one_output_folder(tmp_path):
    from detector.engine.trainer import _lock

    first = _lock(tmp_path)
    with pytest.raises(CheckpointError, match="another training run is writing to"):
        _lock(tmp_path)
    first.close()
    _lock(tmp_path).close()  # free again once the first run ends


def test_a_checkpoint_from_before_the_fidelity_options_keeps_the_behaviour_it_was_trained_with():
    from detector.engine.checkpoint import migrate

    old = {"format": 1, "model": {}, "config": {"model": {"num_queries_one2many": 1500, "hidden_dim": 32}}}
    model = migrate(old)["config"]["model"]
    assert model["bias_inputs"] == "signed_log" and model["one2many_selection"] == "overlapping"
    assert model["look_forward_reach"] == "all"
    assert model["hidden_dim"] == 32 and "bias_inputs" not in old["config"]["model"]  # the input is not changed
    none = migrate({"format": 1, "model": {}, "config": {"model": {"num_queries_one2many": 0}}})["config"]["model"]
    assert none["one2many_selection"] == "disjoint"  # no one-to-many queries: the selections coincide
    new = {"format": 1, "model": {}, "config": {"model": {"bias_inputs": "linear", "one2many_selection": "disjoint"}}}
    assert migrate(new)["config"]["model"]["bias_inputs"] == "linear"  # a recent checkpoint is left as it is
    data = migrate({"format": 1, "model": {}, "config": {"model": {}, "data": {"query_size": 64}}})["config"]["data"]
    assert data == {
        "query_size": 64,
        "query_resize": "longer_side",
        "crop_style": "box_safe",
        "query_augment_style": "light",
    }
    square = {"format": 1, "model": {}, "config": {"data": {"query_resize": "square"}}}
    assert migrate(square)["config"]["data"]["query_resize"] == "square"
    swin = {"format": 1, "model": {}, "config": {"model": {"backbone": {"name": "swin_v2_s", "weights": None}}}}
    backbone = migrate(swin)["config"]["model"]["backbone"]
    assert backbone["upsample"] == "bilinear" and backbone["swin_window"] == 8 and backbone["name"] == "swin_v2_s"
    # a tiny-backbone checkpoint (the main job's) has no use for the Swin and upsampling options: it takes the
    # current defaults, so today's tiny config still matches it
    tiny = {"format": 1, "model": {}, "config": {"model": {"backbone": {"name": "tiny", "width": 24}}}}
    assert migrate(tiny)["config"]["model"]["backbone"]["upsample"] == "learned"
