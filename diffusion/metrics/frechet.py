"""Fréchet distance between Gaussian fits of two feature sets, streamed in float64.

FD^2(X, Y) = |mu_X - mu_Y|^2 + Tr(S_X + S_Y - 2 (S_X S_Y)^(1/2))  (Fréchet 1957; Dowson and
Landau 1982; used as FID by Heusel et al. 2017). As in FID, the number reported as "FD" is
this squared distance. Tr (S_X S_Y)^(1/2) is computed as Tr (S_X^(1/2) S_Y S_X^(1/2))^(1/2):
both matrices are symmetric PSD, so two symmetric eigen-decompositions give it exactly and
stay real when N < d or a covariance is singular, where scipy.linalg.sqrtm of the
non-symmetric product (pytorch-fid, clean-fid) is slow and can turn complex.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from diffusion.embeddings import Embedder


@dataclass
class GaussianStats:
    """Running count, mean and scatter matrix (Chan et al. 1979 merge), all float64."""

    count: int
    mean: np.ndarray  # (d,)
    scatter: np.ndarray  # (d, d), sum of outer products of deviations from the mean

    @classmethod
    def empty(cls, dim: int) -> GaussianStats:
        """No samples yet, in ``dim`` dimensions."""
        return cls(0, np.zeros(dim), np.zeros((dim, dim)))

    @classmethod
    def of(cls, features: np.ndarray | torch.Tensor) -> GaussianStats:
        """Statistics of one (N, d) batch."""
        x = _as_float64(features)
        mean = x.mean(axis=0)
        centred = x - mean
        return cls(len(x), mean, centred.T @ centred)

    @classmethod
    def stream(cls, batches: Iterable[np.ndarray | torch.Tensor]) -> GaussianStats:
        """Statistics of a stream of (n_i, d) batches, never holding more than one batch."""
        stats: GaussianStats | None = None
        for batch in batches:
            stats = cls.of(batch) if stats is None else stats.merge(cls.of(batch))
        if stats is None:
            raise ValueError("no feature batches to compute statistics from")
        return stats

    def merge(self, other: GaussianStats) -> GaussianStats:
        """Statistics of the union of both sample sets (pairwise update, exact in float64)."""
        if self.count == 0:
            return other
        if other.count == 0:
            return self
        total = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / total)
        scatter = self.scatter + other.scatter + np.outer(delta, delta) * (self.count * other.count / total)
        return GaussianStats(total, mean, scatter)

    @property
    def dim(self) -> int:
        """Feature dimension d."""
        return len(self.mean)

    @property
    def covariance(self) -> np.ndarray:
        """Unbiased sample covariance (N - 1 in the denominator), (d, d)."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 samples, got {self.count}")
        return self.scatter / (self.count - 1)


def feature_stats(embedder: Embedder, images: torch.Tensor, batch_size: int = 1000) -> GaussianStats:
    """Mean and covariance of ``embedder``'s features of ``images``, streamed a batch at a time."""
    return GaussianStats.stream(embedder.batches(images, batch_size))


@dataclass(frozen=True)
class FrechetResult:
    """FD (squared, as FID) and its two parts: |mu_X - mu_Y|^2 and the trace term."""

    fd: float
    mean_term: float
    trace_term: float


def _as_float64(features: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().to("cpu", torch.float64).numpy()
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D array (N, d), got shape {x.shape}")
    return x


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (tiny negative eigenvalues clipped to 0)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def trace_sqrt_product(cov_x: np.ndarray, cov_y: np.ndarray) -> float:
    """Tr (S_X S_Y)^(1/2) = sum of sqrt(eigenvalues of S_X^(1/2) S_Y S_X^(1/2)), float64."""
    return _root_trace(_psd_sqrt(cov_x), cov_y)


def _root_trace(root_x: np.ndarray, cov_y: np.ndarray) -> float:
    """Tr (S_X^(1/2) S_Y S_X^(1/2))^(1/2) from S_X's symmetric root: one symmetric eigenvalue solve."""
    middle = root_x @ cov_y @ root_x
    values = np.linalg.eigvalsh((middle + middle.T) / 2)
    return float(np.sqrt(np.clip(values, 0.0, None)).sum())


def frechet_from_moments(mu_x: np.ndarray, cov_x: np.ndarray, mu_y: np.ndarray, cov_y: np.ndarray) -> FrechetResult:
    """FD^2 between N(mu_x, cov_x) and N(mu_y, cov_y)."""
    mu_x, mu_y = np.asarray(mu_x, np.float64), np.asarray(mu_y, np.float64)
    cov_x, cov_y = np.atleast_2d(np.asarray(cov_x, np.float64)), np.atleast_2d(np.asarray(cov_y, np.float64))
    if mu_x.shape != mu_y.shape or cov_x.shape != cov_y.shape or cov_x.shape != (mu_x.size, mu_x.size):
        raise ValueError(f"shape mismatch: means {mu_x.shape}, {mu_y.shape}; covariances {cov_x.shape}, {cov_y.shape}")
    mean_term = float(np.sum((mu_x - mu_y) ** 2))
    trace_term = float(np.trace(cov_x) + np.trace(cov_y) - 2 * trace_sqrt_product(cov_x, cov_y))
    trace_term = max(trace_term, 0.0)  # >= 0 in exact arithmetic; rounding can dip below
    return FrechetResult(mean_term + trace_term, mean_term, trace_term)


def frechet_distance(x: GaussianStats | np.ndarray | torch.Tensor, y: GaussianStats | np.ndarray | torch.Tensor) -> FrechetResult:
    """FD^2 between two feature sets (N, d) or their streamed statistics."""
    sx = x if isinstance(x, GaussianStats) else GaussianStats.of(x)
    sy = y if isinstance(y, GaussianStats) else GaussianStats.of(y)
    if sx.dim != sy.dim:
        raise ValueError(f"feature dimensions differ: {sx.dim} and {sy.dim}")
    return frechet_from_moments(sx.mean, sx.covariance, sy.mean, sy.covariance)


class FrechetReference:
    """One fixed side of many FDs (a bootstrap's real statistics): its mean, covariance, trace and symmetric root
    computed once, so each FD against it costs one eigenvalue solve, since Tr (S_X S_Y)^(1/2) is also
    Tr (S_Y^(1/2) S_X S_Y^(1/2))^(1/2)."""

    def __init__(self, stats: GaussianStats) -> None:
        self.mean, covariance = stats.mean, stats.covariance
        self.trace, self.root = float(np.trace(covariance)), _psd_sqrt(covariance)

    def distance(self, features: np.ndarray | torch.Tensor) -> float:
        """FD^2 between the features (N, d) and the reference, as ``frechet_distance`` gives it."""
        stats = GaussianStats.of(features)
        covariance = stats.covariance
        root_trace = _root_trace(self.root, covariance)
        mean_term = float(np.sum((stats.mean - self.mean) ** 2))
        return mean_term + max(float(np.trace(covariance)) + self.trace - 2 * root_trace, 0.0)
