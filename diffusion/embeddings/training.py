"""Train the evaluation embeddings (VAE, classifier) with the lab's one training loop, and store them.

Same contract as the denoisers: build a job from a run config, ``trainer.fit(callback, every)``,
``trainer.save_state()`` / ``load_state()`` for resume, export through the lab store.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from diffusion.core.config import ClassifierRun, VAERun
from diffusion.core.device import seeded
from diffusion.core.training import Callback, Trainer
from diffusion.embeddings.classifier import DigitClassifier, accuracy, classifier_loss
from diffusion.embeddings.vae import ConvVAE, negative_elbo, vae_loss
from diffusion.lab.datasets import load_dataset
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore

EmbedderRun = VAERun | ClassifierRun
EMBEDDER_RUNS: dict[str, type[VAERun] | type[ClassifierRun]] = {"vae": VAERun, "classifier": ClassifierRun}
"""Embedding model kind -> its run config (defaults: VAERun(), ClassifierRun())."""


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
    """Load the training split (unless ``data`` = (images, labels) is given; from ``store``'s copy where it has one), build a seeded model and trainer."""
    if data is None:
        digits = load_dataset(run.data, "train", store)
        data = (digits.images, digits.labels)
    with seeded(run.train.seed):
        if isinstance(run, VAERun):
            model, loss, tensors = ConvVAE(run.model), vae_loss(run.model), data[0]
        else:
            model, loss, tensors = DigitClassifier(run.model), classifier_loss(), data
    return EmbedderJob(run, Trainer(model, loss, tensors, run.train, device))


@torch.inference_mode()
def held_out_metrics(job: EmbedderJob, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Held-out figures: the classifier's accuracy, or the VAE's -ELBO and reconstruction (nats/image)."""
    model = job.ema_model.eval()
    device = next(model.parameters()).device
    if isinstance(model, DigitClassifier):
        return {"test_accuracy": accuracy(model, images, labels)}
    assert isinstance(model, ConvVAE)
    generator = torch.Generator(device=device).manual_seed(0)
    x = images.to(device)
    noise = torch.randn((len(x), model.config.latent_dim), generator=generator, device=device)
    total, reconstruction, kl = negative_elbo(model, x, noise, model.config.beta)
    return {"test_neg_elbo": float(total.mean()), "test_reconstruction": float(reconstruction.mean()),
            "test_kl": float(kl.mean())}


def train_embedder(
    store: LabStore,
    name: str,
    run: EmbedderRun,
    device: torch.device,
    callback: Callback | None = None,
    every: int = 100,
) -> dict[str, float]:
    """Train an embedding model from scratch, export its EMA weights with test metrics, return them."""
    job = build_embedder_job(run, device, store=store)
    progress = job.trainer.fit(callback=callback, every=every)
    test = load_dataset(run.data, "test", store)
    metrics = {**held_out_metrics(job, test.images, test.labels), "steps": job.trainer.step,
               "train_seconds": round(progress.elapsed_s, 1), "final_loss": progress.loss}
    ModelRegistry(store).export_model(name, job.ema_model, run, metrics)
    return metrics
