"""The Serve app for real: Ray in local mode, Serve on a free port, HTTP from many clients, stray and damaged
entries beside good models, and a model re-exported while Serve runs."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from diffusion.core.config import TrainConfig, VAERun
from diffusion.core.images import grid_png
from diffusion.core.samplers import SamplerSetting
from diffusion.embeddings.loading import current_embeddings
from diffusion.embeddings.training import train_embedder
from diffusion.lab.leaderboard import leaderboard
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore
from diffusion.lab.tables import SCORES, TableStore
from jobs.evaluate import merge_scores
from jobs.model_tasks import compute_floors, evaluate_model
from jobs.presets import EvaluateSettings
from tests.serve.client import CPU, call, call_full, detail, export_tiny, health, pixels
from tests.servers import serve_app

pytestmark = pytest.mark.slow  # starts Ray Serve

GOOD = ("mlp", "unet", "fresh")
"""The models that load; ``fresh`` is re-exported while Serve runs."""


def build_lab(root: Path) -> None:
    """Denoisers trained for a few steps (two scored), and beside them: cut-short weights, a missing card, a damaged
    card, a folder whose name the store refuses, and a hidden file."""
    store = LabStore(root)
    train_embedder(store, "vae", VAERun(train=TrainConfig(steps=30, batch_size=64, warmup_steps=2, precision="fp32")), CPU)
    for name, arch in (("mlp", "mlp"), ("unet", "unet"), ("broken", "cnn"), ("half", "cnn"), ("garbled", "cnn"),
                       ("fresh", "cnn")):
        export_tiny(store, name, arch)
    settings = EvaluateSettings(num_images=32, samplers=(SamplerSetting("ddim", 5),), embeddings=("vae",),
                                pictures=SamplerSetting("ddim", 5), robustness=None, floor_draws=2)
    floors = compute_floors(store, "mnist-embedded", settings, CPU)
    merge_scores(store, pd.DataFrame([row for m in ("mlp", "unet") for row in evaluate_model(store, m, settings, floors, CPU)]))
    weights = root / "models" / "broken" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    (root / "models" / "half" / "card.json").unlink()
    card = root / "models" / "garbled" / "card.json"
    card.write_bytes(card.read_bytes()[:40])
    (root / "models" / "bad name").mkdir()
    (root / "models" / "bad name" / "card.json").write_bytes((root / "models" / "mlp" / "card.json").read_bytes())
    (root / "models" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve") / "lab"
    build_lab(root)
    return root


@pytest.fixture(scope="module")
def server(lab: Path) -> Iterator[str]:
    with serve_app(lab) as base:
        yield base


def test_models_lists_every_model_with_its_evaluation_or_why_it_is_unavailable(server: str, lab: Path) -> None:
    assert health(server)["loaded_models"] == 3 and health(server)["unavailable_models"] == 4
    status, _, body = call(server, "GET", "/models")
    models = {m["name"]: m for m in json.loads(body)}
    assert status == 200 and set(models) == {*GOOD, "broken", "half", "garbled", "bad name"}  # no .DS_Store
    vae = ModelRegistry(LabStore(lab)).read_card("vae")
    for name in ("mlp", "unet"):
        assert models[name]["loaded"] and models[name]["parameters"] > 0 and models[name]["timesteps"] == 50
        evaluation = models[name]["evaluation"]
        assert evaluation["fd"] > 0 and evaluation["floor"] > 0
        assert evaluation["ratio"] == pytest.approx(evaluation["fd"] / evaluation["floor"])
        assert not evaluation["stale"] and evaluation["embedding_sha256"] == vae.weights_sha256  # the VAE it was scored in
    # the leaderboard's ranks, ties shared (1, 1 where the two intervals overlap, as they may for untrained models)
    board = leaderboard(TableStore(LabStore(lab)).read(SCORES), current_embeddings(LabStore(lab)))
    served = {name: models[name]["evaluation"]["rank"] for name in ("mlp", "unet")}
    assert served == {name: rank for name, rank in zip(board.model, board["rank"]) if name in served}
    assert 1 in served.values() and set(served.values()) <= {1, 2}
    assert not models["broken"]["loaded"] and "checksum" in models["broken"]["error"]
    assert not models["half"]["loaded"] and "card" in models["half"]["error"]
    assert not models["garbled"]["loaded"] and "not valid JSON" in models["garbled"]["error"]
    assert not models["bad name"]["loaded"] and "'bad name' is not accepted" in models["bad name"]["error"]
    assert models["fresh"]["weights_sha256"] == ModelRegistry(LabStore(lab)).read_card("fresh").weights_sha256
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
        ("/sample", {"model": "vit"}, 404, "unknown model 'vit'; hosted: fresh, mlp, unet"),
        ("/sample", {"model": "bad name"}, 409, "'bad name' is not accepted"),
        ("/sample", {"model": "garbled"}, 409, "not valid json"),
        ("/sample", {"model": ".DS_Store"}, 404, "unknown model"),
        ("/sample", b'{"model": "unet", "eta": NaN}', 422, "eta: input should be a finite number"),
        ("/sample", b'{"model": "unet", "eta": Infinity}', 422, "eta: input should be a finite number"),
        ("/path", b'{"model": "unet", "eta": -Infinity}', 422, "eta: input should be a finite number"),
        ("/sample", {"model": "unet", "seed": True}, 422, "seed: input should be a valid integer"),
        ("/sample", {"model": "unet", "num_images": "256"}, 422, "num_images: input should be a valid integer"),
        ("/sample", {"model": "unet", "steps": "5"}, 422, "steps"),
        ("/sample", {"model": "unet", "num_images": 2.0}, 422, "num_images"),
        ("/sample", {"model": "unet", "eta": "0.5"}, 422, "eta"),
        ("/sample", {"model": 7}, 422, "model"),
        ("/path", {"model": "unet", "num_paths": True}, 422, "num_paths"),
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
    got, kind, message = call(server, "POST", path, body)
    assert got == status, message
    assert kind == "application/json" and named.lower() in detail(message).lower(), message
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


def test_every_sampling_response_names_the_weights_it_sampled(server: str, lab: Path) -> None:
    for name in GOOD:
        sha = ModelRegistry(LabStore(lab)).read_card(name).weights_sha256
        for path, body in (("/sample", {"model": name, "num_images": 2, "steps": 3}), ("/path", {"model": name, "steps": 3})):
            status, headers, _ = call_full(server, "POST", path, body)
            assert status == 200 and headers["X-Weights-SHA256"] == sha, (name, path)


def test_a_model_re_exported_while_serving_is_picked_up_without_a_restart(server: str, lab: Path) -> None:
    store = LabStore(lab)
    request = {"model": "fresh", "num_images": 4, "steps": 5, "seed": 3, "format": "json"}
    status, headers, before = call_full(server, "POST", "/sample", request)
    old = ModelRegistry(store).read_card("fresh").weights_sha256
    assert status == 200 and headers["X-Weights-SHA256"] == old
    new = export_tiny(store, "fresh", "cnn", train_steps=3).weights_sha256  # other weights, same name
    assert new != old
    answers = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, headers, after = call_full(server, "POST", "/sample", request)
        answers.append((status, headers["X-Weights-SHA256"] if status == 200 else detail(after)))
        if answers[-1] == (200, new):
            break
        time.sleep(0.2)
    assert answers[-1] == (200, new), answers  # no restart needed
    assert {status for status, _ in answers} == {200}, answers  # no 409 while it reloads
    assert json.loads(after)["images"] != json.loads(before)["images"]  # same seed, new weights, new images
    assert health(server)["reloads"] >= 1
