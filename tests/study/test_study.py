import json

import pytest
import torch

from detector.attention import CrossAttention, IndirectAttention, MisalignedAttention, SequenceOffsetBias
from detector.cli.attention_study import main as study_main
from detector.study.models import SequenceModel
from detector.study.tasks import PAD, TaskData, blind_floor, make_task, retrieval, sorted_positions, sorting
from detector.study.theory import misalignment_noise, value_noise_error


def test_sorted_positions_by_hand():
    # ranks 2 0 2 1: the 0 goes first, then the 1, then the two 2s in their order in the sequence
    assert sorted_positions(torch.tensor([[2, 0, 2, 1]])).tolist() == [[2, 0, 3, 1]]
    # ordering x = 6 8 1 9 4 2 3 7 0 5 and y = 3 9 7 3 7 3 1 6 6 9, sorted by x: 6 6 1 9 9 3 3 3 7 7
    x = torch.tensor([6, 8, 1, 9, 4, 2, 3, 7, 0, 5])
    y = torch.tensor([3, 9, 7, 3, 7, 3, 1, 6, 6, 9])
    ranks = torch.argsort(x)[y][None]
    assert sorted_positions(ranks).tolist() == [[5, 3, 8, 6, 9, 7, 2, 0, 1, 4]]


def test_sorting_targets_against_a_python_sort():
    data = sorting(50, orderings=5, seed=0)
    for x, y, t in zip(data.x.tolist(), data.y.tolist(), data.target.tolist()):
        order = sorted(range(10), key=lambda i: (x.index(y[i]), i))  # stable sort of y by x's order
        assert [order.index(i) for i in range(10)] == t
        assert [y[i] for i in order] == sorted(y, key=x.index)
    assert len({tuple(x.tolist()) for x in data.x}) <= 5
    assert len({tuple(x.tolist()) for x in sorting(200, orderings=2, seed=1).x}) == 2


def test_blind_floor_by_hand():
    # two orderings; y = 0 1 0: under (0 1 2 ...) the targets are 0 2 1, under (1 0 2 ...) they are 1 0 2
    pool = torch.stack([torch.arange(10), torch.tensor([1, 0, *range(2, 10)])])
    y = torch.tensor([[0, 1, 0, 2, 3, 4, 5, 6, 7, 8]])
    data = TaskData("sorting", pool[:1], y, sorted_positions(torch.argsort(pool[0])[y]), True, pool)
    # tokens 0-2 disagree between the orderings (best guess right half the time), the other 7 agree
    assert blind_floor(data) == pytest.approx((3 * 0.5 + 7 * 1.0) / 10)
    # retrieval: y = 0 1 0 1 0 1 2 3 4 5 has the windows 010 101 010 101 012 123 234 345: four occur once
    y = torch.tensor([[0, 1, 0, 1, 0, 1, 2, 3, 4, 5]])
    x = torch.tensor([[2, 3, 4, *[PAD] * 7]])
    assert blind_floor(TaskData("retrieval", x, y, torch.tensor([6]), False)) == pytest.approx(1 / 4)


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


def test_key_position_code_goes_to_the_keys_only():
    torch.manual_seed(0)
    q, c, v, p = (torch.randn(2, 6, 16) for _ in range(4))
    relation = {"query_positions": torch.zeros(2, 6), "num_keys": 6}
    ia = IndirectAttention(16, 4, SequenceOffsetBias(4, 8))
    assert torch.allclose(ia(q, c, v, relation=relation, key_pos=p), ia(q, c + p, v, relation=relation))
    cross = CrossAttention(16, 4)
    misaligned = MisalignedAttention(16, 4)
    misaligned.load_state_dict(cross.state_dict())
    # cross-attention's values stay the bare conditioning: keys from c + p, values from c
    assert torch.allclose(cross(q, c, key_pos=p), misaligned(q, c + p, c), atol=1e-6)
    assert not torch.allclose(cross(q, c, key_pos=p), cross(q, c + p), atol=1e-3)


@pytest.mark.parametrize("value_positions", [False, True])
def test_values_carry_no_position_code_unless_asked(value_positions):
    torch.manual_seed(0)
    model = SequenceModel("cross", per_token=True, dim=32, heads=4, layers=1, value_positions=value_positions)
    seen = []
    model.layers[0].block.v_proj.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0]))
    x = torch.tensor([[4, 1, 4, 2, 3, 5, 6, 7, 8, 9]])  # symbol 4 at positions 0 and 2
    model(x, sorting(1, 5, 0).y)
    same = torch.allclose(seen[0][0, 0], seen[0][0, 2])
    assert same != value_positions


def test_zero_value_control_cannot_see_the_conditioning_sequence():
    torch.manual_seed(0)
    model = SequenceModel("indirect", per_token=True, dim=32, heads=4, layers=2, zero_values=True).eval()
    data = sorting(8, 5, 0)
    other = torch.stack([torch.randperm(10) for _ in range(8)])
    # nothing is read through the block, so the answer cannot depend on x: its expected accuracy is at most the
    # blind floor (the best any x-blind predictor can do)
    assert torch.equal(model(data.x, data.y), model(other, data.y))
    assert not torch.equal(
        SequenceModel("indirect", True, 32, 4, 2)(data.x, data.y),
        SequenceModel("indirect", True, 32, 4, 2)(other, data.y),
    )


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
    assert set(report["summary"]["retrieval"]) == {"indirect", "cross", "misaligned", "zero-values"}
    assert report["floors"]["retrieval"] == pytest.approx(
        sum(blind_floor(retrieval(50, seed=20_000 + s)) for s in range(2)) / 2
    )
    for name in ("results.md", "curves.png", "bias.png", "theory.png"):
        assert (tmp_path / name).stat().st_size > 0
    text = (tmp_path / "results.md").read_text()
    assert "| Indirect attention |" in text and "| control: all values zero |" in text
    assert f"| blind floor (best guess without x) | {100 * report['floors']['sorting-5']:.1f} |" in text
    shift = next(r["reference_shift"] for r in report["runs"] if r["block"] == "indirect" and r["seed"] == 0)
    assert shift[0] == 0.0 and len(shift) == 2  # the first layer's references are where they start


def test_trace_gives_the_bias_each_layer_used_and_its_references():
    torch.manual_seed(0)
    model = SequenceModel("indirect", per_token=True, dim=32, heads=4, layers=3)
    for head in model.refine:  # move the references: a constant shift of 0.5 per layer
        torch.nn.init.constant_(head.bias, 0.5)
    data = sorting(2, 5, 0)
    logits, trace = model(data.x, data.y, trace=True)
    assert torch.equal(logits, model(data.x, data.y))
    for layer, (bias, reference) in enumerate(zip(trace["bias"], trace["reference"])):
        assert torch.allclose(reference, torch.arange(10.0) + 0.5 * layer)
        block_bias = model.layers[layer].block.bias(query_positions=reference, num_keys=10)
        assert torch.equal(bias, block_bias) and bias.shape == (2, 4, 10, 10)
    assert SequenceModel("cross", True, 32, 4, 3)(data.x, data.y, trace=True)[1] == {"bias": [], "reference": []}
