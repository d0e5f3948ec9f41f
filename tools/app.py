"""Command-line entry point; the code is in detector/cli/app.py.

Also installed as the console script ia-detr-app.
"""

from detector.cli.app import main

if __name__ == "__main__":
    raise SystemExit(main())
