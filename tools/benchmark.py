"""Command-line entry point; the code is in detector/cli/benchmark.py.

Also installed as the console script ia-detr-benchmark.
"""

from detector.cli.benchmark import main

if __name__ == "__main__":
    raise SystemExit(main())
