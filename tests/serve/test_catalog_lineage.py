"""What GET /models says about scores from an older VAE: the function behind it, on a lab whose VAE was re-trained."""

from __future__ import annotations

import pytest

from diffusion.lab.store import LabStore
from serve.catalog import evaluation_summary
from tests.lineage_lab import NEW_TRIAL, RESCORED, STALE, RetrainedLab

pytestmark = pytest.mark.slow  # the session's re-trained lab trains two VAEs and two denoisers


def test_a_model_scored_in_an_older_vae_is_stale_and_not_ranked(retrained_vae_lab: RetrainedLab) -> None:
    store = LabStore(retrained_vae_lab.root)
    summary = evaluation_summary(store)
    ranked, stale = summary[RESCORED], summary[STALE]
    assert ranked["rank"] == 1 and not ranked["stale"] and ranked["fd"] > 0
    assert (ranked["embedding"], ranked["embedding_sha256"], ranked["embedding_trial"]) == \
        ("vae", retrained_vae_lab.new_vae.sha256, NEW_TRIAL)
    assert stale["stale"] and "rank" not in stale and "fd" not in stale
    assert stale["embedding_sha256"] == retrained_vae_lab.old_vae.sha256
    assert stale["reason"].endswith(f"re-score with: python -m jobs.evaluate --lab {store.root} --models {STALE}")
