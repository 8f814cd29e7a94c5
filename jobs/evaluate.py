"""``python -m jobs.evaluate``: score every exported denoiser and draw the metric-robustness curves.

For each model (in parallel, one Ray task each): the 50-image grid, 5 denoising paths (PNG,
GIF and the raw snapshots), and for every sampler setting of the preset the sampling time per
image and the FD in each embedding next to the real-vs-real floor at the same N. One more task
computes the corruption-robustness curves. Results go to the lab store's ``scores``,
``robustness`` and ``robustness_summary`` tables; each model's card gets its best FD.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import ray

from diffusion.core.config import ConfigError, DataConfig
from diffusion.embeddings.loading import current_embeddings
from diffusion.lab.datasets import DatasetUnavailable, ensure_dataset
from diffusion.lab.leaderboard import (
    budget_rule,
    format_leaderboard,
    leaderboard,
    manifold_reference,
    ranked_by,
    stale_note,
    with_budget,
)
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import CheckpointError, LabStore, LabStoreError, StaleMetrics, default_lab
from diffusion.lab.tables import ROBUSTNESS, ROBUSTNESS_SUMMARY, SCORES, TRIAL_HISTORY, TableStore
from diffusion.metrics.manifold import NEAREST_K
from diffusion.metrics.model_scores import ScoreRow, best_row, card_metrics
from jobs.model_tasks import floors_task, model_task, robustness_task, task_options
from jobs.presets import EvaluateSettings, Preset, load_preset
from jobs.ray_session import start_ray
from jobs.sweep import sweep_embeddings


@dataclass(frozen=True)
class EvaluateRequest:
    """What to evaluate: the checked preset, the models (None: every exported denoiser) and the lab store."""

    preset: Preset
    models: list[str] | None
    store: LabStore


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags ``jobs.evaluate`` shares with ``jobs.pipeline``."""
    parser.add_argument("--preset", default="quick", help="smoke, quick, full, or a path to a preset .yaml")
    parser.add_argument("--lab", default=default_lab(), help="lab store root: a path or a URI (default $DIFFUSION_LAB, else ./lab)")
    parser.add_argument("--models", nargs="+", default=None, help="exported denoisers to evaluate (default: all)")


def check_models(store: LabStore, settings: EvaluateSettings, models: list[str]) -> None:
    """Each model is an exported denoiser whose schedule admits every sampler setting's step count."""
    registry = ModelRegistry(store)
    exported = registry.list_models(kind="denoiser")
    missing = [m for m in models if m not in exported]
    if missing:
        raise ConfigError(f"no exported denoiser named {missing} in {store.root}; it has {exported or 'none'} "
                          f"(python -m jobs.sweep exports them)")
    for model in models:
        check_steps(settings, model, int(registry.read_card(model).config["diffusion"]["timesteps"]))


def check_steps(settings: EvaluateSettings, model: str, timesteps: int) -> None:
    """Every sampler setting of the section resolves for a schedule of ``timesteps`` levels."""
    for setting in (*settings.samplers, settings.pictures):
        try:
            setting.resolve(timesteps)
        except ConfigError as error:
            raise ConfigError(f"evaluate: model {model!r}, sampler {setting.sampler}: {error}") from error


def evaluation_models(request: EvaluateRequest) -> list[str]:
    """The models to evaluate, checked; ConfigError if there are none."""
    models = request.models if request.models is not None else ModelRegistry(request.store).list_models(kind="denoiser")
    if not models:
        raise ConfigError(f"no exported denoisers in {request.store.root}; run python -m jobs.sweep first")
    check_models(request.store, request.preset.evaluate, models)
    return models


def run_evaluation(request: EvaluateRequest) -> pd.DataFrame:
    """Evaluate the models as parallel Ray tasks; write the tables; return the scores. Raises if a model failed."""
    start = time.perf_counter()
    models = evaluation_models(request)
    store, preset, settings = request.store, request.preset, request.preset.evaluate
    start_ray()
    datasets = {m: ModelRegistry(store).read_card(m).config["data"]["dataset"] for m in models}
    for dataset in sorted({preset.dataset, *datasets.values()}):
        print(f"[evaluate] data: {ensure_dataset(store, DataConfig(dataset=dataset))}", flush=True)
    sweep_embeddings(store, preset, "evaluate")
    options = task_options(settings.resources)
    floors = {d: floors_task.options(**options).remote(store.root, d, settings) for d in sorted(set(datasets.values()))}
    pending = {model_task.options(**options).remote(store.root, m, settings, floors[datasets[m]]): m for m in models}
    if settings.robustness is not None:
        pending[robustness_task.options(**options).remote(store.root, preset.dataset, settings)] = "robustness"
    samplers = ", ".join(s.label for s in settings.samplers)
    print(f"[evaluate] {len(models)} model(s): {', '.join(models)}; samplers {samplers}", flush=True)
    rows: list[ScoreRow] = []
    failures: dict[str, str] = {}
    while pending:
        [ready], _ = ray.wait(list(pending), num_returns=1)
        name = pending.pop(ready)
        try:
            result = ray.get(ready)
        except ray.exceptions.RayError as error:  # a task that raised, or whose worker died
            failures[name] = str(error).strip().splitlines()[-1]
            print(f"[evaluate] {name}: FAILED: {failures[name]}", flush=True)
            continue
        if name == "robustness":
            curve, summary = result
            tables = TableStore(store)
            tables.write(ROBUSTNESS, curve)
            tables.write(ROBUSTNESS_SUMMARY, summary)
            print(f"[evaluate] robustness: {len(curve)} curve points -> {store.uri(tables.path(ROBUSTNESS))}", flush=True)
        else:
            try:
                record_best(store, name, result)
            except StaleMetrics as error:  # re-exported while it was being scored: these rows measure old weights
                failures[name] = f"{error} (python -m jobs.evaluate --models {name})"
                print(f"[evaluate] {name}: FAILED: {failures[name]}", flush=True)
                continue
            rows += result
    scores = pd.DataFrame(rows)
    if not scores.empty:
        merge_scores(store, scores)
    print(f"[evaluate] done in {time.perf_counter() - start:.0f} s; tables in {TableStore(store).location}", flush=True)
    if failures:
        raise EvaluationFailed(failures)
    return scores


class EvaluationFailed(RuntimeError):
    """Some models (or the robustness curves) could not be evaluated; the others were written."""

    def __init__(self, failures: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {reason}" for name, reason in failures.items()))
        self.failures = failures


def record_best(store: LabStore, name: str, rows: list[ScoreRow]) -> None:
    """Put a model's scores on its card (``card_metrics``: the leaderboard's row per embedding), if the card still has
    the weights the rows were measured on."""
    ModelRegistry(store).update_metrics(name, card_metrics(rows), expected_sha256=rows[0].weights_sha256)
    best = best_row(rows)
    manifold = (f", precision {best.precision:.2f}, recall {best.recall:.2f}, coverage {best.coverage:.2f}"
                if best.precision is not None else "")
    print(f"[evaluate] {name}: FD(vae) {best.fd:.4g} = {best.ratio:.3g}x floor{manifold} ({best.sampler}-{best.steps}, "
          f"N = {best.n}, {best.seconds_per_image * 1000:.1f} ms/image)", flush=True)


def merge_scores(store: LabStore, scores: pd.DataFrame) -> None:
    """Replace these models' rows of the ``scores`` table, keeping the other models' rows (safe with concurrent writers)."""
    TableStore(store).update(SCORES, scores)


def print_leaderboard(store: LabStore) -> pd.DataFrame:
    """Print (and return) the leaderboard of every model scored in the lab's current VAE, the embedding it ranks by,
    and the models scored in an older one with the command that re-scores them."""
    tables = TableStore(store)
    scores = tables.read(SCORES) if SCORES.name in tables.names() else SCORES.empty()
    lineage = current_embeddings(store)
    history = tables.read(TRIAL_HISTORY) if TRIAL_HISTORY.name in tables.names() else TRIAL_HISTORY.empty()
    board, budget = with_budget(leaderboard(scores, lineage), history)
    print(f"[leaderboard] FD in the VAE embedding ({ranked_by(lineage)}) at the largest N, best sampler setting per "
          f"model, ranked by FD / floor; '=' marks a tie (95% intervals overlap)", flush=True)
    print(format_leaderboard(board, budget), flush=True)
    if not board.empty:
        print(f"[leaderboard] {budget_rule(board)}", flush=True)
    reference = manifold_reference(board)
    if reference:
        print(f"[leaderboard] precision, recall, density, coverage in the VAE embedding (k = {NEAREST_K}); {reference}",
              flush=True)
    if budget is not None:
        print(f"[leaderboard] {budget.label}: each model's best trial in the sweep's reports at {budget.images:,} "
              f"training images, the largest budget every model reached (compares architectures at equal budgets)",
              flush=True)
    stale = stale_note(scores, lineage, store.root)
    if stale:
        print(f"[leaderboard] stale: {stale}", flush=True)
    return board


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 on success, 1 if some model failed, 2 on bad input (before any work)."""
    parser = argparse.ArgumentParser(prog="python -m jobs.evaluate", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        request = EvaluateRequest(load_preset(args.preset), args.models, LabStore(args.lab))
        evaluation_models(request)
    except (ConfigError, LabStoreError, CheckpointError, ValueError) as error:
        print(f"python -m jobs.evaluate: error: {error}", file=sys.stderr)
        return 2
    status = 0
    try:
        run_evaluation(request)
    except EvaluationFailed as error:
        print(f"python -m jobs.evaluate: error: {error}", file=sys.stderr)
        status = 1
    except DatasetUnavailable as error:
        print(f"python -m jobs.evaluate: error: {error}", file=sys.stderr)
        return 2
    print_leaderboard(request.store)  # of every model scored, also when some failed
    return status


if __name__ == "__main__":
    sys.exit(main())
