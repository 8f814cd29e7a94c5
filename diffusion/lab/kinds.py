"""The kinds of model the lab store holds: the run config a card carries and the network it rebuilds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from diffusion.core.config import ClassifierRun, RunConfig, VAERun
from diffusion.core.models import build_denoiser
from diffusion.core.models.classifier import DigitClassifier
from diffusion.core.models.vae import ConvVAE


@dataclass(frozen=True)
class StoredKind:
    """A card's ``kind``: the run-config class stored in the card, and the network it rebuilds."""

    config_type: type
    build: Callable[[Any], nn.Module]


STORED_KINDS: dict[str, StoredKind] = {
    "denoiser": StoredKind(RunConfig, lambda run: build_denoiser(run.model)),
    "vae": StoredKind(VAERun, lambda run: ConvVAE(run.model)),
    "classifier": StoredKind(ClassifierRun, lambda run: DigitClassifier(run.model)),
}
"""Every kind of model a card may name (what a sweep trains of each: ``jobs.kinds``)."""


def kind_of(run: object) -> str:
    """The kind whose config type ``run`` is."""
    for name, kind in STORED_KINDS.items():
        if isinstance(run, kind.config_type):
            return name
    raise TypeError(f"{type(run).__name__} is not the config of any model kind ({', '.join(STORED_KINDS)})")
