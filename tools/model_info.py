"""Command-line entry point; the code is in detector/cli/model_info.py.

Also installed as the console script ia-detr-model-info.
"""

from detector.cli.model_info import main

if __name__ == "__main__":
    raise SystemExit(main())
