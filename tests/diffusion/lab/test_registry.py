"""The model registry: exports rebuild the same network from the card alone; damaged, stray or pickled entries are refused or listed with the reason."""

import pickle
import shutil
from pathlib import Path

import pytest
import torch

from diffusion.core.models import build_denoiser
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import CheckpointError, LabStore, LabStoreError, StaleMetrics
from tests.conftest import tiny_run


@pytest.fixture()
def store(tmp_path) -> LabStore:
    return LabStore(tmp_path / "lab")


@pytest.fixture()
def models(store: LabStore) -> ModelRegistry:
    return ModelRegistry(store)


@pytest.fixture()
def exported(models: ModelRegistry):
    run = tiny_run("attnunet")
    torch.manual_seed(0)
    model = build_denoiser(run.model)
    models.export_model("m1", model, run, {"fd": 1.5})
    return model, run


def test_round_trip_rebuilds_the_same_network_from_the_card_alone(models: ModelRegistry, exported) -> None:
    model, run = exported
    stored = models.load_denoiser("m1")
    assert stored.run == run and stored.card.metrics == {"fd": 1.5}
    assert stored.card.parameters == sum(p.numel() for p in model.parameters())
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([3, 40])
    torch.testing.assert_close(stored.model(x, t), model.eval()(x, t), rtol=0, atol=0)
    assert models.list_models() == ["m1"]


def test_a_pickle_where_weights_belong_is_refused(store: LabStore, models: ModelRegistry, exported) -> None:
    weights = store.path("models/m1/weights.safetensors")
    torch.save(exported[0].state_dict(), weights)  # a zip holding a pickle
    with pytest.raises(CheckpointError, match=r"weights.safetensors: refusing to load a zip archive"):
        models.load_denoiser("m1")
    with open(weights, "wb") as handle:
        pickle.dump({"evil": 1}, handle)
    with pytest.raises(CheckpointError, match=r"weights.safetensors: refusing to load a Python pickle"):
        models.load_denoiser("m1")


def test_truncated_and_corrupted_weights_name_the_file(store: LabStore, models: ModelRegistry, exported) -> None:
    weights = store.path("models/m1/weights.safetensors")
    data = open(weights, "rb").read()
    open(weights, "wb").write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"models/m1/weights.safetensors: checksum mismatch .* truncated or corrupted"):
        models.load_denoiser("m1")
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF
    open(weights, "wb").write(bytes(flipped))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        models.load_denoiser("m1")


def test_a_corrupted_card_names_the_file(store: LabStore, models: ModelRegistry, exported) -> None:
    open(store.path("models/m1/card.json"), "w").write("{not json")
    with pytest.raises(CheckpointError, match=r"models/m1/card.json: not valid JSON"):
        models.load_denoiser("m1")


def test_missing_model_names_the_path(models: ModelRegistry) -> None:
    with pytest.raises(LabStoreError, match=r"models/ghost/card.json does not exist"):
        models.load_denoiser("ghost")


def test_models_without_a_card_are_not_listed(store: LabStore, models: ModelRegistry, exported) -> None:
    store.write_bytes("models/half/weights.safetensors", b"partial export")
    assert models.list_models() == ["m1"]


def test_names_that_would_escape_the_store_are_refused(models: ModelRegistry) -> None:
    for bad in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(ValueError, match="is not accepted"):
            models.model_path(bad)


def test_stray_entries_are_listed_with_the_reason_never_raised(store: LabStore, models: ModelRegistry, exported) -> None:
    folder = Path(store.path("models"))
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "bad name").mkdir()
    shutil.copy(folder / "m1" / "card.json", folder / "bad name" / "card.json")
    (folder / "half").mkdir()
    (folder / "damaged").mkdir()
    (folder / "damaged" / "card.json").write_text("{cut sho")
    assert models.list_models() == ["damaged", "m1"]  # a card file, whatever it holds
    assert models.list_models(kind="denoiser") == ["m1"]
    entries = {e.name: e for e in models.model_entries()}
    assert sorted(entries) == [".DS_Store", "bad name", "damaged", "half", "m1"]
    assert entries["m1"].available and entries["m1"].card == models.read_card("m1")
    assert not any(e.available for n, e in entries.items() if n != "m1")
    assert "'.DS_Store' is not accepted" in entries[".DS_Store"].error
    assert "'bad name' is not accepted" in entries["bad name"].error
    assert "has no card.json" in entries["half"].error
    assert "models/damaged/card.json: not valid JSON" in entries["damaged"].error
    assert "python -m jobs.sweep" in entries["damaged"].error
    assert models.entry("half") == entries["half"] and models.entry("m1") == entries["m1"]  # what Serve hosts by


def test_a_damaged_card_is_a_lab_store_error_naming_the_job_that_rewrites_it(store: LabStore, models: ModelRegistry, exported) -> None:
    open(store.path("models/m1/card.json"), "w").write('{"format": "diffusion-lab/model", "vers')
    with pytest.raises(LabStoreError, match=r"models/m1/card.json: not valid JSON .* rerun python -m jobs.sweep"):
        models.read_card("m1")


def test_metrics_are_refused_for_a_card_whose_weights_changed(models: ModelRegistry, exported) -> None:
    model, run = exported
    measured_on = models.read_card("m1").weights_sha256
    assert models.update_metrics("m1", {"fd_vae": 2.0}, expected_sha256=measured_on).metrics["fd_vae"] == 2.0
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    models.export_model("m1", model, run)  # re-exported while the score was being measured
    with pytest.raises(StaleMetrics, match=r"models/m1/card.json: the weights changed since these metrics were measured"):
        models.update_metrics("m1", {"fd_vae": 9.0}, expected_sha256=measured_on)
    assert "fd_vae" not in models.read_card("m1").metrics
