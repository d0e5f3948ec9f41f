"""Command-line entry point; the code is in detector/cli/export.py.

Also installed as the console script ia-detr-export.
"""

from detector.cli.export import main

if __name__ == "__main__":
    raise SystemExit(main())
