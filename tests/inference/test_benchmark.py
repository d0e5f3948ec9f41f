from pathlib import Path

import pytest
import torch

from detector.cli import benchmark
from detector.engine.loop import cpu_has_native_bf16

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
            "train.amp=auto",
            "train.compile=false",
        ]
    )
    auto = "bfloat16" if cpu_has_native_bf16() else "float32"  # train.amp auto: bf16 only where the CPU has it
    assert report["device"] == "cpu" and report["train_precision"] == auto
    assert report["target"] == [128, 170] and report["train_batch"] == 2
    figures = {"latency_ms_per_pair", "throughput_pairs_per_s_batch2", "throughput_pairs_per_s_one_call_of_2"}
    figures |= {"train_images_per_s", "peak_rss_mb"}
    assert figures <= set(report) and all(isinstance(report[k], float) for k in figures)


def test_benchmark_times_training_against_other_overrides():
    argv = ["--config", str(CONFIG), "--repeats", "1", "--batch", "1", "--train-steps", "1", "--rounds", "2"]
    small = ["train.batch_size=2", "data.test_size=96", "data.target_sizes=[96,112]", "data.target_max_size=128"]
    small.append("train.compile=false")
    report = benchmark.main([*argv, *small, "train.amp=bf16", "--against", "train.amp=off"])
    assert report["train_precision"] == "bfloat16" and report["against_precision"] == "float32"
    assert report["against"] == ["train.amp=off"]
    assert report["train_speedup"] == pytest.approx(
        report["train_images_per_s"] / report["against_images_per_s"], abs=0.01
    )


def test_benchmark_profiles_training_steps(tmp_path):
    import json

    argv = ["--config", str(CONFIG), "--repeats", "1", "--batch", "1", "--rounds", "1"]
    small = ["train.batch_size=2", "data.test_size=96", "data.target_sizes=[96]", "data.target_max_size=128"]
    small.append("train.compile=false")
    once = benchmark.main([*argv, "--train-steps", "1", "--profile", str(tmp_path / "one"), *small])
    twice = benchmark.main([*argv, "--train-steps", "2", "--profile", str(tmp_path / "two"), *small])
    events = json.loads((tmp_path / "two" / "trace.json").read_text())["traceEvents"]
    ops = [e for e in events if e.get("ph") == "X" and e.get("cat") == "cpu_op"]
    assert {"aten::linear", "aten::conv2d"} <= {e["name"] for e in ops}  # the model's layers ran under it
    # the same fixed batch each step: profiling one step or two gives the same count per step (a warm-up or a timing
    # round caught in the trace would not)
    assert once["profile_ops_per_step"] == twice["profile_ops_per_step"] > 100
    assert "Self CPU" in (tmp_path / "two" / "ops.txt").read_text()
    assert "profile_kernels_per_step" not in twice  # CUDA figures only on CUDA
    with pytest.raises(SystemExit):  # nothing to profile without training steps
        benchmark.main([*argv, "--profile", str(tmp_path / "none"), *small])


def test_benchmark_training_batch_is_like_the_loaders():
    from detector.config import load_config

    config = load_config(CONFIG, ["train.batch_size=4", "data.target_sizes=[96,112]", "data.target_max_size=128"])
    batch = benchmark._training_batch(config, torch.device("cpu"))
    # sizes 96 x 128, 128 x 112 (3:4, long side capped), 96 x 128, 128 x 112 -> one 128 x 128 grid
    assert batch.target_images.shape == (4, 3, 128, 128)
    assert batch.image_sizes().tolist() == [[96, 128], [128, 112], [96, 128], [128, 112]]
    assert [int((~m).sum()) for m in batch.target_masks] == [96 * 128, 128 * 112, 96 * 128, 128 * 112]
    assert all(len(t["boxes"]) == 2 and len(t["all_boxes"]) == 4 for t in batch.targets)


def test_attention_benchmark_reports_every_candidate():
    from detector.cli import benchmark_attention

    argv = ["--rounds", "1", "--batch", "2", "--queries", "4", "--side", "4", "--dim", "16", "--heads", "2"]
    report = benchmark_attention.main([*argv, "--bias-hidden", "8"])
    names = {"indirect_attention", "indirect_attention_plain_bias_and_mask", "sdpa_no_bias", "nn_multihead_attention"}
    assert names <= set(report["attention"])
    assert all(set(row) == {"ms", "peak_mb"} for row in report["attention"].values())


def test_peak_memory_of_a_known_allocation():
    import torch

    from detector.cli.benchmark_attention import peak_memory_mb

    def two_live_megabyte_tensors():
        a = torch.ones(256, 1024)  # 1 MiB
        b = a * 2  # 1 MiB more while a lives
        del a
        return torch.ones(128, 1024) + b.sum()  # 0.5 MiB after a is gone

    assert abs(peak_memory_mb(two_live_megabyte_tensors, torch.device("cpu")) - 2.0) < 0.01


def test_search_benchmark_reports_both_paths_and_their_ratio():
    from detector.cli import benchmark_search

    argv = ["--config", str(CONFIG), "--targets", "6", "--queries", "2", "--plain-sample", "3"]
    report = benchmark_search.main([*argv, "data.test_size=96", "data.target_max_size=128"])
    assert report["targets"] == 6 and report["queries"] == 2
    assert report["ratio_search_over_plain"] == round(
        report["index_search_pairs_per_s"] / report["plain_pairs_per_s"], 2
    )
    assert report["index_mb_per_image"] > 0 and report["index_encode_seconds"] > 0
    plain, indexed = report["2_queries_seconds_plain_vs_index_with_encoding"]
    assert plain == pytest.approx(2 * 6 / report["plain_pairs_per_s"], abs=0.06)
    assert indexed >= report["index_encode_seconds"] - 0.06  # the encoding is counted once, in the total


@pytest.fixture(scope="module")
def small_data(synthetic_root, tmp_path_factory):
    from small_model import SMALL

    root = tmp_path_factory.mktemp("root")
    (root / "synthetic").symlink_to(synthetic_root)  # the data root holds the benchmark as "synthetic"
    return [f"data.root={root}", *SMALL, "train.batch_size=2", "train.pretrain_steps=0"]


def test_loading_batches_are_the_training_episodes_cycling(small_data):
    from detector.config import load_config
    from detector.data.build import build_split_data, build_transforms
    from detector.data.dataset import EpisodeDataset
    from detector.engine.trainer import build_episode_source

    config = load_config(CONFIG, [*small_data, "data.cache_mb=16"])
    batches = benchmark._loading_batches(config, 2)
    first, second, third = next(batches), next(batches), next(batches)
    # built independently, as tools/train.py builds epoch 0's episodes
    data = build_split_data(config.data, "train")
    sampler, targets = build_episode_source(config, data)
    episodes = EpisodeDataset(
        data.data, sampler.epoch(0), *build_transforms(config.data, True), config.train.seed, targets
    )
    expected = [episodes[i] for i in range(4)]
    assert [m["image_id"] for m in first.meta + second.meta] == [s.meta["image_id"] for s in expected]
    for got, sample in zip(first.targets + second.targets, expected):
        assert torch.equal(got["boxes"], sample.target["boxes"])
    h, w = expected[0].target_image.shape[1:]
    assert torch.equal(first.target_images[0, :, :h, :w], expected[0].target_image)
    assert torch.equal(third.target_images, first.target_images)  # two batches, then the first again


def test_loading_benchmark_times_loader_settings_against_each_other(small_data):
    argv = ["--config", str(CONFIG), "--repeats", "1", "--batch", "1", "--train-steps", "2", "--rounds", "1"]
    report = benchmark.main([*argv, "--loading", *small_data, "--against", "data.num_workers=1", "data.cache_mb=0"])
    assert report["train_loading"] is True and report["against"] == ["data.num_workers=1", "data.cache_mb=0"]
    assert report["train_images_per_s"] > 0 and report["against_images_per_s"] > 0
    assert report["train_speedup"] == pytest.approx(
        report["train_images_per_s"] / report["against_images_per_s"], abs=0.01
    )


def test_loading_benchmark_asks_for_fewer_steps_than_the_data_set_has(small_data):
    argv = ["--config", str(CONFIG), "--repeats", "1", "--batch", "1", "--train-steps", "1000", "--loading"]
    with pytest.raises(ValueError, match="lower --train-steps"):
        benchmark.main([*argv, *small_data])


def _saved_run(tmp_path, config, shift: float):
    """A checkpoint like a run's: the config's model with every float weight moved by ``shift``."""
    from detector.engine.checkpoint import save_checkpoint
    from detector.models import build

    torch.manual_seed(1)
    model, _, _ = build(config, load_weights=False)
    weights = {k: v + shift if v.is_floating_point() else v for k, v in model.state_dict().items()}
    return save_checkpoint({"model": weights, "config": config.to_dict()}, tmp_path / "run.pth"), weights


def test_benchmark_times_a_checkpoints_weights(tmp_path, monkeypatch):
    from detector.config import load_config
    from detector.engine.checkpoint import CheckpointError

    small = ["train.batch_size=2", "data.test_size=96", "data.target_sizes=[96]", "data.target_max_size=128"]
    small.append("train.compile=false")
    config = load_config(CONFIG, small)
    path, weights = _saved_run(tmp_path, config, shift=0.01)
    timed = {}
    real_step = benchmark._training_step

    def recording_step(cfg, device, loading=0, trained=None, source=""):
        timed["weights"] = trained
        return real_step(cfg, device, loading, trained, source)

    monkeypatch.setattr(benchmark, "_training_step", recording_step)
    argv = ["--config", str(CONFIG), "--repeats", "1", "--batch", "1", "--train-steps", "1", "--rounds", "1"]
    report = benchmark.main([*argv, "--checkpoint", str(path), *small, "--against", "train.amp=off"])
    assert report["weights"] == str(path) and "train_speedup" in report
    assert timed["weights"] is not None
    assert all(torch.equal(timed["weights"][k], v) for k, v in weights.items())  # the run's, not random ones

    with pytest.raises(ValueError, match="changes the model"):  # other model settings cannot take these weights
        benchmark.main([*argv, "--checkpoint", str(path), *small, "--against", "model.num_queries=20"])
    with pytest.raises(CheckpointError, match="another model config"):
        benchmark.main([*argv, "--checkpoint", str(path), *small, "model.hidden_dim=64"])


def test_benchmark_times_compiled_training_on_the_fixed_grid(small_data, monkeypatch):
    from detector.data.dataset import collate
    from detector.engine.compiling import compiler_problem

    if (problem := compiler_problem()) is not None:  # .ci/run installs g++
        pytest.skip(f"torch.compile does not work on this machine: {problem}")

    grids = []
    real_collate = collate

    def recording_collate(samples, size_divisor=32, min_grid=(0, 0)):
        grids.append(min_grid)
        return real_collate(samples, size_divisor, min_grid)

    monkeypatch.setattr(benchmark, "collate", recording_collate)
    torch._dynamo.reset()  # graphs compiled by earlier tests of this process would make the first step a plain one
    argv = ["--config", str(CONFIG), "--repeats", "1", "--batch", "1", "--train-steps", "1", "--rounds", "1"]
    report = benchmark.main([*argv, *small_data, "train.compile=true", "--against", "train.compile=false"])
    # the compiled step's batch is on data.target_max_size's grid (SMALL: 128), the eager one on its own
    assert grids == [(128, 128), (0, 0)]
    # the compiled setting's first step is the compilation (seconds), the eager one's a step (a fraction of one)
    assert report["train_first_step_s"] > report["against_first_step_s"] >= 0
    assert report["train_speedup"] == pytest.approx(
        report["train_images_per_s"] / report["against_images_per_s"], abs=0.01
    )
