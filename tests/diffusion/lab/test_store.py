import os
import pickle
import shutil
import stat
from pathlib import Path

import pandas as pd
import pytest
import torch

from diffusion.core.models import build_denoiser
from diffusion.lab.checkpoint import CheckpointError
from diffusion.lab.store import InvalidName, LabStore, LabStoreError, StaleMetrics, check_name
from tests.conftest import tiny_run


@pytest.fixture()
def store(tmp_path) -> LabStore:
    return LabStore(tmp_path / "lab")


@pytest.fixture()
def exported(store: LabStore):
    run = tiny_run("attnunet")
    torch.manual_seed(0)
    model = build_denoiser(run.model)
    store.export_model("m1", model, run, {"fd": 1.5})
    return model, run


def test_round_trip_rebuilds_the_same_network_from_the_card_alone(store: LabStore, exported) -> None:
    model, run = exported
    stored = store.load_denoiser("m1")
    assert stored.run == run and stored.card.metrics == {"fd": 1.5}
    assert stored.card.parameters == sum(p.numel() for p in model.parameters())
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([3, 40])
    torch.testing.assert_close(stored.model(x, t), model.eval()(x, t), rtol=0, atol=0)
    assert store.list_models() == ["m1"]


def test_a_pickle_where_weights_belong_is_refused(store: LabStore, exported) -> None:
    weights = store.path("models/m1/weights.safetensors")
    torch.save(exported[0].state_dict(), weights)  # a zip holding a pickle
    with pytest.raises(CheckpointError, match=r"weights.safetensors: refusing to load a zip archive"):
        store.load_denoiser("m1")
    with open(weights, "wb") as handle:
        pickle.dump({"evil": 1}, handle)
    with pytest.raises(CheckpointError, match=r"weights.safetensors: refusing to load a Python pickle"):
        store.load_denoiser("m1")


def test_truncated_and_corrupted_weights_name_the_file(store: LabStore, exported) -> None:
    weights = store.path("models/m1/weights.safetensors")
    data = open(weights, "rb").read()
    open(weights, "wb").write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"models/m1/weights.safetensors: checksum mismatch .* truncated or corrupted"):
        store.load_denoiser("m1")
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF
    open(weights, "wb").write(bytes(flipped))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        store.load_denoiser("m1")


def test_a_corrupted_card_names_the_file(store: LabStore, exported) -> None:
    open(store.path("models/m1/card.json"), "w").write("{not json")
    with pytest.raises(CheckpointError, match=r"models/m1/card.json: not valid JSON"):
        store.load_denoiser("m1")


def test_missing_model_names_the_path(store: LabStore) -> None:
    with pytest.raises(LabStoreError, match=r"models/ghost/card.json does not exist"):
        store.load_denoiser("ghost")


def test_models_without_a_card_are_not_listed(store: LabStore, exported) -> None:
    store.write_bytes("models/half/weights.safetensors", b"partial export")
    assert store.list_models() == ["m1"]


def test_writes_are_atomic_and_leave_no_temporary_files(store: LabStore) -> None:
    store.write_bytes("a/b.bin", b"one")
    store.write_bytes("a/b.bin", b"two")
    assert store.read_bytes("a/b.bin") == b"two"
    assert store.list_dir("a") == ["b.bin"]


def test_tables_round_trip_through_parquet(store: LabStore) -> None:
    table = pd.DataFrame({"model": ["mlp", "unet"], "fd": [3.5, 1.25]})
    store.write_table("leaderboard", table)
    pd.testing.assert_frame_equal(store.read_table("leaderboard"), table)
    assert store.list_tables() == ["leaderboard"]


def test_names_that_would_escape_the_store_are_refused(store: LabStore) -> None:
    for bad in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(ValueError, match="is not accepted"):
            store.model_path(bad)


def test_a_file_uri_root_goes_through_pyarrow_filesystems(tmp_path) -> None:
    store = LabStore(f"file://{tmp_path}/lab")
    store.write_json("tables/probe.json", {"ok": True})
    assert store.read_json("tables/probe.json") == {"ok": True}
    assert store.uri("tune") == f"file://{tmp_path}/lab/tune"
    assert (tmp_path / "lab" / "tables" / "probe.json").exists()


def test_an_unknown_uri_scheme_is_a_clear_error() -> None:
    with pytest.raises(LabStoreError, match=r"lab store 'nosuch://bucket/lab' cannot be opened"):
        LabStore("nosuch://bucket/lab")


def test_a_name_with_a_trailing_newline_is_refused(store: LabStore) -> None:
    for bad in ("m1\n", "m1\r", "m1 ", "bad name"):
        with pytest.raises(InvalidName, match="is not accepted"):
            check_name(bad)
    assert issubclass(InvalidName, LabStoreError)


def test_stray_entries_are_listed_with_the_reason_never_raised(store: LabStore, exported) -> None:
    models = Path(store.path("models"))
    (models / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (models / "bad name").mkdir()
    shutil.copy(models / "m1" / "card.json", models / "bad name" / "card.json")
    (models / "half").mkdir()
    (models / "damaged").mkdir()
    (models / "damaged" / "card.json").write_text("{cut sho")
    assert store.list_models() == ["damaged", "m1"]  # a card file, whatever it holds
    assert store.list_models(kind="denoiser") == ["m1"]
    entries = {e.name: e for e in store.model_entries()}
    assert sorted(entries) == [".DS_Store", "bad name", "damaged", "half", "m1"]
    assert entries["m1"].available and entries["m1"].card == store.read_card("m1")
    assert not any(e.available for n, e in entries.items() if n != "m1")
    assert "'.DS_Store' is not accepted" in entries[".DS_Store"].error
    assert "'bad name' is not accepted" in entries["bad name"].error
    assert "has no card.json" in entries["half"].error
    assert "models/damaged/card.json: not valid JSON" in entries["damaged"].error
    assert "python -m jobs.sweep" in entries["damaged"].error


def test_a_damaged_card_is_a_lab_store_error_naming_the_job_that_rewrites_it(store: LabStore, exported) -> None:
    open(store.path("models/m1/card.json"), "w").write('{"format": "diffusion-lab/model", "vers')
    with pytest.raises(LabStoreError, match=r"models/m1/card.json: not valid JSON .* rerun python -m jobs.sweep"):
        store.read_card("m1")


def test_a_damaged_table_names_the_file_and_the_job_that_rewrites_it(store: LabStore) -> None:
    store.update_table("scores", pd.DataFrame({"model": ["a", "b"], "fd": [1.0, 2.0]}))
    path = Path(store.path("tables/scores.parquet"))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(LabStoreError, match=r"tables/scores.parquet is damaged \(.*\); rerun python -m jobs.evaluate to rewrite it"):
        store.read_table("scores")
    # the job that rewrites it can: the damaged file is set aside, not a second crash
    store.update_table("scores", pd.DataFrame({"model": ["c"], "fd": [3.0]}))
    assert store.read_table("scores").model.tolist() == ["c"]
    kept, aside = sorted(p.name for p in path.parent.iterdir())
    assert kept == "scores.parquet" and aside.startswith("scores.parquet.damaged-")
    assert store.list_tables() == ["scores"]


def test_update_table_replaces_the_rows_of_its_models_and_keeps_the_others(store: LabStore) -> None:
    store.update_table("scores", pd.DataFrame({"model": ["a", "a", "b"], "fd": [1.0, 1.5, 2.0]}))
    store.update_table("scores", pd.DataFrame({"model": ["b", "c"], "fd": [2.5, 3.0]}))
    assert store.read_table("scores").sort_values("fd").to_dict("list") == {"model": ["a", "a", "b", "c"], "fd": [1.0, 1.5, 2.5, 3.0]}
    store.update_table("scores", pd.DataFrame(), keys=["a"])  # named keys without rows: their rows go
    assert sorted(store.read_table("scores").model) == ["b", "c"]
    with pytest.raises(ValueError, match="no 'model' column"):
        store.update_table("scores", pd.DataFrame({"fd": [1.0]}))


def test_writes_are_fsynced_then_renamed_then_the_folder_fsynced(store: LabStore, monkeypatch) -> None:
    events: list[str] = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(descriptor: int) -> None:
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "fsync file")
        fsync(descriptor)

    def recording_replace(source: str, target: str) -> None:
        events.append("rename")
        replace(source, target)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    store.write_bytes("a/b.bin", b"data")
    assert events == ["fsync file", "rename", "fsync folder"]


def test_metrics_are_refused_for_a_card_whose_weights_changed(store: LabStore, exported) -> None:
    model, run = exported
    measured_on = store.read_card("m1").weights_sha256
    assert store.update_metrics("m1", {"fd_vae": 2.0}, expected_sha256=measured_on).metrics["fd_vae"] == 2.0
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    store.export_model("m1", model, run)  # re-exported while the score was being measured
    with pytest.raises(StaleMetrics, match=r"models/m1/card.json: the weights changed since these metrics were measured"):
        store.update_metrics("m1", {"fd_vae": 9.0}, expected_sha256=measured_on)
    assert "fd_vae" not in store.read_card("m1").metrics


def test_update_table_with_named_keys_replaces_them_as_the_sweep_does(store: LabStore) -> None:
    store.update_table("trials", pd.DataFrame({"model": ["mlp", "unet", "cnn"], "trial_id": ["a", "b", "c"]}))
    store.update_table("trials", pd.DataFrame({"model": ["mlp"], "trial_id": ["d"]}), keys=["mlp", "unet"])
    assert store.read_table("trials").sort_values("trial_id").trial_id.tolist() == ["c", "d"]
    with pytest.raises(ValueError, match="outside keys"):
        store.update_table("trials", pd.DataFrame({"model": ["cnn"], "trial_id": ["e"]}), keys=["mlp"])
    with pytest.raises(ValueError, match="no 'model' column"):
        store.update_table("trials", pd.DataFrame({"trial_id": ["e"]}), keys=["mlp"])
