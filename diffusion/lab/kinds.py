"""The kinds of model the lab store holds: how each card's config is parsed and its network built."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from diffusion.core.config import ClassifierRun, RunConfig, VAERun
from diffusion.core.models import build_denoiser
from diffusion.embeddings.classifier import DigitClassifier
from diffusion.embeddings.vae import ConvVAE


@dataclass(frozen=True)
class ModelKind:
    """A card's ``kind``: the run-config class stored in the card, and the network it rebuilds."""

    config_type: type
    build: Callable[[Any], nn.Module]


MODEL_KINDS: dict[str, ModelKind] = {
    "denoiser": ModelKind(RunConfig, lambda run: build_denoiser(run.model)),
    "vae": ModelKind(VAERun, lambda run: ConvVAE(run.model)),
    "classifier": ModelKind(ClassifierRun, lambda run: DigitClassifier(run.model)),
}


def kind_of(run: object) -> str:
    """The kind whose config type ``run`` is."""
    for name, kind in MODEL_KINDS.items():
        if isinstance(run, kind.config_type):
            return name
    raise TypeError(f"{type(run).__name__} is not the config of any model kind ({', '.join(MODEL_KINDS)})")
