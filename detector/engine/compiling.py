"""``train.compile``: the training steps through ``torch.compile``, evaluation eager.

A step of the CPU-tiny model spends most of its time in the backbone (convolutions, batch norm, the padding
masks) and the decoder layers (attention, the box bias MLPs, layer norms, the FFN): many small operations that
the compiler fuses. Those modules are compiled in place (``nn.Module.compile``), so parameter names, state dicts
and checkpoints are the eager model's. The decoder layers share one compiled graph (their code and shapes are
the same; the weights are its inputs); the rest of a step (query selection, box refinement, the heads, the loss
and its matcher) stays eager, where its many data-dependent shapes would recompile.

Graphs are compiled for fixed shapes (no dynamic kernels: they were slower here), one per input shape, so the
trainer pads every batch to one grid (:func:`training_grid`). Evaluation runs under :func:`eager`: test images
come at other sizes and in eval mode, and compiling those would cost more than it saves.
"""

from __future__ import annotations

import contextlib
import logging
import math

import torch

from ..config import Config
from ..models.ia_detr import IADETR

logger = logging.getLogger(__name__)


def compiler_problem() -> str | None:
    """Why ``torch.compile`` cannot compile here (on the CPU it builds C++ kernels: a missing or broken C++
    compiler shows up now, on a two-line function, not in the middle of the first step), or None if it can."""
    try:
        torch.compile(lambda x: x * 2 + 1, dynamic=False)(torch.ones(3))
    except Exception as error:  # any failure of the compiler stack
        lines = str(error).strip().splitlines()
        return f"{type(error).__name__}: {lines[0] if lines else ''}"
    return None


def compile_training_parts(model: IADETR) -> list[str]:
    """Compile ``model.backbone`` and each decoder layer in place; returns the compiled modules' names, none
    (after a warning that names the problem) where torch cannot compile here: torch older than 2.6 (its
    ``torch.compiler.set_stance`` keeps evaluation eager) or no working compiler."""
    if not hasattr(torch.compiler, "set_stance"):
        problem = f"it needs torch 2.6 or newer, this is {torch.__version__}"
    else:
        if not torch.cuda.is_available():  # compiling C++ kernels, torch looks for CUDA and warns that it has none
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        problem = compiler_problem()
    if problem is not None:
        logger.warning(
            "train.compile: torch.compile does not work here (%s); training eagerly. It needs torch 2.6 or newer "
            "and, on the CPU, a C++ compiler (e.g. apt install g++); set train.compile=false to silence this",
            problem,
        )
        return []
    names = ["backbone"] + [f"decoder.layers.{i}" for i in range(len(model.decoder.layers))]
    for name in names:
        model.get_submodule(name).compile(dynamic=False)
    return names


def eager() -> contextlib.AbstractContextManager:
    """A context in which compiled modules run their eager code (no compilation, no compiled graphs)."""
    if not hasattr(torch.compiler, "set_stance"):
        return contextlib.nullcontext()
    return torch.compiler.set_stance("force_eager")


def training_grid(config: Config) -> tuple[int, int]:
    """The fixed ``(H, W)`` grid of compiled training batches: ``data.target_max_size`` (the longest side a training
    target can have) rounded up to ``data.size_divisor``, square, so that portrait and landscape batches share it."""
    side = math.ceil(config.data.target_max_size / config.data.size_divisor) * config.data.size_divisor
    return side, side


def compile_for_training(model: IADETR, config: Config) -> tuple[int, int]:
    """What ``train.compile`` asks of a run: compile ``model``'s parts (:func:`compile_training_parts`) and return
    the grid every training batch is padded to (:func:`training_grid`); ``(0, 0)`` (batches keep their own grid)
    when it is off or nothing could be compiled."""
    if not config.train.compile or not compile_training_parts(model):
        return 0, 0
    return training_grid(config)
