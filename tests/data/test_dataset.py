import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from detector.config import DataConfig
from detector.data.catalog import load_dataset, split_for
from detector.data.checker import check_coco
from detector.data.dataset import EpisodeDataset, OneShotTargets, SelfQueryTargets, SkipUnreadable, collate
from detector.data.episodes import Episode, EpochEpisodes, TrainEpisodeSampler
from detector.data.images import ImageReadError
from detector.data.query_pool import QueryPool, QueryRecord
from detector.data.records import ImageRecord
from detector.data.splits import seen_only
from detector.data.transforms import QueryTransform, TargetTransform


def _dataset(root, seed=0):
    config = DataConfig(dataset="synthetic", root=str(root.parent), split=1)
    data = load_dataset(config, "train")
    split = split_for(config, data.class_names())
    train = seen_only(data, split)
    pool = QueryPool.from_data(train, 8)
    sampler = TrainEpisodeSampler(train, pool, {train.category(n).id for n in split.seen}, seed)
    dataset = EpisodeDataset(
        train,
        EpochEpisodes(sampler, 0),
        TargetTransform(True, [128, 160], 192, 160),
        QueryTransform(True, 64),
        seed,
    )
    return dataset


def _linked_root(synthetic_root, tmp_path):
    root = tmp_path / "synthetic"
    shutil.copytree(synthetic_root, root)
    return root


def test_batches_from_episodes(synthetic_root, tmp_path):
    dataset = _dataset(_linked_root(synthetic_root, tmp_path))
    batch = collate([dataset[0], dataset[1], dataset[2]])
    assert batch.target_images.shape[0] == 3 and batch.target_images.shape[2] % 32 == 0
    for target, meta in zip(batch.targets, batch.meta):
        assert len(target["boxes"]) >= 1  # the query class is present in the target
        assert ((target["boxes"] >= 0) & (target["boxes"] <= 1)).all()
        assert (target["class_labels"] == meta["category_id"]).sum() == len(target["boxes"])
        assert len(target["class_boxes"]) == len(target["all_boxes"])  # stage 2: every box has its class
    again = _dataset(_linked_root(synthetic_root, tmp_path / "b"))
    assert torch.equal(again[1].target_image, dataset[1].target_image)
    assert torch.equal(again[1].query_image, dataset[1].query_image)


def test_bad_image_raises_naming_the_file_and_training_skips_it(synthetic_root, tmp_path, caplog):
    root = _linked_root(synthetic_root, tmp_path)
    dataset = _dataset(root)
    episode = dataset.episodes[0]
    path = dataset.data.images[episode.image_index].path
    path.write_bytes(b"garbage")
    with pytest.raises(ImageReadError, match=path.name):
        dataset[0]
    training = SkipUnreadable(dataset)
    with caplog.at_level(logging.WARNING):
        sample = training[0]
    assert sample.meta["image_id"] != dataset.data.images[episode.image_index].image_id
    assert sample.meta["episode"] == 1  # the next episode stands in, and says so
    assert training.skipped == 1
    assert "not a decodable image" in caplog.text


def test_stage1_targets_make_the_crop_the_positive_and_the_boxes_objects_or_negatives():
    record = ImageRecord(
        7,
        Path("t.jpg"),
        200,
        100,
        np.array([[10, 10, 50, 50], [60, 20, 90, 80]], np.float32),
        np.array([3, 5]),
        np.array([False, True]),  # the second box is ignored (crowd)
    )
    query = QueryRecord(None, 7, Path("t.jpg"), (100.0, 20.0, 140.0, 60.0))
    boxes = SelfQueryTargets(objects=False)(record, Episode(0, None, query))
    np.testing.assert_array_equal(boxes.boxes, [[10, 10, 50, 50], [100, 20, 140, 60]])
    np.testing.assert_array_equal(boxes.labels, [3, -1])
    np.testing.assert_array_equal(boxes.positive, [False, True])
    assert boxes.objects is None
    official = SelfQueryTargets()(record, Episode(0, None, query))  # the crop is "the query", box 3 "an object"
    np.testing.assert_array_equal(official.positive, [False, True])
    np.testing.assert_array_equal(official.objects, [True, False])
    stage2 = OneShotTargets()(record, Episode(0, 3, query))
    np.testing.assert_array_equal(stage2.positive, [True])


def test_checker_reports_problems(synthetic_root, tmp_path):
    import json

    root = _linked_root(synthetic_root, tmp_path)
    clean = check_coco(root / "annotations" / "train.json", root / "train", min_query_size=4)
    problems = {k: v for k, v in clean["problems"].items() if v}
    # the tiny benchmark lacks some of its 42 classes; nothing else may be wrong
    assert set(problems) <= {"classes_without_queries"}, problems
    coco = json.loads((root / "annotations" / "test.json").read_text())
    coco["annotations"][0]["bbox"] = [0, 0, 0, 5]
    coco["annotations"][1]["bbox"] = [5000, 5, 10, 10]
    coco["annotations"][2]["category_id"] = 999
    (root / "test" / coco["images"][0]["file_name"]).unlink()
    (root / "test" / coco["images"][1]["file_name"]).write_bytes(b"junk")
    (root / "bad.json").write_text(json.dumps(coco))
    report = check_coco(root / "bad.json", root / "test", min_query_size=4)
    problems = report["problems"]
    assert not report["ok"]
    assert len(problems["degenerate_boxes"]) == 1 and len(problems["boxes_outside_image"]) == 1
    assert len(problems["unknown_category_ids"]) == 1 and "999" in problems["unknown_category_ids"][0]
    assert len(problems["missing_images"]) == 1 and len(problems["unreadable_images"]) == 1


def test_cached_images_give_the_same_samples(synthetic_root, tmp_path):
    from detector.data.images import ImageCache

    plain = _dataset(_linked_root(synthetic_root, tmp_path))
    cache = ImageCache(max_mb=64)
    cached = _dataset(_linked_root(synthetic_root, tmp_path / "b"))
    cached.read = cache
    for _ in range(2):  # the second pass reads every image from the cache (through read-only arrays)
        for i in range(6):
            a, b = plain[i], cached[i]
            assert torch.equal(a.target_image, b.target_image) and torch.equal(a.query_image, b.query_image)
            assert all(torch.equal(a.target[k], b.target[k]) for k in a.target)
    assert cache.misses == len(cache) <= 12 and cache.hits >= 12


def test_a_group_of_queries_shares_one_augmented_target_and_collates_with_a_target_index(synthetic_root, tmp_path):
    root = _linked_root(synthetic_root, tmp_path)
    config = DataConfig(dataset="synthetic", root=str(root.parent), split=1)
    data = load_dataset(config, "train")
    split = split_for(config, data.class_names())
    train = seen_only(data, split)
    pool = QueryPool.from_data(train, 8)
    seen = {train.category(n).id for n in split.seen}
    sampler = TrainEpisodeSampler(train, pool, seen, 0, queries_per_target=2)
    transforms = (TargetTransform(True, [128, 160], 192, 160), QueryTransform(True, 64))
    grouped = EpisodeDataset(train, EpochEpisodes(sampler, 0), *transforms, 0)
    single = _dataset(root)  # the same seed and transforms, one query per target
    index = next(i for i in range(len(grouped)) if len({e.category_id for e in sampler.group(0, i)}) == 2)
    samples = grouped[index]
    assert len(samples) == 2 and samples[0].target_image is samples[1].target_image  # augmented once
    # the first query's sample is the one-query data set's sample of that episode
    alone = single[index]
    assert torch.equal(samples[0].target_image, alone.target_image)
    assert torch.equal(samples[0].query_image, alone.query_image)
    for key in alone.target:
        assert torch.equal(samples[0].target[key], alone.target[key]), key
    for sample in samples:  # each query's positives are the boxes of its own class
        target = sample.target
        assert torch.equal(target["all_boxes"], samples[0].target["all_boxes"])
        own = target["class_labels"] == sample.meta["category_id"]
        assert own.any() and torch.equal(target["boxes"], target["class_boxes"][own])
        assert int(target["query_label"]) == sample.meta["category_id"]
    other = next(i for i in range(len(grouped)) if i != index)
    batch = collate([samples, grouped[other]])
    assert batch.target_images.shape[0] == 2 and len(batch) == 2
    assert batch.query_images.shape[0] == 4 and len(batch.targets) == len(batch.meta) == 4
    assert batch.target_index.tolist() == [0, 0, 1, 1]
    sizes = torch.tensor([samples[0].meta["size"], grouped[other][0].meta["size"]])
    assert torch.equal(batch.target_sizes(), sizes)
    assert torch.equal(batch.image_sizes(), sizes[batch.target_index])
    assert collate([alone, single[other]]).target_index is None  # one query each: rows pair up
