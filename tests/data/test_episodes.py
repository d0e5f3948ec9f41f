import numpy as np
import pytest

from detector.data.coco import load_coco
from detector.data.episodes import TrainEpisodeSampler, evaluation_episodes, evaluation_queries
from detector.data.query_pool import QueryPool
from detector.data.splits import index_rule_split, seen_only


def _train(root):
    data = load_coco(root / "annotations" / "train.json", root / "train")
    split = index_rule_split(data.class_names(), 1)
    seen_ids = {data.category(n).id for n in split.seen}
    train = seen_only(data, split)
    return train, QueryPool.from_data(train, min_size=8), seen_ids, split


def test_sampler_deterministic_and_never_queries_target_image(synthetic_root):
    train, pool, seen_ids, _ = _train(synthetic_root)
    a = TrainEpisodeSampler(train, pool, seen_ids, seed=5)
    b = TrainEpisodeSampler(train, pool, seen_ids, seed=5)
    c = TrainEpisodeSampler(train, pool, seen_ids, seed=6)
    eps_a = [a.episode(e, i) for e in range(3) for i in range(len(a))]
    eps_b = [b.episode(e, i) for e in range(3) for i in range(len(b))]
    eps_c = [c.episode(e, i) for e in range(3) for i in range(len(c))]
    assert eps_a == eps_b
    assert eps_a != eps_c
    for episode in eps_a:
        target = train.images[episode.image_index]
        assert episode.query.image_id != target.image_id
        assert episode.category_id in seen_ids
        assert episode.category_id in target.classes()
        assert episode.query.category_id == episode.category_id
    # random access equals sequential order (so a resumed run continues identically)
    assert b.episode(2, 3) == a.episode(2, 3)


def test_absent_fraction_queries_training_classes_missing_from_the_target(synthetic_root):
    train, pool, seen_ids, _ = _train(synthetic_root)
    plain = TrainEpisodeSampler(train, pool, seen_ids, seed=3)
    mixed = TrainEpisodeSampler(train, pool, seen_ids, seed=3, absent_fraction=0.3)
    episodes = [mixed.episode(e, i) for e in range(2) for i in range(len(mixed))]
    absent = [ep for ep in episodes if not ep.present]
    # about 30% (binomial over ~2 * len episodes: 0.3 +- 0.05 is many standard deviations wide)
    assert abs(len(absent) / len(episodes) - 0.3) < 0.05
    for episode in absent:
        target = train.images[episode.image_index]
        assert episode.category_id in seen_ids and episode.category_id in plain.frequency
        assert episode.category_id not in set(target.labels.tolist())
        assert episode.query.category_id == episode.category_id
    # drawn among all the training classes, not a few
    assert len({ep.category_id for ep in absent}) > len(plain.frequency) / 2
    # the present episodes keep their rule, and the mix is as deterministic as the plain sampler
    assert all(ep.category_id in train.images[ep.image_index].classes() for ep in episodes if ep.present)
    again = TrainEpisodeSampler(train, pool, seen_ids, seed=3, absent_fraction=0.3)
    assert [again.episode(1, i) for i in range(20)] == [mixed.episode(1, i) for i in range(20)]


def test_sampler_visits_every_eligible_image_once_per_epoch(synthetic_root):
    train, pool, seen_ids, _ = _train(synthetic_root)
    sampler = TrainEpisodeSampler(train, pool, seen_ids, seed=0)
    visited = sorted(sampler.episode(0, i).image_index for i in range(len(sampler)))
    assert visited == sorted(sampler.eligible)


def test_unseen_boxes_removed_from_training_view(synthetic_root):
    train, _, seen_ids, _ = _train(synthetic_root)
    for record in train.images:
        assert set(record.labels.tolist()) <= seen_ids


def test_class_weighting_is_inverse_frequency(synthetic_root):
    train, pool, seen_ids, _ = _train(synthetic_root)
    sampler = TrainEpisodeSampler(train, pool, seen_ids, seed=0)
    # an image with two classes of different frequency picks the rarer one more often
    slot = next(
        i for i, c in enumerate(sampler.present) if len(c) == 2 and sampler.frequency[c[0]] != sampler.frequency[c[1]]
    )
    rare, common = sorted(sampler.present[slot], key=lambda c: sampler.frequency[c])
    picks = [sampler.episode(e, int(np.flatnonzero(sampler.order(e) == slot)[0])).category_id for e in range(400)]
    expected = (1 / sampler.frequency[rare]) / (1 / sampler.frequency[rare] + 1 / sampler.frequency[common])
    assert abs(picks.count(rare) / len(picks) - expected) < 0.08


def test_evaluation_queries_are_a_per_image_shuffle_of_the_pool(synthetic_root):
    data = load_coco(synthetic_root / "annotations" / "test.json", synthetic_root / "test")
    pool = QueryPool.from_data(data, min_size=8)
    class_ids = {c.id for c in data.categories}
    repeats = evaluation_episodes(data, pool, class_ids, repeats=3)
    assert len(repeats) == 3 and len(repeats[0]) > 0
    orders = set()
    for record in data.images:
        for category in sorted(record.classes()):
            others = [q for q in pool.for_class(category) if q.image_id != record.image_id]
            if len(others) < 4:
                continue
            queries = evaluation_queries(pool, category, record.image_id, len(others))
            # every exemplar of other images exactly once: a permutation of the pool without the image's own
            assert sorted(map(id, queries)) == sorted(map(id, others))
            orders.add(tuple(others.index(q) for q in queries[:4]))
            # the choice depends on the image alone, not on which other images are evaluated
            assert evaluation_queries(pool, category, record.image_id, 2) == queries[:2]
    assert len(orders) > 1  # images shuffle differently
    # each repeat's episode uses that repeat's query; rebuilt from scratch, the same episodes
    for r, episodes in enumerate(repeats):
        for episode in episodes[:20]:
            image_id = data.images[episode.image_index].image_id
            assert episode.query == evaluation_queries(pool, episode.category_id, image_id, 3)[r]
            assert episode.present
    assert evaluation_episodes(data, pool, class_ids, repeats=3) == repeats


def test_absent_episodes(synthetic_root):
    data = load_coco(synthetic_root / "annotations" / "test.json", synthetic_root / "test")
    pool = QueryPool.from_data(data, min_size=8)
    class_ids = {c.id for c in data.categories}
    repeats = evaluation_episodes(data, pool, class_ids, repeats=1, absent_per_image=2)
    absent = [e for e in repeats[0] if not e.present]
    assert len(absent) == 2 * len(data.images)
    for episode in absent:
        assert episode.category_id not in set(data.images[episode.image_index].labels.tolist())


def test_evaluation_queries_cycle_short_pools(synthetic_root):
    data = load_coco(synthetic_root / "annotations" / "test.json", synthetic_root / "test")
    pool = QueryPool.from_data(data, min_size=8)
    cid = min(pool.counts().items(), key=lambda kv: kv[1] if kv[1] > 1 else 1e9)[0]
    cid = data.category(cid).id
    n = len(pool.for_class(cid))
    queries = evaluation_queries(pool, cid, image_id=-1, repeats=n + 2)
    assert queries[n] == queries[0] and queries[n + 1] == queries[1]


def test_self_query_episodes_crop_the_target(synthetic_root):
    from detector.data.episodes import SelfQueryEpisodes

    train, _, _, _ = _train(synthetic_root)
    for official in (False, True):
        sampler = SelfQueryEpisodes(train, seed=3, official=official)
        widths = []
        for index in range(len(sampler)):
            episode = sampler.episode(0, index)
            record = train.images[episode.image_index]
            x1, y1, x2, y2 = episode.query.box
            assert episode.category_id is None and episode.query.image_id == record.image_id
            assert 0 <= x1 < x2 <= record.width and 0 <= y1 < y2 <= record.height
            if official:  # 8 px to the side minus 8, each way
                assert 8 <= x2 - x1 <= record.width - 8 and 8 <= y2 - y1 <= record.height - 8
                widths.append((x2 - x1) / record.width)
            else:  # 10-40% of the shorter side
                assert min(x2 - x1, y2 - y1) >= 0.05 * min(record.width, record.height)
        if official:  # uniform over [8, W - 8]: wide and narrow crops alike
            assert min(widths) < 0.2 and max(widths) > 0.8
        assert sampler.episode(1, 2) == SelfQueryEpisodes(train, seed=3, official=official).episode(1, 2)


def test_official_crop_sides_by_hand():
    from detector.data.episodes import official_crop

    rng = np.random.default_rng(0)
    draws = [official_crop(40, 20, rng) for _ in range(400)]
    assert {w for _, _, w, _ in draws} == set(range(8, 33))  # randint(8, 40 - 8 + 1): every width 8..32
    assert {h for _, _, _, h in draws} == set(range(8, 13))
    assert all(0 <= x < 40 - w and 0 <= y < 20 - h for x, y, w, h in draws)
    assert official_crop(12, 5, rng)[2:] == (8, 5)  # narrow sides: 8 px, or the whole side below 8


def test_groups_of_queries_take_the_images_other_classes_first_then_other_exemplars(synthetic_root):
    train, pool, seen_ids, _ = _train(synthetic_root)
    single = TrainEpisodeSampler(train, pool, seen_ids, seed=4)
    grouped = TrainEpisodeSampler(train, pool, seen_ids, seed=4, queries_per_target=3)
    saw_distinct = saw_repeat = False
    for epoch in range(2):
        for index in range(len(grouped)):
            group = grouped.group(epoch, index)
            assert len(group) == 3
            assert group[0] == single.episode(epoch, index)  # the first query is the one-query sampler's
            image = train.images[group[0].image_index]
            present = sorted(image.classes() & seen_ids)
            for episode in group:
                assert episode.image_index == group[0].image_index and episode.present
                assert episode.category_id in present
                assert episode.query.category_id == episode.category_id
                assert episode.query.image_id != image.image_id
            classes = [e.category_id for e in group]
            usable = [c for c in present if (pool.image_ids(c) != image.image_id).any()]
            # as many distinct classes as the image has, up to the group's size
            assert len(set(classes)) == min(3, len(usable))
            saw_distinct |= len(set(classes)) > 1
            saw_repeat |= len(set(classes)) < 3
    assert saw_distinct and saw_repeat
    again = TrainEpisodeSampler(train, pool, seen_ids, seed=4, queries_per_target=3)
    assert [again.group(1, i) for i in range(10)] == [grouped.group(1, i) for i in range(10)]
    # what a data loader indexes: groups where the sampler has several queries, single episodes otherwise
    assert grouped.epoch(1)[5] == grouped.group(1, 5)
    assert single.epoch(1)[5] == single.episode(1, 5)
    with pytest.raises(ValueError, match="queries_per_target must be at least 1"):
        TrainEpisodeSampler(train, pool, seen_ids, queries_per_target=0)
