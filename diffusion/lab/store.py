"""The lab store: one root (a local path or a pyarrow filesystem URI such as s3://bucket/lab).

This module owns the root and the layout; every reader and writer goes through it or through
the two modules built on it, ``diffusion.lab.registry`` (models and their cards) and
``diffusion.lab.tables`` (result tables).

    <root>/models/<name>/weights.safetensors   weights (safetensors, never a pickle)
    <root>/models/<name>/card.json             config, parameter count, checksum, metrics
    <root>/models/<name>/metrics/<part>.json   metrics added on object stores (merged by read_card)
    <root>/models/<name>/<image>.png|.gif      sample grid, denoising paths
    <root>/tables/<name>.parquet               result tables
    <root>/tables/<name>.parts/<part>.parquet  row updates on object stores (merged on read)
    <root>/data/<name>.safetensors|.json       data set copies and their manifests
    <root>/runs/<name>/state.pt                resume state of a standalone training run
    <root>/tune/                               Ray Tune's storage_path
    <root>/logs/<job>-<UTC time>.log           Ray's and Tune's output of a job (jobs.console)
    <root>/.locks/                             lock files of local writers

What a writer can rely on, whatever other processes do to the same store at the same time:

- Every file is written atomically: readers see the old file or the new one, never a mix. Local
  paths: a temporary file is written, flushed and fsynced, renamed over the target, and the
  folder is fsynced. Object stores: one PUT (a large file: one multipart upload, which the
  store also shows whole or not at all).
- ``locked(...)`` serialises writers of one entry on local paths (a lock file, filelock). Locks
  are advisory and per machine: a folder shared over NFS relies on the server's flock. Object
  stores take no lock; the registry and the tables use part files there instead.
- Names become path components and are checked (``check_name``): nothing escapes the root.
- Damaged files raise LabStoreError (``DamagedFile``) naming the file and the job that rewrites
  it. What tables and cards guarantee on top is in ``diffusion.lab.tables`` and
  ``diffusion.lab.registry``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow.fs as pafs
from filelock import FileLock, Timeout

TUNE_FOLDER = "tune"
LOG_FOLDER = "logs"
LAB_ENV = "DIFFUSION_LAB"  # the lab store every command uses when --lab is not given
NAME_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
LOCK_TIMEOUT_S = 300.0


class LabStoreError(RuntimeError):
    """The store cannot be reached, or holds no such entry; the message names the path."""


class InvalidName(LabStoreError, ValueError):
    """A name that cannot be a path component of the store; the message says what is accepted."""


class CheckpointError(RuntimeError):
    """A model file that cannot be loaded; the message names the file and what is wrong."""


class DamagedFile(LabStoreError, CheckpointError):
    """A table or card that cannot be parsed; the message names the file and the job that rewrites it."""


class StaleMetrics(LabStoreError):
    """Metrics measured on other weights than the card now has."""


def default_lab(environ: Mapping[str, str] | None = None) -> str:
    """The lab store root in $DIFFUSION_LAB (e.g. s3://bucket/lab on a cluster), else ./lab."""
    return (os.environ if environ is None else environ).get(LAB_ENV) or "./lab"


def check_name(name: str, what: str = "name") -> str:
    """Names become path components: letters, digits, '_', '-', '.', at most 128, not starting with '.'."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidName(
            f"{what} {name!r} is not accepted: use letters, digits, '_', '-' and '.', "
            f"starting with a letter or digit, at most 128 characters"
        )
    return name


def _fsync_dir(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class LabStore:
    """One lab store root: URIs, atomic bytes and JSON, listings, locks and the layout's plain paths."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        root = os.fspath(root)
        if "://" in root:
            try:
                self.fs, self.base = pafs.FileSystem.from_uri(root)
            except (ValueError, OSError) as error:  # pyarrow's ArrowInvalid is a ValueError
                raise LabStoreError(f"lab store {root!r} cannot be opened: {error}") from error
            self.root = root.rstrip("/")
        else:
            self.fs = pafs.LocalFileSystem()
            self.base = os.path.abspath(os.path.expanduser(root))
            self.root = self.base
        self.base = self.base.rstrip("/")
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)

    def __repr__(self) -> str:
        return f"LabStore({self.root!r})"

    # ---- paths --------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        """Filesystem path of ``parts`` under the root (for this store's ``fs``)."""
        return "/".join([self.base, *parts])

    def uri(self, *parts: str) -> str:
        """A URI (or absolute local path) of ``parts`` that other tools accept, e.g. Ray Tune."""
        return "/".join([self.root, *parts])

    def uri_of(self, fs_path: str) -> str:
        """The URI of a path in this store's filesystem (as Ray Tune returns them: no scheme)."""
        if self.is_local:
            return fs_path
        return f"{self.root.split('://', 1)[0]}://{fs_path.lstrip('/')}"

    def tune_storage(self) -> str:
        """Ray Tune's ``storage_path`` inside this store."""
        return self.uri(TUNE_FOLDER)

    def experiment_uri(self, name: str) -> str:
        """The URI of Tune experiment ``name`` (``<root>/tune/<name>``)."""
        return self.uri(TUNE_FOLDER, check_name(name, "experiment name"))

    def log_path(self, name: str) -> str:
        """Relative path of a job's log file (``logs/<name>.log``)."""
        return f"{LOG_FOLDER}/{check_name(name, 'log name')}.log"

    def check_writable(self) -> None:
        """Write a small probe file under ``tune/``: a store that cannot be written fails now, not after training."""
        self.write_json(f"{TUNE_FOLDER}/.reachable", {"checked": time.time()})

    # ---- bytes ----------------------------------------------------------------------------
    def write_bytes(self, relpath: str, data: bytes) -> None:
        """Write ``data`` atomically at ``relpath`` (local: fsynced, renamed, folder fsynced; else one PUT)."""
        target = self.path(relpath)
        parent = target.rsplit("/", 1)[0]
        try:
            if self.is_local:
                self._write_local(parent, target, data)
            else:
                self.fs.create_dir(parent, recursive=True)
                with self.fs.open_output_stream(target) as stream:
                    stream.write(data)
        except OSError as error:
            raise LabStoreError(f"cannot write {self.uri(relpath)}: {error}") from error

    @staticmethod
    def _write_local(parent: str, target: str, data: bytes) -> None:
        os.makedirs(parent, exist_ok=True)
        temporary = f"{parent}/.tmp-{uuid.uuid4().hex}"
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(temporary)
            raise
        _fsync_dir(parent)

    def read_bytes(self, relpath: str) -> bytes:
        """The bytes at ``relpath``; a missing file raises LabStoreError naming it."""
        try:
            with self.fs.open_input_stream(self.path(relpath)) as stream:
                return stream.read()
        except FileNotFoundError as error:
            raise LabStoreError(f"{self.uri(relpath)} does not exist") from error
        except OSError as error:
            raise LabStoreError(f"cannot read {self.uri(relpath)}: {error}") from error

    def read_many(self, relpaths: list[str], missing_ok: bool = False) -> list[bytes | None]:
        """The bytes of each file, in order (object stores: up to 16 requests in flight at once).

        ``missing_ok``: a file that is gone by the time it is read (another writer removed it
        after it was listed) gives None instead of raising.
        """
        def read(relpath: str) -> bytes | None:
            if not missing_ok:
                return self.read_bytes(relpath)
            try:
                return self.read_bytes(relpath)
            except LabStoreError:
                if self.exists(relpath):
                    raise
                return None

        if self.is_local or len(relpaths) < 2:
            return [read(p) for p in relpaths]
        with ThreadPoolExecutor(max_workers=min(16, len(relpaths))) as pool:
            return list(pool.map(read, relpaths))

    def move(self, relpath: str, target: str) -> None:
        """Rename the file at ``relpath`` to ``target`` (a rename locally; a copy and delete on object stores)."""
        try:
            self.fs.move(self.path(relpath), self.path(target))
        except OSError as error:
            raise LabStoreError(f"cannot move {self.uri(relpath)} to {self.uri(target)}: {error}") from error

    def delete(self, relpath: str) -> None:
        """Remove the file at ``relpath`` (nothing if it is already gone)."""
        try:
            self.fs.delete_file(self.path(relpath))
        except FileNotFoundError:
            pass
        except OSError as error:
            raise LabStoreError(f"cannot delete {self.uri(relpath)}: {error}") from error

    def exists(self, relpath: str) -> bool:
        """Whether a file or folder exists at ``relpath``."""
        return self.fs.get_file_info(self.path(relpath)).type != pafs.FileType.NotFound

    def signature(self, relpath: str) -> tuple[int, int] | None:
        """(modification time in ns, size) of the file at ``relpath``, or None if absent: a cache key that changes with the file."""
        info = self.fs.get_file_info(self.path(relpath))
        if info.type == pafs.FileType.NotFound:
            return None
        return (int(info.mtime_ns or 0), int(info.size or 0))

    def list_dir(self, relpath: str = "") -> list[str]:
        """Names directly under ``relpath`` (sorted; temporary files hidden; [] if absent)."""
        selector = pafs.FileSelector(self.path(relpath) if relpath else self.base, allow_not_found=True)
        try:
            names = [info.base_name for info in self.fs.get_file_info(selector)]
        except OSError as error:
            raise LabStoreError(f"cannot list {self.uri(relpath)}: {error}") from error
        return sorted(n for n in names if not n.startswith(".tmp-"))

    def write_json(self, relpath: str, value: Any) -> None:
        """Write ``value`` as indented JSON, atomically."""
        self.write_bytes(relpath, json.dumps(value, indent=2, sort_keys=True, default=str).encode())

    def read_json(self, relpath: str) -> Any:
        """Parse the JSON at ``relpath``."""
        return json.loads(self.read_bytes(relpath))

    @contextlib.contextmanager
    def locked(self, *parts: str) -> Iterator[None]:
        """Hold the lock file ``.locks/<parts>.lock`` (local paths; object stores take no lock)."""
        if not self.is_local:
            yield
            return
        path = "/".join([self.base, ".locks", *parts]) + ".lock"
        os.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        lock = FileLock(path)
        try:
            lock.acquire(timeout=LOCK_TIMEOUT_S)
        except Timeout as error:
            raise LabStoreError(f"{path} is held by another writer for over {LOCK_TIMEOUT_S:.0f} s; "
                                f"if no job is writing to {self.root}, delete it") from error
        try:
            yield
        finally:
            lock.release()

    # ---- run state, data sets -------------------------------------------------------------
    def run_state_path(self, name: str) -> str:
        """Relative path of a standalone run's resume state (torch.save, loaded weights_only)."""
        return f"runs/{check_name(name, 'run name')}/state.pt"

    def dataset_path(self, name: str) -> str:
        """Relative path of a data set's copy (safetensors: uint8 pixels and labels per split)."""
        return f"data/{check_name(name, 'data set name')}.safetensors"

    def dataset_manifest_path(self, name: str) -> str:
        """Relative path of a data set copy's manifest (sizes and SHA-256)."""
        return f"data/{check_name(name, 'data set name')}.json"

