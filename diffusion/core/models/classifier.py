"""A small CNN digit classifier; its penultimate layer is the MNIST analogue of FID's Inception features."""

from __future__ import annotations

import torch
from torch import nn

from diffusion.core.config import ClassifierConfig
from diffusion.core.training import Batch, LossFn


class DigitClassifier(nn.Module):
    """Two conv stages (28 -> 14 -> 7), a ``feature_dim`` ReLU layer (the embedding), then 10 logits."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.features = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),  # (B, w, 14, 14)
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 2w, 7, 7)
            nn.Flatten(), nn.Linear(2 * w * 49, config.feature_dim), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.feature_dim, 10))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features, (B, feature_dim); x in [-1, 1]."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, (B, 10)."""
        return self.head(self.features(x))


def classifier_loss() -> LossFn:
    """Cross-entropy on (images, labels) batches."""

    def loss(model: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        images, labels = batch  # type: ignore[misc]
        return nn.functional.cross_entropy(model(images).float(), labels)

    return loss
