"""The Ray Serve application: HTTP sampling from the denoisers of a lab store (FastAPI ingress, OpenAPI at /docs).

Concurrent /sample requests are gathered by ``serve.batcher.LoadAdaptiveBatcher``: what waits
while a loop runs joins the next one, and requests with the same model and sampler settings
share one sampling loop (one forward pass per step for all of them); each request's rows draw
from its own seeded generator, so a seed gives the same images alone or batched. Images are
encoded (PNG, JSON) in worker threads, off the event loop that collects the batches. Start it
with ``serve run serve.app:build_app lab=./lab``, ``serve deploy serve/config.yaml`` or
``python -m serve --lab ./lab``.

Limits (``Limits``): a request over the work budget (images or paths x steps) is a 422; beyond
``max_queued`` sampling requests per replica, 503 with Retry-After; past ``deadline_s``, 504 and
the sampling thread stops. Sampling runs in threads, so /healthz answers meanwhile. Each response
names the weights it sampled (X-Weights-SHA256); a re-exported model is reloaded within ``refresh_s``.
"""

# No `from __future__ import annotations` here: Serve rebuilds the routes inside each replica,
# where FastAPI must resolve the request models from real (not string) annotations.
import asyncio
import contextlib
import dataclasses
import json
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import ray
import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.serve import Application
from ray.serve.config import BackpressureConfig

from diffusion.core.config import ConfigError
from diffusion.core.device import assigned_device
from diffusion.core.images import grid_png, path_gif, paths_png
from diffusion.core.samplers import SamplerSetting, denoising_paths, sample_stacked
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore
from serve.batcher import LoadAdaptiveBatcher
from serve.catalog import Catalog, DeadlineExceeded, HostedModel, describe, evaluation_summary, run_with_deadline
from serve.schemas import (
    DEFAULT_MAX_WORK,
    MAX_IMAGES,
    Health,
    HostedModelInfo,
    PathRequest,
    SampleRequest,
    SamplingSettings,
    sampling_responses,
    work_error,
)

BATCH_WAIT_S = 0.05
"""The longest a free replica waits for the requests it expects back (``serve.batcher``; never more than a quarter of a loop)."""
CPU_LOOP_IMAGES = 64
"""Most images a CPU replica combines in one loop: on a CPU a larger batch costs more per image (cache), unlike a GPU
(the README's serving benchmark)."""
HEALTH_SLOTS = 16
"""Request slots a replica keeps beyond ``max_queued`` for /healthz and /models, so they answer under load."""


@dataclass(frozen=True)
class Limits:
    """What one replica accepts: the work budget, the waiting-room size, the deadline, how often it re-reads cards."""

    max_work: int = DEFAULT_MAX_WORK  # images (or paths) x steps per request
    max_queued: int = 64  # sampling requests waiting or running per replica; more get 503 + Retry-After
    deadline_s: float = 300.0  # a request not done by then gets 504, and its sampling stops
    refresh_s: float = 2.0  # a model's card is re-read at most this often (0: on every request)
    loop_images: int = 0  # most images one sampling loop combines (0: 256 on a GPU, CPU_LOOP_IMAGES on a CPU)


LIMIT_ARGS: dict[str, tuple[type, float]] = {"max_work": (int, 1), "max_queued": (int, 1), "deadline_s": (float, 0.01),
                                             "refresh_s": (float, 0.0), "loop_images": (int, 0)}
"""Each limit's type and smallest accepted value."""

api = FastAPI(title="Diffusion Lab sampling API",
              description="Sample digits and denoising paths from the lab store's denoisers. Every error is JSON "
                          "with a `detail` message naming the field or limit; 503 carries `Retry-After`.")


@api.exception_handler(RequestValidationError)
async def _invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
    """422 with one message per bad field; the offending input is not echoed (NaN is not JSON)."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body") or "body"
        problems.append(f"{where}: {item.get('msg', 'invalid')}")
    return JSONResponse({"detail": "; ".join(problems)}, status_code=422)


# Defined above the deployment class: the replica's copy of that class resolves only the names bound before it.
def json_body(images: torch.Tensor, request: SampleRequest, model: str, setting: SamplerSetting,
              weights_sha256: str) -> bytes:
    """The JSON answer to a /sample request: its settings and the images as arrays in [0, 1], 4 decimals."""
    unit = ((images.float() + 1) / 2).clamp(0, 1)[:, 0]
    return json.dumps({"model": model, "sampler": setting.sampler, "steps": setting.steps, "eta": setting.eta,
                       "seed": request.seed, "weights_sha256": weights_sha256, "shape": list(unit.shape),
                       "images": unit.double().mul(10_000).round().div(10_000).tolist()},
                      separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True)
class SampleJob:
    """One request's share of a batch: its settings (the grouping key), image count, seed and deadline."""

    key: tuple[str, str, SamplerSetting]  # model, weights sha256, the resolved sampler setting
    num_images: int
    seed: int
    deadline: float  # time.monotonic() after which its sampling may stop
    hosted: HostedModel = field(compare=False)


@serve.deployment(
    max_ongoing_requests=Limits.max_queued + HEALTH_SLOTS,
    autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 16},
    health_check_period_s=10,
)
@serve.ingress(api)
class DiffusionServer:
    """Hosts every denoiser of one lab store; a model that fails to load is listed as unavailable."""

    def __init__(self, lab: str, precision: str = "auto", threads: int = 1, limits: Limits = Limits()) -> None:
        torch.set_num_threads(max(1, threads))  # the replica's CPU share (Ray reserves num_cpus for it)
        self.store = LabStore(lab)
        self.device = assigned_device(ray.get_gpu_ids())  # the GPU this replica reserved, else the CPU
        self.precision = precision
        self.limits = limits
        self.catalog = Catalog(self.store, self.device, limits.refresh_s)
        self.counters: dict[str, int] = defaultdict(int)
        self.waiting = 0  # sampling requests admitted and not yet answered (changed on the event loop only)
        self.mean_seconds = 1.0  # running mean of a sampling request's duration: the Retry-After hint
        loop_images = limits.loop_images or (MAX_IMAGES if self.device.type == "cuda" else CPU_LOOP_IMAGES)
        self.batcher = LoadAdaptiveBatcher(self._run_group, max_images=loop_images, max_wait_s=BATCH_WAIT_S)
        self._counter_lock = threading.Lock()

    def _count(self, key: str, delta: int = 1) -> None:
        with self._counter_lock:
            self.counters[key] += delta

    # ---- validation and limits shared by the routes -------------------------------------------
    async def _hosted(self, settings: SamplingSettings) -> tuple[HostedModel, SamplerSetting]:
        """The model (checked against the store) and the sampler setting a request resolves to, or a 4xx naming the problem."""
        if self.catalog.due(settings.model):
            await asyncio.to_thread(self.catalog.refresh, settings.model)
        hosted = self.catalog.get(settings.model)
        if hosted is None:
            accepted = ", ".join(n for n, h in self.catalog.snapshot().items() if h.loaded) or "none"
            raise HTTPException(404, f"model: unknown model {settings.model!r}; hosted: {accepted}")
        if not hosted.loaded:
            raise HTTPException(409, f"model: {settings.model!r} is unavailable ({hosted.error})")
        assert hosted.schedule is not None
        try:
            setting = settings.resolve(hosted.timesteps)
        except ConfigError as error:
            raise HTTPException(422, f"{error} (model {settings.model!r})") from error
        assert setting.steps is not None
        too_much = work_error(settings, setting.steps, self.limits.max_work)
        if too_much:
            raise HTTPException(422, too_much)
        return hosted, setting

    @contextlib.contextmanager
    def _admitted(self) -> Iterator[None]:
        """A place among the ``max_queued`` sampling requests of this replica, or 503 with Retry-After."""
        if self.waiting >= self.limits.max_queued:
            self._count("rejected_overloaded")
            retry = max(1, math.ceil(self.mean_seconds))
            raise HTTPException(503, f"overloaded: {self.waiting} sampling requests are waiting or running on this replica "
                                     f"(max_queued {self.limits.max_queued}); retry after {retry} s",
                                headers={"Retry-After": str(retry)})
        self.waiting += 1
        started = time.monotonic()
        try:
            yield
            self.mean_seconds = 0.8 * self.mean_seconds + 0.2 * (time.monotonic() - started)
        finally:
            self.waiting -= 1

    async def _before_deadline(self, deadline: float, work: Any) -> Any:
        """Await ``work`` (a coroutine) until ``deadline``; past it, 504 (the sampling thread stops at the same deadline)."""
        try:
            result = await asyncio.wait_for(work, timeout=max(0.0, deadline - time.monotonic()))
        except (asyncio.TimeoutError, DeadlineExceeded):
            result = None
        if result is None:
            self._count("deadline_exceeded")
            raise HTTPException(504, f"deadline: not done within {self.limits.deadline_s:g} s (this server's deadline_s); "
                                     f"sampling stopped; ask for fewer images or steps, or retry later")
        return result

    def _tracked(self, deadline: float, work: Callable[..., Any], *args: Any) -> Any:
        """``work(*args)`` in this (worker) thread, counted in /healthz's ``running`` and stopped at ``deadline``."""
        self._count("running")
        try:
            return run_with_deadline(deadline, work, *args)
        finally:
            self._count("running", -1)

    # ---- batched sampling ---------------------------------------------------------------------
    def _run_group(self, jobs: Sequence[SampleJob]) -> list[torch.Tensor | None]:
        """One sampling loop for ``jobs`` (all of one key: model weights and sampler setting), in a worker thread;
        None for each if the loop was stopped at its deadline (that of its latest request)."""
        _name, _sha, setting = jobs[0].key
        hosted = jobs[0].hosted
        assert hosted.model is not None and hosted.schedule is not None
        requests = [(job.num_images, job.seed) for job in jobs]
        deadline = max(job.deadline for job in jobs)  # the loop serves its latest request to the end
        try:
            images = self._tracked(deadline, sample_stacked, hosted.model, hosted.schedule, requests, setting,
                                   self.precision)
        except DeadlineExceeded:
            return [None] * len(jobs)
        self._count("sampling_loops")
        self._count("forward_passes", setting.steps)
        self._count("requests_sampled", len(jobs))
        self._count("images_sampled", sum(job.num_images for job in jobs))
        return [chunk.cpu() for chunk in images]

    # ---- routes -------------------------------------------------------------------------------
    @api.get("/healthz", response_model=Health)
    def healthz(self) -> dict[str, Any]:
        """Liveness (answers while sampling runs), the models, the limits, and how much batching there has been."""
        hosted = self.catalog.snapshot()
        loaded = sum(h.loaded for h in hosted.values())
        return {"status": "ok", "loaded_models": loaded, "unavailable_models": len(hosted) - loaded,
                "device": self.device.type, "waiting": self.waiting, "reloads": self.catalog.reloads,
                "limits": dataclasses.asdict(self.limits), "queued": self.batcher.queued,
                "batching": dataclasses.asdict(self.batcher.stats), **self.counters}

    @api.get("/models", response_model=list[HostedModelInfo])
    async def models(self) -> list[dict[str, Any]]:
        """Every hosted model: config, parameters, weights hash, loaded or why not, and its FD, floor and rank in the lab's
        current VAE (``evaluation``, with that VAE's ``embedding_sha256``); a model scored only in an older VAE is
        ``stale``, with the reason and the command that re-scores it, and is not ranked."""
        catalog = await asyncio.to_thread(self.catalog.refresh_all)
        evaluation = await asyncio.to_thread(evaluation_summary, self.store)
        return [describe(hosted, evaluation.get(name)) for name, hosted in catalog.items()]

    @api.post("/sample", response_class=Response, responses=sampling_responses(("image/png", "application/json")))
    async def sample(self, request: SampleRequest) -> Response:
        """``num_images`` samples as a PNG grid, or as JSON arrays in [0, 1] (shape N x 28 x 28); header X-Weights-SHA256."""
        start = time.monotonic()
        hosted, setting = await self._hosted(request)
        with self._admitted():
            job = SampleJob((request.model, hosted.weights_sha256, setting), request.num_images, request.seed,
                            start + self.limits.deadline_s, hosted)
            images = await self._before_deadline(job.deadline, self.batcher.submit(job))
        headers = {"X-Sampling-Seconds": f"{time.monotonic() - start:.4f}", "X-Steps": str(setting.steps),
                   "X-Weights-SHA256": hosted.weights_sha256}
        if request.format == "png":
            png = await asyncio.to_thread(grid_png, images, columns=request.columns)
            return Response(png, media_type="image/png", headers=headers)
        body = await asyncio.to_thread(json_body, images, request, hosted.name, setting, hosted.weights_sha256)
        return Response(body, media_type="application/json", headers=headers)

    @api.post("/path", response_class=Response, responses=sampling_responses(("image/png", "image/gif")))
    async def path(self, request: PathRequest) -> Response:
        """Denoising paths: x_t at evenly spaced steps, noise on the left; a PNG strip or an animated GIF; header X-Weights-SHA256."""
        start = time.monotonic()
        hosted, setting = await self._hosted(request)
        assert hosted.model is not None and hosted.schedule is not None
        with self._admitted():
            deadline = start + self.limits.deadline_s
            work = asyncio.to_thread(self._tracked, deadline, denoising_paths, hosted.model, hosted.schedule, setting,
                                     request.num_paths, request.snapshots, request.seed, self.precision)
            paths = await self._before_deadline(deadline, work)
        self._count("paths_sampled", request.num_paths)
        headers = {"X-Sampling-Seconds": f"{time.monotonic() - start:.4f}", "X-Steps": str(setting.steps),
                   "X-Weights-SHA256": hosted.weights_sha256}
        if request.format == "gif":
            return Response(path_gif(paths), media_type="image/gif", headers=headers)
        return Response(paths_png(paths), media_type="image/png", headers=headers)


def _number(args: dict[str, Any], key: str, kind: type, default: float, minimum: float) -> Any:
    """``args[key]`` (or ``default``) as ``kind`` (int or float), finite and at least ``minimum``, else a ValueError naming it."""
    raw = args.get(key, default)
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number ({kind.__name__}), got {raw!r}") from None
    if isinstance(raw, bool) or not math.isfinite(value) or value < minimum:
        raise ValueError(f"{key} must be a finite {kind.__name__} of at least {minimum:g}, got {raw!r}")
    return value


def parse_limits(args: dict[str, Any]) -> Limits:
    """The limits among ``args`` (strings from ``serve run`` are accepted), defaults for the rest."""
    defaults = Limits()
    return Limits(**{key: _number(args, key, kind, getattr(defaults, key), minimum)
                     for key, (kind, minimum) in LIMIT_ARGS.items()})


def build_app(args: dict[str, Any]) -> Application:
    """The app for ``serve run serve.app:build_app lab=PATH [num_cpus=1] [num_gpus=0.25] [max_replicas=4] [max_work=64000] ...``."""
    accepted = {"lab", "num_cpus", "num_gpus", "min_replicas", "max_replicas", "precision", *LIMIT_ARGS}
    unknown = sorted(set(args) - accepted)
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown}; accepted: {sorted(accepted)}")
    if not args.get("lab"):
        raise ValueError("the lab store is required: serve run serve.app:build_app lab=PATH_OR_URI")
    store = LabStore(str(args["lab"]))
    if not ModelRegistry(store).exists():
        raise ValueError(f"the lab store {store.root} has no models/ folder; run python -m jobs.pipeline first")
    low, high = _number(args, "min_replicas", int, 1, 1), _number(args, "max_replicas", int, 4, 1)
    if low > high:
        raise ValueError(f"need 1 <= min_replicas <= max_replicas, got {low} and {high}")
    cpus = _number(args, "num_cpus", float, 1, 0.01)
    limits = parse_limits(args)
    deployment = DiffusionServer.options(
        ray_actor_options={"num_gpus": _number(args, "num_gpus", float, 0, 0), "num_cpus": cpus},
        autoscaling_config={"min_replicas": low, "max_replicas": high, "target_ongoing_requests": 16},
        max_ongoing_requests=limits.max_queued + HEALTH_SLOTS,
        # a second line only: requests wait in Serve's router for a moment while it picks a replica,
        # so a bound as small as max_queued would answer (plain-text) 503s before the replica's own
        max_queued_requests=limits.max_queued + HEALTH_SLOTS,
        backpressure_config=BackpressureConfig(retry_after_s=1),
    )
    return deployment.bind(store.root, str(args.get("precision", "auto")), max(1, int(cpus)), limits)
