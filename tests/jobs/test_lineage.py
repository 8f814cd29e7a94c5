"""Re-training the VAE and then evaluating never ranks a model by an FD from the old VAE: every score names the
embedding weights it was measured in, and the leaderboard names the models left with old scores and how to re-score them."""

from __future__ import annotations

import pytest

from diffusion.embeddings.loading import current_embedding, current_embeddings, load_embedder
from diffusion.lab.leaderboard import best_scores
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore
from diffusion.lab.tables import SCORES, TableStore
from jobs.evaluate import print_leaderboard
from tests.lineage_lab import NEW_TRIAL, RESCORED, STALE, RetrainedLab

pytestmark = pytest.mark.slow  # trains two VAEs and two denoisers, and scores three times (session fixture)


def test_after_retraining_the_vae_only_models_scored_in_it_are_ranked(retrained_vae_lab: RetrainedLab,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    store, old, new = LabStore(retrained_vae_lab.root), retrained_vae_lab.old_vae, retrained_vae_lab.new_vae
    assert old.sha256 != new.sha256 and (old.trial_id, new.trial_id) == ("", NEW_TRIAL)
    assert new == current_embedding(store, "vae") == load_embedder("vae", store).identity
    assert current_embedding(store, "classifier") is None  # the lab has none: nothing in it is current

    scores = TableStore(store).read(SCORES)
    measured = scores.groupby(SCORES.model)[[SCORES.embedding_sha256, SCORES.embedding_trial]].agg(set)
    assert measured.loc[RESCORED].tolist() == [{new.sha256}, {NEW_TRIAL}]
    assert measured.loc[STALE].tolist() == [{old.sha256}, {""}]  # kept by merge_scores, never mixed in
    cards = ModelRegistry(store)
    assert cards.read_card(RESCORED).metrics["fd_embedding_vae"] == new.sha256
    assert cards.read_card(RESCORED).metrics["fd_embedding_trial_vae"] == NEW_TRIAL
    assert cards.read_card(STALE).metrics["fd_embedding_vae"] == old.sha256

    board = print_leaderboard(store)
    printed = capsys.readouterr().out
    assert board.model.tolist() == [RESCORED]
    assert f"(vae@{new.sha256[:12]}, trial {NEW_TRIAL})" in printed.splitlines()[0]
    [stale] = [line for line in printed.splitlines() if "stale" in line]
    assert stale.startswith(f"[leaderboard] stale: {STALE}: scored in an older vae embedding")
    assert stale.endswith(f"re-score with: python -m jobs.evaluate --lab {store.root} --models {STALE}")
    ranked = best_scores(scores, current_embeddings(store))
    assert old.sha256 not in set(ranked[SCORES.embedding_sha256]) and ranked[SCORES.model].tolist() == [RESCORED]
