"""Precision, recall, density and coverage: their defining properties, and the prdc package's values where it is installed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffusion.embeddings import pixel_embedder
from diffusion.lab.datasets import load_embedded_mnist
from diffusion.metrics.manifold import NEAREST_K, manifold_metrics, neighbour_radii
from diffusion.metrics.scoring import Scorer


def gaussian(n: int, shift: float = 0.0, scale: float = 1.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, scale, size=(n, 8))


def test_two_samples_of_one_distribution_score_near_one_on_every_figure() -> None:
    found = manifold_metrics(gaussian(1000), gaussian(1000, seed=1))
    assert 0.65 < found.precision <= 1 and 0.65 < found.recall <= 1 and 0.65 < found.coverage <= 1
    assert 0.8 < found.density < 1.2


def test_a_collapsed_sample_has_recall_and_coverage_near_zero_but_may_keep_precision() -> None:
    """Mode collapse: every sample near one real point is precise, but covers none of the rest."""
    real = gaussian(500)
    collapsed = real[:1] + gaussian(500, scale=1e-3, seed=2)
    found = manifold_metrics(real, collapsed)
    assert found.precision > 0.99 and found.recall < 0.05 and found.coverage < 0.05


def test_samples_off_the_real_manifold_have_precision_and_density_near_zero() -> None:
    found = manifold_metrics(gaussian(500), gaussian(500, shift=8.0, seed=3))
    assert found.precision < 0.01 and found.density < 0.01 and found.coverage < 0.01 and found.recall < 0.01


def test_radii_exclude_the_point_itself_and_need_more_than_k_points() -> None:
    points = np.arange(7, dtype=float)[:, None]  # 0, 1, ..., 6 on a line
    assert neighbour_radii(points, k=2).tolist() == [2, 1, 1, 1, 1, 1, 2]
    with pytest.raises(ValueError, match="more than k = 5"):
        neighbour_radii(points[:5])


def test_the_figures_equal_the_prdc_packages() -> None:
    """The reference implementation (Naeem et al. 2020's own code), where it is installed (the dev extra)."""
    prdc = pytest.importorskip("prdc")
    real, fake = gaussian(300), gaussian(250, shift=0.5, scale=1.3, seed=4)
    expected = prdc.compute_prdc(real, fake, nearest_k=NEAREST_K)
    found = manifold_metrics(real, fake)
    for figure, value in expected.items():
        assert getattr(found, figure) == pytest.approx(value, abs=1e-12), figure


def test_the_scorer_reports_real_figures_beside_the_real_vs_real_reference() -> None:
    train, test = load_embedded_mnist("train").images[:600], load_embedded_mnist("test").images[:200]
    scorer = Scorer(pixel_embedder(), test, torch.cat([train, test]))
    real, noise = scorer.score(train[:200], kid=False), scorer.score(torch.rand(200, 1, 28, 28) * 2 - 1, kid=False)
    assert real.real_precision == noise.real_precision and scorer.real_manifold(200) is scorer.real_manifold(200)
    assert real.precision > 0.5 and real.coverage > 0.5
    assert noise.precision < 0.05 and noise.coverage < 0.05
