"""Kernel Inception Distance: the unbiased MMD^2 with a cubic polynomial kernel.

KID = MMD_u^2 with k(x, y) = (x . y / d + 1)^3 (Binkowski et al. 2018, sec. 3), averaged over
random subsets; unlike FD it has no small-sample bias, so its floor is 0 in expectation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class KIDResult:
    """Mean and standard deviation of MMD_u^2 over the subsets."""

    mean: float
    std: float
    subsets: int
    subset_size: int


def polynomial_mmd(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between two (m, d) samples with k(a, b) = (a . b / d + 1)^3."""
    m, d = x.shape
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.mean())


def kernel_distance(
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    subsets: int = 20,
    subset_size: int = 1000,
    seed: int = 0,
) -> KIDResult:
    """KID between (N, d) and (M, d) features: ``subsets`` draws of min(subset_size, N, M) each."""
    fx, fy = (np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=np.float64) for v in (x, y))
    m = min(subset_size, len(fx), len(fy))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples on each side, got {len(fx)} and {len(fy)}")
    rng = np.random.default_rng(seed)
    values = [
        polynomial_mmd(fx[rng.choice(len(fx), m, replace=False)], fy[rng.choice(len(fy), m, replace=False)])
        for _ in range(subsets)
    ]
    return KIDResult(float(np.mean(values)), float(np.std(values)), subsets, m)
