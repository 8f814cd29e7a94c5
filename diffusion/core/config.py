"""Frozen configuration dataclasses, each key defined once, and their (de)serialisation.

Every config travels as plain JSON next to the weights and in result rows; ``from_dict``
rebuilds it and rejects unknown keys or wrong types with a message naming what is accepted.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key that is not accepted; the message says what is."""


@dataclass(frozen=True)
class DenoiserConfig:
    """Architecture of one denoiser; ``arch`` is a key of ``diffusion.core.models.DENOISERS``.

    ``width`` is hidden units (mlp) or base channels (the convolutional nets); ``depth`` is
    layers (mlp, cnn) or blocks per resolution (the U-Nets).
    """

    arch: str
    width: int
    depth: int
    channel_mults: tuple[int, ...] = (1, 2, 2)
    attention_resolutions: tuple[int, ...] = ()
    num_heads: int = 4
    dropout: float = 0.0
    image_channels: int = 1
    image_size: int = 28


@dataclass(frozen=True)
class DiffusionConfig:
    """Noise schedule and what the network predicts (``eps``, ``x0`` or ``v``)."""

    schedule: str = "linear"
    timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    cosine_offset: float = 0.008
    prediction: str = "eps"
    loss_weighting: str = "uniform"
    min_snr_gamma: float = 5.0


@dataclass(frozen=True)
class TrainConfig:
    """The training loop: AdamW with linear warm-up (then constant or cosine decay), EMA."""

    steps: int = 6000
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 200
    lr_decay: str = "cosine"
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    precision: str = "auto"
    seed: int = 0
    compile: str = "auto"  # the network's passes: auto (cuda_graphs on CUDA, off on the CPU), cuda_graphs, torch_compile, off


@dataclass(frozen=True)
class DataConfig:
    """Which data set trains the model; ``data_root`` and ``download`` matter for full MNIST only."""

    dataset: str = "mnist-embedded"
    data_root: str = "~/.cache/diffusion-lab/mnist"
    download: bool = False


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one denoiser training run; saved inside its checkpoint."""

    model: DenoiserConfig
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)


@dataclass(frozen=True)
class VAEConfig:
    """The evaluation VAE: conv encoder 28 -> 14 -> 7, a ``latent_dim`` Gaussian latent, beta-ELBO."""

    latent_dim: int = 16
    width: int = 32
    hidden: int = 256
    beta: float = 1.0


@dataclass(frozen=True)
class ClassifierConfig:
    """The digit classifier whose penultimate layer (``feature_dim`` units) is an embedding."""

    width: int = 32
    feature_dim: int = 128
    dropout: float = 0.3


def _vae_train() -> TrainConfig:
    # fp32: this small net's transposed convolutions run slower under CPU bf16 autocast (measured)
    return TrainConfig(steps=1500, batch_size=128, lr=2e-3, warmup_steps=50, ema_decay=0.995, precision="fp32")


def _classifier_train() -> TrainConfig:
    return TrainConfig(steps=600, batch_size=128, lr=2e-3, warmup_steps=50, ema_decay=0.99, precision="fp32")


@dataclass(frozen=True)
class VAERun:
    """Everything that defines the VAE's training; saved inside its card."""

    model: VAEConfig = field(default_factory=VAEConfig)
    train: TrainConfig = field(default_factory=_vae_train)
    data: DataConfig = field(default_factory=DataConfig)


@dataclass(frozen=True)
class ClassifierRun:
    """Everything that defines the classifier's training; saved inside its card."""

    model: ClassifierConfig = field(default_factory=ClassifierConfig)
    train: TrainConfig = field(default_factory=_classifier_train)
    data: DataConfig = field(default_factory=DataConfig)


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Rebuild ``cls`` from ``data``; unknown keys, missing keys and wrong types raise ConfigError."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; accepted: {sorted(fields)}")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: missing required key {name!r}")
            continue
        values[name] = _coerce(hints[name], data[name], f"{where}.{name}")
    return cls(**values)


def replace(config: T, **changes: Any) -> T:
    """``dataclasses.replace`` with the same checks as ``from_dict`` (dotted keys reach nested configs)."""
    nested: dict[str, dict[str, Any]] = {}
    flat: dict[str, Any] = {}
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            flat[key] = value
    data = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    for head, sub in nested.items():
        if head not in data or not dataclasses.is_dataclass(data[head]):
            raise ConfigError(f"{type(config).__name__}: no nested config {head!r}")
        data[head] = replace(data[head], **sub)
    unknown = sorted(set(flat) - set(data))
    if unknown:
        raise ConfigError(f"{type(config).__name__}: unknown key(s) {unknown}; accepted: {sorted(data)}")
    data.update(flat)
    plain = {k: to_dict(v) if dataclasses.is_dataclass(v) else v for k, v in data.items()}
    return from_dict(type(config), plain)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if dataclasses.is_dataclass(value):
            return value
        return from_dict(hint, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_hint, _ellipsis) = typing.get_args(hint)
        return tuple(_coerce(item_hint, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            if option is type(None) and value is None:
                return None
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _coerce(options[0], value, where)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value
