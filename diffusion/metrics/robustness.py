"""Corruption-robustness curves: how each embedding's FD responds to known, rising damage.

For each corruption, severity and embedding, the FD between the held-out real test set and a
corrupted real reference set (drawn from the train split, so disjoint from the test set),
repeated over seeds. A trustworthy metric rises monotonically with severity and leaves its
floor (severity 0) early.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from diffusion.embeddings import Embedder
from diffusion.lab.tables import ROBUSTNESS as R
from diffusion.lab.tables import ROBUSTNESS_SUMMARY as S
from diffusion.metrics.corruptions import CORRUPTIONS, get_corruption
from diffusion.metrics.frechet import feature_stats, frechet_distance

DEFAULT_SEVERITIES: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
DETECTION_SPREADS = 3.0


def robustness_curve(
    real_test: torch.Tensor,
    reference_pool: torch.Tensor,
    embedders: Sequence[Embedder],
    other: torch.Tensor,
    n: int = 1000,
    severities: Sequence[float] = DEFAULT_SEVERITIES,
    corruptions: Sequence[str] = tuple(CORRUPTIONS),
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
) -> pd.DataFrame:
    """A tidy table: one row per (corruption, severity, embedding, seed) with FD and its parts, and the embedding's
    weights (``embedding_sha256``, ``embedding_trial``: see ``diffusion.lab.lineage``)."""
    if n > len(real_test) or n > len(reference_pool):
        raise ValueError(f"n = {n} exceeds the test set ({len(real_test)}) or the reference pool ({len(reference_pool)})")
    functions = {name: get_corruption(name) for name in corruptions}
    test_stats = {e.name: feature_stats(e, real_test[:n]) for e in embedders}
    rows = []
    for seed in seeds:
        generator = torch.Generator().manual_seed(10_000 + seed)
        reference = reference_pool[torch.randperm(len(reference_pool), generator=generator)[:n]]
        for corruption, corrupt in functions.items():
            for severity in severities:
                images = corrupt(reference, float(severity), seed, other)
                for embedder in embedders:
                    fd = frechet_distance(feature_stats(embedder, images), test_stats[embedder.name])
                    rows.append({R.corruption: corruption, R.severity: float(severity), R.embedding: embedder.name,
                                 R.seed: seed, R.n: n, R.fd: fd.fd, R.mean_term: fd.mean_term,
                                 R.trace_term: fd.trace_term})
    curve = pd.DataFrame(rows)
    pair = [R.corruption, R.embedding]
    curve = curve.join(curve[curve[R.severity] == 0].groupby(pair)[R.fd].mean().rename(R.floor_mean), on=pair)
    curve[R.ratio] = curve[R.fd] / curve[R.floor_mean]
    identities = {e.name: e.identity for e in embedders}
    curve[R.embedding_sha256] = curve[R.embedding].map(lambda name: identities[name].sha256)
    curve[R.embedding_trial] = curve[R.embedding].map(lambda name: identities[name].trial_id)
    return curve


def robustness_summary(curve: pd.DataFrame) -> pd.DataFrame:
    """Per corruption and embedding (with its weights' sha256 and trial): the floor, monotonicity and detection threshold.

    monotonicity: Spearman correlation of severity with the mean FD over seeds at each level
    (1 = the curve only rises). detection_threshold: the smallest severity whose mean FD
    exceeds the floor (severity-0 mean) by more than 3 floor spreads (std over seeds); NaN if
    none does.
    """
    from scipy.stats import spearmanr  # here, not at the top: importing scipy.stats costs every process 0.8 s

    rows = []
    keys = [R.corruption, R.embedding, R.embedding_sha256, R.embedding_trial]
    for (corruption, embedding, sha256, trial), group in curve.groupby(keys, sort=False):
        levels = group.groupby(R.severity)[R.fd].agg(["mean", "std"]).sort_index()
        floor_mean, floor_std = float(levels.loc[0.0, "mean"]), float(levels.loc[0.0, "std"])
        rho = spearmanr(levels.index, levels["mean"]).statistic if len(levels) > 2 else float("nan")
        above = levels.index[(levels.index > 0) & (levels["mean"] > floor_mean + DETECTION_SPREADS * floor_std)]
        rows.append({S.corruption: corruption, S.embedding: embedding, S.floor_mean: floor_mean,
                     S.floor_std: floor_std, S.monotonicity: float(rho),
                     S.detection_threshold: float(above.min()) if len(above) else float("nan"),
                     S.max_ratio: float(levels["mean"].iloc[-1] / floor_mean) if floor_mean > 0 else float("inf"),
                     S.embedding_sha256: sha256, S.embedding_trial: trial})
    return pd.DataFrame(rows)
