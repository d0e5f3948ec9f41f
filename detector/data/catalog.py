"""Named data sets, found under a data root, and the split each one uses.

The data root is, in order: the config key ``data.root``, the environment variable
``IA_DETR_DATA_ROOT``, then ``./datasets``. Expected layouts under the root:

- ``synthetic``: ``synthetic/annotations/{train,test}.json``, ``synthetic/{train,test}/`` (made by
  ``tools/make_synthetic.py``);
- ``coco``: ``coco/annotations/instances_{train,val}2017.json``, ``coco/{train,val}2017/``;
- ``voc``: ``VOCdevkit/VOC2007`` and ``VOCdevkit/VOC2012`` (train: 2007+2012 trainval, test: 2007 test);
- ``custom``: any COCO-format files named by ``data.{train,test}_{annotations,images}``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config import DataConfig
from .coco import load_coco
from .records import DetectionData
from .splits import Split, coco_split, explicit_split, index_rule_split, voc_split
from .voc import load_voc

DATA_ROOT_ENV = "IA_DETR_DATA_ROOT"
DATASETS = ("synthetic", "coco", "voc", "custom")


class DatasetNotFoundError(FileNotFoundError):
    """A named data set whose files are not where the layout says they should be."""


def data_root(configured: str | None = None) -> Path:
    if configured:
        return Path(configured)
    if os.environ.get(DATA_ROOT_ENV):
        return Path(os.environ[DATA_ROOT_ENV])
    return Path("datasets")


def _require(path: Path, what: str, how: str) -> Path:
    if not path.exists():
        raise DatasetNotFoundError(f"{what} not found at {path}. {how}")
    return path


def load_dataset(config: DataConfig, subset: str) -> DetectionData:
    """Load ``subset`` ("train" or "test") of the data set named by ``config.dataset``."""
    if subset not in ("train", "test"):
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    root = data_root(config.root)
    name = config.dataset
    if name == "synthetic":
        base = root / "synthetic"
        how = f"Generate it with: python tools/make_synthetic.py --out {base}"
        ann = _require(base / "annotations" / f"{subset}.json", "embedded benchmark annotations", how)
        return load_coco(ann, _require(base / subset, "embedded benchmark images", how), f"synthetic-{subset}")
    if name == "coco":
        year_set = "train2017" if subset == "train" else "val2017"
        how = (
            f"Expected {root}/coco/annotations/instances_{year_set}.json and {root}/coco/{year_set}/ "
            f"(set data.root or ${DATA_ROOT_ENV} to the folder holding coco/)"
        )
        ann = _require(root / "coco" / "annotations" / f"instances_{year_set}.json", "COCO annotations", how)
        return load_coco(ann, _require(root / "coco" / year_set, "COCO images", how), f"coco-{year_set}")
    if name == "voc":
        devkit = root / "VOCdevkit"
        how = (
            f"Expected {devkit}/VOC2007 (trainval and test) and {devkit}/VOC2012 (trainval), each with "
            f"Annotations/, ImageSets/Main/ and JPEGImages/ (set data.root or ${DATA_ROOT_ENV})"
        )
        _require(devkit / "VOC2007", "Pascal VOC 2007", how)
        if subset == "train":
            _require(devkit / "VOC2012", "Pascal VOC 2012", how)
            return load_voc(devkit, [("2007", "trainval"), ("2012", "trainval")], "voc-trainval")
        return load_voc(devkit, [("2007", "test")], "voc2007-test")
    if name == "custom":
        ann_key, img_key = f"{subset}_annotations", f"{subset}_images"
        ann, images = getattr(config, ann_key), getattr(config, img_key)
        if not ann or not images:
            raise DatasetNotFoundError(
                f"data.dataset is 'custom' but data.{ann_key} or data.{img_key} is not set; set both to a "
                f"COCO-format JSON file and its image folder"
            )
        how = f"check data.{ann_key} and data.{img_key}"
        return load_coco(_require(Path(ann), "annotation file", how), _require(Path(images), "image folder", how))
    raise ValueError(f"unknown data.dataset {name!r}; choose one of {', '.join(DATASETS)}")


def split_for(config: DataConfig, class_names: list[str]) -> Split:
    """The seen/unseen split of ``config`` over ``class_names`` (the data set's classes in id order)."""
    if config.dataset == "coco":
        return coco_split(config.split)
    if config.dataset == "voc":
        return voc_split()
    if config.dataset == "custom" or config.unseen_classes:
        return explicit_split(class_names, config.unseen_classes)
    return index_rule_split(class_names, config.split)
