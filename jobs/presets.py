"""Sweep presets: YAML files a user copies and edits, checked fully before any trial starts.

A model's section overrides its config (``model``, ``diffusion``, ``train``); a value is a
constant or a search space with one key: ``choice: [..]``, ``grid: [..]``, ``uniform: [lo, hi]``,
``loguniform: [lo, hi]`` or ``randint: [lo, hi]`` (hi exclusive).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ray import tune

from diffusion.core.config import ConfigError, DataConfig, DiffusionConfig, RunConfig, TrainConfig, from_dict, to_dict
from diffusion.core.models import DENOISERS, denoiser_config
from diffusion.core.samplers import check_eta, get_sampler
from diffusion.embeddings import check_embedding
from diffusion.lab.datasets import DATASETS
from diffusion.lab.recipe import validate_run_config
from diffusion.metrics.corruptions import CORRUPTIONS, get_corruption
from diffusion.metrics.robustness import DEFAULT_SEVERITIES

PRESET_DIR = Path(__file__).resolve().parent / "presets"
SECTIONS: dict[str, type] = {"model": object, "diffusion": DiffusionConfig, "train": TrainConfig}
SPACES = {
    "choice": tune.choice,
    "grid": tune.grid_search,
    "uniform": lambda bounds: tune.uniform(*bounds),
    "loguniform": lambda bounds: tune.loguniform(*bounds),
    "randint": lambda bounds: tune.randint(*bounds),
}


@dataclass(frozen=True)
class SweepSettings:
    """How a sweep runs (the ``sweep`` section of a preset)."""

    num_samples: int = 1
    max_concurrent: int = 2
    resources: dict[str, float] = dataclasses.field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    eval_every_images: int = 25600
    fd_samples: int = 300
    fd_sampler_steps: int = 20
    report_every_images: int = 3200
    grace_images: int = 25600
    reduction_factor: int = 2
    max_failures: int = 2


@dataclass(frozen=True)
class SamplerSetting:
    """One way of sampling a model for evaluation; ``steps: null`` means the sampler's default (all T for DDPM)."""

    sampler: str = "ddim"
    steps: int | None = None
    eta: float = 0.0
    num_images: int | None = None  # null: the evaluate section's num_images


@dataclass(frozen=True)
class RobustnessSettings:
    """The corruption-robustness curves of the evaluation embeddings (real images only)."""

    n: int = 1000
    seeds: int = 3
    severities: tuple[float, ...] = DEFAULT_SEVERITIES
    corruptions: tuple[str, ...] = tuple(CORRUPTIONS)


@dataclass(frozen=True)
class EvaluateSettings:
    """How every exported model is evaluated (the ``evaluate`` section of a preset)."""

    num_images: int = 1000
    samplers: tuple[SamplerSetting, ...] = (SamplerSetting("ddim", 20), SamplerSetting("ddim", 50))
    embeddings: tuple[str, ...] = ("vae", "classifier", "pixels")
    pictures: SamplerSetting = SamplerSetting("ddim", 50)
    robustness: RobustnessSettings | None = RobustnessSettings()
    floor_draws: int = 5
    resources: dict[str, float] = dataclasses.field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    seed: int = 0


@dataclass(frozen=True)
class Preset:
    """A parsed, checked preset."""

    name: str
    dataset: str
    embeddings: dict[str, dict[str, Any]]
    sweep: SweepSettings
    models: dict[str, dict[str, dict[str, Any]]]
    evaluate: EvaluateSettings = EvaluateSettings()
    embedding_resources: dict[str, float] = dataclasses.field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    """Per embedding-training task (``embeddings.resources``): a GPU share puts the VAE on a GPU node."""


def preset_path(name_or_path: str) -> Path:
    """A bundled preset by name (smoke, quick, full) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise ConfigError(f"preset file {path} does not exist")
        return path
    bundled = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
    if name_or_path not in bundled:
        raise ConfigError(f"unknown preset {name_or_path!r}; accepted: {', '.join(bundled)} or a path to a .yaml file")
    return PRESET_DIR / f"{name_or_path}.yaml"


def load_preset(name_or_path: str) -> Preset:
    """Read and check a preset: every key, every model, every search space."""
    path = preset_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"preset {path}: not valid YAML ({error})") from error
    _only(raw, {"dataset", "embeddings", "sweep", "models", "evaluate"}, f"preset {path.name}")
    dataset = raw.get("dataset", "mnist-embedded")
    if dataset not in DATASETS:
        raise ConfigError(f"preset {path.name}: unknown dataset {dataset!r}; accepted: {', '.join(DATASETS)}")
    embeddings = dict(raw.get("embeddings", {}) or {})
    _only(embeddings, {"vae", "classifier", "resources"}, f"preset {path.name}: embeddings")
    embedding_resources = embeddings.pop("resources", None) or {"cpu": 1, "gpu": 0}
    _resources(embedding_resources, f"preset {path.name}: embeddings")
    for kind, overrides in embeddings.items():
        _only(overrides or {}, {f.name for f in dataclasses.fields(TrainConfig)}, f"preset {path.name}: embeddings.{kind}")
    sweep = check_sweep_settings(from_dict(SweepSettings, raw.get("sweep", {}) or {}, f"preset {path.name}: sweep"),
                                 f"preset {path.name}: sweep")
    evaluate = check_evaluate_settings(from_dict(EvaluateSettings, raw.get("evaluate", {}) or {},
                                                 f"preset {path.name}: evaluate"), f"preset {path.name}: evaluate")
    models = raw.get("models", {}) or {}
    _only(models, set(DENOISERS), f"preset {path.name}: models")
    for model, sections in models.items():
        _only(sections or {}, set(SECTIONS), f"preset {path.name}: models.{model}")
        for point in _check_points(sections or {}):  # every choice, and each range's low end, must build a run
            run_config(model, point, dataset, sample=first_point)
    return Preset(path.stem, dataset, embeddings, sweep, {m: s or {} for m, s in models.items()}, evaluate,
                  embedding_resources)


def _positive(value: float | None, where: str, minimum: float = 1) -> None:
    if value is not None and value < minimum:
        raise ConfigError(f"{where} must be at least {minimum}, got {value}")


def _resources(resources: dict[str, float], where: str) -> None:
    _only(resources, {"cpu", "gpu"}, f"{where}.resources")
    for key, value in resources.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{where}.resources.{key}: expected a number >= 0, got {value!r}")


def check_sweep_settings(settings: SweepSettings, where: str) -> SweepSettings:
    """Counts and intervals positive, resources known."""
    for key in ("num_samples", "max_concurrent", "eval_every_images", "fd_samples", "fd_sampler_steps",
                "report_every_images", "grace_images"):
        _positive(getattr(settings, key), f"{where}.{key}", 2 if key == "fd_samples" else 1)
    _positive(settings.reduction_factor, f"{where}.reduction_factor", 2)
    _positive(settings.max_failures, f"{where}.max_failures", 0)
    _resources(settings.resources, where)
    return settings


def check_evaluate_settings(settings: EvaluateSettings, where: str) -> EvaluateSettings:
    """Samplers, embeddings, corruptions and severities that exist; sizes an FD can use."""
    _positive(settings.num_images, f"{where}.num_images", 2)
    _positive(settings.floor_draws, f"{where}.floor_draws", 2)
    if not settings.samplers:
        raise ConfigError(f"{where}.samplers: give at least one sampler setting")
    for i, setting in enumerate((*settings.samplers, settings.pictures)):
        at = f"{where}.samplers[{i}]" if i < len(settings.samplers) else f"{where}.pictures"
        try:
            get_sampler(setting.sampler)
        except ConfigError as error:
            raise ConfigError(f"{at}: {error}") from error
        _positive(setting.steps, f"{at}.steps")
        _positive(setting.num_images, f"{at}.num_images", 2)
        if not 0.0 <= setting.eta <= 1.0:
            raise ConfigError(f"{at}.eta must be between 0 and 1, got {setting.eta}")
        try:
            check_eta(setting.sampler, setting.eta)
        except ConfigError as error:
            raise ConfigError(f"{at}.eta: {error}") from error
    for embedding in settings.embeddings:
        try:
            check_embedding(embedding)
        except ConfigError as error:
            raise ConfigError(f"{where}.embeddings: {error}") from error
    if "vae" not in settings.embeddings:
        raise ConfigError(f"{where}.embeddings must include 'vae' (the leaderboard's metric), got {list(settings.embeddings)}")
    if settings.robustness is not None:
        curves = settings.robustness
        _positive(curves.n, f"{where}.robustness.n", 2)
        _positive(curves.seeds, f"{where}.robustness.seeds", 2)
        for corruption in curves.corruptions:
            try:
                get_corruption(corruption)
            except ConfigError as error:
                raise ConfigError(f"{where}.robustness.corruptions: {error}") from error
        if 0.0 not in curves.severities or any(not 0.0 <= s <= 1.0 for s in curves.severities):
            raise ConfigError(f"{where}.robustness.severities must lie in [0, 1] and include 0 (the floor), "
                              f"got {list(curves.severities)}")
    _resources(settings.resources, where)
    return settings


def _only(mapping: Any, accepted: set[str], where: str) -> None:
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: expected a mapping, got {mapping!r}")
    unknown = sorted(set(mapping) - accepted)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; accepted: {sorted(accepted)}")


def _space_kind(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in SPACES:
        return next(iter(value))
    return None


def first_point(value: Any, where: str) -> Any:
    """A representative point of a space (to validate it), or the constant itself."""
    kind = _space_kind(value)
    if kind is None:
        if isinstance(value, dict):
            raise ConfigError(f"{where}: a search space has exactly one of {sorted(SPACES)}, got {value!r}")
        return value
    args = value[kind]
    if kind in ("choice", "grid"):
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{where}: {kind} needs a non-empty list, got {args!r}")
        return args[0]
    if not (isinstance(args, list) and len(args) == 2 and all(isinstance(a, (int, float)) for a in args)):
        raise ConfigError(f"{where}: {kind} needs [low, high], got {args!r}")
    low, high = args
    if not low < high or (kind == "loguniform" and low <= 0):
        raise ConfigError(f"{where}: {kind} [{low}, {high}] cannot be sampled (need {'0 < ' if kind == 'loguniform' else ''}low < high)")
    return low


def _check_points(sections: dict[str, dict[str, Any]]) -> list[dict[str, dict[str, Any]]]:
    """The sections once as given, plus once per alternative of every choice or grid."""
    points = [sections]
    for section, values in sections.items():
        for key, value in (values or {}).items():
            kind = _space_kind(value)
            if kind in ("choice", "grid") and isinstance(value[kind], list):
                for option in value[kind][1:]:
                    points.append({**sections, section: {**values, key: option}})
    return points


def tune_space(value: Any, where: str) -> Any:
    """The Tune search space for a preset value (constants stay constants)."""
    first_point(value, where)
    kind = _space_kind(value)
    return value if kind is None else SPACES[kind](value[kind])


def run_config(model: str, sections: dict[str, dict[str, Any]], dataset: str, sample: Any = None) -> RunConfig:
    """The RunConfig of one point: ``sample(value, where)`` picks each value (default: as given)."""
    pick = sample or (lambda value, where: value)
    chosen = {s: {k: pick(v, f"models.{model}.{s}.{k}") for k, v in (sections.get(s) or {}).items()} for s in SECTIONS}
    run = from_dict(RunConfig, {
        "model": to_dict(denoiser_config(model, **chosen["model"])),
        "diffusion": chosen["diffusion"],
        "train": chosen["train"],
        "data": to_dict(DataConfig(dataset=dataset)),
    })
    return validate_run_config(run)


def param_space(preset: Preset, model: str) -> dict[str, Any]:
    """The Tune param_space of one model: its config sections with spaces turned into Tune's."""
    sections = preset.models[model]
    return {"arch": model, **{s: {k: tune_space(v, f"models.{model}.{s}.{k}") for k, v in (sections.get(s) or {}).items()}
                               for s in SECTIONS}}
