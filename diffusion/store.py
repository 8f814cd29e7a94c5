"""The lab store: one root (a local path or a pyarrow filesystem URI such as s3://bucket/lab).

This module is the only code that knows the layout; every reader and writer goes through it.

    <root>/models/<name>/weights.safetensors   weights (safetensors, never a pickle)
    <root>/models/<name>/card.json             config, parameter count, checksum, metrics
    <root>/models/<name>/<image>.png|.gif      sample grid, denoising paths
    <root>/tables/<name>.parquet               result tables
    <root>/runs/<name>/state.pt                resume state of a standalone training run
    <root>/data/<dataset>.safetensors|.json    a data set's copy for the nodes, and its checksum
    <root>/tune/                               Ray Tune's storage_path

Writes are atomic: a temporary file renamed into place on local disks, a single put on
object stores. A model is visible only once its card exists, and the card is written last.
"""

from __future__ import annotations

import io
import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from torch import nn

from diffusion.checkpoint import CheckpointError

from diffusion.checkpoint import ModelCard, build_from_card, model_card, weights_from_bytes, weights_to_bytes

LAB_ENV = "DIFFUSION_LAB"  # the lab store every command uses when --lab is not given
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
WEIGHTS_FILE = "weights.safetensors"
CARD_FILE = "card.json"


class LabStoreError(RuntimeError):
    """The store cannot be reached, or holds no such entry; the message names the path."""


@dataclass(frozen=True)
class StoredModel:
    """A model read back from the store: the network (eval mode), its run config and card."""

    name: str
    model: nn.Module
    run: Any  # RunConfig for a denoiser, VAERun, ClassifierRun
    card: ModelCard


def default_lab(environ: Mapping[str, str] | None = None) -> str:
    """The lab store root in $DIFFUSION_LAB (e.g. s3://bucket/lab on a cluster), else ./lab."""
    return (os.environ if environ is None else environ).get(LAB_ENV) or "./lab"


def check_name(name: str, what: str = "name") -> str:
    """Names become path components: letters, digits, '_', '-', '.', at most 128, not starting with '.'."""
    if not NAME_PATTERN.match(name):
        raise ValueError(
            f"{what} {name!r} is not accepted: use letters, digits, '_', '-' and '.', "
            f"starting with a letter or digit, at most 128 characters"
        )
    return name


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
        """Write ``data`` atomically at ``relpath``."""
        target = self.path(relpath)
        parent = target.rsplit("/", 1)[0]
        try:
            self.fs.create_dir(parent, recursive=True)
            if self.is_local:
                temporary = f"{parent}/.tmp-{uuid.uuid4().hex}"
                with self.fs.open_output_stream(temporary) as stream:
                    stream.write(data)
                self.fs.move(temporary, target)
            else:
                with self.fs.open_output_stream(target) as stream:
                    stream.write(data)
        except OSError as error:
            raise LabStoreError(f"cannot write {self.uri(relpath)}: {error}") from error

    def read_bytes(self, relpath: str) -> bytes:
        """The bytes at ``relpath``; a missing file raises LabStoreError naming it."""
        try:
            with self.fs.open_input_stream(self.path(relpath)) as stream:
                return stream.read()
        except FileNotFoundError as error:
            raise LabStoreError(f"{self.uri(relpath)} does not exist") from error
        except OSError as error:
            raise LabStoreError(f"cannot read {self.uri(relpath)}: {error}") from error

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
        names = [info.base_name for info in self.fs.get_file_info(selector)]
        return sorted(n for n in names if not n.startswith(".tmp-"))

    def write_json(self, relpath: str, value: Any) -> None:
        """Write ``value`` as indented JSON, atomically."""
        self.write_bytes(relpath, json.dumps(value, indent=2, sort_keys=True, default=str).encode())

    def read_json(self, relpath: str) -> Any:
        """Parse the JSON at ``relpath``."""
        return json.loads(self.read_bytes(relpath))

    # ---- models ---------------------------------------------------------------------------
    def model_path(self, name: str, filename: str = "") -> str:
        """Relative path of a model's folder, or of one file in it."""
        check_name(name, "model name")
        return f"models/{name}/{filename}" if filename else f"models/{name}"

    def export_model(self, name: str, model: nn.Module, run: Any, metrics: dict[str, Any] | None = None) -> ModelCard:
        """Save a model's weights, then its card (last, so readers never see half a model).

        ``run`` is the run config the model was trained from; its type names the kind.
        """
        from diffusion.kinds import kind_of

        weights = weights_to_bytes(model)
        card = model_card(kind_of(run), model, run, weights, metrics)
        self.write_bytes(self.model_path(name, WEIGHTS_FILE), weights)
        self.write_bytes(self.model_path(name, CARD_FILE), card.to_json())
        return card

    def list_models(self, kind: str | None = None) -> list[str]:
        """Names of the exported models (those with a card), optionally only of one ``kind``."""
        names = [n for n in self.list_dir("models") if self.exists(self.model_path(n, CARD_FILE))]
        if kind is None:
            return names
        return [n for n in names if self._kind_or_none(n) == kind]

    def _kind_or_none(self, name: str) -> str | None:
        try:
            return self.read_card(name).kind
        except (LabStoreError, CheckpointError):
            return None

    def read_card(self, name: str) -> ModelCard:
        """A model's card."""
        relpath = self.model_path(name, CARD_FILE)
        return ModelCard.from_json(self.read_bytes(relpath), self.uri(relpath))

    def update_metrics(self, name: str, metrics: dict[str, Any]) -> ModelCard:
        """Merge ``metrics`` into a model's card (weights untouched)."""
        card = self.read_card(name)
        updated = ModelCard(card.kind, card.config, card.parameters, card.weights_sha256, {**card.metrics, **metrics})
        self.write_bytes(self.model_path(name, CARD_FILE), updated.to_json())
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

    # ---- images, tables, run state --------------------------------------------------------
    def write_model_file(self, name: str, filename: str, data: bytes) -> str:
        """Store a file (PNG, GIF, denoising paths) beside a model; returns its relative path."""
        check_name(filename, "model file name")
        relpath = self.model_path(name, filename)
        self.write_bytes(relpath, data)
        return relpath

    def table_path(self, name: str) -> str:
        """Relative path of a result table's Parquet file."""
        return f"tables/{check_name(name, 'table name')}.parquet"

    def write_table(self, name: str, table: pd.DataFrame) -> None:
        """Store a result table as Parquet, atomically."""
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        self.write_bytes(self.table_path(name), buffer.getvalue())

    def read_table(self, name: str) -> pd.DataFrame:
        """A stored result table."""
        data = self.read_bytes(self.table_path(name))
        return pq.read_table(io.BytesIO(data)).to_pandas()

    def list_tables(self) -> list[str]:
        """Names of the stored tables."""
        return [n.removesuffix(".parquet") for n in self.list_dir("tables") if n.endswith(".parquet")]

    def run_state_path(self, name: str) -> str:
        """Relative path of a standalone run's resume state (torch.save, loaded weights_only)."""
        return f"runs/{check_name(name, 'run name')}/state.pt"

    def dataset_path(self, name: str) -> str:
        """Relative path of a data set's copy (safetensors: uint8 pixels and labels per split)."""
        return f"data/{check_name(name, 'data set name')}.safetensors"

    def dataset_manifest_path(self, name: str) -> str:
        """Relative path of a data set copy's manifest (sizes and SHA-256)."""
        return f"data/{check_name(name, 'data set name')}.json"

