"""One Tune experiment for all the denoisers, early stopping within each model, and one comparison across them at
equal budgets: a scheduler per group, plus an optional budget-matched rung.

The sweep runs every model's trials in one experiment so that the cluster stays full (one
experiment per model left the GPU idle while the last trials of a model finished). ASHA must
still compare a trial only with trials of the same model: an `mlp` is not worse than a `unet`
at the same budget because its hyperparameters are bad. ``GroupedScheduler`` keeps one ASHA
(Li et al. 2020, "A System for Massively Parallel Hyperparameter Tuning") per model and
hands each trial's events to the one of its group.

With a ``MatchedRung`` the models are also compared with each other, once, where the
comparison is fair: every trial pauses at the same number of training images until all have
got there, and only the models that lead there spend the rest of the budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher

from diffusion.lab.tables import TRIAL_HISTORY
from jobs.console import say

STOPPED_BY_ASHA = "ASHA"
STOPPED_AT_RUNG = "the budget-matched rung"
GroupOf = Callable[[dict[str, Any]], str]
"""A trial's config -> the name of its group (the model)."""


@dataclass(frozen=True)
class MatchedRung:
    """The budget-matched rung: every trial trains ``images`` training images, reports its metric there, and waits
    (paused, its resources freed) until all ``trials`` of the experiment have done so or ended. Then the ``keep``
    groups with the lowest metric there continue, each with its best 1/``reduction_factor`` of its trials (at least
    one), and every other trial stops: one synchronous successive-halving step across the groups (Jamieson and
    Talwalkar 2016; Li et al. 2018, "Hyperband"), after which each group's own ASHA goes on as before."""

    images: int
    keep: int
    trials: int
    reduction_factor: int = 2

    def __post_init__(self) -> None:
        if self.images < 1 or self.keep < 1 or self.trials < 1 or self.reduction_factor < 2:
            raise ValueError(f"MatchedRung needs images, keep, trials >= 1 and reduction_factor >= 2, got {self}")


class PausingLimiter(ConcurrencyLimiter):
    """Tune's ``ConcurrencyLimiter``, except that a trial the scheduler paused (``on_pause``) does not hold a place:
    trials waiting at the matched rung must let the trials behind them start, or the rung would never fill."""

    def __init__(self, searcher: Searcher, max_concurrent: int) -> None:
        super().__init__(searcher, max_concurrent=max_concurrent)
        self.paused: set[str] = set()

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """The limiter's own suggestion, counting only the live trials that are not paused."""
        waiting = self.live_trials & self.paused
        self.live_trials -= waiting
        try:
            return super().suggest(trial_id)
        finally:
            self.live_trials |= waiting

    def on_pause(self, trial_id: str) -> None:
        """The scheduler paused ``trial_id``: its place is free until ``on_unpause``."""
        self.paused.add(trial_id)

    def on_unpause(self, trial_id: str) -> None:
        """The scheduler resumes ``trial_id``: it holds a place again."""
        self.paused.discard(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        self.paused.discard(trial_id)
        super().on_trial_complete(trial_id, result=result, error=error)


def _searcher_call(tune_controller: Any, method: str, trial: Trial) -> None:
    """``on_pause``/``on_unpause`` on the experiment's limiter (as Tune's BOHB scheduler does), where it has one."""
    searcher = getattr(getattr(tune_controller, "search_alg", None), "searcher", None)
    if isinstance(searcher, PausingLimiter):
        getattr(searcher, method)(trial.trial_id)


class GroupedScheduler(FIFOScheduler):
    """Trials start in submission order (FIFO); each group's results go to that group's own scheduler; with a
    ``MatchedRung``, the groups are compared with each other once, at equal budgets, and only the leaders go on."""

    def __init__(self, schedulers: dict[str, TrialScheduler], group_of: GroupOf, rung: MatchedRung | None = None,
                 time_attr: str = "images_seen", planned_steps: Callable[[dict[str, Any]], int] | None = None) -> None:
        super().__init__()
        if not schedulers:
            raise ValueError("GroupedScheduler needs at least one group")
        self.schedulers = schedulers
        self.group_of = group_of
        self.rung = rung
        self.time_attr = time_attr
        self.planned_steps = planned_steps
        """A trial's config -> the steps it trains: a trial whose last report (its ``step``) is at the rung is not paused."""
        self.at_rung: dict[str, tuple[str, float]] = {}
        """Trial id -> its group and its metric at the rung."""
        self.ended: set[str] = set()
        """Trials that ended before the rung (an error, or stopped)."""
        self.kept: set[str] | None = None
        """The trials that continue past the rung; None until every trial has reached it or ended."""
        self.stops: dict[str, str] = {}
        """Trial id -> who stopped it early (``STOPPED_BY_ASHA`` or ``STOPPED_AT_RUNG``), for the trials table."""
        self.restored: dict[str, float] = {}
        """Trial id -> the ``time_attr`` of its last report at or past the rung, for trials restored by ``--resume``."""

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
        if self.rung is not None and trial.last_result:
            self._recall(trial)

    def _recall(self, trial: Trial) -> None:
        """A trial restored with its experiment (``--resume``, which makes every unfinished trial PENDING): where
        its last report got to. One that reached the rung counts as there (with its last metric), and waits there
        until the rung is decided; one restored past the others' rung reports shows that the rung was decided
        before the interruption, and that it went on (``_restored_survivors``)."""
        last = trial.last_result
        if last.get(self.time_attr, 0) >= self.rung.images and last.get(self.metric) is not None:  # type: ignore[union-attr]
            self.at_rung[trial.trial_id] = (self.group_of(trial.config), float(last[self.metric]))
            self.restored[trial.trial_id] = float(last[self.time_attr])
        elif trial.status in (Trial.TERMINATED, Trial.ERROR):
            self.ended.add(trial.trial_id)

    def _restored_survivors(self) -> set[str]:
        """Restored trials whose last report lies past the earliest restored rung report: they went on past a rung
        decided before ``--resume`` (a trial at the rung before the decision only ever waits there)."""
        first = min(self.restored.values(), default=math.inf)
        return {trial_id for trial_id, images in self.restored.items() if images > first}

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self._scheduler(trial).on_trial_error(tune_controller, trial)
        self._end(trial)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        decision = self._scheduler(trial).on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP:
            self.stops[trial.trial_id] = STOPPED_BY_ASHA
        if self.rung is None or decision == TrialScheduler.STOP:
            return decision
        if result.get(self.time_attr, 0) < self.rung.images or result.get(self.metric) is None:
            return decision
        if self.kept is None:
            if trial.trial_id not in self.at_rung:
                self.at_rung[trial.trial_id] = (self.group_of(trial.config), float(result[self.metric]))
                self.ended.discard(trial.trial_id)
            if self._last_report(trial, result):
                return decision  # it ends here anyway: nothing to pause
            if not self._decide(tune_controller, running=trial):
                _searcher_call(tune_controller, "on_pause", trial)
                return TrialScheduler.PAUSE
        if trial.trial_id in self.kept:  # type: ignore[operator]
            return decision
        self.stops[trial.trial_id] = STOPPED_AT_RUNG
        return TrialScheduler.STOP

    def _last_report(self, trial: Trial, result: dict[str, Any]) -> bool:
        return self.planned_steps is not None and result.get(TRIAL_HISTORY.step, 0) >= self.planned_steps(trial.config)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        self._scheduler(trial).on_trial_complete(tune_controller, trial, result)
        self._end(trial)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._scheduler(trial).on_trial_remove(tune_controller, trial)
        self._end(trial)

    def _end(self, trial: Trial) -> None:
        if self.rung is not None and trial.trial_id not in self.at_rung:
            self.ended.add(trial.trial_id)

    def _decide(self, tune_controller: Any, running: Trial | None = None) -> bool:
        """Once every trial is at the rung or ended: choose who goes on, stop the others; False while some train."""
        if self.kept is not None:
            return True
        if len(self.at_rung) + len(self.ended - self.at_rung.keys()) < self.rung.trials:  # type: ignore[union-attr]
            return False
        self.kept = (self._restored_survivors()
                     or matched_rung_survivors(self.at_rung, self.rung.keep, self.rung.reduction_factor))  # type: ignore[union-attr]
        say(rung_line(self.at_rung, self.kept, f"{self.rung.images:,} {self.time_attr.replace('_', ' ')}", self.metric))  # type: ignore[union-attr]
        for trial in tune_controller.get_trials():
            if trial is not running and trial.trial_id not in self.kept and trial.status in (Trial.PAUSED, Trial.PENDING):
                self.stops[trial.trial_id] = STOPPED_AT_RUNG
                tune_controller.stop_trial(trial)
        return True

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        """A pending trial (FIFO); else a paused one, but a trial paused at the rung only once the rung is decided."""
        trials = tune_controller.get_trials()
        for trial in trials:  # a trial restored at the rung (PENDING) still waits for its decision
            if trial.status == Trial.PENDING and (self.kept is not None or trial.trial_id not in self.at_rung):
                return trial
        if self.rung is not None and not self._decide(tune_controller):
            return None
        for trial in trials:
            if trial.status == Trial.PAUSED and (self.kept is None or trial.trial_id in self.kept):
                _searcher_call(tune_controller, "on_unpause", trial)
                return trial
        return None

    def debug_string(self) -> str:
        """Each group's own summary, and the matched rung's state."""
        lines = [f"[{group}] {s.debug_string()}" for group, s in self.schedulers.items()]
        if self.rung is not None:
            state = (f"{len(self.at_rung)} of {self.rung.trials} trials there" if self.kept is None
                     else f"kept {len(self.kept)} trial(s)")
            lines.append(f"[matched rung at {self.rung.images} {self.time_attr}] {state}")
        return "\n".join(lines)


def rung_line(at_rung: dict[str, tuple[str, float]], kept: set[str], budget: str, metric: str | None) -> str:
    """The console's line for the decision: each group's best metric at the rung, best first, and who goes on."""
    best = _best_per_group(at_rung)
    ranking = ", ".join(f"{group} {value:.4g}" for group, value in best.items())
    going = sorted({at_rung[trial_id][0] for trial_id in kept})
    return (f"[rung] every trial at {budget}; best {metric} per model: {ranking}; going on: "
            f"{len(kept)} trial(s) of {', '.join(going)}")


def _finite(metric: float) -> float:
    return metric if math.isfinite(metric) else math.inf


def _best_per_group(at_rung: dict[str, tuple[str, float]]) -> dict[str, float]:
    """Each group's lowest metric at the rung (NaN and infinities as +inf), best group first."""
    best: dict[str, float] = {}
    for group, metric in at_rung.values():
        best[group] = min(best.get(group, math.inf), _finite(metric))
    return dict(sorted(best.items(), key=lambda item: item[1]))


def matched_rung_survivors(at_rung: dict[str, tuple[str, float]], keep: int, reduction_factor: int) -> set[str]:
    """The trials that go on past the matched rung: those of the ``keep`` groups whose best trial there is lowest,
    each group's best 1/``reduction_factor`` of its trials (at least one). A NaN or infinite metric ranks last."""
    kept: set[str] = set()
    for group in list(_best_per_group(at_rung))[:keep]:
        ranked = sorted((_finite(m), trial_id) for trial_id, (g, m) in at_rung.items() if g == group)
        kept |= {trial_id for _, trial_id in ranked[: max(1, len(ranked) // reduction_factor)]}
    return kept
