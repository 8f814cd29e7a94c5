"""Score a set of images against held-out real digits: FD with its floor and ratio, and KID.

FD as in Heusel et al. 2017 (in an embedding of this lab's choice), always next to the
real-vs-real floor at the same N (``diffusion.metrics.floor``), with the interval of their ratio
(``diffusion.metrics.uncertainty``); KID as in Binkowski et al. 2018; precision, recall, density and
coverage (``diffusion.metrics.manifold``) next to their real-vs-real values at the same N, drawn
from the real pool as the floor is. The images scored are
first quantized to 8 bits (``quantize_8bit``), as the real digits are stored and as clean-fid
does (Parmar et al. 2022): a model is scored on what it could write to a PNG.
A ``Scorer`` is built once per (embedding, real test set, real pool, floor draws, seed) and
caches what does not depend on the images scored: the real test statistics and the floor per N.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from diffusion.core.images import quantize_8bit
from diffusion.embeddings import Embedder
from diffusion.metrics.floor import Floor, fd_floor
from diffusion.metrics.frechet import GaussianStats, feature_stats, frechet_distance
from diffusion.metrics.kid import kernel_distance
from diffusion.metrics.manifold import Manifold, manifold_metrics
from diffusion.metrics.uncertainty import BOOTSTRAP_DRAWS, bootstrap_fds, ratio_interval

KID_SUBSET = 1000
MANIFOLD_FIELDS = ("precision", "recall", "density", "coverage")


@dataclass(frozen=True)
class Score:
    """One FD as the product reports it: always next to the floor at the same N."""

    embedding: str
    n: int
    fd: float
    mean_term: float
    trace_term: float
    floor_mean: float
    floor_std: float
    ratio: float
    kid_mean: float | None  # None where KID was skipped (the sweep's trials, for speed)
    kid_std: float | None
    fd_std: float | None  # FD's bootstrap spread; None where the bootstrap was skipped (the sweep's trials)
    ratio_low: float | None  # the 95% interval of the ratio (diffusion.metrics.uncertainty)
    ratio_high: float | None
    precision: float | None  # diffusion.metrics.manifold; None where skipped (the sweep's trials)
    recall: float | None
    density: float | None
    coverage: float | None
    real_precision: float | None  # the same four for two disjoint real samples of N: their reference values
    real_recall: float | None
    real_density: float | None
    real_coverage: float | None


def real_manifold(real_pool: torch.Tensor, embedder: Embedder, n: int, seed: int = 0) -> Manifold:
    """Precision, recall, density and coverage of one real sample of N = ``n`` against another, disjoint one, both a
    seeded draw from the real pool (as the floor's): what a perfect model would score at this N."""
    if len(real_pool) < 2 * n:
        raise ValueError(f"the real-vs-real reference at N = {n} needs {2 * n} real images, the pool has {len(real_pool)}")
    generator = torch.Generator().manual_seed(seed)
    pool = real_pool[torch.randperm(len(real_pool), generator=generator)[: 2 * n]]
    features = embedder(pool)
    return manifold_metrics(features[:n], features[n:])


def real_floor(real_pool: torch.Tensor, embedder: Embedder, n: int, draws: int = 5, seed: int = 0) -> Floor:
    """The floor at N = ``n`` in ``embedder``'s space, from a seeded draw of 4n images of the real pool."""
    generator = torch.Generator().manual_seed(seed)
    pool = real_pool[torch.randperm(len(real_pool), generator=generator)[: 4 * n]]
    return fd_floor(embedder(pool), n, draws=draws, seed=seed)


class Scorer:
    """Scores image batches in one embedding against ``real_test``, with floors drawn from ``real_pool``.

    ``real_pool`` is every real digit available (train + test, ``RealSets.pool``); ``floors``
    may hold floors computed elsewhere with the same rule (``real_floor``), keyed by N. Where
    those are all the floors needed, ``real_pool`` may be None (a sweep trial scores one N and
    need not keep a copy of the whole data set).
    """

    def __init__(self, embedder: Embedder, real_test: torch.Tensor, real_pool: torch.Tensor | None = None,
                 floor_draws: int = 5, seed: int = 0, floors: Mapping[int, Floor] | None = None) -> None:
        self.embedder = embedder
        self.real_test = real_test
        self.real_pool = real_pool
        self.floor_draws = floor_draws
        self.seed = seed
        self._floors: dict[int, Floor] = dict(floors or {})
        self._test_stats: dict[int, GaussianStats] = {}
        self._test_features: dict[int, np.ndarray] = {}
        self._real_manifolds: dict[int, Manifold] = {}

    @property
    def name(self) -> str:
        """The embedding's name."""
        return self.embedder.name

    def size(self, num_images: int) -> int:
        """N at which ``num_images`` images are scored: at most the real test set's size."""
        return min(num_images, len(self.real_test))

    def floor(self, n: int) -> Floor:
        """The real-vs-real floor at N = ``n`` (computed once per N)."""
        if n not in self._floors:
            if self.real_pool is None:
                raise ValueError(f"no floor at N = {n} was given and this scorer keeps no real pool to draw it from")
            self._floors[n] = real_floor(self.real_pool, self.embedder, n, self.floor_draws, self.seed)
        return self._floors[n]

    def test_stats(self, n: int) -> GaussianStats:
        """Streamed statistics of the first ``n`` real test images (computed once per N)."""
        if n not in self._test_stats:
            self._test_stats[n] = feature_stats(self.embedder, self.real_test[:n])
        return self._test_stats[n]

    def real_manifold(self, n: int) -> Manifold:
        """Precision, recall, density and coverage of real against real at N = ``n`` (computed once per N)."""
        if n not in self._real_manifolds:
            if self.real_pool is None:
                raise ValueError(f"no real pool to draw the real-vs-real reference at N = {n} from")
            self._real_manifolds[n] = real_manifold(self.real_pool, self.embedder, n, self.seed)
        return self._real_manifolds[n]

    def test_features(self, m: int) -> np.ndarray:
        """The embedded first ``m`` real test images (computed once per m)."""
        if m not in self._test_features:
            self._test_features[m] = self.embedder(self.real_test[:m])
        return self._test_features[m]

    def score(self, images: torch.Tensor, kid: bool = True, bootstrap: int = BOOTSTRAP_DRAWS,
              quantize: bool = True, manifold: bool = True) -> Score:
        """FD of ``images`` against the real test set at N = min(len(images), len(real_test)), with the floor at
        that N and, with ``bootstrap`` draws (0: none), the ratio's interval; KID (on at most ``KID_SUBSET`` images
        per side) unless ``kid`` is False; precision, recall, density and coverage with their real-vs-real values
        unless ``manifold`` is False. ``quantize``: to 8 bits first, as the real digits are."""
        n = self.size(len(images))
        images = quantize_8bit(images[:n]) if quantize else images[:n]
        features = self.embedder(images)
        fd = frechet_distance(GaussianStats.of(features), self.test_stats(n))
        floor = self.floor(n)
        interval = ratio_interval(fd.fd, bootstrap_fds(features, self.test_stats(n), bootstrap, self.seed), floor) \
            if bootstrap else None
        kid_mean = kid_std = None
        if kid:
            m = min(n, KID_SUBSET)
            result = kernel_distance(features[:m], self.test_features(m), subsets=10,
                                     subset_size=max(2, m // 2), seed=self.seed)
            kid_mean, kid_std = result.mean, result.std
        found = reference = None
        if manifold:
            found = manifold_metrics(self.test_features(n), features)
            reference = self.real_manifold(n)
        figures = [getattr(m, f) if m else None for m in (found, reference) for f in MANIFOLD_FIELDS]
        return Score(self.name, n, fd.fd, fd.mean_term, fd.trace_term, floor.mean, floor.std, floor.ratio(fd.fd),
                     kid_mean, kid_std, *((interval.fd_std, interval.low, interval.high) if interval else (None,) * 3),
                     *figures)
