"""Search a photo collection: encode the targets once into an index, then run any number of queries at the
decoder's cost.

In IA-DETR the target's backbone features and two-stage proposals depend on the target alone, and the query's
features on the query alone; only the decoder sees both (``IADETR.encode_target``, ``encode_query``, ``decode``).
An index stores every target's encoding on disk; a search encodes the query once and decodes it against every
stored target.

Layout of an index folder::

    manifest.json      format, the checkpoint's identity and path, the preprocessing, one entry per image
    shards/NNNNNN.pt   torch.save'd dicts of tensors, one per ``tools/index.py`` run, read memory-mapped

The manifest records the checkpoint's fingerprint (a hash of the file) and the preprocessing; an index built with
another checkpoint, another preprocessing or another format is refused with a message that says to rebuild it.
Adding images re-encodes only the files that are new or changed (size or modification time); files that are gone
leave the manifest, and a shard no entry uses any more is deleted.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data.dataset import pad_to_grid
from ..engine.checkpoint import torch_save_atomically, write_text_atomically
from ..models.ia_detr import QueryEncoding, TargetEncoding
from .predictor import CPU_BATCHING_MAX_PARAMETERS, ImageLike, Predictor, _as_boxes

FORMAT = 1
_FIELDS = ("features", "mask", "image_size", "proposal_logits", "proposal_boxes")


class IndexFileError(ValueError):
    """An index that cannot be used as it is (missing, from another checkpoint or preprocessing, damaged)."""


def fingerprint(path: str | Path) -> str:
    """The first 16 hex digits of the SHA-256 of a checkpoint file: its identity in an index."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def preprocessing(predictor: Predictor) -> dict:
    """What decides a target's encoding besides the weights."""
    data = predictor.config.data
    return {
        "test_size": data.test_size,
        "target_max_size": data.target_max_size,
        "query_size": data.query_size,
        "size_divisor": data.size_divisor,
    }


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Atomically; on a failure nothing is left behind and the index is unchanged."""
    try:
        torch_save_atomically(tensors, path)
    except (OSError, RuntimeError) as error:
        raise IndexFileError(f"could not write index shard {path} ({error}); the index is unchanged") from error


@dataclass
class IndexReport:
    images: int
    encoded: int
    removed: int
    unreadable: list[str]
    seconds: float
    bytes_on_disk: int


class TargetIndex:
    """An index folder (see the module docstring). ``TargetIndex(path)`` opens one; :meth:`update` creates or
    extends it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        manifest = self.path / "manifest.json"
        if not manifest.is_file():
            raise IndexFileError(f"{self.path} is not an index (no manifest.json); build one with tools/index.py")
        try:
            self.manifest = json.loads(manifest.read_text())
        except json.JSONDecodeError as error:
            raise IndexFileError(f"{manifest} is damaged ({error}); rebuild the index with tools/index.py") from error
        if self.manifest.get("format") != FORMAT:
            raise IndexFileError(
                f"{self.path} has index format {self.manifest.get('format')}, this version reads {FORMAT}; rebuild "
                f"it with tools/index.py --out a new folder"
            )
        self._shards: dict[str, dict] = {}

    @property
    def entries(self) -> list[dict]:
        return self.manifest["images"]

    def check(self, predictor: Predictor, checkpoint: str | Path) -> None:
        """Refuse an index built with another checkpoint or preprocessing than ``predictor``'s."""
        ours, theirs = fingerprint(checkpoint), self.manifest["checkpoint"]["fingerprint"]
        if ours != theirs:
            raise IndexFileError(
                f"the index {self.path} was built with checkpoint {self.manifest['checkpoint']['path']} "
                f"(fingerprint {theirs}), not {checkpoint} ({ours}); rebuild it with this checkpoint or search with "
                f"that one"
            )
        if preprocessing(predictor) != self.manifest["preprocessing"]:
            raise IndexFileError(
                f"the index {self.path} was built with preprocessing {self.manifest['preprocessing']}, the model "
                f"now uses {preprocessing(predictor)}; rebuild the index"
            )

    @classmethod
    def update(
        cls,
        path: str | Path,
        predictor: Predictor,
        checkpoint: str | Path,
        images: list[Path],
        batch_size: int = 8,
        progress: bool = False,
    ) -> IndexReport:
        """Create the index at ``path`` or bring it up to date with ``images``: encode the new and changed files
        into one new shard, forget the ones that are gone. An existing index from another checkpoint or
        preprocessing is refused (use a new folder)."""
        start = time.perf_counter()
        path = Path(path)
        (path / "shards").mkdir(parents=True, exist_ok=True)
        if (path / "manifest.json").is_file():
            index = cls(path)
            index.check(predictor, checkpoint)
            manifest = index.manifest
        else:
            manifest = {
                "format": FORMAT,
                "checkpoint": {"path": str(Path(checkpoint).resolve()), "fingerprint": fingerprint(checkpoint)},
                "preprocessing": preprocessing(predictor),
                "images": [],
            }
        wanted = {str(p.resolve()): p for p in images}
        stat = {name: Path(name).stat() for name in wanted}
        kept = [
            e
            for e in manifest["images"]
            if e["file"] in stat
            and (e["bytes"], e["mtime_ns"]) == (stat[e["file"]].st_size, stat[e["file"]].st_mtime_ns)
        ]
        removed = len(manifest["images"]) - len(kept)
        known = {e["file"] for e in kept}
        todo = [name for name in wanted if name not in known]
        shard_name = f"{max((int(p.stem) for p in (path / 'shards').glob('*.pt')), default=-1) + 1:06d}.pt"
        tensors: dict[str, torch.Tensor] = {}
        new_entries, unreadable = [], []
        for first in tqdm(range(0, len(todo), batch_size), desc="index", disable=not progress, leave=False):
            names = todo[first : first + batch_size]
            encoded = encode_targets(predictor, names)
            for name, item in zip(names, encoded):
                if isinstance(item, str):
                    unreadable.append(item)
                    continue
                key = str(len(new_entries))
                for field in _FIELDS:
                    tensors[f"{key}.{field}"] = item[field]
                new_entries.append(
                    {
                        "file": name,
                        "bytes": stat[name].st_size,
                        "mtime_ns": stat[name].st_mtime_ns,
                        "width": item["original"][1],
                        "height": item["original"][0],
                        "shard": shard_name,
                        "key": key,
                    }
                )
        if tensors:
            _save_tensors(tensors, path / "shards" / shard_name)
        manifest["images"] = kept + new_entries
        # last: an interrupted update leaves the old manifest valid
        write_text_atomically(path / "manifest.json", json.dumps(manifest, indent=1))
        used = {e["shard"] for e in manifest["images"]}
        for shard in (path / "shards").glob("*.pt"):
            if shard.name not in used:
                shard.unlink()
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return IndexReport(
            len(manifest["images"]), len(new_entries), removed, unreadable, time.perf_counter() - start, size
        )

    def encoding(self, position: int) -> dict[str, torch.Tensor]:
        """The stored tensors of entry ``position`` (memory-mapped)."""
        entry = self.entries[position]
        if entry["shard"] not in self._shards:
            shard = self.path / "shards" / entry["shard"]
            try:
                self._shards[entry["shard"]] = torch.load(shard, map_location="cpu", mmap=True, weights_only=True)
            except (OSError, RuntimeError) as error:
                raise IndexFileError(f"index shard {shard} cannot be read ({error}); rebuild the index") from error
        stored = self._shards[entry["shard"]]
        return {field: stored[f"{entry['key']}.{field}"] for field in _FIELDS}


def encode_targets(predictor: Predictor, images: list[ImageLike]) -> list[dict | str]:
    """Each target's encoding as CPU tensors (``features``, ``mask``, ``image_size``, ``proposal_logits``,
    ``proposal_boxes``, and the ``original`` size), or the reason it could not be read. Each target is encoded on
    its own grid, at least the query extent (so any query fits), as the Predictor pads it against a full-size
    query."""
    model, data = predictor.model, predictor.config.data
    out: list[dict | str] = []
    with torch.no_grad():
        for image in images:
            try:
                tensor, original = predictor._target_tensor(image)
            except (OSError, ValueError) as error:
                out.append(str(error))
                continue
            side = data.query_size
            grid = tuple(math.ceil(max(s, side) / data.size_divisor) * data.size_divisor for s in tensor.shape[1:])
            images_, masks = pad_to_grid([tensor], *grid)
            size = torch.tensor([tuple(tensor.shape[1:])])
            encoded = model.encode_target(
                images_.to(predictor.device), masks.to(predictor.device), size.to(predictor.device)
            )
            out.append(
                {
                    "features": encoded.features[0].cpu().contiguous(),
                    "mask": encoded.mask[0].cpu().contiguous(),
                    "image_size": encoded.image_sizes[0].cpu(),
                    "proposal_logits": encoded.proposal_logits[0].cpu().contiguous(),
                    "proposal_boxes": encoded.proposal_boxes[0].cpu().contiguous(),
                    "original": tuple(int(v) for v in original),
                }
            )
    return out


class Searcher:
    """One query (k-shot: several exemplars) against every image of an index.

    searcher = Searcher("outputs/index", "outputs/demo/train/last.pth")
    hits = searcher.search("query.jpg", query_box=(10, 20, 90, 120), top=20)
    hits[0]   # {"file": ..., "box": [x1, y1, x2, y2], "score": ...}, best first over the collection
    """

    def __init__(self, index: str | Path | TargetIndex, checkpoint: str | Path | None = None, **predictor_args) -> None:
        self.index = index if isinstance(index, TargetIndex) else TargetIndex(index)
        checkpoint = checkpoint or self.index.manifest["checkpoint"]["path"]
        self.predictor = Predictor.from_checkpoint(checkpoint, **predictor_args)
        self.index.check(self.predictor, checkpoint)

    def _groups(self, batch_size: int) -> Iterator[list[int]]:
        """Entries decoded together: the same feature grid, at most ``batch_size`` (one on a CPU for a large
        model, as the Predictor)."""
        predictor = self.predictor
        if predictor.device.type == "cpu" and predictor.parameters > CPU_BATCHING_MAX_PARAMETERS:
            batch_size = 1
        groups: dict[tuple, list[int]] = {}
        for position in range(len(self.index.entries)):
            groups.setdefault(tuple(self.index.encoding(position)["mask"].shape), []).append(position)
        for members in groups.values():
            for first in range(0, len(members), batch_size):
                yield members[first : first + batch_size]

    @torch.no_grad()
    def detections(
        self,
        query_image: ImageLike | list[ImageLike],
        query_box: tuple | list | None = None,
        score_threshold: float = 0.3,
        batch_size: int = 8,
    ) -> list[dict[str, np.ndarray]]:
        """Per index entry (in manifest order): ``{"boxes": (k, 4) xyxy pixels, "scores": (k,)}``."""
        predictor = self.predictor
        queries = query_image if isinstance(query_image, list) else [query_image]
        boxes = _as_boxes(query_box, len(queries))
        if len(boxes) != len(queries):
            raise ValueError(f"got {len(queries)} query images but {len(boxes)} query boxes")
        query_tensors = [predictor._query_tensor(q, b) for q, b in zip(queries, boxes)]
        # once for every target, or (backbone features on padding) once per grid
        shared = predictor.encode_query(query_tensors) if predictor.model.zero_padding else None
        on_grid: dict[tuple, QueryEncoding] = {}
        results: list[dict[str, np.ndarray]] = [{} for _ in self.index.entries]
        device = predictor.device
        for group in self._groups(batch_size):
            stored = [self.index.encoding(p) for p in group]
            target = TargetEncoding(
                *(torch.stack([s[f] for s in stored]).to(device) for f in _FIELDS),
            )
            query = shared
            if query is None:
                grid = tuple(int(n) * predictor.model.backbone.stride for n in target.features.shape[-2:])
                if grid not in on_grid:
                    on_grid[grid] = predictor.encode_query(query_tensors, grid)
                query = on_grid[grid]
            outputs = predictor.model.decode(query, target)
            originals = [(self.index.entries[p]["height"], self.index.entries[p]["width"]) for p in group]
            for position, det in zip(group, predictor._detections(outputs, originals, score_threshold)):
                results[position] = det
        return results

    def search(
        self,
        query_image: ImageLike | list[ImageLike],
        query_box: tuple | list | None = None,
        top: int = 100,
        score_threshold: float = 0.3,
    ) -> list[dict]:
        """The ``top`` best detections over the whole collection, best first: ``{"file", "box", "score"}``."""
        hits = [
            {"file": self.index.entries[position]["file"], "box": box.tolist(), "score": float(score)}
            for position, det in enumerate(self.detections(query_image, query_box, score_threshold))
            for box, score in zip(det["boxes"], det["scores"])
        ]
        return sorted(hits, key=lambda hit: -hit["score"])[:top]
