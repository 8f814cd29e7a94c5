"""How sure a ratio FD / floor is: a bootstrap of the FD over the generated samples, and the floor's spread over its draws.

The FD of a model moves with the samples drawn: a bootstrap (Efron 1979) resamples the
model's N embedded samples with replacement and measures the FD against the same real test
statistics each time. Resampling with replacement repeats samples, which biases every
bootstrap FD upward by about the same amount, so only its spread is used: the draws are
shifted to centre on the measured FD. The floor (``diffusion.metrics.floor``) has its own
spread over its draws of two disjoint real halves. The ratio's interval is the central
``level`` of every pair (shifted bootstrap FD) / (floor draw).

The real test set is the same for every model, so its own sampling noise moves every FD
together and does not decide a ranking; it is left out. Two intervals that overlap mark their
models as tied (``diffusion.lab.leaderboard.tie_ranks``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diffusion.metrics.floor import Floor
from diffusion.metrics.frechet import FrechetReference, GaussianStats

BOOTSTRAP_DRAWS = 50
LEVEL = 0.95


@dataclass(frozen=True)
class RatioInterval:
    """FD's bootstrap standard deviation, and the ``level`` interval of FD / floor."""

    fd_std: float
    low: float
    high: float


def bootstrap_fds(features: np.ndarray, reference: GaussianStats, draws: int = BOOTSTRAP_DRAWS,
                  seed: int = 0) -> np.ndarray:
    """FD against ``reference`` of ``draws`` resamples (with replacement, the same size) of ``features`` (N, d)."""
    if draws < 2:
        raise ValueError(f"a bootstrap needs at least 2 draws, got {draws}")
    rng, fixed = np.random.default_rng(seed), FrechetReference(reference)
    n = len(features)
    return np.array([fixed.distance(features[rng.integers(0, n, n)]) for _ in range(draws)])


def ratio_interval(fd: float, fd_draws: np.ndarray, floor: Floor, level: float = LEVEL) -> RatioInterval:
    """The interval of FD / floor: the bootstrap draws centred on ``fd``, each divided by each of the floor's draws."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    centred = fd + (np.asarray(fd_draws, dtype=np.float64) - np.mean(fd_draws))
    ratios = np.clip(centred, 0.0, None)[:, None] / np.asarray(floor.values, dtype=np.float64)[None, :]
    low, high = np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2])
    return RatioInterval(float(np.std(fd_draws, ddof=1)), float(low), float(high))
