"""The commands' shared wrapper: exit statuses and one-line errors from the command line, results from Python."""

import json
import subprocess
import sys

import pytest

from detector.cli.splits import main as splits_main


def test_command_line_exit_statuses(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["ia-detr-splits", "coco", "--split", "1"])
    assert splits_main() == 0
    assert len(json.loads(capsys.readouterr().out)["unseen"]) == 20
    monkeypatch.setattr(sys, "argv", ["ia-detr-splits", "coco", "--split", "5"])
    assert splits_main() == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "split" in err


def test_python_callers_get_the_result_and_the_exception():
    assert len(splits_main(["coco", "--split", "2"])["unseen"]) == 20
    with pytest.raises(ValueError, match="split"):
        splits_main(["coco", "--split", "5"])


def test_the_installed_script_exits_zero_on_success():
    scripts = subprocess.run([sys.executable, "-m", "detector.cli.splits", "voc"], capture_output=True, text=True)
    assert scripts.returncode == 0, scripts.stderr
    assert json.loads(scripts.stdout)["unseen"] == ["aeroplane", "cat", "cow", "sheep"]
