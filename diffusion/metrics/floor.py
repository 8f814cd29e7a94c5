"""The real-vs-real floor: FD between disjoint real samples of the size a model is scored at.

FD is biased upward at finite N (roughly (d^2 + 5d) / (2N) for one isotropic Gaussian), so a
model's FD means something only next to the floor at the same N; the product reports both and
their ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diffusion.metrics.frechet import frechet_distance


@dataclass(frozen=True)
class Floor:
    """FD between ``draws`` pairs of disjoint real samples of size ``n``: mean and spread."""

    n: int
    mean: float
    std: float
    values: tuple[float, ...]

    def ratio(self, fd: float) -> float:
        """FD / floor: 1 is as good as real data at this N."""
        return fd / self.mean if self.mean > 0 else float("inf")


def fd_floor(real: np.ndarray, n: int, draws: int = 5, seed: int = 0) -> Floor:
    """Split a pool of real features (M, d) into two disjoint random halves of ``n``, ``draws`` times."""
    real = np.asarray(real, dtype=np.float64)
    if 2 * n > len(real):
        raise ValueError(f"a floor at N = {n} needs {2 * n} real samples; the pool has {len(real)}")
    if draws < 2:
        raise ValueError(f"the floor's spread needs at least 2 draws, got {draws}")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(draws):
        order = rng.permutation(len(real))
        values.append(frechet_distance(real[order[:n]], real[order[n : 2 * n]]).fd)
    return Floor(n, float(np.mean(values)), float(np.std(values, ddof=1)), tuple(values))
