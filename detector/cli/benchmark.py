"""Inference and training speed of a config on this machine: latency per pair, throughput, peak memory.

    python tools/benchmark.py --config configs/tiny_synthetic.yaml
    python tools/benchmark.py --config configs/ia_detr_r50.yaml --train-steps 3
    python tools/benchmark.py --config configs/tiny_synthetic.yaml --train-steps 8 --rounds 5 --against train.amp=off

Weights are random, or a trained run's with ``--checkpoint`` (its model config must be the config's): speed can
depend on them, because trained attention puts many softmax weights and gradients in the subnormal range
(detector.engine.numerics; ``DETECTOR_KEEP_DENORMALS=1`` measures without the flush). Images are random at the
config's test size (target) and query size. Peak memory is the process's maximum resident set size (CPU) or
CUDA's peak allocation.
Training is timed on one fixed batch shaped like the loader's (targets at the config's training sizes on one
padded grid, four boxes each): the model's step only, without loading. ``--loading`` times the step on batches
of the config's own training episodes instead, through the loader tools/train.py builds (the data set must be
there): reading, augmentation, the image cache and ``data.num_workers`` are then part of the figure, in the steady
state of a run's later epochs (one pass over the timed batches fills the cache first). ``--against`` times a second
setting in alternating rounds (the same machine load for both) and reports ``train_speedup``, the config's images/s
over the other's. ``--profile DIR`` then runs ``--train-steps`` more steps of the config under torch's profiler and
writes the trace (``trace.json``, for Perfetto or chrome://tracing) and the operator tables (``ops.txt``) there; it
reports the operators per step and, on CUDA, the kernels per step and the GPU's busy time against the step's: a
step that keeps the GPU busy a small part of its time is bound by the host (Python, dispatch, kernel launches).
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..config import Config, load_config
from ..data.build import build_split_data, build_transforms
from ..data.dataset import Batch, EpisodeDataset, Sample, collate
from ..data.images import ImageCache, load_image
from ..engine.checkpoint import fit_weights, trained_weights
from ..engine.compiling import compile_for_training
from ..engine.loop import amp_dtype_for, compute_losses
from ..engine.trainer import build_episode_source
from ..inference.predictor import Predictor
from ..models import build
from ..models.fuse import fuse_batchnorm
from .common import command


def _training_batch(config, device: torch.device, grid: tuple[int, int] = (0, 0)) -> Batch:
    """A batch like the training loader's: targets at the config's training sizes (short side cycling through
    ``data.target_sizes``, 4:3 or 3:4, longer side capped at ``target_max_size``), four boxes each, on one
    padded grid (at least ``grid``), each searched for ``train.queries_per_target`` queries; random pixels (speed
    does not depend on them)."""
    generator = torch.Generator().manual_seed(0)
    data, samples = config.data, []
    for i in range(config.train.batch_size):
        short = data.target_sizes[i % len(data.target_sizes)]
        long = min(int(short * 4 / 3), data.target_max_size)
        height, width = (short, long) if i % 2 == 0 else (long, short)
        boxes = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.4, 0.1, 0.15], [0.5, 0.7, 0.3, 0.2], [0.2, 0.8, 0.1, 0.1]])
        labels = torch.tensor([1, 1, 2, 3])
        image = torch.randn(3, height, width, generator=generator)
        group = []
        for slot in range(config.train.queries_per_target):
            label = labels[[0, 2, 3][slot % 3]]
            target = {
                "boxes": boxes[labels == label],
                "all_boxes": boxes,
                "class_boxes": boxes,
                "class_labels": labels,
                "query_label": label,
            }
            query = torch.randn(3, data.query_size, data.query_size, generator=generator)
            group.append(Sample(image, query, target, {"size": (height, width)}))
        samples.append(group if len(group) > 1 else group[0])
    return collate(samples, data.size_divisor, grid).to(device)


class _CyclingBatches:
    """A batch sampler that yields the same ``count`` batches of ``size`` consecutive episodes, round after round."""

    def __init__(self, count: int, size: int) -> None:
        self.batches = [list(range(i * size, (i + 1) * size)) for i in range(count)]

    def __iter__(self):
        while True:
            yield from self.batches


def _loading_batches(config: Config, count: int, grid: tuple[int, int] = (0, 0)):
    """``next()`` gives the next batch of the config's first ``count`` training batches (cycling), loaded as
    tools/train.py loads them: its episodes, transforms, image cache and loader processes (kept alive)."""
    data = build_split_data(config.data, "train")
    sampler, targets = build_episode_source(config, data)
    target_tf, query_tf = build_transforms(config.data, train=True)
    read = ImageCache(config.data.cache_mb) if config.data.cache_mb > 0 else load_image
    episodes = EpisodeDataset(data.data, sampler.epoch(0), target_tf, query_tf, config.train.seed, targets, read)
    if len(episodes) < count * config.train.batch_size:
        raise ValueError(
            f"--loading times {count} batches of {config.train.batch_size} distinct episodes, the data set has "
            f"{len(episodes)}: lower --train-steps or train.batch_size"
        )
    loader = torch.utils.data.DataLoader(
        episodes,
        batch_sampler=_CyclingBatches(count, config.train.batch_size),
        num_workers=config.data.num_workers,
        persistent_workers=config.data.num_workers > 0,
        collate_fn=partial(collate, size_divisor=config.data.size_divisor, min_grid=grid),
    )
    return iter(loader)


def _training_step(config, device: torch.device, loading: int = 0, weights: dict | None = None, source: str = ""):
    """One optimizer step of ``config``'s model, as tools/train.py runs it (autocast and ``train.compile``
    included): on a fixed batch, or with ``loading`` on the next of that many batches of real episodes, loaded in
    the step; from ``weights`` (a trained model's state dict) when given, else from random weights."""
    torch.manual_seed(0)
    model, criterion, _ = build(config, load_weights=False)
    if weights is not None:
        fit_weights(model, weights, source)
    model.to(device).train()
    grid = compile_for_training(model, config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    batches = _loading_batches(config, loading, grid) if loading else None
    fixed = None if loading else _training_batch(config, device, grid)
    amp_dtype = amp_dtype_for(config.train.amp, device)  # as tools/train.py
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    def step() -> None:
        batch = fixed if batches is None else next(batches).to(device)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            losses = compute_losses(model, criterion, batch, 1.0)
        optimizer.zero_grad()
        scaler.scale(losses["loss"]).backward()
        scaler.step(optimizer)
        scaler.update()

    return step, str(amp_dtype or torch.float32).removeprefix("torch.")


def _time_training(config, args: argparse.Namespace, device: torch.device, weights: dict | None) -> dict:
    """Training images/s of the config (and of ``--against``, rounds alternating so that both see the same
    machine load): the median over ``--rounds`` rounds of ``--train-steps`` steps, after one warm-up step (with
    ``--loading``, after one warm-up round: every timed batch loaded once, so the image cache holds them). The
    first step's seconds are reported too: with ``train.compile`` they are the compilation's."""
    settings = {"train": config}
    if args.against:
        settings["against"] = load_config(args.config, [*args.overrides, *args.against])
        if weights is not None and settings["against"].model != config.model:
            raise ValueError(
                f"--against {' '.join(args.against)} changes the model, which --checkpoint's weights must fit: "
                "compare settings outside model.* (train.amp, data.num_workers, ...) or drop --checkpoint"
            )
    loading = args.train_steps if args.loading else 0
    steps = {name: _training_step(cfg, device, loading, weights, args.checkpoint) for name, cfg in settings.items()}
    rounds: dict[str, list[float]] = {name: [] for name in settings}
    first: dict[str, float] = {}
    for name, (step, _) in steps.items():
        first[name] = _time(step, 1, warm_up=False)
        for _ in range(max(loading, 1) - 1):
            step()  # warm-up
    for _ in range(args.rounds):
        for name, (step, _) in steps.items():
            rounds[name].append(_time(step, args.train_steps, warm_up=False))
    report = {"train_batch": config.train.batch_size, "train_loading": bool(loading)}
    for name, cfg in settings.items():
        report[f"{name}_images_per_s"] = round(cfg.train.batch_size / float(np.median(rounds[name])), 2)
        report[f"{name}_precision"] = steps[name][1]
        report[f"{name}_first_step_s"] = round(first[name], 1)
    if args.against:
        report["against"] = args.against
        report["train_speedup"] = round(report["train_images_per_s"] / report["against_images_per_s"], 2)
    if args.profile:
        step_ms = 1000 * config.train.batch_size / report["train_images_per_s"]
        report.update(_profile(steps["train"][0], args.train_steps, device, Path(args.profile), step_ms))
    return report


def _profile(step, repeats: int, device: torch.device, out: Path, step_ms: float) -> dict:
    """``repeats`` calls of the training ``step`` under torch.profiler: the trace and the operator tables written
    to ``out``; per step, the operators run (nested ones included) and, on CUDA, the kernels launched and the GPU
    time they took (copies and fills included), also as a share of ``step_ms``, the step's time without the
    profiler."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with profile(activities=activities) as profiler:
        _time(step, repeats, warm_up=False)
    out.mkdir(parents=True, exist_ok=True)
    trace = out / "trace.json"
    profiler.export_chrome_trace(str(trace))
    averages = profiler.key_averages()
    tables = [averages.table(sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=70)]
    if cuda:
        tables.append(averages.table(sort_by="self_device_time_total", row_limit=25, max_name_column_width=70))
    (out / "ops.txt").write_text("\n\n".join(tables) + "\n")
    events = json.loads(trace.read_text())["traceEvents"]
    count: dict[str, int] = {}
    micros: dict[str, float] = {}
    for event in events:
        if event.get("ph") == "X":
            kind = event.get("cat", "")
            count[kind] = count.get(kind, 0) + 1
            micros[kind] = micros.get(kind, 0.0) + float(event.get("dur", 0))
    report = {"profile_dir": str(out), "profile_ops_per_step": round(count.get("cpu_op", 0) / repeats)}
    if cuda:
        gpu_ms = sum(micros.get(kind, 0.0) for kind in ("kernel", "gpu_memcpy", "gpu_memset")) / 1000 / repeats
        report["profile_kernels_per_step"] = round(count.get("kernel", 0) / repeats)
        report["profile_gpu_ms_per_step"] = round(gpu_ms, 1)
        report["profile_gpu_busy_share"] = round(gpu_ms / step_ms, 3)
    return report


def _time(fn, repeats: int, warm_up: bool = True) -> float:
    """Seconds per call of ``fn``; on CUDA the clock stops only once the GPU has run everything queued (a
    training step returns before its optimizer's kernels have run)."""
    sync = torch.cuda.synchronize if torch.cuda.is_initialized() else (lambda: None)
    if warm_up:
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


@command()
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8, help="targets per call for the throughput figure")
    parser.add_argument("--train-steps", type=int, default=0, help="also time this many training steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="training: rounds of --train-steps (median reported)")
    parser.add_argument(
        "--loading",
        action="store_true",
        help="training: time the step on the config's own training episodes, loaded as tools/train.py loads them "
        "(data.num_workers, data.cache_mb, augmentation), instead of on one fixed batch; needs the data set",
    )
    parser.add_argument(
        "--against",
        nargs="+",
        metavar="KEY=VALUE",
        help="training: also time the config with these overrides (the 'before'), in rounds alternating with the "
        "config as given, and report the speed-up",
    )
    parser.add_argument(
        "--checkpoint",
        help="time a trained run's weights instead of random ones (its model config must be the config's)",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="training: also run --train-steps steps under torch's profiler and write its trace and operator tables "
        "to DIR (on CUDA it reports the kernels per step and how busy they keep the GPU)",
    )
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    if args.profile and not args.train_steps:
        parser.error("--profile profiles training steps: give --train-steps N too")
    config = load_config(args.config, args.overrides)
    torch.manual_seed(0)
    model, _, _ = build(config, load_weights=False)
    weights = None
    if args.checkpoint:  # the run's weights, its training heads included: the training step runs them too
        weights, _ = trained_weights(args.checkpoint, config)
        fit_weights(model, weights, args.checkpoint)
    predictor = Predictor(fuse_batchnorm(copy.deepcopy(model)), config, args.device)  # as from_checkpoint
    rng = np.random.default_rng(0)
    side = config.data.test_size
    target = rng.integers(0, 255, (side, int(side * 4 / 3), 3), dtype=np.uint8)
    query = rng.integers(0, 255, (config.data.query_size, config.data.query_size, 3), dtype=np.uint8)
    report = {
        "config": args.config,
        "weights": args.checkpoint or "random",
        "device": str(predictor.device),
        "threads": torch.get_num_threads(),
        "target": list(target.shape[:2]),
        "query": list(query.shape[:2]),
    }
    report["latency_ms_per_pair"] = round(1000 * _time(lambda: predictor.predict(query, target), args.repeats), 1)
    batch_time = _time(lambda: predictor.predict(query, [target] * args.batch), max(1, args.repeats // 2))
    report[f"throughput_pairs_per_s_batch{args.batch}"] = round(args.batch / batch_time, 2)  # the Predictor's policy
    # the same targets in one model call, whatever the policy: what the policy was chosen from
    targets, queries = [predictor._target_tensor(target)] * args.batch, [predictor._query_tensor(query, None)]
    once = predictor.model.zero_padding  # else the query is encoded on the targets' grid, in each call
    encoded = predictor.encode_query(queries) if once else None
    forced = lambda: predictor._run(targets, queries, encoded, 0.3, None if once else {})  # noqa: E731
    forced_time = _time(forced, max(1, args.repeats // 2))
    report[f"throughput_pairs_per_s_one_call_of_{args.batch}"] = round(args.batch / forced_time, 2)
    if args.train_steps:
        report.update(_time_training(config, args, predictor.device, weights))
    if predictor.device.type == "cuda":
        report["peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    else:
        report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    raise SystemExit(main())
