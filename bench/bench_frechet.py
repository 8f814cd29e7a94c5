"""FD from moments: our symmetric eigen-decomposition against the pytorch-fid formula, side by side.

pytorch-fid (and clean-fid) compute Tr (S_X S_Y)^(1/2) with scipy.linalg.sqrtm of the
non-symmetric product. Both run here on the same statistics of N = 5,000 samples per side at
d = 16, 64, 784 and 2048 (784: the pixels of the embedded MNIST subset against a noisy copy;
the others correlated Gaussians; 2048 is the size of FID's Inception features), best of
several repeats.

    python bench/bench_frechet.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import numpy as np
import scipy
import scipy.linalg
import torch

from diffusion.lab.datasets import load_embedded_mnist
from diffusion.metrics.frechet import GaussianStats, frechet_from_moments


def pytorch_fid_formula(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """The widely used reference: sqrtm of the product, real part of its trace."""
    with warnings.catch_warnings():  # singular products (constant border pixels) warn; keep the table clean
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(s1 @ s2)
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def best_time(function: Callable[[], float], repeats: int) -> tuple[float, float]:
    """(value, best wall time in seconds) over ``repeats`` calls."""
    times, value = [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        value = function()
        times.append(time.perf_counter() - start)
    return value, min(times)


def feature_sets(d: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two (n, d) samples whose distributions differ a little."""
    if d == 784:
        train, test = load_embedded_mnist("train").images, load_embedded_mnist("test").images
        real = torch.cat([train, test]).flatten(1).double().numpy()[:n]
        noisy = np.clip(real + rng.normal(0, 0.2, real.shape), -1, 1)
        return real, noisy
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mixing, rng.normal(size=(n, d)) @ (mixing * 1.1) + 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"# N = {args.n} per side, best of {args.repeats}; numpy {np.__version__}, scipy {scipy.__version__}")
    print("| d | ours (eigh) s | pytorch-fid (sqrtm) s | speed-up | FD | relative difference |")
    print("|---|---|---|---|---|---|")
    for d in (16, 64, 784, 2048):
        x, y = feature_sets(d, args.n, rng)
        sx, sy = GaussianStats.of(x), GaussianStats.of(y)
        moments = (sx.mean, sx.covariance, sy.mean, sy.covariance)
        ours, t_ours = best_time(lambda: frechet_from_moments(*moments).fd, args.repeats)
        theirs, t_theirs = best_time(lambda: pytorch_fid_formula(*moments), args.repeats)
        difference = abs(ours - theirs) / abs(theirs)
        print(f"| {d} | {t_ours:.4f} | {t_theirs:.4f} | {t_theirs / t_ours:.1f}x | {ours:.6g} | {difference:.1e} |", flush=True)


if __name__ == "__main__":
    main()
