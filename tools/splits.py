"""Command-line entry point; the code is in detector/cli/splits.py.

Also installed as the console script ia-detr-splits.
"""

from detector.cli.splits import main

if __name__ == "__main__":
    raise SystemExit(main())
