"""The leaderboard: each model's best FD / floor from the evaluation's ``scores`` table, ranked.

Models are ranked by the ratio to the real-vs-real floor at one sample size N: FD is biased
upward at finite N, and that bias also pulls the ratio towards 1 as N shrinks (a model at 3.2x
the floor with N = 500 read 1.2x with N = 100). So unless a setting is chosen, only the settings
scored at the largest N compete.
"""

from __future__ import annotations

import pandas as pd

from diffusion.lab.tables import SCORES

RANK = "rank"
"""The leaderboard's own column (not in ``scores``): 1 for the model with the best ratio."""
COLUMNS = [RANK, SCORES.model, SCORES.fd, SCORES.floor_mean, SCORES.floor_std, SCORES.ratio, SCORES.sampler,
           SCORES.steps, SCORES.n, SCORES.parameters, SCORES.train_seconds, SCORES.seconds_per_image]


def best_scores(scores: pd.DataFrame, embedding: str = "vae", sampler: str | None = None,
                steps: int | None = None) -> pd.DataFrame:
    """The leaderboard's rule: each model's best-ratio row in ``embedding``, at the given setting or else at the
    largest N, best first; the rows keep every column and their index in ``scores``."""
    rows = scores[scores[SCORES.embedding] == embedding]
    if sampler is not None:
        rows = rows[rows[SCORES.sampler] == sampler]
    if steps is not None:
        rows = rows[rows[SCORES.steps] == steps]
    if rows.empty:
        return rows
    rows = rows[rows[SCORES.n] == rows[SCORES.n].max()]
    return rows.loc[rows.groupby(SCORES.model)[SCORES.ratio].idxmin()].sort_values(SCORES.ratio)


def leaderboard(scores: pd.DataFrame, embedding: str = "vae", sampler: str | None = None,
                steps: int | None = None) -> pd.DataFrame:
    """One row per model: its best-ratio score in ``embedding``, at the given setting or else at the largest N."""
    best = best_scores(scores, embedding, sampler, steps)
    if best.empty:
        return pd.DataFrame(columns=COLUMNS)
    best = best.reset_index(drop=True)
    best.insert(0, RANK, range(1, len(best) + 1))
    return best[[c for c in COLUMNS if c in best.columns]]


def format_leaderboard(board: pd.DataFrame) -> str:
    """The leaderboard as a fixed-width text table (what the pipeline prints)."""
    if board.empty:
        return "(no scored models)"
    shown = board.assign(train_min=board[SCORES.train_seconds] / 60, ms_per_image=board[SCORES.seconds_per_image] * 1000)
    shown = shown.drop(columns=[SCORES.train_seconds, SCORES.seconds_per_image])
    return shown.to_string(index=False, float_format=lambda v: f"{v:.4g}")
