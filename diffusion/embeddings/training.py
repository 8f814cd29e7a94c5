"""Train the evaluation embeddings (VAE, classifier) with the lab's one training loop, and store them.

Same contract as the denoisers: build a job from a run config, ``trainer.fit(callback, every)``,
``trainer.save_state()`` / ``load_state()`` for resume, export through the lab store.

An embedding is the yardstick every denoiser is measured with, so it is chosen on held-out data
that is not the yardstick's reference: it trains on the ``fit`` part of the training split and
is judged on its ``validation`` part (``diffusion.lab.datasets.selection_splits``); the test
split, which FDs are computed against, never takes part. The selection figure, ``val_loss``
(lower is better), is the VAE's held-out -ELBO in nats per image (Kingma and Welling 2014) and
the classifier's held-out cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from diffusion.core.device import seeded
from diffusion.core.models.classifier import classifier_loss
from diffusion.core.models.vae import negative_elbo, vae_loss
from diffusion.core.training import Callback, LossFn, Trainer, TrainingJob
from diffusion.lab.datasets import Digits, selection_splits
from diffusion.lab.kinds import STORED_KINDS, kind_of
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore
from diffusion.lab.tables import EMBEDDING_HISTORY as E

SELECTION_METRIC = E.val_loss
"""What an embedding is chosen by, lower is better: held-out -ELBO (VAE) or cross-entropy (classifier); the figures
are the ``embedding_history`` table's columns."""


@torch.inference_mode()
def _vae_validation(model: nn.Module, validation: Digits) -> dict[str, float]:
    """The VAE's held-out -ELBO with its reconstruction and KL terms (nats/image, a fixed noise draw)."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(0)
    x = validation.images.to(device)
    noise = torch.randn((len(x), model.config.latent_dim), generator=generator, device=device)
    total, reconstruction, kl = negative_elbo(model, x, noise, model.config.beta)  # type: ignore[arg-type]
    return {SELECTION_METRIC: float(total.mean()), E.val_neg_elbo: float(total.mean()),
            E.val_reconstruction: float(reconstruction.mean()), E.val_kl: float(kl.mean())}


@torch.inference_mode()
def _classifier_validation(model: nn.Module, validation: Digits) -> dict[str, float]:
    """The classifier's held-out cross-entropy and accuracy."""
    device = next(model.parameters()).device
    cross_entropy, correct = 0.0, 0
    for start in range(0, len(validation), 1000):
        logits = model(validation.images[start : start + 1000].to(device)).float().cpu()
        labels = validation.labels[start : start + 1000]
        cross_entropy += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(1) == labels).sum())
    return {SELECTION_METRIC: cross_entropy / len(validation), E.val_accuracy: correct / len(validation)}


@dataclass(frozen=True)
class EmbeddingTraining:
    """How one embedding kind trains: its loss (from its run config), whether it learns from the labels, and its
    held-out figures (``SELECTION_METRIC`` first)."""

    loss: Callable[[Any], LossFn]
    uses_labels: bool
    validate: Callable[[nn.Module, Digits], dict[str, float]]


EMBEDDING_TRAINING: dict[str, EmbeddingTraining] = {
    "vae": EmbeddingTraining(lambda run: vae_loss(run.model), False, _vae_validation),
    "classifier": EmbeddingTraining(lambda run: classifier_loss(), True, _classifier_validation),
}
"""Every embedding kind the lab trains (its network and run config: ``diffusion.lab.kinds.STORED_KINDS``)."""


@dataclass
class EmbedderJob(TrainingJob):
    """An embedding model's run config, the trainer that fits it, and its kind (``EMBEDDING_TRAINING``)."""

    kind: str = field(kw_only=True)


def build_embedder_job(kind: str, run: Any, device: torch.device, data: tuple[torch.Tensor, torch.Tensor] | None = None,
                       store: LabStore | None = None) -> EmbedderJob:
    """Build a seeded model and trainer of embedding ``kind`` on ``data`` = (images, labels), by default the ``fit``
    part of the training split (from ``store``'s copy where it has one)."""
    if data is None:
        fit = selection_splits(run.data, store).fit
        data = (fit.images, fit.labels)
    training = EMBEDDING_TRAINING[kind]
    with seeded(run.train.seed):
        model = STORED_KINDS[kind].build(run)
    tensors = data if training.uses_labels else data[0]
    return EmbedderJob(run, Trainer(model, training.loss(run), tensors, run.train, device), kind=kind)


def validation_metrics(kind: str, model: nn.Module, validation: Digits) -> dict[str, float]:
    """Held-out figures of an embedding model of ``kind``, ``val_loss`` (SELECTION_METRIC) first."""
    return EMBEDDING_TRAINING[kind].validate(model.eval(), validation)


def train_embedder(
    store: LabStore,
    name: str,
    run: Any,
    device: torch.device,
    callback: Callback | None = None,
    every: int = 100,
) -> dict[str, float]:
    """Train an embedding model from scratch on the fit split, export its EMA weights with validation metrics, return them."""
    splits = selection_splits(run.data, store)
    kind = kind_of(run)
    job = build_embedder_job(kind, run, device, data=(splits.fit.images, splits.fit.labels))
    progress = job.trainer.fit(callback=callback, every=every)
    metrics = {**validation_metrics(kind, job.ema_model, splits.validation), "steps": job.trainer.step,
               "train_seconds": round(progress.elapsed_s, 1), "final_loss": progress.loss}
    ModelRegistry(store).export_model(name, job.ema_model, run, metrics)
    return metrics
