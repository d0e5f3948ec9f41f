"""Command-line entry point; the code is in detector/cli/build_query_pool.py.

Also installed as the console script ia-detr-build-query-pool.
"""

from detector.cli.build_query_pool import main

if __name__ == "__main__":
    raise SystemExit(main())
