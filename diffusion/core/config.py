"""Frozen configuration dataclasses, each key defined once, valid from the moment they are made.

Every config checks itself in ``__post_init__``: a bad value raises ConfigError naming the field,
the value and what is accepted. Closed choices are ``Literal`` types; the registry dict that
dispatches each one (``SCHEDULES``, ``DENOISERS``, ``SAMPLERS``, ``DATASETS``) is built with
``registry``, which refuses keys other than the Literal's. Every config travels as plain JSON
next to the weights and in result rows; ``from_dict`` rebuilds it and rejects unknown keys or
wrong types, and prefixes a refused value with where it was read.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn, TypeVar

T = TypeVar("T")
V = TypeVar("V")

Arch = Literal["mlp", "cnn", "unet", "resunet", "attnunet"]
"""Denoiser architectures, in order of rising capacity (``diffusion.core.models.DENOISERS``)."""
ScheduleName = Literal["linear", "cosine"]
"""Noise schedules (``diffusion.core.schedules.SCHEDULES``)."""
SamplerName = Literal["ddpm", "ddim", "dpmpp2m", "dpmpp2m_sde"]
"""Samplers (``diffusion.core.samplers.SAMPLERS``)."""
DatasetName = Literal["mnist-embedded", "mnist"]
"""Training data sets (``diffusion.lab.datasets.DATASETS``)."""
Prediction = Literal["eps", "x0", "v", "edm"]
"""What the network outputs: the noise, x_0, v (Salimans and Ho 2022), or EDM's preconditioned F (Karras et al. 2022)."""
LossWeighting = Literal["uniform", "min_snr"]
NoiseLevels = Literal["uniform", "lognormal"]
"""How training draws each image's noise level: t uniform over 0..T-1 (Ho et al. 2020), or EDM's log-normal sigma
(Karras et al. 2022, Table 1: ln sigma ~ N(-1.2, 1.2^2)) rounded to the nearest level of the schedule."""
LrDecay = Literal["constant", "cosine"]
Precision = Literal["auto", "fp32", "bf16"]
CompileMode = Literal["auto", "cuda_graphs", "torch_compile", "off"]
"""How the network's forward and backward run: ``cuda_graphs`` captures them once and replays them
(no compile time; CUDA only), ``torch_compile`` compiles them (tens of seconds first), ``off`` is
eager. ``auto``: ``cuda_graphs`` on CUDA, where eager training of these small nets is
launch-bound; ``off`` on the CPU, where compiling costs about 70 s for 19%."""

PREDICTIONS: tuple[Prediction, ...] = typing.get_args(Prediction)
LOSS_WEIGHTINGS: tuple[LossWeighting, ...] = typing.get_args(LossWeighting)
LR_DECAYS: tuple[LrDecay, ...] = typing.get_args(LrDecay)
PRECISIONS: tuple[Precision, ...] = typing.get_args(Precision)
COMPILE_MODES: tuple[CompileMode, ...] = typing.get_args(CompileMode)


class ConfigError(ValueError):
    """A configuration value or key that is not accepted; the message says what is.

    ``field`` is set when the message starts with the field's name (``lr must be positive, got
    -1.0``), so that ``within`` can put the path it was read from in front: ``train.lr must ...``.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def within(self, where: str) -> ConfigError:
        """This error as seen from ``where`` (a config, a file's section): ``where.field ...`` or ``where: ...``."""
        return ConfigError(f"{where}{'.' if self.field else ': '}{self}")


def unknown(what: str, value: Any, accepted: typing.Iterable[str]) -> ConfigError:
    """The error for a name that no registry holds: ``unknown sampler 'euler'; accepted: ddpm, ddim, dpmpp2m, dpmpp2m_sde``."""
    return ConfigError(f"unknown {what} {value!r}; accepted: {', '.join(accepted)}")


def lookup(entries: Mapping[str, V], name: str, what: str) -> V:
    """``entries[name]``, or a ConfigError listing the registry's names."""
    if name not in entries:
        raise unknown(what, name, entries)
    return entries[name]


def registry(choice: Any, entries: dict[str, V]) -> dict[str, V]:
    """``entries``, a registry whose keys are exactly the values of the Literal type ``choice``, in its order.

    The Literal is what a config accepts; this makes a registry that drifts from it fail at import.
    """
    if tuple(entries) != typing.get_args(choice):
        raise TypeError(f"registry keys {list(entries)} differ from the accepted names {list(typing.get_args(choice))}")
    return entries


def field_error(name: str, problem: str) -> NoReturn:
    """Raise a ConfigError about field ``name``: ``<name> <problem>``."""
    raise ConfigError(f"{name} {problem}", name)


def at_least(config: Any, minimum: float, *names: str) -> None:
    """Each field is at least ``minimum`` (or None); an integer minimum of 1 reads 'a positive integer'."""
    for name in names:
        value = getattr(config, name)
        if value is not None and value < minimum:
            field_error(name, f"must be {'a positive integer' if minimum == 1 else f'at least {minimum}'}, got {value}")


def _positive(config: Any, *names: str) -> None:
    for name in names:
        if not getattr(config, name) > 0:
            field_error(name, f"must be positive, got {getattr(config, name)}")


def between(config: Any, name: str, low: float, high: float, high_open: bool = False) -> None:
    """The field lies in [low, high] (or [low, high) when ``high_open``)."""
    value = getattr(config, name)
    if not (low <= value < high if high_open else low <= value <= high):
        field_error(name, f"must be in [{low}, {high}), got {value}" if high_open else f"must be between {low} and {high}, got {value}")


def _one_of(config: Any, name: str, choice: Any, shown: typing.Sequence[str] | None = None) -> None:
    """The field is a value of the Literal ``choice`` (``shown``: the order the message lists them in)."""
    value = getattr(config, name)
    if value not in typing.get_args(choice):
        field_error(name, f"{value!r} is not one of {list(shown or typing.get_args(choice))}")


def _known(config: Any, name: str, choice: Any, what: str) -> None:
    """The field names an entry of a registry keyed by the Literal ``choice``: ``unknown <what> ...`` if not."""
    value = getattr(config, name)
    if value not in typing.get_args(choice):
        raise unknown(what, value, typing.get_args(choice))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _parts(config: Any) -> None:
    """Each nested config is an instance of its declared class (a mapping goes through ``from_dict``)."""
    for name, hint in _hints(type(config)).items():
        value = getattr(config, name)
        if dataclasses.is_dataclass(hint) and not isinstance(value, hint):
            field_error(name, f"must be a {hint.__name__}, got {type(value).__name__}")


@dataclass(frozen=True)
class DenoiserConfig:
    """Architecture of one denoiser; ``arch`` is a key of ``diffusion.core.models.DENOISERS``.

    ``width`` is hidden units (mlp) or base channels (the convolutional nets); ``depth`` is
    layers (mlp, cnn) or blocks per resolution (the U-Nets).
    """

    arch: Arch
    width: int
    depth: int
    channel_mults: tuple[int, ...] = (1, 2, 2)
    attention_resolutions: tuple[int, ...] = ()
    num_heads: int = 4
    dropout: float = 0.0
    image_channels: int = 1
    image_size: int = 28

    def __post_init__(self) -> None:
        _known(self, "arch", Arch, "model")
        at_least(self, 1, "width", "depth", "num_heads", "image_channels", "image_size")
        between(self, "dropout", 0, 1, high_open=True)
        if not self.channel_mults or min(self.channel_mults) < 1:
            field_error("channel_mults", f"must be positive integers, got {list(self.channel_mults)}")


@dataclass(frozen=True)
class DiffusionConfig:
    """Noise schedule and what the network predicts (``eps``, ``x0`` or ``v``)."""

    schedule: ScheduleName = "linear"
    timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    cosine_offset: float = 0.008
    prediction: Prediction = "eps"
    loss_weighting: LossWeighting = "uniform"
    min_snr_gamma: float = 5.0
    noise_levels: NoiseLevels = "uniform"

    def __post_init__(self) -> None:
        _one_of(self, "schedule", ScheduleName, sorted(typing.get_args(ScheduleName)))
        at_least(self, 2, "timesteps")
        for name in ("beta_start", "beta_end"):
            if not 0 < getattr(self, name) < 1:
                field_error(name, f"must be in (0, 1), got {getattr(self, name)}")
        _positive(self, "min_snr_gamma")
        at_least(self, 0, "cosine_offset")
        _one_of(self, "prediction", Prediction)
        _one_of(self, "loss_weighting", LossWeighting)
        _one_of(self, "noise_levels", NoiseLevels)


@dataclass(frozen=True)
class TrainConfig:
    """The training loop: AdamW with linear warm-up (then constant or cosine decay), EMA."""

    steps: int = 6000
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 200
    lr_decay: LrDecay = "cosine"
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # 0 turns clipping off
    ema_decay: float = 0.999
    precision: Precision = "auto"
    seed: int = 0
    compile: CompileMode = "auto"  # the network's passes: see CompileMode

    def __post_init__(self) -> None:
        at_least(self, 1, "steps", "batch_size")
        _positive(self, "lr")
        at_least(self, 0, "warmup_steps", "weight_decay", "grad_clip")
        _one_of(self, "lr_decay", LrDecay)
        between(self, "min_lr_ratio", 0, 1)
        between(self, "ema_decay", 0, 1, high_open=True)
        _one_of(self, "precision", Precision)
        _one_of(self, "compile", CompileMode)


@dataclass(frozen=True)
class DataConfig:
    """Which data set trains the model; ``data_root`` and ``download`` matter for full MNIST only."""

    dataset: DatasetName = "mnist-embedded"
    data_root: str = "~/.cache/diffusion-lab/mnist"
    download: bool = False

    def __post_init__(self) -> None:
        _known(self, "dataset", DatasetName, "dataset")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one denoiser training run; saved inside its checkpoint."""

    model: DenoiserConfig
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        _parts(self)


@dataclass(frozen=True)
class VAEConfig:
    """The evaluation VAE: conv encoder 28 -> 14 -> 7, a ``latent_dim`` Gaussian latent, beta-ELBO."""

    latent_dim: int = 16
    width: int = 32
    hidden: int = 256
    beta: float = 1.0

    def __post_init__(self) -> None:
        at_least(self, 1, "latent_dim", "width", "hidden")
        at_least(self, 0, "beta")


@dataclass(frozen=True)
class ClassifierConfig:
    """The digit classifier whose penultimate layer (``feature_dim`` units) is an embedding."""

    width: int = 32
    feature_dim: int = 128
    dropout: float = 0.3

    def __post_init__(self) -> None:
        at_least(self, 1, "width", "feature_dim")
        between(self, "dropout", 0, 1, high_open=True)


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

    def __post_init__(self) -> None:
        _parts(self)


@dataclass(frozen=True)
class ClassifierRun:
    """Everything that defines the classifier's training; saved inside its card."""

    model: ClassifierConfig = field(default_factory=ClassifierConfig)
    train: TrainConfig = field(default_factory=_classifier_train)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        _parts(self)


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Rebuild ``cls`` from ``data``; unknown keys, missing keys and wrong types raise ConfigError."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = _hints(cls)
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
    try:
        return cls(**values)
    except ConfigError as error:
        raise error.within(where) from error


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
