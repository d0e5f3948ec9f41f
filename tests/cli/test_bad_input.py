"""The catalogue of bad input, tried at the command line as a careless or hostile user would.

Every case runs a command as its console script does (``main()`` with ``sys.argv`` set) and asserts:
- the exit status (2: usage or input error; 1: the work itself failed, as a data check finding problems);
- one line on stderr, ``error: ...``, that contains the message naming the problem (no traceback);
- that nothing was lost: input files keep their bytes, and nothing half-written is left behind.

The cases are grouped as the issue lists them: configuration, data, checkpoints, command line. Faults that need a
training run (SIGKILL and resume, a non-finite step, a full disk, two runs on one folder) are tested in
``tests/engine/test_training.py`` and ``tests/engine/test_checkpoint.py``, where the run is.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from small_model import SMALL

from detector.cli import (
    benchmark,
    build_query_pool,
    check_dataset,
    export,
    infer,
    model_info,
    splits,
    train,
)
from detector.cli import (
    eval as eval_cli,
)
from detector.config import load_config
from detector.engine.checkpoint import save_checkpoint
from detector.models import build

ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = str(ROOT / "configs" / "tiny_synthetic.yaml")


def run_cli(module, argv, monkeypatch, capsys) -> tuple[int, str]:
    """Run ``module.main`` as its console script does: the exit status, and on status 2 stderr's one line
    (else what the command printed)."""
    monkeypatch.setattr(sys, "argv", [module.__name__, *map(str, argv)])
    status = module.main()
    captured = capsys.readouterr()
    err = captured.err.strip()
    if status == 2:
        lines = [line for line in err.splitlines() if line.startswith("error: ") or "Traceback" in line]
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        return status, lines[0]
    return status, captured.out


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A small custom COCO-format data set: 6 images, 2 classes, valid."""
    root = tmp_path_factory.mktemp("custom")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(6):
        cv2.imwrite(str(root / "images" / f"{i}.png"), rng.integers(0, 255, (64, 80, 3), dtype=np.uint8))
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 80, "height": 64})
        for k, category in enumerate((1, 2)):
            annotations.append(
                {
                    "id": 2 * i + k + 1,
                    "image_id": i + 1,
                    "category_id": category,
                    "bbox": [5 + 30 * k, 8, 24, 20],
                    "iscrowd": 0,
                }
            )
    coco = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    (root / "ann.json").write_text(json.dumps(coco))
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "model.pth"
    config = load_config(TINY_CONFIG, SMALL)
    torch.manual_seed(0)
    model, _, _ = build(config)
    save_checkpoint({"model": model.state_dict(), "config": config.to_dict()}, path)
    return path


def custom_data(annotations: Path, images: Path) -> list[str]:
    return [
        "data.dataset=custom",
        f"data.train_annotations={annotations}",
        f"data.train_images={images}",
        f"data.test_annotations={annotations}",
        f"data.test_images={images}",
        "data.unseen_classes=[b]",
        "data.num_workers=0",
    ]


# --- configuration: refused when the config loads, before any work ---------------------------------------------

CONFIG_CASES = [
    ("mistyped key", ["train.batchsize=2"], "did you mean train.batch_size"),
    ("another library's name", ["train.learning_rate=1e-4"], "did you mean train.lr?"),
    ("negative batch", ["train.batch_size=-2"], "train.batch_size must be at least 1, got -2"),
    ("zero batch", ["train.batch_size=0"], "train.batch_size must be at least 1"),
    ("zero size divisor", ["data.size_divisor=0"], "data.size_divisor must be a positive multiple of 16"),
    ("zero checkpoint interval", ["train.checkpoint_every=0"], "train.checkpoint_every must be at least 1"),
    ("zero log interval", ["train.log_every=0"], "train.log_every must be at least 1"),
    ("zero accumulation", ["train.grad_accum=0"], "train.grad_accum must be at least 1"),
    ("negative steps", ["train.max_steps=-1"], "train.max_steps must be 0 or more"),
    ("negative minutes", ["train.max_minutes=-5"], "train.max_minutes must be 0 (no limit) or more"),
    ("unknown precision", ["train.amp=fp8"], "train.amp must be one of auto, off, bf16, fp16"),
    ("infinite lr", ["train.lr=inf"], "train.lr must be a positive number"),
    ("unknown fusion", ["model.fusion=magic"], "model.fusion must be one of indirect, cross, misaligned"),
    ("unknown data set", ["data.dataset=imagenet"], "data.dataset must be one of synthetic, coco, voc, custom"),
    ("COCO split 5", ["data.dataset=coco", "data.split=5"], "data.split must be 1, 2, 3 or 4 for COCO, got 5"),
    ("zero repeats", ["eval.repeats=0"], "eval.repeats must be at least 1"),
    ("1-pixel test images", ["data.test_size=0"], "data.test_size must be at least 32"),
    ("heads not dividing the width", ["model.num_heads=5"], "must be divisible by model.num_heads"),
    ("text for a number", ["train.batch_size=two"], "train.batch_size"),
]


@pytest.mark.parametrize("name, overrides, message", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_config(name, overrides, message, monkeypatch, capsys, tmp_path):
    out = tmp_path / "run"
    status, err = run_cli(train, ["--config", TINY_CONFIG, f"train.output_dir={out}", *overrides], monkeypatch, capsys)
    assert status == 2 and message in err, err
    assert not out.exists()  # refused before the run folder was made


def test_config_invalid_yaml_names_file_and_line(monkeypatch, capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("_base_: base.yaml\ntrain:\n  lr: [0.1\n")
    status, err = run_cli(train, ["--config", bad], monkeypatch, capsys)
    assert status == 2 and "bad.yaml" in err and "line" in err


def test_config_missing_file(monkeypatch, capsys, tmp_path):
    status, err = run_cli(train, ["--config", tmp_path / "nope.yaml"], monkeypatch, capsys)
    assert status == 2 and "nope.yaml" in err


def test_config_empty_section_keeps_its_base(tmp_path):
    """Silent before: an empty ``train:`` plus an override reset every inherited train key to its default."""
    child = tmp_path / "child.yaml"
    child.write_text(f"_base_: {TINY_CONFIG}\ntrain:\n")
    base = load_config(TINY_CONFIG)
    config = load_config(child, ["train.seed=3"])
    assert config.train.seed == 3
    assert (config.train.lr, config.train.max_steps, config.train.batch_size) == (
        base.train.lr,
        base.train.max_steps,
        base.train.batch_size,
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
def test_config_cuda_without_a_gpu(monkeypatch, capsys, tmp_path):
    status, err = run_cli(
        train, ["--config", TINY_CONFIG, "train.device=cuda", f"train.output_dir={tmp_path}"], monkeypatch, capsys
    )
    assert status == 2 and "cuda" in err.lower() and "train.device" in err


# --- data: the loader refuses with one line naming file, record and fix; the checker lists every problem ---------


def _good(dataset: Path) -> dict:
    return json.loads((dataset / "ann.json").read_text())


def _set(path: list, value):
    def change(coco):
        target = coco
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


DATA_CASES = [
    ("duplicate image id", _set(["images", 1, "id"], 1), "image 1: the id is used twice"),
    ("orphan annotation", _set(["annotations", 0, "image_id"], 99), "image_id 99 is not an image"),
    ("NaN box", _set(["annotations", 0, "bbox"], [1, float("nan"), 3, 4]), "bbox must be"),
    ("box of three numbers", _set(["annotations", 0, "bbox"], [1, 2, 3]), "four finite numbers"),
    ("string width", _set(["images", 0, "width"], "80"), "needs a positive integer 'width'"),
    ("null file name", _set(["images", 0, "file_name"], None), "needs a 'file_name' string"),
    ("missing height", lambda c: c["images"][0].pop("height"), "'height'"),
    ("file name leaving the folder", _set(["images", 0, "file_name"], "../x.png"), "must be a path inside"),
    ("absolute file name", _set(["images", 0, "file_name"], "/etc/passwd"), "must be a path inside"),
    ("string category id", _set(["annotations", 0, "category_id"], "1"), "needs an integer 'category_id'"),
    ("duplicate category id", _set(["categories", 1, "id"], 1), "the id is used twice"),
    ("images not a list", lambda c: c.update(images={"id": 1}), "'images' is not a list"),
]


@pytest.mark.parametrize("name, change, message", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_data(name, change, message, dataset, monkeypatch, capsys, tmp_path):
    coco = _good(dataset)
    change(coco)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(coco))
    before = digest(dataset)
    status, err = run_cli(
        train,
        ["--config", TINY_CONFIG, f"train.output_dir={tmp_path / 'run'}", *custom_data(broken, dataset / "images")],
        monkeypatch,
        capsys,
    )
    assert status == 2 and "broken.json" in err and message in err, err
    status, report = run_cli(
        check_dataset, ["--annotations", broken, "--images", dataset / "images"], monkeypatch, capsys
    )
    assert status == 1 and message in report, report
    assert digest(dataset) == before


def test_data_not_an_object_and_not_json(dataset, monkeypatch, capsys, tmp_path):
    (tmp_path / "list.json").write_text(json.dumps([_good(dataset)]))
    (tmp_path / "half.json").write_text(json.dumps(_good(dataset))[:50])
    for name, message in (("list.json", "not a COCO object"), ("half.json", "not valid JSON")):
        status, err = run_cli(
            train,
            [
                "--config",
                TINY_CONFIG,
                f"train.output_dir={tmp_path / 'run'}",
                *custom_data(tmp_path / name, dataset / "images"),
            ],
            monkeypatch,
            capsys,
        )
        assert status == 2 and name in err and message in err, err


def test_data_problems_only_the_checker_sees(dataset, monkeypatch, capsys, tmp_path):
    """Sizes that differ from the file's, a missing and a corrupt image, a degenerate box, an unknown class id, a
    class with no box at all: the loader accepts the file (training skips what it cannot use), the checker lists
    each kind and exits 1."""
    coco = _good(dataset)
    images = tmp_path / "images"
    images.mkdir()
    for p in (dataset / "images").iterdir():
        (images / p.name).write_bytes(p.read_bytes())
    (images / "0.png").unlink()  # missing
    (images / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # corrupt
    coco["images"][2]["width"] = 81  # size mismatch
    coco["annotations"][6]["bbox"] = [5, 5, 0, 10]  # degenerate
    coco["annotations"][8]["category_id"] = 7  # unknown class
    coco["categories"].append({"id": 3, "name": "c"})  # a class with no box at all
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(coco))
    status, printed = run_cli(check_dataset, ["--annotations", path, "--images", images], monkeypatch, capsys)
    assert status == 1
    for line in (
        "missing_images: 1",
        "unreadable_images: 1",
        "size_mismatch: 1",
        "degenerate_boxes: 1",
        "unknown_category_ids: 1",
        "class 'c' (id 3) has no box at all",
        "problems found",
    ):
        assert line in printed, (line, printed)


# --- checkpoints --------------------------------------------------------------------------------------------------


def test_checkpoint_that_is_an_image(checkpoint, monkeypatch, capsys, tmp_path):
    png = tmp_path / "photo.pth"
    cv2.imwrite(str(tmp_path / "p.png"), np.zeros((8, 8, 3), np.uint8))
    png.write_bytes((tmp_path / "p.png").read_bytes())
    status, err = run_cli(export, ["--checkpoint", png, "--out", tmp_path / "m.onnx"], monkeypatch, capsys)
    assert status == 2 and "not an IA-DETR checkpoint: the file is a PNG image" in err
    assert "weights_only" not in err  # torch's advice to unpickle arbitrary code is the wrong one here


def test_checkpoint_empty_and_truncated(checkpoint, monkeypatch, capsys, tmp_path):
    cv2.imwrite(str(tmp_path / "q.png"), np.zeros((40, 40, 3), np.uint8))
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "half.pth").write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    for name, message in (("empty.pth", "empty"), ("half.pth", "corrupt, truncated")):
        status, err = run_cli(
            infer,
            [
                "--checkpoint",
                tmp_path / name,
                "--query",
                tmp_path / "q.png",
                "--target",
                tmp_path,
                "--out",
                tmp_path / "out",
            ],
            monkeypatch,
            capsys,
        )
        assert status == 2 and name in err and message in err, err


def test_checkpoint_of_another_model_for_eval(checkpoint, monkeypatch, capsys, tmp_path):
    status, err = run_cli(
        eval_cli,
        ["--config", TINY_CONFIG, "--checkpoint", checkpoint, "--out", tmp_path, *SMALL, "model.num_layers=2"],
        monkeypatch,
        capsys,
    )
    assert status == 2 and "model.num_layers: checkpoint 1, config 2" in err


def test_init_from_a_checkpoint_of_another_model(checkpoint, dataset, monkeypatch, capsys, tmp_path):
    status, err = run_cli(
        train,
        [
            "--config",
            TINY_CONFIG,
            f"train.output_dir={tmp_path / 'run'}",
            f"train.init_from={checkpoint}",
            *custom_data(dataset / "ann.json", dataset / "images"),
            "train.pretrain_steps=0",
        ],  # the default sizes
        monkeypatch,
        capsys,
    )
    assert status == 2 and "train.init_from" in err and "another model config" in err, err
    assert not list((tmp_path / "run").glob("*.pth"))


def test_safetensors_weights_without_the_package(dataset, monkeypatch, capsys, tmp_path):
    weights = tmp_path / "r18.safetensors"
    weights.write_bytes(b"{}")
    monkeypatch.setitem(sys.modules, "safetensors", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    status, err = run_cli(
        train,
        [
            "--config",
            TINY_CONFIG,
            f"train.output_dir={tmp_path / 'run'}",
            "model.backbone.name=resnet18",
            f"model.backbone.weights={weights}",
            *custom_data(dataset / "ann.json", dataset / "images"),
        ],
        monkeypatch,
        capsys,
    )
    assert status == 2 and "pip install safetensors" in err, err


# --- the command line ----------------------------------------------------------------------------------------------


def test_cli_split_out_of_range(monkeypatch, capsys):
    status, err = run_cli(splits, ["coco", "--split", "5"], monkeypatch, capsys)
    assert status == 2 and "split" in err


def test_cli_query_pool_from_broken_json(monkeypatch, capsys, tmp_path):
    (tmp_path / "a.json").write_text("{ not json")
    status, err = run_cli(
        build_query_pool,
        ["--dataset", "custom", "--annotations", tmp_path / "a.json", "--images", tmp_path, "--out", tmp_path / "p"],
        monkeypatch,
        capsys,
    )
    assert status == 2 and "a.json" in err and "not valid JSON" in err


@pytest.mark.parametrize("module", [model_info, benchmark], ids=["model_info", "benchmark"])
def test_cli_bad_key_in_tools_that_take_overrides(module, monkeypatch, capsys):
    status, err = run_cli(module, ["--config", TINY_CONFIG, "model.hiden_dim=64"], monkeypatch, capsys)
    assert status == 2 and "did you mean model.hidden_dim" in err


def test_cli_eval_without_the_data(checkpoint, monkeypatch, capsys, tmp_path):
    status, err = run_cli(
        eval_cli,
        [
            "--config",
            TINY_CONFIG,
            "--checkpoint",
            checkpoint,
            "--out",
            tmp_path,
            f"data.root={tmp_path / 'none'}",
            *SMALL,
        ],
        monkeypatch,
        capsys,
    )
    assert status == 2 and str(tmp_path / "none") in err and "make_synthetic" in err, err


def test_cli_export_needs_its_extra(checkpoint, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as after a plain `pip install -e .`
    status, err = run_cli(export, ["--checkpoint", checkpoint, "--out", tmp_path / "m.onnx"], monkeypatch, capsys)
    assert status == 2 and "[export]" in err, err


def test_cli_export_refuses_one_file_for_two_formats(checkpoint, monkeypatch, capsys, tmp_path):
    status, err = run_cli(
        export, ["--checkpoint", checkpoint, "--out", tmp_path / "m.pt", "--torchscript"], monkeypatch, capsys
    )
    assert status == 2 and "m.pt" in err
    assert not list(tmp_path.iterdir())


def infer_argv(checkpoint, query, target, out, *extra) -> list:
    return ["--checkpoint", checkpoint, "--query", query, "--target", target, "--out", out, "--no-progress", *extra]


@pytest.fixture()
def pictures(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (70, 90, 3), dtype=np.uint8))
    return folder


INFER_CASES = [
    ("NaN query box", ["--query-box", "nan,nan,nan,nan"], "finite"),
    ("query box outside the image", ["--query-box", "200,200,300,300"], "outside"),
    ("query box of 2 pixels", ["--query-box", "10,10,12,12"], "4 pixels"),
    ("query box of three numbers", ["--query-box", "10,10,40"], "X1,Y1,X2,Y2"),
    ("a letter in the box", ["--query-box", "10,a,40,40"], "four numbers X1,Y1,X2,Y2"),
    ("two boxes for one query", ["--query-box", "whole", "whole"], "1 --query images but 2 --query-box"),
]


@pytest.mark.parametrize("name, extra, message", INFER_CASES, ids=[c[0] for c in INFER_CASES])
def test_cli_infer_query_boxes(name, extra, message, checkpoint, pictures, monkeypatch, capsys, tmp_path):
    status, err = run_cli(
        infer,
        infer_argv(checkpoint, pictures / "a.png", pictures, tmp_path / "o", *extra),
        monkeypatch,
        capsys,
    )
    assert status == 2 and message in err, err
    assert not (tmp_path / "o" / "detections.json").exists()


def test_cli_infer_missing_query_and_output_over_the_input(checkpoint, pictures, monkeypatch, capsys):
    before = digest(pictures)
    status, err = run_cli(
        infer,
        ["--checkpoint", checkpoint, "--query", pictures / "nope.png", "--target", pictures, "--out", pictures / "o"],
        monkeypatch,
        capsys,
    )
    assert status == 2 and "nope.png" in err
    status, err = run_cli(
        infer,
        ["--checkpoint", checkpoint, "--query", pictures / "a.png", "--target", pictures, "--out", pictures],
        monkeypatch,
        capsys,
    )
    assert status == 2 and "overwrite" in err
    assert digest(pictures) == before


def test_cli_infer_a_folder_with_a_tiny_and_a_corrupt_target(checkpoint, pictures, monkeypatch, capsys, tmp_path):
    """One bad target never aborts the folder: a 10-pixel image is drawn, a corrupt one is listed as skipped."""
    cv2.imwrite(str(pictures / "tiny.png"), np.full((10, 12, 3), 128, np.uint8))
    (pictures / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "o"
    status, _ = run_cli(
        infer,
        infer_argv(checkpoint, pictures / "a.png", pictures, out, "--score-threshold", "0"),
        monkeypatch,
        capsys,
    )
    assert status == 0
    images = json.loads((out / "images.json").read_text())
    assert sorted(Path(im["file_name"]).name for im in images["images"]) == ["a.png", "b.png", "tiny.png"]
    assert len(images["unreadable"]) == 1 and "corrupt.png" in images["unreadable"][0]
    assert (out / "tiny.png").is_file() or (out / "tiny_png.png").is_file()


def test_cli_decompression_bomb_is_refused(checkpoint, monkeypatch, capsys, tmp_path):
    """A PNG whose header claims 30000 x 30000 pixels is refused before it is decoded (was: an uncaught
    decompression-bomb error, or 6.3 GB and 38 s for 20000 x 20000)."""
    bomb = tmp_path / "bomb.png"
    cv2.imwrite(str(bomb), np.zeros((4, 4, 3), np.uint8))
    data = bytearray(bomb.read_bytes())
    data[16:24] = (30000).to_bytes(4, "big") + (30000).to_bytes(4, "big")  # IHDR width, height
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # the chunk's checksum, so it still parses
    bomb.write_bytes(bytes(data))
    status, err = run_cli(
        infer,
        ["--checkpoint", checkpoint, "--query", bomb, "--target", bomb, "--out", tmp_path / "o"],
        monkeypatch,
        capsys,
    )
    assert status == 2 and "megapixels" in err and "bomb.png" in err, err
