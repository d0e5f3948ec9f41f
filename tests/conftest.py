from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detector.synthetic.benchmark import BenchmarkSize, generate

TINY = BenchmarkSize(train_images=48, test_images=24)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A tiny embedded benchmark, generated once per test session."""
    root = tmp_path_factory.mktemp("synthetic")
    generate(root, TINY, seed=0, workers=1)
    return root


@pytest.fixture(autouse=True)
def _gradual_underflow_after_each_test():
    """A test that runs a command as the command line does turns on flush-to-zero for the pytest process (in the
    main thread: detector.engine.numerics); put IEEE's default back, so no test depends on the order they run in."""
    yield
    torch.set_flush_denormal(False)
