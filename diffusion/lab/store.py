"""The lab store: one root (a local path or a pyarrow filesystem URI such as s3://bucket/lab).

This module is the only code that knows the layout; every reader and writer goes through it.

    <root>/models/<name>/weights.safetensors   weights (safetensors, never a pickle)
    <root>/models/<name>/card.json             config, parameter count, checksum, metrics
    <root>/models/<name>/metrics/<part>.json   metrics added on object stores (merged by read_card)
    <root>/models/<name>/<image>.png|.gif      sample grid, denoising paths
    <root>/tables/<name>.parquet               result tables
    <root>/tables/<name>.parts/<part>.parquet  row updates on object stores (merged on read)
    <root>/runs/<name>/state.pt                resume state of a standalone training run
    <root>/tune/                               Ray Tune's storage_path
    <root>/.locks/                             lock files of local writers

What a writer can rely on, whatever other processes do to the same store at the same time:

- Every file is written atomically: readers see the old file or the new one, never a mix. Local
  paths: a temporary file is written, flushed and fsynced, renamed over the target, and the
  folder is fsynced. Object stores: one PUT (a large file: one multipart upload, which the
  store also shows whole or not at all).
- ``update_table(name, rows, key="model")`` replaces the rows of the models in ``rows`` and
  keeps every other row: no writer loses another's rows. Local paths: a lock file per table
  (filelock) serialises the read-modify-write. Object stores (pyarrow has no conditional put):
  each update is a new part file; ``read_table`` applies the base file, then the parts in name
  order (see diffusion.lab.table_log). When two writers replace rows of the same model, the later
  part, by its writer's clock, wins. Parts older than COMPACT_AFTER_S are folded into one
  snapshot part by a later writer; the guarantee needs writers' clocks to agree within that.
  ``write_table`` replaces a whole table: the last writer wins.
- A model's card is written after its weights, so a reader never sees a card without its
  weights. Locally ``export_model`` and ``update_metrics`` of one model hold its lock; on
  object stores only ``export_model`` writes the card and metrics go to part files. Metrics
  are tied to the weights they were measured on: ``update_metrics(..., expected_sha256=...)``
  refuses a card whose weights changed, and an export drops metrics of other weights.
- Not covered: two exports of one model at once on an object store may leave the card of one
  beside the weights of the other; loading then fails its checksum (wrong weights are never
  served) until the next export. Locks are advisory and per machine: a folder shared over NFS
  relies on the server's flock.
- Damaged files raise LabStoreError naming the file and the job that rewrites it; stray
  entries under ``models/`` are listed by ``model_entries`` with the reason, never raised.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import torch
from filelock import FileLock, Timeout
from torch import nn

from diffusion.lab.checkpoint import (
    CheckpointError,
    ModelCard,
    build_from_card,
    model_card,
    weights_from_bytes,
    weights_to_bytes,
)
from diffusion.lab.table_log import TableOp, fold, op_from_bytes, op_to_bytes, part_name, replace_op

log = logging.getLogger(__name__)

LAB_ENV = "DIFFUSION_LAB"  # the lab store every command uses when --lab is not given
NAME_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
WEIGHTS_FILE = "weights.safetensors"
CARD_FILE = "card.json"
METRICS_DIR = "metrics"
LOCK_TIMEOUT_S = 300.0
COMPACT_AFTER_S = 600.0  # parts older than this may be folded into a snapshot (object stores)
COMPACT_MIN_PARTS = 16  # ... once at least this many of them have piled up
TABLE_JOBS = {
    "scores": "python -m jobs.evaluate",
    "trials": "python -m jobs.sweep",
    "trial_history": "python -m jobs.sweep",
    "robustness": "python -m jobs.evaluate (or python -m diffusion robustness)",
    "robustness_summary": "python -m jobs.evaluate (or python -m diffusion robustness)",
}
"""Table name -> the command that rewrites it."""
MODEL_JOBS = "python -m jobs.sweep, or python -m diffusion train / train-embedding --name {name}"
"""The commands that export (and so rewrite) a model's card and weights."""


class LabStoreError(RuntimeError):
    """The store cannot be reached, or holds no such entry; the message names the path."""


class InvalidName(LabStoreError, ValueError):
    """A name that cannot be a path component of the store; the message says what is accepted."""


class DamagedFile(LabStoreError, CheckpointError):
    """A table or card that cannot be parsed; the message names the file and the job that rewrites it."""


class StaleMetrics(LabStoreError):
    """Metrics measured on other weights than the card now has."""


@dataclass(frozen=True)
class StoredModel:
    """A model read back from the store: the network (eval mode), its run config and card."""

    name: str
    model: nn.Module
    run: Any  # RunConfig for a denoiser, VAERun, ClassifierRun
    card: ModelCard


@dataclass(frozen=True)
class ModelEntry:
    """One entry under ``models/``: its card, or why it is not a usable model."""

    name: str
    card: ModelCard | None = None
    error: str | None = None

    @property
    def available(self) -> bool:
        """Whether the entry is a model with a readable card."""
        return self.card is not None


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


def table_job(name: str) -> str:
    """The command that rewrites table ``name``."""
    return TABLE_JOBS.get(name, "the job that wrote it")


def _fsync_dir(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class LabStore:
    """Read and write the lab's models, tables and images under one root."""

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
        return self.uri("tune")

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

    # ---- models ---------------------------------------------------------------------------
    def model_path(self, name: str, filename: str = "") -> str:
        """Relative path of a model's folder, or of one file in it."""
        check_name(name, "model name")
        return f"models/{name}/{filename}" if filename else f"models/{name}"

    def export_model(self, name: str, model: nn.Module, run: Any, metrics: dict[str, Any] | None = None) -> ModelCard:
        """Save a model's weights, then its card (last, so readers never see half a model).

        ``run`` is the run config the model was trained from; its type names the kind.
        """
        from diffusion.lab.kinds import kind_of

        weights = weights_to_bytes(model)
        card = model_card(kind_of(run), model, run, weights, metrics)
        with self.locked("models", check_name(name, "model name")):
            self.write_bytes(self.model_path(name, WEIGHTS_FILE), weights)
            self.write_bytes(self.model_path(name, CARD_FILE), card.to_json())
        return card

    def model_entries(self) -> list[ModelEntry]:
        """Every entry under ``models/`` (sorted): its card, or why it is not a usable model."""
        return [self._entry(name) for name in self.list_dir("models")]

    def _entry(self, name: str) -> ModelEntry:
        try:
            check_name(name, "model folder name")
        except InvalidName as error:
            return ModelEntry(name, error=str(error))
        if not self.exists(self.model_path(name, CARD_FILE)):
            return ModelEntry(name, error=f"{self.uri(self.model_path(name))} has no {CARD_FILE}: "
                                          f"not a model, or its export did not finish")
        try:
            return ModelEntry(name, self.read_card(name))
        except (LabStoreError, CheckpointError) as error:
            return ModelEntry(name, error=str(error))

    def list_models(self, kind: str | None = None) -> list[str]:
        """Names of the exported models (valid names with a card), optionally only of one ``kind``; never raises on stray entries."""
        if kind is not None:
            return [e.name for e in self.model_entries() if e.card is not None and e.card.kind == kind]
        names = [n for n in self.list_dir("models") if NAME_PATTERN.match(n)]
        return [n for n in names if self.exists(self.model_path(n, CARD_FILE))]

    def read_card(self, name: str) -> ModelCard:
        """A model's card, with the metrics added on object stores for these weights."""
        relpath = self.model_path(name, CARD_FILE)
        data = self.read_bytes(relpath)
        try:
            card = ModelCard.from_json(data, self.uri(relpath))
        except CheckpointError as error:
            raise DamagedFile(f"{error}; the card is damaged: rerun {MODEL_JOBS.format(name=name)} "
                              f"to export the model again") from error
        extra = self._metric_parts(name, card.weights_sha256)
        return ModelCard(card.kind, card.config, card.parameters, card.weights_sha256, {**card.metrics, **extra}) if extra else card

    def _metric_parts(self, name: str, weights_sha256: str) -> dict[str, Any]:
        folder = self.model_path(name, METRICS_DIR)
        merged: dict[str, Any] = {}
        for part in (n for n in self.list_dir(folder) if n.endswith(".json")):
            try:
                body = self.read_json(f"{folder}/{part}")
            except (LabStoreError, ValueError) as error:
                log.warning("%s is unreadable (%s); its metrics are skipped", self.uri(folder, part), error)
                continue
            if isinstance(body, dict) and body.get("weights_sha256") == weights_sha256:
                merged.update(body.get("metrics") or {})
        return merged

    def update_metrics(self, name: str, metrics: dict[str, Any], expected_sha256: str | None = None) -> ModelCard:
        """Merge ``metrics`` into a model's card (weights untouched).

        ``expected_sha256``: the weights the metrics were measured on; StaleMetrics if the card's differ.
        """
        with self.locked("models", check_name(name, "model name")):
            card = self.read_card(name)
            if expected_sha256 is not None and card.weights_sha256 != expected_sha256:
                raise StaleMetrics(
                    f"{self.uri(self.model_path(name, CARD_FILE))}: the weights changed since these metrics were "
                    f"measured (measured on sha256 {expected_sha256[:12]}..., the card has {card.weights_sha256[:12]}...): "
                    f"evaluate the model again")
            updated = ModelCard(card.kind, card.config, card.parameters, card.weights_sha256, {**card.metrics, **metrics})
            if self.is_local:
                self.write_bytes(self.model_path(name, CARD_FILE), updated.to_json())
            else:
                part = {"weights_sha256": card.weights_sha256, "metrics": metrics}
                self.write_json(self.model_path(name, f"{METRICS_DIR}/{part_name('.json')}"), part)
        return updated

    def read_weights(self, name: str, card: ModelCard | None = None) -> dict[str, torch.Tensor]:
        """A model's state dict, checked against the card's checksum; pickles are refused."""
        card = card or self.read_card(name)
        relpath = self.model_path(name, WEIGHTS_FILE)
        return weights_from_bytes(self.read_bytes(relpath), self.uri(relpath), card.weights_sha256)

    def load_model(self, name: str, device: torch.device | str = "cpu", kind: str | None = None) -> StoredModel:
        """Rebuild an exported model from its card and weights, on ``device`` (checking ``kind``)."""
        card = self.read_card(name)
        state = self.read_weights(name, card)
        model, run = build_from_card(card, state, self.uri(self.model_path(name)), kind)
        return StoredModel(name, model.to(device), run, card)

    def load_denoiser(self, name: str, device: torch.device | str = "cpu") -> StoredModel:
        """Rebuild an exported denoiser; ``.run`` is its RunConfig."""
        return self.load_model(name, device, "denoiser")

    def write_model_file(self, name: str, filename: str, data: bytes) -> str:
        """Store a file (PNG, GIF, denoising paths) beside a model; returns its relative path."""
        check_name(filename, "model file name")
        relpath = self.model_path(name, filename)
        self.write_bytes(relpath, data)
        return relpath

    # ---- tables ---------------------------------------------------------------------------
    def table_path(self, name: str) -> str:
        """Relative path of a result table's Parquet file."""
        return f"tables/{check_name(name, 'table name')}.parquet"

    def table_parts_path(self, name: str) -> str:
        """Relative path of a table's folder of row updates (object stores)."""
        return f"tables/{check_name(name, 'table name')}.parts"

    def write_table(self, name: str, table: pd.DataFrame) -> None:
        """Replace a whole result table (the last writer wins)."""
        self._commit(name, TableOp(table.reset_index(drop=True)))

    def update_table(self, name: str, rows: pd.DataFrame, key: str = "model", keys: Sequence[Any] | None = None) -> None:
        """Replace the rows whose ``key`` is in ``keys`` (default: the values ``rows`` hold) by ``rows``; keep the others.

        Concurrent writers lose nothing (see the module docstring). ``keys`` may name values
        ``rows`` lacks: their old rows are dropped.
        """
        self._commit(name, replace_op(rows, key, keys))

    def read_table(self, name: str) -> pd.DataFrame:
        """A stored result table; DamagedFile (naming the file and the job that rewrites it) if unreadable."""
        table = fold([op for _, op in self._table_ops(name, set_aside_damaged=False)])
        if table is None:
            raise LabStoreError(f"{self.uri(self.table_path(name))} does not exist")
        return table

    def list_tables(self) -> list[str]:
        """Names of the stored tables."""
        names = self.list_dir("tables")
        return sorted({n.rsplit(".", 1)[0] for n in names if n.endswith((".parquet", ".parts"))})

    def _part_paths(self, name: str) -> list[str]:
        folder = self.table_parts_path(name)
        return [f"{folder}/{n}" for n in self.list_dir(folder) if n.endswith(".parquet")]

    def _table_ops(self, name: str, set_aside_damaged: bool) -> list[tuple[str, TableOp]]:
        base = self.table_path(name)
        try:
            paths = ([base] if self.exists(base) else []) + self._part_paths(name)
        except (OSError, LabStoreError) as error:
            raise LabStoreError(f"cannot read {self.uri(base)}: {error}") from error
        ops = []
        for relpath, data in zip(paths, self._read_many(paths)):
            try:
                ops.append((relpath, op_from_bytes(data)))
            except (pa.ArrowException, OSError, ValueError, KeyError, TypeError) as error:  # ArrowInvalid is a ValueError
                damaged = DamagedFile(f"{self.uri(relpath)} is damaged ({error}); rerun {table_job(name)} to rewrite it")
                if not set_aside_damaged:
                    raise damaged from error
                self._set_aside(relpath, damaged)
        return ops

    def _read_many(self, paths: list[str]) -> list[bytes]:
        if self.is_local or len(paths) < 2:
            return [self.read_bytes(p) for p in paths]
        with ThreadPoolExecutor(max_workers=min(16, len(paths))) as pool:  # object stores: requests in flight at once
            return list(pool.map(self.read_bytes, paths))

    def _set_aside(self, relpath: str, damaged: DamagedFile) -> None:
        aside = f"{relpath}.damaged-{time.time_ns()}"
        try:
            self.fs.move(self.path(relpath), self.path(aside))
        except OSError as error:
            raise damaged from error
        log.warning("%s; moved to %s and written anew", damaged, self.uri(aside))

    def _commit(self, name: str, op: TableOp) -> None:
        if self.is_local:
            with self.locked("tables", check_name(name, "table name")):
                ops = self._table_ops(name, set_aside_damaged=True) if op.key is not None else []
                table = op.apply(fold([o for _, o in ops]))
                self.write_bytes(self.table_path(name), op_to_bytes(TableOp(table)))
                for relpath in self._part_paths(name):  # parts, if any, are in the base now
                    self.delete(relpath)
            return
        self.write_bytes(f"{self.table_parts_path(name)}/{part_name()}", op_to_bytes(op))
        ops = self._table_ops(name, set_aside_damaged=True)
        table = fold([o for _, o in ops])
        self.write_bytes(self.table_path(name), op_to_bytes(TableOp(table)))  # the merged view, for plain readers
        self._compact(name, ops)

    def _compact(self, name: str, ops: list[tuple[str, TableOp]]) -> None:
        horizon = time.time_ns() - int(COMPACT_AFTER_S * 1e9)
        stamps = {p: p.rsplit("/", 1)[1][:20] for p, _ in ops if p != self.table_path(name)}
        old = [(p, o) for p, o in ops if stamps.get(p, "x").isdigit() and int(stamps[p]) < horizon]
        if len(old) < COMPACT_MIN_PARTS:
            return
        last = [p for p, _ in ops].index(old[-1][0])
        through = old[-1][0].removesuffix(".parquet")
        snapshot = fold([o for _, o in ops[: last + 1]])  # the base and the parts up to ``through``, in order
        assert snapshot is not None
        self.write_bytes(f"{through}~snapshot.parquet", op_to_bytes(TableOp(snapshot)))
        for relpath, _ in old:
            self.delete(relpath)

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

