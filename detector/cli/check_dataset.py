"""Check a COCO-format data set (JSON + image folder) and list every problem found. Exit code 1 if any."""

from __future__ import annotations

import argparse
import json

from ..data.checker import check_coco
from .common import command


@command(failed=lambda report: not report["ok"])
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--annotations", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--min-query-size", type=float, default=16.0)
    parser.add_argument("--no-read", action="store_true", help="only check that image files exist")
    parser.add_argument("--max-list", type=int, default=20, help="problems listed per kind")
    args = parser.parse_args(argv)
    report = check_coco(args.annotations, args.images, args.min_query_size, not args.no_read)
    print(json.dumps(report["counts"]))
    for kind, items in report["problems"].items():
        if items:
            print(f"{kind}: {len(items)}")
            for item in items[: args.max_list]:
                print(f"  {item}")
    print("OK: no problems found" if report["ok"] else "problems found (see above)")
    return report


if __name__ == "__main__":
    raise SystemExit(main())
