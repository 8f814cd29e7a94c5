"""Embeddings in which Fréchet distances are computed: one registry.

``vae`` (the encoder mean of the evaluation VAE), ``classifier`` (a digit classifier's
penultimate layer, the MNIST analogue of FID's Inception features) and ``pixels``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from diffusion.lab.lineage import EmbeddingId


@dataclass
class Embedder:
    """Maps images in [-1, 1] (N, 1, 28, 28) to float64 features (N, dim), in batches.

    ``weights``: the stored model it was built from (None: a fixed map such as pixels).
    """

    name: str
    dim: int
    function: Callable[[torch.Tensor], torch.Tensor]
    device: torch.device
    weights: EmbeddingId | None = None

    @property
    def identity(self) -> EmbeddingId:
        """Which embedding the features are in: name, weights hash and trial (what score rows record)."""
        return self.weights or EmbeddingId(self.name)

    @torch.inference_mode()
    def batches(self, images: torch.Tensor, batch_size: int = 1000) -> Iterator[np.ndarray]:
        """Features of ``images`` one batch at a time (``diffusion.metrics.frechet.feature_stats`` streams them)."""
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size].to(self.device, torch.float32)
            yield self.function(chunk).to("cpu", torch.float64).numpy()

    def __call__(self, images: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
        """Features of all ``images`` at once, (N, dim) float64."""
        return np.concatenate(list(self.batches(images, batch_size)))


def pixel_embedder(device: torch.device | str = "cpu") -> Embedder:
    """The flattened image: 784 features."""
    return Embedder("pixels", 28 * 28, lambda x: x.flatten(1), torch.device(device))


def model_embedder(name: str, model: nn.Module, device: torch.device | str = "cpu",
                   weights: EmbeddingId | None = None) -> Embedder:
    """An embedder from a trained model with an ``embed`` method (the VAE or the classifier); ``weights`` names it."""
    model = model.to(device).eval()
    dim = int(model.embed(torch.zeros(1, 1, 28, 28, device=device)).shape[1])  # type: ignore[operator]
    return Embedder(name, dim, model.embed, torch.device(device), weights)  # type: ignore[arg-type]


EMBEDDINGS: dict[str, str | Callable[[torch.device | str], Embedder]] = {
    "vae": "vae", "classifier": "classifier", "pixels": pixel_embedder}
"""Embedding name -> the model kind it reads from the lab store (a learned embedding), or the function that builds a
fixed map on a device. Adding an embedding is one entry here (a learned one also needs its kind:
``diffusion.lab.kinds``, ``diffusion.embeddings.training``)."""
