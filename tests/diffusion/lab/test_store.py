import os
import stat

import pytest

from diffusion.lab.store import InvalidName, LabStore, LabStoreError, check_name


@pytest.fixture()
def store(tmp_path) -> LabStore:
    return LabStore(tmp_path / "lab")


def test_writes_are_atomic_and_leave_no_temporary_files(store: LabStore) -> None:
    store.write_bytes("a/b.bin", b"one")
    store.write_bytes("a/b.bin", b"two")
    assert store.read_bytes("a/b.bin") == b"two"
    assert store.list_dir("a") == ["b.bin"]


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
