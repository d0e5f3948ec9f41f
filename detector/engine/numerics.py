"""Subnormal floats on the CPU: flushed to zero for the whole process, because they are slow.

A float32 or bfloat16 value below 1.2e-38 in magnitude is *subnormal*, and x86 cores take tens of times longer for
arithmetic that reads or writes one. Attention makes them in numbers: a key whose score lies 88 to 103 below the
row's best gets a softmax weight (and, in the backward pass, a score gradient) in the subnormal range. In the
CPU-tiny detector's trained attention a quarter of one score-gradient matrix was subnormal, and the matrix product
that reads it took 1,020 us instead of 19 us with those entries zero; over a whole training step (trained weights,
real episodes, ``tools/benchmark.py --loading --checkpoint``) flushing them took 27.9 to 32.3 images/s, 1.16x.

Flushing changes a result only where a value would have been below 1.2e-38, far under anything a detector's outputs
or losses can resolve. It is the processor's FTZ/DAZ mode, which is **per thread**: a thread started afterwards
inherits it (POSIX threads take their creator's floating-point environment), a thread already running need not take
it (measured: set after a first parallel operation, the worker thread went on with gradual underflow, and a matrix
product reading subnormals stayed 100x slower). torch's OpenMP workers start at the first parallel operation, so
:func:`flush_denormals` must run before any torch work: every command (``tools/*.py``) calls it first. In your own
script, call it right after the imports.
``DETECTOR_KEEP_DENORMALS=1`` in the environment turns it off (gradual underflow, IEEE's default).
"""

from __future__ import annotations

import os

import torch

KEEP_ENV = "DETECTOR_KEEP_DENORMALS"


def flush_denormals() -> bool:
    """Flush subnormal floats to zero in this thread and every thread it starts from now on (torch's OpenMP
    workers included, when none has started yet). Returns whether the mode is on: False where the environment
    asks to keep them (``DETECTOR_KEEP_DENORMALS=1``) or torch cannot set the mode on this processor."""
    if os.environ.get(KEEP_ENV, "") not in ("", "0"):
        torch.set_flush_denormal(False)
        return False
    return torch.set_flush_denormal(True)
