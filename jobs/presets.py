"""Sweep presets: YAML files a user copies and edits, checked fully before any trial starts.

Each section is a frozen dataclass that checks itself when it is made; ``load_preset`` names the
file and the key path of whatever it refuses.

A model's section overrides its config (``model``, ``diffusion``, ``train``); a value is a
constant or a search space with one key: ``choice: [..]``, ``grid: [..]``, ``uniform: [lo, hi]``,
``loguniform: [lo, hi]`` or ``randint: [lo, hi]`` (hi exclusive).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from ray import tune

from diffusion.core.config import (
    ConfigError,
    DataConfig,
    TrainConfig,
    at_least,
    from_dict,
    unknown,
)
from diffusion.core.models import DENOISERS
from diffusion.core.samplers import SamplerSetting
from diffusion.embeddings import EMBEDDINGS
from diffusion.metrics.corruptions import CORRUPTIONS
from diffusion.metrics.robustness import DEFAULT_SEVERITIES
from jobs.kinds import EMBEDDING_KINDS, MODEL_KINDS, POINT_KIND, POINT_NAME, group_kind
from jobs.searchers import check_search

PRESET_DIR = Path(__file__).resolve().parent / "presets"
ExportRule = Literal["best", "last"]
SECTIONS = MODEL_KINDS["denoiser"].sections
"""What a model's section of a preset may set (the recipe: all but ``model``)."""
SPACES = {
    "choice": tune.choice,
    "grid": tune.grid_search,
    "uniform": lambda bounds: tune.uniform(*bounds),
    "loguniform": lambda bounds: tune.loguniform(*bounds),
    "randint": lambda bounds: tune.randint(*bounds),
}


def _only(mapping: Any, accepted: set[str], where: str, field: str | None = None) -> None:
    """``mapping`` is a dict of ``accepted`` keys only (``field``: the config field it is, when a config checks it)."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: expected a mapping, got {mapping!r}", field)
    extra = sorted(set(mapping) - accepted)
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {extra}; accepted: {sorted(accepted)}", field)


def _resources(resources: dict[str, float], where: str = "resources") -> None:
    """A task's Ray resources: ``cpu`` and ``gpu`` shares, each a number >= 0 (``where``: the key they were read at)."""
    _only(resources, {"cpu", "gpu"}, where, field=where)
    for key, value in resources.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{where}.{key}: expected a number >= 0, got {value!r}", where)


@dataclass(frozen=True)
class TuneSettings:
    """How one Tune experiment runs: trials, concurrency, resources, ASHA, retries and the search algorithm.

    The ``embeddings`` section of a preset holds these keys (next to ``vae:`` and ``classifier:``);
    the ``sweep`` section holds them and the denoisers' FD settings (``SweepSettings``). Trials
    report every ``report_every_images`` training images; ASHA stops none before ``grace_images``.
    """

    num_samples: int = 1
    max_concurrent: int = 2
    resources: dict[str, float] = dataclasses.field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    report_every_images: int = 3200
    grace_images: int = 25600
    reduction_factor: int = 2
    max_failures: int = 2
    search: str = "random"
    """``random`` (independent draws, every grid walked) or a searcher Ray ships: optuna, hyperopt, ... (``jobs.searchers``)."""
    export: ExportRule = "best"
    """Which weights each group exports: ``best``, those of the best report of its best trial (a search: the
    checkpoint its scores chose); ``last``, those of the last report, trial chosen by its last score (one budget:
    every model compared at the images it was given)."""

    def __post_init__(self) -> None:
        at_least(self, 1, "num_samples", "max_concurrent", "report_every_images", "grace_images")
        at_least(self, 2, "reduction_factor")
        at_least(self, 0, "max_failures")
        _resources(self.resources)
        check_search(self.search)
        if self.export not in typing.get_args(ExportRule):
            raise ConfigError(f"export {self.export!r} is not one of {list(typing.get_args(ExportRule))}", "export")


@dataclass(frozen=True)
class SweepSettings(TuneSettings):
    """How the denoisers' sweep runs (the ``sweep`` section): ``TuneSettings`` plus its FD reports."""

    eval_every_images: int = 25600
    fd_samples: int = 300
    fd_sampler_steps: int = 20
    keep_models: int | None = None
    """The budget-matched rung: with a number, every trial of every model pauses at ``grace_images`` until all have
    got there, then only the ``keep_models`` models with the lowest FD there go on (each with its best
    1/reduction_factor of trials); None: no rung across models, each model's ASHA only."""

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least(self, 1, "eval_every_images", "fd_sampler_steps", "keep_models")
        at_least(self, 2, "fd_samples")


@dataclass(frozen=True)
class RobustnessSettings:
    """The corruption-robustness curves of the evaluation embeddings (real images only)."""

    n: int = 1000
    seeds: int = 3
    severities: tuple[float, ...] = DEFAULT_SEVERITIES
    corruptions: tuple[str, ...] = tuple(CORRUPTIONS)

    def __post_init__(self) -> None:
        at_least(self, 2, "n", "seeds")
        for corruption in self.corruptions:
            if corruption not in CORRUPTIONS:
                raise ConfigError(f"corruptions: {unknown('corruption', corruption, CORRUPTIONS)}", "corruptions")
        if 0.0 not in self.severities or any(not 0.0 <= s <= 1.0 for s in self.severities):
            raise ConfigError(f"severities must lie in [0, 1] and include 0 (the floor), got {list(self.severities)}",
                              "severities")


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

    def __post_init__(self) -> None:
        at_least(self, 2, "num_images", "floor_draws")
        if not self.samplers:
            raise ConfigError("samplers: give at least one sampler setting", "samplers")
        for embedding in self.embeddings:
            if embedding not in EMBEDDINGS:
                raise ConfigError(f"embeddings: {unknown('embedding', embedding, EMBEDDINGS)}", "embeddings")
        if "vae" not in self.embeddings:
            raise ConfigError(f"embeddings must include 'vae' (the leaderboard's metric), got {list(self.embeddings)}",
                              "embeddings")
        _resources(self.resources)


@dataclass(frozen=True)
class Preset:
    """A parsed, checked preset."""

    name: str
    dataset: str
    embeddings: dict[str, dict[str, dict[str, Any]]]
    """Embedding kind (vae, classifier) -> overrides of its ``model`` and ``train`` sections, as ``models`` has."""
    sweep: SweepSettings
    models: dict[str, dict[str, dict[str, Any]]]
    evaluate: EvaluateSettings = EvaluateSettings()
    embedding_sweep: TuneSettings = TuneSettings()
    """How the embeddings' Tune experiment runs (the other keys of the ``embeddings`` section)."""


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
    where = f"preset {path.name}"
    _only(raw, {"dataset", "embeddings", "sweep", "recipe", "models", "evaluate"}, where)
    try:
        dataset = DataConfig(dataset=raw.get("dataset", "mnist-embedded")).dataset
    except ConfigError as error:
        raise error.within(where) from error
    embeddings, embedding_sweep = _embeddings_section(raw.get("embeddings", {}) or {}, dataset, f"{where}: embeddings")
    sweep = from_dict(SweepSettings, raw.get("sweep", {}) or {}, f"{where}: sweep")
    evaluate = from_dict(EvaluateSettings, raw.get("evaluate", {}) or {}, f"{where}: evaluate")
    models = raw.get("models", {}) or {}
    _only(models, set(DENOISERS), f"{where}: models")
    models = with_recipe(raw.get("recipe", {}) or {}, models, where)
    for model, sections in models.items():
        _only(sections or {}, set(SECTIONS), f"{where}: models.{model}")
        for point in _check_points(sections or {}):  # every choice, and each range's low end, must build a run
            try:
                run_config(model, point, dataset, pick=first_point)
            except ConfigError as error:
                raise error.within(where) from error
    return Preset(path.stem, dataset, embeddings, sweep, {m: s or {} for m, s in models.items()}, evaluate,
                  embedding_sweep)


def with_recipe(recipe: Any, models: dict[str, Any], where: str) -> dict[str, Any]:
    """Every model's sections with the preset's shared ``recipe`` (``diffusion`` and ``train`` keys) beneath them:
    one recipe for all, so that only the network differs; a key a model sets itself wins."""
    _only(recipe, set(SECTIONS) - {"model"}, f"{where}: recipe")
    merged = {}
    for model, sections in models.items():
        sections = sections or {}
        _only(sections, set(SECTIONS), f"{where}: models.{model}")
        merged[model] = {**sections, **{s: {**(values or {}), **(sections.get(s) or {})} for s, values in recipe.items()}}
    return merged


def _embeddings_section(raw: Any, dataset: str, where: str) -> tuple[dict[str, dict[str, dict[str, Any]]], TuneSettings]:
    """The ``embeddings`` section: per kind its ``model``/``train`` overrides (search spaces allowed, each point
    checked), and the remaining keys as the embedding experiment's ``TuneSettings``."""
    settings_keys = {f.name for f in dataclasses.fields(TuneSettings)}
    _only(raw, settings_keys | set(EMBEDDING_KINDS), where)
    kinds = {kind: raw[kind] or {} for kind in EMBEDDING_KINDS if kind in raw}
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    for kind, sections in kinds.items():
        if isinstance(sections, dict) and sections and set(sections) <= train_keys:
            raise ConfigError(f"{where}.{kind}: training settings go under 'train:' (and the network's under 'model:'), "
                              "e.g. " + kind + ": {train: {" + ", ".join(f"{k}: {v}" for k, v in sections.items()) + "}}")
        _only(sections, set(MODEL_KINDS[kind].sections), f"{where}.{kind}")
        for point in _check_points(sections):
            try:
                run_config(kind, point, dataset, pick=first_point)
            except ConfigError as error:
                raise error.within(where) from error
    settings = from_dict(TuneSettings, {k: v for k, v in raw.items() if k in settings_keys}, where)
    return kinds, settings


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


def group_where(group: str) -> str:
    """Where a group's sections are in a preset: ``models.<model>`` or ``embeddings.<kind>``."""
    return f"models.{group}" if group in DENOISERS else f"embeddings.{group}"


def run_config(group: str, sections: dict[str, dict[str, Any]], dataset: str, pick: Any = None) -> Any:
    """The run config of one point of a preset's group (``jobs.kinds``): ``pick(value, where)`` picks each value
    (default: as given). A refused value is named by its key path, ``models.<model>.<section>.<key>``."""
    return group_kind(group).run_config(group, sections, dataset, pick, where=group_where(group))


def point_space(preset: Preset, group: str) -> dict[str, Any]:
    """The Tune space of one group's point (a model or an embedding kind): its name and kind, and each of its
    sections with search spaces turned into Tune's."""
    kind = group_kind(group)
    given = preset.models[group] if group in DENOISERS else preset.embeddings.get(group, {})
    where = group_where(group)
    return {POINT_NAME: group, POINT_KIND: kind.name,
            **{s: {k: tune_space(v, f"{where}.{s}.{k}") for k, v in (given.get(s) or {}).items()} for s in kind.sections}}
