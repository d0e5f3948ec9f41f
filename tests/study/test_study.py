import json

import pytest
import torch

from detector.cli.attention_study import main as study_main
from detector.study.models import SequenceModel
from detector.study.tasks import PAD, make_task, retrieval, sorting
from detector.study.theory import misalignment_noise, value_noise_error


def test_sorting_targets_by_hand():
    data = sorting(50, orderings=5, seed=0)
    for x, y, t in zip(data.x, data.y, data.target):
        for i in range(10):
            assert x[t[i]] == y[i]  # the target is y_i's index in the ordering
    assert len({tuple(x.tolist()) for x in data.x}) <= 5
    assert len({tuple(x.tolist()) for x in sorting(200, orderings=2, seed=1).x}) == 2


def test_retrieval_targets_by_hand():
    data = retrieval(50, seed=0)
    for x, y, s in zip(data.x, data.y, data.target):
        assert torch.equal(y[s : s + 3], x[:3]) and (x[3:] == PAD).all()


def test_tasks_are_seeded():
    assert torch.equal(make_task("retrieval", 20, 3).y, make_task("retrieval", 20, 3).y)
    assert not torch.equal(make_task("sorting-5", 20, 3).y, make_task("sorting-5", 20, 4).y)


@pytest.mark.parametrize("block", ["indirect", "cross", "misaligned"])
def test_models_differ_only_in_the_block(block):
    torch.manual_seed(0)
    model = SequenceModel(block, per_token=True, dim=32, heads=4, layers=2)
    data = sorting(4, 5, 0)
    assert model(data.x, data.y).shape == (4, 10, 10)
    reference = SequenceModel("misaligned", per_token=True, dim=32, heads=4, layers=2)
    shared = {k for k in model.state_dict() if ".block." not in k and not k.startswith("refine")}
    assert shared == {k for k in reference.state_dict() if ".block." not in k}


@pytest.mark.parametrize("d,sharpness", [(16, 0.0), (64, 1.0), (256, 4.0)])
def test_value_noise_error_matches_formula(d, sharpness):
    row = value_noise_error(d, n=32, sharpness=sharpness, sigma=1.5, trials=4000, seed=0)
    # 4000 trials: the relative standard error of the mean is about sqrt(2 / (4000 d)) < 2.3%
    assert row["measured_error"] == pytest.approx(row["predicted_error"], rel=0.05)
    assert row["measured_snr"] == pytest.approx(1 / 1.5**2, rel=0.08)


def test_misalignment_gamma_matches_formula():
    for d in (16, 128):
        row = misalignment_noise(d, n=32, shift=0.5, sharpness=1.0, trials=2000, seed=1)
        assert row["measured_gamma"] == pytest.approx(0.25 * d + 2 * d, rel=0.03)
        assert row["noise_per_coordinate"] > 1.0  # above the critical level sigma* = 1


def test_quick_study_writes_table_and_figures(tmp_path):
    study_main(["--quick", "--out", str(tmp_path), "--tasks", "sorting-5,retrieval"])
    report = json.loads((tmp_path / "results.json").read_text())
    assert set(report["summary"]) == {"sorting-5", "retrieval"}
    assert set(report["summary"]["retrieval"]) == {"indirect", "cross", "misaligned"}
    for name in ("results.md", "curves.png", "bias.png", "theory.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "| Indirect attention |" in (tmp_path / "results.md").read_text()
