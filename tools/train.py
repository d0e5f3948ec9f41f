"""Command-line entry point; the code is in detector/cli/train.py.

Also installed as the console script ia-detr-train.
"""

from detector.cli.train import main

if __name__ == "__main__":
    raise SystemExit(main())
