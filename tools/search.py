"""Command-line entry point; the code is in detector/cli/search.py.

Also installed as the console script ia-detr-search.
"""

from detector.cli.search import main

if __name__ == "__main__":
    raise SystemExit(main())
