"""The paper's noise analysis, checked by Monte Carlo.

1. **Attention cannot denoise its values.** With weights ``a`` (summing to 1) and independent value noise
   ``e_i ~ N(0, sigma^2 I_d)``, the output error is ``||sum_i a_i e_i||^2`` with expectation
   ``sigma^2 d sum_i a_i^2``. With unit-variance values the signal is ``d sum_i a_i^2`` too, so
   ``SNR = 1 / sigma^2`` whatever ``d``, and ``sigma* = 1`` is the level where noise equals signal.
2. **Misalignment is value noise.** If keys come from ``X`` and values from ``Y`` (``x_i ~ N(mu_x, I)``,
   ``y_i ~ N(mu_y, I)``, independent), the per-token substitution ``y_i - x_i`` has
   ``E||y_i - x_i||^2 = ||mu_y - mu_x||^2 + 2d`` (the paper's ``gamma``), and the output error is
   ``||mu_y - mu_x||^2 + 2d sum_i a_i^2``. Per coordinate the noise variance is ``gamma / d >= 2``: above the
   critical level ``sigma* = 1`` for every ``d``, and it grows with the mean shift.
"""

from __future__ import annotations

import torch


def attention_weights(n: int, sharpness: float, generator: torch.Generator) -> torch.Tensor:
    """Softmax of ``sharpness * N(0, 1)`` logits: 0 gives uniform weights, large values one-hot ones."""
    return torch.softmax(sharpness * torch.randn(n, generator=generator, dtype=torch.float64), dim=0)


def value_noise_error(d: int, n: int, sharpness: float, sigma: float, trials: int, seed: int = 0) -> dict:
    """Measured and predicted ``E||o_hat - o*||^2`` and SNR under additive value noise."""
    gen = torch.Generator().manual_seed(seed)
    a = attention_weights(n, sharpness, gen)
    values = torch.randn(trials, n, d, generator=gen, dtype=torch.float64)
    noise = sigma * torch.randn(trials, n, d, generator=gen, dtype=torch.float64)
    signal = (a[None, :, None] * values).sum(1)
    error = (a[None, :, None] * noise).sum(1)
    sum_sq = float((a**2).sum())
    measured = float((error**2).sum(-1).mean())
    return {
        "d": d,
        "sharpness": sharpness,
        "sigma": sigma,
        "sum_a2": sum_sq,
        "measured_error": measured,
        "predicted_error": sigma**2 * d * sum_sq,
        "measured_snr": float((signal**2).sum(-1).mean()) / measured,
        "predicted_snr": 1.0 / sigma**2,
    }


def misalignment_noise(d: int, n: int, shift: float, sharpness: float, trials: int, seed: int = 0) -> dict:
    """Measured and predicted ``gamma``, output error and SNR when values are misaligned with keys.

    ``mu_x = 0`` and ``mu_y = shift * 1_d``, so ``||mu_y - mu_x||^2 = shift^2 d``.
    """
    gen = torch.Generator().manual_seed(seed)
    a = attention_weights(n, sharpness, gen)
    x = torch.randn(trials, n, d, generator=gen, dtype=torch.float64)
    y = shift + torch.randn(trials, n, d, generator=gen, dtype=torch.float64)
    aligned = (a[None, :, None] * x).sum(1)
    misaligned = (a[None, :, None] * y).sum(1)
    sum_sq, shift_sq = float((a**2).sum()), shift**2 * d
    error = float(((misaligned - aligned) ** 2).sum(-1).mean())
    return {
        "d": d,
        "shift": shift,
        "sharpness": sharpness,
        "measured_gamma": float(((y - x) ** 2).sum(-1).mean()),
        "predicted_gamma": shift_sq + 2 * d,
        "measured_error": error,
        "predicted_error": shift_sq + 2 * d * sum_sq,
        "measured_snr": float((aligned**2).sum(-1).mean()) / error,
        "predicted_snr": d * sum_sq / (shift_sq + 2 * d * sum_sq),
        "noise_per_coordinate": (shift_sq + 2 * d) / d,
    }


def run_theory(trials: int = 4000, dims: tuple[int, ...] = (16, 32, 64, 128, 256), n: int = 32) -> dict:
    """All checks over a grid of ``d``, sharpness, noise and shift; rows of measured vs predicted."""
    value_rows = [
        value_noise_error(d, n, s, sigma, trials, seed=i)
        for i, (d, s, sigma) in enumerate((d, s, sig) for d in dims for s in (0.0, 1.0, 4.0) for sig in (0.5, 1.0, 2.0))
    ]
    misaligned_rows = [
        misalignment_noise(d, n, shift, 1.0, trials, seed=i)
        for i, (d, shift) in enumerate((d, sh) for d in dims for sh in (0.0, 0.5, 1.0))
    ]
    return {"value_noise": value_rows, "misalignment": misaligned_rows}
