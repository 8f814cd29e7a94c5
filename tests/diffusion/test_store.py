import pickle

import pandas as pd
import pytest
import torch

from diffusion.checkpoint import CheckpointError
from diffusion.models import build_denoiser
from diffusion.store import LabStore, LabStoreError
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
