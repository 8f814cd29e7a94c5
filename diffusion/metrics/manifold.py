"""Precision, recall, density and coverage of generated samples against real ones, in an embedding.

Each set's manifold is the union of balls around its points, each of radius the distance to
that point's k-th nearest neighbour in its own set (self excluded).

- precision: the share of generated points inside the real manifold; recall: the share of real
  points inside the generated manifold (improved precision and recall, Kynkäänniemi et al. 2019).
- density: how many real balls hold each generated point, over k, averaged (about 1 for a sample
  of the real distribution, above 1 where samples crowd the densest real regions); coverage: the
  share of real points whose own ball holds at least one generated point (Naeem et al. 2020).

Same definitions as the ``prdc`` package (its reference code), in float64. A collapsed model (a
grid of blobs) keeps a middling FD only where its mean and covariance happen to fit; its
precision and coverage say at once that its points lie off the real manifold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

NEAREST_K = 5  # Naeem et al. 2020 recommend k = 5 at N of about 10,000; kept at smaller N for comparability


@dataclass(frozen=True)
class Manifold:
    """The four figures of one generated set against one real set, at one N and k."""

    precision: float
    recall: float
    density: float
    coverage: float


def _distances(a: np.ndarray, b: np.ndarray) -> torch.Tensor:  # (Na, D), (Nb, D) -> (Na, Nb)
    return torch.cdist(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64))


def neighbour_radii(features: np.ndarray, k: int = NEAREST_K) -> torch.Tensor:
    """Each point's distance to its k-th nearest neighbour within ``features`` (itself excluded)."""
    if len(features) <= k:
        raise ValueError(f"the k-th nearest neighbour needs more than k = {k} points, got {len(features)}")
    return _distances(features, features).kthvalue(k + 1, dim=1).values  # (N,): the 1st is the point itself


def manifold_metrics(real: np.ndarray, fake: np.ndarray, k: int = NEAREST_K) -> Manifold:
    """Precision, recall, density and coverage of ``fake`` (N, D) against ``real`` (M, D) with k nearest neighbours."""
    real_radii, fake_radii = neighbour_radii(real, k), neighbour_radii(fake, k)
    between = _distances(real, fake)  # (M, N)
    inside_real = between < real_radii[:, None]  # real ball i holds fake point j
    return Manifold(
        precision=float(inside_real.any(dim=0).double().mean()),
        recall=float((between < fake_radii[None, :]).any(dim=1).double().mean()),
        density=float(inside_real.sum(dim=0).double().mean() / k),
        coverage=float((between.min(dim=1).values < real_radii).double().mean()),
    )
