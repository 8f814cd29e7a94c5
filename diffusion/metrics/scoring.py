"""Score a set of images against held-out real digits: FD with its floor and ratio, and KID."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from diffusion.embeddings import Embedder
from diffusion.metrics.floor import Floor, fd_floor
from diffusion.metrics.frechet import frechet_distance
from diffusion.metrics.kid import kernel_distance

KID_SUBSET = 1000


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
    kid_mean: float
    kid_std: float

    def as_row(self) -> dict[str, float | int | str]:
        """A flat dict for a result table."""
        return asdict(self)


def real_floor(real_pool: torch.Tensor, embedder: Embedder, n: int, draws: int = 5, seed: int = 0) -> Floor:
    """The floor at N = ``n`` in ``embedder``'s space, from a seeded draw of 4n images of the real pool."""
    generator = torch.Generator().manual_seed(seed)
    pool = real_pool[torch.randperm(len(real_pool), generator=generator)[: 4 * n]]
    return fd_floor(embedder(pool), n, draws=draws, seed=seed)


def score_images(
    images: torch.Tensor,
    real_test: torch.Tensor,
    real_pool: torch.Tensor,
    embedder: Embedder,
    floor_draws: int = 5,
    seed: int = 0,
    floor: Floor | None = None,
) -> Score:
    """FD and KID of ``images`` against ``real_test`` at N = min(len(images), len(real_test)).

    The floor is the FD of disjoint real samples of that N drawn from ``real_pool`` (all real
    digits available, e.g. train + test); pass a precomputed ``floor`` to reuse it. FD uses
    streamed statistics; KID uses the features of at most ``KID_SUBSET`` images per side.
    """
    n = min(len(images), len(real_test))
    fd = frechet_distance(embedder.stats(images[:n]), embedder.stats(real_test[:n]))
    if floor is None or floor.n != n:
        floor = real_floor(real_pool, embedder, n, floor_draws, seed)
    m = min(n, KID_SUBSET)
    kid = kernel_distance(embedder(images[:m]), embedder(real_test[:m]), subsets=10, subset_size=max(2, m // 2), seed=seed)
    return Score(embedder.name, n, fd.fd, fd.mean_term, fd.trace_term, floor.mean, floor.std,
                 floor.ratio(fd.fd), kid.mean, kid.std)

