"""FD against independent references: scipy's sqrtm, closed forms, degenerate cases."""

import numpy as np
import pytest
import scipy.linalg
import torch

from diffusion.metrics.floor import fd_floor
from diffusion.metrics.frechet import FrechetReference, GaussianStats, frechet_distance, frechet_from_moments
from diffusion.metrics.kid import kernel_distance


def random_psd(rng: np.random.Generator, d: int, condition: float = 10.0) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (q * np.geomspace(1.0, 1.0 / condition, d)) @ q.T


def sqrtm_reference(mu1, s1, mu2, s2) -> float:
    """The pytorch-fid formula: scipy.linalg.sqrtm of the non-symmetric product."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(np.real(covmean)))


@pytest.mark.parametrize("d", [1, 2, 16, 64])
def test_matches_scipy_sqrtm_on_well_conditioned_matrices(d: int) -> None:
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = random_psd(rng, d), random_psd(rng, d)
    ours = frechet_from_moments(mu1, s1, mu2, s2)
    assert ours.fd == pytest.approx(sqrtm_reference(mu1, s1, mu2, s2), rel=1e-8)
    assert ours.mean_term == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-12)
    assert ours.fd == pytest.approx(ours.mean_term + ours.trace_term, rel=1e-12)


def test_closed_form_in_one_dimension() -> None:
    """FD^2(N(m1, s1^2), N(m2, s2^2)) = (m1 - m2)^2 + (s1 - s2)^2."""
    result = frechet_from_moments(np.array([1.5]), np.array([[4.0]]), np.array([-0.5]), np.array([[0.25]]))
    assert result.fd == pytest.approx(2.0**2 + (2.0 - 0.5) ** 2, rel=1e-12)


def test_closed_form_for_diagonal_gaussians() -> None:
    rng = np.random.default_rng(0)
    v1, v2 = rng.uniform(0.1, 3, 32), rng.uniform(0.1, 3, 32)
    mu1, mu2 = rng.normal(size=32), rng.normal(size=32)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_from_moments(mu1, np.diag(v1), mu2, np.diag(v2)).fd == pytest.approx(expected, rel=1e-10)


def test_identical_inputs_give_zero() -> None:
    x = np.random.default_rng(1).normal(size=(300, 20))
    assert abs(frechet_distance(x, x).fd) < 1e-9


def test_fewer_samples_than_dimensions_stays_finite_and_real() -> None:
    """784 pixels from 500 samples: both covariances are singular (rank 499)."""
    rng = np.random.default_rng(2)
    x, y = rng.uniform(-1, 1, (500, 784)), rng.uniform(-1, 1, (500, 784))
    result = frechet_distance(x, y)
    assert np.isfinite(result.fd) and isinstance(result.fd, float) and result.fd > 0
    assert abs(frechet_distance(x, x).fd) < 1e-8


def test_near_singular_covariances_stay_finite() -> None:
    rng = np.random.default_rng(3)
    basis = rng.normal(size=(3, 50))
    x = rng.normal(size=(1000, 3)) @ basis + 1e-9 * rng.normal(size=(1000, 50))
    y = rng.normal(size=(1000, 3)) @ basis * 1.1
    result = frechet_distance(x, y)
    assert np.isfinite(result.fd) and result.trace_term >= 0


def test_streaming_statistics_equal_the_batch_ones() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2500, 12)) * 3 + 7
    streamed = GaussianStats.stream(np.array_split(x, 7))
    whole = GaussianStats.of(x)
    assert streamed.count == 2500
    np.testing.assert_allclose(streamed.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(streamed.covariance, np.cov(x, rowvar=False), rtol=1e-10)


def test_accepts_torch_features_and_names_a_dimension_mismatch() -> None:
    x = torch.randn(100, 4)
    assert frechet_distance(x, x.double().numpy()).fd == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="feature dimensions differ: 4 and 5"):
        frechet_distance(x, torch.randn(100, 5))


def test_floor_is_positive_with_spread_and_shrinks_with_n() -> None:
    pool = np.random.default_rng(5).normal(size=(4000, 8))
    small, large = fd_floor(pool, 200, draws=5), fd_floor(pool, 2000, draws=5)
    assert small.mean > large.mean > 0 and small.std > 0
    # the small-sample bias of one isotropic Gaussian: about (d^2 + 5d) / (2N) per side pair
    assert large.mean == pytest.approx((8**2 + 5 * 8) / 2000, rel=0.5)
    with pytest.raises(ValueError, match="needs 10000 real samples; the pool has 4000"):
        fd_floor(pool, 5000)


def test_kid_is_unbiased_near_zero_for_one_distribution_and_positive_for_two() -> None:
    rng = np.random.default_rng(6)
    x, y, z = rng.normal(size=(1000, 10)), rng.normal(size=(1000, 10)), rng.normal(0.5, 1, size=(1000, 10))
    same, different = kernel_distance(x, y, subsets=10, subset_size=500), kernel_distance(x, z, subsets=10, subset_size=500)
    assert abs(same.mean) < 3 * same.std + 1e-3
    assert different.mean > 10 * abs(same.mean)


def test_a_precomputed_reference_gives_the_same_fd_as_the_two_sided_formula() -> None:
    rng = np.random.default_rng(5)
    for dim, n in ((4, 200), (64, 40)):  # 64 > 40: singular covariances too
        reference = GaussianStats.of(rng.normal(size=(300, dim)) * 1.5 + 0.2)
        features = rng.normal(size=(n, dim))
        assert FrechetReference(reference).distance(features) == pytest.approx(frechet_distance(features, reference).fd,
                                                                               rel=1e-7, abs=1e-9)
