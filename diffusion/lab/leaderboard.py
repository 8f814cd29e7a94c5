"""The leaderboard: each model's best FD / floor from the evaluation's ``scores`` table, ranked.

Models are ranked by the ratio to the real-vs-real floor at one sample size N: FD is biased
upward at finite N, and that bias also pulls the ratio towards 1 as N shrinks (a model at 3.2x
the floor with N = 500 read 1.2x with N = 100). So unless a setting is chosen, only the settings
scored at the largest N compete.

Only FDs measured in the same embedding weights compare: a re-trained VAE moves every FD. Each
row records the weights of its embedding (``embedding_sha256``), and the leaderboard ranks only
the rows measured in the embedding the lab holds now (its ``Lineage``, from
``diffusion.embeddings.loading.current_embeddings``). The other rows are stale: ``stale_models``
names their models and ``rescore_command`` the command that scores them again. The robustness
tables carry the same two columns and split by the same rule (``split_lineage``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from diffusion.lab.lineage import EmbeddingId
from diffusion.lab.tables import SCORES

Lineage = Mapping[str, EmbeddingId | None]
"""Embedding name -> its identity in the lab now (None, or no entry: the lab has no such model, so nothing is current)."""

RANK = "rank"
"""The leaderboard's own column (not in ``scores``): 1 for the model with the best ratio."""
COLUMNS = [RANK, SCORES.model, SCORES.fd, SCORES.floor_mean, SCORES.floor_std, SCORES.ratio, SCORES.sampler,
           SCORES.steps, SCORES.n, SCORES.parameters, SCORES.train_seconds, SCORES.seconds_per_image]


def is_current(rows: pd.DataFrame, lineage: Lineage) -> pd.Series:
    """Per row of ``scores`` (or of a robustness table): whether it was measured in the weights its embedding has in the
    lab now. Rows without a recorded ``embedding_sha256`` (tables written before it existed) never are."""
    if SCORES.embedding_sha256 not in rows.columns:
        return pd.Series(False, index=rows.index)
    shas = {name: identity.sha256 for name, identity in lineage.items() if identity is not None}
    current = rows[SCORES.embedding].map(shas)
    return current.notna() & (rows[SCORES.embedding_sha256] == current)


def split_lineage(rows: pd.DataFrame, lineage: Lineage) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``rows`` split into those measured in their embedding's current weights and the stale others."""
    current = is_current(rows, lineage)
    return rows[current], rows[~current]


def lineage_of(rows: pd.DataFrame) -> dict[str, EmbeddingId]:
    """The embeddings ``rows`` were measured in, by name (the rows of one scoring share one identity per embedding)."""
    if SCORES.embedding_sha256 not in rows.columns:
        return {}
    known = rows[rows[SCORES.embedding_sha256].notna()]
    trials = known[SCORES.embedding_trial] if SCORES.embedding_trial in known.columns else pd.Series("", index=known.index)
    return {name: EmbeddingId(name, sha, "" if pd.isna(trial) else str(trial))
            for name, sha, trial in zip(known[SCORES.embedding], known[SCORES.embedding_sha256], trials)}


def stale_models(scores: pd.DataFrame, lineage: Lineage, embedding: str = "vae") -> list[str]:
    """The models scored in ``embedding`` only in weights it no longer has: not ranked until scored again."""
    rows = scores[scores[SCORES.embedding] == embedding]
    current = is_current(rows, lineage)
    return sorted(set(rows.loc[~current, SCORES.model]) - set(rows.loc[current, SCORES.model]))


def rescore_command(lab: str, models: Sequence[str]) -> str:
    """The command that scores ``models`` again in the lab's current embeddings."""
    return f"{SCORES.job} --lab {lab} --models {' '.join(models)}"


def ranked_by(lineage: Lineage, embedding: str = "vae") -> str:
    """Which embedding the leaderboard ranks by: its label (``vae@1a2b3c4d5e6f, trial ...``), or why nothing is ranked."""
    identity = lineage.get(embedding)
    return identity.label if identity is not None else f"no {embedding} model in the lab: nothing is ranked"


def stale_note(scores: pd.DataFrame, lineage: Lineage, lab: str, embedding: str = "vae") -> str | None:
    """One line naming the models whose ``embedding`` scores come from other weights than the lab's, and the command
    that re-scores them; None when there are none."""
    stale = stale_models(scores, lineage, embedding)
    if not stale:
        return None
    return (f"{', '.join(stale)}: scored in an older {embedding} embedding than the lab's ({ranked_by(lineage, embedding)}), "
            f"not ranked; re-score with: {rescore_command(lab, stale)}")


def best_scores(scores: pd.DataFrame, lineage: Lineage, embedding: str = "vae", sampler: str | None = None,
                steps: int | None = None) -> pd.DataFrame:
    """The leaderboard's rule: each model's best-ratio row in ``embedding``, measured in the weights ``lineage`` names,
    at the given setting or else at the largest N, best first; the rows keep every column and their index in ``scores``."""
    rows = scores[(scores[SCORES.embedding] == embedding) & is_current(scores, lineage)]
    if sampler is not None:
        rows = rows[rows[SCORES.sampler] == sampler]
    if steps is not None:
        rows = rows[rows[SCORES.steps] == steps]
    if rows.empty:
        return rows
    rows = rows[rows[SCORES.n] == rows[SCORES.n].max()]
    return rows.loc[rows.groupby(SCORES.model)[SCORES.ratio].idxmin()].sort_values(SCORES.ratio)


def leaderboard(scores: pd.DataFrame, lineage: Lineage, embedding: str = "vae", sampler: str | None = None,
                steps: int | None = None) -> pd.DataFrame:
    """One row per model: its best-ratio score in ``embedding`` (current weights only, see ``best_scores``), at the
    given setting or else at the largest N."""
    best = best_scores(scores, lineage, embedding, sampler, steps)
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
