"""Command-line entry point; the code is in detector/cli/check_dataset.py.

Also installed as the console script ia-detr-check-dataset.
"""

from detector.cli.check_dataset import main

if __name__ == "__main__":
    raise SystemExit(main())
