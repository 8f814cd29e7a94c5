"""Load a registered embedding, reading its model from the lab store when it needs one."""

from __future__ import annotations

import torch

from diffusion.core.config import lookup
from diffusion.embeddings import EMBEDDINGS, Embedder, model_embedder, pixel_embedder
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore, LabStoreError


def load_embedder(name: str, store: LabStore, device: torch.device | str = "cpu", model_name: str | None = None) -> Embedder:
    """The embedding ``name``; ``vae`` and ``classifier`` load the model stored as ``model_name`` (default: the kind)."""
    kind = lookup(EMBEDDINGS, name, "embedding")
    if kind is None:
        return pixel_embedder(device)
    model_name = model_name or kind
    models = ModelRegistry(store)
    if model_name not in models.list_models(kind=kind):
        raise LabStoreError(
            f"the {name!r} embedding needs a trained {kind} named {model_name!r} in {store.root}; "
            f"train one with: python -m diffusion train-embedding --kind {kind} --lab {store.root}"
        )
    return model_embedder(name, models.load_model(model_name, device, kind=kind).model, device)
