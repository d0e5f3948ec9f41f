"""Command-line entry point; the code is in detector/cli/make_synthetic.py.

Also installed as the console script ia-detr-make-synthetic.
"""

from detector.cli.make_synthetic import main

if __name__ == "__main__":
    raise SystemExit(main())
