"""The Serve app for real: Ray in local mode, Serve on a free port, HTTP from many clients, a corrupt model beside good ones."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from diffusion.config import TrainConfig, VAERun
from diffusion.embeddings.training import train_embedder
from diffusion.images import grid_png
from diffusion.recipe import build_denoiser_run
from diffusion.store import LabStore
from jobs.evaluate import merge_scores
from jobs.evaluation import compute_floors, evaluate_model
from jobs.presets import EvaluateSettings, SamplerSetting
from tests.conftest import tiny_run
from tests.servers import serve_app

CPU = torch.device("cpu")


def build_lab(root: Path) -> None:
    """Two denoisers trained for a few steps and scored, one with cut-short weights, one without a card."""
    store = LabStore(root)
    train_embedder(store, "vae", VAERun(train=TrainConfig(steps=30, batch_size=64, warmup_steps=2, precision="fp32")), CPU)
    for name, arch in (("mlp", "mlp"), ("unet", "unet"), ("broken", "cnn"), ("half", "cnn")):
        job = build_denoiser_run(tiny_run(arch, steps=10), CPU)
        job.trainer.fit()
        store.export_model(name, job.ema_model, job.run)
    settings = EvaluateSettings(num_images=32, samplers=(SamplerSetting("ddim", 5),), embeddings=("vae",),
                                pictures=SamplerSetting("ddim", 5), robustness=None, floor_draws=2)
    floors = compute_floors(store, "mnist-embedded", settings, CPU)
    merge_scores(store, pd.DataFrame([row for m in ("mlp", "unet") for row in evaluate_model(store, m, settings, floors, CPU)]))
    weights = root / "models" / "broken" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    (root / "models" / "half" / "card.json").unlink()


def call(base: str, method: str, path: str, body: object | bytes | None = None, timeout: float = 120) -> tuple[int, str, bytes]:
    """(status, content type, body) of one HTTP request; 4xx and 5xx are returned, not raised."""
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    lab = tmp_path_factory.mktemp("serve") / "lab"
    build_lab(lab)
    with serve_app(lab) as base:
        yield base


def pixels(png: bytes) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.int32))


def health(base: str) -> dict:
    status, _, body = call(base, "GET", "/healthz")
    assert status == 200
    return json.loads(body)


def test_models_lists_every_model_with_its_evaluation_or_why_it_is_unavailable(server: str) -> None:
    assert health(server)["loaded_models"] == 2 and health(server)["unavailable_models"] == 2
    status, _, body = call(server, "GET", "/models")
    models = {m["name"]: m for m in json.loads(body)}
    assert status == 200 and set(models) == {"mlp", "unet", "broken", "half"}
    for name in ("mlp", "unet"):
        assert models[name]["loaded"] and models[name]["parameters"] > 0 and models[name]["timesteps"] == 50
        evaluation = models[name]["evaluation"]
        assert evaluation["fd"] > 0 and evaluation["floor"] > 0
        assert evaluation["ratio"] == pytest.approx(evaluation["fd"] / evaluation["floor"])
    assert not models["broken"]["loaded"] and "checksum" in models["broken"]["error"]
    assert not models["half"]["loaded"] and "card" in models["half"]["error"]
    assert call(server, "GET", "/docs")[0] == 200 and call(server, "GET", "/openapi.json")[0] == 200


def test_sample_returns_a_grid_or_arrays_and_a_seed_fixes_the_images(server: str) -> None:
    request = {"model": "unet", "num_images": 6, "sampler": "ddim", "steps": 5, "seed": 7, "columns": 3}
    status, kind, png = call(server, "POST", "/sample", request)
    assert status == 200 and kind == "image/png"
    assert Image.open(io.BytesIO(png)).size == Image.open(io.BytesIO(grid_png(torch.zeros(6, 1, 28, 28), columns=3))).size
    assert call(server, "POST", "/sample", request)[2] == png  # same seed and settings, same images
    assert call(server, "POST", "/sample", {**request, "seed": 8})[2] != png

    status, kind, body = call(server, "POST", "/sample", {**request, "format": "json", "sampler": "ddpm", "steps": None})
    arrays = json.loads(body)
    assert status == 200 and kind == "application/json"
    assert arrays["shape"] == [6, 28, 28] and arrays["steps"] == 50  # DDPM defaults to all T steps
    values = torch.tensor(arrays["images"])
    assert values.shape == (6, 28, 28) and 0.0 <= values.min() and values.max() <= 1.0


def test_path_returns_a_strip_or_an_animation(server: str) -> None:
    status, kind, png = call(server, "POST", "/path", {"model": "mlp", "num_paths": 2, "snapshots": 4, "steps": 8})
    assert status == 200 and kind == "image/png" and png[:4] == b"\x89PNG"
    status, kind, gif = call(server, "POST", "/path", {"model": "mlp", "format": "gif", "steps": 8})
    assert status == 200 and kind == "image/gif" and gif[:3] == b"GIF"


@pytest.mark.parametrize(
    "path,body,status,named",
    [
        ("/sample", {"model": "vit"}, 404, "unknown model 'vit'; hosted: mlp, unet"),
        ("/sample", {"model": "broken"}, 409, "checksum"),
        ("/sample", {"model": "unet", "num_images": 0}, 422, "num_images"),
        ("/sample", {"model": "unet", "num_images": 257}, 422, "num_images"),
        ("/sample", {"model": "unet", "num_images": "ten"}, 422, "num_images"),
        ("/sample", {"model": "unet", "steps": 0}, 422, "steps"),
        ("/sample", {"model": "unet", "steps": 51}, 422, "steps: must be between 1 and 50"),
        ("/sample", {"model": "unet", "sampler": "euler"}, 422, "sampler"),
        ("/sample", {"model": "unet", "eta": 2}, 422, "eta"),
        ("/sample", {"model": "unet", "sampler": "dpmpp2m", "eta": 0.5}, 422, "eta: dpmpp2m is a deterministic solver"),
        ("/sample", {"model": "unet", "seed": -1}, 422, "seed"),
        ("/sample", {"model": "unet", "format": "bmp"}, 422, "format"),
        ("/sample", {"model": "unet", "nimages": 3}, 422, "nimages"),
        ("/sample", {}, 422, "model"),
        ("/sample", b"{not json", 422, "json"),
        ("/sample", [1, 2], 422, "body"),
        ("/path", {"model": "unet", "num_paths": 9}, 422, "num_paths"),
        ("/path", {"model": "unet", "snapshots": 1}, 422, "snapshots"),
    ],
)
def test_bad_input_gets_a_4xx_naming_the_field_and_the_service_keeps_answering(
    server: str, path: str, body: object, status: int, named: str
) -> None:
    got, _, message = call(server, "POST", path, body)
    assert got == status, message
    assert named.lower() in message.decode().lower(), message
    assert health(server)["status"] == "ok"


def test_32_concurrent_clients_are_batched_without_errors(server: str) -> None:
    before = health(server)
    requests = [{"model": "unet", "num_images": 2, "steps": 5, "seed": i} for i in range(256)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda body: call(server, "POST", "/sample", body), requests))
    assert [status for status, _, _ in results] == [200] * len(requests)
    after = health(server)
    served = after["requests_sampled"] - before.get("requests_sampled", 0)
    loops = after["sampling_loops"] - before.get("sampling_loops", 0)
    assert served == len(requests)
    assert loops < len(requests) / 4, (loops, served)  # requests shared sampling loops
    # a request batched with others gets the images it gets alone (up to rounding)
    alone = pixels(call(server, "POST", "/sample", requests[5])[2])
    assert (alone - pixels(results[5][2])).abs().max() <= 2
