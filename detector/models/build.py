"""Build model, criterion and postprocessor from a config: the only place that reads ``ModelConfig``."""

from __future__ import annotations

import logging

from torch import nn

from ..attention import BoxRelativePositionBias, DoubleCrossAttention, IndirectAttention, MisalignedAttention
from ..config import Config, EvalConfig, ModelConfig
from .backbone import STRIDE, Backbone, TinyBackbone, TorchvisionBackbone, load_backbone_weights
from .criterion import SetCriterion
from .decoder import Decoder, DecoderLayer
from .heads import ContentProjection, ContrastiveHead, IdentityHead, SimilarityLogit, StageOneHeads
from .ia_detr import IADETR
from .matcher import HungarianMatcher
from .postprocess import PostProcessor
from .proposals import MultiLevelProposalHead, ProposalHead

logger = logging.getLogger(__name__)
FUSIONS = ("indirect", "cross", "misaligned")


def build_fusion(
    kind: str, dim: int, heads: int, bias_hidden: int, dropout: float, bias_inputs: str = "linear"
) -> nn.Module:
    if kind == "indirect":
        bias = BoxRelativePositionBias(heads, bias_hidden, STRIDE, bias_inputs)
        return IndirectAttention(dim, heads, bias, dropout)
    if kind == "cross":
        return DoubleCrossAttention(dim, heads, dropout)
    if kind == "misaligned":
        return MisalignedAttention(dim, heads, dropout)
    raise ValueError(f"unknown model.fusion {kind!r}; choose one of {', '.join(FUSIONS)}")


def build_backbone(config: ModelConfig, load_weights: bool = True) -> Backbone:
    spec = config.backbone
    if spec.name == "tiny":
        body = TinyBackbone(spec.width)
    else:
        body = TorchvisionBackbone(
            spec.name, spec.upsample, spec.swin_window, spec.swin_pretrained_windows, spec.drop_path
        )
    if spec.weights and load_weights:
        report = load_backbone_weights(body, spec.name, spec.weights)
        logger.info(
            "backbone weights %s: %d tensors loaded (%d renamed from the Swin reference code's names); "
            "missing %d: %s; unexpected %d: %s",
            spec.weights,
            report["loaded"],
            report["converted"],
            len(report["missing"]),
            report["missing"][:8],
            len(report["unexpected"]),
            report["unexpected"][:8],
        )
    return Backbone(body, config.hidden_dim, trainable=spec.trainable)


def build_model(
    config: ModelConfig,
    load_weights: bool = True,
    query_extent: int = 300,
    contrastive_dim: int = 0,
    stage1_recipe: str = "official",
) -> IADETR:
    """The detector of ``config``; ``contrastive_dim > 0`` adds the stage-1 heads: the official recipe's object
    logits and per-layer projections (``stage1_recipe: official``), or the crop-only recipe's projections."""
    dim = config.hidden_dim
    official_stage1 = stage1_recipe == "official"
    layers = [
        DecoderLayer(
            build_fusion(
                config.fusion, dim, config.num_heads, config.bias_hidden_dim, config.dropout, config.bias_inputs
            ),
            dim,
            config.num_heads,
            config.ffn_dim,
            config.dropout,
        )
        for _ in range(config.num_layers)
    ]
    return IADETR(
        build_backbone(config, load_weights),
        Decoder(layers, dim, config.look_forward_twice, config.look_forward_reach, config.query_pos),
        MultiLevelProposalHead(dim, STRIDE) if config.proposals == "multi_level" else ProposalHead(dim, STRIDE),
        dim,
        config.num_queries,
        config.num_queries_one2many,
        query_extent,
        one2many_disjoint=config.one2many_selection == "disjoint",
        zero_padding=config.padding_features == "zero",
        class_from_features=config.class_logit == "linear",
        content_proj=ContentProjection(dim) if config.content_from_target else None,
        similarity=SimilarityLogit(dim, config.num_layers) if config.match_similarity else None,
        identity_head=IdentityHead(dim, config.identity_classes, STRIDE) if config.identity_classes else None,
        contrastive_head=ContrastiveHead(dim, contrastive_dim) if contrastive_dim and not official_stage1 else None,
        stage_one=StageOneHeads(dim, config.num_layers, contrastive_dim)
        if contrastive_dim and official_stage1
        else None,
    )


def build_criterion(config: Config) -> SetCriterion:
    loss = config.loss
    matcher = HungarianMatcher(
        loss.match_class_cost, loss.match_l1_cost, loss.match_giou_cost, loss.focal_alpha, loss.focal_gamma
    )
    return SetCriterion(
        matcher,
        loss.class_weight,
        loss.l1_weight,
        loss.giou_weight,
        loss.focal_alpha,
        loss.focal_gamma,
        config.model.one2many_repeats,
        loss.one2many_weight,
        loss.identity_weight,
        loss.contrastive_weight,
        loss.contrastive_temperature,
        loss.proposal_targets,
        loss.query_metric_weight,
        loss.query_metric_temperature,
        loss.similarity_weight,
        loss.identity_matched_weight,
    )


def build_postprocessor(config: EvalConfig) -> PostProcessor:
    return PostProcessor(config.max_detections, config.nms_iou)


def build(config: Config, load_weights: bool = True) -> tuple[IADETR, SetCriterion, PostProcessor]:
    """Model, criterion and postprocessor of ``config`` (for training; inference: ``load_model``)."""
    model = build_model(
        config.model, load_weights, config.data.query_size, config.loss.contrastive_dim, config.train.stage1_recipe
    )
    return model, build_criterion(config), build_postprocessor(config.eval)
