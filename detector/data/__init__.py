"""Data: loading (COCO, VOC, embedded benchmark), splits, query pools, episodes, transforms, batches."""

from .catalog import data_root, load_dataset, split_for
from .dataset import Batch, EpisodeDataset, Sample, collate
from .episodes import Episode, EpochEpisodes, TrainEpisodeSampler, evaluation_episodes, evaluation_queries
from .images import ImageReadError, load_image
from .query_pool import QueryPool, QueryRecord
from .records import Category, DetectionData, ImageRecord
from .splits import Split, coco_split, index_rule_split, seen_only, voc_split

__all__ = [
    "Batch",
    "Category",
    "DetectionData",
    "Episode",
    "EpisodeDataset",
    "EpochEpisodes",
    "ImageReadError",
    "ImageRecord",
    "QueryPool",
    "QueryRecord",
    "Sample",
    "Split",
    "TrainEpisodeSampler",
    "coco_split",
    "collate",
    "data_root",
    "evaluation_episodes",
    "evaluation_queries",
    "index_rule_split",
    "load_dataset",
    "load_image",
    "seen_only",
    "split_for",
    "voc_split",
]
