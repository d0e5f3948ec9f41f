"""IA-DETR: the one-shot detector.

Target and query image share one padded grid and one backbone. There is no transformer encoder. Object
queries (content: a learned embedding, plus, with ``content_proj``, the target feature at the query's
proposal cell, ``q_i = m_i + y_pi(i)``; position: sine embedding of the top-k proposal boxes scored from the target
features) are decoded by layers whose fusion block reads keys from the query-image features and values
from the target features (Indirect Attention), cell ``j`` of both being the same grid cell. A cell is
masked only where both images are padding. Each query predicts one logit, "matches the query", and a box.

Training adds one-to-many queries (hybrid matching) kept apart from the one-to-one queries by the
self-attention mask; inference uses the one-to-one queries only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import Backbone
from .decoder import Decoder
from .heads import (
    BiasLogit,
    ContentProjection,
    ContrastiveHead,
    ContrastiveOutput,
    IdentityHead,
    IdentityOutput,
    SimilarityLogit,
    StageOneHeads,
    StageOneOutput,
)
from .position_encoding import sine_grid_embedding
from .proposals import ProposalHead, select_top_k


@dataclass
class DetectorOutput:
    """Detector outputs; boxes are ``cxcywh`` normalised by each target image's own (unpadded) size.

    Attributes:
        logits, boxes: final layer, one-to-one queries: ``(B, Nq)``, ``(B, Nq, 4)``.
        aux: earlier layers' ``(logits, boxes)``.
        proposals: dense two-stage proposals ``(logits (B, h*w), boxes (B, h*w, 4))``.
        one2many: every layer's ``(logits, boxes)`` of the one-to-many queries (training only).
        hidden: final-layer one-to-one query features ``(B, Nq, d)``.
        query_embedding: max-pooled query-image features ``(B, d)``.
        similarity: every layer's query-match term of the one-to-one logits ``(L, B, Nq)``
            (:class:`~.heads.SimilarityLogit`; already in ``logits`` and ``aux``), when the model has one.
        identity, contrastive, stage_one: outputs of the training-only heads, when the model has them and is
            training.
    """

    logits: torch.Tensor
    boxes: torch.Tensor
    aux: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    proposals: tuple[torch.Tensor, torch.Tensor] | None = None
    one2many: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    hidden: torch.Tensor | None = None
    query_embedding: torch.Tensor | None = None
    similarity: torch.Tensor | None = None
    identity: IdentityOutput | None = None
    contrastive: ContrastiveOutput | None = None
    stage_one: StageOneOutput | None = None


@dataclass
class TargetEncoding:
    """What the detector derives from target images alone (:meth:`IADETR.encode_target`): backbone features
    ``(B, d, h, w)`` (zero on padding), the feature mask ``(B, h, w)`` (``True`` = padding), the unpadded image
    sizes ``(B, 2)`` and the dense proposals, logits ``(B, h*w)`` and ``cxcywh`` boxes ``(B, h*w, 4)``. One
    encoding serves any number of queries."""

    features: torch.Tensor
    mask: torch.Tensor
    image_sizes: torch.Tensor
    proposal_logits: torch.Tensor
    proposal_boxes: torch.Tensor

    def expand(self, batch: int) -> TargetEncoding:
        """The same encoding repeated to ``batch`` rows (a view), if it has one row."""
        if self.features.shape[0] == batch:
            return self
        if self.features.shape[0] != 1:
            raise ValueError(f"cannot pair {self.features.shape[0]} targets with {batch} queries; give 1 or {batch}")
        return TargetEncoding(*(t.expand(batch, *t.shape[1:]) for t in self._tensors()))

    def rows(self, index: slice | list[int] | torch.Tensor) -> TargetEncoding:
        return TargetEncoding(*(t[index] for t in self._tensors()))

    def _tensors(self) -> list[torch.Tensor]:
        # (not dataclasses.astuple: it deep-copies, which tensors inside an autograd graph refuse)
        return [getattr(self, f.name) for f in dataclasses.fields(self)]


@dataclass
class QueryEncoding:
    """Query-image features ``(B, d, hq, wq)`` (k-shot: averaged over the exemplars) and mask ``(B, hq, wq)`` on
    the query's own grid (:meth:`IADETR.encode_query`)."""

    features: torch.Tensor
    mask: torch.Tensor
    # encoded over a whole canvas with the backbone's features on its padding (model.padding_features: backbone):
    # valid only on that canvas's grid
    canvas: bool = False

    def on_grid(self, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and mask padded (zeros, masked) to a target's ``(h, w)`` grid. A grid smaller than the
        query's is allowed only where the query is padding. A canvas encoding is used only on its own grid."""
        features, mask = self.features, self.mask
        h, w = mask.shape[-2:]
        if self.canvas and (h, w) != tuple(grid) and not torch.jit.is_tracing():
            raise ValueError(
                f"this query was encoded on a {h}x{w}-cell canvas, with the backbone's features on its padding "
                f"(model.padding_features: backbone); encode it on the target's {grid[0]}x{grid[1]} grid"
            )
        if h > grid[0] or w > grid[1]:
            if not torch.jit.is_tracing() and not bool(mask[:, grid[0] :].all() and mask[:, :, grid[1] :].all()):
                raise ValueError(
                    f"the query covers a {h}x{w} feature grid, larger than the target's {grid[0]}x{grid[1]}; "
                    f"encode targets on a grid of at least the query extent"
                )
            features, mask = features[..., : grid[0], : grid[1]], mask[..., : grid[0], : grid[1]]
            h, w = mask.shape[-2:]
        features = F.pad(features, (0, grid[1] - w, 0, grid[0] - h))
        mask = F.pad(mask, (0, grid[1] - w, 0, grid[0] - h), value=True)
        return features, mask

    def rows_of(self, index: int) -> QueryEncoding:
        """Row ``index`` as a batch of one."""
        return QueryEncoding(self.features[index : index + 1], self.mask[index : index + 1], self.canvas)


class IADETR(nn.Module):
    """The detector, composed from its parts; the optional heads are modules or ``None`` (off):
    ``content_proj`` (:class:`ContentProjection`), ``similarity`` (:class:`SimilarityLogit`), and the
    training-only ``identity_head`` (:class:`IdentityHead`), ``contrastive_head`` (:class:`ContrastiveHead`) and
    ``stage_one`` (:class:`StageOneHeads`, the official stage-1 recipe).
    """

    def __init__(
        self,
        backbone: Backbone,
        decoder: Decoder,
        proposal_head: ProposalHead,
        hidden_dim: int,
        num_queries: int,
        num_queries_one2many: int = 0,
        query_extent: int = 300,
        content_proj: ContentProjection | None = None,
        similarity: SimilarityLogit | None = None,
        identity_head: IdentityHead | None = None,
        contrastive_head: ContrastiveHead | None = None,
        one2many_disjoint: bool = True,
        stage_one: StageOneHeads | None = None,
        zero_padding: bool = True,
        class_from_features: bool = True,
    ) -> None:
        """``class_from_features``: each layer's class logit is a linear head on the object's features (plus
        ``similarity``); ``False``: one learned bias per layer (:class:`~.heads.BiasLogit`), so that the score
        is ``similarity``'s query match alone.

        ``one2many_disjoint``: the one-to-many queries take the proposals ranked after the one-to-one ones
        (one top-``(Nq + Nm)`` ranking split in two, as the official code); ``False``: the top ``Nm`` again.

        ``zero_padding``: features of padding cells are zero, and the backbone sees only the query patch's
        top-left extent, so a query's encoding does not depend on the grid it is padded to (encode once, decode
        against targets of any size). ``False`` (the official code): the backbone runs over each whole padded
        canvas and padding cells keep its features (the response to zero pixels), so a query is encoded on
        each target grid."""
        super().__init__()
        self.one2many_disjoint = one2many_disjoint
        self.zero_padding = zero_padding
        self.query_extent = query_extent  # longest side of a query patch (data.query_size)
        self.backbone, self.decoder, self.proposal_head = backbone, decoder, proposal_head
        self.hidden_dim = hidden_dim
        self.num_queries, self.num_queries_one2many = num_queries, num_queries_one2many
        self.query_content = nn.Embedding(num_queries + num_queries_one2many, hidden_dim)
        self.content_proj = content_proj
        self.class_heads = nn.ModuleList(
            nn.Linear(hidden_dim, 1) if class_from_features else BiasLogit() for _ in decoder.layers
        )
        self.similarity = similarity
        # registered last, in this order: the parameter order of checkpoints from before the heads moved here
        self.identity_head, self.contrastive_head = identity_head, contrastive_head
        self.stage_one = stage_one
        prior = -4.595  # sigmoid(prior) = 0.01, the focal-loss prior
        for head in self.class_heads:
            nn.init.constant_(head.bias, prior)
        nn.init.constant_(proposal_head.score.bias, prior)

    def encode_target(
        self, target_images: torch.Tensor, target_masks: torch.Tensor, image_sizes: torch.Tensor
    ) -> TargetEncoding:
        """Everything the detector derives from the target images alone: backbone features (zero on padding),
        the feature mask and the dense two-stage proposals. ``target_images (B, 3, H, W)``, ``target_masks
        (B, H, W)`` (``True`` = padding), ``image_sizes (B, 2)``: each target's unpadded ``(height, width)``."""
        features, mask = self.backbone(target_images, target_masks)
        if self.zero_padding:
            features = features * ~mask[:, None]
        h, w = features.shape[-2:]
        sequence = features.flatten(2).transpose(1, 2)
        logits, boxes = self.proposal_head(sequence, ~mask.flatten(1), (h, w), image_sizes)
        return TargetEncoding(features, mask, image_sizes, logits, boxes)

    def encode_query(self, query_images: torch.Tensor, query_masks: torch.Tensor) -> QueryEncoding:
        """Features and mask of one query image per row ``(B, 3, H, W)``, or of ``k`` per row ``(B, k, 3, H, W)``,
        on their own grid (the top-left ``query_extent`` pixels, rounded up to the stride; :meth:`decode` pads
        them to the target's grid).

        The backbone runs only where the query patches are; the extent is static, so the model exports.
        k-shot: the ``k`` feature maps are averaged cell by cell over the patches valid there, and a cell is
        valid if it is valid in any of them.
        """
        if not self.zero_padding:
            return self._encode_query_canvas(query_images, query_masks)
        stride = self.backbone.stride
        extent = -(-self.query_extent // stride) * stride
        height, width = min(extent, query_images.shape[-2]), min(extent, query_images.shape[-1])
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            outside = ~query_masks[..., height:, :].all() or ~query_masks[..., :, width:].all()
            if bool(outside):
                raise ValueError(
                    f"query patches must fit in the top-left {extent}x{extent} pixels (the model's "
                    f"query_extent); resize them to data.query_size"
                )
        images = query_images[..., :height, :width].reshape(-1, 3, height, width)
        features, masks = self.backbone(images, query_masks[..., :height, :width].reshape(-1, height, width))
        features = features * ~masks[:, None]
        if query_images.dim() == 4:
            return QueryEncoding(features, masks)
        b, k = query_images.shape[:2]
        features, masks = features.unflatten(0, (b, k)), masks.unflatten(0, (b, k))
        weights = (~masks).float()[:, :, None]
        features = (features * weights).sum(1) / weights.sum(1).clamp(min=1)
        return QueryEncoding(features, masks.all(dim=1))

    def _encode_query_canvas(self, query_images: torch.Tensor, query_masks: torch.Tensor) -> QueryEncoding:
        """The official code's query encoding: the backbone over the whole padded canvas, padding features kept
        (k-shot: the plain mean of the ``k`` maps, padding included)."""
        height, width = query_images.shape[-2:]
        images, masks = query_images.reshape(-1, 3, height, width), query_masks.reshape(-1, height, width)
        features, masks = self.backbone(images, masks)
        if query_images.dim() == 4:
            return QueryEncoding(features, masks, canvas=True)
        b, k = query_images.shape[:2]
        features, masks = features.unflatten(0, (b, k)), masks.unflatten(0, (b, k))
        return QueryEncoding(features.mean(1), masks.all(dim=1), canvas=True)

    def forward(
        self,
        target_images: torch.Tensor,
        target_masks: torch.Tensor,
        query_images: torch.Tensor,
        query_masks: torch.Tensor,
        image_sizes: torch.Tensor,
        class_boxes: list[torch.Tensor] | None = None,
        target_index: torch.Tensor | None = None,
    ) -> DetectorOutput:
        """Args:
            target_images ``(B, 3, H, W)``, target_masks ``(B, H, W)`` (``True`` = padding);
            query_images ``(B, 3, H, W)`` or ``(B, k, 3, H, W)`` on the same grid, query_masks likewise;
            image_sizes ``(B, 2)``: each target's unpadded ``(height, width)`` in pixels;
            class_boxes: training only, for the identity head: per query row the ``cxcywh`` boxes (normalised)
            of its target whose class is known;
            target_index: ``(Q,)``, the target row each of ``Q`` query rows searches (several queries per
            target: each target is encoded once, its encoding shared by its queries, and the outputs have ``Q``
            rows); None pairs row ``b`` with row ``b``.

        The composition of :meth:`encode_target`, :meth:`encode_query` and :meth:`decode`.
        """
        target = self.encode_target(target_images, target_masks, image_sizes)
        if target_index is not None:
            target = target.rows(target_index)
        return self.decode(self.encode_query(query_images, query_masks), target, class_boxes)

    def decode(
        self, query: QueryEncoding, target: TargetEncoding, class_boxes: list[torch.Tensor] | None = None
    ) -> DetectorOutput:
        """The detections of ``query`` in ``target``: the only part that sees both. Rows pair up; a batch of one
        on either side is paired with every row of the other (one query against many encoded targets, or many
        queries against one target).

        The query's features are padded to the target's grid (features of padding cells are zero in both; with
        ``zero_padding`` off the query must have been encoded on the target's grid); a cell is masked for
        attention only where both are padding.
        """
        b = max(query.features.shape[0], target.features.shape[0])
        target = target.expand(b)
        target_feats, target_mask = target.features, target.mask
        b, d, h, w = target_feats.shape
        query_feats, query_mask = query.on_grid((h, w))
        query_feats, query_mask = query_feats.expand(b, -1, -1, -1), query_mask.expand(b, -1, -1)
        image_sizes = target.image_sizes
        pos_t = sine_grid_embedding(target_mask, d).flatten(2).transpose(1, 2)
        pos_q = sine_grid_embedding(query_mask, d).flatten(2).transpose(1, 2)
        target_seq = target_feats.flatten(2).transpose(1, 2)
        query_seq = query_feats.flatten(2).transpose(1, 2)
        padding = (target_mask & query_mask).flatten(1)
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling() and not bool(padding.any()):
            padding = None  # no key is padding: attention runs without a mask (faster; exported graphs keep it)

        proposal_logits, proposal_boxes = target.proposal_logits, target.proposal_boxes
        n_o2m = self.num_queries_one2many if self.training else 0
        reference, cells = self.select_queries(proposal_logits, proposal_boxes, n_o2m)
        attn_mask = self._group_mask(reference.device) if n_o2m else None
        queries = self.query_content.weight[None, : reference.shape[1]].expand(b, -1, -1)
        if self.content_proj is not None:
            if self.proposal_head.multi_level:  # the stride-16 cell under each proposal's centre
                cells = self._cells_under(reference, (h, w), image_sizes)
            picked = torch.gather(target_seq, 1, cells[..., None].expand(-1, -1, d))
            queries = queries + self.content_proj(picked)
        out = self.decoder(
            queries, reference, query_seq + pos_q, target_seq + pos_t, padding, (h, w), image_sizes, attn_mask
        )
        # max-pooled: the mean of group-normalised features is the same for every image
        query_embedding = query_seq.masked_fill(query_mask.flatten(1)[..., None], float("-inf")).amax(1)
        query_embedding = torch.nan_to_num(query_embedding, neginf=0.0)
        logits = torch.stack([head(hid).squeeze(-1) for head, hid in zip(self.class_heads, out.hidden)])
        nq = self.num_queries
        similarity = None
        if self.similarity is not None:
            similarity = self.similarity(out.hidden, query_embedding)
            logits = logits + similarity
            similarity = similarity[:, :, :nq]
        hidden = out.hidden[-1, :, :nq]
        identity = contrastive = None
        if self.training and self.identity_head is not None:
            identity = self.identity_head(query_embedding, hidden, target_feats, class_boxes, image_sizes)
        if self.training and self.contrastive_head is not None:
            contrastive = self.contrastive_head(hidden, query_embedding)
        stage_one = self.stage_one(out.hidden) if self.training and self.stage_one is not None else None
        layers = list(zip(logits[:, :, :nq], out.boxes[:, :, :nq]))
        return DetectorOutput(
            logits=layers[-1][0],
            boxes=layers[-1][1],
            aux=layers[:-1],
            proposals=(proposal_logits, proposal_boxes),
            one2many=list(zip(logits[:, :, nq:], out.boxes[:, :, nq:])) if n_o2m else [],
            hidden=hidden,
            query_embedding=query_embedding,
            similarity=similarity,
            identity=identity,
            contrastive=contrastive,
            stage_one=stage_one,
        )

    def select_queries(
        self, logits: torch.Tensor, boxes: torch.Tensor, n_o2m: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference boxes ``(B, Nq + n_o2m, 4)`` and proposal cells of the one-to-one queries, then the
        one-to-many ones: the proposals ranked after the one-to-one ones when disjoint, else the top ``n_o2m``
        again."""
        if n_o2m and self.one2many_disjoint:
            return select_top_k(logits, boxes, self.num_queries + n_o2m)
        reference, cells = select_top_k(logits, boxes, self.num_queries)
        if n_o2m:
            reference_o2m, cells_o2m = select_top_k(logits, boxes, n_o2m)
            reference, cells = torch.cat([reference, reference_o2m], 1), torch.cat([cells, cells_o2m], 1)
        return reference, cells

    def _cells_under(self, boxes: torch.Tensor, grid: tuple[int, int], image_sizes: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` flat indices of the feature cells under the centres of ``boxes (B, N, 4)`` (``cxcywh``
        normalised by ``image_sizes (B, 2)``)."""
        stride = self.backbone.stride
        size = image_sizes.to(boxes.dtype)
        col = (boxes[..., 0] * size[:, 1:2] / stride).floor().long().clamp(0, grid[1] - 1)
        row = (boxes[..., 1] * size[:, 0:1] / stride).floor().long().clamp(0, grid[0] - 1)
        return row * grid[1] + col

    def _group_mask(self, device: torch.device) -> torch.Tensor:
        """``(Nq + Nm, Nq + Nm)`` bool, ``True`` = blocked: one-to-one and one-to-many queries never attend
        to each other."""
        total = self.num_queries + self.num_queries_one2many
        mask = torch.zeros(total, total, dtype=torch.bool, device=device)
        mask[: self.num_queries, self.num_queries :] = True
        mask[self.num_queries :, : self.num_queries] = True
        return mask
