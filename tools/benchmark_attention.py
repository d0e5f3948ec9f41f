"""Command-line entry point; the code is in detector/cli/benchmark_attention.py.

Also installed as the console script ia-detr-benchmark-attention.
"""

from detector.cli.benchmark_attention import main

if __name__ == "__main__":
    raise SystemExit(main())
