"""What the Serve tests share: an HTTP client that returns errors instead of raising, and tiny models to export."""

from __future__ import annotations

import dataclasses
import io
import json
import urllib.error
import urllib.request
from email.message import Message

import numpy as np
import torch
from PIL import Image

from diffusion.core.config import DiffusionConfig
from diffusion.core.models import denoiser_config
from diffusion.lab.checkpoint import ModelCard
from diffusion.lab.recipe import build_denoiser_run
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore
from tests.conftest import tiny_run

CPU = torch.device("cpu")


def call_full(base: str, method: str, path: str, body: object | bytes | None = None,
              timeout: float = 120) -> tuple[int, Message, bytes]:
    """(status, headers, body) of one HTTP request; 4xx and 5xx are returned, not raised."""
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def call(base: str, method: str, path: str, body: object | bytes | None = None, timeout: float = 120) -> tuple[int, str, bytes]:
    """(status, content type, body) of one HTTP request; 4xx and 5xx are returned, not raised."""
    status, headers, content = call_full(base, method, path, body, timeout)
    return status, headers.get("Content-Type", ""), content


def health(base: str) -> dict:
    """GET /healthz, which must answer 200."""
    status, _, body = call(base, "GET", "/healthz", timeout=30)
    assert status == 200, body
    return json.loads(body)


def detail(body: bytes) -> str:
    """The message of an error response, which must be JSON with a non-empty ``detail`` string."""
    message = json.loads(body)["detail"]
    assert isinstance(message, str) and message, body
    return message


def pixels(png: bytes) -> torch.Tensor:
    """A PNG's grey levels as integers."""
    return torch.from_numpy(np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.int32))


def export_tiny(store: LabStore, name: str, arch: str = "unet", train_steps: int = 10, timesteps: int = 50,
                full_size: bool = False) -> ModelCard:
    """Train a tiny ``arch`` (``full_size``: at its default width and depth) for ``train_steps`` on a ``timesteps``-level
    schedule and export it as ``name``."""
    run = dataclasses.replace(tiny_run(arch, steps=train_steps), diffusion=DiffusionConfig(timesteps=timesteps))
    if full_size:
        run = dataclasses.replace(run, model=denoiser_config(arch))
    job = build_denoiser_run(run, CPU)
    job.trainer.fit()
    return ModelRegistry(store).export_model(name, job.ema_model, job.run)
