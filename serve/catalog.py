"""The denoisers a replica hosts: every model folder of the lab store, loaded from safetensors or marked unavailable.

The catalog follows the store: a model's card is read again at most every ``refresh_s`` seconds
when a request names it, and a card whose weights hash changed (a re-export) reloads that model.
A stray entry (a bad name, a damaged card or weights) is listed as unavailable with the reason;
hidden entries (``.DS_Store``, editor folders) are skipped. Every hosted network carries a hook
that stops its forward passes once the calling thread's deadline has passed.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from diffusion.core.config import ConfigError
from diffusion.core.schedules import NoiseSchedule
from diffusion.embeddings.loading import current_embeddings
from diffusion.lab.checkpoint import ModelCard
from diffusion.lab.leaderboard import RANK, leaderboard, lineage_of, stale_models, stale_note
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import CheckpointError, LabStore, LabStoreError
from diffusion.lab.tables import SCORES, TableStore

ENTRY_ERRORS = (LabStoreError, CheckpointError, ConfigError, OSError, ValueError)
"""What an unreachable store or a damaged entry raises (pyarrow's errors are OSError/ValueError)."""
LOAD_ERRORS = (*ENTRY_ERRORS, RuntimeError, KeyError)
"""What loading a card's weights into its network may raise (torch raises RuntimeError on a shape mismatch)."""

_work = threading.local()  # .deadline: time.monotonic() after which this thread's forward passes stop


class DeadlineExceeded(RuntimeError):
    """The work ran past its deadline and was stopped."""


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

    @property
    def weights_sha256(self) -> str:
        """The SHA-256 of the weights this entry samples (from the card they were checked against)."""
        assert self.card is not None
        return self.card.weights_sha256


def run_with_deadline(deadline: float, work: Any, *args: Any) -> Any:
    """``work(*args)`` in this thread; a hosted network's forward pass after ``deadline`` raises DeadlineExceeded."""
    _work.deadline = deadline
    try:
        return work(*args)
    finally:
        _work.deadline = math.inf


def _check_deadline(_module: nn.Module, _inputs: Any) -> None:
    if time.monotonic() > getattr(_work, "deadline", math.inf):
        raise DeadlineExceeded("the request's deadline passed; sampling stopped")


def load_entry(models: ModelRegistry, name: str, device: torch.device,
               previous: HostedModel | None = None) -> HostedModel | None:
    """The hosted entry of ``models/<name>``: the registry's ``entry``, then its weights; None if not a denoiser.

    ``previous`` (what was hosted under that name) keeps its network when the card still names
    the same weights and config, so a metrics update does not reload.
    """
    try:
        entry = models.entry(name)
    except ENTRY_ERRORS as error:  # the store itself is unreachable
        return HostedModel(name, error=f"card unreadable: {error}")
    card = entry.card
    if card is None:
        return HostedModel(name, error=entry.error)
    if card.kind != "denoiser":
        return None
    if previous is not None and previous.loaded and previous.card is not None \
            and (previous.card.weights_sha256, previous.card.config) == (card.weights_sha256, card.config):
        return dataclasses.replace(previous, card=card)
    try:
        stored = models.load_denoiser(name, device)  # reads the card again: the weights are checked against it
        schedule = NoiseSchedule.from_config(stored.run.diffusion).to(device)
    except LOAD_ERRORS as error:
        return HostedModel(name, card, error=f"weights unavailable: {error}")
    stored.model.eval()
    stored.model.register_forward_pre_hook(_check_deadline)
    return HostedModel(name, stored.card, stored.model, schedule)


class Catalog:
    """The hosted models of one lab store, kept in step with it (thread-safe: refreshes run off the event loop)."""

    def __init__(self, store: LabStore, device: torch.device, refresh_s: float) -> None:
        self.store = store
        self.registry = ModelRegistry(store)
        self.device = device
        self.refresh_s = refresh_s
        self.models: dict[str, HostedModel] = {}
        self.reloads = 0
        self._checked: dict[str, float] = {}  # name -> time.monotonic() of its last check
        self._listed = -math.inf
        self._lock = threading.Lock()
        self.refresh_all()

    def get(self, name: str) -> HostedModel | None:
        """What is hosted under ``name`` now (no store access)."""
        return self.models.get(name)

    def snapshot(self) -> dict[str, HostedModel]:
        """A copy of the catalog that another thread's refresh cannot change under the caller."""
        return dict(self.models)

    def due(self, name: str) -> bool:
        """Whether ``name`` (or, for an unknown name, the listing) should be checked against the store."""
        if name in self.models:
            return self._stale(name)
        return time.monotonic() - self._listed >= self.refresh_s

    def refresh(self, name: str) -> HostedModel | None:
        """Check one model against the store (re-listing first when ``name`` is unknown); returns its entry."""
        with self._lock:
            if name in self.models:
                self._refresh_entry(name)
            else:
                self._relist()
            return self.models.get(name)

    def refresh_all(self) -> dict[str, HostedModel]:
        """Re-list the store and check every model, each at most every ``refresh_s``; returns the catalog."""
        with self._lock:
            if time.monotonic() - self._listed >= self.refresh_s:
                self._relist()
            for name in list(self.models):
                if self._stale(name):
                    self._refresh_entry(name)
            return self.snapshot()

    def _relist(self) -> None:
        """Add new model folders, drop removed ones; hidden entries are not models."""
        try:
            names = self.registry.entry_names()
        except ENTRY_ERRORS:
            return  # the store is unreachable for now: keep serving what is loaded
        self._listed = time.monotonic()
        for gone in set(self.models) - set(names):
            del self.models[gone]
            self._checked.pop(gone, None)
        for name in names:
            if name not in self.models and self._stale(name):
                self._refresh_entry(name)

    def _stale(self, name: str) -> bool:
        return time.monotonic() - self._checked.get(name, -math.inf) >= self.refresh_s

    def _refresh_entry(self, name: str) -> None:
        previous = self.models.get(name)
        self._checked[name] = time.monotonic()
        entry = load_entry(self.registry, name, self.device, previous)
        if entry is None:
            self.models.pop(name, None)
            return
        if previous is not None and entry.model is not previous.model and entry.loaded:
            self.reloads += 1
        self.models[name] = entry


def evaluation_summary(store: LabStore) -> dict[str, dict[str, Any]]:
    """Each scored model's best FD in the lab's current VAE, with its floor, ratio, rank and the VAE's weights
    (``embedding_sha256``, ``embedding_trial``); empty before any evaluation.

    A model scored only in another VAE than the lab's current one is ``stale``: it gets the weights it was measured
    in (None: not recorded), the reason with the command that re-scores it, and no FD or rank.
    """
    try:
        tables = TableStore(store)
        scores = tables.read(SCORES) if SCORES.name in tables.names() else None
    except (LabStoreError, OSError, ValueError):
        scores = None
    if scores is None or scores.empty:
        return {}
    try:
        lineage = current_embeddings(store)
    except ENTRY_ERRORS:  # the embeddings' cards are unreachable: nothing is ranked
        lineage = {}
    try:
        board, stale = leaderboard(scores, lineage), stale_models(scores, lineage)
    except (KeyError, ValueError, TypeError):  # a table of another layout: /models lists the models without scores
        return {}
    vae = lineage.get("vae")
    summary: dict[str, dict[str, Any]] = {
        row[SCORES.model]: {"embedding": "vae", "fd": float(row[SCORES.fd]), "floor": float(row[SCORES.floor_mean]),
                            "ratio": float(row[SCORES.ratio]), "sampler": row[SCORES.sampler],
                            "steps": int(row[SCORES.steps]), "n": int(row[SCORES.n]), "rank": int(row[RANK]),
                            "embedding_sha256": vae.sha256 if vae else None, "embedding_trial": vae.trial_id if vae else None,
                            "stale": False}
        for row in board.to_dict("records")}
    for model in stale:
        rows = scores[(scores[SCORES.model] == model) & (scores[SCORES.embedding] == "vae")]
        measured = lineage_of(rows).get("vae")
        summary[model] = {"embedding": "vae", "embedding_sha256": measured.sha256 if measured else None,
                          "embedding_trial": measured.trial_id if measured else None, "stale": True,
                          "reason": stale_note(rows, lineage, store.root)}
    return summary


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
        "weights_sha256": card.weights_sha256 if hosted.loaded and card else None,
        "config": card.config if card else None,
        "evaluation": evaluation,
    }
