"""What every command shares: one way to turn errors into messages and exit statuses.

A command is written as ``run(argv) -> result`` and decorated with :func:`command`, which gives ``main``:

- from Python (``main([...])``, as the tests call it): returns ``run``'s result and raises its errors;
- from the command line (``main()``, as the console scripts and ``tools/*.py`` call it): returns the exit
  status, 0 on success, 1 when ``failed(result)`` says the work itself failed, 2 on a usage or input error,
  which is printed as one line naming the problem instead of a traceback. Before the work starts, subnormal
  floats are flushed to zero for the process (:mod:`detector.engine.numerics`: 1.16x training on the CPU); a
  Python caller's process is left as it is.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

from ..config import ConfigError
from ..data.images import ImageReadError
from ..engine import distributed
from ..engine.checkpoint import CheckpointError
from ..engine.numerics import flush_denormals
from ..models.backbone import WeightsError


def dry_run(config: Any) -> dict:
    """``--dry-run``: the config is loaded and validated (unknown keys, values out of range); print it resolved,
    as the run would use it, and read or write nothing else."""
    resolved = config.to_dict()
    print(json.dumps({"dry_run": True, "config": resolved}, indent=1))
    return {"dry_run": True, "config": resolved}


USER_ERRORS = (ConfigError, CheckpointError, ImageReadError, WeightsError, FileNotFoundError, ValueError)


def command(
    failed: Callable[[Any], bool] | None = None,
) -> Callable[[Callable[[list[str] | None], Any]], Callable[..., Any]]:
    def decorate(run: Callable[[list[str] | None], Any]) -> Callable[..., Any]:
        @functools.wraps(run)
        def main(argv: list[str] | None = None) -> Any:
            if argv is not None:
                try:
                    return run(argv)
                finally:
                    distributed.cleanup()
            flush_denormals()  # before torch starts its worker threads, which inherit the mode
            try:
                result = run(None)
            except USER_ERRORS as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
            finally:
                distributed.cleanup()
            return 1 if failed is not None and failed(result) else 0

        return main

    return decorate
