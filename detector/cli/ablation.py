"""The fusion ablation: Indirect Attention against double cross-attention and misaligned attention, the same
recipe and budget otherwise, several seeds each, as one table.

Each (fusion, seed) run trains ``--config`` with ``model.fusion`` and ``train.seed`` set, in its own folder under
``--out``, then evaluates its last checkpoint. The sweep can be stopped and started again: a finished run (its
``eval.json`` written) is not repeated, an unfinished one resumes from its newest checkpoint. The table
(``ablation.md``, ``ablation.json`` beside the runs) gives, per fusion, the mean and the spread (population
standard deviation) over seeds of seen and unseen AP50 and AP, every seed's value, the training minutes, and the
paper's VOC ablation for reference (a different data set and scale: compare the order, not the values).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from ..config import load_config
from ..engine.checkpoint import write_text_atomically
from ..engine.evaluate import evaluate_checkpoint
from ..engine.trainer import train
from ..synthetic.benchmark import generate
from .common import command

FUSIONS = ("indirect", "cross", "misaligned")
NAMES = {"indirect": "Indirect Attention", "cross": "double cross-attention", "misaligned": "misaligned attention"}
# the paper's VOC ablation (seen / unseen AP50), its table of attention blocks
PAPER_VOC = {"indirect": (82.9, 65.1), "cross": (77.9, 62.3), "misaligned": (29.2, 33.8)}
METRICS = ("seen_ap50", "unseen_ap50", "seen_ap", "unseen_ap")


@command()
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"))
    parser.add_argument("--fusions", nargs="+", default=list(FUSIONS), choices=FUSIONS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--out", default="outputs/ablation")
    parser.add_argument("--data-root", default="datasets", help="where the embedded benchmark is (or will be)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides, for every run")
    args = parser.parse_intermixed_args(argv)  # overrides may come before or after the options
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {}
    for fusion in args.fusions:
        for seed in args.seeds:
            runs.setdefault(fusion, []).append(_run(args, out / f"{fusion}_seed{seed}", fusion, seed))
    table = summarise(runs)
    settings = {"config": args.config, "overrides": args.overrides, "seeds": args.seeds}
    write_text_atomically(out / "ablation.json", json.dumps({"settings": settings, **table}, indent=1))
    write_text_atomically(out / "ablation.md", markdown(table, settings))
    print(markdown(table, settings))
    return table


def _run(args: argparse.Namespace, folder: Path, fusion: str, seed: int) -> dict:
    """Train and evaluate one (fusion, seed), or read the result of a run that finished before."""
    done = folder / "eval.json"
    if done.is_file():
        print(f"{folder.name}: done before, {done}")
        return json.loads(done.read_text())
    overrides = [
        f"data.root={args.data_root}",
        *args.overrides,
        f"model.fusion={fusion}",
        f"train.seed={seed}",
        f"train.output_dir={folder}",
    ]
    config = load_config(args.config, overrides)
    if config.data.dataset == "synthetic" and not (Path(args.data_root) / "synthetic" / "annotations").is_dir():
        generate(Path(args.data_root) / "synthetic", "default", seed=0, workers=2, progress=not args.no_progress)
    print(f"{folder.name}: training {args.config} with model.fusion={fusion} train.seed={seed}")
    start = time.perf_counter()
    summary = train(config, resume="auto", progress=not args.no_progress)
    result = evaluate_checkpoint(config, folder / "last.pth", torch.device("cpu"), progress=not args.no_progress)
    record = {
        "fusion": fusion,
        "seed": seed,
        "steps": summary["steps"],
        "train_minutes": summary["minutes"],
        "minutes": round((time.perf_counter() - start) / 60, 2),
        **{k: result[k] for k in METRICS if k in result},
    }
    if "per_image" in result:
        record.update({f"per_image_{k}": result["per_image"][k] for k in ("seen_ap50", "unseen_ap50")})
    write_text_atomically(done, json.dumps(record, indent=1))
    return record


def summarise(runs: dict[str, list[dict]]) -> dict:
    """Per fusion: each metric's mean and population standard deviation over the seeds, and the seeds' values."""
    rows = {}
    for fusion, records in runs.items():
        row: dict = {"seeds": [r["seed"] for r in records], "minutes": [r["train_minutes"] for r in records]}
        keys = [k for k in records[0] if k.endswith(("ap50", "_ap"))]
        for key in keys:
            values = np.array([r[key] for r in records], np.float64)
            row[key] = {"mean": float(values.mean()), "std": float(values.std()), "values": values.tolist()}
        rows[fusion] = row
    return {"rows": rows}


def markdown(table: dict, settings: dict) -> str:
    def cell(row: dict, key: str) -> str:
        value = row.get(key)
        return f"{value['mean']:.1f} ± {value['std']:.1f}" if value else "-"

    lines = [
        f"# Fusion ablation: {settings['config']} {' '.join(settings['overrides'])}".rstrip(),
        "",
        f"Mean ± spread (population std) over seeds {settings['seeds']}; AP50 and AP by the COCO protocol "
        "(pycocotools over the test set), per-image AP50 when evaluated with `--protocol both` "
        "(`eval.protocol=both`).",
        "",
        "| fusion | seen AP50 | unseen AP50 | seen AP | unseen AP | per-image seen / unseen AP50 | minutes per run "
        "| paper, VOC seen / unseen AP50 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for fusion, row in table["rows"].items():
        per_image = (
            f"{cell(row, 'per_image_seen_ap50')} / {cell(row, 'per_image_unseen_ap50')}"
            if "per_image_seen_ap50" in row
            else "-"
        )
        paper = "{} / {}".format(*PAPER_VOC[fusion])
        lines.append(
            f"| {NAMES[fusion]} | {cell(row, 'seen_ap50')} | {cell(row, 'unseen_ap50')} | {cell(row, 'seen_ap')} | "
            f"{cell(row, 'unseen_ap')} | {per_image} | {np.mean(row['minutes']):.1f} | {paper} |"
        )
    lines += [
        "",
        "Each seed's unseen AP50: "
        + "; ".join(
            f"{NAMES[f]} {', '.join(f'{v:.1f}' for v in row['unseen_ap50']['values'])}"
            for f, row in table["rows"].items()
        ),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
