import pytest

from detector.config import DataConfig
from detector.data.catalog import DatasetNotFoundError, load_dataset
from detector.data.coco import AnnotationError
from detector.data.voc import load_voc

XML = "<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objects}</annotation>"
OBJ = """<object><name>{name}</name><difficult>{d}</difficult>
<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"""


def _write_voc(root, year, image_set, items):
    base = root / "VOCdevkit" / f"VOC{year}"
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "ImageSets" / "Main" / f"{image_set}.txt").write_text("\n".join(stem for stem, _ in items) + "\n")
    for stem, objects in items:
        body = "".join(OBJ.format(**o) for o in objects)
        (base / "Annotations" / f"{stem}.xml").write_text(XML.format(w=200, h=100, objects=body))


def test_voc_parsing(tmp_path):
    _write_voc(
        tmp_path,
        "2007",
        "test",
        [
            (
                "000001",
                [
                    dict(name="cat", d=0, x1=11, y1=21, x2=50, y2=60),
                    dict(name="dog", d=1, x1=1, y1=1, x2=9, y2=9),
                ],
            ),
            ("000002", [dict(name="sheep", d=0, x1=100, y1=10, x2=250, y2=99)]),
        ],
    )
    data = load_voc(tmp_path / "VOCdevkit", [("2007", "test")])
    assert [c.name for c in data.categories][:3] == ["aeroplane", "bicycle", "bird"]
    first, second = data.images
    assert first.image_id == 1 and first.path.name == "000001.jpg" and (first.width, first.height) == (200, 100)
    assert first.boxes[0].tolist() == [10, 20, 50, 60]  # 1-based inclusive -> 0-based xyxy
    assert data.category(int(first.labels[0])).name == "cat"
    assert first.ignore.tolist() == [False, True]  # difficult kept but ignored
    assert first.classes() == {data.category("cat").id}
    assert second.boxes[0].tolist() == [99, 9, 200, 99]  # clipped to the image


def test_voc_through_the_catalog(tmp_path):
    _write_voc(tmp_path, "2007", "trainval", [("a", [dict(name="cow", d=0, x1=5, y1=5, x2=40, y2=40)])])
    _write_voc(tmp_path, "2012", "trainval", [("b", [dict(name="cat", d=0, x1=5, y1=5, x2=40, y2=40)])])
    data = load_dataset(DataConfig(dataset="voc", root=str(tmp_path)), "train")
    assert [r.image_id for r in data.images] == [1, 2]
    with pytest.raises(AnnotationError, match="test.txt"):
        load_dataset(DataConfig(dataset="voc", root=str(tmp_path)), "test")


def test_unknown_voc_class(tmp_path):
    _write_voc(tmp_path, "2007", "test", [("x", [dict(name="unicorn", d=0, x1=5, y1=5, x2=40, y2=40)])])
    with pytest.raises(AnnotationError, match="unknown VOC class 'unicorn'"):
        load_voc(tmp_path / "VOCdevkit", [("2007", "test")])


def test_missing_dataset_names_the_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="instances_train2017.json"):
        load_dataset(DataConfig(dataset="coco", root=str(tmp_path)), "train")
    with pytest.raises(DatasetNotFoundError, match="make_synthetic.py"):
        load_dataset(DataConfig(dataset="synthetic", root=str(tmp_path)), "test")
    with pytest.raises(DatasetNotFoundError, match="data.train_annotations"):
        load_dataset(DataConfig(dataset="custom"), "train")


def test_data_root_resolution(tmp_path, monkeypatch):
    from detector.data.catalog import data_root

    monkeypatch.setenv("IA_DETR_DATA_ROOT", str(tmp_path / "env"))
    assert str(data_root("explicit")) == "explicit"
    assert data_root(None) == tmp_path / "env"
    monkeypatch.delenv("IA_DETR_DATA_ROOT")
    assert str(data_root(None)) == "datasets"
