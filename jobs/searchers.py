"""The search algorithm of a Tune experiment, named in a preset: ``random`` or a searcher Ray ships.

``random`` draws every trial's point independently (and walks every ``grid`` value, as Tune's
variant generator does). Any other name is one of Ray's searchers (``ray.tune.search``:
optuna, hyperopt, bayesopt, ...), each an optional install; ``check_search`` refuses an unknown
name, or a known one whose package is missing, with the command that installs it.

An experiment holds several groups (the five denoisers, or the VAE and the classifier), each with
its own search space. A model-based searcher must only learn from its own group's trials, so
``GroupedSearcher`` keeps one searcher per group, as ``jobs.trial_schedulers.GroupedScheduler`` keeps
one ASHA per group: it hands out each group's trials round robin and routes each trial's results
to the searcher that suggested it. A group whose space has no search dimension runs once: more
trials of one fixed point would only repeat it.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import pickle
import random
import tempfile
from collections.abc import Callable
from typing import Any

from ray.tune.search import SEARCH_ALG_IMPORT, Searcher
from ray.tune.search.variant_generator import parse_spec_vars

from diffusion.core.config import ConfigError

RANDOM = "random"
PACKAGES: dict[str, tuple[str, str]] = {
    # searcher -> (module it imports, what to pip install)
    "optuna": ("optuna", "optuna"),
    "hyperopt": ("hyperopt", "hyperopt"),
    "bayesopt": ("bayes_opt", "bayesian-optimization"),
    "bohb": ("hpbandster", "hpbandster ConfigSpace"),
    "nevergrad": ("nevergrad", "nevergrad"),
    "zoopt": ("zoopt", "zoopt"),
    "hebo": ("hebo", "HEBO"),
    "ax": ("ax", "ax-platform"),
}
SEARCHES: tuple[str, ...] = (RANDOM, *sorted(name for name in SEARCH_ALG_IMPORT if name in PACKAGES))
"""Every accepted ``search`` value."""


def check_search(name: str) -> None:
    """ConfigError unless ``name`` is ``random`` or a Ray searcher whose package is installed (saying how to install it)."""
    if name not in SEARCHES:
        raise ConfigError(f"search: unknown search algorithm {name!r}; accepted: {', '.join(SEARCHES)}", "search")
    if name == RANDOM:
        return
    module, package = PACKAGES[name]
    if importlib.util.find_spec(module) is None:
        extra = " (or: pip install 'diffusion-lab[optuna]')" if name == "optuna" else ""
        raise ConfigError(f"search: {name!r} needs the {module!r} package, which is not installed; "
                          f"run: pip install {package}{extra}", "search")


def _nest(pairs: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for path, value in pairs:
        *sections, key = path
        target = nested
        for section in sections:
            target = target.setdefault(section, {})
        target[key] = value
    return nested


def _dimensions(space: dict[str, Any], name: str) -> tuple[dict[str, Any], list[tuple[tuple[str, ...], list[Any]]]]:
    """The search dimensions of a (nested) Tune space without its constants, and its grids (random search only)."""
    _, domains, grids = parse_spec_vars(space)
    if grids and name != RANDOM:
        keys = ", ".join(".".join(map(str, path)) for path, _ in grids)
        raise ConfigError(f"{keys}: 'grid' works with search: random only; a searcher draws its own points "
                          f"(use 'choice' instead)", "search")
    return _nest(domains), [(path, list(grid.categories)) for path, grid in grids]  # a grid parses as a Categorical


def _resolve(space: dict[str, Any], suggestion: dict[str, Any]) -> dict[str, Any]:
    """``space`` with each search dimension replaced by the searcher's value for it (constants kept)."""
    return {key: _resolve(value, suggestion.get(key) or {}) if isinstance(value, dict) and "grid_search" not in value
            else suggestion.get(key, value) for key, value in space.items()}


class RandomSearcher(Searcher):
    """Independent random draws of every domain, once per ``num_samples`` for every combination of the grids."""

    def __init__(self, domains: dict[str, Any], grids: list[tuple[tuple[str, ...], list[Any]]], num_samples: int,
                 seed: int) -> None:
        super().__init__()
        self.domains = domains
        self.grid_points = [_nest(list(zip([path for path, _ in grids], values, strict=True)))
                            for values in itertools.product(*(values for _, values in grids))]
        self.trials = num_samples * len(self.grid_points)
        self.suggested = 0
        self.rng = random.Random(seed)

    def _draw(self, domains: dict[str, Any]) -> dict[str, Any]:
        return {key: self._draw(value) if isinstance(value, dict)
                else value.sample(random_state=self.rng.randrange(2**32)) for key, value in domains.items()}

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """The next draw (grid points in turn), FINISHED after ``trials``."""
        if self.suggested >= self.trials:
            return Searcher.FINISHED
        grid = self.grid_points[self.suggested % len(self.grid_points)]
        self.suggested += 1
        return _merge(self._draw(self.domains), grid)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        """Random draws learn nothing from results."""

    def save(self, checkpoint_path: str) -> None:
        """The draw count and the generator's state (the domains come from the preset again)."""
        with open(checkpoint_path, "wb") as handle:
            pickle.dump({"suggested": self.suggested, "rng": self.rng.getstate()}, handle)

    def restore(self, checkpoint_path: str) -> None:
        """The state ``save`` wrote."""
        with open(checkpoint_path, "rb") as handle:
            state = pickle.load(handle)  # Tune's own experiment state, as Tuner.restore reads it
        self.suggested = state["suggested"]
        self.rng.setstate(state["rng"])


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = _merge(merged.get(key) or {}, value) if isinstance(value, dict) else value
    return merged


class GroupedSearcher(Searcher):
    """One searcher of kind ``name`` per group, each on its own space, ``num_samples`` trials for every group.

    ``wrap(group, point)`` turns a group's resolved point into the trial config Tune merges into
    the experiment's param_space. A group whose space has no search dimension runs one trial,
    with its constant point, and no searcher; ``trials`` is the experiment's total.
    """

    def __init__(self, name: str, spaces: dict[str, dict[str, Any]], num_samples: int, metric: str, mode: str,
                 wrap: Callable[[str, dict[str, Any]], dict[str, Any]], seed: int = 0) -> None:
        super().__init__(metric=metric, mode=mode)
        check_search(name)
        self.spaces = spaces
        self.searchers: dict[str, Searcher | None] = {}
        self.trials_of: dict[str, int] = {}
        for index, (group, space) in enumerate(spaces.items()):
            domains, grids = _dimensions(space, name)
            if not domains and not grids:
                self.searchers[group], self.trials_of[group] = None, 1
            elif name == RANDOM:
                searcher = RandomSearcher(domains, grids, num_samples, seed + index)
                self.searchers[group], self.trials_of[group] = searcher, searcher.trials
            else:
                searcher_type = SEARCH_ALG_IMPORT[name]()
                self.searchers[group] = searcher_type(space=searcher_type.convert_search_space(domains), metric=metric,
                                                      mode=mode)
                self.trials_of[group] = num_samples
        self.wrap = wrap
        self.suggested: dict[str, int] = dict.fromkeys(spaces, 0)
        self.group_of_trial: dict[str, str] = {}

    @property
    def trials(self) -> int:
        """Trials in the whole experiment (Tune's ``num_samples`` with a search algorithm)."""
        return sum(self.trials_of.values())

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any) -> bool:
        """The groups' searchers were built with their spaces, metric and mode; Tune's own space holds only constants."""
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """The point of the group with the most trials still to suggest (ties: the experiment's order); FINISHED when
        every group has its trials.

        Groups with equal counts take turns, so with a concurrency limit every model starts early;
        a searched group goes before a fixed one, so ASHA can stop its weaker trials while the
        fixed one runs (the VAE trials before the lone classifier)."""
        order = list(self.spaces)
        open_groups = sorted((group for group, count in self.suggested.items() if count < self.trials_of[group]),
                             key=lambda g: (self.suggested[g] - self.trials_of[g], order.index(g)))
        if not open_groups:
            return Searcher.FINISHED
        for group in open_groups:
            searcher = self.searchers[group]
            suggestion = {} if searcher is None else searcher.suggest(trial_id)
            if suggestion is None or suggestion == Searcher.FINISHED:
                continue  # this group's searcher cannot suggest now (e.g. its own concurrency limit)
            self.suggested[group] += 1
            self.group_of_trial[trial_id] = group
            return self.wrap(group, _resolve(self.spaces[group], suggestion))
        return None

    def _searcher(self, trial_id: str) -> Searcher | None:
        group = self.group_of_trial.get(trial_id)
        return None if group is None else self.searchers[group]

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Only results that carry the metric reach the group's searcher (the FD is scored every few reports)."""
        searcher = self._searcher(trial_id)
        if searcher is not None and result.get(self.metric) is not None:
            searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        """The trial's last result (or its error) goes to its group's searcher."""
        searcher = self._searcher(trial_id)
        if searcher is not None:
            scored = result is not None and result.get(self.metric) is not None
            searcher.on_trial_complete(trial_id, result if scored else None, error=error or not scored)

    def save(self, checkpoint_path: str) -> None:
        """Tune's own experiment state (read back by ``Tuner.restore``): counts, trial groups, the groups' searchers."""
        states = {}
        for group, searcher in self.searchers.items():
            if searcher is not None:
                searcher.save(f"{checkpoint_path}.{group}")
                with open(f"{checkpoint_path}.{group}", "rb") as handle:
                    states[group] = handle.read()
                os.remove(f"{checkpoint_path}.{group}")
        with open(checkpoint_path, "wb") as handle:
            pickle.dump({"suggested": self.suggested, "group_of_trial": self.group_of_trial, "searchers": states}, handle)

    def restore(self, checkpoint_path: str) -> None:
        """The state ``save`` wrote, in the experiment folder Tune restores from."""
        with open(checkpoint_path, "rb") as handle:
            state = pickle.load(handle)  # Tune's own experiment state, as Tuner.restore reads it
        self.suggested, self.group_of_trial = state["suggested"], state["group_of_trial"]
        for group, data in state["searchers"].items():
            searcher = self.searchers.get(group)
            if searcher is not None:
                with tempfile.NamedTemporaryFile() as handle:
                    handle.write(data)
                    handle.flush()
                    searcher.restore(handle.name)
