"""``train.compile``: the fixed training grid, and compiled training against eager training."""

import contextlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from small_model import SHORT_RUN, SMALL

from detector.config import load_config
from detector.data.dataset import Sample, collate
from detector.engine import compiling
from detector.engine.checkpoint import load_checkpoint
from detector.engine.compiling import training_grid
from detector.engine.trainer import train
from detector.models import build

ROOT = Path(__file__).resolve().parents[2]
TINY = [*SHORT_RUN, "train.pretrain_steps=0", "train.checkpoint_every=2"]


def _sample(height, width, query=32):
    return Sample(torch.ones(3, height, width), torch.ones(3, query, query), {}, {})


def test_collate_pads_every_batch_to_at_least_the_fixed_grid():
    samples = [_sample(50, 70), _sample(60, 40)]
    plain = collate(samples, 32)
    assert plain.target_images.shape == (2, 3, 64, 96)  # 60 -> 64, 70 -> 96
    fixed = collate(samples, 32, min_grid=(128, 128))
    assert fixed.target_images.shape == fixed.query_images.shape == (2, 3, 128, 128)
    # the valid pixels are where the images are, everything else is padding, whatever the grid
    assert (~fixed.target_masks).sum(dim=(1, 2)).tolist() == [50 * 70, 60 * 40]
    assert (~fixed.query_masks).sum(dim=(1, 2)).tolist() == [32 * 32, 32 * 32]
    assert torch.equal(fixed.target_images[:, :, :64, :96], plain.target_images)
    assert fixed.target_images[:, :, 64:].abs().sum() == 0 and fixed.target_images[:, :, :, 96:].abs().sum() == 0
    # a grid smaller than the batch's images does not crop them
    assert collate(samples, 32, min_grid=(32, 32)).target_images.shape == (2, 3, 64, 96)


def test_training_grid_is_the_longest_training_side_rounded_up_to_the_divisor():
    config = load_config(ROOT / "configs/tiny_synthetic.yaml")
    assert (config.data.target_max_size, config.data.size_divisor) == (288, 32)
    assert training_grid(config) == (288, 288)
    config = load_config(ROOT / "configs/tiny_synthetic.yaml", ["data.target_max_size=300"])
    assert training_grid(config) == (320, 320)


@pytest.fixture(scope="module")
def data_root(synthetic_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    (root / "synthetic").symlink_to(synthetic_root)
    return root


def _config(data_root, out, *extra):
    overrides = [f"data.root={data_root}", f"train.output_dir={out}", *TINY, *extra]
    return load_config(ROOT / "configs/tiny_synthetic.yaml", overrides)


def _losses(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


@pytest.fixture(scope="module")
def compiler():
    problem = compiling.compiler_problem()
    if problem is not None:  # training would warn and run eagerly (tested below); .ci/run installs g++
        pytest.skip(f"torch.compile does not work on this machine: {problem}")


def test_compiled_training_matches_eager_is_deterministic_and_resumes(compiler, data_root, tmp_path):
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = train(_config(data_root, tmp_path / "a", "train.max_steps=4", "train.compile=true"), progress=False)
    # compiled graphs: the compiler probe, the backbone on the training grid and on the query patches, and one
    # decoder layer for all layers; the evaluation at the end ran eagerly (its test images and eval mode would
    # have compiled more)
    assert compiled["unseen_ap50"] is not None
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 4
    eager = train(_config(data_root, tmp_path / "e", "train.max_steps=1", "train.eval_every=-1"), progress=False)
    # the first step's loss (same weights, same batch) agrees to rounding; the checkpoint is the eager model's
    assert _losses(tmp_path / "a")[0] == pytest.approx(_losses(tmp_path / "e")[0], rel=1e-2)
    state, eager_state = load_checkpoint(tmp_path / "a/last.pth")["model"], load_checkpoint(tmp_path / "e/last.pth")
    assert list(state) == list(eager_state["model"])
    assert eager["steps"] == 1

    again = train(
        _config(data_root, tmp_path / "b", "train.max_steps=4", "train.compile=true", "train.eval_every=-1"),
        progress=False,
    )
    assert again["parameter_fingerprint"] == compiled["parameter_fingerprint"]

    # resumed from the straight run's step-2 checkpoint, steps 3 and 4 reach the same weights exactly
    resumed = tmp_path / "r"
    resumed.mkdir()
    shutil.copy(tmp_path / "a/checkpoint_0000002.pth", resumed / "checkpoint_0000002.pth")
    train(_config(data_root, resumed, "train.max_steps=4", "train.compile=true", "train.eval_every=-1"), "auto", False)
    final = load_checkpoint(resumed / "last.pth")
    assert final["position"]["step"] == 4
    for key, value in state.items():
        torch.testing.assert_close(final["model"][key], value, rtol=0, atol=0, msg=key)


def test_without_a_working_compiler_training_warns_and_stays_eager(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

    monkeypatch.setattr(compiling.torch, "compile", broken)
    config = load_config(ROOT / "configs/tiny_synthetic.yaml", [*SMALL, "train.compile=true"])
    model = build(config)[0]
    with caplog.at_level("WARNING"):
        assert compiling.compile_training_parts(model) == []
        assert compiling.compile_for_training(model, config) == (0, 0)  # batches then keep their own grid
    assert "No working C++ compiler found" in caplog.text and "train.compile=false" in caplog.text
    assert model.backbone._compiled_call_impl is None and model.decoder.layers[0]._compiled_call_impl is None


def test_a_torch_without_set_stance_trains_eagerly_with_a_warning(monkeypatch, caplog):
    monkeypatch.delattr(compiling.torch.compiler, "set_stance")
    monkeypatch.setattr(compiling.torch, "__version__", "2.5.1")
    model = build(load_config(ROOT / "configs/tiny_synthetic.yaml", SMALL))[0]
    with caplog.at_level("WARNING"):
        assert compiling.compile_training_parts(model) == []
    assert "torch 2.6 or newer, this is 2.5.1" in caplog.text
    assert model.backbone._compiled_call_impl is None
    assert isinstance(compiling.eager(), contextlib.nullcontext)  # nothing is compiled: nothing to keep eager
