"""The fusion ablation sweep: one run per (fusion, seed), a table of their means and spreads, and a second call
that trains nothing."""

import json

import numpy as np
import pytest
from small_model import SMALL

from detector.cli.ablation import main

FEW = [
    "train.max_steps=1",
    "train.pretrain_steps=1",
    "train.pretrain_batch_size=4",
    "train.batch_size=2",
    "eval.repeats=1",
    "eval.max_images=4",
    "eval.batch_size=4",
    "eval.protocol=both",
]


def test_the_sweep_runs_each_fusion_and_seed_once_and_tabulates_them(synthetic_root, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "synthetic").symlink_to(synthetic_root)
    out = tmp_path / "ablation"
    argv = ["--fusions", "indirect", "cross", "--seeds", "0", "1", "--out", str(out), "--data-root", str(root)]
    argv += ["--no-progress", *SMALL, *FEW]
    table = main(argv)
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*/eval.json"))]
    assert sorted((r["fusion"], r["seed"]) for r in runs) == [
        ("cross", 0),
        ("cross", 1),
        ("indirect", 0),
        ("indirect", 1),
    ]
    for fusion in ("indirect", "cross"):
        for key in ("seen_ap50", "unseen_ap50", "unseen_ap", "per_image_unseen_ap50"):
            values = [r[key] for r in runs if r["fusion"] == fusion]
            assert table["rows"][fusion][key]["mean"] == pytest.approx(np.mean(values))
            assert table["rows"][fusion][key]["std"] == pytest.approx(np.std(values))
    config = json.loads((out / "cross_seed1" / "summary.json").read_text())
    other = json.loads((out / "cross_seed0" / "summary.json").read_text())
    assert config["parameter_fingerprint"] != other["parameter_fingerprint"]  # the seeds are different runs
    text = (out / "ablation.md").read_text()
    assert "| Indirect Attention |" in text and "| double cross-attention |" in text and "82.9 / 65.1" in text
    assert json.loads((out / "ablation.json").read_text())["rows"].keys() == {"indirect", "cross"}
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/last.pth")}
    assert main(argv) == table  # finished runs are read back, not repeated
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/last.pth")} == before
