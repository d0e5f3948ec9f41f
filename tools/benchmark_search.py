"""Command-line entry point; the code is in detector/cli/benchmark_search.py.

Also installed as the console script ia-detr-benchmark-search.
"""

from detector.cli.benchmark_search import main

if __name__ == "__main__":
    raise SystemExit(main())
