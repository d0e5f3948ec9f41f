"""Train the three sequence models on the synthetic tasks over several seeds; tables and figures."""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.numerics import flush_denormals
from .models import BLOCKS, SequenceModel
from .tasks import TaskData, blind_floor, make_task
from .theory import run_theory

TASKS = ("sorting-5", "sorting-2", "retrieval")
# the floor: an IA model whose values are all zero (nothing is read through the block; which block does not
# matter, their outputs are all the output projection's bias)
ZERO = "zero-values"


@dataclass
class StudySettings:
    tasks: tuple[str, ...] = TASKS
    blocks: tuple[str, ...] = (*BLOCKS, ZERO)
    seeds: int = 3
    epochs: int = 60
    train_size: int = 1000
    test_size: int = 200
    batch_size: int = 50
    lr: float = 5e-4
    layers: int = 6
    heads: int = 4
    dim: int = 128
    workers: int = 2
    value_positions: bool = False  # True: the first version's rule (values carry the key index's code)


def _loss_and_correct(model: SequenceModel, data: TaskData, index: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    logits = model(data.x[index], data.y[index])
    target = data.target[index]
    if data.per_token:
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten())
    else:
        loss = F.cross_entropy(logits, target)
    correct = int((logits.argmax(-1) == target).sum())
    return loss, correct, target.numel()


@torch.no_grad()
def accuracy(model: SequenceModel, data: TaskData) -> float:
    model.eval()
    _, correct, total = _loss_and_correct(model, data, torch.arange(len(data)))
    model.train()
    return correct / total


def train_one(task: str, block: str, seed: int, settings: StudySettings) -> dict:
    """Train one model; return its test-accuracy curve (one point per epoch) and final accuracy."""
    torch.manual_seed(seed)
    train = make_task(task, settings.train_size, seed=10_000 + seed)
    test = make_task(task, settings.test_size, seed=20_000 + seed)
    model = SequenceModel(
        "indirect" if block == ZERO else block,
        train.per_token,
        settings.dim,
        settings.heads,
        settings.layers,
        value_positions=settings.value_positions,
        zero_values=block == ZERO,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.01)
    steps = settings.epochs * (len(train) // settings.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, settings.lr, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    curve, start = [], time.perf_counter()
    for _ in range(settings.epochs):
        order = torch.randperm(len(train), generator=generator)
        for batch in order.split(settings.batch_size):
            if len(batch) < settings.batch_size:
                continue
            loss, _, _ = _loss_and_correct(model, train, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
        curve.append(accuracy(model, test))
    result = {
        "task": task,
        "block": block,
        "seed": seed,
        "curve": curve,
        "final": curve[-1],
        "train_accuracy": accuracy(model, train),
        "blind_floor": blind_floor(test),
        "seconds": round(time.perf_counter() - start, 1),
    }
    if block == "indirect" and seed == 0:
        _, trace = model(test.x[:50], test.y[:50], trace=True)
        result["bias"] = [b.mean(0).tolist() for b in trace["bias"]]  # per layer: (heads, Nq, n)
        start = trace["reference"][0]
        # how far the references moved from where they started, per layer (mean |r_i - i|)
        result["reference_shift"] = [float((r - start).abs().mean()) for r in trace["reference"]]
    return result


def _job(args: tuple[str, str, int, StudySettings]) -> dict:
    flush_denormals()  # a pool process is not the command's: it starts with gradual underflow
    torch.set_num_threads(1)
    return train_one(*args)


def run_study(settings: StudySettings, out_dir: str | Path, theory_trials: int = 4000) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    jobs = [(t, b, s, settings) for t in settings.tasks for b in settings.blocks for s in range(settings.seeds)]
    if settings.workers > 1:
        with ProcessPoolExecutor(settings.workers) as pool:
            runs = list(pool.map(_job, jobs))
    else:
        runs = [train_one(*job) for job in jobs]
    theory = run_theory(trials=theory_trials)
    summary, floor = summarise(runs), floors(runs)
    report = {
        "settings": settings.__dict__,
        "summary": summary,
        "floors": floor,
        "runs": runs,
        "theory": theory,
        "minutes": round((time.perf_counter() - start) / 60, 2),
    }
    (out / "results.json").write_text(json.dumps(report))
    table = markdown_table(summary, settings, floor) + reference_table(runs)
    (out / "results.md").write_text(table + "\n\n" + theory_table(theory))
    from .figures import bias_figure, curves_figure, theory_figures

    curves_figure(runs, out / "curves.png", floor)
    bias_figure(runs, out / "bias.png")
    theory_figures(theory, out)
    return report


def floors(runs: list[dict]) -> dict[str, float]:
    """Per task, the blind floor (:func:`~detector.study.tasks.blind_floor`) averaged over the seeds' test sets."""
    by_task: dict[str, dict[int, float]] = {}
    for run in runs:
        by_task.setdefault(run["task"], {})[run["seed"]] = run["blind_floor"]
    return {task: float(np.mean(list(seeds.values()))) for task, seeds in by_task.items()}


def summarise(runs: list[dict]) -> dict:
    table: dict[str, dict[str, dict]] = {}
    for run in runs:
        cell = table.setdefault(run["task"], {}).setdefault(run["block"], {"finals": []})
        cell["finals"].append(run["final"])
    for blocks in table.values():
        for cell in blocks.values():
            cell["mean"] = float(np.mean(cell["finals"]))
            cell["std"] = float(np.std(cell["finals"]))
    return table


NAMES = {
    "indirect": "Indirect attention",
    "cross": "Cross-attention",
    "misaligned": "Misaligned attention",
    ZERO: "control: all values zero",
}


def markdown_table(summary: dict, settings: StudySettings, floor: dict[str, float] | None = None) -> str:
    tasks = list(summary)
    lines = [
        f"Test accuracy (%), mean ± std over {settings.seeds} seeds, {settings.epochs} epochs, "
        f"{settings.train_size} train / {settings.test_size} test instances, {settings.layers} layers, "
        f"{settings.heads} heads, hidden {settings.dim}.",
        "",
        "| attention | " + " | ".join(tasks) + " |",
        "|---|" + "---|" * len(tasks),
    ]
    for block in settings.blocks:
        cells = [f"{100 * summary[t][block]['mean']:.1f} ± {100 * summary[t][block]['std']:.1f}" for t in tasks]
        lines.append(f"| {NAMES[block]} | " + " | ".join(cells) + " |")
    if floor:
        cells = [f"{100 * floor[t]:.1f}" for t in tasks]
        lines.append("| blind floor (best guess without x) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reference_table(runs: list[dict]) -> str:
    """How far IA's reference positions moved from where they started, per layer (seed 0)."""
    traced = [r for r in runs if "reference_shift" in r]
    if not traced:
        return ""
    layers = len(traced[0]["reference_shift"])
    lines = [
        "",
        "",
        "Indirect attention, seed 0: mean |r_i - i| of the reference positions each layer's bias was computed from.",
        "",
        "| task | " + " | ".join(f"layer {k}" for k in range(layers)) + " |",
        "|---|" + "---|" * layers,
    ]
    for run in traced:
        lines.append(f"| {run['task']} | " + " | ".join(f"{v:.2f}" for v in run["reference_shift"]) + " |")
    return "\n".join(lines)


def theory_table(theory: dict) -> str:
    lines = [
        "Value noise: E||o_hat - o*||^2 = sigma^2 d sum a_i^2 (Monte Carlo vs formula)",
        "",
        "| d | sharpness | sigma | measured | predicted | rel. error | SNR measured | SNR predicted |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in theory["value_noise"]:
        rel = abs(r["measured_error"] / r["predicted_error"] - 1)
        lines.append(
            f"| {r['d']} | {r['sharpness']} | {r['sigma']} | {r['measured_error']:.3f} | "
            f"{r['predicted_error']:.3f} | {100 * rel:.1f}% | {r['measured_snr']:.3f} | "
            f"{r['predicted_snr']:.3f} |"
        )
    lines += [
        "",
        "Misalignment: gamma = E||y_i - x_i||^2 vs ||mu_y - mu_x||^2 + 2d",
        "",
        "| d | mean shift / coord | gamma measured | gamma predicted | noise per coord | SNR measured | "
        "SNR predicted |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in theory["misalignment"]:
        lines.append(
            f"| {r['d']} | {r['shift']} | {r['measured_gamma']:.1f} | {r['predicted_gamma']:.1f} | "
            f"{r['noise_per_coordinate']:.2f} | {r['measured_snr']:.3f} | {r['predicted_snr']:.3f} |"
        )
    return "\n".join(lines)
