from pathlib import Path

from detector.cli import benchmark

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny_synthetic.yaml"


def test_benchmark_reports_speed_and_training_precision():
    report = benchmark.main(
        [
            "--config",
            str(CONFIG),
            "--repeats",
            "1",
            "--batch",
            "2",
            "--train-steps",
            "1",
            "train.batch_size=2",
            "data.test_size=128",
            "data.target_max_size=128",
        ]
    )
    assert report["device"] == "cpu" and report["train_precision"] == "float32"  # autocast is CUDA-only
    assert report["target"] == [128, 170] and report["train_batch"] == 2
    figures = {"latency_ms_per_pair", "throughput_pairs_per_s_batch2", "throughput_pairs_per_s_one_call_of_2"}
    figures |= {"train_images_per_s", "peak_rss_mb"}
    assert figures <= set(report) and all(isinstance(report[k], float) for k in figures)
