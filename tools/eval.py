"""Command-line entry point; the code is in detector/cli/eval.py.

Also installed as the console script ia-detr-eval.
"""

from detector.cli.eval import main

if __name__ == "__main__":
    raise SystemExit(main())
