"""Command-line entry point; the code is in detector/cli/attention_study.py.

Also installed as the console script ia-detr-attention-study.
"""

from detector.cli.attention_study import main

if __name__ == "__main__":
    raise SystemExit(main())
