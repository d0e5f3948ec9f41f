"""A local web page for one-shot detection: upload a query, click two corners of the object, upload targets, see
every match, move the score threshold, download the detections (COCO results JSON).

    python tools/app.py --checkpoint outputs/demo/train/last.pth      # then open the address it prints

Needs the optional extra: pip install -e ".[app]" (Gradio).
"""

from __future__ import annotations

import argparse
import os

from ..inference.predictor import Predictor
from .common import command


@command()
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--host", default="127.0.0.1", help="127.0.0.1: this machine only")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine
    try:
        import gradio  # noqa: F401

        from ..app import build_app
    except ImportError as error:
        raise ValueError(f'the web page needs Gradio ({error}): pip install -e ".[app]"') from error
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device)
    app = build_app(predictor)
    print(f"IA-DETR page for {args.checkpoint}: http://{args.host}:{args.port}  (Ctrl+C stops it)")
    app.queue().launch(server_name=args.host, server_port=args.port, share=False, show_error=True)
    return {"url": f"http://{args.host}:{args.port}"}


if __name__ == "__main__":
    raise SystemExit(main())
