"""Command-line entry point; the code is in detector/cli/infer.py.

Also installed as the console script ia-detr-infer.
"""

from detector.cli.infer import main

if __name__ == "__main__":
    raise SystemExit(main())
