"""Load a registered embedding, reading its model from the lab store when it needs one; name the one the lab holds."""

from __future__ import annotations

import torch

from diffusion.core.config import lookup
from diffusion.embeddings import EMBEDDINGS, Embedder, model_embedder
from diffusion.lab.lineage import EmbeddingId
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore, LabStoreError


def load_embedder(name: str, store: LabStore, device: torch.device | str = "cpu", model_name: str | None = None) -> Embedder:
    """The embedding ``name``; ``vae`` and ``classifier`` load the model stored as ``model_name`` (default: the kind).

    The embedder's ``identity`` names the weights it was built from (see ``current_embedding``).
    """
    kind = lookup(EMBEDDINGS, name, "embedding")
    if callable(kind):
        return kind(device)
    model_name = model_name or kind
    models = ModelRegistry(store)
    if model_name not in models.list_models(kind=kind):
        raise LabStoreError(
            f"the {name!r} embedding needs a trained {kind} named {model_name!r} in {store.root}; "
            f"train one with: python -m diffusion train-embedding --kind {kind} --lab {store.root}"
        )
    stored = models.load_model(model_name, device, kind=kind)
    return model_embedder(name, stored.model, device, EmbeddingId.of_card(name, stored.card))


def current_embedding(store: LabStore, name: str) -> EmbeddingId | None:
    """The identity of embedding ``name`` as the lab holds it now, from its model's card (no weights are read);
    None when the lab has no such model. A fixed map (``pixels``) needs no model: always ``EmbeddingId(name)``."""
    kind = lookup(EMBEDDINGS, name, "embedding")
    if callable(kind):
        return EmbeddingId(name)
    entry = ModelRegistry(store).entry(kind)
    if entry.card is None or entry.card.kind != kind:
        return None
    return EmbeddingId.of_card(name, entry.card)


def current_embeddings(store: LabStore) -> dict[str, EmbeddingId | None]:
    """``current_embedding`` of every registered embedding: the lineage that the leaderboard ranks by."""
    return {name: current_embedding(store, name) for name in EMBEDDINGS}
