"""Checkpoints that lose nothing and load safely.

A checkpoint holds the model (and criterion) weights, optimizer, scheduler, grad scaler, EMA weights, step,
epoch, the sampler's position, RNG states and the resolved config. It is written to a temporary file in the
same folder and renamed into place, so a crash never leaves a half-written checkpoint; the newest ``keep``
step checkpoints are kept, plus ``last.pth`` and ``best.pth``. Loading uses ``torch.load(weights_only=True)``
(tensors and plain containers only, never arbitrary objects). A checkpoint whose model config differs from
the current one is refused with the differing keys.

Format 1 (current) keeps every learned parameter in ``model``. Format 0 (before the identity and contrastive
heads moved from the criterion into the model) kept them under ``train_step`` as ``criterion.*``;
:func:`migrate` turns a format-0 state into format 1 on load.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import BackboneConfig, Config, from_dict
from ..models.build import build_model
from ..models.ia_detr import IADETR

FORMAT = 1
# format 0 -> 1: the training-only heads moved from the criterion into the model
_MOVED_KEYS = {
    "criterion.identity_head.": "identity_head.classifier.",
    "criterion.project_box.": "contrastive_head.object_proj.",
    "criterion.project_query.": "contrastive_head.query_proj.",
}


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, or from another model."""


# model options and the behaviour of the code before each existed
_OPTIONS_BEFORE_THEY_EXISTED = {
    "model": {
        "bias_inputs": "signed_log",
        "one2many_selection": "overlapping",
        "look_forward_reach": "all",
        "padding_features": "zero",
        "query_pos": "refined",
        "proposals": "single_level",
        "content_from_target": True,
    },
    "data": {"query_resize": "longer_side", "crop_style": "box_safe", "query_augment_style": "light"},
    "train": {"stage1_recipe": "crop_only"},
    # torchvision's swin_v2_s preset: window 8, stochastic depth 0.3, its own window for the position-bias inputs
    "model.backbone": {"upsample": "bilinear", "swin_window": 8, "swin_pretrained_windows": None, "drop_path": 0.3},
}


def migrate(state: dict) -> dict:
    """A checkpoint state in the current format: format 0's ``train_step`` (model + criterion weights) becomes
    ``model`` weights, the moved heads renamed; EMA weights get the heads too (format 0 averaged the model
    only, so the live heads stand in). The optimizer state needs no change: the heads are registered last in
    the model, in the order the criterion had them.

    Model and data options added later are filled in with the behaviour the checkpoint was trained with
    (:data:`_OPTIONS_BEFORE_THEY_EXISTED`), so that an older run loads, evaluates and resumes as it was."""
    config = state.get("config") if isinstance(state.get("config"), dict) else None
    for section, options in _OPTIONS_BEFORE_THEY_EXISTED.items():
        parent, _, child = section.rpartition(".")
        holder = (config or {}).get(parent) if parent else config
        values = holder.get(child) if isinstance(holder, dict) else None
        if isinstance(values, dict) and any(key not in values for key in options):
            before = dict(options)
            if section == "model" and not values.get("num_queries_one2many"):  # no one-to-many: the same
                before["one2many_selection"] = "disjoint"
            if section == "model.backbone" and values.get("name") == "tiny":  # Swin/upsampling options: unused
                defaults = dataclasses.asdict(BackboneConfig())
                before = {key: defaults[key] for key in options}
            if parent:
                config = {**config, parent: {**holder, child: {**before, **values}}}
            else:
                config = {**config, section: {**before, **values}}
            state = {**state, "config": config}
    if state.get("format", 0) >= FORMAT:
        return state
    state = dict(state)
    moved = {}
    for key, value in state.get("train_step", {}).items():
        for old, new in _MOVED_KEYS.items():
            if key.startswith(old):
                moved[new + key.removeprefix(old)] = value
    state["model"] = {**state["model"], **moved}
    if state.get("ema"):
        state["ema"] = {**state["ema"], **{f"module.{k}": v for k, v in moved.items()}}
    state.pop("train_step", None)
    state["format"] = FORMAT
    return state


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [list(v) if isinstance(v, tuple) else v for v in random.getstate()],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def torch_save_atomically(value: object, path: Path) -> None:
    """``torch.save`` to a temporary file of this process (two processes never share one), fsync, rename. On a
    failure the temporary file is removed, the file at ``path`` is left as it was, and the error is raised."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            torch.save(value, handle)
            handle.flush()
            os.fsync(handle.fileno())
    except (OSError, RuntimeError):
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file of this process, then rename it over ``path``: a reader never sees a
    half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (:func:`torch_save_atomically`). If the write fails (a full disk),
    the file at ``path`` is left as it was, and the error says what happened."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch_save_atomically(state, path)
    except (OSError, RuntimeError) as error:
        full = (isinstance(error, OSError) and error.errno == errno.ENOSPC) or "write failed" in str(error)
        reason = "no space left on the device" if full else f"{type(error).__name__}: {error}"
        raise CheckpointError(
            f"could not write checkpoint {path} ({reason}); the previous checkpoints in {path.parent} are intact: "
            f"free space and resume with --resume auto"
        ) from error
    return path


_MAGIC = {b"PK\x03\x04": "zip", b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"{": "a JSON file"}


def _kind(path: Path) -> str:
    """What a file looks like from its first bytes: ``zip`` (torch.save), ``pickle`` (legacy), or a description."""
    with path.open("rb") as handle:
        head = handle.read(8)
    if not head:
        return "empty (0 bytes)"
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    return "pickle" if head[:1] == b"\x80" else "not a PyTorch file"


def find_resumable(folder: Path) -> Path | None:
    """The newest checkpoint of a run folder that loads: ``last.pth``, else the newest ``checkpoint_*.pth``
    (a crash or a full disk may have left ``last.pth`` missing or broken)."""
    for candidate in [folder / "last.pth", *sorted(folder.glob("checkpoint_*.pth"), reverse=True)]:
        if candidate.is_file():
            try:
                load_checkpoint(candidate)
            except CheckpointError:
                continue
            return candidate
    return None


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint with ``weights_only=True``; a truncated or foreign file is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    kind = _kind(path)
    if kind not in ("zip", "pickle"):
        raise CheckpointError(
            f"{path} is not an IA-DETR checkpoint: the file is {kind}; give a .pth file written by training"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as error:
        raise CheckpointError(
            f"checkpoint {path} is corrupt, truncated or not an IA-DETR checkpoint ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200]}); use another checkpoint of the run (the folder keeps the last few)"
        ) from error
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path} is not an IA-DETR checkpoint (no 'model' and 'config' entries)")
    return migrate(state)


def model_weights(state: dict) -> dict:
    """The weights to run: the EMA weights when the run kept them, else the model's."""
    if state.get("ema"):
        return {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    return state["model"]


def trained_weights(path: str | Path, config: Config | None = None) -> tuple[dict, Config]:
    """The weights to run from checkpoint ``path`` (EMA weights when the run kept them) and the config they go
    with: the checkpoint's own, or ``config``, whose model section must match the checkpoint's."""
    state = load_checkpoint(path)
    if config is None:
        config = from_dict(Config, state["config"])
    else:
        check_model_config(state["config"]["model"], config.to_dict()["model"], path)
    return model_weights(state), config


def fit_weights(model: nn.Module, weights: dict, path: str | Path) -> None:
    """Load ``weights`` (of checkpoint ``path``) into ``model``, every parameter and buffer, or a clear error."""
    result = model.load_state_dict(weights, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"checkpoint {path} does not fit its model config (missing {result.missing_keys[:5]}, unexpected "
            f"{result.unexpected_keys[:5]}); it was written by another version of the code or edited"
        )


def load_model(path: str | Path, config: Config | None = None) -> tuple[IADETR, Config]:
    """The model of checkpoint ``path`` in eval mode, and its config: the checkpoint's own, or ``config``
    (whose model section must match the checkpoint's; data and eval settings may differ). EMA weights are
    used when the run kept them. The one way every tool loads a trained model."""
    weights, config = trained_weights(path, config)
    model = build_model(config.model, load_weights=False, query_extent=config.data.query_size)
    fit_weights(model, {k: v for k, v in weights.items() if not k.startswith("contrastive_head.")}, path)
    return model.eval(), config


def initialise_from(model: nn.Module, path: str | Path) -> list[str]:
    """Start ``model`` from the model weights of checkpoint ``path`` (``train.init_from``, e.g. stage 1's run):
    parameters present in both must agree in shape; parameters only the model has keep their initial values
    (their names are returned). A checkpoint of another model (other sizes, or no parameter in common) is an
    error naming what differs, before any step runs."""
    state = load_checkpoint(path)
    own = model.state_dict()
    weights = state["model"]
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)}, model {tuple(own[k].shape)}"
        for k, v in weights.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    common = [k for k in weights if k in own]
    if mismatched or not common:
        what = "; ".join(mismatched[:4]) if mismatched else "no parameter in common"
        raise CheckpointError(
            f"train.init_from {path} was trained with another model config ({what}); give a checkpoint of this "
            f"model config (its stage-1 run), or unset train.init_from"
        )
    result = model.load_state_dict({k: weights[k] for k in common}, strict=False)
    return list(result.missing_keys)


def check_model_config(saved: dict, current: dict, path: str | Path) -> None:
    """Refuse a checkpoint whose model config differs from ``current`` (backbone weights may differ)."""
    differences = []

    def walk(a: dict, b: dict, prefix: str) -> None:
        for key in sorted(set(a) | set(b)):
            if f"{prefix}{key}" == "model.backbone.weights":
                continue
            va, vb = a.get(key), b.get(key)
            if isinstance(va, dict) and isinstance(vb, dict):
                walk(va, vb, f"{prefix}{key}.")
            elif va != vb:
                differences.append(f"{prefix}{key}: checkpoint {va!r}, config {vb!r}")

    walk(saved, current, "model.")
    if differences:
        raise CheckpointError(
            f"checkpoint {path} was trained with another model config: "
            + "; ".join(differences)
            + ". Use the checkpoint's own config (the run folder's config.yaml) or retrain."
        )


def prune(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` ``checkpoint_*.pth`` files."""
    steps = sorted(folder.glob("checkpoint_*.pth"))
    for old in steps[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
