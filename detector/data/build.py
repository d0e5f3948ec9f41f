"""Build the data objects a run needs from ``DataConfig``: the only place in ``data/`` that reads it."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import DataConfig
from .catalog import load_dataset, split_for
from .query_pool import QueryPool
from .records import DetectionData
from .splits import Split, seen_only
from .transforms import QueryTransform, TargetTransform


@dataclass
class SplitData:
    """One subset of a data set with its split and query pool (training: seen classes only)."""

    data: DetectionData
    split: Split
    pool: QueryPool
    class_ids: set[int]


def build_split_data(config: DataConfig, subset: str) -> SplitData:
    """Training: unseen boxes removed, pool and classes restricted to seen classes. Test: every class."""
    data = load_dataset(config, subset)
    split = split_for(config, data.class_names())
    pool_file = config.train_query_pool if subset == "train" else config.test_query_pool
    if subset == "train":
        data = seen_only(data, split)
        class_ids = {data.category(n).id for n in split.seen}
    else:
        class_ids = {data.category(n).id for n in (*split.seen, *split.unseen)}
    pool = QueryPool.load(pool_file) if pool_file else QueryPool.from_data(data, config.min_query_size)
    return SplitData(data, split, pool, class_ids)


def build_transforms(config: DataConfig, train: bool) -> tuple[TargetTransform, QueryTransform]:
    target = TargetTransform(
        train,
        config.target_sizes,
        config.target_max_size,
        config.test_size,
        config.hflip,
        config.random_crop,
        config.crop_style,
    )
    query = QueryTransform(
        train, config.query_size, config.query_augment, config.hflip, config.query_resize, config.query_augment_style
    )
    return target, query
