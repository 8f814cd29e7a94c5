"""The Ray Serve application: HTTP sampling from the denoisers of a lab store (FastAPI ingress, OpenAPI at /docs).

Concurrent /sample requests are gathered by ``@serve.batch`` and every group with the same
model and sampler settings runs as one sampling loop (one forward pass per step for all of
them); each request's rows draw from its own seeded generator, so a seed gives the same
images alone or batched. Start it with ``serve run serve.app:build_app lab=./lab``,
``serve deploy serve/config.yaml`` or ``python -m serve --lab ./lab``.
"""

# No `from __future__ import annotations` here: Serve rebuilds the routes inside each replica,
# where FastAPI must resolve the request models from real (not string) annotations.
import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.serve import Application

from diffusion.device import pick_device
from diffusion.images import grid_png, path_gif, paths_png
from diffusion.samplers import default_steps, denoising_paths, sample_stacked
from diffusion.store import LabStore
from serve.catalog import HostedModel, describe, evaluation_summary, load_catalog
from serve.schemas import MAX_IMAGES, PathRequest, SampleRequest, SamplingSettings

BATCH_WAIT_S = 0.05
"""How long a replica waits for more requests to join a batch."""

api = FastAPI(title="Diffusion Lab sampling API",
              description="Sample digits and denoising paths from the lab store's denoisers.")


@dataclass(frozen=True)
class SampleJob:
    """One request's share of a batch: its settings (the grouping key), image count and seed."""

    key: tuple[str, str, int, float]  # model, sampler, steps, eta
    num_images: int
    seed: int


@serve.deployment(
    max_ongoing_requests=64,
    autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 16},
    health_check_period_s=10,
)
@serve.ingress(api)
class DiffusionServer:
    """Hosts every denoiser of one lab store; a model that fails to load is listed as unavailable."""

    def __init__(self, lab: str, precision: str = "auto", threads: int = 1) -> None:
        torch.set_num_threads(max(1, threads))  # the replica's CPU share (Ray reserves num_cpus for it)
        self.store = LabStore(lab)
        self.device = pick_device("auto")
        self.precision = precision
        self.catalog = load_catalog(self.store, self.device)
        self.counters: dict[str, int] = defaultdict(int)

    # ---- validation shared by the routes ------------------------------------------------------
    def _hosted(self, settings: SamplingSettings) -> tuple[HostedModel, int]:
        """The loaded model and the step count a request resolves to, or a 4xx naming the problem."""
        hosted = self.catalog.get(settings.model)
        if hosted is None:
            accepted = ", ".join(n for n, h in self.catalog.items() if h.loaded) or "none"
            raise HTTPException(404, f"model: unknown model {settings.model!r}; hosted: {accepted}")
        if not hosted.loaded:
            raise HTTPException(409, f"model: {settings.model!r} is unavailable ({hosted.error})")
        assert hosted.schedule is not None
        steps = settings.steps or default_steps(settings.sampler, hosted.schedule)
        if steps > hosted.timesteps:
            raise HTTPException(422, f"steps: must be between 1 and {hosted.timesteps} (model {settings.model!r}'s T), got {steps}")
        return hosted, steps

    # ---- batched sampling ---------------------------------------------------------------------
    @serve.batch(max_batch_size=MAX_IMAGES, batch_wait_timeout_s=BATCH_WAIT_S,
                 batch_size_fn=lambda jobs: sum(job.num_images for job in jobs))
    async def _sample_batch(self, jobs: list[SampleJob]) -> list[torch.Tensor]:
        return await asyncio.to_thread(self._run_groups, jobs)

    def _run_groups(self, jobs: list[SampleJob]) -> list[torch.Tensor]:
        """One sampling loop per distinct (model, sampler, steps, eta) among ``jobs``."""
        groups: dict[tuple[str, str, int, float], list[int]] = defaultdict(list)
        for index, job in enumerate(jobs):
            groups[job.key].append(index)
        results: list[torch.Tensor | None] = [None] * len(jobs)
        for (model, sampler, steps, eta), indices in groups.items():
            hosted = self.catalog[model]
            assert hosted.model is not None and hosted.schedule is not None
            requests = [(jobs[i].num_images, jobs[i].seed) for i in indices]
            images = sample_stacked(hosted.model, hosted.schedule, requests, sampler, steps, eta, self.precision)
            for i, chunk in zip(indices, images):
                results[i] = chunk.cpu()
            self.counters["sampling_loops"] += 1
            self.counters["forward_passes"] += steps
        self.counters["requests_sampled"] += len(jobs)
        self.counters["images_sampled"] += sum(job.num_images for job in jobs)
        return [r for r in results if r is not None]

    # ---- routes -------------------------------------------------------------------------------
    @api.get("/healthz")
    def healthz(self) -> dict[str, Any]:
        """Liveness, the number of loaded models, and how much batching there has been."""
        loaded = sum(h.loaded for h in self.catalog.values())
        return {"status": "ok", "loaded_models": loaded, "unavailable_models": len(self.catalog) - loaded,
                "device": self.device.type, **self.counters}

    @api.get("/models")
    def models(self) -> list[dict[str, Any]]:
        """Every hosted model: config, parameters, FD and floor from the evaluation tables, loaded or why not."""
        evaluation = evaluation_summary(self.store)
        return [describe(hosted, evaluation.get(name)) for name, hosted in self.catalog.items()]

    @api.post("/sample", responses={200: {"content": {"image/png": {}, "application/json": {}}}})
    async def sample(self, request: SampleRequest) -> Response:
        """``num_images`` samples as a PNG grid, or as JSON arrays in [0, 1] (shape N x 28 x 28)."""
        hosted, steps = self._hosted(request)
        start = time.perf_counter()
        images = await self._sample_batch(SampleJob((request.model, request.sampler, steps, request.eta),
                                                    request.num_images, request.seed))
        seconds = time.perf_counter() - start
        headers = {"X-Sampling-Seconds": f"{seconds:.4f}", "X-Steps": str(steps)}
        if request.format == "png":
            return Response(grid_png(images, columns=request.columns), media_type="image/png", headers=headers)
        unit = ((images.float() + 1) / 2).clamp(0, 1)[:, 0]
        return JSONResponse({"model": hosted.name, "sampler": request.sampler, "steps": steps, "eta": request.eta,
                             "seed": request.seed, "shape": list(unit.shape),
                             "images": unit.double().mul(10_000).round().div(10_000).tolist()}, headers=headers)

    @api.post("/path", responses={200: {"content": {"image/png": {}, "image/gif": {}}}})
    async def path(self, request: PathRequest) -> Response:
        """Denoising paths: x_t at evenly spaced steps, noise on the left; a PNG strip or an animated GIF."""
        hosted, steps = self._hosted(request)
        assert hosted.model is not None and hosted.schedule is not None
        paths = await asyncio.to_thread(denoising_paths, hosted.model, hosted.schedule, request.num_paths,
                                        request.snapshots, request.sampler, steps, request.eta, request.seed,
                                        self.precision)
        if request.format == "gif":
            return Response(path_gif(paths), media_type="image/gif")
        return Response(paths_png(paths), media_type="image/png")


def build_app(args: dict[str, Any]) -> Application:
    """The application for ``serve run serve.app:build_app lab=PATH [num_cpus=1] [num_gpus=0.25] [min_replicas=1] [max_replicas=4]``."""
    accepted = {"lab", "num_cpus", "num_gpus", "min_replicas", "max_replicas", "precision"}
    unknown = sorted(set(args) - accepted)
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown}; accepted: {sorted(accepted)}")
    if not args.get("lab"):
        raise ValueError("the lab store is required: serve run serve.app:build_app lab=PATH_OR_URI")
    store = LabStore(str(args["lab"]))
    if not store.exists("models"):
        raise ValueError(f"the lab store {store.root} has no models/ folder; run python -m jobs.pipeline first")
    low, high = int(args.get("min_replicas", 1)), int(args.get("max_replicas", 4))
    if not 1 <= low <= high:
        raise ValueError(f"need 1 <= min_replicas <= max_replicas, got {low} and {high}")
    cpus = float(args.get("num_cpus", 1))
    if cpus <= 0:
        raise ValueError(f"num_cpus must be positive, got {cpus}")
    deployment = DiffusionServer.options(
        ray_actor_options={"num_gpus": float(args.get("num_gpus", 0)), "num_cpus": cpus},
        autoscaling_config={"min_replicas": low, "max_replicas": high, "target_ongoing_requests": 16},
    )
    return deployment.bind(store.root, str(args.get("precision", "auto")), max(1, int(cpus)))

