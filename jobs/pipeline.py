"""``python -m jobs.pipeline``: sweep, then evaluate, as one job, ending with the leaderboard.

The README's main job: ``python -m jobs.pipeline --preset quick`` runs in Ray's local mode on
one machine; under ``ray job submit`` it joins the cluster it was submitted to. Either way the
console gets each stage's start and end, a line per trial now and then, and the leaderboard;
what Ray and Tune print goes to ``<lab>/logs/pipeline-<UTC time>.log`` (``jobs.console``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from diffusion.core.config import ConfigError
from diffusion.lab.datasets import DatasetUnavailable
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import CheckpointError, LabStoreError
from jobs import evaluate, sweep
from jobs.console import job_log, say
from jobs.presets import first_point, run_config


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The sweep's flags (the evaluation uses the same preset, lab and models)."""
    parser = argparse.ArgumentParser(prog="python -m jobs.pipeline", description=__doc__.split("\n")[0])
    sweep.add_arguments(parser)
    return parser.parse_args(argv)


@dataclass(frozen=True)
class PipelineOutcome:
    """The exit status of a pipeline run and the wall time of each stage."""

    status: int
    seconds: dict[str, float]


def run_pipeline(request: sweep.SweepRequest) -> PipelineOutcome:
    """Sweep, export, evaluate, print the leaderboard and the time per stage; status 1 if a model could not be evaluated."""
    start = time.perf_counter()
    say(f"[pipeline] stage 1/2: sweep ({request.preset.name} preset, models {', '.join(request.models)})")
    seconds = dict(sweep.run_sweep(request).seconds)
    say(f"[pipeline] stage 2/2: evaluate ({time.perf_counter() - start:.0f} s so far)")
    exported = [m for m in request.models if m in ModelRegistry(request.store).list_models(kind="denoiser")]
    status = 0
    evaluated = time.perf_counter()
    try:
        evaluate.run_evaluation(evaluate.EvaluateRequest(request.preset, exported, request.store))
    except (ConfigError, evaluate.EvaluationFailed) as error:
        print(f"python -m jobs.pipeline: error: {error}", file=sys.stderr)
        status = 1
    seconds["evaluate"] = time.perf_counter() - evaluated
    evaluate.print_leaderboard(request.store)
    stages = ", ".join(f"{stage} {value:.0f} s" for stage, value in seconds.items())
    say(f"[pipeline] done in {time.perf_counter() - start:.0f} s ({stages}); lab store {request.store.root}")
    return PipelineOutcome(status, seconds)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 on success, 1 if a model could not be evaluated, 2 on bad input (before any work)."""
    args = parse_args(argv)
    try:
        request = sweep.check_inputs(args)
        for model in request.models:  # the models are exported only later: check against the preset's configs
            run = run_config(model, request.preset.models[model], request.preset.dataset, pick=first_point)
            evaluate.check_steps(request.preset.evaluate, model, run.diffusion.timesteps)
    except (ConfigError, LabStoreError, CheckpointError, DatasetUnavailable, ValueError) as error:
        print(f"python -m jobs.pipeline: error: {error}", file=sys.stderr)
        return 2
    with job_log(request.store, "pipeline"):
        return run_pipeline(request).status


if __name__ == "__main__":
    sys.exit(main())
