"""What a lab job prints where: a few lines per stage and trial on the console; Ray's and Tune's output in a log file.

The console gets the jobs' own ``[stage]`` lines: each stage's start and end with its wall time,
a line per trial now and then and when it ends (``TrialLines``, a Tune callback), and the
leaderboard. Everything else goes to ``<lab>/logs/<job>-<UTC time>.log`` while ``job_log`` is
open (an object-store lab: a local copy under ``~/.cache/diffusion-lab/logs``, uploaded at the
end, then removed): the ``ray`` loggers of the driver, Python warnings, and Tune's status tables
(``LogReporter``, Tune's own progress reporter writing there instead of to stdout). Workers'
output stays in Ray's session logs (``ray.init(log_to_driver=False)`` in ``jobs.ray_session``),
whose folder the log file names.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from ray import tune
from ray.tune.search.variant_generator import parse_spec_vars

from diffusion.lab.store import LabStore, LabStoreError
from diffusion.lab.tables import TRIAL_HISTORY as H  # a report's keys are the history's columns

LOCAL_COPIES = "~/.cache/diffusion-lab/logs"
"""Where a job writes its log while it runs when the lab is on an object store."""
TRIAL_LINE_EVERY_S = 30.0
"""A running trial's console line at most this often (and always when it ends)."""
STATUS_TABLE_EVERY_S = 30
"""Tune's status table in the log at most this often (and at the end)."""
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LINES = logging.getLogger("jobs.console")
"""The console's lines, copied into the log (when one is open) to place Ray's output between them."""
logging.getLogger("jobs").setLevel(logging.INFO)  # the jobs' loggers write to the log only: the root has no handler


def say(line: str) -> None:
    """Print ``line`` on the console and copy it into the job's log."""
    print(line, flush=True)
    LINES.info(line)


@contextlib.contextmanager
def job_log(store: LabStore, job: str) -> Iterator[str]:
    """Send the driver's Ray logging, Python warnings and Tune's tables to a new log file in the lab while open;
    print where it is at the start and the end. Yields its URI (where it ends up)."""
    name = f"{job}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    local = (lambda n: store.path(store.log_path(n))) if store.is_local else (
        lambda n: os.path.join(os.path.expanduser(LOCAL_COPIES), os.path.basename(store.log_path(n))))
    if os.path.exists(local(name)):  # two jobs in the same second
        name = f"{name}-{os.getpid()}"
    path = local(name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    uri = store.uri(store.log_path(name))
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    root, ray_logger = logging.getLogger(), logging.getLogger("ray")  # "ray" does not propagate to the root
    ray_handlers = list(ray_logger.handlers)
    for old in ray_handlers:
        ray_logger.removeHandler(old)
    ray_logger.addHandler(handler)
    root.addHandler(handler)
    logging.captureWarnings(True)
    copy = "" if store.is_local else f" (copied to {uri} at the end)"
    say(f"[{job}] Ray and Tune output: {path}{copy}")
    try:
        yield uri
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        ray_logger.removeHandler(handler)
        for old in ray_handlers:
            ray_logger.addHandler(old)
        handler.close()
        where = path
        if not store.is_local:
            try:
                with open(path, "rb") as log:
                    store.write_bytes(store.log_path(name), log.read())
                os.remove(path)  # the local copy stays only when it could not be uploaded
                where = uri
            except (OSError, LabStoreError) as error:
                print(f"[{job}] could not copy the log to {uri}: {error}", file=sys.stderr, flush=True)
        print(f"[{job}] Ray and Tune output: {where}", flush=True)


def searched_columns(spaces: dict[str, dict[str, Any]], point_key: str) -> list[str]:
    """The trial config keys (``<point_key>/<section>/<key>``) that some group's space searches, for Tune's table."""
    columns: set[str] = set()
    for space in spaces.values():
        _, domains, grids = parse_spec_vars(space)
        columns.update("/".join((point_key, *map(str, path))) for path, _ in (*domains, *grids))
    return sorted(columns)


class LogReporter(tune.CLIReporter):
    """Tune's status table (trials, their state, step and metric), written to the job's log instead of stdout.

    Tune calls it with ``RunConfig(verbose=1)`` when its older output engine is on
    (``RAY_AIR_NEW_OUTPUT=0``, set by ``jobs.experiment``); the newer one ignores reporters.
    """

    def __init__(self, metric: str, parameters: list[str]) -> None:
        # no metric and mode: no "current best trial" line, which would compare groups (a VAE's validation loss with
        # a classifier's) and look up every group's parameters in one trial's config
        super().__init__(metric_columns=[H.step, H.loss, metric], parameter_columns=parameters,
                         max_report_frequency=STATUS_TABLE_EVERY_S, max_column_length=24)

    def report(self, trials: list[Any], done: bool, *sys_info: str) -> None:
        logging.getLogger("jobs.tune").info("Tune status\n%s", self._progress_str(trials, done, *sys_info))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not math.isnan(value) else None


def _short(value: float, digits: int = 4) -> str:
    """``value`` to ``digits`` significant digits, or to the unit when it has more (no exponent)."""
    return f"{value:.0f}" if abs(value) >= 10**digits else f"{value:.{digits}g}"


class TrialLines(tune.Callback):
    """The console's view of a Tune experiment: a line per running trial at most every ``every_s`` (when it reports
    its metric), and one when it ends, is stopped early, fails or is retried.

    ``[sweep] unet trial 2/2  step 800/1700  fd 41.3 (3.1x floor)  12 s/report``

    ``group_of`` names a trial's group (its model) from its config, ``totals`` the trials each group runs,
    ``planned_steps`` the steps a trial's config trains for (None: not shown). Tune pickles this callback with the
    experiment, and ``--resume`` gets it back: it holds no stream, and its functions are module-level ones.
    """

    def __init__(self, stage: str, metric: str, group_of: Callable[[dict[str, Any]], str], totals: dict[str, int],
                 planned_steps: Callable[[dict[str, Any]], int] | None = None, every_s: float = TRIAL_LINE_EVERY_S) -> None:
        self.stage, self.metric, self.group_of, self.totals = stage, metric, group_of, totals
        self.planned_steps, self.every_s = planned_steps, every_s
        self._numbers: dict[str, tuple[str, int]] = {}
        self._counts: dict[str, int] = {}
        self._last_line: dict[str, float] = {}
        self._best: dict[str, tuple[float, Any, float | None]] = {}
        self._planned: dict[str, int | None] = {}

    def _name(self, trials: list[Any], trial: Any) -> str:
        for each in (*trials, trial):  # numbered as first seen: Tune moves a retried trial to the end of its list
            if each.trial_id not in self._numbers:
                group = self.group_of(each.config)
                self._counts[group] = self._counts.get(group, 0) + 1
                self._numbers[each.trial_id] = (group, self._counts[group])
        group, number = self._numbers[trial.trial_id]
        return f"[{self.stage}] {group} trial {number}/{max(self.totals.get(group, 0), self._counts[group])}"

    def _step(self, trial: Any, result: dict[str, Any]) -> str:
        if trial.trial_id not in self._planned:
            self._planned[trial.trial_id] = self.planned_steps(trial.config) if self.planned_steps else None
        planned = self._planned[trial.trial_id]
        return f"step {result.get(H.step, '?')}" + (f"/{planned}" if planned else "")

    def _score(self, value: float, ratio: float | None) -> str:
        return f"{self.metric} {_short(value)}" + (f" ({_short(ratio, 3)}x floor)" if ratio is not None else "")

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._name(trials, trial)  # numbers the trials while Tune's list is in the order it made them
        self._last_line.setdefault(trial.trial_id, time.monotonic())

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any) -> None:
        value = _number(result.get(self.metric))
        if value is None:
            return
        ratio = _number(result.get(H.ratio))
        best = self._best.get(trial.trial_id)
        if best is None or value < best[0]:
            self._best[trial.trial_id] = (value, result.get(H.step), ratio)
        now, step = time.monotonic(), self._step(trial, result)
        planned = self._planned[trial.trial_id]
        if now - self._last_line.setdefault(trial.trial_id, now) < self.every_s or (
                planned is not None and (_number(result.get(H.step)) or 0) >= planned):  # its done line follows
            return
        self._last_line[trial.trial_id] = now
        pace = _number(result.get("time_this_iter_s"))
        say(f"{self._name(trials, trial)}  {step}  {self._score(value, ratio)}"
            + (f"  {_short(pace, 2)} s/report" if pace is not None else ""))

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        step, planned = self._step(trial, result), self._planned[trial.trial_id]
        early = planned is not None and _number(result.get(H.step)) is not None and result[H.step] < planned
        best = self._best.get(trial.trial_id)
        scored = f"best {self._score(best[0], best[2])} at step {best[1]}" if best else f"no {self.metric} reported"
        seconds = _number(result.get(H.time_total_s))
        say(f"{self._name(trials, trial)}  {'stopped early' if early else 'done'} at {step}  {scored}"
            + (f"  {seconds:.0f} s" if seconds is not None else ""))

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        say(f"{self._name(trials, trial)}  failed at {self._step(trial, trial.last_result or {})}; "
            f"retrying from its last checkpoint")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        say(f"{self._name(trials, trial)}  FAILED at {self._step(trial, trial.last_result or {})}: "
            f"{getattr(trial, 'error_file', None) or trial.path}")
