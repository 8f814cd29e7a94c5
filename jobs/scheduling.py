"""One Tune experiment for all the denoisers, early stopping within each model: a scheduler per group.

The sweep runs every model's trials in one experiment so that the cluster stays full (one
experiment per model left the GPU idle while the last trials of a model finished). ASHA must
still compare a trial only with trials of the same model: an `mlp` is not worse than a `unet`
at the same budget because its hyperparameters are bad. ``GroupedScheduler`` keeps one ASHA
(Li et al. 2020, "A System for Massively Parallel Hyperparameter Tuning") per model and
hands each trial's events to the one of its group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

GroupOf = Callable[[dict[str, Any]], str]
"""A trial's config -> the name of its group (the model)."""


class GroupedScheduler(FIFOScheduler):
    """Trials start in submission order (FIFO); each group's results go to that group's own scheduler."""

    def __init__(self, schedulers: dict[str, TrialScheduler], group_of: GroupOf) -> None:
        super().__init__()
        if not schedulers:
            raise ValueError("GroupedScheduler needs at least one group")
        self.schedulers = schedulers
        self.group_of = group_of

    def _scheduler(self, trial: Trial) -> TrialScheduler:
        group = self.group_of(trial.config)
        if group not in self.schedulers:
            raise KeyError(f"trial {trial.trial_id} belongs to group {group!r}; scheduled groups: {sorted(self.schedulers)}")
        return self.schedulers[group]

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Pass the experiment's metric and mode to every group's scheduler."""
        return all(s.set_search_properties(metric, mode, **spec) for s in self.schedulers.values())

    @property
    def metric(self) -> str | None:
        """The metric every group's scheduler acts on."""
        return next(iter(self.schedulers.values())).metric

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self._scheduler(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self._scheduler(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        return self._scheduler(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        self._scheduler(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._scheduler(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        """Each group's own summary."""
        return "\n".join(f"[{group}] {s.debug_string()}" for group, s in self.schedulers.items())
