"""A local web page for one-shot detection (``tools/app.py``): draw a box on a query, see every match in your images.

Built on Gradio, the library this field's demo pages use (OWL-ViT, SAM, Hugging Face Spaces): image upload,
clicks on an image, galleries, sliders and downloads come with it, and it runs on localhost from Python alone.
It is an optional extra (``pip install -e ".[app]"``); the core install does not need it.

The page logic lives in :class:`DetectionSession` (no Gradio in it, tested on its own); :func:`build_app` wires it
to the page. Every detection goes through the library's one inference path, the :class:`Predictor`.
"""

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data.images import ImageReadError, load_image
from .data.transforms import crop_box
from .inference.predictor import Predictor, check_query_box, parse_box
from .visualize import draw_detections

KEEP_SCORE = 0.05  # detections kept from a run; the slider then shows those above its threshold, without re-running


def box_from_clicks(clicks: list[tuple[int, int]]) -> str:
    """Two clicks on the query image (any two opposite corners) as a box's text; one click: that corner so far."""
    if len(clicks) < 2:
        return "" if not clicks else f"{clicks[0][0]}, {clicks[0][1]}"
    (xa, ya), (xb, yb) = clicks[-2:]
    return f"{min(xa, xb)}, {min(ya, yb)}, {max(xa, xb)}, {max(ya, yb)}"


@dataclass
class DetectionSession:
    """What one browser session holds: the query exemplars (k-shot), the targets of the last run and their
    detections, kept down to :data:`KEEP_SCORE` so that the threshold redraws without the model."""

    exemplars: list[tuple[np.ndarray, tuple | None]] = field(default_factory=list)
    targets: list[tuple[str, np.ndarray]] = field(default_factory=list)
    detections: list[dict[str, np.ndarray]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    used: list[tuple[np.ndarray, tuple | None]] = field(default_factory=list)  # the exemplars of the last run
    runs: int = 0  # runs so far in this session
    seconds: float = 0.0  # how long the last run took

    def add_exemplar(self, image: np.ndarray | None, box_text: str | None) -> str:
        """Add the query image with its box (checked against the image) as one exemplar; returns a summary."""
        if image is None:
            raise ValueError("upload a query image first")
        box = parse_box(box_text)
        if box is not None:
            box = check_query_box(box, image.shape[1], image.shape[0])
        self.exemplars.append((np.ascontiguousarray(image), box))
        return f"{len(self.exemplars)} query exemplar(s)"

    def query(self, image: np.ndarray | None, box_text: str | None) -> tuple[list[np.ndarray], list]:
        """The exemplars to run: those added, or else the query image on the page with its box."""
        if self.exemplars:
            return [e[0] for e in self.exemplars], [e[1] for e in self.exemplars]
        if image is None:
            raise ValueError("upload a query image (and draw its box by clicking two corners, or leave it empty)")
        box = parse_box(box_text)
        if box is not None:
            box = check_query_box(box, image.shape[1], image.shape[0])
        return [image], [box]

    def run(self, predictor: Predictor, image, box_text, files: list[str] | None, progress=None) -> None:
        """Detect the query in every target file; unreadable ones are listed, never fatal."""
        if not files:
            raise ValueError("upload one or more target images")
        queries, boxes = self.query(image, box_text)
        self.targets, self.detections, self.unreadable = [], [], []
        self.used = list(zip(queries, boxes))
        self.runs += 1
        readable = []
        for name in files:
            try:
                readable.append((name, load_image(name)))
            except ImageReadError as error:
                self.unreadable.append(str(error))
        step = predictor.batch_size  # one predict call per step: the query is encoded once per call
        for first in range(0, len(readable), step):
            if progress is not None:
                progress((first, len(readable)), desc=f"targets {first + 1}-{min(first + step, len(readable))}")
            chunk = readable[first : first + step]
            results = predictor.predict(queries, [t for _, t in chunk], query_box=boxes, score_threshold=KEEP_SCORE)
            self.targets += chunk
            self.detections += results
        if not self.targets:
            raise ValueError("no target image could be read: " + "; ".join(self.unreadable))

    def pictures(self, threshold: float) -> list[tuple[np.ndarray, str]]:
        """Each target with its detections at or above ``threshold`` drawn, and a caption."""
        patches = [crop_box(q, b) if b is not None else q for q, b in self.used]
        out = []
        for (name, target), det in zip(self.targets, self.detections):
            keep = det["scores"] >= threshold
            picture = draw_detections(target, det["boxes"][keep], det["scores"][keep], query=patches)
            out.append((picture, f"{Path(name).name}: {int(keep.sum())} detection(s) >= {threshold:.2f}"))
        return out

    def coco_results(self, threshold: float) -> dict:
        """The detections at or above ``threshold`` in COCO results format, with the images they refer to."""
        images, rows = [], []
        for image_id, ((name, target), det) in enumerate(zip(self.targets, self.detections), start=1):
            images.append(
                {"id": image_id, "file_name": Path(name).name, "width": target.shape[1], "height": target.shape[0]}
            )
            for (x1, y1, x2, y2), score in zip(det["boxes"].tolist(), det["scores"].tolist()):
                if score >= threshold:
                    rows.append(
                        {"image_id": image_id, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
                    )
        return {"images": images, "detections": rows}


def build_app(predictor: Predictor):
    """The Gradio page around one Predictor."""
    import gradio as gr

    def on_click(clicks: list, evt: gr.SelectData):
        clicks = [*clicks, (int(evt.index[0]), int(evt.index[1]))][-2:]
        return clicks, box_from_clicks(clicks)

    def on_add(session, image, box_text):
        session = session or DetectionSession()
        try:
            return session, session.add_exemplar(image, box_text)
        except ValueError as error:
            raise gr.Error(str(error)) from error

    def on_clear(session):
        session = session or DetectionSession()
        session.exemplars = []
        return session, "0 query exemplars (the query image and its box are used)"

    def on_run(session, image, box_text, files, threshold, progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
        session = session or DetectionSession()
        start = time.perf_counter()
        try:
            session.run(predictor, image, box_text, [getattr(f, "name", f) for f in files or []], progress)
        except ValueError as error:
            raise gr.Error(str(error)) from error
        session.seconds = time.perf_counter() - start
        return session, *render(session, threshold)

    def render(session, threshold):
        pictures = session.pictures(threshold)
        results = session.coco_results(threshold)
        path = Path(tempfile.mkdtemp(prefix="ia-detr-")) / "detections.json"
        path.write_text(json.dumps(results["detections"]))
        lines = [
            f"{len(results['detections'])} detection(s) >= {threshold:.2f} in {len(session.targets)} image(s) "
            f"(run {session.runs}, {session.seconds:.2f} s)"
        ]
        lines += [f"- not an image, skipped: {line}" for line in session.unreadable]
        return pictures, str(path), "\n".join(lines)

    def on_threshold(session, threshold):
        if session is None or not session.targets:
            return [], None, "run a search first"
        return render(session, threshold)

    with gr.Blocks(title="IA-DETR one-shot detection") as app:
        gr.Markdown(
            "## IA-DETR: one-shot detection\nUpload a query image and click two opposite corners of the object "
            "(or leave the box empty for the whole image); add more exemplars for k-shot; upload target images; run."
        )
        session = gr.State(None)  # a DetectionSession, made at the first action
        clicks = gr.State([])
        with gr.Row():
            with gr.Column():
                query = gr.Image(label="query image (click two corners)", type="numpy", elem_id="query")
                box = gr.Textbox(label="query box x1, y1, x2, y2 (empty: whole image)", elem_id="box")
                with gr.Row():
                    add = gr.Button("add exemplar (k-shot)", elem_id="add")
                    clear = gr.Button("clear exemplars", elem_id="clear")
                exemplars = gr.Markdown("0 query exemplars (the query image and its box are used)", elem_id="exemplars")
            with gr.Column():
                targets = gr.File(label="target images", file_count="multiple", type="filepath", elem_id="targets")
                threshold = gr.Slider(0.05, 1.0, value=0.3, step=0.05, label="score threshold", elem_id="threshold")
                run = gr.Button("find matches", variant="primary", elem_id="run")
        status = gr.Markdown(elem_id="status")
        gallery = gr.Gallery(label="detections", elem_id="results", columns=2)
        download = gr.File(label="detections (COCO results JSON)", elem_id="download")
        query.select(on_click, [clicks], [clicks, box])
        query.upload(lambda: ([], ""), None, [clicks, box])
        add.click(on_add, [session, query, box], [session, exemplars])
        clear.click(on_clear, [session], [session, exemplars])
        run.click(on_run, [session, query, box, targets, threshold], [session, gallery, download, status])
        threshold.change(on_threshold, [session, threshold], [gallery, download, status])
    return app
