"""Command-line entry point; the code is in detector/cli/index.py.

Also installed as the console script ia-detr-index.
"""

from detector.cli.index import main

if __name__ == "__main__":
    raise SystemExit(main())
