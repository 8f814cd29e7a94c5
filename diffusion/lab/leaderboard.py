"""The leaderboard: each model's best FD / floor from the evaluation's ``scores`` table, ranked, ties marked.

Each ratio carries its 95% interval (``diffusion.metrics.uncertainty``). Models whose
intervals overlap the interval of the best model of their tier share its rank (``tie_ranks``):
1, 1, 3 says the first two are not told apart by this measurement. Next to the best score, the
budget-matched column (``budget_matched``) gives each model's FD / floor from the sweep's
reports at the largest number of training images every model reached: where the best scores
compare budgets as much as architectures, that column compares architectures.

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
from dataclasses import dataclass, field

import pandas as pd

from diffusion.lab.lineage import EmbeddingId
from diffusion.lab.tables import SCORES, TRIAL_HISTORY

Lineage = Mapping[str, EmbeddingId | None]
"""Embedding name -> its identity in the lab now (None, or no entry: the lab has no such model, so nothing is current)."""

RANK = "rank"
"""The leaderboard's own column (not in ``scores``): 1 for the model with the best ratio."""
MANIFOLD = [SCORES.precision, SCORES.recall, SCORES.density, SCORES.coverage]
"""Precision, recall, density and coverage (``diffusion.metrics.manifold``), shown beside FD."""
REAL_MANIFOLD = [SCORES.real_precision, SCORES.real_recall, SCORES.real_density, SCORES.real_coverage]
"""Their real-vs-real values at the same N: what a perfect model scores (the reference, as the floor is FD's)."""
COLUMNS = [RANK, SCORES.model, SCORES.fd, SCORES.floor_mean, SCORES.floor_std, SCORES.ratio, SCORES.ratio_low,
           SCORES.ratio_high, *MANIFOLD, SCORES.sampler, SCORES.steps, SCORES.n, SCORES.parameters,
           SCORES.images_seen, SCORES.train_seconds, SCORES.seconds_per_image, *REAL_MANIFOLD]
BUDGET_RATIO = "budget_ratio"
"""The leaderboard's column (not in ``scores``) of FD / floor at the budget every model reached (``budget_matched``)."""
BUDGET_LOW, BUDGET_HIGH = "budget_ratio_low", "budget_ratio_high"
"""That ratio's 95% interval (NaN where the sweep's reports carry none: sweeps run before trials reported it)."""


@dataclass(frozen=True)
class BudgetMatched:
    """Each model's FD / floor in the sweep's reports at ``images`` training images, a budget every model reached.

    ``ratios``: model -> the lowest ratio among its trials' last FD report at or below the budget; ``lows`` and
    ``highs``: that report's 95% interval of the ratio, for the models whose report has one. The sweep scores its
    reports with few samples (``fd_samples``) and a short sampler, so these ratios compare models with each other,
    not with the evaluation's, and their intervals are wider.
    """

    images: int
    ratios: dict[str, float]
    lows: dict[str, float] = field(default_factory=dict)
    highs: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How a table names the column: ``ratio @ 38,400 images``."""
        return f"ratio @ {self.images:,} images"


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


def tie_ranks(ratios: Sequence[float], lows: Sequence[float], highs: Sequence[float]) -> list[int]:
    """Ranks of models sorted by ratio, ties shared: a model whose interval [low, high] overlaps the interval of the
    first model of the current tier joins that tier and gets its rank; else it opens a tier at its own position
    (1, 1, 3, ...). A missing interval (NaN: rows scored before intervals existed) ties with nothing."""
    if list(ratios) != sorted(ratios):
        raise ValueError("tie_ranks takes the models sorted by ratio, best first")
    ranks: list[int] = []
    leader = 0
    for i, (low, high) in enumerate(zip(lows, highs)):
        tied = i > 0 and not any(pd.isna(v) for v in (low, highs[leader])) and low <= highs[leader]
        if not tied:
            leader = i
        ranks.append(leader + 1)
    return ranks


def budget_matched(history: pd.DataFrame, models: Sequence[str] | None = None) -> BudgetMatched | None:
    """FD / floor of each model (of ``models``, default all) at the largest training budget, in images seen, that
    every one of them reached in a report with an FD (``trial_history``); None if some model has no such report."""
    if history.empty or TRIAL_HISTORY.ratio not in history.columns or TRIAL_HISTORY.images_seen not in history.columns:
        return None
    scored = history[history[TRIAL_HISTORY.ratio].notna() & history[TRIAL_HISTORY.images_seen].notna()]
    wanted = list(dict.fromkeys(models if models is not None else scored[TRIAL_HISTORY.model]))
    reached = scored.groupby(TRIAL_HISTORY.model)[TRIAL_HISTORY.images_seen].max()
    if not wanted or any(model not in reached.index for model in wanted):
        return None
    budget = int(reached[wanted].min())
    within = scored[scored[TRIAL_HISTORY.model].isin(wanted) & (scored[TRIAL_HISTORY.images_seen] <= budget)]
    last = within.loc[within.groupby([TRIAL_HISTORY.model, TRIAL_HISTORY.trial_id])[TRIAL_HISTORY.images_seen].idxmax()]
    best = last.loc[last.groupby(TRIAL_HISTORY.model)[TRIAL_HISTORY.ratio].idxmin()].set_index(TRIAL_HISTORY.model)

    def by_model(column: str) -> dict[str, float]:  # the chosen report's value per model, where it has one
        values = best[column].dropna() if column in best.columns else pd.Series(dtype=float)
        return {str(model): float(value) for model, value in values.items()}

    return BudgetMatched(budget, by_model(TRIAL_HISTORY.ratio), by_model(TRIAL_HISTORY.ratio_low),
                         by_model(TRIAL_HISTORY.ratio_high))


def leaderboard(scores: pd.DataFrame, lineage: Lineage, embedding: str = "vae", sampler: str | None = None,
                steps: int | None = None) -> pd.DataFrame:
    """One row per model: its best-ratio score in ``embedding`` (current weights only, see ``best_scores``), at the
    given setting or else at the largest N, ranked with ties (``tie_ranks``)."""
    best = best_scores(scores, lineage, embedding, sampler, steps)
    if best.empty:
        return pd.DataFrame(columns=COLUMNS)
    best = best.reset_index(drop=True)
    for column in (SCORES.ratio_low, SCORES.ratio_high):
        if column not in best.columns:
            best[column] = float("nan")
    best.insert(0, RANK, tie_ranks(list(best[SCORES.ratio]), list(best[SCORES.ratio_low]), list(best[SCORES.ratio_high])))
    return best[[c for c in COLUMNS if c in best.columns]]


def with_budget(board: pd.DataFrame, history: pd.DataFrame) -> tuple[pd.DataFrame, BudgetMatched | None]:
    """``board`` with each model's ratio at the budget all of its models reached and its interval (``BUDGET_RATIO``,
    ``BUDGET_LOW``, ``BUDGET_HIGH``, from the sweep's ``history``), and that budget; the board unchanged and None where
    some model has no such report."""
    budget = budget_matched(history, list(board[SCORES.model]))
    if budget is None:
        return board, None
    models = board[SCORES.model]
    return board.assign(**{BUDGET_RATIO: models.map(budget.ratios), BUDGET_LOW: models.map(budget.lows).astype(float),
                           BUDGET_HIGH: models.map(budget.highs).astype(float)}), budget


def budget_rule(board: pd.DataFrame) -> str:
    """The rule the models on ``board`` were trained under, read from the training images their scored weights saw
    (``images_seen``: a sweep exports a trial's best FD report, which may come before its last step): one budget of
    equal images seen, or the budget each had."""
    seen = board.set_index(SCORES.model)[SCORES.images_seen].dropna() if SCORES.images_seen in board.columns else None
    if seen is None or seen.empty:
        return "training budget: not recorded for these models"
    minutes = board.set_index(SCORES.model)[SCORES.train_seconds].dropna() / 60
    spent = f"; training minutes {minutes.min():.3g} to {minutes.max():.3g}" if len(minutes) else ""
    if seen.nunique() == 1:
        return f"one budget, equal images seen: {int(seen.iloc[0]):,} training images per model{spent}"
    return ("budgets differ, in training images the scored weights saw: "
            + ", ".join(f"{model} {int(images):,}" for model, images in seen.items()))


def manifold_reference(board: pd.DataFrame) -> str | None:
    """One line with the real-vs-real precision, recall, density and coverage at the board's N (the reference their
    values compare with); None where the rows carry none."""
    if not set(REAL_MANIFOLD) <= set(board.columns) or board[REAL_MANIFOLD].isna().all(axis=None):
        return None
    row = board.dropna(subset=REAL_MANIFOLD).iloc[0]
    figures = ", ".join(f"{name} {row[column]:.3f}" for name, column in zip(MANIFOLD, REAL_MANIFOLD))
    return f"real vs real at N = {int(row[SCORES.n]):,} (what a perfect model scores): {figures}"


def _with_intervals(board: pd.DataFrame, ratio: str, low: str, high: str) -> list[str]:
    """Each ratio as text with its interval, ``2.1 [1.8, 2.5]``; the ratio alone where the interval is missing."""
    bounds = board.reindex(columns=[low, high])  # a missing bound column reads as NaN
    return [f"{r:.3g} [{lo:.3g}, {hi:.3g}]" if pd.notna(lo) and pd.notna(hi) else f"{r:.3g}"
            for r, lo, hi in zip(board[ratio], bounds[low], bounds[high])]


def format_leaderboard(board: pd.DataFrame, budget: BudgetMatched | None = None) -> str:
    """The leaderboard as a fixed-width text table (what the pipeline prints): the ratio with its interval, ``=`` on
    the rank of a tie, and the budget-matched column named by its budget."""
    if board.empty:
        return "(no scored models)"
    tied = board[RANK].duplicated(keep=False)
    shown = board.assign(**{RANK: [f"{r}=" if t else str(r) for r, t in zip(board[RANK], tied)],
                            SCORES.ratio: _with_intervals(board, SCORES.ratio, SCORES.ratio_low, SCORES.ratio_high),
                            "train_min": board[SCORES.train_seconds] / 60,
                            "ms_per_image": board[SCORES.seconds_per_image] * 1000})
    shown = shown.drop(columns=[c for c in (*REAL_MANIFOLD, SCORES.floor_std) if c in shown.columns])
    if BUDGET_RATIO in board.columns:
        shown[BUDGET_RATIO] = _with_intervals(board, BUDGET_RATIO, BUDGET_LOW, BUDGET_HIGH)
    shown = shown.drop(columns=[c for c in (SCORES.train_seconds, SCORES.seconds_per_image, SCORES.ratio_low,
                                            SCORES.ratio_high, BUDGET_LOW, BUDGET_HIGH) if c in shown.columns])
    shown = shown.rename(columns={SCORES.ratio: "ratio [95% interval]"})
    if budget is not None and BUDGET_RATIO in shown.columns:
        shown = shown.rename(columns={BUDGET_RATIO: budget.label})
    return shown.to_string(index=False, float_format=lambda v: f"{v:.4g}")
