"""The web page: its logic without a browser (the Predictor's detections, threshold redraws, bad uploads), and the
page itself in headless Chromium (Debian's chromium, driven by Playwright): upload, box, run, detections shown,
a bad upload's message, a screenshot."""

import json
import os
import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent / "inference"))
from inference_helpers import pattern_image, save_random_checkpoint

from detector import app
from detector.app import DetectionSession, box_from_clicks, parse_box
from detector.inference.predictor import Predictor

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return Predictor.from_checkpoint(save_random_checkpoint(tmp_path_factory.mktemp("app") / "m.pth"), "cpu")


@pytest.fixture()
def files(tmp_path):
    names = []
    for i, (h, w) in enumerate([(96, 144), (120, 90)]):
        names.append(str(tmp_path / f"t{i}.png"))
        Image.fromarray(pattern_image(h, w, 20 + i)).save(names[-1])
    (tmp_path / "notes.png").write_bytes(b"not an image")
    return names, str(tmp_path / "notes.png")


def test_boxes_from_text_and_clicks():
    assert parse_box("10, 20, 30, 40") == (10, 20, 30, 40) and parse_box("10 20 30 40") == (10, 20, 30, 40)
    assert parse_box("") is None and parse_box("whole") is None
    with pytest.raises(ValueError, match="four numbers"):
        parse_box("10, 20, 30")
    assert box_from_clicks([(50, 8), (10, 40)]) == "10, 8, 50, 40"  # any two opposite corners
    assert box_from_clicks([(5, 6)]) == "5, 6"


def test_a_run_gives_the_predictors_detections_and_the_threshold_redraws_without_it(predictor, files, monkeypatch):
    # an untrained model scores every object under the page's 0.05: keep them all, so that there is something to
    # redraw (with none, every count below would be 0 == 0)
    monkeypatch.setattr(app, "KEEP_SCORE", 0.0)
    targets, _ = files
    query = pattern_image(50, 60, 1)
    session = DetectionSession()
    session.run(predictor, query, "5, 5, 45, 40", targets)
    for name, det in zip(targets, session.detections):
        expected = predictor.predict(query, name, (5, 5, 45, 40), score_threshold=0.0)
        np.testing.assert_allclose(det["scores"], expected["scores"], atol=1e-6)
    scores = np.concatenate([d["scores"] for d in session.detections])
    assert scores.size > 0 and len(np.unique(scores)) > 2
    for threshold in (0.0, float(np.median(scores)), 1.0):
        results = session.coco_results(threshold)
        assert len(results["detections"]) == int((scores >= threshold).sum())
        assert [p[1].split(": ")[1] for p in session.pictures(threshold)] == [
            f"{int((d['scores'] >= threshold).sum())} detection(s) >= {threshold:.2f}" for d in session.detections
        ]
    assert {im["file_name"] for im in results["images"]} == {"t0.png", "t1.png"}


def test_k_shot_exemplars_and_bad_uploads(predictor, files):
    targets, not_an_image = files
    session = DetectionSession()
    query = pattern_image(50, 60, 1)
    assert session.add_exemplar(query, "5, 5, 45, 40") == "1 query exemplar(s)"
    assert session.add_exemplar(pattern_image(40, 40, 2), "") == "2 query exemplar(s)"
    session.run(predictor, None, "", [*targets, not_an_image])  # the exemplars are used; no page query needed
    expected = predictor.predict([query, pattern_image(40, 40, 2)], targets[0], [(5, 5, 45, 40), None], 0.05)
    np.testing.assert_allclose(session.detections[0]["scores"], expected["scores"], atol=1e-6)
    assert len(session.targets) == 2 and len(session.unreadable) == 1 and "notes.png" in session.unreadable[0]
    with pytest.raises(ValueError, match="outside"):
        DetectionSession().add_exemplar(query, "200, 200, 300, 300")
    with pytest.raises(ValueError, match="upload a query image"):
        DetectionSession().run(predictor, None, "", targets)
    with pytest.raises(ValueError, match="upload one or more target images"):
        DetectionSession().run(predictor, query, "", [])
    with pytest.raises(ValueError, match="no target image could be read"):
        DetectionSession().run(predictor, query, "", [not_an_image])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_page_in_headless_chromium(predictor, files, tmp_path, synthetic_root):
    missing = []
    if CHROMIUM is None:
        missing.append("the chromium binary (apt-get install chromium)")
    for module in ("gradio", "playwright"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"the {module} package (pip install -e '.[dev,app]')")
    if missing:
        pytest.skip(f"browser test needs {', '.join(missing)}")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from playwright.sync_api import sync_playwright

    from detector.app import build_app

    _, not_an_image = files
    test = json.loads((synthetic_root / "annotations" / "test.json").read_text())
    query_file = synthetic_root / "test" / test["images"][0]["file_name"]
    x, y, w, h = next(a["bbox"] for a in test["annotations"] if a["image_id"] == test["images"][0]["id"])
    port = _free_port()
    app = build_app(predictor)
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}")
            page.set_input_files("#query input[type=file]", str(query_file))
            page.wait_for_timeout(1000)
            page.fill("#box textarea, #box input", f"{x:.0f}, {y:.0f}, {x + w:.0f}, {y + h:.0f}")
            page.set_input_files(
                "#targets input[type=file]",
                [str(synthetic_root / "test" / i["file_name"]) for i in test["images"][1:3]],
            )
            page.wait_for_timeout(1000)
            page.click("#run")
            page.wait_for_selector("#results img", timeout=60_000)
            page.wait_for_function("document.querySelector('#status').innerText.includes('detection')")
            status = page.inner_text("#status")
            assert "in 2 image(s)" in status, status
            assert page.locator("#results img").count() >= 2
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            # a bad upload: a file that is not an image -> a message on the page, and the page keeps working
            page.set_input_files("#targets input[type=file]", [not_an_image])
            page.wait_for_timeout(1000)
            page.click("#run")
            page.wait_for_selector("text=not a decodable image", timeout=30_000)
            # the threshold redraws the last results without running the model
            page.fill("#threshold input[type=number]", "0.5")
            page.keyboard.press("Enter")
            page.wait_for_function("document.querySelector('#status').innerText.includes('>= 0.50')")
            browser.close()
    finally:
        app.close()
    assert (tmp_path / "page.png").stat().st_size > 10_000
