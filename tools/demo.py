"""Command-line entry point; the code is in detector/cli/demo.py.

Also installed as the console script ia-detr-demo.
"""

from detector.cli.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
