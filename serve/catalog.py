"""The denoisers a replica hosts: every model folder of the lab store, loaded from safetensors or marked unavailable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from diffusion.checkpoint import CheckpointError, ModelCard
from diffusion.config import ConfigError
from diffusion.leaderboard import leaderboard
from diffusion.schedules import NoiseSchedule
from diffusion.store import LabStore, LabStoreError


@dataclass
class HostedModel:
    """One model folder: the network and its schedule when it loaded, else the reason it did not."""

    name: str
    card: ModelCard | None = None
    model: nn.Module | None = None
    schedule: NoiseSchedule | None = None
    error: str | None = None

    @property
    def loaded(self) -> bool:
        """Whether requests can sample this model."""
        return self.model is not None

    @property
    def timesteps(self) -> int:
        """The schedule's T (the most steps a sampler may take)."""
        assert self.schedule is not None
        return self.schedule.timesteps


def load_catalog(store: LabStore, device: torch.device) -> dict[str, HostedModel]:
    """Every denoiser folder under ``models/``; embeddings (VAE, classifier) are not hosted."""
    catalog: dict[str, HostedModel] = {}
    for name in sorted(store.list_dir("models")):
        try:
            card = store.read_card(name)
        except (LabStoreError, CheckpointError, ConfigError, OSError) as error:
            catalog[name] = HostedModel(name, error=f"card unreadable: {error}")
            continue
        if card.kind != "denoiser":
            continue
        try:
            stored = store.load_denoiser(name, device)
        except (LabStoreError, CheckpointError, ConfigError, OSError, RuntimeError) as error:
            catalog[name] = HostedModel(name, card, error=f"weights unavailable: {error}")
            continue
        stored.model.eval()
        schedule = NoiseSchedule.from_config(stored.run.diffusion).to(device)
        catalog[name] = HostedModel(name, card, stored.model, schedule)
    return catalog


def evaluation_summary(store: LabStore) -> dict[str, dict[str, Any]]:
    """Each scored model's best FD (VAE embedding) with its floor and ratio; empty before any evaluation."""
    try:
        scores = store.read_table("scores") if "scores" in store.list_tables() else None
    except (LabStoreError, OSError, ValueError):
        scores = None
    if scores is None or scores.empty:
        return {}
    board = leaderboard(scores)
    return {row["model"]: {"embedding": "vae", "fd": float(row["fd"]), "floor": float(row["floor_mean"]),
                           "ratio": float(row["ratio"]), "sampler": row["sampler"], "steps": int(row["steps"]),
                           "n": int(row["n"])}
            for row in board.to_dict("records")}


def describe(hosted: HostedModel, evaluation: dict[str, Any] | None) -> dict[str, Any]:
    """What GET /models says about one model."""
    card = hosted.card
    return {
        "name": hosted.name,
        "loaded": hosted.loaded,
        "error": hosted.error,
        "arch": card.config.get("model", {}).get("arch") if card else None,
        "parameters": card.parameters if card else None,
        "timesteps": hosted.timesteps if hosted.loaded else None,
        "config": card.config if card else None,
        "evaluation": evaluation,
    }
