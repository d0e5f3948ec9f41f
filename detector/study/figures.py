"""Figures of the attention study: learning curves, the learned bias (the paper's Figure 3), theory plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from .experiment import NAMES


def curves_figure(runs: list[dict], path: Path, floors: dict[str, float] | None = None) -> None:
    tasks = sorted({r["task"] for r in runs})
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for block in NAMES:
            curves = np.array([r["curve"] for r in runs if r["task"] == task and r["block"] == block])
            if len(curves) == 0:
                continue
            mean, std = 100 * curves.mean(0), 100 * curves.std(0)
            epochs = np.arange(1, curves.shape[1] + 1)
            ax.plot(epochs, mean, label=NAMES[block])
            ax.fill_between(epochs, mean - std, mean + std, alpha=0.2)
        if floors and task in floors:
            ax.axhline(100 * floors[task], color="k", ls="--", lw=0.8, label="blind floor")
        ax.set_title(task)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bias_figure(runs: list[dict], path: Path) -> None:
    """Learned relation bias f(j - r_i) of the IA model, one panel per layer (rows) and head (columns)."""
    with_bias = [r for r in runs if "bias" in r]
    if not with_bias:
        return
    fig, axes = plt.subplots(
        len(with_bias[0]["bias"]),
        len(with_bias) * len(with_bias[0]["bias"][0]),
        figsize=(1.3 * len(with_bias) * len(with_bias[0]["bias"][0]), 1.3 * len(with_bias[0]["bias"])),
        squeeze=False,
    )
    heads = len(with_bias[0]["bias"][0])
    for t, run in enumerate(with_bias):
        for layer, maps in enumerate(run["bias"]):
            for head, grid in enumerate(maps):
                ax = axes[layer, t * heads + head]
                ax.imshow(np.asarray(grid), cmap="viridis")
                ax.set_xticks([])
                ax.set_yticks([])
                if layer == 0:
                    ax.set_title(f"{run['task']}\nhead {head}" if head == 0 else f"head {head}", fontsize=7)
                if t == 0 and head == 0:
                    ax.set_ylabel(f"layer {layer}", fontsize=7)
    fig.suptitle("Learned relation bias f(j - r_i): rows = query i, columns = value position j", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def theory_figures(theory: dict, out: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    rows = [r for r in theory["value_noise"] if r["sharpness"] == 1.0]
    for sigma in sorted({r["sigma"] for r in rows}):
        sel = [r for r in rows if r["sigma"] == sigma]
        axes[0].plot([r["d"] for r in sel], [r["measured_snr"] for r in sel], "o-", label=f"value noise sigma={sigma}")
    mis = theory["misalignment"]
    for shift in sorted({r["shift"] for r in mis}):
        sel = [r for r in mis if r["shift"] == shift]
        axes[0].plot([r["d"] for r in sel], [r["measured_snr"] for r in sel], "s--", label=f"misaligned, shift={shift}")
        axes[1].plot([r["d"] for r in sel], [r["measured_gamma"] for r in sel], "o", label=f"measured, shift={shift}")
        axes[1].plot([r["d"] for r in sel], [r["predicted_gamma"] for r in sel], "k-", lw=0.8)
    axes[0].axhline(1.0, color="grey", lw=0.8)
    axes[0].set(xscale="log", yscale="log", xlabel="d", ylabel="SNR", title="SNR vs d")
    axes[0].legend(fontsize=6)
    axes[1].set(xlabel="d", ylabel="gamma", title="misalignment noise (line: ||dmu||^2 + 2d)")
    axes[1].legend(fontsize=6)
    vals = theory["value_noise"]
    axes[2].loglog([r["predicted_error"] for r in vals], [r["measured_error"] for r in vals], "o", ms=3)
    lim = [min(r["predicted_error"] for r in vals), max(r["predicted_error"] for r in vals)]
    axes[2].plot(lim, lim, "k-", lw=0.8)
    axes[2].set(xlabel="sigma^2 d sum a_i^2", ylabel="measured E||o_hat - o*||^2", title="value-noise error")
    fig.tight_layout()
    fig.savefig(out / "theory.png", dpi=110)
    plt.close(fig)
