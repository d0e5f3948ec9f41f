"""Evaluation reports: a console table, a JSON file with every number, a markdown file, the four-split table."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import errors_table

# Published AP50 (the methods' papers): COCO seen/unseen are averages over the four splits, and the protocol
# each was measured with: CoAE, AIT and BHRL score with pycocotools over the test set ("coco"); the official
# IA-DETR code scores per (image, class) and averages ("per-image"), so its rows are not comparable with theirs.
PAPER_ROWS = [
    ("CoAE", 40.9, 22.0, 55.1, 63.8, "coco"),
    ("AIT", 47.5, 24.3, 67.2, 72.2, "coco"),
    ("BHRL", 53.5, 25.6, 69.7, 73.8, "coco"),
    ("IA-DETR (paper, ResNet)", None, None, 77.8, 79.6, "per-image"),
    ("IA-DETR (paper, Swin)", 55.8, 27.3, 73.6, 81.0, "per-image"),
]
PROTOCOL_NAMES = {
    "coco": "coco: AP per class over the whole test set (pycocotools), as CoAE and BHRL",
    "per-image": "per-image: AP50 per (image, class), averaged over images, as the official IA-DETR code",
}


def _pm(result: dict, key: str) -> str:
    value, spread = result.get(key), result.get(f"{key}_std")
    if value is None or value != value:
        return "-"
    return f"{value:.1f} ± {spread:.1f}" if spread is not None else f"{value:.1f}"


def _protocols(result: dict) -> list[dict]:
    """The result of each protocol in ``result``: itself, then any nested one (``per_image``)."""
    return [result, *([result["per_image"]] if isinstance(result.get("per_image"), dict) else [])]


def console_table(result: dict) -> str:
    lines = []
    for part in _protocols(result):
        lines.append(f"protocol {PROTOCOL_NAMES[part.get('protocol', 'coco')]}")
        lines.append(f"{'':10s} {'AP50':>14s} {'AP':>14s} {'AP75':>14s}")
        for group in ("seen", "unseen"):
            lines.append(
                f"{group:10s} {_pm(part, f'{group}_ap50'):>14s} {_pm(part, f'{group}_ap'):>14s} "
                f"{_pm(part, f'{group}_ap75'):>14s}"
            )
    if "unseen_recall@0.3" in result:
        lines.append(
            f"at score 0.3 (IoU 0.5): unseen precision {_pm(result, 'unseen_precision@0.3')}, recall "
            f"{_pm(result, 'unseen_recall@0.3')}; seen precision {_pm(result, 'seen_precision@0.3')}, recall "
            f"{_pm(result, 'seen_recall@0.3')}"
            + (
                f"; {_pm(result, 'fp_per_absent_episode@0.3')} false positives per absent episode"
                if "fp_per_absent_episode@0.3" in result
                else ""
            )
        )
    for key in ("seen_ap50_with_absent", "unseen_ap50_with_absent"):
        if key in result:
            lines.append(f"{key}: {_pm(result, key)}")
    if isinstance(result.get("errors"), dict):
        lines.append(errors_table(result["errors"]))
    if result.get("dropped_episodes"):
        lines.append(_dropped(result))
    if result.get("unqueried_classes"):
        lines.append(_unqueried(result))
    return "\n".join(lines)


def _unqueried(result: dict) -> str:
    names = ", ".join(result["unqueried_classes"])
    return f"not scored (no query exemplar outside the one image that holds them): {names}"


def _dropped(result: dict) -> str:
    reasons = "; ".join(result["drop_reasons"][:3])
    return (
        f"{result['dropped_episodes']} episodes could not be run and their {result['excluded_images']} target "
        f"images are left out of every score ({reasons})"
    )


def markdown_report(result: dict, settings: dict) -> str:
    lines = ["# One-shot evaluation", "", "## Settings", ""]
    lines += [f"- {k}: `{v}`" for k, v in settings.items()]
    lines += [
        "",
        f"- images: {result['images']}, repeats: {result['repeats']}",
        *([f"- {_dropped(result)}"] if result.get("dropped_episodes") else []),
        *([f"- {_unqueried(result)}"] if result.get("unqueried_classes") else []),
    ]
    for part in _protocols(result):
        lines += [
            "",
            f"## Means over classes, protocol {PROTOCOL_NAMES[part.get('protocol', 'coco')]}",
            "",
            "| classes | AP50 | AP | AP75 |",
            "|---|---|---|---|",
        ]
        for group in ("seen", "unseen"):
            lines.append(
                f"| {group} | {_pm(part, f'{group}_ap50')} | {_pm(part, f'{group}_ap')} | "
                f"{_pm(part, f'{group}_ap75')} |"
            )
    lines += _operating_points(result)
    if isinstance(result.get("errors"), dict):
        lines += ["", "## Where the detections go", "", "```", errors_table(result["errors"]), "```"]
    extended = [k for k in result if ("absent" in k) and not k.endswith("_std") and k != "per_image" and "@" not in k]
    if extended:
        lines += ["", "## Extended protocol (absent classes queried)", ""]
        lines += [f"- {k}: {_pm(result, k)}" for k in extended]
    for part in _protocols(result):
        protocol = part.get("protocol", "coco")
        spread = "mean ± std over repeats" if protocol == "coco" else "mean over the images holding the class"
        lines += [
            "",
            f"## Per class, protocol {protocol} (AP50, {spread})",
            "",
            "| class | split | AP50 |",
            "|---|---|---|",
        ]
        for name, row in part["per_class"].items():
            value = f"{row['ap50']:.1f}" + (f" ± {row['ap50_std']:.1f}" if "ap50_std" in row else "")
            lines.append(f"| {name} | {'unseen' if row['unseen'] else 'seen'} | {value} |")
    return "\n".join(lines) + "\n"


def _operating_points(result: dict) -> list[str]:
    """Precision and recall (present episodes, IoU 0.5) and false positives per absent episode, per threshold."""
    thresholds = sorted(
        {float(k.split("@")[1]) for k in result if k.startswith("unseen_recall@") and not k.endswith("_std")}
    )
    if not thresholds:
        return []
    absent = any(k.startswith("fp_per_absent_episode@") for k in result)
    lines = [
        "",
        "## Operating points (detections scoring at least the threshold; IoU 0.5; mean ± std over repeats)",
        "",
        "| score threshold | unseen precision | unseen recall | seen precision | seen recall |"
        + (" false positives per absent episode |" if absent else ""),
        "|---|---|---|---|---|" + ("---|" if absent else ""),
    ]
    for t in thresholds:
        row = f"| {t:g} | " + " | ".join(
            _pm(result, f"{group}_{metric}@{t}") for group in ("unseen", "seen") for metric in ("precision", "recall")
        )
        lines.append(row + (f" | {_pm(result, f'fp_per_absent_episode@{t}')} |" if absent else " |"))
    return lines


def write_reports(result: dict, out_dir: str | Path, settings: dict) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"settings": settings, **result}, indent=1))
    (out / "results.md").write_text(markdown_report(result, settings))


def four_split_table(results: dict[int, dict], dataset: str) -> str:
    """Our per-split seen/unseen AP50 (mean ± std over repeats) and their average, beside the published rows,
    each row naming its protocol (only rows of one protocol compare)."""
    lines = [
        "| method | protocol | " + " | ".join(f"split {k} seen / unseen" for k in sorted(results)) + " | average |",
        "|---|---|" + "---|" * (len(results) + 1),
    ]
    first = next(iter(results.values()))
    for part_index in range(len(_protocols(first))):
        parts = {k: _protocols(r)[part_index] for k, r in results.items()}
        seen = [r["seen_ap50"] for r in parts.values()]
        unseen = [r["unseen_ap50"] for r in parts.values()]
        cells = [f"{_pm(r, 'seen_ap50')} / {_pm(r, 'unseen_ap50')}" for _, r in sorted(parts.items())]
        protocol = _protocols(first)[part_index].get("protocol", "coco")
        lines.append(
            f"| ours | {protocol} | {' | '.join(cells)} | "
            f"{sum(seen) / len(seen):.1f} / {sum(unseen) / len(unseen):.1f} |"
        )
    if dataset in ("coco", "voc"):
        for name, coco_seen, coco_unseen, voc_seen, voc_unseen, protocol in PAPER_ROWS:
            pair = (coco_seen, coco_unseen) if dataset == "coco" else (voc_seen, voc_unseen)
            if pair[0] is None:
                continue
            lines.append(f"| {name} | {protocol} |" + " |" * len(results) + f" {pair[0]:.1f} / {pair[1]:.1f} |")
    return "\n".join(lines)
