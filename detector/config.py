"""One typed configuration, read in one place.

An experiment is a YAML file that may inherit another through ``_base_: other.yaml`` (a path relative to
the file) and override a few keys. Command-line overrides are ``key.sub=value`` strings whose values are
parsed as YAML scalars (``train.lr=1e-4``, ``data.split=2``, ``model.fusion=cross``). The merged mapping
is validated into the dataclasses below: an unknown key is an error that names the key and the closest
valid one, and a value of the wrong type is an error that names the key and the expected type.

Only ``build_*`` functions read a :class:`Config`; classes take explicit arguments.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# names users reach for first, and the key they mean (the hint of an unknown-key error)
ALIASES = {
    "learning_rate": "lr",
    "lr_rate": "lr",
    "bs": "batch_size",
    "batchsize": "batch_size",
    "steps": "max_steps",
    "iterations": "max_steps",
    "epochs": "max_steps",
    "workers": "num_workers",
    "heads": "num_heads",
    "layers": "num_layers",
}


class ConfigError(ValueError):
    """A configuration file or override that cannot be turned into a :class:`Config`."""


@dataclass
class DataConfig:
    """Which data set and split, and how images are sized and augmented."""

    dataset: str = "synthetic"  # synthetic | coco | voc | custom
    root: str | None = None  # data root; else $IA_DETR_DATA_ROOT; else ./datasets
    split: int = 1  # one-shot split 1..4 (VOC has one split; any value is accepted)
    # custom COCO-format data (dataset: custom)
    train_annotations: str | None = None
    train_images: str | None = None
    test_annotations: str | None = None
    test_images: str | None = None
    unseen_classes: list[str] = field(default_factory=list)
    # query (reference) pools; built from the ground truth when not given
    train_query_pool: str | None = None
    test_query_pool: str | None = None
    min_query_size: int = 16  # smallest side (pixels) of a ground-truth box usable as a query
    # target image sizes: shorter side drawn from target_sizes in training, test_size at test time
    target_sizes: list[int] = field(default_factory=lambda: [400, 432, 464, 496, 528, 544])
    target_max_size: int = 512
    test_size: int = 512
    query_size: int = 300  # side of the query patch
    # square: the patch resized to query_size x query_size, aspect not kept (the official code); longer_side: the
    # longer side to query_size, aspect kept
    query_resize: str = "square"
    size_divisor: int = 32  # the common grid is padded to a multiple of this
    hflip: bool = True  # horizontal flips of targets and queries in training (off for glyphs)
    random_crop: bool = True
    # detr: half of the time, a 384-512 px window after a resize to 400/480/512 that may cut boxes (the official
    # code); box_safe: half of the time, a window that never cuts a box
    crop_style: str = "detr"
    query_augment: bool = True
    # official: torchvision's ops at the official probabilities (jitter 0.3, perspective 0.5, grayscale 0.4,
    # blur 0.5); official_stage1: the official stage 1's (jitter 0.8, grayscale 0.2, blur 0.5); light: milder
    # albumentations ops (0.8 / 0.3 / 0.1 / 0.2)
    query_augment_style: str = "official"
    num_workers: int = 2
    # >0: training keeps decoded images in memory up to this many MB per loader process (the least recently used
    # dropped first), so that no image is decoded twice; it lasts the run with num_workers 0, an epoch otherwise
    cache_mb: int = 0


@dataclass
class BackboneConfig:
    name: str = "resnet50"  # resnet18 | resnet50 | swin_v2_s | tiny
    weights: str | None = None  # torchvision weights name (e.g. IMAGENET1K_V2) or a local file
    trainable: bool = True
    width: int = 32  # channels of the "tiny" backbone's first stage
    # stride 32 -> 16: learned (a 2x2 transposed conv to half the channels, the official code's) or bilinear
    upsample: str = "learned"
    # Swin-v2-S, as the official code: window 16, drop-path 0.1, and the windows its weights were pre-trained with
    # (SimMIM's: 12, 12, 12, 6; torchvision's ImageNet weights: 8, 8, 8, 8), which scale the position-bias inputs
    swin_window: int = 16
    swin_pretrained_windows: list[int] | None = field(default_factory=lambda: [12, 12, 12, 6])  # null: swin_window
    drop_path: float = 0.1


@dataclass
class ModelConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    fusion: str = "indirect"  # indirect | cross | misaligned
    hidden_dim: int = 256
    num_heads: int = 8
    num_layers: int = 6
    ffn_dim: int = 2048
    dropout: float = 0.0
    num_queries: int = 300  # one-to-one queries
    num_queries_one2many: int = 1500  # 0 disables hybrid matching
    one2many_repeats: int = 6
    bias_hidden_dim: int = 512  # box relative position bias MLP width
    # what the bias MLPs read: "linear", edge-to-cell-centre offsets in pixels (the official code); "signed_log",
    # sign * log2(1 + |offset in cells|) / 3 (bounded inputs; the CPU-tiny recipe)
    bias_inputs: str = "linear"
    # one-to-many queries: "disjoint", the proposals ranked after the one-to-one ones (the official code);
    # "overlapping", the top ones again (they repeat the one-to-one proposals)
    one2many_selection: str = "disjoint"
    look_forward_twice: bool = True
    # which earlier box heads a layer's box loss reaches: "previous" (the official code, DINO) or "all"
    look_forward_reach: str = "previous"
    # what padding cells hold: backbone (the official code: the backbone runs over each whole padded canvas, query
    # included, and padding keeps its response to zero pixels) or zero (the query's encoding does not depend on the
    # grid, so it is computed once for any number of targets; the backbone sees only the query patch)
    padding_features: str = "backbone"
    # two-stage proposals: multi_level (the official code: strides 8/16/32/64 made from the stride-16 map, anchors
    # 0.05 * 2^level of the image) or single_level (the stride-16 cells, anchors two cells wide)
    proposals: str = "multi_level"
    # object query positions: proposals (the official code: LayerNorm(Linear(sine(proposal boxes))), computed once
    # for every layer) or refined (an MLP of each layer's refined boxes, as DAB-DETR)
    query_pos: str = "proposals"
    # object query content: false, the learned embedding alone (the official code); true, plus the target feature
    # at its proposal cell (q_i = m_i + y_pi(i), the paper's Definition 1)
    content_from_target: bool = False
    # adds scale * cos(object features, pooled query embedding) to each class logit: an explicit match term
    # (not in the paper, whose class head is linear; the CPU-tiny model needs it to use the query, see README)
    match_similarity: bool = False
    # what each layer's class logit is made of: linear (a linear head on the object's features, plus the match term
    # when match_similarity is on; the paper's head) or similarity (the match term plus a learned bias: no part of
    # the score that ignores the query, so none that can learn which objects belong to the training classes)
    class_logit: str = "linear"
    identity_classes: int = 0  # >0: training-only base-class identity head over this many category ids


@dataclass
class LossConfig:
    class_weight: float = 2.0
    l1_weight: float = 5.0
    giou_weight: float = 2.0
    match_class_cost: float = 2.0
    match_l1_cost: float = 5.0
    match_giou_cost: float = 2.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    one2many_weight: float = 1.0
    identity_weight: float = 1.0
    # the identity loss's decoder term (the matched decoder outputs named as the query's class) at this factor of
    # identity_weight; 0 leaves the features the match score reads unnamed (the query and box terms still train)
    identity_matched_weight: float = 1.0
    # >0 (needs model.identity_classes): metric learning between each query embedding and the batch's labelled
    # target boxes, its class's boxes the positives (supervised InfoNCE at this temperature); names no class
    query_metric_weight: float = 0.0
    query_metric_temperature: float = 0.1
    # >0 (needs model.match_similarity): the focal loss also on the query-match term alone, every layer, with
    # the class loss's matches and weight times this, so that it must tell the queried class from the rest by itself
    similarity_weight: float = 0.0
    contrastive_weight: float = 2.0
    contrastive_temperature: float = 0.5
    contrastive_dim: int = 0  # >0 (stage 1: 128) adds the contrastive loss on decoder outputs
    # the two-stage proposals' targets: decoder (the decoder's: in stage 2 the query class's boxes, as the official
    # code) or all (every annotated box: class-agnostic objectness over whatever the data set labels)
    proposal_targets: str = "decoder"


@dataclass
class TrainConfig:
    stage: int = 2  # 1: self-supervised (query cropped from the target), 2: one-shot episodes
    # stage 1: official (crops of 8 px to the whole image; the decoder finds the crop, "the query", and every
    # annotated box, "an object", with box losses; a contrastive loss between matched objects grouped by class) or
    # crop_only (crops of 10-40% of the shorter side, the crop the one positive, InfoNCE against the pooled query)
    stage1_recipe: str = "official"
    output_dir: str = "outputs/run"
    init_from: str | None = None  # checkpoint whose model weights start this run (e.g. stage 1)
    seed: int = 42
    device: str = "auto"
    batch_size: int = 2
    max_steps: int = 100_000
    # >0 stops (after a checkpoint) when the run's wall time reaches this, counted over all its resumes
    max_minutes: float = 0.0
    lr: float = 2e-4
    # >0: before the first step, pre-train backbone + identity head this many steps to classify the training
    # split's query-pool crops (seen classes only; needs model.identity_classes): for backbones from scratch
    pretrain_steps: int = 0
    pretrain_batch_size: int = 64
    pretrain_crop_size: int = 64  # longer side of a crop, pixels
    pretrain_lr: float = 1e-3
    pretrain_max_crops: int = 20_000
    # stage 2: this share of the episodes queries a training class absent from the target (no positive)
    absent_fraction: float = 0.0
    # stage 2: each target image of a step is searched for this many queries (its other present classes first),
    # encoded once for all of them: train.batch_size counts target images, a step has batch_size x this queries
    queries_per_target: int = 1
    # backbone body lr = lr * backbone_lr_scale * layer_decay ** depth-from-the-top; the paper configs use 1.0
    # (the official code has no extra backbone factor), 0.1 is DETR's convention
    backbone_lr_scale: float = 0.1
    layer_decay: float = 0.9
    weight_decay: float = 0.05
    # weight decay on the position-bias MLPs (box-bias MLPs, Swin-v2's cpb_mlp/logit_scale); false = the official
    # code (they are in its wd_norm_names); norms and biases never decay
    decay_position_bias: bool = False
    # fraction of max_steps from which the backbone body is frozen (the official stage 2: from epoch 2 of 14, 0.143);
    # null: never. The projection, norm and upsampler keep training
    freeze_backbone_at: float | None = None
    warmup_steps: int = 1000
    lr_drop_at: float = 0.8  # fraction of max_steps after which lr is multiplied by 0.1
    # with max_minutes > 0: the drop also comes once lr_drop_at of max_minutes has passed, if that is first, so a run
    # the time cap stops on a slower machine has still annealed (the step it came at is kept in checkpoints); off:
    # the schedule counts steps only (reproducible step for step)
    lr_drop_by_time: bool = False
    clip_grad_norm: float = 0.1
    grad_accum: int = 1
    # auto | off | bf16 | fp16 (CUDA only). auto: on CUDA bf16 where supported, else fp16; on a CPU bf16 where it
    # has bf16 instructions (AVX512-BF16, AMX), else full precision (emulated bf16 is several times slower)
    amp: str = "auto"
    # torch.compile the backbone and the decoder layers for the training steps (evaluation stays eager); batches
    # are then padded to one fixed grid (data.target_max_size square) so that they compile once; torch >= 2.6
    compile: bool = False
    ema_decay: float = 0.0  # >0 keeps an EMA of the weights, used for evaluation
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    eval_every: int = 0  # >0: every N steps and at the end; 0: only at the end; -1: never
    log_every: int = 20
    tensorboard: bool = False


@dataclass
class EvalConfig:
    repeats: int = 5
    max_detections: int = 100
    nms_iou: float = 0.0  # 0: NMS-free, as the paper; e.g. 0.5 removes an under-trained model's duplicates
    absent: bool = False  # extended protocol: also query classes absent from the image
    absent_per_image: int = 2
    max_images: int = 0  # 0: all test images
    batch_size: int = 4
    # coco: AP per class over the whole test set with pycocotools (CoAE, BHRL); per-image: the official IA-DETR's
    # AP50 per (image, class), averaged over images (detector/evaluation/per_image.py); both: the two, one pass
    protocol: str = "coco"
    # standard: RandomState(image id) shuffles the class's pool without the image's own exemplars; official: the
    # official IA-DETR's rule (Python's random seeded with the file name; the image's own exemplars may be drawn)
    queries: str = "standard"
    # also sort every detection into hit / duplicate / confusion / loose / background (detector/evaluation/errors.py)
    errors: bool = False


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------------------
# loading


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"config {path} inherits itself through _base_")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        with path.open() as handle:
            raw = yaml.safe_load(handle) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}: {getattr(error, 'problem', error)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping, not {type(raw).__name__}")
    base = raw.pop("_base_", None)
    if base is None:
        return raw
    merged = _read_yaml(path.parent / base, (*seen, path))
    return merge(merged, raw)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (mappings merge, other values replace)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        elif value is None and isinstance(out.get(key), dict):
            continue  # an empty section (``train:`` with nothing under it) changes nothing
        else:
            out[key] = value
    return out


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into ``{"a": {"b": 1}, "c": "x"}``, values parsed as YAML scalars."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        key, text = item.split("=", 1)
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        try:
            node[parts[-1]] = yaml.safe_load(text) if text != "" else None
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: {text!r} is not a valid YAML value") from None
    return tree


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load ``path`` (with its ``_base_`` chain), apply ``overrides``, validate into a :class:`Config`."""
    raw = _read_yaml(Path(path)) if path is not None else {}
    raw = merge(raw, parse_overrides(overrides or []))
    config = from_dict(Config, raw)
    validate(config)
    return config


# (key, test, what the value must be); checked when a config loads, so a bad value fails before any work
_RULES: list[tuple[str, typing.Callable[[Any], bool], str]] = [
    ("data.dataset", lambda v: v in ("synthetic", "coco", "voc", "custom"), "one of synthetic, coco, voc, custom"),
    ("data.test_size", lambda v: v >= 32, "at least 32 (pixels)"),
    ("data.target_max_size", lambda v: v >= 32, "at least 32 (pixels)"),
    ("data.target_sizes", lambda v: len(v) > 0 and min(v) >= 32, "a non-empty list of sizes of at least 32"),
    ("data.query_size", lambda v: v >= 16, "at least 16 (pixels)"),
    ("data.size_divisor", lambda v: v >= 16 and v % 16 == 0, "a positive multiple of 16 (the feature stride)"),
    ("data.min_query_size", lambda v: v >= 1, "at least 1"),
    ("data.num_workers", lambda v: v >= 0, "0 or more"),
    ("data.cache_mb", lambda v: v >= 0, "0 (off) or more"),
    ("train.absent_fraction", lambda v: 0.0 <= v < 1.0, "at least 0 and below 1"),
    ("train.queries_per_target", lambda v: v >= 1, "at least 1"),
    ("model.fusion", lambda v: v in ("indirect", "cross", "misaligned"), "one of indirect, cross, misaligned"),
    (
        "model.backbone.name",
        lambda v: v in ("resnet18", "resnet50", "swin_v2_s", "tiny"),
        "one of resnet18, resnet50, swin_v2_s, tiny",
    ),
    ("data.query_resize", lambda v: v in ("square", "longer_side"), "one of square, longer_side"),
    ("data.crop_style", lambda v: v in ("detr", "box_safe"), "one of detr, box_safe"),
    (
        "data.query_augment_style",
        lambda v: v in ("official", "official_stage1", "light"),
        "one of official, official_stage1, light",
    ),
    ("model.hidden_dim", lambda v: v >= 32 and v % 32 == 0, "a positive multiple of 32 (GroupNorm's 32 groups)"),
    ("model.num_heads", lambda v: v >= 1, "at least 1"),
    ("model.num_layers", lambda v: v >= 1, "at least 1"),
    ("model.num_queries", lambda v: v >= 1, "at least 1"),
    ("model.num_queries_one2many", lambda v: v >= 0, "0 or more"),
    ("model.one2many_repeats", lambda v: v >= 1, "at least 1"),
    ("model.identity_classes", lambda v: v >= 0, "0 or more"),
    ("model.bias_inputs", lambda v: v in ("linear", "signed_log"), "one of linear, signed_log"),
    ("model.look_forward_reach", lambda v: v in ("previous", "all"), "one of previous, all"),
    ("model.backbone.upsample", lambda v: v in ("learned", "bilinear"), "one of learned, bilinear"),
    ("model.backbone.swin_window", lambda v: v >= 2, "at least 2"),
    (
        "model.backbone.swin_pretrained_windows",
        lambda v: v is None or (len(v) == 4 and all(w >= 2 for w in v)),
        "four windows >= 2, or null",
    ),
    ("model.backbone.drop_path", lambda v: 0 <= v < 1, "a probability, 0 to below 1"),
    ("model.proposals", lambda v: v in ("multi_level", "single_level"), "one of multi_level, single_level"),
    ("model.query_pos", lambda v: v in ("proposals", "refined"), "one of proposals, refined"),
    ("model.padding_features", lambda v: v in ("backbone", "zero"), "one of backbone, zero"),
    ("model.one2many_selection", lambda v: v in ("disjoint", "overlapping"), "one of disjoint, overlapping"),
    ("model.class_logit", lambda v: v in ("linear", "similarity"), "one of linear, similarity"),
    ("loss.proposal_targets", lambda v: v in ("decoder", "all"), "one of decoder, all"),
    ("loss.query_metric_weight", lambda v: v >= 0, "0 (off) or more"),
    ("loss.identity_matched_weight", lambda v: v >= 0, "0 (off) or more"),
    ("loss.query_metric_temperature", lambda v: v > 0, "positive"),
    ("loss.similarity_weight", lambda v: v >= 0, "0 (off) or more"),
    ("train.stage", lambda v: v in (1, 2), "1 or 2"),
    ("train.stage1_recipe", lambda v: v in ("official", "crop_only"), "one of official, crop_only"),
    ("train.batch_size", lambda v: v >= 1, "at least 1"),
    ("train.max_steps", lambda v: v >= 0, "0 or more"),
    ("train.max_minutes", lambda v: v >= 0, "0 (no limit) or more"),
    ("train.lr", lambda v: 0 < v < float("inf"), "a positive number"),
    ("train.warmup_steps", lambda v: v >= 0, "0 or more"),
    ("train.lr_drop_at", lambda v: 0 <= v <= 1, "a fraction of max_steps, 0 to 1"),
    ("train.freeze_backbone_at", lambda v: v is None or 0 <= v <= 1, "a fraction of max_steps, 0 to 1, or null"),
    ("train.clip_grad_norm", lambda v: v >= 0, "0 (off) or more"),
    ("train.grad_accum", lambda v: v >= 1, "at least 1"),
    ("train.amp", lambda v: v in ("auto", "off", "bf16", "fp16"), "one of auto, off, bf16, fp16"),
    ("train.ema_decay", lambda v: 0 <= v < 1, "0 (off) or a decay below 1"),
    ("train.checkpoint_every", lambda v: v >= 1, "at least 1 (steps)"),
    ("train.keep_checkpoints", lambda v: v >= 1, "at least 1"),
    ("train.eval_every", lambda v: v >= -1, "-1 (never), 0 (at the end) or a number of steps"),
    ("train.log_every", lambda v: v >= 1, "at least 1 (steps)"),
    ("train.pretrain_steps", lambda v: v >= 0, "0 (off) or more"),
    ("train.pretrain_batch_size", lambda v: v >= 1, "at least 1"),
    ("eval.repeats", lambda v: v >= 1, "at least 1"),
    ("eval.max_detections", lambda v: v >= 1, "at least 1"),
    ("eval.nms_iou", lambda v: 0 <= v < 1, "0 (off) or an IoU below 1"),
    ("eval.absent_per_image", lambda v: v >= 0, "0 or more"),
    ("eval.max_images", lambda v: v >= 0, "0 (all) or more"),
    ("eval.batch_size", lambda v: v >= 1, "at least 1"),
    ("eval.protocol", lambda v: v in ("coco", "per-image", "both"), "one of coco, per-image, both"),
    ("eval.queries", lambda v: v in ("standard", "official"), "one of standard, official"),
]


def validate(config: Config) -> None:
    """Check every value against what it must be; a :class:`ConfigError` names the key, the value and the rule."""
    for key, ok, rule in _RULES:
        value: Any = config
        for part in key.split("."):
            value = getattr(value, part)
        if not ok(value):
            raise ConfigError(f"config key {key} must be {rule}, got {value!r}")
    if config.model.hidden_dim % config.model.num_heads:
        dim, heads = config.model.hidden_dim, config.model.num_heads
        raise ConfigError(f"model.hidden_dim ({dim}) must be divisible by model.num_heads ({heads})")
    if config.loss.query_metric_weight and not config.model.identity_classes:
        raise ConfigError(
            "loss.query_metric_weight > 0 needs the identity head's features: set model.identity_classes "
            "(> the largest category id), or turn the metric loss off with loss.query_metric_weight=0"
        )
    if config.model.class_logit == "similarity" and not config.model.match_similarity:
        raise ConfigError(
            "model.class_logit=similarity scores by the query-match term: set model.match_similarity=true, or use "
            "model.class_logit=linear"
        )
    if config.loss.similarity_weight and not config.model.match_similarity:
        raise ConfigError(
            "loss.similarity_weight > 0 needs the query-match term: set model.match_similarity=true, or turn the "
            "loss off with loss.similarity_weight=0"
        )
    if config.data.dataset == "coco" and config.data.split not in (1, 2, 3, 4):
        raise ConfigError(f"data.split must be 1, 2, 3 or 4 for COCO, got {config.data.split}")


def from_dict(cls: type, raw: dict[str, Any], prefix: str = "") -> Any:
    """Validate ``raw`` into dataclass ``cls``; unknown keys and wrong types raise :class:`ConfigError`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in raw.items():
        if key not in fields:
            close = [ALIASES[key]] if ALIASES.get(key) in fields else []
            close = close or difflib.get_close_matches(key, list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; valid keys: {sorted(fields)}"
            raise ConfigError(f"unknown config key {prefix}{key}{hint}")
        kwargs[key] = _coerce(hints[key], value, f"{prefix}{key}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, name + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, name)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key {name} must be a list, got {value!r}")
        return [_coerce(args[0], v, name) for v in value]
    if hint is float:
        # YAML 1.1 reads "5e-4" (no dot) as a string, so numeric strings are accepted for floats
        try:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key {name} must be a number, got {value!r}") from None
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"config key {name} must be true or false, got {value!r}")
    if hint is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise ConfigError(f"config key {name} must be an integer, got {value!r}")
    if hint is str and isinstance(value, bool):  # YAML 1.1 reads off / on (and no / yes) as booleans
        value = "on" if value else "off"
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"config key {name} must be a string, got {value!r}")
    return value


def save_config(config: Config, path: str | Path) -> None:
    with Path(path).open("w") as handle:
        yaml.safe_dump(config.to_dict(), handle, sort_keys=False)
