"""Reports: the numbers a user reads, formatted as documented."""

from detector.evaluation.report import console_table, four_split_table, markdown_report

RESULT = {
    "images": 3,
    "repeats": 2,
    "seen_ap50": 61.25,
    "seen_ap50_std": 1.04,
    "unseen_ap50": 40.0,
    "unseen_ap50_std": 0.0,
    "seen_ap": 30.0,
    "seen_ap_std": 0.5,
    "unseen_ap": float("nan"),
    "unseen_ap_std": float("nan"),
    "per_class": {"cat": {"ap50": 61.25, "ap50_std": 1.04, "unseen": False}},
    "dropped_episodes": 4,
    "excluded_images": 1,
    "drop_reasons": ["image b.jpg is not a decodable image"],
}


def test_console_table_rounds_and_marks_missing_values():
    lines = console_table(RESULT).splitlines()
    assert lines[0].startswith("protocol coco: ")  # every table names its protocol
    assert lines[2].split()[:4] == ["seen", "61.2", "±", "1.0"]
    assert "-" in lines[3].split()  # unseen AP is not a number: shown as "-"
    assert lines[-1].startswith("4 episodes could not be run and their 1 target images are left out")
    assert "b.jpg" in lines[-1]


def test_markdown_report_has_settings_means_and_classes():
    text = markdown_report(RESULT, {"checkpoint": "x.pth"})
    assert "- checkpoint: `x.pth`" in text
    assert "| seen | 61.2 ± 1.0 | 30.0 ± 0.5 |" in text
    assert "| cat | seen | 61.2 ± 1.0 |" in text
    assert "4 episodes could not be run" in text


def test_four_split_table_averages_and_adds_published_rows():
    results = {1: {"seen_ap50": 50.0, "unseen_ap50": 20.0}, 2: {"seen_ap50": 60.0, "unseen_ap50": 30.0}}
    table = four_split_table(results, "coco").splitlines()
    assert table[2] == "| ours | coco | 50.0 / 20.0 | 60.0 / 30.0 | 55.0 / 25.0 |"
    assert any(line.startswith("| BHRL | coco |") and line.endswith(" 53.5 / 25.6 |") for line in table)
    assert any(line.startswith("| IA-DETR (paper, Swin) | per-image |") for line in table)
    assert len(four_split_table(results, "synthetic").splitlines()) == 3  # no published rows


def test_both_protocols_are_reported_side_by_side_each_named():
    both = {
        **RESULT,
        "protocol": "coco",
        "per_image": {"protocol": "per-image", "seen_ap50": 80.0, "unseen_ap50": 70.0, "per_class": {}},
    }
    lines = console_table(both).splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("protocol")] == [
        "protocol coco",
        "protocol per-image",
    ]
    assert "80.0" in lines[6] and "70.0" in lines[7]
    text = markdown_report(both, {})
    assert "## Means over classes, protocol per-image" in text and "| seen | 80.0 | - | - |" in text
    table = four_split_table({1: both, 2: both}, "voc").splitlines()
    assert table[2].startswith("| ours | coco |") and table[3] == (
        "| ours | per-image | 80.0 / 70.0 | 80.0 / 70.0 | 80.0 / 70.0 |"
    )


def test_the_operating_points_table_lists_each_threshold():
    from detector.evaluation.report import console_table, markdown_report

    result = {"images": 3, "repeats": 2, "per_class": {}, "seen_ap50": 50.0, "unseen_ap50": 40.0}
    for t in (0.3, 0.5):
        for group in ("seen", "unseen"):
            result[f"{group}_precision@{t}"], result[f"{group}_precision@{t}_std"] = 80.0 - 10 * t, 1.0
            result[f"{group}_recall@{t}"], result[f"{group}_recall@{t}_std"] = 90.0 - 100 * t, 2.0
        result[f"fp_per_absent_episode@{t}"], result[f"fp_per_absent_episode@{t}_std"] = t, 0.0
    text = markdown_report(result, {})
    assert "| 0.3 | 77.0 ± 1.0 | 60.0 ± 2.0 | 77.0 ± 1.0 | 60.0 ± 2.0 | 0.3 ± 0.0 |" in text
    assert "| 0.5 | 75.0 ± 1.0 | 40.0 ± 2.0 | 75.0 ± 1.0 | 40.0 ± 2.0 | 0.5 ± 0.0 |" in text
    assert "fp_per_absent_episode@0.3:" not in text  # in the table, not repeated in the extended list
    assert "at score 0.3 (IoU 0.5): unseen precision 77.0 ± 1.0, recall 60.0 ± 2.0" in console_table(result)
