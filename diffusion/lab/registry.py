"""The models of a lab store: weights and cards under ``models/<name>/``, exported, listed, read and loaded.

What a writer can rely on, on top of the store's atomic files (``diffusion.lab.store``):

- A model's card is written after its weights, so a reader never sees a card without its
  weights. Locally ``export_model`` and ``update_metrics`` of one model hold its lock; on
  object stores only ``export_model`` writes the card and metrics go to part files under
  ``metrics/``, which ``read_card`` merges. Metrics are tied to the weights they were measured
  on: ``update_metrics(..., expected_sha256=...)`` refuses a card whose weights changed, and an
  export drops metrics of other weights.
- Weights are only read from safetensors and checked against the card's SHA-256
  (``diffusion.lab.checkpoint``): a pickle, a truncated or an altered file is refused.
- Not covered: two exports of one model at once on an object store may leave the card of one
  beside the weights of the other; loading then fails its checksum (wrong weights are never
  served) until the next export.
- Stray entries under ``models/`` are listed by ``model_entries`` (or ``entry``) with the reason,
  never raised; a damaged card raises DamagedFile naming the file and the job that rewrites it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from diffusion.lab.checkpoint import (
    CheckpointError,
    ModelCard,
    build_from_card,
    model_card,
    weights_from_bytes,
    weights_to_bytes,
)
from diffusion.lab.kinds import kind_of
from diffusion.lab.store import (
    NAME_PATTERN,
    DamagedFile,
    InvalidName,
    LabStore,
    LabStoreError,
    StaleMetrics,
    check_name,
)
from diffusion.lab.table_log import part_name

log = logging.getLogger(__name__)

MODELS_FOLDER = "models"
WEIGHTS_FILE = "weights.safetensors"
CARD_FILE = "card.json"
METRICS_DIR = "metrics"
MODEL_JOBS = "python -m jobs.sweep, or python -m diffusion train / train-embedding --name {name}"
"""The commands that export (and so rewrite) a model's card and weights."""


@dataclass(frozen=True)
class StoredModel:
    """A model read back from the store: the network (eval mode), its run config and card."""

    name: str
    model: nn.Module
    run: Any  # RunConfig for a denoiser, VAERun, ClassifierRun
    card: ModelCard


@dataclass(frozen=True)
class ModelEntry:
    """One entry under ``models/``: its card, or why it is not a usable model."""

    name: str
    card: ModelCard | None = None
    error: str | None = None

    @property
    def available(self) -> bool:
        """Whether the entry is a model with a readable card."""
        return self.card is not None


class ModelRegistry:
    """The exported models of one lab store: export, list, read cards and metrics, load networks."""

    def __init__(self, store: LabStore) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"ModelRegistry({self.store.root!r})"

    def model_path(self, name: str, filename: str = "") -> str:
        """Relative path of a model's folder, or of one file in it."""
        check_name(name, "model name")
        return f"{MODELS_FOLDER}/{name}/{filename}" if filename else f"{MODELS_FOLDER}/{name}"

    def export_model(self, name: str, model: nn.Module, run: Any, metrics: dict[str, Any] | None = None) -> ModelCard:
        """Save a model's weights, then its card (last, so readers never see half a model).

        ``run`` is the run config the model was trained from; its type names the kind.
        """
        weights = weights_to_bytes(model)
        card = model_card(kind_of(run), model, run, weights, metrics)
        with self.store.locked(MODELS_FOLDER, check_name(name, "model name")):
            self.store.write_bytes(self.model_path(name, WEIGHTS_FILE), weights)
            self.store.write_bytes(self.model_path(name, CARD_FILE), card.to_json())
        return card

    def exists(self) -> bool:
        """Whether the store has a ``models/`` folder at all (a lab that a job has written)."""
        return self.store.exists(MODELS_FOLDER)

    def entry_names(self) -> list[str]:
        """The names under ``models/`` (sorted), hidden ones left out: models, or entries that say why they are not."""
        return [n for n in self.store.list_dir(MODELS_FOLDER) if not n.startswith(".")]

    def model_entries(self) -> list[ModelEntry]:
        """Every entry under ``models/`` (sorted): its card, or why it is not a usable model."""
        return [self.entry(name) for name in self.store.list_dir(MODELS_FOLDER)]

    def entry(self, name: str) -> ModelEntry:
        """The entry ``models/<name>``: its card, or why it is not a usable model (never raises on a stray entry)."""
        try:
            check_name(name, "model folder name")
        except InvalidName as error:
            return ModelEntry(name, error=str(error))
        if not self.store.exists(self.model_path(name, CARD_FILE)):
            return ModelEntry(name, error=f"{self.store.uri(self.model_path(name))} has no {CARD_FILE}: "
                                          f"not a model, or its export did not finish")
        try:
            return ModelEntry(name, self.read_card(name))
        except (LabStoreError, CheckpointError) as error:
            return ModelEntry(name, error=str(error))

    def list_models(self, kind: str | None = None) -> list[str]:
        """Names of the exported models (valid names with a card), optionally only of one ``kind``; never raises on stray entries."""
        if kind is not None:
            return [e.name for e in self.model_entries() if e.card is not None and e.card.kind == kind]
        names = [n for n in self.store.list_dir(MODELS_FOLDER) if NAME_PATTERN.match(n)]
        return [n for n in names if self.store.exists(self.model_path(n, CARD_FILE))]

    def read_card(self, name: str) -> ModelCard:
        """A model's card, with the metrics added on object stores for these weights."""
        relpath = self.model_path(name, CARD_FILE)
        data = self.store.read_bytes(relpath)
        try:
            card = ModelCard.from_json(data, self.store.uri(relpath))
        except CheckpointError as error:
            raise DamagedFile(f"{error}; the card is damaged: rerun {MODEL_JOBS.format(name=name)} "
                              f"to export the model again") from error
        extra = self._metric_parts(name, card.weights_sha256)
        return ModelCard(card.kind, card.config, card.parameters, card.weights_sha256, {**card.metrics, **extra}) if extra else card

    def _metric_parts(self, name: str, weights_sha256: str) -> dict[str, Any]:
        folder = self.model_path(name, METRICS_DIR)
        merged: dict[str, Any] = {}
        for part in (n for n in self.store.list_dir(folder) if n.endswith(".json")):
            try:
                body = self.store.read_json(f"{folder}/{part}")
            except (LabStoreError, ValueError) as error:
                log.warning("%s is unreadable (%s); its metrics are skipped", self.store.uri(folder, part), error)
                continue
            if isinstance(body, dict) and body.get("weights_sha256") == weights_sha256:
                merged.update(body.get("metrics") or {})
        return merged

    def update_metrics(self, name: str, metrics: dict[str, Any], expected_sha256: str | None = None) -> ModelCard:
        """Merge ``metrics`` into a model's card (weights untouched).

        ``expected_sha256``: the weights the metrics were measured on; StaleMetrics if the card's differ.
        """
        with self.store.locked(MODELS_FOLDER, check_name(name, "model name")):
            card = self.read_card(name)
            if expected_sha256 is not None and card.weights_sha256 != expected_sha256:
                raise StaleMetrics(
                    f"{self.store.uri(self.model_path(name, CARD_FILE))}: the weights changed since these metrics were "
                    f"measured (measured on sha256 {expected_sha256[:12]}..., the card has {card.weights_sha256[:12]}...): "
                    f"evaluate the model again")
            updated = ModelCard(card.kind, card.config, card.parameters, card.weights_sha256, {**card.metrics, **metrics})
            if self.store.is_local:
                self.store.write_bytes(self.model_path(name, CARD_FILE), updated.to_json())
            else:
                part = {"weights_sha256": card.weights_sha256, "metrics": metrics}
                self.store.write_json(self.model_path(name, f"{METRICS_DIR}/{part_name('.json')}"), part)
        return updated

    def read_weights(self, name: str, card: ModelCard | None = None) -> dict[str, torch.Tensor]:
        """A model's state dict, checked against the card's checksum; pickles are refused."""
        card = card or self.read_card(name)
        relpath = self.model_path(name, WEIGHTS_FILE)
        return weights_from_bytes(self.store.read_bytes(relpath), self.store.uri(relpath), card.weights_sha256)

    def load_model(self, name: str, device: torch.device | str = "cpu", kind: str | None = None) -> StoredModel:
        """Rebuild an exported model from its card and weights, on ``device`` (checking ``kind``)."""
        card = self.read_card(name)
        state = self.read_weights(name, card)
        model, run = build_from_card(card, state, self.store.uri(self.model_path(name)), kind)
        return StoredModel(name, model.to(device), run, card)

    def load_denoiser(self, name: str, device: torch.device | str = "cpu") -> StoredModel:
        """Rebuild an exported denoiser; ``.run`` is its RunConfig."""
        return self.load_model(name, device, "denoiser")

    def write_model_file(self, name: str, filename: str, data: bytes) -> str:
        """Store a file (PNG, GIF, denoising paths) beside a model; returns its relative path."""
        check_name(filename, "model file name")
        relpath = self.model_path(name, filename)
        self.store.write_bytes(relpath, data)
        return relpath
