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

from dataclasses import dataclass

import torch
from torch import nn

from diffusion.core.config import ClassifierRun, VAERun
from diffusion.core.device import seeded
from diffusion.core.training import Callback, Trainer
from diffusion.embeddings.classifier import DigitClassifier, classifier_loss
from diffusion.embeddings.vae import ConvVAE, negative_elbo, vae_loss
from diffusion.lab.datasets import Digits, selection_splits
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore

EmbedderRun = VAERun | ClassifierRun
EMBEDDER_RUNS: dict[str, type[VAERun | ClassifierRun]] = {"vae": VAERun, "classifier": ClassifierRun}
"""Embedding model kind -> its run config (defaults: VAERun(), ClassifierRun())."""
SELECTION_METRIC = "val_loss"
"""What an embedding is chosen by, lower is better: held-out -ELBO (VAE) or cross-entropy (classifier)."""


@dataclass
class EmbedderJob:
    """An embedding model's run config and the trainer that fits it."""

    run: EmbedderRun
    trainer: Trainer

    @property
    def ema_model(self) -> nn.Module:
        """The EMA weights: what gets evaluated and exported."""
        return self.trainer.ema.model


def build_embedder_job(run: EmbedderRun, device: torch.device, data: tuple[torch.Tensor, torch.Tensor] | None = None,
                       store: LabStore | None = None) -> EmbedderJob:
    """Build a seeded model and trainer on ``data`` = (images, labels), by default the ``fit`` part of the training
    split (from ``store``'s copy where it has one)."""
    if data is None:
        fit = selection_splits(run.data, store).fit
        data = (fit.images, fit.labels)
    with seeded(run.train.seed):
        if isinstance(run, VAERun):
            model, loss, tensors = ConvVAE(run.model), vae_loss(run.model), data[0]
        else:
            model, loss, tensors = DigitClassifier(run.model), classifier_loss(), data
    return EmbedderJob(run, Trainer(model, loss, tensors, run.train, device))


@torch.inference_mode()
def validation_metrics(model: nn.Module, validation: Digits) -> dict[str, float]:
    """Held-out figures of an embedding model, ``val_loss`` (SELECTION_METRIC) first: the VAE's -ELBO with its
    reconstruction and KL terms (nats/image, a fixed noise draw), or the classifier's cross-entropy and accuracy."""
    model = model.eval()
    device = next(model.parameters()).device
    if isinstance(model, DigitClassifier):
        cross_entropy, correct = 0.0, 0
        for start in range(0, len(validation), 1000):
            logits = model(validation.images[start : start + 1000].to(device)).float().cpu()
            labels = validation.labels[start : start + 1000]
            cross_entropy += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(1) == labels).sum())
        return {SELECTION_METRIC: cross_entropy / len(validation), "val_accuracy": correct / len(validation)}
    assert isinstance(model, ConvVAE)
    generator = torch.Generator(device=device).manual_seed(0)
    x = validation.images.to(device)
    noise = torch.randn((len(x), model.config.latent_dim), generator=generator, device=device)
    total, reconstruction, kl = negative_elbo(model, x, noise, model.config.beta)
    return {SELECTION_METRIC: float(total.mean()), "val_neg_elbo": float(total.mean()),
            "val_reconstruction": float(reconstruction.mean()), "val_kl": float(kl.mean())}


def train_embedder(
    store: LabStore,
    name: str,
    run: EmbedderRun,
    device: torch.device,
    callback: Callback | None = None,
    every: int = 100,
) -> dict[str, float]:
    """Train an embedding model from scratch on the fit split, export its EMA weights with validation metrics, return them."""
    splits = selection_splits(run.data, store)
    job = build_embedder_job(run, device, data=(splits.fit.images, splits.fit.labels))
    progress = job.trainer.fit(callback=callback, every=every)
    metrics = {**validation_metrics(job.ema_model, splits.validation), "steps": job.trainer.step,
               "train_seconds": round(progress.elapsed_s, 1), "final_loss": progress.loss}
    ModelRegistry(store).export_model(name, job.ema_model, run, metrics)
    return metrics
