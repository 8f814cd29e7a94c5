"""The leaderboard ranks by FD / floor at one N: a ratio at a small N is pulled towards 1 and must not win. It ranks only
rows measured in the embedding weights the lab holds now; the others are stale, named with the command that re-scores them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from diffusion.lab.leaderboard import (
    BUDGET_HIGH,
    BUDGET_LOW,
    BUDGET_RATIO,
    budget_matched,
    budget_rule,
    format_leaderboard,
    is_current,
    leaderboard,
    lineage_of,
    manifold_reference,
    ranked_by,
    split_lineage,
    stale_models,
    stale_note,
    tie_ranks,
    with_budget,
)
from diffusion.lab.lineage import EmbeddingId
from diffusion.lab.store import LabStore
from diffusion.lab.tables import ROBUSTNESS, ROBUSTNESS_SUMMARY, SCORES, TRIAL_HISTORY, TableStore

VAE, OLD_VAE = EmbeddingId("vae", "a" * 64, "vae_00001"), EmbeddingId("vae", "b" * 64)
LINEAGE = {"vae": VAE, "classifier": None, "pixels": EmbeddingId("pixels")}


def score(model: str, sampler: str, steps: int, n: int, fd: float, floor: float, embedding: str = "vae",
          sha: str = VAE.sha256) -> dict:
    return {"model": model, "sampler": sampler, "steps": steps, "n": n, "embedding": embedding, "fd": fd,
            "floor_mean": floor, "floor_std": floor / 10, "ratio": fd / floor, "parameters": 1000,
            "train_seconds": 60.0, "seconds_per_image": 0.01, "embedding_sha256": sha, "embedding_trial": ""}


SCORES_TABLE = pd.DataFrame([
    score("a", "ddim", 20, 1000, 0.60, 0.15),   # 4.0x
    score("a", "ddim", 50, 1000, 0.75, 0.15),   # 5.0x
    score("a", "ddpm", 100, 200, 1.00, 0.50),   # 2.0x, but at N = 200: not comparable
    score("b", "ddim", 20, 1000, 0.45, 0.15),   # 3.0x
    score("b", "ddim", 50, 1000, 0.30, 0.15),   # 2.0x
    score("b", "ddpm", 100, 200, 1.50, 0.50),   # 3.0x
    score("b", "ddim", 20, 1000, 0.01, 0.15, embedding="pixels", sha=""),
])
STALE = pd.DataFrame([
    score("c", "ddim", 50, 1000, 0.16, 0.15, sha=OLD_VAE.sha256),  # 1.07x, but in the old VAE: never ranked
    score("c", "ddim", 20, 2000, 0.16, 0.15, sha=OLD_VAE.sha256),  # and its larger N must not exclude the others
    score("d", "ddim", 50, 1000, 0.16, 0.15, embedding="classifier", sha="c" * 64),  # the lab has no classifier now
])


def test_each_model_appears_once_with_its_best_ratio_at_the_largest_n() -> None:
    board = leaderboard(SCORES_TABLE, LINEAGE)
    assert board.model.tolist() == ["b", "a"] and board["rank"].tolist() == [1, 2]
    assert board.ratio.tolist() == [2.0, 4.0] and (board.n == 1000).all()
    assert board.steps.tolist() == [50, 20]


def test_a_sampler_setting_and_an_embedding_can_be_chosen() -> None:
    board = leaderboard(SCORES_TABLE, LINEAGE, sampler="ddim", steps=20)
    assert board.model.tolist() == ["b", "a"] and board.fd.tolist() == [0.45, 0.60]
    assert leaderboard(SCORES_TABLE, LINEAGE, sampler="ddpm").model.tolist() == ["a", "b"]
    assert leaderboard(SCORES_TABLE, LINEAGE, embedding="pixels").model.tolist() == ["b"]
    assert leaderboard(SCORES_TABLE, LINEAGE, embedding="classifier").empty
    assert "train_min" in format_leaderboard(leaderboard(SCORES_TABLE, LINEAGE))
    assert format_leaderboard(leaderboard(SCORES_TABLE, LINEAGE, embedding="classifier")) == "(no scored models)"


def test_only_rows_of_the_current_embedding_are_ranked_and_the_others_are_named_stale() -> None:
    scores = pd.concat([SCORES_TABLE, STALE], ignore_index=True)
    current, stale = split_lineage(scores, LINEAGE)
    assert set(stale.model) == {"c", "d"} and len(current) + len(stale) == len(scores)
    board = leaderboard(scores, LINEAGE)
    assert board.model.tolist() == ["b", "a"] and (board.n == 1000).all()
    assert stale_models(scores, LINEAGE) == ["c"] and stale_models(scores, LINEAGE, "classifier") == ["d"]
    note = stale_note(scores, LINEAGE, "s3://bucket/lab")
    assert note is not None and note.startswith("c: scored in an older vae embedding than the lab's (vae@aaaaaaaaaaaa, trial vae_00001)")
    assert note.endswith("re-score with: python -m jobs.evaluate --lab s3://bucket/lab --models c")
    assert stale_note(SCORES_TABLE, LINEAGE, "lab") is None
    # the lab's VAE replaced by the old one, or gone: what was current is stale, and nothing else is ranked
    assert leaderboard(scores, {**LINEAGE, "vae": OLD_VAE}).model.tolist() == ["c"]
    assert leaderboard(scores, {}).empty and ranked_by({}) == "no vae model in the lab: nothing is ranked"
    assert stale_models(scores, {}) == ["a", "b", "c"]
    assert lineage_of(SCORES_TABLE) == {"vae": EmbeddingId("vae", "a" * 64), "pixels": EmbeddingId("pixels")}
    assert (EmbeddingId("pixels").label, OLD_VAE.label) == ("pixels", "vae@bbbbbbbbbbbb")


def test_a_table_written_before_lineage_reads_and_all_its_rows_are_stale(tmp_path: Path) -> None:
    tables = TableStore(LabStore(tmp_path))
    old = SCORES.empty().drop(columns=[SCORES.embedding_sha256, SCORES.embedding_trial])
    row = {c: 1.0 for c in old.columns} | {c: "x" for c in ("model", "arch", "sampler", "embedding", "weights_sha256", "device")}
    old = pd.DataFrame([row | {"model": m, "embedding": "vae", "steps": 5, "n": 10, "parameters": 3, "images_seen": 1}
                        for m in ("a", "b")])
    tables.write(SCORES, old)  # what jobs.evaluate wrote before the lineage columns existed
    read = tables.read(SCORES)
    assert SCORES.embedding_sha256 not in read.columns and not is_current(read, LINEAGE).any()
    assert leaderboard(read, LINEAGE).empty and stale_models(read, LINEAGE) == ["a", "b"]
    new = pd.DataFrame([row | {"model": "a", "embedding": "vae", "steps": 5, "n": 10, "parameters": 3, "images_seen": 1,
                               "embedding_sha256": VAE.sha256, "embedding_trial": ""}])
    tables.update(SCORES, new)  # a re-scored model beside an old row: the old one reads as of unknown lineage
    mixed = tables.read(SCORES)
    assert leaderboard(mixed, LINEAGE).model.tolist() == ["a"] and stale_models(mixed, LINEAGE) == ["b"]
    for schema in (ROBUSTNESS, ROBUSTNESS_SUMMARY):  # the robustness tables split by the same columns
        assert (schema.embedding, schema.embedding_sha256) == (SCORES.embedding, SCORES.embedding_sha256)
        assert schema.embedding_sha256.optional and schema.embedding_trial.optional


def test_models_whose_intervals_overlap_the_tier_leaders_share_its_rank() -> None:
    nan = float("nan")
    assert tie_ranks([1.0, 1.1, 1.5, 3.0], [0.9, 1.0, 1.2, 2.5], [1.12, 1.3, 1.8, 3.5]) == [1, 1, 3, 4]
    # 1.5 overlaps 1.1's interval but not the leader's: ties do not chain
    assert tie_ranks([1.0, 1.1, 1.5], [0.9, 1.0, 1.25], [1.2, 1.3, 1.8]) == [1, 1, 3]
    assert tie_ranks([1.0, 1.1], [nan, nan], [nan, nan]) == [1, 2]  # rows scored before intervals: no ties
    try:
        tie_ranks([2.0, 1.0], [1, 1], [3, 3])
    except ValueError as error:
        assert "sorted" in str(error)
    else:
        raise AssertionError("unsorted ratios were accepted")


def test_the_board_marks_ties_and_shows_each_interval() -> None:
    rows = pd.DataFrame([score("a", "ddim", 20, 1000, 0.30, 0.15), score("b", "ddim", 20, 1000, 0.33, 0.15),
                         score("c", "ddim", 20, 1000, 0.90, 0.15)])
    rows = rows.assign(ratio_low=rows.ratio * 0.9, ratio_high=rows.ratio * 1.1)
    board = leaderboard(rows, LINEAGE)
    assert board["rank"].tolist() == [1, 1, 3]
    text = format_leaderboard(board)
    assert "1=" in text and "3=" not in text and "2 [1.8, 2.2]" in text and "ratio [95% interval]" in text


def history(model: str, trial: str, images: list[int], ratios: list[float]) -> list[dict]:
    return [{"model": model, "trial_id": trial, "images_seen": i, "ratio": r} for i, r in zip(images, ratios)]


def test_the_budget_matched_column_takes_every_models_ratio_at_the_largest_budget_all_reached() -> None:
    table = pd.DataFrame([
        *history("a", "a1", [100, 200, 300, 400], [9.0, 5.0, 3.0, 2.0]),  # trained longest
        *history("a", "a2", [100, 200], [8.0, 6.0]),
        *history("b", "b1", [100, 200, 250], [7.0, 4.0, 3.5]),  # reached 250: the budget; its best trial there
        *history("b", "b2", [100], [6.5]),
        {"model": "a", "trial_id": "a1", "images_seen": 50, "ratio": float("nan")},  # a report without an FD
    ])
    budget = budget_matched(table)
    assert budget is not None and budget.images == 250 and budget.ratios == {"a": 5.0, "b": 3.5}
    assert budget.label == "ratio @ 250 images"
    assert budget_matched(table, ["a"]).images == 400  # type: ignore[union-attr]
    assert budget_matched(table, ["a", "z"]) is None and budget_matched(TRIAL_HISTORY.empty()) is None
    rows = pd.DataFrame([score("a", "ddim", 20, 1000, 0.30, 0.15), score("b", "ddim", 20, 1000, 0.60, 0.15)])
    board, added = with_budget(leaderboard(rows, LINEAGE), table)
    assert added == budget
    assert board[BUDGET_RATIO].tolist() == [5.0, 3.5]  # a wins on its long training, b at an equal budget
    assert "ratio @ 250 images" in format_leaderboard(board, budget)
    assert board[BUDGET_LOW].isna().all() and budget.lows == {}  # reports from before trials carried an interval


def test_the_budget_matched_column_carries_the_interval_of_the_report_it_takes() -> None:
    table = pd.DataFrame([
        *history("a", "a1", [100, 200], [9.0, 5.0]), *history("a", "a2", [100, 200], [8.0, 6.0]),
        *history("b", "b1", [100, 200], [7.0, 4.0]),
    ]).assign(ratio_low=lambda t: t.ratio * 0.8, ratio_high=lambda t: t.ratio * 1.25)
    budget = budget_matched(table)
    assert budget is not None and budget.ratios == {"a": 5.0, "b": 4.0}
    assert budget.lows == {"a": 4.0, "b": 3.2} and budget.highs == {"a": 6.25, "b": 5.0}  # a1's, not a2's
    rows = pd.DataFrame([score("a", "ddim", 20, 1000, 0.30, 0.15), score("b", "ddim", 20, 1000, 0.60, 0.15)])
    board, _ = with_budget(leaderboard(rows, LINEAGE), table)
    assert board[BUDGET_LOW].tolist() == [4.0, 3.2] and board[BUDGET_HIGH].tolist() == [6.25, 5.0]
    text = format_leaderboard(board, budget)
    assert "5 [4, 6.25]" in text and "4 [3.2, 5]" in text and BUDGET_LOW not in text


def test_the_budget_rule_is_read_from_what_the_models_trained() -> None:
    equal = leaderboard(SCORES_TABLE.assign(images_seen=96_000), LINEAGE)
    assert budget_rule(equal) == "one budget, equal images seen: 96,000 training images per model; training minutes 1 to 1"
    unequal = leaderboard(SCORES_TABLE.assign(images_seen=SCORES_TABLE.model.map({"a": 12_800, "b": 204_800})), LINEAGE)
    assert budget_rule(unequal) == "budgets differ, in training images the scored weights saw: b 204,800, a 12,800"
    assert budget_rule(leaderboard(SCORES_TABLE, LINEAGE)) == "training budget: not recorded for these models"


def test_precision_recall_density_coverage_stand_beside_fd_with_their_real_reference() -> None:
    figures = {"precision": 0.6, "recall": 0.5, "density": 0.7, "coverage": 0.55, "real_precision": 0.81,
               "real_recall": 0.8, "real_density": 1.01, "real_coverage": 0.93}
    board = leaderboard(SCORES_TABLE.assign(**figures), LINEAGE)
    assert board.precision.tolist() == [0.6, 0.6] and "coverage" in format_leaderboard(board)
    assert "real_precision" not in format_leaderboard(board)  # the reference is its own line
    assert manifold_reference(board) == ("real vs real at N = 1,000 (what a perfect model scores): precision 0.810, "
                                         "recall 0.800, density 1.010, coverage 0.930")
    assert manifold_reference(leaderboard(SCORES_TABLE, LINEAGE)) is None  # tables written before the figures
