"""Which embedding a score was measured in: its name, the SHA-256 of its weights and the Tune trial it came from.

An FD is only comparable with FDs measured in the same embedding weights: re-training the VAE
moves every FD. Score rows, robustness curves and cards therefore carry the embedding's
``sha256`` (and ``trial``); the leaderboard (``diffusion.lab.leaderboard``) ranks only the rows
whose sha is the lab's current one. This module imports nothing from ``diffusion`` at run time:
the embedders (``diffusion.embeddings``) and the tables both build on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the card module imports the embeddings, which import this one
    from diffusion.lab.checkpoint import ModelCard

SHORT_SHA = 12
"""Hex digits of a sha256 that labels show."""


@dataclass(frozen=True)
class EmbeddingId:
    """One embedding's weights: ``name`` (vae, classifier, pixels), ``sha256`` of its weights ("" for a fixed map such
    as pixels) and ``trial_id``, the Tune trial it came from ("" when it was not trained by a sweep)."""

    name: str
    sha256: str = ""
    trial_id: str = ""

    @property
    def label(self) -> str:
        """``vae@1a2b3c4d5e6f`` (``, trial abc_00001`` when it came from a trial); just ``pixels`` for a fixed map."""
        label = f"{self.name}@{self.sha256[:SHORT_SHA]}" if self.sha256 else self.name
        return f"{label}, trial {self.trial_id}" if self.trial_id else label

    @classmethod
    def of_card(cls, name: str, card: ModelCard) -> EmbeddingId:
        """Embedding ``name`` as its model's card describes it: the card's weights hash and ``metrics["trial_id"]``."""
        return cls(name, card.weights_sha256, str(card.metrics.get("trial_id") or ""))
