"""Flush-to-zero for subnormal floats: on for a command's whole process, worker threads included; opt-out."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from detector.engine.numerics import KEEP_ENV, flush_denormals

SUBNORMAL = 1e-39  # below float32's smallest normal number, 1.18e-38
N = 1 << 22  # large enough for torch to split the multiplication over its two OpenMP threads


def _count_surviving(body: str, keep: bool = False) -> int:
    """Run ``body`` in a fresh interpreter with two OpenMP threads; it prints how many of N subnormal values
    survive a multiplication by one (every one with gradual underflow, none where every thread flushes)."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    env.pop(KEEP_ENV, None)
    if keep:
        env[KEEP_ENV] = "1"
    prelude = f"import torch\ndef survivors():\n    return int((torch.full(({N},), {SUBNORMAL}) * 1.0).ne(0).sum())\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(body)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])


needs_flush_mode = pytest.mark.skipif(
    not torch.set_flush_denormal(False),  # (IEEE's default, set again: True where torch can set the mode at all)
    reason="torch cannot set flush-to-zero on this processor",
)


def test_gradual_underflow_is_the_default_and_keeps_every_subnormal():
    assert _count_surviving("print(survivors())") == N


@needs_flush_mode
def test_a_command_flushes_in_every_thread_after_importing_the_whole_package():
    # the command-line path of a command, after the imports tools/demo.py makes (most of the package): no import
    # may start torch's worker threads before the mode is set, or they would keep gradual underflow
    body = """
        import sys
        import detector.cli.demo, detector.cli.train, detector.cli.eval
        from detector.cli.common import command

        @command()
        def main(argv=None):
            print(survivors())

        sys.argv = ["x"]
        main()
    """
    assert _count_surviving(body) == 0
    assert _count_surviving(body, keep=True) == N  # DETECTOR_KEEP_DENORMALS=1 turns it off


def test_python_callers_keep_their_process_mode(monkeypatch):
    from detector.cli.splits import main as splits_main

    splits_main(["voc"])  # from Python: the process is the caller's, left as it is
    assert (torch.tensor([SUBNORMAL]) * 1.0).item() != 0.0
    monkeypatch.setenv(KEEP_ENV, "1")
    assert flush_denormals() is False
    assert (torch.tensor([SUBNORMAL]) * 1.0).item() != 0.0
