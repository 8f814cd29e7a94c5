"""Cached reads of the lab store: each cache entry is keyed by the file's signature, so a changed file is read again."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from diffusion.core.samplers import DenoisingPaths
from diffusion.embeddings import EMBEDDINGS
from diffusion.embeddings.loading import current_embeddings
from diffusion.lab.checkpoint import ModelCard
from diffusion.lab.leaderboard import RANK, Lineage, leaderboard
from diffusion.lab.pictures import PATHS_FILE
from diffusion.lab.registry import CARD_FILE, ModelRegistry
from diffusion.lab.store import LabStore, LabStoreError
from diffusion.lab.tables import SCORES, TABLES, TableSchema, TableStore
from diffusion.metrics.card_summary import score_line, training_line


class LabUnavailable(RuntimeError):
    """What the page should say instead of showing data: a missing table or file, with how to make it."""


def store(root: str) -> LabStore:
    """The lab store at ``root`` (a path or a URI); LabUnavailable if it cannot be opened."""
    try:
        return LabStore(root)
    except (LabStoreError, OSError, ValueError) as error:
        raise LabUnavailable(f"cannot open the lab store {root!r}: {error}") from error


def table(root: str, schema: TableSchema) -> pd.DataFrame:
    """A result table, re-read whenever its file changes; LabUnavailable (with the job that writes it) if it is missing."""
    lab = store(root)
    signature = lab.signature(TableStore(lab).path(schema))
    if signature is None:
        raise LabUnavailable(f"the lab store {lab.root} has no `{schema.name}` table yet: "
                             f"{schema.job} (or the pipeline) writes it")
    try:
        return _read_table(root, schema.name, signature).copy()
    except LabStoreError as error:  # damaged, or not of the table's schema: the message names the file and the job
        raise LabUnavailable(str(error)) from error


@st.cache_data(show_spinner=False, max_entries=64)
def _read_table(root: str, name: str, signature: tuple[int, int]) -> pd.DataFrame:
    return TableStore(LabStore(root)).read(TABLES[name])


def denoisers(root: str) -> list[str]:
    """Names of the exported denoisers (a listing: cheap, never cached)."""
    try:
        return ModelRegistry(store(root)).list_models(kind="denoiser")
    except (LabStoreError, OSError) as error:
        raise LabUnavailable(f"cannot list the models of {root!r}: {error}") from error


def lineage(root: str) -> Lineage:
    """The embeddings the lab holds now (name, weights hash, trial: what the leaderboard ranks by), re-read whenever one
    of their cards changes."""
    lab = store(root)
    cards = ModelRegistry(lab)
    try:
        signatures = tuple(lab.signature(cards.model_path(kind, CARD_FILE)) for kind in EMBEDDINGS.values() if isinstance(kind, str))
        return _read_lineage(root, signatures)
    except (LabStoreError, OSError) as error:
        raise LabUnavailable(f"cannot read the embeddings' cards in {root!r}: {error}") from error


@st.cache_data(show_spinner=False, max_entries=16)
def _read_lineage(root: str, signatures: tuple[tuple[int, int] | None, ...]) -> Lineage:
    return current_embeddings(LabStore(root))


def leaderboard_ranks(root: str) -> dict[str, int]:
    """Model -> rank on the default leaderboard (the lab's current VAE); empty before any evaluation."""
    try:
        board = leaderboard(table(root, SCORES), lineage(root))
    except LabUnavailable:
        return {}
    return dict(zip(board[SCORES.model], board[RANK]))


def ranked_denoisers(root: str) -> list[str]:
    """The exported denoisers, leaderboard order first (unscored ones after, by name).

    LabUnavailable, saying how to make some, when there are none.
    """
    models = denoisers(root)
    if not models:
        raise LabUnavailable(f"The lab store {root} has no exported denoisers yet: "
                             f"python -m jobs.pipeline --preset quick --lab {root}")
    ranks = leaderboard_ranks(root)
    return sorted(models, key=lambda m: (ranks.get(m, len(ranks) + 1), m))


def model_file(root: str, name: str, filename: str) -> bytes | None:
    """A file beside a model (grid.png, paths.gif, ...), re-read when it changes; None if absent."""
    lab = store(root)
    signature = lab.signature(ModelRegistry(lab).model_path(name, filename))
    return None if signature is None else _read_model_file(root, name, filename, signature)


@st.cache_data(show_spinner=False, max_entries=256)
def _read_model_file(root: str, name: str, filename: str, signature: tuple[int, int]) -> bytes:
    lab = LabStore(root)
    return lab.read_bytes(ModelRegistry(lab).model_path(name, filename))


def card(root: str, name: str) -> ModelCard | None:
    """A model's card (how it was trained, what it scored) with the metrics an object store keeps beside it, read
    each time (a few small files: the metric parts change without the card); None if it cannot be read."""
    try:
        return ModelRegistry(store(root)).read_card(name)
    except (LabStoreError, OSError, ValueError):
        return None


def about(root: str, name: str) -> str:
    """What a picture of ``name`` shows, in two lines: how far it trained and how it scored (``card_summary``)."""
    found = card(root, name)
    if found is None:
        return f"{name}: no readable card"
    return f"{name}: {training_line(found)}.  \n{score_line(found)}."


def denoising_paths(root: str, name: str) -> DenoisingPaths | None:
    """A model's stored denoising paths (x_t and predicted x_0 per snapshot), or None if not rendered yet."""
    data = model_file(root, name, PATHS_FILE)
    if data is None:
        return None
    try:
        return DenoisingPaths.from_bytes(data)
    except Exception as error:  # a truncated or foreign file: any parse failure becomes the page's message
        raise LabUnavailable(f"{name}'s {PATHS_FILE} cannot be read: {error}") from error
