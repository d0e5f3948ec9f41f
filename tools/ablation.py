"""Command-line entry point; the code is in detector/cli/ablation.py.

Also installed as the console script ia-detr-ablation.
"""

from detector.cli.ablation import main

if __name__ == "__main__":
    raise SystemExit(main())
