"""Evaluation keys detections by episode: an unreadable image drops its episodes, never shifts the others."""

import shutil
from pathlib import Path

import torch
from test_training import TINY

from detector.config import load_config
from detector.data.build import build_split_data
from detector.engine.evaluate import episodes_for, evaluate_model
from detector.evaluation.evaluator import OneShotEvaluator
from detector.models import build

ROOT = Path(__file__).resolve().parents[2]
# the small model of the training tests, evaluated on 8 images x 2 repeats, 3 episodes a batch
SMALL = [*TINY, "eval.repeats=2", "eval.max_images=8", "eval.batch_size=3"]


def test_unreadable_test_image_drops_its_episodes_and_scores_the_rest_by_identity(
    synthetic_root, tmp_path, monkeypatch
):
    root = tmp_path / "synthetic"
    shutil.copytree(synthetic_root, root)
    config = load_config(ROOT / "configs/tiny_synthetic.yaml", [f"data.root={tmp_path}", *SMALL])
    torch.manual_seed(0)
    model, _, postprocessor = build(config, load_weights=False)
    model.eval()
    test = build_split_data(config.data, "test")
    episodes = episodes_for(config, test)

    # every episode's detections on the clean data, recorded by episode
    recorded = {}
    original = OneShotEvaluator.process

    def record(self, batch_episodes, detections):
        for episode, det in zip(batch_episodes, detections):
            recorded[episode] = det
        original(self, batch_episodes, detections)

    monkeypatch.setattr(OneShotEvaluator, "process", record)
    evaluate_model(model, postprocessor, config, test, torch.device("cpu"), progress=False)
    monkeypatch.setattr(OneShotEvaluator, "process", original)
    assert len(recorded) == len(episodes)

    # break the target image of an episode in the middle of a batch
    bad = test.data.images[episodes[4].image_index].path
    bad.write_bytes(b"not an image")
    involved = [e for e in episodes if test.data.images[e.image_index].path == bad or Path(e.query.path) == bad]
    broken = evaluate_model(model, postprocessor, config, test, torch.device("cpu"), progress=False)

    # expected: the clean detections of every other episode, with the images of the dropped ones left out
    expected = OneShotEvaluator(test.data, test.split, config.eval.max_detections)
    for episode in episodes:
        if episode in involved:
            expected.drop(episode, "unreadable")
        else:
            expected.process([episode], [recorded[episode]])
    reference = expected.evaluate()
    assert broken["dropped_episodes"] == len(involved) > 0
    assert broken["excluded_images"] == reference["excluded_images"] >= 1
    assert any(bad.name in reason for reason in broken["drop_reasons"])
    assert broken["images"] == reference["images"] < 8
    for key in ("seen_ap50", "unseen_ap50", "seen_ap", "unseen_ap"):
        assert broken[key] == reference[key] or (broken[key] != broken[key] and reference[key] != reference[key])
