"""Build model, criterion and postprocessor from a config: the only place that reads ``ModelConfig``."""

from __future__ import annotations

import logging

from torch import nn

from ..attention import BoxRelativePositionBias, DoubleCrossAttention, IndirectAttention, MisalignedAttention
from ..config import Config, ModelConfig
from .backbone import STRIDE, Backbone, TinyBackbone, TorchvisionBackbone, load_backbone_weights
from .criterion import SetCriterion
from .decoder import Decoder, DecoderLayer
from .ia_detr import IADETR
from .matcher import HungarianMatcher
from .postprocess import PostProcessor
from .proposals import ProposalHead

logger = logging.getLogger(__name__)
FUSIONS = ("indirect", "cross", "misaligned")


def build_fusion(kind: str, dim: int, heads: int, bias_hidden: int, dropout: float) -> nn.Module:
    if kind == "indirect":
        return IndirectAttention(dim, heads, BoxRelativePositionBias(heads, bias_hidden, STRIDE), dropout)
    if kind == "cross":
        return DoubleCrossAttention(dim, heads, dropout)
    if kind == "misaligned":
        return MisalignedAttention(dim, heads, dropout)
    raise ValueError(f"unknown model.fusion {kind!r}; choose one of {', '.join(FUSIONS)}")


def build_backbone(config: ModelConfig, load_weights: bool = True) -> Backbone:
    spec = config.backbone
    body = TinyBackbone(spec.width) if spec.name == "tiny" else TorchvisionBackbone(spec.name)
    if spec.weights and load_weights:
        report = load_backbone_weights(body, spec.name, spec.weights)
        logger.info(
            "backbone weights %s: %d missing, %d unexpected keys",
            spec.weights,
            len(report["missing"]),
            len(report["unexpected"]),
        )
    return Backbone(body, config.hidden_dim, trainable=spec.trainable)


def build_model(config: ModelConfig, load_weights: bool = True, query_extent: int = 300) -> IADETR:
    layers = [
        DecoderLayer(
            build_fusion(config.fusion, config.hidden_dim, config.num_heads, config.bias_hidden_dim, config.dropout),
            config.hidden_dim,
            config.num_heads,
            config.ffn_dim,
            config.dropout,
        )
        for _ in range(config.num_layers)
    ]
    decoder = Decoder(layers, config.hidden_dim, config.look_forward_twice)
    return IADETR(
        build_backbone(config, load_weights),
        decoder,
        ProposalHead(config.hidden_dim, STRIDE),
        config.hidden_dim,
        config.num_queries,
        config.num_queries_one2many,
        query_extent,
        config.content_from_target,
        config.match_similarity,
    )


def build(config: Config, load_weights: bool = True) -> tuple[IADETR, SetCriterion, PostProcessor]:
    """Model, criterion and postprocessor of ``config``."""
    loss, model_config = config.loss, config.model
    matcher = HungarianMatcher(
        loss.match_class_cost, loss.match_l1_cost, loss.match_giou_cost, loss.focal_alpha, loss.focal_gamma
    )
    criterion = SetCriterion(
        matcher,
        loss.class_weight,
        loss.l1_weight,
        loss.giou_weight,
        loss.focal_alpha,
        loss.focal_gamma,
        model_config.one2many_repeats,
        loss.one2many_weight,
        model_config.identity_classes,
        model_config.hidden_dim,
        loss.identity_weight,
        loss.contrastive_dim,
        loss.contrastive_weight,
        loss.contrastive_temperature,
    )
    model = build_model(model_config, load_weights, config.data.query_size)
    return model, criterion, PostProcessor(config.eval.max_detections, config.eval.nms_iou)
